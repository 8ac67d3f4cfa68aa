//! The screen-pop summary (sans-IO): what the person answering a patient's call needs on one
//! screen, built from the patient's decrypted resources, contact history and the alert tables.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::alerts::{self, Alert, AlertTables, Coded};

/// The resource types the summary reads (the store fetches only these).
pub(crate) const SUMMARY_TYPES: &[&str] = &[
    "Patient",
    "AllergyIntolerance",
    "MedicationRequest",
    "MedicationStatement",
    "Condition",
    "CarePlan",
    "CareTeam",
    "Coverage",
    "Appointment",
];

/// One call or message about the patient (the product brief's
/// `update_patient_contact_history`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactRecord {
    #[serde(default)]
    pub id: String,
    /// RFC 3339; defaults to now when appended.
    #[serde(default)]
    pub time: String,
    /// `voice`, `callback`, `sms`, `chat`, `video`...
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// Who handled it (set by the server from the caller's identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// The most each free-text field of a contact record holds, in bytes: a record is read on
/// every screen-pop of its patient (the last five are in the summary), so one oversized note
/// must not make every later summary huge. Notes get room for a long clinical note.
pub(crate) const CONTACT_LIMITS: &[(&str, usize)] = &[
    ("channel", 32),
    ("reason", 1_000),
    ("outcome", 1_000),
    ("notes", 16_384),
    ("recording_id", 128),
    ("call_id", 256),
];

