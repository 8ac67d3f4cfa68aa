//! End-to-end with a real third-party caller: SIPp (Debian `sip-tester` 3.6) places calls at a
//! real `careline serve` process over loopback.
//!
//! SIPp must be installed (CI installs `sip-tester` with apt); these tests fail, they do not
//! skip, when it is missing. Scenarios that play a pcap (`play_pcap_audio`) make SIPp open a
//! raw socket, so SIPp needs root or CAP_NET_RAW (`sudo setcap cap_net_raw+ep /usr/bin/sipp`);
//! without it the tests fail and say so.

mod support;

use std::io::ErrorKind;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::server::TestServer;

/// Where Debian's `sip-tester` installs the pcaps its built-in `uac_pcap` scenario plays.
const SIPP_PCAPS: &str = "/usr/share/sip-tester";

const RFC4733_DIGITS: &str = "careline_dtmf_digits_total{method=\"rfc4733\"}";
const INBAND_DIGITS: &str = "careline_dtmf_digits_total{method=\"inband\"}";
const CALLS_STARTED: &str = "careline_calls_started_total";
const CALLS_ACTIVE: &str = "careline_calls_active";
const CALLER_BYE: &str = "careline_calls_ended_total{cause=\"caller_bye\"}";
const SERVER_BYE: &str = "careline_calls_ended_total{cause=\"server_bye\"}";

/// A UDP port that was free a moment ago.
fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port on 127.0.0.1");
    s.local_addr().expect("local address").port()
}

