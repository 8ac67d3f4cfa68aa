//! The prompt library: every `prompts/<lang>/<name>.wav` loaded once at start, resampled and
//! encoded once per codec, its frames shared read-only by every call.
//!
//! Encoding at start costs a second of CPU once; encoding per call would cost a codec encoder
//! per call and per frame for ever. A playing call only copies a ready 20 ms payload.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::codec::{Codec, g711, opus::OpusEncoder};
use super::resample;

/// Careline sends 20 ms frames on every leg.
pub const FRAME_MS: u32 = 20;

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("prompt folder {0} does not exist")]
    MissingDir(PathBuf),
    #[error("encoding prompt {name}: {reason}")]
    Encode { name: String, reason: String },
}

/// A sequence of encoded frames stored back to back.
#[derive(Debug, Default)]
pub struct FrameSeq {
    data: Vec<u8>,
    ends: Vec<u32>,
}

impl FrameSeq {
    pub fn push(&mut self, frame: &[u8]) {
        self.data.extend_from_slice(frame);
        self.ends.push(self.data.len() as u32);
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn frame(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        Some(&self.data[start..end])
    }

    /// Frame `i`, wrapping around (audio played in a loop); empty when there are none.
    pub fn frame_looped(&self, i: usize) -> &[u8] {
        match self.ends.len() {
            0 => &[],
            n => self.frame(i % n).unwrap_or_default(),
        }
    }
}

/// One prompt, ready to send in any codec Careline speaks.
#[derive(Debug)]
pub struct Prompt {
    pub lang: String,
    pub name: String,
    /// The audio at 8 kHz, kept for analysis (tests, the load tester's recognizer).
    pub pcm_8k: Vec<i16>,
    frames: [FrameSeq; 3],
}

fn codec_index(codec: Codec) -> usize {
    match codec {
        Codec::Pcmu => 0,
        Codec::Pcma => 1,
        Codec::Opus => 2,
    }
}

impl Prompt {
    /// Encodes mono PCM at any rate into every codec.
    pub fn from_pcm(lang: &str, name: &str, pcm: &[i16], rate: u32) -> Result<Prompt, PromptError> {
        let encode_err = |reason: String| PromptError::Encode {
            name: format!("{lang}/{name}"),
            reason,
        };
        let f = resample::to_f32(pcm);
        let pcm_8k = resample::to_i16(
            &resample::resample(&f, rate, 8000).map_err(|e| encode_err(e.to_string()))?,
        );
        let pcm_48k = resample::to_i16(
            &resample::resample(&f, rate, 48000).map_err(|e| encode_err(e.to_string()))?,
        );

        let mut frames: [FrameSeq; 3] = Default::default();
        let mut buf = Vec::with_capacity(160);
        for chunk in pcm_8k.chunks(160) {
            let mut padded = chunk.to_vec();
            padded.resize(160, 0);
            buf.clear();
            g711::encode_ulaw(&padded, &mut buf);
            frames[codec_index(Codec::Pcmu)].push(&buf);
            buf.clear();
            g711::encode_alaw(&padded, &mut buf);
            frames[codec_index(Codec::Pcma)].push(&buf);
        }
        // A fresh encoder per prompt: every call starts the prompt from the same encoder
        // state, so the frames can be shared.
        let mut enc = OpusEncoder::new().map_err(|e| encode_err(e.to_string()))?;
        for chunk in pcm_48k.chunks(960) {
            let mut padded = chunk.to_vec();
            padded.resize(960, 0);
            let packet = enc.encode(&padded).map_err(|e| encode_err(e.to_string()))?;
            frames[codec_index(Codec::Opus)].push(packet);
        }
        Ok(Prompt {
            lang: lang.to_string(),
            name: name.to_string(),
            pcm_8k,
            frames,
        })
    }

    pub fn frames(&self, codec: Codec) -> &FrameSeq {
        &self.frames[codec_index(codec)]
    }

    pub fn duration_ms(&self) -> u32 {
        self.frames[0].len() as u32 * FRAME_MS
    }

