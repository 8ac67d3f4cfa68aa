//! Exports: a recording's plaintext, handed over piece by piece as it is decrypted, written
//! out as the file asked for (Ogg Opus or 16-bit PCM WAV), whatever it was stored as.
//!
//! Nothing is decoded whole: an Ogg Opus recording is copied as it is or decoded page by
//! page, a WAV's samples are converted as they come, and Opus is encoded 20 ms at a time.
//! What an export holds is one decrypted chunk and the codec's state, so an hour-long call
//! exports in the same memory as a minute (transcoding it whole held the samples, then the
//! file twice: about 700 MB for an hour at 16 kHz stereo).

use std::io::{Seek, SeekFrom, Write};

use super::encode::{self, AudioEncoder, EncodeError, OggOpusDecoder, WAV_HEADER_LEN};
use super::format::{AudioFormat, FRAME_HEADER_LEN, HEADER_LEN, TAG_LEN};
use crate::media::codec::Law;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    /// Writing the output failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The stored audio could not be decoded or re-encoded.
    #[error(transparent)]
    Codec(#[from] EncodeError),
    /// A streamed WAV came out another length than its header announced (the recording
    /// changed, or the index disagrees with it): the response must not end as a whole file.
    #[error("the WAV announced {announced} bytes of audio but {written} were decoded")]
    Length { announced: u64, written: u64 },
}

/// One export in progress. See the module documentation.
pub(crate) struct Export {
    rate: u32,
    input: Input,
    output: Output,
    /// Decoded samples (interleaved stereo) not yet written.
    pcm: Vec<i16>,
    /// Output bytes not yet written.
    bytes: Vec<u8>,
    /// The output's headers are written (WAV: a placeholder until `finish`).
    started: bool,
    /// A streamed WAV's data length, given in its header before the audio (`u32::MAX`:
    /// unknown, read to the end); `None` for a file, whose header `finish` patches.
    announced: Option<u32>,
    /// Bytes written after the WAV header, or in all for Ogg.
    written: u64,
}

enum Input {
    /// Ogg Opus exported as Ogg Opus: copied byte for byte.
    Copy,
    /// A stored WAV: header bytes still to pass over, then 16-bit PCM (`law` None) or
    /// G.711 bytes.
    Wav {
        law: Option<Law>,
        skip: usize,
        /// The first byte of a sample split between two pieces.
        odd: Option<u8>,
    },
    Opus(Box<OggOpusDecoder>),
}

enum Output {
    Copy,
    Wav,
    Opus(Box<AudioEncoder>),
}

impl Export {
    /// An export of a recording stored as `have` at `rate` Hz, written as `want` (Ogg Opus,
    /// or a 16-bit PCM WAV for any WAV format). `ogg_serial` numbers the Ogg stream of an Opus
    /// export that is encoded here (RFC 3533 §4 wants it random per stream): the caller draws
    /// it, so an export is a function of its inputs (the same recording and serial give the
    /// same bytes) and this module draws nothing of its own.
    pub(crate) fn new(
        have: AudioFormat,
        want: AudioFormat,
        rate: u32,
        ogg_serial: u32,
    ) -> Result<Export, ExportError> {
        let mut bytes = Vec::new();
        let (input, output) = match (have, want) {
            (AudioFormat::Opus, AudioFormat::Opus) => (Input::Copy, Output::Copy),
            (AudioFormat::Opus, _) => (
                Input::Opus(Box::new(OggOpusDecoder::new(rate)?)),
                Output::Wav,
            ),
            (_, want) => {
                let input = Input::Wav {
                    law: have.law(),
                    skip: WAV_HEADER_LEN,
                    odd: None,
                };
                let output = if want == AudioFormat::Opus {
                    Output::Opus(Box::new(AudioEncoder::new(
                        AudioFormat::Opus,
                        rate,
                        5,
                        ogg_serial,
                        &mut bytes,
                    )?))
                } else {
                    Output::Wav
                };
                (input, output)
            }
        };
        Ok(Export {
            rate,
            input,
            output,
            pcm: Vec::new(),
            bytes,
            started: false,
            announced: None,
            written: 0,
        })
    }

