//! SDP offer/answer for one audio leg (RFC 3264 over RFC 8866/4566 SDP), sans-IO.
//!
//! Nothing here touches a socket, a clock or tokio: [`answer`] turns an offer into an answer
//! plus the [`Negotiated`] parameters the media engine needs, [`offer`] writes Careline's own
//! offer, and [`read_answer`] reads the peer's answer to it.
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
//! The parser below reads lines of the form `<letter>=<value>` in any order, accepts CRLF,
//! LF or bare CR line ends, ignores line types it does not use, and checks strictly only what
//! the answer depends on (`v=` first, a six-field `o=`, the `m=` line, the `c=` address of the
//! stream it accepts). It never panics and never indexes unchecked into the input.
//!
//! # What Careline negotiates
//! Exactly one audio stream on `RTP/AVP` (or `RTP/AVPF`), one codec out of
//! [`Codec`] (PCMU, PCMA, Opus), optionally RFC 4733 `telephone-event`. SRTP profiles are
//! refused with [`SdpError::Unsupported`] until SRTP exists. Every other `m=` line is rejected
//! with port 0 in the answer, in its place (RFC 3264 §6).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::media::codec::Codec;
use crate::media::leg::LegParams;

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
    let _ = write!(out, "m=audio {} RTP/AVP", local.rtp_port);
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

// ---------------------------------------------------------------------------------------
// Answer and offer text
// ---------------------------------------------------------------------------------------

fn address_type(address: IpAddr) -> &'static str {
    if address.is_ipv4() { "IP4" } else { "IP6" }
}

/// `v=`, `o=`, `s=`, `c=`, `t=` — the session part of both offers and answers. `t=0 0`: an
/// unbounded session (RFC 3264 §5).
fn session_header(local: &LocalMedia) -> String {
    let ip = address_type(local.address);
    let mut out = String::with_capacity(512);
    let _ = write!(
        out,
        "v=0\r\no=careline {} {} IN {ip} {addr}\r\ns=careline\r\nc=IN {ip} {addr}\r\nt=0 0\r\n",
        local.session_id,
        local.session_version,
        addr = local.address,
    );
    out
}

fn offered_payload_type(codec: Codec) -> u8 {
    codec.static_payload_type().unwrap_or(OPUS_PAYLOAD_TYPE)
}

/// `PCMU/8000`, `opus/48000/2`: the channel count is written only when it is not 1
/// (RFC 8866 §6.6).
fn rtpmap_value(codec: Codec) -> String {
    if codec.sdp_channels() > 1 {
        format!(
            "{}/{}/{}",
            codec.encoding_name(),
            codec.clock_rate(),
            codec.sdp_channels()
        )
    } else {
        format!("{}/{}", codec.encoding_name(), codec.clock_rate())
    }
}

fn write_answer(
    offer: &Sdp<'_>,
    selected: &Selected<'_, '_>,
    negotiated: &Negotiated,
    local: &LocalMedia,
) -> String {
    let mut out = session_header(local);
    for (index, media) in offer.media.iter().enumerate() {
        if index != selected.index {
            // RFC 3264 §6: a rejected stream keeps its place, with port 0; the formats are
            // ignored but at least one must be present, so the offer's are echoed.
            let _ = write!(
                out,
                "m={} 0 {} {}\r\n",
                media.kind,
                media.proto,
                media.fmts.join(" ")
            );
            continue;
        }
        let pt = negotiated.payload_type;
        let _ = write!(out, "m=audio {} {} {pt}", local.rtp_port, selected.proto);
        if let Some(te) = negotiated.telephone_event {
            let _ = write!(out, " {}", te.payload_type);
        }
        out.push_str("\r\n");
        let _ = write!(out, "a=rtpmap:{pt} {}\r\n", rtpmap_value(negotiated.codec));
        if negotiated.codec == Codec::Opus && opus_inband_fec(selected.media, pt) {
            let _ = write!(out, "a=fmtp:{pt} useinbandfec=1\r\n");
        }
        if let Some(te) = negotiated.telephone_event {
            let _ = write!(
                out,
                "a=rtpmap:{0} telephone-event/{1}\r\na=fmtp:{0} {2}\r\n",
                te.payload_type, te.clock_rate, TELEPHONE_EVENTS_ANSWERED
            );
        }
        let _ = write!(out, "a=ptime:{}\r\n", negotiated.ptime_ms);
        let _ = write!(out, "a={}\r\n", negotiated.local_direction);
    }
    out
}

/// Whether the offer's `a=fmtp` for the Opus payload type asks for in-band FEC
/// (RFC 7587 §6.1 `useinbandfec=1`); Careline then echoes it.
fn opus_inband_fec(media: &Media<'_>, pt: u8) -> bool {
    media
        .attrs("fmtp")
        .filter_map(parse_fmtp)
        .filter(|(fmtp_pt, _)| *fmtp_pt == pt)
        .flat_map(|(_, params)| params.split(';'))
        .filter_map(|param| param.split_once('='))
        .any(|(key, value)| key.trim().eq_ignore_ascii_case("useinbandfec") && value.trim() == "1")
}

// ---------------------------------------------------------------------------------------
// Choosing the stream, the codec and telephone-event
// ---------------------------------------------------------------------------------------

/// The audio stream Careline takes, and what it takes from it.
struct Selected<'s, 'a> {
    index: usize,
    media: &'s Media<'a>,
    /// The profile written back: `RTP/AVP` or `RTP/AVPF`, as offered (RFC 3264 §6 keeps the
    /// transport of an accepted stream).
    proto: &'static str,
    codec: Codec,
    payload_type: u8,
    telephone_event: Option<TelephoneEvent>,
}

/// What one payload type in an `m=` line stands for.
enum Format {
    Codec(Codec),
    TelephoneEvent(u32),
    /// Anything else, described for error messages (`G729/8000`).
    Other(String),
}

fn supported_profile(proto: &str) -> Option<&'static str> {
    ["RTP/AVP", "RTP/AVPF"]
        .into_iter()
        .find(|p| p.eq_ignore_ascii_case(proto))
}

fn select_audio<'s, 'a>(
    sdp: &'s Sdp<'a>,
    local: &LocalMedia,
) -> Result<Selected<'s, 'a>, SdpError> {
    let mut unsupported: Option<String> = None;
    let mut offered: Vec<String> = Vec::new();
    let mut saw_rtp_audio = false;
    for (index, media) in sdp.media.iter().enumerate() {
        if !media.kind.eq_ignore_ascii_case("audio") || media.port == 0 {
            continue;
        }
        let Some(proto) = supported_profile(media.proto) else {
            unsupported.get_or_insert_with(|| {
                format!(
                    "m=audio profile {} (line {}); Careline accepts RTP/AVP or RTP/AVPF only \
                     (SRTP/DTLS is not supported)",
                    media.proto, media.line
                )
            });
            continue;
        };
        saw_rtp_audio = true;
        let formats = media.formats();
        let chosen = formats.iter().find_map(|(pt, format)| match format {
            Format::Codec(codec) if local.codecs.contains(codec) => Some((*codec, *pt)),
            _ => None,
        });
        let Some((codec, payload_type)) = chosen else {
            offered.extend(formats.iter().map(|(pt, format)| describe(*pt, format)));
            continue;
        };
        let telephone_event = if local.telephone_event {
            let events: Vec<TelephoneEvent> = formats
                .iter()
                .filter_map(|(pt, format)| match format {
                    Format::TelephoneEvent(rate) => Some(TelephoneEvent {
                        payload_type: *pt,
                        clock_rate: *rate,
                    }),
                    _ => None,
                })
                .collect();
            events
                .iter()
                .find(|te| te.clock_rate == codec.clock_rate())
                .or(events.first())
                .copied()
        } else {
            None
        };
        return Ok(Selected {
            index,
            media,
            proto,
            codec,
            payload_type,
            telephone_event,
        });
    }
    if saw_rtp_audio {
        let offered = if offered.is_empty() {
            "no recognisable payload types".to_string()
        } else {
            offered.join(", ")
        };
        return Err(SdpError::NoAcceptableCodec {
            offered,
            accepted: accepted(local),
        });
    }
    Err(unsupported.map_or(SdpError::NoAudio, SdpError::Unsupported))
}

fn describe(pt: u8, format: &Format) -> String {
    match format {
        Format::Codec(codec) => format!("{} (PT {pt})", rtpmap_value(*codec)),
        Format::TelephoneEvent(rate) => format!("telephone-event/{rate} (PT {pt})"),
        Format::Other(name) => format!("{name} (PT {pt})"),
    }
}

