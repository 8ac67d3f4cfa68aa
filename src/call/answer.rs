//! An agent answers a queued call from the browser: the agent's WHIP offer takes either the
//! contact routing offered them ([`Pick::Offered`], the usual way: see `routing::desk`) or
//! the one that has waited longest in a queue they pick ([`Pick::Oldest`]); a browser leg is
//! answered for the agent, and once that leg is connected the caller's call core bridges the
//! two (see [`super::core::Phase`]'s `Offered` and `Bridged`). The caller keeps hearing the
//! hold flow until the agent is there, and keeps their place if the agent never connects.
//!
//! An agent's console that reloads mid-call (or loses its network for a moment) takes the
//! call back with a new offer on its session ([`reconnect_agent`]), the caller on hold for up
//! to `[webrtc] reconnect_grace_secs` meanwhile ([`Input::AgentLost`]).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;
use tracing::{info, warn};

use super::core::{CallCore, Input, Phase};
use super::task::Shell;
use super::whip::ReconnectRefused;
use super::{CallCommand, CallServices};
use crate::media::engine::{LegHandle, LegIds};
use crate::media::leg::{LegCommand, LegEvent};
use crate::media::ports::RtpSockets;
use crate::media::webrtc::{WebRtcError, WebRtcTransport};

/// A queued call an agent took: the agent's WHIP session and SDP answer.
#[derive(Debug)]
pub struct Taken {
    /// The session's id in its resource URL (128 random bits, hex): the agent's capability
    /// to hang up (`DELETE /api/v1/calls/whip/{resource}`); never logged.
    pub resource: String,
    pub answer: String,
    /// The call the agent is joined to (for the screen-pop and the call's API).
    pub call_id: String,
}

/// Why no call was taken; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("no queue is named `{0}`")]
    UnknownQueue(String),
    #[error("nobody is waiting in queue `{0}`")]
    NobodyWaiting(String),
    #[error("call {0} is not offered to you (it rang out, or was answered or ended)")]
    NotOffered(String),
    #[error("Careline is shutting down")]
    Draining,
    #[error("no media port free")]
    NoPorts,
    #[error(transparent)]
    Offer(#[from] WebRtcError),
}

/// What the agent's leg speaks.
pub enum AgentMedia {
    /// A browser: the peer connection that answered its offer (connected once DTLS is up).
    WebRtc {
        peer: Box<WebRtcTransport>,
        params: crate::media::leg::LegParams,
        ids: LegIds,
        /// What a reconnect (a reloaded page) needs.
        browser: super::whip::Browser,
    },
    /// A phone (a SIP agent): what its answer negotiated; connected as it answered.
    Rtp {
        params: crate::media::leg::LegParams,
    },
}

/// The agent's leg, handed to the call it joins (`CallCommand::Agent`); `accepted` says
/// whether the call took it (it is queued and still there).
pub struct AgentOffer {
    pub(super) sockets: RtpSockets,
    pub(super) media: AgentMedia,
    pub(super) session: String,
    /// The agent (user name), told to routing when the contact ends.
    pub(super) agent: String,
    /// The queued callback the agent took (its id), whose call this leg waits on.
    pub(super) callback: Option<String>,
    pub(super) accepted: oneshot::Sender<bool>,
    /// Told when the call lets the leg go (a phone agent then hangs its phone up).
    pub(super) released: Option<oneshot::Sender<()>>,
}

impl AgentOffer {
    /// A phone's leg: connected from the start.
    pub(super) fn is_phone(&self) -> bool {
        matches!(self.media, AgentMedia::Rtp { .. })
    }
}

impl fmt::Debug for AgentOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The session id is a capability: never printed.
        f.write_str("AgentOffer")
    }
}

/// Where an agent sends the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTo {
    /// A configured queue: the caller waits there, hearing its hold flow.
    Queue(String),
    /// An outside number, rung through the trunk: the caller hears music until it answers,
    /// and goes back to their queue if it does not. PHI-free but never logged all the same.
    Number(String),
    /// Another agent at the desk (a user name): the caller waits in their queue, offered to
    /// that agent alone, first; back to the queue's agents if that agent does not take it.
    Agent(String),
}

