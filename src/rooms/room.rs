//! One telehealth room as a sans-IO core: who is in it, who waits to be let in, who hosts it,
//! who may still come back, and when it ends. Fed the participants' arrivals and departures,
//! the host's decisions and the time; answering with [`Output`]s (join this leg to the room's
//! audio, mute it, take it out, the room is over) and its next deadline, as the call core is to
//! a call. The shell ([`super::service`]) owns the legs, the conference on the media clock and
//! the timers.
//!
//! The rules a clinic expects of a visit:
//! - The host (the clinician who opened the room) and other clinicians enter at once; patients
//!   and guests (an interpreter, a family member) wait in the waiting room until the host lets
//!   them in, unless the room has no waiting room.
//! - A room has a participant limit (waiting participants and ones who may come back count):
//!   one more is refused politely, not squeezed in.
//! - Someone whose connection drops (a closed tab, a lost network) keeps their place for the
//!   rejoin grace: coming back within it, they are in the room again at once (no second wait);
//!   past it they are gone. Someone entering again while still in (a reloaded page, another
//!   device) takes their own place on the new connection: one place per person.
//! - The host leaving (or gone past their grace) hands the room to another clinician present,
//!   the longest there, or ends it, as configured ([`HostLeaves`]). With nobody to hand it to
//!   the room waits one grace for a clinician to come (the host again, or a colleague) and
//!   then ends: patients are never left alone in a room nobody runs. An empty room stays
//!   open (a clinician who opened it early may step out) until the host ends it.
//! - The host ends the visit for everyone.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A participant, numbered by the room in order of arrival.
pub type Pid = u64;

/// What a participant is in the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A clinician: enters at once and may host.
    Clinician,
    /// The patient the visit is about: waits to be let in.
    Patient,
    /// Anyone else invited (an interpreter, family): waits to be let in.
    Guest,
}

/// How a participant's audio reaches the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Browser,
    Phone,
}

/// Where a participant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    /// In the waiting room: connected, hearing nobody, heard by nobody.
    Waiting,
    /// In the room: hears everyone else and is heard (unless muted).
    Present,
    /// Connection lost; their place is kept until the grace is over.
    Away,
}

/// What happens when the host leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostLeaves {
    /// Another clinician present becomes the host; with none, the room ends after a grace.
    #[default]
    HandOver,
    /// The visit ends for everyone.
    End,
}

/// A room's rules.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Patients and guests wait for the host to let them in.
    pub waiting_room: bool,
    /// Participants at most, the host included.
    pub max_participants: usize,
    /// How long a dropped participant's place is kept.
    pub rejoin_grace: Duration,
    pub host_leaves: HostLeaves,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            waiting_room: true,
            max_participants: 8,
            rejoin_grace: Duration::from_secs(60),
            host_leaves: HostLeaves::HandOver,
        }
    }
}

/// Someone asking to enter.
#[derive(Debug, Clone)]
pub struct Knock {
    /// Who they are, stable across reconnections: `user:NAME` for staff, `invite:ID` for an
    /// invitee's link, `phone:ID` for a phone participant. The same key coming back while
    /// away is the same participant.
    pub key: String,
    /// What the others see (the invitee's label or the user's name).
    pub label: String,
    pub role: Role,
    pub channel: Channel,
    /// The host brought them in (called them by phone): no waiting room.
    pub admitted: bool,
}

/// Why someone is not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the visit is over")]
    Ended,
    #[error("the room is full")]
    Full,
    #[error("the host has turned you away")]
    Denied,
}

/// How someone entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// In the room (joined to its audio).
    Joined(Pid),
    /// In the waiting room.
    Waiting(Pid),
    /// The same person again (back from a dropped connection, a reloaded page, another
    /// device), in the room again (or the waiting room, if that is where they were): the
    /// shell swaps their old leg for the new one.
    Returned(Pid),
}

impl Entry {
    pub fn pid(self) -> Pid {
        match self {
            Entry::Joined(p) | Entry::Waiting(p) | Entry::Returned(p) => p,
        }
    }
}

/// Why a participant is out of the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gone {
    Left,
    Denied,
    /// Their connection dropped and they did not come back within the grace.
    Lost,
    /// The host took them out.
    Removed,
    /// The room ended.
    Ended,
}

/// Why the room ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The host ended the visit.
    Host,
    /// The host left and the room ends with them ([`HostLeaves::End`]).
    HostLeft,
    /// No clinician came back to run the room.
    NoHost,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Host => "host",
            EndReason::HostLeft => "host_left",
            EndReason::NoHost => "no_host",
        }
    }
}

/// What the shell does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Put the participant's leg in the room's audio.
    Join(Pid),
    /// Take the participant's leg out of the room's audio (they wait again, or dropped).
    Unjoin(Pid),
    /// The participant is heard (false) or not (true).
    Mute(Pid, bool),
    /// The participant is out: close their leg.
    Remove(Pid, Gone),
    /// The participant hosts the room now.
    Host(Pid),
    /// The room is over (every participant was removed before this).
    Ended(EndReason),
}

