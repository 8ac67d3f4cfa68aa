//! Which prompt is this caller hearing? A streaming, frame-aligned recognizer.
//!
//! It builds on the idea of `careline::media::recognize` (normalized cross-correlation of
//! the received audio with the known prompt audio) but runs as packets arrive, in constant
//! memory, at a cost a load generator can pay for thousands of callers at once:
//!
//! - The server sends a prompt as its pre-encoded 20 ms frames, frame `i` in the packet with
//!   sequence number `start + i`. So the reference is the prompt's frames decoded exactly as a
//!   caller decodes them, and a received frame only has to be compared with the one frame it
//!   should be, found from its sequence number: one 160-sample dot product per packet.
//!   Loss and reordering cannot shift the alignment; a lost frame just does not count.
//! - While nothing is being heard, a voiced frame is compared with the first voiced frames
//!   ("onsets") of every known prompt; each prompt that matches becomes a hypothesis. Prompts
//!   that begin alike ("You pressed one" / "... two") are followed side by side until the
//!   audio tells them apart.
//! - A hypothesis accumulates the correlation over the whole prompt (energy-weighted, the
//!   score of `recognize::find`'s waveform check); it ends *complete* when the stream passes
//!   its last frame, or *interrupted* after a run of frames that do not match (barge-in, a
//!   different prompt, silence).
//!
//! Received audio is never stored: per call the state is a few hypotheses and counters.

use std::collections::VecDeque;
use std::path::Path;

use careline::media::codec::{Codec, Decoder, opus::OpusDecoder};
use careline::media::prompt::{Prompt, PromptLibrary};

use crate::clock::{MS, Nanos};

/// Samples per 20 ms frame at 8 kHz: every codec is compared at 8 kHz.
pub const FRAME: usize = 160;
/// A frame is voiced above an RMS of 64 (about -54 dBFS): well above G.711's idle codes.
const VOICED_ENERGY: f64 = (FRAME as f64) * 64.0 * 64.0;
/// Voiced frames at the start of each prompt a new hypothesis may lock on (a lost or noisy
/// first syllable still lets the prompt be found).
const ONSETS: usize = 6;
/// Per-frame correlation needed to lock on a prompt.
const LOCK_SCORE: f32 = 0.75;
/// Per-frame correlation below which a voiced frame does not match.
const FRAME_MATCH: f32 = 0.5;
/// Consecutive non-matching frames that end a hypothesis (100 ms).
const BAD_RUN: u8 = 5;
/// A hypothesis this far below the best (cumulative score) is dropped.
const PRUNE_MARGIN: f64 = 0.2;

/// One known prompt, as a caller decodes it.
#[derive(Debug)]
pub struct Reference {
    pub name: String,
    pcm: Vec<i16>,
    energy: Vec<f64>,
    onsets: Vec<usize>,
    /// The last voiced frame: heard up to here, the prompt was heard (trailing silence is
    /// not evidence of anything).
    last_voiced: usize,
}

impl Reference {
    /// `pcm`: the decoded audio, a whole number of 160-sample frames.
    pub fn new(name: &str, mut pcm: Vec<i16>) -> Reference {
        pcm.resize(pcm.len().div_ceil(FRAME) * FRAME, 0);
        let energy: Vec<f64> = pcm.chunks(FRAME).map(energy).collect();
        let onsets = energy
            .iter()
            .enumerate()
            .filter(|(_, e)| **e > VOICED_ENERGY)
            .map(|(i, _)| i)
            .take(ONSETS)
            .collect();
        let last_voiced = energy.iter().rposition(|e| *e > VOICED_ENERGY).unwrap_or(0);
        Reference {
            name: name.to_string(),
            pcm,
            energy,
            onsets,
            last_voiced,
        }
    }

    pub fn frames(&self) -> usize {
        self.energy.len()
    }

    pub fn duration_ms(&self) -> u64 {
        self.frames() as u64 * 20
    }

    fn frame(&self, i: usize) -> &[i16] {
        &self.pcm[i * FRAME..(i + 1) * FRAME]
    }
}

/// Every prompt a caller may hear, decoded for one codec.
#[derive(Debug)]
pub struct Library {
    pub codec: Codec,
    pub refs: Vec<Reference>,
}

