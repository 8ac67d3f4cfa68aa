//! Telehealth rooms over HTTP. A clinician books a room (`POST /api/v1/rooms`) with its
//! invitees, each of whom gets a signed, expiring link (`/room/<id>?t=<token>`); browsers
//! enter by WHIP (`POST /api/v1/rooms/{id}/join`, the SDP offer in, the answer and the
//! participant's session `Location` out), with the link's token or as a signed-in clinician.
//! The host runs the visit (`POST .../participants/{pid}/{action}`: admit, deny, mute, unmute,
//! remove, host; `POST .../end`). A participant's session URL is their capability for their
//! own place (`GET`: where they stand and who is there; `DELETE`: leave).
//!
//! Audited: booking (`room.create`, with the patient), invitations (`room.invite`), every
//! entry and every refused link (`room.join`, with the patient: whoever enters meets them),
//! the end (`room.end`).

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRef, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::{ApiError, ApiState, Caller, ClientAddr};
use super::extract::{JsonBody, QueryParams};
use super::queues::signed_in;
use super::whip::sdp_offer;
use crate::audit::{Event, action};
use crate::auth::{Action, Role as UserRole};
use crate::config::RoomsConfig;
use crate::media::webrtc::WebRtcError;
use crate::rooms::link::LinkSigner;
use crate::rooms::room::{Channel, HostLeaves, Knock, Pid, Presence, Refusal, Role};
use crate::rooms::service::{Control, EnterError, RecordError, Rooms};
use crate::rooms::store::{Invitee, RoomRecord};

#[derive(Clone)]
pub(crate) struct RoomsApi {
    api: Arc<ApiState>,
    rooms: Arc<Rooms>,
    links: Arc<LinkSigner>,
    config: RoomsConfig,
    /// "Call me instead" calls placed per invitation (room, invitee), against
    /// [`MAX_CALL_ME`].
    call_me: Arc<std::sync::Mutex<std::collections::HashMap<(String, String), u32>>>,
}

impl FromRef<RoomsApi> for Arc<ApiState> {
    fn from_ref(s: &RoomsApi) -> Arc<ApiState> {
        s.api.clone()
    }
}

pub(crate) fn router(
    api: Arc<ApiState>,
    rooms: Arc<Rooms>,
    links: Arc<LinkSigner>,
    config: RoomsConfig,
) -> Router {
    Router::new()
        .route("/api/v1/rooms", post(create).get(list))
        .route("/api/v1/rooms/{id}", get(show))
        .route("/api/v1/rooms/{id}/invitees", post(invite))
        .route("/api/v1/rooms/{id}/invitees/{invitee}", delete(revoke))
        .route("/api/v1/rooms/{id}/join", post(join))
        .route(
            "/api/v1/rooms/{id}/sessions/{session}",
            get(session).delete(leave),
        )
        .route(
            "/api/v1/rooms/{id}/participants/{pid}/{action}",
            post(control),
        )
        .route("/api/v1/rooms/{id}/end", post(end))
        .route("/api/v1/rooms/{id}/participants", post(call_out))
        .route("/api/v1/rooms/{id}/call-me", post(call_me))
        .route("/api/v1/rooms/{id}/recording/{action}", post(record))
        .route(
            "/room/{id}",
            get(|| super::whip::page("text/html; charset=utf-8", ROOM_HTML)),
        )
        .route(
            "/room.js",
            get(|| super::whip::page("text/javascript; charset=utf-8", ROOM_JS)),
        )
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(super::v1::body_limit))
        .with_state(RoomsApi {
            api,
            rooms,
            links,
            config,
            call_me: Default::default(),
        })
}

/// The visit page (`web/room.html`): patients by their link, clinicians signed in.
const ROOM_HTML: &str = include_str!("../../web/room.html");
const ROOM_JS: &str = include_str!("../../web/room.js");

/// Participants a booking may ask for.
const MAX_PARTICIPANTS: u32 = 16;
/// "Call me instead" calls one invitation may ask for: a link is a credential anyone who
/// holds it can use, and each call costs the clinic a trunk call to a number it does not
/// know, so a few, not a dialer.
const MAX_CALL_ME: u32 = 3;

