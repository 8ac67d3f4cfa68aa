//! A pair of str0m peers: the server ICE-lite and answering, the client offering one audio m-line.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

use crate::{Peer, server};

pub struct Str0mPeer {
    rtc: Rtc,
    mid: Option<Mid>,
    outbox: Vec<Vec<u8>>,
    next: Instant,
    connected: bool,
    received: u64,
    failed: bool,
}

fn config() -> str0m::RtcConfig {
    Rtc::builder()
        .clear_codecs()
        .enable_opus(true, false)
        .enable_pcmu(true, false)
        .enable_pcma(true, false)
}

impl Str0mPeer {
    fn new(rtc: Rtc, now: Instant) -> Self {
        let mut p = Str0mPeer {
            rtc,
            mid: None,
            outbox: Vec::new(),
            next: now,
            connected: false,
            received: 0,
            failed: false,
        };
        p.drain(now);
        p
    }

    /// Drains `poll_output` to its timeout, as str0m requires after every mutation.
    fn drain(&mut self, now: Instant) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next = t;
                    return;
                }
                Ok(Output::Transmit(t)) => self.outbox.push(t.contents.to_vec()),
                Ok(Output::Event(e)) => match e {
                    Event::Connected => self.connected = true,
                    Event::MediaAdded(m) => self.mid = Some(m.mid),
                    Event::MediaData(_) => self.received += 1,
                    _ => {}
                },
                Err(e) => {
                    if !self.failed {
                        eprintln!("str0m: {e}");
                    }
                    self.failed = true;
                    self.next = now + Duration::from_secs(3600);
                    return;
                }
            }
        }
    }
}

impl Peer for Str0mPeer {
    fn receive(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        let Ok(r) = Receive::new(Protocol::Udp, from, to, data) else {
            return;
        };
        if self.rtc.handle_input(Input::Receive(now, r)).is_ok() {
            self.drain(now);
        }
    }

    fn timeout(&mut self, now: Instant) {
        if self.rtc.handle_input(Input::Timeout(now)).is_ok() {
            self.drain(now);
        }
    }

    fn send_frame(&mut self, now: Instant, seq: u16, frame: &[u8]) {
        let Some(mid) = self.mid else { return };
        let Some(writer) = self.rtc.writer(mid) else {
            return;
        };
        let Some(pt) = writer
            .payload_params()
            .find(|p| p.spec().codec == Codec::PCMU)
            .map(|p| p.pt())
        else {
            return;
        };
        let time = MediaTime::new(u64::from(seq) * 160, Frequency::EIGHT_KHZ);
        if writer.write(pt, now, time, frame.to_vec()).is_ok() {
            self.drain(now);
        }
    }

    fn outbox(&mut self) -> Vec<Vec<u8>> {
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
    let mut client = config().build(now);
    client.add_local_candidate(Candidate::host(client_addr, "udp").expect("client candidate"));
    let mut change = client.sdp_api();
    let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = change.apply().expect("an offer");
    let offer_text = offer.to_sdp_string();

    let answer_text = server(|| {
        let mut rtc = config().set_ice_lite(true).build(now);
        rtc.add_local_candidate(Candidate::host(server_addr, "udp").expect("server candidate"));
        let offer = SdpOffer::from_sdp_string(&offer_text).expect("offer parses");
        let answer = rtc.sdp_api().accept_offer(offer).expect("offer accepted");
        (answer.to_sdp_string(), rtc)
    });
    let (answer_text, server_rtc) = answer_text;
    let answer = SdpAnswer::from_sdp_string(&answer_text).expect("answer parses");
    client
        .sdp_api()
        .accept_answer(pending, answer)
        .expect("answer accepted");
    let server_peer = server(|| Str0mPeer::new(server_rtc, now));
    let mut client_peer = Str0mPeer::new(client, now);
    client_peer.mid = Some(mid);
    (Box::new(server_peer), Box::new(client_peer))
}
