//! What one media thread spends per call per 20 ms tick, with and without recording.
//!
//! `cargo bench --bench media_legs` (CARELINE_BENCH_LEGS=N, CARELINE_BENCH_SECONDS=S change
//! the population and the simulated call length, CARELINE_BENCH_ROUNDS=R the rounds of each,
//! CARELINE_BENCH_ONLY=none|recorded runs one side, say under `perf record`,
//! CARELINE_BENCH_PREFETCH=0 leaves out the media clock's cache hints). Half the calls
//! negotiate telephone-event (no receive path unless recorded), half send in-band DTMF
//! (decoded and filtered anyway), like the loadtest's two demo scenarios. Every caller streams
//! G.711 audio; every call plays a prompt. As the media clock does, each simulated 20 ms visits
//! every leg in turn: its caller's packet, then its tick, with the same cache hints for the
//! legs after it (`careline::media::prefetch`); time runs as fast as the thread can go.
//!
//! The figure is the media thread's own CPU time (`CLOCK_THREAD_CPUTIME_ID`), so it leaves
//! out the sockets (the same with and without recording) and shows what recording adds to
//! the per-tick work: the caller's audio reordered and copied into blocks, both sides handed
//! to the writers. The writer threads run for real (`wav` of a PCMU call stores the call's
//! µ-law bytes, encrypted, under a temporary folder); their CPU is reported per recorded
//! call-second, but unpaced they wake less often per second of audio than a live server's
//! do, so take their figure from `benches/recording-cost-hold.sh`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use careline::config::InbandDtmf;
use careline::keys::{KeyRing, Supplied};
use careline::media::codec::Codec;
use careline::media::leg::{LegCommand, LegOptions, LegParams, MediaLeg};
use careline::media::prefetch;
use careline::media::prompt::{Prompt, Silence};
use careline::media::recorder::LegRecording;
use careline::metrics::Metrics;
use careline::recording::index::Index;
use careline::recording::writer::{Opening, WriterPool, WriterSettings};
use careline::recording::{AudioFormat, Participants, RecordingId};
use careline::sip::sdp::TelephoneEvent;

mod support;
use support::{env, process_cpu, thread_cpu};

fn rtp(seq: u16, timestamp: u32, ssrc: u32, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0x80, 0]);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

struct Run {
    media: Duration,
    writers: Duration,
    leg_ticks: u64,
}

