//! A synthetic browser's transport: one webrtc-rs `rtc` peer connection (full ICE, the DTLS
//! client, SRTP, the library's default RTCP), the library Careline's own browser legs run on.
//! Sans-IO like the caller: it is fed datagrams and time and returns datagrams, so a worker
//! drives thousands of them on one thread and one socket (each leg talks to its own server
//! port, which is how the worker tells them apart).
//!
//! The caller above it stays the same as a phone's: the RTP it would send (speech, in-band
//! tones, RFC 4733 events) goes into [`BrowserLeg::send_rtp`], and the RTP the leg decrypts
//! comes back out as plain packets, so a browser caller is judged exactly as a SIP caller is.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use careline::media::codec::Codec;
use careline::media::webrtc::{browser_codec, host_candidate};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_TELEPHONE_EVENT, MediaEngine};
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
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    #[error("the browser leg could not be set up: {0}")]
    Setup(String),
    #[error("the server's SDP answer was refused: {0}")]
    Answer(String),
}

/// Where the connection is, as the caller needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegState {
    Connecting,
    Connected,
    /// Closed by the server (its DTLS close_notify), or failed (ICE consent lost).
    Ended,
}

/// What the server's answer chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// The server's ICE candidate: where its packets come from.
    pub remote: SocketAddr,
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
}

pub struct BrowserLeg {
    pc: RTCPeerConnection,
    sender: RTCRtpSenderId,
    local: SocketAddr,
    state: LegState,
}

impl BrowserLeg {
    /// A browser bound to `local`, offering `codec` (and telephone-event at its rate, when
    /// `telephone_event`); returns the leg and its SDP offer.
    pub fn offer(
        local: SocketAddr,
        codec: Codec,
        telephone_event: bool,
        ssrc: u32,
        now: Instant,
    ) -> Result<(BrowserLeg, String), WebRtcError> {
        let setup = |e: rtc::shared::error::Error| WebRtcError::Setup(e.to_string());
        let mut codecs = vec![browser_codec(codec)];
        if telephone_event {
            codecs.push(RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_TELEPHONE_EVENT.to_owned(),
                    clock_rate: codec.clock_rate(),
                    channels: 0,
                    sdp_fmtp_line: "0-15".to_owned(),
                    rtcp_feedback: vec![],
                },
                payload_type: if codec == Codec::Opus { 110 } else { 101 },
            });
        }
        let mut media = MediaEngine::default();
        for c in &codecs {
            media
                .register_codec(c.clone(), RtpCodecKind::Audio)
                .map_err(setup)?;
        }
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media)
            .build(now)
            .map_err(setup)?;
        pc.add_local_candidate(host_candidate(local.ip(), local.port()).map_err(setup)?)
            .map_err(setup)?;
        let track = MediaStreamTrack::new(
            format!("loadtest-{ssrc:08x}"),
            "mic".to_owned(),
            "mic".to_owned(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: browser_codec(codec).rtp_codec,
                ..Default::default()
            }],
        );
        let sender = pc.add_track(track).map_err(setup)?;
        let mic = pc.get_transceivers().next();
        if let Some(mic) = mic
            && let Some(mut t) = pc.rtp_transceiver(mic)
        {
            t.set_codec_preferences(codecs).map_err(setup)?;
        }
        let offer = pc.create_offer(None).map_err(setup)?;
        pc.set_local_description(now, offer.clone())
            .map_err(setup)?;
        Ok((
            BrowserLeg {
                pc,
                sender,
                local,
                state: LegState::Connecting,
            },
            offer.sdp,
        ))
    }

    /// Applies the server's answer; what it chose.
    pub fn accept(&mut self, answer: &str, now: Instant) -> Result<Answered, WebRtcError> {
        let chosen = read_answer(answer)?;
        let desc = RTCSessionDescription::answer(answer.to_owned())
            .map_err(|e| WebRtcError::Answer(e.to_string()))?;
        self.pc
            .set_remote_description(now, desc)
            .map_err(|e| WebRtcError::Answer(e.to_string()))?;
        Ok(chosen)
    }

    pub fn state(&self) -> LegState {
        self.state
    }

    /// A datagram from `from`; the RTP packets it carried go to `rtp`.
    pub fn receive(
        &mut self,
        from: SocketAddr,
        data: &[u8],
        now: Instant,
        mut rtp: impl FnMut(&rtc::rtp::Packet),
    ) {
        let msg = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        };
        if self.pc.handle_read(msg).is_err() {
            return; // not for this connection, or garbled: a browser drops it too
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            if let RTCMessage::RtpPacket(_, p) = message {
                rtp(&p);
            }
        }
        self.events();
    }

    /// Sends one RTP packet (header and payload as a phone would put them on the wire): the
    /// peer connection protects it with SRTP.
    pub fn send_rtp(&mut self, bytes: &[u8], now: Instant) {
        use rtc::shared::marshal::Unmarshal;
        if self.state != LegState::Connected {
            return;
        }
        if let Ok(p) = rtc::rtp::Packet::unmarshal(&mut &bytes[..])
            && let Some(mut s) = self.pc.rtp_sender(self.sender)
        {
            let _ = s.write_rtp(now, p);
        }
    }

    /// Runs the connection's timers that are due (ICE, DTLS retransmission, RTCP).
    pub fn timers(&mut self, now: Instant) {
        if self.pc.poll_timeout().is_some_and(|t| t <= now) {
            let _ = self.pc.handle_timeout(now);
        }
        self.events();
    }

    /// Hangs up: a DTLS close_notify goes out with the next transmits.
    pub fn close(&mut self) {
        let _ = self.pc.close();
        self.state = LegState::Ended;
    }

    /// The datagrams to send, with their destinations.
    pub fn transmit(&mut self, mut send: impl FnMut(SocketAddr, &[u8])) {
        while let Some(m) = self.pc.poll_write() {
            send(m.transport.peer_addr, &m.message);
        }
    }

    fn events(&mut self) {
        while let Some(e) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = e {
                self.state = match (self.state, s) {
                    (LegState::Ended, _) => LegState::Ended,
                    (_, RTCPeerConnectionState::Connected) => LegState::Connected,
                    (
                        _,
                        RTCPeerConnectionState::Closed
                        | RTCPeerConnectionState::Failed
                        | RTCPeerConnectionState::Disconnected,
                    ) => LegState::Ended,
                    (state, _) => state,
                };
            }
        }
    }
}

