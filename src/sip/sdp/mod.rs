//! SDP offer/answer for one audio leg (RFC 3264 over RFC 8866/4566 SDP), sans-IO.
//!
//! Nothing here touches a socket, a clock or tokio: [`answer`] turns an offer into an answer
//! plus the [`Negotiated`] parameters the media engine needs, [`offer`] writes Careline's own
//! offer, and [`read_answer`] reads the peer's answer to it.
//!
//! ```
//! use careline::media::codec::Codec;
//! use careline::sip::sdp::{LocalMedia, answer};
//!
//! let local = LocalMedia {
//!     address: "192.0.2.10".parse().unwrap(),
//!     rtp_port: 20000,
//!     codecs: vec![Codec::Pcmu, Codec::Pcma],
//!     telephone_event: true,
//!     ptime_ms: 20,
//!     session_id: 42,
//!     session_version: 1,
//!     srtp: None,
//! };
//! let offer = "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\n\
//!              t=0 0\r\nm=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
//! let (text, negotiated) = answer(offer, &local)?;
//! assert_eq!(negotiated.codec, Codec::Pcma, "the caller's first acceptable codec wins");
//! assert_eq!(negotiated.remote_rtp, Some("198.51.100.7:4000".parse().unwrap()));
//! assert!(text.contains("m=audio 20000 RTP/AVP 8 101"));
//! # Ok::<(), careline::sip::sdp::SdpError>(())
//! ```
//!
//! # Why a hand-written parser and not `rtc-sdp`
//! `rtc-sdp` 0.21.1 (webrtc-rs) was tried against SIP SDP first. It follows the RFC 8866 §5
//! field order as a strict state machine, and so rejects bodies that SIP phones and gateways
//! really send and that every SIP stack accepts:
//! * no `t=` line (`SdpInvalidSyntax: m=`), which several SIP UAs omit since it means
//!   nothing for a call;
//! * session lines out of order, e.g. `b=AS:64` before `c=`, or a session `a=` before `t=`;
//! * unknown line types such as the `y=` SSRC line of GB28181 devices;
//! * an `m=` line with a media type outside its fixed list — which RFC 3264 §6 says must be
//!   answered with port 0, not fail the whole offer;
//! * `o=` session ids or versions longer than 64 bits (RFC 8866 only asks for digits);
//! * any byte that is not UTF-8 (reads through `BufRead::read_line`).
//!
//! It also pulls in `rand` 0.10, `nix`, `url` and `serde` for a job of about 150 lines.
//!
//! One concept per file: `parse` reads SDP text, `negotiate`
//! chooses what to use from it, `write` writes answers and offers; this module
//! holds the types they share and the three entry points.
//! The parser (`parse`) reads lines of the form `<letter>=<value>` in any order, accepts CRLF,
//! LF or bare CR line ends, ignores line types it does not use, and checks strictly only what
//! the answer depends on (`v=` first, a six-field `o=`, the `m=` line, the `c=` address of the
//! stream it accepts). It never panics and never indexes unchecked into the input.
//!
//! # What Careline negotiates
//! Exactly one audio stream on `RTP/AVP` (or `RTP/AVPF`), or `RTP/SAVP`/`RTP/SAVPF` with SDES
//! keys (RFC 4568, see `crypto`: over TLS only, unless allowed), one codec out of
//! [`Codec`] (PCMU, PCMA, Opus), optionally RFC 4733 `telephone-event`. Every other `m=` line
//! is rejected with port 0 in the answer, in its place (RFC 3264 §6).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::media::codec::Codec;
use crate::media::leg::LegParams;
use crate::media::srtp::SrtpKeys;

/// Dynamic payload type Careline offers for Opus (the value browsers and most SIP UAs use).
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
/// Dynamic payload type Careline offers for `telephone-event/8000`.
pub const TELEPHONE_EVENT_PAYLOAD_TYPE: u8 = 101;
/// Dynamic payload type Careline offers for `telephone-event/48000` (offered with Opus, since
/// RFC 4733 §2.1 ties the event clock to the audio clock).
pub const TELEPHONE_EVENT_48K_PAYLOAD_TYPE: u8 = 110;
/// Packetization used when the remote names none (RFC 3551 §4.5: 20 ms is the G.711 default;
/// RFC 7587 §4.1 uses 20 ms for Opus too).
pub const DEFAULT_PTIME_MS: u32 = 20;
/// The largest SDP body Careline reads. Real offers are a few hundred bytes to a few KiB;
/// the cap bounds the work (and the size of the answer, which echoes rejected `m=` lines).
pub const MAX_SDP_LEN: usize = 64 * 1024;

