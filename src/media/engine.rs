//! The media clock: a few OS threads, each running one 20 ms tick for every leg it owns.
//!
//! Per tick and leg: drain the RTP/RTCP sockets without blocking, run the leg core, send
//! its packet. There is no timer, task or wake-up per call: a thread sleeps once per tick
//! whatever the number of calls, which is what lets one core carry thousands of calls
//! (DESIGN.md, performance). Dedicated threads rather than tokio tasks keep the 20 ms
//! schedule away from signaling and HTTP work on the async runtime.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc as tokio_mpsc;

use super::bridge::Relay;
use super::codec::CodecError;
use super::conference::Conference;
use super::leg::{LegCommand, LegEvent, LegOptions, LegParams, LegSummary, MediaLeg};
use super::ports::{PortAllocator, RtpSockets};
use super::prompt::Silence;
use super::srtp::{SrtpError, SrtpKeys, SrtpTransport};
use super::webrtc::{TransportState, WEBRTC_PEER, WebRtcTransport};
use crate::metrics::Metrics;

const TICK: Duration = Duration::from_millis(20);
/// Packets read from one socket per tick at most: a flood on one call cannot starve others.
const MAX_READS_PER_TICK: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("no free RTP port pair in {lo}-{hi}")]
    PortsExhausted { lo: u16, hi: u16 },
    #[error("RTP socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Srtp(#[from] SrtpError),
    #[error("the media engine has stopped")]
    Stopped,
    /// A leg to be bridged has already been taken off the clock (its call ended).
    #[error("the leg has ended")]
    LegGone,
}

enum WorkerMsg {
    Add(Box<Slot>),
    Command(u64, LegCommand),
    Remove(u64, tokio::sync::oneshot::Sender<LegSummary>),
    /// Hands a leg over to another media clock (to run beside the leg it is bridged to).
    Take(u64, tokio::sync::oneshot::Sender<Option<Box<Slot>>>),
    /// Joins two legs of this clock both ways.
    Bridge(
        u64,
        u64,
        tokio::sync::oneshot::Sender<Result<(), MediaError>>,
    ),
    /// Parts a leg from its peer, or takes it out of its conference (it goes back to its own
    /// prompts and silence).
    Unbridge(u64),
    /// Puts the second leg in conference with the first (see [`super::conference`]): in the
    /// first's conference, or in a new one with the first and whoever it is bridged to.
    Join(
        u64,
        u64,
        tokio::sync::oneshot::Sender<Result<(), MediaError>>,
    ),
    /// A browser leg's new peer connection (the browser reconnected) and the parameters it
    /// negotiated: the old connection is dropped, the media leg goes on.
    Reconnect(u64, Box<WebRtcTransport>, LegParams),
}

struct Slot {
    id: u64,
    leg: MediaLeg,
    sockets: RtpSockets,
    /// A browser leg's peer connection: RTP reaches the leg through it, and everything on the
    /// socket (STUN, DTLS, SRTP, SRTCP) goes to it. `None` for an RTP leg.
    webrtc: Option<Box<WebRtcSlot>>,
    events: tokio_mpsc::UnboundedSender<LegEvent>,
    /// The leg this one is bridged to (on the same clock).
    peer: Option<u64>,
    /// The conference this leg is in (on the same clock), instead of a bridge.
    room: Option<u64>,
    /// SDES-keyed SRTP on an RTP leg (`LegParams::srtp`): what the leg sends is protected
    /// here and what arrives is checked and decrypted before the leg sees it, so a packet
    /// that fails its tag never moves the leg's latched address.
    srtp: Option<Box<SrtpTransport>>,
    /// SRTP packets this leg refused (only the first is logged).
    srtp_refusals: u64,
}

/// A bridged leg's next payload from its peer, handed over within the clock's tick.
#[derive(Default)]
struct Mail {
    payload: Vec<u8>,
    full: bool,
}

struct WebRtcSlot {
    peer: WebRtcTransport,
    /// The last state reported to the call, so each change is reported once.
    reported: TransportState,
}

struct Worker {
    tx: mpsc::Sender<WorkerMsg>,
    thread: Option<JoinHandle<()>>,
}

pub struct MediaEngine {
    workers: Vec<Worker>,
    next_worker: AtomicUsize,
    next_id: std::sync::atomic::AtomicU64,
    ports: PortAllocator,
    silence: Arc<Silence>,
    metrics: Arc<Metrics>,
}

