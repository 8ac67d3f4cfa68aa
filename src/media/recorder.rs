//! The media thread's end of a recording (the recording service opens it, the leg fills it,
//! the writers in `recording` drain it): 20 ms stereo frames gathered into blocks of
//! half a second, each handed to a bounded queue in one step, never waiting. When the writer
//! falls behind, whole blocks are counted and dropped (the writer puts silence in their place
//! so the channels stay aligned); the media clock never stalls for a recording.
//!
//! Why blocks: per-frame handoff (a lock per frame on the media thread, a map lookup and a
//! cold recording state per frame on the writer) was most of what recording cost at 1,000
//! calls. A block keeps the frames in the leg's own (hot) memory until there are enough of
//! them to make the handoff and the writer's visit cheap.
//!
//! Why planar: a block holds the caller's side of its frames in its first half and what the
//! caller heard in its second; the writer interleaves them as it copies them out. On the
//! media thread each side of a frame is then one copy, and a block's buffer comes back from
//! the writer to be filled again (no allocation, no clearing): filling it with silence and
//! interleaving sample by sample there was the largest part of what recording added to the
//! media threads.

use std::sync::{Arc, Mutex};

use super::codec::Law;

/// A recording's identity: 16 random bytes, shown as `rec-` + 32 hex digits. Media carries
/// it on every block so that one writer can serve many recordings; its text form and parsing
/// belong to the recording format (`recording::format`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordingId(pub [u8; 16]);

impl RecordingId {
    pub fn random() -> RecordingId {
        RecordingId(rand::random())
    }
}

impl std::fmt::Display for RecordingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rec-{}", hex::encode(self.0))
    }
}

