use std::time::Duration;

use super::*;

/// Feeds packets `seqs` of an 8 kHz, 20 ms stream arriving exactly on time.
fn feed(st: &mut ReceiveStats, seqs: impl IntoIterator<Item = u16>) {
    for s in seqs {
        let ts = u32::from(s) * 160;
        st.on_packet(s, ts, u64::from(s) * 20_000);
    }
}

#[test]
fn probation_needs_two_sequential_packets() {
    let mut st = ReceiveStats::new(8000);
    assert!(!st.on_packet(1000, 0, 0));
    assert!(!st.is_valid());
    assert_eq!(
        (st.expected(), st.received(), st.extended_highest_seq()),
        (0, 0, 0)
    );
    // Not in sequence: probation starts over from this packet.
    assert!(!st.on_packet(2000, 0, 0));
    assert!(st.on_packet(2001, 160, 20_000));
    assert!(st.is_valid());
    assert_eq!(
        (st.expected(), st.received(), st.extended_highest_seq()),
        (1, 1, 2001)
    );
    assert!(st.on_packet(2002, 320, 40_000));
    assert_eq!(
        (st.expected(), st.received(), st.cumulative_lost()),
        (2, 2, 0)
    );
}

#[test]
fn loss_fraction_and_cumulative_loss_with_known_drops() {
    let mut st = ReceiveStats::new(8000);
    // 0 is used up by probation; 1..=100 expected, 10 of them dropped.
    let dropped = [5u16, 6, 7, 20, 33, 50, 51, 70, 88, 99];
    feed(&mut st, (0..=100).filter(|s| !dropped.contains(s)));
    assert_eq!(st.expected(), 100);
    assert_eq!(st.cumulative_lost(), 10);
    let rb = st.report_block(0xABCD, 0);
    assert_eq!(rb.ssrc, 0xABCD);
    assert_eq!(rb.fraction_lost, 25, "10/100 * 256 = 25.6, truncated");
    assert_eq!(rb.cumulative_lost, 10);
    assert_eq!(rb.extended_highest_seq, 100);
    // Next interval: 101..=150 with 5 lost -> 5/50 * 256 = 25.6 -> 25; cumulative 15.
    feed(&mut st, (101..=150).filter(|s| s % 10 != 3));
    let rb = st.report_block(0xABCD, 0);
    assert_eq!((rb.fraction_lost, rb.cumulative_lost), (25, 15));
    // Nothing new: the interval is empty, fraction 0, cumulative unchanged.
    let rb = st.report_block(0xABCD, 0);
    assert_eq!((rb.fraction_lost, rb.cumulative_lost), (0, 15));
    // Interval with all packets: 0.
    feed(&mut st, 151..=170);
    assert_eq!(st.report_block(0xABCD, 0).fraction_lost, 0);
}

#[test]
fn duplicates_make_loss_negative_and_fraction_zero() {
    let mut st = ReceiveStats::new(8000);
    feed(&mut st, 0..=10);
    feed(&mut st, 5..=7); // reordered/duplicate within MAX_MISORDER: counted, max unchanged
    assert_eq!(st.extended_highest_seq(), 10);
    assert_eq!(st.cumulative_lost(), -3);
    let rb = st.report_block(1, 0);
    assert_eq!((rb.fraction_lost, rb.cumulative_lost), (0, -3));
    // The negative value survives the 24-bit field.
    let mut buf = [0u8; 64];
    let n = write_rr(&mut buf, 9, &[rb]).unwrap();
    let p = parse_compound(&buf[..n]).unwrap().next().unwrap();
    let RtcpPacket::ReceiverReport { mut reports, .. } = p else {
        panic!("{p:?}")
    };
    assert_eq!(reports.next().unwrap().cumulative_lost, -3);
}

