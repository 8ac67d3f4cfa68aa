//! The tolerant SDP reader (see the module documentation of [`super`] for why it exists):
//! `<letter>=<value>` lines in any order, every line ending, nothing read that the answer
//! does not use, strict only where the answer depends on it. It never panics.

use super::*;
use crate::media::codec::Codec;

#[derive(Debug)]
pub(super) struct Sdp<'a> {
    pub(super) session_conn: Option<Conn<'a>>,
    pub(super) session_attrs: Vec<Attr<'a>>,
    pub(super) media: Vec<Media<'a>>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Conn<'a> {
    pub(super) line: usize,
    pub(super) value: &'a str,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Attr<'a> {
    pub(super) name: &'a str,
    pub(super) value: Option<&'a str>,
}

#[derive(Debug)]
pub(super) struct Media<'a> {
    pub(super) line: usize,
    pub(super) kind: &'a str,
    pub(super) port: u16,
    pub(super) proto: &'a str,
    pub(super) fmts: Vec<&'a str>,
    pub(super) conn: Option<Conn<'a>>,
    pub(super) attrs: Vec<Attr<'a>>,
}

/// `a=rtpmap:<pt> <name>/<rate>[/<channels>]` (RFC 8866 §6.6).
#[derive(Clone, Copy, Debug)]
pub(super) struct RtpMap<'a> {
    pub(super) name: &'a str,
    pub(super) rate: u32,
    pub(super) channels: Option<&'a str>,
}

pub(super) fn attrs_named<'s, 'a>(
    attrs: &'s [Attr<'a>],
    name: &'static str,
) -> impl Iterator<Item = &'a str> + 's {
    attrs
        .iter()
        .filter(move |a| a.name.eq_ignore_ascii_case(name))
        .filter_map(|a| a.value)
}

pub(super) fn direction_in(attrs: &[Attr<'_>]) -> Option<Direction> {
    attrs.iter().find_map(|a| Direction::from_attribute(a.name))
}

impl<'a> Media<'a> {
    pub(super) fn attrs<'s>(&'s self, name: &'static str) -> impl Iterator<Item = &'a str> + 's {
        attrs_named(&self.attrs, name)
    }

    /// Media-level direction; the session-level one applies only when this is `None`
    /// (RFC 3264 §5.1, RFC 8866 §6.7).
    pub(super) fn direction(&self) -> Option<Direction> {
        direction_in(&self.attrs)
    }

    /// The `m=` formats in order, as RTP payload types with what each stands for. Formats
    /// that are not payload type numbers are skipped.
    pub(super) fn formats(&self) -> Vec<(u8, Format)> {
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
pub(super) fn classify(pt: u8, rtpmap: Option<&RtpMap<'_>>) -> Format {
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
pub(super) fn static_payload_name(pt: u8) -> Option<&'static str> {
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

pub(super) fn parse_payload_type(text: &str) -> Option<u8> {
    text.trim().parse::<u8>().ok().filter(|pt| *pt <= 127)
}

pub(super) fn parse_rtpmap(value: &str) -> Option<(u8, RtpMap<'_>)> {
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

pub(super) fn parse_fmtp(value: &str) -> Option<(u8, &str)> {
    let (pt, params) = value.trim().split_once(char::is_whitespace)?;
    Some((parse_payload_type(pt)?, params.trim()))
}

pub(super) fn excerpt(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let mut short: String = text.chars().take(MAX).collect();
        short.push('…');
        short
    }
}

pub(super) fn parse_error(line: usize, message: impl std::fmt::Display) -> SdpError {
    SdpError::Parse(format!("line {line}: {message}"))
}

/// Reads SDP leniently: any order of lines, CRLF/LF/CR, surrounding blanks trimmed, unknown
/// line types ignored. Checked: the body starts with `v=0`, has an `o=` of six fields
/// (so a body cut short in its header fails), and each `m=` line has a port and a format.
pub(super) fn parse(text: &str) -> Result<Sdp<'_>, SdpError> {
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
pub(super) fn parse_media_line(line: usize, value: &str) -> Result<Media<'_>, SdpError> {
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
