//! Reads a recording back: a push parser fed ciphertext in any slices (a file, an S3 byte
//! stream, an HTTP response) that yields plaintext and names exactly what went wrong.
//!
//! Every way a chunk stream can be damaged has its own error, because an operator must know
//! whether they face a crash (truncated: everything before is fine), a storage fault (a
//! corrupt chunk) or tampering (reordered, spliced, trailing data, altered header).

use super::crypt::{self, HeaderError, OpenedHeader};
use super::format::{
    FLAG_FINAL, FRAME_HEADER_LEN, FrameHeader, HEADER_LEN, MAX_FRAME, RecordingId, StreamInfo,
    TAG_LEN,
};
use crate::keys::KeyRing;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error(
        "chunk {chunk} is corrupt: its authentication tag does not match (altered or damaged bytes)"
    )]
    Corrupt { chunk: u32 },
    #[error("chunk {found} appears at position {position}: chunks were reordered")]
    Reordered { position: u32, found: u32 },
    #[error("chunk at position {position} belongs to another recording ({from}): spliced")]
    Spliced { position: u32, from: RecordingId },
    #[error("{}", truncated_message(*.after, *.partial_bytes))]
    Truncated {
        /// The last complete chunk, if any.
        after: Option<u32>,
        /// Bytes of an incomplete frame at the end (a write cut short).
        partial_bytes: usize,
    },
    #[error("{bytes} bytes follow the final chunk {after}: data was appended")]
    TrailingData { after: u32, bytes: usize },
    #[error("chunk at position {position} claims {len} bytes, more than any chunk can hold")]
    FrameTooLarge { position: u32, len: u32 },
    #[error(
        "chunk {chunk}'s frame header was altered (recording id, index or flags): its audio authenticates, but the file is not as it was written"
    )]
    FrameAltered { chunk: u32 },
}

fn truncated_message(after: Option<u32>, partial: usize) -> String {
    let tail = if partial > 0 {
        format!(" ({partial} bytes of an incomplete chunk ignored)")
    } else {
        String::new()
    };
    match after {
        Some(n) => format!(
            "truncated after chunk {n}: the final chunk is missing (crash, or the end was cut); chunks 0-{n} are intact{tail}"
        ),
        None => format!("truncated before the first chunk: no audio was sealed{tail}"),
    }
}

impl ReadError {
    /// True for a recording cut short (everything read before is authentic).
    pub fn is_truncation(&self) -> bool {
        matches!(self, ReadError::Truncated { .. })
    }
}

/// What a complete read found.
#[derive(Debug, Clone)]
pub struct ReadSummary {
    pub info: StreamInfo,
    pub key_id: String,
    pub chunks: u32,
    pub plaintext_bytes: u64,
    /// The final chunk was present (the recording was sealed).
    pub sealed: bool,
}

pub(crate) struct Reader<'r> {
    ring: &'r KeyRing,
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    at: usize,
    header: Option<OpenedHeader>,
    position: u32,
    finished: bool,
    plaintext_bytes: u64,
    /// Bytes that followed the final chunk.
    trailing: usize,
    scratch: Vec<u8>,
    /// Plaintext offset of the next chunk.
    plain_at: u64,
    /// Plaintext before this offset is neither decrypted nor handed out ([`Reader::skip_to`]).
    skip_to: u64,
}

