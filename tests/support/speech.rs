//! Speech as Careline renders it (espeak-ng and MeCab are deterministic), so a test can check
//! that a caller heard a given sentence, not just some audio.

use std::sync::Arc;

use careline::flow::tts::{self, Speech, Tts};
use careline::flow::voices::Voices;
use careline::media::recognize;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// What Careline says for `text` in Connect voice `voice`, at 8 kHz.
pub fn speech_with(engine: Arc<dyn Tts>, voice: &str, text: &str, ssml: bool) -> Vec<i16> {
    let speech = Speech::new(engine, tts::reading::Reading::mecab("mecab"));
    let voices = Voices::new("Joanna", &Default::default());
    let v = voices.get(voice).unwrap();
    runtime()
        .block_on(speech.render(&v, &text.into(), ssml))
        .unwrap_or_else(|e| panic!("rendering `{text}`: {e}"))
        .pcm_8k
        .clone()
}

pub fn speech(voice: &str, text: &str, ssml: bool) -> Vec<i16> {
    speech_with(Arc::new(tts::espeak::Espeak::default()), voice, text, ssml)
}

/// Where `expected` (or its first `prefix_ms`) is heard at or after `from_ms` (ms), if it is
/// heard there as [`heard`] requires.
pub fn hears(heard: &[i16], expected: &[i16], from_ms: u64, prefix_ms: Option<u64>) -> Option<u64> {
    let mut e = expected.to_vec();
    if let Some(ms) = prefix_ms {
        e.truncate((ms * 8) as usize);
    }
    recognize::find_from(heard, &e, (from_ms * 8) as usize)
        .filter(|m| m.envelope_score >= 0.9 && m.waveform_score >= 0.9)
        .map(|m| m.offset_ms())
}

/// Asserts `expected` (or its first `prefix_ms`) is heard at or after `from_ms`; returns
/// where it starts (ms).
pub fn heard(
    heard: &[i16],
    expected: &[i16],
    from_ms: u64,
    prefix_ms: Option<u64>,
    what: &str,
) -> u64 {
    let mut e = expected.to_vec();
    if let Some(ms) = prefix_ms {
        e.truncate((ms * 8) as usize);
    }
    let m = recognize::find_from(heard, &e, (from_ms * 8) as usize)
        .unwrap_or_else(|| panic!("{what}: heard only {} ms", heard.len() / 8));
    assert!(
        m.envelope_score >= 0.9 && m.waveform_score >= 0.9,
        "{what} not heard after {from_ms} ms: {m:?} (heard {} ms)",
        heard.len() / 8
    );
    m.offset_ms()
}

/// The shipped triage flow's first menu (flows/medical-triage.json, action `language-menu`).
pub const LANGUAGE_MENU: &str = "<speak>こんにちは。医療サービスへようこそ。日本語のご案内は1を押してください。<break time=\"300ms\"/><lang xml:lang=\"en-US\">For English, press 2.</lang></speak>";

/// The triage flow's English menu (action `en-menu`).
pub const EN_MENU: &str = "If this is an emergency, press 9. For a new appointment, press 1. To change an appointment, press 2. For a medical consultation, press 3. For test results, press 4.";

/// The triage flow's emergency branch (action `en-urgent`).
pub const URGENT: &str = "Connecting you to our urgent care line.";

/// Where the committed reference recording of a sentence lives.
fn reference_path(name: &str) -> std::path::PathBuf {
    super::server::repo_root()
        .join("tests/fixtures/speech")
        .join(format!("{name}.wav"))
}

/// Checks what Careline says for `text` against the recording committed when the test was
/// written (`tests/fixtures/speech/NAME.wav`), so that a change in the speech pipeline
/// (espeak-ng, MeCab, SSML, resampling) cannot move the server's audio and the tests'
/// expectation together unseen. `CARELINE_UPDATE_SPEECH=1` writes the reference instead (after
/// an intended change, listened to). Returns the rendering.
pub fn matches_reference(name: &str, voice: &str, text: &str, ssml: bool) -> Vec<i16> {
    let pcm = speech(voice, text, ssml);
    let path = reference_path(name);
    if std::env::var_os("CARELINE_UPDATE_SPEECH").is_some() {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).expect("write the reference");
        for s in &pcm {
            w.write_sample(*s).expect("write the reference");
        }
        w.finalize().expect("write the reference");
        return pcm;
    }
    let (reference, rate) = careline::media::prompt::read_wav(&path)
        .unwrap_or_else(|e| panic!("{name}: no reference recording ({e})"));
    assert_eq!(rate, 8000, "{name}");
    let (a, b) = (pcm.len() as f64, reference.len() as f64);
    assert!(
        (a - b).abs() <= b * 0.01,
        "{name}: {} ms now, {} ms in the reference",
        pcm.len() / 8,
        reference.len() / 8
    );
    let m = recognize::find_from(&pcm, &reference[..reference.len().min(pcm.len())], 0)
        .unwrap_or_else(|| panic!("{name}: the rendering does not contain the reference"));
    assert!(
        m.offset < 80 && m.envelope_score >= 0.98 && m.waveform_score >= 0.98,
        "{name}: the speech differs from the committed reference: {m:?}"
    );
    pcm
}
