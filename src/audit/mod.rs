//! The audit trail: an append-only, hash-chained log of every PHI read and write, login,
//! permission denial, break-glass access, recording access, configuration change and call
//! start/end. `careline audit verify` walks the chain and names the first broken entry;
//! `GET /api/v1/audit` lets auditors ask "who accessed this patient in the last day".
//!
//! Entries never carry PHI in clear: patients appear by their opaque id, callers by Call-ID;
//! free text that may hold PHI (a break-glass reason) is sealed with the key ring.

pub(crate) mod calls;
pub(crate) mod chain;
pub(crate) mod export;

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::db::{Db, now_ms};
use crate::keys::KeyRing;
pub use chain::{Break, Entry};

/// Action names, shared by every module that writes to the trail.
pub mod action {
    pub const PATIENT_READ: &str = "patient.read";
    pub const PATIENT_WRITE: &str = "patient.write";
    pub const PATIENT_LOOKUP: &str = "patient.lookup";
    pub const PATIENT_EXPORT: &str = "patient.export";
    pub const CONTACT_WRITE: &str = "contact.write";
    pub const ACTIVE_CONTACT: &str = "contact.active";
    pub const LOGIN: &str = "login";
    pub const LOGOUT: &str = "logout";
    pub const LOCKOUT: &str = "login.lockout";
    pub const ACCESS_DENIED: &str = "access.denied";
    pub const BREAK_GLASS: &str = "break_glass";
    pub const USER_ADD: &str = "user.add";
    pub const USER_DISABLE: &str = "user.disable";
    pub const USER_ENABLE: &str = "user.enable";
    pub const TOKEN_ISSUE: &str = "token.issue";
    pub const TOKEN_REVOKE: &str = "token.revoke";
    pub const CONFIG_CHANGE: &str = "config.change";
    pub const CALL_START: &str = "call.start";
    pub const CALL_END: &str = "call.end";
    /// A call Careline placed on someone's request (API).
    pub const CALL_PLACE: &str = "call.place";
    /// A placed call hung up on someone's request (API).
    pub const CALL_HANGUP: &str = "call.hangup";
    pub const CALLBACK_CANCEL: &str = "callback.cancel";
    /// A supervisor listened in on a call (silent monitoring), or barged into it.
    pub const CALL_MONITOR: &str = "call.monitor";
    /// A telehealth room was booked (with its patient, when it names one).
    pub const ROOM_CREATE: &str = "room.create";
    /// Someone entered a room (or was refused: a forged or expired link, a full room).
    pub const ROOM_JOIN: &str = "room.join";
    /// An invitation was made or withdrawn.
    pub const ROOM_INVITE: &str = "room.invite";
    pub const ROOM_END: &str = "room.end";
    pub const RECORDING_READ: &str = "recording.read";
    pub const RECORDING_DELETE: &str = "recording.delete";
    pub const RECORDING_CONTROL: &str = "recording.control";
    pub const AUDIT_READ: &str = "audit.read";
    pub const WORKFLOW_START: &str = "workflow.start";
    pub const WORKFLOW_READ: &str = "workflow.read";
    pub const WORKFLOW_STOP: &str = "workflow.stop";
    pub const CARE_TASK_READ: &str = "care_task.read";
    pub const CARE_TASK_DONE: &str = "care_task.done";
    pub const SIP_SECRET_SET: &str = "sip_secret.set";
    pub const SIP_SECRET_CLEAR: &str = "sip_secret.clear";
    pub const SIP_LOCKOUT: &str = "sip.lockout";
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit trail: {0}")]
    Db(#[from] sqlx::Error),
    #[error("audit trail: could not append after {0} attempts (another node keeps winning)")]
    Contended(u32),
}

/// One event to append.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub actor: String,
    pub action: &'static str,
    /// `success`, `denied` or `failure`.
    pub outcome: &'static str,
    pub patient_id: Option<String>,
    /// Non-PHI facts (ids, counts, roles, flags) as a JSON object.
    pub detail: serde_json::Value,
    /// Free text that may contain PHI; stored sealed.
    pub secret_text: Option<String>,
}

impl Event {
    pub fn new(actor: &str, action: &'static str, outcome: &'static str) -> Event {
        Event {
            actor: actor.to_string(),
            action,
            outcome,
            detail: serde_json::json!({}),
            ..Event::default()
        }
    }

    pub fn patient(mut self, id: &str) -> Event {
        self.patient_id = Some(id.to_string());
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Event {
        self.detail = detail;
        self
    }

    pub fn secret(mut self, text: &str) -> Event {
        self.secret_text = Some(text.to_string());
        self
    }
}

/// Which entries to read back.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub patient_id: Option<String>,
    pub actor: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub limit: Option<i64>,
}

/// The first broken entry, as `careline audit verify` reports it.
#[derive(Debug, Clone)]
pub struct Broken {
    pub entry: Option<Entry>,
    pub seq: i64,
    pub why: Break,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit entry {} ", self.seq)?;
        if let Some(e) = &self.entry {
            write!(
                f,
                "({} {} by {}, {}) ",
                crate::db::rfc3339(e.at),
                e.action,
                e.actor,
                e.outcome
            )?;
        }
        write!(f, "is broken: {}", self.why)
    }
}

