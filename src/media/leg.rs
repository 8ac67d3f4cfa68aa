//! One call's media, as a sans-IO state machine: fed datagrams, ticks and commands, it
//! returns packets to send and events for the call. The media clock (see `engine`) owns the
//! sockets and calls [`MediaLeg::on_tick`] every 20 ms for every leg it runs.

use super::amd::{Amd, AmdEvent, AmdSettings};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use super::bridge::{Received, Relay};
use super::codec::Law;
use super::codec::{Codec, CodecError, Decoder};
use super::dtmf::inband::{InbandDetector, ToneEvent};
use super::dtmf::rfc4733::{EventOutcome, EventReceiver};
use super::dtmf::{Digit, DtmfMethod, InbandDtmf, TelephoneEvent};
use super::jitter::{JitterBuffer, JitterConfig, Pop};
use super::player::{PlayEnd, PlayId, Player};
use super::prompt::{FRAME_MS, Prompt, Silence};
use super::recorder::{LegRecording, RecorderTap};
use super::rtcp::{ReceiveStats, ReportBlock, RtcpPacket, SendStats};
use super::rtp::{RtpPacket, RtpSender};
use super::tap::{TapFrame, TapSender, Track};

/// RTP comfort noise (RFC 3389), which callers may send during silence.
const PT_COMFORT_NOISE: u8 = 13;
/// RFC 3550 §6.2: one compound RTCP packet about every 5 s for a two-party session.
const RTCP_INTERVAL_MS: u64 = 5000;

/// The negotiated session, as the leg needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct LegParams {
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event: Option<TelephoneEvent>,
    pub remote_rtp: Option<SocketAddr>,
    pub remote_rtcp: Option<SocketAddr>,
    pub send: bool,
    pub receive: bool,
    pub ptime_ms: u32,
    /// SDES-keyed SRTP (RFC 4568) on an RTP leg: the engine protects what the leg sends and
    /// checks what it receives. `None` for plain RTP and for browser legs (whose SRTP is
    /// DTLS-keyed inside their peer connection).
    pub srtp: Option<super::srtp::SrtpKeys>,
}

/// Settings that come from configuration rather than from SDP.
#[derive(Debug, Clone)]
pub struct LegOptions {
    pub inband: InbandDtmf,
    pub jitter_ms: u32,
    /// 0 = never time out.
    pub rtp_timeout_ms: u64,
    /// RTCP SDES CNAME (RFC 3550 §6.5.1): random per leg, never a caller identity.
    pub cname: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEvent {
    Digit {
        digit: Digit,
        method: DtmfMethod,
    },
    PlayEnded(PlayEnd),
    /// No RTP for the configured time while RTP was expected.
    RtpTimeout,
    /// A browser leg's connection is up (ICE and DTLS done, SRTP keyed): media flows from now.
    Connected,
    /// A browser leg has heard nothing from its browser for a while (ICE consent checks
    /// missing, RFC 7675): it may come back ([`LegEvent::Connected`] again) or be lost.
    Disconnected,
    /// A browser leg's connection failed or its consent expired (RFC 7675): the peer is gone.
    ConnectionLost,
    /// Answering-machine detection (after [`LegCommand::Screen`]) found who answered, or
    /// that a machine's greeting is over.
    Amd(AmdEvent),
    /// In a conference, this leg's audio started (true) or stopped (false) being speech
    /// loud enough to count as talking (a room's talker indicator; see
    /// [`super::mixer`]).
    Talking(bool),
}

pub enum LegCommand {
    Play {
        id: PlayId,
        prompts: Vec<Arc<Prompt>>,
        barge_in: bool,
    },
    Stop,
    /// A new offer/answer (re-INVITE): hold, unhold, new address.
    Update(LegParams),
    /// A digit that arrived by signaling (SIP INFO), merged into the same stream.
    Digit(Digit),
    /// Start, pause, resume or stop handing audio to a recorder.
    Record(LegRecording),
    /// Copy the call's audio (both directions, 8 kHz) to a media stream, or stop (None).
    Tap(Option<TapSender>),
    /// Carry what this leg receives to a bridged peer through `relay` (built by the media
    /// clock for the two legs' codecs), or stop (None).
    Relay(Option<Relay>),
    /// Stop (true) or resume (false) carrying this leg's audio to its bridged peer: the
    /// peer hears silence meanwhile. The leg itself still hears the peer.
    Mute(bool),
    /// Start answering-machine detection on what this leg receives, from now: the leg
    /// reports [`LegEvent::Amd`].
    Screen(AmdSettings),
}

/// Counters a media clock flushes into the process metrics after each tick.
#[derive(Debug, Default, Clone, Copy)]
pub struct LegCounters {
    pub sent: u64,
    pub received: u64,
    pub invalid: u64,
}

/// What the leg measured, for the call's end-of-call log and metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct LegSummary {
    pub packets_sent: u32,
    pub packets_received: u64,
    pub packets_lost: i64,
    pub jitter_ms: f64,
}

