//! The bounded queue between media threads and one writer, and the blocks it carries (see
//! the documentation of [`super`] for why blocks and why planar).

use std::sync::{Arc, Mutex};

use super::RecordingId;

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

/// Writes `left` and `right` (as long as each other, half of `out`) into the even and odd
/// places of `out`.
pub(super) fn interleave<T: Copy>(out: &mut [T], left: &[T], right: &[T]) {
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
