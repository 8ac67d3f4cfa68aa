//! What clients without valid credentials did, summarised (sans-IO: time is an input). A
//! request with no or a bad token, or a sign-in as a name that does not exist, is not worth
//! a hash-chained audit row each: an outsider could grow the trail without bound. Instead
//! each source address gets one summary row per window (how many, which kinds, first and
//! last time), and one log line when it starts.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

/// The most distinct kinds of request listed in one summary.
const MAX_KINDS: usize = 8;
/// The most sources summarised per window; the rest are counted together.
const MAX_SOURCES: usize = 10_000;

/// One source's refused requests over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    /// `None`: the sources past `MAX_SOURCES`, together.
    pub source: Option<IpAddr>,
    pub count: u64,
    /// Paths or `login`, at most `MAX_KINDS`.
    pub kinds: BTreeSet<String>,
    pub first: SystemTime,
    pub last: SystemTime,
}

#[derive(Debug)]
pub(crate) struct Tally {
    window: Duration,
    started: Option<Instant>,
    by_source: HashMap<Option<IpAddr>, Summary>,
}

impl Tally {
    pub(crate) fn new(window: Duration) -> Tally {
        Tally {
            window,
            started: None,
            by_source: HashMap::new(),
        }
    }

    /// Counts one refused request; `true` when it is the first from this source in the
    /// window (the caller logs it).
    pub(crate) fn add(
        &mut self,
        source: Option<IpAddr>,
        kind: &str,
        now: Instant,
        wall: SystemTime,
    ) -> bool {
        self.started.get_or_insert(now);
        let key = if self.by_source.len() >= MAX_SOURCES && !self.by_source.contains_key(&source) {
            None
        } else {
            source
        };
        let mut first = false;
        let s = self.by_source.entry(key).or_insert_with(|| {
            first = true;
            Summary {
                source: key,
                count: 0,
                kinds: BTreeSet::new(),
                first: wall,
                last: wall,
            }
        });
        s.count += 1;
        s.last = wall;
        if s.kinds.len() < MAX_KINDS {
            // Paths are the client's text: kept short, and only as a set.
            s.kinds.insert(kind.chars().take(64).collect());
        }
        first
    }

    /// When the current window closes (for the shell's timer); `None` while nothing is counted.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.started.map(|s| s + self.window)
    }

    /// The summaries of a window that has closed by `now` (or of everything, `force`), oldest
    /// source first; the tally starts a new window.
    pub(crate) fn drain(&mut self, now: Instant, force: bool) -> Vec<Summary> {
        match self.poll_timeout() {
            Some(t) if force || now >= t => {
                self.started = None;
                let mut out: Vec<Summary> = self.by_source.drain().map(|(_, s)| s).collect();
                out.sort_by_key(|s| s.first);
                out
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_of_requests_is_one_summary_per_source() {
        let mut t = Tally::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let w0 = SystemTime::now();
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        assert!(t.add(Some(a), "/api/v1/me", t0, w0));
        for i in 0..1999 {
            assert!(!t.add(Some(a), &format!("/api/v1/p{}", i % 20), t0, w0));
        }
        assert!(t.add(Some(b), "login", t0, w0));
        assert!(t.drain(t0 + Duration::from_secs(59), false).is_empty());
        let out = t.drain(t0 + Duration::from_secs(60), false);
        assert_eq!(out.len(), 2);
        let sa = out.iter().find(|s| s.source == Some(a)).unwrap();
        assert_eq!(sa.count, 2000);
        assert_eq!(sa.kinds.len(), MAX_KINDS);
        assert_eq!(
            t.poll_timeout(),
            None,
            "a new window starts with the next request"
        );
        assert!(t.add(Some(a), "/x", t0 + Duration::from_secs(61), w0));
    }

    #[test]
    fn sources_past_the_limit_are_counted_together() {
        let mut t = Tally::new(Duration::from_secs(60));
        let now = Instant::now();
        let wall = SystemTime::now();
        for i in 0..(MAX_SOURCES as u32 + 50) {
            t.add(Some(IpAddr::from(i.to_be_bytes())), "/", now, wall);
        }
        let out = t.drain(now, true);
        assert_eq!(out.len(), MAX_SOURCES + 1);
        let rest = out.iter().find(|s| s.source.is_none()).unwrap();
        assert_eq!(rest.count, 50);
    }
}