impl std::fmt::Debug for RecordingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Where a tap sends its rare control messages (the recording writer's queue). A trait, so
/// that media needs nothing of the writer: the recording service implements it.
pub trait ControlSink: Send {
    fn deliver(&self, message: TapControl);
}

impl ControlSink for std::sync::mpsc::Sender<TapControl> {
    fn deliver(&self, message: TapControl) {
        let _ = self.send(message);
    }
}

/// 20 ms of interleaved stereo at 16 kHz, the highest rate a leg records at.
pub const MAX_FRAME_SAMPLES: usize = 640;

/// Frames per block: 500 ms. Bounds what a killed process loses on top of
/// `recording.flush_secs`, and what each recording holds on its media thread (16 KiB at 8 kHz).
pub const BLOCK_FRAMES: usize = 25;

/// Consecutive frames of one recording, planar (see the module documentation).
#[derive(Debug)]
pub struct Block {
    pub id: RecordingId,
    /// Number of the first frame within the recording (dropped blocks leave a gap; pauses
    /// do not).
    pub first_seq: u32,
    /// Frames held: the first `frames` of each half of `samples`.
    pub frames: usize,
    pub samples: Samples,
}

/// Writes the first `frames` frames of a planar block's `samples` interleaved (left = the
/// caller) into `out`, which is resized to fit.
pub fn interleave_block<T: Copy + Default>(samples: &[T], frames: usize, out: &mut Vec<T>) {
    let plane = samples.len() / 2;
    let len = frames.min(BLOCK_FRAMES) * (plane / BLOCK_FRAMES);
    let (caller, heard) = samples.split_at(plane);
    // Every place is written below: no need to clear what a reused `out` holds.
    out.resize(2 * len, T::default());
    interleave(out, &caller[..len], &heard[..len]);
}

/// A block's samples: 16-bit linear, or G.711 bytes of the recording's law.
#[derive(Debug)]
pub enum Samples {
    Linear(Vec<i16>),
    Companded(Vec<u8>),
}

/// The bounded queue between media threads and one writer. Pushing never wakes the writer:
/// it drains the queue on its own rhythm (see the writer's `run`). (A channel that woke the
/// writer for every frame spent more CPU on futex wake-ups than the whole recording path;
/// measured with `perf record -e cpu-clock` at 1,000 recorded calls.) The writer gives the
/// blocks' buffers back when it takes the next ones, and a tap that hands a block over gets
/// one of them to fill next, under the same lock.
pub struct FrameQueue {
    queued: Mutex<Queued>,
    /// In samples.
    capacity: usize,
}

#[derive(Default)]
struct Queued {
    blocks: Vec<Block>,
    samples: usize,
    /// Buffers the writer is done with, at most `capacity` samples' worth of each kind.
    spare_linear: Vec<Vec<i16>>,
    spare_companded: Vec<Vec<u8>>,
    spare_samples: usize,
}

impl FrameQueue {
    /// `capacity_frames` of 20 ms at 16 kHz stereo may wait (fewer, longer ones at 8 kHz).
    pub fn new(capacity_frames: usize) -> Arc<FrameQueue> {
        Arc::new(FrameQueue {
            queued: Mutex::new(Queued::default()),
            capacity: capacity_frames.max(BLOCK_FRAMES * 2) * MAX_FRAME_SAMPLES,
        })
    }

    /// Queues a block and returns a spare buffer of the same kind to fill next, if there
    /// is one; gives the block back (dropped) when the writer is that far behind.
    pub fn push(&self, block: Block) -> Result<Option<Samples>, Block> {
        let mut q = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        // Counted in 16-bit samples' worth of frames held, whatever the block stores.
        let held = block.held();
        if q.samples + held > self.capacity {
            return Err(block);
        }
        q.samples += held;
        let spare = match block.samples {
            Samples::Linear(_) => q.spare_linear.pop().map(Samples::Linear),
            Samples::Companded(_) => q.spare_companded.pop().map(Samples::Companded),
        };
        if let Some(s) = &spare {
            q.spare_samples -= s.capacity();
        }
        q.blocks.push(block);
        Ok(spare)
    }

    /// Moves every queued block into `out` (which should be empty; its buffer is reused),
    /// and keeps the buffers in `done` (blocks written since the last take) for the taps.
    /// Returns how full the queue was, from 0 to 1.
    pub fn take(&self, out: &mut Vec<Block>, done: &mut Vec<Samples>) -> f64 {
        let mut q = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(&mut q.blocks, out);
        let fill = std::mem::take(&mut q.samples) as f64 / self.capacity as f64;
        for s in done.drain(..) {
            if q.spare_samples + s.capacity() > self.capacity {
                continue;
            }
            q.spare_samples += s.capacity();
            match s {
                Samples::Linear(v) => q.spare_linear.push(v),
                Samples::Companded(v) => q.spare_companded.push(v),
            }
        }
        fill
    }
}

impl Block {
    /// Interleaved samples in the frames held.
    fn held(&self) -> usize {
        let side = match &self.samples {
            Samples::Linear(v) => v.len(),
            Samples::Companded(v) => v.len(),
        };
        side / BLOCK_FRAMES * self.frames
    }
}

impl Samples {
    fn capacity(&self) -> usize {
        match self {
            Samples::Linear(v) => v.capacity(),
            Samples::Companded(v) => v.capacity(),
        }
    }
}

/// The block being filled: `BLOCK_FRAMES` frames of the caller, then as many of what the
/// caller heard, `n` samples per frame and side.
struct Planes<T> {
    buf: Vec<T>,
    frames: usize,
}

impl<T: Copy> Planes<T> {
    const fn new() -> Self {
        Planes {
            buf: Vec::new(),
            frames: 0,
        }
    }

    /// Writes the next frame: each side copied from its pieces in order (a ring buffer's
    /// two halves, say), up to `n` samples, the rest `silence`; a side not recorded is all
    /// `silence`. Returns how many of the caller's samples this frame took (recorded or
    /// not), and whether the block is now full.
    fn add(
        &mut self,
        n: usize,
        silence: T,
        sides: Participants,
        caller: [&[T]; 2],
        heard: &[T],
    ) -> (usize, bool) {
        let len = 2 * BLOCK_FRAMES * n;
        if self.buf.len() != len {
            // A new (or recycled, or resized) buffer: what it holds is overwritten frame by
            // frame, so only a change of size costs a fill.
            self.buf.clear();
            self.buf.resize(len, silence);
        }
        let at = self.frames * n;
        let (c, h) = self.buf.split_at_mut(BLOCK_FRAMES * n);
        let used = if sides.customer {
            fill(&mut c[at..at + n], caller, silence)
        } else {
            // Not recorded, yet consumed: the caller's audio of this frame is spoken for.
            c[at..at + n].fill(silence);
            (caller[0].len() + caller[1].len()).min(n)
        };
        if sides.agent {
            fill(&mut h[at..at + n], [heard, &[]], silence);
        } else {
            h[at..at + n].fill(silence);
        }
        self.frames += 1;
        (used, self.frames >= BLOCK_FRAMES)
    }
}

impl<T> Planes<T> {
    /// Hints the lines the next frame goes to, in both halves, for writing: the buffer was
    /// last read by a writer thread, on another core.
    fn prefetch(&self) {
        let n = self.buf.len() / (2 * BLOCK_FRAMES);
        let at = self.frames.min(BLOCK_FRAMES - 1) * n;
        for start in [at, BLOCK_FRAMES * n + at] {
            if let Some(frame) = self.buf.get(start..start + n) {
                super::prefetch::lines_for_write(
                    frame.as_ptr() as *const u8,
                    std::mem::size_of_val(frame),
                );
            }
        }
    }
}

/// Copies `pieces` into `out` in order as far as they go, pads the rest with `silence`;
/// returns how many samples were copied.
fn fill<T: Copy>(out: &mut [T], pieces: [&[T]; 2], silence: T) -> usize {
    let mut at = 0;
    for p in pieces {
        let take = p.len().min(out.len() - at);
        out[at..at + take].copy_from_slice(&p[..take]);
        at += take;
    }
    out[at..].fill(silence);
    at
}

/// Writes `left` and `right` (as long as each other, half of `out`) into the even and odd
/// places of `out`.
fn interleave<T: Copy>(out: &mut [T], left: &[T], right: &[T]) {
    let n = left.len().min(right.len()).min(out.len() / 2);
    // Fixed groups of 16 are what the compiler turns into vector shuffles (pair by pair it
    // stayed scalar: the tap showed in the recording profile); the rest goes pair by pair.
    let whole = n / 16 * 16;
    let (groups, _) = out[..2 * whole].as_chunks_mut::<32>();
    let (ls, _) = left[..whole].as_chunks::<16>();
    let (rs, _) = right[..whole].as_chunks::<16>();
    for ((o, a), b) in groups.iter_mut().zip(ls).zip(rs) {
        for i in 0..16 {
            o[2 * i] = a[i];
            o[2 * i + 1] = b[i];
        }
    }
    for ((pair, &a), &b) in out[2 * whole..2 * n]
        .chunks_exact_mut(2)
        .zip(&left[whole..n])
        .zip(&right[whole..n])
    {
        pair[0] = a;
        pair[1] = b;
    }
}

/// Rare messages that must not be lost (unbounded; a few per call).
#[derive(Debug)]
pub enum TapControl {
    Pause {
        id: RecordingId,
    },
    Resume {
        id: RecordingId,
    },
    /// The last frame was sent: `frames` were queued in all (the writer waits for them).
    End {
        id: RecordingId,
        frames: u64,
        dropped: u64,
    },
}

/// Which sides are recorded (Connect's `RecordedParticipants`: Customer, Agent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Participants {
    /// Left channel: the caller.
    pub customer: bool,
    /// Right channel: what the caller heard (prompts today; agents and clinicians later).
    pub agent: bool,
}

