//! RFC 4733 telephone-events: turning the redundant packet stream of a keypress into exactly
//! one digit, and generating that stream when Careline sends a digit.
//!
//! A single keypress is carried by many RTP packets (RFC 4733 §2.5): a first packet with the
//! marker bit, an update every packetization interval with a growing duration, then the final
//! packet with the E bit, sent three times (§2.5.1.4). All of them carry the *event's start
//! timestamp* as RTP timestamp (§2.5.1.1), which is what identifies the event here: the marker
//! bit can be lost, packets can be reordered or duplicated, and the end packets may be the only
//! ones that survive, so neither the marker nor the E bit alone can tell "new keypress" from
//! "another copy of the last one". A short history of already-reported event timestamps lets
//! late redundant packets be recognized and dropped.
//!
//! Both halves are sans-IO: no sockets, no clock, no allocation per packet.
//!
//! # Example
//!
//! One press of 9 whose first packet (the one with the marker) was lost and whose end packet
//! came three times: still one digit, started once and ended once.
//!
//! ```
//! use careline::media::dtmf::Digit;
//! use careline::media::dtmf::rfc4733::{EventOutcome, EventPayload, EventReceiver};
//!
//! let nine = Digit::from_char('9').unwrap();
//! let packet = |duration: u16, end: bool| EventPayload {
//!     event: nine.event_code(),
//!     end,
//!     volume: 10,
//!     duration,
//! }
//! .encode();
//! let mut receiver = EventReceiver::new();
//! let mut heard = Vec::new();
//! // Timestamp 8000 identifies the press; sequence numbers go on as RTP's do.
//! for (seq, (duration, end)) in [(320, false), (480, false), (640, true), (640, true), (640, true)]
//!     .into_iter()
//!     .enumerate()
//! {
//!     heard.extend(receiver.on_packet(&packet(duration, end), 8000, false, seq as u16 + 2).unwrap());
//! }
//! assert_eq!(
//!     heard,
//!     [EventOutcome::Started(nine), EventOutcome::Ended { digit: nine, duration: 640 }]
//! );
//! ```

use super::Digit;

/// Length of a telephone-event payload (RFC 4733 §2.3).
pub const PAYLOAD_LEN: usize = 4;

/// How many end packets are sent per event (RFC 4733 §2.5.1.4: "the final packet for each
/// event ... SHOULD be sent a total of three times").
pub const END_REPEATS: u8 = 3;

/// Default volume for generated events: -10 dBm0 (RFC 4733 §2.3.4 expresses the power level
/// as a positive number of dB below 0 dBm0; 0-63).
pub const DEFAULT_VOLUME: u8 = 10;

/// The most timestamp units one segment of a long event can report (RFC 4733 §2.5.1.3).
const SEGMENT_MAX: u32 = 0xFFFF;

/// How many recently reported events are remembered to recognize their late copies.
const HISTORY: usize = 8;

/// Why a telephone-event payload produced no digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Shorter than the 4 bytes of RFC 4733 §2.3.
    #[error("telephone-event payload is {0} bytes, need at least 4")]
    TooShort(usize),
    /// An event that is not a DTMF key (flash, line or trunk events, RFC 4733 §3.2 and
    /// RFC 4734); not an error of the peer, only nothing Careline acts on.
    #[error("telephone-event code {0} is not a DTMF key")]
    NotDtmf(u8),
}

/// One decoded telephone-event payload (RFC 4733 §2.3):
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     event     |E|R| volume    |          duration             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    /// Event code (§3.2: 0-15 are the DTMF keys).
    pub event: u8,
    /// E bit: this report is the end of the event.
    pub end: bool,
    /// Power level in dB below 0 dBm0, 0-63 (only the low 6 bits are sent).
    pub volume: u8,
    /// Duration so far in RTP timestamp units, counted from the event's timestamp.
    pub duration: u16,
}

