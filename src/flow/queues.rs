//! The queue registry for TransferContactToQueue, CheckMetricData and the CustomerQueue hook:
//! each queue's places (who waits, since when, capacity) and its figures.
//!
//! Who is offered a waiting contact is routing's business (`routing::acd`): it is told of
//! each contact that starts or stops waiting for an agent through a [`QueueWatcher`], so the
//! flow layer never reaches up into routing.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

/// `[queues.NAME]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Contacts the queue holds at once; one more takes the QueueAtCapacity branch (0 = no limit).
    #[serde(default)]
    pub capacity: usize,
    /// Flow a queued caller runs (hold messages) unless the contact set a CustomerQueue hook.
    #[serde(default)]
    pub hold_flow: Option<String>,
    /// Hours of operation (`[hours.NAME]`) that CheckHoursOfOperation uses without a Hours
    /// parameter while this is the target queue.
    #[serde(default)]
    pub hours: Option<String>,
    /// The service level's threshold: the share of contacts answered within this many seconds
    /// is the queue's service level (the supervisor's view).
    #[serde(default = "service_level_secs")]
    pub service_level_secs: u32,
    /// A caller waiting this long unanswered alerts supervisors (their live view, the log,
    /// `careline_queue_wait_alerts_total`); 0: never.
    #[serde(default)]
    pub alert_after_secs: u32,
}

fn service_level_secs() -> u32 {
    20
}

impl Default for QueueConfig {
    fn default() -> QueueConfig {
        QueueConfig {
            capacity: 0,
            hold_flow: None,
            hours: None,
            service_level_secs: service_level_secs(),
            alert_after_secs: 0,
        }
    }
}

/// A queue's figures since the start: what a supervisor judges it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Contacts an agent answered.
    pub answered: u64,
    /// Of those, answered within the queue's `service_level_secs`.
    pub answered_in_time: u64,
    /// Their waits together, in milliseconds (average speed of answer = this / answered).
    pub wait_total_ms: u64,
    /// Contacts that left the queue without an agent (hung up, or moved on by their flow).
    pub abandoned: u64,
}

/// What CheckMetricData reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueMetrics {
    pub contacts: usize,
    pub oldest_age_secs: u64,
    /// From routing (0 when nobody is at the desk).
    pub agents_available: usize,
    pub agents_staffed: usize,
    pub agents_online: usize,
    /// The asking contact's place in the queue (1: next), when it waits there.
    pub position: Option<usize>,
    /// How long the asking contact can expect to wait, when routing can tell.
    pub estimated_wait_secs: Option<u64>,
}

impl QueueMetrics {
    /// As GetMetricData puts them under `$.Metrics`, with Connect's names
    /// (`Queue.Size`, `Queue.OldestContactAge`, `Agents.Available.Count`, ...) and
    /// Careline's `Contact.PositionInQueue` (Connect gives the position only through its
    /// GetContactMetrics API).
    pub fn flow_view(&self, queue: &str) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert(
            "Queue".into(),
            serde_json::json!({"Name": queue, "ARN": queue, "Size": self.contacts,
                "OldestContactAge": self.oldest_age_secs}),
        );
        m.insert(
            "Agents".into(),
            serde_json::json!({"Online": {"Count": self.agents_online},
                "Available": {"Count": self.agents_available},
                "Staffed": {"Count": self.agents_staffed}}),
        );
        if let Some(p) = self.position {
            let mut contact = serde_json::json!({"PositionInQueue": p});
            if let Some(w) = self.estimated_wait_secs {
                contact["EstimatedWaitTime"] = w.into();
            }
            m.insert("Contact".into(), contact);
        }
        m
    }
}

/// Connect's default contact priority (1 is the most urgent).
pub const DEFAULT_PRIORITY: u32 = 5;

/// How urgent a contact is in its queue, as the flow's UpdateContactRoutingBehavior sets it
/// (Amazon Connect's `QueuePriority` and `QueueTimeAdjustmentSeconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuePriority {
    /// 1 is served first; Connect's default is 5.
    pub priority: u32,
    /// Counted as having waited this much longer than it has.
    pub time_adjustment: Duration,
}

impl Default for QueuePriority {
    fn default() -> QueuePriority {
        QueuePriority {
            priority: DEFAULT_PRIORITY,
            time_adjustment: Duration::ZERO,
        }
    }
}

