//! One task per call: admits the INVITE, negotiates media, then loops over what can happen
//! to a call (signaling, media events, the script's deadline, commands from outside) and
//! carries out the script's actions. Decisions live in the cores it drives.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span, warn};

use super::collect::DigitCollector;
use super::table::CallHandle;
use super::{CallCommand, CallEnd, CallServices, Identify, IdentifyQuery};
use crate::flow::attributes::ContactData;
use crate::flow::interpreter::{Audio, Effect, Event, FlowRun, Now};
use crate::flow::queues::Ticket;
use crate::media::codec::Codec;
use crate::media::dtmf::Digit;
use crate::media::engine::LegHandle;
use crate::media::leg::{LegCommand, LegEvent, LegOptions, LegParams};
use crate::media::player::{PlayEnd, PlayId};
use crate::recording::tap::LegRecording;
use crate::recording::{Participants, RecordingControl};
use crate::sip::sdp::{self, LocalMedia};
use crate::sip::{CallSignal, EndReason, IncomingCall, ServerCall};

/// Takes new calls off the SIP side and gives each its task.
pub async fn switchboard(mut incoming: mpsc::Receiver<IncomingCall>, services: Arc<CallServices>) {
    while let Some(call) = incoming.recv().await {
        let span = info_span!("call", id = %call.call_id);
        tokio::spawn(run(call, services.clone()).instrument(span));
    }
}

