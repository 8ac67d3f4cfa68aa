//! Two legs joined: what one leg receives becomes what the other sends, both ways. A bridge is
//! two [`Relay`]s, one per direction, each owned by the leg whose audio it carries.
//!
//! A relay is sans-IO and has no clock of its own: the media clock pushes whatever the source
//! leg's jitter buffer gave in a tick (a frame, or a frame lost) and pulls one 20 ms payload
//! for the target leg's next packet. So a bridge runs on the same tick as every other leg,
//! with no thread or timer per call, and both legs keep their own jitter buffers, RTCP and
//! DTMF detection (a caller's keys still reach the call while bridged).
//!
//! - **Same codec, 20 ms frames** (the common case: a phone and a browser both on G.711,
//!   which Careline offers browsers first for this reason): payloads pass as they are, never
//!   decoded. A lost frame is not invented: the target sends its own silence for it.
//! - **Different codecs, or another frame length** (a 30 ms phone): decoded to 8 kHz PCM and
//!   encoded again in the target's codec, through a short queue that turns the source's frame
//!   length into 20 ms packets. libopus takes and gives 8 kHz itself (its own resampler, RFC
//!   7587's 48 kHz RTP clock unchanged), so no separate resampling step runs: the only codecs
//!   Careline speaks are G.711 (8 kHz) and Opus. A lost frame becomes the decoder's
//!   concealment (Opus PLC; silence for G.711), so the target's timing holds.
//! - **Clock drift**: the two far ends' clocks differ slightly. Each source is read at
//!   Careline's pace by its own jitter buffer; what a relay holds is bounded
//!   ([`MAX_QUEUED_MS`]), so a faster sender costs a dropped frame now and then instead of a
//!   growing delay, and a slower one a packet of silence.
//! - **Mute**: a muted relay forwards nothing (the target hears silence), and what arrived
//!   before the mute is not played after it.
//!
//! # Example
//!
//! A phone on PCMU and a browser on Opus: each 20 ms frame the phone sends becomes one Opus
//! packet for the browser.
//!
//! ```
//! use careline::media::bridge::{Received, Relay};
//! use careline::media::codec::Codec;
//!
//! let mut to_browser = Relay::new(Codec::Pcmu, 20, Codec::Opus).unwrap();
//! assert!(!to_browser.passes_through());
//! for _ in 0..5 {
//!     to_browser.push(Received::Frame(&[0xFF; 160])); // 20 ms of µ-law silence
//!     let packet = to_browser.pull().expect("one packet per tick");
//!     assert!(!packet.is_empty() && packet.len() < 160);
//! }
//! assert_eq!(to_browser.pull(), None, "nothing more arrived");
//! ```

use std::collections::VecDeque;

use super::codec::opus::{OpusDecoder, OpusEncoder};
use super::codec::{Codec, CodecError, Law};
use super::prompt::FRAME_MS;

/// The most audio a relay holds for its target (more only for a source whose frames are longer
/// than 20 ms, which needs a lump and a half in hand): past it the oldest is dropped (a sender
/// whose clock runs fast, a burst after a stall), so a bridge never drifts into a growing delay.
pub const MAX_QUEUED_MS: u32 = 60;

/// The rate a transcoding relay works at: G.711's, and one libopus encodes and decodes.
const RATE: u32 = 8000;
const SAMPLES_PER_MS: usize = (RATE / 1000) as usize;
const FRAME_SAMPLES: usize = FRAME_MS as usize * SAMPLES_PER_MS;

/// What the source leg's jitter buffer gave for one of its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received<'a> {
    /// A payload in the source leg's codec.
    Frame(&'a [u8]),
    /// The frame was lost: its successors arrived, it did not.
    Missing,
}

/// One direction of a bridge: audio a source leg received, as payloads in the codec its
/// target sends.
pub struct Relay {
    mode: Mode,
    muted: bool,
    /// The payload [`Relay::pull`] last returned.
    out: Vec<u8>,
}

enum Mode {
    /// Same codec, 20 ms frames: payloads as they came (None: a lost frame).
    Pass {
        queue: VecDeque<Option<Vec<u8>>>,
        /// Buffers of frames already pulled, reused so relaying allocates nothing.
        spare: Vec<Vec<u8>>,
    },
    Transcode(Box<Transcode>),
}

struct Transcode {
    from: Decode,
    from_frame_ms: u32,
    to: Encode,
    /// Decoded audio not yet sent, at 8 kHz.
    pcm: VecDeque<i16>,
    /// Sending starts (again) once this much is queued: a source whose frames are longer
    /// than 20 ms arrives in lumps, and a packet every tick needs one lump in hand.
    prime: usize,
    primed: bool,
    /// The most that is kept queued.
    cap: usize,
    scratch: Vec<i16>,
    frame: Vec<i16>,
}

enum Decode {
    Law(Law),
    Opus(OpusDecoder),
}

enum Encode {
    Law(Law),
    Opus(OpusEncoder),
}

