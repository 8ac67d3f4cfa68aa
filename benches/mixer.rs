//! What a telehealth room's audio costs the media clock per 20 ms tick: every participant's
//! frame pushed, the N-1 mixes made (`media::mixer::Mixer`), every mix read, for rooms of 3,
//! 8 and 20 participants at 8 kHz (phones: 160 samples a frame) and 48 kHz (browsers: 960).
//! Codec work (decoding each leg's frame, encoding each mix) is not in it: that is the legs'.
//!
//! `cargo bench --bench mixer` (CARELINE_BENCH_TICKS=N per round, CARELINE_BENCH_ROUNDS=R).
//! Thread CPU time per room tick; the cases interleaved in each round, median and spread over
//! the rounds printed, with the machine.

use careline::media::mixer::Mixer;

mod support;
use support::{env, thread_cpu};

/// Microseconds of thread CPU per room tick for `people` participants, `frame` samples each.
fn run(people: u64, frame: usize, ticks: u64) -> f64 {
    let mut room = Mixer::new(frame, 3);
    // Everyone speaks (a tone each, different levels): the worst case for the talker choice.
    let frames: Vec<Vec<i16>> = (0..people)
        .map(|p| {
            (0..frame)
                .map(|i| {
                    let t = i as f32 / frame as f32;
                    ((1000 + 300 * p) as f32 * (std::f32::consts::TAU * (3.0 + p as f32) * t).sin())
                        as i16
                })
                .collect()
        })
        .collect();
    for id in 0..people {
        room.join(id);
    }
    let mut sink = 0i64;
    let start = thread_cpu();
    for _ in 0..ticks {
        for (id, f) in frames.iter().enumerate() {
            room.push(id as u64, f);
        }
        room.mix();
        for id in 0..people {
            sink += i64::from(room.output(id).map_or(0, |o| o[frame / 2]));
        }
        while room.poll_event().is_some() {}
    }
    let spent = thread_cpu() - start;
    std::hint::black_box(sink);
    spent.as_secs_f64() * 1e6 / ticks as f64
}

fn main() {
    let ticks = env("CARELINE_BENCH_TICKS", 20_000);
    let rounds = env("CARELINE_BENCH_ROUNDS", 5);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("machine: {cpu}, {cores} cores; {ticks} ticks per case per round, {rounds} rounds");
    let cases: Vec<(u64, usize)> = [3, 8, 20]
        .into_iter()
        .flat_map(|n| [(n, 160), (n, 960)])
        .collect();
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (i, &(people, frame)) in cases.iter().enumerate() {
            results[i].push(run(people, frame, ticks));
        }
    }
    println!(
        "| participants | rate | µs per room tick, median (range) | rooms per core at 20 ms |"
    );
    println!("|---|---|---|---|");
    for ((people, frame), mut r) in cases.into_iter().zip(results) {
        r.sort_by(f64::total_cmp);
        let median = r[r.len() / 2];
        let rate = if frame == 160 { "8 kHz" } else { "48 kHz" };
        println!(
            "| {people} | {rate} | {median:.2} ({:.2}-{:.2}) | {:.0} |",
            r[0],
            r[r.len() - 1],
            20_000.0 / median
        );
    }
}
