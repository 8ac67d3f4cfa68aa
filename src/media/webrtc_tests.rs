//! The browser leg's transport against a second `rtc` peer playing the browser, over an
//! in-memory wire on a fake clock: what a browser's offer gets as an answer, that the leg
//! connects (ICE-lite, DTLS, SRTP) and carries RTP both ways, and that a browser that goes
//! away ends the leg.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_G722, MIME_TYPE_OPUS, MIME_TYPE_PCMA, MIME_TYPE_PCMU, MIME_TYPE_TELEPHONE_EVENT,
    MIME_TYPE_VP8, MediaEngine,
};
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::marshal::Marshal;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use super::{TransportState, WebRtcError, WebRtcTransport, host_candidate};
use crate::media::codec::Codec;
use crate::media::rtp::RtpPacket;

const SERVER: &str = "10.0.0.1:40000";
const BROWSER: &str = "10.0.0.2:50000";
const LEG_SSRC: u32 = 0x1234_5678;
const BROWSER_SSRC: u32 = 0x0bad_cafe;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn codec(mime: &str, rate: u32, channels: u16, fmtp: &str, pt: u8) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate: rate,
            channels,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: pt,
    }
}

/// What Chrome offers for audio, in its order: Opus first, then G.722, G.711 and both
/// telephone-event rates.
fn chrome_audio() -> Vec<RTCRtpCodecParameters> {
    vec![
        codec(MIME_TYPE_OPUS, 48_000, 2, "minptime=10;useinbandfec=1", 111),
        codec(MIME_TYPE_G722, 8000, 0, "", 9),
        codec(MIME_TYPE_PCMU, 8000, 0, "", 0),
        codec(MIME_TYPE_PCMA, 8000, 0, "", 8),
        codec(MIME_TYPE_TELEPHONE_EVENT, 48_000, 0, "0-15", 110),
        codec(MIME_TYPE_TELEPHONE_EVENT, 8000, 0, "0-15", 126),
    ]
}

/// An offer as Chrome writes it for a microphone (one audio m-line: Opus, RED, G.722, G.711,
/// comfort noise and telephone-event at both rates), from a host at 192.168.1.20.
const CHROME_OFFER: &str = "v=0\r
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
a=group:BUNDLE 0\r
a=extmap-allow-mixed\r
a=msid-semantic: WMS 5b9a6c1e-1b61-4c1f-9f5e-0d7f5b2c3a41\r
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r
c=IN IP4 0.0.0.0\r
a=rtcp:9 IN IP4 0.0.0.0\r
a=candidate:1467250027 1 udp 2122260223 192.168.1.20 54321 typ host generation 0 network-id 1\r
a=ice-ufrag:pP1c\r
a=ice-pwd:kq9Vd1Yx8o3bZ2Qm0nLsT7rW\r
a=ice-options:trickle\r
a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:D6:BC\r
a=setup:actpass\r
a=mid:0\r
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r
a=sendrecv\r
a=msid:5b9a6c1e-1b61-4c1f-9f5e-0d7f5b2c3a41 0d2c7e4b-8f0a-4c5e-a1b2-3c4d5e6f7a8b\r
a=rtcp-mux\r
a=rtcp-rsize\r
a=rtpmap:111 opus/48000/2\r
a=rtcp-fb:111 transport-cc\r
a=fmtp:111 minptime=10;useinbandfec=1\r
a=rtpmap:63 red/48000/2\r
a=fmtp:63 111/111\r
a=rtpmap:9 G722/8000\r
a=rtpmap:0 PCMU/8000\r
a=rtpmap:8 PCMA/8000\r
a=rtpmap:13 CN/8000\r
a=rtpmap:110 telephone-event/48000\r
a=rtpmap:126 telephone-event/8000\r
a=ssrc:3735928559 cname:Qa1b2C3d4E5f6G7h\r
a=ssrc:3735928559 msid:5b9a6c1e-1b61-4c1f-9f5e-0d7f5b2c3a41 0d2c7e4b-8f0a-4c5e-a1b2-3c4d5e6f7a8b\r
";

/// A scripted browser: a full-ICE `rtc` peer that offers one audio track.
struct Browser {
    pc: RTCPeerConnection,
    sender: RTCRtpSenderId,
    connected: bool,
    received: Vec<rtc::rtp::Packet>,
    outbox: Vec<(SocketAddr, Vec<u8>)>,
}

