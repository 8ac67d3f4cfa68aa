//! WHIP (RFC 9725) click-to-call: `POST /api/v1/calls/whip` with a browser's SDP offer creates
//! a call that runs a contact flow like a phone call and answers `201 Created` with the SDP
//! answer and the session's `Location`; `DELETE` on that location hangs up; `PATCH` takes
//! trickled ICE candidates.
//!
//! `/call` serves the example page a patient portal would link to (`web/call.html`): a call
//! button and a keypad on top of this endpoint.
//!
//! Access: anyone when `[webrtc] public_calls = true` (a patient portal's "call the clinic"
//! button), otherwise a bearer token or a signed-in session of a role allowed to place calls
//! (`call.place`). The session's URL is its capability, as RFC 9725 §4.3 has it: 128 random
//! bits that only the browser that placed the call holds, so `DELETE` and `PATCH` need no
//! other credentials (a public caller has none). `POST SESSION/reconnect` (a reloaded page's
//! new offer for the same call) also needs the call's own source address.

use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRef, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;

use super::access::{ApiError, ApiState, Caller, ClientAddr};
use super::extract::{QueryParams, body_bytes, media_type};
use crate::auth::Action;
use crate::call::answer::{AgentControl, TransferRefused, TransferTo};
use crate::call::consult::ConsultOp;
use crate::call::whip::{ReconnectRefused, Target, WhipError, call_id_of, place};
use crate::call::{CallCommand, CallServices};
use crate::media::webrtc::WebRtcError;

/// What the WHIP routes share.
#[derive(Clone)]
pub struct WhipApi {
    pub api: Arc<ApiState>,
    pub calls: Arc<CallServices>,
    /// `[webrtc] public_calls`.
    pub public_calls: bool,
}

impl FromRef<WhipApi> for Arc<ApiState> {
    fn from_ref(s: &WhipApi) -> Arc<ApiState> {
        s.api.clone()
    }
}

pub(crate) fn router(
    api: Arc<ApiState>,
    calls: Arc<CallServices>,
    public_calls: bool,
    allowed_origins: Vec<String>,
) -> Router {
    let origins: Arc<Vec<String>> = Arc::new(
        allowed_origins
            .into_iter()
            .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
            .collect(),
    );
    Router::new()
        .route("/api/v1/calls/whip", post(offer).options(preflight))
        .route(
            "/api/v1/calls/whip/{id}",
            delete(hang_up).patch(trickle).options(preflight),
        )
        .route(
            "/api/v1/calls/whip/{id}/reconnect",
            post(reconnect).options(preflight),
        )
        .layer(axum::middleware::from_fn_with_state(origins, cors))
        // An agent's controls, from Careline's own console: no cross-site use.
        .route("/api/v1/calls/whip/{id}/{action}", post(control))
        .route("/call", get(|| page("text/html; charset=utf-8", CALL_HTML)))
        .route(
            "/call.js",
            get(|| page("text/javascript; charset=utf-8", CALL_JS)),
        )
        .route(
            "/call.css",
            get(|| page("text/css; charset=utf-8", CALL_CSS)),
        )
        .route("/api/v1/calls", post(super::calls::place_call))
        .route(
            "/api/v1/calls/{call_id}",
            get(super::calls::placed_call).delete(super::calls::hang_up_call),
        )
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(super::v1::body_limit))
        .with_state(WhipApi {
            api: api.clone(),
            calls: calls.clone(),
            public_calls,
        })
        .merge(super::queues::router(WhipApi {
            api: api.clone(),
            calls: calls.clone(),
            public_calls,
        }))
        .merge(super::callbacks::router(WhipApi {
            api: api.clone(),
            calls: calls.clone(),
            public_calls,
        }))
        .merge(super::monitor::router(WhipApi {
            api: api.clone(),
            calls: calls.clone(),
            public_calls,
        }))
        .merge(super::signaling::router(WhipApi {
            api,
            calls,
            public_calls,
        }))
}

/// The example "call the clinic" page (`web/`): a button, a keypad and a WHIP client of a few
/// lines, served from the binary so it works from a bare install.
const CALL_HTML: &str = include_str!("../../web/call.html");
const CALL_JS: &str = include_str!("../../web/call.js");
const CALL_CSS: &str = include_str!("../../web/call.css");

/// One of the page's files, with a policy that lets it load its own script and style and talk
/// to this server only (the guard's default forbids everything).
pub(super) async fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                 media-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

