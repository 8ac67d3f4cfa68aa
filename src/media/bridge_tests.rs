//! The relay core on synthetic audio, one push and one pull per 20 ms tick as the media clock
//! drives it: codec pairs (audio checked by its tone, not by bytes, where a lossy codec is
//! in the way), frame lengths, clock drift, loss on one side and mute.

use super::*;
use crate::media::codec::opus::{OpusDecoder, OpusEncoder};
use crate::media::recognize::tone_share;

/// `ms` of a `hz` tone at 8 kHz, amplitude about -10 dBFS, starting at sample `from`.
fn tone(hz: f32, from: usize, samples: usize) -> Vec<i16> {
    (from..from + samples)
        .map(|n| (10_000.0 * (2.0 * std::f32::consts::PI * hz * n as f32 / 8000.0).sin()) as i16)
        .collect()
}

fn mulaw(pcm: &[i16]) -> Vec<u8> {
    let mut out = Vec::new();
    Law::Mu.encode(pcm, &mut out);
    out
}

fn rms(pcm: &[i16]) -> f64 {
    (pcm.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / pcm.len().max(1) as f64).sqrt()
}

#[test]
fn same_codec_frames_pass_as_they_are_and_a_lost_one_is_not_invented() {
    for codec in [Codec::Pcmu, Codec::Pcma, Codec::Opus] {
        let mut relay = Relay::new(codec, 20, codec).unwrap();
        assert!(relay.passes_through(), "{codec}");
        for tick in 0..100u8 {
            let payload = vec![tick; 37 + tick as usize];
            if tick % 10 == 7 {
                relay.push(Received::Missing);
                assert_eq!(relay.pull(), None, "{codec}: a lost frame stays lost");
            } else {
                relay.push(Received::Frame(&payload));
                assert_eq!(relay.pull(), Some(&payload[..]), "{codec} tick {tick}");
            }
            assert_eq!(relay.pull(), None, "one packet per frame");
        }
    }
    // A 30 ms phone is not passed through even to its own codec: its packets would be 30 ms.
    assert!(
        !Relay::new(Codec::Pcmu, 30, Codec::Pcmu)
            .unwrap()
            .passes_through()
    );
}

#[test]
fn a_phone_on_pcmu_reaches_a_browser_on_opus_and_back() {
    // Phone to browser: µ-law frames in, Opus packets out; the browser decodes the tone.
    let mut to_browser = Relay::new(Codec::Pcmu, 20, Codec::Opus).unwrap();
    let mut browser = OpusDecoder::new(8000).unwrap();
    let mut heard = Vec::new();
    let mut pcm = Vec::new();
    for tick in 0..50 {
        to_browser.push(Received::Frame(&mulaw(&tone(1000.0, tick * 160, 160))));
        let packet = to_browser.pull().expect("a packet every tick");
        assert!(
            packet.len() < 160,
            "Opus, not G.711: {} bytes",
            packet.len()
        );
        browser.decode(packet, &mut pcm).unwrap();
        assert_eq!(pcm.len(), 160, "20 ms per packet");
        heard.extend_from_slice(&pcm);
    }
    // After the codec's start-up, the browser hears the phone's tone at its level.
    let settled = &heard[1600..];
    assert!(
        tone_share(settled, 1000.0, 8000) > 0.9,
        "{}",
        tone_share(settled, 1000.0, 8000)
    );
    let level = rms(settled) / rms(&tone(1000.0, 0, 6400));
    assert!((0.7..1.3).contains(&level), "level {level}");

    // Browser to phone: Opus packets (as a browser sends, from 48 kHz) in, µ-law out.
    let mut to_phone = Relay::new(Codec::Opus, 20, Codec::Pcmu).unwrap();
    let mut browser_mic = OpusEncoder::new().unwrap();
    let mut heard = Vec::new();
    for tick in 0..50 {
        let at48: Vec<i16> = (0..960)
            .map(|n| {
                let t = (tick * 960 + n) as f32 / 48000.0;
                (10_000.0 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()) as i16
            })
            .collect();
        let packet = browser_mic.encode(&at48).unwrap().to_vec();
        to_phone.push(Received::Frame(&packet));
        let bytes = to_phone.pull().expect("a packet every tick");
        assert_eq!(bytes.len(), 160, "20 ms of G.711");
        Law::Mu.decode(bytes, &mut heard);
    }
    let settled = &heard[1600..];
    assert!(
        tone_share(settled, 440.0, 8000) > 0.9,
        "{}",
        tone_share(settled, 440.0, 8000)
    );
    assert!(tone_share(settled, 1000.0, 8000) < 0.01);
}

#[test]
fn g711_laws_convert_without_loss_beyond_the_laws_own_steps() {
    let mut relay = Relay::new(Codec::Pcmu, 20, Codec::Pcma).unwrap();
    for tick in 0..10 {
        let sent = tone(700.0, tick * 160, 160);
        relay.push(Received::Frame(&mulaw(&sent)));
        let mut got = Vec::new();
        Law::A.decode(relay.pull().unwrap(), &mut got);
        for (a, b) in sent.iter().zip(&got) {
            // Within half a step of each law (µ-law's is 256 near 10,000, A-law's 512).
            assert!((*a as i32 - *b as i32).abs() <= 128 + 256, "{a} vs {b}");
        }
    }
}

