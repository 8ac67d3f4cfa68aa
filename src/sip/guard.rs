//! The door of the SIP transport: every datagram passes here before rsipstack sees it.
//!
//! rsipstack drops what its parser rejects, silently. RFC 3261 §8.2 asks a UAS to answer
//! what it can: 400 for a request it cannot make sense of (§8.2.2.2 missing or malformed
//! headers), 501 for a method it does not know (§8.2.1), and never to answer a response or
//! an ACK. This core decides that from the raw bytes, plus per-source rate limits and a size
//! cap, so the rest of the stack only ever sees well-formed requests. Sans-IO: time comes in
//! as an argument.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rsipstack::sip::SipMessage;
use rsipstack::sip::prelude::HeadersExt;

/// What to do with one datagram.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Well-formed: hand it to the SIP stack.
    Pass,
    /// Well-formed, written in a form the stack's parser does not read (line folding,
    /// whitespace around separators): hand it these bytes instead, the same message in the
    /// plain form ([`super::lexical::canonical`]; never longer than the datagram by more
    /// than a byte per header line).
    PassAs(Vec<u8>),
    /// Answer with these bytes and drop the message.
    Reply(Vec<u8>, Rejection),
    /// Drop without answering.
    Drop(Rejection),
    /// An INVITE or REGISTER from an untrusted source without credentials: answer it 401
    /// with a digest challenge ([`Challenge::response`]) here, statelessly (RFC 3261 §8.2.7),
    /// so a flood of them never becomes transactions in the stack.
    Challenge(Challenge),
}

/// The request a stateless 401 answers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Challenge(Head);

impl Challenge {
    /// `401 Unauthorized` with these `WWW-Authenticate` values.
    pub(crate) fn response(&self, www_authenticate: &[String]) -> Vec<u8> {
        let extra: Vec<String> = www_authenticate
            .iter()
            .map(|v| format!("WWW-Authenticate: {v}"))
            .collect();
        self.0.response_with(401, "Unauthorized", &extra)
    }
}

/// Why a message did not pass; each kind is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Rejection {
    Malformed,
    UnknownMethod,
    TooLarge,
    RateLimited,
    Keepalive,
    /// Past `[sip] untrusted_rate_limit`: INVITEs and REGISTERs from untrusted sources, all
    /// together, beyond what the server answers per second.
    UntrustedLimit,
}

impl Rejection {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::UnknownMethod => "unknown_method",
            Rejection::TooLarge => "too_large",
            Rejection::RateLimited => "rate_limited",
            Rejection::Keepalive => "keepalive",
            Rejection::UntrustedLimit => "untrusted_limit",
        }
    }
}

/// Methods a UA may legitimately send that the parser knows.
const KNOWN: [&str; 14] = [
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "INVITE",
    "MESSAGE",
    "NOTIFY",
    "OPTIONS",
    "PRACK",
    "PUBLISH",
    "REFER",
    "REGISTER",
    "SUBSCRIBE",
    "UPDATE",
];