impl<'r> Reader<'r> {
    pub(crate) fn new(ring: &'r KeyRing) -> Reader<'r> {
        Reader {
            ring,
            buf: Vec::new(),
            at: 0,
            header: None,
            position: 0,
            finished: false,
            plaintext_bytes: 0,
            trailing: 0,
            scratch: Vec::new(),
            plain_at: 0,
            skip_to: 0,
        }
    }

    /// Starts the plaintext handed out at `offset` (a range request): chunks that end before
    /// it are passed over without being decrypted (their frame headers are still checked),
    /// and the chunk holding it is decrypted and cut there. A read that skips vouches only
    /// for what it hands out; `finish` still requires the final chunk.
    pub(crate) fn skip_to(&mut self, offset: u64) {
        self.skip_to = offset;
    }

    /// Feeds ciphertext; appends whatever plaintext it completes to `out`.
    pub(crate) fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), ReadError> {
        if self.finished {
            self.trailing += data.len();
            return Ok(());
        }
        self.buf.extend_from_slice(data);
        if self.header.is_none() {
            if self.buf.len() < HEADER_LEN {
                // Magic and version can already be judged.
                if self.buf.len() >= 10 {
                    StreamInfo::decode(&self.buf).map_or_else(
                        |e| match e {
                            super::format::FormatError::ShortHeader(_) => Ok(()),
                            e => Err(HeaderError::from(e)),
                        },
                        |_| Ok(()),
                    )?;
                }
                return Ok(());
            }
            self.header = Some(crypt::open_header(self.ring, &self.buf[..HEADER_LEN])?);
            self.at = HEADER_LEN;
        }
        while !self.finished {
            let avail = self.buf.len() - self.at;
            if avail < FRAME_HEADER_LEN {
                break;
            }
            let fh_bytes: [u8; FRAME_HEADER_LEN] = self.buf[self.at..self.at + FRAME_HEADER_LEN]
                .try_into()
                .unwrap_or([0; FRAME_HEADER_LEN]);
            let fh = FrameHeader::decode(&fh_bytes);
            if fh.len > MAX_FRAME || (fh.len as usize) < TAG_LEN {
                return Err(ReadError::FrameTooLarge {
                    position: self.position,
                    len: fh.len,
                });
            }
            let total = FRAME_HEADER_LEN + fh.len as usize;
            if avail < total {
                break;
            }
            let body = self.at + FRAME_HEADER_LEN..self.at + total;
            let plain_len = (fh.len as usize - TAG_LEN) as u64;
            if self.plain_at + plain_len <= self.skip_to {
                self.pass_over(fh)?;
            } else {
                self.open(fh, body, out)?;
            }
            self.plain_at += plain_len;
            self.at += total;
        }
        if self.finished {
            self.trailing += self.buf.len() - self.at;
            self.at = self.buf.len();
        }
        // Compact once the consumed prefix dominates: amortized O(1) per byte.
        if self.at > 0 && self.at * 2 >= self.buf.len() {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        Ok(())
    }

    fn open(
        &mut self,
        fh: FrameHeader,
        range: std::ops::Range<usize>,
        out: &mut Vec<u8>,
    ) -> Result<(), ReadError> {
        let Some(h) = &self.header else {
            return Ok(());
        };
        let position = self.position;
        let last = fh.is_final();
        let body = &self.buf[range];
        self.scratch.clear();
        self.scratch.extend_from_slice(body);
        if h.keys
            .open_chunk(position, last, &mut self.scratch)
            .is_err()
        {
            // Say which kind of damage it is. The clear fields are only hints; each claim is
            // checked cryptographically where it can be.
            if fh.id != h.info.id {
                return Err(ReadError::Spliced {
                    position,
                    from: fh.id,
                });
            }
            if fh.index != position && h.keys.opens_as(fh.index, last, body) {
                return Err(ReadError::Reordered {
                    position,
                    found: fh.index,
                });
            }
            return Err(ReadError::Corrupt { chunk: position });
        }
        // The clear fields are not what authenticates the chunk, yet a file whose bytes
        // changed anywhere is refused: they must say what the chunk really is.
        if fh.id != h.info.id || fh.index != position || fh.flags & !FLAG_FINAL != 0 {
            return Err(ReadError::FrameAltered { chunk: position });
        }
        let from = (self.skip_to.saturating_sub(self.plain_at) as usize).min(self.scratch.len());
        out.extend_from_slice(&self.scratch[from..]);
        self.plaintext_bytes += self.scratch.len() as u64;
        self.position += 1;
        if last {
            self.finished = true;
        }
        Ok(())
    }

    /// A chunk wholly before [`Reader::skip_to`]'s offset: counted, not decrypted. Its clear
    /// fields must still say it is the next chunk of this recording.
    fn pass_over(&mut self, fh: FrameHeader) -> Result<(), ReadError> {
        let Some(h) = &self.header else {
            return Ok(());
        };
        if fh.id != h.info.id {
            return Err(ReadError::Spliced {
                position: self.position,
                from: fh.id,
            });
        }
        if fh.index != self.position || fh.flags & !FLAG_FINAL != 0 {
            return Err(ReadError::FrameAltered {
                chunk: self.position,
            });
        }
        self.position += 1;
        if fh.is_final() {
            self.finished = true;
        }
        Ok(())
    }

    /// Ends the input: the recording must have been sealed with its final chunk.
    pub(crate) fn finish(self) -> Result<ReadSummary, ReadError> {
        let Some(h) = &self.header else {
            return Err(if self.buf.len() < 8 {
                HeaderError::Format(super::format::FormatError::ShortHeader(self.buf.len())).into()
            } else {
                match StreamInfo::decode(&self.buf) {
                    Err(e) => HeaderError::Format(e).into(),
                    Ok(_) => {
                        HeaderError::Format(super::format::FormatError::ShortHeader(self.buf.len()))
                            .into()
                    }
                }
            });
        };
        if !self.finished {
            return Err(ReadError::Truncated {
                after: self.position.checked_sub(1),
                partial_bytes: self.buf.len() - self.at,
            });
        }
        if self.trailing > 0 {
            return Err(ReadError::TrailingData {
                after: self.position - 1,
                bytes: self.trailing,
            });
        }
        Ok(ReadSummary {
            info: h.info.clone(),
            key_id: h.wrapped.key_id.clone(),
            chunks: self.position,
            plaintext_bytes: self.plaintext_bytes,
            sealed: true,
        })
    }

    /// The final chunk was read.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// The number of complete chunks read so far.
    pub(crate) fn chunks(&self) -> u32 {
        self.position
    }

    /// Offset just past the last complete frame (for sealing a crashed recording).
    pub(crate) fn consumed_bytes(&self, total_fed: u64) -> u64 {
        total_fed - (self.buf.len() - self.at) as u64 - self.trailing as u64
    }

    pub(crate) fn opened(&self) -> Option<&OpenedHeader> {
        self.header.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Supplied;
    use crate::recording::crypt::{HeaderRandom, Nonces, new_header};
    use crate::recording::format::{AudioFormat, RecordingId};
    use crate::recording::sealer::ChunkSealer;

    fn sealed(ring: &KeyRing, chunks: usize) -> (Vec<u8>, Vec<u8>) {
        let info = StreamInfo {
            id: RecordingId::random(),
            started_unix_ms: 1,
            format: AudioFormat::Wav,
            channels: 2,
            sample_rate: 8000,
            chunk_bytes: 1024,
        };
        let (header, keys, _) = new_header(ring, &info, HeaderRandom::draw()).unwrap();
        let mut s = ChunkSealer::new(keys, 1024);
        let plain: Vec<u8> = (0..chunks * 1024 + 100).map(|i| (i % 251) as u8).collect();
        let mut out = header.to_vec();
        s.write(&plain, &mut out);
        s.finish(&mut out);
        (out, plain)
    }

    fn read(ring: &KeyRing, data: &[u8]) -> Result<Vec<u8>, ReadError> {
        let mut r = Reader::new(ring);
        let mut out = Vec::new();
        for piece in data.chunks(777) {
            r.push(piece, &mut out)?;
        }
        r.finish().map(|_| out)
    }

    fn frame_at(data: &[u8], n: usize) -> std::ops::Range<usize> {
        let mut at = HEADER_LEN;
        for i in 0.. {
            let len = u32::from_be_bytes(data[at + 21..at + 25].try_into().unwrap()) as usize;
            if i == n {
                return at..at + FRAME_HEADER_LEN + len;
            }
            at += FRAME_HEADER_LEN + len;
        }
        unreachable!()
    }

    #[test]
    fn each_kind_of_damage_has_its_own_error() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), Supplied::default()).unwrap();
        let (data, plain) = sealed(&ring, 4);
        assert_eq!(read(&ring, &data).unwrap(), plain);

