//! Torture messages in the manner of RFC 4475 ("SIP Torture Test Messages"), sent over real UDP
//! to a real server: each valid one is answered as RFC 3261 says however it is formatted, each
//! invalid one gets the 4xx/5xx that names its fault (or is dropped when no answer can be
//! addressed), and the server answers an OPTIONS after every one of them.
//!
//! The RFC's own messages are not among the inputs here (its archive is not in
//! the conformance corpus); these are Careline's own, one per case the RFC's sections name
//! (§3.1.1 valid, §3.1.2 invalid, §3.3 application-layer semantics), written so that every
//! address in them is loopback or a name nothing resolves (example.com, RFC 2606): no
//! message makes the server contact another host.

mod support;

use std::time::Duration;

use support::server::TestServer;
use support::sip::{Msg, Ua};

/// What a case must get back.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// This final status.
    Status(u16),
    /// No answer at all (nothing can be addressed, or RFC 3261 says to discard it).
    Nothing,
}

struct Case {
    /// The RFC 4475 test the case follows (its section and short name).
    name: &'static str,
    /// The message; `{ua}` becomes the test phone's address, `{server}` the server's,
    /// `{id}` a Call-ID unique to the run, `{branch}` a fresh branch.
    text: &'static str,
    expect: Expect,
}

fn fill(text: &str, ua: &Ua, id: &str) -> Vec<u8> {
    let text = text
        .replace("{ua}", &ua.local.to_string())
        .replace("{server}", &ua.server.to_string())
        .replace("{id}", id)
        .replace("{branch}", &format!("z9hG4bK{id}"));
    // The cases are written with \n line ends for reading; SIP's are CRLF.
    text.replace('\n', "\r\n").into_bytes()
}

/// Waits for the answer whose Call-ID is `id` (provisional answers are skipped).
fn answer_to(ua: &mut Ua, id: &str, timeout: Duration) -> Option<Msg> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(std::time::Instant::now())?;
        let m = ua.recv(left)?;
        let same_call = m.header("call-id").is_some_and(|c| c.trim() == id);
        if same_call && m.status().is_some_and(|s| s >= 200) {
            return Some(m);
        }
    }
}

/// An OPTIONS the server must answer 200 after each case: it is alive, and anything it was
/// going to say about the case came first (one socket, answered in order).
fn sentinel(ua: &mut Ua, n: usize) -> Vec<Msg> {
    let id = format!("sentinel-{n}-{}", rand::random::<u32>());
    let msg = format!(
        "OPTIONS sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {ua};branch=z9hG4bK{id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{ua}>;tag={id}\r\nTo: <sip:{server}>\r\n\
         Call-ID: {id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        server = ua.server,
        ua = ua.local,
    );
    ua.send(&msg);
    let mut before = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline
            .checked_duration_since(std::time::Instant::now())
            .expect("the server answers the OPTIONS sent after the case");
        let m = ua
            .recv(left)
            .expect("the server answers the OPTIONS sent after the case");
        if m.header("call-id").is_some_and(|c| c.trim() == id) {
            assert_eq!(m.status(), Some(200), "the sentinel OPTIONS: {}", m.start);
            return before;
        }
        before.push(m);
    }
}

/// ACKs a call answered 200 and hangs it up (BYE, answered 200).
fn hang_up(ua: &mut Ua, ok: &Msg, id: &str) {
    let from = ok.header("from").expect("From in the 200");
    let to = ok.header("to").expect("To in the 200");
    let contact = ok.header("contact").expect("Contact in the 200");
    let target = contact
        .split('<')
        .nth(1)
        .and_then(|c| c.split('>').next())
        .unwrap_or(contact)
        .to_string();
    for (cseq, method) in [(1, "ACK"), (2, "BYE")] {
        ua.send(&format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{id}{method}\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {id}\r\n\
             CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            local = ua.local,
        ));
    }
    let bye_ok = ua.expect(Duration::from_secs(10), |m| {
        m.cseq_method() == Some("BYE") && m.header("call-id").is_some_and(|c| c.trim() == id)
    });
    assert_eq!(
        bye_ok.and_then(|m| m.status()),
        Some(200),
        "the BYE is answered"
    );
}

