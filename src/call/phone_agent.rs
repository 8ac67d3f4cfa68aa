//! Phones as agents. A user who may answer calls (an agent, clinician or supervisor) and
//! registers a SIP phone (a desk phone, a softphone such as baresip) with their SIP secret is
//! at the desk while it is registered: available as soon as the phone registers (a desk phone
//! has no other way to say so), offline once it unregisters or its registration lapses. A
//! call routing offers them rings the phone: an INVITE to its registered contact (RFC 3261
//! §10), the queue's name as the caller (a desk phone's display shows no caller number, which
//! is PHI). Answering takes the call: the phone's RTP leg is bridged with the caller's
//! (payloads passed through when both speak the same G.711, transcoded otherwise). A refusal
//! (busy, decline) declines the offer (the agent is missed, as at the console); an offer
//! taken back (it rang out, the caller hung up) cancels the INVITE. Either side's hang-up ends
//! the other's: the phone's BYE is the agent hanging up; the caller's, or a transfer, sends
//! the phone a BYE.
//!
//! Routing, wrap-up and the call records see a phone agent as they see a browser agent: the
//! same desk, the same states. A console (`/agent`) may be open beside the phone.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, oneshot};
use tracing::{Instrument, info, info_span, warn};

use super::answer::{AgentMedia, AgentOffer};
use super::dial::RingOut;
use super::{CallCommand, CallServices};
use crate::media::leg::LegParams;
use crate::media::ports::RtpSockets;
use crate::routing::acd::{AgentState, Availability};
use crate::routing::desk::{Console, DeskEvent};
use crate::sip::outbound::{Dial, OutgoingCall};
use crate::sip::{CallSignal, sdp};

/// Whether a user may answer calls (their role allows `call.answer`); asked once per
/// registration.
pub type MayAnswer =
    Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// How often a phone agent's registration is looked at (a phone that stops refreshing is
/// not told by an un-REGISTER).
const CHECK_EVERY: Duration = Duration::from_secs(15);

