//! Answering-machine detection (AMD) for calls Careline places: is it the patient who picked
//! up, or their voicemail? Sans-IO: fed the audio the called phone sends (decoded PCM, any
//! rate), it answers once with a [`Verdict`] and, for a machine, says later when its greeting
//! is over (so a message left after it is heard whole).
//!
//! The rules are the cadence ones dialers have used for decades (Asterisk's `AMD()`
//! application; the defaults below are its): a person answers with a short word or two
//! ("Hello?") and then waits for the caller; a greeting talks on ("Hello, you have reached
//! ...", many words, long) or starts after a long silence. Speech is told from silence by
//! each 10 ms window's mean absolute amplitude. The greeting is over at its beep, or else at
//! the first long silence after it: a beep is a pure tone (one frequency between 400 and
//! 2,600 Hz holding most of the power, measured by Goertzel at the frequency the zero
//! crossings point to) that holds steady for `beep_min_ms` to 3 s (longer is a fax or modem
//! tone, not a beep), and the message starts as it stops, which is when a recorder starts
//! recording. Speech is never that pure for that long.

/// The limits, in milliseconds but for the amplitude; `[calls.amd]` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmdSettings {
    /// Silence before anything is said that means a machine (people say something at once).
    pub initial_silence_ms: u32,
    /// Speech since the first word, longer than which it is a greeting.
    pub greeting_ms: u32,
    /// Silence after the first words that means a person waiting for an answer.
    pub after_greeting_silence_ms: u32,
    /// Give up after this long with [`Verdict::NotSure`].
    pub total_analysis_ms: u32,
    /// Speech shorter than this is noise, not a word.
    pub min_word_ms: u32,
    /// Silence that separates two words.
    pub between_words_silence_ms: u32,
    /// This many words is a greeting.
    pub maximum_words: u32,
    /// One unbroken stretch of speech this long is a machine (or a fax, or music).
    pub maximum_word_ms: u32,
    /// Mean absolute amplitude (16-bit samples) above which a window is speech.
    pub silence_threshold: u16,
    /// After a machine verdict: the silence that ends its greeting, and the longest the
    /// greeting is waited for before a message is left anyway.
    pub end_of_greeting_silence_ms: u32,
    pub greeting_limit_ms: u32,
    /// The shortest tone that counts as the greeting's beep (0: beeps are not listened for).
    pub beep_min_ms: u32,
}

impl Default for AmdSettings {
    fn default() -> Self {
        AmdSettings {
            initial_silence_ms: 2500,
            greeting_ms: 1500,
            after_greeting_silence_ms: 800,
            total_analysis_ms: 5000,
            min_word_ms: 100,
            between_words_silence_ms: 50,
            maximum_words: 3,
            maximum_word_ms: 5000,
            silence_threshold: 256,
            end_of_greeting_silence_ms: 1000,
            greeting_limit_ms: 30_000,
            beep_min_ms: 100,
        }
    }
}

impl AmdSettings {
    /// An error names a setting the detector cannot work with.
    pub fn check(&self) -> Result<(), String> {
        let c = self;
        if c.total_analysis_ms < 500 || c.total_analysis_ms > 30_000 {
            return Err("total_analysis_ms must be 500 to 30000".into());
        }
        if c.min_word_ms < 10 || c.min_word_ms >= c.maximum_word_ms {
            return Err("min_word_ms must be at least 10 and below maximum_word_ms".into());
        }
        if c.maximum_words == 0 {
            return Err("maximum_words must be at least 1".into());
        }
        if c.silence_threshold == 0 {
            return Err("silence_threshold must be at least 1".into());
        }
        if c.greeting_limit_ms < c.end_of_greeting_silence_ms {
            return Err("greeting_limit_ms must be at least end_of_greeting_silence_ms".into());
        }
        if c.beep_min_ms > BEEP_MAX_MS / 2 {
            return Err(format!("beep_min_ms must be 0 to {}", BEEP_MAX_MS / 2));
        }
        Ok(())
    }
}

/// Who answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A person: a short answer, then silence.
    Human { reason: &'static str },
    /// A machine: a long or wordy greeting, or a long silence first.
    Machine { reason: &'static str },
    /// Nothing told the two apart within the analysis time.
    NotSure,
}

/// What [`Amd::push`] found in the audio it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmdEvent {
    Verdict(Verdict),
    /// The machine's greeting is over (a silence after it, or its time limit).
    GreetingEnded,
    /// The machine's beep has just stopped: it records from now.
    Beep,
}

