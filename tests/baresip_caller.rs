//! End-to-end with a real third-party softphone: baresip (Debian 1.0.0) calls a real
//! `careline serve` over loopback, presses a key, hangs up, and the test checks what baresip
//! actually heard.
//!
//! baresip runs headless from a config folder generated per test:
//! - `aufile` is its microphone (a WAV of silence);
//! - `aubridge` is its loudspeaker (a device nobody listens to: baresip 1.0's `aufile` has no
//!   player), and the `sndfile` audio filter dumps every decoded frame it received to
//!   `dump-*-dec.wav`: that file is what the caller heard, after its jitter buffer;
//! - `stdio` + `menu` read keys from stdin, which the test drives through a pipe: `/dial`, then
//!   a digit key (baresip sends RFC 4733 for keys pressed in a call), then `q` to quit.
//!
//! baresip must be installed (CI installs `baresip-core` with apt); the test fails, it does not
//! skip, when it is missing.

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use careline::media::codec::Codec;
use support::audio::{expect_not_prompt, expect_prompt, heard_prompt};
use support::server::{Options, TestServer};
use support::speech::{EN_MENU, LANGUAGE_MENU, URGENT, heard, hears, speech};

const MODULE_DIRS: &[&str] = &[
    "/usr/lib/baresip/modules",
    "/usr/lib/x86_64-linux-gnu/baresip/modules",
    "/usr/lib/aarch64-linux-gnu/baresip/modules",
    "/usr/local/lib/baresip/modules",
];
const MODULE_ENV: &str = "CARELINE_BARESIP_MODULES";
const MODULES: &[&str] = &[
    "stdio.so",
    "g711.so",
    "aufile.so",
    "aubridge.so",
    "sndfile.so",
    "account.so",
    "menu.so",
];

fn module_dir() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os(MODULE_ENV) {
        Some(dir) => vec![PathBuf::from(dir)],
        None => MODULE_DIRS.iter().map(PathBuf::from).collect(),
    };
    candidates
        .iter()
        .find(|d| MODULES.iter().all(|m| d.join(m).is_file()))
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "baresip modules {MODULES:?} not found in {candidates:?}: install `baresip-core` \
                 (apt-get install baresip-core) or set {MODULE_ENV}"
            )
        })
}

/// A port free on both UDP and TCP (baresip's `sip_listen` binds both).
fn free_sip_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port on 127.0.0.1");
        let port = udp.local_addr().expect("local address").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A free even port with its next 9 ports free, for baresip's `rtp_ports`.
fn free_rtp_range() -> (u16, u16) {
    'search: for _ in 0..200 {
        let first = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port on 127.0.0.1");
        let port = first.local_addr().expect("local address").port();
        if !port.is_multiple_of(2) || port > u16::MAX - 10 {
            continue;
        }
        let mut held = vec![first];
        for p in port + 1..port + 10 {
            match UdpSocket::bind(("127.0.0.1", p)) {
                Ok(s) => held.push(s),
                Err(_) => continue 'search,
            }
        }
        return (port, port + 9);
    }
    panic!("no run of 10 free UDP ports on 127.0.0.1");
}

/// A WAV of `hz` (silence at 0) for baresip's microphone.
fn write_tone_wav(path: &Path, seconds: u32, hz: f32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("write the caller's silence WAV");
    let pcm = support::audio::tone(hz, seconds as usize * 1000);
    for s in pcm {
        let s = if hz == 0.0 { 0 } else { s };
        w.write_sample(s).expect("write the caller's silence WAV");
    }
    w.finalize().expect("write the caller's silence WAV");
}

/// A running baresip with its generated config folder; stdin is its keyboard.
struct Baresip {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<Mutex<String>>,
    dir: tempfile::TempDir,
}

impl Baresip {
    /// A phone that does not register: it only calls.
    fn start() -> Baresip {
        Baresip::start_with("<sip:caller@127.0.0.1>;regint=0")
    }

    /// A phone with this baresip `accounts` line.
    fn start_with(account: &str) -> Baresip {
        Baresip::start_with_modules(account, &[])
    }