/// Told when a contact starts or stops waiting for an agent (routing offers it to agents
/// meanwhile). Called outside the queue's lock; must not block.
pub trait QueueWatcher: Send + Sync + std::fmt::Debug {
    /// `call_id` waits in `queue` since `since`, and no agent is connecting to it.
    fn waiting(&self, queue: &str, call_id: &str, since: Instant, priority: QueuePriority);
    /// The flow changed how urgent waiting contact `call_id` is.
    fn reprioritized(&self, _call_id: &str, _priority: QueuePriority) {}
    /// `call_id` no longer waits: it left its queue, or an agent is connecting to it.
    fn gone(&self, call_id: &str);
    /// The queue's agents now (CheckMetricData's NumberOfAgents*), when routing knows them.
    fn agents(&self, _queue: &str) -> Option<AgentCounts> {
        None
    }
    /// Waiting contact `call_id`'s queue, place in it (1: next) in routing's order
    /// (priority, then age) and estimated wait, when routing knows it.
    fn position(&self, _call_id: &str) -> Option<(String, usize, Option<Duration>)> {
        None
    }
}

/// How many of a queue's agents wait for a contact (available), take contacts (online:
/// available, ringing, on a contact or wrapping up) and are signed in (staffed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgentCounts {
    pub available: usize,
    pub online: usize,
    pub staffed: usize,
}

#[derive(Debug)]
pub struct Queue {
    pub name: Arc<str>,
    pub config: QueueConfig,
    /// Oldest first.
    waiting: Mutex<Vec<Waiting>>,
    /// The queue's metrics, once the server attached them ([`QueueRegistry::observe`]).
    meters: std::sync::OnceLock<QueueMeters>,
    /// Routing, once the server attached it ([`QueueRegistry::watch`]).
    watcher: std::sync::OnceLock<Arc<dyn QueueWatcher>>,
    stats: Mutex<QueueStats>,
}

impl Queue {
    fn tell_waiting(&self, call_id: &str, since: Instant, priority: QueuePriority) {
        if let Some(w) = self.watcher.get() {
            w.waiting(&self.name, call_id, since, priority);
        }
    }

    fn tell_gone(&self, call_id: &str) {
        if let Some(w) = self.watcher.get() {
            w.gone(call_id);
        }
    }

    /// Claims waiting contact `pick` chooses among the unclaimed ones (oldest first).
    fn claim_by(&self, pick: impl Fn(&Waiting) -> bool) -> Option<Arc<str>> {
        let claimed = {
            let mut w = self.waiting.lock().ok()?;
            let c = w
                .iter_mut()
                .filter(|c| !c.claimed && pick(c))
                .min_by_key(|c| (c.since, c.id))?;
            c.claimed = true;
            c.call_id.clone()
        };
        self.tell_gone(&claimed);
        Some(claimed)
    }
}

/// A contact holding a place.
#[derive(Debug)]
struct Waiting {
    id: u64,
    since: Instant,
    call_id: Arc<str>,
    priority: QueuePriority,
    /// An agent is connecting to this contact: not offered to another.
    claimed: bool,
}

/// What `/metrics` shows of a queue; kept where places are taken and freed, so the figures
/// cannot drift from the queue itself.
#[derive(Debug)]
struct QueueMeters {
    waiting: Gauge,
    entered: Counter,
    refused: Counter,
    abandoned: Counter,
    answer_wait: Histogram,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("queue at capacity")]
pub struct AtCapacity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no such queue")]
pub struct UnknownQueue;

/// A contact's place in a queue; leaving (dropping it) frees the place.
#[derive(Debug)]
pub struct Ticket {
    queue: Arc<Queue>,
    id: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut left = None;
        if let Ok(mut w) = self.queue.waiting.lock()
            && let Some(i) = w.iter().position(|c| c.id == self.id)
        {
            left = Some(w.remove(i));
        }
        if let Some(left) = left
            && !left.claimed
        {
            self.queue.tell_gone(&left.call_id);
            if let Ok(mut stats) = self.queue.stats.lock() {
                stats.abandoned += 1;
            }
            if let Some(m) = self.queue.meters.get() {
                m.abandoned.inc();
            }
        }
        if let Some(m) = self.queue.meters.get() {
            m.waiting.dec();
        }
    }
}

