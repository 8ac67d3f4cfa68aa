//! In-band DTMF detection (ITU-T Q.23 tones, Q.24 receiver limits), sans-IO.
//!
//! [`InbandDetector`] is fed linear PCM and returns [`ToneEvent`]s; it owns no clock and does no
//! I/O, so the media path calls it on each decoded frame and tests drive it with synthetic audio.
//!
//! # Design
//!
//! Eight Goertzel filters (the Q.23 low group 697/770/852/941 Hz and high group
//! 1209/1336/1477/1633 Hz) run over *half-blocks* of `S` samples; two consecutive half-blocks
//! are phase-aligned and summed into one analysis block of `N = 2S` samples, so blocks overlap by
//! half and a new block is judged every `S` samples while each sample goes through the filters
//! once.
//!
//! **Block length.** `S = 51` samples at 8 kHz (`N = 102`, 12.75 ms), scaled with the rate
//! (`S = 102` at 16 kHz, `306` at 48 kHz), so every figure below holds at every rate.
//! - *Group separation.* The main lobe of an `N`-point block is `fs/N = 78.4 Hz` wide to its
//!   first null; the closest pair of Q.23 tones is 697/770 Hz (73 Hz, 0.93 bin), where a tone
//!   leaks −22 dB into its neighbour's filter, and still about −12 dB when it is 1.5% off
//!   towards it, so "each tone at least 6 dB above the rest of its group" holds for every
//!   tone Q.24 makes us accept. A longer block would separate better but hurts the duration
//!   rule below; a shorter one could not tell 697 from 770 Hz.
//! - *Frequency tolerance.* Magnitude alone cannot meet Q.24 here: a tone 3.5% off 697 Hz
//!   (24 Hz, 0.31 bin) still reaches −1.5 dB in its filter. So the frequency is *measured*
//!   instead, from the phase advance of a filter's output between two consecutive blocks,
//!   `Δφ = 2π·Δf·S/fs`: unambiguous for `|Δf| < fs/(2S) = 78.4 Hz`, which covers ±4.8% of
//!   1633 Hz, and well beyond that the filter's magnitude is near its null and the neighbour
//!   filter wins. A tone is accepted within ±2.5% ([`FREQ_TOLERANCE`]), halfway between Q.24's
//!   ±1.5% must-accept and ±3.5% must-reject. At 15 dB SNR a block gives the tone ~29 dB of
//!   in-filter SNR, so the estimate is good to about ±1 Hz (1.5% of 697 Hz is 10.5 Hz).
//!   Measured on all 16 digits at 8/16/48 kHz, the acceptance edges lie between ±2.1% and
//!   ±2.6%.
//! - *Duration (Q.24: accept ≥ 40 ms, reject ≤ 20 ms).* A block passes the energy checks
//!   when the tone fills at least [`MIN_TONE_TO_TOTAL`] = 0.7 of it (a tone covering a
//!   fraction `c` of a block gives `c` as tone-to-total energy ratio). A *hit* is a block that
//!   passes together with its predecessor, with both frequencies in tolerance measured across
//!   the pair; a digit is confirmed after [`CONFIRM_HITS`] = 3 consecutive hits, i.e. 4
//!   consecutive passing blocks spanning `N + 3S = 255` samples (31.9 ms).
//!   A 40 ms tone (320 samples) always contains `⌊(320 − N)/S⌋ = 4` whole blocks: accepted
//!   (by whole blocks alone from 38.3 ms on). A 20 ms tone (160 samples) can cover ≥ 70% of
//!   blocks whose starts lie in an interval of `160 + N − 2·0.7·N = 119` samples, so at most
//!   3 blocks pass: 2 hits, rejected. Measured over alignments: nothing under 24.6 ms is
//!   accepted, everything over 30.2 ms is. `Started` comes 28-34 ms into the tone.
//! - *Pause and dropout (Q.24: 40 ms pause separates digits; a ≤ 10 ms break must not).* A
//!   digit ends after [`END_MISSES`] = 6 blocks in a row without a hit. A 10 ms dropout
//!   (80 samples) leaves less than 70% tone in at most 3 blocks, which costs at most 4 hits
//!   (the block after also pairs with a failed one): the digit holds. A 40 ms pause spoils
//!   at least 7 blocks (8 hits): two presses of the same key give two digits. `Ended` comes
//!   35-43 ms after the tone stops; its `duration_ms` was measured within −6/+5 ms.
//!
//! **Guards against speech and music (Q.24 "talk-off").** Per block: both groups must have a
//! tone; each must be [`MIN_GROUP_MARGIN_DB`] above every other filter of its group and reach
//! [`MIN_LEVEL_DBM0`]. Per pair of consecutive blocks: both frequencies within ±2.5%; in both
//! blocks, twist within limits and the two tones carrying [`MIN_TONE_TO_TOTAL`] of the block's
//! whole energy (speech spreads its energy over many harmonics and formants); and the
//! high-group tone's second harmonic [`MIN_HARMONIC_MARGIN_DB`] below it (the classic
//! second-harmonic check; a voice or an instrument whose two partials happen to sit on a DTMF
//! pair has harmonics, a keypad has next to none). All of it must hold for 4 consecutive
//! overlapping blocks.
//!
//! **Twist (Q.24).** Accepted up to [`MAX_NORMAL_TWIST_DB`] = 10 dB with the low tone louder
//! and [`MAX_REVERSE_TWIST_DB`] = 6 dB with the high tone louder: 2 dB of margin on each side of
//! the required 8 dB / 4 dB (measured edges: 9.5 dB and 5.5 dB). Before the twist and energy-share checks, each tone's power is
//! corrected for its filter's loss at the measured offset (`(sin Δφ/Δφ)²`: 1.5 dB for a
//! 1.5%-off 1633 Hz tone, 4.3 dB at the 2.5% edge), so off-frequency tones are judged at their
//! true level.
//!
//! Levels use the dBm0 convention of [`super::tone`] (0 dBm0 = 3.17 dB below full scale).
//!
//! **Cost.** Per input sample: 8 Goertzel recursions (one multiply, two adds each, f32, laid
//! out as arrays the compiler vectorises) plus one multiply-add for the energy. Per `S`
//! samples: 8 complex rotations and a handful of comparisons; the phase measurement (two
//! `atan2`, two `sin`) only when two blocks in a row pick the same pair of filters, and the
//! second-harmonic Goertzel (`N` more recursions) only for a block that passed everything
//! else. Nothing is allocated after `new` (which allocates the `N`-sample block buffer).
//! Measured in a release build: 5 ns per sample at 8 kHz, 3.6 ns at 48 kHz (one core
//! handles about 25 000 concurrent 8 kHz streams).
//!
//! # Example
//!
//! A caller keys 5 (60 ms of tone at −10 dBm0, as a phone sends it) between two silences, fed
//! in 20 ms frames as the media clock decodes them: one start, one end.
//!
//! ```
//! use careline::media::dtmf::Digit;
//! use careline::media::dtmf::inband::{InbandDetector, ToneEvent};
//! use careline::media::dtmf::tone::{silence, synthesize};
//!
//! let five = Digit::from_char('5').unwrap();
//! let mut audio = silence(8000, 100);
//! audio.extend(synthesize(five, 8000, 60, -10.0));
//! audio.extend(silence(8000, 200));
//! let mut detector = InbandDetector::new(8000);
//! let mut events = Vec::new();
//! for frame in audio.chunks(160) {
//!     detector.push(frame, &mut events);
//! }
//! assert_eq!(events.len(), 2);
//! assert_eq!(events[0], ToneEvent::Started(five));
//! assert!(matches!(events[1], ToneEvent::Ended { digit, duration_ms }
//!     if digit == five && (50..=70).contains(&duration_ms)));
//! ```

