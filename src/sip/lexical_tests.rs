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
Allow: INVITE, ACK, BYE
Supported: timer, replaces
Subject: a subject
Content-Type: application/sdp
Content-Length: 4

v=0
";

#[test]
fn a_message_in_the_plain_form_is_left_byte_for_byte() {
    assert_eq!(canonical(&crlf(PLAIN)), None);
    assert!(
        !may_need_rewriting(&crlf(PLAIN)),
        "no allocation for the common datagram"
    );
    // Runs of spaces make the reader look, but free text is left as written.
    let subject = crlf(&PLAIN.replace("a subject", "a  subject"));
    assert!(may_need_rewriting(&subject));
    assert_eq!(canonical(&subject), None);
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

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Header lines as phones write them, with whitespace, folding and quotes in odd places.
    fn header_line() -> impl Strategy<Value = String> {
        let name = prop::sample::select(vec![
            "Via",
            "v",
            "From",
            "To",
            "t",
            "Contact",
            "CSeq",
            "Subject",
            "X-Odd",
            "Content-Type",
        ]);
        let piece = prop::sample::select(vec![
            "sip:a@127.0.0.1",
            ";",
            " ; ",
            "=",
            " = ",
            "tag",
            "\"quoted ; = \\\" text\"",
            "<sip:b@h;lr>",
            "/",
            " / ",
            ",",
            "\r\n ",
            "\r\n\t",
            "  ",
            "SIP/2.0/UDP",
            "0x",
            "\u{e9}",
        ]);
        (name, prop::collection::vec(piece, 0..8), "[ \t]{0,2}")
            .prop_map(|(n, pieces, ws)| format!("{n}{ws}:{}", pieces.concat()))
    }

    fn message() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::collection::vec(header_line(), 0..8),
            "[a-z=\r\n ]{0,20}",
        )
            .prop_map(|(lines, body)| {
                let mut text = String::from("OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n");
                for l in lines {
                    text.push_str(&l);
                    text.push_str("\r\n");
                }
                text.push_str("\r\n");
                text.push_str(&body);
                text.into_bytes()
            })
    }

    proptest! {
        /// The plain form is a fixed point, keeps the body and every quoted string, and grows
        /// by at most a byte per header line (the space after a colon).
        #[test]
        fn the_plain_form_is_stable_and_keeps_what_matters(m in message()) {
            if let Some(plain) = canonical(&m) {
                prop_assert_eq!(canonical(&plain), None);
                let lines = m.windows(2).filter(|w| w == b"\r\n").count();
                prop_assert!(plain.len() <= m.len() + lines);
                let end = |b: &[u8]| b.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                prop_assert_eq!(&plain[end(&plain)..], &m[end(&m)..]);
                let text = String::from_utf8_lossy(&m);
                if text.contains("\"quoted ; = \\\" text\"") {
                    prop_assert!(String::from_utf8_lossy(&plain).contains("\"quoted ; = \\\" text\""));
                }
            }
            let _ = framing_fault(&m);
        }

        /// Arbitrary bytes never panic either function.
        #[test]
        fn any_bytes_are_judged_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = canonical(&bytes);
            let _ = framing_fault(&bytes);
        }
    }
}
