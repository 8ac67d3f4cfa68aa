//! Streaming envelope encryption of one recording (the STREAM construction of Hoang,
//! Reyhanitabar, Rogaway and Vizár, on AES-256-GCM).
//!
//! A fresh 256-bit data key per recording, wrapped by the key ring's current master key with
//! the recording's stream header as context (a wrapped key copied onto another recording does
//! not open). Two keys derive from it with HKDF-SHA256 (salt = recording id): one
//! authenticates the header, one seals chunks. Chunk `i` uses
//! `nonce = id[0..7] | i (u32) | final flag` and `aad = SHA-256(stream header) | i | flag`, so
//! a chunk opens only at its own position, in its own recording, with its own final flag:
//! reordering, splicing and truncation all fail authentication, and the reader tells them
//! apart (see `reader`).

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};

use super::format::{
    self, FLAG_FINAL, FrameHeader, HEADER_LEN, KEY_PART_LEN, RecordingId, STREAM_PART_LEN,
    StreamInfo, TAG_LEN,
};
use crate::keys::{KeyError, KeyRing, Secret, WrappedKey};

/// Associated data for wrapping a recording's data key: binds it to the stream header.
pub(crate) fn wrap_context(stream_part: &[u8]) -> Vec<u8> {
    let mut c = b"careline recording v1 ".to_vec();
    c.extend_from_slice(stream_part);
    c
}

/// The per-recording keys derived from its data key.
pub(crate) struct RecordingKeys {
    id: RecordingId,
    chunk: Aes256Gcm,
    /// The same chunk key, for sealing.
    chunk_seal: ring::aead::LessSafeKey,
    header: Aes256Gcm,
    stream_hash: [u8; 32],
}

/// Authentication failed (which one is the caller's to say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inauthentic;

