//! DTMF tone synthesis (ITU-T Q.23 frequencies), for tests, the load tester and in-band sending.
//!
//! # Level convention (shared with [`super::inband`])
//!
//! Levels are per tone, in dBm0, with the G.711 convention for 16-bit linear PCM: a sine of
//! 0 dBm0 sits [`DBM0_BELOW_FULL_SCALE_DB`] = 3.17 dB below a full-scale sine (G.711's
//! "digital milliwatt"; +3.17 dBm0 is the largest sine μ-law can carry). So a tone of `L` dBm0
//! has the peak amplitude `32768 · 10^((L − 3.17) / 20)`, about 22 750 at 0 dBm0 and 1 279 at
//! −25 dBm0 ([`dbm0_to_amplitude`]).
//!
//! Note that two tones of 0 dBm0 each add up to a peak of about 1.39× full scale: above about
//! −3 dBm0 per tone a dual tone clips. Samples are saturated to the i16 range, not wrapped.

use super::Digit;

/// How far (dB) a 0 dBm0 sine sits below a full-scale 16-bit sine (G.711 convention).
pub const DBM0_BELOW_FULL_SCALE_DB: f32 = 3.17;

/// Peak amplitude of a full-scale 16-bit sine.
const FULL_SCALE: f32 = 32768.0;

/// Peak amplitude (in 16-bit sample units) of a sine of `level_dbm0` dBm0.
pub fn dbm0_to_amplitude(level_dbm0: f32) -> f32 {
    FULL_SCALE * 10f32.powf((level_dbm0 - DBM0_BELOW_FULL_SCALE_DB) / 20.0)
}

/// Level in dBm0 of a sine of peak amplitude `amplitude` (16-bit sample units); the inverse of
/// [`dbm0_to_amplitude`]. Returns `-inf` for 0.
pub fn amplitude_to_dbm0(amplitude: f32) -> f32 {
    20.0 * (amplitude / FULL_SCALE).log10() + DBM0_BELOW_FULL_SCALE_DB
}

/// Number of samples in `duration_ms` at `sample_rate` (rounded down).
pub fn samples_for(sample_rate: u32, duration_ms: u32) -> usize {
    (u64::from(sample_rate) * u64::from(duration_ms) / 1000) as usize
}

/// The DTMF tone of `digit`: both Q.23 frequencies at `level_dbm0` each (no twist).
pub fn synthesize(digit: Digit, sample_rate: u32, duration_ms: u32, level_dbm0: f32) -> Vec<i16> {
    let (low, high) = digit.frequencies();
    dual_tone(low, high, level_dbm0, level_dbm0, sample_rate, duration_ms)
}

/// Two sines at arbitrary frequencies and per-tone levels (dBm0), both starting at phase 0.
///
/// The general form of [`synthesize`], for twist (`low_dbm0 != high_dbm0`) and off-frequency
/// cases. No ramp is applied: a keypad (and RFC 4733 playout) starts and stops abruptly too, and
/// a ramp would blur the Q.24 duration limits the detector is tested against. Passing a level
/// of `f32::NEG_INFINITY` leaves that tone out (a single tone).
pub fn dual_tone(
    f_low: f32,
    f_high: f32,
    low_dbm0: f32,
    high_dbm0: f32,
    sample_rate: u32,
    duration_ms: u32,
) -> Vec<i16> {
    let n = samples_for(sample_rate, duration_ms);
    let a_low = f64::from(dbm0_to_amplitude(low_dbm0));
    let a_high = f64::from(dbm0_to_amplitude(high_dbm0));
    // Phase per sample in f64: a long tone at 48 kHz would drift in f32.
    let w_low = std::f64::consts::TAU * f64::from(f_low) / f64::from(sample_rate);
    let w_high = std::f64::consts::TAU * f64::from(f_high) / f64::from(sample_rate);
    (0..n)
        .map(|i| {
            let t = i as f64;
            let v = a_low * (w_low * t).sin() + a_high * (w_high * t).sin();
            v.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
        })
        .collect()
}

/// `duration_ms` of digital silence.
pub fn silence(sample_rate: u32, duration_ms: u32) -> Vec<i16> {
    vec![0; samples_for(sample_rate, duration_ms)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(pcm: &[i16]) -> f64 {
        (pcm.iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum::<f64>()
            / pcm.len() as f64)
            .sqrt()
    }

    #[test]
    fn level_convention_round_trips_and_matches_g711() {
        assert!((dbm0_to_amplitude(0.0) - 22_750.0).abs() < 10.0);
        assert!((dbm0_to_amplitude(3.17) - 32_768.0).abs() < 1.0);
        for l in [-40.0f32, -25.0, -10.0, 0.0, 3.0] {
            assert!((amplitude_to_dbm0(dbm0_to_amplitude(l)) - l).abs() < 1e-3);
        }
    }

    #[test]
    fn synthesized_tone_has_the_requested_length_and_power() {
        let d = Digit::from_char('5').unwrap();
        for rate in [8000, 16000, 48000] {
            let pcm = synthesize(d, rate, 100, -10.0);
            assert_eq!(pcm.len(), rate as usize / 10);
            // Two equal tones: rms = a·sqrt(2)/sqrt(2) = a.
            let a = f64::from(dbm0_to_amplitude(-10.0));
            assert!(
                (rms(&pcm) / a - 1.0).abs() < 0.01,
                "rms {} vs {a}",
                rms(&pcm)
            );
        }
        assert_eq!(silence(8000, 20), vec![0; 160]);
    }

    #[test]
    fn loud_dual_tones_saturate_instead_of_wrapping() {
        let pcm = dual_tone(697.0, 1209.0, 0.0, 0.0, 8000, 50);
        assert!(pcm.contains(&i16::MAX));
        assert!(pcm.contains(&i16::MIN));
        let single = dual_tone(697.0, 1209.0, -10.0, f32::NEG_INFINITY, 8000, 50);
        let a = f64::from(dbm0_to_amplitude(-10.0));
        assert!((rms(&single) * 2f64.sqrt() / a - 1.0).abs() < 0.01);
    }
}
