//! The call's async shell: one task per call. It turns what arrives (SIP signals, media
//! events, commands, finished lookups, the core's deadline) into [`Input`]s for the
//! [`CallCore`], and carries out its [`Output`](super::core::Output)s on the dialog, the media leg, the recorder,
//! the speech engine and the Lambda client. It decides nothing about the call itself.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::info;

use super::core::{CallCore, CallPolicy, Input, RequestId};
use super::start::{Pending, Signaling, Start};
use super::{CallCommand, CallServices, Identify};
use crate::flow::interpreter::Now;
use crate::media::engine::LegHandle;
use crate::media::leg::{LegCommand, LegEvent};
use crate::media::player::PlayId;
use crate::media::prompt::Prompt;
use crate::sip::sdp::LocalMedia;
use crate::sip::{CallSignal, EndReason};

pub(super) fn now() -> Now {
    Now::new(Instant::now(), jiff::Timestamp::now())
}

/// Results of work started off the loop (speech, Lambda calls, patient lookups).
pub(super) enum Done {
    Rendered(PlayId, Vec<Arc<Prompt>>),
    Invoked(RequestId, Result<serde_json::Value, String>),
    Identified(RequestId, Identify),
    CallbackCreated(Result<(), String>),
    /// The whisper flows' messages, rendered (agent's, caller's).
    Whispered(super::effects::Whisper, super::effects::Whisper),
    /// The room join asked for by the flow (`careline:room-join`, this request) is done.
    Room(
        RequestId,
        Result<super::room_door::Seat, super::room_door::Refused>,
    ),
}

/// Runs an admitted call to its end. `_admission` holds its place in the call table.
pub(super) async fn run_call(
    svc: &Arc<CallServices>,
    _admission: super::table::Admission<'_>,
    start: Start,
) {
    let browser = matches!(start.signaling, Signaling::Whip(_));
    let policy = CallPolicy {
        // A browser's answer is already in its hands: no ringing.
        ring: if browser {
            std::time::Duration::ZERO
        } else {
            svc.settings.ring
        },
        record_all: svc.recorder.record_all(),
        streaming: svc.flows.streaming_url.is_some(),
        confirm_within: browser.then_some(svc.settings.webrtc_connect_timeout),
        agent_connect_within: Some(svc.settings.webrtc_connect_timeout),
        dial_timeout: start.dial_timeout,
        callback_agent: start.agent.as_ref().map(|a| a.agent.clone()),
        reconnect_grace: Some(svc.settings.webrtc_reconnect_grace)
            .filter(|g| browser && !g.is_zero()),
        agent_reconnect_grace: Some(svc.settings.webrtc_reconnect_grace).filter(|g| !g.is_zero()),
    };
    info!(flow = %start.flow.name, "running contact flow");
    let mut core = CallCore::new(
        svc.flows.env.clone(),
        start.flow,
        start.contact,
        policy,
        Instant::now(),
    );
    let (done, done_rx) = mpsc::unbounded_channel();
    let (commands, commands_rx) = mpsc::unbounded_channel();
    if start.outcome.is_some() {
        svc.placed.dialing(&start.call_id, commands.clone());
    }
    let mut shell = Shell {
        svc: svc.clone(),
        call_id: start.call_id,
        signaling: start.signaling,
        leg: None,
        media: Some(start.media),
        codec: start.codec,
        local: start.local,
        commands: Some(commands),
        done,
        answered: None,
        connecting: start.connecting,
        agent: None,
        monitor: None,
        consult: None,
        criteria_set: false,
        outcome: start.outcome,
        seat: None,
    };
    if let Some(agent) = start.agent {
        let phone = agent.is_phone();
        if !shell.open_agent(agent) {
            core.handle(Input::AgentLeft, now());
        } else if phone {
            core.handle(Input::AgentConnected, now());
        }
    }
    shell.carry_out(&mut core).await;
    let cause = shell.run(&mut core, commands_rx, done_rx).await;
    shell.finish(&core, cause).await;
}

