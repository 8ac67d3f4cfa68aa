//! Who may call in and register: a clinic's SIP port faces the internet. Requests from an
//! address that is neither a trusted network nor a trunk must answer a digest challenge
//! (RFC 3261 §22, SHA-256 per RFC 8760) with a Careline user's SIP secret. The answers here
//! are computed in the test from the RFC's formula (not with Careline's code), over real
//! sockets to a real `careline serve`.

mod support;

use std::time::Duration;

use careline::media::codec::Codec;
use sha2::Digest;
use support::rtp::RtpPeer;
use support::server::{Options, TestServer};
use support::sip::{Call, Msg, Ua, sdp_media_addr, sdp_offer};

/// A server that trusts no network (so loopback callers are challenged).
fn untrusted() -> TestServer {
    let server = TestServer::start_with(Options {
        toml: "[sip]\ntrusted_networks = []\n".into(),
        ..Default::default()
    });
    server.user_token("nina", "clinician");
    server
}

fn h(text: &str) -> String {
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// The challenge's nonce, from the first (SHA-256) WWW-Authenticate.
fn nonce(challenge: &Msg) -> String {
    let www = challenge.headers_all("www-authenticate");
    assert!(
        !www.is_empty(),
        "a 401 carries WWW-Authenticate: {}",
        challenge.start
    );
    www[0]
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a nonce")
        .to_string()
}

/// `Authorization` for `method` to `uri` as a phone computes it (RFC 7616 §3.4.1, qop=auth).
fn authorization(
    user: &str,
    secret: &str,
    nonce: &str,
    method: &str,
    uri: &str,
    nc: u32,
) -> String {
    let nc = format!("{nc:08x}");
    let ha1 = h(&format!("{user}:careline:{secret}"));
    let ha2 = h(&format!("{method}:{uri}"));
    let response = h(&format!("{ha1}:{nonce}:{nc}:4fe2a8:auth:{ha2}"));
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"careline\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{response}\", algorithm=SHA-256, qop=auth, nc={nc}, \
         cnonce=\"4fe2a8\"\r\n"
    )
}

/// A REGISTER for `user` from `ua`, with `extra` headers.
fn register(ua: &Ua, user: &str, call_id: &str, cseq: u32, extra: &str) -> String {
    format!(
        "REGISTER sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{r}\r\n\
         From: <sip:{user}@{server}>;tag=f{cseq}\r\nTo: <sip:{user}@{server}>\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nMax-Forwards: 70\r\n\
         Contact: <sip:{user}@{local}>;expires=600\r\n{extra}Content-Length: 0\r\n\r\n",
        server = ua.server,
        local = ua.local,
        r = rand::random::<u32>()
    )
}

/// Sends a REGISTER (as [`register`] writes it) and returns the final answer.
fn reg(ua: &mut Ua, user: &str, call_id: &str, cseq: u32, extra: &str) -> Msg {
    let m = register(ua, user, call_id, cseq, extra);
    answer(ua, &m)
}

fn answer(ua: &mut Ua, msg: &str) -> Msg {
    ua.send(msg);
    ua.expect(Duration::from_secs(5), |m| {
        m.status().is_some_and(|s| s >= 200)
    })
    .expect("a final answer")
}