/// A free even port whose next `span - 1` ports are free too (SIPp's media port: audio on
/// it, RTCP on +1, video on +2/+3; `[auto_media_port]` moves up 4 per call).
fn free_media_port(span: u16) -> u16 {
    'search: for _ in 0..200 {
        let first = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port on 127.0.0.1");
        let port = first.local_addr().expect("local address").port();
        if !port.is_multiple_of(2) || port.checked_add(span).is_none() {
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
    panic!("no run of {span} free UDP ports on 127.0.0.1");
}

/// A port free for SIPp's UDP control socket (`-cp`; its default 8888 is shared by every
/// SIPp on the machine).
fn free_control_port() -> u16 {
    loop {
        let port = free_udp_port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// What one SIPp run left behind.
struct SippRun {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    errors: String,
    messages: String,
}

impl SippRun {
    /// A cumulative counter from SIPp's last statistics screen, e.g. "Successful call".
    fn counter(&self, name: &str) -> Option<u64> {
        self.stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with(name))
            .and_then(|l| l.split('|').nth(2))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Everything worth reading when a run went wrong.
    fn report(&self) -> String {
        let tail: Vec<&str> = self.stdout.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "sipp exited with {}\n--- sipp errors (-trace_err) ---\n{}\n--- sipp stderr ---\n{}\n\
             --- sipp screen (tail) ---\n{}",
            self.status,
            self.errors,
            self.stderr,
            tail.join("\n")
        )
    }

    /// Asserts SIPp exited 0 with exactly `calls` successful calls and none failed.
    fn assert_all_successful(&self, calls: u64) {
        assert!(
            !self.errors.contains("need to run as root")
                && !self.stdout.contains("need to run as root"),
            "SIPp could not open the raw socket play_pcap_audio needs: run the tests as root or \
             grant it `sudo setcap cap_net_raw+ep $(command -v sipp)`\n{}",
            self.report()
        );
        assert!(
            self.status.success(),
            "SIPp did not exit 0 (a call failed, or its -timeout passed)\n{}",
            self.report()
        );
        assert_eq!(
            self.counter("Successful call"),
            Some(calls),
            "SIPp's count of successful calls\n{}",
            self.report()
        );
        assert_eq!(
            self.counter("Failed call"),
            Some(0),
            "SIPp's count of failed calls\n{}",
            self.report()
        );
    }

    /// The SIP messages SIPp received (from `-trace_msg`), one string each.
    fn received_messages(&self) -> Vec<&str> {
        self.messages
            .split("----------------------------------------------- ")
            .filter(|block| block.contains("message received"))
            .collect()
    }

    /// The SDP answers SIPp received: (payload types of `m=audio`, whole message).
    fn answers(&self) -> Vec<(Vec<String>, &str)> {
        self.received_messages()
            .into_iter()
            .filter(|m| m.contains("SIP/2.0 200 OK") && m.contains("m=audio"))
            .map(|m| {
                let formats = m
                    .lines()
                    .find(|l| l.trim_start().starts_with("m=audio"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .skip(3)
                    .map(String::from)
                    .collect();
                (formats, m)
            })
            .collect()
    }
}

/// One SIPp invocation against `server`.
struct Sipp<'a> {
    server: &'a TestServer,
    /// SIPp's working directory (scenario-relative media paths resolve from here).
    dir: PathBuf,
    scenario: Vec<String>,
    /// The number dialed (`-s`): 100 is the demo menu, 200 the triage flow.
    service: &'static str,
    calls: u32,
    rate: u32,
    extra: Vec<String>,
}

impl Sipp<'_> {
    fn run(&self) -> SippRun {
        let logs = tempfile::tempdir().expect("temp dir for SIPp logs");
        let errors = logs.path().join("errors.log");
        let messages = logs.path().join("messages.log");
        let stdout = logs.path().join("stdout.txt");
        let stderr = logs.path().join("stderr.txt");
        let calls = self.calls.to_string();
        let mut cmd = Command::new("sipp");
        cmd.current_dir(&self.dir)
            .arg(self.server.sip.to_string())
            .args(&self.scenario)
            .args(["-s", self.service, "-t", "u1", "-i", "127.0.0.1"])
            .args(["-m", &calls, "-l", &calls])
            .args(["-r", &self.rate.to_string()])
            .args(["-p", &free_udp_port().to_string()])
            .args(["-mp", &free_media_port(4 * self.calls as u16).to_string()])
            .args(["-cp", &free_control_port().to_string()])
            .args(["-nostdin", "-timeout", "60s", "-timeout_error"])
            .arg("-trace_err")
            .arg("-error_file")
            .arg(&errors)
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(&messages)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("SIPp stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("SIPp stderr file"));
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!(
                "SIPp is not installed: `sipp` is not on PATH. Install the `sip-tester` package \
                 (apt-get install sip-tester); these tests need the real peer."
            ),
            Err(e) => panic!("could not start sipp: {e}"),
        };
        // SIPp stops itself at -timeout; this guard only catches a hung process.
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for sipp") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sipp still running after 120 s:\n{}",
                    std::fs::read_to_string(&stdout).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let read =
            |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
        SippRun {
            status,
            stdout: read(&stdout),
            stderr: read(&stderr),
            errors: read(&errors),
            messages: read(&messages),
        }
    }
}

/// Every `careline_calls_ended_total` sample, for failure messages.
fn ended_causes(server: &TestServer) -> String {
    server
        .http_get("/metrics")
        .map(|(_, body)| {
            body.lines()
                .filter(|l| l.starts_with("careline_calls_ended_total"))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

/// Asserts every call ended and none is left active.
fn assert_all_calls_ended(server: &TestServer, calls: f64) {
    assert_eq!(
        server.wait_metric_down(CALLS_ACTIVE, 0.0, Duration::from_secs(10)),
        0.0,
        "calls still active after SIPp finished"
    );
    let ended = server.metric(CALLER_BYE) + server.metric(SERVER_BYE);
    assert_eq!(
        ended,
        calls,
        "every call ends by a BYE from one side: {}",
        ended_causes(server)
    );
}

/// The shared SIPp conformance scenarios; `None` (the test is skipped, saying so) where the
/// corpus is not present.
fn conformance_dir() -> Option<PathBuf> {
    let dir = support::fixtures::conformance("sipp")?;
    assert!(
        dir.join("ivr-rfc2833-digit.xml").is_file(),
        "the SIPp conformance scenario {}/ivr-rfc2833-digit.xml is missing",
        dir.display()
    );
    Some(dir)
}

#[test]
fn conformance_ivr_callers_each_get_their_rfc2833_key_counted_and_every_call_ends() {
    let Some(dir) = conformance_dir() else {
        return;
    };
    let server = TestServer::start();
    let calls = 5;
    let run = Sipp {
        server: &server,
        dir,
        scenario: vec!["-sf".into(), "ivr-rfc2833-digit.xml".into()],
        service: "100",
        calls,
        rate: 5,
        extra: vec![],
    }
    .run();
    run.assert_all_successful(calls as u64);

    let answers = run.answers();
    assert_eq!(answers.len(), calls as usize, "one SDP answer per call");
    for (formats, a) in &answers {
        assert_eq!(
            formats.first().map(String::as_str),
            Some("0"),
            "PCMU answered: {a}"
        );
        assert!(
            a.contains("telephone-event/8000"),
            "telephone-event answered: {a}"
        );
    }

    assert_eq!(server.metric(CALLS_STARTED), calls as f64, "calls answered");
    assert_eq!(
        server.wait_metric(RFC4733_DIGITS, calls as f64, Duration::from_secs(5)),
        calls as f64,
        "exactly one RFC 4733 digit per call (SIPp's dtmf_2833_1.pcap, its own SSRC)"
    );
    assert_eq!(
        server.metric(INBAND_DIGITS),
        0.0,
        "the callers' looped speech is never taken for an in-band key"
    );
    assert_all_calls_ended(&server, calls as f64);
    assert_eq!(
        server.metric(RFC4733_DIGITS),
        calls as f64,
        "no digit counted twice by the end of the calls"
    );
}

#[test]
fn sipp_builtin_uac_calls_are_answered_and_hung_up_by_the_caller() {
    let server = TestServer::start();
    let calls = 3;
    let scratch = tempfile::tempdir().expect("temp dir for SIPp");
    let run = Sipp {
        server: &server,
        dir: scratch.path().to_path_buf(),
        // The built-in scenario's only <pause/> lasts -d (SIPp's default is 0 ms: BYE right
        // after ACK); half a second lets the welcome start before the caller hangs up.
        scenario: vec!["-sn".into(), "uac".into(), "-d".into(), "500".into()],
        service: "100",
        calls,
        rate: 10,
        extra: vec![],
    }
    .run();
    run.assert_all_successful(calls as u64);
    assert_eq!(server.metric(CALLS_STARTED), calls as f64, "calls answered");
    assert_eq!(
        server.wait_metric(CALLER_BYE, calls as f64, Duration::from_secs(5)),
        calls as f64,
        "SIPp hangs up every call: {}",
        ended_causes(&server)
    );
    assert_all_calls_ended(&server, calls as f64);
    assert!(
        server.metric("careline_rtp_packets_sent_total") > 0.0,
        "the welcome started playing to SIPp's media port"
    );
}

#[test]
fn sipp_pcma_caller_playing_recorded_speech_is_answered_in_pcma_and_its_key_counted() {
    let pcap = Path::new(SIPP_PCAPS).join("g711a.pcap");
    assert!(
        pcap.is_file() && Path::new(SIPP_PCAPS).join("dtmf_2833_1.pcap").is_file(),
        "{} and dtmf_2833_1.pcap (from the sip-tester package) are missing",
        pcap.display()
    );
    let server = TestServer::start();
    let calls = 2;
    // The built-in uac_pcap scenario offers `RTP/AVP 8 101` (PCMA + telephone-event), plays
    // pcap/g711a.pcap (~4.6 s of PCMA speech) then pcap/dtmf_2833_1.pcap at 8 s, and hangs up
    // at 9 s. Its pcap paths are relative: give it a folder whose pcap/ is Debian's.
    let scratch = tempfile::tempdir().expect("temp dir for SIPp");
    std::os::unix::fs::symlink(SIPP_PCAPS, scratch.path().join("pcap"))
        .expect("link pcap/ to the sip-tester pcaps");
    let run = Sipp {
        server: &server,
        dir: scratch.path().to_path_buf(),
        scenario: vec!["-sn".into(), "uac_pcap".into()],
        service: "100",
        calls,
        rate: 2,
        extra: vec![],
    }
    .run();
    run.assert_all_successful(calls as u64);

    let answers = run.answers();
    assert_eq!(answers.len(), calls as usize, "one SDP answer per call");
    for (formats, a) in &answers {
        assert_eq!(
            formats.first().map(String::as_str),
            Some("8"),
            "PCMA offered, PCMA answered: {a}"
        );
        assert!(a.contains("PCMA/8000"), "{a}");
    }

    assert_eq!(server.metric(CALLS_STARTED), calls as f64);
    assert_eq!(
        server.wait_metric(CALLER_BYE, calls as f64, Duration::from_secs(5)),
        calls as f64,
        "SIPp hangs up every call: {}",
        ended_causes(&server)
    );
    assert_all_calls_ended(&server, calls as f64);
    assert_eq!(
        server.metric(RFC4733_DIGITS),
        calls as f64,
        "the pcap's RFC 2833 '1' is one digit per call"
    );
    assert_eq!(
        server.metric(INBAND_DIGITS),
        0.0,
        "the recorded PCMA speech is never taken for an in-band key"
    );
    let received = server.metric("careline_rtp_packets_received_total");
    assert!(
        received >= 150.0 * calls as f64,
        "the pcap's speech (over 200 packets a call) reached the server: {received} packets"
    );
}

/// SIPp callers walk the shipped triage flow (number 200) with RFC 2833 keys from SIPp's own
/// pcaps: 2 for English, 9 for an emergency; every call must reach the urgent queue.
#[test]
fn sipp_callers_walk_the_triage_flow_to_the_urgent_queue() {
    let server = TestServer::start();
    let calls = 3;
    let scenario = support::server::repo_root().join("tests/sipp/triage-urgent.xml");
    let scratch = tempfile::tempdir().expect("temp dir for SIPp");
    let run = Sipp {
        server: &server,
        dir: scratch.path().to_path_buf(),
        scenario: vec!["-sf".into(), scenario.display().to_string()],
        service: "200",
        calls,
        rate: 3,
        extra: vec![],
    }
    .run();
    run.assert_all_successful(calls as u64);
    assert_eq!(
        server.wait_metric(CALLER_BYE, calls as f64, Duration::from_secs(5)),
        calls as f64,
        "{}",
        ended_causes(&server)
    );
    assert_eq!(
        server.metric(RFC4733_DIGITS),
        2.0 * calls as f64,
        "two keys per call, each counted once"
    );
    assert_eq!(
        server.metric("careline_queue_entered_total{queue=\"triage-urgent\"}"),
        calls as f64,
        "every caller reached the urgent queue"
    );
    assert_eq!(
        server.wait_metric(
            "careline_queue_contacts{queue=\"triage-urgent\"}",
            0.0,
            Duration::from_secs(10)
        ),
        0.0,
        "and left it when they hung up"
    );
}
