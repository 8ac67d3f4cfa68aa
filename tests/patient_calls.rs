//! Flows meet the patient store over real calls: GetCustomerProfile identifies the caller by
//! their number, the `careline:patient-lookup` built-in (reached through a Lambda ARN in the
//! resource map) verifies MRN and date of birth keyed in by RFC 4733, each lookup lands in the
//! audit trail, and the call's end appends a record to the patient's contact history.

mod support;

use std::time::{Duration, Instant};

use careline::media::codec::Codec;
use serde_json::{Value, json};
use support::audio::{expect_not_prompt, expect_prompt, let_call_run};
use support::http::{Response, request};
use support::rtp::RtpPeer;
use support::server::{Options, TestServer};
use support::sip::{Call, PCMU_TE, Ua, answered_call, sdp_media_addr, sdp_offer};

/// The test caller's From number (tests/support/sip.rs) is 15551230000.
const PATIENT: &str = "pat-careline-test-1";
const MRN: &str = "73519";

fn bundle() -> Value {
    json!({"resourceType": "Bundle", "type": "collection", "entry": [{
        "fullUrl": format!("urn:uuid:{PATIENT}"),
        "resource": {
            "resourceType": "Patient", "id": PATIENT,
            "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": MRN}],
            "name": [{"family": "Testcaller", "given": ["Quinn"]}],
            "telecom": [{"system": "phone", "value": "555-123-0000"}],
            "birthDate": "1980-01-15",
            "communication": [{"language": {"coding": [{"code": "ja"}]}}]
        }
    }]})
}

fn action(id: &str, ty: &str, params: Value, next: &str, errors: &[(&str, &str)]) -> Value {
    let errors: Vec<Value> = errors
        .iter()
        .map(|(e, n)| json!({"ErrorType": e, "NextAction": n}))
        .collect();
    json!({"Identifier": id, "Type": ty, "Parameters": params,
        "Transitions": {"NextAction": next, "Errors": errors}})
}

fn say(id: &str, prompt: &str, next: &str) -> Value {
    action(
        id,
        "MessageParticipant",
        json!({"PromptId": prompt}),
        next,
        &[("NoMatchingError", "bye")],
    )
}

fn bye() -> Value {
    json!({"Identifier": "bye", "Type": "DisconnectParticipant", "Parameters": {}, "Transitions": {}})
}

/// Number 300: who is calling? Known callers hear digit-1, unknown digit-2.
fn by_number_flow() -> Value {
    json!({"Version": "2019-10-30", "StartAction": "who", "Actions": [
        action("who", "GetCustomerProfile", json!({"ProfileRequestData": {
            "IdentifierName": "_phone", "IdentifierValue": "$.CustomerEndpoint.Address"}}),
            "why", &[("NoneFoundError", "unknown"), ("NoMatchingError", "unknown")]),
        action("why", "UpdateContactAttributes",
            json!({"Attributes": {"contact_reason": "medication refill"}}), "known",
            &[("NoMatchingError", "bye")]),
        say("known", "digit-1", "bye"),
        say("unknown", "digit-2", "bye"),
        bye(),
    ]})
}

