//! What an operator sees: start-up errors that name the problem, configuration layering,
//! a Japanese menu by configuration, and a graceful drain on SIGTERM.

mod support;

use std::time::Duration;

use careline::media::codec::Codec;
use support::audio::wait_for_prompt;
use support::rtp::RtpPeer;
use support::server::{Options, TestServer};
use support::sip::{Call, Ua, answered_call, dial_answered, invite, sdp_media_addr, sdp_offer};

fn careline(args: &[&str], dir: &std::path::Path) -> (i32, String) {
    let out = support::server::careline_command()
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run careline");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn an_unknown_config_key_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("careline.toml"), "[sip]\nmax_call = 10\n").unwrap();
    let (code, text) = careline(&["serve"], dir.path());
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("max_call") && text.contains("careline.toml"),
        "{text}"
    );

    let (code, text) = careline(&["serve", "--config", "missing.toml"], dir.path());
    assert_eq!(code, 1);
    assert!(text.contains("missing.toml"), "{text}");
}

#[test]
fn a_prompt_in_the_wrong_format_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("prompts/en")).unwrap();
    std::fs::write(dir.path().join("prompts/en/welcome.mp3"), b"ID3\x03").unwrap();
    let (code, text) = careline(
        &[
            "serve",
            "--no-tls",
            "--sip-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("welcome.mp3") && text.contains("WAV"),
        "{text}"
    );
}

#[test]
fn config_layers_env_over_file_and_flags_over_env() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("careline.toml"),
        "[sip]\nmax_calls = 10\nretry_after_secs = 7\n",
    )
    .unwrap();
    let out = support::server::careline_command()
        .args(["config", "--max-calls", "30"])
        .current_dir(dir.path())
        .env("CARELINE_SIP__MAX_CALLS", "20")
        .env("CARELINE_SIP__RETRY_AFTER_SECS", "9")
        // Secrets, as the docs advise giving them: printed masked.
        .env("CARELINE_SMTP__PASSWORD", "smtp-s3cret")
        .env(
            "CARELINE_DATABASE__URL",
            "postgres://careline:db-s3cret@127.0.0.1:5432/careline",
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("max_calls = 30"), "flag wins: {text}");
    assert!(
        text.contains("retry_after_secs = 9"),
        "env beats file: {text}"
    );
    assert!(!text.contains("s3cret"), "no secret printed: {text}");
    assert!(
        text.contains("postgres://careline:***@127.0.0.1:5432/careline"),
        "{text}"
    );
}

#[test]
fn serve_from_any_folder_runs_the_built_in_menu_and_a_mistyped_folder_stops_the_start() {
    // As after `cargo install`: the working folder holds neither prompts/ nor flows/.
    let server = TestServer::start_with(Options {
        from_elsewhere: true,
        ..Default::default()
    });
    let log = server.log();
    // Both the prompts and the flows say where they came from.
    assert!(
        log.contains("prompts loaded") && log.matches("(built in)").count() >= 2,
        "{log}"
    );
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let mut ua = Ua::udp(server.sip);
    let _call = dial_answered(&mut ua, "100", &peer);
    wait_for_prompt(&peer, Codec::Pcmu, "en", "welcome", 0, Some(2000));
    drop(server);

    // A folder the operator named must exist: the start stops and names it.
    let dir = tempfile::tempdir().unwrap();
    let listen = [
        "--no-tls",
        "--sip-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ];
    let mut args = vec!["serve", "--prompts-dir", "promts"];
    args.extend(listen);
    let (code, text) = careline(&args, dir.path());
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("promts") && text.contains("does not exist"),
        "{text}"
    );
    std::fs::write(
        dir.path().join("careline.toml"),
        "[flows]\ndir = \"flws\"\n",
    )
    .unwrap();
    let mut args = vec!["serve"];
    args.extend(listen);
    let (code, text) = careline(&args, dir.path());
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("flws"), "{text}");
}

#[test]
fn a_japanese_menu_is_one_setting_away() {
    let server = TestServer::start_with(Options {
        toml: "[prompts]\nlanguage = \"ja\"\n".into(),
        ..Default::default()
    });
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let mut ua = Ua::udp(server.sip);
    let mut call = Call::new("100");
    let ok = answered_call(
        &mut ua,
        &mut call,
        &sdp_offer(
            peer.port,
            "0 101",
            &["a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000"],
        ),
    );
    peer.set_remote(sdp_media_addr(&ok.body_str()).unwrap());
    wait_for_prompt(&peer, Codec::Pcmu, "ja", "welcome", 0, Some(1200));
}

#[test]
fn sigterm_refuses_new_calls_then_hangs_up_after_the_grace_period() {
    let mut server = TestServer::start_with(Options {
        toml: "[calls]\ndrain_grace_secs = 2\n".into(),
        ..Default::default()
    });
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let mut ua = Ua::udp(server.sip);
    let mut call = Call::new("100");
    let ok = answered_call(
        &mut ua,
        &mut call,
        &sdp_offer(
            peer.port,
            "0 101",
            &["a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000"],
        ),
    );
    peer.set_remote(sdp_media_addr(&ok.body_str()).unwrap());
    assert_eq!(
        server.wait_metric("careline_calls_active", 1.0, Duration::from_secs(10)),
        1.0
    );

    server.signal("TERM");
    // Draining shows on /healthz once the signal is handled.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (code, body) = server.http_get("/healthz").expect("health while draining");
        if code == 503 {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never draining: {code} {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.contains("draining"));

    let mut ua2 = Ua::udp(server.sip);
    let mut late = Call::new("100");
    let (resp, _) = invite(
        &mut ua2,
        &mut late,
        &sdp_offer(peer.port + 2, "0", &["a=rtpmap:0 PCMU/8000"]),
    );
    assert_eq!(resp.status(), Some(503), "new calls refused while draining");
    assert!(resp.header("retry-after").is_some());

    let bye = ua
        .expect(Duration::from_secs(6), |m| m.method() == Some("BYE"))
        .expect("active call hung up after the grace period");
    ua.respond(&bye, 200, "OK");
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("server exits after draining");
    assert!(status.success(), "{status}");
}