impl Ticket {
    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// An agent is with the contact now: how long it waited goes to the queue's figures
    /// (`careline_queue_answer_wait_seconds`). The place itself is freed when the ticket is
    /// dropped.
    pub fn answered(&self, now: Instant) {
        // Answered is not abandoned: the place counts as taken from here on.
        let mut unclaimed = None;
        let since = self.queue.waiting.lock().ok().and_then(|mut w| {
            let c = w.iter_mut().find(|c| c.id == self.id)?;
            if !c.claimed {
                c.claimed = true;
                unclaimed = Some(c.call_id.clone());
            }
            Some(c.since)
        });
        if let Some(call_id) = unclaimed {
            self.queue.tell_gone(&call_id);
        }
        let Some(since) = since else {
            return;
        };
        let waited = now.saturating_duration_since(since);
        if let Some(m) = self.queue.meters.get() {
            m.answer_wait.observe(waited.as_secs_f64());
        }
        if let Ok(mut stats) = self.queue.stats.lock() {
            stats.answered += 1;
            stats.wait_total_ms += waited.as_millis() as u64;
            if waited.as_secs() < u64::from(self.queue.config.service_level_secs) {
                stats.answered_in_time += 1;
            }
        }
    }

    /// The agent who claimed this contact did not take it: it may be offered again, keeping
    /// its place (its age counts from when it was queued).
    pub fn unclaim(&self) {
        let mut back = None;
        if let Ok(mut w) = self.queue.waiting.lock()
            && let Some(c) = w.iter_mut().find(|c| c.id == self.id && c.claimed)
        {
            c.claimed = false;
            back = Some((c.call_id.clone(), c.since, c.priority));
        }
        if let Some((call_id, since, priority)) = back {
            self.queue.tell_waiting(&call_id, since, priority);
        }
    }
}

#[derive(Debug, Default)]
pub struct QueueRegistry {
    queues: HashMap<String, Arc<Queue>>,
    next: AtomicU64,
}

