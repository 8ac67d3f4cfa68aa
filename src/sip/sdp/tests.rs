use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn local() -> LocalMedia {
    LocalMedia {
        address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        rtp_port: 40000,
        codecs: vec![Codec::Pcmu, Codec::Pcma, Codec::Opus],
        telephone_event: true,
        ptime_ms: 20,
        session_id: 42,
        session_version: 1,
        srtp: None,
    }
}

fn local_with(codecs: &[Codec]) -> LocalMedia {
    LocalMedia {
        codecs: codecs.to_vec(),
        ..local()
    }
}

fn crlf(text: &str) -> String {
    text.lines().map(|l| format!("{l}\r\n")).collect()
}

fn sock(text: &str) -> Option<SocketAddr> {
    Some(text.parse().expect("test socket address"))
}

fn ok(offer: &str, local: &LocalMedia) -> (String, Negotiated) {
    match answer(offer, local) {
        Ok(done) => done,
        Err(e) => panic!("offer was refused: {e}\n{offer}"),
    }
}

/// The `m=` lines of an SDP body.
fn m_lines(sdp: &str) -> Vec<&str> {
    sdp.lines().filter(|l| l.starts_with("m=")).collect()
}

fn has_line(sdp: &str, wanted: &str) -> bool {
    sdp.split("\r\n").any(|l| l == wanted)
}

const SIPP_DEFAULT: &str = "v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
";

const SIPP_IVR: &str = "v=0
o=sipp 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
";

/// Laid out as baresip 1.0 writes offers (a=tool, c= repeated at media level, rtcp-rsize,
/// ssrc, label, mid, minptime), with telephone-event at both 8000 and 48000 Hz.
const BARESIP: &str = "v=0
o=- 1597251372 3165391384 IN IP4 192.0.2.33
s=-
c=IN IP4 192.0.2.33
t=0 0
a=tool:baresip 1.0.0
m=audio 10276 RTP/AVP 96 0 8 101 102
c=IN IP4 192.0.2.33
b=AS:128
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1;useinbandfec=1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtpmap:102 telephone-event/48000
a=fmtp:102 0-15
a=sendrecv
a=label:1
a=rtcp-rsize
a=ssrc:1780419526 cname:sip:alice@example.com
a=mid:0
a=minptime:20
a=ptime:20
";

/// Linphone style: session-level rtcp-xr/record, many codecs, three telephone-events at
/// different rates, a=rtcp and rtcp-fb on plain RTP/AVP.
const LINPHONE: &str = "v=0
o=alice 3521 1853 IN IP4 192.0.2.20
s=Talk
c=IN IP4 192.0.2.20
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
a=record:off
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp:7079
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
";

const PCMA_ONLY: &str = "v=0
o=- 1 1 IN IP4 198.51.100.7
s=call
c=IN IP4 198.51.100.7
t=0 0
m=audio 4000 RTP/AVP 8
";

const OPUS_ONLY: &str = "v=0
o=- 7 7 IN IP4 198.51.100.8
s=-
c=IN IP4 198.51.100.8
t=0 0
m=audio 5004 RTP/AVP 107
a=rtpmap:107 OPUS/48000
a=fmtp:107 maxplaybackrate=16000
";

const VIDEO_AND_AUDIO: &str = "v=0
o=bob 2890844526 2890844527 IN IP4 192.0.2.44
s=-
c=IN IP4 192.0.2.44
t=0 0
m=video 51372 RTP/AVP 99 31
a=rtpmap:99 H264/90000
a=fmtp:99 profile-level-id=42e01f
m=audio 49170 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
";

const G729_ONLY: &str = "v=0
o=cisco 1 1 IN IP4 192.0.2.55
s=SIP Call
c=IN IP4 192.0.2.55
t=0 0
m=audio 16384 RTP/AVP 18 101
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:101 telephone-event/8000
";

const SAVP: &str = "v=0
o=- 3 3 IN IP4 192.0.2.66
s=-
c=IN IP4 192.0.2.66
t=0 0
m=audio 5006 RTP/SAVP 0
a=rtpmap:0 PCMU/8000
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz
";

fn reoffer(direction_line: &str, address: &str) -> String {
    format!(
        "v=0
o=sipp 53655765 2353687638 IN IP4 127.0.0.1
s=-
c=IN IP4 {address}
t=0 0
m=audio 6000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
{direction_line}
"
    )
}

// --- real-world offers -------------------------------------------------------------

#[test]
fn sipp_default_offer_gets_pcmu() {
    let (sdp, n) = ok(&crlf(SIPP_DEFAULT), &local());
    assert_eq!(n.codec, Codec::Pcmu);
    assert_eq!(n.payload_type, 0);
    assert_eq!(n.telephone_event, None);
    assert_eq!(n.ptime_ms, 20);
    assert_eq!(n.remote_rtp, sock("127.0.0.1:6000"));
    assert_eq!(n.remote_rtcp, sock("127.0.0.1:6001"));
    assert_eq!(n.remote_direction, Direction::SendRecv);
    assert_eq!(n.local_direction, Direction::SendRecv);
    assert!(n.we_send() && n.we_receive() && !n.on_hold());
    assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 0"]);
    assert!(!sdp.contains("telephone-event"));
}

#[test]
fn sipp_ivr_offer_gets_exact_answer() {
    let (sdp, n) = ok(&crlf(SIPP_IVR), &local());
    let expected = "v=0\r\n\
        o=careline 42 1 IN IP4 192.0.2.10\r\n\
        s=careline\r\n\
        c=IN IP4 192.0.2.10\r\n\
        t=0 0\r\n\
        m=audio 40000 RTP/AVP 0 101\r\n\
        a=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-15\r\n\
        a=ptime:20\r\n\
        a=sendrecv\r\n";
    assert_eq!(sdp, expected);
    assert_eq!(
        n,
        Negotiated {
            codec: Codec::Pcmu,
            payload_type: 0,
            telephone_event: Some(TelephoneEvent {
                payload_type: 101,
                clock_rate: 8000
            }),
            ptime_ms: 20,
            remote_rtp: sock("127.0.0.1:6000"),
            remote_rtcp: sock("127.0.0.1:6001"),
            remote_direction: Direction::SendRecv,
            local_direction: Direction::SendRecv,
            srtp: None,
        }
    );
}

#[test]
fn baresip_offer_gets_opus_and_48k_events_when_opus_accepted() {
    let (sdp, n) = ok(&crlf(BARESIP), &local());
    // The caller's order wins over Careline's (PCMU first in local()).
    assert_eq!(n.codec, Codec::Opus);
    assert_eq!(n.payload_type, 96);
    assert_eq!(
        n.telephone_event,
        Some(TelephoneEvent {
            payload_type: 102,
            clock_rate: 48000
        })
    );
    assert_eq!(n.remote_rtp, sock("192.0.2.33:10276"));
    assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 96 102"]);
    assert!(has_line(&sdp, "a=rtpmap:96 opus/48000/2"));
    assert!(has_line(&sdp, "a=fmtp:96 useinbandfec=1"));
    assert!(has_line(&sdp, "a=rtpmap:102 telephone-event/48000"));
    assert!(has_line(&sdp, "a=fmtp:102 0-15"));
    assert!(
        !sdp.contains("telephone-event/8000"),
        "only one event type is answered"
    );
}

