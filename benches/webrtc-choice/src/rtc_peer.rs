//! A pair of webrtc-rs `rtc` peers: the server ICE-lite and answering, the client offering audio.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_PCMA, MIME_TYPE_PCMU, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use crate::{Peer, server};

pub struct RtcPeer {
    pc: RTCPeerConnection,
    sender: Option<RTCRtpSenderId>,
    ssrc: u32,
    pt: Option<u8>,
    outbox: Vec<(SocketAddr, Vec<u8>)>,
    next: Instant,
    connected: bool,
    received: u64,
    /// Sends Opus (48 kHz RTP clock) rather than PCMU.
    opus: bool,
}

fn codec(mime: &str, clock_rate: u32, channels: u16, fmtp: &str, pt: u8) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate,
            channels,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: pt,
    }
}

fn pcmu() -> RTCRtpCodecParameters {
    codec(MIME_TYPE_PCMU, 8000, 0, "", 0)
}

fn opus() -> RTCRtpCodecParameters {
    codec(MIME_TYPE_OPUS, 48_000, 2, "minptime=10;useinbandfec=1", 111)
}

fn peer(now: Instant, addr: SocketAddr, lite: bool) -> RTCPeerConnection {
    peer_with(now, addr, lite, vec![opus(), pcmu(), codec(MIME_TYPE_PCMA, 8000, 0, "", 8)])
}

fn peer_with(
    now: Instant,
    addr: SocketAddr,
    lite: bool,
    codecs: Vec<RTCRtpCodecParameters>,
) -> RTCPeerConnection {
    let mut media = MediaEngine::default();
    for c in codecs {
        media
            .register_codec(c, RtpCodecKind::Audio)
            .expect("codec registers");
    }
    let settings = SettingEngineBuilder::new()
        .with_lite(lite)
        .with_answering_dtls_role(RTCDtlsRole::Server)
        .build();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings)
        .with_media_engine(media)
        .build(now)
        .expect("peer connection");
    let host = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .expect("host candidate");
    pc.add_local_candidate(
        RTCIceCandidate::from(&host)
            .to_json()
            .expect("candidate json"),
    )
    .expect("local candidate");
    pc
}

fn audio_track(ssrc: u32) -> MediaStreamTrack {
    track_with(ssrc, pcmu())
}

fn track_with(ssrc: u32, codec: RTCRtpCodecParameters) -> MediaStreamTrack {
    MediaStreamTrack::new(
        format!("stream-{ssrc}"),
        format!("audio-{ssrc}"),
        "audio".to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: codec.rtp_codec,
            ..Default::default()
        }],
    )
}

impl RtcPeer {
    fn new(pc: RTCPeerConnection, sender: RTCRtpSenderId, ssrc: u32, now: Instant) -> Self {
        let mut p = RtcPeer {
            pc,
            sender: Some(sender),
            ssrc,
            pt: None,
            outbox: Vec::new(),
            next: now,
            connected: false,
            received: 0,
            opus: false,
        };
        p.drain(now);
        p
    }

    fn drain(&mut self, now: Instant) {
        while let Some(m) = self.pc.poll_write() {
            self.outbox
                .push((m.transport.peer_addr, m.message.to_vec()));
        }
        while let Some(e) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = e {
                if s == RTCPeerConnectionState::Connected {
                    self.connected = true;
                }
                if s == RTCPeerConnectionState::Failed {
                    eprintln!("rtc: connection failed");
                }
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            if let RTCMessage::RtpPacket(..) = message {
                self.received += 1;
            }
        }
        self.next = self
            .pc
            .poll_timeout()
            .unwrap_or(now + Duration::from_secs(3600));
    }
}

