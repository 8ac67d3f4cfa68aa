//! Just enough SIP for a caller (RFC 3261): reading the messages a server sends, writing the
//! requests and responses a UAC needs, and finding message boundaries on a stream.
//!
//! Deliberately not a SIP stack: a load generator needs the handful of headers that tie a
//! response to its call and transaction, and must not spend a core parsing everything.

/// A received SIP message, borrowed from the datagram or stream buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg<'a> {
    /// `Some(code)` for a response.
    pub status: Option<u16>,
    /// The method of a request.
    pub method: Option<&'a str>,
    pub call_id: &'a str,
    pub cseq: u32,
    pub cseq_method: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    /// Every Via value, in order (a response to a server request copies them all).
    pub vias: Vec<&'a str>,
    pub contact: Option<&'a str>,
    pub body: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SipParseError {
    #[error("no end of headers")]
    Incomplete,
    #[error("not UTF-8 headers")]
    Encoding,
    #[error("bad start line")]
    StartLine,
    #[error("missing {0}")]
    Missing(&'static str),
}

/// Compact header forms (RFC 3261 §7.3.3) mapped to the full names used here.
fn header_name(name: &str) -> &str {
    match name {
        "i" | "I" => "call-id",
        "f" | "F" => "from",
        "t" | "T" => "to",
        "v" | "V" => "via",
        "m" | "M" => "contact",
        "l" | "L" => "content-length",
        _ => name,
    }
}

impl<'a> Msg<'a> {
    pub fn parse(buf: &'a [u8]) -> Result<Msg<'a>, SipParseError> {
        let split = find(buf, b"\r\n\r\n").ok_or(SipParseError::Incomplete)?;
        let head = std::str::from_utf8(&buf[..split]).map_err(|_| SipParseError::Encoding)?;
        let mut lines = head.split("\r\n");
        let start = lines.next().ok_or(SipParseError::StartLine)?;
        let (status, method) = if let Some(rest) = start.strip_prefix("SIP/2.0 ") {
            let code = rest
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or(SipParseError::StartLine)?;
            (Some(code), None)
        } else {
            let m = start.split(' ').next().filter(|m| !m.is_empty());
            (None, Some(m.ok_or(SipParseError::StartLine)?))
        };
        let mut msg = Msg {
            status,
            method,
            call_id: "",
            cseq: 0,
            cseq_method: "",
            from: "",
            to: "",
            vias: Vec::with_capacity(2),
            contact: None,
            body: &[],
        };
        let mut content_length: Option<usize> = None;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim();
            let value = value.trim();
            let lower = header_name(name);
            if lower.eq_ignore_ascii_case("call-id") {
                msg.call_id = value;
            } else if lower.eq_ignore_ascii_case("cseq") {
                let mut parts = value.split_whitespace();
                msg.cseq = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                msg.cseq_method = parts.next().unwrap_or("");
            } else if lower.eq_ignore_ascii_case("from") {
                msg.from = value;
            } else if lower.eq_ignore_ascii_case("to") {
                msg.to = value;
            } else if lower.eq_ignore_ascii_case("via") {
                // Several values may share one header line.
                msg.vias.extend(value.split(',').map(str::trim));
            } else if lower.eq_ignore_ascii_case("contact") {
                msg.contact = Some(value);
            } else if lower.eq_ignore_ascii_case("content-length") {
                content_length = value.parse().ok();
            }
        }
        if msg.call_id.is_empty() {
            return Err(SipParseError::Missing("Call-ID"));
        }
        if msg.cseq_method.is_empty() {
            return Err(SipParseError::Missing("CSeq"));
        }
        let body = &buf[split + 4..];
        msg.body = match content_length {
            Some(n) => &body[..n.min(body.len())],
            None => body,
        };
        Ok(msg)
    }

    /// The `tag` parameter of To.
    pub fn to_tag(&self) -> Option<&'a str> {
        tag(self.to)
    }

    /// The URI inside Contact (`<sip:...>` or bare).
    pub fn contact_uri(&self) -> Option<&'a str> {
        let c = self.contact?;
        Some(match c.find('<') {
            Some(open) => c[open + 1..].split('>').next().unwrap_or(""),
            None => c.split(';').next().unwrap_or(c),
        })
    }
}