pub struct MediaLeg {
    params: LegParams,
    opts: LegOptions,
    sender: RtpSender,
    ts_step: u32,
    player: Player,
    silence: Arc<Silence>,
    events: VecDeque<LegEvent>,
    /// Symmetric RTP (RFC 4961): once a packet arrives, answer where it came from.
    latched: Option<SocketAddr>,
    rfc4733: EventReceiver,
    /// Present when received audio is needed as PCM (in-band detection, a recorder); absent
    /// otherwise, so a plain IVR call never decodes what it receives.
    inband: Option<InbandPath>,
    /// Whether in-band detection is wanted (the path may exist for the recorder alone).
    want_inband: bool,
    recorder: Option<LegRecorder>,
    /// Answering-machine detection: asked for (settings, until the receive path knows its
    /// rate), then running until it has said all it has to say.
    amd_asked: Option<AmdSettings>,
    amd: Option<Amd>,
    /// Media streaming: frames are offered with `try_send`, never waited on.
    tap: Option<TapSender>,
    /// Bridged: what this leg receives, on its way to the peer (see `bridge`).
    relay: Option<Relay>,
    /// [`LegCommand::Mute`]: kept for a relay made later (a codec change, a conference).
    muted: bool,
    /// Bridged: the peer's audio for this leg's next packet, in this leg's codec; sent when
    /// no prompt plays (a prompt, such as hold music or a whisper, takes its place).
    bridge_in: Vec<u8>,
    bridge_in_ready: bool,
    rx_stats: ReceiveStats,
    tx_stats: SendStats,
    rx_ssrc: Option<u32>,
    last_rx_ms: u64,
    timed_out: bool,
    next_rtcp_ms: u64,
    counters: LegCounters,
}

/// The receive audio path: jitter buffer -> decoder -> tone detector and/or recorder.
struct InbandPath {
    jitter: JitterBuffer,
    decoder: Decoder,
    /// Absent when the path runs only for a recorder.
    detector: Option<InbandDetector>,
    pcm: Vec<i16>,
    tones: Vec<ToneEvent>,
    frame_ms: u32,
    next_pop_ms: Option<u64>,
}

/// Hands both directions to a recorder every tick: what the caller sent (decoded by the
/// receive path) and what the caller heard (the frame Careline sent, decoded again, so the
/// recording is exactly what went out, prompts and silence alike). A recording that stores
/// the call's G.711 bytes gets those bytes instead, both ways: nothing decoded at all.
struct LegRecorder {
    /// Held in the leg, not boxed: the tap is touched every tick, and at 1,000 calls a
    /// pointer away was a cache miss per tick (the largest single cost recording added to
    /// the media threads' profile).
    tap: RecorderTap,
    sent_decoder: Decoder,
    sent_pcm: Vec<i16>,
    /// Decoded caller audio not yet recorded (frames arrive per ptime, ticks every 20 ms).
    caller: VecDeque<i16>,
    caller_frame: Vec<i16>,
    heard_frame: Vec<i16>,
    /// The caller's G.711 bytes not yet recorded (a companded recording of a G.711 leg).
    caller_law: VecDeque<u8>,
    /// This tick's caller frame is the jitter buffer's last played one, not copied into
    /// `caller_law` (which was empty): the common case, one 20 ms frame per tick, goes from
    /// the jitter buffer straight into the recording's block.
    caller_direct: bool,
}

impl LegRecorder {
    /// At most this much caller audio waits (200 ms at 16 kHz): a burst cannot grow memory.
    const MAX_BACKLOG: usize = 3200;
    /// The same for G.711 bytes (200 ms at 8 kHz).
    const MAX_BACKLOG_LAW: usize = 1600;

    /// The law whose bytes go to the recording as they are, when the leg's codec matches
    /// the recording's (a re-INVITE to another codec falls back to decoding).
    fn passthrough(&self, codec: Codec) -> Option<Law> {
        self.tap.law().filter(|&law| Law::of(codec) == Some(law))
    }
}

impl MediaLeg {
    /// `ssrc`, `seq0`, `ts0` are random per RFC 3550 §5.1 (the caller draws them: no RNG here).
    pub fn new(
        params: LegParams,
        opts: LegOptions,
        silence: Arc<Silence>,
        (ssrc, seq0, ts0): (u32, u16, u32),
        now_ms: u64,
    ) -> Result<MediaLeg, CodecError> {
        let ts_step = params.codec.clock_rate() / 1000 * FRAME_MS;
        let mut leg = MediaLeg {
            inband: None,
            want_inband: false,
            amd_asked: None,
            amd: None,
            recorder: None,
            tap: None,
            relay: None,
            muted: false,
            bridge_in: Vec::new(),
            bridge_in_ready: false,
            sender: RtpSender::new(ssrc, seq0, ts0),
            ts_step,
            player: Player::default(),
            silence,
            events: VecDeque::new(),
            latched: None,
            rfc4733: EventReceiver::new(),
            rx_stats: ReceiveStats::new(params.codec.clock_rate()),
            tx_stats: SendStats::default(),
            rx_ssrc: None,
            last_rx_ms: now_ms,
            timed_out: false,
            next_rtcp_ms: now_ms + RTCP_INTERVAL_MS,
            counters: LegCounters::default(),
            params: params.clone(),
            opts,
        };
        leg.configure(params)?;
        Ok(leg)
    }

