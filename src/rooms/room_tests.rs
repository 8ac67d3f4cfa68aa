use super::*;

fn t0() -> Instant {
    Instant::now()
}

fn knock(key: &str, role: Role) -> Knock {
    Knock {
        key: key.to_string(),
        label: key.to_string(),
        role,
        channel: Channel::Browser,
        admitted: false,
    }
}

fn outputs(room: &mut Room) -> Vec<Output> {
    std::iter::from_fn(|| room.poll_output()).collect()
}

fn presence(room: &Room, id: Pid) -> Option<Presence> {
    room.participant(id).map(|p| p.presence)
}

/// A room with its host in, outputs drained.
fn hosted(policy: Policy) -> (Room, Pid) {
    let mut room = Room::new(policy);
    let host = room.knock(knock("user:dr-a", Role::Clinician)).unwrap();
    assert_eq!(host, Entry::Joined(1));
    assert_eq!(outputs(&mut room), [Output::Join(1), Output::Host(1)]);
    (room, 1)
}

#[test]
fn the_first_clinician_hosts_and_a_patient_waits_until_let_in() {
    let (mut room, host) = hosted(Policy::default());
    assert_eq!(room.host(), Some(host));
    let patient = room.knock(knock("invite:p", Role::Patient)).unwrap();
    assert_eq!(patient, Entry::Waiting(2));
    assert_eq!(outputs(&mut room), [], "a waiting patient hears nobody");
    assert_eq!(presence(&room, 2), Some(Presence::Waiting));
    assert!(room.admit(2));
    assert_eq!(outputs(&mut room), [Output::Join(2)]);
    assert_eq!(presence(&room, 2), Some(Presence::Present));
    assert!(!room.admit(2), "only a waiting participant is let in");
    assert!(!room.admit(9), "nobody by that number");
}

#[test]
fn without_a_waiting_room_everyone_enters_at_once_and_a_patient_never_hosts() {
    let policy = Policy {
        waiting_room: false,
        ..Policy::default()
    };
    let mut room = Room::new(policy);
    assert_eq!(
        room.knock(knock("invite:p", Role::Patient)),
        Ok(Entry::Joined(1))
    );
    assert_eq!(outputs(&mut room), [Output::Join(1)]);
    assert_eq!(room.host(), None, "a patient does not run the visit");
    assert_eq!(
        room.knock(knock("user:dr-a", Role::Clinician)),
        Ok(Entry::Joined(2))
    );
    assert_eq!(outputs(&mut room), [Output::Join(2), Output::Host(2)]);
}

#[test]
fn someone_the_host_called_in_does_not_wait() {
    let (mut room, _) = hosted(Policy::default());
    let called = Knock {
        channel: Channel::Phone,
        admitted: true,
        ..knock("phone:1", Role::Patient)
    };
    assert_eq!(room.knock(called), Ok(Entry::Joined(2)));
    assert_eq!(outputs(&mut room), [Output::Join(2)]);
}

#[test]
fn a_turned_away_participant_is_out_and_may_not_knock_again() {
    let (mut room, _) = hosted(Policy::default());
    room.knock(knock("invite:x", Role::Guest)).unwrap();
    assert!(room.deny(2));
    assert_eq!(outputs(&mut room), [Output::Remove(2, Gone::Denied)]);
    assert_eq!(
        room.knock(knock("invite:x", Role::Guest)),
        Err(Refusal::Denied)
    );
    assert!(!room.deny(1), "the host is not waiting");
}

#[test]
fn the_limit_counts_everyone_who_holds_a_place() {
    let policy = Policy {
        max_participants: 3,
        ..Policy::default()
    };
    let (mut room, _) = hosted(policy);
    room.knock(knock("invite:p", Role::Patient)).unwrap(); // waiting
    room.knock(knock("invite:g", Role::Guest)).unwrap();
    assert!(room.admit(3));
    room.connection_lost(t0(), 3); // away, place kept
    assert_eq!(
        room.knock(knock("invite:h", Role::Guest)),
        Err(Refusal::Full)
    );
    assert_eq!(
        room.knock(knock("user:dr-b", Role::Clinician)),
        Err(Refusal::Full),
        "a clinician too: the limit is the room's"
    );
    assert_eq!(
        room.knock(knock("invite:g", Role::Guest)),
        Ok(Entry::Returned(3)),
        "someone away comes back to their own place"
    );
}

