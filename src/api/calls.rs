//! `POST /api/v1/calls`: Careline calls a phone through a trunk and runs a contact flow once
//! the phone is answered (a call-back, a reminder, a test of a trunk). The number is PHI: it
//! goes to the trunk and nowhere else (not the log, not the audit entry, not the answer).
//!
//! `GET /api/v1/calls/{call_id}` says where a placed call stands (dialing, ringing, answered,
//! or how it ended, for the last thousand); `DELETE` hangs it up (CANCEL while it rings, BYE
//! once answered).
//!
//! Access: `call.place` (supervisors, clinicians, agents, service accounts); each placement and
//! hang-up is audited with the call's id.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::access::{ApiError, Caller};
use super::extract::JsonBody;
use super::whip::WhipApi;
use crate::auth::Action;
use crate::call::dial::{OutboundCall, place};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewCall {
    /// The number to call.
    to: String,
    /// The contact flow once answered (default: `flows.default`).
    flow: Option<String>,
    /// The trunk (default: the only one that takes outbound calls).
    trunk: Option<String>,
    /// Attributes the flow starts with.
    #[serde(default)]
    attributes: HashMap<String, String>,
}

/// Most attributes a placed call may start with, and their sizes: the flow's contact data is
/// not a store.
const MAX_ATTRIBUTES: usize = 32;
const MAX_ATTRIBUTE_BYTES: usize = 1024;

pub(crate) async fn place_call(
    State(s): State<WhipApi>,
    caller: Caller,
    JsonBody(body): JsonBody<NewCall>,
) -> Result<Response, ApiError> {
    s.api.require(&caller, Action::CallPlace, None).await?;
    if body.attributes.len() > MAX_ATTRIBUTES
        || body
            .attributes
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > 128 || v.len() > MAX_ATTRIBUTE_BYTES)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "attributes: at most {MAX_ATTRIBUTES}, names of 1 to 128 bytes, values up to {MAX_ATTRIBUTE_BYTES}"
            ),
        ));
    }
    let call = OutboundCall {
        number: body.to,
        trunk: body.trunk,
        flow: body.flow,
        attributes: body.attributes,
        call_id: None,
        queue: None,
    };
    let placed = place(&s.calls, call).await.map_err(|e| {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
        ApiError::new(status, e.to_string())
    })?;
    let event =
        crate::audit::Event::new(caller.name(), crate::audit::action::CALL_PLACE, "success")
            .detail(json!({"call_id": placed.call_id}));
    if let Err(e) = s.api.audit.append(event).await {
        tracing::warn!(error = %e, "could not audit a placed call");
    }
    let id = placed.call_id.clone();
    // The outcome is counted and logged by the call; nobody here waits for it.
    drop(placed.outcome);
    Ok((StatusCode::CREATED, Json(json!({"call_id": id}))).into_response())
}

pub(crate) async fn placed_call(
    State(s): State<WhipApi>,
    caller: Caller,
    Path(call_id): Path<String>,
) -> Result<Response, ApiError> {
    s.api.require(&caller, Action::CallPlace, None).await?;
    match s.calls.placed.view(&call_id) {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(ApiError::not_found(format!(
            "no call `{call_id}` placed by Careline (running, or among the last ended)"
        ))),
    }
}

pub(crate) async fn hang_up_call(
    State(s): State<WhipApi>,
    caller: Caller,
    Path(call_id): Path<String>,
) -> Result<Response, ApiError> {
    s.api.require(&caller, Action::CallPlace, None).await?;
    if !s.calls.placed.hang_up(&call_id, "api_hangup") {
        return Err(ApiError::not_found(format!(
            "no running call `{call_id}` placed by Careline"
        )));
    }
    let event =
        crate::audit::Event::new(caller.name(), crate::audit::action::CALL_HANGUP, "success")
            .detail(json!({"call_id": call_id}));
    if let Err(e) = s.api.audit.append(event).await {
        tracing::warn!(error = %e, "could not audit a hang-up");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
