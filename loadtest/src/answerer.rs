//! A synthetic agent in a browser, sans-IO: it answers the next caller waiting in a queue
//! (`POST /api/v1/queues/QUEUE/answer` with a WebRTC offer, as the agent console does), says a
//! prompt and then speaks, checks it heard the caller through the bridge, hangs up (`DELETE`),
//! and takes the next caller, until the run ends. The caller's own scenario checks the other
//! direction: it expects the agent's prompt, whole, and then the hang-up.

use std::net::SocketAddr;
use std::sync::Arc;

use careline::media::codec::Codec;
use careline::media::rtp::write_header;

use crate::audio::{Assets, Frames};
use crate::clock::{MS, Nanos, instant};
use crate::hear::FrameDecoder;
use crate::measure::Measure;
use crate::net::SendBatch;
use crate::webrtc::{BrowserLeg, LegState};

/// What every answerer of a run does.
pub struct AnswerPlan {
    pub queue: String,
    pub codec: Codec,
    /// The prompt an agent says first (the server's own frames for `codec`).
    pub greeting: Frames,
    /// What it says after the greeting (caller speech, looped).
    pub assets: Arc<Assets>,
    /// How long an agent speaks after its greeting before hanging up.
    pub talk_ms: u64,
}

/// How long between tries when nobody is waiting.
const RETRY: Nanos = 250 * MS;
const CONNECT_TIMEOUT: Nanos = 20_000 * MS;
/// Frames of the caller's voice an agent must hear for the call to count (the caller speaks
/// throughout; half a second allows for the bridge's start).
const MIN_VOICED_FRAMES: u32 = 25;
/// Mean absolute sample above which a decoded frame is voice, not silence or comfort noise.
const VOICED_LEVEL: u32 = 200;

enum State {
    /// Between calls: the next try at `until`.
    Idle {
        until: Nanos,
    },
    /// The offer is out (POST).
    Offering,
    Connecting {
        since: Nanos,
    },
    Talking {
        since: Nanos,
        frame: usize,
    },
    /// Our DELETE is out.
    Ending,
    /// Stopped for good (the run is over, or the server refuses this agent).
    Stopped,
}

pub struct Answerer {
    /// Its key for the HTTP exchanges (as a caller's Call-ID).
    pub id: String,
    local: SocketAddr,
    state: State,
    leg: Option<BrowserLeg>,
    post: Option<String>,
    location: Option<String>,
    delete: bool,
    remote: Option<SocketAddr>,
    pt: u8,
    ssrc: u32,
    seq: u16,
    ts: u32,
    decoder: Option<FrameDecoder>,
    pcm: Vec<i16>,
    voiced: u32,
    stopping: bool,
    scratch: Vec<u8>,
}

impl Answerer {
    pub fn new(id: String, local: SocketAddr, now: Nanos) -> Answerer {
        Answerer {
            id,
            local,
            state: State::Idle { until: now },
            leg: None,
            post: None,
            location: None,
            delete: false,
            remote: None,
            pt: 0,
            ssrc: 0,
            seq: 0,
            ts: 0,
            decoder: None,
            pcm: Vec::with_capacity(crate::hear::FRAME),
            voiced: 0,
            stopping: false,
            scratch: Vec::with_capacity(200),
        }
    }

    /// The server's address for the call in progress (its packets come from there).
    pub fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// Stopped, with nothing in flight.
    pub fn is_stopped(&self) -> bool {
        matches!(self.state, State::Stopped)
    }

    /// Takes no new caller; the call in progress (if any) ends as planned.
    pub fn stop(&mut self) {
        self.stopping = true;
        if matches!(self.state, State::Idle { .. }) {
            self.state = State::Stopped;
        }
    }

    pub fn take_post(&mut self) -> Option<String> {
        self.post.take()
    }

    pub fn take_delete(&mut self) -> Option<String> {
        if !std::mem::take(&mut self.delete) {
            return None;
        }
        self.location.clone()
    }

    fn fail(m: &mut Measure, reason: &'static str, detail: String) {
        *m.agent_failed.entry(reason).or_default() += 1;
        if m.failure_examples.len() < 20 {
            m.failure_examples.push(format!("{reason}: {detail}"));
        }
    }

    /// Hangs up the call in progress (DELETE), or goes idle when there is none.
    fn hang_up(&mut self, now: Nanos) {
        if let Some(leg) = self.leg.as_mut() {
            leg.close();
        }
        if self.location.is_some() {
            self.delete = true;
            self.state = State::Ending;
        } else {
            self.idle(now);
        }
    }

    fn idle(&mut self, until: Nanos) {
        self.remote = None;
        self.location = None;
        self.state = if self.stopping {
            State::Stopped
        } else {
            State::Idle { until }
        };
    }