    /// A phone with this `accounts` line and these modules besides the usual ones (`srtp.so`
    /// for SDES media encryption).
    fn start_with_modules(account: &str, extra: &[&str]) -> Baresip {
        Baresip::start_speaking(account, extra, 0.0)
    }

    /// A phone whose microphone hears a tone of `hz` (0: silence).
    fn start_speaking(account: &str, extra: &[&str], hz: f32) -> Baresip {
        let modules = module_dir();
        let extra: String = extra.iter().map(|m| format!("module\t\t\t{m}\n")).collect();
        let dir = tempfile::tempdir().expect("temp dir for baresip's config");
        let silence = dir.path().join("silence.wav");
        // Longer than the call: aufile stops at the end of its file.
        write_tone_wav(&silence, 30, hz);
        let sip_port = free_sip_port();
        let (rtp_lo, rtp_hi) = free_rtp_range();
        // `net_interface` set to an address keeps SIP and SDP on loopback (baresip otherwise
        // offers the default route's address in c=).
        let config = format!(
            "poll_method\t\tepoll\n\
             sip_listen\t\t127.0.0.1:{sip_port}\n\
             net_interface\t\t127.0.0.1\n\
             call_local_timeout\t30\n\
             call_max_calls\t\t1\n\
             audio_player\t\taubridge,careline-test-nowhere\n\
             audio_alert\t\taubridge,careline-test-nowhere\n\
             audio_source\t\taufile,{silence}\n\
             ausrc_srate\t\t8000\n\
             auplay_srate\t\t8000\n\
             ausrc_channels\t\t1\n\
             auplay_channels\t\t1\n\
             audio_buffer\t\t20-160\n\
             rtp_ports\t\t{rtp_lo}-{rtp_hi}\n\
             rtp_stats\t\tno\n\
             jitter_buffer_delay\t5-10\n\
             module_path\t\t{modules}\n\
             module\t\t\tstdio.so\n\
             module\t\t\tg711.so\n\
             module\t\t\taufile.so\n\
             module\t\t\taubridge.so\n\
             module\t\t\tsndfile.so\n\
             {extra}\
             snd_path\t\t{dump}\n\
             module_tmp\t\taccount.so\n\
             module_app\t\tmenu.so\n",
            silence = silence.display(),
            modules = modules.display(),
            dump = dir.path().display(),
        );
        std::fs::write(dir.path().join("config"), config).expect("write baresip config");
        std::fs::write(dir.path().join("accounts"), format!("{account}\n"))
            .expect("write baresip accounts");

        let mut child = match Command::new("baresip")
            .arg("-f")
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!(
                "baresip is not installed: `baresip` is not on PATH. Install `baresip-core` \
                 (apt-get install baresip-core); this test needs the real peer."
            ),
            Err(e) => panic!("could not start baresip: {e}"),
        };
        let output = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("baresip stdout");
        let stderr = child.stderr.take().expect("baresip stderr");
        spawn_collector(stdout, output.clone());
        spawn_collector(stderr, output.clone());
        let stdin = child.stdin.take();
        Baresip {
            child,
            stdin,
            output,
            dir,
        }
    }

    fn output(&self) -> String {
        self.output.lock().expect("baresip output").clone()
    }

    /// Waits until baresip printed `text`.
    fn wait_for(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.output().contains(text) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "baresip exited ({status}) before printing {text:?}:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "baresip did not print {text:?} within {timeout:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types on baresip's keyboard.
    fn keys(&mut self, keys: &str) {
        let stdin = self.stdin.as_mut().expect("baresip stdin open");
        stdin
            .write_all(keys.as_bytes())
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("baresip stopped reading keys ({e}):\n{}", self.output()));
    }

    /// Presses `q` and waits for baresip to hang up and exit.
    fn quit(&mut self) {
        self.keys("q");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for baresip") {
                assert!(
                    status.success(),
                    "baresip exited with {status}:\n{}",
                    self.output()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "baresip did not quit within 15 s:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What baresip heard: its `sndfile` decode dump, at 8 kHz.
    /// What baresip has decoded so far, read while the call goes on: the dump's samples
    /// after its `data` tag (the header's sizes are only written when the file is closed).
    /// Empty until the dump exists.
    fn heard_so_far(&self) -> Vec<i16> {
        let Some(dump) = std::fs::read_dir(self.dir.path())
            .expect("read baresip's folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        else {
            return Vec::new();
        };
        let bytes = std::fs::read(&dump).unwrap_or_default();
        let Some(at) = bytes.windows(4).position(|w| w == b"data") else {
            return Vec::new();
        };
        let rate = bytes
            .get(24..28)
            .map_or(8000, |r| u32::from_le_bytes([r[0], r[1], r[2], r[3]]));
        let pcm: Vec<i16> = bytes
            .get(at + 8..)
            .unwrap_or_default()
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        if rate == 8000 {
            return pcm;
        }
        let f = careline::media::resample::to_f32(&pcm);
        careline::media::resample::to_i16(
            &careline::media::resample::resample(&f, rate, 8000).expect("resample to 8 kHz"),
        )
    }

    /// Waits (30 s at most) until what baresip has heard so far satisfies `done`: the test
    /// goes on when the caller has heard something, not after a time.
    fn wait_heard(&self, what: &str, done: impl Fn(&[i16]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let heard = self.heard_so_far();
            if done(&heard) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "baresip never heard {what} (heard {} ms):\n{}",
                heard.len() / 8,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn heard(&self) -> Vec<i16> {
        let dumps: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("read baresip's folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        assert_eq!(
            dumps.len(),
            1,
            "one decode dump from baresip's sndfile filter: {dumps:?}\n{}",
            self.output()
        );
        let (pcm, rate) = careline::media::prompt::read_wav(&dumps[0])
            .unwrap_or_else(|e| panic!("baresip's dump {}: {e}", dumps[0].display()));
        if rate == 8000 {
            return pcm;
        }
        let f = careline::media::resample::to_f32(&pcm);
        careline::media::resample::to_i16(
            &careline::media::resample::resample(&f, rate, 8000).expect("resample to 8 kHz"),
        )
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- baresip output ----\n{}", self.output());
        }
    }
}

fn spawn_collector(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        // baresip redraws its status line with '\r'; split on both.
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf);
                    if let Ok(mut out) = into.lock() {
                        out.push_str(&text);
                    }
                }
            }
        }
    });
}

