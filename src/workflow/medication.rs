//! The CheckMedicationRefills task (`careline:check-medication-refills`): which of a
//! discharged patient's medications need a refill soon, from two sources: the `medications`
//! the workflow was started with (the brief's `{"name", "dose", "refill_date"}`) and the
//! patient's active MedicationRequests in the store (their `dispenseRequest`: the validity
//! period, the repeats allowed and the expected supply of each fill). A refill due within
//! `within_days` (7 unless the input says) is listed; a request with no fills left or past its
//! validity needs a new prescription. When any is due, a request for approval goes on the care
//! team's work list (the brief's UC2: a clinician approves; the pharmacy hand-off is theirs),
//! once per task attempt.

use jiff::civil::Date;
use serde::Serialize;
use serde_json::{Value, json};

use crate::patient::summary::concept_text;

pub const CHECK_MEDICATION_REFILLS: &str = "careline:check-medication-refills";

/// Refills due within this many days are listed, unless the input's `within_days` says.
pub const DEFAULT_WITHIN_DAYS: i64 = 7;

/// One medication that needs attention.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Due {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dose: Option<String>,
    /// When the next fill is due (`YYYY-MM-DD`); past dates are overdue.
    pub due: String,
    /// `input` (the workflow's list) or `record` (a MedicationRequest).
    pub source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Fills left after this one, when the request says how many were allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refills_left: Option<i64>,
    /// No fill is left or the prescription's validity is over: a prescriber must renew it.
    pub needs_renewal: bool,
}

fn date_of(v: &Value) -> Option<Date> {
    let s = v.as_str()?;
    s.get(..10)?.parse().ok()
}

/// Days of a FHIR Duration (`value` with `unit`/`code` d, wk, mo).
fn duration_days(d: &Value) -> Option<i64> {
    let value = d.get("value").and_then(Value::as_f64)?;
    let unit = d
        .get("code")
        .or_else(|| d.get("unit"))
        .and_then(Value::as_str)
        .unwrap_or("d");
    let days = match unit.trim_end_matches('s') {
        "d" | "day" => value,
        "wk" | "week" => value * 7.0,
        "mo" | "month" => value * 30.0,
        _ => return None,
    };
    (days >= 1.0).then_some(days.round() as i64)
}

/// The refills due by `today + within_days` (and those overdue), soonest first.
pub fn refills_due(input: &Value, requests: &[Value], today: Date, within_days: i64) -> Vec<Due> {
    let horizon = today
        .checked_add(jiff::Span::new().days(within_days))
        .unwrap_or(today);
    let mut out = Vec::new();
    for m in input
        .get("medications")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(due) = m.get("refill_date").and_then(date_of) else {
            continue;
        };
        if due > horizon {
            continue;
        }
        let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
        out.push(Due {
            name: text("name").unwrap_or_else(|| "medication".into()),
            dose: text("dose"),
            due: due.to_string(),
            source: "input",
            request_id: None,
            refills_left: None,
            needs_renewal: false,
        });
    }
    for r in requests {
        if r.get("status").and_then(Value::as_str) != Some("active") {
            continue;
        }
        let Some(dispense) = r.get("dispenseRequest") else {
            continue;
        };
        let Some(supply) = dispense
            .get("expectedSupplyDuration")
            .and_then(duration_days)
        else {
            continue;
        };
        let Some(start) = dispense
            .pointer("/validityPeriod/start")
            .and_then(date_of)
            .or_else(|| r.get("authoredOn").and_then(date_of))
        else {
            continue;
        };
        // Fills so far: the first at the start, one more each supply period that has begun.
        let elapsed = (today - start).get_days().max(0) as i64;
        let fills = elapsed / supply + 1;
        let due = start
            .checked_add(jiff::Span::new().days(fills * supply))
            .unwrap_or(start);
        if due > horizon {
            continue;
        }
        let allowed = dispense
            .get("numberOfRepeatsAllowed")
            .and_then(Value::as_i64)
            .map(|n| n + 1);
        let refills_left = allowed.map(|a| (a - fills - 1).max(0));
        let expired = dispense
            .pointer("/validityPeriod/end")
            .and_then(date_of)
            .is_some_and(|end| end < due);
        let name = r
            .get("medicationCodeableConcept")
            .and_then(concept_text)
            .or_else(|| {
                r.pointer("/medicationReference/display")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "medication".into());
        out.push(Due {
            name,
            dose: r
                .pointer("/dosageInstruction/0/text")
                .and_then(Value::as_str)
                .map(str::to_string),
            due: due.to_string(),
            source: "record",
            request_id: r.get("id").and_then(Value::as_str).map(str::to_string),
            refills_left,
            needs_renewal: expired || allowed.is_some_and(|a| fills >= a),
        });
    }
    out.sort_by(|a, b| a.due.cmp(&b.due).then(a.name.cmp(&b.name)));
    out
}