fn accepted(local: &LocalMedia) -> String {
    if local.codecs.is_empty() {
        return "no codec (none configured)".to_string();
    }
    let mut list: Vec<String> = Vec::new();
    for codec in &local.codecs {
        let name = rtpmap_value(*codec);
        if !list.contains(&name) {
            list.push(name);
        }
    }
    list.join(", ")
}

fn negotiate(sdp: &Sdp<'_>, selected: &Selected<'_, '_>) -> Result<Negotiated, SdpError> {
    let media = selected.media;
    let conn = media.conn.or(sdp.session_conn).ok_or_else(|| {
        SdpError::Parse(format!(
            "line {}: m=audio has no c= line and there is no session-level c= (RFC 8866 §5.7)",
            media.line
        ))
    })?;
    let ip = parse_connection(conn)?;
    let declared = media
        .direction()
        .or_else(|| direction_in(&sdp.session_attrs))
        .unwrap_or(Direction::SendRecv);
    let hold_address = ip.is_unspecified();
    let remote_direction = if hold_address {
        declared.without_receive()
    } else {
        declared
    };
    let remote_rtp = (!hold_address).then(|| SocketAddr::new(ip, media.port));
    let remote_rtcp = remote_rtp.and_then(|rtp| rtcp_address(media, rtp));
    let ptime_ms = media
        .attrs("ptime")
        .chain(attrs_named(&sdp.session_attrs, "ptime"))
        .find_map(parse_ptime)
        .unwrap_or(DEFAULT_PTIME_MS);
    Ok(Negotiated {
        codec: selected.codec,
        payload_type: selected.payload_type,
        telephone_event: selected.telephone_event,
        ptime_ms,
        remote_rtp,
        remote_rtcp,
        remote_direction,
        local_direction: remote_direction.mirror(),
    })
}

/// RTCP goes to `a=rtcp:<port> [IN IP4|IP6 <addr>]` (RFC 3605 §2.1) when given, else to the
/// RTP port + 1 at the RTP address (RFC 3550 §11). `None` when that port would be 65536.
fn rtcp_address(media: &Media<'_>, rtp: SocketAddr) -> Option<SocketAddr> {
    let explicit = media.attrs("rtcp").find_map(|value| {
        let mut fields = value.split_whitespace();
        let port = fields.next()?.parse::<u16>().ok().filter(|p| *p != 0)?;
        let ip = match (fields.next(), fields.next(), fields.next()) {
            (Some(_net), Some(_kind), Some(addr)) => addr
                .parse::<IpAddr>()
                .ok()
                .filter(|ip| !ip.is_unspecified())
                .unwrap_or(rtp.ip()),
            _ => rtp.ip(),
        };
        Some(SocketAddr::new(ip, port))
    });
    explicit.or_else(|| {
        rtp.port()
            .checked_add(1)
            .map(|p| SocketAddr::new(rtp.ip(), p))
    })
}

/// `a=ptime` in milliseconds; a decimal value (`20.0`, `2.5`) is rounded; values outside
/// 1-120 ms are ignored.
fn parse_ptime(value: &str) -> Option<u32> {
    let value = value.trim();
    let ms = match value.parse::<u32>() {
        Ok(ms) => ms,
        Err(_) => {
            let ms = value.parse::<f64>().ok().filter(|v| v.is_finite())?.round();
            if !(0.0..=f64::from(u32::MAX)).contains(&ms) {
                return None;
            }
            ms as u32
        }
    };
    PTIME_RANGE_MS.contains(&ms).then_some(ms)
}

/// The address of a `c=` value: `IN IP4 <addr>[/ttl[/n]]` or `IN IP6 <addr>[/n]`.
fn parse_connection(conn: Conn<'_>) -> Result<IpAddr, SdpError> {
    let mut fields = conn.value.split_whitespace();
    let (Some(net), Some(kind), Some(addr)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(SdpError::Parse(format!(
            "line {}: c= needs `IN IP4|IP6 <address>`, found `c={}`",
            conn.line,
            excerpt(conn.value)
        )));
    };
    if !net.eq_ignore_ascii_case("IN")
        || !(kind.eq_ignore_ascii_case("IP4") || kind.eq_ignore_ascii_case("IP6"))
    {
        return Err(SdpError::Unsupported(format!(
            "connection `c={}` (line {}); Careline accepts IN IP4 or IN IP6",
            excerpt(conn.value),
            conn.line
        )));
    }
    let host = addr.split('/').next().unwrap_or(addr);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let looks_like_hostname = host.chars().any(|c| c.is_ascii_alphabetic())
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if looks_like_hostname {
        // RFC 8866 §5.7 allows an FQDN, but resolving it is I/O this module does not do,
        // and no phone Careline serves sends one.
        Err(SdpError::Unsupported(format!(
            "c= names host `{}` (line {}); Careline needs a numeric IPv4 or IPv6 address",
            excerpt(host),
            conn.line
        )))
    } else {
        Err(SdpError::Parse(format!(
            "line {}: `{}` in c= is not an IP address",
            conn.line,
            excerpt(host)
        )))
    }
}

// ---------------------------------------------------------------------------------------
// The tolerant SDP reader (see the module doc for why it exists)
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct Sdp<'a> {
    session_conn: Option<Conn<'a>>,
    session_attrs: Vec<Attr<'a>>,
    media: Vec<Media<'a>>,
}

#[derive(Clone, Copy, Debug)]
struct Conn<'a> {
    line: usize,
    value: &'a str,
}

#[derive(Clone, Copy, Debug)]
struct Attr<'a> {
    name: &'a str,
    value: Option<&'a str>,
}

#[derive(Debug)]
struct Media<'a> {
    line: usize,
    kind: &'a str,
    port: u16,
    proto: &'a str,
    fmts: Vec<&'a str>,
    conn: Option<Conn<'a>>,
    attrs: Vec<Attr<'a>>,
}

/// `a=rtpmap:<pt> <name>/<rate>[/<channels>]` (RFC 8866 §6.6).
#[derive(Clone, Copy, Debug)]
struct RtpMap<'a> {
    name: &'a str,
    rate: u32,
    channels: Option<&'a str>,
}

fn attrs_named<'s, 'a>(
    attrs: &'s [Attr<'a>],
    name: &'static str,
) -> impl Iterator<Item = &'a str> + 's {
    attrs
        .iter()
        .filter(move |a| a.name.eq_ignore_ascii_case(name))
        .filter_map(|a| a.value)
}

fn direction_in(attrs: &[Attr<'_>]) -> Option<Direction> {
    attrs.iter().find_map(|a| Direction::from_attribute(a.name))
}

impl<'a> Media<'a> {
    fn attrs<'s>(&'s self, name: &'static str) -> impl Iterator<Item = &'a str> + 's {
        attrs_named(&self.attrs, name)
    }

    /// Media-level direction; the session-level one applies only when this is `None`
    /// (RFC 3264 §5.1, RFC 8866 §6.7).
    fn direction(&self) -> Option<Direction> {
        direction_in(&self.attrs)
    }

    /// The `m=` formats in order, as RTP payload types with what each stands for. Formats
    /// that are not payload type numbers are skipped.
    fn formats(&self) -> Vec<(u8, Format)> {
        let mut rtpmaps: [Option<RtpMap<'a>>; 128] = [None; 128];
        for rtpmap in self.attrs("rtpmap").filter_map(parse_rtpmap) {
            if let Some(slot) = rtpmaps.get_mut(usize::from(rtpmap.0)) {
                // The first rtpmap for a payload type wins; a repeat is ignored.
                slot.get_or_insert(rtpmap.1);
            }
        }
        self.fmts
            .iter()
            .filter_map(|fmt| fmt.parse::<u8>().ok())
            .filter_map(|pt| {
                let rtpmap = rtpmaps.get(usize::from(pt))?;
                Some((pt, classify(pt, rtpmap.as_ref())))
            })
            .collect()
    }
}

/// Maps a payload type to a [`Format`]. An `a=rtpmap` decides when present (names compare
/// case-insensitively, RFC 4855 §3); without one, the RFC 3551 §6 static assignment does —
/// SIPp and many phones send `m=audio ... 0 8` with no rtpmap at all (RFC 8866 §6.6 makes
/// it optional for static types).
fn classify(pt: u8, rtpmap: Option<&RtpMap<'_>>) -> Format {
    let Some(map) = rtpmap else {
        return match pt {
            0 => Format::Codec(Codec::Pcmu),
            8 => Format::Codec(Codec::Pcma),
            _ => Format::Other(
                static_payload_name(pt)
                    .map_or_else(|| "unknown (no rtpmap)".to_string(), str::to_string),
            ),
        };
    };
    let channels_are = |wanted: &str| map.channels.is_none_or(|c| c == wanted);
    let name = map.name;
    if name.eq_ignore_ascii_case("telephone-event") && map.rate > 0 {
        return Format::TelephoneEvent(map.rate);
    }
    for codec in Codec::ALL {
        let channels = codec.sdp_channels().to_string();
        if name.eq_ignore_ascii_case(codec.encoding_name())
            && map.rate == codec.clock_rate()
            && channels_are(&channels)
        {
            return Format::Codec(codec);
        }
    }
    Format::Other(match map.channels {
        Some(channels) => format!("{name}/{}/{channels}", map.rate),
        None => format!("{name}/{}", map.rate),
    })
}

/// RFC 3551 §6 Table 4/5 static payload types, for naming what a caller offered.
fn static_payload_name(pt: u8) -> Option<&'static str> {
    Some(match pt {
        0 => "PCMU/8000",
        3 => "GSM/8000",
        4 => "G723/8000",
        5 => "DVI4/8000",
        6 => "DVI4/16000",
        7 => "LPC/8000",
        8 => "PCMA/8000",
        9 => "G722/8000",
        10 => "L16/44100/2",
        11 => "L16/44100",
        12 => "QCELP/8000",
        13 => "CN/8000",
        14 => "MPA/90000",
        15 => "G728/8000",
        16 => "DVI4/11025",
        17 => "DVI4/22050",
        18 => "G729/8000",
        25 => "CelB/90000",
        26 => "JPEG/90000",
        28 => "nv/90000",
        31 => "H261/90000",
        32 => "MPV/90000",
        33 => "MP2T/90000",
        34 => "H263/90000",
        _ => return None,
    })
}