    fn configure(&mut self, params: LegParams) -> Result<(), CodecError> {
        let want_inband = match self.opts.inband {
            InbandDtmf::Always => true,
            InbandDtmf::Never => false,
            // Decoding and filtering every frame costs; when the caller sends telephone-events
            // there is nothing to find in the audio (DESIGN.md, performance).
            InbandDtmf::Auto => params.telephone_event.is_none(),
        };
        let codec_changed = params.codec != self.params.codec;
        self.want_inband = want_inband;
        self.update_receive_path(&params, codec_changed)?;
        if codec_changed {
            if let Some(r) = &mut self.recorder {
                r.sent_decoder = Decoder::new(params.codec)?;
            }
            self.ts_step = params.codec.clock_rate() / 1000 * FRAME_MS;
            self.rx_stats = ReceiveStats::new(params.codec.clock_rate());
        }
        if params.remote_rtp != self.params.remote_rtp {
            self.latched = None;
        }
        let was_sending = self.params.send;
        self.player.set_paused(!params.send);
        if params.send && !was_sending {
            self.sender.marker_pending = true; // resuming after hold starts a talkspurt
        }
        self.params = params;
        Ok(())
    }

    /// Builds, adapts or drops the receive path: it runs while in-band detection or a
    /// recorder needs PCM, and not otherwise.
    fn update_receive_path(
        &mut self,
        params: &LegParams,
        codec_changed: bool,
    ) -> Result<(), CodecError> {
        let need = self.want_inband
            || self.amd_asked.is_some()
            || self.amd.is_some()
            || self.recorder.is_some()
            || self.tap.is_some()
            || self.relay.is_some();
        if !need {
            self.inband = None;
            return Ok(());
        }
        if self.inband.is_none() || codec_changed {
            let decoder = Decoder::new(params.codec)?;
            let frame_ms = params.ptime_ms.clamp(10, 120);
            self.inband = Some(InbandPath {
                jitter: JitterBuffer::new(JitterConfig {
                    frame_ms,
                    target_delay_ms: self.opts.jitter_ms,
                    slot_bytes: params.codec.typical_payload(frame_ms),
                    ..JitterConfig::default()
                }),
                detector: None,
                decoder,
                pcm: Vec::with_capacity(960),
                tones: Vec::with_capacity(4),
                frame_ms,
                next_pop_ms: None,
            });
        }
        if let Some(path) = &mut self.inband {
            match (self.want_inband, path.detector.is_some()) {
                (true, false) => path.detector = Some(InbandDetector::new(path.decoder.rate())),
                (false, true) => path.detector = None,
                _ => {}
            }
        }
        Ok(())
    }

    fn record(&mut self, cmd: LegRecording) -> Result<(), CodecError> {
        match cmd {
            LegRecording::Attach(tap) => {
                self.recorder = Some(LegRecorder {
                    tap: *tap,
                    sent_decoder: Decoder::new(self.params.codec)?,
                    sent_pcm: Vec::with_capacity(960),
                    caller: VecDeque::new(),
                    caller_frame: Vec::new(),
                    heard_frame: Vec::new(),
                    caller_law: VecDeque::new(),
                    caller_direct: false,
                });
            }
            LegRecording::Pause => {
                if let Some(r) = &mut self.recorder {
                    r.tap.pause();
                }
            }
            LegRecording::Resume => {
                if let Some(r) = &mut self.recorder {
                    r.caller.clear();
                    r.caller_law.clear();
                    r.tap.resume();
                }
            }
            LegRecording::Detach => {
                if let Some(mut r) = self.recorder.take() {
                    r.tap.end();
                }
            }
        }
        let params = self.params.clone();
        self.update_receive_path(&params, false)
    }

    /// Ends an attached recording (the leg is going away).
    pub fn end_recording(&mut self) {
        if let Some(mut r) = self.recorder.take() {
            r.tap.end();
        }
    }

    /// Hints the lines the next tick will touch behind the leg's pointers: its jitter buffer's
    /// next slots, its recording's block. Call a visit ahead, once the leg's own lines are in
    /// cache (it reads its pointers); see [`super::prefetch`].
    pub fn prefetch_buffers(&self) {
        if let Some(path) = &self.inband {
            path.jitter.prefetch();
        }
        if let Some(rec) = &self.recorder {
            rec.tap.prefetch();
        }
    }

    pub fn params(&self) -> &LegParams {
        &self.params
    }

    /// Whether this leg's audio goes to a bridged peer.
    pub fn is_bridged(&self) -> bool {
        self.relay.is_some()
    }

    /// The peer's audio for this leg's next packet (a payload in this leg's codec).
    pub fn set_bridge_input(&mut self, payload: &[u8]) {
        self.bridge_in.clear();
        self.bridge_in.extend_from_slice(payload);
        self.bridge_in_ready = true;
    }

    /// What this leg received, as its peer's next payload; call after [`MediaLeg::on_tick`].
    pub fn bridge_output(&mut self) -> Option<&[u8]> {
        self.relay.as_mut()?.pull()
    }

