//! Telling people outside Careline that something waits for them: a webhook (a chat or paging
//! integration) and e-mail through the clinic's SMTP relay.
//!
//! A notice is written to the database first ([`Outbox::put`], keyed by what it is about and
//! the channel) and sent afterwards by the [`Postman`], which retries with backoff until the
//! receiver takes it or refuses it for good. So a notice is never lost to a crash or a relay
//! that is down for an hour, and one asked for twice (a workflow task delivered again after a
//! restart) is queued once. Delivery is at least once: a crash between the relay's `250` and
//! the row being marked sends it again, with the same `Message-ID` (and, for webhooks, the same
//! `Idempotency-Key`), so the receiver can tell.
//!
//! A notice to a person never carries patient data: it says that an item waits and where (the
//! signed-in, audited pages say what); e-mail leaves the clinic's control once relayed. An
//! order to a system (a refill to the pharmacy, FHIR over HTTPS) does: every body is sealed
//! in the database like the patient store's values, and emptied once sent.

pub mod mail;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{info, warn};

use crate::db::Db;

/// Where a notice goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// POST of the body (JSON) to the target URL.
    Webhook,
    /// An e-mail to the target addresses.
    Mail,
    /// POST of the body (a FHIR Bundle, `application/fhir+json`) to the target URL: an order
    /// to another clinical system.
    Fhir,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Mail => "mail",
            Channel::Fhir => "fhir",
        }
    }

    fn parse(s: &str) -> Option<Channel> {
        match s {
            "webhook" => Some(Channel::Webhook),
            "mail" => Some(Channel::Mail),
            "fhir" => Some(Channel::Fhir),
            _ => None,
        }
    }
}

/// One notice to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// What it is about and the channel (`care-task:ID:mail`): the same notice asked for
    /// twice is queued once. Also the e-mail's `Message-ID` and the webhook's
    /// `Idempotency-Key`.
    pub id: String,
    pub channel: Channel,
    /// The URL, or the recipients' addresses.
    pub target: Vec<String>,
    /// The e-mail's subject (empty for a webhook).
    pub subject: String,
    /// The e-mail's text, or the webhook's JSON.
    pub body: String,
}

pub const PENDING: &str = "pending";
pub const SENT: &str = "sent";
pub const FAILED: &str = "failed";

/// How a try to send ended, when it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth another try later: the relay or endpoint was unreachable, busy or said 4xx
    /// (SMTP) / 5xx, 408, 429 (HTTP).
    Transient(String),
    /// Refused for good: trying again would get the same answer (SMTP 5xx, HTTP 4xx, an
    /// address that is no address).
    Permanent(String),
}

impl Failure {
    fn reason(&self) -> &str {
        match self {
            Failure::Transient(r) | Failure::Permanent(r) => r,
        }
    }
}

/// Tries a notice gets before it is given up: with the backoff below, a little over a day.
pub const MAX_ATTEMPTS: u32 = 14;

/// When to try again after `attempts` failed tries (None: give up). Sans-IO: the postman
/// applies it. 30 s doubling, at most 6 h apart, so a relay down overnight still gets the
/// morning's notices, and one that refuses for good is not hammered.
pub fn retry_after(attempts: u32, failure: &Failure) -> Option<Duration> {
    if matches!(failure, Failure::Permanent(_)) || attempts >= MAX_ATTEMPTS {
        return None;
    }
    let secs = 30u64.saturating_mul(1u64 << attempts.saturating_sub(1).min(20));
    Some(Duration::from_secs(secs.min(6 * 3600)))
}

/// A notice stored, as the postman reads it back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stored {
    pub id: String,
    pub channel: String,
    /// The URL, or the recipients' addresses.
    pub target: Vec<String>,
    pub status: String,
    pub attempts: u32,
    pub created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

fn stored(row: StoredRow) -> Stored {
    let (id, channel, target, status, attempts, created, sent, last_error) = row;
    Stored {
        id,
        channel,
        target: target.split(',').map(String::from).collect(),
        status,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        created: crate::db::rfc3339(created),
        sent: sent.map(crate::db::rfc3339),
        last_error,
    }
}

/// The notices owed, in the database.
#[derive(Clone)]
pub struct Outbox {
    db: Db,
    keys: Arc<crate::keys::KeyRing>,
    /// Wakes the postman when a notice is put.
    wake: Arc<Notify>,
}

/// id, channel, target, status, attempts, created_at, sent_at, last_error.
type StoredRow = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
);
type DueRow = (String, String, String, String, String, i64, i64);

/// How long a claimed notice is left to the postman trying it before another may (longer
/// than an SMTP conversation's timeouts).
const CLAIM_MS: i64 = 10 * 60 * 1000;

