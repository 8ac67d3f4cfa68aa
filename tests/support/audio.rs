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
    let m = find_prompt(heard, lang, name, from_ms, prefix_ms)
        .unwrap_or_else(|| panic!("{lang}/{name}: heard only {} ms of audio", heard.len() / 8));
    let (env_min, wave_min) = thresholds(codec);
    assert!(
        m.envelope_score >= env_min && m.waveform_score >= wave_min,
        "{lang}/{name} not heard after {from_ms} ms: best match {m:?} (heard {} ms)",
        heard.len() / 8
    );
    m
}

/// The best match of prompt `lang/name` (or its first `prefix_ms`) at or after `from_ms`.
fn find_prompt(
    heard: &[i16],
    lang: &str,
    name: &str,
    from_ms: u64,
    prefix_ms: Option<u64>,
) -> Option<Match> {
    let mut expected = prompt_pcm(lang, name);
    if let Some(ms) = prefix_ms {
        expected.truncate((ms * 8) as usize);
    }
    recognize::find_from(heard, &expected, (from_ms * 8) as usize)
}

/// The scores a prompt must reach to count as heard: G.711 keeps the waveform; Opus keeps the
/// loudness contour but not the waveform.
fn thresholds(codec: Codec) -> (f32, f32) {
    match codec {
        Codec::Pcmu | Codec::Pcma => (0.95, 0.95),
        Codec::Opus => (0.85, 0.3),
    }
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

/// Whether `heard` has prompt `lang/name` (or its first `prefix_ms`) at or after `from_ms`,
/// as [`expect_prompt`] would accept it.
pub fn heard_prompt(
    heard: &[i16],
    codec: Codec,
    lang: &str,
    name: &str,
    from_ms: u64,
    prefix_ms: Option<u64>,
) -> Option<Match> {
    let m = find_prompt(heard, lang, name, from_ms, prefix_ms)?;
    let (env_min, wave_min) = thresholds(codec);
    (m.envelope_score >= env_min && m.waveform_score >= wave_min).then_some(m)
}

/// A test caller whose received audio can be decoded: a phone's RTP peer or a browser.
pub trait Listener {
    fn heard(&self) -> Vec<i16>;
}

impl Listener for super::rtp::RtpPeer {
    fn heard(&self) -> Vec<i16> {
        super::rtp::RtpPeer::heard(self)
    }
}

/// Listens until `peer` has heard prompt `lang/name` (as [`expect_prompt`] checks it), for
/// as long as a loaded machine may need (30 s), then fails as [`expect_prompt`] does. Returns
/// what was heard by then and the match: tests wait for what the caller hears, not a time.
pub fn wait_for_prompt(
    peer: &impl Listener,
    codec: Codec,
    lang: &str,
    name: &str,
    from_ms: u64,
    prefix_ms: Option<u64>,
) -> (Vec<i16>, Match) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let heard = peer.heard();
        if let Some(m) = heard_prompt(&heard, codec, lang, name, from_ms, prefix_ms) {
            return (heard, m);
        }
        if std::time::Instant::now() > deadline {
            let m = expect_prompt(&heard, codec, lang, name, from_ms, prefix_ms);
            return (heard, m);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Listens until `peer` has heard `ms` of audio (30 s at most).
pub fn wait_heard_ms(peer: &super::rtp::RtpPeer, ms: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let heard = peer.heard().len() as u64 / 8;
        if heard >= ms {
            return heard;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "heard only {heard} ms of audio"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Lets the call go on for `ms` more of the audio `peer` hears from the server: a scenario's
/// length in call time, which a loaded machine stretches alike on both sides, instead of a
/// sleep that a slow server may not fill.
pub fn let_call_run(peer: &super::rtp::RtpPeer, ms: u64) {
    let now = peer.heard().len() as u64 / 8;
    wait_heard_ms(peer, now + ms);
}

/// 8 kHz tone of `hz` for `ms`, at about -12 dBFS.
pub fn tone(hz: f32, ms: usize) -> Vec<i16> {
    (0..ms * 8)
        .map(|n| (8000.0 * (2.0 * std::f32::consts::PI * hz * n as f32 / 8000.0).sin()) as i16)
        .collect()
}

/// Waits (30 s at most) until some 200 ms that `heard` returns after `from_ms` is mostly
/// `hz`; the audio's start in ms.
pub fn wait_for_tone(heard: impl Fn() -> Vec<i16>, hz: f32, from_ms: usize, what: &str) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let pcm = heard();
        let mut at = from_ms * 8;
        while at + 1600 <= pcm.len() {
            if recognize::tone_share(&pcm[at..at + 1600], hz, 8000) > 0.8 {
                return at / 8;
            }
            at += 400;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: no {hz} Hz tone heard after {from_ms} ms ({} ms heard)",
            pcm.len() / 8
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Where in `pcm` (8 kHz) some 200 ms are mostly `hz`, if anywhere: the start in samples.
pub fn find_tone(pcm: &[i16], hz: f32) -> Option<usize> {
    (0..pcm.len().saturating_sub(1600))
        .step_by(400)
        .find(|&at| recognize::tone_share(&pcm[at..at + 1600], hz, 8000) > 0.8)
}