impl RecordingKeys {
    pub(crate) fn derive(data_key: &[u8; 32], info: &StreamInfo) -> RecordingKeys {
        let hk = Hkdf::<Sha256>::new(Some(&info.id.0), data_key);
        let mut chunk = zeroize::Zeroizing::new([0u8; 32]);
        let mut header = zeroize::Zeroizing::new([0u8; 32]);
        // 32-byte outputs are far below HKDF-SHA256's limit: expand cannot fail.
        let _ = hk.expand(b"careline recording chunks v1", chunk.as_mut_slice());
        let _ = hk.expand(b"careline recording header v1", header.as_mut_slice());
        let stream_hash: [u8; 32] = Sha256::digest(info.encode()).into();
        // A 32-byte key is what AES-256-GCM takes: this cannot fail.
        let chunk_seal = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, chunk.as_slice())
            .map(ring::aead::LessSafeKey::new)
            .expect("a 32-byte AES-256 key");
        RecordingKeys {
            id: info.id,
            chunk: Aes256Gcm::new(&(*chunk).into()),
            chunk_seal,
            header: Aes256Gcm::new(&(*header).into()),
            stream_hash,
        }
    }

    fn nonce(&self, index: u32, flags: u8) -> Nonce<aes_gcm::aead::consts::U12> {
        Nonce::from(self.nonce_bytes(index, flags))
    }

    fn nonce_bytes(&self, index: u32, flags: u8) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..7].copy_from_slice(&self.id.0[..7]);
        n[7..11].copy_from_slice(&index.to_be_bytes());
        n[11] = flags & FLAG_FINAL;
        n
    }

    fn aad(&self, index: u32, flags: u8) -> [u8; 37] {
        let mut a = [0u8; 37];
        a[..32].copy_from_slice(&self.stream_hash);
        a[32..36].copy_from_slice(&index.to_be_bytes());
        a[36] = flags & FLAG_FINAL;
        a
    }

    /// Appends one frame (clear frame header, ciphertext, tag) for `plaintext` to `out`.
    pub(crate) fn seal_chunk(&self, index: u32, last: bool, plaintext: &[u8], out: &mut Vec<u8>) {
        let flags = if last { FLAG_FINAL } else { 0 };
        let fh = FrameHeader {
            id: self.id,
            index,
            flags,
            len: (plaintext.len() + TAG_LEN) as u32,
        };
        // Room for the whole frame at once: extending by parts grew `out` twice per chunk, the
        // second time (for the tag) to double the chunk's size.
        out.reserve(format::FRAME_HEADER_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&fh.encode());
        let start = out.len();
        out.extend_from_slice(plaintext);
        let nonce = ring::aead::Nonce::assume_unique_for_key(self.nonce_bytes(index, flags));
        let tag = self.chunk_seal.seal_in_place_separate_tag(
            nonce,
            ring::aead::Aad::from(self.aad(index, flags)),
            &mut out[start..],
        );
        // GCM refuses only messages over 64 GiB; chunks are at most a few MiB.
        out.extend_from_slice(tag.as_ref().map(|t| t.as_ref()).unwrap_or(&[0u8; TAG_LEN]));
    }

    /// Opens a chunk's ciphertext (with its tag) in place as chunk `index`; on success
    /// `buf` holds the plaintext.
    pub(crate) fn open_chunk(
        &self,
        index: u32,
        last: bool,
        buf: &mut Vec<u8>,
    ) -> Result<(), Inauthentic> {
        let flags = if last { FLAG_FINAL } else { 0 };
        let Some(body_len) = buf.len().checked_sub(TAG_LEN) else {
            return Err(Inauthentic);
        };
        let (body, tag) = buf.split_at_mut(body_len);
        let tag = aes_gcm::aead::Tag::<Aes256Gcm>::try_from(&*tag).map_err(|_| Inauthentic)?;
        self.chunk
            .decrypt_inout_detached(
                &self.nonce(index, flags),
                &self.aad(index, flags),
                body.into(),
                &tag,
            )
            .map_err(|_| Inauthentic)?;
        buf.truncate(body_len);
        Ok(())
    }

    /// Like `open_chunk` but on a copy, for diagnosing a failed chunk.
    pub(crate) fn opens_as(&self, index: u32, last: bool, ciphertext: &[u8]) -> bool {
        let mut copy = ciphertext.to_vec();
        self.open_chunk(index, last, &mut copy).is_ok()
    }

    fn header_tag(&self, signed: &[u8], nonce: &[u8; 12]) -> [u8; 16] {
        let tag = self
            .header
            .encrypt_inout_detached(&Nonce::from(*nonce), signed, (&mut [][..]).into())
            .unwrap_or_default();
        let mut t = [0u8; 16];
        t.copy_from_slice(tag.as_slice());
        t
    }
}

/// The nonces a header is written with: one for wrapping the data key under the master key,
/// one for the header's tag. Fresh ones each time the header is (re)written: the master key
/// and the header key each seal more than once over a recording's life (rotation), and GCM
/// must never repeat a nonce under one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Nonces {
    pub wrap: [u8; 12],
    pub tag: [u8; 12],
}

impl Nonces {
    /// Fresh nonces from the operating system's generator.
    pub(crate) fn draw() -> Nonces {
        Nonces {
            wrap: rand::random(),
            tag: rand::random(),
        }
    }
}

/// The random values a new header takes, drawn by the caller (the recording writer) and
/// passed in, so that the header code reads no randomness of its own: given the same inputs
/// it writes the same bytes, which is what its tests check.
pub(crate) struct HeaderRandom {
    /// The recording's data key ([`KeyRing::new_data_key`]).
    pub data_key: Secret,
    pub nonces: Nonces,
}

impl HeaderRandom {
    /// Fresh values from the operating system's generator.
    pub(crate) fn draw() -> HeaderRandom {
        HeaderRandom {
            data_key: KeyRing::new_data_key(),
            nonces: Nonces::draw(),
        }
    }
}

