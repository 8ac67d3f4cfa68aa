//! The capacity benchmark: for each concurrency level (250, 500, 1000, ...) a fresh server,
//! a ramp to the level, a hold, a ramp-down; the first level that breaks the SLO ends the
//! ramp. Then SIPp drives the highest level that held with the shared conformance scenario.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::caller::Plan;
use crate::report::{self, Slo, percentiles};
use crate::run::{self, LoadResult, LoadSpec};
use crate::server::ServerProcess;

pub struct CapacitySpec {
    pub server_bin: PathBuf,
    pub prompts: PathBuf,
    pub plans: Arc<Vec<Arc<Plan>>>,
    pub levels: Vec<u64>,
    pub rate: f64,
    pub hold: Duration,
    pub threads: usize,
    pub tcp: bool,
    pub slo: Slo,
    /// The folder with `ivr-rfc2833-digit.xml`, for the SIPp cross-check.
    pub sipp_dir: Option<PathBuf>,
    /// Run every level even after one broke the SLO.
    pub keep_going: bool,
    pub progress: bool,
    /// Niceness of the server and the generator (see `--nice`).
    pub nice: i32,
}

pub struct Level {
    pub concurrency: u64,
    pub result: LoadResult,
    pub breaches: Vec<String>,
    pub idle_rss: u64,
}

pub struct SippCheck {
    pub concurrency: u64,
    pub passed: bool,
    pub successful: u64,
    pub failed: u64,
    pub digits: f64,
    pub server_cpu_percent: f64,
    pub server_rss_max: u64,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    #[error(transparent)]
    Run(#[from] run::RunError),
    #[error("sipp: {0}")]
    Sipp(String),
}

const RTP_PORTS: (u16, u16) = (20000, 39999);

pub fn header() -> String {
    format!(
        "{:>7} {:>11} {:>9} {:>9} {:>10} {:>10} {:>10} {:>7} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8}  {}\n",
        "calls",
        "passed",
        "setup50",
        "setup99",
        "jitter99",
        "deviat99",
        "dtmf99",
        "loss",
        "srv CPU",
        "srv RSS",
        "KiB/call",
        "gen CPU",
        "gen user",
        "gen late",
        "SLO"
    )
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1} ms"))
}

pub fn row(l: &Level) -> String {
    let m = &l.result.measure;
    let p = |h| percentiles(h);
    let srv = l.result.server.unwrap_or_default();
    let per_call =
        srv.rss_max_bytes.saturating_sub(l.idle_rss) as f64 / 1024.0 / l.concurrency as f64;
    format!(
        "{:>7} {:>11} {:>9} {:>9} {:>10} {:>10} {:>10} {:>7} {:>7.0}% {:>5.0} MiB {:>8.0} {:>7.0}% {:>7.0}% {:>7.1}%  {}\n",
        l.concurrency,
        format!("{}/{}", m.passed, m.started),
        fmt_ms(p(&m.setup).map(|p| p[0])),
        fmt_ms(p(&m.setup).map(|p| p[2])),
        fmt_ms(p(&m.jitter).map(|p| p[2])),
        fmt_ms(p(&m.deviation).map(|p| p[2])),
        fmt_ms(p(&m.dtmf).map(|p| p[2])),
        m.rtp_lost,
        srv.cpu_percent,
        srv.rss_max_bytes as f64 / 1048576.0,
        per_call,
        l.result.generator.cpu_percent,
        l.result.generator.user_percent,
        m.late_ticks as f64 * 100.0 / m.ticks.max(1) as f64,
        if l.breaches.is_empty() {
            "held".to_string()
        } else {
            format!("BROKE: {}", l.breaches.join("; "))
        }
    )
}

pub fn level_json(l: &Level) -> Value {
    let mut v = report::json(&l.result);
    v["concurrency"] = json!(l.concurrency);
    v["slo_breaches"] = json!(l.breaches);
    v["server_idle_rss_bytes"] = json!(l.idle_rss);
    v
}

/// Runs one level against a fresh server.
pub fn run_level(spec: &CapacitySpec, n: u64) -> Result<Level, CapacityError> {
    let server = ServerProcess::start(
        &spec.server_bin,
        &spec.prompts,
        RTP_PORTS,
        n + n / 4 + 100,
        spec.nice,
        "",
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss = crate::procstat::sample(server.pid()).map_or(0, |s| s.rss_bytes);
    let result = run::run(&LoadSpec {
        target: server.sip,
        tcp: spec.tcp,
        plans: spec.plans.clone(),
        calls: None,
        concurrency: n,
        rate: spec.rate,
        hold: spec.hold,
        threads: spec.threads,
        server_pid: Some(server.pid()),
        progress: spec.progress,
        max_duration: Duration::from_secs(
            n / spec.rate.max(1.0) as u64 + spec.hold.as_secs() + 180,
        ),
        whip: None,
        browsers: false,
        answer: None,
        answerers: 0,
    })?;
    let breaches = spec.slo.breaches(&result);
    Ok(Level {
        concurrency: n,
        result,
        breaches,
        idle_rss,
    })
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map_or(0, |a| a.port())
}

fn free_even_port_run(span: u16) -> u16 {
    'search: for _ in 0..500 {
        let Ok(first) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = first.local_addr().map(|a| a.port()) else {
            continue;
        };
        if port % 2 != 0 || port.checked_add(span).is_none() {
            continue;
        }
        let mut held = vec![first];
        for p in port + 1..port + span {
            match UdpSocket::bind(("127.0.0.1", p)) {
                Ok(s) => held.push(s),
                Err(_) => continue 'search,
            }
        }
        return port;
    }
    0
}

