//! Calls Careline places: a patient called back, a discharge follow-up, a test call. The call
//! goes out through a configured trunk (`[sip.trunks.NAME] proxy`), rings the patient's phone,
//! and once answered runs a contact flow on the same call core and media clock as a call that
//! came in: prompts, keys, Lambdas, recording. Whoever placed it learns how it ended
//! ([`CallOutcome`]): answered and what the flow collected, or why not (busy, no answer, ...).
//!
//! The trunk's limits are kept here, in the shell: at most `max_calls` at once through it, and
//! no more than `calls_per_second` new calls (a carrier refuses bursts over its contracted
//! rate).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Turns under `calls_per_second` are spaced so that R of them span a second and this much:
/// an INVITE goes out a little after its turn (a timer's rounding, building the request), and
/// by a varying amount, so spacing of exactly 1/R let a carrier counting any second see R + 1
/// (measured with `benches/dialer-pacing.sh`). 1 % slower at most, never over the limit.
const PACING_GUARD: Duration = Duration::from_millis(10);
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::{Instrument, info, info_span};

use super::CallServices;
use super::start::{Pending, Signaling, Start};
use crate::config::TrunkConfig;
use crate::flow::attributes::ContactData;
use crate::media::codec::Codec;
use crate::sip::outbound::Dial;
use crate::sip::sdp;

/// A trunk Careline calls out through, with its limits' state.
pub struct Trunk {
    pub name: String,
    proxy: String,
    /// The proxy's address when it is written as one: the SDP offer names the local address
    /// that routes to it (a host name is left to the listen address).
    proxy_ip: Option<std::net::IpAddr>,
    caller_id: String,
    credential: Option<(String, String)>,
    max_calls: usize,
    /// Time between two new calls (zero: no pacing).
    spacing: Duration,
    pub ring_timeout: Duration,
    active: AtomicUsize,
    /// When the next call may go out.
    next_slot: std::sync::Mutex<Option<Instant>>,
    /// When the last INVITE went out: held while one is sent, so that two are never closer
    /// than `spacing` however late each got to its turn (a busy machine wakes turns late and
    /// then together).
    last_sent: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Trunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trunk")
            .field("name", &self.name)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

/// Why a trunk's configuration cannot be used at start.
#[derive(Debug, thiserror::Error)]
#[error("sip.trunks.{trunk}.password_env names {var}, which is not set")]
pub struct MissingPassword {
    pub trunk: String,
    pub var: String,
}

impl Trunk {
    /// The trunks with a `proxy`, their passwords read from the environment variables named.
    pub fn from_config(
        trunks: &BTreeMap<String, TrunkConfig>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Trunks, MissingPassword> {
        let mut out = BTreeMap::new();
        for (name, t) in trunks {
            let Some(proxy) = &t.proxy else { continue };
            let credential = match (&t.username, &t.password_env) {
                (Some(user), Some(var)) => {
                    let password = env(var).ok_or_else(|| MissingPassword {
                        trunk: name.clone(),
                        var: var.clone(),
                    })?;
                    Some((user.clone(), password))
                }
                _ => None,
            };
            let spacing = if t.calls_per_second > 0.0 {
                (Duration::from_secs(1) + PACING_GUARD).div_f64(t.calls_per_second)
            } else {
                Duration::ZERO
            };
            let trunk = Trunk {
                name: name.clone(),
                proxy_ip: proxy_ip(proxy),
                proxy: proxy.clone(),
                caller_id: t.caller_id.clone(),
                credential,
                max_calls: t.max_calls as usize,
                spacing,
                ring_timeout: Duration::from_secs(u64::from(t.ring_timeout_secs)),
                active: AtomicUsize::new(0),
                next_slot: std::sync::Mutex::new(None),
                last_sent: tokio::sync::Mutex::new(None),
            };
            out.insert(name.clone(), Arc::new(trunk));
        }
        Ok(Trunks(Arc::new(out)))
    }

    /// Takes one of its call places, if `max_calls` allows.
    fn take_place(self: &Arc<Self>) -> Option<TrunkPlace> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (self.max_calls == 0 || n < self.max_calls).then_some(n + 1)
            })
            .ok()
            .map(|_| TrunkPlace(self.clone()))
    }

    /// How long this call waits for its turn under `calls_per_second` (the turn is taken).
    fn wait_for_turn(&self, now: Instant) -> Duration {
        if self.spacing.is_zero() {
            return Duration::ZERO;
        }
        let mut next = self
            .next_slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = next.map_or(now, |n| n.max(now));
        *next = Some(at + self.spacing);
        at - now
    }

    /// Waits until `spacing` has passed since the last INVITE through this trunk went out,
    /// and holds the gate while this one goes: the pacing as the carrier sees it.
    async fn gate(&self) -> Option<tokio::sync::MutexGuard<'_, Option<Instant>>> {
        if self.spacing.is_zero() {
            return None;
        }
        let mut last = self.last_sent.lock().await;
        if let Some(due) = last.map(|at| at + self.spacing)
            && due > Instant::now()
        {
            tokio::time::sleep_until(due.into()).await;
        }
        *last = Some(Instant::now());
        Some(last)
    }

    /// Calls through it now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }
}

