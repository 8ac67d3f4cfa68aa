//! The call as a sans-IO core: everything Careline decides about one call, fed [`Input`]s
//! with the time and answering with [`Output`]s and its next deadline, as quinn-proto's
//! `Connection` is to quinn. The call task ([`super::task`]) owns the dialog, the media leg,
//! the recorder and the spawned lookups; this core owns the decisions: when to answer, the
//! flow run, digit collection and type-ahead, which play is current and whether it may be cut
//! short, how long a Lambda or the patient store may take, recording intent, and how the
//! call ends. It reads no clock, opens no socket and spawns nothing, so a whole call runs in
//! a test on a fake clock in microseconds.
//!
//! The call moves through [`Phase`]s. Today a caller rings, is answered, runs the IVR and may
//! wait in a queue; agents, bridges, holds, transfers and rooms (the routing and browser-leg
//! work) are further phases of this same machine, fed by further inputs, never branches in
//! the task.
//!
//! A call to the shipped demo menu, driven by hand (a test or a shell does the same with a
//! real clock and real media):
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use careline::call::core::{CallCore, CallPolicy, Input, Output, Phase};
//! use careline::flow::attributes::ContactData;
//! use careline::flow::engine::FlowEngine;
//! use careline::flow::interpreter::Now;
//!
//! let config = careline::config::Config::default();
//! let prompts = careline::shipped::prompt_library(std::path::Path::new(""))?;
//! let engine = FlowEngine::build(&config, Arc::new(prompts), Default::default())?;
//! let flow = engine.flow_for("100").expect("the demo menu");
//!
//! let t0 = Instant::now();
//! let at = |s: u64| Now::new(t0 + Duration::from_secs(s), jiff::Timestamp::UNIX_EPOCH);
//! let policy = CallPolicy { ring: Duration::from_secs(2), ..CallPolicy::default() };
//! let mut call = CallCore::new(engine.env.clone(), flow, ContactData::default(), policy, t0);
//! assert_eq!(call.phase(), Phase::Ringing);
//! assert_eq!(call.poll_timeout(), Some(t0 + Duration::from_secs(2)));
//!
//! call.handle_timeout(at(2)); // ringing is over
//! assert!(matches!(call.poll_output(), Some(Output::Answer)));
//! call.handle(Input::Answered, at(2));
//! call.handle(Input::Confirmed, at(2)); // the caller's ACK: the flow starts
//! match call.poll_output() {
//!     Some(Output::Render { audio, .. }) => assert_eq!(audio.len(), 1), // the welcome
//!     other => panic!("{other:?}"),
//! }
//!
//! call.handle(Input::RemoteEnded(careline::sip::EndReason::CallerBye), at(5));
//! assert_eq!(call.ended(), Some("caller_bye"));
//! assert!(call.poll_output().is_none(), "the caller hung up: no BYE back");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::{info, warn};

use super::{Identify, IdentifyQuery};
use crate::flow::attributes::ContactData;
use crate::flow::collect::{CollectOutcome, DigitCollector};
use crate::flow::interpreter::{
    Audio, CallProgress, CallbackRequest, Effect, Env, Event, FlowRun, Now,
};
use crate::flow::program::Flow;
use crate::flow::queues::{AtCapacity, QueueMetrics, Ticket};
use crate::media::dtmf::Digit;
use crate::media::player::{PlayEnd, PlayId};
use crate::media::prompt::Prompt;
use crate::recording::{Participants, RecordingControl, RecordingId};
use crate::sip::EndReason;

/// Digits kept while no collection runs: a caller leaning on the keypad cannot grow memory.
const TYPE_AHEAD: usize = 32;

/// Answers to the requests the core makes are matched by this id, so a late answer to an
/// earlier request (a Lambda that answered after its time-out) is never taken for the
/// current one.
pub type RequestId = u64;

/// What the core is told once, when the call arrives.
#[derive(Debug, Clone, Default)]
pub struct CallPolicy {
    /// Let the phone ring this long before answering (zero: answer at once).
    pub ring: Duration,
    /// Record every call from the moment it is answered (`recording.record_all`).
    pub record_all: bool,
    /// A media-streaming endpoint is configured (`media_streaming.url`).
    pub streaming: bool,
    /// How long an answered caller has to confirm ([`Input::Confirmed`]) before the call is
    /// hung up with cause `connect_timeout`. A browser's media must connect within
    /// `[webrtc] connect_timeout_secs`; a SIP dialog leaves this `None`, since its transaction
    /// layer already ends a call whose ACK never comes (RFC 3261 Timer H).
    pub confirm_within: Option<Duration>,
    /// How long an agent who took the call from its queue has to connect
    /// ([`Input::AgentConnected`]) before the call goes back to waiting (None: no limit).
    pub agent_connect_within: Option<Duration>,
    /// A call Careline places (`Some`): the called phone may ring this long before Careline
    /// gives up (CANCEL, cause `no_answer`). The call starts in [`Phase::Dialing`], and
    /// `ring` does not apply.
    pub dial_timeout: Option<Duration>,
    /// A queued callback Careline places for this agent (user name), whose leg is with the
    /// call from the start: once the patient answered and the call's flow (Connect's outbound
    /// whisper) has run to its end, the two are bridged. If the agent leaves first, the call
    /// ends (cause `agent_hangup`).
    pub callback_agent: Option<String>,
    /// A browser caller whose connection is lost (a tab reload, a network blip) may come
    /// back with a new one ([`Input::Confirmed`] again) within this long before the call
    /// ends with cause `connection_lost`; the call goes on meanwhile (its flow, its place in
    /// a queue, its agent). `None`: a lost connection ends the call at once.
    pub reconnect_grace: Option<Duration>,
    /// An agent whose browser connection is lost while they talk with the caller (a tab
    /// reload, a network blip) may come back ([`Input::AgentConnected`] again) within this
    /// long; the caller is on hold meanwhile (music). Past it, or with `None`, the caller goes
    /// back to the front of their queue ([`Output::ReturnToQueue`]).
    pub agent_reconnect_grace: Option<Duration>,
}

