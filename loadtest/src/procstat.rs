//! CPU time and resident memory of a process, from /proc (Linux).

use std::time::Instant;

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    at: Instant,
    /// User + system CPU time, in clock ticks.
    cpu_ticks: u64,
    /// User CPU time alone: what the program itself computes, apart from the kernel's work
    /// for its syscalls (for a load generator on loopback, mostly the network stack).
    user_ticks: u64,
    pub rss_bytes: u64,
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Reads /proc/<pid>/stat and /proc/<pid>/status; `None` when the process is gone.
pub fn sample(pid: u32) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesized command (which may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the command.
    let user_ticks = f.get(11)?.parse::<u64>().ok()?;
    let cpu_ticks = user_ticks + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(Sample {
        at: Instant::now(),
        cpu_ticks,
        user_ticks,
        rss_bytes: rss_kb * 1024,
    })
}

/// CPU use between two samples, in percent of one core.
pub fn cpu_percent(a: &Sample, b: &Sample) -> f64 {
    percent(a, b, a.cpu_ticks, b.cpu_ticks)
}

/// User CPU between two samples (the part of [`cpu_percent`] outside the kernel).
pub fn user_percent(a: &Sample, b: &Sample) -> f64 {
    percent(a, b, a.user_ticks, b.user_ticks)
}

fn percent(a: &Sample, b: &Sample, ticks_a: u64, ticks_b: u64) -> f64 {
    let secs = b.at.duration_since(a.at).as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    ticks_b.saturating_sub(ticks_a) as f64 / clock_ticks_per_sec() / secs * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let a = sample(std::process::id()).unwrap();
        // Spin until this process has used 0.3 s of CPU, however long that takes on a busy
        // machine (counted by the process's own CPU time, not the wall clock).
        let mut x = 0u64;
        let enough = (0.3 * clock_ticks_per_sec()) as u64;
        loop {
            for _ in 0..1_000_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            if sample(std::process::id()).unwrap().cpu_ticks - a.cpu_ticks >= enough {
                break;
            }
        }
        std::hint::black_box(x);
        let b = sample(std::process::id()).unwrap();
        assert!(b.rss_bytes > 1 << 20);
        // One busy thread: more than nothing and at most one core, whatever else runs (the
        // test harness's other threads may add a little).
        let cpu = cpu_percent(&a, &b);
        assert!(cpu > 0.0 && cpu < 250.0, "{cpu}");
        // The loop makes no syscalls: nearly all of it is user time.
        let user = user_percent(&a, &b);
        assert!(user > 0.5 * cpu && user <= cpu, "{user} of {cpu}");
        assert!(sample(u32::MAX).is_none());
    }
}
