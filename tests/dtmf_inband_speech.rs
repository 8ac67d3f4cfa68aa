//! Talk-off test (ITU-T Q.24): real synthesized speech in several languages, and every
//! recorded prompt we ship, must not produce a single in-band DTMF digit.
//!
//! Speech comes from the real `espeak-ng` binary (CI installs it; these tests fail, they do not
//! skip, when it is missing), is resampled to 8 kHz with rubato and fed to
//! [`InbandDetector`] in 20 ms frames, as the media path does for a G.711 call.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use careline::media::dtmf::Digit;
use careline::media::dtmf::inband::{InbandDetector, ToneEvent};
use careline::media::dtmf::tone::{silence, synthesize};
use rubato::{FftFixedInOut, Resampler};

const RATE: u32 = 8000;

/// A few sentences per language, with numbers (read out as words by espeak-ng), in the
/// register of our prompts. Japanese is written in kana: espeak-ng has no kanji readings.
const SPEECH: &[(&str, &str)] = &[
    (
        "en",
        "Welcome to the Careline health service. For appointments, press 1. For prescriptions, \
         press 2. Your reference number is 4 7 2 9 3. Our clinic is open from 8 am to 6 pm, \
         Monday to Friday. Please hold while we connect you to a nurse; your call is number 12 \
         in the queue.",
    ),
    (
        "en-us",
        "Thank you for calling. Please say or enter your date of birth, for example, March 14, \
         1962. If this is a medical emergency, hang up and dial 9 1 1.",
    ),
    (
        "ja",
        "こんにちは。いりょうサービスへようこそ。よやくは いちばんを おしてください。\
         うけつけばんごうは よん なな に きゅう さん です。しんりょうじかんは ごぜん はちじから \
         ごご ろくじまでです。かんごしに おつなぎしますので、しょうしょう おまちください。",
    ),
    (
        "de",
        "Willkommen beim Careline Gesundheitsdienst. Für Termine drücken Sie die 1, für Rezepte \
         die 2. Ihre Vorgangsnummer lautet 4 7 2 9 3. Unsere Praxis ist montags bis freitags von \
         8 bis 18 Uhr geöffnet. Bitte bleiben Sie in der Leitung, Sie sind an 12. Stelle.",
    ),
    (
        "fr",
        "Bienvenue au service de santé Careline. Pour prendre rendez-vous, tapez 1. Pour vos \
         ordonnances, tapez 2. Votre numéro de dossier est le 4 7 2 9 3. Le cabinet est ouvert \
         du lundi au vendredi, de 8 heures à 18 heures. Veuillez patienter, une infirmière va \
         vous répondre.",
    ),
    (
        "es",
        "Bienvenido al servicio de salud Careline. Para pedir cita, pulse 1. Para recetas, \
         pulse 2. Su número de referencia es 4 7 2 9 3. La consulta abre de lunes a viernes, \
         de 8 a 18 horas. Por favor, espere mientras le atiende una enfermera; su llamada es la \
         número 12.",
    ),
];

/// espeak-ng's pitch (0-99, default 50): a low and a high voice as well, since the spacing of
/// the voice's harmonics decides which of them can land on DTMF frequencies.
const PITCHES: [u32; 3] = [25, 50, 85];

/// Speech from the real espeak-ng, as (samples, sample rate).
fn espeak(voice: &str, pitch: u32, text: &str) -> (Vec<i16>, u32) {
    let out = match Command::new("espeak-ng")
        .args(["-v", voice, "-p", &pitch.to_string(), "--stdout", text])
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "espeak-ng is not installed: the in-band DTMF talk-off tests need the real speech \
             synthesizer. Install it (Debian/Ubuntu: `apt-get install espeak-ng`); CI installs it."
        ),
        Err(e) => panic!("could not run espeak-ng: {e}"),
    };
    assert!(
        out.status.success(),
        "espeak-ng -v {voice} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = hound::WavReader::new(Cursor::new(out.stdout)).expect("espeak-ng WAV header");
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.bits_per_sample),
        (1, 16),
        "espeak-ng output format"
    );
    // Written to a pipe, espeak-ng cannot seek back to fill in the data length and leaves a
    // placeholder (0x7ffff000): read samples until the stream ends.
    let pcm: Vec<i16> = reader.samples::<i16>().map_while(Result::ok).collect();
    (pcm, spec.sample_rate)
}