/// A CORS preflight (the offer's `application/sdp` is not a simple content type): answered
/// 204; [`cors`] adds the permissions when the origin is allowed, and without them the
/// browser does not send the request.
async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// CORS for the WHIP routes: a request from an allowed origin (`[webrtc] allowed_origins`)
/// gets `Access-Control-Allow-Origin` naming it, the methods and headers a WHIP client uses,
/// and `Location` exposed (the session URL). Other origins get nothing, so browsers keep
/// their pages out. Credentials (cookies) are never allowed cross-origin: a portal's page
/// places calls anonymously (`public_calls`) or with a bearer token.
async fn cors(
    State(origins): State<Arc<Vec<String>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(|o| o.to_ascii_lowercase())
        .filter(|o| origins.iter().any(|a| a == o));
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.append(header::VARY, header::HeaderValue::from_static("Origin"));
    if let Some(origin) = origin
        && let Ok(value) = header::HeaderValue::from_str(&origin)
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            header::HeaderValue::from_static("POST, DELETE, PATCH, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            header::HeaderValue::from_static("Content-Type, Authorization"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            header::HeaderValue::from_static("Location"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            header::HeaderValue::from_static("600"),
        );
    }
    resp
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OfferQuery {
    flow: Option<String>,
    to: Option<String>,
}

pub(super) fn content_type(headers: &HeaderMap) -> String {
    media_type(headers.get(header::CONTENT_TYPE))
}

fn whip_error(e: WhipError) -> Response {
    let status = match &e {
        WhipError::Draining | WhipError::Busy | WhipError::NoPorts => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        WhipError::TooManyConnecting => StatusCode::TOO_MANY_REQUESTS,
        WhipError::UnknownFlow(_) | WhipError::NoFlow => StatusCode::NOT_FOUND,
        WhipError::Offer(WebRtcError::Offer(_)) => StatusCode::BAD_REQUEST,
        WhipError::Offer(WebRtcError::NoAudio) => StatusCode::UNPROCESSABLE_ENTITY,
        WhipError::Offer(WebRtcError::Rtc(_)) | WhipError::Internal => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    let mut response = ApiError::new(status, e.to_string()).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    }
    response
}

async fn offer(
    State(s): State<WhipApi>,
    caller: Option<Caller>,
    QueryParams(query): QueryParams<OfferQuery>,
    ConnectInfo(client): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    if !s.public_calls {
        let caller = caller.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "sign in (POST /login) or send Authorization: Bearer <token>",
            )
        })?;
        s.api.require(&caller, Action::CallPlace, None).await?;
    }
    let sdp = sdp_offer(&headers, req).await?;
    let remote = client.0.ip();
    let target = Target {
        flow: query.flow,
        to: query.to,
    };
    match place(s.calls.clone(), sdp, target, remote).await {
        Ok(placed) => Ok((
            StatusCode::CREATED,
            [
                (header::CONTENT_TYPE, "application/sdp".to_string()),
                (
                    header::LOCATION,
                    format!("/api/v1/calls/whip/{}", placed.resource),
                ),
            ],
            placed.answer,
        )
            .into_response()),
        Err(e) => Ok(whip_error(e)),
    }
}

/// Reads a WHIP request's SDP offer: `application/sdp`, UTF-8, under the route's limits.
pub(super) async fn sdp_offer(
    headers: &HeaderMap,
    req: axum::extract::Request,
) -> Result<String, ApiError> {
    if content_type(headers) != "application/sdp" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the SDP offer as Content-Type: application/sdp (RFC 9725 §4.2)",
        ));
    }
    // Read like every other body: under the route's limit and the connection's body timeout.
    let body = body_bytes(req, &()).await?;
    String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("the SDP offer is not UTF-8 text"))
}

/// A session id as `place` makes them: 32 lowercase hex digits.
fn session(id: &str) -> Result<String, ApiError> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(call_id_of(id))
    } else {
        Err(ApiError::not_found("no such WHIP session"))
    }
}

/// Hangs up (RFC 9725 §4.3): a caller's browser is done, and the call ends as at a phone's
/// BYE; an agent's, and the agent leaves the call they answered (which ends it).
async fn hang_up(State(s): State<WhipApi>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let call_id = session(&id)?;
    let hangup = CallCommand::Hangup {
        cause: "caller_bye",
    };
    let agent_of = || s.calls.agent_sessions.call_of(&id);
    if let Some(call) = s.calls.monitor_sessions.call_of(&id) {
        // A supervisor leaves the call they listened in on.
        return if s.calls.table.send(&call, CallCommand::MonitorEnd) {
            Ok(StatusCode::OK.into_response())
        } else {
            Err(ApiError::not_found(
                "no such WHIP session (it may have ended)",
            ))
        };
    }
    if s.calls.table.send(&call_id, hangup)
        || agent_of().is_some_and(|c| {
            // A callback's call is in the table once the patient answers; ringing, it is a
            // placed call.
            s.calls.table.send(&c, CallCommand::AgentHangup)
                || s.calls.placed.send(&c, CallCommand::AgentHangup)
        })
    {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(ApiError::not_found(
            "no such WHIP session (it may have ended)",
        ))
    }
}

