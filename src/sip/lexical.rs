//! The text of a SIP message as RFC 3261 §7.3.1 lets a sender write it, and the plain form the
//! SIP stack's parser reads. Sans-IO, bytes in and bytes out; run by the
//! [guard](super::guard) on every datagram before anything parses it.
//!
//! rsipstack's parser takes the common form only: one header per line, `Name: value`, no
//! whitespace around `;`, `=` or `/`. RFC 3261 also allows a header to continue on lines that
//! start with whitespace (§7.3.1, "line folding"), whitespace before the colon (HCOLON), and
//! whitespace around the separators of structured values (SEMI, EQUAL, SLASH, COMMA are all
//! `SWS x SWS`, §25.1). A phone that writes those sends valid requests that the stack dropped
//! without a word (RFC 4475 §3.1.1.1 "wsinv"). [`canonical`] rewrites such a message into the
//! plain form, leaving quoted strings and `<...>` URIs as they are, and a message that needs
//! no rewriting byte for byte as it was.
//!
//! [`framing_fault`] finds what the stack's parser lets through but RFC 3261 calls invalid:
//! a start line that is not three parts separated by single spaces (§7.1; RFC 4475 "trws",
//! "ltgtruri"), a Content-Length that is not one number or runs past the datagram (§18.3,
//! §20.14; "clerr", "ncl", "mcl01"), and an unterminated quoted string or `<` in a name-addr
//! header ("quotbal").

use std::borrow::Cow;

/// Headers whose values are structured (parameters, addresses, numbers): whitespace around
/// their separators carries no meaning and is removed. Free-text headers (Subject, Warning,
/// User-Agent, extensions) are unfolded and trimmed only.
const STRUCTURED: &[&str] = &[
    "via",
    "v",
    "from",
    "f",
    "to",
    "t",
    "contact",
    "m",
    "cseq",
    "call-id",
    "i",
    "max-forwards",
    "content-length",
    "l",
    "content-type",
    "c",
    "route",
    "record-route",
    "expires",
    "require",
    "proxy-require",
    "supported",
    "k",
    "allow",
    "accept",
    "event",
    "o",
    "refer-to",
    "r",
];

/// Headers holding a name-addr (a display name, maybe quoted, and a URI in `<...>`).
const NAME_ADDR: &[&str] = &[
    "from",
    "f",
    "to",
    "t",
    "contact",
    "m",
    "route",
    "record-route",
];

/// The head (start line and header lines, unfolded) and the body of a message, when its head
/// is text that ends with an empty line.
fn split(datagram: &[u8]) -> Option<(Vec<Cow<'_, str>>, &[u8])> {
    let end = datagram.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&datagram[..end]).ok()?;
    let body = &datagram[end + 4..];
    // Lines are borrowed; only a folded header is copied.
    let mut lines: Vec<Cow<'_, str>> = Vec::with_capacity(16);
    for line in head.split("\r\n") {
        let headers_begun = lines.len() > 1;
        match lines.last_mut() {
            // §7.3.1: a line starting with whitespace continues the header above it (never
            // the start line).
            Some(last) if headers_begun && line.starts_with([' ', '\t']) => {
                let last = last.to_mut();
                last.push(' ');
                last.push_str(line.trim_start());
            }
            _ => lines.push(Cow::Borrowed(line)),
        }
    }
    Some((lines, body))
}

/// The name (trimmed, as written) and value (trimmed) of a header line.
fn header(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once(':')?;
    Some((name.trim_end(), value.trim()))
}

