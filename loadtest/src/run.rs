//! The coordinator of one load run: starts calls at the configured rate across the worker
//! threads (ramp), keeps the concurrency (hold: an ended call is replaced), then lets the
//! active calls finish (ramp-down); samples the server's and its own CPU and memory.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::caller::Plan;
use crate::measure::Measure;
use crate::procstat;
use crate::worker::{self, Control, Live, WorkerConfig};

pub struct LoadSpec {
    pub target: SocketAddr,
    pub tcp: bool,
    pub plans: Arc<Vec<Arc<Plan>>>,
    /// Calls to place in all; `None`: as many as the hold needs.
    pub calls: Option<u64>,
    pub concurrency: u64,
    /// New calls per second.
    pub rate: f64,
    /// How long to keep `concurrency` calls up once reached.
    pub hold: Duration,
    pub threads: usize,
    pub server_pid: Option<u32>,
    pub progress: bool,
    /// Hard bound on the whole run: calls still up then are hung up and count as failed.
    pub max_duration: Duration,
    /// Careline's HTTP listener, for browser callers and answerers.
    pub whip: Option<crate::whip::WhipTarget>,
    /// Browser callers (WHIP and WebRTC at `whip`) instead of SIP phones.
    pub browsers: bool,
    /// Synthetic agents answering a queue (at `whip`), and how many.
    pub answer: Option<Arc<crate::answerer::AnswerPlan>>,
    pub answerers: usize,
}

/// CPU and memory of a process over the hold.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    /// Average CPU over the hold, in percent of one core.
    pub cpu_percent: f64,
    /// The user-space part of `cpu_percent`.
    pub user_percent: f64,
    pub rss_start_bytes: u64,
    pub rss_max_bytes: u64,
}

#[derive(Debug)]
pub struct LoadResult {
    pub measure: Measure,
    pub elapsed: Duration,
    pub peak_active: u64,
    /// Calls started per second during the ramp.
    pub ramp_rate: f64,
    pub server: Option<Usage>,
    pub generator: Usage,
    pub threads: usize,
    /// The callers were browsers (WHIP and WebRTC), not phones.
    pub browsers: bool,
    /// Synthetic agents that answered (`--answer`).
    pub answerers: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("starting worker {0}: {1}")]
    Worker(usize, std::io::Error),
    #[error("a worker thread panicked")]
    WorkerPanicked,
}

fn local_ip_for(target: SocketAddr) -> IpAddr {
    if target.ip().is_loopback() {
        return target.ip();
    }
    std::net::UdpSocket::bind(SocketAddr::new(
        if target.is_ipv4() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([0u16; 8])
        },
        0,
    ))
    .and_then(|s| {
        s.connect(target)?;
        s.local_addr()
    })
    .map(|a| a.ip())
    .unwrap_or(target.ip())
}

struct Sampler {
    pid: u32,
    start: Option<procstat::Sample>,
    last: Option<procstat::Sample>,
    rss_max: u64,
}

impl Sampler {
    fn new(pid: u32) -> Sampler {
        Sampler {
            pid,
            start: None,
            last: None,
            rss_max: 0,
        }
    }

    fn begin(&mut self) {
        self.start = procstat::sample(self.pid);
        self.last = self.start;
        self.rss_max = self.start.map_or(0, |s| s.rss_bytes);
    }

    fn sample(&mut self, in_window: bool) {
        if let Some(s) = procstat::sample(self.pid) {
            self.rss_max = self.rss_max.max(s.rss_bytes);
            if in_window {
                self.last = Some(s);
            }
        }
    }

    fn usage(&self) -> Usage {
        match (self.start, self.last) {
            (Some(a), Some(b)) => Usage {
                cpu_percent: procstat::cpu_percent(&a, &b),
                user_percent: procstat::user_percent(&a, &b),
                rss_start_bytes: a.rss_bytes,
                rss_max_bytes: self.rss_max,
            },
            _ => Usage::default(),
        }
    }
}

