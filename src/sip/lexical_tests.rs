use super::*;

fn crlf(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n").into_bytes()
}

const PLAIN: &str = "INVITE sip:100@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport
From: \"Ward 3, bed 2\" <sip:a@127.0.0.1>;tag=1
To: <sip:100@127.0.0.1>
Call-ID: abc@127.0.0.1
CSeq: 1 INVITE
Max-Forwards: 70
Contact: <sip:a@127.0.0.1:5070;transport=udp>;expires=60
Authorization: Digest username=\"nina\", realm=\"careline\", nonce=\"a b\", uri=\"sip:100@127.0.0.1\", response=\"0\"
Subject: a  subject   with   runs
Content-Type: application/sdp
Content-Length: 4

v=0
";

#[test]
fn a_message_in_the_plain_form_is_left_byte_for_byte() {
    assert_eq!(canonical(&crlf(PLAIN)), None);
    // A header without the space after its colon is read by the stack as it is.
    assert_eq!(canonical(&crlf(&PLAIN.replace("CSeq: 1", "CSeq:1"))), None);
    assert_eq!(framing_fault(&crlf(PLAIN)), None);
    // Not text, or no end of head: left to the parser.
    assert_eq!(canonical(b"\xff\xfe\r\n\r\n"), None);
    assert_eq!(canonical(b"INVITE sip:a SIP/2.0\r\nVia: x"), None);
}

#[test]
fn folded_lines_and_whitespace_around_separators_are_written_plain() {
    let folded = crlf(
        "INVITE sip:100@127.0.0.1;unknownparam SIP/2.0
TO :
 sip:100@example.com ;   tag    = 1918181833n
from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    127.0.0.1:5070;branch=z9hG4bK-1
s :
NewFangledHeader:   newfangled value
 continued newfangled value
m:\"Quoted  string \\\"\\\"\" <sip:jdrosen@127.0.0.1> ; newparam =
      newvalue ;
  secondparam ; q = 0.33
Content-Length: 2

ab",
    );
    let plain = String::from_utf8(canonical(&folded).expect("rewritten")).unwrap();
    let want = "INVITE sip:100@127.0.0.1;unknownparam SIP/2.0\r
TO: sip:100@example.com;tag=1918181833n\r
from: \"J Rosenberg \\\\\\\"\" <sip:jdrosen@example.com>;tag=98asjd8\r
MaX-fOrWaRdS: 0068\r
cseq: 0009 INVITE\r
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r
s: \r
NewFangledHeader: newfangled value continued newfangled value\r
m: \"Quoted  string \\\"\\\"\" <sip:jdrosen@127.0.0.1>;newparam=newvalue;secondparam;q=0.33\r
Content-Length: 2\r
\r
ab";
    assert_eq!(plain, want);
    assert_eq!(framing_fault(plain.as_bytes()), None);
    assert_eq!(
        canonical(plain.as_bytes()),
        None,
        "the plain form is a fixed point"
    );
}

#[test]
fn faults_the_parser_lets_through_are_named() {
    let cases = [
        (PLAIN.replacen("SIP/2.0\n", "SIP/2.0 \n", 1), "request line"),
        (
            PLAIN.replacen("INVITE sip:100@127.0.0.1", "INVITE <sip:100@127.0.0.1>", 1),
            "Request-URI",
        ),
        (
            PLAIN.replace("Content-Length: 4", "Content-Length: 40"),
            "past the end",
        ),
        (
            PLAIN.replace("Content-Length: 4", "Content-Length: -4"),
            "malformed Content-Length",
        ),
        (
            PLAIN.replace("Content-Length: 4", "Content-Length: 4\nl: 4"),
            "given twice",
        ),
        (
            PLAIN.replace(
                "To: <sip:100@127.0.0.1>",
                "To: \"Mr. J. User <sip:100@127.0.0.1>",
            ),
            "unterminated",
        ),
        (
            PLAIN.replace("To: <sip:100@127.0.0.1>", "To: <sip:100@127.0.0.1"),
            "unterminated",
        ),
    ];
    for (text, why) in cases {
        let fault = framing_fault(&crlf(&text)).unwrap_or_else(|| panic!("{why}: {text}"));
        assert!(fault.contains(why), "{why}: {fault}");
    }
    // A response is not judged here; a body shorter than Content-Length only is a fault.
    assert_eq!(
        framing_fault(&crlf("SIP/2.0 200 OK\nContent-Length: 9\n\n")),
        None
    );
    assert_eq!(
        framing_fault(&crlf(
            &PLAIN.replace("Content-Length: 4", "Content-Length: 3")
        )),
        None,
        "bytes past the body are ignored over UDP (RFC 3261 §18.3)"
    );
}