/// The host of `sip:HOST[:PORT][;params]` when it is an IP address (IPv6 in brackets).
fn proxy_ip(proxy: &str) -> Option<std::net::IpAddr> {
    let rest = proxy.split_once(':')?.1;
    let hostport = rest.split([';', '?', '>']).next()?;
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next()?.parse().ok();
    }
    hostport.split(':').next()?.parse().ok()
}

/// One call's place under its trunk's `max_calls`, given back when dropped.
struct TrunkPlace(Arc<Trunk>);

impl Drop for TrunkPlace {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The trunks Careline may call out through, by name.
#[derive(Debug, Clone, Default)]
pub struct Trunks(Arc<BTreeMap<String, Arc<Trunk>>>);

impl Trunks {
    /// The trunk named, or the only one there is.
    pub fn pick(&self, name: Option<&str>) -> Result<Arc<Trunk>, DialError> {
        match name {
            Some(name) => self
                .0
                .get(name)
                .cloned()
                .ok_or_else(|| DialError::UnknownTrunk(name.to_string())),
            None => {
                let mut all = self.0.values();
                match (all.next(), all.next()) {
                    (Some(only), None) => Ok(only.clone()),
                    (None, _) => Err(DialError::NoTrunk),
                    (Some(_), Some(_)) => Err(DialError::WhichTrunk),
                }
            }
        }
    }
}

/// A call to place.
#[derive(Debug, Clone, Default)]
pub struct OutboundCall {
    /// The number to call: digits, optionally a leading `+` (spaces, dashes, dots and
    /// parentheses are dropped). PHI: never logged.
    pub number: String,
    /// The trunk by name; `None`: the only one configured.
    pub trunk: Option<String>,
    /// The contact flow to run once answered, by name; `None`: `flows.default`.
    pub flow: Option<String>,
    /// Contact attributes the flow starts with (`$.Attributes.NAME`).
    pub attributes: HashMap<String, String>,
    /// The call's id, when the placer chose it (to record it before the INVITE goes out);
    /// else one is drawn.
    pub call_id: Option<String>,
    /// The queue the call is for (`$.Queue`; a callback's).
    pub queue: Option<String>,
}

/// Why a call was not placed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("Careline is shutting down")]
    Draining,
    #[error("at the configured maximum of concurrent calls")]
    AtCapacity,
    #[error("no trunk named `{0}` takes outbound calls (it needs a proxy)")]
    UnknownTrunk(String),
    #[error("no trunk takes outbound calls: configure [sip.trunks.NAME] proxy")]
    NoTrunk,
    #[error("several trunks take outbound calls: name one")]
    WhichTrunk,
    #[error("trunk `{0}` is at its max_calls")]
    TrunkBusy(String),
    #[error("no contact flow is named `{0}`")]
    UnknownFlow(String),
    #[error("no flow named and no flows.default")]
    NoFlow,
    #[error("not a phone number: 1 to 32 digits, optionally a leading +")]
    BadNumber,
    #[error("no media port is free")]
    NoMediaPort,
    #[error("the call could not be sent: {0}")]
    Sip(String),
}

impl DialError {
    /// The HTTP status an API caller gets for it.
    pub fn http_status(&self) -> u16 {
        match self {
            DialError::Draining
            | DialError::AtCapacity
            | DialError::TrunkBusy(_)
            | DialError::NoMediaPort => 503,
            DialError::UnknownTrunk(_) | DialError::UnknownFlow(_) | DialError::BadNumber => 422,
            DialError::NoTrunk | DialError::WhichTrunk | DialError::NoFlow => 422,
            DialError::Sip(_) => 502,
        }
    }
}

