//! The contact center's desk: the thin shell around the [`Acd`] core. It owns the core's
//! timer, hears of contacts that start and stop waiting (as the queues' [`QueueWatcher`]),
//! takes agents' choices from their consoles, and carries the core's outputs to the consoles
//! of the agents they concern, and to `/metrics`.
//!
//! An agent is at the desk while one of their consoles is connected (a browser tab holding the
//! signaling WebSocket). When the last one goes, they stay as they are for
//! `[routing] reconnect_grace_secs` (a tab reload, a network blip) and are then signed out,
//! which hands a ringing contact on to the next agent.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, info, warn};

use super::acd::{
    Acd, AcdError, AcdPolicy, AgentState, Answered, Availability, Output, ProfileQueue,
    QueueLimits, RoutingProfile, Withdrawn,
};
use crate::flow::criteria::{Proficiencies, RoutingCriteria};
use crate::flow::queues::{QueueConfig, QueuePriority, QueueWatcher};
use crate::metrics::Metrics;

/// `[routing]`: how contacts are offered to agents.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// How long an offer rings at an agent's console before it goes to the next agent (and
    /// the agent counts as missed).
    pub offer_timeout_secs: u32,
    /// The most after-contact work (wrap-up) an agent gets before they are available again
    /// (0: none).
    pub after_contact_work_secs: u32,
    /// An agent whose console went away is signed out after this long unless it is back.
    pub reconnect_grace_secs: u32,
    /// How often consoles are pinged and their sign-in checked again (a disabled user's
    /// console closes within this); one silent for three of these is closed.
    pub heartbeat_secs: u32,
    /// Routing profiles (`[routing.profiles.NAME]`): the queues their agents answer.
    pub profiles: BTreeMap<String, ProfileConfig>,
    /// Agent (user name) -> routing profile. An agent not listed answers every queue, all at
    /// priority 1 with no delay.
    pub agents: BTreeMap<String, String>,
    /// The wrap-up codes an agent chooses from for each call (its outcome, written to the
    /// patient's contact history with the agent's notes, and counted by code in `/metrics`).
    pub wrap_up_codes: Vec<String>,
    /// The flow a queued callback's patient hears on answering, before the agent joins
    /// (Connect's outbound whisper), unless CreateCallbackContact names one (`ContactFlowId`).
    pub callback_flow: String,
    /// The trunk callbacks call out through (empty: the only one with a `proxy`).
    pub callback_trunk: String,
    /// Agents' skills (user name -> attribute -> value -> level 1 to 5), which the flow's
    /// routing criteria (`UpdateRoutingCriteria`) ask for: `[routing.proficiencies.nora]`
    /// `Language = { Japanese = 5, English = 3 }`.
    pub proficiencies: BTreeMap<String, BTreeMap<String, BTreeMap<String, u8>>>,
}

/// The shipped wrap-up codes: what a nurse line's call ended with.
fn default_wrap_up_codes() -> Vec<String> {
    [
        "advice-given",
        "appointment-booked",
        "referred-to-clinician",
        "sent-to-emergency",
        "prescription-request",
        "callback-needed",
        "no-action",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            offer_timeout_secs: 20,
            after_contact_work_secs: 120,
            reconnect_grace_secs: 30,
            heartbeat_secs: 20,
            profiles: BTreeMap::new(),
            agents: BTreeMap::new(),
            wrap_up_codes: default_wrap_up_codes(),
            callback_flow: "callback-greeting".into(),
            callback_trunk: String::new(),
            proficiencies: BTreeMap::new(),
        }
    }
}

/// `[routing.profiles.NAME]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    pub queues: Vec<ProfileQueueConfig>,
}

/// One queue of a profile: `{ queue = "triage-urgent", priority = 1, delay_secs = 0 }`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProfileQueueConfig {
    pub queue: String,
    /// 1 is served first.
    #[serde(default = "first")]
    pub priority: u32,
    /// How long a contact waits before it is offered to this profile's agents.
    #[serde(default)]
    pub delay_secs: u32,
}

