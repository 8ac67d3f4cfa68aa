//! Queued callbacks, the shell's side: a caller's flow asks for one (CreateCallbackContact),
//! it is kept ([`CallbackStore`], durable) and takes the caller's place in routing; when an
//! agent accepts it, Careline calls the patient through the trunk with the agent's browser
//! leg already on the line. Once the patient answers and the callback's flow (a greeting:
//! `[routing] callback_flow`, or the action's `ContactFlowId`) has run to its end, the two
//! are bridged. A call nobody answers puts the callback back in its place after its retry
//! delay (the agent free at once), until its attempts are spent.
//!
//! Routing's side of the same story is the ACD core's (`routing::acd`: `to_callback`,
//! `callback_failed`); the store's is `routing::callbacks`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{info, warn};

use super::CallServices;
use super::answer::{AgentMedia, AgentOffer, AnswerError, Taken};
use super::dial::{CallOutcome, DialError, OutboundCall};
use crate::flow::interpreter::CallbackRequest;
use crate::routing::callbacks::{AfterFailure, Callback, CallbackError, NewCallback};

/// After a call that could not even be sent (the trunk at its limit, no media port), the
/// callback is offered again after this, its attempt not counted.
const NOT_SENT_RETRY: Duration = Duration::from_secs(30);

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Keeps the callback `request` asked for from call `call_id`: in the database, then in
/// routing in the caller's place (`waiting_since`: when the caller entered its queue, if
/// they wait in it now). Returns why not, for the flow's error branch.
pub(super) async fn create(
    svc: Arc<CallServices>,
    call_id: String,
    request: CallbackRequest,
    waiting_since: Option<jiff::Timestamp>,
    patient: Option<String>,
) -> Result<(), String> {
    let Some(store) = svc.callbacks.clone() else {
        return Err("no database in this process to keep callbacks in".into());
    };
    let now = now_ms();
    let cb = NewCallback {
        id: format!("cb-{:032x}", rand::random::<u128>()),
        queue: request.queue.to_string(),
        number: request.number,
        priority: request.priority,
        since_ms: waiting_since.map_or(now, |t| t.as_millisecond()),
        not_before_ms: now + request.initial_delay.as_millis() as i64,
        max_attempts: request.max_attempts,
        retry_delay: request.retry_delay,
        flow: request.flow.map(|f| f.to_string()),
        origin_call: call_id.clone(),
        language: request.language,
        patient,
    };
    if let Err(e) = store.create(&cb, now).await {
        warn!(error = %e, "could not keep a queued callback");
        return Err(e.to_string());
    }
    let placed = svc.desk.place_callback(
        Some(&call_id),
        &cb.id,
        &cb.queue,
        cb.priority,
        cb.since_ms,
        cb.not_before_ms,
    );
    if let Err(e) = placed {
        warn!(error = %e, queue = %cb.queue, "routing refused a queued callback");
        if let Err(e) = store.discard(&cb.id).await {
            warn!(error = %e, callback = %cb.id, "could not discard a refused callback");
        }
        return Err(e.to_string());
    }
    svc.metrics.callback("created");
    info!(callback = %cb.id, queue = %cb.queue, "queued callback kept in the caller's place");
    Ok(())
}

/// At start: every callback not yet made goes back into routing in its place. Returns how
/// many.
pub async fn restore(svc: &Arc<CallServices>) -> Result<usize, CallbackError> {
    let Some(store) = &svc.callbacks else {
        return Ok(0);
    };
    let now = now_ms();
    let mut restored = 0;
    for cb in store.pending(now).await? {
        match svc.desk.place_callback(
            None,
            &cb.id,
            &cb.queue,
            cb.priority,
            cb.since_ms,
            cb.not_before_ms,
        ) {
            Ok(()) => {
                restored += 1;
                svc.metrics.callback("restored");
            }
            Err(e) => {
                // Its queue is no longer configured: nobody could take it.
                warn!(callback = %cb.id, queue = %cb.queue, error = %e,
                      "a queued callback could not be restored: given up");
                store.give_up(&cb.id, "unknown_queue", now).await?;
                svc.metrics.callback("given_up");
            }
        }
    }
    Ok(restored)
}

/// A callback's attempt, started: the store, the callback, its number and patient (PHI).
struct Started {
    store: crate::routing::callbacks::CallbackStore,
    cb: Callback,
    number: String,
    patient: Option<String>,
}