#[test]
fn sequence_wraparound_counts_cycles() {
    let mut st = ReceiveStats::new(8000);
    let seqs: Vec<u16> = (0..20u16)
        .map(|i| 65530u16.wrapping_add(i))
        .filter(|&s| s != 2)
        .collect();
    for (i, &s) in seqs.iter().enumerate() {
        assert!(st.on_packet(s, i as u32 * 160, i as u64 * 20_000) || i == 0);
    }
    // Last seq is 65530 + 19 = 13 in the second cycle.
    assert_eq!(st.extended_highest_seq(), 65536 + 13);
    assert_eq!(st.expected(), 19); // from 65531 (after probation) to 65536 + 13
    assert_eq!(st.cumulative_lost(), 1);
    // A late packet from before the wrap does not add or remove a cycle.
    assert!(st.on_packet(65534, 0, 0));
    assert_eq!(st.extended_highest_seq(), 65536 + 13);
}

#[test]
fn large_jump_is_ignored_once_and_believed_when_confirmed() {
    let mut st = ReceiveStats::new(8000);
    feed(&mut st, 0..=10);
    assert!(!st.on_packet(20_000, 0, 0), "MAX_DROPOUT exceeded: suspect");
    assert_eq!(st.extended_highest_seq(), 10);
    assert!(
        st.on_packet(11, 11 * 160, 220_000),
        "the old stream goes on"
    );
    assert!(!st.on_packet(30_000, 0, 0));
    assert!(st.on_packet(30_001, 160, 20_000), "two in a row: restart");
    assert_eq!(
        (st.expected(), st.received(), st.extended_highest_seq()),
        (1, 1, 30_001)
    );
    // A jump forward below MAX_DROPOUT is plain loss.
    assert!(st.on_packet(32_000, 0, 0));
    assert_eq!(st.cumulative_lost(), 1998);
    // Far behind (more than MAX_MISORDER) is a suspect jump, not a late packet.
    assert!(!st.on_packet(31_800, 0, 0));
}

#[test]
fn constant_transit_gives_zero_jitter() {
    let mut st = ReceiveStats::new(8000);
    for i in 0..200u32 {
        // 73 ms network delay on every packet, timestamps starting at a random offset.
        st.on_packet(
            i as u16,
            0x1234_5678u32.wrapping_add(i * 160),
            73_000 + u64::from(i) * 20_000,
        );
    }
    assert_eq!(st.jitter(), 0);
    assert_eq!(st.jitter_ms(), 0.0);
}

#[test]
fn jitter_follows_the_hand_computed_a8_sequence() {
    // Delays (ms) 0, 5, 2, 10, 0 at 8 kHz -> |D| = 40, 24, 64, 80 units.
    // J*16: 40; 40-3+24 = 61; 61-4+64 = 121; 121-8+80 = 193  => J = 2, 3, 7, 12
    // (floating point A.8: 2.5, 3.84, 7.6, 12.1).
    let mut st = ReceiveStats::new(8000);
    st.on_packet(99, 0, 0); // probation
    let delays_ms = [0u64, 5, 2, 10, 0];
    let mut got = Vec::new();
    for (i, d) in delays_ms.iter().enumerate() {
        st.on_packet(
            100 + i as u16,
            i as u32 * 160,
            1_000_000 + i as u64 * 20_000 + d * 1000,
        );
        got.push(st.jitter());
    }
    assert_eq!(got, vec![0, 2, 3, 7, 12]);
}