/// A beep's frequencies (voicemail systems beep between about 440 and 2,000 Hz).
const BEEP_LOW_HZ: f32 = 400.0;
const BEEP_HIGH_HZ: f32 = 2600.0;
/// The share of a window's power at one frequency that makes it a pure tone.
const BEEP_PURITY: f64 = 0.8;
/// How far the frequency may wander within one beep.
const BEEP_DRIFT: f32 = 0.04;
/// A steady tone longer than this is no beep (a fax or modem).
const BEEP_MAX_MS: u32 = 3000;

/// One call's detector, from the moment the call is answered.
#[derive(Debug)]
pub struct Amd {
    settings: AmdSettings,
    /// Samples of the 10 ms window being filled, and their absolute sum.
    window_len: usize,
    window_filled: usize,
    window_sum: u64,
    /// Time analysed so far.
    elapsed_ms: u32,
    /// Since the first speech (None before it).
    voice_started_ms: Option<u32>,
    /// The current run of speech or of silence, in ms.
    voiced_run_ms: u32,
    silence_run_ms: u32,
    /// The run of speech under way already counts as a word.
    in_word: bool,
    words: u32,
    state: State,
    rate: u32,
    /// The last 20 ms of audio (two windows), for the beep's pitch.
    recent: std::collections::VecDeque<i16>,
    /// A steady pure tone under way: its frequency and length so far.
    tone: Option<(f32, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Listening,
    /// A machine: waiting for its greeting to end.
    Greeting {
        since_ms: u32,
    },
    Done,
}

impl Amd {
    /// A detector for audio at `rate` Hz.
    pub fn new(settings: AmdSettings, rate: u32) -> Amd {
        Amd {
            settings,
            window_len: (rate / 100).max(1) as usize,
            window_filled: 0,
            window_sum: 0,
            elapsed_ms: 0,
            voice_started_ms: None,
            voiced_run_ms: 0,
            silence_run_ms: 0,
            in_word: false,
            words: 0,
            state: State::Listening,
            rate: rate.max(1),
            recent: std::collections::VecDeque::with_capacity(2 * (rate / 100).max(1) as usize),
            tone: None,
        }
    }

    /// Whether it has nothing more to say.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds received audio (mono, any length); what it caused, in order, goes to `events`.
    pub fn push(&mut self, pcm: &[i16], events: &mut Vec<AmdEvent>) {
        for &s in pcm {
            self.sample(s, events);
        }
    }

    /// Feeds `samples` of silence: time when nothing arrived (a phone that sends no packets
    /// while quiet) counts as silence.
    pub fn push_silence(&mut self, samples: usize, events: &mut Vec<AmdEvent>) {
        for _ in 0..samples {
            self.sample(0, events);
        }
    }

    fn sample(&mut self, s: i16, events: &mut Vec<AmdEvent>) {
        if self.state == State::Done {
            return;
        }
        self.window_sum += u64::from(s.unsigned_abs());
        self.window_filled += 1;
        if matches!(self.state, State::Greeting { .. }) && self.settings.beep_min_ms > 0 {
            if self.recent.len() == 2 * self.window_len {
                self.recent.pop_front();
            }
            self.recent.push_back(s);
        }
        if self.window_filled < self.window_len {
            return;
        }
        let mean = self.window_sum / self.window_len as u64;
        self.window_filled = 0;
        self.window_sum = 0;
        let voiced = mean > u64::from(self.settings.silence_threshold);
        let beep = self.beep_window(voiced);
        let Some(e) = beep.or_else(|| self.window(voiced)) else {
            return;
        };
        events.push(e);
        self.state = match e {
            AmdEvent::Verdict(Verdict::Machine { .. }) => {
                self.silence_run_ms = 0;
                State::Greeting {
                    since_ms: self.elapsed_ms,
                }
            }
            _ => State::Done,
        };
    }