/// Where the call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Careline called out and waits for the far end to answer.
    Dialing,
    /// The caller hears ringing; the call is not answered yet.
    Ringing,
    /// The core asked the shell to answer; waiting for the caller's ACK.
    Answering,
    /// The contact flow runs: prompts, menus, lookups.
    Ivr,
    /// The contact holds a place in a queue (the hold flow runs meanwhile).
    Queued,
    /// An agent took the contact from its queue and is connecting; the caller still hears
    /// the hold flow and keeps the place until the agent is there.
    Offered,
    /// The caller talks with an agent: the two legs are bridged, the flow is over.
    Bridged,
    /// The agent put the caller on hold: the caller hears music, the agent hears nothing.
    Held,
    /// The caller keyed a visit PIN and is in a telehealth room (`careline:room-join`): the
    /// room has their leg, the flow is over; the call lasts until either side leaves.
    InRoom,
    /// Over; [`CallCore::ended`] says why.
    Ended,
}

/// What happened, as the shell saw it.
#[derive(Debug)]
pub enum Input {
    /// The 200 OK is out (or, for a call Careline placed, came in and was ACKed): media
    /// flows both ways from now on.
    Answered,
    /// A call Careline placed was not answered: the final SIP status, or `None` when nothing
    /// answered (the trunk unreachable). The cause is [`dial_cause`]'s.
    DialFailed(Option<u16>),
    /// The caller acknowledged the answer (ACK), or a browser's media is up: the flow
    /// starts (a browser back after [`Input::ConnectionLost`]: the call goes on).
    Confirmed,
    /// A browser caller's connection is gone (DTLS closed, ICE consent expired, or replaced
    /// by a new one that is still connecting): the call waits
    /// [`CallPolicy::reconnect_grace`] for it to come back.
    ConnectionLost,
    /// The caller pressed a key (RFC 4733, SIP INFO or in-band).
    Digit(Digit),
    /// The media leg finished or cut short a play.
    PlayEnded(PlayEnd),
    /// The audio of a [`Output::Render`], ready to play; speech that could not be rendered is
    /// left out.
    Rendered(PlayId, Vec<Arc<Prompt>>),
    /// A Lambda answered (its response body as JSON) or failed.
    Invoked(RequestId, Result<Value, String>),
    /// The patient store answered an [`Output::Identify`].
    Identified(RequestId, Identify),
    /// The queue took the contact (its place), or was full.
    Enqueued(Result<Ticket, AtCapacity>),
    /// A queue's figures (None: unknown queue).
    QueueMetrics(Option<QueueMetrics>),
    /// Recording control from outside the flow (the API, policy).
    Recording(RecordingControl),
    /// The recorder opened the recording asked for by [`RecordOp::Open`] (None: the recorder
    /// has stopped and nothing is recorded).
    RecordingOpened(Option<RecordingId>),
    /// The caller's side ended the call (BYE, CANCEL, no ACK, or the dialog went away).
    RemoteEnded(EndReason),
    /// Careline ends the call: an operator or shutdown, a dead media path (`rtp_timeout`),
    /// an internal fault; the cause is a metrics label.
    Hangup(&'static str),
    /// An agent (this user) took the contact from its queue and their leg is connecting. The
    /// core takes it only while queued (the phase becomes [`Phase::Offered`]); otherwise it
    /// answers [`Output::ReleaseAgent`].
    AgentOffered { agent: String },
    /// The agent's leg is connected: the core asks for the bridge.
    AgentConnected,
    /// The agent's leg went away or the agent hung up.
    AgentLeft,
    /// The agent's connection is lost (not a hang-up): a browser's DTLS closed or its ICE
    /// consent expired, a phone agent's RTP stopped, or a reloaded page is reconnecting.
    /// `may_return`: a browser, which may come back with a new connection within
    /// [`CallPolicy::agent_reconnect_grace`] (the caller on hold meanwhile); a phone cannot.
    AgentLost { may_return: bool },
    /// The agent transferred the caller to another queue, where `Ticket` holds their new
    /// place: the agent is released and the caller hears that queue's hold flow.
    Transferred(Ticket),
    /// The agent sends the caller to an outside number (a blind transfer), which the shell
    /// rings: the agent is released and the caller hears music until the number answers (its
    /// leg comes as an agent's: [`Input::AgentOffered`], [`Input::AgentConnected`]) or not
    /// (the shell puts the caller back in their queue: [`Input::Transferred`]).
    TransferOut,
    /// The agent puts the caller on hold (true) or takes them off it (false).
    Hold(bool),
    /// The agent mutes (true) or unmutes their microphone: the caller hears silence.
    Mute(bool),
    /// The agent hands the caller over to the party they consulted (a warm transfer): the
    /// agent is released, the caller (off hold) stays joined with that party, who takes
    /// the agent's place until the call ends.
    Handover,
    /// Who answered the call Careline placed (after [`Output::Screen`]).
    CallProgress(CallProgress),
    /// The callback asked for by [`Output::CreateCallback`] is kept, or why not.
    CallbackCreated(Result<(), String>),
    /// The room join the flow asked for (an [`Output::Invoke`] of `careline:room-join`, this
    /// request id) took the caller in: the flow ends there (phase [`Phase::InRoom`]). A PIN
    /// that opened nothing is answered as any function is ([`Input::Invoked`]).
    InRoom(RequestId),
}

/// Recording steps for the shell to carry out on the caller's media leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOp {
    /// Open a recording of these participants and attach it; answer with
    /// [`Input::RecordingOpened`].
    Open(Participants),
    Pause,
    Resume,
    /// Detach and seal the recording.
    Close,
}

