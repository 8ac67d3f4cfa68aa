//! Admission: what happens to an INVITE before there is a call. Draining, the concurrent-call
//! limit, the number's flow, the SDP offer and a free media port each refuse the call with
//! the status a phone or trunk understands; an admitted call has its dialog (ringing) and its
//! negotiated media, ready for the call core to answer. The switchboard gives each admitted
//! call its task.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span, warn};

use super::CallServices;
use super::start::{Pending, Signaling, Start};
use super::table::Admission;
use super::task::run_call;
use crate::flow::attributes::ContactData;
use crate::media::leg::LegParams;
use crate::sip::IncomingCall;
use crate::sip::sdp::{self, LocalMedia, LocalSrtp};

/// Takes new calls off the SIP side and gives each its task.
pub(crate) async fn switchboard(
    mut incoming: mpsc::Receiver<crate::sip::IncomingCall>,
    services: Arc<CallServices>,
) {
    while let Some(call) = incoming.recv().await {
        // Trunk and user name staff or carriers, never the patient.
        let span = info_span!(
            "call",
            id = %call.call_id,
            trunk = call.trunk.as_deref(),
            user = call.user.as_deref()
        );
        tokio::spawn(run(call, services.clone()).instrument(span));
    }
}

/// Admits one SIP call and runs it to its end.
async fn run(call: IncomingCall, svc: Arc<CallServices>) {
    let Some((admission, start)) = admit(call, &svc).await else {
        return;
    };
    run_call(&svc, admission, start).await;
}

/// Refuses the call (with the reason in the response and the metrics), or admits it: its
/// place in the table, and the call ready for its core (the dialog ringing, the negotiated
/// media it will answer with).
///
/// A refused call gives its place in the table (and any media port) back as soon as the
/// refusal is sent: `IncomingCall::reject` absorbs the caller's ACK in the background (up to
/// 32 s over UDP, RFC 3261 §17.2.1 Timer H), so a caller that never sends one (a scanner, a
/// flood) does not hold a call slot that long and crowd out every other caller.
pub(super) async fn admit(
    mut call: IncomingCall,
    svc: &CallServices,
) -> Option<(Admission<'_>, Start)> {
    call.trying().await;
    let retry = Some(svc.settings.retry_after_secs);
    if svc.draining.load(Ordering::Acquire) {
        svc.metrics.call_rejected("503");
        call.reject(503, retry, Some("shutting down".into())).await;
        return None;
    }
    let Some(admission) = svc.table.try_admit(svc.settings.max_calls) else {
        svc.metrics.call_rejected("503");
        info!("call refused: at the configured maximum of concurrent calls");
        call.reject(503, retry, Some("too many calls".into())).await;
        return None;
    };
    let Some(flow) = svc.flows.flow_for(&call.dialed) else {
        svc.metrics.call_rejected("404");
        info!("no contact flow for the dialed number and no flows.default");
        call.reject(404, None, Some("no contact flow for this number".into()))
            .await;
        return None;
    };
    let is_sdp = call
        .content_type
        .as_deref()
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/sdp"));
    if call.offer.is_empty() || !is_sdp {
        svc.metrics.call_rejected("488");
        let why = "Careline needs an SDP offer in the INVITE";
        call.reject(488, None, Some(why.into())).await;
        return None;
    }
    let remote_ip = call.remote.map(|a| a.ip()).unwrap_or(svc.sip.udp_addr.ip());
    let media_ip = svc.sip.media_address_for(remote_ip);
    let sockets = match svc.media.reserve(svc.sip.udp_addr.ip()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "no media port for the call");
            svc.metrics.call_rejected("503");
            call.reject(503, retry, Some("no media ports free".into()))
                .await;
            return None;
        }
    };
    let local = local_media(&svc.settings, media_ip, sockets.port, call.transport);
    let offer = String::from_utf8_lossy(&call.offer).into_owned();
    let (answer, negotiated) = match sdp::answer(&offer, &local) {
        Ok(ok) => ok,
        Err(e) => {
            info!(error = %e, "offer refused");
            let code = e.sip_status();
            svc.metrics
                .call_rejected(if code == 400 { "400" } else { "488" });
            call.reject(code, None, Some(e.to_string())).await;
            return None;
        }
    };
    let call_id = call.call_id.clone();
    let transport = call.transport;
    let contact = ContactData {
        contact_id: call_id.as_str().into(),
        customer_address: call.caller.clone(),
        system_address: call.dialed.clone(),
        ..ContactData::default()
    };
    let dialog = match call.accept_dialog() {
        Ok(d) => d,
        Err(e) => {
            warn!(error = %e, "could not create the dialog");
            return None;
        }
    };
    let _ = dialog.ring();
    let srtp = negotiated.srtp.as_ref().map(|k| k.suite.name());
    info!(codec = %negotiated.codec, telephone_event = negotiated.telephone_event.is_some(), transport, srtp, "call offered");
    let start = Start {
        call_id,
        flow,
        contact,
        signaling: Signaling::Sip(dialog),
        media: Pending::Rtp {
            sockets,
            params: LegParams::from(&negotiated),
            answer,
        },
        codec: negotiated.codec,
        local: Some(local),
        connecting: None,
        dial_timeout: None,
        outcome: None,
        agent: None,
    };
    Some((admission, start))
}

/// Careline's side of a SIP call's media (its answer, or its offer when it calls out): the
/// configured codecs with telephone-event, 20 ms, a fresh session id, and SRTP as
/// [`local_srtp`] allows over `transport`.
pub(super) fn local_media(
    settings: &super::CallSettings,
    address: std::net::IpAddr,
    rtp_port: u16,
    transport: &str,
) -> LocalMedia {
    LocalMedia {
        address,
        rtp_port,
        codecs: settings.codecs.clone(),
        telephone_event: true,
        ptime_ms: 20,
        session_id: rand::random::<u32>() as u64,
        session_version: 1,
        srtp: local_srtp(settings, transport),
    }
}

/// Careline's SRTP side of a SIP call's answer: none when `[rtp] srtp = "off"`; keys may be
/// taken only over TLS unless the operator allowed plain signalling. The leg's master key is
/// drawn here (the SDP code draws nothing).
fn local_srtp(settings: &super::CallSettings, transport: &str) -> Option<LocalSrtp> {
    use crate::config::SrtpMode;
    use crate::media::srtp::{MAX_MASTER_LEN, MasterKey};
    let required = match settings.srtp {
        SrtpMode::Off => return None,
        SrtpMode::Offer => false,
        SrtpMode::Require => true,
    };
    let mut bytes = [0u8; MAX_MASTER_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).ok()?;
    let key = MasterKey::new(&bytes)?;
    bytes.fill(0);
    Some(LocalSrtp {
        required,
        keys_allowed: transport == "tls" || settings.srtp_keys_without_tls,
        suites: settings.srtp_suites.clone(),
        key,
    })
}
