//! The ACD core: which agent is offered which waiting contact, and when.
//!
//! It follows Amazon Connect's routing model, so that Connect users find what they know:
//!
//! - **Routing profiles.** An agent answers the queues of their profile, each with a priority
//!   (1 first) and a delay: a contact is offered to this agent only once it has waited that
//!   long (a second line of agents who help when a queue backs up).
//! - **Longest-available agent.** When several agents could take a contact, the one who has
//!   been available longest is offered it first; an agent offered nothing keeps their turn.
//! - **The contact each agent is offered**: the first by (the queue's priority in the agent's
//!   profile, the contact's priority, its age). A contact's priority (1 most urgent, Connect's
//!   default 5) and an age adjustment come from the flow (`UpdateContactRoutingBehavior`'s
//!   `QueuePriority` and `QueueTimeAdjustmentSeconds`); its age counts from when it entered
//!   the queue, which a queued callback keeps, so a caller who asked to be called back keeps
//!   their place.
//! - **Offers.** One contact to one agent at a time. An agent who lets an offer ring past
//!   [`AcdPolicy::offer_timeout`], or declines it, is put in the missed state (Connect's
//!   "Missed": not offered anything until they make themselves available again) and the
//!   contact goes back to its place, to be offered to the next agent. A contact that leaves
//!   (the caller hangs up) withdraws its offer, and the agent keeps their turn.
//! - **Queued callbacks** ([`Acd::to_callback`]): a caller who asks to be called back and
//!   hangs up leaves a callback in exactly their place, offered from its initial delay on
//!   like a caller on the line; the agent who accepts it is told so ([`Answered::callback`])
//!   and the shell calls the patient; a call nobody answers puts it back in the same place
//!   from its retry delay on ([`Acd::callback_failed`]), the agent free at once.
//! - **Routing criteria** ([`Acd::set_criteria`], the flow's `UpdateRoutingCriteria`): a
//!   contact may be for agents with certain skills ([`Acd::set_proficiencies`]: a Japanese
//!   speaker at level 4 or above), in steps that widen as they expire and then let anyone in;
//!   an agent the step in force does not let in is offered the next contact of their order.
//! - **After-contact work** follows each contact, for at most [`AcdPolicy::after_contact_work`]
//!   (zero: none); then the agent is available again, or in the state they chose meanwhile
//!   (Connect's "next status").
//!
//! Sans-IO: nothing here reads a clock or touches a socket. The shell feeds the inputs with the
//! time, drains [`Acd::poll_output`], and calls [`Acd::handle_timeout`] at
//! [`Acd::poll_timeout`]. Every offer is made inside one of those calls, so the shell only
//! has to deliver them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::flow::criteria::{Proficiencies, RoutingCriteria};

/// An agent: the name of the user who signs in.
pub type AgentId = String;
/// A contact: the call's id.
pub type ContactId = String;

/// How urgent a contact is: the queue registry's type, which the flow's
/// `UpdateContactRoutingBehavior` sets (priority, 1 first; time adjustment).
pub use crate::flow::queues::{DEFAULT_PRIORITY, QueuePriority as Urgency};

/// One queue of an agent's routing profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileQueue {
    pub queue: String,
    /// 1 is served first; among queues of one priority, the oldest contact first.
    pub priority: u32,
    /// How long a contact waits before it is offered to agents of this profile.
    pub delay: Duration,
}

impl ProfileQueue {
    /// `queue` at priority 1 with no delay.
    pub fn new(queue: &str) -> ProfileQueue {
        ProfileQueue {
            queue: queue.to_string(),
            priority: 1,
            delay: Duration::ZERO,
        }
    }
}

/// The queues an agent answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingProfile {
    pub queues: Vec<ProfileQueue>,
}

impl RoutingProfile {
    /// Every queue in `names`, each at priority 1 with no delay.
    pub fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> RoutingProfile {
        RoutingProfile {
            queues: names.into_iter().map(ProfileQueue::new).collect(),
        }
    }

    /// This profile's entry for `queue`, if it answers it.
    pub fn entry(&self, queue: &str) -> Option<&ProfileQueue> {
        self.queues.iter().find(|q| q.queue == queue)
    }
}

/// The center's timing rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcdPolicy {
    /// How long an offer rings before it is taken back and the agent counts as missed.
    pub offer_timeout: Duration,
    /// The most after-contact work an agent gets before they are available again (zero: none).
    pub after_contact_work: Duration,
}

impl Default for AcdPolicy {
    fn default() -> AcdPolicy {
        AcdPolicy {
            offer_timeout: Duration::from_secs(20),
            after_contact_work: Duration::from_secs(120),
        }
    }
}

/// A queue's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueLimits {
    /// Contacts the queue holds at once, those being offered included (0: no limit).
    pub capacity: usize,
    /// A contact waiting this long raises [`Output::WaitAlert`], once (zero: never): the
    /// urgent line's "nobody has answered this caller" alarm for supervisors.
    pub alert_after: Duration,
}