impl EventPayload {
    /// Decodes the first 4 bytes of `payload`. Longer payloads are accepted (some gateways
    /// pad); the R bit is ignored as §2.3.3 requires of receivers.
    pub fn decode(payload: &[u8]) -> Result<EventPayload, EventError> {
        let b: &[u8; PAYLOAD_LEN] = payload
            .get(..PAYLOAD_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(EventError::TooShort(payload.len()))?;
        Ok(EventPayload {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3F,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    /// Encodes to the 4-byte wire form; R is sent as 0 (§2.3.3), volume is masked to 6 bits.
    pub fn encode(&self) -> [u8; PAYLOAD_LEN] {
        let d = self.duration.to_be_bytes();
        let flags = if self.end { 0x80 } else { 0 } | (self.volume & 0x3F);
        [self.event, flags, d[0], d[1]]
    }
}

/// What one received packet meant for the digit stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// A new keypress: reported once per event, on whichever of its packets arrives first.
    Started(Digit),
    /// The keypress ended, after `duration` RTP timestamp units in total (all segments of a
    /// long event added up, hence `u32`: at 48 kHz one 16-bit segment is only 1.37 s).
    Ended { digit: Digit, duration: u32 },
}

/// The outcomes of one packet, in order: at most an implicit end of the previous event (whose
/// end packets were all lost), the start of a new one, and its end (when the first packet that
/// got through was already an end packet). A fixed array, so reporting never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcomes {
    items: [Option<EventOutcome>; 3],
    len: u8,
    pos: u8,
}

impl Outcomes {
    fn push(&mut self, o: EventOutcome) {
        // Capacity 3 is the most `on_packet` ever produces; `get_mut` keeps it panic-free.
        if let Some(slot) = self.items.get_mut(usize::from(self.len)) {
            *slot = Some(o);
            self.len += 1;
        }
    }

    /// No outcome: the packet was another copy or update of a known event.
    pub fn is_empty(&self) -> bool {
        self.len == self.pos
    }
}

impl Iterator for Outcomes {
    type Item = EventOutcome;

    fn next(&mut self) -> Option<EventOutcome> {
        if self.pos >= self.len {
            return None;
        }
        let item = self.items.get(usize::from(self.pos)).copied().flatten();
        self.pos += 1;
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::from(self.len - self.pos);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Outcomes {}

/// The event being received.
#[derive(Debug, Clone, Copy)]
struct Active {
    digit: Digit,
    /// RTP timestamp of the current segment (the event's start timestamp unless it is long).
    timestamp: u32,
    /// Highest duration seen in the current segment.
    seg_duration: u16,
    /// Duration of the earlier segments (and 16-bit wraps) of this event.
    base: u32,
    /// Newest RTP sequence number seen for this event, to tell a duration wrap from reordering.
    last_seq: u16,
}

impl Active {
    fn total(&self) -> u32 {
        self.base.saturating_add(u32::from(self.seg_duration))
    }

    fn update(&mut self, duration: u16, seq: u16) {
        // Durations only grow within a segment, so the largest one seen wins; reordered
        // packets carry smaller ones and change nothing.
        if seq_newer(seq, self.last_seq) {
            self.last_seq = seq;
            if duration >= self.seg_duration {
                self.seg_duration = duration;
            } else if self.seg_duration - duration > 0x8000 {
                // A sender that lets the 16-bit duration wrap instead of starting a new
                // segment (§2.5.1.3 asks for segments; some do not): a *newer* packet with a
                // much smaller duration is a wrap.
                self.base = self.base.saturating_add(0x1_0000);
                self.seg_duration = duration;
            }
        } else if duration > self.seg_duration && duration - self.seg_duration < 0x8000 {
            // Older sequence number but a larger duration, not across a wrap: keep the max.
            self.seg_duration = duration;
        }
    }
}

/// `a` is after `b` in 16-bit serial-number arithmetic.
fn seq_newer(a: u16, b: u16) -> bool {
    (a.wrapping_sub(b) as i16) > 0
}

/// Deduplicates received telephone-events into one `Started` and one `Ended` per keypress.
///
/// One per incoming RTP stream; call [`EventReceiver::reset`] when the SSRC changes, since
/// timestamps of the new source are unrelated to the remembered ones.
#[derive(Debug, Clone, Default)]
pub struct EventReceiver {
    active: Option<Active>,
    /// (timestamp, digit) of events (and long-event segments) already reported Started.
    history: [Option<(u32, Digit)>; HISTORY],
    next: usize,
    stale: u64,
}

impl EventReceiver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one telephone-event RTP packet (payload, header timestamp, marker, sequence).
    ///
    /// Identity is (RTP timestamp, event code), per §2.5.1.1; the marker is not relied on
    /// (it is lost with the first packet). Rules, in order:
    /// - same timestamp and digit as the event in progress: a duration update; the first E
    ///   packet ends it, later copies are dropped through the history;
    /// - same digit at the in-progress timestamp + 0xFFFF: the next segment of a long event
    ///   (§2.5.1.3), still one keypress;
    /// - a (timestamp, digit) already reported: a late or duplicate copy, dropped;
    /// - anything else: a new keypress. An in-progress event that never got its end packet is
    ///   ended first (§2.5.1.4 lets a receiver end an event when a new one starts).
    ///
    /// Non-DTMF events and payloads shorter than 4 bytes return an error and change nothing.
    pub fn on_packet(
        &mut self,
        payload: &[u8],
        rtp_timestamp: u32,
        marker: bool,
        seq: u16,
    ) -> Result<Outcomes, EventError> {
        // The marker only marks a first packet, which may be lost; identity is the timestamp.
        let _ = marker;
        let p = EventPayload::decode(payload)?;
        let digit = Digit::from_event_code(p.event).ok_or(EventError::NotDtmf(p.event))?;
        let mut out = Outcomes::default();

        if let Some(a) = self.active.as_mut() {
            if a.digit == digit && a.timestamp == rtp_timestamp {
                a.update(p.duration, seq);
                if p.end {
                    out.push(EventOutcome::Ended {
                        digit,
                        duration: a.total(),
                    });
                    self.active = None;
                }
                return Ok(out);
            }
            if a.digit == digit && rtp_timestamp.wrapping_sub(a.timestamp) == SEGMENT_MAX {
                // Next segment of a long event: its timestamp is the previous one + 0xFFFF.
                a.base = a.base.saturating_add(SEGMENT_MAX);
                a.timestamp = rtp_timestamp;
                a.seg_duration = p.duration;
                a.last_seq = seq;
                let total = a.total();
                self.remember(rtp_timestamp, digit);
                if p.end {
                    out.push(EventOutcome::Ended {
                        digit,
                        duration: total,
                    });
                    self.active = None;
                }
                return Ok(out);
            }
        }

        if self.seen(rtp_timestamp, digit) {
            self.stale += 1;
            return Ok(out);
        }

        if let Some(prev) = self.active.take() {
            out.push(EventOutcome::Ended {
                digit: prev.digit,
                duration: prev.total(),
            });
        }
        self.remember(rtp_timestamp, digit);
        out.push(EventOutcome::Started(digit));
        if p.end {
            out.push(EventOutcome::Ended {
                digit,
                duration: u32::from(p.duration),
            });
        } else {
            self.active = Some(Active {
                digit,
                timestamp: rtp_timestamp,
                seg_duration: p.duration,
                base: 0,
                last_seq: seq,
            });
        }
        Ok(out)
    }

    /// Ends the event in progress, if any, with the duration seen so far: for the caller's
    /// timeout when all end packets were lost and no further event follows, or at hang-up.
    pub fn finish(&mut self) -> Option<EventOutcome> {
        self.active.take().map(|a| EventOutcome::Ended {
            digit: a.digit,
            duration: a.total(),
        })
    }

    /// The key currently held down (started, not yet ended).
    pub fn active_digit(&self) -> Option<Digit> {
        self.active.map(|a| a.digit)
    }

    /// Packets dropped as late or duplicate copies of an already reported event.
    pub fn stale_packets(&self) -> u64 {
        self.stale
    }

    /// Forgets everything (new SSRC, re-INVITE that renumbers the stream).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    fn seen(&self, timestamp: u32, digit: Digit) -> bool {
        self.history
            .iter()
            .flatten()
            .any(|&(t, d)| t == timestamp && d == digit)
    }

    fn remember(&mut self, timestamp: u32, digit: Digit) {
        self.history[self.next % HISTORY] = Some((timestamp, digit));
        self.next = (self.next + 1) % HISTORY;
    }
}

/// One generated telephone-event packet; the caller adds the RTP header (sequence number from
/// the stream's counter, the negotiated telephone-event payload type, this marker and
/// timestamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    pub payload: [u8; PAYLOAD_LEN],
    pub marker: bool,
    pub timestamp: u32,
}

/// Generates the packets of one outgoing keypress, as RFC 4733 §2.5 prescribes:
/// - the first packet has the marker bit (§2.5.1.1);
/// - one update per packetization interval, each with the duration so far (§2.5.1.2),
///   all with the event's start timestamp;
/// - the end packet (E bit, final duration) three times (§2.5.1.4);
/// - events longer than 0xFFFF units are split into segments whose timestamp advances by
///   0xFFFF (§2.5.1.3): the last report of a segment has duration 0xFFFF and no E bit.
///
/// The caller sends one packet per `interval` (end retransmissions included, as SIPp and
/// common gateways do) and must not send audio until [`EventSender::end_timestamp`].
#[derive(Debug, Clone)]
pub struct EventSender {
    digit: Digit,
    volume: u8,
    interval: u32,
    total: u32,
    /// Timestamp of the current segment.
    seg_ts: u32,
    /// Offset of the current segment's start from the event's start.
    seg_start: u32,
    /// Duration reported so far, from the event's start.
    reported: u32,
    first: bool,
    ends_sent: u8,
    start_ts: u32,
}

impl EventSender {
    /// `interval` is the packetization interval in timestamp units (160 for 20 ms at 8 kHz,
    /// 960 at 48 kHz), clamped to 1..=0xFFFF; `duration` the tone length in the same units.
    pub fn new(digit: Digit, start_timestamp: u32, interval: u32, duration: u32) -> Self {
        EventSender {
            digit,
            volume: DEFAULT_VOLUME,
            interval: interval.clamp(1, SEGMENT_MAX),
            total: duration,
            seg_ts: start_timestamp,
            seg_start: 0,
            reported: 0,
            first: true,
            ends_sent: 0,
            start_ts: start_timestamp,
        }
    }

