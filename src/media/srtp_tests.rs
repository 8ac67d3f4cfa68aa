use super::*;

fn key(seed: u8, suite: SrtpSuite) -> MasterKey {
    let bytes: Vec<u8> = (0..suite.master_len())
        .map(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
        .collect();
    MasterKey::new(&bytes).expect("short enough")
}

/// Careline's transport and the phone's, keyed crosswise as SDES keys them.
fn pair(suite: SrtpSuite) -> (SrtpTransport, SrtpTransport) {
    let (a, b) = (key(1, suite), key(2, suite));
    let careline = SrtpTransport::new(SrtpKeys {
        suite,
        local: a.clone(),
        remote: b.clone(),
    })
    .expect("keys fit the suite");
    let phone = SrtpTransport::new(SrtpKeys {
        suite,
        local: b,
        remote: a,
    })
    .expect("keys fit the suite");
    (careline, phone)
}

fn rtp(ssrc: u32, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// A sender report with no blocks (RFC 3550 §6.4.1): SSRC, then 20 bytes of sender info.
fn rtcp(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0x33; 20]);
    p
}

fn tag_len(suite: SrtpSuite) -> usize {
    match suite {
        SrtpSuite::AeadAes256Gcm | SrtpSuite::AeadAes128Gcm => 16,
        SrtpSuite::AesCm256HmacSha1_80 | SrtpSuite::AesCm128HmacSha1_80 => 10,
        SrtpSuite::AesCm128HmacSha1_32 => 4,
    }
}

#[test]
fn every_suite_carries_rtp_and_rtcp_both_ways_encrypted() {
    let payload = [0x55u8; 160];
    for suite in SrtpSuite::ALL {
        let (careline, phone) = pair(suite);
        let (mut a, mut b) = (careline, phone);
        for flip in [false, true] {
            let (from, to) = if flip {
                (&mut b, &mut a)
            } else {
                (&mut a, &mut b)
            };
            let plain = rtp(7, 100, &payload);
            let mut packet = plain.clone();
            from.protect_rtp(&mut packet).unwrap();
            assert_eq!(packet.len(), plain.len() + tag_len(suite), "{suite}");
            assert_eq!(
                packet[..12],
                plain[..12],
                "{suite}: the header stays readable"
            );
            assert!(
                !packet[12..].windows(8).any(|w| w == [0x55; 8]),
                "{suite}: the payload is not sent in clear"
            );
            let mut heard = Vec::new();
            to.unprotect_rtp(&packet, &mut heard).unwrap();
            assert_eq!(heard, plain, "{suite}");

            let report = rtcp(7);
            let mut sealed = Vec::new();
            from.protect_rtcp(&report, &mut sealed).unwrap();
            assert_ne!(
                sealed[8..28],
                report[8..],
                "{suite}: the report is encrypted"
            );
            let mut opened = Vec::new();
            to.unprotect_rtcp(&sealed, &mut opened).unwrap();
            assert_eq!(opened, report, "{suite}");
        }
    }
}

#[test]
fn a_changed_byte_a_replay_or_the_wrong_key_is_refused() {
    for suite in SrtpSuite::ALL {
        let (mut careline, mut phone) = pair(suite);
        let mut packet = rtp(7, 1, &[1; 160]);
        phone.protect_rtp(&mut packet).unwrap();
        let mut heard = Vec::new();
        for at in [1, 5, 12, 100, packet.len() - 1] {
            let mut damaged = packet.clone();
            damaged[at] ^= 0x40;
            assert!(
                careline.unprotect_rtp(&damaged, &mut heard).is_err(),
                "{suite}: byte {at} changed"
            );
        }
        careline.unprotect_rtp(&packet, &mut heard).unwrap();
        assert!(
            careline.unprotect_rtp(&packet, &mut heard).is_err(),
            "{suite}: replay"
        );

        // A report whose E flag ("encrypted") was cleared, and one whose tag was replaced:
        // SRTCP is authenticated either way (RFC 3711 §3.4).
        let mut report = Vec::new();
        phone.protect_rtcp(&rtcp(7), &mut report).unwrap();
        let flag = report.len() - if suite.is_aead() { 4 } else { 14 };
        let mut clear_flag = report.clone();
        clear_flag[flag] &= 0x7f;
        assert!(
            careline.unprotect_rtcp(&clear_flag, &mut heard).is_err(),
            "{suite}"
        );
        let mut plain_report = rtcp(7);
        plain_report.extend_from_slice(&[0, 0, 0, 1]);
        plain_report.extend_from_slice(&[0; 10]);
        assert!(
            careline.unprotect_rtcp(&plain_report, &mut heard).is_err(),
            "{suite}"
        );
        careline.unprotect_rtcp(&report, &mut heard).unwrap();

        let mut stranger = SrtpTransport::new(SrtpKeys {
            suite,
            local: key(9, suite),
            remote: key(1, suite),
        })
        .unwrap();
        let mut forged = rtp(8, 1, &[1; 160]);
        stranger.protect_rtp(&mut forged).unwrap();
        assert!(
            careline.unprotect_rtp(&forged, &mut heard).is_err(),
            "{suite}"
        );
        for cut in [0, 4, 11, 12, 13] {
            assert!(careline.unprotect_rtp(&packet[..cut], &mut heard).is_err());
            assert!(
                careline
                    .unprotect_rtcp(&packet[..cut.min(8)], &mut heard)
                    .is_err()
            );
        }
    }
}

