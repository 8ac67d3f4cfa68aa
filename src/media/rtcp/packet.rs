//! RTCP on the wire: sender and receiver reports (RFC 3550 §6.4), SDES (§6.5) and BYE
//! (§6.6), written into a caller's buffer and parsed as borrowed views over the datagram.

/// RTCP packet types (RFC 3550 §12.1).
pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;

/// SDES item type CNAME (RFC 3550 §6.5.1).
pub const SDES_CNAME: u8 = 1;

/// Size of one report block (RFC 3550 §6.4.1).
pub const REPORT_BLOCK_LEN: usize = 24;
/// RC/SC is a 5-bit field.
pub const MAX_COUNT: usize = 31;

/// Why an RTCP packet could not be built or parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("output buffer too small: need {needed} bytes, have {available}")]
    BufferTooSmall { needed: usize, available: usize },
    #[error("{0} report blocks or SSRCs; one packet holds at most 31")]
    TooMany(usize),
    #[error("SDES item or BYE reason of {0} bytes; at most 255")]
    TextTooLong(usize),
    #[error("empty RTCP datagram")]
    Empty,
    #[error("RTCP packet truncated at byte {0}")]
    Truncated(usize),
    #[error("RTCP version {0}, expected 2")]
    BadVersion(u8),
    #[error("bad RTCP padding at byte {0}")]
    BadPadding(usize),
    #[error("malformed RTCP packet of type {packet_type} at byte {offset}")]
    Malformed { packet_type: u8, offset: usize },
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block is about.
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256 (A.3).
    pub fraction_lost: u8,
    /// Packets lost since reception began; signed 24 bits (duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Wrap cycles in the high 16 bits, highest sequence number in the low 16 (A.1).
    pub extended_highest_seq: u32,
    /// Interarrival jitter in timestamp units (A.8).
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from this source, or 0.
    pub last_sr: u32,
    /// Delay since that SR arrived, in 1/65536 s, or 0.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn write(&self, b: &mut [u8]) {
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32 & 0x00FF_FFFF;
        put32(b, 0, self.ssrc);
        put32(b, 4, (u32::from(self.fraction_lost) << 24) | lost);
        put32(b, 8, self.extended_highest_seq);
        put32(b, 12, self.jitter);
        put32(b, 16, self.last_sr);
        put32(b, 20, self.delay_since_last_sr);
    }

    fn read(b: &[u8]) -> Option<ReportBlock> {
        let w = get32(b, 4)?;
        Some(ReportBlock {
            ssrc: get32(b, 0)?,
            fraction_lost: (w >> 24) as u8,
            // Sign-extend the 24-bit field.
            cumulative_lost: ((w << 8) as i32) >> 8,
            extended_highest_seq: get32(b, 8)?,
            jitter: get32(b, 12)?,
            last_sr: get32(b, 16)?,
            delay_since_last_sr: get32(b, 20)?,
        })
    }
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn get32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn get16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