/// The sealing context of notice `id`'s body.
pub(crate) fn context(id: &str) -> String {
    format!("notification:{id}")
}

impl Outbox {
    pub fn new(db: Db, keys: Arc<crate::keys::KeyRing>) -> Outbox {
        Outbox {
            db,
            keys,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Queues `notice` unless one with its id is queued already (sent or not); true when new.
    pub async fn put(&self, notice: &Notice, now_ms: i64) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO notifications (id, channel, target, subject, body, status, attempts, created_at, next_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&notice.id)
        .bind(notice.channel.name())
        .bind(notice.target.join(","))
        .bind(&notice.subject)
        .bind(self.keys.seal(&context(&notice.id), notice.body.as_bytes()))
        .bind(PENDING)
        .bind(now_ms)
        .execute(self.db.pool())
        .await?;
        let new = done.rows_affected() == 1;
        if new {
            self.wake.notify_one();
        }
        Ok(new)
    }

    /// The notice `id`, if queued.
    pub async fn get(&self, id: &str) -> Result<Option<Stored>, sqlx::Error> {
        let row: Option<StoredRow> = sqlx::query_as(
            "SELECT id, channel, target, status, attempts, created_at, sent_at, last_error \
                 FROM notifications WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.map(stored))
    }

    /// Notices by status (all when None), newest first.
    pub async fn list(&self, status: Option<&str>, limit: i64) -> Result<Vec<Stored>, sqlx::Error> {
        let rows: Vec<StoredRow> = sqlx::query_as(
            "SELECT id, channel, target, status, attempts, created_at, sent_at, last_error \
             FROM notifications WHERE ($1 IS NULL OR status = $1) ORDER BY created_at DESC, id LIMIT $2",
        )
        .bind(status)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(stored).collect())
    }

    /// Sends a notice given up on again (the relay fixed, the address corrected in the
    /// configuration does not apply: the notice keeps its recipients), from now, with a fresh
    /// round of tries. False when it is not a failed notice.
    pub async fn retry(&self, id: &str, now_ms: i64) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE notifications SET status = $1, attempts = 0, next_at = $2 WHERE id = $3 AND status = $4",
        )
        .bind(PENDING)
        .bind(now_ms)
        .bind(id)
        .bind(FAILED)
        .execute(self.db.pool())
        .await?;
        let again = done.rows_affected() == 1;
        if again {
            self.wake.notify_one();
        }
        Ok(again)
    }

    /// Notices due by `now_ms`, oldest first.
    async fn due(&self, now_ms: i64, limit: i64) -> Result<Vec<DueRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, channel, target, subject, body, attempts, next_at FROM notifications \
             WHERE status = $1 AND next_at <= $2 ORDER BY next_at, id LIMIT $3",
        )
        .bind(PENDING)
        .bind(now_ms)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await
    }

    /// Takes the notice `id` due at `due` for one try: pushes its due time past the try so
    /// another postman on the same database (the CLI beside the server, two servers on one
    /// PostgreSQL) does not send it too. False: someone else took it.
    async fn claim(&self, id: &str, due: i64, now_ms: i64) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE notifications SET next_at = $1 WHERE id = $2 AND status = $3 AND next_at = $4",
        )
        .bind(now_ms.saturating_add(CLAIM_MS))
        .bind(id)
        .bind(PENDING)
        .bind(due)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// When the next pending notice is due.
    async fn next_due(&self) -> Result<Option<i64>, sqlx::Error> {
        let row: (Option<i64>,) =
            sqlx::query_as("SELECT MIN(next_at) FROM notifications WHERE status = $1")
                .bind(PENDING)
                .fetch_one(self.db.pool())
                .await?;
        Ok(row.0)
    }

    /// Marks `id` sent and empties its body (nothing kept that is not needed).
    async fn mark_sent(&self, id: &str, attempts: i64, now_ms: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE notifications SET status = $1, attempts = $2, sent_at = $3, last_error = NULL, body = '' WHERE id = $4",
        )
        .bind(SENT)
        .bind(attempts)
        .bind(now_ms)
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    async fn mark_failed(
        &self,
        id: &str,
        attempts: i64,
        error: &str,
        retry_at: Option<i64>,
    ) -> Result<(), sqlx::Error> {
        let (status, next) = match retry_at {
            Some(at) => (PENDING, at),
            None => (FAILED, i64::MAX),
        };
        sqlx::query(
            "UPDATE notifications SET status = $1, attempts = $2, next_at = $3, last_error = $4 WHERE id = $5",
        )
        .bind(status)
        .bind(attempts)
        .bind(next)
        .bind(error)
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }
}

