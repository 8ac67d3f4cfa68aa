//! Text to speech for flows: a [`Tts`] engine (espeak-ng embedded, or an HTTP engine for real
//! voices), a Japanese reading step, SSML, and a cache of rendered prompts by (voice, text).
//!
//! Rendered speech becomes an ordinary [`Prompt`] (encoded once per codec, frames shared), so
//! a cached sentence costs a call exactly what a WAV prompt costs. Static texts are rendered
//! ahead at start ([`Speech::warm`]); only texts built from attributes are rendered mid-call.

pub mod espeak;
pub mod http;
pub mod reading;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

use super::interpreter::Audio;
use super::ssml::{self, Piece};
use super::voices::{Voice, voice_for_language};
use crate::media::prompt::Prompt;
use crate::media::resample;

/// The rate all speech is assembled at before encoding.
const RATE: u32 = 16000;
/// Dynamic texts (with attribute values) kept at most; static texts are always kept.
const DYNAMIC_CAP: usize = 1024;

#[derive(Debug, thiserror::Error, Clone)]
pub enum TtsError {
    #[error("cannot run {program}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("{engine} failed: {reason}")]
    Engine { engine: String, reason: String },
    #[error("SSML: {0}")]
    Ssml(String),
    #[error("encoding speech: {0}")]
    Encode(String),
}

/// Mono 16-bit audio.
#[derive(Debug, Clone, Default)]
pub struct Pcm {
    pub samples: Vec<i16>,
    pub rate: u32,
}

/// The voice an engine is asked for.
#[derive(Debug, Clone, Copy)]
pub struct EngineVoice<'a> {
    /// Engine voice name (`en-us+f3`; the HTTP engine's own names).
    pub name: &'a str,
    /// BCP 47 language.
    pub language: &'a str,
}

/// A speech engine: plain text in, audio out. SSML, readings and caching are done around it.
#[async_trait::async_trait]
pub trait Tts: Send + Sync {
    fn name(&self) -> &str;
    async fn speak(&self, text: &str, voice: EngineVoice<'_>, rate: f32) -> Result<Pcm, TtsError>;
}

type Key = (Arc<str>, bool, Arc<str>);
type Slot = Arc<OnceCell<Result<Arc<Prompt>, TtsError>>>;

/// Speech rendering with its cache, shared by all calls.
pub struct Speech {
    engine: Arc<dyn Tts>,
    reading: reading::Reading,
    cache: Mutex<HashMap<Key, (Slot, bool)>>,
    dynamic: Mutex<usize>,
}

impl std::fmt::Debug for Speech {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Speech({})", self.engine.name())
    }
}

impl Speech {
    pub fn new(engine: Arc<dyn Tts>, reading: reading::Reading) -> Speech {
        Speech {
            engine,
            reading,
            cache: Mutex::new(HashMap::new()),
            dynamic: Mutex::new(0),
        }
    }

    fn slot(&self, voice: &Voice, text: &Arc<str>, ssml: bool, pinned: bool) -> Slot {
        let key = (voice.name.clone(), ssml, text.clone());
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((slot, _)) = cache.get(&key) {
            return slot.clone();
        }
        if !pinned {
            let mut n = self.dynamic.lock().unwrap_or_else(|p| p.into_inner());
            if *n >= DYNAMIC_CAP {
                // Texts with attribute values rarely repeat; start over rather than track age.
                cache.retain(|_, (_, pinned)| *pinned);
                *n = 0;
            }
            *n += 1;
        }
        let slot: Slot = Arc::new(OnceCell::new());
        cache.insert(key, (slot.clone(), pinned));
        slot
    }

