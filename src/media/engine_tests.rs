//! The media clock with real loopback sockets: two "phones" (plain UDP sockets) talk to two
//! legs on different media threads, and a bridge joins the legs.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use super::*;
use crate::media::codec::{Codec, Law};
use crate::media::dtmf::InbandDtmf;
use crate::media::recognize::tone_share;
use crate::media::rtp::RtpPacket;
use crate::media::srtp::{SrtpKeys, SrtpTransport};

fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

fn sockets() -> RtpSockets {
    let rtp = socket();
    let port = rtp.local_addr().unwrap().port();
    RtpSockets {
        rtp,
        rtcp: socket(),
        port,
    }
}

fn engine() -> MediaEngine {
    engine_with(Arc::new(Metrics::new()))
}

fn engine_with(metrics: Arc<Metrics>) -> MediaEngine {
    MediaEngine::start(
        2,
        PortAllocator::new(2, 3),
        Arc::new(Silence::new().unwrap()),
        metrics,
    )
}

/// A phone on loopback: sends a tone as RTP every 20 ms from a thread, keeps what it hears.
struct Phone {
    socket: UdpSocket,
    law: Law,
    srtp: Option<PhoneSrtp>,
}

/// An SRTP phone's side of SDES: the keys its leg gets, and the phone's own transport for
/// what it sends and for what it hears.
struct PhoneSrtp {
    leg_keys: SrtpKeys,
    send: std::sync::Mutex<SrtpTransport>,
    hear: std::sync::Mutex<SrtpTransport>,
}

impl Phone {
    fn new(law: Law) -> Phone {
        Phone {
            socket: socket(),
            law,
            srtp: None,
        }
    }

    fn with_srtp(law: Law, suite: crate::media::srtp::SrtpSuite) -> Phone {
        use crate::media::srtp::MasterKey;
        let key = |seed: u8| MasterKey::new(&vec![seed; suite.master_len()]).unwrap();
        let (careline, phone) = (key(0x11), key(0x22));
        let phone_keys = SrtpKeys {
            suite,
            local: phone.clone(),
            remote: careline.clone(),
        };
        Phone {
            srtp: Some(PhoneSrtp {
                leg_keys: SrtpKeys {
                    suite,
                    local: careline,
                    remote: phone,
                },
                send: SrtpTransport::new(phone_keys.clone()).unwrap().into(),
                hear: SrtpTransport::new(phone_keys).unwrap().into(),
            }),
            ..Phone::new(law)
        }
    }

    fn params(&self) -> LegParams {
        LegParams {
            codec: if self.law == Law::Mu {
                Codec::Pcmu
            } else {
                Codec::Pcma
            },
            payload_type: if self.law == Law::Mu { 0 } else { 8 },
            telephone_event: None,
            remote_rtp: Some(self.socket.local_addr().unwrap()),
            remote_rtcp: None,
            send: true,
            receive: true,
            ptime_ms: 20,
            srtp: self.srtp.as_ref().map(|s| s.leg_keys.clone()),
        }
    }

