//! The call's async shell: one task per call. It turns what arrives (SIP signals, media
//! events, commands, finished lookups, the core's deadline) into [`Input`]s for the
//! [`CallCore`], and carries out its [`Output`]s on the dialog, the media leg, the recorder,
//! the speech engine and the Lambda client. It decides nothing about the call itself.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span, warn};

use super::admit::{Admitted, admit};
use super::core::{CallCore, CallPolicy, Input, Output, RecordOp, RequestId};
use super::table::CallHandle;
use super::{CallCommand, CallEnd, CallServices, Identify};
use crate::flow::interpreter::Now;
use crate::media::engine::LegHandle;
use crate::media::leg::{LegCommand, LegEvent, LegOptions, LegParams};
use crate::media::player::PlayId;
use crate::media::prompt::Prompt;
use crate::media::recorder::LegRecording;
use crate::sip::sdp::{self, LocalMedia};
use crate::sip::{CallSignal, EndReason, ServerCall};

/// Takes new calls off the SIP side and gives each its task.
pub async fn switchboard(
    mut incoming: mpsc::Receiver<crate::sip::IncomingCall>,
    services: Arc<CallServices>,
) {
    while let Some(call) = incoming.recv().await {
        let span = info_span!("call", id = %call.call_id);
        tokio::spawn(run(call, services.clone()).instrument(span));
    }
}

fn now() -> Now {
    Now::new(Instant::now(), jiff::Timestamp::now())
}

/// Results of work started off the loop (speech, Lambda calls, patient lookups).
enum Done {
    Rendered(PlayId, Vec<Arc<Prompt>>),
    Invoked(RequestId, Result<serde_json::Value, String>),
    Identified(RequestId, Identify),
}

async fn run(call: crate::sip::IncomingCall, svc: Arc<CallServices>) {
    let Some(admitted) = admit(call, &svc).await else {
        return;
    };
    let Admitted {
        admission: _admission,
        call_id,
        flow,
        contact,
        dialog,
        sockets,
        local,
        answer,
        negotiated,
        transport,
    } = admitted;
    let policy = CallPolicy {
        ring: svc.settings.ring,
        record_all: svc.recorder.record_all(),
        streaming: svc.flows.streaming_url.is_some(),
    };
    info!(flow = %flow.name, "running contact flow");
    let mut core = CallCore::new(svc.flows.env.clone(), flow, contact, policy, Instant::now());
    let (done, done_rx) = mpsc::unbounded_channel();
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let mut shell = Shell {
        svc: svc.clone(),
        call_id,
        dialog,
        leg: None,
        media: Some((sockets, LegParams::from(&negotiated), answer)),
        codec: negotiated.codec,
        local,
        commands: Some(commands),
        done,
        answered: None,
    };
    info!(codec = %negotiated.codec, telephone_event = negotiated.telephone_event.is_some(), transport, "call offered");
    shell.carry_out(&mut core).await;
    let cause = shell.run(&mut core, commands_rx, done_rx).await;
    shell.finish(&core, cause).await;
}

struct Shell {
    svc: Arc<CallServices>,
    call_id: String,
    dialog: ServerCall,
    /// The caller's media, once answered.
    leg: Option<LegHandle>,
    /// What answering needs: the reserved ports, the negotiated media and the SDP answer.
    media: Option<(crate::media::ports::RtpSockets, LegParams, String)>,
    codec: crate::media::codec::Codec,
    local: LocalMedia,
    /// Handed to the call table when the call is answered.
    commands: Option<mpsc::UnboundedSender<CallCommand>>,
    done: mpsc::UnboundedSender<Done>,
    answered: Option<(jiff::Timestamp, Instant)>,
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
                signal = self.dialog.next_signal() => match signal {
                    None => Some(Input::RemoteEnded(EndReason::Other)),
                    Some(CallSignal::Ended(why)) => Some(Input::RemoteEnded(why)),
                    Some(CallSignal::Confirmed) => Some(Input::Confirmed),
                    Some(CallSignal::Offer { sdp, reply }) => {
                        self.renegotiate(&sdp, reply).await;
                        None
                    }
                    Some(CallSignal::Info { content_type, body, reply }) => {
                        self.info(&content_type, &body, reply).await;
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
                    None => Some(Input::Hangup("error")),
                },
                command = commands.recv() => match command {
                    Some(CallCommand::Hangup { cause }) => Some(Input::Hangup(cause)),
                    Some(CallCommand::Recording(ctl)) => Some(Input::Recording(ctl)),
                    None => Some(Input::Hangup("error")),
                },
                Some(finished) = done.recv() => Some(match finished {
                    Done::Rendered(id, prompts) => Input::Rendered(id, prompts),
                    Done::Invoked(id, result) => Input::Invoked(id, result),
                    Done::Identified(id, found) => Input::Identified(id, found),
                }),
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

    /// Carries out the core's outputs; some answer at once, which may make more.
    async fn carry_out(&mut self, core: &mut CallCore) {
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
                Output::Enqueue { queue } => {
                    let placed = self.svc.flows.queues.enqueue(&queue, Instant::now());
                    core.handle(Input::Enqueued(placed), now());
                }
                Output::QueueMetrics { queue } => {
                    let m = self.svc.flows.queues.metrics(&queue, Instant::now());
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
                Output::Hangup => match self.answered {
                    Some(_) => self.dialog.hangup().await,
                    None => {
                        let _ = self.dialog.reject(500);
                    }
                },
            }
        }
    }

