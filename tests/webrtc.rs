//! Browser legs end to end (issue 21): a scripted WebRTC browser (webrtc-rs `rtc`, full ICE,
//! over real loopback UDP) places a call by WHIP (RFC 9725), hears the contact flow through
//! DTLS-SRTP, presses keys as RTCDTMFSender does, and hangs up with DELETE.

mod support;

use std::time::Duration;

use careline::media::codec::Codec;
use support::audio::{expect_not_prompt, find_tone, tone, wait_for_prompt, wait_for_tone};
use support::browser::BrowserPeer;
use support::chromium::{CHROMIUM, NURSE_PASSWORD, add_user, browser_script, screenshots_and_mic};
use support::http::{Response, request};
use support::server::{Options, TestServer};

fn public() -> TestServer {
    TestServer::start_with(Options {
        toml: "[webrtc]\npublic_calls = true\n".into(),
        ..Default::default()
    })
}

fn post_offer(server: &TestServer, path: &str, offer: &str, token: Option<&str>) -> Response {
    support::http::post_sdp(server.http, path, offer, token)
}

/// The answer's first audio format (the payload type the browser will send with).
fn answered_formats(answer: &str) -> Vec<String> {
    answer
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .map(|m| m.split(' ').skip(3).map(|f| f.trim().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn a_browser_calls_by_whip_hears_the_welcome_presses_a_key_and_hangs_up() {
    let server = public();
    let browser = BrowserPeer::new(&[Codec::Pcmu, Codec::Opus]);
    let r = post_offer(&server, "/api/v1/calls/whip", &browser.offer, None);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    let location = r.header("location").expect("Location").to_string();
    assert!(
        location.starts_with("/api/v1/calls/whip/"),
        "the session's resource: {location}"
    );
    assert!(r.body.contains("a=ice-lite"), "{}", r.body);
    assert_eq!(
        answered_formats(&r.body),
        vec!["0", &browser.telephone_event_pt().to_string()],
        "PCMU, Careline's first codec, and the browser's 8 kHz telephone-event"
    );
    browser.accept(&r.body);
    browser.wait_connected();

    // The demo menu's welcome, through DTLS-SRTP, from the start.
    let (heard, welcome) = wait_for_prompt(&browser, Codec::Pcmu, "en", "welcome", 0, Some(2000));
    assert!(
        welcome.offset_ms() < 500,
        "the flow starts when the browser's media is up: {welcome:?}"
    );
    // A key from RTCDTMFSender reaches the flow like a phone's.
    let pressed_at = heard.len() as u64 / 8;
    browser.send_event('5', 100);
    let (heard, _) = wait_for_prompt(&browser, Codec::Pcmu, "en", "digit-5", pressed_at, None);
    expect_not_prompt(&heard, "en", "digit-4", pressed_at);
    assert_eq!(
        server.metric("careline_dtmf_digits_total{method=\"rfc4733\"}"),
        1.0
    );

    // DELETE on the session hangs up, as a phone's BYE.
    let r = request(server.http, "DELETE", &location, &[], None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        server.wait_metric(
            "careline_calls_ended_total{cause=\"caller_bye\"}",
            1.0,
            Duration::from_secs(10)
        ),
        1.0
    );
    let r = request(server.http, "DELETE", &location, &[], None);
    assert_eq!(r.status, 404, "the session is gone: {}", r.body);
}

#[test]
fn an_opus_only_browser_is_answered_with_opus_and_hears_the_flow() {
    let server = public();
    let browser = BrowserPeer::new(&[Codec::Opus]);
    let r = post_offer(&server, "/api/v1/calls/whip", &browser.offer, None);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(answered_formats(&r.body)[0], "111", "{}", r.body);
    browser.accept(&r.body);
    browser.wait_connected();
    wait_for_prompt(&browser, Codec::Opus, "en", "welcome", 0, Some(2000));
}

#[test]
fn placing_a_call_needs_credentials_unless_calls_are_public() {
    let server = TestServer::start();
    let browser = BrowserPeer::new(&[Codec::Pcmu]);
    let r = post_offer(&server, "/api/v1/calls/whip", &browser.offer, None);
    assert_eq!(r.status, 401, "{}", r.body);
    let agent = server.user_token("agent-1", "agent");
    let r = post_offer(&server, "/api/v1/calls/whip", &browser.offer, Some(&agent));
    assert_eq!(r.status, 201, "an agent may place a call: {}", r.body);
    let auditor = server.user_token("auditor-1", "auditor");
    let again = BrowserPeer::new(&[Codec::Pcmu]);
    let r = post_offer(&server, "/api/v1/calls/whip", &again.offer, Some(&auditor));
    assert_eq!(r.status, 403, "an auditor may not: {}", r.body);
}

#[test]
fn bad_offers_get_a_clear_error_and_start_nothing() {
    let server = public();
    let browser = BrowserPeer::new(&[Codec::Pcmu]);
    // Not SDP by its content type.
    let r = request(
        server.http,
        "POST",
        "/api/v1/calls/whip",
        &[],
        Some(("application/json", browser.offer.as_bytes())),
    );
    assert_eq!(r.status, 415, "{}", r.body);
    // Not SDP by its content.
    let r = post_offer(&server, "/api/v1/calls/whip", "hello", None);
    assert_eq!(r.status, 400, "{}", r.body);
    // SDP without a codec Careline takes.
    let g722 = browser
        .offer
        .replace("PCMU/8000", "G722/8000")
        .replace("PCMU", "G722");
    let r = post_offer(&server, "/api/v1/calls/whip", &g722, None);
    assert_eq!(r.status, 422, "{}", r.body);
    // A flow that does not exist.
    let r = post_offer(
        &server,
        "/api/v1/calls/whip?flow=no-such-flow",
        &browser.offer,
        None,
    );
    assert_eq!(r.status, 404, "{}", r.body);
    // An unknown session.
    let r = request(
        server.http,
        "DELETE",
        "/api/v1/calls/whip/00000000000000000000000000000000",
        &[],
        None,
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(server.metric("careline_calls_started_total"), 0.0);
}

#[test]
fn browsers_that_never_connect_are_hung_up_and_one_address_cannot_pile_them_up() {
    let server = TestServer::start_with(Options {
        toml: "[webrtc]\npublic_calls = true\nconnect_timeout_secs = 1\n\
               max_connecting_per_source = 2\n"
            .into(),
        ..Default::default()
    });
    let browser = BrowserPeer::new(&[Codec::Pcmu]);
    // Two offers whose browser never takes the answer: no ICE, no DTLS.
    for _ in 0..2 {
        let r = post_offer(&server, "/api/v1/calls/whip", &browser.offer, None);
        assert_eq!(r.status, 201, "{}", r.body);
    }
    // A third from the same address while those two are connecting: refused.
    let r = post_offer(&server, "/api/v1/calls/whip", &browser.offer, None);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        server.wait_metric(
            "careline_calls_ended_total{cause=\"connect_timeout\"}",
            2.0,
            Duration::from_secs(20)
        ),
        2.0,
        "counted in /metrics"
    );
    assert_eq!(server.metric("careline_calls_active"), 0.0);
    // Their places are free again.
    let r = post_offer(&server, "/api/v1/calls/whip", &browser.offer, None);
    assert_eq!(r.status, 201, "{}", r.body);
}

/// A real browser: Debian's Chromium, headless, driven by playwright-core
/// (`tests/browser/whip-call.mjs`), calls from the example page `/call` with a fake
/// microphone, hears the welcome (checked from the audio it received), presses 7 on the
/// page's keypad (RTCDTMFSender) and hears its prompt, then hangs up. The screenshots of each
/// step are kept in `target/browser-screenshots/` to be looked at.
#[test]
fn chromium_calls_from_the_example_page_hears_the_flow_and_presses_a_key() {
    chromium_call(public(), "g711", false);
}

/// The patient reloads the page mid-call (the welcome playing): the reloaded page gets back
/// onto the same call by itself (`reconnect`), says so, and the key pressed after the reload
/// reaches the same menu; one call from start to hang-up.
#[test]
fn chromium_reloads_the_call_page_mid_call_and_the_call_goes_on() {
    let server = public();
    chromium_call(server, "reload", true);
}

/// The same with Opus first in Careline's codecs: Chromium's own codec, 48 kHz, and its
/// telephone-event at 48 kHz.
#[test]
fn chromium_calls_with_opus_when_careline_prefers_it() {
    let server = TestServer::start_with(Options {
        toml: "[webrtc]\npublic_calls = true\n[rtp]\ncodecs = [\"opus\", \"pcmu\"]\n".into(),
        ..Default::default()
    });
    chromium_call(server, "opus", false);
}

fn chromium_call(server: TestServer, label: &str, reload: bool) {
    let _one_at_a_time = CHROMIUM.lock().unwrap_or_else(|e| e.into_inner());
    let root = support::server::repo_root();
    let shots = root.join("target/browser-screenshots").join(label);
    std::fs::create_dir_all(&shots).unwrap();
    let summary = browser_script(
        &server,
        "whip-call.mjs",
        &[
            format!("http://{}", server.http),
            shots.display().to_string(),
            if reload { "reload" } else { "" }.to_string(),
        ],
    );
    assert_eq!(summary["status"], "You hung up.", "{summary}");
    if reload {
        assert_eq!(
            summary["keypad_after_reload"],
            serde_json::json!(true),
            "the reloaded page is on the call: {summary}"
        );
        assert_eq!(
            server.metric("careline_browser_connections_total{event=\"reconnected\"}"),
            1.0,
            "{}",
            server.log()
        );
        assert_eq!(
            server.metric("careline_calls_started_total"),
            1.0,
            "one call"
        );
    }
    assert_eq!(
        (
            &summary["keypad_before_call"],
            &summary["keypad_in_call"],
            &summary["keypad_after_call"],
            &summary["call_button_after_call"]
        ),
        (
            &serde_json::json!(false),
            &serde_json::json!(true),
            &serde_json::json!(false),
            &serde_json::json!(true)
        ),
        "the keypad shows only during the call, and the page can call again: {summary}"
    );
    let read = |name: &str| -> Vec<i16> {
        let raw = std::fs::read(shots.join(name)).unwrap();
        raw.chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()
    };
    let heard = read("heard.raw");
    let pressed_at = summary["pressed_at_ms"].as_u64().unwrap();
    // The welcome: what was played before the key (reloaded: what the page heard before the
    // reload, its audio starting again after it).
    let before = if reload {
        read("heard-before-reload.raw")
    } else {
        heard[..(pressed_at as usize * 8).min(heard.len())].to_vec()
    };
    // What the browser played went through its decoder and two resamplings (to its output
    // rate, back to 8 kHz in the recorder): the loudness contour survives, the waveform only
    // partly (through Opus, about a quarter). So a prompt counts as heard by its contour, with
    // some waveform, and it must match better than a prompt that was not played.
    let score = |audio: &[i16], name: &str, from_ms: u64, prefix_ms: Option<usize>| {
        let mut expected = support::server::prompt_pcm("en", name);
        if let Some(ms) = prefix_ms {
            expected.truncate(ms * 8);
        }
        careline::media::recognize::find_from(audio, &expected, from_ms as usize * 8)
            .map(|m| (m.envelope_score, m.waveform_score))
            .unwrap_or((0.0, 0.0))
    };
    // On a loaded machine the browser's audio thread glitches now and then: the contour of
    // what was played still stands out (0.8 and more) where a prompt that was not played
    // scores far lower, which the comparisons below require.
    let heard_it = |(envelope, waveform): (f32, f32)| envelope >= 0.8 && waveform >= 0.1;
    let welcome = score(&before, "welcome", 0, Some(2000));
    let never = score(&before, "digit-9", 0, Some(2000));
    assert!(
        heard_it(welcome) && welcome.0 > never.0 && welcome.1 > never.1,
        "the welcome was heard in the browser ({} ms of audio; envelope and waveform \
         {welcome:?}, of a prompt never played {never:?})",
        before.len() / 8
    );
    // Key 7: "You pressed seven." stands apart from "You pressed one." in its contour (two
    // syllables against one) where "five" and "four" (the same vowel length, the same "f")
    // were too close to tell apart when the machine was busy.
    let seven = score(&heard, "digit-7", pressed_at, None);
    let one = score(&heard, "digit-1", pressed_at, None);
    assert!(
        heard_it(seven) && seven.0 > one.0 && seven.1 > one.1,
        "the prompt of key 7 followed the key: {seven:?} (key 1's prompt, not played: {one:?})"
    );
    assert_eq!(
        server.metric("careline_dtmf_digits_total{method=\"rfc4733\"}"),
        1.0,
        "the key arrived as one RFC 4733 event"
    );
    assert_eq!(
        server.wait_metric(
            "careline_calls_ended_total{cause=\"caller_bye\"}",
            1.0,
            Duration::from_secs(10)
        ),
        1.0,
        "the page's hang-up ended the call"
    );
}

/// A browser that goes away without DELETE (a closed tab: DTLS close_notify, then silence)
/// ends its call, and the call is not left running. (With `reconnect_grace_secs = 0`: the
/// grace a reloaded page has is tested below.)
#[test]
fn a_browser_that_goes_away_ends_its_call() {
    // A flow that holds the line, and no RTP timeout: only the lost connection can end it.
    let flows = tempfile::tempdir().unwrap();
    std::fs::write(flows.path().join("hold.json"), support::fixtures::HOLD_FLOW).unwrap();
    let server = TestServer::start_with(Options {
        toml: format!(
            "[webrtc]\npublic_calls = true\nreconnect_grace_secs = 0\n[flows]\ndir = \"{}\"\n\
             default = \"hold\"\n[rtp]\ntimeout_secs = 900\n",
            flows.path().display()
        ),
        ..Default::default()
    });
    let browser = BrowserPeer::new(&[Codec::Pcmu]);
    let r = post_offer(&server, "/api/v1/calls/whip", &browser.offer, None);
    assert_eq!(r.status, 201, "{}", r.body);
    browser.accept(&r.body);
    browser.wait_connected();
    wait_for_prompt(&browser, Codec::Pcmu, "en", "welcome", 0, Some(1000));
    let gone = std::time::Instant::now();
    drop(browser);
    assert_eq!(
        server.wait_metric(
            "careline_calls_ended_total{cause=\"connection_lost\"}",
            1.0,
            Duration::from_secs(60)
        ),
        1.0,
        "{}",
        server.log()
    );
    assert!(
        gone.elapsed() < Duration::from_secs(60),
        "ICE consent (RFC 7675) ran out"
    );
    assert_eq!(server.metric("careline_calls_active"), 0.0);
}

/// A menu that waits as long as the test needs: key 5 says "five", anything else or nothing
/// plays the welcome again.
const MENU_THAT_WAITS: &str = r#"{"Version": "2019-10-30", "StartAction": "menu", "Actions": [
  {"Identifier": "menu", "Type": "GetParticipantInput",
   "Parameters": {"PromptId": "welcome", "InputTimeLimitSeconds": "3600", "StoreInput": "False"},
   "Transitions": {"NextAction": "menu",
     "Conditions": [{"NextAction": "five", "Condition": {"Operator": "Equals", "Operands": ["5"]}}],
     "Errors": [{"NextAction": "menu", "ErrorType": "InputTimeLimitExceeded"},
       {"NextAction": "menu", "ErrorType": "NoMatchingCondition"},
       {"NextAction": "menu", "ErrorType": "NoMatchingError"}]}},
  {"Identifier": "five", "Type": "GetParticipantInput",
   "Parameters": {"PromptId": "digit-5", "InputTimeLimitSeconds": "3600", "StoreInput": "False"},
   "Transitions": {"NextAction": "menu", "Conditions": [],
     "Errors": [{"NextAction": "menu", "ErrorType": "InputTimeLimitExceeded"},
       {"NextAction": "menu", "ErrorType": "NoMatchingCondition"},
       {"NextAction": "menu", "ErrorType": "NoMatchingError"}]}}]}"#;

/// A caller's page reloads mid-call: its old peer connection goes silent (the server notices
/// within seconds and the call waits), and the reloaded page sends a new offer to its
/// session's `reconnect`: the new connection takes the same call over (the menu where it
/// was, keys from the new page reach it), with no new call counted. Refused: a reconnect
/// from another address (403), for a call that has not connected yet (409), for a session
/// that does not exist (404). A page that does not come back within
/// `reconnect_grace_secs` ends the call (`connection_lost`), and its session with it.
#[test]
fn a_browser_caller_whose_page_reloads_reconnects_to_the_same_call() {
    let flows = tempfile::tempdir().unwrap();
    std::fs::write(flows.path().join("menu.json"), MENU_THAT_WAITS).unwrap();
    let server = TestServer::start_with(Options {
        toml: format!(
            "[webrtc]\npublic_calls = true\nreconnect_grace_secs = 10\n[flows]\ndir = \"{}\"\n\
             default = \"menu\"\n[rtp]\ntimeout_secs = 900\n",
            flows.path().display()
        ),
        ..Default::default()
    });
    let lost = "careline_browser_connections_total{event=\"lost\"}";
    let first = BrowserPeer::new(&[Codec::Pcmu]);
    let r = post_offer(&server, "/api/v1/calls/whip", &first.offer, None);
    assert_eq!(r.status, 201, "{}", r.body);
    let location = r.header("location").unwrap().to_string();
    let reconnect = format!("{location}/reconnect");
    first.accept(&r.body);
    first.wait_connected();
    wait_for_prompt(&first, Codec::Pcmu, "en", "welcome", 0, Some(1000));
    drop(first);
    assert_eq!(
        server.wait_metric(lost, 1.0, Duration::from_secs(30)),
        1.0,
        "the server noticed the page went silent: {}",
        server.log()
    );
    assert_eq!(
        server.metric("careline_calls_active"),
        1.0,
        "the call waits"
    );

    // The reloaded page: a new peer connection, from the same address.
    let second = BrowserPeer::new(&[Codec::Pcmu]);
    let r = reconnect_from_home(&server, &reconnect, &second);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    assert!(r.body.contains("a=ice-lite"), "{}", r.body);
    second.accept(&r.body);
    second.wait_connected();
    // The same call's menu, through the new connection: key 5 gets its prompt.
    second.send_event('5', 100);
    let (heard, _) = wait_for_prompt(&second, Codec::Pcmu, "en", "digit-5", 0, None);
    expect_not_prompt(&heard, "en", "digit-4", 0);
    assert_eq!(
        server.metric("careline_browser_connections_total{event=\"reconnected\"}"),
        1.0
    );
    assert_eq!(
        server.metric("careline_browser_connections_total{event=\"refused\"}"),
        1.0,
        "the stranger's"
    );
    assert_eq!(
        server.metric("careline_calls_started_total"),
        1.0,
        "no new call"
    );

    // A call that has not connected yet has nothing to reconnect; an unknown session is none.
    let fresh = BrowserPeer::new(&[Codec::Pcmu]);
    let r = post_offer(&server, "/api/v1/calls/whip", &fresh.offer, None);
    assert_eq!(r.status, 201, "{}", r.body);
    let fresh_reconnect = format!("{}/reconnect", r.header("location").unwrap());
    let r = post_offer(&server, &fresh_reconnect, &fresh.offer, None);
    assert_eq!(r.status, 409, "{}", r.body);
    let unknown = format!("/api/v1/calls/whip/{}/reconnect", "0".repeat(32));
    let r = post_offer(&server, &unknown, &fresh.offer, None);
    assert_eq!(r.status, 404, "{}", r.body);

    // Gone for good: the call ends when the grace is over, and the session with it.
    drop(second);
    assert_eq!(server.wait_metric(lost, 2.0, Duration::from_secs(30)), 2.0);
    let noticed = std::time::Instant::now();
    assert_eq!(
        server.wait_metric(
            "careline_calls_ended_total{cause=\"connection_lost\"}",
            1.0,
            Duration::from_secs(60)
        ),
        1.0,
        "{}",
        server.log()
    );
    assert!(
        noticed.elapsed() >= Duration::from_secs(5),
        "not before the grace: {:?}",
        noticed.elapsed()
    );
    let third = BrowserPeer::new(&[Codec::Pcmu]);
    let r = post_offer(&server, &reconnect, &third.offer, None);
    assert_eq!(r.status, 404, "the call is over: {}", r.body);
}

/// A browser call is recorded like a phone call: sealed after the hang-up, under the call's
/// id, with what Careline played on the right channel (the patient's side on the left).
#[test]
fn a_browser_call_is_recorded_like_a_phone_call() {
    let server = TestServer::start_with(Options {
        toml: "[webrtc]\npublic_calls = true\n[recording]\nformat = \"wav\"\nflush_secs = 1\n"
            .into(),
        args: vec!["--record-all".into()],
        ..Default::default()
    });
    let browser = BrowserPeer::new(&[Codec::Pcmu]);
    let r = post_offer(&server, "/api/v1/calls/whip", &browser.offer, None);
    assert_eq!(r.status, 201, "{}", r.body);
    let location = r.header("location").unwrap().to_string();
    browser.accept(&r.body);
    browser.wait_connected();
    wait_for_prompt(&browser, Codec::Pcmu, "en", "welcome", 0, None);
    let r = request(server.http, "DELETE", &location, &[], None);
    assert_eq!(r.status, 200, "{}", r.body);
    // The recording is sealed once the call has ended.
    let row = server.sealed_recording(|_| true);
    assert!(
        row["call_id"].as_str().unwrap().starts_with("whip-"),
        "{row}"
    );
    let (_, right) = server.export_stereo(row["id"].as_str().unwrap());
    support::audio::expect_prompt(&right, Codec::Pcmu, "en", "welcome", 0, Some(2000));
}

/// A portal on another site may place calls when it is an allowed origin (CORS, RFC 9725
/// §4.2): its preflight is answered with the methods and headers a WHIP client needs, and the
/// offer's answer exposes `Location`. Any other site gets no permission.
#[test]
fn an_allowed_portal_origin_gets_cors_answers_and_others_do_not() {
    let server = TestServer::start_with(Options {
        toml: "[webrtc]\npublic_calls = true\nallowed_origins = [\"https://portal.example.org\"]\n"
            .into(),
        ..Default::default()
    });
    let preflight = |origin: &str| {
        request(
            server.http,
            "OPTIONS",
            "/api/v1/calls/whip",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "content-type"),
            ],
            None,
        )
    };
    let r = preflight("https://portal.example.org");
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://portal.example.org")
    );
    assert!(
        r.header("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST") && m.contains("DELETE")),
        "{:?}",
        r.headers
    );
    assert!(
        r.header("access-control-allow-headers")
            .is_some_and(|h| h.to_ascii_lowercase().contains("content-type"))
    );
    let r = preflight("https://elsewhere.example.com");
    assert_eq!(r.header("access-control-allow-origin"), None);

    let browser = BrowserPeer::new(&[Codec::Pcmu]);
    let r = request(
        server.http,
        "POST",
        "/api/v1/calls/whip",
        &[("Origin", "https://portal.example.org")],
        Some(("application/sdp", browser.offer.as_bytes())),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://portal.example.org")
    );
    assert_eq!(r.header("access-control-expose-headers"), Some("Location"));
    assert_eq!(r.header("access-control-allow-credentials"), None);
}

