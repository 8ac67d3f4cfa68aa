//! The final table for people and the JSON for machines.

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::run::LoadResult;

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// p50/p90/p99/max of a histogram in milliseconds (`None` without samples).
pub fn percentiles(h: &Histogram<u64>) -> Option<[f64; 4]> {
    if h.is_empty() {
        return None;
    }
    Some([
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
    ])
}

fn p99(h: &Histogram<u64>) -> Option<f64> {
    percentiles(h).map(|p| p[2])
}

pub fn json(r: &LoadResult) -> Value {
    let m = &r.measure;
    let hist = |h: &Histogram<u64>| match percentiles(h) {
        Some([p50, p90, p99, max]) => {
            json!({"p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": max, "count": h.len()})
        }
        None => Value::Null,
    };
    json!({
        "calls": {
            "started": m.started,
            "passed": m.passed,
            "failed": m.failed_total(),
            "failed_by_reason": m.failed,
            "failure_examples": m.failure_examples,
            "peak_concurrent": r.peak_active,
        },
        "elapsed_s": r.elapsed.as_secs_f64(),
        "ramp_rate_per_s": r.ramp_rate,
        "callers": if r.browsers { "browser" } else { "phone" },
        "agents": {
            "answering": r.answerers,
            "answered": m.answers,
            "failed_by_reason": m.agent_failed,
        },
        "setup": hist(&m.setup),
        "rtp": {
            "jitter": hist(&m.jitter),
            "schedule_deviation": hist(&m.deviation),
            "received": m.rtp_received,
            "expected": m.rtp_expected,
            "lost": m.rtp_lost,
            "sequence_gaps": m.rtp_gaps,
            "reordered": m.rtp_reordered,
            "duplicates": m.rtp_duplicates,
            "timestamp_errors": m.rtp_ts_errors,
        },
        "dtmf_key_up_to_prompt": hist(&m.dtmf),
        "dtmf_key_down_to_prompt": {
            "rfc4733": hist(&m.dtmf_down[0]),
            "inband": hist(&m.dtmf_down[1]),
            "info": hist(&m.dtmf_down[2]),
        },
        "prompts_heard": m.prompts_heard,
        "server": r.server,
        "generator": {
            "threads": r.threads,
            "cpu_percent": r.generator.cpu_percent,
            "cpu_user_percent": r.generator.user_percent,
            "rss_max_bytes": r.generator.rss_max_bytes,
            "ticks": m.ticks,
            "late_ticks": m.late_ticks,
            "send_errors": m.send_errors,
        },
    })
}

fn row(name: &str, h: &Histogram<u64>) -> String {
    match percentiles(h) {
        Some([p50, p90, p99, max]) => format!(
            "  {name:<30} p50 {p50:>8.2} ms  p90 {p90:>8.2} ms  p99 {p99:>8.2} ms  max {max:>8.2} ms\n"
        ),
        None => format!("  {name:<30} (no samples)\n"),
    }
}

