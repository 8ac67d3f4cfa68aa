//! Queued callbacks, kept in the database: a caller who asked to be called back
//! (CreateCallbackContact) and hung up must not lose their place to a restart. Routing holds
//! the live place ([`super::acd::Acd::to_callback`]); this store holds what survives it: the
//! queue, the place (when the caller first entered the queue, their urgency), when it may be
//! offered, and its attempts. At start, every callback not yet settled goes back into routing
//! in its place ([`CallbackStore::pending`]).
//!
//! The number to call is PHI: sealed with the data keys, opened only to dial it, never
//! logged. A callback's life: `queued` → (an agent takes it) `dialing` → `reached`, or back to
//! `queued` after a call nobody answered, or `given_up` after the last attempt. A callback
//! left `dialing` by a killed process is queued again at start (the call it was making died
//! with the process), its attempt counted.

use std::sync::Arc;
use std::time::Duration;

use crate::db::Db;
use crate::flow::queues::QueuePriority;
use crate::keys::KeyRing;

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("callbacks: {0}")]
    Db(#[from] sqlx::Error),
    #[error("callback {0}: its number cannot be opened with the current keys")]
    Sealed(String),
}

pub const QUEUED: &str = "queued";
pub const DIALING: &str = "dialing";
pub const REACHED: &str = "reached";
pub const GIVEN_UP: &str = "given_up";

/// A callback to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCallback {
    pub id: String,
    pub queue: String,
    /// Dialable; PHI.
    pub number: String,
    pub priority: QueuePriority,
    /// When the caller entered the queue (epoch ms): the place they keep.
    pub since_ms: i64,
    /// Not offered to an agent before this (epoch ms).
    pub not_before_ms: i64,
    pub max_attempts: u32,
    pub retry_delay: Duration,
    /// The flow the patient hears on answering (`None`: the configured default).
    pub flow: Option<String>,
    /// The call the caller asked from.
    pub origin_call: String,
    /// The caller's language (`$.Attributes.language` of the callback's flow).
    pub language: Option<String>,
    /// The patient the IVR identified on the call asking (PHI: sealed).
    pub patient: Option<String>,
}

/// What calling a callback needs, opened from the database (PHI: never logged).
#[derive(Debug, Clone)]
pub struct Attempt {
    pub callback: Callback,
    pub number: String,
    pub patient: Option<String>,
}

/// A callback as stored (without its number, which [`CallbackStore::start_attempt`] opens).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Callback {
    pub id: String,
    pub queue: String,
    #[serde(skip)]
    pub priority: QueuePriority,
    pub since_ms: i64,
    pub not_before_ms: i64,
    pub attempts: u32,
    pub max_attempts: u32,
    pub retry_delay_secs: u64,
    pub flow: Option<String>,
    pub origin_call: String,
    pub language: Option<String>,
    pub status: String,
    /// How the last attempt ended (`no_answer`, `busy`, ...).
    pub last_cause: Option<String>,
}

/// What happens to a callback after a call nobody answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Back in its place, not offered before this (epoch ms).
    Retry { not_before_ms: i64 },
    /// That was the last attempt.
    GivenUp,
}

/// id, queue, priority, time_adjustment_ms, since_at, not_before, attempts, max_attempts,
/// retry_delay_secs, flow, origin_call, language, status, last_cause.
type Row = (
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
    String,
    Option<String>,
    String,
    Option<String>,
);

const COLUMNS: &str = "id, queue, priority, time_adjustment_ms, since_at, not_before, attempts, \
                       max_attempts, retry_delay_secs, flow, origin_call, language, status, last_cause";

fn callback(r: Row) -> Callback {
    Callback {
        id: r.0,
        queue: r.1,
        priority: QueuePriority {
            priority: u32::try_from(r.2).unwrap_or(u32::MAX),
            time_adjustment: Duration::from_millis(u64::try_from(r.3).unwrap_or(0)),
        },
        since_ms: r.4,
        not_before_ms: r.5,
        attempts: u32::try_from(r.6).unwrap_or(0),
        max_attempts: u32::try_from(r.7).unwrap_or(1),
        retry_delay_secs: u64::try_from(r.8).unwrap_or(0),
        flow: r.9,
        origin_call: r.10,
        language: r.11,
        status: r.12,
        last_cause: r.13,
    }
}

/// The sealing context of callback `id`'s number.
fn context(id: &str) -> String {
    format!("callback:{id}")
}

/// The sealing context of callback `id`'s patient.
fn patient_context(id: &str) -> String {
    format!("callback-patient:{id}")
}

/// The queued callbacks, in the database.
#[derive(Clone)]
pub struct CallbackStore {
    db: Db,
    keys: Arc<KeyRing>,
}

