//! DTMF carried in SIP INFO (no RFC; the de-facto formats of Cisco and others):
//! `application/dtmf-relay` with `Signal=5` and `Duration=160` lines, and
//! `application/dtmf` whose body is the key itself.

use crate::media::dtmf::Digit;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InfoError {
    #[error("INFO content type `{0}` carries no DTMF")]
    NotDtmf(String),
    #[error("INFO body names no DTMF key")]
    NoDigit,
}

/// Answers an in-dialog INFO (200 for a key, 415 for another body type, 400 for a DTMF body
/// that names no key) and returns the key.
pub(crate) async fn answer(
    content_type: &str,
    body: &[u8],
    reply: super::Responder,
) -> Option<Digit> {
    match parse_dtmf_info(content_type, body) {
        Ok(digit) => {
            reply.respond(200, None).await;
            Some(digit)
        }
        Err(InfoError::NotDtmf(_)) => {
            reply.respond(415, None).await;
            None
        }
        Err(InfoError::NoDigit) => {
            reply.respond(400, None).await;
            None
        }
    }
}

/// Returns the key an INFO request carries. `content_type` is the header value (parameters
/// allowed); the body is read leniently (whitespace, case, LF or CRLF).
pub(crate) fn parse_dtmf_info(content_type: &str, body: &[u8]) -> Result<Digit, InfoError> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let body = String::from_utf8_lossy(body);
    match mime.as_str() {
        "application/dtmf-relay" => body
            .lines()
            .filter_map(|line| line.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("signal"))
            .and_then(|(_, v)| key(v.trim()))
            .ok_or(InfoError::NoDigit),
        "application/dtmf" => key(body.trim()).ok_or(InfoError::NoDigit),
        other => Err(InfoError::NotDtmf(other.to_string())),
    }
}

/// One key: a keypad character, or an RFC 4733 event code written as a number (`10` = `*`).
fn key(v: &str) -> Option<Digit> {
    let mut chars = v.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Digit::from_char(c),
        _ => v.parse::<u8>().ok().and_then(Digit::from_event_code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digit {
        Digit::from_char(c).unwrap()
    }

    #[test]
    fn dtmf_relay_bodies_as_phones_send_them() {
        assert_eq!(
            parse_dtmf_info("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
            Ok(d('5'))
        );
        assert_eq!(
            parse_dtmf_info("Application/DTMF-Relay", b"signal = #\nduration=250"),
            Ok(d('#'))
        );
        assert_eq!(
            parse_dtmf_info("application/dtmf-relay", b"Signal=10\r\n"),
            Ok(d('*'))
        );
        assert_eq!(
            parse_dtmf_info("application/dtmf-relay", b"Duration=160\r\n"),
            Err(InfoError::NoDigit)
        );
        assert_eq!(
            parse_dtmf_info("application/dtmf-relay", b"Signal=Z\r\n"),
            Err(InfoError::NoDigit)
        );
    }

    #[test]
    fn plain_dtmf_bodies() {
        assert_eq!(parse_dtmf_info("application/dtmf", b"7"), Ok(d('7')));
        assert_eq!(
            parse_dtmf_info("application/dtmf; charset=utf-8", b" * \r\n"),
            Ok(d('*'))
        );
        assert_eq!(parse_dtmf_info("application/dtmf", b"11"), Ok(d('#')));
        assert_eq!(
            parse_dtmf_info("application/dtmf", b""),
            Err(InfoError::NoDigit)
        );
    }

    #[test]
    fn other_info_bodies_are_not_digits() {
        assert!(matches!(
            parse_dtmf_info("application/media_control+xml", b"<x/>"),
            Err(InfoError::NotDtmf(_))
        ));
    }
}
