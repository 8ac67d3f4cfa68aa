//! Careline as the caller (UAC, RFC 3261 §13.2): an INVITE through a trunk to a patient's
//! phone, its progress (ringing, the answer or the refusal), CANCEL while it rings and BYE
//! once answered. The dialog that follows an answer carries the same in-dialog signals as an
//! incoming call's, so the call layer above treats both alike.

use std::sync::Arc;

use rsipstack::dialog::DialogId;
use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::{InviteAsyncResult, InviteOption};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, StatusCodeKind, Uri};
use rsipstack::transport::SipAddr;

use super::{CallSignal, EndReason, SipError, SipServer, in_dialog};

/// One call to place.
#[derive(Clone)]
pub struct Dial {
    /// The Call-ID the INVITE carries (also Careline's call id).
    pub call_id: String,
    /// Where the INVITE goes: the trunk's `proxy`, `sip:HOST[:PORT][;transport=tcp|tls]`.
    pub proxy: String,
    /// The number called: the Request-URI's and To's user part. PHI: never logged.
    pub number: String,
    /// The number presented to the callee (From's user part).
    pub caller_id: String,
    /// Careline's SDP offer.
    pub offer: String,
    /// Digest credentials for a trunk that challenges (RFC 3261 §22.2).
    pub credential: Option<(String, String)>,
}

impl std::fmt::Debug for Dial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dial")
            .field("call_id", &self.call_id)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

/// Checks a trunk's proxy address at load: `sip:` or `sips:`, a host, no user part.
pub fn check_proxy(proxy: &str) -> Result<(), String> {
    let scheme = proxy.split(':').next().unwrap_or_default();
    if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
        return Err("must start sip: or sips:".into());
    }
    let uri = Uri::try_from(proxy).map_err(|e| format!("not a SIP URI ({e})"))?;
    if uri.auth.is_some() {
        return Err("names a user; give only the host, port and transport".into());
    }
    SipAddr::try_from(&uri).map_err(|e| format!("not an address Careline can send to ({e})"))?;
    Ok(())
}

/// The Request-URI for `number` at `proxy` (its host, port and parameters).
fn target(proxy: &str, number: &str) -> Result<Uri, SipError> {
    let (scheme, rest) = proxy
        .split_once(':')
        .ok_or_else(|| SipError::Stack(format!("trunk proxy {proxy} is not a SIP URI")))?;
    Uri::try_from(format!("{scheme}:{number}@{rest}").as_str())
        .map_err(|e| SipError::Stack(format!("cannot call through {proxy}: {e}")))
}

impl SipServer {
    /// Sends the INVITE. The returned call reports its progress through
    /// [`OutgoingCall::next_signal`]: [`CallSignal::Ringing`], then [`CallSignal::Answered`] or
    /// [`CallSignal::Refused`], and once answered the dialog's own signals.
    pub fn dial(&self, dial: Dial) -> Result<OutgoingCall, SipError> {
        let proxy = Uri::try_from(dial.proxy.as_str())
            .map_err(|e| SipError::Stack(format!("trunk proxy {}: {e}", dial.proxy)))?;
        let destination = SipAddr::try_from(&proxy)?;
        let callee = target(&dial.proxy, &dial.number)?;
        self.invite(dial, callee, destination)
    }

    /// Rings a registered phone at its contact URI (`Dial::proxy`; `Dial::number` unused):
    /// the INVITE's Request-URI is the contact itself (RFC 3261 §10.2.1's binding), sent to
    /// the contact's address.
    pub fn dial_contact(&self, dial: Dial) -> Result<OutgoingCall, SipError> {
        let callee = Uri::try_from(dial.proxy.as_str())
            .map_err(|e| SipError::Stack(format!("contact {}: {e}", dial.proxy)))?;
        let destination = SipAddr::try_from(&callee)?;
        self.invite(dial, callee, destination)
    }

