//! The other half of the call's shell: what it does for each of the core's [`Output`]s, on
//! the dialog, the media leg, the recorder, the speech engine, the Lambda client and the
//! patient store. Work that takes time is spawned and comes back to the loop in
//! [`task`](super::task) as a [`Done`]; what answers at once is fed straight back.

use std::time::Instant;

use tracing::{Instrument, info, warn};

use super::Identify;
use super::core::{CallCore, Input, Output, RecordOp};
use super::start::{Pending, Signaling};
use super::table::CallHandle;
use super::task::{Done, Shell, now};
use crate::media::leg::{LegCommand, LegParams};
use crate::media::recorder::LegRecording;

/// A whisper's play: its id and its prompts.
pub(super) type Whisper = (
    crate::media::player::PlayId,
    Vec<std::sync::Arc<crate::media::prompt::Prompt>>,
);

impl Shell {
    /// Plays the whisper flows' messages: the agent's on the agent's leg, the caller's on
    /// theirs (each hears it instead of the other side while it plays).
    pub(super) fn whisper(&mut self, agent: Whisper, customer: Whisper) {
        if let (false, Some(a)) = (agent.1.is_empty(), &self.agent) {
            a.leg.command(LegCommand::Play {
                id: agent.0,
                prompts: agent.1,
                barge_in: false,
            });
        }
        if !customer.1.is_empty() {
            self.leg_command(LegCommand::Play {
                id: customer.0,
                prompts: customer.1,
                barge_in: false,
            });
        }
    }