#[test]
fn baresip_caller_hears_welcome_then_the_prompt_of_the_key_it_pressed() {
    let server = TestServer::start();
    let mut phone = Baresip::start();
    phone.wait_for("baresip is ready.", Duration::from_secs(20));

    phone.keys(&format!("/dial sip:100@{}\n", server.sip));
    phone.wait_for("Call established", Duration::from_secs(15));
    let out = phone.output();
    assert!(
        out.contains("Set audio decoder: PCMU") && out.contains("Set audio encoder: PCMU"),
        "baresip offered PCMU first and the call uses it:\n{out}"
    );
    assert_eq!(server.metric("careline_calls_started_total"), 1.0);

    // Two seconds into the welcome (as baresip heard it), press 5 on baresip's keypad.
    phone.wait_heard("2 s of the welcome", |h| h.len() >= 2 * 8000);
    phone.keys("5");
    phone.wait_for("send DTMF digit end: '5'", Duration::from_secs(5));
    assert_eq!(
        server.wait_metric(
            "careline_dtmf_digits_total{method=\"rfc4733\"}",
            1.0,
            Duration::from_secs(5)
        ),
        1.0,
        "baresip's RFC 4733 key counted once"
    );
    // Hang up once digit-5 has played out.
    phone.wait_heard("digit-5", |h| {
        heard_prompt(h, Codec::Pcmu, "en", "digit-5", 1500, None).is_some()
    });
    phone.quit();

    assert_eq!(
        server.wait_metric(
            "careline_calls_ended_total{cause=\"caller_bye\"}",
            1.0,
            Duration::from_secs(5)
        ),
        1.0,
        "baresip's BYE ends the call"
    );

    let heard = phone.heard();
    // The key barged in about 2 s into the welcome: only its start was played.
    let welcome = expect_prompt(&heard, Codec::Pcmu, "en", "welcome", 0, Some(1500));
    assert!(
        welcome.offset_ms() < 500,
        "the welcome is the first thing baresip hears: {welcome:?}"
    );
    let after_key = welcome.offset_ms() + 1500;
    expect_prompt(&heard, Codec::Pcmu, "en", "digit-5", after_key, None);
    expect_not_prompt(&heard, "en", "digit-4", after_key);
    assert_eq!(
        server.metric("careline_dtmf_digits_total{method=\"rfc4733\"}"),
        1.0,
        "one key, one digit"
    );
}