/// Number 301: key the MRN, then the date of birth; the built-in checks both. Verified
/// callers hear digit-3, others digit-4.
fn mrn_flow() -> Value {
    let input = |id: &str, next: &str| {
        action(
            id,
            "GetParticipantInput",
            json!({"PromptId": "welcome", "StoreInput": "True", "MaxDigits": "8",
                "InputTimeLimitSeconds": "8", "InputTerminationSequence": "#"}),
            next,
            &[
                ("InputTimeLimitExceeded", "bye"),
                ("NoMatchingError", "bye"),
            ],
        )
    };
    json!({"Version": "2019-10-30", "StartAction": "ask-mrn", "Actions": [
        input("ask-mrn", "keep-mrn"),
        action("keep-mrn", "UpdateContactAttributes",
            json!({"Attributes": {"mrn": "$.StoredCustomerInput"}}), "ask-dob",
            &[("NoMatchingError", "bye")]),
        input("ask-dob", "check"),
        action("check", "InvokeLambdaFunction", json!({
            "LambdaFunctionARN": "<PATIENT_VERIFICATION_LAMBDA_ARN>",
            "InvocationTimeLimitSeconds": "5",
            "LambdaInvocationAttributes": {"mrn": "$.Attributes.mrn", "dob": "$.StoredCustomerInput"},
            "ResponseValidation": {"ResponseType": "STRING_MAP"}}),
            "verified?", &[("NoMatchingError", "bye")]),
        json!({"Identifier": "verified?", "Type": "Compare",
            "Parameters": {"ComparisonValue": "$.External.verified"},
            "Transitions": {"NextAction": "no", "Conditions": [
                {"NextAction": "yes", "Condition": {"Operator": "Equals", "Operands": ["true"]}}],
                "Errors": [{"ErrorType": "NoMatchingCondition", "NextAction": "no"}]}}),
        say("yes", "digit-3", "bye"),
        say("no", "digit-4", "bye"),
        bye(),
    ]})
}

fn server_hangs_up(ua: &mut Ua) {
    let bye = ua.expect(Duration::from_secs(20), |m| m.method() == Some("BYE"));
    let bye = bye.expect("the flow hangs up");
    ua.respond(&bye, 200, "OK");
}

/// Number 302: identify the caller, then wait for one key (the call stays up meanwhile).
fn identify_then_wait_flow() -> Value {
    json!({"Version": "2019-10-30", "StartAction": "who", "Actions": [
        action("who", "GetCustomerProfile", json!({"ProfileRequestData": {
            "IdentifierName": "_phone", "IdentifierValue": "$.CustomerEndpoint.Address"}}),
            "wait", &[("NoMatchingError", "bye")]),
        action("wait", "GetParticipantInput",
            json!({"PromptId": "welcome", "StoreInput": "True", "MaxDigits": "1",
                "InputTimeLimitSeconds": "20"}),
            "bye", &[("InputTimeLimitExceeded", "bye"), ("NoMatchingError", "bye")]),
        bye(),
    ]})
}

/// Number 303: identify the caller, then queue them for the nurses.
fn identify_then_queue_flow() -> Value {
    json!({"Version": "2019-10-30", "StartAction": "who", "Actions": [
        action("who", "GetCustomerProfile", json!({"ProfileRequestData": {
            "IdentifierName": "_phone", "IdentifierValue": "$.CustomerEndpoint.Address"}}),
            "target", &[("NoneFoundError", "target"), ("NoMatchingError", "target")]),
        action("target", "UpdateContactTargetQueue", json!({"QueueId": "nurses"}), "queue",
            &[("NoMatchingError", "bye")]),
        action("queue", "TransferContactToQueue", json!({}), "bye",
            &[("QueueAtCapacity", "bye"), ("NoMatchingError", "bye")]),
        bye(),
    ]})
}

/// Number 304: identify the caller, then keep a callback for the nurses and hang up.
fn identify_then_callback_flow() -> Value {
    json!({"Version": "2019-10-30", "StartAction": "who", "Actions": [
        action("who", "GetCustomerProfile", json!({"ProfileRequestData": {
            "IdentifierName": "_phone", "IdentifierValue": "$.CustomerEndpoint.Address"}}),
            "target", &[("NoneFoundError", "target"), ("NoMatchingError", "target")]),
        action("target", "UpdateContactTargetQueue", json!({"QueueId": "nurses"}), "callback",
            &[("NoMatchingError", "bye")]),
        action("callback", "CreateCallbackContact", json!({"InitialCallDelaySeconds": "1",
            "MaximumConnectionAttempts": "1", "RetryDelaySeconds": "60"}), "bye",
            &[("NoMatchingError", "bye")]),
        bye(),
    ]})
}

struct World {
    server: TestServer,
    _flows: tempfile::TempDir,
}

