//! What a run measures, per worker thread (no sharing on the packet path), merged at the end.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::clock::Nanos;
use crate::rtpstats::{Observation, StreamStats};
use crate::scenario::Via;

/// Histogram values are microseconds, up to 10 minutes, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

fn us(ns: Nanos) -> u64 {
    (ns.max(0) / 1000) as u64
}

/// Why a call failed: a stable key for counting, and the first few details for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct Measure {
    /// INVITE sent -> 200 OK received.
    pub setup: Histogram<u64>,
    /// RFC 3550 inter-arrival jitter estimate, sampled at every packet.
    pub jitter: Histogram<u64>,
    /// Each packet's lateness against its 20 ms slot.
    pub deviation: Histogram<u64>,
    /// End of a key press (key up) -> first packet of the next prompt; 0 when the prompt
    /// started while the key was still down.
    pub dtmf: Histogram<u64>,
    /// Key down -> first packet of the next prompt, per way of sending (RFC 4733, in-band,
    /// SIP INFO): includes the server's detection time.
    pub dtmf_down: [Histogram<u64>; 3],
    pub started: u64,
    pub passed: u64,
    pub failed: BTreeMap<&'static str, u64>,
    pub failure_examples: Vec<String>,
    pub rtp_received: u64,
    pub rtp_expected: u64,
    pub rtp_lost: u64,
    pub rtp_gaps: u64,
    pub rtp_reordered: u64,
    pub rtp_duplicates: u64,
    pub rtp_ts_errors: u64,
    pub prompts_heard: u64,
    pub send_errors: u64,
    /// Generator ticks that started more than 20 ms late (the generator was overloaded).
    pub late_ticks: u64,
    pub ticks: u64,
    /// Calls synthetic agents answered, talked on, and heard the caller on (`--answer`).
    pub answers: u64,
    /// What went wrong on the agents' side, by reason.
    pub agent_failed: BTreeMap<&'static str, u64>,
}

impl Default for Measure {
    fn default() -> Self {
        Measure {
            setup: histogram(),
            jitter: histogram(),
            deviation: histogram(),
            dtmf: histogram(),
            dtmf_down: [histogram(), histogram(), histogram()],
            started: 0,
            passed: 0,
            failed: BTreeMap::new(),
            failure_examples: Vec::new(),
            rtp_received: 0,
            rtp_expected: 0,
            rtp_lost: 0,
            rtp_gaps: 0,
            rtp_reordered: 0,
            rtp_duplicates: 0,
            rtp_ts_errors: 0,
            prompts_heard: 0,
            send_errors: 0,
            late_ticks: 0,
            ticks: 0,
            answers: 0,
            agent_failed: BTreeMap::new(),
        }
    }
}

const MAX_EXAMPLES: usize = 20;

impl Measure {
    pub fn setup(&mut self, ns: Nanos) {
        let _ = self.setup.record(us(ns).max(1));
    }

    pub fn dtmf(&mut self, via: Via, from_up: Nanos, from_down: Nanos) {
        let _ = self.dtmf.record(us(from_up).max(1));
        let _ = self.dtmf_down[via as usize].record(us(from_down).max(1));
    }

    pub fn packet(&mut self, o: Observation) {
        let _ = self.deviation.record(us(o.deviation_ns));
        let _ = self.jitter.record(us(o.jitter_ns));
    }

    pub fn call_ended(&mut self, result: &Result<(), Failure>, stream: Option<&StreamStats>) {
        match result {
            Ok(()) => self.passed += 1,
            Err(f) => {
                *self.failed.entry(f.reason).or_default() += 1;
                if self.failure_examples.len() < MAX_EXAMPLES {
                    self.failure_examples
                        .push(format!("{}: {}", f.reason, f.detail));
                }
            }
        }
        if let Some(s) = stream {
            self.rtp_received += s.received();
            self.rtp_expected += s.expected();
            self.rtp_lost += s.lost();
            self.rtp_gaps += s.gaps;
            self.rtp_reordered += s.reordered;
            self.rtp_duplicates += s.duplicates;
            self.rtp_ts_errors += s.ts_errors;
        }
    }

    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    pub fn merge(&mut self, o: &Measure) {
        let _ = self.setup.add(&o.setup);
        let _ = self.jitter.add(&o.jitter);
        let _ = self.deviation.add(&o.deviation);
        let _ = self.dtmf.add(&o.dtmf);
        for (a, b) in self.dtmf_down.iter_mut().zip(&o.dtmf_down) {
            let _ = a.add(b);
        }
        self.started += o.started;
        self.passed += o.passed;
        for (k, v) in &o.failed {
            *self.failed.entry(k).or_default() += v;
        }
        for e in &o.failure_examples {
            if self.failure_examples.len() < MAX_EXAMPLES {
                self.failure_examples.push(e.clone());
            }
        }
        self.rtp_received += o.rtp_received;
        self.rtp_expected += o.rtp_expected;
        self.rtp_lost += o.rtp_lost;
        self.rtp_gaps += o.rtp_gaps;
        self.rtp_reordered += o.rtp_reordered;
        self.rtp_duplicates += o.rtp_duplicates;
        self.rtp_ts_errors += o.rtp_ts_errors;
        self.prompts_heard += o.prompts_heard;
        self.send_errors += o.send_errors;
        self.late_ticks += o.late_ticks;
        self.ticks += o.ticks;
        self.answers += o.answers;
        for (k, v) in &o.agent_failed {
            *self.agent_failed.entry(k).or_default() += v;
        }
    }
}
