//! The CallPatient task without a network: the patient's record read for calling, the
//! calling window, and the task against a scripted dialer and a real (SQLite) store: the
//! number from the record, one call per attempt across a crash, the day's limit, outcomes as
//! Step Functions errors.

use std::sync::Mutex;

use super::*;

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn tz(name: &str) -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get(name).unwrap()
}

#[test]
fn the_best_current_phone_is_called_and_the_dead_never() {
    let patient = json!({"resourceType": "Patient", "telecom": [
        {"system": "email", "value": "a@example.org"},
        {"system": "phone", "use": "old", "value": "555-000-0000", "rank": 1},
        {"system": "phone", "use": "work", "value": "555-111-1111"},
        {"system": "phone", "use": "home", "value": "555-222-2222"},
        {"system": "phone", "use": "mobile", "value": "555-333-3333",
         "period": {"end": "2001-01-01"}},
        {"system": "phone", "use": "mobile", "value": "+1 555 444 4444"}
    ], "communication": [
        {"language": {"coding": [{"code": "en"}]}},
        {"language": {"coding": [{"code": "ja-JP"}]}, "preferred": true}
    ], "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/timezone",
        "valueCode": "Asia/Tokyo"}]});
    let c = callable(&patient).unwrap();
    assert_eq!(
        c.number, "+15554444444",
        "a current mobile before home and work"
    );
    assert_eq!(c.language.as_deref(), Some("ja-jp"));
    assert_eq!(c.time_zone.as_deref(), Some("Asia/Tokyo"));

    let ranked = json!({"telecom": [
        {"system": "phone", "use": "mobile", "value": "555-111-1111", "rank": 2},
        {"system": "phone", "use": "home", "value": "555-222-2222", "rank": 1}
    ]});
    assert_eq!(
        callable(&ranked).unwrap().number,
        "5552222222",
        "rank first"
    );
    assert_eq!(
        callable(&json!({"telecom": [{"system": "email", "value": "x@y"}]})),
        Err(NotCallable::NoPhone)
    );
    assert_eq!(
        callable(&json!({"telecom": [{"system": "phone", "value": "ask the front desk"}]})),
        Err(NotCallable::NoPhone),
        "not a number"
    );
    for dead in [
        json!({"deceasedBoolean": true, "telecom": [{"system": "phone", "value": "5551112222"}]}),
        json!({"deceasedDateTime": "2026-11-30", "telecom": [{"system": "phone", "value": "5551112222"}]}),
    ] {
        assert_eq!(callable(&dead), Err(NotCallable::Deceased));
    }
    let asked = json!({"telecom": [{"system": "phone", "value": "5551112222"}],
        "extension": [{"url": DO_NOT_CALL, "valueBoolean": true}]});
    assert_eq!(callable(&asked), Err(NotCallable::DoNotCall));
    let lifted = json!({"telecom": [{"system": "phone", "value": "5551112222"}],
        "extension": [{"url": DO_NOT_CALL, "valueBoolean": false}]});
    assert!(callable(&lifted).is_ok());
}

#[test]
fn calls_wait_for_the_window_in_the_patients_own_time() {
    let hours = CallingHours::parse("09:00-20:00", "UTC").unwrap();
    let tokyo = tz("Asia/Tokyo");
    // 03:00 in Tokyo (18:00 UTC the day before): wait for 09:00 Tokyo.
    let (open, day) = hours.next_opening(at("2026-12-06T18:00:00Z"), &tokyo);
    assert_eq!(open, at("2026-12-07T00:00:00Z"));
    assert_eq!(day, at("2026-12-06T15:00:00Z"), "the Tokyo day's midnight");
    // 10:00 in Tokyo: now.
    let now = at("2026-12-07T01:00:00Z");
    assert_eq!(hours.next_opening(now, &tokyo).0, now);
    // 20:00 in Tokyo, the window's end: tomorrow at 09:00.
    let (open, _) = hours.next_opening(at("2026-12-07T11:00:00Z"), &tokyo);
    assert_eq!(open, at("2026-12-08T00:00:00Z"));
    // New York across the DST change (2026-11-01): 09:00 EST is 14:00 UTC.
    let ny = tz("America/New_York");
    let (open, _) = hours.next_opening(at("2026-11-01T04:00:00Z"), &ny);
    assert_eq!(open, at("2026-11-01T14:00:00Z"));
    for bad in [
        ("9-5", "UTC"),
        ("20:00-09:00", "UTC"),
        ("09:00-20:00", "Mars/Olympus"),
    ] {
        assert!(CallingHours::parse(bad.0, bad.1).is_err(), "{bad:?}");
    }
}

