//! Media: RTP/RTCP, codecs, DTMF, jitter buffer, prompts and the media clock that drives
//! every call's leg. The cores (`leg`, `player`, `jitter`, `dtmf`, `amd`, `rtcp`, `rtp`, `srtp`, `webrtc`) are
//! sans-IO (as is `mixer`, a room's N-1 mixes); `engine` and `ports` own the threads and sockets.

pub mod amd;
pub mod bridge;
pub mod codec;
pub mod conference;
pub mod dtmf;
pub(crate) mod engine;
pub(crate) mod jitter;
pub mod leg;
pub mod mixer;
pub(crate) mod player;
pub(crate) mod ports;
pub mod prefetch;
pub mod prompt;
pub mod recognize;
pub mod recorder;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod srtp;
pub(crate) mod tap;
pub mod webrtc;
