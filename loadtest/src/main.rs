//! The `careline-loadtest` command line: `run` places synthetic calls against any SIP target;
//! `capacity` starts Careline itself and ramps concurrency until the SLO breaks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use careline::media::codec::Codec;
use careline_loadtest::answerer::AnswerPlan;
use careline_loadtest::audio::Assets;
use careline_loadtest::caller::Plan;
use careline_loadtest::capacity::{self, CapacitySpec};
use careline_loadtest::hear::Library;
use careline_loadtest::report::{self, Slo};
use careline_loadtest::run::{self, LoadSpec};
use careline_loadtest::scenario::{Scenario, Step, Via};
use careline_loadtest::whip::WhipTarget;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "careline-loadtest",
    version,
    about = "Synthetic SIP/RTP callers that check what they hear, and Careline's capacity benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Place calls against a SIP target and check every caller heard the right prompts.
    Run(RunArgs),
    /// Start `careline serve` and ramp concurrency (250, 500, 1000, ...) until the SLO breaks.
    Capacity(CapacityArgs),
}

#[derive(Args)]
struct Common {
    /// Scenario file(s); calls take them in turn
    #[arg(long = "scenario", value_name = "FILE", required = true)]
    scenarios: Vec<PathBuf>,
    /// Prompt folder (<lang>/<name>.wav): what callers expect to hear
    #[arg(long, value_name = "DIR", default_value = "prompts")]
    prompts: PathBuf,
    /// New calls per second
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Generator threads (each a 20 ms media clock for its callers)
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// SIP over TCP instead of UDP
    #[arg(long)]
    tcp: bool,
    /// Print the result as JSON instead of a table
    #[arg(long)]
    json: bool,
    /// No live progress line
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// The SIP server, ADDR:PORT
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:5060")]
    target: SocketAddr,
    /// Calls to place in all, at most --concurrency at once (default: the concurrency; with
    /// --hold, as many as the hold needs, or until this many were placed)
    #[arg(long)]
    calls: Option<u64>,
    /// Most calls up at once (reached and kept during --hold)
    #[arg(long, default_value_t = 10)]
    concurrency: u64,
    /// Seconds to keep the concurrency once reached (ended calls are replaced)
    #[arg(long, default_value_t = 0)]
    hold: u64,
    /// The server's process id, to report its CPU and memory
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Stop (failing the calls still up) after this many seconds
    #[arg(long, default_value_t = 600)]
    max_duration: u64,
    /// Browser callers instead of phones: each call is a WebRTC peer connection (ICE,
    /// DTLS-SRTP) placed by WHIP (RFC 9725) at Careline's HTTP listener ADDR:PORT, to the
    /// scenario's service number (`/api/v1/calls/whip?to=SERVICE`). With the server's
    /// `[webrtc] public_calls` off, a bearer token from $LOADTEST_TOKEN
    #[arg(long, value_name = "ADDR:PORT")]
    whip: Option<SocketAddr>,
    /// Synthetic agents answer the callers waiting in queue QUEUE, each a browser (WebRTC)
    /// through `POST /api/v1/queues/QUEUE/answer` with the bearer token in $LOADTEST_TOKEN
    /// (an agent, clinician or supervisor): they say --answer-prompt, speak, check they hear
    /// the caller, and hang up after --answer-talk-ms
    #[arg(long, value_name = "QUEUE")]
    answer: Option<String>,
    /// How many agents answer (shared among the --threads)
    #[arg(long, default_value_t = 10)]
    answerers: usize,
    /// Careline's HTTP listener for the agents (default: the --whip address)
    #[arg(long, value_name = "ADDR:PORT")]
    answer_http: Option<SocketAddr>,
    /// The prompt (a file in the prompt folder, in the first scenario's language) an agent
    /// says on answering: the caller's scenario can expect it
    #[arg(long, default_value = "welcome")]
    answer_prompt: String,
    /// The agents' codec: pcmu or opus
    #[arg(long, default_value = "pcmu")]
    answer_codec: String,
    /// How long an agent speaks after its greeting before it hangs up
    #[arg(long, default_value_t = 5000)]
    answer_talk_ms: u64,
}