/// One participant, as the room sees them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Participant {
    pub id: Pid,
    #[serde(skip)]
    pub key: String,
    pub label: String,
    pub role: Role,
    pub channel: Channel,
    pub presence: Presence,
    pub muted: bool,
    /// Away until then.
    #[serde(skip)]
    back_by: Option<Instant>,
    /// Present before they dropped (so they come back to the room, not the waiting room).
    #[serde(skip)]
    was_present: bool,
}

/// One room. See the module documentation.
#[derive(Debug)]
pub struct Room {
    policy: Policy,
    participants: Vec<Participant>,
    /// Keys the host turned away: not let knock again.
    denied: Vec<String>,
    host: Option<Pid>,
    /// The host is gone and nobody could take over: the room ends then unless a clinician
    /// comes.
    hostless_until: Option<Instant>,
    ended: Option<EndReason>,
    next: Pid,
    out: VecDeque<Output>,
}

impl Room {
    /// A room run by nobody yet: the first clinician to enter hosts it.
    pub fn new(policy: Policy) -> Room {
        Room {
            policy,
            participants: Vec::new(),
            denied: Vec::new(),
            host: None,
            hostless_until: None,
            ended: None,
            next: 1,
            out: VecDeque::new(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn participants(&self) -> &[Participant] {
        &self.participants
    }

    pub fn participant(&self, id: Pid) -> Option<&Participant> {
        self.participants.iter().find(|p| p.id == id)
    }

    /// The participant with `key` (still in the room or the waiting room, or away).
    pub fn find(&self, key: &str) -> Option<&Participant> {
        self.participants.iter().find(|p| p.key == key)
    }

    pub fn host(&self) -> Option<Pid> {
        self.host
    }

    pub fn ended(&self) -> Option<EndReason> {
        self.ended
    }

    /// Someone asks to enter.
    pub fn knock(&mut self, who: Knock) -> Result<Entry, Refusal> {
        if self.ended.is_some() {
            return Err(Refusal::Ended);
        }
        if self.denied.contains(&who.key) {
            return Err(Refusal::Denied);
        }
        if let Some(p) = self.participants.iter_mut().find(|p| p.key == who.key) {
            // The same person again: back from a dropped connection, or from a reloaded page
            // or another device before the old connection was noticed gone. The newest
            // connection takes the place (the shell closes the old leg).
            let id = p.id;
            let present = match p.presence {
                Presence::Away => p.was_present,
                Presence::Present => {
                    self.out.push_back(Output::Unjoin(id));
                    true
                }
                Presence::Waiting => false,
            };
            p.back_by = None;
            p.channel = who.channel;
            if present {
                p.presence = Presence::Present;
                self.out.push_back(Output::Join(id));
                if p.muted {
                    self.out.push_back(Output::Mute(id, true));
                }
            } else {
                p.presence = Presence::Waiting;
            }
            if p.role == Role::Clinician && self.host.is_none() {
                self.take_host(id);
            }
            return Ok(Entry::Returned(id));
        }
        if self.participants.len() >= self.policy.max_participants {
            return Err(Refusal::Full);
        }
        let id = self.next;
        self.next += 1;
        let waits = !who.admitted && who.role != Role::Clinician && self.policy.waiting_room;
        let role = who.role;
        self.participants.push(Participant {
            id,
            key: who.key,
            label: who.label,
            role,
            channel: who.channel,
            presence: if waits {
                Presence::Waiting
            } else {
                Presence::Present
            },
            muted: false,
            back_by: None,
            was_present: !waits,
        });
        if waits {
            return Ok(Entry::Waiting(id));
        }
        self.out.push_back(Output::Join(id));
        if role == Role::Clinician && self.host.is_none() {
            self.take_host(id);
        }
        Ok(Entry::Joined(id))
    }

    /// The host lets a waiting participant in; false if `id` is not waiting.
    pub fn admit(&mut self, id: Pid) -> bool {
        let Some(p) = self.waiting_mut(id) else {
            return false;
        };
        p.presence = Presence::Present;
        p.was_present = true;
        let muted = p.muted;
        self.out.push_back(Output::Join(id));
        if muted {
            self.out.push_back(Output::Mute(id, true));
        }
        true
    }

    /// The host turns a waiting participant away: they are out and may not knock again.
    pub fn deny(&mut self, id: Pid) -> bool {
        let Some(p) = self.waiting_mut(id) else {
            return false;
        };
        let key = p.key.clone();
        self.denied.push(key);
        self.remove(id, Gone::Denied);
        true
    }

    fn waiting_mut(&mut self, id: Pid) -> Option<&mut Participant> {
        if self.ended.is_some() {
            return None;
        }
        self.participants
            .iter_mut()
            .find(|p| p.id == id && p.presence == Presence::Waiting)
    }

    /// The host mutes or unmutes a participant in the room; false if `id` is not there.
    pub fn mute(&mut self, id: Pid, muted: bool) -> bool {
        if self.ended.is_some() {
            return false;
        }
        let Some(p) = self.participants.iter_mut().find(|p| p.id == id) else {
            return false;
        };
        if p.muted != muted {
            p.muted = muted;
            if p.presence == Presence::Present {
                self.out.push_back(Output::Mute(id, muted));
            }
        }
        true
    }

    /// The host takes a participant out of the room (not themselves); false if `id` is not
    /// there or is the host.
    pub fn kick(&mut self, id: Pid) -> bool {
        if self.ended.is_some() || self.host == Some(id) || self.participant(id).is_none() {
            return false;
        }
        self.remove(id, Gone::Removed);
        true
    }

    /// The host hands the room to another clinician in it; false otherwise.
    pub fn hand_over(&mut self, id: Pid) -> bool {
        let ok = self.ended.is_none()
            && self
                .participant(id)
                .is_some_and(|p| p.role == Role::Clinician && p.presence == Presence::Present);
        if ok && self.host != Some(id) {
            self.take_host(id);
        }
        ok
    }

    /// A participant hangs up or closes the visit page on purpose.
    pub fn leave(&mut self, now: Instant, id: Pid) {
        if self.ended.is_some() || self.participant(id).is_none() {
            return;
        }
        self.remove(id, Gone::Left);
        if self.host == Some(id) {
            self.host_gone(now, EndReason::HostLeft);
        }
    }

    /// A participant's connection dropped without a goodbye: their place is kept for the
    /// grace.
    pub fn connection_lost(&mut self, now: Instant, id: Pid) {
        if self.ended.is_some() {
            return;
        }
        let grace = self.policy.rejoin_grace;
        let Some(p) = self
            .participants
            .iter_mut()
            .find(|p| p.id == id && p.presence != Presence::Away)
        else {
            return;
        };
        let was_present = p.presence == Presence::Present;
        p.presence = Presence::Away;
        p.was_present = was_present;
        p.back_by = Some(now + grace);
        if was_present {
            self.out.push_back(Output::Unjoin(id));
        }
    }

    /// The host ends the visit.
    pub fn end(&mut self) {
        self.finish(EndReason::Host);
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Room::handle_timeout`] is due next: a dropped participant's grace, or the
    /// hostless room's.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended.is_some() {
            return None;
        }
        self.participants
            .iter()
            .filter_map(|p| p.back_by)
            .chain(self.hostless_until)
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended.is_some() {
            return;
        }
        let lost: Vec<Pid> = self
            .participants
            .iter()
            .filter(|p| p.back_by.is_some_and(|t| t <= now))
            .map(|p| p.id)
            .collect();
        for id in lost {
            self.remove(id, Gone::Lost);
            if self.host == Some(id) {
                self.host_gone(now, EndReason::HostLeft);
            }
        }
        if self.hostless_until.is_some_and(|t| t <= now) {
            self.hostless_until = None;
            if !self.participants.is_empty() {
                self.finish(EndReason::NoHost);
            }
        }
    }

    fn take_host(&mut self, id: Pid) {
        self.host = Some(id);
        self.hostless_until = None;
        self.out.push_back(Output::Host(id));
    }

    /// The host is out for good: another clinician present hosts, or the room ends (now, or
    /// after a grace for a clinician to come).
    fn host_gone(&mut self, now: Instant, reason: EndReason) {
        self.host = None;
        if self.policy.host_leaves == HostLeaves::End {
            self.finish(reason);
            return;
        }
        let next = self
            .participants
            .iter()
            .find(|p| p.role == Role::Clinician && p.presence == Presence::Present)
            .map(|p| p.id);
        match next {
            Some(id) => self.take_host(id),
            None if self.participants.is_empty() => {}
            None => self.hostless_until = Some(now + self.policy.rejoin_grace),
        }
    }

    fn remove(&mut self, id: Pid, why: Gone) {
        if let Some(i) = self.participants.iter().position(|p| p.id == id) {
            self.participants.remove(i);
            self.out.push_back(Output::Remove(id, why));
        }
    }

    fn finish(&mut self, reason: EndReason) {
        if self.ended.is_some() {
            return;
        }
        let ids: Vec<Pid> = self.participants.iter().map(|p| p.id).collect();
        for id in ids {
            self.remove(id, Gone::Ended);
        }
        self.host = None;
        self.hostless_until = None;
        self.ended = Some(reason);
        self.out.push_back(Output::Ended(reason));
    }
}

#[cfg(test)]
#[path = "room_tests.rs"]
mod tests;
