//! Call records (Amazon Connect's "contact records"): one per answered call, written when it
//! ends, for a contact center's reports. When it was answered and ended, which way and over
//! what (phone or browser), how it ended, each queue it waited in and who answered it when,
//! its recordings, and the outcome the agent chose at wrap-up.
//!
//! A record names no patient and no caller number (both PHI): only whether the IVR identified
//! the caller. The patient's own contact history (`patient::ContactRecord`, sealed) is where a
//! call is tied to a person. The wrap-up's code is kept in a table of its own, because an
//! agent may wrap up while the call still runs, before its record exists.

use serde::{Deserialize, Serialize};

use crate::call::CallEnd;
use crate::call::core::QueueStay;
use crate::db::{Db, rfc3339};

#[derive(Debug, thiserror::Error)]
pub enum CallRecordError {
    #[error("call records: {0}")]
    Db(#[from] sqlx::Error),
}

/// One call as the reports see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub call_id: String,
    /// RFC 3339: when the call was answered (by the IVR, or by the person Careline called).
    pub started: String,
    pub ended: String,
    pub duration_secs: u64,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// `phone` or `browser`.
    pub channel: String,
    /// How it ended (`caller_bye`, `server_bye`, `agent_hangup`, ...: the metrics' causes).
    pub end_cause: String,
    /// Whether the IVR identified the caller as a patient (never whom).
    pub identified: bool,
    /// The queue it was last in.
    pub queue: Option<String>,
    /// The last agent who talked with the caller.
    pub agent: Option<String>,
    /// Seconds from entering its first queue to the first agent (or to its end, unanswered).
    pub wait_secs: Option<u64>,
    /// Each stay in a queue, in order (a transfer starts the next).
    pub queue_stays: Vec<QueueStay>,
    pub recordings: Vec<String>,
    /// The wrap-up code the agent chose, and who.
    pub disposition: Option<String>,
    pub wrapped_up_by: Option<String>,
}

/// Which records to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Started at or after, before (epoch ms).
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub queue: Option<String>,
    pub agent: Option<String>,
    pub limit: i64,
}

#[derive(Clone)]
pub struct CallRecords {
    db: Db,
}

type Row = (
    String,
    i64,
    i64,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
);

fn ms(t: jiff::Timestamp) -> i64 {
    t.as_millisecond()
}

impl CallRecords {
    pub fn new(db: Db) -> CallRecords {
        CallRecords { db }
    }

