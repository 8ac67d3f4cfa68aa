//! A fixed-delay jitter buffer for one incoming RTP stream.
//!
//! Careline's media serves an IVR: the audio of a call is fed to DTMF detection (Q.24 tone
//! timing needs every 20 ms frame in order), to speech recognition and to the call recording.
//! So the buffer favours *order and accounted loss* over minimal latency:
//! - a fixed target delay (default 40 ms = 2 frames, `rtp.jitter_ms`) is built up before
//!   playout starts, which absorbs ordinary network jitter and reordering (RFC 3550 §5.1: the
//!   receiver restores order by sequence number);
//! - every lost packet whose successors arrived is reported exactly once as [`Pop::Missing`],
//!   so the decoder runs its loss concealment (Opus PLC, G.711 Appendix I) for exactly that
//!   frame and the recording keeps its length;
//! - a delay spike is not thrown away: packets that arrive late but before their turn are
//!   played in order, at the cost of the added latency, bounded by the buffer depth;
//! - there is no adaptive time-stretching: it would distort the tones that in-band DTMF
//!   detection measures.
//!
//! Sans-IO: arrival times and the playout instant are arguments; the caller runs the 20 ms
//! (ptime) clock and calls [`JitterBuffer::pop`] once per tick. Storage is a ring of `depth`
//! slots allocated in [`JitterBuffer::new`], each as large as the payload the stream is
//! expected to carry (`slot_bytes`: 160 bytes for 20 ms of G.711). A larger packet (up to
//! `max_payload`) regrows every slot once, at least doubling, so an unusual sender costs a
//! reallocation or two, never a dropped packet. Slots of the largest possible payload (1,500
//! bytes) made each leg's buffer 15 KB, spread over four pages, for 160-byte frames: at
//! 1,000 calls that was cache and TLB misses on every packet.

/// RFC 3550 Appendix A.1's thresholds, in packets: a jump forward by less than `MAX_DROPOUT`
/// is loss, one back by at most `MAX_MISORDER` is a late or duplicate packet; anything else is
/// a stream restart, believed only when the next packet confirms it.
const MAX_DROPOUT: i32 = 3000;
const MAX_MISORDER: i32 = 100;

/// Settings; [`JitterConfig::default`] is 20 ms frames, 40 ms target delay, 10 frames deep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JitterConfig {
    /// Packetization interval (ptime) in ms: the period of the caller's `pop` tick.
    pub frame_ms: u32,
    /// Delay built up after the first packet (and after each underrun) before playout starts.
    pub target_delay_ms: u32,
    /// Most frames held; raised to the target delay in frames + 2 when smaller. A packet that
    /// does not fit drops the oldest frames (counted as overflow) so latency stays bounded.
    pub depth: usize,
    /// Largest payload accepted, in bytes.
    pub max_payload: usize,
    /// The payload size expected: what each slot holds at first (see the module
    /// documentation). Raised to 1 when 0, capped at `max_payload`.
    pub slot_bytes: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            frame_ms: 20,
            target_delay_ms: 40,
            depth: 10,
            max_payload: 1500,
            slot_bytes: 160,
        }
    }
}

/// Counters since creation (not cleared by [`JitterBuffer::reset`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct JitterStats {
    /// Frames handed out by `pop`.
    pub played: u64,
    /// `Missing` returned: lost packets whose successors were there, concealed once each.
    pub concealed: u64,
    /// Packets that came after their turn was played or concealed; dropped.
    pub late: u64,
    /// Copies of a packet already buffered or played; dropped.
    pub duplicate: u64,
    /// Buffered frames dropped unplayed to make room for newer ones (depth exceeded).
    pub overflow: u64,
    /// Sequence numbers passed over without a `Missing`: gaps wider than the buffer, and lost
    /// packets whose time had already gone by as `Empty` ticks during an underrun.
    pub skipped: u64,
    /// Payloads larger than `max_payload`; dropped.
    pub too_large: u64,
    /// Times playout ran dry (nothing buffered at a tick while playing).
    pub underruns: u64,
    /// Stream restarts (confirmed large sequence jump, `reset`, SSRC change).
    pub resets: u64,
}

/// What `push` did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    Buffered,
    Duplicate,
    Late,
    TooLarge,
    /// A sequence number far from the stream's: held as a possible restart (RFC 3550 A.1),
    /// dropped unless the next packet follows it.
    Suspect,
}

/// What to play at this tick.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pop<'a> {
    /// The next frame in sequence order.
    Frame {
        seq: u16,
        timestamp: u32,
        payload: &'a [u8],
    },
    /// Packet `seq` was lost (later ones arrived): run loss concealment for one frame.
    Missing { seq: u16 },
    /// Nothing to play: still buffering, or underrun (the sender paused or the network
    /// stalled). Play silence or comfort noise.
    Empty,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    filled: bool,
    seq: u16,
    timestamp: u32,
    len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No packet since creation or reset.
    Idle,
    /// Building up the target delay, counted from the first arrival (`None`: waiting for it).
    Buffering {
        since_ms: Option<u64>,
    },
    Playing,
}

