//! What the headless-Chromium tests share: one browser at a time, running a playwright-core
//! script of `tests/browser/`, users with a password to sign in with, and a fake microphone.

use super::server::TestServer;

/// One Chromium at a time: two browsers recording audio at once on a 2-core machine would
/// starve each other's audio threads, and what is heard is what these tests judge.
pub static CHROMIUM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The password [`add_user`] gives.
pub const NURSE_PASSWORD: &str = "a nurse's long passphrase";

/// Runs a playwright-core script of `tests/browser/` with `args`; its JSON summary (stdout).
pub fn browser_script(server: &TestServer, script: &str, args: &[String]) -> serde_json::Value {
    let out = std::process::Command::new("node")
        .arg(
            super::server::repo_root()
                .join("tests/browser")
                .join(script),
        )
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run node ({e}): scripts/test installs Node's playwright-core and chromium"
            )
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed: {stderr}\n{}",
        server.log()
    );
    serde_json::from_slice(&out.stdout).expect("the script's summary")
}

/// Adds user `name` of `role` with [`NURSE_PASSWORD`], as an administrator would.
pub fn add_user(server: &TestServer, name: &str, role: &str) {
    use std::io::Write;
    let mut add = super::server::careline_command()
        .arg("--config")
        .arg(server.config_path())
        .arg("--data-dir")
        .arg(server.data_path())
        .args(["user", "add", name, "--role", role, "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(format!("{NURSE_PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(add.wait_with_output().unwrap().status.success());
}

/// The folder for a browser test's screenshots (target/browser-screenshots/NAME) and a fake
/// microphone in it that plays a 440 Hz tone for ten seconds.
pub fn screenshots_and_mic(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = super::server::repo_root();
    let shots = root.join("target/browser-screenshots").join(name);
    std::fs::create_dir_all(&shots).unwrap();
    let mic = shots.join("mic-440hz.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(&mic, spec).unwrap();
    for n in 0..48_000 * 10 {
        let t = n as f32 / 48_000.0;
        wav.write_sample((8000.0 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()) as i16)
            .unwrap();
    }
    wav.finalize().unwrap();
    (shots, mic)
}
