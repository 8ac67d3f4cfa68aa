//! Everything the call tasks need to run flows, built once from the configuration: the
//! checked catalog, the resource map, hours, queues, voices, speech, Lambda endpoints, and
//! which dialed number runs which flow.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::catalog::{Catalog, CatalogError, read_folder};
use super::diagnostic::Diagnostic;
use super::hours::{self, HoursError};
use super::http::HttpClient;
use super::interpreter::Env;
use super::lambda::Lambdas;
use super::program::{Flow, Kind, Message};
use super::queues::QueueRegistry;
use super::resources::Resources;
use super::tts::{self, Speech, Tts};
use super::validate::Options;
use super::voices::{Voice, Voices};
use crate::config::Config;
use crate::media::prompt::PromptLibrary;

#[derive(Debug, thiserror::Error)]
pub enum FlowStartError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Hours(#[from] HoursError),
    #[error("flows.{what}: flow `{flow}` is not loaded (flows in {dir}: {known})")]
    UnknownFlow {
        what: String,
        flow: String,
        dir: String,
        known: String,
    },
    #[error("queues.{queue}.hold_flow: flow `{flow}` is not loaded")]
    UnknownHoldFlow { queue: String, flow: String },
    #[error("routing.callback_flow: flow `{0}` is not loaded")]
    UnknownCallbackFlow(String),
}

pub struct FlowEngine {
    pub env: Arc<Env>,
    pub speech: Arc<Speech>,
    pub lambdas: Lambdas,
    pub queues: QueueRegistry,
    pub streaming_url: Option<String>,
    numbers: HashMap<String, Arc<Flow>>,
    default: Option<Arc<Flow>>,
    /// Load warnings (unreachable actions, references resolved at run time, ...).
    pub warnings: Vec<Diagnostic>,
}

/// The resource map from configuration (flows are added as they load).
pub fn resources(config: &Config, prompts: Option<Arc<PromptLibrary>>) -> Resources {
    Resources {
        map: config
            .flows
            .resources
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        flows: HashSet::new(),
        queues: config.queues.keys().cloned().collect(),
        hours: config.hours.keys().cloned().collect(),
        lambdas: config
            .lambda
            .keys()
            .cloned()
            .chain([
                super::lambda::PATIENT_LOOKUP.to_string(),
                super::lambda::ROOM_JOIN.to_string(),
            ])
            .collect(),
        prompts,
        prompt_language: config.prompts.language.clone(),
    }
}

/// `careline flow validate`: checks `files` together with every flow in flows.dir (flows
/// refer to each other), reporting on `files` only. Returns every diagnostic.
pub fn validate_files(
    config: &Config,
    prompts: Option<Arc<PromptLibrary>>,
    files: &[PathBuf],
) -> Vec<Diagnostic> {
    let mut res = resources(config, prompts);
    // Names of the flows in flows.dir, so references to them resolve.
    if let Ok((sources, _)) = read_folder(&config.flows.dir) {
        for s in sources {
            res.flows.insert(s.name.clone());
            if let Some(stem) = std::path::Path::new(&s.file).file_stem() {
                res.flows.insert(stem.to_string_lossy().into_owned());
            }
        }
    }
    let opts = Options {
        strict: config.flows.strict,
    };
    let (sources, mut diags) = super::catalog::read_all(files);
    for s in &sources {
        res.flows.insert(s.name.clone());
    }
    for s in sources {
        diags.extend(super::validate::check(s, &res, opts).1);
    }
    diags
}

