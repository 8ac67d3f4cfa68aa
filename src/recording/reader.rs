//! Reads a recording back: a push parser fed ciphertext in any slices (a file, an S3 byte
//! stream, an HTTP response) that yields plaintext and names exactly what went wrong.
//!
//! Every way a chunk stream can be damaged has its own error, because an operator must know
//! whether they face a crash (truncated: everything before is fine), a storage fault (a
//! corrupt chunk) or tampering (reordered, spliced, trailing data, altered header).

use super::crypt::{self, HeaderError, OpenedHeader};
use super::format::{
    FRAME_HEADER_LEN, FrameHeader, HEADER_LEN, MAX_FRAME, RecordingId, StreamInfo, TAG_LEN,
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

pub struct Reader<'r> {
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
}

impl<'r> Reader<'r> {
    pub fn new(ring: &'r KeyRing) -> Reader<'r> {
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
        }
    }

    pub fn info(&self) -> Option<&StreamInfo> {
        self.header.as_ref().map(|h| &h.info)
    }

    /// Feeds ciphertext; appends whatever plaintext it completes to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), ReadError> {
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
            self.open(fh, body, out)?;
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
        out.extend_from_slice(&self.scratch);
        self.plaintext_bytes += self.scratch.len() as u64;
        self.position += 1;
        if last {
            self.finished = true;
        }
        Ok(())
    }

    /// Ends the input: the recording must have been sealed with its final chunk.
    pub fn finish(self) -> Result<ReadSummary, ReadError> {
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
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The number of complete chunks read so far.
    pub fn chunks(&self) -> u32 {
        self.position
    }

    /// Offset just past the last complete frame (for sealing a crashed recording).
    pub fn consumed_bytes(&self, total_fed: u64) -> u64 {
        total_fed - (self.buf.len() - self.at) as u64 - self.trailing as u64
    }

    pub fn opened(&self) -> Option<&OpenedHeader> {
        self.header.as_ref()
    }
}