pub(crate) struct Guard {
    max_bytes: usize,
    /// Messages per second allowed per source address; 0 disables the limit.
    rate: u32,
    buckets: HashMap<IpAddr, Bucket>,
    last_sweep: Option<Instant>,
    /// Who may call in without credentials; `None`: the guard does not look (tests).
    trusted: Option<super::access::Trusted>,
    /// INVITEs and REGISTERs per second from all untrusted sources together (0: no limit).
    untrusted_rate: u32,
    untrusted: Option<Bucket>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Guard {
    pub(crate) fn new(max_bytes: usize, rate_per_source: u32) -> Guard {
        Guard {
            max_bytes,
            rate: rate_per_source,
            buckets: HashMap::new(),
            last_sweep: None,
            trusted: None,
            untrusted_rate: 0,
            untrusted: None,
        }
    }

    /// Also answers credential-less INVITEs and REGISTERs from outside `trusted` with a
    /// challenge, and sheds those requests past `untrusted_rate` per second altogether (a
    /// flood from many addresses, each under its own limit, must not crowd out the trunks).
    pub(crate) fn with_trust(
        mut self,
        trusted: super::access::Trusted,
        untrusted_rate: u32,
    ) -> Guard {
        self.trusted = Some(trusted);
        self.untrusted_rate = untrusted_rate;
        self
    }

    pub(crate) fn inspect(&mut self, datagram: &[u8], source: IpAddr, now: Instant) -> Verdict {
        if datagram.iter().all(|b| b.is_ascii_whitespace()) {
            return Verdict::Drop(Rejection::Keepalive); // RFC 5626 §4.4.1 CRLF keep-alives
        }
        if !self.admit(source, now) {
            return Verdict::Drop(Rejection::RateLimited);
        }
        if datagram.len() > self.max_bytes {
            // RFC 3261 §18.1.1 suggests 513 for requests too large; it needs the headers.
            return match Head::scan(datagram) {
                Some(head) if head.answerable() => {
                    Verdict::Reply(head.response(513, "Message Too Large"), Rejection::TooLarge)
                }
                _ => Verdict::Drop(Rejection::TooLarge),
            };
        }
        let canonical = super::lexical::canonical(datagram);
        let verdict = self.judge(canonical.as_deref().unwrap_or(datagram), source, now);
        match (verdict, canonical) {
            (Verdict::Pass, Some(plain)) => Verdict::PassAs(plain),
            (verdict, _) => verdict,
        }
    }

    /// The verdict on a datagram in its plain form.
    fn judge(&mut self, datagram: &[u8], source: IpAddr, now: Instant) -> Verdict {
        if let Some(fault) = super::lexical::framing_fault(datagram) {
            return answer(datagram, 400, fault);
        }
        match SipMessage::try_from(datagram) {
            Ok(SipMessage::Request(req)) => match missing_header(&req) {
                None => self.admit_untrusted(&req, datagram, source, now),
                Some(what) => answer(datagram, 400, &format!("Bad Request ({what})")),
            },
            Ok(SipMessage::Response(resp)) => {
                if resp.via_header().is_ok()
                    && resp.cseq_header().is_ok()
                    && resp.call_id_header().is_ok()
                {
                    Verdict::Pass
                } else {
                    Verdict::Drop(Rejection::Malformed)
                }
            }
            Err(_) => match Head::scan(datagram) {
                Some(head)
                    if head.is_request
                        && !KNOWN.contains(&head.method.as_str())
                        && head.method_is_token() =>
                {
                    if head.answerable() {
                        Verdict::Reply(
                            head.response(501, "Not Implemented"),
                            Rejection::UnknownMethod,
                        )
                    } else {
                        Verdict::Drop(Rejection::UnknownMethod)
                    }
                }
                _ => answer(datagram, 400, "Bad Request"),
            },
        }
    }

    /// A well-formed request: an INVITE starting a dialog or a REGISTER from an untrusted
    /// source is counted against the untrusted budget, and challenged here when it carries
    /// no credentials.
    fn admit_untrusted(
        &mut self,
        req: &rsipstack::sip::Request,
        datagram: &[u8],
        source: IpAddr,
        now: Instant,
    ) -> Verdict {
        use rsipstack::sip::Method;
        let Some(trusted) = &self.trusted else {
            return Verdict::Pass;
        };
        let starts = match req.method {
            Method::Register => true,
            Method::Invite => req
                .to_header()
                .ok()
                .and_then(|t| t.tag().ok().flatten())
                .is_none(),
            _ => false,
        };
        if !starts || trusted.source(source).is_some() {
            return Verdict::Pass;
        }
        if self.untrusted_rate > 0 {
            let rate = self.untrusted_rate as f64;
            let b = self.untrusted.get_or_insert(Bucket {
                tokens: rate,
                updated: now,
            });
            b.tokens = (b.tokens + now.duration_since(b.updated).as_secs_f64() * rate).min(rate);
            b.updated = now;
            if b.tokens < 1.0 {
                return Verdict::Drop(Rejection::UntrustedLimit);
            }
            b.tokens -= 1.0;
        }
        let has_credentials = req
            .headers
            .iter()
            .any(|h| h.name().eq_ignore_ascii_case("Authorization"));
        if has_credentials {
            return Verdict::Pass;
        }
        match Head::scan(datagram) {
            Some(head) if head.answerable() => Verdict::Challenge(Challenge(head)),
            _ => Verdict::Drop(Rejection::Malformed),
        }
    }

    /// Token bucket per source IP; idle buckets are swept once a minute.
    fn admit(&mut self, source: IpAddr, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let rate = self.rate as f64;
        let burst = rate * 2.0;
        if self
            .last_sweep
            .is_none_or(|t| now.duration_since(t) > Duration::from_secs(60))
        {
            self.buckets
                .retain(|_, b| now.duration_since(b.updated) < Duration::from_secs(60));
            self.last_sweep = Some(now);
        }
        let b = self.buckets.entry(source).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.duration_since(b.updated).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.updated = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn answer(datagram: &[u8], code: u16, reason: &str) -> Verdict {
    match Head::scan(datagram) {
        Some(head) if head.answerable() => {
            Verdict::Reply(head.response(code, reason), Rejection::Malformed)
        }
        _ => Verdict::Drop(Rejection::Malformed),
    }
}

/// RFC 3261 §8.1.1: the headers every request must carry for a transaction to exist.
fn missing_header(req: &rsipstack::sip::Request) -> Option<&'static str> {
    if req.via_header().is_err() {
        return Some("missing Via");
    }
    if req.from_header().is_err() {
        return Some("missing From");
    }
    if req.to_header().is_err() {
        return Some("missing To");
    }
    if req.call_id_header().is_err() {
        return Some("missing Call-ID");
    }
    let Ok(cseq) = req.cseq_header() else {
        return Some("missing CSeq");
    };
    match (cseq.seq(), cseq.method()) {
        (Ok(_), Ok(m)) if m == req.method => {}
        (Ok(_), Ok(_)) => return Some("CSeq method does not match the request"),
        _ => return Some("malformed CSeq"),
    }
    if req
        .from_header()
        .and_then(|f| f.tag())
        .ok()
        .flatten()
        .is_none()
    {
        return Some("From has no tag");
    }
    None
}

/// A forgiving read of a message head: the start line and the few headers a response
/// must echo (RFC 3261 §8.2.6.2), taken line by line without trusting anything else.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    is_request: bool,
    method: String,
    vias: Vec<String>,
    from: Option<String>,
    to: Option<String>,
    call_id: Option<String>,
    cseq: Option<String>,
}

impl Head {
    fn scan(datagram: &[u8]) -> Option<Head> {
        let text = std::str::from_utf8(datagram.get(..datagram.len().min(16 * 1024))?)
            .ok()
            .or_else(|| {
                // Take the longest valid UTF-8 prefix: a binary body must not hide the head.
                let valid = std::str::from_utf8(datagram).err()?.valid_up_to();
                std::str::from_utf8(&datagram[..valid]).ok()
            })?;
        let head = text.split("\r\n\r\n").next()?.split("\n\n").next()?;
        let mut lines = head.lines();
        let start = lines.next()?.trim();
        let is_request = !start.starts_with("SIP/");
        let method = if is_request {
            start.split(' ').next()?.to_string()
        } else {
            String::new()
        };
        let mut h = Head {
            is_request,
            method,
            vias: Vec::new(),
            from: None,
            to: None,
            call_id: None,
            cseq: None,
        };
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim().to_string();
            if value.is_empty() || value.contains(['\r', '\n']) {
                continue;
            }
            match name.trim().to_ascii_lowercase().as_str() {
                "via" | "v" => h.vias.push(value),
                "from" | "f" => h.from = Some(value),
                "to" | "t" => h.to = Some(value),
                "call-id" | "i" => h.call_id = Some(value),
                "cseq" => h.cseq = Some(value),
                _ => {}
            }
        }
        Some(h)
    }

