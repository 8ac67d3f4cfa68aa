//! Queued callbacks end to end: a phone caller waiting in the shipped triage flow's nurses
//! queue presses 1 to be called back and hangs up; the callback keeps their place through a
//! `kill -9` of the server; a nurse at the console is offered it, accepts from a browser, and
//! Careline calls the patient through the trunk (a raw SIP phone over real sockets stands in
//! for the carrier and the handset). The patient hears who is calling, then the nurse: a tone
//! each way. Another callback nobody answers is tried again after its retry delay.

mod support;

use std::time::Duration;

use careline::media::codec::Codec;
use support::audio::{let_call_run, tone, wait_for_tone};
use support::browser::BrowserPeer;
use support::console::Console;
use support::http::request;
use support::rtp::RtpPeer;
use support::server::{Options, TestServer};
use support::sip::{Callee, Ua, dial_answered, pick_up};
use support::speech::{hears, speech};

const WAIT: Duration = Duration::from_secs(30);
const NURSES_QUEUE: &str = "careline_queue_contacts{queue=\"triage-nurses\"}";
/// The shipped callback-greeting flow in English.
const GREETING: &str = "Hello. This is the clinic, returning your call as you asked. Please hold while we connect you.";

/// A server whose trunk `carrier` leads to `handset`.
fn server_calling(handset: &Ua, extra: &str) -> TestServer {
    TestServer::start_with(Options {
        toml: format!(
            "[sip.trunks.carrier]\nproxy = \"sip:{}\"\ncaller_id = \"+15550000\"\n\
             ring_timeout_secs = 3\n{extra}\n",
            handset.local
        ),
        ..Options::default()
    })
}

/// A phone caller walks the triage flow in English to the nurses' queue (2, then 3), hears
/// the offer of a callback there and presses 1; Careline thanks them and hangs up.
fn ask_for_a_callback(server: &TestServer) {
    let phone = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let mut ua = Ua::udp(server.sip);
    let _call = dial_answered(&mut ua, "200", &phone);
    let_call_run(&phone, 500);
    phone.send_event('2', 100); // English
    let_call_run(&phone, 500);
    phone.send_event('3', 100); // a nurse
    assert_eq!(
        server.wait_metric(NURSES_QUEUE, 1.0, WAIT),
        1.0,
        "the caller waits for a nurse"
    );
    let_call_run(&phone, 1500);
    phone.send_event('1', 100); // call me back
    let bye = ua
        .expect(WAIT, |m| m.method() == Some("BYE"))
        .expect("Careline hangs up once the callback is kept");
    ua.respond(&bye, 200, "OK");
    assert_eq!(
        server.metric("careline_callbacks_total{event=\"created\"}"),
        1.0
    );
    assert_eq!(
        server.wait_metric_down(NURSES_QUEUE, 0.0, WAIT),
        0.0,
        "the caller is off the line"
    );
}

