//! Media: RTP/RTCP, codecs, DTMF, jitter buffer, prompts and the media clock that drives
//! every call's leg. The cores (`leg`, `player`, `jitter`, `dtmf`, `rtcp`, `rtp`) are sans-IO;
//! `engine` and `ports` own the threads and sockets.

pub mod codec;
pub mod dtmf;
pub mod engine;
pub mod jitter;
pub mod leg;
pub mod player;
pub mod ports;
pub mod prefetch;
pub mod prompt;
pub mod recognize;
pub mod recorder;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod tap;
