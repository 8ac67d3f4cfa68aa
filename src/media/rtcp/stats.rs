//! What the RTCP reports say, measured: RTP receive statistics (RFC 3550 Appendix A.1, A.3,
//! A.8: sequence tracking, loss, interarrival jitter), the sender's counts, NTP timestamps and
//! round-trip time (§6.4.1).

use std::time::Duration;

use super::ReportBlock;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

const RTP_SEQ_MOD: u32 = 1 << 16;
/// RFC 3550 A.1: largest forward jump still taken as loss, largest backward jump still taken
/// as reordering, and sequential packets needed before a source is believed.
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;
const MIN_SEQUENTIAL: u32 = 2;

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