impl Participants {
    pub const BOTH: Participants = Participants {
        customer: true,
        agent: true,
    };

    pub fn names(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.customer {
            v.push("customer".to_string());
        }
        if self.agent {
            v.push("agent".to_string());
        }
        v
    }
}

pub struct RecorderTap {
    pub id: RecordingId,
    rate: u32,
    participants: Participants,
    data: Arc<FrameQueue>,
    control: Box<dyn ControlSink>,
    /// The next frame's number.
    seq: u32,
    /// Frames not yet handed over (one of the two, by `law`).
    linear: Planes<i16>,
    companded: Planes<u8>,
    block_first: u32,
    /// Set when the recording stores the call's G.711 bytes.
    law: Option<Law>,
    /// Scratch for converting linear frames of a companded recording.
    scratch: Vec<u8>,
    queued: u64,
    dropped: u64,
    paused: bool,
    ended: bool,
}

impl RecorderTap {
    pub(crate) fn new(
        id: RecordingId,
        rate: u32,
        law: Option<Law>,
        participants: Participants,
        data: Arc<FrameQueue>,
        control: Box<dyn ControlSink>,
    ) -> RecorderTap {
        RecorderTap {
            id,
            rate,
            participants,
            data,
            control,
            seq: 0,
            linear: Planes::new(),
            companded: Planes::new(),
            block_first: 0,
            law,
            scratch: Vec::new(),
            queued: 0,
            dropped: 0,
            paused: false,
            ended: false,
        }
    }

