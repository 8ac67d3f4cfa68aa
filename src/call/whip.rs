//! Calls from browsers by WHIP (RFC 9725): a browser's SDP offer in, a call out that runs a
//! contact flow as a phone call does, with the same call core, media leg, recording and
//! limits. The HTTP side (`api::whip`) hands the offer here and answers with what comes back.
//!
//! Admission is the phone's: draining and the concurrent-call limit refuse a browser as they
//! refuse a phone, a number maps to its flow (or a flow is named), and a media port is
//! reserved. The answer is made before the call task starts its flow, so the browser has it
//! in the HTTP response; the flow starts when the browser's media is up (ICE and DTLS done),
//! as a phone's starts at its ACK. A browser that never gets there is hung up after
//! `[webrtc] connect_timeout_secs`.
//!
//! A caller's page that reloads mid-call (or loses its network for a moment) loses its peer
//! connection; the call waits `[webrtc] reconnect_grace_secs` for it, and the reloaded page
//! sends a new offer to its session (`POST SESSION/reconnect`), which [`reconnect`] answers
//! with a new peer connection on the same media leg: the flow, the queue place, the agent
//! and the recording go on. The session URL is the credential, as for `DELETE`, and the new
//! offer must come from the address the call came from.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::oneshot;
use tracing::{Instrument, info, info_span};

use super::core::{CallCore, Input, Phase};
use super::start::{Pending, Signaling, Start};
use super::task::{Shell, now, run_call};
use super::{CallCommand, CallServices};
use crate::flow::attributes::ContactData;
use crate::media::codec::Codec;
use crate::media::engine::{LegHandle, LegIds};
use crate::media::webrtc::{WebRtcError, WebRtcTransport};

/// Which flow a browser call runs.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// A flow by name (`?flow=`).
    pub flow: Option<String>,
    /// A number, mapped as a dialed number is (`?to=`); neither: the default flow.
    pub to: Option<String>,
}

/// A browser call that was admitted: its WHIP resource and the SDP answer.
#[derive(Debug)]
pub struct Placed {
    /// The session's id in its resource URL (128 random bits, hex): knowing it is what lets
    /// the browser hang up (RFC 9725 §4.3), so it is never logged.
    pub resource: String,
    pub answer: String,
}

/// Why a browser call was not placed; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum WhipError {
    #[error("Careline is shutting down")]
    Draining,
    #[error("at the configured maximum of concurrent calls")]
    Busy,
    #[error("no contact flow is named `{0}`")]
    UnknownFlow(String),
    #[error("no contact flow for this number and no flows.default")]
    NoFlow,
    #[error("no media port free")]
    NoPorts,
    #[error("too many browser calls from this address are still connecting")]
    TooManyConnecting,
    #[error(transparent)]
    Offer(#[from] WebRtcError),
    #[error("the call could not be started")]
    Internal,
}

/// A browser's leg (a caller's or an agent's), as a reconnect needs it: the address the
/// browser came from, the media socket's address (the new connection's candidate) and the
/// SSRC the leg sends with.
pub struct Browser {
    source: IpAddr,
    local: SocketAddr,
    ssrc: u32,
    reconnects: u32,
}

impl Browser {
    pub(super) fn new(source: IpAddr, local: SocketAddr, ssrc: u32) -> Browser {
        Browser {
            source,
            local,
            ssrc,
            reconnects: 0,
        }
    }

    /// Answers the reconnecting browser's `offer` (from `source`) with a new peer connection
    /// for `leg`: same socket, same SSRC, and `codec` (the leg's) first, so nothing changes
    /// for a bridge or a recording when the browser offers it again; `codec` becomes what
    /// was agreed. The leg carries on through the new connection once it is up.
    pub(super) fn reconnect(
        &mut self,
        svc: &CallServices,
        leg: &LegHandle,
        codec: &mut Codec,
        offer: &str,
        source: IpAddr,
    ) -> Result<String, ReconnectRefused> {
        if self.source != source {
            return Err(ReconnectRefused::OtherAddress);
        }
        if self.reconnects >= MAX_RECONNECTS {
            return Err(ReconnectRefused::TooMany);
        }
        let mut preference = vec![*codec];
        preference.extend(svc.settings.codecs.iter().filter(|&c| c != codec));
        let answered = WebRtcTransport::answer(
            offer,
            self.local,
            Some(svc.sip.media_address_for(source)),
            &preference,
            self.ssrc,
            Instant::now(),
        )?;
        self.reconnects += 1;
        *codec = answered.params.codec;
        leg.reconnect(answered.transport, answered.params);
        Ok(answered.answer)
    }
}