    /// The answer to the offer.
    pub fn on_answer(
        &mut self,
        status: u16,
        location: Option<String>,
        body: &str,
        at: Nanos,
        m: &mut Measure,
    ) {
        if !matches!(self.state, State::Offering) {
            return;
        }
        match status {
            201 => {}
            // Nobody is waiting (yet): try again shortly, with a fresh offer.
            409 => {
                self.leg = None;
                self.idle(at + RETRY);
                return;
            }
            0 => {
                Self::fail(m, "agent_unreachable", body.chars().take(160).collect());
                self.leg = None;
                self.idle(at + 4 * RETRY);
                return;
            }
            _ => {
                // Refused (credentials, no such queue): the same again would be refused too.
                let first: String = body
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(160)
                    .collect();
                Self::fail(
                    m,
                    "agent_refused",
                    format!("answer answered {status}: {first}"),
                );
                self.leg = None;
                self.state = State::Stopped;
                return;
            }
        }
        self.location = location;
        let Some(leg) = self.leg.as_mut() else {
            return;
        };
        match leg.accept(body, instant(at)) {
            Ok(chosen) => {
                self.remote = Some(chosen.remote);
                self.pt = chosen.payload_type;
                self.decoder = FrameDecoder::new(chosen.codec).ok();
                self.voiced = 0;
                self.state = State::Connecting { since: at };
            }
            Err(e) => {
                Self::fail(m, "agent_sdp", e.to_string());
                self.hang_up(at);
            }
        }
    }

    pub fn on_deleted(&mut self, status: u16, now: Nanos, m: &mut Measure) {
        if status != 200 && status != 404 {
            Self::fail(
                m,
                "agent_delete_failed",
                format!("DELETE answered {status}"),
            );
        }
        self.leg = None;
        self.idle(now);
    }

    /// A datagram from the server for the call in progress.
    pub fn on_datagram(&mut self, from: SocketAddr, data: &[u8], at: Nanos) {
        let Some(leg) = self.leg.as_mut() else {
            return;
        };
        let (decoder, pcm, voiced, pt) =
            (&mut self.decoder, &mut self.pcm, &mut self.voiced, self.pt);
        leg.receive(from, data, instant(at), |p| {
            if p.header.payload_type != pt {
                return;
            }
            if let Some(d) = decoder.as_mut()
                && d.decode(&p.payload, pcm).is_ok()
            {
                let level = pcm.iter().map(|s| s.unsigned_abs() as u32).sum::<u32>()
                    / pcm.len().max(1) as u32;
                if level > VOICED_LEVEL {
                    *voiced += 1;
                }
            }
        });
    }

    /// The 20 ms tick.
    pub fn on_tick(&mut self, now: Nanos, plan: &AnswerPlan, out: &mut SendBatch, m: &mut Measure) {
        if let Some(leg) = self.leg.as_mut() {
            leg.timers(instant(now));
        }
        let state = self.leg.as_ref().map(|l| l.state());
        match self.state {
            State::Idle { until } if now >= until && !self.stopping => {
                self.ssrc = rand::random();
                match BrowserLeg::offer(self.local, plan.codec, false, self.ssrc, instant(now)) {
                    Ok((leg, offer)) => {
                        self.leg = Some(leg);
                        self.post = Some(offer);
                        self.seq = rand::random();
                        self.ts = rand::random();
                        self.state = State::Offering;
                    }
                    Err(e) => {
                        Self::fail(m, "agent_setup", e.to_string());
                        self.state = State::Stopped;
                    }
                }
            }
            State::Connecting { since } => {
                if state == Some(LegState::Connected) {
                    self.state = State::Talking {
                        since: now,
                        frame: 0,
                    };
                } else if now - since > CONNECT_TIMEOUT || state == Some(LegState::Ended) {
                    Self::fail(
                        m,
                        "agent_not_connected",
                        "answered, but ICE and DTLS did not complete".into(),
                    );
                    self.hang_up(now);
                }
            }
            State::Talking { since, frame } => {
                if state == Some(LegState::Ended) {
                    Self::fail(
                        m,
                        "agent_call_dropped",
                        format!("the call ended after {} ms of talk", (now - since) / MS),
                    );
                    self.hang_up(now);
                } else if now - since
                    >= (plan.greeting.len() as Nanos * 20 + plan.talk_ms as Nanos) * MS
                {
                    if self.voiced >= MIN_VOICED_FRAMES {
                        m.answers += 1;
                    } else {
                        Self::fail(
                            m,
                            "agent_heard_nothing",
                            format!(
                                "{} voiced frames of the caller in {} ms",
                                self.voiced, plan.talk_ms
                            ),
                        );
                    }
                    self.hang_up(now);
                } else {
                    self.say(now, frame, plan);
                    self.state = State::Talking {
                        since,
                        frame: frame + 1,
                    };
                }
            }
            _ => {}
        }
        if let Some(leg) = self.leg.as_mut() {
            leg.transmit(|to, d| out.push_with(to, |b| b.extend_from_slice(d)));
        }
    }

    /// Frame `frame` of what the agent says: the greeting, then speech.
    fn say(&mut self, now: Nanos, frame: usize, plan: &AnswerPlan) {
        let Some(leg) = self.leg.as_mut() else {
            return;
        };
        let payload = if frame < plan.greeting.len() {
            plan.greeting.frame(frame).unwrap_or_default()
        } else {
            plan.assets.speech_frame(frame - plan.greeting.len())
        };
        let mut header = [0u8; careline::media::rtp::HEADER_LEN];
        write_header(
            &mut header,
            self.pt,
            frame == 0,
            self.seq,
            self.ts,
            self.ssrc,
        );
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(plan.codec.clock_rate() / 50);
        self.scratch.clear();
        self.scratch.extend_from_slice(&header);
        self.scratch.extend_from_slice(payload);
        leg.send_rtp(&self.scratch, instant(now));
    }
}