/// Sequence-ordered playout buffer for one RTP stream. See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct JitterBuffer {
    target_delay_ms: u32,
    max_payload: usize,
    slots: Box<[Slot]>,
    /// `depth` slots of `stride` bytes.
    data: Box<[u8]>,
    stride: usize,
    /// Where the payload of the frame the last `pop` returned still lies (start, length);
    /// cleared by anything that may overwrite it.
    last_played: Option<(usize, usize)>,
    /// Physical index of `next_seq`'s slot; slot of offset `o` is `(head + o) % depth`.
    head: usize,
    /// The sequence number to play next.
    next_seq: u16,
    /// Filled slots.
    count: usize,
    state: State,
    /// A frame was played or concealed since the last reset (before that, an earlier packet
    /// may still move the head back: the first packet to arrive need not be the first sent).
    started: bool,
    /// Bit `i` set: `next_seq - 1 - i` was played (not concealed); tells duplicates from late.
    played_bits: u64,
    /// `Empty` ticks since the last underrun began: time that lost packets can no longer use.
    idle_ticks: u64,
    /// Expected next sequence number of a suspected restart.
    bad_seq: Option<u16>,
    ssrc: Option<u32>,
    stats: JitterStats,
}

impl JitterBuffer {
    pub(crate) fn new(config: JitterConfig) -> Self {
        let frame_ms = config.frame_ms.max(1);
        let target_frames = config.target_delay_ms.div_ceil(frame_ms) as usize;
        let depth = config.depth.max(target_frames + 2);
        let stride = config.slot_bytes.clamp(1, config.max_payload.max(1));
        JitterBuffer {
            target_delay_ms: config.target_delay_ms,
            max_payload: config.max_payload,
            slots: vec![Slot::default(); depth].into_boxed_slice(),
            data: vec![0u8; depth * stride].into_boxed_slice(),
            stride,
            last_played: None,
            head: 0,
            next_seq: 0,
            count: 0,
            state: State::Idle,
            started: false,
            played_bits: 0,
            idle_ticks: 0,
            bad_seq: None,
            ssrc: None,
            stats: JitterStats::default(),
        }
    }

    /// Frames the buffer can hold.
    pub(crate) fn depth(&self) -> usize {
        self.slots.len()
    }

    /// Frames currently buffered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    #[cfg(test)]
    pub(crate) fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The payload of the frame the last [`JitterBuffer::pop`] returned, while it is still
    /// stored: `None` once anything was pushed since, or when that pop returned no frame. Lets
    /// a caller that must wait for more of its tick use the frame without copying it out.
    pub(crate) fn last_played(&self) -> Option<&[u8]> {
        self.last_played
            .map(|(start, len)| &self.data[start..start + len])
    }

    /// Hints the lines the next push (the packet after the newest buffered) and the next pop
    /// will touch (see [`super::prefetch`]).
    pub(crate) fn prefetch(&self) {
        let depth = self.slots.len();
        for off in [0, self.count] {
            let i = (self.head + off) % depth.max(1);
            if let Some(slot) = self.slots.get(i) {
                super::prefetch::value(slot);
            }
            if let Some(payload) = self.data.get(i * self.stride..(i + 1) * self.stride) {
                super::prefetch::slice(payload);
            }
        }
    }

    /// Bytes held for the frames (the slots' current size times the depth).
    #[cfg(test)]
    pub(crate) fn storage_bytes(&self) -> usize {
        self.data.len()
    }

    /// Drops everything buffered and starts over with the next packet (counters are kept).
    pub(crate) fn reset(&mut self) {
        self.last_played = None;
        for s in self.slots.iter_mut() {
            s.filled = false;
        }
        self.head = 0;
        self.count = 0;
        self.state = State::Idle;
        self.started = false;
        self.played_bits = 0;
        self.idle_ticks = 0;
        self.bad_seq = None;
        self.stats.resets += 1;
    }

    /// Resets when `ssrc` differs from the one seen before: a new source's sequence numbers
    /// are unrelated (RFC 3550 §8.2). Returns whether it reset.
    pub(crate) fn ensure_ssrc(&mut self, ssrc: u32) -> bool {
        let changed = self.ssrc.is_some_and(|s| s != ssrc);
        if changed {
            self.reset();
        }
        self.ssrc = Some(ssrc);
        changed
    }