    /// During a greeting, one 10 ms window's part in a beep: [`AmdEvent::Beep`] when a tone
    /// that lasted long enough has just stopped.
    fn beep_window(&mut self, voiced: bool) -> Option<AmdEvent> {
        if !matches!(self.state, State::Greeting { .. }) || self.settings.beep_min_ms == 0 {
            return None;
        }
        let hz = if voiced && self.recent.len() == 2 * self.window_len {
            self.pure_tone()
        } else {
            None
        };
        let steady = match (self.tone, hz) {
            (Some((run_hz, ms)), Some(hz)) if (hz - run_hz).abs() <= run_hz * BEEP_DRIFT => {
                self.tone = Some((run_hz, ms + 10));
                true
            }
            _ => false,
        };
        if steady {
            return None;
        }
        // The tone under way (if any) stopped, or changed pitch: was it a beep?
        let ended = self.tone.take();
        self.tone = hz.map(|hz| (hz, 10));
        match ended {
            Some((_, ms)) if ms >= self.settings.beep_min_ms && ms <= BEEP_MAX_MS => {
                Some(AmdEvent::Beep)
            }
            _ => None,
        }
    }

    /// The frequency of the last 20 ms if it is a pure tone in a beep's range.
    fn pure_tone(&self) -> Option<f32> {
        let pcm: Vec<i16> = self.recent.iter().copied().collect();
        let crossings = pcm.windows(2).filter(|p| (p[0] < 0) != (p[1] < 0)).count();
        let rough = crossings as f32 * self.rate as f32 / (2.0 * pcm.len() as f32);
        if !(BEEP_LOW_HZ * 0.9..=BEEP_HIGH_HZ * 1.1).contains(&rough) {
            return None;
        }
        // Zero crossings are off by up to one per window: look around them for the peak.
        let step = self.rate as f32 / (4.0 * pcm.len() as f32);
        let (hz, share) = (-3..=3)
            .map(|k| rough + k as f32 * step)
            .map(|f| (f, super::recognize::tone_share(&pcm, f, self.rate)))
            .fold((0.0, 0.0), |best, x| if x.1 > best.1 { x } else { best });
        ((BEEP_LOW_HZ..=BEEP_HIGH_HZ).contains(&hz) && share >= BEEP_PURITY).then_some(hz)
    }