/// The most times one call may reconnect: a page that reloads in a loop calls again.
pub const MAX_RECONNECTS: u32 = 10;

/// Why a browser's reconnect was refused; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ReconnectRefused {
    #[error("no such call (it may have ended): call again")]
    Gone,
    #[error("the call has not connected yet: finish connecting, or call again")]
    NotConnected,
    #[error("a call reconnects only from the address it came from: call again")]
    OtherAddress,
    #[error("this call has reconnected {MAX_RECONNECTS} times already: call again")]
    TooMany,
    #[error(transparent)]
    Offer(#[from] WebRtcError),
}

/// A browser caller is back (`POST SESSION/reconnect`): `offer` is its new peer
/// connection's SDP offer, from `source`. Answers the SDP answer; the call's leg carries on
/// through the new connection once it is up.
pub async fn reconnect(
    svc: &CallServices,
    resource: &str,
    offer: String,
    source: IpAddr,
) -> Result<String, ReconnectRefused> {
    let (reply, answer) = oneshot::channel();
    let command = CallCommand::Reconnect {
        offer,
        source,
        reply,
    };
    if !svc.table.send(&call_id_of(resource), command) {
        return Err(ReconnectRefused::Gone);
    }
    answer.await.unwrap_or(Err(ReconnectRefused::Gone))
}

impl Shell {
    /// Answers a reconnecting browser's offer with a new peer connection for the caller's
    /// leg (same socket, same SSRC; the call's codec first, so nothing changes for a bridge
    /// or a recording when the browser offers it again). The old connection is gone: the
    /// core waits for the new one as for a lost one.
    pub(super) fn reconnect(
        &mut self,
        core: &mut CallCore,
        offer: &str,
        source: IpAddr,
    ) -> Result<String, ReconnectRefused> {
        let result = self.answer_reconnect(core, offer, source);
        match &result {
            Ok(_) => {
                info!("the caller reconnected with a new connection");
                self.svc.metrics.browser_connection("reconnected");
                core.handle(Input::ConnectionLost, now());
            }
            Err(e) => {
                info!(why = %e, "a reconnect was refused");
                self.svc.metrics.browser_connection("refused");
            }
        }
        result
    }

    fn answer_reconnect(
        &mut self,
        core: &CallCore,
        offer: &str,
        source: IpAddr,
    ) -> Result<String, ReconnectRefused> {
        let Signaling::Whip(browser) = &mut self.signaling else {
            return Err(ReconnectRefused::Gone);
        };
        let Some(leg) = &self.leg else {
            return Err(ReconnectRefused::NotConnected);
        };
        if matches!(core.phase(), Phase::Answering | Phase::Ringing) {
            return Err(ReconnectRefused::NotConnected);
        }
        browser.reconnect(&self.svc, leg, &mut self.codec, offer, source)
    }
}

