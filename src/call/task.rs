//! One task per call: admits the INVITE, negotiates media, then loops over what can happen
//! to a call (signaling, media events, the script's deadline, commands from outside) and
//! carries out the script's actions. Decisions live in the cores it drives.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span, warn};

use super::collect::DigitCollector;
use super::menu::Menu;
use super::script::{Action, Script, ScriptEvent};
use super::table::CallHandle;
use super::{CallCommand, CallServices};
use crate::media::dtmf::Digit;
use crate::media::engine::LegHandle;
use crate::media::leg::{LegCommand, LegEvent, LegOptions, LegParams};
use crate::media::player::{PlayEnd, PlayId};
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
    svc.metrics.calls_started.inc();
    svc.metrics.calls_active.inc();
    if let Some(hooks) = &svc.hooks {
        hooks.call_started(&call_id);
    }
    info!(codec = %negotiated.codec, telephone_event = negotiated.telephone_event.is_some(), transport, "call answered");

    let script = Box::new(Menu::new(svc.menu.clone(), svc.settings.menu_timeout));
    let mut call = Call {
        svc: svc.clone(),
        dialog,
        leg,
        script,
        commands: command_rx,
        state: CallState::default(),
    };
    let cause = call.run(&mut local).await;

    let Call { dialog, leg, .. } = call;
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
        hooks.call_ended(&call_id, cause);
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
    collector: Option<DigitCollector>,
    /// Digits pressed while no collection ran (type-ahead), oldest first.
    typed_ahead: VecDeque<Digit>,
    hangup: bool,
}

struct Call {
    svc: Arc<CallServices>,
    dialog: ServerCall,
    leg: LegHandle,
    script: Box<dyn Script>,
    commands: mpsc::UnboundedReceiver<CallCommand>,
    state: CallState,
}

impl Call {
    /// Runs until the call ends; returns the cause (a metrics label).
    async fn run(&mut self, local: &mut LocalMedia) -> &'static str {
        loop {
            let deadline = self.state.collector.as_ref().map(|c| c.deadline());
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
                            self.script.handle(ScriptEvent::Started);
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
                            self.script.handle(ScriptEvent::PlayDone { interrupted });
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
                    None => return "error",
                },
                _ = timer => {
                    let now = Instant::now();
                    if let Some(outcome) = self.state.collector.as_mut().and_then(|c| c.on_time(now)) {
                        self.state.collector = None;
                        self.script.handle(ScriptEvent::Collected(outcome));
                    }
                }
            }
            self.run_actions();
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
                    self.script.handle(ScriptEvent::Collected(outcome));
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

    /// Carries out what the script asked, until it waits for an event.
    fn run_actions(&mut self) {
        while let Some(action) = self.script.poll_action() {
            match action {
                Action::Play { prompts, barge_in } => {
                    self.state.next_play_id += 1;
                    let id = self.state.next_play_id;
                    self.state.playing = Some(id);
                    self.leg.command(LegCommand::Play {
                        id,
                        prompts,
                        barge_in,
                    });
                }
                Action::Collect(spec) => {
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
                        Some(outcome) => self.script.handle(ScriptEvent::Collected(outcome)),
                        None => self.state.collector = Some(collector),
                    }
                }
                Action::Hangup => {
                    self.state.hangup = true;
                    return;
                }
            }
        }
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