fn tag(header: &str) -> Option<&str> {
    // Parameters follow the URI (after `>` when there is one).
    let params = match header.rfind('>') {
        Some(i) => &header[i..],
        None => header,
    };
    params
        .split(';')
        .find_map(|p| p.trim().strip_prefix("tag="))
        .map(str::trim)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Takes one whole message off the front of a stream buffer (RFC 3261 §18.3: framing by
/// Content-Length). Keep-alive CRLFs between messages are skipped.
pub fn take_stream_message(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let skip = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if skip > 0 {
        buf.drain(..skip);
    }
    let split = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..split]);
    let len: usize = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| {
            let n = header_name(n.trim());
            n.eq_ignore_ascii_case("content-length")
        })
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let total = split + 4 + len;
    if buf.len() < total {
        return None;
    }
    Some(buf.drain(..total).collect())
}

/// A response to a request the server sent (its BYE, OPTIONS, INFO): the request's Via,
/// From, To, Call-ID and CSeq copied (RFC 3261 §8.2.6.2).
pub fn response(req: &Msg<'_>, code: u16, reason: &str, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
    for v in &req.vias {
        let _ = write!(out, "Via: {v}\r\n");
    }
    let _ = write!(
        out,
        "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {}\r\nContent-Length: 0\r\n\r\n",
        req.from, req.to, req.call_id, req.cseq, req.cseq_method
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKa;rport=5070, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKb\r\n\
From: <sip:caller@127.0.0.1>;tag=abc\r\nTo: <sip:100@127.0.0.1:5060>;tag=srv1\r\ni: call-1@lt\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:careline@127.0.0.1:5060;transport=tcp>\r\nContent-Type: application/sdp\r\nl: 4\r\n\r\nv=0\r\nextra";

    #[test]
    fn reads_what_a_caller_needs_from_a_response() {
        let m = Msg::parse(OK).unwrap();
        assert_eq!(m.status, Some(200));
        assert_eq!(
            (m.call_id, m.cseq, m.cseq_method),
            ("call-1@lt", 1, "INVITE")
        );
        assert_eq!(m.to_tag(), Some("srv1"));
        assert_eq!(
            m.contact_uri(),
            Some("sip:careline@127.0.0.1:5060;transport=tcp")
        );
        assert_eq!(m.vias.len(), 2);
        assert_eq!(m.body, b"v=0\r");
    }

    #[test]
    fn answers_a_server_request_with_its_headers() {
        let bye = b"BYE sip:caller@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n\
From: <sip:100@127.0.0.1>;tag=srv1\r\nTo: <sip:caller@127.0.0.1>;tag=abc\r\nCall-ID: call-1@lt\r\nCSeq: 7 BYE\r\nContent-Length: 0\r\n\r\n";
        let m = Msg::parse(bye).unwrap();
        assert_eq!(m.method, Some("BYE"));
        let mut out = Vec::new();
        response(&m, 200, "OK", &mut out);
        let r = Msg::parse(&out).unwrap();
        assert_eq!(r.status, Some(200));
        assert_eq!((r.cseq, r.cseq_method, r.call_id), (7, "BYE", "call-1@lt"));
        assert_eq!(r.vias, vec!["SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx"]);
        assert_eq!(r.to_tag(), Some("abc"));
    }

    #[test]
    fn stream_framing_waits_for_the_whole_body() {
        let mut buf = b"\r\n\r\n".to_vec();
        buf.extend_from_slice(&OK[..OK.len() - 12]);
        assert!(take_stream_message(&mut buf).is_none());
        buf.extend_from_slice(&OK[OK.len() - 12..]);
        let m = take_stream_message(&mut buf).unwrap();
        assert!(m.ends_with(b"v=0\r"));
        assert_eq!(buf, b"\nextra");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\r\n\r\n",
            b"SIP/2.0 xx\r\n\r\n",
            b"INVITE x\r\nCSeq: 1 INVITE\r\n\r\n",
        ] {
            assert!(Msg::parse(bad).is_err());
        }
    }
}