/// How a placed call ended.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    pub call_id: String,
    /// `server_bye`/`caller_bye` (answered and ended), or why it was not answered
    /// (`no_answer`, `busy`, `declined`, `not_found`, `unreachable`, `trunk_auth`,
    /// `trunk_error`, `refused`), or an end Careline chose (`shutdown`, `error`).
    pub cause: &'static str,
    pub answered: bool,
    /// From the answer to the end.
    pub talk_time: Duration,
    /// The contact's attributes as the flow left them (what it collected).
    pub attributes: HashMap<String, String>,
}

/// Where a placed call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacedState {
    /// The INVITE is out; no answer yet.
    Dialing,
    /// The phone rings (180/183).
    Ringing,
    /// The phone answered; the flow runs.
    Answered,
}

impl PlacedState {
    pub fn as_str(self) -> &'static str {
        match self {
            PlacedState::Dialing => "dialing",
            PlacedState::Ringing => "ringing",
            PlacedState::Answered => "answered",
        }
    }
}

struct Live {
    state: PlacedState,
    commands: tokio::sync::mpsc::UnboundedSender<super::CallCommand>,
}

/// How many ended calls [`PlacedCalls`] remembers for `GET /api/v1/calls/{id}`.
const ENDED_KEPT: usize = 1000;

/// Calls Careline placed, while they run and for a while after they end (the last
/// [`ENDED_KEPT`]): what `GET` and `DELETE /api/v1/calls/{id}` see. Ids and states only:
/// neither the number nor what the flow collected.
#[derive(Default)]
pub struct PlacedCalls {
    live: dashmap::DashMap<String, Live>,
    ended: std::sync::Mutex<std::collections::VecDeque<(String, CallOutcome)>>,
}

/// A placed call as the API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlacedView {
    pub call_id: String,
    /// `dialing`, `ringing`, `answered` or `ended`.
    pub state: String,
    /// How it ended, once it has (`answered`, `busy`, `no_answer`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    /// Why it ended (`server_bye`, `caller_bye`, `busy`, ...), once it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub talk_time_secs: Option<u64>,
}

impl PlacedCalls {
    pub(super) fn dialing(
        &self,
        call_id: &str,
        commands: tokio::sync::mpsc::UnboundedSender<super::CallCommand>,
    ) {
        let live = Live {
            state: PlacedState::Dialing,
            commands,
        };
        self.live.insert(call_id.to_string(), live);
    }

    pub(super) fn set(&self, call_id: &str, state: PlacedState) {
        if let Some(mut live) = self.live.get_mut(call_id) {
            live.state = state;
        }
    }

    pub(super) fn ended(&self, outcome: &CallOutcome) {
        self.live.remove(&outcome.call_id);
        let mut ended = self
            .ended
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if ended.len() >= ENDED_KEPT {
            ended.pop_front();
        }
        ended.push_back((outcome.call_id.clone(), outcome.clone()));
    }

    /// The call, live or among the last ended.
    pub fn view(&self, call_id: &str) -> Option<PlacedView> {
        if let Some(live) = self.live.get(call_id) {
            return Some(PlacedView {
                call_id: call_id.to_string(),
                state: live.state.as_str().into(),
                outcome: None,
                cause: None,
                talk_time_secs: None,
            });
        }
        let ended = self
            .ended
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (_, o) = ended.iter().rev().find(|(id, _)| id == call_id)?;
        Some(PlacedView {
            call_id: call_id.to_string(),
            state: "ended".into(),
            outcome: Some(if o.answered { "answered" } else { o.cause }),
            cause: Some(o.cause),
            talk_time_secs: Some(o.talk_time.as_secs()),
        })
    }

    /// Hands a command to a live placed call (answered or not); false when none runs.
    pub fn send(&self, call_id: &str, command: super::CallCommand) -> bool {
        self.live
            .get(call_id)
            .is_some_and(|live| live.commands.send(command).is_ok())
    }

    /// Hangs up every placed call still running (shutdown).
    pub fn hang_up_all(&self, cause: &'static str) {
        for live in self.live.iter() {
            let _ = live.commands.send(super::CallCommand::Hangup { cause });
        }
    }

