//! Calls: the session table and one task per call, which runs the call's contact flow.

pub(crate) mod admit;
pub mod answer;
pub mod callback;
pub mod consult;
pub mod core;
pub mod dial;
mod effects;
pub mod monitor;
pub mod phone_agent;
pub mod room_door;
mod start;
pub(crate) mod table;
pub(crate) mod task;
pub mod whip;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::config::InbandDtmf;
use crate::media::codec::Codec;
use crate::media::engine::MediaEngine;
use crate::metrics::Metrics;
use crate::sip::SipServer;

/// Call settings taken from the configuration once at start.
#[derive(Debug, Clone)]
pub struct CallSettings {
    pub max_calls: usize,
    pub retry_after_secs: u32,
    /// Let the phone ring this long before answering (0 = answer at once).
    pub ring: Duration,
    pub menu_timeout: Duration,
    pub codecs: Vec<Codec>,
    pub inband: InbandDtmf,
    pub jitter_ms: u32,
    pub rtp_timeout: Duration,
    /// A browser leg not connected (ICE, DTLS) this long after its answer is hung up.
    pub webrtc_connect_timeout: Duration,
    /// Browser calls from one address that may be connecting at once.
    pub webrtc_connecting_per_source: usize,
    /// A browser caller whose connection is lost may reconnect within this long (zero: the
    /// call ends at once).
    pub webrtc_reconnect_grace: Duration,
    /// `[rtp] srtp`: SDES-keyed SRTP on SIP legs.
    pub srtp: crate::config::SrtpMode,
    /// `[rtp] srtp_keys_without_tls`.
    pub srtp_keys_without_tls: bool,
    /// `[rtp] srtp_suites`.
    pub srtp_suites: Vec<crate::media::srtp::SrtpSuite>,
    /// `[calls.amd]`: answering-machine detection where a flow screens a call it placed.
    pub amd: crate::media::amd::AmdSettings,
}

impl CallSettings {
    /// The media leg's settings for a new call (its RTCP CNAME drawn at random).
    pub fn leg_options(&self) -> crate::media::leg::LegOptions {
        crate::media::leg::LegOptions {
            inband: self.inband,
            jitter_ms: self.jitter_ms,
            rtp_timeout_ms: self.rtp_timeout.as_millis() as u64,
            cname: format!("careline-{:08x}", rand::random::<u32>()),
        }
    }
}

/// What every call task shares.
pub struct CallServices {
    pub settings: CallSettings,
    pub media: MediaEngine,
    pub sip: Arc<SipServer>,
    /// Contact flows, speech, Lambda endpoints and queues.
    pub flows: crate::flow::engine::FlowEngine,
    pub table: table::CallTable,
    pub metrics: Arc<Metrics>,
    /// Set on SIGTERM: new calls are refused with 503.
    pub draining: AtomicBool,
    pub recorder: Arc<crate::recording::Recorder>,
    /// Told when a call starts and ends (audit trail, active contacts); `None` in tools and
    /// tests that run calls without a database.
    pub hooks: Option<Arc<dyn CallHooks>>,
    /// Browser calls still connecting, per source address.
    pub connecting: whip::Connecting,
    /// Agents' WHIP sessions, to the calls they joined.
    pub agent_sessions: answer::AgentSessions,
    /// Supervisors' sessions on the calls they listen in on.
    pub monitor_sessions: monitor::MonitorSessions,
    /// Who is offered which queued contact (agents' states, offers, wrap-up).
    pub desk: Arc<crate::routing::desk::Desk>,
    /// What a caller on hold hears (`media::prompt::hold_music`).
    pub hold_music: Arc<crate::media::prompt::Prompt>,
    /// The trunks Careline calls out through.
    pub trunks: dial::Trunks,
    /// The calls Careline placed (API, workflows), for `GET`/`DELETE /api/v1/calls/{id}`.
    pub placed: dial::PlacedCalls,
    /// Queued callbacks, kept in the database; `None` in tools and tests without one.
    pub callbacks: Option<crate::routing::callbacks::CallbackStore>,
    /// Telehealth rooms, for callers who key a visit PIN (`careline:room-join`); set once the
    /// rooms are up, unset in tools and tests without them.
    pub room_door: std::sync::OnceLock<Arc<dyn room_door::RoomDoor>>,
}