#[derive(Debug, thiserror::Error)]
pub enum HearError {
    #[error("prompts: {0}")]
    Prompts(#[from] careline::media::prompt::PromptError),
    #[error("no prompts for language `{lang}` in {dir}")]
    NoLanguage { lang: String, dir: String },
    #[error("decoding prompt {name}: {reason}")]
    Decode { name: String, reason: String },
}

impl Library {
    /// Loads `dir/<lang>/*.wav` with the server's own loader and encoder, so the frames are
    /// the ones the server sends, and decodes them as a caller on `codec` would.
    pub fn load(dir: &Path, lang: &str, codec: Codec) -> Result<Library, HearError> {
        let lib = PromptLibrary::load(dir)?;
        let mut prompts: Vec<_> = lib.iter().filter(|p| p.lang == lang).collect();
        prompts.sort_by(|a, b| a.name.cmp(&b.name));
        if prompts.is_empty() {
            return Err(HearError::NoLanguage {
                lang: lang.into(),
                dir: dir.display().to_string(),
            });
        }
        let refs = prompts
            .into_iter()
            .map(|p| reference(p, &p.name, codec))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Library { codec, refs })
    }

    /// Adds a prompt made elsewhere (speech rendered by Careline's TTS) under `name`; a
    /// prompt file of the same name gives way.
    pub fn add(&mut self, name: &str, prompt: &Prompt) -> Result<(), HearError> {
        self.refs.retain(|r| r.name != name);
        self.refs.push(reference(prompt, name, self.codec)?);
        Ok(())
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.refs.iter().position(|r| r.name == name)
    }
}

/// The server's own frames of prompt `dir/lang/name.wav` on `codec` (what a synthetic agent
/// says, so the caller recognizes it as it recognizes the server's prompts).
pub fn prompt_frames(
    dir: &Path,
    lang: &str,
    name: &str,
    codec: Codec,
) -> Result<crate::audio::Frames, HearError> {
    let lib = PromptLibrary::load(dir)?;
    let p = lib
        .iter()
        .find(|p| p.lang == lang && p.name == name)
        .ok_or_else(|| HearError::Decode {
            name: format!("{lang}/{name}"),
            reason: format!("no such prompt in {}", dir.display()),
        })?;
    let frames = p.frames(codec);
    let mut out = crate::audio::Frames::default();
    for i in 0..frames.len() {
        out.push(frames.frame(i).unwrap_or_default());
    }
    Ok(out)
}

/// `prompt` as a caller on `codec` hears it: the server's frames, decoded at 8 kHz by a
/// fresh decoder.
fn reference(p: &Prompt, name: &str, codec: Codec) -> Result<Reference, HearError> {
    let frames = p.frames(codec);
    let mut pcm = Vec::with_capacity(frames.len() * FRAME);
    let mut out = Vec::with_capacity(FRAME);
    let err = |reason: String| HearError::Decode {
        name: p.key(),
        reason,
    };
    let mut decoder = FrameDecoder::new(codec).map_err(|e| err(e.to_string()))?;
    for i in 0..frames.len() {
        let payload = frames.frame(i).unwrap_or_default();
        decoder
            .decode(payload, &mut out)
            .map_err(|e| err(e.to_string()))?;
        pcm.extend_from_slice(&out);
    }
    Ok(Reference::new(name, pcm))
}

/// Decodes one codec to 8 kHz frames of 160 samples.
pub enum FrameDecoder {
    G711(Decoder),
    Opus(OpusDecoder),
}

impl FrameDecoder {
    pub fn new(codec: Codec) -> Result<FrameDecoder, careline::media::codec::CodecError> {
        Ok(match codec {
            Codec::Opus => FrameDecoder::Opus(OpusDecoder::new(8000)?),
            c => FrameDecoder::G711(Decoder::new(c)?),
        })
    }

    /// Decodes `payload` into exactly 160 samples (padded or cut).
    pub fn decode(
        &mut self,
        payload: &[u8],
        out: &mut Vec<i16>,
    ) -> Result<(), careline::media::codec::CodecError> {
        match self {
            FrameDecoder::G711(d) => d.decode(payload, out)?,
            FrameDecoder::Opus(d) => d.decode(payload, out)?,
        }
        out.resize(FRAME, 0);
        Ok(())
    }
}

