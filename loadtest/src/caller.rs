//! One synthetic caller, sans-IO: fed SIP messages, RTP packets and 20 ms ticks, it writes
//! the SIP and RTP it sends into the worker's buffers and ends with passed or failed.
//!
//! SIP is a lean UAC (RFC 3261): INVITE with an SDP offer, ACK, INFO, BYE, answers to the
//! server's BYE/OPTIONS/INFO; over UDP requests are retransmitted from T1 = 500 ms doubling
//! (INVITE, §17.1.1.2) or capped at T2 = 4 s (non-INVITE, §17.1.2.2), and give up after
//! 64·T1 (timers B and F). Media: one packet per tick (caller speech, in-band tones, or
//! RFC 4733 events), and everything received is measured and recognized.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use careline::media::codec::Codec;
use careline::media::dtmf::Digit;
use careline::media::dtmf::rfc4733::EventSender;
use careline::media::rtp::{RtpPacket, write_header};
use careline::sip::sdp::{self, LocalMedia};

use crate::audio::Assets;
use crate::clock::{MS, Nanos};
use crate::hear::{FrameDecoder, Library, Tracker};
use crate::measure::{Failure, Measure};
use crate::net::SendBatch;
use crate::rtpstats::StreamStats;
use crate::scenario::{Scenario, Step, Via};
use crate::webrtc::{BrowserLeg, LegState};

const T1: Nanos = 500 * MS;
const T2: Nanos = 4000 * MS;
const TIMER_B: Nanos = 64 * T1;
/// How long a browser caller waits from its WHIP POST to a connected peer connection (ICE and
/// DTLS), as Careline waits for the browser (its `[webrtc]` connect timeout is 10 s).
const CONNECT_TIMEOUT: Nanos = 20_000 * MS;

/// A scenario with everything its callers share, resolved once.
pub struct Plan {
    pub scenario: Scenario,
    pub lib: Arc<Library>,
    pub assets: Arc<Assets>,
    /// Per step: the library index of an expected prompt.
    prompt_ids: Vec<Option<usize>>,
    /// Score a prompt must reach to count as heard (G.711 keeps the waveform; Opus only
    /// roughly, through a decoder whose state differs from the reference's).
    pub min_score: f32,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "{scenario}: step {step}: prompt `{name}` is not in the prompt folder for `{lang}` (known: {known})"
)]
pub struct UnknownPrompt {
    scenario: String,
    step: usize,
    name: String,
    lang: String,
    known: String,
}

impl Plan {
    pub fn new(
        scenario: Scenario,
        lib: Arc<Library>,
        assets: Arc<Assets>,
    ) -> Result<Plan, UnknownPrompt> {
        let mut prompt_ids = Vec::new();
        for (i, s) in scenario.steps.iter().enumerate() {
            prompt_ids.push(match s {
                Step::ExpectPrompt { name, .. } => Some(lib.index(name).ok_or_else(|| {
                    UnknownPrompt {
                        scenario: scenario.name.clone(),
                        step: i + 1,
                        name: name.clone(),
                        lang: scenario.language.clone(),
                        known: lib
                            .refs
                            .iter()
                            .map(|r| r.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    }
                })?),
                _ => None,
            });
        }
        let min_score = if scenario.codec == Codec::Opus {
            0.7
        } else {
            0.9
        };
        Ok(Plan {
            scenario,
            lib,
            assets,
            prompt_ids,
            min_score,
        })
    }
}

/// Where a worker's callers live on the network.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub server: SocketAddr,
    pub local_sip: SocketAddr,
    pub local_rtp: SocketAddr,
    pub tcp: bool,
    /// Browser callers: WHIP (RFC 9725) and a WebRTC peer connection instead of SIP and RTP.
    pub whip: bool,
}

impl Endpoint {
    fn transport(&self) -> &'static str {
        if self.tcp { "TCP" } else { "UDP" }
    }

    fn uri_param(&self) -> &'static str {
        if self.tcp { ";transport=tcp" } else { "" }
    }
}

/// A client transaction waiting for its final response.
struct ClientTx {
    bytes: Vec<u8>,
    cseq: u32,
    invite: bool,
    next: Nanos,
    interval: Nanos,
    deadline: Nanos,
    proceeding: bool,
}

impl ClientTx {
    fn new(bytes: Vec<u8>, cseq: u32, invite: bool, now: Nanos) -> ClientTx {
        ClientTx {
            bytes,
            cseq,
            invite,
            next: now + T1,
            interval: T1,
            deadline: now + TIMER_B,
            proceeding: false,
        }
    }

