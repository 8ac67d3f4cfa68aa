//! Legs in conference on one media clock: three or more legs (a caller, an agent and a
//! supervisor who barges in; a consultation's three-way moment; a room) where everyone hears
//! everyone but themselves. A two-leg call stays a [`super::bridge`], whose same-codec case
//! passes payloads untouched; a conference decodes and mixes.
//!
//! Sans-IO and clock-free like the bridge: the media clock hands each member's audio of the
//! tick to [`Conference::push`] (what the member's leg received, through its relay), then
//! [`Conference::mix`] gives one payload per member for that member's next packet, in its own
//! codec. The mixing itself is [`super::mixer::Mixer`] (N-1 in O(N), the loudest few, talker
//! detection).
//!
//! Inside the conference audio travels as 8 kHz µ-law: each member's leg carries what it
//! receives to the conference through a [`Relay`] into PCMU (a G.711 µ-law leg's payloads
//! pass as they are, others are transcoded once), the conference decodes it for the mixer,
//! and each member's mix goes back through a relay from PCMU into the member's codec. G.711
//! is what a phone leg speaks anyway; an Opus browser's audio loses a little to µ-law's
//! companding, which a three-way call on phones has as well. A muted member's relay carries
//! nothing, so nobody hears them, while they hear everyone (a supervisor listening in).

use super::bridge::{Received, Relay};
use super::codec::{Codec, CodecError, Law};
use super::mixer::Mixer;
use super::prompt::FRAME_MS;

/// The codec members' audio reaches the conference in.
const WIRE: Codec = Codec::Pcmu;
/// Samples in one 20 ms frame at 8 kHz.
const FRAME: usize = 160;
/// Talkers mixed at once: more than a call ever has, so that nobody is cut.
const MAX_TALKERS: usize = 8;

struct Member {
    id: u64,
    /// The member's mix, from the conference's µ-law into the member's codec.
    down: Relay,
}

/// One conference. See the module documentation.
pub struct Conference {
    id: u64,
    mixer: Mixer,
    members: Vec<Member>,
    pcm: Vec<i16>,
    law: Vec<u8>,
}

