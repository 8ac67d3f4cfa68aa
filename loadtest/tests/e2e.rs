//! End-to-end: the `careline-loadtest` binary against a real `careline serve` process on
//! loopback. Every synthetic caller must hear the right prompts in the right order.
//!
//! The server binary is the workspace's `careline`, found next to this package's binary in
//! the same target folder (`cargo test --workspace` builds both); when it is missing (this
//! package tested alone) the test builds it with the same cargo and profile first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use careline_loadtest::server::ServerProcess;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn server_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let me = PathBuf::from(env!("CARGO_BIN_EXE_careline-loadtest"));
        let dir = me.parent().expect("binary folder").to_path_buf();
        let bin = dir.join("careline");
        if !bin.is_file() {
            let release = dir.file_name().is_some_and(|n| n == "release");
            let mut cmd = Command::new(env!("CARGO"));
            cmd.current_dir(root())
                .args(["build", "-j2", "-p", "careline", "--bin", "careline"]);
            if release {
                cmd.arg("--release");
            }
            let status = cmd
                .status()
                .expect("run cargo build for the careline binary");
            assert!(status.success(), "building the careline binary failed");
        }
        bin
    })
    .clone()
}

/// A 100-port RTP range below the ephemeral ports, held through a lock file for as long as the
/// returned file lives. The same folder and numbering as careline's own test servers
/// (`tests/support/server.rs`), so the two suites never hand one range to two servers.
fn rtp_slot() -> ((u16, u16), std::fs::File) {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let ephemeral_lo = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const BASE: u16 = 20000;
    let slots = ephemeral_lo.saturating_sub(BASE) / 100;
    assert!(
        slots >= 8,
        "the ephemeral range starts at {ephemeral_lo}: no room for RTP below it"
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
            return ((lo, lo + 99), file);
        }
    }
    panic!("all {slots} RTP port ranges are held by running test servers");
}

/// A server on a free RTP range; keep the lock file as long as the server.
fn start_server() -> (ServerProcess, std::fs::File) {
    start_server_with("")
}

fn start_server_with(toml: &str) -> (ServerProcess, std::fs::File) {
    let (rtp, lock) = rtp_slot();
    let server = ServerProcess::start(&server_bin(), &root().join("prompts"), rtp, 200, 0, toml)
        .expect("careline serve starts");
    (server, lock)
}

/// Runs the load tester with `--json`; returns (exit success, report).
fn loadtest(server: &ServerProcess, args: &[&str]) -> (bool, Value) {
    loadtest_with(server, args, &[])
}

fn loadtest_with(server: &ServerProcess, args: &[&str], env: &[(&str, &str)]) -> (bool, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_careline-loadtest"))
        .envs(env.iter().copied())
        .current_dir(root())
        .args(["run", "--json", "--target", &server.sip.to_string()])
        .args(["--server-pid", &server.pid().to_string()])
        .args(args)
        .output()
        .expect("run careline-loadtest");
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}):\n{text}\nstderr:\n{}\nserver log: {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&server.log).unwrap_or_default()
        )
    });
    (out.status.success(), report)
}

#[test]
fn twenty_callers_each_hear_every_prompt_of_the_menu_in_order() {
    let (server, _rtp) = start_server();
    let (ok, r) = loadtest(
        &server,
        &[
            "--scenario",
            "loadtest/scenarios/demo-menu.toml",
            "--scenario",
            "loadtest/scenarios/demo-menu-inband.toml",
            "--calls",
            "20",
            "--concurrency",
            "10",
            "--rate",
            "10",
        ],
    );
    let calls = &r["calls"];
    assert!(ok, "exit status: {r:#}");
    // Twenty calls placed in all, never more than ten at once.
    assert_eq!(calls["started"], 20, "{r:#}");
    assert!(
        calls["peak_concurrent"].as_u64().is_some_and(|p| p <= 10),
        "{r:#}"
    );
    assert_eq!(calls["passed"], 20, "{r:#}");
    assert_eq!(calls["failed"], 0, "{r:#}");
    // Four prompts per call (welcome, two keys answered, goodbye), each recognized.
    assert_eq!(r["prompts_heard"], 80, "{r:#}");
    assert_eq!(r["rtp"]["lost"], 0, "{r:#}");
    assert_eq!(r["rtp"]["timestamp_errors"], 0, "{r:#}");
    assert!(r["setup"]["count"].as_u64() == Some(20), "{r:#}");
    // Keys by RFC 4733, SIP INFO and in-band tones were all answered.
    for via in ["rfc4733", "inband", "info"] {
        assert!(
            r["dtmf_key_down_to_prompt"][via]["count"]
                .as_u64()
                .unwrap_or(0)
                >= 10,
            "{via}: {r:#}"
        );
    }
    assert!(
        r["server"]["rss_max_bytes"].as_u64().unwrap_or(0) > 0,
        "{r:#}"
    );
}