    /// `lang/name`, the form used in logs and flows.
    pub fn key(&self) -> String {
        format!("{}/{}", self.lang, self.name)
    }
}

/// The notes of [`hold_music`], in Hz: a slow arpeggio (C major, then A minor).
const HOLD_NOTES: [f32; 8] = [261.63, 329.63, 392.0, 329.63, 220.0, 261.63, 329.63, 261.63];

/// What a caller on hold hears: a soft, slow arpeggio of 3.2 s, made here rather than shipped
/// as a recording (no licence to track, nothing to load), played in a loop. Each note has a
/// gentle attack and release and a quieter octave above it; about -24 dBFS, below the level
/// of speech, so it is not mistaken for a keypress (no two simultaneous tones of the DTMF
/// grid) and does not startle.
pub fn hold_music() -> Result<Prompt, PromptError> {
    const RATE: usize = 8000;
    const NOTE: usize = RATE * 2 / 5; // 400 ms
    const EDGE: usize = RATE / 25; // 40 ms
    let mut pcm = Vec::with_capacity(NOTE * HOLD_NOTES.len());
    for hz in HOLD_NOTES {
        for n in 0..NOTE {
            let t = n as f32 / RATE as f32;
            let envelope = (n.min(NOTE - n) as f32 / EDGE as f32).min(1.0);
            let w = 2.0 * std::f32::consts::PI * hz * t;
            let v = 1800.0 * w.sin() + 500.0 * (2.0 * w).sin();
            pcm.push((v * envelope) as i16);
        }
    }
    Prompt::from_pcm("", "hold-music", &pcm, RATE as u32)
}

/// One frame of silence per codec, sent between prompts so the stream never stops (NATs and
/// jitter buffers on the far side expect continuous RTP).
#[derive(Debug)]
pub struct Silence {
    frames: [Vec<u8>; 3],
}

impl Silence {
    pub fn new() -> Result<Silence, PromptError> {
        let mut opus = OpusEncoder::new().map_err(|e| PromptError::Encode {
            name: "silence".into(),
            reason: e.to_string(),
        })?;
        let opus_frame = opus
            .encode(&[0i16; 960])
            .map_err(|e| PromptError::Encode {
                name: "silence".into(),
                reason: e.to_string(),
            })?
            .to_vec();
        Ok(Silence {
            frames: [vec![0xFF; 160], vec![0xD5; 160], opus_frame],
        })
    }

    pub fn frame(&self, codec: Codec) -> &[u8] {
        &self.frames[codec_index(codec)]
    }
}

/// Every prompt, by language and name.
#[derive(Debug)]
pub struct PromptLibrary {
    prompts: HashMap<(String, String), Arc<Prompt>>,
    pub silence: Silence,
}

impl PromptLibrary {
    pub fn empty() -> Result<PromptLibrary, PromptError> {
        Ok(PromptLibrary {
            prompts: HashMap::new(),
            silence: Silence::new()?,
        })
    }

    /// Loads `dir/<lang>/*.wav`. Any file that is not 16-bit PCM WAV is an error naming it:
    /// an operator who drops an MP3 in the folder learns at start, not when a patient calls.
    pub fn load(dir: &Path) -> Result<PromptLibrary, PromptError> {
        if !dir.is_dir() {
            return Err(PromptError::MissingDir(dir.to_path_buf()));
        }
        let mut lib = PromptLibrary::empty()?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| PromptError::Io {
                path: path.clone(),
                source,
            }
        };
        let mut langs: Vec<_> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .collect::<Result<_, _>>()
            .map_err(io(dir))?;
        langs.sort_by_key(|e| e.path());
        for lang in langs {
            let lang_path = lang.path();
            if !lang_path.is_dir() {
                continue; // README, generation scripts
            }
            let lang_name = lang.file_name().to_string_lossy().into_owned();
            let mut files: Vec<_> = std::fs::read_dir(&lang_path)
                .map_err(io(&lang_path))?
                .collect::<Result<_, _>>()
                .map_err(io(&lang_path))?;
            files.sort_by_key(|e| e.path());
            for file in files {
                let path = file.path();
                if path.is_dir() {
                    continue;
                }
                let Some(stem) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                    continue;
                };
                let ext = path
                    .extension()
                    .map(|e| e.to_string_lossy().to_ascii_lowercase());
                if ext.as_deref() != Some("wav") {
                    return Err(PromptError::Format {
                        path,
                        reason: "not a .wav file; prompts must be 16-bit PCM WAV (convert with \
                                 `sox in.mp3 -b 16 out.wav`)"
                            .into(),
                    });
                }
                let (pcm, rate) = read_wav(&path)?;
                let prompt = Prompt::from_pcm(&lang_name, &stem, &pcm, rate)?;
                lib.insert(prompt);
            }
        }
        Ok(lib)
    }

    /// A library from WAV files held in memory: `(language, name, bytes)`, each checked as
    /// [`PromptLibrary::load`] checks files; `origin` names where they came from in errors.
    pub fn from_wavs<'a>(
        origin: &Path,
        files: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8])>,
    ) -> Result<PromptLibrary, PromptError> {
        let mut lib = PromptLibrary::empty()?;
        for (lang, name, bytes) in files {
            let path = origin.join(lang).join(format!("{name}.wav"));
            let (pcm, rate) = read_wav_bytes(&path, bytes)?;
            lib.insert(Prompt::from_pcm(lang, name, &pcm, rate)?);
        }
        Ok(lib)
    }

    pub fn insert(&mut self, prompt: Prompt) {
        self.prompts
            .insert((prompt.lang.clone(), prompt.name.clone()), Arc::new(prompt));
    }

    pub fn get(&self, lang: &str, name: &str) -> Option<Arc<Prompt>> {
        self.prompts
            .get(&(lang.to_string(), name.to_string()))
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Prompt>> {
        self.prompts.values()
    }
}