    /// Makes this export a stream, which cannot go back to patch a WAV's sizes: the header
    /// gives `data_len` bytes of audio (checked by [`Export::finish_stream`]), or, when that
    /// is unknown, the open-ended sizes stored WAVs use (players read to the end).
    pub(crate) fn streamed(mut self, data_len: Option<u64>) -> Export {
        self.announced = Some(
            data_len
                .and_then(|n| u32::try_from(n).ok())
                .filter(|&n| n <= u32::MAX - 36)
                .unwrap_or(u32::MAX),
        );
        self
    }

    /// Makes this export of a stored WAV (any kind) start inside the audio, for a range of
    /// the file: no header is skipped on the way in or written on the way out, and the first
    /// byte pushed must begin a stored sample. Other exports are left as they are.
    pub(crate) fn data_only(mut self) -> Export {
        if let (Input::Wav { skip, .. }, Output::Wav) = (&mut self.input, &self.output) {
            *skip = 0;
            self.started = true;
        }
        self
    }

    /// The whole file's size, when a streamed WAV announced its exact length.
    pub(crate) fn announced_size(&self) -> Option<u64> {
        match (&self.output, self.announced) {
            (Output::Wav, Some(n)) if n != u32::MAX => Some(WAV_HEADER_LEN as u64 + u64::from(n)),
            _ => None,
        }
    }

    /// Ends a [`Export::streamed`] export; its size in bytes. A WAV that came out another
    /// length than announced is an error (what was written cannot be taken back, so the
    /// response must be cut off rather than end as if whole).
    pub(crate) fn finish_stream(mut self, f: &mut impl Write) -> Result<u64, ExportError> {
        self.start(f)?;
        self.encode(true, f)?;
        match (&self.output, self.announced) {
            (Output::Wav, Some(n)) => {
                if n != u32::MAX && u64::from(n) != self.written {
                    return Err(ExportError::Length {
                        announced: n.into(),
                        written: self.written,
                    });
                }
                Ok(WAV_HEADER_LEN as u64 + self.written)
            }
            _ => Ok(self.written),
        }
    }

    /// The next piece of the recording's plaintext.
    pub(crate) fn push(&mut self, plain: &[u8], f: &mut impl Write) -> Result<(), ExportError> {
        self.start(f)?;
        match &mut self.input {
            Input::Copy => {
                self.written += plain.len() as u64;
                return Ok(f.write_all(plain)?);
            }
            Input::Wav { law, skip, odd } => {
                let s = (*skip).min(plain.len());
                *skip -= s;
                let audio = &plain[s..];
                match law {
                    Some(law) => law.decode(audio, &mut self.pcm),
                    None => linear(audio, odd, &mut self.pcm),
                }
            }
            Input::Opus(dec) => dec.push(plain, &mut self.pcm)?,
        }
        self.encode(false, f)
    }

    /// Completes the file (a WAV gets its real sizes, and whole frames); its size in bytes.
    pub(crate) fn finish(mut self, f: &mut (impl Write + Seek)) -> Result<u64, ExportError> {
        self.start(f)?;
        self.encode(true, f)?;
        match self.output {
            Output::Copy | Output::Opus(_) => Ok(self.written),
            Output::Wav => {
                // A recording cut inside a stereo frame (a crash mid-write) ends with silence
                // for the rest of that frame: a WAV holds whole frames (4 bytes each).
                let partial = (self.written % 4) as usize;
                if partial != 0 {
                    f.write_all(&[0u8; 4][partial..])?;
                    self.written += (4 - partial) as u64;
                }
                self.bytes.clear();
                let data_len = u32::try_from(self.written).unwrap_or(u32::MAX);
                encode::wav_header_of(AudioFormat::Wav, self.rate, 2, data_len, &mut self.bytes);
                f.seek(SeekFrom::Start(0))?;
                f.write_all(&self.bytes)?;
                Ok(WAV_HEADER_LEN as u64 + self.written)
            }
        }
    }

