//! Whole calls on a fake clock: the shipped flows (demo menu, medical triage and its hold
//! flow) and small flows of our own, driven through the call core as the task would drive
//! it, with a simulated caller and media leg. Each call takes milliseconds, however long it
//! would last on a phone.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::config::Config;
use crate::flow::engine::FlowEngine;
use crate::flow::http::HttpClient;
use crate::flow::lambda::LambdaConfig;
use crate::media::prompt::PromptLibrary;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The flows and prompts Careline ships, as `careline serve` loads them by default.
fn shipped() -> FlowEngine {
    let mut config = Config::default();
    config.flows.dir = root().join("flows");
    engine(&config)
}

/// A folder holding one flow `main` (the default), with a `verify` Lambda configured.
fn custom(actions: serde_json::Value, start: &str) -> (FlowEngine, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let flow = json!({"Version": "2019-10-30", "StartAction": start, "Actions": actions});
    std::fs::write(dir.path().join("main.json"), flow.to_string()).unwrap();
    let mut config = Config::default();
    config.flows.dir = dir.path().to_path_buf();
    config.flows.default = "main".into();
    config.lambda.insert(
        "verify".into(),
        LambdaConfig {
            url: "http://127.0.0.1:9/verify".into(),
        },
    );
    (engine(&config), dir)
}

/// Loading prompts and the HTTP client's roots takes most of a second: once per test run.
fn engine(config: &Config) -> FlowEngine {
    static SHARED: std::sync::OnceLock<(Arc<PromptLibrary>, HttpClient)> =
        std::sync::OnceLock::new();
    let (prompts, http) = SHARED.get_or_init(|| {
        let prompts = PromptLibrary::load(&root().join("prompts")).unwrap();
        (Arc::new(prompts), HttpClient::new())
    });
    FlowEngine::build(config, prompts.clone(), http.clone()).unwrap()
}

/// A message, then `end`.
fn say(id: &str, text: &str, next: &str) -> serde_json::Value {
    json!({"Identifier": id, "Type": "MessageParticipant", "Parameters": {"Text": text},
        "Transitions": {"NextAction": next,
            "Errors": [{"NextAction": next, "ErrorType": "NoMatchingError"}]}})
}

fn disconnect(id: &str) -> serde_json::Value {
    json!({"Identifier": id, "Type": "DisconnectParticipant", "Parameters": {}, "Transitions": {}})
}

/// The call core with the shell, the caller and the media leg simulated around it.
struct Sim {
    core: CallCore,
    engine: FlowEngine,
    t0: Instant,
    at: Duration,
    /// What each play was to say, by play id.
    renders: HashMap<PlayId, String>,
    /// What the caller heard, in order.
    heard: Vec<String>,
    /// The play the leg is sending, and whether a key cuts it short.
    playing: Option<(PlayId, bool)>,
    invokes: Vec<(RequestId, Arc<str>, Duration)>,
    identifies: Vec<(RequestId, IdentifyQuery)>,
    records: Vec<RecordOp>,
    streams: Vec<bool>,
    answers: usize,
    hangups: usize,
    bridges: usize,
    releases: usize,
    /// Callers sent back to their queue because their agent's connection was lost.
    returns: usize,
    /// Hold, music and mute outputs, in order, as text.
    agent_ops: Vec<String>,
    /// Answering-machine detection asked of the leg.
    screens: usize,
    /// Queued callbacks the flow asked for.
    callbacks: Vec<CallbackRequest>,
    /// Renders left unanswered (to test speech that arrives late).
    hold_renders: bool,
    held: Vec<(PlayId, Vec<Arc<Prompt>>)>,
    /// What each Output::Whisper said: (to the agent, to the caller).
    whispers: Vec<(String, String)>,
}