    /// Sets the reported volume (dB below 0 dBm0, 0-63).
    pub fn with_volume(mut self, volume: u8) -> Self {
        self.volume = volume.min(63);
        self
    }

    /// The RTP timestamp at which the tone ends: the earliest timestamp for audio after it.
    pub fn end_timestamp(&self) -> u32 {
        self.start_ts.wrapping_add(self.total)
    }

    /// The next packet to send, or `None` once the third end packet has been produced.
    pub fn next_packet(&mut self) -> Option<EventPacket> {
        if self.ends_sent >= END_REPEATS {
            return None;
        }
        let marker = std::mem::take(&mut self.first);
        if self.reported < self.total {
            let t = self.reported.saturating_add(self.interval).min(self.total);
            self.reported = t;
            if t - self.seg_start > SEGMENT_MAX {
                // This interval crosses the 16-bit limit: close the segment at 0xFFFF, the
                // following packets belong to a new segment starting at seg_ts + 0xFFFF.
                let p = self.packet(self.seg_ts, SEGMENT_MAX, false, marker);
                self.seg_start += SEGMENT_MAX;
                self.seg_ts = self.seg_ts.wrapping_add(SEGMENT_MAX);
                return Some(p);
            }
            if t < self.total {
                return Some(self.packet(self.seg_ts, t - self.seg_start, false, marker));
            }
        }
        self.ends_sent += 1;
        let d = self.total - self.seg_start;
        Some(self.packet(self.seg_ts, d, true, marker))
    }

