//! The console's live channel: `GET /api/v1/ws` upgrades to a WebSocket on the HTTP listener
//! (WSS under HTTPS) over which the server pushes what the browser cannot poll for (a call
//! ringing for this agent, its withdrawal, the agent's state) and the agent sends their
//! choices (available, unavailable with a reason, offline, decline, wrap-up done). One JSON
//! object per text message, `type` naming it; `docs/signaling.md` is the schema.
//!
//! Accepting an offer is a WHIP exchange (`POST /api/v1/calls/{call_id}/accept` with the
//! browser's SDP offer, answered 201 with the SDP answer), so the media is set up the same way
//! as every other browser leg; `POST /api/v1/calls/{call_id}/decline` declines without a
//! socket.
//!
//! Access: `call.answer` (agents, clinicians, supervisors), by session cookie or bearer token.
//! A cookie-borne upgrade must come from Careline's own pages (a WebSocket is not covered by
//! CORS, so another site's page could otherwise open one with the user's cookie). A socket
//! that sends more than [`MAX_PER_SECOND`] messages in a second, or a message over
//! [`MAX_MESSAGE`] bytes, is closed (1008 / 1009); one silent for three heartbeats is closed.
//! The credentials are checked again at every heartbeat: a user disabled, a token revoked or
//! a session ended closes the console (1008) and signs the agent out at once, so a disabled
//! user's open tab is not offered patients' calls.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use super::access::{ApiError, Caller, ClientAddr};
use super::extract::JsonBody;
use super::queues::{answered, signed_in};
use super::whip::{WhipApi, page, sdp_offer};
use crate::audit::{Event, action};
use crate::auth::Action;
use crate::call::answer::{Pick, take};
use crate::patient::ContactRecord;
use crate::routing::acd::{AgentState, Availability, Withdrawn};
use crate::routing::desk::DeskEvent;

/// The largest message a console may send.
pub(crate) const MAX_MESSAGE: usize = 4096;
/// The most messages a console may send in one second.
pub(crate) const MAX_PER_SECOND: u32 = 20;
/// How often a supervisor's console is sent the desk's view (when it changed).
const DESK_EVERY: Duration = Duration::from_secs(2);

/// The supervisor's live view (`web/`), served from the binary.
const SUPERVISOR_HTML: &str = include_str!("../../web/supervisor.html");
const SUPERVISOR_JS: &str = include_str!("../../web/supervisor.js");

pub(crate) fn router(state: WhipApi) -> Router {
    Router::new()
        .route("/api/v1/ws", get(upgrade))
        .route("/api/v1/calls/{call_id}/accept", post(accept))
        .route("/api/v1/calls/{call_id}/decline", post(decline))
        .route("/api/v1/calls/{call_id}/wrap-up", post(wrap_up))
        .route("/api/v1/desk", get(desk))
        .route(
            "/supervisor",
            get(|| page("text/html; charset=utf-8", SUPERVISOR_HTML)),
        )
        .route(
            "/supervisor.js",
            get(|| page("text/javascript; charset=utf-8", SUPERVISOR_JS)),
        )
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(super::v1::body_limit))
        .with_state(state)
}

/// What a console sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum FromConsole {
    /// `{"type":"state","state":"available"}`, `"unavailable"` (with `reason`) or `"offline"`.
    State {
        state: Wanted,
        #[serde(default)]
        reason: Option<String>,
    },
    Decline {
        call_id: String,
    },
    /// Wrap-up done: available again (or the state chosen meanwhile).
    Done,
    Ping,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Wanted {
    Available,
    Unavailable,
    Offline,
}