/// Checks room, then writes the common header (V=2, P=0, count, type, length in words - 1).
fn header(buf: &mut [u8], count: usize, packet_type: u8, len: usize) -> Result<(), RtcpError> {
    if buf.len() < len {
        return Err(RtcpError::BufferTooSmall {
            needed: len,
            available: buf.len(),
        });
    }
    debug_assert!(len.is_multiple_of(4) && len >= 4 && count <= MAX_COUNT);
    buf[0] = 0x80 | count as u8;
    buf[1] = packet_type;
    buf[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
    Ok(())
}

/// Writes the compound packet Careline sends while it sends media: SR + SDES CNAME (§6.1
/// requires the CNAME in every compound packet). `ntp` is the wallclock of this report and
/// `rtp_ts` the same instant on the RTP clock. Returns the length written, or 0 when it does
/// not fit or is invalid (over 31 blocks, CNAME over 255 bytes): [`write_sr`] and
/// [`write_sdes_cname`] say why.
#[allow(clippy::too_many_arguments)] // the SR's fields, in wire order
pub fn write_sender_report(
    buf: &mut [u8],
    ssrc: u32,
    ntp: u64,
    rtp_ts: u32,
    packets: u32,
    octets: u32,
    blocks: &[ReportBlock],
    cname: &str,
) -> usize {
    let Ok(n) = write_sr(buf, ssrc, ntp, rtp_ts, packets, octets, blocks) else {
        return 0;
    };
    match write_sdes_cname(&mut buf[n..], ssrc, cname) {
        Ok(m) => n + m,
        Err(_) => 0,
    }
}

/// Writes the compound packet of a receive-only party (hold, nothing sent yet): RR + SDES
/// CNAME. Returns the length written, or 0 as for [`write_sender_report`].
pub fn write_receiver_report(
    buf: &mut [u8],
    ssrc: u32,
    blocks: &[ReportBlock],
    cname: &str,
) -> usize {
    let Ok(n) = write_rr(buf, ssrc, blocks) else {
        return 0;
    };
    match write_sdes_cname(&mut buf[n..], ssrc, cname) {
        Ok(m) => n + m,
        Err(_) => 0,
    }
}

/// Writes one SR packet (§6.4.1) and returns its length.
pub fn write_sr(
    buf: &mut [u8],
    ssrc: u32,
    ntp: u64,
    rtp_ts: u32,
    packets: u32,
    octets: u32,
    blocks: &[ReportBlock],
) -> Result<usize, RtcpError> {
    if blocks.len() > MAX_COUNT {
        return Err(RtcpError::TooMany(blocks.len()));
    }
    let len = 28 + REPORT_BLOCK_LEN * blocks.len();
    header(buf, blocks.len(), PT_SR, len)?;
    put32(buf, 4, ssrc);
    put32(buf, 8, (ntp >> 32) as u32);
    put32(buf, 12, ntp as u32);
    put32(buf, 16, rtp_ts);
    put32(buf, 20, packets);
    put32(buf, 24, octets);
    for (i, b) in blocks.iter().enumerate() {
        b.write(&mut buf[28 + i * REPORT_BLOCK_LEN..]);
    }
    Ok(len)
}

/// Writes one RR packet (§6.4.2) and returns its length; zero blocks is valid (nothing
/// received yet: §6.1 still wants a report first in every compound packet).
pub fn write_rr(buf: &mut [u8], ssrc: u32, blocks: &[ReportBlock]) -> Result<usize, RtcpError> {
    if blocks.len() > MAX_COUNT {
        return Err(RtcpError::TooMany(blocks.len()));
    }
    let len = 8 + REPORT_BLOCK_LEN * blocks.len();
    header(buf, blocks.len(), PT_RR, len)?;
    put32(buf, 4, ssrc);
    for (i, b) in blocks.iter().enumerate() {
        b.write(&mut buf[8 + i * REPORT_BLOCK_LEN..]);
    }
    Ok(len)
}

/// Writes an SDES packet with one chunk holding the CNAME item (§6.5.1), which §6.1 requires
/// in every compound packet; append it after the SR or RR.
pub fn write_sdes_cname(buf: &mut [u8], ssrc: u32, cname: &str) -> Result<usize, RtcpError> {
    let text = cname.as_bytes();
    if text.len() > 255 {
        return Err(RtcpError::TextTooLong(text.len()));
    }
    // SSRC, item type, length, text, then at least one null octet up to a 32-bit boundary.
    let chunk = (4 + 2 + text.len() + 1).div_ceil(4) * 4;
    let len = 4 + chunk;
    header(buf, 1, PT_SDES, len)?;
    put32(buf, 4, ssrc);
    buf[8] = SDES_CNAME;
    buf[9] = text.len() as u8;
    buf[10..10 + text.len()].copy_from_slice(text);
    buf[10 + text.len()..len].fill(0);
    Ok(len)
}

/// Writes a BYE (§6.6) for `ssrcs` with an optional reason; append it to a compound packet.
pub fn write_bye(buf: &mut [u8], ssrcs: &[u32], reason: Option<&str>) -> Result<usize, RtcpError> {
    if ssrcs.len() > MAX_COUNT {
        return Err(RtcpError::TooMany(ssrcs.len()));
    }
    let reason = reason.map(str::as_bytes);
    if let Some(r) = reason
        && r.len() > 255
    {
        return Err(RtcpError::TextTooLong(r.len()));
    }
    let text_len = reason.map_or(0, |r| (1 + r.len()).div_ceil(4) * 4);
    let len = 4 + 4 * ssrcs.len() + text_len;
    header(buf, ssrcs.len(), PT_BYE, len)?;
    for (i, s) in ssrcs.iter().enumerate() {
        put32(buf, 4 + 4 * i, *s);
    }
    if let Some(r) = reason {
        let at = 4 + 4 * ssrcs.len();
        buf[at] = r.len() as u8;
        buf[at + 1..at + 1 + r.len()].copy_from_slice(r);
        buf[at + 1 + r.len()..len].fill(0);
    }
    Ok(len)
}

/// Report blocks of an SR or RR, decoded on the fly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportBlocks<'a> {
    raw: &'a [u8],
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        let b = ReportBlock::read(self.raw)?;
        self.raw = self.raw.get(REPORT_BLOCK_LEN..)?;
        Some(b)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.raw.len() / REPORT_BLOCK_LEN;
        (n, Some(n))
    }
}

impl ExactSizeIterator for ReportBlocks<'_> {}