/// A phone as a clinic runs one: baresip registers as a Careline user with the secret that
/// `careline user sip-secret` gave it, and calls in from an address the server does not trust
/// (`trusted_networks = []`). Both its REGISTER and its INVITE are challenged, and the call
/// runs as any other. baresip 1.0 (libre 1.1) gives up on any challenge that is not MD5
/// instead of ignoring it as RFC 8760 §2.4 asks, so this server offers MD5 only, as an
/// operator with such phones configures it.
#[test]
fn a_registered_baresip_phone_answers_the_challenges_and_its_call_runs() {
    let server = TestServer::start_with(Options {
        toml: "[sip]\ntrusted_networks = []\ndigest_algorithms = [\"MD5\"]\n".into(),
        ..Default::default()
    });
    server.user_token("nina", "agent");
    let secret = server.sip_secret("nina");
    let mut phone = Baresip::start_with(&format!(
        "<sip:nina@{}>;auth_pass={secret};regint=600",
        server.sip
    ));
    phone.wait_for("baresip is ready.", Duration::from_secs(20));
    phone.wait_for("1 binding", Duration::from_secs(20));
    assert_eq!(server.metric("careline_sip_registered_users"), 1.0);

    phone.keys(&format!("/dial sip:100@{}\n", server.sip));
    phone.wait_for("Call established", Duration::from_secs(15));
    phone.wait_heard("the welcome", |h| {
        heard_prompt(h, Codec::Pcmu, "en", "welcome", 0, Some(1500)).is_some()
    });
    phone.quit();
    assert_eq!(
        server.wait_metric(
            "careline_calls_ended_total{cause=\"caller_bye\"}",
            1.0,
            Duration::from_secs(5)
        ),
        1.0
    );
    // The REGISTER, the INVITE and the un-REGISTER at quit were each challenged first.
    assert!(server.metric("careline_sip_auth_total{result=\"challenged\"}") >= 2.0);
    assert!(server.metric("careline_sip_auth_total{result=\"accepted\"}") >= 2.0);
    assert_eq!(
        server.metric("careline_sip_auth_total{result=\"refused\"}"),
        0.0
    );
}

