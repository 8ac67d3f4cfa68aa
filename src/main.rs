//! The `careline` command line. Everything it runs lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use careline::config::{Config, LogFormat, Overrides, PortRange};
use careline::server::Server;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "careline",
    version,
    about = "Self-hosted voice platform for healthcare contact centers"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes, so any command can be pointed at any instance.
#[derive(Args)]
struct Common {
    /// Configuration file (default: ./careline.toml when present)
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory: keys, certificates, database, recordings (default ./data)
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log format: text or json
    #[arg(long, global = true, value_name = "FORMAT", value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: SIP (UDP, TCP, TLS), media, HTTP health and metrics.
    Serve(ServeArgs),
    /// Print the effective configuration (defaults < file < CARELINE_* env < flags) as TOML.
    Config(ServeArgs),
    /// Contact flows (Amazon Connect flow language).
    #[command(subcommand)]
    Flow(FlowCommand),
    /// Care-coordination workflows (Amazon States Language state machines).
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// Recordings: list, export decrypted audio, verify integrity.
    #[command(subcommand)]
    Recording(RecordingCommand),
    /// Master keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Users, roles and API tokens.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Patient records.
    Patient {
        #[command(subcommand)]
        command: PatientCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user and print a bearer token for it (shown once).
    Add {
        name: String,
        /// admin, supervisor, clinician, agent, auditor or service
        #[arg(long, value_parser = parse_role)]
        role: careline::auth::Role,
        /// Also read a password (for browser sign-in) from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users: name, role, created, disabled.
    List,
    /// Disable a user: tokens and sessions stop working at once; the account stays.
    Disable { name: String },
    /// Enable a disabled user again.
    Enable { name: String },
    /// List a user's API tokens (never their secrets).
    Tokens { name: String },
    /// Issue a new API token for a user (shown once). Rotation: issue, switch, revoke the old.
    IssueToken { name: String },
    /// Revoke an API token by its id (the part after `clt_`, before the next `_`).
    RevokeToken { id: String },
    /// Give a user (agent, clinician, supervisor) a new SIP secret for their phone, shown
    /// once: the phone registers and calls in with the user's name and this secret (digest
    /// authentication, realm `[sip] realm`). Replaces the old one at once.
    SipSecret {
        name: String,
        /// Remove the user's SIP secret instead: their phones can no longer register.
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Subcommand)]
enum PatientCommand {
    /// Import FHIR R4 Bundles (transaction or collection), each whole or not at all.
    Import {
        #[arg(required = true, value_name = "BUNDLE")]
        bundles: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain: prints OK, or names the first broken entry (exit status 1).
    Verify,
}

#[derive(Subcommand)]
enum RecordingCommand {
    /// List recordings (id, call, start, duration, state, size, key).
    List {
        /// One JSON object per line instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Decrypt a recording to a file (.ogg/.opus or .wav, by the name's extension).
    Export {
        /// Recording id (rec-...)
        id: String,
        /// Output file
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Check a recording (or all) chunk by chunk against its key and the index.
    Verify {
        /// Recording id (rec-...)
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Every recording in the index
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new master key current and re-wrap every recording's data key under it
    /// (headers only; the audio is not re-encrypted), and every sealed patient resource and
    /// contact record's data key (the database). Run it with the server stopped, or restart
    /// the server afterwards: a running server knows only the keys it started with.
    Rotate,
}

#[derive(Subcommand)]
enum FlowCommand {
    /// Check flow files as `serve` would load them: every problem, each naming file, action
    /// Identifier, Type and reason. Exits 1 when any file would not load.
    Validate {
        /// Flow files (bare or DescribeContactFlow-wrapped JSON)
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Load unsupported action types with their error branch (flows.strict = false)
        #[arg(long)]
        lenient: bool,
    },
}

#[derive(Subcommand)]
enum WorkflowCommand {
    /// Check state machine definitions as Step Functions would before accepting them: every
    /// problem, each naming file, state and the rule broken. Exits 1 when any file has an error.
    Validate {
        /// Definition files (Amazon States Language JSON)
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Run one execution here and now, for trying a workflow out: each Task's Lambda function
    /// (the ARN's function name) is called through `[lambda.NAME] url`, as flows call theirs.
    /// Prints the history; exits 1 when the execution fails. Not durable: a stopped process
    /// loses the execution.
    Run {
        /// Definition file (Amazon States Language JSON)
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The execution's input (JSON)
        #[arg(long, default_value = "{}")]
        input: String,
        /// Fire Wait states and retry back-offs at once instead of waiting for them
        #[arg(long)]
        skip_waits: bool,
        /// Seconds each task invocation may take
        #[arg(long, default_value_t = 30)]
        task_timeout: u64,
    },
    /// Start an execution of a workflow the server runs (by name, from `[workflows] dir`):
    /// stored at once; the running server carries it out (within five seconds). With
    /// --name, starting it again with the same input starts nothing new.
    Start {
        /// The workflow's name (its file name without .asl.json)
        workflow: String,
        /// The execution's input (JSON object; `patient_id` names the patient)
        #[arg(long, default_value = "{}")]
        input: String,
        /// The execution's name (1 to 40 letters, digits, hyphens): its id is WORKFLOW.NAME
        #[arg(long)]
        name: Option<String>,
    },
    /// Executions, newest first: id, status, state, started, next timer.
    List {
        /// RUNNING, SUCCEEDED, FAILED or ABORTED
        #[arg(long)]
        status: Option<String>,
        /// Only this patient's
        #[arg(long)]
        patient: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// One execution: status, state, timer, outcome and history.
    Describe { id: String },
    /// Stop a running execution: no further step is taken.
    Stop { id: String },
}

#[derive(Args, Default)]
struct ServeArgs {
    /// SIP UDP and TCP listen address
    #[arg(long, value_name = "ADDR:PORT")]
    sip_listen: Option<SocketAddr>,
    /// SIP over TLS listen address
    #[arg(long, value_name = "ADDR:PORT")]
    tls_listen: Option<SocketAddr>,
    /// Do not listen for SIP over TLS
    #[arg(long, conflicts_with = "tls_listen")]
    no_tls: bool,
    /// HTTP listen address (/healthz, /metrics)
    #[arg(long, value_name = "ADDR:PORT")]
    http_listen: Option<SocketAddr>,
    /// RTP port range
    #[arg(long, value_name = "LO-HI")]
    rtp_ports: Option<PortRange>,
    /// Maximum concurrent calls (503 + Retry-After beyond)
    #[arg(long, value_name = "N")]
    max_calls: Option<usize>,
    /// Prompt folder (<lang>/<name>.wav)
    #[arg(long, value_name = "DIR")]
    prompts_dir: Option<PathBuf>,
    /// Record every call (recording.record_all)
    #[arg(long)]
    record_all: bool,
}

fn parse_role(s: &str) -> Result<careline::auth::Role, String> {
    s.parse()
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("`{other}` is not text or json")),
    }
}

fn load(common: &Common, args: &ServeArgs) -> anyhow::Result<Config> {
    let overrides = Overrides {
        data_dir: common.data_dir.clone(),
        sip_listen: args.sip_listen,
        tls_listen: args.tls_listen,
        no_tls: args.no_tls,
        http_listen: args.http_listen,
        rtp_ports: args.rtp_ports,
        max_calls: args.max_calls,
        prompts_dir: args.prompts_dir.clone(),
        log_format: common.log_format,
        record_all: args.record_all,
    };
    Ok(Config::load(
        common.config.as_deref(),
        std::env::vars(),
        &overrides,
    )?)
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() {
    if let Err(e) = run() {
        // One readable line with its causes, not a Debug dump: operators read this. Most of
        // Careline's errors already name their cause in their message; skip repeats.
        let mut msg = e.to_string();
        for cause in e.chain().skip(1) {
            let c = cause.to_string();
            if !msg.contains(&c) {
                msg.push_str(": ");
                msg.push_str(&c);
            }
        }
        eprintln!("careline: {msg}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Config(args) => {
            let config = load(&cli.common, args)?;
            print!("{}", toml_of(&config)?);
            Ok(())
        }
        Command::Flow(FlowCommand::Validate { files, lenient }) => {
            let mut config = load(&cli.common, &ServeArgs::default())?;
            if *lenient {
                config.flows.strict = false;
            }
            // Prompts resolve PromptId references; without the folder those are reported.
            let prompts = careline::shipped::prompt_library(&config.prompts.dir)
                .map(std::sync::Arc::new)
                .map_err(|e| eprintln!("careline: warning: prompts not loaded ({e})"))
                .ok();
            let diagnostics = careline::flow::engine::validate_files(&config, prompts, files);
            for d in &diagnostics {
                println!("{d}");
            }
            let errors = diagnostics.iter().filter(|d| d.is_error()).count();
            if errors > 0 {
                anyhow::bail!("{errors} error(s) in {} file(s)", files.len());
            }
            println!("{} file(s) OK", files.len());
            Ok(())
        }
        Command::Workflow(WorkflowCommand::Validate { files }) => {
            let mut failed = 0;
            for file in files {
                let problems = match std::fs::read_to_string(file) {
                    Ok(text) => careline::workflow::validate(&text),
                    Err(e) => {
                        println!("{}: error: cannot read it: {e}", file.display());
                        failed += 1;
                        continue;
                    }
                };
                for p in &problems {
                    println!("{}: {p}", file.display());
                }
                if problems.iter().any(|p| p.is_error()) {
                    failed += 1;
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} of {} file(s) would not load", files.len());
            }
            println!("{} file(s) OK", files.len());
            Ok(())
        }
        Command::Workflow(WorkflowCommand::Run {
            file,
            input,
            skip_waits,
            task_timeout,
        }) => {
            let config = load(&cli.common, &ServeArgs::default())?;
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let definition = careline::workflow::Definition::load(&text).map_err(|problems| {
                let lines: Vec<String> = problems
                    .iter()
                    .map(|p| format!("{}: {p}", file.display()))
                    .collect();
                anyhow::anyhow!("{}", lines.join("\n"))
            })?;
            let input: serde_json::Value =
                serde_json::from_str(input).context("--input is not JSON")?;
            block_on(workflow_run(
                config,
                definition,
                input,
                *skip_waits,
                Duration::from_secs(*task_timeout),
            ))
        }
        Command::Workflow(
            command @ (WorkflowCommand::Start { .. }
            | WorkflowCommand::List { .. }
            | WorkflowCommand::Describe { .. }
            | WorkflowCommand::Stop { .. }),
        ) => records_command(&cli.common, |records, config| async move {
            workflow_records(&records, &config, command).await
        }),
        Command::User { command } => records_command(&cli.common, |records, _config| async move {
            match command {
                UserCommand::Add {
                    name,
                    role,
                    password_stdin,
                } => user_add(&records, name, *role, *password_stdin).await,
                UserCommand::List => {
                    for u in records.auth.list_users().await? {
                        println!(
                            "{}\t{}\tcreated {}\t{}",
                            u.name,
                            u.role,
                            u.created,
                            u.disabled
                                .map(|d| format!("disabled {d}"))
                                .unwrap_or_else(|| "active".into())
                        );
                    }
                    Ok(())
                }
                UserCommand::Disable { name } => {
                    records.auth.set_disabled(name, true, "cli").await?;
                    println!("user {name} disabled: its tokens and sessions no longer work");
                    Ok(())
                }
                UserCommand::Enable { name } => {
                    records.auth.set_disabled(name, false, "cli").await?;
                    println!("user {name} enabled");
                    Ok(())
                }
                UserCommand::Tokens { name } => {
                    for t in records.auth.list_tokens(name).await? {
                        let state = match (&t.revoked, t.active) {
                            (Some(r), _) => format!("revoked {r}"),
                            (None, true) => "active".into(),
                            (None, false) => "expired or user disabled".into(),
                        };
                        println!(
                            "{}\tcreated {}\texpires {}\tlast used {}\t{state}",
                            t.id,
                            t.created,
                            t.expires.as_deref().unwrap_or("never"),
                            t.last_used.as_deref().unwrap_or("never"),
                        );
                    }
                    Ok(())
                }
                UserCommand::IssueToken { name } => {
                    let token = records.auth.issue_token(name, "cli").await?;
                    println!("new API token for {name} (shown once, keep it secret):");
                    println!("{token}");
                    Ok(())
                }
                UserCommand::RevokeToken { id } => {
                    records.auth.revoke_token(id, "cli").await?;
                    println!("token {id} revoked");
                    Ok(())
                }
                UserCommand::SipSecret { name, clear: true } => {
                    if records.sip_secrets.clear(name, "cli").await? {
                        println!(
                            "SIP secret of {name} removed: their phones can no longer register"
                        );
                    } else {
                        println!("{name} had no SIP secret");
                    }
                    Ok(())
                }
                UserCommand::SipSecret { name, clear: false } => {
                    let secret = records.sip_secrets.set(name, "cli").await?;
                    println!("new SIP secret for {name} (shown once; enter it in their phone):");
                    println!("{}", secret.as_str());
                    Ok(())
                }
            }
        }),
        Command::Patient { command } => {
            records_command(&cli.common, |records, config| async move {
                match command {
                    PatientCommand::Import { bundles } => {
                        patient_import(&records, &config, bundles).await
                    }
                }
            })
        }
        Command::Audit { command } => records_command(&cli.common, |records, _config| async move {
            match command {
                AuditCommand::Verify => audit_verify(&records).await,
            }
        }),
        Command::Serve(args) => {
            let config = load(&cli.common, args)?;
            init_logging(&config);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(serve(config))
        }
        Command::Recording(cmd) => {
            let config = load(&cli.common, &ServeArgs::default())?;
            block_on(recording(config, cmd))
        }
        Command::Keys(KeysCommand::Rotate) => {
            let config = load(&cli.common, &ServeArgs::default())?;
            block_on(rotate(config))
        }
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f)
}

fn archive(config: &Config) -> anyhow::Result<careline::recording::Archive> {
    use std::sync::Arc;
    let ring =
        careline::keys::KeyRing::open(&config.data_dir, careline::keys::Supplied::from_env())?;
    Ok(careline::recording::Archive::open(
        &config.recording,
        &config.data_dir,
        Arc::new(ring),
        Arc::new(careline::metrics::Metrics::new()),
    )?)
}

fn parse_id(id: &str) -> anyhow::Result<careline::recording::RecordingId> {
    Ok(id.parse()?)
}

async fn recording(config: Config, cmd: &RecordingCommand) -> anyhow::Result<()> {
    let archive = archive(&config)?;
    match cmd {
        RecordingCommand::List { json } => {
            let rows = archive.list()?;
            if *json {
                for r in rows {
                    println!("{}", serde_json::to_string(&r)?);
                }
                return Ok(());
            }
            println!(
                "{:<36}  {:<24}  {:>8}  {:<9}  {:>9}  {:<19}  call",
                "id", "started (UTC)", "seconds", "state", "bytes", "key"
            );
            for r in rows {
                let state = match (r.state, r.recovered, r.uploaded) {
                    (careline::recording::index::State::Sealed, true, _) => "recovered",
                    (careline::recording::index::State::Sealed, _, false) => "spooled",
                    (s, _, _) => match s {
                        careline::recording::index::State::Recording => "recording",
                        careline::recording::index::State::Sealed => "sealed",
                        careline::recording::index::State::Deleted => "deleted",
                    },
                };
                println!(
                    "{:<36}  {:<24}  {:>8.1}  {:<9}  {:>9}  {:<19}  {}",
                    r.id.to_string(),
                    careline::recording::index::day_of(r.started_ms)
                        + &format!(" +{}s", (r.started_ms % 86_400_000) / 1000),
                    r.duration_ms as f64 / 1000.0,
                    state,
                    r.size,
                    r.key_id,
                    r.call_id
                );
            }
            Ok(())
        }
        RecordingCommand::Export { id, output } => {
            let report = archive.export(parse_id(id)?, output).await?;
            if let Some(t) = &report.truncated {
                eprintln!("careline: warning: {id}: {t}");
            }
            eprintln!(
                "{id}: {} bytes written to {}",
                report.bytes,
                output.display()
            );
            Ok(())
        }
        RecordingCommand::Verify { id, all } => {
            let ids: Vec<_> = if *all {
                archive
                    .list()?
                    .into_iter()
                    .filter(|r| r.state != careline::recording::index::State::Deleted)
                    .map(|r| r.id)
                    .collect()
            } else {
                vec![parse_id(id.as_deref().unwrap_or_default())?]
            };
            let mut bad = 0;
            for id in &ids {
                match archive.verify(*id).await {
                    Ok(v) => println!(
                        "{id}: ok ({} chunks, {} audio bytes, key {})",
                        v.summary.chunks, v.summary.plaintext_bytes, v.summary.key_id
                    ),
                    Err(e) => {
                        bad += 1;
                        println!("{id}: FAILED: {e}");
                    }
                }
            }
            if bad > 0 {
                anyhow::bail!("{bad} of {} recordings failed verification", ids.len());
            }
            Ok(())
        }
    }
}

async fn rotate(config: Config) -> anyhow::Result<()> {
    use std::sync::Arc;
    let mut ring =
        careline::keys::KeyRing::open(&config.data_dir, careline::keys::Supplied::from_env())?;
    let old = ring.current_id();
    let new = ring.rotate()?;
    let ring = Arc::new(ring);
    let archive = careline::recording::Archive::open(
        &config.recording,
        &config.data_dir,
        ring.clone(),
        Arc::new(careline::metrics::Metrics::new()),
    )?;
    // The patient store seals with the same key ring: its data keys move too.
    let db = careline::db::Db::open(Some(&config.database.url), &config.data_dir).await?;
    let patients = careline::patient::PatientStore::new(
        db.clone(),
        ring.clone(),
        Arc::new(careline::patient::AlertTables::shipped()),
        &config.patients.default_country_code,
    );
    let workflows = careline::workflow::store::Store::new(db.clone(), ring.clone());
    let rooms = careline::rooms::store::RoomStore::new(db.clone(), ring.clone());
    let callbacks = careline::routing::callbacks::CallbackStore::new(db.clone(), ring.clone());
    let sip_secrets = careline::auth::sip::SipSecrets::new(
        db.clone(),
        ring.clone(),
        careline::audit::Audit::new(db.clone(), ring.clone()),
        &careline::auth::AuthSettings::default(),
        None,
    );
    let (mut done, _) = archive.rewrap_all().await?;
    let mut sip_values = sip_secrets.reseal_all().await?;
    let mut resealed = patients.reseal_all().await?;
    let mut workflow_values = workflows.reseal_all().await?;
    let mut room_values = rooms.reseal_all().await?;
    let mut callback_values = callbacks.reseal_all().await?;
    // A running server takes the new key on its next look at the key folder: what it
    // sealed until then (a recording opened, a contact record written, perhaps while the
    // first pass was reading) is still under the old key. A second pass after that moment
    // re-wraps it, and reports what cannot be.
    println!("new master key {new}: waiting for a running server to take it, then a second pass");
    tokio::time::sleep(careline::keys::REFRESH_EVERY * 2).await;
    let (more, failed) = archive.rewrap_all().await?;
    done += more;
    resealed += patients.reseal_all().await?;
    workflow_values += workflows.reseal_all().await?;
    sip_values += sip_secrets.reseal_all().await?;
    room_values += rooms.reseal_all().await?;
    callback_values += callbacks.reseal_all().await?;
    println!(
        "new master key {new} (was {old}); {done} recordings re-wrapped; {resealed} patient resources and contact records re-sealed; {workflow_values} workflow values re-sealed; {sip_values} SIP secrets re-sealed; {room_values} room fields re-sealed; {callback_values} callback numbers and patients re-sealed"
    );
    let audit_kept = careline::audit::Audit::new(db, ring.clone())
        .sealed_under_other_keys(&new)
        .await?;
    if audit_kept > 0 {
        println!(
            "{audit_kept} audit entries keep free text (break-glass reasons, import errors) sealed under older master keys: the hash chain covers it, so keep those keys in <data_dir>/keys"
        );
    }
    for (id, why) in &failed {
        println!("{id}: NOT re-wrapped: {why}");
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "{} recordings could not be re-wrapped; keep the old master keys until they are",
            failed.len()
        );
    }
    Ok(())
}

/// Runs a subcommand that works on the database and keys of the configured instance.
fn records_command<'a, F, Fut>(common: &Common, f: F) -> anyhow::Result<()>
where
    F: FnOnce(std::sync::Arc<careline::api::access::ApiState>, Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + 'a,
{
    let overrides = Overrides {
        data_dir: common.data_dir.clone(),
        log_format: common.log_format,
        ..Overrides::default()
    };
    let config = Config::load(common.config.as_deref(), std::env::vars(), &overrides)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("data dir {}", config.data_dir.display()))?;
        let records = careline::api::access::ApiState::open(&config, None).await?;
        f(std::sync::Arc::new(records), config).await
    })
}

async fn user_add(
    records: &careline::api::access::ApiState,
    name: &str,
    role: careline::auth::Role,
    password_stdin: bool,
) -> anyhow::Result<()> {
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        Some(line.trim_end_matches(['\r', '\n']).to_string())
    } else {
        None
    };
    // Checked whole before anything is written: a refused password creates no user.
    let token = records
        .auth
        .create_user(name, role, password.as_deref(), "cli")
        .await?;
    println!("user {name} ({role}) created; API token (shown once, keep it secret):");
    println!("{token}");
    Ok(())
}

async fn patient_import(
    records: &careline::api::access::ApiState,
    config: &Config,
    bundles: &[PathBuf],
) -> anyhow::Result<()> {
    use careline::audit::{Event, action};
    use careline::workflow::runner::{Catalog, DischargeTrigger, Starter};
    // Discharges in the bundles start their follow-up; a running server carries it out.
    let trigger = if config.workflows.on_discharge.is_empty() {
        None
    } else {
        let catalog = Catalog::load(&config.workflows.dir)?;
        let now = careline::db::now_ms();
        let starter = Starter::new(records.workflows.clone(), catalog, now).await?;
        DischargeTrigger::new(starter, &config.workflows)?
    };
    let mut failed = 0;
    for path in bundles {
        let result = async {
            let text = std::fs::read(path).context("reading")?;
            let bundle: serde_json::Value = serde_json::from_slice(&text).context("not JSON")?;
            Ok::<_, anyhow::Error>(records.patients.import_bundle(&bundle).await?)
        }
        .await;
        match result {
            Ok(report) => {
                for p in &report.patients {
                    records
                        .audit
                        .append(
                            Event::new("cli", action::PATIENT_WRITE, "success")
                                .patient(p)
                                .detail(serde_json::json!({"import": "bundle", "resources": report.resources})),
                        )
                        .await?;
                }
                println!(
                    "{}: imported {} resources ({} patient{})",
                    path.display(),
                    report.resources,
                    report.patients.len(),
                    if report.patients.len() == 1 { "" } else { "s" }
                );
                if let Some(t) = &trigger {
                    let done = t
                        .on_import(&report.care, careline::db::now_ms(), None)
                        .await;
                    records.audit_follow_ups("cli", &report, &done).await?;
                    print_follow_ups(&config.workflows.on_discharge, &done);
                    anyhow::ensure!(
                        done.failed.is_empty(),
                        "discharge follow-ups not started: {}",
                        done.failed.join("; ")
                    );
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!(
                    "{}: {e:#}; nothing from this bundle was imported",
                    path.display()
                );
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} of {} bundles failed", bundles.len());
    Ok(())
}

/// `careline workflow start|list|describe|stop`, on the database the server uses; audited
/// with the actor `cli`.
async fn workflow_records(
    records: &careline::api::access::ApiState,
    config: &Config,
    command: &WorkflowCommand,
) -> anyhow::Result<()> {
    use careline::audit::{Event, action};
    use careline::workflow::runner::{Catalog, Started, Starter};
    let store = &records.workflows;
    let audit = |what: &'static str, id: &str, patient: Option<String>| {
        let mut e = Event::new("cli", what, "success").detail(serde_json::json!({"execution": id}));
        if let Some(p) = &patient {
            e = e.patient(p);
        }
        e
    };
    match command {
        WorkflowCommand::Start {
            workflow,
            input,
            name,
        } => {
            let input: serde_json::Value =
                serde_json::from_str(input).context("--input is not JSON")?;
            anyhow::ensure!(input.is_object(), "--input must be a JSON object");
            if let Some(p) = input.get("patient_id").and_then(|p| p.as_str()) {
                anyhow::ensure!(records.patients.exists(p).await?, "no patient `{p}`");
            }
            let catalog = Catalog::load(&config.workflows.dir)?;
            let starter = Starter::new(store.clone(), catalog, careline::db::now_ms()).await?;
            let (started, _) = starter
                .start(workflow, name.as_deref(), input, careline::db::now_ms())
                .await?;
            let (summary, new) = match started {
                Started::New(s) => (s, true),
                Started::Existing(s) => (s, false),
            };
            records
                .audit
                .append(audit(
                    action::WORKFLOW_START,
                    &summary.id,
                    summary.patient_id.clone(),
                ))
                .await?;
            if new {
                println!("started {} (a running server carries it out)", summary.id);
            } else {
                println!(
                    "{} was started before with this input: {}",
                    summary.id, summary.status
                );
            }
        }
        WorkflowCommand::List {
            status,
            patient,
            limit,
        } => {
            if let Some(st) = status {
                anyhow::ensure!(
                    careline::workflow::store::STATUSES.contains(&st.as_str()),
                    "--status is RUNNING, SUCCEEDED, FAILED or ABORTED"
                );
            }
            let list = store
                .list(
                    status.as_deref(),
                    patient.as_deref(),
                    (*limit).clamp(1, 10_000),
                )
                .await?;
            let mut event = Event::new("cli", action::WORKFLOW_READ, "success")
                .detail(serde_json::json!({"list": list.len()}));
            if let Some(p) = patient {
                event = event.patient(p);
            }
            records.audit.append(event).await?;
            for x in list {
                println!(
                    "{}  {:<9}  {:<24}  started {}{}",
                    x.id,
                    x.status,
                    x.state,
                    x.started,
                    x.wakes.map(|w| format!("  wakes {w}")).unwrap_or_default()
                );
            }
        }
        WorkflowCommand::Describe { id } => {
            let summary = store.summary(id).await?;
            records
                .audit
                .append(audit(action::WORKFLOW_READ, id, summary.patient_id.clone()))
                .await?;
            let history = store.history(id).await?;
            let mut body = serde_json::to_value(&summary)?;
            body["history"] = serde_json::to_value(history)?;
            println!("{}", serde_json::to_string_pretty(&body)?);
        }
        WorkflowCommand::Stop { id } => {
            let summary = store.summary(id).await?;
            anyhow::ensure!(
                store
                    .stop(id, "stopped by cli", careline::db::now_ms())
                    .await?,
                "{id} already ended ({})",
                summary.status
            );
            records
                .audit
                .append(audit(action::WORKFLOW_STOP, id, summary.patient_id))
                .await?;
            println!("stopped {id}");
        }
        WorkflowCommand::Validate { .. } | WorkflowCommand::Run { .. } => {}
    }
    Ok(())
}

/// Drives one workflow execution in this process (`careline workflow run`).
async fn workflow_run(
    config: Config,
    definition: careline::workflow::Definition,
    input: serde_json::Value,
    skip_waits: bool,
    task_timeout: Duration,
) -> anyhow::Result<()> {
    use careline::workflow::{Action, Event, Execution, Outcome};
    // With --skip-waits the execution's clock runs ahead of the wall clock by the waits
    // skipped, so its history stays in order.
    let mut skipped = 0i64;
    let now_ms = |skipped: i64| careline::db::now_ms() + skipped;
    // Each Task's function: its [lambda.NAME] url, else a built-in task ([workflows.tasks]).
    // The built-in notification tasks write to the work list in the configured database.
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("data dir {}", config.data_dir.display()))?;
    let records = careline::api::access::ApiState::open(&config, None).await?;
    let tasks = careline::workflow::runner::Tasks::new(
        careline::flow::lambda::Lambdas::new(
            &config.lambda,
            careline::flow::http::HttpClient::new(),
        ),
        &config.workflows,
        records.care_tasks.clone(),
    )?
    .with_records(records.patients.clone(), records.audit.clone())
    .with_notices(records.outbox.clone(), !config.smtp.host.is_empty());
    // Notices (a care task's webhook and e-mail) go out once the execution ends; what the
    // relay does not take then stays owed in the database, for the server to send.
    let postman = careline::notify::Postman::new(
        records.outbox.clone(),
        careline::notify::mail::Mailer::from_config(&config.smtp)?,
        None,
    );
    let id = format!("run-{:016x}", rand::random::<u64>());
    let result: anyhow::Result<()> = async {
        let mut e = Execution::start(
            std::sync::Arc::new(definition),
            &id,
            input,
            now_ms(skipped),
            rand::random(),
        );
        println!("execution {id} started");
        let mut shown = 0;
        loop {
            for h in &e.history()[shown..] {
                match &h.state {
                    Some(s) => println!("{} {} {s}", careline::db::rfc3339(h.at_ms), h.kind),
                    None => println!("{} {}", careline::db::rfc3339(h.at_ms), h.kind),
                }
            }
            shown = e.history().len();
            if let Some(action) = e.poll_action() {
                match action {
                    Action::Invoke {
                        task,
                        resource,
                        input,
                        timeout_secs,
                    } => {
                        let function = careline::workflow::function_name(&resource);
                        let timeout = timeout_secs.map_or(task_timeout, Duration::from_secs);
                        let key = task.key(&id);
                        let event = match tasks.invoke(function, &input, &key, timeout).await {
                            Ok(output) => Event::TaskSucceeded { task, output },
                            Err(e) => {
                                println!("  {function} failed: {}: {}", e.error, e.cause);
                                Event::TaskFailed {
                                    task,
                                    error: e.error,
                                    cause: e.cause,
                                }
                            }
                        };
                        e.handle(event, now_ms(skipped));
                    }
                    Action::Finished(Outcome::Succeeded(output)) => {
                        println!("succeeded: {output}");
                        return Ok(());
                    }
                    Action::Finished(Outcome::Failed { error, cause }) => {
                        anyhow::bail!("execution {id} failed: {error}: {cause}");
                    }
                }
                continue;
            }
            let Some(due) = e.poll_timeout() else {
                anyhow::bail!("execution {id} stopped with nothing to do");
            };
            let wait = (due - now_ms(skipped)).max(0);
            if skip_waits {
                skipped += wait;
                println!("  skipping a wait of {} s", wait / 1000);
            } else {
                println!("  waiting {} s", wait / 1000);
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
            e.handle_timeout(now_ms(skipped).max(due));
        }
    }
    .await;
    if let Err(e) = postman.deliver_due(careline::db::now_ms()).await {
        eprintln!("notices could not be read: {e}");
    }
    result
}

fn print_follow_ups(workflow: &str, done: &careline::workflow::runner::Triggered) {
    if !done.started.is_empty() || done.repeated > 0 {
        println!(
            "  discharges: {} {workflow} execution{} started, {} started before",
            done.started.len(),
            if done.started.len() == 1 { "" } else { "s" },
            done.repeated
        );
    }
}

async fn audit_verify(records: &careline::api::access::ApiState) -> anyhow::Result<()> {
    match records.audit.verify().await? {
        Ok(n) => {
            println!("audit trail OK: {n} entries, chain intact");
            Ok(())
        }
        Err(broken) => anyhow::bail!("{broken}"),
    }
}

/// The effective configuration as TOML, secrets shown as `***` (it is printed and pasted
/// into tickets).
fn toml_of(config: &Config) -> anyhow::Result<String> {
    let mut shown = config.clone();
    if !shown.smtp.password.is_empty() {
        shown.smtp.password = "***".into();
    }
    shown.database.url = careline::db::redact(&shown.database.url);
    Ok(toml::to_string_pretty(&shown)?)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let grace = Duration::from_secs(config.calls.drain_grace_secs);
    let server = Server::start(config).await?;
    wait_for_shutdown().await;
    server.drain(grace).await;
    Ok(())
}

async fn wait_for_shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
    }
}