async fn run(call: IncomingCall, svc: Arc<CallServices>) {
    let retry = Some(svc.settings.retry_after_secs);
    if svc.draining.load(std::sync::atomic::Ordering::Acquire) {
        svc.metrics.call_rejected("503");
        return call.reject(503, retry, Some("shutting down".into())).await;
    }
    let Some(_admission) = svc.table.try_admit(svc.settings.max_calls) else {
        svc.metrics.call_rejected("503");
        info!("call refused: at the configured maximum of concurrent calls");
        return call.reject(503, retry, Some("too many calls".into())).await;
    };
    let Some(flow) = svc.flows.flow_for(&call.dialed) else {
        svc.metrics.call_rejected("404");
        info!("no contact flow for the dialed number and no flows.default");
        return call
            .reject(404, None, Some("no contact flow for this number".into()))
            .await;
    };
    let is_sdp = call
        .content_type
        .as_deref()
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/sdp"));
    if call.offer.is_empty() || !is_sdp {
        svc.metrics.call_rejected("488");
        return call
            .reject(
                488,
                None,
                Some("Careline needs an SDP offer in the INVITE".into()),
            )
            .await;
    }
    let remote_ip = call.remote.map(|a| a.ip()).unwrap_or(svc.sip.udp_addr.ip());
    let media_ip = svc.sip.media_address_for(remote_ip);
    let sockets = match svc.media.reserve(svc.sip.udp_addr.ip()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "no media port for the call");
            svc.metrics.call_rejected("503");
            return call
                .reject(503, retry, Some("no media ports free".into()))
                .await;
        }
    };
    let mut local = LocalMedia {
        address: media_ip,
        rtp_port: sockets.port,
        codecs: svc.settings.codecs.clone(),
        telephone_event: true,
        ptime_ms: 20,
        session_id: rand::random::<u32>() as u64,
        session_version: 1,
    };
    let offer = String::from_utf8_lossy(&call.offer).into_owned();
    let (answer, negotiated) = match sdp::answer(&offer, &local) {
        Ok(ok) => ok,
        Err(e) => {
            info!(error = %e, "offer refused");
            let code = e.sip_status();
            svc.metrics
                .call_rejected(if code == 400 { "400" } else { "488" });
            return call.reject(code, None, Some(e.to_string())).await;
        }
    };
    let call_id = call.call_id.clone();
    let transport = call.transport;
    let contact = ContactData {
        contact_id: call_id.as_str().into(),
        customer_address: call.caller.clone(),
        system_address: call.dialed.clone(),
        ..ContactData::default()
    };
    let mut dialog = match call.accept_dialog() {
        Ok(d) => d,
        Err(e) => {
            warn!(error = %e, "could not create the dialog");
            return;
        }
    };
    let _ = dialog.ring();
    if !svc.settings.ring.is_zero() {
        // Ringing: the caller may still CANCEL (487 is sent by the dialog).
        let until = tokio::time::sleep(svc.settings.ring);
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = &mut until => break,
                signal = dialog.next_signal() => match signal {
                    Some(CallSignal::Ended(why)) => {
                        svc.metrics.call_ended(why.as_str());
                        info!(cause = why.as_str(), "call ended before answer");
                        return;
                    }
                    None => return,
                    Some(_) => {}
                },
            }
        }
    }
    let opts = LegOptions {
        inband: svc.settings.inband,
        jitter_ms: svc.settings.jitter_ms,
        rtp_timeout_ms: svc.settings.rtp_timeout.as_millis() as u64,
        cname: format!("careline-{:08x}", rand::random::<u32>()),
    };
    let leg = match svc.media.open(sockets, LegParams::from(&negotiated), opts) {
        Ok(leg) => leg,
        Err(e) => {
            warn!(error = %e, "could not start media");
            let _ = dialog.reject(500);
            return;
        }
    };
    if let Err(e) = dialog.answer(answer) {
        warn!(error = %e, "could not send 200 OK");
        return;
    }
    let (commands, command_rx) = mpsc::unbounded_channel();
    svc.table.insert(
        call_id.clone(),
        CallHandle {
            commands,
            started: Instant::now(),
        },
    );
    let answered_at = jiff::Timestamp::now();
    let answered = Instant::now();
    svc.metrics.calls_started.inc();
    svc.metrics.calls_active.inc();
    if let Some(hooks) = &svc.hooks {
        hooks.call_started(&call_id);
    }
    info!(codec = %negotiated.codec, telephone_event = negotiated.telephone_event.is_some(), transport, "call answered");

    info!(flow = %flow.name, "running contact flow");
    let (internal, internal_rx) = mpsc::unbounded_channel();
    let mut call = Call {
        flow: FlowRun::new(svc.flows.env.clone(), flow, contact),
        svc: svc.clone(),
        dialog,
        leg,
        commands: command_rx,
        internal,
        internal_rx,
        state: CallState::default(),
        call_id: call_id.clone(),
        codec: negotiated.codec,
    };
    if svc.recorder.record_all() {
        call.record(RecordingControl::Start(Participants::BOTH));
    }
    let cause = call.run(&mut local).await;

    let contact = call.flow.contact();
    let reason = ["contact_reason", "reason"]
        .iter()
        .find_map(|k| contact.attributes.get(*k))
        .filter(|r| !r.is_empty())
        .cloned();
    let queue = contact.queue.as_deref().map(str::to_string);
    let Call {
        dialog, leg, state, ..
    } = call;
    if cause != EndReason::CallerBye.as_str()
        && cause != EndReason::Cancelled.as_str()
        && cause != EndReason::Timeout.as_str()
    {
        dialog.hangup().await;
    }
    let summary = leg.close().await;
    svc.metrics
        .rtp_packets_lost
        .inc_by(summary.packets_lost.max(0) as u64);
    svc.table.remove(&call_id);
    svc.metrics.calls_active.dec();
    svc.metrics.call_ended(cause);
    if let Some(hooks) = &svc.hooks {
        hooks.call_ended(CallEnd {
            call_id: call_id.clone(),
            cause,
            answered_at,
            duration: answered.elapsed(),
            patient: state.patient,
            recordings: state.recordings,
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

/// Where the call stands between the script's actions.
#[derive(Default)]
struct CallState {
    started: bool,
    /// The `Play` in progress, if any.
    playing: Option<PlayId>,
    next_play_id: PlayId,
    /// Whether the `Play` in progress may be cut short by a key.
    barge_in: bool,
    collector: Option<DigitCollector>,
    /// Digits pressed while no collection ran (type-ahead), oldest first.
    typed_ahead: VecDeque<Digit>,
    hangup: bool,
    /// The recording in progress: its id, and whether it is paused.
    recording: Option<(crate::recording::RecordingId, bool)>,
    /// The flow's timer (MessageParticipantIteratively interrupts).
    timer: Option<Instant>,
    /// The contact's place in a queue, released when the call ends.
    ticket: Option<Ticket>,
    /// Media streaming runs (the leg holds the sending end).
    streaming: bool,
    /// The patient the flow identified (`careline:patient-lookup`, GetCustomerProfile).
    patient: Option<String>,
    /// Every recording made during the call, for the contact history.
    recordings: Vec<String>,
}

/// Results of work the call task started off its own loop (speech, Lambda calls).
enum Internal {
    /// Speech for the `Play` with this id is rendered.
    Rendered(PlayId, Vec<Arc<crate::media::prompt::Prompt>>),
    Invoked(Result<serde_json::Value, String>),
    /// The patient lookup answered.
    Identified(Identify),
}

struct Call {
    svc: Arc<CallServices>,
    dialog: ServerCall,
    leg: LegHandle,
    flow: FlowRun,
    commands: mpsc::UnboundedReceiver<CallCommand>,
    internal: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    state: CallState,
    call_id: String,
    codec: Codec,
}

fn now() -> Now {
    Now::new(Instant::now(), jiff::Timestamp::now())
}

impl Call {
    /// Call-level recording control, whoever asks (policy, flow, API). Starting while
    /// paused resumes; starting after a stop makes a new recording.
    pub fn record(&mut self, ctl: RecordingControl) {
        match (ctl, &mut self.state.recording) {
            (RecordingControl::Start(_), Some((_, paused)))
            | (RecordingControl::Resume, Some((_, paused))) => {
                if *paused {
                    *paused = false;
                    self.leg.command(LegCommand::Record(LegRecording::Resume));
                }
            }
            (RecordingControl::Start(participants), None) => {
                match self
                    .svc
                    .recorder
                    .open(&self.call_id, participants, self.codec)
                {
                    Some(tap) => {
                        info!(recording = %tap.id, "recording started");
                        self.state.recording = Some((tap.id, false));
                        self.state.recordings.push(tap.id.to_string());
                        self.leg
                            .command(LegCommand::Record(LegRecording::Attach(Box::new(tap))));
                    }
                    None => warn!("recording requested, but the recorder has stopped"),
                }
            }
            (RecordingControl::Pause, Some((_, paused))) => {
                if !*paused {
                    *paused = true;
                    self.leg.command(LegCommand::Record(LegRecording::Pause));
                }
            }
            (RecordingControl::Stop, Some(_)) => {
                self.state.recording = None;
                self.leg.command(LegCommand::Record(LegRecording::Detach));
            }
            (RecordingControl::Pause | RecordingControl::Resume | RecordingControl::Stop, None) => {
            }
        }
    }

    /// Runs until the call ends; returns the cause (a metrics label).
    async fn run(&mut self, local: &mut LocalMedia) -> &'static str {
        loop {
            let collect = self.state.collector.as_ref().map(|c| c.deadline());
            let deadline = match (collect, self.state.timer) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                signal = self.dialog.next_signal() => match signal {
                    None => return EndReason::Other.as_str(),
                    Some(CallSignal::Ended(why)) => return why.as_str(),
                    Some(CallSignal::Confirmed) => {
                        if !self.state.started {
                            self.state.started = true;
                            self.flow.handle(Event::Started, now());
                        }
                    }
                    Some(CallSignal::Offer { sdp, reply }) => self.renegotiate(&sdp, reply, local).await,
                    Some(CallSignal::Info { content_type, body, reply }) => {
                        match crate::sip::info::parse_dtmf_info(&content_type, &body) {
                            Ok(digit) => {
                                self.leg.command(LegCommand::Digit(digit));
                                reply.respond(200, None).await;
                            }
                            Err(crate::sip::info::InfoError::NotDtmf(_)) => reply.respond(415, None).await,
                            Err(crate::sip::info::InfoError::NoDigit) => reply.respond(400, None).await,
                        }
                    }
                },
                event = self.leg.next_event() => match event {
                    Some(LegEvent::Digit { digit, method }) => {
                        self.svc.metrics.digit(method.as_str());
                        self.on_digit(digit);
                    }
                    Some(LegEvent::PlayEnded(end)) => {
                        let (id, interrupted) = match end {
                            PlayEnd::Finished(id) => (id, false),
                            PlayEnd::Interrupted(id) => (id, true),
                        };
                        if self.state.playing == Some(id) {
                            self.state.playing = None;
                            self.flow.handle(Event::PlayDone { interrupted }, now());
                        }
                    }
                    Some(LegEvent::RtpTimeout) => {
                        info!("no RTP from the caller: hanging up");
                        return "rtp_timeout";
                    }
                    None => return "error",
                },
                command = self.commands.recv() => match command {
                    Some(CallCommand::Hangup { cause }) => return cause,
                    Some(CallCommand::Recording(ctl)) => self.record(ctl),
                    None => return "error",
                },
                Some(done) = self.internal_rx.recv() => match done {
                    Internal::Rendered(id, prompts) => {
                        if self.state.playing == Some(id) {
                            self.play_now(id, prompts);
                        }
                    }
                    Internal::Invoked(result) => self.flow.handle(Event::Invoked(result), now()),
                    Internal::Identified(found) => {
                        if let Some(id) = found.patient_id() {
                            // The id stays out of the log: the audit trail ties calls to patients.
                            info!(verified = matches!(found, Identify::Found { verified: true, .. }), "caller identified");
                            self.state.patient = Some(id.to_string());
                        }
                        self.flow.handle(Event::Invoked(found.to_external()), now());
                    }
                },
                _ = timer => {
                    let t = Instant::now();
                    if let Some(outcome) = self.state.collector.as_mut().and_then(|c| c.on_time(t)) {
                        self.state.collector = None;
                        self.flow.handle(Event::Collected(outcome), now());
                    }
                    if self.state.timer.is_some_and(|d| d <= t) {
                        self.state.timer = None;
                        self.flow.handle(Event::Timer, now());
                    }
                }
            }
            self.run_effects();
            if self.state.hangup {
                return EndReason::OurBye.as_str();
            }
        }
    }

    fn on_digit(&mut self, digit: Digit) {
        let now = Instant::now();
        match &mut self.state.collector {
            Some(c) => {
                if let Some(outcome) = c.on_digit(digit, now) {
                    self.state.collector = None;
                    self.flow.handle(Event::Collected(outcome), self::now());
                }
            }
            None => {
                // Bounded: a caller leaning on the keypad cannot grow memory.
                if self.state.typed_ahead.len() >= 32 {
                    self.state.typed_ahead.pop_front();
                }
                self.state.typed_ahead.push_back(digit);
            }
        }
    }

    /// Carries out what the flow asked, until it waits for an event.
    fn run_effects(&mut self) {
        while let Some(effect) = self.flow.poll_effect() {
            match effect {
                Effect::Play { audio, barge_in } => self.play(audio, barge_in),
                Effect::Collect(spec) => {
                    let now = Instant::now();
                    let mut collector = DigitCollector::new(spec, now);
                    let mut done = None;
                    while let Some(d) = self.state.typed_ahead.pop_front() {
                        if let Some(outcome) = collector.on_digit(d, now) {
                            done = Some(outcome);
                            break;
                        }
                    }
                    match done {
                        Some(outcome) => self.flow.handle(Event::Collected(outcome), self::now()),
                        None => self.state.collector = Some(collector),
                    }
                }
                Effect::Invoke {
                    function,
                    event,
                    timeout: _,
                } if &*function == crate::flow::lambda::PATIENT_LOOKUP => {
                    let query = IdentifyQuery::from_event(&event);
                    match &self.svc.hooks {
                        Some(hooks) => {
                            let lookup = hooks.identify(&self.call_id, query);
                            let tx = self.internal.clone();
                            tokio::spawn(
                                async move {
                                    let _ = tx.send(Internal::Identified(lookup.await));
                                }
                                .in_current_span(),
                            );
                        }
                        None => self.flow.handle(
                            Event::Invoked(Err("no patient store in this process".into())),
                            now(),
                        ),
                    }
                }
                Effect::Invoke {
                    function,
                    event,
                    timeout,
                } => {
                    let lambdas = self.svc.flows.lambdas.clone();
                    let tx = self.internal.clone();
                    tokio::spawn(
                        async move {
                            let result = lambdas.invoke(&function, &event, timeout).await;
                            let _ = tx.send(Internal::Invoked(result));
                        }
                        .in_current_span(),
                    );
                }
                Effect::Enqueue { queue } => {
                    let result = self.svc.flows.queues.enqueue(&queue, Instant::now());
                    let event = match result {
                        Ok(ticket) => {
                            info!(queue = %queue, "caller queued");
                            self.state.ticket = Some(ticket);
                            Event::Enqueued(Ok(()))
                        }
                        Err(e) => Event::Enqueued(Err(e)),
                    };
                    self.flow.handle(event, now());
                }
                Effect::QueueMetrics { queue } => {
                    let m = self.svc.flows.queues.metrics(&queue, Instant::now());
                    self.flow.handle(Event::QueueMetrics(m), now());
                }
                Effect::SetRecording(behavior) => match recording_intent(&behavior) {
                    Some(ctl) => self.record(ctl),
                    None => info!(
                        "UpdateContactRecordingBehavior without RecordedParticipants: ignored"
                    ),
                },
                Effect::MediaStreaming { enabled } => self.streaming(enabled),
                Effect::Timer(d) => self.state.timer = Some(Instant::now() + d),
                Effect::Disconnect => {
                    self.state.hangup = true;
                    return;
                }
            }
        }
    }

    /// Plays at once what is ready; speech not yet in the cache is rendered off the loop and
    /// played when it is.
    fn play(&mut self, audio: Vec<Audio>, barge_in: bool) {
        self.state.next_play_id += 1;
        let id = self.state.next_play_id;
        self.state.playing = Some(id);
        self.state.barge_in = barge_in;
        let speech = &self.svc.flows.speech;
        let mut ready = Vec::with_capacity(audio.len());
        let mut missing = false;
        for a in &audio {
            match a {
                Audio::Prompt(p) => ready.push(p.clone()),
                Audio::Speech { voice, text, ssml } => match speech.cached(voice, text, *ssml) {
                    Some(p) => ready.push(p),
                    None => missing = true,
                },
            }
        }
        if !missing {
            return self.play_now(id, ready);
        }
        let speech = speech.clone();
        let tx = self.internal.clone();
        tokio::spawn(
            async move {
                let mut prompts = Vec::with_capacity(audio.len());
                for a in audio {
                    match a {
                        Audio::Prompt(p) => prompts.push(p),
                        Audio::Speech { voice, text, ssml } => {
                            match speech.render(&voice, &text, ssml).await {
                                Ok(p) => prompts.push(p),
                                // The sentence is skipped; the flow goes on.
                                Err(e) => warn!(error = %e, "speech synthesis failed"),
                            }
                        }
                    }
                }
                let _ = tx.send(Internal::Rendered(id, prompts));
            }
            .in_current_span(),
        );
    }

    fn play_now(&mut self, id: PlayId, prompts: Vec<Arc<crate::media::prompt::Prompt>>) {
        if prompts.is_empty() {
            self.state.playing = None;
            self.flow
                .handle(Event::PlayDone { interrupted: false }, now());
            return;
        }
        self.leg.command(LegCommand::Play {
            id,
            prompts,
            barge_in: self.state.barge_in,
        });
    }

    fn streaming(&mut self, enabled: bool) {
        match (&self.svc.flows.streaming_url, enabled) {
            (Some(url), true) if !self.state.streaming => {
                let tap = crate::flow::streaming::start(url.clone(), self.dialog_id());
                self.leg.command(LegCommand::Tap(Some(tap)));
                self.state.streaming = true;
                info!("media streaming started");
            }
            (_, false) if self.state.streaming => {
                self.leg.command(LegCommand::Tap(None));
                self.state.streaming = false;
                info!("media streaming stopped");
            }
            (None, true) => {
                info!("the flow starts media streaming, but media_streaming.url is not set")
            }
            _ => {}
        }
    }

    fn dialog_id(&self) -> String {
        self.flow.contact.contact_id.to_string()
    }

    /// A re-INVITE/UPDATE offer: hold (sendonly/inactive), unhold, or a new address.
    async fn renegotiate(
        &mut self,
        offer: &[u8],
        reply: crate::sip::Responder,
        local: &mut LocalMedia,
    ) {
        let offer = String::from_utf8_lossy(offer);
        local.session_version += 1;
        match sdp::answer(&offer, local) {
            Ok((answer, negotiated)) => {
                info!(hold = negotiated.on_hold(), "media renegotiated");
                self.leg
                    .command(LegCommand::Update(LegParams::from(&negotiated)));
                reply
                    .respond(200, Some(("application/sdp", answer.into_bytes())))
                    .await;
            }
            Err(e) => {
                local.session_version -= 1;
                info!(error = %e, "re-offer refused");
                reply.respond(488, None).await;
            }
        }
    }
}

/// UpdateContactRecordingBehavior's `RecordingBehavior.RecordedParticipants`: `Customer` is
/// the caller's channel, `Agent` the other side (what the caller hears: prompts today, agents
/// later); an empty list stops recording. `None` when the parameter is absent.
fn recording_intent(behavior: &serde_json::Value) -> Option<RecordingControl> {
    let list = behavior
        .pointer("/RecordingBehavior/RecordedParticipants")?
        .as_array()?;
    let has = |who: &str| {
        list.iter()
            .any(|p| p.as_str().is_some_and(|p| p.eq_ignore_ascii_case(who)))
    };
    let participants = Participants {
        customer: has("Customer"),
        agent: has("Agent"),
    };
    Some(if participants.customer || participants.agent {
        RecordingControl::Start(participants)
    } else {
        RecordingControl::Stop
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn recorded_participants_map_to_recording_control() {
        let both = json!({"RecordingBehavior": {"RecordedParticipants": ["Agent", "Customer"]}});
        assert!(matches!(
            recording_intent(&both),
            Some(RecordingControl::Start(Participants {
                customer: true,
                agent: true
            }))
        ));
        let caller = json!({"RecordingBehavior": {"RecordedParticipants": ["Customer"]}});
        assert!(matches!(
            recording_intent(&caller),
            Some(RecordingControl::Start(Participants {
                customer: true,
                agent: false
            }))
        ));
        let off = json!({"RecordingBehavior": {"RecordedParticipants": []}});
        assert!(matches!(
            recording_intent(&off),
            Some(RecordingControl::Stop)
        ));
        assert!(recording_intent(&json!({"IVRRecordingBehavior": "Enabled"})).is_none());
    }
}