use super::Digit;
use super::tone::dbm0_to_amplitude;

/// Q.23 low-group frequencies (Hz), keypad rows.
const LOW: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// Q.23 high-group frequencies (Hz), keypad columns.
const HIGH: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// Filters 0..4 are the low group, 4..8 the high group.
const FILTERS: usize = 8;

/// Half-block length at 8 kHz (see the module docs); scaled with the sample rate.
const HALF_BLOCK_AT_8K: u32 = 51;
/// Largest accepted frequency deviation, as a fraction of nominal (Q.24: accept ±1.5%,
/// reject beyond ±3.5%).
pub const FREQ_TOLERANCE: f32 = 0.025;
/// Weakest tone accepted, per tone (Q.24 asks for at least −25 dBm0; 10 dB of room for an
/// 8 dB normal twist on top of a −25 dBm0 low tone).
pub const MIN_LEVEL_DBM0: f32 = -35.0;
/// Largest accepted normal twist (low tone louder), dB. Q.24: accept 8 dB.
pub const MAX_NORMAL_TWIST_DB: f32 = 10.0;
/// Largest accepted reverse twist (high tone louder), dB. Q.24: accept 4 dB.
pub const MAX_REVERSE_TWIST_DB: f32 = 6.0;
/// How far each tone must stand above every other filter of its group, dB.
pub const MIN_GROUP_MARGIN_DB: f32 = 6.0;
/// How far below the high-group tone its second harmonic must stay, dB. Q.23 keeps a sender's
/// distortion products 20 dB down; voices and instruments have strong second harmonics.
pub const MIN_HARMONIC_MARGIN_DB: f32 = 15.0;
/// Share of the block's total energy the two tones must carry.
pub const MIN_TONE_TO_TOTAL: f32 = 0.7;
/// Consecutive hits that confirm a digit ([`ToneEvent::Started`]).
pub const CONFIRM_HITS: u32 = 3;
/// Consecutive blocks without a hit that end a digit ([`ToneEvent::Ended`]).
pub const END_MISSES: u32 = 6;

/// What the detector reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToneEvent {
    /// A keypress was confirmed; reported once per press, about 30 ms into the tone.
    Started(Digit),
    /// The tone of the digit last reported as started has stopped (reported about 40 ms after
    /// it did). `duration_ms` estimates the tone's length, to within about one block step
    /// (6.4 ms).
    Ended { digit: Digit, duration_ms: u32 },
}

/// A complex number, just what the filters need.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct C {
    re: f32,
    im: f32,
}