impl World {
    fn start() -> World {
        World::start_with("")
    }

    /// With `extra` configuration (TOML sections).
    fn start_with(extra: &str) -> World {
        let flows = tempfile::tempdir().unwrap();
        std::fs::write(
            flows.path().join("by-number.json"),
            by_number_flow().to_string(),
        )
        .unwrap();
        std::fs::write(flows.path().join("mrn.json"), mrn_flow().to_string()).unwrap();
        std::fs::write(
            flows.path().join("identify-then-wait.json"),
            identify_then_wait_flow().to_string(),
        )
        .unwrap();
        std::fs::write(
            flows.path().join("identify-then-queue.json"),
            identify_then_queue_flow().to_string(),
        )
        .unwrap();
        std::fs::write(
            flows.path().join("identify-then-callback.json"),
            identify_then_callback_flow().to_string(),
        )
        .unwrap();
        // What a patient called back hears (the shipped flow, which this folder replaces).
        std::fs::copy(
            support::server::repo_root().join("flows/callback-greeting.json"),
            flows.path().join("callback-greeting.json"),
        )
        .unwrap();
        let server = TestServer::start_with(Options {
            toml: format!(
                "[flows]\ndir = \"{}\"\ndefault = \"by-number\"\n\
                 [flows.numbers]\n\"300\" = \"by-number\"\n\"301\" = \"mrn\"\n\"302\" = \"identify-then-wait\"\n\"303\" = \"identify-then-queue\"\n\"304\" = \"identify-then-callback\"\n\
                 [flows.resources]\n\"<PATIENT_VERIFICATION_LAMBDA_ARN>\" = \"careline:patient-lookup\"\n\
                 [queues.nurses]\n{extra}",
                flows.path().display()
            ),
            args: vec!["--record-all".into()],
            ..Options::default()
        });
        World {
            server,
            _flows: flows,
        }
    }

    fn token(&self, name: &str, role: &str) -> String {
        self.server.user_token(name, role)
    }

    /// Imports the fictional patients' bundle as an administrator.
    fn import_patients(&self) {
        let admin = self.token("admin-1", "admin");
        let r = self.api("POST", "/api/v1/fhir", &admin, Some(bundle()));
        assert!(r.status == 200 || r.status == 201, "{}", r.body);
    }

