//! ITU-T G.711 µ-law and A-law.
//!
//! Decoding uses 256-entry tables built at compile time; encoding uses the segment search
//! of the reference implementation (Sun's g711.c, public domain), which is a handful of
//! integer ops per sample. Both run on every received/sent frame, so they must not allocate.

const BIAS: i32 = 0x84;
const CLIP: i32 = 32635;

/// Encodes one 16-bit linear sample as µ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut pcm = sample as i32;
    let mask: i32 = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    pcm = pcm.min(CLIP) + BIAS;
    // Segment = position of the highest set bit above bit 7 (0..=7).
    let seg = significant_bits(pcm >> 8).min(7);
    let uval = (seg << 4) | ((pcm >> (seg + 3)) & 0x0F);
    (uval ^ mask) as u8
}

/// Decodes one µ-law byte to 16-bit linear.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    ULAW_TABLE[byte as usize]
}

/// Encodes one 16-bit linear sample as A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut pcm = (sample as i32) >> 3; // A-law works on 13-bit magnitudes
    let mask: i32 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    // Segment = position of the highest set bit above bit 4 (0..=7); beyond that, clip.
    let seg = significant_bits(pcm >> 5);
    let aval = if seg >= 8 {
        0x7F
    } else if seg < 2 {
        (seg << 4) | ((pcm >> 1) & 0x0F)
    } else {
        (seg << 4) | ((pcm >> seg) & 0x0F)
    };
    (aval ^ mask) as u8
}

/// Decodes one A-law byte to 16-bit linear.
pub fn alaw_to_linear(byte: u8) -> i16 {
    ALAW_TABLE[byte as usize]
}

/// Number of significant bits of a non-negative value (0 for 0).
fn significant_bits(v: i32) -> i32 {
    32 - v.max(0).leading_zeros() as i32
}

const fn ulaw_decode(byte: u8) -> i16 {
    let u = !byte;
    let t = ((((u & 0x0F) as i32) << 3) + BIAS) << ((u as i32 & 0x70) >> 4);
    if u & 0x80 != 0 {
        (BIAS - t) as i16
    } else {
        (t - BIAS) as i16
    }
}

const fn alaw_decode(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    t = match seg {
        0 => t + 8,
        1 => t + 0x108,
        _ => (t + 0x108) << (seg - 1),
    };
    if a & 0x80 != 0 { t as i16 } else { -t as i16 }
}

static ULAW_TABLE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_decode(i as u8);
        i += 1;
    }
    t
};

static ALAW_TABLE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_decode(i as u8);
        i += 1;
    }
    t
};

/// Encodes a frame, appending to `out`.
pub fn encode_ulaw(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&s| linear_to_ulaw(s)));
}

pub fn encode_alaw(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&s| linear_to_alaw(s)));
}

/// Decodes a frame, appending to `out`.
pub fn decode_ulaw(bytes: &[u8], out: &mut Vec<i16>) {
    out.extend(bytes.iter().map(|&b| ulaw_to_linear(b)));
}

pub fn decode_alaw(bytes: &[u8], out: &mut Vec<i16>) {
    out.extend(bytes.iter().map(|&b| alaw_to_linear(b)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_survives_decode_encode() {
        for b in 0..=255u8 {
            // µ-law has two zeros (0x7F and 0xFF); both decode to 0, which encodes to 0xFF.
            let back = linear_to_ulaw(ulaw_to_linear(b));
            assert_eq!(ulaw_to_linear(back), ulaw_to_linear(b), "ulaw {b:#x}");
            let back = linear_to_alaw(alaw_to_linear(b));
            assert_eq!(back, b, "alaw {b:#x}");
        }
    }

    #[test]
    fn silence_and_extremes_use_the_standard_codes() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
    }

    /// A correct quantizer maps every sample to one of the two decode levels around it.
    fn check_nearest_levels(encode: fn(i16) -> u8, decode: fn(u8) -> i16, name: &str) {
        let mut levels: Vec<i32> = (0..=255u8).map(|b| decode(b) as i32).collect();
        levels.sort();
        levels.dedup();
        for s in i16::MIN..=i16::MAX {
            let s32 = s as i32;
            let got = decode(encode(s)) as i32;
            let below = levels
                .iter()
                .rev()
                .find(|&&l| l <= s32)
                .copied()
                .unwrap_or(levels[0]);
            let above = levels
                .iter()
                .find(|&&l| l >= s32)
                .copied()
                .unwrap_or(*levels.last().unwrap());
            assert!(
                got == below || got == above,
                "{name}: {s} -> {got}, levels around are {below} and {above}"
            );
        }
    }

    #[test]
    fn every_sample_lands_on_an_adjacent_level() {
        check_nearest_levels(linear_to_ulaw, ulaw_to_linear, "ulaw");
        check_nearest_levels(linear_to_alaw, alaw_to_linear, "alaw");
    }

    #[test]
    fn quantization_error_stays_within_the_segment_step() {
        for s in (-32768i32..32767).step_by(7) {
            let s = s as i16;
            let u = ulaw_to_linear(linear_to_ulaw(s)) as i32;
            let a = alaw_to_linear(linear_to_alaw(s)) as i32;
            // The largest step in either law is 1024 (µ) / 1024 (A) at the top segment.
            assert!((u - s as i32).abs() <= 1024, "ulaw {s} -> {u}");
            assert!((a - s as i32).abs() <= 1024, "alaw {s} -> {a}");
            if (s as i32).abs() < 100 {
                assert!((u - s as i32).abs() <= 8, "ulaw small {s} -> {u}");
                assert!((a - s as i32).abs() <= 16, "alaw small {s} -> {a}");
            }
        }
    }
}
