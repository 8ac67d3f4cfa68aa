//! `GET /api/v1/callbacks` and `DELETE /api/v1/callbacks/{id}`: the queued callbacks callers
//! asked for (CreateCallbackContact), for supervisors and admins: which queue, since when
//! (their place), when next offered, attempts and how the last one ended. No number and no
//! patient (both sealed in the database). A queued one can be cancelled (the caller reached
//! the clinic another way, say), which takes it out of routing at once, audited.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::json;

use super::access::{ApiError, Caller};
use super::extract::QueryParams;
use super::queues::signed_in;
use super::whip::WhipApi;
use crate::audit::{Event, action};
use crate::auth::Action;
use crate::routing::callbacks::{CallbackStore, DIALING, GIVEN_UP, QUEUED, REACHED};

pub(crate) fn router(state: WhipApi) -> Router {
    Router::new()
        .route("/api/v1/callbacks", get(list))
        .route("/api/v1/callbacks/{id}", delete(cancel))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// queued, dialing, reached, given_up, or all (default: queued and dialing).
    status: Option<String>,
    /// At most this many (1 to 1000, default 100), oldest place first.
    limit: Option<i64>,
}

fn store(s: &WhipApi) -> Result<&CallbackStore, ApiError> {
    s.calls.callbacks.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no database in this process keeps callbacks",
        )
    })
}

/// The callbacks, oldest place first: `{"callbacks": [...]}`.
async fn list(
    State(s): State<WhipApi>,
    caller: Option<Caller>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Response, ApiError> {
    let caller = signed_in(caller)?;
    s.api.require(&caller, Action::CallbackManage, None).await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit: 1 to 1000"));
    }
    let statuses: &[&str] = match q.status.as_deref() {
        None => &[QUEUED, DIALING],
        Some("all") => &[QUEUED, DIALING, REACHED, GIVEN_UP],
        Some(QUEUED) => &[QUEUED],
        Some(DIALING) => &[DIALING],
        Some(REACHED) => &[REACHED],
        Some(GIVEN_UP) => &[GIVEN_UP],
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "status `{}`: one of queued, dialing, reached, given_up, all",
                other.chars().take(32).collect::<String>()
            )));
        }
    };
    let store = store(&s)?;
    let mut out = Vec::new();
    for status in statuses {
        out.extend(
            store
                .list(Some(status), limit)
                .await
                .map_err(ApiError::internal)?,
        );
    }
    out.sort_by(|a, b| (a.since_ms, &a.id).cmp(&(b.since_ms, &b.id)));
    out.truncate(limit as usize);
    let callbacks: Vec<_> = out
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "queue": c.queue,
                "status": c.status,
                "waiting_since": crate::db::rfc3339(c.since_ms),
                "not_before": crate::db::rfc3339(c.not_before_ms),
                "attempts": c.attempts,
                "max_attempts": c.max_attempts,
                "retry_delay_secs": c.retry_delay_secs,
                "last_cause": c.last_cause,
                "origin_call": c.origin_call,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "callbacks": callbacks })).into_response())
}

/// Cancels a queued callback: 204; 404 for none by that id; 409 when it is not queued (an
/// agent is calling the patient now, or it is settled).
async fn cancel(
    State(s): State<WhipApi>,
    caller: Option<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = signed_in(caller)?;
    s.api.require(&caller, Action::CallbackManage, None).await?;
    let store = store(&s)?;
    let now = jiff::Timestamp::now().as_millisecond();
    if !store.cancel(&id, now).await.map_err(ApiError::internal)? {
        return match store.get(&id).await.map_err(ApiError::internal)? {
            None => Err(ApiError::not_found("no callback by that id")),
            Some(c) => Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "the callback is {}: only a queued one can be cancelled",
                    c.status
                ),
            )),
        };
    }
    s.calls.desk.cancel_callback(&id);
    s.calls.metrics.callback("cancelled");
    s.api
        .audit
        .record(
            Event::new(caller.name(), action::CALLBACK_CANCEL, "success")
                .detail(json!({"callback": id})),
        )
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
