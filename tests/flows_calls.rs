//! End-to-end contact flows: a real server process, a raw SIP phone, what the caller hears.
//! Speech is checked against the same text rendered in this process by Careline's own TTS
//! pipeline (espeak-ng and MeCab are deterministic), so a test fails when the caller hears a
//! different sentence.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use careline::flow::tts;
use careline::media::codec::Codec;
use careline::media::dtmf::{Digit, tone};
use careline::media::recognize;
use support::rtp::RtpPeer;
use support::server::{Options, TestServer};
use support::sip::{Call, PCMU_TE, Ua, answered_call, sdp_media_addr, sdp_offer};
use support::speech::{EN_MENU, LANGUAGE_MENU, URGENT, heard, runtime, speech, speech_with};

fn wait(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Waits until `expected` is heard (polling), then returns where it starts.
fn until_heard(peer: &RtpPeer, expected: &[i16], from_ms: u64, prefix_ms: u64, what: &str) -> u64 {
    for _ in 0..60 {
        let h = peer.heard();
        if let Some(m) = recognize::find_from(
            &h,
            &expected[..expected.len().min((prefix_ms * 8) as usize)],
            (from_ms * 8) as usize,
        ) && m.waveform_score >= 0.9
            && m.envelope_score >= 0.9
        {
            return m.offset_ms();
        }
        wait(250);
    }
    heard(&peer.heard(), expected, from_ms, Some(prefix_ms), what)
}

fn dial(server: &TestServer, peer: &RtpPeer, number: &str, sdp: &str) -> (Ua, Call) {
    let mut ua = Ua::udp(server.sip);
    let mut call = Call::new(number);
    let ok = answered_call(&mut ua, &mut call, sdp);
    peer.set_remote(sdp_media_addr(&ok.body_str()).expect("media address"));
    (ua, call)
}

#[test]
fn caller_walks_the_triage_flow_in_english_to_the_urgent_queue_with_rfc4733_keys() {
    let server = TestServer::start();
    let language_menu = speech("Mizuki", LANGUAGE_MENU, true);
    let en_menu = speech("Joanna", EN_MENU, false);
    let urgent = speech("Joanna", URGENT, false);
    let hold = speech(
        "Joanna",
        "<speak>All of our staff are helping other patients. Please stay on the line.<break time=\"5s\"/></speak>",
        true,
    );

    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let offer = sdp_offer(peer.port, "0 101", &PCMU_TE);
    let (_ua, _call) = dial(&server, &peer, "200", &offer);
    let t = until_heard(&peer, &language_menu, 0, 1500, "the language menu");
    assert!(t < 1500, "the language menu starts at once: {t} ms");
    let pressed = peer.heard().len() as u64 / 8;
    peer.send_event('2', 100);
    let t = until_heard(&peer, &en_menu, pressed, 1500, "the English menu");
    assert!(
        t < pressed + 1000,
        "the English menu follows the key: {t} ms"
    );
    let pressed = peer.heard().len() as u64 / 8;
    peer.send_event('9', 100);
    let t = until_heard(&peer, &urgent, pressed, 2000, "the urgent line message");
    until_heard(
        &peer,
        &hold,
        t + 1000,
        2000,
        "the hold message in the urgent queue",
    );
    assert_eq!(
        server.metric("careline_dtmf_digits_total{method=\"rfc4733\"}"),
        2.0
    );
    // The caller waits in the urgent queue while the hold flow plays.
    assert_eq!(
        server.metric("careline_queue_entered_total{queue=\"triage-urgent\"}"),
        1.0
    );
    assert_eq!(
        server.metric("careline_queue_contacts{queue=\"triage-urgent\"}"),
        1.0
    );
}

#[test]
fn the_speech_the_tests_expect_is_the_committed_reference() {
    // The oracle of the triage tests is Careline's own speech pipeline; these recordings,
    // committed when the tests were written, keep that oracle honest.
    support::speech::matches_reference("language-menu", "Mizuki", LANGUAGE_MENU, true);
    support::speech::matches_reference("en-menu", "Joanna", EN_MENU, false);
    support::speech::matches_reference("urgent", "Joanna", URGENT, false);
}

#[test]
fn in_band_keys_walk_the_japanese_branch_to_a_nurse() {
    let server = TestServer::start();
    let language_menu = speech("Mizuki", LANGUAGE_MENU, true);
    let ja_menu = speech(
        "Mizuki",
        "緊急の方は9を押してください。新規予約は1、既存予約の変更は2、医療相談は3、検査結果の確認は4を押してください。",
        false,
    );
    let nurse = speech("Mizuki", "看護師におつなぎします。", false);
    let peer = RtpPeer::new(Codec::Pcma, 8, None);
    let (_ua, _call) = dial(
        &server,
        &peer,
        "200",
        &sdp_offer(peer.port, "8", &["a=rtpmap:8 PCMA/8000"]),
    );
    until_heard(&peer, &language_menu, 0, 1500, "the language menu");
    let key = |c: char| tone::synthesize(Digit::from_char(c).unwrap(), 8000, 120, -10.0);
    let pressed = peer.heard().len() as u64 / 8;
    peer.send_audio(key('1'));
    until_heard(&peer, &ja_menu, pressed, 2000, "the Japanese menu");
    let pressed = peer.heard().len() as u64 / 8;
    peer.send_audio(key('3'));
    until_heard(&peer, &nurse, pressed, 1500, "the nurse message");
    assert_eq!(
        server.metric("careline_dtmf_digits_total{method=\"inband\"}"),
        2.0
    );
}

/// A local HTTP server standing in for Lambda functions and a TTS engine.
struct Endpoints {
    addr: SocketAddr,
    events: Arc<Mutex<Vec<serde_json::Value>>>,
    _rt: tokio::runtime::Runtime,
}

fn tone_wav() -> Vec<u8> {
    // 0.8 s of a 523 Hz tone at 16 kHz: the "voice" of the HTTP engine.
    let pcm: Vec<i16> = (0..12800)
        .map(|i| ((2.0 * std::f32::consts::PI * 523.0 * i as f32 / 16000.0).sin() * 9000.0) as i16)
        .collect();
    tts::write_wav(&pcm, 16000)
}

fn endpoints() -> Endpoints {
    use axum::routing::post;
    let rt = runtime();
    let events: Arc<Mutex<Vec<serde_json::Value>>> = Default::default();
    let ev = events.clone();
    let app = axum::Router::new()
        .route(
            "/ok",
            post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let ev = ev.clone();
                async move {
                    ev.lock().unwrap().push(body);
                    axum::Json(serde_json::json!({"status": "ok", "count": 2}))
                }
            }),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                axum::Json(serde_json::json!({"status": "ok"}))
            }),
        )
        .route(
            "/fail",
            post(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route("/bad", post(|| async { "this is not json" }))
        .route(
            "/tts",
            post(|| async { ([("content-type", "audio/wav")], tone_wav()) }),
        );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await });
    Endpoints {
        addr,
        events,
        _rt: rt,
    }
}