fn free_control_port() -> u16 {
    loop {
        let p = free_udp_port();
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// SIPp with `ivr-rfc2833-digit.xml` at `n` concurrent calls against a fresh server; passes
/// when SIPp counts every call successful and the server detected every caller's digit.
pub fn sipp_check(spec: &CapacitySpec, dir: &Path, n: u64) -> Result<SippCheck, CapacityError> {
    let server = ServerProcess::start(
        &spec.server_bin,
        &spec.prompts,
        RTP_PORTS,
        n + n / 4 + 100,
        spec.nice,
        "",
    )?;
    // Each SIPp call lasts about 17 s (the server hangs up after its menu times out): start
    // them fast enough that all n are up together.
    let rate = spec.rate.max(n as f64 / 12.0).ceil() as u64;
    let timeout = n / rate + 60;
    let logs = std::env::temp_dir().join(format!("careline-sipp-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&logs).map_err(|e| CapacityError::Sipp(e.to_string()))?;
    let stdout = logs.join("stdout.txt");
    let errors = logs.join("errors.log");
    let out_file =
        std::fs::File::create(&stdout).map_err(|e| CapacityError::Sipp(e.to_string()))?;
    let mut sipp = if spec.nice != 0 {
        let mut c = Command::new("nice");
        c.args(["-n", &spec.nice.to_string(), "sipp"]);
        c
    } else {
        Command::new("sipp")
    };
    let mut child = sipp
        .current_dir(dir)
        .arg(server.sip.to_string())
        .args([
            "-sf",
            "ivr-rfc2833-digit.xml",
            "-s",
            "100",
            "-t",
            "u1",
            "-i",
            "127.0.0.1",
        ])
        .args([
            "-m",
            &n.to_string(),
            "-l",
            &n.to_string(),
            "-r",
            &rate.to_string(),
        ])
        .args(["-p", &free_udp_port().to_string()])
        .args(["-mp", &free_even_port_run(4).to_string()])
        .args(["-cp", &free_control_port().to_string()])
        .args([
            "-nostdin",
            "-timeout",
            &format!("{timeout}s"),
            "-timeout_error",
            "-trace_err",
        ])
        .arg("-error_file")
        .arg(&errors)
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            CapacityError::Sipp(format!("starting sipp (apt-get install sip-tester): {e}"))
        })?;
    let mut sampler_start = None;
    let mut rss_max = 0;
    let mut last = None;
    let started = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(timeout + 60) {
            let _ = child.kill();
            break child
                .wait()
                .map_err(|e| CapacityError::Sipp(e.to_string()))?;
        }
        if let Some(s) = crate::procstat::sample(server.pid()) {
            rss_max = rss_max.max(s.rss_bytes);
            // CPU over the window when every call is up: from the end of the ramp for 5 s.
            let up = started.elapsed().as_secs_f64() >= n as f64 / rate as f64;
            if up && sampler_start.is_none() {
                sampler_start = Some(s);
            } else if up && started.elapsed().as_secs_f64() < n as f64 / rate as f64 + 5.0 {
                last = Some(s);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let text = std::fs::read_to_string(&stdout).unwrap_or_default();
    let counter = |name: &str| -> u64 {
        text.lines()
            .rev()
            .find(|l| l.trim_start().starts_with(name))
            .and_then(|l| l.split('|').nth(2))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let successful = counter("Successful call");
    let failed = counter("Failed call");
    let digits = server.metric("careline_dtmf_digits_total{method=\"rfc4733\"}");
    let passed = status.success() && successful == n && failed == 0 && digits as u64 == n;
    let cpu = match (sampler_start, last) {
        (Some(a), Some(b)) => crate::procstat::cpu_percent(&a, &b),
        _ => 0.0,
    };
    Ok(SippCheck {
        concurrency: n,
        passed,
        successful,
        failed,
        digits,
        server_cpu_percent: cpu,
        server_rss_max: rss_max,
        detail: format!("sipp exit {status}; output in {}", logs.display()),
    })
}

pub fn sipp_line(s: &SippCheck) -> String {
    format!(
        "SIPp cross-check at {} concurrent (ivr-rfc2833-digit.xml): {} successful, {} failed, {} \
         digits detected; server CPU {:.0} %, RSS {:.0} MiB: {} ({})\n",
        s.concurrency,
        s.successful,
        s.failed,
        s.digits,
        s.server_cpu_percent,
        s.server_rss_max as f64 / 1048576.0,
        if s.passed { "PASSED" } else { "FAILED" },
        s.detail
    )
}

pub fn sipp_json(s: &SippCheck) -> Value {
    json!({
        "concurrency": s.concurrency, "passed": s.passed, "successful": s.successful,
        "failed": s.failed, "digits_detected": s.digits,
        "server_cpu_percent": s.server_cpu_percent, "server_rss_max_bytes": s.server_rss_max,
    })
}