impl Browser {
    fn new(now: Instant, audio: Vec<RTCRtpCodecParameters>, with_video: bool) -> Browser {
        let mut media = MediaEngine::default();
        let first = audio[0].rtp_codec.clone();
        for c in audio.clone() {
            media.register_codec(c, RtpCodecKind::Audio).unwrap();
        }
        if with_video {
            media
                .register_codec(codec(MIME_TYPE_VP8, 90_000, 0, "", 96), RtpCodecKind::Video)
                .unwrap();
        }
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media)
            .build(now)
            .unwrap();
        let b = addr(BROWSER);
        pc.add_local_candidate(host_candidate(b.ip(), b.port()).unwrap())
            .unwrap();
        let track = MediaStreamTrack::new(
            "browser".to_owned(),
            "mic".to_owned(),
            "mic".to_owned(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(BROWSER_SSRC),
                    ..Default::default()
                },
                codec: first,
                ..Default::default()
            }],
        );
        let sender = pc.add_track(track).unwrap();
        // A browser offers every codec it has, not only the track's first.
        let mic = pc.get_transceivers().next().unwrap();
        pc.rtp_transceiver(mic)
            .unwrap()
            .set_codec_preferences(audio)
            .unwrap();
        if with_video {
            let cam = MediaStreamTrack::new(
                "browser".to_owned(),
                "cam".to_owned(),
                "cam".to_owned(),
                RtpCodecKind::Video,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(77),
                        ..Default::default()
                    },
                    codec: codec(MIME_TYPE_VP8, 90_000, 0, "", 96).rtp_codec,
                    ..Default::default()
                }],
            );
            pc.add_track(cam).unwrap();
        }
        Browser {
            pc,
            sender,
            connected: false,
            received: Vec::new(),
            outbox: Vec::new(),
        }
    }

    fn offer(&mut self, now: Instant) -> String {
        let offer = self.pc.create_offer(None).unwrap();

        self.pc.set_local_description(now, offer.clone()).unwrap();
        offer.sdp
    }

    fn accept(&mut self, now: Instant, answer: &str) {
        let answer = RTCSessionDescription::answer(answer.to_owned()).unwrap();
        self.pc.set_remote_description(now, answer).unwrap();
        self.drain();
    }

    fn receive(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let _ = self.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: addr(BROWSER),
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        });
        self.drain();
    }

    fn tick(&mut self, now: Instant) {
        if self.pc.poll_timeout().is_some_and(|t| t <= now) {
            let _ = self.pc.handle_timeout(now);
        }
        self.drain();
    }

    fn send(&mut self, now: Instant, pt: u8, seq: u16, payload: &[u8]) {
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: pt,
                sequence_number: seq,
                timestamp: u32::from(seq) * 160,
                ssrc: BROWSER_SSRC,
                ..Default::default()
            },
            payload: bytes::Bytes::copy_from_slice(payload),
        };
        self.pc
            .rtp_sender(self.sender)
            .unwrap()
            .write_rtp(now, packet)
            .unwrap();
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(m) = self.pc.poll_write() {
            self.outbox
                .push((m.transport.peer_addr, m.message.to_vec()));
        }
        while let Some(e) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                RTCPeerConnectionState::Connected,
            ) = e
            {
                self.connected = true;
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            if let RTCMessage::RtpPacket(_, p) = message {
                self.received.push(p);
            }
        }
    }
}