/// A caller's page (or an agent's console, on the agent's session) is back after a reload (or
/// a lost network) with a new peer connection for the same call: the body is its SDP offer.
/// 200 with the SDP answer; the leg goes on through the new connection once it is up. The session URL is the credential, and the
/// offer must come from the address the call came from (403 otherwise); 404 for a call that
/// ended (the page calls again), 409 before the call first connected or past
/// [`MAX_RECONNECTS`](crate::call::whip::MAX_RECONNECTS).
async fn reconnect(
    State(s): State<WhipApi>,
    Path(id): Path<String>,
    ConnectInfo(client): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    session(&id)?;
    let sdp = sdp_offer(&headers, req).await?;
    let source = client.0.ip();
    let reconnected = if s.calls.agent_sessions.call_of(&id).is_some() {
        crate::call::answer::reconnect_agent(&s.calls, &id, sdp, source).await
    } else {
        crate::call::whip::reconnect(&s.calls, &id, sdp, source).await
    };
    match reconnected {
        Ok(answer) => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/sdp")],
            answer,
        )
            .into_response()),
        Err(ReconnectRefused::Offer(e)) => Ok(whip_error(WhipError::Offer(e))),
        Err(e) => {
            let status = match e {
                ReconnectRefused::Gone => StatusCode::NOT_FOUND,
                ReconnectRefused::OtherAddress => StatusCode::FORBIDDEN,
                _ => StatusCode::CONFLICT,
            };
            Err(ApiError::new(status, e.to_string()))
        }
    }
}

/// An agent's hold, resume, mute or unmute, on their session (its URL is the credential, as
/// for `DELETE`): 204 when done, 409 while the caller is not yet joined to them.
async fn control(
    State(s): State<WhipApi>,
    Path((id, action)): Path<(String, String)>,
    QueryParams(q): QueryParams<TransferQuery>,
) -> Result<Response, ApiError> {
    session(&id)?;
    if action == "transfer" {
        return transfer(&s, &id, &q).await;
    }
    if let Some(call) = s.calls.monitor_sessions.call_of(&id) {
        return monitor_control(&s, &call, &action).await;
    }
    if matches!(
        action.as_str(),
        "consult" | "conference" | "complete" | "cancel"
    ) {
        return consult(&s, &id, &action, &q).await;
    }
    let op = AgentControl::parse(&action)
        .ok_or_else(|| ApiError::not_found("no such action: hold, resume, mute or unmute"))?;
    let gone = || ApiError::not_found("no such agent session (it may have ended)");
    let call = s.calls.agent_sessions.call_of(&id).ok_or_else(gone)?;
    let (reply, done) = tokio::sync::oneshot::channel();
    if !s
        .calls
        .table
        .send(&call, CallCommand::AgentControl(op, reply))
    {
        return Err(gone());
    }
    match done.await {
        Ok(true) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(false) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "the caller is not joined to you yet",
        )),
        Err(_) => Err(gone()),
    }
}

/// A supervisor's `barge` (the caller and the agent hear them) or `listen` (nobody does), on
/// the session of `POST /api/v1/calls/{call_id}/monitor`: 204.
async fn monitor_control(s: &WhipApi, call: &str, action: &str) -> Result<Response, ApiError> {
    let barge = match action {
        "barge" => true,
        "listen" => false,
        _ => {
            return Err(ApiError::not_found(
                "no such action on a monitoring session: barge or listen",
            ));
        }
    };
    let gone = || ApiError::not_found("no such monitoring session (it may have ended)");
    let (reply, done) = tokio::sync::oneshot::channel();
    if !s
        .calls
        .table
        .send(call, CallCommand::MonitorControl(barge, reply))
    {
        return Err(gone());
    }
    match done.await {
        Ok(true) => Ok(StatusCode::NO_CONTENT.into_response()),
        _ => Err(gone()),
    }
}

