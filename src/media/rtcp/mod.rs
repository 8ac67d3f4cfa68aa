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
//!
//! ```
//! use careline::media::rtcp::{ReceiveStats, RtcpPacket, parse_compound, write_rr};
//!
//! // A 20 ms G.711 stream; packet 3 never arrives.
//! let mut stats = ReceiveStats::new(8000);
//! for seq in [1u16, 2, 4, 5] {
//!     stats.on_packet(seq, u32::from(seq) * 160, u64::from(seq) * 20_000);
//! }
//! let block = stats.report_block(0xCAFE, 100_000);
//! assert_eq!(block.cumulative_lost, 1);
//!
//! let mut buf = [0u8; 64];
//! let len = write_rr(&mut buf, 0xBEEF, &[block])?;
//! match parse_compound(&buf[..len])?.next() {
//!     Some(RtcpPacket::ReceiverReport { ssrc, mut reports }) => {
//!         assert_eq!(ssrc, 0xBEEF);
//!         assert_eq!(reports.next(), Some(block));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), careline::media::rtcp::RtcpError>(())
//! ```

mod packet;
mod stats;

pub use packet::*;
pub use stats::*;

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