/// What an agent is doing, as their console and the supervisor see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AgentState {
    /// Signed out: not counted as staffing any queue.
    Offline,
    /// Waiting for a contact.
    Available,
    /// Signed in but not taking contacts (break, lunch, training: the reason they chose).
    Unavailable { reason: String },
    /// A contact rings for this agent.
    Offered { contact: ContactId, queue: String },
    /// Talking with a contact.
    OnContact { contact: ContactId, queue: String },
    /// Wrapping up the last contact (notes, a wrap-up code): which one, so the wrap-up is
    /// written to that contact's record.
    AfterContactWork { contact: ContactId, queue: String },
    /// Let an offer ring out or declined it: nothing is offered until they are available again.
    Missed,
}

impl AgentState {
    /// The state's name, as `/metrics` labels it.
    pub fn name(&self) -> &'static str {
        match self {
            AgentState::Offline => "offline",
            AgentState::Available => "available",
            AgentState::Unavailable { .. } => "unavailable",
            AgentState::Offered { .. } => "offered",
            AgentState::OnContact { .. } => "on_contact",
            AgentState::AfterContactWork { .. } => "after_contact_work",
            AgentState::Missed => "missed",
        }
    }
}

/// The state an agent asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    Available,
    Unavailable(String),
    Offline,
}

impl Availability {
    fn state(&self) -> AgentState {
        match self {
            Availability::Available => AgentState::Available,
            Availability::Unavailable(reason) => AgentState::Unavailable {
                reason: reason.clone(),
            },
            Availability::Offline => AgentState::Offline,
        }
    }
}

/// Why an offer was taken back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Withdrawn {
    /// The contact left (hung up, or its flow took it elsewhere).
    ContactLeft,
    /// It rang past the offer timeout.
    TimedOut,
    /// The agent declined it.
    Declined,
    /// The agent made themselves unavailable or signed out.
    AgentLeft,
}

/// What the shell has to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Ring `agent` with `contact`, until `until`.
    Offer {
        agent: AgentId,
        contact: ContactId,
        queue: String,
        /// How long the contact has waited in the queue.
        waited: Duration,
        until: Instant,
        /// A queued callback: accepting it calls the patient.
        callback: bool,
    },
    /// Stop ringing `agent`: the offer of `contact` is over.
    OfferWithdrawn {
        agent: AgentId,
        contact: ContactId,
        why: Withdrawn,
    },
    /// `agent` is now in `state`.
    AgentState { agent: AgentId, state: AgentState },
    /// `contact` has waited in `queue` past the queue's `alert_after`, unanswered (raised
    /// once per contact; it may be ringing an agent who has not picked up).
    WaitAlert {
        contact: ContactId,
        queue: String,
        waited: Duration,
    },
}

/// What a queue looks like now (the flow's `$.Queue.*`, `CheckMetricData`, the supervisor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueFigures {
    /// Contacts in the queue, those ringing an agent included.
    pub contacts: usize,
    /// How long the oldest has waited.
    pub oldest_wait: Duration,
    /// Agents of the queue who wait for a contact now.
    pub agents_available: usize,
    /// Agents of the queue who take contacts: available, ringing, on a contact or wrapping up.
    pub agents_online: usize,
    /// Agents of the queue who are signed in, whatever their state.
    pub agents_staffed: usize,
    /// Contacts waiting past the queue's alert limit now.
    pub over_limit: usize,
}

/// A contact accepted by an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub queue: String,
    /// From entering the queue to the agent's accept (the queue's speed of answer).
    pub waited: Duration,
    /// A queued callback: nobody is on the line yet; the shell now calls the patient, the
    /// agent hearing it ring (Connect's model), and reports [`Acd::callback_failed`] when
    /// nobody answers.
    pub callback: bool,
}

/// An input the core cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcdError {
    #[error("no queue named {0}")]
    UnknownQueue(String),
    #[error("queue {0} is at capacity")]
    AtCapacity(String),
    #[error("contact {0} is already in a queue")]
    AlreadyQueued(ContactId),
    #[error("contact {0} is not in a queue")]
    NotQueued(ContactId),
    #[error("no agent named {0}")]
    UnknownAgent(AgentId),
    #[error("agent {0} has no offer of that contact")]
    NotOffered(AgentId),
    #[error("agent {0} is not on a contact")]
    NotOnContact(AgentId),
}

/// Order within a queue: priority, then age (oldest first, adjusted), then arrival.
type Key = (u32, Instant, u64);

struct Queue {
    limits: QueueLimits,
    /// The average handle time of the queue's contacts (an agent's time from accepting one
    /// to being free for the next, wrap-up included), smoothed; None before the first.
    handle: Option<Duration>,
    /// Contacts not ringing anyone, in the order they are offered.
    waiting: BTreeMap<Key, ContactId>,
    /// All contacts in the queue, ringing ones included.
    count: usize,
}

struct Contact {
    queue: String,
    key: Key,
    /// When it entered the queue (a callback: when the caller first did).
    since: Instant,
    offered_to: Option<AgentId>,
    /// Its wait alert was raised.
    alerted: bool,
    /// A queued callback (the caller hung up and waits to be called back).
    callback: bool,
    /// Not offered before this (a callback's initial delay, or its retry delay).
    not_before: Instant,
}

