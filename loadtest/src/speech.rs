//! Spoken prompts for scenarios of contact flows: rendered with Careline's own text-to-speech
//! pipeline (espeak-ng, MeCab readings for Japanese), which is deterministic, so the caller
//! recognizes exactly the audio the server will send for the same voice and text.

use std::collections::BTreeMap;
use std::sync::Arc;

use careline::flow::tts::{Speech, espeak::Espeak, reading::Reading};
use careline::flow::voices::Voices;
use careline::media::prompt::Prompt;

use crate::scenario::SpeechPrompt;

#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    #[error("[speech.{name}]: voice `{voice}` is not a Connect voice Careline knows")]
    Voice { name: String, voice: String },
    #[error("[speech.{name}]: {reason}")]
    Render { name: String, reason: String },
    #[error("starting the text-to-speech runtime: {0}")]
    Runtime(std::io::Error),
}

/// Renders every spoken prompt, with the server's default engines (espeak-ng, mecab on PATH).
pub fn render(
    prompts: &BTreeMap<String, SpeechPrompt>,
) -> Result<Vec<(String, Arc<Prompt>)>, SpeechError> {
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SpeechError::Runtime)?;
    let speech = Speech::new(Arc::new(Espeak::default()), Reading::mecab("mecab"));
    let voices = Voices::new("Joanna", &Default::default());
    let mut out = Vec::with_capacity(prompts.len());
    for (name, p) in prompts {
        let voice = voices.get(&p.voice).ok_or_else(|| SpeechError::Voice {
            name: name.clone(),
            voice: p.voice.clone(),
        })?;
        let (text, ssml) = match (&p.text, &p.ssml) {
            (Some(t), _) => (t.as_str(), false),
            (None, Some(s)) => (s.as_str(), true),
            (None, None) => ("", false),
        };
        let prompt = runtime
            .block_on(speech.render(&voice, &text.into(), ssml))
            .map_err(|e| SpeechError::Render {
                name: name.clone(),
                reason: e.to_string(),
            })?;
        out.push((name.clone(), prompt));
    }
    Ok(out)
}
