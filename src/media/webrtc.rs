//! A browser leg's transport: ICE-lite, DTLS-SRTP and RTCP around the same media leg a phone
//! gets.
//!
//! A browser (or any WebRTC peer) reaches Careline through one peer connection per leg, from
//! webrtc-rs's sans-IO `rtc` crate (chosen over str0m by measurement: docs/performance.md).
//! Like the rest of `media` it does no I/O and reads no clock: the media clock feeds it the
//! datagrams that arrived on the leg's socket and the time, takes the datagrams it wants sent,
//! and moves RTP between it and the [`MediaLeg`](super::leg::MediaLeg) that plays prompts,
//! detects digits and records, exactly as for an RTP leg. Decrypted RTP reaches the leg as RTP
//! bytes, and the leg's packets leave as RTP, so nothing above the transport knows a browser
//! from a phone.
//!
//! Careline answers: the browser offers (WHIP, RFC 9725 §4.2), Careline is ICE-lite (RFC 8445
//! §2.5: a server with a public address needs no candidate gathering, and answers checks
//! rather than making them) with one host candidate per leg, and takes the DTLS server role
//! (`a=setup:passive`, RFC 8842 §5.3), so the browser starts the handshake.
//!
//! Codec choice: the browser sends with the first codec of the answer, so Careline lists its
//! own preference first (G.711 by default, so that a browser bridged to a phone needs no
//! transcoding; then Opus) among the codecs the offer has. Telephone-events (RFC 4733, from
//! `RTCDTMFSender`) are accepted at the chosen codec's clock rate.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::BytesMut;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_PCMA, MIME_TYPE_PCMU, MIME_TYPE_TELEPHONE_EVENT, MediaEngine,
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
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::marshal::{Marshal, Unmarshal};
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use super::codec::Codec;
use super::dtmf::TelephoneEvent;
use super::leg::LegParams;

/// The address a browser leg's media leg sees its packets come from and sends them to. The
/// peer connection has authenticated them (SRTP) and knows the browser's real address, which
/// ICE may change during the call; the media leg must not latch onto it.
pub const WEBRTC_PEER: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9);

/// Why an offer could not be answered, or a packet not sent. The text never holds SDP (it can
/// carry a caller's addresses), only what was wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    #[error("the SDP offer is not valid: {0}")]
    Offer(String),
    #[error("the offer has no audio Careline can take (PCMU, PCMA or Opus)")]
    NoAudio,
    #[error("WebRTC: {0}")]
    Rtc(String),
}

impl WebRtcError {
    fn rtc(e: impl std::fmt::Display) -> WebRtcError {
        WebRtcError::Rtc(e.to_string())
    }

    /// What was wrong with an offer, without the offer: the parser's messages quote the line
    /// they stopped at, which can hold the caller's address (an identifier under HIPAA), and
    /// this text reaches logs. Only the kind of fault before its first `:` is kept.
    fn offer(e: &impl std::fmt::Display) -> WebRtcError {
        let text = e.to_string();
        let kind: String = text
            .split(':')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == ' ' || *c == '_')
            .take(80)
            .collect();
        WebRtcError::Offer(kind.trim().to_string())
    }
}

/// Where the leg's connection stands (RTCPeerConnectionState, reduced to what a call acts on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportState {
    /// ICE and DTLS under way: no media yet.
    Connecting,
    /// DTLS done, SRTP keyed: media flows.
    Connected,
    /// ICE consent lost for now (RFC 7675); may come back.
    Disconnected,
    /// ICE or DTLS failed, or consent expired: the leg is over.
    Failed,
    Closed,
}

/// The answer to a browser's offer and the leg it sets up.
pub struct Answered {
    pub transport: WebRtcTransport,
    /// The SDP answer, for the WHIP 201 response.
    pub answer: String,
    /// The media leg's parameters: the chosen codec and payload type, telephone-event.
    pub params: LegParams,
}

/// One browser leg's peer connection, driven by the media clock.
pub struct WebRtcTransport {
    pc: RTCPeerConnection,
    sender: RTCRtpSenderId,
    local: SocketAddr,
    /// Where the browser's datagrams come from (its ICE candidate in use).
    remote: Option<SocketAddr>,
    transmits: VecDeque<(SocketAddr, BytesMut)>,
    rtp: VecDeque<BytesMut>,
    state: TransportState,
    send_errors: u64,
}

