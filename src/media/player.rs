//! What a leg sends: a queue of prompts, one 20 ms frame per media tick, silence in between.
//! Sans-IO: the media clock asks for the next frame; the player never sleeps.

use std::collections::VecDeque;
use std::sync::Arc;

use super::codec::Codec;
use super::prompt::{Prompt, Silence};

/// Identifies one `play` request, so a "done" that arrives after a newer request can be told
/// apart from the newer request's.
pub(crate) type PlayId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayEnd {
    /// Every prompt of the request was sent.
    Finished(PlayId),
    /// Stopped early: a barge-in digit, a stop command, or a newer request.
    Interrupted(PlayId),
}

#[derive(Default)]
pub(crate) struct Player {
    queue: VecDeque<Arc<Prompt>>,
    current: Option<(Arc<Prompt>, usize)>,
    id: Option<PlayId>,
    barge_in: bool,
    paused: bool,
}

/// One frame to send, and whether it starts a talkspurt (first frame of a request).
pub(crate) struct Frame<'a> {
    pub payload: &'a [u8],
    pub start_of_speech: bool,
}

impl Player {
    /// Replaces whatever is playing with `prompts`; the interrupted request, if any, is
    /// reported so its caller is not left waiting.
    pub(crate) fn play(
        &mut self,
        id: PlayId,
        prompts: Vec<Arc<Prompt>>,
        barge_in: bool,
    ) -> Option<PlayEnd> {
        let interrupted = self.stop();
        self.queue = prompts.into();
        self.id = Some(id);
        self.barge_in = barge_in;
        self.current = None;
        interrupted
    }

    /// Stops the current request.
    pub(crate) fn stop(&mut self) -> Option<PlayEnd> {
        self.queue.clear();
        self.current = None;
        self.id.take().map(PlayEnd::Interrupted)
    }

    /// A digit arrived: stop if the request allows barge-in.
    pub(crate) fn on_digit(&mut self) -> Option<PlayEnd> {
        if self.barge_in && self.id.is_some() {
            self.stop()
        } else {
            None
        }
    }

    /// Whether nothing is being played (a bridged leg then sends its peer's audio).
    pub(crate) fn is_idle(&self) -> bool {
        self.id.is_none()
    }

    /// Holds position while the call is on hold.
    pub(crate) fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// The 8 kHz audio of the frame `next_frame` returned last, when it was a prompt's (a
    /// media stream taps it without decoding what was sent).
    pub(crate) fn last_pcm_8k(&self) -> Option<&[i16]> {
        let (prompt, i) = self.current.as_ref()?;
        let start = i.checked_sub(1)? * 160;
        prompt
            .pcm_8k
            .get(start..(start + 160).min(prompt.pcm_8k.len()))
    }

    /// The frame for this tick. Returns the end of a request when its last frame has gone.
    pub(crate) fn next_frame<'a>(
        &'a mut self,
        codec: Codec,
        silence: &'a Silence,
    ) -> (Frame<'a>, Option<PlayEnd>) {
        let silent = Frame {
            payload: silence.frame(codec),
            start_of_speech: false,
        };
        if self.paused {
            return (silent, None);
        }
        let Some(id) = self.id else {
            return (silent, None);
        };
        let exhausted = |cur: &Option<(Arc<Prompt>, usize)>| {
            cur.as_ref()
                .is_none_or(|(p, i)| *i >= p.frames(codec).len())
        };
        while exhausted(&self.current) {
            match self.queue.pop_front() {
                Some(next) => self.current = Some((next, 0)),
                None => {
                    self.current = None;
                    self.id = None;
                    return (silent, Some(PlayEnd::Finished(id)));
                }
            }
        }
        let Some((prompt, index)) = self.current.as_mut() else {
            return (silent, None);
        };
        let i = *index;
        *index += 1;
        let payload = prompt
            .frames(codec)
            .frame(i)
            .unwrap_or(silence.frame(codec));
        (
            Frame {
                payload,
                start_of_speech: i == 0,
            },
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(name: &str, ms: u32) -> Arc<Prompt> {
        let pcm: Vec<i16> = (0..8 * ms).map(|i| ((i % 40) as i16 - 20) * 500).collect();
        Arc::new(Prompt::from_pcm("en", name, &pcm, 8000).unwrap())
    }

    #[test]
    fn plays_prompts_in_order_then_reports_finished() {
        let silence = Silence::new().unwrap();
        let a = prompt("a", 60);
        let b = prompt("b", 40);
        let mut p = Player::default();
        assert!(p.play(1, vec![a.clone(), b.clone()], false).is_none());
        let mut sent = Vec::new();
        for _ in 0..5 {
            let (f, end) = p.next_frame(Codec::Pcmu, &silence);
            assert!(end.is_none());
            sent.push((f.payload.to_vec(), f.start_of_speech));
        }
        assert_eq!(sent[0].0, a.frames(Codec::Pcmu).frame(0).unwrap());
        assert!(
            sent[0].1 && !sent[1].1 && sent[3].1,
            "talkspurt marks at each prompt start"
        );
        assert_eq!(sent[3].0, b.frames(Codec::Pcmu).frame(0).unwrap());
        let (f, end) = p.next_frame(Codec::Pcmu, &silence);
        assert_eq!(end, Some(PlayEnd::Finished(1)));
        assert_eq!(f.payload, silence.frame(Codec::Pcmu));
        let (_, end) = p.next_frame(Codec::Pcmu, &silence);
        assert_eq!(end, None, "finished is reported once");
    }

    #[test]
    fn barge_in_only_when_asked() {
        let silence = Silence::new().unwrap();
        let mut p = Player::default();
        p.play(1, vec![prompt("a", 200)], false);
        p.next_frame(Codec::Pcma, &silence);
        assert_eq!(p.on_digit(), None);
        assert!(p.id.is_some(), "still playing");
        p.play(2, vec![prompt("a", 200)], true);
        assert_eq!(p.on_digit(), Some(PlayEnd::Interrupted(2)));
        let (f, end) = p.next_frame(Codec::Pcma, &silence);
        assert_eq!((f.payload, end), (silence.frame(Codec::Pcma), None));
    }

    #[test]
    fn a_new_request_interrupts_the_old_and_pause_holds_position() {
        let silence = Silence::new().unwrap();
        let a = prompt("a", 100);
        let mut p = Player::default();
        p.play(1, vec![a.clone()], false);
        assert_eq!(
            p.play(2, vec![a.clone()], false),
            Some(PlayEnd::Interrupted(1))
        );
        p.next_frame(Codec::Opus, &silence);
        p.set_paused(true);
        for _ in 0..10 {
            let (f, end) = p.next_frame(Codec::Opus, &silence);
            assert_eq!((f.payload, end), (silence.frame(Codec::Opus), None));
        }
        p.set_paused(false);
        let (f, _) = p.next_frame(Codec::Opus, &silence);
        assert_eq!(
            f.payload,
            a.frames(Codec::Opus).frame(1).unwrap(),
            "resumes where it paused"
        );
    }
}