    pub fn handle_command(&mut self, cmd: LegCommand) -> Result<(), CodecError> {
        match cmd {
            LegCommand::Play {
                id,
                prompts,
                barge_in,
            } => {
                if let Some(end) = self.player.play(id, prompts, barge_in) {
                    self.events.push_back(LegEvent::PlayEnded(end));
                }
            }
            LegCommand::Stop => {
                if let Some(end) = self.player.stop() {
                    self.events.push_back(LegEvent::PlayEnded(end));
                }
            }
            LegCommand::Update(params) => self.configure(params)?,
            LegCommand::Digit(d) => self.digit(d, DtmfMethod::SipInfo),
            LegCommand::Record(r) => self.record(r)?,
            LegCommand::Tap(tap) => {
                self.tap = tap;
                let params = self.params.clone();
                self.update_receive_path(&params, false)?;
            }
            LegCommand::Relay(mut relay) => {
                if let Some(relay) = &mut relay {
                    relay.set_muted(self.muted);
                }
                self.relay = relay;
                if self.relay.is_none() {
                    self.bridge_in_ready = false;
                }
                let params = self.params.clone();
                self.update_receive_path(&params, false)?;
            }
            LegCommand::Mute(muted) => {
                self.muted = muted;
                if let Some(relay) = &mut self.relay {
                    relay.set_muted(muted);
                }
            }
            LegCommand::Screen(settings) => {
                self.amd_asked = Some(settings);
                self.amd = None;
                let params = self.params.clone();
                self.update_receive_path(&params, false)?;
            }
        }
        Ok(())
    }

    fn digit(&mut self, digit: Digit, method: DtmfMethod) {
        self.events.push_back(LegEvent::Digit { digit, method });
        if let Some(end) = self.player.on_digit() {
            self.events.push_back(LegEvent::PlayEnded(end));
        }
    }

    /// One datagram from the RTP socket.
    pub fn on_rtp(&mut self, buf: &[u8], from: SocketAddr, now_ms: u64) {
        let Ok(pkt) = RtpPacket::parse(buf) else {
            self.counters.invalid += 1;
            return;
        };
        match self.latched {
            None => self.latched = Some(from),
            // Same host, other port: some callers send telephone-events from a second
            // socket. Another host is not this call's media.
            Some(l) if l.ip() != from.ip() => {
                self.counters.invalid += 1;
                return;
            }
            Some(_) => {}
        }
        self.counters.received += 1;
        self.last_rx_ms = now_ms;
        self.timed_out = false;
        if self
            .params
            .telephone_event
            .is_some_and(|te| te.payload_type == pkt.payload_type)
        {
            if let Ok(outcomes) =
                self.rfc4733
                    .on_packet(pkt.payload, pkt.timestamp, pkt.marker, pkt.sequence)
            {
                for outcome in outcomes {
                    if let EventOutcome::Started(d) = outcome {
                        self.digit(d, DtmfMethod::Rfc4733);
                    }
                }
            }
            return;
        }
        if pkt.payload_type == PT_COMFORT_NOISE {
            return;
        }
        if pkt.payload_type != self.params.payload_type {
            self.counters.invalid += 1;
            return;
        }
        if self.rx_ssrc != Some(pkt.ssrc) {
            // A new source (re-INVITE, SSRC collision, a second device): statistics restart.
            self.rx_ssrc = Some(pkt.ssrc);
            self.rx_stats = ReceiveStats::new(self.params.codec.clock_rate());
        }
        self.rx_stats
            .on_packet(pkt.sequence, pkt.timestamp, now_ms * 1000);
        if let Some(path) = &mut self.inband {
            path.jitter.ensure_ssrc(pkt.ssrc);
            path.jitter
                .push(pkt.sequence, pkt.timestamp, pkt.payload, now_ms);
        }
    }

    /// One datagram from the RTCP socket: sender reports feed round-trip (LSR/DLSR) data.
    pub fn on_rtcp(&mut self, buf: &[u8], now_ms: u64) {
        match super::rtcp::parse_compound(buf) {
            Ok(packets) => {
                for p in packets {
                    if let RtcpPacket::SenderReport { ntp, .. } = p {
                        self.rx_stats.on_sender_report(ntp, now_ms * 1000);
                    }
                }
            }
            Err(_) => self.counters.invalid += 1,
        }
    }

    /// Runs one media tick: detection on what arrived, then the next outgoing packet.
    /// Returns the destination when `out` holds an RTP packet to send.
    pub fn on_tick(&mut self, now_ms: u64, out: &mut Vec<u8>) -> Option<SocketAddr> {
        self.detect_inband(now_ms);
        if self.params.receive
            && self.opts.rtp_timeout_ms > 0
            && !self.timed_out
            && now_ms.saturating_sub(self.last_rx_ms) > self.opts.rtp_timeout_ms
        {
            self.timed_out = true;
            self.events.push_back(LegEvent::RtpTimeout);
        }
        let dest = self.latched.or(self.params.remote_rtp);
        let bridged = std::mem::take(&mut self.bridge_in_ready) && self.player.is_idle();
        let (frame, ended) = self.player.next_frame(self.params.codec, &self.silence);
        if let Some(end) = ended {
            self.events.push_back(LegEvent::PlayEnded(end));
        }
        let payload: &[u8] = if bridged {
            &self.bridge_in
        } else {
            frame.payload
        };
        if let Some(rec) = &mut self.recorder {
            let sending = dest.is_some() && self.params.send;
            let popped = self.inband.as_ref().and_then(|p| p.jitter.last_played());
            record_tick(rec, popped, sending.then_some(payload), self.params.codec);
        }
        let sent = match dest {
            Some(dest) if self.params.send => {
                if frame.start_of_speech {
                    self.sender.marker_pending = true;
                }
                self.sender
                    .build(out, self.params.payload_type, payload, self.ts_step);
                self.tx_stats.on_sent(payload.len(), self.sender.timestamp);
                self.counters.sent += 1;
                Some(dest)
            }
            _ => {
                // Not sending (hold, no address yet): the clock still runs (RFC 3550 §5.1).
                self.sender.timestamp = self.sender.timestamp.wrapping_add(self.ts_step);
                None
            }
        };
        if self.tap.is_some() {
            let mut pcm = [0i16; 160];
            if let Some(heard) = self.player.last_pcm_8k() {
                let n = heard.len().min(160);
                pcm[..n].copy_from_slice(&heard[..n]);
            }
            self.offer_tap(Track::ToCustomer, pcm);
        }
        sent
    }