fn label(audio: &[Audio]) -> String {
    audio
        .iter()
        .map(|a| match a {
            Audio::Prompt(p) => p.key(),
            Audio::Speech { text, .. } => text.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

fn tts() -> Arc<Prompt> {
    Arc::new(Prompt::from_pcm("en", "tts", &[0; 1600], 8000).unwrap())
}

impl Sim {
    fn new(engine: FlowEngine, dialed: &str, policy: CallPolicy) -> Sim {
        let flow = engine.flow_for(dialed).expect("a flow for the number");
        let contact = ContactData {
            contact_id: "call-1".into(),
            customer_address: "+15550001111".into(),
            system_address: dialed.into(),
            ..ContactData::default()
        };
        let t0 = Instant::now();
        let core = CallCore::new(engine.env.clone(), flow, contact, policy, t0);
        let mut sim = Sim {
            core,
            engine,
            t0,
            at: Duration::ZERO,
            renders: HashMap::new(),
            heard: Vec::new(),
            playing: None,
            invokes: Vec::new(),
            identifies: Vec::new(),
            records: Vec::new(),
            streams: Vec::new(),
            answers: 0,
            hangups: 0,
            bridges: 0,
            releases: 0,
            returns: 0,
            agent_ops: Vec::new(),
            screens: 0,
            callbacks: Vec::new(),
            hold_renders: false,
            held: Vec::new(),
            whispers: Vec::new(),
        };
        sim.step();
        sim
    }

    /// Answered at once, the caller's ACK in: the flow runs.
    fn connected(engine: FlowEngine, dialed: &str) -> Sim {
        let mut sim = Sim::new(engine, dialed, CallPolicy::default());
        assert_eq!(sim.answers, 1, "no ringing configured: answered at once");
        sim.input(Input::Confirmed);
        assert_eq!(sim.core.phase(), Phase::Ivr);
        sim
    }

    fn now(&self) -> Now {
        let wall = jiff::Timestamp::from_second(1_777_000_000).unwrap();
        Now::new(self.t0 + self.at, wall + self.at)
    }

    fn input(&mut self, input: Input) {
        self.core.handle(input, self.now());
        self.step();
    }

    /// Does what the task does with each output.
    fn step(&mut self) {
        while let Some(out) = self.core.poll_output() {
            let now = self.now();
            match out {
                Output::Answer => {
                    self.answers += 1;
                    self.core.handle(Input::Answered, now);
                }
                Output::Render { id, audio } => {
                    self.renders.insert(id, label(&audio));
                    let prompts: Vec<Arc<Prompt>> = audio
                        .iter()
                        .map(|a| match a {
                            Audio::Prompt(p) => p.clone(),
                            Audio::Speech { .. } => tts(),
                        })
                        .collect();
                    if self.hold_renders {
                        self.held.push((id, prompts));
                    } else {
                        self.core.handle(Input::Rendered(id, prompts), now);
                    }
                }
                Output::Play {
                    id,
                    prompts,
                    barge_in,
                } => {
                    assert!(!prompts.is_empty());
                    self.heard.push(self.renders[&id].clone());
                    self.playing = Some((id, barge_in));
                }
                Output::Invoke {
                    id,
                    function,
                    timeout,
                    ..
                } => self.invokes.push((id, function, timeout)),
                Output::Identify { id, query } => self.identifies.push((id, query)),
                Output::Enqueue { queue, priority } => {
                    let placed = self
                        .engine
                        .queues
                        .enqueue(&queue, now.mono, "sim-call", priority);
                    self.core.handle(Input::Enqueued(placed), now);
                }
                Output::Reprioritize(p) => self.engine.queues.set_priority("sim-call", p),
                Output::SetCriteria(_) => {}
                Output::QueueMetrics { queue } => {
                    let m = self.engine.queues.metrics(&queue, now.mono);
                    self.core.handle(Input::QueueMetrics(m), now);
                }
                Output::Record(op) => {
                    self.records.push(op);
                    if let RecordOp::Open(_) = op {
                        let n = self.records.len() as u8;
                        let id = RecordingId([n; 16]);
                        self.core.handle(Input::RecordingOpened(Some(id)), now);
                    }
                }
                Output::Stream(on) => self.streams.push(on),
                Output::Hangup => self.hangups += 1,
                Output::Bridge => {
                    self.bridges += 1;
                    self.playing = None;
                }
                Output::ReleaseAgent => self.releases += 1,
                Output::ReturnToQueue => {
                    // As the shell: the front of the caller's queue, or the call ends.
                    self.returns += 1;
                    let placed = self.core.contact().queue.clone().and_then(|queue| {
                        let mut priority = self.core.contact().priority;
                        priority.priority = 1;
                        self.engine
                            .queues
                            .enqueue(&queue, now.mono, "sim-call", priority)
                            .ok()
                    });
                    let input = placed.map_or(Input::AgentLeft, Input::Transferred);
                    self.core.handle(input, now);
                }
                Output::Hold(on) => self.agent_ops.push(format!("hold {on}")),
                Output::PlayMusic { id } => self.agent_ops.push(format!("music {id}")),
                Output::MuteAgent(on) => self.agent_ops.push(format!("mute {on}")),
                Output::Screen => self.screens += 1,
                Output::CreateCallback(req) => self.callbacks.push(req),
                Output::Whisper { agent, customer } => {
                    self.whispers.push((label(&agent.1), label(&customer.1)));
                }
            }
        }
    }

    /// Lets `d` pass, firing every deadline on the way at its own time.
    fn advance(&mut self, d: Duration) {
        let target = self.at + d;
        while let Some(t) = self.core.poll_timeout() {
            if t > self.t0 + target {
                break;
            }
            self.at = t - self.t0;
            self.core.handle_timeout(self.now());
            self.step();
        }
        self.at = target;
    }

    /// The leg sent the whole play.
    fn finish_play(&mut self) {
        let Some((id, _)) = self.playing.take() else {
            panic!("nothing playing; heard so far: {:?}", self.heard);
        };
        self.input(Input::PlayEnded(PlayEnd::Finished(id)));
    }

    /// The caller presses keys; like the leg, a key stops a play that allows barge-in.
    fn press(&mut self, keys: &str) {
        for c in keys.chars() {
            let cut = match self.playing {
                Some((id, true)) => self.playing.take().map(|_| id),
                _ => None,
            };
            self.input(Input::Digit(Digit::from_char(c).unwrap()));
            if let Some(id) = cut {
                self.input(Input::PlayEnded(PlayEnd::Interrupted(id)));
            }
        }
    }

    fn last_heard(&self) -> &str {
        self.heard.last().map(String::as_str).unwrap_or("")
    }

    fn queued_in(&self, queue: &str) -> usize {
        let m = self.engine.queues.metrics(queue, self.t0 + self.at);
        m.map(|m| m.contacts).unwrap_or(0)
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn demo_menu_answers_each_key_and_says_goodbye_when_the_caller_goes_quiet() {
    let mut sim = Sim::connected(shipped(), "100");
    assert_eq!(sim.heard, ["en/welcome"]);
    assert_eq!(
        sim.playing.map(|p| p.1),
        Some(true),
        "a menu may be cut short"
    );
    sim.finish_play();
    sim.advance(secs(3));
    sim.press("7");
    assert_eq!(sim.last_heard(), "en/digit-7");
    sim.press("*");
    assert_eq!(
        sim.last_heard(),
        "en/digit-star",
        "a key cuts the prompt short"
    );
    sim.finish_play();
    sim.advance(Duration::from_millis(9_999));
    assert_eq!(sim.heard.len(), 3, "still waiting for a key");
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.last_heard(), "en/goodbye");
    assert_eq!(sim.playing.map(|p| p.1), Some(false), "goodbye plays whole");
    sim.press("5");
    assert_eq!(sim.heard.len(), 4, "a key during goodbye changes nothing");
    assert_eq!(sim.hangups, 0);
    sim.finish_play();
    assert_eq!(sim.hangups, 1, "Careline hangs up after goodbye");
    assert_eq!(sim.core.ended(), Some("server_bye"));
    assert_eq!(sim.core.phase(), Phase::Ended);
    assert_eq!(sim.core.poll_timeout(), None);
}

#[test]
fn keys_typed_during_a_message_answer_the_menu_after_it() {
    let (engine, _dir) = custom(
        json!([
            say("welcome", "Welcome to the clinic.", "code"),
            {"Identifier": "code", "Type": "GetParticipantInput",
             "Parameters": {"Text": "Enter your code, then pound.", "InputTimeLimitSeconds": "5",
                 "StoreInput": "True",
                 "DTMFConfiguration": {"InputTerminationSequence": "#"},
                 "InputValidation": {"CustomValidation": {"MaximumLength": "8"}}},
             "Transitions": {"NextAction": "thanks",
                 "Errors": [{"NextAction": "end", "ErrorType": "InputTimeLimitExceeded"},
                            {"NextAction": "end", "ErrorType": "NoMatchingError"}]}},
            say("thanks", "Code $.StoredCustomerInput", "end"),
            disconnect("end")
        ]),
        "welcome",
    );
    let mut sim = Sim::connected(engine, "555");
    assert_eq!(
        sim.playing.map(|p| p.1),
        Some(false),
        "a message plays whole"
    );
    // An experienced caller types the code and pound during the welcome message.
    sim.press("4711#");
    assert_eq!(sim.heard, ["Welcome to the clinic."]);
    sim.finish_play();
    assert_eq!(sim.last_heard(), "Enter your code, then pound.");
    sim.finish_play();
    assert_eq!(
        sim.last_heard(),
        "Code 4711",
        "the typed-ahead keys answered the menu"
    );

    // Keys typed past what a menu takes wait for the menu after it.
    let mut sim = Sim::connected(shipped(), "100");
    sim.finish_play();
    sim.playing = None;
    sim.press("1"); // digit-1 starts; the simulated leg lets it play whole...
    sim.playing = sim.playing.map(|(id, _)| (id, false));
    sim.press("2"); // ...so this key waits
    assert_eq!(sim.last_heard(), "en/digit-1");
    sim.finish_play();
    assert_eq!(
        sim.last_heard(),
        "en/digit-2",
        "the typed-ahead 2 answers at once"
    );
    sim.finish_play();
    sim.advance(secs(10));
    assert_eq!(sim.last_heard(), "en/goodbye", "nothing left typed ahead");
}

#[test]
fn type_ahead_is_bounded() {
    let mut sim = Sim::connected(shipped(), "100");
    sim.finish_play();
    sim.press("1");
    // The caller leans on the keypad while digit-1 plays; the simulated leg forgets the play
    // so that no key cuts it, and every key waits for the next menu.
    sim.playing = None;
    let keys: String = std::iter::repeat_n('2', 100).collect();
    for c in keys.chars() {
        sim.input(Input::Digit(Digit::from_char(c).unwrap()));
    }
    assert!(sim.core.typed_ahead.len() <= TYPE_AHEAD);
}

#[test]
fn triage_english_urgent_caller_is_queued_and_hears_the_hold_loop() {
    let mut sim = Sim::connected(shipped(), "200");
    assert!(
        sim.heard[0].contains("For English, press 2"),
        "{:?}",
        sim.heard
    );
    sim.press("2");
    assert!(
        sim.last_heard()
            .starts_with("If this is an emergency, press 9")
    );
    sim.press("9");
    assert_eq!(sim.last_heard(), "Connecting you to our urgent care line.");
    assert_eq!(sim.core.phase(), Phase::Ivr);
    assert_eq!(sim.queued_in("triage-urgent"), 0);
    sim.finish_play();
    assert_eq!(sim.core.phase(), Phase::Queued);
    assert_eq!(sim.queued_in("triage-urgent"), 1);
    assert_eq!(sim.core.contact().queue.as_deref(), Some("triage-urgent"));
    // The hold flow speaks English to an English caller, round after round.
    for round in 0..5 {
        assert!(
            sim.last_heard().contains("Please stay on the line"),
            "round {round}: {:?}",
            sim.last_heard()
        );
        sim.advance(secs(9));
        sim.finish_play();
    }
    assert_eq!(sim.heard.len(), 3 + 6);
    assert_eq!(sim.core.phase(), Phase::Queued);
    sim.input(Input::RemoteEnded(EndReason::CallerBye));
    assert_eq!(sim.core.ended(), Some("caller_bye"));
    assert_eq!(sim.hangups, 0, "the caller hung up: no BYE back");
    assert_eq!(sim.queued_in("triage-urgent"), 0, "leaving frees the place");
}

/// An urgent triage caller waiting in the queue, the hold flow playing.
fn queued_urgent_caller(policy: CallPolicy) -> Sim {
    let mut sim = Sim::new(shipped(), "200", policy);
    sim.input(Input::Confirmed);
    sim.press("29");
    sim.finish_play();
    assert_eq!(sim.core.phase(), Phase::Queued);
    sim
}

fn agent_policy() -> CallPolicy {
    CallPolicy {
        agent_connect_within: Some(secs(10)),
        ..CallPolicy::default()
    }
}

/// A nurse takes the urgent caller: the caller hears the hold flow until the nurse's leg is
/// up, then the two are bridged, the contact leaves the queue and the flow is over (no more
/// hold messages, whatever time passes); the nurse hanging up ends the call.
#[test]
fn an_agent_who_takes_a_queued_caller_is_bridged_once_connected() {
    let mut sim = queued_urgent_caller(agent_policy());
    sim.input(Input::AgentOffered {
        agent: "nora".into(),
    });
    assert_eq!(sim.core.phase(), Phase::Offered);
    assert_eq!(
        sim.queued_in("triage-urgent"),
        1,
        "the place is kept until the agent is there"
    );
    sim.advance(secs(9));
    sim.finish_play();
    assert!(
        sim.last_heard().contains("Please stay on the line"),
        "still on hold"
    );
    let heard = sim.heard.len();
    sim.input(Input::AgentConnected);
    assert_eq!(sim.core.phase(), Phase::Bridged);
    assert_eq!(sim.bridges, 1);
    assert_eq!(sim.queued_in("triage-urgent"), 0);
    assert_eq!(
        sim.core.poll_timeout(),
        None,
        "nothing of the flow is waited on"
    );
    sim.advance(secs(600));
    sim.press("123");
    assert_eq!(
        sim.heard.len(),
        heard,
        "no prompt while talking to the agent"
    );
    assert_eq!(sim.core.ended(), None);
    sim.input(Input::AgentLeft);
    assert_eq!(sim.core.ended(), Some("agent_hangup"));
    assert_eq!((sim.hangups, sim.releases), (1, 1));
}

/// A blind transfer: the bridged caller is placed in another queue, the agent is released,
/// and the caller hears the hold flow again (not what played before the bridge), until the
/// next agent; a transfer before the caller is joined does nothing.
#[test]
fn a_transferred_caller_waits_in_the_new_queue_with_its_hold_flow() {
    use crate::flow::queues::QueuePriority;
    let mut sim = queued_urgent_caller(agent_policy());
    let nurses_place = |sim: &Sim| {
        sim.engine
            .queues
            .enqueue(
                "triage-nurses",
                sim.t0,
                "sim-call",
                QueuePriority::default(),
            )
            .unwrap()
    };
    let early = nurses_place(&sim);
    sim.input(Input::Transferred(early));
    assert_eq!(
        sim.core.phase(),
        Phase::Queued,
        "not joined: nothing happens"
    );
    assert_eq!(sim.queued_in("triage-nurses"), 0, "its ticket was let go");
    sim.input(Input::AgentOffered {
        agent: "nora".into(),
    });
    sim.input(Input::AgentConnected);
    assert_eq!(sim.core.phase(), Phase::Bridged);
    sim.input(Input::Hold(true));
    let heard = sim.heard.len();
    let ticket = nurses_place(&sim);
    sim.input(Input::Transferred(ticket));
    assert_eq!(sim.core.phase(), Phase::Queued);
    assert_eq!(sim.releases, 1, "the agent is released");
    assert_eq!(
        sim.agent_ops.last().map(String::as_str),
        Some("hold false"),
        "held when transferred: the next agent must hear the caller"
    );
    assert_eq!(sim.queued_in("triage-nurses"), 1);
    assert_eq!(sim.core.contact().queue.as_deref(), Some("triage-nurses"));
    sim.finish_play();
    assert!(sim.heard.len() > heard, "the hold flow plays again");
    assert!(
        sim.last_heard().contains("Please stay on the line"),
        "{:?}",
        sim.heard
    );
    sim.advance(secs(5));
    sim.input(Input::AgentOffered {
        agent: "ben".into(),
    });
    sim.advance(secs(2));
    sim.input(Input::AgentConnected);
    sim.input(Input::RemoteEnded(EndReason::CallerBye));
    assert_eq!(
        sim.queued_in("triage-nurses"),
        0,
        "leaving frees the new place"
    );
    // The contact record's stays: urgent answered by nora, nurses answered by ben 7 s after
    // the transfer.
    let stays = sim.core.queue_stays();
    let who: Vec<(&str, Option<&str>)> = stays
        .iter()
        .map(|s| (s.queue.as_str(), s.agent.as_deref()))
        .collect();
    assert_eq!(
        who,
        [
            ("triage-urgent", Some("nora")),
            ("triage-nurses", Some("ben"))
        ]
    );
    let waited = stays[1].answered_at.unwrap() - stays[1].enqueued_at;
    assert_eq!(waited.get_seconds(), 7);
    let end = sim
        .core
        .call_end("sim-call", "phone", sim.now().wall, secs(60));
    assert_eq!((end.direction, end.channel), ("inbound", "phone"));
    assert_eq!(end.queue_stays.len(), 2);
}

/// An agent who never connects, or whose leg fails while connecting, gives the caller back
/// their place: the hold flow goes on and the next agent can take them.
#[test]
fn an_agent_who_never_connects_gives_the_caller_back_their_place() {
    let mut sim = queued_urgent_caller(agent_policy());
    assert!(
        sim.engine
            .queues
            .claim_oldest("triage-urgent")
            .unwrap()
            .is_some()
    );
    sim.input(Input::AgentOffered {
        agent: "nora".into(),
    });
    sim.advance(secs(10));
    assert_eq!(sim.core.phase(), Phase::Queued);
    assert_eq!(sim.releases, 1);
    assert_eq!(sim.queued_in("triage-urgent"), 1);
    assert!(
        sim.engine
            .queues
            .claim_oldest("triage-urgent")
            .unwrap()
            .is_some(),
        "offered again"
    );
    sim.input(Input::AgentOffered {
        agent: "nora".into(),
    });
    sim.input(Input::AgentLeft);
    assert_eq!((sim.core.phase(), sim.releases), (Phase::Queued, 2));
    // A late connect from the agent who left is not bridged.
    sim.input(Input::AgentConnected);
    assert_eq!((sim.core.phase(), sim.bridges), (Phase::Queued, 0));
    sim.advance(secs(9));
    sim.finish_play();
    assert!(sim.last_heard().contains("Please stay on the line"));
}

/// The agent holds the caller (music, looped for as long as the hold lasts), takes them back,
/// mutes and unmutes; none of it means anything before the agent is there; hanging up while
/// the caller is held ends the call.
#[test]
fn an_agent_holds_resumes_and_mutes_a_bridged_caller() {
    let mut sim = queued_urgent_caller(agent_policy());
    sim.input(Input::Hold(true));
    sim.input(Input::Mute(true));
    assert!(sim.agent_ops.is_empty(), "not the agent's call yet");
    sim.input(Input::AgentOffered {
        agent: "nora".into(),
    });
    sim.input(Input::AgentConnected);
    sim.input(Input::Hold(true));
    assert_eq!(sim.core.phase(), Phase::Held);
    let music = |ops: &[String]| -> PlayId {
        ops.last()
            .unwrap()
            .strip_prefix("music ")
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(sim.agent_ops[0], "hold true");
    let first = music(&sim.agent_ops);
    // The music ends while the caller still waits: again, under a new id.
    sim.input(Input::PlayEnded(PlayEnd::Finished(first)));
    let second = music(&sim.agent_ops);
    assert_ne!(first, second);
    sim.input(Input::Hold(true));
    assert_eq!(sim.agent_ops.len(), 3, "already held: {:?}", sim.agent_ops);
    let heard = sim.heard.len();
    sim.advance(secs(300));
    assert_eq!(sim.heard.len(), heard, "no flow prompt while held");
    sim.input(Input::Hold(false));
    assert_eq!(sim.core.phase(), Phase::Bridged);
    assert_eq!(sim.agent_ops.last().unwrap(), "hold false");
    // The music stopped by the resume does not start again.
    sim.input(Input::PlayEnded(PlayEnd::Interrupted(second)));
    sim.input(Input::PlayEnded(PlayEnd::Finished(second)));
    assert_eq!(sim.agent_ops.len(), 4, "{:?}", sim.agent_ops);
    sim.input(Input::Mute(true));
    sim.input(Input::Mute(false));
    assert_eq!(sim.agent_ops[4..], ["mute true", "mute false"]);
    sim.input(Input::Hold(true));
    sim.input(Input::AgentLeft);
    assert_eq!(sim.core.ended(), Some("agent_hangup"));
    assert_eq!(sim.hangups, 1);
}

/// Only a queued caller can be taken; a caller who hangs up while the agent connects or
/// talks ends the call (the shell then closes the agent's leg).
#[test]
fn agents_take_only_queued_callers_and_a_caller_hanging_up_ends_it() {
    let mut sim = Sim::connected(shipped(), "200");
    sim.input(Input::AgentOffered {
        agent: "nora".into(),
    });
    assert_eq!((sim.core.phase(), sim.releases), (Phase::Ivr, 1));

    let mut sim = queued_urgent_caller(agent_policy());
    sim.input(Input::AgentOffered {
        agent: "nora".into(),
    });
    sim.input(Input::RemoteEnded(EndReason::CallerBye));
    assert_eq!(sim.core.ended(), Some("caller_bye"));
    assert_eq!(sim.queued_in("triage-urgent"), 0);

    let mut sim = queued_urgent_caller(agent_policy());
    sim.input(Input::AgentOffered {
        agent: "nora".into(),
    });
    sim.input(Input::AgentConnected);
    sim.input(Input::RemoteEnded(EndReason::CallerBye));
    assert_eq!(sim.core.ended(), Some("caller_bye"));
    assert_eq!(sim.hangups, 0);
}

#[test]
fn triage_without_a_key_defaults_to_japanese_and_gives_up_after_two_retries() {
    let mut sim = Sim::connected(shipped(), "200");
    sim.finish_play();
    sim.advance(secs(60));
    // Language menu timed out: Japanese. Then the Japanese menu three times (two retries
    // with "please say again" between), then goodbye.
    let menu = "緊急の方は9を押してください";
    let asked = sim.heard.iter().filter(|h| h.starts_with(menu)).count();
    assert_eq!(asked, 1, "{:?}", sim.heard);
    for _ in 0..2 {
        sim.finish_play();
        sim.advance(secs(8));
        assert_eq!(sim.last_heard(), "もう一度お願いします。");
        sim.finish_play();
        assert!(sim.last_heard().starts_with(menu));
    }
    sim.finish_play();
    sim.advance(secs(8));
    assert_eq!(sim.last_heard(), "お電話ありがとうございました。");
    assert_eq!(
        sim.core
            .contact()
            .attributes
            .get("language")
            .map(String::as_str),
        Some("ja")
    );
    sim.finish_play();
    assert_eq!(sim.core.ended(), Some("server_bye"));
    assert_eq!(sim.hangups, 1);
}

#[test]
fn triage_results_collects_a_patient_number_up_to_the_pound_key() {
    let mut sim = Sim::connected(shipped(), "200");
    sim.press("2");
    sim.finish_play();
    sim.press("4");
    assert!(
        sim.last_heard()
            .starts_with("Please enter your patient number")
    );
    sim.finish_play();
    sim.advance(secs(2));
    sim.press("12");
    sim.advance(secs(4)); // within the time allowed between keys
    sim.press("345#");
    assert_eq!(sim.last_heard(), "Connecting you to test results.");
    let number = sim.core.contact().attributes.get("patient_number").cloned();
    assert_eq!(number.as_deref(), Some("12345"));
    sim.finish_play();
    assert_eq!(sim.queued_in("triage-results"), 1);
}

/// A number keyed to its full length and then the pound key, as the prompt asks: the entry
/// is complete at its last digit, and the pound key belongs to it rather than answering the
/// next question, whether pressed live or typed ahead during a message.
#[test]
fn the_pound_key_after_a_full_length_entry_belongs_to_that_entry() {
    let unknown = |sim: &mut Sim, n: usize, pin: &str| {
        assert_eq!(sim.invokes.len(), n, "{:?}", sim.heard);
        let keyed = sim.core.contact().stored_input.clone();
        assert_eq!(keyed.as_deref(), Some(pin), "try {n}");
        let (id, _, _) = sim.invokes[n - 1].clone();
        sim.input(Input::Invoked(
            id,
            Ok(json!({"room_joined": "false", "reason": "unknown"})),
        ));
        assert!(
            sim.last_heard().contains("does not match"),
            "{:?}",
            sim.heard
        );
    };
    let mut sim = Sim::connected(shipped(), "300");
    // Live: the PIN cuts the question short, the pound key follows it.
    sim.press("123456789#");
    unknown(&mut sim, 1, "123456789");
    // Typed ahead while "that PIN does not match" plays: PIN and pound key wait for the
    // question, which takes the PIN and drops the pound key.
    sim.press("987654321#");
    sim.finish_play();
    if sim.playing.is_some() {
        sim.finish_play();
    }
    unknown(&mut sim, 2, "987654321");
    // Neither try was an empty entry.
    assert!(
        !sim.heard.iter().any(|h| h.contains("did not get")),
        "{:?}",
        sim.heard
    );
}

#[test]
fn the_caller_can_hang_up_at_every_step_and_nothing_follows() {
    // A scripted triage call, cut after each of its steps in turn.
    type StepFn = fn(&mut Sim);
    let steps: Vec<(&str, StepFn)> = vec![
        ("language menu", |s| s.finish_play()),
        ("english", |s| s.press("2")),
        ("menu waits", |s| s.advance(secs(3))),
        ("results", |s| s.press("4")),
        ("prompt ends", |s| s.finish_play()),
        ("half a number", |s| s.press("77")),
        ("pound", |s| s.press("#")),
        ("queued", |s| s.finish_play()),
        ("holding", |s| s.advance(secs(30))),
    ];
    for cut in 0..=steps.len() {
        for (why, cause) in [
            (Input::RemoteEnded(EndReason::CallerBye), "caller_bye"),
            (Input::Hangup("operator"), "operator"),
        ] {
            let bye = matches!(why, Input::Hangup(_));
            let mut sim = Sim::connected(shipped(), "200");
            for (_, step) in &steps[..cut] {
                step(&mut sim);
            }
            let heard = sim.heard.len();
            sim.input(why);
            assert_eq!(sim.core.ended(), Some(cause), "cut after {cut}");
            assert_eq!(sim.hangups, usize::from(bye), "cut after {cut}");
            assert_eq!(sim.core.poll_timeout(), None, "no timer outlives the call");
            assert_eq!(sim.queued_in("triage-results"), 0, "cut after {cut}");
            // Whatever still arrives is ignored.
            sim.press("1#");
            if let Some((id, _)) = sim.playing.take() {
                sim.input(Input::PlayEnded(PlayEnd::Finished(id)));
            }
            sim.advance(secs(600));
            sim.input(Input::Confirmed);
            assert_eq!(
                sim.heard.len(),
                heard,
                "cut after {cut}: nothing more played"
            );
            assert!(sim.core.poll_output().is_none());
            assert_eq!(sim.hangups, usize::from(bye));
        }
    }
}

#[test]
fn ringing_answers_when_the_ring_time_is_over_or_never_if_cancelled() {
    let policy = CallPolicy {
        ring: secs(2),
        ..CallPolicy::default()
    };
    let mut sim = Sim::new(shipped(), "100", policy.clone());
    assert_eq!(sim.core.phase(), Phase::Ringing);
    assert_eq!(sim.core.poll_timeout(), Some(sim.t0 + secs(2)));
    sim.advance(Duration::from_millis(1999));
    assert_eq!(sim.answers, 0);
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.answers, 1);
    assert_eq!(sim.core.phase(), Phase::Answering);
    assert!(sim.heard.is_empty(), "the flow waits for the caller's ACK");
    sim.input(Input::Confirmed);
    assert_eq!(sim.heard, ["en/welcome"]);

    let mut sim = Sim::new(shipped(), "100", policy);
    sim.advance(secs(1));
    sim.input(Input::RemoteEnded(EndReason::Cancelled));
    sim.advance(secs(5));
    assert_eq!((sim.answers, sim.hangups), (0, 0));
    assert_eq!(sim.core.ended(), Some("cancel"));
}

/// A browser's answer is in its hands at once; its media must connect within the policy's
/// limit or the call is hung up (`connect_timeout`), counted from the answer, not from when
/// the call arrived; one that connects in time runs its flow with nothing left to fire.
#[test]
fn an_answer_never_confirmed_is_given_up_after_the_confirm_limit() {
    let policy = CallPolicy {
        ring: secs(1),
        confirm_within: Some(secs(10)),
        ..CallPolicy::default()
    };
    let mut sim = Sim::new(shipped(), "100", policy.clone());
    assert_eq!(sim.core.poll_timeout(), Some(sim.t0 + secs(1)));
    sim.advance(secs(1));
    assert_eq!(sim.answers, 1);
    assert_eq!(sim.core.poll_timeout(), Some(sim.t0 + secs(11)));
    sim.advance(Duration::from_millis(9999));
    assert_eq!(sim.core.ended(), None);
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.core.ended(), Some("connect_timeout"));
    assert_eq!(sim.hangups, 1);
    assert!(sim.heard.is_empty());
    assert_eq!(sim.core.poll_timeout(), None);

    let mut sim = Sim::new(shipped(), "100", policy);
    sim.advance(secs(5));
    sim.input(Input::Confirmed);
    assert_eq!(sim.heard, ["en/welcome"]);
    sim.advance(secs(30));
    assert_eq!(sim.core.ended(), None, "confirmed calls keep running");
    assert_eq!(sim.hangups, 0);
}

fn lambda_flow() -> (FlowEngine, tempfile::TempDir) {
    custom(
        json!([
            {"Identifier": "ask", "Type": "InvokeLambdaFunction",
             "Parameters": {"LambdaFunctionARN": "verify", "InvocationTimeLimitSeconds": "3"},
             "Transitions": {"NextAction": "ok",
                 "Errors": [{"NextAction": "failed", "ErrorType": "NoMatchingError"}]}},
            say("ok", "Verified as $.External.name", "ask-again"),
            say("failed", "The service is unavailable", "ask-again"),
            {"Identifier": "ask-again", "Type": "InvokeLambdaFunction",
             "Parameters": {"LambdaFunctionARN": "verify", "InvocationTimeLimitSeconds": "3"},
             "Transitions": {"NextAction": "ok2",
                 "Errors": [{"NextAction": "end", "ErrorType": "NoMatchingError"}]}},
            say("ok2", "Second answer $.External.name", "end"),
            disconnect("end")
        ]),
        "ask",
    )
}

/// The shipped dial-in line: a good visit PIN takes the caller into the room and the flow
/// is over (nothing plays, nothing is waited on, the call lasts); a PIN that opens nothing is
/// told why and asked again; a room that answers only after the flow gave up waiting does
/// not take the call out of its flow.
#[test]
fn a_visit_pin_takes_the_caller_into_the_room_and_ends_the_flow() {
    let mut sim = Sim::connected(shipped(), "300");
    sim.finish_play();
    sim.press("123456789#");
    assert_eq!(sim.invokes.len(), 1, "{:?}", sim.heard);
    let (first, function, _) = sim.invokes[0].clone();
    assert_eq!(&*function, crate::flow::lambda::ROOM_JOIN);
    sim.input(Input::Invoked(
        first,
        Ok(json!({"room_joined": "false", "reason": "unknown"})),
    ));
    assert!(
        sim.last_heard().contains("does not match"),
        "{:?}",
        sim.heard
    );
    sim.finish_play();
    sim.press("987654321#");
    assert_eq!(sim.invokes.len(), 2);
    let second = sim.invokes[1].0;
    let heard = sim.heard.len();
    sim.input(Input::InRoom(second));
    assert_eq!(sim.core.phase(), Phase::InRoom);
    assert_eq!(
        sim.core.poll_timeout(),
        None,
        "nothing of the flow is waited on"
    );
    sim.advance(secs(3600));
    assert_eq!((sim.heard.len(), sim.core.ended()), (heard, None));
    sim.input(Input::Hangup("room_left"));
    assert_eq!(sim.core.ended(), Some("room_left"));

    // The flow gave up on the join (its time limit): a late entry is not taken.
    let mut sim = Sim::connected(shipped(), "300");
    sim.finish_play();
    sim.press("123456789#");
    let (id, _, timeout) = sim.invokes[0].clone();
    sim.advance(timeout);
    sim.input(Input::InRoom(id));
    assert_eq!(sim.core.phase(), Phase::Ivr);
}

#[test]
fn a_lambda_that_times_out_takes_the_error_branch_and_its_late_answer_is_ignored() {
    let (engine, _dir) = lambda_flow();
    let mut sim = Sim::connected(engine, "555");
    assert_eq!(sim.invokes.len(), 1);
    let (first, function, timeout) = sim.invokes[0].clone();
    assert_eq!((&*function, timeout), ("verify", secs(3)));
    sim.advance(Duration::from_millis(2999));
    assert!(sim.heard.is_empty());
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.heard, ["The service is unavailable"]);
    sim.finish_play();
    assert_eq!(sim.invokes.len(), 2, "the next Lambda step runs");
    let second = sim.invokes[1].0;
    // The first function answers now, late: it must not be taken for the second.
    sim.input(Input::Invoked(first, Ok(json!({"name": "late"}))));
    assert_eq!(sim.heard.len(), 1, "the late answer is dropped");
    sim.input(Input::Invoked(second, Ok(json!({"name": "on time"}))));
    assert_eq!(sim.last_heard(), "Second answer on time");
}

#[test]
fn a_lambda_that_answers_in_time_feeds_the_flow() {
    let (engine, _dir) = lambda_flow();
    let mut sim = Sim::connected(engine, "555");
    sim.advance(secs(1));
    let id = sim.invokes[0].0;
    sim.input(Input::Invoked(id, Ok(json!({"name": "Sato"}))));
    assert_eq!(sim.heard, ["Verified as Sato"]);
    sim.advance(secs(10));
    assert_eq!(sim.heard.len(), 1, "the time limit no longer applies");
}

#[test]
fn patient_lookup_is_its_own_request_and_the_identified_patient_is_kept() {
    let (engine, _dir) = custom(
        json!([
            {"Identifier": "find", "Type": "GetCustomerProfile", "Parameters": {
                "ProfileRequestData": {"IdentifierName": "_phone",
                    "IdentifierValue": "$.CustomerEndpoint.Address"},
                "ProfileResponseData": ["FirstName"]},
             "Transitions": {"NextAction": "found", "Errors": [
                 {"NextAction": "none", "ErrorType": "NoneFoundError"},
                 {"NextAction": "none", "ErrorType": "NoMatchingError"}]}},
            say("found", "Language $.External.preferred_language", "end"),
            say("none", "Not found", "end"),
            disconnect("end")
        ]),
        "find",
    );
    let mut sim = Sim::connected(engine, "555");
    assert!(sim.invokes.is_empty(), "no Lambda named for the lookup");
    let (id, query) = sim.identifies[0].clone();
    assert_eq!(query.phone.as_deref(), Some("+15550001111"));
    let found = Identify::Found {
        patient_id: "p-42".into(),
        preferred_language: Some("ja".into()),
        verified: false,
    };
    sim.input(Input::Identified(id, found));
    assert_eq!(sim.heard, ["Language ja"]);
    assert_eq!(sim.core.patient(), Some("p-42"));
}

#[test]
fn speech_that_arrives_late_plays_only_if_its_play_is_still_current() {
    // The call ends while the English menu is being synthesized.
    let mut sim = Sim::connected(shipped(), "200");
    sim.hold_renders = true;
    sim.finish_play();
    sim.press("2");
    assert_eq!((sim.heard.len(), sim.held.len()), (1, 1));
    sim.input(Input::Hangup("operator"));
    let (id, prompts) = sim.held.pop().unwrap();
    sim.input(Input::Rendered(id, prompts));
    assert_eq!(sim.heard.len(), 1, "a play for an ended call is dropped");

    // A render for a play that is not the current one is dropped.
    let mut sim = Sim::connected(shipped(), "100");
    sim.hold_renders = true;
    sim.press("1");
    let (current, prompts) = sim.held.pop().unwrap();
    sim.input(Input::Rendered(current + 100, prompts.clone()));
    assert_eq!(sim.heard, ["en/welcome"]);
    sim.input(Input::Rendered(current, prompts));
    assert_eq!(sim.heard, ["en/welcome", "en/digit-1"]);

    // Rendering nothing (every sentence failed) counts as a finished play: the flow goes on
    // to collect, and gives up after its time limit.
    let mut sim = Sim::connected(shipped(), "100");
    sim.hold_renders = true;
    sim.press("4");
    let (id, _) = sim.held.pop().unwrap();
    sim.input(Input::Rendered(id, Vec::new()));
    sim.advance(secs(10));
    assert_eq!(
        sim.renders.values().filter(|r| *r == "en/goodbye").count(),
        1
    );
}

#[test]
fn recording_policy_api_and_flow_agree_on_one_recording_at_a_time() {
    let policy = CallPolicy {
        record_all: true,
        ..CallPolicy::default()
    };
    let mut sim = Sim::new(shipped(), "100", policy);
    assert_eq!(sim.records, [RecordOp::Open(Participants::BOTH)]);
    let first = sim.core.recording().unwrap().0.unwrap();
    sim.input(Input::Recording(RecordingControl::Pause));
    sim.input(Input::Recording(RecordingControl::Pause));
    sim.input(Input::Recording(RecordingControl::Start(
        Participants::BOTH,
    )));
    assert_eq!(
        sim.records[1..],
        [RecordOp::Pause, RecordOp::Resume],
        "a second pause is nothing; start while paused resumes"
    );
    sim.input(Input::Recording(RecordingControl::Stop));
    sim.input(Input::Recording(RecordingControl::Stop));
    sim.input(Input::Recording(RecordingControl::Resume));
    assert_eq!(sim.records.len(), 4);
    assert_eq!(sim.records[3], RecordOp::Close);
    sim.input(Input::Recording(RecordingControl::Start(
        Participants::BOTH,
    )));
    let second = sim.core.recording().unwrap().0.unwrap();
    assert_ne!(first, second, "starting after a stop makes a new recording");
    assert_eq!(sim.core.recordings(), [first, second]);

    // The recorder has stopped: nothing is recorded and nothing is listed.
    let mut sim = Sim::new(shipped(), "100", CallPolicy::default());
    sim.core.handle(
        Input::Recording(RecordingControl::Start(Participants::BOTH)),
        sim.now(),
    );
    assert!(matches!(
        sim.core.poll_output(),
        Some(Output::Record(RecordOp::Open(_)))
    ));
    sim.core.handle(Input::RecordingOpened(None), sim.now());
    assert_eq!(sim.core.recording(), None);
    assert!(sim.core.recordings().is_empty());
}

#[test]
fn flow_recording_and_streaming_steps_reach_the_shell() {
    let (engine, _dir) = custom(
        json!([
            {"Identifier": "rec", "Type": "UpdateContactRecordingBehavior",
             "Parameters": {"RecordingBehavior": {"RecordedParticipants": ["Customer"]}},
             "Transitions": {"NextAction": "stream"}},
            {"Identifier": "stream", "Type": "StartMediaStreaming", "Parameters": {},
             "Transitions": {"NextAction": "hello",
                 "Errors": [{"NextAction": "hello", "ErrorType": "NoMatchingError"}]}},
            say("hello", "Hello", "stop"),
            {"Identifier": "stop", "Type": "UpdateContactRecordingBehavior",
             "Parameters": {"RecordingBehavior": {"RecordedParticipants": []}},
             "Transitions": {"NextAction": "end"}},
            disconnect("end")
        ]),
        "rec",
    );
    let customer = Participants {
        customer: true,
        agent: false,
    };
    let mut sim = Sim::connected(engine, "555");
    assert_eq!(sim.records, [RecordOp::Open(customer)]);
    assert!(sim.streams.is_empty(), "no streaming endpoint configured");
    sim.finish_play();
    assert_eq!(sim.records, [RecordOp::Open(customer), RecordOp::Close]);
    assert_eq!(sim.core.ended(), Some("server_bye"));

    let (engine, _dir) = custom(
        json!([
            {"Identifier": "stream", "Type": "StartMediaStreaming", "Parameters": {},
             "Transitions": {"NextAction": "end",
                 "Errors": [{"NextAction": "end", "ErrorType": "NoMatchingError"}]}},
            disconnect("end")
        ]),
        "stream",
    );
    let policy = CallPolicy {
        streaming: true,
        ..CallPolicy::default()
    };
    let mut sim = Sim::new(engine, "555", policy);
    sim.input(Input::Confirmed);
    assert_eq!(sim.streams, [true]);
    assert!(sim.core.is_streaming());
}

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

// --- Calls Careline places ----------------------------------------------------------------

fn dialing(policy: CallPolicy) -> Sim {
    let (engine, dir) = custom(
        json!([
            say("hello", "This is the clinic calling.", "bye"),
            disconnect("bye")
        ]),
        "hello",
    );
    std::mem::forget(dir);
    Sim::new(engine, "main", policy)
}

fn dial_policy(ring: u64) -> CallPolicy {
    CallPolicy {
        dial_timeout: Some(secs(ring)),
        // Ringing before an answer is an inbound call's: a placed call ignores it.
        ring: secs(2),
        ..CallPolicy::default()
    }
}

#[test]
fn a_placed_call_waits_for_the_answer_then_runs_its_flow() {
    let mut sim = dialing(dial_policy(30));
    assert_eq!(sim.core.phase(), Phase::Dialing);
    assert_eq!(sim.answers, 0, "Careline answers nothing: it is the caller");
    assert_eq!(sim.core.poll_timeout(), Some(sim.t0 + secs(30)));
    sim.advance(secs(20));
    assert!(sim.heard.is_empty(), "nothing plays before the answer");
    sim.input(Input::Answered);
    assert_eq!(sim.core.phase(), Phase::Answering);
    assert_eq!(sim.core.poll_timeout(), None, "the no-answer timer is gone");
    sim.input(Input::Confirmed);
    assert_eq!(sim.core.phase(), Phase::Ivr);
    assert_eq!(sim.heard, ["This is the clinic calling."]);
    sim.advance(secs(60));
    assert_eq!(sim.core.ended(), None, "answered: no time-out applies");
    sim.finish_play();
    assert_eq!(sim.core.ended(), Some("server_bye"));
    assert_eq!(sim.hangups, 1);
}

#[test]
fn a_placed_call_nobody_answers_is_given_up_at_its_timeout() {
    let mut sim = dialing(dial_policy(30));
    sim.advance(Duration::from_millis(29_999));
    assert_eq!(sim.core.ended(), None);
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.core.ended(), Some("no_answer"));
    assert_eq!(sim.hangups, 1, "the shell cancels the INVITE");
    assert!(sim.heard.is_empty());
    sim.input(Input::Answered);
    assert_eq!(
        sim.core.phase(),
        Phase::Ended,
        "an answer after that changes nothing"
    );
}

#[test]
fn a_refused_call_ends_with_what_the_far_end_said() {
    for (code, cause) in [
        (Some(486), "busy"),
        (Some(600), "busy"),
        (Some(603), "declined"),
        (Some(404), "not_found"),
        (Some(480), "no_answer"),
        (Some(407), "trunk_auth"),
        (Some(503), "trunk_error"),
        (Some(488), "refused"),
        (None, "unreachable"),
    ] {
        let mut sim = dialing(dial_policy(30));
        sim.input(Input::DialFailed(code));
        assert_eq!(sim.core.ended(), Some(cause), "{code:?}");
        assert_eq!(sim.hangups, 0, "{code:?}: nothing to cancel");
        assert_eq!(sim.core.poll_timeout(), None);
    }
    // A refusal that comes after the answer (a late, stray response) ends nothing.
    let mut sim = dialing(dial_policy(30));
    sim.input(Input::Answered);
    sim.input(Input::DialFailed(Some(486)));
    assert_eq!(sim.core.ended(), None);
}

#[test]
fn a_placed_call_that_hangs_up_while_it_rings_is_cancelled_and_ended_by_its_cause() {
    let mut sim = dialing(dial_policy(30));
    sim.input(Input::Hangup("shutdown"));
    assert_eq!(sim.core.ended(), Some("shutdown"));
    assert_eq!(sim.hangups, 1);
}

/// A flow that asks who answered: a person hears the questions, a voicemail a message.
fn screening_flow() -> (FlowEngine, tempfile::TempDir) {
    let check = |id: &str| {
        json!({"Identifier": id, "Type": "CheckOutboundCallStatus", "Parameters": {},
            "Transitions": {"NextAction": "person", "Conditions": [
                {"NextAction": "person", "Condition": {"Operator": "Equals", "Operands": ["CallAnswered"]}},
                {"NextAction": "voicemail", "Condition": {"Operator": "Equals", "Operands": ["VoicemailNoBeep"]}}],
                "Errors": [{"NextAction": "person", "ErrorType": "NoMatchingError"}]}})
    };
    custom(
        json!([
            check("who"),
            say("person", "How are you feeling today?", "bye"),
            say("voicemail", "Please call your care team back.", "bye"),
            disconnect("bye")
        ]),
        "who",
    )
}

#[test]
fn a_placed_call_asks_the_leg_who_answered_and_the_flow_waits_in_silence() {
    let (engine, _dir) = screening_flow();
    let mut sim = Sim::new(engine, "main", dial_policy(30));
    sim.input(Input::Answered);
    sim.input(Input::Confirmed);
    assert_eq!(sim.screens, 1, "detection starts with the flow");
    sim.advance(secs(3));
    assert!(sim.heard.is_empty(), "nothing plays while it listens");
    sim.input(Input::CallProgress(CallProgress::VoicemailNoBeep));
    assert_eq!(sim.heard, ["Please call your care team back."]);

    let (engine, _dir) = screening_flow();
    let mut sim = Sim::new(engine, "main", dial_policy(30));
    sim.input(Input::Answered);
    sim.input(Input::Confirmed);
    sim.input(Input::CallProgress(CallProgress::CallAnswered));
    assert_eq!(sim.heard, ["How are you feeling today?"]);
}

#[test]
fn a_call_careline_did_not_place_has_no_one_to_screen_and_takes_the_error_branch() {
    let (engine, _dir) = screening_flow();
    let sim = Sim::connected(engine, "main");
    assert_eq!(sim.screens, 0);
    assert_eq!(sim.heard, ["How are you feeling today?"]);
}

// --- Queued callbacks ------------------------------------------------------------------------

/// A callback's call: the patient hears the greeting, and the flow's end joins the agent.
fn callback_call(agent_ready_first: bool) -> Sim {
    let (engine, dir) = custom(
        json!([
            say("hello", "This is the clinic, returning your call.", "end"),
            {"Identifier": "end", "Type": "EndFlowExecution", "Parameters": {}, "Transitions": {}}
        ]),
        "hello",
    );
    std::mem::forget(dir);
    let policy = CallPolicy {
        callback_agent: Some("nurse1".into()),
        agent_connect_within: Some(secs(10)),
        ..dial_policy(30)
    };
    let mut sim = Sim::new(engine, "main", policy);
    if agent_ready_first {
        sim.input(Input::AgentConnected);
    }
    assert_eq!(
        sim.core.phase(),
        Phase::Dialing,
        "the agent waits for the patient"
    );
    sim.input(Input::Answered);
    sim.input(Input::Confirmed);
    sim
}

#[test]
fn a_callback_joins_its_agent_once_the_patient_heard_the_greeting() {
    let mut sim = callback_call(true);
    assert_eq!(sim.heard, ["This is the clinic, returning your call."]);
    assert_eq!(sim.bridges, 0, "not before the greeting is over");
    sim.finish_play();
    assert_eq!(sim.core.phase(), Phase::Bridged);
    assert_eq!(sim.bridges, 1);
    assert_eq!(sim.hangups, 0, "the flow's end is no hang-up here");
    // The agent hangs up: the call ends.
    sim.input(Input::AgentLeft);
    assert_eq!(sim.core.ended(), Some("agent_hangup"));
}

#[test]
fn a_callback_whose_agent_connects_late_waits_for_them_then_gives_up() {
    let mut sim = callback_call(false);
    sim.finish_play();
    assert_eq!(
        sim.core.phase(),
        Phase::Offered,
        "the patient waits for the agent"
    );
    sim.advance(secs(5));
    sim.input(Input::AgentConnected);
    assert_eq!(sim.core.phase(), Phase::Bridged);

    let mut sim = callback_call(false);
    sim.finish_play();
    sim.advance(secs(10));
    assert_eq!(sim.core.ended(), Some("agent_hangup"), "nobody to talk to");
    assert_eq!((sim.hangups, sim.releases), (1, 1));
}

#[test]
fn a_callback_agent_who_leaves_while_the_phone_rings_cancels_the_call() {
    let (engine, dir) = custom(json!([disconnect("bye")]), "bye");
    std::mem::forget(dir);
    let policy = CallPolicy {
        callback_agent: Some("nurse1".into()),
        ..dial_policy(30)
    };
    let mut sim = Sim::new(engine, "main", policy);
    sim.input(Input::AgentLeft);
    assert_eq!(sim.core.ended(), Some("agent_hangup"));
    assert_eq!(sim.hangups, 1, "the INVITE is cancelled");
}

#[test]
fn a_callback_flow_that_disconnects_hangs_up_without_the_agent() {
    let mut sim = dialing(CallPolicy {
        callback_agent: Some("nurse1".into()),
        ..dial_policy(30)
    });
    sim.input(Input::AgentConnected);
    sim.input(Input::Answered);
    sim.input(Input::Confirmed);
    sim.finish_play();
    assert_eq!(sim.core.ended(), Some("server_bye"));
    assert_eq!(sim.bridges, 0);
}

#[test]
fn a_queued_caller_asks_for_a_callback_and_the_flow_goes_on_once_it_is_kept() {
    let (engine, _dir) = custom(
        json!([
            {"Identifier": "cb", "Type": "CreateCallbackContact",
             "Parameters": {"QueueId": "triage-nurses", "InitialCallDelaySeconds": "5",
                            "MaximumConnectionAttempts": "2", "RetryDelaySeconds": "300"},
             "Transitions": {"NextAction": "bye-ok",
                 "Errors": [{"NextAction": "bye-err", "ErrorType": "NoMatchingError"}]}},
            say("bye-ok", "We will call you back.", "bye"),
            say("bye-err", "Sorry.", "bye"),
            disconnect("bye")
        ]),
        "cb",
    );
    let mut sim = Sim::connected(engine, "main");
    assert!(sim.heard.is_empty());
    assert_eq!(sim.callbacks.len(), 1);
    assert_eq!(sim.callbacks[0].number, "+15550001111");
    assert_eq!(&*sim.callbacks[0].queue, "triage-nurses");
    sim.input(Input::CallbackCreated(Ok(())));
    assert_eq!(sim.heard, ["We will call you back."]);
}

// --- Transfers to an outside number ----------------------------------------------------------

/// The nurse sends the caller to an outside number: she is released, the caller hears music
/// (again and again while it rings), and when the number answers its leg is bridged; the
/// caller's queue stay keeps the nurse who answered.
#[test]
fn a_caller_transferred_out_hears_music_until_the_number_answers() {
    let mut sim = queued_urgent_caller(agent_policy());
    sim.input(Input::AgentOffered {
        agent: "nora".into(),
    });
    sim.input(Input::AgentConnected);
    sim.input(Input::Hold(true));
    sim.agent_ops.clear();
    sim.input(Input::TransferOut);
    assert!(sim.core.transferring_out());
    assert_eq!(sim.core.phase(), Phase::Offered);
    assert_eq!(sim.releases, 1, "the nurse is released");
    assert_eq!(
        sim.agent_ops[0], "hold false",
        "the caller's audio flows again"
    );
    let music = |ops: &[String]| ops.iter().filter(|o| o.starts_with("music")).count();
    assert_eq!(music(&sim.agent_ops), 1);
    let Some(id) = sim.agent_ops.last().and_then(|o| o.strip_prefix("music ")) else {
        panic!("{:?}", sim.agent_ops)
    };
    let id: PlayId = id.parse().unwrap();
    sim.input(Input::PlayEnded(PlayEnd::Finished(id)));
    assert_eq!(music(&sim.agent_ops), 2, "the music loops while it rings");
    sim.input(Input::AgentOffered {
        agent: String::new(),
    });
    assert_eq!(sim.releases, 1, "the outside leg is taken");
    sim.input(Input::AgentConnected);
    assert_eq!(sim.core.phase(), Phase::Bridged);
    assert!(!sim.core.transferring_out());
    assert_eq!(sim.bridges, 2);
    assert_eq!(sim.core.queue_stays().len(), 1);
    assert_eq!(sim.core.queue_stays()[0].agent.as_deref(), Some("nora"));
    // Its hang-up ends the call.
    sim.input(Input::AgentLeft);
    assert_eq!(sim.core.ended(), Some("agent_hangup"));
}

/// A number that does not answer: the caller goes back to a queue (the shell's ticket), the
/// music stops looping and the hold flow plays.
#[test]
fn a_caller_whose_outside_number_fails_goes_back_to_the_queue() {
    use crate::flow::queues::QueuePriority;
    let mut sim = queued_urgent_caller(agent_policy());
    sim.input(Input::AgentOffered {
        agent: "nora".into(),
    });
    sim.input(Input::AgentConnected);
    sim.input(Input::TransferOut);
    // A leg that goes away before it is bridged changes nothing by itself.
    sim.input(Input::AgentLeft);
    assert_eq!(sim.core.phase(), Phase::Offered);
    assert_eq!(sim.core.ended(), None);
    let ticket = sim
        .engine
        .queues
        .enqueue(
            "triage-urgent",
            sim.t0,
            "sim-call",
            QueuePriority::default(),
        )
        .unwrap();
    sim.input(Input::Transferred(ticket));
    assert_eq!(sim.core.phase(), Phase::Queued);
    assert!(!sim.core.transferring_out());
    assert_eq!(sim.queued_in("triage-urgent"), 1);
    sim.finish_play();
    assert!(
        sim.last_heard().contains("Please stay on the line"),
        "{:?}",
        sim.heard
    );
    // Not joined: a transfer out means nothing now.
    sim.input(Input::TransferOut);
    assert!(!sim.core.transferring_out());
}

fn browser_policy(grace: Option<u64>) -> CallPolicy {
    CallPolicy {
        confirm_within: Some(secs(10)),
        reconnect_grace: grace.map(secs),
        ..CallPolicy::default()
    }
}

/// A browser caller waiting for a nurse reloads the page: the lost connection does not end
/// the call at once; the caller keeps their place in the queue, and when the new connection
/// is up the call goes on as before. Lost again and not back within the grace, the call ends
/// (`connection_lost`) and the place is freed; a second loss before the first is over does
/// not stretch the grace.
#[test]
fn a_browser_caller_whose_connection_comes_back_within_the_grace_keeps_the_call() {
    let mut sim = queued_urgent_caller(browser_policy(Some(20)));
    let heard = sim.heard.len();
    sim.input(Input::ConnectionLost);
    assert_eq!(sim.core.poll_timeout(), Some(sim.t0 + sim.at + secs(20)));
    sim.advance(Duration::from_millis(19_999));
    assert_eq!(sim.core.ended(), None);
    assert_eq!(sim.core.phase(), Phase::Queued);
    assert_eq!(
        sim.queued_in("triage-urgent"),
        1,
        "the caller keeps the place"
    );
    sim.input(Input::Confirmed);
    assert_eq!(sim.core.phase(), Phase::Queued);
    assert_eq!(sim.heard.len(), heard, "the flow did not start over");
    sim.advance(secs(60));
    assert_eq!(sim.core.ended(), None, "back in time: the call goes on");

    sim.input(Input::ConnectionLost);
    sim.advance(secs(10));
    sim.input(Input::ConnectionLost);
    sim.advance(Duration::from_millis(9_999));
    assert_eq!(sim.core.ended(), None);
    sim.advance(Duration::from_millis(1));
    assert_eq!(
        sim.core.ended(),
        Some("connection_lost"),
        "the grace counts from the first loss"
    );
    assert_eq!(sim.hangups, 1);
    assert_eq!(sim.queued_in("triage-urgent"), 0, "the place is freed");
    assert_eq!(sim.core.poll_timeout(), None);
}

/// Without a grace (phones; `reconnect_grace_secs = 0`) a lost connection ends the call at
/// once, and so it does for a browser that never connected, whatever the grace.
#[test]
fn a_lost_connection_ends_the_call_at_once_without_a_grace_or_before_it_connected() {
    let mut sim = Sim::new(shipped(), "100", browser_policy(None));
    sim.input(Input::Confirmed);
    sim.input(Input::ConnectionLost);
    assert_eq!(sim.core.ended(), Some("connection_lost"));
    assert_eq!(sim.hangups, 1);

    let mut sim = Sim::new(shipped(), "100", browser_policy(Some(20)));
    assert_eq!(sim.core.phase(), Phase::Answering);
    sim.input(Input::ConnectionLost);
    assert_eq!(sim.core.ended(), Some("connection_lost"));
    assert!(sim.heard.is_empty());
}

/// A warm transfer's hand-over: the caller, on hold while their agent consulted someone, is
/// taken off hold and stays joined (no flow, no queue) when the agent leaves; the party who
/// took the agent's place hanging up ends the call. Before the caller is joined to an agent a
/// hand-over does nothing.
#[test]
fn a_handover_releases_the_agent_and_keeps_the_caller_joined() {
    let mut sim = queued_urgent_caller(agent_policy());
    sim.input(Input::Handover);
    assert_eq!(
        sim.core.phase(),
        Phase::Queued,
        "not joined: nothing happens"
    );
    assert_eq!(sim.releases, 0);
    sim.input(Input::AgentOffered {
        agent: "nora".into(),
    });
    sim.input(Input::AgentConnected);
    sim.input(Input::Hold(true));
    assert_eq!(sim.core.phase(), Phase::Held);
    let heard = sim.heard.len();
    sim.input(Input::Handover);
    assert_eq!(sim.core.phase(), Phase::Bridged);
    assert_eq!(sim.releases, 1, "the agent is released to wrap up");
    assert_eq!(sim.agent_ops.last().map(String::as_str), Some("hold false"));
    sim.advance(secs(600));
    assert_eq!(sim.core.ended(), None);
    assert!(sim.heard.len() <= heard + 1, "no flow after the hand-over");
    sim.input(Input::AgentLeft);
    assert_eq!(sim.core.ended(), Some("agent_hangup"));
    assert_eq!(sim.hangups, 1);
}

/// Whisper flows (Amazon Connect's UpdateContactEventHooks `AgentWhisper` and
/// `CustomerWhisper`): when the agent is joined, the agent's whisper flow says its messages
/// to the agent (here a prompt) and the caller's to the caller (text naming the queue, from
/// the contact as it is then); nothing is whispered without the hooks, and a flow that asks
/// for more than messages stops there.
#[test]
fn whisper_flows_speak_to_each_side_as_the_agent_is_joined() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, start: &str, actions: serde_json::Value| {
        let flow = json!({"Version": "2019-10-30", "StartAction": start, "Actions": actions});
        std::fs::write(dir.path().join(format!("{name}.json")), flow.to_string()).unwrap();
    };
    let end = json!({"Identifier": "end", "Type": "EndFlowExecution", "Parameters": {},
        "Transitions": {}});
    write(
        "main",
        "hooks",
        json!([
            {"Identifier": "hooks", "Type": "UpdateContactEventHooks",
             "Parameters": {"EventHooks": {"AgentWhisper": "to-agent"}},
             "Transitions": {"NextAction": "hooks2", "Errors": [
                 {"NextAction": "queue", "ErrorType": "NoMatchingError"}]}},
            {"Identifier": "hooks2", "Type": "UpdateContactEventHooks",
             "Parameters": {"EventHooks": {"CustomerWhisper": "to-caller"}},
             "Transitions": {"NextAction": "queue", "Errors": [
                 {"NextAction": "queue", "ErrorType": "NoMatchingError"}]}},
            {"Identifier": "queue", "Type": "UpdateContactTargetQueue",
             "Parameters": {"QueueId": "triage-nurses"},
             "Transitions": {"NextAction": "transfer", "Errors": [
                 {"NextAction": "transfer", "ErrorType": "NoMatchingError"}]}},
            {"Identifier": "transfer", "Type": "TransferContactToQueue", "Parameters": {},
             "Transitions": {"NextAction": "bye", "Errors": [
                 {"NextAction": "bye", "ErrorType": "QueueAtCapacity"},
                 {"NextAction": "bye", "ErrorType": "NoMatchingError"}]}},
            {"Identifier": "bye", "Type": "DisconnectParticipant", "Parameters": {},
             "Transitions": {}}
        ]),
    );
    write(
        "to-agent",
        "say",
        json!([
            {"Identifier": "say", "Type": "MessageParticipant",
             "Parameters": {"PromptId": "digit-5"},
             "Transitions": {"NextAction": "ask", "Errors": [
                 {"NextAction": "end", "ErrorType": "NoMatchingError"}]}},
            {"Identifier": "ask", "Type": "GetParticipantInput",
             "Parameters": {"PromptId": "digit-9", "InputTimeLimitSeconds": "5",
                 "StoreInput": "False"},
             "Transitions": {"NextAction": "end", "Conditions": [], "Errors": [
                 {"NextAction": "end", "ErrorType": "InputTimeLimitExceeded"},
                 {"NextAction": "end", "ErrorType": "NoMatchingCondition"},
                 {"NextAction": "end", "ErrorType": "NoMatchingError"}]}},
            end.clone()
        ]),
    );
    write(
        "to-caller",
        "say",
        json!([
            {"Identifier": "say", "Type": "MessageParticipant",
             "Parameters": {"Text": "Connecting you to $.Queue.Name"},
             "Transitions": {"NextAction": "end", "Errors": [
                 {"NextAction": "end", "ErrorType": "NoMatchingError"}]}},
            end
        ]),
    );
    let mut config = Config::default();
    config.flows.dir = dir.path().to_path_buf();
    config.flows.default = "main".into();
    let mut sim = Sim::new(engine(&config), "100", agent_policy());
    sim.input(Input::Confirmed);
    assert_eq!(sim.core.phase(), Phase::Queued);
    sim.input(Input::AgentOffered {
        agent: "nora".into(),
    });
    assert!(sim.whispers.is_empty(), "nothing before the agent is there");
    sim.input(Input::AgentConnected);
    assert_eq!(sim.core.phase(), Phase::Bridged);
    assert_eq!(
        sim.whispers,
        [(
            "en/digit-5 | en/digit-9".to_string(),
            "Connecting you to triage-nurses".to_string()
        )],
        "the agent's whisper stops at its input (its prompt said); the caller's names the queue"
    );

    // Without hooks: the shipped triage flow whispers nothing.
    let mut sim = queued_urgent_caller(agent_policy());
    sim.input(Input::AgentOffered {
        agent: "nora".into(),
    });
    sim.input(Input::AgentConnected);
    assert_eq!(sim.core.phase(), Phase::Bridged);
    assert!(sim.whispers.is_empty());
}