#[test]
fn baresip_offer_gets_pcmu_and_8k_events_without_opus() {
    let (sdp, n) = ok(&crlf(BARESIP), &local_with(&[Codec::Pcma, Codec::Pcmu]));
    assert_eq!(n.codec, Codec::Pcmu, "offer order: 96 0 8");
    assert_eq!(n.payload_type, 0);
    assert_eq!(
        n.telephone_event,
        Some(TelephoneEvent {
            payload_type: 101,
            clock_rate: 8000
        })
    );
    assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 0 101"]);
}

#[test]
fn linphone_offer_matches_event_rate_to_codec() {
    let (sdp, n) = ok(&crlf(LINPHONE), &local());
    assert_eq!((n.codec, n.payload_type), (Codec::Opus, 96));
    assert_eq!(
        n.telephone_event,
        Some(TelephoneEvent {
            payload_type: 101,
            clock_rate: 48000
        })
    );
    assert_eq!(n.remote_rtcp, sock("192.0.2.20:7079"));
    assert!(has_line(&sdp, "a=fmtp:96 useinbandfec=1"));

    let (sdp, n) = ok(&crlf(LINPHONE), &local_with(&[Codec::Pcma]));
    assert_eq!((n.codec, n.payload_type), (Codec::Pcma, 8));
    assert_eq!(
        n.telephone_event,
        Some(TelephoneEvent {
            payload_type: 100,
            clock_rate: 8000
        })
    );
    assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 8 100"]);
}

#[test]
fn pcma_only_caller_without_rtpmap() {
    let (sdp, n) = ok(&crlf(PCMA_ONLY), &local());
    assert_eq!((n.codec, n.payload_type), (Codec::Pcma, 8));
    assert_eq!(n.telephone_event, None);
    assert_eq!(n.remote_rtp, sock("198.51.100.7:4000"));
    assert!(has_line(&sdp, "a=rtpmap:8 PCMA/8000"));
    assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 8"]);
}

#[test]
fn opus_only_caller_uppercase_name_without_channel_count() {
    let (sdp, n) = ok(&crlf(OPUS_ONLY), &local());
    assert_eq!((n.codec, n.payload_type), (Codec::Opus, 107));
    assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 107"]);
    assert!(has_line(&sdp, "a=rtpmap:107 opus/48000/2"));
    assert!(
        !sdp.contains("a=fmtp:107"),
        "no useinbandfec offered, none echoed"
    );
}

#[test]
fn opus_with_one_channel_or_wrong_rate_is_not_opus() {
    let offer = crlf(&OPUS_ONLY.replace("OPUS/48000", "opus/48000/1"));
    match answer(&offer, &local()) {
        Err(SdpError::NoAcceptableCodec { offered, .. }) => {
            assert!(offered.contains("opus/48000/1 (PT 107)"), "{offered}")
        }
        other => panic!("{other:?}"),
    }
    let offer = crlf(&OPUS_ONLY.replace("OPUS/48000", "opus/16000"));
    assert!(matches!(
        answer(&offer, &local()),
        Err(SdpError::NoAcceptableCodec { .. })
    ));
}

#[test]
fn opus_only_caller_refused_when_careline_has_no_opus() {
    let err = answer(&crlf(OPUS_ONLY), &local_with(&[Codec::Pcmu, Codec::Pcma]))
        .expect_err("no common codec");
    assert_eq!(
        err,
        SdpError::NoAcceptableCodec {
            offered: "opus/48000/2 (PT 107)".to_string(),
            accepted: "PCMU/8000, PCMA/8000".to_string(),
        }
    );
    assert_eq!(err.sip_status(), 488);
}

#[test]
fn telephone_event_at_pt_96() {
    let offer = "v=0
o=- 5 5 IN IP4 192.0.2.77
s=-
c=IN IP4 192.0.2.77
t=0 0
m=audio 30000 RTP/AVP 0 96
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-16
";
    let (sdp, n) = ok(&crlf(offer), &local());
    assert_eq!(
        n.telephone_event,
        Some(TelephoneEvent {
            payload_type: 96,
            clock_rate: 8000
        })
    );
    assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 0 96"]);
    assert!(has_line(&sdp, "a=rtpmap:96 telephone-event/8000"));
    assert!(has_line(&sdp, "a=fmtp:96 0-15"));
}

#[test]
fn telephone_event_at_48000_with_opus() {
    let offer = "v=0
o=- 5 5 IN IP4 192.0.2.77
s=-
c=IN IP4 192.0.2.77
t=0 0
m=audio 30000 RTP/AVP 109 110
a=rtpmap:109 opus/48000/2
a=rtpmap:110 telephone-event/48000
";
    let (sdp, n) = ok(&crlf(offer), &local());
    assert_eq!((n.codec, n.payload_type), (Codec::Opus, 109));
    assert_eq!(
        n.telephone_event,
        Some(TelephoneEvent {
            payload_type: 110,
            clock_rate: 48000
        })
    );
    assert!(has_line(&sdp, "a=rtpmap:110 telephone-event/48000"));
}

#[test]
fn telephone_event_of_other_rate_is_still_taken_when_only_one() {
    // PCMU with only a 48 kHz event type: RFC 4733 prefers matching clocks, but DTMF with
    // a mismatched clock beats no DTMF.
    let offer = crlf(&SIPP_IVR.replace("telephone-event/8000", "telephone-event/48000"));
    let (_, n) = ok(&offer, &local());
    assert_eq!(
        n.telephone_event,
        Some(TelephoneEvent {
            payload_type: 101,
            clock_rate: 48000
        })
    );
}

#[test]
fn telephone_event_not_answered_when_disabled_locally() {
    let local = LocalMedia {
        telephone_event: false,
        ..local()
    };
    let (sdp, n) = ok(&crlf(SIPP_IVR), &local);
    assert_eq!(n.telephone_event, None);
    assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 0"]);
    assert!(!sdp.contains("telephone-event"));
}

#[test]
fn telephone_event_not_listed_in_m_line_is_not_offered() {
    let offer = crlf(&SIPP_IVR.replace("RTP/AVP 0 101", "RTP/AVP 0"));
    let (_, n) = ok(&offer, &local());
    assert_eq!(n.telephone_event, None);
}

#[test]
fn video_then_audio_rejects_video_in_place() {
    let (sdp, n) = ok(&crlf(VIDEO_AND_AUDIO), &local());
    assert_eq!(
        m_lines(&sdp),
        ["m=video 0 RTP/AVP 99 31", "m=audio 40000 RTP/AVP 0 101"]
    );
    assert_eq!(n.remote_rtp, sock("192.0.2.44:49170"));
    // The audio attributes follow the audio m= line, not the video one.
    let audio_at = sdp.find("m=audio").expect("audio line");
    assert!(sdp[audio_at..].contains("a=rtpmap:0 PCMU/8000"));
    assert!(!sdp[..audio_at].contains("a="));
}

#[test]
fn second_audio_and_unknown_media_are_rejected_with_port_0() {
    let offer = "v=0
o=- 9 9 IN IP4 192.0.2.88
s=-
c=IN IP4 192.0.2.88
t=0 0
m=audio 20000 RTP/AVP 0
m=audio 20002 RTP/AVP 8
m=x-careline-test 20004 TCP/FOO *
m=image 20006 udptl t38
";
    let (sdp, n) = ok(&crlf(offer), &local());
    assert_eq!(n.remote_rtp, sock("192.0.2.88:20000"));
    assert_eq!(
        m_lines(&sdp),
        [
            "m=audio 40000 RTP/AVP 0",
            "m=audio 0 RTP/AVP 8",
            "m=x-careline-test 0 TCP/FOO *",
            "m=image 0 udptl t38",
        ]
    );
}

