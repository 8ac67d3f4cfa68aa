//! Consult, then transfer (a warm transfer): an agent on a call rings an outside number (the
//! on-call physician, a pharmacy) while the caller waits on hold with music; once it answers
//! the agent and that party talk; then the agent brings the caller in (a three-way call),
//! hands the caller over (the agent leaves and wraps up; the caller and the party go on), or
//! drops the party and goes back to the caller.
//!
//! The party's leg joins the agent's in a conference on the media clock
//! ([`crate::media::conference`]) that the caller is in too, muted and hearing music while on
//! hold, so each step is a change of who is muted and who is in, never a new bridge. The
//! call core sees a hold ([`Input::Hold`]) and, at the hand-over, [`Input::Handover`]; the
//! party's leg is the shell's until then.

use tokio::sync::oneshot;
use tracing::{info, warn};

use super::answer::{AgentLeg, AgentMedia, AgentOffer, TransferRefused};
use super::core::{CallCore, Input, Phase};
use super::task::{Shell, now};
use crate::media::engine::LegHandle;
use crate::media::leg::LegEvent;

/// What the agent does with a consultation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsultOp {
    /// Ring this outside number, the caller on hold meanwhile.
    Start(String),
    /// Bring the caller in: the three of them talk.
    Conference,
    /// Hand the caller over to the party: the agent leaves.
    Complete,
    /// Drop the party (ringing or answered) and go back to the caller, off hold.
    Cancel,
}

impl ConsultOp {
    /// From a URL's last segment (`consult` takes its number from the query).
    pub fn parse(action: &str, to: Option<&str>) -> Option<ConsultOp> {
        Some(match action {
            "consult" => ConsultOp::Start(to?.to_string()),
            "conference" => ConsultOp::Conference,
            "complete" => ConsultOp::Complete,
            "cancel" => ConsultOp::Cancel,
            _ => return None,
        })
    }
}

/// The consultation in progress.
pub(super) enum Consult {
    /// The number rings.
    Ringing,
    /// The party answered: their leg, in conference with the agent (and the held caller).
    Joined {
        leg: LegHandle,
        session: String,
        released: Option<oneshot::Sender<()>>,
    },
}

/// The party's leg's next event; pending while there is none.
pub(super) async fn consult_event(consult: &mut Option<Consult>) -> Option<LegEvent> {
    match consult {
        Some(Consult::Joined { leg, .. }) => leg.next_event().await,
        _ => std::future::pending().await,
    }
}

impl Shell {
    /// The agent's consultation step; refused unless the caller is joined to the agent (and,
    /// past the start, a consultation is under way).
    pub(super) async fn consult(
        &mut self,
        core: &mut CallCore,
        op: ConsultOp,
    ) -> Result<(), TransferRefused> {
        let joined = matches!(core.phase(), Phase::Bridged | Phase::Held)
            && self.agent.as_ref().is_some_and(|a| a.bridged);
        if !joined {
            return Err(TransferRefused::NotJoined);
        }
        match op {
            ConsultOp::Start(number) => {
                if self.consult.is_some() {
                    return Err(TransferRefused::Consulting);
                }
                let ring = super::dial::ring_out(&self.svc, &number)
                    .await
                    .map_err(TransferRefused::from)?;
                info!("the agent consults an outside number, the caller on hold");
                self.svc.metrics.consultation("started");
                self.consult = Some(Consult::Ringing);
                self.input(core, Input::Hold(true)).await;
                let (svc, call_id) = (self.svc.clone(), self.call_id.clone());
                let why = super::phone_agent::Ring::Consult;
                tokio::spawn(super::phone_agent::ring_transfer(svc, call_id, ring, why));
                Ok(())
            }
            ConsultOp::Conference => {
                if !matches!(self.consult, Some(Consult::Joined { .. })) {
                    return Err(TransferRefused::NotConsulting);
                }
                info!("the agent brings the caller into the consultation");
                self.svc.metrics.consultation("conferenced");
                self.input(core, Input::Hold(false)).await;
                Ok(())
            }
            ConsultOp::Complete => self.hand_over(core).await,
            ConsultOp::Cancel => {
                if self.consult.is_none() {
                    return Err(TransferRefused::NotConsulting);
                }
                info!("the agent drops the consultation");
                self.svc.metrics.consultation("dropped");
                self.end_consult().await;
                self.input(core, Input::Hold(false)).await;
                Ok(())
            }
        }
    }

