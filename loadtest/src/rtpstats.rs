//! What the load tester measures on the RTP stream a server sends to one caller, sans-IO:
//! fed (sequence, timestamp, arrival time) per packet, it keeps RFC 3550 counts and reports
//! per-packet observations for the histograms.
//!
//! - **loss** (RFC 3550 §6.4.1 / A.3): expected = highest extended sequence − first + 1,
//!   lost = expected − received;
//! - **sequence gaps**: jumps of more than one in the sequence (each jump counted once,
//!   however many packets it skipped), reordered packets (older than the highest seen) and
//!   duplicates;
//! - **timestamp errors**: consecutive packets whose timestamps do not differ by exactly one
//!   20 ms frame per sequence step (Careline's clock advances 20 ms per packet, also while
//!   silent, RFC 3550 §5.1);
//! - **inter-arrival jitter** (RFC 3550 §6.4.1, A.8): `J += (|D| − J) / 16` with `D` the
//!   change in transit time, in timestamp units;
//! - **schedule deviation**: how late each packet arrived against a perfect 20 ms clock, the
//!   packet's RTP timestamp giving its slot: `offset = arrival − media_time(ts)`, deviation =
//!   offset − the smallest offset seen so far (the earliest packet defines "on time"). A media
//!   clock that runs late shows here directly; a constant network delay does not.

use crate::clock::Nanos;

/// One packet's contribution to the histograms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Lateness against the 20 ms schedule, ≥ 0.
    pub deviation_ns: Nanos,
    /// The RFC 3550 jitter estimate after this packet, in nanoseconds.
    pub jitter_ns: Nanos,
}

#[derive(Debug, Clone)]
pub struct StreamStats {
    clock_rate: u32,
    ts_per_frame: u32,
    started: bool,
    base_seq: i64,
    max_seq: i64,
    last_ts_ext: i64,
    last_ts: u32,
    /// Extended timestamp of the packet with the highest sequence, and that sequence.
    max_seq_ts_ext: i64,
    first_ts_ext: i64,
    received: u64,
    pub gaps: u64,
    pub reordered: u64,
    pub duplicates: u64,
    pub ts_errors: u64,
    jitter: f64,
    last_transit: Option<f64>,
    min_offset: Option<Nanos>,
    /// Recently seen sequence numbers (bitmap of the 64 below `max_seq`) to tell duplicates.
    seen: u64,
}

impl StreamStats {
    /// `clock_rate`: the codec's RTP clock (8000 for G.711, 48000 for Opus).
    pub fn new(clock_rate: u32) -> StreamStats {
        StreamStats {
            clock_rate,
            ts_per_frame: clock_rate / 50,
            started: false,
            base_seq: 0,
            max_seq: 0,
            last_ts_ext: 0,
            last_ts: 0,
            max_seq_ts_ext: 0,
            first_ts_ext: 0,
            received: 0,
            gaps: 0,
            reordered: 0,
            duplicates: 0,
            ts_errors: 0,
            jitter: 0.0,
            last_transit: None,
            min_offset: None,
            seen: 0,
        }
    }

    /// The sequence number extended to 64 bits, relative to the highest seen (RFC 3550 A.1).
    pub fn extend_seq(&self, seq: u16) -> i64 {
        if !self.started {
            return seq as i64;
        }
        let delta = seq.wrapping_sub(self.max_seq as u16) as i16 as i64;
        self.max_seq + delta
    }

    fn extend_ts(&self, ts: u32) -> i64 {
        self.last_ts_ext + ts.wrapping_sub(self.last_ts) as i32 as i64
    }