    /// Writes the record of a call that ended (once: a second end of the same call is
    /// ignored); `identified`: a patient was tied to the call (by the IVR or the API).
    pub async fn insert(&self, end: &CallEnd, identified: bool) -> Result<(), CallRecordError> {
        let started = ms(end.answered_at);
        let ended = started + end.duration.as_millis() as i64;
        let agent = end.queue_stays.iter().rev().find_map(|s| s.agent.clone());
        sqlx::query(
            "INSERT INTO call_records (call_id, started_at, ended_at, direction, channel, \
             end_cause, identified, queue, agent, queue_stays, recordings) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (call_id) DO NOTHING",
        )
        .bind(&end.call_id)
        .bind(started)
        .bind(ended)
        .bind(end.direction)
        .bind(end.channel)
        .bind(end.cause)
        .bind(i64::from(identified))
        .bind(end.queue.as_deref())
        .bind(agent)
        .bind(serde_json::to_string(&end.queue_stays).unwrap_or_else(|_| "[]".into()))
        .bind(serde_json::to_string(&end.recordings).unwrap_or_else(|_| "[]".into()))
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The wrap-up of `call_id` by `agent`: its code, once per call. False when the call had
    /// one already (nothing changes).
    pub async fn set_disposition(
        &self,
        call_id: &str,
        code: &str,
        agent: &str,
        at_ms: i64,
    ) -> Result<bool, CallRecordError> {
        let done = sqlx::query(
            "INSERT INTO call_dispositions (call_id, code, agent, at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (call_id) DO NOTHING",
        )
        .bind(call_id)
        .bind(code)
        .bind(agent)
        .bind(at_ms)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Takes back `agent`'s wrap-up of `call_id` (what it was to go with could not be
    /// written), so that it can be made again.
    pub async fn unset_disposition(
        &self,
        call_id: &str,
        agent: &str,
    ) -> Result<(), CallRecordError> {
        sqlx::query("DELETE FROM call_dispositions WHERE call_id = $1 AND agent = $2")
            .bind(call_id)
            .bind(agent)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Records by `filter`, oldest first.
    pub async fn list(&self, filter: &Filter) -> Result<Vec<CallRecord>, CallRecordError> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT r.call_id, r.started_at, r.ended_at, r.direction, r.channel, r.end_cause, \
             r.identified, r.queue, r.agent, r.queue_stays, r.recordings, d.code, d.agent \
             FROM call_records r LEFT JOIN call_dispositions d ON d.call_id = r.call_id \
             WHERE r.started_at >= $1 AND r.started_at < $2 \
             AND ($3 = '' OR r.queue = $3) AND ($4 = '' OR r.agent = $4) \
             ORDER BY r.started_at, r.call_id LIMIT $5",
        )
        .bind(filter.since_ms.unwrap_or(0))
        .bind(filter.until_ms.unwrap_or(i64::MAX))
        .bind(filter.queue.as_deref().unwrap_or(""))
        .bind(filter.agent.as_deref().unwrap_or(""))
        .bind(filter.limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(record).collect())
    }
}

fn record(r: Row) -> CallRecord {
    let (call_id, started, ended, direction, channel, end_cause, identified) =
        (r.0, r.1, r.2, r.3, r.4, r.5, r.6);
    let queue_stays: Vec<QueueStay> = serde_json::from_str(&r.9).unwrap_or_default();
    let wait_secs = queue_stays.first().map(|first| {
        let until = queue_stays
            .iter()
            .find_map(|s| s.answered_at)
            .map_or(ended, ms);
        ((until - ms(first.enqueued_at)).max(0) / 1000) as u64
    });
    CallRecord {
        call_id,
        started: rfc3339(started),
        ended: rfc3339(ended),
        duration_secs: ((ended - started).max(0) / 1000) as u64,
        direction,
        channel,
        end_cause,
        identified: identified != 0,
        queue: r.7,
        agent: r.8,
        wait_secs,
        queue_stays,
        recordings: serde_json::from_str(&r.10).unwrap_or_default(),
        disposition: r.11,
        wrapped_up_by: r.12,
    }
}

/// The columns of the CSV export, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "call_id",
    "started",
    "ended",
    "duration_secs",
    "direction",
    "channel",
    "end_cause",
    "identified",
    "queue",
    "agent",
    "wait_secs",
    "queues",
    "transfers",
    "recordings",
    "disposition",
    "wrapped_up_by",
];