/// What the server sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToConsole<'a> {
    Hello {
        user: &'a str,
        role: &'a str,
        heartbeat_secs: u64,
        /// What a wrap-up chooses from (`POST /api/v1/calls/{call_id}/wrap-up`).
        wrap_up_codes: &'a [String],
    },
    State {
        #[serde(flatten)]
        state: AgentState,
    },
    Offer {
        call_id: String,
        queue: String,
        waited_secs: u64,
        rings_for_secs: u64,
        /// A queued callback: accepting it calls the patient, the agent on the line.
        callback: bool,
    },
    OfferWithdrawn {
        call_id: String,
        why: Withdrawn,
    },
    /// The supervisor's view: `{"queues": [...], "agents": [...]}` as `GET /api/v1/desk`.
    Desk {
        #[serde(flatten)]
        view: serde_json::Value,
    },
    Pong,
    Error {
        reason: String,
    },
}

impl ToConsole<'_> {
    fn message(&self) -> Message {
        Message::Text(serde_json::to_string(self).unwrap_or_default().into())
    }
}

async fn upgrade(
    State(s): State<WhipApi>,
    caller: Option<Caller>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let caller = signed_in(caller)?;
    s.api.require(&caller, Action::CallAnswer, None).await?;
    if caller.via == "session" && super::browser::cross_site(&headers) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "a signed-in browser may open the console channel only from this site's own pages",
        ));
    }
    let ws = ws.map_err(|_| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "this is a WebSocket endpoint: send a WebSocket upgrade (docs/signaling.md)",
        )
    })?;
    // Kept to check, at each heartbeat, that the user is still signed in and enabled.
    let credential = match super::access::bearer(&headers) {
        Some(token) => Credential::Token(token.to_string()),
        None => Credential::Session(super::access::session_cookie(&headers).unwrap_or_default()),
    };
    Ok(ws
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| console(s, caller, credential, socket)))
}

/// What the console's upgrade was authorised with.
enum Credential {
    Token(String),
    Session(String),
}

impl Credential {
    /// Whether it still names `caller`'s user with the same role: a token revoked, a
    /// session ended or idled out, a user disabled or given another role ends the console.
    async fn still_valid(&self, s: &WhipApi, caller: &Caller) -> bool {
        let found = match self {
            Credential::Token(token) => s.api.auth.authenticate_token(token).await,
            Credential::Session(cookie) => s.api.auth.session(cookie).await,
        };
        match found {
            Ok(Some(p)) => p.name == caller.principal.name && p.role == caller.principal.role,
            Ok(None) => false,
            // The database did not answer: keep the console rather than drop a working desk.
            Err(_) => true,
        }
    }
}