/// DTMF events Careline answers for (RFC 4733 §3.2: events 0-9, *, #, A-D).
const TELEPHONE_EVENTS_ANSWERED: &str = "0-15";
/// DTMF events Careline offers (0-15 plus 16, flash, which some PBXs send).
const TELEPHONE_EVENTS_OFFERED: &str = "0-16";
/// `a=ptime` values outside this range are ignored as nonsense (120 ms is the largest Opus
/// packet, RFC 7587 §4.1 `maxptime`).
const PTIME_RANGE_MS: std::ops::RangeInclusive<u32> = 1..=120;

/// What Careline offers or accepts on one leg.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalMedia {
    /// Written in `o=` and `c=`.
    pub address: IpAddr,
    pub rtp_port: u16,
    /// The codecs Careline accepts, in its own preference order. The order only matters when
    /// Careline makes the offer: as answerer it takes the offerer's order (see [`answer`]).
    pub codecs: Vec<Codec>,
    /// Accept/offer RFC 4733 `telephone-event`.
    pub telephone_event: bool,
    /// `a=ptime` in Careline's offers.
    pub ptime_ms: u32,
    /// `o=` session id; constant for the life of the session (RFC 3264 §5).
    pub session_id: u64,
    /// `o=` version; the caller bumps it for every new offer or changed answer (RFC 3264 §8).
    pub session_version: u64,
    /// SRTP by SDES (RFC 4568, see [`LocalSrtp`]); `None` when `[rtp] srtp = "off"`. In an
    /// offer, one key per allowed suite; in an answer, the key of the suite chosen.
    pub srtp: Option<LocalSrtp>,
}

impl LocalMedia {
    /// Answers a new offer in an existing session (re-INVITE, UPDATE: hold, unhold, a new
    /// address): the answer carries the next `o=` version (RFC 3264 §8); a refused offer
    /// leaves the session as it was.
    pub fn reanswer(&mut self, offer: &[u8]) -> Result<(String, Negotiated), SdpError> {
        self.session_version += 1;
        let result = answer(&String::from_utf8_lossy(offer), self);
        if result.is_err() {
            self.session_version -= 1;
        }
        result
    }
}

/// A stream direction attribute (RFC 3264 §5.1, §6.1), always from the writer's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The SDP attribute name (`sendrecv`, ...).
    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction an answerer must use for this offered direction (RFC 3264 §6.1:
    /// sendonly is answered recvonly, recvonly sendonly, inactive inactive).
    pub fn mirror(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// Whether the writer of this direction sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the writer of this direction receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The same direction with receiving removed: what a `c=0.0.0.0` connection address
    /// means in the RFC 2543 hold style (RFC 3264 §8.4: "don't send me media").
    fn without_receive(self) -> Direction {
        match self {
            Direction::SendRecv | Direction::SendOnly => Direction::SendOnly,
            Direction::RecvOnly | Direction::Inactive => Direction::Inactive,
        }
    }

    fn from_attribute(name: &str) -> Option<Direction> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| d.attribute().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.attribute())
    }
}

pub use crate::media::dtmf::TelephoneEvent;

/// The outcome of one offer/answer exchange, for the media engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    /// The payload type number the remote wrote for `codec` (RFC 3264 §6.1: the answer keeps
    /// the offer's numbers, so this is what both sides put in RTP).
    pub payload_type: u8,
    /// The telephone-event payload type and clock rate the remote wrote, if both sides want
    /// DTMF events.
    pub telephone_event: Option<TelephoneEvent>,
    /// From the remote's `a=ptime`, else [`DEFAULT_PTIME_MS`].
    pub ptime_ms: u32,
    /// Where to send RTP; `None` when the remote's `c=` is `0.0.0.0`/`::` (old-style hold).
    pub remote_rtp: Option<SocketAddr>,
    /// Where to send RTCP: `a=rtcp` (RFC 3605) if present, else RTP port + 1 (RFC 3550 §11).
    pub remote_rtcp: Option<SocketAddr>,
    /// The remote's direction; a `c=0.0.0.0` address takes receiving away from it
    /// (sendrecv becomes sendonly), per RFC 3264 §8.4.
    pub remote_direction: Direction,
    /// Careline's direction: the mirror of `remote_direction` (RFC 3264 §6.1).
    pub local_direction: Direction,
    /// SRTP keys when the stream is encrypted (SDES).
    pub srtp: Option<SrtpKeys>,
}