pub(super) struct Shell {
    pub(super) svc: Arc<CallServices>,
    pub(super) call_id: String,
    pub(super) signaling: Signaling,
    /// The caller's media, once answered.
    pub(super) leg: Option<LegHandle>,
    /// What answering needs: the reserved ports and the negotiated media.
    pub(super) media: Option<Pending>,
    pub(super) codec: crate::media::codec::Codec,
    pub(super) local: Option<LocalMedia>,
    /// Handed to the call table when the call is answered.
    pub(super) commands: Option<mpsc::UnboundedSender<CallCommand>>,
    pub(super) done: mpsc::UnboundedSender<Done>,
    pub(super) answered: Option<(jiff::Timestamp, Instant)>,
    /// Held while a browser leg connects (see `whip::Connecting`).
    pub(super) connecting: Option<super::whip::ConnectingTicket>,
    /// The agent who took the call from its queue (see `answer`).
    pub(super) agent: Option<super::answer::AgentLeg>,
    /// A supervisor listening in (see `monitor`).
    pub(super) monitor: Option<super::monitor::MonitorLeg>,
    /// The agent's consultation (a warm transfer), while they make one.
    pub(super) consult: Option<super::consult::Consult>,
    /// The flow gave routing criteria for this call (forgotten when it ends).
    pub(super) criteria_set: bool,
    /// Whoever placed the call, waiting for its outcome.
    pub(super) outcome: Option<tokio::sync::oneshot::Sender<super::dial::CallOutcome>>,
    /// The caller's place in a telehealth room (the room has their leg).
    pub(super) seat: Option<super::room_door::Seat>,
}

/// Resolves when the room the caller is in lets them go; pending while in none.
async fn room_out(seat: &mut Option<super::room_door::Seat>) {
    match seat {
        Some(seat) => {
            let _ = (&mut seat.out).await;
        }
        None => std::future::pending().await,
    }
}

async fn leg_event(leg: &mut Option<LegHandle>) -> Option<LegEvent> {
    match leg {
        Some(leg) => leg.next_event().await,
        None => std::future::pending().await,
    }
}