impl std::fmt::Debug for CallbackStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallbackStore")
    }
}

impl CallbackStore {
    pub fn new(db: Db, keys: Arc<KeyRing>) -> CallbackStore {
        CallbackStore { db, keys }
    }

    /// Keeps a new callback, queued.
    pub async fn create(&self, cb: &NewCallback, now_ms: i64) -> Result<(), CallbackError> {
        sqlx::query(
            "INSERT INTO callbacks (id, queue, number, priority, time_adjustment_ms, since_at, \
             not_before, attempts, max_attempts, retry_delay_secs, flow, origin_call, language, \
             patient, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10, $11, $12, $13, $14, $15, $15)",
        )
        .bind(&cb.id)
        .bind(&cb.queue)
        .bind(self.keys.seal(&context(&cb.id), cb.number.as_bytes()))
        .bind(i64::from(cb.priority.priority))
        .bind(cb.priority.time_adjustment.as_millis() as i64)
        .bind(cb.since_ms)
        .bind(cb.not_before_ms)
        .bind(i64::from(cb.max_attempts))
        .bind(cb.retry_delay.as_secs() as i64)
        .bind(cb.flow.as_deref())
        .bind(&cb.origin_call)
        .bind(cb.language.as_deref())
        .bind(
            cb.patient
                .as_ref()
                .map(|p| self.keys.seal(&patient_context(&cb.id), p.as_bytes())),
        )
        .bind(QUEUED)
        .bind(now_ms)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Forgets a callback routing would not take (its queue is gone or full).
    pub async fn discard(&self, id: &str) -> Result<(), CallbackError> {
        sqlx::query("DELETE FROM callbacks WHERE id = $1")
            .bind(id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Option<Callback>, CallbackError> {
        let row: Option<Row> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM callbacks WHERE id = $1"))
                .bind(id)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(callback))
    }

    /// Callbacks by status (all when None), oldest place first.
    pub async fn list(
        &self,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Callback>, CallbackError> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM callbacks WHERE ($1 IS NULL OR status = $1) \
             ORDER BY since_at, id LIMIT $2"
        ))
        .bind(status)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(callback).collect())
    }

    /// At start: every callback still to make, in its place. One a killed process left
    /// `dialing` had its call die with it: it is queued again, its attempt counted (given up
    /// if that was the last), offerable from now.
    pub async fn pending(&self, now_ms: i64) -> Result<Vec<Callback>, CallbackError> {
        sqlx::query(
            "UPDATE callbacks SET status = $1, last_cause = 'restart', updated_at = $2 \
             WHERE status = $3 AND attempts >= max_attempts",
        )
        .bind(GIVEN_UP)
        .bind(now_ms)
        .bind(DIALING)
        .execute(self.db.pool())
        .await?;
        sqlx::query(
            "UPDATE callbacks SET status = $1, last_cause = 'restart', not_before = $2, \
             updated_at = $2 WHERE status = $3",
        )
        .bind(QUEUED)
        .bind(now_ms)
        .bind(DIALING)
        .execute(self.db.pool())
        .await?;
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM callbacks WHERE status = $1 ORDER BY since_at, id"
        ))
        .bind(QUEUED)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(callback).collect())
    }

    /// An agent took callback `id`: it is dialing, one more attempt counted. Returns it with
    /// its number and patient (PHI), or None when it is not queued (settled meanwhile).
    pub async fn start_attempt(
        &self,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<Attempt>, CallbackError> {
        let done = sqlx::query(
            "UPDATE callbacks SET status = $1, attempts = attempts + 1, updated_at = $2 \
             WHERE id = $3 AND status = $4",
        )
        .bind(DIALING)
        .bind(now_ms)
        .bind(id)
        .bind(QUEUED)
        .execute(self.db.pool())
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT number, patient FROM callbacks WHERE id = $1")
                .bind(id)
                .fetch_optional(self.db.pool())
                .await?;
        let Some((number, patient)) = row else {
            return Ok(None);
        };
        let open = |context: &str, sealed: &str| {
            self.keys
                .open_sealed(context, sealed)
                .ok()
                .and_then(|plain| String::from_utf8(plain.to_vec()).ok())
                .ok_or_else(|| CallbackError::Sealed(id.to_string()))
        };
        let number = open(&context(id), &number)?;
        let patient = match patient {
            Some(p) => Some(open(&patient_context(id), &p)?),
            None => None,
        };
        Ok(self.get(id).await?.map(|callback| Attempt {
            callback,
            number,
            patient,
        }))
    }

    /// An attempt that never got to call (the agent's browser, the trunk at its limit) is
    /// not counted: back to queued, offerable from `not_before_ms`.
    pub async fn undo_attempt(
        &self,
        id: &str,
        not_before_ms: i64,
        now_ms: i64,
    ) -> Result<(), CallbackError> {
        sqlx::query(
            "UPDATE callbacks SET status = $1, attempts = attempts - 1, not_before = $2, \
             updated_at = $3 WHERE id = $4 AND status = $5",
        )
        .bind(QUEUED)
        .bind(not_before_ms)
        .bind(now_ms)
        .bind(id)
        .bind(DIALING)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The patient answered the callback's call: it is done.
    pub async fn reached(&self, id: &str, now_ms: i64) -> Result<(), CallbackError> {
        self.settle(id, REACHED, None, now_ms).await
    }

    /// An operator cancels queued callback `id`: false when it is not queued (an agent is
    /// calling the patient, or it is settled).
    pub async fn cancel(&self, id: &str, now_ms: i64) -> Result<bool, CallbackError> {
        let done = sqlx::query(
            "UPDATE callbacks SET status = $1, last_cause = 'cancelled', updated_at = $2 \
             WHERE id = $3 AND status = $4",
        )
        .bind(GIVEN_UP)
        .bind(now_ms)
        .bind(id)
        .bind(QUEUED)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives callback `id` up (its number could not be opened, or its queue is gone).
    pub async fn give_up(&self, id: &str, cause: &str, now_ms: i64) -> Result<(), CallbackError> {
        self.settle(id, GIVEN_UP, Some(cause), now_ms).await
    }

    async fn settle(
        &self,
        id: &str,
        status: &str,
        cause: Option<&str>,
        now_ms: i64,
    ) -> Result<(), CallbackError> {
        sqlx::query(
            "UPDATE callbacks SET status = $1, last_cause = COALESCE($2, last_cause), \
             updated_at = $3 WHERE id = $4",
        )
        .bind(status)
        .bind(cause)
        .bind(now_ms)
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The callback's call was not answered (`cause`: `no_answer`, `busy`, ...): back in its
    /// place after its retry delay, or given up after its last attempt.
    pub async fn attempt_failed(
        &self,
        id: &str,
        cause: &str,
        now_ms: i64,
    ) -> Result<AfterFailure, CallbackError> {
        let Some(cb) = self.get(id).await? else {
            return Ok(AfterFailure::GivenUp);
        };
        if cb.attempts >= cb.max_attempts {
            self.settle(id, GIVEN_UP, Some(cause), now_ms).await?;
            return Ok(AfterFailure::GivenUp);
        }
        let not_before_ms = now_ms + (cb.retry_delay_secs as i64) * 1000;
        sqlx::query(
            "UPDATE callbacks SET status = $1, last_cause = $2, not_before = $3, \
             updated_at = $4 WHERE id = $5",
        )
        .bind(QUEUED)
        .bind(cause)
        .bind(not_before_ms)
        .bind(now_ms)
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(AfterFailure::Retry { not_before_ms })
    }
}

impl CallbackStore {
    /// Re-wraps every number and patient not sealed under the current master key (`careline
    /// keys rotate`); returns how many. Settled callbacks too: their numbers are kept.
    pub async fn reseal_all(&self) -> Result<u64, CallbackError> {
        let rows: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT id, number, patient FROM callbacks")
                .fetch_all(self.db.pool())
                .await?;
        let mut n = 0;
        for (id, number, patient) in rows {
            n += self
                .reseal_column("number", &id, &context(&id), &number)
                .await?;
            if let Some(p) = patient {
                n += self
                    .reseal_column("patient", &id, &patient_context(&id), &p)
                    .await?;
            }
        }
        Ok(n)
    }

    async fn reseal_column(
        &self,
        column: &str,
        id: &str,
        context: &str,
        sealed: &str,
    ) -> Result<u64, CallbackError> {
        if self.keys.is_current(sealed) {
            return Ok(0);
        }
        let Ok(new) = self.keys.reseal(context, sealed) else {
            tracing::warn!(
                callback = id,
                column,
                "a sealed value does not open under any key"
            );
            return Ok(0);
        };
        // Only if unchanged meanwhile: a value written under the new key stays.
        let sql = format!("UPDATE callbacks SET {column} = $1 WHERE id = $2 AND {column} = $3");
        Ok(sqlx::query(&sql)
            .bind(new)
            .bind(id)
            .bind(sealed)
            .execute(self.db.pool())
            .await?
            .rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key rotation re-seals each callback's number and patient once, and they still open.
    #[tokio::test]
    async fn a_key_rotation_reseals_numbers_and_patients_once() {
        let (store, dir) = store().await;
        store.create(&new("cb-1", 1_000, 2), 1_000).await.unwrap();
        drop(store);
        let mut ring = KeyRing::open(dir.path(), crate::keys::Supplied::default()).unwrap();
        ring.rotate().unwrap();
        let db = Db::open(None, dir.path()).await.unwrap();
        let rotated = CallbackStore::new(db, Arc::new(ring));
        assert_eq!(rotated.reseal_all().await.unwrap(), 2, "number, patient");
        assert_eq!(rotated.reseal_all().await.unwrap(), 0, "nothing left to do");
        let attempt = rotated
            .start_attempt("cb-1", 10_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(attempt.number, "+15550100199");
        assert_eq!(attempt.patient.as_deref(), Some("pat-42"));
    }

    async fn store() -> (CallbackStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(None, dir.path()).await.unwrap();
        let keys = Arc::new(KeyRing::open(dir.path(), crate::keys::Supplied::default()).unwrap());
        (CallbackStore::new(db, keys), dir)
    }

    fn new(id: &str, since_ms: i64, attempts: u32) -> NewCallback {
        NewCallback {
            id: id.into(),
            queue: "triage".into(),
            number: "+15550100199".into(),
            priority: QueuePriority {
                priority: 2,
                time_adjustment: Duration::from_secs(30),
            },
            since_ms,
            not_before_ms: since_ms + 5_000,
            max_attempts: attempts,
            retry_delay: Duration::from_secs(60),
            flow: None,
            origin_call: format!("call-{id}"),
            language: Some("en".into()),
            patient: Some("pat-42".into()),
        }
    }

    #[tokio::test]
    async fn a_callback_keeps_its_place_and_its_number_is_sealed() {
        let (store, dir) = store().await;
        store.create(&new("cb-2", 2_000, 2), 10_000).await.unwrap();
        store.create(&new("cb-1", 1_000, 2), 10_000).await.unwrap();
        let pending = store.pending(20_000).await.unwrap();
        let ids: Vec<&str> = pending.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["cb-1", "cb-2"], "oldest place first");
        assert_eq!(pending[0].priority.priority, 2);
        assert_eq!(pending[0].priority.time_adjustment, Duration::from_secs(30));
        assert_eq!(pending[0].not_before_ms, 6_000);
        // The number is nowhere in the database file in clear.
        drop(store);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("15550100199"), "the number is in clear");
            assert!(!text.contains("pat-42"), "the patient is in clear");
        }
    }

    #[tokio::test]
    async fn attempts_retry_after_the_delay_then_give_up() {
        let (store, _dir) = store().await;
        store.create(&new("cb", 1_000, 2), 1_000).await.unwrap();
        let attempt = store.start_attempt("cb", 10_000).await.unwrap().unwrap();
        let cb = &attempt.callback;
        assert_eq!((cb.attempts, cb.status.as_str()), (1, DIALING));
        assert_eq!(attempt.number, "+15550100199");
        assert_eq!(attempt.patient.as_deref(), Some("pat-42"));
        // Taken once only.
        assert!(store.start_attempt("cb", 10_000).await.unwrap().is_none());
        assert_eq!(
            store
                .attempt_failed("cb", "no_answer", 20_000)
                .await
                .unwrap(),
            AfterFailure::Retry {
                not_before_ms: 80_000
            }
        );
        let cb = store.get("cb").await.unwrap().unwrap();
        assert_eq!(cb.status, QUEUED);
        assert_eq!(cb.since_ms, 1_000, "the place is kept");
        assert_eq!(cb.last_cause.as_deref(), Some("no_answer"));
        store.start_attempt("cb", 90_000).await.unwrap().unwrap();
        assert_eq!(
            store.attempt_failed("cb", "busy", 95_000).await.unwrap(),
            AfterFailure::GivenUp
        );
        assert_eq!(store.get("cb").await.unwrap().unwrap().status, GIVEN_UP);
        assert!(store.pending(100_000).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_callback_dialing_when_the_process_died_is_queued_again() {
        let (store, _dir) = store().await;
        store.create(&new("again", 1_000, 2), 1_000).await.unwrap();
        store.create(&new("last", 2_000, 1), 1_000).await.unwrap();
        store.create(&new("done", 3_000, 1), 1_000).await.unwrap();
        store.start_attempt("again", 5_000).await.unwrap().unwrap();
        store.start_attempt("last", 5_000).await.unwrap().unwrap();
        store.start_attempt("done", 5_000).await.unwrap().unwrap();
        store.reached("done", 6_000).await.unwrap();
        let pending = store.pending(50_000).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, "again");
        assert_eq!(pending[0].not_before_ms, 50_000);
        assert_eq!(pending[0].attempts, 1);
        assert_eq!(store.get("last").await.unwrap().unwrap().status, GIVEN_UP);
        assert_eq!(store.get("done").await.unwrap().unwrap().status, REACHED);
    }
}