#[test]
fn alternating_transit_converges_to_the_swing() {
    // Transit alternates +10 ms / -10 ms around a base: every |D| is 20 ms = 160 units, so
    // J -> 160 (A.8). Integer form: 10, 19, 28, 36, ... settling at 2552/16 = 159.
    let mut st = ReceiveStats::new(8000);
    let mut got = Vec::new();
    for i in 0..400u64 {
        let swing: i64 = if i % 2 == 0 { 10_000 } else { -10_000 };
        let arrival = (50_000 + i as i64 * 20_000 + swing) as u64;
        st.on_packet(i as u16, i as u32 * 160, arrival);
        got.push(st.jitter());
    }
    // Packet 0 is probation, packet 1 sets the transit, packets 2.. update.
    assert_eq!(&got[..6], &[0, 0, 10, 19, 28, 36]);
    assert_eq!(st.jitter(), 159);
    assert!((st.jitter_ms() - 19.94).abs() < 0.01, "{}", st.jitter_ms());
    // At 48 kHz the same swing is 960 units, still ~20 ms.
    let mut st = ReceiveStats::new(48_000);
    for i in 0..400u64 {
        let swing: i64 = if i % 2 == 0 { 10_000 } else { -10_000 };
        st.on_packet(
            i as u16,
            i as u32 * 960,
            (50_000 + i as i64 * 20_000 + swing) as u64,
        );
    }
    assert!((955..=960).contains(&st.jitter()), "{}", st.jitter());
    assert!((st.jitter_ms() - 20.0).abs() < 0.1);
}

#[test]
fn lsr_and_dlsr_and_round_trip_time() {
    let mut st = ReceiveStats::new(8000);
    feed(&mut st, 0..5);
    let rb = st.report_block(7, 5_000_000);
    assert_eq!((rb.last_sr, rb.delay_since_last_sr), (0, 0), "no SR yet");
    let sr_ntp = ntp_from_unix(1_700_000_000, 500_000_000);
    st.on_sender_report(sr_ntp, 10_000_000);
    let rb = st.report_block(7, 11_500_000);
    assert_eq!(rb.last_sr, ntp_compact(sr_ntp));
    assert_eq!(rb.delay_since_last_sr, 98_304, "1.5 s in 1/65536 s");
    // The peer got our SR, held it 1.5 s, and its report reaches us 1.5 s + 80 ms after
    // we sent the SR: RTT = 80 ms.
    let arrival = ntp_from_unix(1_700_000_002, 80_000_000);
    let rtt = round_trip_time(&rb, arrival).unwrap();
    assert!((rtt.as_secs_f64() - 0.080).abs() < 0.0001, "{rtt:?}");
    // Clock granularity making it negative gives zero, and no LSR gives None.
    assert_eq!(round_trip_time(&rb, sr_ntp), Some(Duration::ZERO));
    assert_eq!(round_trip_time(&ReportBlock::default(), arrival), None);
}

#[test]
fn ntp_conversion() {
    assert_eq!(ntp_from_unix(0, 0), 2_208_988_800u64 << 32);
    assert_eq!(ntp_from_unix(0, 500_000_000) & 0xFFFF_FFFF, 0x8000_0000);
    assert_eq!(
        ntp_from_unix(1, 250_000_000),
        ((2_208_988_801u64) << 32) | 0x4000_0000
    );
    assert_eq!(ntp_compact(0x1122_3344_5566_7788), 0x3344_5566);
    // 2036-02-07 06:28:16 UTC is NTP era 1, second 0: wraps.
    assert_eq!(ntp_from_unix(2_085_978_496, 0), 0);
    // Out-of-range nanoseconds are clamped, not carried into the seconds.
    assert_eq!(ntp_from_unix(0, 2_000_000_000) >> 32, 2_208_988_800);
}

#[test]
fn send_stats_count_packets_and_payload_octets_with_wrap() {
    let mut s = SendStats::new();
    for i in 0..50u32 {
        s.on_sent(160, 1000 + i * 160);
    }
    assert_eq!(
        (s.packets, s.octets, s.last_rtp_ts),
        (50, 8000, 1000 + 49 * 160)
    );
    s.octets = u32::MAX - 10;
    s.on_sent(20, 0);
    assert_eq!(s.octets, 9, "the 32-bit octet count wraps (§6.4.1)");
}

fn sample_blocks() -> [ReportBlock; 2] {
    [
        ReportBlock {
            ssrc: 0x1111_2222,
            fraction_lost: 25,
            cumulative_lost: 1234,
            extended_highest_seq: 0x0001_0005,
            jitter: 159,
            last_sr: 0xDEAD_BEEF,
            delay_since_last_sr: 98_304,
        },
        ReportBlock {
            ssrc: 0x3333_4444,
            fraction_lost: 255,
            cumulative_lost: -0x80_0000,
            extended_highest_seq: u32::MAX,
            jitter: 0,
            last_sr: 0,
            delay_since_last_sr: 0,
        },
    ]
}

