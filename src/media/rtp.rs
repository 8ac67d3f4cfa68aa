//! The RTP fixed header (RFC 3550 §5.1), read in place and written in place.
//!
//! Careline's own 40-line codec rather than `rtc-rtp`'s `Packet`: this runs for every packet of
//! every call, and a borrowed view needs no allocation, no `Bytes` and no copy of the payload.
//! (Browser legs use webrtc-rs's types; they never meet this code.)

/// A validated view of one received RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("shorter than an RTP header")]
    TooShort,
    #[error("RTP version {0}, expected 2")]
    Version(u8),
    #[error("header, CSRC list or extension runs past the end")]
    Truncated,
    #[error("padding length is invalid")]
    Padding,
    #[error("an RTCP packet on the RTP port")]
    Rtcp,
}

pub const HEADER_LEN: usize = 12;

impl<'a> RtpPacket<'a> {
    pub fn parse(buf: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        if buf.len() < HEADER_LEN {
            return Err(RtpError::TooShort);
        }
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(RtpError::Version(version));
        }
        // RFC 5761 §4: payload types 72-79 with the marker bit would be RTCP SR/RR etc.
        if (200..=204).contains(&buf[1]) {
            return Err(RtpError::Rtcp);
        }
        let padding = buf[0] & 0x20 != 0;
        let extension = buf[0] & 0x10 != 0;
        let csrc_count = (buf[0] & 0x0F) as usize;
        let mut offset = HEADER_LEN + 4 * csrc_count;
        if extension {
            let ext = buf.get(offset..offset + 4).ok_or(RtpError::Truncated)?;
            let words = u16::from_be_bytes([ext[2], ext[3]]) as usize;
            offset += 4 + 4 * words;
        }
        if offset > buf.len() {
            return Err(RtpError::Truncated);
        }
        let mut end = buf.len();
        if padding {
            let pad = buf[end - 1] as usize;
            if pad == 0 || offset + pad > end {
                return Err(RtpError::Padding);
            }
            end -= pad;
        }
        Ok(RtpPacket {
            payload_type: buf[1] & 0x7F,
            marker: buf[1] & 0x80 != 0,
            sequence: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
            payload: &buf[offset..end],
        })
    }
}