    fn api(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Response {
        let auth = format!("Bearer {token}");
        let raw = body.map(|b| b.to_string());
        request(
            self.server.http,
            method,
            path,
            &[("Authorization", auth.as_str())],
            raw.as_deref().map(|b| ("application/json", b.as_bytes())),
        )
    }

    /// Places an answered call to `number`; the caller is then free to press keys.
    fn dial(&self, number: &str) -> (Ua, RtpPeer) {
        let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
        let offer = sdp_offer(peer.port, "0 101", &PCMU_TE);
        let mut ua = Ua::udp(self.server.sip);
        let mut call = Call::new(number);
        let ok = answered_call(&mut ua, &mut call, &offer);
        peer.set_remote(sdp_media_addr(&ok.body_str()).expect("media address"));
        (ua, peer)
    }

    /// Places a call to `number`, runs `keys` once the first prompt is heard, and waits for
    /// the server to hang up. Returns what the caller heard.
    fn call(&self, number: &str, keys: &[&str]) -> Vec<i16> {
        let (mut ua, peer) = self.dial(number);
        for group in keys {
            // Each group answers one input prompt: let 700 ms of the call play (call time as
            // the caller hears it, which a slow server stretches alike; keys pressed early wait
            // in the type-ahead buffer), then key it in, one key per 150 ms of call.
            let_call_run(&peer, 700);
            for k in group.chars() {
                peer.send_event(k, 80);
                let_call_run(&peer, 150);
            }
        }
        server_hangs_up(&mut ua);
        peer.heard()
    }

    /// Call `call_id`'s link names the patient and nurse-1 (whose `token` this is) as the one
    /// handling it, and the patient's summary opens to her: the screen-pop.
    fn expect_screen_pop(&self, call_id: &str, token: &str) {
        let link = self.api(
            "GET",
            &format!("/api/v1/calls/{call_id}/contact"),
            token,
            None,
        );
        assert_eq!(link.status, 200, "{}", link.body);
        let link: Value = serde_json::from_str(&link.body).unwrap();
        assert_eq!(link["patient_id"], PATIENT);
        assert_eq!(link["user"], "nurse-1");
        assert_eq!(self.summary_status(token, 200), 200, "the screen-pop opens");
    }

    /// The status `token` gets for the patient's summary once it is `want` (polled), or the
    /// last one after 10 s.
    fn summary_status(&self, token: &str, want: u16) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let path = format!("/api/v1/patients/{PATIENT}/summary");
            let got = self.api("GET", &path, token, None).status;
            if got == want || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn auditor_sees(&self, auditor: &str, what: &str, patient: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.api(
                "GET",
                &format!("/api/v1/audit?patient={patient}"),
                auditor,
                None,
            );
            assert_eq!(r.status, 200, "{}", r.body);
            let hits: Vec<Value> = r
                .body
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|e| e["action"] == what)
                .collect();
            if !hits.is_empty() || Instant::now() > deadline {
                return hits;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn a_known_number_is_identified_audited_and_the_call_lands_in_the_contact_history() {
    let world = World::start();
    world.import_patients();

    let heard = world.call("300", &[]);
    expect_prompt(&heard, Codec::Pcmu, "en", "digit-1", 0, None);
    expect_not_prompt(&heard, "en", "digit-2", 0);

    let auditor = world.token("auditor-1", "auditor");
    let lookups = world.auditor_sees(&auditor, "patient.lookup", PATIENT);
    assert_eq!(lookups.len(), 1, "one lookup, audited: {lookups:?}");
    assert_eq!(lookups[0]["actor"], "system:ivr");
    let detail = lookups[0]["detail"].to_string();
    assert!(detail.contains("\"by\":\"phone\""), "{detail}");
    assert!(
        !detail.contains("5551230000"),
        "no caller number in the audit detail"
    );
    assert_eq!(
        world.auditor_sees(&auditor, "contact.write", PATIENT).len(),
        1
    );

    // A clinician reads the history under break-glass (not on a call with the patient).
    let clinician = world.token("clin-1", "clinician");
    let r = world.api(
        "POST",
        &format!("/api/v1/patients/{PATIENT}/break-glass"),
        &clinician,
        Some(json!({"reason": "test: reviewing the last call"})),
    );
    assert!(r.status < 300, "{}", r.body);
    let r = world.api(
        "GET",
        &format!("/api/v1/patients/{PATIENT}/contacts"),
        &clinician,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let contacts: Value = serde_json::from_str(&r.body).unwrap();
    let list = contacts
        .as_array()
        .or_else(|| contacts["contacts"].as_array())
        .unwrap_or_else(|| panic!("{contacts}"));
    assert_eq!(list.len(), 1, "{contacts}");
    let c = &list[0];
    assert_eq!(c["channel"], "voice");
    assert_eq!(c["reason"], "medication refill");
    assert_eq!(c["outcome"], "server_bye");
    assert!(c["call_id"].as_str().is_some_and(|s| s.ends_with("@test")));
    assert!(c["duration_secs"].as_u64().is_some());

    // The call's recording belongs to the patient: a supervisor finds it by patient, and the
    // contact record points at it.
    let supervisor = world.token("sup-1", "supervisor");
    let r = world.api(
        "GET",
        &format!("/api/v1/recordings?patient={PATIENT}"),
        &supervisor,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let recs: Value = serde_json::from_str(&r.body).unwrap();
    let recs = recs["recordings"]
        .as_array()
        .unwrap_or_else(|| panic!("{recs}"));
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["patient_id"], PATIENT);
    assert_eq!(recs[0]["call_id"], c["call_id"]);
    assert_eq!(recs[0]["id"], c["recording_id"]);

    // The log never names the patient or the number.
    let log = world.server.log();
    for secret in ["Testcaller", "Quinn", "5551230000", "555-123-0000"] {
        assert!(!log.contains(secret), "`{secret}` in the server log");
    }
}

#[test]
fn an_unknown_number_takes_none_found_and_keyed_mrn_and_birth_date_verify() {
    let world = World::start();

    // No patients yet: the caller is unknown, and no history is written anywhere.
    let heard = world.call("300", &[]);
    expect_prompt(&heard, Codec::Pcmu, "en", "digit-2", 0, None);

    world.import_patients();

    // Right MRN and date of birth (MMDDYYYY as keyed): verified.
    let heard = world.call("301", &[&format!("{MRN}#"), "01151980#"]);
    expect_prompt(&heard, Codec::Pcmu, "en", "digit-3", 0, None);
    expect_not_prompt(&heard, "en", "digit-4", 0);

    // Wrong date of birth: not verified.
    let heard = world.call("301", &[&format!("{MRN}#"), "02151980#"]);
    expect_prompt(&heard, Codec::Pcmu, "en", "digit-4", 0, None);
    expect_not_prompt(&heard, "en", "digit-3", 0);

    let auditor = world.token("auditor-1", "auditor");
    let lookups = world.auditor_sees(&auditor, "patient.lookup", PATIENT);
    assert_eq!(lookups.len(), 1, "the verified lookup names the patient");
    assert!(
        lookups[0]["detail"].to_string().contains("mrn_dob"),
        "{lookups:?}"
    );
}

/// While the IVR holds an identified caller, the patient is "on a call": a supervisor may open
/// the screen-pop, an agent who does not handle the call may not; both end with the call.
#[test]
fn an_identified_caller_in_the_ivr_is_on_a_call_until_hanging_up() {
    let world = World::start();
    world.import_patients();
    let supervisor = world.token("sup-1", "supervisor");
    let agent = world.token("agent-1", "agent");
    assert_eq!(world.summary_status(&supervisor, 403), 403, "no call yet");

    let (mut ua, peer) = world.dial("302");
    assert_eq!(
        world.summary_status(&supervisor, 200),
        200,
        "the patient is on a call"
    );
    assert_eq!(
        world.summary_status(&agent, 403),
        403,
        "not the agent's call"
    );

    peer.send_event('1', 80);
    server_hangs_up(&mut ua);
    assert_eq!(
        world.summary_status(&supervisor, 403),
        403,
        "the call ended"
    );
}

/// The screen-pop: the IVR identifies a caller by their number and queues them; a nurse who
/// answers from the browser is linked to the call as the one handling it, so the call's link
/// names the patient to them and the patient's summary opens to them (audited as their read);
/// another agent's does not. Before the answer the nurse sees nothing of the call.
#[test]
fn the_nurse_who_answers_an_identified_caller_sees_their_record() {
    let world = World::start();
    world.import_patients();
    let nurse = world.token("nurse-1", "agent");
    let other = world.token("agent-2", "agent");
    let (mut ua, _peer) = world.dial("303");
    let queued = world.server.wait_metric(
        "careline_queue_contacts{queue=\"nurses\"}",
        1.0,
        Duration::from_secs(30),
    );
    assert_eq!(queued, 1.0, "the caller waits for a nurse");
    assert_eq!(
        world.summary_status(&nurse, 403),
        403,
        "not the nurse's call yet"
    );

    let browser = support::browser::BrowserPeer::new(&[Codec::Pcmu]);
    let auth = format!("Bearer {nurse}");
    let r = request(
        world.server.http,
        "POST",
        "/api/v1/queues/nurses/answer",
        &[("Authorization", auth.as_str())],
        Some(("application/sdp", browser.offer.as_bytes())),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let call_id = r
        .header("careline-call-id")
        .expect("the call's id")
        .to_string();
    let location = r.header("location").expect("the session").to_string();
    browser.accept(&r.body);
    browser.wait_connected();

    world.expect_screen_pop(&call_id, &nurse);
    let summary = world.api(
        "GET",
        &format!("/api/v1/patients/{PATIENT}/summary"),
        &nurse,
        None,
    );
    let summary: Value = serde_json::from_str(&summary.body).unwrap();
    assert_eq!(summary["demographics"]["mrn"], MRN);
    let theirs = world.api(
        "GET",
        &format!("/api/v1/calls/{call_id}/contact"),
        &other,
        None,
    );
    assert_eq!(theirs.status, 403, "another agent: {}", theirs.body);
    assert_eq!(world.summary_status(&other, 403), 403);

    // The nurse's read is in the audit trail, naming the patient and the nurse.
    let auditor = world.token("aud-1", "auditor");
    let trail = world.api("GET", "/api/v1/audit?since=1h", &auditor, None);
    assert!(
        trail.body.lines().any(|l| {
            let e: Value = serde_json::from_str(l).unwrap_or_default();
            e["actor"] == "nurse-1"
                && e["patient_id"] == PATIENT
                && e["outcome"] == "success"
                && e["action"] == "patient.read"
        }),
        "{}",
        trail.body
    );
    assert_eq!(
        request(world.server.http, "DELETE", &location, &[], None).status,
        200
    );
    server_hangs_up(&mut ua);
}

/// The screen-pop on a callback: an identified caller asks to be called back; the nurse who
/// accepts it is linked to Careline's call to the patient, so the patient's summary opens to
/// her while it rings; the call placed for the patient is audited naming them. Nobody
/// answers (busy, the only attempt): the link ends and the summary closes again.
#[test]
fn the_nurse_who_calls_an_identified_caller_back_sees_their_record() {
    let mut handset = Ua::udp("127.0.0.1:9".parse().unwrap());
    let world = World::start_with(&format!(
        "[sip.trunks.carrier]\nproxy = \"sip:{}\"\n",
        handset.local
    ));
    handset.server = world.server.sip;
    world.import_patients();
    let nurse = world.token("nurse-1", "agent");
    let (mut ua, _peer) = world.dial("304");
    server_hangs_up(&mut ua);
    assert_eq!(
        world
            .server
            .metric("careline_callbacks_total{event=\"created\"}"),
        1.0
    );
    assert_eq!(world.summary_status(&nurse, 403), 403, "nobody's call yet");

    let mut console = support::console::Console::open(world.server.http, &nurse);
    console.expect_state("offline");
    console.send(json!({"type": "state", "state": "available"}));
    console.expect_state("available");
    let offered = console.expect_offer();
    let browser = support::browser::BrowserPeer::new(&[Codec::Pcmu]);
    let auth = format!("Bearer {nurse}");
    let r = request(
        world.server.http,
        "POST",
        &format!("/api/v1/calls/{offered}/accept"),
        &[("Authorization", auth.as_str())],
        Some(("application/sdp", browser.offer.as_bytes())),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let call_id = r.header("careline-call-id").expect("the call").to_string();
    let callee = support::sip::Callee::ring(&mut handset, Duration::from_secs(20))
        .expect("Careline calls the patient back");
    world.expect_screen_pop(&call_id, &nurse);
    let auditor = world.token("aud-1", "auditor");
    let placed = world.auditor_sees(&auditor, "call.place", PATIENT);
    assert!(
        placed
            .iter()
            .any(|e| e["detail"]["call_id"] == call_id.as_str()),
        "{placed:?}"
    );

    callee.respond(&mut handset, 486, "Busy Here", None);
    assert_eq!(
        world.server.wait_metric(
            "careline_callbacks_total{event=\"given_up\"}",
            1.0,
            Duration::from_secs(20)
        ),
        1.0,
        "its only attempt failed"
    );
    assert_eq!(
        world.summary_status(&nurse, 403),
        403,
        "the link ended with the call"
    );
    console.expect_state("available");
}