/// Moves every datagram across the wire (both ways) until both sides are quiet.
fn exchange(now: Instant, leg: &mut WebRtcTransport, browser: &mut Browser) {
    for _ in 0..50 {
        let mut moved = false;
        while let Some((to, d)) = leg.poll_transmit() {
            assert_eq!(to, addr(BROWSER), "the leg answers the browser's address");
            browser.receive(now, addr(SERVER), &d);
            moved = true;
        }
        for (to, d) in std::mem::take(&mut browser.outbox) {
            assert_eq!(to, addr(SERVER));
            leg.on_datagram(now, addr(BROWSER), &d);
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

/// Runs both sides on a fake 20 ms clock for `ms` milliseconds, as the media clock would.
fn run_for(start: &mut Instant, ms: u64, leg: &mut WebRtcTransport, browser: &mut Browser) {
    for _ in 0..ms / 20 {
        *start += Duration::from_millis(20);
        let now = *start;
        leg.on_timeout(now);
        browser.tick(now);
        exchange(now, leg, browser);
    }
}

fn connected_pair(
    preference: &[Codec],
    audio: Vec<RTCRtpCodecParameters>,
) -> (Instant, WebRtcTransport, Browser, super::LegParams, String) {
    let mut now = Instant::now();
    let mut browser = Browser::new(now, audio, false);
    let offer = browser.offer(now);
    let answered =
        WebRtcTransport::answer(&offer, addr(SERVER), None, preference, LEG_SSRC, now).unwrap();
    let mut leg = answered.transport;
    browser.accept(now, &answered.answer);
    run_for(&mut now, 2000, &mut leg, &mut browser);
    assert_eq!(leg.state(), TransportState::Connected, "the leg connects");
    assert!(browser.connected, "the browser connects");
    (now, leg, browser, answered.params, answered.answer)
}

fn audio_section(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("m=audio"))
        .take_while(|l| l.starts_with("m=audio") || !l.starts_with("m="))
        .collect()
}

#[test]
fn a_chrome_offer_is_answered_ice_lite_passive_with_g711_and_its_telephone_event() {
    let now = Instant::now();
    let answered = WebRtcTransport::answer(
        CHROME_OFFER,
        addr(SERVER),
        None,
        &[Codec::Pcmu, Codec::Pcma, Codec::Opus],
        LEG_SSRC,
        now,
    )
    .unwrap();
    let sdp = &answered.answer;
    assert!(sdp.contains("a=ice-lite"), "{sdp}");
    let audio = audio_section(sdp);
    let m = audio[0];
    let formats: Vec<&str> = m.split(' ').skip(3).collect();
    assert_eq!(
        formats,
        vec!["0", "126"],
        "PCMU (Careline's first choice among the offer's) and telephone-event/8000: {m}"
    );
    assert!(
        audio.contains(&"a=rtpmap:126 telephone-event/8000"),
        "{audio:?}"
    );
    assert!(audio.contains(&"a=setup:passive"), "{audio:?}");
    assert!(
        audio
            .iter()
            .any(|l| l.starts_with("a=candidate:") && l.contains("10.0.0.1 40000 typ host")),
        "one host candidate at the leg's socket: {audio:?}"
    );
    assert_eq!(answered.params.codec, Codec::Pcmu);
    assert_eq!(answered.params.payload_type, 0);
    let te = answered.params.telephone_event.expect("telephone-event");
    assert_eq!(
        (te.payload_type, te.clock_rate),
        (126, 8000),
        "telephone-event at G.711's rate"
    );
}

#[test]
fn a_public_address_is_announced_instead_of_the_bound_one() {
    let now = Instant::now();
    let offer = CHROME_OFFER;
    let public = "203.0.113.7".parse().unwrap();
    let answered = WebRtcTransport::answer(
        offer,
        addr(SERVER),
        Some(public),
        &[Codec::Pcmu],
        LEG_SSRC,
        now,
    )
    .unwrap();
    assert!(
        answered.answer.contains("203.0.113.7 40000 typ host"),
        "{}",
        answered.answer
    );
    assert!(!answered.answer.contains("10.0.0.1 40000"));
}

#[test]
fn opus_first_when_careline_prefers_it_with_the_48k_telephone_event() {
    let now = Instant::now();
    let offer = CHROME_OFFER;
    let answered = WebRtcTransport::answer(
        offer,
        addr(SERVER),
        None,
        &[Codec::Opus, Codec::Pcmu],
        LEG_SSRC,
        now,
    )
    .unwrap();
    assert_eq!(answered.params.codec, Codec::Opus);
    assert_eq!(answered.params.payload_type, 111);
    assert_eq!(
        answered
            .params
            .telephone_event
            .map(|t| (t.payload_type, t.clock_rate)),
        Some((110, 48_000))
    );
    assert!(
        audio_section(&answered.answer)[0].ends_with(" 111 110"),
        "{}",
        answered.answer
    );
}

#[test]
fn an_offer_without_a_codec_careline_takes_is_refused() {
    let now = Instant::now();
    let mut browser = Browser::new(now, vec![codec(MIME_TYPE_G722, 8000, 0, "", 9)], false);
    let offer = browser.offer(now);
    let err = WebRtcTransport::answer(&offer, addr(SERVER), None, &[Codec::Pcmu], 1, now)
        .err()
        .expect("refused");
    assert!(matches!(err, WebRtcError::NoAudio), "{err}");
}

#[test]
fn a_broken_offer_is_refused_without_echoing_it() {
    let now = Instant::now();
    for offer in [
        "",
        "hello 192.0.2.55",
        "v=0\r\no=- 1 1 IN IP4 192.0.2.55\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 192.0.2.55\r\nc=IN IP4 192.0.2.55 junk\r\nq=192.0.2.55\r\n",
    ] {
        let err = WebRtcTransport::answer(offer, addr(SERVER), None, &[Codec::Pcmu], 1, now)
            .err()
            .unwrap_or_else(|| panic!("{offer:?} refused"));
        let text = err.to_string();
        assert!(
            !text.contains("192.0.2.55"),
            "the error names no address: {text}"
        );
    }
}

#[test]
fn the_leg_connects_and_carries_rtp_both_ways() {
    // This scripted browser sends with its track's codec, so it offers PCMU first.
    let audio = vec![
        codec(MIME_TYPE_PCMU, 8000, 0, "", 0),
        codec(MIME_TYPE_OPUS, 48_000, 2, "minptime=10;useinbandfec=1", 111),
        codec(MIME_TYPE_TELEPHONE_EVENT, 8000, 0, "0-15", 126),
    ];
    let (mut now, mut leg, mut browser, params, _) =
        connected_pair(&[Codec::Pcmu, Codec::Opus], audio);
    assert_eq!(params.telephone_event.map(|t| t.payload_type), Some(126));
    // Browser to leg: decrypted and handed over as RTP bytes the media leg parses.
    for seq in 0..5u16 {
        browser.send(now, params.payload_type, 100 + seq, &[0xd5; 160]);
        exchange(now, &mut leg, &mut browser);
    }
    let mut got = Vec::new();
    while let Some(p) = leg.poll_rtp() {
        got.push(p);
    }
    assert_eq!(got.len(), 5, "every packet arrives once");
    for (i, bytes) in got.iter().enumerate() {
        let p = RtpPacket::parse(bytes).expect("RTP for the media leg");
        assert_eq!(p.payload_type, 0);
        assert_eq!(p.sequence, 100 + i as u16);
        assert_eq!(p.ssrc, BROWSER_SSRC);
        assert_eq!(p.payload, &[0xd5; 160][..]);
    }
    assert_eq!(leg.remote(), Some(addr(BROWSER)));
    // Leg to browser: the media leg's packet goes out encrypted and arrives as it was built.
    for seq in 0..5u16 {
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: 0,
                sequence_number: 7 + seq,
                timestamp: 1000 + u32::from(seq) * 160,
                ssrc: LEG_SSRC,
                ..Default::default()
            },
            payload: bytes::Bytes::from_static(&[0xff; 160]),
        };
        leg.send_rtp(now, &packet.marshal().unwrap());
        exchange(now, &mut leg, &mut browser);
    }
    assert_eq!(leg.send_errors(), 0);
    let got: Vec<u16> = browser
        .received
        .iter()
        .map(|p| p.header.sequence_number)
        .collect();
    assert_eq!(got, vec![7, 8, 9, 10, 11]);
    assert!(
        browser
            .received
            .iter()
            .all(|p| p.payload[..] == [0xff; 160])
    );
    // Telephone-events from RTCDTMFSender reach the leg like audio, with their own type.
    browser.send(now, 126, 200, &[5, 0x80, 0, 160]);
    exchange(now, &mut leg, &mut browser);
    let te = leg.poll_rtp().expect("the telephone-event packet");
    assert_eq!(RtpPacket::parse(&te).unwrap().payload_type, 126);
    run_for(&mut now, 200, &mut leg, &mut browser);
    assert_eq!(leg.state(), TransportState::Connected);
}

