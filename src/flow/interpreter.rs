//! The flow interpreter, one per call, sans-IO: fed [`Event`]s with the time, it runs
//! actions until one has to wait for the outside world, and leaves [`Effect`]s to drain.
//! It never reads a clock, touches a socket or spawns; the call task does all of that.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tracing::{info, warn};

use super::attributes::ContactData;
use super::catalog::Catalog;
use super::collect::{CollectOutcome, CollectSpec};
use super::hours::Hours;
use super::program::{
    Action, Flow, InputMode, Kind, Message, Metric, PhoneFormat, Ref, ResponseType,
};
use super::queues::{AtCapacity, QueueMetrics};
use super::resources::{ResourceKind, Resources};
use super::template::Template;
use super::voices::{Voice, Voices};
use crate::media::dtmf::Digit;
use crate::media::prompt::Prompt;

/// Actions run for one event before the interpreter gives up on a flow that loops without
/// ever waiting (a Compare/UpdateContactAttributes cycle would otherwise spin a core).
const MAX_STEPS: usize = 1000;
/// How long GetCustomerProfile waits for the patient store.
const PROFILE_TIMEOUT: Duration = Duration::from_secs(8);

/// Largest Lambda response Connect accepts.
pub const MAX_LAMBDA_RESPONSE: usize = 32 * 1024;

/// What every call's interpreter shares, built once at start.
#[derive(Debug)]
pub struct Env {
    pub catalog: Catalog,
    pub resources: Resources,
    pub hours: HashMap<String, Hours>,
    /// Queue name -> (hold flow, hours name), from `[queues.*]`.
    pub queues: HashMap<String, (Option<String>, Option<String>)>,
    pub voices: Voices,
    /// Log every action of every flow (`flows.logging`), not only where a flow enables it.
    pub log_all: bool,
}

/// The time, as the shell read it.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub wall: jiff::Timestamp,
}

impl Now {
    pub fn new(mono: Instant, wall: jiff::Timestamp) -> Now {
        Now { mono, wall }
    }
}

/// Something to play: a prompt from the library, or speech the shell synthesizes (or finds
/// in the TTS cache, where static texts were put at load).
#[derive(Debug, Clone)]
pub enum Audio {
    Prompt(Arc<Prompt>),
    Speech {
        voice: Arc<Voice>,
        text: Arc<str>,
        ssml: bool,
    },
}

#[derive(Debug, Clone)]
pub enum Event {
    /// The call is answered and media flows.
    Started,
    /// The last `Play` ended (barge-in: interrupted).
    PlayDone { interrupted: bool },
    /// The last `Collect` ended.
    Collected(CollectOutcome),
    /// The last `Invoke` answered: the response body as JSON, or why it failed.
    Invoked(Result<Value, String>),
    /// The last `Enqueue` answered.
    Enqueued(Result<(), AtCapacity>),
    /// The last `QueueMetrics` answered (None: unknown queue).
    QueueMetrics(Option<QueueMetrics>),
    /// The last `Timer` fired.
    Timer,
    /// Who answered, for the last `CheckCallProgress` (None: the call was not placed by
    /// Careline, so there is nothing to tell: the action's error branch).
    CallProgress(Option<CallProgress>),
    /// The last `CreateCallback` answered: the callback is kept (durably), or why not.
    CallbackCreated(Result<(), String>),
}

/// A queued callback the flow asks for (CreateCallbackContact): kept by routing in the
/// contact's place, and the patient called back when an agent takes it.
#[derive(Debug, Clone)]
pub struct CallbackRequest {
    pub queue: Arc<str>,
    /// Dialable (checked); PHI, never logged.
    pub number: String,
    /// The contact's urgency, which the callback keeps.
    pub priority: super::queues::QueuePriority,
    pub initial_delay: Duration,
    pub max_attempts: u32,
    pub retry_delay: Duration,
    /// The flow the patient hears on answering; `None`: the configured default.
    pub flow: Option<Arc<str>>,
    /// The caller's language as the flow noted it (`$.Attributes.language`), which the
    /// callback's flow reads the same way.
    pub language: Option<String>,
}

/// CheckOutboundCallStatus's outcomes, named as Connect names its conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallProgress {
    /// A person answered.
    CallAnswered,
    /// A voicemail answered and its beep was heard.
    VoicemailBeep,
    /// A voicemail answered (its greeting is over), no beep told.
    VoicemailNoBeep,
    /// Neither could be told.
    NotDetected,
}