    /// The agent leaves, the party takes their place with the caller.
    async fn hand_over(&mut self, core: &mut CallCore) -> Result<(), TransferRefused> {
        let Some(Consult::Joined {
            leg,
            session,
            released,
        }) = self.consult.take()
        else {
            return Err(TransferRefused::NotConsulting);
        };
        info!("the agent hands the caller over to the party they consulted");
        self.svc.metrics.consultation("handed_over");
        self.input(core, Input::Handover).await;
        self.svc
            .agent_sessions
            .insert(session.clone(), self.call_id.clone());
        self.agent = Some(AgentLeg {
            leg,
            session,
            // Nobody at the desk: the party is outside.
            agent: String::new(),
            bridged: true,
            callback: None,
            released,
            // A phone: it does not reconnect.
            browser: None,
        });
        Ok(())
    }

    /// The number answered: its leg joins the agent (and the caller, who is on hold).
    pub(super) async fn consult_answered(&mut self, offer: AgentOffer) {
        let AgentOffer {
            sockets,
            media,
            session,
            accepted,
            released,
            ..
        } = offer;
        let ringing = matches!(self.consult, Some(Consult::Ringing));
        let (Some(agent), true, AgentMedia::Rtp { params }) = (&self.agent, ringing, media) else {
            // Dropped meanwhile, or the agent is gone: the ring task hangs up.
            let _ = accepted.send(false);
            return;
        };
        let opts = self.svc.settings.leg_options();
        let mut leg = match self.svc.media.open(sockets, params, opts) {
            Ok(leg) => leg,
            Err(e) => {
                warn!(error = %e, "could not open the consulted party's media");
                let _ = accepted.send(false);
                self.consult = None;
                return;
            }
        };
        if let Err(e) = self.svc.media.join(&agent.leg, &mut leg).await {
            warn!(error = %e, "could not join the consulted party to the agent");
            let _ = accepted.send(false);
            self.consult = None;
            return;
        }
        info!("the consulted party answered and talks with the agent");
        self.svc.metrics.consultation("answered");
        let _ = accepted.send(true);
        self.consult = Some(Consult::Joined {
            leg,
            session,
            released,
        });
    }

    /// The number did not answer: the agent is back with the caller, who stays on hold until
    /// the agent resumes.
    pub(super) fn consult_failed(&mut self, cause: &'static str) {
        if matches!(self.consult, Some(Consult::Ringing)) {
            info!(cause, "the consulted number did not answer");
            self.svc.metrics.consultation("failed");
            self.consult = None;
        }
    }

    /// The party hung up (`session`): during the consultation, the agent is back with the
    /// caller on hold; after a hand-over, the party is the caller's other side, and the
    /// call ends as when an agent hangs up.
    pub(super) async fn consult_ended(&mut self, core: &mut CallCore, session: &str) {
        match &self.consult {
            Some(Consult::Joined { session: s, .. }) if s == session => {
                info!("the consulted party hung up");
                self.end_consult().await;
            }
            _ => {
                if self.agent.as_ref().is_some_and(|a| a.session == session) {
                    self.input(core, Input::AgentLeft).await;
                }
            }
        }
    }

    /// What the party's leg reports: gone ends the consultation.
    pub(super) async fn consult_leg_event(&mut self, event: Option<LegEvent>) {
        if matches!(
            event,
            None | Some(LegEvent::ConnectionLost | LegEvent::RtpTimeout)
        ) {
            self.end_consult().await;
        }
    }

    /// Drops the consultation: the party's leg is closed and their phone hung up.
    pub(super) async fn end_consult(&mut self) {
        if let Some(Consult::Joined { leg, released, .. }) = self.consult.take() {
            if let Some(released) = released {
                let _ = released.send(());
            }
            leg.close().await;
        }
    }

    /// Feeds the core one input and carries out what it asks.
    async fn input(&mut self, core: &mut CallCore, input: Input) {
        core.handle(input, now());
        self.carry_out(core).await;
    }
}
