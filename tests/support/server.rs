//! Starts a real `careline serve` process on free loopback ports with its own data dir.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub struct TestServer {
    child: Option<Child>,
    pub sip: SocketAddr,
    pub tls: SocketAddr,
    pub http: SocketAddr,
    pub rtp: (u16, u16),
    /// Holds the RTP range for the server's lifetime.
    rtp_slot: RtpSlot,
    pub data_dir: tempfile::TempDir,
    log_path: PathBuf,
    opts: Options,
}

/// Extra settings for one server.
#[derive(Default, Clone)]
pub struct Options {
    /// Appended to the generated careline.toml (TOML sections).
    pub toml: String,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    /// Run from an empty folder with no prompts setting: the server must find the prompts
    /// and flows built into it (as after `cargo install`).
    pub from_elsewhere: bool,
}

/// A TCP port free now, for SIP over TLS (the one listener the server cannot open on port 0:
/// the SIP stack binds it without telling which port it got). A port taken meanwhile makes
/// the start fail, and [`TestServer::start_with`] tries again.
fn free_tls_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = l.local_addr().expect("local address").port();
        if port != 5061 {
            return port;
        }
    }
}

/// Drops terminal colour codes (the server colours its log even into a file).
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The SIP (UDP and TCP) and HTTP addresses in the last `careline ready` line of `log`.
fn ready_addresses(log: &str) -> Option<(SocketAddr, SocketAddr)> {
    let line = plain(log)
        .lines()
        .rev()
        .find(|l| l.contains("careline ready"))?
        .to_string();
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.trim_matches('"').parse::<SocketAddr>().ok())
    };
    Some((field("sip_udp=")?, field("http=")?))
}

/// A 100-port RTP range held by this test process for as long as the value lives, through a
/// lock file per range (`File::try_lock`): no other test server, in this process or any other
/// test process on the machine, is given the same range while it is held. The ranges lie
/// below the kernel's ephemeral ports (`ip_local_port_range`), so no client socket a test
/// opens (SIP phones, HTTP) can sit on one of the server's RTP ports.
pub struct RtpSlot {
    pub lo: u16,
    pub hi: u16,
    _lock: std::fs::File,
}

pub fn rtp_slot() -> RtpSlot {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let ephemeral_lo = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const BASE: u16 = 20000;
    let slots = ephemeral_lo.saturating_sub(BASE) / 100;
    assert!(
        slots >= 8,
        "the ephemeral port range starts at {ephemeral_lo}: too little room below it for RTP"
    );
    let dir = std::env::temp_dir().join("careline-test-ports");
    std::fs::create_dir_all(&dir).expect("lock folder for test ports");
    let start = (std::process::id() as u16).wrapping_mul(7) % slots;
    for i in 0..slots {
        let slot = (start + NEXT.fetch_add(1, Ordering::Relaxed) + i) % slots;
        let file = std::fs::File::create(dir.join(format!("rtp-{slot}")))
            .expect("lock file for a test port range");
        if file.try_lock().is_ok() {
            let lo = BASE + slot * 100;
            return RtpSlot {
                lo,
                hi: lo + 99,
                _lock: file,
            };
        }
    }
    panic!("all {slots} RTP port ranges are held by running test servers");
}

/// Where tests find the public conformance inputs when not beside the workspace.
pub const CONFORMANCE_ENV: &str = "CARELINE_CONFORMANCE_DIR";

