//! Which WebRTC library should carry Careline's browser legs (issue 21)?
//!
//! Both candidates are sans-IO, so this measures exactly the work a Careline server would do per
//! browser leg, with no sockets in the way: N pairs of peer connections, each a *server* (ICE-lite,
//! the answerer, as Careline will be) and a *client* (the offerer, as a browser is), joined by an
//! in-memory wire. Every call into a server peer is timed, and every allocation made inside one
//! is counted (a tagging global allocator), so the client side, which a browser does in real
//! life, is left out of the server's numbers, although it shares the thread.
//!
//! Two phases, both on the real clock (DTLS and ICE retransmit on it):
//! 1. **Burst**: all N pairs are created at once and connect (ICE, DTLS, SRTP keys). Reported:
//!    how many connected within the 10 s a leg gets, the time until the last one did, and the
//!    server's CPU per handshake (offer parsing, answer, certificate, DTLS).
//! 2. **Audio**: every 20 ms each side sends one 160-byte PCMU frame (both directions, as a
//!    call), for the given seconds. Reported: the server's CPU per leg, in microseconds per
//!    second of call, its live heap per leg, frames lost, and how late the 20 ms ticks ran.
//!
//! Usage: `webrtc-choice str0m|rtc LEGS AUDIO_SECS`, or `webrtc-choice whip URL LEGS SECS`
//! (browser-like callers against a running Careline: see `whip.rs`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

mod rtc_peer;
mod str0m_peer;
mod whip;

/// Counts the bytes live in allocations made while a server peer was being called.
struct Tagging;

static SERVER_HEAP: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    static IN_SERVER: Cell<bool> = const { Cell::new(false) };
}

/// Each allocation carries a header saying whether a server call made it, so that memory a
/// server allocates and the harness frees (a datagram handed to the client) is uncounted right.
const HEADER: usize = 16;

fn widened(layout: Layout) -> Option<(Layout, usize)> {
    let align = layout.align().max(HEADER);
    let size = layout.size().checked_add(align)?;
    Layout::from_size_align(size, align)
        .ok()
        .map(|l| (l, align))
}

