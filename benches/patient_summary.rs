//! Screen-pop summary latency with 100,000 patients stored in the embedded SQLite database.
//!
//! `cargo bench --bench patient_summary` (CARELINE_BENCH_PATIENTS=N changes the population).
//! The eight Synthea conformance patients (50-100 summary resources each, plus hundreds of
//! encounters, observations and claims) are imported among synthetic patients of a dozen
//! resources each; the summary of a random patient is then fetched repeatedly, one at a
//! time, as the API does (query, unseal every resource, build summary and alerts).
//! Target (issue 6): p99 under 20 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use careline::db::Db;
use careline::keys::{KeyRing, Supplied};
use careline::patient::{AlertTables, PatientStore};
use serde_json::{Value, json};

fn synthetic(n: usize) -> Vec<Value> {
    let mut entries = Vec::with_capacity(13);
    let id = format!("syn-{n:07}");
    let subject = json!({"reference": format!("Patient/{id}")});
    entries.push(json!({"resource": {"resourceType": "Patient", "id": id,
        "identifier": [{"type": {"coding": [{"code": "MR"}]}, "system": "urn:bench:mrn", "value": format!("MRN{n:08}")}],
        "name": [{"use": "official", "family": format!("Family{}", n % 5000), "given": [format!("Given{}", n % 977)]}],
        "telecom": [{"system": "phone", "value": format!("555-{:03}-{:04}", n / 10000 % 1000, n % 10000)}],
        "birthDate": format!("19{:02}-{:02}-{:02}", 30 + n % 70, 1 + n % 12, 1 + n % 28),
        "communication": [{"language": {"coding": [{"code": "en"}]}}]}}));
    for (i, a) in ["Allergy to penicillin", "Allergy to peanuts"]
        .iter()
        .enumerate()
    {
        entries.push(json!({"resource": {"resourceType": "AllergyIntolerance", "id": format!("{id}-a{i}"), "patient": subject,
            "clinicalStatus": {"coding": [{"code": "active"}]}, "code": {"coding": [{"display": a}]}}}));
    }
    for (i, m) in [
        "Lisinopril 10 MG Oral Tablet",
        "Metformin 500 MG Oral Tablet",
        "Naproxen sodium 220 MG Oral Tablet",
    ]
    .iter()
    .enumerate()
    {
        entries.push(json!({"resource": {"resourceType": "MedicationRequest", "id": format!("{id}-m{i}"), "subject": subject,
            "status": "active", "medicationCodeableConcept": {"coding": [{"display": m}]}}}));
    }
    for (i, c) in ["Hypertension", "Diabetes mellitus type 2"]
        .iter()
        .enumerate()
    {
        entries.push(json!({"resource": {"resourceType": "Condition", "id": format!("{id}-c{i}"), "subject": subject,
            "clinicalStatus": {"coding": [{"code": "active"}]}, "code": {"text": c}}}));
    }
    entries.push(json!({"resource": {"resourceType": "CarePlan", "id": format!("{id}-cp"), "subject": subject, "status": "active",
        "category": [{"text": "Diabetes self management"}]}}));
    for i in 0..4 {
        entries.push(json!({"resource": {"resourceType": "Observation", "id": format!("{id}-o{i}"), "subject": subject,
            "status": "final", "code": {"text": "Body weight"}, "valueQuantity": {"value": 70 + i, "unit": "kg"}}}));
    }
    entries
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label}: n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms",
        samples.len(),
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.90)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap())
    );
}

fn main() {
    let total: usize = std::env::var("CARELINE_BENCH_PATIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(KeyRing::open(dir.path(), Supplied::default()).unwrap());
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("careline.db").display()
        );
        let db = Db::connect(&url).await.unwrap();
        let store = PatientStore::new(db, keys, Arc::new(AlertTables::shipped()), "1");

        // The Synthea bundles of the conformance corpus where they are, else the repository's
        // own fixtures (a bare clone).
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let conformance = std::env::var_os("CARELINE_CONFORMANCE_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| root.join("../shared/conformance"))
            .join("fhir");
        let fhir = if conformance.is_dir() {
            conformance
        } else {
            root.join("tests/fixtures/fhir")
        };
        println!("real bundles from {}", fhir.display());
        let mut real = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(&fhir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for f in files {
            let bundle: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
            real.extend(store.import_bundle(&bundle).await.unwrap().patients);
        }
        let started = Instant::now();
        let batch = 500;
        let synthetic_count = total.saturating_sub(real.len());
        let mut n = 0;
        while n < synthetic_count {
            let entries: Vec<Value> = (n..(n + batch).min(synthetic_count))
                .flat_map(synthetic)
                .collect();
            let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": entries});
            store.import_bundle(&bundle).await.unwrap();
            n += batch;
        }
        let patients = store.count_patients().await.unwrap();
        println!(
            "stored {patients} patients ({} synthetic in {:.1} s)",
            synthetic_count,
            started.elapsed().as_secs_f64()
        );

        let mut rng_state = 0x9e3779b97f4a7c15u64;
        let mut next = move || {
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            rng_state
        };
        for _ in 0..200 {
            let id = format!("syn-{:07}", next() as usize % synthetic_count.max(1));
            let _ = store.summary(&id).await.unwrap();
        }
        let mut synthetic_samples = Vec::new();
        let mut real_samples = Vec::new();
        for i in 0..4000 {
            if i % 4 == 0 {
                let id = &real[next() as usize % real.len()];
                let t = Instant::now();
                let s = store.summary(id).await.unwrap().unwrap();
                real_samples.push(t.elapsed());
                assert!(!s.allergies.is_empty() || !s.conditions.is_empty());
            } else {
                let id = format!("syn-{:07}", next() as usize % synthetic_count.max(1));
                let t = Instant::now();
                let s = store.summary(&id).await.unwrap().unwrap();
                synthetic_samples.push(t.elapsed());
                assert_eq!(s.medications.len(), 3);
            }
        }
        report(
            "summary, imported (Synthea or fixture) patients",
            real_samples.clone(),
        );
        report("summary, synthetic patients", synthetic_samples.clone());
        let mut all = real_samples;
        all.extend(synthetic_samples);
        report("summary, all", all);
    });
}