        let mut flipped = data.clone();
        flipped[frame_at(&data, 1).start + 40] ^= 4;
        assert!(matches!(
            read(&ring, &flipped),
            Err(ReadError::Corrupt { chunk: 1 })
        ));

        // A frame's clear fields changed while its chunk is intact.
        let mut hinted = data.clone();
        hinted[frame_at(&data, 2).start + 3] ^= 0x10;
        assert!(matches!(
            read(&ring, &hinted),
            Err(ReadError::FrameAltered { chunk: 2 })
        ));

        let last = frame_at(&data, 4);
        assert!(matches!(
            read(&ring, &data[..last.start]),
            Err(ReadError::Truncated {
                after: Some(3),
                partial_bytes: 0
            })
        ));
        assert!(matches!(
            read(&ring, &data[..last.start + 10]),
            Err(ReadError::Truncated {
                after: Some(3),
                partial_bytes: 10
            })
        ));

        let (a, b) = (frame_at(&data, 1), frame_at(&data, 2));
        let mut swapped = data[..a.start].to_vec();
        swapped.extend_from_slice(&data[b.clone()]);
        swapped.extend_from_slice(&data[a.clone()]);
        swapped.extend_from_slice(&data[b.end..]);
        assert!(matches!(
            read(&ring, &swapped),
            Err(ReadError::Reordered {
                position: 1,
                found: 2
            })
        ));