    /// Retransmits when due (UDP only). Returns true once the transaction timed out.
    fn tick(&mut self, now: Nanos, tcp: bool, sip: &mut Vec<Vec<u8>>) -> bool {
        if now >= self.deadline {
            return true;
        }
        // An INVITE stops retransmitting once a provisional response arrived (§17.1.1.2).
        if tcp || now < self.next || (self.invite && self.proceeding) {
            return false;
        }
        sip.push(self.bytes.clone());
        self.interval = if self.invite {
            self.interval * 2
        } else {
            (self.interval * 2).min(T2)
        };
        self.next = now + self.interval;
        false
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Inviting,
    Established,
    /// Our BYE is out.
    Ending,
    Done,
}

impl Media {
    /// Media to and from `remote` with what the answer chose; `None` when this build cannot
    /// decode the codec.
    fn new(codec: Codec, remote: SocketAddr, pt: u8, te_pt: Option<u8>) -> Option<Media> {
        let decoder = FrameDecoder::new(codec).ok()?;
        let clock = codec.clock_rate();
        Some(Media {
            remote,
            pt,
            te_pt,
            ts_step: clock / 50,
            ssrc: rand::random(),
            seq: rand::random(),
            ts: rand::random(),
            marker: true,
            speech_pos: rand::random::<u16>() as usize,
            stats: StreamStats::new(clock),
            tracker: Tracker::new(),
            decoder,
            pcm: Vec::with_capacity(crate::hear::FRAME),
            silence: match codec {
                // µ-law 0xFF decodes to 0; A-law has no exact zero.
                Codec::Pcmu => Some(vec![0xFF; crate::hear::FRAME]),
                _ => None,
            },
        })
    }
}

/// The key press in progress.
struct Press {
    index: usize,
    sending: Sending,
}

enum Sending {
    /// Between keys (or before the first): speech until `until`.
    Gap {
        until: Nanos,
    },
    Event(EventSender),
    Tone {
        digit: Digit,
        frame: usize,
        frames: usize,
    },
    /// An INFO is out; the next key waits for its answer.
    Info,
}

struct Media {
    remote: SocketAddr,
    pt: u8,
    te_pt: Option<u8>,
    ts_step: u32,
    ssrc: u32,
    seq: u16,
    ts: u32,
    marker: bool,
    speech_pos: usize,
    stats: StreamStats,
    tracker: Tracker,
    decoder: FrameDecoder,
    pcm: Vec<i16>,
    /// The payload of a G.711 frame of digital silence (every sample decodes to 0): most of
    /// what a caller hears between prompts, recognized without decoding.
    silence: Option<Vec<u8>>,
}

/// A browser caller's signaling and transport: the WHIP exchanges the worker carries out over
/// HTTP, and the peer connection its RTP goes through.
struct Web {
    leg: BrowserLeg,
    /// The SDP offer, until the worker takes it to POST.
    post: Option<String>,
    /// The session's resource (`Location`), once answered.
    location: Option<String>,
    /// A DELETE is wanted (the worker takes it).
    delete: bool,
    /// The packet being handed to the peer connection.
    scratch: Vec<u8>,
    /// The SSRC of the track the offer announced (the peer connection sends only that).
    ssrc: u32,
}

pub struct Caller {
    pub call_id: String,
    plan: usize,
    from_tag: String,
    to_tag: Option<String>,
    target: String,
    cseq: u32,
    local: LocalMedia,
    invite: Option<ClientTx>,
    ack: Option<Vec<u8>>,
    request: Option<ClientTx>,
    phase: Phase,
    t_invite: Nanos,
    media: Option<Media>,
    step: usize,
    step_since: Nanos,
    press: Option<Press>,
    /// The last key: how it was sent, when it went down (first packet or INFO sent) and up
    /// (end packets sent, tone over), until a prompt answers it.
    key: Option<(Via, Nanos, Option<Nanos>)>,
    result: Option<Result<(), Failure>>,
    web: Option<Web>,
}

fn token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn fail(reason: &'static str, detail: String) -> Failure {
    Failure { reason, detail }
}

impl Caller {
    /// A new caller running `plans[plan]`; `n` makes its Call-ID unique in the run.
    pub fn new(plan: usize, plans: &[Arc<Plan>], ep: &Endpoint, n: u64) -> Caller {
        let p = &plans[plan];
        let local = LocalMedia {
            address: ep.local_rtp.ip(),
            rtp_port: ep.local_rtp.port(),
            codecs: vec![p.scenario.codec],
            telephone_event: p.scenario.telephone_event,
            ptime_ms: 20,
            session_id: rand::random::<u32>() as u64,
            session_version: 1,
            srtp: None,
        };
        let mut result = None;
        let web = if ep.whip {
            let ssrc = rand::random();
            let now = crate::clock::instant(crate::clock::now());
            match BrowserLeg::offer(
                ep.local_rtp,
                p.scenario.codec,
                p.scenario.telephone_event,
                ssrc,
                now,
            ) {
                Ok((leg, offer)) => Some(Web {
                    leg,
                    post: Some(offer),
                    location: None,
                    delete: false,
                    scratch: Vec::with_capacity(200),
                    ssrc,
                }),
                Err(e) => {
                    result = Some(Err(fail("webrtc_setup", e.to_string())));
                    None
                }
            }
        } else {
            None
        };
        Caller {
            call_id: format!("{n}-{}@careline-loadtest", token()),
            plan,
            from_tag: token(),
            to_tag: None,
            target: format!("sip:{}@{}{}", p.scenario.service, ep.server, ep.uri_param()),
            cseq: 0,
            local,
            invite: None,
            ack: None,
            request: None,
            phase: Phase::Inviting,
            t_invite: 0,
            media: None,
            step: 0,
            step_since: 0,
            press: None,
            key: None,
            result,
            web,
        }
    }