    /// Offers one frame to the media stream; a full or closed stream drops it (a dead
    /// endpoint must never slow the media clock), and a closed one ends the tap.
    fn offer_tap(&mut self, track: Track, pcm: [i16; 160]) {
        if let Some(tap) = &self.tap
            && let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) =
                tap.try_send(TapFrame { track, pcm })
        {
            self.tap = None;
        }
    }

    fn detect_inband(&mut self, now_ms: u64) {
        let Some(path) = &mut self.inband else { return };
        let mut tap_closed = false;
        let next = path.next_pop_ms.get_or_insert(now_ms);
        // A recording of the call's own G.711 bytes takes them undecoded; PCM is made only
        // for whoever needs it.
        let recording = self.recorder.as_mut().filter(|r| !r.tap.is_paused());
        let passthrough = recording
            .as_ref()
            .and_then(|r| r.passthrough(self.params.codec));
        if let Some(settings) = self.amd_asked.take() {
            self.amd = Some(Amd::new(settings, path.decoder.rate()));
        }
        let mut amd_events = Vec::new();
        let want_pcm = path.detector.is_some()
            || self.amd.is_some()
            || self.tap.is_some()
            || (recording.is_some() && passthrough.is_none());
        // One frame per ptime, however the 20 ms ticks fall.
        while *next <= now_ms {
            *next += path.frame_ms as u64;
            // A second pop this tick: the frame left in the jitter buffer is queued first.
            if let Some(rec) = &mut self.recorder
                && std::mem::take(&mut rec.caller_direct)
            {
                rec.caller_law
                    .extend(path.jitter.last_played().unwrap_or_default());
            }
            let decoded = match path.jitter.pop(now_ms) {
                Pop::Frame { payload, .. } => {
                    if let Some(relay) = &mut self.relay {
                        relay.push(Received::Frame(payload));
                    }
                    if let (Some(_), Some(rec)) = (passthrough, &mut self.recorder) {
                        if rec.caller_law.is_empty() {
                            rec.caller_direct = true;
                        } else {
                            rec.caller_law.extend(payload);
                        }
                    }
                    want_pcm && path.decoder.decode(payload, &mut path.pcm).is_ok()
                }
                Pop::Missing { .. } => {
                    if let Some(relay) = &mut self.relay {
                        relay.push(Received::Missing);
                    }
                    if let (Some(law), Some(rec)) = (passthrough, &mut self.recorder) {
                        let n = (path.frame_ms * 8) as usize;
                        rec.caller_law.extend(std::iter::repeat_n(law.silence(), n));
                    }
                    want_pcm && path.decoder.conceal(path.frame_ms, &mut path.pcm).is_ok()
                }
                Pop::Empty => false,
            };
            if let (Some(_), Some(rec)) = (passthrough, &mut self.recorder) {
                let excess = rec
                    .caller_law
                    .len()
                    .saturating_sub(LegRecorder::MAX_BACKLOG_LAW);
                rec.caller_law.drain(..excess);
            }
            if let Some(amd) = &mut self.amd {
                if decoded {
                    amd.push(&path.pcm, &mut amd_events);
                } else {
                    // Nothing arrived for this frame: silence, as far as cadence goes.
                    let n = (path.frame_ms * path.decoder.rate() / 1000) as usize;
                    amd.push_silence(n, &mut amd_events);
                }
            }
            if decoded {
                if let Some(detector) = &mut path.detector {
                    detector.push(&path.pcm, &mut path.tones);
                }
                if let Some(rec) = &mut self.recorder
                    && !rec.tap.is_paused()
                    && passthrough.is_none()
                {
                    let rate = rec.tap.rate();
                    fit_rate(&path.pcm, path.decoder.rate(), rate, &mut rec.caller);
                    let excess = rec.caller.len().saturating_sub(LegRecorder::MAX_BACKLOG);
                    rec.caller.drain(..excess);
                }
                if let Some(tap) = &self.tap {
                    // 8 kHz frames: G.711 as decoded, Opus (16 kHz) averaged down by two.
                    let step = (path.decoder.rate() / 8000).max(1) as usize;
                    for chunk in path.pcm.chunks(160 * step) {
                        let mut pcm = [0i16; 160];
                        for (o, s) in pcm.iter_mut().zip(chunk.chunks(step)) {
                            *o = (s.iter().map(|&x| x as i32).sum::<i32>() / s.len() as i32) as i16;
                        }
                        let frame = TapFrame {
                            track: Track::FromCustomer,
                            pcm,
                        };
                        if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) =
                            tap.try_send(frame)
                        {
                            tap_closed = true;
                        }
                    }
                }
            }
        }
        if tap_closed {
            self.tap = None;
        }
        self.events
            .extend(amd_events.into_iter().map(LegEvent::Amd));
        if self.amd.as_ref().is_some_and(Amd::is_done) {
            self.amd = None;
        }
        for i in 0..path.tones.len() {
            if let ToneEvent::Started(d) = path.tones[i] {
                self.events.push_back(LegEvent::Digit {
                    digit: d,
                    method: DtmfMethod::Inband,
                });
                if let Some(end) = self.player.on_digit() {
                    self.events.push_back(LegEvent::PlayEnded(end));
                }
            }
        }
        if let Some(path) = &mut self.inband {
            path.tones.clear();
        }
    }

    /// A compound RTCP report when one is due: SR while we send, RR otherwise.
    pub fn poll_rtcp(
        &mut self,
        now_ms: u64,
        ntp: u64,
        out: &mut [u8],
    ) -> Option<(usize, SocketAddr)> {
        if now_ms < self.next_rtcp_ms {
            return None;
        }
        self.next_rtcp_ms = now_ms + RTCP_INTERVAL_MS;
        let dest = self.params.remote_rtcp.or_else(|| {
            self.latched
                .or(self.params.remote_rtp)
                .map(|a| SocketAddr::new(a.ip(), a.port().wrapping_add(1)))
        })?;
        let blocks: Vec<ReportBlock> = self
            .rx_ssrc
            .map(|ssrc| self.rx_stats.report_block(ssrc, now_ms * 1000))
            .into_iter()
            .collect();
        let len = if self.params.send && self.tx_stats.packets > 0 {
            super::rtcp::write_sender_report(
                out,
                self.sender.ssrc,
                ntp,
                self.sender.timestamp,
                self.tx_stats.packets,
                self.tx_stats.octets,
                &blocks,
                &self.opts.cname,
            )
        } else {
            super::rtcp::write_receiver_report(out, self.sender.ssrc, &blocks, &self.opts.cname)
        };
        (len > 0).then_some((len, dest))
    }

    pub fn poll_event(&mut self) -> Option<LegEvent> {
        self.events.pop_front()
    }

    /// Counters since the last call.
    pub fn take_counters(&mut self) -> LegCounters {
        std::mem::take(&mut self.counters)
    }

    pub fn summary(&self) -> LegSummary {
        LegSummary {
            packets_sent: self.tx_stats.packets,
            packets_received: self.rx_stats.received(),
            packets_lost: self.rx_stats.cumulative_lost(),
            jitter_ms: self.rx_stats.jitter_ms(),
        }
    }
}

