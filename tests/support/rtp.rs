//! The media side of a test phone: sends caller audio every 20 ms (silence, tones, speech,
//! RFC 4733 events), records every packet the server sends, and decodes it back to PCM so
//! tests can check what a caller actually heard.

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use careline::media::codec::{Codec, g711, opus::OpusDecoder, opus::OpusEncoder};
use careline::media::dtmf::Digit;
use careline::media::dtmf::rfc4733::EventSender;
use careline::media::rtp::{RtpPacket, RtpSender};

#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub from: SocketAddr,
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

enum Cmd {
    Remote(SocketAddr),
    /// 8 kHz caller audio to send (replaces silence until used up).
    Audio(Vec<i16>),
    Event {
        digit: Digit,
        duration_ms: u32,
    },
    Mute(bool),
}

pub struct RtpPeer {
    pub port: u16,
    codec: Codec,
    payload_type: u8,
    received: Arc<Mutex<Vec<Received>>>,
    cmds: mpsc::Sender<Cmd>,
    thread: Option<JoinHandle<()>>,
}

/// Binds an even port (RTP) with its odd neighbour free (RTCP), as real phones do.
fn bind_pair() -> (UdpSocket, UdpSocket) {
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = s.local_addr().unwrap().port();
        if !port.is_multiple_of(2) || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)) {
            return (s, rtcp);
        }
    }
}

impl RtpPeer {
    /// `te_pt`: the telephone-event payload type offered (for sending RFC 4733 events).
    pub fn new(codec: Codec, payload_type: u8, te_pt: Option<u8>) -> RtpPeer {
        let (sock, rtcp) = bind_pair();
        let port = sock.local_addr().unwrap().port();
        sock.set_read_timeout(Some(Duration::from_millis(2)))
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (cmds, rx) = mpsc::channel();
        let rec = received.clone();
        let thread =
            std::thread::spawn(move || run(sock, rtcp, codec, payload_type, te_pt, rx, rec));
        RtpPeer {
            port,
            codec,
            payload_type,
            received,
            cmds,
            thread: Some(thread),
        }
    }

    pub fn set_remote(&self, addr: SocketAddr) {
        let _ = self.cmds.send(Cmd::Remote(addr));
    }

    /// Queues 8 kHz audio (e.g. an in-band DTMF tone) to send from the next frame.
    pub fn send_audio(&self, pcm_8k: Vec<i16>) {
        let _ = self.cmds.send(Cmd::Audio(pcm_8k));
    }

    /// Sends one RFC 4733 keypress (marker, updates, 3 end packets).
    pub fn send_event(&self, digit: char, duration_ms: u32) {
        let digit = Digit::from_char(digit).expect("a DTMF key");
        let _ = self.cmds.send(Cmd::Event { digit, duration_ms });
    }

    /// Stops (or resumes) sending anything, as a phone on hold with `inactive` does.
    pub fn mute(&self, muted: bool) {
        let _ = self.cmds.send(Cmd::Mute(muted));
    }

    pub fn packets(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Count of packets received since `since`.
    pub fn packets_since(&self, since: Instant) -> usize {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.at >= since)
            .count()
    }

    /// Everything heard so far, decoded to 8 kHz and laid out by RTP timestamp (gaps are
    /// silence), so offsets are real time from the first packet.
    pub fn heard(&self) -> Vec<i16> {
        decode_stream(&self.packets(), self.codec, self.payload_type)
    }
}