struct Agent {
    profile: RoutingProfile,
    state: AgentState,
    /// When the agent entered their state (time in state, for the supervisor).
    since: Instant,
    /// Since when the agent has been available: the longest-available order. An offer that
    /// is withdrawn because the contact left does not cost the agent their turn.
    available_since: Instant,
    /// What they chose to be after the contact they are on.
    next: Option<Availability>,
    /// When the ringing offer or the after-contact work ends.
    until: Option<Instant>,
    /// Since when, and for which queue, the agent has been busy with a contact (on it, then
    /// wrapping it up): the handle time, once they are free.
    busy: Option<(Instant, String)>,
    /// What routing criteria ask of agents: their skills.
    skills: Proficiencies,
}

/// The automatic contact distributor. See the module documentation.
pub struct Acd {
    policy: AcdPolicy,
    queues: BTreeMap<String, Queue>,
    agents: BTreeMap<AgentId, Agent>,
    contacts: HashMap<ContactId, Contact>,
    outputs: VecDeque<Output>,
    seq: u64,
    /// When a delayed contact becomes offerable to an available agent.
    eligible_at: Option<Instant>,
    /// Callbacks accepted whose patient is being called: their place, should nobody answer.
    dialing: HashMap<ContactId, Contact>,
    /// Contacts sent to one agent (an agent's transfer): offered to that agent only, before
    /// anything in their profile, while they are at the desk; if that agent lets it ring
    /// out, declines it or leaves, it is their queue's again.
    targets: HashMap<ContactId, AgentId>,
    /// Contacts' routing criteria (the agents they may be offered to, by skill).
    criteria: HashMap<ContactId, std::sync::Arc<RoutingCriteria>>,
}

impl Acd {
    pub fn new<'a>(
        policy: AcdPolicy,
        queues: impl IntoIterator<Item = (&'a str, QueueLimits)>,
    ) -> Acd {
        Acd {
            policy,
            queues: queues
                .into_iter()
                .map(|(name, limits)| {
                    let queue = Queue {
                        limits,
                        handle: None,
                        waiting: BTreeMap::new(),
                        count: 0,
                    };
                    (name.to_string(), queue)
                })
                .collect(),
            agents: BTreeMap::new(),
            contacts: HashMap::new(),
            outputs: VecDeque::new(),
            seq: 0,
            eligible_at: None,
            dialing: HashMap::new(),
            targets: HashMap::new(),
            criteria: HashMap::new(),
        }
    }