#[test]
fn a_caller_called_back_keeps_their_place_across_a_restart_and_talks_with_the_nurse() {
    let mut handset = Ua::udp("127.0.0.1:9".parse().unwrap());
    let mut server = server_calling(&handset, "");
    handset.server = server.sip;
    let nurse = server.user_token("nurse-1", "agent");

    ask_for_a_callback(&server);
    assert!(
        !server.log().contains("5551230000"),
        "the number stays out of the log"
    );

    // The callback is in the database: it survives the process.
    server.kill9();
    server.restart();
    handset.server = server.sip;
    assert_eq!(
        server.metric("careline_callbacks_total{event=\"restored\"}"),
        1.0,
        "back in its place at start"
    );

    let mut console = Console::open(server.http, &nurse);
    console.expect_state("offline");
    console.send(serde_json::json!({"type": "state", "state": "available"}));
    console.expect_state("available");
    let offered = console.expect_offer();
    assert!(
        offered.starts_with("cb-"),
        "a callback is offered: {offered}"
    );
    let offer = console.seen.last().cloned().unwrap_or_default();
    assert_eq!(offer["queue"], "triage-nurses", "{offer}");
    assert_eq!(
        offer["callback"], true,
        "the console says it is a callback: {offer}"
    );

    let browser = BrowserPeer::new(&[Codec::Pcmu]);
    let r = request(
        server.http,
        "POST",
        &format!("/api/v1/calls/{offered}/accept"),
        &[
            ("Authorization", &format!("Bearer {nurse}")),
            ("Content-Type", "application/sdp"),
        ],
        Some(("application/sdp", browser.offer.as_bytes())),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    browser.accept(&r.body);
    browser.wait_connected();
    let location = r.header("location").expect("Location").to_string();
    let on = console.expect_state("on_contact");
    assert_eq!(on["contact"], offered.as_str(), "{on}");

    let (callee, patient) = pick_up(&mut handset, WAIT);
    assert!(
        callee.invite.start.starts_with("INVITE sip:15551230000@"),
        "the number the caller called from: {}",
        callee.invite.start
    );
    // Who is calling, then the nurse.
    let greeting = speech("Joanna", GREETING, false);
    let deadline = std::time::Instant::now() + WAIT;
    while hears(&patient.heard(), &greeting, 0, None).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the patient hears who is calling"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Joined once the greeting is over.
    let_call_run(&patient, 500);
    let nurse_heard = browser.heard().len() / 8;
    patient.send_audio(tone(1000.0, 2000));
    wait_for_tone(
        || browser.heard(),
        1000.0,
        nurse_heard,
        "the nurse hears the patient",
    );
    let patient_heard = patient.heard().len() / 8;
    browser.speak(tone(440.0, 2000));
    wait_for_tone(
        || patient.heard(),
        440.0,
        patient_heard,
        "the patient hears the nurse",
    );
    assert_eq!(
        server.metric("careline_callbacks_total{event=\"reached\"}"),
        0.0,
        "reached is counted when the call ends"
    );

    // The nurse hangs up: the patient gets a BYE, the callback is done, the nurse wraps up.
    let r = request(server.http, "DELETE", &location, &[], None);
    assert_eq!(r.status, 200, "{}", r.body);
    let bye = handset
        .expect(WAIT, |m| m.method() == Some("BYE"))
        .expect("the patient's phone gets a BYE");
    handset.respond(&bye, 200, "OK");
    assert_eq!(
        server.wait_metric("careline_callbacks_total{event=\"reached\"}", 1.0, WAIT),
        1.0
    );
    console.expect_state("after_contact_work");
    assert!(
        !server.log().contains("5551230000"),
        "the number stays out of the log"
    );
}

#[test]
fn a_callback_nobody_answers_frees_the_nurse_and_is_tried_again_after_its_delay() {
    let mut handset = Ua::udp("127.0.0.1:9".parse().unwrap());
    let server = server_calling(&handset, "[routing]\nafter_contact_work_secs = 0\n");
    handset.server = server.sip;
    let nurse = server.user_token("nurse-1", "agent");
    ask_for_a_callback(&server);

    let mut console = Console::open(server.http, &nurse);
    console.expect_state("offline");
    console.send(serde_json::json!({"type": "state", "state": "available"}));
    console.expect_state("available");
    let offered = console.expect_offer();
    let browser = BrowserPeer::new(&[Codec::Pcmu]);
    let r = request(
        server.http,
        "POST",
        &format!("/api/v1/calls/{offered}/accept"),
        &[("Authorization", &format!("Bearer {nurse}"))],
        Some(("application/sdp", browser.offer.as_bytes())),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    browser.accept(&r.body);
    console.expect_state("on_contact");

    // The handset is busy.
    let callee = Callee::ring(&mut handset, WAIT).expect("Careline calls the patient back");
    callee.respond(&mut handset, 486, "Busy Here", None);
    assert_eq!(
        server.wait_metric("careline_callbacks_total{event=\"retry\"}", 1.0, WAIT),
        1.0
    );
    // The nurse is free at once (no wrap-up for a call that reached nobody), and the
    // callback is not offered again before its retry delay (300 s in the shipped flow).
    console.expect_state("available");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        server.metric("careline_agents{state=\"offered\"}"),
        0.0,
        "not offered again before the retry delay"
    );
    assert_eq!(
        server.metric("careline_outbound_calls_total{outcome=\"busy\"}"),
        1.0
    );

    // A supervisor sees it waiting for its next attempt, and cancels it.
    let supervisor = server.user_token("sup-1", "supervisor");
    let as_user = |token: &str, method: &str, path: &str| {
        let auth = format!("Bearer {token}");
        request(server.http, method, path, &[("Authorization", &auth)], None)
    };
    let list = as_user(&supervisor, "GET", "/api/v1/callbacks");
    assert_eq!(list.status, 200, "{}", list.body);
    let listed = list.json()["callbacks"].clone();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["id"], offered.as_str());
    assert_eq!(listed[0]["status"], "queued");
    assert_eq!(listed[0]["attempts"], 1);
    assert_eq!(listed[0]["max_attempts"], 3);
    assert_eq!(listed[0]["last_cause"], "busy");
    assert!(
        !list.body.contains("5551230000"),
        "no number: {}",
        list.body
    );
    let path = format!("/api/v1/callbacks/{offered}");
    let r = as_user(&supervisor, "DELETE", &path);
    assert_eq!(r.status, 204, "{}", r.body);
    let r = as_user(&supervisor, "DELETE", &path);
    assert_eq!(r.status, 409, "cancelled already: {}", r.body);
    let list = as_user(&supervisor, "GET", "/api/v1/callbacks");
    assert_eq!(
        list.json()["callbacks"],
        serde_json::json!([]),
        "{}",
        list.body
    );
    let nurse_list = as_user(&nurse, "GET", "/api/v1/callbacks");
    assert_eq!(nurse_list.status, 403, "{}", nurse_list.body);
}
