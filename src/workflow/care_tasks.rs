//! The care team's work list: the built-in notification tasks of workflows
//! (`careline:notify-physician`, `careline:notify-care-team`) put an item here for a person to
//! act on, read and closed over `/api/v1/care-tasks`.
//!
//! An item is keyed by the invocation's idempotency key, so an invocation delivered again
//! (after a crash between the item being written and the answer being stored) finds its item
//! and adds none: the physician is told once. The task input (reason, patient data) is sealed.

use std::sync::Arc;

use serde_json::{Value, json};
use sha2::Digest;

use super::store::StoreError;
use crate::db::Db;
use crate::keys::KeyRing;

pub const NOTIFY_PHYSICIAN: &str = "careline:notify-physician";
pub const NOTIFY_CARE_TEAM: &str = "careline:notify-care-team";

pub const OPEN: &str = "OPEN";
pub const DONE: &str = "DONE";

/// One item of the work list.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CareTask {
    pub id: String,
    pub execution_id: String,
    pub patient_id: Option<String>,
    /// `physician` or `care_team`.
    pub kind: String,
    pub urgency: Option<String>,
    pub status: String,
    pub created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_by: Option<String>,
    /// How a refill request was closed: `approved` or `declined`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The task input the workflow gave (the reason, for one).
    pub detail: Value,
}

/// A row of `care_tasks`, as [`COLUMNS`] lists them.
type Row = (
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    i64,
    Option<i64>,
    Option<String>,
    String,
    Option<String>,
);
const COLUMNS: &str = "id, execution_id, patient_id, kind, urgency, status, created_at, done_at, done_by, detail, outcome";

#[derive(Clone)]
pub struct CareTasks {
    db: Db,
    keys: Arc<KeyRing>,
}

/// The sealing context of an item's detail.
pub(crate) fn context(id: &str) -> String {
    format!("care-task:{id}")
}

impl CareTasks {
    pub fn new(db: Db, keys: Arc<KeyRing>) -> CareTasks {
        CareTasks { db, keys }
    }

