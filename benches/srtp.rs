//! What SDES-SRTP adds to the media clock per packet: one 20 ms PCMU packet (12-byte header,
//! 160 bytes of audio) protected on its way out and one checked and decrypted on its way in,
//! for each suite, as `media::srtp::SrtpTransport` does it on an RTP leg.
//!
//! `cargo bench --bench srtp` (CARELINE_BENCH_PACKETS=N per round, CARELINE_BENCH_ROUNDS=R).
//! The figure is the thread's own CPU time per packet, so it is the cipher work, the tag and
//! the copies, not the socket. Each round runs every suite in turn (interleaved, so a noisy
//! neighbour hits all of them alike); the median and the spread over rounds are printed.

use std::time::Duration;

use careline::media::srtp::{MasterKey, SrtpKeys, SrtpSuite, SrtpTransport};

mod support;
use support::{env, thread_cpu};

fn packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend((0..160).map(|i| (i * 7) as u8));
    p
}

/// Nanoseconds of thread CPU per packet: (protect, unprotect).
fn run(suite: SrtpSuite, packets: u64) -> (f64, f64) {
    let key = |seed: u8| MasterKey::new(&vec![seed; suite.master_len()]).expect("key");
    let mut careline = SrtpTransport::new(SrtpKeys {
        suite,
        local: key(1),
        remote: key(2),
    })
    .expect("keys");
    let mut phone = SrtpTransport::new(SrtpKeys {
        suite,
        local: key(2),
        remote: key(1),
    })
    .expect("keys");
    // The phone's packets, protected ahead of time (their cost is not Careline's).
    let incoming: Vec<Vec<u8>> = (0..packets)
        .map(|n| {
            let mut p = packet(n as u16);
            phone.protect_rtp(&mut p).expect("protect");
            p
        })
        .collect();
    let mut out = Vec::with_capacity(1500);
    let start = thread_cpu();
    for n in 0..packets {
        out.clear();
        out.extend_from_slice(&packet(n as u16));
        careline.protect_rtp(&mut out).expect("protect");
    }
    let protect = thread_cpu() - start;
    // Building the plain packet is part of the loop above; take it back out.
    let start = thread_cpu();
    for n in 0..packets {
        out.clear();
        out.extend_from_slice(&packet(n as u16));
    }
    let build = thread_cpu() - start;
    let mut plain = Vec::with_capacity(1500);
    let start = thread_cpu();
    for p in &incoming {
        careline.unprotect_rtp(p, &mut plain).expect("unprotect");
    }
    let unprotect = thread_cpu() - start;
    let per = |d: Duration| d.as_nanos() as f64 / packets as f64;
    (per(protect.saturating_sub(build)), per(unprotect))
}

fn main() {
    let packets = env("CARELINE_BENCH_PACKETS", 200_000);
    let rounds = env("CARELINE_BENCH_ROUNDS", 5);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!(
        "{cpu}, {} cores; {packets} packets of 172 bytes per suite per round, {rounds} rounds \
         (ns of thread CPU per packet)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut results: Vec<(SrtpSuite, Vec<f64>, Vec<f64>)> = SrtpSuite::ALL
        .iter()
        .map(|&s| (s, Vec::new(), Vec::new()))
        .collect();
    for round in 1..=rounds {
        for (suite, protect, unprotect) in &mut results {
            let (p, u) = run(*suite, packets);
            println!(
                "round {round} {:<24} protect {p:6.0}  unprotect {u:6.0}",
                suite.name()
            );
            protect.push(p);
            unprotect.push(u);
        }
    }
    println!(
        "{:<24} {:>22} {:>22}",
        "suite", "protect median (range)", "unprotect median (range)"
    );
    for (suite, protect, unprotect) in &mut results {
        let summary = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            format!("{:.0} ({:.0}-{:.0})", v[v.len() / 2], v[0], v[v.len() - 1])
        };
        println!(
            "{:<24} {:>22} {:>22}",
            suite.name(),
            summary(protect),
            summary(unprotect)
        );
    }
}