    /// Hangs a live placed call up (CANCEL while it rings, BYE once answered); false when
    /// no such call runs.
    pub fn hang_up(&self, call_id: &str, cause: &'static str) -> bool {
        self.live.get(call_id).is_some_and(|live| {
            live.commands
                .send(super::CallCommand::Hangup { cause })
                .is_ok()
        })
    }
}

/// A call on its way: its id now, its outcome when it ends.
pub struct Placed {
    pub call_id: String,
    pub outcome: oneshot::Receiver<CallOutcome>,
}

/// The number as it is dialed, or `None` if it is not a phone number (the flow layer's
/// rule, which UpdateContactCallbackNumber checks with too).
pub use crate::flow::attributes::dialable as normalize_number;

/// Places a call: checks it, sends the INVITE, and runs the call in its own task. Answers once
/// the INVITE is out (or with why it could not go out); the outcome follows on
/// [`Placed::outcome`].
pub async fn place(svc: &Arc<CallServices>, call: OutboundCall) -> Result<Placed, DialError> {
    place_with(svc, call, None).await
}

/// [`place`], with an agent's leg waiting for the patient (a queued callback: see
/// [`super::callback`]).
pub(super) async fn place_with(
    svc: &Arc<CallServices>,
    call: OutboundCall,
    agent: Option<super::answer::AgentOffer>,
) -> Result<Placed, DialError> {
    let number = normalize_number(&call.number).ok_or(DialError::BadNumber)?;
    let trunk = svc.trunks.pick(call.trunk.as_deref())?;
    let flow = match &call.flow {
        Some(name) => svc
            .flows
            .env
            .catalog
            .get(name)
            .cloned()
            .ok_or_else(|| DialError::UnknownFlow(name.clone()))?,
        None => svc.flows.flow_for("").ok_or(DialError::NoFlow)?,
    };
    let call_id = call
        .call_id
        .clone()
        .unwrap_or_else(|| format!("out-{:032x}", rand::random::<u128>()));
    let (sent_tx, sent_rx) = oneshot::channel();
    let svc = svc.clone();
    let span = info_span!("call", id = %call_id, trunk = %trunk.name, outbound = true);
    let id = call_id.clone();
    tokio::spawn(
        async move {
            let place = match trunk.take_place() {
                Some(place) => place,
                None => {
                    let _ = sent_tx.send(Err(DialError::TrunkBusy(trunk.name.clone())));
                    return;
                }
            };
            let wait = trunk.wait_for_turn(Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            if svc.draining.load(Ordering::Acquire) {
                let _ = sent_tx.send(Err(DialError::Draining));
                return;
            }
            let Some(admission) = svc.table.try_admit(svc.settings.max_calls) else {
                let _ = sent_tx.send(Err(DialError::AtCapacity));
                return;
            };
            let sockets = match svc.media.reserve(svc.sip.udp_addr.ip()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = sent_tx.send(Err(DialError::NoMediaPort));
                    return;
                }
            };
            let (dialog, local) = match invite(&svc, &trunk, &id, &number, sockets.port).await {
                Ok(sent) => sent,
                Err(e) => {
                    let _ = sent_tx.send(Err(e));
                    return;
                }
            };
            let (outcome_tx, outcome_rx) = oneshot::channel();
            let placed = Placed {
                call_id: id.clone(),
                outcome: outcome_rx,
            };
            if sent_tx.send(Ok(placed)).is_err() {
                // Whoever placed it is gone; the call goes on (its outcome is logged).
            }
            info!(flow = %flow.name, "calling out");
            let mut attributes = call.attributes;
            attributes.retain(|k, _| !k.is_empty());
            let contact = ContactData {
                contact_id: id.as_str().into(),
                customer_address: number,
                system_address: trunk.caller_id.clone(),
                attributes,
                outbound: true,
                queue: call.queue.map(Into::into),
                ..ContactData::default()
            };
            let start = Start {
                call_id: id,
                flow,
                contact,
                signaling: Signaling::Placed(dialog),
                media: Pending::Placed { sockets },
                codec: svc.settings.codecs.first().copied().unwrap_or(Codec::Pcmu),
                local: Some(local),
                connecting: None,
                dial_timeout: Some(trunk.ring_timeout),
                outcome: Some(outcome_tx),
                agent,
            };
            super::task::run_call(&svc, admission, start).await;
            drop(place);
        }
        .instrument(span),
    );
    sent_rx
        .await
        .unwrap_or_else(|_| Err(DialError::Sip("the call's task ended".into())))
}