fn agent_browser_policy(grace: Option<u64>) -> CallPolicy {
    CallPolicy {
        agent_reconnect_grace: grace.map(secs),
        ..agent_policy()
    }
}

/// A nurse talking with the urgent caller joined to her.
fn talking_with_nora(policy: CallPolicy) -> Sim {
    let mut sim = queued_urgent_caller(policy);
    sim.input(Input::AgentOffered {
        agent: "nora".into(),
    });
    sim.input(Input::AgentConnected);
    assert_eq!(sim.core.phase(), Phase::Bridged);
    sim
}

/// The nurse's console reloads mid-call: the caller is put on hold (music) rather than lost
/// or handed to someone else, the call waits the grace for her, and when her new connection
/// is up the two talk again (off hold, the same stay, no second bridge). Keys and the hold
/// button mean nothing while she is away. A second loss before the first is over does not
/// stretch the grace.
#[test]
fn an_agent_whose_console_reloads_gets_the_caller_back_within_the_grace() {
    let mut sim = talking_with_nora(agent_browser_policy(Some(20)));
    sim.input(Input::AgentLost { may_return: true });
    assert_eq!(sim.core.phase(), Phase::Held);
    assert_eq!(sim.agent_ops[0], "hold true");
    assert!(
        sim.agent_ops[1].starts_with("music "),
        "{:?}",
        sim.agent_ops
    );
    assert_eq!(sim.core.poll_timeout(), Some(sim.t0 + sim.at + secs(20)));
    sim.input(Input::Hold(false));
    assert_eq!(sim.core.phase(), Phase::Held, "nobody to resume with");
    sim.advance(secs(10));
    sim.input(Input::AgentLost { may_return: true });
    assert_eq!(
        sim.core.poll_timeout(),
        Some(sim.t0 + secs(20) + sim.at - secs(10))
    );
    sim.advance(Duration::from_millis(9_999));
    sim.input(Input::AgentConnected);
    assert_eq!(sim.core.phase(), Phase::Bridged);
    assert_eq!(sim.agent_ops.last().map(String::as_str), Some("hold false"));
    assert_eq!((sim.bridges, sim.releases, sim.returns), (1, 0, 0));
    assert_eq!(sim.core.poll_timeout(), None);
    sim.advance(secs(600));
    assert_eq!(sim.core.ended(), None);
    let stays = sim.core.queue_stays();
    assert_eq!(stays.len(), 1);
    assert_eq!(stays[0].agent.as_deref(), Some("nora"));
    // Her hang-up after all that ends the call as usual.
    sim.input(Input::AgentLeft);
    assert_eq!(sim.core.ended(), Some("agent_hangup"));
}