    /// Carries out the core's outputs; some answer at once, which may make more.
    pub(super) async fn carry_out(&mut self, core: &mut CallCore) {
        while let Some(output) = core.poll_output() {
            match output {
                Output::Answer => {
                    let input = self.answer();
                    core.handle(input, now());
                }
                // Speech not in the cache is rendered off the loop.
                Output::Render { id, audio } => match self.svc.flows.speech.ready(&audio) {
                    Some(prompts) => core.handle(Input::Rendered(id, prompts), now()),
                    None => {
                        let speech = self.svc.flows.speech.clone();
                        self.spawn(async move { Done::Rendered(id, speech.prompts(audio).await) });
                    }
                },
                Output::Play {
                    id,
                    prompts,
                    barge_in,
                } => self.leg_command(LegCommand::Play {
                    id,
                    prompts,
                    barge_in,
                }),
                Output::Invoke {
                    id,
                    function,
                    event,
                    ..
                } if &*function == crate::flow::lambda::ROOM_JOIN => {
                    self.join_room(core, id, &event);
                }
                Output::Invoke {
                    id,
                    function,
                    event,
                    timeout,
                } => {
                    let lambdas = self.svc.flows.lambdas.clone();
                    self.spawn(async move {
                        Done::Invoked(id, lambdas.invoke(&function, &event, timeout).await)
                    });
                }
                Output::Identify { id, query } => match &self.svc.hooks {
                    Some(hooks) => {
                        let lookup = hooks.identify(&self.call_id, query);
                        self.spawn(async move { Done::Identified(id, lookup.await) });
                    }
                    None => {
                        let none = Identify::Failed("no patient store in this process".into());
                        core.handle(Input::Identified(id, none), now());
                    }
                },
                Output::Enqueue { queue, priority } => {
                    let placed = self.svc.flows.queues.enqueue(
                        &queue,
                        Instant::now(),
                        &self.call_id,
                        priority,
                    );
                    core.handle(Input::Enqueued(placed), now());
                }
                Output::CreateCallback(request) => {
                    // The caller keeps their place if they wait in that queue now.
                    let waiting_since = core
                        .queue_stays()
                        .last()
                        .filter(|s| {
                            core.phase() == super::core::Phase::Queued
                                && core.contact().queue.as_deref() == Some(&*request.queue)
                                && s.queue == *request.queue
                        })
                        .map(|s| s.enqueued_at);
                    let (svc, call_id) = (self.svc.clone(), self.call_id.clone());
                    let patient = core.patient().map(String::from);
                    self.spawn(async move {
                        let created =
                            super::callback::create(svc, call_id, request, waiting_since, patient);
                        Done::CallbackCreated(created.await)
                    });
                }
                Output::Reprioritize(priority) => {
                    self.svc.flows.queues.set_priority(&self.call_id, priority);
                }
                Output::SetCriteria(criteria) => {
                    self.svc.desk.set_criteria(&self.call_id, Some(criteria));
                    self.criteria_set = true;
                }
                Output::QueueMetrics { queue } => {
                    let m = self.svc.flows.queues.metrics_for(
                        &queue,
                        Some(&self.call_id),
                        Instant::now(),
                    );
                    core.handle(Input::QueueMetrics(m), now());
                }
                Output::Record(op) => {
                    if let Some(input) = self.record(op) {
                        core.handle(input, now());
                    }
                }
                Output::Stream(on) => {
                    let tap = match (&self.svc.flows.streaming_url, on) {
                        (Some(url), true) => Some(crate::flow::streaming::start(
                            url.clone(),
                            core.contact().contact_id.to_string(),
                        )),
                        _ => None,
                    };
                    self.leg_command(LegCommand::Tap(tap));
                }
                Output::Bridge => {
                    if let Some(input) = self.bridge_agent().await {
                        core.handle(input, now());
                    }
                }
                Output::Whisper { agent, customer } => {
                    let speech = &self.svc.flows.speech;
                    match (speech.ready(&agent.1), speech.ready(&customer.1)) {
                        (Some(a), Some(c)) => self.whisper((agent.0, a), (customer.0, c)),
                        _ => {
                            let speech = speech.clone();
                            self.spawn(async move {
                                let a = speech.prompts(agent.1).await;
                                let c = speech.prompts(customer.1).await;
                                Done::Whispered((agent.0, a), (customer.0, c))
                            });
                        }
                    }
                }
                Output::ReleaseAgent => self.release_agent().await,
                Output::ReturnToQueue => {
                    let input = match self.front_of_queue(core) {
                        Some(ticket) => Input::Transferred(ticket),
                        None => Input::AgentLeft,
                    };
                    core.handle(input, now());
                }
                Output::Hold(on) => {
                    // Held, the caller's audio stops reaching the agent; what the caller
                    // hears is the music (a prompt takes the place of the agent's audio).
                    if !on {
                        self.leg_command(LegCommand::Stop);
                    }
                    self.leg_command(LegCommand::Mute(on));
                }
                Output::PlayMusic { id } => {
                    let music = self.svc.hold_music.clone();
                    self.leg_command(LegCommand::Play {
                        id,
                        prompts: vec![music; 20],
                        barge_in: false,
                    });
                }
                Output::Screen => self.leg_command(LegCommand::Screen(self.svc.settings.amd)),
                Output::MuteAgent(on) => {
                    if let Some(agent) = &self.agent {
                        agent.leg.command(LegCommand::Mute(on));
                    }
                }
                Output::Hangup => match (&self.signaling, self.answered) {
                    (Signaling::Sip(dialog), Some(_)) => dialog.hangup().await,
                    (Signaling::Sip(dialog), None) => {
                        let _ = dialog.reject(500);
                    }
                    // A browser learns from its leg closing (DTLS close_notify).
                    (Signaling::Whip(_), _) => {}
                    // CANCEL while it rings, BYE once answered.
                    (Signaling::Placed(call), _) => call.hangup().await,
                },
            }
        }
    }

    pub(super) fn spawn(&self, work: impl Future<Output = Done> + Send + 'static) {
        let tx = self.done.clone();
        tokio::spawn(
            async move {
                let _ = tx.send(work.await);
            }
            .in_current_span(),
        );
    }

    pub(super) fn leg_command(&self, command: LegCommand) {
        if let Some(leg) = &self.leg {
            leg.command(command);
        }
    }