/// An agent's consultation (a warm transfer): `consult?to=NUMBER` rings an outside number
/// while the caller is on hold; once it answers, `conference` brings the caller in,
/// `complete` hands the caller over (the agent's session ends), `cancel` drops the party and
/// takes the caller off hold. 204 when done; 409 when the caller is not joined to the agent,
/// a consultation is under way already (`consult`) or none is (the others), or the trunk is at
/// its limit; 422 for a number that is none or no trunk.
async fn consult(
    s: &WhipApi,
    id: &str,
    action: &str,
    q: &TransferQuery,
) -> Result<Response, ApiError> {
    let to = q.to.as_deref().filter(|t| !t.is_empty());
    if q.queue.is_some() || q.agent.is_some() || (action == "consult") != to.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "consult takes ?to=NUMBER (an outside number); conference, complete and cancel \
             take nothing",
        ));
    }
    let op = ConsultOp::parse(action, to).ok_or_else(|| ApiError::not_found("no such action"))?;
    match agent_step(s, id, |reply| CallCommand::AgentConsult(op, reply)).await? {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => Err(refused(e)),
    }
}

/// Hands an agent's transfer or consultation step to the call their session `id` is on;
/// its answer, or 404 when the session or the call is gone.
async fn agent_step(
    s: &WhipApi,
    id: &str,
    command: impl FnOnce(tokio::sync::oneshot::Sender<Result<(), TransferRefused>>) -> CallCommand,
) -> Result<Result<(), TransferRefused>, ApiError> {
    let gone = || ApiError::not_found("no such agent session (it may have ended)");
    let call = s.calls.agent_sessions.call_of(id).ok_or_else(gone)?;
    let (reply, done) = tokio::sync::oneshot::channel();
    if !s.calls.table.send(&call, command(reply)) {
        return Err(gone());
    }
    done.await.map_err(|_| gone())
}

/// A refused transfer or consultation step: 422 for the number or the trunk's absence, 409
/// otherwise (the call, the queue or the trunk not in a state to take it).
fn refused(e: TransferRefused) -> ApiError {
    let status = match e {
        TransferRefused::BadNumber | TransferRefused::NoTrunk => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::CONFLICT,
    };
    ApiError::new(status, e.to_string())
}

/// `?queue=NAME` or `?to=NUMBER` of an agent's `transfer`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferQuery {
    queue: Option<String>,
    to: Option<String>,
    agent: Option<String>,
}

/// The agent sends the caller to queue `queue`, or to the outside number `to` (a blind
/// transfer): 204 once the caller waits there, or the number rings (the agent's session ends
/// and they wrap up); 404 for an unknown queue, 409 when the queue is full, the trunk cannot
/// take the call or the caller is not joined to the agent, 422 for a number that is none or
/// with no trunk to call through.
async fn transfer(s: &WhipApi, id: &str, q: &TransferQuery) -> Result<Response, ApiError> {
    let (queue, to, agent) = (
        q.queue.as_deref().filter(|q| !q.is_empty()),
        q.to.as_deref().filter(|t| !t.is_empty()),
        q.agent.as_deref().filter(|a| !a.is_empty()),
    );
    let target = match (queue, to, agent) {
        (Some(queue), None, None) => TransferTo::Queue(queue.to_string()),
        (None, Some(number), None) => TransferTo::Number(number.to_string()),
        (None, None, Some(agent)) => TransferTo::Agent(agent.to_string()),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "transfer needs one of ?queue=NAME (a configured queue), ?to=NUMBER (an outside \
                 number) or ?agent=NAME (an agent at the desk)",
            ));
        }
    };
    match agent_step(s, id, |reply| CallCommand::AgentTransfer(target, reply)).await? {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(TransferRefused::UnknownQueue) => Err(ApiError::not_found(format!(
            "no queue is named `{}`",
            queue.unwrap_or_default()
        ))),
        Err(e) => Err(refused(e)),
    }
}

/// Trickled ICE candidates (RFC 9725 §4.3.1, RFC 8840 fragments). Careline is ICE-lite: it
/// makes no checks of its own and learns the browser's address from the browser's checks,
/// so a trickled candidate needs nothing done; the fragment is accepted (204). ICE restarts
/// (new credentials, answered 200 with Careline's) are not supported: a browser that lost its
/// network calls again.
async fn trickle(
    State(s): State<WhipApi>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let call_id = session(&id)?;
    if !s.calls.table.contains(&call_id) && s.calls.agent_sessions.call_of(&id).is_none() {
        return Err(ApiError::not_found(
            "no such WHIP session (it may have ended)",
        ));
    }
    if content_type(&headers) != "application/trickle-ice-sdpfrag" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send candidates as Content-Type: application/trickle-ice-sdpfrag (RFC 8840)",
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