/// A phone sending 30 ms packets: its audio leaves in 20 ms packets, sample for sample, with
/// no gap once the first lump is in hand.
#[test]
fn longer_frames_are_cut_into_20_ms_packets_without_gaps() {
    let mut relay = Relay::new(Codec::Pcmu, 30, Codec::Pcmu).unwrap();
    // A ramp of µ-law codes survives decoding and encoding unchanged.
    let codes: Vec<u8> = (0..60_000)
        .map(|i| (i % 256) as u8)
        .filter(|&c| c != 0x7F)
        .collect();
    let mut sent = 0;
    let mut out = Vec::new();
    let mut gaps_after_start = 0;
    // The source's jitter buffer plays a 30 ms frame whenever one is due on the 20 ms ticks.
    for tick in 0..300u32 {
        let now = tick * 20;
        while sent * 30 <= now && (sent + 1) * 240 <= codes.len() as u32 {
            let frame = &codes[(sent * 240) as usize..((sent + 1) * 240) as usize];
            relay.push(Received::Frame(frame));
            sent += 1;
        }
        match relay.pull() {
            Some(p) => {
                assert_eq!(p.len(), 160);
                out.extend_from_slice(p);
            }
            None if !out.is_empty() && tick < 290 => gaps_after_start += 1,
            None => {}
        }
    }
    assert_eq!(gaps_after_start, 0);
    assert!(out.len() >= 160 * 280);
    assert_eq!(out[..], codes[..out.len()], "every sample, in order");
}

/// The far ends' clocks are not Careline's: a sender 2 % fast costs a dropped frame now and
/// then, never a growing delay; one 2 % slow costs a silent packet now and then.
#[test]
fn clock_drift_between_the_legs_stays_bounded() {
    for (codec_in, codec_out) in [(Codec::Pcmu, Codec::Pcmu), (Codec::Pcmu, Codec::Pcma)] {
        // Fast: 51 frames for every 50 ticks, frame k carrying k.
        let mut relay = Relay::new(codec_in, 20, codec_out).unwrap();
        let mut k = 0u32;
        let mut last = 0u32;
        for tick in 0..5_000u32 {
            let due = (tick + 1) * 51 / 50;
            while k < due {
                let sample = ((k % 100) * 300) as i16;
                relay.push(Received::Frame(&mulaw(&[sample; 160])));
                k += 1;
            }
            let p = relay.pull().expect("a packet every tick");
            let mut pcm = Vec::new();
            match codec_out {
                Codec::Pcma => Law::A.decode(p, &mut pcm),
                _ => Law::Mu.decode(p, &mut pcm),
            }
            last = ((pcm[80] as f32 / 300.0).round() as u32) % 100;
        }
        // The frame played last is within the queue's bound of the newest one pushed.
        let newest = (k - 1) % 100;
        let behind = (newest + 100 - last) % 100;
        assert!(
            behind * FRAME_MS <= MAX_QUEUED_MS,
            "{codec_in}->{codec_out}: {behind} frames behind"
        );

        // Slow: 49 frames for every 50 ticks.
        let mut relay = Relay::new(codec_in, 20, codec_out).unwrap();
        let (mut k, mut silent) = (0u32, 0);
        for tick in 0..5_000u32 {
            let due = (tick + 1) * 49 / 50;
            while k < due {
                relay.push(Received::Frame(&mulaw(&[1000; 160])));
                k += 1;
            }
            if relay.pull().is_none() {
                silent += 1;
            }
        }
        assert!(
            (99..=101).contains(&silent),
            "{codec_in}->{codec_out}: {silent}"
        );
    }
}

#[test]
fn a_lost_frame_keeps_the_target_timing() {
    let mut relay = Relay::new(Codec::Pcmu, 20, Codec::Opus).unwrap();
    for tick in 0..20 {
        if tick == 10 {
            relay.push(Received::Missing);
        } else {
            relay.push(Received::Frame(&mulaw(&tone(1000.0, tick * 160, 160))));
        }
        assert!(relay.pull().is_some(), "tick {tick}: still a packet");
    }
    // Opus on the source side conceals with its own PLC.
    let mut relay = Relay::new(Codec::Opus, 20, Codec::Pcmu).unwrap();
    let mut enc = OpusEncoder::with_rate(8000).unwrap();
    for tick in 0..20 {
        if tick == 10 {
            relay.push(Received::Missing);
        } else {
            let packet = enc.encode(&tone(1000.0, tick * 160, 160)).unwrap().to_vec();
            relay.push(Received::Frame(&packet));
        }
        let p = relay.pull().expect("a packet every tick");
        assert_eq!(p.len(), 160);
    }
    // A corrupt Opus packet is concealed like a lost one, never a panic or a gap.
    relay.push(Received::Frame(&[0xFF; 3]));
    assert_eq!(relay.pull().map(<[u8]>::len), Some(160));
}

#[test]
fn muted_relays_forward_nothing_and_do_not_replay_what_came_before() {
    for to in [Codec::Pcmu, Codec::Opus] {
        let mut relay = Relay::new(Codec::Pcmu, 20, to).unwrap();
        relay.push(Received::Frame(&[1; 160]));
        relay.push(Received::Frame(&[2; 160]));
        relay.set_muted(true);
        assert!(relay.is_muted());
        for _ in 0..5 {
            relay.push(Received::Frame(&[3; 160]));
            assert_eq!(relay.pull(), None);
        }
        relay.set_muted(false);
        assert_eq!(relay.pull(), None, "{to}: nothing from before the mute");
        relay.push(Received::Frame(&[4; 160]));
        let p = relay.pull().expect("flows again").to_vec();
        if to == Codec::Pcmu {
            assert_eq!(p, [4; 160]);
        }
    }
}