    /// `Some` once the call is over.
    pub fn result(&self) -> Option<&Result<(), Failure>> {
        if self.phase == Phase::Done {
            self.result.as_ref()
        } else {
            None
        }
    }

    pub fn stream(&self) -> Option<&StreamStats> {
        self.media.as_ref().map(|m| &m.stats)
    }

    /// The server's RTP address, once answered (the worker routes its packets here by it).
    pub fn remote_rtp(&self) -> Option<SocketAddr> {
        self.media.as_ref().map(|m| m.remote)
    }

    fn request(
        &self,
        ep: &Endpoint,
        method: &str,
        uri: &str,
        cseq: u32,
        branch: &str,
        body: Option<(&str, &str)>,
    ) -> Vec<u8> {
        let p = self.plan;
        let _ = p;
        let mut m = String::with_capacity(700);
        let _ = write!(
            m,
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/{} {};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:loadtest@{}>;tag={}\r\n",
            ep.transport(),
            ep.local_sip,
            ep.local_sip.ip(),
            self.from_tag
        );
        let service_to = self.target_user();
        match &self.to_tag {
            Some(t) => {
                let _ = write!(m, "To: <sip:{service_to}@{}>;tag={t}\r\n", ep.server);
            }
            None => {
                let _ = write!(m, "To: <sip:{service_to}@{}>\r\n", ep.server);
            }
        }
        let _ = write!(
            m,
            "Call-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: <sip:loadtest@{}{}>\r\n\
             User-Agent: careline-loadtest\r\n",
            self.call_id,
            ep.local_sip,
            ep.uri_param()
        );
        match body {
            Some((ct, b)) => {
                let _ = write!(
                    m,
                    "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len()
                );
            }
            None => m.push_str("Content-Length: 0\r\n\r\n"),
        }
        m.into_bytes()
    }

    fn target_user(&self) -> &str {
        self.target
            .strip_prefix("sip:")
            .and_then(|t| t.split('@').next())
            .unwrap_or("")
    }

    /// Sends the INVITE.
    pub fn start(
        &mut self,
        now: Nanos,
        plans: &[Arc<Plan>],
        ep: &Endpoint,
        sip: &mut Vec<Vec<u8>>,
    ) {
        let _ = plans;
        if self.web.is_some() || self.result.is_some() {
            // A browser caller: the worker POSTs the offer (take_post).
            self.t_invite = now;
            return;
        }
        let offer = sdp::offer(&self.local);
        self.cseq = 1;
        let uri = self.target.clone();
        let bytes = self.request(
            ep,
            "INVITE",
            &uri,
            1,
            &token(),
            Some(("application/sdp", &offer)),
        );
        sip.push(bytes.clone());
        self.invite = Some(ClientTx::new(bytes, 1, true, now));
        self.t_invite = now;
    }

    fn finish(&mut self, result: Result<(), Failure>, plans: &[Arc<Plan>]) {
        if self.result.is_none() {
            self.result = Some(result);
        }
        if let Some(m) = self.media.as_mut() {
            m.tracker.finish(&plans[self.plan].lib);
        }
        self.phase = Phase::Done;
    }

    fn fail(&mut self, f: Failure) {
        if self.result.is_none() {
            self.result = Some(Err(f));
        }
    }

    /// Hangs up with our BYE (or ends at once before answer).
    fn hang_up(&mut self, now: Nanos, ep: &Endpoint, sip: &mut Vec<Vec<u8>>, plans: &[Arc<Plan>]) {
        if self.web.is_some() && self.phase == Phase::Established {
            self.web_hang_up(plans);
            return;
        }
        if self.phase != Phase::Established {
            if self.phase == Phase::Inviting {
                self.finish(
                    Err(fail("not_answered", "gave up before answer".into())),
                    plans,
                );
            }
            return;
        }
        self.cseq += 1;
        let uri = self.target.clone();
        let bytes = self.request(ep, "BYE", &uri, self.cseq, &token(), None);
        sip.push(bytes.clone());
        self.request = Some(ClientTx::new(bytes, self.cseq, false, now));
        self.phase = Phase::Ending;
    }