/// Builds a new recording's header: the data key wrapped under the current master key.
pub(crate) fn new_header(
    ring: &KeyRing,
    info: &StreamInfo,
    random: HeaderRandom,
) -> Result<([u8; HEADER_LEN], RecordingKeys, WrappedKey), format::FormatError> {
    let stream_part = info.encode();
    let wrapped = ring.wrap_under_nonce(
        &random.data_key,
        &wrap_context(&stream_part),
        random.nonces.wrap,
    );
    let keys = RecordingKeys::derive(&random.data_key, info);
    let header = assemble(&keys, &stream_part, &wrapped, random.nonces.tag)?;
    Ok((header, keys, wrapped))
}

fn assemble(
    keys: &RecordingKeys,
    stream_part: &[u8; STREAM_PART_LEN],
    wrapped: &WrappedKey,
    nonce: [u8; 12],
) -> Result<[u8; HEADER_LEN], format::FormatError> {
    let key_part = format::encode_key_part(wrapped)?;
    let mut h = [0u8; HEADER_LEN];
    h[..STREAM_PART_LEN].copy_from_slice(stream_part);
    h[STREAM_PART_LEN..STREAM_PART_LEN + KEY_PART_LEN].copy_from_slice(&key_part);
    let signed_len = STREAM_PART_LEN + KEY_PART_LEN;
    let tag = keys.header_tag(&h[..signed_len], &nonce);
    h[signed_len..signed_len + 12].copy_from_slice(&nonce);
    h[signed_len + 12..].copy_from_slice(&tag);
    Ok(h)
}

/// Why a header did not open.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error(transparent)]
    Format(#[from] format::FormatError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("recording header was altered (its authentication tag does not match)")]
    Altered,
}

/// A header that opened: what the recording is, its current wrap, and its keys.
pub(crate) struct OpenedHeader {
    pub info: StreamInfo,
    pub wrapped: WrappedKey,
    pub keys: RecordingKeys,
    data_key: Secret,
}

/// Parses and authenticates a header with the key ring.
pub(crate) fn open_header(ring: &KeyRing, h: &[u8]) -> Result<OpenedHeader, HeaderError> {
    let info = StreamInfo::decode(h)?;
    if h.len() < HEADER_LEN {
        return Err(format::FormatError::ShortHeader(h.len()).into());
    }
    let stream_part = &h[..STREAM_PART_LEN];
    let signed_len = STREAM_PART_LEN + KEY_PART_LEN;
    let wrapped = format::decode_key_part(&h[STREAM_PART_LEN..signed_len]);
    let data_key = ring.unwrap(&wrapped, &wrap_context(stream_part))?;
    let keys = RecordingKeys::derive(&data_key, &info);
    let nonce: [u8; 12] = h[signed_len..signed_len + 12]
        .try_into()
        .unwrap_or_default();
    let expected = keys.header_tag(&h[..signed_len], &nonce);
    if !constant_time_eq(&expected, &h[signed_len + 12..HEADER_LEN]) {
        return Err(HeaderError::Altered);
    }
    Ok(OpenedHeader {
        info,
        wrapped,
        keys,
        data_key,
    })
}