#[derive(Clone)]
pub struct Audit {
    db: Db,
    keys: Arc<KeyRing>,
    /// Where the chain's head (newest sequence number and hash) is written after each append,
    /// outside the database: the one thing a hash chain cannot see is its own newest entries
    /// deleted together, and `verify` checks the trail against this.
    checkpoint: Option<std::path::PathBuf>,
    /// Appends from this process go one at a time; other nodes are told apart by the primary
    /// key on `seq` (a lost race is retried on the new head).
    append_lock: Arc<Mutex<()>>,
}

type Row = (
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    String,
);

fn entry_of(r: Row) -> Entry {
    Entry {
        seq: r.0,
        at: r.1,
        actor: r.2,
        action: r.3,
        outcome: r.4,
        patient_id: r.5,
        detail: r.6,
        sealed: r.7,
        prev_hash: r.8,
        hash: r.9,
    }
}

const COLUMNS: &str =
    "seq, at, actor, action, outcome, patient_id, detail, sealed, prev_hash, hash";

impl Audit {
    pub fn new(db: Db, keys: Arc<KeyRing>) -> Audit {
        Audit {
            db,
            keys,
            checkpoint: None,
            append_lock: Arc::new(Mutex::new(())),
        }
    }

    /// The same trail, keeping its chain head in the file `path` (beside the data, outside
    /// the database).
    pub fn with_checkpoint(mut self, path: std::path::PathBuf) -> Audit {
        self.checkpoint = Some(path);
        self
    }

    /// The checkpoint's (sequence, hash), if there is one.
    fn read_checkpoint(&self) -> Result<Option<(i64, String)>, String> {
        let Some(path) = &self.checkpoint else {
            return Ok(None);
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not the checkpoint's JSON ({e})", path.display()))?;
        match (v["seq"].as_i64(), v["hash"].as_str()) {
            (Some(seq), Some(hash)) => Ok(Some((seq, hash.to_string()))),
            _ => Err(format!("{}: no `seq` and `hash`", path.display())),
        }
    }

    /// Moves the checkpoint to (seq, hash) unless it already names a later entry (another
    /// process appending at the same time). Written to a temporary file and renamed, so a
    /// crash leaves the old checkpoint or the new one. A failure is logged, not returned: the
    /// entry itself is in the trail.
    fn write_checkpoint(&self, seq: i64, hash: &str) {
        let Some(path) = &self.checkpoint else {
            return;
        };
        if matches!(self.read_checkpoint(), Ok(Some((s, _))) if s >= seq) {
            return;
        }
        let tmp = path.with_extension("tmp");
        let text = serde_json::json!({"seq": seq, "hash": hash}).to_string();
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
            tracing::warn!(error = %e, path = %path.display(), "audit checkpoint not written");
        }
    }

    fn chain_key(&self) -> [u8; 32] {
        *self.keys.index_key("audit-chain")
    }

    /// Appends one entry; returns its sequence number.
    pub async fn append(&self, event: Event) -> Result<i64, AuditError> {
        let _guard = self.append_lock.lock().await;
        let key = self.chain_key();
        let sealed = event
            .secret_text
            .as_deref()
            .map(|t| self.keys.seal("audit", t.as_bytes()));
        let detail = if event.detail.is_object() {
            event.detail.to_string()
        } else {
            "{}".to_string()
        };
        const ATTEMPTS: u32 = 20;
        for _ in 0..ATTEMPTS {
            let head: Option<(i64, String)> =
                sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(self.db.pool())
                    .await?;
            let (seq, prev_hash) = match head {
                Some((s, h)) => (s + 1, h),
                None => (1, chain::GENESIS.to_string()),
            };
            let mut e = Entry {
                seq,
                at: now_ms(),
                actor: event.actor.clone(),
                action: event.action.to_string(),
                outcome: event.outcome.to_string(),
                patient_id: event.patient_id.clone(),
                detail: detail.clone(),
                sealed: sealed.clone(),
                prev_hash,
                hash: String::new(),
            };
            e.hash = chain::entry_hash(&key, &e);
            let hash = e.hash.clone();
            let inserted = sqlx::query(&format!(
                "INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (seq) DO NOTHING"
            ))
            .bind(e.seq)
            .bind(e.at)
            .bind(e.actor)
            .bind(e.action)
            .bind(e.outcome)
            .bind(e.patient_id)
            .bind(e.detail)
            .bind(e.sealed)
            .bind(e.prev_hash)
            .bind(e.hash)
            .execute(self.db.pool())
            .await?;
            if inserted.rows_affected() == 1 {
                self.write_checkpoint(seq, &hash);
                return Ok(seq);
            }
        }
        Err(AuditError::Contended(ATTEMPTS))
    }

