//! DTMF: the three ways a caller's keypress reaches Careline, merged into one digit stream.
//!
//! - [`rfc4733`]: telephone-event RTP payloads (RFC 4733), deduplicated per event;
//! - [`inband`]: audio tones decoded from the caller's media (ITU-T Q.23/Q.24), for callers
//!   that negotiated no telephone-event;
//! - SIP INFO bodies (`application/dtmf-relay`, `application/dtmf`), parsed in `sip::info`.
//!
//! [`tone`] synthesizes DTMF audio (tests, the load tester, and in-band sending).

pub mod inband;
pub mod rfc4733;
pub mod tone;

use std::fmt;

use serde::{Deserialize, Serialize};

/// When to listen for keys as audio tones (`rtp.inband_dtmf`): `auto` only when the caller
/// negotiated no telephone-event, since a phone that sends both would press every key twice.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InbandDtmf {
    Auto,
    Always,
    Never,
}

/// RFC 4733 telephone-event as the remote described it in SDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TelephoneEvent {
    pub payload_type: u8,
    pub clock_rate: u32,
}

/// One DTMF key, stored as its RFC 4733 §3.2 event code (0-9, `*`=10, `#`=11, A-D=12-15),
/// so the wire format and the digit are the same number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digit(u8);

impl Digit {
    /// Every digit in event-code order.
    pub const ALL: [Digit; 16] = {
        let mut all = [Digit(0); 16];
        let mut i = 0;
        while i < 16 {
            all[i] = Digit(i as u8);
            i += 1;
        }
        all
    };

    /// The digit for an RFC 4733 event code; `None` for codes that are not DTMF keys
    /// (flash, line events, ...).
    pub fn from_event_code(code: u8) -> Option<Digit> {
        (code < 16).then_some(Digit(code))
    }

    pub fn event_code(self) -> u8 {
        self.0
    }

    /// Parses `0-9 * # A-D` (case-insensitive).
    pub fn from_char(c: char) -> Option<Digit> {
        let code = match c {
            '0'..='9' => c as u8 - b'0',
            '*' => 10,
            '#' => 11,
            'A'..='D' => c as u8 - b'A' + 12,
            'a'..='d' => c as u8 - b'a' + 12,
            _ => return None,
        };
        Some(Digit(code))
    }

    pub fn to_char(self) -> char {
        match self.0 {
            0..=9 => (b'0' + self.0) as char,
            10 => '*',
            11 => '#',
            c => (b'A' + c - 12) as char,
        }
    }

    /// The (low-group, high-group) frequencies in Hz of this key (ITU-T Q.23).
    pub fn frequencies(self) -> (f32, f32) {
        const LOW: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
        const HIGH: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
        // Keypad position (row, column) of each event code.
        let (row, col) = match self.0 {
            1 => (0, 0),
            2 => (0, 1),
            3 => (0, 2),
            12 => (0, 3),
            4 => (1, 0),
            5 => (1, 1),
            6 => (1, 2),
            13 => (1, 3),
            7 => (2, 0),
            8 => (2, 1),
            9 => (2, 2),
            14 => (2, 3),
            10 => (3, 0),
            0 => (3, 1),
            11 => (3, 2),
            _ => (3, 3), // 15 = D
        };
        (LOW[row], HIGH[col])
    }
}

impl fmt::Display for Digit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_char())
    }
}

/// How a digit reached us; kept per digit for metrics and flow logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DtmfMethod {
    Rfc4733,
    Inband,
    SipInfo,
}

impl DtmfMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            DtmfMethod::Rfc4733 => "rfc4733",
            DtmfMethod::Inband => "inband",
            DtmfMethod::SipInfo => "sip_info",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chars_round_trip_through_event_codes() {
        for d in Digit::ALL {
            assert_eq!(Digit::from_char(d.to_char()), Some(d));
            assert_eq!(Digit::from_event_code(d.event_code()), Some(d));
        }
        assert_eq!(Digit::from_char('x'), None);
        assert_eq!(Digit::from_event_code(16), None);
        assert_eq!(Digit::from_char('#').map(Digit::event_code), Some(11));
    }

    #[test]
    fn keypad_frequencies_follow_q23() {
        assert_eq!(
            Digit::from_char('1').unwrap().frequencies(),
            (697.0, 1209.0)
        );
        assert_eq!(
            Digit::from_char('0').unwrap().frequencies(),
            (941.0, 1336.0)
        );
        assert_eq!(
            Digit::from_char('#').unwrap().frequencies(),
            (941.0, 1477.0)
        );
        assert_eq!(
            Digit::from_char('D').unwrap().frequencies(),
            (941.0, 1633.0)
        );
    }
}
