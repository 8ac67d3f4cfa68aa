//! Audio codecs Careline speaks on SIP legs: G.711 µ-law/A-law and Opus.

pub mod g711;
pub mod opus;

/// A codec as negotiated in SDP (the telephone-event pseudo-codec is handled apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, RTP/AVP static payload type 0.
    Pcmu,
    /// G.711 A-law, RTP/AVP static payload type 8.
    Pcma,
    /// Opus (RFC 7587): always `opus/48000/2` in SDP, whatever is actually coded.
    Opus,
}

impl Codec {
    pub const ALL: [Codec; 3] = [Codec::Pcmu, Codec::Pcma, Codec::Opus];

    /// RTP clock rate (RFC 3551 §4.5.14, RFC 7587 §4.1).
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::Opus => 48000,
        }
    }

    /// The payload size to expect in `frame_ms` of audio, for sizing buffers: 64 kbit/s,
    /// exact for G.711, twice what Careline sends in Opus (a peer may send more: the
    /// buffers sized by this grow for it).
    pub fn typical_payload(self, frame_ms: u32) -> usize {
        match self {
            Codec::Pcmu | Codec::Pcma | Codec::Opus => 8 * frame_ms as usize,
        }
    }

    /// Channel count as written in `a=rtpmap`.
    pub fn sdp_channels(self) -> u8 {
        match self {
            Codec::Pcmu | Codec::Pcma => 1,
            Codec::Opus => 2,
        }
    }

    /// Encoding name as written in `a=rtpmap` (matched case-insensitively on input).
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::Opus => "opus",
        }
    }

    /// The static payload type, where RFC 3551 assigns one.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::Opus => None,
        }
    }

    /// Parses a configuration name (`pcmu`, `pcma`, `opus`, case-insensitive).
    pub fn from_name(name: &str) -> Option<Codec> {
        Codec::ALL
            .into_iter()
            .find(|c| c.encoding_name().eq_ignore_ascii_case(name))
    }

    /// RTP timestamp units per millisecond.
    pub fn samples_per_ms(self) -> u32 {
        self.clock_rate() / 1000
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.encoding_name())
    }
}

/// Turns a leg's received payloads into mono PCM at [`Decoder::rate`].
pub enum Decoder {
    Pcmu,
    Pcma,
    Opus(opus::OpusDecoder),
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Opus(#[from] opus::OpusError),
}

impl Decoder {
    /// Opus legs are decoded at 16 kHz: wideband enough for recordings and in-band DTMF,
    /// a third of the work of 48 kHz.
    pub const OPUS_DECODE_RATE: u32 = 16000;

    pub fn new(codec: Codec) -> Result<Decoder, CodecError> {
        Ok(match codec {
            Codec::Pcmu => Decoder::Pcmu,
            Codec::Pcma => Decoder::Pcma,
            Codec::Opus => Decoder::Opus(opus::OpusDecoder::new(Self::OPUS_DECODE_RATE)?),
        })
    }

    /// Sample rate of the decoded PCM.
    pub fn rate(&self) -> u32 {
        match self {
            Decoder::Pcmu => Self::rate_of(Codec::Pcmu),
            Decoder::Pcma => Self::rate_of(Codec::Pcma),
            Decoder::Opus(_) => Self::rate_of(Codec::Opus),
        }
    }

    /// The rate a decoder for `codec` would produce, without building one (an Opus decoder
    /// allocates its state).
    pub fn rate_of(codec: Codec) -> u32 {
        match codec {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::Opus => Self::OPUS_DECODE_RATE,
        }
    }

    /// Decodes one payload, replacing the contents of `out`.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        out.clear();
        match self {
            Decoder::Pcmu => g711::decode_ulaw(payload, out),
            Decoder::Pcma => g711::decode_alaw(payload, out),
            Decoder::Opus(d) => d.decode(payload, out)?,
        }
        Ok(())
    }

    /// Fills `out` with a concealment frame of `ms` milliseconds for a lost packet:
    /// Opus runs its own PLC; G.711 gets silence (simple, and never invents a DTMF tone).
    pub fn conceal(&mut self, ms: u32, out: &mut Vec<i16>) -> Result<(), CodecError> {
        let samples = (self.rate() * ms / 1000) as usize;
        out.clear();
        match self {
            Decoder::Pcmu | Decoder::Pcma => out.resize(samples, 0),
            Decoder::Opus(d) => d.conceal(samples, out)?,
        }
        Ok(())
    }
}

/// A G.711 companding law (ITU-T G.711: μ-law in North America and Japan, A-law elsewhere):
/// the bytes a PCMU or PCMA leg carries, and what a companded recording stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    Mu,
    A,
}

impl Law {
    /// The code for silence (linear 0; A-law has no zero and uses its smallest step, +8).
    pub fn silence(self) -> u8 {
        match self {
            Law::Mu => 0xFF,
            Law::A => 0xD5,
        }
    }

    pub fn encode(self, pcm: &[i16], out: &mut Vec<u8>) {
        match self {
            Law::Mu => g711::encode_ulaw(pcm, out),
            Law::A => g711::encode_alaw(pcm, out),
        }
    }

    pub fn decode(self, bytes: &[u8], out: &mut Vec<i16>) {
        match self {
            Law::Mu => g711::decode_ulaw(bytes, out),
            Law::A => g711::decode_alaw(bytes, out),
        }
    }

    /// The law whose bytes a leg with `codec` sends and receives.
    pub fn of(codec: Codec) -> Option<Law> {
        match codec {
            Codec::Pcmu => Some(Law::Mu),
            Codec::Pcma => Some(Law::A),
            Codec::Opus => None,
        }
    }
}