    fn packet(&self, timestamp: u32, duration: u32, end: bool, marker: bool) -> EventPacket {
        let payload = EventPayload {
            event: self.digit.event_code(),
            end,
            volume: self.volume,
            duration: duration.min(SEGMENT_MAX) as u16,
        };
        EventPacket {
            payload: payload.encode(),
            marker,
            timestamp,
        }
    }
}

impl Iterator for EventSender {
    type Item = EventPacket;

    fn next(&mut self) -> Option<EventPacket> {
        self.next_packet()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digit {
        Digit::from_char(c).unwrap()
    }

    fn pay(event: u8, end: bool, duration: u16) -> [u8; 4] {
        EventPayload {
            event,
            end,
            volume: 10,
            duration,
        }
        .encode()
    }

    /// Feeds (payload, ts, marker, seq) packets and collects every outcome.
    fn run(rx: &mut EventReceiver, pkts: &[([u8; 4], u32, bool, u16)]) -> Vec<EventOutcome> {
        let mut all = Vec::new();
        for (p, ts, m, seq) in pkts {
            all.extend(rx.on_packet(p, *ts, *m, *seq).unwrap());
        }
        all
    }

    /// The packets of SIPp's `dtmf_2833_1.pcap` (digit 1, 8 kHz, 20 ms): marker on the first,
    /// durations 160..=1120 in steps of 160, then three end packets of 1280, one timestamp.
    fn sipp_digit_1(ts: u32, seq0: u16) -> Vec<([u8; 4], u32, bool, u16)> {
        let mut v = Vec::new();
        let mut seq = seq0;
        for k in 1..=7u16 {
            v.push((pay(1, false, 160 * k), ts, k == 1, seq));
            seq = seq.wrapping_add(1);
        }
        for _ in 0..3 {
            v.push((pay(1, true, 1280), ts, false, seq));
            seq = seq.wrapping_add(1);
        }
        v
    }

    fn started(c: char) -> EventOutcome {
        EventOutcome::Started(d(c))
    }

    fn ended(c: char, duration: u32) -> EventOutcome {
        EventOutcome::Ended {
            digit: d(c),
            duration,
        }
    }

    #[test]
    fn payload_round_trips_and_matches_wire_bytes() {
        let p = EventPayload {
            event: 11,
            end: true,
            volume: 10,
            duration: 1280,
        };
        assert_eq!(p.encode(), [11, 0x8A, 0x05, 0x00]);
        assert_eq!(EventPayload::decode(&p.encode()), Ok(p));
        // R bit set by a peer is ignored; volume above 63 is masked on encode.
        let raw = [5u8, 0x40 | 0x3F, 0xFF, 0xFF];
        let q = EventPayload::decode(&raw).unwrap();
        assert_eq!(
            q,
            EventPayload {
                event: 5,
                end: false,
                volume: 63,
                duration: 0xFFFF
            }
        );
        let big = EventPayload {
            event: 1,
            end: false,
            volume: 0xFF,
            duration: 0,
        };
        assert_eq!(big.encode()[1], 0x3F);
        // Padded payloads decode from their first 4 bytes.
        assert_eq!(
            EventPayload::decode(&[1, 0x8A, 0, 160, 0, 0])
                .unwrap()
                .duration,
            160
        );
    }

    #[test]
    fn sipp_capture_gives_exactly_one_digit() {
        let mut rx = EventReceiver::new();
        let out = run(&mut rx, &sipp_digit_1(0x1234_5678, 1000));
        assert_eq!(out, vec![started('1'), ended('1', 1280)]);
        assert_eq!(
            rx.stale_packets(),
            2,
            "the second and third end packets are copies"
        );
        assert_eq!(rx.active_digit(), None);
    }

    #[test]
    fn started_is_reported_on_the_first_packet_and_active_until_end() {
        let mut rx = EventReceiver::new();
        let pkts = sipp_digit_1(500, 1);
        let first: Vec<_> = rx.on_packet(&pkts[0].0, 500, true, 1).unwrap().collect();
        assert_eq!(first, vec![started('1')]);
        assert_eq!(rx.active_digit(), Some(d('1')));
        for (p, ts, m, seq) in &pkts[1..7] {
            assert!(rx.on_packet(p, *ts, *m, *seq).unwrap().is_empty());
        }
        let end: Vec<_> = rx.on_packet(&pkts[7].0, 500, false, 8).unwrap().collect();
        assert_eq!(end, vec![ended('1', 1280)]);
    }

    #[test]
    fn lost_first_packets_and_marker_still_give_one_start() {
        let mut rx = EventReceiver::new();
        let pkts = sipp_digit_1(8000, 10);
        let out = run(&mut rx, &pkts[3..]);
        assert_eq!(out, vec![started('1'), ended('1', 1280)]);
    }

    #[test]
    fn only_end_packets_report_start_then_end() {
        let mut rx = EventReceiver::new();
        let pkts = sipp_digit_1(8000, 10);
        let first: Vec<_> = rx.on_packet(&pkts[7].0, 8000, false, 17).unwrap().collect();
        assert_eq!(first, vec![started('1'), ended('1', 1280)]);
        assert!(run(&mut rx, &pkts[8..]).is_empty());
        // A single surviving end packet is enough too.
        let mut rx = EventReceiver::new();
        assert_eq!(
            run(&mut rx, &pkts[9..]),
            vec![started('1'), ended('1', 1280)]
        );
    }

    #[test]
    fn reordered_packets_give_one_digit_with_the_final_duration() {
        let mut rx = EventReceiver::new();
        let p = sipp_digit_1(160_000, 100);
        // Updates out of order, the marker packet late, an end packet before the last update.
        let order = [2usize, 0, 1, 4, 3, 5, 7, 6, 8, 9];
        let shuffled: Vec<_> = order.iter().map(|&i| p[i]).collect();
        assert_eq!(
            run(&mut rx, &shuffled),
            vec![started('1'), ended('1', 1280)]
        );
        // Reverse order: the end packets come first.
        let mut rx = EventReceiver::new();
        let rev: Vec<_> = p.iter().rev().copied().collect();
        assert_eq!(run(&mut rx, &rev), vec![started('1'), ended('1', 1280)]);
    }

    #[test]
    fn late_duplicate_end_packets_are_dropped_after_the_next_digit() {
        let mut rx = EventReceiver::new();
        let mut out = run(&mut rx, &sipp_digit_1(1000, 1)[..8]);
        // 100 ms later: the next key starts, then the two remaining end packets of '1' show up.
        out.extend(run(&mut rx, &[(pay(2, false, 160), 3000, true, 12)]));
        out.extend(run(&mut rx, &[(pay(1, true, 1280), 1000, false, 9)]));
        out.extend(run(&mut rx, &[(pay(1, true, 1280), 1000, false, 10)]));
        out.extend(run(&mut rx, &[(pay(2, true, 800), 3000, false, 13)]));
        assert_eq!(
            out,
            vec![
                started('1'),
                ended('1', 1280),
                started('2'),
                ended('2', 800)
            ]
        );
    }

    #[test]
    fn two_presses_of_the_same_key_are_two_digits() {
        let mut rx = EventReceiver::new();
        let mut pkts = sipp_digit_1(1000, 1);
        pkts.extend(sipp_digit_1(1000 + 1280 + 800, 11));
        let out = run(&mut rx, &pkts);
        assert_eq!(
            out,
            vec![
                started('1'),
                ended('1', 1280),
                started('1'),
                ended('1', 1280)
            ]
        );
    }

    #[test]
    fn missing_end_packets_end_the_event_when_the_next_one_starts() {
        let mut rx = EventReceiver::new();
        let mut out = run(&mut rx, &sipp_digit_1(1000, 1)[..5]); // up to duration 800
        out.extend(run(&mut rx, &sipp_digit_1(5000, 20)[..1]));
        assert_eq!(out, vec![started('1'), ended('1', 800), started('1')]);
        // Late end packets of the first press are recognized as stale.
        assert!(run(&mut rx, &[(pay(1, true, 1280), 1000, false, 8)]).is_empty());
        assert_eq!(rx.finish(), Some(ended('1', 160)));
        assert_eq!(rx.finish(), None);
    }

    #[test]
    fn implicit_end_start_and_end_come_out_of_one_packet_in_order() {
        let mut rx = EventReceiver::new();
        run(&mut rx, &[(pay(4, false, 320), 100, true, 1)]);
        let out: Vec<_> = rx
            .on_packet(&pay(5, true, 640), 2000, false, 9)
            .unwrap()
            .collect();
        assert_eq!(out, vec![ended('4', 320), started('5'), ended('5', 640)]);
    }

    #[test]
    fn timestamp_and_sequence_wrap_do_not_confuse_events() {
        let mut rx = EventReceiver::new();
        let mut pkts = sipp_digit_1(u32::MAX - 100, 65530); // sequence wraps inside the event
        pkts.extend(sipp_digit_1(2000, 4)); // timestamp wrapped between the events
        let out = run(&mut rx, &pkts);
        assert_eq!(
            out,
            vec![
                started('1'),
                ended('1', 1280),
                started('1'),
                ended('1', 1280)
            ]
        );
    }

    #[test]
    fn history_remembers_eight_events_then_forgets_the_oldest() {
        let mut rx = EventReceiver::new();
        for i in 0..9u32 {
            let out = run(&mut rx, &[(pay(3, true, 800), i * 10_000, false, i as u16)]);
            assert_eq!(out.len(), 2);
        }
        // Events 1..=8 are still remembered; a late copy of one gives nothing.
        assert!(run(&mut rx, &[(pay(3, true, 800), 10_000, false, 50)]).is_empty());
        // Event 0 was evicted: a copy of it would now read as a new press (this is why the
        // history exists and why it is 8 deep: far more than any realistic reorder window).
        assert_eq!(run(&mut rx, &[(pay(3, true, 800), 0, false, 51)]).len(), 2);
    }

    #[test]
    fn long_event_in_segments_is_one_keypress() {
        // 10 s of '#' at 8 kHz = 80_000 units: two segments (§2.5.1.3).
        let tx = EventSender::new(d('#'), 4242, 160, 80_000);
        let pkts: Vec<EventPacket> = tx.collect();
        let ts: Vec<u32> = pkts.iter().map(|p| p.timestamp).collect();
        assert!(ts.contains(&4242) && ts.contains(&(4242 + 0xFFFF)));
        let seg_end = pkts
            .iter()
            .find(|p| EventPayload::decode(&p.payload).unwrap().duration == 0xFFFF)
            .unwrap();
        assert_eq!(seg_end.timestamp, 4242);
        assert!(!EventPayload::decode(&seg_end.payload).unwrap().end);
        let mut rx = EventReceiver::new();
        let mut out = Vec::new();
        for (i, p) in pkts.iter().enumerate() {
            out.extend(
                rx.on_packet(&p.payload, p.timestamp, p.marker, i as u16)
                    .unwrap(),
            );
        }
        assert_eq!(out, vec![started('#'), ended('#', 80_000)]);
    }

    #[test]
    fn long_event_whose_duration_wraps_without_segments_is_one_keypress() {
        let mut rx = EventReceiver::new();
        let mut out = Vec::new();
        let mut seq = 0u16;
        let mut dur: u32 = 0;
        while dur < 70_000 {
            dur += 960;
            out.extend(
                rx.on_packet(&pay(0, false, dur as u16), 77, seq == 0, seq)
                    .unwrap(),
            );
            seq += 1;
        }
        // A reordered older update (large duration after the wrap) must not add another wrap.
        out.extend(
            rx.on_packet(&pay(0, false, 65_000), 77, false, seq - 5)
                .unwrap(),
        );
        out.extend(
            rx.on_packet(&pay(0, true, dur as u16), 77, false, seq)
                .unwrap(),
        );
        assert_eq!(out, vec![started('0'), ended('0', dur)]);
    }

    #[test]
    fn different_digits_with_the_same_timestamp_are_two_events() {
        let mut rx = EventReceiver::new();
        let out = run(
            &mut rx,
            &[
                (pay(1, true, 800), 500, false, 1),
                (pay(2, true, 800), 500, false, 2),
            ],
        );
        assert_eq!(
            out,
            vec![started('1'), ended('1', 800), started('2'), ended('2', 800)]
        );
    }

    #[test]
    fn garbage_is_rejected_without_panicking_or_changing_state() {
        let mut rx = EventReceiver::new();
        for len in 0..4 {
            let buf = [0u8; 4];
            assert_eq!(
                rx.on_packet(&buf[..len], 1, true, 1),
                Err(EventError::TooShort(len))
            );
        }
        for code in [16u8, 32, 64, 255] {
            assert_eq!(
                rx.on_packet(&pay(code, true, 160), 1, true, 1),
                Err(EventError::NotDtmf(code))
            );
        }
        assert_eq!(rx.active_digit(), None);
        // Random bytes: never a panic, and every outcome is a DTMF digit.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..5000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_be_bytes();
            let len = (b[7] % 7) as usize;
            let ts = u32::from(b[6] % 4) * 1000;
            if let Ok(outs) = rx.on_packet(&b[..len], ts, b[5] & 1 == 1, i as u16) {
                for o in outs {
                    let digit = match o {
                        EventOutcome::Started(d) | EventOutcome::Ended { digit: d, .. } => d,
                    };
                    assert!(digit.event_code() < 16);
                }
            }
        }
    }