    /// Stores one received packet (`arrival_ms` on the same clock as `pop`'s `now_ms`).
    pub(crate) fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        payload: &[u8],
        arrival_ms: u64,
    ) -> Push {
        self.last_played = None;
        if payload.len() > self.max_payload {
            self.stats.too_large += 1;
            return Push::TooLarge;
        }
        if payload.len() > self.stride {
            self.regrow(payload.len());
        }
        if self.state == State::Idle {
            self.next_seq = seq;
            self.head = 0;
            self.state = State::Buffering {
                since_ms: Some(arrival_ms),
            };
            self.store(0, seq, timestamp, payload);
            return Push::Buffered;
        }
        let depth = self.depth() as i32;
        let off = i32::from(seq.wrapping_sub(self.next_seq) as i16);
        let verdict = if (0..depth).contains(&off) {
            self.bad_seq = None;
            self.store(off as usize, seq, timestamp, payload)
        } else if (depth..MAX_DROPOUT).contains(&off) {
            self.bad_seq = None;
            self.advance_for(off as usize);
            let off = seq.wrapping_sub(self.next_seq) as usize;
            self.store(off, seq, timestamp, payload)
        } else if (-MAX_MISORDER..0).contains(&off) {
            self.bad_seq = None;
            let back = (-off) as usize;
            if !self.started && self.span_with(back) <= self.depth() {
                // Nothing played yet: an earlier packet overtaken by a later one becomes the
                // new head instead of being "late".
                self.head = (self.head + self.depth() - back) % self.depth();
                self.next_seq = seq;
                self.store(0, seq, timestamp, payload)
            } else if back <= 64 && self.played_bits & (1 << (back - 1)) != 0 {
                self.stats.duplicate += 1;
                Push::Duplicate
            } else {
                self.stats.late += 1;
                Push::Late
            }
        } else if self.bad_seq == Some(seq) {
            // Two packets in sequence far away from the old stream: it restarted.
            self.reset();
            return self.push(seq, timestamp, payload, arrival_ms);
        } else {
            self.bad_seq = Some(seq.wrapping_add(1));
            return Push::Suspect;
        };
        if verdict == Push::Buffered
            && let State::Buffering {
                since_ms: since @ None,
            } = &mut self.state
        {
            *since = Some(arrival_ms);
        }
        verdict
    }

    /// The frame to play at `now_ms`; call once per `frame_ms` tick.
    pub(crate) fn pop(&mut self, now_ms: u64) -> Pop<'_> {
        self.last_played = None;
        match self.state {
            State::Idle => return Pop::Empty,
            State::Buffering { since_ms } => {
                let ready = self.count >= self.depth()
                    || since_ms
                        .is_some_and(|t| now_ms >= t.saturating_add(self.target_delay_ms.into()));
                if !ready {
                    self.idle_ticks += 1;
                    return Pop::Empty;
                }
                self.state = State::Playing;
                self.skip_idle_gap();
            }
            State::Playing => {}
        }
        if self.count == 0 {
            self.stats.underruns += 1;
            self.idle_ticks = 1;
            self.state = State::Buffering { since_ms: None };
            return Pop::Empty;
        }
        self.started = true;
        let idx = self.head;
        let slot = self.slots[idx];
        let seq = self.next_seq;
        debug_assert!(
            !slot.filled || slot.seq == seq,
            "slot {idx} holds {} at head {seq}",
            slot.seq
        );
        self.head = (self.head + 1) % self.depth();
        self.next_seq = seq.wrapping_add(1);
        self.played_bits <<= 1;
        if slot.filled {
            self.slots[idx].filled = false;
            self.count -= 1;
            self.played_bits |= 1;
            self.stats.played += 1;
            let start = idx * self.stride;
            self.last_played = Some((start, slot.len));
            Pop::Frame {
                seq,
                timestamp: slot.timestamp,
                payload: &self.data[start..start + slot.len],
            }
        } else {
            self.stats.concealed += 1;
            Pop::Missing { seq }
        }
    }

    /// Resuming after an underrun: the lost packets at the head whose playout time already
    /// went by as `Empty` ticks are passed over, so an outage does not add its own length to
    /// the latency for the rest of the call.
    fn skip_idle_gap(&mut self) {
        while self.idle_ticks > 0 && self.count > 0 && !self.slots[self.head].filled {
            self.idle_ticks -= 1;
            self.skip_one();
        }
        self.idle_ticks = 0;
    }

    fn skip_one(&mut self) {
        let slot = &mut self.slots[self.head];
        if slot.filled {
            slot.filled = false;
            self.count -= 1;
            self.stats.overflow += 1;
        } else {
            self.stats.skipped += 1;
        }
        self.head = (self.head + 1) % self.slots.len();
        self.next_seq = self.next_seq.wrapping_add(1);
        self.played_bits <<= 1;
    }

    /// Makes room for a packet `off` (>= depth) ahead of the head by dropping the oldest
    /// frames; when that leaves the head empty, moves on to the first frame still buffered
    /// (a gap wider than the buffer is not concealed frame by frame).
    fn advance_for(&mut self, off: usize) {
        let depth = self.depth();
        let shift = off + 1 - depth;
        for _ in 0..shift.min(depth) {
            self.skip_one();
        }
        if shift > depth {
            let rest = shift - depth;
            self.stats.skipped += rest as u64;
            self.head = (self.head + rest) % depth;
            self.next_seq = self.next_seq.wrapping_add(rest as u16);
            self.played_bits = self.played_bits.checked_shl(rest as u32).unwrap_or(0);
        }
        // The new packet will sit at offset depth - 1; skip the empty stretch before the
        // first buffered frame, or before the new packet when nothing else is left.
        while self.count > 0 && !self.slots[self.head].filled {
            self.skip_one();
        }
        if self.count == 0 {
            let gap = depth - 1;
            for _ in 0..gap {
                self.skip_one();
            }
        }
    }

    /// Frames from `back` before the head to the last buffered frame, inclusive.
    fn span_with(&self, back: usize) -> usize {
        let depth = self.depth();
        let last = (0..depth)
            .rev()
            .find(|&o| self.slots[(self.head + o) % depth].filled);
        back + last.map_or(0, |o| o + 1)
    }

    fn store(&mut self, off: usize, seq: u16, timestamp: u32, payload: &[u8]) -> Push {
        let idx = (self.head + off) % self.depth();
        let slot = &mut self.slots[idx];
        if slot.filled {
            self.stats.duplicate += 1;
            return Push::Duplicate;
        }
        *slot = Slot {
            filled: true,
            seq,
            timestamp,
            len: payload.len(),
        };
        let start = idx * self.stride;
        self.data[start..start + payload.len()].copy_from_slice(payload);
        self.count += 1;
        Push::Buffered
    }

    /// Makes every slot hold at least `len` bytes (at least double the current size, at most
    /// `max_payload`), keeping what is buffered.
    fn regrow(&mut self, len: usize) {
        let stride = len.max(self.stride * 2).min(self.max_payload);
        let mut data = vec![0u8; self.depth() * stride].into_boxed_slice();
        for (idx, slot) in self.slots.iter().enumerate() {
            if slot.filled {
                let (from, to) = (idx * self.stride, idx * stride);
                data[to..to + slot.len].copy_from_slice(&self.data[from..from + slot.len]);
            }
        }
        self.data = data;
        self.stride = stride;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compact view of `Pop` for comparisons.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum O {
        F(u16),
        M(u16),
        E,
    }
    use O::{E, F, M};

    fn payload(seq: u16) -> [u8; 3] {
        let b = seq.to_be_bytes();
        [b[0], b[1], 0xAB]
    }

    fn ts_of(seq: u16) -> u32 {
        u32::from(seq).wrapping_mul(160).wrapping_add(0xFFFF_F000)
    }

    /// Pops once and checks that a frame's payload and timestamp belong to its sequence number.
    fn pop(jb: &mut JitterBuffer, now: u64) -> O {
        match jb.pop(now) {
            Pop::Frame {
                seq,
                timestamp,
                payload: p,
            } => {
                assert_eq!(p, payload(seq), "payload of {seq}");
                assert_eq!(timestamp, ts_of(seq));
                F(seq)
            }
            Pop::Missing { seq } => M(seq),
            Pop::Empty => E,
        }
    }

    fn push(jb: &mut JitterBuffer, seq: u16, at: u64) -> Push {
        jb.push(seq, ts_of(seq), &payload(seq), at)
    }

    /// Runs a 20 ms playout clock from 0 to `end_ms`; packets arriving at or before a tick are
    /// pushed before it. Returns (tick time, outcome) for every tick.
    fn simulate(jb: &mut JitterBuffer, arrivals: &[(u64, u16)], end_ms: u64) -> Vec<(u64, O)> {
        let mut arrivals = arrivals.to_vec();
        arrivals.sort_by_key(|a| a.0); // stable: same-time packets keep their given order
        let mut it = arrivals.into_iter().peekable();
        let mut out = Vec::new();
        let mut now = 0;
        while now <= end_ms {
            while let Some(&(t, seq)) = it.peek() {
                if t > now {
                    break;
                }
                push(jb, seq, t);
                it.next();
            }
            out.push((now, pop(jb, now)));
            now += 20;
        }
        out
    }

    fn outcomes(v: &[(u64, O)]) -> Vec<O> {
        v.iter().map(|x| x.1).filter(|o| *o != E).collect()
    }

    fn steady(seqs: impl IntoIterator<Item = u16>, first: u16) -> Vec<(u64, u16)> {
        seqs.into_iter()
            .map(|s| (u64::from(s.wrapping_sub(first)) * 20, s))
            .collect()
    }

    #[test]
    fn in_order_stream_plays_every_frame_after_the_target_delay() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let out = simulate(&mut jb, &steady(0..50, 0), 1100);
        assert_eq!(&out[..3], &[(0, E), (20, E), (40, F(0))]);
        for (i, seq) in (0..50u16).enumerate() {
            assert_eq!(
                out[2 + i],
                (40 + 20 * i as u64, F(seq)),
                "frame {seq} plays 40 ms after arrival"
            );
        }
        assert!(out[52..].iter().all(|o| o.1 == E));
        let s = jb.stats();
        assert_eq!(
            (s.played, s.concealed, s.late, s.duplicate, s.overflow),
            (50, 0, 0, 0, 0)
        );
        assert_eq!(s.underruns, 1, "the end of the stream is one underrun");
    }

    #[test]
    fn reordering_within_the_target_delay_is_undone() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        // Pairs swapped: 1 arrives before 0 (the very first packet too), 3 before 2, ...
        let arr: Vec<(u64, u16)> = (0..40u16).map(|s| (u64::from(s ^ 1) * 20, s)).collect();
        let out = simulate(&mut jb, &arr, 1000);
        assert_eq!(outcomes(&out), (0..40).map(F).collect::<Vec<_>>());
        assert_eq!(jb.stats().late, 0);
        // A packet 30 ms late (within the 40 ms cushion) is still in time.
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut arr = steady(0..20, 0);
        arr[7].0 += 30;
        assert_eq!(
            outcomes(&simulate(&mut jb, &arr, 600)),
            (0..20).map(F).collect::<Vec<_>>()
        );
    }

    #[test]
    fn each_lost_packet_is_missing_exactly_once() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let lost = [5u16, 17, 18, 30];
        let arr = steady((0..40).filter(|s| !lost.contains(s)), 0);
        let out = outcomes(&simulate(&mut jb, &arr, 1000));
        let want: Vec<O> = (0..40)
            .map(|s| if lost.contains(&s) { M(s) } else { F(s) })
            .collect();
        assert_eq!(out, want);
        let s = jb.stats();
        assert_eq!((s.played, s.concealed, s.skipped), (36, 4, 0));
    }

    #[test]
    fn packet_later_than_its_turn_is_concealed_then_dropped_as_late() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut arr = steady(0..20, 0);
        arr[5].0 += 100; // 5 arrives at 200, its turn was at 140
        let out = outcomes(&simulate(&mut jb, &arr, 600));
        let want: Vec<O> = (0..20).map(|s| if s == 5 { M(5) } else { F(s) }).collect();
        assert_eq!(out, want);
        assert_eq!(jb.stats().late, 1);
        assert_eq!(push(&mut jb, 18, 600), Push::Duplicate, "18 was played");
        assert_eq!(
            push(&mut jb, 5, 600),
            Push::Late,
            "5 was concealed, not played"
        );
    }

    #[test]
    fn duplicates_are_dropped_whether_buffered_or_played() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut arr = steady(0..20, 0);
        arr.extend(steady(0..20, 0)); // every packet twice, at the same time
        let out = outcomes(&simulate(&mut jb, &arr, 600));
        assert_eq!(out, (0..20).map(F).collect::<Vec<_>>());
        assert_eq!(jb.stats().duplicate, 20);
        assert_eq!(push(&mut jb, 0, 700), Push::Duplicate);
        assert_eq!(push(&mut jb, 19, 700), Push::Duplicate);
        assert_eq!(jb.stats().played, 20);
    }

    #[test]
    fn sequence_wraparound_at_65535_is_seamless() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let seqs: Vec<u16> = (0..30u16).map(|i| 65520u16.wrapping_add(i)).collect();
        let mut arr = steady(
            seqs.iter().copied().filter(|&s| s != 65535 && s != 1),
            65520,
        );
        // Reorder across the wrap: 0 before 65534.
        let zero = arr.iter().position(|a| a.1 == 0).unwrap();
        arr[zero].0 -= 40;
        let out = outcomes(&simulate(&mut jb, &arr, 800));
        let want: Vec<O> = seqs
            .iter()
            .map(|&s| if s == 65535 || s == 1 { M(s) } else { F(s) })
            .collect();
        assert_eq!(out, want);
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn burst_arrival_then_steady_playout() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        // 8 packets stuck in the network arrive at once at t=0, then one every 20 ms.
        let mut arr: Vec<(u64, u16)> = (0..8).map(|s| (0, s)).collect();
        arr.extend((8..30u16).map(|s| (u64::from(s - 7) * 20, s)));
        let out = simulate(&mut jb, &arr, 800);
        assert_eq!(outcomes(&out), (0..30).map(F).collect::<Vec<_>>());
        // One frame per tick, no gaps once playout started.
        let first = out.iter().position(|o| o.1 != E).unwrap();
        assert_eq!(out[first].0, 40);
        assert!(out[first..first + 30].iter().all(|o| matches!(o.1, F(_))));
        assert_eq!(jb.stats().overflow, 0);
    }

    #[test]
    fn burst_beyond_depth_drops_the_oldest_frames() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        for s in 0..15 {
            assert_eq!(push(&mut jb, s, 0), Push::Buffered);
        }
        assert_eq!(jb.len(), 10);
        assert_eq!(jb.stats().overflow, 5);
        // Full buffer: playout starts at once, from the oldest frame kept.
        let got: Vec<O> = (0..11).map(|i| pop(&mut jb, i * 20)).collect();
        let mut want: Vec<O> = (5..15).map(F).collect();
        want.push(E);
        assert_eq!(got, want);
        assert_eq!(push(&mut jb, 3, 300), Push::Late);
    }

    #[test]
    fn underrun_from_a_pause_resumes_without_concealment_or_added_delay() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        // Sender pauses 200 ms between 9 and 10 (DTX / hold): no sequence gap.
        let arr: Vec<(u64, u16)> = (0..20u16)
            .map(|s| (u64::from(s) * 20 + if s >= 10 { 200 } else { 0 }, s))
            .collect();
        let out = simulate(&mut jb, &arr, 900);
        assert_eq!(outcomes(&out), (0..20).map(F).collect::<Vec<_>>());
        let t10 = out.iter().find(|o| o.1 == F(10)).unwrap().0;
        assert_eq!(
            t10,
            400 + 40,
            "rebuffered to the target delay after the pause"
        );
        let s = jb.stats();
        assert_eq!((s.underruns, s.concealed, s.skipped), (2, 0, 0));
    }

    #[test]
    fn outage_with_loss_does_not_add_its_length_to_the_latency() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        // 10..=14 lost (100 ms outage); 15 onwards on time.
        let arr = steady((0..30).filter(|s| !(10..15).contains(s)), 0);
        let out = simulate(&mut jb, &arr, 900);
        let t15 = out.iter().find(|o| o.1 == F(15)).unwrap().0;
        assert_eq!(t15, 300 + 40);
        let want: Vec<O> = (0..10).chain(15..30).map(F).collect();
        assert_eq!(outcomes(&out), want);
        let s = jb.stats();
        assert_eq!(
            (s.skipped, s.concealed),
            (5, 0),
            "the Empty ticks stood in for them"
        );
    }

    #[test]
    fn loss_at_the_head_with_an_empty_buffer_is_missing_when_later_packets_came() {
        // 5 and 6 lost, 7 arrives before the tick that would play 5: two Missing, no delay.
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let arr = steady((0..12).filter(|s| *s != 5 && *s != 6), 0);
        let out = simulate(&mut jb, &arr, 400);
        assert_eq!(
            outcomes(&out),
            vec![
                F(0),
                F(1),
                F(2),
                F(3),
                F(4),
                M(5),
                M(6),
                F(7),
                F(8),
                F(9),
                F(10),
                F(11)
            ]
        );
        assert_eq!(out.iter().find(|o| o.1 == F(7)).unwrap().0, 140 + 40);
    }

    #[test]
    fn gap_wider_than_the_buffer_skips_to_the_new_packet() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        for s in 0..3 {
            push(&mut jb, s, 0);
        }
        assert_eq!(pop(&mut jb, 40), F(0));
        // 1 and 2 still buffered; 500 is far ahead (within MAX_DROPOUT): keep what fits.
        assert_eq!(push(&mut jb, 500, 60), Push::Buffered);
        assert_eq!(jb.stats().overflow, 2);
        assert_eq!(pop(&mut jb, 60), F(500));
        assert_eq!(push(&mut jb, 501, 80), Push::Buffered);
        assert_eq!(pop(&mut jb, 80), F(501));
        assert_eq!(jb.stats().skipped, 497);
        assert_eq!(jb.stats().concealed, 0);
    }

    #[test]
    fn big_sequence_jump_resets_only_when_confirmed() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        for s in 100..103 {
            push(&mut jb, s, 0);
        }
        // One stray packet from far away is held as suspect and dropped.
        assert_eq!(push(&mut jb, 40_000, 10), Push::Suspect);
        assert_eq!(push(&mut jb, 103, 10), Push::Buffered);
        assert_eq!(jb.stats().resets, 0);
        // Two in a row: the stream restarted.
        assert_eq!(push(&mut jb, 40_000, 20), Push::Suspect);
        assert_eq!(push(&mut jb, 40_001, 20), Push::Buffered);
        assert_eq!(jb.stats().resets, 1);
        assert_eq!(jb.len(), 1);
        assert_eq!(pop(&mut jb, 40), E, "rebuffering after the reset");
        assert_eq!(pop(&mut jb, 60), F(40_001));
        // Backwards by more than MAX_MISORDER is a restart too, not "late".
        assert_eq!(push(&mut jb, 30_000, 70), Push::Suspect);
        assert_eq!(push(&mut jb, 30_001, 70), Push::Buffered);
        assert_eq!(jb.stats().resets, 2);
    }

    #[test]
    fn ssrc_change_resets_and_same_ssrc_does_not() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        assert!(!jb.ensure_ssrc(7));
        push(&mut jb, 10, 0);
        push(&mut jb, 11, 0);
        assert!(!jb.ensure_ssrc(7));
        assert_eq!(jb.len(), 2);
        assert!(jb.ensure_ssrc(8));
        assert_eq!(jb.len(), 0);
        assert_eq!(push(&mut jb, 5000, 0), Push::Buffered);
        assert_eq!(pop(&mut jb, 40), F(5000));
    }

    #[test]
    fn oversize_payloads_are_refused_and_max_size_accepted() {
        let cfg = JitterConfig {
            max_payload: 160,
            slot_bytes: 160,
            ..JitterConfig::default()
        };
        let mut jb = JitterBuffer::new(cfg);
        assert_eq!(jb.push(1, 0, &[0u8; 161], 0), Push::TooLarge);
        assert_eq!(jb.stats().too_large, 1);
        assert_eq!(jb.push(1, 0, &[7u8; 160], 0), Push::Buffered);
        match jb.pop(40) {
            Pop::Frame { payload, .. } => assert_eq!(payload, &[7u8; 160][..]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn slots_grow_for_a_larger_packet_and_keep_what_is_buffered() {
        let cfg = JitterConfig {
            max_payload: 1500,
            slot_bytes: 4,
            ..JitterConfig::default()
        };
        let mut jb = JitterBuffer::new(cfg);
        let depth = jb.depth();
        assert_eq!(jb.storage_bytes(), 4 * depth);
        let big: Vec<u8> = (0..50u8).collect();
        // The big packet lands between two small ones already buffered, out of order.
        assert_eq!(jb.push(0, 0, &[1, 2, 3], 0), Push::Buffered);
        assert_eq!(jb.push(3, 480, &[4, 5, 6, 7], 0), Push::Buffered);
        assert_eq!(jb.push(1, 160, &big, 0), Push::Buffered);
        assert_eq!(
            jb.storage_bytes(),
            50 * depth,
            "grown to fit, not to the maximum"
        );
        // A little more than the new size at least doubles it.
        assert_eq!(jb.push(2, 320, &[9u8; 51], 0), Push::Buffered);
        assert_eq!(jb.storage_bytes(), 100 * depth);
        let mut got = Vec::new();
        for t in 0..4 {
            match jb.pop(40 + 20 * t) {
                Pop::Frame { payload, .. } => got.push(payload.to_vec()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            got,
            vec![vec![1, 2, 3], big, vec![9u8; 51], vec![4, 5, 6, 7]]
        );
        // Growth stops at max_payload, and past it a packet is refused.
        assert_eq!(jb.push(4, 640, &[0u8; 1400], 120), Push::Buffered);
        assert_eq!(jb.storage_bytes(), 1400 * depth);
        assert_eq!(jb.push(5, 800, &[0u8; 1401], 120), Push::Buffered);
        assert_eq!(jb.storage_bytes(), 1500 * depth);
        assert_eq!(jb.push(6, 960, &[0u8; 1501], 120), Push::TooLarge);
    }

    /// Random streams (seeded: the same every run): loss, duplicates, reordering, jumps,
    /// restarts, payloads of every size. Whatever arrives, the buffer never panics, never holds
    /// more than its depth, plays only frames that arrived, each with its own payload, in
    /// sequence order between resets, and `last_played` is what was just played.
    #[test]
    fn random_arrivals_keep_the_buffers_promises() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x717);
        for case in 0..300 {
            let mut jb = JitterBuffer::new(JitterConfig {
                slot_bytes: rng.random_range(0..200),
                ..JitterConfig::default()
            });
            let body = |seq: u16, len: usize| -> Vec<u8> {
                (0..len).map(|i| (seq as usize * 7 + i) as u8).collect()
            };
            let mut sizes = std::collections::HashMap::new();
            let mut seq: u16 = rng.random();
            let mut last_played: Option<u16> = None;
            let mut resets = jb.stats().resets;
            for tick in 0..400u64 {
                let now = tick * 20;
                // The media clock's cache hints look at every state the buffer gets into.
                jb.prefetch();
                for _ in 0..rng.random_range(0..3) {
                    let s = match rng.random_range(0..20) {
                        0 => seq.wrapping_sub(rng.random_range(1..120)), // late or duplicate
                        1 => seq.wrapping_add(rng.random_range(2..40)),  // loss, reordering
                        2 => rng.random(),                               // a stray or a restart
                        _ => seq,
                    };
                    if s == seq {
                        seq = seq.wrapping_add(1);
                    }
                    let len = *sizes.entry(s).or_insert_with(|| rng.random_range(0..1600));
                    let pushed = jb.push(s, u32::from(s) * 160, &body(s, len), now);
                    assert_eq!(pushed == Push::TooLarge, len > 1500, "case {case}");
                    assert!(jb.len() <= jb.depth(), "case {case}");
                    assert_eq!(jb.last_played(), None, "case {case}: a push forgets it");
                }
                if jb.stats().resets != resets {
                    resets = jb.stats().resets;
                    last_played = None;
                }
                let played = match jb.pop(now) {
                    Pop::Frame {
                        seq: s, payload, ..
                    } => {
                        assert_eq!(payload, &body(s, sizes[&s])[..], "case {case}: payload");
                        if let Some(prev) = last_played {
                            let ahead = s.wrapping_sub(prev);
                            assert!(ahead > 0 && ahead < 0x8000, "case {case}: {prev} then {s}");
                        }
                        last_played = Some(s);
                        Some(payload.to_vec())
                    }
                    Pop::Missing { seq: s } => {
                        last_played = Some(s);
                        None
                    }
                    Pop::Empty => None,
                };
                assert_eq!(jb.last_played().map(<[u8]>::to_vec), played, "case {case}");
            }
        }
    }

    #[test]
    fn last_played_is_the_popped_frame_until_the_next_push() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        assert_eq!(jb.last_played(), None);
        push(&mut jb, 0, 0);
        push(&mut jb, 2, 0);
        assert_eq!(pop(&mut jb, 40), F(0));
        assert_eq!(jb.last_played(), Some(&payload(0)[..]));
        assert_eq!(
            jb.last_played(),
            Some(&payload(0)[..]),
            "reading it keeps it"
        );
        assert_eq!(pop(&mut jb, 60), M(1));
        assert_eq!(jb.last_played(), None, "a concealed frame has no payload");
        assert_eq!(pop(&mut jb, 80), F(2));
        assert_eq!(jb.last_played(), Some(&payload(2)[..]));
        // Any push may reuse the slot: the frame is no longer offered.
        push(&mut jb, 3, 90);
        assert_eq!(jb.last_played(), None);
        assert_eq!(pop(&mut jb, 100), F(3));
        jb.reset();
        assert_eq!(jb.last_played(), None);
    }

    #[test]
    fn underrun_before_any_packet_and_configurable_delay_and_ptime() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        assert_eq!(pop(&mut jb, 0), E);
        // 30 ms ptime, 90 ms target: three frames of cushion.
        let cfg = JitterConfig {
            frame_ms: 30,
            target_delay_ms: 90,
            ..JitterConfig::default()
        };
        let mut jb = JitterBuffer::new(cfg);
        push(&mut jb, 0, 1000);
        assert_eq!(pop(&mut jb, 1060), E);
        assert_eq!(pop(&mut jb, 1089), E);
        assert_eq!(pop(&mut jb, 1090), F(0));
        // A target longer than the depth grows the depth instead of never starting.
        let cfg = JitterConfig {
            target_delay_ms: 1000,
            ..JitterConfig::default()
        };
        assert_eq!(JitterBuffer::new(cfg).depth(), 52);
    }

    #[test]
    fn random_network_keeps_order_and_accounts_for_every_frame() {
        // Loss, duplication, reordering and delay spikes from a deterministic xorshift; the
        // output must stay in strictly increasing sequence order, never repeat a frame, never
        // play a frame it already concealed, and never panic (the slot check is a debug
        // assertion inside `pop`).
        let mut x: u64 = 0xDEAD_BEEF_CAFE_F00D;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut arr = Vec::new();
        let first = 65_000u16; // wraps during the run
        for i in 0..3000u16 {
            let seq = first.wrapping_add(i);
            let sent = u64::from(i) * 20;
            match rnd(100) {
                0..=4 => continue,                         // lost
                5..=9 => arr.push((sent + rnd(200), seq)), // duplicated
                10..=12 => {
                    arr.push((sent + 100 + rnd(300), seq)); // delay spike
                    continue;
                }
                _ => {}
            }
            arr.push((sent + rnd(30), seq));
        }
        let out = simulate(&mut jb, &arr, 3000 * 20 + 1000);
        let mut last: Option<u16> = None;
        for (_, o) in &out {
            let seq = match *o {
                F(s) | M(s) => s,
                E => continue,
            };
            if let Some(l) = last {
                assert!((seq.wrapping_sub(l) as i16) > 0, "{seq} after {l}");
            }
            last = Some(seq);
        }
        let s = jb.stats();
        assert_eq!(s.resets, 0);
        let frames = out.iter().filter(|o| matches!(o.1, F(_))).count() as u64;
        assert_eq!(frames, s.played);
        // Every one of the 3000 sequence numbers was played, concealed or passed over once.
        assert_eq!(
            s.played + s.concealed + s.skipped + s.overflow,
            3000,
            "{s:?}"
        );
        assert!(s.played > 2600 && s.late > 0 && s.duplicate > 100, "{s:?}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// However packets are delayed within the 40 ms cushion (so reordered too), every
            /// frame plays once, in order, none late and none concealed.
            #[test]
            fn delay_within_the_cushion_is_undone(delays in prop::collection::vec(0u64..40, 1..120)) {
                let mut jb = JitterBuffer::new(JitterConfig::default());
                let n = delays.len() as u16;
                let arrivals: Vec<(u64, u16)> = delays
                    .iter()
                    .enumerate()
                    .map(|(i, d)| (i as u64 * 20 + d, i as u16))
                    .collect();
                let out = outcomes(&simulate(&mut jb, &arrivals, u64::from(n) * 20 + 200));
                prop_assert_eq!(out, (0..n).map(F).collect::<Vec<_>>());
                prop_assert_eq!(jb.stats().late, 0);
            }

            /// Whatever arrives, in any order and however often, never more frames play than
            /// were sent and no sequence number plays twice.
            #[test]
            fn nothing_plays_twice(seqs in prop::collection::vec(0u16..64, 0..200)) {
                let mut jb = JitterBuffer::new(JitterConfig::default());
                let arrivals: Vec<(u64, u16)> =
                    seqs.iter().enumerate().map(|(i, s)| (i as u64 * 7, *s)).collect();
                let out = outcomes(&simulate(&mut jb, &arrivals, 200 * 7 + 400));
                let mut played: Vec<u16> = out
                    .iter()
                    .filter_map(|o| match o { F(s) => Some(*s), _ => None })
                    .collect();
                let total = played.len();
                played.sort_unstable();
                played.dedup();
                prop_assert_eq!(played.len(), total, "a frame played twice: {:?}", out);
            }
        }
    }
}