fn first() -> u32 {
    1
}

impl RoutingConfig {
    /// Every profile names known queues with priorities from 1, and every agent a profile.
    pub fn validate(&self, queues: &BTreeMap<String, QueueConfig>) -> Result<(), String> {
        if self.offer_timeout_secs == 0 {
            return Err("offer_timeout_secs: must be at least 1".into());
        }
        if self.heartbeat_secs == 0 {
            return Err("heartbeat_secs: must be at least 1".into());
        }
        for (i, code) in self.wrap_up_codes.iter().enumerate() {
            let ok = !code.is_empty()
                && code.len() <= 64
                && code
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                return Err(format!(
                    "wrap_up_codes: `{code}`: 1 to 64 letters, digits, `-`, `_` or `.`"
                ));
            }
            if self.wrap_up_codes[..i].contains(code) {
                return Err(format!("wrap_up_codes: `{code}` is listed twice"));
            }
        }
        for (agent, attributes) in &self.proficiencies {
            for (name, values) in attributes {
                for (value, level) in values {
                    if !(1..=5).contains(level) {
                        return Err(format!(
                            "proficiencies.{agent}.{name}.{value}: level {level} is not 1 to 5"
                        ));
                    }
                }
            }
        }
        for (name, p) in &self.profiles {
            if p.queues.is_empty() {
                return Err(format!(
                    "profiles.{name}.queues: a profile answers a queue at least"
                ));
            }
            for q in &p.queues {
                if !queues.contains_key(&q.queue) {
                    return Err(format!(
                        "profiles.{name}.queues: `{}` is not a configured queue ([queues.NAME])",
                        q.queue
                    ));
                }
                if q.priority == 0 {
                    return Err(format!(
                        "profiles.{name}.queues: `{}` has priority 0 (1 is the first)",
                        q.queue
                    ));
                }
            }
        }
        for (agent, profile) in &self.agents {
            if !self.profiles.contains_key(profile) {
                return Err(format!(
                    "agents.{agent}: no routing profile `{profile}` ([routing.profiles.NAME])"
                ));
            }
        }
        Ok(())
    }
}

/// What an agent's console is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeskEvent {
    /// The agent's state now.
    State(AgentState),
    /// A contact rings for the agent.
    Offer {
        call_id: String,
        queue: String,
        waited: Duration,
        /// How long it rings before it goes to the next agent.
        rings_for: Duration,
        /// A queued callback (accepting it calls the patient).
        callback: bool,
    },
    /// The offer of `call_id` is over.
    Withdrawn { call_id: String, why: Withdrawn },
}

/// One connected console: its events, and its place at the desk (dropping it leaves).
pub struct Console {
    pub events: mpsc::UnboundedReceiver<DeskEvent>,
    desk: Arc<Desk>,
    agent: String,
    id: u64,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.desk.leave(&self.agent, self.id);
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WrapUpError {
    #[error("this call is not yours to wrap up (you are {state})")]
    NotYours { state: &'static str },
}

/// One open console: its id and where its events go.
type ConsoleTx = (u64, mpsc::UnboundedSender<DeskEvent>);

/// See the module documentation.
pub struct Desk {
    acd: Mutex<Acd>,
    profiles: HashMap<String, RoutingProfile>,
    every_queue: RoutingProfile,
    /// Each agent's open consoles, by id.
    consoles: Mutex<HashMap<String, Vec<ConsoleTx>>>,
    next_console: AtomicU64,
    grace: Duration,
    /// How often consoles are pinged and their sign-in checked.
    pub heartbeat: Duration,
    /// The codes a wrap-up chooses from (`[routing] wrap_up_codes`).
    pub wrap_up_codes: Vec<String>,
    /// `[routing] callback_flow` and `callback_trunk` (None: the only trunk).
    pub callback_flow: String,
    pub callback_trunk: Option<String>,
    wake: Notify,
    metrics: Arc<Metrics>,
    /// Calls about to enter a queue for one agent (an agent's transfer to them), by call.
    sent_to: Mutex<HashMap<String, String>>,
    /// Agents' skills, from `[routing.proficiencies]`.
    skills: HashMap<String, Proficiencies>,
    /// Calls' routing criteria (their flow's UpdateRoutingCriteria), for each time they
    /// enter a queue, until the call ends.
    criteria: Mutex<HashMap<String, Arc<RoutingCriteria>>>,
}

impl std::fmt::Debug for Desk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desk").finish_non_exhaustive()
    }
}