impl OpenedHeader {
    /// The same header with the data key re-wrapped under the ring's current master key
    /// (`keys rotate`): the audio chunks do not change. `nonces` are fresh ones
    /// ([`Nonces::draw`]).
    pub(crate) fn rewrapped(
        &self,
        ring: &KeyRing,
        nonces: Nonces,
    ) -> Result<[u8; HEADER_LEN], HeaderError> {
        let stream_part = self.info.encode();
        let wrapped =
            ring.wrap_under_nonce(&self.data_key, &wrap_context(&stream_part), nonces.wrap);
        Ok(assemble(&self.keys, &stream_part, &wrapped, nonces.tag)?)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::format::{AudioFormat, FRAME_HEADER_LEN};

    #[test]
    fn chunks_sealed_by_ring_are_the_aes_gcm_bytes_and_open_again() {
        let info = StreamInfo {
            id: RecordingId::random(),
            started_unix_ms: 1,
            format: AudioFormat::Mulaw,
            channels: 2,
            sample_rate: 8000,
            chunk_bytes: 4096,
        };
        let keys = RecordingKeys::derive(&[42u8; 32], &info);
        for (index, last, len) in [(0u32, false, 4096usize), (7, true, 1000), (8, true, 0)] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let mut sealed = Vec::new();
            keys.seal_chunk(index, last, &plain, &mut sealed);
            let body = sealed[FRAME_HEADER_LEN..].to_vec();

            // The same chunk through RustCrypto's AES-256-GCM: byte for byte the same.
            let flags = if last { FLAG_FINAL } else { 0 };
            let mut expect = plain.clone();
            let tag = keys
                .chunk
                .encrypt_inout_detached(
                    &keys.nonce(index, flags),
                    &keys.aad(index, flags),
                    expect.as_mut_slice().into(),
                )
                .unwrap();
            expect.extend_from_slice(tag.as_slice());
            assert_eq!(body, expect, "chunk {index}");

            let mut opened = body.clone();
            keys.open_chunk(index, last, &mut opened).unwrap();
            assert_eq!(opened, plain);
            let mut moved = body;
            assert!(keys.open_chunk(index + 1, last, &mut moved).is_err());
        }
    }

    fn fixed_random(tag: u8) -> HeaderRandom {
        HeaderRandom {
            data_key: Secret::new([7u8; 32]),
            nonces: Nonces {
                wrap: [1u8; 12],
                tag: [tag; 12],
            },
        }
    }

    /// The header code takes its randomness as inputs: the same inputs give the same bytes,
    /// the tag nonce given is the one written, and a header written from fresh draws opens
    /// to the same recording keys as any other.
    #[test]
    fn a_header_is_a_function_of_its_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), crate::keys::Supplied::default()).expect("a key ring");
        let info = StreamInfo {
            id: RecordingId([9; 16]),
            started_unix_ms: 1_800_000_000_000,
            format: AudioFormat::Opus,
            channels: 2,
            sample_rate: 8000,
            chunk_bytes: 4096,
        };
        let (a, keys_a, _) = new_header(&ring, &info, fixed_random(2)).unwrap();
        let (b, _, _) = new_header(&ring, &info, fixed_random(2)).unwrap();
        assert_eq!(a, b, "same inputs, same header");
        let signed = STREAM_PART_LEN + KEY_PART_LEN;
        assert_eq!(a[signed..signed + 12], [2u8; 12], "the tag nonce given");
        let (c, _, _) = new_header(&ring, &info, fixed_random(3)).unwrap();
        assert_eq!(a[..signed], c[..signed], "only the nonce and tag move");
        assert_ne!(a[signed..], c[signed..]);

        let opened = open_header(&ring, &a).unwrap();
        assert_eq!(opened.info, info);
        let mut sealed = Vec::new();
        keys_a.seal_chunk(0, true, b"chunk", &mut sealed);
        let mut body = sealed[FRAME_HEADER_LEN..].to_vec();
        opened.keys.open_chunk(0, true, &mut body).unwrap();
        assert_eq!(body, b"chunk");

        let nonces = Nonces {
            wrap: [4; 12],
            tag: [5; 12],
        };
        assert_eq!(
            opened.rewrapped(&ring, nonces).unwrap(),
            opened.rewrapped(&ring, nonces).unwrap()
        );
        let fresh = open_header(&ring, &opened.rewrapped(&ring, Nonces::draw()).unwrap()).unwrap();
        assert_eq!(fresh.info, info);
        assert_ne!(Nonces::draw(), Nonces::draw(), "drawn fresh each time");
    }
}
