//! Starts a `careline serve` process for the capacity benchmark: free loopback ports, its own
//! data directory, a configuration a benchmark needs (no TLS, no per-source rate limit:
//! every synthetic caller comes from one address, as through a trunk), logs to a file.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("careline exited during start ({status}); log: {log}")]
    Exited { status: String, log: String },
    #[error("careline did not answer /healthz within 60 s; log: {0}")]
    NotReady(String),
}

pub struct ServerProcess {
    child: Child,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    dir: PathBuf,
    pub log: PathBuf,
}

fn free_ports() -> std::io::Result<(u16, u16)> {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if port == 5060 || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let http = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        return Ok((port, http));
    }
}

impl ServerProcess {
    /// `rtp`: the RTP port range; `max_calls` the admission limit; `nice`: the process's
    /// scheduling niceness (0: inherit; negative needs root), applied to all its threads.
    pub fn start(
        bin: &Path,
        prompts: &Path,
        rtp: (u16, u16),
        max_calls: u64,
        nice: i32,
        extra_toml: &str,
    ) -> Result<ServerProcess, ServerError> {
        let io = |what: &str| {
            let what = what.to_string();
            move |e| ServerError::Io(what.clone(), e)
        };
        let (sip_port, http_port) = free_ports().map_err(io("finding free ports"))?;
        let dir = std::env::temp_dir().join(format!(
            "careline-capacity-{}-{sip_port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(io("creating the server's folder"))?;
        let prompts = std::fs::canonicalize(prompts).map_err(io("prompt folder"))?;
        // The flows shipped beside the prompts (the repository layout); the server reads its
        // flow folder relative to its own working directory otherwise.
        let flows = prompts
            .parent()
            .map(|root| root.join("flows"))
            .filter(|f| f.is_dir())
            .map(|f| format!("[flows]\ndir = \"{}\"\n", f.display()))
            .unwrap_or_default();
        let config = format!(
            "[sip]\nlisten = \"127.0.0.1:{sip_port}\"\nmax_calls = {max_calls}\n\
             rate_limit_per_source = 0\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n\
             [rtp]\nports = \"{}-{}\"\n\
             [prompts]\ndir = \"{}\"\n{flows}{extra_toml}",
            rtp.0,
            rtp.1,
            prompts.display()
        );
        let config_path = dir.join("careline.toml");
        std::fs::write(&config_path, config).map_err(io("writing careline.toml"))?;
        let log = dir.join("server.log");
        let log_file = std::fs::File::create(&log).map_err(io("server log"))?;
        let mut cmd = if nice != 0 {
            let mut c = Command::new("nice");
            c.args(["-n", &nice.to_string()]).arg(bin);
            c
        } else {
            Command::new(bin)
        };
        let child = cmd
            .arg("--config")
            .arg(&config_path)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["serve", "--no-tls"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(io(&format!("starting {}", bin.display())))?;
        let mut server = ServerProcess {
            child,
            sip: SocketAddr::from(([127, 0, 0, 1], sip_port)),
            http: SocketAddr::from(([127, 0, 0, 1], http_port)),
            dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(ServerError::Exited {
                    status: status.to_string(),
                    log: server.log.display().to_string(),
                });
            }
            if server.get("/healthz").is_some_and(|(c, _)| c == 200) {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(ServerError::NotReady(server.log.display().to_string()))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `careline` subcommand (`user add`, ...) against this instance's configuration and
    /// data (`bin`: the server binary it was started from).
    pub fn cli(&self, bin: &Path) -> Command {
        let mut c = Command::new(bin);
        c.arg("--config")
            .arg(self.dir.join("careline.toml"))
            .arg("--data-dir")
            .arg(self.dir.join("data"));
        c
    }

    /// GET over plain HTTP/1.1: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
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
        let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((code, body))
    }

    /// One Prometheus sample's value (0 when absent).
    pub fn metric(&self, sample: &str) -> f64 {
        self.get("/metrics")
            .and_then(|(_, body)| {
                body.lines().find_map(|l| {
                    l.strip_prefix(sample)
                        .and_then(|r| r.strip_prefix(' '))
                        .and_then(|v| v.trim().parse().ok())
                })
            })
            .unwrap_or(0.0)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
    }
}