/// Invitees one booking may list.
const MAX_INVITEES: usize = 15;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRoom {
    title: String,
    /// RFC 3339; now when absent.
    scheduled_at: Option<String>,
    patient_id: Option<String>,
    waiting_room: Option<bool>,
    max_participants: Option<u32>,
    host_leaves: Option<HostLeaves>,
    #[serde(default)]
    invitees: Vec<NewInvitee>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewInvitee {
    label: String,
    role: Role,
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let control = |c: char| c < ' ' || c == '\u{7f}';
    if value.trim().is_empty() || value.chars().count() > max || value.chars().any(control) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{field}: 1 to {max} characters, no control characters"),
        ));
    }
    Ok(())
}

fn check_invitee(i: &NewInvitee) -> Result<(), ApiError> {
    text("label", &i.label, 100)?;
    if i.role == Role::Clinician {
        // A link that enters at once and may run the visit would be a password in an
        // e-mail: colleagues enter signed in.
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "role: patient or guest (clinicians enter signed in, without a link)",
        ));
    }
    Ok(())
}

fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl RoomsApi {
    fn link(&self, room: &RoomRecord, invitee: &Invitee) -> String {
        let token = self
            .links
            .sign(&room.id, &invitee.id, invitee.expires_at_ms / 1000);
        format!("/room/{}?t={token}", room.id)
    }

    /// The number invitees call to join by phone with their PIN (None: not configured).
    fn dial_in(&self) -> Option<&str> {
        Some(self.config.dial_in_number.as_str()).filter(|n| !n.is_empty())
    }

    fn expiry(&self, room: &RoomRecord) -> i64 {
        room.scheduled_at_ms.max(now_ms()) + i64::from(self.config.link_valid_hours) * 3_600_000
    }

    /// The caller, allowed to manage rooms, and the booked room `id`.
    async fn managing(
        &self,
        caller: Option<Caller>,
        id: &str,
    ) -> Result<(Caller, RoomRecord), ApiError> {
        let caller = signed_in(caller)?;
        self.api.require(&caller, Action::RoomManage, None).await?;
        let room = self.booked(id).await?;
        Ok((caller, room))
    }

    async fn booked(&self, id: &str) -> Result<RoomRecord, ApiError> {
        valid_id(id)?;
        self.rooms
            .store()
            .get(id)
            .await
            .map_err(internal)?
            .ok_or_else(|| ApiError::not_found("no such room"))
    }

    /// The room as its host sees it: the booking, the invitations with their links, and who
    /// is in it now.
    async fn render(&self, room: &RoomRecord) -> Result<Value, ApiError> {
        let invitees = self
            .rooms
            .store()
            .invitees(&room.id)
            .await
            .map_err(internal)?;
        let live = self.rooms.view(&room.id).await;
        Ok(json!({
            "id": room.id,
            "title": room.title,
            "host": room.host,
            "patient_id": room.patient,
            "scheduled_at": rfc3339(room.scheduled_at_ms),
            "waiting_room": room.waiting_room,
            "max_participants": room.max_participants,
            "host_leaves": room.host_leaves,
            "ended_at": room.ended_at_ms.map(rfc3339),
            "end_reason": room.end_reason,
            "join_url": format!("/room/{}", room.id),
            "invitees": invitees.iter().map(|i| json!({
                "id": i.id,
                "label": i.label,
                "role": i.role,
                "expires": rfc3339(i.expires_at_ms),
                "revoked": i.revoked,
                "link": (!i.revoked).then(|| self.link(room, i)),
                "pin": (!i.revoked).then(|| self.links.pin(&room.id, &i.id)),
            })).collect::<Vec<_>>(),
            "dial_in": self.dial_in(),
            "live": live,
        }))
    }

    /// Only the clinician who booked a room (or a service) manages it.
    fn owns(caller: &Caller, room: &RoomRecord) -> Result<(), ApiError> {
        if caller.principal.role == UserRole::Service || caller.name() == room.host {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "only the clinician who booked this room manages it",
            ))
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "room store");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the room store failed")
}

fn valid_id(id: &str) -> Result<(), ApiError> {
    if id.len() == 16 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(ApiError::not_found("no such room"))
    }
}

