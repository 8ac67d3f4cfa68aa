//! The media thread's end of a recording: one 20 ms stereo frame per tick into a bounded
//! channel, never waiting. When the writer falls behind, frames are counted and dropped
//! (the writer puts silence in their place so the channels stay aligned); the media clock
//! never stalls for a recording.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use super::format::RecordingId;

/// 20 ms of interleaved stereo at 16 kHz, the highest rate a leg records at.
pub const MAX_FRAME_SAMPLES: usize = 640;

/// Where one queued frame's interleaved samples lie in its [`FrameBatch`].
#[derive(Debug, Clone, Copy)]
pub struct FrameHead {
    pub id: RecordingId,
    /// Frame number within the recording (dropped frames leave a gap; pauses do not).
    pub seq: u32,
    start: u32,
    len: u16,
}

/// Frames as the media threads queued them: headers, and every frame's samples end to end
/// in one buffer. Interleaving straight into it copies each sample once, where a fixed-size
/// frame struct was zeroed, filled and moved twice (memmove led the recording profile).
#[derive(Debug, Default)]
pub struct FrameBatch {
    heads: Vec<FrameHead>,
    pcm: Vec<i16>,
}

impl FrameBatch {
    pub fn len(&self) -> usize {
        self.heads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heads.is_empty()
    }

    pub fn clear(&mut self) {
        self.heads.clear();
        self.pcm.clear();
    }

    /// Each frame with its interleaved stereo samples.
    pub fn frames(&self) -> impl Iterator<Item = (FrameHead, &[i16])> {
        self.heads.iter().map(|h| {
            let start = h.start as usize;
            let pcm = self
                .pcm
                .get(start..start + h.len as usize)
                .unwrap_or_default();
            (*h, pcm)
        })
    }

    /// Appends one frame: `caller` left, `heard` right, a side not recorded left silent.
    fn push(
        &mut self,
        id: RecordingId,
        seq: u32,
        caller: &[i16],
        heard: &[i16],
        sides: Participants,
    ) {
        let n = caller.len().min(heard.len()).min(MAX_FRAME_SAMPLES / 2);
        let start = self.pcm.len();
        self.pcm.resize(start + 2 * n, 0);
        let out = &mut self.pcm[start..];
        for ((pair, &c), &h) in out.chunks_exact_mut(2).zip(caller).zip(heard) {
            pair[0] = if sides.customer { c } else { 0 };
            pair[1] = if sides.agent { h } else { 0 };
        }
        self.heads.push(FrameHead {
            id,
            seq,
            start: start as u32,
            len: (2 * n) as u16,
        });
    }
}

/// The bounded queue between media threads and one writer. Pushing never wakes the writer:
/// it drains the queue on its own 20 ms rhythm. (A channel that woke the writer for every
/// frame spent more CPU on futex wake-ups than the whole recording path; measured with
/// `perf record -e cpu-clock` at 1,000 recorded calls.)
pub struct FrameQueue {
    batch: Mutex<FrameBatch>,
    capacity: usize,
}

impl FrameQueue {
    pub fn new(capacity: usize) -> Arc<FrameQueue> {
        Arc::new(FrameQueue {
            batch: Mutex::new(FrameBatch::default()),
            capacity: capacity.max(64),
        })
    }

    /// Queues a frame; false (the frame is dropped) when the writer is that far behind.
    pub fn push(
        &self,
        id: RecordingId,
        seq: u32,
        caller: &[i16],
        heard: &[i16],
        sides: Participants,
    ) -> bool {
        let mut q = match self.batch.lock() {
            Ok(q) => q,
            Err(poisoned) => poisoned.into_inner(),
        };
        if q.len() >= self.capacity {
            return false;
        }
        q.push(id, seq, caller, heard, sides);
        true
    }

    /// Moves every queued frame into `out` (which should be empty; its buffers are reused).
    pub fn take(&self, out: &mut FrameBatch) {
        let mut q = match self.batch.lock() {
            Ok(q) => q,
            Err(poisoned) => poisoned.into_inner(),
        };
        std::mem::swap(&mut *q, out);
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
    control: Sender<super::writer::WriterControl>,
    seq: u32,
    queued: u64,
    dropped: u64,
    paused: bool,
    ended: bool,
}

impl RecorderTap {
    pub(super) fn new(
        id: RecordingId,
        rate: u32,
        participants: Participants,
        data: Arc<FrameQueue>,
        control: Sender<super::writer::WriterControl>,
    ) -> RecorderTap {
        RecorderTap {
            id,
            rate,
            participants,
            data,
            control,
            seq: 0,
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

    /// One tick: `caller` and `heard` are 20 ms mono at [`RecorderTap::rate`].
    pub fn push(&mut self, caller: &[i16], heard: &[i16]) {
        if self.paused || self.ended {
            return;
        }
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        if self
            .data
            .push(self.id, seq, caller, heard, self.participants)
        {
            self.queued += 1;
        } else {
            self.dropped += 1;
        }
    }

    pub fn pause(&mut self) {
        if !self.paused {
            self.paused = true;
            let _ = self
                .control
                .send(super::writer::WriterControl::Tap(TapControl::Pause {
                    id: self.id,
                }));
        }
    }

    pub fn resume(&mut self) {
        if self.paused {
            self.paused = false;
            let _ = self
                .control
                .send(super::writer::WriterControl::Tap(TapControl::Resume {
                    id: self.id,
                }));
        }
    }

    /// Frames dropped so far because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Ends the recording: the writer seals it once the queued frames are written.
    pub fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            let _ = self
                .control
                .send(super::writer::WriterControl::Tap(TapControl::End {
                    id: self.id,
                    frames: self.queued,
                    dropped: self.dropped,
                }));
        }
    }
}

impl Drop for RecorderTap {
    /// A leg that goes away (call ended, worker stopped) still seals its recording.
    fn drop(&mut self) {
        self.end();
    }
}

/// Call-level recording control: what a flow's UpdateContactRecordingBehavior, the config
/// policy, `--record-all` and the HTTP API ask of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingControl {
    /// Start recording these participants (resumes a paused recording).
    Start(Participants),
    Pause,
    Resume,
    /// Stop and seal; a later Start makes a new recording.
    Stop,
}

/// What the call task tells the media leg.
pub enum LegRecording {
    Attach(Box<RecorderTap>),
    Pause,
    Resume,
    Detach,
}
