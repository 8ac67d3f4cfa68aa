//! A scripted browser for the WebRTC tests: a full-ICE webrtc-rs `rtc` peer (another WebRTC
//! implementation than the server's use of it: its own ICE agent, DTLS client and SRTP) on a
//! real loopback UDP socket, in its own thread. It offers a microphone track, sends a frame
//! of silence every 20 ms once connected (as a browser's microphone does), presses keys as
//! `RTCDTMFSender` does (RFC 4733), and records every RTP packet it receives so tests can
//! decode what the caller heard.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use careline::media::codec::{Codec, g711, opus::OpusEncoder};
use careline::media::dtmf::Digit;
use careline::media::dtmf::rfc4733::EventSender;
use careline::media::rtp::RtpSender;
use careline::media::webrtc::{browser_codec, host_candidate};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_TELEPHONE_EVENT, MediaEngine};
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::marshal::Unmarshal;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use super::rtp::{Received, decode_stream};

enum Cmd {
    Answer(String),
    Event { digit: Digit, duration_ms: u32 },
    Speak(Vec<i16>),
}

pub struct BrowserPeer {
    /// The SDP offer to POST.
    pub offer: String,
    /// The codec it sends with and expects back (its first).
    codec: Codec,
    payload_type: u8,
    te_pt: u8,
    received: Arc<Mutex<Vec<Received>>>,
    connected: Arc<AtomicBool>,
    cmds: mpsc::Sender<Cmd>,
    thread: Option<JoinHandle<()>>,
}

/// The payload type a browser offers `codec` with.
fn pt_of(codec: Codec) -> u8 {
    browser_codec(codec).payload_type
}

impl BrowserPeer {
    /// A browser offering `codecs` (it sends with the first) and telephone-event at the first
    /// codec's rate.
    pub fn new(codecs: &[Codec]) -> BrowserPeer {
        let codec = codecs[0];
        let te_pt = if codec == Codec::Opus { 110 } else { 126 };
        let received = Arc::new(Mutex::new(Vec::new()));
        let connected = Arc::new(AtomicBool::new(false));
        let (cmds, rx) = mpsc::channel();
        let (offer_tx, offer_rx) = mpsc::channel();
        let list = codecs.to_vec();
        let thread = {
            let received = received.clone();
            let connected = connected.clone();
            std::thread::spawn(move || run(list, te_pt, offer_tx, rx, received, connected))
        };
        let offer = offer_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the browser made its offer");
        BrowserPeer {
            offer,
            codec,
            payload_type: pt_of(codec),
            te_pt,
            received,
            connected,
            cmds,
            thread: Some(thread),
        }
    }

    /// Takes the server's answer: ICE and DTLS start.
    pub fn accept(&self, answer: &str) {
        let _ = self.cmds.send(Cmd::Answer(answer.to_string()));
    }

