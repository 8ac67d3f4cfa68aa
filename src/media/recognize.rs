//! Which prompt did a caller hear? Finds a known prompt inside received audio.
//!
//! Used by the tests and the load tester to check what a caller actually heard, not just
//! that signaling succeeded. Two measures, both normalized cross-correlations:
//! - the 10 ms loudness envelope, which survives lossy codecs (Opus keeps loudness, not
//!   waveform) and finds the position cheaply;
//! - the waveform around that position, which tells apart two prompts with similar rhythm
//!   (G.711 keeps it almost exactly).

/// 10 ms at 8 kHz.
const BLOCK: usize = 80;

/// Where a prompt was found and how well it matched (1.0 = identical).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    /// Sample offset (8 kHz) of the prompt's first sample in the received audio.
    pub offset: usize,
    pub envelope_score: f32,
    pub waveform_score: f32,
}

impl Match {
    /// The offset in milliseconds.
    pub fn offset_ms(&self) -> u64 {
        (self.offset / 8) as u64
    }
}

/// RMS of each 10 ms block.
pub fn envelope(pcm: &[i16]) -> Vec<f32> {
    pcm.chunks(BLOCK)
        .map(|b| (b.iter().map(|&s| (s as f32) * (s as f32)).sum::<f32>() / b.len() as f32).sqrt())
        .collect()
}

/// Finds the best position of `needle` (8 kHz PCM) in `haystack` (8 kHz PCM), searching
/// the whole haystack. `None` when the haystack is shorter than the needle or silent.
pub fn find(haystack: &[i16], needle: &[i16]) -> Option<Match> {
    find_from(haystack, needle, 0)
}

/// Like [`find`], ignoring everything before sample `from`.
pub fn find_from(haystack: &[i16], needle: &[i16], from: usize) -> Option<Match> {
    let hay_env = envelope(haystack);
    let needle_env = envelope(needle);
    let start_block = from / BLOCK;
    if needle_env.len() < 2 || hay_env.len() < start_block + needle_env.len() {
        return None;
    }
    let mut best: Option<(usize, f32)> = None;
    for block in start_block..=hay_env.len() - needle_env.len() {
        let score = ncc(&hay_env[block..block + needle_env.len()], &needle_env);
        if best.is_none_or(|(_, b)| score > b) {
            best = Some((block, score));
        }
    }
    let (block, envelope_score) = best?;
    // Refine to the sample around the block position (± one block).
    let centre = block * BLOCK;
    let lo = centre.saturating_sub(BLOCK).max(from);
    let hi = (centre + BLOCK).min(haystack.len().saturating_sub(needle.len()));
    let mut fine = (centre.min(hi), f32::MIN);
    for offset in lo..=hi.max(lo) {
        if offset + needle.len() > haystack.len() {
            break;
        }
        let s = ncc_i16(&haystack[offset..offset + needle.len()], needle);
        if s > fine.1 {
            fine = (offset, s);
        }
    }
    Some(Match {
        offset: fine.0,
        envelope_score,
        waveform_score: fine.1.max(0.0),
    })
}

/// Normalized cross-correlation of two equal-length sequences (mean removed).
fn ncc(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len()) as f32;
    let ma = a.iter().sum::<f32>() / n;
    let mb = b.iter().sum::<f32>() / n;
    let (mut num, mut da, mut db) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x - ma, y - mb);
        num += x * y;
        da += x * x;
        db += y * y;
    }
    if da <= f32::EPSILON || db <= f32::EPSILON {
        0.0
    } else {
        num / (da.sqrt() * db.sqrt())
    }
}

fn ncc_i16(a: &[i16], b: &[i16]) -> f32 {
    let (mut num, mut da, mut db) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        num += x * y;
        da += x * x;
        db += y * y;
    }
    if da <= 0.0 || db <= 0.0 {
        0.0
    } else {
        (num / (da.sqrt() * db.sqrt())) as f32
    }
}

