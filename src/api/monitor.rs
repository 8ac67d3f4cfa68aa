//! Silent monitoring and barge-in from the browser: `POST /api/v1/calls/{call_id}/monitor`
//! with a supervisor's SDP offer joins them to a call where an agent talks with a caller,
//! listening (nobody hears them); their session (`Location`) takes `POST .../barge` (the
//! caller and the agent hear them too), `POST .../listen` (back to listening) and `DELETE`
//! (they leave). `call::monitor` does the call's side.
//!
//! Access: `call.monitor` (supervisors). Each time is audited (`call.monitor`, naming the
//! call, and its patient when the IVR identified the caller): the supervisor hears a patient.

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::access::{ApiError, Caller, ClientAddr};
use super::queues::signed_in;
use super::whip::{WhipApi, sdp_offer};
use crate::audit::{Event, action};
use crate::auth::Action;
use crate::call::CallCommand;
use crate::call::monitor::{MonitorError, listen};
use crate::media::webrtc::WebRtcError;

pub(crate) fn router(state: WhipApi) -> Router {
    Router::new()
        .route("/api/v1/calls/{call_id}/monitor", post(monitor))
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(super::v1::body_limit))
        .with_state(state)
}

/// The supervisor listens in on `call_id`: 201 with the SDP answer and the session's
/// `Location`; 404 for a call that is not there, 409 when it is not with an agent or someone
/// listens in already.
async fn monitor(
    State(s): State<WhipApi>,
    caller: Option<Caller>,
    Path(call_id): Path<String>,
    ConnectInfo(client): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let caller = signed_in(caller)?;
    s.api.require(&caller, Action::CallMonitor, None).await?;
    let sdp = sdp_offer(&headers, req).await?;
    let listening = listen(&s.calls, caller.name(), &call_id, &sdp, client.0.ip()).await;
    let listening = match listening {
        Ok(l) => l,
        Err(e) => {
            let status = match &e {
                MonitorError::NoCall(_) => StatusCode::NOT_FOUND,
                MonitorError::NotWithAgent | MonitorError::Taken => StatusCode::CONFLICT,
                MonitorError::NoPorts => StatusCode::SERVICE_UNAVAILABLE,
                MonitorError::Offer(WebRtcError::Offer(_)) => StatusCode::BAD_REQUEST,
                MonitorError::Offer(WebRtcError::NoAudio) => StatusCode::UNPROCESSABLE_ENTITY,
                MonitorError::Offer(WebRtcError::Rtc(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return Err(ApiError::new(status, e.to_string()));
        }
    };
    let patient = s
        .api
        .auth
        .active_contact(&call_id)
        .await?
        .map(|c| c.patient_id);
    let mut event = Event::new(caller.name(), action::CALL_MONITOR, "success")
        .detail(serde_json::json!({"call_id": call_id}));
    if let Some(patient) = &patient {
        event = event.patient(patient);
    }
    if let Err(e) = s.api.audit.append(event).await {
        // Not audited, not heard: the supervisor's leg goes again.
        s.calls.table.send(&call_id, CallCommand::MonitorEnd);
        return Err(e.into());
    }
    Ok((
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (
                header::LOCATION,
                format!("/api/v1/calls/whip/{}", listening.resource),
            ),
        ],
        listening.answer,
    )
        .into_response())
}