/// SR + SDES + BYE, as Careline sends at hang-up.
fn sample_compound(buf: &mut [u8]) -> usize {
    let ntp = ntp_from_unix(1_700_000_000, 123_456_789);
    let mut n = write_sr(buf, 0xCAFE_F00D, ntp, 42_000, 500, 80_000, &sample_blocks()).unwrap();
    n += write_sdes_cname(&mut buf[n..], 0xCAFE_F00D, "careline@10.0.0.1").unwrap();
    n += write_bye(&mut buf[n..], &[0xCAFE_F00D], Some("hangup")).unwrap();
    n
}

#[test]
fn sender_report_compound_round_trips() {
    let mut buf = [0u8; 512];
    let n = sample_compound(&mut buf);
    assert_eq!(n, 28 + 48 + 28 + 16);
    // Header bytes of the SR: V=2, RC=2, PT=200, length = 76/4 - 1.
    assert_eq!(&buf[..4], &[0x82, 200, 0, 18]);
    let pkts: Vec<RtcpPacket> = parse_compound(&buf[..n]).unwrap().collect();
    assert_eq!(pkts.len(), 3);
    let RtcpPacket::SenderReport {
        ssrc,
        ntp,
        rtp_timestamp,
        packet_count,
        octet_count,
        reports,
    } = pkts[0].clone()
    else {
        panic!("{:?}", pkts[0])
    };
    assert_eq!(ssrc, 0xCAFE_F00D);
    assert_eq!(ntp, ntp_from_unix(1_700_000_000, 123_456_789));
    assert_eq!(
        (rtp_timestamp, packet_count, octet_count),
        (42_000, 500, 80_000)
    );
    assert_eq!(reports.len(), 2);
    assert_eq!(reports.collect::<Vec<_>>(), sample_blocks().to_vec());
    let RtcpPacket::SourceDescription { chunks } = pkts[1].clone() else {
        panic!("{:?}", pkts[1])
    };
    let chunks: Vec<SdesChunk> = chunks.collect();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].ssrc, 0xCAFE_F00D);
    assert_eq!(chunks[0].cname(), Some(&b"careline@10.0.0.1"[..]));
    let RtcpPacket::Bye { ssrcs, reason } = pkts[2].clone() else {
        panic!("{:?}", pkts[2])
    };
    assert_eq!(ssrcs.collect::<Vec<_>>(), vec![0xCAFE_F00D]);
    assert_eq!(reason, Some(&b"hangup"[..]));
}

#[test]
fn receiver_report_round_trips_with_and_without_blocks() {
    let mut buf = [0u8; 256];
    let n = write_rr(&mut buf, 0xAA, &[]).unwrap();
    assert_eq!(n, 8);
    assert_eq!(&buf[..4], &[0x80, 201, 0, 1]);
    let m = write_sdes_cname(&mut buf[n..], 0xAA, "").unwrap();
    assert_eq!(m, 12, "empty CNAME: SSRC, type, length 0, null, padding");
    let pkts: Vec<RtcpPacket> = parse_compound(&buf[..n + m]).unwrap().collect();
    let RtcpPacket::ReceiverReport { ssrc, reports } = pkts[0].clone() else {
        panic!()
    };
    assert_eq!((ssrc, reports.len()), (0xAA, 0));
    let RtcpPacket::SourceDescription { mut chunks } = pkts[1].clone() else {
        panic!()
    };
    assert_eq!(chunks.next().unwrap().cname(), Some(&b""[..]));

    // Built from live statistics.
    let mut st = ReceiveStats::new(8000);
    feed(&mut st, (0..=100).filter(|s| s % 10 != 5));
    let rb = st.report_block(0x5EED, 0);
    let n = write_rr(&mut buf, 0xAA, &[rb, rb]).unwrap();
    assert_eq!(n, 8 + 48);
    let pkts: Vec<RtcpPacket> = parse_compound(&buf[..n]).unwrap().collect();
    let RtcpPacket::ReceiverReport { reports, .. } = pkts[0].clone() else {
        panic!()
    };
    assert_eq!(reports.collect::<Vec<_>>(), vec![rb, rb]);
    assert_eq!(rb.cumulative_lost, 10);
}