impl MediaEngine {
    /// Starts `threads` media clocks (0 = one per core).
    pub fn start(
        threads: usize,
        ports: PortAllocator,
        silence: Arc<Silence>,
        metrics: Arc<Metrics>,
    ) -> MediaEngine {
        let n = if threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            threads
        };
        let workers = (0..n)
            .map(|i| {
                let (tx, rx) = mpsc::channel();
                let metrics = metrics.clone();
                let thread = std::thread::Builder::new()
                    .name(format!("media-{i}"))
                    .spawn(move || run_worker(rx, metrics))
                    .ok();
                Worker { tx, thread }
            })
            .collect();
        MediaEngine {
            workers,
            next_worker: AtomicUsize::new(0),
            next_id: std::sync::atomic::AtomicU64::new(1),
            ports,
            silence,
            metrics,
        }
    }

    /// Reserves an RTP/RTCP port pair on `ip` for a leg about to be negotiated.
    pub fn reserve(&self, ip: IpAddr) -> Result<RtpSockets, MediaError> {
        self.ports.allocate(ip)
    }

    /// Puts a negotiated leg on a media clock (round-robin across threads).
    pub fn open(
        &self,
        sockets: RtpSockets,
        params: LegParams,
        opts: LegOptions,
    ) -> Result<LegHandle, MediaError> {
        self.open_leg(sockets, params, opts, None, LegIds::random())
    }

    /// Puts a browser leg on a media clock: its peer connection (answered with
    /// [`WebRtcTransport::answer`] for the same `sockets` and `ids.ssrc`) carries the media
    /// leg's RTP. The leg reports [`LegEvent::Connected`] when DTLS is done and
    /// [`LegEvent::ConnectionLost`] if it fails or the browser goes away.
    pub fn open_webrtc(
        &self,
        sockets: RtpSockets,
        peer: WebRtcTransport,
        params: LegParams,
        opts: LegOptions,
        ids: LegIds,
    ) -> Result<LegHandle, MediaError> {
        let slot = WebRtcSlot {
            reported: peer.state(),
            peer,
        };
        self.open_leg(sockets, params, opts, Some(Box::new(slot)), ids)
    }

    fn open_leg(
        &self,
        sockets: RtpSockets,
        params: LegParams,
        opts: LegOptions,
        webrtc: Option<Box<WebRtcSlot>>,
        ids: LegIds,
    ) -> Result<LegHandle, MediaError> {
        let ids = (ids.ssrc, ids.sequence, ids.timestamp);
        let srtp = match &params.srtp {
            Some(keys) => Some(Box::new(SrtpTransport::new(keys.clone())?)),
            None => None,
        };
        let leg = MediaLeg::new(params, opts, self.silence.clone(), ids, now_ms())?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (events_tx, events) = tokio_mpsc::unbounded_channel();
        let local_port = sockets.port;
        let w = self.next_worker.fetch_add(1, Ordering::Relaxed) % self.workers.len().max(1);
        let worker = self.workers.get(w).ok_or(MediaError::Stopped)?;
        worker
            .tx
            .send(WorkerMsg::Add(Box::new(Slot {
                id,
                leg,
                sockets,
                webrtc,
                events: events_tx,
                peer: None,
                room: None,
                srtp,
                srtp_refusals: 0,
            })))
            .map_err(|_| MediaError::Stopped)?;
        self.metrics.media_legs.inc();
        Ok(LegHandle {
            id,
            worker_index: w,
            worker: worker.tx.clone(),
            events,
            local_port,
            metrics: self.metrics.clone(),
            closed: false,
        })
    }

    /// Joins two legs both ways (see [`super::bridge`]): what `a` receives `b` sends, and
    /// the other way round, each transcoded only if their codecs differ; a prompt played on
    /// either (hold music, a whisper) takes the place of the peer's audio while it plays.
    /// `b` moves to `a`'s media clock first if it ran on another, so a bridge's two legs are
    /// ticked together. A leg bridged elsewhere is parted from its old peer.
    pub async fn bridge(&self, a: &LegHandle, b: &mut LegHandle) -> Result<(), MediaError> {
        self.beside(a, b).await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        a.worker
            .send(WorkerMsg::Bridge(a.id, b.id, tx))
            .map_err(|_| MediaError::Stopped)?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// Puts `leg` in conference with `anchor` (see [`super::conference`]): everyone in it
    /// hears everyone but themselves. `anchor`'s conference if it is in one; otherwise a new
    /// one with `anchor` and the leg it is bridged to, if any (a two-way call becomes a
    /// three-way one). `leg` leaves its own bridge or conference first. A muted leg
    /// ([`LegCommand::Mute`]) is heard by nobody and hears everyone: listening in.
    pub async fn join(&self, anchor: &LegHandle, leg: &mut LegHandle) -> Result<(), MediaError> {
        self.beside(anchor, leg).await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        anchor
            .worker
            .send(WorkerMsg::Join(anchor.id, leg.id, tx))
            .map_err(|_| MediaError::Stopped)?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// Moves `b` to `a`'s media clock if it runs on another, so that the two are ticked
    /// together.
    async fn beside(&self, a: &LegHandle, b: &mut LegHandle) -> Result<(), MediaError> {
        if a.worker_index != b.worker_index {
            let (tx, rx) = tokio::sync::oneshot::channel();
            b.worker
                .send(WorkerMsg::Take(b.id, tx))
                .map_err(|_| MediaError::Stopped)?;
            let slot = rx.await.map_err(|_| MediaError::Stopped)?;
            let slot = slot.ok_or(MediaError::LegGone)?;
            let target = self
                .workers
                .get(a.worker_index)
                .ok_or(MediaError::Stopped)?;
            target
                .tx
                .send(WorkerMsg::Add(slot))
                .map_err(|_| MediaError::Stopped)?;
            b.worker = target.tx.clone();
            b.worker_index = a.worker_index;
        }
        Ok(())
    }

    /// Stops every media clock (after the last call ended).
    pub fn shutdown(&mut self) {
        for w in &mut self.workers {
            let (tx, _) = mpsc::channel();
            w.tx = tx; // dropping the only sender ends the worker loop
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// A leg's first RTP sequence number and timestamp (random, RFC 3550 §5.1) and its SSRC; a
/// browser leg's peer connection must know the SSRC before the leg exists.
#[derive(Debug, Clone, Copy)]
pub struct LegIds {
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
}

impl LegIds {
    pub fn random() -> LegIds {
        LegIds {
            ssrc: rand::random(),
            sequence: rand::random(),
            timestamp: rand::random(),
        }
    }
}

/// The call task's end of a leg.
pub struct LegHandle {
    id: u64,
    worker_index: usize,
    worker: mpsc::Sender<WorkerMsg>,
    events: tokio_mpsc::UnboundedReceiver<LegEvent>,
    pub local_port: u16,
    metrics: Arc<Metrics>,
    closed: bool,
}

impl LegHandle {
    pub fn command(&self, cmd: LegCommand) {
        // The worker only goes away at shutdown, when calls are being torn down anyway.
        let _ = self.worker.send(WorkerMsg::Command(self.id, cmd));
    }

    /// Parts this leg from the leg it is bridged to, if any; both go back to their own
    /// prompts and silence.
    pub fn unbridge(&self) {
        let _ = self.worker.send(WorkerMsg::Unbridge(self.id));
    }

    /// The next event from the leg; pending forever once the leg is closed.
    pub async fn next_event(&mut self) -> Option<LegEvent> {
        self.events.recv().await
    }

    /// The next event, polled by hand: a task that owns many legs (a room) waits on all of
    /// them at once without a task per leg.
    pub fn poll_event(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<LegEvent>> {
        self.events.poll_recv(cx)
    }

    /// Gives a browser leg a new peer connection (answered with [`WebRtcTransport::answer`]
    /// on the same socket and SSRC) in place of its old one: the browser came back after a
    /// reload. The media leg (what plays, the bridge, the recording) goes on; it reports
    /// [`LegEvent::Connected`] when the new connection is up. Nothing happens for an RTP leg.
    pub fn reconnect(&self, peer: WebRtcTransport, params: LegParams) {
        let _ = self
            .worker
            .send(WorkerMsg::Reconnect(self.id, Box::new(peer), params));
    }

    /// Takes the leg off the clock, frees its ports and returns what it measured.
    pub async fn close(mut self) -> LegSummary {
        self.closed = true;
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.worker.send(WorkerMsg::Remove(self.id, tx)).is_err() {
            return LegSummary::default();
        }
        rx.await.unwrap_or_default()
    }
}

impl Drop for LegHandle {
    fn drop(&mut self) {
        if !self.closed {
            let (tx, _) = tokio::sync::oneshot::channel();
            let _ = self.worker.send(WorkerMsg::Remove(self.id, tx));
        }
        self.metrics.media_legs.dec();
    }
}

/// Milliseconds on a monotonic clock shared by all media threads.
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// RFC 3550 §4 NTP timestamp (for RTCP sender reports).
fn ntp_now() -> u64 {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    super::rtcp::ntp_from_unix(d.as_secs(), d.subsec_nanos())
}

/// Puts the calling media clock at real-time priority (SCHED_RR), where the process may (root
/// or CAP_SYS_NICE), as Asterisk (`-p`) and FreeSWITCH (`-rp`) do for their timing threads:
/// other work on the machine (builds, backups, a load generator) then cannot make a tick late.
/// The thread sleeps every tick, and the kernel keeps 5 % of each core for normal threads
/// (`sched_rt_runtime_us`), so an overloaded clock cannot lock the machine up.
fn raise_priority() -> bool {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: pthread_self is always valid; the parameter struct outlives the call.
    unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_RR, &param) == 0 }
}

fn run_worker(rx: mpsc::Receiver<WorkerMsg>, metrics: Arc<Metrics>) {
    if raise_priority() {
        tracing::debug!("media clock at real-time priority");
    } else {
        tracing::debug!("media clock at normal priority (no permission for real-time)");
    }
    let mut slots: Vec<Slot> = Vec::new();
    let mut mail: HashMap<u64, Mail> = HashMap::new();
    let mut rooms: Vec<Conference> = Vec::new();
    let mut recv_buf = vec![0u8; 2048];
    let mut send_buf = Vec::with_capacity(1500);
    let mut rtcp_buf = vec![0u8; 1500];
    // Decrypted SRTP and protected SRTCP on their way (SRTP legs only).
    let mut plain_buf = Vec::with_capacity(1500);
    let mut next_tick = Instant::now();
    let mut tick_count: u64 = 0;
    loop {
        if let Some(wait) = next_tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        // Control messages after the sleep, right before the tick: a play command sent while
        // the thread slept (the call's answer to a digit read in the last tick) takes effect
        // in this tick, not one tick later (measured: 20 ms off every DTMF response).
        loop {
            match rx.try_recv() {
                Ok(msg) => apply(msg, &mut slots, &mut rooms, &mut mail),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let late = Instant::now().saturating_duration_since(next_tick);
        if late > TICK * 5 {
            // Hopelessly behind (suspended, overloaded): resynchronize rather than burst.
            metrics.media_ticks_late.inc();
            next_tick = Instant::now();
        } else if late > TICK {
            metrics.media_ticks_late.inc();
        }
        next_tick += TICK;
        tick_count += 1;
        let now_ms = now_ms();
        let tick_at = Instant::now();
        let poll_rtcp = tick_count.is_multiple_of(10); // RTCP is every few seconds: look every 200 ms
        let ntp = if poll_rtcp { ntp_now() } else { 0 };
        let mut sent = 0u64;
        let mut received = 0u64;
        let mut invalid = 0u64;
        // SRTP and SRTCP packets refused this tick.
        let mut srtp_refused = (0u64, 0u64);
        for i in 0..slots.len() {
            // Two visits ahead, the leg itself; one ahead, the buffers it points to (its
            // pointers are in cache by then). See `prefetch`.
            if let Some(ahead) = slots.get(i + 2) {
                super::prefetch::value(ahead);
            }
            if let Some(next) = slots.get(i + 1) {
                next.leg.prefetch_buffers();
            }
            let slot = &mut slots[i];
            if (slot.peer.is_some() || slot.room.is_some())
                && let Some(m) = mail.get_mut(&slot.id)
                && std::mem::take(&mut m.full)
            {
                slot.leg.set_bridge_input(&m.payload);
            }
            if let Some(web) = slot.webrtc.as_deref_mut() {
                let (s, r, bad) = tick_webrtc(
                    web,
                    &mut slot.leg,
                    &slot.sockets,
                    &slot.events,
                    tick_at,
                    now_ms,
                    &mut recv_buf,
                    &mut send_buf,
                );
                sent += s;
                received += r;
                invalid += bad;
                pass_on(slot, &mut rooms, &mut mail);
                continue;
            }
            for _ in 0..MAX_READS_PER_TICK {
                match slot.sockets.rtp.recv_from(&mut recv_buf) {
                    Ok((n, from)) => match slot.srtp.as_deref_mut() {
                        None => slot.leg.on_rtp(&recv_buf[..n], from, now_ms),
                        Some(srtp) => match srtp.unprotect_rtp(&recv_buf[..n], &mut plain_buf) {
                            Ok(()) => slot.leg.on_rtp(&plain_buf, from, now_ms),
                            Err(e) => {
                                srtp_refused.0 += 1;
                                first_refusal(&mut slot.srtp_refusals, &e, "rtp");
                            }
                        },
                    },
                    Err(_) => break, // WouldBlock: drained (other errors: ICMP noise, retry next tick)
                }
            }
            if poll_rtcp {
                for _ in 0..4 {
                    match slot.sockets.rtcp.recv_from(&mut recv_buf) {
                        Ok((n, _)) => match slot.srtp.as_deref_mut() {
                            None => slot.leg.on_rtcp(&recv_buf[..n], now_ms),
                            Some(srtp) => match srtp.unprotect_rtcp(&recv_buf[..n], &mut plain_buf)
                            {
                                Ok(()) => slot.leg.on_rtcp(&plain_buf, now_ms),
                                Err(e) => {
                                    srtp_refused.1 += 1;
                                    first_refusal(&mut slot.srtp_refusals, &e, "rtcp");
                                }
                            },
                        },
                        Err(_) => break,
                    }
                }
                if let Some((len, dest)) = slot.leg.poll_rtcp(now_ms, ntp, &mut rtcp_buf) {
                    let report = &rtcp_buf[..len];
                    match slot.srtp.as_deref_mut() {
                        None => {
                            let _ = slot.sockets.rtcp.send_to(report, dest);
                        }
                        Some(srtp) => {
                            if srtp.protect_rtcp(report, &mut plain_buf).is_ok() {
                                let _ = slot.sockets.rtcp.send_to(&plain_buf, dest);
                            }
                        }
                    }
                }
            }
            if let Some(dest) = slot.leg.on_tick(now_ms, &mut send_buf) {
                let protected = match slot.srtp.as_deref_mut() {
                    None => true,
                    Some(srtp) => srtp.protect_rtp(&mut send_buf).is_ok(),
                };
                if protected {
                    let _ = send_to(&slot.sockets.rtp, &send_buf, dest);
                }
            }
            while let Some(ev) = slot.leg.poll_event() {
                let _ = slot.events.send(ev);
            }
            pass_on(slot, &mut rooms, &mut mail);
            let c = slot.leg.take_counters();
            sent += c.sent;
            received += c.received;
            invalid += c.invalid;
        }
        // Each conference's mixes, for its members' packets of the next tick.
        for room in &mut rooms {
            room.mix(|id, payload| {
                let m = mail.entry(id).or_default();
                m.payload.clear();
                m.payload.extend_from_slice(payload);
                m.full = true;
            });
            // Who talks, told to the talker's own leg (a room shows it).
            while let Some((id, talking)) = room.poll_talking() {
                if let Some(slot) = slots.iter().find(|s| s.id == id) {
                    let _ = slot.events.send(LegEvent::Talking(talking));
                }
            }
        }
        metrics.rtp_packets_sent.inc_by(sent);
        metrics.rtp_packets_received.inc_by(received);
        metrics.rtp_packets_invalid.inc_by(invalid);
        for (kind, n) in [("rtp", srtp_refused.0), ("rtcp", srtp_refused.1)] {
            if n > 0 {
                metrics
                    .srtp_packets_refused
                    .get_or_create(&vec![("kind", kind)])
                    .inc_by(n);
            }
        }
    }
}

/// One tick of a browser leg: datagrams to the peer connection, decrypted RTP to the leg,
/// the leg's packet out through the peer connection, its timers, and what it sends onto the
/// socket. Returns the RTP packets sent, received and refused, for the engine's counters.
#[allow(clippy::too_many_arguments)]
fn tick_webrtc(
    web: &mut WebRtcSlot,
    leg: &mut MediaLeg,
    sockets: &RtpSockets,
    events: &tokio_mpsc::UnboundedSender<LegEvent>,
    now: Instant,
    now_ms: u64,
    recv_buf: &mut [u8],
    send_buf: &mut Vec<u8>,
) -> (u64, u64, u64) {
    // Control traffic (DTLS flights, consent checks) comes in bursts: allow a few more reads
    // than an RTP leg's, still bounded so one peer cannot starve the clock.
    for _ in 0..MAX_READS_PER_TICK * 2 {
        match sockets.rtp.recv_from(recv_buf) {
            Ok((n, from)) => web.peer.on_datagram(now, from, &recv_buf[..n]),
            Err(_) => break,
        }
    }
    while let Some(rtp) = web.peer.poll_rtp() {
        leg.on_rtp(&rtp, WEBRTC_PEER, now_ms);
    }
    web.peer.on_timeout(now);
    if leg.on_tick(now_ms, send_buf).is_some() {
        web.peer.send_rtp(now, send_buf);
    }
    while let Some((dest, datagram)) = web.peer.poll_transmit() {
        let _ = sockets.rtp.send_to(&datagram, dest);
    }
    let state = web.peer.state();
    if state != web.reported {
        web.reported = state;
        match state {
            TransportState::Connected => {
                let _ = events.send(LegEvent::Connected);
            }
            TransportState::Disconnected => {
                let _ = events.send(LegEvent::Disconnected);
            }
            // Failed: ICE or DTLS failed, or consent expired. Closed: the browser closed its
            // DTLS session (a page's pc.close()).
            TransportState::Failed | TransportState::Closed => {
                let _ = events.send(LegEvent::ConnectionLost);
            }
            _ => {}
        }
    }
    while let Some(ev) = leg.poll_event() {
        let _ = events.send(ev);
    }
    let c = leg.take_counters();
    (c.sent, c.received, c.invalid)
}

/// A bridged leg's audio of this tick, to its peer's mailbox (the peer sends it in this tick
/// if it comes later in the round, else in the next); a conference member's, to its
/// conference (mixed at the end of the tick).
fn pass_on(slot: &mut Slot, rooms: &mut [Conference], mail: &mut HashMap<u64, Mail>) {
    if let Some(room) = slot.room {
        if let Some(payload) = slot.leg.bridge_output()
            && let Some(room) = rooms.iter_mut().find(|r| r.id() == room)
        {
            room.push(slot.id, payload);
        }
        return;
    }
    if let Some(peer) = slot.peer
        && let Some(payload) = slot.leg.bridge_output()
    {
        let m = mail.entry(peer).or_default();
        m.payload.clear();
        m.payload.extend_from_slice(payload);
        m.full = true;
    }
}

/// Gives two legs of this clock each a relay towards the other, for their current codecs.
fn link(slots: &mut [Slot], a: u64, b: u64) -> Result<(), MediaError> {
    let find = |id: u64| slots.iter().position(|s| s.id == id);
    let (Some(ia), Some(ib)) = (find(a), find(b)) else {
        return Err(MediaError::LegGone);
    };
    if ia == ib {
        return Err(MediaError::LegGone);
    }
    let (pa, pb) = (
        slots[ia].leg.params().clone(),
        slots[ib].leg.params().clone(),
    );
    let to_b = Relay::new(pa.codec, pa.ptime_ms, pb.codec)?;
    let to_a = Relay::new(pb.codec, pb.ptime_ms, pa.codec)?;
    for (i, peer, relay) in [(ia, b, to_b), (ib, a, to_a)] {
        let slot = &mut slots[i];
        slot.peer = Some(peer);
        slot.leg.handle_command(LegCommand::Relay(Some(relay)))?;
    }
    Ok(())
}

/// Parts `id` from its peer, if it has one on this clock.
fn unlink(slots: &mut [Slot], mail: &mut HashMap<u64, Mail>, id: u64) {
    let Some(slot) = slots.iter_mut().find(|s| s.id == id) else {
        return;
    };
    let peer = slot.peer.take();
    let _ = slot.leg.handle_command(LegCommand::Relay(None));
    mail.remove(&id);
    if let Some(peer) = peer
        && let Some(other) = slots.iter_mut().find(|s| s.id == peer)
    {
        other.peer = None;
        let _ = other.leg.handle_command(LegCommand::Relay(None));
        mail.remove(&peer);
    }
}

/// A re-INVITE's keys (see [`SrtpTransport::update`]). Keys that do not build (the SDP code
/// checked their lengths, so this does not happen) keep the old transport: the leg never
/// falls back to sending in clear.
fn rekey(slot: &mut Slot, keys: Option<&SrtpKeys>) {
    let result = match (slot.srtp.as_deref_mut(), keys) {
        (_, None) => {
            slot.srtp = None;
            Ok(())
        }
        (Some(transport), Some(keys)) => transport.update(keys.clone()),
        (None, Some(keys)) => SrtpTransport::new(keys.clone()).map(|t| {
            slot.srtp = Some(Box::new(t));
        }),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "SRTP keys of a re-offer refused");
    }
}

/// Logs a leg's first refused SRTP packet (a wrong key shows at once; a flood is counted in
/// the metric, not logged).
fn first_refusal(count: &mut u64, error: &SrtpError, kind: &str) {
    *count += 1;
    if *count == 1 {
        tracing::debug!(error = %error, kind, "first SRTP packet refused on this leg");
    }
}

fn send_to(socket: &UdpSocket, buf: &[u8], dest: SocketAddr) -> std::io::Result<usize> {
    socket.send_to(buf, dest)
}

fn apply(
    msg: WorkerMsg,
    slots: &mut Vec<Slot>,
    rooms: &mut Vec<Conference>,
    mail: &mut HashMap<u64, Mail>,
) {
    match msg {
        WorkerMsg::Add(slot) => slots.push(*slot),
        WorkerMsg::Command(id, cmd) => {
            let renegotiated = matches!(cmd, LegCommand::Update(_));
            let Some(slot) = slots.iter_mut().find(|s| s.id == id) else {
                return;
            };
            let codec = slot.leg.params().codec;
            if let LegCommand::Update(params) = &cmd {
                rekey(slot, params.srtp.as_ref());
            }
            if let Err(e) = slot.leg.handle_command(cmd) {
                tracing::warn!(error = %e, "media command failed");
            }
            while let Some(ev) = slot.leg.poll_event() {
                let _ = slot.events.send(ev);
            }
            if renegotiated && slot.leg.params().codec != codec {
                follow_codec(slots, rooms, mail, id);
            }
        }
        WorkerMsg::Bridge(a, b, reply) => {
            leave(slots, rooms, mail, a);
            leave(slots, rooms, mail, b);
            let _ = reply.send(link(slots, a, b));
        }
        WorkerMsg::Join(anchor, id, reply) => {
            let _ = reply.send(join(slots, rooms, mail, anchor, id));
        }
        WorkerMsg::Unbridge(id) => leave(slots, rooms, mail, id),
        WorkerMsg::Reconnect(id, peer, params) => {
            let Some(slot) = slots.iter_mut().find(|s| s.id == id) else {
                return;
            };
            let Some(web) = slot.webrtc.as_deref_mut() else {
                return;
            };
            // The old connection's browser is gone (a reloaded page): it is told nothing.
            web.reported = peer.state();
            web.peer = *peer;
            let codec_changed = slot.leg.params().codec != params.codec;
            if let Err(e) = slot.leg.handle_command(LegCommand::Update(params)) {
                tracing::warn!(error = %e, "a reconnected browser's parameters were refused");
            }
            if codec_changed {
                follow_codec(slots, rooms, mail, id);
            }
        }
        WorkerMsg::Take(id, reply) => {
            leave(slots, rooms, mail, id);
            let slot = slots
                .iter()
                .position(|s| s.id == id)
                .map(|i| Box::new(slots.swap_remove(i)));
            let _ = reply.send(slot);
        }
        WorkerMsg::Remove(id, reply) => {
            leave(slots, rooms, mail, id);
            if let Some(i) = slots.iter().position(|s| s.id == id) {
                let slot = slots.swap_remove(i);
                if let Some(mut web) = slot.webrtc {
                    // The browser learns at once that the call is over (DTLS close_notify)
                    // rather than when its consent checks go unanswered.
                    web.peer.close();
                    while let Some((dest, datagram)) = web.peer.poll_transmit() {
                        let _ = slot.sockets.rtp.send_to(&datagram, dest);
                    }
                }
                let _ = reply.send(slot.leg.summary());
            }
        }
    }
}

/// A leg whose codec changed (a re-INVITE, a browser reconnected with another) needs relays
/// for its new codec: towards its bridged peer, or into its conference.
fn follow_codec(
    slots: &mut [Slot],
    rooms: &mut Vec<Conference>,
    mail: &mut HashMap<u64, Mail>,
    id: u64,
) {
    let Some(slot) = slots.iter_mut().find(|s| s.id == id) else {
        return;
    };
    let result = match (slot.peer, slot.room) {
        (Some(peer), _) => link(slots, id, peer),
        (None, Some(room)) => match rooms.iter_mut().find(|r| r.id() == room) {
            Some(room) => {
                let params = slot.leg.params();
                room.add(id, params.codec, params.ptime_ms)
                    .map_err(MediaError::from)
                    .and_then(|up| Ok(slot.leg.handle_command(LegCommand::Relay(Some(up)))?))
            }
            None => Ok(()),
        },
        (None, None) => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "bridge or conference could not follow a codec change");
        leave(slots, rooms, mail, id);
    }
}

/// Puts leg `id` in conference with `anchor`: in `anchor`'s conference, or in a new one with
/// `anchor` and the leg it was bridged to.
fn join(
    slots: &mut [Slot],
    rooms: &mut Vec<Conference>,
    mail: &mut HashMap<u64, Mail>,
    anchor: u64,
    id: u64,
) -> Result<(), MediaError> {
    let find = |slots: &[Slot], id: u64| slots.iter().position(|s| s.id == id);
    let (Some(ia), Some(_)) = (find(slots, anchor), find(slots, id)) else {
        return Err(MediaError::LegGone);
    };
    if anchor == id {
        return Err(MediaError::LegGone);
    }
    let existing = slots[ia]
        .room
        .filter(|r| rooms.iter().any(|c| c.id() == *r));
    if !existing.is_some_and(|r| slots.iter().any(|s| s.id == id && s.room == Some(r))) {
        leave(slots, rooms, mail, id);
    }
    let room = match existing {
        Some(room) => room,
        None => {
            // A new conference, named after its first leg, with the anchor and its peer.
            let peer = slots[ia].peer;
            unlink(slots, mail, anchor);
            rooms.push(Conference::new(anchor));
            let mut first = vec![anchor];
            first.extend(peer);
            for member in first {
                enter(slots, rooms, anchor, member)?;
            }
            anchor
        }
    };
    enter(slots, rooms, room, id)
}

/// Makes leg `id` a member of conference `room`: its relay into the conference.
fn enter(
    slots: &mut [Slot],
    rooms: &mut [Conference],
    room: u64,
    id: u64,
) -> Result<(), MediaError> {
    let slot = slots
        .iter_mut()
        .find(|s| s.id == id)
        .ok_or(MediaError::LegGone)?;
    let conference = rooms
        .iter_mut()
        .find(|r| r.id() == room)
        .ok_or(MediaError::LegGone)?;
    let params = slot.leg.params();
    let up = conference.add(id, params.codec, params.ptime_ms)?;
    slot.leg.handle_command(LegCommand::Relay(Some(up)))?;
    slot.room = Some(room);
    Ok(())
}

/// Takes leg `id` out of its bridge or its conference. A conference left with one member
/// ends: that member goes back to its own prompts and silence.
fn leave(slots: &mut [Slot], rooms: &mut Vec<Conference>, mail: &mut HashMap<u64, Mail>, id: u64) {
    unlink(slots, mail, id);
    let Some(slot) = slots.iter_mut().find(|s| s.id == id) else {
        return;
    };
    let Some(room) = slot.room.take() else {
        return;
    };
    let _ = slot.leg.handle_command(LegCommand::Relay(None));
    mail.remove(&id);
    let Some(i) = rooms.iter().position(|r| r.id() == room) else {
        return;
    };
    rooms[i].remove(id);
    if rooms[i].len() <= 1 {
        let last: Vec<u64> = rooms[i].members().collect();
        rooms.swap_remove(i);
        for id in last {
            if let Some(slot) = slots.iter_mut().find(|s| s.id == id) {
                slot.room = None;
                let _ = slot.leg.handle_command(LegCommand::Relay(None));
                mail.remove(&id);
            }
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
