//! The rooms' shell: one tokio task per live room drives its [`Room`] core, owns the
//! participants' legs and puts them in the room's conference on the media clock
//! ([`crate::media::engine::MediaEngine::join`]). The mixing itself runs on the media clock
//! with every other leg: a room adds no thread and no timer per participant.
//!
//! A room is live from its first participant until it ends; its booking (the store) outlives
//! it. A room about a patient links each clinician in it to the patient as a call does
//! ([`crate::auth::Auth::set_active_contact`], contact id `room:<room>:<user>`): the summary
//! opens to them because they are in the visit with that patient (every read audited), and
//! once they are out the link goes into wrap-up, long enough to write the visit's notes.
//!
//! A participant's session id (128 random bits, the `Location` the join answered) is the
//! capability for their own leg: leaving, and asking where they stand.

use std::collections::{HashMap, HashSet};
use std::future::poll_fn;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, info, info_span, warn};

use super::room::{
    Channel, Entry, Gone, Knock, Output, Participant, Pid, Presence, Refusal, Role, Room,
};
use super::store::{RoomRecord, RoomStore};
use crate::auth::Auth;
use crate::call::CallServices;
use crate::call::whip::{BrowserMedia, BrowserMediaError, answer_browser};
use crate::media::codec::Codec;
use crate::media::engine::LegHandle;
use crate::media::leg::{LegCommand, LegEvent};
use crate::media::recorder::{LegRecording, Participants};
use crate::media::webrtc::WebRtcError;

/// Why a participant could not enter.
#[derive(Debug, thiserror::Error)]
pub enum EnterError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("no media port free")]
    NoPorts,
    #[error(transparent)]
    Offer(#[from] WebRtcError),
}

/// What the participant's browser gets back.
#[derive(Debug)]
pub struct Entered {
    /// The session id (never logged).
    pub resource: String,
    pub answer: String,
    pub pid: Pid,
    /// In the room at once, or waiting.
    pub waiting: bool,
}

/// A room as the people in it see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomView {
    pub host: Option<Pid>,
    pub participants: Vec<Participant>,
    /// Who is talking now (the talker indicator), in the room's audio.
    pub talking: Vec<Pid>,
    /// The visit is being recorded (everyone in it is told).
    pub recording: bool,
    /// Over (the room task is gone or ending).
    pub ended: bool,
    /// The booking's title and patient (told to clinicians in the visit; not serialized).
    #[serde(skip)]
    pub title: String,
    #[serde(skip)]
    pub patient: Option<String>,
}

impl RoomView {
    /// Whether user `name` (signed in, entered as a clinician) hosts the room now.
    pub fn hosted_by(&self, name: &str) -> bool {
        let key = format!("user:{name}");
        self.host
            .and_then(|h| self.participants.iter().find(|p| p.id == h))
            .is_some_and(|p| p.key == key)
    }
}

/// What the host (or a participant, for themselves) asks of a live room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Admit(Pid),
    Deny(Pid),
    Mute(Pid, bool),
    Remove(Pid),
    HandOver(Pid),
    Leave(Pid),
    End,
}

/// Why a room's recording could not start or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("nobody is in the room's audio to record")]
    NobodyToRecord,
    #[error("the room is being recorded already")]
    Recording,
    #[error("the room is not being recorded")]
    NotRecording,
    #[error("recording is not available on this server")]
    Unavailable,
    #[error("nobody is in this room")]
    NotLive,
}

/// A recording started: its id, and whose leg it follows (`patient`: the patient on the left
/// channel, everyone else on the right; `host`: the host on the left, when no patient is in
/// the room).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRecording {
    pub id: String,
    pub left: Role,
}

enum Command {
    Enter {
        knock: Knock,
        leg: Box<LegHandle>,
        codec: Codec,
        resource: String,
        /// A phone participant's line: told when they are out (the phone is hung up).
        line: Option<oneshot::Sender<()>>,
        reply: oneshot::Sender<Result<Entry, Refusal>>,
    },
    Record(bool, oneshot::Sender<Result<RoomRecording, RecordError>>),
    Control(Control, oneshot::Sender<bool>),
    View(oneshot::Sender<RoomView>),
}

