//! The floor under the generator's CPU: what the kernel alone charges for the packets N
//! callers exchange over loopback, with no SIP, no audio and no recognition.
//!
//! One thread plays the generator with the same batched I/O as a worker (one socket,
//! `sendmmsg` to N destinations, `recvmmsg` with kernel timestamps); a second thread plays
//! the server (N sockets, one per call, read and written each tick). Every 20 ms each side
//! sends one 172-byte RTP-sized datagram per call. Printed: the generator thread's CPU (user
//! and system) in percent of one core, so a worker's measured CPU can be compared with what
//! its packets cost at the least.
//!
//! Two variants answer "would another way of sending be cheaper?": `--one-way` (the server
//! sends nothing back: what sending alone costs) and `--connected` (one connected socket per
//! call and one `send` each, the kernel skipping the route lookup and address copy per packet).
//!
//! `cargo run --release -p careline-loadtest --example loopback_floor -- [CALLS] [SECONDS]
//! [--one-way] [--connected]`

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use careline_loadtest::net::{RecvBatch, SendBatch, bind_udp};

const PACKET: usize = 172;

fn thread_cpu() -> (f64, f64) {
    // SAFETY: getrusage writes only the struct passed in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(ru.ru_utime), s(ru.ru_stime))
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let mut numbers = args.iter().filter_map(|a| a.parse::<u64>().ok());
    let calls = numbers.next().unwrap_or(2000) as usize;
    let secs = numbers.next().unwrap_or(10);
    let (one_way, connected) = (flag("--one-way"), flag("--connected"));
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let generator = bind_udp(SocketAddr::new(lo, 0), 16 << 20)?;
    let gen_addr = generator.local_addr()?;
    let server: Vec<UdpSocket> = (0..calls)
        .map(|_| bind_udp(SocketAddr::new(lo, 0), 1 << 16))
        .collect::<Result<_, _>>()?;
    let server_addrs: Vec<SocketAddr> = server
        .iter()
        .map(|s| s.local_addr())
        .collect::<Result<_, _>>()?;
    let per_call: Vec<UdpSocket> = if connected {
        server_addrs
            .iter()
            .map(|a| {
                let s = UdpSocket::bind(SocketAddr::new(lo, 0))?;
                s.connect(a)?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .collect::<std::io::Result<_>>()?
    } else {
        Vec::new()
    };
    let stop = Arc::new(AtomicBool::new(false));

    let stop_s = stop.clone();
    let srv = std::thread::spawn(move || {
        let payload = [0x80u8; PACKET];
        let mut buf = [0u8; 2048];
        let mut next = Instant::now();
        while !stop_s.load(Ordering::Relaxed) {
            for s in &server {
                while s.recv_from(&mut buf).is_ok() {}
                if !one_way {
                    let _ = s.send_to(&payload, gen_addr);
                }
            }
            next += Duration::from_millis(20);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    });

    let mut rx = RecvBatch::new(64, 1500);
    let mut tx = SendBatch::new();
    let mut received = 0u64;
    let start = Instant::now();
    let mut next = start;
    let mut cpu0 = None;
    while start.elapsed() < Duration::from_secs(secs + 1) {
        // The first second warms up (buffers, caches); it is not counted.
        if cpu0.is_none() && start.elapsed() >= Duration::from_secs(1) {
            cpu0 = Some((thread_cpu(), Instant::now(), received));
        }
        while let Ok(n) = rx.recv(&generator) {
            if n == 0 {
                break;
            }
            received += n as u64;
        }
        if connected {
            for s in &per_call {
                let _ = s.send(&[0x80u8; PACKET]);
            }
        } else {
            for dest in &server_addrs {
                tx.push_with(*dest, |b| b.extend_from_slice(&[0x80u8; PACKET]));
            }
            tx.flush(&generator);
        }
        next += Duration::from_millis(20);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = srv.join();
    let ((u0, s0), t0, r0) = cpu0.unwrap_or(((0.0, 0.0), start, 0));
    let (u1, s1) = thread_cpu();
    let wall = t0.elapsed().as_secs_f64();
    let pps = (received - r0) as f64 / wall;
    println!(
        "{calls} callers{}{}: generator thread user {:.1} % + system {:.1} % of a core \
         (sent {:.0} packets/s, received {:.0}/s)",
        if one_way { ", one way" } else { "" },
        if connected { ", connected sockets" } else { "" },
        100.0 * (u1 - u0) / wall,
        100.0 * (s1 - s0) / wall,
        calls as f64 * 50.0,
        pps,
    );
    Ok(())
}