#[test]
fn the_same_person_again_takes_their_own_place_on_the_new_connection() {
    let (mut room, _) = hosted(Policy::default());
    assert_eq!(
        room.knock(knock("user:dr-a", Role::Clinician)),
        Ok(Entry::Returned(1)),
        "a reloaded page before the old connection was noticed gone"
    );
    assert_eq!(
        outputs(&mut room),
        [Output::Unjoin(1), Output::Join(1)],
        "the old leg leaves the audio, the new one joins"
    );
    assert_eq!(room.host(), Some(1), "still the host");
    room.knock(knock("invite:p", Role::Patient)).unwrap();
    assert_eq!(
        room.knock(knock("invite:p", Role::Patient)),
        Ok(Entry::Returned(2)),
        "still waiting, on the new connection"
    );
    assert_eq!(outputs(&mut room), []);
    assert_eq!(presence(&room, 2), Some(Presence::Waiting));
    assert_eq!(room.participants().len(), 2, "one place per person");
}

#[test]
fn a_dropped_participant_comes_back_within_the_grace_straight_into_the_room() {
    let now = t0();
    let (mut room, _) = hosted(Policy::default());
    room.knock(knock("invite:p", Role::Patient)).unwrap();
    room.admit(2);
    room.mute(2, true);
    outputs(&mut room);
    room.connection_lost(now, 2);
    assert_eq!(outputs(&mut room), [Output::Unjoin(2)]);
    assert_eq!(presence(&room, 2), Some(Presence::Away));
    assert_eq!(room.poll_timeout(), Some(now + Duration::from_secs(60)));
    room.handle_timeout(now + Duration::from_secs(59));
    let back = Knock {
        channel: Channel::Phone,
        ..knock("invite:p", Role::Patient)
    };
    assert_eq!(room.knock(back), Ok(Entry::Returned(2)));
    assert_eq!(
        outputs(&mut room),
        [Output::Join(2), Output::Mute(2, true)],
        "back in the room, still muted by the host"
    );
    assert_eq!(room.participant(2).unwrap().channel, Channel::Phone);
    assert_eq!(room.poll_timeout(), None);
}

#[test]
fn a_dropped_participant_past_the_grace_is_gone_and_must_wait_again() {
    let now = t0();
    let (mut room, _) = hosted(Policy::default());
    room.knock(knock("invite:p", Role::Patient)).unwrap();
    room.admit(2);
    room.connection_lost(now, 2);
    room.connection_lost(now + Duration::from_secs(30), 2); // reported twice: one grace
    outputs(&mut room);
    room.handle_timeout(now + Duration::from_secs(60));
    assert_eq!(outputs(&mut room), [Output::Remove(2, Gone::Lost)]);
    assert_eq!(
        room.knock(knock("invite:p", Role::Patient)),
        Ok(Entry::Waiting(3))
    );
}

#[test]
fn someone_who_dropped_from_the_waiting_room_waits_again_on_return() {
    let now = t0();
    let (mut room, _) = hosted(Policy::default());
    room.knock(knock("invite:p", Role::Patient)).unwrap();
    room.connection_lost(now, 2);
    assert_eq!(outputs(&mut room), [], "nothing to take out of the audio");
    assert_eq!(
        room.knock(knock("invite:p", Role::Patient)),
        Ok(Entry::Returned(2))
    );
    assert_eq!(outputs(&mut room), []);
    assert_eq!(presence(&room, 2), Some(Presence::Waiting));
    assert!(room.admit(2));
}

#[test]
fn the_host_leaving_hands_the_room_to_the_clinician_there_longest() {
    let now = t0();
    let (mut room, host) = hosted(Policy::default());
    room.knock(knock("invite:p", Role::Patient)).unwrap();
    room.admit(2);
    room.knock(knock("user:dr-b", Role::Clinician)).unwrap();
    room.knock(knock("user:dr-c", Role::Clinician)).unwrap();
    outputs(&mut room);
    room.leave(now, host);
    assert_eq!(
        outputs(&mut room),
        [Output::Remove(1, Gone::Left), Output::Host(3)]
    );
    assert_eq!(room.host(), Some(3));
    assert_eq!(room.ended(), None);
}

#[test]
fn the_host_leaving_ends_the_visit_when_so_configured() {
    let policy = Policy {
        host_leaves: HostLeaves::End,
        ..Policy::default()
    };
    let (mut room, host) = hosted(policy);
    room.knock(knock("user:dr-b", Role::Clinician)).unwrap();
    room.knock(knock("invite:p", Role::Patient)).unwrap();
    outputs(&mut room);
    room.leave(t0(), host);
    assert_eq!(
        outputs(&mut room),
        [
            Output::Remove(1, Gone::Left),
            Output::Remove(2, Gone::Ended),
            Output::Remove(3, Gone::Ended),
            Output::Ended(EndReason::HostLeft),
        ]
    );
    assert_eq!(
        room.knock(knock("invite:p", Role::Patient)),
        Err(Refusal::Ended)
    );
}