/// One field as RFC 4180 wants it: quoted when it holds a comma, quote or line break. A
/// field a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) gets a leading `'`.
fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The records as CSV (RFC 4180: a header row, CRLF line ends), for a spreadsheet.
pub fn to_csv(records: &[CallRecord]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    for r in records {
        let queues: Vec<&str> = r.queue_stays.iter().map(|s| s.queue.as_str()).collect();
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let row = [
            r.call_id.clone(),
            r.started.clone(),
            r.ended.clone(),
            r.duration_secs.to_string(),
            r.direction.clone(),
            r.channel.clone(),
            r.end_cause.clone(),
            r.identified.to_string(),
            opt(&r.queue),
            opt(&r.agent),
            r.wait_secs.map(|w| w.to_string()).unwrap_or_default(),
            queues.join(" > "),
            r.queue_stays.len().saturating_sub(1).to_string(),
            r.recordings.join(" "),
            opt(&r.disposition),
            opt(&r.wrapped_up_by),
        ];
        let fields: Vec<String> = row.iter().map(|f| field(f)).collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn end(call_id: &str) -> CallEnd {
        CallEnd {
            call_id: call_id.into(),
            cause: "agent_hangup",
            answered_at: at("2026-12-07T09:00:00Z"),
            duration: Duration::from_secs(300),
            patient: Some("pat-1".into()),
            recordings: vec!["rec-1".into()],
            reason: Some("chest pain".into()),
            queue: Some("triage-nurses".into()),
            direction: "inbound",
            channel: "phone",
            queue_stays: vec![
                QueueStay {
                    queue: "triage-urgent".into(),
                    enqueued_at: at("2026-12-07T09:00:40Z"),
                    answered_at: Some(at("2026-12-07T09:01:10Z")),
                    agent: Some("ana".into()),
                },
                QueueStay {
                    queue: "triage-nurses".into(),
                    enqueued_at: at("2026-12-07T09:03:00Z"),
                    answered_at: Some(at("2026-12-07T09:03:20Z")),
                    agent: Some("ben".into()),
                },
            ],
        }
    }

    async fn store() -> (CallRecords, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(None, dir.path()).await.unwrap();
        (CallRecords::new(db), dir)
    }

    #[tokio::test]
    async fn a_transferred_call_is_recorded_with_each_stay_its_wait_and_its_wrap_up() {
        let (records, _dir) = store().await;
        records.insert(&end("c1"), true).await.unwrap();
        // Its end reported twice: one record.
        records.insert(&end("c1"), true).await.unwrap();
        records
            .set_disposition("c1", "advice-given", "ben", 0)
            .await
            .unwrap();
        records
            .set_disposition("c1", "no-action", "ben", 0)
            .await
            .unwrap();
        let all = records
            .list(&Filter {
                limit: 100,
                ..Filter::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 1);
        let r = &all[0];
        assert_eq!(r.started, "2026-12-07T09:00:00Z");
        assert_eq!(r.ended, "2026-12-07T09:05:00Z");
        assert_eq!(r.duration_secs, 300);
        assert_eq!(r.agent.as_deref(), Some("ben"), "the last agent");
        assert_eq!(r.queue.as_deref(), Some("triage-nurses"));
        assert_eq!(r.wait_secs, Some(30), "first queue to first agent");
        assert!(r.identified);
        assert_eq!(
            r.disposition.as_deref(),
            Some("advice-given"),
            "the first wrap-up"
        );
        let json = serde_json::to_string(r).unwrap();
        assert!(
            !json.contains("pat-1") && !json.contains("chest pain"),
            "no patient, no reason: {json}"
        );
        let csv = to_csv(&all);
        let mut lines = csv.split("\r\n");
        assert_eq!(lines.next(), Some(CSV_COLUMNS.join(",").as_str()));
        let row = lines.next().unwrap();
        assert!(
            row.contains(",triage-urgent > triage-nurses,1,rec-1,advice-given,ben"),
            "{row}"
        );
    }

    #[tokio::test]
    async fn records_are_filtered_by_time_queue_and_agent() {
        let (records, _dir) = store().await;
        let mut unanswered = end("c2");
        unanswered.answered_at = at("2026-12-07T10:00:00Z");
        unanswered.queue = Some("triage-results".into());
        unanswered.queue_stays = vec![QueueStay {
            queue: "triage-results".into(),
            enqueued_at: at("2026-12-07T10:00:20Z"),
            answered_at: None,
            agent: None,
        }];
        unanswered.duration = Duration::from_secs(80);
        records.insert(&end("c1"), true).await.unwrap();
        records.insert(&unanswered, false).await.unwrap();
        let list = |f: Filter| {
            let records = records.clone();
            async move {
                records
                    .list(&Filter { limit: 100, ..f })
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| r.call_id)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(list(Filter::default()).await, ["c1", "c2"]);
        let since = Some(ms(at("2026-12-07T09:30:00Z")));
        assert_eq!(
            list(Filter {
                since_ms: since,
                ..Filter::default()
            })
            .await,
            ["c2"]
        );
        assert_eq!(
            list(Filter {
                until_ms: since,
                ..Filter::default()
            })
            .await,
            ["c1"]
        );
        let q = Some("triage-results".to_string());
        assert_eq!(
            list(Filter {
                queue: q,
                ..Filter::default()
            })
            .await,
            ["c2"]
        );
        let a = Some("ben".to_string());
        assert_eq!(
            list(Filter {
                agent: a,
                ..Filter::default()
            })
            .await,
            ["c1"]
        );
        let r = records
            .list(&Filter {
                since_ms: since,
                limit: 10,
                ..Filter::default()
            })
            .await
            .unwrap();
        assert_eq!(r[0].wait_secs, Some(60), "unanswered: waited until the end");
        assert_eq!(r[0].agent, None);
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(field("-1,2"), "\"'-1,2\"");
    }
}
