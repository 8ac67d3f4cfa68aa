//! A phone caller into a telehealth room by the visit PIN their invitation gave them: the
//! flow's `careline:room-join` built-in (an InvokeLambdaFunction step with parameter `pin`,
//! [`crate::flow::lambda::ROOM_JOIN`]). Rooms live above calls (`rooms`), so the call asks
//! through this seam, which the server fills once the rooms are up.
//!
//! The call hands the room its caller's media leg and keeps the SIP dialog: the room mixes
//! the leg in its conference (its waiting room first), and the two ends meet through a
//! [`Seat`]: the room lets the caller go (removed, the visit over) and the call hangs up; the
//! caller hangs up and the room hears they left. A PIN that opens nothing hands the leg back
//! untouched, so the flow can say why and ask again.

use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::media::codec::Codec;
use crate::media::engine::LegHandle;

/// What the call hands a room: the caller's leg, ready to join its conference.
pub struct PhoneGuest {
    pub leg: LegHandle,
    pub codec: Codec,
    /// The call (for logs and the audit trail; names nobody).
    pub call_id: String,
}

/// A phone caller's place in a room, held by their call.
pub struct Seat {
    /// Fired (or dropped) when the room lets the caller go: the call hangs up.
    pub out: oneshot::Receiver<()>,
    /// Dropped when the call ends: the room takes the caller out.
    pub leave: oneshot::Sender<()>,
}

/// Why a PIN took nobody in: `reason` is what the flow is told (`unknown`, `expired`,
/// `over`, `full`, `refused`, `unavailable`); `guest` is the leg handed back, or None when
/// the room took it and then turned the caller away (a full room, a caller the host had
/// denied): that call hangs up.
pub struct Refused {
    pub reason: &'static str,
    pub guest: Option<PhoneGuest>,
}

/// Rooms' side of the seam (`rooms`, through the API layer's door).
pub trait RoomDoor: Send + Sync {
    /// Takes `guest` into the room the visit PIN `pin` opens.
    fn enter(
        self: std::sync::Arc<Self>,
        pin: String,
        guest: PhoneGuest,
    ) -> BoxFuture<'static, Result<Seat, Refused>>;
}

impl super::task::Shell {
    /// The flow's `careline:room-join` with `event` (its `pin` parameter): the caller's leg
    /// goes to the room the PIN opens, off the loop ([`super::task::Done::Room`]). Without
    /// rooms, a leg or a PIN, the flow hears the function failed or found nothing.
    pub(super) fn join_room(
        &mut self,
        core: &mut super::core::CallCore,
        id: super::core::RequestId,
        event: &serde_json::Value,
    ) {
        use super::core::Input;
        use super::task::{Done, now};
        let pin = event
            .pointer("/Details/Parameters/pin")
            .and_then(|p| p.as_str())
            .unwrap_or_default()
            .trim()
            .to_string();
        let door = self.svc.room_door.get().cloned();
        let (Some(door), Some(leg)) = (door, self.leg.take()) else {
            let failed = Err("no telehealth rooms in this process".to_string());
            core.handle(Input::Invoked(id, failed), now());
            return;
        };
        if pin.is_empty() || pin.len() > 32 || !pin.bytes().all(|b| b.is_ascii_digit()) {
            self.leg = Some(leg);
            core.handle(Input::Invoked(id, Ok(not_joined("unknown"))), now());
            return;
        }
        // Whatever the flow played stops: the caller is about to hear the room.
        leg.command(crate::media::leg::LegCommand::Stop);
        let guest = PhoneGuest {
            leg,
            codec: self.codec,
            call_id: self.call_id.clone(),
        };
        self.spawn(async move { Done::Room(id, door.enter(pin, guest).await) });
    }

    /// What a room join came to: in (the flow is over), or the leg back and the flow told
    /// why; a room that took the leg and turned the caller away ends the call.
    pub(super) fn room_joined(
        &mut self,
        core: &mut super::core::CallCore,
        id: super::core::RequestId,
        result: Result<Seat, Refused>,
    ) -> Option<super::core::Input> {
        use super::core::{Input, Phase};
        match result {
            Ok(seat) => {
                core.handle(Input::InRoom(id), super::task::now());
                if core.phase() == Phase::InRoom {
                    tracing::info!("the caller keyed a visit PIN and is in the room");
                    self.seat = Some(seat);
                    None
                } else {
                    // The flow gave up waiting meanwhile: the room has the leg, so the call
                    // cannot go on with its flow.
                    Some(Input::Hangup("room_join_late"))
                }
            }
            Err(Refused {
                reason,
                guest: Some(guest),
            }) => {
                tracing::info!(reason, "a visit PIN took the caller nowhere");
                self.leg = Some(guest.leg);
                Some(Input::Invoked(id, Ok(not_joined(reason))))
            }
            Err(Refused {
                reason,
                guest: None,
            }) => {
                tracing::info!(reason, "the room turned the caller away");
                Some(Input::Hangup("room_refused"))
            }
        }
    }
}

/// The function's answer when nobody was taken in (a STRING_MAP, as Lambdas answer).
fn not_joined(reason: &str) -> serde_json::Value {
    serde_json::json!({"room_joined": "false", "reason": reason})
}