/// The shipped triage flow (number 200) walked from a real softphone: the bilingual language
/// menu, 2 for English, 9 for an emergency, then the urgent-care message; each key sent by
/// baresip as RFC 4733 and each prompt checked in what baresip decoded.
#[test]
fn baresip_walks_the_triage_flow_to_the_urgent_line_in_english() {
    let server = TestServer::start();
    let language_menu = speech("Mizuki", LANGUAGE_MENU, true);
    let en_menu = speech("Joanna", EN_MENU, false);
    let urgent = speech("Joanna", URGENT, false);

    let mut phone = Baresip::start();
    phone.wait_for("baresip is ready.", Duration::from_secs(20));
    phone.keys(&format!("/dial sip:200@{}\n", server.sip));
    phone.wait_for("Call established", Duration::from_secs(15));

    // Let the language menu play two seconds, then choose English.
    phone.wait_heard("2 s of the language menu", |h| h.len() >= 2 * 8000);
    phone.keys("2");
    phone.wait_for("send DTMF digit end: '2'", Duration::from_secs(5));
    server.wait_metric(
        "careline_dtmf_digits_total{method=\"rfc4733\"}",
        1.0,
        Duration::from_secs(5),
    );
    // The English menu is rendered on the fly: press 9 once it has started.
    phone.wait_heard("the English menu", |h| {
        hears(h, &en_menu, 1500, Some(1500)).is_some()
    });
    phone.keys("9");
    phone.wait_for("send DTMF digit end: '9'", Duration::from_secs(5));
    phone.wait_heard("the urgent line", |h| {
        hears(h, &urgent, 3000, Some(1500)).is_some()
    });
    // The urgent line is played, then the caller is queued: hang up once the queue has them.
    server.wait_metric(
        "careline_queue_entered_total{queue=\"triage-urgent\"}",
        1.0,
        Duration::from_secs(30),
    );
    phone.quit();

    let h = phone.heard();
    let menu = heard(&h, &language_menu, 0, Some(1500), "the language menu");
    assert!(menu < 1000, "the language menu comes first: {menu} ms");
    let en = heard(
        &h,
        &en_menu,
        menu + 1500,
        Some(1500),
        "the English menu after 2",
    );
    let urgent_at = heard(
        &h,
        &urgent,
        en + 1500,
        Some(1500),
        "the urgent line after 9",
    );
    assert!(
        urgent_at > en,
        "urgent ({urgent_at} ms) follows the menu ({en} ms)"
    );
    assert_eq!(
        server.metric("careline_dtmf_digits_total{method=\"rfc4733\"}"),
        2.0,
        "two keys, two digits"
    );
    assert_eq!(
        server.metric("careline_queue_entered_total{queue=\"triage-urgent\"}"),
        1.0,
        "the call reached the urgent queue"
    );
}

/// A phone that encrypts its audio (SDES-SRTP, RFC 4568) calls over SIP TLS with baresip's
/// `srtp-mand` (an `RTP/SAVP` offer): Careline answers with its own key, baresip reports SRTP
/// on, hears the welcome (decrypting what Careline sent) and Careline hears its key press
/// (decrypting what baresip sent), with no RTP packet refused. baresip 1.0 offers
/// AES_CM_128_HMAC_SHA1_80 only, so a server whose `[rtp] srtp_suites` leaves that out refuses
/// it with 488 saying so; and the same phone over plain UDP is refused with 488, since its
/// keys would cross the network in clear.
#[test]
fn baresip_calls_over_tls_with_srtp_and_never_with_keys_in_clear() {
    let srtp_phone = || {
        let mut phone = Baresip::start_with_modules(
            "<sip:caller@127.0.0.1>;regint=0;mediaenc=srtp-mand",
            &["srtp.so"],
        );
        phone.wait_for("baresip is ready.", Duration::from_secs(20));
        phone
    };
    let server = TestServer::start();
    let mut phone = srtp_phone();
    phone.keys(&format!("/dial sip:100@{};transport=tls\n", server.tls));
    phone.wait_for("Call established", Duration::from_secs(15));
    phone.wait_for(
        "SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)",
        Duration::from_secs(5),
    );
    phone.wait_heard("the welcome", |h| {
        heard_prompt(h, Codec::Pcmu, "en", "welcome", 0, Some(1500)).is_some()
    });
    phone.keys("5");
    assert_eq!(
        server.wait_metric(
            "careline_dtmf_digits_total{method=\"rfc4733\"}",
            1.0,
            Duration::from_secs(10)
        ),
        1.0,
        "the key baresip sent through SRTP reached the flow"
    );
    phone.quit();
    // baresip's RTCP "PING" (an APP packet it sends in clear to open NAT pinholes) is refused
    // and counted as RTCP; no RTP packet is.
    assert_eq!(
        server.metric("careline_srtp_packets_refused_total{kind=\"rtp\"}"),
        0.0
    );
    let log = support::server::plain(&server.log());
    assert!(
        log.contains("srtp=\"AES_CM_128_HMAC_SHA1_80\""),
        "the call's log line names its suite:\n{log}"
    );

    let gcm_only = TestServer::start_with(Options {
        toml: "[rtp]\nsrtp_suites = [\"AEAD_AES_256_GCM\"]\n".into(),
        ..Default::default()
    });
    let mut phone = srtp_phone();
    phone.keys(&format!("/dial sip:100@{};transport=tls\n", gcm_only.tls));
    phone.wait_for("488 Not Acceptable Here", Duration::from_secs(15));
    let log = support::server::plain(&gcm_only.log());
    assert!(
        log.contains("AES_CM_128_HMAC_SHA1_80 (not in [rtp] srtp_suites)"),
        "the refusal names the suite left out:\n{log}"
    );

    let mut phone = srtp_phone();
    phone.keys(&format!("/dial sip:100@{}\n", server.sip));
    phone.wait_for("488 Not Acceptable Here", Duration::from_secs(15));
    assert_eq!(server.metric("careline_calls_started_total"), 1.0);
    assert_eq!(
        server.metric("careline_calls_rejected_total{code=\"488\"}"),
        1.0
    );
    let log = support::server::plain(&server.log());
    assert!(log.contains("over TLS only"), "{log}");
}