impl Shell {
    /// Feeds the core until the call ends; returns the cause (a metrics label).
    async fn run(
        &mut self,
        core: &mut CallCore,
        mut commands: mpsc::UnboundedReceiver<CallCommand>,
        mut done: mpsc::UnboundedReceiver<Done>,
    ) -> &'static str {
        while core.ended().is_none() {
            let deadline = core.poll_timeout();
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            let input = tokio::select! {
                signal = self.signaling.next_signal() => match signal {
                    None => Some(Input::RemoteEnded(EndReason::Other)),
                    Some(CallSignal::Ended(why)) => Some(Input::RemoteEnded(why)),
                    Some(CallSignal::Confirmed) => Some(Input::Confirmed),
                    Some(CallSignal::Ringing) => {
                        info!("ringing");
                        self.svc.placed.set(&self.call_id, super::dial::PlacedState::Ringing);
                        None
                    }
                    // The far end answered a call Careline placed; the stack has ACKed it,
                    // so the call is confirmed as soon as its media is up.
                    Some(CallSignal::Answered(sdp)) => {
                        self.svc.placed.set(&self.call_id, super::dial::PlacedState::Answered);
                        let input = self.connect_placed(&sdp);
                        core.handle(input, now());
                        self.carry_out(core).await;
                        Some(Input::Confirmed)
                    }
                    Some(CallSignal::Refused(code)) => Some(Input::DialFailed(code)),
                    Some(CallSignal::Offer { sdp, reply }) => {
                        self.renegotiate(&sdp, reply).await;
                        None
                    }
                    // A SIP INFO keypress goes through the leg, which reports it like any other.
                    Some(CallSignal::Info { content_type, body, reply }) => {
                        if let Some(d) = crate::sip::info::answer(&content_type, &body, reply).await {
                            self.leg_command(LegCommand::Digit(d));
                        }
                        None
                    }
                },
                event = leg_event(&mut self.leg) => match event {
                    Some(LegEvent::Digit { digit, method }) => {
                        self.svc.metrics.digit(method.as_str());
                        Some(Input::Digit(digit))
                    }
                    Some(LegEvent::PlayEnded(end)) => Some(Input::PlayEnded(end)),
                    Some(LegEvent::RtpTimeout) => {
                        info!("no RTP from the caller: hanging up");
                        Some(Input::Hangup("rtp_timeout"))
                    }
                    // A browser's media is up: what SIP's ACK is to a phone (or, after a
                    // reload, the caller is back).
                    Some(LegEvent::Connected) => {
                        self.connecting = None;
                        matches!(self.signaling, Signaling::Whip(_)).then_some(Input::Confirmed)
                    }
                    // The core decides: wait for the browser to come back, or hang up. A
                    // browser silent for a few seconds starts the same wait (a reloaded page
                    // may not say goodbye).
                    Some(LegEvent::Disconnected | LegEvent::ConnectionLost) => {
                        let waiting = core.reconnecting();
                        core.handle(Input::ConnectionLost, now());
                        if !waiting && core.reconnecting() {
                            self.svc.metrics.browser_connection("lost");
                        }
                        None
                    }
                    Some(LegEvent::Amd(event)) => {
                        super::dial::call_progress(event, &self.svc.metrics)
                    }
                    // A call in conference (a barge-in, a consultation) shows no talkers.
                    Some(LegEvent::Talking(_)) => None,
                    None => Some(Input::Hangup("error")),
                },
                event = super::answer::agent_event(&mut self.agent) => {
                    self.agent_leg_event(event)
                }
                event = super::consult::consult_event(&mut self.consult) => {
                    self.consult_leg_event(event).await;
                    None
                }
                event = super::monitor::monitor_event(&mut self.monitor) => {
                    self.monitor_leg_event(event).await;
                    None
                }
                command = commands.recv() => match command {
                    Some(CallCommand::Hangup { cause }) => Some(Input::Hangup(cause)),
                    Some(CallCommand::Recording(ctl)) => Some(Input::Recording(ctl)),
                    Some(CallCommand::Agent(offer)) => {
                        let phone = offer.is_phone();
                        let offered = self.offer_agent(core, *offer);
                        match offered {
                            // A phone answered before it was handed over: connected now.
                            Some(input) if phone => {
                                core.handle(input, now());
                                self.carry_out(core).await;
                                Some(Input::AgentConnected)
                            }
                            other => other,
                        }
                    }
                    // An agent who hangs up while their consulted party is on the line hands
                    // the caller over to that party (as Amazon Connect does).
                    Some(CallCommand::AgentHangup) => {
                        let handed_over = self.consult.is_some()
                            && self
                                .consult(core, super::consult::ConsultOp::Complete)
                                .await
                                .is_ok();
                        if handed_over {
                            None
                        } else {
                            Some(Input::AgentLeft)
                        }
                    }
                    Some(CallCommand::AgentConsult(op, reply)) => {
                        let _ = reply.send(self.consult(core, op).await);
                        None
                    }
                    Some(CallCommand::ConsultAnswered(offer)) => {
                        self.consult_answered(*offer).await;
                        None
                    }
                    Some(CallCommand::ConsultFailed(cause)) => {
                        self.consult_failed(cause);
                        None
                    }
                    Some(CallCommand::ConsultEnded(session)) => {
                        self.consult_ended(core, &session).await;
                        None
                    }
                    Some(CallCommand::AgentControl(op, reply)) => {
                        self.agent_control(core, op, reply).await;
                        None
                    }
                    Some(CallCommand::AgentTransfer(to, reply)) => {
                        let _ = reply.send(self.transfer(core, to).await);
                        None
                    }
                    Some(CallCommand::TransferAnswered(leg)) => {
                        match self.offer_agent(core, *leg) {
                            Some(offered) => {
                                core.handle(offered, now());
                                self.carry_out(core).await;
                                Some(Input::AgentConnected)
                            }
                            None => {
                                self.transfer_failed(core, "not_joined").await;
                                None
                            }
                        }
                    }
                    Some(CallCommand::TransferFailed(cause)) => {
                        self.transfer_failed(core, cause).await;
                        None
                    }
                    Some(CallCommand::Monitor(offer)) => {
                        self.monitor(core, *offer).await;
                        None
                    }
                    Some(CallCommand::MonitorControl(barge, reply)) => {
                        let _ = reply.send(self.monitor_control(barge));
                        None
                    }
                    Some(CallCommand::MonitorEnd) => {
                        self.end_monitor().await;
                        None
                    }
                    Some(CallCommand::Reconnect { offer, source, reply }) => {
                        let _ = reply.send(self.reconnect(core, &offer, source));
                        None
                    }
                    Some(CallCommand::AgentReconnect { session, offer, source, reply }) => {
                        let _ = reply.send(self.reconnect_agent(core, &session, &offer, source));
                        None
                    }
                    None => Some(Input::Hangup("error")),
                },
                Some(finished) = done.recv() => match finished {
                    Done::Rendered(id, prompts) => Some(Input::Rendered(id, prompts)),
                    Done::Invoked(id, result) => Some(Input::Invoked(id, result)),
                    Done::Identified(id, found) => Some(Input::Identified(id, found)),
                    Done::CallbackCreated(result) => Some(Input::CallbackCreated(result)),
                    Done::Whispered(agent, customer) => {
                        self.whisper(agent, customer);
                        None
                    }
                    Done::Room(id, result) => self.room_joined(core, id, result),
                },
                // The room let the caller go (removed, the visit over): hang up.
                _ = room_out(&mut self.seat) => {
                    self.seat = None;
                    Some(Input::Hangup("room_left"))
                }
                _ = timer => {
                    core.handle_timeout(now());
                    None
                }
            };
            if let Some(input) = input {
                core.handle(input, now());
            }
            self.carry_out(core).await;
        }
        core.ended().unwrap_or("error")
    }

    /// Closes media and tells the table, the metrics and the hooks how the call went.
    async fn finish(mut self, core: &CallCore, cause: &'static str) {
        self.release_agent().await;
        let outcome = self.outcome.take().map(|tell| {
            let outcome = super::dial::CallOutcome {
                call_id: self.call_id.clone(),
                cause,
                answered: self.answered.is_some(),
                talk_time: self.answered.map(|(_, t)| t.elapsed()).unwrap_or_default(),
                attributes: core.contact().attributes.clone(),
            };
            (tell, outcome)
        });
        let svc = self.svc.clone();
        self.close(core, cause).await;
        // Told last, once the call is out of the table and the gauges.
        if let Some((tell, outcome)) = outcome {
            let label = if outcome.answered { "answered" } else { cause };
            svc.metrics.outbound_call(label);
            svc.placed.ended(&outcome);
            let _ = tell.send(outcome);
        }
    }

    async fn close(self, core: &CallCore, cause: &'static str) {
        if self.criteria_set {
            self.svc.desk.set_criteria(&self.call_id, None);
        }
        let svc = self.svc;
        let Some((answered_at, answered)) = self.answered else {
            svc.metrics.call_ended(cause);
            info!(cause, "call ended before answer");
            return;
        };
        let summary = match self.leg {
            Some(leg) => leg.close().await,
            None => Default::default(),
        };
        svc.metrics
            .rtp_packets_lost
            .inc_by(summary.packets_lost.max(0) as u64);
        svc.table.remove(&self.call_id);
        svc.metrics.calls_active.dec();
        svc.metrics.call_ended(cause);
        if let Some(hooks) = &svc.hooks {
            let channel = match self.signaling {
                Signaling::Whip(_) => "browser",
                _ => "phone",
            };
            let end = core.call_end(&self.call_id, channel, answered_at, answered.elapsed());
            hooks.call_ended(end);
        }
        info!(
            cause,
            sent = summary.packets_sent,
            received = summary.packets_received,
            lost = summary.packets_lost,
            jitter_ms = format!("{:.1}", summary.jitter_ms),
            "call ended"
        );
    }
}