/// One console's session: the agent at the desk while it lasts.
async fn console(s: WhipApi, caller: Caller, credential: Credential, mut socket: WebSocket) {
    let agent = caller.name().to_string();
    info!(%agent, "console connected");
    let beat = s.calls.desk.heartbeat;
    let hello = ToConsole::Hello {
        user: &agent,
        role: caller.principal.role.as_str(),
        heartbeat_secs: beat.as_secs(),
        wrap_up_codes: &s.calls.desk.wrap_up_codes,
    };
    if socket.send(hello.message()).await.is_err() {
        return;
    }
    let mut desk = s.calls.desk.join(&agent);
    let mut heartbeat = tokio::time::interval(beat);
    heartbeat.tick().await;
    // Supervisors also get the desk's view, when it changes (checked every DESK_EVERY).
    let supervises = matches!(
        crate::auth::permission::decide_without_patient(caller.principal.role, Action::DeskRead),
        crate::auth::permission::Decision::Allow { .. }
    );
    let mut view_tick = tokio::time::interval(DESK_EVERY);
    let mut last_view = serde_json::Value::Null;
    let mut heard = Instant::now();
    let mut window = (Instant::now(), 0u32);
    let close = loop {
        tokio::select! {
            event = desk.events.recv() => {
                let Some(event) = event else { break None };
                if socket.send(to_console(event).message()).await.is_err() {
                    break None;
                }
            }
            msg = socket.recv() => {
                let msg = match msg {
                    Some(Ok(msg)) => msg,
                    Some(Err(e)) => {
                        debug!(%agent, error = %e, "console socket failed");
                        let too_big = e.to_string().contains("too long");
                        break too_big.then_some((close_code::SIZE, "message too big"));
                    }
                    None => break None,
                };
                heard = Instant::now();
                if heard.duration_since(window.0) >= Duration::from_secs(1) {
                    window = (heard, 0);
                }
                window.1 += 1;
                if window.1 > MAX_PER_SECOND {
                    info!(%agent, "console flooding: closed");
                    break Some((close_code::POLICY, "too many messages"));
                }
                let text = match msg {
                    Message::Text(text) => text,
                    Message::Close(_) => break None,
                    Message::Binary(_) => {
                        break Some((close_code::UNSUPPORTED, "text messages only"));
                    }
                    Message::Ping(_) | Message::Pong(_) => continue,
                };
                let reply = handle(&s, &agent, &text);
                if let Some(reply) = reply
                    && socket.send(reply.message()).await.is_err()
                {
                    break None;
                }
            }
            _ = view_tick.tick(), if supervises => {
                let view = desk_view(&s);
                if view != last_view {
                    let msg = ToConsole::Desk { view: view.clone() }.message();
                    if socket.send(msg).await.is_err() {
                        break None;
                    }
                    last_view = view;
                }
            }
            _ = heartbeat.tick() => {
                if !credential.still_valid(&s, &caller).await {
                    info!(%agent, "console's sign-in ended: closed, agent signed out");
                    let _ = s.calls.desk.set_availability(&agent, Availability::Offline);
                    break Some((close_code::POLICY, "signed out"));
                }
                if heard.elapsed() > 3 * beat {
                    info!(%agent, "console silent: closed");
                    break Some((close_code::AWAY, "no answer to pings"));
                }
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    break None;
                }
            }
        }
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        if socket.send(Message::Close(Some(frame))).await.is_ok() {
            // The closing handshake (RFC 6455 section 7.1.1): read until the console's own
            // Close, for a moment at most. Dropping the socket with its messages unread would
            // reset the connection, and the console could lose the Close frame and its reason.
            let drain = async {
                while let Some(Ok(msg)) = socket.recv().await {
                    if matches!(msg, Message::Close(_)) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
        }
    }
    info!(%agent, "console disconnected");
    drop(desk);
}

/// What a console's message does, and the answer it gets (an error, a pong; a state change
/// is answered by the state pushed from the desk).
fn handle<'a>(s: &WhipApi, agent: &str, text: &str) -> Option<ToConsole<'a>> {
    let msg: FromConsole = match serde_json::from_str(text) {
        Ok(msg) => msg,
        Err(e) => {
            return Some(ToConsole::Error {
                reason: format!("not a console message: {e} (docs/signaling.md)"),
            });
        }
    };
    let desk = &s.calls.desk;
    let done = match msg {
        FromConsole::Ping => return Some(ToConsole::Pong),
        FromConsole::State { state, reason } => {
            let wanted = match state {
                Wanted::Available => Availability::Available,
                Wanted::Offline => Availability::Offline,
                Wanted::Unavailable => {
                    let reason = reason.unwrap_or_default();
                    let reason = reason.trim();
                    if reason.is_empty() || reason.chars().count() > 64 {
                        return Some(ToConsole::Error {
                            reason: "unavailable needs a reason of 1 to 64 characters".into(),
                        });
                    }
                    Availability::Unavailable(reason.to_string())
                }
            };
            desk.set_availability(agent, wanted)
        }
        FromConsole::Decline { call_id } => desk.decline(agent, &call_id),
        FromConsole::Done => desk.finish_work(agent),
    };
    done.err().map(|e| ToConsole::Error {
        reason: e.to_string(),
    })
}

fn to_console(event: DeskEvent) -> ToConsole<'static> {
    match event {
        DeskEvent::State(state) => ToConsole::State { state },
        DeskEvent::Offer {
            call_id,
            queue,
            waited,
            rings_for,
            callback,
        } => ToConsole::Offer {
            call_id,
            queue,
            waited_secs: waited.as_secs(),
            rings_for_secs: rings_for.as_secs(),
            callback,
        },
        DeskEvent::Withdrawn { call_id, why } => ToConsole::OfferWithdrawn { call_id, why },
    }
}

