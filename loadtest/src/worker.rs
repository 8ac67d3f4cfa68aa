//! A worker thread: one 20 ms media clock driving every caller it owns, the same shape as
//! the server's media engine. No task, timer or socket per call: one SIP socket (or TCP
//! connection) and one RTP socket per worker, read with `recvmmsg`, written with `sendmmsg`;
//! packets are routed to callers by the server's source address. The thread sleeps in
//! `poll` on the SIP socket until the next tick, so signaling is answered at once (setup
//! latency is not rounded to the tick) while RTP is handled in one batch per tick.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use careline::media::rtp::RtpPacket;

use crate::answerer::{AnswerPlan, Answerer};
use crate::caller::{Caller, Endpoint, Plan};
use crate::clock::{self, MS, Nanos};
use crate::measure::Measure;
use crate::net::{RecvBatch, SendBatch, bind_rtp_pair, bind_udp};
use crate::sip::{Msg, take_stream_message};
use crate::whip::{Done, Job, Signaler, WhipTarget};

const TICK: Nanos = 20 * MS;

pub enum Control {
    /// Place one call running plan `n`.
    Start(usize),
    /// Hand over what was measured since the last snapshot.
    Snapshot(mpsc::Sender<Measure>),
    /// Place no more calls; exit once the active ones have ended.
    Drain,
    /// Hang up every active call now, then exit.
    HangupAll,
}

/// Counters for the live progress line, shared with the coordinator.
#[derive(Default)]
pub struct Live {
    pub started: AtomicU64,
    pub active: AtomicU64,
    pub passed: AtomicU64,
    pub failed: AtomicU64,
}

pub struct WorkerConfig {
    pub id: usize,
    pub server: SocketAddr,
    pub tcp: bool,
    pub local_ip: IpAddr,
    pub plans: Arc<Vec<Arc<Plan>>>,
    /// Careline's HTTP listener, for browser callers and answerers.
    pub whip: Option<WhipTarget>,
    /// The callers are browsers (WHIP at `whip`) instead of phones.
    pub browsers: bool,
    /// Synthetic agents answering a queue from this worker.
    pub answer: Option<Arc<AnswerPlan>>,
    pub answerers: usize,
}

enum SipConn {
    Udp(UdpSocket, RecvBatch),
    Tcp {
        stream: TcpStream,
        inbuf: Vec<u8>,
        outbuf: Vec<u8>,
    },
}

pub struct Worker {
    pub control: mpsc::Sender<Control>,
    pub thread: JoinHandle<Measure>,
}

/// Binds the worker's sockets (errors surface here, not in the thread) and starts it.
pub fn spawn(cfg: WorkerConfig, live: Arc<Live>) -> io::Result<Worker> {
    let (rtp, rtcp) = bind_rtp_pair(cfg.local_ip, 16 << 20)?;
    let sip = if cfg.tcp {
        let stream = TcpStream::connect(cfg.server)?;
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        SipConn::Tcp {
            stream,
            inbuf: Vec::with_capacity(64 * 1024),
            outbuf: Vec::new(),
        }
    } else {
        let s = bind_udp(SocketAddr::new(cfg.local_ip, 0), 8 << 20)?;
        SipConn::Udp(s, RecvBatch::new(32, 8192))
    };
    let local_sip = match &sip {
        SipConn::Udp(s, _) => s.local_addr()?,
        SipConn::Tcp { stream, .. } => stream.local_addr()?,
    };
    let ep = Endpoint {
        server: cfg.server,
        local_sip,
        local_rtp: rtp.local_addr()?,
        tcp: cfg.tcp,
        whip: cfg.browsers,
    };
    let signal = match cfg.whip {
        Some(target) => {
            let wake = matches!(sip, SipConn::Udp(..)).then_some(local_sip);
            Some(Signaler::spawn(target, wake)?)
        }
        None => None,
    };
    let ep_rtp = ep.local_rtp;
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(format!("caller-clock-{}", cfg.id))
        .spawn(move || {
            let mut w = Run {
                id: cfg.id,
                plans: cfg.plans,
                ep,
                sip,
                rtp,
                rtcp,
                rtp_in: RecvBatch::new(64, 1500),
                rtp_out: SendBatch::new(),
                sip_out: Vec::new(),
                calls: Vec::new(),
                free: Vec::new(),
                by_call_id: HashMap::new(),
                by_port: vec![0; 65536],
                measure: Measure::default(),
                live,
                placed: 0,
                signal,
                answerers: (0..cfg.answerers)
                    .map(|i| Answerer::new(format!("agent-{}-{i}", cfg.id), ep_rtp, clock::now()))
                    .collect(),
                answer: cfg.answer,
            };
            w.run(rx);
            w.measure
        })?;
    Ok(Worker {
        control: tx,
        thread,
    })
}