        let (other, _) = sealed(&ring, 4);
        let mut spliced = data[..a.start].to_vec();
        spliced.extend_from_slice(&other[frame_at(&other, 1)]);
        spliced.extend_from_slice(&data[a.end..]);
        assert!(matches!(
            read(&ring, &spliced),
            Err(ReadError::Spliced { position: 1, .. })
        ));

        let mut appended = data.clone();
        appended.extend_from_slice(&other[frame_at(&other, 1)]);
        assert!(matches!(
            read(&ring, &appended),
            Err(ReadError::TrailingData { after: 4, .. })
        ));

        let mut header = data.clone();
        header[HEADER_LEN - 1] ^= 1;
        assert!(matches!(
            read(&ring, &header),
            Err(ReadError::Header(HeaderError::Altered))
        ));

        let elsewhere = tempfile::tempdir().unwrap();
        let stranger = KeyRing::open(elsewhere.path(), Supplied::default()).unwrap();
        let err = read(&stranger, &data).unwrap_err();
        assert!(err.to_string().contains("is not in the key ring"), "{err}");

        assert!(matches!(
            read(&ring, b"RIFF\0\0\0\0WAVEfmt "),
            Err(ReadError::Header(HeaderError::Format(
                crate::recording::format::FormatError::NotARecording
            )))
        ));
    }

    #[test]
    fn a_read_can_start_anywhere_in_the_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), Supplied::default()).unwrap();
        let (data, plain) = sealed(&ring, 4);
        let n = plain.len() as u64;
        for offset in [0, 1, 1023, 1024, 1025, 3000, n - 1, n, n + 5] {
            for piece in [1, 100, 5000] {
                let mut r = Reader::new(&ring);
                r.skip_to(offset);
                let mut out = Vec::new();
                for p in data.chunks(piece) {
                    r.push(p, &mut out).unwrap();
                }
                let start = (offset as usize).min(plain.len());
                assert_eq!(out, plain[start..], "from {offset}, pieces of {piece}");
                r.finish().expect("still the whole recording, sealed");
            }
        }
        // Chunks passed over are not decrypted, but still must be this recording's, in order.
        let mut swapped = data.clone();
        let (a, b) = (frame_at(&data, 0), frame_at(&data, 1));
        swapped[a.start + 16..a.start + 20].copy_from_slice(&1u32.to_be_bytes());
        swapped[b.start + 16..b.start + 20].copy_from_slice(&0u32.to_be_bytes());
        let mut r = Reader::new(&ring);
        r.skip_to(3000);
        assert!(matches!(
            r.push(&swapped, &mut Vec::new()),
            Err(ReadError::FrameAltered { chunk: 0 })
        ));
        // A chunk it hands out from is authenticated as ever.
        let mut flipped = data.clone();
        flipped[frame_at(&data, 2).start + 40] ^= 4;
        let mut r = Reader::new(&ring);
        r.skip_to(2100);
        assert!(matches!(
            r.push(&flipped, &mut Vec::new()),
            Err(ReadError::Corrupt { chunk: 2 })
        ));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::sync::OnceLock;

        /// One ring and two recordings under it (6 chunks each), made once for every case:
        /// (ring's folder, recording, its plaintext, another recording).
        type Fixture = (tempfile::TempDir, KeyRing, Vec<u8>, Vec<u8>, Vec<u8>);

        fn fixture() -> &'static Fixture {
            static F: OnceLock<Fixture> = OnceLock::new();
            F.get_or_init(|| {
                let dir = tempfile::tempdir().unwrap();
                let ring = KeyRing::open(dir.path(), Supplied::default()).unwrap();
                let (data, plain) = sealed(&ring, 6);
                let (other, _) = sealed(&ring, 6);
                (dir, ring, data, plain, other)
            })
        }

        /// Damage of every kind a disk, a copy or a person can do to a file (positions are
        /// fractions of the file, so they shrink towards its start).
        #[derive(Debug, Clone)]
        enum Damage {
            /// Bits flipped at these places.
            Flip(Vec<(f64, u8)>),
            /// Cut off here.
            Truncate(f64),
            /// This many bytes taken out here.
            Remove(f64, usize),
            /// These bytes put in here.
            Insert(f64, Vec<u8>),
            /// Bytes from the same place of another recording under the same key.
            Swap(f64, usize),
        }

        fn damage() -> impl Strategy<Value = Damage> {
            prop_oneof![
                prop::collection::vec((0.0..1.0f64, 0u8..8), 1..4).prop_map(Damage::Flip),
                (0.0..1.0f64).prop_map(Damage::Truncate),
                (0.0..1.0f64, 1usize..64).prop_map(|(a, n)| Damage::Remove(a, n)),
                (0.0..1.0f64, prop::collection::vec(any::<u8>(), 1..64))
                    .prop_map(|(a, b)| Damage::Insert(a, b)),
                (0.0..1.0f64, 1usize..64).prop_map(|(a, n)| Damage::Swap(a, n)),
            ]
        }

        fn apply(damage: &Damage, data: &[u8], other: &[u8]) -> Vec<u8> {
            let mut d = data.to_vec();
            let len = d.len();
            let at = move |f: f64| ((f * len as f64) as usize).min(len - 1);
            match damage {
                Damage::Flip(bits) => {
                    for &(f, bit) in bits {
                        let i = at(f);
                        d[i] ^= 1 << bit;
                    }
                }
                Damage::Truncate(f) => d.truncate(at(*f)),
                Damage::Remove(f, n) => {
                    let a = at(*f);
                    d.drain(a..(a + n).min(d.len()));
                }
                Damage::Insert(f, bytes) => {
                    let a = at(*f);
                    d.splice(a..a, bytes.iter().copied());
                }
                Damage::Swap(f, n) => {
                    let a = at(*f);
                    let end = (a + n).min(other.len()).min(d.len());
                    d[a..end].copy_from_slice(&other[a..end]);
                }
            }
            d
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            /// Any damage, read in pieces of any size: the reader never panics, refuses every
            /// damaged file, and what it hands out before refusing is the recording's own
            /// plaintext in order. Damage is detected, never decoded into audio.
            #[test]
            fn damage_is_refused_and_never_yields_other_plaintext(
                damage in damage(),
                piece in 1usize..3000,
            ) {
                let (_, ring, data, plain, other) = fixture();
                let d = apply(&damage, data, other);
                prop_assume!(&d != data);
                let mut r = Reader::new(ring);
                let mut out = Vec::new();
                let pushed = d.chunks(piece).try_for_each(|p| r.push(p, &mut out));
                let whole = pushed.is_ok() && r.finish().is_ok();
                prop_assert!(!whole, "damage not detected");
                prop_assert!(
                    plain.starts_with(&out),
                    "{} bytes handed out that are not the recording's",
                    out.len()
                );
            }

            /// An undamaged recording of any length, read in pieces of any size, gives back
            /// exactly its plaintext.
            #[test]
            fn a_whole_recording_reads_back_in_any_pieces(
                chunks in 0usize..5,
                piece in 1usize..3000,
            ) {
                let ring = &fixture().1;
                let (data, plain) = sealed(ring, chunks);
                let mut r = Reader::new(ring);
                let mut out = Vec::new();
                for p in data.chunks(piece) {
                    r.push(p, &mut out).unwrap();
                }
                prop_assert!(r.finish().is_ok());
                prop_assert_eq!(out, plain);
            }
        }
    }

    #[test]
    fn rewrapping_changes_only_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = KeyRing::open(dir.path(), Supplied::default()).unwrap();
        let (data, plain) = sealed(&ring, 2);
        ring.rotate().unwrap();
        let opened = crypt::open_header(&ring, &data[..HEADER_LEN]).unwrap();
        let mut moved = opened.rewrapped(&ring, Nonces::draw()).unwrap().to_vec();
        moved.extend_from_slice(&data[HEADER_LEN..]);
        let again = crypt::open_header(&ring, &moved[..HEADER_LEN]).unwrap();
        assert_eq!(again.wrapped.key_id, ring.current_id());
        assert_eq!(read(&ring, &moved).unwrap(), plain);
    }
}
