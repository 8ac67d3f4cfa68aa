//! `GET /api/v1/call-records` for supervisors, admins and auditors: one record per answered
//! call (`call_records`), filtered by time, queue and agent, as JSON or CSV. No patient data:
//! a record says whether the caller was identified, never who.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::access::{ApiError, ApiState, Caller};
use super::audit::time_param;
use super::extract::QueryParams;
use crate::auth::Action;
use crate::call_records::{Filter, to_csv};

/// The most records one request returns.
const MAX_LIMIT: i64 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordsQuery {
    /// RFC 3339, `YYYY-MM-DD`, or a duration back from now (`24h`, `7d`).
    pub since: Option<String>,
    pub until: Option<String>,
    /// The queue the call was last in.
    pub queue: Option<String>,
    /// The last agent who talked with the caller.
    pub agent: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
    /// At most this many (default and cap 10,000), oldest first.
    pub limit: Option<i64>,
}

pub(crate) async fn list(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
    QueryParams(q): QueryParams<RecordsQuery>,
) -> Result<Response, ApiError> {
    s.require(&caller, Action::CallRecordsRead, None).await?;
    let limit = q.limit.unwrap_or(MAX_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit: 1 to {MAX_LIMIT}")));
    }
    let format = q.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "csv") {
        return Err(ApiError::bad_request(format!(
            "format `{format}` is not json or csv"
        )));
    }
    for (name, v) in [("queue", &q.queue), ("agent", &q.agent)] {
        if v.as_deref().is_some_and(str::is_empty) {
            return Err(ApiError::bad_request(format!(
                "{name}: empty (leave it out for every {name})"
            )));
        }
    }
    let filter = Filter {
        since_ms: time_param("since", &q.since)?,
        until_ms: time_param("until", &q.until)?,
        queue: q.queue,
        agent: q.agent,
        limit,
    };
    let records = s
        .call_records
        .list(&filter)
        .await
        .map_err(ApiError::internal)?;
    if format == "csv" {
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"call-records.csv\"",
                ),
            ],
            to_csv(&records),
        )
            .into_response());
    }
    Ok(axum::Json(json!({"records": records})).into_response())
}