/// What the shell must do.
#[derive(Debug)]
pub enum Output {
    /// Answer the call (open media, send 200 OK with the SDP answer), then feed
    /// [`Input::Answered`], or [`Input::Hangup`] if that failed.
    Answer,
    /// Turn this audio into prompts (the speech cache, else synthesis off the loop), then feed
    /// [`Input::Rendered`] with the same id.
    Render {
        id: PlayId,
        audio: Vec<Audio>,
    },
    /// Play to the caller; `barge_in`: a key stops it.
    Play {
        id: PlayId,
        prompts: Vec<Arc<Prompt>>,
        barge_in: bool,
    },
    /// POST `event` to the Lambda endpoint `function`; feed [`Input::Invoked`]. The core
    /// gives up by itself after `timeout`.
    Invoke {
        id: RequestId,
        function: Arc<str>,
        event: Value,
        timeout: Duration,
    },
    /// Look the caller up in the patient store; feed [`Input::Identified`].
    Identify {
        id: RequestId,
        query: IdentifyQuery,
    },
    /// Put the contact in a queue at `priority`; feed [`Input::Enqueued`].
    Enqueue {
        queue: Arc<str>,
        priority: crate::flow::queues::QueuePriority,
    },
    /// The contact's urgency in its queue changed (if it waits in one).
    Reprioritize(crate::flow::queues::QueuePriority),
    /// Tell routing which agents may take the contact (its routing criteria).
    SetCriteria(Arc<crate::flow::criteria::RoutingCriteria>),
    /// Read a queue's figures; feed [`Input::QueueMetrics`].
    QueueMetrics {
        queue: Arc<str>,
    },
    Record(RecordOp),
    /// Start or stop streaming the call's audio to the configured endpoint.
    Stream(bool),
    /// End the call from Careline's side (BYE once answered, a final response before).
    Hangup,
    /// Stop whatever plays to the caller and join the caller's leg with the agent's.
    Bridge,
    /// Whisper flows as the agent is joined: render and play `agent` on the agent's leg and
    /// `customer` on the caller's (each with its play id; either may be empty). Each hears
    /// their whisper instead of the other side while it plays.
    Whisper {
        agent: (PlayId, Vec<Audio>),
        customer: (PlayId, Vec<Audio>),
    },
    /// Close the agent's leg: the call is not (or no longer) theirs.
    ReleaseAgent,
    /// The agent's connection is lost and they are not coming back: place the caller at the
    /// front of their queue (priority 1, as `transfer_failed`) and feed
    /// [`Input::Transferred`], or, with no queue to take them, [`Input::AgentLeft`].
    ReturnToQueue,
    /// Hold (true): the caller's audio stops reaching the agent; off hold (false): what
    /// plays to the caller stops and the two hear each other again.
    Hold(bool),
    /// Play hold music to the caller (looped by the core: [`Input::PlayEnded`] with `id`
    /// asks for it again).
    PlayMusic {
        id: PlayId,
    },
    /// Stop (true) or resume carrying the agent's audio to the caller.
    MuteAgent(bool),
    /// Start answering-machine detection on the called phone's audio; feed
    /// [`Input::CallProgress`] once it knows who answered (for a machine, once its greeting
    /// is over).
    Screen,
    /// Keep a queued callback in this contact's place (its queue, urgency and age); feed
    /// [`Input::CallbackCreated`].
    CreateCallback(CallbackRequest),
}

