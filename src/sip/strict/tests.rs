use super::*;
use rsipstack::sip::SipMessage;

const SDP_BODY: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
    t=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";

/// An INVITE as a phone sends it, with `start` as its request line and `extra` headers.
fn invite(start: &str, extra: &str, content_type: Option<&str>, body: &str) -> Request {
    let ct = content_type
        .map(|c| format!("Content-Type: {c}\r\n"))
        .unwrap_or_default();
    let text = format!(
        "{start}\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n\
         From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:100@127.0.0.1>\r\n\
         Call-ID: abc@127.0.0.1\r\nCSeq: 1 {method}\r\n{extra}\
         Contact: <sip:a@127.0.0.1:5070>\r\n{ct}Content-Length: {len}\r\n\r\n{body}",
        method = start.split(' ').next().unwrap(),
        len = body.len(),
    );
    match SipMessage::try_from(text.as_str()) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("{text}\nparsed as {other:?}"),
    }
}

fn ok_invite(extra: &str) -> Request {
    invite(
        "INVITE sip:100@127.0.0.1 SIP/2.0",
        extra,
        Some("application/sdp"),
        SDP_BODY,
    )
}

fn code(r: &Request) -> Option<u16> {
    check(r).map(|r| r.code)
}

#[test]
fn a_plain_call_and_its_usual_variants_pass() {
    assert_eq!(check(&ok_invite("Max-Forwards: 70\r\n")), None);
    // Supported (not Require) lists what the caller can do: no obligation on us.
    assert_eq!(check(&ok_invite("Supported: 100rel, timer\r\n")), None);
    // Parameters and case in the media type, an identity encoding.
    let r = invite(
        "INVITE sip:100@127.0.0.1 SIP/2.0",
        "Content-Encoding: identity\r\n",
        Some("Application/SDP; charset=utf-8"),
        SDP_BODY,
    );
    assert_eq!(check(&r), None);
    // A telephone number as the Request-URI (RFC 3966).
    let r = invite("INVITE tel:+81312345678 SIP/2.0", "", Some(SDP), SDP_BODY);
    assert_eq!(check(&r), None);
    // No body at all: the offer comes in the ACK (RFC 3264 §... late offer).
    let r = invite("INVITE sip:100@127.0.0.1 SIP/2.0", "", None, "");
    assert_eq!(check(&r), None);
}

#[test]
fn another_sip_version_gets_505_naming_it() {
    let r = check(&invite(
        "INVITE sip:100@127.0.0.1 SIP/7.0",
        "",
        Some(SDP),
        SDP_BODY,
    ))
    .expect("refused");
    assert_eq!(r.code, 505);
    assert!(r.reason.contains("7.0"), "{r:?}");
    let r = invite("OPTIONS sip:100@127.0.0.1 SIP/3.0", "", None, "");
    assert_eq!(
        code(&r),
        Some(505),
        "OPTIONS too: no 200 echoing the version"
    );
}

#[test]
fn an_unknown_uri_scheme_gets_416() {
    let r = invite(
        "INVITE mailto:joe@example.com SIP/2.0",
        "",
        Some(SDP),
        SDP_BODY,
    );
    assert_eq!(code(&r), Some(416));
}

#[test]
fn max_forwards_zero_gets_483_except_for_options() {
    assert_eq!(code(&ok_invite("Max-Forwards: 0\r\n")), Some(483));
    let r = invite(
        "OPTIONS sip:100@127.0.0.1 SIP/2.0",
        "Max-Forwards: 0\r\n",
        None,
        "",
    );
    assert_eq!(code(&r), None, "OPTIONS may be answered where it arrived");
    let r = check(&ok_invite("Max-Forwards: many\r\n")).expect("refused");
    assert_eq!(r.code, 400);
    assert!(r.reason.contains("Max-Forwards"), "{r:?}");
    assert_eq!(code(&ok_invite("Max-Forwards: 300\r\n")), Some(400));
}

#[test]
fn a_required_extension_careline_lacks_gets_420_listing_it() {
    let r = check(&ok_invite("Require: 100rel, Timer\r\nRequire: foo\r\n")).expect("refused");
    assert_eq!(r.code, 420);
    assert_eq!(
        r.headers,
        vec![("Unsupported", "100rel, Timer, foo".to_string())]
    );
}

#[test]
fn a_body_careline_cannot_read_gets_415_with_what_it_can() {
    for ct in ["text/plain", "application/sdpx"] {
        let r = check(&invite(
            "INVITE sip:100@127.0.0.1 SIP/2.0",
            "",
            Some(ct),
            SDP_BODY,
        ))
        .unwrap_or_else(|| panic!("{ct} passed"));
        assert_eq!(r.code, 415, "{ct}");
        assert_eq!(
            r.headers,
            vec![("Accept", "application/sdp, multipart/mixed".to_string())],
            "{ct}"
        );
    }
    // multipart/mixed is read for its SDP part: one without it is 415, one that is not
    // multipart at all 400, one with it passes.
    let no_sdp = "--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--x--\r\n";
    let with_sdp = format!("--x\r\nContent-Type: application/sdp\r\n\r\n{SDP_BODY}\r\n--x--\r\n");
    let mixed = Some("multipart/mixed;boundary=x");
    let line = "INVITE sip:100@127.0.0.1 SIP/2.0";
    assert_eq!(code(&invite(line, "", mixed, no_sdp)), Some(415));
    assert_eq!(code(&invite(line, "", mixed, SDP_BODY)), Some(400));
    assert_eq!(code(&invite(line, "", mixed, &with_sdp)), None);
    let r = check(&ok_invite("Content-Encoding: gzip\r\n")).expect("refused");
    assert_eq!(r.code, 415);
    let r = invite("INVITE sip:100@127.0.0.1 SIP/2.0", "", None, SDP_BODY);
    assert_eq!(code(&r), Some(400), "a body without a type");
}

#[test]
fn ack_and_cancel_are_never_refused() {
    for m in ["ACK", "CANCEL"] {
        let r = invite(
            &format!("{m} sip:100@127.0.0.1 SIP/2.0"),
            "Max-Forwards: 0\r\nRequire: foo\r\n",
            None,
            "",
        );
        assert_eq!(check(&r), None, "{m}");
    }
}