#[test]
fn nothing_is_sent_before_the_connection_is_up() {
    let now = Instant::now();
    let mut browser = Browser::new(now, chrome_audio(), false);
    let offer = browser.offer(now);
    let mut leg = WebRtcTransport::answer(&offer, addr(SERVER), None, &[Codec::Pcmu], 9, now)
        .unwrap()
        .transport;
    let packet = rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            ssrc: 9,
            ..Default::default()
        },
        payload: bytes::Bytes::from_static(&[0; 160]),
    };
    leg.send_rtp(now, &packet.marshal().unwrap());
    assert_eq!(leg.state(), TransportState::Connecting);
    assert!(
        leg.poll_transmit().is_none(),
        "an ICE-lite leg waits for the browser's checks and sends no media in clear"
    );
}

#[test]
fn a_browser_that_disappears_ends_the_leg() {
    let (mut now, mut leg, _browser, _, _) = connected_pair(&[Codec::Pcmu], chrome_audio());
    let t0 = now;
    // No datagram from the browser again: ICE consent (RFC 7675) runs out.
    let mut states = vec![leg.state()];
    for _ in 0..(60_000 / 20) {
        now += Duration::from_millis(20);
        leg.on_timeout(now);
        while leg.poll_transmit().is_some() {}
        if states.last() != Some(&leg.state()) {
            states.push(leg.state());
        }
        if leg.state() == TransportState::Failed {
            break;
        }
    }
    // Consent is lost after about 5 s of silence and the connection fails after about 30:
    // the call then ends (LegEvent::ConnectionLost) rather than waiting for ever.
    assert!(now - t0 < Duration::from_secs(45), "{:?}", now - t0);
    assert_eq!(
        states,
        vec![
            TransportState::Connected,
            TransportState::Disconnected,
            TransportState::Failed
        ]
    );
}