/// A prompt heard (fully or in part).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heard {
    /// Index in the [`Library`].
    pub prompt: usize,
    /// Arrival of the prompt's first packet.
    pub start: Nanos,
    /// Every frame up to the prompt's last was heard in place (lost packets aside).
    pub complete: bool,
    /// Energy-weighted normalized correlation over the frames heard (1.0 = identical).
    pub score: f32,
    /// How far into the prompt it was heard: up to its last matching frame.
    pub frames: u32,
}

#[derive(Debug, Clone)]
struct Hyp {
    prompt: usize,
    start_seq: i64,
    start: Nanos,
    num: f64,
    da: f64,
    db: f64,
    bad_run: u8,
    frames: u32,
    last_good: i64,
}

impl Hyp {
    fn score(&self) -> f64 {
        if self.da <= 0.0 || self.db <= 0.0 {
            0.0
        } else {
            self.num / (self.da.sqrt() * self.db.sqrt())
        }
    }

    fn heard(&self, lib: &Library, complete: bool) -> Heard {
        Heard {
            prompt: self.prompt,
            start: self.start,
            complete: complete || self.last_good >= lib.refs[self.prompt].last_voiced as i64,
            score: self.score().max(0.0) as f32,
            frames: (self.last_good + 1).max(0) as u32,
        }
    }
}

/// Per-call recognizer state.
#[derive(Debug, Default)]
pub struct Tracker {
    hyps: Vec<Hyp>,
    events: VecDeque<Heard>,
    silent_run: u32,
    last_marker: Option<(i64, Nanos)>,
    /// Energy of the quietest frame in the last 2 s or so: the line's noise (0 for digital
    /// silence). Kept as the minima of 4 blocks of 25 frames and of the block in progress.
    noise_floor: f64,
    block_min: [f64; 4],
    cur_min: f64,
    cur_len: u8,
    block: usize,
}

fn energy(x: &[i16]) -> f64 {
    // Integer accumulation: exact, and it vectorizes (a float sum must keep its order).
    x.iter()
        .map(|&s| s as i32 * s as i32)
        .map(i64::from)
        .sum::<i64>() as f64
}

fn dot(x: &[i16], y: &[i16]) -> f64 {
    // i64 accumulation: exact, and vectorizes.
    x.iter()
        .zip(y)
        .map(|(&a, &b)| a as i64 * b as i64)
        .sum::<i64>() as f64
}