impl QueueRegistry {
    pub fn new(configs: &BTreeMap<String, QueueConfig>) -> QueueRegistry {
        QueueRegistry {
            queues: configs
                .iter()
                .map(|(n, c)| {
                    (
                        n.clone(),
                        Arc::new(Queue {
                            name: n.as_str().into(),
                            config: c.clone(),
                            waiting: Mutex::new(Vec::new()),
                            meters: std::sync::OnceLock::new(),
                            watcher: std::sync::OnceLock::new(),
                            stats: Mutex::new(QueueStats::default()),
                        }),
                    )
                })
                .collect(),
            next: AtomicU64::new(1),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Queue>> {
        self.queues.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.queues.keys()
    }

    /// Counts each queue's waiting, entered and refused contacts in `metrics` from now on.
    pub fn observe(&self, metrics: &Metrics) {
        for (name, q) in &self.queues {
            let (waiting, entered, refused, abandoned, answer_wait) = metrics.queue_meters(name);
            let _ = q.meters.set(QueueMeters {
                waiting,
                entered,
                refused,
                abandoned,
                answer_wait,
            });
        }
    }

    /// Tells `watcher` of every contact that starts or stops waiting for an agent from now on.
    pub fn watch(&self, watcher: Arc<dyn QueueWatcher>) {
        for q in self.queues.values() {
            let _ = q.watcher.set(watcher.clone());
        }
    }

    /// Puts call `call_id`'s contact in `name` at `priority`, unless the queue is full (or
    /// unknown).
    pub fn enqueue(
        &self,
        name: &str,
        now: Instant,
        call_id: &str,
        priority: QueuePriority,
    ) -> Result<Ticket, AtCapacity> {
        let queue = self.queues.get(name).ok_or(AtCapacity)?;
        let mut w = queue.waiting.lock().map_err(|_| AtCapacity)?;
        if queue.config.capacity > 0 && w.len() >= queue.config.capacity {
            if let Some(m) = queue.meters.get() {
                m.refused.inc();
            }
            return Err(AtCapacity);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        w.push(Waiting {
            id,
            since: now,
            call_id: call_id.into(),
            priority,
            claimed: false,
        });
        drop(w);
        if let Some(m) = queue.meters.get() {
            m.entered.inc();
            m.waiting.inc();
        }
        queue.tell_waiting(call_id, now, priority);
        Ok(Ticket {
            queue: queue.clone(),
            id,
        })
    }

    /// The call of the contact that has waited longest in `name` and that no agent is
    /// connecting to, now claimed for the agent asking (until its ticket is unclaimed or
    /// dropped). `None` when nobody is waiting unclaimed; `Err` for an unknown queue.
    pub fn claim_oldest(&self, name: &str) -> Result<Option<Arc<str>>, UnknownQueue> {
        let queue = self.queues.get(name).ok_or(UnknownQueue)?;
        Ok(queue.claim_by(|_| true))
    }

    /// The flow changed how urgent call `call_id`'s contact is: kept with its place, and told
    /// to routing while it waits unclaimed.
    pub fn set_priority(&self, call_id: &str, priority: QueuePriority) {
        for q in self.queues.values() {
            let mut tell = false;
            if let Ok(mut w) = q.waiting.lock()
                && let Some(c) = w.iter_mut().find(|c| &*c.call_id == call_id)
            {
                c.priority = priority;
                tell = !c.claimed;
            }
            if tell && let Some(watcher) = q.watcher.get() {
                watcher.reprioritized(call_id, priority);
            }
        }
    }

    /// Claims call `call_id`'s contact for the agent routing offered it to, if it still waits
    /// unclaimed in some queue.
    pub fn claim(&self, call_id: &str) -> bool {
        self.queues
            .values()
            .any(|q| q.claim_by(|c| &*c.call_id == call_id).is_some())
    }

    /// The queue's answered and abandoned contacts since the start.
    pub fn stats(&self, name: &str) -> Option<QueueStats> {
        let queue = self.queues.get(name)?;
        queue.stats.lock().ok().map(|s| *s)
    }

    pub fn metrics(&self, name: &str, now: Instant) -> Option<QueueMetrics> {
        self.metrics_for(name, None, now)
    }

    /// [`QueueRegistry::metrics`], with `asking`'s place in the queue when it waits there:
    /// routing's order (priority, then age) when routing knows it, else arrival order.
    pub fn metrics_for(
        &self,
        name: &str,
        asking: Option<&str>,
        now: Instant,
    ) -> Option<QueueMetrics> {
        let queue = self.queues.get(name)?;
        let w = queue.waiting.lock().ok()?;
        let oldest = w.iter().map(|c| c.since).min();
        let contacts = w.len();
        let arrival = asking.and_then(|id| {
            let me = w.iter().find(|c| &*c.call_id == id)?;
            Some(w.iter().filter(|c| c.since < me.since).count() + 1)
        });
        drop(w);
        let routed = asking.and_then(|id| {
            let (q, p, wait) = queue.watcher.get()?.position(id)?;
            (q == name).then_some((p, wait))
        });
        let agents = queue
            .watcher
            .get()
            .and_then(|watcher| watcher.agents(name))
            .unwrap_or_default();
        Some(QueueMetrics {
            contacts,
            oldest_age_secs: oldest.map(|t| now.duration_since(t).as_secs()).unwrap_or(0),
            agents_available: agents.available,
            agents_staffed: agents.staffed,
            agents_online: agents.online,
            position: routed.map(|(p, _)| p).or(arrival),
            estimated_wait_secs: routed.and_then(|(_, w)| w).map(|w| w.as_secs()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_metrics_and_leaving() {
        let mut c = BTreeMap::new();
        c.insert(
            "nurses".to_string(),
            QueueConfig {
                capacity: 2,
                ..QueueConfig::default()
            },
        );
        let r = QueueRegistry::new(&c);
        let t0 = Instant::now();
        let a = r
            .enqueue("nurses", t0, "call-x", QueuePriority::default())
            .unwrap();
        let _b = r
            .enqueue(
                "nurses",
                t0 + Duration::from_secs(5),
                "call-y",
                QueuePriority::default(),
            )
            .unwrap();
        assert_eq!(
            r.enqueue("nurses", t0, "call-x", QueuePriority::default())
                .unwrap_err(),
            AtCapacity
        );
        let m = r.metrics("nurses", t0 + Duration::from_secs(30)).unwrap();
        assert_eq!((m.contacts, m.oldest_age_secs), (2, 30));
        drop(a);
        let m = r.metrics("nurses", t0 + Duration::from_secs(30)).unwrap();
        assert_eq!((m.contacts, m.oldest_age_secs), (1, 25));
        assert!(
            r.enqueue("nurses", t0, "call-x", QueuePriority::default())
                .is_ok(),
            "a place was freed"
        );
        assert!(
            r.enqueue("nobody", t0, "call-x", QueuePriority::default())
                .is_err()
        );
    }

    #[test]
    fn the_metrics_follow_places_taken_refused_and_freed() {
        let mut c = BTreeMap::new();
        let config = QueueConfig {
            capacity: 1,
            ..QueueConfig::default()
        };
        c.insert("nurses".to_string(), config);
        let r = QueueRegistry::new(&c);
        let metrics = Metrics::new();
        r.observe(&metrics);
        let (waiting, entered, refused, abandoned, _) = metrics.queue_meters("nurses");
        let t0 = Instant::now();
        let t = r
            .enqueue("nurses", t0, "call-x", QueuePriority::default())
            .unwrap();
        assert!(
            r.enqueue("nurses", t0, "call-x", QueuePriority::default())
                .is_err()
        );
        assert_eq!((waiting.get(), entered.get(), refused.get()), (1, 1, 1));
        // Answered after 75 s: counted once, in the 64-128 s bucket.
        t.answered(t0 + Duration::from_secs(75));
        drop(t);
        assert_eq!(waiting.get(), 0, "leaving frees the place in the gauge too");
        assert_eq!(abandoned.get(), 0, "answered is not abandoned");
        let gone = r
            .enqueue("nurses", t0, "call-y", QueuePriority::default())
            .unwrap();
        drop(gone);
        assert_eq!(abandoned.get(), 1, "left without an agent");
        let stats = r.stats("nurses").unwrap();
        assert_eq!(
            (
                stats.answered,
                stats.answered_in_time,
                stats.wait_total_ms,
                stats.abandoned
            ),
            (1, 0, 75_000, 1),
            "75 s is past the 20 s service level"
        );
        let text = metrics.render();
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} in {text}"))
                .to_string()
        };
        assert!(line("careline_queue_answer_wait_seconds_count{queue=\"nurses\"}").ends_with(" 1"));
        assert!(
            line("careline_queue_answer_wait_seconds_sum{queue=\"nurses\"}").ends_with(" 75.0")
        );
        assert!(
            line("careline_queue_answer_wait_seconds_bucket{le=\"64.0\",queue=\"nurses\"}")
                .ends_with(" 0")
        );
        assert!(
            line("careline_queue_answer_wait_seconds_bucket{le=\"128.0\",queue=\"nurses\"}")
                .ends_with(" 1")
        );
    }

    /// Agents take the contact that waited longest, never one another agent is connecting
    /// to; one not taken after all keeps its place; one that left is not offered.
    #[test]
    fn agents_claim_the_longest_waiting_contact_once() {
        let mut c = BTreeMap::new();
        c.insert("nurses".to_string(), QueueConfig::default());
        let r = QueueRegistry::new(&c);
        let t0 = Instant::now();
        let later = r
            .enqueue(
                "nurses",
                t0 + Duration::from_secs(9),
                "later",
                QueuePriority::default(),
            )
            .unwrap();
        let first = r
            .enqueue("nurses", t0, "first", QueuePriority::default())
            .unwrap();
        let claim = |r: &QueueRegistry| r.claim_oldest("nurses").unwrap().map(|c| c.to_string());
        assert_eq!(claim(&r).as_deref(), Some("first"));
        assert_eq!(
            claim(&r).as_deref(),
            Some("later"),
            "the first is being taken"
        );
        assert_eq!(claim(&r), None);
        first.unclaim();
        assert_eq!(claim(&r).as_deref(), Some("first"), "back, in its place");
        later.unclaim();
        drop(later);
        assert_eq!(claim(&r), None, "a contact that left is not offered");
        assert_eq!(r.claim_oldest("nobody"), Err(UnknownQueue));
        // Claimed contacts still count as waiting until an agent has them.
        assert_eq!(r.metrics("nurses", t0).unwrap().contacts, 1);
    }

    #[derive(Debug, Default)]
    struct Heard(Mutex<Vec<String>>);

    impl QueueWatcher for Heard {
        fn waiting(&self, queue: &str, call_id: &str, _since: Instant, _p: QueuePriority) {
            self.0
                .lock()
                .unwrap()
                .push(format!("waiting {queue} {call_id}"));
        }
        fn gone(&self, call_id: &str) {
            self.0.lock().unwrap().push(format!("gone {call_id}"));
        }
    }

    /// Routing hears of each contact that starts or stops waiting for an agent: entering,
    /// claimed by an agent, given back, leaving.
    #[test]
    fn the_watcher_hears_who_waits_for_an_agent() {
        let mut c = BTreeMap::new();
        c.insert("nurses".to_string(), QueueConfig::default());
        let r = QueueRegistry::new(&c);
        let heard = Arc::new(Heard::default());
        r.watch(heard.clone());
        let t0 = Instant::now();
        let a = r
            .enqueue("nurses", t0, "a", QueuePriority::default())
            .unwrap();
        let b = r
            .enqueue("nurses", t0, "b", QueuePriority::default())
            .unwrap();
        assert!(r.claim("b"));
        assert!(!r.claim("b"), "claimed once");
        b.unclaim();
        a.unclaim(); // not claimed: nothing to say
        drop(a);
        assert_eq!(r.claim_oldest("nurses").unwrap().as_deref(), Some("b"));
        drop(b); // claimed when it left: routing heard it go already
        assert_eq!(
            *heard.0.lock().unwrap(),
            [
                "waiting nurses a",
                "waiting nurses b",
                "gone b",
                "waiting nurses b",
                "gone a",
                "gone b"
            ]
        );
    }
}