/// Reads a 16-bit PCM WAV (mono, or stereo mixed down) and returns samples and rate.
pub fn read_wav(path: &Path) -> Result<(Vec<i16>, u32), PromptError> {
    let reader = hound::WavReader::open(path).map_err(|e| match e {
        hound::Error::IoError(source) => PromptError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => PromptError::Format {
            path: path.to_path_buf(),
            reason: format!("not a readable WAV file ({other})"),
        },
    })?;
    decode_wav(path, reader)
}

/// [`read_wav`] of a WAV file held in memory; `path` names it in errors.
pub fn read_wav_bytes(path: &Path, bytes: &[u8]) -> Result<(Vec<i16>, u32), PromptError> {
    let reader =
        hound::WavReader::new(std::io::Cursor::new(bytes)).map_err(|e| PromptError::Format {
            path: path.to_path_buf(),
            reason: format!("not a readable WAV file ({e})"),
        })?;
    decode_wav(path, reader)
}

fn decode_wav<R: std::io::Read>(
    path: &Path,
    reader: hound::WavReader<R>,
) -> Result<(Vec<i16>, u32), PromptError> {
    let format = |reason: String| PromptError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(format(format!(
            "{} {}-bit samples; prompts must be 16-bit PCM",
            if spec.sample_format == hound::SampleFormat::Float {
                "float"
            } else {
                "integer"
            },
            spec.bits_per_sample
        )));
    }
    if !(1..=2).contains(&spec.channels) {
        return Err(format(format!(
            "{} channels; prompts must be mono or stereo",
            spec.channels
        )));
    }
    if !(8000..=96000).contains(&spec.sample_rate) {
        return Err(format(format!(
            "sample rate {} Hz is outside 8000-96000 Hz",
            spec.sample_rate
        )));
    }
    let samples: Vec<i16> = reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .map_err(|e| format(format!("truncated or corrupt audio data ({e})")))?;
    let pcm = if spec.channels == 2 {
        samples
            .chunks_exact(2)
            .map(|lr| ((lr[0] as i32 + lr[1] as i32) / 2) as i16)
            .collect()
    } else {
        samples
    };
    if pcm.is_empty() {
        return Err(format("contains no audio".into()));
    }
    Ok((pcm, spec.sample_rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, rate: u32, channels: u16, bits: u16, samples: &[i32]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for &s in samples {
            if bits == 16 {
                w.write_sample(s as i16).unwrap();
            } else {
                w.write_sample(s).unwrap();
            }
        }
        w.finalize().unwrap();
    }

    fn tone(rate: u32, ms: u32) -> Vec<i32> {
        (0..rate * ms / 1000)
            .map(|i| {
                ((2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin() * 8000.0)
                    as i32
            })
            .collect()
    }

    #[test]
    fn loads_mono_and_stereo_at_any_rate_into_every_codec() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("en")).unwrap();
        write_wav(
            &dir.path().join("en/hello.wav"),
            22050,
            1,
            16,
            &tone(22050, 1000),
        );
        let stereo: Vec<i32> = tone(44100, 500).into_iter().flat_map(|s| [s, s]).collect();
        write_wav(&dir.path().join("en/bye.wav"), 44100, 2, 16, &stereo);
        let lib = PromptLibrary::load(dir.path()).unwrap();
        let hello = lib.get("en", "hello").unwrap();
        assert_eq!(hello.duration_ms(), 1000);
        assert_eq!(hello.frames(Codec::Pcmu).len(), 50);
        assert_eq!(hello.frames(Codec::Pcma).frame(0).unwrap().len(), 160);
        assert_eq!(hello.frames(Codec::Opus).len(), 50);
        let bye = lib.get("en", "bye").unwrap();
        assert_eq!(bye.duration_ms(), 500);
        assert_eq!(bye.pcm_8k.len(), 4000);
        // The µ-law frames decode back to the tone.
        let mut pcm = Vec::new();
        g711::decode_ulaw(hello.frames(Codec::Pcmu).frame(10).unwrap(), &mut pcm);
        let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((7000..9000).contains(&peak), "peak {peak}");
    }

    #[test]
    fn wrong_formats_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("en")).unwrap();
        write_wav(
            &dir.path().join("en/loud.wav"),
            8000,
            1,
            24,
            &tone(8000, 100),
        );
        let err = PromptLibrary::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("loud.wav") && err.contains("24-bit"), "{err}");

        std::fs::remove_file(dir.path().join("en/loud.wav")).unwrap();
        std::fs::write(dir.path().join("en/song.mp3"), b"ID3").unwrap();
        let err = PromptLibrary::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("song.mp3") && err.contains("not a .wav"),
            "{err}"
        );

        std::fs::remove_file(dir.path().join("en/song.mp3")).unwrap();
        std::fs::write(dir.path().join("en/broken.wav"), b"RIFF\x10\0\0\0WAVEjunk").unwrap();
        let err = PromptLibrary::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("broken.wav"), "{err}");
    }
}