/// Why an agent's transfer was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransferRefused {
    #[error("the caller is not joined to you")]
    NotJoined,
    #[error("no such queue")]
    UnknownQueue,
    #[error("that queue is full")]
    QueueFull,
    #[error("not a phone number: 1 to 32 digits, optionally a leading +")]
    BadNumber,
    #[error("no trunk to call out through (configure [sip.trunks.NAME] proxy)")]
    NoTrunk,
    #[error("the trunk cannot take another call now")]
    TrunkBusy,
    #[error("that agent is not at the desk")]
    AgentAway,
    #[error("a consultation is under way already")]
    Consulting,
    #[error("no consultation is under way (or its party has not answered yet)")]
    NotConsulting,
}

impl From<super::dial::DialError> for TransferRefused {
    fn from(e: super::dial::DialError) -> TransferRefused {
        use super::dial::DialError;
        match e {
            DialError::BadNumber => TransferRefused::BadNumber,
            DialError::NoTrunk | DialError::WhichTrunk | DialError::UnknownTrunk(_) => {
                TransferRefused::NoTrunk
            }
            _ => TransferRefused::TrunkBusy,
        }
    }
}

/// What an agent does to the call they answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentControl {
    Hold,
    Resume,
    Mute,
    Unmute,
}

impl AgentControl {
    /// From a URL's last segment.
    pub fn parse(s: &str) -> Option<AgentControl> {
        Some(match s {
            "hold" => AgentControl::Hold,
            "resume" => AgentControl::Resume,
            "mute" => AgentControl::Mute,
            "unmute" => AgentControl::Unmute,
            _ => return None,
        })
    }

    fn input(self) -> Input {
        match self {
            AgentControl::Hold => Input::Hold(true),
            AgentControl::Resume => Input::Hold(false),
            AgentControl::Mute => Input::Mute(true),
            AgentControl::Unmute => Input::Mute(false),
        }
    }
}

/// The agent's side of a call, held by the call's shell.
pub(super) struct AgentLeg {
    pub leg: LegHandle,
    pub session: String,
    /// The agent (user name); empty for an outside party who took the agent's place.
    pub agent: String,
    /// Joined with the caller: its end starts the agent's wrap-up.
    pub bridged: bool,
    /// A queued callback's agent: unless bridged, routing hears of the end from the
    /// callback's dialer ([`super::callback`]), which knows whether to try again.
    pub callback: Option<String>,
    /// Told when the leg is let go.
    pub released: Option<oneshot::Sender<()>>,
    /// A browser's leg: how it reconnects after a reload, and what it speaks (offered
    /// first again). None: a phone.
    pub browser: Option<(super::whip::Browser, crate::media::codec::Codec)>,
}

/// Agents' WHIP sessions: session id to the call it joined, so that the agent's `DELETE`
/// reaches that call.
#[derive(Debug, Default)]
pub struct AgentSessions {
    by_session: dashmap::DashMap<String, String>,
}

impl AgentSessions {
    /// The call agent session `session` is joined to.
    pub fn call_of(&self, session: &str) -> Option<String> {
        self.by_session.get(session).map(|c| c.clone())
    }

    pub(super) fn insert(&self, session: String, call_id: String) {
        self.by_session.insert(session, call_id);
    }

    pub(super) fn remove(&self, session: &str) {
        self.by_session.remove(session);
    }
}

/// An agent's console is back after a reload (or a lost network) with a new peer connection
/// for the call they talk on (`POST SESSION/reconnect` on their session): `offer` is its SDP
/// offer, from `source`. Answers the SDP answer; the caller, on hold since the agent's
/// connection went, is joined with them again once it is up.
pub async fn reconnect_agent(
    svc: &CallServices,
    session: &str,
    offer: String,
    source: IpAddr,
) -> Result<String, ReconnectRefused> {
    let call = svc
        .agent_sessions
        .call_of(session)
        .ok_or(ReconnectRefused::Gone)?;
    let (reply, answer) = oneshot::channel();
    let command = CallCommand::AgentReconnect {
        session: session.to_string(),
        offer,
        source,
        reply,
    };
    if !svc.table.send(&call, command) {
        return Err(ReconnectRefused::Gone);
    }
    answer.await.unwrap_or(Err(ReconnectRefused::Gone))
}

