//! The recording container, byte for byte (docs/recording-format.md is the prose version).
//!
//! ```text
//! header  = stream-part key-part tag-nonce[12] tag[16]
//! stream-part (immutable, hashed into every chunk's AAD):
//!   magic "CLREC\r\n\x1a" | version u16 | recording id [16] | started unix ms u64
//!   | format u8 | channels u8 | sample rate u32 | chunk bytes u32
//! key-part (rewritten in place when `keys rotate` re-wraps):
//!   key id [19] ("mk-" + 16 hex) | wrap nonce [12] | wrapped data key [48]
//! frame   = recording id [16] | index u32 | flags u8 | length u32 | ciphertext[length]
//! ```
//! All integers are big-endian. The frame's id, index and flag are written in clear only so a
//! reader can say *what* went wrong (spliced, reordered); they are never trusted: decryption
//! uses the frame's position and the recording's own id.

use crate::keys::WrappedKey;

pub const MAGIC: [u8; 8] = *b"CLREC\r\n\x1a";
pub const VERSION: u16 = 1;
/// Bytes of the stream part.
pub const STREAM_PART_LEN: usize = 8 + 2 + 16 + 8 + 1 + 1 + 4 + 4;
/// Master key ids are `mk-` + 16 hex digits (see `keys`).
pub const KEY_ID_LEN: usize = 19;
pub const KEY_PART_LEN: usize = KEY_ID_LEN + 12 + 48;
pub const HEADER_LEN: usize = STREAM_PART_LEN + KEY_PART_LEN + 12 + 16;
pub const FRAME_HEADER_LEN: usize = 16 + 4 + 1 + 4;
/// GCM tag appended to every chunk.
pub const TAG_LEN: usize = 16;
/// Set in a frame's flags on the last chunk of a sealed recording.
pub const FLAG_FINAL: u8 = 1;
/// A frame longer than this is garbage, not a chunk (4 MiB, far above any configured size).
pub const MAX_FRAME: u32 = 4 << 20;

pub use crate::media::recorder::RecordingId;

impl AudioFormat {
    /// The law a companded WAV stores, if this is one.
    pub fn law(self) -> Option<crate::media::codec::Law> {
        use crate::media::codec::Law;
        match self {
            AudioFormat::Mulaw => Some(Law::Mu),
            AudioFormat::Alaw => Some(Law::A),
            AudioFormat::Wav | AudioFormat::Opus => None,
        }
    }
}

impl std::str::FromStr for RecordingId {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<RecordingId, FormatError> {
        let hex_part = s.strip_prefix("rec-").unwrap_or(s);
        let bytes: [u8; 16] = hex::decode(hex_part)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| FormatError::BadId(s.chars().take(60).collect()))?;
        Ok(RecordingId(bytes))
    }
}

impl serde::Serialize for RecordingId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for RecordingId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What the plaintext stream inside the chunks is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioFormat {
    /// Ogg Opus (RFC 7845), stereo.
    Opus,
    /// WAV: a RIFF header with open-ended sizes, then 16-bit little-endian PCM, interleaved.
    Wav,
    /// WAV of a G.711 µ-law call, stored as the call's own bytes (format tag 7, 8 bits per
    /// sample, interleaved): what `wav` records for a PCMU call. Nothing is decoded or
    /// re-encoded on the media path, and it is half the size of 16-bit PCM, with the same
    /// audio (16-bit PCM of G.711 is its exact expansion).
    Mulaw,
    /// The same for a G.711 A-law (PCMA) call (format tag 6).
    Alaw,
}

impl AudioFormat {
    fn code(self) -> u8 {
        match self {
            AudioFormat::Opus => 1,
            AudioFormat::Wav => 2,
            AudioFormat::Mulaw => 3,
            AudioFormat::Alaw => 4,
        }
    }

    fn from_code(c: u8) -> Option<AudioFormat> {
        match c {
            1 => Some(AudioFormat::Opus),
            2 => Some(AudioFormat::Wav),
            3 => Some(AudioFormat::Mulaw),
            4 => Some(AudioFormat::Alaw),
            _ => None,
        }
    }

    /// The file extension of a plain export.
    pub fn extension(self) -> &'static str {
        match self {
            AudioFormat::Opus => "ogg",
            AudioFormat::Wav | AudioFormat::Mulaw | AudioFormat::Alaw => "wav",
        }
    }

    /// Whether the plaintext is a WAV file (whatever its sample encoding).
    pub fn is_wav(self) -> bool {
        !matches!(self, AudioFormat::Opus)
    }

    /// Bytes per interleaved stereo sample pair in a WAV stream (0 for Opus).
    pub fn wav_block_align(self) -> usize {
        match self {
            AudioFormat::Opus => 0,
            AudioFormat::Wav => 4,
            AudioFormat::Mulaw | AudioFormat::Alaw => 2,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not a Careline recording (bad magic bytes)")]
    NotARecording,
    #[error("recording format version {0} is newer than this Careline understands (1)")]
    UnsupportedVersion(u16),
    #[error("recording header is cut short ({0} of {HEADER_LEN} bytes)")]
    ShortHeader(usize),
    #[error("recording header names an unknown audio format code {0}")]
    UnknownFormat(u8),
    #[error("`{0}` is not a recording id (rec- followed by 32 hex digits)")]
    BadId(String),
    #[error("master key id `{0}` does not fit the header (19 characters, mk-…)")]
    BadKeyId(String),
}

/// The immutable description of a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub id: RecordingId,
    pub started_unix_ms: u64,
    pub format: AudioFormat,
    pub channels: u8,
    pub sample_rate: u32,
    pub chunk_bytes: u32,
}