const URGENT_QUEUE: &str = "careline_queue_contacts{queue=\"triage-urgent\"}";

/// A patient calls the triage line from a phone and waits in the urgent queue; a nurse
/// answers from the browser: the patient is joined to the nurse (the hold flow stops, the
/// queue empties), each hears the other (a tone each way, through the bridge and the
/// browser's DTLS-SRTP), and the nurse hanging up ends the patient's call with a BYE. The
/// nurse's browser on G.711: payloads pass through the bridge.
#[test]
fn a_nurse_answers_a_queued_phone_caller_from_the_browser() {
    let server = TestServer::start();
    let nurse = server.user_token("nurse-1", "agent");
    let answer_path = "/api/v1/queues/triage-urgent/answer";
    let browser = BrowserPeer::new(&[Codec::Pcmu, Codec::Opus]);

    // Nobody waiting yet; an unknown queue; no credentials.
    let r = post_offer(&server, answer_path, &browser.offer, Some(&nurse));
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("nobody is waiting"), "{}", r.body);
    let r = post_offer(
        &server,
        "/api/v1/queues/nowhere/answer",
        &browser.offer,
        Some(&nurse),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    let r = post_offer(&server, answer_path, &browser.offer, None);
    assert_eq!(r.status, 401, "{}", r.body);

    nurse_takes_the_urgent_caller(&server, &nurse, browser);
}

/// The same with the nurse's browser on Opus (transcoded both ways in the bridge), and the
/// call recorded from its start: the recording has the patient on the left channel and the
/// nurse on the right.
#[test]
fn an_opus_nurse_is_transcoded_and_the_recording_has_both_sides() {
    let server = TestServer::start_with(Options {
        toml: "[recording]\nformat = \"wav\"\nflush_secs = 1\n".into(),
        args: vec!["--record-all".into()],
        ..Default::default()
    });
    let nurse = server.user_token("nurse-1", "clinician");
    let mut b = bridge_urgent_caller(&server, &nurse, BrowserPeer::new(&[Codec::Opus]));
    b.tones_both_ways();
    // The nurse goes on talking for a second and a half of call before hanging up, so the
    // recording's end (its last blocks, sealed at the hang-up) is not what the check hinges on.
    let patient = b.phone.heard().len() / 8;
    b.browser.speak(tone(440.0, 2000));
    let_run(|| b.phone.heard(), patient, 1500);
    b.nurse_hangs_up(&server);
    let call_id = b.call_id.clone();

    let row = server.sealed_recording(|r| r["call_id"] == call_id.as_str());
    let (left, right) = server.export_stereo(row["id"].as_str().unwrap());
    wait_for_tone(
        || left.clone(),
        1000.0,
        0,
        "the patient on the left channel",
    );
    wait_for_tone(|| right.clone(), 440.0, 0, "the nurse on the right channel");
    assert_eq!(
        find_tone(&right, 1000.0),
        None,
        "the patient is not on the nurse's channel"
    );
}

/// A phone caller joined to a nurse's browser.
struct Bridged {
    ua: support::sip::Ua,
    phone: support::rtp::RtpPeer,
    browser: BrowserPeer,
    /// The nurse's session.
    location: String,
    call_id: String,
}