/// Which queued call an agent takes.
#[derive(Debug, Clone, Copy)]
pub enum Pick<'a> {
    /// The contact routing rings this agent with.
    Offered { call_id: &'a str },
    /// The contact that has waited longest in this queue.
    Oldest { queue: &'a str },
}

/// How many waiting contacts an agent's offer is tried on before giving up (each one that
/// refuses has just left its queue or been bridged meanwhile).
const TRIES: usize = 3;

/// `agent`, whose browser sent `offer` from `remote`, takes the queued call `pick` names:
/// answers the offer and hands the agent's leg to the caller's call.
pub async fn take(
    svc: Arc<CallServices>,
    agent: &str,
    pick: Pick<'_>,
    offer: &str,
    remote: IpAddr,
) -> Result<Taken, AnswerError> {
    if svc.draining.load(std::sync::atomic::Ordering::Acquire) {
        return Err(AnswerError::Draining);
    }
    let queue = match pick {
        Pick::Offered { call_id } => {
            return take_offered(&svc, agent, call_id, offer, remote).await;
        }
        Pick::Oldest { queue } => queue,
    };
    for _ in 0..TRIES {
        let Some(call_id) = svc
            .flows
            .queues
            .claim_oldest(queue)
            .map_err(|_| AnswerError::UnknownQueue(queue.to_string()))?
        else {
            break;
        };
        // An agent at the desk who picks a call is on it: routing offers them nothing more.
        svc.desk.took(agent, &call_id, queue);
        match join(&svc, agent, call_id, offer, remote).await {
            Ok(Some(taken)) => return Ok(taken),
            Ok(None) => svc.desk.released(agent), // the call ended meanwhile
            Err(e) => {
                svc.desk.released(agent);
                return Err(e);
            }
        }
    }
    Err(AnswerError::NobodyWaiting(queue.to_string()))
}

/// `agent` accepts the call routing rings them with.
async fn take_offered(
    svc: &Arc<CallServices>,
    agent: &str,
    call_id: &str,
    offer: &str,
    remote: IpAddr,
) -> Result<Taken, AnswerError> {
    let answered = svc
        .desk
        .accept(agent, call_id)
        .map_err(|_| AnswerError::NotOffered(call_id.to_string()))?;
    if answered.callback {
        // Nobody is on the line yet: the patient is called with the agent's leg on it.
        return super::callback::take(svc, agent, call_id, offer, remote).await;
    }
    let taken = if svc.flows.queues.claim(call_id) {
        join(svc, agent, call_id.into(), offer, remote).await
    } else {
        Ok(None)
    };
    match taken {
        Ok(Some(taken)) => Ok(taken),
        Ok(None) => {
            svc.desk.released(agent);
            Err(AnswerError::NotOffered(call_id.to_string()))
        }
        Err(e) => {
            svc.desk.released(agent);
            Err(e)
        }
    }
}

/// Answers the agent's offer and hands their leg to claimed call `call_id`; None when that
/// call is no longer there to take it.
async fn join(
    svc: &Arc<CallServices>,
    agent: &str,
    call_id: Arc<str>,
    offer: &str,
    remote: IpAddr,
) -> Result<Option<Taken>, AnswerError> {
    let (offer, taken, browser) = browser_leg(svc, agent, offer, remote, None)?;
    if !svc
        .table
        .send(&call_id, CallCommand::Agent(Box::new(offer)))
    {
        return Ok(None); // the call ended meanwhile (its place went with it)
    }
    if !taken.await.unwrap_or(false) {
        return Ok(None);
    }
    info!(call = %call_id, "an agent answered a queued call");
    Ok(Some(Taken {
        resource: browser.resource,
        answer: browser.answer,
        call_id: call_id.to_string(),
    }))
}

/// What the agent's browser gets back: its WHIP session and the SDP answer.
pub(super) struct BrowserAnswer {
    pub resource: String,
    pub answer: String,
}

/// Answers an agent's browser `offer` from `remote`: their leg, ready to hand to a call
/// (with whether the call took it, once handed), and what the browser gets back.
pub(super) fn browser_leg(
    svc: &Arc<CallServices>,
    agent: &str,
    offer: &str,
    remote: IpAddr,
    callback: Option<String>,
) -> Result<(AgentOffer, oneshot::Receiver<bool>, BrowserAnswer), AnswerError> {
    let super::whip::BrowserMedia {
        sockets,
        local,
        ids,
        answered,
    } = super::whip::answer_browser(svc, offer, remote).map_err(|e| match e {
        super::whip::BrowserMediaError::NoPorts => AnswerError::NoPorts,
        super::whip::BrowserMediaError::Offer(e) => AnswerError::Offer(e),
    })?;
    let resource = format!("{:032x}", rand::random::<u128>());
    let (accepted, taken) = oneshot::channel();
    let leg = AgentOffer {
        sockets,
        media: AgentMedia::WebRtc {
            peer: Box::new(answered.transport),
            params: answered.params,
            browser: super::whip::Browser::new(remote, local, ids.ssrc),
            ids,
        },
        session: resource.clone(),
        agent: agent.to_string(),
        callback,
        accepted,
        released: None,
    };
    let browser = BrowserAnswer {
        resource,
        answer: answered.answer,
    };
    Ok((leg, taken, browser))
}

/// The agent's leg's next event; pending while there is no agent.
pub(super) async fn agent_event(agent: &mut Option<AgentLeg>) -> Option<LegEvent> {
    match agent {
        Some(agent) => agent.leg.next_event().await,
        None => std::future::pending().await,
    }
}

impl Shell {
    /// What an event of the agent's leg does to the call. An agent whose connection is lost
    /// while talking (a reloaded or closed tab, a lost network, a phone gone silent: not a
    /// hang-up) does not take the caller with them: a browser may come back within the
    /// grace (`reconnect_agent`), the caller on hold meanwhile; after it, or for a phone at
    /// once, the caller goes back to the front of their queue for the next agent, and only
    /// with no queue to take them does the call end as if the agent had hung up (see
    /// [`Input::AgentLost`]).
    ///
    /// A browser silent for a few seconds (ICE consent missing: [`LegEvent::Disconnected`])
    /// starts the same wait, as for a caller: a reloaded page may not say goodbye, and one
    /// that comes back by itself ([`LegEvent::Connected`]) takes the caller off hold.
    pub(super) fn agent_leg_event(&self, event: Option<LegEvent>) -> Option<Input> {
        let browser_talking = self
            .agent
            .as_ref()
            .is_some_and(|a| a.browser.is_some() && a.bridged);
        match event {
            Some(LegEvent::ConnectionLost | LegEvent::Disconnected) if browser_talking => {
                self.svc.metrics.browser_connection("agent_lost");
                Some(Input::AgentLost { may_return: true })
            }
            Some(LegEvent::ConnectionLost | LegEvent::RtpTimeout) | None => {
                Some(Input::AgentLost { may_return: false })
            }
            other => Self::agent_input(other),
        }
    }

    /// What an event of the agent's leg means to the call (its keys and plays mean nothing).
    pub(super) fn agent_input(event: Option<LegEvent>) -> Option<Input> {
        match event {
            Some(LegEvent::Connected) => Some(Input::AgentConnected),
            Some(LegEvent::ConnectionLost | LegEvent::RtpTimeout) | None => Some(Input::AgentLeft),
            Some(_) => None,
        }
    }

    /// An agent took this call from its queue: their leg goes on the media clock, and the
    /// core hears of it, if the call still waits in its queue.
    pub(super) fn offer_agent(&mut self, core: &CallCore, offer: AgentOffer) -> Option<Input> {
        let transfer = core.phase() == Phase::Offered && core.transferring_out();
        if (core.phase() != Phase::Queued && !transfer) || self.agent.is_some() {
            let _ = offer.accepted.send(false);
            return None;
        }
        let agent = offer.agent.clone();
        self.open_agent(offer)
            .then_some(Input::AgentOffered { agent })
    }

    /// Puts the agent's leg on the media clock (false: it could not be opened) and tells
    /// whoever handed it over.
    pub(super) fn open_agent(&mut self, offer: AgentOffer) -> bool {
        let AgentOffer {
            sockets,
            media,
            session,
            agent,
            callback,
            accepted,
            released,
        } = offer;
        let opts = self.svc.settings.leg_options();
        let mut reconnect = None;
        let opened = match media {
            AgentMedia::WebRtc {
                peer,
                params,
                ids,
                browser,
            } => {
                reconnect = Some((browser, params.codec));
                self.svc
                    .media
                    .open_webrtc(sockets, *peer, params, opts, ids)
            }
            AgentMedia::Rtp { params } => self.svc.media.open(sockets, params, opts),
        };
        match opened {
            Ok(leg) => {
                self.svc
                    .agent_sessions
                    .insert(session.clone(), self.call_id.clone());
                self.agent = Some(AgentLeg {
                    leg,
                    session,
                    agent,
                    bridged: false,
                    callback,
                    released,
                    browser: reconnect,
                });
                let _ = accepted.send(true);
                true
            }
            Err(e) => {
                warn!(error = %e, "could not open the agent's media");
                let _ = accepted.send(false);
                false
            }
        }
    }

    /// Answers the agent's reconnecting console (see [`reconnect_agent`]) with a new peer
    /// connection for their leg; the core holds the caller until it is up (as for a lost
    /// connection). Only a browser agent joined with the caller reconnects: one still
    /// connecting has its first answer to finish with.
    pub(super) fn reconnect_agent(
        &mut self,
        core: &mut CallCore,
        session: &str,
        offer: &str,
        source: IpAddr,
    ) -> Result<String, ReconnectRefused> {
        let Some(AgentLeg {
            leg,
            bridged,
            browser,
            ..
        }) = self.agent.as_mut().filter(|a| a.session == session)
        else {
            return Err(ReconnectRefused::Gone);
        };
        let result = match browser {
            Some((browser, codec)) if *bridged => {
                browser.reconnect(&self.svc, leg, codec, offer, source)
            }
            _ => Err(ReconnectRefused::NotConnected),
        };
        match &result {
            Ok(_) => {
                info!("the agent reconnected with a new connection");
                self.svc.metrics.browser_connection("agent_reconnected");
                core.handle(Input::AgentLost { may_return: true }, super::task::now());
            }
            Err(e) => {
                info!(why = %e, "an agent's reconnect was refused");
                self.svc.metrics.browser_connection("refused");
            }
        }
        result
    }

    /// The agent's hold, resume, mute or unmute: taken while they talk with the caller.
    /// The answer goes back once the media leg has its commands, so what the agent does next
    /// (speak after mute, say) meets the new state.
    pub(super) async fn agent_control(
        &mut self,
        core: &mut CallCore,
        op: AgentControl,
        reply: oneshot::Sender<bool>,
    ) {
        let theirs = matches!(core.phase(), Phase::Bridged | Phase::Held);
        if theirs {
            core.handle(op.input(), super::task::now());
            self.carry_out(core).await;
        }
        let _ = reply.send(theirs);
    }

    /// The agent sends the caller to a queue or an outside number (a blind transfer); the
    /// agent is released to wrap up. To a queue: the caller takes a place there (at the
    /// urgency the flow gave them) and hears its hold flow. To a number: it is rung through
    /// the trunk while the caller hears music (see [`Shell::transfer_out`]).
    pub(super) async fn transfer(
        &mut self,
        core: &mut CallCore,
        to: TransferTo,
    ) -> Result<(), TransferRefused> {
        match to {
            TransferTo::Queue(queue) => {
                let priority = core.contact().priority;
                self.requeue(core, &queue, priority).await
            }
            TransferTo::Number(number) => self.transfer_out(core, &number).await,
            TransferTo::Agent(agent) => {
                if !matches!(core.phase(), Phase::Bridged | Phase::Held) {
                    return Err(TransferRefused::NotJoined);
                }
                if !self.svc.desk.at_desk(&agent) {
                    return Err(TransferRefused::AgentAway);
                }
                let Some(queue) = core.contact().queue.clone() else {
                    return Err(TransferRefused::UnknownQueue);
                };
                let priority = core.contact().priority;
                self.svc.desk.send_to(&self.call_id, &agent);
                let done = self.requeue(core, &queue, priority).await;
                if done.is_err() {
                    self.svc.desk.unsend(&self.call_id);
                }
                done
            }
        }
    }

    /// Rings `number` for the caller, who is released from their agent and hears music; a
    /// task follows the ringing and hands the call the answer ([`CallCommand::TransferAnswered`])
    /// or the failure ([`CallCommand::TransferFailed`]), and once answered carries either
    /// side's hang-up to the other.
    async fn transfer_out(
        &mut self,
        core: &mut CallCore,
        number: &str,
    ) -> Result<(), TransferRefused> {
        if !matches!(core.phase(), Phase::Bridged | Phase::Held) {
            return Err(TransferRefused::NotJoined);
        }
        let ring = super::dial::ring_out(&self.svc, number)
            .await
            .map_err(TransferRefused::from)?;
        core.handle(Input::TransferOut, super::task::now());
        self.carry_out(core).await;
        let (svc, call_id) = (self.svc.clone(), self.call_id.clone());
        tokio::spawn(super::phone_agent::ring_transfer(
            svc,
            call_id,
            ring,
            super::phone_agent::Ring::Transfer,
        ));
        Ok(())
    }

    /// The outside number did not answer: the caller goes back to the queue they were last
    /// in, at the front of their urgency, or, with none to take them, the call ends.
    pub(super) async fn transfer_failed(&mut self, core: &mut CallCore, cause: &'static str) {
        info!(
            cause,
            "the outside number did not answer: back to the queue"
        );
        let placed = self.front_of_queue(core);
        match placed {
            Some(ticket) => core.handle(Input::Transferred(ticket), super::task::now()),
            None => core.handle(Input::Hangup("transfer_failed"), super::task::now()),
        }
        self.carry_out(core).await;
    }

    /// A new place for the caller at the front of their urgency in the queue they were last
    /// in (None: they were in none, or it is full): for a caller whose agent is gone.
    pub(super) fn front_of_queue(&self, core: &CallCore) -> Option<crate::flow::queues::Ticket> {
        let queue = core.contact().queue.clone()?;
        let mut priority = core.contact().priority;
        priority.priority = 1;
        self.svc
            .flows
            .queues
            .enqueue(&queue, Instant::now(), &self.call_id, priority)
            .ok()
    }

    /// Takes the caller from their agent and places them in `queue` at `priority`, where
    /// they hear its hold flow until the next agent (a transfer, or an agent's lost browser).
    async fn requeue(
        &mut self,
        core: &mut CallCore,
        queue: &str,
        priority: crate::flow::queues::QueuePriority,
    ) -> Result<(), TransferRefused> {
        if !matches!(core.phase(), Phase::Bridged | Phase::Held) {
            return Err(TransferRefused::NotJoined);
        }
        let queues = &self.svc.flows.queues;
        if queues.get(queue).is_none() {
            return Err(TransferRefused::UnknownQueue);
        }
        let ticket = queues
            .enqueue(queue, Instant::now(), &self.call_id, priority)
            .map_err(|_| TransferRefused::QueueFull)?;
        core.handle(Input::Transferred(ticket), super::task::now());
        self.carry_out(core).await;
        Ok(())
    }

    /// Stops what the caller hears and joins the caller's leg with the agent's.
    pub(super) async fn bridge_agent(&mut self) -> Option<Input> {
        let (Some(caller), Some(agent)) = (&self.leg, &mut self.agent) else {
            return Some(Input::AgentLeft);
        };
        caller.command(LegCommand::Stop);
        match self.svc.media.bridge(caller, &mut agent.leg).await {
            Ok(()) => {
                agent.bridged = true;
                None
            }
            Err(e) => {
                warn!(error = %e, "could not bridge the agent");
                Some(Input::AgentLeft)
            }
        }
    }

    /// Closes the agent's leg (the browser learns by DTLS close) and ends their session; the
    /// agent goes to wrap-up if they talked with the caller.
    pub(super) async fn release_agent(&mut self) {
        // What a supervisor monitors is the agent's conversation: it is over, and so is a
        // consultation the agent was making.
        self.end_monitor().await;
        self.end_consult().await;
        if let Some(mut agent) = self.agent.take() {
            if let Some(released) = agent.released.take() {
                let _ = released.send(());
            }
            self.svc.agent_sessions.remove(&agent.session);
            if agent.bridged {
                self.svc.desk.contact_ended(&agent.agent);
            } else if agent.callback.is_none() {
                self.svc.desk.released(&agent.agent);
            }
            agent.leg.close().await;
        }
    }
}