#[test]
fn first_audio_without_common_codec_falls_through_to_second() {
    let offer = "v=0
o=- 9 9 IN IP4 192.0.2.88
s=-
c=IN IP4 192.0.2.88
t=0 0
m=audio 20000 RTP/AVP 18
m=audio 20002 RTP/AVP 8
";
    let (sdp, n) = ok(&crlf(offer), &local());
    assert_eq!(
        (n.codec, n.remote_rtp),
        (Codec::Pcma, sock("192.0.2.88:20002"))
    );
    assert_eq!(
        m_lines(&sdp),
        ["m=audio 0 RTP/AVP 18", "m=audio 40000 RTP/AVP 8"]
    );
}

#[test]
fn g729_only_is_refused_naming_g729() {
    let err = answer(&crlf(G729_ONLY), &local()).expect_err("G.729 only");
    let SdpError::NoAcceptableCodec { offered, accepted } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(offered, "G729/8000 (PT 18), telephone-event/8000 (PT 101)");
    assert_eq!(accepted, "PCMU/8000, PCMA/8000, opus/48000/2");
    let message = err.to_string();
    assert!(
        message.contains("G729") && message.contains("PCMU/8000"),
        "{message}"
    );
    assert_eq!(err.sip_status(), 488);
}

#[test]
fn g729_static_without_rtpmap_is_named_too() {
    let offer = crlf(&G729_ONLY.replace("a=rtpmap:18 G729/8000\n", ""));
    let offer = offer.replace("a=rtpmap:18 G729/8000\r\n", "");
    match answer(&offer, &local()) {
        Err(SdpError::NoAcceptableCodec { offered, .. }) => {
            assert!(offered.starts_with("G729/8000 (PT 18)"), "{offered}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rtp_savp_is_refused_while_srtp_is_off_naming_the_setting() {
    let err = answer(&crlf(SAVP), &local()).expect_err("SRTP off");
    let SdpError::Unsupported(message) = &err else {
        panic!("{err:?}");
    };
    assert!(message.contains("RTP/SAVP"), "{message}");
    assert!(message.contains("[rtp] srtp"), "{message}");
    assert_eq!(err.sip_status(), 488);
    let webrtc = crlf(&SAVP.replace("RTP/SAVP", "UDP/TLS/RTP/SAVPF"));
    assert!(
        matches!(answer(&webrtc, &local()), Err(SdpError::Unsupported(m)) if m.contains("UDP/TLS/RTP/SAVPF"))
    );
}

#[test]
fn savp_with_avp_fallback_stream_takes_the_avp_one() {
    let offer = format!("{}m=audio 5008 RTP/AVP 0\r\n", crlf(SAVP));
    let (sdp, n) = ok(&offer, &local());
    assert_eq!(n.remote_rtp, sock("192.0.2.66:5008"));
    assert_eq!(
        m_lines(&sdp),
        ["m=audio 0 RTP/SAVP 0", "m=audio 40000 RTP/AVP 0"]
    );
}

#[test]
fn rtp_avpf_is_accepted_and_echoed() {
    let offer = crlf(&SIPP_IVR.replace("RTP/AVP", "RTP/AVPF"));
    let (sdp, _) = ok(&offer, &local());
    assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVPF 0 101"]);
}

#[test]
fn audio_port_zero_is_no_audio() {
    let offer = crlf(&SIPP_IVR.replace("m=audio 6000", "m=audio 0"));
    let err = answer(&offer, &local()).expect_err("port 0");
    assert_eq!(err, SdpError::NoAudio);
    assert_eq!(err.sip_status(), 488);
}

#[test]
fn no_audio_at_all_is_no_audio() {
    let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                 m=video 5000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n";
    assert_eq!(answer(offer, &local()), Err(SdpError::NoAudio));
    let bare = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n";
    assert_eq!(answer(bare, &local()), Err(SdpError::NoAudio));
}

#[test]
fn garbage_empty_and_truncated_are_parse_errors() {
    let cases: Vec<String> = vec![
        String::new(),
        "\r\n\r\n  \n".to_string(),
        "hello world".to_string(),
        "INVITE sip:bob@example.com SIP/2.0\r\n".to_string(),
        "{\"sdp\": true}".to_string(),
        "v=1\r\no=- 1 1 IN IP4 192.0.2.1\r\n".to_string(),
        "o=- 1 1 IN IP4 192.0.2.1\r\nv=0\r\n".to_string(),
        "v=0\r\n".to_string(),
        "v=0\r\no=sipp 5365".to_string(),
        "\u{0}\u{1}\u{2}=\u{ff}".to_string(),
        "ä=0".to_string(),
    ];
    let ivr = crlf(SIPP_IVR);
    let truncations = [
        ivr.find("o=sipp").map(|i| i + 10),   // inside o=
        ivr.find("RTP/AVP").map(|i| i + 4),   // m=audio 6000 RTP/
        ivr.find("m=audio 6").map(|i| i + 9), // m=audio 6
        ivr.find("RTP/AVP").map(|i| i + 7),   // m= without a format
    ];
    let mut all = cases;
    for cut in truncations {
        let cut = cut.expect("marker present in SIPP_IVR");
        all.push(ivr[..cut].to_string());
    }
    for input in &all {
        match answer(input, &local()) {
            Err(err @ SdpError::Parse(_)) => assert_eq!(err.sip_status(), 400),
            other => panic!("{input:?} gave {other:?}"),
        }
    }
}

#[test]
fn body_must_start_with_v0() {
    let no_version = crlf(&SIPP_DEFAULT.replace("v=0\n", ""));
    match answer(&no_version, &local()) {
        Err(SdpError::Parse(m)) => assert!(m.contains("must start with `v=0`"), "{m}"),
        other => panic!("{other:?}"),
    }
    let late_version = format!("s=0\r\n{}", crlf(SIPP_DEFAULT));
    assert!(matches!(
        answer(&late_version, &local()),
        Err(SdpError::Parse(_))
    ));
}

#[test]
fn missing_connection_for_audio_is_parse_error() {
    let offer = crlf(&SIPP_DEFAULT.replace("c=IN IP4 127.0.0.1\n", ""));
    match answer(&offer, &local()) {
        Err(SdpError::Parse(m)) => assert!(m.contains("c="), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_connection_lines() {
    let not_ip = crlf(&SIPP_DEFAULT.replace("c=IN IP4 127.0.0.1", "c=IN IP4 300.1.1.1"));
    assert!(matches!(answer(&not_ip, &local()), Err(SdpError::Parse(_))));
    let short = crlf(&SIPP_DEFAULT.replace("c=IN IP4 127.0.0.1", "c=IN IP4"));
    assert!(matches!(answer(&short, &local()), Err(SdpError::Parse(_))));
    let host = crlf(&SIPP_DEFAULT.replace("c=IN IP4 127.0.0.1", "c=IN IP4 pbx.example.com"));
    match answer(&host, &local()) {
        Err(SdpError::Unsupported(m)) => assert!(m.contains("pbx.example.com"), "{m}"),
        other => panic!("{other:?}"),
    }
    let atm = crlf(&SIPP_DEFAULT.replace("c=IN IP4 127.0.0.1", "c=ATM NSAP 47.0091"));
    assert!(matches!(
        answer(&atm, &local()),
        Err(SdpError::Unsupported(_))
    ));
}

// --- hold and unhold re-offers -----------------------------------------------------

#[test]
fn reoffer_sendonly_is_hold_answered_recvonly() {
    let (sdp, n) = ok(&crlf(&reoffer("a=sendonly", "127.0.0.1")), &local());
    assert_eq!(n.remote_direction, Direction::SendOnly);
    assert_eq!(n.local_direction, Direction::RecvOnly);
    assert!(n.on_hold());
    assert!(!n.we_send());
    assert!(n.we_receive());
    assert_eq!(n.remote_rtp, sock("127.0.0.1:6000"));
    assert!(has_line(&sdp, "a=recvonly"));
    assert!(!sdp.contains("a=sendrecv"));
}

#[test]
fn reoffer_inactive_is_answered_inactive() {
    let (sdp, n) = ok(&crlf(&reoffer("a=inactive", "127.0.0.1")), &local());
    assert_eq!(n.remote_direction, Direction::Inactive);
    assert_eq!(n.local_direction, Direction::Inactive);
    assert!(n.on_hold() && !n.we_send() && !n.we_receive());
    assert!(has_line(&sdp, "a=inactive"));
}

#[test]
fn reoffer_zero_address_is_old_style_hold() {
    let (sdp, n) = ok(&crlf(&reoffer("a=sendrecv", "0.0.0.0")), &local());
    assert_eq!(n.remote_rtp, None);
    assert_eq!(n.remote_rtcp, None);
    assert_eq!(n.remote_direction, Direction::SendOnly);
    assert_eq!(n.local_direction, Direction::RecvOnly);
    assert!(n.on_hold() && !n.we_send() && n.we_receive());
    assert!(has_line(&sdp, "a=recvonly"));
    // Careline still gives its own real address, so unhold needs no new answer address.
    assert!(has_line(&sdp, "c=IN IP4 192.0.2.10"));

    let (sdp, n) = ok(&crlf(&reoffer("a=inactive", "0.0.0.0")), &local());
    assert_eq!(n.local_direction, Direction::Inactive);
    assert!(has_line(&sdp, "a=inactive"));

    let (_, n) = ok(&crlf(&reoffer("a=recvonly", "0.0.0.0")), &local());
    assert_eq!(n.remote_direction, Direction::Inactive);
}

#[test]
fn reoffer_unhold_restores_sendrecv() {
    let (sdp, n) = ok(&crlf(&reoffer("a=sendrecv", "127.0.0.1")), &local());
    assert!(!n.on_hold() && n.we_send() && n.we_receive());
    assert!(has_line(&sdp, "a=sendrecv"));
    // No direction attribute at all also means sendrecv (RFC 3264 §5.1).
    let (_, n) = ok(&crlf(&reoffer("", "127.0.0.1")), &local());
    assert_eq!(n.remote_direction, Direction::SendRecv);
}

#[test]
fn recvonly_offer_is_answered_sendonly() {
    let (sdp, n) = ok(&crlf(&reoffer("a=recvonly", "127.0.0.1")), &local());
    assert_eq!(n.local_direction, Direction::SendOnly);
    assert!(n.we_send() && !n.we_receive() && !n.on_hold());
    assert!(has_line(&sdp, "a=sendonly"));
}

#[test]
fn session_level_direction_applies_unless_media_overrides() {
    let session_only = crlf(&SIPP_DEFAULT.replace("t=0 0", "t=0 0\na=sendonly"));
    let (_, n) = ok(&session_only, &local());
    assert_eq!(n.remote_direction, Direction::SendOnly);
    let both = crlf(&format!(
        "{}a=sendrecv\n",
        SIPP_DEFAULT.replace("t=0 0", "t=0 0\na=sendonly")
    ));
    let (_, n) = ok(&both, &local());
    assert_eq!(n.remote_direction, Direction::SendRecv);
}

#[test]
fn ipv6_unspecified_address_is_hold_too() {
    let offer = crlf(&SIPP_DEFAULT.replace("c=IN IP4 127.0.0.1", "c=IN IP6 ::"));
    let (_, n) = ok(&offer, &local());
    assert_eq!(n.remote_rtp, None);
    assert!(n.on_hold());
}

// --- attributes and syntax variants ------------------------------------------------

#[test]
fn rtcp_attribute_port_and_address() {
    let port_only = crlf(&format!("{SIPP_DEFAULT}a=rtcp:6101\n"));
    assert_eq!(
        ok(&port_only, &local()).1.remote_rtcp,
        sock("127.0.0.1:6101")
    );
    let with_addr = crlf(&format!("{SIPP_DEFAULT}a=rtcp:6101 IN IP4 192.0.2.99\n"));
    assert_eq!(
        ok(&with_addr, &local()).1.remote_rtcp,
        sock("192.0.2.99:6101")
    );
    let bad = crlf(&format!("{SIPP_DEFAULT}a=rtcp:notaport\n"));
    assert_eq!(ok(&bad, &local()).1.remote_rtcp, sock("127.0.0.1:6001"));
    let top = crlf(&SIPP_DEFAULT.replace("audio 6000", "audio 65535"));
    let n = ok(&top, &local()).1;
    assert_eq!(
        (n.remote_rtp, n.remote_rtcp),
        (sock("127.0.0.1:65535"), None)
    );
}

#[test]
fn ptime_30_is_taken_and_answered() {
    let offer = crlf(&SIPP_IVR.replace("a=ptime:20", "a=ptime:30"));
    let (sdp, n) = ok(&offer, &local());
    assert_eq!(n.ptime_ms, 30);
    assert!(has_line(&sdp, "a=ptime:30"));
    assert!(!has_line(&sdp, "a=ptime:20"));
}

#[test]
fn ptime_variants() {
    let with = |line: &str| {
        let offer = crlf(&format!("{SIPP_DEFAULT}{line}\n"));
        ok(&offer, &local()).1.ptime_ms
    };
    assert_eq!(with(""), 20);
    assert_eq!(with("a=ptime:40"), 40);
    assert_eq!(with("a=ptime:20.0"), 20);
    assert_eq!(with("a=ptime:0"), 20);
    assert_eq!(with("a=ptime:99999"), 20);
    assert_eq!(with("a=ptime:abc"), 20);
    assert_eq!(with("a=maxptime:150"), 20);
    assert_eq!(with("a=maxptime:150\na=ptime:60"), 60);
    // Session-level ptime (not where RFC 8866 puts it, but some UAs do) as a fallback.
    let offer = crlf(&SIPP_DEFAULT.replace("t=0 0", "t=0 0\na=ptime:10"));
    assert_eq!(ok(&offer, &local()).1.ptime_ms, 10);
}

#[test]
fn lf_only_cr_only_and_crlf_negotiate_the_same() {
    let (lf_sdp, lf) = ok(SIPP_IVR, &local());
    let (crlf_sdp, with_crlf) = ok(&crlf(SIPP_IVR), &local());
    let (_, cr) = ok(&SIPP_IVR.replace('\n', "\r"), &local());
    assert_eq!(lf, with_crlf);
    assert_eq!(lf, cr);
    assert_eq!(lf_sdp, crlf_sdp);
    // Careline always writes CRLF (RFC 8866 §5).
    assert!(lf_sdp.ends_with("\r\n"));
    assert!(!lf_sdp.replace("\r\n", "").contains('\n'));
    assert!(!lf_sdp.replace("\r\n", "").contains('\r'));
}

#[test]
fn tolerates_missing_t_and_s_misordered_lines_blank_lines_and_unknown_types() {
    let offer = "v=0\n\
        o=gw 123456789012345678901234567890 1 IN IP4 192.0.2.5\n\
        b=AS:64\n\
        a=sendrecv\n\
        c=IN IP4 192.0.2.5 \n\
        \n\
        y=0100000001\n\
        m=audio 9000 RTP/AVP 8 0\n\
        a=rtpmap:8 PCMA/8000\n\
        b=TIAS:64000\n";
    let (_, n) = ok(offer, &local());
    assert_eq!(
        (n.codec, n.remote_rtp),
        (Codec::Pcma, sock("192.0.2.5:9000"))
    );
}

#[test]
fn connection_only_at_media_level_and_media_overrides_session() {
    let media_only = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 7000 RTP/AVP 0\r\nc=IN IP4 192.0.2.2\r\n";
    assert_eq!(
        ok(media_only, &local()).1.remote_rtp,
        sock("192.0.2.2:7000")
    );
    let both = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
        m=audio 7000 RTP/AVP 0\r\nc=IN IP4 192.0.2.3/127\r\n";
    assert_eq!(ok(both, &local()).1.remote_rtp, sock("192.0.2.3:7000"));
}

#[test]
fn pcmu_at_dynamic_pt_by_rtpmap_and_rtpmap_overrides_static() {
    let dynamic = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
        m=audio 7000 RTP/AVP 97\r\na=rtpmap:97 pcmu/8000/1\r\n";
    let (sdp, n) = ok(dynamic, &local());
    assert_eq!((n.codec, n.payload_type), (Codec::Pcmu, 97));
    assert!(has_line(&sdp, "a=rtpmap:97 PCMU/8000"));
    let relabelled = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
        m=audio 7000 RTP/AVP 0\r\na=rtpmap:0 G729/8000\r\n";
    assert!(matches!(
        answer(relabelled, &local()),
        Err(SdpError::NoAcceptableCodec { .. })
    ));
}

#[test]
fn caller_preference_wins_over_local_order() {
    let offer = crlf(&PCMA_ONLY.replace("RTP/AVP 8", "RTP/AVP 8 0"));
    let (_, n) = ok(&offer, &local_with(&[Codec::Pcmu, Codec::Pcma]));
    assert_eq!(n.codec, Codec::Pcma);
    let (_, n) = ok(&offer, &local_with(&[Codec::Pcmu]));
    assert_eq!(n.codec, Codec::Pcmu, "a codec Careline lacks is skipped");
}

#[test]
fn ipv6_offer_and_ipv6_answer() {
    let offer = "v=0
o=- 8 8 IN IP6 2001:db8::10
s=-
c=IN IP6 2001:db8::10
t=0 0
m=audio 6000 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
a=rtcp:6001 IN IP6 2001:db8::11
";
    let local = LocalMedia {
        address: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20)),
        ..local()
    };
    let (sdp, n) = ok(&crlf(offer), &local);
    assert_eq!(n.remote_rtp, sock("[2001:db8::10]:6000"));
    assert_eq!(n.remote_rtcp, sock("[2001:db8::11]:6001"));
    assert!(has_line(&sdp, "o=careline 42 1 IN IP6 2001:db8::20"));
    assert!(has_line(&sdp, "c=IN IP6 2001:db8::20"));
    let back = read_answer(&sdp, &local).expect("own answer reads back");
    assert_eq!(back.remote_rtp, sock("[2001:db8::20]:40000"));
}

#[test]
fn session_version_and_id_are_written() {
    let local = LocalMedia {
        session_id: 7,
        session_version: 9,
        ..local()
    };
    let (sdp, _) = ok(&crlf(SIPP_DEFAULT), &local);
    assert!(has_line(&sdp, "o=careline 7 9 IN IP4 192.0.2.10"));
    assert!(has_line(&offer(&local), "o=careline 7 9 IN IP4 192.0.2.10"));
}

#[test]
fn empty_local_codec_list_refuses_everything() {
    match answer(&crlf(SIPP_IVR), &local_with(&[])) {
        Err(SdpError::NoAcceptableCodec { accepted, .. }) => {
            assert!(accepted.contains("none configured"), "{accepted}")
        }
        other => panic!("{other:?}"),
    }
    let text = offer(&local_with(&[]));
    assert_eq!(m_lines(&text), ["m=audio 0 RTP/AVP 0"]);
    assert_eq!(read_answer(&text, &local()), Err(SdpError::NoAudio));
}

#[test]
fn oversized_body_is_refused() {
    let mut big = crlf(SIPP_DEFAULT);
    while big.len() <= MAX_SDP_LEN {
        big.push_str("a=x-padding:0123456789abcdef0123456789abcdef\r\n");
    }
    assert!(matches!(answer(&big, &local()), Err(SdpError::Parse(_))));
}

// --- UAC side ------------------------------------------------------------------------

#[test]
fn offer_text_is_exact() {
    let local = LocalMedia {
        codecs: vec![Codec::Opus, Codec::Pcmu, Codec::Pcma, Codec::Opus],
        ..local()
    };
    let expected = "v=0\r\n\
        o=careline 42 1 IN IP4 192.0.2.10\r\n\
        s=careline\r\n\
        c=IN IP4 192.0.2.10\r\n\
        t=0 0\r\n\
        m=audio 40000 RTP/AVP 111 0 8 101 110\r\n\
        a=rtpmap:111 opus/48000/2\r\n\
        a=fmtp:111 useinbandfec=1\r\n\
        a=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-16\r\n\
        a=rtpmap:110 telephone-event/48000\r\n\
        a=fmtp:110 0-16\r\n\
        a=ptime:20\r\n\
        a=sendrecv\r\n";
    assert_eq!(offer(&local), expected);
}

#[test]
fn offer_without_opus_has_no_48k_events_and_without_events_none() {
    let text = offer(&local_with(&[Codec::Pcma]));
    assert_eq!(m_lines(&text), ["m=audio 40000 RTP/AVP 8 101"]);
    assert!(!text.contains("48000"));
    let quiet = LocalMedia {
        telephone_event: false,
        ptime_ms: 30,
        ..local()
    };
    let text = offer(&quiet);
    assert_eq!(m_lines(&text), ["m=audio 40000 RTP/AVP 0 8 111"]);
    assert!(!text.contains("telephone-event"));
    assert!(has_line(&text, "a=ptime:30"));
}

#[test]
fn round_trip_offer_answer_read_answer() {
    let sets: [&[Codec]; 6] = [
        &[Codec::Pcmu, Codec::Pcma, Codec::Opus],
        &[Codec::Opus, Codec::Pcmu],
        &[Codec::Pcma],
        &[Codec::Opus],
        &[Codec::Pcma, Codec::Pcmu],
        &[Codec::Pcmu],
    ];
    for uac_codecs in sets {
        for uas_codecs in sets {
            for te in [true, false] {
                let uac = LocalMedia {
                    codecs: uac_codecs.to_vec(),
                    telephone_event: te,
                    ..local()
                };
                let uas = LocalMedia {
                    address: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
                    rtp_port: 50000,
                    session_id: 1000,
                    ..local_with(uas_codecs)
                };
                let offered = offer(&uac);
                let common = uac_codecs.iter().find(|c| uas_codecs.contains(c));
                let result = answer(&offered, &uas);
                let Some(&expected_codec) = common else {
                    assert!(
                        matches!(result, Err(SdpError::NoAcceptableCodec { .. })),
                        "{uac_codecs:?} vs {uas_codecs:?}: {result:?}"
                    );
                    continue;
                };
                let (answered, at_uas) = result.expect("common codec exists");
                let at_uac = read_answer(&answered, &uac).expect("answer reads back");
                assert_eq!(at_uas.codec, expected_codec, "UAC's order wins");
                assert_eq!(at_uac.codec, at_uas.codec);
                assert_eq!(at_uac.payload_type, at_uas.payload_type);
                assert_eq!(at_uac.telephone_event, at_uas.telephone_event);
                assert_eq!(at_uas.payload_type, offered_payload_type(expected_codec));
                let te_expected = te.then(|| TelephoneEvent {
                    payload_type: if expected_codec == Codec::Opus {
                        110
                    } else {
                        101
                    },
                    clock_rate: expected_codec.clock_rate(),
                });
                assert_eq!(at_uas.telephone_event, te_expected);
                assert_eq!(at_uas.remote_rtp, sock("192.0.2.10:40000"));
                assert_eq!(at_uac.remote_rtp, sock("198.51.100.1:50000"));
                assert_eq!(at_uac.local_direction, Direction::SendRecv);
            }
        }
    }
}

#[test]
fn read_answer_refusals() {
    let uac = local_with(&[Codec::Pcmu]);
    let rejected = crlf(&SIPP_DEFAULT.replace("m=audio 6000", "m=audio 0"));
    assert_eq!(read_answer(&rejected, &uac), Err(SdpError::NoAudio));
    let wrong_codec = crlf(PCMA_ONLY);
    match read_answer(&wrong_codec, &uac) {
        Err(SdpError::NoAcceptableCodec { offered, accepted }) => {
            assert_eq!(offered, "PCMA/8000 (PT 8)");
            assert_eq!(accepted, "PCMU/8000");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        read_answer(&crlf(SAVP), &uac),
        Err(SdpError::Unsupported(_))
    ));
    assert!(matches!(
        read_answer("nonsense", &uac),
        Err(SdpError::Parse(_))
    ));
}

#[test]
fn read_answer_takes_answer_order_and_hold() {
    let answer_text = "v=0\r\no=peer 1 2 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n\
        m=audio 8000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:30\r\na=recvonly\r\n";
    let n = read_answer(answer_text, &local()).expect("valid answer");
    assert_eq!((n.codec, n.payload_type), (Codec::Pcma, 8));
    assert_eq!(n.ptime_ms, 30);
    assert_eq!(n.remote_direction, Direction::RecvOnly);
    assert_eq!(n.local_direction, Direction::SendOnly);
    assert!(n.we_send() && !n.we_receive() && !n.on_hold());
}

#[test]
fn direction_helpers() {
    for d in [
        Direction::SendRecv,
        Direction::SendOnly,
        Direction::RecvOnly,
        Direction::Inactive,
    ] {
        assert_eq!(d.mirror().mirror(), d);
        assert_eq!(d.sends(), d.mirror().receives());
        assert_eq!(Direction::from_attribute(d.attribute()), Some(d));
        assert_eq!(d.to_string(), d.attribute());
    }
    assert_eq!(
        Direction::from_attribute("SENDONLY"),
        Some(Direction::SendOnly)
    );
    assert_eq!(Direction::from_attribute("ptime"), None);
}

// --- robustness ----------------------------------------------------------------------

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn mutate(rng: &mut XorShift, input: &[u8]) -> Vec<u8> {
    const INTERESTING: &[u8] = b"0123456789 /:=\r\n-.aAmcv\xff\xc3\x00";
    let mut bytes = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = bytes.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                bytes[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                bytes[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => bytes.truncate(rng.below(len + 1)),
            3 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(16)).min(len);
                bytes.drain(start..end);
            }
            4 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(40)).min(len);
                let chunk: Vec<u8> = bytes[start..end].to_vec();
                let at = rng.below(len + 1);
                bytes.splice(at..at, chunk);
            }
            5 => {
                let at = rng.below(len + 1);
                let b = INTERESTING[rng.below(INTERESTING.len())];
                bytes.insert(at, b);
            }
            _ => {
                let at = rng.below(len + 1);
                bytes.splice(at..at, b"\r\nm=audio 1 RTP/AVP 0\r\n".iter().copied());
            }
        }
    }
    bytes
}

