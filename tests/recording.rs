//! End-to-end recording: a real caller, a real server process, the CLI reading back what was
//! stored. What was sent and heard must come back on the right channels; tampering, crashes
//! and storage loss must each be named; no plaintext audio may reach the disk.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use careline::media::codec::Codec;
use careline::media::recognize;
use careline::recording::format::{FRAME_HEADER_LEN, HEADER_LEN};
use support::audio::{expect_prompt, let_call_run};
use support::rtp::RtpPeer;
use support::server::{Options, TestServer, prompt_pcm};
use support::sip::{Call, PCMU_TE, Ua, answered_call, sdp_media_addr, sdp_offer};

fn wait(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn connect(server: &TestServer, peer: &RtpPeer) -> (Ua, Call) {
    let mut ua = Ua::udp(server.sip);
    let mut call = Call::new("100");
    let ok = answered_call(&mut ua, &mut call, &sdp_offer(peer.port, "0 101", &PCMU_TE));
    peer.set_remote(sdp_media_addr(&ok.body_str()).expect("media address"));
    (ua, call)
}

fn hang_up(ua: &mut Ua, call: &mut Call) {
    let bye = call.bye(ua);
    ua.send(&bye);
    ua.expect(Duration::from_secs(5), |m| m.cseq_method() == Some("BYE"))
        .expect("200 to BYE");
}

/// Speech-like caller audio: a prompt the server never plays (so it cannot leak across).
fn caller_speech() -> Vec<i16> {
    let mut v = prompt_pcm("en", "digit-7");
    v.truncate(8000 * 2);
    v
}

fn options(format: &str, extra: &str) -> Options {
    Options {
        toml: format!("[recording]\nformat = \"{format}\"\nflush_secs = 1\n{extra}"),
        args: vec!["--record-all".into()],
        ..Default::default()
    }
}

fn rows(server: &TestServer) -> Vec<serde_json::Value> {
    let out = server.cli(&["recording", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json row"))
        .collect()
}

/// Waits for the first recording to reach `state` (and, for S3, be uploaded when asked).
fn wait_row(server: &TestServer, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(r) = rows(server).into_iter().find(|r| pred(r)) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "recording never got there: {:?}",
            rows(server)
        );
        wait(200);
    }
}

fn id_of(row: &serde_json::Value) -> String {
    row["id"].as_str().unwrap().to_string()
}

/// Exports to WAV and returns (left, right) at 8 kHz.
fn export_channels(server: &TestServer, id: &str) -> (Vec<i16>, Vec<i16>, String) {
    let out_path = server.data_dir.path().join(format!("{id}.wav"));
    let out = server.cli(&["recording", "export", id, "-o", out_path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut r = hound::WavReader::open(&out_path).expect("a valid WAV");
    assert_eq!(r.spec().channels, 2);
    assert_eq!(r.spec().sample_rate, 8000);
    let s: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
    (
        s.iter().step_by(2).copied().collect(),
        s.iter().skip(1).step_by(2).copied().collect(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn recording_file(server: &TestServer, id: &str) -> PathBuf {
    find_files(&server.data_path().join("recordings"))
        .into_iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(id))
        })
        .expect("the recording file")
}

fn find_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(find_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn verify(server: &TestServer, id: &str) -> (bool, String) {
    let out = server.cli(&["recording", "verify", id]);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn recorded_call_exports_what_the_caller_said_and_heard_on_separate_channels() {
    for format in ["wav", "opus"] {
        let server = TestServer::start_with(options(format, ""));
        let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
        let (mut ua, mut call) = connect(&server, &peer);
        let_call_run(&peer, 500);
        let said = caller_speech();
        peer.send_audio(said.clone());
        let_call_run(&peer, 3500);
        hang_up(&mut ua, &mut call);
        let heard = peer.heard();
        let row = wait_row(&server, |r| r["state"] == "sealed");
        assert_eq!(
            row["participants"],
            serde_json::json!(["customer", "agent"])
        );
        let (left, right, _) = export_channels(&server, &id_of(&row));
        // As long as the call the caller heard (both stretch alike on a slow machine), and at
        // least the 4 s the test held the call.
        assert!(
            left.len() >= 8 * 3900 && (left.len() as i64 - heard.len() as i64).abs() < 8000,
            "{format}: {} ms recorded of a call heard for {} ms",
            left.len() / 8,
            heard.len() / 8
        );
        // Left: the caller. Opus keeps the loudness contour, G.711 in WAV the waveform.
        let m = recognize::find(&left, &said).expect("caller audio in the left channel");
        let (env_min, wave_min) = if format == "wav" {
            (0.95, 0.95)
        } else {
            (0.85, 0.3)
        };
        assert!(
            m.envelope_score >= env_min && m.waveform_score >= wave_min,
            "{format}: caller channel {m:?}"
        );
        // Right: what the caller heard, the welcome prompt, and not the caller's own voice.
        let codec = if format == "wav" {
            Codec::Pcmu
        } else {
            Codec::Opus
        };
        expect_prompt(&right, codec, "en", "welcome", 0, Some(2000));
        let heard_m = recognize::find(&heard, &right[..16000]).expect("heard audio");
        assert!(
            heard_m.envelope_score > 0.85,
            "{format}: right = heard: {heard_m:?}"
        );
        if let Some(m) = recognize::find(&right, &said) {
            assert!(
                m.waveform_score < 0.5,
                "{format}: caller leaked into right: {m:?}"
            );
        }
        let (ok, text) = verify(&server, &id_of(&row));
        assert!(ok, "{text}");
    }
}

/// Chunks of a recording file as (offset, length) of each frame.
fn frames(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = HEADER_LEN;
    while at + FRAME_HEADER_LEN <= data.len() {
        let len = u32::from_be_bytes(data[at + 21..at + 25].try_into().unwrap()) as usize;
        out.push((at, FRAME_HEADER_LEN + len));
        at += FRAME_HEADER_LEN + len;
    }
    out
}

fn record_short_call(server: &TestServer, secs: u64) -> String {
    let before = rows(server).len();
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let (mut ua, mut call) = connect(server, &peer);
    peer.send_audio(caller_speech());
    let_call_run(&peer, secs * 1000);
    hang_up(&mut ua, &mut call);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rs = rows(server);
        if rs.len() > before && rs.iter().all(|r| r["state"] != "recording") {
            return id_of(rs.last().unwrap());
        }
        assert!(Instant::now() < deadline, "{rs:?}");
        wait(200);
    }
}

#[test]
fn tampered_recordings_are_refused_each_with_its_own_error() {
    let server = TestServer::start_with(options("wav", "chunk_bytes = 4096\n"));
    let a = record_short_call(&server, 2);
    let b = record_short_call(&server, 2);
    let path_a = recording_file(&server, &a);
    let original = std::fs::read(&path_a).unwrap();
    let fa = frames(&original);
    assert!(fa.len() >= 5, "several chunks: {}", fa.len());
    assert!(verify(&server, &a).0);

    let out_path = server.data_dir.path().join("tampered.wav");
    let sup = user(&server, "sam", "supervisor");
    let audio = format!("/api/v1/recordings/{a}/audio");
    // Listening over HTTP, the whole file or from a byte on: an error status, or a body cut
    // short of what the response announced (the client sees a broken transfer), never a
    // complete response carrying partial audio.
    let listen_fails = |what: &str| {
        for range in [None, Some("bytes=0-"), Some("bytes=100-")] {
            let (code, head, body) = raw_get(&server, &audio, &sup, range);
            assert!(
                code >= 400 || !complete(&head, &body),
                "{what}, {range:?}: a complete {code} response of {} bytes:\n{head}",
                body.len()
            );
        }
    };
    {
        let (code, head, body) = raw_get(&server, &audio, &sup, None);
        assert!(code == 200 && complete(&head, &body), "undamaged: {head}");
    }
    let check = |bytes: Vec<u8>, expect: &str| {
        std::fs::write(&path_a, &bytes).unwrap();
        let (ok, text) = verify(&server, &a);
        assert!(!ok && text.contains(expect), "expected `{expect}`:\n{text}");
        if !expect.starts_with("truncated") {
            // Export refuses it too, and leaves no partial file behind.
            let out = server.cli(&["recording", "export", &a, "-o", out_path.to_str().unwrap()]);
            assert!(!out.status.success(), "export of a damaged recording");
            assert!(!out_path.exists(), "no partial export left for `{expect}`");
        }
        listen_fails(expect);
        std::fs::write(&path_a, &original).unwrap();
    };
    // A flipped bit in the middle of chunk 2.
    let mut flipped = original.clone();
    flipped[fa[2].0 + FRAME_HEADER_LEN + 100] ^= 0x01;
    check(flipped, "chunk 2 is corrupt");
    // The final chunk dropped.
    let last = fa.len() - 1;
    check(
        original[..fa[last].0].to_vec(),
        &format!("truncated after chunk {}", last - 1),
    );
    // Chunks 1 and 2 swapped.
    let mut swapped = original[..fa[1].0].to_vec();
    swapped.extend_from_slice(&original[fa[2].0..fa[2].0 + fa[2].1]);
    swapped.extend_from_slice(&original[fa[1].0..fa[1].0 + fa[1].1]);
    swapped.extend_from_slice(&original[fa[3].0..]);
    check(
        swapped,
        "chunk 2 appears at position 1: chunks were reordered",
    );
    // Chunk 1 replaced by chunk 1 of the other recording.
    let other = std::fs::read(recording_file(&server, &b)).unwrap();
    let fb = frames(&other);
    let mut spliced = original[..fa[1].0].to_vec();
    spliced.extend_from_slice(&other[fb[1].0..fb[1].0 + fb[1].1]);
    spliced.extend_from_slice(&original[fa[2].0..]);
    check(
        spliced,
        &format!("belongs to another recording ({b}): spliced"),
    );
    // The header's start time edited.
    let mut header = original.clone();
    header[30] ^= 0x40;
    check(header, "does not unwrap");

    // The wrong master key: the recording's key is not in the ring that reads it.
    let keys = server.data_path().join("keys");
    let key_id = rows(&server)[0]["key_id"].as_str().unwrap().to_string();
    let key_file = keys.join(format!("{key_id}.key"));
    let aside = server.data_dir.path().join("aside.key");
    std::fs::rename(&key_file, &aside).unwrap();
    let out = server.cli_env(
        &["recording", "verify", &a],
        &[("CARELINE_MASTER_KEY", &"42".repeat(32))],
    );
    std::fs::rename(&aside, &key_file).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success()
            && text.contains(&format!("master key {key_id} is not in the key ring")),
        "{text}"
    );
    assert!(verify(&server, &a).0, "restored file verifies again");
}

#[test]
fn after_kill_9_the_audio_up_to_the_crash_survives_and_restart_seals_it() {
    let mut server = TestServer::start_with(options("opus", ""));
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let (_ua, _call) = connect(&server, &peer);
    let_call_run(&peer, 300);
    let said = caller_speech();
    peer.send_audio(said.clone());
    let_call_run(&peer, 4000);
    server.kill9();
    let row = rows(&server).pop().expect("a recording in the index");
    assert_eq!(row["state"], "recording");
    let id = id_of(&row);
    let (ok, text) = verify(&server, &id);
    assert!(!ok && text.contains("truncated after chunk"), "{text}");

    server.restart();
    let row = wait_row(&server, |r| r["state"] == "sealed");
    assert_eq!(row["recovered"], true);
    assert!(verify(&server, &id).0);
    let (left, right, _) = export_channels(&server, &id);
    assert!(
        left.len() >= 8000 * 2,
        "at least 2 s before the crash survived: {} ms",
        left.len() / 8
    );
    let m = recognize::find(&left, &said[..8000]).expect("caller audio");
    assert!(m.envelope_score > 0.85, "{m:?}");
    expect_prompt(&right, Codec::Opus, "en", "welcome", 0, Some(1500));
}

/// Shannon entropy in bits per byte.
fn entropy(data: &[u8]) -> f64 {
    let mut counts = [0u64; 256];
    for &b in data {
        counts[b as usize] += 1;
    }
    let n = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

#[test]
fn no_plaintext_audio_reaches_the_disk_while_recording() {
    for format in ["wav", "opus"] {
        let server = TestServer::start_with(options(format, "chunk_bytes = 4096\n"));
        let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
        let (mut ua, mut call) = connect(&server, &peer);
        let said = caller_speech();
        peer.send_audio(said.clone());
        // Mid-call, once the caller's speech has been sent and the recording holds chunks
        // written during the call: everything under the data dir.
        let_call_run(&peer, 2500);
        let deadline = Instant::now() + Duration::from_secs(30);
        let files = loop {
            let files = find_files(&server.data_path());
            let written = files
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "clrec"))
                .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
                .max()
                .unwrap_or(0);
            if written > 2000 {
                break files;
            }
            assert!(
                Instant::now() < deadline,
                "{format}: no chunks written during the call: {files:?}"
            );
            wait(100);
        };
        let recs: Vec<&PathBuf> = files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "clrec"))
            .collect();
        assert_eq!(recs.len(), 1, "{files:?}");
        let mut said_le = Vec::new();
        for s in &said[4000..4016] {
            said_le.extend_from_slice(&s.to_le_bytes());
        }
        let ulaw: Vec<u8> = said[4000..4032]
            .iter()
            .map(|&s| careline::media::codec::g711::linear_to_ulaw(s))
            .collect();
        for f in &files {
            let data = std::fs::read(f).unwrap();
            for magic in [&b"RIFF"[..], b"WAVE", b"OggS", b"OpusHead"] {
                assert!(
                    !data.windows(magic.len()).any(|w| w == magic),
                    "{format}: {} contains {:?}",
                    f.display(),
                    String::from_utf8_lossy(magic)
                );
            }
            assert!(
                !data.windows(said_le.len()).any(|w| w == said_le),
                "{}: caller PCM",
                f.display()
            );
            assert!(
                !data.windows(ulaw.len()).any(|w| w == ulaw),
                "{}: caller µ-law",
                f.display()
            );
        }
        let data = std::fs::read(recs[0]).unwrap();
        assert!(
            data.len() > 2000,
            "{format}: chunks are written during the call ({} bytes)",
            data.len()
        );
        let body = &data[HEADER_LEN..];
        assert!(
            entropy(body) > 7.5,
            "{format}: ciphertext looks random ({:.2} bits/byte)",
            entropy(body)
        );
        hang_up(&mut ua, &mut call);
    }
}

