//! Bad and unusual SIP input: answered where it can be, dropped where it cannot, and never
//! at the expense of the calls that follow.

mod support;

use std::net::UdpSocket;
use std::time::Duration;

use careline::media::codec::Codec;
use support::audio::{heard_prompt, wait_for_prompt};
use support::rtp::RtpPeer;
use support::server::{Options, TestServer};
use support::sip::{Call, Ua, dial_answered, invite, sdp_offer};

fn request(method: &str, ua: &Ua, extra: &str) -> String {
    format!(
        "{method} sip:100@{server} SIP/2.0\r\nVia: SIP/2.0/{t} {local};branch=z9hG4bK{r}\r\n\
         From: <sip:a@{local}>;tag={r}\r\nTo: <sip:100@{server}>\r\nCall-ID: {r}@test\r\n\
         CSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n",
        server = ua.server,
        local = ua.local,
        t = ua.transport(),
        r = rand::random::<u32>()
    )
}

#[test]
fn options_ping_is_answered_with_capabilities() {
    let server = TestServer::start();
    let mut ua = Ua::udp(server.sip);
    let msg = request("OPTIONS", &ua, "");
    ua.send(&msg);
    let r = ua
        .recv(Duration::from_secs(5))
        .expect("a response to OPTIONS");
    assert_eq!(r.status(), Some(200));
    let allow = r.header("allow").unwrap_or_default();
    for m in ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO"] {
        assert!(allow.contains(m), "Allow lists {m}: {allow}");
    }
    assert!(
        r.header("accept")
            .unwrap_or_default()
            .contains("application/sdp")
    );
}

