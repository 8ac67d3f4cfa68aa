//! The patient store and the audit trail against both databases Careline supports: the
//! embedded SQLite file and a real PostgreSQL cluster started for the test. Every conformance
//! bundle (real Synthea output) is imported whole and its summary checked against the bundle's
//! own content.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use careline::audit::{Audit, Break, Event, action};
use careline::db::Db;
use careline::keys::{KeyRing, Supplied};
use careline::patient::{AlertTables, ContactRecord, Lookup, PatientStore};
use serde_json::{Value, json};

/// The repository's own bundles, then the Synthea conformance bundles where they are found.
fn every_bundle() -> Vec<PathBuf> {
    let mut files = support::fixtures::fhir_bundles();
    files.extend(support::fixtures::conformance_json("fhir"));
    files
}

fn read(path: &PathBuf) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn first_code(cc: &Value) -> Option<String> {
    cc.get("coding")?
        .as_array()?
        .first()?
        .get("code")?
        .as_str()
        .map(str::to_string)
}

fn display(cc: &Value) -> String {
    cc.get("text")
        .and_then(Value::as_str)
        .or_else(|| cc["coding"][0]["display"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// What the bundle itself says is active, computed here independently of the product.
struct Expected {
    patient_id: String,
    family: String,
    given: String,
    phone: String,
    birth_date: String,
    mrn: String,
    allergies: Vec<String>,
    medications: Vec<String>,
    conditions: Vec<String>,
}

fn expected(bundle: &Value) -> Expected {
    let mut e = Expected {
        patient_id: String::new(),
        family: String::new(),
        given: String::new(),
        phone: String::new(),
        birth_date: String::new(),
        mrn: String::new(),
        allergies: vec![],
        medications: vec![],
        conditions: vec![],
    };
    for entry in bundle["entry"].as_array().unwrap() {
        let r = &entry["resource"];
        match r["resourceType"].as_str().unwrap() {
            "Patient" => {
                e.patient_id = r["id"].as_str().unwrap().to_string();
                e.family = r["name"][0]["family"].as_str().unwrap().to_string();
                e.given = r["name"][0]["given"][0].as_str().unwrap().to_string();
                e.phone = r["telecom"][0]["value"].as_str().unwrap().to_string();
                e.birth_date = r["birthDate"].as_str().unwrap().to_string();
                e.mrn = r["identifier"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|i| i["type"]["coding"][0]["code"] == "MR")
                    .unwrap()["value"]
                    .as_str()
                    .unwrap()
                    .to_string();
            }
            "AllergyIntolerance"
                if first_code(&r["clinicalStatus"]).as_deref() == Some("active") =>
            {
                e.allergies.push(display(&r["code"]))
            }
            "MedicationRequest" if r["status"] == "active" => {
                e.medications.push(display(&r["medicationCodeableConcept"]))
            }
            "Condition"
                if matches!(
                    first_code(&r["clinicalStatus"]).as_deref(),
                    Some("active" | "recurrence" | "relapse")
                ) =>
            {
                e.conditions.push(display(&r["code"]))
            }
            _ => {}
        }
    }
    e.allergies.sort();
    e.medications.sort();
    e.conditions.sort();
    e
}

fn displays(items: &Value) -> Vec<String> {
    let mut v: Vec<String> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["display"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

struct Fixture {
    _keys_dir: tempfile::TempDir,
    db: Db,
    store: PatientStore,
    audit: Audit,
}

async fn fixture(url: &str) -> Fixture {
    let keys_dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(KeyRing::open(keys_dir.path(), Supplied::default()).unwrap());
    let db = Db::connect(url).await.unwrap();
    let store = PatientStore::new(
        db.clone(),
        keys.clone(),
        Arc::new(AlertTables::shipped()),
        "1",
    );
    let audit = Audit::new(db.clone(), keys);
    Fixture {
        _keys_dir: keys_dir,
        db,
        store,
        audit,
    }
}

async fn row_counts(db: &Db) -> (i64, i64) {
    let (r,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM fhir_resources")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let (i,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM fhir_index")
        .fetch_one(db.pool())
        .await
        .unwrap();
    (r, i)
}

/// The whole store suite; runs once per database engine. Returns the database, still open.
async fn store_suite(url: &str) -> Db {
    let f = fixture(url).await;
    let files = every_bundle();
    let mut all = Vec::new();
    for path in &files {
        let bundle = read(path);
        let entries = bundle["entry"].as_array().unwrap().len();
        let report = f
            .store
            .import_bundle(&bundle)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            report.resources,
            entries,
            "{}: every entry imported",
            path.display()
        );
        all.push((path.clone(), bundle, report));
    }
    assert_eq!(f.store.count_patients().await.unwrap(), files.len() as i64);

    // The summary agrees with each bundle's own content.
    for (path, bundle, _) in &all {
        let want = expected(bundle);
        let summary = f
            .store
            .summary(&want.patient_id)
            .await
            .unwrap()
            .expect("summary");
        let s = serde_json::to_value(&summary).unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        assert_eq!(
            displays(&s["allergies"]),
            want.allergies,
            "{name}: allergies"
        );
        assert_eq!(
            displays(&s["medications"]),
            want.medications,
            "{name}: active medications"
        );
        assert_eq!(
            displays(&s["conditions"]),
            want.conditions,
            "{name}: active conditions"
        );
        assert_eq!(s["demographics"]["family"], want.family.as_str(), "{name}");
        assert_eq!(
            s["demographics"]["birth_date"],
            want.birth_date.as_str(),
            "{name}"
        );
        assert!(
            s["care_plans"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["status"] == "active"),
            "{name}: only active care plans"
        );

        // Caller identification for flows: by number (unverified), by MRN + DOB (verified).
        match f.store.lookup_by_phone(&want.phone).await.unwrap() {
            Lookup::Found(m) => {
                assert_eq!(m.patient_id, want.patient_id);
                assert!(!m.verified, "a caller number is not proof of identity");
                assert!(m.preferred_language.is_some(), "{name}: language");
            }
            other => panic!("{name}: phone lookup gave {other:?}"),
        }
        let digits: String = want.phone.chars().filter(char::is_ascii_digit).collect();
        assert!(matches!(
            f.store
                .lookup_by_phone(&format!(
                    "+1 ({}) {}-{}",
                    &digits[0..3],
                    &digits[3..6],
                    &digits[6..]
                ))
                .await
                .unwrap(),
            Lookup::Found(_)
        ));
        let keyed_dob = want.birth_date.replace('-', "");
        match f
            .store
            .lookup_by_mrn_dob(&want.mrn, &keyed_dob)
            .await
            .unwrap()
        {
            Lookup::Found(m) => {
                assert_eq!(m.patient_id, want.patient_id);
                assert!(m.verified);
            }
            other => panic!("{name}: MRN lookup gave {other:?}"),
        }
        assert_eq!(
            f.store
                .lookup_by_mrn_dob(&want.mrn, "19000101")
                .await
                .unwrap(),
            Lookup::NotFound,
            "a wrong date of birth does not identify"
        );
        let found = f
            .store
            .search_dob_name(&want.birth_date, &want.family)
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].patient_id, want.patient_id);
        // Compare given names too: the name we index by is the bundle's.
        assert!(!want.given.is_empty());
    }
    assert_eq!(
        f.store.lookup_by_phone("+1 555 000 0000").await.unwrap(),
        Lookup::NotFound
    );

    // Idempotent: the same bundles again change nothing.
    let before = row_counts(&f.db).await;
    let first = &all[0];
    let summary_before = serde_json::to_value(
        f.store
            .summary(&expected(&first.1).patient_id)
            .await
            .unwrap(),
    )
    .unwrap();
    for (path, bundle, _) in &all {
        f.store
            .import_bundle(bundle)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    assert_eq!(row_counts(&f.db).await, before, "re-import adds no rows");
    let summary_after = serde_json::to_value(
        f.store
            .summary(&expected(&first.1).patient_id)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        summary_before, summary_after,
        "re-import gives the same data"
    );

    // Atomic: a bundle with one bad entry changes nothing, and the error names the entry.
    let mut bad = all[1].1.clone();
    let n = bad["entry"].as_array().unwrap().len();
    let victim = n - 2;
    bad["entry"][victim]["resource"]["subject"] =
        json!({"reference": "urn:uuid:not-in-this-bundle"});
    bad["entry"][0]["resource"]["name"][0]["family"] = json!("Changed");
    let err = f.store.import_bundle(&bad).await.unwrap_err().to_string();
    assert!(err.starts_with(&format!("entry {victim} (")), "{err}");
    assert!(err.contains("urn:uuid:not-in-this-bundle"), "{err}");
    assert_eq!(row_counts(&f.db).await, before);
    let who = f
        .store
        .summary(&expected(&all[1].1).patient_id)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        who.demographics.family, "Changed",
        "nothing of the bad bundle was written"
    );

    // A failure while writing (not planning) rolls back too: a resource that refers to a
    // patient nobody has.
    let orphan = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Observation", "id": "o-new", "subject": {"reference": "Patient/p-ok"}}},
        {"resource": {"resourceType": "Patient", "id": "p-ok", "name": [{"family": "Okay"}]}},
        {"resource": {"resourceType": "Condition", "id": "c-orphan", "subject": {"reference": "Patient/nobody"}}}]});
    let err = f
        .store
        .import_bundle(&orphan)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("entry 2") && err.contains("Patient/nobody"),
        "{err}"
    );
    assert!(!f.store.exists("p-ok").await.unwrap());

    // Conditional references resolve against stored resources.
    let npi = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:doc", "resource": {"resourceType": "Practitioner", "id": "doc-7",
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "7777"}],
            "name": [{"family": "Who"}]}, "request": {"method": "POST", "url": "Practitioner"}}]});
    f.store.import_bundle(&npi).await.unwrap();
    let pid = expected(&all[2].1).patient_id;
    let team = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:team", "resource": {"resourceType": "CareTeam", "status": "active",
            "subject": {"reference": format!("Patient/{pid}")},
            "participant": [{"member": {"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|7777", "display": "Dr. Who"},
                "role": [{"text": "primary care physician"}]}]},
         "request": {"method": "POST", "url": "CareTeam"}},
        {"fullUrl": "urn:uuid:appt", "resource": {"resourceType": "Appointment", "status": "booked",
            "start": "2999-03-01T10:00:00Z", "description": "Diabetes follow-up",
            "participant": [{"actor": {"reference": format!("Patient/{pid}")}, "status": "accepted"}]},
         "request": {"method": "POST", "url": "Appointment"}},
        {"fullUrl": "urn:uuid:cov", "resource": {"resourceType": "Coverage", "status": "active",
            "beneficiary": {"reference": format!("Patient/{pid}")}, "payor": [{"display": "Medicare"}]},
         "request": {"method": "POST", "url": "Coverage"}}]});
    f.store.import_bundle(&team).await.unwrap();
    let s = f.store.summary(&pid).await.unwrap().unwrap();
    assert_eq!(s.care_team.len(), 1);
    assert_eq!(s.care_team[0].display, "Dr. Who");
    assert_eq!(s.upcoming_appointments[0].display, "Diabetes follow-up");
    assert_eq!(s.coverage[0].details, vec!["payor: Medicare".to_string()]);
    let bundle = f.store.export(&pid).await.unwrap().unwrap();
    let team_ref = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "CareTeam")
        .unwrap()["resource"]["participant"][0]["member"]["reference"]
        .clone();
    assert_eq!(team_ref, "Practitioner/doc-7");

    // Clinical alerts: a penicillin allergy against an active amoxicillin order, warfarin with
    // naproxen.
    let alert_bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "alert-1", "name": [{"family": "Alert"}]}},
        {"resource": {"resourceType": "AllergyIntolerance", "id": "al-1", "patient": {"reference": "Patient/alert-1"},
            "clinicalStatus": {"coding": [{"code": "active"}]}, "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91936005", "display": "Allergy to penicillin"}]}}},
        {"resource": {"resourceType": "MedicationRequest", "id": "mr-1", "subject": {"reference": "Patient/alert-1"}, "status": "active",
            "medicationCodeableConcept": {"coding": [{"display": "Amoxicillin 250 MG Oral Capsule"}]}}},
        {"resource": {"resourceType": "MedicationStatement", "id": "ms-1", "subject": {"reference": "Patient/alert-1"}, "status": "active",
            "medicationCodeableConcept": {"text": "Warfarin Sodium 5 MG Oral Tablet"}}},
        {"resource": {"resourceType": "MedicationRequest", "id": "mr-2", "subject": {"reference": "Patient/alert-1"}, "status": "active",
            "medicationCodeableConcept": {"text": "Naproxen sodium 220 MG Oral Tablet"}}}]});
    f.store.import_bundle(&alert_bundle).await.unwrap();
    let s = f.store.summary("alert-1").await.unwrap().unwrap();
    let kinds: BTreeMap<&str, usize> = s.alerts.iter().fold(BTreeMap::new(), |mut m, a| {
        *m.entry(a.kind).or_default() += 1;
        m
    });
    assert_eq!(kinds.get("drug-allergy"), Some(&1), "{:?}", s.alerts);
    assert_eq!(kinds.get("drug-drug"), Some(&1), "{:?}", s.alerts);

    // Contact history: appended, newest first, shown in the summary.
    for (i, outcome) in ["callback scheduled", "resolved"].iter().enumerate() {
        f.store
            .append_contact(
                &pid,
                ContactRecord {
                    time: format!("2026-01-0{}T10:00:00Z", i + 1),
                    channel: "voice".into(),
                    duration_secs: Some(120),
                    reason: Some("refill".into()),
                    outcome: Some(outcome.to_string()),
                    recording_id: Some(format!("rec-{i}")),
                    ..ContactRecord::default()
                },
            )
            .await
            .unwrap();
    }
    let s = f.store.summary(&pid).await.unwrap().unwrap();
    assert_eq!(s.last_contacts.len(), 2);
    assert_eq!(s.last_contacts[0].outcome.as_deref(), Some("resolved"));
    assert!(
        f.store
            .append_contact(
                "nobody",
                ContactRecord {
                    channel: "voice".into(),
                    ..Default::default()
                }
            )
            .await
            .is_err()
    );

    // Calls and recordings linked to the patient they are about (opaque ids only).
    let other = expected(&all[1].1).patient_id;
    assert_eq!(f.store.patient_of_recording("rec-a").await.unwrap(), None);
    assert_eq!(f.store.patient_of_call("call-1").await.unwrap(), None);
    f.store.link_call("call-1", &other, None).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    f.store
        .link_call("call-1", &pid, Some("rec-a"))
        .await
        .unwrap();
    f.store
        .link_call("call-2", &pid, Some("rec-b"))
        .await
        .unwrap();
    assert_eq!(
        f.store.patient_of_recording("rec-a").await.unwrap(),
        Some(pid.clone())
    );
    assert_eq!(f.store.patient_of_recording("").await.unwrap(), None);
    assert_eq!(
        f.store.patient_of_call("call-1").await.unwrap(),
        Some(pid.clone()),
        "the latest link of the call wins"
    );
    // Linking again moves the recording (the caller was verified as someone else).
    f.store
        .link_call("call-2", &other, Some("rec-b"))
        .await
        .unwrap();
    assert_eq!(
        f.store.patient_of_recording("rec-b").await.unwrap(),
        Some(other.clone())
    );
    let links = f.store.calls_of_patient(&pid).await.unwrap();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(
        (links[0].call_id.as_str(), links[0].recording_id.as_deref()),
        ("call-1", Some("rec-a"))
    );
    let links = f.store.calls_of_patient(&other).await.unwrap();
    assert_eq!(links.len(), 2, "{links:?}");
    assert!(
        links
            .iter()
            .any(|l| l.call_id == "call-1" && l.recording_id.is_none())
    );

    // Export re-imports into an empty store to the same summary.
    let g = fixture_like(&f, url).await;
    let exported = f
        .store
        .export(&expected(&all[3].1).patient_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exported["type"], "collection");
    g.import_bundle(&exported).await.unwrap();
    let a = serde_json::to_value(
        f.store
            .summary(&expected(&all[3].1).patient_id)
            .await
            .unwrap(),
    )
    .unwrap();
    let b =
        serde_json::to_value(g.summary(&expected(&all[3].1).patient_id).await.unwrap()).unwrap();
    assert_eq!(a, b);

    // Audit: append, query, verify; a tampered row is named.
    for i in 0..5 {
        f.audit
            .append(Event::new("alice", action::PATIENT_READ, "success").patient(&format!("p{i}")))
            .await
            .unwrap();
    }
    f.audit
        .append(
            Event::new("bob", action::BREAK_GLASS, "success")
                .patient("p1")
                .secret("unconscious in ER"),
        )
        .await
        .unwrap();
    assert_eq!(f.audit.verify().await.unwrap().unwrap(), 6);
    let rows = f
        .audit
        .query(&careline::audit::Filter {
            patient_id: Some("p1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        f.audit.reveal(&rows[1]).as_deref(),
        Some("unconscious in ER")
    );
    sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
        .execute(f.db.pool())
        .await
        .unwrap();
    let broken = f.audit.verify().await.unwrap().unwrap_err();
    assert_eq!(broken.seq, 3);
    assert_eq!(broken.why, Break::Altered);
    assert!(broken.to_string().starts_with("audit entry 3 "), "{broken}");
    sqlx::query("UPDATE audit_log SET actor = 'alice' WHERE seq = 3")
        .execute(f.db.pool())
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq = 4")
        .execute(f.db.pool())
        .await
        .unwrap();
    let broken = f.audit.verify().await.unwrap().unwrap_err();
    assert_eq!((broken.seq, broken.why), (5, Break::Gap { expected: 4 }));
    f.db.clone()
}

/// A second store on a fresh database of the same engine (keys of its own).
async fn fixture_like(_f: &Fixture, url: &str) -> PatientStore {
    let url = if url.starts_with("sqlite:") {
        let dir = tempfile::tempdir().unwrap().keep();
        format!("sqlite://{}?mode=rwc", dir.join("second.db").display())
    } else {
        let admin = Db::connect(url).await.unwrap();
        sqlx::query("CREATE DATABASE second_store")
            .execute(admin.pool())
            .await
            .unwrap();
        url.rsplit_once('/').unwrap().0.to_string() + "/second_store"
    };
    let keys_dir = tempfile::tempdir().unwrap().keep();
    let keys = Arc::new(KeyRing::open(&keys_dir, Supplied::default()).unwrap());
    PatientStore::new(
        Db::connect(&url).await.unwrap(),
        keys,
        Arc::new(AlertTables::shipped()),
        "1",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_on_sqlite_imports_every_bundle_and_keeps_phi_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("careline.db").display()
    );
    let db = store_suite(&url).await;
    // Closed: SQLite folds its write-ahead log into the file, which then holds everything.
    db.pool().close().await;

    // The database files alone reveal no names, numbers or clinical text.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        // A -wal or -shm file may go away as the last connection closes.
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap_or_default());
    }
    assert!(bytes.len() > 100_000, "the database holds the import");
    assert_sealed(&bytes, "the SQLite file");
    assert!(
        contains_word(b"x \"family\":\"Toy\" y", b"Toy"),
        "the search itself works"
    );
}