/// The live rooms' tasks, by room id; a task takes itself out when its room ends.
type Live = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Command>>>>;

/// Live rooms and the participants' sessions.
pub struct Rooms {
    svc: Arc<CallServices>,
    /// Links clinicians in a visit to its patient; None in tools without a database.
    auth: Option<Arc<Auth>>,
    store: RoomStore,
    rejoin_grace: Duration,
    live: Live,
    /// Session id to (room, participant).
    sessions: Arc<Mutex<HashMap<String, (String, Pid)>>>,
}

impl std::fmt::Debug for Rooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rooms")
    }
}

impl Rooms {
    pub fn new(
        svc: Arc<CallServices>,
        store: RoomStore,
        rejoin_grace: Duration,
        auth: Option<Arc<Auth>>,
    ) -> Rooms {
        Rooms {
            svc,
            auth,
            store,
            rejoin_grace,
            live: Live::default(),
            sessions: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn store(&self) -> &RoomStore {
        &self.store
    }

    /// Counts an invitation link refused at the door (forged, expired, withdrawn).
    pub fn link_refused(&self) {
        self.svc.metrics.room("link_refused");
    }

    /// Counts a visit PIN keyed on the dial-in line that opened nothing.
    pub fn pin_refused(&self) {
        self.svc.metrics.room("pin_refused");
    }

    /// A phone caller who keyed a visit PIN enters `room` as `knock` on their call's `leg`:
    /// in the room or its waiting room, with the seat their call holds (see
    /// [`crate::call::room_door`]): the room lets them go and the call hangs up; the call ends
    /// and the room takes them out. A caller turned away has their leg closed by the room.
    pub async fn enter_phone(
        &self,
        room: &RoomRecord,
        knock: Knock,
        leg: LegHandle,
        codec: Codec,
    ) -> Result<(Entry, crate::call::room_door::Seat), Refusal> {
        let (line, out) = oneshot::channel();
        let (leave, left) = oneshot::channel::<()>();
        let (reply, entered) = oneshot::channel();
        let resource = format!("{:032x}", rand::random::<u128>());
        let cmd = Command::Enter {
            knock,
            leg: Box::new(leg),
            codec,
            resource: resource.clone(),
            line: Some(line),
            reply,
        };
        let tx = self.send_entry(room, cmd).ok_or(Refusal::Ended)?;
        let entry = entered.await.map_err(|_| Refusal::Ended)??;
        let pid = entry.pid();
        let sessions = self.sessions.clone();
        tokio::spawn(async move {
            let _ = left.await;
            // Their call ended: out, unless they took their place again on another
            // connection meanwhile (their invitation's link), which this one no longer holds.
            let still = sessions.lock().is_ok_and(|s| s.contains_key(&resource));
            if still {
                let (reply, _) = oneshot::channel();
                let _ = tx.send(Command::Control(Control::Leave(pid), reply));
            }
        });
        Ok((entry, crate::call::room_door::Seat { out, leave }))
    }

    /// The room and participant a session id stands for.
    pub fn session(&self, resource: &str) -> Option<(String, Pid)> {
        self.sessions.lock().ok()?.get(resource).cloned()
    }

    /// A browser (`offer`, from `remote`) asks to enter `room` as `knock`: answered with its
    /// session and SDP answer, in the room or its waiting room.
    pub async fn enter(
        &self,
        room: &RoomRecord,
        knock: Knock,
        offer: &str,
        remote: IpAddr,
    ) -> Result<Entered, EnterError> {
        let svc = &self.svc;
        let BrowserMedia {
            sockets,
            ids,
            answered,
            ..
        } = answer_browser(svc, offer, remote).map_err(|e| match e {
            BrowserMediaError::NoPorts => EnterError::NoPorts,
            BrowserMediaError::Offer(e) => EnterError::Offer(e),
        })?;
        let opts = svc.settings.leg_options();
        let codec = answered.params.codec;
        let leg = svc
            .media
            .open_webrtc(sockets, answered.transport, answered.params, opts, ids)
            .map_err(|e| {
                warn!(error = %e, "could not open a room participant's media");
                EnterError::NoPorts
            })?;
        let resource = format!("{:032x}", rand::random::<u128>());
        let (reply, entered) = oneshot::channel();
        let cmd = Command::Enter {
            knock,
            leg: Box::new(leg),
            codec,
            resource: resource.clone(),
            line: None,
            reply,
        };
        self.send_entry(room, cmd);
        let entry = entered.await.map_err(|_| Refusal::Ended)??;
        Ok(Entered {
            resource,
            answer: answered.answer,
            pid: entry.pid(),
            waiting: matches!(entry, Entry::Waiting(_)),
        })
    }

    /// Hands `control` to the live room `room`; false when the room is not live or the
    /// control does not apply (nobody by that number, not waiting, ...).
    pub async fn control(&self, room: &str, control: Control) -> bool {
        let Some(tx) = self.live_task(room) else {
            return false;
        };
        let (reply, done) = oneshot::channel();
        if tx.send(Command::Control(control, reply)).is_err() {
            return false;
        }
        done.await.unwrap_or(false)
    }

    /// The host calls `number` into the room through the trunk (an interpreter's line, a
    /// patient whose browser failed): once it answers, it enters as `label` with `role`, in
    /// the room at once (the host called them). Ok once the call is placed; the ringing and
    /// the entry go on in the background (they show in the room when answered).
    pub async fn call_out(
        &self,
        room: &RoomRecord,
        number: &str,
        label: String,
        role: Role,
    ) -> Result<(), crate::call::dial::DialError> {
        let knock = Knock {
            key: format!("phone:{:016x}", rand::random::<u64>()),
            label,
            role,
            channel: Channel::Phone,
            admitted: true,
        };
        self.ring_into(room, number, knock, ("call_out", "call_out_failed"))
            .await
    }

    /// An invitee whose browser could not connect (or dropped) asks to be called instead ("we
    /// will call your phone"): `number` is rung through the trunk and, answered, enters as
    /// `knock` (their invitation's place: back in the room if the host had let them in,
    /// else the waiting room). Ok once the call is placed.
    pub async fn call_invitee(
        &self,
        room: &RoomRecord,
        number: &str,
        knock: Knock,
    ) -> Result<(), crate::call::dial::DialError> {
        self.ring_into(room, number, knock, ("call_me", "call_me_failed"))
            .await
    }

    /// Rings `number` and, answered, puts the phone in the room as `knock`; `events` are what
    /// `/metrics` counts it as when placed, and when nobody answers.
    async fn ring_into(
        &self,
        room: &RoomRecord,
        number: &str,
        knock: Knock,
        (event, failed): (&'static str, &'static str),
    ) -> Result<(), crate::call::dial::DialError> {
        let ring = crate::call::dial::ring_out(&self.svc, number).await?;
        let svc = self.svc.clone();
        let tx = self.task(room);
        let span = info_span!("room", room = %room.id);
        self.svc.metrics.room(event);
        tokio::spawn(
            async move {
                let mut answered = match ring.answered(&svc).await {
                    Ok(a) => a,
                    Err(cause) => {
                        info!(cause, "the number called into the room did not answer");
                        svc.metrics.room(failed);
                        return;
                    }
                };
                let (line, hang_up) = oneshot::channel();
                let (reply, entered) = oneshot::channel();
                let cmd = Command::Enter {
                    knock,
                    leg: Box::new(answered.leg),
                    codec: answered.codec,
                    resource: format!("{:032x}", rand::random::<u128>()),
                    line: Some(line),
                    reply,
                };
                let pid = match (tx.send(cmd), entered.await) {
                    (Ok(()), Ok(Ok(entry))) => entry.pid(),
                    _ => {
                        answered.phone.hangup().await;
                        return;
                    }
                };
                info!(participant = pid, "the number called is in the room");
                tokio::select! {
                    // Out of the room (removed, the visit over): the phone is hung up.
                    _ = hang_up => answered.phone.hangup().await,
                    // The phone hung up: they left.
                    () = crate::call::phone_agent::until_ended(&mut answered.phone) => {
                        let (reply, _) = oneshot::channel();
                        let _ = tx.send(Command::Control(Control::Leave(pid), reply));
                    }
                }
            }
            .instrument(span),
        );
        Ok(())
    }

    /// Starts (true) or stops (false) recording the live room `room`. The recording follows
    /// one leg: the patient's (left channel: the patient; right: the room's mix they hear,
    /// everyone else), or the host's when no patient is in the room's audio.
    pub async fn record(&self, room: &str, on: bool) -> Result<RoomRecording, RecordError> {
        let tx = self.live_task(room).ok_or(RecordError::NotLive)?;
        let (reply, done) = oneshot::channel();
        tx.send(Command::Record(on, reply))
            .map_err(|_| RecordError::NotLive)?;
        done.await.map_err(|_| RecordError::NotLive)?
    }

    /// Who is in the live room `room`; None when it is not live.
    pub async fn view(&self, room: &str) -> Option<RoomView> {
        let tx = self.live_task(room)?;
        let (reply, view) = oneshot::channel();
        tx.send(Command::View(reply)).ok()?;
        view.await.ok()
    }

    /// Hands an entry to `room`'s task: the task it went to, or None when none took it.
    /// A room task that just ended refuses its mail: one retry with a fresh task (whose
    /// booking says whether the room is over). A refused command is dropped, which answers
    /// its `reply` with an error.
    fn send_entry(
        &self,
        room: &RoomRecord,
        mut cmd: Command,
    ) -> Option<mpsc::UnboundedSender<Command>> {
        for _ in 0..2 {
            let tx = self.task(room);
            match tx.send(cmd) {
                Ok(()) => return Some(tx),
                Err(mpsc::error::SendError(back)) => cmd = back,
            }
        }
        None
    }

    fn live_task(&self, room: &str) -> Option<mpsc::UnboundedSender<Command>> {
        self.live.lock().ok()?.get(room).cloned()
    }

    /// The live room's task, started for its first participant.
    fn task(&self, room: &RoomRecord) -> mpsc::UnboundedSender<Command> {
        let mut live = match self.live.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(tx) = live.get(&room.id)
            && !tx.is_closed()
        {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        live.insert(room.id.clone(), tx.clone());
        let core = Room::new(room.policy(self.rejoin_grace));
        let task = RoomTask {
            id: room.id.clone(),
            core,
            legs: HashMap::new(),
            resources: HashMap::new(),
            joined: Vec::new(),
            svc: self.svc.clone(),
            store: self.store.clone(),
            sessions: self.sessions.clone(),
            live: self.live.clone(),
            title: room.title.clone(),
            patient: room.patient.clone(),
            auth: self.auth.clone(),
            linked: HashMap::new(),
            talking: HashSet::new(),
            codecs: HashMap::new(),
            recording: None,
            lines: HashMap::new(),
        };
        self.svc.metrics.room("opened");
        let span = info_span!("room", room = %room.id);
        tokio::spawn(task.run(rx).instrument(span));
        tx
    }
}

struct RoomTask {
    id: String,
    core: Room,
    legs: HashMap<Pid, LegHandle>,
    resources: HashMap<Pid, String>,
    /// Participants in the room's audio, in order of joining (the first is the anchor new
    /// ones join).
    joined: Vec<Pid>,
    svc: Arc<CallServices>,
    store: RoomStore,
    sessions: Arc<Mutex<HashMap<String, (String, Pid)>>>,
    live: Live,
    title: String,
    /// The patient the visit is about.
    patient: Option<String>,
    /// What links clinicians in the visit to its patient.
    auth: Option<Arc<Auth>>,
    /// Clinicians linked to the patient: participant to contact id.
    linked: HashMap<Pid, String>,
    /// Who talks now, as the conference tells each talker's leg.
    talking: HashSet<Pid>,
    /// Each participant's leg's codec (what a recording of it is made at).
    codecs: HashMap<Pid, Codec>,
    /// The recording running now: the participant whose leg it follows, and its id.
    recording: Option<(Pid, String)>,
    /// Phone participants' lines, hung up when they are out.
    lines: HashMap<Pid, oneshot::Sender<()>>,
}

/// Who links clinicians in a visit to its patient, in the audit trail.
const LINKER: &str = "system:rooms";

/// Waiting-room music: as much as a long wait needs, stopped when the host lets them in.
const WAITING_MUSIC: usize = 60;
/// The play id of the waiting-room music (a room plays nothing else).
const WAITING_PLAY: u64 = 1;

impl RoomTask {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        info!("room live");
        loop {
            let deadline = self.core.poll_timeout();
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd).await,
                    // Every sender is gone: the server is shutting down.
                    None => self.core.end(),
                },
                (pid, event) = next_event(&mut self.legs) => {
                    if let Some(LegEvent::Talking(on)) = event {
                        if on {
                            self.talking.insert(pid);
                        } else {
                            self.talking.remove(&pid);
                        }
                    }
                    if matches!(event, None | Some(LegEvent::ConnectionLost | LegEvent::RtpTimeout)) {
                        self.core.connection_lost(Instant::now(), pid);
                        // A dead leg does not come back: the participant comes back on a
                        // new one.
                        if let Some(leg) = self.legs.remove(&pid) {
                            self.recorded_leg_gone(pid);
                            leg.close().await;
                        }
                    }
                }
                () = sleep_until(deadline) => self.core.handle_timeout(Instant::now()),
            }
            self.outputs().await;
            if self.core.ended().is_some() {
                break;
            }
        }
        rx.close();
        if let Ok(mut live) = self.live.lock()
            && live.get(&self.id).is_some_and(|t| t.is_closed())
        {
            live.remove(&self.id);
        }
        // Whatever knocked meanwhile is told the visit is over.
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                Command::Enter { reply, leg, .. } => {
                    let _ = reply.send(Err(Refusal::Ended));
                    leg.close().await;
                }
                Command::Control(_, reply) => {
                    let _ = reply.send(false);
                }
                Command::Record(_, reply) => {
                    let _ = reply.send(Err(RecordError::NotLive));
                }
                Command::View(reply) => {
                    let _ = reply.send(RoomView {
                        host: None,
                        participants: Vec::new(),
                        talking: Vec::new(),
                        recording: false,
                        ended: true,
                        title: String::new(),
                        patient: None,
                    });
                }
            }
        }
        info!("room over");
    }

    async fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Enter {
                knock,
                leg,
                codec,
                resource,
                line,
                reply,
            } => {
                let result = self.core.knock(knock);
                match result {
                    Ok(entry) => {
                        let pid = entry.pid();
                        self.codecs.insert(pid, codec);
                        // A place taken again on a new connection lets the old one go: a phone
                        // line it replaces is hung up (its sender dropped).
                        match line {
                            Some(line) => self.lines.insert(pid, line),
                            None => self.lines.remove(&pid),
                        };
                        if let Some(old) = self.legs.insert(pid, *leg) {
                            self.recorded_leg_gone(pid);
                            old.close().await;
                        }
                        if let Some(old) = self.resources.insert(pid, resource.clone()) {
                            self.sessions_remove(&old);
                        }
                        if let Ok(mut s) = self.sessions.lock() {
                            s.insert(resource, (self.id.clone(), pid));
                        }
                        let event = match entry {
                            Entry::Joined(_) => "joined",
                            Entry::Waiting(_) => "waiting",
                            Entry::Returned(_) => "rejoined",
                        };
                        self.svc.metrics.room(event);
                        info!(participant = pid, event, "a participant knocked");
                        if self
                            .core
                            .participant(pid)
                            .is_some_and(|p| p.presence == Presence::Waiting)
                        {
                            self.waiting_music(pid);
                        }
                    }
                    Err(why) => {
                        self.svc.metrics.room("refused");
                        info!(reason = %why, "a participant was refused");
                        leg.close().await;
                    }
                }
                let _ = reply.send(result);
            }
            Command::Control(control, reply) => {
                let now = Instant::now();
                let done = match control {
                    Control::Admit(p) => {
                        let done = self.core.admit(p);
                        if done {
                            self.svc.metrics.room("admitted");
                        }
                        done
                    }
                    Control::Deny(p) => self.core.deny(p),
                    Control::Mute(p, m) => self.core.mute(p, m),
                    Control::Remove(p) => self.core.kick(p),
                    Control::HandOver(p) => self.core.hand_over(p),
                    Control::Leave(p) => {
                        let known = self.core.participant(p).is_some();
                        self.core.leave(now, p);
                        known
                    }
                    Control::End => {
                        self.core.end();
                        true
                    }
                };
                // Done when the caller hears back: the leg muted, the room marked over.
                self.outputs().await;
                let _ = reply.send(done);
            }
            Command::Record(on, reply) => {
                let _ = reply.send(if on {
                    self.start_recording()
                } else {
                    self.stop_recording()
                });
            }
            Command::View(reply) => {
                let mut talking: Vec<Pid> = self.talking.iter().copied().collect();
                talking.sort_unstable();
                let _ = reply.send(RoomView {
                    host: self.core.host(),
                    participants: self.core.participants().to_vec(),
                    talking,
                    recording: self.recording.is_some(),
                    ended: self.core.ended().is_some(),
                    title: self.title.clone(),
                    patient: self.patient.clone(),
                });
            }
        }
    }

    fn waiting_music(&self, pid: Pid) {
        if let Some(leg) = self.legs.get(&pid) {
            leg.command(LegCommand::Play {
                id: WAITING_PLAY,
                prompts: vec![self.svc.hold_music.clone(); WAITING_MUSIC],
                barge_in: false,
            });
        }
    }

    fn sessions_remove(&self, resource: &str) {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(resource);
        }
    }

    /// Carries out what the core decided.
    async fn outputs(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Join(pid) => {
                    self.join(pid).await;
                    self.link_patient(pid).await;
                }
                Output::Unjoin(pid) => {
                    self.joined.retain(|p| *p != pid);
                    self.talking.remove(&pid);
                    if let Some(leg) = self.legs.get(&pid) {
                        leg.unbridge();
                    }
                }
                Output::Mute(pid, muted) => {
                    if let Some(leg) = self.legs.get(&pid) {
                        leg.command(LegCommand::Mute(muted));
                    }
                }
                Output::Remove(pid, why) => {
                    self.joined.retain(|p| *p != pid);
                    self.talking.remove(&pid);
                    if let Some(resource) = self.resources.remove(&pid) {
                        self.sessions_remove(&resource);
                    }
                    if let Some(leg) = self.legs.remove(&pid) {
                        self.recorded_leg_gone(pid);
                        leg.close().await;
                    }
                    self.codecs.remove(&pid);
                    if let Some(line) = self.lines.remove(&pid) {
                        let _ = line.send(());
                    }
                    self.unlink_patient(pid).await;
                    info!(participant = pid, why = ?why, "a participant is out");
                    if why == Gone::Lost {
                        self.svc.metrics.room("lost");
                    }
                }
                Output::Host(pid) => info!(participant = pid, "hosts the room"),
                Output::Ended(reason) => {
                    self.svc.metrics.room("ended");
                    info!(reason = reason.as_str(), "the visit ended");
                    let now_ms = jiff::Timestamp::now().as_millisecond();
                    if let Err(e) = self.store.end(&self.id, reason.as_str(), now_ms).await {
                        warn!(error = %e, "could not mark the room ended");
                    }
                }
            }
        }
    }

    /// Puts `pid`'s leg in the room's audio, with the first participant already there (a
    /// room of one has no conference: the leg waits in silence for company).
    async fn join(&mut self, pid: Pid) {
        let Some(mut leg) = self.legs.remove(&pid) else {
            // Away (its leg died): joined when it comes back on a new leg.
            return;
        };
        leg.command(LegCommand::Stop);
        let anchor = self
            .joined
            .iter()
            .find(|p| **p != pid && self.legs.contains_key(p))
            .copied();
        if let Some(anchor) = anchor.and_then(|a| self.legs.get(&a))
            && let Err(e) = self.svc.media.join(anchor, &mut leg).await
        {
            warn!(error = %e, participant = pid, "could not join a participant to the room");
        }
        self.legs.insert(pid, leg);
        if !self.joined.contains(&pid) {
            self.joined.push(pid);
        }
    }
}

