//! The recorder tap: what a media leg holds while it records, filling blocks frame by frame
//! and handing them to the queue without ever waiting.

use std::sync::Arc;

use super::queue::{BLOCK_FRAMES, Block, FrameQueue, MAX_FRAME_SAMPLES, Samples};
use super::{ControlSink, Participants, RecordingId, TapControl};
use crate::media::codec::Law;

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
                crate::media::prefetch::lines_for_write(
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