    /// The sample rate the recording was opened at.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The G.711 law the recording stores, when it stores the call's own bytes: the leg
    /// then hands over bytes ([`RecorderTap::push_companded`]) and decodes nothing for it.
    pub fn law(&self) -> Option<Law> {
        self.law
    }

    /// Hints the lines of the block the next frame goes to (see [`crate::media::prefetch`]).
    pub fn prefetch(&self) {
        match self.law {
            Some(_) => self.companded.prefetch(),
            None => self.linear.prefetch(),
        }
    }

    /// Samples in one frame of one side.
    fn frame_len(&self) -> usize {
        ((self.rate / 50) as usize).min(MAX_FRAME_SAMPLES / 2)
    }

    /// Starts the next frame; false when nothing is recorded now.
    fn next_frame(&mut self, held: usize) -> bool {
        if self.paused || self.ended {
            return false;
        }
        if held == 0 {
            self.block_first = self.seq;
        }
        self.seq = self.seq.wrapping_add(1);
        true
    }

    /// One tick: `caller` and `heard` are 20 ms mono at [`RecorderTap::rate`] (shorter ones
    /// are padded with silence); a side not recorded is kept silent.
    pub fn push(&mut self, caller: &[i16], heard: &[i16]) {
        if let Some(law) = self.law {
            // The call left G.711 (a re-INVITE to Opus): keep storing the recording's law.
            let n = self.frame_len();
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            law.encode(&caller[..n.min(caller.len())], &mut scratch);
            scratch.resize(n, law.silence());
            law.encode(&heard[..n.min(heard.len())], &mut scratch);
            scratch.resize(2 * n, law.silence());
            let (c, h) = scratch.split_at(n);
            self.push_companded(c, h);
            self.scratch = scratch;
            return;
        }
        if !self.next_frame(self.linear.frames) {
            return;
        }
        let (n, sides) = (self.frame_len(), self.participants);
        if self.linear.add(n, 0, sides, [caller, &[]], heard).1 {
            self.hand_over();
        }
    }

    /// One tick of a companded recording: the caller's and the sent G.711 bytes, in the
    /// recording's law ([`RecorderTap::law`]; shorter ones are padded with silence).
    pub fn push_companded(&mut self, caller: &[u8], heard: &[u8]) {
        self.push_companded_parts([caller, &[]], heard);
    }

    /// [`RecorderTap::push_companded`] with the caller's bytes in two pieces, taken in
    /// order (the two halves of a ring buffer); returns how many of them this frame took
    /// (at most one frame's worth, recorded or not), for the leg to drop from its buffer.
    pub fn push_companded_parts(&mut self, caller: [&[u8]; 2], heard: &[u8]) -> usize {
        let Some(law) = self.law else {
            return 0;
        };
        if !self.next_frame(self.companded.frames) {
            return 0;
        }
        let (n, sides) = (self.frame_len(), self.participants);
        let (used, full) = self.companded.add(n, law.silence(), sides, caller, heard);
        if full {
            self.hand_over();
        }
        used
    }

