//! RTP receive statistics (RFC 3550 Appendix A.1, A.3, A.8) and RTCP sender/receiver reports
//! (RFC 3550 §6.4), SDES (§6.5) and BYE (§6.6), built and parsed by hand.
//!
//! Why by hand: the wire layout of these four packet types is a few dozen lines, while the
//! `rtc-rtcp` crate was judged too allocation-heavy for thousands of concurrent calls (it
//! boxes every packet and collects report blocks and SDES items into `Vec`s). Here building
//! writes into a caller's buffer and parsing returns borrowed views over the datagram, so
//! neither allocates.
//!
//! Sans-IO: arrival instants (µs on any monotonic clock) and NTP wallclock timestamps are
//! arguments; nothing here reads a clock.

use std::time::Duration;

/// RTCP packet types (RFC 3550 §12.1).
pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;

/// SDES item type CNAME (RFC 3550 §6.5.1).
pub const SDES_CNAME: u8 = 1;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

const RTP_SEQ_MOD: u32 = 1 << 16;
/// RFC 3550 A.1: largest forward jump still taken as loss, largest backward jump still taken
/// as reordering, and sequential packets needed before a source is believed.
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;
const MIN_SEQUENTIAL: u32 = 2;

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

/// The NTP timestamp (RFC 3550 §4: 32.32 fixed-point seconds since 1900) of a Unix time.
/// Seconds past the NTP era end (2036) wrap, as §4 expects receivers to handle.
pub fn ntp_from_unix(secs: u64, nanos: u32) -> u64 {
    let nanos = u64::from(nanos.min(999_999_999));
    let secs = secs.wrapping_add(NTP_UNIX_OFFSET) & 0xFFFF_FFFF;
    (secs << 32) | ((nanos << 32) / 1_000_000_000)
}