#[test]
fn methods_careline_does_not_serve_get_405_or_501() {
    let server = TestServer::start();
    let mut ua = Ua::udp(server.sip);
    // REGISTER is served since phones register (tests/sip_auth.rs).
    for (method, code) in [("SUBSCRIBE", 405), ("MESSAGE", 405), ("FROBNICATE", 501)] {
        let msg = request(method, &ua, "");
        ua.send(&msg);
        let r = ua
            .recv(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no answer to {method}"));
        assert_eq!(r.status(), Some(code), "{method}: {}", r.start);
        assert!(
            r.header("allow").is_some_and(|a| a.contains("INVITE")),
            "{method} answer carries Allow"
        );
    }
    // In-dialog requests for a dialog that does not exist.
    let msg = request("BYE", &ua, "").replacen(">\r\nCall-ID", ">;tag=nope\r\nCall-ID", 1);
    ua.send(&msg);
    let r = ua
        .recv(Duration::from_secs(5))
        .expect("answer to a stray BYE");
    assert_eq!(r.status(), Some(481));
}

#[test]
fn malformed_requests_get_400_naming_the_problem() {
    let server = TestServer::start();
    let mut ua = Ua::udp(server.sip);
    let bad_cseq = request("INVITE", &ua, "").replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
    ua.send(&bad_cseq);
    let r = ua
        .recv(Duration::from_secs(5))
        .expect("400 for a CSeq mismatch");
    assert_eq!(r.status(), Some(400));
    assert!(
        r.start.contains("CSeq"),
        "reason names the problem: {}",
        r.start
    );

    let bad_start =
        request("INVITE", &ua, "").replacen("INVITE sip:", "INVITE <<garbage>> sip:", 1);
    ua.send(&bad_start);
    let r = ua
        .recv(Duration::from_secs(5))
        .expect("400 for a garbled request line");
    assert_eq!(r.status(), Some(400));
    assert!(server.metric("careline_sip_rejected_total{reason=\"malformed\"}") >= 2.0);
}

/// Requests that parse but that RFC 3261 §8.2 says a UAS must refuse get the answer it names,
/// over UDP and TCP alike, and a call placed afterwards on the same connection works; an INVITE
/// is answered 100 Trying first (§17.2.1).
#[test]
fn requests_careline_cannot_take_get_the_answer_rfc_3261_names() {
    let server = TestServer::start();
    for mut ua in [Ua::udp(server.sip), Ua::tcp(server.sip)] {
        let t = ua.transport();
        let cases: Vec<(String, u16, &str)> = vec![
            (
                request("OPTIONS", &ua, "").replacen("SIP/2.0\r\n", "SIP/7.0\r\n", 1),
                505,
                "",
            ),
            (
                request("INVITE", &ua, "").replacen("INVITE sip:100@", "INVITE mailto:100@", 1),
                416,
                "",
            ),
            (
                request("INVITE", &ua, "").replace("Max-Forwards: 70", "Max-Forwards: 0"),
                483,
                "",
            ),
            (
                request("INVITE", &ua, "Require: 100rel, foo\r\n"),
                420,
                "unsupported",
            ),
            (
                request("INVITE", &ua, "Content-Type: text/plain\r\n").replace(
                    "Content-Length: 0\r\n\r\n",
                    "Content-Length: 5\r\n\r\nhello",
                ),
                415,
                "accept",
            ),
        ];
        for (msg, code, header) in cases {
            ua.send(&msg);
            let r = ua
                .expect(Duration::from_secs(5), |m| {
                    m.status().is_some_and(|s| s >= 200)
                })
                .unwrap_or_else(|| panic!("{t}: no answer to\n{msg}"));
            assert_eq!(r.status(), Some(code), "{t}: {}\n{msg}", r.start);
            if !header.is_empty() {
                assert!(
                    r.header(header).is_some(),
                    "{t}: {code} carries {header}: {r:?}"
                );
            }
        }
        let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
        let mut call = Call::new("100");
        let offer = sdp_offer(
            peer.port,
            "0 101",
            &["a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000"],
        );
        let (ok, provisional) = invite(&mut ua, &mut call, &offer);
        assert_eq!(ok.status(), Some(200), "{t}: the next call is answered");
        assert_eq!(
            provisional.first(),
            Some(&100),
            "{t}: 100 Trying first: {provisional:?}"
        );
        let ack = call.ack(&ua, 200);
        ua.send(&ack);
        let bye = call.bye(&ua);
        ua.send(&bye);
    }
    for reason in [
        "version",
        "uri_scheme",
        "too_many_hops",
        "bad_extension",
        "unsupported_media",
    ] {
        assert_eq!(
            server.metric(&format!(
                "careline_sip_rejected_total{{reason=\"{reason}\"}}"
            )),
            2.0,
            "{reason}: once per transport"
        );
    }
}

/// An INVITE flood from one address (127.0.0.2, as fast as one thread can send) while a
/// caller from another (127.0.0.1) places a call: the flooder is rate-limited per source, and
/// the caller is answered and hears the welcome. Not a timing test: how fast a flood must be
/// to hurt is a benchmark's question.
#[test]
fn an_invite_flood_from_one_source_does_not_stop_calls_from_another() {
    let server = TestServer::start_with(support::server::Options {
        // A small call table: each flooded INVITE that is refused must give its place back at
        // once, not when its transaction ends 32 s later, or the flood fills the table.
        toml: "[sip]\nrate_limit_per_source = 200\nmax_calls = 20\n".into(),
        ..Default::default()
    });
    let flooder = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2 (loopback)");
    let from = flooder.local_addr().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = std::thread::scope(|scope| {
        let flood = scope.spawn(|| {
            let mut n = 0u64;
            // Bounded: a call that never completes ends the flood after a minute, not never.
            let until = std::time::Instant::now() + Duration::from_secs(60);
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && std::time::Instant::now() < until
            {
                let msg = format!(
                    "INVITE sip:100@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKf{n}\r\n\
                     From: <sip:flood@{from}>;tag=f{n}\r\nTo: <sip:100@{server}>\r\n\
                     Call-ID: flood-{n}@test\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
                     Contact: <sip:flood@{from}>\r\nContent-Length: 0\r\n\r\n",
                    server = server.sip,
                );
                let _ = flooder.send_to(msg.as_bytes(), server.sip);
                n += 1;
            }
            n
        });
        // Once the flood is being limited, a normal call from another address.
        assert!(
            server.wait_metric(
                "careline_sip_rejected_total{reason=\"rate_limited\"}",
                100.0,
                Duration::from_secs(30)
            ) >= 100.0,
            "the flood is limited"
        );
        let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
        let mut ua = Ua::udp(server.sip);
        let mut call = dial_answered(&mut ua, "100", &peer);
        // The flood can crowd the caller's ACK out of the server's socket on a loaded machine
        // (the flow starts at the ACK): like any phone, the caller ACKs each retransmitted
        // 200 OK (RFC 3261 §13.2.2.4) until it hears the flow.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while heard_prompt(&peer.heard(), Codec::Pcmu, "en", "welcome", 0, Some(1500)).is_none()
            && std::time::Instant::now() < deadline
        {
            if let Some(m) = ua.recv(Duration::from_millis(100))
                && m.status() == Some(200)
                && m.cseq_method() == Some("INVITE")
            {
                let ack = call.ack(&ua, 200);
                ua.send(&ack);
            }
        }
        wait_for_prompt(&peer, Codec::Pcmu, "en", "welcome", 0, Some(1500));
        let bye = call.bye(&ua);
        ua.send(&bye);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        flood.join().expect("flood thread")
    });
    let limited = server.metric("careline_sip_rejected_total{reason=\"rate_limited\"}");
    assert!(
        limited >= 100.0 && (limited as u64) < sent,
        "{limited} of {sent} flood datagrams dropped by the limit"
    );
    assert!(
        server.http_get("/healthz").is_some_and(|(c, _)| c == 200),
        "server alive"
    );
}

/// A corpus of broken messages and random datagrams, then a normal call that must work.
#[test]
fn a_storm_of_garbage_does_not_harm_the_next_call() {
    let server = TestServer::start();
    let noise = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ua = Ua::udp(server.sip);
    let good = request("INVITE", &ua, "Contact: <sip:a@127.0.0.1>\r\n");
    let mut corpus: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\r\n\r\n".to_vec(),
        b"INVITE".to_vec(),
        b"INVITE sip:100@127.0.0.1 SIP/2.0\r\n\r\n".to_vec(),
        b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n".to_vec(),
        b"ACK sip:x SIP/2.0\r\nCall-ID: 1\r\n\r\n".to_vec(),
        good.replace("Content-Length: 0", "Content-Length: 99999")
            .into_bytes(),
        good.replace("Content-Length: 0", "Content-Length: -5")
            .into_bytes(),
        good.replace("CSeq: 1 INVITE", "CSeq: banana INVITE")
            .into_bytes(),
        good.replace("Via: SIP/2.0/UDP", "Via: SIP/9.9/XYZ")
            .into_bytes(),
        good.replace("From:", "From: \u{0}\u{1}").into_bytes(),
        good.replace("\r\n", "\n").into_bytes(),
        format!("{good}v=0\r\no=x\r\n")
            .replace(
                "Content-Length: 0",
                "Content-Type: application/sdp\r\nContent-Length: 9",
            )
            .into_bytes(),
        [good.as_bytes(), &[0xFF; 3000]].concat(),
        vec![b'A'; 60000],
        "INVITE sip:100@127.0.0.1 SIP/2.0\r\n"
            .repeat(200)
            .into_bytes(),
        {
            let mut m = good.clone().into_bytes();
            m.truncate(m.len() / 2);
            m
        },
    ];
    // Deterministic random datagrams and byte-flipped copies of a valid request.
    let mut x: u32 = 0xC0FFEE;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for _ in 0..300 {
        let len = (rnd() % 1400) as usize;
        corpus.push((0..len).map(|_| rnd() as u8).collect());
        let mut m = good.clone().into_bytes();
        for _ in 0..(1 + rnd() % 6) {
            let i = rnd() as usize % m.len();
            m[i] = rnd() as u8;
        }
        corpus.push(m);
    }
    for d in &corpus {
        noise.send_to(d, server.sip).unwrap();
        // Also at the RTP range: garbage there is counted and dropped.
        noise.send_to(d, ("127.0.0.1", server.rtp.0)).unwrap();
    }
    // What came back, until the server has been quiet for a second: only refusals (400 for
    // damage, 501 for an unknown method, 513 past the size, 488 for an INVITE that still
    // parses but offers no SDP: `good` has none, and the 100 Trying before it; 416 and the
    // like where damage left a request that parses but cannot be taken); nothing was set up.
    noise
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut replies = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok((n, _)) = noise.recv_from(&mut buf) {
        replies.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let status = |r: &str| r.split(' ').nth(1).unwrap_or("").to_string();
    assert!(
        replies.iter().all(|r| {
            [
                "100", "400", "415", "416", "420", "483", "488", "501", "505", "513",
            ]
            .contains(&status(r).as_str())
        }),
        "only refusals come back: {:?}",
        replies.iter().map(|r| status(r)).collect::<Vec<_>>()
    );
    let bad_requests = replies.iter().filter(|r| status(r) == "400").count();
    assert!(
        replies
            .iter()
            .any(|r| status(r) == "400" && r.to_ascii_lowercase().contains("cseq")),
        "the CSeq-damaged INVITE is answered 400 naming the CSeq"
    );
    assert!(bad_requests >= 3, "{bad_requests} 400s: {replies:?}");
    // The server counted what it refused: at least the 400s it sent.
    assert!(
        server.metric("careline_sip_rejected_total{reason=\"malformed\"}") >= bad_requests as f64
    );
    assert!(
        server.http_get("/healthz").is_some_and(|(c, _)| c == 200),
        "server alive"
    );

    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let mut ua = Ua::udp(server.sip);
    let mut call = dial_answered(&mut ua, "100", &peer);
    wait_for_prompt(&peer, Codec::Pcmu, "en", "welcome", 0, Some(1500));
    let bye = call.bye(&ua);
    ua.send(&bye);
    let r = ua
        .expect(Duration::from_secs(5), |m| m.cseq_method() == Some("BYE"))
        .expect("BYE answered");
    assert_eq!(r.status(), Some(200));
    assert!(server.metric("careline_sip_rejected_total{reason=\"malformed\"}") > 0.0);
}

#[test]
fn sip_over_tls_answers_with_the_generated_certificate() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::io::{Read, Write};

    let server = TestServer::start();
    let cert_path = server.data_path().join("tls/sip-cert.pem");
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(&cert_path)
        .expect("the self-signed certificate is in the data dir")
        .collect::<Result<_, _>>()
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots.add(c).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn = rustls::ClientConnection::new(
        std::sync::Arc::new(config),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let tcp = std::net::TcpStream::connect(server.tls).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = tcp.local_addr().unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let msg = format!(
        "OPTIONS sip:100@{s} SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKtls1\r\nFrom: <sip:a@{local}>;tag=1\r\n\
         To: <sip:100@{s}>\r\nCall-ID: tls1@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        s = server.tls
    );
    tls.write_all(msg.as_bytes())
        .expect("TLS handshake with the generated certificate");
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).expect("a response over TLS");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 200"), "{text}");
}