    /// Feeds one audio packet. Returns what it adds to the histograms (nothing for duplicates).
    pub fn on_packet(&mut self, seq: u16, ts: u32, arrival: Nanos) -> Option<Observation> {
        if !self.started {
            self.started = true;
            self.base_seq = seq as i64;
            self.max_seq = seq as i64;
            self.last_ts = ts;
            self.last_ts_ext = ts as i64;
            self.first_ts_ext = ts as i64;
            self.max_seq_ts_ext = ts as i64;
            self.received = 1;
            self.seen = 1;
            return Some(self.timing(ts as i64, arrival));
        }
        let ext = self.extend_seq(seq);
        let ts_ext = self.extend_ts(ts);
        if ext > self.max_seq {
            let step = ext - self.max_seq;
            if step > 1 {
                self.gaps += 1;
            }
            let expected_ts = self.max_seq_ts_ext + step * self.ts_per_frame as i64;
            if ts_ext != expected_ts {
                self.ts_errors += 1;
            }
            self.seen = if step >= 64 {
                1
            } else {
                (self.seen << step) | 1
            };
            self.max_seq = ext;
            self.max_seq_ts_ext = ts_ext;
        } else {
            let back = self.max_seq - ext;
            if back < 64 && self.seen & (1 << back) != 0 {
                self.duplicates += 1;
                return None;
            }
            if back < 64 {
                self.seen |= 1 << back;
            }
            self.reordered += 1;
        }
        self.received += 1;
        self.last_ts = ts;
        self.last_ts_ext = ts_ext;
        Some(self.timing(ts_ext, arrival))
    }

    fn timing(&mut self, ts_ext: i64, arrival: Nanos) -> Observation {
        // Transit in timestamp units (RFC 3550 A.8): arrival converted to the media clock.
        let arrival_units = arrival as f64 * self.clock_rate as f64 / 1e9;
        let transit = arrival_units - ts_ext as f64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs();
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
        let media_ns = (ts_ext - self.first_ts_ext) * 1_000_000_000 / self.clock_rate as i64;
        let offset = arrival - media_ns;
        let min = self.min_offset.map_or(offset, |m| m.min(offset));
        self.min_offset = Some(min);
        Observation {
            deviation_ns: offset - min,
            jitter_ns: self.jitter_ns(),
        }
    }

    pub fn jitter_ns(&self) -> Nanos {
        (self.jitter * 1e9 / self.clock_rate as f64) as Nanos
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets expected from the sequence numbers seen (0 before the first).
    pub fn expected(&self) -> u64 {
        if self.started {
            (self.max_seq - self.base_seq + 1) as u64
        } else {
            0
        }
    }

    /// Packets lost (never negative: duplicates are not counted as received).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MS;

    /// Packets of a perfect 20 ms G.711 stream: (seq, ts, arrival).
    fn perfect(n: usize, seq0: u16, ts0: u32, t0: Nanos) -> Vec<(u16, u32, Nanos)> {
        (0..n)
            .map(|i| {
                (
                    seq0.wrapping_add(i as u16),
                    ts0.wrapping_add(160 * i as u32),
                    t0 + 20 * MS * i as Nanos,
                )
            })
            .collect()
    }

    fn feed(s: &mut StreamStats, pkts: &[(u16, u32, Nanos)]) -> Vec<Observation> {
        pkts.iter()
            .filter_map(|&(q, t, a)| s.on_packet(q, t, a))
            .collect()
    }

    #[test]
    fn a_perfect_stream_has_no_loss_jitter_or_deviation_across_wraps() {
        let mut s = StreamStats::new(8000);
        let obs = feed(&mut s, &perfect(500, 65500, u32::MAX - 1000, 1_000 * MS));
        assert_eq!((s.received(), s.expected(), s.lost()), (500, 500, 0));
        assert_eq!(
            (s.gaps, s.reordered, s.duplicates, s.ts_errors),
            (0, 0, 0, 0)
        );
        assert!(
            obs.iter().all(|o| o.deviation_ns == 0 && o.jitter_ns == 0),
            "{obs:?}"
        );
    }

    #[test]
    fn loss_and_gaps_are_counted_from_sequence_numbers() {
        let mut s = StreamStats::new(8000);
        let mut pkts = perfect(100, 10, 0, 0);
        pkts.remove(50); // one lost
        pkts.drain(70..73); // three lost in one gap
        feed(&mut s, &pkts);
        assert_eq!(s.expected(), 100);
        assert_eq!(s.lost(), 4);
        assert_eq!(s.gaps, 2, "two jumps");
        assert_eq!(s.ts_errors, 0, "timestamps advanced with the sequence");
    }

    #[test]
    fn reordering_and_duplicates_are_not_loss() {
        let mut s = StreamStats::new(8000);
        let mut pkts = perfect(20, 0, 0, 0);
        pkts.swap(5, 6);
        pkts.push(pkts[3]);
        feed(&mut s, &pkts);
        assert_eq!(s.lost(), 0);
        assert_eq!(s.reordered, 1);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.gaps, 1, "the early packet skipped one");
    }