const VALID: &[Case] = &[
    // §3.1.1.1 "wsinv": a short, tricky INVITE: unusual whitespace, line folding, compact and
    // oddly cased header names. Its To carries a tag, so it belongs to a dialog, and no such
    // dialog exists: 481 (RFC 3261 §12.2.2), which only a server that read every header of it
    // can say (before, the stack dropped it without a word).
    Case {
        name: "3.1.1.1 wsinv",
        text: "INVITE sip:100@{server};unknownparam SIP/2.0
TO :
 sip:100@example.com ;   tag    = 1918181833n
from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: {id}
Content-Length   : 0
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    {ua};branch={branch}
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
m:\"Quoted string \\\"\\\"\" <sip:jdrosen@{ua}> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

",
        expect: Expect::Status(481),
    },
    // The same message starting a call (no To tag): it reaches the call layer, which needs an
    // SDP offer and says so with 488.
    Case {
        name: "3.1.1.1 wsinv, no dialog",
        text: "INVITE sip:100@{server};unknownparam SIP/2.0
TO :
 sip:100@example.com ;   unknownparam    = 1918181833n
from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: {id}
Content-Length   : 0
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    {ua};branch={branch}
s :
m:\"Quoted string \\\"\\\"\" <sip:jdrosen@{ua}> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

",
        expect: Expect::Status(488),
    },
    // §3.1.1.2 "intmeth": a method made of every token character; an unknown method is 501.
    Case {
        name: "3.1.1.2 intmeth",
        text: "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@{server} SIP/2.0
Via: SIP/2.0/UDP {ua};branch={branch}-.!%66*_+`'~
To: \"BEL:\\\u{7}NUL:\\\u{0}DEL:\\\u{7f}\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"работающий\";tag=_token~1'+`*%!-.
Call-ID: {id}
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
Max-Forwards: 255
extensionHeader-!.%*+_`'~:﻿大停電
Content-Length: 0

",
        expect: Expect::Status(501),
    },
    // §3.1.1.3 "esc01": escaped characters in the Request-URI's user and in header params.
    Case {
        name: "3.1.1.3 esc01",
        text: "OPTIONS sip:sips%3Auser%40example.com@{server};transport=udp SIP/2.0
To: sip:%61lice@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: {id}
Call-ID: {id}
CSeq: 1 OPTIONS
Via: SIP/2.0/UDP {ua};branch={branch}
l: 0

",
        expect: Expect::Status(200),
    },
    // §3.1.1.5 "esc02"/§3.1.1.4 "escnull": escaped null and other escapes in From/To users.
    Case {
        name: "3.1.1.4 escnull",
        text: "OPTIONS sip:{server} SIP/2.0
To: sip:null-%00-null@example.com
From: sip:null-%00-null@example.com;tag=839923423
Max-Forwards: 70
Call-ID: {id}
CSeq: 39292 OPTIONS
Via: SIP/2.0/UDP {ua};branch={branch}
Content-Length: 0

",
        expect: Expect::Status(200),
    },
    // §3.1.1.6 "lwsdisp": no whitespace between a display name and "<".
    Case {
        name: "3.1.1.6 lwsdisp",
        text: "OPTIONS sip:{server} SIP/2.0
To: sip:user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: {id}
CSeq: 2314 OPTIONS
Via: SIP/2.0/UDP {ua};branch={branch}
Content-Length: 0

",
        expect: Expect::Status(200),
    },
    // §3.1.1.8 "dblreq": two requests in one datagram: the first is taken (its
    // Content-Length is 0), the rest of the datagram is not a second request.
    Case {
        name: "3.1.1.8 dblreq",
        text: "OPTIONS sip:{server} SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 8
Call-ID: {id}
CSeq: 8 OPTIONS
Via: SIP/2.0/UDP {ua};branch={branch}
Content-Length: 0

OPTIONS sip:{server} SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 70
Call-ID: {id}-second
CSeq: 9 OPTIONS
Via: SIP/2.0/UDP {ua};branch={branch}2
Content-Length: 0

",
        expect: Expect::Status(200),
    },
    // §3.1.1.9 "semiuri": a semicolon in the user part of the Request-URI.
    Case {
        name: "3.1.1.9 semiuri",
        text: "OPTIONS sip:user;par=u%40example.net@{server} SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Call-ID: {id}
CSeq: 1 OPTIONS
Via: SIP/2.0/UDP {ua};branch={branch}
Content-Length: 0

",
        expect: Expect::Status(200),
    },
    // §3.1.1.10 "transports": Via headers naming transports Careline has never heard of
    // below its own.
    Case {
        name: "3.1.1.10 transports",
        text: "OPTIONS sip:user@{server} SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: {id}
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP {ua};branch={branch}
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0

",
        expect: Expect::Status(200),
    },
    // §3.1.1.11 "mpart01": the SDP as one part of a multipart/mixed body, beside an ISUP
    // part as SIP-T gateways send (RFC 5621): the call is answered with an SDP answer.
    Case {
        name: "3.1.1.11 mpart01",
        text: "INVITE sip:100@{server} SIP/2.0
Via: SIP/2.0/UDP {ua};branch={branch}
Max-Forwards: 70
From: <sip:caller@example.com>;tag=mp1
To: <sip:100@example.com>
Call-ID: {id}
CSeq: 1 INVITE
Contact: <sip:caller@{ua}>
MIME-Version: 1.0
Content-Type: multipart/mixed;boundary=boundary42
Content-Length: 374

This is a preamble, ignored.
--boundary42
Content-Type: application/isup;version=itu-t92+
Content-Disposition: signal;handling=optional

\u{1}\u{2} an ISUP message (binary in a real gateway's INVITE)
--boundary42
Content-Type: application/sdp

v=0
o=caller 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 9 RTP/AVP 0
a=rtpmap:0 PCMU/8000

--boundary42--
",
        expect: Expect::Status(200),
    },
    // §3.1.1.13 "noreason"-like leniency on the request side: no Content-Length over UDP
    // (RFC 3261 §20.14 lets a datagram's end mark the body's).
    Case {
        name: "3.1.1 no Content-Length over UDP",
        text: "OPTIONS sip:{server} SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=5
Max-Forwards: 70
Call-ID: {id}
CSeq: 1 OPTIONS
Via: SIP/2.0/UDP {ua};branch={branch}

",
        expect: Expect::Status(200),
    },
];

const INVALID: &[Case] = &[
    // §3.1.2.2 "clerr": Content-Length larger than the datagram's body.
    Case {
        name: "3.1.2.2 clerr",
        text: "INVITE sip:100@{server} SIP/2.0
Max-Forwards: 80
To: sip:j.user@example.com
From: sip:caller@example.net;tag=93942939o2
Contact: <sip:caller@{ua}>
Call-ID: {id}
CSeq: 36 INVITE
Via: SIP/2.0/UDP {ua};branch={branch}
Content-Type: application/sdp
Content-Length: 9999

v=0
o=mhandley 29739 7272939 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 9 RTP/AVP 0
",
        expect: Expect::Status(400),
    },
    // §3.1.2.4 "ncl": a negative Content-Length.
    Case {
        name: "3.1.2.4 ncl",
        text: "OPTIONS sip:{server} SIP/2.0
Max-Forwards: 254
To: sip:j.user@example.com
From: sip:caller@example.net;tag=32394234
Call-ID: {id}
CSeq: 3 OPTIONS
Via: SIP/2.0/UDP {ua};branch={branch}
Content-Length: -999

",
        expect: Expect::Status(400),
    },
    // §3.1.2.5 "scalar02": Max-Forwards past 255 and a CSeq number past 2^31 - 1.
    Case {
        name: "3.1.2.5 scalar02",
        text: "OPTIONS sip:{server} SIP/2.0
Via: SIP/2.0/UDP {ua};branch={branch}
Max-Forwards: 300
From: sip:caller@example.net;tag=39ansfi3
To: sip:user@example.com
Call-ID: {id}
CSeq: 36121 OPTIONS
Content-Length: 0

",
        expect: Expect::Status(400),
    },
    Case {
        name: "3.1.2.6 scalarlg",
        text: "OPTIONS sip:{server} SIP/2.0
Via: SIP/2.0/UDP {ua};branch={branch}
Max-Forwards: 70
From: sip:caller@example.net;tag=239232jh3
To: sip:user@example.com
Call-ID: {id}
CSeq: 36893488147419103232 OPTIONS
Content-Length: 0

",
        expect: Expect::Status(400),
    },
    // §3.1.2.8 "quotbal": an unterminated quoted display name.
    Case {
        name: "3.1.2.8 quotbal",
        text: "OPTIONS sip:{server} SIP/2.0
To: \"Mr. J. User <sip:j.user@example.com>
From: sip:caller@example.net;tag=93334
Max-Forwards: 10
Call-ID: {id}
CSeq: 1 OPTIONS
Via: SIP/2.0/UDP {ua};branch={branch}
Content-Length: 0

",
        expect: Expect::Status(400),
    },
    // §3.1.2.9 "ltgtruri": a Request-URI in angle brackets.
    Case {
        name: "3.1.2.9 ltgtruri",
        text: "OPTIONS <sip:user@{server}> SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=39291
Max-Forwards: 23
Call-ID: {id}
CSeq: 1 OPTIONS
Via: SIP/2.0/UDP {ua};branch={branch}
Content-Length: 0

",
        expect: Expect::Status(400),
    },
    // §3.1.2.10 "lwsruri": whitespace inside the Request-URI.
    Case {
        name: "3.1.2.10 lwsruri",
        text: "OPTIONS sip:user@{server};lr; transport=udp SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=231413434
Max-Forwards: 5
Call-ID: {id}
CSeq: 2 OPTIONS
Via: SIP/2.0/UDP {ua};branch={branch}
Content-Length: 0

",
        expect: Expect::Status(400),
    },
    // §3.1.2.11 "lwsstart": several spaces between the parts of the request line.
    Case {
        name: "3.1.2.11 lwsstart",
        text: "OPTIONS  sip:user@{server}  SIP/2.0
Max-Forwards: 8
To: sip:user@example.com
From: sip:caller@example.net;tag=8814
Call-ID: {id}
CSeq: 1893884 OPTIONS
Via: SIP/2.0/UDP {ua};branch={branch}
Content-Length: 0

",
        expect: Expect::Status(400),
    },
    // §3.1.2.12 "trws": whitespace after the request line's version.
    Case {
        name: "3.1.2.12 trws",
        text: "OPTIONS sip:user@{server} SIP/2.0 \nMax-Forwards: 1
To: sip:user@example.com
From: sip:caller@example.net;tag=327468923
Call-ID: {id}
CSeq: 1893884 OPTIONS
Via: SIP/2.0/UDP {ua};branch={branch}
Content-Length: 0

",
        expect: Expect::Status(400),
    },
    // §3.1.2.16 "badvers": a SIP version other than 2.0.
    Case {
        name: "3.1.2.16 badvers",
        text: "OPTIONS sip:t.watson@{server} SIP/7.0
Via: SIP/7.0/UDP {ua};branch={branch}
Max-Forwards: 70
From: A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe
To: T. Watson <sip:t.watson@example.com>
Call-ID: {id}
CSeq: 1 OPTIONS
Content-Length: 0

",
        expect: Expect::Status(505),
    },
    // §3.1.2.17 "mismatch01": the CSeq method is not the request's.
    Case {
        name: "3.1.2.17 mismatch01",
        text: "OPTIONS sip:user@{server} SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: {id}
CSeq: 50 INVITE
Via: SIP/2.0/UDP {ua};branch={branch}
Content-Length: 0

",
        expect: Expect::Status(400),
    },
    // §3.1.2.19 "bcast"-like: a request with no Via cannot be answered: dropped.
    Case {
        name: "3.1.2 no Via",
        text: "OPTIONS sip:user@{server} SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: {id}
CSeq: 50 OPTIONS
Content-Length: 0

",
        expect: Expect::Nothing,
    },
    // §3.1.2 "insuf": a request without Call-ID, CSeq or From.
    Case {
        name: "3.1.2.13 insuf",
        text: "INVITE sip:user@{server} SIP/2.0
Via: SIP/2.0/UDP {ua};branch={branch}
To: sip:j.user@example.com
Call-ID: {id}
Max-Forwards: 70
Content-Length: 0

",
        expect: Expect::Status(400),
    },
    // §3.1.2.x "mcl01": two Content-Length headers that disagree.
    Case {
        name: "3.1.2 mcl01",
        text: "OPTIONS sip:user@{server} SIP/2.0
Via: SIP/2.0/UDP {ua};branch={branch}
To: sip:j.user@example.com
From: sip:caller@example.net;tag=1
Call-ID: {id}
CSeq: 1 OPTIONS
Max-Forwards: 70
Content-Length: 0
Content-Length: 4

",
        expect: Expect::Status(400),
    },
];

const SEMANTICS: &[Case] = &[
    // §3.3.1 "unkscm": a Request-URI scheme Careline does not know.
    Case {
        name: "3.3.2 unkscm",
        text: "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: {id}
CSeq: 3923423 OPTIONS
Via: SIP/2.0/UDP {ua};branch={branch}
Content-Length: 0

",
        expect: Expect::Status(416),
    },
    // §3.3.3 "novelsc": novel schemes in To and From, which a UAS need not understand.
    Case {
        name: "3.3.3 novelsc",
        text: "OPTIONS sip:user@{server} SIP/2.0
To: isbn:2983792873
From: <http://www.example.com>;tag=3234233
Call-ID: {id}
CSeq: 843 OPTIONS
Max-Forwards: 67
Via: SIP/2.0/UDP {ua};branch={branch}
Content-Length: 0

",
        expect: Expect::Status(200),
    },
    // §3.3.5 "bext01": an unknown extension in Require.
    Case {
        name: "3.3.5 bext01",
        text: "OPTIONS sip:user@{server} SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.net;tag=242etr
Max-Forwards: 6
Call-ID: {id}
Require: nothingSupportsThis, nothingSupportsThisEither
Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis
CSeq: 1 OPTIONS
Via: SIP/2.0/UDP {ua};branch={branch}
Content-Length: 0

",
        expect: Expect::Status(420),
    },
    // §3.3.6 "invut": an INVITE body of a type Careline cannot read.
    Case {
        name: "3.3.6 invut",
        text: "INVITE sip:100@{server} SIP/2.0
Contact: <sip:caller@{ua}>
To: sip:j.user@example.com
From: sip:caller@example.net;tag=8392034
Max-Forwards: 70
Call-ID: {id}
CSeq: 255 INVITE
Via: SIP/2.0/UDP {ua};branch={branch}
Content-Type: application/unknownformat
Content-Length: 37

<audio> <pcmu port=\"443\"/> </audio>
",
        expect: Expect::Status(415),
    },
    // §3.3.11 "zeromf": Max-Forwards of 0 on a request other than OPTIONS.
    Case {
        name: "3.3.? zeromf",
        text: "INVITE sip:100@{server} SIP/2.0
Via: SIP/2.0/UDP {ua};branch={branch}
Max-Forwards: 0
From: sip:caller@example.net;tag=1
To: sip:user@example.com
Contact: <sip:caller@{ua}>
Call-ID: {id}
CSeq: 1 INVITE
Content-Length: 0

",
        expect: Expect::Status(483),
    },
];

fn run(cases: &[Case]) -> Vec<String> {
    let server = TestServer::start();
    let mut ua = Ua::udp(server.sip);
    let mut wrong = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let id = format!("torture-{n}-{}", rand::random::<u32>());
        ua.send_bytes(&fill(case.text, &ua, &id));
        let got = match case.expect {
            Expect::Status(_) => answer_to(&mut ua, &id, Duration::from_secs(10)),
            Expect::Nothing => None,
        };
        if let Some(m) = &got
            && m.status() == Some(200)
            && m.cseq_method() == Some("INVITE")
        {
            assert!(
                m.body_str().contains("m=audio"),
                "{}: the 200 carries an SDP answer",
                case.name
            );
            hang_up(&mut ua, m, &id);
        }
        let early = sentinel(&mut ua, n);
        let answered_late = early.iter().any(|m| {
            m.header("call-id")
                .is_some_and(|c| c.trim().starts_with(&id))
        });
        let verdict = match (case.expect, &got) {
            (Expect::Status(code), Some(m)) if m.status() == Some(code) => None,
            (Expect::Status(code), Some(m)) => Some(format!("wanted {code}, got {}", m.start)),
            (Expect::Status(code), None) => Some(format!("wanted {code}, got no answer")),
            (Expect::Nothing, _) if answered_late => Some("wanted no answer, got one".into()),
            (Expect::Nothing, _) => None,
        };
        if let Some(v) = verdict {
            wrong.push(format!("{}: {v}", case.name));
        }
    }
    wrong
}

#[test]
fn valid_torture_messages_are_answered_as_rfc_3261_says() {
    let wrong = run(VALID);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn invalid_torture_messages_get_the_answer_that_names_the_fault() {
    let wrong = run(INVALID);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn torture_messages_about_semantics_get_the_answer_rfc_3261_names() {
    let wrong = run(SEMANTICS);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