impl RoomTask {
    /// Records the patient's leg (the patient left, the room's mix for them right), or the
    /// host's when no patient is in the room's audio.
    fn start_recording(&mut self) -> Result<RoomRecording, RecordError> {
        if self.recording.is_some() {
            return Err(RecordError::Recording);
        }
        let present = |p: &&Participant| p.presence == Presence::Present;
        let subject = self
            .core
            .participants()
            .iter()
            .filter(present)
            .find(|p| p.role == Role::Patient)
            .or_else(|| {
                let host = self.core.host()?;
                self.core
                    .participants()
                    .iter()
                    .filter(present)
                    .find(|p| p.id == host)
            })
            .map(|p| (p.id, p.role))
            .ok_or(RecordError::NobodyToRecord)?;
        let (pid, role) = subject;
        let (Some(leg), Some(codec)) = (self.legs.get(&pid), self.codecs.get(&pid)) else {
            return Err(RecordError::NobodyToRecord);
        };
        let call_id = format!("room:{}", self.id);
        let tap = self
            .svc
            .recorder
            .open(&call_id, Participants::BOTH, *codec)
            .ok_or(RecordError::Unavailable)?;
        let id = tap.id.to_string();
        leg.command(LegCommand::Record(LegRecording::Attach(Box::new(tap))));
        info!(recording = %id, participant = pid, "recording the visit");
        self.svc.metrics.room("recording");
        self.recording = Some((pid, id.clone()));
        Ok(RoomRecording { id, left: role })
    }