/// The database's bytes hold no names, numbers, MRNs or clinical text of any imported
/// patient, and no break-glass reason.
fn assert_sealed(bytes: &[u8], what: &str) {
    for path in every_bundle() {
        let want = expected(&read(&path));
        let digits: String = want.phone.chars().filter(char::is_ascii_digit).collect();
        for needle in [
            want.family.clone(),
            want.given.clone(),
            want.phone.clone(),
            digits.clone(),
            format!("+1{digits}"),
            want.mrn.clone(),
        ]
        .into_iter()
        .chain(want.allergies.iter().cloned())
        .chain(want.conditions.iter().cloned())
        {
            assert!(
                !contains_word(bytes, needle.as_bytes()),
                "`{needle}` is in {what} in clear"
            );
        }
    }
    assert!(
        !contains_word(bytes, b"unconscious in ER"),
        "a break-glass reason is sealed in {what}"
    );
}

/// `needle` as a whole word: not inside a longer run of letters, digits or base64/hex
/// characters (a sealed value is such a run, and short names occur in it by chance).
fn contains_word(hay: &[u8], needle: &[u8]) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b"+/=_-".contains(&b);
    // Bytes as Latin-1 text (one char per byte, so offsets agree), searched with str's fast
    // substring search: the PostgreSQL cluster is tens of megabytes.
    let text: String = hay.iter().map(|&b| b as char).collect();
    let pattern: String = needle.iter().map(|&b| b as char).collect();
    text.match_indices(&pattern).any(|(at, _)| {
        let i = text[..at].chars().count();
        (i == 0 || !word(hay[i - 1])) && hay.get(i + needle.len()).is_none_or(|b| !word(*b))
    })
}