#[test]
fn fuzz_mutated_offers_never_panic_and_answers_read_back() {
    let seeds: Vec<String> = [
        SIPP_DEFAULT,
        SIPP_IVR,
        BARESIP,
        LINPHONE,
        PCMA_ONLY,
        OPUS_ONLY,
        VIDEO_AND_AUDIO,
        G729_ONLY,
        SAVP,
    ]
    .iter()
    .map(|s| crlf(s))
    .chain([offer(&local()), reoffer("a=sendonly", "0.0.0.0")])
    .collect();
    let locals = [
        local(),
        local_with(&[Codec::Pcma]),
        local_with(&[Codec::Opus]),
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let (mut accepted, mut refused) = (0usize, 0usize);
    for round in 0..4000 {
        let seed = &seeds[round % seeds.len()];
        let mutated = mutate(&mut rng, seed.as_bytes());
        let text = String::from_utf8_lossy(&mutated);
        let local = &locals[round % locals.len()];
        let _ = read_answer(&text, local);
        match answer(&text, local) {
            Ok((sdp, n)) => {
                accepted += 1;
                // Whatever Careline answers must be SDP it can read itself, agreeing on
                // the codec, with one m= line per offered m= line.
                let back = read_answer(&sdp, local)
                    .unwrap_or_else(|e| panic!("answer unreadable ({e}):\n{sdp}\nto:\n{text}"));
                assert_eq!(
                    (back.codec, back.payload_type, back.telephone_event),
                    (n.codec, n.payload_type, n.telephone_event),
                    "{text}"
                );
                let offered = parse(&text).expect("accepted offer parses").media.len();
                assert_eq!(m_lines(&sdp).len(), offered, "{text}\n{sdp}");
                assert!(local.codecs.contains(&n.codec));
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    // The mutations must exercise both outcomes, or the test proves little.
    assert!(
        accepted > 400,
        "only {accepted} mutated offers were accepted"
    );
    assert!(refused > 400, "only {refused} mutated offers were refused");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Static payload types Careline may meet in an offer: PCMU, GSM, PCMA, G722, G729.
    const STATIC: [u8; 5] = [0, 3, 8, 9, 18];

    proptest! {
        /// Any bytes at all are answered or refused with a reason; never a panic.
        #[test]
        fn any_offer_is_answered_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..1500)) {
            let _ = answer(&String::from_utf8_lossy(&bytes), &local());
        }

        /// Lines in any order, with any line ends: the answer does not depend on it.
        #[test]
        fn line_order_and_line_ends_do_not_matter(
            order in Just((0..6).collect::<Vec<usize>>()).prop_shuffle(),
            end in prop::sample::select(vec!["\r\n", "\n", "\r"]),
        ) {
            let body = ["c=IN IP4 198.51.100.7", "t=0 0", "s=-", "b=AS:64",
                "a=sendrecv", "y=0123456789"];
            let mut text = format!("v=0{end}o=- 1 1 IN IP4 198.51.100.7{end}");
            for i in &order {
                text.push_str(body[*i]);
                text.push_str(end);
            }
            text.push_str(&format!("m=audio 4000 RTP/AVP 8 0{end}"));
            let (_, n) = answer(&text, &local()).expect("answered");
            prop_assert_eq!(n.codec, Codec::Pcma);
            prop_assert_eq!(n.remote_rtp, Some("198.51.100.7:4000".parse().unwrap()));
        }

        /// Of any list of formats, the first Careline takes wins; the answer carries it (and
        /// telephone-event when offered), and reads back to the same choice.
        #[test]
        fn the_first_acceptable_codec_wins(
            formats in prop::sample::subsequence(STATIC.to_vec(), 1..=5).prop_shuffle(),
            opus_at in prop::option::of(0usize..6),
            te in any::<bool>(),
            port in 1024u16..65000,
        ) {
            let mut pts: Vec<u8> = formats;
            if let Some(i) = opus_at {
                pts.insert(i.min(pts.len()), 111);
            }
            let mut m = format!("m=audio {port} RTP/AVP");
            for pt in &pts {
                m.push_str(&format!(" {pt}"));
            }
            if te {
                m.push_str(" 101");
            }
            let mut text = format!("v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\n\
                c=IN IP4 198.51.100.7\r\nt=0 0\r\n{m}\r\n");
            if opus_at.is_some() {
                text.push_str("a=rtpmap:111 opus/48000/2\r\n");
            }
            if te {
                text.push_str("a=rtpmap:101 telephone-event/8000\r\n");
            }
            let want = pts.iter().find_map(|pt| match pt {
                0 => Some((Codec::Pcmu, 0u8)),
                8 => Some((Codec::Pcma, 8)),
                111 => Some((Codec::Opus, 111)),
                _ => None,
            });
            match (answer(&text, &local()), want) {
                (Ok((sdp, n)), Some((codec, pt))) => {
                    prop_assert_eq!((n.codec, n.payload_type), (codec, pt));
                    if codec != Codec::Opus {
                        prop_assert_eq!(n.telephone_event.is_some(), te);
                    }
                    prop_assert!(sdp.contains(&format!("m=audio 40000 RTP/AVP {pt}")), "{}", sdp);
                    let back = read_answer(&sdp, &local()).expect("our answer reads back");
                    prop_assert_eq!(back.codec, codec);
                }
                (Err(_), None) => {}
                (got, want) => prop_assert!(false, "{:?} for {:?}", got.map(|g| g.1), want),
            }
        }
    }
}

mod srtp {
    //! SDES (RFC 4568) in offers and answers.
    use super::*;
    use crate::media::srtp::{MAX_MASTER_LEN, MasterKey, SrtpSuite};
    use base64::Engine as _;

    /// The 30 bytes RFC 4568's examples key AES_CM_128_HMAC_SHA1_80 with.
    const OFFERED_KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    fn ours() -> MasterKey {
        let bytes: Vec<u8> = (0..MAX_MASTER_LEN as u8).collect();
        MasterKey::new(&bytes).unwrap()
    }

    fn srtp(required: bool, keys_allowed: bool) -> LocalMedia {
        LocalMedia {
            srtp: Some(LocalSrtp {
                required,
                keys_allowed,
                suites: SrtpSuite::ALL.to_vec(),
                key: ours(),
            }),
            ..local()
        }
    }

    fn offer_with(proto: &str, cryptos: &[&str]) -> String {
        let mut text = crlf(&SIPP_IVR.replace("RTP/AVP", proto));
        for c in cryptos {
            text.push_str(&format!("a=crypto:{c}\r\n"));
        }
        text
    }

    fn crypto_lines(sdp: &str) -> Vec<&str> {
        sdp.lines().filter(|l| l.starts_with("a=crypto:")).collect()
    }

    #[test]
    fn an_savp_offer_over_tls_is_answered_with_careline_s_own_key() {
        let (sdp, n) = ok(&crlf(SAVP), &srtp(false, true));
        assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/SAVP 0"]);
        let lines = crypto_lines(&sdp);
        assert_eq!(lines.len(), 1, "{sdp}");
        let suite = SrtpSuite::AesCm128HmacSha1_80;
        let our_key = srtp(false, true).srtp.unwrap().key_for(suite).unwrap();
        let ours_b64 = base64::engine::general_purpose::STANDARD.encode(our_key.as_bytes());
        assert_eq!(
            lines[0],
            format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{ours_b64}")
        );
        let keys = n.srtp.clone().expect("keys");
        assert_eq!(keys.suite, SrtpSuite::AesCm128HmacSha1_80);
        assert_eq!(keys.local, our_key);
        let theirs = base64::engine::general_purpose::STANDARD
            .decode(OFFERED_KEY)
            .unwrap();
        assert_eq!(keys.remote.as_bytes(), theirs.as_slice());
        assert_eq!(LegParams::from(&n).srtp, Some(keys));
    }

    #[test]
    fn the_offer_s_first_usable_line_wins_with_its_tag() {
        let gcm = base64::engine::general_purpose::STANDARD.encode([9u8; 44]);
        let offer = offer_with(
            "RTP/SAVP",
            &[
                "1 F8_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
                &format!("2 AES_CM_128_HMAC_SHA1_80 inline:{OFFERED_KEY}|2^20|1:4"),
                &format!("3 AEAD_AES_256_GCM inline:{gcm}|2^31 WSH=64"),
                &format!("4 AES_CM_128_HMAC_SHA1_80 inline:{OFFERED_KEY}"),
            ],
        );
        let (sdp, n) = ok(&offer, &srtp(true, true));
        let keys = n.srtp.expect("keys");
        assert_eq!(keys.suite, SrtpSuite::AeadAes256Gcm);
        let gcm_key = srtp(true, true)
            .srtp
            .unwrap()
            .key_for(SrtpSuite::AeadAes256Gcm);
        assert_eq!(Some(keys.local), gcm_key);
        assert_eq!(keys.remote.as_bytes(), [9u8; 44]);
        let lines = crypto_lines(&sdp);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("a=crypto:3 AEAD_AES_256_GCM inline:"),
            "{sdp}"
        );
    }

    #[test]
    fn lines_careline_cannot_use_are_named_in_the_488() {
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        let offer = offer_with(
            "RTP/SAVP",
            &[
                &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{OFFERED_KEY}|2^20|1:4"),
                &format!("2 AES_CM_128_HMAC_SHA1_80 inline:{short}"),
                &format!("3 AES_CM_128_HMAC_SHA1_80 inline:{OFFERED_KEY} UNENCRYPTED_SRTP"),
                &format!("4 AES_CM_128_HMAC_SHA1_80 inline:{OFFERED_KEY};inline:{OFFERED_KEY}"),
                "5 AES_CM_128_HMAC_SHA1_80 inline:not*base64!",
                "x AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
                "6 F8_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
            ],
        );
        let err = answer(&offer, &srtp(false, true)).expect_err("nothing usable");
        assert_eq!(err.sip_status(), 488);
        let message = err.to_string();
        for why in [
            "an MKI",
            "16 bytes of key and salt (it takes 30)",
            "session parameter UNENCRYPTED_SRTP",
            "several keys",
            "not base64",
            "a tag that is not 1-9 digits",
            "suite F8_128_HMAC_SHA1_80",
            "AEAD_AES_256_GCM",
        ] {
            assert!(message.contains(why), "{why}: {message}");
        }
        assert!(
            !message.contains(OFFERED_KEY),
            "a key never goes into a reason: {message}"
        );
        let none = offer_with("RTP/SAVP", &[]);
        let err = answer(&none, &srtp(false, true)).expect_err("no crypto line");
        assert!(err.to_string().contains("no a=crypto line"), "{err}");
    }

    #[test]
    fn keys_over_plain_signalling_are_never_used() {
        let err = answer(&crlf(SAVP), &srtp(false, false)).expect_err("keys in clear");
        assert_eq!(err.sip_status(), 488);
        assert!(err.to_string().contains("TLS"), "{err}");
        // Best-effort SRTP (keys on RTP/AVP) over plain signalling: answered in clear.
        let best_effort = offer_with(
            "RTP/AVP",
            &[&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{OFFERED_KEY}")],
        );
        let (sdp, n) = ok(&best_effort, &srtp(false, false));
        assert!(crypto_lines(&sdp).is_empty() && n.srtp.is_none(), "{sdp}");
        // ... and refused when plain RTP is.
        let err = answer(&best_effort, &srtp(true, false)).expect_err("require");
        assert!(err.to_string().contains("require"), "{err}");
    }

    #[test]
    fn best_effort_srtp_is_answered_encrypted_on_its_own_profile() {
        let offer = offer_with(
            "RTP/AVP",
            &[&format!("7 AES_CM_128_HMAC_SHA1_32 inline:{OFFERED_KEY}")],
        );
        let (sdp, n) = ok(&offer, &srtp(true, true));
        assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 0 101"]);
        assert_eq!(n.srtp.expect("keys").suite, SrtpSuite::AesCm128HmacSha1_32);
        assert!(crypto_lines(&sdp)[0].starts_with("a=crypto:7 AES_CM_128_HMAC_SHA1_32 "));
        // With SRTP off, the same offer is answered in clear.
        let (sdp, n) = ok(&offer, &local());
        assert!(crypto_lines(&sdp).is_empty() && n.srtp.is_none());
    }

    #[test]
    fn require_refuses_plain_rtp_and_offer_takes_it() {
        let plain = crlf(SIPP_IVR);
        let err = answer(&plain, &srtp(true, true)).expect_err("plain under require");
        assert_eq!(err.sip_status(), 488);
        assert!(err.to_string().contains("require"), "{err}");
        let (_, n) = ok(&plain, &srtp(false, true));
        assert!(n.srtp.is_none());
        // An SAVP stream and a plain fallback stream: under require the SAVP one is taken.
        let both = format!("{}m=audio 5008 RTP/AVP 0\r\n", crlf(SAVP));
        let (sdp, n) = ok(&both, &srtp(true, true));
        assert!(n.srtp.is_some());
        assert_eq!(
            m_lines(&sdp),
            ["m=audio 40000 RTP/SAVP 0", "m=audio 0 RTP/AVP 0"]
        );
    }

    #[test]
    fn suites_the_operator_left_out_are_passed_over() {
        let gcm = base64::engine::general_purpose::STANDARD.encode([9u8; 44]);
        let offer = offer_with(
            "RTP/SAVP",
            &[
                &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{OFFERED_KEY}"),
                &format!("2 AEAD_AES_256_GCM inline:{gcm}"),
            ],
        );
        let mut local = srtp(false, true);
        if let Some(s) = &mut local.srtp {
            s.suites = vec![SrtpSuite::AeadAes256Gcm];
        }
        let (sdp, n) = ok(&offer, &local);
        assert_eq!(n.srtp.unwrap().suite, SrtpSuite::AeadAes256Gcm);
        assert!(crypto_lines(&sdp)[0].starts_with("a=crypto:2 AEAD_AES_256_GCM "));
        let only_cm = offer_with(
            "RTP/SAVP",
            &[&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{OFFERED_KEY}")],
        );
        let err = answer(&only_cm, &local).expect_err("suite left out");
        assert!(
            err.to_string().contains("not in [rtp] srtp_suites"),
            "{err}"
        );
    }

    #[test]
    fn careline_offers_a_key_per_suite_and_reads_the_answer_s_choice() {
        let mut uac = srtp(true, true);
        if let Some(s) = &mut uac.srtp {
            s.suites = vec![SrtpSuite::AeadAes256Gcm, SrtpSuite::AesCm128HmacSha1_80];
        }
        let text = offer(&uac);
        assert!(text.contains("m=audio 40000 RTP/SAVP "), "{text}");
        let lines = crypto_lines(&text);
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("a=crypto:1 AEAD_AES_256_GCM inline:"));
        assert!(lines[1].starts_with("a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:"));
        let key_of = |line: &str| line.rsplit("inline:").next().unwrap().to_string();
        let (k1, k2) = (key_of(lines[0]), key_of(lines[1]));
        assert!(!k1.starts_with(&k2[..20]), "each suite has its own key");
        for suite in SrtpSuite::ALL {
            let key = uac.srtp.as_ref().unwrap().key_for(suite).unwrap();
            assert_eq!(key.as_bytes().len(), suite.master_len(), "{suite}");
        }

        // Another Careline answers it, taking only AES-CM: both ends agree on the suite, and
        // each side's sending key is the other's receiving key.
        let mut uas_local = local();
        uas_local.srtp = Some(LocalSrtp {
            required: false,
            keys_allowed: true,
            suites: vec![SrtpSuite::AesCm128HmacSha1_80],
            key: MasterKey::new(&[42; MAX_MASTER_LEN]).unwrap(),
        });
        let (answer_text, uas) = ok(&text, &uas_local);
        let uac_view = read_answer(&answer_text, &uac).expect("answer read");
        let (a, b) = (uac_view.srtp.unwrap(), uas.srtp.unwrap());
        assert_eq!(a.suite, SrtpSuite::AesCm128HmacSha1_80);
        assert_eq!((a.local.clone(), a.remote.clone()), (b.remote, b.local));
        assert_eq!(Some(a.local), uac.srtp.as_ref().unwrap().key_for(a.suite));

        // Keys may not be given (plain signalling): a plain offer, no key in it.
        let mut plain = srtp(false, false);
        plain.rtp_port = 40000;
        let text = offer(&plain);
        assert!(
            text.contains("RTP/AVP") && crypto_lines(&text).is_empty(),
            "{text}"
        );
        // Best effort when plain RTP is allowed: keys on RTP/AVP.
        let text = offer(&srtp(false, true));
        assert!(
            text.contains("RTP/AVP") && crypto_lines(&text).len() == 5,
            "{text}"
        );
    }

    #[test]
    fn a_reoffer_keeps_careline_s_key_and_follows_a_new_peer_key() {
        let mut local = srtp(false, true);
        let (first, n1) = ok(&crlf(SAVP), &local);
        let other = base64::engine::general_purpose::STANDARD.encode([5u8; 30]);
        let reoffer = crlf(SAVP).replace(OFFERED_KEY, &other);
        let (second, n2) = local.reanswer(reoffer.as_bytes()).expect("re-offer");
        assert_eq!(crypto_lines(&first), crypto_lines(&second));
        let (k1, k2) = (n1.srtp.unwrap(), n2.srtp.unwrap());
        assert_eq!(k1.local, k2.local);
        assert_eq!(k2.remote.as_bytes(), [5u8; 30]);
    }
}