fn parse_payload_type(text: &str) -> Option<u8> {
    text.trim().parse::<u8>().ok().filter(|pt| *pt <= 127)
}

fn parse_rtpmap(value: &str) -> Option<(u8, RtpMap<'_>)> {
    let (pt, encoding) = value.trim().split_once(char::is_whitespace)?;
    let pt = parse_payload_type(pt)?;
    let mut parts = encoding.trim().split('/');
    let name = parts.next()?.trim();
    let rate = parts.next()?.trim().parse::<u32>().ok()?;
    let channels = parts.next().map(str::trim);
    Some((
        pt,
        RtpMap {
            name,
            rate,
            channels,
        },
    ))
}

fn parse_fmtp(value: &str) -> Option<(u8, &str)> {
    let (pt, params) = value.trim().split_once(char::is_whitespace)?;
    Some((parse_payload_type(pt)?, params.trim()))
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let mut short: String = text.chars().take(MAX).collect();
        short.push('…');
        short
    }
}

fn parse_error(line: usize, message: impl std::fmt::Display) -> SdpError {
    SdpError::Parse(format!("line {line}: {message}"))
}

/// Reads SDP leniently: any order of lines, CRLF/LF/CR, surrounding blanks trimmed, unknown
/// line types ignored. Checked: the body starts with `v=0`, has an `o=` of six fields
/// (so a body cut short in its header fails), and each `m=` line has a port and a format.
fn parse(text: &str) -> Result<Sdp<'_>, SdpError> {
    if text.len() > MAX_SDP_LEN {
        return Err(SdpError::Parse(format!(
            "SDP body of {} bytes is larger than the {MAX_SDP_LEN} bytes Careline reads",
            text.len()
        )));
    }
    let mut sdp = Sdp {
        session_conn: None,
        session_attrs: Vec::new(),
        media: Vec::new(),
    };
    let mut seen_version = false;
    let mut seen_origin = false;
    for (index, physical) in text.split('\n').enumerate() {
        let line_no = index + 1;
        for piece in physical.split('\r') {
            let line = piece.trim();
            if line.is_empty() {
                continue;
            }
            let bytes = line.as_bytes();
            let (kind, value) = match (bytes.first(), bytes.get(1), line.get(2..)) {
                (Some(kind), Some(b'='), Some(value)) if kind.is_ascii_alphabetic() => {
                    (*kind, value.trim())
                }
                _ => {
                    return Err(parse_error(
                        line_no,
                        format_args!("expected `<type>=<value>`, found `{}`", excerpt(line)),
                    ));
                }
            };
            if !seen_version {
                if kind != b'v' {
                    return Err(parse_error(
                        line_no,
                        format_args!("SDP must start with `v=0`, found `{}`", excerpt(line)),
                    ));
                }
                if value != "0" {
                    return Err(parse_error(
                        line_no,
                        format_args!(
                            "unknown SDP version `v={}` (only v=0 exists)",
                            excerpt(value)
                        ),
                    ));
                }
                seen_version = true;
                continue;
            }
            match kind {
                b'o' => {
                    if value.split_whitespace().count() < 6 {
                        return Err(parse_error(
                            line_no,
                            format_args!(
                                "o= needs six fields (<user> <id> <version> IN IP4 <addr>), \
                                 found `o={}`",
                                excerpt(value)
                            ),
                        ));
                    }
                    seen_origin = true;
                }
                b'c' => {
                    let conn = Conn {
                        line: line_no,
                        value,
                    };
                    let slot = match sdp.media.last_mut() {
                        Some(media) => &mut media.conn,
                        None => &mut sdp.session_conn,
                    };
                    // Several c= lines only occur for layered multicast; the first is used.
                    slot.get_or_insert(conn);
                }
                b'a' => {
                    let attr = match value.split_once(':') {
                        Some((name, v)) => Attr {
                            name: name.trim(),
                            value: Some(v.trim()),
                        },
                        None => Attr {
                            name: value,
                            value: None,
                        },
                    };
                    match sdp.media.last_mut() {
                        Some(media) => media.attrs.push(attr),
                        None => sdp.session_attrs.push(attr),
                    }
                }
                b'm' => sdp.media.push(parse_media_line(line_no, value)?),
                // v= again, s=, i=, u=, e=, p=, b=, t=, r=, z=, k= and vendor lines carry
                // nothing an audio answer depends on.
                _ => {}
            }
        }
    }
    if !seen_version {
        return Err(SdpError::Parse("empty SDP body".to_string()));
    }
    if !seen_origin {
        return Err(SdpError::Parse(
            "missing o= line (RFC 8866 §5.2)".to_string(),
        ));
    }
    Ok(sdp)
}

/// `m=<media> <port>[/<count>] <proto> <fmt> ...` (RFC 8866 §5.14).
fn parse_media_line(line: usize, value: &str) -> Result<Media<'_>, SdpError> {
    let mut fields = value.split_whitespace();
    let (Some(kind), Some(port), Some(proto)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(parse_error(
            line,
            format_args!(
                "m= needs `<media> <port> <proto> <fmt>...`, found `m={}`",
                excerpt(value)
            ),
        ));
    };
    let fmts: Vec<&str> = fields.collect();
    if fmts.is_empty() {
        return Err(parse_error(
            line,
            format_args!("m= lists no media format: `m={}`", excerpt(value)),
        ));
    }
    let port_text = port.split('/').next().unwrap_or(port);
    let port = port_text.parse::<u16>().map_err(|_| {
        parse_error(
            line,
            format_args!("`{}` in m= is not a port number", excerpt(port_text)),
        )
    })?;
    Ok(Media {
        line,
        kind,
        port,
        proto,
        fmts,
        conn: None,
        attrs: Vec::new(),
    })
}

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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn local() -> LocalMedia {
        LocalMedia {
            address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            rtp_port: 40000,
            codecs: vec![Codec::Pcmu, Codec::Pcma, Codec::Opus],
            telephone_event: true,
            ptime_ms: 20,
            session_id: 42,
            session_version: 1,
        }
    }

    fn local_with(codecs: &[Codec]) -> LocalMedia {
        LocalMedia {
            codecs: codecs.to_vec(),
            ..local()
        }
    }

    fn crlf(text: &str) -> String {
        text.lines().map(|l| format!("{l}\r\n")).collect()
    }

    fn sock(text: &str) -> Option<SocketAddr> {
        Some(text.parse().expect("test socket address"))
    }

    fn ok(offer: &str, local: &LocalMedia) -> (String, Negotiated) {
        match answer(offer, local) {
            Ok(done) => done,
            Err(e) => panic!("offer was refused: {e}\n{offer}"),
        }
    }

    /// The `m=` lines of an SDP body.
    fn m_lines(sdp: &str) -> Vec<&str> {
        sdp.lines().filter(|l| l.starts_with("m=")).collect()
    }

    fn has_line(sdp: &str, wanted: &str) -> bool {
        sdp.split("\r\n").any(|l| l == wanted)
    }

    const SIPP_DEFAULT: &str = "v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
";

    const SIPP_IVR: &str = "v=0