/// One format of the offer's audio section: payload type, encoding name, clock rate, fmtp.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Format {
    pt: u8,
    name: String,
    rate: u32,
    fmtp: String,
}

/// The formats of the offer's first audio m-section, in the offer's order (RFC 8866 §5.14;
/// static payload types 0 and 8 need no rtpmap, RFC 3551 §6).
///
/// Read here rather than from the peer connection because `rtc` matches codecs by name and
/// fmtp only: a browser's two telephone-events (8 and 48 kHz) collapse into whichever comes
/// first, and a browser sends DTMF only with the one at its send codec's rate.
fn offered_audio(offer: &str) -> Vec<Format> {
    let mut formats: Vec<Format> = Vec::new();
    let mut section = false;
    for line in offer.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            if section {
                break;
            }
            section = m.starts_with("audio ");
            if section {
                formats = m
                    .split(' ')
                    .skip(3)
                    .filter_map(|pt| pt.parse().ok())
                    .map(|pt: u8| {
                        let (name, rate) = match pt {
                            0 => ("PCMU", 8000),
                            8 => ("PCMA", 8000),
                            _ => ("", 0),
                        };
                        Format {
                            pt,
                            name: name.to_owned(),
                            rate,
                            fmtp: String::new(),
                        }
                    })
                    .collect();
            }
            continue;
        }
        if !section {
            continue;
        }
        if let Some(map) = line.strip_prefix("a=rtpmap:") {
            let Some((pt, encoding)) = map.split_once(' ') else {
                continue;
            };
            let mut parts = encoding.split('/');
            let (Ok(pt), Some(name), Some(Ok(rate))) = (
                pt.parse::<u8>(),
                parts.next(),
                parts.next().map(str::parse::<u32>),
            ) else {
                continue;
            };
            if let Some(f) = formats.iter_mut().find(|f| f.pt == pt) {
                f.name = name.to_owned();
                f.rate = rate;
            }
        } else if let Some(fmtp) = line.strip_prefix("a=fmtp:")
            && let Some((pt, params)) = fmtp.split_once(' ')
            && let Ok(pt) = pt.parse::<u8>()
            && let Some(f) = formats.iter_mut().find(|f| f.pt == pt)
        {
            f.fmtp = params.to_owned();
        }
    }
    formats
}

/// The offer without the given payload types in its audio section (m= line, rtpmap, fmtp,
/// rtcp-fb), so that `rtc` answers only the telephone-event Careline chose.
fn without_formats(offer: &str, drop: &[u8]) -> String {
    let dropped = |rest: &str| {
        rest.split([' ', ':'])
            .next()
            .and_then(|pt| pt.parse::<u8>().ok())
            .is_some_and(|pt| drop.contains(&pt))
    };
    let mut out = String::with_capacity(offer.len());
    let mut section = false;
    for line in offer.split_inclusive('\n') {
        let bare = line.trim_end();
        if let Some(m) = bare.strip_prefix("m=") {
            section = m.starts_with("audio ");
            if section {
                let kept: Vec<&str> = m
                    .split(' ')
                    .enumerate()
                    .filter(|(i, f)| *i < 3 || !f.parse::<u8>().is_ok_and(|pt| drop.contains(&pt)))
                    .map(|(_, f)| f)
                    .collect();
                out.push_str("m=");
                out.push_str(&kept.join(" "));
                out.push_str(&line[bare.len()..]);
                continue;
            }
        }
        if section
            && ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
                .iter()
                .any(|p| bare.strip_prefix(p).is_some_and(dropped))
        {
            continue;
        }
        out.push_str(line);
    }
    out
}

fn codec_of(name: &str, rate: u32) -> Option<Codec> {
    match (name.to_ascii_lowercase().as_str(), rate) {
        ("pcmu", 8000) => Some(Codec::Pcmu),
        ("pcma", 8000) => Some(Codec::Pcma),
        ("opus", 48_000) => Some(Codec::Opus),
        _ => None,
    }
}

fn mime_of(codec: Codec) -> &'static str {
    match codec {
        Codec::Pcmu => MIME_TYPE_PCMU,
        Codec::Pcma => MIME_TYPE_PCMA,
        Codec::Opus => MIME_TYPE_OPUS,
    }
}