fn run(legs: usize, seconds: u64, record: bool, hints: bool, prompt: &Arc<Prompt>) -> Run {
    let dir = tempfile::tempdir().expect("temporary folder");
    let ring = Arc::new(KeyRing::open(dir.path(), Supplied::default()).expect("key ring"));
    let index = Arc::new(Index::open(dir.path()).expect("index"));
    let mut pool = WriterPool::start(
        2,
        50 * 60,
        WriterSettings {
            chunk_bytes: 64 * 1024,
            flush_every: Duration::from_secs(5),
            opus_complexity: 0,
        },
        ring,
        index,
        Arc::new(Metrics::new()),
    );
    let silence = Arc::new(Silence::new().expect("silence frames"));
    let far: SocketAddr = "127.0.0.1:40000".parse().expect("address");
    let mut calls: Vec<MediaLeg> = (0..legs)
        .map(|i| {
            let params = LegParams {
                codec: Codec::Pcmu,
                payload_type: 0,
                telephone_event: (i % 2 == 0).then_some(TelephoneEvent {
                    payload_type: 101,
                    clock_rate: 8000,
                }),
                remote_rtp: Some(far),
                remote_rtcp: None,
                send: true,
                receive: true,
                ptime_ms: 20,
                srtp: None,
            };
            let opts = LegOptions {
                inband: InbandDtmf::Auto,
                jitter_ms: 60,
                rtp_timeout_ms: 0,
                cname: format!("bench{i}"),
            };
            let mut leg = MediaLeg::new(params, opts, silence.clone(), (i as u32, 0, 0), 0)
                .expect("PCMU leg");
            leg.handle_command(LegCommand::Play {
                id: 1,
                prompts: vec![prompt.clone(); 1000],
                barge_in: false,
            })
            .expect("play");
            if record {
                let id = RecordingId::random();
                let tap = pool.open(Opening {
                    id,
                    call_id: format!("bench-{i}"),
                    participants: Participants::BOTH,
                    format: AudioFormat::Mulaw,
                    rate: 8000,
                    started_ms: 0,
                    path: dir.path().join(format!("{id}.clrec")),
                    location: format!("{id}.clrec"),
                    progress: None,
                });
                leg.handle_command(LegCommand::Record(LegRecording::Attach(Box::new(tap))))
                    .expect("record");
            }
            leg
        })
        .collect();
    // What callers say: speech-like bytes, different per packet.
    let speech: Vec<u8> = (0..8000u32)
        .map(|i| ((i * 37 + i / 7) % 251) as u8)
        .collect();
    let mut packet = Vec::with_capacity(200);
    let mut out = Vec::with_capacity(200);
    let ticks = seconds * 50;
    let start = thread_cpu();
    let process_start = process_cpu();
    for t in 0..ticks {
        let now = t * 20;
        let at = (t as usize % 49) * 160;
        for i in 0..calls.len() {
            if hints {
                if let Some(ahead) = calls.get(i + 2) {
                    prefetch::value(ahead);
                }
                if let Some(next) = calls.get(i + 1) {
                    next.prefetch_buffers();
                }
            }
            let leg = &mut calls[i];
            rtp(
                t as u16,
                t as u32 * 160,
                i as u32,
                &speech[at..at + 160],
                &mut packet,
            );
            leg.on_rtp(&packet, far, now);
            out.clear();
            std::hint::black_box(leg.on_tick(now, &mut out));
            std::hint::black_box(&out);
            while leg.poll_event().is_some() {}
        }
    }
    let media = thread_cpu() - start;
    for leg in calls.iter_mut() {
        leg.end_recording();
    }
    drop(calls);
    pool.shutdown();
    // Everything but this thread: the writers, up to the last recording sealed.
    let others = (process_cpu() - process_start).saturating_sub(thread_cpu() - start);
    Run {
        media,
        writers: others,
        leg_ticks: ticks * legs as u64,
    }
}

fn main() {
    let legs = env("CARELINE_BENCH_LEGS", 1000) as usize;
    let seconds = env("CARELINE_BENCH_SECONDS", 30);
    let rounds = env("CARELINE_BENCH_ROUNDS", 3);
    // A tone sweep long enough that calls are not all in step.
    let pcm: Vec<i16> = (0..8000 * 7)
        .map(|i| {
            let f = 300.0 + (i % 8000) as f64 / 10.0;
            (8000.0 * (2.0 * std::f64::consts::PI * f * i as f64 / 8000.0).sin()) as i16
        })
        .collect();
    let prompt = Arc::new(Prompt::from_pcm("en", "bench", &pcm, 8000).expect("prompt"));
    let hints = env("CARELINE_BENCH_PREFETCH", 1) != 0;
    println!(
        "{legs} calls, {seconds} s each, {rounds} rounds, cache hints {} (media: ns per call per tick)",
        if hints { "on" } else { "off" }
    );
    let mut none = Vec::new();
    let mut recorded = Vec::new();
    let modes: &[bool] = match std::env::var("CARELINE_BENCH_ONLY").as_deref() {
        Ok("none") => &[false],
        Ok("recorded") => &[true],
        _ => &[false, true],
    };
    for _ in 0..rounds {
        for &record in modes {
            let r = run(legs, seconds, record, hints, &prompt);
            let per_tick = r.media.as_nanos() as f64 / r.leg_ticks as f64;
            let call_seconds = (legs as u64 * seconds) as f64;
            if record {
                recorded.push(per_tick);
                println!(
                    "recorded  media {per_tick:7.0} ns   writers {:6.1} µs per call-second",
                    r.writers.as_nanos() as f64 / 1e3 / call_seconds
                );
            } else {
                none.push(per_tick);
                println!("none      media {per_tick:7.0} ns");
            }
        }
    }
    if none.is_empty() || recorded.is_empty() {
        return;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (n, r) = (median(&mut none), median(&mut recorded));
    println!(
        "median    none {n:.0} ns, recorded {r:.0} ns: recording adds {:.0} ns ({:+.1} %) per call per tick",
        r - n,
        100.0 * (r - n) / n
    );
}