/// baresip as a nurse's desk phone: registered as agent nina with her SIP secret, she is at
/// the desk, available, as soon as it registers. A phone caller who reaches the urgent queue
/// rings it (the queue's name as the caller), it answers (auto-answer), and the two hear each
/// other (a tone each way, through the RTP-to-RTP bridge); the caller's hang-up sends the
/// phone a BYE and frees nina; unregistering signs her out.
#[test]
fn a_registered_baresip_phone_takes_a_queued_call_as_an_agent() {
    let server = TestServer::start_with(Options {
        toml: "[sip]\ndigest_algorithms = [\"MD5\"]\n[routing]\nafter_contact_work_secs = 0\n"
            .into(),
        ..Default::default()
    });
    server.user_token("nina", "agent");
    let secret = server.sip_secret("nina");
    let mut phone = Baresip::start_speaking(
        &format!(
            "<sip:nina@{}>;auth_pass={secret};regint=600;answermode=auto",
            server.sip
        ),
        &[],
        440.0,
    );
    phone.wait_for("1 binding", Duration::from_secs(20));
    let available = "careline_agents{state=\"available\"}";
    assert_eq!(
        server.wait_metric(available, 1.0, Duration::from_secs(10)),
        1.0,
        "a registered agent's phone puts her at the desk"
    );

    let caller = support::rtp::RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let mut ua = support::sip::Ua::udp(server.sip);
    let mut call = support::sip::dial_answered(&mut ua, "200", &caller);
    support::audio::let_call_run(&caller, 500);
    caller.send_event('2', 100); // English
    support::audio::let_call_run(&caller, 500);
    caller.send_event('9', 100); // urgent
    phone.wait_for("Call established", Duration::from_secs(30));
    assert!(
        phone.output().contains("triage-urgent"),
        "the phone shows the queue:\n{}",
        phone.output()
    );
    assert_eq!(
        server.wait_metric(
            "careline_agents{state=\"on_contact\"}",
            1.0,
            Duration::from_secs(10)
        ),
        1.0
    );
    let from = caller.heard().len() / 8;
    support::audio::wait_for_tone(
        || caller.heard(),
        440.0,
        from,
        "the caller hears the nurse's phone",
    );
    let from = phone.heard_so_far().len() / 8;
    caller.send_audio(support::audio::tone(1000.0, 2000));
    support::audio::wait_for_tone(
        || phone.heard_so_far(),
        1000.0,
        from,
        "the nurse hears the caller",
    );

    // The caller hangs up: the phone gets a BYE, and nina is available again.
    let bye = call.bye(&ua);
    ua.send(&bye);
    assert_eq!(
        server.wait_metric(
            "careline_calls_ended_total{cause=\"caller_bye\"}",
            1.0,
            Duration::from_secs(10)
        ),
        1.0
    );
    // baresip's word for a BYE it received.
    phone.wait_for("session closed", Duration::from_secs(10));
    assert_eq!(
        server.wait_metric(available, 1.0, Duration::from_secs(10)),
        1.0
    );
    phone.quit();
    assert_eq!(
        server.wait_metric_down(available, 0.0, Duration::from_secs(10)),
        0.0,
        "unregistered, she is signed out"
    );
}