/// Sends the INVITE for `number` through `trunk`, offering media on `port` (the address
/// that routes to the trunk, SDES keys when it is TLS), spaced by the trunk's pacing.
async fn invite(
    svc: &Arc<CallServices>,
    trunk: &Trunk,
    call_id: &str,
    number: &str,
    port: u16,
) -> Result<(crate::sip::outbound::OutgoingCall, sdp::LocalMedia), DialError> {
    let proxy = trunk.proxy.to_ascii_lowercase();
    let tls = proxy.starts_with("sips:") || proxy.contains("transport=tls");
    let address = svc
        .sip
        .media_address_for(trunk.proxy_ip.unwrap_or(svc.sip.udp_addr.ip()));
    let transport = if tls { "tls" } else { "udp" };
    let local = super::admit::local_media(&svc.settings, address, port, transport);
    let gate = trunk.gate().await;
    let dialed = svc.sip.dial(Dial {
        call_id: call_id.to_string(),
        proxy: trunk.proxy.clone(),
        number: number.to_string(),
        caller_id: trunk.caller_id.clone(),
        offer: sdp::offer(&local),
        credential: trunk.credential.clone(),
    });
    drop(gate);
    let dialog = dialed.map_err(|e| DialError::Sip(e.to_string()))?;
    Ok((dialog, local))
}

/// An outside number ringing for a call already running (an agent's transfer): the dialog,
/// the media ports it offered, and its place under the trunk's limits (held while it lasts).
pub(crate) struct RingOut {
    pub phone: crate::sip::outbound::OutgoingCall,
    pub sockets: crate::media::ports::RtpSockets,
    pub local: crate::sip::sdp::LocalMedia,
    pub ring_timeout: Duration,
    _place: TrunkPlace,
}

/// Rings `number` through the only trunk (its limits and pacing kept, as for a placed call),
/// for a leg of a call that is already running: no flow, no call of its own.
pub(crate) async fn ring_out(svc: &Arc<CallServices>, number: &str) -> Result<RingOut, DialError> {
    let number = normalize_number(number).ok_or(DialError::BadNumber)?;
    let trunk = svc.trunks.pick(svc.desk.callback_trunk.as_deref())?;
    let place = trunk
        .take_place()
        .ok_or_else(|| DialError::TrunkBusy(trunk.name.clone()))?;
    let wait = trunk.wait_for_turn(Instant::now());
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let sockets = svc
        .media
        .reserve(svc.sip.udp_addr.ip())
        .map_err(|_| DialError::NoMediaPort)?;
    let call_id = format!("xfer-{:032x}", rand::random::<u128>());
    let (phone, local) = invite(svc, &trunk, &call_id, &number, sockets.port).await?;
    Ok(RingOut {
        phone,
        sockets,
        local,
        ring_timeout: trunk.ring_timeout,
        _place: place,
    })
}

/// An outside number that answered, its audio on the media clock: the dialog (hang it up to
/// end), the leg, and the trunk place it holds while it lasts.
pub(crate) struct AnsweredPhone {
    pub phone: crate::sip::outbound::OutgoingCall,
    pub leg: crate::media::engine::LegHandle,
    pub codec: crate::media::codec::Codec,
    _place: TrunkPlace,
}

impl RingOut {
    /// Waits for the number to answer (within the trunk's ring timeout) and puts its audio on
    /// the media clock; the cause (`busy`, `no_answer`, ...) when it does not.
    pub(crate) async fn answered(self, svc: &CallServices) -> Result<AnsweredPhone, &'static str> {
        let RingOut {
            mut phone,
            sockets,
            local,
            ring_timeout,
            _place,
        } = self;
        let answered = tokio::time::timeout(ring_timeout, async {
            loop {
                match phone.next_signal().await {
                    Some(crate::sip::CallSignal::Answered(answer)) => return Ok(answer),
                    Some(crate::sip::CallSignal::Refused(code)) => {
                        return Err(super::core::dial_cause(code));
                    }
                    None => return Err("unreachable"),
                    Some(_) => {}
                }
            }
        })
        .await;
        let answer = match answered {
            Ok(Ok(answer)) => answer,
            Ok(Err(cause)) => return Err(cause),
            Err(_) => {
                phone.hangup().await;
                return Err("no_answer");
            }
        };
        let negotiated =
            match crate::sip::sdp::read_answer(&String::from_utf8_lossy(&answer), &local) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "the outside number answered with unusable SDP");
                    phone.hangup().await;
                    return Err("bad_answer");
                }
            };
        let params = crate::media::leg::LegParams::from(&negotiated);
        let opts = svc.settings.leg_options();
        match svc.media.open(sockets, params, opts) {
            Ok(leg) => Ok(AnsweredPhone {
                phone,
                leg,
                codec: negotiated.codec,
                _place,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "could not open the answered number's media");
                phone.hangup().await;
                Err("error")
            }
        }
    }
}