/// Removes whitespace around `;`, `=` and `/` and collapses other runs to one space, outside
/// quoted strings and `<...>`. Whitespace after a comma (`INVITE, ACK`) is how most senders
/// write lists, and the stack reads it: it stays.
fn tighten(value: &str) -> String {
    const SEPARATORS: &[char] = &[';', '=', '/'];
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    let mut nesting = Nesting::default();
    while let Some(c) = chars.next() {
        if nesting.outside(c) && (c == ' ' || c == '\t') {
            while chars.peek().is_some_and(|n| *n == ' ' || *n == '\t') {
                chars.next();
            }
            let before = out.chars().last();
            let after = chars.peek().copied();
            let around_separator = before.is_some_and(|b| SEPARATORS.contains(&b))
                || after.is_some_and(|a| SEPARATORS.contains(&a));
            if !around_separator && before.is_some() && after.is_some() {
                out.push(' ');
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Where a header value's characters stand: inside a quoted string (backslash escapes
/// honoured, RFC 3261 §25.1 quoted-pair), inside `<...>`, or outside both.
#[derive(Default)]
struct Nesting {
    quoted: bool,
    angle: bool,
    escaped: bool,
}

impl Nesting {
    /// Takes the next character; true when it stands outside quoted strings and `<...>`
    /// (their delimiters count as inside).
    fn outside(&mut self, c: char) -> bool {
        if self.quoted {
            if self.escaped {
                self.escaped = false;
            } else if c == '\\' {
                self.escaped = true;
            } else if c == '"' {
                self.quoted = false;
            }
            return false;
        }
        if self.angle {
            self.angle = c != '>';
            return false;
        }
        match c {
            '"' => self.quoted = true,
            '<' => self.angle = true,
            _ => return true,
        }
        false
    }

    /// Every quoted string and `<` opened has been closed.
    fn closed(&self) -> bool {
        !self.quoted && !self.angle
    }
}

/// The message in the plain form the stack reads, or `None` when it already is in that form
/// (or its head is not text ending in an empty line, which the parser then judges).
pub(crate) fn canonical(datagram: &[u8]) -> Option<Vec<u8>> {
    if !may_need_rewriting(datagram) {
        return None;
    }
    let (lines, body) = split(datagram)?;
    let mut head = String::with_capacity(datagram.len());
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            head.push_str("\r\n");
        }
        let rewritten = (i > 0)
            .then(|| header(line))
            .flatten()
            .map(|(name, value)| {
                let lower = name.to_ascii_lowercase();
                let value = if STRUCTURED.contains(&lower.as_str()) {
                    tighten(value)
                } else {
                    value.to_string()
                };
                format!("{name}: {value}")
            });
        match rewritten {
            // A line that only lacks the space after its colon is left as written.
            Some(r) if r != *line && r.replacen(": ", ":", 1) != *line => head.push_str(&r),
            _ => head.push_str(line),
        }
    }
    head.push_str("\r\n\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    (out != datagram).then_some(out)
}

/// Whether the head holds anything [`canonical`] would rewrite: a fold, whitespace before a
/// colon or around `;`, `=`, `/`, or a run of spaces. A cheap scan without allocating, so the
/// common datagram (and every datagram of a flood) costs one pass over its head.
fn may_need_rewriting(datagram: &[u8]) -> bool {
    let end = datagram
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(datagram.len());
    let head = &datagram[..end];
    head.windows(2).any(|w| {
        let ws = |b: u8| b == b' ' || b == b'\t';
        matches!(w, [b'\n', b] if ws(*b))
            || matches!(w, [a, b':' | b';' | b'=' | b'/'] if ws(*a))
            || matches!(w, [b';' | b'=' | b'/', b] if ws(*b))
            || (ws(w[0]) && ws(w[1]))
    })
}

/// What makes a request that the stack's parser would take invalid all the same, as the
/// reason phrase of its 400; `None` for a response or a request without such a fault.
pub(crate) fn framing_fault(datagram: &[u8]) -> Option<&'static str> {
    let (lines, body) = split(datagram)?;
    let start = lines.first()?;
    if start.starts_with("SIP/") {
        return None;
    }
    let parts: Vec<&str> = start.split(' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty() || p.contains('\t')) {
        return Some(
            "Bad Request (request line is not method, URI and version separated by single spaces)",
        );
    }
    if parts[1].contains(['<', '>', '"']) {
        return Some("Bad Request (Request-URI with <, > or \")");
    }
    let mut lengths = lines
        .iter()
        .skip(1)
        .filter_map(|l| header(l))
        .filter(|(name, _)| {
            name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l")
        });
    if let Some((_, first)) = lengths.next() {
        if lengths.next().is_some() {
            return Some("Bad Request (Content-Length given twice)");
        }
        if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
            return Some("Bad Request (malformed Content-Length)");
        }
        if first.parse::<usize>().map_or(true, |n| n > body.len()) {
            return Some("Bad Request (Content-Length past the end of the datagram)");
        }
    }
    for (name, value) in lines.iter().skip(1).filter_map(|l| header(l)) {
        if NAME_ADDR.contains(&name.to_ascii_lowercase().as_str()) && !balanced(value) {
            return Some("Bad Request (unterminated quoted string or <...> in an address)");
        }
    }
    None
}

/// Quoted strings closed (backslash escapes honoured) and `<` closed by `>` outside them.
fn balanced(value: &str) -> bool {
    let mut nesting = Nesting::default();
    for c in value.chars() {
        nesting.outside(c);
    }
    nesting.closed()
}

#[cfg(test)]
#[path = "lexical_tests.rs"]
mod tests;
