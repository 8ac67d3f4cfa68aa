//! Telehealth rooms end to end (issue 24): a clinician books a visit over the API, enters it
//! from a browser (a scripted WebRTC peer over real loopback UDP), the patient and an
//! interpreter enter by their signed links and wait until the host lets them in, and then
//! each hears the other two and never themselves; the host mutes, takes out and ends; bad
//! links, a full room and strangers are refused, and it is all in the audit trail.

mod support;

use std::time::Duration;

use careline::media::codec::Codec;
use serde_json::{Value, json};
use support::audio::{find_tone, tone, wait_for_tone};
use support::browser::BrowserPeer;
use support::http::{Response, request};
use support::server::TestServer;

const CLINICIAN_HZ: f32 = 1400.0;
const PATIENT_HZ: f32 = 1000.0;
const INTERPRETER_HZ: f32 = 1800.0;

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn api(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Response {
    let auth = bearer(token);
    let body = body.map(|b| b.to_string());
    request(
        server.http,
        method,
        path,
        &[("Authorization", &auth)],
        body.as_deref().map(|b| ("application/json", b.as_bytes())),
    )
}

/// A browser's offer to join: by its link (`path` carries `?t=`) or with a token.
fn enter(server: &TestServer, path: &str, peer: &BrowserPeer, token: Option<&str>) -> Response {
    support::http::post_sdp(server.http, path, &peer.offer, token)
}

/// A participant in the room: their browser and their session URL.
struct Person {
    peer: BrowserPeer,
    session: String,
}

impl Person {
    fn enter(server: &TestServer, path: &str, token: Option<&str>) -> Person {
        let peer = BrowserPeer::new(&[Codec::Pcmu]);
        let r = enter(server, path, &peer, token);
        assert_eq!(r.status, 201, "{path}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/sdp"));
        let session = r.header("location").expect("Location").to_string();
        peer.accept(&r.body);
        peer.wait_connected();
        Person { peer, session }
    }

    fn state(&self, server: &TestServer) -> Response {
        request(server.http, "GET", &self.session, &[], None)
    }

    fn presence(&self, server: &TestServer) -> String {
        let r = self.state(server);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["presence"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn pid(&self, server: &TestServer) -> u64 {
        self.state(server).json()["participant"]
            .as_u64()
            .expect("participant")
    }
}

/// The link path of the invitee labelled `label` in a room's JSON.
fn link(room: &Value, label: &str) -> String {
    room["invitees"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["label"] == label))
        .and_then(|i| i["link"].as_str())
        .unwrap_or_else(|| panic!("no link for {label} in {room}"))
        .replace("/room/", "/api/v1/rooms/")
        .replace("?t=", "/join?t=")
}

/// `speaker` says `hz` for 2 s; each of `ears` hears it (or, with `heard` false, hears
/// none of it in the 3 s after it began).
fn check(speaker: &Person, hz: f32, ears: &[(&Person, bool, &str)]) {
    let from: Vec<usize> = ears
        .iter()
        .map(|(p, _, _)| p.peer.heard().len() / 8)
        .collect();
    speaker.peer.speak(tone(hz, 2000));
    for ((p, heard, what), &from) in ears.iter().zip(&from) {
        if *heard {
            wait_for_tone(|| p.peer.heard(), hz, from, what);
            continue;
        }
        let start = std::time::Instant::now();
        while p.peer.heard().len() / 8 < from + 3000 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{what}: the audio stopped"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let pcm = p.peer.heard();
        assert_eq!(find_tone(&pcm[from * 8..], hz), None, "{what}");
    }
}

/// Waits (30 s at most) until `cond` holds.
fn wait_until(cond: impl Fn() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn book(server: &TestServer, token: &str, body: Value) -> Value {
    let r = api(server, "POST", "/api/v1/rooms", token, Some(body));
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

/// The phone on the trunk rings with Careline's call to `number` and answers it.
fn picks_up(
    handset: &mut support::sip::Ua,
    number: &str,
) -> (support::sip::Callee, support::rtp::RtpPeer) {
    let (callee, phone) = support::sip::pick_up(handset, Duration::from_secs(20));
    assert!(
        callee
            .invite
            .start
            .starts_with(&format!("INVITE sip:{number}@")),
        "{}",
        callee.invite.start
    );
    (callee, phone)
}

/// A server whose trunk reaches `handset` (a phone that picks up what Careline calls out),
/// clinician dr-a's token, and a visit dr-a booked with Ann invited as the patient.
fn visit_with_a_trunk() -> (support::sip::Ua, TestServer, String, Value) {
    let mut handset = support::sip::Ua::udp("127.0.0.1:9".parse().unwrap());
    let server = TestServer::start_with(support::server::Options {
        toml: format!(
            "[sip.trunks.carrier]\nproxy = \"sip:{}\"\ncaller_id = \"+15550000\"\n",
            handset.local
        ),
        ..Default::default()
    });
    handset.server = server.sip;
    let dr = server.user_token("dr-a", "clinician");
    let room = book(
        &server,
        &dr,
        json!({"title": "Visit", "invitees": [{"label": "Ann", "role": "patient"}]}),
    );
    (handset, server, dr, room)
}

/// The visit of issue 24: a clinician, the patient and an interpreter, each hearing the
/// other two and never themselves; the waiting room keeps the patient out until let in; the
/// host mutes and ends; afterwards the links open nothing.
#[test]
fn a_clinician_sees_a_patient_with_an_interpreter_each_hearing_the_other_two() {
    let server = TestServer::start();
    let dr = server.user_token("dr-a", "clinician");
    let room = book(
        &server,
        &dr,
        json!({
            "title": "Heart failure follow-up",
            "patient_id": "pat-42",
            "invitees": [{"label": "Ann Lee", "role": "patient"}, {"label": "Interpreter", "role": "guest"}]
        }),
    );
    let id = room["id"].as_str().expect("id").to_string();
    assert_eq!(room["host"], "dr-a");
    assert_eq!(room["join_url"], format!("/room/{id}"));
    let join = format!("/api/v1/rooms/{id}/join");

    let clinician = Person::enter(&server, &join, Some(&dr));
    let me = clinician.state(&server).json();
    assert_eq!(me["presence"], "present", "{me}");
    assert_eq!(me["host"], true, "the first clinician hosts: {me}");

    // The patient waits, hearing nobody and heard by nobody.
    let patient = Person::enter(&server, &link(&room, "Ann Lee"), None);
    assert_eq!(patient.presence(&server), "waiting");
    check(
        &patient,
        PATIENT_HZ,
        &[(
            &clinician,
            false,
            "nobody hears someone in the waiting room",
        )],
    );
    check(
        &clinician,
        CLINICIAN_HZ,
        &[(
            &patient,
            false,
            "the waiting room hears nothing of the visit",
        )],
    );
    let ppid = patient.pid(&server);
    let admit = format!("/api/v1/rooms/{id}/participants/{ppid}/admit");
    assert_eq!(api(&server, "POST", &admit, &dr, None).status, 204);
    assert_eq!(patient.presence(&server), "present");
    assert_eq!(
        api(&server, "POST", &admit, &dr, None).status,
        409,
        "in already"
    );

    check(
        &clinician,
        CLINICIAN_HZ,
        &[(&patient, true, "the patient hears the clinician")],
    );
    check(
        &patient,
        PATIENT_HZ,
        &[(&clinician, true, "the clinician hears the patient")],
    );

    // The interpreter comes in too: three in the visit.
    let interpreter = Person::enter(&server, &link(&room, "Interpreter"), None);
    let ipid = interpreter.pid(&server);
    let ctl = |pid: u64, action: &str| {
        let path = format!("/api/v1/rooms/{id}/participants/{pid}/{action}");
        api(&server, "POST", &path, &dr, None).status
    };
    assert_eq!(ctl(ipid, "admit"), 204);
    check(
        &clinician,
        CLINICIAN_HZ,
        &[
            (&patient, true, "the patient hears the clinician"),
            (&interpreter, true, "the interpreter hears the clinician"),
            (&clinician, false, "the clinician does not hear themselves"),
        ],
    );
    check(
        &patient,
        PATIENT_HZ,
        &[
            (&clinician, true, "the clinician hears the patient"),
            (&interpreter, true, "the interpreter hears the patient"),
            (&patient, false, "the patient does not hear themselves"),
        ],
    );
    check(
        &interpreter,
        INTERPRETER_HZ,
        &[
            (&clinician, true, "the clinician hears the interpreter"),
            (&patient, true, "the patient hears the interpreter"),
            (
                &interpreter,
                false,
                "the interpreter does not hear themselves",
            ),
        ],
    );

    // The talker indicator: the interpreter talking shows to the host; quiet, it goes.
    let talking = || -> Vec<u64> {
        let me = clinician.state(&server).json();
        serde_json::from_value(me["talking"].clone()).unwrap_or_default()
    };
    interpreter.peer.speak(tone(INTERPRETER_HZ, 1500));
    wait_until(|| talking() == [ipid], "the interpreter shows as talking");
    wait_until(
        || talking().is_empty(),
        "quiet again, nobody shows as talking",
    );

    // Muted by the host, the interpreter is heard by nobody and still hears.
    assert_eq!(ctl(ipid, "mute"), 204);
    assert_eq!(interpreter.state(&server).json()["muted"], true);
    check(
        &interpreter,
        INTERPRETER_HZ,
        &[
            (
                &clinician,
                false,
                "a muted interpreter is not heard by the clinician",
            ),
            (
                &patient,
                false,
                "a muted interpreter is not heard by the patient",
            ),
        ],
    );
    check(
        &patient,
        PATIENT_HZ,
        &[(&interpreter, true, "muted, the interpreter still hears")],
    );
    assert_eq!(ctl(ipid, "unmute"), 204);
    check(
        &interpreter,
        INTERPRETER_HZ,
        &[(&patient, true, "unmuted, heard again")],
    );

    // Nobody but the host runs the visit.
    let other = server.user_token("dr-b", "clinician");
    let path = format!("/api/v1/rooms/{id}/participants/{ipid}/remove");
    assert_eq!(api(&server, "POST", &path, &other, None).status, 403);
    assert_eq!(ctl(99, "admit"), 404, "nobody by that number");
    assert_eq!(ctl(ipid, "dance"), 404, "not an action");
    let view = api(&server, "GET", &format!("/api/v1/rooms/{id}"), &dr, None);
    assert_eq!(view.status, 200, "{}", view.body);
    let live = &view.json()["live"];
    assert_eq!(
        live["participants"].as_array().map(Vec::len),
        Some(3),
        "{live}"
    );
    assert_eq!(
        api(&server, "GET", &format!("/api/v1/rooms/{id}"), &other, None).status,
        403,
        "another clinician does not see this booking and its links"
    );

    // The interpreter leaves; the two go on.
    let r = request(server.http, "DELETE", &interpreter.session, &[], None);
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(interpreter.state(&server).status, 404);
    check(&patient, PATIENT_HZ, &[(&clinician, true, "the two go on")]);

    // The host ends the visit: everyone is out and the links open nothing.
    let end = format!("/api/v1/rooms/{id}/end");
    assert_eq!(api(&server, "POST", &end, &dr, None).status, 204);
    assert_eq!(
        patient.state(&server).status,
        404,
        "the patient's visit is over"
    );
    let again = BrowserPeer::new(&[Codec::Pcmu]);
    let r = enter(&server, &link(&room, "Ann Lee"), &again, None);
    assert_eq!(r.status, 410, "{}", r.body);
    let booked = api(&server, "GET", &format!("/api/v1/rooms/{id}"), &dr, None).json();
    assert_eq!(booked["end_reason"], "host", "{booked}");
    assert!(booked["ended_at"].is_string(), "{booked}");
    assert_eq!(server.metric("careline_rooms_total{event=\"ended\"}"), 1.0);
    assert_eq!(
        server.metric("careline_rooms_total{event=\"waiting\"}"),
        2.0
    );

    // Each entry is in the audit trail with the patient.
    let auditor = server.user_token("audit-1", "auditor");
    let trail = api(
        &server,
        "GET",
        "/api/v1/audit?patient=pat-42",
        &auditor,
        None,
    );
    assert_eq!(trail.status, 200, "{}", trail.body);
    for what in ["room.create", "room.join", "room.end", "invitee:"] {
        assert!(trail.body.contains(what), "{what} not in {}", trail.body);
    }
}

/// Links that are forged, for another room or withdrawn open nothing (403, audited);
/// without a link or a clinician's credentials nobody enters; a patient may not book.
#[test]
fn bad_links_and_strangers_are_refused_and_audited() {
    let server = TestServer::start();
    let dr = server.user_token("dr-a", "clinician");
    let nurse = server.user_token("nurse-1", "agent");
    let room = book(
        &server,
        &dr,
        json!({"title": "Visit", "invitees": [{"label": "Ann", "role": "patient"}]}),
    );
    let other = book(&server, &dr, json!({"title": "Another visit"}));
    let id = room["id"].as_str().unwrap();
    let good = link(&room, "Ann");
    let peer = BrowserPeer::new(&[Codec::Pcmu]);

    let forged = format!("{}x", &good[..good.len() - 1]);
    let elsewhere = good.replace(id, other["id"].as_str().unwrap());
    for (path, what) in [(&forged, "forged"), (&elsewhere, "another room's")] {
        let r = enter(&server, path, &peer, None);
        assert_eq!(r.status, 403, "{what}: {}", r.body);
        assert!(r.body.contains("not valid"), "{what}: {}", r.body);
    }
    let r = enter(&server, &format!("/api/v1/rooms/{id}/join"), &peer, None);
    assert_eq!(r.status, 401, "no link, no credentials: {}", r.body);
    let r = enter(
        &server,
        &format!("/api/v1/rooms/{id}/join"),
        &peer,
        Some(&nurse),
    );
    assert_eq!(r.status, 403, "an agent is not a clinician: {}", r.body);
    let r = api(
        &server,
        "POST",
        "/api/v1/rooms",
        &nurse,
        Some(json!({"title": "x"})),
    );
    assert_eq!(r.status, 403, "{}", r.body);

    // Withdrawn: the link's signature holds, the invitation does not.
    let invitee = room["invitees"][0]["id"].as_str().unwrap();
    let path = format!("/api/v1/rooms/{id}/invitees/{invitee}");
    assert_eq!(api(&server, "DELETE", &path, &dr, None).status, 204);
    let r = enter(&server, &good, &peer, None);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("withdrawn"), "{}", r.body);

    // A new invitation works; a clinician's link is not a thing.
    let path = format!("/api/v1/rooms/{id}/invitees");
    let r = api(
        &server,
        "POST",
        &path,
        &dr,
        Some(json!({"label": "Ann", "role": "patient"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let fresh = r.json()["link"]
        .as_str()
        .unwrap()
        .replace("/room/", "/api/v1/rooms/")
        .replace("?t=", "/join?t=");
    let r = api(
        &server,
        "POST",
        &path,
        &dr,
        Some(json!({"label": "Dr", "role": "clinician"})),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let _patient = Person::enter(&server, &fresh, None);

    // Bad bookings are refused with the field named.
    for (body, field) in [
        (json!({"title": ""}), "title"),
        (
            json!({"title": "x", "max_participants": 1}),
            "max_participants",
        ),
        (
            json!({"title": "x", "scheduled_at": "tomorrow"}),
            "scheduled_at",
        ),
        (json!({"title": "x", "colour": "red"}), "colour"),
    ] {
        let r = api(&server, "POST", "/api/v1/rooms", &dr, Some(body));
        assert!(
            r.status == 422 || r.status == 400,
            "{field}: {} {}",
            r.status,
            r.body
        );
        assert!(r.body.contains(field), "{field}: {}", r.body);
    }

    let auditor = server.user_token("audit-1", "auditor");
    let trail = api(
        &server,
        "GET",
        "/api/v1/audit?user=anonymous",
        &auditor,
        None,
    );
    let denied = trail
        .body
        .lines()
        .filter(|l| l.contains("room.join") && l.contains("denied"))
        .count();
    assert_eq!(
        denied, 3,
        "forged, another room's, withdrawn: {}",
        trail.body
    );
    assert_eq!(
        server.metric("careline_rooms_total{event=\"waiting\"}"),
        1.0
    );
}

/// A room at its limit refuses one more politely (409), and a clinician coming in (without
/// the waiting room) is not asked to wait.
#[test]
fn a_full_room_refuses_politely() {
    let server = TestServer::start();
    let dr = server.user_token("dr-a", "clinician");
    let dr2 = server.user_token("dr-b", "clinician");
    let room = book(
        &server,
        &dr,
        json!({
            "title": "Small visit", "max_participants": 2,
            "invitees": [{"label": "Ann", "role": "patient"}, {"label": "Bo", "role": "guest"}]
        }),
    );
    let id = room["id"].as_str().unwrap();
    let join = format!("/api/v1/rooms/{id}/join");
    let host = Person::enter(&server, &join, Some(&dr));
    let second = Person::enter(&server, &join, Some(&dr2));
    check(
        &host,
        CLINICIAN_HZ,
        &[(&second, true, "the two clinicians hear each other")],
    );
    assert_eq!(
        second.presence(&server),
        "present",
        "a clinician does not wait"
    );
    let peer = BrowserPeer::new(&[Codec::Pcmu]);
    let r = enter(&server, &link(&room, "Ann"), &peer, None);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("full"), "{}", r.body);
    assert_eq!(
        server.metric("careline_rooms_total{event=\"refused\"}"),
        1.0
    );
}

/// A clinician hosts a visit from the /room page in headless Chromium: signed out, the page
/// says to open the link; signed in, she joins and hosts; the patient (a scripted browser
/// entering by her link) appears as waiting with "Let in"; let in, the clinician hears her
/// (1000 Hz) and she hears the clinician's microphone (440 Hz); muted and unmuted from the
/// page; a reload brings her back into the visit, still hosting; "End the visit for
/// everyone" ends it and the patient is out; the patient's summary showed during the visit,
/// and the notes written after it are saved (both audited). Screenshots in
/// target/browser-screenshots/room-visit/.
#[test]
fn a_clinician_hosts_a_visit_from_the_room_page_in_chromium() {
    use support::chromium::{
        CHROMIUM, NURSE_PASSWORD, add_user, browser_script, screenshots_and_mic,
    };
    let _one_at_a_time = CHROMIUM.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start();
    add_user(&server, "dr-a", "clinician");
    let dr = server.user_token("dr-a-api", "clinician");
    let bundle = support::fixtures::fhir_bundles()[0].clone();
    server.cli_ok(&["patient", "import", &bundle.display().to_string()]);
    let patient_id = bundle_patient_id(&bundle);
    let room = book(
        &server,
        &dr,
        json!({"title": "Check-in", "patient_id": patient_id, "invitees": [{"label": "Ann Lee", "role": "patient"}]}),
    );
    // The booking is dr-a-api's; dr-a enters as a clinician and hosts.
    let id = room["id"].as_str().unwrap().to_string();
    let patient_link = link(&room, "Ann Lee");
    let (shots, mic) = screenshots_and_mic("room-visit");
    let http = server.http;
    let patient = std::thread::scope(|scope| {
        // The patient knocks once the clinician is in.
        let patient = scope.spawn(|| {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                let view = api(&server, "GET", &format!("/api/v1/rooms/{id}"), &dr, None).json();
                if view["live"]["host"].is_u64() {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the clinician never joined"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            let p = Person::enter(&server, &patient_link, None);
            p.peer.speak(tone(PATIENT_HZ, 25_000));
            p
        });
        let summary = browser_script(
            &server,
            "room-visit.mjs",
            &[
                format!("http://{http}"),
                shots.display().to_string(),
                "dr-a".into(),
                NURSE_PASSWORD.into(),
                id.clone(),
                "Ann Lee".into(),
                mic.display().to_string(),
            ],
        );
        let patient = patient.join().expect("the patient");
        assert_eq!(
            summary["signed_out"], "Please open the link the clinic sent you.",
            "{summary}"
        );
        assert_eq!(
            summary["hosting"], "You are hosting this visit.",
            "{summary}"
        );
        assert_eq!(
            summary["waiting_row"], "Ann Lee (patient, browser): waiting",
            "{summary}"
        );
        assert_eq!(
            summary["in_row"], "Ann Lee (patient, browser): talking",
            "{summary}"
        );
        assert_eq!(
            summary["muted_row"], "Ann Lee (patient, browser): muted",
            "{summary}"
        );
        assert!(
            summary["heard_energy"].as_f64().unwrap_or(0.0) > 0.01,
            "the clinician hears the patient: {summary}"
        );
        assert_eq!(
            summary["after_reload"], "You are hosting this visit.",
            "the reloaded page is back in the visit: {summary}"
        );
        assert_eq!(
            summary["recording"], "This visit is being recorded.",
            "{summary}"
        );
        assert_eq!(summary["record_button"], "Stop recording", "{summary}");
        assert_eq!(summary["ended"], "You ended the visit.", "{summary}");
        assert!(
            summary["patient_name"]
                .as_str()
                .is_some_and(|n| !n.is_empty()),
            "the patient's summary shows in the visit: {summary}"
        );
        assert_eq!(
            summary["notes"], "Notes saved to the contact history.",
            "{summary}"
        );
        assert_eq!(summary["join_shown"], true, "{summary}");
        patient
    });
    // The patient heard the clinician's microphone, and the visit is over for her.
    wait_for_tone(
        || patient.peer.heard(),
        440.0,
        0,
        "the patient hears the clinician",
    );
    assert_eq!(patient.state(&server).status, 404);
    let booked = api(&server, "GET", &format!("/api/v1/rooms/{id}"), &dr, None).json();
    assert_eq!(booked["end_reason"], "host", "{booked}");
    let auditor = server.user_token("audit-1", "auditor");
    let path = format!("/api/v1/audit?patient={patient_id}&user=dr-a");
    let trail = api(&server, "GET", &path, &auditor, None);
    assert!(
        trail.body.contains("patient.read") && trail.body.contains("contact.write"),
        "the summary's read and the notes are audited: {}",
        trail.body
    );
}

/// A patient whose page reloads (a new connection, the old one not yet noticed gone) comes
/// back into the visit at once, without a second wait, in their own place: the old session
/// is gone, the room still has two participants, and the two hear each other again.
#[test]
fn a_reloaded_page_takes_its_own_place_in_the_visit_without_a_second_wait() {
    let server = TestServer::start();
    let dr = server.user_token("dr-a", "clinician");
    let room = book(
        &server,
        &dr,
        json!({"title": "Visit", "invitees": [{"label": "Ann", "role": "patient"}]}),
    );
    let id = room["id"].as_str().unwrap();
    let clinician = Person::enter(&server, &format!("/api/v1/rooms/{id}/join"), Some(&dr));
    let first = Person::enter(&server, &link(&room, "Ann"), None);
    let pid = first.pid(&server);
    let admit = format!("/api/v1/rooms/{id}/participants/{pid}/admit");
    assert_eq!(api(&server, "POST", &admit, &dr, None).status, 204);
    check(
        &first,
        PATIENT_HZ,
        &[(&clinician, true, "the clinician hears the patient")],
    );

    let again = Person::enter(&server, &link(&room, "Ann"), None);
    assert_eq!(again.pid(&server), pid, "the same place");
    assert_eq!(again.presence(&server), "present", "no second wait");
    assert_eq!(first.state(&server).status, 404, "the old session is gone");
    let live = api(&server, "GET", &format!("/api/v1/rooms/{id}"), &dr, None).json();
    assert_eq!(
        live["live"]["participants"].as_array().map(Vec::len),
        Some(2),
        "{live}"
    );
    check(
        &again,
        PATIENT_HZ,
        &[(&clinician, true, "the clinician hears her again")],
    );
    check(
        &clinician,
        CLINICIAN_HZ,
        &[(&again, true, "she hears the clinician again")],
    );
    assert_eq!(
        server.metric("careline_rooms_total{event=\"rejoined\"}"),
        1.0
    );
}

/// The id of the patient in FHIR bundle `path`.
fn bundle_patient_id(path: &std::path::Path) -> String {
    let b: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Patient")
        .and_then(|e| e["resource"]["id"].as_str())
        .expect("a Patient")
        .to_string()
}

/// The visit's patient opens to the clinician because she is in the visit with them (not
/// before she enters, never to a clinician who is not in it), each read audited; she writes
/// the visit's notes into the contact history (channel telehealth), also just after leaving
/// (the wrap-up time); only a clinician in the visit is told which patient it is about.
#[test]
fn the_clinician_in_the_visit_sees_the_patient_and_writes_the_notes() {
    let server = TestServer::start();
    let bundle = support::fixtures::fhir_bundles()[0].clone();
    server.cli_ok(&["patient", "import", &bundle.display().to_string()]);
    let patient_id = bundle_patient_id(&bundle);
    let dr = server.user_token("dr-a", "clinician");
    let colleague = server.user_token("dr-b", "clinician");
    let room = book(
        &server,
        &dr,
        json!({"title": "Post-discharge check", "patient_id": patient_id,
               "invitees": [{"label": "Patient", "role": "patient"}]}),
    );
    let id = room["id"].as_str().unwrap();
    let summary = format!("/api/v1/patients/{patient_id}/summary");
    assert_eq!(
        api(&server, "GET", &summary, &dr, None).status,
        403,
        "not before she is in the visit"
    );

    let clinician = Person::enter(&server, &format!("/api/v1/rooms/{id}/join"), Some(&dr));
    let me = clinician.state(&server).json();
    assert_eq!(me["patient_id"], patient_id.as_str(), "{me}");
    assert_eq!(me["title"], "Post-discharge check", "{me}");
    let r = api(&server, "GET", &summary, &dr, None);
    assert_eq!(r.status, 200, "in the visit: {}", r.body);
    assert!(r.json()["demographics"]["name"].is_string(), "{}", r.body);
    assert_eq!(
        api(&server, "GET", &summary, &colleague, None).status,
        403,
        "a clinician who is not in the visit"
    );
    let patient = Person::enter(&server, &link(&room, "Patient"), None);
    let theirs = patient.state(&server).json();
    assert!(theirs.get("patient_id").is_none(), "{theirs}");

    let contacts = format!("/api/v1/patients/{patient_id}/contacts");
    let note = |text: &str| {
        api(
            &server,
            "POST",
            &contacts,
            &dr,
            Some(json!({"channel": "telehealth", "reason": "Post-discharge check", "notes": text})),
        )
    };
    let r = note("Feeling better; no chest pain.");
    assert_eq!(r.status, 201, "{}", r.body);
    // She leaves: the wrap-up time still lets her finish the notes.
    let r = request(server.http, "DELETE", &clinician.session, &[], None);
    assert_eq!(r.status, 204);
    let r = note("Follow-up in two weeks.");
    assert_eq!(r.status, 201, "in the wrap-up time: {}", r.body);
    let history = api(&server, "GET", &contacts, &dr, None);
    assert_eq!(history.status, 200, "{}", history.body);
    let telehealth = history.json()["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["channel"] == "telehealth")
        .count();
    assert_eq!(telehealth, 2, "{}", history.body);

    let auditor = server.user_token("audit-1", "auditor");
    let trail = api(
        &server,
        "GET",
        &format!("/api/v1/audit?patient={patient_id}&user=dr-a"),
        &auditor,
        None,
    );
    assert!(
        trail.body.contains("patient.read") && trail.body.contains("room.join"),
        "{}",
        trail.body
    );
}

/// The host records the visit: the recording follows the patient (left: the patient, right:
/// everyone else as she hears them), everyone in the room is shown it is recorded, it is
/// linked to the visit's patient, and only the host starts and stops it.
#[test]
fn the_host_records_the_visit_with_the_patient_on_the_left() {
    let server = TestServer::start_with(support::server::Options {
        toml: "[recording]\nformat = \"wav\"\nflush_secs = 1\n".into(),
        ..Default::default()
    });
    let dr = server.user_token("dr-a", "clinician");
    let room = book(
        &server,
        &dr,
        json!({"title": "Visit", "patient_id": "pat-9", "invitees": [{"label": "Ann", "role": "patient"}]}),
    );
    let id = room["id"].as_str().unwrap();
    let clinician = Person::enter(&server, &format!("/api/v1/rooms/{id}/join"), Some(&dr));
    let patient = Person::enter(&server, &link(&room, "Ann"), None);
    let pid = patient.pid(&server);
    let admit = format!("/api/v1/rooms/{id}/participants/{pid}/admit");
    assert_eq!(api(&server, "POST", &admit, &dr, None).status, 204);
    assert_eq!(patient.state(&server).json()["recording"], false);

    let other = server.user_token("dr-b", "clinician");
    let start = format!("/api/v1/rooms/{id}/recording/start");
    assert_eq!(
        api(&server, "POST", &start, &other, None).status,
        403,
        "not the host"
    );
    let r = api(&server, "POST", &start, &dr, None);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["left"], "patient", "{}", r.body);
    let rec = r.json()["recording"].as_str().unwrap().to_string();
    assert_eq!(api(&server, "POST", &start, &dr, None).status, 409, "once");
    assert_eq!(
        patient.state(&server).json()["recording"],
        true,
        "the patient is told"
    );
    // The patient says 1000 Hz, the clinician 1400 Hz.
    check(
        &patient,
        PATIENT_HZ,
        &[(&clinician, true, "the clinician hears her")],
    );
    check(
        &clinician,
        CLINICIAN_HZ,
        &[(&patient, true, "she hears the clinician")],
    );
    // The visit goes on a little before the recording stops, so its last block (sealed at
    // the stop) is not what the check hinges on.
    let heard = patient.peer.heard().len() / 8;
    wait_until(
        || patient.peer.heard().len() / 8 >= heard + 2000,
        "the visit goes on",
    );
    let stop = format!("/api/v1/rooms/{id}/recording/stop");
    let r = api(&server, "POST", &stop, &dr, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["recording"], rec.as_str());
    assert_eq!(
        api(&server, "POST", &stop, &dr, None).status,
        409,
        "not recording"
    );

    let row = server.sealed_recording(|r| r["id"] == rec.as_str());
    assert_eq!(row["call_id"], format!("room:{id}"), "{row}");
    let (left, right) = server.export_stereo(&rec);
    let has = |pcm: &[i16], hz: f32| find_tone(pcm, hz).is_some();
    assert!(has(&left, PATIENT_HZ), "the patient on the left");
    assert!(!has(&left, CLINICIAN_HZ), "only the patient on the left");
    assert!(has(&right, CLINICIAN_HZ), "the clinician on the right");
    assert!(!has(&right, PATIENT_HZ), "not the patient on the right");

    // Linked to the visit's patient: a supervisor finds it by patient.
    let boss = server.user_token("sup-1", "supervisor");
    let list = api(
        &server,
        "GET",
        "/api/v1/recordings?patient=pat-9",
        &boss,
        None,
    );
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains(&rec), "{}", list.body);
}

/// The host calls an interpreter's phone into the visit: the trunk rings it, and once
/// answered the interpreter is in the room at once (channel phone), hears the clinician and
/// the patient and is heard by both; taken out by the host, their phone is hung up (BYE).
/// Only the host calls out; a bad number is refused.
#[test]
fn the_host_calls_an_interpreter_by_phone_into_the_visit() {
    let (mut handset, server, dr, room) = visit_with_a_trunk();
    let id = room["id"].as_str().unwrap();
    let clinician = Person::enter(&server, &format!("/api/v1/rooms/{id}/join"), Some(&dr));
    let patient = Person::enter(&server, &link(&room, "Ann"), None);
    let pid = patient.pid(&server);
    let admit = format!("/api/v1/rooms/{id}/participants/{pid}/admit");
    assert_eq!(api(&server, "POST", &admit, &dr, None).status, 204);

    let call = format!("/api/v1/rooms/{id}/participants");
    let body = |number: &str| json!({"number": number, "label": "Interpreter", "role": "guest"});
    let other = server.user_token("dr-b", "clinician");
    assert_eq!(
        api(&server, "POST", &call, &other, Some(body("+15550123"))).status,
        403
    );
    assert_eq!(
        api(&server, "POST", &call, &dr, Some(body("call me"))).status,
        422
    );
    let r = api(&server, "POST", &call, &dr, Some(body("+15550123")));
    assert_eq!(r.status, 202, "{}", r.body);
    let (mut callee, phone) = picks_up(&mut handset, "+15550123");
    let on_phone = || -> Option<Value> {
        let me = clinician.state(&server).json();
        me["participants"]
            .as_array()?
            .iter()
            .find(|p| p["channel"] == "phone")
            .cloned()
    };
    wait_until(
        || on_phone().is_some(),
        "the interpreter's phone is in the room",
    );
    let interpreter = on_phone().unwrap();
    assert_eq!(interpreter["presence"], "present", "{interpreter}");
    assert_eq!(interpreter["label"], "Interpreter");

    // Everyone hears everyone else.
    let from = phone.heard().len() / 8;
    clinician.peer.speak(tone(CLINICIAN_HZ, 2000));
    wait_for_tone(
        || phone.heard(),
        CLINICIAN_HZ,
        from,
        "the phone hears the clinician",
    );
    let from = phone.heard().len() / 8;
    patient.peer.speak(tone(PATIENT_HZ, 2000));
    wait_for_tone(
        || phone.heard(),
        PATIENT_HZ,
        from,
        "the phone hears the patient",
    );
    for (who, what) in [(&clinician, "the clinician"), (&patient, "the patient")] {
        let from = who.peer.heard().len() / 8;
        phone.send_audio(tone(INTERPRETER_HZ, 2000));
        wait_for_tone(
            || who.peer.heard(),
            INTERPRETER_HZ,
            from,
            &format!("{what} hears the interpreter's phone"),
        );
    }

    // Taken out by the host: the phone is hung up.
    let ipid = interpreter["id"].as_u64().unwrap();
    let remove = format!("/api/v1/rooms/{id}/participants/{ipid}/remove");
    assert_eq!(api(&server, "POST", &remove, &dr, None).status, 204);
    let bye = handset.expect(Duration::from_secs(10), |m| m.method() == Some("BYE"));
    assert!(bye.is_some(), "the interpreter's phone is hung up");
    let _ = &mut callee;
    assert_eq!(
        server.metric("careline_rooms_total{event=\"call_out\"}"),
        1.0
    );
}

/// The clinician speaks (1400 Hz) and Ann's phone hears it; Ann speaks (1000 Hz) and the
/// clinician hears it.
fn ann_and_the_clinician_hear_each_other(phone: &support::rtp::RtpPeer, clinician: &Person) {
    let from = phone.heard().len() / 8;
    clinician.peer.speak(tone(CLINICIAN_HZ, 2000));
    wait_for_tone(
        || phone.heard(),
        CLINICIAN_HZ,
        from,
        "Ann hears the clinician",
    );
    let from = clinician.peer.heard().len() / 8;
    phone.send_audio(tone(PATIENT_HZ, 2000));
    wait_for_tone(
        || clinician.peer.heard(),
        PATIENT_HZ,
        from,
        "the clinician hears Ann's phone",
    );
}

/// Keys `digits` on `phone` as RFC 4733 events, a tenth of a second each.
fn key_in(phone: &support::rtp::RtpPeer, digits: &str) {
    for d in digits.chars() {
        phone.send_event(d, 100);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A patient without a browser joins by phone: she calls the dial-in line (300, the shipped
/// `room-dial-in` flow), keys a wrong PIN (no visit: counted, audited, asked again), then
/// the PIN her invitation shows and the pound key, and waits in the waiting room until the
/// host lets her in; then she and the clinician hear each other. The host taking her out
/// hangs her phone up. The entry is audited (`room.join`, channel phone, with the call),
/// and the PIN is in neither the audit trail nor the log. A withdrawn invitation's PIN
/// opens nothing.
#[test]
fn a_patient_keys_her_visit_pin_on_the_dial_in_line_and_joins_by_phone() {
    use support::rtp::RtpPeer;
    use support::sip::{Ua, dial_answered};
    let server = TestServer::start();
    let dr = server.user_token("dr-a", "clinician");
    let room = book(
        &server,
        &dr,
        json!({"title": "Visit", "invitees": [
            {"label": "Ann", "role": "patient"},
            {"label": "Old", "role": "guest"}]}),
    );
    let id = room["id"].as_str().unwrap();
    let invitee = |label: &str| -> Value {
        room["invitees"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["label"] == label))
            .cloned()
            .unwrap()
    };
    let pin = invitee("Ann")["pin"].as_str().unwrap().to_string();
    assert_eq!(pin.len(), 9, "{room}");
    let old_pin = invitee("Old")["pin"].as_str().unwrap().to_string();
    let withdraw = format!(
        "/api/v1/rooms/{id}/invitees/{}",
        invitee("Old")["id"].as_str().unwrap()
    );
    assert_eq!(api(&server, "DELETE", &withdraw, &dr, None).status, 204);
    let clinician = Person::enter(&server, &format!("/api/v1/rooms/{id}/join"), Some(&dr));

    let phone = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let mut ua = Ua::udp(server.sip);
    let _call = dial_answered(&mut ua, "300", &phone);
    support::audio::let_call_run(&phone, 1500);
    let wrong = if pin == "123456789" {
        "987654321"
    } else {
        "123456789"
    };
    key_in(&phone, &format!("{wrong}#"));
    wait_until(
        || server.metric("careline_rooms_total{event=\"pin_refused\"}") == 1.0,
        "a wrong PIN is refused",
    );
    support::audio::let_call_run(&phone, 1500);
    key_in(&phone, &format!("{old_pin}#"));
    wait_until(
        || server.metric("careline_rooms_total{event=\"pin_refused\"}") == 2.0,
        "a withdrawn invitation's PIN is refused",
    );
    support::audio::let_call_run(&phone, 1500);
    key_in(&phone, &format!("{pin}#"));
    let on_phone = || -> Option<Value> {
        let me = clinician.state(&server).json();
        me["participants"]
            .as_array()?
            .iter()
            .find(|p| p["channel"] == "phone")
            .cloned()
    };
    wait_until(|| on_phone().is_some(), "Ann's phone is in the visit");
    let ann = on_phone().unwrap();
    assert_eq!(ann["presence"], "waiting", "{ann}");
    assert_eq!(ann["label"], "Ann");
    assert_eq!(ann["role"], "patient");
    let apid = ann["id"].as_u64().unwrap();
    let admit = format!("/api/v1/rooms/{id}/participants/{apid}/admit");
    assert_eq!(api(&server, "POST", &admit, &dr, None).status, 204);

    ann_and_the_clinician_hear_each_other(&phone, &clinician);

    let remove = format!("/api/v1/rooms/{id}/participants/{apid}/remove");
    assert_eq!(api(&server, "POST", &remove, &dr, None).status, 204);
    let bye = ua.expect(Duration::from_secs(10), |m| m.method() == Some("BYE"));
    ua.respond(&bye.expect("Ann's phone is hung up"), 200, "OK");
    assert_eq!(
        server.wait_metric(
            "careline_calls_ended_total{cause=\"room_left\"}",
            1.0,
            Duration::from_secs(10)
        ),
        1.0
    );

    let auditor = server.user_token("audit-1", "auditor");
    let trail = api(&server, "GET", "/api/v1/audit?limit=1000", &auditor, None);
    assert_eq!(trail.status, 200, "{}", trail.body);
    let phone_entries: Vec<&str> = trail
        .body
        .lines()
        .filter(|l| l.contains("room.join") && l.contains("\"phone\""))
        .collect();
    assert!(
        phone_entries
            .iter()
            .any(|l| l.contains("success") && l.contains("invitee:")),
        "{}",
        trail.body
    );
    assert_eq!(
        phone_entries
            .iter()
            .filter(|l| l.contains("denied"))
            .count(),
        2,
        "{}",
        trail.body
    );
    for secret in [&pin, &old_pin] {
        assert!(
            !trail.body.contains(secret.as_str()),
            "the PIN is not audited"
        );
        assert!(
            !server.log().contains(secret.as_str()),
            "the PIN is not logged"
        );
    }
}

/// "We will call your phone": the patient is in the visit from her browser, which then
/// fails; her number goes to `call-me` with her link's token and the trunk rings it;
/// answered, she is back in the visit on the phone (let in before: no second wait), in her
/// own place (one Ann), and she and the clinician hear each other. Refused: before a
/// clinician is in (409), a forged link (403), a number that is none (422), and a fourth
/// call for one invitation (429).
#[test]
fn a_patient_whose_browser_fails_is_called_into_the_same_visit() {
    let (mut handset, server, dr, room) = visit_with_a_trunk();
    let id = room["id"].as_str().unwrap();
    let join = link(&room, "Ann");
    let token = join.split_once("?t=").unwrap().1.to_string();
    let call_me = |t: &str, number: &str| {
        let body = json!({ "number": number }).to_string();
        request(
            server.http,
            "POST",
            &format!("/api/v1/rooms/{id}/call-me?t={t}"),
            &[],
            Some(("application/json", body.as_bytes())),
        )
    };
    assert_eq!(call_me(&token, "+15550123").status, 409, "no clinician yet");
    let clinician = Person::enter(&server, &format!("/api/v1/rooms/{id}/join"), Some(&dr));
    let patient = Person::enter(&server, &join, None);
    let pid = patient.pid(&server);
    let admit = format!("/api/v1/rooms/{id}/participants/{pid}/admit");
    assert_eq!(api(&server, "POST", &admit, &dr, None).status, 204);
    assert_eq!(call_me("forged", "+15550123").status, 403);
    assert_eq!(call_me(&token, "call me").status, 422);

    drop(patient);
    let r = call_me(&token, "+15550123");
    assert_eq!(r.status, 202, "{}", r.body);
    let (mut callee, phone) = picks_up(&mut handset, "+15550123");
    let anns = || -> Vec<Value> {
        let me = clinician.state(&server).json();
        me["participants"]
            .as_array()
            .map(|a| a.iter().filter(|p| p["label"] == "Ann").cloned().collect())
            .unwrap_or_default()
    };
    wait_until(
        || {
            anns()
                .iter()
                .any(|a| a["channel"] == "phone" && a["presence"] == "present")
        },
        "Ann is back in the visit on her phone",
    );
    assert_eq!(anns().len(), 1, "her own place: {:?}", anns());
    assert_eq!(anns()[0]["id"].as_u64(), Some(pid), "the same participant");

    ann_and_the_clinician_hear_each_other(&phone, &clinician);
    let _ = &mut callee;
    assert_eq!(
        server.metric("careline_rooms_total{event=\"call_me\"}"),
        1.0
    );
    // A link is not a dialer: three calls per invitation.
    assert_eq!(call_me(&token, "+15550124").status, 202);
    assert_eq!(call_me(&token, "+15550125").status, 202);
    assert_eq!(call_me(&token, "+15550126").status, 429);
}

/// The same from the patient's page, in headless Chromium without a microphone: Join fails,
/// the page offers "We can call your phone", a made-up number gets a hint, her number gets
/// "We are calling ... now", and the phone on the trunk rings and, answered, is in the
/// visit's waiting room as Ann. Screenshots in target/browser-screenshots/room-call-me/.
#[test]
fn a_patient_page_that_cannot_join_offers_to_call_her_phone_in_chromium() {
    use support::chromium::{CHROMIUM, browser_script, screenshots_and_mic};
    let _one_at_a_time = CHROMIUM.lock().unwrap_or_else(|e| e.into_inner());
    let (mut handset, server, dr, room) = visit_with_a_trunk();
    let id = room["id"].as_str().unwrap();
    let clinician = Person::enter(&server, &format!("/api/v1/rooms/{id}/join"), Some(&dr));
    let page_link = room["invitees"][0]["link"].as_str().unwrap().to_string();
    let (shots, _mic) = screenshots_and_mic("room-call-me");
    let summary = browser_script(
        &server,
        "room-call-me.mjs",
        &[
            format!("http://{}", server.http),
            shots.display().to_string(),
            page_link,
            "+1 555 0123".into(),
        ],
    );
    assert_eq!(summary["call_me_before"], false, "{summary}");
    assert_eq!(
        summary["status"],
        "The visit could not be joined: this browser has no microphone it may use.",
        "{summary}"
    );
    assert_eq!(
        summary["bad_number"], "Please check the number: digits, and + for a country code.",
        "{summary}"
    );
    assert_eq!(
        summary["calling"], "We are calling +1 555 0123 now. Answer it to join the visit.",
        "{summary}"
    );
    let (_callee, _phone) = support::sip::pick_up(&mut handset, Duration::from_secs(20));
    wait_until(
        || {
            clinician.state(&server).json()["participants"]
                .as_array()
                .is_some_and(|a| {
                    a.iter().any(|p| {
                        p["label"] == "Ann" && p["channel"] == "phone" && p["presence"] == "waiting"
                    })
                })
        },
        "Ann's phone waits to be let in",
    );
}