/// A flow that calls Lambda `function` and plays digit-1 when `$.External.status` is ok,
/// digit-5 when it is something else, digit-9 on the error branch.
fn lambda_flow(function: &str) -> String {
    serde_json::json!({"Version": "2019-10-30", "StartAction": "call", "Actions": [
        {"Identifier": "call", "Type": "InvokeLambdaFunction",
         "Parameters": {"LambdaFunctionARN": format!("arn:aws:lambda:ap-northeast-1:123456789012:function:{function}"),
                        "InvocationTimeLimitSeconds": "1",
                        "LambdaInvocationAttributes": {"dialed": "$.SystemEndpoint.Address"},
                        "ResponseValidation": {"ResponseType": "STRING_MAP"}},
         "Transitions": {"NextAction": "check", "Errors": [{"NextAction": "failed", "ErrorType": "NoMatchingError"}]}},
        {"Identifier": "check", "Type": "Compare", "Parameters": {"ComparisonValue": "$.External.status"},
         "Transitions": {"Conditions": [{"NextAction": "good", "Condition": {"Operator": "Equals", "Operands": ["ok"]}}],
                         "Errors": [{"NextAction": "other", "ErrorType": "NoMatchingCondition"}]}},
        {"Identifier": "good", "Type": "MessageParticipant", "Parameters": {"PromptId": "digit-1"}, "Transitions": {"NextAction": "end"}},
        {"Identifier": "other", "Type": "MessageParticipant", "Parameters": {"PromptId": "digit-5"}, "Transitions": {"NextAction": "end"}},
        {"Identifier": "failed", "Type": "MessageParticipant", "Parameters": {"PromptId": "digit-9"}, "Transitions": {"NextAction": "end"}},
        {"Identifier": "end", "Type": "DisconnectParticipant", "Parameters": {}, "Transitions": {}}
    ]})
    .to_string()
}