/// `POST /api/v1/rooms`: books a room; 201 with the room (its invitees' links included).
async fn create(
    State(s): State<RoomsApi>,
    caller: Option<Caller>,
    JsonBody(body): JsonBody<NewRoom>,
) -> Result<Response, ApiError> {
    let caller = signed_in(caller)?;
    s.api.require(&caller, Action::RoomManage, None).await?;
    text("title", &body.title, 200)?;
    if let Some(p) = &body.patient_id {
        text("patient_id", p, 64)?;
    }
    let max = body
        .max_participants
        .unwrap_or(s.config.max_participants)
        .clamp(2, MAX_PARTICIPANTS);
    if body
        .max_participants
        .is_some_and(|m| !(2..=MAX_PARTICIPANTS).contains(&m))
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("max_participants: 2 to {MAX_PARTICIPANTS}"),
        ));
    }
    if body.invitees.len() > MAX_INVITEES {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("invitees: at most {MAX_INVITEES}"),
        ));
    }
    for i in &body.invitees {
        check_invitee(i)?;
    }
    let now = now_ms();
    let scheduled = match &body.scheduled_at {
        None => now,
        Some(t) => t
            .parse::<jiff::Timestamp>()
            .map_err(|_| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "scheduled_at: an RFC 3339 time (2026-12-08T09:30:00Z)",
                )
            })?
            .as_millisecond(),
    };
    let room = RoomRecord {
        id: new_id(),
        title: body.title.trim().to_string(),
        host: caller.name().to_string(),
        patient: body.patient_id.clone(),
        scheduled_at_ms: scheduled,
        waiting_room: body.waiting_room.unwrap_or(true),
        max_participants: max as usize,
        host_leaves: body.host_leaves.unwrap_or_default(),
        created_at_ms: now,
        ended_at_ms: None,
        end_reason: None,
    };
    let store = s.rooms.store();
    store.create(&room).await.map_err(internal)?;
    let expires = s.expiry(&room);
    for i in &body.invitees {
        let inv = Invitee {
            id: new_id(),
            role: i.role,
            label: i.label.trim().to_string(),
            expires_at_ms: expires,
            revoked: false,
        };
        let pin = s.links.pin(&room.id, &inv.id);
        store
            .invite(&room.id, &inv, &pin, now)
            .await
            .map_err(internal)?;
    }
    let mut event = Event::new(caller.name(), action::ROOM_CREATE, "success").detail(json!({
        "room": room.id, "invitees": body.invitees.len()
    }));
    if let Some(p) = &room.patient {
        event = event.patient(p);
    }
    s.api.audit.append(event).await?;
    let rendered = s.render(&room).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/v1/rooms/{}", room.id))],
        axum::Json(rendered),
    )
        .into_response())
}

/// `GET /api/v1/rooms`: the caller's rooms not ended (a service: everyone's), soonest first.
async fn list(State(s): State<RoomsApi>, caller: Option<Caller>) -> Result<Response, ApiError> {
    let caller = signed_in(caller)?;
    s.api.require(&caller, Action::RoomManage, None).await?;
    let host = (caller.principal.role != UserRole::Service).then(|| caller.name());
    let rooms = s.rooms.store().open_rooms(host).await.map_err(internal)?;
    let mut out = Vec::with_capacity(rooms.len());
    for room in &rooms {
        out.push(json!({
            "id": room.id,
            "title": room.title,
            "host": room.host,
            "scheduled_at": rfc3339(room.scheduled_at_ms),
            "join_url": format!("/room/{}", room.id),
        }));
    }
    Ok(axum::Json(json!({ "rooms": out })).into_response())
}

/// `GET /api/v1/rooms/{id}`: the room, for the clinician who booked it.
async fn show(
    State(s): State<RoomsApi>,
    caller: Option<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (caller, room) = s.managing(caller, &id).await?;
    RoomsApi::owns(&caller, &room)?;
    Ok(axum::Json(s.render(&room).await?).into_response())
}