    /// Queues the frames gathered so far and takes a buffer for the next ones.
    fn hand_over(&mut self) {
        let (samples, frames) = if self.linear.frames > 0 {
            let frames = std::mem::take(&mut self.linear.frames);
            (
                Samples::Linear(std::mem::take(&mut self.linear.buf)),
                frames,
            )
        } else if self.companded.frames > 0 {
            let frames = std::mem::take(&mut self.companded.frames);
            (
                Samples::Companded(std::mem::take(&mut self.companded.buf)),
                frames,
            )
        } else {
            return;
        };
        let block = Block {
            id: self.id,
            first_seq: self.block_first,
            frames,
            samples,
        };
        let next = match self.data.push(block) {
            Ok(spare) => {
                self.queued += frames as u64;
                spare
            }
            Err(block) => {
                self.dropped += frames as u64;
                Some(block.samples)
            }
        };
        match next {
            Some(Samples::Linear(v)) => self.linear.buf = v,
            Some(Samples::Companded(v)) => self.companded.buf = v,
            None => {}
        }
    }

    pub fn pause(&mut self) {
        if !self.paused {
            self.hand_over();
            self.paused = true;
            self.control.deliver(TapControl::Pause { id: self.id });
        }
    }

    pub fn resume(&mut self) {
        if self.paused {
            self.paused = false;
            self.control.deliver(TapControl::Resume { id: self.id });
        }
    }

    /// Frames dropped so far because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Ends the recording: the writer seals it once the queued frames are written.
    pub fn end(&mut self) {
        if !self.ended {
            self.hand_over();
            self.ended = true;
            self.control.deliver(TapControl::End {
                id: self.id,
                frames: self.queued,
                dropped: self.dropped,
            });
        }
    }
}

impl Drop for RecorderTap {
    /// A leg that goes away (call ended, worker stopped) still seals its recording.
    fn drop(&mut self) {
        self.end();
    }
}

/// What the call task tells the media leg.
pub enum LegRecording {
    Attach(Box<RecorderTap>),
    Pause,
    Resume,
    Detach,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::g711;

    fn tap(
        law: Option<Law>,
        sides: Participants,
        queue_frames: usize,
    ) -> (
        RecorderTap,
        Arc<FrameQueue>,
        std::sync::mpsc::Receiver<TapControl>,
    ) {
        let queue = FrameQueue::new(queue_frames);
        let (tx, rx) = std::sync::mpsc::channel();
        let t = RecorderTap::new(
            RecordingId::random(),
            8000,
            law,
            sides,
            queue.clone(),
            Box::new(tx),
        );
        (t, queue, rx)
    }

    fn taken(queue: &FrameQueue) -> Vec<Block> {
        let mut out = Vec::new();
        queue.take(&mut out, &mut Vec::new());
        out
    }

    /// A block's frames, interleaved as the writer stores them.
    fn linear(b: &Block) -> Vec<i16> {
        let mut out = Vec::new();
        match &b.samples {
            Samples::Linear(v) => interleave_block(v, b.frames, &mut out),
            Samples::Companded(_) => panic!("expected linear samples"),
        }
        out
    }

    fn companded(b: &Block) -> Vec<u8> {
        let mut out = Vec::new();
        match &b.samples {
            Samples::Companded(v) => interleave_block(v, b.frames, &mut out),
            Samples::Linear(_) => panic!("expected G.711 bytes"),
        }
        out
    }

    fn ended(rx: &std::sync::mpsc::Receiver<TapControl>) -> (u64, u64) {
        for msg in rx.try_iter() {
            if let TapControl::End {
                frames, dropped, ..
            } = msg
            {
                return (frames, dropped);
            }
        }
        panic!("no End sent");
    }