/// `careline user add`; returns the printed bearer token.
fn user(server: &TestServer, name: &str, role: &str) -> String {
    let out = server.cli(&["user", "add", name, "--role", role]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("clt_"))
        .expect("a token")
        .to_string()
}

/// A JSON request with a bearer token.
fn api(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> support::http::Response {
    let auth = format!("Bearer {token}");
    let raw = body.map(|b| b.to_string());
    support::http::request(
        server.http,
        method,
        path,
        &[("Authorization", &auth)],
        raw.as_deref().map(|b| ("application/json", b.as_bytes())),
    )
}

/// The audit trail as the auditor reads it.
fn audit(server: &TestServer, auditor: &str, query: &str) -> Vec<serde_json::Value> {
    let r = api(
        server,
        "GET",
        &format!("/api/v1/audit?{query}"),
        auditor,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn recording_is_controlled_per_call_over_http_and_streams_back_to_allowed_users_only() {
    let server = TestServer::start_with(Options {
        toml: "[recording]\nformat = \"wav\"\n".into(),
        ..Default::default()
    });
    let sup = user(&server, "sam", "supervisor");
    let agent = user(&server, "amy", "agent");
    let admin = user(&server, "ada", "admin");
    let auditor = user(&server, "audrey", "auditor");
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let (mut ua, mut call) = connect(&server, &peer);
    let post = |action: &str, token: Option<&str>| {
        http(
            &server,
            "POST",
            &format!("/api/v1/calls/{}/recording/{action}", call.call_id),
            token,
        )
        .0
    };
    assert_eq!(post("start", None), 401, "no credentials, no control");
    assert_eq!(post("start", Some(&agent)), 403, "agents do not control it");
    let said = caller_speech();
    let started = Instant::now();
    assert_eq!(post("start", Some(&sup)), 202);
    peer.send_audio(said.clone());
    let_call_run(&peer, 1500);
    let paused = Instant::now();
    assert_eq!(post("pause", Some(&sup)), 202);
    let_call_run(&peer, 1500);
    let resumed = Instant::now();
    assert_eq!(post("resume", Some(&sup)), 202);
    let_call_run(&peer, 1000);
    assert_eq!(post("stop", Some(&sup)), 202);
    let stopped = Instant::now();
    assert_eq!(post("sing", Some(&sup)), 400);
    hang_up(&mut ua, &mut call);
    let row = wait_row(&server, |r| r["state"] == "sealed");
    // One recording: the call was not recorded before it was asked, the refused requests
    // started nothing, and pause/resume stayed within the one recording.
    assert_eq!(
        rows(&server).len(),
        1,
        "only the recording that was asked for"
    );
    // Its length is the recorded spans as this test timed them, without the pause (on a
    // slow machine all of them stretch alike).
    let ms = row["duration_ms"].as_u64().unwrap() as i64;
    let spans = ((paused - started) + (stopped - resumed)).as_millis() as i64;
    let pause = (resumed - paused).as_millis() as i64;
    assert!(
        (ms - spans).abs() < pause / 2,
        "the {pause} ms pause is not stored: {ms} ms recorded of {spans} ms recording"
    );
    let id = id_of(&row);
    let list = api(
        &server,
        "GET",
        &format!("/api/v1/recordings?call_id={}", call.call_id),
        &sup,
        None,
    );
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.json()["recordings"][0]["id"], id.as_str());
    assert!(!list.body.contains("location") && !list.body.contains("file:"));

    let audio = format!("/api/v1/recordings/{id}/audio");
    assert_eq!(http(&server, "GET", &audio, None).0, 401);
    assert_eq!(http(&server, "GET", &audio, Some(&agent)).0, 403);
    // As stored: the decrypted WAV, streamed.
    let (code, body) = http(&server, "GET", &audio, Some(&sup));
    assert_eq!(code, 200);
    assert!(body.starts_with(b"RIFF"), "decrypted WAV streamed");
    // A PCMU call is stored as its own µ-law bytes (WAV format tag 7, 2 bytes per stereo
    // sample): more than 2 s of it.
    assert_eq!(u16::from_le_bytes([body[20], body[21]]), 7, "a µ-law WAV");
    assert!(body.len() > 8000 * 2 * 2, "{} bytes", body.len());
    // As a complete WAV file, streamed with its exact sizes known ahead (from the index):
    // it decodes, and the caller is on the left.
    let (code, head, wav) =
        http_with_head(&server, "GET", &format!("{audio}?format=wav"), Some(&sup));
    assert_eq!(code, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {}", wav.len())),
        "{head}"
    );
    let sizes = |at: usize| u32::from_le_bytes(wav[at..at + 4].try_into().unwrap()) as usize;
    assert_eq!((sizes(4), sizes(40)), (wav.len() - 8, wav.len() - 44));
    assert!(head.to_ascii_lowercase().contains("accept-ranges: bytes"));
    // A player seeks with ranges: each is exactly those bytes of the whole file, as a WAV
    // (its header, samples converted from any stored one) and as stored.
    let ranged = |query: &str, whole: &[u8]| {
        let n = whole.len();
        let get = |range: &str| {
            let path = format!("{audio}{query}");
            http_ranged(&server, "GET", &path, Some(&sup), Some(range))
        };
        for (range, first, last) in [
            ("bytes=0-43".to_string(), 0, 43),
            ("bytes=10-99".to_string(), 10, 99),
            ("bytes=45-5000".to_string(), 45, 5000),
            ("bytes=20001-".to_string(), 20001, n - 1),
            ("bytes=-301".to_string(), n - 301, n - 1),
            (format!("bytes={}-{}", n - 7, n + 100), n - 7, n - 1),
        ] {
            let (code, head, part) = get(&range);
            assert_eq!(code, 206, "{range}: {head}");
            assert!(
                head.to_ascii_lowercase()
                    .contains(&format!("content-range: bytes {first}-{last}/{n}")),
                "{range}: {head}"
            );
            assert!(part == whole[first..=last], "{query} {range}: other bytes");
        }
        let (code, head, _) = get(&format!("bytes={n}-"));
        assert_eq!(code, 416, "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-range: bytes */{n}"))
        );
    };
    ranged("?format=wav", &wav);
    ranged("", &body);
    let mut reader = hound::WavReader::new(std::io::Cursor::new(wav)).expect("a valid WAV");
    assert_eq!(
        (reader.spec().channels, reader.spec().sample_rate),
        (2, 8000)
    );
    let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let m = recognize::find(&left, &said[800..8000]).expect("the caller in the WAV");
    assert!(m.envelope_score > 0.9 && m.waveform_score > 0.9, "{m:?}");
    // Transcoded to Ogg Opus: it decodes too.
    let (code, ogg) = http(&server, "GET", &format!("{audio}?format=ogg"), Some(&sup));
    assert_eq!(code, 200);
    assert!(ogg.starts_with(b"OggS"));
    let pcm = careline::recording::encode::decode_ogg_opus(&ogg, 8000).expect("Ogg Opus");
    let left: Vec<i16> = pcm.iter().step_by(2).copied().collect();
    let m = recognize::find(&left, &said[800..8000]).expect("the caller in the Ogg");
    assert!(m.envelope_score > 0.85, "{m:?}");
    assert_eq!(
        http(&server, "GET", &format!("{audio}?format=mp3"), Some(&sup)).0,
        400
    );
    assert_eq!(
        http(
            &server,
            "GET",
            "/api/v1/recordings/rec-00/audio",
            Some(&sup)
        )
        .0,
        400
    );
    assert_eq!(
        http(
            &server,
            "POST",
            "/api/v1/calls/nope/recording/start",
            Some(&sup)
        )
        .0,
        404
    );

    // Every listening, control and refusal is in the trail, with the recording and call.
    let call_id = call.call_id.as_str();
    let trail = audit(&server, &auditor, "user=sam");
    let listened = |ranged: bool| {
        trail
            .iter()
            .filter(|e| {
                e["action"] == "recording.read"
                    && e["outcome"] == "success"
                    && e["detail"]["view"] == "audio"
                    && e["detail"]["recording"] == id.as_str()
                    && e["detail"]["call_id"] == call_id
                    && e["detail"].get("range").is_some() == ranged
            })
            .count()
    };
    assert_eq!(listened(false), 3, "{trail:?}");
    // Each range asked for (seven per format, the last one past the end) is a read too.
    assert_eq!(listened(true), 14, "{trail:?}");
    for control in ["start", "pause", "resume", "stop"] {
        assert!(
            trail.iter().any(|e| e["action"] == "recording.control"
                && e["detail"]["control"] == control
                && e["detail"]["call_id"] == call_id),
            "{control} audited"
        );
    }
    let refused = audit(&server, &auditor, "user=amy");
    assert!(refused.iter().any(|e| e["action"] == "access.denied"
        && e["detail"]["action"] == "recording.read"
        && e["detail"]["recording"] == id.as_str()));
    assert!(refused.iter().any(|e| e["action"] == "access.denied"
        && e["detail"]["action"] == "recording.control"
        && e["detail"]["call_id"] == call_id));

    // Deletion: admins only, through the archive (the index keeps it, who and why).
    let one = format!("/api/v1/recordings/{id}");
    assert_eq!(http(&server, "DELETE", &one, Some(&sup)).0, 403);
    assert_eq!(http(&server, "DELETE", &one, None).0, 401);
    assert_eq!(http(&server, "DELETE", &one, Some(&admin)).0, 204);
    assert_eq!(http(&server, "GET", &audio, Some(&sup)).0, 410);
    assert_eq!(http(&server, "DELETE", &one, Some(&admin)).0, 410);
    let meta = api(&server, "GET", &one, &sup, None);
    assert_eq!(meta.status, 200, "{}", meta.body);
    assert_eq!(meta.json()["state"], "deleted");
    let indexed = rows(&server)
        .into_iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap();
    assert_eq!(indexed["state"], "deleted");
    assert_eq!(indexed["deleted_reason"], "deleted by ada through the API");
    assert!(
        find_files(&server.data_path().join("recordings"))
            .iter()
            .all(|p| !p.to_string_lossy().contains(&id)),
        "the audio is gone from the disk"
    );
    assert_eq!(server.metric("careline_recordings_deleted_total"), 1.0);
    let trail = audit(&server, &auditor, "user=ada");
    assert!(trail.iter().any(|e| e["action"] == "recording.delete"
        && e["outcome"] == "success"
        && e["detail"]["recording"] == id.as_str()
        && e["detail"]["call_id"] == call_id));
}