/// `POST /api/v1/rooms/{id}/invitees`: one more invitation; 201 with its link.
async fn invite(
    State(s): State<RoomsApi>,
    caller: Option<Caller>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<NewInvitee>,
) -> Result<Response, ApiError> {
    let (caller, room) = s.managing(caller, &id).await?;
    RoomsApi::owns(&caller, &room)?;
    check_invitee(&body)?;
    if room.ended_at_ms.is_some() {
        return Err(ApiError::new(StatusCode::GONE, "the visit is over"));
    }
    let store = s.rooms.store();
    if store.invitees(&id).await.map_err(internal)?.len() >= MAX_INVITEES {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("a room takes at most {MAX_INVITEES} invitations"),
        ));
    }
    let inv = Invitee {
        id: new_id(),
        role: body.role,
        label: body.label.trim().to_string(),
        expires_at_ms: s.expiry(&room),
        revoked: false,
    };
    let pin = s.links.pin(&id, &inv.id);
    store
        .invite(&id, &inv, &pin, now_ms())
        .await
        .map_err(internal)?;
    s.api
        .audit
        .append(
            Event::new(caller.name(), action::ROOM_INVITE, "success")
                .detail(json!({"room": id, "invitee": inv.id})),
        )
        .await?;
    let body = json!({
        "id": inv.id,
        "label": inv.label,
        "role": inv.role,
        "expires": rfc3339(inv.expires_at_ms),
        "link": s.link(&room, &inv),
        "pin": pin,
        "dial_in": s.dial_in(),
    });
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// `DELETE /api/v1/rooms/{id}/invitees/{invitee}`: the link opens nothing more (whoever is in
/// the room by it stays until the host takes them out).
async fn revoke(
    State(s): State<RoomsApi>,
    caller: Option<Caller>,
    Path((id, invitee)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (caller, room) = s.managing(caller, &id).await?;
    RoomsApi::owns(&caller, &room)?;
    if !s
        .rooms
        .store()
        .revoke(&id, &invitee)
        .await
        .map_err(internal)?
    {
        return Err(ApiError::not_found("no such invitation"));
    }
    s.api
        .audit
        .append(
            Event::new(caller.name(), action::ROOM_INVITE, "revoked")
                .detail(json!({"room": id, "invitee": invitee})),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinQuery {
    /// The invitation link's token.
    t: Option<String>,
}

/// `POST /api/v1/rooms/{id}/join`: a browser enters, by its invitation (`?t=`) or as a
/// signed-in clinician. 201 with the SDP answer and the session's `Location`; the
/// participant is in the room or its waiting room (`GET` the session to know which).
async fn join(
    State(s): State<RoomsApi>,
    caller: Option<Caller>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<JoinQuery>,
    ConnectInfo(client): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (actor, knock) = match (&q.t, &caller) {
        (Some(token), _) => {
            let (actor, knock) = s.invited(&id, token, client.0.ip()).await?;
            (actor, knock)
        }
        (None, Some(caller)) => {
            s.api.require(caller, Action::RoomJoin, None).await?;
            let knock = Knock {
                key: format!("user:{}", caller.name()),
                label: caller.name().to_string(),
                role: Role::Clinician,
                channel: Channel::Browser,
                admitted: false,
            };
            (caller.name().to_string(), knock)
        }
        (None, None) => {
            return Err(signed_in(None).err().unwrap_or_else(|| {
                ApiError::new(StatusCode::UNAUTHORIZED, "open your invitation link")
            }));
        }
    };
    let room = s.booked(&id).await?;
    if room.ended_at_ms.is_some() {
        return Err(ApiError::new(StatusCode::GONE, "the visit is over"));
    }
    let sdp = sdp_offer(&headers, req).await?;
    let entered = match s.rooms.enter(&room, knock, &sdp, client.0.ip()).await {
        Ok(e) => e,
        Err(e) => {
            let status = match &e {
                EnterError::Refused(Refusal::Ended) => StatusCode::GONE,
                EnterError::Refused(Refusal::Full) => StatusCode::CONFLICT,
                EnterError::Refused(Refusal::Denied) => StatusCode::FORBIDDEN,
                EnterError::NoPorts => StatusCode::SERVICE_UNAVAILABLE,
                EnterError::Offer(WebRtcError::Offer(_)) => StatusCode::BAD_REQUEST,
                EnterError::Offer(WebRtcError::NoAudio) => StatusCode::UNPROCESSABLE_ENTITY,
                EnterError::Offer(WebRtcError::Rtc(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return Err(ApiError::new(status, e.to_string()));
        }
    };
    let mut event = Event::new(&actor, action::ROOM_JOIN, "success").detail(json!({
        "room": id, "participant": entered.pid, "waiting": entered.waiting
    }));
    if let Some(p) = &room.patient {
        event = event.patient(p);
    }
    if let Err(e) = s.api.audit.append(event).await {
        // Not audited, not in: the participant goes again.
        s.rooms.control(&id, Control::Leave(entered.pid)).await;
        return Err(e.into());
    }
    Ok((
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (
                header::LOCATION,
                format!("/api/v1/rooms/{id}/sessions/{}", entered.resource),
            ),
        ],
        entered.answer,
    )
        .into_response())
}

impl RoomsApi {
    /// Who an invitation link lets in: refused (403, audited) when forged, expired, for
    /// another room or withdrawn.
    async fn invited(
        &self,
        id: &str,
        token: &str,
        remote: IpAddr,
    ) -> Result<(String, Knock), ApiError> {
        let refuse = |why: &str| {
            let event = Event::new("anonymous", action::ROOM_JOIN, "denied")
                .detail(json!({"room": id, "reason": why, "from": remote.to_string()}));
            (event, ApiError::new(StatusCode::FORBIDDEN, why.to_string()))
        };
        let checked = match self.links.verify(token, now_ms() / 1000) {
            Ok(inv) if inv.room == id => Ok(inv),
            Ok(_) => Err(refuse("this invitation link is not valid")),
            Err(e) => Err(refuse(&e.to_string())),
        };
        let inv = match checked {
            Ok(inv) => inv,
            Err((event, err)) => {
                self.rooms_refused(event).await;
                return Err(err);
            }
        };
        let invitee = self
            .rooms
            .store()
            .invitee(id, &inv.invitee)
            .await
            .map_err(internal)?;
        let Some(invitee) = invitee.filter(|i| !i.revoked) else {
            let (event, err) =
                refuse("this invitation was withdrawn: ask the clinic for a new one");
            self.rooms_refused(event).await;
            return Err(err);
        };
        let (actor, knock) = invitee_knock(invitee, Channel::Browser);
        Ok((actor, knock))
    }

    async fn rooms_refused(&self, event: Event) {
        self.rooms.link_refused();
        if let Err(e) = self.api.audit.append(event).await {
            tracing::warn!(error = %e, "could not audit a refused room link");
        }
    }
}

impl RoomsApi {
    /// Whether `caller` hosts the live room `id` now.
    async fn hosting(&self, caller: &Caller, id: &str) -> bool {
        self.rooms
            .view(id)
            .await
            .is_some_and(|v| v.hosted_by(caller.name()))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallOut {
    /// The number to call, through the trunk.
    number: String,
    label: String,
    role: Role,
}

/// `POST /api/v1/rooms/{id}/participants`: the host calls a number into the visit (an
/// interpreter's line, a patient whose browser failed). 202 once the call is placed; when it
/// answers, the participant is in the room at once (the host called them; no waiting room).
async fn call_out(
    State(s): State<RoomsApi>,
    caller: Option<Caller>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CallOut>,
) -> Result<Response, ApiError> {
    let (caller, room) = s.managing(caller, &id).await?;
    check_invitee(&NewInvitee {
        label: body.label.clone(),
        role: body.role,
    })?;
    if !s.hosting(&caller, &id).await {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only the room's host calls people into the visit",
        ));
    }
    let label = body.label.trim().to_string();
    if let Err(e) = s
        .rooms
        .call_out(&room, &body.number, label, body.role)
        .await
    {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Err(ApiError::new(status, e.to_string()));
    }
    // The number (a patient's or a helper's) is neither logged nor kept in the trail.
    let mut event = Event::new(caller.name(), action::ROOM_INVITE, "called")
        .detail(json!({"room": id, "role": body.role, "by": "phone"}));
    if let Some(p) = &room.patient {
        event = event.patient(p);
    }
    s.api.audit.append(event).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(json!({"ringing": true}))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallMe {
    /// The invitee's own phone number.
    number: String,
}

/// `POST /api/v1/rooms/{id}/call-me?t=TOKEN`: "we will call your phone" (the brief's
/// troubleshooting table): an invitee whose browser cannot join asks to be called at
/// `number` and enters as their invitation (back in the room if the host had let them in,
/// else the waiting room). Only while a clinician hosts the visit (409 before), at most
/// [`MAX_CALL_ME`] times per invitation (429 past). Audited (room.invite, called_back), the
/// number neither logged nor kept.
async fn call_me(
    State(s): State<RoomsApi>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<JoinQuery>,
    ConnectInfo(client): ConnectInfo<ClientAddr>,
    JsonBody(body): JsonBody<CallMe>,
) -> Result<Response, ApiError> {
    let Some(token) = q.t.as_deref() else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "open your invitation link",
        ));
    };
    let (actor, mut knock) = s.invited(&id, token, client.0.ip()).await?;
    let room = s.booked(&id).await?;
    if room.ended_at_ms.is_some() {
        return Err(ApiError::new(StatusCode::GONE, "the visit is over"));
    }
    if s.rooms.view(&id).await.is_none_or(|v| v.host.is_none()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the clinician has not started the visit yet: try again when they have",
        ));
    }
    let counted = (id.clone(), actor.clone());
    {
        let mut calls = s.call_me.lock().unwrap_or_else(|e| e.into_inner());
        let n = calls.entry(counted.clone()).or_insert(0);
        if *n >= MAX_CALL_ME {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "we have called you several times already: please call the clinic",
            ));
        }
        *n += 1;
    }
    knock.channel = Channel::Phone;
    if let Err(e) = s.rooms.call_invitee(&room, &body.number, knock).await {
        // Not placed: it does not count.
        if let Ok(mut calls) = s.call_me.lock()
            && let Some(n) = calls.get_mut(&counted)
        {
            *n = n.saturating_sub(1);
        }
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Err(ApiError::new(status, e.to_string()));
    }
    let mut event = Event::new(&actor, action::ROOM_INVITE, "called_back")
        .detail(json!({"room": id, "by": "phone"}));
    if let Some(p) = &room.patient {
        event = event.patient(p);
    }
    s.api.audit.append(event).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(json!({"ringing": true}))).into_response())
}