/// A phone caller keys into the triage line's urgent queue; `nurse` answers it from
/// `browser`, and the two are joined.
fn bridge_urgent_caller(server: &TestServer, nurse: &str, browser: BrowserPeer) -> Bridged {
    let (ua, phone, call) = queue_urgent_caller(server);
    let r = connect_agent(
        server,
        "/api/v1/queues/triage-urgent/answer",
        nurse,
        &browser,
    );
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    let call_id = call.call_id.clone();
    assert_eq!(r.header("careline-call-id"), Some(call_id.as_str()));
    let location = r.header("location").expect("Location").to_string();
    assert_eq!(
        server.wait_metric_down(URGENT_QUEUE, 0.0, Duration::from_secs(30)),
        0.0,
        "joined to the nurse, the caller leaves the queue"
    );
    assert_eq!(
        server.metric("careline_queue_answer_wait_seconds_count{queue=\"triage-urgent\"}"),
        1.0,
        "one answer, with its wait, in the queue's figures"
    );
    Bridged {
        ua,
        phone,
        browser,
        location,
        call_id,
    }
}

/// A phone caller on the triage line keys English (2), then urgent (9), and waits in the
/// urgent queue.
fn queue_urgent_caller(
    server: &TestServer,
) -> (support::sip::Ua, support::rtp::RtpPeer, support::sip::Call) {
    use support::rtp::RtpPeer;
    use support::sip::{Ua, dial_answered};
    let phone = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let mut ua = Ua::udp(server.sip);
    let call = dial_answered(&mut ua, "200", &phone);
    support::audio::let_call_run(&phone, 500);
    phone.send_event('2', 100); // English
    support::audio::let_call_run(&phone, 500);
    phone.send_event('9', 100); // urgent
    assert_eq!(
        server.wait_metric(URGENT_QUEUE, 1.0, Duration::from_secs(30)),
        1.0,
        "the caller waits in the urgent queue"
    );
    (ua, phone, call)
}

impl Bridged {
    /// The patient speaks (1 kHz) and the nurse hears it; the nurse speaks (440 Hz) and the
    /// patient hears it.
    fn tones_both_ways(&self) {
        let nurse_heard = self.browser.heard().len() / 8;
        self.phone.send_audio(tone(1000.0, 2000));
        wait_for_tone(
            || self.browser.heard(),
            1000.0,
            nurse_heard,
            "the nurse hears the patient",
        );
        let patient_heard = self.phone.heard().len() / 8;
        self.browser.speak(tone(440.0, 2000));
        wait_for_tone(
            || self.phone.heard(),
            440.0,
            patient_heard,
            "the patient hears the nurse",
        );
    }

    /// The nurse hangs up: the patient's call ends with a BYE, and the session is gone.
    fn nurse_hangs_up(&mut self, server: &TestServer) {
        let r = request(server.http, "DELETE", &self.location, &[], None);
        assert_eq!(r.status, 200, "{}", r.body);
        let bye = self
            .ua
            .expect(Duration::from_secs(10), |m| m.method() == Some("BYE"));
        let bye = bye.expect("the patient's phone gets a BYE");
        self.ua.respond(&bye, 200, "OK");
        let ended = server.wait_metric(
            "careline_calls_ended_total{cause=\"agent_hangup\"}",
            1.0,
            Duration::from_secs(10),
        );
        assert_eq!(ended, 1.0, "the call ended by the nurse");
        let r = request(server.http, "DELETE", &self.location, &[], None);
        assert_eq!(
            r.status, 404,
            "the nurse's session ended with the call: {}",
            r.body
        );
    }
}

/// A phone caller keys into the urgent queue, `nurse` answers from `browser`, a tone each way,
/// the nurse hangs up. Returns the call's id.
fn nurse_takes_the_urgent_caller(server: &TestServer, nurse: &str, browser: BrowserPeer) -> String {
    let mut bridged = bridge_urgent_caller(server, nurse, browser);
    bridged.tones_both_ways();
    bridged.nurse_hangs_up(server);
    bridged.call_id
}

/// `speak` says `hz` for two seconds from now, and `heard` (someone else's ears) hears it.
fn hears(heard: impl Fn() -> Vec<i16>, speak: impl FnOnce(Vec<i16>), hz: f32, what: &str) {
    let from = heard().len() / 8;
    speak(tone(hz, 2000));
    wait_for_tone(heard, hz, from, what);
}