struct Run {
    id: usize,
    plans: Arc<Vec<Arc<Plan>>>,
    ep: Endpoint,
    sip: SipConn,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    rtp_in: RecvBatch,
    rtp_out: SendBatch,
    sip_out: Vec<Vec<u8>>,
    calls: Vec<Option<Caller>>,
    free: Vec<usize>,
    by_call_id: HashMap<String, usize>,
    /// Server RTP source port -> slot + 1 (0: none).
    by_port: Vec<u32>,
    measure: Measure,
    live: Arc<Live>,
    placed: u64,
    signal: Option<Signaler>,
    answerers: Vec<Answerer>,
    answer: Option<Arc<AnswerPlan>>,
}

/// `by_port` entries for answerers carry this bit (callers' are slot + 1).
const AGENT: u32 = 1 << 31;

/// The WHIP path for a scenario's service number (Careline maps `to` as it maps a dialed
/// number).
fn whip_path(service: &str) -> String {
    let mut path = String::from("/api/v1/calls/whip?to=");
    for b in service.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            path.push(b as char);
        } else {
            path.push_str(&format!("%{b:02X}"));
        }
    }
    path
}

impl Run {
    fn run(&mut self, rx: mpsc::Receiver<Control>) {
        let mut next_tick = clock::now();
        let mut draining = false;
        loop {
            let now = clock::now();
            let wait_ms = ((next_tick - now) / MS).clamp(0, 20) as i32;
            self.wait_sip(wait_ms);
            loop {
                match rx.try_recv() {
                    Ok(Control::Start(plan)) => self.place(plan),
                    Ok(Control::Snapshot(reply)) => {
                        let _ = reply.send(std::mem::take(&mut self.measure));
                    }
                    Ok(Control::Drain) => draining = true,
                    Ok(Control::HangupAll) => {
                        draining = true;
                        self.hangup_all();
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        draining = true;
                        break;
                    }
                }
            }
            self.read_sip();
            self.read_whip();
            self.flush_sip();
            let now = clock::now();
            if now >= next_tick {
                self.tick(now);
                self.measure.ticks += 1;
                if now - next_tick > TICK {
                    self.measure.late_ticks += 1;
                }
                next_tick += TICK;
                if now - next_tick > 5 * TICK {
                    next_tick = now; // hopelessly behind: resynchronize rather than burst
                }
            }
            if draining && self.by_call_id.is_empty() && self.answerers_done() {
                return;
            }
        }
    }

    fn wait_sip(&mut self, timeout_ms: i32) {
        let (fd, want_out) = match &self.sip {
            SipConn::Udp(s, _) => (s.as_raw_fd(), false),
            SipConn::Tcp { stream, outbuf, .. } => (stream.as_raw_fd(), !outbuf.is_empty()),
        };
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN | if want_out { libc::POLLOUT } else { 0 },
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe {
            libc::poll(&mut pfd, 1, timeout_ms);
        }
    }