#[test]
fn compound_writers_put_sdes_cname_after_the_report() {
    let mut buf = [0u8; 256];
    let ntp = ntp_from_unix(1_700_000_000, 0);
    let n = write_sender_report(&mut buf, 7, ntp, 960, 3, 480, &sample_blocks(), "cl@host");
    assert_eq!(n, 28 + 48 + 20);
    let pkts: Vec<RtcpPacket> = parse_compound(&buf[..n]).unwrap().collect();
    assert!(matches!(
        pkts[0],
        RtcpPacket::SenderReport {
            ssrc: 7,
            packet_count: 3,
            ..
        }
    ));
    let RtcpPacket::SourceDescription { mut chunks } = pkts[1].clone() else {
        panic!()
    };
    let chunk = chunks.next().unwrap();
    assert_eq!((chunk.ssrc, chunk.cname()), (7, Some(&b"cl@host"[..])));
    let n = write_receiver_report(&mut buf, 8, &[], "cl@host");
    assert_eq!(n, 8 + 20);
    let pkts: Vec<RtcpPacket> = parse_compound(&buf[..n]).unwrap().collect();
    assert_eq!(pkts.len(), 2);
    assert!(matches!(
        pkts[0],
        RtcpPacket::ReceiverReport { ssrc: 8, .. }
    ));
    // Does not fit, or invalid: 0, and nothing half-written is reported.
    assert_eq!(
        write_sender_report(&mut buf[..80], 7, ntp, 0, 0, 0, &sample_blocks(), "cl"),
        0
    );
    assert_eq!(write_receiver_report(&mut buf[..12], 8, &[], "cl"), 0);
    assert_eq!(write_receiver_report(&mut buf, 8, &[], &"x".repeat(256)), 0);
    assert_eq!(
        write_receiver_report(&mut buf, 8, &[ReportBlock::default(); 32], "cl"),
        0
    );
}

#[test]
fn sdes_cname_lengths_pad_to_32_bits() {
    for len in 0..=255usize {
        let name = "x".repeat(len);
        let mut buf = [0xFFu8; 300];
        let n = write_sdes_cname(&mut buf, 1, &name).unwrap();
        assert_eq!(n % 4, 0);
        assert!(
            n > 4 + 4 + 2 + len && n <= 4 + 4 + 2 + len + 4,
            "len {len}: {n}"
        );
        let mut pkts = parse_compound(&buf[..n]).unwrap();
        let RtcpPacket::SourceDescription { mut chunks } = pkts.next().unwrap() else {
            panic!()
        };
        assert_eq!(chunks.next().unwrap().cname(), Some(name.as_bytes()));
    }
    let mut buf = [0u8; 400];
    assert_eq!(
        write_sdes_cname(&mut buf, 1, &"x".repeat(256)),
        Err(RtcpError::TextTooLong(256))
    );
}

#[test]
fn builders_refuse_small_buffers_and_too_many_blocks() {
    let blocks = [ReportBlock::default(); 32];
    let mut big = [0u8; 2048];
    assert_eq!(write_rr(&mut big, 1, &blocks), Err(RtcpError::TooMany(32)));
    assert_eq!(
        write_sr(&mut big, 1, 0, 0, 0, 0, &blocks),
        Err(RtcpError::TooMany(32))
    );
    assert_eq!(
        write_bye(&mut big, &[0; 32], None),
        Err(RtcpError::TooMany(32))
    );
    let n = write_rr(&mut big, 1, &blocks[..31]).unwrap();
    assert_eq!(n, 8 + 31 * 24);
    assert_eq!(parse_compound(&big[..n]).unwrap().count(), 1);
    let mut small = [0u8; 27];
    assert_eq!(
        write_sr(&mut small, 1, 0, 0, 0, 0, &[]),
        Err(RtcpError::BufferTooSmall {
            needed: 28,
            available: 27
        })
    );
    assert!(write_rr(&mut small[..7], 1, &[]).is_err());
    assert!(write_sdes_cname(&mut small[..11], 1, "a").is_err());
    assert!(write_bye(&mut small[..7], &[1], Some("a")).is_err());
    assert_eq!(write_bye(&mut small, &[], None), Ok(4));
}

