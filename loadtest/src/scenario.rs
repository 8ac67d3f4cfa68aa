//! Scenario files: what each synthetic caller does and expects, in TOML.
//!
//! ```toml
//! name = "demo-menu"
//! service = "100"              # the number dialed
//! codec = "pcmu"               # pcmu | pcma | opus
//! telephone_event = true       # offer RFC 4733 telephone-event
//! language = "en"              # prompts/<language>/ holds what the caller expects to hear
//! audio = "../audio/caller.wav" # caller speech, looped; relative to this file
//!
//! [speech.english-menu]        # a prompt a flow speaks: rendered here by Careline's own
//! voice = "Joanna"             # text-to-speech (a Connect voice name), `text` or `ssml`
//! text = "If this is an emergency, press 9."
//!
//! [[steps]]
//! expect_prompt = "welcome"    # the next prompt heard must be this one, heard to its end
//! [[steps]]
//! press = "1"                  # one or more keys
//! via = "rfc4733"              # rfc4733 | inband | info
//! [[steps]]
//! expect_prompt = "digit-1"
//! [[steps]]
//! stay_ms = 5000               # keep talking
//! [[steps]]
//! expect_silence_ms = 1000     # wait until the server has been silent this long
//! [[steps]]
//! expect_hangup = true         # the server sends BYE
//! # or: hangup = true          # the caller sends BYE
//! ```
//!
//! Each step is one table with exactly one action key; `timeout_ms` bounds the waiting steps.
//! A long call is written once and repeated (repeats do not nest; failure reports number the
//! steps as they ran, repeats unrolled):
//!
//! ```toml
//! [[steps]]
//! repeat = 25                  # the steps below, 25 times over
//! steps = [{ press = "1" }, { expect_prompt = "digit-1" }, { stay_ms = 6000 }]
//! ```
//! Prompts are named as files under `prompts/<language>/` (flows name theirs the same way),
//! so a scenario for a contact flow is written the same way as for the demo menu.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use careline::media::codec::Codec;
use careline::media::dtmf::Digit;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Toml {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path}: step {step}: {reason}")]
    Step {
        path: PathBuf,
        step: usize,
        reason: String,
    },
}

/// How a key press is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// RFC 4733 telephone-events in the RTP stream.
    Rfc4733,
    /// DTMF tones in the audio (ITU-T Q.23).
    Inband,
    /// SIP INFO with `application/dtmf-relay`.
    Info,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    ExpectPrompt {
        name: String,
        allow_partial: bool,
        timeout_ms: u64,
    },
    ExpectSilence {
        ms: u64,
        timeout_ms: u64,
    },
    Press {
        digits: Vec<Digit>,
        via: Via,
        duration_ms: u32,
        gap_ms: u32,
    },
    Stay {
        ms: u64,
    },
    ExpectHangup {
        timeout_ms: u64,
    },
    Hangup,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub service: String,
    pub codec: Codec,
    pub telephone_event: bool,
    pub language: String,
    pub audio: Option<PathBuf>,
    /// Prompts a flow speaks (text-to-speech), by the name steps expect them under.
    pub speech: BTreeMap<String, SpeechPrompt>,
    pub steps: Vec<Step>,
}

/// A spoken prompt: what a flow's MessageParticipant / GetParticipantInput says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeechPrompt {
    /// The Connect voice the flow speaks with (`Joanna`, `Mizuki`, ...).
    #[serde(default = "default_voice")]
    pub voice: String,
    pub text: Option<String>,
    pub ssml: Option<String>,
}