impl Negotiated {
    /// Careline should send RTP: its direction allows it and the remote gave an address.
    pub fn we_send(&self) -> bool {
        self.local_direction.sends() && self.remote_rtp.is_some()
    }

    /// Careline should expect RTP.
    pub fn we_receive(&self) -> bool {
        self.local_direction.receives()
    }

    /// The remote has put the call on hold: it does not want media from Careline
    /// (`sendonly`, `inactive`, or `c=0.0.0.0`; RFC 3264 §8.4).
    pub fn on_hold(&self) -> bool {
        !self.remote_direction.receives()
    }
}

/// Why an SDP body could not be answered or read.
///
/// [`SdpError::sip_status`] gives the SIP response: 400 for a malformed body, 488 Not
/// Acceptable Here for a well-formed one Careline cannot take (RFC 3261 §21.4.26).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is not SDP, or is truncated or malformed where it matters.
    #[error("malformed SDP: {0}")]
    Parse(String),
    /// No `m=audio` line with a non-zero port.
    #[error(
        "SDP offers no active audio stream (no m=audio line with a non-zero port); \
         Careline needs one m=audio on RTP/AVP"
    )]
    NoAudio,
    /// An audio stream on a supported profile, but none of its codecs is acceptable.
    #[error("no acceptable audio codec: offered {offered}; Careline accepts {accepted}")]
    NoAcceptableCodec { offered: String, accepted: String },
    /// Well-formed SDP that uses something Careline does not implement (SRTP, hostnames).
    #[error("unsupported SDP: {0}")]
    Unsupported(String),
}

impl SdpError {
    /// The SIP status code for rejecting the INVITE/re-INVITE carrying the body.
    pub fn sip_status(&self) -> u16 {
        match self {
            SdpError::Parse(_) => 400,
            SdpError::NoAudio | SdpError::NoAcceptableCodec { .. } | SdpError::Unsupported(_) => {
                488
            }
        }
    }
}

/// UAS side: answers an offer (RFC 3264 §6).
///
/// * The first `m=audio` with a non-zero port, an `RTP/AVP`/`RTP/AVPF` profile and an
///   acceptable codec is accepted; every other `m=` line (video, a second audio, an unknown
///   type) is answered in place with port 0, since the answer must have as many `m=` lines as
///   the offer, in the same order (RFC 3264 §6).
/// * The codec is the *offer's* first format that is in `local.codecs`: RFC 3264 §6.1 lets
///   the answerer choose, and honouring the caller's order avoids transcoding surprises on
///   the phone's side. The offer's payload type numbers are kept (§6.1 SHOULD).
/// * `telephone-event` is answered only if offered and `local.telephone_event`; of several,
///   the one whose clock rate matches the codec's wins (RFC 4733 §2.1), else the first.
/// * The answer carries the negotiated `a=ptime` (the remote's, else 20) so both directions
///   use one packetization, and the mirrored direction attribute (§6.1). A stream the
///   remote holds (`sendonly`, `c=0.0.0.0`) is answered `recvonly`; `inactive` with
///   `inactive` (§8.4).
///
/// A port 0 `m=audio` is the remote disabling audio (§8.2); as Careline has nothing else to
/// talk over this is [`SdpError::NoAudio`], for an initial offer and a re-offer alike.
pub fn answer(offer: &str, local: &LocalMedia) -> Result<(String, Negotiated), SdpError> {
    let sdp = parse(offer)?;
    let selected = select_audio(&sdp, local)?;
    let negotiated = negotiate(&sdp, &selected)?;
    let text = write_answer(&sdp, &selected, &negotiated, local);
    Ok((text, negotiated))
}