#[test]
fn unknown_packet_types_are_skipped_by_length() {
    let mut buf = [0u8; 128];
    let mut n = write_rr(&mut buf, 5, &[]).unwrap();
    // An RTPFB generic NACK (RFC 4585): PT 205, FMT 1, 3 words.
    buf[n..n + 16].copy_from_slice(&[0x81, 205, 0, 3, 0, 0, 0, 5, 0, 0, 0, 6, 0x12, 0x34, 0, 0]);
    n += 16;
    n += write_bye(&mut buf[n..], &[5], None).unwrap();
    let pkts: Vec<RtcpPacket> = parse_compound(&buf[..n]).unwrap().collect();
    assert_eq!(pkts.len(), 3);
    assert_eq!(
        pkts[1],
        RtcpPacket::Unknown {
            packet_type: 205,
            count: 1,
            body: &[0, 0, 0, 5, 0, 0, 0, 6, 0x12, 0x34, 0, 0]
        }
    );
    let RtcpPacket::Bye { ssrcs, reason } = pkts[2].clone() else {
        panic!()
    };
    assert_eq!((ssrcs.collect::<Vec<_>>(), reason), (vec![5], None));
}

#[test]
fn padding_on_the_last_packet_is_removed_and_elsewhere_rejected() {
    let mut buf = [0u8; 64];
    // SSRC 4: the RR's last byte would be a plausible padding count if P were set on it.
    let n = write_rr(&mut buf, 4, &[]).unwrap();
    let mut m = n + write_bye(&mut buf[n..], &[5], None).unwrap();
    // Pad the BYE with 4 bytes: P bit, length + 1, last byte = 4.
    buf[n] |= 0x20;
    buf[n + 3] += 1;
    buf[m..m + 4].copy_from_slice(&[0, 0, 0, 4]);
    m += 4;
    let pkts: Vec<RtcpPacket> = parse_compound(&buf[..m]).unwrap().collect();
    let RtcpPacket::Bye { ssrcs, reason } = pkts[1].clone() else {
        panic!()
    };
    assert_eq!((ssrcs.count(), reason), (1, None));
    // Padding count 0 or larger than the body is invalid.
    buf[m - 1] = 0;
    assert_eq!(
        parse_compound(&buf[..m]).err(),
        Some(RtcpError::BadPadding(n))
    );
    buf[m - 1] = 9;
    assert_eq!(
        parse_compound(&buf[..m]).err(),
        Some(RtcpError::BadPadding(n))
    );
    // P bit on a packet that is not the last one.
    buf[m - 1] = 4;
    buf[0] |= 0x20;
    assert_eq!(
        parse_compound(&buf[..m]).err(),
        Some(RtcpError::BadPadding(0))
    );
}

