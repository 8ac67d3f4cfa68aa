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

mod queue;
mod tap;

pub use queue::{BLOCK_FRAMES, Block, FrameQueue, MAX_FRAME_SAMPLES, Samples, interleave_block};
pub use tap::RecorderTap;

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

/// What the call task tells the media leg.
pub enum LegRecording {
    Attach(Box<RecorderTap>),
    Pause,
    Resume,
    Detach,
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