/// The agent accepts the call ringing for them: the body is their browser's SDP offer. 201
/// with the SDP answer and the session's `Location`, as answering from a queue; 409 when the
/// call is not (or no longer) offered to them.
async fn accept(
    State(s): State<WhipApi>,
    caller: Option<Caller>,
    Path(call_id): Path<String>,
    ConnectInfo(client): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let caller = signed_in(caller)?;
    s.api.require(&caller, Action::CallAnswer, None).await?;
    let sdp = sdp_offer(&headers, req).await?;
    let pick = Pick::Offered { call_id: &call_id };
    let taken = take(s.calls.clone(), caller.name(), pick, &sdp, client.0.ip()).await;
    answered(&s, &caller, taken).await
}

/// The agent declines the call ringing for them (as the console's `decline` message does).
async fn decline(
    State(s): State<WhipApi>,
    caller: Option<Caller>,
    Path(call_id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = signed_in(caller)?;
    s.api.require(&caller, Action::CallAnswer, None).await?;
    match s.calls.desk.decline(caller.name(), &call_id) {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
    }
}

/// A wrap-up: the call's outcome code and the agent's notes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WrapUp {
    code: String,
    #[serde(default)]
    notes: Option<String>,
}

/// `POST /api/v1/calls/{call_id}/wrap-up` `{"code": "...", "notes": "..."}`: the agent who
/// handled the call (on it, or in its after-contact work) records its outcome, once. When the
/// IVR identified the patient, a contact record (channel `voice`, the code as its outcome, the
/// notes, the call id, the agent) goes into the patient's contact history, audited as any
/// write of it; either way the code is counted in `/metrics`. Codes: `[routing]
/// wrap_up_codes` (422 otherwise). The console then sends `done` to leave wrap-up.
async fn wrap_up(
    State(s): State<WhipApi>,
    caller: Option<Caller>,
    Path(call_id): Path<String>,
    JsonBody(body): JsonBody<WrapUp>,
) -> Result<Response, ApiError> {
    let caller = signed_in(caller)?;
    s.api.require(&caller, Action::CallAnswer, None).await?;
    let desk = &s.calls.desk;
    if !desk.wrap_up_codes.iter().any(|c| c == &body.code) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "code: `{}` is not a wrap-up code; one of: {}",
                body.code.chars().take(64).collect::<String>(),
                desk.wrap_up_codes.join(", ")
            ),
        ));
    }
    let notes = body
        .notes
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    let probe = ContactRecord {
        channel: "voice".into(),
        notes: notes.clone(),
        ..ContactRecord::default()
    };
    if let Some((field, max)) = probe.over_limit() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{field}: at most {max} bytes"),
        ));
    }
    // Whose call it is, and the patient it is about, both before anything is written.
    let queue = desk
        .wrapping_up(caller.name(), &call_id)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, e.to_string()))?;
    let patient = s
        .api
        .auth
        .active_contact(&call_id)
        .await?
        .filter(|c| c.user == caller.name())
        .map(|c| c.patient_id);
    // Once per call: the call's disposition is the gate.
    let records = &s.api.call_records;
    let first = records
        .set_disposition(&call_id, &body.code, caller.name(), crate::db::now_ms())
        .await
        .map_err(ApiError::internal)?;
    if !first {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this call is wrapped up already",
        ));
    }
    let record_id = match &patient {
        Some(patient) => {
            let written = history(&s, &caller, patient, &call_id, &queue, &body.code, notes).await;
            if written.is_err() {
                // Not in the history: the wrap-up may be made again.
                let _ = records.unset_disposition(&call_id, caller.name()).await;
            }
            Some(written?)
        }
        None => None,
    };
    s.calls
        .metrics
        .wrap_ups
        .get_or_create(&vec![("code", body.code.clone())])
        .inc();
    info!(agent = %caller.name(), call = %call_id, code = %body.code, "wrapped up");
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({
            "call_id": call_id,
            "code": body.code,
            "contact_record": record_id,
        })),
    )
        .into_response())
}