/// What the rest of Careline hears about a call's life. Must not block: implementations hand
/// the work to their own task.
pub trait CallHooks: Send + Sync {
    fn call_started(&self, call_id: &str);
    fn call_ended(&self, end: CallEnd);
    /// The `careline:patient-lookup` built-in: finds the caller in the patient store.
    fn identify(&self, call_id: &str, query: IdentifyQuery) -> BoxFuture<'static, Identify>;
    /// A call Careline places is about `patient_id` (a queued callback of an identified
    /// caller): linked as the IVR links an identified caller, and audited.
    fn link_patient(&self, call_id: &str, patient_id: &str) -> BoxFuture<'static, ()>;
    /// The link of a placed call nobody answered ends (an answered call's ends with it).
    fn unlink_patient(&self, call_id: &str) -> BoxFuture<'static, ()>;
}

/// How a call ended: for the audit trail and the identified patient's contact history.
#[derive(Debug, Clone)]
pub struct CallEnd {
    pub call_id: String,
    /// A metrics label (`caller_bye`, `server_bye`, ...): the contact's outcome.
    pub cause: &'static str,
    pub answered_at: jiff::Timestamp,
    pub duration: Duration,
    /// The patient the IVR identified, if it did.
    pub patient: Option<String>,
    /// Recordings made during the call.
    pub recordings: Vec<String>,
    /// The reason the flow noted (`$.Attributes.contact_reason`), if any.
    pub reason: Option<String>,
    /// The queue the contact ended in, if any.
    pub queue: Option<String>,
    /// `inbound` (someone called Careline) or `outbound` (Careline placed the call).
    pub direction: &'static str,
    /// `phone` (SIP) or `browser` (WHIP).
    pub channel: &'static str,
    /// Each stay in a queue, in order, with who answered it.
    pub queue_stays: Vec<core::QueueStay>,
}

/// Whom to look for: a number (the caller's own by default), or a medical record number
/// and date of birth as the caller keyed them in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentifyQuery {
    pub phone: Option<String>,
    pub mrn: Option<String>,
    pub dob: Option<String>,
}

impl IdentifyQuery {
    /// From a Lambda-style event: `Parameters` `phone`, `mrn`, `dob` (any case); with neither
    /// a number nor an MRN, the caller's own number (`CustomerEndpoint.Address`).
    pub fn from_event(event: &serde_json::Value) -> IdentifyQuery {
        let params = event
            .pointer("/Details/Parameters")
            .and_then(|p| p.as_object());
        let param = |name: &str| {
            params
                .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
                .and_then(|(_, v)| v.as_str())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let mut q = IdentifyQuery {
            phone: param("phone"),
            mrn: param("mrn"),
            dob: param("dob"),
        };
        if q.phone.is_none() && q.mrn.is_none() {
            q.phone = event
                .pointer("/Details/ContactData/CustomerEndpoint/Address")
                .and_then(|v| v.as_str())
                .filter(|v| !v.is_empty())
                .map(str::to_string);
        }
        q
    }
}

/// What a lookup found. Never clinical data or names: a flow may speak what it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identify {
    Found {
        patient_id: String,
        preferred_language: Option<String>,
        /// MRN and date of birth matched (a number alone never verifies).
        verified: bool,
    },
    /// Several patients share the number: ask for an MRN.
    Ambiguous,
    NotFound,
    /// The store could not answer (the flow takes its error branch).
    Failed(String),
}

impl Identify {
    /// The result as a flow sees it under `$.External` (a STRING_MAP: every value a string).
    pub fn to_external(&self) -> Result<serde_json::Value, String> {
        let (found, id, lang, verified, outcome) = match self {
            Identify::Found {
                patient_id,
                preferred_language,
                verified,
            } => (
                true,
                patient_id.as_str(),
                preferred_language.as_deref().unwrap_or(""),
                *verified,
                "found",
            ),
            Identify::Ambiguous => (false, "", "", false, "ambiguous"),
            Identify::NotFound => (false, "", "", false, "not_found"),
            Identify::Failed(why) => return Err(why.clone()),
        };
        Ok(serde_json::json!({
            "patient_found": found.to_string(),
            "patient_id": id,
            "preferred_language": lang,
            "verified": verified.to_string(),
            "lookup_result": outcome,
        }))
    }

    pub fn patient_id(&self) -> Option<&str> {
        match self {
            Identify::Found { patient_id, .. } => Some(patient_id),
            _ => None,
        }
    }
}

