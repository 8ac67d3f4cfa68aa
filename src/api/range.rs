//! Byte ranges of a response (RFC 9110 §14): what lets a browser's `<audio>` element seek in
//! a recording instead of playing it from the start. One range per request; anything else a
//! client may send (several ranges, other units, bad syntax) is answered with the whole body,
//! which the RFC allows.

use axum::body::Bytes;

/// The bytes a `Range` header asks for, out of a body of `total` bytes: `None` to send the
/// whole body, `Some(Ok((first, last)))` for a part (both inclusive), `Some(Err(()))` when
/// the range starts past the end (416).
pub(crate) fn requested(header: &str, total: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = header.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    if first.is_empty() {
        // The last `n` bytes.
        let n = number(last)?;
        if n == 0 || total == 0 {
            return Some(Err(()));
        }
        return Some(Ok((total.saturating_sub(n), total - 1)));
    }
    let first = number(first)?;
    let last = match last {
        "" => u64::MAX,
        l => number(l)?,
    };
    if last < first {
        return None;
    }
    if first >= total {
        return Some(Err(()));
    }
    Some(Ok((first, last.min(total - 1))))
}

/// Which bytes of a stream a range keeps: the first `skip` are dropped, then at most `left`
/// pass (`None`: all).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub skip: u64,
    pub left: Option<u64>,
}

impl Window {
    pub(crate) const ALL: Window = Window {
        skip: 0,
        left: None,
    };

    /// What of `bytes`, the stream's next piece, is sent.
    pub(crate) fn cut(&mut self, mut bytes: Bytes) -> Bytes {
        let drop = self.skip.min(bytes.len() as u64) as usize;
        self.skip -= drop as u64;
        let mut kept = bytes.split_off(drop);
        if let Some(left) = &mut self.left {
            let keep = (*left).min(kept.len() as u64) as usize;
            *left -= keep as u64;
            kept.truncate(keep);
        }
        kept
    }

    /// Everything the range asked for was sent: the rest of the stream need not be read.
    pub(crate) fn is_full(&self) -> bool {
        self.left == Some(0)
    }

    /// Bytes still owed (0 when unbounded or full).
    pub(crate) fn owed(&self) -> u64 {
        self.left.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        let t = 1000;
        assert_eq!(requested("bytes=0-99", t), Some(Ok((0, 99))));
        assert_eq!(requested("bytes=500-", t), Some(Ok((500, 999))));
        assert_eq!(requested("bytes=990-2000", t), Some(Ok((990, 999))));
        assert_eq!(requested("bytes=-100", t), Some(Ok((900, 999))));
        assert_eq!(requested("bytes=-5000", t), Some(Ok((0, 999))));
        assert_eq!(requested(" bytes= 7 - 8 ", t), Some(Ok((7, 8))));
        // Past the end, or an empty suffix: unsatisfiable.
        assert_eq!(requested("bytes=1000-", t), Some(Err(())));
        assert_eq!(requested("bytes=-0", t), Some(Err(())));
        assert_eq!(requested("bytes=0-", 0), Some(Err(())));
        // Anything else: the whole body.
        for other in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-4",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=",
            "bytes=-",
            "0-99",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(requested(other, t), None, "{other}");
        }
    }

    #[test]
    fn a_window_keeps_exactly_its_bytes_whatever_the_pieces() {
        let data: Vec<u8> = (0..=255).collect();
        for (skip, left) in [(0, None), (10, Some(5)), (0, Some(256)), (250, Some(100))] {
            for piece in [1, 3, 64, 300] {
                let mut w = Window { skip, left };
                let mut got = Vec::new();
                for p in data.chunks(piece) {
                    got.extend_from_slice(&w.cut(Bytes::copy_from_slice(p)));
                }
                let end = left.map_or(256, |l| (skip + l).min(256)) as usize;
                assert_eq!(got, data[skip as usize..end], "{skip} {left:?} {piece}");
                assert_eq!(
                    w.is_full(),
                    left.is_some_and(|l| skip + l <= 256),
                    "{skip} {left:?}"
                );
            }
        }
    }
}