/// One tick of recording: 20 ms of the caller (zeros where nothing arrived) and 20 ms of what
/// was sent (`None`: nothing went out, the caller heard silence). `popped` is the frame the
/// receive path played this tick, if it is still in the jitter buffer.
fn record_tick(rec: &mut LegRecorder, popped: Option<&[u8]>, sent: Option<&[u8]>, codec: Codec) {
    let direct = std::mem::take(&mut rec.caller_direct);
    if rec.tap.is_paused() {
        return;
    }
    if rec.passthrough(codec).is_some() {
        // G.711 both ways, as received and as sent (the tap pads what is short with
        // silence), copied straight from the jitter buffer or the caller's queue into the
        // recording's block.
        rec.caller.clear();
        if let (true, Some(frame)) = (direct, popped) {
            let used = rec
                .tap
                .push_companded_parts([frame, &[]], sent.unwrap_or_default());
            // A packet longer than a tick (ptime over 20 ms): the rest waits for the next.
            // Checked first: the common case leaves nothing, and an empty extend is still a
            // call that touches the queue's header every tick.
            if used < frame.len() {
                rec.caller_law.extend(&frame[used..]);
            }
            return;
        }
        let (front, back) = rec.caller_law.as_slices();
        let used = rec
            .tap
            .push_companded_parts([front, back], sent.unwrap_or_default());
        rec.caller_law.drain(..used);
        return;
    }
    rec.caller_law.clear();
    let rate = rec.tap.rate();
    let n = (rate / 50) as usize;
    take_front(&mut rec.caller, n, &mut rec.caller_frame);
    rec.caller_frame.resize(n, 0);
    rec.heard_frame.clear();
    if let Some(payload) = sent
        && rec.sent_decoder.decode(payload, &mut rec.sent_pcm).is_ok()
    {
        let from = rec.sent_decoder.rate();
        fit_rate_vec(&rec.sent_pcm, from, rate, &mut rec.heard_frame);
    }
    rec.heard_frame.resize(n, 0);
    rec.tap.push(&rec.caller_frame, &rec.heard_frame);
}

/// Moves up to `n` of the oldest items of `queue` into `out` (cleared first). Copied by
/// slices, then dropped: extending from `drain` moved one sample at a time.
fn take_front<T: Copy>(queue: &mut VecDeque<T>, n: usize, out: &mut Vec<T>) {
    out.clear();
    let take = n.min(queue.len());
    let (front, back) = queue.as_slices();
    let from_front = take.min(front.len());
    out.extend_from_slice(&front[..from_front]);
    out.extend_from_slice(&back[..take - from_front]);
    queue.drain(..take);
}

