//! Executions in the database (SQLite by default, PostgreSQL as configured): the durable half
//! of the workflow shell.
//!
//! Every transition is one transaction: the execution's sealed snapshot, the history events
//! it recorded and the task invocations it asked for (the outbox, `workflow_tasks`) are
//! written together, and the answer to an invocation is applied in the transaction that
//! deletes its outbox row. So a process killed at any point leaves either the state before a
//! transition or the state after it, and every invocation not yet answered is found again
//! on restart under the idempotency key it was first given (`execution/state/attempt`):
//! nothing is lost, and a task that honours the key does nothing twice.
//!
//! The snapshot, the task inputs and the outcome hold patient data: they are sealed under
//! the key ring like patient resources, and only state names and event kinds are in clear.

use std::sync::Arc;

use serde_json::{Value, json};
use sha2::Digest;

use super::execution::{Action, Definition, Execution, Outcome, Snapshot, TaskId};
use crate::db::Db;
use crate::keys::KeyRing;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored workflow data for {context} cannot be opened or read")]
    Corrupt { context: String },
    #[error("no execution `{0}`")]
    NoExecution(String),
    #[error("execution {id} was changed by another transition; the answer is not applied")]
    Conflict { id: String },
    #[error("an execution named `{0}` exists")]
    Exists(String),
}

/// A task invocation to carry out: what the outbox holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub execution_id: String,
    pub task: TaskId,
    pub resource: String,
    pub input: Value,
    /// The state's own timeout (None: the shell's default).
    pub timeout_secs: Option<u64>,
}

impl Invocation {
    pub fn key(&self) -> String {
        self.task.key(&self.execution_id)
    }
}

/// A stored execution as people and the API see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    pub id: String,
    pub workflow: String,
    pub status: String,
    pub state: String,
    pub started: String,
    pub updated: String,
    pub patient_id: Option<String>,
    /// The output (succeeded) or `{"error", "cause"}` (failed); absent while running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Value>,
    /// When the execution's timer next fires (a Wait or a retry's back-off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wakes: Option<String>,
}

/// One line of an execution's history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryLine {
    pub seq: i64,
    pub time: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// A running execution as stored: enough to restore it.
#[derive(Debug)]
pub struct Stored {
    pub id: String,
    pub digest: String,
    pub transitions: i64,
    pub snapshot: Snapshot,
}

#[derive(Clone)]
pub struct Store {
    db: Db,
    keys: Arc<KeyRing>,
    /// Definitions loaded from their stored text, by digest.
    loaded: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<Definition>>>>,
}

pub const RUNNING: &str = "RUNNING";
pub const SUCCEEDED: &str = "SUCCEEDED";
pub const FAILED: &str = "FAILED";
pub const ABORTED: &str = "ABORTED";
/// Every status an execution can have.
pub const STATUSES: [&str; 4] = [RUNNING, SUCCEEDED, FAILED, ABORTED];

fn snapshot_context(id: &str) -> String {
    format!("workflow-execution:{id}")
}

fn outcome_context(id: &str) -> String {
    format!("workflow-outcome:{id}")
}

fn task_context(key: &str) -> String {
    format!("workflow-task:{key}")
}

/// A failed execution's outcome, as stored and shown.
fn failure(error: &str, cause: &str) -> Value {
    json!({"error": error, "cause": cause})
}

/// `value` as JSON, sealed under `context`.
pub(crate) fn seal_json(keys: &KeyRing, context: &str, value: &impl serde::Serialize) -> String {
    keys.seal(context, &serde_json::to_vec(value).unwrap_or_default())
}

/// A value [`seal_json`] sealed under `context`; Corrupt (naming the context, no data) when
/// it does not open or is not that JSON.
pub(crate) fn open_json<T: serde::de::DeserializeOwned>(
    keys: &KeyRing,
    context: &str,
    sealed: &str,
) -> Result<T, StoreError> {
    let corrupt = || StoreError::Corrupt {
        context: context.to_string(),
    };
    let plain = keys.open_sealed(context, sealed).map_err(|_| corrupt())?;
    serde_json::from_slice(&plain).map_err(|_| corrupt())
}