    /// Writes the headers once: Ogg Opus's as made by the encoder, a WAV's as announced or,
    /// for a file, as a placeholder.
    fn start(&mut self, f: &mut impl Write) -> Result<(), ExportError> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        match self.output {
            Output::Copy => {}
            Output::Wav => {
                self.bytes.clear();
                let data_len = self.announced.unwrap_or(0);
                encode::wav_header_of(AudioFormat::Wav, self.rate, 2, data_len, &mut self.bytes);
                f.write_all(&self.bytes)?;
            }
            Output::Opus(_) => {
                f.write_all(&self.bytes)?;
                self.written += self.bytes.len() as u64;
            }
        }
        self.bytes.clear();
        Ok(())
    }

    /// Writes out the samples decoded so far: all of them to a WAV; whole 20 ms frames to
    /// Opus, and at the `end` the rest padded with silence, then the end of the stream.
    fn encode(&mut self, end: bool, f: &mut impl Write) -> Result<(), ExportError> {
        self.bytes.clear();
        match &mut self.output {
            Output::Copy => return Ok(()),
            Output::Wav => {
                self.bytes.reserve(2 * self.pcm.len());
                self.bytes
                    .extend(self.pcm.iter().flat_map(|s| s.to_le_bytes()));
                self.pcm.clear();
            }
            Output::Opus(enc) => {
                let n = 2 * encode::frame_samples(self.rate);
                if end && !self.pcm.len().is_multiple_of(n) {
                    let padded = self.pcm.len().next_multiple_of(n);
                    self.pcm.resize(padded, 0);
                }
                let whole = self.pcm.len() / n * n;
                for frame in self.pcm[..whole].chunks_exact(n) {
                    enc.push(frame, &mut self.bytes)?;
                }
                self.pcm.drain(..whole);
                if end {
                    enc.finish(&mut self.bytes)?;
                }
            }
        }
        self.written += self.bytes.len() as u64;
        Ok(f.write_all(&self.bytes)?)
    }
}

/// The plaintext a sealed recording holds (the stored file, as stored), from its size and
/// chunk count: every chunk's frame adds the same header and tag. `None` for sizes no
/// recording of that many chunks can have.
pub(crate) fn plaintext_len(sealed_size: u64, chunks: u32) -> Option<u64> {
    let per_chunk = (FRAME_HEADER_LEN + TAG_LEN) as u64;
    sealed_size
        .checked_sub(HEADER_LEN as u64)?
        .checked_sub(u64::from(chunks) * per_chunk)
}

/// The 16-bit PCM, in bytes, that a whole recording stored as a WAV of any kind exports to,
/// known before reading it from its sealed size and chunk count alone (every chunk's frame
/// adds the same overhead to its plaintext). `None` for Ogg Opus, whose decoded length shows
/// only at its end, and for sizes no recording of that many chunks can have.
pub(crate) fn wav_data_len(stored: AudioFormat, sealed_size: u64, chunks: u32) -> Option<u64> {
    let audio = plaintext_len(sealed_size, chunks)?.checked_sub(WAV_HEADER_LEN as u64)?;
    match stored {
        AudioFormat::Opus => None,
        // A last odd byte is not a sample (see `linear`).
        AudioFormat::Wav => Some(audio / 2 * 2),
        // One byte per sample, expanded to two.
        AudioFormat::Mulaw | AudioFormat::Alaw => Some(audio * 2),
    }
}

