//! One clock for everything the load tester measures: CLOCK_REALTIME in nanoseconds.
//!
//! The kernel stamps every received datagram with this clock (`SO_TIMESTAMPNS`), so send
//! times, SIP response times and RTP arrival times all share one time base, and the arrival
//! time of a packet does not depend on when the generator's own tick got round to reading it.

/// Nanoseconds since the Unix epoch.
pub type Nanos = i64;

pub const MS: Nanos = 1_000_000;

/// The current CLOCK_REALTIME time.
pub fn now() -> Nanos {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the struct passed in.
    unsafe {
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
    }
    ts.tv_sec as Nanos * 1_000_000_000 + ts.tv_nsec as Nanos
}

/// `at` as a monotonic `Instant`, for the WebRTC library's timers (it runs on `Instant`):
/// both clocks advance together, so one pair of readings taken at first use maps one onto the
/// other for the length of a run.
pub fn instant(at: Nanos) -> std::time::Instant {
    use std::sync::OnceLock;
    static BASE: OnceLock<(std::time::Instant, Nanos)> = OnceLock::new();
    let (base, base_ns) = *BASE.get_or_init(|| (std::time::Instant::now(), now()));
    let d = at - base_ns;
    if d >= 0 {
        base + std::time::Duration::from_nanos(d as u64)
    } else {
        base.checked_sub(std::time::Duration::from_nanos((-d) as u64))
            .unwrap_or(base)
    }
}