#[test]
fn a_caller_that_hears_the_wrong_prompt_fails_and_says_which() {
    let (server, _rtp) = start_server();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("wrong.toml");
    std::fs::write(
        &scenario,
        "steps = [\n  { expect_prompt = \"welcome\" },\n  { press = \"3\" },\n  \
         { expect_prompt = \"digit-4\" },\n  { hangup = true },\n]\n",
    )
    .unwrap();
    let (ok, r) = loadtest(
        &server,
        &[
            "--scenario",
            scenario.to_str().unwrap(),
            "--calls",
            "3",
            "--concurrency",
            "3",
            "--rate",
            "10",
            "--tcp",
        ],
    );
    assert!(!ok, "a failed call makes the run fail: {r:#}");
    assert_eq!(r["calls"]["passed"], 0, "{r:#}");
    assert_eq!(r["calls"]["failed_by_reason"]["wrong_prompt"], 3, "{r:#}");
    let example = r["calls"]["failure_examples"][0]
        .as_str()
        .unwrap_or_default();
    assert!(
        example.contains("heard `digit-3` (whole, ")
            && example.ends_with("while expecting `digit-4`"),
        "{example}"
    );
}

/// The triage flow speaks with text-to-speech: the callers recognize each spoken prompt
/// (rendered by the same pipeline) in order, through menu, submenu and keyed patient number.
#[test]
fn callers_walk_the_spoken_triage_flow_and_hear_each_sentence_in_order() {
    let (server, _rtp) = start_server();
    let (ok, r) = loadtest(
        &server,
        &[
            "--scenario",
            "loadtest/scenarios/triage.toml",
            "--calls",
            "6",
            "--concurrency",
            "6",
            "--rate",
            "5",
        ],
    );
    assert!(ok, "exit status: {r:#}");
    assert_eq!(r["calls"]["passed"], 6, "{r:#}");
    // Four spoken prompts per call.
    assert_eq!(r["prompts_heard"], 24, "{r:#}");
    assert_eq!(r["rtp"]["lost"], 0, "{r:#}");
}

/// Browser callers (`--whip`): each a WebRTC peer connection (ICE, DTLS-SRTP) placed by WHIP,
/// on G.711 and on Opus, walk the demo menu with RFC 4733 keys and are hung up by the server
/// (which closes their connection), judged as phones are.
#[test]
fn browser_callers_on_pcmu_and_opus_hear_every_prompt_of_the_menu() {
    let (server, _rtp) =
        start_server_with("[webrtc]\npublic_calls = true\nmax_connecting_per_source = 50\n");
    let http = server.http.to_string();
    let (ok, r) = loadtest(
        &server,
        &[
            "--scenario",
            "loadtest/scenarios/browser-demo-menu.toml",
            "--scenario",
            "loadtest/scenarios/browser-demo-menu-opus.toml",
            "--whip",
            &http,
            "--calls",
            "6",
            "--concurrency",
            "6",
            "--rate",
            "10",
        ],
    );
    assert!(ok, "exit status: {r:#}");
    assert_eq!(r["callers"], "browser", "{r:#}");
    assert_eq!(r["calls"]["passed"], 6, "{r:#}");
    // Four prompts per call: welcome, two keys answered, goodbye.
    assert_eq!(r["prompts_heard"], 24, "{r:#}");
    assert_eq!(r["rtp"]["lost"], 0, "{r:#}");
    assert_eq!(r["setup"]["count"], 6, "every call connected: {r:#}");
    assert!(
        r["dtmf_key_down_to_prompt"]["rfc4733"]["count"]
            .as_u64()
            .unwrap_or(0)
            >= 12,
        "{r:#}"
    );
}