    /// The server ended the call (its BYE; for a browser caller, the connection closed).
    fn server_hung_up(&mut self, at: Nanos, plans: &[Arc<Plan>], m: &mut Measure) {
        // The server may hang up right after a prompt's last packet, before the next
        // tick: the prompt heard to its end counts first.
        let plan = plans[self.plan].clone();
        if let Some(media) = self.media.as_mut() {
            media.tracker.finish(&plan.lib);
        }
        while self.result.is_none() && self.take_prompt(&plan, at, m) {}
        let expected = matches!(
            plans[self.plan].scenario.steps.get(self.step),
            Some(Step::ExpectHangup { .. })
        );
        if expected {
            self.step += 1;
            self.finish(Ok(()), plans);
        } else {
            let step = self.step + 1;
            self.finish(
                Err(fail(
                    "early_bye",
                    format!("the server hung up during step {step}"),
                )),
                plans,
            );
        }
    }

    /// A browser caller (WHIP) rather than a phone (SIP).
    pub fn is_web(&self) -> bool {
        self.web.is_some()
    }

    /// A browser caller's SDP offer, once: the worker POSTs it to the WHIP endpoint.
    pub fn take_post(&mut self) -> Option<String> {
        self.web.as_mut().and_then(|w| w.post.take())
    }

    /// The session a browser caller wants DELETEd (hung up), once.
    pub fn take_delete(&mut self) -> Option<String> {
        let w = self.web.as_mut()?;
        if !w.delete {
            return None;
        }
        w.delete = false;
        w.location.clone()
    }

    /// The WHIP endpoint's answer to the offer: `status` 201 with the SDP answer in `body` and
    /// the session's `location`, or an error (status 0: no HTTP answer at all).
    pub fn on_whip_answer(
        &mut self,
        status: u16,
        location: Option<String>,
        body: &str,
        at: Nanos,
        plans: &[Arc<Plan>],
    ) {
        let Some(web) = self.web.as_mut() else {
            return;
        };
        if self.phase != Phase::Inviting || self.result.is_some() {
            // Given up meanwhile: end the session the server made.
            if status == 201 && location.is_some() {
                web.location = location;
                web.delete = true;
                self.phase = Phase::Ending;
            } else {
                self.finish(self.result.clone().unwrap_or(Ok(())), plans);
            }
            return;
        }
        if status != 201 {
            let reason = match status {
                0 => "whip_unreachable",
                503 => "whip_503",
                _ => "whip_refused",
            };
            let first = body.lines().next().unwrap_or("").chars().take(160);
            let detail = format!("WHIP answered {status}: {}", first.collect::<String>());
            self.finish(Err(fail(reason, detail)), plans);
            return;
        }
        let no_location = location.is_none();
        web.location = location;
        let chosen = web.leg.accept(body, crate::clock::instant(at));
        let ssrc = web.ssrc;
        if no_location {
            self.fail(fail("sdp", "the WHIP answer has no Location".into()));
        }
        match chosen.map(|c| Media::new(c.codec, c.remote, c.payload_type, c.telephone_event)) {
            Ok(Some(media)) => self.media = Some(Media { ssrc, ..media }),
            Ok(None) => self.fail(fail("sdp", "the answer's codec cannot be decoded".into())),
            Err(e) => self.fail(fail("sdp", e.to_string())),
        }
        if self.result.is_some() {
            self.web_hang_up(plans);
        }
    }

    /// The answer to our DELETE (status 0: none came).
    pub fn on_whip_deleted(&mut self, status: u16, plans: &[Arc<Plan>]) {
        if self.phase == Phase::Done {
            return;
        }
        // 404: the server had ended the session already (the flow hung up as we did).
        if status != 200 && status != 404 {
            self.fail(fail(
                "delete_failed",
                format!("DELETE on the session answered {status}"),
            ));
        }
        self.finish(self.result.clone().unwrap_or(Ok(())), plans);
    }

    /// A datagram from the server's address for this browser caller: ICE, DTLS, or SRTP that
    /// the peer connection opens and hands on as RTP.
    pub fn on_web_datagram(
        &mut self,
        from: SocketAddr,
        data: &[u8],
        at: Nanos,
        plans: &[Arc<Plan>],
        m: &mut Measure,
    ) {
        let Some(mut web) = self.web.take() else {
            return;
        };
        web.leg.receive(from, data, crate::clock::instant(at), |p| {
            let pkt = RtpPacket {
                payload_type: p.header.payload_type,
                marker: p.header.marker,
                sequence: p.header.sequence_number,
                timestamp: p.header.timestamp,
                ssrc: p.header.ssrc,
                payload: &p.payload,
            };
            self.on_rtp(&pkt, at, plans, m);
        });
        self.web = Some(web);
    }