#[test]
fn a_phone_registers_with_its_sip_secret_and_nothing_else_registers() {
    let server = untrusted();
    let secret = server.sip_secret("nina");
    let mut ua = Ua::udp(server.sip);
    let uri = format!("sip:{}", server.sip);

    let first = reg(&mut ua, "nina", "reg-1", 1, "");
    assert_eq!(first.status(), Some(401), "{}", first.start);
    let www = first.headers_all("www-authenticate");
    assert_eq!(www.len(), 2, "SHA-256 and MD5 offered: {www:?}");
    assert!(www[0].contains("algorithm=SHA-256") && www[1].contains("algorithm=MD5"));
    assert!(
        www.iter()
            .all(|w| w.contains("realm=\"careline\"") && w.contains("qop=\"auth\""))
    );
    let n = nonce(&first);

    // A wrong secret and a user that does not exist get the same answer.
    let wrong = reg(
        &mut ua,
        "nina",
        "reg-1",
        2,
        &authorization("nina", "not-the-secret", &n, "REGISTER", &uri, 1),
    );
    let unknown = reg(
        &mut ua,
        "ghost",
        "reg-1",
        3,
        &authorization("ghost", "not-the-secret", &n, "REGISTER", &uri, 2),
    );
    assert_eq!(wrong.status(), Some(403));
    assert_eq!(unknown.status(), Some(403));
    assert_eq!(
        wrong.start, unknown.start,
        "a scanner learns nothing about names"
    );

    // The right secret: bound, and the 200 lists the binding with its time.
    let signed = register(
        &ua,
        "nina",
        "reg-1",
        4,
        &authorization("nina", &secret, &n, "REGISTER", &uri, 3),
    );
    let ok = answer(&mut ua, &signed);
    assert_eq!(ok.status(), Some(200), "{}", ok.start);
    let contact = ok.header("contact").unwrap_or_default().to_string();
    assert!(
        contact.contains(&format!("sip:nina@{}", ua.local)) && contact.contains("expires=600"),
        "{contact}"
    );
    assert_eq!(server.metric("careline_sip_registered_users"), 1.0);

    // The same signed request again (a replay) is challenged, not taken.
    let replay = answer(
        &mut ua,
        &signed.replace("branch=z9hG4bK", "branch=z9hG4bKreplay"),
    );
    assert_eq!(
        replay.status(),
        Some(401),
        "a replayed nonce count: {}",
        replay.start
    );

    // Nina may not register someone else's address.
    let other = reg(
        &mut ua,
        "omar",
        "reg-1",
        5,
        &authorization("nina", &secret, &n, "REGISTER", &uri, 4),
    );
    assert_eq!(other.status(), Some(403));

    // Removing the secret stops the phone.
    server.cli_ok(&["user", "sip-secret", "nina", "--clear"]);
    let after = reg(
        &mut ua,
        "nina",
        "reg-1",
        6,
        &authorization("nina", &secret, &n, "REGISTER", &uri, 5),
    );
    assert_eq!(after.status(), Some(403));

    assert!(server.metric("careline_sip_auth_total{result=\"refused\"}") >= 4.0);
    // Nina's own registration, and her request for omar's address (authenticated, then
    // refused by the registrar).
    assert_eq!(
        server.metric("careline_sip_auth_total{result=\"accepted\"}"),
        2.0
    );
    // The secret never reaches the log.
    assert!(!server.log().contains(&secret), "SIP secret in the log");
}

#[test]
fn an_untrusted_caller_is_challenged_and_its_answered_invite_runs_the_flow() {
    let server = untrusted();
    let secret = server.sip_secret("nina");
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let mut ua = Ua::udp(server.sip);
    let mut call = Call::new("100");
    let sdp = sdp_offer(
        peer.port,
        "0 101",
        &["a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000"],
    );

    let invite = call.invite(&ua, &sdp);
    let challenge = answer(&mut ua, &invite);
    assert_eq!(challenge.status(), Some(401), "{}", challenge.start);
    assert_eq!(
        server.metric("careline_calls_started_total"),
        0.0,
        "no call without a password"
    );
    call.on_response(&challenge);
    ua.send(&call.ack(&ua, 401));
    call.to_tag = None;

    // The INVITE again, with the answer to the challenge (a new transaction, CSeq + 1).
    let uri = format!("sip:100@{}", server.sip);
    let signed = call.invite(&ua, &sdp).replacen(
        "Content-Type:",
        &format!(
            "{}Content-Type:",
            authorization("nina", &secret, &nonce(&challenge), "INVITE", &uri, 1)
        ),
        1,
    );
    let ok = answer(&mut ua, &signed);
    assert_eq!(ok.status(), Some(200), "{}", ok.start);
    call.on_response(&ok);
    ua.send(&call.ack(&ua, 200));
    peer.set_remote(sdp_media_addr(&ok.body_str()).expect("media address"));
    support::audio::wait_for_prompt(&peer, Codec::Pcmu, "en", "welcome", 0, Some(1500));
    let bye = call.bye(&ua);
    ua.send(&bye);
    ua.expect(Duration::from_secs(5), |m| m.cseq_method() == Some("BYE"))
        .expect("200 to BYE");
    assert_eq!(server.metric("careline_calls_started_total"), 1.0);
    assert!(
        support::server::plain(&server.log()).contains("user=\"nina\""),
        "the call is logged with the user it authenticated as"
    );
}

#[test]
fn a_trunk_calls_in_without_a_password_and_is_named() {
    let server = TestServer::start_with(Options {
        toml:
            "[sip]\ntrusted_networks = []\n[sip.trunks.carrier]\naddresses = [\"127.0.0.1/32\"]\n"
                .into(),
        ..Default::default()
    });
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let mut ua = Ua::udp(server.sip);
    let call = support::sip::dial_answered(&mut ua, "100", &peer);
    support::audio::wait_for_prompt(&peer, Codec::Pcmu, "en", "welcome", 0, Some(1500));
    drop(call);
    assert_eq!(
        server.metric("careline_sip_auth_total{result=\"challenged\"}"),
        0.0
    );
    assert!(
        support::server::plain(&server.log()).contains("trunk=\"carrier\""),
        "calls are logged with their trunk"
    );
}
