//! Silent monitoring and barge-in: a supervisor's browser joins a call where an agent talks
//! with a caller, hearing both (the caller and the agent hear nothing of the supervisor), and
//! may speak into it (barge-in: all three hear each other) and go back to listening.
//!
//! The supervisor's leg is a browser leg like an agent's (a WHIP exchange; its session URL is
//! the capability to leave, barge and listen). Joining turns the call's bridge into a
//! conference on the media clock ([`crate::media::conference`]) with the supervisor's leg
//! muted, which is what listening is; barging unmutes it. The leg belongs to the call: it
//! ends when the agent leaves the call (a transfer, a hang-up) or the call ends, since what
//! is monitored is an agent's conversation.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::oneshot;
use tracing::{info, warn};

use super::answer::{AgentMedia, AgentOffer, AnswerError, browser_leg};
use super::core::{CallCore, Phase};
use super::task::Shell;
use super::{CallCommand, CallServices};
use crate::media::engine::LegHandle;
use crate::media::leg::{LegCommand, LegEvent};
use crate::media::webrtc::WebRtcError;

/// A supervisor's leg on a call.
pub(super) struct MonitorLeg {
    leg: LegHandle,
    session: String,
    supervisor: String,
}

/// What the supervisor's browser gets back: its session (the `Location`) and the SDP answer.
#[derive(Debug)]
pub struct Listening {
    /// 128 random bits, hex: the capability to leave, barge and listen; never logged.
    pub resource: String,
    pub answer: String,
}

/// Why a supervisor could not listen in; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("no call {0} (it may have ended)")]
    NoCall(String),
    #[error("the call is not with an agent now: only an agent's conversation is monitored")]
    NotWithAgent,
    #[error("someone is listening in on this call already")]
    Taken,
    #[error("no media port free")]
    NoPorts,
    #[error(transparent)]
    Offer(#[from] WebRtcError),
}

/// A supervisor's request, handed to the call.
pub struct MonitorOffer {
    leg: AgentOffer,
    reply: oneshot::Sender<Result<(), MonitorError>>,
}

impl fmt::Debug for MonitorOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MonitorOffer")
    }
}

/// Supervisors' WHIP sessions on calls they monitor: session id to call.
pub type MonitorSessions = super::answer::AgentSessions;

/// `supervisor`, whose browser sent `offer` from `remote`, listens in on call `call_id`.
pub async fn listen(
    svc: &Arc<CallServices>,
    supervisor: &str,
    call_id: &str,
    offer: &str,
    remote: IpAddr,
) -> Result<Listening, MonitorError> {
    let (leg, _taken, browser) =
        browser_leg(svc, supervisor, offer, remote, None).map_err(|e| match e {
            AnswerError::Offer(e) => MonitorError::Offer(e),
            _ => MonitorError::NoPorts,
        })?;
    let (reply, done) = oneshot::channel();
    let offer = MonitorOffer { leg, reply };
    if !svc
        .table
        .send(call_id, CallCommand::Monitor(Box::new(offer)))
    {
        return Err(MonitorError::NoCall(call_id.to_string()));
    }
    done.await
        .unwrap_or_else(|_| Err(MonitorError::NoCall(call_id.to_string())))?;
    Ok(Listening {
        resource: browser.resource,
        answer: browser.answer,
    })
}

/// The supervisor's leg's next event; pending while nobody monitors.
pub(super) async fn monitor_event(monitor: &mut Option<MonitorLeg>) -> Option<LegEvent> {
    match monitor {
        Some(m) => m.leg.next_event().await,
        None => std::future::pending().await,
    }
}

impl Shell {
    /// A supervisor asks to listen in: their leg joins the caller and the agent, muted.
    pub(super) async fn monitor(&mut self, core: &CallCore, offer: MonitorOffer) {
        let MonitorOffer { leg, reply } = offer;
        let _ = reply.send(self.open_monitor(core, leg).await);
    }

    async fn open_monitor(
        &mut self,
        core: &CallCore,
        offer: AgentOffer,
    ) -> Result<(), MonitorError> {
        let with_agent = matches!(core.phase(), Phase::Bridged | Phase::Held)
            && self.agent.as_ref().is_some_and(|a| a.bridged);
        let (Some(caller), true) = (&self.leg, with_agent) else {
            return Err(MonitorError::NotWithAgent);
        };
        if self.monitor.is_some() {
            return Err(MonitorError::Taken);
        }
        let AgentMedia::WebRtc {
            peer, params, ids, ..
        } = offer.media
        else {
            return Err(MonitorError::NotWithAgent);
        };
        let opts = self.svc.settings.leg_options();
        let mut leg = self
            .svc
            .media
            .open_webrtc(offer.sockets, *peer, params, opts, ids)
            .map_err(|e| {
                warn!(error = %e, "could not open the supervisor's media");
                MonitorError::NoPorts
            })?;
        // Muted before it joins: not a word of the supervisor's reaches the call unasked.
        leg.command(LegCommand::Mute(true));
        if let Err(e) = self.svc.media.join(caller, &mut leg).await {
            warn!(error = %e, "could not join the supervisor to the call");
            return Err(MonitorError::NotWithAgent);
        }
        self.svc
            .monitor_sessions
            .insert(offer.session.clone(), self.call_id.clone());
        info!(supervisor = %offer.agent, "a supervisor listens in");
        self.svc.metrics.monitoring("listen");
        self.monitor = Some(MonitorLeg {
            leg,
            session: offer.session,
            supervisor: offer.agent,
        });
        Ok(())
    }

    /// The supervisor barges in (true: the caller and the agent hear them) or goes back to
    /// listening (false); false when nobody monitors.
    pub(super) fn monitor_control(&mut self, barge: bool) -> bool {
        let Some(m) = &self.monitor else {
            return false;
        };
        info!(supervisor = %m.supervisor, barge, "the supervisor {}", if barge { "barges in" } else { "listens" });
        m.leg.command(LegCommand::Mute(!barge));
        if barge {
            self.svc.metrics.monitoring("barge");
        }
        true
    }

    /// What the supervisor's leg reports: gone (a closed tab, a lost network) ends the
    /// monitoring.
    pub(super) async fn monitor_leg_event(&mut self, event: Option<LegEvent>) {
        if matches!(
            event,
            None | Some(LegEvent::ConnectionLost | LegEvent::RtpTimeout)
        ) {
            self.end_monitor().await;
        }
    }

    /// The supervisor leaves (or the agent's conversation is over): their leg is closed.
    pub(super) async fn end_monitor(&mut self) {
        if let Some(m) = self.monitor.take() {
            self.svc.monitor_sessions.remove(&m.session);
            info!(supervisor = %m.supervisor, "the supervisor stopped listening");
            m.leg.close().await;
        }
    }
}