/// `POST /api/v1/rooms/{id}/recording/{action}`: the host starts or stops recording the
/// visit. A recording follows the patient's leg (the patient on the left channel, everyone
/// else as the patient hears them on the right), or the host's when no patient is in the
/// room; it is linked to the visit's patient like a call's, and ends when the recorded person
/// leaves or the visit ends. Everyone in the room is shown that it is recorded.
async fn record(
    State(s): State<RoomsApi>,
    caller: Option<Caller>,
    Path((id, act)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (caller, room) = s.managing(caller, &id).await?;
    let on = match act.as_str() {
        "start" => true,
        "stop" => false,
        _ => return Err(ApiError::not_found("no such action (start, stop)")),
    };
    if !s.hosting(&caller, &id).await {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only the room's host records the visit",
        ));
    }
    let done = match s.rooms.record(&id, on).await {
        Ok(r) => r,
        Err(e) => {
            let status = match e {
                RecordError::NotLive => StatusCode::NOT_FOUND,
                RecordError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::CONFLICT,
            };
            return Err(ApiError::new(status, e.to_string()));
        }
    };
    if let (true, Some(patient)) = (on, &room.patient)
        && let Err(e) = s
            .api
            .patients
            .link_call(&format!("room:{id}"), patient, Some(&done.id))
            .await
    {
        tracing::warn!(error = %e, "could not link the visit's recording to its patient");
    }
    let mut event = Event::new(caller.name(), action::RECORDING_CONTROL, "success").detail(
        json!({"room": id, "recording": done.id, "action": if on { "start" } else { "stop" }}),
    );
    if let Some(p) = &room.patient {
        event = event.patient(p);
    }
    s.api.audit.append(event).await?;
    let left = if done.left == Role::Patient {
        "patient"
    } else {
        "host"
    };
    let body = json!({"recording": done.id, "left": left});
    let status = if on {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(body)).into_response())
}