/// Appends `pcm` at `from` Hz as `to` Hz. The rates only differ after a mid-call codec
/// change (8 kHz G.711 <-> 16 kHz Opus); sample repetition or dropping is enough there.
fn fit_rate(pcm: &[i16], from: u32, to: u32, out: &mut VecDeque<i16>) {
    if from == to {
        out.extend(pcm);
    } else {
        let n = pcm.len() * to as usize / from as usize;
        out.extend((0..n).map(|i| pcm[i * from as usize / to as usize]));
    }
}

fn fit_rate_vec(pcm: &[i16], from: u32, to: u32, out: &mut Vec<i16>) {
    if from == to {
        out.extend_from_slice(pcm);
    } else {
        let n = pcm.len() * to as usize / from as usize;
        out.extend((0..n).map(|i| pcm[i * from as usize / to as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::recorder::{
        FrameQueue, Participants, RecordingId, Samples, TapControl, interleave_block,
    };

    const FAR_END: &str = "127.0.0.1:40000";

    fn leg(ptime_ms: u32) -> MediaLeg {
        let params = LegParams {
            codec: Codec::Pcmu,
            payload_type: 0,
            telephone_event: Some(TelephoneEvent {
                payload_type: 101,
                clock_rate: 8000,
            }),
            remote_rtp: FAR_END.parse().ok(),
            remote_rtcp: None,
            send: true,
            receive: true,
            ptime_ms,
            srtp: None,
        };
        let opts = LegOptions {
            inband: InbandDtmf::Auto,
            jitter_ms: 40,
            rtp_timeout_ms: 0,
            cname: "test".into(),
        };
        let silence = Arc::new(Silence::new().expect("silence frames"));
        MediaLeg::new(params, opts, silence, (1, 0, 0), 0).expect("PCMU leg")
    }

    fn rtp(seq: u16, timestamp: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&timestamp.to_be_bytes());
        p.extend_from_slice(&7u32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    /// Byte `i` of the caller's audio: never µ-law silence (0xFF), so the recording's
    /// caller channel shows exactly where audio is and in what order.
    fn source(i: usize) -> u8 {
        (i % 251) as u8
    }

    /// Runs a recorded call of `packets` packets of `ptime_ms` each, sending each pair
    /// second-first when `swap_pairs`. Returns the caller channel of the recording.
    fn record(ptime_ms: u32, packets: u16, swap_pairs: bool) -> Vec<u8> {
        let mut leg = leg(ptime_ms);
        let queue = FrameQueue::new(10_000);
        let (tx, _rx) = std::sync::mpsc::channel::<TapControl>();
        let tap = RecorderTap::new(
            RecordingId::random(),
            8000,
            Some(Law::Mu),
            Participants::BOTH,
            queue.clone(),
            Box::new(tx),
        );
        leg.handle_command(LegCommand::Record(LegRecording::Attach(Box::new(tap))))
            .expect("attach");
        let from: SocketAddr = FAR_END.parse().expect("address");
        let bytes = 8 * ptime_ms as usize;
        let mut out = Vec::new();
        let end_ms = u64::from(packets) * u64::from(ptime_ms) + 200;
        let mut sent = 0u16;
        for now in (0..end_ms).step_by(20) {
            // Every packet due by now, a pair at a time when swapping (the second first).
            while sent < packets && u64::from(sent) * u64::from(ptime_ms) <= now {
                let pair: Vec<u16> = if swap_pairs && sent + 1 < packets {
                    vec![sent + 1, sent]
                } else {
                    vec![sent]
                };
                for seq in &pair {
                    let at = usize::from(*seq) * bytes;
                    let payload: Vec<u8> = (at..at + bytes).map(source).collect();
                    let ts = u32::from(*seq) * bytes as u32;
                    leg.on_rtp(&rtp(*seq, ts, &payload), from, now);
                }
                sent += pair.len() as u16;
            }
            // As the media clock does, a visit ahead (hints only: nothing may change).
            leg.prefetch_buffers();
            leg.on_tick(now, &mut out);
        }
        leg.end_recording();
        let mut blocks = Vec::new();
        queue.take(&mut blocks, &mut Vec::new());
        let mut caller = Vec::new();
        let mut frame = Vec::new();
        for b in &blocks {
            let Samples::Companded(v) = &b.samples else {
                panic!("a G.711 recording of a G.711 call stores its bytes");
            };
            interleave_block(v, b.frames, &mut frame);
            caller.extend(frame.iter().step_by(2));
        }
        caller
    }

    /// The caller channel is silence until playout starts, then the caller's bytes in
    /// order with none missing, then silence.
    fn assert_whole_and_in_order(caller: &[u8], total: usize) {
        let start = caller.iter().position(|&b| b != 0xFF).expect("some audio");
        assert!(
            start <= 8 * 60,
            "playout starts within the jitter delay: {start}"
        );
        let audio: Vec<u8> = caller[start..]
            .iter()
            .copied()
            .take_while(|&b| b != 0xFF)
            .collect();
        let want: Vec<u8> = (0..total).map(source).collect();
        assert_eq!(audio.len(), want.len(), "every byte recorded once");
        assert_eq!(audio, want);
        assert!(caller[start + total..].iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn recording_a_g711_call_keeps_the_callers_bytes_whole_and_in_order() {
        // 20 ms packets: each tick's frame goes from the jitter buffer into the block.
        assert_whole_and_in_order(&record(20, 100, false), 100 * 160);
        // Pairs arriving swapped are put back in order.
        assert_whole_and_in_order(&record(20, 100, true), 100 * 160);
        // 30 ms packets on a 20 ms clock: frames split across ticks, through the queue.
        assert_whole_and_in_order(&record(30, 60, false), 60 * 240);
        assert_whole_and_in_order(&record(30, 60, true), 60 * 240);
        // 10 ms packets: two frames a tick.
        assert_whole_and_in_order(&record(10, 200, false), 200 * 80);
    }

    /// Screening a placed call: a greeting that talks on is a machine, and the end of its
    /// greeting is told; a phone that sends no packets while it is quiet is heard as silence.
    #[test]
    fn a_screened_leg_tells_a_greeting_from_the_audio_it_receives() {
        let mut leg = leg(20);
        leg.handle_command(LegCommand::Screen(AmdSettings::default()))
            .unwrap();
        let from = FAR_END.parse().unwrap();
        let mut out = Vec::new();
        let pcm: Vec<i16> = (0..160)
            .map(|i| ((i as f32 * 0.235).sin() * 8000.0) as i16)
            .collect();
        let mut loud = Vec::new();
        crate::media::codec::g711::encode_ulaw(&pcm, &mut loud);
        let mut events = Vec::new();
        // Three seconds of talk, then nothing at all for two.
        for tick in 0..250u16 {
            let now = tick as u64 * 20;
            if tick < 150 {
                leg.on_rtp(&rtp(tick, tick as u32 * 160, &loud), from, now);
            }
            leg.on_tick(now, &mut out);
            while let Some(e) = leg.poll_event() {
                events.push((e, now));
            }
        }
        assert!(
            matches!(
                events[..],
                [
                    (
                        LegEvent::Amd(AmdEvent::Verdict(
                            crate::media::amd::Verdict::Machine { .. }
                        )),
                        _
                    ),
                    (LegEvent::Amd(AmdEvent::GreetingEnded), _)
                ]
            ),
            "{events:?}"
        );
        let ended = events[1].1;
        assert!(
            (3900..=4200).contains(&ended),
            "a second of silence after the talk, with the jitter buffer's delay: {ended}"
        );
    }

    /// Bridged, a leg passes what it receives on (in order, one frame per tick) and sends
    /// its peer's audio; a prompt played on it (hold music, a whisper) takes the peer's place
    /// while it plays; muted, it passes nothing on but still hears its peer.
    #[test]
    fn a_bridged_leg_relays_both_ways_and_a_prompt_takes_the_peers_place() {
        let mut leg = leg(20);
        let relay = Relay::new(Codec::Pcmu, 20, Codec::Pcmu).unwrap();
        leg.handle_command(LegCommand::Relay(Some(relay))).unwrap();
        assert!(leg.is_bridged());
        let from = FAR_END.parse().unwrap();
        let mut out = Vec::new();
        let mut passed = Vec::new();
        for tick in 0..10u16 {
            let now = tick as u64 * 20;
            leg.on_rtp(
                &rtp(tick, tick as u32 * 160, &[tick as u8 + 1; 160]),
                from,
                now,
            );
            leg.set_bridge_input(&[0x11; 160]);
            leg.on_tick(now, &mut out).expect("a packet every tick");
            assert_eq!(
                RtpPacket::parse(&out).unwrap().payload,
                [0x11; 160],
                "the peer's"
            );
            if let Some(p) = leg.bridge_output() {
                passed.push(p[0]);
            }
        }
        assert!(passed.len() >= 7, "{passed:?}");
        assert!(
            passed.iter().zip(1..).all(|(&p, k)| p == k),
            "in order: {passed:?}"
        );

        // A prompt plays over the peer's audio.
        let pcm = vec![3000i16; 1600];
        let prompt = Arc::new(Prompt::from_pcm("en", "hold", &pcm, 8000).unwrap());
        leg.handle_command(LegCommand::Play {
            id: 9,
            prompts: vec![prompt.clone()],
            barge_in: false,
        })
        .unwrap();
        leg.set_bridge_input(&[0x11; 160]);
        leg.on_tick(200, &mut out).unwrap();
        assert_eq!(
            RtpPacket::parse(&out).unwrap().payload,
            prompt.frames(Codec::Pcmu).frame(0).unwrap()
        );
        // Without new audio from the peer, silence (never the last frame again).
        leg.handle_command(LegCommand::Stop).unwrap();
        leg.on_tick(220, &mut out).unwrap();
        assert_eq!(RtpPacket::parse(&out).unwrap().payload, [0xFF; 160]);

        // Muted: nothing passes on, though packets keep arriving.
        leg.handle_command(LegCommand::Mute(true)).unwrap();
        for tick in 12..20u16 {
            let now = tick as u64 * 20;
            leg.on_rtp(&rtp(tick, tick as u32 * 160, &[7; 160]), from, now);
            leg.on_tick(now, &mut out);
            assert_eq!(leg.bridge_output(), None);
        }
        leg.handle_command(LegCommand::Relay(None)).unwrap();
        assert!(!leg.is_bridged());
    }
}