    #[test]
    fn interleaving_puts_each_side_in_its_place_whatever_the_length() {
        for (nl, nr) in [(160, 160), (0, 0), (5, 5), (17, 17), (33, 33)] {
            let l: Vec<u8> = (0..nl).map(|i| (i % 200) as u8).collect();
            let r: Vec<u8> = (0..nr).map(|i| 255 - (i % 200) as u8).collect();
            let mut frame = vec![0xEEu8; 320];
            interleave(&mut frame, &l, &r);
            for i in 0..160 {
                assert_eq!(
                    frame[2 * i],
                    l.get(i).copied().unwrap_or(0xEE),
                    "left {i} ({nl}, {nr})"
                );
                assert_eq!(
                    frame[2 * i + 1],
                    r.get(i).copied().unwrap_or(0xEE),
                    "right {i} ({nl}, {nr})"
                );
            }
        }
    }

    #[test]
    fn frames_travel_in_half_second_blocks_and_the_rest_goes_at_the_end() {
        let (mut t, queue, rx) = tap(None, Participants::BOTH, 8192);
        for i in 0..60i16 {
            t.push(&[i; 160], &[-i; 160]);
        }
        let blocks = taken(&queue);
        assert_eq!(
            blocks.len(),
            2,
            "two full blocks, the rest still with the leg"
        );
        assert_eq!((blocks[0].first_seq, blocks[1].first_seq), (0, 25));
        let pcm = linear(&blocks[1]);
        assert_eq!(pcm.len(), 25 * 320);
        // Frame 25: caller 25 on the left, what was heard (-25) on the right.
        assert_eq!(&pcm[..4], &[25, -25, 25, -25]);
        t.end();
        let rest = taken(&queue);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].first_seq, 50);
        assert_eq!(linear(&rest[0]).len(), 10 * 320);
        assert_eq!(ended(&rx), (60, 0));
    }

    #[test]
    fn a_pause_hands_over_what_was_recorded_and_stores_nothing_until_resumed() {
        let (mut t, queue, rx) = tap(None, Participants::BOTH, 8192);
        for _ in 0..3 {
            t.push(&[1; 160], &[2; 160]);
        }
        t.pause();
        assert_eq!(linear(&taken(&queue)[0]).len(), 3 * 320);
        for _ in 0..100 {
            t.push(&[9; 160], &[9; 160]);
        }
        assert!(taken(&queue).is_empty(), "nothing recorded while paused");
        t.resume();
        t.push(&[3; 160], &[4; 160]);
        t.end();
        let after = taken(&queue);
        assert_eq!(after[0].first_seq, 3, "a pause leaves no gap to fill");
        assert_eq!(&linear(&after[0])[..2], &[3, 4]);
        assert_eq!(ended(&rx), (4, 0));
    }

    #[test]
    fn g711_bytes_are_stored_as_they_are_and_an_unrecorded_side_is_silence() {
        let caller_only = Participants {
            customer: true,
            agent: false,
        };
        let (mut t, queue, _rx) = tap(Some(Law::Mu), caller_only, 8192);
        t.push_companded(&[0x12; 160], &[0x34; 160]);
        // Short input (a lost packet's worth missing) is padded with µ-law silence.
        t.push_companded(&[0x56; 100], &[]);
        t.end();
        let bytes = companded(&taken(&queue)[0]);
        assert_eq!(bytes.len(), 2 * 320);
        assert_eq!(&bytes[..4], &[0x12, 0xFF, 0x12, 0xFF]);
        assert_eq!(&bytes[320..322], &[0x56, 0xFF]);
        assert_eq!(&bytes[320 + 200..320 + 202], &[0xFF, 0xFF]);
    }

    #[test]
    fn a_recycled_buffer_keeps_nothing_of_its_last_block() {
        let (mut t, queue, _rx) = tap(Some(Law::Mu), Participants::BOTH, 8192);
        for _ in 0..BLOCK_FRAMES {
            t.push_companded(&[0x11; 160], &[0x22; 160]);
        }
        let mut first = Vec::new();
        queue.take(&mut first, &mut Vec::new());
        assert_eq!(first.len(), 1);
        let ptr = |b: &Block| match &b.samples {
            Samples::Companded(v) => v.as_ptr(),
            Samples::Linear(_) => panic!("expected G.711 bytes"),
        };
        let recycled = ptr(&first[0]);
        // The writer gives the buffer back; the tap's next hand-over takes it to fill.
        let mut done: Vec<Samples> = first.into_iter().map(|b| b.samples).collect();
        queue.take(&mut Vec::new(), &mut done);
        for _ in 0..BLOCK_FRAMES {
            t.push_companded(&[0x33; 160], &[0x44; 160]);
        }
        // Filled into the recycled buffer: a short caller frame, then the end.
        t.push_companded(&[0x55; 10], &[0x66; 160]);
        t.push_companded(&[], &[]);
        t.end();
        let blocks = taken(&queue);
        assert_eq!(blocks.len(), 2);
        assert_eq!(
            ptr(&blocks[1]),
            recycled,
            "the last block refilled the first's buffer"
        );
        let last = companded(&blocks[1]);
        assert_eq!(last.len(), 2 * 320, "two frames, not the buffer's 25");
        for (i, pair) in last.chunks(2).enumerate() {
            let want = match i {
                0..10 => [0x55, 0x66],
                10..160 => [0xFF, 0x66],
                _ => [0xFF, 0xFF],
            };
            assert_eq!(pair, want, "sample {i}");
        }
    }

    #[test]
    fn the_callers_bytes_may_come_in_two_pieces_and_only_a_frame_of_them_is_used() {
        let (mut t, queue, _rx) = tap(Some(Law::A), Participants::BOTH, 8192);
        let (a, b) = ([1u8; 100], [2u8; 100]);
        assert_eq!(t.push_companded_parts([&a, &b], &[3; 160]), 160);
        assert_eq!(t.push_companded_parts([&b[..30], &[]], &[3; 160]), 30);
        t.end();
        let bytes = companded(&taken(&queue)[0]);
        let left: Vec<u8> = bytes.iter().step_by(2).copied().collect();
        assert_eq!(&left[..100], &[1; 100]);
        assert_eq!(&left[100..160], &[2; 60]);
        assert_eq!(&left[160..190], &[2; 30]);
        assert!(left[190..].iter().all(|&x| x == Law::A.silence()));

        // A caller not recorded still has a frame's worth taken each tick (nothing piles up).
        let heard_only = Participants {
            customer: false,
            agent: true,
        };
        let (mut t, queue, _rx) = tap(Some(Law::A), heard_only, 8192);
        assert_eq!(t.push_companded_parts([&a, &b], &[3; 160]), 160);
        t.end();
        let bytes = companded(&taken(&queue)[0]);
        assert!(bytes.iter().step_by(2).all(|&x| x == Law::A.silence()));
        assert!(bytes.iter().skip(1).step_by(2).all(|&x| x == 3));
    }

    #[test]
    fn linear_frames_for_a_g711_recording_are_companded() {
        // The call moved to Opus mid-recording: the file keeps its law.
        let (mut t, queue, _rx) = tap(Some(Law::A), Participants::BOTH, 8192);
        t.push(&[1000; 160], &[0; 160]);
        t.end();
        let bytes = companded(&taken(&queue)[0]);
        assert_eq!(bytes[0], g711::linear_to_alaw(1000));
        assert_eq!(bytes[1], Law::A.silence());
        // A-law has no exact zero: its silence code is the smallest step (8 of 32,768).
        assert_eq!(g711::alaw_to_linear(Law::A.silence()), 8);
        assert_eq!(g711::ulaw_to_linear(Law::Mu.silence()), 0);
    }

    #[test]
    fn a_writer_far_behind_loses_whole_blocks_and_they_are_counted() {
        // Room for two blocks at 16 kHz stereo, so four at 8 kHz.
        let (mut t, queue, rx) = tap(None, Participants::BOTH, 2 * BLOCK_FRAMES);
        for _ in 0..(6 * BLOCK_FRAMES) {
            t.push(&[0; 160], &[0; 160]);
        }
        t.end();
        let blocks = taken(&queue);
        assert_eq!(blocks.len(), 4);
        assert_eq!(
            ended(&rx),
            (4 * BLOCK_FRAMES as u64, 2 * BLOCK_FRAMES as u64)
        );
    }
}