    /// The next thing the shell has to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Acd::handle_timeout`] is next due: an offer rings out, after-contact work ends,
    /// or a delayed contact reaches an agent's profile.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.agents
            .values()
            .filter_map(|a| a.until)
            .chain(self.eligible_at)
            .chain(self.next_alert())
            .min()
    }

    /// When the next contact's wait alert is due.
    fn next_alert(&self) -> Option<Instant> {
        self.contacts
            .values()
            .filter(|c| !c.alerted)
            .filter_map(|c| {
                let after = self.queues.get(&c.queue)?.limits.alert_after;
                (!after.is_zero()).then(|| c.since + after)
            })
            .min()
    }

    /// Raises the wait alerts due by `now`.
    fn raise_alerts(&mut self, now: Instant) {
        let mut raised = Vec::new();
        for (id, c) in self.contacts.iter_mut() {
            let Some(q) = self.queues.get(&c.queue) else {
                continue;
            };
            let after = q.limits.alert_after;
            if c.alerted || after.is_zero() || c.since + after > now {
                continue;
            }
            c.alerted = true;
            raised.push((c.since, id.clone(), c.queue.clone()));
        }
        // Oldest first, whatever the map's order.
        raised.sort();
        for (since, contact, queue) in raised {
            self.outputs.push_back(Output::WaitAlert {
                contact,
                queue,
                waited: now.saturating_duration_since(since),
            });
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<AgentId> = self
            .agents
            .iter()
            .filter(|(_, a)| a.until.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let state = self.agents.get(&id).map(|a| a.state.clone());
            match state {
                Some(AgentState::Offered { contact, .. }) => {
                    self.withdraw(&id, &contact, Withdrawn::TimedOut);
                    self.set_state(&id, AgentState::Missed, now);
                }
                Some(AgentState::AfterContactWork { .. }) => self.work_done(&id, now),
                _ => {
                    if let Some(a) = self.agents.get_mut(&id) {
                        a.until = None;
                    }
                }
            }
        }
        self.raise_alerts(now);
        self.route(now);
    }

    /// Adds `agent` (offline) or gives them a new profile; an agent's place in the
    /// longest-available order is kept.
    pub fn set_profile(&mut self, agent: &str, profile: RoutingProfile, now: Instant) {
        match self.agents.get_mut(agent) {
            Some(a) => a.profile = profile,
            None => {
                self.agents.insert(
                    agent.to_string(),
                    Agent {
                        profile,
                        state: AgentState::Offline,
                        since: now,
                        available_since: now,
                        next: None,
                        until: None,
                        busy: None,
                        skills: Proficiencies::new(),
                    },
                );
            }
        }
        self.route(now);
    }

    /// `agent`'s skills, as routing criteria read them (an agent not added yet: nothing).
    pub fn set_proficiencies(&mut self, agent: &str, skills: Proficiencies, now: Instant) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.skills = skills;
            self.route(now);
        }
    }

    /// The routing criteria of `contact`, before it enters its queue (or while it waits
    /// there); None: any agent of the queue. Kept until the contact leaves routing.
    pub fn set_criteria(
        &mut self,
        contact: &str,
        criteria: Option<std::sync::Arc<RoutingCriteria>>,
        now: Instant,
    ) {
        match criteria {
            Some(c) => self.criteria.insert(contact.to_string(), c),
            None => self.criteria.remove(contact),
        };
        if self.contacts.contains_key(contact) {
            self.route(now);
        }
    }

    /// The agent chooses a state. During a contact the choice waits for its end (Connect's
    /// next status); during after-contact work it ends the work; while an offer rings,
    /// anything but available withdraws it (the contact keeps its place).
    pub fn set_availability(
        &mut self,
        agent: &str,
        wanted: Availability,
        now: Instant,
    ) -> Result<(), AcdError> {
        let Some(a) = self.agents.get_mut(agent) else {
            return Err(AcdError::UnknownAgent(agent.to_string()));
        };
        match (&a.state, &wanted) {
            (AgentState::OnContact { .. }, _) => {
                a.next = Some(wanted);
                return Ok(());
            }
            (AgentState::Offered { .. } | AgentState::Available, Availability::Available) => {
                return Ok(());
            }
            (AgentState::Offered { contact, .. }, _) => {
                let contact = contact.clone();
                self.withdraw(agent, &contact, Withdrawn::AgentLeft);
            }
            _ => {}
        }
        if let Some(a) = self.agents.get_mut(agent) {
            a.next = None;
        }
        self.set_state(agent, wanted.state(), now);
        self.route(now);
        Ok(())
    }

    /// A contact enters `queue`, having waited since `since` (now, or when a queued callback's
    /// caller first entered it).
    pub fn enqueue(
        &mut self,
        contact: &str,
        queue: &str,
        urgency: Urgency,
        since: Instant,
        now: Instant,
    ) -> Result<(), AcdError> {
        self.insert(contact, queue, urgency, since, None)?;
        // A callback that kept an old place may be past the limit already.
        self.raise_alerts(now);
        self.route(now);
        Ok(())
    }

    /// Puts a contact in its place in `queue`; a callback (`Some(not_before)`) is not offered
    /// before `not_before`.
    fn insert(
        &mut self,
        contact: &str,
        queue: &str,
        urgency: Urgency,
        since: Instant,
        callback: Option<Instant>,
    ) -> Result<(), AcdError> {
        if self.contacts.contains_key(contact) {
            return Err(AcdError::AlreadyQueued(contact.to_string()));
        }
        let Some(q) = self.queues.get_mut(queue) else {
            return Err(AcdError::UnknownQueue(queue.to_string()));
        };
        if q.limits.capacity > 0 && q.count >= q.limits.capacity {
            return Err(AcdError::AtCapacity(queue.to_string()));
        }
        self.seq += 1;
        let key = key_of(urgency, since, self.seq);
        q.waiting.insert(key, contact.to_string());
        q.count += 1;
        self.contacts.insert(
            contact.to_string(),
            Contact {
                queue: queue.to_string(),
                key,
                since,
                offered_to: None,
                alerted: false,
                callback: callback.is_some(),
                not_before: callback.unwrap_or(since),
            },
        );
        Ok(())
    }

    /// Puts `c` back as contact `id`, in the place its key gives (a callback keeping the
    /// place of the call it came from, arrival order among equals included).
    fn reinsert(&mut self, id: &str, mut c: Contact) {
        c.offered_to = None;
        if let Some(q) = self.queues.get_mut(&c.queue) {
            q.waiting.insert(c.key, id.to_string());
            q.count += 1;
        }
        self.contacts.insert(id.to_string(), c);
    }

    /// A queued callback enters `queue`: the caller asked to be called back, having waited
    /// since `since` (their place, which they keep), and is not offered before `not_before`
    /// (Connect's `InitialCallDelaySeconds`, or the `RetryDelaySeconds` after an attempt
    /// nobody answered). When its turn comes it is offered to an agent like a caller on the
    /// line; accepted, [`Answered::callback`] tells the shell to call the patient.
    pub fn enqueue_callback(
        &mut self,
        contact: &str,
        queue: &str,
        urgency: Urgency,
        since: Instant,
        not_before: Instant,
        now: Instant,
    ) -> Result<(), AcdError> {
        self.insert(contact, queue, urgency, since, Some(not_before))?;
        self.raise_alerts(now);
        self.route(now);
        Ok(())
    }

    /// Waiting caller `contact` asks to be called back and hangs up: callback `callback`
    /// takes their place exactly (priority, age and arrival order kept), offered from
    /// `not_before` on. An offer ringing for the caller is withdrawn (the agent keeps their
    /// turn).
    pub fn to_callback(
        &mut self,
        contact: &str,
        callback: &str,
        not_before: Instant,
        now: Instant,
    ) -> Result<(), AcdError> {
        if self.contacts.contains_key(callback) {
            return Err(AcdError::AlreadyQueued(callback.to_string()));
        }
        let Some(offered) = self.contacts.get(contact).map(|c| c.offered_to.clone()) else {
            return Err(AcdError::NotQueued(contact.to_string()));
        };
        if let Some(agent) = offered {
            self.withdraw(&agent, contact, Withdrawn::ContactLeft);
            self.set_state(&agent, AgentState::Available, now);
        }
        let Some(mut c) = self.forget(contact) else {
            return Err(AcdError::NotQueued(contact.to_string()));
        };
        c.callback = true;
        c.not_before = not_before;
        self.reinsert(callback, c);
        self.route(now);
        Ok(())
    }

    /// The call to a callback's patient was not answered (busy, no answer, a machine):
    /// `agent` is free again at once (no wrap-up, their turn kept as if the offer had been
    /// withdrawn), and the callback goes back to its place, from `retry_at` on. The shell
    /// counts attempts (`MaximumConnectionAttempts`) and does not call this after the last.
    pub fn callback_failed(
        &mut self,
        agent: &str,
        contact: &str,
        retry_at: Instant,
        now: Instant,
    ) -> Result<(), AcdError> {
        match self.agents.get(agent).map(|a| &a.state) {
            Some(AgentState::OnContact { contact: c, .. }) if c == contact => {}
            Some(_) => return Err(AcdError::NotOnContact(agent.to_string())),
            None => return Err(AcdError::UnknownAgent(agent.to_string())),
        }
        let Some(mut c) = self.dialing.remove(contact) else {
            return Err(AcdError::NotQueued(contact.to_string()));
        };
        // Nobody was reached: no handle time to learn from, no wrap-up, and an agent who
        // comes back available keeps their turn.
        let Some(a) = self.agents.get_mut(agent) else {
            return Err(AcdError::UnknownAgent(agent.to_string()));
        };
        a.busy = None;
        let kept = a.available_since;
        let next = a.next.take().unwrap_or(Availability::Available);
        self.set_state(agent, next.state(), now);
        if let Some(a) = self.agents.get_mut(agent)
            && a.state == AgentState::Available
        {
            a.available_since = kept;
        }
        c.not_before = retry_at;
        self.reinsert(contact, c);
        self.raise_alerts(now);
        self.route(now);
        Ok(())
    }

    /// A contact enters `queue` for `agent` alone (another agent transferred it to them):
    /// offered to them before anything else, never to anyone else while they are at the
    /// desk. Refused when `agent` is not at the desk (offline or unknown): nobody would take
    /// it.
    pub fn enqueue_for(
        &mut self,
        contact: &str,
        queue: &str,
        urgency: Urgency,
        agent: &str,
        now: Instant,
    ) -> Result<(), AcdError> {
        match self.agents.get(agent).map(|a| &a.state) {
            None | Some(AgentState::Offline) => {
                return Err(AcdError::UnknownAgent(agent.to_string()));
            }
            Some(_) => {}
        }
        self.insert(contact, queue, urgency, now, None)?;
        self.targets.insert(contact.to_string(), agent.to_string());
        self.raise_alerts(now);
        self.route(now);
        Ok(())
    }

    /// The agent a contact is sent to, if it is.
    pub fn target(&self, contact: &str) -> Option<&str> {
        self.targets.get(contact).map(String::as_str)
    }

    /// The flow changes a queued contact's urgency; it keeps its arrival order among equals.
    pub fn set_urgency(
        &mut self,
        contact: &str,
        urgency: Urgency,
        now: Instant,
    ) -> Result<(), AcdError> {
        let Some(c) = self.contacts.get_mut(contact) else {
            return Err(AcdError::NotQueued(contact.to_string()));
        };
        let key = key_of(urgency, c.since, c.key.2);
        if c.offered_to.is_none()
            && let Some(q) = self.queues.get_mut(&c.queue)
        {
            q.waiting.remove(&c.key);
            q.waiting.insert(key, contact.to_string());
        }
        c.key = key;
        self.route(now);
        Ok(())
    }

    /// The contact leaves its queue unanswered (hung up, or moved on by its flow). An offer of
    /// it is withdrawn and the agent is available again, keeping their turn.
    pub fn remove(&mut self, contact: &str, now: Instant) -> Result<(), AcdError> {
        let Some(c) = self.contacts.get(contact) else {
            return Err(AcdError::NotQueued(contact.to_string()));
        };
        if let Some(agent) = c.offered_to.clone() {
            self.withdraw(&agent, contact, Withdrawn::ContactLeft);
            let since = self.agents.get(&agent).map(|a| a.available_since);
            self.set_state(&agent, AgentState::Available, now);
            if let (Some(a), Some(since)) = (self.agents.get_mut(&agent), since) {
                a.available_since = since;
            }
        }
        self.forget(contact);
        self.route(now);
        Ok(())
    }

    /// `agent` takes the contact offered to them: it leaves the queue.
    pub fn accept(
        &mut self,
        agent: &str,
        contact: &str,
        now: Instant,
    ) -> Result<Answered, AcdError> {
        let offered = self.offer_of(agent)?;
        if offered != contact {
            return Err(AcdError::NotOffered(agent.to_string()));
        }
        let Some(c) = self.forget(contact) else {
            return Err(AcdError::NotOffered(agent.to_string()));
        };
        let (queue, since, callback) = (c.queue.clone(), c.since, c.callback);
        if callback {
            self.dialing.insert(contact.to_string(), c);
        }
        self.set_state(
            agent,
            AgentState::OnContact {
                contact: contact.to_string(),
                queue: queue.clone(),
            },
            now,
        );
        Ok(Answered {
            queue,
            waited: now.saturating_duration_since(since),
            callback,
        })
    }

    /// `agent` declines the offer: they are missed, and the contact goes back to its place.
    pub fn decline(&mut self, agent: &str, contact: &str, now: Instant) -> Result<(), AcdError> {
        if self.offer_of(agent)? != contact {
            return Err(AcdError::NotOffered(agent.to_string()));
        }
        self.withdraw(agent, contact, Withdrawn::Declined);
        self.set_state(agent, AgentState::Missed, now);
        self.route(now);
        Ok(())
    }

    /// `agent`'s contact ended: after-contact work begins (or, with none configured, the
    /// agent's next state).
    pub fn contact_ended(&mut self, agent: &str, now: Instant) -> Result<(), AcdError> {
        let (contact, queue) = match self.agents.get(agent).map(|a| &a.state) {
            Some(AgentState::OnContact { contact, queue }) => (contact.clone(), queue.clone()),
            Some(_) => return Err(AcdError::NotOnContact(agent.to_string())),
            None => return Err(AcdError::UnknownAgent(agent.to_string())),
        };
        if self.policy.after_contact_work.is_zero() {
            self.work_done(agent, now);
        } else {
            self.set_state(agent, AgentState::AfterContactWork { contact, queue }, now);
            if let Some(a) = self.agents.get_mut(agent) {
                a.until = Some(now + self.policy.after_contact_work);
            }
        }
        self.route(now);
        Ok(())
    }

    /// `agent` took `contact` from `queue` themselves (picked it from the queue's list rather
    /// than being offered it): they are on it, and an offer ringing for them is withdrawn. An
    /// agent who is not at the desk (signed out) is left alone.
    pub fn took(&mut self, agent: &str, contact: &str, queue: &str, now: Instant) {
        let Some(a) = self.agents.get(agent) else {
            return;
        };
        match &a.state {
            AgentState::Offline => return,
            AgentState::Offered { contact: rung, .. } => {
                let rung = rung.clone();
                self.withdraw(agent, &rung, Withdrawn::AgentLeft);
            }
            _ => {}
        }
        let state = AgentState::OnContact {
            contact: contact.to_string(),
            queue: queue.to_string(),
        };
        self.set_state(agent, state, now);
        self.route(now);
    }

    /// `agent` accepted a contact that never reached them (it left meanwhile, or their media
    /// failed): no after-contact work, their next state (or available) at once.
    pub fn released(&mut self, agent: &str, now: Instant) -> Result<(), AcdError> {
        match self.agents.get(agent).map(|a| &a.state) {
            Some(AgentState::OnContact { .. }) => {}
            Some(_) => return Err(AcdError::NotOnContact(agent.to_string())),
            None => return Err(AcdError::UnknownAgent(agent.to_string())),
        }
        // It never reached them: no handle time to learn from.
        if let Some(a) = self.agents.get_mut(agent) {
            a.busy = None;
        }
        self.work_done(agent, now);
        self.route(now);
        Ok(())
    }

    /// `agent` closes their after-contact work before its limit.
    pub fn finish_work(&mut self, agent: &str, now: Instant) -> Result<(), AcdError> {
        match self.agents.get(agent).map(|a| &a.state) {
            Some(AgentState::AfterContactWork { .. }) => {}
            Some(_) => return Err(AcdError::NotOnContact(agent.to_string())),
            None => return Err(AcdError::UnknownAgent(agent.to_string())),
        }
        self.work_done(agent, now);
        self.route(now);
        Ok(())
    }

    pub fn agent_state(&self, agent: &str) -> Option<&AgentState> {
        self.agents.get(agent).map(|a| &a.state)
    }

    /// Every agent, their state and since when they are in it, by name.
    pub fn agents(&self) -> impl Iterator<Item = (&str, &AgentState, Instant)> {
        self.agents
            .iter()
            .map(|(id, a)| (id.as_str(), &a.state, a.since))
    }

    /// The contact's queue and place in it (1: next to be offered; a ringing contact ahead
    /// counts), or None when it is not queued.
    pub fn position(&self, contact: &str) -> Option<(&str, usize)> {
        let c = self.contacts.get(contact)?;
        let ahead = self
            .contacts
            .values()
            .filter(|o| o.queue == c.queue && o.key < c.key)
            .count();
        Some((c.queue.as_str(), ahead + 1))
    }

    /// How long `contact` can expect to wait before an agent is offered it: the contacts
    /// ahead of it, less the queue's agents free now, shared among the queue's agents taking
    /// contacts, each taking the queue's average handle time (smoothed over recent contacts). None when it is not queued,
    /// when nobody takes the queue's contacts, or before the queue's first handled contact
    /// (nothing to estimate from). An estimate for announcements, not a promise: calls ahead
    /// may end sooner, urgent callers may come ahead.
    pub fn estimated_wait(&self, contact: &str) -> Option<Duration> {
        let (queue, place) = self.position(contact)?;
        let handle = self.queues.get(queue)?.handle?;
        let mut free = 0u32;
        let mut taking = 0u32;
        for a in self.agents.values() {
            if a.profile.entry(queue).is_none() {
                continue;
            }
            match a.state {
                AgentState::Available => {
                    free += 1;
                    taking += 1;
                }
                AgentState::Offered { .. }
                | AgentState::OnContact { .. }
                | AgentState::AfterContactWork { .. } => taking += 1,
                _ => {}
            }
        }
        if taking == 0 {
            return None;
        }
        let ahead = u32::try_from(place - 1).unwrap_or(u32::MAX);
        if ahead < free {
            return Some(Duration::ZERO);
        }
        // The first of `taking` busy agents comes free after about handle / (taking + 1)
        // (the soonest of that many calls part way through); each contact still ahead then
        // takes one more agent's handle time, `taking` agents working through them.
        let first = handle / (taking + 1);
        let after = handle.mul_f64(f64::from(ahead - free) / f64::from(taking));
        Some(first + after)
    }

    /// The queue's figures now, or None for an unknown queue.
    pub fn figures(&self, queue: &str, now: Instant) -> Option<QueueFigures> {
        let q = self.queues.get(queue)?;
        let oldest = self
            .contacts
            .values()
            .filter(|c| c.queue == queue)
            .map(|c| c.since)
            .min();
        let after = q.limits.alert_after;
        let over_limit = if after.is_zero() {
            0
        } else {
            self.contacts
                .values()
                .filter(|c| c.queue == queue && c.since + after <= now)
                .count()
        };
        let mut f = QueueFigures {
            contacts: q.count,
            oldest_wait: oldest.map_or(Duration::ZERO, |t| now.saturating_duration_since(t)),
            over_limit,
            ..QueueFigures::default()
        };
        for a in self.agents.values() {
            if a.profile.entry(queue).is_none() {
                continue;
            }
            match a.state {
                AgentState::Offline => continue,
                AgentState::Available => {
                    f.agents_available += 1;
                    f.agents_online += 1;
                }
                AgentState::Offered { .. }
                | AgentState::OnContact { .. }
                | AgentState::AfterContactWork { .. } => f.agents_online += 1,
                AgentState::Unavailable { .. } | AgentState::Missed => {}
            }
            f.agents_staffed += 1;
        }
        Some(f)
    }

    pub fn queue_names(&self) -> impl Iterator<Item = &str> {
        self.queues.keys().map(String::as_str)
    }

    fn offer_of(&self, agent: &str) -> Result<&str, AcdError> {
        match self.agents.get(agent).map(|a| &a.state) {
            Some(AgentState::Offered { contact, .. }) => Ok(contact),
            Some(_) => Err(AcdError::NotOffered(agent.to_string())),
            None => Err(AcdError::UnknownAgent(agent.to_string())),
        }
    }

    fn set_state(&mut self, agent: &str, state: AgentState, now: Instant) {
        let Some(a) = self.agents.get_mut(agent) else {
            return;
        };
        if a.state == state {
            return;
        }
        // A callback the agent was on is settled (reached and ended, or given up).
        if let AgentState::OnContact { contact, .. } = &a.state
            && !matches!(state, AgentState::OnContact { .. })
        {
            self.dialing.remove(contact);
        }
        if state == AgentState::Offline {
            // Contacts sent to an agent who left are their queues' again.
            self.targets.retain(|_, t| t != agent);
        }
        if state == AgentState::Available {
            a.available_since = now;
        }
        let busy_now = matches!(
            state,
            AgentState::OnContact { .. } | AgentState::AfterContactWork { .. }
        );
        if let AgentState::OnContact { queue, .. } = &state
            && a.busy.is_none()
        {
            a.busy = Some((now, queue.clone()));
        }
        if !busy_now && let Some((from, queue)) = a.busy.take() {
            let took = now.saturating_duration_since(from);
            if let Some(q) = self.queues.get_mut(&queue) {
                // Exponential smoothing: recent contacts weigh most (a fifth each), so the
                // estimate follows the day's pace without one long call swinging it.
                q.handle = Some(match q.handle {
                    None => took,
                    Some(h) => (h * 4 + took) / 5,
                });
            }
        }
        a.until = None;
        a.since = now;
        a.state = state.clone();
        self.outputs.push_back(Output::AgentState {
            agent: agent.to_string(),
            state,
        });
    }

    /// After-contact work is over: the agent's chosen next state, or available.
    fn work_done(&mut self, agent: &str, now: Instant) {
        let next = self
            .agents
            .get_mut(agent)
            .and_then(|a| a.next.take())
            .unwrap_or(Availability::Available);
        self.set_state(agent, next.state(), now);
    }

    /// Stops ringing `agent` with `contact`, which goes back to its place in its queue.
    fn withdraw(&mut self, agent: &str, contact: &str, why: Withdrawn) {
        if why != Withdrawn::ContactLeft && self.targets.get(contact).is_some_and(|t| t == agent) {
            // The agent it was sent to did not take it: it is its queue's again.
            self.targets.remove(contact);
        }
        if let Some(c) = self.contacts.get_mut(contact) {
            c.offered_to = None;
            if let Some(q) = self.queues.get_mut(&c.queue) {
                q.waiting.insert(c.key, contact.to_string());
            }
        }
        self.outputs.push_back(Output::OfferWithdrawn {
            agent: agent.to_string(),
            contact: contact.to_string(),
            why,
        });
    }

    /// Takes a contact out of its queue altogether.
    fn forget(&mut self, contact: &str) -> Option<Contact> {
        self.targets.remove(contact);
        self.criteria.remove(contact);
        let c = self.contacts.remove(contact)?;
        if let Some(q) = self.queues.get_mut(&c.queue) {
            q.waiting.remove(&c.key);
            q.count = q.count.saturating_sub(1);
        }
        Some(c)
    }

    /// Offers waiting contacts to available agents: the longest available first, each the
    /// first contact of their profile's order that has waited past its delay.
    fn route(&mut self, now: Instant) {
        let mut order: Vec<(Instant, AgentId)> = self
            .agents
            .iter()
            .filter(|(_, a)| a.state == AgentState::Available)
            .map(|(id, a)| (a.available_since, id.clone()))
            .collect();
        order.sort();
        let mut eligible_at: Option<Instant> = None;
        for (_, agent) in order {
            let Some(a) = self.agents.get(&agent) else {
                continue;
            };
            let mut best: Option<((u32, Key), &str)> = None;
            // A contact sent to this agent first, whatever their profile.
            for (contact, _) in self.targets.iter().filter(|(_, t)| **t == agent) {
                let Some(c) = self.contacts.get(contact) else {
                    continue;
                };
                if c.offered_to.is_none() && best.is_none_or(|(b, _)| (0, c.key) < b) {
                    best = Some(((0, c.key), contact));
                }
            }
            for pq in &a.profile.queues {
                if best.is_some_and(|((rank, _), _)| rank == 0) {
                    break;
                }
                let Some(q) = self.queues.get(&pq.queue) else {
                    continue;
                };
                for (key, contact) in &q.waiting {
                    if self.targets.contains_key(contact) {
                        continue; // another agent's
                    }
                    let (not_before, since) = self
                        .contacts
                        .get(contact)
                        .map_or((now, now), |c| (c.not_before, c.since));
                    let from = (key.1 + pq.delay).max(not_before);
                    if from > now {
                        eligible_at = Some(eligible_at.map_or(from, |t| t.min(from)));
                        continue;
                    }
                    if let Some(criteria) = self.criteria.get(contact) {
                        let waited = now.saturating_duration_since(since);
                        if !criteria.allows(&a.skills, waited) {
                            // Not for this agent now; look again when the step expires.
                            if let Some(expiry) = criteria.next_expiry(waited) {
                                let at = since + expiry;
                                eligible_at = Some(eligible_at.map_or(at, |t| t.min(at)));
                            }
                            continue;
                        }
                    }
                    let rank = (pq.priority, *key);
                    if best.is_none_or(|(b, _)| rank < b) {
                        best = Some((rank, contact));
                    }
                    break;
                }
            }
            let Some(((_, key), contact)) = best else {
                continue;
            };
            let contact = contact.to_string();
            self.offer(&agent, key, &contact, now);
        }
        self.eligible_at = eligible_at;
    }

    fn offer(&mut self, agent: &str, key: Key, contact: &str, now: Instant) {
        let Some(c) = self.contacts.get_mut(contact) else {
            return;
        };
        if let Some(q) = self.queues.get_mut(&c.queue) {
            q.waiting.remove(&key);
        }
        c.offered_to = Some(agent.to_string());
        let queue = c.queue.clone();
        let callback = c.callback;
        let waited = now.saturating_duration_since(c.since);
        let until = now + self.policy.offer_timeout;
        // The offer first, so a console that hears it ring already knows what rings.
        self.outputs.push_back(Output::Offer {
            agent: agent.to_string(),
            contact: contact.to_string(),
            queue: queue.clone(),
            waited,
            until,
            callback,
        });
        self.set_state(
            agent,
            AgentState::Offered {
                contact: contact.to_string(),
                queue,
            },
            now,
        );
        if let Some(a) = self.agents.get_mut(agent) {
            a.until = Some(until);
        }
    }
}

fn key_of(urgency: Urgency, since: Instant, seq: u64) -> Key {
    let age_from = since.checked_sub(urgency.time_adjustment).unwrap_or(since);
    (urgency.priority, age_from, seq)
}