/// Resamples mono PCM to `to` Hz with rubato (FFT resampler, its delay trimmed off).
fn resample(pcm: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to {
        return pcm.to_vec();
    }
    let mut resampler =
        FftFixedInOut::<f64>::new(from as usize, to as usize, 1024, 1).expect("resampler");
    let delay = resampler.output_delay();
    let expected = (pcm.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let input: Vec<f64> = pcm.iter().map(|&s| f64::from(s)).collect();
    let mut out: Vec<f64> = Vec::with_capacity(expected + delay + 2048);
    let mut pos = 0;
    while out.len() < expected + delay {
        let need = resampler.input_frames_next();
        let mut chunk = vec![0.0; need];
        let take = need.min(input.len().saturating_sub(pos));
        chunk[..take].copy_from_slice(&input[pos..pos + take]);
        pos += take;
        let frames = resampler.process(&[chunk], None).expect("resample");
        out.extend_from_slice(&frames[0]);
    }
    out[delay..delay + expected]
        .iter()
        .map(|&v| v.round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Runs the detector over `pcm` (8 kHz) in 20 ms frames.
fn detect(pcm: &[i16]) -> Vec<ToneEvent> {
    let mut det = InbandDetector::new(RATE);
    let mut events = Vec::new();
    for frame in pcm.chunks(160) {
        det.push(frame, &mut events);
    }
    // Let a tone still in progress at the end report its Ended.
    det.push(&silence(RATE, 200), &mut events);
    events
}

fn digits(events: &[ToneEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            ToneEvent::Started(d) => Some(d.to_char()),
            ToneEvent::Ended { .. } => None,
        })
        .collect()
}

fn rms(pcm: &[i16]) -> f64 {
    let sum: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / pcm.len().max(1) as f64).sqrt()
}

fn speech_8k(voice: &str, pitch: u32, text: &str) -> Vec<i16> {
    let (pcm, rate) = espeak(voice, pitch, text);
    let pcm = resample(&pcm, rate, RATE);
    // Guard against a vacuous pass: real, audible speech of several seconds.
    assert!(
        pcm.len() > 4 * RATE as usize,
        "{voice}: only {} samples of speech",
        pcm.len()
    );
    assert!(
        rms(&pcm) > 300.0,
        "{voice}: speech too quiet (rms {:.0})",
        rms(&pcm)
    );
    pcm
}

#[test]
fn speech_in_six_voices_gives_no_digits() {
    let mut failures = Vec::new();
    let mut seconds = 0.0;
    for &(voice, text) in SPEECH {
        for pitch in PITCHES {
            let pcm = speech_8k(voice, pitch, text);
            seconds += pcm.len() as f64 / f64::from(RATE);
            // As synthesized, and 10 dB hotter (clipping where it must): loud callers too.
            let loud: Vec<i16> = pcm
                .iter()
                .map(|&s| (f64::from(s) * 3.16).clamp(-32768.0, 32767.0) as i16)
                .collect();
            for (level, signal) in [("as is", &pcm), ("+10 dB", &loud)] {
                let events = detect(signal);
                if !events.is_empty() {
                    failures.push(format!("{voice} pitch {pitch} {level}: {events:?}"));
                }
            }
        }
    }
    println!(
        "talk-off: {seconds:.0} s of speech, {} false digits",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "digits detected in speech:\n{}",
        failures.join("\n")
    );
}

/// Proves the test above can fail: the same pipeline finds a real digit in speech.
#[test]
fn a_digit_mixed_into_speech_is_detected_exactly_once() {
    let five = Digit::from_char('5').unwrap();
    let nine = Digit::from_char('9').unwrap();
    for &(voice, text) in SPEECH {
        let speech = speech_8k(voice, 50, text);
        let mid = speech.len() / 2;
        // Spliced between two halves of the speech, as when a caller presses a key mid-prompt
        // on a half-duplex line...
        let spliced = [
            &speech[..mid],
            &synthesize(five, RATE, 60, -10.0)[..],
            &speech[mid..],
        ]
        .concat();
        assert_eq!(digits(&detect(&spliced)), "5", "{voice}: spliced");
        // ...and added on top of the speech at its own level (espeak-ng's active speech is
        // about −13 dBm0; the tone is −10 dBm0 per frequency, a typical received DTMF level).
        let mut mixed = speech.clone();
        for (s, t) in mixed[mid..]
            .iter_mut()
            .zip(synthesize(nine, RATE, 80, -10.0))
        {
            *s = s.saturating_add(t);
        }
        assert_eq!(digits(&detect(&mixed)), "9", "{voice}: mixed");
    }
}

/// Every WAV under `prompts/` (recursively) must be free of DTMF talk-off, or a caller on an
/// in-band line would "press" keys while the prompt plays (echo) or our own recording triggers.
#[test]
fn prompts_give_no_digits() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    let mut files = Vec::new();
    collect_wavs(&root, &mut files);
    files.sort();
    let mut failures = Vec::new();
    for path in &files {
        let mut reader = hound::WavReader::open(path)
            .unwrap_or_else(|e| panic!("{}: not a readable WAV: {e}", path.display()));
        let spec = reader.spec();
        assert!(
            spec.sample_format == hound::SampleFormat::Int
                && spec.bits_per_sample == 16
                && (1..=2).contains(&spec.channels),
            "{}: prompts must be mono or stereo 16-bit PCM, found {spec:?}",
            path.display()
        );
        let samples: Vec<i16> = reader
            .samples::<i16>()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mono: Vec<i16> = samples
            .chunks(usize::from(spec.channels))
            .map(|frame| {
                (frame.iter().map(|&s| i32::from(s)).sum::<i32>() / frame.len() as i32) as i16
            })
            .collect();
        let events = detect(&resample(&mono, spec.sample_rate, RATE));
        if !events.is_empty() {
            failures.push(format!("{}: {events:?}", path.display()));
        }
    }
    // The shipped prompts are there to scan (a moved folder must not pass as "no digits").
    for lang in ["en", "ja"] {
        assert!(
            files
                .iter()
                .filter(|f| f.parent().is_some_and(|d| d.ends_with(lang)))
                .count()
                >= 10,
            "fewer than 10 {lang} prompts found under {}",
            root.display()
        );
    }
    assert!(
        failures.is_empty(),
        "DTMF detected in prompts:\n{}",
        failures.join("\n")
    );
}

fn collect_wavs(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: cannot read the prompts folder: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("prompts directory entry").path();
        if path.is_dir() {
            collect_wavs(&path, out);
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("wav"))
        {
            out.push(path);
        }
    }
}