impl Desk {
    /// The desk for `queues`, its timer running on the current runtime.
    pub fn start(
        config: &RoutingConfig,
        queues: &BTreeMap<String, QueueConfig>,
        metrics: Arc<Metrics>,
    ) -> Arc<Desk> {
        let policy = AcdPolicy {
            offer_timeout: Duration::from_secs(u64::from(config.offer_timeout_secs)),
            after_contact_work: Duration::from_secs(u64::from(config.after_contact_work_secs)),
        };
        let limits = queues.iter().map(|(name, q)| {
            let limits = QueueLimits {
                capacity: q.capacity,
                alert_after: Duration::from_secs(u64::from(q.alert_after_secs)),
            };
            (name.as_str(), limits)
        });
        let profile = |p: &ProfileConfig| RoutingProfile {
            queues: p
                .queues
                .iter()
                .map(|q| ProfileQueue {
                    queue: q.queue.clone(),
                    priority: q.priority,
                    delay: Duration::from_secs(u64::from(q.delay_secs)),
                })
                .collect(),
        };
        let profiles = config
            .agents
            .iter()
            .filter_map(|(agent, name)| Some((agent.clone(), profile(config.profiles.get(name)?))))
            .collect();
        let desk = Arc::new(Desk {
            acd: Mutex::new(Acd::new(policy, limits)),
            profiles,
            every_queue: RoutingProfile::of(queues.keys().map(String::as_str)),
            consoles: Mutex::new(HashMap::new()),
            next_console: AtomicU64::new(1),
            grace: Duration::from_secs(u64::from(config.reconnect_grace_secs)),
            heartbeat: Duration::from_secs(u64::from(config.heartbeat_secs)),
            wrap_up_codes: config.wrap_up_codes.clone(),
            callback_flow: config.callback_flow.clone(),
            callback_trunk: Some(config.callback_trunk.clone()).filter(|t| !t.is_empty()),
            wake: Notify::new(),
            metrics,
            sent_to: Mutex::new(HashMap::new()),
            skills: config
                .proficiencies
                .iter()
                .map(|(agent, attributes)| {
                    let skills = attributes
                        .iter()
                        .flat_map(|(name, values)| {
                            values
                                .iter()
                                .map(move |(value, level)| ((name.clone(), value.clone()), *level))
                        })
                        .collect();
                    (agent.clone(), skills)
                })
                .collect(),
            criteria: Mutex::new(HashMap::new()),
        });
        tokio::spawn(run_timer(Arc::downgrade(&desk)));
        desk
    }

    /// `agent` opens a console: they are at the desk (offline until they choose a state,
    /// unless they were there already), and the console hears their state at once.
    pub fn join(self: &Arc<Desk>, agent: &str) -> Console {
        let (tx, events) = mpsc::unbounded_channel();
        let id = self.next_console.fetch_add(1, Ordering::Relaxed);
        let profile = self
            .profiles
            .get(agent)
            .unwrap_or(&self.every_queue)
            .clone();
        // Registered first, so an offer made as the agent joins (a second tab of an agent
        // who is available) reaches this console too.
        if let Ok(mut c) = self.consoles.lock() {
            c.entry(agent.to_string())
                .or_default()
                .push((id, tx.clone()));
        }
        let skills = self.skills.get(agent).cloned().unwrap_or_default();
        let state = self.apply(|acd, now| {
            acd.set_profile(agent, profile, now);
            acd.set_proficiencies(agent, skills, now);
            acd.agent_state(agent).cloned()
        });
        if let Some(state) = state {
            let _ = tx.send(DeskEvent::State(state));
        }
        Console {
            events,
            desk: self.clone(),
            agent: agent.to_string(),
            id,
        }
    }

