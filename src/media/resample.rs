//! Sample-rate conversion with rubato (FFT-based, synchronous ratios such as 22050 -> 8000).
//!
//! Prompts are converted once at start, so this favours quality over speed; the FFT resampler
//! also low-pass filters, so no aliasing folds speech energy into the DTMF band.

use rubato::{FftFixedIn, Resampler};

#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    #[error("cannot resample {from} Hz to {to} Hz: {reason}")]
    Setup { from: u32, to: u32, reason: String },
    #[error("resampling failed: {0}")]
    Process(String),
}

/// Converts a whole mono signal from `from` Hz to `to` Hz, compensating the filter delay so the
/// output lines up with the input sample for sample.
pub fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, ResampleError> {
    if from == to {
        return Ok(input.to_vec());
    }
    const CHUNK: usize = 1024;
    let mut r = FftFixedIn::<f32>::new(from as usize, to as usize, CHUNK, 2, 1).map_err(|e| {
        ResampleError::Setup {
            from,
            to,
            reason: e.to_string(),
        }
    })?;
    let delay = r.output_delay();
    let expected = (input.len() as u64 * to as u64 / from as u64) as usize;
    let mut out = Vec::with_capacity(expected + delay + CHUNK);
    let mut outbuf = r.output_buffer_allocate(true);
    let mut pos = 0;
    // Feed whole chunks, then the tail, then zeros until the delayed output has drained.
    while out.len() < expected + delay {
        let need = r.input_frames_next();
        let end = (pos + need).min(input.len());
        let (_, written) = if end - pos == need {
            r.process_into_buffer(&[&input[pos..end]], &mut outbuf, None)
        } else if end > pos {
            r.process_partial_into_buffer(Some(&[&input[pos..end]]), &mut outbuf, None)
        } else {
            r.process_partial_into_buffer(None::<&[&[f32]]>, &mut outbuf, None)
        }
        .map_err(|e| ResampleError::Process(e.to_string()))?;
        out.extend_from_slice(&outbuf[0][..written]);
        pos = end;
    }
    out.drain(..delay.min(out.len()));
    out.truncate(expected);
    Ok(out)
}

/// i16 -> f32 in [-1, 1).
pub fn to_f32(pcm: &[i16]) -> Vec<f32> {
    pcm.iter().map(|&s| s as f32 / 32768.0).collect()
}

/// f32 -> i16 with saturation.
pub fn to_i16(pcm: &[f32]) -> Vec<i16> {
    pcm.iter()
        .map(|&s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f32, rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    #[test]
    fn length_and_frequency_survive_conversion() {
        for (from, to) in [(22050, 8000), (8000, 48000), (48000, 8000), (44100, 16000)] {
            let input = sine(1000.0, from, from as usize); // one second
            let out = resample(&input, from, to).unwrap();
            assert_eq!(out.len(), to as usize, "{from}->{to}");
            // Compare with an ideal 1 kHz sine at the new rate, away from the edges.
            let ideal = sine(1000.0, to, to as usize);
            let mid = to as usize / 4..to as usize * 3 / 4;
            let err: f32 = mid
                .clone()
                .map(|i| (out[i] - ideal[i]).abs())
                .fold(0.0, f32::max);
            assert!(err < 0.05, "{from}->{to}: max error {err}");
        }
    }

    #[test]
    fn any_length_converts_including_exact_chunk_multiples() {
        for n in [0usize, 1, 1023, 1024, 2048, 3000, 4096] {
            let input = sine(440.0, 16000, n);
            let out = resample(&input, 16000, 8000).unwrap();
            assert_eq!(out.len(), n / 2, "{n} samples");
        }
    }

    #[test]
    fn energy_above_the_new_nyquist_is_removed() {
        // A 6 kHz tone does not exist at 8 kHz; it must not fold down to 2 kHz.
        let input = sine(6000.0, 48000, 48000);
        let out = resample(&input, 48000, 8000).unwrap();
        let rms = (out[2000..6000].iter().map(|s| s * s).sum::<f32>() / 4000.0).sqrt();
        assert!(rms < 0.01, "aliased energy {rms}");
    }
}
