//! `webrtc-choice whip URL LEGS SECS`: LEGS browser-like clients (full-ICE `rtc` peers, each on
//! its own loopback UDP socket, all driven by this one thread) call a running Careline by WHIP
//! and stay on the line for SECS seconds, each sending a 20 ms PCMU frame every tick and
//! counting what it hears. Prints how many connected and the frames received; the caller of
//! this mode (benches/webrtc-ivr.sh) measures the server's CPU meanwhile. Pointed at a queue's
//! answer URL with `CARELINE_TOKEN` set, they are agents answering queued phone callers
//! (benches/bridged-calls.sh). With `CODEC=opus` they offer Opus alone and send real Opus
//! frames (a second of a 440 Hz tone with noise, encoded once by libopus and sent in a loop),
//! so the server decodes and encodes Opus for every frame of a bridged call.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crate::Peer;
use crate::rtc_peer::{client_accept, client_offer};

/// POSTs an offer; with `CARELINE_TOKEN` set, as that user (an agent answering a queue).
/// Returns the session's Location and the answer.
fn post(http: SocketAddr, path: &str, offer: &str) -> Result<(String, String), String> {
    let mut s = TcpStream::connect(http).map_err(|e| e.to_string())?;
    let auth = std::env::var("CARELINE_TOKEN")
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {http}\r\n{auth}Content-Type: application/sdp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{offer}",
        offer.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    let (head, body) = buf.split_once("\r\n\r\n").ok_or("no response")?;
    if !head.starts_with("HTTP/1.1 201") {
        return Err(head.lines().next().unwrap_or("").to_string());
    }
    let location = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.trim().to_string())
        })
        .ok_or("no Location")?;
    Ok((location, body.to_string()))
}

/// Hangs a session up, as a WHIP client does (RFC 9725 §4.3).
fn delete(http: SocketAddr, location: &str) {
    if let Ok(mut s) = TcpStream::connect(http) {
        let req = format!("DELETE {location} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
        let _ = s.write_all(req.as_bytes());
        let _ = s.read_to_end(&mut Vec::new());
    }
}

pub fn run(url: &str, legs: usize, secs: u64) {
    let (http, path) = url
        .strip_prefix("http://")
        .and_then(|u| u.split_once('/'))
        .map(|(h, p)| {
            (
                h.parse::<SocketAddr>().expect("URL host:port"),
                format!("/{p}"),
            )
        })
        .expect("an http://HOST:PORT/PATH URL");
    let opus_only = std::env::var("CODEC").is_ok_and(|c| c.eq_ignore_ascii_case("opus"));
    let start = Instant::now();
    let mut peers: Vec<(UdpSocket, Box<dyn Peer>, SocketAddr)> = Vec::new();
    let mut refused = 0;
    let mut sessions = Vec::new();
    for i in 0..legs {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("a loopback socket");
        sock.set_nonblocking(true).unwrap();
        let local = sock.local_addr().unwrap();
        let ssrc = 0x2000_0000 + i as u32;
        let (pc, sender, offer) = client_offer(Instant::now(), local, ssrc, opus_only);
        match post(http, &path, &offer) {
            Ok((location, answer)) => {
                sessions.push(location);
                let peer = client_accept(pc, sender, ssrc, answer, Instant::now(), opus_only);
                peers.push((sock, Box::new(peer), local));
            }
            Err(e) => {
                refused += 1;
                if refused == 1 {
                    eprintln!("refused: {e}");
                }
            }
        }
        // Pump what is there so early legs connect while later ones are placed.
        pump(&mut peers);
    }
    let placed = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && peers.iter().any(|p| !p.1.connected()) {
        pump(&mut peers);
        std::thread::sleep(Duration::from_millis(1));
    }
    let connected = peers.iter().filter(|p| p.1.connected()).count();
    let before: u64 = peers.iter().map(|p| p.1.frames_received()).sum();
    let frames: Vec<Vec<u8>> = if opus_only {
        opus_frames()
    } else {
        vec![vec![0xffu8; 160]]
    };
    let ticks = secs * 50;
    let t0 = Instant::now();
    println!("READY {connected}");
    for t in 0..ticks {
        let due = t0 + Duration::from_millis(20 * t);
        while Instant::now() < due {
            pump(&mut peers);
            std::thread::sleep(Duration::from_micros(500));
        }
        let now = Instant::now();
        for (_, p, _) in &mut peers {
            p.send_frame(now, t as u16, &frames[t as usize % frames.len()]);
        }
        pump(&mut peers);
    }
    let heard: u64 = peers.iter().map(|p| p.1.frames_received()).sum::<u64>() - before;
    for location in &sessions {
        delete(http, location);
    }
    println!(
        "legs {legs}: placed in {:.1} s, connected {connected}, refused {refused}, frames heard {heard} of {} expected ({:.2} % missing)",
        placed.as_secs_f64(),
        ticks * connected as u64,
        100.0 * (1.0 - heard as f64 / (ticks * connected as u64).max(1) as f64)
    );
}

fn pump(peers: &mut [(UdpSocket, Box<dyn Peer>, SocketAddr)]) {
    let mut buf = [0u8; 2048];
    let now = Instant::now();
    for (sock, peer, local) in peers.iter_mut() {
        if now >= peer.next_timeout() {
            peer.timeout(now);
        }
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            peer.receive(now, from, *local, &buf[..n]);
        }
        for d in peer.outbox_to() {
            let _ = sock.send_to(&d.1, d.0);
        }
    }
}

/// One second of speech-like audio (a 440 Hz tone with a little noise) as 50 Opus frames of
/// 20 ms, 48 kHz mono, at a browser's voice bitrate.
fn opus_frames() -> Vec<Vec<u8>> {
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
        .expect("an Opus encoder");
    let mut noise = 0x1234_5678u32;
    (0..50)
        .map(|f| {
            let pcm: Vec<i16> = (0..960)
                .map(|n| {
                    noise ^= noise << 13;
                    noise ^= noise >> 17;
                    noise ^= noise << 5;
                    let t = (f * 960 + n) as f32 / 48_000.0;
                    let tone = 6000.0 * (2.0 * std::f32::consts::PI * 440.0 * t).sin();
                    (tone + (noise % 1000) as f32 - 500.0) as i16
                })
                .collect();
            let mut out = vec![0u8; 400];
            let len = enc.encode(&pcm, &mut out).expect("encodes");
            out.truncate(len);
            out
        })
        .collect()
}