#[test]
fn patients_left_without_a_clinician_wait_one_grace_for_one_then_the_visit_ends() {
    let now = t0();
    let (mut room, host) = hosted(Policy::default());
    room.knock(knock("invite:p", Role::Patient)).unwrap();
    room.admit(2);
    outputs(&mut room);
    room.leave(now, host);
    assert_eq!(outputs(&mut room), [Output::Remove(1, Gone::Left)]);
    assert_eq!(room.host(), None);
    let deadline = now + Duration::from_secs(60);
    assert_eq!(room.poll_timeout(), Some(deadline));
    room.handle_timeout(deadline);
    assert_eq!(
        outputs(&mut room),
        [
            Output::Remove(2, Gone::Ended),
            Output::Ended(EndReason::NoHost)
        ]
    );
    assert_eq!(room.poll_timeout(), None);
}

#[test]
fn a_clinician_arriving_in_a_hostless_room_takes_it_over() {
    let now = t0();
    let (mut room, host) = hosted(Policy::default());
    room.knock(knock("invite:p", Role::Patient)).unwrap();
    room.admit(2);
    room.leave(now, host);
    outputs(&mut room);
    room.knock(knock("user:dr-b", Role::Clinician)).unwrap();
    assert_eq!(outputs(&mut room), [Output::Join(3), Output::Host(3)]);
    assert_eq!(
        room.poll_timeout(),
        None,
        "no deadline: the room is run again"
    );
    room.handle_timeout(now + Duration::from_secs(120));
    assert_eq!(room.ended(), None);
}

#[test]
fn an_empty_room_stays_open_for_the_host_to_come_back() {
    let now = t0();
    let (mut room, host) = hosted(Policy::default());
    room.leave(now, host);
    outputs(&mut room);
    room.handle_timeout(now + Duration::from_secs(3600));
    assert_eq!(room.ended(), None);
    assert_eq!(
        room.knock(knock("user:dr-a", Role::Clinician)),
        Ok(Entry::Joined(2))
    );
    assert_eq!(room.host(), Some(2));
}

#[test]
fn a_host_whose_connection_dropped_stays_host_through_the_grace() {
    let now = t0();
    let (mut room, host) = hosted(Policy::default());
    room.knock(knock("user:dr-b", Role::Clinician)).unwrap();
    outputs(&mut room);
    room.connection_lost(now, host);
    assert_eq!(outputs(&mut room), [Output::Unjoin(1)]);
    assert_eq!(room.host(), Some(host), "their tab may come back");
    assert_eq!(
        room.knock(knock("user:dr-a", Role::Clinician)),
        Ok(Entry::Returned(1))
    );
    assert_eq!(outputs(&mut room), [Output::Join(1)]);
    assert_eq!(room.host(), Some(host));
    room.connection_lost(now, host);
    room.handle_timeout(now + Duration::from_secs(60));
    assert_eq!(
        outputs(&mut room),
        [
            Output::Unjoin(1),
            Output::Remove(1, Gone::Lost),
            Output::Host(2)
        ]
    );
}

#[test]
fn the_host_mutes_hands_over_takes_out_and_ends() {
    let (mut room, host) = hosted(Policy::default());
    room.knock(knock("invite:p", Role::Patient)).unwrap();
    room.mute(2, true);
    assert_eq!(
        outputs(&mut room),
        [],
        "a waiting participant is heard by nobody"
    );
    room.admit(2);
    assert_eq!(
        outputs(&mut room),
        [Output::Join(2), Output::Mute(2, true)],
        "muted before being let in: muted once in"
    );
    assert!(room.mute(2, false));
    assert!(room.mute(2, false), "unmuting twice is one change");
    assert_eq!(outputs(&mut room), [Output::Mute(2, false)]);
    assert!(!room.mute(7, true));

    assert!(!room.hand_over(2), "a patient does not run the visit");
    room.knock(knock("user:dr-b", Role::Clinician)).unwrap();
    outputs(&mut room);
    assert!(room.hand_over(3));
    assert_eq!(outputs(&mut room), [Output::Host(3)]);
    assert!(!room.kick(3), "the host is not taken out");
    assert!(room.kick(host));
    assert_eq!(outputs(&mut room), [Output::Remove(1, Gone::Removed)]);

    room.end();
    assert_eq!(
        outputs(&mut room),
        [
            Output::Remove(2, Gone::Ended),
            Output::Remove(3, Gone::Ended),
            Output::Ended(EndReason::Host)
        ]
    );
    room.end();
    assert_eq!(outputs(&mut room), [], "it ends once");
    assert!(!room.mute(2, true));
    assert!(!room.admit(2));
    assert!(room.participants().is_empty());
}