/// The request the flow waits on, with the time Careline gives it.
#[derive(Debug, Clone, Copy)]
struct Pending {
    id: RequestId,
    deadline: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Recording {
    /// Known once the recorder opened it.
    id: Option<RecordingId>,
    paused: bool,
}

pub struct CallCore {
    policy: CallPolicy,
    phase: Phase,
    flow: FlowRun,
    outputs: VecDeque<Output>,
    /// When ringing ends.
    ring_until: Option<Instant>,
    /// When a call Careline placed that is still unanswered is given up.
    dial_until: Option<Instant>,
    /// When an answered call that is still unconfirmed is given up.
    confirm_by: Option<Instant>,
    /// When an offered agent who has not connected is given up.
    agent_by: Option<Instant>,
    /// When a browser caller whose connection was lost is given up.
    lost_until: Option<Instant>,
    /// When an agent whose connection was lost mid-call is given up, and whether the caller
    /// was on hold already (kept so when the agent is back).
    agent_lost_until: Option<(Instant, bool)>,
    /// The hold music playing to a held caller.
    music: Option<PlayId>,
    /// The play in progress and whether a key may cut it short.
    playing: Option<(PlayId, bool)>,
    next_id: u64,
    collector: Option<DigitCollector>,
    /// Digits pressed while no collection ran, oldest first.
    typed_ahead: VecDeque<Digit>,
    /// The terminator of an entry that completed at its full length, and until when a
    /// press of it still belongs to that entry: dropped then, not typed ahead into the next
    /// question (see [`DigitCollector::terminator_window`]).
    stray_terminator: Option<(Digit, Instant)>,
    /// The Lambda or lookup the flow waits on.
    pending: Option<Pending>,
    /// The flow's own timer (MessageParticipantIteratively's interrupt).
    timer: Option<Instant>,
    /// The contact's place in a queue, freed when the call ends.
    ticket: Option<Ticket>,
    recording: Option<Recording>,
    streaming: bool,
    /// The patient the flow identified; never logged.
    patient: Option<String>,
    recordings: Vec<RecordingId>,
    ended: Option<&'static str>,
    /// Each stay in a queue, for the contact record (a transfer starts the next).
    stays: Vec<QueueStay>,
    /// The agent connecting (between [`Input::AgentOffered`] and the bridge), or a
    /// callback's agent.
    offered_agent: Option<String>,
    /// A callback's agent's leg is connected (it may be before the patient answers).
    agent_ready: bool,
    /// An outside number rings for the caller (an agent's blind transfer).
    transferring_out: bool,
}

/// One stay of the contact in a queue: where, since when, and who answered it when. Kept for
/// the contact record (`calls::records`); names no patient.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueStay {
    pub queue: String,
    pub enqueued_at: jiff::Timestamp,
    /// When an agent was joined with the caller (None: nobody answered this stay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

impl CallCore {
    /// A call that has just arrived and will run `flow` for `contact`.
    pub fn new(
        env: Arc<Env>,
        flow: Arc<Flow>,
        contact: ContactData,
        policy: CallPolicy,
        now: Instant,
    ) -> CallCore {
        let mut core = CallCore {
            phase: Phase::Ringing,
            flow: FlowRun::new(env, flow, contact),
            outputs: VecDeque::new(),
            ring_until: None,
            dial_until: None,
            confirm_by: None,
            agent_by: None,
            lost_until: None,
            agent_lost_until: None,
            music: None,
            playing: None,
            next_id: 0,
            collector: None,
            typed_ahead: VecDeque::new(),
            stray_terminator: None,
            pending: None,
            timer: None,
            ticket: None,
            recording: None,
            streaming: false,
            patient: None,
            recordings: Vec::new(),
            ended: None,
            stays: Vec::new(),
            offered_agent: None,
            agent_ready: false,
            transferring_out: false,
            policy,
        };
        core.offered_agent = core.policy.callback_agent.clone();
        if let Some(d) = core.policy.dial_timeout {
            core.phase = Phase::Dialing;
            core.dial_until = Some(now + d);
        } else if core.policy.ring.is_zero() {
            core.answer(now);
        } else {
            core.ring_until = Some(now + core.policy.ring);
        }
        core
    }

    /// A browser caller's connection is lost and the call waits for it to come back.
    pub fn reconnecting(&self) -> bool {
        self.lost_until.is_some()
    }

    /// An outside number rings for the caller (an agent's blind transfer).
    pub fn transferring_out(&self) -> bool {
        self.transferring_out
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Why the call ended (a metrics label), once it has.
    pub fn ended(&self) -> Option<&'static str> {
        self.ended
    }

    /// The contact as the flow left it (attributes, queue).
    pub fn contact(&self) -> &ContactData {
        self.flow.contact()
    }

    /// What the audit trail and the contact history keep of a call that ended: the cause,
    /// the patient identified, recordings, the reason the flow noted
    /// (`$.Attributes.contact_reason` or `reason`) and the queue it ended in.
    pub fn call_end(
        &self,
        call_id: &str,
        channel: &'static str,
        answered_at: jiff::Timestamp,
        duration: Duration,
    ) -> super::CallEnd {
        let contact = self.flow.contact();
        let reason = ["contact_reason", "reason"]
            .iter()
            .find_map(|k| contact.attributes.get(*k))
            .filter(|r| !r.is_empty())
            .cloned();
        super::CallEnd {
            call_id: call_id.to_string(),
            cause: self.ended.unwrap_or("other"),
            answered_at,
            duration,
            patient: self.patient.clone(),
            recordings: self.recordings.iter().map(|r| r.to_string()).collect(),
            reason,
            queue: contact.queue.as_deref().map(str::to_string),
            direction: if self.policy.dial_timeout.is_some() {
                "outbound"
            } else {
                "inbound"
            },
            channel,
            queue_stays: self.stays.clone(),
        }
    }

    /// Each stay in a queue so far (a transfer starts the next).
    pub fn queue_stays(&self) -> &[QueueStay] {
        &self.stays
    }

    /// The patient the IVR identified, if it did.
    pub fn patient(&self) -> Option<&str> {
        self.patient.as_deref()
    }

    /// Every recording made during the call.
    pub fn recordings(&self) -> &[RecordingId] {
        &self.recordings
    }

    /// Whether audio is streaming to the configured endpoint.
    pub fn is_streaming(&self) -> bool {
        self.streaming
    }

