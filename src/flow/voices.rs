//! Connect's voice names (Joanna, Mizuki, Takumi, ...) mapped to a language and an engine
//! voice, so a flow's UpdateContactTextToSpeechVoice keeps working on Careline's engines.

use std::collections::HashMap;
use std::sync::Arc;

/// A voice as the TTS engines see it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Voice {
    /// The Connect name used in flows.
    pub name: Arc<str>,
    /// BCP 47 language (`en-US`, `ja-JP`).
    pub language: Arc<str>,
    /// The engine's own voice name (espeak-ng: `en-us+f3`; HTTP engine: passed through).
    pub engine: Arc<str>,
}

impl Voice {
    pub fn is_japanese(&self) -> bool {
        self.language.starts_with("ja")
    }
}

/// (Connect name, language, espeak-ng voice). Female Polly voices get an espeak female variant.
const CONNECT_VOICES: &[(&str, &str, &str)] = &[
    ("Joanna", "en-US", "en-us+f3"),
    ("Salli", "en-US", "en-us+f2"),
    ("Kendra", "en-US", "en-us+f4"),
    ("Kimberly", "en-US", "en-us+f1"),
    ("Ivy", "en-US", "en-us+f5"),
    ("Ruth", "en-US", "en-us+f3"),
    ("Danielle", "en-US", "en-us+f2"),
    ("Matthew", "en-US", "en-us+m3"),
    ("Joey", "en-US", "en-us+m2"),
    ("Justin", "en-US", "en-us+m1"),
    ("Kevin", "en-US", "en-us+m4"),
    ("Stephen", "en-US", "en-us+m3"),
    ("Gregory", "en-US", "en-us+m5"),
    ("Amy", "en-GB", "en-gb+f3"),
    ("Emma", "en-GB", "en-gb+f2"),
    ("Brian", "en-GB", "en-gb+m3"),
    ("Arthur", "en-GB", "en-gb+m2"),
    ("Mizuki", "ja-JP", "ja+f3"),
    ("Kazuha", "ja-JP", "ja+f2"),
    ("Tomoko", "ja-JP", "ja+f4"),
    ("Takumi", "ja-JP", "ja+m3"),
    ("Lupe", "es-US", "es-419+f3"),
    ("Penelope", "es-US", "es-419+f2"),
    ("Miguel", "es-US", "es-419+m3"),
    ("Lucia", "es-ES", "es+f3"),
    ("Conchita", "es-ES", "es+f2"),
    ("Enrique", "es-ES", "es+m3"),
    ("Lea", "fr-FR", "fr+f3"),
    ("Celine", "fr-FR", "fr+f2"),
    ("Mathieu", "fr-FR", "fr+m3"),
    ("Vicki", "de-DE", "de+f3"),
    ("Marlene", "de-DE", "de+f2"),
    ("Hans", "de-DE", "de+m3"),
    ("Zhiyu", "cmn-CN", "cmn+f3"),
    ("Seoyeon", "ko-KR", "ko+f3"),
];

/// The language and espeak-ng voice of a Connect voice name.
pub fn connect_voice(name: &str) -> Option<(&'static str, &'static str)> {
    CONNECT_VOICES
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, l, e)| (*l, *e))
}

/// The espeak-ng voice for a language when SSML `<lang>` switches mid-utterance.
pub fn voice_for_language(language: &str) -> Option<(&'static str, &'static str)> {
    let lower = language.to_ascii_lowercase();
    CONNECT_VOICES
        .iter()
        .find(|(_, l, _)| l.to_ascii_lowercase() == lower)
        .or_else(|| {
            let base = lower.split('-').next().unwrap_or(&lower).to_string();
            CONNECT_VOICES
                .iter()
                .find(|(_, l, _)| l.to_ascii_lowercase().starts_with(&base))
        })
        .map(|(_, l, e)| (*l, *e))
}

/// An operator's override: `[tts.voices] Joanna = { voice = "en-us+f4", language = "en-US" }`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceOverride {
    pub voice: String,
    #[serde(default)]
    pub language: Option<String>,
}

/// Every voice a flow may name, resolved once at start.
#[derive(Debug)]
pub struct Voices {
    map: HashMap<String, Arc<Voice>>,
    pub default: Arc<Voice>,
}

impl Voices {
    pub fn new(default: &str, overrides: &HashMap<String, VoiceOverride>) -> Voices {
        let mut map = HashMap::new();
        for (name, lang, engine) in CONNECT_VOICES {
            map.insert(
                name.to_ascii_lowercase(),
                Arc::new(Voice {
                    name: (*name).into(),
                    language: (*lang).into(),
                    engine: (*engine).into(),
                }),
            );
        }
        for (name, o) in overrides {
            let language = o
                .language
                .clone()
                .or_else(|| connect_voice(name).map(|(l, _)| l.to_string()))
                .unwrap_or_else(|| "en-US".into());
            map.insert(
                name.to_ascii_lowercase(),
                Arc::new(Voice {
                    name: name.as_str().into(),
                    language: language.into(),
                    engine: o.voice.as_str().into(),
                }),
            );
        }
        let default = map
            .get(&default.to_ascii_lowercase())
            .cloned()
            .unwrap_or_else(|| map["joanna"].clone());
        Voices { map, default }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Voice>> {
        self.map.get(&name.to_ascii_lowercase()).cloned()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Voice>> {
        self.map.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_names_map_to_languages_and_overrides_win() {
        let mut o = HashMap::new();
        o.insert(
            "Joanna".to_string(),
            VoiceOverride {
                voice: "en-us+f5".into(),
                language: None,
            },
        );
        let v = Voices::new("Mizuki", &o);
        assert!(v.default.is_japanese());
        assert_eq!(&*v.get("takumi").unwrap().engine, "ja+m3");
        let j = v.get("Joanna").unwrap();
        assert_eq!((&*j.engine, &*j.language), ("en-us+f5", "en-US"));
        assert_eq!(voice_for_language("en-GB").unwrap().1, "en-gb+f3");
        assert_eq!(voice_for_language("ja").unwrap().0, "ja-JP");
    }
}