    fn spawn(&self, work: impl Future<Output = Done> + Send + 'static) {
        let tx = self.done.clone();
        tokio::spawn(
            async move {
                let _ = tx.send(work.await);
            }
            .in_current_span(),
        );
    }

    fn leg_command(&self, command: LegCommand) {
        if let Some(leg) = &self.leg {
            leg.command(command);
        }
    }

    /// Opens media and sends 200 OK; the call joins the table.
    fn answer(&mut self) -> Input {
        let Some((sockets, params, answer)) = self.media.take() else {
            return Input::Hangup("error");
        };
        let svc = &self.svc;
        let opts = LegOptions {
            inband: svc.settings.inband,
            jitter_ms: svc.settings.jitter_ms,
            rtp_timeout_ms: svc.settings.rtp_timeout.as_millis() as u64,
            cname: format!("careline-{:08x}", rand::random::<u32>()),
        };
        let leg = match svc.media.open(sockets, params, opts) {
            Ok(leg) => leg,
            Err(e) => {
                warn!(error = %e, "could not start media");
                return Input::Hangup("error");
            }
        };
        self.leg = Some(leg);
        if let Err(e) = self.dialog.answer(answer) {
            warn!(error = %e, "could not send 200 OK");
            return Input::Hangup("error");
        }
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
        Input::Answered
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

    /// A SIP INFO keypress goes through the leg, which reports it like any other digit.
    async fn info(&self, content_type: &str, body: &[u8], reply: crate::sip::Responder) {
        use crate::sip::info::{InfoError, parse_dtmf_info};
        match parse_dtmf_info(content_type, body) {
            Ok(digit) => {
                self.leg_command(LegCommand::Digit(digit));
                reply.respond(200, None).await;
            }
            Err(InfoError::NotDtmf(_)) => reply.respond(415, None).await,
            Err(InfoError::NoDigit) => reply.respond(400, None).await,
        }
    }

    /// A re-INVITE/UPDATE offer: hold (sendonly/inactive), unhold, or a new address.
    async fn renegotiate(&mut self, offer: &[u8], reply: crate::sip::Responder) {
        let offer = String::from_utf8_lossy(offer);
        self.local.session_version += 1;
        match sdp::answer(&offer, &self.local) {
            Ok((answer, negotiated)) if self.leg.is_some() => {
                info!(hold = negotiated.on_hold(), "media renegotiated");
                self.leg_command(LegCommand::Update(LegParams::from(&negotiated)));
                let body = ("application/sdp", answer.into_bytes());
                reply.respond(200, Some(body)).await;
            }
            Ok(_) => {
                self.local.session_version -= 1;
                reply.respond(491, None).await;
            }
            Err(e) => {
                self.local.session_version -= 1;
                info!(error = %e, "re-offer refused");
                reply.respond(488, None).await;
            }
        }
    }

    /// Closes media and tells the table, the metrics and the hooks how the call went.
    async fn finish(self, core: &CallCore, cause: &'static str) {
        let svc = self.svc;
        let Some((answered_at, answered)) = self.answered else {
            svc.metrics.call_ended(cause);
            info!(cause, "call ended before answer");
            return;
        };
        let contact = core.contact();
        let reason = ["contact_reason", "reason"]
            .iter()
            .find_map(|k| contact.attributes.get(*k))
            .filter(|r| !r.is_empty())
            .cloned();
        let queue = contact.queue.as_deref().map(str::to_string);
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
            hooks.call_ended(CallEnd {
                call_id: self.call_id.clone(),
                cause,
                answered_at,
                duration: answered.elapsed(),
                patient: core.patient().map(str::to_string),
                recordings: core.recordings().iter().map(|r| r.to_string()).collect(),
                reason,
                queue,
            });
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