/// `agent` accepted queued callback `id`: one more attempt starts, or the reason why not
/// (routing has been told).
async fn start_attempt(
    svc: &Arc<CallServices>,
    agent: &str,
    id: &str,
) -> Result<Started, AnswerError> {
    let not_offered = || AnswerError::NotOffered(id.to_string());
    let Some(store) = svc.callbacks.clone() else {
        svc.desk.release_callback(agent, id);
        return Err(not_offered());
    };
    match store.start_attempt(id, now_ms()).await {
        Ok(Some(a)) => Ok(Started {
            store,
            cb: a.callback,
            number: a.number,
            patient: a.patient,
        }),
        Ok(None) => {
            svc.desk.release_callback(agent, id);
            Err(not_offered())
        }
        Err(e @ CallbackError::Sealed(_)) => {
            warn!(error = %e, "a queued callback cannot be made: given up");
            let _ = store.give_up(id, "sealed", now_ms()).await;
            svc.metrics.callback("given_up");
            svc.desk.release_callback(agent, id);
            Err(not_offered())
        }
        Err(e) => {
            warn!(error = %e, callback = id, "could not start a callback's attempt");
            back_in_place(svc, agent, &cb_unknown(id), now_ms() + 1000);
            Err(not_offered())
        }
    }
}

/// An attempt that never got to call (the agent's leg, the trunk at its limit): not
/// counted, the callback back in its place shortly.
async fn not_sent(
    svc: &Arc<CallServices>,
    agent: &str,
    s: &Started,
    e: AnswerError,
) -> AnswerError {
    let retry = now_ms() + NOT_SENT_RETRY.as_millis() as i64;
    if let Err(e) = s.store.undo_attempt(&s.cb.id, retry, now_ms()).await {
        warn!(error = %e, callback = %s.cb.id, "could not put a callback back");
    }
    back_in_place(svc, agent, &s.cb, retry);
    e
}

/// `agent` accepted queued callback `id` with a WebRTC `offer` from `remote`: their leg is
/// answered, and the patient is called with it on the line. The agent hears silence until
/// the patient has heard the greeting.
pub(super) async fn take(
    svc: &Arc<CallServices>,
    agent: &str,
    id: &str,
    offer: &str,
    remote: IpAddr,
) -> Result<Taken, AnswerError> {
    let started = start_attempt(svc, agent, id).await?;
    let callback = Some(started.cb.id.clone());
    let (leg, _opened, browser) =
        match super::answer::browser_leg(svc, agent, offer, remote, callback) {
            Ok(answered) => answered,
            Err(e) => return Err(not_sent(svc, agent, &started, e).await),
        };
    let call_id = call_patient(svc, agent, started, leg).await?;
    Ok(Taken {
        resource: browser.resource,
        answer: browser.answer,
        call_id,
    })
}

/// `agent` accepted queued callback `id` on their phone, whose leg (`sockets`, `media`) is
/// ready: the patient is called with it on the line. Returns the call's id; `released` is
/// told when the call lets the phone go.
pub(super) async fn take_on_phone(
    svc: &Arc<CallServices>,
    agent: &str,
    id: &str,
    sockets: crate::media::ports::RtpSockets,
    media: AgentMedia,
    released: oneshot::Sender<()>,
) -> Result<String, AnswerError> {
    let started = start_attempt(svc, agent, id).await?;
    let (accepted, _opened) = oneshot::channel();
    let leg = AgentOffer {
        sockets,
        media,
        session: format!("agent-{:032x}", rand::random::<u128>()),
        agent: agent.to_string(),
        callback: Some(started.cb.id.clone()),
        accepted,
        released: Some(released),
    };
    call_patient(svc, agent, started, leg).await
}