/// `[rtp] srtp = "require"` over plain UDP signalling: a plain RTP offer is refused with 488
/// and a Warning naming the setting; an `RTP/SAVP` offer too, because its SDES keys crossed
/// the network in clear (keys are taken over TLS only); best-effort keys on `RTP/AVP` count as
/// plain. No call starts. (SRTP that works is baresip_caller.rs's TLS test.)
#[test]
fn srtp_require_refuses_plain_rtp_and_keys_that_came_in_clear() {
    let server = TestServer::start_with(Options {
        toml: "[rtp]\nsrtp = \"require\"\n".into(),
        ..Default::default()
    });
    let key = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
    let plain = sdp_offer(4000, "0", &["a=rtpmap:0 PCMU/8000"]);
    let savp = sdp_offer(4000, "0", &["a=rtpmap:0 PCMU/8000", key]).replace("RTP/AVP", "RTP/SAVP");
    let best_effort = sdp_offer(4000, "0", &["a=rtpmap:0 PCMU/8000", key]);
    let mut ua = Ua::udp(server.sip);
    for (sdp, why) in [
        (plain, "srtp = 'require'"),
        (savp, "TLS only"),
        (best_effort, "srtp = 'require'"),
    ] {
        let mut call = Call::new("100");
        let (resp, _) = invite(&mut ua, &mut call, &sdp);
        assert_eq!(resp.status(), Some(488), "{sdp}");
        let warning = resp.header("Warning").unwrap_or_default();
        assert!(warning.contains(why), "{why}: {warning}");
        assert!(
            !warning.contains("WVNf"),
            "a key never goes back out: {warning}"
        );
        ua.send(&call.ack(&ua, 488));
    }
    assert_eq!(server.metric("careline_calls_started_total"), 0.0);
    assert_eq!(
        server.metric("careline_calls_rejected_total{code=\"488\"}"),
        3.0
    );
}
