//! The media thread's end of a recording: one 20 ms stereo frame per tick into a bounded
//! channel, never waiting. When the writer falls behind, frames are counted and dropped
//! (the writer puts silence in their place so the channels stay aligned); the media clock
//! never stalls for a recording.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use super::format::RecordingId;

/// 20 ms of interleaved stereo at 16 kHz, the highest rate a leg records at.
pub const MAX_FRAME_SAMPLES: usize = 640;

/// One frame for the writer. Fixed-size so the bounded channel never allocates per frame.
pub struct TapFrame {
    pub id: RecordingId,
    /// Frame number within the recording (dropped frames leave a gap; pauses do not).
    pub seq: u32,
    pub len: u16,
    pub pcm: [i16; MAX_FRAME_SAMPLES],
}

/// The bounded queue between media threads and one writer. Pushing never wakes the writer:
/// it drains the queue on its own 20 ms rhythm. (A channel that woke the writer for every
/// frame spent more CPU on futex wake-ups than the whole recording path; measured with
/// `perf record -e cpu-clock` at 1,000 recorded calls.)
pub struct FrameQueue {
    frames: Mutex<Vec<TapFrame>>,
    capacity: usize,
}

impl FrameQueue {
    pub fn new(capacity: usize) -> Arc<FrameQueue> {
        Arc::new(FrameQueue {
            frames: Mutex::new(Vec::new()),
            capacity: capacity.max(64),
        })
    }

    /// Queues a frame; false (the frame is dropped) when the writer is that far behind.
    pub fn push(&self, frame: TapFrame) -> bool {
        let mut q = match self.frames.lock() {
            Ok(q) => q,
            Err(poisoned) => poisoned.into_inner(),
        };
        if q.len() >= self.capacity {
            return false;
        }
        q.push(frame);
        true
    }

    /// Moves every queued frame into `out` (which should be empty; its buffer is reused).
    pub fn take(&self, out: &mut Vec<TapFrame>) {
        let mut q = match self.frames.lock() {
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
        let n = caller.len().min(heard.len()).min(MAX_FRAME_SAMPLES / 2);
        let mut frame = TapFrame {
            id: self.id,
            seq: self.seq,
            len: (n * 2) as u16,
            pcm: [0; MAX_FRAME_SAMPLES],
        };
        for i in 0..n {
            if self.participants.customer {
                frame.pcm[2 * i] = caller[i];
            }
            if self.participants.agent {
                frame.pcm[2 * i + 1] = heard[i];
            }
        }
        self.seq = self.seq.wrapping_add(1);
        if self.data.push(frame) {
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