/// The room and participant of a session URL, or 404.
fn session_of(s: &RoomsApi, id: &str, resource: &str) -> Result<Pid, ApiError> {
    match s.rooms.session(resource) {
        Some((room, pid)) if room == id => Ok(pid),
        _ => Err(ApiError::not_found(
            "no such session (the visit ended, or you left or were taken out)",
        )),
    }
}

/// `GET /api/v1/rooms/{id}/sessions/{session}`: where this participant stands and who else
/// is there (labels, roles, presence; nothing from the patient's record).
async fn session(
    State(s): State<RoomsApi>,
    Path((id, resource)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let pid = session_of(&s, &id, &resource)?;
    let view = s
        .rooms
        .view(&id)
        .await
        .ok_or_else(|| ApiError::not_found("the visit is over"))?;
    let me = view
        .participants
        .iter()
        .find(|p| p.id == pid)
        .ok_or_else(|| ApiError::not_found("you are no longer in this room"))?;
    let mut out = json!({
        "participant": pid,
        "presence": me.presence,
        "muted": me.muted,
        "host": view.host == Some(pid),
        "participants": view.participants,
        "host_participant": view.host,
        "talking": view.talking,
        "recording": view.recording,
    });
    // A clinician in the visit is told which patient it is about (the summary itself is
    // behind the permission table: it opens because they are in the visit, and is audited).
    if me.role == Role::Clinician && me.presence == Presence::Present {
        out["title"] = json!(view.title);
        out["patient_id"] = json!(view.patient);
    }
    Ok(axum::Json(out).into_response())
}

/// `DELETE /api/v1/rooms/{id}/sessions/{session}`: the participant leaves.
async fn leave(
    State(s): State<RoomsApi>,
    Path((id, resource)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let pid = session_of(&s, &id, &resource)?;
    s.rooms.control(&id, Control::Leave(pid)).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/rooms/{id}/participants/{pid}/{action}`: the host runs the visit. 204; 403
/// for anyone but the room's host now; 404 for nobody by that number; 409 when the action
/// does not apply (let in someone not waiting, take out the host).
async fn control(
    State(s): State<RoomsApi>,
    caller: Option<Caller>,
    Path((id, pid, act)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let caller = signed_in(caller)?;
    s.api.require(&caller, Action::RoomManage, None).await?;
    valid_id(&id)?;
    let pid: Pid = pid
        .parse()
        .map_err(|_| ApiError::not_found("no such participant"))?;
    let control = match act.as_str() {
        "admit" => Control::Admit(pid),
        "deny" => Control::Deny(pid),
        "mute" => Control::Mute(pid, true),
        "unmute" => Control::Mute(pid, false),
        "remove" => Control::Remove(pid),
        "host" => Control::HandOver(pid),
        _ => {
            return Err(ApiError::not_found(
                "no such action (admit, deny, mute, unmute, remove, host)",
            ));
        }
    };
    let view = s
        .rooms
        .view(&id)
        .await
        .ok_or_else(|| ApiError::not_found("nobody is in this room"))?;
    if !view.hosted_by(caller.name()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only the room's host runs the visit",
        ));
    }
    if !view.participants.iter().any(|p| p.id == pid) {
        return Err(ApiError::not_found("no such participant"));
    }
    if !s.rooms.control(&id, control).await {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("cannot {act} this participant now"),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/rooms/{id}/end`: the visit ends for everyone; its links open nothing more.
/// The room's host now or the clinician who booked it.
async fn end(
    State(s): State<RoomsApi>,
    caller: Option<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (caller, room) = s.managing(caller, &id).await?;
    let live = s.rooms.view(&id).await;
    if !live.as_ref().is_some_and(|v| v.hosted_by(caller.name())) {
        RoomsApi::owns(&caller, &room)?;
    }
    if room.ended_at_ms.is_some() {
        return Err(ApiError::new(StatusCode::GONE, "the visit is over already"));
    }
    if !(live.is_some() && s.rooms.control(&id, Control::End).await) {
        s.rooms
            .store()
            .end(&id, "host", now_ms())
            .await
            .map_err(internal)?;
    }
    let mut event =
        Event::new(caller.name(), action::ROOM_END, "success").detail(json!({"room": id}));
    if let Some(p) = &room.patient {
        event = event.patient(p);
    }
    s.api.audit.append(event).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// How an invitee knocks (by their link or their PIN), and who they are in the audit trail:
/// `invitee:ID` for both, so the same person takes one place however they come.
fn invitee_knock(invitee: Invitee, channel: Channel) -> (String, Knock) {
    let actor = format!("invitee:{}", invitee.id);
    let knock = Knock {
        key: actor.clone(),
        label: invitee.label,
        role: invitee.role,
        channel,
        admitted: false,
    };
    (actor, knock)
}

/// The dial-in line's way into rooms (`careline:room-join`, see [`crate::call::room_door`]):
/// the keyed visit PIN finds its invitation, and the caller enters as that invitee would by
/// link (the same place: one per person), by phone, into the waiting room where there is
/// one. Audited as a link is: `room.join` (success, with the patient; denied, with why and
/// the call), never the PIN.
pub(crate) struct PhoneDoor {
    api: Arc<ApiState>,
    rooms: Arc<Rooms>,
}

/// The door the server hands the calls once the rooms are up.
pub(crate) fn phone_door(
    api: Arc<ApiState>,
    rooms: Arc<Rooms>,
) -> Arc<dyn crate::call::room_door::RoomDoor> {
    Arc::new(PhoneDoor { api, rooms })
}

impl crate::call::room_door::RoomDoor for PhoneDoor {
    fn enter(
        self: Arc<Self>,
        pin: String,
        guest: crate::call::room_door::PhoneGuest,
    ) -> futures::future::BoxFuture<
        'static,
        Result<crate::call::room_door::Seat, crate::call::room_door::Refused>,
    > {
        Box::pin(async move { self.enter_by_pin(&pin, guest).await })
    }
}

impl PhoneDoor {
    /// The invitation and the open room a keyed PIN opens, or why not, as the flow is told:
    /// `unknown` (no such PIN, or withdrawn), `expired`, `over`, `unavailable` (the store).
    async fn opened_by(&self, pin: &str) -> Result<(Invitee, RoomRecord), &'static str> {
        let store = self.rooms.store();
        let unavailable = |e: crate::rooms::store::RoomStoreError| {
            tracing::warn!(error = %e, "could not look a visit PIN up");
            "unavailable"
        };
        let found = store.by_pin(pin).await.map_err(unavailable)?;
        let Some((room_id, invitee)) = found.filter(|(_, i)| !i.revoked) else {
            return Err("unknown");
        };
        let room = store
            .get(&room_id)
            .await
            .map_err(unavailable)?
            .ok_or("unknown")?;
        if invitee.expires_at_ms <= now_ms() {
            return Err("expired");
        }
        if room.ended_at_ms.is_some() {
            return Err("over");
        }
        Ok((invitee, room))
    }

    async fn enter_by_pin(
        &self,
        pin: &str,
        guest: crate::call::room_door::PhoneGuest,
    ) -> Result<crate::call::room_door::Seat, crate::call::room_door::Refused> {
        use crate::call::room_door::Refused;
        let (invitee, room) = match self.opened_by(pin).await {
            Ok(found) => found,
            Err(reason) => {
                if reason != "unavailable" {
                    self.rooms.pin_refused();
                    let event = Event::new("anonymous", action::ROOM_JOIN, "denied").detail(
                        json!({"channel": "phone", "reason": reason, "call": guest.call_id}),
                    );
                    if let Err(e) = self.api.audit.append(event).await {
                        tracing::warn!(error = %e, "could not audit a refused visit PIN");
                    }
                }
                return Err(Refused {
                    reason,
                    guest: Some(guest),
                });
            }
        };
        let (actor, knock) = invitee_knock(invitee, Channel::Phone);
        let call_id = guest.call_id.clone();
        let (entry, seat) = match self
            .rooms
            .enter_phone(&room, knock, guest.leg, guest.codec)
            .await
        {
            Ok(entered) => entered,
            Err(refusal) => {
                let reason = match refusal {
                    Refusal::Full => "full",
                    Refusal::Denied => "refused",
                    Refusal::Ended => "over",
                };
                return Err(Refused {
                    reason,
                    guest: None,
                });
            }
        };
        let waiting = matches!(entry, crate::rooms::room::Entry::Waiting(_));
        let mut event = Event::new(&actor, action::ROOM_JOIN, "success").detail(json!({
            "room": room.id, "participant": entry.pid(), "waiting": waiting,
            "channel": "phone", "call": call_id
        }));
        if let Some(p) = &room.patient {
            event = event.patient(p);
        }
        if let Err(e) = self.api.audit.append(event).await {
            // Not audited, not in: the seat dropped takes the caller out again.
            tracing::warn!(error = %e, "could not audit a phone caller's entry: turned away");
            return Err(Refused {
                reason: "unavailable",
                guest: None,
            });
        }
        Ok(seat)
    }
}