/// Commands from outside a call (API, shutdown) to its task.
#[derive(Debug)]
pub enum CallCommand {
    Hangup {
        cause: &'static str,
    },
    /// Start, pause, resume or stop recording the call (API, flows).
    Recording(crate::recording::RecordingControl),
    /// An agent took the queued call: their leg, to bridge once connected.
    Agent(Box<answer::AgentOffer>),
    /// The agent hung up (their WHIP session's `DELETE`).
    AgentHangup,
    /// The agent holds, resumes, mutes or unmutes; answered true when the call is theirs to
    /// control (bridged or held).
    AgentControl(answer::AgentControl, tokio::sync::oneshot::Sender<bool>),
    /// The agent sends the caller to another queue or an outside number (a blind
    /// transfer).
    AgentTransfer(
        answer::TransferTo,
        tokio::sync::oneshot::Sender<Result<(), answer::TransferRefused>>,
    ),
    /// The outside number an agent transferred the caller to answered: its leg (like an
    /// agent's), or it did not (busy, no answer: `cause`).
    TransferAnswered(Box<answer::AgentOffer>),
    TransferFailed(&'static str),
    /// The agent consults an outside number (a warm transfer), joins the caller to it,
    /// hands the caller over, or drops it.
    AgentConsult(
        consult::ConsultOp,
        tokio::sync::oneshot::Sender<Result<(), answer::TransferRefused>>,
    ),
    /// The number the agent consults answered: its leg, to join the agent.
    ConsultAnswered(Box<answer::AgentOffer>),
    /// The number the agent consults did not answer (busy, refused, no answer: the cause).
    ConsultFailed(&'static str),
    /// The consulted party (its leg's session) hung up.
    ConsultEnded(String),
    /// A supervisor asks to listen in on the call.
    Monitor(Box<monitor::MonitorOffer>),
    /// The supervisor barges in (true) or goes back to listening (false); answered false
    /// when nobody monitors the call.
    MonitorControl(bool, tokio::sync::oneshot::Sender<bool>),
    /// The supervisor leaves.
    MonitorEnd,
    /// A browser caller is back with a new connection (a reloaded page): its SDP offer,
    /// the address it came from, and where the SDP answer goes.
    Reconnect {
        offer: String,
        source: std::net::IpAddr,
        reply: tokio::sync::oneshot::Sender<Result<String, whip::ReconnectRefused>>,
    },
    /// The agent whose session this is is back with a new connection (a reloaded console):
    /// as [`CallCommand::Reconnect`], for the agent's leg.
    AgentReconnect {
        session: String,
        offer: String,
        source: std::net::IpAddr,
        reply: tokio::sync::oneshot::Sender<Result<String, whip::ReconnectRefused>>,
    },
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(params: serde_json::Value) -> serde_json::Value {
        json!({"Details": {"ContactData": {"CustomerEndpoint": {"Address": "+15550001111"}},
            "Parameters": params}})
    }

    #[test]
    fn lookup_parameters_default_to_the_callers_number() {
        let q = IdentifyQuery::from_event(&event(json!({})));
        assert_eq!(q.phone.as_deref(), Some("+15550001111"));
        let q = IdentifyQuery::from_event(&event(json!({"Phone": " 555 1234 "})));
        assert_eq!(q.phone.as_deref(), Some("555 1234"));
        let q = IdentifyQuery::from_event(&event(json!({"mrn": "42", "DOB": "19800115"})));
        assert_eq!(
            q.phone, None,
            "an MRN lookup does not fall back to the number"
        );
        assert_eq!(
            (q.mrn.as_deref(), q.dob.as_deref()),
            (Some("42"), Some("19800115"))
        );
        let q = IdentifyQuery::from_event(&event(json!({"mrn": "", "phone": ""})));
        assert_eq!(
            q.phone.as_deref(),
            Some("+15550001111"),
            "blank means absent"
        );
    }

    #[test]
    fn results_are_a_string_map_without_names() {
        let found = Identify::Found {
            patient_id: "p1".into(),
            preferred_language: Some("ja".into()),
            verified: true,
        };
        let v = found.to_external().unwrap();
        assert_eq!(v["patient_found"], "true");
        assert_eq!(v["verified"], "true");
        assert_eq!(v["preferred_language"], "ja");
        assert!(v.as_object().unwrap().values().all(|x| x.is_string()));
        assert_eq!(
            Identify::Ambiguous.to_external().unwrap()["lookup_result"],
            "ambiguous"
        );
        assert_eq!(
            Identify::NotFound.to_external().unwrap()["patient_found"],
            "false"
        );
        assert!(Identify::Failed("down".into()).to_external().is_err());
    }
}