/// A caller she had put on hold stays on hold when she is back (her page restores the hold
/// button); she takes them off it herself.
#[test]
fn a_caller_on_hold_before_the_agent_reloads_stays_on_hold_after() {
    let mut sim = talking_with_nora(agent_browser_policy(Some(20)));
    sim.input(Input::Hold(true));
    let ops = sim.agent_ops.len();
    sim.input(Input::AgentLost { may_return: true });
    assert_eq!(sim.agent_ops.len(), ops, "already held: the music goes on");
    sim.input(Input::AgentConnected);
    assert_eq!(sim.core.phase(), Phase::Held);
    assert_eq!(sim.agent_ops.len(), ops);
    sim.input(Input::Hold(false));
    assert_eq!(sim.core.phase(), Phase::Bridged);
}

/// She is not back within the grace (a closed tab, a dead laptop): the caller goes back to
/// the queue (the shell places them first of their urgency), off hold, hearing its hold flow, for the next nurse; a late
/// connection of hers means nothing then.
#[test]
fn an_agent_not_back_within_the_grace_sends_the_caller_to_the_front_of_the_queue() {
    let mut sim = talking_with_nora(agent_browser_policy(Some(20)));
    sim.input(Input::AgentLost { may_return: true });
    sim.advance(secs(20));
    assert_eq!(sim.returns, 1);
    assert_eq!(sim.core.phase(), Phase::Queued);
    assert_eq!(sim.releases, 1, "her leg is closed");
    assert_eq!(sim.agent_ops.last().map(String::as_str), Some("hold false"));
    assert_eq!(sim.queued_in("triage-urgent"), 1);
    assert_eq!(sim.core.queue_stays().len(), 2, "a new stay, unanswered");
    sim.finish_play();
    assert!(
        sim.last_heard().contains("Please stay on the line"),
        "{:?}",
        sim.heard
    );
    sim.input(Input::AgentConnected);
    assert_eq!(
        sim.core.phase(),
        Phase::Queued,
        "not offered: nothing to bridge"
    );
    assert_eq!(sim.bridges, 1);
}