#[test]
fn late_packets_inside_the_window_pass_once() {
    let (mut careline, mut phone) = pair(SrtpSuite::AesCm128HmacSha1_80);
    let packets: Vec<Vec<u8>> = (0..200u16)
        .map(|seq| {
            let mut p = rtp(7, seq, &[seq as u8; 20]);
            phone.protect_rtp(&mut p).unwrap();
            p
        })
        .collect();
    let mut heard = Vec::new();
    // Out of order by up to 100 packets (well inside the 128-packet window).
    for seq in (0..100).chain((100..200).rev()) {
        careline.unprotect_rtp(&packets[seq], &mut heard).unwrap();
        assert_eq!(heard[12..], [seq as u8; 20]);
    }
    for seq in [0, 150, 199] {
        assert!(careline.unprotect_rtp(&packets[seq], &mut heard).is_err());
    }
}

#[test]
fn the_sequence_number_wraps_without_losing_the_stream() {
    // RFC 3711 §3.3.1: past 65535 the rollover counter counts on; both sides must agree or
    // every packet after the wrap fails its tag (after about 22 minutes of a call).
    for suite in [SrtpSuite::AesCm128HmacSha1_80, SrtpSuite::AeadAes256Gcm] {
        let (mut careline, mut phone) = pair(suite);
        let mut heard = Vec::new();
        for n in 0..40u32 {
            let seq = (65_520 + n) as u16;
            let mut p = rtp(7, seq, &[n as u8; 160]);
            phone.protect_rtp(&mut p).unwrap();
            careline.unprotect_rtp(&p, &mut heard).unwrap();
            assert_eq!(heard[12..], [n as u8; 160], "{suite} seq {seq}");
        }
    }
}

#[test]
fn strangers_with_random_sources_take_no_place_from_the_caller() {
    let suite = SrtpSuite::AesCm128HmacSha1_80;
    let (mut careline, mut phone) = pair(suite);
    let mut heard = Vec::new();
    // Packets that fail their tag, each from its own source, leave nothing behind...
    for ssrc in 1000..3000u32 {
        let mut bogus = rtp(ssrc, 1, &[0; 160]);
        bogus.extend_from_slice(&[0; 10]);
        assert!(careline.unprotect_rtp(&bogus, &mut heard).is_err());
        assert!(careline.unprotect_rtcp(&rtcp(ssrc), &mut heard).is_err());
    }
    assert!(careline.inbound.is_empty());
    // ... so the caller's sources still fit, up to the bound.
    for ssrc in 0..MAX_SOURCES as u32 {
        let mut p = rtp(ssrc, 1, &[2; 160]);
        phone.protect_rtp(&mut p).unwrap();
        careline.unprotect_rtp(&p, &mut heard).unwrap();
    }
    let mut one_more = rtp(MAX_SOURCES as u32, 1, &[2; 160]);
    phone.protect_rtp(&mut one_more).unwrap();
    assert!(careline.unprotect_rtp(&one_more, &mut heard).is_err());
    assert_eq!(careline.inbound.len(), MAX_SOURCES);
}

#[test]
fn keys_must_fit_the_suite_and_never_print() {
    let short = MasterKey::new(&[3; 30]).unwrap();
    let err = SrtpTransport::new(SrtpKeys {
        suite: SrtpSuite::AeadAes256Gcm,
        local: short.clone(),
        remote: short.clone(),
    })
    .err()
    .expect("30 bytes do not key AES-256-GCM");
    assert!(err.to_string().contains("44 bytes"), "{err}");
    assert!(MasterKey::new(&[0; MAX_MASTER_LEN + 1]).is_none());
    for suite in SrtpSuite::ALL {
        assert_eq!(SrtpSuite::from_name(suite.name()), Some(suite));
    }
    let shown = format!(
        "{:?}",
        SrtpKeys {
            suite: SrtpSuite::AesCm128HmacSha1_80,
            local: short.clone(),
            remote: short,
        }
    );
    assert!(
        shown.contains("30 bytes") && !shown.contains("[3"),
        "{shown}"
    );
    assert_eq!(SrtpSuite::from_name("F8_128_HMAC_SHA1_80"), None);
}

#[test]
fn a_new_peer_key_leaves_careline_s_own_stream_as_it_was() {
    let suite = SrtpSuite::AesCm128HmacSha1_80;
    let (mut careline, mut phone) = pair(suite);
    let mut heard = Vec::new();
    // Careline's stream runs past a sequence wrap before the re-offer...
    for n in 0..20u32 {
        let mut p = rtp(9, (65_530 + n) as u16, &[1; 20]);
        careline.protect_rtp(&mut p).unwrap();
        phone.unprotect_rtp(&p, &mut heard).unwrap();
    }
    // ... the phone re-keys its own direction only ...
    let new_phone_key = key(7, suite);
    let keys = SrtpKeys {
        suite,
        local: careline.keys().local.clone(),
        remote: new_phone_key.clone(),
    };
    careline.update(keys).unwrap();
    let mut phone_after = SrtpTransport::new(SrtpKeys {
        suite,
        local: new_phone_key,
        remote: careline.keys().local.clone(),
    })
    .unwrap();
    // ... and Careline's packets after the wrap still pass at the phone (same context), while
    // the phone's new packets pass at Careline.
    let mut p = rtp(9, 14, &[2; 20]);
    careline.protect_rtp(&mut p).unwrap();
    phone.unprotect_rtp(&p, &mut heard).unwrap();
    let mut q = rtp(7, 1, &[3; 20]);
    phone_after.protect_rtp(&mut q).unwrap();
    careline.unprotect_rtp(&q, &mut heard).unwrap();
    assert_eq!(heard[12..], [3; 20]);
}