    /// The agent chooses available, unavailable (with a reason) or offline.
    pub fn set_availability(&self, agent: &str, wanted: Availability) -> Result<(), AcdError> {
        self.apply(|acd, now| acd.set_availability(agent, wanted, now))
    }

    /// The agent accepts the contact ringing for them: it is theirs (the caller's call is
    /// joined to them next).
    pub fn accept(&self, agent: &str, call_id: &str) -> Result<Answered, AcdError> {
        let r = self.apply(|acd, now| acd.accept(agent, call_id, now));
        if r.is_ok() {
            self.metrics
                .agent_offers
                .get_or_create(&vec![("outcome", "accepted")])
                .inc();
        }
        r
    }

    pub fn decline(&self, agent: &str, call_id: &str) -> Result<(), AcdError> {
        self.apply(|acd, now| acd.decline(agent, call_id, now))
    }

    /// The agent's contact ended: wrap-up begins.
    pub fn contact_ended(&self, agent: &str) {
        let _ = self.apply(|acd, now| acd.contact_ended(agent, now));
    }

    /// The agent picked `call_id` from `queue` themselves.
    pub fn took(&self, agent: &str, call_id: &str, queue: &str) {
        self.apply(|acd, now| acd.took(agent, call_id, queue, now));
    }

    /// The contact the agent accepted never reached them.
    pub fn released(&self, agent: &str) {
        let _ = self.apply(|acd, now| acd.released(agent, now));
    }

    /// Whether `agent` may wrap up `call_id`: it is theirs (they are on it, or in its
    /// after-contact work). Returns the queue it came from. (Once per call is the call
    /// records' to keep: `CallRecords::set_disposition`.)
    pub fn wrapping_up(&self, agent: &str, call_id: &str) -> Result<String, WrapUpError> {
        match self.agent_state(agent) {
            Some(
                AgentState::OnContact { contact, queue }
                | AgentState::AfterContactWork { contact, queue },
            ) if contact == call_id => Ok(queue),
            state => Err(WrapUpError::NotYours {
                state: state.map_or("not at the desk", |s| s.name()),
            }),
        }
    }

    /// A queued callback takes its place: that of `call_id` (the caller asking, still
    /// waiting in `queue`) if it can, else the place its caller entered the queue at
    /// (`since_ms`, epoch ms; a callback restored at start). Not offered before
    /// `not_before_ms`.
    pub fn place_callback(
        &self,
        call_id: Option<&str>,
        callback: &str,
        queue: &str,
        urgency: QueuePriority,
        since_ms: i64,
        not_before_ms: i64,
    ) -> Result<(), AcdError> {
        self.apply(|acd, now| {
            let now_ms = jiff::Timestamp::now().as_millisecond();
            let not_before = instant_at(not_before_ms, now_ms, now);
            if let Some(call) = call_id {
                match acd.to_callback(call, callback, not_before, now) {
                    Err(AcdError::NotQueued(_)) => {} // it left meanwhile: by its time
                    other => return other,
                }
            }
            let since = instant_at(since_ms, now_ms, now);
            acd.enqueue_callback(callback, queue, urgency, since, not_before, now)
        })
    }

    /// The call for callback `callback` that `agent` took was not answered: the agent is
    /// free, and the callback back in its place from `retry_at_ms` (epoch ms).
    pub fn callback_failed(
        &self,
        agent: &str,
        callback: &str,
        retry_at_ms: i64,
    ) -> Result<(), AcdError> {
        self.apply(|acd, now| {
            let now_ms = jiff::Timestamp::now().as_millisecond();
            let retry_at = instant_at(retry_at_ms, now_ms, now);
            acd.callback_failed(agent, callback, retry_at, now)
        })
    }

    /// A queued callback cancelled by an operator leaves its queue (an offer of it is
    /// withdrawn, the agent keeping their turn).
    pub fn cancel_callback(&self, callback: &str) {
        let _ = self.apply(|acd, now| acd.remove(callback, now));
    }