/// One request, the body as bytes (audio); `token` as a bearer token.
fn http(server: &TestServer, method: &str, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    let (code, _, body) = http_with_head(server, method, path, token);
    (code, body)
}

/// [`http`], with the response's head (status line and headers) too.
fn http_with_head(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String, Vec<u8>) {
    http_ranged(server, method, path, token, None)
}

/// A GET as it comes off the wire: status, head, and the body's bytes undecoded (chunked
/// framing included), read until the server closes.
fn raw_get(
    server: &TestServer,
    path: &str,
    token: &str,
    range: Option<&str>,
) -> (u16, String, Vec<u8>) {
    raw_request(server, "GET", path, Some(token), range)
}

/// A request as it goes on the wire; the response as it comes off it, read until the server
/// closes: status, head, body bytes undecoded.
fn raw_request(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    range: Option<&str>,
) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let range = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}{range}Content-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head, buf[(split + 4).min(buf.len())..].to_vec())
}

/// Whether a response body arrived whole as its head framed it: all of its Content-Length,
/// or chunks up to the final empty one. A body delimited only by the connection closing
/// cannot tell an error from the end, so it never counts as whole.
fn complete(head: &str, body: &[u8]) -> bool {
    let head = head.to_ascii_lowercase();
    if let Some(n) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return body.len() == n;
    }
    head.contains("transfer-encoding: chunked") && body.ends_with(b"0\r\n\r\n")
}