    /// The rendered prompt when it is ready (no waiting).
    pub fn cached(&self, voice: &Voice, text: &Arc<str>, ssml: bool) -> Option<Arc<Prompt>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (slot, _) = cache.get(&(voice.name.clone(), ssml, text.clone()))?;
        slot.get().and_then(|r| r.as_ref().ok().cloned())
    }

    /// A play's audio as prompts, when everything in it is ready now (prompts, cached speech).
    pub fn ready(&self, audio: &[Audio]) -> Option<Vec<Arc<Prompt>>> {
        audio
            .iter()
            .map(|a| match a {
                Audio::Prompt(p) => Some(p.clone()),
                Audio::Speech { voice, text, ssml } => self.cached(voice, text, *ssml),
            })
            .collect()
    }

    /// A play's audio as prompts, speech rendered as needed. A sentence that cannot be
    /// rendered is left out (and logged): the flow goes on without it.
    pub async fn prompts(&self, audio: Vec<Audio>) -> Vec<Arc<Prompt>> {
        let mut prompts = Vec::with_capacity(audio.len());
        for a in audio {
            match a {
                Audio::Prompt(p) => prompts.push(p),
                Audio::Speech { voice, text, ssml } => match self.render(&voice, &text, ssml).await
                {
                    Ok(p) => prompts.push(p),
                    Err(e) => tracing::warn!(error = %e, "speech synthesis failed"),
                },
            }
        }
        prompts
    }

    /// Renders (or finds) `text` in `voice`. Concurrent requests for the same text share one
    /// rendering.
    pub async fn render(
        &self,
        voice: &Arc<Voice>,
        text: &Arc<str>,
        ssml: bool,
    ) -> Result<Arc<Prompt>, TtsError> {
        self.render_inner(voice, text, ssml, false).await
    }

    async fn render_inner(
        &self,
        voice: &Arc<Voice>,
        text: &Arc<str>,
        ssml: bool,
        pinned: bool,
    ) -> Result<Arc<Prompt>, TtsError> {
        let slot = self.slot(voice, text, ssml, pinned);
        slot.get_or_init(|| self.synthesize(voice, text, ssml))
            .await
            .clone()
    }

    /// Renders static texts ahead, a few at a time; returns the failures.
    pub async fn warm(
        &self,
        items: Vec<(Arc<Voice>, Arc<str>, bool)>,
        parallel: usize,
    ) -> Vec<(Arc<str>, TtsError)> {
        use futures_util::StreamExt;
        futures_util::stream::iter(items)
            .map(|(v, t, s)| async move {
                let r = self.render_inner(&v, &t, s, true).await;
                r.err().map(|e| (t, e))
            })
            .buffer_unordered(parallel.max(1))
            .filter_map(|x| async move { x })
            .collect()
            .await
    }

    async fn synthesize(
        &self,
        voice: &Arc<Voice>,
        text: &str,
        ssml: bool,
    ) -> Result<Arc<Prompt>, TtsError> {
        let pieces = if ssml {
            ssml::parse(text).map_err(|e| TtsError::Ssml(e.to_string()))?
        } else {
            vec![Piece::Text {
                text: text.to_string(),
                lang: None,
                rate: 1.0,
            }]
        };
        let mut out: Vec<i16> = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Pause(d) => out.extend(std::iter::repeat_n(0i16, samples(d))),
                Piece::Text { text, lang, rate } => {
                    let (name, language) = match lang.as_deref().and_then(voice_for_language) {
                        Some((l, e)) if !l.eq_ignore_ascii_case(&voice.language) => (e, l),
                        _ => (&*voice.engine, &*voice.language),
                    };
                    let text = if language.starts_with("ja") {
                        self.reading.pronounce(&text).await
                    } else {
                        text
                    };
                    let pcm = self
                        .engine
                        .speak(&text, EngineVoice { name, language }, rate)
                        .await?;
                    if pcm.samples.is_empty() {
                        continue;
                    }
                    let f = resample::to_f32(&pcm.samples);
                    let r = resample::resample(&f, pcm.rate, RATE)
                        .map_err(|e| TtsError::Encode(e.to_string()))?;
                    out.extend(resample::to_i16(&r));
                }
            }
        }
        if out.is_empty() {
            out.resize(samples(Duration::from_millis(100)), 0);
        }
        let lang = voice.language.to_string();
        // Encoding (resampling, Opus) is CPU work: keep it off the async workers.
        tokio::task::spawn_blocking(move || Prompt::from_pcm(&lang, "tts", &out, RATE))
            .await
            .map_err(|e| TtsError::Encode(e.to_string()))?
            .map(Arc::new)
            .map_err(|e| TtsError::Encode(e.to_string()))
    }
}

fn samples(d: Duration) -> usize {
    (d.as_millis() as usize) * RATE as usize / 1000
}

