//! careline-loadtest: synthetic SIP/RTP callers that check what they hear, and Careline's
//! capacity benchmark. The protocol and media pieces (SDP, RTP, codecs, DTMF generation,
//! prompt encoding) are the server's own sans-IO cores from the `careline` library.

pub mod answerer;
pub mod audio;
pub mod caller;
pub mod capacity;
pub mod clock;
pub mod hear;
pub mod measure;
pub mod net;
pub mod procstat;
pub mod report;
pub mod rtpstats;
pub mod run;
pub mod scenario;
pub mod server;
pub mod sip;
pub mod speech;
pub mod webrtc;
pub mod whip;
pub mod worker;