    /// Waits (30 s at most) for ICE and DTLS to be done.
    pub fn wait_connected(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.connected.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the browser did not connect");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Queues 8 kHz audio for the microphone to send from the next frame (silence after).
    #[allow(dead_code)]
    pub fn speak(&self, pcm_8k: Vec<i16>) {
        let _ = self.cmds.send(Cmd::Speak(pcm_8k));
    }

    /// Presses a key as RTCDTMFSender does.
    pub fn send_event(&self, digit: char, duration_ms: u32) {
        let digit = Digit::from_char(digit).expect("a DTMF key");
        let _ = self.cmds.send(Cmd::Event { digit, duration_ms });
    }

    pub fn packets(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// What the caller heard so far, decoded to 8 kHz PCM.
    pub fn heard(&self) -> Vec<i16> {
        decode_stream(&self.packets(), self.codec, self.payload_type)
    }

    pub fn telephone_event_pt(&self) -> u8 {
        self.te_pt
    }
}

impl super::audio::Listener for BrowserPeer {
    fn heard(&self) -> Vec<i16> {
        BrowserPeer::heard(self)
    }
}

impl Drop for BrowserPeer {
    fn drop(&mut self) {
        let (tx, _) = mpsc::channel();
        self.cmds = tx;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    codecs: Vec<Codec>,
    te_pt: u8,
    offer_tx: mpsc::Sender<String>,
    cmds: mpsc::Receiver<Cmd>,
    received: Arc<Mutex<Vec<Received>>>,
    connected: Arc<AtomicBool>,
) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(2)))
        .unwrap();
    let local = sock.local_addr().unwrap();
    let codec = codecs[0];
    let mut media = MediaEngine::default();
    let mut all: Vec<RTCRtpCodecParameters> = codecs.iter().map(|&c| browser_codec(c)).collect();
    all.push(RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_TELEPHONE_EVENT.to_owned(),
            clock_rate: codec.clock_rate(),
            channels: 0,
            sdp_fmtp_line: "0-15".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: te_pt,
    });
    for c in &all {
        media
            .register_codec(c.clone(), RtpCodecKind::Audio)
            .unwrap();
    }
    let now = Instant::now();
    let mut pc: RTCPeerConnection = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media)
        .build(now)
        .unwrap();
    pc.add_local_candidate(host_candidate(local.ip(), local.port()).unwrap())
        .unwrap();
    let ssrc: u32 = rand::random();
    let track = MediaStreamTrack::new(
        "browser".to_owned(),
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
    let sender_id = pc.add_track(track).unwrap();
    // A browser offers every codec it has, not only its track's first.
    let mic = pc.get_transceivers().next().unwrap();
    pc.rtp_transceiver(mic)
        .unwrap()
        .set_codec_preferences(all)
        .unwrap();
    let offer = pc.create_offer(None).unwrap();
    pc.set_local_description(now, offer.clone()).unwrap();
    let _ = offer_tx.send(offer.sdp);
    let answer = loop {
        match cmds.recv() {
            Ok(Cmd::Answer(a)) => break a,
            Ok(_) => continue,
            Err(_) => return,
        }
    };
    pc.set_remote_description(
        Instant::now(),
        RTCSessionDescription::answer(answer).unwrap(),
    )
    .unwrap();

    let pt = pt_of(codec);
    let step = codec.clock_rate() / 50;
    let mut rtp = RtpSender::new(ssrc, rand::random(), rand::random());
    let mut opus = OpusEncoder::new().ok();
    let mut event: Option<EventSender> = None;
    let mut voice: std::collections::VecDeque<i16> = Default::default();
    let mut out = Vec::with_capacity(1500);
    let mut buf = vec![0u8; 2048];
    let mut next = Instant::now();
    let write = |pc: &mut RTCPeerConnection, bytes: &[u8], now: Instant| {
        if let Ok(p) = rtc::rtp::Packet::unmarshal(&mut &bytes[..])
            && let Some(mut s) = pc.rtp_sender(sender_id)
        {
            let _ = s.write_rtp(now, p);
        }
    };
    loop {
        loop {
            match cmds.try_recv() {
                Ok(Cmd::Event { digit, duration_ms }) => {
                    event = Some(EventSender::new(
                        digit,
                        rtp.timestamp,
                        step,
                        duration_ms * codec.clock_rate() / 1000,
                    ));
                }
                Ok(Cmd::Answer(_)) => {}
                Ok(Cmd::Speak(pcm)) => voice.extend(pcm),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    let _ = pc.close();
                    flush(&mut pc, &sock);
                    return;
                }
            }
        }
        // Receive and run timers until the next 20 ms send time.
        while Instant::now() < next {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = pc.handle_read(TaggedBytesMut {
                    now: Instant::now(),
                    transport: TransportContext {
                        local_addr: local,
                        peer_addr: from,
                        ecn: None,
                        transport_protocol: TransportProtocol::UDP,
                    },
                    message: BytesMut::from(&buf[..n]),
                });
            }
            let now = Instant::now();
            if pc.poll_timeout().is_some_and(|t| t <= now) {
                let _ = pc.handle_timeout(now);
            }
            drain(&mut pc, &sock, &received, &connected);
        }
        next += Duration::from_millis(20);
        if !connected.load(Ordering::Acquire) {
            continue;
        }
        let now = Instant::now();
        if let Some(ev) = event.as_mut() {
            // RFC 4733 §2.5: events replace audio; the end packets go out back to back.
            let mut sent_any = false;
            while let Some(p) = ev.next_packet() {
                let saved = rtp.timestamp;
                rtp.timestamp = p.timestamp;
                rtp.marker_pending = p.marker;
                rtp.build(&mut out, te_pt, &p.payload, 0);
                rtp.timestamp = saved;
                write(&mut pc, &out, now);
                sent_any = true;
                if p.payload[1] & 0x80 == 0 {
                    break;
                }
            }
            rtp.timestamp = rtp.timestamp.wrapping_add(step);
            if !sent_any {
                event = None;
            }
        } else {
            // 20 ms of the microphone: what it was given to say, else silence.
            let mut pcm: Vec<i16> = (0..160).map(|_| voice.pop_front().unwrap_or(0)).collect();
            if codec == Codec::Opus {
                // 48 kHz for the encoder: each sample six times (libopus filters the rest).
                pcm = pcm.iter().flat_map(|&s| [s; 6]).collect();
            }
            let payload: Vec<u8> = match codec {
                Codec::Pcmu => pcm.iter().map(|&s| g711::linear_to_ulaw(s)).collect(),
                Codec::Pcma => pcm.iter().map(|&s| g711::linear_to_alaw(s)).collect(),
                Codec::Opus => opus
                    .as_mut()
                    .and_then(|e| e.encode(&pcm).ok().map(|p| p.to_vec()))
                    .unwrap_or_default(),
            };
            rtp.build(&mut out, pt, &payload, step);
            write(&mut pc, &out, now);
        }
        drain(&mut pc, &sock, &received, &connected);
    }
}

fn flush(pc: &mut RTCPeerConnection, sock: &UdpSocket) {
    while let Some(m) = pc.poll_write() {
        let _ = sock.send_to(&m.message, m.transport.peer_addr);
    }
}

fn drain(
    pc: &mut RTCPeerConnection,
    sock: &UdpSocket,
    received: &Mutex<Vec<Received>>,
    connected: &AtomicBool,
) {
    flush(pc, sock);
    while let Some(e) = pc.poll_event() {
        if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = e {
            connected.store(s == RTCPeerConnectionState::Connected, Ordering::Release);
        }
    }
    while let Some(TaggedRTCMessage { message, .. }) = pc.poll_read() {
        if let RTCMessage::RtpPacket(_, p) = message {
            received.lock().unwrap().push(Received {
                at: Instant::now(),
                from: SocketAddr::from(([0, 0, 0, 0], 0)),
                payload_type: p.header.payload_type,
                marker: p.header.marker,
                sequence: p.header.sequence_number,
                timestamp: p.header.timestamp,
                ssrc: p.header.ssrc,
                payload: p.payload.to_vec(),
            });
        }
    }
}