    #[test]
    fn sender_follows_rfc4733_packet_pattern() {
        let pkts: Vec<EventPacket> = EventSender::new(d('1'), 9000, 160, 1280).collect();
        // 7 updates (160..=1120) then 3 end packets of 1280: the same pattern SIPp sends.
        assert_eq!(pkts.len(), 10);
        for (i, p) in pkts.iter().enumerate() {
            let e = EventPayload::decode(&p.payload).unwrap();
            assert_eq!(p.timestamp, 9000);
            assert_eq!(p.marker, i == 0);
            assert_eq!(e.event, 1);
            assert_eq!(e.volume, DEFAULT_VOLUME);
            if i < 7 {
                assert!(!e.end);
                assert_eq!(e.duration, 160 * (i as u16 + 1));
            } else {
                assert!(e.end);
                assert_eq!(e.duration, 1280);
            }
        }
        assert_eq!(
            EventSender::new(d('1'), 9000, 160, 1280).end_timestamp(),
            10_280
        );
    }

    #[test]
    fn sender_handles_uneven_short_and_48k_durations() {
        // 100 ms at 48 kHz with 20 ms packets: 960, 1920, 2880, 3840, then end 4800 x3.
        let durs: Vec<(u16, bool)> = EventSender::new(d('9'), 0, 960, 4800)
            .map(|p| {
                let e = EventPayload::decode(&p.payload).unwrap();
                (e.duration, e.end)
            })
            .collect();
        assert_eq!(
            durs,
            vec![
                (960, false),
                (1920, false),
                (2880, false),
                (3840, false),
                (4800, true),
                (4800, true),
                (4800, true)
            ]
        );
        // Not a multiple of the interval: the last update is capped at the total.
        let durs: Vec<u16> = EventSender::new(d('9'), 0, 160, 400)
            .map(|p| EventPayload::decode(&p.payload).unwrap().duration)
            .collect();
        assert_eq!(durs, vec![160, 320, 400, 400, 400]);
        // Shorter than one interval: the first packet is already an end packet, with marker.
        let pkts: Vec<EventPacket> = EventSender::new(d('9'), 0, 160, 100)
            .with_volume(99)
            .collect();
        assert_eq!(pkts.len(), 3);
        assert!(pkts[0].marker && !pkts[1].marker);
        let e = EventPayload::decode(&pkts[0].payload).unwrap();
        assert!(e.end && e.duration == 100 && e.volume == 63);
        // Interval 0 is clamped instead of looping forever.
        assert_eq!(EventSender::new(d('9'), 0, 0, 3).count(), 5);
    }