#[test]
fn lambda_over_http_success_timeout_error_status_and_bad_body() {
    let ep = endpoints();
    let flows = tempfile::tempdir().unwrap();
    for f in ["ok", "slow", "fail", "bad"] {
        std::fs::write(
            flows.path().join(format!("lambda-{f}.json")),
            lambda_flow(f),
        )
        .unwrap();
    }
    let tts_flow = serde_json::json!({"Version": "2019-10-30", "StartAction": "say", "Actions": [
        {"Identifier": "say", "Type": "MessageParticipant", "Parameters": {"Text": "Hello from the HTTP engine"}, "Transitions": {"NextAction": "end"}},
        {"Identifier": "end", "Type": "DisconnectParticipant", "Parameters": {}, "Transitions": {}}]});
    std::fs::write(flows.path().join("speak.json"), tts_flow.to_string()).unwrap();
    let base = format!("http://{}", ep.addr);
    let server = TestServer::start_with(Options {
        toml: format!(
            "[flows]\ndir = \"{}\"\ndefault = \"speak\"\n[flows.numbers]\n\"1\" = \"lambda-ok\"\n\"2\" = \"lambda-slow\"\n\"3\" = \"lambda-fail\"\n\"4\" = \"lambda-bad\"\n\
             [lambda.ok]\nurl = \"{base}/ok\"\n[lambda.slow]\nurl = \"{base}/slow\"\n[lambda.fail]\nurl = \"{base}/fail\"\n[lambda.bad]\nurl = \"{base}/bad\"\n\
             [tts]\nengine = \"http\"\nhttp_url = \"{base}/tts\"\n",
            flows.path().display()
        ),
        ..Options::default()
    });
    let expect = |number: &str, prompt: &str| {
        let peer = RtpPeer::new(Codec::Pcmu, 0, None);
        let (_ua, _call) = dial(
            &server,
            &peer,
            number,
            &sdp_offer(peer.port, "0", &["a=rtpmap:0 PCMU/8000"]),
        );
        let want = support::server::prompt_pcm("en", prompt);
        until_heard(&peer, &want, 0, 800, &format!("number {number}: {prompt}"));
    };
    expect("1", "digit-1");
    expect("2", "digit-9"); // the function answers after 3 s; the limit is 1 s
    expect("3", "digit-9"); // HTTP 500
    expect("4", "digit-9"); // not JSON
    let events = ep.events.lock().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["Name"], "ContactFlowEvent");
    assert_eq!(events[0]["Details"]["Parameters"]["dialed"], "1");
    assert_eq!(
        events[0]["Details"]["ContactData"]["CustomerEndpoint"]["Address"],
        "15551230000"
    );

    // The HTTP TTS engine speaks for the default flow.
    let engine = Arc::new(tts::http::HttpTts::new(
        format!("{base}/tts"),
        Duration::from_secs(5),
        careline::flow::http::HttpClient::new(),
    ));
    let want = speech_with(engine, "Joanna", "Hello from the HTTP engine", false);
    let peer = RtpPeer::new(Codec::Pcmu, 0, None);
    let (_ua, _call) = dial(
        &server,
        &peer,
        "777",
        &sdp_offer(peer.port, "0", &["a=rtpmap:0 PCMU/8000"]),
    );
    until_heard(&peer, &want, 0, 700, "speech from the HTTP TTS engine");
}

/// GetMetricData in a customer queue flow: each caller is told their own place in line,
/// in routing's order, from `$.Metrics.Contact.PositionInQueue`.
#[test]
fn callers_in_a_queue_hear_their_place_in_line() {
    let flows = tempfile::tempdir().unwrap();
    let line = serde_json::json!({"Version": "2019-10-30", "StartAction": "target", "Actions": [
        {"Identifier": "target", "Type": "UpdateContactTargetQueue",
         "Parameters": {"QueueId": "nurses"}, "Transitions": {"NextAction": "queue"}},
        {"Identifier": "queue", "Type": "TransferContactToQueue", "Parameters": {},
         "Transitions": {"NextAction": "end", "Errors": [{"NextAction": "end", "ErrorType": "QueueAtCapacity"}]}},
        {"Identifier": "end", "Type": "DisconnectParticipant", "Parameters": {}, "Transitions": {}}]});
    std::fs::write(flows.path().join("line.json"), line.to_string()).unwrap();
    let place = serde_json::json!({"Version": "2019-10-30", "StartAction": "get", "Actions": [
        {"Identifier": "get", "Type": "GetMetricData", "Parameters": {},
         "Transitions": {"NextAction": "say", "Errors": [{"NextAction": "say", "ErrorType": "NoMatchingError"}]}},
        {"Identifier": "say", "Type": "MessageParticipantIteratively",
         "Parameters": {"Messages": [{"Text": "You are number $.Metrics.Contact.PositionInQueue in line."}]},
         "Transitions": {}}]});
    let wrapped = serde_json::json!({"Name": "place", "Type": "CUSTOMER_QUEUE", "Content": place});
    std::fs::write(flows.path().join("place.json"), wrapped.to_string()).unwrap();
    let server = TestServer::start_with(Options {
        toml: format!(
            "[flows]\ndir = \"{}\"\ndefault = \"line\"\n[queues.nurses]\nhold_flow = \"place\"\n",
            flows.path().display()
        ),
        ..Options::default()
    });
    let first = RtpPeer::new(Codec::Pcmu, 0, None);
    let (_ua1, _call1) = dial(
        &server,
        &first,
        "1",
        &sdp_offer(first.port, "0", &["a=rtpmap:0 PCMU/8000"]),
    );
    let one = speech("Joanna", "You are number 1 in line.", false);
    until_heard(&first, &one, 0, 5000, "the first caller's place");
    let second = RtpPeer::new(Codec::Pcmu, 0, None);
    let (_ua2, _call2) = dial(
        &server,
        &second,
        "1",
        &sdp_offer(second.port, "0", &["a=rtpmap:0 PCMU/8000"]),
    );
    let two = speech("Joanna", "You are number 2 in line.", false);
    until_heard(&second, &two, 0, 5000, "the second caller's place");
    assert_eq!(
        server.metric("careline_queue_contacts{queue=\"nurses\"}"),
        2.0
    );
}
