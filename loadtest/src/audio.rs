//! What callers send, encoded once and shared by every caller: their speech (a WAV, looped),
//! DTMF tones for in-band presses, and silence.
//!
//! Encoding per caller and frame would cost an encoder per call (for Opus, far more than the
//! whole packet path); like the server's prompts, a caller only copies a ready payload.

use std::path::Path;

use careline::media::codec::opus::OpusEncoder;
use careline::media::codec::{Codec, g711};
use careline::media::dtmf::{Digit, tone};
use careline::media::prompt::read_wav;
use careline::media::resample;

/// DTMF tone level per frequency (dBm0): a typical phone (Q.24 accepts −25 to 0 dBm0 or so).
const TONE_LEVEL_DBM0: f32 = -8.0;

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("caller audio: {0}")]
    Wav(#[from] careline::media::prompt::PromptError),
    #[error("caller audio {path}: resampling: {reason}")]
    Resample { path: String, reason: String },
    #[error("encoding caller audio: {0}")]
    Encode(String),
}

/// Frames stored back to back (the server's own prompt storage).
pub use careline::media::prompt::FrameSeq as Frames;

/// Everything a caller on one codec sends.
#[derive(Debug)]
pub struct Assets {
    pub codec: Codec,
    pub speech: Frames,
    pub silence: Vec<u8>,
    /// Per DTMF event code, the tone's frames (as long as the longest in-band press).
    pub tones: Vec<Frames>,
}

fn encode_all(codec: Codec, pcm: &[i16]) -> Result<Frames, AudioError> {
    let mut frames = Frames::default();
    let mut buf = Vec::with_capacity(160);
    match codec {
        Codec::Pcmu | Codec::Pcma => {
            for chunk in pcm.chunks(160) {
                let mut f = chunk.to_vec();
                f.resize(160, 0);
                buf.clear();
                if codec == Codec::Pcmu {
                    g711::encode_ulaw(&f, &mut buf);
                } else {
                    g711::encode_alaw(&f, &mut buf);
                }
                frames.push(&buf);
            }
        }
        Codec::Opus => {
            let mut enc = OpusEncoder::new().map_err(|e| AudioError::Encode(e.to_string()))?;
            for chunk in pcm.chunks(960) {
                let mut f = chunk.to_vec();
                f.resize(960, 0);
                let p = enc
                    .encode(&f)
                    .map_err(|e| AudioError::Encode(e.to_string()))?;
                frames.push(p);
            }
        }
    }
    Ok(frames)
}

fn rate(codec: Codec) -> u32 {
    match codec {
        Codec::Opus => 48000,
        _ => 8000,
    }
}

impl Assets {
    /// `audio`: caller speech (16-bit PCM WAV, any rate); `None` sends silence.
    /// `tone_ms`: the longest in-band key press to prepare.
    pub fn new(codec: Codec, audio: Option<&Path>, tone_ms: u32) -> Result<Assets, AudioError> {
        let r = rate(codec);
        let speech = match audio {
            Some(path) => {
                let (pcm, wav_rate) = read_wav(path)?;
                let up = resample::resample(&resample::to_f32(&pcm), wav_rate, r).map_err(|e| {
                    AudioError::Resample {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    }
                })?;
                encode_all(codec, &resample::to_i16(&up))?
            }
            None => Frames::default(),
        };
        let silence = encode_all(codec, &vec![0; (r / 50) as usize])?
            .frame_looped(0)
            .to_vec();
        let mut tones = Vec::new();
        for d in Digit::ALL {
            let pcm = if tone_ms > 0 {
                tone::synthesize(d, r, tone_ms, TONE_LEVEL_DBM0)
            } else {
                Vec::new()
            };
            tones.push(encode_all(codec, &pcm)?);
        }
        Ok(Assets {
            codec,
            speech,
            silence,
            tones,
        })
    }

    /// Speech frame `i` (looped), or silence without caller audio.
    pub fn speech_frame(&self, i: usize) -> &[u8] {
        if self.speech.is_empty() {
            &self.silence
        } else {
            self.speech.frame_looped(i)
        }
    }

    pub fn tone_frame(&self, digit: Digit, i: usize) -> &[u8] {
        match self.tones.get(digit.event_code() as usize) {
            Some(f) if i < f.len() => f.frame_looped(i),
            _ => &self.silence,
        }
    }
}
