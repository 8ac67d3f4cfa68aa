//! Discharges start follow-ups: an imported FHIR Encounter that ends a hospital stay starts
//! the workflow `[workflows] on_discharge` for its patient, once.
//!
//! A discharge is an Encounter with status `finished`, an end (`period.end`) no longer than
//! `discharge_within_days` ago (a bundle of old history starts nothing), and either a
//! `hospitalization.dischargeDisposition` or an inpatient class (`IMP`, `ACUTE`, `NONAC`,
//! `SS`, HL7 v3 ActEncounterCode). Each starts under the name `enc-ENCOUNTER`, so importing
//! the same bundle again, from the CLI or the API, starts nothing twice.
//!
//! The input has what the brief's discharge follow-up reads: `patient_id`, `encounter_id`,
//! `discharged` (RFC 3339), `medications` (the names of the patient's active
//! MedicationRequests in the import), `primary_care_physician_id` (the Patient's first
//! `generalPractitioner`, or null), and empty `vitals` and `reported_symptoms` for the
//! workflow's own tasks to fill.

use serde_json::{Value, json};

use crate::patient::StoredResource;

/// One follow-up to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    /// The execution's name (`enc-` and the encounter id, made safe for a name).
    pub name: String,
    pub patient_id: String,
    pub input: Value,
}

const INPATIENT: [&str; 4] = ["IMP", "ACUTE", "NONAC", "SS"];

/// The follow-ups the stored resources of one import call for, at `now_ms`.
pub fn starts(stored: &[StoredResource], now_ms: i64, within_days: u32) -> Vec<Start> {
    let within_ms = i64::from(within_days) * 86_400_000;
    let mut out = Vec::new();
    for enc in stored.iter().filter(|r| r.rtype == "Encounter") {
        let r = &enc.resource;
        let Some(patient_id) = enc.patient_id.clone() else {
            continue;
        };
        if r.get("status").and_then(Value::as_str) != Some("finished") {
            continue;
        }
        let class = r.pointer("/class/code").and_then(Value::as_str);
        let hospital = r.pointer("/hospitalization/dischargeDisposition").is_some()
            || class.is_some_and(|c| INPATIENT.contains(&c));
        if !hospital {
            continue;
        }
        let Some(ended) = r
            .pointer("/period/end")
            .and_then(Value::as_str)
            .and_then(crate::db::parse_time)
        else {
            continue;
        };
        if ended > now_ms || now_ms - ended > within_ms {
            continue;
        }
        let medications: Vec<Value> = stored
            .iter()
            .filter(|m| {
                m.rtype == "MedicationRequest" && m.patient_id.as_deref() == Some(&patient_id)
            })
            .filter(|m| m.resource.get("status").and_then(Value::as_str) == Some("active"))
            .filter_map(|m| {
                m.resource
                    .pointer("/medicationCodeableConcept/text")
                    .or_else(|| {
                        m.resource
                            .pointer("/medicationCodeableConcept/coding/0/display")
                    })
                    .cloned()
            })
            .collect();
        let physician = stored
            .iter()
            .find(|p| p.rtype == "Patient" && p.id == patient_id)
            .and_then(|p| p.resource.pointer("/generalPractitioner/0/reference"))
            .and_then(Value::as_str)
            .map(|r| r.rsplit('/').next().unwrap_or(r).to_string());
        let safe: String = enc
            .id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(36)
            .collect();
        out.push(Start {
            name: format!("enc-{safe}"),
            patient_id: patient_id.clone(),
            input: json!({
                "patient_id": patient_id,
                "encounter_id": enc.id,
                "discharged": crate::db::rfc3339(ended),
                "medications": medications,
                "primary_care_physician_id": physician,
                "vitals": {},
                "reported_symptoms": [],
            }),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-05T09:00:00Z.
    const NOW: i64 = 1_796_547_600_000;

    fn res(rtype: &str, id: &str, patient: &str, resource: Value) -> StoredResource {
        StoredResource {
            rtype: rtype.into(),
            id: id.into(),
            patient_id: Some(patient.into()),
            resource,
        }
    }

    fn encounter(id: &str, class: &str, end: &str, extra: Value) -> StoredResource {
        let mut r = json!({"resourceType": "Encounter", "id": id, "status": "finished",
            "class": {"code": class}, "period": {"start": "2026-11-30T08:00:00Z", "end": end}});
        if let (Some(o), Value::Object(e)) = (r.as_object_mut(), extra) {
            o.extend(e);
        }
        res("Encounter", id, "p-1", r)
    }

    #[test]
    fn a_recent_inpatient_stay_starts_one_follow_up_with_the_patient_s_medications() {
        let stored = vec![
            res(
                "Patient",
                "p-1",
                "p-1",
                json!({"resourceType": "Patient", "id": "p-1", "generalPractitioner": [{"reference": "Practitioner/dr-7"}]}),
            ),
            res(
                "MedicationRequest",
                "m-1",
                "p-1",
                json!({"status": "active", "medicationCodeableConcept": {"text": "metformin 500 mg"}}),
            ),
            res(
                "MedicationRequest",
                "m-2",
                "p-1",
                json!({"status": "stopped", "medicationCodeableConcept": {"text": "warfarin"}}),
            ),
            res(
                "MedicationRequest",
                "m-3",
                "p-2",
                json!({"status": "active", "medicationCodeableConcept": {"text": "someone else's"}}),
            ),
            encounter("e/1", "IMP", "2026-12-05T10:00:00Z", json!({})),
        ];
        let got = starts(&stored, NOW, 7);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "enc-e-1");
        assert_eq!(got[0].patient_id, "p-1");
        assert_eq!(
            got[0].input,
            json!({"patient_id": "p-1", "encounter_id": "e/1", "discharged": "2026-12-05T10:00:00Z",
                "medications": ["metformin 500 mg"], "primary_care_physician_id": "dr-7",
                "vitals": {}, "reported_symptoms": []})
        );
    }

    #[test]
    fn visits_old_stays_and_unfinished_ones_start_nothing() {
        let recent = "2026-12-05T10:00:00Z";
        let none = [
            encounter("amb", "AMB", recent, json!({})),
            encounter("old", "IMP", "2026-11-01T10:00:00Z", json!({})),
            encounter("future", "IMP", "2026-12-07T10:00:00Z", json!({})),
            encounter("open", "IMP", recent, json!({"status": "in-progress"})),
            encounter("no-end", "IMP", "not a time", json!({})),
        ];
        for e in none {
            assert!(
                starts(std::slice::from_ref(&e), NOW, 7).is_empty(),
                "{}",
                e.id
            );
        }
        // An emergency visit that ended in a discharge disposition is a stay.
        let er = encounter(
            "er",
            "EMER",
            recent,
            json!({"hospitalization": {"dischargeDisposition": {"text": "home"}}}),
        );
        assert_eq!(starts(&[er], NOW, 7).len(), 1);
        // Unknown physician: null, which the workflow can test for.
        let got = starts(&[encounter("x", "ACUTE", recent, json!({}))], NOW, 7);
        assert_eq!(got[0].input["primary_care_physician_id"], Value::Null);
    }
}