#[derive(Args)]
struct CapacityArgs {
    #[command(flatten)]
    common: Common,
    /// The careline binary (default: `careline` next to this program)
    #[arg(long, value_name = "PATH")]
    server_bin: Option<PathBuf>,
    /// Concurrency levels, in order
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "250,500,1000,2000,4000,8000"
    )]
    levels: Vec<u64>,
    /// Seconds each level is held once reached
    #[arg(long, default_value_t = 20)]
    hold: u64,
    /// SIPp conformance folder with ivr-rfc2833-digit.xml (default $CARELINE_CONFORMANCE_DIR/sipp,
    /// else ../shared/conformance/sipp; skipped when neither exists)
    #[arg(long, value_name = "DIR")]
    sipp_dir: Option<PathBuf>,
    /// Skip the SIPp cross-check
    #[arg(long)]
    no_sipp: bool,
    /// Run every level even after one broke the SLO
    #[arg(long)]
    keep_going: bool,
    /// Scheduling niceness for the server, SIPp and this generator (negative needs root; 0
    /// leaves it): on a machine shared with other work, -10 lets the system under test and
    /// its measuring instrument win the CPU, as a dedicated voice server would
    #[arg(long, default_value_t = -10, allow_hyphen_values = true)]
    nice: i32,
}