/// The wrap-up as a record in the patient's contact history (audited); its id.
async fn history(
    s: &WhipApi,
    caller: &Caller,
    patient: &str,
    call_id: &str,
    queue: &str,
    code: &str,
    notes: Option<String>,
) -> Result<String, ApiError> {
    let grant = s
        .api
        .require(caller, Action::ContactAppend, Some(patient))
        .await?;
    let record = ContactRecord {
        channel: "voice".into(),
        outcome: Some(code.to_string()),
        reason: Some(format!("queue {queue}")),
        notes,
        call_id: Some(call_id.to_string()),
        user: Some(caller.name().to_string()),
        ..ContactRecord::default()
    };
    let saved = s.api.patients.append_contact(patient, record).await?;
    s.api
        .audit
        .append(
            Event::new(caller.name(), action::CONTACT_WRITE, "success")
                .patient(patient)
                .detail(serde_json::json!({
                    "contact": saved.id,
                    "call_id": call_id,
                    "wrap_up": code,
                    "break_glass": grant.break_glass,
                })),
        )
        .await?;
    Ok(saved.id)
}

/// The contact center now: each queue's waiting contacts, agents and figures since the start
/// (answered, abandoned, average speed of answer, service level), and every agent's state.
fn desk_view(s: &WhipApi) -> serde_json::Value {
    let queues = &s.calls.flows.queues;
    let now = Instant::now();
    let mut names: Vec<&String> = queues.names().collect();
    names.sort();
    let queues: Vec<serde_json::Value> = names
        .into_iter()
        .filter_map(|name| {
            let m = queues.metrics(name, now)?;
            let stats = queues.stats(name).unwrap_or_default();
            let sl_secs = queues.get(name).map_or(0, |q| q.config.service_level_secs);
            let alert_after = queues.get(name).map_or(0, |q| q.config.alert_after_secs);
            let over_limit = s.calls.desk.figures(name).map_or(0, |f| f.over_limit);
            let asa = (stats.answered > 0)
                .then(|| stats.wait_total_ms as f64 / stats.answered as f64 / 1000.0);
            let answered_or_abandoned = stats.answered + stats.abandoned;
            let service_level = (answered_or_abandoned > 0)
                .then(|| stats.answered_in_time as f64 / answered_or_abandoned as f64);
            Some(serde_json::json!({
                "name": name,
                "waiting": m.contacts,
                "oldest_wait_secs": m.oldest_age_secs,
                "agents_available": m.agents_available,
                "agents_online": m.agents_online,
                "agents_staffed": m.agents_staffed,
                "answered": stats.answered,
                "abandoned": stats.abandoned,
                "average_speed_of_answer_secs": asa.map(|a| (a * 10.0).round() / 10.0),
                "service_level": service_level.map(|v| (v * 1000.0).round() / 1000.0),
                "service_level_secs": sl_secs,
                "alert_after_secs": alert_after,
                "over_limit": over_limit,
            }))
        })
        .collect();
    let agents: Vec<serde_json::Value> = s
        .calls
        .desk
        .agents()
        .into_iter()
        .map(|(name, state, for_)| {
            let mut v = serde_json::to_value(&state).unwrap_or_default();
            v["name"] = name.into();
            v["for_secs"] = for_.as_secs().into();
            v
        })
        .collect();
    serde_json::json!({ "queues": queues, "agents": agents })
}

/// The supervisor's live view as JSON (the console channel pushes the same to supervisors).
async fn desk(State(s): State<WhipApi>, caller: Option<Caller>) -> Result<Response, ApiError> {
    let caller = signed_in(caller)?;
    s.api.require(&caller, Action::DeskRead, None).await?;
    Ok(axum::Json(desk_view(&s)).into_response())
}