/// Starts following phones' registrations: each user who may answer calls is at the desk
/// while their phone is registered.
pub fn start(svc: Arc<CallServices>, may_answer: MayAnswer) {
    let mut registrations = svc.sip.registrations();
    tokio::spawn(async move {
        let mut present: HashMap<String, oneshot::Sender<()>> = HashMap::new();
        loop {
            let r = match registrations.recv().await {
                Ok(r) => r,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            // Agents whose phone's registration lapsed have left by themselves.
            present.retain(|_, stop| !stop.is_closed());
            if !r.bound {
                if let Some(stop) = present.remove(&r.user) {
                    let _ = stop.send(());
                }
                continue;
            }
            if present.contains_key(&r.user) || !may_answer(r.user.clone()).await {
                continue;
            }
            let (stop, stopped) = oneshot::channel();
            present.insert(r.user.clone(), stop);
            let span = info_span!("phone_agent", agent = %r.user);
            tokio::spawn(at_the_desk(svc.clone(), r.user, stopped).instrument(span));
        }
    });
}

/// One phone agent, from registration to leaving.
async fn at_the_desk(svc: Arc<CallServices>, user: String, mut stop: oneshot::Receiver<()>) {
    let mut console = svc.desk.join(&user);
    if matches!(
        svc.desk.agent_state(&user),
        Some(AgentState::Offline) | None
    ) {
        let _ = svc.desk.set_availability(&user, Availability::Available);
    }
    info!("a phone agent is at the desk");
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.tick().await;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = check.tick() => {
                if svc.sip.contacts_of(&user).is_empty() {
                    break;
                }
            }
            event = console.events.recv() => match event {
                Some(DeskEvent::Offer { call_id, queue, .. }) => {
                    ring(&svc, &user, &call_id, &queue, &mut console).await;
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    info!("the phone agent left the desk (unregistered)");
    let _ = svc.desk.set_availability(&user, Availability::Offline);
}

/// Rings the agent's phone with the call `call_id` routing offers them, until it is
/// answered, refused, or the offer is taken back.
async fn ring(
    svc: &Arc<CallServices>,
    user: &str,
    call_id: &str,
    queue: &str,
    console: &mut Console,
) {
    let decline = || {
        let _ = svc.desk.decline(user, call_id);
    };
    let Some(contact) = svc.sip.contacts_of(user).into_iter().next() else {
        decline();
        return;
    };
    let Ok(sockets) = svc.media.reserve(svc.sip.udp_addr.ip()) else {
        warn!("no media port for the phone agent's leg");
        decline();
        return;
    };
    let address = svc.sip.media_address_for(svc.sip.udp_addr.ip());
    let local = super::admit::local_media(&svc.settings, address, sockets.port, "udp");
    let leg_id = format!("agent-{:032x}", rand::random::<u128>());
    let dialed = svc.sip.dial_contact(Dial {
        call_id: leg_id.clone(),
        proxy: contact,
        number: String::new(),
        caller_id: queue.to_string(),
        offer: sdp::offer(&local),
        credential: None,
    });
    let mut phone = match dialed {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "could not ring the agent's phone");
            decline();
            return;
        }
    };
    loop {
        tokio::select! {
            signal = phone.next_signal() => match signal {
                Some(CallSignal::Answered(answer)) => {
                    let answer = String::from_utf8_lossy(&answer).into_owned();
                    let negotiated = match sdp::read_answer(&answer, &local) {
                        Ok(n) => n,
                        Err(e) => {
                            warn!(error = %e, "the agent's phone answered with unusable SDP");
                            phone.hangup().await;
                            decline();
                            return;
                        }
                    };
                    let media = AgentMedia::Rtp {
                        params: LegParams::from(&negotiated),
                    };
                    take(svc, user, call_id, phone, (sockets, media, leg_id)).await;
                    return;
                }
                Some(CallSignal::Refused(code)) => {
                    info!(?code, "the agent's phone refused the call");
                    decline();
                    return;
                }
                None => {
                    decline();
                    return;
                }
                Some(_) => {}
            },
            event = console.events.recv() => match event {
                Some(DeskEvent::Withdrawn { call_id: gone, .. }) if gone == call_id => {
                    phone.hangup().await;
                    return;
                }
                None => {
                    phone.hangup().await;
                    return;
                }
                _ => {}
            },
        }
    }
}

/// The agent answered on their phone: the call is theirs, the phone's leg (`sockets`,
/// `media`, its id) joins it, and the two stay together until either hangs up. A queued
/// callback is called now, the phone on the line.
async fn take(
    svc: &Arc<CallServices>,
    user: &str,
    call_id: &str,
    phone: OutgoingCall,
    (sockets, media, leg_id): (RtpSockets, AgentMedia, String),
) {
    let Ok(answered) = svc.desk.accept(user, call_id) else {
        // Taken back as the phone answered.
        phone.hangup().await;
        return;
    };
    let (released, let_go) = oneshot::channel();
    let joined = if answered.callback {
        match super::callback::take_on_phone(svc, user, call_id, sockets, media, released).await {
            Ok(placed) => placed,
            Err(e) => {
                info!(error = %e, "the callback could not be made");
                phone.hangup().await;
                return;
            }
        }
    } else {
        if !svc.flows.queues.claim(call_id) {
            svc.desk.released(user);
            phone.hangup().await;
            return;
        }
        let (accepted, taken) = oneshot::channel();
        let offer = AgentOffer {
            sockets,
            media,
            session: leg_id,
            agent: user.to_string(),
            callback: None,
            accepted,
            released: Some(released),
        };
        let handed = svc.table.send(call_id, CallCommand::Agent(Box::new(offer)));
        if !handed || !taken.await.unwrap_or(false) {
            svc.desk.released(user);
            phone.hangup().await;
            return;
        }
        call_id.to_string()
    };
    info!(call = %joined, "a phone agent answered");
    hold_line(svc, &joined, phone, let_go, || CallCommand::AgentHangup).await;
}

/// A phone joined to call `call_id` as its agent's leg, until either side hangs up: the
/// call letting the phone go (`let_go`) hangs the phone up; the phone's BYE is the agent
/// hanging up.
async fn hold_line(
    svc: &Arc<CallServices>,
    call_id: &str,
    mut phone: OutgoingCall,
    let_go: oneshot::Receiver<()>,
    ended: impl Fn() -> CallCommand,
) {
    tokio::select! {
        _ = let_go => phone.hangup().await,
        // A callback's call may still be ringing: not yet in the table.
        _ = until_ended(&mut phone) => {
            let _ = svc.table.send(call_id, ended()) || svc.placed.send(call_id, ended());
        }
    }
}

/// What an outside number is rung for, by an agent on a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ring {
    /// A blind transfer: answered, it takes the agent's place.
    Transfer,
    /// A consultation (warm transfer): answered, it joins the agent while the caller is on
    /// hold ([`super::consult`]).
    Consult,
}