    /// A browser caller hangs up: its connection closes and the worker DELETEs the session
    /// (with no session to delete, the call is over at once).
    fn web_hang_up(&mut self, plans: &[Arc<Plan>]) {
        let Some(web) = self.web.as_mut() else {
            return;
        };
        web.leg.close();
        if web.location.is_some() {
            web.delete = true;
            self.phase = Phase::Ending;
        } else {
            self.finish(self.result.clone().unwrap_or(Ok(())), plans);
        }
    }

    /// A browser caller's timers, and the connection's state as the call sees it.
    fn web_tick(&mut self, now: Nanos, plans: &[Arc<Plan>], m: &mut Measure) {
        let Some(web) = self.web.as_mut() else {
            return;
        };
        web.leg.timers(crate::clock::instant(now));
        let state = web.leg.state();
        let has_session = web.location.is_some();
        let answered = self.media.is_some();
        match self.phase {
            Phase::Inviting if answered && state == LegState::Connected => {
                m.setup(now - self.t_invite);
                self.phase = Phase::Established;
                self.step_since = now;
            }
            Phase::Inviting if now - self.t_invite > CONNECT_TIMEOUT => {
                let detail = if answered {
                    "answered, but ICE and DTLS did not complete"
                } else {
                    "no answer to the WHIP offer"
                };
                self.fail(fail("not_connected", detail.into()));
                if has_session {
                    self.web_hang_up(plans);
                } else if answered {
                    self.finish(self.result.clone().unwrap_or(Ok(())), plans);
                }
            }
            Phase::Established if state == LegState::Ended => self.server_hung_up(now, plans, m),
            _ => {}
        }
    }

    /// The run is being stopped: fail the call and hang up at the next tick.
    pub fn abandon(&mut self) {
        self.fail(fail(
            "aborted",
            "the run was stopped before the call ended".into(),
        ));
    }

