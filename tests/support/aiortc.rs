//! A second, independent WebRTC stack as a test peer: aiortc (PyPI, installed by
//! `scripts/test`) through `tests/aiortc/peer.py`, over real loopback UDP. It offers one codec,
//! POSTs its offer by WHIP, and is driven by lines on its stdin; what it hears is appended to a
//! file as 8 kHz mono samples.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct AiortcPeer {
    child: Child,
    /// Closed on drop: the peer closes its connection and exits when it reads end of input.
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<Value>,
    heard: PathBuf,
    _dir: tempfile::TempDir,
    /// The WHIP answer: `status`, `location`, `call_id`, `body` (the SDP answer or the error).
    pub answered: Value,
}

impl AiortcPeer {
    /// Offers `codec` (`"opus"` or `"pcmu"`) to `path` on `http` (with a bearer `token`),
    /// and waits for the answer.
    pub fn call(http: SocketAddr, path: &str, codec: &str, token: Option<&str>) -> AiortcPeer {
        let dir = tempfile::tempdir().unwrap();
        let heard = dir.path().join("heard.raw");
        let script = super::server::repo_root().join("tests/aiortc/peer.py");
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .arg(format!("http://{http}{path}"))
            .args(["--codec", codec, "--heard"])
            .arg(&heard);
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs tests/aiortc/peer.py");
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                    Err(_) => eprintln!("aiortc peer: {line}"),
                }
            }
        });
        let mut peer = AiortcPeer {
            stdin: child.stdin.take(),
            child,
            events,
            heard,
            _dir: dir,
            answered: Value::Null,
        };
        peer.answered = peer.expect("answered", Duration::from_secs(30));
        peer
    }

    /// Waits for event `name` (earlier events are dropped).
    pub fn expect(&self, name: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) if v["event"] == name => return v,
                Ok(v) => assert_ne!(
                    v["event"], "failed",
                    "the aiortc peer's connection failed while waiting for {name}"
                ),
                Err(_) => panic!(
                    "the aiortc peer did not report {name} in {timeout:?} (is aiortc installed? scripts/test installs it)"
                ),
            }
        }
    }

    pub fn status(&self) -> u64 {
        self.answered["status"].as_u64().unwrap_or(0)
    }

    /// The SDP answer (or the error's body).
    pub fn body(&self) -> &str {
        self.answered["body"].as_str().unwrap_or("")
    }

    pub fn call_id(&self) -> &str {
        self.answered["call_id"].as_str().unwrap_or("")
    }

    pub fn wait_connected(&self) {
        self.expect("connected", Duration::from_secs(20));
    }

    /// Sends a command line (`tone 440`, `silence`, `dtmf 5`) and waits until it is taken.
    pub fn command(&mut self, line: &str) -> Value {
        let stdin = self.stdin.as_mut().expect("the peer is running");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        self.expect("done", Duration::from_secs(20))
    }

    /// Hangs up with DELETE on the session; the status it got.
    pub fn hang_up(&mut self) -> u64 {
        let stdin = self.stdin.as_mut().expect("the peer is running");
        writeln!(stdin, "hangup").unwrap();
        stdin.flush().unwrap();
        let v = self.expect("hung_up", Duration::from_secs(20));
        v["status"].as_u64().unwrap_or(0)
    }

    /// Everything heard so far, 8 kHz mono.
    pub fn heard(&self) -> Vec<i16> {
        let bytes = std::fs::read(&self.heard).unwrap_or_default();
        bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()
    }
}

impl super::audio::Listener for AiortcPeer {
    fn heard(&self) -> Vec<i16> {
        AiortcPeer::heard(self)
    }
}

impl Drop for AiortcPeer {
    fn drop(&mut self) {
        super::end_child(&mut self.child, self.stdin.take(), Duration::from_secs(3));
    }
}