unsafe impl GlobalAlloc for Tagging {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some((wide, offset)) = widened(layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `wide` has a non-zero size (at least HEADER).
        let base = unsafe { System.alloc(wide) };
        if base.is_null() {
            return base;
        }
        let server = IN_SERVER.try_with(Cell::get).unwrap_or(false);
        if server {
            SERVER_HEAP.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: `offset` >= HEADER bytes lie before the returned pointer, inside the block.
        unsafe {
            let user = base.add(offset);
            *(user.sub(8) as *mut usize) = usize::from(server);
            user
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some((wide, offset)) = widened(layout) else {
            return;
        };
        // SAFETY: `ptr` came from `alloc` above with the same layout, so the tag and the base
        // are where `alloc` put them.
        unsafe {
            if *(ptr.sub(8) as *const usize) == 1 {
                SERVER_HEAP.fetch_sub(layout.size() as isize, Ordering::Relaxed);
            }
            System.dealloc(ptr.sub(offset), wide);
        }
    }
}

#[global_allocator]
static ALLOC: Tagging = Tagging;

thread_local! {
    static SERVER_CPU: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Runs `f` as server work: timed, and its allocations counted as the server's.
fn server<T>(f: impl FnOnce() -> T) -> T {
    IN_SERVER.with(|c| c.set(true));
    let t = Instant::now();
    let out = f();
    let spent = t.elapsed();
    IN_SERVER.with(|c| c.set(false));
    SERVER_CPU.with(|c| c.set(c.get() + spent));
    out
}

fn server_cpu() -> Duration {
    SERVER_CPU.with(Cell::get)
}

/// One side of a pair as the harness drives it. Every mutating call drains the peer's output
/// into its outbox (str0m requires that; for `rtc` it is the same loop).
pub trait Peer {
    fn receive(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, data: &[u8]);
    fn timeout(&mut self, now: Instant);
    fn send_frame(&mut self, now: Instant, seq: u16, frame: &[u8]);
    fn outbox(&mut self) -> Vec<Vec<u8>>;
    /// The outbox with each datagram's destination (for real sockets).
    fn outbox_to(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        let nowhere = SocketAddr::from(([0, 0, 0, 0], 0));
        self.outbox().into_iter().map(|d| (nowhere, d)).collect()
    }
    fn next_timeout(&self) -> Instant;
    fn connected(&self) -> bool;
    fn frames_received(&self) -> u64;
}

struct Pair {
    server: Box<dyn Peer>,
    client: Box<dyn Peer>,
    server_addr: SocketAddr,
    client_addr: SocketAddr,
}

/// Leg `i`'s addresses: any valid unicast pair will do, the wire is in memory.
fn addresses(i: usize) -> (SocketAddr, SocketAddr) {
    let hi = (i / 250) as u8;
    let lo = (i % 250) as u8 + 1;
    (
        SocketAddr::from(([10, 1, hi, lo], 20_000)),
        SocketAddr::from(([10, 2, hi, lo], 40_000)),
    )
}

impl Pair {
    /// Moves datagrams both ways and fires due timers until neither side has anything to say.
    fn pump(&mut self, now: Instant) {
        if now >= self.server.next_timeout() {
            server(|| self.server.timeout(now));
        }
        if now >= self.client.next_timeout() {
            self.client.timeout(now);
        }
        for _ in 0..100 {
            let to_client = self.server.outbox();
            let to_server = self.client.outbox();
            if to_client.is_empty() && to_server.is_empty() {
                return;
            }
            for d in to_client {
                self.client
                    .receive(now, self.server_addr, self.client_addr, &d);
            }
            for d in to_server {
                server(|| {
                    self.server
                        .receive(now, self.client_addr, self.server_addr, &d)
                });
            }
        }
    }

    fn next(&self) -> Instant {
        self.server.next_timeout().min(self.client.next_timeout())
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, url, legs, secs] = args.as_slice()
        && mode == "whip"
    {
        whip::run(
            url,
            legs.parse().expect("LEGS is a number"),
            secs.parse().expect("SECS is a number"),
        );
        return;
    }
    let (lib, legs, audio_secs) = match args.as_slice() {
        [_, lib, legs, secs] => (
            lib.as_str(),
            legs.parse::<usize>().expect("LEGS is a number"),
            secs.parse::<u64>().expect("AUDIO_SECS is a number"),
        ),
        _ => {
            eprintln!("usage: webrtc-choice str0m|rtc LEGS AUDIO_SECS");
            std::process::exit(2);
        }
    };
    let label = match lib {
        "str0m" => "str0m 0.25 (aws-lc-rs)",
        "rtc" => "rtc 0.21 (ring)",
        other => panic!("unknown library {other}: str0m or rtc"),
    };
    let rss0 = rss_kib();
    let start = Instant::now();
    let mut pairs: Vec<Pair> = (0..legs)
        .map(|i| {
            let (server_addr, client_addr) = addresses(i);
            let (server, client) = match lib {
                "str0m" => str0m_peer::pair(start, server_addr, client_addr),
                _ => rtc_peer::pair(start, server_addr, client_addr),
            };
            Pair {
                server,
                client,
                server_addr,
                client_addr,
            }
        })
        .collect();

    // Burst: every leg connects at once; a leg gets 10 s, as Careline's default will be.
    let deadline = start + Duration::from_secs(10);
    let mut all_connected = None;
    while Instant::now() < deadline {
        for p in &mut pairs {
            p.pump(Instant::now());
        }
        let done = pairs
            .iter()
            .filter(|p| p.server.connected() && p.client.connected())
            .count();
        if done == legs {
            all_connected = Some(start.elapsed());
            break;
        }
        let next = pairs.iter().map(Pair::next).min().unwrap_or(deadline);
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(5));
        std::thread::sleep(wait);
    }
    let connected = pairs
        .iter()
        .filter(|p| p.server.connected() && p.client.connected())
        .count();
    let handshake_cpu = server_cpu();
    let heap_connected = SERVER_HEAP.load(Ordering::Relaxed);

    // Audio: a 20 ms media clock, every leg sends and receives one frame per tick.
    let frame = [0xd5u8; 160];
    let ticks = audio_secs * 50;
    let audio_start = Instant::now();
    let cpu_before = server_cpu();
    let mut worst_late = Duration::ZERO;
    let mut late_sum = Duration::ZERO;
    for t in 0..ticks {
        let due = audio_start + Duration::from_millis(20 * t);
        let now = Instant::now();
        if now < due {
            std::thread::sleep(due - now);
        }
        let now = Instant::now();
        let late = now.saturating_duration_since(due);
        worst_late = worst_late.max(late);
        late_sum += late;
        for p in pairs.iter_mut().filter(|p| p.server.connected()) {
            let seq = t as u16;
            server(|| p.server.send_frame(now, seq, &frame));
            p.client.send_frame(now, seq, &frame);
            p.pump(now);
        }
    }
    // Let the last frames land.
    let end = Instant::now();
    for p in &mut pairs {
        p.pump(end);
    }
    let audio_wall = audio_start.elapsed();
    let audio_cpu = server_cpu() - cpu_before;
    let heap = SERVER_HEAP.load(Ordering::Relaxed);
    let rss = rss_kib();

    let sent = ticks * connected as u64;
    let at_server: u64 = pairs.iter().map(|p| p.server.frames_received()).sum();
    let at_client: u64 = pairs.iter().map(|p| p.client.frames_received()).sum();
    let per_leg = |x: f64| x / connected.max(1) as f64;

    println!("machine: {}", machine());
    println!("library: {label}");
    println!("legs: {legs}");
    println!(
        "connected: {connected}/{legs}{}",
        all_connected.map_or(" (not all within 10 s)".into(), |d| format!(
            " in {:.2} s",
            d.as_secs_f64()
        ))
    );
    println!(
        "server CPU per handshake: {:.2} ms",
        per_leg(handshake_cpu.as_secs_f64() * 1e3)
    );
    println!(
        "server heap per connected leg: {:.1} KiB",
        per_leg(heap_connected as f64 / 1024.0)
    );
    if ticks > 0 {
        println!(
            "server CPU per leg: {:.1} us per second of audio ({:.1} % of one core for all {connected})",
            per_leg(audio_cpu.as_secs_f64() * 1e6 / audio_wall.as_secs_f64()),
            audio_cpu.as_secs_f64() / audio_wall.as_secs_f64() * 100.0
        );
        println!(
            "server heap per leg after audio: {:.1} KiB",
            per_leg(heap as f64 / 1024.0)
        );
        println!("frames: sent {sent} each way, server got {at_server}, client got {at_client}");
        println!(
            "tick lateness: mean {:.2} ms, worst {:.2} ms",
            late_sum.as_secs_f64() * 1e3 / ticks as f64,
            worst_late.as_secs_f64() * 1e3
        );
    }
    println!(
        "process RSS: {} KiB -> {} KiB (both sides of every pair)",
        rss0, rss
    );
}