    /// A SIP message for this call.
    pub fn on_sip(
        &mut self,
        msg: &crate::sip::Msg<'_>,
        at: Nanos,
        plans: &[Arc<Plan>],
        ep: &Endpoint,
        sip: &mut Vec<Vec<u8>>,
        m: &mut Measure,
    ) {
        if let Some(code) = msg.status {
            self.on_response(code, msg, at, plans, ep, sip, m);
            return;
        }
        let method = msg.method.unwrap_or("");
        let mut resp = Vec::with_capacity(400);
        match method {
            "BYE" => {
                crate::sip::response(msg, 200, "OK", &mut resp);
                sip.push(resp);
                if self.phase == Phase::Done {
                    return; // a retransmitted BYE
                }
                self.server_hung_up(at, plans, m);
            }
            "ACK" => {}
            "OPTIONS" | "INFO" | "NOTIFY" => {
                crate::sip::response(msg, 200, "OK", &mut resp);
                sip.push(resp);
            }
            _ => {
                crate::sip::response(msg, 501, "Not Implemented", &mut resp);
                sip.push(resp);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_response(
        &mut self,
        code: u16,
        msg: &crate::sip::Msg<'_>,
        at: Nanos,
        plans: &[Arc<Plan>],
        ep: &Endpoint,
        sip: &mut Vec<Vec<u8>>,
        m: &mut Measure,
    ) {
        if msg.cseq_method == "INVITE" {
            if (200..300).contains(&code) {
                if let Some(ack) = &self.ack {
                    sip.push(ack.clone()); // 200 retransmitted: our ACK was lost
                    return;
                }
                if self.invite.take().is_none() {
                    return;
                }
                m.setup(at - self.t_invite);
                self.to_tag = msg.to_tag().map(str::to_string);
                if let Some(uri) = msg.contact_uri() {
                    self.target = uri.to_string();
                }
                let uri = self.target.clone();
                let ack = self.request(ep, "ACK", &uri, 1, &token(), None);
                sip.push(ack.clone());
                self.ack = Some(ack);
                let answer = String::from_utf8_lossy(msg.body);
                match sdp::read_answer(&answer, &self.local) {
                    Ok(n) => match n.remote_rtp.and_then(|remote| {
                        Media::new(
                            n.codec,
                            remote,
                            n.payload_type,
                            n.telephone_event.map(|t| t.payload_type),
                        )
                    }) {
                        Some(media) => {
                            self.media = Some(media);
                            self.phase = Phase::Established;
                            self.step_since = at;
                        }
                        None => {
                            self.phase = Phase::Established;
                            self.fail(fail("sdp", "answer has no usable audio address".into()));
                            self.hang_up(at, ep, sip, plans);
                        }
                    },
                    Err(e) => {
                        self.phase = Phase::Established;
                        self.fail(fail("sdp", e.to_string()));
                        self.hang_up(at, ep, sip, plans);
                    }
                }
            } else if code >= 300 {
                if let Some(tx) = self.invite.take() {
                    // ACK for a non-2xx final response: same branch as the INVITE (§17.1.1.3).
                    let text = String::from_utf8_lossy(&tx.bytes);
                    let branch = text
                        .split("branch=z9hG4bK")
                        .nth(1)
                        .and_then(|b| b.split(';').next())
                        .unwrap_or("");
                    self.to_tag = msg.to_tag().map(str::to_string);
                    let uri = format!(
                        "sip:{}@{}{}",
                        plans[self.plan].scenario.service,
                        ep.server,
                        ep.uri_param()
                    );
                    let ack = self.request(ep, "ACK", &uri, 1, branch, None);
                    sip.push(ack);
                    let reason = match code {
                        486 | 600 => "sip_busy",
                        503 => "sip_503",
                        488 => "sip_488",
                        _ => "sip_error",
                    };
                    self.finish(Err(fail(reason, format!("INVITE answered {code}"))), plans);
                }
            } else if let Some(tx) = self.invite.as_mut() {
                tx.proceeding = true;
            }
            return;
        }
        let Some(tx) = self.request.as_mut() else {
            return;
        };
        if tx.cseq != msg.cseq {
            return;
        }
        if code < 200 {
            tx.proceeding = true;
            return;
        }
        self.request = None;
        match msg.cseq_method {
            "BYE" => {
                let ok = self.result.is_none();
                if ok {
                    self.result = Some(Ok(()));
                }
                self.finish(self.result.clone().unwrap_or(Ok(())), plans);
            }
            "INFO" if code >= 300 => {
                self.fail(fail("info_rejected", format!("INFO answered {code}")));
                self.hang_up(at, ep, sip, plans);
            }
            _ => {}
        }
    }

    /// One RTP packet from the server's address for this call.
    pub fn on_rtp(&mut self, pkt: &RtpPacket<'_>, at: Nanos, plans: &[Arc<Plan>], m: &mut Measure) {
        let Some(media) = self.media.as_mut() else {
            return;
        };
        if pkt.payload_type != media.pt {
            return;
        }
        let seq = media.stats.extend_seq(pkt.sequence);
        let Some(obs) = media.stats.on_packet(pkt.sequence, pkt.timestamp, at) else {
            return; // duplicate
        };
        m.packet(obs);
        let lib = &plans[self.plan].lib;
        if media.silence.as_deref() == Some(pkt.payload) {
            media.tracker.on_silence(lib, seq, pkt.marker, at);
            return;
        }
        if media.decoder.decode(pkt.payload, &mut media.pcm).is_ok() {
            media.tracker.on_frame(lib, seq, pkt.marker, &media.pcm, at);
        }
    }

    /// The 20 ms tick: timers, the scenario, and this tick's RTP.
    pub fn on_tick(
        &mut self,
        now: Nanos,
        plans: &[Arc<Plan>],
        ep: &Endpoint,
        sip: &mut Vec<Vec<u8>>,
        rtp: &mut SendBatch,
        m: &mut Measure,
    ) {
        if let Some(tx) = self.invite.as_mut()
            && tx.tick(now, ep.tcp, sip)
        {
            self.invite = None;
            self.finish(
                Err(fail("invite_timeout", "no final response to INVITE".into())),
                plans,
            );
            return;
        }
        if let Some(tx) = self.request.as_mut()
            && tx.tick(now, ep.tcp, sip)
        {
            self.request = None;
            let was_bye = self.phase == Phase::Ending;
            self.fail(fail(
                if was_bye {
                    "bye_timeout"
                } else {
                    "info_timeout"
                },
                "no final response".into(),
            ));
            if was_bye {
                self.finish(self.result.clone().unwrap_or(Ok(())), plans);
                return;
            }
            self.hang_up(now, ep, sip, plans);
        }
        self.web_tick(now, plans, m);
        if self.phase == Phase::Inviting && self.result.is_some() {
            match self.web.as_ref() {
                // Answered, never connected: end the server's session.
                Some(w) if w.location.is_some() => self.web_hang_up(plans),
                // The offer is out: its answer ends the call (and the session it made).
                Some(w) if w.post.is_none() => {}
                _ => {
                    self.finish(self.result.clone().unwrap_or(Ok(())), plans);
                    return;
                }
            }
        }
        if self.phase == Phase::Established {
            self.run_steps(now, plans, ep, sip, m);
        }
        if matches!(self.phase, Phase::Established | Phase::Ending) {
            self.send_media(now, plans, rtp);
        }
        if let Some(web) = self.web.as_mut() {
            web.leg
                .transmit(|to, d| rtp.push_with(to, |b| b.extend_from_slice(d)));
        }
    }

    fn next_step(&mut self, now: Nanos) {
        self.step += 1;
        self.step_since = now;
    }

    fn run_steps(
        &mut self,
        now: Nanos,
        plans: &[Arc<Plan>],
        ep: &Endpoint,
        sip: &mut Vec<Vec<u8>>,
        m: &mut Measure,
    ) {
        let plan = plans[self.plan].clone();
        loop {
            if self.result.is_some() {
                // Failed: stop here and hang up.
                self.hang_up(now, ep, sip, plans);
                return;
            }
            let Some(step) = plan.scenario.steps.get(self.step) else {
                self.hang_up(now, ep, sip, plans);
                return;
            };
            let waited = now - self.step_since;
            match step {
                Step::ExpectPrompt {
                    name, timeout_ms, ..
                } => {
                    if self.take_prompt(&plan, now, m) {
                        continue;
                    }
                    if waited > *timeout_ms as Nanos * MS {
                        let detail = format!(
                            "step {}: `{name}` not heard within {timeout_ms} ms",
                            self.step + 1
                        );
                        self.fail(fail("prompt_not_heard", detail));
                        continue;
                    }
                    return;
                }
                Step::ExpectSilence { ms, timeout_ms } => {
                    let silent = self.media.as_ref().map_or(0, |m| m.tracker.silent_ms());
                    if silent >= *ms {
                        self.next_step(now);
                    } else if waited > *timeout_ms as Nanos * MS {
                        let detail = format!("step {}: no {ms} ms of silence", self.step + 1);
                        self.fail(fail("no_silence", detail));
                    } else {
                        return;
                    }
                }
                Step::Stay { ms } => {
                    if waited >= *ms as Nanos * MS {
                        self.next_step(now);
                    } else {
                        return;
                    }
                }
                Step::ExpectHangup { timeout_ms } => {
                    if waited > *timeout_ms as Nanos * MS {
                        let detail = format!(
                            "step {}: the server did not hang up within {timeout_ms} ms",
                            self.step + 1
                        );
                        self.fail(fail("no_server_bye", detail));
                        continue;
                    }
                    return;
                }
                Step::Hangup => {
                    self.step += 1;
                    self.hang_up(now, ep, sip, plans);
                    return;
                }
                Step::Press {
                    digits,
                    via,
                    duration_ms,
                    gap_ms,
                } => {
                    let mut press = self.press.take().unwrap_or(Press {
                        index: 0,
                        sending: Sending::Gap { until: now },
                    });
                    match press.sending {
                        Sending::Gap { until } if now >= until => {
                            let Some(&digit) = digits.get(press.index) else {
                                self.next_step(now);
                                continue;
                            };
                            let Some(media) = self.media.as_ref() else {
                                return;
                            };
                            if *via != Via::Info {
                                // The first packet of the key goes out with this tick's media.
                                self.key = Some((*via, now, None));
                            }
                            press.sending = match via {
                                Via::Rfc4733 => Sending::Event(EventSender::new(
                                    digit,
                                    media.ts,
                                    media.ts_step,
                                    duration_ms * media.ts_step / 20,
                                )),
                                Via::Inband => Sending::Tone {
                                    digit,
                                    frame: 0,
                                    frames: (*duration_ms / 20) as usize,
                                },
                                Via::Info => {
                                    self.cseq += 1;
                                    let body = format!(
                                        "Signal={}\r\nDuration={duration_ms}\r\n",
                                        digit.to_char()
                                    );
                                    let uri = self.target.clone();
                                    let bytes = self.request(
                                        ep,
                                        "INFO",
                                        &uri,
                                        self.cseq,
                                        &token(),
                                        Some(("application/dtmf-relay", &body)),
                                    );
                                    sip.push(bytes.clone());
                                    self.request =
                                        Some(ClientTx::new(bytes, self.cseq, false, now));
                                    self.key = Some((Via::Info, now, Some(now)));
                                    Sending::Info
                                }
                            };
                            self.press = Some(press);
                            return;
                        }
                        Sending::Info if self.request.is_none() => {
                            press.index += 1;
                            press.sending = Sending::Gap {
                                until: if press.index < digits.len() {
                                    now + *gap_ms as Nanos * MS
                                } else {
                                    now
                                },
                            };
                            self.press = Some(press);
                            continue;
                        }
                        _ => {
                            // The media path sends the key and moves the press on.
                            self.press = Some(press);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// At an `expect_prompt` step, judges the next prompt heard, if one is. Returns true when
    /// it moved the call on (to the next step, or to failed).
    fn take_prompt(&mut self, plan: &Plan, now: Nanos, m: &mut Measure) -> bool {
        let Some(Step::ExpectPrompt {
            name,
            allow_partial,
            ..
        }) = plan.scenario.steps.get(self.step)
        else {
            return false;
        };
        let want = plan.prompt_ids[self.step].unwrap_or(usize::MAX);
        let Some(media) = self.media.as_mut() else {
            return false;
        };
        loop {
            let Some(h) = media.tracker.poll() else {
                return false;
            };
            if !h.complete && h.frames < 10 && h.prompt != want {
                continue; // a momentary false lock, not a prompt
            }
            m.prompts_heard += 1;
            let heard = &plan.lib.refs[h.prompt].name;
            let step = self.step + 1;
            if h.prompt != want {
                let how = if h.complete { "whole" } else { "in part" };
                let detail = format!(
                    "step {step}: heard `{heard}` ({how}, {} ms) while expecting `{name}`",
                    h.frames * 20
                );
                self.fail(fail("wrong_prompt", detail));
            } else if !h.complete && !allow_partial {
                let detail = format!("step {step}: `{name}` stopped after {} ms", h.frames * 20);
                self.fail(fail("prompt_incomplete", detail));
            } else if h.score < plan.min_score {
                let detail = format!("step {step}: `{name}` garbled (score {:.2})", h.score);
                self.fail(fail("prompt_garbled", detail));
            } else {
                if let Some((via, down, up)) = self.key.take() {
                    m.dtmf(via, h.start - up.unwrap_or(down), h.start - down);
                }
                self.next_step(now);
            }
            return true;
        }
    }

    /// This tick's packet(s): an RFC 4733 event, an in-band tone frame, or speech.
    fn send_media(&mut self, now: Nanos, plans: &[Arc<Plan>], rtp: &mut SendBatch) {
        let assets = &plans[self.plan].assets;
        let gap_ms = match plans[self.plan].scenario.steps.get(self.step) {
            Some(Step::Press { gap_ms, digits, .. }) => Some((*gap_ms, digits.len())),
            _ => None,
        };
        let Some(media) = self.media.as_mut() else {
            return;
        };
        let mut rtp = match self.web.as_mut() {
            Some(web) => Out::Web(web, crate::clock::instant(now)),
            None => Out::Batch(rtp),
        };
        let rtp = &mut rtp;
        let mut key_ended: Option<Nanos> = None;
        match self.press.as_mut().map(|p| &mut p.sending) {
            Some(Sending::Event(ev)) => {
                let te = media.te_pt.unwrap_or(101);
                let mut sent_end = false;
                while let Some(p) = ev.next_packet() {
                    let end = p.payload[1] & 0x80 != 0;
                    push_rtp(rtp, media, te, p.marker, p.timestamp, &p.payload);
                    if !end {
                        break;
                    }
                    sent_end = true; // the three end packets go out together
                }
                if sent_end || ev.clone().next_packet().is_none() {
                    key_ended = Some(now);
                }
                media.ts = media.ts.wrapping_add(media.ts_step);
                // RFC 4733 §2.5.1.1: audio after the event starts a talkspurt.
                media.marker = true;
            }
            Some(Sending::Tone {
                digit,
                frame,
                frames,
            }) => {
                let payload = assets.tone_frame(*digit, *frame);
                let (pt, ts, marker) = (media.pt, media.ts, std::mem::take(&mut media.marker));
                push_rtp(rtp, media, pt, marker, ts, payload);
                media.ts = media.ts.wrapping_add(media.ts_step);
                *frame += 1;
                if *frame >= *frames {
                    // The tone ends with this packet's 20 ms of audio.
                    key_ended = Some(now + 20 * MS);
                }
            }
            _ => {
                let payload = assets.speech_frame(media.speech_pos);
                media.speech_pos += 1;
                let (pt, ts, marker) = (media.pt, media.ts, std::mem::take(&mut media.marker));
                push_rtp(rtp, media, pt, marker, ts, payload);
                media.ts = media.ts.wrapping_add(media.ts_step);
            }
        }
        if let Some(up) = key_ended
            && let Some(press) = self.press.as_mut()
        {
            if let Some(key) = self.key.as_mut() {
                key.2 = Some(up);
            }
            press.index += 1;
            let (gap, n) = gap_ms.unwrap_or((0, 0));
            press.sending = Sending::Gap {
                until: if press.index < n {
                    now + gap as Nanos * MS
                } else {
                    now
                },
            };
        }
    }
}

/// Where a caller's RTP goes: straight onto the wire (a phone), or into its peer connection
/// (a browser: SRTP).
enum Out<'a> {
    Batch(&'a mut SendBatch),
    Web(&'a mut Web, std::time::Instant),
}

fn push_rtp(rtp: &mut Out<'_>, media: &mut Media, pt: u8, marker: bool, ts: u32, payload: &[u8]) {
    let mut header = [0u8; careline::media::rtp::HEADER_LEN];
    write_header(&mut header, pt, marker, media.seq, ts, media.ssrc);
    media.seq = media.seq.wrapping_add(1);
    match rtp {
        Out::Batch(batch) => batch.push_with(media.remote, |buf| {
            buf.extend_from_slice(&header);
            buf.extend_from_slice(payload);
        }),
        Out::Web(web, now) => {
            web.scratch.clear();
            web.scratch.extend_from_slice(&header);
            web.scratch.extend_from_slice(payload);
            web.leg.send_rtp(&web.scratch, *now);
        }
    }
}