    /// Sends `hz` to `port` until `stop` is set.
    fn talk(&self, hz: f32, port: u16, stop: &std::sync::atomic::AtomicBool) {
        let socket = self.socket.try_clone().unwrap();
        let dest = SocketAddr::from(([127, 0, 0, 1], port));
        let mut n = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let pcm: Vec<i16> = (0..160)
                .map(|i| {
                    let t = (n * 160 + i) as f32 / 8000.0;
                    (8000.0 * (2.0 * std::f32::consts::PI * hz * t).sin()) as i16
                })
                .collect();
            let mut packet = vec![0x80, self.params().payload_type];
            packet.extend_from_slice(&(n as u16).to_be_bytes());
            packet.extend_from_slice(&(n * 160).to_be_bytes());
            packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            self.law.encode(&pcm, &mut packet);
            if let Some(srtp) = &self.srtp {
                srtp.send.lock().unwrap().protect_rtp(&mut packet).unwrap();
            }
            let _ = socket.send_to(&packet, dest);
            n += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The audio of the RTP packets waiting on the socket, in arrival order.
    fn hear(&self) -> Vec<i16> {
        let mut buf = [0u8; 1500];
        let mut pcm = Vec::new();
        let mut plain = Vec::new();
        while let Ok(n) = self.socket.recv(&mut buf) {
            let packet = match &self.srtp {
                None => &buf[..n],
                Some(srtp) => match srtp
                    .hear
                    .lock()
                    .unwrap()
                    .unprotect_rtp(&buf[..n], &mut plain)
                {
                    Ok(()) => &plain[..],
                    Err(_) => continue,
                },
            };
            if let Ok(p) = RtpPacket::parse(packet) {
                self.law.decode(p.payload, &mut pcm);
            }
        }
        pcm
    }

    /// Waits (up to 20 s) until the last 200 ms heard are mostly `hz`.
    fn wait_for_tone(&self, hz: f32) -> bool {
        self.wait_for(|pcm| tone_share(pcm, hz, 8000) > 0.8)
    }

    fn wait_for(&self, good: impl Fn(&[i16]) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut heard: Vec<i16> = Vec::new();
        while Instant::now() < deadline {
            heard.extend(self.hear());
            if heard.len() >= 1600 && good(&heard[heard.len() - 1600..]) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

fn silent(pcm: &[i16]) -> bool {
    pcm.iter().all(|&x| x.abs() < 64)
}

fn options() -> LegOptions {
    LegOptions {
        inband: InbandDtmf::Never,
        jitter_ms: 40,
        rtp_timeout_ms: 0,
        cname: "test".into(),
    }
}

/// Opens a leg for each phone on `engine`, has the µ-law one say 1000 Hz and the A-law one
/// 440 Hz to its leg while `run` runs, and hands the legs back.
fn while_talking(
    engine: &MediaEngine,
    mu: &Phone,
    alaw: &Phone,
    run: impl FnOnce(&LegHandle, &mut LegHandle) -> Result<(), MediaError>,
) -> (LegHandle, LegHandle) {
    let a = engine.open(sockets(), mu.params(), options()).unwrap();
    let mut b = engine.open(sockets(), alaw.params(), options()).unwrap();
    let (port_a, port_b) = (a.local_port, b.local_port);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| mu.talk(1000.0, port_a, &stop));
        scope.spawn(|| alaw.talk(440.0, port_b, &stop));
        let result = tokio::task::block_in_place(|| run(&a, &mut b));
        stop.store(true, Ordering::Relaxed);
        result.unwrap();
    });
    (a, b)
}

/// A µ-law phone and an A-law phone, their legs on two different media clocks: until they
/// are bridged each hears its own silence; bridged, each hears the other's tone (through the
/// A-law/µ-law conversion); parted again, silence; a bridged leg whose peer is closed goes
/// back to its own silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridged_legs_carry_each_others_audio_across_media_clocks() {
    let engine = engine();
    let (mu, alaw) = (Phone::new(Law::Mu), Phone::new(Law::A));
    let (a, b) = while_talking(&engine, &mu, &alaw, |a, b| {
        assert_ne!(
            a.worker_index, b.worker_index,
            "the legs start on different clocks"
        );
        assert!(alaw.wait_for(silent), "before the bridge: silence");
        tokio::runtime::Handle::current().block_on(engine.bridge(a, b))?;
        assert_eq!(a.worker_index, b.worker_index);
        assert!(
            alaw.wait_for_tone(1000.0),
            "the A-law phone hears the µ-law one"
        );
        assert!(mu.wait_for_tone(440.0), "and the other way round");
        b.unbridge();
        assert!(alaw.wait_for(silent), "parted: silence again");
        assert!(mu.wait_for(silent));
        tokio::runtime::Handle::current().block_on(engine.bridge(a, b))?;
        assert!(alaw.wait_for_tone(1000.0), "bridged again");
        Ok(())
    });
    let summary =
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(a.close()));
    assert!(
        summary.packets_received > 0 && summary.packets_sent > 0,
        "{summary:?}"
    );
    assert!(
        alaw.wait_for(silent),
        "a leg whose peer is gone sends its own silence"
    );
    drop(b);
}