    /// Callback `callback`'s call is over without `agent` talking to the patient (given up,
    /// or the patient hung up before the agent joined): the agent is free at once, if they
    /// are still on it.
    pub fn release_callback(&self, agent: &str, callback: &str) {
        self.apply(|acd, now| {
            let on_it = matches!(acd.agent_state(agent),
                Some(AgentState::OnContact { contact, .. }) if contact == callback);
            if on_it {
                let _ = acd.released(agent, now);
            }
        });
    }

    /// Whether `agent` is at the desk (signed in, whatever their state): someone a call can
    /// be sent to.
    pub fn at_desk(&self, agent: &str) -> bool {
        !matches!(self.agent_state(agent), None | Some(AgentState::Offline))
    }

    /// Call `call_id` is about to enter its queue for `agent` alone (another agent transfers
    /// it to them); [`Desk::unsend`] if it did not.
    pub fn send_to(&self, call_id: &str, agent: &str) {
        if let Ok(mut sent) = self.sent_to.lock() {
            sent.insert(call_id.to_string(), agent.to_string());
        }
    }

    /// Call `call_id`'s routing criteria (None: the call is over, or has none): kept for each
    /// time it enters a queue, and applied at once if it waits in one.
    pub fn set_criteria(&self, call_id: &str, criteria: Option<Arc<RoutingCriteria>>) {
        if let Ok(mut all) = self.criteria.lock() {
            match &criteria {
                Some(c) => all.insert(call_id.to_string(), c.clone()),
                None => all.remove(call_id),
            };
        }
        self.apply(|acd, now| acd.set_criteria(call_id, criteria, now));
    }

    pub fn unsend(&self, call_id: &str) {
        if let Ok(mut sent) = self.sent_to.lock() {
            sent.remove(call_id);
        }
    }

    pub fn finish_work(&self, agent: &str) -> Result<(), AcdError> {
        self.apply(|acd, now| acd.finish_work(agent, now))
    }