/// Calls the callback's patient with the agent's `leg` on the line; its outcome settles
/// the callback. Returns the call's id.
async fn call_patient(
    svc: &Arc<CallServices>,
    agent: &str,
    started: Started,
    leg: AgentOffer,
) -> Result<String, AnswerError> {
    let cb = &started.cb;
    let call = OutboundCall {
        number: started.number.clone(),
        trunk: svc.desk.callback_trunk.clone(),
        flow: Some(
            cb.flow
                .clone()
                .unwrap_or_else(|| svc.desk.callback_flow.clone()),
        ),
        attributes: cb
            .language
            .iter()
            .map(|l| ("language".to_string(), l.clone()))
            .collect(),
        call_id: None,
        queue: Some(cb.queue.clone()),
    };
    let placed = match super::dial::place_with(svc, call, Some(leg)).await {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, callback = %cb.id, "a callback's call could not be sent");
            let not_offered = AnswerError::NotOffered(cb.id.clone());
            let transient = matches!(
                e,
                DialError::AtCapacity
                    | DialError::TrunkBusy(_)
                    | DialError::NoMediaPort
                    | DialError::Draining
            );
            if transient {
                return Err(not_sent(svc, agent, &started, not_offered).await);
            }
            settle_failed(svc, &started.store, agent, cb, "not_sent").await;
            return Err(not_offered);
        }
    };
    info!(callback = %cb.id, call = %placed.call_id, attempt = cb.attempts,
          "calling a queued callback's patient, the agent on the line");
    let call_id = placed.call_id.clone();
    // The call is about the patient the caller was identified as: their record pops up for
    // the agent (the API links the agent to the call's patient as it answers).
    if let (Some(patient), Some(hooks)) = (&started.patient, &svc.hooks) {
        hooks.link_patient(&call_id, patient).await;
    }
    let (svc, agent) = (svc.clone(), agent.to_string());
    tokio::spawn(async move {
        let outcome = placed.outcome.await.unwrap_or_else(|_| CallOutcome {
            call_id: String::new(),
            cause: "error",
            answered: false,
            talk_time: Duration::ZERO,
            attributes: Default::default(),
        });
        if !outcome.answered
            && started.patient.is_some()
            && let Some(hooks) = &svc.hooks
        {
            // Never answered, the call had no end to close its link.
            hooks.unlink_patient(&outcome.call_id).await;
        }
        settle(&svc, &started.store, &agent, &started.cb, &outcome).await;
    });
    Ok(call_id)
}

/// A callback whose row could not be read: enough to put it back where routing had it.
fn cb_unknown(id: &str) -> Callback {
    Callback {
        id: id.to_string(),
        queue: String::new(),
        priority: Default::default(),
        since_ms: 0,
        not_before_ms: 0,
        attempts: 0,
        max_attempts: 1,
        retry_delay_secs: 0,
        flow: None,
        origin_call: String::new(),
        language: None,
        status: String::new(),
        last_cause: None,
    }
}

/// The agent is free and the callback back in its place, offerable from `retry_at_ms`.
fn back_in_place(svc: &Arc<CallServices>, agent: &str, cb: &Callback, retry_at_ms: i64) {
    if svc
        .desk
        .callback_failed(agent, &cb.id, retry_at_ms)
        .is_err()
        && !cb.queue.is_empty()
    {
        // The agent is no longer on it (signed out meanwhile): its place by its time.
        if let Err(e) = svc.desk.place_callback(
            None,
            &cb.id,
            &cb.queue,
            cb.priority,
            cb.since_ms,
            retry_at_ms,
        ) {
            warn!(error = %e, callback = %cb.id, "a callback could not be put back in its queue");
        }
    }
}

/// How the callback's call went decides the callback's fate.
async fn settle(
    svc: &Arc<CallServices>,
    store: &crate::routing::callbacks::CallbackStore,
    agent: &str,
    cb: &Callback,
    outcome: &CallOutcome,
) {
    if outcome.answered {
        info!(callback = %cb.id, "the callback reached the patient");
        if let Err(e) = store.reached(&cb.id, now_ms()).await {
            warn!(error = %e, callback = %cb.id, "could not mark a callback reached");
        }
        svc.metrics.callback("reached");
        // Bridged, the agent is wrapping up already; if the patient hung up before the
        // agent joined, the agent is free now.
        svc.desk.release_callback(agent, &cb.id);
        return;
    }
    settle_failed(svc, store, agent, cb, outcome.cause).await;
}

/// An attempt that did not reach the patient (`cause`): again after the retry delay, or
/// given up after the last.
async fn settle_failed(
    svc: &Arc<CallServices>,
    store: &crate::routing::callbacks::CallbackStore,
    agent: &str,
    cb: &Callback,
    cause: &str,
) {
    match store.attempt_failed(&cb.id, cause, now_ms()).await {
        Ok(AfterFailure::Retry { not_before_ms }) => {
            info!(callback = %cb.id, cause, attempt = cb.attempts,
                  "the callback's patient was not reached: trying again later");
            svc.metrics.callback("retry");
            back_in_place(svc, agent, cb, not_before_ms);
        }
        Ok(AfterFailure::GivenUp) => {
            warn!(callback = %cb.id, cause, attempts = cb.attempts,
                  "the callback's patient was not reached on the last attempt: given up");
            svc.metrics.callback("given_up");
            svc.desk.release_callback(agent, &cb.id);
        }
        Err(e) => {
            // The database is down: keep it live in routing all the same.
            warn!(error = %e, callback = %cb.id, "could not record a callback's attempt");
            back_in_place(
                svc,
                agent,
                cb,
                now_ms() + (cb.retry_delay_secs as i64) * 1000,
            );
        }
    }
}