/// Follows an outside number an agent transferred call `call_id` to: answered, its leg joins
/// the call as the agent's did ([`CallCommand::TransferAnswered`]) until either side hangs
/// up; busy, refused or ringing past the trunk's `ring_timeout`, the call hears of it
/// ([`CallCommand::TransferFailed`]) and puts the caller back in their queue. For a
/// consultation the same with [`CallCommand::ConsultAnswered`], `ConsultFailed` and
/// `ConsultEnded`.
pub(super) async fn ring_transfer(
    svc: Arc<CallServices>,
    call_id: String,
    ring: RingOut,
    why: Ring,
) {
    let RingOut {
        mut phone,
        sockets,
        local,
        ring_timeout,
        ..
    } = ring;
    let answered = tokio::time::timeout(ring_timeout, async {
        loop {
            match phone.next_signal().await {
                Some(CallSignal::Answered(answer)) => return Ok(answer),
                Some(CallSignal::Refused(code)) => return Err(crate::call::core::dial_cause(code)),
                None => return Err("unreachable"),
                Some(_) => {}
            }
        }
    })
    .await;
    let failed = |cause| {
        let command = match why {
            Ring::Transfer => CallCommand::TransferFailed(cause),
            Ring::Consult => CallCommand::ConsultFailed(cause),
        };
        svc.table.send(&call_id, command)
    };
    let answer = match answered {
        Ok(Ok(answer)) => answer,
        Ok(Err(cause)) => {
            failed(cause);
            return;
        }
        Err(_) => {
            phone.hangup().await;
            failed("no_answer");
            return;
        }
    };
    let negotiated = match sdp::read_answer(&String::from_utf8_lossy(&answer), &local) {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "the outside number answered with unusable SDP");
            phone.hangup().await;
            failed("bad_answer");
            return;
        }
    };
    let (accepted, taken) = oneshot::channel();
    let (released, let_go) = oneshot::channel();
    let leg = AgentOffer {
        sockets,
        media: AgentMedia::Rtp {
            params: LegParams::from(&negotiated),
        },
        session: format!("xfer-{:032x}", rand::random::<u128>()),

        // Nobody at the desk.
        agent: String::new(),
        callback: None,
        accepted,
        released: Some(released),
    };
    let session = leg.session.clone();
    let command = match why {
        Ring::Transfer => CallCommand::TransferAnswered(Box::new(leg)),
        Ring::Consult => CallCommand::ConsultAnswered(Box::new(leg)),
    };
    if !svc.table.send(&call_id, command) || !taken.await.unwrap_or(false) {
        phone.hangup().await;
        return;
    }
    info!(call = %call_id, ?why, "the outside number answered");
    let ended = || match why {
        Ring::Transfer => CallCommand::AgentHangup,
        Ring::Consult => CallCommand::ConsultEnded(session.clone()),
    };
    hold_line(&svc, &call_id, phone, let_go, ended).await;
}

/// Until the phone's dialog ends; a re-INVITE (the phone's hold key) is refused, the call
/// going on as it was.
pub(crate) async fn until_ended(phone: &mut OutgoingCall) {
    while let Some(signal) = phone.next_signal().await {
        match signal {
            CallSignal::Ended(_) => return,
            CallSignal::Offer { reply, .. } => reply.respond(488, None).await,
            CallSignal::Info { reply, .. } => reply.respond(200, None).await,
            _ => {}
        }
    }
}
