//! The writing side of the container: plaintext in, sealed frames out (sans-IO).
//!
//! Plaintext accumulates up to `chunk_bytes`; a full chunk is sealed at once, and the shell
//! may seal a partial one early (`flush`) so a crash loses at most a few seconds. Sealed
//! frames are appended to a buffer the caller passes in, whole frames only: whatever the
//! caller writes out is complete and decryptable.
//!
//! Why the output buffer is the caller's: a writer thread serves hundreds of recordings, and
//! each completes a chunk only every few seconds. One buffer per writer, reused, costs no
//! allocation per chunk; one per recording would be a chunk-sized buffer idle in each of
//! them (or, freed after each chunk as it once was, an allocation, a reallocation when the
//! tag did not fit and a free per chunk: 8 % of the writers' profile).

use super::crypt::RecordingKeys;

pub(crate) struct ChunkSealer {
    keys: RecordingKeys,
    chunk_bytes: usize,
    plain: Vec<u8>,
    index: u32,
    sealed: bool,
}

impl ChunkSealer {
    /// Starts a stream; the caller writes its header first.
    pub(crate) fn new(keys: RecordingKeys, chunk_bytes: usize) -> Self {
        ChunkSealer {
            keys,
            chunk_bytes: chunk_bytes.max(1024),
            plain: Vec::new(),
            index: 0,
            sealed: false,
        }
    }

    /// Appends plaintext, sealing every chunk it completes into `out`.
    pub(crate) fn write(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        if self.plain.capacity() < self.chunk_bytes && !data.is_empty() {
            // Exactly one chunk, once: growing by doubling ended at twice the chunk size
            // (8 kB blocks: 8, 16, 32, 64, then 128 kB for the last 1.5 kB of the first chunk).
            self.plain
                .reserve_exact(self.chunk_bytes - self.plain.len());
        }
        while !data.is_empty() {
            let room = self.chunk_bytes - self.plain.len();
            let take = room.min(data.len());
            self.plain.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.plain.len() == self.chunk_bytes {
                self.seal(false, out);
            }
        }
    }

    /// Seals what is buffered as a (short) chunk into `out`, if anything is.
    pub(crate) fn flush(&mut self, out: &mut Vec<u8>) {
        if !self.plain.is_empty() && !self.sealed {
            self.seal(false, out);
        }
    }

    /// Seals the rest as the final chunk (possibly empty) into `out`: the recording is
    /// complete.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.sealed {
            self.seal(true, out);
            self.sealed = true;
            self.plain = Vec::new();
        }
    }

    fn seal(&mut self, last: bool, out: &mut Vec<u8>) {
        self.keys.seal_chunk(self.index, last, &self.plain, out);
        self.plain.clear();
        self.index += 1;
    }

    /// Chunks sealed so far.
    pub(crate) fn chunks(&self) -> u32 {
        self.index
    }
}

/// Continues a crashed recording: seals an empty final chunk after `chunks` complete ones.
pub(crate) fn final_frame(keys: &RecordingKeys, chunks: u32) -> Vec<u8> {
    let mut out = Vec::new();
    keys.seal_chunk(chunks, true, &[], &mut out);
    out
}