/// Runs one load to its end.
pub fn run(spec: &LoadSpec) -> Result<LoadResult, RunError> {
    let live = Arc::new(Live::default());
    let local_ip = local_ip_for(match (&spec.whip, spec.browsers) {
        (Some(w), true) => w.http,
        _ => spec.target,
    });
    let mut workers = Vec::new();
    let threads = spec.threads.max(1);
    for id in 0..threads {
        let w = worker::spawn(
            WorkerConfig {
                id,
                server: spec.target,
                tcp: spec.tcp,
                local_ip,
                plans: spec.plans.clone(),
                whip: spec.whip.clone(),
                browsers: spec.browsers,
                answer: spec.answer.clone(),
                answerers: spec.answerers / threads + usize::from(id < spec.answerers % threads),
            },
            live.clone(),
        )
        .map_err(|e| RunError::Worker(id, e))?;
        workers.push(w);
    }
    let bar = if spec.progress {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(Duration::from_millis(200));
        b
    } else {
        indicatif::ProgressBar::hidden()
    };

    let mut server = spec.server_pid.map(Sampler::new);
    let mut me = Sampler::new(std::process::id());
    let start = Instant::now();
    let mut tokens = 1.0f64;
    let mut last = start;
    let mut next_worker = 0usize;
    let mut next_plan = 0usize;
    let mut placed = 0u64;
    let mut ramp_end: Option<Instant> = None;
    let mut ramp_rate = 0.0;
    let mut draining = false;
    let mut aborted = false;
    let mut peak = 0u64;
    let mut last_sample = start;
    let mut phase = "ramp";
    // The measurement window for CPU: from reaching the concurrency to the end of the hold.
    loop {
        let now = Instant::now();
        let active = live.active.load(Ordering::Relaxed);
        peak = peak.max(active);
        if !draining {
            tokens = (tokens + spec.rate * now.duration_since(last).as_secs_f64())
                .min((spec.rate * 0.05).max(1.0));
            last = now;
            let mut active_now = active;
            while tokens >= 1.0
                && active_now < spec.concurrency
                && spec.calls.is_none_or(|c| placed < c)
            {
                let w = &workers[next_worker % workers.len()];
                next_worker += 1;
                let _ = w.control.send(Control::Start(next_plan % spec.plans.len()));
                next_plan += 1;
                placed += 1;
                active_now += 1;
                tokens -= 1.0;
            }
            if ramp_end.is_none() && active_now >= spec.concurrency {
                ramp_end = Some(now);
                ramp_rate = placed as f64 / now.duration_since(start).as_secs_f64().max(1e-3);
                if let Some(s) = server.as_mut() {
                    s.begin();
                }
                me.begin();
                phase = "hold";
            }
            // Without --hold, a run ends when its calls are placed (SIPp's -m with -l), not
            // when the concurrency is first reached.
            let hold_over = !spec.hold.is_zero()
                && ramp_end.is_some_and(|r| now.duration_since(r) >= spec.hold);
            let all_placed = spec.calls.is_some_and(|c| placed >= c);
            if hold_over || all_placed {
                if ramp_end.is_none() {
                    ramp_end = Some(now);
                    ramp_rate = placed as f64 / now.duration_since(start).as_secs_f64().max(1e-3);
                    if let Some(s) = server.as_mut() {
                        s.begin();
                    }
                    me.begin();
                }
                for w in &workers {
                    let _ = w.control.send(Control::Drain);
                }
                draining = true;
                phase = "ramp-down";
            }
        }
        if now.duration_since(last_sample) >= Duration::from_secs(1) {
            last_sample = now;
            // Without a hold, the whole run is the window.
            let in_window = ramp_end.is_some() && (!draining || spec.hold.is_zero());
            if let Some(s) = server.as_mut() {
                s.sample(in_window);
            }
            me.sample(in_window);
        }
        if !aborted && now.duration_since(start) > spec.max_duration {
            for w in &workers {
                let _ = w.control.send(Control::HangupAll);
            }
            aborted = true;
            draining = true;
        }
        bar.set_message(format!(
            "{phase}: {} active, {} passed, {} failed, {} placed",
            active,
            live.passed.load(Ordering::Relaxed),
            live.failed.load(Ordering::Relaxed),
            live.started.load(Ordering::Relaxed),
        ));
        if draining && workers.iter().all(|w| w.thread.is_finished()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bar.finish_and_clear();
    let mut measure = Measure::default();
    for w in workers {
        let m = w.thread.join().map_err(|_| RunError::WorkerPanicked)?;
        measure.merge(&m);
    }
    Ok(LoadResult {
        browsers: spec.browsers,
        answerers: spec.answerers,
        measure,
        elapsed: start.elapsed(),
        peak_active: peak,
        ramp_rate,
        server: server.map(|s| s.usage()),
        generator: me.usage(),
        threads: spec.threads.max(1),
    })
}