/// UAC side: Careline's offer (RFC 3264 §5).
///
/// One `m=audio` on `RTP/AVP` with `local.codecs` in order (PCMU 0, PCMA 8, Opus
/// [`OPUS_PAYLOAD_TYPE`] with `useinbandfec=1`), then, with `local.telephone_event`,
/// `telephone-event/8000` at [`TELEPHONE_EVENT_PAYLOAD_TYPE`] and, when Opus is offered,
/// `telephone-event/48000` at [`TELEPHONE_EVENT_48K_PAYLOAD_TYPE`] (RFC 4733 §2.1: the event
/// clock follows the codec the answerer picks). `a=rtpmap` is written for static types too.
///
/// With `local.srtp` and keys allowed, one `a=crypto` line per suite of `srtp.suites` (each
/// with its own key, [`LocalSrtp::key_for`]), on `RTP/SAVP` when plain RTP is refused and as
/// best-effort keys on `RTP/AVP` otherwise; [`read_answer`] then takes the suite and key the
/// answer names.
///
/// With no codecs at all the audio stream is offered with port 0 (RFC 3264 §5.1: offered
/// but not to be used), so the text is still valid SDP; [`read_answer`] then fails.
pub fn offer(local: &LocalMedia) -> String {
    let mut codecs: Vec<Codec> = Vec::new();
    for codec in &local.codecs {
        if !codecs.contains(codec) {
            codecs.push(*codec);
        }
    }
    let mut out = session_header(local);
    if codecs.is_empty() {
        let _ = write!(out, "m=audio 0 RTP/AVP 0\r\n");
        return out;
    }
    let mut formats: Vec<(u8, String, Option<String>)> = codecs
        .iter()
        .map(|&codec| {
            let pt = offered_payload_type(codec);
            let fmtp = (codec == Codec::Opus).then(|| "useinbandfec=1".to_string());
            (pt, rtpmap_value(codec), fmtp)
        })
        .collect();
    if local.telephone_event {
        formats.push((
            TELEPHONE_EVENT_PAYLOAD_TYPE,
            "telephone-event/8000".to_string(),
            Some(TELEPHONE_EVENTS_OFFERED.to_string()),
        ));
        if codecs.contains(&Codec::Opus) {
            formats.push((
                TELEPHONE_EVENT_48K_PAYLOAD_TYPE,
                "telephone-event/48000".to_string(),
                Some(TELEPHONE_EVENTS_OFFERED.to_string()),
            ));
        }
    }
    // SRTP (SDES) when keys may be given here: RTP/SAVP when plain RTP is refused, else
    // "best effort" keys on RTP/AVP, which a peer without SRTP ignores (see `crypto`).
    let cryptos = local.srtp.as_ref().map(offered_cryptos).unwrap_or_default();
    let profile = match &local.srtp {
        Some(srtp) if srtp.required && !cryptos.is_empty() => "RTP/SAVP",
        _ => "RTP/AVP",
    };
    let _ = write!(out, "m=audio {} {profile}", local.rtp_port);
    for (pt, _, _) in &formats {
        let _ = write!(out, " {pt}");
    }
    out.push_str("\r\n");
    for (pt, rtpmap, fmtp) in &formats {
        let _ = write!(out, "a=rtpmap:{pt} {rtpmap}\r\n");
        if let Some(fmtp) = fmtp {
            let _ = write!(out, "a=fmtp:{pt} {fmtp}\r\n");
        }
    }
    if local.ptime_ms > 0 {
        let _ = write!(out, "a=ptime:{}\r\n", local.ptime_ms);
    }
    let _ = write!(out, "a={}\r\n", Direction::SendRecv);
    out.push_str(&cryptos);
    out
}

/// UAC side: reads the answer to an [`offer`] (RFC 3264 §7).
///
/// The answer's audio stream is chosen like [`answer`] chooses one; its codec is the
/// answer's first format in `local.codecs` (the answerer lists its preference first, §6.1)
/// and the payload type is the answer's. A port 0 audio stream means the answerer refused it
/// (§6): [`SdpError::NoAudio`].
pub fn read_answer(answer: &str, local: &LocalMedia) -> Result<Negotiated, SdpError> {
    let sdp = parse(answer)?;
    let selected = select_audio(&sdp, local)?;
    negotiate(&sdp, &selected)
}

mod crypto;
mod negotiate;
mod parse;
mod write;

pub use crypto::LocalSrtp;
use crypto::*;
use negotiate::*;
use parse::*;
use write::*;

impl From<&Negotiated> for LegParams {
    /// What the media leg needs of an offer/answer outcome.
    fn from(n: &Negotiated) -> LegParams {
        LegParams {
            codec: n.codec,
            payload_type: n.payload_type,
            telephone_event: n.telephone_event,
            remote_rtp: n.remote_rtp,
            remote_rtcp: n.remote_rtcp,
            send: n.we_send(),
            receive: n.we_receive(),
            ptime_ms: n.ptime_ms,
            srtp: n.srtp.clone(),
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