/// Loads the scenarios with their prompt libraries and caller audio (shared where equal).
fn load_plans(c: &Common) -> anyhow::Result<Arc<Vec<Arc<Plan>>>> {
    let mut libs: HashMap<(String, String), Arc<Library>> = HashMap::new();
    let mut assets: HashMap<(String, Option<PathBuf>), Arc<Assets>> = HashMap::new();
    let mut plans = Vec::new();
    for path in &c.scenarios {
        let s = Scenario::load(path)?;
        let key = (s.language.clone(), s.codec.to_string());
        let lib = match libs.get(&key) {
            // Spoken prompts are the scenario's own: its library is not shared.
            _ if !s.speech.is_empty() => {
                let mut l = Library::load(&c.prompts, &s.language, s.codec)
                    .with_context(|| format!("{}: prompts", path.display()))?;
                let spoken = careline_loadtest::speech::render(&s.speech)
                    .with_context(|| format!("{}", path.display()))?;
                for (name, prompt) in &spoken {
                    l.add(name, prompt)
                        .with_context(|| format!("{}: [speech.{name}]", path.display()))?;
                }
                Arc::new(l)
            }
            Some(l) => l.clone(),
            None => {
                let l = Arc::new(
                    Library::load(&c.prompts, &s.language, s.codec)
                        .with_context(|| format!("{}: prompts", path.display()))?,
                );
                libs.insert(key, l.clone());
                l
            }
        };
        let tone_ms = s
            .steps
            .iter()
            .filter_map(|st| match st {
                Step::Press {
                    via: Via::Inband,
                    duration_ms,
                    ..
                } => Some(*duration_ms),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let akey = (format!("{}-{tone_ms}", s.codec), s.audio.clone());
        let a = match assets.get(&akey) {
            Some(a) => a.clone(),
            None => {
                let a = Arc::new(
                    Assets::new(s.codec, s.audio.as_deref(), tone_ms)
                        .with_context(|| format!("{}", path.display()))?,
                );
                assets.insert(akey, a.clone());
                a
            }
        };
        plans.push(Arc::new(Plan::new(s, lib, a)?));
    }
    Ok(Arc::new(plans))
}

/// A browser has no SIP INFO: a scenario that keys by INFO cannot run as browser callers.
fn browser_compatible(plans: &[Arc<Plan>]) -> anyhow::Result<()> {
    for p in plans {
        for (i, step) in p.scenario.steps.iter().enumerate() {
            if let Step::Press { via: Via::Info, .. } = step {
                bail!(
                    "{}: step {}: a browser caller cannot key by SIP INFO (--whip): use via = \"rfc4733\" or \"inband\"",
                    p.scenario.name,
                    i + 1
                );
            }
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(a) => {
            let plans = load_plans(&a.common)?;
            if a.concurrency == 0 || a.common.rate <= 0.0 {
                bail!("--concurrency and --rate must be above 0");
            }
            if a.whip.is_some() {
                browser_compatible(&plans)?;
            }
            let http = a.whip.or(a.answer_http);
            let answer = match &a.answer {
                Some(queue) => {
                    if http.is_none() {
                        bail!("--answer needs Careline's HTTP listener: --answer-http ADDR:PORT");
                    }
                    if a.answerers == 0 {
                        bail!("--answer needs at least one of --answerers");
                    }
                    let codec = Codec::from_name(&a.answer_codec)
                        .ok_or_else(|| anyhow::anyhow!("--answer-codec: pcmu, pcma or opus"))?;
                    let lang = plans[0].scenario.language.clone();
                    let greeting = careline_loadtest::hear::prompt_frames(
                        &a.common.prompts,
                        &lang,
                        &a.answer_prompt,
                        codec,
                    )
                    .context("--answer-prompt")?;
                    let assets = match plans.iter().find(|p| p.assets.codec == codec) {
                        Some(p) => p.assets.clone(),
                        None => Arc::new(Assets::new(codec, None, 0)?),
                    };
                    Some(Arc::new(AnswerPlan {
                        queue: queue.clone(),
                        codec,
                        greeting,
                        assets,
                        talk_ms: a.answer_talk_ms,
                    }))
                }
                None => None,
            };
            let result = run::run(&LoadSpec {
                target: a.target,
                tcp: a.common.tcp,
                plans,
                calls: a.calls.or((a.hold == 0).then_some(a.concurrency)),
                concurrency: a.concurrency,
                rate: a.common.rate,
                hold: Duration::from_secs(a.hold),
                threads: a.common.threads,
                server_pid: a.server_pid,
                progress: !a.common.no_progress && !a.common.json,
                max_duration: Duration::from_secs(a.max_duration),
                whip: http.map(|http| WhipTarget {
                    http,
                    token: std::env::var("LOADTEST_TOKEN")
                        .ok()
                        .filter(|t| !t.is_empty()),
                }),
                browsers: a.whip.is_some(),
                answer,
                answerers: if a.answer.is_some() { a.answerers } else { 0 },
            })?;
            if a.common.json {
                println!("{}", serde_json::to_string_pretty(&report::json(&result))?);
            } else {
                print!("{}", report::table(&result));
            }
            let m = &result.measure;
            if m.failed_total() > 0 || m.passed == 0 || !m.agent_failed.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Capacity(a) => capacity_main(a),
    }
}

fn capacity_main(a: CapacityArgs) -> anyhow::Result<()> {
    let plans = load_plans(&a.common)?;
    let server_bin = match a.server_bin {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("careline"))
            .context("locating the careline binary")?,
    };
    if !server_bin.is_file() {
        bail!(
            "{} not found: build it (cargo build --release --bin careline) or pass --server-bin",
            server_bin.display()
        );
    }
    let sipp_dir = match (a.no_sipp, a.sipp_dir) {
        (true, _) => None,
        (false, Some(dir)) => Some(dir),
        // The conformance corpus: CARELINE_CONFORMANCE_DIR, else the workspace's copy; a
        // clone without either skips the cross-check and says so.
        (false, None) => {
            let dir = std::env::var_os("CARELINE_CONFORMANCE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("../shared/conformance"))
                .join("sipp");
            if dir.join("ivr-rfc2833-digit.xml").is_file() {
                Some(dir)
            } else {
                eprintln!(
                    "SIPp cross-check skipped: {} not found (set CARELINE_CONFORMANCE_DIR or --sipp-dir)",
                    dir.join("ivr-rfc2833-digit.xml").display()
                );
                None
            }
        }
    };
    let spec = CapacitySpec {
        server_bin,
        prompts: a.common.prompts.clone(),
        plans,
        levels: a.levels.clone(),
        rate: a.common.rate,
        hold: Duration::from_secs(a.hold),
        threads: a.common.threads,
        tcp: a.common.tcp,
        slo: Slo::default(),
        sipp_dir,
        keep_going: a.keep_going,
        progress: !a.common.no_progress && !a.common.json,
        nice: a.nice,
    };
    if a.nice != 0 {
        // This thread's niceness, inherited by the worker threads it starts.
        // SAFETY: setpriority only reads its integer arguments.
        let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, a.nice) };
        if r != 0 {
            eprintln!(
                "could not set niceness {} (needs root); continuing without",
                a.nice
            );
        }
    }
    let json = a.common.json;
    if !json {
        eprintln!(
            "capacity: levels {:?}, {} calls/s, hold {} s, {} generator thread(s), nice {}; SLO: no \
             failed call, no loss, p99 deviation <= {} ms, p99 DTMF <= {} ms",
            spec.levels,
            spec.rate,
            a.hold,
            spec.threads,
            spec.nice,
            spec.slo.max_deviation_p99_ms,
            spec.slo.max_dtmf_p99_ms
        );
        print!("{}", capacity::header());
    }
    let mut levels = Vec::new();
    let mut held: Option<u64> = None;
    for &n in &spec.levels {
        let level = capacity::run_level(&spec, n)?;
        if !json {
            print!("{}", capacity::row(&level));
        }
        let ok = level.breaches.is_empty();
        if ok {
            held = Some(n);
        }
        levels.push(level);
        if !ok && !spec.keep_going {
            break;
        }
    }
    if !json {
        match held {
            Some(n) => println!("highest level that held the SLO: {n} concurrent calls"),
            None => println!("no level held the SLO"),
        }
    }
    let mut sipp = None;
    if let (Some(dir), Some(n)) = (&spec.sipp_dir, held) {
        let s = capacity::sipp_check(&spec, dir, n)?;
        if !json {
            print!("{}", capacity::sipp_line(&s));
        }
        sipp = Some(s);
    }
    if json {
        let v = serde_json::json!({
            "levels": levels.iter().map(capacity::level_json).collect::<Vec<_>>(),
            "highest_held": held,
            "slo": spec.slo,
            "sipp": sipp.as_ref().map(capacity::sipp_json),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(())
}