/// Sends what the outbox owes, one notice at a time (a clinic's notices are a few an hour;
/// a relay that is down holds back everything equally).
pub struct Postman {
    outbox: Outbox,
    mail: Option<mail::Mailer>,
    http: crate::flow::http::HttpClient,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// The longest the postman sleeps without looking (a notice put by another process sharing
/// the database, or a clock that jumped).
const IDLE_LOOK: Duration = Duration::from_secs(30);

impl Postman {
    pub fn new(
        outbox: Outbox,
        mail: Option<mail::Mailer>,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Postman {
        Postman {
            outbox,
            mail,
            http: crate::flow::http::HttpClient::new(),
            metrics,
        }
    }

    /// Runs until the task is dropped.
    pub async fn run(self) {
        loop {
            let now = crate::db::now_ms();
            if let Err(e) = self.deliver_due(now).await {
                warn!(error = %e, "notifications: the outbox could not be read");
            }
            let wait = match self.outbox.next_due().await {
                Ok(Some(at)) => Duration::from_millis(
                    u64::try_from(at.saturating_sub(crate::db::now_ms())).unwrap_or(0),
                )
                .min(IDLE_LOOK),
                _ => IDLE_LOOK,
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = self.outbox.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Tries each notice due by `now_ms` once.
    pub async fn deliver_due(&self, now_ms: i64) -> Result<(), sqlx::Error> {
        for (id, channel, target, subject, body, attempts, due) in
            self.outbox.due(now_ms, 50).await?
        {
            if !self.outbox.claim(&id, due, crate::db::now_ms()).await? {
                continue;
            }
            let attempts = attempts.saturating_add(1);
            let body = self.outbox.keys.open_sealed(&context(&id), &body);
            let body = body
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned());
            let result = match (Channel::parse(&channel), body) {
                (_, Err(_)) => Err(Failure::Permanent(
                    "its body does not open with this key ring".into(),
                )),
                (Some(Channel::Mail), Ok(body)) => {
                    self.send_mail(&id, &target, &subject, &body).await
                }
                (Some(Channel::Webhook), Ok(body)) => {
                    self.post(&id, &target, &body, "application/json").await
                }
                (Some(Channel::Fhir), Ok(body)) => {
                    self.post(&id, &target, &body, "application/fhir+json")
                        .await
                }
                (None, _) => Err(Failure::Permanent(format!("unknown channel `{channel}`"))),
            };
            let outcome = match &result {
                Ok(()) => {
                    self.outbox
                        .mark_sent(&id, attempts, crate::db::now_ms())
                        .await?;
                    info!(notice = %id, channel, attempts, "notice sent");
                    "sent"
                }
                Err(failure) => {
                    let tries = u32::try_from(attempts).unwrap_or(u32::MAX);
                    let retry = retry_after(tries, failure);
                    let at = retry.map(|d| {
                        crate::db::now_ms()
                            .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                    });
                    self.outbox
                        .mark_failed(&id, attempts, failure.reason(), at)
                        .await?;
                    match retry {
                        Some(d) => {
                            warn!(notice = %id, channel, attempts, error = failure.reason(),
                                  retry_in_s = d.as_secs(), "notice not sent; trying again later");
                            "retry"
                        }
                        None => {
                            warn!(notice = %id, channel, attempts, error = failure.reason(),
                                  "notice given up");
                            "failed"
                        }
                    }
                }
            };
            if let Some(m) = &self.metrics {
                let channel = Channel::parse(&channel).map_or("unknown", Channel::name);
                m.notifications
                    .get_or_create(&vec![("channel", channel), ("outcome", outcome)])
                    .inc();
            }
        }
        Ok(())
    }

    async fn send_mail(
        &self,
        id: &str,
        target: &str,
        subject: &str,
        body: &str,
    ) -> Result<(), Failure> {
        let Some(mailer) = &self.mail else {
            // Queued while `[smtp]` was set, and the server restarted without it: keep it
            // for when the relay is configured again.
            return Err(Failure::Transient("no [smtp] relay is configured".into()));
        };
        let to: Vec<&str> = target.split(',').filter(|t| !t.is_empty()).collect();
        mailer.send(id, &to, subject, body).await
    }

    async fn post(
        &self,
        id: &str,
        url: &str,
        body: &str,
        content_type: &str,
    ) -> Result<(), Failure> {
        let told = self
            .http
            .post_json_with(
                url,
                body.as_bytes().to_vec(),
                &[("idempotency-key", id), ("content-type", content_type)],
                Duration::from_secs(10),
                4096,
            )
            .await;
        match told {
            Ok(r) if (200..300).contains(&r.status) => Ok(()),
            Ok(r) if r.status == 408 || r.status == 429 || r.status >= 500 => {
                Err(Failure::Transient(format!("HTTP {}", r.status)))
            }
            Ok(r) => Err(Failure::Permanent(format!("HTTP {}", r.status))),
            Err(e) => Err(Failure::Transient(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_minute_and_stops() {
        let t = |n| retry_after(n, &Failure::Transient("down".into()));
        assert_eq!(t(1), Some(Duration::from_secs(30)));
        assert_eq!(t(2), Some(Duration::from_secs(60)));
        assert_eq!(t(5), Some(Duration::from_secs(480)));
        assert_eq!(t(11), Some(Duration::from_secs(6 * 3600)));
        assert_eq!(t(MAX_ATTEMPTS), None);
        assert_eq!(retry_after(1, &Failure::Permanent("550".into())), None);
        let total: u64 = (1..MAX_ATTEMPTS).filter_map(t).map(|d| d.as_secs()).sum();
        assert!(
            (24 * 3600..48 * 3600).contains(&total),
            "gives up after {total} s"
        );
    }

    async fn outbox() -> (Outbox, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(None, dir.path()).await.unwrap();
        let keys = Arc::new(
            crate::keys::KeyRing::open(dir.path(), crate::keys::Supplied::default()).unwrap(),
        );
        (Outbox::new(db, keys), dir)
    }

    fn notice(url: &str) -> Notice {
        Notice {
            id: "care-task:abc:webhook".into(),
            channel: Channel::Webhook,
            target: vec![url.into()],
            subject: String::new(),
            body: r#"{"care_task":"abc"}"#.into(),
        }
    }

    #[tokio::test]
    async fn a_notice_asked_for_twice_is_queued_once() {
        let (outbox, _dir) = outbox().await;
        assert!(
            outbox
                .put(&notice("http://127.0.0.1:9/"), 1_000)
                .await
                .unwrap()
        );
        assert!(
            !outbox
                .put(&notice("http://127.0.0.1:9/"), 2_000)
                .await
                .unwrap()
        );
        assert_eq!(outbox.due(5_000, 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_unreachable_webhook_is_tried_again_later_and_a_refusal_is_final() {
        let (outbox, _dir) = outbox().await;
        // Port 9 (discard) on loopback: nothing listens, the connection is refused.
        outbox
            .put(&notice("http://127.0.0.1:9/"), 1_000)
            .await
            .unwrap();
        let postman = Postman::new(outbox.clone(), None, None);
        postman.deliver_due(crate::db::now_ms()).await.unwrap();
        let s = outbox.get("care-task:abc:webhook").await.unwrap().unwrap();
        assert_eq!((s.status.as_str(), s.attempts), (PENDING, 1));
        assert!(s.last_error.is_some());
        // Not due again at once: the backoff holds it.
        assert!(
            outbox
                .due(crate::db::now_ms(), 10)
                .await
                .unwrap()
                .is_empty()
        );

        // A mail notice while no relay is configured waits (transient), it is not dropped.
        let mut m = notice("");
        m.id = "care-task:abc:mail".into();
        m.channel = Channel::Mail;
        m.target = vec!["nurses@clinic.example".into()];
        outbox.put(&m, 1_000).await.unwrap();
        postman.deliver_due(crate::db::now_ms()).await.unwrap();
        let s = outbox.get("care-task:abc:mail").await.unwrap().unwrap();
        assert_eq!(s.status, PENDING);
        assert_eq!(
            s.last_error.as_deref(),
            Some("no [smtp] relay is configured")
        );
    }

    #[tokio::test]
    async fn a_notice_refused_for_good_is_listed_failed_and_can_be_sent_again() {
        let (outbox, _dir) = outbox().await;
        // A relay configured nowhere is transient; an unknown channel is refused for good.
        sqlx::query(
            "INSERT INTO notifications (id, channel, target, subject, body, status, attempts, created_at, next_at) \
             VALUES ('x', 'pigeon', 'roof', '', '', 'pending', 0, 1, 1)",
        )
        .execute(outbox.db.pool())
        .await
        .unwrap();
        let postman = Postman::new(outbox.clone(), None, None);
        postman.deliver_due(crate::db::now_ms()).await.unwrap();
        let failed = outbox.list(Some(FAILED), 10).await.unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].id, "x");
        assert!(failed[0].last_error.is_some());
        assert!(outbox.list(Some(PENDING), 10).await.unwrap().is_empty());
        assert!(outbox.retry("x", crate::db::now_ms()).await.unwrap());
        let again = outbox.get("x").await.unwrap().unwrap();
        assert_eq!((again.status.as_str(), again.attempts), (PENDING, 0));
        assert!(
            !outbox.retry("x", crate::db::now_ms()).await.unwrap(),
            "not failed now"
        );
        assert!(!outbox.retry("nope", crate::db::now_ms()).await.unwrap());
    }
}