fn default_voice() -> String {
    "Joanna".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    #[serde(default = "default_service")]
    service: String,
    #[serde(default = "default_codec")]
    codec: String,
    #[serde(default = "yes")]
    telephone_event: bool,
    #[serde(default = "default_language")]
    language: String,
    audio: Option<PathBuf>,
    #[serde(default)]
    speech: BTreeMap<String, SpeechPrompt>,
    steps: Vec<RawStep>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStep {
    expect_prompt: Option<String>,
    allow_partial: Option<bool>,
    expect_silence_ms: Option<u64>,
    press: Option<String>,
    via: Option<Via>,
    duration_ms: Option<u32>,
    gap_ms: Option<u32>,
    stay_ms: Option<u64>,
    expect_hangup: Option<bool>,
    hangup: Option<bool>,
    timeout_ms: Option<u64>,
    repeat: Option<u32>,
    steps: Option<Vec<RawStep>>,
}

/// At most this many steps once repeats are unrolled (a typo in `repeat` should not eat the
/// generator's memory).
const MAX_STEPS: usize = 100_000;

fn default_service() -> String {
    "100".into()
}
fn default_codec() -> String {
    "pcmu".into()
}
fn default_language() -> String {
    "en".into()
}
fn yes() -> bool {
    true
}

/// Waiting for a prompt: how long the longest prompt may take to start and play.
const DEFAULT_PROMPT_TIMEOUT_MS: u64 = 20_000;
const DEFAULT_TIMEOUT_MS: u64 = 15_000;

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Scenario::parse(&text, path)
    }

    /// Parses scenario text; `path` names the file in errors and anchors `audio`.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let raw: RawScenario = toml::from_str(text).map_err(|source| ScenarioError::Toml {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let invalid = |reason: String| ScenarioError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let codec = Codec::from_name(&raw.codec)
            .ok_or_else(|| invalid(format!("codec `{}` is not pcmu, pcma or opus", raw.codec)))?;
        if raw.steps.is_empty() {
            return Err(invalid("no [[steps]]".into()));
        }
        for (name, sp) in &raw.speech {
            if sp.text.is_some() == sp.ssml.is_some() {
                return Err(invalid(format!(
                    "[speech.{name}] needs exactly one of `text` and `ssml`"
                )));
            }
        }
        let mut steps = Vec::new();
        for (i, s) in raw.steps.into_iter().enumerate() {
            let step_err = |reason: String| ScenarioError::Step {
                path: path.to_path_buf(),
                step: i + 1,
                reason,
            };
            if s.repeat.is_none() && s.steps.is_none() {
                steps.push(step(s, raw.telephone_event).map_err(step_err)?);
                continue;
            }
            let (Some(times), Some(inner)) = (s.repeat, s.steps) else {
                return Err(step_err(
                    "a repeat needs both `repeat = N` and `steps = [...]`".into(),
                ));
            };
            if times == 0 || inner.is_empty() {
                return Err(step_err(
                    "a repeat needs `repeat` of 1 or more and at least one step".into(),
                ));
            }
            let mut body = Vec::new();
            for (j, r) in inner.into_iter().enumerate() {
                let n = j + 1;
                if r.repeat.is_some() || r.steps.is_some() {
                    return Err(step_err(format!("repeated step {n}: repeats do not nest")));
                }
                let one = step(r, raw.telephone_event)
                    .map_err(|reason| step_err(format!("repeated step {n}: {reason}")))?;
                body.push(one);
            }
            if steps.len() + body.len() * times as usize > MAX_STEPS {
                return Err(step_err(format!("over {MAX_STEPS} steps once repeated")));
            }
            for _ in 0..times {
                steps.extend(body.iter().cloned());
            }
        }
        let audio = raw.audio.map(|a| match path.parent() {
            Some(dir) if a.is_relative() => dir.join(a),
            _ => a,
        });
        Ok(Scenario {
            name: raw.name.unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "scenario".into())
            }),
            service: raw.service,
            codec,
            telephone_event: raw.telephone_event,
            language: raw.language,
            audio,
            speech: raw.speech,
            steps,
        })
    }

    /// The prompt names the scenario waits for.
    pub fn prompts(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().filter_map(|s| match s {
            Step::ExpectPrompt { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }
}

/// One step of a scenario (not a repeat); the error is the reason, for the caller to place.
fn step(s: RawStep, telephone_event: bool) -> Result<Step, String> {
    let actions = [
        s.expect_prompt.is_some(),
        s.expect_silence_ms.is_some(),
        s.press.is_some(),
        s.stay_ms.is_some(),
        s.expect_hangup == Some(true),
        s.hangup == Some(true),
    ];
    if actions.iter().filter(|a| **a).count() != 1 {
        return Err(
            "needs exactly one of expect_prompt, expect_silence_ms, press, stay_ms, \
                    expect_hangup, hangup"
                .into(),
        );
    }
    let step = if let Some(name) = s.expect_prompt {
        Step::ExpectPrompt {
            name,
            allow_partial: s.allow_partial.unwrap_or(false),
            timeout_ms: s.timeout_ms.unwrap_or(DEFAULT_PROMPT_TIMEOUT_MS),
        }
    } else if let Some(ms) = s.expect_silence_ms {
        Step::ExpectSilence {
            ms,
            timeout_ms: s.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS + ms),
        }
    } else if let Some(keys) = s.press {
        let digits: Vec<Digit> = keys
            .chars()
            .map(|c| {
                Digit::from_char(c).ok_or_else(|| format!("`{c}` is not a DTMF key (0-9 * # A-D)"))
            })
            .collect::<Result<_, _>>()?;
        if digits.is_empty() {
            return Err("press needs at least one key".into());
        }
        let via = s.via.unwrap_or(Via::Rfc4733);
        if via == Via::Rfc4733 && !telephone_event {
            return Err("via = \"rfc4733\" needs telephone_event = true".into());
        }
        let duration_ms = s.duration_ms.unwrap_or(100);
        if !(40..=2000).contains(&duration_ms) {
            return Err("duration_ms must be 40-2000".into());
        }
        Step::Press {
            digits,
            via,
            duration_ms: duration_ms.div_ceil(20) * 20,
            gap_ms: s.gap_ms.unwrap_or(200),
        }
    } else if let Some(ms) = s.stay_ms {
        Step::Stay { ms }
    } else if s.expect_hangup == Some(true) {
        Step::ExpectHangup {
            timeout_ms: s.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
        }
    } else {
        Step::Hangup
    };
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_scenarios_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let s = Scenario::load(&path).unwrap();
                assert!(
                    s.audio.as_ref().is_none_or(|a| a.is_file()),
                    "{path:?}: audio"
                );
                n += 1;
            }
        }
        assert!(n >= 2);
    }

    #[test]
    fn errors_name_the_file_step_and_fix() {
        let p = Path::new("x.toml");
        let e = Scenario::parse("steps = [{ press = \"1x\" }]", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.toml: step 1") && e.contains("`x`"), "{e}");
        let e = Scenario::parse("steps = [{ stay_ms = 1, hangup = true }]", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("exactly one"), "{e}");
        let e = Scenario::parse("codec = \"g729\"\nsteps = [{ hangup = true }]", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("g729"), "{e}");
        let e = Scenario::parse("telephone_event = false\nsteps = [{ press = \"1\" }]", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("telephone_event"), "{e}");
        let e = Scenario::parse("steps = [{ hangup = true, colour = 1 }]", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn a_repeat_unrolls_its_steps_in_order() {
        let s = Scenario::parse(
            "steps = [{ expect_prompt = \"welcome\" },\n\
             { repeat = 3, steps = [{ press = \"1\" }, { stay_ms = 10 }] },\n\
             { hangup = true }]",
            Path::new("s.toml"),
        )
        .unwrap();
        let kinds: Vec<&str> = s
            .steps
            .iter()
            .map(|s| match s {
                Step::ExpectPrompt { .. } => "prompt",
                Step::Press { .. } => "press",
                Step::Stay { .. } => "stay",
                Step::Hangup => "hangup",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "prompt", "press", "stay", "press", "stay", "press", "stay", "hangup"
            ]
        );
    }

    #[test]
    fn a_bad_repeat_names_its_step_and_why() {
        let p = Path::new("r.toml");
        let err = |text: &str| Scenario::parse(text, p).unwrap_err().to_string();
        let e = err("steps = [{ hangup = true }, { repeat = 2 }]");
        assert!(
            e.contains("r.toml: step 2") && e.contains("steps = [...]"),
            "{e}"
        );
        let e = err("steps = [{ repeat = 0, steps = [{ hangup = true }] }]");
        assert!(e.contains("1 or more"), "{e}");
        let e = err("steps = [{ repeat = 2, steps = [{ stay_ms = 1 }, { press = \"x\" }] }]");
        assert!(e.contains("step 1: repeated step 2: `x`"), "{e}");
        let e =
            err("steps = [{ repeat = 2, steps = [{ repeat = 2, steps = [{ hangup = true }] }] }]");
        assert!(e.contains("do not nest"), "{e}");
        let e = err("steps = [{ repeat = 4000000000, steps = [{ stay_ms = 1 }] }]");
        assert!(e.contains("steps once repeated"), "{e}");
    }

    #[test]
    fn defaults_and_rounding() {
        let s = Scenario::parse(
            "steps = [{ press = \"1#\", duration_ms = 90 }, { expect_prompt = \"goodbye\" }]",
            Path::new("dir/s.toml"),
        )
        .unwrap();
        assert_eq!(
            (s.codec, s.telephone_event, s.service.as_str()),
            (Codec::Pcmu, true, "100")
        );
        assert_eq!(
            s.steps[0],
            Step::Press {
                digits: vec![
                    Digit::from_char('1').unwrap(),
                    Digit::from_char('#').unwrap()
                ],
                via: Via::Rfc4733,
                duration_ms: 100,
                gap_ms: 200
            }
        );
        assert_eq!(s.prompts().collect::<Vec<_>>(), ["goodbye"]);
    }
}