/// [`http_with_head`] with a `Range` header.
fn http_ranged(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    range: Option<&str>,
) -> (u16, String, Vec<u8>) {
    let (code, head, mut body) = raw_request(server, method, path, token, range);
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (code, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 || eol + 2 + n > b.len() {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[(eol + 4 + n).min(b.len())..];
    }
    out
}

/// `keys rotate` beside a running server that keeps opening recordings: whatever the server
/// wrapped under the old key before it took the new one is re-wrapped by rotate's second
/// pass, so when rotate returns no recording depends on the old key.
#[test]
fn rotating_beside_a_running_server_leaves_no_recording_under_the_old_key() {
    let server = TestServer::start_with(options("wav", ""));
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let (rotated, calls) = std::thread::scope(|scope| {
        let rotate = scope.spawn(|| server.cli(&["keys", "rotate"]));
        let mut calls = 0;
        // Calls keep coming while rotate runs, and at least three in all, so the check below
        // has recordings to look at however fast rotate is.
        while !rotate.is_finished() || calls < 3 {
            let (mut ua, mut call) = connect(&server, &peer);
            wait(150);
            hang_up(&mut ua, &mut call);
            calls += 1;
        }
        (rotate.join().expect("rotate thread"), calls)
    });
    let text = String::from_utf8_lossy(&rotated.stdout).into_owned();
    assert!(
        rotated.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let new_key = text
        .split("new master key ")
        .nth(1)
        .and_then(|t| t.split([' ', ':']).next())
        .expect("the new key's id")
        .to_string();
    let rs = wait_all_sealed(&server, calls);
    let old: Vec<&serde_json::Value> = rs.iter().filter(|r| r["key_id"] != new_key).collect();
    assert!(
        old.is_empty(),
        "under the old key after rotate: {old:?}\n{text}"
    );
}

/// Every recording once `n` exist and none is still being written.
fn wait_all_sealed(server: &TestServer, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rs = rows(server);
        if rs.len() >= n && rs.iter().all(|r| r["state"] != "recording") {
            return rs;
        }
        assert!(Instant::now() < deadline, "{rs:?}");
        wait(200);
    }
}

#[test]
fn key_rotation_covers_recordings_and_patient_records_and_the_old_key_can_go() {
    let mut server = TestServer::start_with(options("opus", ""));
    // A patient with a contact record, and a clinician's break-glass (its reason is sealed
    // into the audit trail).
    let bundles = support::fixtures::fhir_bundles();
    let out = server.cli(&["patient", "import", bundles[0].to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let imported: usize = String::from_utf8_lossy(&out.stdout)
        .split("imported ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("imported N resources");
    let b: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundles[0]).unwrap()).unwrap();
    let patient = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Patient")
        .unwrap()["resource"]
        .clone();
    let pid = patient["id"].as_str().unwrap().to_string();
    let feed = user(&server, "feed", "service");
    let doc = user(&server, "dr-who", "clinician");
    let sup = user(&server, "sam", "supervisor");
    let r = api(
        &server,
        "POST",
        &format!("/api/v1/patients/{pid}/contacts"),
        &feed,
        Some(serde_json::json!({"channel": "voice", "reason": "rotation check"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = api(
        &server,
        "POST",
        &format!("/api/v1/patients/{pid}/break-glass"),
        &doc,
        Some(serde_json::json!({"reason": "unresponsive caller, checking history"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let id = record_short_call(&server, 2);
    let path = recording_file(&server, &id);
    let before = std::fs::read(&path).unwrap();
    let old_key = rows(&server)[0]["key_id"].as_str().unwrap().to_string();

    // Rotate with the server stopped (a running server knows only the keys it started with).
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(30)).is_some());
    let out = server.cli(&["keys", "rotate"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 recordings re-wrapped"), "{text}");
    assert!(
        text.contains(&format!(
            "{} patient resources and contact records re-sealed",
            imported + 1
        )),
        "{text}"
    );
    assert!(text.contains("1 audit entries keep"), "{text}");
    let row = rows(&server).remove(0);
    let new_key = row["key_id"].as_str().unwrap().to_string();
    assert_ne!(new_key, old_key);
    let after = std::fs::read(&path).unwrap();
    assert_eq!(
        before[HEADER_LEN..],
        after[HEADER_LEN..],
        "chunks untouched"
    );
    assert_ne!(
        before[..HEADER_LEN],
        after[..HEADER_LEN],
        "header re-wrapped"
    );
    // The old master key can go now (losing only the break-glass reason's clear text).
    std::fs::remove_file(server.data_path().join(format!("keys/{old_key}.key"))).unwrap();
    let (ok, text) = verify(&server, &id);
    assert!(ok && text.contains(&new_key), "{text}");

    // The server, started again with the new key alone, reads everything sealed before.
    server.restart();
    let r = api(
        &server,
        "GET",
        &format!("/api/v1/patients/{pid}/summary"),
        &doc,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let s = r.json();
    assert_eq!(s["demographics"]["family"], patient["name"][0]["family"]);
    assert_eq!(s["last_contacts"][0]["reason"], "rotation check");
    let (code, ogg) = http(
        &server,
        "GET",
        &format!("/api/v1/recordings/{id}/audio"),
        Some(&sup),
    );
    assert_eq!(code, 200);
    assert!(
        !careline::recording::encode::decode_ogg_opus(&ogg, 8000)
            .unwrap()
            .is_empty()
    );
    let (left, _, _) = export_channels(&server, &id);
    assert!(left.len() > 8000, "{} samples exported", left.len());
    let out = server.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "the chain survives rotation: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
