//! An admitted call as its shell receives it, whatever brought it: a SIP dialog and RTP
//! ports, or a browser's WHIP session and peer connection. Everything past this point (the
//! call core, the shell's loop, the effects) is the same for both.

use std::sync::Arc;

use crate::flow::attributes::ContactData;
use crate::flow::program::Flow;
use crate::media::codec::Codec;
use crate::media::engine::LegIds;
use crate::media::leg::LegParams;
use crate::media::ports::RtpSockets;
use crate::media::webrtc::WebRtcTransport;
use crate::sip::outbound::OutgoingCall;
use crate::sip::sdp::LocalMedia;
use crate::sip::{CallSignal, ServerCall};

/// An admitted call, ready for its core: whatever brought it (SIP or WHIP).
pub(super) struct Start {
    pub call_id: String,
    pub flow: Arc<Flow>,
    pub contact: ContactData,
    pub signaling: Signaling,
    pub media: Pending,
    pub codec: Codec,
    /// A SIP call's media description, for re-offers (hold, a new address).
    pub local: Option<LocalMedia>,
    /// A browser call's place among those connecting from its address, until it connects.
    pub connecting: Option<super::whip::ConnectingTicket>,
    /// A call Careline placed: how long it may ring unanswered.
    pub dial_timeout: Option<std::time::Duration>,
    /// Told how a call Careline placed ended.
    pub outcome: Option<tokio::sync::oneshot::Sender<super::dial::CallOutcome>>,
    /// A queued callback's agent, waiting on the line for the patient.
    pub agent: Option<super::answer::AgentOffer>,
}

/// How the call's far end signals: a SIP dialog, or a browser's WHIP session (its answer went
/// out in the HTTP response; its hang-up, `DELETE`, arrives as a call command; its media
/// connecting stands for SIP's ACK).
pub(super) enum Signaling {
    Sip(ServerCall),
    Whip(super::whip::Browser),
    /// A call Careline placed (it is the UAC).
    Placed(OutgoingCall),
}

impl Signaling {
    pub(super) async fn next_signal(&mut self) -> Option<CallSignal> {
        match self {
            Signaling::Sip(dialog) => dialog.next_signal().await,
            Signaling::Whip(_) => std::future::pending().await,
            Signaling::Placed(call) => call.next_signal().await,
        }
    }
}

/// The media a call answers with, reserved at admission and put on the clock at answer.
pub(super) enum Pending {
    /// A phone: its RTP ports, the negotiated media and the SDP answer for 200 OK.
    Rtp {
        sockets: RtpSockets,
        params: LegParams,
        answer: String,
    },
    /// A call Careline placed: its RTP ports, until the answer says what to send where.
    Placed { sockets: RtpSockets },
    /// A browser: its socket and the peer connection that answered its offer.
    WebRtc {
        sockets: RtpSockets,
        peer: Box<WebRtcTransport>,
        params: LegParams,
        ids: LegIds,
    },
}