impl Relay {
    /// A relay from a leg receiving `from` in frames of `from_frame_ms` (its SDP ptime) to a
    /// leg sending `to` in 20 ms packets.
    pub fn new(from: Codec, from_frame_ms: u32, to: Codec) -> Result<Relay, CodecError> {
        let mode = if from == to && from_frame_ms == FRAME_MS {
            Mode::Pass {
                queue: VecDeque::with_capacity(Self::max_frames() + 1),
                spare: Vec::new(),
            }
        } else {
            let from_dec = match Law::of(from) {
                Some(law) => Decode::Law(law),
                None => Decode::Opus(OpusDecoder::new(RATE)?),
            };
            let to_enc = match Law::of(to) {
                Some(law) => Encode::Law(law),
                None => Encode::Opus(OpusEncoder::with_rate(RATE)?),
            };
            let from_frame_ms = from_frame_ms.clamp(10, 120);
            let lump = from_frame_ms as usize * SAMPLES_PER_MS;
            let prime = if from_frame_ms == FRAME_MS {
                FRAME_SAMPLES
            } else {
                lump + FRAME_SAMPLES
            };
            let cap = (MAX_QUEUED_MS as usize * SAMPLES_PER_MS).max(prime + lump);
            Mode::Transcode(Box::new(Transcode {
                from: from_dec,
                from_frame_ms,
                to: to_enc,
                prime,
                primed: false,
                cap,
                pcm: VecDeque::with_capacity(cap + lump),
                scratch: Vec::with_capacity(120 * SAMPLES_PER_MS),
                frame: Vec::with_capacity(FRAME_SAMPLES),
            }))
        };
        Ok(Relay {
            mode,
            muted: false,
            out: Vec::with_capacity(160),
        })
    }

    fn max_frames() -> usize {
        (MAX_QUEUED_MS / FRAME_MS) as usize
    }

    /// Whether payloads pass as they are (no decoding, no encoding).
    pub fn passes_through(&self) -> bool {
        matches!(self.mode, Mode::Pass { .. })
    }

    pub fn set_muted(&mut self, muted: bool) {
        self.muted = muted;
        if muted {
            self.clear();
        }
    }

    pub fn is_muted(&self) -> bool {
        self.muted
    }

    /// Drops whatever waits to be sent.
    pub fn clear(&mut self) {
        match &mut self.mode {
            Mode::Pass { queue, spare } => {
                spare.extend(queue.drain(..).flatten());
            }
            Mode::Transcode(t) => {
                t.pcm.clear();
                t.primed = false;
            }
        }
    }

    /// One frame the source leg received (in the order its jitter buffer played them).
    pub fn push(&mut self, received: Received<'_>) {
        if self.muted {
            return;
        }
        match &mut self.mode {
            Mode::Pass { queue, spare } => {
                let frame = match received {
                    Received::Frame(payload) => {
                        let mut buf = spare.pop().unwrap_or_default();
                        buf.clear();
                        buf.extend_from_slice(payload);
                        Some(buf)
                    }
                    Received::Missing => None,
                };
                queue.push_back(frame);
                while queue.len() > Self::max_frames() {
                    if let Some(Some(old)) = queue.pop_front() {
                        spare.push(old);
                    }
                }
            }
            Mode::Transcode(t) => t.push(received),
        }
    }

    /// The payload the target leg sends in this tick, in its codec; `None` when nothing is
    /// due (nothing arrived, a lost frame passed through, muted): the target then sends its
    /// own silence.
    pub fn pull(&mut self) -> Option<&[u8]> {
        if self.muted {
            return None;
        }
        match &mut self.mode {
            Mode::Pass { queue, spare } => {
                let frame = queue.pop_front()??;
                self.out.clear();
                self.out.extend_from_slice(&frame);
                spare.push(frame);
                Some(&self.out)
            }
            Mode::Transcode(t) => {
                if !t.primed && t.pcm.len() < t.prime {
                    return None;
                }
                if t.pcm.len() < FRAME_SAMPLES {
                    // The source stalled: wait for a lump in hand again.
                    t.primed = false;
                    return None;
                }
                t.primed = true;
                t.frame.clear();
                t.frame.extend(t.pcm.drain(..FRAME_SAMPLES));
                self.out.clear();
                match &mut t.to {
                    Encode::Law(law) => law.encode(&t.frame, &mut self.out),
                    Encode::Opus(enc) => match enc.encode(&t.frame) {
                        Ok(packet) => self.out.extend_from_slice(packet),
                        // libopus refuses only a malformed frame, which this never builds.
                        Err(_) => return None,
                    },
                }
                Some(&self.out)
            }
        }
    }
}

impl Transcode {
    fn push(&mut self, received: Received<'_>) {
        self.scratch.clear();
        let samples = self.from_frame_ms as usize * SAMPLES_PER_MS;
        match (&mut self.from, received) {
            (Decode::Law(law), Received::Frame(payload)) => law.decode(payload, &mut self.scratch),
            (Decode::Opus(dec), Received::Frame(payload)) => {
                // A corrupt packet is concealed like a lost one.
                if dec.decode(payload, &mut self.scratch).is_err() {
                    let _ = dec.conceal(samples, &mut self.scratch);
                }
            }
            (Decode::Opus(dec), Received::Missing) => {
                let _ = dec.conceal(samples, &mut self.scratch);
            }
            (Decode::Law(_), Received::Missing) => {}
        }
        // Whatever concealment could not give (G.711 has none) is silence of the frame's
        // length, so the target's audio keeps its timing.
        if self.scratch.is_empty() {
            self.scratch.resize(samples, 0);
        }
        self.pcm.extend(self.scratch.iter().copied());
        if self.pcm.len() > self.cap {
            let excess = self.pcm.len() - self.cap;
            self.pcm.drain(..excess);
        }
    }
}

#[cfg(test)]
#[path = "bridge_tests.rs"]
mod tests;