impl C {
    fn from_angle(a: f64) -> C {
        C {
            re: a.cos() as f32,
            im: a.sin() as f32,
        }
    }
    fn mul(self, o: C) -> C {
        C {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
    fn mul_conj(self, o: C) -> C {
        C {
            re: self.re * o.re + self.im * o.im,
            im: self.im * o.re - self.re * o.im,
        }
    }
    fn add(self, o: C) -> C {
        C {
            re: self.re + o.re,
            im: self.im + o.im,
        }
    }
    fn norm_sqr(self) -> f32 {
        self.re * self.re + self.im * self.im
    }
}

/// One analysis block: its DFT at the eight frequencies, its energy, and the filters that
/// [`InbandDetector::pick`] chose (low, high).
#[derive(Clone, Copy, Debug)]
struct Block {
    x: [C; FILTERS],
    energy: f32,
    pick: Option<(usize, usize)>,
}

#[derive(Clone, Copy, Debug)]
struct Active {
    digit: Digit,
    /// Sample position where the first passing block of this tone began.
    start: u64,
    /// Sample position where the last hit block ended.
    last_hit_end: u64,
    misses: u32,
}

/// Constants fixed by the sample rate.
#[derive(Clone, Debug)]
struct Setup {
    sample_rate: u32,
    /// Half-block length `S`; blocks are `2S` long and advance by `S`.
    half: usize,
    /// Goertzel coefficient `2·cos ω` per filter.
    coef: [f32; FILTERS],
    /// `2·cos 2ω`: the same at each filter's second harmonic (only the high group's are used).
    coef2: [f32; FILTERS],
    /// `cos ω` and `sin ω`, to turn the final filter state into a complex output.
    cos_w: [f32; FILTERS],
    sin_w: [f32; FILTERS],
    /// `e^{-jω(S−1)}` and `e^{-jω(2S−1)}`: put the outputs of the first and second half on the
    /// phase reference of the block start, so their sum is the `2S`-point DFT at `ω`.
    rot_first: [C; FILTERS],
    rot_second: [C; FILTERS],
    /// `e^{-jωS}`: the phase a nominal tone advances by from one block to the next.
    step: [C; FILTERS],
    /// Largest accepted phase deviation per block step (radians) for each filter.
    max_dphi: [f32; FILTERS],
    /// Block power `|X|²` of a tone at [`MIN_LEVEL_DBM0`] (`(A·N/2)²`).
    min_power: f32,
    /// `2/N`: turns `|X|²` into the tone's energy within the block (`N·A²/2`).
    power_to_energy: f32,
    normal_twist: f32,
    reverse_twist: f32,
    group_margin: f32,
    harmonic_margin: f32,
    /// `keypad[row][col]`.
    keypad: [[Digit; 4]; 4],
}

impl Setup {
    fn new(sample_rate: u32) -> Setup {
        let sample_rate = sample_rate.max(8000);
        let half = ((u64::from(HALF_BLOCK_AT_8K) * u64::from(sample_rate) + 4000) / 8000) as usize;
        let n = 2 * half;
        let mut s = Setup {
            sample_rate,
            half,
            coef: [0.0; FILTERS],
            coef2: [0.0; FILTERS],
            cos_w: [0.0; FILTERS],
            sin_w: [0.0; FILTERS],
            rot_first: [C::default(); FILTERS],
            rot_second: [C::default(); FILTERS],
            step: [C::default(); FILTERS],
            max_dphi: [0.0; FILTERS],
            min_power: {
                let a = dbm0_to_amplitude(MIN_LEVEL_DBM0) * n as f32 / 2.0;
                a * a
            },
            power_to_energy: 2.0 / n as f32,
            normal_twist: db_to_power_ratio(MAX_NORMAL_TWIST_DB),
            reverse_twist: db_to_power_ratio(MAX_REVERSE_TWIST_DB),
            group_margin: db_to_power_ratio(MIN_GROUP_MARGIN_DB),
            harmonic_margin: db_to_power_ratio(MIN_HARMONIC_MARGIN_DB),
            keypad: [[Digit::ALL[0]; 4]; 4],
        };
        for (i, &f) in LOW.iter().chain(HIGH.iter()).enumerate() {
            // Coefficients in f64, stored as f32: at 48 kHz `cos ω` is close to 1.
            let w = std::f64::consts::TAU * f64::from(f) / f64::from(sample_rate);
            s.coef[i] = (2.0 * w.cos()) as f32;
            s.coef2[i] = (2.0 * (2.0 * w).cos()) as f32;
            s.cos_w[i] = w.cos() as f32;
            s.sin_w[i] = w.sin() as f32;
            s.rot_first[i] = C::from_angle(-w * (half as f64 - 1.0));
            s.rot_second[i] = C::from_angle(-w * (2.0 * half as f64 - 1.0));
            s.step[i] = C::from_angle(-w * half as f64);
            s.max_dphi[i] =
                (std::f64::consts::TAU * f64::from(FREQ_TOLERANCE) * f64::from(f) * half as f64
                    / f64::from(sample_rate)) as f32;
        }
        for d in Digit::ALL {
            let (lo, hi) = d.frequencies();
            let row = LOW.iter().position(|&f| f == lo);
            let col = HIGH.iter().position(|&f| f == hi);
            if let (Some(r), Some(c)) = (row, col) {
                s.keypad[r][c] = d;
            }
        }
        s
    }
}

/// Power gain of an `N = 2S`-point block's filter for a tone whose phase drifts by `dphi` per
/// step of `S`: the offset is `dphi/π` bins, and the rectangular window's response there is
/// `sin(dphi)/(N·sin(dphi/N)) ≈ sin(dphi)/dphi`.
fn offset_power_gain(dphi: f32) -> f32 {
    if dphi.abs() < 1e-3 {
        return 1.0;
    }
    let g = dphi.sin() / dphi;
    g * g
}

fn db_to_power_ratio(db: f32) -> f32 {
    10f32.powf(db / 10.0)
}

/// Sans-IO in-band DTMF detector for one audio stream (one direction of one call).
///
/// Feed it PCM with [`push`](Self::push) in chunks of any length; it reports
/// [`ToneEvent::Started`] once per keypress as soon as the tone is confirmed and
/// [`ToneEvent::Ended`] when it stops. See the module docs for the design and Q.24 figures.
#[derive(Clone, Debug)]
pub struct InbandDetector {
    setup: Setup,
    // Goertzel state of the half-block being filled.
    s1: [f32; FILTERS],
    s2: [f32; FILTERS],
    energy: f32,
    filled: usize,
    /// Samples consumed in completed half-blocks.
    position: u64,
    /// The samples of the current block, for the second-harmonic check: two slots of `S`,
    /// filled alternately (half-block `h` goes to slot `h % 2`). Allocated once, in `new`.
    samples: Vec<i16>,
    /// Output and energy of the last completed half-block.
    prev_half: Option<([C; FILTERS], f32)>,
    /// The last block.
    prev_block: Option<Block>,
    /// Consecutive hits of one digit, and where its first passing block began.
    run: Option<(Digit, u32, u64)>,
    active: Option<Active>,
}

impl InbandDetector {
    /// A detector for PCM at `sample_rate` Hz: 8000, 16000, 48000 or any rate from 8000 up.
    /// Telephony audio is never sampled lower; a lower rate (0 included) is taken as 8000 so
    /// the block arithmetic stays valid, and detection is then meaningless.
    pub fn new(sample_rate: u32) -> Self {
        Self::with_setup(Setup::new(sample_rate))
    }

    fn with_setup(setup: Setup) -> Self {
        InbandDetector {
            samples: vec![0; 2 * setup.half],
            setup,
            s1: [0.0; FILTERS],
            s2: [0.0; FILTERS],
            energy: 0.0,
            filled: 0,
            position: 0,
            prev_half: None,
            prev_block: None,
            run: None,
            active: None,
        }
    }

    pub fn sample_rate(&self) -> u32 {
        self.setup.sample_rate
    }

    /// Forgets all audio and any tone in progress (no `Ended` is reported for it), as after
    /// a media restart.
    pub fn reset(&mut self) {
        // Field by field, keeping `setup` and the `samples` buffer (every half-block slot is
        // rewritten before a block reads it): no allocation.
        self.s1 = [0.0; FILTERS];
        self.s2 = [0.0; FILTERS];
        self.energy = 0.0;
        self.filled = 0;
        self.position = 0;
        self.prev_half = None;
        self.prev_block = None;
        self.run = None;
        self.active = None;
    }

    /// Feeds `pcm` (any length, mono) and appends what it caused to `events`.
    pub fn push(&mut self, pcm: &[i16], events: &mut Vec<ToneEvent>) {
        let mut rest = pcm;
        while !rest.is_empty() {
            let take = (self.setup.half - self.filled).min(rest.len());
            let (now, later) = rest.split_at(take);
            self.filter(now);
            self.filled += take;
            rest = later;
            if self.filled == self.setup.half {
                self.finish_half(events);
            }
        }
    }

    /// The hot loop: every sample through the eight Goertzel recursions.
    fn filter(&mut self, pcm: &[i16]) {
        let at = self.slot(self.half_index()) + self.filled;
        self.samples[at..at + pcm.len()].copy_from_slice(pcm);
        let coef = self.setup.coef;
        let mut s1 = self.s1;
        let mut s2 = self.s2;
        let mut energy = self.energy;
        for &x in pcm {
            let x = f32::from(x);
            energy += x * x;
            for i in 0..FILTERS {
                let s0 = x + coef[i] * s1[i] - s2[i];
                s2[i] = s1[i];
                s1[i] = s0;
            }
        }
        self.s1 = s1;
        self.s2 = s2;
        self.energy = energy;
    }

    /// Index of the half-block being filled.
    fn half_index(&self) -> u64 {
        self.position / self.setup.half as u64
    }

    /// Where half-block `h` lives in `samples`.
    fn slot(&self, h: u64) -> usize {
        (h % 2) as usize * self.setup.half
    }

    /// Power `|X|²` of the current block (the last two half-blocks) at the second harmonic of
    /// filter `i`. Runs only for blocks that already look like a digit.
    fn second_harmonic_power(&self, i: usize) -> f32 {
        let half = self.setup.half;
        // `position` has moved past the block: its halves are h−2 and h−1, which share their
        // slots with h and h+1.
        let h = self.half_index();
        let (first, second) = (self.slot(h), self.slot(h + 1));
        let coef = self.setup.coef2[i];
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        let block = self.samples[first..first + half]
            .iter()
            .chain(&self.samples[second..second + half]);
        for &x in block {
            let s0 = f32::from(x) + coef * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        s1 * s1 + s2 * s2 - coef * s1 * s2
    }

    fn finish_half(&mut self, events: &mut Vec<ToneEvent>) {
        let st = &self.setup;
        // Goertzel output y = s[n] − e^{−jω}·s[n−1] = Σ x[k]·e^{jω(S−1−k)}.
        let mut y = [C::default(); FILTERS];
        for (i, out) in y.iter_mut().enumerate() {
            *out = C {
                re: self.s1[i] - st.cos_w[i] * self.s2[i],
                im: st.sin_w[i] * self.s2[i],
            };
        }
        let energy = self.energy;
        self.s1 = [0.0; FILTERS];
        self.s2 = [0.0; FILTERS];
        self.energy = 0.0;
        self.filled = 0;
        self.position += st.half as u64;

        if let Some((prev_y, prev_energy)) = self.prev_half.replace((y, energy)) {
            let mut x = [C::default(); FILTERS];
            for (i, out) in x.iter_mut().enumerate() {
                *out = prev_y[i]
                    .mul(st.rot_first[i])
                    .add(y[i].mul(st.rot_second[i]));
            }
            self.on_block(x, prev_energy + energy, events);
        }
    }

    /// The strongest filter of each group, if both reach [`MIN_LEVEL_DBM0`] and stand
    /// [`MIN_GROUP_MARGIN_DB`] above the rest of their group.
    fn pick(&self, x: &[C; FILTERS]) -> Option<(usize, usize)> {
        let st = &self.setup;
        let mut p = [0.0f32; FILTERS];
        for (pi, xi) in p.iter_mut().zip(x.iter()) {
            *pi = xi.norm_sqr();
        }
        let stands_out = |range: std::ops::Range<usize>| {
            let mut best = range.start;
            for i in range.clone() {
                if p[i] > p[best] {
                    best = i;
                }
            }
            let clear = range
                .filter(|&i| i != best)
                .all(|i| p[best] >= p[i] * st.group_margin);
            (clear && p[best] >= st.min_power).then_some(best)
        };
        Some((stands_out(0..4)?, stands_out(4..8)?))
    }

    /// Phase deviation (radians) of filter `i` over one block step, against a tone exactly at
    /// its nominal frequency: `2π·Δf·S/fs`.
    fn phase_deviation(&self, prev: &Block, cur: &Block, i: usize) -> f32 {
        let z = cur.x[i].mul_conj(prev.x[i]).mul(self.setup.step[i]);
        z.im.atan2(z.re)
    }

    /// Whether `prev` and `cur` both carry the same digit: same picks, both frequencies within
    /// [`FREQ_TOLERANCE`], and in both blocks twist and energy share within limits.
    fn hit(&self, prev: &Block, cur: &Block) -> Option<Digit> {
        let st = &self.setup;
        let (lo, hi) = cur.pick?;
        if prev.pick != cur.pick {
            return None;
        }
        let (dl, dh) = (
            self.phase_deviation(prev, cur, lo),
            self.phase_deviation(prev, cur, hi),
        );
        if dl.abs() > st.max_dphi[lo] || dh.abs() > st.max_dphi[hi] {
            return None;
        }
        // Undo the filter's loss at the measured offset, so that a tone 1.5% off counts at its
        // true level in the twist and energy-share checks.
        let (gl, gh) = (offset_power_gain(dl), offset_power_gain(dh));
        for b in [prev, cur] {
            let pl = b.x[lo].norm_sqr() / gl;
            let ph = b.x[hi].norm_sqr() / gh;
            if pl > ph * st.normal_twist || ph > pl * st.reverse_twist {
                return None;
            }
            if (pl + ph) * st.power_to_energy < MIN_TONE_TO_TOTAL * b.energy {
                return None;
            }
        }
        // Only the high tone's harmonic (2418..3266 Hz, clear of every Q.23 tone) is checked:
        // the low tones' harmonics (1394..1882 Hz) fall within a bin or so of the high group,
        // whose tone would leak into them at this block length. `cur` is the block held in
        // `samples` (`prev` was checked when it was current).
        if self.second_harmonic_power(hi) * st.harmonic_margin > cur.x[hi].norm_sqr() / gh {
            return None;
        }
        Some(st.keypad[lo][hi - 4])
    }

    fn on_block(&mut self, x: [C; FILTERS], energy: f32, events: &mut Vec<ToneEvent>) {
        let block_end = self.position;
        let block_start = block_end - 2 * self.setup.half as u64;
        let cur = Block {
            x,
            energy,
            pick: self.pick(&x),
        };
        let hit = self
            .prev_block
            .as_ref()
            .and_then(|prev| self.hit(prev, &cur));
        self.prev_block = Some(cur);

        self.run = match (hit, self.run) {
            (Some(d), Some((rd, n, start))) if rd == d => Some((d, n + 1, start)),
            // The run starts with the previous block, the first of the passing pair.
            (Some(d), _) => Some((d, 1, block_start.saturating_sub(self.setup.half as u64))),
            (None, _) => None,
        };

        if let Some(a) = self.active.as_mut() {
            if hit == Some(a.digit) {
                a.misses = 0;
                a.last_hit_end = block_end;
            } else {
                a.misses += 1;
                if a.misses >= END_MISSES {
                    let digit = a.digit;
                    let duration_ms = duration_ms(&self.setup, a.start, a.last_hit_end);
                    self.active = None;
                    events.push(ToneEvent::Ended { digit, duration_ms });
                }
            }
        }
        if self.active.is_none()
            && let Some((digit, n, start)) = self.run
            && n >= CONFIRM_HITS
        {
            self.active = Some(Active {
                digit,
                start,
                last_hit_end: block_end,
                misses: 0,
            });
            events.push(ToneEvent::Started(digit));
        }
    }
}

/// Tone length from the span of its passing blocks. A block passes once the tone fills 70% of
/// it, so the span overshoots the tone by `2·0.3·N` on average, less the `S` lost to block
/// quantisation: about `N/10`, which is taken off.
fn duration_ms(setup: &Setup, start: u64, end: u64) -> u32 {
    let n = 2 * setup.half as u64;
    let samples = end.saturating_sub(start).saturating_sub(n / 10);
    (samples * 1000 / u64::from(setup.sample_rate)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::dtmf::tone::{
        dbm0_to_amplitude, dual_tone, samples_for, silence, synthesize,
    };

    const RATES: [u32; 3] = [8000, 16000, 48000];
    /// Level of the tones in most tests: a typical received level, well inside Q.24's range.
    const LEVEL: f32 = -10.0;

    /// xorshift64* with Box-Muller: deterministic white Gaussian noise, no rand crate.
    struct Noise(u64);

    impl Noise {
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn uniform(&mut self) -> f64 {
            ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        fn gaussian(&mut self) -> f64 {
            let (u1, u2) = (self.uniform(), self.uniform());
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        }
        /// Adds noise of RMS `rms` (16-bit units) to `pcm`, saturating.
        fn add_to(&mut self, pcm: &mut [i16], rms: f64) {
            for s in pcm {
                let v = f64::from(*s) + rms * self.gaussian();
                *s = v.round().clamp(-32768.0, 32767.0) as i16;
            }
        }
    }

    fn concat(parts: &[Vec<i16>]) -> Vec<i16> {
        parts.concat()
    }

    /// `tone` with silence around it (and enough after it for `Ended`).
    fn padded(rate: u32, tone: Vec<i16>) -> Vec<i16> {
        concat(&[silence(rate, 50), tone, silence(rate, 100)])
    }

    fn run_chunks(rate: u32, pcm: &[i16], chunk: usize) -> Vec<ToneEvent> {
        let mut det = InbandDetector::new(rate);
        let mut events = Vec::new();
        for c in pcm.chunks(chunk) {
            det.push(c, &mut events);
        }
        events
    }

    /// Fed in 20 ms frames, as the media path does.
    fn run(rate: u32, pcm: &[i16]) -> Vec<ToneEvent> {
        run_chunks(rate, pcm, samples_for(rate, 20))
    }

    fn started(events: &[ToneEvent]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                ToneEvent::Started(d) => Some(d.to_char()),
                ToneEvent::Ended { .. } => None,
            })
            .collect()
    }

    /// Exactly one keypress of `d`: `Started(d)` then `Ended(d)`.
    fn is_one(events: &[ToneEvent], d: Digit) -> bool {
        matches!(events, [ToneEvent::Started(a), ToneEvent::Ended { digit: b, .. }] if *a == d && *b == d)
    }

    /// Runs `case` for every digit at every rate; collects every failure into one panic.
    fn for_all(what: &str, mut case: impl FnMut(Digit, u32) -> Option<String>) {
        let failures: Vec<String> = RATES
            .iter()
            .flat_map(|&rate| Digit::ALL.iter().map(move |&d| (d, rate)))
            .filter_map(|(d, rate)| case(d, rate).map(|why| format!("{d} @ {rate} Hz: {why}")))
            .collect();
        assert!(
            failures.is_empty(),
            "{what}: {} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    fn expect_one(events: &[ToneEvent], d: Digit, case: &str) -> Option<String> {
        (!is_one(events, d)).then(|| format!("{case}: expected one {d}, got {events:?}"))
    }

    fn expect_none(events: &[ToneEvent], case: &str) -> Option<String> {
        (!events.is_empty()).then(|| format!("{case}: expected nothing, got {events:?}"))
    }

    fn off_tone(d: Digit, rate: u32, low_dev: f32, high_dev: f32, ms: u32) -> Vec<i16> {
        let (lo, hi) = d.frequencies();
        dual_tone(
            lo * (1.0 + low_dev),
            hi * (1.0 + high_dev),
            LEVEL,
            LEVEL,
            rate,
            ms,
        )
    }

    #[test]
    fn every_digit_is_detected_exactly_once_at_nominal_frequency() {
        for_all("nominal", |d, rate| {
            let events = run(rate, &padded(rate, synthesize(d, rate, 100, LEVEL)));
            expect_one(&events, d, "100 ms")
        });
    }

    #[test]
    fn tones_within_1_5_percent_are_accepted() {
        for_all("±1.5%", |d, rate| {
            [
                (0.015, 0.015),
                (-0.015, -0.015),
                (0.015, -0.015),
                (-0.015, 0.015),
            ]
            .iter()
            .find_map(|&(l, h)| {
                let events = run(rate, &padded(rate, off_tone(d, rate, l, h, 80)));
                expect_one(&events, d, &format!("low {l:+}, high {h:+}"))
            })
        });
    }

    #[test]
    fn tones_off_by_3_5_percent_or_more_are_rejected() {
        for_all("±3.5%", |d, rate| {
            [0.035, -0.035, 0.05, -0.05].iter().find_map(|&dev| {
                [(dev, 0.0), (0.0, dev)].iter().find_map(|&(l, h)| {
                    let events = run(rate, &padded(rate, off_tone(d, rate, l, h, 80)));
                    expect_none(&events, &format!("low {l:+}, high {h:+}"))
                })
            })
        });
    }

    /// Q.24: accept 40 ms, reject 20 ms, whatever the tone's alignment to the blocks.
    #[test]
    fn forty_ms_is_accepted_and_twenty_ms_rejected_at_any_alignment() {
        for_all("duration", |d, rate| {
            let half = Setup::new(rate).half;
            (0..4).find_map(|k| {
                let lead = vec![0i16; half * k / 4 + 7];
                let long = concat(&[
                    lead.clone(),
                    synthesize(d, rate, 40, LEVEL),
                    silence(rate, 100),
                ]);
                let short = concat(&[lead, synthesize(d, rate, 20, LEVEL), silence(rate, 100)]);
                expect_one(&run(rate, &long), d, &format!("40 ms, offset {k}/4"))
                    .or_else(|| expect_none(&run(rate, &short), &format!("20 ms, offset {k}/4")))
            })
        });
    }

    #[test]
    fn twist_within_q24_limits_is_accepted_and_beyond_rejected() {
        for_all("twist", |d, rate| {
            let (lo, hi) = d.frequencies();
            let tone = |low_db: f32, high_db: f32| {
                run(
                    rate,
                    &padded(rate, dual_tone(lo, hi, low_db, high_db, rate, 80)),
                )
            };
            expect_one(&tone(-6.0, -14.0), d, "normal twist 8 dB")
                .or_else(|| expect_one(&tone(-14.0, -10.0), d, "reverse twist 4 dB"))
                .or_else(|| expect_none(&tone(-6.0, -18.0), "normal twist 12 dB"))
                .or_else(|| expect_none(&tone(-18.0, -10.0), "reverse twist 8 dB"))
        });
    }

    #[test]
    fn level_range_is_accepted() {
        for_all("levels", |d, rate| {
            [-25.0, -15.0, -6.0, -3.0, 0.0].iter().find_map(|&level| {
                let events = run(rate, &padded(rate, synthesize(d, rate, 60, level)));
                expect_one(&events, d, &format!("{level} dBm0"))
            })
        });
    }

    #[test]
    fn tones_below_the_minimum_level_are_ignored() {
        for_all("too weak", |d, rate| {
            let events = run(
                rate,
                &padded(rate, synthesize(d, rate, 100, MIN_LEVEL_DBM0 - 6.0)),
            );
            expect_none(&events, "min level − 6 dB")
        });
    }

    /// 15 dB SNR: white noise 15 dB below the power of the dual tone (both tones together),
    /// throughout, and at the weakest level of the range too.
    #[test]
    fn tones_in_white_noise_at_15_db_snr_are_detected_once() {
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        for_all("15 dB SNR", |d, rate| {
            [LEVEL, -25.0].iter().find_map(|&level| {
                let mut pcm = padded(rate, synthesize(d, rate, 60, level));
                // Two tones of peak a: power a², noise power a²/10^1.5.
                let a = f64::from(dbm0_to_amplitude(level));
                noise.add_to(&mut pcm, a / 10f64.powf(15.0 / 20.0));
                expect_one(&run(rate, &pcm), d, &format!("{level} dBm0"))
            })
        });
    }

    #[test]
    fn ended_reports_the_tone_duration() {
        for_all("duration estimate", |d, rate| {
            [40u32, 65, 100, 250].iter().find_map(|&ms| {
                let events = run(rate, &padded(rate, synthesize(d, rate, ms, LEVEL)));
                match events.as_slice() {
                    [ToneEvent::Started(_), ToneEvent::Ended { duration_ms, .. }]
                        if duration_ms.abs_diff(ms) <= 8 =>
                    {
                        None
                    }
                    _ => Some(format!("{ms} ms tone: {events:?}")),
                }
            })
        });
    }

    /// Keys pressed as fast as Q.24 allows: 40 ms tones, 40 ms pauses.
    fn keyed(rate: u32, keys: &str, tone_ms: u32, gap_ms: u32) -> Vec<i16> {
        let mut pcm = silence(rate, 30);
        for c in keys.chars() {
            let d = Digit::from_char(c).unwrap();
            pcm.extend(synthesize(d, rate, tone_ms, LEVEL));
            pcm.extend(silence(rate, gap_ms));
        }
        pcm.extend(silence(rate, 100));
        pcm
    }

    #[test]
    fn digit_sequences_with_40_ms_pauses_come_out_in_order() {
        for rate in RATES {
            for keys in ["123#11", "0123456789*#ABCD", "5555", "*#*#"] {
                for (tone_ms, gap_ms) in [(40, 40), (50, 40), (100, 60)] {
                    let events = run(rate, &keyed(rate, keys, tone_ms, gap_ms));
                    assert_eq!(
                        started(&events),
                        keys,
                        "{rate} Hz, {tone_ms}/{gap_ms} ms: {events:?}"
                    );
                    let ended = events
                        .iter()
                        .filter(|e| matches!(e, ToneEvent::Ended { .. }))
                        .count();
                    assert_eq!(ended, keys.len(), "{rate} Hz: every Started has its Ended");
                }
            }
        }
    }

    /// Q.24: a break of up to 10 ms inside one tone is not a new keypress, whether the tone
    /// resumes in phase (a dropout) or with a new phase (a glitch in the sender). The break is
    /// moved across a whole block step, so its worst alignment is among the cases.
    #[test]
    fn a_10_ms_dropout_does_not_split_a_digit() {
        for_all("dropout", |d, rate| {
            let gap = samples_for(rate, 10);
            let half = Setup::new(rate).half;
            (0..8).find_map(|k| {
                let at = samples_for(rate, 40) + half * k / 8;
                let mut tone = synthesize(d, rate, 120, LEVEL);
                tone[at..at + gap].fill(0);
                let in_phase = run(rate, &padded(rate, tone));
                let mut split = synthesize(d, rate, 120, LEVEL);
                split.truncate(at);
                split.extend(silence(rate, 10));
                split.extend(synthesize(d, rate, 60, LEVEL));
                let restarted = run(rate, &padded(rate, split));
                expect_one(&in_phase, d, &format!("in-phase dropout at +{k}/8 step")).or_else(
                    || {
                        expect_one(
                            &restarted,
                            d,
                            &format!("restart after 10 ms at +{k}/8 step"),
                        )
                    },
                )
            })
        });
    }

    /// The second-harmonic guard: a DTMF pair whose high tone carries a harmonic like a voice
    /// or an instrument (6 dB down) is not a digit; one with the distortion Q.23 allows a
    /// sender (20 dB down, here 25) is.
    #[test]
    fn a_strong_second_harmonic_vetoes_the_digit() {
        for_all("second harmonic", |d, rate| {
            let hi = d.frequencies().1;
            let with = |harmonic_db: f32| {
                let mut pcm = synthesize(d, rate, 80, LEVEL);
                let h = dual_tone(
                    2.0 * hi,
                    0.0,
                    LEVEL + harmonic_db,
                    f32::NEG_INFINITY,
                    rate,
                    80,
                );
                for (s, t) in pcm.iter_mut().zip(h) {
                    *s = s.saturating_add(t);
                }
                run(rate, &padded(rate, pcm))
            };
            expect_none(&with(-6.0), "harmonic 6 dB down")
                .or_else(|| expect_one(&with(-25.0), d, "harmonic 25 dB down"))
        });
    }

    /// A third tone in one group: a digit only if it stays [`MIN_GROUP_MARGIN_DB`] below.
    #[test]
    fn each_tone_must_stand_out_in_its_group() {
        for_all("group margin", |d, rate| {
            let (lo, hi) = d.frequencies();
            let row = LOW.iter().position(|&f| f == lo).unwrap();
            let col = HIGH.iter().position(|&f| f == hi).unwrap();
            let other_low = LOW[(row + 2) % 4];
            let other_high = HIGH[(col + 2) % 4];
            let with = |extra: f32, level: f32| {
                let mut pcm = synthesize(d, rate, 80, LEVEL);
                let third = dual_tone(extra, 0.0, level, f32::NEG_INFINITY, rate, 80);
                for (s, t) in pcm.iter_mut().zip(third) {
                    *s = s.saturating_add(t);
                }
                run(rate, &padded(rate, pcm))
            };
            expect_none(&with(other_low, LEVEL - 3.0), "third low tone 3 dB below")
                .or_else(|| {
                    expect_none(&with(other_high, LEVEL - 3.0), "third high tone 3 dB below")
                })
                .or_else(|| {
                    expect_one(
                        &with(other_low, LEVEL - 20.0),
                        d,
                        "third low tone 20 dB below",
                    )
                })
                .or_else(|| {
                    expect_one(
                        &with(other_high, LEVEL - 20.0),
                        d,
                        "third high tone 20 dB below",
                    )
                })
        });
    }

    /// Q.24's limits at once: 40 ms, 1.5% off, 4 dB reverse twist at the weak end of the
    /// level range, in white noise at 15 dB SNR.
    #[test]
    fn worst_case_combination_is_still_detected() {
        let mut noise = Noise(0x5eed);
        for_all("combined", |d, rate| {
            let (lo, hi) = d.frequencies();
            [(0.015f32, -0.015f32), (-0.015, 0.015)]
                .iter()
                .find_map(|&(dl, dh)| {
                    let (low_db, high_db) = (-24.0, -20.0);
                    let mut pcm = padded(
                        rate,
                        dual_tone(lo * (1.0 + dl), hi * (1.0 + dh), low_db, high_db, rate, 40),
                    );
                    let power = (dbm0_to_amplitude(low_db).powi(2)
                        + dbm0_to_amplitude(high_db).powi(2))
                        / 2.0;
                    noise.add_to(&mut pcm, f64::from(power).sqrt() / 10f64.powf(15.0 / 20.0));
                    expect_one(&run(rate, &pcm), d, &format!("low {dl:+}, high {dh:+}"))
                })
        });
    }

    #[test]
    fn same_key_twice_with_a_40_ms_pause_is_two_presses() {
        for_all("same key twice", |d, rate| {
            let pcm = padded(
                rate,
                concat(&[
                    synthesize(d, rate, 45, LEVEL),
                    silence(rate, 40),
                    synthesize(d, rate, 45, LEVEL),
                ]),
            );
            let events = run(rate, &pcm);
            (started(&events) != format!("{d}{d}")).then(|| format!("{events:?}"))
        });
    }

    #[test]
    fn chunk_size_does_not_change_the_result() {
        let mut noise = Noise(7);
        for rate in RATES {
            let mut pcm = keyed(rate, "19#A0", 45, 40);
            noise.add_to(&mut pcm, 300.0);
            let reference = run(rate, &pcm);
            assert_eq!(started(&reference), "19#A0", "{rate} Hz");
            for chunk in [1, 7, 160, 333] {
                assert_eq!(
                    run_chunks(rate, &pcm, chunk),
                    reference,
                    "{rate} Hz, chunks of {chunk}"
                );
            }
        }
    }

    #[test]
    fn reset_forgets_a_tone_in_progress() {
        let d = Digit::from_char('7').unwrap();
        let mut det = InbandDetector::new(8000);
        let mut events = Vec::new();
        det.push(&synthesize(d, 8000, 100, LEVEL), &mut events);
        assert_eq!(events, vec![ToneEvent::Started(d)]);
        det.reset();
        det.push(&silence(8000, 200), &mut events);
        assert_eq!(events, vec![ToneEvent::Started(d)], "no Ended after reset");
        det.push(&padded(8000, synthesize(d, 8000, 60, LEVEL)), &mut events);
        assert_eq!(started(&events), "77");
    }

    #[test]
    fn single_tones_and_same_group_pairs_are_not_digits() {
        let all: Vec<f32> = LOW.iter().chain(HIGH.iter()).copied().collect();
        for rate in RATES {
            for &f in &all {
                for level in [-20.0, -3.0, 3.0] {
                    let pcm = padded(rate, dual_tone(f, 0.0, level, f32::NEG_INFINITY, rate, 300));
                    assert_eq!(
                        run(rate, &pcm),
                        vec![],
                        "{f} Hz alone at {level} dBm0, {rate} Hz"
                    );
                }
            }
            for (a, b) in [
                (697.0, 770.0),
                (852.0, 941.0),
                (1209.0, 1336.0),
                (1477.0, 1633.0),
            ] {
                let pcm = padded(rate, dual_tone(a, b, LEVEL, LEVEL, rate, 300));
                assert_eq!(run(rate, &pcm), vec![], "{a}+{b} Hz, {rate} Hz");
            }
        }
    }

    #[test]
    fn white_noise_alone_is_not_a_digit() {
        let mut noise = Noise(0xdead_beef);
        for rate in RATES {
            for level in [-40.0, -20.0, -6.0, 0.0] {
                let mut pcm = silence(rate, 2000);
                noise.add_to(&mut pcm, f64::from(dbm0_to_amplitude(level)) / 2f64.sqrt());
                assert_eq!(run(rate, &pcm), vec![], "noise at {level} dBm0, {rate} Hz");
            }
        }
    }

    /// Talk-off by construction: for every digit, voiced-speech-like signals (a fundamental
    /// of 80-400 Hz with all its harmonics up to 3.4 kHz, amplitudes falling as 1/h) whose
    /// pitch puts two harmonics within 1% of that digit's pair. Each of those harmonics is
    /// a perfect in-tolerance tone; only the guards (energy share, group margin, second
    /// harmonic) can tell that this is a voice.
    #[test]
    fn voices_with_harmonics_on_a_dtmf_pair_are_not_digits() {
        let mut tried = 0;
        for rate in [8000, 16000] {
            for d in Digit::ALL {
                let (lo, hi) = d.frequencies();
                let pitches = (2..=8)
                    .map(|h| lo / h as f32)
                    .filter(|f0| (80.0..=400.0).contains(f0))
                    .filter(|&f0| {
                        let h = (hi / f0).round();
                        (h * f0 - hi).abs() <= 0.01 * hi
                    });
                for f0 in pitches {
                    let w = std::f32::consts::TAU * f0 / rate as f32;
                    let harmonics = (3400.0 / f0) as usize;
                    let pcm: Vec<i16> = (0..samples_for(rate, 200))
                        .map(|i| {
                            let t = i as f32;
                            let v: f32 = (1..=harmonics)
                                .map(|h| 6000.0 / h as f32 * (w * h as f32 * t).sin())
                                .sum();
                            v.clamp(-32768.0, 32767.0) as i16
                        })
                        .collect();
                    tried += 1;
                    assert_eq!(
                        run(rate, &padded(rate, pcm)),
                        vec![],
                        "{d}: voice at {f0:.1} Hz, {rate} Hz"
                    );
                }
            }
        }
        assert!(tried >= 20, "only {tried} pitches tried");
    }

    /// Music-like signals: every equal-tempered note from C4 to B6 and the common chords on
    /// each, with the 1/h harmonics of a plucked string, in 150 ms notes. Several notes sit
    /// right on DTMF frequencies (F5 = 698.5 Hz, A#5 = 932.3 Hz, E6 = 1318.5 Hz, F#6 = 1480 Hz),
    /// but the harmonics keep them from carrying 70% of the energy in exactly one tone per
    /// group.
    #[test]
    fn notes_and_chords_are_not_digits() {
        let note = |semitones_from_a4: i32| 440.0f32 * 2f32.powf(semitones_from_a4 as f32 / 12.0);
        // The detector is rate-independent by construction (every figure scales with the rate);
        // 48 kHz is left out to keep the synthesis cheap in debug builds.
        for rate in [8000, 16000] {
            let mut pcm = Vec::new();
            let mut play = |freqs: &[f32]| {
                let n = samples_for(rate, 150);
                let w = std::f32::consts::TAU / rate as f32;
                pcm.extend((0..n).map(|i| {
                    let t = i as f32;
                    let decay = (-3.0 * t / n as f32).exp();
                    let v: f32 = freqs
                        .iter()
                        .flat_map(|&f| (1..=6).map(move |h| (f, h as f32)))
                        .filter(|&(f, h)| f * h < rate as f32 / 2.0)
                        .map(|(f, h)| 3000.0 / h * (w * f * h * t).sin())
                        .sum();
                    (v * decay) as i16
                }));
            };
            for root in -9..27 {
                play(&[note(root)]);
                for chord in [[0, 4, 7], [0, 3, 7], [0, 7, 12], [0, 4, 10]] {
                    let freqs: Vec<f32> = chord.iter().map(|&k| note(root + k)).collect();
                    play(&freqs);
                }
            }
            assert_eq!(run(rate, &pcm), vec![], "{rate} Hz");
        }
    }

    /// Not an assertion of Q.24 but a guard on the arithmetic in the module docs: the
    /// half-block is 51 samples at 8 kHz and scales with the rate.
    #[test]
    fn block_sizes_follow_the_rate() {
        assert_eq!(Setup::new(8000).half, 51);
        assert_eq!(Setup::new(16000).half, 102);
        assert_eq!(Setup::new(48000).half, 306);
        assert_eq!(InbandDetector::new(16000).sample_rate(), 16000);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]

            /// Any keys a phone dials within Q.24's timing (tones and pauses of 40 ms or more)
            /// and levels (each tone -25..-5 dBm0, twist within 4 dB), at any of the rates,
            /// fed in pieces of any size, are heard exactly as dialled: one `Started` and one
            /// `Ended` per key, in order, same key twice included.
            #[test]
            fn dialled_keys_are_heard_exactly_as_dialled(
                rate in prop::sample::select(RATES.to_vec()),
                keys in prop::collection::vec(
                    (0usize..16, 40u32..160, 40u32..160, -25.0f32..-5.0, -4.0f32..4.0),
                    1..6,
                ),
                piece in 1usize..700,
            ) {
                let mut pcm = silence(rate, 30);
                for &(d, tone_ms, pause_ms, level, twist) in &keys {
                    let (lo, hi) = Digit::ALL[d].frequencies();
                    pcm.extend(dual_tone(lo, hi, level, level + twist, rate, tone_ms));
                    pcm.extend(silence(rate, pause_ms));
                }
                pcm.extend(silence(rate, 100));
                let events = run_chunks(rate, &pcm, piece);
                let expected: String = keys.iter().map(|k| Digit::ALL[k.0].to_char()).collect();
                prop_assert_eq!(started(&events), expected);
                let ended = events
                    .iter()
                    .filter(|e| matches!(e, ToneEvent::Ended { .. }))
                    .count();
                prop_assert_eq!(ended, keys.len(), "{:?}", events);
            }
        }
    }
}