impl CallProgress {
    pub fn as_str(self) -> &'static str {
        match self {
            CallProgress::CallAnswered => "CallAnswered",
            CallProgress::VoicemailBeep => "VoicemailBeep",
            CallProgress::VoicemailNoBeep => "VoicemailNoBeep",
            CallProgress::NotDetected => "NotDetected",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Effect {
    Play {
        audio: Vec<Audio>,
        barge_in: bool,
    },
    Collect(CollectSpec),
    /// POST `event` to the Lambda endpoint `function` (a `[lambda.NAME]`), within `timeout`.
    Invoke {
        function: Arc<str>,
        event: Value,
        timeout: Duration,
    },
    /// Look the caller up in the patient store (GetCustomerProfile, or a Lambda step naming
    /// the `careline:patient-lookup` built-in); `event` is the Lambda-shaped request.
    Identify {
        event: Value,
        timeout: Duration,
    },
    Enqueue {
        queue: Arc<str>,
    },
    /// The contact's urgency changed (it is in `contact.priority` too, for a later Enqueue):
    /// tell its queue, if it waits in one.
    Reprioritize(super::queues::QueuePriority),
    /// The contact's routing criteria (UpdateRoutingCriteria): tell routing, before the
    /// contact enters a queue or while it waits in one.
    SetCriteria(Arc<super::criteria::RoutingCriteria>),
    QueueMetrics {
        queue: Arc<str>,
    },
    /// UpdateContactRecordingBehavior: the intent (recording itself is another module).
    SetRecording(Arc<Value>),
    /// Start or stop streaming the call's audio to the configured WebSocket.
    MediaStreaming {
        enabled: bool,
    },
    /// Feed `Event::Timer` after this long.
    Timer(Duration),
    /// Tell who answered the call Careline placed (answering-machine detection); feed
    /// `Event::CallProgress`.
    CheckCallProgress,
    /// Keep a queued callback; feed `Event::CallbackCreated`.
    CreateCallback(CallbackRequest),
    /// DisconnectParticipant, or a flow that cannot go on: hang up.
    Disconnect,
    /// The flow ran to its end (EndFlowExecution, the last action) without a transfer: a call
    /// hangs up, but a callback's flow (Connect's outbound whisper) joins the agent now.
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    NotStarted,
    /// A Play; then go on with the action's NextAction.
    PlayThenNext,
    /// A GetParticipantInput prompt; then collect.
    PlayThenCollect,
    /// MessageParticipantIteratively: replay when done.
    Iterating,
    Collect,
    Invoke(ResponseType),
    /// GetCustomerProfile's lookup.
    Profile,
    Enqueue,
    Metrics(Metric),
    /// GetMetricData waits for the queue's figures.
    AllMetrics,
    /// CheckOutboundCallStatus: who answered.
    CallProgress,
    /// CreateCallbackContact: the callback being kept.
    Callback,
    /// In a queue with nothing left to run (until routing brings an agent).
    Idle,
    Done,
}

struct Frame {
    flow: Arc<Flow>,
    pc: usize,
    flow_attributes: HashMap<String, String>,
}

enum Step {
    Go(Option<usize>, &'static str, Option<usize>),
    Wait(Wait),
    /// The frame stack changed; continue with the new top.
    Jumped,
    /// Hang up (DisconnectParticipant, or the flow cannot go on).
    Stop,
    /// The flow ran to its end.
    End,
}

/// One call's run of a flow.
pub struct FlowRun {
    env: Arc<Env>,
    stack: Vec<Frame>,
    pub contact: ContactData,
    voice: Arc<Voice>,
    wait: Wait,
    effects: VecDeque<Effect>,
    /// Loop counters by (flow, action).
    loops: HashMap<(usize, usize), u32>,
    /// Event hooks set by UpdateContactEventHooks: hook name -> flow name.
    hooks: HashMap<String, Arc<str>>,
    logging: bool,
    action_started: Option<Instant>,
    in_queue: bool,
}

fn flow_key(f: &Arc<Flow>) -> usize {
    Arc::as_ptr(f) as usize
}

impl FlowRun {
    pub fn new(env: Arc<Env>, flow: Arc<Flow>, contact: ContactData) -> FlowRun {
        let voice = env.voices.default.clone();
        let start = flow.start;
        FlowRun {
            stack: vec![Frame {
                flow,
                pc: start,
                flow_attributes: HashMap::new(),
            }],
            contact,
            voice,
            wait: Wait::NotStarted,
            effects: VecDeque::new(),
            loops: HashMap::new(),
            hooks: HashMap::new(),
            logging: env.log_all,
            action_started: None,
            in_queue: false,
            env,
        }
    }

    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// The contact as the flow left it (attributes, queue) for what outlives the flow.
    pub fn contact(&self) -> &ContactData {
        &self.contact
    }

    pub fn is_done(&self) -> bool {
        self.wait == Wait::Done
    }

    /// The voice in effect (UpdateContactTextToSpeechVoice).
    pub fn voice(&self) -> &Arc<Voice> {
        &self.voice
    }

    /// What the whisper flow set as event hook `hook` (`AgentWhisper`, `CustomerWhisper`)
    /// says, for the contact as it is now: Connect's whisper flows play messages to one side
    /// as the agent is joined (the queue's name to the agent, "connecting you to a nurse" to
    /// the caller). The flow runs to its end at once: its messages are collected, not
    /// waited on, and what it would wait for (input, after its prompt; a Lambda) ends it
    /// there. Empty: no whisper.
    pub fn whisper(&self, hook: &str, now: Now) -> Vec<Audio> {
        let Some(flow) = self
            .hooks
            .get(hook)
            .and_then(|name| self.env.catalog.get(name).cloned())
        else {
            return Vec::new();
        };
        let mut run = FlowRun::new(self.env.clone(), flow, self.contact.clone());
        run.voice = self.voice.clone();
        run.handle(Event::Started, now);
        let mut said = Vec::new();
        // A whisper is a few messages; a flow that loops is cut short.
        for _ in 0..64 {
            match run.poll_effect() {
                Some(Effect::Play { audio, .. }) => {
                    said.extend(audio);
                    run.handle(Event::PlayDone { interrupted: false }, now);
                }
                // What a whisper may set besides: nothing to wait for.
                Some(
                    Effect::SetRecording(_)
                    | Effect::MediaStreaming { .. }
                    | Effect::Reprioritize(_)
                    | Effect::SetCriteria(_)
                    | Effect::Timer(_),
                ) => {}
                _ => break,
            }
        }
        said
    }

    /// Name of the flow running now.
    pub fn flow_name(&self) -> Option<&str> {
        self.stack.last().map(|f| &*f.flow.name)
    }

    pub fn handle(&mut self, event: Event, now: Now) {
        let wait = self.wait;
        let step = match (wait, event) {
            (Wait::NotStarted, Event::Started) => {
                self.action_started = Some(now.mono);
                return self.run(now);
            }
            (Wait::PlayThenNext, Event::PlayDone { .. }) => self.next_of_current("next"),
            (Wait::PlayThenCollect, Event::PlayDone { .. }) => {
                self.collect();
                return;
            }
            (Wait::Iterating, Event::PlayDone { .. }) => {
                self.iterate();
                return;
            }
            (Wait::Iterating, Event::Timer) => self.next_of_current("interrupted"),
            (Wait::Collect, Event::Collected(outcome)) => self.collected(outcome),
            (Wait::Invoke(rt), Event::Invoked(result)) => self.invoked(rt, result),
            (Wait::Profile, Event::Invoked(result)) => self.profiled(result),
            (Wait::Enqueue, Event::Enqueued(result)) => match result {
                Ok(()) => {
                    self.log_action("queued", now);
                    if self.enter_queue() {
                        Step::Jumped
                    } else {
                        Step::Wait(Wait::Idle)
                    }
                }
                Err(AtCapacity) => self.error("QueueAtCapacity"),
            },
            (Wait::Metrics(metric), Event::QueueMetrics(m)) => match m {
                None => self.error("NoMatchingError"),
                Some(m) => {
                    let value = match metric {
                        Metric::ContactsInQueue => m.contacts as u64,
                        Metric::OldestContactAgeSeconds => m.oldest_age_secs,
                        Metric::AgentsAvailable => m.agents_available as u64,
                        Metric::AgentsStaffed => m.agents_staffed as u64,
                        Metric::AgentsOnline => m.agents_online as u64,
                    };
                    self.branch_on(&value.to_string())
                }
            },
            (Wait::AllMetrics, Event::QueueMetrics(m)) => match m {
                None => self.error("NoMatchingError"),
                Some(m) => {
                    self.contact.metrics = m.flow_view(&self.contact.queue_of_metrics);
                    self.next_of_current("next")
                }
            },
            (Wait::Callback, Event::CallbackCreated(result)) => match result {
                Ok(()) => {
                    self.log_action("callback", now);
                    self.next_of_current("next")
                }
                Err(_) => self.error("NoMatchingError"),
            },
            (Wait::CallProgress, Event::CallProgress(progress)) => match progress {
                // No condition for it: NoMatchingError, the only error Connect gives here.
                Some(p) => self.branch_on(p.as_str()),
                None => self.error("NoMatchingError"),
            },
            _ => return, // stale or unexpected: ignore
        };
        self.apply(step, now);
    }

    fn frame(&self) -> &Frame {
        &self.stack[self.stack.len() - 1]
    }

    fn action(&self) -> &Action {
        let f = self.frame();
        &f.flow.actions[f.pc]
    }

    fn render(&self, t: &Template) -> String {
        self.contact
            .render(t, &self.frame().flow_attributes)
            .into_owned()
    }

    fn next_of_current(&self, branch: &'static str) -> Step {
        Step::Go(self.action().next, branch, None)
    }

    fn error(&self, error: &'static str) -> Step {
        Step::Go(self.action().error_branch(error), error, None)
    }

    /// Conditions in order; the first that holds wins.
    fn branch_on(&self, value: &str) -> Step {
        let a = self.action();
        match a.conditions.iter().position(|(c, _)| c.holds(value)) {
            Some(i) => Step::Go(Some(a.conditions[i].1), "condition", Some(i)),
            None => self.error("NoMatchingCondition"),
        }
    }

    fn apply(&mut self, step: Step, now: Now) {
        match step {
            Step::Wait(w) => self.wait = w,
            Step::Stop => self.stop(),
            Step::End => self.end(),
            Step::Jumped => self.run(now),
            Step::Go(target, branch, condition) => {
                self.log_branch(branch, condition, now);
                match target {
                    Some(t) => {
                        let top = self.stack.len() - 1;
                        self.stack[top].pc = t;
                        self.run(now);
                    }
                    None => {
                        warn!(
                            flow = %self.frame().flow.name,
                            action = %self.action().id,
                            branch,
                            "the flow has no transition for this outcome: disconnecting"
                        );
                        self.stop();
                    }
                }
            }
        }
    }

    fn stop(&mut self) {
        self.effects.push_back(Effect::Disconnect);
        self.wait = Wait::Done;
    }

    /// The flow is over, having run to its end.
    fn end(&mut self) {
        self.effects.push_back(Effect::Ended);
        self.wait = Wait::Done;
    }

    fn log_branch(&self, branch: &str, condition: Option<usize>, now: Now) {
        if !self.logging {
            return;
        }
        let a = self.action();
        let ms = self
            .action_started
            .map(|s| now.mono.saturating_duration_since(s).as_millis() as u64)
            .unwrap_or(0);
        // Branch only: the caller's input and attribute values are never logged.
        info!(
            target: "careline::flow_log",
            flow = %self.frame().flow.name,
            action = %a.id,
            action_type = %a.type_name,
            branch,
            condition = condition.map(|c| c as i64).unwrap_or(-1),
            duration_ms = ms,
            "flow action"
        );
    }

    fn log_action(&self, branch: &str, now: Now) {
        self.log_branch(branch, None, now);
    }

    /// Runs actions from the current one until something must wait.
    fn run(&mut self, now: Now) {
        for _ in 0..MAX_STEPS {
            self.action_started = Some(now.mono);
            match self.execute(now) {
                Step::Go(target, branch, condition) => {
                    self.log_branch(branch, condition, now);
                    match target {
                        Some(t) => {
                            let top = self.stack.len() - 1;
                            self.stack[top].pc = t;
                        }
                        None => {
                            warn!(
                                flow = %self.frame().flow.name,
                                action = %self.action().id,
                                branch,
                                "the flow has no transition for this outcome: disconnecting"
                            );
                            return self.stop();
                        }
                    }
                }
                Step::Jumped => {}
                Step::Wait(w) => {
                    self.wait = w;
                    return;
                }
                Step::Stop => return self.stop(),
                Step::End => return self.end(),
            }
        }
        warn!(
            flow = %self.frame().flow.name,
            "the flow ran {MAX_STEPS} actions without waiting for the caller: disconnecting"
        );
        self.stop();
    }

    fn audio_of(&self, m: &Message) -> Option<Audio> {
        match m {
            Message::Prompt(Ref::Static(p)) => Some(Audio::Prompt(p.clone())),
            Message::Prompt(Ref::Dynamic(t)) => self
                .env
                .resources
                .resolve_prompt(&self.render(t))
                .map(Audio::Prompt),
            Message::Text(t) => Some(self.speech(t, false)),
            Message::Ssml(t) => Some(self.speech(t, true)),
        }
    }

    fn speech(&self, t: &Template, ssml: bool) -> Audio {
        let text: Arc<str> = if t.is_static() {
            t.raw().clone()
        } else {
            self.render(t).into()
        };
        Audio::Speech {
            voice: self.voice.clone(),
            text,
            ssml,
        }
    }

    fn resolve(&self, r: &Ref<Arc<str>>, kind: ResourceKind) -> Option<Arc<str>> {
        match r {
            Ref::Static(name) => Some(name.clone()),
            Ref::Dynamic(t) => self
                .env
                .resources
                .resolve(kind, &self.render(t))
                .map(Arc::from),
        }
    }

    fn execute(&mut self, now: Now) -> Step {
        let frame = self.frame();
        let flow = frame.flow.clone();
        let pc = frame.pc;
        let action = &flow.actions[pc];
        match &action.kind {
            Kind::Message(m) => match self.audio_of(m) {
                Some(a) => {
                    self.effects.push_back(Effect::Play {
                        audio: vec![a],
                        barge_in: false,
                    });
                    Step::Wait(Wait::PlayThenNext)
                }
                None => self.error("NoMatchingError"),
            },
            Kind::MessageIteratively {
                messages,
                interrupt,
            } => {
                let audio: Vec<Audio> = messages.iter().filter_map(|m| self.audio_of(m)).collect();
                if audio.is_empty() {
                    return self.error("NoMatchingError");
                }
                self.effects.push_back(Effect::Play {
                    audio,
                    barge_in: false,
                });
                if let Some(d) = interrupt {
                    self.effects.push_back(Effect::Timer(*d));
                }
                Step::Wait(Wait::Iterating)
            }
            Kind::GetInput { message, .. } => match message.as_ref().map(|m| self.audio_of(m)) {
                Some(Some(a)) => {
                    self.effects.push_back(Effect::Play {
                        audio: vec![a],
                        barge_in: true,
                    });
                    Step::Wait(Wait::PlayThenCollect)
                }
                Some(None) => self.error("NoMatchingError"),
                None => {
                    self.collect();
                    Step::Wait(Wait::Collect)
                }
            },
            Kind::Compare(t) => {
                let v = self.render(t);
                self.branch_on(&v)
            }
            Kind::SetAttributes(list) => {
                for (k, t) in list {
                    let v = self.render(t);
                    self.contact.attributes.insert(k.to_string(), v);
                }
                self.next_of_current("next")
            }
            Kind::SetFlowAttributes(list) => {
                for (k, t) in list {
                    let v = self.render(t);
                    let top = self.stack.len() - 1;
                    self.stack[top].flow_attributes.insert(k.to_string(), v);
                }
                self.next_of_current("next")
            }
            Kind::CheckHours(r) => {
                let name = match r {
                    Some(r) => self.resolve(r, ResourceKind::Hours),
                    None => self
                        .contact
                        .queue
                        .as_ref()
                        .and_then(|q| self.env.queues.get(&**q))
                        .and_then(|(_, h)| h.clone())
                        .map(Arc::from),
                };
                match name.and_then(|n| self.env.hours.get(&*n)) {
                    Some(h) => {
                        let open = if h.is_open(now.wall) { "True" } else { "False" };
                        self.branch_on(open)
                    }
                    None => self.error("NoMatchingError"),
                }
            }
            Kind::SetQueue(r) => match self.resolve(r, ResourceKind::Queue) {
                Some(q) => {
                    self.contact.queue = Some(q);
                    self.next_of_current("next")
                }
                None => self.error("NoMatchingError"),
            },
            Kind::SetCriteria(c) => {
                self.effects.push_back(Effect::SetCriteria(c.clone()));
                self.next_of_current("next")
            }
            Kind::SetRouting {
                priority,
                adjustment,
            } => {
                let mut p = self.contact.priority;
                if let Some(t) = priority {
                    match super::params::queue_priority(&self.render(t)) {
                        Some(n) => p.priority = n,
                        None => return self.error("NoMatchingError"),
                    }
                }
                if let Some(t) = adjustment {
                    match super::params::time_adjustment(&self.render(t)) {
                        Some(d) => p.time_adjustment = d,
                        None => return self.error("NoMatchingError"),
                    }
                }
                self.contact.priority = p;
                self.effects.push_back(Effect::Reprioritize(p));
                self.next_of_current("next")
            }
            Kind::TransferToQueue(r) => {
                let queue = match r {
                    Some(r) => self.resolve(r, ResourceKind::Queue),
                    None => self.contact.queue.clone(),
                };
                match queue {
                    Some(queue) => {
                        self.contact.queue = Some(queue.clone());
                        self.effects.push_back(Effect::Enqueue { queue });
                        Step::Wait(Wait::Enqueue)
                    }
                    None => self.error("NoMatchingError"),
                }
            }
            Kind::GetMetrics(queue) => {
                let queue = match queue {
                    Some(r) => self.resolve(r, ResourceKind::Queue),
                    None => self.contact.queue.clone(),
                };
                match queue {
                    Some(queue) => {
                        self.contact.queue_of_metrics = queue.to_string();
                        self.effects.push_back(Effect::QueueMetrics { queue });
                        Step::Wait(Wait::AllMetrics)
                    }
                    None => self.error("NoMatchingError"),
                }
            }
            Kind::CheckMetric { metric, queue } => {
                let queue = match queue {
                    Some(r) => self.resolve(r, ResourceKind::Queue),
                    None => self.contact.queue.clone(),
                };
                match queue {
                    Some(queue) => {
                        self.effects.push_back(Effect::QueueMetrics { queue });
                        Step::Wait(Wait::Metrics(*metric))
                    }
                    None => self.error("NoMatchingError"),
                }
            }
            Kind::InvokeLambda {
                function,
                timeout,
                parameters,
                response,
            } => match self.resolve(function, ResourceKind::Lambda) {
                Some(function) => {
                    let mut params = Map::with_capacity(parameters.len());
                    for (k, t) in parameters {
                        params.insert(k.to_string(), Value::String(self.render(t)));
                    }
                    let event = self.contact.lambda_event(params);
                    // The built-in answers like a Lambda, but it is Careline's own lookup.
                    self.effects
                        .push_back(if &*function == super::lambda::PATIENT_LOOKUP {
                            Effect::Identify {
                                event,
                                timeout: *timeout,
                            }
                        } else {
                            Effect::Invoke {
                                function,
                                event,
                                timeout: *timeout,
                            }
                        });
                    Step::Wait(Wait::Invoke(*response))
                }
                None => self.error("NoMatchingError"),
            },
            Kind::CheckCallProgress => {
                self.effects.push_back(Effect::CheckCallProgress);
                Step::Wait(Wait::CallProgress)
            }
            Kind::SetCallbackNumber(t) => match super::attributes::dialable(&self.render(t)) {
                Some(number) => {
                    self.contact.callback_number = Some(number);
                    self.next_of_current("next")
                }
                None => self.error("InvalidCallbackNumber"),
            },
            Kind::CreateCallback(spec) => {
                let queue = match &spec.queue {
                    Some(r) => self.resolve(r, ResourceKind::Queue),
                    None => self.contact.queue.clone(),
                };
                let flow = match &spec.flow {
                    Some(r) => match self.resolve(r, ResourceKind::Flow) {
                        Some(f) => Some(f),
                        None => return self.error("NoMatchingError"),
                    },
                    None => None,
                };
                let number = super::attributes::dialable(self.contact.callback_number());
                match (queue, number) {
                    (Some(queue), Some(number)) => {
                        self.effects
                            .push_back(Effect::CreateCallback(CallbackRequest {
                                queue,
                                number,
                                priority: self.contact.priority,
                                initial_delay: spec.initial_delay,
                                max_attempts: spec.max_attempts,
                                retry_delay: spec.retry_delay,
                                flow,
                                language: self.contact.attributes.get("language").cloned(),
                            }));
                        Step::Wait(Wait::Callback)
                    }
                    // No queue to keep it in, or no number to call (an anonymous caller).
                    _ => self.error("NoMatchingError"),
                }
            }
            Kind::GetProfile(criteria) => {
                let mut params = Map::with_capacity(criteria.len());
                for (k, t) in criteria {
                    params.insert(k.to_string(), Value::String(self.render(t)));
                }
                let event = self.contact.lambda_event(params);
                self.effects.push_back(Effect::Identify {
                    event,
                    timeout: PROFILE_TIMEOUT,
                });
                Step::Wait(Wait::Profile)
            }
            Kind::TransferToFlow(r) => match self
                .resolve(r, ResourceKind::Flow)
                .and_then(|n| self.env.catalog.get(&n).cloned())
            {
                Some(target) => {
                    self.log_action("transfer", now);
                    let start = target.start;
                    self.stack.clear();
                    self.stack.push(Frame {
                        flow: target,
                        pc: start,
                        flow_attributes: HashMap::new(),
                    });
                    Step::Jumped
                }
                None => self.error("NoMatchingError"),
            },
            Kind::InvokeModule(r) => match self
                .resolve(r, ResourceKind::Flow)
                .and_then(|n| self.env.catalog.get(&n).cloned())
            {
                Some(module) => {
                    self.log_action("module", now);
                    let start = module.start;
                    self.stack.push(Frame {
                        flow: module,
                        pc: start,
                        flow_attributes: HashMap::new(),
                    });
                    Step::Jumped
                }
                None => self.error("NoMatchingError"),
            },
            Kind::EndModule => self.end_flow(now),
            Kind::SetEventHooks(hooks) => {
                for (name, t) in hooks {
                    let v = self.render(t);
                    if v.is_empty() {
                        self.hooks.remove(&**name);
                        continue;
                    }
                    match self.env.resources.resolve(ResourceKind::Flow, &v) {
                        Some(f) => {
                            self.hooks.insert(name.to_string(), f.into());
                        }
                        None => return self.error("NoMatchingError"),
                    }
                }
                self.next_of_current("next")
            }
            Kind::Loop(t) => {
                let count: u32 = self.render(t).trim().parse().unwrap_or(0);
                let key = (flow_key(&flow), pc);
                let n = self.loops.entry(key).or_insert(0);
                let outcome = if *n < count {
                    *n += 1;
                    "ContinueLooping"
                } else {
                    *n = 0;
                    "DoneLooping"
                };
                match self
                    .action()
                    .conditions
                    .iter()
                    .position(|(c, _)| c.holds(outcome))
                {
                    Some(i) => Step::Go(Some(self.action().conditions[i].1), "condition", Some(i)),
                    None => self.next_of_current("next"),
                }
            }
            Kind::SetRecording(v) => {
                self.effects.push_back(Effect::SetRecording(v.clone()));
                self.next_of_current("next")
            }
            Kind::SetVoice(t) => match self.env.voices.get(&self.render(t)) {
                Some(v) => {
                    self.contact.language = Some(v.language.to_string());
                    self.voice = v;
                    self.next_of_current("next")
                }
                None => self.error("NoMatchingError"),
            },
            Kind::SetLogging(on) => {
                self.logging = *on || self.env.log_all;
                self.next_of_current("next")
            }
            Kind::UpdateContactData(fields) => {
                for (k, t) in fields {
                    let v = self.render(t);
                    match &**k {
                        "LanguageCode" => self.contact.language = Some(v),
                        "Name" => self.contact.name = Some(v),
                        "Description" => self.contact.description = Some(v),
                        _ => {}
                    }
                }
                self.next_of_current("next")
            }
            Kind::MediaStreaming(on) => {
                self.effects
                    .push_back(Effect::MediaStreaming { enabled: *on });
                self.next_of_current("next")
            }
            Kind::Disconnect => {
                self.log_action("disconnect", now);
                Step::Stop
            }
            Kind::EndFlow => self.end_flow(now),
            Kind::Unsupported(_) => self.error("NoMatchingError"),
        }
    }

    /// EndFlowModuleExecution / EndFlowExecution: back to the invoking flow, idle in a
    /// queue, or (an inbound flow that ended without a transfer) disconnect.
    fn end_flow(&mut self, now: Now) -> Step {
        self.log_action("end", now);
        if self.stack.len() > 1 {
            self.stack.pop();
            return self.next_of_current("next");
        }
        if self.in_queue {
            return Step::Wait(Wait::Idle);
        }
        Step::End
    }

    /// An agent transferred the contact to `queue` (where it has been placed already): the
    /// caller hears that queue's CustomerQueue hook or hold flow, or waits in silence, until
    /// routing brings the next agent. Whatever the flow was doing before is over.
    pub fn requeued(&mut self, queue: Arc<str>, now: Now) {
        self.contact.queue = Some(queue);
        self.effects.clear();
        let step = if self.enter_queue() {
            Step::Jumped
        } else {
            Step::Wait(Wait::Idle)
        };
        self.apply(step, now);
    }

    /// The contact is in its queue: run the CustomerQueue hook or the queue's hold flow.
    /// False when there is none (the caller waits in silence).
    fn enter_queue(&mut self) -> bool {
        self.in_queue = true;
        let queue = self.contact.queue.clone();
        let hold = self.hooks.get("CustomerQueue").cloned().or_else(|| {
            queue
                .as_ref()
                .and_then(|q| self.env.queues.get(&**q))
                .and_then(|(f, _)| f.as_deref().map(Arc::from))
        });
        match hold.and_then(|h| self.env.catalog.get(&h).cloned()) {
            Some(flow) => {
                let start = flow.start;
                self.stack.clear();
                self.stack.push(Frame {
                    flow,
                    pc: start,
                    flow_attributes: HashMap::new(),
                });
                true
            }
            // Nothing to play: wait in silence (until routing exists, or the caller hangs up).
            None => false,
        }
    }

    fn iterate(&mut self) {
        let audio: Vec<Audio> = match &self.action().kind {
            Kind::MessageIteratively { messages, .. } => {
                messages.iter().filter_map(|m| self.audio_of(m)).collect()
            }
            _ => return,
        };
        self.effects.push_back(Effect::Play {
            audio,
            barge_in: false,
        });
    }

    fn collect(&mut self) {
        let Kind::GetInput {
            timeout,
            inter_digit,
            mode,
            ..
        } = &self.action().kind
        else {
            return;
        };
        let spec = match mode {
            InputMode::Menu => CollectSpec {
                max_digits: 1,
                first_timeout: *timeout,
                inter_digit_timeout: *timeout,
                terminator: None,
                cancel: None,
            },
            InputMode::Store {
                max_digits,
                terminator,
                cancel_key,
                ..
            } => {
                let terminator = terminator.and_then(Digit::from_char);
                let star = Digit::from_char('*');
                CollectSpec {
                    max_digits: *max_digits,
                    first_timeout: *timeout,
                    inter_digit_timeout: *inter_digit,
                    terminator,
                    cancel: if *cancel_key && terminator != star {
                        star
                    } else {
                        None
                    },
                }
            }
        };
        self.effects.push_back(Effect::Collect(spec));
        self.wait = Wait::Collect;
    }

    fn collected(&mut self, outcome: CollectOutcome) -> Step {
        let Kind::GetInput { mode, .. } = &self.action().kind else {
            return Step::Stop;
        };
        let (digits, timed_out) = match outcome {
            CollectOutcome::Complete(d) | CollectOutcome::Terminated(d) => (d, false),
            CollectOutcome::Timeout(d) => (d, true),
        };
        match mode {
            InputMode::Menu => {
                if digits.is_empty() {
                    return self.error("InputTimeLimitExceeded");
                }
                self.branch_on(&digits)
            }
            InputMode::Store { phone, .. } => {
                if digits.is_empty() && timed_out {
                    let explicit = self
                        .action()
                        .errors
                        .iter()
                        .any(|(e, _)| &**e == "InputTimeLimitExceeded");
                    if explicit {
                        return self.error("InputTimeLimitExceeded");
                    }
                    // Connect's "Store customer input": success, with the value `Timeout`.
                    self.contact.stored_input = Some("Timeout".into());
                    return self.next_of_current("next");
                }
                let stored = match phone {
                    Some(format) => match normalize_phone(&digits, format) {
                        Some(n) => n,
                        None => return self.error("InvalidPhoneNumber"),
                    },
                    None => digits,
                };
                self.contact.stored_input = Some(stored);
                self.next_of_current("next")
            }
        }
    }

    /// GetCustomerProfile: a found patient goes under `$.External`; none or several take
    /// Connect's NoneFoundError / MultipleFoundError.
    fn profiled(&mut self, result: Result<Value, String>) -> Step {
        let map = match result {
            Ok(Value::Object(map)) => map,
            Ok(_) => return self.error("NoMatchingError"),
            Err(reason) => {
                let (flow, action) = (self.frame().flow.name.clone(), self.action().id.clone());
                warn!(%flow, %action, reason, "patient lookup failed: error branch");
                return self.error("NoMatchingError");
            }
        };
        match map.get("lookup_result").and_then(Value::as_str) {
            Some("found") => {
                self.contact.external = map;
                self.next_of_current("next")
            }
            Some("ambiguous") => self.error("MultipleFoundError"),
            _ => self.error("NoneFoundError"),
        }
    }

    fn invoked(&mut self, rt: ResponseType, result: Result<Value, String>) -> Step {
        let flow = self.frame().flow.name.clone();
        let action = self.action().id.clone();
        let map = match result {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                warn!(%flow, %action, "Lambda response is not a JSON object: error branch");
                return self.error("NoMatchingError");
            }
            Err(reason) => {
                warn!(%flow, %action, reason, "Lambda call failed: error branch");
                return self.error("NoMatchingError");
            }
        };
        let external = match rt {
            ResponseType::Json => map,
            ResponseType::StringMap => {
                let mut flat = Map::with_capacity(map.len());
                for (k, v) in map {
                    let s = match v {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Null => String::new(),
                        _ => {
                            warn!(%flow, %action, key = %k, "STRING_MAP response holds a nested value: error branch");
                            return self.error("NoMatchingError");
                        }
                    };
                    flat.insert(k, Value::String(s));
                }
                flat
            }
        };
        self.contact.external = external;
        self.next_of_current("next")
    }
}

/// PhoneNumberValidation: the digits as an E.164 number, or None when they cannot be one.
fn normalize_phone(digits: &str, format: &PhoneFormat) -> Option<String> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    match format {
        PhoneFormat::E164 => (8..=15)
            .contains(&digits.len())
            .then(|| format!("+{digits}")),
        PhoneFormat::Local(country) => match country.as_str() {
            "US" | "CA" => match digits.len() {
                10 => Some(format!("+1{digits}")),
                11 if digits.starts_with('1') => Some(format!("+{digits}")),
                _ => None,
            },
            "JP" => (digits.starts_with('0') && (10..=11).contains(&digits.len()))
                .then(|| format!("+81{}", &digits[1..])),
            "GB" => (digits.starts_with('0') && (10..=11).contains(&digits.len()))
                .then(|| format!("+44{}", &digits[1..])),
            _ => (6..=14).contains(&digits.len()).then(|| digits.to_string()),
        },
    }
}

#[cfg(test)]
#[path = "interpreter_tests.rs"]
mod tests;
