//! End-to-end: a real server process, a raw SIP phone over real sockets, checks on the audio
//! the caller actually received.

mod support;

use std::time::{Duration, Instant};

use careline::media::codec::Codec;
use careline::media::dtmf::tone;
use support::audio::{expect_not_prompt, expect_prompt, wait_for_prompt, wait_heard_ms};
use support::rtp::RtpPeer;
use support::server::{Options, TestServer};
use support::sip::{Call, PCMU_TE, Ua, answered_call, invite, sdp_media_addr, sdp_offer};

fn wait(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Places an answered call and points the RTP peer at the server's media address.
fn connect(server: &TestServer, peer: &RtpPeer, sdp: &str) -> (Ua, Call, support::sip::Msg) {
    let mut ua = Ua::udp(server.sip);
    let mut call = Call::new("100");
    let ok = answered_call(&mut ua, &mut call, sdp);
    let media = sdp_media_addr(&ok.body_str()).expect("media address in the answer");
    peer.set_remote(media);
    (ua, call, ok)
}

#[test]
fn pcmu_caller_hears_welcome_then_the_prompt_of_the_rfc4733_key() {
    let server = TestServer::start();
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let (mut ua, mut call, ok) = connect(&server, &peer, &sdp_offer(peer.port, "0 101", &PCMU_TE));
    let answer = ok.body_str();
    assert!(
        answer.contains("m=audio") && answer.contains("RTP/AVP 0 101"),
        "{answer}"
    );
    assert!(answer.contains("telephone-event/8000"), "{answer}");

    let (heard, welcome) = wait_for_prompt(&peer, Codec::Pcmu, "en", "welcome", 0, Some(2000));
    assert!(
        welcome.offset_ms() < 300,
        "welcome starts at once: {welcome:?}"
    );

    // Barge-in: the key stops the welcome and its prompt follows.
    let pressed_at = heard.len() as u64 / 8;
    peer.send_event('5', 100);
    let (heard, m) = wait_for_prompt(&peer, Codec::Pcmu, "en", "digit-5", pressed_at, None);
    assert!(
        m.offset_ms() < pressed_at + 400,
        "digit prompt follows the key promptly: {m:?}"
    );
    expect_not_prompt(&heard, "en", "digit-4", pressed_at);
    assert_eq!(
        server.metric("careline_dtmf_digits_total{method=\"rfc4733\"}"),
        1.0,
        "one digit per event"
    );

    let bye = call.bye(&ua);
    ua.send(&bye);
    let resp = ua
        .expect(Duration::from_secs(5), |m| m.cseq_method() == Some("BYE"))
        .expect("200 to BYE");
    assert_eq!(resp.status(), Some(200));
    assert_eq!(
        server.wait_metric(
            "careline_calls_ended_total{cause=\"caller_bye\"}",
            1.0,
            Duration::from_secs(5)
        ),
        1.0
    );
}

#[test]
fn rtp_from_the_server_is_well_formed() {
    let server = TestServer::start();
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let (_ua, _call, _) = connect(&server, &peer, &sdp_offer(peer.port, "0 101", &PCMU_TE));
    let deadline = Instant::now() + Duration::from_secs(30);
    while peer.packets().len() < 120 && Instant::now() < deadline {
        wait(100);
    }
    let packets = peer.packets();
    assert!(
        packets.len() >= 120,
        "about 50 packets a second, got {}",
        packets.len()
    );
    assert!(packets[0].marker, "first packet starts a talkspurt");
    let ssrc = packets[0].ssrc;
    for w in packets.windows(2) {
        assert_eq!(w[1].ssrc, ssrc);
        assert_eq!(
            w[1].sequence,
            w[0].sequence.wrapping_add(1),
            "no sequence gaps"
        );
        assert_eq!(
            w[1].timestamp,
            w[0].timestamp.wrapping_add(160),
            "20 ms of 8 kHz per packet"
        );
        assert_eq!(w[1].payload.len(), 160);
    }
    // Pacing itself is measured by the load tester, not asserted here.
}

#[test]
fn pcma_caller_without_telephone_event_is_heard_by_in_band_tones() {
    let server = TestServer::start();
    let peer = RtpPeer::new(Codec::Pcma, 8, None);
    let (_ua, _call, ok) = connect(
        &server,
        &peer,
        &sdp_offer(peer.port, "8", &["a=rtpmap:8 PCMA/8000"]),
    );
    assert!(
        !ok.body_str().contains("telephone-event"),
        "not offered, not answered"
    );
    let pressed_at = wait_heard_ms(&peer, 1500);
    peer.send_audio(tone::synthesize(
        careline::media::dtmf::Digit::from_char('3').unwrap(),
        8000,
        120,
        -10.0,
    ));
    wait_for_prompt(&peer, Codec::Pcma, "en", "digit-3", pressed_at, None);
    assert_eq!(
        server.metric("careline_dtmf_digits_total{method=\"inband\"}"),
        1.0
    );
}

#[test]
fn opus_caller_hears_prompts_and_is_understood() {
    let server = TestServer::start();
    let peer = RtpPeer::new(Codec::Opus, 111, Some(101));
    let offer = sdp_offer(
        peer.port,
        "111 101",
        &[
            "a=rtpmap:111 opus/48000/2",
            "a=fmtp:111 useinbandfec=1",
            "a=rtpmap:101 telephone-event/48000",
            "a=fmtp:101 0-15",
        ],
    );
    let (_ua, _call, ok) = connect(&server, &peer, &offer);
    let answer = ok.body_str();
    assert!(
        answer.contains("opus/48000/2") && answer.contains("telephone-event/48000"),
        "{answer}"
    );
    let (heard, _) = wait_for_prompt(&peer, Codec::Opus, "en", "welcome", 0, Some(2000));
    let pressed_at = heard.len() as u64 / 8;
    peer.send_event('7', 100);
    wait_for_prompt(&peer, Codec::Opus, "en", "digit-7", pressed_at, None);
    let ts: Vec<u32> = peer.packets().iter().map(|p| p.timestamp).collect();
    assert!(
        ts.windows(2).all(|w| w[1].wrapping_sub(w[0]) == 960),
        "48 kHz clock, 20 ms frames"
    );
}

#[test]
fn sip_info_digits_in_both_formats_drive_the_menu() {
    let server = TestServer::start();
    let peer = RtpPeer::new(Codec::Pcmu, 0, None);
    let (mut ua, mut call, _) = connect(
        &server,
        &peer,
        &sdp_offer(peer.port, "0", &["a=rtpmap:0 PCMU/8000"]),
    );
    let t1 = wait_heard_ms(&peer, 1000);
    let info = call.info(
        &ua,
        "application/dtmf-relay",
        "Signal=2\r\nDuration=160\r\n",
    );
    ua.send(&info);
    let r = ua
        .expect(Duration::from_secs(5), |m| m.cseq_method() == Some("INFO"))
        .expect("INFO answered");
    assert_eq!(r.status(), Some(200));
    wait_for_prompt(&peer, Codec::Pcmu, "en", "digit-2", t1, None);

    let t2 = peer.heard().len() as u64 / 8;
    let info = call.info(&ua, "application/dtmf", "9");
    ua.send(&info);
    let r = ua
        .expect(Duration::from_secs(5), |m| m.cseq_method() == Some("INFO"))
        .expect("INFO answered");
    assert_eq!(r.status(), Some(200));
    wait_for_prompt(&peer, Codec::Pcmu, "en", "digit-9", t2, None);

    let info = call.info(&ua, "application/x-unknown", "hello");
    ua.send(&info);
    let r = ua
        .expect(Duration::from_secs(5), |m| m.cseq_method() == Some("INFO"))
        .expect("INFO answered");
    assert_eq!(
        r.status(),
        Some(415),
        "an INFO that is not DTMF is refused, the call goes on"
    );
    assert_eq!(
        server.metric("careline_dtmf_digits_total{method=\"sip_info\"}"),
        2.0
    );
}

#[test]
fn pound_says_goodbye_and_the_server_hangs_up() {
    let server = TestServer::start();
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let (mut ua, _call, _) = connect(&server, &peer, &sdp_offer(peer.port, "0 101", &PCMU_TE));
    let pressed_at = wait_heard_ms(&peer, 800);
    peer.send_event('#', 100);
    let bye = ua
        .expect(Duration::from_secs(10), |m| m.method() == Some("BYE"))
        .expect("server BYE after goodbye");
    ua.respond(&bye, 200, "OK");
    expect_prompt(
        &peer.heard(),
        Codec::Pcmu,
        "en",
        "goodbye",
        pressed_at,
        None,
    );
    assert_eq!(
        server.wait_metric(
            "careline_calls_ended_total{cause=\"server_bye\"}",
            1.0,
            Duration::from_secs(5)
        ),
        1.0
    );
    assert_eq!(
        server.wait_metric_down("careline_media_legs", 0.0, Duration::from_secs(5)),
        0.0
    );
}

#[test]
fn cancel_while_ringing_gets_487_and_no_call() {
    let server = TestServer::start_with(Options {
        toml: "[calls]\nring_ms = 5000\n".into(),
        ..Default::default()
    });
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let mut ua = Ua::udp(server.sip);
    let mut call = Call::new("100");
    let inv = call.invite(&ua, &sdp_offer(peer.port, "0 101", &PCMU_TE));
    ua.send(&inv);
    let ringing = ua
        .expect(Duration::from_secs(5), |m| m.status() == Some(180))
        .expect("180 Ringing");
    call.on_response(&ringing);
    let cancel = call.cancel(&ua);
    ua.send(&cancel);
    let mut got = Vec::new();
    while got.len() < 2 {
        let m = ua
            .expect(Duration::from_secs(5), |m| m.status().is_some())
            .expect("responses to CANCEL and INVITE");
        got.push((
            m.status().unwrap(),
            m.cseq_method().unwrap_or_default().to_string(),
        ));
        if m.status() == Some(487) {
            let ack = call.ack(&ua, 487);
            ua.send(&ack);
        }
    }
    assert!(got.contains(&(200, "CANCEL".into())), "{got:?}");
    assert!(got.contains(&(487, "INVITE".into())), "{got:?}");
    assert_eq!(
        server.wait_metric(
            "careline_calls_ended_total{cause=\"cancel\"}",
            1.0,
            Duration::from_secs(3)
        ),
        1.0
    );
    assert_eq!(server.metric("careline_calls_started_total"), 0.0);
}

#[test]
fn hold_stops_our_audio_and_unhold_resumes_it() {
    let server = TestServer::start();
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let (mut ua, mut call, _) = connect(&server, &peer, &sdp_offer(peer.port, "0 101", &PCMU_TE));
    // Audio is flowing before the hold.
    wait_heard_ms(&peer, 500);
    let mut hold_attrs = PCMU_TE.to_vec();
    hold_attrs.push("a=sendonly");
    let reinvite = call.reinvite(&ua, &sdp_offer(peer.port, "0 101", &hold_attrs));
    ua.send(&reinvite);
    let ok = ua
        .expect(Duration::from_secs(5), |m| {
            m.cseq_method() == Some("INVITE") && m.status() == Some(200)
        })
        .expect("200 to hold");
    assert!(
        ok.body_str().contains("a=recvonly"),
        "hold answered recvonly: {}",
        ok.body_str()
    );
    let ack = call.ack(&ua, 200);
    ua.send(&ack);
    wait(300);
    let held = Instant::now();
    wait(1500);
    assert!(
        peer.packets_since(held) <= 1,
        "no RTP while held, got {}",
        peer.packets_since(held)
    );

    let mut attrs = PCMU_TE.to_vec();
    attrs.push("a=sendrecv");
    let reinvite = call.reinvite(&ua, &sdp_offer(peer.port, "0 101", &attrs));
    ua.send(&reinvite);
    let ok = ua
        .expect(Duration::from_secs(5), |m| {
            m.cseq_method() == Some("INVITE") && m.status() == Some(200)
        })
        .expect("200 to unhold");
    assert!(ok.body_str().contains("a=sendrecv"), "{}", ok.body_str());
    let ack = call.ack(&ua, 200);
    ua.send(&ack);
    let resumed = Instant::now();
    let deadline = resumed + Duration::from_secs(30);
    while peer.packets_since(resumed) < 40 && Instant::now() < deadline {
        wait(50);
    }
    assert!(
        peer.packets_since(resumed) >= 40,
        "RTP resumes, got {}",
        peer.packets_since(resumed)
    );
    let after: Vec<_> = peer
        .packets()
        .into_iter()
        .filter(|p| p.at >= held)
        .collect();
    assert!(
        after.iter().any(|p| p.marker),
        "resuming starts a talkspurt"
    );
}

#[test]
fn no_acceptable_codec_gets_488_with_the_reason() {
    let server = TestServer::start();
    let mut ua = Ua::udp(server.sip);
    let mut call = Call::new("100");
    let (resp, _) = invite(
        &mut ua,
        &mut call,
        &sdp_offer(40000, "18", &["a=rtpmap:18 G729/8000"]),
    );
    assert_eq!(resp.status(), Some(488));
    let warning = resp.header("warning").unwrap_or_default().to_string();
    assert!(
        warning.contains("G729") && warning.contains("PCMU"),
        "warning says what was offered and accepted: {warning}"
    );
    let ack = call.ack(&ua, 488);
    ua.send(&ack);
}

#[test]
fn calls_past_the_cap_get_503_with_retry_after() {
    // A Retry-After other than the default (30), so the answer proves the setting is read.
    let server = TestServer::start_with(Options {
        args: vec!["--max-calls".into(), "1".into()],
        toml: "[sip]\nretry_after_secs = 17\n".into(),
        ..Default::default()
    });
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let (_ua, _call, _) = connect(&server, &peer, &sdp_offer(peer.port, "0 101", &PCMU_TE));
    let mut ua2 = Ua::udp(server.sip);
    let mut call2 = Call::new("100");
    let (resp, _) = invite(
        &mut ua2,
        &mut call2,
        &sdp_offer(peer.port + 2, "0", &["a=rtpmap:0 PCMU/8000"]),
    );
    assert_eq!(resp.status(), Some(503));
    assert_eq!(resp.header("retry-after"), Some("17"));
    assert_eq!(
        server.metric("careline_calls_rejected_total{code=\"503\"}"),
        1.0
    );
}

#[test]
fn tcp_caller_is_answered_on_the_same_connection() {
    let server = TestServer::start();
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let mut ua = Ua::tcp(server.sip);
    let mut call = Call::new("100");
    let ok = answered_call(&mut ua, &mut call, &sdp_offer(peer.port, "0 101", &PCMU_TE));
    peer.set_remote(sdp_media_addr(&ok.body_str()).unwrap());
    assert!(
        ok.header("contact")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .contains("transport=tcp"),
        "{:?}",
        ok.header("contact")
    );
    wait_for_prompt(&peer, Codec::Pcmu, "en", "welcome", 0, Some(1500));
    let bye = call.bye(&ua);
    ua.send(&bye);
    let r = ua
        .expect(Duration::from_secs(5), |m| m.cseq_method() == Some("BYE"))
        .expect("BYE answered over TCP");
    assert_eq!(r.status(), Some(200));
}

#[test]
fn media_goes_back_where_the_callers_rtp_comes_from() {
    // A caller behind NAT: its SDP names an address it does not receive on.
    let server = TestServer::start();
    let peer = RtpPeer::new(Codec::Pcmu, 0, Some(101));
    let unreachable_port = peer.port.wrapping_add(1000);
    let mut ua = Ua::udp(server.sip);
    let mut call = Call::new("100");
    let ok = answered_call(
        &mut ua,
        &mut call,
        &sdp_offer(unreachable_port, "0 101", &PCMU_TE),
    );
    peer.set_remote(sdp_media_addr(&ok.body_str()).unwrap());
    wait_heard_ms(&peer, 1600);
    // The first frames went to the advertised port before the caller's first packet arrived;
    // everything after must reach the real one.
    let heard = peer.heard();
    let welcome = support::server::prompt_pcm("en", "welcome");
    let m = careline::media::recognize::find(&heard, &welcome[1600..12000]).expect("audio heard");
    assert!(
        m.waveform_score > 0.95,
        "welcome heard from 200 ms on: {m:?}"
    );
    assert!(
        peer.packets()
            .iter()
            .all(|p| p.from.port() == sdp_media_addr(&ok.body_str()).unwrap().port())
    );
}