pub fn table(r: &LoadResult) -> String {
    let m = &r.measure;
    let mut s = format!(
        "calls: {} placed, {} passed, {} failed; peak {} concurrent; ramp {:.0} calls/s; {:.1} s\n",
        m.started,
        m.passed,
        m.failed_total(),
        r.peak_active,
        r.ramp_rate,
        r.elapsed.as_secs_f64()
    );
    s += &row(
        if r.browsers {
            "setup (WHIP POST -> connected)"
        } else {
            "setup (INVITE -> 200 OK)"
        },
        &m.setup,
    );
    s += &row("server RTP jitter (RFC 3550)", &m.jitter);
    s += &row("deviation from 20 ms schedule", &m.deviation);
    s += &row("DTMF key up -> next prompt", &m.dtmf);
    for (name, h) in ["rfc4733", "inband", "info"].iter().zip(&m.dtmf_down) {
        if !h.is_empty() {
            s += &row(&format!("  key down ({name}) -> prompt"), h);
        }
    }
    let loss = if m.rtp_expected > 0 {
        m.rtp_lost as f64 * 100.0 / m.rtp_expected as f64
    } else {
        0.0
    };
    s += &format!(
        "  RTP from server: {} received, {} lost ({loss:.3} %), {} sequence gaps, {} reordered, \
         {} duplicates, {} timestamp errors\n",
        m.rtp_received, m.rtp_lost, m.rtp_gaps, m.rtp_reordered, m.rtp_duplicates, m.rtp_ts_errors
    );
    s += &format!("  prompts recognized: {}\n", m.prompts_heard);
    if let Some(u) = &r.server {
        s += &format!(
            "  server: CPU {:.1} % of a core (hold), RSS {:.1} MiB (start {:.1} MiB)\n",
            u.cpu_percent,
            u.rss_max_bytes as f64 / 1048576.0,
            u.rss_start_bytes as f64 / 1048576.0
        );
    }
    s += &format!(
        "  generator: {} thread(s), CPU {:.1} % of a core (hold; {:.1} % its own, the rest \
         the kernel's sockets), {} of {} ticks late, {} send errors\n",
        r.threads,
        r.generator.cpu_percent,
        r.generator.user_percent,
        m.late_ticks,
        m.ticks,
        m.send_errors
    );
    if r.answerers > 0 {
        s += &format!(
            "  agents: {} answering, {} calls answered and heard both ways\n",
            r.answerers, m.answers
        );
        for (k, v) in &m.agent_failed {
            s += &format!("    {k}: {v}\n");
        }
    }
    if !m.failed.is_empty() || !m.agent_failed.is_empty() {
        if !m.failed.is_empty() {
            s += "  failed calls by reason:\n";
        }
        for (k, v) in &m.failed {
            s += &format!("    {k}: {v}\n");
        }
        for e in m.failure_examples.iter().take(5) {
            s += &format!("    e.g. {e}\n");
        }
    }
    s
}

/// The service-level objective of the capacity benchmark.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Slo {
    pub max_deviation_p99_ms: f64,
    pub max_dtmf_p99_ms: f64,
}

impl Default for Slo {
    fn default() -> Self {
        Slo {
            max_deviation_p99_ms: 10.0,
            max_dtmf_p99_ms: 150.0,
        }
    }
}

impl Slo {
    /// What broke, if anything: any failed call, any loss, p99 deviation or DTMF latency.
    pub fn breaches(&self, r: &LoadResult) -> Vec<String> {
        let m = &r.measure;
        let mut out = Vec::new();
        if m.failed_total() > 0 {
            out.push(format!("{} failed calls", m.failed_total()));
        }
        if m.passed == 0 {
            out.push("no call passed".into());
        }
        if m.rtp_lost > 0 {
            out.push(format!("{} RTP packets lost", m.rtp_lost));
        }
        // Late generator ticks only make the callers' own sending bursty (the server's stream
        // is timed by the kernel, so its measurements stand); but a generator late on most of
        // its ticks cannot keep up, and then nothing it reports is to be trusted.
        if m.ticks > 0 && m.late_ticks * 2 > m.ticks {
            out.push(format!(
                "generator overloaded ({:.0} % of its ticks late: not a valid measurement)",
                m.late_ticks as f64 * 100.0 / m.ticks as f64
            ));
        }
        if let Some(d) = p99(&m.deviation)
            && d > self.max_deviation_p99_ms
        {
            out.push(format!(
                "deviation p99 {d:.1} ms > {} ms",
                self.max_deviation_p99_ms
            ));
        }
        if let Some(d) = p99(&m.dtmf)
            && d > self.max_dtmf_p99_ms
        {
            out.push(format!("DTMF p99 {d:.1} ms > {} ms", self.max_dtmf_p99_ms));
        }
        out
    }
}
