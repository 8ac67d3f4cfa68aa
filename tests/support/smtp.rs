//! A real SMTP relay for tests: aiosmtpd (PyPI, installed by `scripts/test`) through
//! `tests/smtp/sink.py`, on a loopback port it picks itself, saving each message it takes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SmtpSink {
    child: Child,
    /// Closed on drop: the sink stops when it reads end of input.
    stdin: Option<ChildStdin>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// With STARTTLS: the sink's certificate (a root for `[smtp] ca_file`).
    pub ca: Option<PathBuf>,
}

impl SmtpSink {
    /// A relay that takes mail in plain SMTP.
    pub fn start() -> SmtpSink {
        SmtpSink::spawn(false)
    }

    /// A relay that requires STARTTLS, with a certificate for 127.0.0.1 of its own.
    pub fn start_tls() -> SmtpSink {
        SmtpSink::spawn(true)
    }

    fn spawn(tls: bool) -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        let mail = dir.path().join("mail");
        std::fs::create_dir(&mail).unwrap();
        let script = super::server::repo_root().join("tests/smtp/sink.py");
        let mut cmd = Command::new("python3");
        cmd.arg(&script).arg(&mail);
        let mut ca = None;
        if tls {
            let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
            let cert = dir.path().join("cert.pem");
            let key = dir.path().join("key.pem");
            std::fs::write(&cert, made.cert.pem()).unwrap();
            std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
            cmd.arg("--tls").arg(&cert).arg(&key);
            ca = Some(cert);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs tests/smtp/sink.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!("the SMTP sink did not start (is aiosmtpd installed? scripts/test installs it): `{line}`")
        });
        SmtpSink {
            stdin: child.stdin.take(),
            child,
            port,
            dir,
            ca,
        }
    }

    /// The messages taken so far, in order, each as received (headers and body).
    pub fn messages(&self) -> Vec<String> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("mail"))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    /// Waits until `n` messages are taken (at most `timeout`) and returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        super::end_child(&mut self.child, self.stdin.take(), Duration::from_secs(2));
    }
}