/// What answering-machine detection on a placed call's leg means for its flow
/// (CheckOutboundCallStatus): a person or not sure at once; a machine once its greeting is
/// over, so that a message the flow leaves is recorded whole.
pub(super) fn call_progress(
    event: crate::media::amd::AmdEvent,
    metrics: &crate::metrics::Metrics,
) -> Option<super::core::Input> {
    use crate::flow::interpreter::CallProgress;
    use crate::media::amd::{AmdEvent, Verdict};
    let progress = match event {
        AmdEvent::Verdict(Verdict::Human { reason }) => {
            info!(reason, "a person answered");
            metrics.answered_by("person");
            CallProgress::CallAnswered
        }
        AmdEvent::Verdict(Verdict::NotSure) => {
            info!("who answered could not be told");
            metrics.answered_by("not_sure");
            CallProgress::NotDetected
        }
        AmdEvent::Verdict(Verdict::Machine { reason }) => {
            info!(
                reason,
                "an answering machine answered: waiting for its greeting to end"
            );
            metrics.answered_by("machine");
            return None;
        }
        AmdEvent::GreetingEnded => {
            metrics.voicemail_greeting("silence");
            CallProgress::VoicemailNoBeep
        }
        AmdEvent::Beep => {
            info!("the answering machine beeped: leaving the message");
            metrics.voicemail_greeting("beep");
            CallProgress::VoicemailBeep
        }
    };
    Some(super::core::Input::CallProgress(progress))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placed_calls_are_seen_while_they_run_and_after_they_end() {
        let placed = PlacedCalls::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        placed.dialing("out-1", tx);
        assert_eq!(placed.view("out-1").unwrap().state, "dialing");
        placed.set("out-1", PlacedState::Ringing);
        assert_eq!(placed.view("out-1").unwrap().state, "ringing");
        assert!(placed.hang_up("out-1", "api_hangup"));
        assert!(matches!(
            rx.try_recv(),
            Ok(super::super::CallCommand::Hangup {
                cause: "api_hangup"
            })
        ));
        placed.ended(&CallOutcome {
            call_id: "out-1".into(),
            cause: "no_answer",
            answered: false,
            talk_time: Duration::ZERO,
            attributes: HashMap::from([("wellbeing".into(), "good".into())]),
        });
        let v = placed.view("out-1").unwrap();
        assert_eq!((v.state.as_str(), v.outcome), ("ended", Some("no_answer")));
        assert!(!placed.hang_up("out-1", "api_hangup"), "over");
        assert!(
            !serde_json::to_string(&v).unwrap().contains("wellbeing"),
            "no answers in the view"
        );
        for n in 0..ENDED_KEPT {
            placed.ended(&CallOutcome {
                call_id: format!("out-x{n}"),
                cause: "busy",
                answered: false,
                talk_time: Duration::ZERO,
                attributes: HashMap::new(),
            });
        }
        assert_eq!(placed.view("out-1"), None, "the oldest is forgotten");
        assert!(placed.view("out-x0").is_some());
    }

    #[test]
    fn the_proxy_s_address_is_read_when_it_is_one() {
        assert_eq!(proxy_ip("sip:127.0.0.1:5070"), Some([127, 0, 0, 1].into()));
        assert_eq!(
            proxy_ip("sip:198.51.100.7;transport=tcp"),
            Some([198, 51, 100, 7].into())
        );
        assert_eq!(
            proxy_ip("sips:[2001:db8::1]:5061"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(proxy_ip("sip:trunk.example.net:5060"), None);
    }

    #[test]
    fn numbers_keep_their_digits_and_a_leading_plus() {
        assert_eq!(
            normalize_number("+1 (555) 010-0199").as_deref(),
            Some("+15550100199")
        );
        assert_eq!(
            normalize_number("03.1234.5678").as_deref(),
            Some("0312345678")
        );
        assert_eq!(normalize_number("5").as_deref(), Some("5"));
        for bad in [
            "",
            "+",
            "1+2",
            "sip:bob@x",
            "12;user=phone",
            "12a",
            &"9".repeat(33),
        ] {
            assert_eq!(normalize_number(bad), None, "{bad:?}");
        }
    }

    fn trunk(max_calls: u32, cps: f64) -> Arc<Trunk> {
        let mut config = BTreeMap::new();
        config.insert(
            "carrier".to_string(),
            TrunkConfig {
                proxy: Some("sip:127.0.0.1:5070".into()),
                max_calls,
                calls_per_second: cps,
                ..TrunkConfig::default()
            },
        );
        Trunk::from_config(&config, |_| None)
            .unwrap()
            .pick(None)
            .unwrap()
    }

    #[test]
    fn a_trunk_takes_at_most_max_calls_and_gives_places_back() {
        let t = trunk(2, 0.0);
        let a = t.take_place().unwrap();
        let _b = t.take_place().unwrap();
        assert!(t.take_place().is_none());
        drop(a);
        assert_eq!(t.active(), 1);
        assert!(t.take_place().is_some());
        let unlimited = trunk(0, 0.0);
        let held: Vec<_> = (0..100).map(|_| unlimited.take_place().unwrap()).collect();
        assert_eq!(unlimited.active(), held.len());
    }

    #[test]
    fn calls_per_second_spaces_the_calls_out() {
        let t = trunk(0, 4.0);
        let now = Instant::now();
        let waits: Vec<_> = (0..4).map(|_| t.wait_for_turn(now)).collect();
        assert_eq!(
            waits,
            [0, 252_500, 505_000, 757_500].map(Duration::from_micros),
            "a burst of four at 4/s goes out over a second and a guard of 10 ms"
        );
        let later = now + Duration::from_secs(10);
        assert_eq!(
            t.wait_for_turn(later),
            Duration::ZERO,
            "no debt carried over idle time"
        );
        assert_eq!(trunk(0, 0.0).wait_for_turn(now), Duration::ZERO);
    }

    #[test]
    fn the_trunk_is_named_or_the_only_one() {
        let mut config = BTreeMap::new();
        let outbound = TrunkConfig {
            proxy: Some("sip:127.0.0.1:5070".into()),
            ..TrunkConfig::default()
        };
        let inbound_only = TrunkConfig {
            addresses: vec!["198.51.100.0/24".parse().unwrap()],
            ..TrunkConfig::default()
        };
        config.insert("a".to_string(), outbound.clone());
        config.insert("in".to_string(), inbound_only);
        let trunks = Trunk::from_config(&config, |_| None).unwrap();
        assert_eq!(
            trunks.pick(None).unwrap().name,
            "a",
            "inbound-only trunks do not count"
        );
        assert!(matches!(
            trunks.pick(Some("in")),
            Err(DialError::UnknownTrunk(_))
        ));
        config.insert("b".to_string(), outbound);
        let trunks = Trunk::from_config(&config, |_| None).unwrap();
        assert!(matches!(trunks.pick(None), Err(DialError::WhichTrunk)));
        assert_eq!(trunks.pick(Some("b")).unwrap().name, "b");
        assert!(matches!(
            Trunks::default().pick(None),
            Err(DialError::NoTrunk)
        ));
    }

    #[test]
    fn a_password_comes_from_the_environment_variable_named() {
        let mut config = BTreeMap::new();
        config.insert(
            "carrier".to_string(),
            TrunkConfig {
                proxy: Some("sip:127.0.0.1:5070".into()),
                username: Some("clinic".into()),
                password_env: Some("CARRIER_PASSWORD".into()),
                ..TrunkConfig::default()
            },
        );
        let err = Trunk::from_config(&config, |_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sip.trunks.carrier.password_env names CARRIER_PASSWORD, which is not set"
        );
        let trunks = Trunk::from_config(&config, |v| {
            (v == "CARRIER_PASSWORD").then(|| "s3cret".to_string())
        })
        .unwrap();
        let t = trunks.pick(None).unwrap();
        assert_eq!(t.credential, Some(("clinic".into(), "s3cret".into())));
        assert!(
            !format!("{t:?}").contains("s3cret"),
            "Debug leaves the password out"
        );
    }
}