/// A phone agent cannot come back (and neither can anyone without a grace): the caller goes
/// back to the queue at once; an agent lost while still connecting gives the call back as
/// one who never connected; with no queue to go back to, the call ends.
#[test]
fn an_agent_who_cannot_come_back_sends_the_caller_back_at_once() {
    let mut sim = talking_with_nora(agent_browser_policy(Some(20)));
    sim.input(Input::AgentLost { may_return: false });
    assert_eq!((sim.returns, sim.releases), (1, 1));
    assert_eq!(sim.core.phase(), Phase::Queued);

    let mut sim = talking_with_nora(agent_browser_policy(None));
    sim.input(Input::AgentLost { may_return: true });
    assert_eq!((sim.returns, sim.core.phase()), (1, Phase::Queued));

    let mut sim = queued_urgent_caller(agent_browser_policy(Some(20)));
    sim.input(Input::AgentOffered {
        agent: "nora".into(),
    });
    sim.input(Input::AgentLost { may_return: true });
    assert_eq!((sim.returns, sim.releases), (0, 1));
    assert_eq!(sim.core.phase(), Phase::Queued);
    assert_eq!(sim.queued_in("triage-urgent"), 1, "the place kept");

    // Bridged with no queue (an outside number's transfer answered, say): nowhere to go back.
    let mut sim = Sim::connected(shipped(), "100");
    sim.input(Input::AgentLost { may_return: false });
    assert_eq!(sim.core.ended(), None, "not talking with an agent: nothing");
}