/// The chunks of an SDES packet (§6.5), each a source and its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesChunks<'a> {
    left: u8,
    raw: &'a [u8],
}

impl<'a> Iterator for SdesChunks<'a> {
    type Item = SdesChunk<'a>;

    fn next(&mut self) -> Option<SdesChunk<'a>> {
        if self.left == 0 {
            return None;
        }
        let (chunk, len) = sdes_chunk(self.raw)?;
        self.raw = self.raw.get(len..)?;
        self.left -= 1;
        Some(chunk)
    }
}

/// One SDES chunk: a source and its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesChunk<'a> {
    pub ssrc: u32,
    /// The item list, up to (not including) the terminating null octet.
    items: &'a [u8],
}

impl<'a> SdesChunk<'a> {
    pub fn items(&self) -> SdesItems<'a> {
        SdesItems { raw: self.items }
    }

    /// The CNAME item's value, if the chunk has one.
    pub fn cname(&self) -> Option<&'a [u8]> {
        self.items().find(|i| i.kind == SDES_CNAME).map(|i| i.value)
    }
}

/// One SDES item (type, value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesItem<'a> {
    pub kind: u8,
    pub value: &'a [u8],
}

/// Iterator over the items of a chunk.
#[derive(Debug, Clone)]
pub struct SdesItems<'a> {
    raw: &'a [u8],
}

impl<'a> Iterator for SdesItems<'a> {
    type Item = SdesItem<'a>;

    fn next(&mut self) -> Option<SdesItem<'a>> {
        let kind = *self.raw.first()?;
        let len = usize::from(*self.raw.get(1)?);
        let value = self.raw.get(2..2 + len)?;
        self.raw = self.raw.get(2 + len..)?;
        Some(SdesItem { kind, value })
    }
}

/// Splits one chunk off the front of `b`: the chunk and its length including padding.
fn sdes_chunk(b: &[u8]) -> Option<(SdesChunk<'_>, usize)> {
    let ssrc = get32(b, 0)?;
    let mut at = 4;
    loop {
        let kind = *b.get(at)?;
        if kind == 0 {
            break;
        }
        let len = usize::from(*b.get(at + 1)?);
        at += 2 + len;
        if at > b.len() {
            return None;
        }
    }
    let items = b.get(4..at)?;
    // The null item type, then nulls up to the next 32-bit boundary.
    let end = (at + 1).div_ceil(4) * 4;
    if end > b.len() {
        return None;
    }
    Some((SdesChunk { ssrc, items }, end))
}

/// The SSRCs of a BYE (§6.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcList<'a> {
    raw: &'a [u8],
}

impl Iterator for SsrcList<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let v = get32(self.raw, 0)?;
        self.raw = self.raw.get(4..)?;
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.raw.len() / 4;
        (n, Some(n))
    }
}

impl ExactSizeIterator for SsrcList<'_> {}

/// One packet of a compound RTCP datagram, borrowing from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    /// SR (§6.4.1): sender info and reception reports.
    SenderReport {
        ssrc: u32,
        ntp: u64,
        rtp_timestamp: u32,
        packet_count: u32,
        octet_count: u32,
        reports: ReportBlocks<'a>,
    },
    /// RR (§6.4.2).
    ReceiverReport {
        ssrc: u32,
        reports: ReportBlocks<'a>,
    },
    /// SDES (§6.5).
    SourceDescription { chunks: SdesChunks<'a> },
    /// BYE (§6.6), with the optional reason text.
    Bye {
        ssrcs: SsrcList<'a>,
        reason: Option<&'a [u8]>,
    },
    /// APP, RTPFB/PSFB (RFC 4585), XR (RFC 3611), ...: skipped by length, body kept raw
    /// (after the 4-byte header, padding removed).
    Unknown {
        packet_type: u8,
        count: u8,
        body: &'a [u8],
    },
}