    /// The recording in progress: its id (once open) and whether it is paused.
    pub fn recording(&self) -> Option<(Option<RecordingId>, bool)> {
        self.recording.map(|r| (r.id, r.paused))
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The earliest moment the core wants [`CallCore::handle_timeout`]: one answer for every
    /// timer the call has.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended.is_some() {
            return None;
        }
        [
            self.ring_until,
            self.dial_until,
            self.confirm_by,
            self.agent_by,
            self.lost_until,
            self.agent_lost_until.map(|(t, _)| t),
            self.collector.as_ref().map(|c| c.deadline()),
            self.pending.map(|p| p.deadline),
            self.timer,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whatever was due by `now`.
    pub fn handle_timeout(&mut self, now: Now) {
        if self.ended.is_some() {
            return;
        }
        let t = now.mono;
        if self.ring_until.is_some_and(|d| d <= t) {
            self.ring_until = None;
            self.answer(t);
        }
        if self.dial_until.is_some_and(|d| d <= t) {
            info!("no answer: giving up the call");
            self.end("no_answer", true);
            return;
        }
        if self.confirm_by.is_some_and(|d| d <= t) {
            info!("the caller never confirmed the answer: hanging up");
            self.end("connect_timeout", true);
            return;
        }
        if self.lost_until.is_some_and(|d| d <= t) {
            info!("the caller's connection did not come back: hanging up");
            self.end("connection_lost", true);
            return;
        }
        if self.agent_lost_until.is_some_and(|(d, _)| d <= t) {
            info!("the agent's connection did not come back: the caller goes back to the queue");
            self.agent_lost_until = None;
            self.outputs.push_back(Output::ReturnToQueue);
        }
        if self.agent_by.is_some_and(|d| d <= t) {
            info!("the agent did not connect in time");
            self.agent_gone();
            if self.ended.is_some() {
                return;
            }
        }
        if let Some(outcome) = self.collector.as_mut().and_then(|c| c.on_time(t)) {
            self.collector = None;
            self.flow.handle(Event::Collected(outcome), now);
        }
        if self.pending.is_some_and(|p| p.deadline <= t) {
            self.pending = None;
            info!("the flow's request ran out of time");
            self.flow
                .handle(Event::Invoked(Err("timed out".into())), now);
        }
        if self.timer.is_some_and(|d| d <= t) {
            self.timer = None;
            self.flow.handle(Event::Timer, now);
        }
        self.run_effects(now);
    }

    pub fn handle(&mut self, input: Input, now: Now) {
        if self.ended.is_some() {
            return;
        }
        match input {
            Input::Answered => {
                if self.phase == Phase::Dialing {
                    self.dial_until = None;
                    self.phase = Phase::Answering;
                }
                if self.policy.record_all {
                    self.record(RecordingControl::Start(Participants::BOTH));
                }
            }
            Input::Confirmed => {
                self.confirm_by = None;
                if self.lost_until.take().is_some() {
                    info!("the caller's connection is back");
                }
                if self.phase == Phase::Answering {
                    self.phase = Phase::Ivr;
                    self.flow.handle(Event::Started, now);
                }
            }
            Input::Digit(digit) => self.on_digit(digit, now),
            Input::PlayEnded(end) => {
                let (id, interrupted) = match end {
                    PlayEnd::Finished(id) => (id, false),
                    PlayEnd::Interrupted(id) => (id, true),
                };
                if self.music == Some(id) {
                    // The music ran out while the caller still waits: once more.
                    let waiting = self.phase == Phase::Held
                        || (self.phase == Phase::Offered && self.transferring_out);
                    if !interrupted && waiting {
                        self.play_music();
                    }
                } else {
                    self.play_ended(id, interrupted, now);
                }
            }
            Input::Rendered(id, prompts) => {
                if let Some((current, barge_in)) = self.playing
                    && current == id
                {
                    if prompts.is_empty() {
                        self.play_ended(id, false, now);
                    } else {
                        self.outputs.push_back(Output::Play {
                            id,
                            prompts,
                            barge_in,
                        });
                    }
                }
            }
            Input::Invoked(id, result) => {
                if self.take_pending(id) {
                    self.flow.handle(Event::Invoked(result), now);
                }
            }
            Input::Identified(id, found) => {
                if self.take_pending(id) {
                    if let Some(patient) = found.patient_id() {
                        // The id stays out of the log: the audit trail ties calls to patients.
                        info!(
                            verified = matches!(found, Identify::Found { verified: true, .. }),
                            "caller identified"
                        );
                        self.patient = Some(patient.to_string());
                    }
                    self.flow.handle(Event::Invoked(found.to_external()), now);
                }
            }
            Input::Enqueued(result) => {
                let event = match result {
                    Ok(ticket) => {
                        info!(queue = %ticket.queue().name, "caller queued");
                        self.stays.push(QueueStay {
                            queue: ticket.queue().name.to_string(),
                            enqueued_at: now.wall,
                            answered_at: None,
                            agent: None,
                        });
                        self.ticket = Some(ticket);
                        self.phase = Phase::Queued;
                        Event::Enqueued(Ok(()))
                    }
                    Err(e) => Event::Enqueued(Err(e)),
                };
                self.flow.handle(event, now);
            }
            Input::QueueMetrics(m) => self.flow.handle(Event::QueueMetrics(m), now),
            Input::CallProgress(p) => self.flow.handle(Event::CallProgress(Some(p)), now),
            Input::CallbackCreated(r) => self.flow.handle(Event::CallbackCreated(r), now),
            Input::Recording(ctl) => self.record(ctl),
            Input::RecordingOpened(id) => match (id, &mut self.recording) {
                (Some(id), Some(r)) if r.id.is_none() => {
                    info!(recording = %id, "recording started");
                    r.id = Some(id);
                    self.recordings.push(id);
                }
                (None, Some(r)) if r.id.is_none() => {
                    warn!("recording requested, but the recorder has stopped");
                    self.recording = None;
                }
                _ => {}
            },
            Input::DialFailed(code) => {
                if self.phase == Phase::Dialing {
                    self.end(dial_cause(code), false);
                }
                return;
            }
            Input::RemoteEnded(why) => {
                let bye_due = !matches!(
                    why,
                    EndReason::CallerBye | EndReason::Cancelled | EndReason::Timeout
                );
                self.end(why.as_str(), bye_due);
                return;
            }
            Input::Hangup(cause) => {
                self.end(cause, true);
                return;
            }
            Input::ConnectionLost => {
                // Only a call that was up may wait for its caller: one that never connected
                // has nobody to come back.
                let grace = self.policy.reconnect_grace.filter(|_| {
                    !matches!(
                        self.phase,
                        Phase::Answering | Phase::Ringing | Phase::Dialing
                    )
                });
                match grace {
                    Some(grace) => {
                        if self.lost_until.is_none() {
                            info!("the caller's connection is lost: waiting for it to come back");
                            self.lost_until = Some(now.mono + grace);
                        }
                    }
                    None => {
                        info!("the caller's connection is lost: hanging up");
                        self.end("connection_lost", true);
                        return;
                    }
                }
            }
            Input::AgentOffered { agent } => {
                if self.phase == Phase::Offered && self.transferring_out {
                    // The outside number's leg: no desk agent.
                } else if self.phase == Phase::Queued {
                    info!("an agent took the call from its queue");
                    self.offered_agent = Some(agent);
                    self.phase = Phase::Offered;
                    self.agent_by = self.policy.agent_connect_within.map(|d| now.mono + d);
                } else {
                    self.outputs.push_back(Output::ReleaseAgent);
                }
            }
            Input::AgentConnected => {
                if let Some((_, held)) = self.agent_lost_until.take() {
                    info!("the agent's connection is back");
                    if !held && self.phase == Phase::Held {
                        self.phase = Phase::Bridged;
                        self.music = None;
                        self.outputs.push_back(Output::Hold(false));
                    }
                } else if self.phase == Phase::Offered {
                    self.bridge(now);
                } else if self.policy.callback_agent.is_some() {
                    // A callback's agent, ready before the patient's flow is over.
                    self.agent_ready = true;
                }
            }
            Input::TransferOut => {
                if matches!(self.phase, Phase::Bridged | Phase::Held) {
                    info!("the agent transferred the caller to an outside number");
                    self.agent_lost_until = None;
                    self.outputs.push_back(Output::ReleaseAgent);
                    if self.phase == Phase::Held {
                        // The caller's audio flows again, to whoever answers.
                        self.outputs.push_back(Output::Hold(false));
                    }
                    self.phase = Phase::Offered;
                    self.offered_agent = None;
                    self.transferring_out = true;
                    self.play_music();
                }
            }
            Input::Transferred(ticket) => {
                let transferring = self.phase == Phase::Offered && self.transferring_out;
                if matches!(self.phase, Phase::Bridged | Phase::Held) || transferring {
                    self.transferring_out = false;
                    let queue = ticket.queue().name.clone();
                    info!(%queue, "the agent transferred the caller to a queue");
                    self.stays.push(QueueStay {
                        queue: queue.to_string(),
                        enqueued_at: now.wall,
                        answered_at: None,
                        agent: None,
                    });
                    self.outputs.push_back(Output::ReleaseAgent);
                    if self.phase == Phase::Held {
                        // The caller's audio must reach the next agent: no longer held.
                        self.outputs.push_back(Output::Hold(false));
                    }
                    self.agent_lost_until = None;
                    self.music = None;
                    self.ticket = Some(ticket);
                    self.phase = Phase::Queued;
                    self.flow.requeued(queue, now);
                }
            }
            Input::Handover => {
                if matches!(self.phase, Phase::Bridged | Phase::Held) {
                    info!("the agent handed the caller over to the party they consulted");
                    self.agent_lost_until = None;
                    self.outputs.push_back(Output::ReleaseAgent);
                    if self.phase == Phase::Held {
                        self.outputs.push_back(Output::Hold(false));
                    }
                    self.phase = Phase::Bridged;
                    self.music = None;
                }
            }
            // The agent is away (their connection lost): nobody to take the caller off hold.
            Input::Hold(_) if self.agent_lost_until.is_some() => {}
            Input::Hold(on) => match (self.phase, on) {
                (Phase::Bridged, true) => {
                    info!("caller on hold");
                    self.phase = Phase::Held;
                    self.outputs.push_back(Output::Hold(true));
                    self.play_music();
                }
                (Phase::Held, false) => {
                    info!("caller off hold");
                    self.phase = Phase::Bridged;
                    self.music = None;
                    self.outputs.push_back(Output::Hold(false));
                }
                _ => {}
            },
            Input::Mute(on) => {
                if matches!(self.phase, Phase::Bridged | Phase::Held) {
                    self.outputs.push_back(Output::MuteAgent(on));
                }
            }
            Input::InRoom(id) => {
                if self.take_pending(id) && self.phase == Phase::Ivr {
                    info!("the caller is in a telehealth room: the flow is over");
                    self.phase = Phase::InRoom;
                    self.collector = None;
                    self.timer = None;
                    self.playing = None;
                    self.music = None;
                    self.typed_ahead.clear();
                }
                return;
            }
            Input::AgentLost { may_return } => {
                if !matches!(self.phase, Phase::Bridged | Phase::Held) {
                    // Not talking yet (connecting, or a callback's agent before the
                    // patient): as if they had left.
                    return self.handle(Input::AgentLeft, now);
                }
                match self.policy.agent_reconnect_grace.filter(|_| may_return) {
                    Some(grace) => {
                        if self.agent_lost_until.is_none() {
                            info!("the agent's connection is lost: the caller holds for them");
                            let held = self.phase == Phase::Held;
                            self.agent_lost_until = Some((now.mono + grace, held));
                            if !held {
                                self.phase = Phase::Held;
                                self.outputs.push_back(Output::Hold(true));
                                self.play_music();
                            }
                        }
                    }
                    None => {
                        info!("the agent's connection is lost: the caller goes back to the queue");
                        self.agent_lost_until = None;
                        self.outputs.push_back(Output::ReturnToQueue);
                    }
                }
            }
            Input::AgentLeft => match self.phase {
                Phase::Bridged | Phase::Held => {
                    self.outputs.push_back(Output::ReleaseAgent);
                    self.end("agent_hangup", true);
                    return;
                }
                Phase::Offered => self.agent_gone(),
                Phase::Dialing | Phase::Ringing | Phase::Answering | Phase::Ivr
                    if self.policy.callback_agent.is_some() =>
                {
                    self.agent_gone();
                    return;
                }
                _ => {}
            },
        }
        self.run_effects(now);
    }

    /// The agent is there: the two legs are joined.
    fn bridge(&mut self, now: Now) {
        info!("agent connected: bridged");
        self.phase = Phase::Bridged;
        self.agent_by = None;
        self.music = None;
        if std::mem::take(&mut self.transferring_out) {
            // An outside number answered: no queue stay of its own, nothing else to end.
            info!("the outside number answered");
            self.outputs.push_back(Output::Bridge);
            return;
        }
        if self.stays.is_empty()
            && let Some(queue) = &self.contact().queue
        {
            // A callback: its stay is the one the patient asked from; answered now.
            self.stays.push(QueueStay {
                queue: queue.to_string(),
                enqueued_at: now.wall,
                answered_at: None,
                agent: None,
            });
        }
        if let Some(stay) = self.stays.last_mut() {
            stay.answered_at = Some(now.wall);
            stay.agent = self.offered_agent.take();
        }
        // The contact leaves its queue, and its flow is over: nothing it asked for is
        // waited on any more.
        if let Some(ticket) = self.ticket.take() {
            ticket.answered(now.mono);
        }
        self.collector = None;
        self.pending = None;
        self.timer = None;
        self.playing = None;
        self.typed_ahead.clear();
        self.outputs.push_back(Output::Bridge);
        if self.policy.callback_agent.is_none() {
            let agent = self.flow.whisper("AgentWhisper", now);
            let customer = self.flow.whisper("CustomerWhisper", now);
            if !agent.is_empty() || !customer.is_empty() {
                info!("whisper flows as the agent is joined");
                let (a, c) = (self.next_id(), self.next_id());
                self.outputs.push_back(Output::Whisper {
                    agent: (a, agent),
                    customer: (c, customer),
                });
            }
        }
    }

    /// A callback's flow is over: the agent joins (at once if their leg is connected).
    fn join_callback_agent(&mut self, now: Now) {
        self.phase = Phase::Offered;
        if self.agent_ready {
            self.bridge(now);
        } else {
            self.agent_by = self.policy.agent_connect_within.map(|d| now.mono + d);
        }
    }

    fn play_music(&mut self) {
        let id = self.next_id();
        self.music = Some(id);
        self.outputs.push_back(Output::PlayMusic { id });
    }

    /// The agent who took the contact is not coming: it waits in its place again.
    fn agent_gone(&mut self) {
        self.agent_by = None;
        self.offered_agent = None;
        if self.transferring_out {
            // The shell puts the caller back in their queue, or ends the call.
            return;
        }
        if self.policy.callback_agent.is_some() {
            // Nobody to join the patient with: the callback's call ends.
            self.outputs.push_back(Output::ReleaseAgent);
            self.end("agent_hangup", true);
            return;
        }
        if self.phase == Phase::Offered {
            self.phase = Phase::Queued;
            if let Some(ticket) = &self.ticket {
                ticket.unclaim();
            }
            self.outputs.push_back(Output::ReleaseAgent);
        }
    }

    fn answer(&mut self, now: Instant) {
        self.phase = Phase::Answering;
        self.confirm_by = self.policy.confirm_within.map(|d| now + d);
        self.outputs.push_back(Output::Answer);
    }

    fn end(&mut self, cause: &'static str, hang_up: bool) {
        if hang_up {
            self.outputs.push_back(Output::Hangup);
        }
        self.ended = Some(cause);
        self.phase = Phase::Ended;
        self.collector = None;
        self.pending = None;
        self.timer = None;
        self.ring_until = None;
        self.dial_until = None;
        self.confirm_by = None;
        self.agent_by = None;
        self.lost_until = None;
        self.agent_lost_until = None;
        // Leaving frees the contact's place in its queue.
        self.ticket = None;
    }

    fn take_pending(&mut self, id: RequestId) -> bool {
        if self.pending.is_some_and(|p| p.id == id) {
            self.pending = None;
            true
        } else {
            false // late: the flow already went on without it
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn play_ended(&mut self, id: PlayId, interrupted: bool, now: Now) {
        if self.playing.is_some_and(|(current, _)| current == id) {
            self.playing = None;
            self.flow.handle(Event::PlayDone { interrupted }, now);
        }
    }

    fn on_digit(&mut self, digit: Digit, now: Now) {
        if let Some((t, until)) = self.stray_terminator.take()
            && t == digit
            && now.mono <= until
        {
            return;
        }
        match &mut self.collector {
            Some(c) => {
                if let Some(outcome) = c.on_digit(digit, now.mono) {
                    if let Some(c) = self.collector.take() {
                        self.entry_done(&c, &outcome, now.mono);
                    }
                    self.flow.handle(Event::Collected(outcome), now);
                }
            }
            None => {
                if self.typed_ahead.len() >= TYPE_AHEAD {
                    self.typed_ahead.pop_front();
                }
                self.typed_ahead.push_back(digit);
            }
        }
    }

    /// A collection is over: one that completed at its full length leaves its terminator to
    /// be dropped, typed ahead already or pressed within the time allowed between keys.
    fn entry_done(&mut self, collector: &DigitCollector, outcome: &CollectOutcome, now: Instant) {
        let Some((t, window)) = collector.terminator_window() else {
            return;
        };
        if !matches!(outcome, CollectOutcome::Complete(_)) {
            return;
        }
        if self.typed_ahead.front() == Some(&t) {
            self.typed_ahead.pop_front();
        } else {
            self.stray_terminator = Some((t, now + window));
        }
    }

    /// Call-level recording control, whoever asks (policy, flow, API). Starting while paused
    /// resumes; starting after a stop makes a new recording.
    fn record(&mut self, ctl: RecordingControl) {
        let op = match (ctl, &mut self.recording) {
            (RecordingControl::Start(_) | RecordingControl::Resume, Some(r)) => {
                if !r.paused {
                    return;
                }
                r.paused = false;
                RecordOp::Resume
            }
            (RecordingControl::Start(participants), None) => {
                self.recording = Some(Recording {
                    id: None,
                    paused: false,
                });
                RecordOp::Open(participants)
            }
            (RecordingControl::Pause, Some(r)) => {
                if r.paused {
                    return;
                }
                r.paused = true;
                RecordOp::Pause
            }
            (RecordingControl::Stop, Some(_)) => {
                self.recording = None;
                RecordOp::Close
            }
            (RecordingControl::Pause | RecordingControl::Resume | RecordingControl::Stop, None) => {
                return;
            }
        };
        self.outputs.push_back(Output::Record(op));
    }

    fn stream(&mut self, enabled: bool) {
        match (self.policy.streaming, enabled) {
            (true, true) if !self.streaming => {
                self.streaming = true;
                self.outputs.push_back(Output::Stream(true));
                info!("media streaming started");
            }
            (_, false) if self.streaming => {
                self.streaming = false;
                self.outputs.push_back(Output::Stream(false));
                info!("media streaming stopped");
            }
            (false, true) => {
                info!("the flow starts media streaming, but media_streaming.url is not set")
            }
            _ => {}
        }
    }

    /// Turns what the flow asked into outputs, until it waits for an event.
    fn run_effects(&mut self, now: Now) {
        while self.ended.is_none()
            && !matches!(self.phase, Phase::Bridged | Phase::Held)
            && let Some(effect) = self.flow.poll_effect()
        {
            match effect {
                Effect::Play { audio, barge_in } => {
                    let id = self.next_id();
                    self.playing = Some((id, barge_in));
                    self.outputs.push_back(Output::Render { id, audio });
                }
                Effect::Collect(spec) => {
                    let mut collector = DigitCollector::new(spec, now.mono);
                    let mut done = None;
                    while let Some(d) = self.typed_ahead.pop_front() {
                        if let Some(outcome) = collector.on_digit(d, now.mono) {
                            done = Some(outcome);
                            break;
                        }
                    }
                    match done {
                        Some(outcome) => {
                            self.entry_done(&collector, &outcome, now.mono);
                            self.flow.handle(Event::Collected(outcome), now);
                        }
                        None => self.collector = Some(collector),
                    }
                }
                Effect::Invoke {
                    function,
                    event,
                    timeout,
                } => {
                    let id = self.next_id();
                    self.pending = Some(Pending {
                        id,
                        deadline: now.mono + timeout,
                    });
                    self.outputs.push_back(Output::Invoke {
                        id,
                        function,
                        event,
                        timeout,
                    });
                }
                Effect::Identify { event, timeout } => {
                    let id = self.next_id();
                    self.pending = Some(Pending {
                        id,
                        deadline: now.mono + timeout,
                    });
                    self.outputs.push_back(Output::Identify {
                        id,
                        query: IdentifyQuery::from_event(&event),
                    });
                }
                Effect::Enqueue { queue } => {
                    let priority = self.contact().priority;
                    self.outputs.push_back(Output::Enqueue { queue, priority })
                }
                Effect::Reprioritize(p) => self.outputs.push_back(Output::Reprioritize(p)),
                Effect::SetCriteria(c) => self.outputs.push_back(Output::SetCriteria(c)),
                Effect::QueueMetrics { queue } => {
                    self.outputs.push_back(Output::QueueMetrics { queue })
                }
                Effect::SetRecording(behavior) => match recording_intent(&behavior) {
                    Some(ctl) => self.record(ctl),
                    None => info!(
                        "UpdateContactRecordingBehavior without RecordedParticipants: ignored"
                    ),
                },
                Effect::MediaStreaming { enabled } => self.stream(enabled),
                Effect::Timer(d) => self.timer = Some(now.mono + d),
                // Only a call Careline placed has someone, or something, to tell apart.
                Effect::CheckCallProgress if self.policy.dial_timeout.is_some() => {
                    self.outputs.push_back(Output::Screen)
                }
                Effect::CheckCallProgress => self.flow.handle(Event::CallProgress(None), now),
                Effect::CreateCallback(request) => {
                    self.outputs.push_back(Output::CreateCallback(request))
                }
                Effect::Disconnect => self.end(EndReason::OurBye.as_str(), true),
                Effect::Ended if self.policy.callback_agent.is_some() => {
                    self.join_callback_agent(now)
                }
                Effect::Ended => self.end(EndReason::OurBye.as_str(), true),
            }
        }
    }
}

/// How a call Careline placed ended without an answer, as a metrics label (and the error a
/// workflow sees): from the final SIP status (RFC 3261 §21), `None` when nothing answered.
pub fn dial_cause(code: Option<u16>) -> &'static str {
    match code {
        None => "unreachable",
        Some(486 | 600) => "busy",
        Some(603) => "declined",
        Some(404 | 410 | 484 | 604) => "not_found",
        Some(408 | 480 | 487) => "no_answer",
        Some(401 | 407) => "trunk_auth",
        Some(500..=599) => "trunk_error",
        Some(_) => "refused",
    }
}

/// UpdateContactRecordingBehavior's `RecordingBehavior.RecordedParticipants`: `Customer` is
/// the caller's channel, `Agent` the other side (what the caller hears: prompts today, agents
/// later); an empty list stops recording. `None` when the parameter is absent.
fn recording_intent(behavior: &Value) -> Option<RecordingControl> {
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
#[path = "core_tests.rs"]
mod tests;