/// The task's answer: its input with `refills_due` and the work-list item asking for
/// approval (`refill_request`, null when nothing is due).
pub fn answer(input: &Value, due: &[Due], care_task: Option<&str>) -> Value {
    super::input_with(
        input,
        [
            ("refills_due", json!(due)),
            ("refill_request", json!(care_task)),
        ],
    )
}

/// The orders a clinician's approval of refill request `item` makes: one MedicationRequest
/// per medication due (`refills_due` as the task listed them), `intent: order`, for
/// `patient`, approved by `approver` at `now` (RFC 3339), the prescription it renews named
/// in `priorPrescription` when it came from the record. Each has an identifier
/// (`urn:careline:refill`, `ITEM-N`) and an id (`refill-ITEM-N`) from the item, so the same
/// approval sent twice makes the same orders.
pub fn refill_orders(
    item: &str,
    patient: &str,
    refills_due: &[Value],
    approver: &str,
    now: &str,
) -> Vec<Value> {
    refills_due
        .iter()
        .enumerate()
        .map(|(n, d)| {
            let key = format!("{item}-{}", n + 1);
            let mut mr = json!({
                "resourceType": "MedicationRequest",
                "id": format!("refill-{key}"),
                "identifier": [{"system": REFILL_SYSTEM, "value": key}],
                "status": "active",
                "intent": "order",
                "subject": {"reference": format!("Patient/{patient}")},
                "medicationCodeableConcept": {"text": d.get("name").and_then(Value::as_str).unwrap_or("medication")},
                "authoredOn": now,
                "requester": {"display": approver},
                "note": [{"text": format!("Refill approved in Careline (care task {item}), due {}.",
                    d.get("due").and_then(Value::as_str).unwrap_or("now"))}],
            });
            if let Some(dose) = d.get("dose").and_then(Value::as_str) {
                mr["dosageInstruction"] = json!([{"text": dose}]);
            }
            if let Some(prior) = d.get("request_id").and_then(Value::as_str) {
                mr["priorPrescription"] = json!({"reference": format!("MedicationRequest/{prior}")});
            }
            mr
        })
        .collect()
}

/// The identifier system of the orders [`refill_orders`] makes.
pub const REFILL_SYSTEM: &str = "urn:careline:refill";