/// Decodes one packet body (after the common header, padding removed). `offset` is only for
/// the error.
fn parse_body(
    packet_type: u8,
    count: u8,
    body: &[u8],
    offset: usize,
) -> Result<RtcpPacket<'_>, RtcpError> {
    let bad = RtcpError::Malformed {
        packet_type,
        offset,
    };
    let n = usize::from(count);
    match packet_type {
        PT_SR => {
            // Sender info, then RC blocks; anything after is a profile extension (§6.4.1).
            let blocks = body.get(24..24 + n * REPORT_BLOCK_LEN).ok_or(bad)?;
            let ntp_hi = get32(body, 4).ok_or(bad)?;
            let ntp_lo = get32(body, 8).ok_or(bad)?;
            Ok(RtcpPacket::SenderReport {
                ssrc: get32(body, 0).ok_or(bad)?,
                ntp: (u64::from(ntp_hi) << 32) | u64::from(ntp_lo),
                rtp_timestamp: get32(body, 12).ok_or(bad)?,
                packet_count: get32(body, 16).ok_or(bad)?,
                octet_count: get32(body, 20).ok_or(bad)?,
                reports: ReportBlocks { raw: blocks },
            })
        }
        PT_RR => {
            let blocks = body.get(4..4 + n * REPORT_BLOCK_LEN).ok_or(bad)?;
            Ok(RtcpPacket::ReceiverReport {
                ssrc: get32(body, 0).ok_or(bad)?,
                reports: ReportBlocks { raw: blocks },
            })
        }
        PT_SDES => {
            // Every chunk must be well-formed and together they must fill the packet.
            let mut rest = body;
            for _ in 0..n {
                let (_, len) = sdes_chunk(rest).ok_or(bad)?;
                rest = rest.get(len..).ok_or(bad)?;
            }
            if !rest.is_empty() {
                return Err(bad);
            }
            Ok(RtcpPacket::SourceDescription {
                chunks: SdesChunks {
                    left: count,
                    raw: body,
                },
            })
        }
        PT_BYE => {
            let ssrcs = body.get(..4 * n).ok_or(bad)?;
            let rest = &body[4 * n..];
            let reason = match rest.first() {
                None => None,
                Some(&len) => {
                    let len = usize::from(len);
                    let text = rest.get(1..1 + len).ok_or(bad)?;
                    // Only null padding to the 32-bit boundary may follow.
                    if (1 + len).div_ceil(4) * 4 != rest.len() {
                        return Err(bad);
                    }
                    Some(text)
                }
            };
            Ok(RtcpPacket::Bye {
                ssrcs: SsrcList { raw: ssrcs },
                reason,
            })
        }
        _ => Ok(RtcpPacket::Unknown {
            packet_type,
            count,
            body,
        }),
    }
}

/// Reads the common header at `at`: (count, type, body without padding, total length).
fn split_packet(buf: &[u8], at: usize) -> Result<(u8, u8, &[u8], usize), RtcpError> {
    let b0 = *buf.get(at).ok_or(RtcpError::Truncated(at))?;
    let packet_type = *buf.get(at + 1).ok_or(RtcpError::Truncated(at))?;
    let words = get16(buf, at + 2).ok_or(RtcpError::Truncated(at))?;
    if b0 >> 6 != 2 {
        return Err(RtcpError::BadVersion(b0 >> 6));
    }
    let len = (usize::from(words) + 1) * 4;
    let packet = buf.get(at..at + len).ok_or(RtcpError::Truncated(at))?;
    let mut body = &packet[4..];
    if b0 & 0x20 != 0 {
        // Padding: only the last packet of a compound may have it (A.2), and the count in the
        // last octet includes itself.
        let pad = usize::from(*packet.last().unwrap_or(&0));
        if at + len != buf.len() || pad == 0 || pad > body.len() {
            return Err(RtcpError::BadPadding(at));
        }
        body = &body[..body.len() - pad];
    }
    Ok((b0 & 0x1F, packet_type, body, len))
}

/// Validates a whole compound RTCP datagram, then iterates over its packets without copying.
///
/// Checks (RFC 3550 A.2): version 2 everywhere, lengths that add up exactly to the datagram,
/// padding only on the last packet and within it, and each SR/RR/SDES/BYE well-formed down to
/// its report blocks and items. Any failure rejects the whole datagram, so the iterator never
/// stops half-way. The "first packet is SR or RR" rule is not enforced: RFC 5506 reduced-size
/// RTCP relaxes it, and rejecting a peer's lone BYE would only lose information.
pub fn parse_compound(buf: &[u8]) -> Result<Compound<'_>, RtcpError> {
    if buf.is_empty() {
        return Err(RtcpError::Empty);
    }
    let mut at = 0;
    while at < buf.len() {
        let (count, packet_type, body, len) = split_packet(buf, at)?;
        parse_body(packet_type, count, body, at)?;
        at += len;
    }
    Ok(Compound { buf, at: 0 })
}

/// The packets of a validated compound datagram, in order.
#[derive(Debug, Clone)]
pub struct Compound<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Compound<'a> {
    type Item = RtcpPacket<'a>;

    fn next(&mut self) -> Option<RtcpPacket<'a>> {
        if self.at >= self.buf.len() {
            return None;
        }
        // Already validated by `parse_compound`; an error here cannot happen, but ends the
        // iteration rather than panicking.
        let (count, packet_type, body, len) = split_packet(self.buf, self.at).ok()?;
        let p = parse_body(packet_type, count, body, self.at).ok()?;
        self.at += len;
        Some(p)
    }
}