impl FlowEngine {
    pub fn build(
        config: &Config,
        prompts: Arc<PromptLibrary>,
        http: HttpClient,
    ) -> Result<FlowEngine, FlowStartError> {
        let mut res = resources(config, Some(prompts));
        let (catalog, warnings) = Catalog::check(
            read_folder(&config.flows.dir)?,
            &mut res,
            Options {
                strict: config.flows.strict,
            },
        )?;
        let known = || {
            catalog
                .iter()
                .map(|f| f.name.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let find = |what: String, name: &str| {
            catalog
                .get(name)
                .cloned()
                .ok_or_else(|| FlowStartError::UnknownFlow {
                    what,
                    flow: name.to_string(),
                    dir: crate::shipped::folder_name(&config.flows.dir, crate::shipped::FLOWS_DIR),
                    known: known(),
                })
        };
        let default = if config.flows.default.is_empty() {
            None
        } else {
            Some(find("default".into(), &config.flows.default)?)
        };
        // The shipped mapping (200 -> medical-triage, the triage queues' hold flow) is skipped
        // with a warning when flows.dir does not hold the shipped flows; anything an operator
        // configured must resolve.
        let shipped = Config::default();
        let mut skipped = Vec::new();
        let mut numbers = HashMap::new();
        for (number, name) in &config.flows.numbers {
            if catalog.get(name).is_none() && shipped.flows.numbers.get(number) == Some(name) {
                skipped.push(format!("flows.numbers.{number} = {name}"));
                continue;
            }
            numbers.insert(number.clone(), find(format!("numbers.{number}"), name)?);
        }
        let mut queues = HashMap::new();
        for (name, q) in &config.queues {
            let mut hold = q.hold_flow.clone();
            if let Some(f) = &q.hold_flow
                && catalog.get(f).is_none()
            {
                if shipped.queues.get(name) != Some(q) {
                    return Err(FlowStartError::UnknownHoldFlow {
                        queue: name.clone(),
                        flow: f.clone(),
                    });
                }
                skipped.push(format!("queues.{name}.hold_flow = {f}"));
                hold = None;
            }
            queues.insert(name.clone(), (hold, q.hours.clone()));
        }
        let callback_flow = &config.routing.callback_flow;
        if catalog.get(callback_flow).is_none() {
            if *callback_flow != shipped.routing.callback_flow {
                return Err(FlowStartError::UnknownCallbackFlow(callback_flow.clone()));
            }
            // Callbacks then fail at their call (`not_sent`), each with its own log line.
            skipped.push(format!("routing.callback_flow = {callback_flow}"));
        }
        let mut warnings = warnings;
        for s in skipped {
            warnings.push(Diagnostic::warning(
                &crate::shipped::folder_name(&config.flows.dir, crate::shipped::FLOWS_DIR),
                format!("shipped setting {s} skipped: that flow is not in this folder"),
            ));
        }
        let overrides = config
            .tts
            .voices
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let engine: Arc<dyn Tts> = match (config.tts.engine.as_str(), &config.tts.http_url) {
            ("http", Some(url)) => Arc::new(tts::http::HttpTts::new(
                url.clone(),
                Duration::from_millis(config.tts.http_timeout_ms),
                http.clone(),
            )),
            _ => Arc::new(tts::espeak::Espeak::new(config.tts.espeak_program.clone())),
        };
        let reading = if config.tts.mecab_program.is_empty() {
            tts::reading::Reading::Off
        } else {
            tts::reading::Reading::mecab(config.tts.mecab_program.clone())
        };
        let env = Env {
            hours: hours::compile_all(&config.hours)?,
            queues,
            voices: Voices::new(&config.tts.default_voice, &overrides),
            log_all: config.flows.logging,
            catalog,
            resources: res,
        };
        Ok(FlowEngine {
            env: Arc::new(env),
            speech: Arc::new(Speech::new(engine, reading)),
            lambdas: Lambdas::new(&config.lambda, http),
            queues: QueueRegistry::new(&config.queues),
            streaming_url: config.media_streaming.url.clone(),
            numbers,
            default,
            warnings,
        })
    }

    /// The flow for a dialed number (Request-URI user): its mapping, else the default.
    pub fn flow_for(&self, dialed: &str) -> Option<Arc<Flow>> {
        self.numbers
            .get(dialed)
            .or_else(|| {
                // Numbers may be dialed with or without a leading +.
                self.numbers.get(dialed.trim_start_matches('+'))
            })
            .or(self.default.as_ref())
            .cloned()
    }

    /// Every literal Text/SSML of every flow, with the voices it may be spoken in: the
    /// default voice and those flows switch to, matched by script (Japanese text in Japanese
    /// voices, other text in the others).
    pub fn static_speech(&self) -> Vec<(Arc<Voice>, Arc<str>, bool)> {
        let env = &self.env;
        let mut voices: Vec<Arc<Voice>> = vec![env.voices.default.clone()];
        for flow in env.catalog.iter() {
            for a in &flow.actions {
                if let Kind::SetVoice(t) = &a.kind
                    && t.is_static()
                    && let Some(v) = env.voices.get(t.raw())
                    && !voices.contains(&v)
                {
                    voices.push(v);
                }
            }
        }
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for flow in env.catalog.iter() {
            for a in &flow.actions {
                let messages: Vec<&Message> = match &a.kind {
                    Kind::Message(m) => vec![m],
                    Kind::MessageIteratively { messages, .. } => messages.iter().collect(),
                    Kind::GetInput {
                        message: Some(m), ..
                    } => vec![m],
                    _ => continue,
                };
                for m in messages {
                    let (t, ssml) = match m {
                        Message::Text(t) => (t, false),
                        Message::Ssml(t) => (t, true),
                        Message::Prompt(_) => continue,
                    };
                    if !t.is_static() {
                        continue;
                    }
                    let japanese = is_japanese(t.raw());
                    let mut matching: Vec<&Arc<Voice>> = voices
                        .iter()
                        .filter(|v| v.is_japanese() == japanese)
                        .collect();
                    if matching.is_empty() {
                        matching.push(&env.voices.default);
                    }
                    for v in matching {
                        if seen.insert((v.name.clone(), t.raw().clone(), ssml)) {
                            out.push((v.clone(), t.raw().clone(), ssml));
                        }
                    }
                }
            }
        }
        out
    }
}

/// Kana or CJK ideographs in the text.
pub fn is_japanese(text: &str) -> bool {
    text.chars().any(|c| {
        matches!(c as u32,
            0x3040..=0x30FF   // hiragana, katakana
            | 0x4E00..=0x9FFF // CJK unified ideographs
            | 0xFF66..=0xFF9F) // half-width katakana
    })
}
