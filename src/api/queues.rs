//! Queues for the people who answer them: `GET /api/v1/queues` (who waits where, and for how
//! long), `POST /api/v1/queues/{name}/answer` (take the caller who has waited longest, from
//! the browser), and the agent console at `/agent` (`web/agent.*`) built on them.
//!
//! Access: `call.answer` (agents, clinicians, supervisors). The console is served to anyone
//! (it holds nothing but code) and asks its user to sign in.

use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::access::{ApiError, Caller, ClientAddr};
use super::whip::{WhipApi, page, sdp_offer};
use crate::auth::Action;
use crate::call::answer::{AnswerError, Pick, Taken, take};
use crate::media::webrtc::WebRtcError;

/// The agent console (`web/`), served from the binary.
const AGENT_HTML: &str = include_str!("../../web/agent.html");
const AGENT_JS: &str = include_str!("../../web/agent.js");
const AGENT_CSS: &str = include_str!("../../web/agent.css");
/// The patient summary's rendering, shared by the agent console and the visit page.
const SUMMARY_JS: &str = include_str!("../../web/patient-summary.js");

pub(crate) fn router(state: WhipApi) -> Router {
    Router::new()
        .route("/api/v1/queues", get(list))
        .route("/api/v1/queues/{name}/answer", post(answer_queued))
        .route(
            "/agent",
            get(|| page("text/html; charset=utf-8", AGENT_HTML)),
        )
        .route(
            "/agent.js",
            get(|| page("text/javascript; charset=utf-8", AGENT_JS)),
        )
        .route(
            "/agent.css",
            get(|| page("text/css; charset=utf-8", AGENT_CSS)),
        )
        .route(
            "/patient-summary.js",
            get(|| page("text/javascript; charset=utf-8", SUMMARY_JS)),
        )
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(super::v1::body_limit))
        .with_state(state)
}

pub(super) fn signed_in(caller: Option<Caller>) -> Result<Caller, ApiError> {
    caller.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "sign in (POST /login) or send Authorization: Bearer <token>",
        )
    })
}

/// Every configured queue: how many callers wait (those an agent is connecting to included),
/// how long the longest has waited, and how many of its agents are available, taking
/// contacts (online) and signed in (staffed).
async fn list(State(s): State<WhipApi>, caller: Option<Caller>) -> Result<Response, ApiError> {
    let caller = signed_in(caller)?;
    s.api.require(&caller, Action::CallAnswer, None).await?;
    let queues = &s.calls.flows.queues;
    let now = Instant::now();
    let mut names: Vec<&String> = queues.names().collect();
    names.sort();
    let list: Vec<_> = names
        .into_iter()
        .filter_map(|name| {
            let m = queues.metrics(name, now)?;
            Some(json!({
                "name": name,
                "waiting": m.contacts,
                "oldest_wait_secs": m.oldest_age_secs,
                "agents_available": m.agents_available,
                "agents_online": m.agents_online,
                "agents_staffed": m.agents_staffed,
            }))
        })
        .collect();
    Ok(axum::Json(json!({ "queues": list })).into_response())
}

fn answer_error(e: AnswerError) -> Response {
    let status = match &e {
        AnswerError::UnknownQueue(_) => StatusCode::NOT_FOUND,
        AnswerError::NobodyWaiting(_) | AnswerError::NotOffered(_) => StatusCode::CONFLICT,
        AnswerError::Draining | AnswerError::NoPorts => StatusCode::SERVICE_UNAVAILABLE,
        AnswerError::Offer(WebRtcError::Offer(_)) => StatusCode::BAD_REQUEST,
        AnswerError::Offer(WebRtcError::NoAudio) => StatusCode::UNPROCESSABLE_ENTITY,
        AnswerError::Offer(WebRtcError::Rtc(_)) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = ApiError::new(status, e.to_string()).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    }
    response
}

/// An agent answers from the browser: the body is their browser's SDP offer; the caller who
/// has waited longest in queue `name` is joined to them once their media is up. Answers 201
/// with the SDP answer, the session's `Location` (DELETE it to hang up) and the call's id in
/// `Careline-Call-Id`; 409 when nobody is waiting.
pub(crate) async fn answer_queued(
    State(s): State<WhipApi>,
    caller: Option<Caller>,
    Path(name): Path<String>,
    ConnectInfo(client): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let caller = signed_in(caller)?;
    s.api.require(&caller, Action::CallAnswer, None).await?;
    let sdp = sdp_offer(&headers, req).await?;
    let pick = Pick::Oldest { queue: &name };
    let taken = take(s.calls.clone(), caller.name(), pick, &sdp, client.0.ip()).await;
    answered(&s, &caller, taken).await
}

/// The answer to an agent's WHIP offer that took a queued call: 201 with the SDP answer, the
/// session's `Location` (DELETE it to hang up) and the call's id in `Careline-Call-Id`.
pub(super) async fn answered(
    s: &WhipApi,
    caller: &Caller,
    taken: Result<Taken, AnswerError>,
) -> Result<Response, ApiError> {
    match taken {
        Ok(taken) => {
            // The caller the IVR identified is now this user's to handle: their screen-pop
            // (the patient's summary) opens to them, and to nobody else, as the call's link
            // says (docs/security.md).
            if let Some(contact) = s.api.auth.active_contact(&taken.call_id).await? {
                s.api
                    .auth
                    .set_active_contact(
                        &taken.call_id,
                        &contact.patient_id,
                        caller.name(),
                        caller.name(),
                    )
                    .await?;
            }
            Ok((
                StatusCode::CREATED,
                [
                    (header::CONTENT_TYPE, "application/sdp".to_string()),
                    (
                        header::LOCATION,
                        format!("/api/v1/calls/whip/{}", taken.resource),
                    ),
                    (
                        header::HeaderName::from_static("careline-call-id"),
                        taken.call_id,
                    ),
                ],
                taken.answer,
            )
                .into_response())
        }
        Err(e) => Ok(answer_error(e)),
    }
}
