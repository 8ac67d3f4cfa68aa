//! What a request that parsed must still be refused for, and with which answer (RFC 3261
//! §8.2: a UAS inspects the method, the headers, the content and the extensions, in that
//! order, before acting on a request). The [guard](super::guard) answers what does not parse
//! at all (UDP); this runs on every request the stack hands over, whatever the transport.
//!
//! Sans-IO: a request in, a [`Refusal`] (code, reason phrase naming the fault, the headers
//! the RFC asks the answer to carry) or nothing out.

use rsipstack::sip::{Method, Request, Scheme, Version};

/// The body type of a session description; an INVITE, re-INVITE or UPDATE may also carry it
/// as a part of `multipart/mixed` (see [`super::body`]); anything else is answered 415 with
/// Accept listing both (RFC 3261 §8.2.3).
pub(crate) const SDP: &str = "application/sdp";

/// SIP extensions (option tags, RFC 3261 §19.2) Careline implements; a request that
/// requires any other gets 420 (§8.2.2.3). None today: reliable provisional responses
/// (100rel), session timers (timer) and the rest are not implemented, and claiming them
/// would break the calls that rely on them.
pub(crate) const SUPPORTED_EXTENSIONS: &[&str] = &[];

/// Why a request is refused and how to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: u16,
    /// The reason phrase: the standard one, naming the fault where it helps the sender.
    pub reason: String,
    /// Extra headers the answer carries (`Unsupported`, `Accept`, ...), as (name, value).
    pub headers: Vec<(&'static str, String)>,
    /// The metric label of this kind of refusal.
    pub kind: &'static str,
}

impl Refusal {
    fn new(code: u16, reason: impl Into<String>, kind: &'static str) -> Refusal {
        Refusal {
            code,
            reason: reason.into(),
            headers: Vec::new(),
            kind,
        }
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> Refusal {
        self.headers.push((name, value.into()));
        self
    }
}

/// Checks a request that parsed; `None` when it may go on to the dialog or the call.
/// ACK is never answered (RFC 3261 §17.2.1) and CANCEL is matched to its INVITE whatever it
/// says, so neither is refused here.
pub(crate) fn check(req: &Request) -> Option<Refusal> {
    if matches!(req.method, Method::Ack | Method::Cancel) {
        return None;
    }
    // §8.1.1.? / §21.5.6: a version other than 2.0 cannot be read as SIP 2.0 (RFC 4475
    // §3.3.7 "badvers").
    if req.version != Version::V2 {
        return Some(Refusal::new(
            505,
            format!("Version Not Supported ({})", req.version),
            "version",
        ));
    }
    // §8.2.2.1: a Request-URI scheme the UAS does not understand gets 416.
    if let Some(Scheme::Other(scheme)) = &req.uri.scheme
        && !scheme.eq_ignore_ascii_case("tel")
    {
        return Some(Refusal::new(416, "Unsupported URI Scheme", "uri_scheme"));
    }
    let headers = header_values(req);
    let value_of = |name: &str| {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    // §8.1.1.6 / §16.3 item 2: Max-Forwards is a number; at 0 the request may go no further
    // (OPTIONS may still be answered by the element it reached).
    if let Some(mf) = value_of("max-forwards").first() {
        match mf.trim().parse::<u32>() {
            Ok(0) if req.method != Method::Options => {
                return Some(Refusal::new(483, "Too Many Hops", "too_many_hops"));
            }
            Ok(n) if n > 255 => {
                return Some(Refusal::new(
                    400,
                    "Bad Request (Max-Forwards above 255)",
                    "malformed",
                ));
            }
            Ok(_) => {}
            Err(_) => {
                return Some(Refusal::new(
                    400,
                    "Bad Request (malformed Max-Forwards)",
                    "malformed",
                ));
            }
        }
    }
    // §8.2.2.3: every option tag in Require must be supported, else 420 listing the others.
    let unsupported: Vec<&str> = value_of("require")
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .filter(|t| {
            !SUPPORTED_EXTENSIONS
                .iter()
                .any(|s| s.eq_ignore_ascii_case(t))
        })
        .collect();
    if !unsupported.is_empty() {
        return Some(
            Refusal::new(420, "Bad Extension", "bad_extension")
                .with("Unsupported", unsupported.join(", ")),
        );
    }
    // §8.2.3: a body Careline cannot read (type or encoding) gets 415 with what it can.
    if !req.body.is_empty() && matches!(req.method, Method::Invite | Method::Update) {
        let Some(content_type) = value_of("content-type").first().copied() else {
            // §20.15: a body without Content-Type cannot be interpreted.
            return Some(Refusal::new(
                400,
                "Bad Request (a body without Content-Type)",
                "malformed",
            ));
        };
        match super::body::session_description(content_type, &req.body) {
            Ok(_) => {}
            Err(super::body::BodyError::Unsupported) => {
                return Some(
                    Refusal::new(415, "Unsupported Media Type", "unsupported_media")
                        .with("Accept", super::body::ACCEPTED),
                );
            }
            Err(super::body::BodyError::Malformed(why)) => {
                return Some(Refusal::new(400, why, "malformed"));
            }
        }
        let encodings: Vec<&str> = value_of("content-encoding")
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
            .collect();
        if !encodings.is_empty() {
            return Some(
                Refusal::new(415, "Unsupported Media Type", "unsupported_media")
                    .with("Accept-Encoding", "identity"),
            );
        }
    }
    None
}

/// Every header as (lower-case full name, value), compact forms written out (RFC 3261 §7.3.3).
fn header_values(req: &Request) -> Vec<(String, String)> {
    req.headers
        .iter()
        .filter_map(|h| {
            let text = h.to_string();
            let (name, value) = text.split_once(':')?;
            let name = match name.trim().to_ascii_lowercase().as_str() {
                "c" => "content-type".to_string(),
                "e" => "content-encoding".to_string(),
                "l" => "content-length".to_string(),
                other => other.to_string(),
            };
            Some((name, value.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