/// `v` with every object's keys in order, so equal documents have one text.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: std::collections::BTreeMap<&String, Value> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// The definition's digest: the name executions pin their definition by.
pub fn digest(text: &str) -> String {
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

impl Store {
    pub fn new(db: Db, keys: Arc<KeyRing>) -> Store {
        Store {
            db,
            keys,
            loaded: Default::default(),
        }
    }

    /// How many executions may be stepped at once: PostgreSQL takes concurrent transactions
    /// on different rows; SQLite has one writer (a second would wait for the first anyway,
    /// and a deferred transaction upgrading to write could fail with SQLITE_BUSY).
    pub fn parallel_steps(&self) -> usize {
        match self.db.engine() {
            crate::db::Engine::Postgres => 8,
            crate::db::Engine::Sqlite => 1,
        }
    }

    /// Keeps a definition's text (once per distinct text); returns its digest.
    pub async fn define(&self, name: &str, text: &str, now_ms: i64) -> Result<String, StoreError> {
        let d = digest(text);
        let known: Option<(String,)> =
            sqlx::query_as("SELECT digest FROM workflow_definitions WHERE digest = $1")
                .bind(&d)
                .fetch_optional(self.db.pool())
                .await?;
        if known.is_none() {
            sqlx::query(
                "INSERT INTO workflow_definitions (digest, name, text, added_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(&d)
            .bind(name)
            .bind(text)
            .bind(now_ms)
            .execute(self.db.pool())
            .await?;
        }
        Ok(d)
    }

    /// The definition text stored under `digest`.
    pub async fn definition(&self, digest: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT text FROM workflow_definitions WHERE digest = $1")
                .bind(digest)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(|(t,)| t))
    }

    /// The keyed digest of an execution's input, which tells a repeated start from a
    /// different one without storing the input in clear.
    pub fn input_digest(&self, input: &Value) -> String {
        self.keys
            .blind_index("workflow-input", &canonical(input).to_string())
    }

    /// The input digest of execution `id`, if it exists.
    pub async fn stored_input_digest(&self, id: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT input_digest FROM workflow_executions WHERE id = $1")
                .bind(id)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(|(d,)| d))
    }

    /// Stores a new execution (just started, its first actions pending) in one transaction;
    /// returns the invocations to carry out. Err(Exists) when an execution has its id.
    pub async fn create(
        &self,
        workflow: &str,
        digest: &str,
        patient_id: Option<&str>,
        input_digest: &str,
        e: &mut Execution,
        now_ms: i64,
    ) -> Result<Vec<Invocation>, StoreError> {
        let mut tx = self.db.pool().begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO workflow_executions (id, workflow, digest, status, state, snapshot, \
             wake_at, started_at, updated_at, transitions, patient_id, input_digest) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $7, 0, $8, $9) ON CONFLICT (id) DO NOTHING",
        )
        .bind(e.id())
        .bind(workflow)
        .bind(digest)
        .bind(RUNNING)
        .bind(e.state())
        .bind(self.keys.seal(&snapshot_context(e.id()), b"{}"))
        .bind(now_ms)
        .bind(patient_id)
        .bind(input_digest)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() != 1 {
            return Err(StoreError::Exists(e.id().to_string()));
        }
        let out = self.write_transition(&mut tx, e, 0, now_ms).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Stores the transition `e` made from the stored version `transitions` (the answer to
    /// `answered` when it was a task's, then deleted from the outbox), in one transaction.
    /// Err(Conflict) when the stored execution moved on meanwhile: nothing is written.
    pub async fn advance(
        &self,
        e: &mut Execution,
        transitions: i64,
        answered: Option<&TaskId>,
        now_ms: i64,
    ) -> Result<Vec<Invocation>, StoreError> {
        let mut tx = self.db.pool().begin().await?;
        if let Some(task) = answered {
            sqlx::query("DELETE FROM workflow_tasks WHERE idempotency_key = $1")
                .bind(task.key(e.id()))
                .execute(&mut *tx)
                .await?;
        }
        let out = self
            .write_transition(&mut tx, e, transitions, now_ms)
            .await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn write_transition(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        e: &mut Execution,
        transitions: i64,
        now_ms: i64,
    ) -> Result<Vec<Invocation>, StoreError> {
        let id = e.id().to_string();
        // The actions become outbox rows or the outcome; the snapshot is taken after, so it
        // holds none of them.
        let mut invocations = Vec::new();
        let mut outcome = None;
        while let Some(action) = e.poll_action() {
            match action {
                Action::Invoke {
                    task,
                    resource,
                    input,
                    timeout_secs,
                } => invocations.push(Invocation {
                    execution_id: id.clone(),
                    task,
                    resource,
                    input,
                    timeout_secs,
                }),
                Action::Finished(o) => outcome = Some(o),
            }
        }
        let (status, outcome) = match outcome {
            None => (RUNNING, None),
            Some(Outcome::Succeeded(v)) => (SUCCEEDED, Some(v)),
            Some(Outcome::Failed { error, cause }) => (FAILED, Some(failure(&error, &cause))),
        };
        let outcome_sealed = outcome.map(|v| seal_json(&self.keys, &outcome_context(&id), &v));
        let updated = sqlx::query(
            "UPDATE workflow_executions SET status = $1, state = $2, snapshot = $3, wake_at = $4, \
             updated_at = $5, transitions = $6, outcome = $7 WHERE id = $8 AND transitions = $9",
        )
        .bind(status)
        .bind(e.state())
        .bind(seal_json(&self.keys, &snapshot_context(&id), &e.snapshot()))
        .bind(e.poll_timeout())
        .bind(now_ms)
        .bind(transitions + 1)
        .bind(outcome_sealed)
        .bind(&id)
        .bind(transitions)
        .execute(&mut **tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::Conflict { id });
        }
        let (next_seq,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM workflow_history WHERE execution_id = $1",
        )
        .bind(&id)
        .fetch_one(&mut **tx)
        .await?;
        for (i, h) in e.take_history().into_iter().enumerate() {
            sqlx::query(
                "INSERT INTO workflow_history (execution_id, seq, at, kind, state) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&id)
            .bind(next_seq + i as i64)
            .bind(h.at_ms)
            .bind(h.kind)
            .bind(h.state)
            .execute(&mut **tx)
            .await?;
        }
        for inv in &invocations {
            let key = inv.key();
            sqlx::query(
                "INSERT INTO workflow_tasks (idempotency_key, execution_id, state, attempt, resource, input, scheduled_at, timeout_secs) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&key)
            .bind(&id)
            .bind(&inv.task.state)
            .bind(i64::from(inv.task.attempt))
            .bind(&inv.resource)
            .bind(seal_json(&self.keys, &task_context(&key), &inv.input))
            .bind(now_ms)
            .bind(inv.timeout_secs.map(|t| i64::try_from(t).unwrap_or(i64::MAX)))
            .execute(&mut **tx)
            .await?;
        }
        Ok(invocations)
    }

    /// A running execution, to restore and apply an event to.
    pub async fn running(&self, id: &str) -> Result<Option<Stored>, StoreError> {
        let row: Option<(String, i64, String)> = sqlx::query_as(
            "SELECT digest, transitions, snapshot FROM workflow_executions WHERE id = $1 AND status = $2",
        )
        .bind(id)
        .bind(RUNNING)
        .fetch_optional(self.db.pool())
        .await?;
        let Some((digest, transitions, sealed)) = row else {
            return Ok(None);
        };
        let snapshot = open_json(&self.keys, &snapshot_context(id), &sealed)?;
        Ok(Some(Stored {
            id: id.to_string(),
            digest,
            transitions,
            snapshot,
        }))
    }

    /// Running executions whose timer is due at `now_ms`, oldest first.
    pub async fn due(&self, now_ms: i64, limit: i64) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM workflow_executions WHERE status = $1 AND wake_at IS NOT NULL AND wake_at <= $2 \
             ORDER BY wake_at LIMIT $3",
        )
        .bind(RUNNING)
        .bind(now_ms)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// The earliest timer of any running execution.
    pub async fn next_wake(&self) -> Result<Option<i64>, StoreError> {
        let (at,): (Option<i64>,) = sqlx::query_as(
            "SELECT MIN(wake_at) FROM workflow_executions WHERE status = $1 AND wake_at IS NOT NULL",
        )
        .bind(RUNNING)
        .fetch_one(self.db.pool())
        .await?;
        Ok(at)
    }

    /// How many executions have each status.
    pub async fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT status, COUNT(*) FROM workflow_executions GROUP BY status ORDER BY status",
        )
        .fetch_all(self.db.pool())
        .await?)
    }

    /// Running executions whose timer was due before `before_ms`.
    pub async fn overdue(&self, before_ms: i64) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM workflow_executions WHERE status = $1 AND wake_at IS NOT NULL AND wake_at < $2",
        )
        .bind(RUNNING)
        .bind(before_ms)
        .fetch_one(self.db.pool())
        .await?;
        Ok(n)
    }

    /// Every invocation asked for and not yet answered: after a restart, each is carried out
    /// again under its key.
    pub async fn outbox(&self) -> Result<Vec<Invocation>, StoreError> {
        type Row = (String, String, String, i64, String, String, Option<i64>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT idempotency_key, execution_id, state, attempt, resource, input, timeout_secs FROM workflow_tasks \
             ORDER BY scheduled_at, idempotency_key",
        )
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(
                |(key, execution_id, state, attempt, resource, sealed, timeout)| {
                    let input = open_json(&self.keys, &task_context(&key), &sealed)?;
                    Ok(Invocation {
                        execution_id,
                        task: TaskId {
                            state,
                            attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                        },
                        resource,
                        input,
                        timeout_secs: timeout.and_then(|t| u64::try_from(t).ok()),
                    })
                },
            )
            .collect()
    }

    pub async fn summary(&self, id: &str) -> Result<Summary, StoreError> {
        type Row = (
            String,
            String,
            String,
            i64,
            i64,
            Option<String>,
            Option<String>,
            Option<i64>,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT workflow, status, state, started_at, updated_at, patient_id, outcome, wake_at \
             FROM workflow_executions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?;
        let (workflow, status, state, started, updated, patient_id, outcome, wake) =
            row.ok_or_else(|| StoreError::NoExecution(id.to_string()))?;
        let outcome = match outcome {
            Some(sealed) => Some(open_json(&self.keys, &outcome_context(id), &sealed)?),
            None => None,
        };
        Ok(Summary {
            id: id.to_string(),
            workflow,
            status,
            state,
            started: crate::db::rfc3339(started),
            updated: crate::db::rfc3339(updated),
            patient_id,
            outcome,
            wakes: wake.map(crate::db::rfc3339),
        })
    }

    pub async fn history(&self, id: &str) -> Result<Vec<HistoryLine>, StoreError> {
        let rows: Vec<(i64, i64, String, Option<String>)> = sqlx::query_as(
            "SELECT seq, at, kind, state FROM workflow_history WHERE execution_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(seq, at, kind, state)| HistoryLine {
                seq,
                time: crate::db::rfc3339(at),
                kind,
                state,
            })
            .collect())
    }

    /// Stops a running execution (Step Functions' StopExecution): ABORTED, its timer and
    /// outbox cleared, `ExecutionAborted` in its history, in one transaction. A transition
    /// the runner was storing meanwhile is refused (the version moves), and answers that
    /// arrive later are dropped. False when it was not running.
    pub async fn stop(&self, id: &str, cause: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.end_outside(
            id,
            ABORTED,
            "States.Aborted",
            cause,
            "ExecutionAborted",
            now_ms,
        )
        .await
    }

    /// Fails a running execution that cannot go on because what is stored of it cannot be
    /// read (a corrupt snapshot, a definition gone): FAILED with `Careline.Unreadable`, its
    /// timer and outbox cleared, so nothing of it is carried out again and again.
    pub async fn fail_unreadable(
        &self,
        id: &str,
        cause: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.end_outside(
            id,
            FAILED,
            "Careline.Unreadable",
            cause,
            "ExecutionFailed",
            now_ms,
        )
        .await
    }

    /// Ends a running execution from outside its own steps, in one transaction.
    async fn end_outside(
        &self,
        id: &str,
        status: &str,
        error: &str,
        cause: &str,
        event: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.pool().begin().await?;
        let outcome = seal_json(&self.keys, &outcome_context(id), &failure(error, cause));
        let stopped = sqlx::query(
            "UPDATE workflow_executions SET status = $1, wake_at = NULL, updated_at = $2, \
             transitions = transitions + 1, outcome = $3 WHERE id = $4 AND status = $5",
        )
        .bind(status)
        .bind(now_ms)
        .bind(outcome)
        .bind(id)
        .bind(RUNNING)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !stopped {
            return Ok(false);
        }
        sqlx::query("DELETE FROM workflow_tasks WHERE execution_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO workflow_history (execution_id, seq, at, kind, state) \
             SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, NULL FROM workflow_history WHERE execution_id = $1",
        )
        .bind(id)
        .bind(now_ms)
        .bind(event)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Executions, newest first, optionally only those with `status` or about `patient`.
    /// Outcomes are left out (they hold patient data); read one execution for it.
    pub async fn list(
        &self,
        status: Option<&str>,
        patient: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Summary>, StoreError> {
        type Row = (
            String,
            String,
            String,
            String,
            i64,
            i64,
            Option<String>,
            Option<i64>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, workflow, status, state, started_at, updated_at, patient_id, wake_at \
             FROM workflow_executions WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR patient_id = $2) \
             ORDER BY started_at DESC, id LIMIT $3",
        )
        .bind(status)
        .bind(patient)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, workflow, status, state, started, updated, patient_id, wake)| Summary {
                    id,
                    workflow,
                    status,
                    state,
                    started: crate::db::rfc3339(started),
                    updated: crate::db::rfc3339(updated),
                    patient_id,
                    outcome: None,
                    wakes: wake.map(crate::db::rfc3339),
                },
            )
            .collect())
    }

    /// After `KeyRing::rotate`: re-wraps every sealed snapshot, outcome, task input,
    /// work-list detail and placed call's result not yet
    /// under the current master key. A value a running server changed meanwhile is left as
    /// that server wrote it (a second pass re-seals it if needed). Returns how many.
    pub async fn reseal_all(&self) -> Result<u64, StoreError> {
        let mut n = 0;
        /// Table, key column, sealed column, and the sealing context of a key.
        type Sealed = (&'static str, &'static str, &'static str, fn(&str) -> String);
        let columns: [Sealed; 6] = [
            ("workflow_executions", "id", "snapshot", snapshot_context),
            ("workflow_executions", "id", "outcome", outcome_context),
            ("workflow_tasks", "idempotency_key", "input", task_context),
            ("care_tasks", "id", "detail", super::care_tasks::context),
            (
                "patient_calls_placed",
                "idempotency_key",
                "result",
                super::call_patient::ledger_context,
            ),
            ("notifications", "id", "body", crate::notify::context),
        ];
        for (table, key, column, context_of) in columns {
            let rows: Vec<(String, String)> = sqlx::query_as(&format!(
                "SELECT {key}, {column} FROM {table} WHERE {column} IS NOT NULL AND {column} <> ''"
            ))
            .fetch_all(self.db.pool())
            .await?;
            for (id, sealed) in rows {
                if self.keys.is_current(&sealed) {
                    continue;
                }
                let context = context_of(&id);
                let new = self
                    .keys
                    .reseal(&context, &sealed)
                    .map_err(|_| StoreError::Corrupt { context })?;
                n += sqlx::query(&format!(
                    "UPDATE {table} SET {column} = $1 WHERE {key} = $2 AND {column} = $3"
                ))
                .bind(new)
                .bind(id)
                .bind(sealed)
                .execute(self.db.pool())
                .await?
                .rows_affected();
            }
        }
        Ok(n)
    }

    /// Restores a stored running execution under the definition it started with.
    pub async fn restore(&self, stored: Stored) -> Result<(Execution, i64), StoreError> {
        let corrupt = || StoreError::Corrupt {
            context: format!("workflow-definition:{}", stored.digest),
        };
        let cached = self
            .loaded
            .lock()
            .ok()
            .and_then(|m| m.get(&stored.digest).cloned());
        let def = match cached {
            Some(d) => d,
            None => {
                let text = self.definition(&stored.digest).await?.ok_or_else(corrupt)?;
                let def = Arc::new(Definition::load(&text).map_err(|_| corrupt())?);
                if let Ok(mut m) = self.loaded.lock() {
                    m.insert(stored.digest.clone(), def.clone());
                }
                def
            }
        };
        let e = Execution::restore(def, stored.snapshot).map_err(|_| StoreError::Corrupt {
            context: snapshot_context(&stored.id),
        })?;
        Ok((e, stored.transitions))
    }
}

#[cfg(test)]
mod tests;