fn ncc(num: f64, ea: f64, eb: f64) -> f32 {
    if ea <= 0.0 || eb <= 0.0 {
        0.0
    } else {
        (num / (ea.sqrt() * eb.sqrt())) as f32
    }
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Consecutive silent frames received most recently.
    pub fn silent_ms(&self) -> u64 {
        self.silent_run as u64 * 20
    }

    /// The next prompt heard, oldest first.
    pub fn poll(&mut self) -> Option<Heard> {
        self.events.pop_front()
    }

    /// A prompt is being heard right now.
    pub fn hearing(&self) -> bool {
        !self.hyps.is_empty()
    }

    /// One decoded frame (160 samples at 8 kHz) with its extended RTP sequence number.
    pub fn on_frame(&mut self, lib: &Library, seq: i64, marker: bool, pcm: &[i16], at: Nanos) {
        if pcm.len() != FRAME {
            return;
        }
        if marker {
            self.last_marker = Some((seq, at));
        }
        let e = energy(pcm);
        self.track_noise(e);
        let voiced = e > VOICED_ENERGY.max(4.0 * self.noise_floor);
        self.silent_run = if voiced { 0 } else { self.silent_run + 1 };
        if !self.hyps.is_empty() && self.advance(lib, seq, pcm, e, voiced) {
            return;
        }
        if voiced && self.hyps.is_empty() {
            self.search(lib, seq, pcm, e, at);
        }
    }

    /// A frame of digital silence (every sample zero), without decoding it: what the server
    /// sends between prompts, most of a call. Same effect as [`Tracker::on_frame`] with zeros.
    pub fn on_silence(&mut self, lib: &Library, seq: i64, marker: bool, at: Nanos) {
        if !self.hyps.is_empty() {
            // A prompt being followed: silence where it speaks counts against it.
            static ZEROS: [i16; FRAME] = [0; FRAME];
            self.on_frame(lib, seq, marker, &ZEROS, at);
            return;
        }
        if marker {
            self.last_marker = Some((seq, at));
        }
        self.track_noise(0.0);
        self.silent_run += 1;
    }

    fn track_noise(&mut self, e: f64) {
        self.cur_min = if self.cur_len == 0 {
            e
        } else {
            self.cur_min.min(e)
        };
        self.cur_len += 1;
        if self.cur_len == 25 {
            self.block_min[self.block % 4] = self.cur_min;
            self.block += 1;
            self.cur_len = 0;
        }
        let blocks = self.block.min(4);
        self.noise_floor = self.block_min[..blocks]
            .iter()
            .copied()
            .fold(self.cur_min, f64::min);
    }

    /// The stream ended (hang-up): reports what was being heard.
    pub fn finish(&mut self, lib: &Library) {
        if let Some(best) = self.best() {
            let h = self.hyps[best].heard(lib, false);
            self.events.push_back(h);
        }
        self.hyps.clear();
    }

    fn best(&self) -> Option<usize> {
        (0..self.hyps.len()).max_by(|&a, &b| {
            let (ha, hb) = (&self.hyps[a], &self.hyps[b]);
            (ha.last_good, ha.score())
                .partial_cmp(&(hb.last_good, hb.score()))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    }

    /// Feeds the frame to the live hypotheses. Returns true when the frame was consumed by
    /// them (false: they all ended, and the frame may start a new prompt).
    fn advance(&mut self, lib: &Library, seq: i64, pcm: &[i16], e: f64, voiced: bool) -> bool {
        let mut ended: Option<usize> = None;
        let quiet = VOICED_ENERGY.max(4.0 * self.noise_floor);
        for (k, h) in self.hyps.iter_mut().enumerate() {
            let r = &lib.refs[h.prompt];
            let idx = seq - h.start_seq;
            if idx < 0 {
                continue; // a late packet from before the prompt
            }
            if idx as usize >= r.frames() {
                ended.get_or_insert(k);
                continue;
            }
            let i = idx as usize;
            // Reference frames quieter than the line's noise say nothing about which prompt
            // this is: they neither count for nor against it.
            if r.energy[i] <= quiet {
                continue;
            }
            let num = dot(pcm, r.frame(i));
            h.num += num;
            h.da += e;
            h.db += r.energy[i];
            let good = voiced && ncc(num, e, r.energy[i]) >= FRAME_MATCH;
            if good {
                h.bad_run = 0;
                h.frames += 1;
                h.last_good = h.last_good.max(idx);
            } else {
                h.bad_run = h.bad_run.saturating_add(1);
            }
        }
        if let Some(k) = ended {
            // The stream went past a prompt's last frame: it was heard to the end, unless
            // another prompt still running explains the audio clearly better.
            let score = self.hyps[k].score();
            let better = self
                .hyps
                .iter()
                .enumerate()
                .any(|(o, h)| o != k && h.score() > score + 0.05);
            if better {
                self.hyps.swap_remove(k);
                return true;
            }
            let heard = self.hyps[k].heard(lib, true);
            self.events.push_back(heard);
            self.hyps.clear();
            return false;
        }
        // Drop what no longer matches; report the last one standing if all fail at once.
        let best_score = self.hyps.iter().map(Hyp::score).fold(f64::MIN, f64::max);
        let before = self.best().map(|b| self.hyps[b].clone());
        self.hyps.retain(|h| {
            h.bad_run < BAD_RUN && !(h.frames >= 5 && h.score() < best_score - PRUNE_MARGIN)
        });
        if self.hyps.is_empty() {
            if let Some(h) = before {
                self.events.push_back(h.heard(lib, false));
            }
            return false;
        }
        true
    }

    fn search(&mut self, lib: &Library, seq: i64, pcm: &[i16], e: f64, at: Nanos) {
        for (p, r) in lib.refs.iter().enumerate() {
            let mut best: Option<(usize, f32, f64)> = None;
            for &j in &r.onsets {
                let num = dot(pcm, r.frame(j));
                let s = ncc(num, e, r.energy[j]);
                if s >= LOCK_SCORE && best.is_none_or(|(_, b, _)| s > b) {
                    best = Some((j, s, num));
                }
            }
            if let Some((j, _, num)) = best {
                let start_seq = seq - j as i64;
                let start = match self.last_marker {
                    Some((mseq, mat)) if mseq == start_seq => mat,
                    _ => at - j as Nanos * 20 * MS,
                };
                self.hyps.push(Hyp {
                    prompt: p,
                    start_seq,
                    start,
                    num,
                    da: e,
                    db: r.energy[j],
                    bad_run: 0,
                    frames: 1,
                    last_good: j as i64,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use careline::media::codec::g711;

    fn prompts_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../prompts")
    }

    fn lib(codec: Codec) -> Library {
        Library::load(&prompts_dir(), "en", codec).unwrap()
    }

    /// A server stream: `lead` silent frames, then each prompt's decoded frames back to back
    /// with `gap` silent frames after each; returns (seq, marker, pcm) per frame.
    fn stream(
        lib: &Library,
        names: &[&str],
        lead: usize,
        gap: usize,
    ) -> Vec<(i64, bool, Vec<i16>)> {
        let mut out = Vec::new();
        let mut seq = 1000i64;
        let silence = vec![0i16; FRAME];
        for _ in 0..lead {
            out.push((seq, false, silence.clone()));
            seq += 1;
        }
        for name in names {
            let r = &lib.refs[lib.index(name).unwrap()];
            for i in 0..r.frames() {
                out.push((seq, i == 0, r.frame(i).to_vec()));
                seq += 1;
            }
            for _ in 0..gap {
                out.push((seq, false, silence.clone()));
                seq += 1;
            }
        }
        out
    }

    fn run(lib: &Library, frames: &[(i64, bool, Vec<i16>)]) -> Vec<(String, Heard)> {
        let mut t = Tracker::new();
        for (k, (seq, marker, pcm)) in frames.iter().enumerate() {
            let at = k as Nanos * 20 * MS;
            // Digital silence takes the fast path, as a G.711 caller's does.
            if pcm.iter().all(|&s| s == 0) {
                t.on_silence(lib, *seq, *marker, at);
            } else {
                t.on_frame(lib, *seq, *marker, pcm, at);
            }
        }
        t.finish(lib);
        std::iter::from_fn(|| t.poll())
            .map(|h| (lib.refs[h.prompt].name.clone(), h))
            .collect()
    }

    fn xorshift(x: &mut u32) -> u32 {
        *x ^= *x << 13;
        *x ^= *x >> 17;
        *x ^= *x << 5;
        *x
    }

    #[test]
    fn the_right_prompts_are_heard_in_order_with_their_start_times() {
        let lib = lib(Codec::Pcmu);
        let frames = stream(&lib, &["welcome", "digit-7", "goodbye"], 10, 25);
        let heard = run(&lib, &frames);
        let names: Vec<&str> = heard.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["welcome", "digit-7", "goodbye"], "{heard:?}");
        for (_, h) in &heard {
            assert!(h.complete && h.score > 0.999, "{h:?}");
        }
        // Started with the marker packet: frame 10, at 200 ms.
        assert_eq!(heard[0].1.start, 200 * MS);
        let welcome = lib.refs[lib.index("welcome").unwrap()].frames() as i64;
        assert_eq!(heard[1].1.start, (10 + welcome + 25) * 20 * MS);
    }

    #[test]
    fn prompts_that_begin_alike_are_told_apart() {
        let lib = lib(Codec::Pcma);
        for d in ["digit-1", "digit-7", "digit-star", "digit-0"] {
            let heard = run(&lib, &stream(&lib, &[d], 3, 10));
            assert_eq!(heard.len(), 1, "{d}: {heard:?}");
            assert_eq!(heard[0].0, d);
            assert!(heard[0].1.complete && heard[0].1.score > 0.999);
        }
    }

    #[test]
    fn audio_that_is_no_known_prompt_is_not_heard_as_one() {
        let en = lib(Codec::Pcmu);
        let ja = Library::load(&prompts_dir(), "ja", Codec::Pcmu).unwrap();
        // Japanese prompts played to a caller who knows only the English ones.
        let frames = stream(&ja, &["welcome", "digit-1", "goodbye"], 5, 10);
        let heard = run(&en, &frames);
        assert!(
            heard.iter().all(|(_, h)| !h.complete || h.score < 0.5),
            "{heard:?}"
        );
    }

    #[test]
    fn survives_noise_requantization_and_loss() {
        let lib = lib(Codec::Pcmu);
        let mut frames = stream(&lib, &["welcome", "digit-3"], 5, 20);
        let mut x = 99u32;
        for (_, _, pcm) in frames.iter_mut() {
            for s in pcm.iter_mut() {
                // White noise of ±400 (about -40 dBFS) through a second µ-law pass.
                let noisy = *s as i32 + (xorshift(&mut x) % 800) as i32 - 400;
                *s = g711::ulaw_to_linear(g711::linear_to_ulaw(noisy.clamp(-32768, 32767) as i16));
            }
        }
        // 2 % random loss.
        frames.retain(|_| !xorshift(&mut x).is_multiple_of(50));
        let heard = run(&lib, &frames);
        let names: Vec<&str> = heard.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["welcome", "digit-3"], "{heard:?}");
        for (_, h) in &heard {
            assert!(h.complete && h.score > 0.9, "{h:?}");
        }
    }

    #[test]
    fn a_prompt_cut_short_is_heard_incomplete() {
        let lib = lib(Codec::Pcmu);
        let mut frames = stream(&lib, &["welcome"], 5, 0);
        frames.truncate(5 + 100); // barge-in after 2 s
        let seq = frames.last().unwrap().0;
        for k in 1..=30 {
            frames.push((seq + k, false, vec![0; FRAME]));
        }
        frames.extend(
            stream(&lib, &["digit-5"], 0, 5)
                .into_iter()
                .map(|(s, m, p)| (s - 1000 + seq + 31, m, p)),
        );
        let heard = run(&lib, &frames);
        assert_eq!(heard.len(), 2, "{heard:?}");
        assert_eq!(heard[0].0, "welcome");
        assert!(!heard[0].1.complete && heard[0].1.frames > 90 && heard[0].1.frames <= 100);
        assert_eq!(heard[1].0, "digit-5");
        assert!(heard[1].1.complete);
    }

    #[test]
    fn opus_prompts_are_recognized_through_a_running_decoder() {
        // What a caller on Opus gets: the server's Opus frames through one decoder that has
        // decoded silence before (so its state differs from the reference's fresh decoder).
        let lib = lib(Codec::Opus);
        let prompts = PromptLibrary::load(&prompts_dir()).unwrap();
        let silence = careline::media::prompt::Silence::new().unwrap();
        let mut dec = FrameDecoder::new(Codec::Opus).unwrap();
        let mut frames = Vec::new();
        let mut seq = 0i64;
        let mut out = Vec::new();
        let mut push = |payload: &[u8], marker: bool, frames: &mut Vec<(i64, bool, Vec<i16>)>| {
            dec.decode(payload, &mut out).unwrap();
            frames.push((seq, marker, out.clone()));
            seq += 1;
        };
        for _ in 0..20 {
            push(silence.frame(Codec::Opus), false, &mut frames);
        }
        for name in ["digit-4", "goodbye"] {
            let p = prompts.get("en", name).unwrap();
            let f = p.frames(Codec::Opus);
            for i in 0..f.len() {
                push(f.frame(i).unwrap(), i == 0, &mut frames);
            }
            for _ in 0..10 {
                push(silence.frame(Codec::Opus), false, &mut frames);
            }
        }
        let heard = run(&lib, &frames);
        let names: Vec<&str> = heard.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["digit-4", "goodbye"], "{heard:?}");
        assert!(
            heard.iter().all(|(_, h)| h.complete && h.score > 0.8),
            "{heard:?}"
        );
    }

    #[test]
    fn agrees_with_the_library_recognizer() {
        // careline::media::recognize finds the same prompt at the same place in the same audio.
        let lib = lib(Codec::Pcmu);
        let frames = stream(&lib, &["digit-9"], 37, 10);
        let audio: Vec<i16> = frames
            .iter()
            .flat_map(|(_, _, p)| p.iter().copied())
            .collect();
        let r = &lib.refs[lib.index("digit-9").unwrap()];
        let m = careline::media::recognize::find(&audio, &r.pcm).unwrap();
        let heard = run(&lib, &frames);
        assert_eq!(heard[0].0, "digit-9");
        assert_eq!(m.offset, 37 * FRAME);
        assert_eq!(heard[0].1.start, 37 * 20 * MS);
        assert!(m.waveform_score > 0.99 && heard[0].1.score > 0.99);
    }
}
