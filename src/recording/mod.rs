//! Call recording: stereo audio (the caller; what the caller heard) encoded as Ogg Opus or
//! WAV, sealed as an encrypted chunk stream while the call runs, stored on the local disk or
//! in S3-compatible object storage, indexed, expired by a retention policy, and read back
//! only through the key ring. Plaintext audio never touches a disk.
//!
//! Cores (sans-IO): `format` (bytes on disk), `crypt` (envelope encryption), `sealer`,
//! `reader`, `encode`, `index` (the event log). Shells: `writer` (threads that encode, seal and write), `store` (files, spool, S3 uploads),
//! `service` (what the server and CLI call). The HTTP endpoints are in `api::recordings`.
//! The media thread's end of a recording (the tap the leg fills, the queue the writers drain)
//! is `media::recorder`: media is the bottom layer and owns what it shares.
//! The format is specified in docs/recording-format.md.

pub(crate) mod crypt;
pub mod encode;
pub(crate) mod export;
pub mod format;
pub mod index;
pub(crate) mod reader;
pub(crate) mod sealer;
pub(crate) mod service;
pub mod settings;
pub mod store;
pub mod writer;

pub use crate::media::recorder::Participants;
pub use format::{AudioFormat, RecordingId};
pub use service::{Archive, Recorder, RecordingError};

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