o=sipp 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
";

    /// Laid out as baresip 1.0 writes offers (a=tool, c= repeated at media level, rtcp-rsize,
    /// ssrc, label, mid, minptime), with telephone-event at both 8000 and 48000 Hz.
    const BARESIP: &str = "v=0
o=- 1597251372 3165391384 IN IP4 192.0.2.33
s=-
c=IN IP4 192.0.2.33
t=0 0
a=tool:baresip 1.0.0
m=audio 10276 RTP/AVP 96 0 8 101 102
c=IN IP4 192.0.2.33
b=AS:128
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1;useinbandfec=1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtpmap:102 telephone-event/48000
a=fmtp:102 0-15
a=sendrecv
a=label:1
a=rtcp-rsize
a=ssrc:1780419526 cname:sip:alice@example.com
a=mid:0
a=minptime:20
a=ptime:20
";

    /// Linphone style: session-level rtcp-xr/record, many codecs, three telephone-events at
    /// different rates, a=rtcp and rtcp-fb on plain RTP/AVP.
    const LINPHONE: &str = "v=0
o=alice 3521 1853 IN IP4 192.0.2.20
s=Talk
c=IN IP4 192.0.2.20
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
a=record:off
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp:7079
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
";

    const PCMA_ONLY: &str = "v=0
o=- 1 1 IN IP4 198.51.100.7
s=call
c=IN IP4 198.51.100.7
t=0 0
m=audio 4000 RTP/AVP 8
";

    const OPUS_ONLY: &str = "v=0
o=- 7 7 IN IP4 198.51.100.8
s=-
c=IN IP4 198.51.100.8
t=0 0
m=audio 5004 RTP/AVP 107
a=rtpmap:107 OPUS/48000
a=fmtp:107 maxplaybackrate=16000
";

    const VIDEO_AND_AUDIO: &str = "v=0
o=bob 2890844526 2890844527 IN IP4 192.0.2.44
s=-
c=IN IP4 192.0.2.44
t=0 0
m=video 51372 RTP/AVP 99 31
a=rtpmap:99 H264/90000
a=fmtp:99 profile-level-id=42e01f
m=audio 49170 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
";

    const G729_ONLY: &str = "v=0
o=cisco 1 1 IN IP4 192.0.2.55
s=SIP Call
c=IN IP4 192.0.2.55
t=0 0
m=audio 16384 RTP/AVP 18 101
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:101 telephone-event/8000
";

    const SAVP: &str = "v=0
