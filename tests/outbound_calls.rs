//! Calls Careline places (`POST /api/v1/calls`) through a trunk to a phone: a raw SIP phone
//! over real UDP sockets stands in for the carrier and the patient's handset. The phone rings,
//! answers, hears the flow and presses keys; in other tests it is busy, never answers, or the
//! trunk asks for a password.

mod support;

use std::time::Duration;

use careline::media::codec::Codec;
use serde_json::json;
use support::audio::wait_for_prompt;
use support::http::{Response, request};
use support::rtp::RtpPeer;
use support::server::{Options, TestServer};
use support::sip::{Callee, PCMU_TE, Ua, pick_up, sdp_media_addr, sdp_offer};

const WAIT: Duration = Duration::from_secs(20);

/// A server whose trunk `carrier` leads to `phone`, with `extra` trunk settings.
fn server_calling(phone: &Ua, extra: &str) -> TestServer {
    TestServer::start_with(Options {
        toml: format!(
            "[sip.trunks.carrier]\nproxy = \"sip:{}\"\ncaller_id = \"+15550000\"\n{extra}\n",
            phone.local
        ),
        ..Options::default()
    })
}

fn place(server: &TestServer, token: &str, body: serde_json::Value) -> Response {
    let auth = format!("Bearer {token}");
    let body = body.to_string();
    request(
        server.http,
        "POST",
        "/api/v1/calls",
        &[("Authorization", &auth)],
        Some(("application/json", body.as_bytes())),
    )
}

/// The phone hangs up an answered call: Careline answers its BYE, and the call counts as
/// an answered one.
fn hang_up_answered(phone: &mut Ua, callee: &mut Callee, server: &TestServer) {
    callee.bye(phone);
    let ok = phone
        .expect(WAIT, |m| m.cseq_method() == Some("BYE"))
        .expect("200 to the phone's BYE");
    assert_eq!(ok.status(), Some(200));
    assert_eq!(
        server.wait_metric(
            "careline_outbound_calls_total{outcome=\"answered\"}",
            1.0,
            WAIT
        ),
        1.0
    );
}