#[test]
fn malformed_packets_are_rejected() {
    let mut buf = [0u8; 256];
    let n = sample_compound(&mut buf);
    let ok = buf;
    assert_eq!(parse_compound(&[]).err(), Some(RtcpError::Empty));
    // Version 1.
    buf[0] = 0x42;
    assert_eq!(
        parse_compound(&buf[..n]).err(),
        Some(RtcpError::BadVersion(1))
    );
    buf = ok;
    // Truncated anywhere inside: rejected, never a partial parse.
    for cut in 1..n {
        if [76usize, 104].contains(&cut) {
            assert!(
                parse_compound(&buf[..cut]).is_ok(),
                "{cut} is a packet boundary"
            );
        } else {
            assert!(parse_compound(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }
    // Trailing bytes that do not make a header.
    let mut long = [0u8; 300];
    long[..n].copy_from_slice(&buf[..n]);
    assert_eq!(
        parse_compound(&long[..n + 2]).err(),
        Some(RtcpError::Truncated(n))
    );
    // Length field pointing past the end.
    buf[104 + 3] += 1;
    assert_eq!(
        parse_compound(&buf[..n]).err(),
        Some(RtcpError::Truncated(104))
    );
    buf = ok;
    // A length off by one word in the middle desynchronizes the walk: still an error.
    buf[3] += 1;
    assert!(parse_compound(&buf[..n]).is_err());
    buf = ok;
    // SR claiming 3 blocks in room for 2.
    buf[0] = 0x83;
    assert_eq!(
        parse_compound(&buf[..n]).err(),
        Some(RtcpError::Malformed {
            packet_type: 200,
            offset: 0
        })
    );
    buf = ok;
    // SDES item length running past its chunk (no terminator left).
    buf[76 + 9] = 40;
    assert_eq!(
        parse_compound(&buf[..n]).err(),
        Some(RtcpError::Malformed {
            packet_type: 202,
            offset: 76
        })
    );
    buf = ok;
    // SDES with two chunks announced, one present.
    buf[76] = 0x82;
    assert!(parse_compound(&buf[..n]).is_err());
    buf = ok;
    // BYE reason length beyond the packet.
    buf[104 + 8] = 20;
    assert_eq!(
        parse_compound(&buf[..n]).err(),
        Some(RtcpError::Malformed {
            packet_type: 203,
            offset: 104
        })
    );
    buf = ok;
    // BYE reason shorter than the rest of the packet: a stray word after it.
    buf[104 + 8] = 2;
    assert_eq!(
        parse_compound(&buf[..n]).err(),
        Some(RtcpError::Malformed {
            packet_type: 203,
            offset: 104
        })
    );
    buf = ok;
    // SDES with a stray word after its chunks.
    let mut sdes = [0u8; 64];
    let k = write_sdes_cname(&mut sdes, 1, "ab").unwrap();
    assert!(parse_compound(&sdes[..k]).is_ok());
    sdes[3] += 1;
    assert_eq!(
        parse_compound(&sdes[..k + 4]).err(),
        Some(RtcpError::Malformed {
            packet_type: 202,
            offset: 0
        })
    );
    // BYE announcing more SSRCs than it holds (3 would fit: the reason is 8 bytes).
    buf[104] = 0x84;
    assert!(parse_compound(&buf[..n]).is_err());
    buf = ok;
    assert!(parse_compound(&buf[..n]).is_ok());
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Walks everything a parse produced, so lazy decoding paths run too. Returns the
/// packet count.
fn touch_all(buf: &[u8]) -> Option<usize> {
    let pkts = parse_compound(buf).ok()?;
    let mut count = 0;
    for p in pkts {
        count += 1;
        match p {
            RtcpPacket::SenderReport { reports, .. }
            | RtcpPacket::ReceiverReport { reports, .. } => {
                let n = reports.len();
                assert_eq!(reports.count(), n);
            }
            RtcpPacket::SourceDescription { chunks } => {
                for c in chunks {
                    for item in c.items() {
                        assert_ne!(item.kind, 0);
                    }
                    let _ = c.cname();
                }
            }
            RtcpPacket::Bye { ssrcs, reason } => {
                let n = ssrcs.len();
                assert_eq!(ssrcs.count(), n);
                assert!(reason.is_none_or(|r| r.len() < 256));
            }
            RtcpPacket::Unknown { body, .. } => assert!(body.len() <= buf.len()),
        }
    }
    Some(count)
}

#[test]
fn fuzz_random_and_mutated_datagrams_never_panic() {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let mut base = [0u8; 256];
    let n = sample_compound(&mut base);
    let (mut ok, mut err) = (0u32, 0u32);
    let mut buf = [0u8; 320];
    for round in 0..20_000 {
        let len = match round % 4 {
            // Pure noise, with a version-2 first byte half of the time.
            0 => {
                let len = rng.below(200);
                for b in buf[..len].iter_mut() {
                    *b = rng.next() as u8;
                }
                if len > 0 && rng.next() & 1 == 0 {
                    buf[0] = 0x80 | (buf[0] & 0x3F);
                }
                len
            }
            // A valid compound with 1-4 random byte changes.
            1 => {
                buf[..n].copy_from_slice(&base[..n]);
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(n);
                    buf[at] = rng.next() as u8;
                }
                n
            }
            // A valid compound, truncated or extended with noise.
            2 => {
                buf[..n].copy_from_slice(&base[..n]);
                let len = rng.below(n + 40);
                for b in buf[n.min(len)..len].iter_mut() {
                    *b = rng.next() as u8;
                }
                len
            }
            // Plausible headers (V=2, known types, consistent lengths) over noise bodies.
            _ => {
                let mut at = 0;
                for _ in 0..1 + rng.below(4) {
                    let words = rng.below(12);
                    let len = 4 + words * 4;
                    if at + len > buf.len() {
                        break;
                    }
                    for b in buf[at..at + len].iter_mut() {
                        *b = rng.next() as u8;
                    }
                    buf[at] = 0x80 | (rng.below(4) as u8);
                    buf[at + 1] = 200 + rng.below(6) as u8;
                    buf[at + 2..at + 4].copy_from_slice(&(words as u16).to_be_bytes());
                    at += len;
                }
                at
            }
        };
        match touch_all(&buf[..len]) {
            Some(_) => ok += 1,
            None => err += 1,
        }
    }
    // Both outcomes must be well represented, or the fuzzing is not reaching the parsers.
    assert!(ok > 1000 && err > 1000, "ok {ok}, err {err}");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn block() -> impl Strategy<Value = ReportBlock> {
        (
            any::<u32>(),
            any::<u8>(),
            -(1i32 << 23)..(1i32 << 23),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(
                |(
                    ssrc,
                    fraction_lost,
                    cumulative_lost,
                    extended_highest_seq,
                    jitter,
                    last_sr,
                    delay_since_last_sr,
                )| ReportBlock {
                    ssrc,
                    fraction_lost,
                    cumulative_lost,
                    extended_highest_seq,
                    jitter,
                    last_sr,
                    delay_since_last_sr,
                },
            )
    }

    proptest! {
        /// A receiver report with any blocks reads back as written.
        #[test]
        fn receiver_reports_round_trip(ssrc in any::<u32>(),
                blocks in prop::collection::vec(block(), 0..=MAX_COUNT)) {
            let mut buf = [0u8; 1500];
            let len = write_rr(&mut buf, ssrc, &blocks).expect("fits");
            let mut packets = parse_compound(&buf[..len]).expect("parses");
            match packets.next() {
                Some(RtcpPacket::ReceiverReport { ssrc: s, reports }) => {
                    prop_assert_eq!(s, ssrc);
                    prop_assert_eq!(reports.collect::<Vec<_>>(), blocks);
                }
                other => prop_assert!(false, "{:?}", other),
            }
            prop_assert!(packets.next().is_none());
        }

        /// Any datagram is parsed or refused; walking what parsed never panics.
        #[test]
        fn any_datagram_is_parsed_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(packets) = parse_compound(&bytes) {
                for p in packets {
                    match p {
                        RtcpPacket::SenderReport { reports, .. }
                        | RtcpPacket::ReceiverReport { reports, .. } => {
                            reports.count();
                        }
                        RtcpPacket::SourceDescription { chunks } => {
                            for c in chunks {
                                c.items().count();
                            }
                        }
                        RtcpPacket::Bye { ssrcs, .. } => {
                            ssrcs.count();
                        }
                        RtcpPacket::Unknown { .. } => {}
                    }
                }
            }
        }
    }
}