    /// Adds the item invocation `key` asks for, unless it exists; returns its id either way,
    /// and whether it is new.
    pub async fn add(
        &self,
        key: &str,
        kind: &str,
        input: &Value,
        now_ms: i64,
    ) -> Result<(String, bool), StoreError> {
        let id = hex::encode(&sha2::Sha256::digest(key.as_bytes())[..12]);
        let execution = key.split('/').next().unwrap_or_default();
        let patient = input.get("patient_id").and_then(Value::as_str);
        let urgency = input.get("urgency").and_then(Value::as_str);
        let inserted = sqlx::query(
            "INSERT INTO care_tasks (id, idempotency_key, execution_id, patient_id, kind, urgency, detail, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&id)
        .bind(key)
        .bind(execution)
        .bind(patient)
        .bind(kind)
        .bind(urgency)
        .bind(super::store::seal_json(&self.keys, &context(&id), input))
        .bind(OPEN)
        .bind(now_ms)
        .execute(self.db.pool())
        .await?;
        Ok((id, inserted.rows_affected() == 1))
    }

    /// Items, oldest first (the longest waiting on top), by status and patient.
    pub async fn list(
        &self,
        status: Option<&str>,
        patient: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CareTask>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM care_tasks WHERE ($1 IS NULL OR status = $1) \
             AND ($2 IS NULL OR patient_id = $2) ORDER BY created_at, id LIMIT $3"
        ))
        .bind(status)
        .bind(patient)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter().map(|r| self.item(r)).collect()
    }

    /// The item `id`, if there is one.
    pub async fn get(&self, id: &str) -> Result<Option<CareTask>, StoreError> {
        let row: Option<Row> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM care_tasks WHERE id = $1"))
                .bind(id)
                .fetch_optional(self.db.pool())
                .await?;
        row.map(|r| self.item(r)).transpose()
    }

    fn item(&self, row: Row) -> Result<CareTask, StoreError> {
        let (
            id,
            execution_id,
            patient_id,
            kind,
            urgency,
            status,
            created,
            done,
            done_by,
            sealed,
            outcome,
        ) = row;
        let detail = super::store::open_json(&self.keys, &context(&id), &sealed)?;
        Ok(CareTask {
            id,
            execution_id,
            patient_id,
            kind,
            urgency,
            status,
            created: crate::db::rfc3339(created),
            done: done.map(crate::db::rfc3339),
            done_by,
            outcome,
            detail,
        })
    }

    /// Opens again an item whose decision could not be carried out (the record could not be
    /// written): the clinician may decide it again.
    pub async fn reopen(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE care_tasks SET status = $1, done_at = NULL, done_by = NULL, outcome = NULL WHERE id = $2",
        )
        .bind(OPEN)
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The patient an item is about (None: no such item, or about no patient).
    pub async fn patient_of(&self, id: &str) -> Result<Option<Option<String>>, StoreError> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT patient_id FROM care_tasks WHERE id = $1")
                .bind(id)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(|(p,)| p))
    }

    /// Closes an open item, with how a refill request was decided (`approved`, `declined`)
    /// or none; false when it was not open.
    pub async fn complete(
        &self,
        id: &str,
        by: &str,
        outcome: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE care_tasks SET status = $1, done_at = $2, done_by = $3, outcome = $4 WHERE id = $5 AND status = $6",
        )
        .bind(DONE)
        .bind(now_ms)
        .bind(by)
        .bind(outcome)
        .bind(id)
        .bind(OPEN)
        .execute(self.db.pool())
        .await?
        .rows_affected()
            == 1)
    }

    /// What the webhook is told of a new item: enough to alert someone, no patient data (the
    /// list itself, behind sign-in and audit, has that).
    pub fn notice(id: &str, key: &str, kind: &str, input: &Value) -> Value {
        json!({
            "care_task": id,
            "kind": kind,
            "urgency": input.get("urgency").and_then(Value::as_str),
            "execution": key.split('/').next().unwrap_or_default(),
            "list": "/api/v1/care-tasks",
        })
    }

    /// The notices a new item `id` (of invocation `key`) gets: the webhook's JSON and an
    /// e-mail to `to` (the addresses configured for its kind and those the record gives). Neither names the patient or the
    /// reason: they say an item waits, how urgent, and where the list is.
    pub fn notices(
        id: &str,
        key: &str,
        kind: &str,
        input: &Value,
        webhook: Option<&str>,
        to: &[String],
        link_base: &str,
    ) -> Vec<crate::notify::Notice> {
        use crate::notify::{Channel, Notice};
        let mut out = Vec::new();
        if let Some(url) = webhook {
            out.push(Notice {
                id: format!("care-task:{id}:webhook"),
                channel: Channel::Webhook,
                target: vec![url.to_string()],
                subject: String::new(),
                body: Self::notice(id, key, kind, input).to_string(),
            });
        }
        if !to.is_empty() {
            let urgency = input
                .get("urgency")
                .and_then(Value::as_str)
                .filter(|u| u.len() <= 16 && u.chars().all(|c| c.is_ascii_alphanumeric()));
            let whom = if kind == "physician" {
                "the physician"
            } else {
                "the care team"
            };
            let subject = match urgency {
                Some(u) => format!("[Careline] {u}: a care task for {whom}"),
                None => format!("[Careline] A care task for {whom}"),
            };
            let base = link_base.trim_end_matches('/');
            let link = if base.is_empty() {
                "Open the care-task list in Careline (Work list, or GET /api/v1/care-tasks)."
                    .to_string()
            } else {
                format!("Open it in Careline:\n{base}/api/v1/care-tasks?status=OPEN")
            };
            let body = format!(
                "A care-coordination workflow put an item on {whom}'s work list.\n\n\
                 Item: {id}\n\
                 Urgency: {}\n\n\
                 {link}\n\n\
                 This message names no patient: sign in to see who and why.\n",
                urgency.unwrap_or("not given"),
            );
            out.push(Notice {
                id: format!("care-task:{id}:mail"),
                channel: Channel::Mail,
                target: to.to_vec(),
                subject,
                body,
            });
        }
        out
    }

    /// Whom the patient's own record names for an item of `kind`, from their Patient and
    /// CareTeam resources: the e-mail addresses written there (`telecom`, system `email`)
    /// and the references (`Practitioner/ID`, `PractitionerRole/ID`, `Organization/ID`)
    /// whose addresses the caller looks up. The physician is the patient's
    /// `generalPractitioner`; the care team is every participant of the patient's active
    /// CareTeams (and the team's own address).
    pub fn record_recipients(kind: &str, resources: &[Value]) -> (Vec<String>, Vec<String>) {
        let mut emails = Vec::new();
        let mut refs = Vec::new();
        let mut add_ref = |v: Option<&Value>| {
            if let Some(r) = v.and_then(|m| m.get("reference")).and_then(Value::as_str)
                && let Some((t, _)) = r.split_once('/')
                && matches!(t, "Practitioner" | "PractitionerRole" | "Organization")
                && !refs.iter().any(|x| x == r)
            {
                refs.push(r.to_string());
            }
        };
        for r in resources {
            match (r.get("resourceType").and_then(Value::as_str), kind) {
                (Some("Patient"), "physician") => {
                    for gp in r
                        .get("generalPractitioner")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        add_ref(Some(gp));
                    }
                }
                (Some("CareTeam"), "care_team")
                    if r.get("status")
                        .and_then(Value::as_str)
                        .is_none_or(|s| s == "active") =>
                {
                    emails.extend(email_addresses(r));
                    for p in r
                        .get("participant")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        add_ref(p.get("member"));
                    }
                }
                _ => {}
            }
        }
        (emails, refs)
    }

    /// The answer the notification task gives the workflow.
    pub fn answer(id: &str) -> Value {
        json!({"care_task": id, "notified": true})
    }
}