impl StreamInfo {
    pub fn encode(&self) -> [u8; STREAM_PART_LEN] {
        let mut out = [0u8; STREAM_PART_LEN];
        let mut w = Cursor::new(&mut out);
        w.put(&MAGIC);
        w.put(&VERSION.to_be_bytes());
        w.put(&self.id.0);
        w.put(&self.started_unix_ms.to_be_bytes());
        w.put(&[self.format.code(), self.channels]);
        w.put(&self.sample_rate.to_be_bytes());
        w.put(&self.chunk_bytes.to_be_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Result<StreamInfo, FormatError> {
        if b.len() < 8 || b[..8] != MAGIC {
            return Err(FormatError::NotARecording);
        }
        if b.len() < 10 {
            return Err(FormatError::ShortHeader(b.len()));
        }
        let version = u16::from_be_bytes([b[8], b[9]]);
        if version != VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        if b.len() < STREAM_PART_LEN {
            return Err(FormatError::ShortHeader(b.len()));
        }
        let format = AudioFormat::from_code(b[34]).ok_or(FormatError::UnknownFormat(b[34]))?;
        Ok(StreamInfo {
            id: RecordingId(b[10..26].try_into().unwrap_or_default()),
            started_unix_ms: u64::from_be_bytes(b[26..34].try_into().unwrap_or_default()),
            format,
            channels: b[35],
            sample_rate: u32::from_be_bytes(b[36..40].try_into().unwrap_or_default()),
            chunk_bytes: u32::from_be_bytes(b[40..44].try_into().unwrap_or_default()),
        })
    }
}

/// The key part of the header: which master key wraps the data key, and the wrap itself.
pub fn encode_key_part(w: &WrappedKey) -> Result<[u8; KEY_PART_LEN], FormatError> {
    if w.key_id.len() != KEY_ID_LEN || w.ciphertext.len() != 48 {
        return Err(FormatError::BadKeyId(w.key_id.clone()));
    }
    let mut out = [0u8; KEY_PART_LEN];
    out[..KEY_ID_LEN].copy_from_slice(w.key_id.as_bytes());
    out[KEY_ID_LEN..KEY_ID_LEN + 12].copy_from_slice(&w.nonce);
    out[KEY_ID_LEN + 12..].copy_from_slice(&w.ciphertext);
    Ok(out)
}

pub fn decode_key_part(b: &[u8]) -> WrappedKey {
    WrappedKey {
        key_id: String::from_utf8_lossy(&b[..KEY_ID_LEN]).into_owned(),
        nonce: b[KEY_ID_LEN..KEY_ID_LEN + 12]
            .try_into()
            .unwrap_or_default(),
        ciphertext: b[KEY_ID_LEN + 12..KEY_PART_LEN].to_vec(),
    }
}

/// A frame's clear fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub id: RecordingId,
    pub index: u32,
    pub flags: u8,
    pub len: u32,
}

impl FrameHeader {
    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut out = [0u8; FRAME_HEADER_LEN];
        let mut w = Cursor::new(&mut out);
        w.put(&self.id.0);
        w.put(&self.index.to_be_bytes());
        w.put(&[self.flags]);
        w.put(&self.len.to_be_bytes());
        out
    }

    pub fn decode(b: &[u8; FRAME_HEADER_LEN]) -> FrameHeader {
        FrameHeader {
            id: RecordingId(b[..16].try_into().unwrap_or_default()),
            index: u32::from_be_bytes(b[16..20].try_into().unwrap_or_default()),
            flags: b[20],
            len: u32::from_be_bytes(b[21..25].try_into().unwrap_or_default()),
        }
    }

    pub fn is_final(&self) -> bool {
        self.flags & FLAG_FINAL != 0
    }
}

struct Cursor<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        Cursor { buf, at: 0 }
    }
    fn put(&mut self, b: &[u8]) {
        self.buf[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_info_round_trips_and_rejects_strangers() {
        let info = StreamInfo {
            id: RecordingId::random(),
            started_unix_ms: 1_700_000_000_000,
            format: AudioFormat::Opus,
            channels: 2,
            sample_rate: 8000,
            chunk_bytes: 65536,
        };
        let b = info.encode();
        assert_eq!(StreamInfo::decode(&b), Ok(info.clone()));
        assert_eq!(
            StreamInfo::decode(b"RIFF0000WAVE"),
            Err(FormatError::NotARecording)
        );
        let mut v2 = b;
        v2[9] = 2;
        assert_eq!(
            StreamInfo::decode(&v2),
            Err(FormatError::UnsupportedVersion(2))
        );
        let id: RecordingId = info.id.to_string().parse().unwrap();
        assert_eq!(id, info.id);
        let f = FrameHeader {
            id: info.id,
            index: 7,
            flags: FLAG_FINAL,
            len: 99,
        };
        assert_eq!(FrameHeader::decode(&f.encode()), f);
    }
}