#[test]
fn video_in_the_offer_is_declined_and_audio_still_connects() {
    let mut now = Instant::now();
    let mut browser = Browser::new(now, chrome_audio(), true);
    let offer = browser.offer(now);
    assert!(offer.contains("m=video"));
    let answered =
        WebRtcTransport::answer(&offer, addr(SERVER), None, &[Codec::Pcmu], LEG_SSRC, now).unwrap();
    let video: Vec<&str> = answered
        .answer
        .lines()
        .filter(|l| l.starts_with("m=video"))
        .collect();
    assert!(
        video.iter().all(|m| m.starts_with("m=video 0 ")),
        "video declined (port 0): {video:?}"
    );
    let mut leg = answered.transport;
    browser.accept(now, &answered.answer);
    run_for(&mut now, 2000, &mut leg, &mut browser);
    assert_eq!(leg.state(), TransportState::Connected);
}

#[test]
fn the_offers_audio_formats_are_read_in_order_with_static_types_and_fmtp() {
    let formats = super::offered_audio(CHROME_OFFER);
    let summary: Vec<(u8, &str, u32)> = formats
        .iter()
        .map(|f| (f.pt, f.name.as_str(), f.rate))
        .collect();
    assert_eq!(
        summary,
        vec![
            (111, "opus", 48_000),
            (63, "red", 48_000),
            (9, "G722", 8000),
            (0, "PCMU", 8000),
            (8, "PCMA", 8000),
            (13, "CN", 8000),
            (110, "telephone-event", 48_000),
            (126, "telephone-event", 8000),
        ]
    );
    assert_eq!(formats[0].fmtp, "minptime=10;useinbandfec=1");
    // Static types without rtpmap (RFC 3551) are known by number; a video section is not read.
    let bare = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 8\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
    let names: Vec<String> = super::offered_audio(bare)
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, vec!["PCMU", "PCMA"]);
}

#[test]
fn dropping_a_format_removes_it_from_the_audio_section_only() {
    let munged = super::without_formats(CHROME_OFFER, &[110]);
    assert!(munged.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 126\r\n"));
    assert!(!munged.contains("a=rtpmap:110 "));
    assert!(munged.contains("a=rtpmap:126 telephone-event/8000\r\n"));
    // Every other line is kept byte for byte, CRLFs included.
    let kept = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("110") && !l.starts_with("m=audio"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(kept(&munged), kept(CHROME_OFFER));
    assert_eq!(
        munged.len(),
        CHROME_OFFER.len() - " 110".len() - "a=rtpmap:110 telephone-event/48000\r\n".len()
    );
}