/// Browser callers to a server that does not take anonymous browser calls are refused, and
/// the report says why; a scenario that keys by SIP INFO cannot run as browsers at all.
#[test]
fn browser_callers_refused_by_the_server_fail_with_its_answer() {
    let (server, _rtp) = start_server();
    let http = server.http.to_string();
    let (ok, r) = loadtest(
        &server,
        &[
            "--scenario",
            "loadtest/scenarios/browser-demo-menu.toml",
            "--whip",
            &http,
            "--calls",
            "2",
            "--concurrency",
            "2",
        ],
    );
    assert!(!ok, "{r:#}");
    assert_eq!(r["calls"]["failed_by_reason"]["whip_refused"], 2, "{r:#}");
    let example = r["calls"]["failure_examples"][0]
        .as_str()
        .unwrap_or_default();
    assert!(example.contains("WHIP answered 401"), "{example}");

    let out = Command::new(env!("CARGO_BIN_EXE_careline-loadtest"))
        .current_dir(root())
        .args(["run", "--scenario", "loadtest/scenarios/demo-menu.toml"])
        .args(["--whip", &http])
        .output()
        .expect("run careline-loadtest");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("demo-menu: step 5: a browser caller cannot key by SIP INFO"),
        "{err}"
    );
}

/// Synthetic agents (`--answer`): phone callers walk the triage flow into the test-results
/// queue; two browser agents answer the three of them through the queue's answer
/// endpoint (WebRTC), say the `welcome` prompt, which each caller must hear whole through the
/// bridge, check they hear the caller, and hang up, which the caller's scenario expects.
#[test]
fn browser_agents_answer_queued_phone_callers_and_each_side_hears_the_other() {
    let (server, _rtp) = start_server();
    let out = server
        .cli(&server_bin())
        .args(["user", "add", "nurse-1", "--role", "agent"])
        .output()
        .expect("careline user add");
    let text = String::from_utf8_lossy(&out.stdout);
    let token = text
        .lines()
        .find(|l| l.starts_with("clt_"))
        .unwrap_or_else(|| panic!("no token: {text} {}", String::from_utf8_lossy(&out.stderr)))
        .to_string();
    let http = server.http.to_string();
    let (ok, r) = loadtest_with(
        &server,
        &[
            "--scenario",
            "loadtest/scenarios/triage-answered.toml",
            "--answer",
            "triage-results",
            "--answerers",
            "2",
            "--answer-http",
            &http,
            "--answer-talk-ms",
            "1000",
            "--calls",
            "3",
            "--concurrency",
            "3",
            "--rate",
            "4",
        ],
        &[("LOADTEST_TOKEN", &token)],
    );
    assert!(ok, "exit status: {r:#}");
    assert_eq!(r["calls"]["passed"], 3, "{r:#}");
    assert_eq!(r["agents"]["answering"], 2, "{r:#}");
    // Three callers, two agents: one of them takes a second caller after her first.
    assert_eq!(
        r["agents"]["answered"], 3,
        "every caller answered and heard: {r:#}"
    );
    assert_eq!(r["rtp"]["lost"], 0, "{r:#}");

    // An agent refused by the server (no such queue) says so, and the run fails.
    let (ok, r) = loadtest_with(
        &server,
        &[
            "--scenario",
            "loadtest/scenarios/triage-answered.toml",
            "--answer",
            "nowhere",
            "--answerers",
            "1",
            "--answer-http",
            &http,
            "--calls",
            "1",
            "--max-duration",
            "8",
        ],
        &[("LOADTEST_TOKEN", &token)],
    );
    assert!(!ok, "{r:#}");
    assert_eq!(r["agents"]["failed_by_reason"]["agent_refused"], 1, "{r:#}");
    let examples = r["calls"]["failure_examples"].to_string();
    assert!(examples.contains("no queue is named"), "{examples}");
}
