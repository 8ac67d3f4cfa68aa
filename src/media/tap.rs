//! A live copy of a leg's audio for a listener outside the call (media streaming to a
//! transcriber or a voice bot): both directions as 20 ms frames of 8 kHz linear audio.
//!
//! The leg offers frames with `try_send` on a bounded channel and drops them when it is full:
//! a slow or dead listener never holds up the media clock. Who listens, and over what
//! protocol, is `flow::streaming`'s business.

use tokio::sync::mpsc;

/// Which side of the call a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    FromCustomer = 0,
    ToCustomer = 1,
}

/// One 20 ms frame of 8 kHz audio.
#[derive(Debug, Clone)]
pub struct TapFrame {
    pub track: Track,
    pub pcm: [i16; 160],
}

/// The sending end the media leg holds while streaming runs.
pub(crate) type TapSender = mpsc::Sender<TapFrame>;