    #[test]
    fn sender_output_decoded_by_receiver_gives_each_digit_once() {
        let mut rx = EventReceiver::new();
        let mut out = Vec::new();
        let mut ts = u32::MAX - 3000; // crosses the timestamp wrap on the way
        let mut seq = 65_500u16;
        for c in "1234567890*#ABCD11".chars() {
            let tx = EventSender::new(d(c), ts, 160, 800);
            ts = tx.end_timestamp().wrapping_add(800);
            for p in tx {
                // Every packet twice, as if the network duplicated them all.
                for _ in 0..2 {
                    out.extend(
                        rx.on_packet(&p.payload, p.timestamp, p.marker, seq)
                            .unwrap(),
                    );
                }
                seq = seq.wrapping_add(1);
            }
        }
        let digits: String = out
            .iter()
            .filter_map(|o| match o {
                EventOutcome::Started(d) => Some(d.to_char()),
                EventOutcome::Ended { .. } => None,
            })
            .collect();
        assert_eq!(digits, "1234567890*#ABCD11");
        assert_eq!(out.len(), 36);
        assert!(
            out.iter()
                .all(|o| !matches!(o, EventOutcome::Ended { duration, .. } if *duration != 800))
        );
    }

    #[test]
    fn reset_forgets_history() {
        let mut rx = EventReceiver::new();
        let pkts = sipp_digit_1(1000, 1);
        assert_eq!(run(&mut rx, &pkts).len(), 2);
        assert!(run(&mut rx, &pkts).is_empty());
        rx.reset();
        assert_eq!(run(&mut rx, &pkts).len(), 2);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// One keypress as a phone sends it: (digit, tone length in timestamp units).
        fn presses() -> impl Strategy<Value = Vec<(usize, u32)>> {
            prop::collection::vec((0usize..16, 160u32..200_000), 1..8)
        }

        /// Every packet of `presses` sent back to back by [`EventSender`] at 8 kHz, 20 ms
        /// apart, each press starting after the previous tone: (packet, sequence number,
        /// press index).
        fn packets(presses: &[(usize, u32)], start: u32) -> Vec<(EventPacket, u16, usize)> {
            let mut out = Vec::new();
            let mut ts = start;
            let mut seq = 0u16;
            for (i, &(d, len)) in presses.iter().enumerate() {
                let mut tx = EventSender::new(Digit::ALL[d], ts, 160, len);
                while let Some(p) = tx.next_packet() {
                    out.push((p, seq, i));
                    seq = seq.wrapping_add(1);
                }
                ts = tx.end_timestamp().wrapping_add(160);
            }
            out
        }

        fn feed(rx: &mut EventReceiver, pkts: &[(EventPacket, u16, usize)]) -> Vec<EventOutcome> {
            let mut all = Vec::new();
            for (p, seq, _) in pkts {
                all.extend(
                    rx.on_packet(&p.payload, p.timestamp, p.marker, *seq)
                        .unwrap(),
                );
            }
            all.extend(rx.finish());
            all
        }

        proptest! {
            /// Whatever the keys and their lengths (long ones in several 16-bit segments),
            /// wherever the RTP timestamp starts (wrapping included), and however the network
            /// duplicates packets or swaps neighbours within a keypress: each press is one
            /// digit, in order, ended once with the length the phone sent.
            #[test]
            fn each_press_is_one_digit_with_its_length_despite_duplicates_and_reordering(
                presses in presses(),
                start in any::<u32>(),
                dups in prop::collection::vec(0usize..3, 0..400),
                swaps in prop::collection::vec(any::<bool>(), 0..400),
            ) {
                let mut pkts = packets(&presses, start);
                for i in 0..pkts.len().saturating_sub(1) {
                    if swaps.get(i).copied().unwrap_or(false) && pkts[i].2 == pkts[i + 1].2 {
                        pkts.swap(i, i + 1);
                    }
                }
                let mut damaged = Vec::new();
                for (i, p) in pkts.iter().enumerate() {
                    for _ in 0..=dups.get(i).copied().unwrap_or(0) {
                        damaged.push(*p);
                    }
                }
                let out = feed(&mut EventReceiver::new(), &damaged);
                let expected: Vec<EventOutcome> = presses
                    .iter()
                    .flat_map(|&(d, len)| {
                        let digit = Digit::ALL[d];
                        [EventOutcome::Started(digit), EventOutcome::Ended { digit, duration: len }]
                    })
                    .collect();
                prop_assert_eq!(out, expected);
            }

            /// Packets of short presses lost at random (any of them, the first and the end
            /// packets included): a press of which any packet arrives is one digit, in order;
            /// a press lost whole is no digit; nothing is reported twice.
            #[test]
            fn a_press_of_which_anything_arrives_is_one_digit(
                presses in prop::collection::vec((0usize..16, 160u32..4000), 1..10),
                lost in prop::collection::vec(any::<bool>(), 0..400),
            ) {
                let pkts = packets(&presses, 1_000);
                let kept: Vec<(EventPacket, u16, usize)> = pkts
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !lost.get(*i).copied().unwrap_or(false))
                    .map(|(_, p)| *p)
                    .collect();
                let out = feed(&mut EventReceiver::new(), &kept);
                let started: Vec<Digit> = out
                    .iter()
                    .filter_map(|o| match o {
                        EventOutcome::Started(d) => Some(*d),
                        EventOutcome::Ended { .. } => None,
                    })
                    .collect();
                let mut arrived: Vec<usize> = kept.iter().map(|p| p.2).collect();
                arrived.dedup();
                let expected: Vec<Digit> = arrived.iter().map(|&i| Digit::ALL[presses[i].0]).collect();
                prop_assert_eq!(started, expected);
                let ended = out.iter().filter(|o| matches!(o, EventOutcome::Ended { .. })).count();
                prop_assert_eq!(ended, arrived.len(), "one end per press: {:?}", out);
            }
        }
    }
}
