//! A room's audio: every participant hears everyone but themselves (N-1 mixes), and the room
//! knows who is talking.
//!
//! Sans-IO and clock-free like [`super::bridge`]: the media clock pushes, once per 20 ms tick,
//! the frame each participant's jitter buffer gave (or nothing: a lost or late frame is
//! silence for that tick, never a wait), then takes one mix per participant. So a room runs
//! on the same tick as every call, with no thread or timer of its own (Janus' AudioBridge
//! keeps a thread per room). Frames are PCM at the room's rate; converting each leg's codec
//! and rate (G.711 at 8 kHz, Opus at 48 kHz) to it is the leg's business, once per frame.
//!
//! - **N-1 in O(N)**: the sum of every unmuted talker is made once per sample, and each
//!   participant's mix is that sum less their own contribution, saturated to 16 bits.
//! - **The loudest few** ([`Mixer::new`]'s `max_talkers`): in a big room only the loudest
//!   talkers are mixed (by this frame's level), so ten open microphones do not add ten rooms'
//!   noise. A participant who is not mixed still hears the mix.
//! - **Mute**: a muted participant's frames reach nobody (the host mutes, or they do), and
//!   they are never counted as talking.
//! - **Talker indicator**: a participant is talking after [`TALK_ONSET`] frames in a row above
//!   [`TALK_LEVEL_DBOV`] and stops after [`TALK_HANGOVER`] frames below it (a pause between
//!   words is not silence); each change is an [`Event::Talking`].
//!
//! # Example
//!
//! ```
//! use careline::media::mixer::Mixer;
//!
//! let mut room = Mixer::new(160, 3);
//! room.join(1);
//! room.join(2);
//! room.join(3);
//! room.push(1, &[1000; 160]);
//! room.push(2, &[-300; 160]);
//! room.mix();
//! assert_eq!(room.output(1).unwrap()[0], -300, "1 hears 2 (and 3, silent)");
//! assert_eq!(room.output(2).unwrap()[0], 1000);
//! assert_eq!(room.output(3).unwrap()[0], 700, "3 hears both");
//! ```

use std::collections::VecDeque;

/// Level (dB below full scale) above which a frame counts as speech.
pub const TALK_LEVEL_DBOV: f32 = -45.0;
/// Frames in a row above the level before a participant counts as talking (60 ms).
pub const TALK_ONSET: u32 = 3;
/// Frames in a row below the level before a talker counts as quiet again (400 ms).
pub const TALK_HANGOVER: u32 = 20;

/// What the room's shell is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Participant `id` started (true) or stopped (false) talking.
    Talking(u64, bool),
}

struct Participant {
    id: u64,
    /// This tick's frame, if one arrived.
    input: Vec<i16>,
    has_input: bool,
    muted: bool,
    /// Mixed into the others' mixes this tick.
    mixed: bool,
    output: Vec<i16>,
    level_dbov: f32,
    talking: bool,
    /// Frames in a row above (positive) or below (negative) the talk level.
    run: i32,
}

/// One room's mixer. See the module documentation.
pub struct Mixer {
    frame: usize,
    max_talkers: usize,
    parts: Vec<Participant>,
    sum: Vec<i32>,
    events: VecDeque<Event>,
}

impl Mixer {
    /// A room whose frames are `frame` samples long (160 at 8 kHz, 960 at 48 kHz, for 20 ms),
    /// mixing at most `max_talkers` participants at once (at least 1).
    pub fn new(frame: usize, max_talkers: usize) -> Mixer {
        Mixer {
            frame,
            max_talkers: max_talkers.max(1),
            parts: Vec::new(),
            sum: vec![0; frame],
            events: VecDeque::new(),
        }
    }

    /// Adds participant `id` (again: nothing changes).
    pub fn join(&mut self, id: u64) {
        if self.parts.iter().any(|p| p.id == id) {
            return;
        }
        self.parts.push(Participant {
            id,
            input: vec![0; self.frame],
            has_input: false,
            muted: false,
            mixed: false,
            output: vec![0; self.frame],
            level_dbov: f32::NEG_INFINITY,
            talking: false,
            run: 0,
        });
    }

