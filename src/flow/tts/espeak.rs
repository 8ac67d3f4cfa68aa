//! espeak-ng as the embedded engine: one short-lived process per text run, text on stdin
//! (never on the command line, so no text can become an option), WAV on stdout.

use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{EngineVoice, Pcm, Tts, TtsError, parse_wav};

/// espeak-ng's speed at rate 1.0, in words per minute (its default, 175, rushes prompts).
const BASE_WPM: f32 = 160.0;

#[derive(Debug, Clone)]
pub struct Espeak {
    program: String,
}

impl Espeak {
    pub fn new(program: impl Into<String>) -> Espeak {
        Espeak {
            program: program.into(),
        }
    }

    /// Is the program there? (Checked at start so a missing package is named once.)
    pub fn available(&self) -> bool {
        std::process::Command::new(&self.program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Default for Espeak {
    fn default() -> Self {
        Espeak::new("espeak-ng")
    }
}

#[async_trait::async_trait]
impl Tts for Espeak {
    fn name(&self) -> &str {
        "espeak-ng"
    }

    async fn speak(&self, text: &str, voice: EngineVoice<'_>, rate: f32) -> Result<Pcm, TtsError> {
        let wpm = (BASE_WPM * rate).clamp(80.0, 450.0) as u32;
        let mut child = tokio::process::Command::new(&self.program)
            .args([
                "-v",
                voice.name,
                "-s",
                &wpm.to_string(),
                "--stdin",
                "--stdout",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| TtsError::Spawn {
                program: self.program.clone(),
                reason: format!("{e} (install the Debian package espeak-ng)"),
            })?;
        let engine = |reason: String| TtsError::Engine {
            engine: "espeak-ng".into(),
            reason,
        };
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(text.as_bytes())
                .await
                .map_err(|e| engine(e.to_string()))?;
        }
        let mut wav = Vec::new();
        if let Some(mut out) = child.stdout.take() {
            out.read_to_end(&mut wav)
                .await
                .map_err(|e| engine(e.to_string()))?;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| engine(e.to_string()))?;
        if !output.status.success() {
            return Err(engine(format!(
                "exit {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        parse_wav(&wav).map_err(engine)
    }
}