    /// One 10 ms window, speech or not.
    fn window(&mut self, voiced: bool) -> Option<AmdEvent> {
        const W: u32 = 10;
        let s = self.settings;
        self.elapsed_ms += W;
        if voiced {
            self.voiced_run_ms += W;
            self.silence_run_ms = 0;
        } else {
            self.silence_run_ms += W;
            if self.silence_run_ms >= s.between_words_silence_ms {
                self.voiced_run_ms = 0;
                self.in_word = false;
            }
        }
        if let State::Greeting { since_ms } = self.state {
            let over = self.silence_run_ms >= s.end_of_greeting_silence_ms
                || self.elapsed_ms - since_ms >= s.greeting_limit_ms;
            return over.then_some(AmdEvent::GreetingEnded);
        }
        let verdict = |v| Some(AmdEvent::Verdict(v));
        if voiced && !self.in_word && self.voiced_run_ms >= s.min_word_ms {
            self.in_word = true;
            self.words += 1;
            self.voice_started_ms
                .get_or_insert(self.elapsed_ms - self.voiced_run_ms);
            if self.words >= s.maximum_words {
                return verdict(Verdict::Machine {
                    reason: "many words",
                });
            }
        }
        if self.voiced_run_ms >= s.maximum_word_ms {
            return verdict(Verdict::Machine {
                reason: "one long sound",
            });
        }
        match self.voice_started_ms {
            None if self.elapsed_ms >= s.initial_silence_ms => {
                return verdict(Verdict::Machine {
                    reason: "long silence first",
                });
            }
            Some(start) if voiced && self.elapsed_ms - start >= s.greeting_ms => {
                return verdict(Verdict::Machine {
                    reason: "long greeting",
                });
            }
            Some(_) if self.silence_run_ms >= s.after_greeting_silence_ms => {
                return verdict(Verdict::Human {
                    reason: "a short answer, then silence",
                });
            }
            _ => {}
        }
        (self.elapsed_ms >= s.total_analysis_ms).then_some(AmdEvent::Verdict(Verdict::NotSure))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 8000;

    /// A stretch of "speech" (a 300 Hz tone at speech level) or of line noise, in ms.
    fn speech(ms: u32) -> Vec<i16> {
        (0..ms * 8)
            .map(|i| {
                ((i as f32 * 2.0 * std::f32::consts::PI * 300.0 / 8000.0).sin() * 6000.0) as i16
            })
            .collect()
    }

    fn quiet(ms: u32) -> Vec<i16> {
        (0..ms * 8).map(|i| ((i * 7919) % 61) as i16 - 30).collect()
    }

    /// Feeds the stretches in order: the events and the ms at which each came.
    fn run(parts: &[Vec<i16>]) -> Vec<(AmdEvent, u32)> {
        let mut amd = Amd::new(AmdSettings::default(), RATE);
        let mut out = Vec::new();
        let mut fed = 0;
        for part in parts {
            for chunk in part.chunks(160) {
                let mut events = Vec::new();
                amd.push(chunk, &mut events);
                fed += chunk.len() as u32 / 8;
                out.extend(events.into_iter().map(|e| (e, fed)));
            }
        }
        out
    }

    #[test]
    fn hello_then_silence_is_a_person() {
        let events = run(&[quiet(600), speech(500), quiet(2000)]);
        assert_eq!(
            events,
            vec![(
                AmdEvent::Verdict(Verdict::Human {
                    reason: "a short answer, then silence"
                }),
                600 + 500 + 800
            )],
            "decided once the person waits, and nothing after"
        );
    }

    #[test]
    fn two_short_words_then_silence_is_a_person() {
        let events = run(&[speech(300), quiet(200), speech(300), quiet(1000)]);
        assert!(
            matches!(events[..], [(AmdEvent::Verdict(Verdict::Human { .. }), _)]),
            "{events:?}"
        );
    }

    #[test]
    fn a_long_greeting_is_a_machine_and_its_end_is_told() {
        // "Hello, you have reached ..." : words with short gaps, for four seconds.
        let mut parts = Vec::new();
        for _ in 0..8 {
            parts.push(speech(400));
            parts.push(quiet(100));
        }
        parts.push(quiet(1500));
        let events = run(&parts);
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(
            matches!(events[0].0, AmdEvent::Verdict(Verdict::Machine { .. })),
            "{events:?}"
        );
        assert!(
            events[0].1 < 1600,
            "decided within the greeting: {events:?}"
        );
        assert_eq!(
            events[1],
            (AmdEvent::GreetingEnded, 8 * 500 - 100 + 1000),
            "the greeting ends at the first long silence"
        );
    }

    #[test]
    fn one_long_unbroken_greeting_is_a_machine_by_its_length() {
        let events = run(&[speech(3000), quiet(1200)]);
        assert_eq!(
            events[0],
            (
                AmdEvent::Verdict(Verdict::Machine {
                    reason: "long greeting"
                }),
                1500
            )
        );
        assert_eq!(events[1], (AmdEvent::GreetingEnded, 4000));
    }

    #[test]
    fn silence_at_first_is_a_machine_and_noise_is_not_speech() {
        let events = run(&[quiet(3000)]);
        assert_eq!(
            events[0],
            (
                AmdEvent::Verdict(Verdict::Machine {
                    reason: "long silence first"
                }),
                2500
            )
        );
    }

    #[test]
    fn clicks_shorter_than_a_word_are_not_words() {
        // 50 ms bursts with gaps for three seconds: no word, so the silence before anything
        // is said runs out.
        let mut parts = Vec::new();
        for _ in 0..15 {
            parts.push(speech(50));
            parts.push(quiet(150));
        }
        let events = run(&parts);
        assert!(
            matches!(
                events[..],
                [(
                    AmdEvent::Verdict(Verdict::Machine {
                        reason: "long silence first"
                    }),
                    2500..2520
                )]
            ),
            "{events:?}"
        );
    }

    #[test]
    fn a_greeting_without_a_pause_is_waited_for_up_to_its_limit() {
        let mut events = run(&[speech(35_000)]);
        let last = events.pop().expect("an end");
        assert_eq!(last, (AmdEvent::GreetingEnded, 1500 + 30_000));
    }

    #[test]
    fn any_rate_and_any_chunking_give_the_same_verdict() {
        let at_16k: Vec<i16> = [quiet(400), speech(500), quiet(900)]
            .concat()
            .iter()
            .flat_map(|&s| [s, s])
            .collect();
        let mut amd = Amd::new(AmdSettings::default(), 16_000);
        let mut events = Vec::new();
        for chunk in at_16k.chunks(77) {
            amd.push(chunk, &mut events);
        }
        assert!(
            matches!(events[..], [AmdEvent::Verdict(Verdict::Human { .. })]),
            "{events:?}"
        );
        assert!(amd.is_done());
    }

    /// The demo menu's welcome, as synthesized speech: a voicemail greeting's cadence.
    #[test]
    fn a_spoken_welcome_is_a_greeting() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/prompts/en/welcome.wav");
        let mut wav = hound::WavReader::open(path).expect("the shipped prompt");
        let rate = wav.spec().sample_rate;
        let pcm: Vec<i16> = wav.samples::<i16>().map(|s| s.expect("a sample")).collect();
        let mut amd = Amd::new(AmdSettings::default(), rate);
        let mut events = Vec::new();
        amd.push(&pcm, &mut events);
        amd.push(&vec![0; rate as usize * 2], &mut events);
        assert!(
            matches!(
                events[..],
                [
                    AmdEvent::Verdict(Verdict::Machine { .. }),
                    AmdEvent::GreetingEnded
                ]
            ),
            "speech is never taken for a beep: {events:?}"
        );
        // The same greeting, a short pause, and its beep: the message starts as the beep
        // stops.
        let tone = |hz: f32, ms: u32| -> Vec<i16> {
            (0..rate * ms / 1000)
                .map(|i| {
                    ((i as f32 * 2.0 * std::f32::consts::PI * hz / rate as f32).sin() * 8000.0)
                        as i16
                })
                .collect()
        };
        let mut amd = Amd::new(AmdSettings::default(), rate);
        let mut events = Vec::new();
        amd.push(&pcm, &mut events);
        amd.push(&vec![0; rate as usize / 2], &mut events);
        amd.push(&tone(1400.0, 600), &mut events);
        assert_eq!(events.len(), 1, "nothing until the beep stops: {events:?}");
        amd.push(&vec![0; rate as usize / 50], &mut events);
        assert_eq!(events[1..], [AmdEvent::Beep], "{events:?}");
        assert!(amd.is_done());
    }