impl Drop for RtpPeer {
    fn drop(&mut self) {
        let (tx, _) = mpsc::channel();
        self.cmds = tx;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn decode_stream(packets: &[Received], codec: Codec, payload_type: u8) -> Vec<i16> {
    let mut audio: Vec<&Received> = packets
        .iter()
        .filter(|p| p.payload_type == payload_type)
        .collect();
    let Some(first) = audio.first().map(|p| p.timestamp) else {
        return Vec::new();
    };
    audio.sort_by_key(|p| p.timestamp.wrapping_sub(first));
    let per_sample = codec.clock_rate() / 8000;
    let mut out: Vec<i16> = Vec::new();
    let mut opus = OpusDecoder::new(8000).ok();
    let mut pcm = Vec::new();
    for p in audio {
        let pos = (p.timestamp.wrapping_sub(first) / per_sample) as usize;
        if pos > out.len() + 8000 * 60 {
            continue; // nonsense timestamp; ignore
        }
        pcm.clear();
        match codec {
            Codec::Pcmu => g711::decode_ulaw(&p.payload, &mut pcm),
            Codec::Pcma => g711::decode_alaw(&p.payload, &mut pcm),
            Codec::Opus => {
                if let Some(d) = opus.as_mut() {
                    let _ = d.decode(&p.payload, &mut pcm);
                }
            }
        }
        if out.len() < pos + pcm.len() {
            out.resize(pos + pcm.len(), 0);
        }
        out[pos..pos + pcm.len()].copy_from_slice(&pcm);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn run(
    sock: UdpSocket,
    _rtcp: UdpSocket,
    codec: Codec,
    pt: u8,
    te_pt: Option<u8>,
    cmds: mpsc::Receiver<Cmd>,
    received: Arc<Mutex<Vec<Received>>>,
) {
    let mut remote: Option<SocketAddr> = None;
    let mut sender = RtpSender::new(rand::random(), rand::random(), rand::random());
    let step = codec.clock_rate() / 50;
    let mut queue: std::collections::VecDeque<i16> = Default::default();
    let mut event: Option<EventSender> = None;
    let mut muted = false;
    let mut opus = OpusEncoder::new().ok();
    let mut buf = vec![0u8; 2048];
    let mut out = Vec::with_capacity(1500);
    let mut next = Instant::now();
    loop {
        loop {
            match cmds.try_recv() {
                Ok(Cmd::Remote(a)) => remote = Some(a),
                Ok(Cmd::Audio(pcm)) => {
                    if codec == Codec::Opus {
                        let f = careline::media::resample::to_f32(&pcm);
                        let up = careline::media::resample::resample(&f, 8000, 48000)
                            .unwrap_or_default();
                        queue.extend(careline::media::resample::to_i16(&up));
                    } else {
                        queue.extend(pcm);
                    }
                }
                Ok(Cmd::Event { digit, duration_ms }) => {
                    event = Some(EventSender::new(
                        digit,
                        sender.timestamp,
                        step,
                        duration_ms * codec.clock_rate() / 1000,
                    ));
                }
                Ok(Cmd::Mute(m)) => muted = m,
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        // Receive until the next 20 ms send time.
        while Instant::now() < next {
            if let Ok((n, from)) = sock.recv_from(&mut buf)
                && let Ok(p) = RtpPacket::parse(&buf[..n])
            {
                received.lock().unwrap().push(Received {
                    at: Instant::now(),
                    from,
                    payload_type: p.payload_type,
                    marker: p.marker,
                    sequence: p.sequence,
                    timestamp: p.timestamp,
                    ssrc: p.ssrc,
                    payload: p.payload.to_vec(),
                });
            }
        }
        next += Duration::from_millis(20);
        let Some(dest) = remote else { continue };
        if muted {
            sender.timestamp = sender.timestamp.wrapping_add(step);
            continue;
        }
        if let (Some(ev), Some(te)) = (event.as_mut(), te_pt) {
            // RFC 4733 §2.5: events replace audio; packets of one event share its timestamp.
            let mut sent_any = false;
            while let Some(p) = ev.next_packet() {
                let saved = sender.timestamp;
                sender.timestamp = p.timestamp;
                sender.marker_pending = p.marker;
                sender.build(&mut out, te, &p.payload, 0);
                sender.timestamp = saved;
                let _ = sock.send_to(&out, dest);
                sent_any = true;
                // The end packets go out back to back; updates one per tick.
                let is_end = p.payload[1] & 0x80 != 0;
                if !is_end {
                    break;
                }
            }
            sender.timestamp = sender.timestamp.wrapping_add(step);
            if !sent_any {
                event = None;
            }
            continue;
        }
        let samples = if codec == Codec::Opus { 960 } else { 160 };
        let frame: Vec<i16> = (0..samples)
            .map(|_| queue.pop_front().unwrap_or(0))
            .collect();
        let payload: Vec<u8> = match codec {
            Codec::Pcmu => frame.iter().map(|&s| g711::linear_to_ulaw(s)).collect(),
            Codec::Pcma => frame.iter().map(|&s| g711::linear_to_alaw(s)).collect(),
            Codec::Opus => opus
                .as_mut()
                .and_then(|e| e.encode(&frame).ok().map(|p| p.to_vec()))
                .unwrap_or_default(),
        };
        sender.build(&mut out, pt, &payload, step);
        let _ = sock.send_to(&out, dest);
    }
}