    /// Opens media and sends 200 OK; the call joins the table.
    fn answer(&mut self) -> Input {
        let Some(pending) = self.media.take() else {
            return Input::Hangup("error");
        };
        let svc = &self.svc;
        let opts = svc.settings.leg_options();
        let opened = match pending {
            Pending::Rtp {
                sockets,
                params,
                answer,
            } => svc
                .media
                .open(sockets, params, opts)
                .map(|l| (l, Some(answer))),
            // A placed call's media opens when its answer comes (`connect_placed`).
            Pending::Placed { .. } => return Input::Hangup("error"),
            Pending::WebRtc {
                sockets,
                peer,
                params,
                ids,
            } => svc
                .media
                .open_webrtc(sockets, *peer, params, opts, ids)
                .map(|l| (l, None)),
        };
        let (leg, answer) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                warn!(error = %e, "could not start media");
                return Input::Hangup("error");
            }
        };
        self.leg = Some(leg);
        if let (Signaling::Sip(dialog), Some(answer)) = (&self.signaling, answer)
            && let Err(e) = dialog.answer(answer)
        {
            warn!(error = %e, "could not send 200 OK");
            return Input::Hangup("error");
        }
        self.went_live();
        Input::Answered
    }

    /// The far end answered a call Careline placed: its SDP answer says what to send where
    /// (RFC 3264 §7); the media opens and the call joins the table.
    pub(super) fn connect_placed(&mut self, answer: &[u8]) -> Input {
        let (Some(Pending::Placed { sockets }), Some(local)) = (self.media.take(), &self.local)
        else {
            return Input::Hangup("error");
        };
        let text = String::from_utf8_lossy(answer);
        let negotiated = match crate::sip::sdp::read_answer(&text, local) {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "the answer's SDP is unusable: hanging up");
                return Input::Hangup("bad_answer");
            }
        };
        self.codec = negotiated.codec;
        let opts = self.svc.settings.leg_options();
        match self
            .svc
            .media
            .open(sockets, LegParams::from(&negotiated), opts)
        {
            Ok(leg) => self.leg = Some(leg),
            Err(e) => {
                warn!(error = %e, "could not start media");
                return Input::Hangup("error");
            }
        }
        let srtp = negotiated.srtp.as_ref().map(|k| k.suite.name());
        info!(codec = %negotiated.codec, srtp, "answered");
        self.went_live();
        Input::Answered
    }

    /// The call is answered: it joins the table, the metrics and the hooks hear of it.
    fn went_live(&mut self) {
        let svc = &self.svc;
        self.answered = Some((jiff::Timestamp::now(), Instant::now()));
        if let Some(commands) = self.commands.take() {
            let started = Instant::now();
            let handle = CallHandle { commands, started };
            svc.table.insert(self.call_id.clone(), handle);
        }
        svc.metrics.calls_started.inc();
        svc.metrics.calls_active.inc();
        if let Some(hooks) = &svc.hooks {
            hooks.call_started(&self.call_id);
        }
        info!("call answered");
    }

    fn record(&mut self, op: RecordOp) -> Option<Input> {
        let leg = self.leg.as_ref()?;
        let step = match op {
            RecordOp::Open(participants) => {
                let tap = self
                    .svc
                    .recorder
                    .open(&self.call_id, participants, self.codec);
                let Some(tap) = tap else {
                    return Some(Input::RecordingOpened(None));
                };
                let id = tap.id;
                leg.command(LegCommand::Record(LegRecording::Attach(Box::new(tap))));
                return Some(Input::RecordingOpened(Some(id)));
            }
            RecordOp::Pause => LegRecording::Pause,
            RecordOp::Resume => LegRecording::Resume,
            RecordOp::Close => LegRecording::Detach,
        };
        leg.command(LegCommand::Record(step));
        None
    }

    /// A re-INVITE/UPDATE offer: hold (sendonly/inactive), unhold, or a new address.
    pub(super) async fn renegotiate(&mut self, offer: &[u8], reply: crate::sip::Responder) {
        let Some(local) = self.local.as_mut() else {
            reply.respond(488, None).await;
            return;
        };
        match (local.reanswer(offer), &self.leg) {
            (Ok((answer, negotiated)), Some(leg)) => {
                info!(hold = negotiated.on_hold(), "media renegotiated");
                leg.command(LegCommand::Update(LegParams::from(&negotiated)));
                let body = ("application/sdp", answer.into_bytes());
                reply.respond(200, Some(body)).await;
            }
            (Ok(_), None) => {
                local.session_version -= 1;
                reply.respond(491, None).await;
            }
            (Err(e), _) => {
                info!(error = %e, "re-offer refused");
                reply.respond(488, None).await;
            }
        }
    }
}