    /// Appends and logs (never fails the caller): for events whose loss must not stop the
    /// action itself, such as a call ending.
    pub async fn record(&self, event: Event) {
        let action = event.action;
        if let Err(e) = self.append(event).await {
            tracing::error!(error = %e, action, "audit append failed");
        }
    }

    /// Entries matching `filter`, oldest first.
    pub async fn query(&self, filter: &Filter) -> Result<Vec<Entry>, AuditError> {
        let mut sql = format!("SELECT {COLUMNS} FROM audit_log WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if filter.patient_id.is_some() {
            sql += &format!(" AND patient_id = {}", next());
        }
        if filter.actor.is_some() {
            sql += &format!(" AND actor = {}", next());
        }
        if filter.since_ms.is_some() {
            sql += &format!(" AND at >= {}", next());
        }
        if filter.until_ms.is_some() {
            sql += &format!(" AND at < {}", next());
        }
        sql += &format!(" ORDER BY seq LIMIT {}", next());
        let mut q = sqlx::query_as::<_, Row>(&sql);
        if let Some(v) = &filter.patient_id {
            q = q.bind(v.clone());
        }
        if let Some(v) = &filter.actor {
            q = q.bind(v.clone());
        }
        if let Some(v) = filter.since_ms {
            q = q.bind(v);
        }
        if let Some(v) = filter.until_ms {
            q = q.bind(v);
        }
        q = q.bind(filter.limit.unwrap_or(10_000).clamp(1, 100_000));
        let rows = q.fetch_all(self.db.pool()).await?;
        Ok(rows.into_iter().map(entry_of).collect())
    }

    /// The sealed free text of an entry, for auditors.
    pub fn reveal(&self, entry: &Entry) -> Option<String> {
        let sealed = entry.sealed.as_deref()?;
        self.keys
            .open_sealed("audit", sealed)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Walks the whole chain; `Ok(n)` with the number of entries checked, or the first
    /// broken entry. Then the trail's end is held against the checkpoint outside the
    /// database: an entry it names must be there, with the hash it recorded.
    pub async fn verify(&self) -> Result<Result<u64, Broken>, AuditError> {
        let mut verifier = chain::Verifier::new(self.chain_key());
        let mut after = 0i64;
        loop {
            let rows: Vec<Row> = sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT 1000"
            ))
            .bind(after)
            .fetch_all(self.db.pool())
            .await?;
            if rows.is_empty() {
                let checkpoint = match self.read_checkpoint() {
                    Ok(c) => c,
                    Err(why) => {
                        return Ok(Err(Broken {
                            seq: after,
                            entry: None,
                            why: chain::Break::Checkpoint(why),
                        }));
                    }
                };
                if let Some((seq, hash)) = checkpoint {
                    if seq > after {
                        return Ok(Err(Broken {
                            seq,
                            entry: None,
                            why: chain::Break::TailCut { last: after },
                        }));
                    }
                    let row: Option<Row> =
                        sqlx::query_as(&format!("SELECT {COLUMNS} FROM audit_log WHERE seq = $1"))
                            .bind(seq)
                            .fetch_optional(self.db.pool())
                            .await?;
                    let entry = row.map(entry_of);
                    if entry.as_ref().is_none_or(|e| e.hash != hash) {
                        return Ok(Err(Broken {
                            seq,
                            entry,
                            why: chain::Break::Replaced,
                        }));
                    }
                }
                return Ok(Ok(verifier.checked));
            }
            for row in rows {
                let e = entry_of(row);
                after = e.seq;
                if let Err(why) = verifier.feed(&e) {
                    return Ok(Err(Broken {
                        seq: e.seq,
                        entry: Some(e),
                        why,
                    }));
                }
            }
        }
    }
}

impl Audit {
    /// Records a configuration change: the digest of the effective configuration is compared
    /// with the one seen at the previous start (settings table).
    pub async fn note_config(&self, digest: &str) -> Result<(), AuditError> {
        let previous: Option<(String,)> =
            sqlx::query_as("SELECT value FROM settings WHERE name = 'config_sha256'")
                .fetch_optional(self.db.pool())
                .await?;
        let previous = previous.map(|(v,)| v);
        if previous.as_deref() == Some(digest) {
            return Ok(());
        }
        self.append(
            Event::new("system", action::CONFIG_CHANGE, "success")
                .detail(serde_json::json!({"from": previous, "to": digest})),
        )
        .await?;
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ('config_sha256', $1) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(digest)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }
}

impl Audit {
    /// How many entries hold free text sealed under a master key other than `key_id`. Key
    /// rotation cannot re-wrap these: the sealed text is part of the hash chain, so re-wrapping
    /// would read as an edited entry. The master keys they name must stay in the ring.
    pub async fn sealed_under_other_keys(&self, key_id: &str) -> Result<i64, AuditError> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM audit_log WHERE sealed IS NOT NULL AND sealed NOT LIKE $1",
        )
        .bind(format!("{key_id}:%"))
        .fetch_one(self.db.pool())
        .await?;
        Ok(n)
    }
}
