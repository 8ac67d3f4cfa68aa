//! An HTTP speech engine, for real voices behind any server that keeps this contract:
//!
//! `POST <url>` with `Content-Type: application/json` and the body
//! `{"text": "plain text", "voice": "<engine voice>", "language": "ja-JP", "rate": 1.0}`;
//! the answer is `200` with a 16-bit PCM WAV body (mono or stereo, 8-96 kHz). Anything else is
//! an error (the sentence is skipped and logged; the call goes on).

use std::time::Duration;

use serde_json::json;

use super::{EngineVoice, Pcm, Tts, TtsError, parse_wav};
use crate::flow::http::HttpClient;

/// Longest WAV accepted (about 3 minutes at 48 kHz stereo).
const MAX_WAV: usize = 32 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct HttpTts {
    url: String,
    timeout: Duration,
    client: HttpClient,
}

impl HttpTts {
    pub fn new(url: impl Into<String>, timeout: Duration, client: HttpClient) -> HttpTts {
        HttpTts {
            url: url.into(),
            timeout,
            client,
        }
    }
}

#[async_trait::async_trait]
impl Tts for HttpTts {
    fn name(&self) -> &str {
        "http"
    }

    async fn speak(&self, text: &str, voice: EngineVoice<'_>, rate: f32) -> Result<Pcm, TtsError> {
        let engine = |reason: String| TtsError::Engine {
            engine: format!("HTTP TTS {}", self.url),
            reason,
        };
        let body =
            json!({"text": text, "voice": voice.name, "language": voice.language, "rate": rate});
        let resp = self
            .client
            .post_json(
                &self.url,
                body.to_string().into_bytes(),
                self.timeout,
                MAX_WAV,
            )
            .await
            .map_err(|e| engine(e.to_string()))?;
        if resp.status != 200 {
            return Err(engine(format!("HTTP status {}", resp.status)));
        }
        parse_wav(&resp.body).map_err(engine)
    }
}