/// A browser's offer answered on a fresh media port pair: what a browser leg (a caller, an
/// agent, a supervisor, a room participant) is opened with.
pub(crate) struct BrowserMedia {
    pub sockets: crate::media::ports::RtpSockets,
    /// The port pair's RTP address (a reconnect answers on it again).
    pub local: SocketAddr,
    pub ids: LegIds,
    pub answered: crate::media::webrtc::Answered,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum BrowserMediaError {
    #[error("no media port free")]
    NoPorts,
    #[error(transparent)]
    Offer(#[from] WebRtcError),
}

/// Answers `offer` (from a browser at `remote`) on a fresh port pair with the configured
/// codecs, advertising the address that browser can reach.
pub(crate) fn answer_browser(
    svc: &CallServices,
    offer: &str,
    remote: IpAddr,
) -> Result<BrowserMedia, BrowserMediaError> {
    let sockets = svc
        .media
        .reserve(svc.sip.udp_addr.ip())
        .map_err(|_| BrowserMediaError::NoPorts)?;
    let local = sockets
        .rtp
        .local_addr()
        .map_err(|_| BrowserMediaError::NoPorts)?;
    let ids = LegIds::random();
    let answered = WebRtcTransport::answer(
        offer,
        local,
        Some(svc.sip.media_address_for(remote)),
        &svc.settings.codecs,
        ids.ssrc,
        Instant::now(),
    )?;
    Ok(BrowserMedia {
        sockets,
        local,
        ids,
        answered,
    })
}

/// Browser calls still connecting (answered; ICE and DTLS not done), counted per source
/// address, so that one client cannot fill the call table with calls that never connect.
#[derive(Debug, Default)]
pub struct Connecting {
    by_source: dashmap::DashMap<IpAddr, usize>,
}

/// One connecting browser call's place in [`Connecting`]; dropped when it connects or ends.
pub struct ConnectingTicket {
    services: Arc<CallServices>,
    source: IpAddr,
}

impl Connecting {
    fn enter(&self, source: IpAddr, max: usize) -> bool {
        let mut n = self.by_source.entry(source).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn leave(&self, source: IpAddr) {
        self.by_source.remove_if_mut(&source, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }

    /// How many browser calls from `source` are connecting now.
    pub fn from(&self, source: IpAddr) -> usize {
        self.by_source.get(&source).map_or(0, |n| *n)
    }
}

impl Drop for ConnectingTicket {
    fn drop(&mut self) {
        self.services.connecting.leave(self.source);
    }
}

/// The call id of a WHIP session: the resource id is the secret, so the call id (which is
/// logged and stored) is derived from half of it and reveals nothing of the other half.
pub fn call_id_of(resource: &str) -> String {
    format!("whip-{}", resource.get(..16).unwrap_or(resource))
}

/// Answers a browser's offer and starts its call; returns once the answer is made (or the
/// call refused). `remote` is the browser's address as the HTTP side saw it: the leg's
/// candidate is the local address that reaches it (or `[sip] public_address`).
pub async fn place(
    svc: Arc<CallServices>,
    offer: String,
    target: Target,
    remote: IpAddr,
) -> Result<Placed, WhipError> {
    let resource = format!("{:032x}", rand::random::<u128>());
    let call_id = call_id_of(&resource);
    let (tx, rx) = oneshot::channel();
    let span = info_span!("call", id = %call_id, transport = "webrtc");
    tokio::spawn(
        async move {
            if !svc
                .connecting
                .enter(remote, svc.settings.webrtc_connecting_per_source)
            {
                svc.metrics.call_rejected("429");
                let _ = tx.send(Err(WhipError::TooManyConnecting));
                return;
            }
            let ticket = ConnectingTicket {
                services: svc.clone(),
                source: remote,
            };
            let admitted = admit(&svc, &offer, &target, remote, &call_id);
            let (admission, mut start, answer) = match admitted {
                Ok(a) => a,
                Err(e) => {
                    info!(error = %e, "browser call refused");
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            start.connecting = Some(ticket);
            if tx.send(Ok(Placed { resource, answer })).is_err() {
                // The HTTP request went away before its answer: nobody will connect.
                return;
            }
            run_call(&svc, admission, start).await;
        }
        .instrument(span),
    );
    rx.await.unwrap_or(Err(WhipError::Internal))
}

type Admitted<'a> = (super::table::Admission<'a>, Start, String);

fn admit<'a>(
    svc: &'a CallServices,
    offer: &str,
    target: &Target,
    remote: IpAddr,
    call_id: &str,
) -> Result<Admitted<'a>, WhipError> {
    if svc.draining.load(Ordering::Acquire) {
        svc.metrics.call_rejected("503");
        return Err(WhipError::Draining);
    }
    let Some(admission) = svc.table.try_admit(svc.settings.max_calls) else {
        svc.metrics.call_rejected("503");
        return Err(WhipError::Busy);
    };
    let flow = match (&target.flow, &target.to) {
        (Some(name), _) => svc
            .flows
            .env
            .catalog
            .get(name)
            .cloned()
            .ok_or_else(|| WhipError::UnknownFlow(name.clone()))?,
        (None, to) => svc
            .flows
            .flow_for(to.as_deref().unwrap_or(""))
            .ok_or(WhipError::NoFlow)?,
    };
    let BrowserMedia {
        sockets,
        local,
        ids,
        answered,
    } = answer_browser(svc, offer, remote).map_err(|e| match e {
        BrowserMediaError::NoPorts => WhipError::NoPorts,
        BrowserMediaError::Offer(e) => {
            svc.metrics.call_rejected("400");
            WhipError::from(e)
        }
    })?;
    info!(
        codec = %answered.params.codec,
        telephone_event = answered.params.telephone_event.is_some(),
        "browser call offered"
    );
    let contact = ContactData {
        contact_id: call_id.into(),
        // A browser has no calling number; flows see an empty one, as for a withheld number.
        customer_address: String::new(),
        system_address: target.to.clone().unwrap_or_default(),
        ..ContactData::default()
    };
    let codec = answered.params.codec;
    let start = Start {
        call_id: call_id.to_string(),
        flow,
        contact,
        signaling: Signaling::Whip(Browser::new(remote, local, ids.ssrc)),
        media: Pending::WebRtc {
            sockets,
            peer: Box::new(answered.transport),
            params: answered.params,
            ids,
        },
        codec,
        local: None,
        connecting: None,
        dial_timeout: None,
        outcome: None,
        agent: None,
    };
    Ok((admission, start, answered.answer))
}