#[test]
fn unanswered_calls_are_errors_retry_and_catch_can_name() {
    for (cause, name) in [
        ("busy", "CallPatient.Busy"),
        ("no_answer", "CallPatient.NoAnswer"),
        ("declined", "CallPatient.Declined"),
        ("not_found", "CallPatient.NotFound"),
        ("unreachable", "CallPatient.Unreachable"),
        ("trunk_auth", "CallPatient.Failed"),
        ("shutdown", "CallPatient.Failed"),
    ] {
        assert_eq!(failure(cause).error, name);
    }
    let outcome = CallOutcome {
        call_id: "out-1".into(),
        cause: "server_bye",
        answered: true,
        talk_time: Duration::from_secs(42),
        attributes: HashMap::from([
            ("message".to_string(), "Hello".to_string()),
            ("wellbeing".to_string(), "unwell".to_string()),
        ]),
    };
    let out = answered(&json!({"patient_id": "p-1", "message": "Hello"}), &outcome);
    assert_eq!(out["patient_id"], "p-1", "the input goes on");
    assert_eq!(out["call"]["outcome"], "answered");
    assert_eq!(out["call"]["talk_time_secs"], 42);
    assert_eq!(
        out["call"]["answers"],
        json!({"wellbeing": "unwell"}),
        "what the flow collected, not what it was given"
    );
}

/// A dialer that answers each call as scripted, remembering what it was asked.
struct Scripted {
    placed: Mutex<Vec<OutboundCall>>,
    /// The outcome of every call: answered, or a cause; `None`: the call never ends.
    outcome: Option<(bool, &'static str)>,
    /// Calls whose outcome never comes are kept here (their senders).
    pending: Mutex<Vec<tokio::sync::oneshot::Sender<CallOutcome>>>,
}

impl Dialer for Scripted {
    fn place(&self, call: OutboundCall) -> BoxFuture<'_, Result<Placed, DialError>> {
        Box::pin(async move {
            let call_id = call.call_id.clone().expect("the task chooses the id");
            let attributes = {
                let mut a = call.attributes.clone();
                a.insert("wellbeing".into(), "good".into());
                a
            };
            self.placed.lock().unwrap().push(call);
            let (tx, rx) = tokio::sync::oneshot::channel();
            match self.outcome {
                Some((answered, cause)) => {
                    let _ = tx.send(CallOutcome {
                        call_id: call_id.clone(),
                        cause,
                        answered,
                        talk_time: Duration::from_secs(30),
                        attributes,
                    });
                }
                None => self.pending.lock().unwrap().push(tx),
            }
            Ok(Placed {
                call_id,
                outcome: rx,
            })
        })
    }

    fn hang_up(&self, _call_id: &str) {
        self.pending.lock().unwrap().clear();
    }
}

struct World {
    _dir: tempfile::TempDir,
    dialer: Arc<Scripted>,
    task: CallPatientTask,
    db: Db,
}

async fn world(outcome: Option<(bool, &'static str)>, settings: CallPatientConfig) -> World {
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(KeyRing::open(dir.path(), crate::keys::Supplied::default()).unwrap());
    let db = Db::open(None, dir.path()).await.unwrap();
    let tables = Arc::new(crate::patient::alerts::AlertTables::shipped());
    let patients = crate::patient::PatientStore::new(db.clone(), keys.clone(), tables, "1");
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p-1",
            "telecom": [{"system": "phone", "use": "mobile", "value": "555-010-0199"}],
            "communication": [{"language": {"coding": [{"code": "ja"}]}, "preferred": true}]}},
        {"resource": {"resourceType": "Patient", "id": "p-dead", "deceasedBoolean": true,
            "telecom": [{"system": "phone", "value": "555-010-0100"}]}}
    ]});
    patients.import_bundle(&bundle).await.unwrap();
    let audit = crate::audit::Audit::new(db.clone(), keys.clone());
    let dialer = Arc::new(Scripted {
        placed: Mutex::new(Vec::new()),
        outcome,
        pending: Mutex::new(Vec::new()),
    });
    let task = CallPatientTask::new(dialer.clone(), patients, audit, settings).unwrap();
    World {
        _dir: dir,
        dialer,
        task,
        db,
    }
}