impl Peer for RtcPeer {
    fn receive(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        let msg = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: to,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        };
        if let Err(e) = self.pc.handle_read(msg) {
            eprintln!("rtc read: {e}");
        }
        self.drain(now);
    }

    fn timeout(&mut self, now: Instant) {
        if let Err(e) = self.pc.handle_timeout(now) {
            eprintln!("rtc timeout: {e}");
        }
        self.drain(now);
    }

    fn send_frame(&mut self, now: Instant, seq: u16, frame: &[u8]) {
        let Some(id) = self.sender else { return };
        let Some(mut sender) = self.pc.rtp_sender(id) else {
            return;
        };
        let pt = match self.pt {
            Some(pt) => pt,
            None => {
                let Some(pt) = sender
                    .get_parameters()
                    .rtp_parameters
                    .codecs
                    .iter()
                    .find(|c| {
                        let mime = if self.opus { MIME_TYPE_OPUS } else { MIME_TYPE_PCMU };
                        c.rtp_codec.mime_type.eq_ignore_ascii_case(mime)
                    })
                    .map(|c| c.payload_type)
                else {
                    return;
                };
                self.pt = Some(pt);
                pt
            }
        };
        let packet = rtp::packet::Packet {
            header: rtp::header::Header {
                version: 2,
                payload_type: pt,
                sequence_number: seq,
                timestamp: u32::from(seq) * if self.opus { 960 } else { 160 },
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: bytes::Bytes::copy_from_slice(frame),
        };
        if sender.write_rtp(now, packet).is_ok() {
            self.drain(now);
        }
    }

    fn outbox(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.outbox)
            .into_iter()
            .map(|(_, d)| d)
            .collect()
    }

    fn outbox_to(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.outbox)
    }

    fn next_timeout(&self) -> Instant {
        self.next
    }

    fn connected(&self) -> bool {
        self.connected
    }

    fn frames_received(&self) -> u64 {
        self.received
    }
}

/// Signals a pair through SDP text, as a browser and Careline would.
pub fn pair(
    now: Instant,
    server_addr: SocketAddr,
    client_addr: SocketAddr,
) -> (Box<dyn Peer>, Box<dyn Peer>) {
    let ip = match client_addr.ip() {
        std::net::IpAddr::V4(v) => u32::from(v),
        std::net::IpAddr::V6(v) => v.to_bits() as u32,
    };
    let client_ssrc = ip ^ u32::from(client_addr.port());
    let server_ssrc = client_ssrc ^ 0x0f0f_0f0f;
    let mut client = peer(now, client_addr, false);
    let client_sender = client.add_track(audio_track(client_ssrc)).expect("track");
    let offer = client.create_offer(None).expect("offer");
    client
        .set_local_description(now, offer.clone())
        .expect("local offer");
    let offer_text = offer.sdp.clone();

    let (answer_text, server_pc, server_sender) = server(|| {
        let mut pc = peer(now, server_addr, true);
        let offer = RTCSessionDescription::offer(offer_text).expect("offer parses");
        pc.set_remote_description(now, offer).expect("remote offer");
        let sender = pc.add_track(audio_track(server_ssrc)).expect("track");
        let answer = pc.create_answer(None).expect("answer");
        pc.set_local_description(now, answer.clone())
            .expect("local answer");
        (answer.sdp, pc, sender)
    });
    let answer = RTCSessionDescription::answer(answer_text).expect("answer parses");
    client
        .set_remote_description(now, answer)
        .expect("remote answer");
    let server_peer = server(|| RtcPeer::new(server_pc, server_sender, server_ssrc, now));
    let client_peer = RtcPeer::new(client, client_sender, client_ssrc, now);
    (Box::new(server_peer), Box::new(client_peer))
}

/// A browser-like client for a real server: a full-ICE `rtc` peer bound to `local`, with its
/// offer made. [`RtcPeer`] drives it once [`client_accept`] took the server's answer.
/// `opus`: it offers Opus alone (so the server must transcode to a G.711 phone), else
/// Opus, PCMU and PCMA and sends PCMU.
pub fn client_offer(
    now: Instant,
    local: SocketAddr,
    ssrc: u32,
    opus_only: bool,
) -> (RTCPeerConnection, RTCRtpSenderId, String) {
    let (mut pc, track) = if opus_only {
        (peer_with(now, local, false, vec![opus()]), track_with(ssrc, opus()))
    } else {
        (peer(now, local, false), audio_track(ssrc))
    };
    let sender = pc.add_track(track).expect("track");
    let offer = pc.create_offer(None).expect("offer");
    pc.set_local_description(now, offer.clone())
        .expect("local offer");
    (pc, sender, offer.sdp)
}

pub fn client_accept(
    mut pc: RTCPeerConnection,
    sender: RTCRtpSenderId,
    ssrc: u32,
    answer: String,
    now: Instant,
    opus_only: bool,
) -> RtcPeer {
    let answer = RTCSessionDescription::answer(answer).expect("answer parses");
    pc.set_remote_description(now, answer)
        .expect("remote answer");
    let mut peer = RtcPeer::new(pc, sender, ssrc, now);
    peer.opus = opus_only;
    peer
}