/// A UDP host candidate at `ip:port`, as `add_local_candidate` takes it: a leg announces one
/// (ICE-lite), and Careline's own test and load-test browsers gather just one too.
pub fn host_candidate(
    ip: std::net::IpAddr,
    port: u16,
) -> Result<rtc::peer_connection::transport::RTCIceCandidateInit, rtc::shared::error::Error> {
    let host = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: ip.to_string(),
            port,
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()?;
    RTCIceCandidate::from(&host).to_json()
}

/// `codec` as a browser offers it (Chrome's payload types: PCMU 0, PCMA 8, Opus 111 with
/// its fmtp), for the browsers Careline's tests and load tester play.
pub fn browser_codec(codec: Codec) -> RTCRtpCodecParameters {
    let (pt, rate, channels, fmtp) = match codec {
        Codec::Pcmu => (0, 8000, 0, ""),
        Codec::Pcma => (8, 8000, 0, ""),
        Codec::Opus => (111, 48_000, 2, "minptime=10;useinbandfec=1"),
    };
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime_of(codec).to_owned(),
            clock_rate: rate,
            channels,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: pt,
    }
}

/// The offer's own description of a format, so that `rtc` matches it exactly.
fn parameters(mime: &str, f: &Format, channels: u16) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate: f.rate,
            channels,
            sdp_fmtp_line: f.fmtp.clone(),
            rtcp_feedback: vec![],
        },
        payload_type: f.pt,
    }
}

impl WebRtcTransport {
    /// Answers a browser's offer for a leg whose socket is bound at `local` (announced as
    /// `advertised` where that differs: the configured public address). `preference` is the
    /// codecs Careline takes, best first; `ssrc` is the media leg's, so the packets it builds
    /// go out as they are.
    pub fn answer(
        offer: &str,
        local: SocketAddr,
        advertised: Option<IpAddr>,
        preference: &[Codec],
        ssrc: u32,
        now: Instant,
    ) -> Result<Answered, WebRtcError> {
        // Refuse what is not SDP at all before looking for audio in it.
        let parsed =
            RTCSessionDescription::offer(offer.to_owned()).map_err(|e| WebRtcError::offer(&e))?;
        drop(parsed);
        let formats = offered_audio(offer);
        let (codec, chosen) = preference
            .iter()
            .find_map(|&want| {
                formats
                    .iter()
                    .find(|f| codec_of(&f.name, f.rate) == Some(want))
                    .map(|f| (want, f.clone()))
            })
            .ok_or(WebRtcError::NoAudio)?;
        let events: Vec<&Format> = formats
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case("telephone-event"))
            .collect();
        let te = events
            .iter()
            .min_by_key(|f| f.rate != codec.clock_rate())
            .copied()
            .cloned();
        let others: Vec<u8> = events
            .iter()
            .filter(|f| Some(f.pt) != te.as_ref().map(|t| t.pt))
            .map(|f| f.pt)
            .collect();
        let offer = without_formats(offer, &others);

        let mut media = MediaEngine::default();
        let channels = if codec == Codec::Opus { 2 } else { 0 };
        let send_codec = parameters(mime_of(codec), &chosen, channels);
        media
            .register_codec(send_codec.clone(), RtpCodecKind::Audio)
            .map_err(WebRtcError::rtc)?;
        if let Some(te) = &te {
            media
                .register_codec(
                    parameters(MIME_TYPE_TELEPHONE_EVENT, te, 0),
                    RtpCodecKind::Audio,
                )
                .map_err(WebRtcError::rtc)?;
        }
        let settings = SettingEngineBuilder::new()
            .with_lite(true)
            .with_answering_dtls_role(RTCDtlsRole::Server)
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(settings)
            .with_media_engine(media)
            .build(now)
            .map_err(WebRtcError::rtc)?;
        let announced = advertised.unwrap_or(local.ip());
        let candidate = host_candidate(announced, local.port()).map_err(WebRtcError::rtc)?;
        pc.add_local_candidate(candidate)
            .map_err(WebRtcError::rtc)?;
        let offer = RTCSessionDescription::offer(offer).map_err(|e| WebRtcError::offer(&e))?;
        pc.set_remote_description(now, offer)
            .map_err(|e| WebRtcError::offer(&e))?;

