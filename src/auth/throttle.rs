//! Sign-in throttling (sans-IO: time is an input). Failed sign-ins slow down whoever makes
//! them without locking anyone else out and without telling which names exist:
//!
//! - per (name, source address): after `free` failures, each further attempt must wait a
//!   delay that doubles with every failure (1 s, 2 s, 4 s, ... up to `max_delay`). The real
//!   user, signing in from their own address, is not slowed by someone guessing elsewhere;
//! - per source address, over all names: the same with `4 × free` failures before delays
//!   start, against one address spraying a common password over many names.
//!
//! Unknown names are throttled exactly like real ones, so answers (401, then 429 with
//! `Retry-After`) never differ by whether an account exists. A throttled attempt is refused
//! before its password is hashed: guessing also costs the server no argon2 time. Failures are
//! forgotten after `window` of quiet (from the last failure or the end of its delay); a
//! success clears its (name, source) count.
//!
//! NIST SP 800-63B §5.2.2 asks for at most 100 consecutive failures per account; with the
//! defaults, one address reaches 100 failures on one name only after hours of waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How much a sign-in may fail before it is slowed, and how slow it gets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Failures per (name, source) before delays start.
    pub free: u32,
    /// Failures are forgotten this long after the last one.
    pub window: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
    /// No attempt is considered before this.
    not_before: Option<Instant>,
}

impl Record {
    /// Quiet for a whole window since the last failure, or since its delay ended (a delay
    /// longer than the window must not wipe the count it came from).
    fn stale(&self, now: Instant, window: Duration) -> bool {
        let quiet_since = self.not_before.map_or(self.last, |t| t.max(self.last));
        now.saturating_duration_since(quiet_since) > window
    }
}

/// What a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The (name, source) pair is now delayed for this long (the first time: a lock event).
    pub delayed: Option<Duration>,
    /// The (name, source) pair's failures so far.
    pub failures: u32,
    /// This failure started the pair's delays (it was not delayed before).
    pub newly_delayed: bool,
}

/// The most (name, source) pairs remembered; past it, the stalest are forgotten first.
const MAX_PAIRS: usize = 100_000;

#[derive(Debug)]
pub(crate) struct Throttle {
    policy: Policy,
    pairs: HashMap<(String, IpAddr), Record>,
    sources: HashMap<IpAddr, Record>,
}

impl Throttle {
    pub(crate) fn new(policy: Policy) -> Throttle {
        Throttle {
            policy,
            pairs: HashMap::new(),
            sources: HashMap::new(),
        }
    }

    /// `Err(retry_after)` when an attempt for `name` from `source` must wait.
    pub(crate) fn check(
        &mut self,
        name: &str,
        source: IpAddr,
        now: Instant,
    ) -> Result<(), Duration> {
        self.forget_stale(name, source, now);
        let key = (name.to_ascii_lowercase(), source);
        let wait = [self.pairs.get(&key), self.sources.get(&source)]
            .into_iter()
            .flatten()
            .filter_map(|r| r.not_before)
            .filter(|t| *t > now)
            .map(|t| t - now)
            .max();
        match wait {
            Some(w) => Err(round_up(w)),
            None => Ok(()),
        }
    }

    /// Counts a failed attempt.
    pub(crate) fn failure(&mut self, name: &str, source: IpAddr, now: Instant) -> Failure {
        if self.pairs.len() >= MAX_PAIRS {
            self.evict(now);
        }
        let policy = self.policy;
        let pair = bump(
            self.pairs
                .entry((name.to_ascii_lowercase(), source))
                .or_insert(Record {
                    failures: 0,
                    last: now,
                    not_before: None,
                }),
            policy.free,
            policy,
            now,
        );
        let per_source = policy.free.saturating_mul(4);
        bump(
            self.sources.entry(source).or_insert(Record {
                failures: 0,
                last: now,
                not_before: None,
            }),
            per_source,
            policy,
            now,
        );
        pair
    }

    /// A successful sign-in clears its (name, source) pair.
    pub(crate) fn success(&mut self, name: &str, source: IpAddr) {
        self.pairs.remove(&(name.to_ascii_lowercase(), source));
    }

    fn forget_stale(&mut self, name: &str, source: IpAddr, now: Instant) {
        let window = self.policy.window;
        let stale = |r: &Record| r.stale(now, window);
        let key = (name.to_ascii_lowercase(), source);
        if self.pairs.get(&key).is_some_and(stale) {
            self.pairs.remove(&key);
        }
        if self.sources.get(&source).is_some_and(stale) {
            self.sources.remove(&source);
        }
    }

    /// Forgets every stale record, and if that is not enough, the oldest half.
    fn evict(&mut self, now: Instant) {
        let window = self.policy.window;
        self.pairs.retain(|_, r| !r.stale(now, window));
        self.sources.retain(|_, r| !r.stale(now, window));
        if self.pairs.len() >= MAX_PAIRS {
            let mut ages: Vec<Instant> = self.pairs.values().map(|r| r.last).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            self.pairs.retain(|_, r| r.last > cut);
        }
    }
}