/// Appends little-endian 16-bit samples from `audio`, carrying a byte split between pieces.
fn linear(audio: &[u8], odd: &mut Option<u8>, pcm: &mut Vec<i16>) {
    let mut audio = audio;
    if let Some(first) = *odd
        && let Some((&second, rest)) = audio.split_first()
    {
        pcm.push(i16::from_le_bytes([first, second]));
        *odd = None;
        audio = rest;
    }
    let (pairs, rest) = audio.as_chunks::<2>();
    pcm.extend(pairs.iter().map(|&b| i16::from_le_bytes(b)));
    if let Some(&b) = rest.first() {
        *odd = Some(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, period: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let x = (i % period) as f32 / period as f32 * std::f32::consts::TAU;
                (x.sin() * 8000.0) as i16
            })
            .collect()
    }

    /// Two different tones, one per channel, interleaved.
    fn stereo(frames: usize) -> Vec<i16> {
        let (l, r) = (tone(frames, 18), tone(frames, 8));
        l.iter().zip(&r).flat_map(|(&a, &b)| [a, b]).collect()
    }

    /// Runs `stored` through an export in pieces of `piece` bytes; the file's bytes.
    fn export(have: AudioFormat, want: AudioFormat, stored: &[u8], piece: usize) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        let mut e = Export::new(have, want, 8000, 7).unwrap();
        // An empty piece first, as the reader may give.
        e.push(&[], &mut out).unwrap();
        for p in stored.chunks(piece) {
            e.push(p, &mut out).unwrap();
        }
        let size = e.finish(&mut out).unwrap();
        let out = out.into_inner();
        assert_eq!(size, out.len() as u64);
        out
    }

    fn wav_samples(file: &[u8]) -> Vec<i16> {
        let mut r = hound::WavReader::new(std::io::Cursor::new(file)).unwrap();
        assert_eq!(r.spec().channels, 2);
        assert_eq!(r.spec().bits_per_sample, 16);
        assert_eq!(r.spec().sample_rate, 8000);
        r.samples::<i16>().map(|s| s.unwrap()).collect()
    }

    /// How alike two signals are (normalized cross-correlation at the best lag up to 20 ms).
    fn likeness(a: &[i16], b: &[i16]) -> f64 {
        (0..160)
            .map(|lag| {
                let pairs = a.iter().skip(lag).zip(b);
                let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
                for (&x, &y) in pairs {
                    let (x, y) = (f64::from(x), f64::from(y));
                    ab += x * y;
                    aa += x * x;
                    bb += y * y;
                }
                ab / (aa * bb).sqrt().max(1.0)
            })
            .fold(0.0, f64::max)
    }

    fn channel(pcm: &[i16], c: usize) -> Vec<i16> {
        pcm.iter().skip(c).step_by(2).copied().collect()
    }

    #[test]
    fn wav_exports_stream_whatever_the_pieces() {
        // A G.711 WAV: expanded to 16-bit; the stored header (split by the pieces) skipped.
        let law: Vec<u8> = (0..=255u8).cycle().take(1600).collect();
        let mut stored = Vec::new();
        encode::wav_header_of(AudioFormat::Mulaw, 8000, 2, u32::MAX, &mut stored);
        stored.extend_from_slice(&law);
        let mut want = Vec::new();
        Law::Mu.decode(&law, &mut want);
        for piece in [1, 30, 45, 1000] {
            let file = export(AudioFormat::Mulaw, AudioFormat::Wav, &stored, piece);
            assert_eq!(wav_samples(&file), want, "pieces of {piece}");
        }
        // A PCM WAV: samples split between pieces come out whole.
        let pcm = stereo(800);
        let mut stored = Vec::new();
        encode::wav_header(8000, 2, u32::MAX, &mut stored);
        stored.extend(pcm.iter().flat_map(|s| s.to_le_bytes()));
        for piece in [1, 3, 45, 999] {
            let file = export(AudioFormat::Wav, AudioFormat::Wav, &stored, piece);
            assert_eq!(wav_samples(&file), pcm, "pieces of {piece}");
        }
        // Nothing authentic at all: still a valid, empty WAV.
        assert!(wav_samples(&export(AudioFormat::Wav, AudioFormat::Wav, &[], 1)).is_empty());
    }

    /// An Opus export is a function of its inputs: the same recording, pieces and serial give
    /// the same bytes (so a failure is reproducible), and the serial the caller drew is the one
    /// every Ogg page carries (RFC 3533 §6: bytes 14..18 of each page).
    #[test]
    fn opus_exports_are_made_of_their_inputs_alone() {
        let mut stored = Vec::new();
        encode::wav_header(8000, 2, u32::MAX, &mut stored);
        stored.extend(stereo(4000).iter().flat_map(|s| s.to_le_bytes()));
        let run = |serial: u32, piece: usize| {
            let mut out = std::io::Cursor::new(Vec::new());
            let mut e = Export::new(AudioFormat::Wav, AudioFormat::Opus, 8000, serial).unwrap();
            for p in stored.chunks(piece) {
                e.push(p, &mut out).unwrap();
            }
            e.finish(&mut out).unwrap();
            out.into_inner()
        };
        let a = run(0x5eed_0001, 640);
        assert_eq!(a, run(0x5eed_0001, 640), "same inputs, same bytes");
        assert_eq!(a, run(0x5eed_0001, 333), "the pieces do not matter");
        let b = run(0x5eed_0002, 640);
        assert_ne!(a, b);
        for (file, serial) in [(&a, 0x5eed_0001u32), (&b, 0x5eed_0002)] {
            let mut pages = 0;
            let mut at = 0;
            while at + 27 <= file.len() {
                assert_eq!(&file[at..at + 4], b"OggS", "a page at {at}");
                assert_eq!(file[at + 14..at + 18], serial.to_le_bytes());
                let segments = file[at + 26] as usize;
                let body: usize = file[at + 27..at + 27 + segments]
                    .iter()
                    .map(|&l| l as usize)
                    .sum();
                at += 27 + segments + body;
                pages += 1;
            }
            assert_eq!(at, file.len(), "whole pages only");
            assert!(pages >= 3, "head, tags and audio pages: {pages}");
        }
    }

    #[test]
    fn opus_and_pcm_transcode_both_ways_keeping_each_channel() {
        let pcm = stereo(8000 * 3);
        let mut wav = Vec::new();
        encode::wav_header(8000, 2, u32::MAX, &mut wav);
        wav.extend(pcm.iter().flat_map(|s| s.to_le_bytes()));
        // WAV -> Ogg Opus, then that Ogg Opus -> WAV, each in pieces.
        let ogg = export(AudioFormat::Wav, AudioFormat::Opus, &wav, 4096);
        assert!(ogg.starts_with(b"OggS"));
        assert!(ogg.len() < wav.len() / 4, "compressed: {} bytes", ogg.len());
        let back = export(AudioFormat::Opus, AudioFormat::Wav, &ogg, 777);
        let got = wav_samples(&back);
        let frames = got.len() / 2;
        assert!(
            frames.abs_diff(8000 * 3) <= 160,
            "{frames} frames for {}",
            8000 * 3
        );
        for c in 0..2 {
            let (a, b) = (channel(&pcm, c), channel(&got, c));
            assert!(likeness(&a, &b) > 0.9, "channel {c} kept");
            let other = channel(&pcm, 1 - c);
            assert!(
                likeness(&other, &b) < 0.5,
                "channel {c} is not the other one"
            );
        }
        // Ogg Opus as stored: byte for byte.
        assert_eq!(export(AudioFormat::Opus, AudioFormat::Opus, &ogg, 100), ogg);
    }

    /// Runs `stored` through a streamed export announcing `data_len`; the bytes written and
    /// what `finish_stream` said.
    fn export_streamed(
        have: AudioFormat,
        stored: &[u8],
        data_len: Option<u64>,
    ) -> (Vec<u8>, Result<u64, ExportError>) {
        let mut out = Vec::new();
        let mut e = Export::new(have, AudioFormat::Wav, 8000, 7)
            .unwrap()
            .streamed(data_len);
        for p in stored.chunks(1000) {
            e.push(p, &mut out).unwrap();
        }
        let end = e.finish_stream(&mut out);
        (out, end)
    }

    /// The plaintext of a stored WAV sealed as the writer seals it: chunks of `chunk` bytes
    /// and `flushes` short ones. Its size and chunk count, as the index has them.
    fn sealed_size(plain: &[u8], chunk: usize, flushes: usize) -> (u64, u32) {
        use crate::recording::crypt::RecordingKeys;
        use crate::recording::format::{RecordingId, StreamInfo};
        use crate::recording::sealer::ChunkSealer;
        let info = StreamInfo {
            id: RecordingId::random(),
            started_unix_ms: 0,
            format: AudioFormat::Mulaw,
            channels: 2,
            sample_rate: 8000,
            chunk_bytes: chunk as u32,
        };
        let keys = RecordingKeys::derive(&[7; 32], &info);
        let mut sealer = ChunkSealer::new(keys, chunk);
        let mut out = vec![0; HEADER_LEN];
        let piece = plain.len().div_ceil(flushes + 1).max(1);
        for p in plain.chunks(piece) {
            sealer.write(p, &mut out);
            sealer.flush(&mut out);
        }
        sealer.finish(&mut out);
        let size = out.len() as u64;
        (size, sealer.chunks())
    }

    #[test]
    fn a_streamed_wav_announces_its_exact_length_from_the_sealed_size() {
        let law: Vec<u8> = (0..=255u8).cycle().take(8000 * 2 * 3).collect();
        let mut stored = Vec::new();
        encode::wav_header_of(AudioFormat::Mulaw, 8000, 2, u32::MAX, &mut stored);
        stored.extend_from_slice(&law);
        for (chunk, flushes) in [(1024, 0), (4096, 3), (64 * 1024, 1)] {
            let (size, chunks) = sealed_size(&stored, chunk, flushes);
            let n = wav_data_len(AudioFormat::Mulaw, size, chunks);
            assert_eq!(n, Some(2 * law.len() as u64), "chunks of {chunk}");
            // The header says so before any audio, and the file is whole and exact.
            let (file, end) = export_streamed(AudioFormat::Mulaw, &stored, n);
            assert_eq!(end.unwrap(), file.len() as u64);
            let e = Export::new(AudioFormat::Mulaw, AudioFormat::Wav, 8000, 7).unwrap();
            assert_eq!(e.streamed(n).announced_size(), Some(file.len() as u64));
            assert_eq!(&file[40..44], &(2 * law.len() as u32).to_le_bytes());
            assert_eq!(&file[4..8], &(2 * law.len() as u32 + 36).to_le_bytes());
            assert_eq!(
                file,
                export(AudioFormat::Mulaw, AudioFormat::Wav, &stored, 1000)
            );
        }
        // A 16-bit WAV's odd last byte is no sample.
        let (size, chunks) = sealed_size(&stored, 4096, 0);
        assert_eq!(
            wav_data_len(AudioFormat::Wav, size + 1, chunks),
            Some(law.len() as u64)
        );
        // Ogg Opus, or a size too small for its chunks: not known ahead.
        assert_eq!(wav_data_len(AudioFormat::Opus, size, chunks), None);
        assert_eq!(wav_data_len(AudioFormat::Mulaw, 100, 3), None);

        // A range of it: from any stored sample on, the same bytes as the whole file's.
        for from in [0, 1, 4001, law.len() - 2] {
            let mut out = Vec::new();
            let mut e = Export::new(AudioFormat::Mulaw, AudioFormat::Wav, 8000, 7)
                .unwrap()
                .data_only();
            for p in stored[WAV_HEADER_LEN + from..].chunks(777) {
                e.push(p, &mut out).unwrap();
            }
            let whole = export(AudioFormat::Mulaw, AudioFormat::Wav, &stored, 1000);
            assert_eq!(
                out,
                whole[WAV_HEADER_LEN + 2 * from..],
                "from sample {from}"
            );
        }

        // Announced wrong (the recording is not what the index says): an error at the end,
        // so the response is cut off instead of ending as a whole file.
        let wrong = Some(2 * law.len() as u64 + 2);
        let (_, end) = export_streamed(AudioFormat::Mulaw, &stored, wrong);
        assert!(matches!(end, Err(ExportError::Length { .. })), "{end:?}");
        // Unknown: the open-ended sizes stored WAVs have (players read to the end), then
        // the same audio.
        let (file, end) = export_streamed(AudioFormat::Mulaw, &stored, None);
        assert_eq!(end.unwrap(), file.len() as u64);
        let e = Export::new(AudioFormat::Mulaw, AudioFormat::Wav, 8000, 7).unwrap();
        assert_eq!(e.streamed(None).announced_size(), None);
        assert_eq!(&file[40..44], &u32::MAX.to_le_bytes());
        let exact = export(AudioFormat::Mulaw, AudioFormat::Wav, &stored, 1000);
        assert_eq!(file[44..], exact[44..]);
    }

    /// Exports only ever see authenticated plaintext, but a bug upstream must not become a
    /// panic or a broken file: damaged or random input (seeded, the same every run), in
    /// random pieces, gives an error or a whole file of the format asked for (a WAV that
    /// reads as stereo WAV of the length it says, an Ogg stream; Ogg Opus asked of Ogg Opus
    /// is a copy), and random bytes decoded as Ogg Opus are always an error.
    #[test]
    fn damaged_or_random_input_gives_an_error_or_a_whole_file() {
        use rand::{Rng, SeedableRng};
        let mut wav = Vec::new();
        encode::wav_header(8000, 2, u32::MAX, &mut wav);
        wav.extend(stereo(8000).iter().flat_map(|s| s.to_le_bytes()));
        let ogg = export(AudioFormat::Wav, AudioFormat::Opus, &wav, 4096);
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x0665);
        let (mut files, mut errors) = (0, 0);
        for case in 0..400 {
            let (have, good) = match case % 3 {
                0 => (AudioFormat::Opus, &ogg),
                1 => (AudioFormat::Wav, &wav),
                _ => (AudioFormat::Mulaw, &wav),
            };
            let mut d = good.clone();
            let damage = rng.random_range(0..4);
            match damage {
                0 => {
                    for _ in 0..rng.random_range(1..20) {
                        let i = rng.random_range(0..d.len());
                        d[i] = rng.random();
                    }
                }
                1 => d.truncate(rng.random_range(0..d.len())),
                2 => {
                    let at = rng.random_range(0..d.len());
                    let junk: Vec<u8> = (0..rng.random_range(1..300))
                        .map(|_| rng.random())
                        .collect();
                    d.splice(at..at, junk);
                }
                _ => {
                    d = (0..rng.random_range(0..5000))
                        .map(|_| rng.random())
                        .collect()
                }
            }
            for want in [AudioFormat::Wav, AudioFormat::Opus] {
                let mut out = std::io::Cursor::new(Vec::new());
                let Ok(mut e) = Export::new(have, want, 8000, 7) else {
                    continue;
                };
                let piece = rng.random_range(1..5000);
                let result = d
                    .chunks(piece)
                    .try_for_each(|p| e.push(p, &mut out))
                    .and_then(|_| e.finish(&mut out));
                let out = out.into_inner();
                match result {
                    Ok(size) => {
                        files += 1;
                        assert_eq!(size, out.len() as u64, "case {case}");
                        match want {
                            // Ogg Opus asked of Ogg Opus is copied as stored.
                            AudioFormat::Opus if have == AudioFormat::Opus => {
                                assert_eq!(out, d, "case {case}: a copy")
                            }
                            AudioFormat::Opus => {
                                assert!(out.starts_with(b"OggS"), "case {case}: not Ogg")
                            }
                            _ => {
                                let r = hound::WavReader::new(std::io::Cursor::new(&out))
                                    .unwrap_or_else(|e| panic!("case {case}: not WAV: {e}"));
                                assert_eq!(r.spec().channels, 2, "case {case}");
                                assert_eq!(
                                    r.len() as usize * 2 + 44,
                                    out.len(),
                                    "case {case}: the header's length is the file's"
                                );
                            }
                        }
                    }
                    Err(_) => errors += 1,
                }
                if have == AudioFormat::Opus && want != have && damage == 3 && !d.is_empty() {
                    assert!(
                        result.is_err(),
                        "case {case}: random bytes read as Ogg Opus"
                    );
                }
            }
        }
        assert!(files > 100 && errors > 20, "{files} files, {errors} errors");
    }
}
