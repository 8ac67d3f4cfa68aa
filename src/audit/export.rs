//! Audit entries as auditors take them away: JSON lines, or FHIR R4 AuditEvent resources
//! (https://hl7.org/fhir/R4/auditevent.html) in a Bundle.

use serde_json::{Value, json};

use super::Entry;
use crate::db::rfc3339;

/// One entry as a JSON object (one line of a JSON-lines export).
pub(crate) fn json_entry(e: &Entry, revealed: Option<String>) -> Value {
    let detail: Value = serde_json::from_str(&e.detail).unwrap_or_else(|_| json!({}));
    let mut v = json!({
        "seq": e.seq,
        "time": rfc3339(e.at),
        "actor": e.actor,
        "action": e.action,
        "outcome": e.outcome,
        "patient_id": e.patient_id,
        "detail": detail,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    });
    if let Some(text) = revealed {
        v["reason"] = Value::String(text);
    }
    v
}

/// FHIR AuditEvent. Action codes follow the AuditEvent action value set (C, R, U, D, E);
/// outcome `0` success, `4` minor failure (a denial), `8` serious failure.
pub(crate) fn audit_event(e: &Entry, revealed: Option<String>) -> Value {
    let (type_code, type_display) = if e.action.starts_with("login") || e.action == "logout" {
        ("110114", "User Authentication")
    } else if e.action.starts_with("call.") || e.action == "config.change" || e.action == "user.add"
    {
        ("110100", "Application Activity")
    } else {
        ("rest", "RESTful Operation")
    };
    let type_system = if type_code == "rest" {
        "http://terminology.hl7.org/CodeSystem/audit-event-type"
    } else {
        "http://dicom.nema.org/resources/ontology/DCM"
    };
    let fhir_action = match e.action.as_str() {
        "patient.write" | "contact.write" | "user.add" | "config.change" => "U",
        "recording.delete" => "D",
        "patient.lookup" | "patient.read" | "patient.export" | "recording.read" | "audit.read" => {
            "R"
        }
        _ => "E",
    };
    let outcome = match e.outcome.as_str() {
        "success" => "0",
        "denied" => "4",
        _ => "8",
    };
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": format!("audit-{}", e.seq),
        "type": {"system": type_system, "code": type_code, "display": type_display},
        "subtype": [{"system": "urn:careline:audit-action", "code": e.action}],
        "action": fhir_action,
        "recorded": rfc3339(e.at),
        "outcome": outcome,
        "outcomeDesc": e.outcome,
        "agent": [{
            "who": {"identifier": {"system": "urn:careline:user", "value": e.actor}},
            "requestor": true,
        }],
        "source": {"observer": {"display": "careline"}},
        "extension": [{"url": "urn:careline:audit-hash", "valueString": e.hash}],
    });
    if e.action == "break_glass" {
        // HL7 v3 ActReason BTG ("break the glass"): emergency access outside normal rights.
        event["purposeOfEvent"] = json!([{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
            "code": "BTG", "display": "break the glass"}], "text": revealed}]);
    }
    let mut entities = Vec::new();
    if let Some(p) = &e.patient_id {
        entities.push(json!({"what": {"reference": format!("Patient/{p}")},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"}}));
    }
    entities.push(json!({"detail": [{"type": "detail", "valueString": e.detail}]}));
    event["entity"] = Value::Array(entities);
    event
}

pub(crate) fn fhir_bundle(events: Vec<Value>) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": events.len(),
        "entry": events.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>(),
    })
}