/// Reads a RIFF/WAVE body (16-bit PCM, mono or stereo) as engines write it; tolerant of the
/// unknown sizes a streamed header carries.
pub fn parse_wav(bytes: &[u8]) -> Result<Pcm, String> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a WAV file".into());
    }
    let mut i = 12;
    let mut rate = 0u32;
    let mut channels = 1u16;
    let mut bits = 16u16;
    while i + 8 <= bytes.len() {
        let id = &bytes[i..i + 4];
        let len =
            u32::from_le_bytes([bytes[i + 4], bytes[i + 5], bytes[i + 6], bytes[i + 7]]) as usize;
        let body = i + 8;
        if id == b"fmt " && body + 16 <= bytes.len() {
            let format = u16::from_le_bytes([bytes[body], bytes[body + 1]]);
            channels = u16::from_le_bytes([bytes[body + 2], bytes[body + 3]]).max(1);
            rate = u32::from_le_bytes([
                bytes[body + 4],
                bytes[body + 5],
                bytes[body + 6],
                bytes[body + 7],
            ]);
            bits = u16::from_le_bytes([bytes[body + 14], bytes[body + 15]]);
            if format != 1 || bits != 16 {
                return Err(format!(
                    "WAV format {format} with {bits}-bit samples; need 16-bit PCM"
                ));
            }
        } else if id == b"data" {
            let end = body.saturating_add(len).min(bytes.len());
            let data = &bytes[body..end - (end - body) % 2];
            let mono: Vec<i16> = if channels == 2 {
                data.chunks_exact(4)
                    .map(|c| {
                        let l = i16::from_le_bytes([c[0], c[1]]) as i32;
                        let r = i16::from_le_bytes([c[2], c[3]]) as i32;
                        ((l + r) / 2) as i16
                    })
                    .collect()
            } else {
                data.chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect()
            };
            if !(8000..=96000).contains(&rate) || bits != 16 {
                return Err(format!("WAV sample rate {rate} Hz"));
            }
            return Ok(Pcm {
                samples: mono,
                rate,
            });
        }
        i = body.saturating_add(len + len % 2);
    }
    Err("WAV file without a data chunk".into())
}

/// Writes mono 16-bit PCM as a WAV body (tests, and HTTP engines in tests).
pub fn write_wav(pcm: &[i16], rate: u32) -> Vec<u8> {
    let data_len = (pcm.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + pcm.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in pcm {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An engine that "speaks" a tone whose length is the text length, and counts calls.
    struct Fake(AtomicUsize, Mutex<Vec<(String, String)>>);

    #[async_trait::async_trait]
    impl Tts for Fake {
        fn name(&self) -> &str {
            "fake"
        }
        async fn speak(&self, text: &str, v: EngineVoice<'_>, _rate: f32) -> Result<Pcm, TtsError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.1
                .lock()
                .unwrap()
                .push((text.to_string(), v.name.to_string()));
            Ok(Pcm {
                samples: vec![1000; 80 * text.chars().count()],
                rate: 8000,
            })
        }
    }

    fn voice(name: &str, lang: &str, engine: &str) -> Arc<Voice> {
        Arc::new(Voice {
            name: name.into(),
            language: lang.into(),
            engine: engine.into(),
        })
    }

    #[tokio::test]
    async fn renders_once_per_voice_and_text_and_switches_language_in_ssml() {
        let fake = Arc::new(Fake(AtomicUsize::new(0), Mutex::new(Vec::new())));
        let speech = Speech::new(fake.clone(), reading::Reading::Off);
        let joanna = voice("Joanna", "en-US", "en-us+f3");
        let text: Arc<str> = "Hello there".into();
        assert!(speech.cached(&joanna, &text, false).is_none());
        let a = speech.render(&joanna, &text, false).await.unwrap();
        let b = speech.render(&joanna, &text, false).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one rendering, shared");
        assert_eq!(fake.0.load(Ordering::SeqCst), 1);
        assert!(speech.cached(&joanna, &text, false).is_some());
        assert!(
            (100..=140).contains(&a.duration_ms()),
            "10 ms per character: {}",
            a.duration_ms()
        );

        let mizuki = voice("Mizuki", "ja-JP", "ja+f3");
        let ssml: Arc<str> =
            "<speak>はい<break time=\"1s\"/><lang xml:lang=\"en-US\">Press two</lang></speak>"
                .into();
        let p = speech.render(&mizuki, &ssml, true).await.unwrap();
        assert!(
            (1100..=1140).contains(&p.duration_ms()),
            "{}",
            p.duration_ms()
        );
        let calls = fake.1.lock().unwrap().clone();
        assert_eq!(calls[1], ("はい".to_string(), "ja+f3".to_string()));
        assert_eq!(
            calls[2].1, "en-us+f3",
            "<lang> switches to an English voice"
        );

        let failures = speech
            .warm(vec![(joanna.clone(), "Goodbye".into(), false)], 2)
            .await;
        assert!(failures.is_empty());
        assert!(speech.cached(&joanna, &"Goodbye".into(), false).is_some());
    }

    #[test]
    fn wav_round_trip_and_streamed_sizes() {
        let pcm: Vec<i16> = (0..100).map(|i| i * 10).collect();
        let mut wav = write_wav(&pcm, 22050);
        let back = parse_wav(&wav).unwrap();
        assert_eq!((back.samples, back.rate), (pcm.clone(), 22050));
        // espeak-ng on a pipe writes 0x7fffffff-ish sizes.
        wav[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_wav(&wav).unwrap().samples.len(), 100);
        assert!(parse_wav(b"ID3junk").is_err());
    }
}
