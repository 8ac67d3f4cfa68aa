//! The writing side of the container: plaintext in, sealed frames out (sans-IO).
//!
//! Plaintext accumulates up to `chunk_bytes`; a full chunk is sealed at once, and the shell
//! may seal a partial one early (`flush`) so a crash loses at most a few seconds. The output
//! buffer holds whole frames only: whatever the shell writes is complete and decryptable.

use super::crypt::RecordingKeys;
use super::format::HEADER_LEN;

pub struct ChunkSealer {
    keys: RecordingKeys,
    chunk_bytes: usize,
    plain: Vec<u8>,
    out: Vec<u8>,
    index: u32,
    sealed: bool,
}

impl ChunkSealer {
    /// Starts a stream whose first output is `header`.
    pub fn new(header: &[u8; HEADER_LEN], keys: RecordingKeys, chunk_bytes: usize) -> Self {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.extend_from_slice(header);
        ChunkSealer {
            keys,
            chunk_bytes: chunk_bytes.max(1024),
            plain: Vec::new(),
            out,
            index: 0,
            sealed: false,
        }
    }

    /// Appends plaintext, sealing every chunk it completes.
    pub fn write(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = self.chunk_bytes - self.plain.len();
            let take = room.min(data.len());
            self.plain.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.plain.len() == self.chunk_bytes {
                self.seal(false);
            }
        }
    }

    /// Seals what is buffered as a (short) chunk, if anything is.
    pub fn flush(&mut self) {
        if !self.plain.is_empty() && !self.sealed {
            self.seal(false);
        }
    }

    /// Seals the rest as the final chunk (possibly empty): the recording is complete.
    pub fn finish(&mut self) {
        if !self.sealed {
            self.seal(true);
            self.sealed = true;
        }
    }

    fn seal(&mut self, last: bool) {
        self.keys
            .seal_chunk(self.index, last, &self.plain, &mut self.out);
        self.plain.clear();
        self.index += 1;
    }

    /// Sealed bytes ready to be written; the caller writes them and calls `clear_output`.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    pub fn clear_output(&mut self) {
        // Released, not kept: output appears once per chunk (seconds apart), and a thousand
        // idle chunk-sized buffers would double the memory each recording holds.
        self.out = Vec::new();
    }

    /// Plaintext bytes waiting for the next chunk.
    pub fn buffered(&self) -> usize {
        self.plain.len()
    }

    /// Chunks sealed so far.
    pub fn chunks(&self) -> u32 {
        self.index
    }
}

/// Continues a crashed recording: seals an empty final chunk after `chunks` complete ones.
pub fn final_frame(keys: &RecordingKeys, chunks: u32) -> Vec<u8> {
    let mut out = Vec::new();
    keys.seal_chunk(chunks, true, &[], &mut out);
    out
}