o=- 3 3 IN IP4 192.0.2.66
s=-
c=IN IP4 192.0.2.66
t=0 0
m=audio 5006 RTP/SAVP 0
a=rtpmap:0 PCMU/8000
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz
";

    fn reoffer(direction_line: &str, address: &str) -> String {
        format!(
            "v=0
o=sipp 53655765 2353687638 IN IP4 127.0.0.1
s=-
c=IN IP4 {address}
t=0 0
m=audio 6000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
{direction_line}
"
        )
    }

    // --- real-world offers -------------------------------------------------------------

    #[test]
    fn sipp_default_offer_gets_pcmu() {
        let (sdp, n) = ok(&crlf(SIPP_DEFAULT), &local());
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.payload_type, 0);
        assert_eq!(n.telephone_event, None);
        assert_eq!(n.ptime_ms, 20);
        assert_eq!(n.remote_rtp, sock("127.0.0.1:6000"));
        assert_eq!(n.remote_rtcp, sock("127.0.0.1:6001"));
        assert_eq!(n.remote_direction, Direction::SendRecv);
        assert_eq!(n.local_direction, Direction::SendRecv);
        assert!(n.we_send() && n.we_receive() && !n.on_hold());
        assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 0"]);
        assert!(!sdp.contains("telephone-event"));
    }

    #[test]
    fn sipp_ivr_offer_gets_exact_answer() {
        let (sdp, n) = ok(&crlf(SIPP_IVR), &local());
        let expected = "v=0\r\n\
            o=careline 42 1 IN IP4 192.0.2.10\r\n\
            s=careline\r\n\
            c=IN IP4 192.0.2.10\r\n\
            t=0 0\r\n\
            m=audio 40000 RTP/AVP 0 101\r\n\
            a=rtpmap:0 PCMU/8000\r\n\
            a=rtpmap:101 telephone-event/8000\r\n\
            a=fmtp:101 0-15\r\n\
            a=ptime:20\r\n\
            a=sendrecv\r\n";
        assert_eq!(sdp, expected);
        assert_eq!(
            n,
            Negotiated {
                codec: Codec::Pcmu,
                payload_type: 0,
                telephone_event: Some(TelephoneEvent {
                    payload_type: 101,
                    clock_rate: 8000
                }),
                ptime_ms: 20,
                remote_rtp: sock("127.0.0.1:6000"),
                remote_rtcp: sock("127.0.0.1:6001"),
                remote_direction: Direction::SendRecv,
                local_direction: Direction::SendRecv,
            }
        );
    }

    #[test]
    fn baresip_offer_gets_opus_and_48k_events_when_opus_accepted() {
        let (sdp, n) = ok(&crlf(BARESIP), &local());
        // The caller's order wins over Careline's (PCMU first in local()).
        assert_eq!(n.codec, Codec::Opus);
        assert_eq!(n.payload_type, 96);
        assert_eq!(
            n.telephone_event,
            Some(TelephoneEvent {
                payload_type: 102,
                clock_rate: 48000
            })
        );
        assert_eq!(n.remote_rtp, sock("192.0.2.33:10276"));
        assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 96 102"]);
        assert!(has_line(&sdp, "a=rtpmap:96 opus/48000/2"));
        assert!(has_line(&sdp, "a=fmtp:96 useinbandfec=1"));
        assert!(has_line(&sdp, "a=rtpmap:102 telephone-event/48000"));
        assert!(has_line(&sdp, "a=fmtp:102 0-15"));
        assert!(
            !sdp.contains("telephone-event/8000"),
            "only one event type is answered"
        );
    }

    #[test]
    fn baresip_offer_gets_pcmu_and_8k_events_without_opus() {
        let (sdp, n) = ok(&crlf(BARESIP), &local_with(&[Codec::Pcma, Codec::Pcmu]));
        assert_eq!(n.codec, Codec::Pcmu, "offer order: 96 0 8");
        assert_eq!(n.payload_type, 0);
        assert_eq!(
            n.telephone_event,
            Some(TelephoneEvent {
                payload_type: 101,
                clock_rate: 8000
            })
        );
        assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 0 101"]);
    }

    #[test]
    fn linphone_offer_matches_event_rate_to_codec() {
        let (sdp, n) = ok(&crlf(LINPHONE), &local());
        assert_eq!((n.codec, n.payload_type), (Codec::Opus, 96));
        assert_eq!(
            n.telephone_event,
            Some(TelephoneEvent {
                payload_type: 101,
                clock_rate: 48000
            })
        );
        assert_eq!(n.remote_rtcp, sock("192.0.2.20:7079"));
        assert!(has_line(&sdp, "a=fmtp:96 useinbandfec=1"));

        let (sdp, n) = ok(&crlf(LINPHONE), &local_with(&[Codec::Pcma]));
        assert_eq!((n.codec, n.payload_type), (Codec::Pcma, 8));
        assert_eq!(
            n.telephone_event,
            Some(TelephoneEvent {
                payload_type: 100,
                clock_rate: 8000
            })
        );
        assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 8 100"]);
    }

    #[test]
    fn pcma_only_caller_without_rtpmap() {
        let (sdp, n) = ok(&crlf(PCMA_ONLY), &local());
        assert_eq!((n.codec, n.payload_type), (Codec::Pcma, 8));
        assert_eq!(n.telephone_event, None);
        assert_eq!(n.remote_rtp, sock("198.51.100.7:4000"));
        assert!(has_line(&sdp, "a=rtpmap:8 PCMA/8000"));
        assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 8"]);
    }

    #[test]
    fn opus_only_caller_uppercase_name_without_channel_count() {
        let (sdp, n) = ok(&crlf(OPUS_ONLY), &local());
        assert_eq!((n.codec, n.payload_type), (Codec::Opus, 107));
        assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 107"]);
        assert!(has_line(&sdp, "a=rtpmap:107 opus/48000/2"));
        assert!(
            !sdp.contains("a=fmtp:107"),
            "no useinbandfec offered, none echoed"
        );
    }

    #[test]
    fn opus_with_one_channel_or_wrong_rate_is_not_opus() {
        let offer = crlf(&OPUS_ONLY.replace("OPUS/48000", "opus/48000/1"));
        match answer(&offer, &local()) {
            Err(SdpError::NoAcceptableCodec { offered, .. }) => {
                assert!(offered.contains("opus/48000/1 (PT 107)"), "{offered}")
            }
            other => panic!("{other:?}"),
        }
        let offer = crlf(&OPUS_ONLY.replace("OPUS/48000", "opus/16000"));
        assert!(matches!(
            answer(&offer, &local()),
            Err(SdpError::NoAcceptableCodec { .. })
        ));
    }

    #[test]
    fn opus_only_caller_refused_when_careline_has_no_opus() {
        let err = answer(&crlf(OPUS_ONLY), &local_with(&[Codec::Pcmu, Codec::Pcma]))
            .expect_err("no common codec");
        assert_eq!(
            err,
            SdpError::NoAcceptableCodec {
                offered: "opus/48000/2 (PT 107)".to_string(),
                accepted: "PCMU/8000, PCMA/8000".to_string(),
            }
        );
        assert_eq!(err.sip_status(), 488);
    }

    #[test]
    fn telephone_event_at_pt_96() {
        let offer = "v=0
o=- 5 5 IN IP4 192.0.2.77
s=-
c=IN IP4 192.0.2.77
t=0 0
m=audio 30000 RTP/AVP 0 96
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-16
";
        let (sdp, n) = ok(&crlf(offer), &local());
        assert_eq!(
            n.telephone_event,
            Some(TelephoneEvent {
                payload_type: 96,
                clock_rate: 8000
            })
        );
        assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 0 96"]);
        assert!(has_line(&sdp, "a=rtpmap:96 telephone-event/8000"));
        assert!(has_line(&sdp, "a=fmtp:96 0-15"));
    }

    #[test]
    fn telephone_event_at_48000_with_opus() {
        let offer = "v=0
o=- 5 5 IN IP4 192.0.2.77
s=-
c=IN IP4 192.0.2.77
t=0 0
m=audio 30000 RTP/AVP 109 110
a=rtpmap:109 opus/48000/2
a=rtpmap:110 telephone-event/48000
";
        let (sdp, n) = ok(&crlf(offer), &local());
        assert_eq!((n.codec, n.payload_type), (Codec::Opus, 109));
        assert_eq!(
            n.telephone_event,
            Some(TelephoneEvent {
                payload_type: 110,
                clock_rate: 48000
            })
        );
        assert!(has_line(&sdp, "a=rtpmap:110 telephone-event/48000"));
    }

    #[test]
    fn telephone_event_of_other_rate_is_still_taken_when_only_one() {
        // PCMU with only a 48 kHz event type: RFC 4733 prefers matching clocks, but DTMF with
        // a mismatched clock beats no DTMF.
        let offer = crlf(&SIPP_IVR.replace("telephone-event/8000", "telephone-event/48000"));
        let (_, n) = ok(&offer, &local());
        assert_eq!(
            n.telephone_event,
            Some(TelephoneEvent {
                payload_type: 101,
                clock_rate: 48000
            })
        );
    }

    #[test]
    fn telephone_event_not_answered_when_disabled_locally() {
        let local = LocalMedia {
            telephone_event: false,
            ..local()
        };
        let (sdp, n) = ok(&crlf(SIPP_IVR), &local);
        assert_eq!(n.telephone_event, None);
        assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 0"]);
        assert!(!sdp.contains("telephone-event"));
    }

    #[test]
    fn telephone_event_not_listed_in_m_line_is_not_offered() {
        let offer = crlf(&SIPP_IVR.replace("RTP/AVP 0 101", "RTP/AVP 0"));
        let (_, n) = ok(&offer, &local());
        assert_eq!(n.telephone_event, None);
    }

    #[test]
    fn video_then_audio_rejects_video_in_place() {
        let (sdp, n) = ok(&crlf(VIDEO_AND_AUDIO), &local());
        assert_eq!(
            m_lines(&sdp),
            ["m=video 0 RTP/AVP 99 31", "m=audio 40000 RTP/AVP 0 101"]
        );
        assert_eq!(n.remote_rtp, sock("192.0.2.44:49170"));
        // The audio attributes follow the audio m= line, not the video one.
        let audio_at = sdp.find("m=audio").expect("audio line");
        assert!(sdp[audio_at..].contains("a=rtpmap:0 PCMU/8000"));
        assert!(!sdp[..audio_at].contains("a="));
    }

    #[test]
    fn second_audio_and_unknown_media_are_rejected_with_port_0() {
        let offer = "v=0
o=- 9 9 IN IP4 192.0.2.88
s=-
c=IN IP4 192.0.2.88
t=0 0
m=audio 20000 RTP/AVP 0
m=audio 20002 RTP/AVP 8
m=x-careline-test 20004 TCP/FOO *
m=image 20006 udptl t38
";
        let (sdp, n) = ok(&crlf(offer), &local());
        assert_eq!(n.remote_rtp, sock("192.0.2.88:20000"));
        assert_eq!(
            m_lines(&sdp),
            [
                "m=audio 40000 RTP/AVP 0",
                "m=audio 0 RTP/AVP 8",
                "m=x-careline-test 0 TCP/FOO *",
                "m=image 0 udptl t38",
            ]
        );
    }

    #[test]
    fn first_audio_without_common_codec_falls_through_to_second() {
        let offer = "v=0
o=- 9 9 IN IP4 192.0.2.88
s=-
c=IN IP4 192.0.2.88
t=0 0
m=audio 20000 RTP/AVP 18
m=audio 20002 RTP/AVP 8
";
        let (sdp, n) = ok(&crlf(offer), &local());
        assert_eq!(
            (n.codec, n.remote_rtp),
            (Codec::Pcma, sock("192.0.2.88:20002"))
        );
        assert_eq!(
            m_lines(&sdp),
            ["m=audio 0 RTP/AVP 18", "m=audio 40000 RTP/AVP 8"]
        );
    }

    #[test]
    fn g729_only_is_refused_naming_g729() {
        let err = answer(&crlf(G729_ONLY), &local()).expect_err("G.729 only");
        let SdpError::NoAcceptableCodec { offered, accepted } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(offered, "G729/8000 (PT 18), telephone-event/8000 (PT 101)");
        assert_eq!(accepted, "PCMU/8000, PCMA/8000, opus/48000/2");
        let message = err.to_string();
        assert!(
            message.contains("G729") && message.contains("PCMU/8000"),
            "{message}"
        );
        assert_eq!(err.sip_status(), 488);
    }

    #[test]
    fn g729_static_without_rtpmap_is_named_too() {
        let offer = crlf(&G729_ONLY.replace("a=rtpmap:18 G729/8000\n", ""));
        let offer = offer.replace("a=rtpmap:18 G729/8000\r\n", "");
        match answer(&offer, &local()) {
            Err(SdpError::NoAcceptableCodec { offered, .. }) => {
                assert!(offered.starts_with("G729/8000 (PT 18)"), "{offered}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rtp_savp_is_unsupported_naming_the_profile() {
        let err = answer(&crlf(SAVP), &local()).expect_err("SRTP");
        let SdpError::Unsupported(message) = &err else {
            panic!("{err:?}");
        };
        assert!(message.contains("RTP/SAVP"), "{message}");
        assert!(message.contains("RTP/AVP"), "{message}");
        assert_eq!(err.sip_status(), 488);
        let webrtc = crlf(&SAVP.replace("RTP/SAVP", "UDP/TLS/RTP/SAVPF"));
        assert!(
            matches!(answer(&webrtc, &local()), Err(SdpError::Unsupported(m)) if m.contains("UDP/TLS/RTP/SAVPF"))
        );
    }

    #[test]
    fn savp_with_avp_fallback_stream_takes_the_avp_one() {
        let offer = format!("{}m=audio 5008 RTP/AVP 0\r\n", crlf(SAVP));
        let (sdp, n) = ok(&offer, &local());
        assert_eq!(n.remote_rtp, sock("192.0.2.66:5008"));
        assert_eq!(
            m_lines(&sdp),
            ["m=audio 0 RTP/SAVP 0", "m=audio 40000 RTP/AVP 0"]
        );
    }

    #[test]
    fn rtp_avpf_is_accepted_and_echoed() {
        let offer = crlf(&SIPP_IVR.replace("RTP/AVP", "RTP/AVPF"));
        let (sdp, _) = ok(&offer, &local());
        assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVPF 0 101"]);
    }

    #[test]
    fn audio_port_zero_is_no_audio() {
        let offer = crlf(&SIPP_IVR.replace("m=audio 6000", "m=audio 0"));
        let err = answer(&offer, &local()).expect_err("port 0");
        assert_eq!(err, SdpError::NoAudio);
        assert_eq!(err.sip_status(), 488);
    }

    #[test]
    fn no_audio_at_all_is_no_audio() {
        let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                     m=video 5000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n";
        assert_eq!(answer(offer, &local()), Err(SdpError::NoAudio));
        let bare = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n";
        assert_eq!(answer(bare, &local()), Err(SdpError::NoAudio));
    }

    #[test]
    fn garbage_empty_and_truncated_are_parse_errors() {
        let cases: Vec<String> = vec![
            String::new(),
            "\r\n\r\n  \n".to_string(),
            "hello world".to_string(),
            "INVITE sip:bob@example.com SIP/2.0\r\n".to_string(),
            "{\"sdp\": true}".to_string(),
            "v=1\r\no=- 1 1 IN IP4 192.0.2.1\r\n".to_string(),
            "o=- 1 1 IN IP4 192.0.2.1\r\nv=0\r\n".to_string(),
            "v=0\r\n".to_string(),
            "v=0\r\no=sipp 5365".to_string(),
            "\u{0}\u{1}\u{2}=\u{ff}".to_string(),
            "ä=0".to_string(),
        ];
        let ivr = crlf(SIPP_IVR);
        let truncations = [
            ivr.find("o=sipp").map(|i| i + 10),   // inside o=
            ivr.find("RTP/AVP").map(|i| i + 4),   // m=audio 6000 RTP/
            ivr.find("m=audio 6").map(|i| i + 9), // m=audio 6
            ivr.find("RTP/AVP").map(|i| i + 7),   // m= without a format
        ];
        let mut all = cases;
        for cut in truncations {
            let cut = cut.expect("marker present in SIPP_IVR");
            all.push(ivr[..cut].to_string());
        }
        for input in &all {
            match answer(input, &local()) {
                Err(err @ SdpError::Parse(_)) => assert_eq!(err.sip_status(), 400),
                other => panic!("{input:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn body_must_start_with_v0() {
        let no_version = crlf(&SIPP_DEFAULT.replace("v=0\n", ""));
        match answer(&no_version, &local()) {
            Err(SdpError::Parse(m)) => assert!(m.contains("must start with `v=0`"), "{m}"),
            other => panic!("{other:?}"),
        }
        let late_version = format!("s=0\r\n{}", crlf(SIPP_DEFAULT));
        assert!(matches!(
            answer(&late_version, &local()),
            Err(SdpError::Parse(_))
        ));
    }

    #[test]
    fn missing_connection_for_audio_is_parse_error() {
        let offer = crlf(&SIPP_DEFAULT.replace("c=IN IP4 127.0.0.1\n", ""));
        match answer(&offer, &local()) {
            Err(SdpError::Parse(m)) => assert!(m.contains("c="), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_connection_lines() {
        let not_ip = crlf(&SIPP_DEFAULT.replace("c=IN IP4 127.0.0.1", "c=IN IP4 300.1.1.1"));
        assert!(matches!(answer(&not_ip, &local()), Err(SdpError::Parse(_))));
        let short = crlf(&SIPP_DEFAULT.replace("c=IN IP4 127.0.0.1", "c=IN IP4"));
        assert!(matches!(answer(&short, &local()), Err(SdpError::Parse(_))));
        let host = crlf(&SIPP_DEFAULT.replace("c=IN IP4 127.0.0.1", "c=IN IP4 pbx.example.com"));
        match answer(&host, &local()) {
            Err(SdpError::Unsupported(m)) => assert!(m.contains("pbx.example.com"), "{m}"),
            other => panic!("{other:?}"),
        }
        let atm = crlf(&SIPP_DEFAULT.replace("c=IN IP4 127.0.0.1", "c=ATM NSAP 47.0091"));
        assert!(matches!(
            answer(&atm, &local()),
            Err(SdpError::Unsupported(_))
        ));
    }

    // --- hold and unhold re-offers -----------------------------------------------------

    #[test]
    fn reoffer_sendonly_is_hold_answered_recvonly() {
        let (sdp, n) = ok(&crlf(&reoffer("a=sendonly", "127.0.0.1")), &local());
        assert_eq!(n.remote_direction, Direction::SendOnly);
        assert_eq!(n.local_direction, Direction::RecvOnly);
        assert!(n.on_hold());
        assert!(!n.we_send());
        assert!(n.we_receive());
        assert_eq!(n.remote_rtp, sock("127.0.0.1:6000"));
        assert!(has_line(&sdp, "a=recvonly"));
        assert!(!sdp.contains("a=sendrecv"));
    }

    #[test]
    fn reoffer_inactive_is_answered_inactive() {
        let (sdp, n) = ok(&crlf(&reoffer("a=inactive", "127.0.0.1")), &local());
        assert_eq!(n.remote_direction, Direction::Inactive);
        assert_eq!(n.local_direction, Direction::Inactive);
        assert!(n.on_hold() && !n.we_send() && !n.we_receive());
        assert!(has_line(&sdp, "a=inactive"));
    }

    #[test]
    fn reoffer_zero_address_is_old_style_hold() {
        let (sdp, n) = ok(&crlf(&reoffer("a=sendrecv", "0.0.0.0")), &local());
        assert_eq!(n.remote_rtp, None);
        assert_eq!(n.remote_rtcp, None);
        assert_eq!(n.remote_direction, Direction::SendOnly);
        assert_eq!(n.local_direction, Direction::RecvOnly);
        assert!(n.on_hold() && !n.we_send() && n.we_receive());
        assert!(has_line(&sdp, "a=recvonly"));
        // Careline still gives its own real address, so unhold needs no new answer address.
        assert!(has_line(&sdp, "c=IN IP4 192.0.2.10"));

        let (sdp, n) = ok(&crlf(&reoffer("a=inactive", "0.0.0.0")), &local());
        assert_eq!(n.local_direction, Direction::Inactive);
        assert!(has_line(&sdp, "a=inactive"));

        let (_, n) = ok(&crlf(&reoffer("a=recvonly", "0.0.0.0")), &local());
        assert_eq!(n.remote_direction, Direction::Inactive);
    }

    #[test]
    fn reoffer_unhold_restores_sendrecv() {
        let (sdp, n) = ok(&crlf(&reoffer("a=sendrecv", "127.0.0.1")), &local());
        assert!(!n.on_hold() && n.we_send() && n.we_receive());
        assert!(has_line(&sdp, "a=sendrecv"));
        // No direction attribute at all also means sendrecv (RFC 3264 §5.1).
        let (_, n) = ok(&crlf(&reoffer("", "127.0.0.1")), &local());
        assert_eq!(n.remote_direction, Direction::SendRecv);
    }

    #[test]
    fn recvonly_offer_is_answered_sendonly() {
        let (sdp, n) = ok(&crlf(&reoffer("a=recvonly", "127.0.0.1")), &local());
        assert_eq!(n.local_direction, Direction::SendOnly);
        assert!(n.we_send() && !n.we_receive() && !n.on_hold());
        assert!(has_line(&sdp, "a=sendonly"));
    }

    #[test]
    fn session_level_direction_applies_unless_media_overrides() {
        let session_only = crlf(&SIPP_DEFAULT.replace("t=0 0", "t=0 0\na=sendonly"));
        let (_, n) = ok(&session_only, &local());
        assert_eq!(n.remote_direction, Direction::SendOnly);
        let both = crlf(&format!(
            "{}a=sendrecv\n",
            SIPP_DEFAULT.replace("t=0 0", "t=0 0\na=sendonly")
        ));
        let (_, n) = ok(&both, &local());
        assert_eq!(n.remote_direction, Direction::SendRecv);
    }

    #[test]
    fn ipv6_unspecified_address_is_hold_too() {
        let offer = crlf(&SIPP_DEFAULT.replace("c=IN IP4 127.0.0.1", "c=IN IP6 ::"));
        let (_, n) = ok(&offer, &local());
        assert_eq!(n.remote_rtp, None);
        assert!(n.on_hold());
    }

    // --- attributes and syntax variants ------------------------------------------------

    #[test]
    fn rtcp_attribute_port_and_address() {
        let port_only = crlf(&format!("{SIPP_DEFAULT}a=rtcp:6101\n"));
        assert_eq!(
            ok(&port_only, &local()).1.remote_rtcp,
            sock("127.0.0.1:6101")
        );
        let with_addr = crlf(&format!("{SIPP_DEFAULT}a=rtcp:6101 IN IP4 192.0.2.99\n"));
        assert_eq!(
            ok(&with_addr, &local()).1.remote_rtcp,
            sock("192.0.2.99:6101")
        );
        let bad = crlf(&format!("{SIPP_DEFAULT}a=rtcp:notaport\n"));
        assert_eq!(ok(&bad, &local()).1.remote_rtcp, sock("127.0.0.1:6001"));
        let top = crlf(&SIPP_DEFAULT.replace("audio 6000", "audio 65535"));
        let n = ok(&top, &local()).1;
        assert_eq!(
            (n.remote_rtp, n.remote_rtcp),
            (sock("127.0.0.1:65535"), None)
        );
    }

    #[test]
    fn ptime_30_is_taken_and_answered() {
        let offer = crlf(&SIPP_IVR.replace("a=ptime:20", "a=ptime:30"));
        let (sdp, n) = ok(&offer, &local());
        assert_eq!(n.ptime_ms, 30);
        assert!(has_line(&sdp, "a=ptime:30"));
        assert!(!has_line(&sdp, "a=ptime:20"));
    }

    #[test]
    fn ptime_variants() {
        let with = |line: &str| {
            let offer = crlf(&format!("{SIPP_DEFAULT}{line}\n"));
            ok(&offer, &local()).1.ptime_ms
        };
        assert_eq!(with(""), 20);
        assert_eq!(with("a=ptime:40"), 40);
        assert_eq!(with("a=ptime:20.0"), 20);
        assert_eq!(with("a=ptime:0"), 20);
        assert_eq!(with("a=ptime:99999"), 20);
        assert_eq!(with("a=ptime:abc"), 20);
        assert_eq!(with("a=maxptime:150"), 20);
        assert_eq!(with("a=maxptime:150\na=ptime:60"), 60);
        // Session-level ptime (not where RFC 8866 puts it, but some UAs do) as a fallback.
        let offer = crlf(&SIPP_DEFAULT.replace("t=0 0", "t=0 0\na=ptime:10"));
        assert_eq!(ok(&offer, &local()).1.ptime_ms, 10);
    }

    #[test]
    fn lf_only_cr_only_and_crlf_negotiate_the_same() {
        let (lf_sdp, lf) = ok(SIPP_IVR, &local());
        let (crlf_sdp, with_crlf) = ok(&crlf(SIPP_IVR), &local());
        let (_, cr) = ok(&SIPP_IVR.replace('\n', "\r"), &local());
        assert_eq!(lf, with_crlf);
        assert_eq!(lf, cr);
        assert_eq!(lf_sdp, crlf_sdp);
        // Careline always writes CRLF (RFC 8866 §5).
        assert!(lf_sdp.ends_with("\r\n"));
        assert!(!lf_sdp.replace("\r\n", "").contains('\n'));
        assert!(!lf_sdp.replace("\r\n", "").contains('\r'));
    }

    #[test]
    fn tolerates_missing_t_and_s_misordered_lines_blank_lines_and_unknown_types() {
        let offer = "v=0\n\
            o=gw 123456789012345678901234567890 1 IN IP4 192.0.2.5\n\
            b=AS:64\n\
            a=sendrecv\n\
            c=IN IP4 192.0.2.5 \n\
            \n\
            y=0100000001\n\
            m=audio 9000 RTP/AVP 8 0\n\
            a=rtpmap:8 PCMA/8000\n\
            b=TIAS:64000\n";
        let (_, n) = ok(offer, &local());
        assert_eq!(
            (n.codec, n.remote_rtp),
            (Codec::Pcma, sock("192.0.2.5:9000"))
        );
    }

    #[test]
    fn connection_only_at_media_level_and_media_overrides_session() {
        let media_only = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\
            m=audio 7000 RTP/AVP 0\r\nc=IN IP4 192.0.2.2\r\n";
        assert_eq!(
            ok(media_only, &local()).1.remote_rtp,
            sock("192.0.2.2:7000")
        );
        let both = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
            m=audio 7000 RTP/AVP 0\r\nc=IN IP4 192.0.2.3/127\r\n";
        assert_eq!(ok(both, &local()).1.remote_rtp, sock("192.0.2.3:7000"));
    }

    #[test]
    fn pcmu_at_dynamic_pt_by_rtpmap_and_rtpmap_overrides_static() {
        let dynamic = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
            m=audio 7000 RTP/AVP 97\r\na=rtpmap:97 pcmu/8000/1\r\n";
        let (sdp, n) = ok(dynamic, &local());
        assert_eq!((n.codec, n.payload_type), (Codec::Pcmu, 97));
        assert!(has_line(&sdp, "a=rtpmap:97 PCMU/8000"));
        let relabelled = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
            m=audio 7000 RTP/AVP 0\r\na=rtpmap:0 G729/8000\r\n";
        assert!(matches!(
            answer(relabelled, &local()),
            Err(SdpError::NoAcceptableCodec { .. })
        ));
    }

    #[test]
    fn caller_preference_wins_over_local_order() {
        let offer = crlf(&PCMA_ONLY.replace("RTP/AVP 8", "RTP/AVP 8 0"));
        let (_, n) = ok(&offer, &local_with(&[Codec::Pcmu, Codec::Pcma]));
        assert_eq!(n.codec, Codec::Pcma);
        let (_, n) = ok(&offer, &local_with(&[Codec::Pcmu]));
        assert_eq!(n.codec, Codec::Pcmu, "a codec Careline lacks is skipped");
    }

    #[test]
    fn ipv6_offer_and_ipv6_answer() {
        let offer = "v=0
o=- 8 8 IN IP6 2001:db8::10
s=-
c=IN IP6 2001:db8::10
t=0 0
m=audio 6000 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
a=rtcp:6001 IN IP6 2001:db8::11
";
        let local = LocalMedia {
            address: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20)),
            ..local()
        };
        let (sdp, n) = ok(&crlf(offer), &local);
        assert_eq!(n.remote_rtp, sock("[2001:db8::10]:6000"));
        assert_eq!(n.remote_rtcp, sock("[2001:db8::11]:6001"));
        assert!(has_line(&sdp, "o=careline 42 1 IN IP6 2001:db8::20"));
        assert!(has_line(&sdp, "c=IN IP6 2001:db8::20"));
        let back = read_answer(&sdp, &local).expect("own answer reads back");
        assert_eq!(back.remote_rtp, sock("[2001:db8::20]:40000"));
    }

    #[test]
    fn session_version_and_id_are_written() {
        let local = LocalMedia {
            session_id: 7,
            session_version: 9,
            ..local()
        };
        let (sdp, _) = ok(&crlf(SIPP_DEFAULT), &local);
        assert!(has_line(&sdp, "o=careline 7 9 IN IP4 192.0.2.10"));
        assert!(has_line(&offer(&local), "o=careline 7 9 IN IP4 192.0.2.10"));
    }

    #[test]
    fn empty_local_codec_list_refuses_everything() {
        match answer(&crlf(SIPP_IVR), &local_with(&[])) {
            Err(SdpError::NoAcceptableCodec { accepted, .. }) => {
                assert!(accepted.contains("none configured"), "{accepted}")
            }
            other => panic!("{other:?}"),
        }
        let text = offer(&local_with(&[]));
        assert_eq!(m_lines(&text), ["m=audio 0 RTP/AVP 0"]);
        assert_eq!(read_answer(&text, &local()), Err(SdpError::NoAudio));
    }

    #[test]
    fn oversized_body_is_refused() {
        let mut big = crlf(SIPP_DEFAULT);
        while big.len() <= MAX_SDP_LEN {
            big.push_str("a=x-padding:0123456789abcdef0123456789abcdef\r\n");
        }
        assert!(matches!(answer(&big, &local()), Err(SdpError::Parse(_))));
    }

    // --- UAC side ------------------------------------------------------------------------

    #[test]
    fn offer_text_is_exact() {
        let local = LocalMedia {
            codecs: vec![Codec::Opus, Codec::Pcmu, Codec::Pcma, Codec::Opus],
            ..local()
        };
        let expected = "v=0\r\n\
            o=careline 42 1 IN IP4 192.0.2.10\r\n\
            s=careline\r\n\
            c=IN IP4 192.0.2.10\r\n\
            t=0 0\r\n\
            m=audio 40000 RTP/AVP 111 0 8 101 110\r\n\
            a=rtpmap:111 opus/48000/2\r\n\
            a=fmtp:111 useinbandfec=1\r\n\
            a=rtpmap:0 PCMU/8000\r\n\
            a=rtpmap:8 PCMA/8000\r\n\
            a=rtpmap:101 telephone-event/8000\r\n\
            a=fmtp:101 0-16\r\n\
            a=rtpmap:110 telephone-event/48000\r\n\
            a=fmtp:110 0-16\r\n\
            a=ptime:20\r\n\
            a=sendrecv\r\n";
        assert_eq!(offer(&local), expected);
    }

    #[test]
    fn offer_without_opus_has_no_48k_events_and_without_events_none() {
        let text = offer(&local_with(&[Codec::Pcma]));
        assert_eq!(m_lines(&text), ["m=audio 40000 RTP/AVP 8 101"]);
        assert!(!text.contains("48000"));
        let quiet = LocalMedia {
            telephone_event: false,
            ptime_ms: 30,
            ..local()
        };
        let text = offer(&quiet);
        assert_eq!(m_lines(&text), ["m=audio 40000 RTP/AVP 0 8 111"]);
        assert!(!text.contains("telephone-event"));
        assert!(has_line(&text, "a=ptime:30"));
    }

    #[test]
    fn round_trip_offer_answer_read_answer() {
        let sets: [&[Codec]; 6] = [
            &[Codec::Pcmu, Codec::Pcma, Codec::Opus],
            &[Codec::Opus, Codec::Pcmu],
            &[Codec::Pcma],
            &[Codec::Opus],
            &[Codec::Pcma, Codec::Pcmu],
            &[Codec::Pcmu],
        ];
        for uac_codecs in sets {
            for uas_codecs in sets {
                for te in [true, false] {
                    let uac = LocalMedia {
                        codecs: uac_codecs.to_vec(),
                        telephone_event: te,
                        ..local()
                    };
                    let uas = LocalMedia {
                        address: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
                        rtp_port: 50000,
                        session_id: 1000,
                        ..local_with(uas_codecs)
                    };
                    let offered = offer(&uac);
                    let common = uac_codecs.iter().find(|c| uas_codecs.contains(c));
                    let result = answer(&offered, &uas);
                    let Some(&expected_codec) = common else {
                        assert!(
                            matches!(result, Err(SdpError::NoAcceptableCodec { .. })),
                            "{uac_codecs:?} vs {uas_codecs:?}: {result:?}"
                        );
                        continue;
                    };
                    let (answered, at_uas) = result.expect("common codec exists");
                    let at_uac = read_answer(&answered, &uac).expect("answer reads back");
                    assert_eq!(at_uas.codec, expected_codec, "UAC's order wins");
                    assert_eq!(at_uac.codec, at_uas.codec);
                    assert_eq!(at_uac.payload_type, at_uas.payload_type);
                    assert_eq!(at_uac.telephone_event, at_uas.telephone_event);
                    assert_eq!(at_uas.payload_type, offered_payload_type(expected_codec));
                    let te_expected = te.then(|| TelephoneEvent {
                        payload_type: if expected_codec == Codec::Opus {
                            110
                        } else {
                            101
                        },
                        clock_rate: expected_codec.clock_rate(),
                    });
                    assert_eq!(at_uas.telephone_event, te_expected);
                    assert_eq!(at_uas.remote_rtp, sock("192.0.2.10:40000"));
                    assert_eq!(at_uac.remote_rtp, sock("198.51.100.1:50000"));
                    assert_eq!(at_uac.local_direction, Direction::SendRecv);
                }
            }
        }
    }

    #[test]
    fn read_answer_refusals() {
        let uac = local_with(&[Codec::Pcmu]);
        let rejected = crlf(&SIPP_DEFAULT.replace("m=audio 6000", "m=audio 0"));
        assert_eq!(read_answer(&rejected, &uac), Err(SdpError::NoAudio));
        let wrong_codec = crlf(PCMA_ONLY);
        match read_answer(&wrong_codec, &uac) {
            Err(SdpError::NoAcceptableCodec { offered, accepted }) => {
                assert_eq!(offered, "PCMA/8000 (PT 8)");
                assert_eq!(accepted, "PCMU/8000");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_answer(&crlf(SAVP), &uac),
            Err(SdpError::Unsupported(_))
        ));
        assert!(matches!(
            read_answer("nonsense", &uac),
            Err(SdpError::Parse(_))
        ));
    }

    #[test]
    fn read_answer_takes_answer_order_and_hold() {
        let answer_text = "v=0\r\no=peer 1 2 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n\
            m=audio 8000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:30\r\na=recvonly\r\n";
        let n = read_answer(answer_text, &local()).expect("valid answer");
        assert_eq!((n.codec, n.payload_type), (Codec::Pcma, 8));
        assert_eq!(n.ptime_ms, 30);
        assert_eq!(n.remote_direction, Direction::RecvOnly);
        assert_eq!(n.local_direction, Direction::SendOnly);
        assert!(n.we_send() && !n.we_receive() && !n.on_hold());
    }

    #[test]
    fn direction_helpers() {
        for d in [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ] {
            assert_eq!(d.mirror().mirror(), d);
            assert_eq!(d.sends(), d.mirror().receives());
            assert_eq!(Direction::from_attribute(d.attribute()), Some(d));
            assert_eq!(d.to_string(), d.attribute());
        }
        assert_eq!(
            Direction::from_attribute("SENDONLY"),
            Some(Direction::SendOnly)
        );
        assert_eq!(Direction::from_attribute("ptime"), None);
    }

    // --- robustness ----------------------------------------------------------------------

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            if n == 0 {
                0
            } else {
                (self.next() % n as u64) as usize
            }
        }
    }

    fn mutate(rng: &mut XorShift, input: &[u8]) -> Vec<u8> {
        const INTERESTING: &[u8] = b"0123456789 /:=\r\n-.aAmcv\xff\xc3\x00";
        let mut bytes = input.to_vec();
        for _ in 0..=rng.below(4) {
            let len = bytes.len();
            match rng.below(7) {
                0 if len > 0 => {
                    let i = rng.below(len);
                    bytes[i] ^= 1 << rng.below(8);
                }
                1 if len > 0 => {
                    let i = rng.below(len);
                    bytes[i] = INTERESTING[rng.below(INTERESTING.len())];
                }
                2 => bytes.truncate(rng.below(len + 1)),
                3 if len > 0 => {
                    let start = rng.below(len);
                    let end = (start + 1 + rng.below(16)).min(len);
                    bytes.drain(start..end);
                }
                4 if len > 0 => {
                    let start = rng.below(len);
                    let end = (start + 1 + rng.below(40)).min(len);
                    let chunk: Vec<u8> = bytes[start..end].to_vec();
                    let at = rng.below(len + 1);
                    bytes.splice(at..at, chunk);
                }
                5 => {
                    let at = rng.below(len + 1);
                    let b = INTERESTING[rng.below(INTERESTING.len())];
                    bytes.insert(at, b);
                }
                _ => {
                    let at = rng.below(len + 1);
                    bytes.splice(at..at, b"\r\nm=audio 1 RTP/AVP 0\r\n".iter().copied());
                }
            }
        }
        bytes
    }

    #[test]
    fn fuzz_mutated_offers_never_panic_and_answers_read_back() {
        let seeds: Vec<String> = [
            SIPP_DEFAULT,
            SIPP_IVR,
            BARESIP,
            LINPHONE,
            PCMA_ONLY,
            OPUS_ONLY,
            VIDEO_AND_AUDIO,
            G729_ONLY,
            SAVP,
        ]
        .iter()
        .map(|s| crlf(s))
        .chain([offer(&local()), reoffer("a=sendonly", "0.0.0.0")])
        .collect();
        let locals = [
            local(),
            local_with(&[Codec::Pcma]),
            local_with(&[Codec::Opus]),
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let (mut accepted, mut refused) = (0usize, 0usize);
        for round in 0..4000 {
            let seed = &seeds[round % seeds.len()];
            let mutated = mutate(&mut rng, seed.as_bytes());
            let text = String::from_utf8_lossy(&mutated);
            let local = &locals[round % locals.len()];
            let _ = read_answer(&text, local);
            match answer(&text, local) {
                Ok((sdp, n)) => {
                    accepted += 1;
                    // Whatever Careline answers must be SDP it can read itself, agreeing on
                    // the codec, with one m= line per offered m= line.
                    let back = read_answer(&sdp, local)
                        .unwrap_or_else(|e| panic!("answer unreadable ({e}):\n{sdp}\nto:\n{text}"));
                    assert_eq!(
                        (back.codec, back.payload_type, back.telephone_event),
                        (n.codec, n.payload_type, n.telephone_event),
                        "{text}"
                    );
                    let offered = parse(&text).expect("accepted offer parses").media.len();
                    assert_eq!(m_lines(&sdp).len(), offered, "{text}\n{sdp}");
                    assert!(local.codecs.contains(&n.codec));
                }
                Err(e) => {
                    refused += 1;
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        // The mutations must exercise both outcomes, or the test proves little.
        assert!(
            accepted > 400,
            "only {accepted} mutated offers were accepted"
        );
        assert!(refused > 400, "only {refused} mutated offers were refused");
    }
}
