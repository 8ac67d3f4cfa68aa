//! Cache hints for the media clock's walk over its legs.
//!
//! A media thread visits each of its calls once per 20 ms. Between two visits the other
//! calls' work (and the kernel's, for their sockets) has pushed a call's state out of the
//! caches, so each visit starts with a run of misses, one after the other: the leg, then what
//! it points to (its jitter buffer, its recording's block). At 1,000 recorded calls those
//! first touches were most of what recording added to the media threads (`benches/
//! media_legs.rs`, perf). Asking for the next calls' lines while this one is worked on lets
//! the memory system fetch them in parallel with useful work. Hints only: no effect on what
//! the program computes, and no-ops where the target has no prefetch instruction.

/// Asks for the cache lines that hold `len` bytes from `start` (any address: a prefetch
/// never faults).
#[inline(always)]
pub fn lines(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        for at in line_addresses(start, len) {
            // SAFETY: PREFETCHT0 reads no memory architecturally and cannot fault, whatever
            // the address (Intel SDM Vol. 2B, PREFETCHh); `sse` is part of x86_64's baseline.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(at as *const i8) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}

/// Asks for the lines that hold `len` bytes from `start` in a state that can be written at
/// once (PREFETCHW). For buffers another thread read last, such as a recording's block that
/// came back from its writer: a read hint would fetch a shared copy, and the first store
/// would still wait for the other core to give the line up.
#[inline(always)]
pub fn lines_for_write(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    if has_prefetchw() {
        for at in line_addresses(start, len) {
            // SAFETY: the CPU has PREFETCHW (checked above), which like PREFETCHT0 cannot
            // fault and changes no program state, whatever the address (AMD64 APM Vol. 3).
            // Inline assembly because the `prfchw` target feature is not stable in Rust.
            unsafe {
                core::arch::asm!(
                    "prefetchw byte ptr [{0}]",
                    in(reg) at,
                    options(nostack, preserves_flags, readonly)
                )
            };
        }
        return;
    }
    lines(start, len);
}

/// CPUID 8000_0001h ECX bit 8 (3DNowPrefetch): AMD since K8, Intel since Broadwell.
#[cfg(target_arch = "x86_64")]
fn has_prefetchw() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        use core::arch::x86_64::__cpuid;
        // CPUID exists on every x86_64 CPU; the extended leaf is read only where reported.
        #[allow(unused_unsafe)]
        // SAFETY: as above (an `unsafe fn` in older toolchains, safe in newer ones).
        let ecx =
            unsafe { (__cpuid(0x8000_0000).eax >= 0x8000_0001).then(|| __cpuid(0x8000_0001).ecx) };
        ecx.is_some_and(|ecx| ecx & (1 << 8) != 0)
    })
}

/// The start of every 64-byte line that `len` bytes from `start` touch (none past the top of
/// the address space).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn line_addresses(start: *const u8, len: usize) -> impl Iterator<Item = usize> {
    const LINE: usize = 64;
    let first = start as usize & !(LINE - 1);
    let end = (start as usize).saturating_add(len);
    (first..end).step_by(LINE)
}

/// The lines of one value in place (not what it points to).
#[inline(always)]
pub fn value<T>(v: &T) {
    lines(v as *const T as *const u8, std::mem::size_of::<T>());
}

/// The lines of a slice's elements.
#[inline(always)]
pub fn slice<T>(s: &[T]) {
    lines(s.as_ptr() as *const u8, std::mem::size_of_val(s));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The media clock hints at whatever a leg's pointers say, stale or odd: a hint must never
    /// read, write or fault, whatever the address and length.
    #[test]
    fn hints_at_any_address_are_harmless() {
        let mut buf = vec![7u8; 300];
        for (start, len) in [
            (std::ptr::null::<u8>(), 4096),
            (usize::MAX as *const u8, 64),
            (16 as *const u8, 0),
            (buf.as_ptr().wrapping_add(3), 257),
        ] {
            lines(start, len);
            lines_for_write(start, len);
        }
        value(&buf);
        slice(&buf[5..]);
        lines_for_write(buf.as_mut_ptr(), buf.len());
        // A hint for writing is not a write: the buffer is as it was.
        assert!(buf.iter().all(|&b| b == 7));
    }
}