#[derive(Debug, Clone)]
enum Step {
    Knock(u8, Role),
    Admit(u8),
    Deny(u8),
    Mute(u8, bool),
    Kick(u8),
    Leave(u8),
    Lost(u8),
    Wait(u16),
    HandOver(u8),
    End,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    let role = prop_oneof![
        Just(Role::Clinician),
        Just(Role::Patient),
        Just(Role::Guest)
    ];
    prop_oneof![
        4 => (0u8..6, role).prop_map(|(k, r)| Step::Knock(k, r)),
        3 => (1u8..12).prop_map(Step::Admit),
        1 => (1u8..12).prop_map(Step::Deny),
        1 => (1u8..12, any::<bool>()).prop_map(|(p, m)| Step::Mute(p, m)),
        1 => (1u8..12).prop_map(Step::Kick),
        2 => (1u8..12).prop_map(Step::Leave),
        2 => (1u8..12).prop_map(Step::Lost),
        2 => (0u16..90).prop_map(Step::Wait),
        1 => (1u8..12).prop_map(Step::HandOver),
        1 => Just(Step::End),
    ]
}

proptest::proptest! {
    /// Whatever happens, what the shell was told (who is in the audio, who is muted, who is
    /// out) agrees with the room's own view: only present participants are heard, the host
    /// is a clinician who holds a place, the limit holds, and an ended room is empty.
    #[test]
    fn what_the_shell_is_told_matches_the_room(
        steps in proptest::collection::vec(step(), 1..60),
        waiting_room in proptest::bool::ANY,
        end_on_leave in proptest::bool::ANY,
    ) {
        use std::collections::{HashMap, HashSet};
        let policy = Policy {
            waiting_room,
            max_participants: 4,
            rejoin_grace: Duration::from_secs(30),
            host_leaves: if end_on_leave { HostLeaves::End } else { HostLeaves::HandOver },
        };
        let mut room = Room::new(policy);
        let mut now = t0();
        // The shell's view.
        let mut legs: HashSet<Pid> = HashSet::new(); // participants with a leg
        let mut joined: HashSet<Pid> = HashSet::new();
        let mut muted: HashMap<Pid, bool> = HashMap::new();
        let mut ended = false;
        for s in steps {
            match s {
                Step::Knock(k, role) => {
                    // Keys fix the role: a key is one person.
                    let role = if k < 2 { Role::Clinician } else { role };
                    let role = if k >= 2 && role == Role::Clinician { Role::Guest } else { role };
                    if let Ok(e) = room.knock(knock(&format!("k{k}"), role)) {
                        legs.insert(e.pid());
                    }
                }
                Step::Admit(p) => { room.admit(p.into()); }
                Step::Deny(p) => { room.deny(p.into()); }
                Step::Mute(p, m) => { room.mute(p.into(), m); }
                Step::Kick(p) => { room.kick(p.into()); }
                Step::Leave(p) => room.leave(now, p.into()),
                Step::Lost(p) => room.connection_lost(now, p.into()),
                Step::Wait(s) => {
                    now += Duration::from_secs(s.into());
                    if room.poll_timeout().is_some_and(|t| t <= now) {
                        room.handle_timeout(now);
                    }
                }
                Step::HandOver(p) => { room.hand_over(p.into()); }
                Step::End => room.end(),
            }
            while let Some(o) = room.poll_output() {
                proptest::prop_assert!(!ended, "nothing after the end: {o:?}");
                match o {
                    Output::Join(p) => {
                        proptest::prop_assert!(legs.contains(&p));
                        proptest::prop_assert!(joined.insert(p), "joined twice: {p}");
                        muted.insert(p, false);
                    }
                    Output::Unjoin(p) => proptest::prop_assert!(joined.remove(&p)),
                    Output::Mute(p, m) => {
                        proptest::prop_assert!(joined.contains(&p));
                        muted.insert(p, m);
                    }
                    Output::Remove(p, _) => {
                        proptest::prop_assert!(legs.remove(&p), "removed twice: {p}");
                        joined.remove(&p);
                    }
                    Output::Host(p) => proptest::prop_assert!(joined.contains(&p)),
                    Output::Ended(_) => ended = true,
                }
            }
            let present: HashSet<Pid> = room
                .participants()
                .iter()
                .filter(|p| p.presence == Presence::Present)
                .map(|p| p.id)
                .collect();
            proptest::prop_assert_eq!(&present, &joined);
            let holding: HashSet<Pid> = room.participants().iter().map(|p| p.id).collect();
            proptest::prop_assert_eq!(&holding, &legs);
            proptest::prop_assert!(room.participants().len() <= 4);
            for p in room.participants() {
                if p.presence == Presence::Present {
                    proptest::prop_assert_eq!(muted.get(&p.id).copied(), Some(p.muted));
                }
            }
            if let Some(h) = room.host() {
                let host = room.participant(h);
                proptest::prop_assert!(host.is_some_and(|p| p.role == Role::Clinician
                    && p.presence != Presence::Waiting));
            }
            proptest::prop_assert_eq!(ended, room.ended().is_some());
            if ended {
                proptest::prop_assert!(room.participants().is_empty());
            }
        }
    }
}