impl Conference {
    pub fn new(id: u64) -> Conference {
        Conference {
            id,
            mixer: Mixer::new(FRAME, MAX_TALKERS),
            members: Vec::new(),
            pcm: Vec::with_capacity(FRAME),
            law: Vec::with_capacity(FRAME),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Adds leg `id`, whose codec is `codec` and whose frames are `ptime_ms` long (again:
    /// its relays are made anew). Returns the relay the leg carries its audio to the
    /// conference with ([`super::leg::LegCommand::Relay`]).
    pub fn add(&mut self, id: u64, codec: Codec, ptime_ms: u32) -> Result<Relay, CodecError> {
        let up = Relay::new(codec, ptime_ms, WIRE)?;
        let down = Relay::new(WIRE, FRAME_MS, codec)?;
        match self.members.iter_mut().find(|m| m.id == id) {
            Some(m) => m.down = down,
            None => self.members.push(Member { id, down }),
        }
        self.mixer.join(id);
        Ok(up)
    }

    /// Takes leg `id` out.
    pub fn remove(&mut self, id: u64) {
        self.members.retain(|m| m.id != id);
        self.mixer.leave(id);
    }

    pub fn contains(&self, id: u64) -> bool {
        self.members.iter().any(|m| m.id == id)
    }

    /// The members' leg ids.
    pub fn members(&self) -> impl Iterator<Item = u64> + '_ {
        self.members.iter().map(|m| m.id)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Who started or stopped talking in the last [`Conference::mix`]: (member, talking).
    pub fn poll_talking(&mut self) -> Option<(u64, bool)> {
        match self.mixer.poll_event()? {
            super::mixer::Event::Talking(id, talking) => Some((id, talking)),
        }
    }

    /// What member `id`'s leg received this tick, as its relay gave it (µ-law).
    pub fn push(&mut self, id: u64, payload: &[u8]) {
        self.pcm.clear();
        Law::Mu.decode(payload, &mut self.pcm);
        self.mixer.push(id, &self.pcm);
    }

    /// Mixes this tick and hands each member's payload (in its codec) to `deliver`; a
    /// member with nothing due (its relay still filling) gets nothing and sends its own
    /// silence.
    pub fn mix(&mut self, mut deliver: impl FnMut(u64, &[u8])) {
        self.mixer.mix();
        for m in &mut self.members {
            let Some(mix) = self.mixer.output(m.id) else {
                continue;
            };
            self.law.clear();
            Law::Mu.encode(mix, &mut self.law);
            m.down.push(Received::Frame(&self.law));
            if let Some(payload) = m.down.pull() {
                deliver(m.id, payload);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::recognize::tone_share;

    fn tone(hz: f32, n: usize) -> Vec<i16> {
        (0..FRAME)
            .map(|i| {
                let t = (n * FRAME + i) as f32 / 8000.0;
                (6000.0 * (2.0 * std::f32::consts::PI * hz * t).sin()) as i16
            })
            .collect()
    }

    /// Three members on three codecs (µ-law, A-law, Opus) each say a tone through their up
    /// relay: each one's mix, decoded from its own codec, has the other two tones and not
    /// its own.
    #[test]
    fn each_member_hears_the_others_in_its_own_codec() {
        let mut c = Conference::new(1);
        let members = [
            (1, Codec::Pcmu, 440.0),
            (2, Codec::Pcma, 1000.0),
            (3, Codec::Opus, 1800.0),
        ];
        let mut up: Vec<Relay> = members
            .iter()
            .map(|&(id, codec, _)| c.add(id, codec, 20).unwrap())
            .collect();
        // Each member's far end: its tone, sent in its codec.
        let mut mics: Vec<Relay> = members
            .iter()
            .map(|&(_, codec, _)| Relay::new(Codec::Pcmu, 20, codec).unwrap())
            .collect();
        let mut decoders: Vec<crate::media::codec::Decoder> = members
            .iter()
            .map(|&(_, codec, _)| crate::media::codec::Decoder::new(codec).unwrap())
            .collect();
        let mut heard: Vec<Vec<i16>> = vec![Vec::new(); 3];
        for n in 0..50 {
            for (i, &(id, _, hz)) in members.iter().enumerate() {
                // The member's leg received this frame in its codec.
                let mut law = Vec::new();
                Law::Mu.encode(&tone(hz, n), &mut law);
                mics[i].push(Received::Frame(&law));
                let Some(payload) = mics[i].pull().map(<[u8]>::to_vec) else {
                    continue;
                };
                up[i].push(Received::Frame(&payload));
                if let Some(wire) = up[i].pull() {
                    c.push(id, wire);
                }
            }
            let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
            c.mix(|id, payload| out.push((id, payload.to_vec())));
            for (id, payload) in out {
                let i = (id - 1) as usize;
                let mut pcm = Vec::new();
                decoders[i].decode(&payload, &mut pcm).unwrap();
                if decoders[i].rate() != 8000 {
                    let step = (decoders[i].rate() / 8000) as usize;
                    pcm = pcm.iter().step_by(step).copied().collect();
                }
                heard[i].extend(pcm);
            }
        }
        for (i, &(_, _, own)) in members.iter().enumerate() {
            // The last half second: past every relay's priming and the codecs' start.
            let tail = &heard[i][heard[i].len().saturating_sub(4000)..];
            assert!(
                tail.len() >= 3000,
                "member {i} heard {} samples",
                tail.len()
            );
            assert!(
                tone_share(tail, own, 8000) < 0.05,
                "member {i} does not hear itself"
            );
            for &(_, _, other) in members.iter().filter(|m| m.2 != own) {
                assert!(
                    tone_share(tail, other, 8000) > 0.15,
                    "member {i} hears {other} Hz: {}",
                    tone_share(tail, other, 8000)
                );
            }
        }
    }

    /// A member who talks is told as talking once, and as quiet once they stop; a silent
    /// member never is.
    #[test]
    fn talkers_are_told_when_they_start_and_stop() {
        let mut c = Conference::new(1);
        for id in 1..=2 {
            c.add(id, Codec::Pcmu, 20).unwrap();
        }
        let mut loud = Vec::new();
        let mut quiet = Vec::new();
        let mut events = Vec::new();
        for n in 0..60 {
            loud.clear();
            quiet.clear();
            let talking = n < 20;
            let pcm = if talking {
                tone(1000.0, n)
            } else {
                vec![0; FRAME]
            };
            Law::Mu.encode(&pcm, &mut loud);
            Law::Mu.encode(&[0; FRAME], &mut quiet);
            c.push(1, &loud);
            c.push(2, &quiet);
            c.mix(|_, _| {});
            while let Some(e) = c.poll_talking() {
                events.push((n, e));
            }
        }
        let told: Vec<(u64, bool)> = events.iter().map(|(_, e)| *e).collect();
        assert_eq!(told, [(1, true), (1, false)], "{events:?}");
        assert!(events[0].0 < 5, "told soon after they start: {events:?}");
        assert!(
            events[1].0 >= 20,
            "told quiet only after they stop: {events:?}"
        );
    }

    /// A member who leaves is heard by nobody and hears nothing more; one added again gets
    /// new relays (its codec may have changed).
    #[test]
    fn a_member_who_leaves_is_mixed_no_more() {
        let mut c = Conference::new(7);
        for id in 1..=3 {
            c.add(id, Codec::Pcmu, 20).unwrap();
        }
        assert_eq!(c.len(), 3);
        c.remove(2);
        assert!(!c.contains(2));
        let mut law = Vec::new();
        Law::Mu.encode(&tone(1000.0, 0), &mut law);
        c.push(2, &law);
        c.push(1, &law);
        let mut got = Vec::new();
        c.mix(|id, _| got.push(id));
        assert!(!got.contains(&2), "{got:?}");
        c.add(3, Codec::Pcma, 20).unwrap();
        assert_eq!(c.len(), 2, "added again, not twice");
        assert_eq!(c.members().collect::<Vec<_>>(), vec![1, 3]);
    }
}