/// Calling hours that are always open, whatever the hour the test runs.
fn always() -> CallPatientConfig {
    CallPatientConfig {
        hours: "00:00-24:00".into(),
        ..CallPatientConfig::default()
    }
}

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_patient_is_called_at_the_number_on_record_once_per_attempt() {
    let w = world(Some((true, "server_bye")), always()).await;
    let input = json!({"patient_id": "p-1", "message": "退院おめでとうございます。", "contact_type": "phone"});
    let out = w
        .task
        .invoke(&input, "exec-1/DayOne/1", MINUTE)
        .await
        .unwrap();
    assert_eq!(out["call"]["outcome"], "answered");
    assert_eq!(out["call"]["answers"]["wellbeing"], "good");
    {
        let placed = w.dialer.placed.lock().unwrap();
        assert_eq!(placed.len(), 1);
        assert_eq!(placed[0].number, "5550100199", "the record's number");
        assert_eq!(placed[0].flow.as_deref(), Some("patient-call"));
        assert_eq!(placed[0].attributes["language"], "ja");
        assert_eq!(placed[0].attributes["voice"], "Mizuki");
        assert_eq!(
            placed[0].attributes["message"],
            "退院おめでとうございます。"
        );
    }
    // Delivered again (the answer was lost in a crash): the stored answer, no second call.
    let again = w
        .task
        .invoke(&input, "exec-1/DayOne/1", MINUTE)
        .await
        .unwrap();
    assert_eq!(again, out);
    assert_eq!(w.dialer.placed.lock().unwrap().len(), 1);
    // The read of the record for the call is audited.
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'patient.read' AND patient_id = 'p-1'",
    )
    .fetch_one(w.db.pool())
    .await
    .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_call_cut_short_by_a_crash_is_not_made_again_for_that_attempt() {
    let w = world(None, always()).await;
    let input = json!({"patient_id": "p-1"});
    // The call never ends: the task gives up at its timeout and hangs up.
    let e = w
        .task
        .invoke(&input, "exec-2/DayOne/1", Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(e.error, "States.Timeout");
    assert!(w.dialer.pending.lock().unwrap().is_empty(), "hung up");
    // A process that stopped mid-call left its row without an outcome.
    sqlx::query(
        "INSERT INTO patient_calls_placed (idempotency_key, patient_id, call_id, placed_at) \
         VALUES ('exec-3/DayOne/1', 'p-1', 'out-x', 0)",
    )
    .execute(w.db.pool())
    .await
    .unwrap();
    let e = w
        .task
        .invoke(&input, "exec-3/DayOne/1", MINUTE)
        .await
        .unwrap_err();
    assert_eq!(e.error, "CallPatient.Interrupted");
    assert_eq!(
        w.dialer.placed.lock().unwrap().len(),
        1,
        "only the first call"
    );
}

#[tokio::test]
async fn the_dead_the_unknown_and_the_busy_are_errors_by_name() {
    let w = world(Some((false, "busy")), always()).await;
    let e = w
        .task
        .invoke(&json!({"patient_id": "p-1"}), "e/S/1", MINUTE)
        .await
        .unwrap_err();
    assert_eq!(e.error, "CallPatient.Busy");
    let e = w
        .task
        .invoke(&json!({"patient_id": "p-dead"}), "e/S/2", MINUTE)
        .await
        .unwrap_err();
    assert_eq!(e.error, "CallPatient.Deceased");
    let e = w
        .task
        .invoke(&json!({"patient_id": "nobody"}), "e/S/3", MINUTE)
        .await
        .unwrap_err();
    assert_eq!(e.error, "CallPatient.NoPatient");
    let e = w
        .task
        .invoke(&json!({}), "e/S/4", MINUTE)
        .await
        .unwrap_err();
    assert_eq!(e.error, "CallPatient.NoPatient");
    assert_eq!(
        w.dialer.placed.lock().unwrap().len(),
        1,
        "only the living, known patient was called"
    );
}

#[test]
fn past_the_days_limit_a_call_waits_for_the_next_days_window() {
    let hours = CallingHours::parse("09:00-20:00", "UTC").unwrap();
    let tokyo = tz("Asia/Tokyo");
    let now = at("2026-12-07T01:00:00Z"); // 10:00 in Tokyo
    let ms = |s: &str| at(s).as_millisecond();
    assert_eq!(hours.first_turn(now, &tokyo, &[], 2), now);
    // Two calls today (08:30 and 09:30 Tokyo): the third waits for tomorrow 09:00 Tokyo.
    let today = [ms("2026-12-06T23:30:00Z"), ms("2026-12-07T00:30:00Z")];
    assert_eq!(
        hours.first_turn(now, &tokyo, &today, 2),
        at("2026-12-08T00:00:00Z")
    );
    assert_eq!(hours.first_turn(now, &tokyo, &today, 3), now);
    // Yesterday's calls (23:30 Tokyo on the 6th is 14:30 UTC) do not count today.
    let yesterday = [ms("2026-12-06T14:30:00Z"), ms("2026-12-06T14:40:00Z")];
    assert_eq!(hours.first_turn(now, &tokyo, &yesterday, 2), now);
}