    fn invite(
        &self,
        dial: Dial,
        callee: Uri,
        destination: SipAddr,
    ) -> Result<OutgoingCall, SipError> {
        let local = self.public_address.unwrap_or(self.udp_addr.ip());
        let host = std::net::SocketAddr::new(local, self.udp_addr.port());
        let caller = Uri::try_from(format!("sip:{}@{host}", dial.caller_id).as_str())
            .map_err(|e| SipError::Stack(format!("caller id {}: {e}", dial.caller_id)))?;
        let contact = Uri::try_from(format!("sip:careline@{host}").as_str())
            .map_err(|e| SipError::Stack(e.to_string()))?;
        let option = InviteOption {
            caller,
            callee,
            destination: Some(destination),
            content_type: Some("application/sdp".into()),
            offer: Some(dial.offer.into_bytes()),
            contact,
            credential: dial.credential.map(|(username, password)| Credential {
                username,
                password,
                realm: None,
                auth_username: None,
            }),
            headers: Some(vec![
                Header::Allow(super::ALLOW.into()),
                Header::Accept(super::ACCEPT.into()),
            ]),
            call_id: Some(dial.call_id),
            ..Default::default()
        };
        let (state_tx, states) = self.dialog_layer.new_dialog_state_channel();
        let (dialog, invite) = self.dialog_layer.do_invite_async(option, state_tx)?;
        Ok(OutgoingCall {
            dialog,
            states,
            invite: Some(invite),
            dialog_layer: self.dialog_layer.clone(),
            confirmed: None,
            rang: false,
        })
    }
}

/// A call Careline placed: ringing, answered, or over.
pub struct OutgoingCall {
    dialog: InviteDialog,
    states: DialogStateReceiver,
    /// The INVITE transaction, until its final response.
    invite: Option<tokio::task::JoinHandle<InviteAsyncResult>>,
    dialog_layer: Arc<DialogLayer>,
    /// The dialog's id once answered (registered in the dialog layer until dropped).
    confirmed: Option<DialogId>,
    rang: bool,
}

impl OutgoingCall {
    /// The next thing the call has to say; `None` once it is gone.
    pub async fn next_signal(&mut self) -> Option<CallSignal> {
        loop {
            let invite = async {
                match &mut self.invite {
                    Some(handle) => handle.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                finished = invite => {
                    self.invite = None;
                    let response = match finished {
                        Ok(Ok((id, response))) => response.map(|r| (id, r)),
                        Ok(Err(e)) => {
                            tracing::info!(error = %e, "the INVITE got no answer");
                            None
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the INVITE's task failed");
                            None
                        }
                    };
                    return Some(match response {
                        Some((id, r)) if r.status_code.kind() == StatusCodeKind::Successful => {
                            self.confirmed = Some(id);
                            CallSignal::Answered(r.body().clone())
                        }
                        Some((_, r)) => CallSignal::Refused(Some(r.status_code.code())),
                        None => CallSignal::Refused(None),
                    });
                }
                state = self.states.recv() => {
                    let state = state?;
                    match state {
                        DialogState::Early(..) if !self.rang => {
                            self.rang = true;
                            return Some(CallSignal::Ringing);
                        }
                        // Before the answer, the INVITE's outcome says how it ended.
                        DialogState::Terminated(_, reason) if self.confirmed.is_some() => {
                            let why = match reason {
                                TerminatedReason::UasBye => EndReason::CallerBye,
                                TerminatedReason::UacBye => EndReason::OurBye,
                                TerminatedReason::Timeout => EndReason::Timeout,
                                _ => EndReason::Other,
                            };
                            return Some(CallSignal::Ended(why));
                        }
                        other if self.confirmed.is_some() => {
                            if let Some(signal) = in_dialog(other).await {
                                return Some(signal);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// CANCEL while it rings, BYE once answered, nothing once over.
    pub async fn hangup(&self) {
        if let Err(e) = self.dialog.hangup().await {
            tracing::debug!(error = %e, "hang-up of an outbound call failed");
        }
    }
}

impl Drop for OutgoingCall {
    fn drop(&mut self) {
        if let Some(id) = &self.confirmed {
            self.dialog_layer.remove_dialog(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_are_checked_at_load() {
        assert!(check_proxy("sip:127.0.0.1:5070").is_ok());
        assert!(check_proxy("sip:trunk.example.net;transport=tcp").is_ok());
        assert!(check_proxy("sips:trunk.example.net:5061").is_ok());
        assert!(check_proxy("sip:alice@trunk.example.net").is_err());
        assert!(check_proxy("trunk.example.net").is_err());
    }

    #[test]
    fn the_number_goes_into_the_proxys_uri() {
        let uri = target("sip:127.0.0.1:5070;transport=tcp", "+15550100").unwrap();
        assert_eq!(
            uri.to_string().to_ascii_lowercase(),
            "sip:+15550100@127.0.0.1:5070;transport=tcp"
        );
        let uri = target("sips:trunk.example.net", "0312345678").unwrap();
        assert_eq!(uri.to_string(), "sips:0312345678@trunk.example.net");
    }
}