    /// Every agent at the desk (offline ones too), their state and how long they have been
    /// in it.
    pub fn agents(&self) -> Vec<(String, AgentState, Duration)> {
        let now = Instant::now();
        self.acd
            .lock()
            .map(|acd| {
                acd.agents()
                    .map(|(a, s, since)| {
                        (
                            a.to_string(),
                            s.clone(),
                            now.saturating_duration_since(since),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn agent_state(&self, agent: &str) -> Option<AgentState> {
        self.acd.lock().ok()?.agent_state(agent).cloned()
    }

    /// A queue's figures now (agents available, online and staffed included).
    pub fn figures(&self, queue: &str) -> Option<super::acd::QueueFigures> {
        self.acd.lock().ok()?.figures(queue, Instant::now())
    }

    /// Runs `f` on the core, then delivers what it output and rearms the timer.
    fn apply<T>(&self, f: impl FnOnce(&mut Acd, Instant) -> T) -> T {
        let (result, outputs, counts) = {
            let mut acd = self.acd.lock().unwrap_or_else(|e| e.into_inner());
            let result = f(&mut acd, Instant::now());
            let outputs: Vec<Output> = std::iter::from_fn(|| acd.poll_output()).collect();
            let counts = outputs
                .iter()
                .any(|o| matches!(o, Output::AgentState { .. }))
                .then(|| count_states(&acd));
            (result, outputs, counts)
        };
        self.deliver(outputs);
        if let Some(counts) = counts {
            for (state, n) in counts {
                self.metrics
                    .agents
                    .get_or_create(&vec![("state", state)])
                    .set(n);
            }
        }
        self.wake.notify_one();
        result
    }

    fn deliver(&self, outputs: Vec<Output>) {
        for out in outputs {
            let (agent, event) = match out {
                Output::Offer {
                    agent,
                    contact,
                    queue,
                    waited,
                    until,
                    callback,
                } => {
                    info!(call = %contact, %queue, %agent, "offered to an agent");
                    let rings_for = until.saturating_duration_since(Instant::now());
                    let event = DeskEvent::Offer {
                        call_id: contact,
                        queue,
                        waited,
                        rings_for,
                        callback,
                    };
                    (agent, event)
                }
                Output::OfferWithdrawn {
                    agent,
                    contact,
                    why,
                } => {
                    debug!(call = %contact, %agent, ?why, "offer withdrawn");
                    self.metrics
                        .agent_offers
                        .get_or_create(&vec![("outcome", withdrawn_label(why))])
                        .inc();
                    let event = DeskEvent::Withdrawn {
                        call_id: contact,
                        why,
                    };
                    (agent, event)
                }
                Output::AgentState { agent, state } => {
                    debug!(%agent, state = state.name(), "agent state");
                    (agent, DeskEvent::State(state))
                }
                Output::WaitAlert {
                    contact,
                    queue,
                    waited,
                } => {
                    // For supervisors: the live view shows the queue over its limit, the
                    // metric pages whoever watches it.
                    warn!(call = %contact, %queue, waited_s = waited.as_secs(),
                          "a caller has waited past the queue's alert limit, unanswered");
                    self.metrics
                        .queue_wait_alerts
                        .get_or_create(&vec![("queue", queue)])
                        .inc();
                    continue;
                }
            };
            if let Ok(mut consoles) = self.consoles.lock()
                && let Some(list) = consoles.get_mut(&agent)
            {
                list.retain(|(_, tx)| tx.send(event.clone()).is_ok());
            }
        }
    }

    /// A console closed: with none left, the agent is signed out after the grace period.
    fn leave(self: &Arc<Desk>, agent: &str, id: u64) {
        let none_left = match self.consoles.lock() {
            Ok(mut c) => {
                let list = c.entry(agent.to_string()).or_default();
                list.retain(|(i, _)| *i != id);
                list.is_empty()
            }
            Err(_) => false,
        };
        if !none_left {
            return;
        }
        let desk = Arc::downgrade(self);
        let agent = agent.to_string();
        let grace = self.grace;
        let sign_out = async move {
            tokio::time::sleep(grace).await;
            let Some(desk) = desk.upgrade() else {
                return;
            };
            let still_gone = desk
                .consoles
                .lock()
                .map(|c| c.get(&agent).is_none_or(Vec::is_empty))
                .unwrap_or(false);
            if still_gone {
                info!(%agent, "console gone past the grace period: signed out");
                let _ = desk.set_availability(&agent, Availability::Offline);
            }
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(sign_out);
        }
    }
}

/// The instant of wall time `at_ms` (epoch ms), given that `now_ms` is `now`. A time before
/// the machine's monotonic clock began (a callback older than the uptime) is its earliest
/// instant reachable, which keeps the order of everything after it.
fn instant_at(at_ms: i64, now_ms: i64, now: Instant) -> Instant {
    let delta = Duration::from_millis(at_ms.abs_diff(now_ms));
    if at_ms >= now_ms {
        return now + delta;
    }
    let mut back = delta;
    loop {
        if let Some(t) = now.checked_sub(back) {
            return t;
        }
        back /= 2;
    }
}

fn withdrawn_label(why: Withdrawn) -> &'static str {
    match why {
        Withdrawn::ContactLeft => "contact_left",
        Withdrawn::TimedOut => "timed_out",
        Withdrawn::Declined => "declined",
        Withdrawn::AgentLeft => "agent_left",
    }
}

/// How many agents are in each state (offline ones not counted), every state named.
fn count_states(acd: &Acd) -> Vec<(&'static str, i64)> {
    let mut counts: Vec<(&'static str, i64)> = [
        "available",
        "unavailable",
        "offered",
        "on_contact",
        "after_contact_work",
        "missed",
    ]
    .into_iter()
    .map(|s| (s, 0))
    .collect();
    for (_, state, _) in acd.agents() {
        if let Some(c) = counts.iter_mut().find(|(s, _)| *s == state.name()) {
            c.1 += 1;
        }
    }
    counts
}

/// The core's timer: sleeps until its next deadline, or until an input may have moved it.
async fn run_timer(desk: Weak<Desk>) {
    loop {
        let Some(d) = desk.upgrade() else {
            return;
        };
        let deadline = d.acd.lock().ok().and_then(|acd| acd.poll_timeout());
        let woken = async {
            match deadline {
                Some(t) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t.into()) => true,
                        _ = d.wake.notified() => false,
                    }
                }
                None => {
                    d.wake.notified().await;
                    false
                }
            }
        };
        if woken.await {
            d.apply(|acd, now| acd.handle_timeout(now));
        }
    }
}

impl QueueWatcher for Desk {
    fn waiting(&self, queue: &str, call_id: &str, since: Instant, priority: QueuePriority) {
        let sent = self.sent_to.lock().ok().and_then(|mut s| s.remove(call_id));
        let criteria = self
            .criteria
            .lock()
            .ok()
            .and_then(|c| c.get(call_id).cloned());
        let routed = self.apply(|acd, now| {
            if criteria.is_some() {
                acd.set_criteria(call_id, criteria.clone(), now);
            }
            match &sent {
                Some(agent) => acd
                    .enqueue_for(call_id, queue, priority, agent, now)
                    // They left meanwhile: the queue's like any caller.
                    .or_else(|_| acd.enqueue(call_id, queue, priority, since, now)),
                None => acd.enqueue(call_id, queue, priority, since, now),
            }
        });
        if let Err(e) = routed {
            debug!(call = %call_id, error = %e, "not routed");
        }
    }

    fn reprioritized(&self, call_id: &str, priority: QueuePriority) {
        let _ = self.apply(|acd, now| acd.set_urgency(call_id, priority, now));
    }

    fn gone(&self, call_id: &str) {
        let _ = self.apply(|acd, now| acd.remove(call_id, now));
    }

    fn position(&self, call_id: &str) -> Option<(String, usize, Option<Duration>)> {
        let acd = self.acd.lock().ok()?;
        let wait = acd.estimated_wait(call_id);
        acd.position(call_id).map(|(q, p)| (q.to_string(), p, wait))
    }

    fn agents(&self, queue: &str) -> Option<crate::flow::queues::AgentCounts> {
        let f = self.figures(queue)?;
        Some(crate::flow::queues::AgentCounts {
            available: f.agents_available,
            online: f.agents_online,
            staffed: f.agents_staffed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::queues::QueueRegistry;

    fn queues() -> BTreeMap<String, QueueConfig> {
        ["nurses", "billing"]
            .into_iter()
            .map(|q| (q.to_string(), QueueConfig::default()))
            .collect()
    }

    /// The flow's CheckMetricData sees the agents routing knows; the console hears its state
    /// and the call offered; a contact that leaves the queue withdraws the offer.
    #[tokio::test]
    async fn queues_and_consoles_follow_the_desk() {
        let queues = queues();
        let mut config = RoutingConfig::default();
        config.profiles.insert(
            "billing-only".into(),
            ProfileConfig {
                queues: vec![ProfileQueueConfig {
                    queue: "billing".into(),
                    priority: 1,
                    delay_secs: 0,
                }],
            },
        );
        config.agents.insert("bea".into(), "billing-only".into());
        config.validate(&queues).unwrap();
        let desk = Desk::start(&config, &queues, Arc::new(Metrics::new()));
        let registry = QueueRegistry::new(&queues);
        registry.watch(desk.clone());
        let mut ana = desk.join("ana");
        let _bea = desk.join("bea");
        assert_eq!(
            ana.events.recv().await,
            Some(DeskEvent::State(AgentState::Offline))
        );
        desk.set_availability("ana", Availability::Available)
            .unwrap();
        desk.set_availability("bea", Availability::Available)
            .unwrap();
        assert_eq!(
            ana.events.recv().await,
            Some(DeskEvent::State(AgentState::Available))
        );
        let m = registry.metrics("nurses", Instant::now()).unwrap();
        assert_eq!(
            (m.agents_available, m.agents_online, m.agents_staffed),
            (1, 1, 1)
        );
        let m = registry.metrics("billing", Instant::now()).unwrap();
        assert_eq!(
            m.agents_available, 2,
            "Bea (billing only) and Ana (every queue)"
        );

        let ticket = registry
            .enqueue("nurses", Instant::now(), "call-1", QueuePriority::default())
            .unwrap();
        let Some(DeskEvent::Offer { call_id, queue, .. }) = ana.events.recv().await else {
            panic!("an offer");
        };
        assert_eq!((call_id.as_str(), queue.as_str()), ("call-1", "nurses"));
        drop(ticket);
        let mut rest = Vec::new();
        while let Ok(e) = ana.events.try_recv() {
            rest.push(e);
        }
        assert!(rest.contains(&DeskEvent::Withdrawn {
            call_id: "call-1".into(),
            why: Withdrawn::ContactLeft
        }));
        assert_eq!(desk.agent_state("ana"), Some(AgentState::Available));
    }

    /// GetMetricData's place in the queue: routing's order (an urgent caller goes ahead of
    /// older routine ones) when the desk routes the queue, arrival order without it.
    #[tokio::test]
    async fn a_caller_s_place_is_routing_s_order() {
        let queues = queues();
        let t0 = Instant::now();
        let urgent = QueuePriority {
            priority: 1,
            ..QueuePriority::default()
        };
        let alone = QueueRegistry::new(&queues);
        let _a = alone.enqueue("nurses", t0, "old", QueuePriority::default());
        let _b = alone.enqueue("nurses", t0 + Duration::from_secs(1), "urgent", urgent);
        let place = |r: &QueueRegistry, id: &str| {
            r.metrics_for("nurses", Some(id), Instant::now())
                .unwrap()
                .position
        };
        assert_eq!(place(&alone, "urgent"), Some(2), "arrival order");
        assert_eq!(place(&alone, "nobody"), None);

        let desk = Desk::start(&RoutingConfig::default(), &queues, Arc::new(Metrics::new()));
        let routed = QueueRegistry::new(&queues);
        routed.watch(desk.clone());
        let _a = routed.enqueue("nurses", t0, "old", QueuePriority::default());
        let _b = routed.enqueue("nurses", t0 + Duration::from_secs(1), "urgent", urgent);
        assert_eq!(
            place(&routed, "urgent"),
            Some(1),
            "the urgent caller goes first"
        );
        assert_eq!(place(&routed, "old"), Some(2));
        let m = routed
            .metrics_for("nurses", Some("old"), Instant::now())
            .unwrap();
        let view = m.flow_view("nurses");
        assert_eq!(view["Contact"]["PositionInQueue"], 2);
        assert_eq!(view["Queue"]["Size"], 2);
        assert!(
            view["Contact"].get("EstimatedWaitTime").is_none(),
            "no call handled yet, nothing to estimate from: {view:?}"
        );
    }

    #[test]
    fn profiles_are_checked_against_the_queues() {
        let queues = queues();
        let mut config = RoutingConfig::default();
        config.agents.insert("ana".into(), "nobody".into());
        assert!(config.validate(&queues).unwrap_err().contains("agents.ana"));
        config.agents.clear();
        config.profiles.insert(
            "p".into(),
            ProfileConfig {
                queues: vec![ProfileQueueConfig {
                    queue: "elsewhere".into(),
                    priority: 1,
                    delay_secs: 0,
                }],
            },
        );
        let e = config.validate(&queues).unwrap_err();
        assert!(e.contains("profiles.p.queues: `elsewhere`"), "{e}");
        config.profiles.clear();
        let level = |l: u8| {
            BTreeMap::from([(
                "Language".to_string(),
                BTreeMap::from([("Japanese".to_string(), l)]),
            )])
        };
        config.proficiencies.insert("kei".into(), level(5));
        assert_eq!(config.validate(&queues), Ok(()));
        config.proficiencies.insert("kei".into(), level(6));
        let e = config.validate(&queues).unwrap_err();
        assert!(
            e.contains("proficiencies.kei.Language.Japanese: level 6"),
            "{e}"
        );
    }
}