/// The `careline` binary under test, without the test-only settings in its environment
/// (`CARELINE_*` is configuration to the server, and an unknown key stops it).
pub fn careline_command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_careline"));
    c.env_remove(CONFORMANCE_ENV);
    c
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(Options::default())
    }

    /// Starts a server on ports the kernel picks (SIP and HTTP on port 0, read back from its
    /// `careline ready` line), so parallel tests never race for a port picked in advance.
    pub fn start_with(opts: Options) -> TestServer {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let rtp_slot = rtp_slot();
        let rtp = (rtp_slot.lo, rtp_slot.hi);
        let log_path = data_dir.path().join("server.log");
        std::fs::File::create(&log_path).expect("server log");
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut server = TestServer {
            child: None,
            sip: any,
            tls: any,
            http: any,
            rtp,
            rtp_slot,
            data_dir,
            log_path,
            opts,
        };
        for attempt in 1..=5 {
            server.tls = SocketAddr::from(([127, 0, 0, 1], free_tls_port()));
            server.write_config(any, any);
            let skip = server.log().len();
            server.child = Some(server.spawn());
            match server.await_ready(skip) {
                Ok(()) => {
                    // A restart (kill -9 and start again) keeps the same addresses.
                    server.write_config(server.sip, server.http);
                    return server;
                }
                Err(log) if attempt < 5 && log.contains("in use") => server.kill9(),
                Err(log) => panic!("careline did not start:\n{log}"),
            }
        }
        unreachable!("the last attempt panics")
    }

    fn write_config(&self, sip: SocketAddr, http: SocketAddr) {
        let config = format!(
            "[sip]\nlisten = \"{sip}\"\ntls_listen = \"{}\"\n\
             [http]\nlisten = \"{http}\"\n\
             [rtp]\nports = \"{}-{}\"\n{}{}",
            self.tls,
            self.rtp.0,
            self.rtp.1,
            if self.opts.from_elsewhere {
                String::new()
            } else {
                format!(
                    "[prompts]\ndir = \"{}\"\n",
                    repo_root().join("prompts").display()
                )
            },
            self.opts.toml
        );
        std::fs::write(self.config_path(), merge_sections(&config)).expect("write careline.toml");
    }

    fn spawn(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .unwrap();
        careline_command()
            .arg("--config")
            .arg(self.config_path())
            .arg("--data-dir")
            .arg(self.data_path())
            .arg("serve")
            .args(&self.opts.args)
            .envs(self.opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info,careline=debug,rsipstack=warn")
            .env_remove("RUST_BACKTRACE")
            .current_dir(if self.opts.from_elsewhere {
                self.data_dir.path().to_path_buf()
            } else {
                repo_root()
            })
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start careline")
    }

    pub fn config_path(&self) -> PathBuf {
        self.data_dir.path().join("careline.toml")
    }

    /// `kill -9`: the process gets no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same configuration and data dir.
    pub fn restart(&mut self) {
        self.kill9();
        let skip = self.log().len();
        self.child = Some(self.spawn());
        if let Err(log) = self.await_ready(skip) {
            panic!("careline did not become ready after the restart:\n{log}");
        }
    }

    /// Waits (30 s at most) for a sealed recording whose row (`careline recording list
    /// --json`) `matches`; the row.
    pub fn sealed_recording(
        &self,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let out = self.cli(&["recording", "list", "--json"]);
            assert!(out.status.success());
            let sealed = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .find(|r| r["state"] == "sealed" && matches(r));
            if let Some(row) = sealed {
                return row;
            }
            assert!(std::time::Instant::now() < deadline, "no sealed recording");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Exports recording `id` as a two-channel WAV (`careline recording export`): its left
    /// and right channels.
    pub fn export_stereo(&self, id: &str) -> (Vec<i16>, Vec<i16>) {
        let wav = self.data_dir.path().join(format!("{id}.wav"));
        let out = self.cli(&["recording", "export", id, "-o", wav.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut reader = hound::WavReader::open(&wav).unwrap();
        assert_eq!(reader.spec().channels, 2);
        let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        (
            samples.chunks(2).map(|f| f[0]).collect(),
            samples.chunks(2).map(|f| f[1]).collect(),
        )
    }

    /// `careline user add NAME --role ROLE`: the API token it prints.
    pub fn user_token(&self, name: &str, role: &str) -> String {
        let text = self.cli_ok(&["user", "add", name, "--role", role]);
        text.lines()
            .find(|l| l.starts_with("clt_"))
            .unwrap_or_else(|| panic!("no token in: {text}"))
            .to_string()
    }

    /// Gives an existing user a new SIP secret (`careline user sip-secret`) and returns it.
    pub fn sip_secret(&self, name: &str) -> String {
        let text = self.cli_ok(&["user", "sip-secret", name]);
        text.lines()
            .last()
            .filter(|l| l.len() == 24)
            .unwrap_or_else(|| panic!("no secret in: {text}"))
            .to_string()
    }

    /// [`TestServer::cli`] that must succeed: its standard output.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "careline {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a `careline` subcommand against this instance (`--config`, `--data-dir`).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.cli_env(args, &[])
    }

    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        careline_command()
            .arg("--config")
            .arg(self.config_path())
            .arg("--data-dir")
            .arg(self.data_path())
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run careline")
    }

    /// Waits for this start's `careline ready` line (in the log past `skip` bytes), takes the SIP and HTTP addresses from it,
    /// and checks `/healthz` there. `Err(log)` when the process exits first or never gets ready.
    fn await_ready(&mut self, skip: usize) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!(
                    "careline exited during start ({status}):\n{}",
                    self.log()
                ));
            }
            let log = self.log();
            if let Some((sip, http)) = ready_addresses(log.get(skip..).unwrap_or_default()) {
                (self.sip, self.http) = (sip, http);
                if self
                    .http_get("/healthz")
                    .is_some_and(|(code, _)| code == 200)
                {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(self.log())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn data_path(&self) -> PathBuf {
        self.data_dir.path().join("data")
    }

    /// GET over plain HTTP/1.1; returns (status, body).
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&self.http, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let code = buf.split(' ').nth(1)?.parse().ok()?;
        let body = buf
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((code, body))
    }

    /// The value of one Prometheus sample, e.g. `careline_dtmf_digits_total{method="inband"}`;
    /// 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        let (_, body) = self.http_get("/metrics").expect("metrics");
        body.lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// Polls until `sample` reaches at least `value` or the timeout passes; returns the last value.
    pub fn wait_metric(&self, sample: &str, value: f64, timeout: Duration) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.metric(sample);
            if v >= value || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls until `sample` falls to at most `value` (a gauge back to 0); returns the last value.
    pub fn wait_metric_down(&self, sample: &str, value: f64, timeout: Duration) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.metric(sample);
            if v <= value || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- careline log ----\n{}", self.log());
        }
    }
}

/// Lets `Options::toml` add keys to sections the generated file already has: later
/// `[section]` headers are folded into the first one (TOML forbids repeating a table).
fn merge_sections(text: &str) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut sections: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') {
            current = t.to_string();
            if !sections.contains_key(&current) {
                order.push(current.clone());
                sections.insert(current.clone(), Vec::new());
            }
        } else if !t.is_empty() {
            if !sections.contains_key(&current) {
                order.push(current.clone());
            }
            sections
                .entry(current.clone())
                .or_default()
                .push(line.to_string());
        }
    }
    let mut out = String::new();
    for name in order {
        if !name.is_empty() {
            out.push_str(&name);
            out.push('\n');
        }
        for l in &sections[&name] {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// The audio Careline sends for a prompt, at 8 kHz, read the way the server reads it.
pub fn prompt_pcm(lang: &str, name: &str) -> Vec<i16> {
    let path = repo_root()
        .join("prompts")
        .join(lang)
        .join(format!("{name}.wav"));
    let (pcm, rate) = careline::media::prompt::read_wav(&path).expect("prompt wav");
    let f = careline::media::resample::to_f32(&pcm);
    careline::media::resample::to_i16(
        &careline::media::resample::resample(&f, rate, 8000).expect("resample"),
    )
}