    #[test]
    fn timestamp_steps_that_are_not_one_frame_per_packet_are_errors() {
        let mut s = StreamStats::new(8000);
        let mut pkts = perfect(10, 0, 0, 0);
        for p in pkts.iter_mut().skip(5) {
            p.1 += 80; // a half-frame jump from packet 5 on: one error, then consistent again
        }
        pkts[8].1 += 1; // and one off-by-one timestamp: two errors (into and out of it)
        feed(&mut s, &pkts);
        assert_eq!(s.ts_errors, 3);
    }

    #[test]
    fn rfc3550_jitter_converges_to_the_alternating_delay() {
        // Every other packet 10 ms late: |D| = 10 ms for every pair, so J -> 10 ms (80 units).
        let mut s = StreamStats::new(8000);
        let pkts: Vec<_> = perfect(400, 0, 0, 0)
            .into_iter()
            .enumerate()
            .map(|(i, (q, t, a))| (q, t, a + if i % 2 == 1 { 10 * MS } else { 0 }))
            .collect();
        let obs = feed(&mut s, &pkts);
        let j = obs.last().unwrap().jitter_ns;
        assert!((j - 10 * MS).abs() < MS / 10, "jitter {j}");
        // The first update is |D|/16 exactly: 10 ms / 16.
        assert_eq!(obs[1].jitter_ns, 10 * MS / 16);
        // Deviation: the late packets are 10 ms late, the others on time.
        assert_eq!(obs[1].deviation_ns, 10 * MS);
        assert_eq!(obs[2].deviation_ns, 0);
    }

    #[test]
    fn a_media_clock_that_slips_shows_as_schedule_deviation() {
        // Packets 0-49 on time; from 50 on the sender's tick runs 30 ms late, and one packet
        // (80) comes 45 ms late. Timestamps stay perfect (the server's clock is not wrong, late).
        let mut s = StreamStats::new(8000);
        let pkts: Vec<_> = perfect(100, 7, 1234, 5 * MS)
            .into_iter()
            .enumerate()
            .map(|(i, (q, t, a))| {
                let late = if i == 80 {
                    45
                } else if i >= 50 {
                    30
                } else {
                    0
                };
                (q, t, a + late * MS)
            })
            .collect();
        let obs = feed(&mut s, &pkts);
        assert!(obs[..50].iter().all(|o| o.deviation_ns == 0));
        assert_eq!(obs[50].deviation_ns, 30 * MS);
        assert_eq!(obs[80].deviation_ns, 45 * MS);
        assert_eq!(obs[99].deviation_ns, 30 * MS);
        assert_eq!(s.ts_errors, 0);
    }

    #[test]
    fn opus_uses_its_48k_clock() {
        let mut s = StreamStats::new(48000);
        let pkts: Vec<_> = (0..50u16)
            .map(|i| {
                (
                    i,
                    960 * i as u32,
                    i as Nanos * 20 * MS + if i == 10 { 5 * MS } else { 0 },
                )
            })
            .collect();
        let obs = feed(&mut s, &pkts);
        assert_eq!(s.ts_errors, 0);
        assert_eq!(obs[10].deviation_ns, 5 * MS);
    }
}