/// The middle 32 bits of an NTP timestamp: the LSR field and RTT arithmetic (§6.4.1).
pub fn ntp_compact(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Round-trip time from a report block about our stream (RFC 3550 §6.4.1: A - LSR - DLSR),
/// `arrival_ntp` being the wallclock when the report arrived. `None` when the peer has not
/// received an SR from us yet (LSR = 0); zero when clock granularity makes it negative.
pub fn round_trip_time(block: &ReportBlock, arrival_ntp: u64) -> Option<Duration> {
    if block.last_sr == 0 {
        return None;
    }
    let rtt = ntp_compact(arrival_ntp)
        .wrapping_sub(block.last_sr)
        .wrapping_sub(block.delay_since_last_sr);
    let rtt = if rtt > 0x8000_0000 { 0 } else { rtt };
    Some(Duration::from_nanos(u64::from(rtt) * 1_000_000_000 / 65536))
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

/// Reception statistics of one incoming RTP stream (one SSRC): RFC 3550 A.1 sequence
/// validation and extension, A.3 loss, A.8 jitter, and the LSR/DLSR bookkeeping of §6.4.1.
///
/// Arrival times are given in **microseconds** on any monotonic clock, together with the
/// stream's RTP clock rate at construction: the media loop has µs instants at hand, and the
/// conversion to timestamp units (needed by A.8) is done here once, exactly (no float).
#[derive(Debug, Clone)]
pub struct ReceiveStats {
    clock_rate: u32,
    initialized: bool,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u32,
    received: u64,
    expected_prior: i64,
    received_prior: u64,
    transit: u32,
    have_transit: bool,
    /// Jitter scaled by 16, the integer form of A.8.
    jitter16: u32,
    last_sr: u32,
    last_sr_arrival_us: Option<u64>,
}

impl ReceiveStats {
    /// `clock_rate`: the stream's RTP clock in Hz (8000 for G.711, 48000 for Opus).
    pub fn new(clock_rate: u32) -> Self {
        ReceiveStats {
            clock_rate: clock_rate.max(1),
            initialized: false,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: RTP_SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: 0,
            have_transit: false,
            jitter16: 0,
            last_sr: 0,
            last_sr_arrival_us: None,
        }
    }

    /// A.1 `init_seq`.
    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1; // so that seq == bad_seq is false
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// A.1 `update_seq`: whether the packet counts (false while on probation and for a
    /// single packet after a very large jump).
    fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            // Packet is in sequence.
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    return true;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return false;
        } else if udelta < MAX_DROPOUT {
            // In order, with permissible gap.
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            // The sequence number made a very large jump.
            if u32::from(seq) == self.bad_seq {
                // Two sequential packets: the source restarted without telling us.
                self.init_seq(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return false;
            }
        } else {
            // Duplicate or reordered packet.
        }
        self.received += 1;
        true
    }

    /// Records one received RTP packet; returns whether it was counted (A.1).
    pub fn on_packet(&mut self, seq: u16, rtp_ts: u32, arrival_us: u64) -> bool {
        if !self.initialized {
            self.initialized = true;
            self.init_seq(seq);
            self.max_seq = seq.wrapping_sub(1);
            self.probation = MIN_SEQUENTIAL;
        }
        if !self.update_seq(seq) {
            return false;
        }
        // A.8: D(i-1,i) = (Rj - Ri) - (Sj - Si), computed through the relative transit time;
        // J += (|D| - J) / 16, kept scaled by 16 to stay in integers.
        let transit = self.to_rtp_units(arrival_us).wrapping_sub(rtp_ts);
        if self.have_transit {
            let d = (transit.wrapping_sub(self.transit) as i32).unsigned_abs();
            self.jitter16 = (self.jitter16 - ((self.jitter16 + 8) >> 4)).saturating_add(d);
        }
        self.transit = transit;
        self.have_transit = true;
        true
    }

    /// Remembers an SR from this source (its NTP timestamp and when it arrived), for the LSR
    /// and DLSR fields of the next report block (§6.4.1).
    pub fn on_sender_report(&mut self, ntp: u64, arrival_us: u64) {
        self.last_sr = ntp_compact(ntp);
        self.last_sr_arrival_us = Some(arrival_us);
    }

    /// Microseconds to RTP timestamp units, modulo 2^32 as RTP timestamps are.
    fn to_rtp_units(&self, us: u64) -> u32 {
        let rate = u64::from(self.clock_rate);
        // Only the value modulo 2^32 matters, so the whole-seconds product may wrap.
        let units = (us / 1_000_000)
            .wrapping_mul(rate)
            .wrapping_add((us % 1_000_000) * rate / 1_000_000);
        units as u32
    }

    /// Two sequential packets have been seen (A.1 probation is over).
    pub fn is_valid(&self) -> bool {
        self.initialized && self.probation == 0
    }

    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// Packets counted since the stream became valid (duplicates included, as in A.3).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Highest sequence number with wrap cycles in the high 16 bits (A.1).
    pub fn extended_highest_seq(&self) -> u32 {
        if self.is_valid() {
            self.cycles.wrapping_add(u32::from(self.max_seq))
        } else {
            0
        }
    }

    /// Packets expected since the stream became valid (A.3).
    pub fn expected(&self) -> i64 {
        if !self.is_valid() {
            return 0;
        }
        i64::from(self.cycles) + i64::from(self.max_seq) - i64::from(self.base_seq) + 1
    }

    /// Cumulative packets lost (A.3): expected - received, negative when duplicates
    /// outnumber losses. The report block clamps it to its 24-bit signed field.
    pub fn cumulative_lost(&self) -> i64 {
        self.expected() - self.received as i64
    }

    /// Interarrival jitter in timestamp units (A.8, `s->jitter >> 4`).
    pub fn jitter(&self) -> u32 {
        self.jitter16 >> 4
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        f64::from(self.jitter16) / 16.0 * 1000.0 / f64::from(self.clock_rate)
    }

    /// The report block about this source, `now_us` being the send time (for DLSR). Starts a
    /// new reporting interval: the next block's fraction lost counts from here (A.3).
    pub fn report_block(&mut self, ssrc: u32, now_us: u64) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior;
        self.expected_prior = expected;
        let received_interval = (self.received - self.received_prior) as i64;
        self.received_prior = self.received;
        let lost_interval = expected_interval - received_interval;
        let fraction_lost = if expected_interval <= 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval).min(255) as u8
        };
        let (last_sr, delay_since_last_sr) = match self.last_sr_arrival_us {
            Some(at) => {
                let delay = now_us.saturating_sub(at) * 65536 / 1_000_000;
                (self.last_sr, u32::try_from(delay).unwrap_or(u32::MAX))
            }
            None => (0, 0),
        };
        ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.cumulative_lost().clamp(-0x80_0000, 0x7F_FFFF) as i32,
            extended_highest_seq: self.extended_highest_seq(),
            jitter: self.jitter(),
            last_sr,
            delay_since_last_sr,
        }
    }
}

/// What an SR says about our own stream (§6.4.1 sender info). The counts wrap, as the
/// 32-bit fields do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendStats {
    /// RTP data packets sent since the start of transmission.
    pub packets: u32,
    /// Payload octets sent (headers and padding excluded).
    pub octets: u32,
    /// Timestamp of the last packet sent.
    pub last_rtp_ts: u32,
}

impl SendStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// One RTP packet sent; `payload_len` excludes header and padding (§6.4.1 octet count).
    pub fn on_sent(&mut self, payload_len: usize, rtp_ts: u32) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
        self.last_rtp_ts = rtp_ts;
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

#[cfg(test)]
mod tests {
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
        buf[n..n + 16]
            .copy_from_slice(&[0x81, 205, 0, 3, 0, 0, 0, 5, 0, 0, 0, 6, 0x12, 0x34, 0, 0]);
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
}