/// `orders` as the FHIR transaction a pharmacy system takes: each a conditional create
/// (`ifNoneExist` on its identifier), so a transaction delivered twice creates nothing twice.
pub fn pharmacy_transaction(orders: &[Value]) -> Value {
    let entries: Vec<Value> = orders
        .iter()
        .map(|o| {
            let key = o
                .pointer("/identifier/0/value")
                .and_then(Value::as_str)
                .unwrap_or_default();
            json!({
                "fullUrl": format!("urn:uuid:{}", uuid_of(key)),
                "resource": o,
                "request": {"method": "POST", "url": "MedicationRequest",
                    "ifNoneExist": format!("identifier={REFILL_SYSTEM}|{key}")},
            })
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// A UUID-shaped name derived from `key` (SHA-256), the same for the same key.
fn uuid_of(key: &str) -> String {
    use sha2::Digest;
    let h = hex::encode(&sha2::Sha256::digest(key.as_bytes())[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn the_brief_s_list_gives_the_refills_due_within_the_week() {
        let input = json!({"patient_id": "PAT-2026-00123", "medications": [
            {"name": "Lisinopril", "dose": "10mg", "refill_date": "2026-05-15"},
            {"name": "Metformin", "dose": "500mg", "refill_date": "2026-05-10"},
            {"name": "Aspirin"}
        ]});
        let due = refills_due(&input, &[], d("2026-05-04"), 7);
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(
            (due[0].name.as_str(), due[0].due.as_str()),
            ("Metformin", "2026-05-10")
        );
        assert_eq!(due[0].dose.as_deref(), Some("500mg"));
        let later = refills_due(&input, &[], d("2026-05-09"), 7);
        assert_eq!(later.len(), 2, "both by the 16th: {later:?}");
        assert_eq!(later[0].name, "Metformin", "soonest first");
        let overdue = refills_due(&input, &[], d("2026-06-01"), 0);
        assert_eq!(overdue.len(), 2, "past due dates stay listed");
    }

    #[test]
    fn a_prescription_s_next_fill_is_reckoned_from_its_supply() {
        let request = json!({"resourceType": "MedicationRequest", "id": "mr-1", "status": "active",
            "medicationCodeableConcept": {"text": "Warfarin 5 MG Oral Tablet"},
            "dosageInstruction": [{"text": "one tablet daily"}],
            "authoredOn": "2026-04-01",
            "dispenseRequest": {"validityPeriod": {"start": "2026-04-01", "end": "2026-12-31"},
                "numberOfRepeatsAllowed": 2,
                "expectedSupplyDuration": {"value": 30, "unit": "days", "code": "d"}}});
        // Filled 04-01 (then 05-01): the next fill is due 05-31.
        let due = refills_due(
            &json!({}),
            std::slice::from_ref(&request),
            d("2026-05-25"),
            7,
        );
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].due, "2026-05-31");
        assert_eq!(due[0].request_id.as_deref(), Some("mr-1"));
        assert_eq!(
            due[0].refills_left,
            Some(0),
            "three fills allowed, this is the third"
        );
        assert!(!due[0].needs_renewal);
        assert!(
            refills_due(
                &json!({}),
                std::slice::from_ref(&request),
                d("2026-05-02"),
                7
            )
            .is_empty()
        );
        // After the third fill: due again on 06-30, with no fill left.
        let due = refills_due(
            &json!({}),
            std::slice::from_ref(&request),
            d("2026-06-28"),
            7,
        );
        assert!(due[0].needs_renewal, "{due:?}");
        // Stopped, or without a supply to reckon from: nothing.
        let mut stopped = request.clone();
        stopped["status"] = json!("stopped");
        let mut unknown = request.clone();
        unknown["dispenseRequest"]
            .as_object_mut()
            .unwrap()
            .remove("expectedSupplyDuration");
        assert!(refills_due(&json!({}), &[stopped, unknown], d("2026-05-30"), 7).is_empty());
    }

    #[test]
    fn the_answer_keeps_the_input_and_adds_the_list() {
        let input = json!({"patient_id": "p-1", "medications": []});
        let out = answer(&input, &[], None);
        assert_eq!(out["patient_id"], "p-1");
        assert_eq!(out["refills_due"], json!([]));
        assert_eq!(out["refill_request"], Value::Null);
    }

    #[test]
    fn an_approval_makes_one_order_per_refill_and_the_same_ones_twice() {
        let due = vec![
            json!({"name": "Metformin", "dose": "500mg", "due": "2026-05-10", "source": "input"}),
            json!({"name": "Warfarin 5 MG", "due": "2026-05-11", "source": "record",
                   "request_id": "mr-1", "needs_renewal": true}),
        ];
        let orders = refill_orders("ab12", "p-1", &due, "nurse", "2026-05-04T09:00:00Z");
        assert_eq!(orders.len(), 2);
        assert_eq!(orders[0]["id"], "refill-ab12-1");
        assert_eq!(orders[0]["intent"], "order");
        assert_eq!(orders[0]["subject"]["reference"], "Patient/p-1");
        assert_eq!(orders[0]["dosageInstruction"][0]["text"], "500mg");
        assert!(orders[0].get("priorPrescription").is_none());
        assert_eq!(
            orders[1]["priorPrescription"]["reference"],
            "MedicationRequest/mr-1"
        );
        let tx = pharmacy_transaction(&orders);
        assert_eq!(tx["type"], "transaction");
        assert_eq!(
            tx["entry"][1]["request"]["ifNoneExist"],
            "identifier=urn:careline:refill|ab12-2"
        );
        assert_eq!(
            tx,
            pharmacy_transaction(&refill_orders(
                "ab12",
                "p-1",
                &due,
                "nurse",
                "2026-05-04T09:00:00Z"
            )),
            "the same approval makes the same transaction"
        );
        let url = tx["entry"][0]["fullUrl"].as_str().unwrap();
        assert_eq!(url.len(), "urn:uuid:".len() + 36, "{url}");
    }
}
