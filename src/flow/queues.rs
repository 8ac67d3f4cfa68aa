//! A minimal queue registry for TransferContactToQueue, CheckMetricData and the
//! CustomerQueue hook, until agents and routing exist.
//!
//! Seam for the routing issue: the interpreter only ever emits `Effect::Enqueue` /
//! `Effect::QueueMetrics` and is fed `Event::Enqueued` / `Event::QueueMetrics`; routing
//! replaces this registry behind those and adds `AgentAnswered`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

/// `[queues.NAME]` in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// What CheckMetricData reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueMetrics {
    pub contacts: usize,
    pub oldest_age_secs: u64,
    /// Always 0 until agents exist.
    pub agents_available: usize,
    pub agents_staffed: usize,
    pub agents_online: usize,
}

#[derive(Debug)]
pub struct Queue {
    pub name: Arc<str>,
    pub config: QueueConfig,
    /// Oldest first.
    waiting: Mutex<Vec<Waiting>>,
    /// The queue's metrics, once the server attached them ([`QueueRegistry::observe`]).
    meters: std::sync::OnceLock<QueueMeters>,
}

/// A contact holding a place.
#[derive(Debug)]
struct Waiting {
    id: u64,
    since: Instant,
    call_id: Arc<str>,
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
        if let Ok(mut w) = self.queue.waiting.lock() {
            w.retain(|c| c.id != self.id);
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
        let since = self
            .queue
            .waiting
            .lock()
            .ok()
            .and_then(|w| w.iter().find(|c| c.id == self.id).map(|c| c.since));
        if let (Some(since), Some(m)) = (since, self.queue.meters.get()) {
            m.answer_wait
                .observe(now.saturating_duration_since(since).as_secs_f64());
        }
    }

    /// The agent who claimed this contact did not take it: it may be offered again, keeping
    /// its place (its age counts from when it was queued).
    pub fn unclaim(&self) {
        if let Ok(mut w) = self.queue.waiting.lock()
            && let Some(c) = w.iter_mut().find(|c| c.id == self.id)
        {
            c.claimed = false;
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
            let (waiting, entered, refused, answer_wait) = metrics.queue_meters(name);
            let _ = q.meters.set(QueueMeters {
                waiting,
                entered,
                refused,
                answer_wait,
            });
        }
    }

    /// Puts call `call_id`'s contact in `name`, unless the queue is full (or unknown).
    pub fn enqueue(&self, name: &str, now: Instant, call_id: &str) -> Result<Ticket, AtCapacity> {
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
            claimed: false,
        });
        drop(w);
        if let Some(m) = queue.meters.get() {
            m.entered.inc();
            m.waiting.inc();
        }
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
        let Ok(mut w) = queue.waiting.lock() else {
            return Ok(None);
        };
        Ok(w.iter_mut()
            .filter(|c| !c.claimed)
            .min_by_key(|c| (c.since, c.id))
            .map(|c| {
                c.claimed = true;
                c.call_id.clone()
            }))
    }

    pub fn metrics(&self, name: &str, now: Instant) -> Option<QueueMetrics> {
        let queue = self.queues.get(name)?;
        let w = queue.waiting.lock().ok()?;
        let oldest = w.iter().map(|c| c.since).min();
        Some(QueueMetrics {
            contacts: w.len(),
            oldest_age_secs: oldest.map(|t| now.duration_since(t).as_secs()).unwrap_or(0),
            ..QueueMetrics::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn capacity_metrics_and_leaving() {
        let mut c = BTreeMap::new();
        c.insert(
            "nurses".to_string(),
            QueueConfig {
                capacity: 2,
                hold_flow: None,
                hours: None,
            },
        );
        let r = QueueRegistry::new(&c);
        let t0 = Instant::now();
        let a = r.enqueue("nurses", t0, "call-x").unwrap();
        let _b = r
            .enqueue("nurses", t0 + Duration::from_secs(5), "call-y")
            .unwrap();
        assert_eq!(r.enqueue("nurses", t0, "call-x").unwrap_err(), AtCapacity);
        let m = r.metrics("nurses", t0 + Duration::from_secs(30)).unwrap();
        assert_eq!((m.contacts, m.oldest_age_secs), (2, 30));
        drop(a);
        let m = r.metrics("nurses", t0 + Duration::from_secs(30)).unwrap();
        assert_eq!((m.contacts, m.oldest_age_secs), (1, 25));
        assert!(
            r.enqueue("nurses", t0, "call-x").is_ok(),
            "a place was freed"
        );
        assert!(r.enqueue("nobody", t0, "call-x").is_err());
    }

    #[test]
    fn the_metrics_follow_places_taken_refused_and_freed() {
        let mut c = BTreeMap::new();
        let config = QueueConfig {
            capacity: 1,
            hold_flow: None,
            hours: None,
        };
        c.insert("nurses".to_string(), config);
        let r = QueueRegistry::new(&c);
        let metrics = Metrics::new();
        r.observe(&metrics);
        let (waiting, entered, refused, _) = metrics.queue_meters("nurses");
        let t0 = Instant::now();
        let t = r.enqueue("nurses", t0, "call-x").unwrap();
        assert!(r.enqueue("nurses", t0, "call-x").is_err());
        assert_eq!((waiting.get(), entered.get(), refused.get()), (1, 1, 1));
        // Answered after 75 s: counted once, in the 64-128 s bucket.
        t.answered(t0 + Duration::from_secs(75));
        drop(t);
        assert_eq!(waiting.get(), 0, "leaving frees the place in the gauge too");
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
            .enqueue("nurses", t0 + Duration::from_secs(9), "later")
            .unwrap();
        let first = r.enqueue("nurses", t0, "first").unwrap();
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
}