/// The audio the answer chose, and the server's candidate (ICE-lite: one host candidate).
pub fn read_answer(answer: &str) -> Result<Answered, WebRtcError> {
    let bad = |why: &str| WebRtcError::Answer(why.to_owned());
    let m = answer
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .ok_or_else(|| bad("no audio"))?;
    let formats: Vec<u8> = m
        .split_whitespace()
        .skip(3)
        .filter_map(|f| f.parse().ok())
        .collect();
    let rtpmap = |pt: u8| {
        let prefix = format!("a=rtpmap:{pt} ");
        answer
            .lines()
            .find_map(|l| l.trim_end().strip_prefix(prefix.as_str()))
            .map(str::to_ascii_lowercase)
    };
    let mut chosen = None;
    let mut telephone_event = None;
    for &pt in &formats {
        let name = rtpmap(pt).unwrap_or_default();
        let codec = if name.starts_with("pcmu/") || (name.is_empty() && pt == 0) {
            Some(Codec::Pcmu)
        } else if name.starts_with("pcma/") || (name.is_empty() && pt == 8) {
            Some(Codec::Pcma)
        } else if name.starts_with("opus/") {
            Some(Codec::Opus)
        } else {
            None
        };
        if name.starts_with("telephone-event/") {
            telephone_event.get_or_insert(pt);
        } else if let Some(c) = codec {
            chosen.get_or_insert((c, pt));
        }
    }
    let (codec, payload_type) = chosen.ok_or_else(|| bad("no codec this caller offered"))?;
    let remote = answer
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=candidate:"))
        .find_map(|c| {
            // foundation component transport priority address port typ host ...
            let f: Vec<&str> = c.split_whitespace().collect();
            if f.len() >= 6 && f[2].eq_ignore_ascii_case("udp") {
                format!("{}:{}", f[4], f[5])
                    .parse()
                    .ok()
                    .or_else(|| format!("[{}]:{}", f[4], f[5]).parse().ok())
            } else {
                None
            }
        })
        .ok_or_else(|| bad("no UDP candidate"))?;
    Ok(Answered {
        remote,
        codec,
        payload_type,
        telephone_event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_gives_the_codec_its_payload_type_and_the_servers_candidate() {
        let answer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111 110\r\nc=IN IP4 0.0.0.0\r\n\
            a=rtpmap:111 opus/48000/2\r\na=rtpmap:110 telephone-event/48000\r\n\
            a=candidate:1 1 udp 2130706431 127.0.0.1 20004 typ host\r\n";
        assert_eq!(
            read_answer(answer).unwrap(),
            Answered {
                remote: "127.0.0.1:20004".parse().unwrap(),
                codec: Codec::Opus,
                payload_type: 111,
                telephone_event: Some(110),
            }
        );
        let no_candidate = answer.replace("a=candidate", "a=x");
        assert!(
            read_answer(&no_candidate)
                .unwrap_err()
                .to_string()
                .contains("no UDP candidate")
        );
        let no_audio = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n";
        assert!(
            read_answer(no_audio)
                .unwrap_err()
                .to_string()
                .contains("no audio")
        );
    }

    #[test]
    fn an_offer_names_the_codec_telephone_event_and_a_loopback_host_candidate() {
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let (_, offer) = BrowserLeg::offer(local, Codec::Pcmu, true, 7, Instant::now()).unwrap();
        assert!(offer.contains("m=audio"), "{offer}");
        assert!(offer.contains("UDP/TLS/RTP/SAVPF 0 101"), "{offer}");
        assert!(
            offer.contains("a=rtpmap:101 telephone-event/8000"),
            "{offer}"
        );
        assert!(offer.contains("127.0.0.1 40000 typ host"), "{offer}");
        assert!(offer.contains("a=fingerprint:"), "{offer}");
    }
}