/// Waits until `heard` holds `ms` more audio than it did at `from_ms`.
fn let_run(heard: impl Fn() -> Vec<i16>, from_ms: usize, ms: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while heard().len() / 8 < from_ms + ms {
        assert!(std::time::Instant::now() < deadline, "the audio stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// On hold the patient hears music and not the nurse, and the nurse hears nothing of the
/// patient; resumed, they hear each other; muted, the patient does not hear the nurse.
#[test]
fn a_nurse_holds_resumes_and_mutes_the_caller() {
    let server = TestServer::start();
    let nurse = server.user_token("nurse-1", "agent");
    let mut b = bridge_urgent_caller(&server, &nurse, BrowserPeer::new(&[Codec::Pcmu]));
    let location = b.location.clone();
    let ctl = |action: &str| {
        let r = request(
            server.http,
            "POST",
            &format!("{location}/{action}"),
            &[],
            None,
        );
        (r.status, r.body)
    };
    assert_eq!(ctl("dance").0, 404, "not an action");
    assert_eq!(ctl("transfer").0, 400, "a transfer names its queue");
    let r = request(
        server.http,
        "POST",
        &format!("/api/v1/calls/whip/{}/hold", "0".repeat(32)),
        &[],
        None,
    );
    assert_eq!(r.status, 404, "not a session");
    b.tones_both_ways();

    assert_eq!(ctl("hold"), (204, String::new()));
    let (patient, nurse_ms) = (b.phone.heard().len() / 8, b.browser.heard().len() / 8);
    b.browser.speak(tone(440.0, 2000));
    b.phone.send_audio(tone(1000.0, 2000));
    // The first note of the hold music (C4); from then on, nothing of the nurse.
    let music = wait_for_tone(
        || b.phone.heard(),
        261.63,
        patient,
        "the patient hears hold music",
    );
    let_run(|| b.phone.heard(), music, 2000);
    let_run(|| b.browser.heard(), nurse_ms, 2500);
    let after = |pcm: Vec<i16>, ms: usize| pcm[ms * 8..].to_vec();
    assert_eq!(
        find_tone(&after(b.phone.heard(), music), 440.0),
        None,
        "held, the patient does not hear the nurse"
    );
    assert_eq!(
        find_tone(&after(b.browser.heard(), nurse_ms), 1000.0),
        None,
        "held, the nurse does not hear the patient"
    );

    assert_eq!(ctl("resume").0, 204);
    b.tones_both_ways();

    assert_eq!(ctl("mute").0, 204);
    let patient = b.phone.heard().len() / 8;
    b.browser.speak(tone(440.0, 1500));
    let_run(|| b.phone.heard(), patient, 2000);
    assert_eq!(
        find_tone(&after(b.phone.heard(), patient), 440.0),
        None,
        "muted, the patient does not hear the nurse"
    );
    assert_eq!(ctl("unmute").0, 204);
    b.tones_both_ways();
    b.nurse_hangs_up(&server);
    assert_eq!(ctl("hold").0, 404, "the call is over");
}

/// A supervisor listens in on a nurse's call from the browser: they hear the patient and
/// the nurse, and neither hears them; barging in, both do; back to listening, neither; they
/// leave, and the patient and the nurse go on. Refused: a nurse (403), a second listener
/// (409), a call that is over (404). Each listening-in is in the audit trail.
#[test]
fn a_supervisor_listens_in_on_a_nurses_call_and_barges_in() {
    let server = TestServer::start();
    let nurse = server.user_token("nurse-1", "agent");
    let boss = server.user_token("sup-1", "supervisor");
    let mut b = bridge_urgent_caller(&server, &nurse, BrowserPeer::new(&[Codec::Pcmu]));
    let monitor = format!("/api/v1/calls/{}/monitor", b.call_id);
    let sup = BrowserPeer::new(&[Codec::Pcmu]);
    let r = post_offer(&server, &monitor, &sup.offer, Some(&nurse));
    assert_eq!(r.status, 403, "a nurse may not listen in: {}", r.body);
    let r = post_offer(&server, &monitor, &sup.offer, Some(&boss));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    let location = r.header("location").expect("Location").to_string();
    sup.accept(&r.body);
    sup.wait_connected();
    let ctl = |action: &str| {
        let path = format!("{location}/{action}");
        request(server.http, "POST", &path, &[], None).status
    };
    let after = |pcm: Vec<i16>, ms: usize| pcm[(ms * 8).min(pcm.len())..].to_vec();
    // The supervisor hears the patient, then the nurse.
    hears(
        || sup.heard(),
        |t| b.phone.send_audio(t),
        1000.0,
        "the supervisor hears the patient",
    );
    hears(
        || sup.heard(),
        |t| b.browser.speak(t),
        440.0,
        "the supervisor hears the nurse",
    );
    // Nobody hears the supervisor, who only listens.
    let not_heard = |what: &str| {
        let (patient, nurse_ms) = (b.phone.heard().len() / 8, b.browser.heard().len() / 8);
        sup.speak(tone(1800.0, 2000));
        let_run(|| b.phone.heard(), patient, 2500);
        let_run(|| b.browser.heard(), nurse_ms, 2500);
        assert_eq!(
            find_tone(&after(b.phone.heard(), patient), 1800.0),
            None,
            "{what}: the patient does not hear the supervisor"
        );
        assert_eq!(
            find_tone(&after(b.browser.heard(), nurse_ms), 1800.0),
            None,
            "{what}: the nurse does not hear the supervisor"
        );
    };
    not_heard("listening");
    b.tones_both_ways();
    let second = BrowserPeer::new(&[Codec::Pcmu]);
    let r = post_offer(&server, &monitor, &second.offer, Some(&boss));
    assert_eq!(r.status, 409, "one listener at a time: {}", r.body);

    // Barging in: both hear the supervisor.
    assert_eq!(ctl("barge"), 204);
    let (patient, nurse_ms) = (b.phone.heard().len() / 8, b.browser.heard().len() / 8);
    sup.speak(tone(1800.0, 2000));
    wait_for_tone(
        || b.phone.heard(),
        1800.0,
        patient,
        "the patient hears the supervisor",
    );
    wait_for_tone(
        || b.browser.heard(),
        1800.0,
        nurse_ms,
        "the nurse hears the supervisor",
    );
    assert_eq!(ctl("listen"), 204);
    not_heard("back to listening");
    assert_eq!(ctl("dance"), 404, "not an action");

    // The supervisor leaves; the two go on.
    let r = request(server.http, "DELETE", &location, &[], None);
    assert_eq!(r.status, 200, "{}", r.body);
    b.tones_both_ways();
    assert_eq!(ctl("barge"), 404, "the session is gone");
    for event in ["listen", "barge"] {
        let name = format!("careline_monitoring_total{{event=\"{event}\"}}");
        assert_eq!(server.metric(&name), 1.0, "{name}");
    }
    let auditor = server.user_token("audit-1", "auditor");
    let trail = request(
        server.http,
        "GET",
        "/api/v1/audit?user=sup-1",
        &[("Authorization", &format!("Bearer {auditor}"))],
        None,
    );
    assert_eq!(trail.status, 200, "{}", trail.body);
    assert!(
        trail.body.contains("call.monitor") && trail.body.contains(&b.call_id),
        "{}",
        trail.body
    );
    b.nurse_hangs_up(&server);
    let r = post_offer(&server, &monitor, &second.offer, Some(&boss));
    assert_eq!(r.status, 404, "the call is over: {}", r.body);
}

/// Twenty browsers call at the same moment: every one is answered, connects (ICE and DTLS
/// with the server at once) and hears the welcome, as issue 21 asks of a shared 2-core box.
#[test]
fn twenty_browsers_connect_at_once_and_each_hears_the_flow() {
    // All from one address here (loopback), as from a clinic's NAT: allow them.
    let server = TestServer::start_with(Options {
        toml: "[webrtc]\npublic_calls = true\nmax_connecting_per_source = 20\n".into(),
        ..Default::default()
    });
    let browsers: Vec<BrowserPeer> = (0..20).map(|_| BrowserPeer::new(&[Codec::Pcmu])).collect();
    let answers: Vec<Response> = std::thread::scope(|scope| {
        let posts: Vec<_> = browsers
            .iter()
            .map(|b| scope.spawn(|| post_offer(&server, "/api/v1/calls/whip", &b.offer, None)))
            .collect();
        posts.into_iter().map(|p| p.join().unwrap()).collect()
    });
    for (b, r) in browsers.iter().zip(&answers) {
        assert_eq!(r.status, 201, "{}", r.body);
        b.accept(&r.body);
    }
    for b in &browsers {
        b.wait_connected();
    }
    for b in &browsers {
        wait_for_prompt(b, Codec::Pcmu, "en", "welcome", 0, None);
    }
    assert_eq!(
        server.metric("careline_calls_active"),
        20.0,
        "all twenty calls are up at once"
    );
    for r in &answers {
        let location = r.header("location").unwrap();
        assert_eq!(
            request(server.http, "DELETE", location, &[], None).status,
            200
        );
    }
}

/// A nurse at the agent console in Debian's headless Chromium: signs in through Careline's
/// own sign-in page, sees the caller waiting in the urgent queue, answers, talks (the page's
/// fake microphone plays a 440 Hz tone, which the phone hears), holds (the phone hears the
/// hold music), resumes and hangs up (the phone gets a BYE). Screenshots of each step in
/// target/browser-screenshots/agent/.
#[test]
fn a_nurse_answers_from_the_agent_console_in_chromium() {
    use support::rtp::RtpPeer;
    use support::sip::{Ua, dial_answered};
    let _one_at_a_time = CHROMIUM.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start();
    add_nurse(&server, "nora");
    let (shots, mic) = screenshots_and_mic("agent");

    let phone = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let mut ua = Ua::udp(server.sip);
    let _call = dial_answered(&mut ua, "200", &phone);
    support::audio::let_call_run(&phone, 500);
    phone.send_event('2', 100);
    support::audio::let_call_run(&phone, 500);
    phone.send_event('9', 100);
    assert_eq!(
        server.wait_metric(URGENT_QUEUE, 1.0, Duration::from_secs(30)),
        1.0
    );
    let queued_at = phone.heard().len() / 8;
    let summary = browser_script(
        &server,
        "agent-answer.mjs",
        &[
            format!("http://{}", server.http),
            shots.display().to_string(),
            "nora".into(),
            NURSE_PASSWORD.into(),
            "triage-urgent".into(),
            mic.display().to_string(),
        ],
    );
    assert_eq!(summary["user"], "nora (agent)", "{summary}");
    assert_eq!(summary["status"], "You hung up.", "{summary}");
    assert_eq!(summary["waiting_while_talking"], "0", "{summary}");
    // The triage line does not identify callers: the screen-pop says so.
    assert_eq!(summary["caller"], "Caller not identified", "{summary}");
    assert_eq!(summary["hold_button_when_held"], "Resume", "{summary}");
    assert_eq!(summary["controls_after"], false, "{summary}");
    assert!(
        summary["call"].as_str().unwrap_or("").starts_with("Call "),
        "{summary}"
    );

    let bye = ua.expect(Duration::from_secs(10), |m| m.method() == Some("BYE"));
    ua.respond(&bye.expect("the phone gets a BYE"), 200, "OK");
    let heard = phone.heard();
    let after = &heard[(queued_at * 8).min(heard.len())..];
    let voice = find_tone(after, 440.0).expect("the phone heard the nurse's microphone");
    let music = find_tone(&after[voice..], 261.63);
    assert!(
        music.is_some(),
        "the phone heard the hold music after the nurse spoke"
    );
    assert_eq!(
        server.wait_metric(
            "careline_calls_ended_total{cause=\"agent_hangup\"}",
            1.0,
            Duration::from_secs(10)
        ),
        1.0
    );
}

/// The console's warm transfer in Chromium: the nurse answers a phone caller, types the
/// physician's number and presses Consult (the caller is on hold; the physician's phone
/// rings and is answered, and hears the nurse's microphone), brings the caller in, and hands
/// them over. The caller and the physician then talk without her. Screenshots in
/// target/browser-screenshots/agent-consult/.
#[test]
fn a_nurse_consults_and_hands_over_from_the_agent_console_in_chromium() {
    use support::sip::pick_up;
    let _one_at_a_time = CHROMIUM.lock().unwrap_or_else(|e| e.into_inner());
    let (server, mut handset) = server_with_trunk();
    add_nurse(&server, "nora");
    let (shots, mic) = screenshots_and_mic("agent-consult");
    let (ua, phone, _call) = queue_urgent_caller(&server);
    // The physician's phone answers when it rings.
    let physician = std::thread::spawn(move || {
        let (callee, doctor) = pick_up(&mut handset, Duration::from_secs(60));
        (handset, callee, doctor)
    });
    let summary = browser_script(
        &server,
        "agent-consult.mjs",
        &[
            format!("http://{}", server.http),
            shots.display().to_string(),
            "nora".into(),
            NURSE_PASSWORD.into(),
            "triage-urgent".into(),
            "+1 555 0177".into(),
            mic.display().to_string(),
        ],
    );
    assert_eq!(
        summary["consulting"], "Calling +1 555 0177; the caller is on hold.",
        "{summary}"
    );
    assert_eq!(summary["hold_button"], "Resume", "{summary}");
    assert_eq!(
        summary["three_way"], "You, the caller and +1 555 0177 are talking together.",
        "{summary}"
    );
    assert_eq!(
        summary["status"], "You handed the caller over to +1 555 0177.",
        "{summary}"
    );
    assert_eq!(summary["controls_after"], false, "{summary}");
    let (mut handset, mut callee, doctor) = physician.join().expect("the physician's phone");
    assert!(
        find_tone(&doctor.heard(), 440.0).is_some(),
        "the physician heard the nurse's microphone"
    );
    hears(
        || doctor.heard(),
        |t| phone.send_audio(t),
        1000.0,
        "the physician hears the caller",
    );
    hears(
        || phone.heard(),
        |t| doctor.send_audio(t),
        1800.0,
        "the caller hears the physician",
    );
    let mut ua = ua;
    callee.bye(&mut handset);
    let bye = ua
        .expect(Duration::from_secs(10), |m| m.method() == Some("BYE"))
        .expect("the physician's hang-up ends the call");
    ua.respond(&bye, 200, "OK");
}

/// A server with one trunk whose calls out ring `handset`, a SIP phone on loopback (an
/// outside number: the on-call physician, a pharmacy).
fn server_with_trunk() -> (TestServer, support::sip::Ua) {
    let mut handset = support::sip::Ua::udp("127.0.0.1:9".parse().unwrap());
    let server = TestServer::start_with(Options {
        toml: format!(
            "[sip.trunks.carrier]\nproxy = \"sip:{}\"\ncaller_id = \"+15550000\"\n",
            handset.local
        ),
        ..Options::default()
    });
    handset.server = server.sip;
    (server, handset)
}

/// An agent's browser answers at `path` (a queue's answer, or an offered call's accept):
/// answered 201, its media connected. The response carries the session and call id.
fn connect_agent(server: &TestServer, path: &str, token: &str, browser: &BrowserPeer) -> Response {
    let r = post_offer(server, path, &browser.offer, Some(token));
    assert_eq!(r.status, 201, "{}", r.body);
    browser.accept(&r.body);
    browser.wait_connected();
    r
}

fn accept_path(call_id: &str) -> String {
    format!("/api/v1/calls/{call_id}/accept")
}

/// Routing rings the available nurse: a nurse at the console (the signaling WebSocket) makes
/// herself available, a phone caller reaches the urgent queue, the call is offered to her,
/// she accepts with her browser's offer, they talk (a tone each way), and when she hangs up
/// she is in wrap-up until she says she is done.
#[test]
fn the_available_nurse_is_offered_the_call_accepts_talks_and_wraps_up() {
    use support::console::Console;
    let server = TestServer::start();
    let nurse = server.user_token("nurse-1", "agent");
    let mut console = Console::open(server.http, &nurse);
    console.expect_state("offline");
    console.send(serde_json::json!({"type": "state", "state": "available"}));
    console.expect_state("available");
    assert_eq!(server.metric("careline_agents{state=\"available\"}"), 1.0);

    let (ua, phone, call) = queue_urgent_caller(&server);
    let offered = console.expect_offer();
    assert_eq!(
        offered, call.call_id,
        "the caller's call rings for the nurse"
    );
    let offer = console.seen.last().cloned().unwrap_or_default();
    assert_eq!(offer["queue"], "triage-urgent", "{offer}");
    assert_eq!(offer["callback"], false, "a caller on the line: {offer}");
    assert!(offer["rings_for_secs"].as_u64().unwrap_or(0) > 0, "{offer}");
    console.expect_state("offered");

    let browser = BrowserPeer::new(&[Codec::Pcmu, Codec::Opus]);
    let r = connect_agent(&server, &accept_path(&offered), &nurse, &browser);
    assert_eq!(r.header("careline-call-id"), Some(call.call_id.as_str()));
    let location = r.header("location").expect("Location").to_string();
    let on = console.expect_state("on_contact");
    assert_eq!(on["contact"], call.call_id.as_str(), "{on}");
    assert_eq!(
        server.wait_metric_down(URGENT_QUEUE, 0.0, Duration::from_secs(30)),
        0.0,
        "the caller left the queue"
    );
    let mut bridged = Bridged {
        ua,
        phone,
        browser,
        location,
        call_id: call.call_id.clone(),
    };
    bridged.tones_both_ways();
    // Accepting again is refused: the call is hers already.
    let again = BrowserPeer::new(&[Codec::Pcmu]);
    let r = post_offer(&server, &accept_path(&offered), &again.offer, Some(&nurse));
    assert_eq!(r.status, 409, "{}", r.body);

    bridged.nurse_hangs_up(&server);
    console.expect_state("after_contact_work");
    console.send(serde_json::json!({"type": "done"}));
    console.expect_state("available");
    assert_eq!(
        server.metric("careline_agent_offers_total{outcome=\"accepted\"}"),
        1.0
    );
}

/// An offer nobody answers goes on: it rings the first nurse out (she is missed), then the
/// second, who declines over HTTP; the first comes back and is offered the same caller again,
/// who hangs up while it rings (the offer is withdrawn). Bad console input gets an error, a
/// flood closes the channel, and the channel needs credentials and an upgrade.
#[test]
fn an_unanswered_offer_goes_to_the_next_nurse_and_a_caller_who_hangs_up_withdraws_it() {
    use support::console::Console;
    let server = TestServer::start_with(Options {
        toml: "[routing]\noffer_timeout_secs = 2\nreconnect_grace_secs = 1\n".into(),
        ..Default::default()
    });
    let ana = server.user_token("ana", "agent");
    let ben = server.user_token("ben", "clinician");
    let mut first = Console::open_available(server.http, &ana);
    let mut second = Console::open_available(server.http, &ben);

    let (mut ua, _phone, mut call) = queue_urgent_caller(&server);
    let call_id = first.expect_offer();
    assert_eq!(call_id, call.call_id, "Ana has been available longest");
    let gone = first.expect(Duration::from_secs(10), "the offer rings out", |m| {
        m["type"] == "offer_withdrawn"
    });
    assert_eq!(gone["why"], "timed_out", "{gone}");
    first.expect_state("missed");
    assert_eq!(second.expect_offer(), call_id, "then Ben");
    // Ana cannot take what rings for Ben.
    let browser = BrowserPeer::new(&[Codec::Pcmu]);
    let r = post_offer(&server, &accept_path(&call_id), &browser.offer, Some(&ana));
    assert_eq!(r.status, 409, "{}", r.body);
    let auth = format!("Bearer {ben}");
    let decline = format!("/api/v1/calls/{call_id}/decline");
    let r = request(
        server.http,
        "POST",
        &decline,
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    second.expect_state("missed");
    let r = request(
        server.http,
        "POST",
        &decline,
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(r.status, 409, "nothing rings for Ben now: {}", r.body);

    first.send(serde_json::json!({"type": "state", "state": "available"}));
    assert_eq!(first.expect_offer(), call_id, "back in its place for Ana");
    let bye = call.bye(&ua);
    ua.send(&bye);
    let _ = ua.expect(Duration::from_secs(5), |m| m.status() == Some(200));
    let gone = first.expect(Duration::from_secs(10), "the caller hung up", |m| {
        m["type"] == "offer_withdrawn"
    });
    assert_eq!(gone["why"], "contact_left", "{gone}");
    first.expect_state("available");
    let metric = |outcome: &str| {
        server.metric(&format!(
            "careline_agent_offers_total{{outcome=\"{outcome}\"}}"
        ))
    };
    assert_eq!(
        (
            metric("timed_out"),
            metric("declined"),
            metric("contact_left")
        ),
        (1.0, 1.0, 1.0)
    );

    // Bad input: an error each, and the channel stays open.
    first.send_text("not json");
    let e = first.expect(Duration::from_secs(5), "an error", |m| m["type"] == "error");
    assert!(
        e["reason"]
            .as_str()
            .unwrap_or("")
            .contains("docs/signaling.md"),
        "{e}"
    );
    first.send(serde_json::json!({"type": "state", "state": "unavailable"}));
    let e = first.expect(Duration::from_secs(5), "an error", |m| m["type"] == "error");
    assert!(e["reason"].as_str().unwrap_or("").contains("reason"), "{e}");
    first.send(serde_json::json!({"type": "state", "state": "unavailable", "reason": "lunch"}));
    let lunch = first.expect_state("unavailable");
    assert_eq!(lunch["reason"], "lunch", "{lunch}");
    first.send(serde_json::json!({"type": "ping"}));
    first.expect(Duration::from_secs(5), "pong", |m| m["type"] == "pong");
    // A flood is closed with 1008 (policy violation).
    for _ in 0..40 {
        if !first.try_send(serde_json::json!({"type": "ping"})) {
            break;
        }
    }
    assert_eq!(first.expect_closed(Duration::from_secs(10)), Some(1008));
    // With no console left, Ana is signed out after the grace period.
    assert_eq!(
        server.wait_metric_down(
            "careline_agents{state=\"unavailable\"}",
            0.0,
            Duration::from_secs(10)
        ),
        0.0,
        "Ana signed out"
    );
    // A message over 4 KiB is closed with 1009 (too big).
    let mut third = Console::open(server.http, &ben);
    third.send_text(&"x".repeat(5000));
    assert_eq!(third.expect_closed(Duration::from_secs(10)), Some(1009));

    // No credentials: 401; no upgrade: 426.
    let r = request(server.http, "GET", "/api/v1/ws", &[], None);
    assert_eq!(r.status, 401, "{}", r.body);
    let auth = format!("Bearer {ana}");
    let r = request(
        server.http,
        "GET",
        "/api/v1/ws",
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(r.status, 426, "{}", r.body);
}

/// A server where nurse nora has an account (her password [`NURSE_PASSWORD`]), with the
/// screenshot folder `name` and the microphone's WAV.
fn nora_signed_up(name: &str) -> (TestServer, std::path::PathBuf, std::path::PathBuf) {
    let server = TestServer::start();
    add_nurse(&server, "nora");
    let (shots, mic) = screenshots_and_mic(name);
    (server, shots, mic)
}

/// Runs Chromium script `script` as nurse nora at the console (her microphone `mic`,
/// screenshots to `shots`); its summary.
fn nora_at_the_console(
    server: &TestServer,
    script: &str,
    shots: &std::path::Path,
    mic: &std::path::Path,
) -> serde_json::Value {
    browser_script(
        server,
        script,
        &[
            format!("http://{}", server.http),
            shots.display().to_string(),
            "nora".into(),
            NURSE_PASSWORD.into(),
            mic.display().to_string(),
        ],
    )
}

/// Adds agent `name` with [`NURSE_PASSWORD`], as an administrator would.
fn add_nurse(server: &TestServer, name: &str) {
    add_user(server, name, "agent");
}

/// A nurse at the agent console in headless Chromium makes herself available: the caller
/// waiting in the urgent queue rings at her console; she declines (missed), is ready again,
/// it rings again and she accepts, talks (the phone hears her
/// microphone's 440 Hz tone), hangs up, wraps up and is available again. Screenshots of each
/// step in target/browser-screenshots/agent-offer/.
#[test]
fn a_call_rings_at_the_nurses_console_in_chromium_and_she_accepts_it() {
    let _one_at_a_time = CHROMIUM.lock().unwrap_or_else(|e| e.into_inner());
    let (server, shots, mic) = nora_signed_up("agent-offer");
    let (mut ua, phone, _call) = queue_urgent_caller(&server);
    let queued_at = phone.heard().len() / 8;
    let summary = nora_at_the_console(&server, "agent-offer.mjs", &shots, &mic);
    assert_eq!(summary["user"], "nora (agent)", "{summary}");
    let ringing = summary["ringing"].as_str().unwrap_or("");
    assert!(
        ringing.starts_with("A caller in triage-urgent"),
        "{summary}"
    );
    assert_eq!(summary["state_ringing"], "A call is ringing", "{summary}");
    assert_eq!(summary["ready_when_missed"], true, "{summary}");
    assert_eq!(summary["ready_after"], false, "{summary}");
    assert_eq!(summary["ringing_after_accept"], false, "{summary}");
    assert_eq!(summary["state_after_call"], "Wrap-up", "{summary}");
    assert_eq!(summary["wrapup_focus"], "wrapup-code", "{summary}");
    assert!(
        summary["wrapup_codes"]
            .as_array()
            .is_some_and(|c| c.len() > 3 && c.iter().any(|c| c == "advice-given")),
        "{summary}"
    );
    assert_eq!(summary["status_after_done"], "Wrap-up saved.", "{summary}");
    assert_eq!(summary["wrapup_after_done"], false, "{summary}");
    assert_eq!(
        server.metric("careline_wrap_ups_total{code=\"advice-given\"}"),
        1.0,
        "the outcome she chose was saved"
    );
    assert_eq!(
        summary["state"], "Available: waiting for a call",
        "{summary}"
    );

    let bye = ua.expect(Duration::from_secs(10), |m| m.method() == Some("BYE"));
    ua.respond(&bye.expect("the phone gets a BYE"), 200, "OK");
    let heard = phone.heard();
    let after = &heard[(queued_at * 8).min(heard.len())..];
    assert!(
        find_tone(after, 440.0).is_some(),
        "the phone heard the nurse's microphone"
    );
    assert_eq!(
        server.metric("careline_agent_offers_total{outcome=\"accepted\"}"),
        1.0
    );
}

/// A nurse's console reloads twice mid-call in headless Chromium: each time the page takes
/// the same call back by itself (the second time with the caller still on hold, as she left
/// them), and the phone hears her microphone's 440 Hz tone after the last reload; one call,
/// one offer accepted. A reload after the call finds nothing to take back. Screenshots in
/// target/browser-screenshots/agent-reload/.
#[test]
fn a_nurses_console_reloaded_mid_call_in_chromium_takes_the_call_back() {
    let _one_at_a_time = CHROMIUM.lock().unwrap_or_else(|e| e.into_inner());
    let (server, shots, mic) = nora_signed_up("agent-reload");
    let (mut ua, phone, call) = queue_urgent_caller(&server);
    let summary = nora_at_the_console(&server, "agent-reload.mjs", &shots, &mic);
    let expected = format!("Call {} from triage-urgent", call.call_id);
    assert_eq!(summary["call"], expected.as_str(), "{summary}");
    assert_eq!(summary["call_after_reload"], expected.as_str(), "{summary}");
    assert_eq!(summary["controls_after_reload"], true, "{summary}");
    assert_eq!(summary["hold_button_after_reload"], "Resume", "{summary}");
    assert_eq!(summary["controls_after_the_call"], false, "{summary}");
    assert_eq!(
        server.metric("careline_browser_connections_total{event=\"agent_reconnected\"}"),
        2.0,
        "{summary}"
    );
    assert_eq!(server.metric("careline_calls_started_total"), 1.0);
    assert_eq!(
        server.metric("careline_agent_offers_total{outcome=\"accepted\"}"),
        1.0
    );
    let bye = ua.expect(Duration::from_secs(10), |m| m.method() == Some("BYE"));
    ua.respond(&bye.expect("the phone gets a BYE"), 200, "OK");
    // The last 3 s the phone heard: her voice after she resumed, not hold music or silence.
    let heard = phone.heard();
    let tail = &heard[heard.len().saturating_sub(3 * 8000)..];
    assert!(
        find_tone(tail, 440.0).is_some(),
        "the phone hears the nurse after her page reloaded"
    );
}

/// A supervisor watches the desk live: in headless Chromium the supervisor's page shows the
/// caller waiting and the nurse's call ringing, and, the urgent caller unanswered past the
/// queue's alert limit (2 s here, a minute as shipped), the alarm (screenshot in
/// target/browser-screenshots/supervisor/); the same view as JSON names the figures, and a
/// caller who hangs up before anyone answers counts as abandoned. Agents may not see it.
#[test]
fn a_supervisor_sees_the_queues_and_agents_live() {
    use support::console::Console;
    let _one_at_a_time = CHROMIUM.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start_with(Options {
        toml: "[queues.triage-urgent]\nalert_after_secs = 2\n".into(),
        ..Default::default()
    });
    add_user(&server, "sue", "supervisor");
    let nurse = server.user_token("nurse-1", "agent");
    let boss = server.user_token("boss", "supervisor");
    let mut console = Console::open_available(server.http, &nurse);
    let (mut ua, _phone, mut call) = queue_urgent_caller(&server);
    console.expect_offer();

    let (shots, _) = screenshots_and_mic("supervisor");
    let summary = browser_script(
        &server,
        "supervisor-view.mjs",
        &[
            format!("http://{}", server.http),
            shots.display().to_string(),
            "sue".into(),
            NURSE_PASSWORD.into(),
            "nurse-1".into(),
            "triage-urgent".into(),
        ],
    );
    assert_eq!(summary["user"], "sue (supervisor)", "{summary}");
    let agent = summary["agent"].as_str().unwrap_or("");
    assert!(agent.contains("Ringing (triage-urgent)"), "{summary}");
    let queue = summary["queue"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        queue.get(1).and_then(|v| v.as_str()),
        Some("1"),
        "one waiting: {summary}"
    );
    assert_eq!(
        queue.get(3).and_then(|v| v.as_str()),
        Some("0 / 1 / 1"),
        "{summary}"
    );
    assert_eq!(
        summary["alert"], "1 caller has waited over 0:02 in triage-urgent, unanswered.",
        "{summary}"
    );
    assert_eq!(summary["queue_class"], "over-limit", "{summary}");
    assert!(
        summary["records_csv"]
            .as_str()
            .is_some_and(|r| r.starts_with("200 text/csv; charset=utf-8 call_id,started,ended")),
        "the page's report link downloads the call records: {summary}"
    );
    assert_eq!(
        server.metric("careline_queue_wait_alerts_total{queue=\"triage-urgent\"}"),
        1.0
    );

    // The caller gives up: abandoned, in the JSON view and in /metrics.
    let bye = call.bye(&ua);
    ua.send(&bye);
    let _ = ua.expect(Duration::from_secs(5), |m| m.status() == Some(200));
    console.expect_state("available");
    let auth = format!("Bearer {boss}");
    let r = request(
        server.http,
        "GET",
        "/api/v1/desk",
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let view = r.json();
    let urgent = view["queues"]
        .as_array()
        .and_then(|q| q.iter().find(|q| q["name"] == "triage-urgent"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(urgent["waiting"], 0, "{view}");
    assert_eq!(urgent["abandoned"], 1, "{view}");
    assert_eq!(urgent["answered"], 0, "{view}");
    assert_eq!(
        urgent["service_level"], 0.0,
        "nobody answered in time: {view}"
    );
    let nurse_row = view["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "nurse-1"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(nurse_row["state"], "available", "{view}");
    assert_eq!(
        server.metric("careline_queue_abandoned_total{queue=\"triage-urgent\"}"),
        1.0
    );
    let auth = format!("Bearer {nurse}");
    let r = request(
        server.http,
        "GET",
        "/api/v1/desk",
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(r.status, 403, "agents do not supervise: {}", r.body);
}

/// A supervisor on the /supervisor page in Chromium listens in on a nurse's call: the nurse's
/// row has "Listen in"; pressed, the page says it listens and hears the call; "Barge in" and
/// the patient's phone hears the supervisor's microphone (440 Hz); back to listening, then
/// stopped, and the monitoring session is gone. Screenshots in
/// target/browser-screenshots/supervisor-listen/.
#[test]
fn a_supervisor_listens_in_from_the_supervisor_page_in_chromium() {
    use support::console::Console;
    let _one_at_a_time = CHROMIUM.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start();
    add_user(&server, "sue", "supervisor");
    let nurse = server.user_token("nurse-1", "agent");
    let mut console = Console::open_available(server.http, &nurse);
    let (_ua, phone, _call) = queue_urgent_caller(&server);
    let offered = console.expect_offer();
    let browser = BrowserPeer::new(&[Codec::Pcmu]);
    connect_agent(&server, &accept_path(&offered), &nurse, &browser);
    console.expect_state("on_contact");
    // The patient talks the whole time (the supervisor hears it); what the patient hears is
    // checked after the page is done.
    phone.send_audio(tone(1000.0, 30_000));
    let patient_from = phone.heard().len() / 8;

    let (shots, mic) = screenshots_and_mic("supervisor-listen");
    let summary = browser_script(
        &server,
        "supervisor-listen.mjs",
        &[
            format!("http://{}", server.http),
            shots.display().to_string(),
            "sue".into(),
            NURSE_PASSWORD.into(),
            "nurse-1".into(),
            mic.display().to_string(),
        ],
    );
    assert_eq!(
        summary["button"], "Listen in on nurse-1's call",
        "{summary}"
    );
    assert_eq!(
        summary["listening"], "Listening to nurse-1's call. Nobody hears you.",
        "{summary}"
    );
    assert_eq!(summary["button_while_listening"], "Listening", "{summary}");
    assert!(
        summary["heard_energy"].as_f64().unwrap_or(0.0) > 0.01,
        "the supervisor hears the call: {summary}"
    );
    assert_eq!(
        summary["barged"], "Speaking into nurse-1's call: the caller and nurse-1 hear you.",
        "{summary}"
    );
    assert_eq!(summary["after"], "Listen in", "stopped: {summary}");
    wait_for_tone(
        || phone.heard(),
        440.0,
        patient_from,
        "the patient heard the supervisor who barged in",
    );
    // The page's stop left the call: a new listener is not refused as a second one.
    let boss = server.user_token("boss", "supervisor");
    let again = BrowserPeer::new(&[Codec::Pcmu]);
    let r = post_offer(
        &server,
        &format!("/api/v1/calls/{offered}/monitor"),
        &again.offer,
        Some(&boss),
    );
    assert_eq!(r.status, 201, "{}", r.body);
}

/// A nurse sends the caller on (a blind transfer to another queue): she is released to wrap
/// up, the caller waits in the new queue and rings the nurse who answers that queue, who
/// talks with them. Transfers to nowhere are refused and change nothing.
#[test]
fn a_nurse_transfers_the_caller_to_another_queue_and_the_next_nurse_answers() {
    use support::console::Console;
    let server = TestServer::start_with(Options {
        toml: "[routing.profiles.urgent]\nqueues = [{ queue = \"triage-urgent\" }]\n\
               [routing.profiles.nurses]\nqueues = [{ queue = \"triage-nurses\" }]\n\
               [routing.agents]\nana = \"urgent\"\nben = \"nurses\"\n"
            .into(),
        ..Default::default()
    });
    let ana = server.user_token("ana", "agent");
    let ben = server.user_token("ben", "agent");
    let mut first = Console::open_available(server.http, &ana);
    let mut second = Console::open_available(server.http, &ben);
    let (ua, phone, call) = queue_urgent_caller(&server);
    let offered = first.expect_offer();
    let browser = BrowserPeer::new(&[Codec::Pcmu]);
    let r = connect_agent(&server, &accept_path(&offered), &ana, &browser);
    let location = r.header("location").expect("Location").to_string();
    first.expect_state("on_contact");

    let transfer = |queue: &str| {
        let path = format!("{location}/transfer?queue={queue}");
        request(server.http, "POST", &path, &[], None)
    };
    assert_eq!(transfer("nowhere").status, 404);
    let r = request(
        server.http,
        "POST",
        &format!("{location}/transfer"),
        &[],
        None,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = transfer("triage-nurses");
    assert_eq!(r.status, 204, "{}", r.body);
    first.expect_state("after_contact_work");
    assert_eq!(
        request(server.http, "DELETE", &location, &[], None).status,
        404,
        "Ana's session ended with the transfer"
    );

    let offer = second.expect(Duration::from_secs(30), "the transferred call", |m| {
        m["type"] == "offer"
    });
    assert_eq!(offer["call_id"], call.call_id.as_str(), "{offer}");
    assert_eq!(offer["queue"], "triage-nurses", "{offer}");
    let browser = BrowserPeer::new(&[Codec::Pcmu]);
    let r = connect_agent(&server, &accept_path(&call.call_id), &ben, &browser);
    let location = r.header("location").expect("Location").to_string();
    second.expect_state("on_contact");
    let mut bridged = Bridged {
        ua,
        phone,
        browser,
        location,
        call_id: call.call_id.clone(),
    };
    bridged.tones_both_ways();
    bridged.nurse_hangs_up(&server);
    second.expect_state("after_contact_work");
}

/// The nurse's browser goes away mid-call (a closed tab: no hang-up) and does not come back
/// within `[webrtc] reconnect_grace_secs` (2 s here): the patient is not dropped but goes
/// back to the front of the urgent queue, hearing the hold flow again, and the next nurse
/// who answers talks with them.
#[test]
fn a_nurse_whose_browser_goes_away_leaves_the_caller_in_the_queue_for_the_next() {
    let server = TestServer::start_with(Options {
        toml: "[webrtc]\nreconnect_grace_secs = 2\n".into(),
        ..Default::default()
    });
    let nurse = server.user_token("nurse-1", "agent");
    let b = bridge_urgent_caller(&server, &nurse, BrowserPeer::new(&[Codec::Pcmu]));
    b.tones_both_ways();
    let Bridged {
        ua,
        phone,
        browser,
        call_id,
        ..
    } = b;
    let before = phone.heard().len() / 8;
    drop(browser);
    assert_eq!(
        server.wait_metric(URGENT_QUEUE, 1.0, Duration::from_secs(60)),
        1.0,
        "the caller waits in the urgent queue again: {}",
        server.log()
    );
    assert_eq!(
        server.metric("careline_calls_ended_total{cause=\"agent_hangup\"}"),
        0.0,
        "the call goes on"
    );
    let_run(|| phone.heard(), before, 3000);
    let heard = phone.heard();
    assert!(
        find_tone(&heard[before * 8..], 261.63).is_some()
            || heard[before * 8..].iter().any(|s| s.unsigned_abs() > 500),
        "the caller hears the hold flow, not silence"
    );

    let other = server.user_token("nurse-2", "agent");
    let browser = BrowserPeer::new(&[Codec::Pcmu]);
    let r = connect_agent(
        &server,
        "/api/v1/queues/triage-urgent/answer",
        &other,
        &browser,
    );
    assert_eq!(r.header("careline-call-id"), Some(call_id.as_str()));
    let location = r.header("location").expect("Location").to_string();
    let mut bridged = Bridged {
        ua,
        phone,
        browser,
        location,
        call_id,
    };
    bridged.tones_both_ways();
    bridged.nurse_hangs_up(&server);
}

/// `browser`'s offer to the session's `reconnect`: refused (403) from another address than
/// the session's, then sent from its own; the answer to that.
fn reconnect_from_home(server: &TestServer, reconnect: &str, browser: &BrowserPeer) -> Response {
    let stranger = support::http::request_from(
        "127.0.0.2".parse().unwrap(),
        server.http,
        "POST",
        reconnect,
        &[],
        Some(("application/sdp", browser.offer.as_bytes())),
    );
    assert_eq!(stranger.status, 403, "{}", stranger.body);
    post_offer(server, reconnect, &browser.offer, None)
}

/// The nurse's console reloads mid-call (her old connection goes silent; no hang-up): the
/// patient hears hold music rather than silence or another nurse, and stays out of the
/// queue; the reloaded page sends a new offer to her session's `reconnect` and the two talk
/// again on the same call (a tone each way), with no new offer or call counted. Refused: the
/// same from another address (403).
#[test]
fn a_nurse_whose_console_reloads_talks_with_the_same_caller_again() {
    let server = TestServer::start();
    let nurse = server.user_token("nurse-1", "agent");
    let b = bridge_urgent_caller(&server, &nurse, BrowserPeer::new(&[Codec::Pcmu]));
    b.tones_both_ways();
    let Bridged {
        ua,
        phone,
        browser,
        location,
        call_id,
    } = b;
    drop(browser);
    let lost = "careline_browser_connections_total{event=\"agent_lost\"}";
    assert_eq!(
        server.wait_metric(lost, 1.0, Duration::from_secs(30)),
        1.0,
        "the server noticed her page went silent: {}",
        server.log()
    );
    let before = phone.heard().len() / 8;
    let_run(|| phone.heard(), before, 3500);
    let heard = phone.heard();
    assert!(
        find_tone(&heard[before * 8..], 261.63).is_some(),
        "the caller hears hold music while she is away"
    );
    assert_eq!(server.metric(URGENT_QUEUE), 0.0, "not back in the queue");

    let reconnect = format!("{location}/reconnect");
    let reloaded = BrowserPeer::new(&[Codec::Pcmu]);
    let r = reconnect_from_home(&server, &reconnect, &reloaded);
    assert_eq!(r.status, 200, "{}", r.body);
    reloaded.accept(&r.body);
    reloaded.wait_connected();
    let mut bridged = Bridged {
        ua,
        phone,
        browser: reloaded,
        location,
        call_id,
    };
    bridged.tones_both_ways();
    assert_eq!(
        server.metric("careline_browser_connections_total{event=\"agent_reconnected\"}"),
        1.0
    );
    assert_eq!(server.metric("careline_calls_started_total"), 1.0);
    assert_eq!(
        server.metric("careline_queue_answer_wait_seconds_count{queue=\"triage-urgent\"}"),
        1.0,
        "answered once"
    );
    bridged.nurse_hangs_up(&server);
}

/// A nurse disabled by an administrator while her console is open is signed out at the next
/// heartbeat: the channel closes (1008) and she is offered nothing more.
#[test]
fn a_disabled_users_console_is_closed_and_signed_out() {
    use support::console::Console;
    let server = TestServer::start_with(Options {
        toml: "[routing]\nheartbeat_secs = 1\n".into(),
        ..Default::default()
    });
    let nurse = server.user_token("leaver", "agent");
    let admin = server.user_token("admin-1", "admin");
    let mut console = Console::open_available(server.http, &nurse);
    assert_eq!(server.metric("careline_agents{state=\"available\"}"), 1.0);
    let auth = format!("Bearer {admin}");
    let r = request(
        server.http,
        "POST",
        "/api/v1/users/leaver/disable",
        &[("Authorization", &auth)],
        None,
    );
    assert!(matches!(r.status, 200 | 204), "{}", r.body);
    assert_eq!(console.expect_closed(Duration::from_secs(10)), Some(1008));
    assert_eq!(
        server.metric("careline_agents{state=\"available\"}"),
        0.0,
        "signed out at once, not after the grace period"
    );
}

/// aiortc, a second WebRTC stack (Python: its own ICE, DTLS, SRTP and Opus), calls by WHIP
/// offering Opus only, then PCMU only: each call is answered with that codec alone, hears the
/// welcome, and a key it sends as in-band tones (aiortc has no RFC 4733 sender) reaches the
/// flow like a phone's.
#[test]
fn aiortc_calls_with_opus_only_then_pcmu_only_hears_the_flow_and_keys_in_band() {
    use support::aiortc::AiortcPeer;
    let server = public();
    for (n, (codec, name, rtpmap)) in [
        ("opus", Codec::Opus, "opus/48000/2"),
        ("pcmu", Codec::Pcmu, "PCMU/8000"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut peer = AiortcPeer::call(server.http, "/api/v1/calls/whip", codec, None);
        assert_eq!(peer.status(), 201, "{}", peer.body());
        let formats = answered_formats(peer.body());
        assert_eq!(
            formats.len(),
            1,
            "{codec} alone, as offered (no telephone-event: aiortc offers none): {}",
            peer.body()
        );
        assert!(
            peer.body()
                .contains(&format!("a=rtpmap:{} {rtpmap}", formats[0])),
            "answered with the offer's own payload type: {}",
            peer.body()
        );
        peer.wait_connected();
        let (heard, _) = wait_for_prompt(&peer, name, "en", "welcome", 0, Some(2000));
        let pressed_at = heard.len() as u64 / 8;
        peer.command("dtmf 5");
        let (heard, _) = wait_for_prompt(&peer, name, "en", "digit-5", pressed_at, None);
        expect_not_prompt(&heard, "en", "digit-4", pressed_at);
        assert_eq!(
            server.wait_metric(
                "careline_dtmf_digits_total{method=\"inband\"}",
                n as f64 + 1.0,
                Duration::from_secs(10)
            ),
            n as f64 + 1.0,
            "the {codec} call's key, detected in the audio"
        );
        assert_eq!(peer.hang_up(), 200);
        assert_eq!(
            server.wait_metric(
                "careline_calls_ended_total{cause=\"caller_bye\"}",
                n as f64 + 1.0,
                Duration::from_secs(10)
            ),
            n as f64 + 1.0
        );
    }
}

/// A phone caller waiting in the urgent queue is answered by a nurse on aiortc offering Opus
/// only: the bridge transcodes both ways, each hears the other's tone, and the nurse hanging
/// up ends the phone's call with a BYE.
#[test]
fn a_phone_caller_is_bridged_to_an_aiortc_nurse_on_opus_and_each_hears_the_other() {
    use support::aiortc::AiortcPeer;
    let server = TestServer::start();
    let nurse = server.user_token("nurse-1", "clinician");
    let (mut ua, phone, call) = queue_urgent_caller(&server);
    let mut peer = AiortcPeer::call(
        server.http,
        "/api/v1/queues/triage-urgent/answer",
        "opus",
        Some(&nurse),
    );
    assert_eq!(peer.status(), 201, "{}", peer.body());
    assert_eq!(peer.call_id(), call.call_id);
    let formats = answered_formats(peer.body());
    assert_eq!(formats.len(), 1, "{}", peer.body());
    assert!(
        peer.body()
            .contains(&format!("a=rtpmap:{} opus/48000/2", formats[0])),
        "Opus, as offered: {}",
        peer.body()
    );
    peer.wait_connected();
    assert_eq!(
        server.wait_metric_down(URGENT_QUEUE, 0.0, Duration::from_secs(30)),
        0.0,
        "joined to the nurse, the caller leaves the queue"
    );

    hears(
        || peer.heard(),
        |t| phone.send_audio(t),
        1000.0,
        "the nurse hears the patient",
    );
    let patient_heard = phone.heard().len() / 8;
    peer.command("tone 440");
    wait_for_tone(
        || phone.heard(),
        440.0,
        patient_heard,
        "the patient hears the nurse",
    );
    peer.command("silence");

    assert_eq!(peer.hang_up(), 200);
    let bye = ua.expect(Duration::from_secs(10), |m| m.method() == Some("BYE"));
    let bye = bye.expect("the patient's phone gets a BYE");
    ua.respond(&bye, 200, "OK");
    assert_eq!(
        server.wait_metric(
            "careline_calls_ended_total{cause=\"agent_hangup\"}",
            1.0,
            Duration::from_secs(10)
        ),
        1.0,
        "the call ended by the nurse"
    );
}

/// The nurse wraps up the call: a code from `[routing] wrap_up_codes` (her console's hello
/// lists them) and her notes go into the identified patient's contact history, audited and
/// counted by code; only she can, only once, and only with a known code.
#[test]
fn the_nurse_wraps_up_with_a_code_and_notes_that_go_into_the_patients_history() {
    use serde_json::json;
    use support::console::Console;
    let server = TestServer::start();
    let nurse = server.user_token("nurse-1", "agent");
    let other = server.user_token("nurse-2", "agent");
    let service = server.user_token("ivr", "service");
    let records = tempfile::tempdir().unwrap();
    let bundle = records.path().join("patient.json");
    let patient = json!({"resourceType": "Patient", "id": "pat-wrap-1",
        "name": [{"family": "Tanaka", "given": ["Yui"]}], "birthDate": "1961-04-02"});
    std::fs::write(
        &bundle,
        json!({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient}]})
            .to_string(),
    )
    .unwrap();
    server.cli_ok(&["patient", "import", bundle.to_str().unwrap()]);

    let mut console = Console::open_available(server.http, &nurse);
    let codes = console.seen[0]["wrap_up_codes"].clone();
    assert!(
        codes
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c == "advice-given")),
        "the hello lists the wrap-up codes: {:?}",
        console.seen[0]
    );
    let (ua, phone, call) = queue_urgent_caller(&server);
    let call_id = console.expect_offer();
    let browser = BrowserPeer::new(&[Codec::Pcmu]);
    let r = connect_agent(&server, &accept_path(&call_id), &nurse, &browser);
    let location = r.header("location").expect("Location").to_string();
    console.expect_state("on_contact");
    // The IVR (a service) links the call to the patient it identified.
    let link = request(
        server.http,
        "PUT",
        &format!("/api/v1/calls/{call_id}/contact"),
        &[("Authorization", &format!("Bearer {service}"))],
        Some((
            "application/json",
            json!({"patient_id": "pat-wrap-1", "user": "nurse-1"})
                .to_string()
                .as_bytes(),
        )),
    );
    assert_eq!(link.status, 204, "{}", link.body);
    let mut bridged = Bridged {
        ua,
        phone,
        browser,
        location,
        call_id: call.call_id.clone(),
    };
    bridged.nurse_hangs_up(&server);
    let acw = console.expect_state("after_contact_work");
    assert_eq!(
        acw["contact"],
        call_id.as_str(),
        "wrap-up names its call: {acw}"
    );

    let wrap = |token: &str, body: serde_json::Value| {
        request(
            server.http,
            "POST",
            &format!("/api/v1/calls/{call_id}/wrap-up"),
            &[("Authorization", &format!("Bearer {token}"))],
            Some(("application/json", body.to_string().as_bytes())),
        )
    };
    let r = wrap(&nurse, json!({"code": "felt-better"}));
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains("advice-given"),
        "the codes are listed: {}",
        r.body
    );
    let r = wrap(&other, json!({"code": "advice-given"}));
    assert_eq!(r.status, 409, "not hers: {}", r.body);
    let r = wrap(
        &nurse,
        json!({"code": "advice-given", "notes": "Advised rest and fluids; call back if the fever rises."}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let done: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert!(done["contact_record"].is_string(), "{done}");
    let r = wrap(&nurse, json!({"code": "no-action"}));
    assert_eq!(r.status, 409, "once: {}", r.body);

    // In the patient's history (she may still read it: the wrap-up keeps her link).
    let r = request(
        server.http,
        "GET",
        "/api/v1/patients/pat-wrap-1/contacts",
        &[("Authorization", &format!("Bearer {nurse}"))],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let history: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let record = history["contacts"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["call_id"] == call_id.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("no record of the call: {history}"));
    assert_eq!(record["channel"], "voice", "{record}");
    assert_eq!(record["outcome"], "advice-given", "{record}");
    assert_eq!(record["user"], "nurse-1", "{record}");
    assert_eq!(
        record["notes"], "Advised rest and fluids; call back if the fever rises.",
        "{record}"
    );
    assert_eq!(
        server.metric("careline_wrap_ups_total{code=\"advice-given\"}"),
        1.0
    );
    console.send(json!({"type": "done"}));
    console.expect_state("available");

    // The call's record, for the supervisor's reports: its queue, who answered it, the
    // outcome; no patient in it.
    let boss = server.user_token("sam", "supervisor");
    let records = |query: &str| {
        request(
            server.http,
            "GET",
            &format!("/api/v1/call-records{query}"),
            &[("Authorization", &format!("Bearer {boss}"))],
            None,
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let record = loop {
        let r = records("?since=1h");
        assert_eq!(r.status, 200, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        if let Some(rec) = v["records"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["call_id"] == call_id.as_str()))
        {
            break rec.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no record: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(record["direction"], "inbound", "{record}");
    assert_eq!(record["channel"], "phone", "{record}");
    assert_eq!(record["end_cause"], "agent_hangup", "{record}");
    assert_eq!(record["identified"], true, "{record}");
    assert_eq!(record["queue"], "triage-urgent", "{record}");
    assert_eq!(record["agent"], "nurse-1", "{record}");
    assert_eq!(record["disposition"], "advice-given", "{record}");
    assert_eq!(record["wrapped_up_by"], "nurse-1", "{record}");
    assert_eq!(record["queue_stays"][0]["agent"], "nurse-1", "{record}");
    assert!(
        record["queue_stays"][0]["answered_at"].is_string(),
        "{record}"
    );
    assert!(
        !record.to_string().contains("pat-wrap-1"),
        "no patient in a call record: {record}"
    );
    let csv = records("?since=1h&format=csv&agent=nurse-1");
    assert_eq!(csv.status, 200);
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let mut lines = csv.body.lines();
    assert!(
        lines
            .next()
            .unwrap_or("")
            .starts_with("call_id,started,ended"),
        "{}",
        csv.body
    );
    assert!(
        lines.any(|l| l.starts_with(call_id.as_str()) && l.contains(",advice-given,nurse-1")),
        "{}",
        csv.body
    );
    assert_eq!(records("?agent=nobody").body, r#"{"records":[]}"#);
    assert_eq!(records("?format=xml").status, 400);
    // A nurse does not read the reports.
    let r = request(
        server.http,
        "GET",
        "/api/v1/call-records",
        &[("Authorization", &format!("Bearer {nurse}"))],
        None,
    );
    assert_eq!(r.status, 403, "{}", r.body);
}

/// A blind transfer to an outside number (the on-call physician's phone, behind the trunk):
/// the nurse sends the caller there; her session ends at once and she wraps up; the caller
/// hears hold music while it rings; once it answers the caller and the outside phone hear
/// each other, and its hang-up ends the caller's call. A number that is busy puts the caller
/// back at the front of their queue; a bad number or none is refused with the reason.
#[test]
fn a_nurse_transfers_the_caller_to_an_outside_number() {
    use support::rtp::RtpPeer;
    use support::sip::{Callee, PCMU_TE, sdp_media_addr, sdp_offer};
    let (server, mut handset) = server_with_trunk();
    let nurse = server.user_token("nurse-1", "agent");
    let transfer = |location: &str, query: &str| {
        request(
            server.http,
            "POST",
            &format!("{location}/transfer?{query}"),
            &[],
            None,
        )
    };

    // Busy: back to the queue.
    let b = bridge_urgent_caller(&server, &nurse, BrowserPeer::new(&[Codec::Pcmu]));
    let r = transfer(&b.location, "to=call%20me");
    assert_eq!(r.status, 422, "{}", r.body);
    let r = transfer(&b.location, "to=%2B15550199&queue=triage-nurses");
    assert_eq!(r.status, 400, "one target: {}", r.body);
    let r = transfer(&b.location, "to=%2B15550199");
    assert_eq!(r.status, 204, "{}", r.body);
    let callee = Callee::ring(&mut handset, Duration::from_secs(20)).expect("the number rings");
    assert!(
        callee.invite.start.starts_with("INVITE sip:+15550199@"),
        "{}",
        callee.invite.start
    );
    callee.respond(&mut handset, 486, "Busy Here", None);
    assert_eq!(
        server.wait_metric(URGENT_QUEUE, 1.0, Duration::from_secs(20)),
        1.0,
        "the caller is back in the urgent queue"
    );
    drop(b);

    // Answered: the caller and the outside phone talk.
    let server2 = TestServer::start_with(Options {
        toml: format!(
            "[sip.trunks.carrier]\nproxy = \"sip:{}\"\ncaller_id = \"+15550000\"\n",
            handset.local
        ),
        ..Options::default()
    });
    handset.server = server2.sip;
    let nurse = server2.user_token("nurse-1", "agent");
    let b = bridge_urgent_caller(&server2, &nurse, BrowserPeer::new(&[Codec::Pcmu]));
    let r = request(
        server2.http,
        "POST",
        &format!("{}/transfer?to=%2B15550199", b.location),
        &[],
        None,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let waiting = b.phone.heard().len() / 8;
    let mut callee = Callee::ring(&mut handset, Duration::from_secs(20)).expect("the number rings");
    wait_for_tone(
        || b.phone.heard(),
        261.63,
        waiting,
        "the caller hears hold music while it rings",
    );
    let r = request(server2.http, "DELETE", &b.location, &[], None);
    assert_eq!(r.status, 404, "the nurse's session ended: {}", r.body);
    let outside = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    outside.set_remote(sdp_media_addr(&callee.invite.body_str()).expect("media address"));
    callee.respond(
        &mut handset,
        200,
        "OK",
        Some(&sdp_offer(outside.port, "0 101", &PCMU_TE)),
    );
    handset
        .expect(Duration::from_secs(10), |m| m.method() == Some("ACK"))
        .expect("ACK");
    hears(
        || outside.heard(),
        |t| b.phone.send_audio(t),
        1000.0,
        "the outside phone hears the caller",
    );
    hears(
        || b.phone.heard(),
        |t| outside.send_audio(t),
        440.0,
        "the caller hears the outside phone",
    );
    // The outside phone hangs up: the caller's call ends.
    let mut ua = b.ua;
    callee.bye(&mut handset);
    let bye = ua
        .expect(Duration::from_secs(10), |m| m.method() == Some("BYE"))
        .expect("the caller gets a BYE");
    ua.respond(&bye, 200, "OK");
}

/// Consult, then transfer (warm): the nurse rings the on-call physician's number while the
/// patient waits on hold with music; the physician answers and the two talk, the patient
/// hearing neither; the nurse brings the patient in (all three hear each other), then hands
/// the patient over and leaves (her session ends); the patient and the physician go on, and
/// the physician's hang-up ends the call. Refusals change nothing.
#[test]
fn a_nurse_consults_an_outside_number_then_hands_the_caller_over() {
    use support::sip::pick_up;
    let (server, mut handset) = server_with_trunk();
    let nurse = server.user_token("nurse-1", "agent");
    let b = bridge_urgent_caller(&server, &nurse, BrowserPeer::new(&[Codec::Pcmu]));
    let step = |action: &str| {
        let path = format!("{}/{action}", b.location);
        let r = request(server.http, "POST", &path, &[], None);
        (r.status, r.body)
    };
    assert_eq!(step("conference").0, 409, "no consultation yet");
    assert_eq!(step("consult").0, 400, "a consultation names its number");
    assert_eq!(step("consult?to=call%20me").0, 422, "not a number");
    b.tones_both_ways();

    let waiting = b.phone.heard().len() / 8;
    assert_eq!(step("consult?to=%2B15550177"), (204, String::new()));
    assert_eq!(step("consult?to=%2B15550177").0, 409, "one at a time");
    let (mut callee, doctor) = pick_up(&mut handset, Duration::from_secs(20));
    assert!(
        callee.invite.start.starts_with("INVITE sip:+15550177@"),
        "{}",
        callee.invite.start
    );
    wait_for_tone(
        || b.phone.heard(),
        261.63,
        waiting,
        "the patient hears hold music",
    );

    // The nurse and the physician talk; the patient, on hold, hears neither.
    let (patient, heard) = (b.phone.heard().len() / 8, doctor.heard().len() / 8);
    b.browser.speak(tone(1200.0, 2000));
    wait_for_tone(
        || doctor.heard(),
        1200.0,
        heard,
        "the physician hears the nurse",
    );
    hears(
        || b.browser.heard(),
        |t| doctor.send_audio(t),
        1800.0,
        "the nurse hears the physician",
    );
    let_run(|| b.phone.heard(), patient, 4500);
    let after = |pcm: Vec<i16>, ms: usize| pcm[(ms * 8).min(pcm.len())..].to_vec();
    for hz in [1200.0, 1800.0] {
        assert_eq!(
            find_tone(&after(b.phone.heard(), patient), hz),
            None,
            "on hold, the patient does not hear {hz} Hz"
        );
    }

    // The patient is brought in: the physician hears the patient, the patient the physician.
    assert_eq!(step("conference").0, 204);
    hears(
        || doctor.heard(),
        |t| b.phone.send_audio(t),
        1000.0,
        "the physician hears the patient",
    );
    hears(
        || b.phone.heard(),
        |t| doctor.send_audio(t),
        1800.0,
        "the patient hears the physician",
    );

    // Handed over: the nurse leaves, the two go on.
    assert_eq!(step("complete").0, 204);
    assert_eq!(
        request(server.http, "DELETE", &b.location, &[], None).status,
        404,
        "the nurse's session ended"
    );
    for event in ["started", "answered", "conferenced", "handed_over"] {
        let name = format!("careline_consultations_total{{event=\"{event}\"}}");
        assert_eq!(server.metric(&name), 1.0, "{name}");
    }
    hears(
        || doctor.heard(),
        |t| b.phone.send_audio(t),
        1000.0,
        "the physician still hears the patient",
    );
    hears(
        || b.phone.heard(),
        |t| doctor.send_audio(t),
        1800.0,
        "and the other way round",
    );
    let mut ua = b.ua;
    callee.bye(&mut handset);
    let bye = ua
        .expect(Duration::from_secs(10), |m| m.method() == Some("BYE"))
        .expect("the physician's hang-up ends the patient's call");
    ua.respond(&bye, 200, "OK");
}

/// A consultation that goes nowhere: the number is busy, the patient stays on hold until the
/// nurse resumes; consulted again and answered, the nurse drops it (`cancel`): the physician's
/// phone is hung up and the patient is off hold with the nurse at once.
#[test]
fn a_nurse_drops_a_consultation_and_is_back_with_the_caller() {
    use support::sip::pick_up;
    let (server, mut handset) = server_with_trunk();
    let nurse = server.user_token("nurse-1", "agent");
    let b = bridge_urgent_caller(&server, &nurse, BrowserPeer::new(&[Codec::Pcmu]));
    let step = |action: &str| {
        let path = format!("{}/{action}", b.location);
        request(server.http, "POST", &path, &[], None).status
    };
    assert_eq!(step("consult?to=%2B15550177"), 204);
    let callee = support::sip::Callee::ring(&mut handset, Duration::from_secs(20))
        .expect("the number rings");
    callee.respond(&mut handset, 486, "Busy Here", None);
    // Busy: nothing to bring in, the patient still on hold until the nurse resumes.
    let failed = "careline_consultations_total{event=\"failed\"}";
    assert_eq!(
        server.wait_metric(failed, 1.0, Duration::from_secs(10)),
        1.0
    );
    assert_eq!(step("complete"), 409);
    assert_eq!(step("cancel"), 409);
    assert_eq!(step("resume"), 204);
    b.tones_both_ways();

    assert_eq!(step("consult?to=%2B15550177"), 204);
    let (_callee, doctor) = pick_up(&mut handset, Duration::from_secs(20));
    hears(
        || doctor.heard(),
        |t| b.browser.speak(t),
        1200.0,
        "the physician hears the nurse",
    );
    assert_eq!(step("cancel"), 204);
    let bye = handset
        .expect(Duration::from_secs(10), |m| m.method() == Some("BYE"))
        .expect("the physician's phone is hung up");
    handset.respond(&bye, 200, "OK");
    b.tones_both_ways();
    assert_eq!(step("cancel"), 409, "nothing left to drop");
    for (event, n) in [
        ("started", 2.0),
        ("failed", 1.0),
        ("answered", 1.0),
        ("dropped", 1.0),
    ] {
        let name = format!("careline_consultations_total{{event=\"{event}\"}}");
        assert_eq!(server.metric(&name), n, "{name}");
    }
}

/// Whisper flows over real media: a flow sets `AgentWhisper` and `CustomerWhisper` hooks
/// before queueing the caller; when a nurse answers, she hears her whisper ("five") and the
/// caller hears theirs ("seven"), each instead of the other side; then they talk.
#[test]
fn whisper_flows_play_to_the_nurse_and_the_caller_as_they_are_joined() {
    use support::rtp::RtpPeer;
    use support::sip::{Ua, dial_answered};
    let flows = tempfile::tempdir().unwrap();
    let flow = |start: &str, actions: serde_json::Value| {
        serde_json::json!({"Version": "2019-10-30", "StartAction": start, "Actions": actions})
            .to_string()
    };
    let say = |prompt: &str| {
        flow(
            "say",
            serde_json::json!([
                {"Identifier": "say", "Type": "MessageParticipant",
                 "Parameters": {"PromptId": prompt},
                 "Transitions": {"NextAction": "end", "Errors": [
                     {"NextAction": "end", "ErrorType": "NoMatchingError"}]}},
                {"Identifier": "end", "Type": "EndFlowExecution", "Parameters": {},
                 "Transitions": {}}]),
        )
    };
    let main = flow(
        "hooks",
        serde_json::json!([
            {"Identifier": "hooks", "Type": "UpdateContactEventHooks",
             "Parameters": {"EventHooks": {"AgentWhisper": "to-nurse", "CustomerWhisper": "to-caller"}},
             "Transitions": {"NextAction": "queue", "Errors": [
                 {"NextAction": "queue", "ErrorType": "NoMatchingError"}]}},
            {"Identifier": "queue", "Type": "UpdateContactTargetQueue",
             "Parameters": {"QueueId": "triage-nurses"},
             "Transitions": {"NextAction": "transfer", "Errors": [
                 {"NextAction": "transfer", "ErrorType": "NoMatchingError"}]}},
            {"Identifier": "transfer", "Type": "TransferContactToQueue", "Parameters": {},
             "Transitions": {"NextAction": "bye", "Errors": [
                 {"NextAction": "bye", "ErrorType": "QueueAtCapacity"},
                 {"NextAction": "bye", "ErrorType": "NoMatchingError"}]}},
            {"Identifier": "bye", "Type": "DisconnectParticipant", "Parameters": {},
             "Transitions": {}}]),
    );
    for (name, body) in [
        ("main", main),
        ("to-nurse", say("digit-5")),
        ("to-caller", say("digit-7")),
    ] {
        std::fs::write(flows.path().join(format!("{name}.json")), body).unwrap();
    }
    let server = TestServer::start_with(Options {
        toml: format!(
            "[flows]\ndir = \"{}\"\ndefault = \"main\"\n",
            flows.path().display()
        ),
        ..Default::default()
    });
    let nurse = server.user_token("nurse-1", "agent");
    let phone = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let mut ua = Ua::udp(server.sip);
    let _call = dial_answered(&mut ua, "100", &phone);
    let queue = "careline_queue_contacts{queue=\"triage-nurses\"}";
    assert_eq!(server.wait_metric(queue, 1.0, Duration::from_secs(30)), 1.0);
    let joined_at = phone.heard().len() as u64 / 8;
    let browser = BrowserPeer::new(&[Codec::Pcmu]);
    connect_agent(
        &server,
        "/api/v1/queues/triage-nurses/answer",
        &nurse,
        &browser,
    );
    wait_for_prompt(&browser, Codec::Pcmu, "en", "digit-5", 0, None);
    wait_for_prompt(&phone, Codec::Pcmu, "en", "digit-7", joined_at, None);
    // Then they talk.
    hears(
        || browser.heard(),
        |t| phone.send_audio(t),
        1000.0,
        "the nurse hears the caller",
    );
    hears(
        || phone.heard(),
        |t| browser.speak(t),
        440.0,
        "the caller hears the nurse",
    );
}

/// Routing by skill: the flow asks for a Japanese speaker at level 4 or above
/// (`UpdateRoutingCriteria`, for 20 s); the English-only nurse, available longer, is not
/// offered the call; the Japanese-speaking nurse is ([routing.proficiencies]). A flow whose
/// criteria are malformed is refused at start with the reason.
#[test]
fn a_caller_who_needs_a_japanese_speaker_is_offered_to_the_nurse_who_speaks_it() {
    use support::console::Console;
    use support::rtp::RtpPeer;
    use support::sip::{Ua, dial_answered};
    let flows = tempfile::tempdir().unwrap();
    let main = serde_json::json!({"Version": "2019-10-30", "StartAction": "skills", "Actions": [
        {"Identifier": "skills", "Type": "UpdateRoutingCriteria",
         "Parameters": {"RoutingCriteria": {"Steps": [
             {"Expression": {"AttributeCondition": {"Name": "Language", "Value": "Japanese",
                 "ProficiencyLevel": 4, "ComparisonOperator": "NumberGreaterOrEqualTo"}},
              "Expiry": {"DurationInSeconds": 20}}]}},
         "Transitions": {"NextAction": "queue", "Errors": [
             {"NextAction": "queue", "ErrorType": "NoMatchingError"}]}},
        {"Identifier": "queue", "Type": "UpdateContactTargetQueue",
         "Parameters": {"QueueId": "triage-nurses"},
         "Transitions": {"NextAction": "transfer", "Errors": [
             {"NextAction": "transfer", "ErrorType": "NoMatchingError"}]}},
        {"Identifier": "transfer", "Type": "TransferContactToQueue", "Parameters": {},
         "Transitions": {"NextAction": "bye", "Errors": [
             {"NextAction": "bye", "ErrorType": "QueueAtCapacity"},
             {"NextAction": "bye", "ErrorType": "NoMatchingError"}]}},
        {"Identifier": "bye", "Type": "DisconnectParticipant", "Parameters": {},
         "Transitions": {}}]});
    std::fs::write(flows.path().join("main.json"), main.to_string()).unwrap();
    let server = TestServer::start_with(Options {
        toml: format!(
            "[flows]\ndir = \"{}\"\ndefault = \"main\"\n\
             [routing.proficiencies.emma]\nLanguage = {{ English = 5 }}\n\
             [routing.proficiencies.kei]\nLanguage = {{ Japanese = 5, English = 3 }}\n",
            flows.path().display()
        ),
        ..Default::default()
    });
    let emma = server.user_token("emma", "agent");
    let kei = server.user_token("kei", "agent");
    let mut emma_console = Console::open_available(server.http, &emma);
    std::thread::sleep(Duration::from_millis(50));
    let mut kei_console = Console::open_available(server.http, &kei);
    let phone = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let mut ua = Ua::udp(server.sip);
    let call = dial_answered(&mut ua, "100", &phone);
    let offered = kei_console.expect_offer();
    assert_eq!(
        offered, call.call_id,
        "the Japanese speaker is offered the call"
    );
    emma_console.listen(Duration::from_secs(2));
    assert!(
        !emma_console.seen.iter().any(|m| m["type"] == "offer"),
        "the English-only nurse, available longer, is not: {:?}",
        emma_console.seen
    );
    let browser = BrowserPeer::new(&[Codec::Pcmu]);
    connect_agent(&server, &accept_path(&offered), &kei, &browser);
    kei_console.expect_state("on_contact");
    hears(
        || browser.heard(),
        |t| phone.send_audio(t),
        1000.0,
        "kei hears the caller",
    );
    drop(emma_console);

    // A level outside 1 to 5 in a flow is refused at load, saying where and why.
    std::fs::write(
        flows.path().join("main.json"),
        main.to_string()
            .replace("\"ProficiencyLevel\":4", "\"ProficiencyLevel\":9"),
    )
    .unwrap();
    let out = support::server::careline_command()
        .args(["flow", "validate"])
        .arg(flows.path().join("main.json"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("main.json") && text.contains("skills") && text.contains("ProficiencyLevel"),
        "file, action and reason: {text}"
    );
}

/// A transfer to another nurse by name: the caller waits in their queue for her alone and
/// rings her first, although a colleague has been available longer; she accepts and they
/// talk. A nurse who is not at the desk is refused (409), and the caller stays put.
#[test]
fn a_nurse_transfers_the_caller_to_a_colleague_by_name() {
    use support::console::Console;
    let server = TestServer::start();
    let nurse = server.user_token("nurse-1", "agent");
    let b = bridge_urgent_caller(&server, &nurse, BrowserPeer::new(&[Codec::Pcmu]));
    let longest = server.user_token("nurse-2", "agent");
    let mut longest = Console::open(server.http, &longest);
    longest.expect_state("offline");
    longest.send(serde_json::json!({"type": "state", "state": "available"}));
    longest.expect_state("available");
    let chosen_token = server.user_token("nurse-3", "agent");
    let mut chosen = Console::open(server.http, &chosen_token);
    chosen.expect_state("offline");
    chosen.send(serde_json::json!({"type": "state", "state": "available"}));
    chosen.expect_state("available");

    let transfer = |query: &str| {
        request(
            server.http,
            "POST",
            &format!("{}/transfer?{query}", b.location),
            &[],
            None,
        )
    };
    let r = transfer("agent=nobody");
    assert_eq!(r.status, 409, "{}", r.body);
    let r = transfer("agent=nurse-3&queue=triage-nurses");
    assert_eq!(r.status, 400, "{}", r.body);
    let r = transfer("agent=nurse-3");
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        chosen.expect_offer(),
        b.call_id,
        "the caller rings for the colleague named"
    );
    let browser = BrowserPeer::new(&[Codec::Pcmu]);
    let r = connect_agent(&server, &accept_path(&b.call_id), &chosen_token, &browser);
    assert_eq!(r.header("careline-call-id"), Some(b.call_id.as_str()));
    chosen.expect_state("on_contact");
    assert_eq!(
        server.metric("careline_agents{state=\"available\"}"),
        1.0,
        "the colleague available longer was never rung: still available"
    );
    assert_eq!(server.metric("careline_agents{state=\"offered\"}"), 0.0);
    let Bridged { ua, phone, .. } = b;
    let mut bridged = Bridged {
        ua,
        phone,
        browser,
        location: r.header("location").expect("Location").to_string(),
        call_id: r.header("careline-call-id").unwrap_or_default().to_string(),
    };
    bridged.tones_both_ways();
    bridged.nurse_hangs_up(&server);
}