impl ContactRecord {
    /// The free-text fields by name, for the limits.
    fn texts(&self) -> [(&'static str, Option<&str>); 6] {
        [
            ("channel", Some(self.channel.as_str())),
            ("reason", self.reason.as_deref()),
            ("outcome", self.outcome.as_deref()),
            ("notes", self.notes.as_deref()),
            ("recording_id", self.recording_id.as_deref()),
            ("call_id", self.call_id.as_deref()),
        ]
    }

    /// The first field longer than its limit, with the limit.
    pub fn over_limit(&self) -> Option<(&'static str, usize)> {
        self.texts().into_iter().find_map(|(name, text)| {
            let max = limit_of(name);
            text.is_some_and(|t| t.len() > max).then_some((name, max))
        })
    }

    /// Cuts every field to its limit (at a character boundary): for records the server writes
    /// itself from what a flow gathered, which should be kept rather than refused.
    pub fn truncate_to_limits(&mut self) {
        fn cut(text: &mut String, max: usize) {
            if text.len() > max {
                let mut end = max;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
        }
        cut(&mut self.channel, limit_of("channel"));
        for (name, field) in [
            ("reason", &mut self.reason),
            ("outcome", &mut self.outcome),
            ("notes", &mut self.notes),
            ("recording_id", &mut self.recording_id),
            ("call_id", &mut self.call_id),
        ] {
            if let Some(t) = field {
                cut(t, limit_of(name));
            }
        }
    }
}

fn limit_of(name: &str) -> usize {
    CONTACT_LIMITS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| *m)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Demographics {
    pub name: String,
    pub given: Vec<String>,
    pub family: String,
    pub gender: Option<String>,
    pub birth_date: Option<String>,
    pub phones: Vec<String>,
    pub mrn: Option<String>,
    pub preferred_language: Option<String>,
    pub address: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub id: String,
    pub display: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub patient_id: String,
    pub demographics: Demographics,
    pub allergies: Vec<Item>,
    pub medications: Vec<Item>,
    pub conditions: Vec<Item>,
    pub care_plans: Vec<Item>,
    pub care_team: Vec<Item>,
    pub coverage: Vec<Item>,
    pub upcoming_appointments: Vec<Item>,
    pub last_contacts: Vec<ContactRecord>,
    pub alerts: Vec<Alert>,
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The text of a CodeableConcept: `text`, else the first coding's display, else its code.
pub(crate) fn concept_text(cc: &Value) -> Option<String> {
    s(cc, "text").or_else(|| {
        cc.get("coding")?
            .as_array()?
            .iter()
            .find_map(|c| s(c, "display").or_else(|| s(c, "code")))
    })
}

fn concept_codes(cc: &Value) -> Vec<String> {
    cc.get("coding")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| s(c, "code"))
        .collect()
}

fn first_code(cc: &Value) -> Option<String> {
    concept_codes(cc).into_iter().next()
}

/// `clinicalStatus.coding[0].code` (R4 CodeableConcept), or a bare string (older exports).
fn clinical_status(r: &Value) -> Option<String> {
    let cs = r.get("clinicalStatus")?;
    cs.as_str().map(str::to_string).or_else(|| first_code(cs))
}

fn verification_refuted(r: &Value) -> bool {
    r.get("verificationStatus")
        .and_then(|v| v.as_str().map(str::to_string).or_else(|| first_code(v)))
        .is_some_and(|c| c == "refuted" || c == "entered-in-error")
}

fn medication_concept(r: &Value) -> Value {
    r.get("medicationCodeableConcept")
        .cloned()
        .or_else(|| {
            r.get("medicationReference")
                .and_then(|m| s(m, "display"))
                .map(|d| serde_json::json!({"text": d}))
        })
        .unwrap_or(Value::Null)
}

fn human_name(n: &Value) -> (String, Vec<String>, String) {
    let family = s(n, "family").unwrap_or_default();
    let given: Vec<String> = n
        .get("given")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str().map(str::to_string))
        .collect();
    let full = s(n, "text").unwrap_or_else(|| {
        let mut parts = given.clone();
        if !family.is_empty() {
            parts.push(family.clone());
        }
        parts.join(" ")
    });
    (full, given, family)
}

/// Preferred language as a BCP 47 tag: the `preferred` communication, else the first.
pub(crate) fn preferred_language(patient: &Value) -> Option<String> {
    let comms = patient.get("communication")?.as_array()?;
    let chosen = comms
        .iter()
        .find(|c| c.get("preferred").and_then(Value::as_bool) == Some(true))
        .or_else(|| comms.first())?;
    let lang = chosen.get("language")?;
    first_code(lang).or_else(|| concept_text(lang))
}

pub(crate) fn demographics(patient: &Value) -> Demographics {
    let names = patient.get("name").and_then(Value::as_array);
    let name = names.and_then(|ns| {
        ns.iter()
            .find(|n| s(n, "use").as_deref() == Some("official"))
            .or_else(|| ns.first())
    });
    let (full, given, family) = name.map(human_name).unwrap_or_default();
    let phones = patient
        .get("telecom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| {
            matches!(
                s(t, "system").as_deref(),
                Some("phone") | Some("sms") | None
            )
        })
        .filter_map(|t| s(t, "value"))
        .collect();
    let address = patient
        .get("address")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .map(|a| {
            let lines: Vec<String> = a
                .get("line")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|l| l.as_str().map(str::to_string))
                .chain(
                    ["city", "state", "postalCode"]
                        .iter()
                        .filter_map(|k| s(a, k)),
                )
                .collect();
            lines.join(", ")
        });
    Demographics {
        name: full,
        given,
        family,
        gender: s(patient, "gender"),
        birth_date: s(patient, "birthDate"),
        phones,
        mrn: super::bundle::mrns(patient).into_iter().next(),
        preferred_language: preferred_language(patient),
        address,
    }
}

fn item(r: &Value, concept: &Value, status: Option<String>, since: Option<String>) -> Item {
    Item {
        id: s(r, "id").unwrap_or_default(),
        display: concept_text(concept).unwrap_or_else(|| "(no description)".into()),
        code: first_code(concept),
        status,
        since,
        details: Vec::new(),
    }
}

/// Whether a resource counts as active for the summary.
pub(crate) fn is_active(rtype: &str, r: &Value) -> bool {
    let status = s(r, "status");
    match rtype {
        "AllergyIntolerance" => {
            !verification_refuted(r) && clinical_status(r).is_none_or(|c| c == "active")
        }
        "Condition" => {
            !verification_refuted(r)
                && matches!(
                    clinical_status(r).as_deref(),
                    Some("active" | "recurrence" | "relapse")
                )
        }
        "MedicationRequest" => status.as_deref() == Some("active"),
        "MedicationStatement" => matches!(status.as_deref(), Some("active" | "intended")),
        "CarePlan" => status.as_deref() == Some("active"),
        "CareTeam" => status.as_deref().is_none_or(|s| s == "active"),
        "Coverage" => status.as_deref().is_none_or(|s| s == "active"),
        "Appointment" => matches!(
            status.as_deref(),
            Some("proposed" | "pending" | "booked" | "arrived" | "checked-in" | "waitlist")
        ),
        _ => true,
    }
}

