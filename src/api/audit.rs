//! `GET /api/v1/audit` for auditors: filter by patient, user and time; JSON lines or FHIR
//! AuditEvent. The query itself is audited.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::access::{ApiError, ApiState, Caller};
use super::extract::QueryParams;
use crate::audit::export::{audit_event, fhir_bundle, json_entry};
use crate::audit::{Event, Filter, action};
use crate::auth::Action;
use crate::db::{now_ms, parse_time};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    pub patient: Option<String>,
    pub user: Option<String>,
    /// RFC 3339, `YYYY-MM-DD`, or a duration back from now: `30m`, `24h`, `7d`.
    pub since: Option<String>,
    pub until: Option<String>,
    /// `jsonl` (default) or `fhir`.
    pub format: Option<String>,
    pub limit: Option<i64>,
}

/// `24h` → milliseconds ago, else an absolute time.
pub(crate) fn when(text: &str) -> Option<i64> {
    // The last character (not byte: the text is the client's, and may end in any letter).
    let cut = text.char_indices().last().map_or(0, |(i, _)| i);
    let (n, unit) = text.split_at(cut);
    let mult = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => 0,
    };
    if mult > 0
        && let Ok(n) = n.parse::<i64>()
    {
        return Some(now_ms() - n * mult);
    }
    parse_time(text)
}

/// A time query parameter (`since`, `until`) as [`when`] reads it; 400 naming it otherwise.
pub(crate) fn time_param(name: &str, v: &Option<String>) -> Result<Option<i64>, ApiError> {
    v.as_deref()
        .map(|t| {
            when(t).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{name} `{t}` is not RFC 3339, YYYY-MM-DD or a duration like 24h"
                ))
            })
        })
        .transpose()
}

pub(crate) async fn query(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
    QueryParams(q): QueryParams<AuditQuery>,
) -> Result<Response, ApiError> {
    s.require(&caller, Action::AuditRead, None).await?;
    let filter = Filter {
        patient_id: q.patient.clone(),
        actor: q.user.clone(),
        since_ms: time_param("since", &q.since)?,
        until_ms: time_param("until", &q.until)?,
        limit: q.limit,
    };
    let entries = s.audit.query(&filter).await?;
    s.audit
        .append(
            Event::new(caller.name(), action::AUDIT_READ, "success").detail(json!({
                "patient": q.patient, "user": q.user, "since": q.since, "until": q.until,
                "returned": entries.len(),
            })),
        )
        .await?;
    match q.format.as_deref().unwrap_or("jsonl") {
        "jsonl" | "json" => {
            let mut body = String::new();
            for e in &entries {
                body.push_str(&json_entry(e, s.audit.reveal(e)).to_string());
                body.push('\n');
            }
            Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
        }
        "fhir" => {
            let events = entries
                .iter()
                .map(|e| audit_event(e, s.audit.reveal(e)))
                .collect();
            Ok((
                [(header::CONTENT_TYPE, "application/fhir+json")],
                fhir_bundle(events).to_string(),
            )
                .into_response())
        }
        other => Err(ApiError::bad_request(format!(
            "format `{other}` is not jsonl or fhir"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::when;

    #[test]
    fn a_time_is_absolute_or_a_duration_back_and_anything_else_is_none() {
        let now = crate::db::now_ms();
        let day = when("1d").unwrap();
        assert!((now - day - 86_400_000).abs() < 5_000);
        assert_eq!(when("2026-12-07"), crate::db::parse_time("2026-12-07"));
        // Client text ending in a character of several bytes is refused, not a panic.
        assert_eq!(when("24é"), None);
        assert_eq!(when("ü"), None);
        assert_eq!(when(""), None);
    }
}