/// How much of `pcm`'s power (sampled at `rate` Hz) lies at `hz` (Goertzel): about 1.0 for
/// a pure tone there, near 0 for anything else. Audio quieter than about -62 dBFS (RMS 25,
/// below G.711's idle noise) is silence and has no tone: 0. Tests and tools use it to tell
/// which of two tones went which way through a bridge, or whether hold music is playing.
pub fn tone_share(pcm: &[i16], hz: f32, rate: u32) -> f64 {
    if pcm.is_empty() {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * hz as f64 / rate as f64;
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in pcm {
        let s0 = x as f64 + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    let total: f64 = pcm.iter().map(|&x| (x as f64).powi(2)).sum();
    if total / (pcm.len() as f64) < 625.0 {
        return 0.0;
    }
    2.0 * power / (pcm.len() as f64 * total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A speech-like test signal: a carrier with a syllable-rate loudness pattern.
    fn phrase(seed: u32, ms: usize) -> Vec<i16> {
        let mut x = seed;
        (0..ms * 8)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let syllable = ((i / 1200) as u32).wrapping_mul(seed | 1) % 7;
                let loud = if syllable < 2 {
                    0.05
                } else {
                    syllable as f32 / 7.0
                };
                let carrier = (i as f32 * (0.05 + (seed % 5) as f32 * 0.03)).sin();
                let noise = (x % 2000) as f32 / 2000.0 - 0.5;
                ((carrier * 0.8 + noise * 0.2) * loud * 12000.0) as i16
            })
            .collect()
    }

    fn embed(parts: &[&[i16]], gap: usize) -> Vec<i16> {
        let mut out = vec![0i16; gap];
        for p in parts {
            out.extend_from_slice(p);
            out.extend(std::iter::repeat_n(0, gap));
        }
        out
    }

    #[test]
    fn finds_the_right_prompt_at_the_right_place() {
        let a = phrase(1, 1500);
        let b = phrase(2, 1200);
        let heard = embed(&[&a, &b], 4000);
        let m = find(&heard, &a).unwrap();
        assert_eq!(m.offset, 4000);
        assert!(m.envelope_score > 0.99 && m.waveform_score > 0.99, "{m:?}");
        let m = find(&heard, &b).unwrap();
        assert_eq!(m.offset, 4000 + a.len() + 4000);
    }

    #[test]
    fn a_prompt_that_was_not_played_scores_low() {
        let a = phrase(1, 1500);
        let c = phrase(3, 1500);
        let heard = embed(&[&a], 4000);
        let m = find(&heard, &c).unwrap();
        assert!(m.waveform_score < 0.3, "{m:?}");
    }

    #[test]
    fn survives_noise_and_g711() {
        let a = phrase(4, 2000);
        let mut heard = embed(&[&a], 2400);
        let mut x = 7u32;
        for s in heard.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let noisy = *s as i32 + (x % 600) as i32 - 300;
            let coded =
                crate::media::codec::g711::linear_to_ulaw(noisy.clamp(-32768, 32767) as i16);
            *s = crate::media::codec::g711::ulaw_to_linear(coded);
        }
        let m = find(&heard, &a).unwrap();
        assert!((2390..=2410).contains(&m.offset), "{m:?}");
        assert!(m.waveform_score > 0.9, "{m:?}");
    }

    #[test]
    fn too_short_or_silent_input_finds_nothing_useful() {
        let a = phrase(1, 500);
        assert!(find(&a[..100], &a).is_none());
        let silence = vec![0i16; 8000];
        let m = find(&silence, &a).unwrap();
        assert_eq!(m.waveform_score, 0.0);
    }

    #[test]
    fn a_tone_is_found_at_its_frequency_only_and_silence_has_none() {
        let tone = |hz: f32| -> Vec<i16> {
            (0..1600)
                .map(|n| {
                    (8000.0 * (2.0 * std::f32::consts::PI * hz * n as f32 / 8000.0).sin()) as i16
                })
                .collect()
        };
        assert!(tone_share(&tone(440.0), 440.0, 8000) > 0.95);
        assert!(tone_share(&tone(440.0), 1000.0, 8000) < 0.01);
        assert_eq!(tone_share(&[0; 1600], 440.0, 8000), 0.0);
        assert_eq!(
            tone_share(&[8; 1600], 440.0, 8000),
            0.0,
            "G.711 idle noise is silence"
        );
        assert_eq!(tone_share(&[], 440.0, 8000), 0.0);
    }
}