/// The e-mail addresses in a resource's `telecom` (system `email`, not ended).
pub fn email_addresses(resource: &Value) -> Vec<String> {
    resource
        .get("telecom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| t.get("system").and_then(Value::as_str) == Some("email"))
        .filter(|t| t.pointer("/period/end").is_none())
        .filter_map(|t| t.get("value").and_then(Value::as_str))
        .map(|v| v.trim().trim_start_matches("mailto:").to_string())
        .filter(|v| crate::notify::mail::check_address(v).is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_invocation_delivered_twice_makes_one_item_and_it_closes_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = Arc::new(
            KeyRing::open(dir.path(), crate::keys::Supplied::default()).expect("key ring"),
        );
        let db = Db::open(None, dir.path()).await.expect("database");
        let tasks = CareTasks::new(db, keys);
        let input =
            json!({"patient_id": "p-1", "urgency": "HIGH", "reason": "chest pain reported"});
        let (a, new) = tasks
            .add("exec-1/Notify/1", "physician", &input, 1_000)
            .await
            .expect("add");
        assert!(new);
        let (b, new) = tasks
            .add("exec-1/Notify/1", "physician", &input, 2_000)
            .await
            .expect("again");
        assert_eq!(a, b);
        assert!(!new, "the same invocation again adds nothing");
        tasks
            .add(
                "exec-2/Notify/1",
                "care_team",
                &json!({"patient_id": "p-2"}),
                3_000,
            )
            .await
            .expect("add");
        let open = tasks.list(Some(OPEN), None, 10).await.expect("list");
        assert_eq!(open.len(), 2);
        assert_eq!(open[0].detail["reason"], "chest pain reported");
        assert_eq!(open[0].urgency.as_deref(), Some("HIGH"));
        assert_eq!(open[0].execution_id, "exec-1");
        assert!(
            tasks
                .complete(&a, "nurse", None, 4_000)
                .await
                .expect("done")
        );
        assert!(
            !tasks
                .complete(&a, "nurse", None, 5_000)
                .await
                .expect("done"),
            "once"
        );
        let mine = tasks.list(None, Some("p-1"), 10).await.expect("list");
        assert_eq!(mine[0].status, DONE);
        assert_eq!(mine[0].done_by.as_deref(), Some("nurse"));
        assert_eq!(
            tasks.patient_of(&a).await.expect("read"),
            Some(Some("p-1".into()))
        );
        assert_eq!(tasks.patient_of("nope").await.expect("read"), None);
    }

    #[test]
    fn the_record_names_the_physician_and_the_active_care_team() {
        let record = vec![
            json!({"resourceType": "Patient", "id": "p-1",
                   "generalPractitioner": [{"reference": "Practitioner/dr-7"}]}),
            json!({"resourceType": "CareTeam", "status": "active",
                   "telecom": [{"system": "email", "value": "mailto:ward4@clinic.example"},
                               {"system": "phone", "value": "555-0100"}],
                   "participant": [{"member": {"reference": "Practitioner/nurse-2"}},
                                   {"member": {"reference": "Patient/p-1"}},
                                   {"member": {"reference": "Organization/org-1"}}]}),
            json!({"resourceType": "CareTeam", "status": "inactive",
                   "participant": [{"member": {"reference": "Practitioner/old"}}]}),
        ];
        assert_eq!(
            CareTasks::record_recipients("physician", &record),
            (vec![], vec!["Practitioner/dr-7".to_string()])
        );
        assert_eq!(
            CareTasks::record_recipients("care_team", &record),
            (
                vec!["ward4@clinic.example".to_string()],
                vec![
                    "Practitioner/nurse-2".to_string(),
                    "Organization/org-1".to_string()
                ]
            )
        );
        let dr = json!({"resourceType": "Practitioner", "telecom": [
            {"system": "email", "value": "dr.seven@clinic.example"},
            {"system": "email", "value": "old@clinic.example", "period": {"end": "2020-01-01"}},
            {"system": "email", "value": "not an address"}]});
        assert_eq!(email_addresses(&dr), vec!["dr.seven@clinic.example"]);
    }
}