#[test]
fn a_placed_call_rings_the_phone_runs_the_flow_and_hears_its_keys() {
    let mut phone = Ua::udp("127.0.0.1:9".parse().unwrap());
    let server = server_calling(&phone, "");
    phone.server = server.sip;
    let token = server.user_token("nurse", "clinician");

    let r = place(
        &server,
        &token,
        json!({"to": "+1 (555) 010-0199", "flow": "demo-menu", "attributes": {"reason": "follow-up"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let call_id = r.json()["call_id"].as_str().unwrap().to_string();
    assert!(
        !r.body.contains("555"),
        "the number is not echoed: {}",
        r.body
    );

    let mut callee = Callee::ring(&mut phone, WAIT).expect("Careline's INVITE reaches the phone");
    let invite = &callee.invite;
    assert_eq!(
        invite.start,
        format!("INVITE sip:+15550100199@{} SIP/2.0", phone.local),
        "the number, as dialed, at the trunk"
    );
    assert!(
        invite.header("from").unwrap().contains("sip:+15550000@"),
        "{invite:?}"
    );
    assert_eq!(invite.header("call-id"), Some(call_id.as_str()));
    let offer = invite.body_str();
    assert!(
        offer.contains("m=audio") && offer.contains("PCMU/8000"),
        "{offer}"
    );
    assert!(offer.contains("telephone-event/8000"), "{offer}");

    callee.respond(&mut phone, 180, "Ringing", None);
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    peer.set_remote(sdp_media_addr(&offer).expect("Careline's media address"));
    let answer = sdp_offer(peer.port, "0 101", &PCMU_TE);
    callee.respond(&mut phone, 200, "OK", Some(&answer));
    let ack = phone
        .expect(WAIT, |m| m.method() == Some("ACK"))
        .expect("the answer is acknowledged");
    assert_eq!(ack.header("call-id"), Some(call_id.as_str()));

    // The patient hears the flow from the start, and their key is understood.
    let (heard, _) = wait_for_prompt(&peer, Codec::Pcmu, "en", "welcome", 0, Some(2000));
    let pressed_at = heard.len() as u64 / 8;
    peer.send_event('5', 100);
    wait_for_prompt(&peer, Codec::Pcmu, "en", "digit-5", pressed_at, None);

    hang_up_answered(&mut phone, &mut callee, &server);
    assert_eq!(server.metric("careline_calls_active"), 0.0);
    let log = server.log();
    assert!(!log.contains("0100199"), "the number stays out of the log");

    // The placement is in the audit trail, with who asked and the call, not the number.
    let auditor = server.user_token("audit", "auditor");
    let trail = request(
        server.http,
        "GET",
        "/api/v1/audit?user=nurse",
        &[("Authorization", &format!("Bearer {auditor}"))],
        None,
    );
    assert_eq!(trail.status, 200, "{}", trail.body);
    assert!(
        trail.body.contains(&call_id) && trail.body.contains("nurse"),
        "{}",
        trail.body
    );
    assert!(!trail.body.contains("0100199"), "{}", trail.body);
}

#[test]
fn a_busy_phone_and_a_phone_nobody_answers_end_the_call_with_their_cause() {
    let mut phone = Ua::udp("127.0.0.1:9".parse().unwrap());
    let server = server_calling(&phone, "ring_timeout_secs = 2");
    phone.server = server.sip;
    let token = server.user_token("nurse", "clinician");

    // Busy: 486.
    assert_eq!(place(&server, &token, json!({"to": "5550101"})).status, 201);
    let callee = Callee::ring(&mut phone, WAIT).expect("INVITE");
    callee.respond(&mut phone, 486, "Busy Here", None);
    phone
        .expect(WAIT, |m| m.method() == Some("ACK"))
        .expect("the refusal is acknowledged");
    assert_eq!(
        server.wait_metric("careline_outbound_calls_total{outcome=\"busy\"}", 1.0, WAIT),
        1.0
    );

    // Ringing with nobody there: Careline cancels after ring_timeout_secs.
    assert_eq!(place(&server, &token, json!({"to": "5550102"})).status, 201);
    let callee = Callee::ring(&mut phone, WAIT).expect("INVITE");
    callee.respond(&mut phone, 180, "Ringing", None);
    let cancel = phone
        .expect(WAIT, |m| m.method() == Some("CANCEL"))
        .expect("Careline gives up with CANCEL");
    assert_eq!(cancel.header("call-id"), callee.invite.header("call-id"));
    phone.respond(&cancel, 200, "OK");
    callee.respond(&mut phone, 487, "Request Terminated", None);
    assert_eq!(
        server.wait_metric(
            "careline_outbound_calls_total{outcome=\"no_answer\"}",
            1.0,
            WAIT
        ),
        1.0
    );
    assert_eq!(
        server.metric("careline_outbound_calls_total{outcome=\"answered\"}"),
        0.0
    );
}

#[test]
fn calls_that_cannot_be_placed_are_refused_with_the_reason() {
    let phone = Ua::udp("127.0.0.1:9".parse().unwrap());
    let server = server_calling(&phone, "");
    let token = server.user_token("nurse", "clinician");
    for (body, status, says) in [
        (json!({"to": "call me maybe"}), 422, "not a phone number"),
        (
            json!({"to": "5550100", "flow": "no-such-flow"}),
            422,
            "no-such-flow",
        ),
        (
            json!({"to": "5550100", "trunk": "other"}),
            422,
            "no trunk named `other`",
        ),
        (json!({"number": "5550100"}), 422, "unknown field `number`"),
    ] {
        let r = place(&server, &token, body.clone());
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(r.body.contains(says), "{body}: {}", r.body);
    }
    // An auditor may not place calls.
    let auditor = server.user_token("audit", "auditor");
    assert_eq!(
        place(&server, &auditor, json!({"to": "5550100"})).status,
        403
    );
}

#[test]
fn a_trunk_that_asks_for_a_password_gets_the_one_from_the_environment() {
    let mut phone = Ua::udp("127.0.0.1:9".parse().unwrap());
    let server = TestServer::start_with(Options {
        toml: format!(
            "[sip.trunks.carrier]\nproxy = \"sip:{}\"\nusername = \"clinic\"\n\
             password_env = \"CARRIER_SIP_PASSWORD\"\n",
            phone.local
        ),
        env: vec![("CARRIER_SIP_PASSWORD".into(), "correct horse".into())],
        ..Options::default()
    });
    phone.server = server.sip;
    let token = server.user_token("nurse", "clinician");
    assert_eq!(place(&server, &token, json!({"to": "5550103"})).status, 201);

    let first = Callee::ring(&mut phone, WAIT).expect("INVITE");
    assert_eq!(first.invite.header("proxy-authorization"), None);
    let mut challenge = format!(
        "SIP/2.0 407 Proxy Authentication Required\r\n{}Proxy-Authenticate: Digest \
         realm=\"carrier\", nonce=\"n0nce42\", algorithm=MD5, qop=\"auth\"\r\nContent-Length: 0\r\n\r\n",
        ["via", "from", "to", "call-id", "cseq"]
            .iter()
            .flat_map(|h| first.invite.headers_all(h).into_iter().map(move |v| (h, v)))
            .map(|(h, v)| format!("{h}: {v}\r\n"))
            .collect::<String>()
    );
    challenge = challenge.replacen(
        &format!("to: {}", first.invite.header("to").unwrap()),
        &format!("to: {};tag=chal1", first.invite.header("to").unwrap()),
        1,
    );
    phone.send(&challenge);
    let second = Callee::ring(&mut phone, WAIT).expect("the INVITE again, with credentials");
    let auth = second
        .invite
        .header("proxy-authorization")
        .expect("Proxy-Authorization");
    let creds = careline::sip::digest::Credentials::parse(auth).expect("a digest answer");
    assert_eq!(creds.username, "clinic");
    assert!(creds.verify("correct horse", "INVITE"), "{auth}");
    assert!(!creds.verify("wrong", "INVITE"));
    second.respond(&mut phone, 486, "Busy Here", None);
    assert_eq!(
        server.wait_metric("careline_outbound_calls_total{outcome=\"busy\"}", 1.0, WAIT),
        1.0
    );
    assert!(
        !server.log().contains("correct horse"),
        "the password stays out of the log"
    );
}

/// Runs `careline serve` in a folder holding `toml`; the start must fail: its exit code and
/// what it printed (a start that does not fail within a minute is killed and reported).
fn failed_start(toml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("careline.toml"), toml).unwrap();
    let mut child = support::server::careline_command()
        .args([
            "serve",
            "--no-tls",
            "--sip-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .current_dir(dir.path())
        .env_remove("CARRIER_SIP_PASSWORD")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run careline");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("careline started with {toml:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

#[test]
fn a_trunk_that_cannot_be_used_stops_the_start_naming_what_is_wrong() {
    let text = failed_start(
        "[sip.trunks.carrier]\nproxy = \"sip:127.0.0.1:5070\"\nusername = \"clinic\"\n\
         password_env = \"CARRIER_SIP_PASSWORD\"\n",
    );
    assert!(
        text.contains(
            "sip.trunks.carrier.password_env names CARRIER_SIP_PASSWORD, which is not set"
        ),
        "{text}"
    );
    let text = failed_start("[sip.trunks.carrier]\nproxy = \"carrier.example.net\"\n");
    assert!(
        text.contains("sip.trunks.carrier.proxy must start sip: or sips:"),
        "{text}"
    );
}

// --- A workflow calls the patient (the CallPatient task) -------------------------------------

/// One Task, as the brief's DayOneFollowup calls: CallPatient with a message.
const CALL_ONLY: &str = r#"{"StartAt": "DayOne", "States": {"DayOne": {"Type": "Task",
  "Resource": "arn:aws:lambda:ap-northeast-1:123456789012:function:CallPatient",
  "Parameters": {"patient_id.$": "$.patient_id", "message": "This is your clinic calling after your discharge.",
    "contact_type": "phone"},
  "End": true}}}"#;

#[test]
fn a_workflow_calls_the_patient_at_the_number_on_record_and_keeps_their_answer() {
    let mut phone = Ua::udp("127.0.0.1:9".parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("follow-up.asl.json"), CALL_ONLY).unwrap();
    let patient = json!({"resourceType": "Patient", "id": "p-call",
            "name": [{"family": "Tester", "given": ["Pat"]}],
            "telecom": [{"system": "phone", "use": "home", "value": "555-010-0177"},
                        {"system": "phone", "use": "mobile", "value": "(555) 010-0199"}]});
    let server = TestServer::start_with(Options {
        toml: format!(
            "[sip.trunks.carrier]\nproxy = \"sip:{}\"\n[workflows]\ndir = \"{}\"\n\
             [workflows.call_patient]\nhours = \"00:00-24:00\"\n",
            phone.local,
            dir.path().display()
        ),
        ..Options::default()
    });
    phone.server = server.sip;
    import_patient(&server, patient);
    let nurse = format!("Bearer {}", server.user_token("nurse", "clinician"));
    let api = |method: &str, path: &str, body: Option<&str>| {
        request(
            server.http,
            method,
            path,
            &[("Authorization", nurse.as_str())],
            body.map(|b| ("application/json", b.as_bytes())),
        )
    };
    let r = api(
        "POST",
        "/api/v1/workflows/follow-up/executions",
        Some(r#"{"patient_id": "p-call"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let location = r.header("location").expect("Location").to_string();

    let callee = Callee::ring(&mut phone, WAIT).expect("the workflow calls the patient");
    assert_eq!(
        callee.invite.start,
        format!("INVITE sip:5550100199@{} SIP/2.0", phone.local),
        "the mobile number on record"
    );
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    peer.set_remote(sdp_media_addr(&callee.invite.body_str()).expect("media address"));
    callee.respond(
        &mut phone,
        200,
        "OK",
        Some(&sdp_offer(peer.port, "0 101", &PCMU_TE)),
    );
    phone
        .expect(WAIT, |m| m.method() == Some("ACK"))
        .expect("ACK");
    // The message and the question are spoken; the patient presses 2 (new symptoms).
    support::audio::wait_heard_ms(&peer, 3000);
    peer.send_event('2', 100);
    let bye = phone
        .expect(Duration::from_secs(60), |m| m.method() == Some("BYE"))
        .expect("Careline hangs up after its answer");
    phone.respond(&bye, 200, "OK");

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let execution = loop {
        let e = api("GET", &location, None).json();
        if e["status"] != "RUNNING" || std::time::Instant::now() > deadline {
            break e;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
    let call = &execution["outcome"]["call"];
    assert_eq!(call["outcome"], "answered", "{execution}");
    assert_eq!(call["answers"]["wellbeing"], "unwell", "{execution}");
    // The patient was told a nurse would call back: the care team's work list says so.
    assert!(call["care_task"].is_string(), "{execution}");
    let list = api("GET", "/api/v1/care-tasks?patient=p-call", None).json();
    let items = list["care_tasks"].as_array().expect("a list");
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["urgency"], "MEDIUM");
    assert_eq!(items[0]["detail"]["request"], "patient_call_follow_up");
    assert_eq!(execution["outcome"]["patient_id"], "p-call");
    assert_eq!(
        server.metric("careline_care_first_contact_seconds_count"),
        1.0,
        "the first successful contact of the execution is timed"
    );
    assert_eq!(
        server.metric("careline_outbound_calls_total{outcome=\"answered\"}"),
        1.0
    );
}

/// Imports `patient` (a FHIR Patient resource) into the server's store, as a clinic would
/// (`careline patient import` of a Bundle).
fn import_patient(server: &TestServer, patient: serde_json::Value) {
    let records = tempfile::tempdir().unwrap();
    let bundle = records.path().join("patient.json");
    let bundle_json = json!({"resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": patient}]});
    std::fs::write(&bundle, bundle_json.to_string()).unwrap();
    let out = server.cli(&["patient", "import", bundle.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The environment that preloads libfaketime into the server, its offset read from `offset`
/// at every call (no cache), the monotonic clock left real (timers and the media clock run as
/// always).
fn faketime_env(offset: &std::path::Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), FAKETIME.into()),
        (
            "FAKETIME_TIMESTAMP_FILE".into(),
            offset.display().to_string(),
        ),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ]
}

/// A UDP port that was free a moment ago.
fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("local address").port()
}

/// SIPp's built-in UAS (`-sn uas`) as the patient's phone: it answers one call (180, 200 with
/// SDP), takes the ACK, and waits for Careline's BYE; it exits 0 when that one call succeeded.
struct SippPhone {
    child: std::process::Child,
    port: u16,
    logs: tempfile::TempDir,
}

impl SippPhone {
    fn start() -> SippPhone {
        let logs = tempfile::tempdir().unwrap();
        let port = free_udp_port();
        let control = loop {
            let p = free_udp_port();
            if p != port && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
                break p;
            }
        };
        let child = std::process::Command::new("sipp")
            .current_dir(logs.path())
            .args(["-sn", "uas", "-i", "127.0.0.1", "-t", "u1", "-m", "1"])
            .args(["-p", &port.to_string(), "-cp", &control.to_string()])
            .args(["-mp", &free_udp_port().to_string()])
            .args([
                "-nostdin",
                "-timeout",
                "90s",
                "-timeout_error",
                "-trace_err",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sipp (apt-get install sip-tester) runs");
        // Listening once its port is taken.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            assert!(std::time::Instant::now() < deadline, "sipp never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        SippPhone { child, port, logs }
    }

    /// Waits for SIPp to finish: whether its one call succeeded, and its error log.
    fn finish(mut self) -> (bool, String) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                break self.child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut errors = String::new();
        for e in std::fs::read_dir(self.logs.path()).unwrap().flatten() {
            errors += &std::fs::read_to_string(e.path()).unwrap_or_default();
        }
        (status.success(), errors)
    }
}

#[test]
fn sipp_as_the_patient_s_phone_answers_the_workflow_s_call_and_hangs_up_on_its_bye() {
    let sipp = SippPhone::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("follow-up.asl.json"), CALL_ONLY).unwrap();
    let patient = json!({"resourceType": "Patient", "id": "p-sipp",
            "telecom": [{"system": "phone", "use": "mobile", "value": "555-010-0142"}]});
    let server = TestServer::start_with(Options {
        toml: format!(
            // SIPp's built-in UAS sends no audio: no RTP time-out for this call.
            "[rtp]\ntimeout_secs = 0\n[sip.trunks.carrier]\nproxy = \"sip:127.0.0.1:{}\"\n\
             [workflows]\ndir = \"{}\"\n[workflows.call_patient]\nhours = \"00:00-24:00\"\n",
            sipp.port,
            dir.path().display()
        ),
        ..Options::default()
    });
    import_patient(&server, patient);
    let nurse = format!("Bearer {}", server.user_token("nurse", "clinician"));
    let r = request(
        server.http,
        "POST",
        "/api/v1/workflows/follow-up/executions",
        &[("Authorization", nurse.as_str())],
        Some(("application/json", br#"{"patient_id": "p-sipp"}"#)),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let location = r.header("location").expect("Location").to_string();

    // SIPp presses nothing: the flow asks twice, says the care team will follow up, hangs up.
    let (ok, errors) = sipp.finish();
    assert!(
        ok,
        "SIPp's call did not succeed:\n{errors}\n{}",
        server.log()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let execution = loop {
        let e = request(
            server.http,
            "GET",
            &location,
            &[("Authorization", nurse.as_str())],
            None,
        )
        .json();
        if e["status"] != "RUNNING" || std::time::Instant::now() > deadline {
            break e;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
    assert_eq!(execution["outcome"]["call"]["outcome"], "answered");
    assert_eq!(
        execution["outcome"]["call"]["answers"]["wellbeing"], "no_response",
        "{execution}"
    );
    assert_eq!(
        server.metric("careline_calls_ended_total{cause=\"server_bye\"}"),
        1.0,
        "Careline hung up once the flow was done"
    );
}

#[test]
fn a_placed_call_can_be_followed_and_hung_up_over_the_api() {
    let mut phone = Ua::udp("127.0.0.1:9".parse().unwrap());
    let server = server_calling(&phone, "");
    phone.server = server.sip;
    let token = server.user_token("nurse", "clinician");
    let auth = format!("Bearer {token}");
    let get = |id: &str| {
        request(
            server.http,
            "GET",
            &format!("/api/v1/calls/{id}"),
            &[("Authorization", &auth)],
            None,
        )
    };
    let r = place(
        &server,
        &token,
        json!({"to": "5550104", "flow": "demo-menu"}),
    );
    let id = r.json()["call_id"].as_str().unwrap().to_string();
    let callee = Callee::ring(&mut phone, WAIT).expect("INVITE");
    callee.respond(&mut phone, 180, "Ringing", None);
    let deadline = std::time::Instant::now() + WAIT;
    while get(&id).json()["state"] != "ringing" {
        assert!(std::time::Instant::now() < deadline, "{}", get(&id).body);
        std::thread::sleep(Duration::from_millis(50));
    }
    // Hung up while it rings: CANCEL.
    let r = request(
        server.http,
        "DELETE",
        &format!("/api/v1/calls/{id}"),
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let cancel = phone
        .expect(WAIT, |m| m.method() == Some("CANCEL"))
        .expect("CANCEL");
    phone.respond(&cancel, 200, "OK");
    callee.respond(&mut phone, 487, "Request Terminated", None);
    let deadline = std::time::Instant::now() + WAIT;
    let view = loop {
        let v = get(&id).json();
        if v["state"] == "ended" || std::time::Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(view["state"], "ended", "{view}");
    assert_eq!(view["cause"], "api_hangup", "{view}");
    assert!(!view.to_string().contains("5550104"), "{view}");
    assert_eq!(get("out-0000").status, 404);
    let again = request(
        server.http,
        "DELETE",
        &format!("/api/v1/calls/{id}"),
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(again.status, 404, "over: nothing to hang up");
}

#[test]
fn a_call_still_ringing_when_careline_stops_is_cancelled_at_the_end_of_the_grace() {
    let mut phone = Ua::udp("127.0.0.1:9".parse().unwrap());
    let mut server = TestServer::start_with(Options {
        toml: format!(
            "[calls]\ndrain_grace_secs = 1\n[sip.trunks.carrier]\nproxy = \"sip:{}\"\n",
            phone.local
        ),
        ..Options::default()
    });
    phone.server = server.sip;
    let token = server.user_token("nurse", "clinician");
    assert_eq!(place(&server, &token, json!({"to": "5550105"})).status, 201);
    let callee = Callee::ring(&mut phone, WAIT).expect("INVITE");
    callee.respond(&mut phone, 180, "Ringing", None);
    server.signal("TERM");
    let cancel = phone
        .expect(WAIT, |m| m.method() == Some("CANCEL"))
        .expect("the ringing call is cancelled, not left ringing");
    phone.respond(&cancel, 200, "OK");
    callee.respond(&mut phone, 487, "Request Terminated", None);
    let status = server.wait_exit(WAIT).expect("careline stops");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_trunk_over_tcp_gets_the_call_on_a_connection_careline_opens() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let trunk = listener.local_addr().unwrap();
    let server = TestServer::start_with(Options {
        toml: format!("[sip.trunks.carrier]\nproxy = \"sip:{trunk};transport=tcp\"\n"),
        ..Options::default()
    });
    let token = server.user_token("nurse", "clinician");
    assert_eq!(
        place(
            &server,
            &token,
            json!({"to": "5550106", "flow": "demo-menu"})
        )
        .status,
        201
    );
    listener.set_nonblocking(false).unwrap();
    let (stream, _) = listener.accept().expect("Careline connects to the trunk");
    let mut phone = Ua::tcp_accepted(stream);
    let mut callee = Callee::ring(&mut phone, WAIT).expect("the INVITE over TCP");
    let via = callee
        .invite
        .header("via")
        .unwrap_or_default()
        .to_ascii_uppercase();
    assert!(via.starts_with("SIP/2.0/TCP"), "{via}");
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    peer.set_remote(sdp_media_addr(&callee.invite.body_str()).expect("media address"));
    callee.respond(
        &mut phone,
        200,
        "OK",
        Some(&sdp_offer(peer.port, "0 101", &PCMU_TE)),
    );
    phone
        .expect(WAIT, |m| m.method() == Some("ACK"))
        .expect("ACK on the connection");
    wait_for_prompt(&peer, Codec::Pcmu, "en", "welcome", 0, Some(2000));
    hang_up_answered(&mut phone, &mut callee, &server);
}

/// A server with one patient (`p-amd`, English) whose trunk leads to `phone`, running
/// CALL_ONLY, with `answering_machine` as `[workflows.call_patient]` sets it; the nurse's
/// token and the started execution's location.
fn screening_server(phone: &mut Ua, answering_machine: &str) -> (TestServer, String, String) {
    screening_server_with(phone, answering_machine, "")
}

/// [`screening_server`] with `extra` settings appended to its configuration.
fn screening_server_with(
    phone: &mut Ua,
    answering_machine: &str,
    extra: &str,
) -> (TestServer, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("follow-up.asl.json"), CALL_ONLY).unwrap();
    let patient = json!({"resourceType": "Patient", "id": "p-amd",
            "telecom": [{"system": "phone", "use": "mobile", "value": "555-010-0111"}]});
    let server = TestServer::start_with(Options {
        toml: format!(
            "[sip.trunks.carrier]\nproxy = \"sip:{}\"\n[workflows]\ndir = \"{}\"\n\
             [workflows.call_patient]\nhours = \"00:00-24:00\"\nanswering_machine = \"{answering_machine}\"\n{extra}",
            phone.local,
            dir.path().display()
        ),
        ..Options::default()
    });
    phone.server = server.sip;
    import_patient(&server, patient);
    let nurse = format!("Bearer {}", server.user_token("nurse", "clinician"));
    let r = request(
        server.http,
        "POST",
        "/api/v1/workflows/follow-up/executions",
        &[("Authorization", nurse.as_str())],
        Some(("application/json", br#"{"patient_id": "p-amd"}"#)),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let location = r.header("location").expect("Location").to_string();
    // The definition is read at start: its file is not needed any more.
    drop(dir);
    (server, nurse, location)
}

fn ended_execution(server: &TestServer, nurse: &str, location: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let e = request(
            server.http,
            "GET",
            location,
            &[("Authorization", nurse)],
            None,
        )
        .json();
        if e["status"] != "RUNNING" || std::time::Instant::now() > deadline {
            return e;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The task failed for Retry as `CallPatient.AnsweringMachine`, saying a message was left.
fn message_left(server: &TestServer, nurse: &str, location: &str) {
    let execution = ended_execution(server, nurse, location);
    assert_eq!(execution["status"], "FAILED", "{execution}");
    assert_eq!(
        execution["outcome"]["error"], "CallPatient.AnsweringMachine",
        "{execution}"
    );
    assert!(
        execution["outcome"]["cause"]
            .as_str()
            .is_some_and(|c| c.contains("a message asking the patient to call back was left")),
        "{execution}"
    );
}

/// The loudest sample of `pcm[from_ms..to_ms]`.
fn peak(pcm: &[i16], from_ms: usize, to_ms: usize) -> i32 {
    pcm[(from_ms * 8).min(pcm.len())..(to_ms * 8).min(pcm.len())]
        .iter()
        .map(|s| i32::from(*s).abs())
        .max()
        .unwrap_or(0)
}

/// A voicemail picks up and plays its greeting (eight seconds of speech): Careline says
/// nothing over it, waits for it to end, leaves a request to call back, hangs up, and the
/// task fails with `CallPatient.AnsweringMachine` so that a Retry can call again.
#[test]
fn a_voicemail_hears_no_questions_only_a_request_to_call_back_after_its_greeting() {
    let mut phone = Ua::udp("127.0.0.1:9".parse().unwrap());
    let (server, nurse, location) = screening_server(&mut phone, "leave_message");
    let (_callee, peer) = pick_up(&mut phone, WAIT);
    let greeting = support::server::prompt_pcm("en", "welcome");
    let greeting_ms = greeting.len() / 8;
    peer.send_audio(greeting);
    let bye = phone
        .expect(Duration::from_secs(60), |m| m.method() == Some("BYE"))
        .expect("Careline hangs up after its message");
    phone.respond(&bye, 200, "OK");

    let heard = peer.heard();
    assert!(
        peak(&heard, 0, greeting_ms) < 100,
        "silence while the greeting plays (peak {})",
        peak(&heard, 0, greeting_ms)
    );
    assert!(
        peak(&heard, greeting_ms + 1000, heard.len() / 8) > 2000,
        "a message after the greeting ({} ms heard, greeting {greeting_ms} ms)",
        heard.len() / 8
    );
    message_left(&server, &nurse, &location);
    assert_eq!(
        server.metric("careline_answered_by_total{verdict=\"machine\"}"),
        1.0
    );
    assert_eq!(
        server.metric("careline_voicemail_greetings_total{ended=\"silence\"}"),
        1.0,
        "no beep: the silence after the greeting ended it"
    );
}

/// A voicemail whose greeting ends with a beep: the message is left as the beep stops (the
/// flow takes VoicemailBeep), not a second of silence later.
#[test]
fn a_voicemail_that_beeps_gets_its_message_as_the_beep_stops() {
    let mut phone = Ua::udp("127.0.0.1:9".parse().unwrap());
    let (server, nurse, location) = screening_server(&mut phone, "leave_message");
    let (_callee, peer) = pick_up(&mut phone, WAIT);
    let mut greeting = support::server::prompt_pcm("en", "welcome");
    greeting.extend(std::iter::repeat_n(0i16, 8 * 300));
    greeting.extend((0..8 * 500).map(|i| {
        ((i as f32 * 2.0 * std::f32::consts::PI * 1000.0 / 8000.0).sin() * 8000.0) as i16
    }));
    peer.send_audio(greeting);
    let bye = phone
        .expect(Duration::from_secs(60), |m| m.method() == Some("BYE"))
        .expect("Careline hangs up after its message");
    phone.respond(&bye, 200, "OK");
    assert_eq!(
        server.metric("careline_voicemail_greetings_total{ended=\"beep\"}"),
        1.0,
        "the greeting's end was told by its beep"
    );
    message_left(&server, &nurse, &location);
}

/// The detector's limits are the operator's: with `[calls.amd] maximum_word_ms = 300`, the
/// half-second "hello" that passes for a person by default is one word too long, so the
/// call is taken for a machine and hung up without a word.
#[test]
fn calls_amd_settings_reach_the_detector() {
    let mut phone = Ua::udp("127.0.0.1:9".parse().unwrap());
    let (server, nurse, location) = screening_server_with(
        &mut phone,
        "hang_up",
        "[calls.amd]\nmaximum_word_ms = 300\n",
    );
    let (_callee, peer) = pick_up(&mut phone, WAIT);
    let mut hello = support::server::prompt_pcm("en", "digit-1");
    hello.truncate(8 * 500);
    peer.send_audio(hello);
    let bye = phone
        .expect(Duration::from_secs(30), |m| m.method() == Some("BYE"))
        .expect("Careline hangs up on what it takes for a machine");
    phone.respond(&bye, 200, "OK");
    let heard = peer.heard();
    assert!(
        peak(&heard, 0, heard.len() / 8) < 100,
        "nothing said to a machine"
    );
    let execution = ended_execution(&server, &nurse, &location);
    assert_eq!(
        execution["outcome"]["error"], "CallPatient.AnsweringMachine",
        "{execution}"
    );
    assert_eq!(
        server.metric("careline_answered_by_total{verdict=\"machine\"}"),
        1.0
    );
}

/// A person picks up and says "hello" (half a second), then waits: the questions follow at
/// once, and their key is the answer as without detection.
#[test]
fn a_person_who_says_hello_hears_the_questions_when_machines_are_screened_out() {
    let mut phone = Ua::udp("127.0.0.1:9".parse().unwrap());
    let (server, nurse, location) = screening_server(&mut phone, "hang_up");
    let (_callee, peer) = pick_up(&mut phone, WAIT);
    let mut hello = support::server::prompt_pcm("en", "digit-1");
    hello.truncate(8 * 500);
    peer.send_audio(hello);
    support::audio::wait_heard_ms(&peer, 4000);
    let heard = peer.heard();
    assert!(
        peak(&heard, 2200, 4000) > 2000,
        "the question within a second of the person's silence"
    );
    peer.send_event('1', 100);
    let bye = phone
        .expect(Duration::from_secs(60), |m| m.method() == Some("BYE"))
        .expect("Careline hangs up after the answer");
    phone.respond(&bye, 200, "OK");
    let execution = ended_execution(&server, &nurse, &location);
    assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
    assert_eq!(
        execution["outcome"]["call"]["answers"]["wellbeing"], "good",
        "{execution}"
    );
    assert!(
        execution["outcome"]["call"]["answers"]
            .get("answered_by")
            .is_none(),
        "{execution}"
    );
    assert_eq!(
        server.metric("careline_answered_by_total{verdict=\"person\"}"),
        1.0
    );
}

/// libfaketime (Debian `libfaketime`), preloaded into the server so that a test can move its
/// wall clock on: `FAKETIME_TIMESTAMP_FILE` is read at every call (no cache), and the
/// monotonic clock stays real so that timers and the media clock run as always.
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// The brief's discharge follow-up end to end, in its corrected form (shipped as
/// `discharge-follow-up-corrected`), with every task answered by Careline itself: day one, the
/// patient's phone (SIPp) is called and answers; the refills due are listed; two days are
/// waited (on the server's clock, moved on two days by libfaketime rather than slept); a
/// telehealth consultation is booked; the risk is assessed from the reported vitals and
/// symptoms, HIGH; the physician gets the patient on their work list; the case closes.
#[test]
fn the_brief_s_discharge_follow_up_runs_end_to_end_on_careline_s_own_tasks() {
    assert!(
        std::path::Path::new(FAKETIME).exists(),
        "libfaketime is missing (apt-get install libfaketime; scripts/test installs it)"
    );
    let sipp = SippPhone::start();
    let clock = tempfile::tempdir().unwrap();
    let offset = clock.path().join("offset");
    std::fs::write(&offset, "+0\n").unwrap();
    let patient = json!({"resourceType": "Patient", "id": "p-brief",
            "name": [{"family": "Yamada", "given": ["Hanako"]}],
            "communication": [{"language": {"coding": [{"code": "ja"}]}, "preferred": true}],
            "telecom": [{"system": "phone", "use": "mobile", "value": "555-010-0123"}]});
    let server = TestServer::start_with(Options {
        toml: format!(
            "[rtp]\ntimeout_secs = 0\n[sip.trunks.carrier]\nproxy = \"sip:127.0.0.1:{}\"\n\
             [workflows.call_patient]\nhours = \"00:00-24:00\"\n",
            sipp.port
        ),
        env: faketime_env(&offset),
        ..Options::default()
    });
    import_patient(&server, patient);
    let nurse = format!("Bearer {}", server.user_token("nurse", "clinician"));
    let api = |method: &str, path: &str, body: Option<&str>| {
        request(
            server.http,
            method,
            path,
            &[("Authorization", nurse.as_str())],
            body.map(|b| ("application/json", b.as_bytes())),
        )
    };
    let refill = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .checked_add(jiff::Span::new().days(3))
        .unwrap();
    let input = json!({
        "patient_id": "p-brief",
        "medications": [{"name": "metformin", "dose": "500mg", "refill_date": refill.to_string()}],
        "primary_care_physician_id": "dr-7",
        "vitals": {"bp": "186/100"},
        "reported_symptoms": ["chest pain"],
    });
    let r = api(
        "POST",
        "/api/v1/workflows/discharge-follow-up-corrected/executions",
        Some(&input.to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let location = r.header("location").expect("Location").to_string();

    // Day one: the patient's phone rings and answers (SIPp presses nothing).
    let (ok, errors) = sipp.finish();
    assert!(
        ok,
        "SIPp's call did not succeed:\n{errors}\n{}",
        server.log()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let waiting = loop {
        let e = api("GET", &location, None).json();
        if e["state"] == "WaitForDay3" || e["status"] != "RUNNING" {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "never waits: {e}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(waiting["status"], "RUNNING", "{waiting}");
    let wakes: jiff::Timestamp = waiting["wakes"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("the wait's timer is shown: {waiting}"));
    let left = wakes.as_second() - jiff::Timestamp::now().as_second();
    assert!(
        (2 * 86_400 - 120..=2 * 86_400).contains(&left),
        "two days from now: {left} s"
    );
    // Two days later, on the server's clock.
    std::fs::write(&offset, "+2d\n").unwrap();
    let execution = ended_execution(&server, &nurse, &location);
    assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
    let outcome = &execution["outcome"];
    assert_eq!(
        outcome["day_one"]["call"]["outcome"], "answered",
        "{outcome}"
    );
    assert_eq!(
        outcome["refills"]["refills_due"][0]["name"], "metformin",
        "{outcome}"
    );
    assert!(
        outcome["consultation"].is_object() && !outcome["consultation"].is_null(),
        "{outcome}"
    );
    assert_eq!(outcome["risk"]["risk_level"], "HIGH", "{outcome}");
    assert!(outcome.get("error").is_none(), "{outcome}");
    let kinds: Vec<&str> = execution["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| {
            h["state"]
                .as_str()
                .filter(|_| h["kind"] == "TaskStateEntered")
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "DayOneFollowup",
            "CheckMedicationAdherence",
            "Day3Assessment",
            "AssessRisks",
            "EscalateToPhysician"
        ],
        "{execution}"
    );
    let list = api("GET", "/api/v1/care-tasks?patient=p-brief", None).json();
    let physician: Vec<&serde_json::Value> = list["care_tasks"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|i| i["kind"] == "physician")
        .collect();
    assert_eq!(physician.len(), 1, "{list}");
    assert_eq!(physician[0]["urgency"], "HIGH");
}

/// The brief's other path: the patient's line is busy at every call. The day-one state's
/// Retry calls three more times (its back-offs of 60, 120 and 240 s pass on the server's
/// clock, moved on by libfaketime), but the fourth call would be the patient's fourth that
/// day (`max_calls_per_day = 3`): it waits for the next day rather than ring again. Then the
/// Catch tells the care team the patient could not be reached, with the patient's data kept
/// beside the error, and the case closes.
#[test]
fn a_patient_never_reached_is_called_three_times_a_day_then_the_care_team_is_told() {
    let mut phone = Ua::udp("127.0.0.1:9".parse().unwrap());
    let clock = tempfile::tempdir().unwrap();
    let offset = clock.path().join("offset");
    std::fs::write(&offset, "+0\n").unwrap();
    let patient = json!({"resourceType": "Patient", "id": "p-busy",
            "telecom": [{"system": "phone", "use": "home", "value": "555-010-0155"}]});
    let server = TestServer::start_with(Options {
        toml: format!(
            "[sip.trunks.carrier]\nproxy = \"sip:{}\"\n\
             [workflows.call_patient]\nhours = \"00:00-24:00\"\nmax_calls_per_day = 3\n",
            phone.local
        ),
        env: faketime_env(&offset),
        ..Options::default()
    });
    phone.server = server.sip;
    import_patient(&server, patient);
    let nurse = format!("Bearer {}", server.user_token("nurse", "clinician"));
    let input = json!({"patient_id": "p-busy", "medications": [], "primary_care_physician_id": "dr-7",
        "vitals": {}, "reported_symptoms": []});
    let r = request(
        server.http,
        "POST",
        "/api/v1/workflows/discharge-follow-up-corrected/executions",
        &[("Authorization", nurse.as_str())],
        Some(("application/json", input.to_string().as_bytes())),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let location = r.header("location").expect("Location").to_string();
    let busy = |phone: &mut Ua| {
        let callee = Callee::ring(phone, Duration::from_secs(30)).expect("the patient is called");
        callee.respond(phone, 486, "Busy Here", None);
        phone
            .expect(WAIT, |m| m.method() == Some("ACK"))
            .expect("the refusal is acknowledged");
    };
    // Day one: the first call, then each retry once its back-off has passed on the clock.
    busy(&mut phone);
    for offset_now in ["+70s", "+200s"] {
        assert!(
            phone.recv(Duration::from_secs(3)).is_none(),
            "no call before the back-off has passed"
        );
        std::fs::write(&offset, format!("{offset_now}\n")).unwrap();
        busy(&mut phone);
    }
    // The third retry's back-off passes, but that would be a fourth call today.
    std::fs::write(&offset, "+450s\n").unwrap();
    assert!(
        phone.recv(Duration::from_secs(12)).is_none(),
        "a fourth call the same day waits"
    );
    // The next day, it goes out.
    std::fs::write(&offset, "+1d\n").unwrap();
    busy(&mut phone);
    let execution = ended_execution(&server, &nurse, &location);
    assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
    let outcome = &execution["outcome"];
    assert_eq!(outcome["error"]["Error"], "CallPatient.Busy", "{outcome}");
    assert_eq!(outcome["patient_id"], "p-busy", "the data kept: {outcome}");
    assert!(outcome["care_team_told"].is_object(), "{outcome}");
    let list = request(
        server.http,
        "GET",
        "/api/v1/care-tasks?patient=p-busy",
        &[("Authorization", nurse.as_str())],
        None,
    )
    .json();
    assert_eq!(
        list["care_tasks"].as_array().map(Vec::len),
        Some(1),
        "the care team's work list: {list}"
    );
    assert_eq!(
        server.metric("careline_outbound_calls_total{outcome=\"busy\"}"),
        4.0,
        "four calls in all"
    );
}