    fn beep(hz: f32, ms: u32) -> Vec<i16> {
        (0..ms * 8)
            .map(|i| ((i as f32 * 2.0 * std::f32::consts::PI * hz / 8000.0).sin() * 7000.0) as i16)
            .collect()
    }

    #[test]
    fn a_beep_after_the_greeting_ends_it_when_the_beep_stops() {
        for hz in [440.0, 1000.0, 2000.0] {
            let events = run(&[speech(3000), quiet(300), beep(hz, 500), quiet(2000)]);
            assert_eq!(
                events[1..],
                [(AmdEvent::Beep, 3000 + 300 + 500 + 20)],
                "{hz} Hz: {events:?}"
            );
        }
    }

    #[test]
    fn a_blip_too_short_or_a_fax_tone_is_no_beep() {
        let events = run(&[speech(3000), quiet(300), beep(1000.0, 50), quiet(1500)]);
        assert_eq!(
            events[1..],
            [(AmdEvent::GreetingEnded, 3000 + 300 + 50 + 1000)]
        );
        // A fax's 2100 Hz answer tone for 3.5 s: the greeting ends at the silence after it.
        let events = run(&[speech(3000), beep(2100.0, 3500), quiet(1500)]);
        assert_eq!(events[1..], [(AmdEvent::GreetingEnded, 3000 + 3500 + 1000)]);
    }

    #[test]
    fn with_beeps_not_listened_for_the_silence_ends_the_greeting() {
        let mut amd = Amd::new(
            AmdSettings {
                beep_min_ms: 0,
                ..AmdSettings::default()
            },
            RATE,
        );
        let mut events = Vec::new();
        for part in [speech(3000), quiet(300), beep(1000.0, 500), quiet(1500)] {
            amd.push(&part, &mut events);
        }
        assert_eq!(events[1..], [AmdEvent::GreetingEnded], "{events:?}");
        assert!(
            AmdSettings {
                beep_min_ms: 2000,
                ..AmdSettings::default()
            }
            .check()
            .is_err()
        );
    }
}