/// Two SRTP phones (AES-CM with HMAC-SHA1 and AES-256-GCM), bridged: each hears the other's
/// tone only by decrypting what Careline sent with the keys SDES gave it, so the audio is
/// encrypted and signed both ways; plain RTP sent to an SRTP leg from the phone's own address
/// is dropped and counted, and never reaches the other side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtp_legs_carry_audio_encrypted_and_refuse_plain_packets() {
    use crate::media::srtp::SrtpSuite;
    let metrics = Arc::new(Metrics::new());
    let engine = engine_with(metrics.clone());
    let mu = Phone::with_srtp(Law::Mu, SrtpSuite::AesCm128HmacSha1_80);
    let alaw = Phone::with_srtp(Law::A, SrtpSuite::AeadAes256Gcm);
    let (_a, b) = while_talking(&engine, &mu, &alaw, |a, b| {
        tokio::runtime::Handle::current().block_on(engine.bridge(a, b))?;
        assert!(
            alaw.wait_for_tone(1000.0),
            "the GCM phone hears the AES-CM one"
        );
        assert!(mu.wait_for_tone(440.0), "and the other way round");
        // Plain RTP of another tone from the µ-law phone's own socket.
        let dest = SocketAddr::from(([127, 0, 0, 1], a.local_port));
        let clear = Phone::new(Law::Mu);
        for n in 0..50u16 {
            let mut packet = vec![0x80, 0];
            packet.extend_from_slice(&(30_000 + n).to_be_bytes());
            packet.extend_from_slice(&[0; 4]);
            packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            packet.extend_from_slice(&[0x10; 160]);
            mu.socket.send_to(&packet, dest).unwrap();
            clear.socket.send_to(&packet, dest).unwrap();
        }
        let refused = || {
            metrics
                .srtp_packets_refused
                .get_or_create(&vec![("kind", "rtp")])
                .get()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while refused() < 100 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(refused(), 100, "plain packets counted as refused");
        assert!(
            alaw.wait_for_tone(1000.0),
            "the bridge still carries the phone's tone"
        );
        Ok(())
    });
    drop(b);
}

/// Three phones: two bridged, then a third joins them (a supervisor barging in). In
/// conference each hears the other two and not itself; muted, the third is heard by nobody
/// but still hears both (listening in); when it leaves, the first two are back to hearing
/// each other alone, and when one of those leaves too, the last is alone with its silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_leg_joins_a_bridge_and_everyone_hears_the_others() {
    let engine = engine();
    let (mu, alaw, third) = (Phone::new(Law::Mu), Phone::new(Law::A), Phone::new(Law::Mu));
    let mut c = engine.open(sockets(), third.params(), options()).unwrap();
    let port_c = c.local_port;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let both = |pcm: &[i16], x: f32, y: f32| {
        tone_share(pcm, x, 8000) > 0.2 && tone_share(pcm, y, 8000) > 0.2
    };
    let not = |pcm: &[i16], own: f32| tone_share(pcm, own, 8000) < 0.05;
    std::thread::scope(|scope| {
        scope.spawn(|| third.talk(1800.0, port_c, &stop));
        let (a, _b) = while_talking(&engine, &mu, &alaw, |a, b| {
            let rt = tokio::runtime::Handle::current();
            rt.block_on(engine.bridge(a, b))?;
            assert!(alaw.wait_for_tone(1000.0), "bridged first");
            assert!(third.wait_for(silent), "the third hears nothing yet");
            rt.block_on(engine.join(a, &mut c))?;
            assert!(
                mu.wait_for(|p| both(p, 440.0, 1800.0) && not(p, 1000.0)),
                "the µ-law phone hears the other two, not itself"
            );
            assert!(
                alaw.wait_for(|p| both(p, 1000.0, 1800.0) && not(p, 440.0)),
                "the A-law phone hears the other two"
            );
            assert!(
                third.wait_for(|p| both(p, 1000.0, 440.0) && not(p, 1800.0)),
                "the third hears the two it joined"
            );
            // Listening in: muted, the third is heard by nobody and hears both.
            c.command(LegCommand::Mute(true));
            assert!(mu.wait_for(|p| not(p, 1800.0) && tone_share(p, 440.0, 8000) > 0.5));
            assert!(alaw.wait_for(|p| not(p, 1800.0) && tone_share(p, 1000.0, 8000) > 0.5));
            assert!(third.wait_for(|p| both(p, 1000.0, 440.0)));
            // The third leaves: the two hear each other alone again.
            c.unbridge();
            assert!(alaw.wait_for_tone(1000.0));
            assert!(mu.wait_for_tone(440.0));
            assert!(third.wait_for(silent), "out of it: silence");
            // One of the two leaves: the conference is over, the last is alone.
            b.unbridge();
            assert!(mu.wait_for(silent), "alone: its own silence");
            Ok(())
        });
        stop.store(true, Ordering::Relaxed);
        drop(a);
    });
}