    /// Removes participant `id`; if they were talking, they stop.
    pub fn leave(&mut self, id: u64) {
        if let Some(i) = self.parts.iter().position(|p| p.id == id) {
            let p = self.parts.swap_remove(i);
            if p.talking {
                self.events.push_back(Event::Talking(id, false));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Mutes (true) or unmutes participant `id`: their audio reaches nobody while muted.
    pub fn mute(&mut self, id: u64, muted: bool) {
        if let Some(p) = self.parts.iter_mut().find(|p| p.id == id) {
            p.muted = muted;
        }
    }

    /// Participant `id`'s frame of this tick. A frame of another length is cut or padded
    /// with silence to the room's frame.
    pub fn push(&mut self, id: u64, pcm: &[i16]) {
        let Some(p) = self.parts.iter_mut().find(|p| p.id == id) else {
            return;
        };
        let n = pcm.len().min(self.frame);
        p.input[..n].copy_from_slice(&pcm[..n]);
        p.input[n..].fill(0);
        p.has_input = true;
    }

    /// Makes this tick's mixes (read them with [`Mixer::output`]) and updates who is
    /// talking; frames pushed are used up.
    pub fn mix(&mut self) {
        for p in &mut self.parts {
            p.level_dbov = if p.has_input {
                level_dbov(&p.input)
            } else {
                f32::NEG_INFINITY
            };
            let above = p.has_input && !p.muted && p.level_dbov > TALK_LEVEL_DBOV;
            p.run = match (above, p.run) {
                (true, r) if r > 0 => r.saturating_add(1),
                (true, _) => 1,
                (false, r) if r < 0 => r.saturating_sub(1),
                (false, _) => -1,
            };
            let talking = if p.talking {
                p.run > -(TALK_HANGOVER as i32)
            } else {
                p.run >= TALK_ONSET as i32
            };
            if talking != p.talking {
                p.talking = talking;
                self.events.push_back(Event::Talking(p.id, talking));
            }
        }
        // The loudest unmuted participants with a frame, at most max_talkers of them.
        let mut candidates: Vec<(f32, usize)> = self
            .parts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.has_input && !p.muted)
            .map(|(i, p)| (p.level_dbov, i))
            .collect();
        if candidates.len() > self.max_talkers {
            candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
            candidates.truncate(self.max_talkers);
        }
        for p in &mut self.parts {
            p.mixed = false;
        }
        self.sum.fill(0);
        for &(_, i) in &candidates {
            let p = &mut self.parts[i];
            p.mixed = true;
            for (s, x) in self.sum.iter_mut().zip(&p.input) {
                *s += i32::from(*x);
            }
        }
        for p in &mut self.parts {
            for ((o, s), x) in p.output.iter_mut().zip(&self.sum).zip(&p.input) {
                let own = if p.mixed { i32::from(*x) } else { 0 };
                *o = (s - own).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            }
            p.has_input = false;
        }
    }

    /// What participant `id` hears this tick (everyone mixed but themselves).
    pub fn output(&self, id: u64) -> Option<&[i16]> {
        self.parts
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.output.as_slice())
    }

    /// Whether participant `id` is talking now.
    pub fn is_talking(&self, id: u64) -> bool {
        self.parts.iter().any(|p| p.id == id && p.talking)
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

/// A frame's RMS level in dB below full scale (-inf for digital silence).
fn level_dbov(pcm: &[i16]) -> f32 {
    if pcm.is_empty() {
        return f32::NEG_INFINITY;
    }
    let energy: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (energy / pcm.len() as f64).sqrt();
    if rms == 0.0 {
        return f32::NEG_INFINITY;
    }
    (20.0 * (rms / 32768.0).log10()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: usize = 160;

    fn tone(hz: f32, amp: f32, frame: usize, n: usize) -> Vec<i16> {
        (0..F)
            .map(|i| {
                let t = (n * F + i) as f32 / 8000.0;
                (amp * (2.0 * std::f32::consts::PI * hz * t).sin()) as i16
            })
            .take(frame)
            .collect()
    }

    fn events(m: &mut Mixer) -> Vec<Event> {
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    /// Goertzel power of `hz` in `pcm` at 8 kHz, relative to the frame's energy.
    fn share(pcm: &[i16], hz: f32) -> f64 {
        crate::media::recognize::tone_share(pcm, hz, 8000)
    }

    #[test]
    fn everyone_hears_everyone_but_themselves() {
        let mut m = Mixer::new(F, 8);
        for id in 1..=3 {
            m.join(id);
        }
        let (a, b, c) = (
            tone(440.0, 6000.0, F, 0),
            tone(1000.0, 6000.0, F, 0),
            tone(1800.0, 6000.0, F, 0),
        );
        m.push(1, &a);
        m.push(2, &b);
        m.push(3, &c);
        m.mix();
        let heard = |id| m.output(id).unwrap().to_vec();
        for (id, own, others) in [
            (1, 440.0, [1000.0, 1800.0]),
            (2, 1000.0, [440.0, 1800.0]),
            (3, 1800.0, [440.0, 1000.0]),
        ] {
            let out = heard(id);
            assert!(share(&out, own) < 0.01, "{id} does not hear themselves");
            for hz in others {
                assert!(share(&out, hz) > 0.3, "{id} hears {hz} Hz");
            }
        }
        // Exactly the others' sum.
        let expect: Vec<i16> = b.iter().zip(&c).map(|(x, y)| x + y).collect();
        assert_eq!(heard(1), expect);
    }

    #[test]
    fn mixes_saturate_instead_of_wrapping() {
        let mut m = Mixer::new(F, 8);
        for id in 1..=3 {
            m.join(id);
        }
        m.push(1, &[30000; F]);
        m.push(2, &[30000; F]);
        m.push(3, &[-30000; F]);
        m.mix();
        assert_eq!(m.output(3).unwrap()[0], i16::MAX);
        assert_eq!(m.output(1).unwrap()[0], 0);
        m.push(1, &[-30000; F]);
        m.push(2, &[-30000; F]);
        m.mix();
        assert_eq!(
            m.output(3).unwrap()[0],
            i16::MIN,
            "3 sent nothing this tick"
        );
    }

    #[test]
    fn a_muted_participant_reaches_nobody_and_still_hears_the_room() {
        let mut m = Mixer::new(F, 8);
        for id in 1..=2 {
            m.join(id);
        }
        m.mute(1, true);
        for _ in 0..5 {
            m.push(1, &[5000; F]);
            m.push(2, &[700; F]);
            m.mix();
        }
        assert_eq!(m.output(2).unwrap()[0], 0, "muted: silence");
        assert_eq!(m.output(1).unwrap()[0], 700);
        assert!(!m.is_talking(1), "muted is not talking");
        m.mute(1, false);
        m.push(1, &[5000; F]);
        m.mix();
        assert_eq!(m.output(2).unwrap()[0], 5000);
    }

    #[test]
    fn a_lost_frame_is_silence_for_that_tick_only() {
        let mut m = Mixer::new(F, 8);
        m.join(1);
        m.join(2);
        m.push(1, &[900; F]);
        m.mix();
        assert_eq!(m.output(2).unwrap()[0], 900);
        m.mix(); // nothing arrived from 1 this tick
        assert_eq!(m.output(2).unwrap()[0], 0);
        m.push(1, &[900; 80]); // a short frame is padded
        m.mix();
        let out = m.output(2).unwrap();
        assert_eq!((out[0], out[F - 1]), (900, 0));
    }

    #[test]
    fn only_the_loudest_talkers_are_mixed() {
        let mut m = Mixer::new(F, 2);
        for id in 1..=4 {
            m.join(id);
        }
        m.push(1, &tone(440.0, 8000.0, F, 0));
        m.push(2, &tone(1000.0, 6000.0, F, 0));
        m.push(3, &tone(1800.0, 200.0, F, 0)); // a quiet open microphone
        m.mix();
        let out4 = m.output(4).unwrap().to_vec();
        assert!(share(&out4, 440.0) > 0.2 && share(&out4, 1000.0) > 0.2);
        assert!(share(&out4, 1800.0) < 0.01, "the third talker is left out");
        let out3 = m.output(3).unwrap().to_vec();
        assert!(
            share(&out3, 440.0) > 0.2,
            "who is not mixed still hears the room"
        );
        let out1 = m.output(1).unwrap().to_vec();
        assert!(share(&out1, 440.0) < 0.01 && share(&out1, 1000.0) > 0.5);
    }

    #[test]
    fn the_talker_indicator_ignores_blips_and_pauses() {
        let mut m = Mixer::new(F, 8);
        m.join(1);
        m.join(2);
        let speech = tone(300.0, 3000.0, F, 0);
        // Two loud frames: a blip, not talk.
        for _ in 0..2 {
            m.push(1, &speech);
            m.mix();
        }
        m.push(1, &[0; F]);
        m.mix();
        assert!(events(&mut m).is_empty());
        for _ in 0..TALK_ONSET {
            m.push(1, &speech);
            m.mix();
        }
        assert_eq!(events(&mut m), [Event::Talking(1, true)]);
        // A 200 ms pause between words keeps the indicator on.
        for _ in 0..10 {
            m.push(1, &[3; F]);
            m.mix();
        }
        m.push(1, &speech);
        m.mix();
        assert!(events(&mut m).is_empty() && m.is_talking(1));
        for _ in 0..TALK_HANGOVER {
            m.mix(); // nothing arrives: silence
        }
        assert_eq!(events(&mut m), [Event::Talking(1, false)]);
        for _ in 0..TALK_ONSET {
            m.push(1, &speech);
            m.mix();
        }
        m.leave(1);
        assert_eq!(
            events(&mut m),
            [Event::Talking(1, true), Event::Talking(1, false)]
        );
        assert_eq!(m.len(), 1);
        assert_eq!(m.output(1), None);
    }
}