    fn place(&mut self, plan: usize) {
        let n = (self.id as u64) << 40 | self.placed;
        self.placed += 1;
        let mut caller = Caller::new(plan, &self.plans, &self.ep, n);
        caller.start(clock::now(), &self.plans, &self.ep, &mut self.sip_out);
        if let (Some(offer), Some(signal)) = (caller.take_post(), &self.signal) {
            signal.send(Job::Post {
                call_id: caller.call_id.clone(),
                path: whip_path(&self.plans[plan].scenario.service),
                offer,
            });
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.calls.push(None);
                self.calls.len() - 1
            }
        };
        self.by_call_id.insert(caller.call_id.clone(), slot);
        self.calls[slot] = Some(caller);
        self.measure.started += 1;
        self.live.started.fetch_add(1, Ordering::Relaxed);
        self.live.active.fetch_add(1, Ordering::Relaxed);
        self.flush_sip();
    }

    fn hangup_all(&mut self) {
        for slot in 0..self.calls.len() {
            if let Some(c) = self.calls[slot].as_mut() {
                c.abandon();
            }
        }
    }

    fn read_sip(&mut self) {
        let mut messages: Vec<(Vec<u8>, Nanos)> = Vec::new();
        match &mut self.sip {
            SipConn::Udp(sock, batch) => loop {
                match batch.recv(sock) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        for i in 0..n {
                            if let Some(d) = batch.get(i) {
                                messages.push((d.data.to_vec(), d.at));
                            }
                        }
                    }
                }
            },
            SipConn::Tcp { stream, inbuf, .. } => {
                let mut buf = [0u8; 16384];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => inbuf.extend_from_slice(&buf[..n]),
                        Err(_) => break,
                    }
                }
                let at = clock::now();
                while let Some(m) = take_stream_message(inbuf) {
                    messages.push((m, at));
                }
            }
        }
        for (bytes, at) in messages {
            let Ok(msg) = Msg::parse(&bytes) else {
                continue;
            };
            let Some(&slot) = self.by_call_id.get(msg.call_id) else {
                // A stray request for a call we no longer know: answer so the server stops.
                if msg.method == Some("BYE") {
                    let mut resp = Vec::new();
                    crate::sip::response(&msg, 481, "Call/Transaction Does Not Exist", &mut resp);
                    self.sip_out.push(resp);
                }
                continue;
            };
            let Some(caller) = self.calls[slot].as_mut() else {
                continue;
            };
            let before = caller.remote_rtp();
            caller.on_sip(
                &msg,
                at,
                &self.plans,
                &self.ep,
                &mut self.sip_out,
                &mut self.measure,
            );
            if before.is_none()
                && let Some(remote) = caller.remote_rtp()
            {
                self.by_port[remote.port() as usize] = slot as u32 + 1;
            }
            if caller.result().is_some() {
                self.reap(slot);
            }
        }
    }

    /// Answerers serve callers until no call is left anywhere in the run (the callers may be
    /// on other workers), then stop once their own call is over.
    fn answerers_done(&mut self) -> bool {
        if self.live.active.load(Ordering::Relaxed) == 0 {
            for a in &mut self.answerers {
                a.stop();
            }
        }
        self.answerers.iter().all(Answerer::is_stopped)
    }

    /// Answers to browser callers' WHIP requests.
    fn read_whip(&mut self) {
        let Some(signal) = &self.signal else {
            return;
        };
        let done: Vec<Done> = signal.done.try_iter().collect();
        for d in done {
            let call_id = match &d {
                Done::Answered { call_id, .. } | Done::Deleted { call_id, .. } => call_id,
            };
            if let Some(i) = self.answerers.iter().position(|a| &a.id == call_id) {
                self.on_agent_done(i, d);
                continue;
            }
            let Some(&slot) = self.by_call_id.get(call_id) else {
                continue;
            };
            let Some(caller) = self.calls[slot].as_mut() else {
                continue;
            };
            match d {
                Done::Answered {
                    status,
                    location,
                    body,
                    at,
                    ..
                } => {
                    caller.on_whip_answer(status, location, &body, at, &self.plans);
                    if let Some(remote) = caller.remote_rtp() {
                        self.by_port[remote.port() as usize] = slot as u32 + 1;
                    }
                }
                Done::Deleted { status, .. } => caller.on_whip_deleted(status, &self.plans),
            }
            self.take_whip_jobs(slot);
            if self.calls[slot]
                .as_ref()
                .is_some_and(|c| c.result().is_some())
            {
                self.reap(slot);
            }
        }
    }

    fn on_agent_done(&mut self, i: usize, d: Done) {
        let a = &mut self.answerers[i];
        let before = a.remote();
        match d {
            Done::Answered {
                status,
                location,
                body,
                at,
                ..
            } => a.on_answer(status, location, &body, at, &mut self.measure),
            Done::Deleted { status, .. } => a.on_deleted(status, clock::now(), &mut self.measure),
        }
        self.agent_moved(i, before);
        self.take_agent_jobs(i);
    }

    /// Keeps `by_port` pointing at answerer `i`'s call.
    fn agent_moved(&mut self, i: usize, before: Option<SocketAddr>) {
        let now = self.answerers[i].remote();
        if before == now {
            return;
        }
        if let Some(b) = before
            && self.by_port[b.port() as usize] == AGENT | i as u32
        {
            self.by_port[b.port() as usize] = 0;
        }
        if let Some(n) = now {
            self.by_port[n.port() as usize] = AGENT | i as u32;
        }
    }

    /// The offer or DELETE answerer `i` wants sent.
    fn take_agent_jobs(&mut self, i: usize) {
        let (Some(signal), Some(plan)) = (&self.signal, &self.answer) else {
            return;
        };
        let a = &mut self.answerers[i];
        if let Some(offer) = a.take_post() {
            signal.send(Job::Post {
                call_id: a.id.clone(),
                path: format!("/api/v1/queues/{}/answer", plan.queue),
                offer,
            });
        }
        if let Some(location) = a.take_delete() {
            signal.send(Job::Delete {
                call_id: a.id.clone(),
                location,
            });
        }
    }

    /// A DELETE the caller in `slot` wants sent.
    fn take_whip_jobs(&mut self, slot: usize) {
        let (Some(signal), Some(caller)) = (&self.signal, self.calls[slot].as_mut()) else {
            return;
        };
        if let Some(location) = caller.take_delete() {
            signal.send(Job::Delete {
                call_id: caller.call_id.clone(),
                location,
            });
        }
    }

    fn flush_sip(&mut self) {
        match &mut self.sip {
            SipConn::Udp(sock, _) => {
                for m in self.sip_out.drain(..) {
                    if sock.send_to(&m, self.ep.server).is_err() {
                        self.measure.send_errors += 1;
                    }
                }
            }
            SipConn::Tcp { stream, outbuf, .. } => {
                for m in self.sip_out.drain(..) {
                    outbuf.extend_from_slice(&m);
                }
                while !outbuf.is_empty() {
                    match stream.write(outbuf) {
                        Ok(0) => break,
                        Ok(n) => {
                            outbuf.drain(..n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            self.measure.send_errors += 1;
                            outbuf.clear();
                        }
                    }
                }
            }
        }
    }

    fn tick(&mut self, now: Nanos) {
        // Everything the server sent since the last tick, each with its kernel arrival time.
        loop {
            let n = self.rtp_in.recv(&self.rtp).unwrap_or_default();
            if n == 0 {
                break;
            }
            for i in 0..n {
                let Some(d) = self.rtp_in.get(i) else {
                    continue;
                };
                let slot = self.by_port[d.from.port() as usize];
                if slot == 0 {
                    continue;
                }
                if slot & AGENT != 0 {
                    if let Some(a) = self.answerers.get_mut((slot & !AGENT) as usize)
                        && a.remote() == Some(d.from)
                    {
                        a.on_datagram(d.from, d.data, d.at);
                    }
                    continue;
                }
                let Some(caller) = self.calls[slot as usize - 1].as_mut() else {
                    continue;
                };
                if caller.remote_rtp() != Some(d.from) {
                    continue;
                }
                if caller.is_web() {
                    caller.on_web_datagram(d.from, d.data, d.at, &self.plans, &mut self.measure);
                } else if let Ok(pkt) = RtpPacket::parse(d.data) {
                    caller.on_rtp(&pkt, d.at, &self.plans, &mut self.measure);
                }
            }
        }
        let mut buf = [0u8; 1500];
        while self.rtcp.recv_from(&mut buf).is_ok() {} // RTCP reports: not measured
        for slot in 0..self.calls.len() {
            let Some(caller) = self.calls[slot].as_mut() else {
                continue;
            };
            caller.on_tick(
                now,
                &self.plans,
                &self.ep,
                &mut self.sip_out,
                &mut self.rtp_out,
                &mut self.measure,
            );
            self.take_whip_jobs(slot);
            if self.calls[slot]
                .as_ref()
                .is_some_and(|c| c.result().is_some())
            {
                self.reap(slot);
            }
        }
        if let Some(plan) = self.answer.clone() {
            for i in 0..self.answerers.len() {
                let before = self.answerers[i].remote();
                self.answerers[i].on_tick(now, &plan, &mut self.rtp_out, &mut self.measure);
                self.agent_moved(i, before);
                self.take_agent_jobs(i);
            }
        }
        self.flush_sip();
        self.measure.send_errors += self.rtp_out.flush(&self.rtp) as u64;
    }

    fn reap(&mut self, slot: usize) {
        let Some(caller) = self.calls[slot].take() else {
            return;
        };
        let result = caller.result().cloned().unwrap_or(Ok(()));
        self.measure.call_ended(&result, caller.stream());
        if let Some(remote) = caller.remote_rtp()
            && self.by_port[remote.port() as usize] == slot as u32 + 1
        {
            self.by_port[remote.port() as usize] = 0;
        }
        self.by_call_id.remove(&caller.call_id);
        self.free.push(slot);
        self.live.active.fetch_sub(1, Ordering::Relaxed);
        if result.is_ok() {
            self.live.passed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.live.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