/// Call records on this database: one per call however often its end is reported, the first
/// wrap-up kept, filtered by queue and agent.
async fn call_records_suite(db: &Db) {
    use careline::call::CallEnd;
    use careline::call::core::QueueStay;
    use careline::call_records::{CallRecords, Filter};
    let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
    let records = CallRecords::new(db.clone());
    let end = CallEnd {
        call_id: "pg-call-1".into(),
        cause: "agent_hangup",
        answered_at: at("2026-12-07T09:00:00Z"),
        duration: std::time::Duration::from_secs(120),
        patient: None,
        recordings: vec![],
        reason: None,
        queue: Some("triage-urgent".into()),
        direction: "inbound",
        channel: "browser",
        queue_stays: vec![QueueStay {
            queue: "triage-urgent".into(),
            enqueued_at: at("2026-12-07T09:00:30Z"),
            answered_at: Some(at("2026-12-07T09:00:45Z")),
            agent: Some("ana".into()),
        }],
    };
    records.insert(&end, false).await.unwrap();
    records.insert(&end, false).await.unwrap();
    records
        .set_disposition("pg-call-1", "advice-given", "ana", 1)
        .await
        .unwrap();
    records
        .set_disposition("pg-call-1", "no-action", "ana", 2)
        .await
        .unwrap();
    let found = records
        .list(&Filter {
            agent: Some("ana".into()),
            queue: Some("triage-urgent".into()),
            limit: 10,
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].disposition.as_deref(), Some("advice-given"));
    assert_eq!(found[0].wait_secs, Some(15));
    assert_eq!(found[0].channel, "browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_on_postgresql_behaves_the_same() {
    let pg = support::postgres::PgCluster::start();
    let db = store_suite(&pg.url("postgres")).await;
    call_records_suite(&db).await;
    // Written out: the tables' files and the write-ahead log then hold everything stored.
    sqlx::query("CHECKPOINT").execute(db.pool()).await.unwrap();
    db.pool().close().await;
    let mut bytes = Vec::new();
    let mut dirs = vec![pg.data_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                bytes.extend(std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    // The rows are on disk (each patient's id is stored in clear, as the key), so what is
    // not found in clear below is sealed, not merely unwritten.
    // (A plain search: PostgreSQL writes a short text right after a length byte.)
    let text: String = bytes.iter().map(|&b| b as char).collect();
    for path in every_bundle() {
        let id = expected(&read(&path)).patient_id;
        assert!(
            text.contains(&id),
            "patient {id} is not in the cluster's files"
        );
    }
    assert_sealed(&bytes, "the PostgreSQL cluster's files");
}
