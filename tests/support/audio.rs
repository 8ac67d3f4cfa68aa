//! Assertions on what a test caller heard.

use careline::media::codec::Codec;
use careline::media::recognize::{self, Match};

use super::server::prompt_pcm;

/// Asserts that `heard` contains prompt `lang/name` starting at or after `from_ms`.
/// With `prefix_ms`, only the prompt's first milliseconds must match (barge-in cuts it).
pub fn expect_prompt(
    heard: &[i16],
    codec: Codec,
    lang: &str,
    name: &str,
    from_ms: u64,
    prefix_ms: Option<u64>,
) -> Match {
    let mut expected = prompt_pcm(lang, name);
    if let Some(ms) = prefix_ms {
        expected.truncate((ms * 8) as usize);
    }
    let m = recognize::find_from(heard, &expected, (from_ms * 8) as usize)
        .unwrap_or_else(|| panic!("{lang}/{name}: heard only {} ms of audio", heard.len() / 8));
    // G.711 keeps the waveform; Opus keeps the loudness contour but not the waveform.
    let (env_min, wave_min) = match codec {
        Codec::Pcmu | Codec::Pcma => (0.95, 0.95),
        Codec::Opus => (0.85, 0.3),
    };
    assert!(
        m.envelope_score >= env_min && m.waveform_score >= wave_min,
        "{lang}/{name} not heard after {from_ms} ms: best match {m:?} (heard {} ms)",
        heard.len() / 8
    );
    m
}

/// Asserts the prompt is NOT in `heard` after `from_ms` (a different prompt played).
pub fn expect_not_prompt(heard: &[i16], lang: &str, name: &str, from_ms: u64) {
    let expected = prompt_pcm(lang, name);
    if let Some(m) = recognize::find_from(heard, &expected, (from_ms * 8) as usize) {
        assert!(
            m.waveform_score < 0.6,
            "{lang}/{name} unexpectedly heard: {m:?}"
        );
    }
}
