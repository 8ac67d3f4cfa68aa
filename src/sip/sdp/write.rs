//! Writing SDP: Careline's answer to an offer (RFC 3264 §6) and its own offer (§5).

use std::fmt::Write as _;
use std::net::IpAddr;

use super::*;
use crate::media::codec::Codec;

pub(super) fn address_type(address: IpAddr) -> &'static str {
    if address.is_ipv4() { "IP4" } else { "IP6" }
}

/// `v=`, `o=`, `s=`, `c=`, `t=` — the session part of both offers and answers. `t=0 0`: an
/// unbounded session (RFC 3264 §5).
pub(super) fn session_header(local: &LocalMedia) -> String {
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

pub(super) fn offered_payload_type(codec: Codec) -> u8 {
    codec.static_payload_type().unwrap_or(OPUS_PAYLOAD_TYPE)
}

/// `PCMU/8000`, `opus/48000/2`: the channel count is written only when it is not 1
/// (RFC 8866 §6.6).
pub(super) fn rtpmap_value(codec: Codec) -> String {
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

pub(super) fn write_answer(
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
        if let Some((tag, keys)) = &selected.srtp {
            out.push_str(&crypto_attribute(*tag, keys.suite, &keys.local));
        }
    }
    out
}

/// Whether the offer's `a=fmtp` for the Opus payload type asks for in-band FEC
/// (RFC 7587 §6.1 `useinbandfec=1`); Careline then echoes it.
pub(super) fn opus_inband_fec(media: &Media<'_>, pt: u8) -> bool {
    media
        .attrs("fmtp")
        .filter_map(parse_fmtp)
        .filter(|(fmtp_pt, _)| *fmtp_pt == pt)
        .flat_map(|(_, params)| params.split(';'))
        .filter_map(|param| param.split_once('='))
        .any(|(key, value)| key.trim().eq_ignore_ascii_case("useinbandfec") && value.trim() == "1")
}