    fn stop_recording(&mut self) -> Result<RoomRecording, RecordError> {
        let (pid, id) = self.recording.take().ok_or(RecordError::NotRecording)?;
        if let Some(leg) = self.legs.get(&pid) {
            leg.command(LegCommand::Record(LegRecording::Detach));
        }
        info!(recording = %id, "the visit's recording stopped");
        let left = self.core.participant(pid).map_or(Role::Patient, |p| p.role);
        Ok(RoomRecording { id, left })
    }

    /// The leg a recording follows is going (closed, replaced): the recording ends with it
    /// (the leg seals what it recorded as it closes).
    fn recorded_leg_gone(&mut self, pid: Pid) {
        if self.recording.as_ref().is_some_and(|(p, _)| *p == pid)
            && let Some((_, id)) = self.recording.take()
        {
            info!(recording = %id, "the recorded participant's leg went: recording over");
        }
    }

    /// A clinician in the visit is linked to its patient (once per stay).
    async fn link_patient(&mut self, pid: Pid) {
        let (Some(auth), Some(patient)) = (&self.auth, &self.patient) else {
            return;
        };
        let Some(user) = self.core.participant(pid).and_then(|p| {
            (p.role == Role::Clinician)
                .then(|| p.key.strip_prefix("user:"))
                .flatten()
        }) else {
            return;
        };
        if self.linked.contains_key(&pid) {
            return;
        }
        let contact = format!("room:{}:{user}", self.id);
        match auth
            .set_active_contact(&contact, patient, user, LINKER)
            .await
        {
            Ok(()) => {
                self.linked.insert(pid, contact);
            }
            Err(e) => warn!(error = %e, "could not link a clinician to the visit's patient"),
        }
    }

    /// A clinician is out of the visit: their link goes into wrap-up.
    async fn unlink_patient(&mut self, pid: Pid) {
        let (Some(auth), Some(contact)) = (&self.auth, self.linked.remove(&pid)) else {
            return;
        };
        if let Err(e) = auth.end_call_contact(&contact, LINKER).await {
            warn!(error = %e, "could not end a clinician's link to the visit's patient");
        }
    }
}

/// The next event of any participant's leg; pending while there is none.
async fn next_event(legs: &mut HashMap<Pid, LegHandle>) -> (Pid, Option<LegEvent>) {
    poll_fn(|cx| {
        for (pid, leg) in legs.iter_mut() {
            if let Poll::Ready(event) = leg.poll_event(cx) {
                return Poll::Ready((*pid, event));
            }
        }
        Poll::Pending
    })
    .await
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}