/// Builds the summary. `resources` are (type, resource) of one patient; `contacts` newest
/// first; `now_ms` decides which appointments are upcoming.
pub(crate) fn build(
    patient_id: &str,
    resources: &[(String, Value)],
    contacts: Vec<ContactRecord>,
    now_ms: i64,
    tables: &AlertTables,
) -> Summary {
    let mut summary = Summary {
        patient_id: patient_id.to_string(),
        demographics: Demographics::default(),
        allergies: vec![],
        medications: vec![],
        conditions: vec![],
        care_plans: vec![],
        care_team: vec![],
        coverage: vec![],
        upcoming_appointments: vec![],
        last_contacts: contacts,
        alerts: vec![],
    };
    let mut allergy_codes = Vec::new();
    let mut med_codes = Vec::new();
    let mut appointments: Vec<(i64, Item)> = Vec::new();
    for (rtype, r) in resources {
        if rtype != "Patient" && !is_active(rtype, r) {
            continue;
        }
        match rtype.as_str() {
            "Patient" => summary.demographics = demographics(r),
            "AllergyIntolerance" => {
                let code = r.get("code").cloned().unwrap_or(Value::Null);
                let mut it = item(
                    r,
                    &code,
                    clinical_status(r),
                    s(r, "recordedDate").or_else(|| s(r, "onsetDateTime")),
                );
                if let Some(c) = s(r, "criticality") {
                    it.details.push(format!("criticality: {c}"));
                }
                for cat in r
                    .get("category")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(c) = cat.as_str() {
                        it.details.push(format!("category: {c}"));
                    }
                }
                for reaction in r
                    .get("reaction")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    for m in reaction
                        .get("manifestation")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(t) = concept_text(m) {
                            it.details.push(format!("reaction: {t}"));
                        }
                    }
                }
                allergy_codes.push(Coded {
                    display: it.display.clone(),
                    codes: concept_codes(&code),
                });
                summary.allergies.push(it);
            }
            "MedicationRequest" | "MedicationStatement" => {
                let concept = medication_concept(r);
                let mut it = item(
                    r,
                    &concept,
                    s(r, "status"),
                    s(r, "authoredOn").or_else(|| s(r, "dateAsserted")),
                );
                for d in r
                    .get("dosageInstruction")
                    .or_else(|| r.get("dosage"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(t) = s(d, "text") {
                        it.details.push(t);
                    }
                }
                med_codes.push(Coded {
                    display: it.display.clone(),
                    codes: concept_codes(&concept),
                });
                summary.medications.push(it);
            }
            "Condition" => {
                let code = r.get("code").cloned().unwrap_or(Value::Null);
                summary
                    .conditions
                    .push(item(r, &code, clinical_status(r), s(r, "onsetDateTime")));
            }
            "CarePlan" => {
                let category = r
                    .get("category")
                    .and_then(Value::as_array)
                    .and_then(|c| c.iter().rev().find_map(concept_text));
                let title = s(r, "title")
                    .or(category)
                    .unwrap_or_else(|| "Care plan".into());
                let mut it = item(
                    r,
                    &serde_json::json!({"text": title}),
                    s(r, "status"),
                    r.get("period").and_then(|p| s(p, "start")),
                );
                for a in r
                    .get("activity")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(detail) = a.get("detail") {
                        let what = detail
                            .get("code")
                            .and_then(concept_text)
                            .or_else(|| s(detail, "description"));
                        if let Some(what) = what {
                            let st = s(detail, "status")
                                .map(|s| format!(" ({s})"))
                                .unwrap_or_default();
                            it.details.push(format!("{what}{st}"));
                        }
                    }
                }
                summary.care_plans.push(it);
            }
            "CareTeam" => {
                for p in r
                    .get("participant")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let who = p
                        .get("member")
                        .and_then(|m| s(m, "display"))
                        .or_else(|| p.get("member").and_then(|m| s(m, "reference")));
                    let role = p
                        .get("role")
                        .and_then(Value::as_array)
                        .and_then(|rs| rs.iter().find_map(concept_text));
                    if let Some(who) = who {
                        summary.care_team.push(Item {
                            id: s(r, "id").unwrap_or_default(),
                            display: who,
                            code: None,
                            status: s(r, "status"),
                            since: None,
                            details: role.into_iter().collect(),
                        });
                    }
                }
            }
            "Coverage" => {
                let kind = r
                    .get("type")
                    .and_then(concept_text)
                    .unwrap_or_else(|| "Coverage".into());
                let mut it = item(
                    r,
                    &serde_json::json!({"text": kind}),
                    s(r, "status"),
                    r.get("period").and_then(|p| s(p, "start")),
                );
                for p in r
                    .get("payor")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(d) = s(p, "display") {
                        it.details.push(format!("payor: {d}"));
                    }
                }
                if let Some(id) = s(r, "subscriberId") {
                    it.details.push(format!("member id: {id}"));
                }
                summary.coverage.push(it);
            }
            "Appointment" => {
                let Some(start) = s(r, "start") else { continue };
                let Some(at) = crate::db::parse_time(&start) else {
                    continue;
                };
                if at < now_ms {
                    continue;
                }
                let what = r
                    .get("serviceType")
                    .and_then(Value::as_array)
                    .and_then(|t| t.iter().find_map(concept_text))
                    .or_else(|| s(r, "description"))
                    .or_else(|| r.get("appointmentType").and_then(concept_text))
                    .unwrap_or_else(|| "Appointment".into());
                let it = item(
                    r,
                    &serde_json::json!({"text": what}),
                    s(r, "status"),
                    Some(start),
                );
                appointments.push((at, it));
            }
            _ => {}
        }
    }
    appointments.sort_by_key(|(at, _)| *at);
    summary.upcoming_appointments = appointments.into_iter().take(5).map(|(_, i)| i).collect();
    summary.alerts = alerts::check(tables, &allergy_codes, &med_codes);
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_active_items_and_future_appointments_show() {
        let resources = vec![
            (
                "Patient".to_string(),
                json!({"id": "p", "name": [{"use": "official", "family": "Doe", "given": ["Jo"]}],
                "communication": [{"language": {"coding": [{"code": "es"}]}, "preferred": true}]}),
            ),
            (
                "AllergyIntolerance".into(),
                json!({"id": "a1", "clinicalStatus": {"coding": [{"code": "active"}]},
                "code": {"coding": [{"display": "Allergy to penicillin"}]}}),
            ),
            (
                "AllergyIntolerance".into(),
                json!({"id": "a2", "clinicalStatus": {"coding": [{"code": "resolved"}]},
                "code": {"text": "Old"}}),
            ),
            (
                "MedicationRequest".into(),
                json!({"id": "m1", "status": "active",
                "medicationCodeableConcept": {"coding": [{"code": "308182", "display": "Amoxicillin 250 MG Oral Capsule"}]}}),
            ),
            (
                "MedicationRequest".into(),
                json!({"id": "m2", "status": "stopped", "medicationCodeableConcept": {"text": "X"}}),
            ),
            (
                "Condition".into(),
                json!({"id": "c1", "clinicalStatus": {"coding": [{"code": "active"}]}, "code": {"text": "Asthma"}}),
            ),
            (
                "Appointment".into(),
                json!({"id": "ap1", "status": "booked", "start": "2999-01-01T09:00:00Z", "description": "Follow-up"}),
            ),
            (
                "Appointment".into(),
                json!({"id": "ap0", "status": "booked", "start": "2000-01-01T09:00:00Z"}),
            ),
        ];
        let s = build(
            "p",
            &resources,
            vec![],
            1_700_000_000_000,
            &AlertTables::shipped(),
        );
        assert_eq!(s.demographics.name, "Jo Doe");
        assert_eq!(s.demographics.preferred_language.as_deref(), Some("es"));
        assert_eq!(s.allergies.len(), 1);
        assert_eq!(s.medications.len(), 1);
        assert_eq!(s.conditions[0].display, "Asthma");
        assert_eq!(s.upcoming_appointments.len(), 1);
        assert_eq!(s.upcoming_appointments[0].display, "Follow-up");
        assert_eq!(s.alerts.len(), 1);
        assert_eq!(s.alerts[0].kind, "drug-allergy");
    }
}
