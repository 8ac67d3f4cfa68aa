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

//!
//! One concept per file: `packet` is the wire format, `stats` the measurements that fill it.

mod packet;
mod stats;

pub use packet::*;
pub use stats::*;

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