/// One more failure on `r`; delays start past `free` failures.
fn bump(r: &mut Record, free: u32, policy: Policy, now: Instant) -> Failure {
    if r.stale(now, policy.window) {
        r.failures = 0;
        r.not_before = None;
    }
    let was_delayed = r.not_before.is_some();
    r.failures = r.failures.saturating_add(1);
    r.last = now;
    if r.failures < free.max(1) {
        return Failure {
            delayed: None,
            failures: r.failures,
            newly_delayed: false,
        };
    }
    let doublings = (r.failures - free.max(1)).min(30);
    let delay = Duration::from_secs(1u64 << doublings).min(policy.max_delay);
    r.not_before = Some(now + delay);
    Failure {
        delayed: Some(delay),
        failures: r.failures,
        newly_delayed: !was_delayed,
    }
}

/// Whole seconds, at least one (for `Retry-After`).
fn round_up(d: Duration) -> Duration {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Duration::from_secs(secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        free: 5,
        window: Duration::from_secs(300),
        max_delay: Duration::from_secs(900),
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn delays_start_after_the_free_failures_and_double() {
        let mut t = Throttle::new(POLICY);
        let t0 = Instant::now();
        let me = ip("10.0.0.1");
        for i in 1..5 {
            assert_eq!(t.check("nina", me, t0), Ok(()));
            let f = t.failure("nina", me, t0);
            assert_eq!((f.failures, f.delayed), (i, None));
        }
        let f = t.failure("nina", me, t0);
        assert_eq!(f.delayed, Some(Duration::from_secs(1)));
        assert!(f.newly_delayed);
        assert_eq!(t.check("nina", me, t0), Err(Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(t.check("nina", me, t1), Ok(()));
        let f = t.failure("nina", me, t1);
        assert_eq!(f.delayed, Some(Duration::from_secs(2)));
        assert!(!f.newly_delayed);
        assert_eq!(
            t.check("NINA", me, t1 + Duration::from_millis(500)),
            Err(Duration::from_secs(2)),
            "names compare without case"
        );
        // Many more, each as soon as allowed: capped at the maximum.
        let mut now = t1;
        for _ in 0..20 {
            now += t.check("nina", me, now).err().unwrap_or_default();
            t.failure("nina", me, now);
        }
        assert_eq!(t.check("nina", me, now), Err(Duration::from_secs(900)));
    }

    #[test]
    fn a_guesser_elsewhere_does_not_slow_the_real_user() {
        let mut t = Throttle::new(POLICY);
        let now = Instant::now();
        for _ in 0..10 {
            t.failure("nina", ip("203.0.113.9"), now);
        }
        assert!(t.check("nina", ip("203.0.113.9"), now).is_err());
        assert_eq!(t.check("nina", ip("10.0.0.1"), now), Ok(()));
    }

    #[test]
    fn unknown_and_real_names_are_treated_alike() {
        // The throttle never learns which names exist: the same sequence, the same answers.
        let run = |name: &str| {
            let mut t = Throttle::new(POLICY);
            let now = Instant::now();
            (0..8)
                .map(|i| {
                    let at = now + Duration::from_millis(i * 10);
                    let c = t.check(name, ip("10.0.0.1"), at);
                    t.failure(name, ip("10.0.0.1"), at);
                    c
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run("nina"), run("nobody-by-this-name"));
    }

    #[test]
    fn one_source_spraying_many_names_is_slowed() {
        let mut t = Throttle::new(POLICY);
        let now = Instant::now();
        let src = ip("198.51.100.7");
        for i in 0..19 {
            t.failure(&format!("user{i}"), src, now);
        }
        assert_eq!(t.check("user-new", src, now), Ok(()));
        t.failure("user19", src, now);
        assert!(
            t.check("user-new", src, now).is_err(),
            "20 failures over names"
        );
        assert_eq!(t.check("user-new", ip("10.0.0.1"), now), Ok(()));
    }

    #[test]
    fn failures_are_forgotten_after_the_window_and_a_success_clears_them() {
        let mut t = Throttle::new(POLICY);
        let now = Instant::now();
        let me = ip("10.0.0.1");
        for _ in 0..4 {
            t.failure("nina", me, now);
        }
        let later = now + Duration::from_secs(301);
        assert_eq!(t.check("nina", me, later), Ok(()));
        assert_eq!(t.failure("nina", me, later).failures, 1, "counting again");
        for _ in 0..3 {
            t.failure("nina", me, later);
        }
        t.success("nina", me);
        assert_eq!(t.failure("nina", me, later).failures, 1);
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = Throttle::new(POLICY);
        let now = Instant::now();
        for i in 0..(MAX_PAIRS + 10) {
            let at = now + Duration::from_micros(i as u64);
            t.failure(&format!("n{i}"), ip("10.0.0.1"), at);
        }
        assert!(t.pairs.len() <= MAX_PAIRS);
    }
}