/// Writes a 12-byte header (no CSRC, no extension) into `out[..12]`.
pub fn write_header(
    out: &mut [u8; HEADER_LEN],
    payload_type: u8,
    marker: bool,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
) {
    out[0] = 0x80;
    out[1] = (payload_type & 0x7F) | if marker { 0x80 } else { 0 };
    out[2..4].copy_from_slice(&sequence.to_be_bytes());
    out[4..8].copy_from_slice(&timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// Per-stream send state: sequence numbers and timestamps that start at random values
/// (RFC 3550 §5.1) and advance by exactly one frame per packet.
#[derive(Debug, Clone)]
pub struct RtpSender {
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
    /// The next packet starts a talkspurt (RFC 3551 §4.1: marker set).
    pub marker_pending: bool,
    pub packets: u32,
    pub octets: u32,
}

impl RtpSender {
    pub fn new(ssrc: u32, sequence: u16, timestamp: u32) -> RtpSender {
        RtpSender {
            ssrc,
            sequence,
            timestamp,
            marker_pending: true,
            packets: 0,
            octets: 0,
        }
    }

    /// Builds the next packet into `buf` (header + payload) and advances the state by
    /// `ts_step` timestamp units. Returns the packet length.
    pub fn build(
        &mut self,
        buf: &mut Vec<u8>,
        payload_type: u8,
        payload: &[u8],
        ts_step: u32,
    ) -> usize {
        let mut header = [0u8; HEADER_LEN];
        write_header(
            &mut header,
            payload_type,
            self.marker_pending,
            self.sequence,
            self.timestamp,
            self.ssrc,
        );
        buf.clear();
        buf.extend_from_slice(&header);
        buf.extend_from_slice(payload);
        self.marker_pending = false;
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(ts_step);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload.len() as u32);
        buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_header_parses_back() {
        let mut s = RtpSender::new(0xDEADBEEF, 65535, u32::MAX - 80);
        let mut buf = Vec::new();
        s.build(&mut buf, 0, &[1, 2, 3], 160);
        let p = RtpPacket::parse(&buf).unwrap();
        assert_eq!(
            (p.payload_type, p.marker, p.sequence, p.timestamp, p.ssrc),
            (0, true, 65535, u32::MAX - 80, 0xDEADBEEF)
        );
        assert_eq!(p.payload, &[1, 2, 3]);
        s.build(&mut buf, 0, &[4], 160);
        let p = RtpPacket::parse(&buf).unwrap();
        assert_eq!(
            (p.marker, p.sequence, p.timestamp),
            (false, 0, 79),
            "sequence and timestamp wrap"
        );
    }

    #[test]
    fn csrc_extension_and_padding_are_skipped() {
        let mut buf = vec![0x80 | 0x20 | 0x10 | 0x01, 8, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        buf.extend_from_slice(&[0, 0, 0, 9]); // CSRC
        buf.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]); // one-word extension
        buf.extend_from_slice(&[7, 7, 7]); // payload
        buf.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let p = RtpPacket::parse(&buf).unwrap();
        assert_eq!(p.payload, &[7, 7, 7]);
        assert_eq!(p.payload_type, 8);
    }

    #[test]
    fn garbage_is_rejected_without_panicking() {
        assert_eq!(RtpPacket::parse(&[0x80; 5]), Err(RtpError::TooShort));
        assert_eq!(RtpPacket::parse(&[0x40; 12]), Err(RtpError::Version(1)));
        assert_eq!(
            RtpPacket::parse(&[0x8F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(RtpError::Truncated)
        );
        assert_eq!(
            RtpPacket::parse(&[0x80, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(RtpError::Rtcp)
        );
        let mut pad = vec![0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 50];
        assert_eq!(RtpPacket::parse(&pad), Err(RtpError::Padding));
        pad[12] = 0;
        assert_eq!(RtpPacket::parse(&pad), Err(RtpError::Padding));
        // Every prefix and a deterministic spray of random buffers: never a panic.
        let mut x: u32 = 0x1234_5678;
        for len in 0..200usize {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = RtpPacket::parse(&buf);
            let mut b = buf.clone();
            if !b.is_empty() {
                b[0] = 0x80 | (b[0] & 0x3F);
            }
            let _ = RtpPacket::parse(&b);
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any datagram on the RTP port is parsed or refused, never a panic, and a parsed
            /// payload lies inside the datagram after the header.
            #[test]
            fn any_datagram_is_parsed_or_refused(buf in prop::collection::vec(any::<u8>(), 0..300)) {
                if let Ok(p) = RtpPacket::parse(&buf) {
                    let start = p.payload.as_ptr() as usize - buf.as_ptr() as usize;
                    prop_assert!(start >= HEADER_LEN && start + p.payload.len() <= buf.len());
                    prop_assert!(p.payload_type < 128);
                }
            }

            /// A packet written with any header fields, CSRC list, header extension and
            /// padding reads back field for field with exactly its payload; payload types
            /// that collide with RTCP (RFC 5761 §4) are refused as RTCP.
            #[test]
            fn what_a_peer_writes_reads_back(
                pt in 0u8..128,
                marker in any::<bool>(),
                sequence in any::<u16>(),
                timestamp in any::<u32>(),
                ssrc in any::<u32>(),
                csrcs in 0usize..16,
                extension in prop::option::of(0u16..8),
                padding in 0u8..32,
                payload in prop::collection::vec(any::<u8>(), 0..200),
            ) {
                let mut header = [0u8; HEADER_LEN];
                write_header(&mut header, pt, marker, sequence, timestamp, ssrc);
                header[0] |= csrcs as u8;
                if extension.is_some() {
                    header[0] |= 0x10;
                }
                if padding > 0 {
                    header[0] |= 0x20;
                }
                let mut buf = header.to_vec();
                buf.extend((0..csrcs * 4).map(|i| i as u8));
                if let Some(words) = extension {
                    buf.extend_from_slice(&[0xBE, 0xDE]);
                    buf.extend_from_slice(&words.to_be_bytes());
                    buf.extend(std::iter::repeat_n(0xAA, usize::from(words) * 4));
                }
                buf.extend_from_slice(&payload);
                if padding > 0 {
                    buf.extend(std::iter::repeat_n(0, usize::from(padding) - 1));
                    buf.push(padding);
                }
                let parsed = RtpPacket::parse(&buf);
                if (200..=204).contains(&buf[1]) {
                    prop_assert_eq!(parsed, Err(RtpError::Rtcp));
                } else {
                    let p = parsed.expect("a valid packet");
                    prop_assert_eq!(
                        (p.payload_type, p.marker, p.sequence, p.timestamp, p.ssrc),
                        (pt, marker, sequence, timestamp, ssrc)
                    );
                    prop_assert_eq!(p.payload, &payload[..]);
                }
            }

            /// A sender's stream from any starting point: sequence numbers one apart and
            /// timestamps one frame apart (both wrapping), the marker on the first packet only.
            #[test]
            fn a_sender_advances_one_frame_per_packet(
                ssrc in any::<u32>(),
                sequence in any::<u16>(),
                timestamp in any::<u32>(),
                step in 1u32..2000,
                count in 1usize..50,
            ) {
                let mut tx = RtpSender::new(ssrc, sequence, timestamp);
                let mut buf = Vec::new();
                for i in 0..count {
                    tx.build(&mut buf, 0, &[0xFF; 160], step);
                    let p = RtpPacket::parse(&buf).expect("our own packet");
                    prop_assert_eq!(p.sequence, sequence.wrapping_add(i as u16));
                    prop_assert_eq!(p.timestamp, timestamp.wrapping_add(step.wrapping_mul(i as u32)));
                    prop_assert_eq!(p.marker, i == 0);
                    prop_assert_eq!(p.ssrc, ssrc);
                }
                prop_assert_eq!(tx.packets as usize, count);
            }
        }
    }
}
