//! The session description in a request's body: the whole body when it is `application/sdp`,
//! or its `application/sdp` part when it is `multipart/mixed` (RFC 5621, RFC 2046 §5.1), as
//! gateways send SDP beside ISUP (SIP-T, RFC 3372) or beside a location object (RFC 6442).
//! Sans-IO; the other parts are not read.

/// Why a body has no SDP Careline can take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// A type Careline does not read, or a multipart body without an SDP part: 415.
    Unsupported,
    /// A multipart body that cannot be read (no boundary, no closing delimiter): 400, with
    /// the reason phrase.
    Malformed(&'static str),
}

/// The body types Careline reads, for `Accept` (RFC 3261 §21.4.13).
pub(crate) const ACCEPTED: &str = "application/sdp, multipart/mixed";

fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The value of parameter `name` in a Content-Type (quoted or a token, RFC 2045 §5.1).
fn parameter<'a>(content_type: &'a str, name: &str) -> Option<&'a str> {
    content_type.split(';').skip(1).find_map(|p| {
        let (key, value) = p.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"'))
    })
}

/// The SDP in a body of `content_type`.
pub(crate) fn session_description<'a>(
    content_type: &str,
    body: &'a [u8],
) -> Result<&'a [u8], BodyError> {
    match media_type(content_type).as_str() {
        super::strict::SDP => Ok(body),
        "multipart/mixed" => {
            let boundary = parameter(content_type, "boundary")
                .filter(|b| !b.is_empty() && b.len() <= 70)
                .ok_or(BodyError::Malformed(
                    "Bad Request (multipart body without boundary)",
                ))?;
            sdp_part(body, boundary.as_bytes())
        }
        _ => Err(BodyError::Unsupported),
    }
}

/// The first part whose Content-Type is `application/sdp`.
fn sdp_part<'a>(body: &'a [u8], boundary: &[u8]) -> Result<&'a [u8], BodyError> {
    let mut delimiter = b"--".to_vec();
    delimiter.extend_from_slice(boundary);
    let malformed =
        BodyError::Malformed("Bad Request (multipart body without its closing delimiter)");
    // The first delimiter may start the body; every later one starts a line.
    let mut at = if body.starts_with(&delimiter) {
        0
    } else {
        find(body, &[b"\r\n", delimiter.as_slice()].concat()).ok_or(malformed.clone())? + 2
    };
    let mut line_delimiter = b"\r\n".to_vec();
    line_delimiter.extend_from_slice(&delimiter);
    loop {
        let after = at + delimiter.len();
        let rest = body.get(after..).ok_or(malformed.clone())?;
        if rest.starts_with(b"--") {
            return Err(BodyError::Unsupported); // the closing delimiter: no SDP part
        }
        let part_start = after + find(rest, b"\r\n").ok_or(malformed.clone())? + 2;
        let part_len = find(&body[part_start..], &line_delimiter).ok_or(malformed.clone())?;
        let part = &body[part_start..part_start + part_len];
        let (headers, content) = match find(part, b"\r\n\r\n") {
            Some(end) => (&part[..end], &part[end + 4..]),
            // RFC 2046 §5.1.1: a part may start with its blank line (no headers).
            None if part.starts_with(b"\r\n") => (&part[..0], &part[2..]),
            None => (part, &part[part.len()..]),
        };
        let is_sdp = String::from_utf8_lossy(headers).split("\r\n").any(|line| {
            line.split_once(':').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("content-type")
                    && media_type(value) == super::strict::SDP
            })
        });
        if is_sdp {
            return Ok(content);
        }
        at = part_start + part_len + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

    fn multipart(parts: &[(&str, &str)]) -> String {
        let mut body = String::from("preamble to ignore\r\n");
        for (content_type, content) in parts {
            body.push_str(&format!(
                "--unique-boundary-1\r\nContent-Type: {content_type}\r\n\r\n{content}\r\n"
            ));
        }
        body.push_str("--unique-boundary-1--\r\n");
        body
    }

    const MIXED: &str = "multipart/mixed;boundary=\"unique-boundary-1\"";

    #[test]
    fn the_sdp_is_the_body_or_its_sdp_part() {
        assert_eq!(
            session_description("application/SDP; charset=utf-8", SDP.as_bytes()),
            Ok(SDP.as_bytes())
        );
        let body = multipart(&[
            ("application/isup;version=itu-t92+", "\u{1}\u{2}binary ISUP"),
            ("Application/Sdp", SDP),
        ]);
        assert_eq!(
            session_description(MIXED, body.as_bytes()),
            Ok(SDP.as_bytes())
        );
        let first = multipart(&[("application/sdp", SDP), ("text/plain", "hello")]);
        assert_eq!(
            session_description(
                "Multipart/Mixed; boundary=unique-boundary-1",
                first.as_bytes()
            ),
            Ok(SDP.as_bytes())
        );
    }

    #[test]
    fn a_body_without_sdp_or_unreadable_is_refused() {
        assert_eq!(
            session_description("application/unknownformat", b"x"),
            Err(BodyError::Unsupported)
        );
        let no_sdp = multipart(&[("text/plain", "hello")]);
        assert_eq!(
            session_description(MIXED, no_sdp.as_bytes()),
            Err(BodyError::Unsupported)
        );
        assert!(matches!(
            session_description("multipart/mixed", no_sdp.as_bytes()),
            Err(BodyError::Malformed(_))
        ));
        let cut = multipart(&[("application/sdp", SDP)]).replace("--unique-boundary-1--\r\n", "");
        assert!(matches!(
            session_description(MIXED, cut.as_bytes()),
            Err(BodyError::Malformed(_))
        ));
        for n in 0..cut.len() {
            // Never panics, whatever is cut off.
            let _ = session_description(MIXED, &cut.as_bytes()[..n]);
        }
    }

    proptest::proptest! {
        /// Any body and boundary: an answer or an error, never a panic, and an SDP part found
        /// is a slice of the body.
        #[test]
        fn any_multipart_is_read_without_panic(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            boundary in "[a-z-]{0,8}",
        ) {
            let ct = format!("multipart/mixed; boundary={boundary}");
            if let Ok(sdp) = session_description(&ct, &body) {
                proptest::prop_assert!(sdp.len() <= body.len());
            }
        }
    }
}
