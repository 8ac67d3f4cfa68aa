//! Opus through libopus (the `opus` crate, bundled libopus).
//!
//! SDP always says `opus/48000/2` (RFC 7587 §7), but the stream is whatever the encoder chose;
//! Careline encodes mono voice and decodes every stream to mono at the rate it processes.

use opus::{Application, Channels};

#[derive(Debug, thiserror::Error)]
#[error("opus: {0}")]
pub struct OpusError(#[from] opus::Error);

/// Encodes 20 ms mono frames: at 48 kHz for prompts (done once per prompt at start), at a
/// bridged phone's 8 kHz for a browser leg (libopus takes 8, 12, 16, 24 or 48 kHz input and
/// resamples inside; the RTP clock stays 48 kHz, RFC 7587 §4.1).
pub struct OpusEncoder {
    inner: opus::Encoder,
    out: Vec<u8>,
}

impl OpusEncoder {
    pub fn new() -> Result<Self, OpusError> {
        Self::with_rate(48000)
    }

    /// An encoder taking PCM at `rate` Hz (8, 12, 16, 24 or 48 kHz).
    pub fn with_rate(rate: u32) -> Result<Self, OpusError> {
        let mut inner = opus::Encoder::new(rate, Channels::Mono, Application::Voip)?;
        inner.set_bitrate(opus::Bitrate::Bits(32000))?;
        Ok(OpusEncoder {
            inner,
            out: vec![0; 1500],
        })
    }

    /// Encodes one 20 ms frame (960 samples at 48 kHz, 160 at 8 kHz) and returns the packet.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<&[u8], OpusError> {
        let n = self.inner.encode(pcm, &mut self.out)?;
        Ok(&self.out[..n])
    }
}

/// Decodes any Opus stream to mono PCM at `rate` (8, 12, 16, 24 or 48 kHz).
pub struct OpusDecoder {
    inner: opus::Decoder,
    rate: u32,
}

impl OpusDecoder {
    pub fn new(rate: u32) -> Result<Self, OpusError> {
        Ok(OpusDecoder {
            inner: opus::Decoder::new(rate, Channels::Mono)?,
            rate,
        })
    }

    /// Decodes one packet into `out` (resized to what was decoded); an error means a corrupt
    /// packet, which the caller counts and conceals.
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<i16>) -> Result<(), OpusError> {
        out.resize(self.max_samples(), 0);
        let n = self.inner.decode(packet, out, false)?;
        out.truncate(n);
        Ok(())
    }

    /// Packet-loss concealment for one missing frame of `samples` samples.
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) -> Result<(), OpusError> {
        out.resize(samples, 0);
        let n = self.inner.decode(&[], out, false)?;
        out.truncate(n);
        Ok(())
    }

    /// 120 ms, the longest Opus packet.
    fn max_samples(&self) -> usize {
        (self.rate as usize) * 120 / 1000
    }
}
