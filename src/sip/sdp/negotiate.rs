//! Choosing from an offer or an answer: the audio stream, the codec, telephone-event, ptime,
//! the addresses and the direction (RFC 3264 §6, §7), into [`Negotiated`].

use std::net::{IpAddr, SocketAddr};

use super::*;
use crate::media::codec::Codec;
use crate::media::srtp::SrtpKeys;

/// The audio stream Careline takes, and what it takes from it.
pub(super) struct Selected<'s, 'a> {
    pub(super) index: usize,
    pub(super) media: &'s Media<'a>,
    /// The profile written back: `RTP/AVP` or `RTP/AVPF`, as offered (RFC 3264 §6 keeps the
    /// transport of an accepted stream).
    pub(super) proto: &'static str,
    pub(super) codec: Codec,
    pub(super) payload_type: u8,
    pub(super) telephone_event: Option<TelephoneEvent>,
    /// SDES: the offer's `a=crypto` tag answered and the session's keys.
    pub(super) srtp: Option<(u32, SrtpKeys)>,
}

/// What one payload type in an `m=` line stands for.
pub(super) enum Format {
    Codec(Codec),
    TelephoneEvent(u32),
    /// Anything else, described for error messages (`G729/8000`).
    Other(String),
}

/// The profiles of an audio stream Careline can take; the `SAVP` ones need SRTP
/// (see [`choose_srtp`]).
pub(super) fn supported_profile(proto: &str) -> Option<&'static str> {
    ["RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF"]
        .into_iter()
        .find(|p| p.eq_ignore_ascii_case(proto))
}

pub(super) fn select_audio<'s, 'a>(
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
                    "m=audio profile {} (line {}); Careline accepts RTP/AVP, RTP/AVPF, \
                     RTP/SAVP and RTP/SAVPF (DTLS-SRTP is for browsers, by WHIP)",
                    media.proto, media.line
                )
            });
            continue;
        };
        let secure_profile = proto.starts_with("RTP/SAVP");
        let srtp = match choose_srtp(media, secure_profile, local.srtp.as_ref()) {
            Ok(srtp) => srtp,
            Err(why) => {
                unsupported.get_or_insert(why);
                continue;
            }
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
            srtp,
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

pub(super) fn describe(pt: u8, format: &Format) -> String {
    match format {
        Format::Codec(codec) => format!("{} (PT {pt})", rtpmap_value(*codec)),
        Format::TelephoneEvent(rate) => format!("telephone-event/{rate} (PT {pt})"),
        Format::Other(name) => format!("{name} (PT {pt})"),
    }
}

pub(super) fn accepted(local: &LocalMedia) -> String {
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

pub(super) fn negotiate(
    sdp: &Sdp<'_>,
    selected: &Selected<'_, '_>,
) -> Result<Negotiated, SdpError> {
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
        srtp: selected.srtp.as_ref().map(|(_, keys)| keys.clone()),
    })
}

/// RTCP goes to `a=rtcp:<port> [IN IP4|IP6 <addr>]` (RFC 3605 §2.1) when given, else to the
/// RTP port + 1 at the RTP address (RFC 3550 §11). `None` when that port would be 65536.
pub(super) fn rtcp_address(media: &Media<'_>, rtp: SocketAddr) -> Option<SocketAddr> {
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
pub(super) fn parse_ptime(value: &str) -> Option<u32> {
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
pub(super) fn parse_connection(conn: Conn<'_>) -> Result<IpAddr, SdpError> {
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