        let track = MediaStreamTrack::new(
            format!("careline-{ssrc:08x}"),
            format!("audio-{ssrc:08x}"),
            "audio".to_owned(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: send_codec.rtp_codec.clone(),
                ..Default::default()
            }],
        );
        let sender = pc.add_track(track).map_err(WebRtcError::rtc)?;
        let answer = pc.create_answer(None).map_err(WebRtcError::rtc)?;
        pc.set_local_description(now, answer.clone())
            .map_err(WebRtcError::rtc)?;
        let params = LegParams {
            codec,
            payload_type: chosen.pt,
            telephone_event: te.map(|t| TelephoneEvent {
                payload_type: t.pt,
                clock_rate: t.rate,
            }),
            // Packets leave through the peer connection, which knows the browser's address:
            // the leg only needs to know that it may send.
            remote_rtp: Some(WEBRTC_PEER),
            remote_rtcp: None,
            send: true,
            receive: true,
            ptime_ms: 20,
            srtp: None,
        };
        let mut transport = WebRtcTransport {
            pc,
            sender,
            local,
            remote: None,
            transmits: VecDeque::new(),
            rtp: VecDeque::new(),
            state: TransportState::Connecting,
            send_errors: 0,
        };
        transport.drain();
        Ok(Answered {
            transport,
            answer: answer.sdp,
            params,
        })
    }

    /// A datagram that arrived on the leg's socket (STUN, DTLS, SRTP or SRTCP).
    pub fn on_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
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
        match self.pc.handle_read(msg) {
            Ok(()) => self.remote = Some(from),
            Err(e) => tracing::trace!(error = %e, "WebRTC datagram refused"),
        }
        self.drain();
    }

    /// Runs the connection's timers (ICE consent, DTLS retransmission, RTCP reports) up to
    /// `now`. The media clock calls it every tick; it is cheap when nothing is due.
    pub fn on_timeout(&mut self, now: Instant) {
        if self.pc.poll_timeout().is_some_and(|t| t <= now) {
            if let Err(e) = self.pc.handle_timeout(now) {
                tracing::debug!(error = %e, "WebRTC timer");
            }
            self.drain();
        }
    }

    /// The next time [`on_timeout`](Self::on_timeout) has work.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.pc.poll_timeout()
    }

    /// Sends one RTP packet the media leg built (encrypted with SRTP on the way out). Before
    /// the connection is up packets are dropped, as a phone's are before its ACK.
    pub fn send_rtp(&mut self, now: Instant, packet: &[u8]) {
        if self.state != TransportState::Connected {
            return;
        }
        let Ok(packet) = rtc::rtp::Packet::unmarshal(&mut &packet[..]) else {
            self.send_errors += 1;
            return;
        };
        let Some(mut sender) = self.pc.rtp_sender(self.sender) else {
            return;
        };
        if sender.write_rtp(now, packet).is_err() {
            self.send_errors += 1;
        }
        self.drain();
    }

    /// The next datagram to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, BytesMut)> {
        self.transmits.pop_front()
    }

    /// The next decrypted RTP packet from the browser, as RTP bytes for the media leg.
    pub fn poll_rtp(&mut self) -> Option<BytesMut> {
        self.rtp.pop_front()
    }

    pub fn state(&self) -> TransportState {
        self.state
    }

    /// The browser's address in use, once a datagram came from it.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// Packets the leg built that could not be sent (malformed, or refused by the sender).
    pub fn send_errors(&self) -> u64 {
        self.send_errors
    }

    /// Ends the connection (a DTLS close_notify goes out with the next transmits).
    pub fn close(&mut self) {
        let _ = self.pc.close();
        self.state = TransportState::Closed;
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(m) = self.pc.poll_write() {
            // Handed on as they are: no copy per packet.
            self.transmits.push_back((m.transport.peer_addr, m.message));
        }
        while let Some(e) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = e {
                if self.state == TransportState::Closed {
                    continue;
                }
                self.state = match s {
                    RTCPeerConnectionState::Connected => TransportState::Connected,
                    RTCPeerConnectionState::Disconnected => TransportState::Disconnected,
                    RTCPeerConnectionState::Failed => TransportState::Failed,
                    RTCPeerConnectionState::Closed => TransportState::Closed,
                    _ => self.state,
                };
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            if let RTCMessage::RtpPacket(_, packet) = message
                && let Ok(bytes) = packet.marshal()
            {
                self.rtp.push_back(bytes);
            }
        }
    }
}

#[cfg(test)]
#[path = "webrtc_tests.rs"]
mod tests;
