//! Digit collection ("collect up to N keys, stop on a terminator, give up after a timeout"),
//! as a sans-IO core: fed digits and the time, it says when collection is over. A flow asks for
//! it (GetParticipantInput: the [`CollectSpec`]); the call core runs it against the keys.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use careline::flow::collect::{CollectOutcome, CollectSpec, DigitCollector};
//! use careline::media::dtmf::Digit;
//!
//! let key = |c| Digit::from_char(c).unwrap();
//! let spec = CollectSpec {
//!     max_digits: 8,
//!     first_timeout: Duration::from_secs(5),
//!     inter_digit_timeout: Duration::from_secs(3),
//!     terminator: Some(key('#')),
//!     cancel: Some(key('*')),
//! };
//! let t0 = Instant::now();
//! let mut c = DigitCollector::new(spec, t0);
//! assert_eq!(c.on_digit(key('4'), t0), None);
//! assert_eq!(c.deadline(), t0 + Duration::from_secs(3), "the shorter timer now runs");
//! assert_eq!(c.on_digit(key('2'), t0), None);
//! assert_eq!(c.on_digit(key('#'), t0), Some(CollectOutcome::Terminated("42".into())));
//! ```

use std::time::{Duration, Instant};

use crate::media::dtmf::Digit;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectSpec {
    /// Collection completes once this many digits arrived (terminator excluded).
    pub max_digits: usize,
    /// Time allowed for the first digit.
    pub first_timeout: Duration,
    /// Time allowed between digits once the caller started.
    pub inter_digit_timeout: Duration,
    /// A key that ends input early (commonly `#`); never part of the result.
    pub terminator: Option<Digit>,
    /// A key that discards what was typed so far and starts over (Connect's cancel key `*`).
    pub cancel: Option<Digit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollectOutcome {
    /// `max_digits` reached.
    Complete(String),
    /// The terminator was pressed; the digits before it.
    Terminated(String),
    /// Time ran out; whatever arrived (possibly nothing).
    Timeout(String),
}

#[derive(Debug)]
pub struct DigitCollector {
    spec: CollectSpec,
    digits: String,
    deadline: Instant,
}

impl DigitCollector {
    pub fn new(spec: CollectSpec, now: Instant) -> DigitCollector {
        let deadline = now + spec.first_timeout;
        DigitCollector {
            spec,
            digits: String::new(),
            deadline,
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The terminator and the time allowed between keys: after an entry that completed at its
    /// full length, a press of the terminator within that time still belongs to the entry
    /// (the caller pressing # after the last digit, as the prompt asked).
    pub fn terminator_window(&self) -> Option<(Digit, Duration)> {
        self.spec
            .terminator
            .map(|t| (t, self.spec.inter_digit_timeout))
    }

    pub fn on_digit(&mut self, digit: Digit, now: Instant) -> Option<CollectOutcome> {
        if Some(digit) == self.spec.terminator {
            return Some(CollectOutcome::Terminated(std::mem::take(&mut self.digits)));
        }
        if Some(digit) == self.spec.cancel {
            self.digits.clear();
            self.deadline = now + self.spec.first_timeout;
            return None;
        }
        self.digits.push(digit.to_char());
        if self.digits.chars().count() >= self.spec.max_digits.max(1) {
            return Some(CollectOutcome::Complete(std::mem::take(&mut self.digits)));
        }
        self.deadline = now + self.spec.inter_digit_timeout;
        None
    }

    pub fn on_time(&mut self, now: Instant) -> Option<CollectOutcome> {
        (now >= self.deadline).then(|| CollectOutcome::Timeout(std::mem::take(&mut self.digits)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digit {
        Digit::from_char(c).unwrap()
    }

    fn spec(max: usize, term: Option<char>) -> CollectSpec {
        CollectSpec {
            max_digits: max,
            first_timeout: Duration::from_secs(5),
            inter_digit_timeout: Duration::from_secs(2),
            terminator: term.map(d),
            cancel: None,
        }
    }

    #[test]
    fn completes_at_max_digits() {
        let t = Instant::now();
        let mut c = DigitCollector::new(spec(3, None), t);
        assert_eq!(c.on_digit(d('1'), t), None);
        assert_eq!(
            c.on_digit(d('#'), t),
            None,
            "# is an ordinary key without a terminator"
        );
        assert_eq!(
            c.on_digit(d('3'), t),
            Some(CollectOutcome::Complete("1#3".into()))
        );
    }

    #[test]
    fn terminator_ends_early_and_is_not_collected() {
        let t = Instant::now();
        let mut c = DigitCollector::new(spec(10, Some('#')), t);
        c.on_digit(d('4'), t);
        c.on_digit(d('2'), t);
        assert_eq!(
            c.on_digit(d('#'), t),
            Some(CollectOutcome::Terminated("42".into()))
        );
    }

    #[test]
    fn cancel_key_starts_over() {
        let t = Instant::now();
        let mut c = DigitCollector::new(
            CollectSpec {
                cancel: Some(d('*')),
                ..spec(4, Some('#'))
            },
            t,
        );
        c.on_digit(d('1'), t);
        c.on_digit(d('2'), t);
        assert_eq!(c.on_digit(d('*'), t), None);
        c.on_digit(d('7'), t);
        assert_eq!(
            c.on_digit(d('#'), t),
            Some(CollectOutcome::Terminated("7".into()))
        );
    }

    #[test]
    fn first_and_inter_digit_timeouts() {
        let t = Instant::now();
        let mut c = DigitCollector::new(spec(4, None), t);
        assert_eq!(c.on_time(t + Duration::from_millis(4999)), None);
        assert_eq!(
            c.on_time(t + Duration::from_secs(5)),
            Some(CollectOutcome::Timeout(String::new()))
        );

        let mut c = DigitCollector::new(spec(4, None), t);
        let t1 = t + Duration::from_secs(4);
        c.on_digit(d('9'), t1);
        assert_eq!(
            c.deadline(),
            t1 + Duration::from_secs(2),
            "each digit restarts the shorter timer"
        );
        assert_eq!(c.on_time(t + Duration::from_secs(5)), None);
        assert_eq!(
            c.on_time(t1 + Duration::from_secs(2)),
            Some(CollectOutcome::Timeout("9".into()))
        );
    }
}