    /// A response can reach the sender only by its Via (RFC 3261 §18.2.2); one to a request
    /// that lacks From, To, Call-ID or CSeq echoes what there is (RFC 4475 §3.1.2.? "insuf":
    /// ideally such a request gets its 400).
    fn answerable(&self) -> bool {
        self.is_request && self.method != "ACK" && !self.vias.is_empty()
    }

    fn method_is_token(&self) -> bool {
        !self.method.is_empty()
            && self
                .method
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
    }

    fn response(&self, code: u16, reason: &str) -> Vec<u8> {
        self.response_with(code, reason, &[])
    }

    /// The response with `extra` header lines (each `Name: value`).
    fn response_with(&self, code: u16, reason: &str, extra: &[String]) -> Vec<u8> {
        let mut out = format!("SIP/2.0 {code} {reason}\r\n");
        for via in &self.vias {
            out.push_str(&format!("Via: {via}\r\n"));
        }
        if let Some(from) = &self.from {
            out.push_str(&format!("From: {from}\r\n"));
        }
        match &self.to {
            Some(to) if to.contains(";tag=") => out.push_str(&format!("To: {to}\r\n")),
            Some(to) => out.push_str(&format!("To: {to};tag=careline-reject\r\n")),
            None => {}
        }
        if let Some(call_id) = &self.call_id {
            out.push_str(&format!("Call-ID: {call_id}\r\n"));
        }
        if let Some(cseq) = &self.cseq {
            out.push_str(&format!("CSeq: {cseq}\r\n"));
        }
        if code == 501 || code == 405 {
            out.push_str(&format!("Allow: {}\r\n", super::ALLOW));
        }
        for line in extra {
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str("Server: careline\r\nContent-Length: 0\r\n\r\n");
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK_INVITE: &str = "INVITE sip:100@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n\
        From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:100@127.0.0.1>\r\n\
        Call-ID: abc@127.0.0.1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
        Contact: <sip:a@127.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n";

    fn now() -> Instant {
        Instant::now()
    }

    fn localhost() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    fn reply_of(v: Verdict) -> String {
        match v {
            Verdict::Reply(bytes, _) => String::from_utf8(bytes).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn trusting_loopback(untrusted_rate: u32) -> Guard {
        let nets = ["127.0.0.1/32".parse().unwrap()];
        Guard::new(16384, 0).with_trust(
            crate::sip::access::Trusted::new(&nets, &Default::default()),
            untrusted_rate,
        )
    }

    /// From an untrusted address, an INVITE or REGISTER without credentials is answered with
    /// a challenge here (echoing what a 401 must), one with credentials goes on to the stack,
    /// and the trusted address and other methods are not touched.
    #[test]
    fn untrusted_requests_without_credentials_are_challenged_statelessly() {
        let mut g = trusting_loopback(0);
        let outsider = IpAddr::from([192, 0, 2, 9]);
        assert_eq!(
            g.inspect(OK_INVITE.as_bytes(), localhost(), now()),
            Verdict::Pass
        );
        let Verdict::Challenge(c) = g.inspect(OK_INVITE.as_bytes(), outsider, now()) else {
            panic!("not challenged")
        };
        let r = String::from_utf8(c.response(&["Digest realm=\"careline\"".into()])).unwrap();
        assert!(r.starts_with("SIP/2.0 401 Unauthorized\r\n"), "{r}");
        for echoed in [
            "branch=z9hG4bK-1",
            "Call-ID: abc@127.0.0.1",
            "CSeq: 1 INVITE",
            ";tag=1",
        ] {
            assert!(r.contains(echoed), "{echoed} in {r}");
        }
        assert!(r.contains("To: <sip:100@127.0.0.1>;tag="), "{r}");
        assert!(
            r.contains("WWW-Authenticate: Digest realm=\"careline\"\r\n"),
            "{r}"
        );
        let register = OK_INVITE
            .replace("INVITE sip:100@127.0.0.1", "REGISTER sip:127.0.0.1")
            .replace("CSeq: 1 INVITE", "CSeq: 1 REGISTER");
        assert!(matches!(
            g.inspect(register.as_bytes(), outsider, now()),
            Verdict::Challenge(_)
        ));
        let signed = OK_INVITE.replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nAuthorization: Digest username=\"nina\"\r\n",
        );
        assert_eq!(g.inspect(signed.as_bytes(), outsider, now()), Verdict::Pass);
        let in_dialog =
            OK_INVITE.replace("To: <sip:100@127.0.0.1>", "To: <sip:100@127.0.0.1>;tag=x");
        assert_eq!(
            g.inspect(in_dialog.as_bytes(), outsider, now()),
            Verdict::Pass
        );
        let options = OK_INVITE
            .replace("INVITE sip:", "OPTIONS sip:")
            .replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS");
        assert_eq!(
            g.inspect(options.as_bytes(), outsider, now()),
            Verdict::Pass
        );
    }

    /// Many untrusted addresses, each under its own limit, share one budget; the trusted
    /// address is never counted against it, and the budget refills with time.
    #[test]
    fn untrusted_starts_share_one_budget_the_trusted_do_not() {
        let mut g = trusting_loopback(10);
        let t = now();
        let answered = (0..50u8)
            .filter(|i| {
                !matches!(
                    g.inspect(OK_INVITE.as_bytes(), IpAddr::from([192, 0, 2, *i]), t),
                    Verdict::Drop(Rejection::UntrustedLimit)
                )
            })
            .count();
        assert_eq!(answered, 10);
        for _ in 0..100 {
            assert_eq!(
                g.inspect(OK_INVITE.as_bytes(), localhost(), t),
                Verdict::Pass
            );
        }
        let later = t + Duration::from_millis(500);
        assert!(matches!(
            g.inspect(OK_INVITE.as_bytes(), IpAddr::from([192, 0, 2, 1]), later),
            Verdict::Challenge(_)
        ));
    }

    #[test]
    fn a_well_formed_request_passes() {
        let mut g = Guard::new(16384, 0);
        assert_eq!(
            g.inspect(OK_INVITE.as_bytes(), localhost(), now()),
            Verdict::Pass
        );
    }

    #[test]
    fn missing_call_id_gets_400_naming_it() {
        let mut g = Guard::new(16384, 0);
        let msg = OK_INVITE.replace("Call-ID: abc@127.0.0.1\r\n", "");
        // A client matches a response by its Via branch (RFC 3261 §17.1.3), which is there:
        // the 400 reaches it (RFC 4475 "insuf": ideally such a request gets its 400).
        let r = reply_of(g.inspect(msg.as_bytes(), localhost(), now()));
        assert!(
            r.starts_with("SIP/2.0 400 Bad Request (missing Call-ID)"),
            "{r}"
        );
        assert!(
            r.contains("branch=z9hG4bK-1") && !r.contains("\r\nCall-ID:"),
            "{r}"
        );
        let no_via = OK_INVITE.replace("Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n", "");
        assert_eq!(
            g.inspect(no_via.as_bytes(), localhost(), now()),
            Verdict::Drop(Rejection::Malformed),
            "without a Via nothing can be addressed"
        );
        let msg = OK_INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
        let r = reply_of(g.inspect(msg.as_bytes(), localhost(), now()));
        assert!(r.starts_with("SIP/2.0 400 Bad Request (CSeq method"), "{r}");
        assert!(
            r.contains("Call-ID: abc@127.0.0.1") && r.contains("branch=z9hG4bK-1"),
            "{r}"
        );
        let msg = OK_INVITE.replace(";tag=1", "");
        let r = reply_of(g.inspect(msg.as_bytes(), localhost(), now()));
        assert!(r.contains("From has no tag"), "{r}");
    }

    #[test]
    fn unknown_method_gets_501_with_allow() {
        let mut g = Guard::new(16384, 0);
        let msg = OK_INVITE.replace("INVITE", "FROBNICATE");
        let r = reply_of(g.inspect(msg.as_bytes(), localhost(), now()));
        assert!(r.starts_with("SIP/2.0 501 Not Implemented"), "{r}");
        assert!(r.contains("Allow: "), "{r}");
    }

    #[test]
    fn garbage_start_line_with_headers_gets_400() {
        let mut g = Guard::new(16384, 0);
        let msg = OK_INVITE.replace(
            "INVITE sip:100@127.0.0.1 SIP/2.0",
            "INVITE @@@ SIP/9.9 extra",
        );
        let r = reply_of(g.inspect(msg.as_bytes(), localhost(), now()));
        assert!(r.starts_with("SIP/2.0 400"), "{r}");
    }

    #[test]
    fn responses_acks_and_noise_are_never_answered() {
        let mut g = Guard::new(16384, 0);
        for junk in [
            &b"\x00\x01\x02garbage"[..],
            b"SIP/2.0 200 OK\r\n\r\n",
            b"ACK sip:x SIP/2.0\r\nVia: x\r\n\r\n",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(g.inspect(junk, localhost(), now()), Verdict::Drop(_)),
                "{junk:?}"
            );
        }
        assert_eq!(
            g.inspect(b"\r\n\r\n", localhost(), now()),
            Verdict::Drop(Rejection::Keepalive)
        );
    }

    #[test]
    fn oversized_requests_get_513() {
        let mut g = Guard::new(600, 0);
        let big = OK_INVITE.replace(
            "Content-Length: 0",
            &format!("X-Pad: {}\r\nContent-Length: 0", "a".repeat(700)),
        );
        let r = reply_of(g.inspect(big.as_bytes(), localhost(), now()));
        assert!(r.starts_with("SIP/2.0 513"), "{r}");
    }

    #[test]
    fn a_flooding_source_is_limited_and_others_are_not() {
        let mut g = Guard::new(16384, 10);
        let t = now();
        let passed = (0..100)
            .filter(|_| g.inspect(OK_INVITE.as_bytes(), localhost(), t) == Verdict::Pass)
            .count();
        assert_eq!(passed, 20, "burst is twice the rate");
        assert_eq!(
            g.inspect(OK_INVITE.as_bytes(), IpAddr::from([10, 0, 0, 1]), t),
            Verdict::Pass
        );
        // One second later the bucket has refilled by the rate.
        let later = t + Duration::from_secs(1);
        let passed = (0..100)
            .filter(|_| g.inspect(OK_INVITE.as_bytes(), localhost(), later) == Verdict::Pass)
            .count();
        assert_eq!(passed, 10);
    }

    /// Random damage to a valid INVITE (bytes changed, removed, the message cut short): every
    /// verdict is the right kind. A message passed on parses whole with every required
    /// header; an answer is a 400, 501 or 513 that itself parses as a SIP response; a drop is
    /// only for what cannot be answered (no complete Via, From, To, Call-ID, CSeq to answer
    /// to, or an ACK). And the damage is real: many mutants are refused.
    #[test]
    fn mutated_messages_get_the_right_verdict() {
        let mut g = Guard::new(16384, 0);
        let mut x: u32 = 0x9E37_79B9;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut refused = 0;
        for _ in 0..5000 {
            let mut m = OK_INVITE.as_bytes().to_vec();
            for _ in 0..(rnd() % 8) {
                let i = rnd() as usize % m.len();
                match rnd() % 3 {
                    0 => m[i] = rnd() as u8,
                    1 => {
                        m.remove(i);
                    }
                    _ => m.truncate(i),
                }
                if m.is_empty() {
                    break;
                }
            }
            if m.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            match g.inspect(&m, localhost(), now()) {
                Verdict::Challenge(_) => panic!("a challenge from a guard without trust settings"),
                verdict @ (Verdict::Pass | Verdict::PassAs(_)) => {
                    let passed = match verdict {
                        Verdict::PassAs(plain) => plain,
                        _ => m.clone(),
                    };
                    let whole = match SipMessage::try_from(passed.as_slice()) {
                        Ok(SipMessage::Request(req)) => missing_header(&req).is_none(),
                        Ok(SipMessage::Response(_)) => true,
                        Err(_) => false,
                    };
                    assert!(whole, "passed on: {}", String::from_utf8_lossy(&m));
                }
                Verdict::Reply(reply, _) => {
                    refused += 1;
                    let text = String::from_utf8_lossy(&reply).into_owned();
                    assert!(
                        ["SIP/2.0 400 ", "SIP/2.0 501 ", "SIP/2.0 513 "]
                            .iter()
                            .any(|s| text.starts_with(s)),
                        "{text}"
                    );
                    assert!(
                        matches!(
                            SipMessage::try_from(reply.as_slice()),
                            Ok(SipMessage::Response(_))
                        ),
                        "the answer is a SIP response: {text}"
                    );
                }
                Verdict::Drop(why) => {
                    refused += 1;
                    assert!(why != Rejection::RateLimited && why != Rejection::Keepalive);
                    assert!(
                        Head::scan(&m).is_none_or(|h| !h.answerable()),
                        "dropped though answerable ({why:?}): {}",
                        String::from_utf8_lossy(&m)
                    );
                }
            }
        }
        assert!(refused > 500, "only {refused} of 5000 mutants refused");
    }
}
