//! One typed configuration, layered: embedded defaults < `careline.toml` < `CARELINE_*`
//! environment < command-line flags.
//!
//! Every struct denies unknown fields: a misspelt key in a file or a stray `CARELINE_` variable
//! is an error naming the key, never silently ignored (an operator who writes `max_call = 10`
//! must not get the default of 5,000).

pub use crate::media::dtmf::InbandDtmf;
use crate::media::srtp::SrtpSuite;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::flow::hours::HoursConfig;
use crate::flow::lambda::LambdaConfig;
use crate::flow::queues::QueueConfig;
use crate::flow::voices::VoiceOverride;
use crate::media::codec::Codec;

/// The file read from the working directory when no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "careline.toml";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where keys, certificates, the database and recordings live.
    pub data_dir: PathBuf,
    pub sip: SipConfig,
    pub rtp: RtpConfig,
    pub http: HttpConfig,
    pub prompts: PromptsConfig,
    pub calls: CallsConfig,
    pub log: LogConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub patients: PatientsConfig,
    pub recording: crate::recording::settings::RecordingConfig,
    /// Contact flows: where they are, which number runs which (issue 3).
    pub flows: FlowsConfig,
    /// Queues flows transfer to (`[queues.NAME]`).
    pub queues: BTreeMap<String, QueueConfig>,
    /// Hours of operation (`[hours.NAME]`).
    pub hours: BTreeMap<String, HoursConfig>,
    /// Lambda functions as HTTP endpoints (`[lambda.NAME] url = ...`).
    pub lambda: BTreeMap<String, LambdaConfig>,
    pub tts: TtsConfig,
    pub media_streaming: MediaStreamingConfig,
    /// Care-coordination workflows (`[workflows]`).
    pub workflows: WorkflowsConfig,
    /// Browser legs (`[webrtc]`): WHIP click-to-call.
    pub webrtc: WebRtcConfig,
    /// Telehealth rooms (`[rooms]`): their defaults and graces.
    pub rooms: RoomsConfig,
    /// How contacts are offered to agents (`[routing]`): offer and wrap-up times, routing
    /// profiles.
    pub routing: crate::routing::desk::RoutingConfig,
    /// The mail relay notices go out through (`[smtp]`): care tasks to the care team.
    pub smtp: SmtpConfig,
}

/// `[smtp]`: the clinic's mail relay. Notices carry no patient data (they say that something
/// waits and where); the password is best given as `CARELINE_SMTP__PASSWORD`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// The relay's host name (empty: no e-mail is sent).
    pub host: String,
    /// 0: the usual port for `tls` (587 for starttls, 465 for tls, 25 for off).
    pub port: u16,
    /// `starttls` (required: a relay that does not offer it gets no mail), `tls` (implicit
    /// TLS), or `off` (plain SMTP; with a username only to a relay on loopback).
    pub tls: String,
    /// PEM root certificates to trust besides the system's (a clinic's own CA).
    pub ca_file: Option<PathBuf>,
    pub username: String,
    pub password: String,
    /// The sender, `Careline <careline@clinic.example>`.
    pub from: String,
    /// How long one SMTP command may take.
    pub timeout_secs: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: String::new(),
            port: 0,
            tls: "starttls".into(),
            ca_file: None,
            username: String::new(),
            password: String::new(),
            from: String::new(),
            timeout_secs: 30,
        }
    }
}

/// `[webrtc]`: calls from browsers (issue 21). Their codecs are `[rtp] codecs`, in that order
/// (G.711 first by default, so a browser bridged to a phone needs no transcoding).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebRtcConfig {
    /// Anyone may place a browser call into a contact flow (`POST /api/v1/calls/whip`) without
    /// credentials: a patient portal's "call the clinic" button. Off: a bearer token or a
    /// signed-in session of a role allowed to place calls.
    pub public_calls: bool,
    /// A browser whose ICE and DTLS are not done this long after its offer was answered is
    /// hung up (cause `connect_timeout` in `/metrics`).
    pub connect_timeout_secs: u32,
    /// A browser caller whose connection is lost (a tab reload, a network blip) may
    /// reconnect to the same call within this long (`POST SESSION/reconnect`, which the
    /// `/call` page does after a reload); the call goes on meanwhile. 0: a lost connection
    /// ends the call at once (cause `connection_lost`).
    pub reconnect_grace_secs: u32,
    /// Browser calls from one address that may be connecting at once (answered, ICE and DTLS
    /// not done yet); more are refused with 429. Each holds a call slot and a media port until
    /// it connects or times out, so without a bound one client could fill the call table.
    pub max_connecting_per_source: u32,
    /// Other sites whose pages may place browser calls (`https://portal.example.org`): their
    /// cross-origin requests get CORS answers (RFC 9725 §4.2 asks WHIP endpoints to support
    /// CORS). Empty: only Careline's own pages (`/call`).
    pub allowed_origins: Vec<String>,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            public_calls: false,
            connect_timeout_secs: 10,
            reconnect_grace_secs: 20,
            max_connecting_per_source: 5,
            allowed_origins: Vec::new(),
        }
    }
}

/// `[rooms]`: telehealth rooms (issue 24).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsConfig {
    /// A participant whose connection drops (a tab reload, a network blip) keeps their place
    /// this long; back within it, they are in the room again without a second wait. Also how
    /// long patients left without a clinician wait for one before the visit ends.
    pub rejoin_grace_secs: u32,
    /// Participants a room takes when its booking does not say (the host included).
    pub max_participants: u32,
    /// Invitation links stay valid this long after the visit's scheduled time.
    pub link_valid_hours: u32,
    /// The phone number invitees call to join by phone with their visit PIN, as they should
    /// dial it (shown with each invitation; empty: not shown). Careline answers it with the
    /// `room-dial-in` flow when the number reaching it is mapped there (`[flows.numbers]`,
    /// `300` as shipped).
    pub dial_in_number: String,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            rejoin_grace_secs: 60,
            max_participants: 8,
            link_valid_hours: 24,
            dial_in_number: String::new(),
        }
    }
}

/// `[workflows]`: the state machines the server runs (issue 22).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkflowsConfig {
    /// Folder of state machines (`NAME.asl.json` or `NAME.json`), all loaded at start, each
    /// started by its name. When the default `workflows` is not in the working folder (or
    /// the setting is empty): the ones built into Careline, this repository's `workflows/`.
    pub dir: PathBuf,
    /// How long a Task's function may take when its state sets no `TimeoutSeconds`; past it
    /// the task fails with `States.Timeout`.
    pub task_timeout_secs: u64,
    /// The workflow an imported hospital discharge starts for its patient (empty: none).
    pub on_discharge: String,
    /// A discharge older than this many days starts nothing (an import of old history).
    pub discharge_within_days: u32,
    /// Task functions Careline answers itself: function name (a Task's Lambda ARN names it)
    /// -> built-in task. A `[lambda.NAME] url` for the same name wins.
    pub tasks: BTreeMap<String, String>,
    /// The RiskAssessment task's rules (TOML, as the shipped `risk-rules.toml`); unset: the
    /// shipped rules.
    pub risk_rules: Option<PathBuf>,
    /// Told (POST, JSON without patient data) of each new item on the care team's work list,
    /// so someone is alerted without watching the list: a chat or paging integration.
    pub care_task_webhook: Option<String>,
    /// E-mailed (through `[smtp]`, without patient data) of each new item on the work list,
    /// by the item's kind.
    pub care_task_mail: CareTaskMailConfig,
    /// Where approved refill requests go (`[workflows.pharmacy]`).
    pub pharmacy: PharmacyConfig,
    /// The CallPatient task (`careline:call-patient`).
    pub call_patient: CallPatientConfig,
    /// Where the booking tasks put appointments (ScheduleAppointment, TelemedicineConsultation).
    pub appointments: AppointmentsConfig,
}

/// `[workflows.pharmacy]`: the pharmacy system a clinician's approved refill is sent to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PharmacyConfig {
    /// The pharmacy's FHIR base URL: each approval is POSTed there as a transaction Bundle of
    /// MedicationRequests (conditional creates, so a resend makes nothing twice). HTTPS unless
    /// the host is loopback (the order names the patient). Empty: approvals are written to
    /// the patient's record only.
    pub url: String,
}

/// `[workflows.care_task_mail]`: who is e-mailed of a new work-list item.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CareTaskMailConfig {
    /// Addresses told of NotifyPhysician's items (the on-call physician's, a pager gateway).
    pub physician: Vec<String>,
    /// Addresses told of NotifyCareteam's items and of patient-call follow-ups.
    pub care_team: Vec<String>,
    /// The address of Careline's web pages as the recipients reach them
    /// (`https://careline.clinic.example`), for the link in the message; empty: none.
    pub link_base: String,
}

/// `[workflows.appointments]`: the clinic's bookable hours.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AppointmentsConfig {
    /// Opening hours, `HH:MM-HH:MM`, on each of `days`.
    pub hours: String,
    /// Weekdays open: `mon` ... `sun`.
    pub days: Vec<String>,
    /// The clinic's time zone (IANA).
    pub time_zone: String,
    /// Appointments start on these boundaries from opening; also the length when a task
    /// names none.
    pub slot_minutes: u32,
    /// A telehealth consultation is booked this long from now at the earliest.
    pub lead_minutes: u32,
}

impl Default for AppointmentsConfig {
    fn default() -> Self {
        AppointmentsConfig {
            hours: "09:00-17:00".into(),
            days: ["mon", "tue", "wed", "thu", "fri"]
                .map(String::from)
                .to_vec(),
            time_zone: "UTC".into(),
            slot_minutes: 30,
            lead_minutes: 60,
        }
    }
}

/// `[workflows.call_patient]`: how the CallPatient task calls a patient.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CallPatientConfig {
    /// The contact flow the patient hears once they answer (the shipped `patient-call`
    /// speaks the task's `message` and asks how they are).
    pub flow: String,
    /// The trunk to call through (empty: the only one with a proxy).
    pub trunk: String,
    /// Hours in which patients are called, in their own time zone (`HH:MM-HH:MM`); a call
    /// due outside them waits for the next opening.
    pub hours: String,
    /// The time zone of patients whose record names none (FHIR `timezone` extension).
    pub time_zone: String,
    /// Calls to one patient per day (their local day), all workflows together; more wait
    /// for the next day.
    pub max_calls_per_day: u32,
    /// How long one call may take, ringing included, when the state sets no
    /// `TimeoutSeconds` (then `States.Timeout`, and the call is hung up).
    pub timeout_secs: u64,
    /// When an answering machine picks up: `off` (no detection: whoever answers hears the
    /// questions), `hang_up` (hang up without a word), `leave_message` (after the greeting,
    /// a message asking the patient to call back, with nothing clinical in it). With either
    /// of the last two the task fails with `CallPatient.AnsweringMachine`, so the state's
    /// Retry calls again later.
    pub answering_machine: String,
}

impl Default for CallPatientConfig {
    fn default() -> Self {
        CallPatientConfig {
            flow: "patient-call".into(),
            trunk: String::new(),
            hours: "09:00-20:00".into(),
            time_zone: "UTC".into(),
            max_calls_per_day: 3,
            timeout_secs: 900,
            answering_machine: "off".into(),
        }
    }
}

impl Default for WorkflowsConfig {
    fn default() -> Self {
        WorkflowsConfig {
            dir: PathBuf::from(crate::shipped::WORKFLOWS_DIR),
            task_timeout_secs: 60,
            on_discharge: String::new(),
            discharge_within_days: 7,
            // The brief's function names (NotifyCareteam as it spells it).
            tasks: BTreeMap::from([
                (
                    "RiskAssessment".to_string(),
                    crate::workflow::risk::RISK_ASSESSMENT.to_string(),
                ),
                (
                    "NotifyPhysician".to_string(),
                    crate::workflow::care_tasks::NOTIFY_PHYSICIAN.to_string(),
                ),
                (
                    "NotifyCareteam".to_string(),
                    crate::workflow::care_tasks::NOTIFY_CARE_TEAM.to_string(),
                ),
                (
                    "CallPatient".to_string(),
                    crate::workflow::call_patient::CALL_PATIENT.to_string(),
                ),
                (
                    "CheckMedicationRefills".to_string(),
                    crate::workflow::medication::CHECK_MEDICATION_REFILLS.to_string(),
                ),
                (
                    "ScheduleAppointment".to_string(),
                    crate::workflow::appointments::SCHEDULE_APPOINTMENT.to_string(),
                ),
                (
                    "TelemedicineConsultation".to_string(),
                    crate::workflow::appointments::TELEMEDICINE_CONSULTATION.to_string(),
                ),
            ]),
            risk_rules: None,
            care_task_webhook: None,
            care_task_mail: CareTaskMailConfig::default(),
            pharmacy: PharmacyConfig::default(),
            call_patient: CallPatientConfig::default(),
            appointments: AppointmentsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    /// Folder of flow files (`*.json`, bare or DescribeContactFlow-wrapped), all loaded at start.
    /// When the default `flows` is not in the working folder (or the setting is empty): the
    /// flows built into Careline, this repository's `flows/`.
    pub dir: PathBuf,
    /// Flow for numbers not listed in `numbers` (a flow Name or file name).
    pub default: String,
    /// Dialed number (Request-URI user) -> flow.
    pub numbers: BTreeMap<String, String>,
    /// Reference (ARN, id, `${PLACEHOLDER}`) -> Careline resource name.
    pub resources: BTreeMap<String, String>,
    /// Unsupported action types stop the load (true) or take their error branch (false).
    pub strict: bool,
    /// Log every action of every flow (flows can also enable it with UpdateFlowLoggingBehavior).
    pub logging: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TtsConfig {
    /// `espeak` (embedded, espeak-ng) or `http` (see docs/flows.md, "Text to speech").
    pub engine: String,
    pub espeak_program: String,
    /// MeCab for Japanese readings; empty disables the reading step.
    pub mecab_program: String,
    pub http_url: Option<String>,
    pub http_timeout_ms: u64,
    /// Voice of flows that set none (a Connect voice name).
    pub default_voice: String,
    /// Connect voice name -> engine voice.
    pub voices: BTreeMap<String, VoiceOverride>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MediaStreamingConfig {
    /// WebSocket endpoint (`ws://...`) that receives call audio when a flow starts streaming.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP and TCP listen address.
    pub listen: SocketAddr,
    /// SIP over TLS listen address; `None` disables TLS.
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for TLS; a self-signed one is generated in the data dir when unset.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Address written into Contact and SDP when it differs from the listen address (NAT).
    pub public_address: Option<std::net::IpAddr>,
    /// Concurrent calls accepted; past this an INVITE gets 503 with Retry-After.
    pub max_calls: usize,
    /// Seconds a rejected caller is told to wait (Retry-After).
    pub retry_after_secs: u32,
    /// Largest SIP message accepted on any transport, in bytes.
    pub max_message_bytes: usize,
    /// SIP datagrams per second accepted from one source address (0 = unlimited).
    pub rate_limit_per_source: u32,
    /// Networks (CIDR) whose INVITEs are taken without a password, besides the trunks'.
    /// INVITEs from anywhere else, and every REGISTER, must answer a digest challenge with a
    /// user's SIP secret (`careline user sip-secret NAME`).
    pub trusted_networks: Vec<ipnet::IpNet>,
    /// INVITEs and REGISTERs per second answered from all untrusted sources together (0 = no
    /// limit); beyond it they are dropped unanswered, so a flood from many addresses (each
    /// under `rate_limit_per_source`) cannot crowd out the trunks' calls.
    pub untrusted_rate_limit: u32,
    /// Carrier trunks and PBXs by name: `[sip.trunks.carrier] addresses = ["198.51.100.0/24"]`.
    /// Calls from their addresses need no password and are logged with the trunk's name.
    pub trunks: BTreeMap<String, TrunkConfig>,
    /// Digest authentication realm (RFC 3261 §22.1). Phones are configured with it.
    pub realm: String,
    /// Digest algorithms offered, most preferred first (RFC 8760): `SHA-256`, `MD5`.
    pub digest_algorithms: Vec<crate::sip::digest::Algorithm>,
    /// Seconds a digest nonce stays fresh (then the phone is asked again, `stale=true`).
    pub nonce_secs: u64,
    /// Shortest registration accepted (shorter: 423 with Min-Expires, RFC 3261 §10.3).
    pub min_expires_secs: u32,
    /// Longest registration granted (longer requests are cut to it).
    pub max_expires_secs: u32,
}

/// One SIP trunk (`[sip.trunks.NAME]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrunkConfig {
    /// The addresses its requests come from (CIDR; a bare address is one host).
    pub addresses: Vec<ipnet::IpNet>,
    /// Where Careline's own calls through this trunk go (`sip:HOST[:PORT][;transport=tcp]`,
    /// `sips:` for TLS); unset, the trunk takes no outbound calls.
    pub proxy: Option<String>,
    /// The number Careline presents on its calls (From's user part).
    pub caller_id: String,
    /// The user Careline authenticates as when the trunk challenges its INVITEs.
    pub username: Option<String>,
    /// The environment variable holding that user's password (never the password itself,
    /// so it stays out of files and `careline config`).
    pub password_env: Option<String>,
    /// Outbound calls through it at once (0 = no limit but `sip.max_calls`).
    pub max_calls: u32,
    /// New outbound calls per second (0 = no pacing): carriers refuse bursts above their
    /// contracted rate.
    pub calls_per_second: f64,
    /// How long a called phone may ring before Careline gives up (cause `no_answer`).
    pub ring_timeout_secs: u32,
}

impl TrunkConfig {
    /// What is wrong with it, as `field: reason`.
    fn validate(&self) -> Result<(), String> {
        if self.addresses.is_empty() && self.proxy.is_none() {
            return Err("addresses must name at least one address or network \
                 (or, for a trunk Careline only calls out through, set proxy)"
                .into());
        }
        if let Some(proxy) = &self.proxy {
            crate::sip::outbound::check_proxy(proxy).map_err(|why| format!("proxy {why}"))?;
        }
        let id_ok = |c: char| c.is_ascii_alphanumeric() || "+*#._-".contains(c);
        if self.caller_id.is_empty()
            || self.caller_id.len() > 64
            || !self.caller_id.chars().all(id_ok)
        {
            return Err("caller_id must be 1 to 64 of: letters, digits, + * # . _ -".into());
        }
        if self.password_env.is_some() != self.username.is_some() {
            return Err("username and password_env go together".into());
        }
        if !(self.calls_per_second.is_finite() && self.calls_per_second >= 0.0) {
            return Err("calls_per_second must be 0 (no pacing) or more".into());
        }
        if !(1..=600).contains(&self.ring_timeout_secs) {
            return Err("ring_timeout_secs must be 1 to 600".into());
        }
        Ok(())
    }
}

impl Default for TrunkConfig {
    fn default() -> Self {
        TrunkConfig {
            addresses: Vec::new(),
            proxy: None,
            caller_id: "careline".into(),
            username: None,
            password_env: None,
            max_calls: 0,
            calls_per_second: 0.0,
            ring_timeout_secs: 45,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RtpConfig {
    /// Port range for RTP (even ports) and RTCP (RTP + 1), as `LO-HI`.
    pub ports: PortRange,
    /// Codecs accepted on SIP legs (`pcmu`, `pcma`, `opus`).
    pub codecs: Vec<String>,
    /// In-band (tone) DTMF detection: `auto` = only when no telephone-event was negotiated.
    pub inband_dtmf: InbandDtmf,
    /// Jitter buffer target delay in milliseconds.
    pub jitter_ms: u32,
    /// Media clock threads; 0 = one per CPU core.
    pub media_threads: usize,
    /// Hang up when no RTP arrived for this long (0 = never).
    pub timeout_secs: u32,
    /// SRTP on SIP legs, keyed by SDES (RFC 4568 `a=crypto`): `off` (an `RTP/SAVP` offer gets
    /// 488), `offer` (encrypted whenever a caller offers keys over TLS, plain otherwise),
    /// `require` (plain RTP gets 488).
    pub srtp: SrtpMode,
    /// Take SDES keys over signalling that is not TLS (UDP, TCP), where anyone on the path
    /// reads them: off, so keys offered that way get 488 (`RTP/SAVP`) or a plain answer.
    pub srtp_keys_without_tls: bool,
    /// The SRTP suites accepted (RFC 4568 names; default all of `AEAD_AES_256_GCM`,
    /// `AEAD_AES_128_GCM`, `AES_256_CM_HMAC_SHA1_80`, `AES_CM_128_HMAC_SHA1_80`,
    /// `AES_CM_128_HMAC_SHA1_32`). Of those a caller offers, the caller's first is used.
    pub srtp_suites: Vec<String>,
}

/// `[rtp] srtp`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SrtpMode {
    Off,
    Offer,
    Require,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `/healthz` and Prometheus `/metrics`.
    pub listen: SocketAddr,
    /// `auto`: HTTPS unless `listen` is a loopback address; `on`: always HTTPS; `off`: plain
    /// HTTP, allowed only on loopback (PHI never crosses a network in clear).
    pub tls: HttpTls,
    /// PEM certificate chain for HTTPS; a self-signed one is generated in the data dir when unset.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// How long a client has to send a request's head (and the TLS handshake before it); also
    /// how long an idle keep-alive connection stays open.
    pub header_timeout_secs: u64,
    /// How long a client has to send a request's body once its head arrived.
    pub body_timeout_secs: u64,
    /// Open connections allowed from one IP address (0 = no limit); more are closed at once.
    pub max_connections_per_source: u32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HttpTls {
    Auto,
    On,
    Off,
}

impl HttpConfig {
    /// Whether the API is served over HTTPS.
    pub fn https(&self) -> bool {
        match self.tls {
            HttpTls::On => true,
            HttpTls::Off => false,
            HttpTls::Auto => !self.listen.ip().is_loopback(),
        }
    }
}

/// The patient, user and audit database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host/db` for PostgreSQL; empty for the embedded SQLite file
    /// `<data_dir>/careline.db`.
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Browser sessions end after this long without a request (idle logoff).
    pub session_idle_secs: u64,
    /// Failed sign-ins from one address for one name before each further attempt waits (1 s,
    /// doubling per failure); one address over all names gets four times as many.
    pub max_failures: u32,
    /// Failures are forgotten this long after the last one.
    pub failure_window_secs: u64,
    /// The longest wait between attempts.
    pub lockout_secs: u64,
    /// How long a clinician's break-glass access to one patient lasts.
    pub break_glass_secs: u64,
    /// How long the user who handled a call keeps access to its patient after the call ends
    /// (wrap-up: notes, follow-up); 0 ends it with the call.
    pub contact_wrap_up_secs: u64,
    /// Requests without valid credentials go into the audit trail as one summary per source
    /// address per this many seconds.
    pub unauthenticated_summary_secs: u64,
    /// Days a new API token is valid (0 = until revoked).
    pub token_lifetime_days: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PatientsConfig {
    /// Country code assumed for phone numbers written without one (`1`: NANP).
    pub default_country_code: String,
    /// Extra clinical alert rules (same format as the shipped `clinical-alerts.toml`).
    pub alerts_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_idle_secs: 15 * 60,
            max_failures: 5,
            failure_window_secs: 5 * 60,
            lockout_secs: 15 * 60,
            break_glass_secs: 60 * 60,
            contact_wrap_up_secs: 120,
            unauthenticated_summary_secs: 60,
            token_lifetime_days: 90,
        }
    }
}

impl Default for PatientsConfig {
    fn default() -> Self {
        PatientsConfig {
            default_country_code: "1".into(),
            alerts_file: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PromptsConfig {
    /// Folder holding `<lang>/<name>.wav`. When the default `prompts` is not in the working
    /// folder (or the setting is empty): the prompts built into Careline.
    pub dir: PathBuf,
    /// Language of the built-in menu.
    pub language: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CallsConfig {
    /// On SIGTERM, how long active calls may continue before Careline hangs them up.
    pub drain_grace_secs: u64,
    /// The built-in menu waits this long for a key before hanging up.
    pub menu_timeout_secs: u64,
    /// Ring this long (180 Ringing) before answering; 0 answers at once.
    pub ring_ms: u64,
    /// Answering-machine detection on calls Careline places, where the flow screens them
    /// (`CheckOutboundCallStatus`; CallPatient's `answering_machine`).
    /// (`[calls.amd]`, docs/configuration.md; Asterisk `AMD()`'s defaults: tune them with
    /// test calls on your own trunk, since carriers' and countries' greetings differ.)
    pub amd: crate::media::amd::AmdSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `careline=debug,rsipstack=warn`.
    pub level: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            sip: SipConfig::default(),
            rtp: RtpConfig::default(),
            http: HttpConfig::default(),
            prompts: PromptsConfig::default(),
            calls: CallsConfig::default(),
            log: LogConfig::default(),
            recording: Default::default(),
            flows: FlowsConfig::default(),
            queues: shipped_queues(),
            hours: BTreeMap::new(),
            lambda: BTreeMap::new(),
            tts: TtsConfig::default(),
            media_streaming: MediaStreamingConfig::default(),
            workflows: WorkflowsConfig::default(),
            webrtc: WebRtcConfig::default(),
            rooms: RoomsConfig::default(),
            routing: Default::default(),
            smtp: SmtpConfig::default(),
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            patients: PatientsConfig::default(),
        }
    }
}

impl Default for FlowsConfig {
    fn default() -> Self {
        let mut numbers = BTreeMap::new();
        numbers.insert("200".to_string(), "medical-triage".to_string());
        numbers.insert("300".to_string(), "room-dial-in".to_string());
        FlowsConfig {
            dir: PathBuf::from(crate::shipped::FLOWS_DIR),
            default: "demo-menu".into(),
            numbers,
            resources: BTreeMap::new(),
            strict: true,
            logging: false,
        }
    }
}

impl Default for TtsConfig {
    fn default() -> Self {
        TtsConfig {
            engine: "espeak".into(),
            espeak_program: "espeak-ng".into(),
            mecab_program: "mecab".into(),
            http_url: None,
            http_timeout_ms: 5000,
            default_voice: "Joanna".into(),
            voices: BTreeMap::new(),
        }
    }
}

/// The queues the shipped triage flow transfers to.
fn shipped_queues() -> BTreeMap<String, QueueConfig> {
    let mut q = BTreeMap::new();
    for name in [
        "triage-urgent",
        "triage-appointments",
        "triage-nurses",
        "triage-results",
    ] {
        q.insert(
            name.to_string(),
            QueueConfig {
                capacity: 20,
                hold_flow: Some("triage-hold".into()),
                // The urgent line: a caller unanswered for a minute alerts supervisors.
                alert_after_secs: if name == "triage-urgent" { 60 } else { 0 },
                ..QueueConfig::default()
            },
        );
    }
    q
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5060)),
            tls_listen: Some(SocketAddr::from(([127, 0, 0, 1], 5061))),
            tls_cert: None,
            tls_key: None,
            public_address: None,
            max_calls: 5000,
            retry_after_secs: 30,
            max_message_bytes: 16 * 1024,
            rate_limit_per_source: 2000,
            trusted_networks: vec![
                "127.0.0.0/8".parse().expect("CIDR"),
                "::1/128".parse().expect("CIDR"),
            ],
            untrusted_rate_limit: 200,
            trunks: BTreeMap::new(),
            realm: "careline".into(),
            digest_algorithms: vec![
                crate::sip::digest::Algorithm::Sha256,
                crate::sip::digest::Algorithm::Md5,
            ],
            nonce_secs: 300,
            min_expires_secs: 60,
            max_expires_secs: 3600,
        }
    }
}

impl Default for RtpConfig {
    fn default() -> Self {
        RtpConfig {
            ports: PortRange {
                lo: 20000,
                hi: 39999,
            },
            codecs: vec!["pcmu".into(), "pcma".into(), "opus".into()],
            inband_dtmf: InbandDtmf::Auto,
            jitter_ms: 40,
            media_threads: 0,
            timeout_secs: 60,
            srtp: SrtpMode::Offer,
            srtp_keys_without_tls: false,
            srtp_suites: SrtpSuite::ALL.iter().map(|s| s.name().into()).collect(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: HttpTls::Auto,
            tls_cert: None,
            tls_key: None,
            header_timeout_secs: 10,
            body_timeout_secs: 60,
            max_connections_per_source: 64,
        }
    }
}

impl Default for PromptsConfig {
    fn default() -> Self {
        PromptsConfig {
            dir: PathBuf::from(crate::shipped::PROMPTS_DIR),
            language: "en".into(),
        }
    }
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            drain_grace_secs: 30,
            menu_timeout_secs: 10,
            ring_ms: 0,
            amd: crate::media::amd::AmdSettings::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info,rsipstack=warn".into(),
        }
    }
}

/// An inclusive UDP port range, written `LO-HI`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl std::str::FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (lo, hi) = s
            .split_once('-')
            .ok_or_else(|| format!("port range `{s}` must be written LO-HI, e.g. 20000-29999"))?;
        let lo: u16 = lo
            .trim()
            .parse()
            .map_err(|_| format!("`{lo}` is not a port number"))?;
        let hi: u16 = hi
            .trim()
            .parse()
            .map_err(|_| format!("`{hi}` is not a port number"))?;
        if lo == 0 || hi < lo.saturating_add(3) {
            return Err(format!(
                "port range {lo}-{hi} is too small: a call needs two ports (RTP and RTCP), \
                 and 0 is not a usable port"
            ));
        }
        Ok(PortRange { lo, hi })
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.lo, self.hi)
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Values given on the command line; `None` leaves the lower layers in charge.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub sip_listen: Option<SocketAddr>,
    pub tls_listen: Option<SocketAddr>,
    pub no_tls: bool,
    pub http_listen: Option<SocketAddr>,
    pub rtp_ports: Option<PortRange>,
    pub max_calls: Option<usize>,
    pub prompts_dir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    /// `--record-all`: record every call.
    pub record_all: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Builds the effective configuration. `file` is `--config`; without it `careline.toml` in
    /// the working directory is read when present. `env` is the process environment (passed in
    /// so tests need not mutate it).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError::MissingFile(path.to_path_buf()));
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None => {
                if Path::new(DEFAULT_CONFIG_FILE).exists() {
                    figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
                }
            }
        }
        figment = figment.merge(EnvVars::from_iter(env));
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(e)))?;
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    fn apply(&mut self, o: &Overrides) {
        if let Some(v) = &o.data_dir {
            self.data_dir = v.clone();
        }
        if let Some(v) = o.sip_listen {
            self.sip.listen = v;
        }
        if let Some(v) = o.tls_listen {
            self.sip.tls_listen = Some(v);
        }
        if o.no_tls {
            self.sip.tls_listen = None;
        }
        if let Some(v) = o.http_listen {
            self.http.listen = v;
        }
        if let Some(v) = o.rtp_ports {
            self.rtp.ports = v;
        }
        if let Some(v) = o.max_calls {
            self.sip.max_calls = v;
        }
        if let Some(v) = &o.prompts_dir {
            self.prompts.dir = v.clone();
        }
        if let Some(v) = o.log_format {
            self.log.format = v;
        }
        if o.record_all {
            self.recording.record_all = true;
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let codecs = self.codecs()?;
        if codecs.is_empty() {
            return Err(ConfigError::Invalid(
                "rtp.codecs must name at least one codec".into(),
            ));
        }
        if self.sip.tls_cert.is_some() != self.sip.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "sip.tls_cert and sip.tls_key must be given together".into(),
            ));
        }
        self.recording.validate().map_err(ConfigError::Invalid)?;
        if let Some(o) = self.webrtc.allowed_origins.iter().find(|o| {
            !(o.starts_with("https://") || o.starts_with("http://"))
                || o.trim_end_matches('/').matches('/').count() != 2
        }) {
            return Err(ConfigError::Invalid(format!(
                "webrtc.allowed_origins: `{o}` is not an origin (scheme://host[:port], no path)"
            )));
        }
        if self.webrtc.connect_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "webrtc.connect_timeout_secs must be at least 1".into(),
            ));
        }
        if self.sip.digest_algorithms.is_empty() {
            return Err(ConfigError::Invalid(
                "sip.digest_algorithms must name at least one of SHA-256, MD5".into(),
            ));
        }
        if self.sip.realm.is_empty() || self.sip.realm.contains(['"', '\\']) {
            return Err(ConfigError::Invalid(
                "sip.realm must be non-empty text without quotes or backslashes".into(),
            ));
        }
        if self.sip.min_expires_secs == 0 || self.sip.min_expires_secs > self.sip.max_expires_secs {
            return Err(ConfigError::Invalid(
                "sip.min_expires_secs must be at least 1 and at most sip.max_expires_secs".into(),
            ));
        }
        self.calls
            .amd
            .check()
            .map_err(|why| ConfigError::Invalid(format!("calls.amd.{why}")))?;
        crate::notify::mail::Mailer::from_config(&self.smtp)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let pharmacy = &self.workflows.pharmacy.url;
        if !pharmacy.is_empty() {
            let uri: Result<axum::http::Uri, _> = pharmacy.parse();
            let ok = match uri {
                Ok(u) => match (u.scheme_str(), u.host()) {
                    (Some("https"), Some(_)) => true,
                    (Some("http"), Some(h)) => crate::notify::mail::is_loopback(h),
                    _ => false,
                },
                Err(_) => false,
            };
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "workflows.pharmacy.url `{pharmacy}` must be an https:// URL (http:// only \
                     to loopback): the orders sent there name the patient"
                )));
            }
        }
        let mail = &self.workflows.care_task_mail;
        for (list, addrs) in [
            ("physician", &mail.physician),
            ("care_team", &mail.care_team),
        ] {
            for a in addrs {
                crate::notify::mail::check_address(a).map_err(|e| {
                    ConfigError::Invalid(format!("workflows.care_task_mail.{list}: {e}"))
                })?;
            }
            if !addrs.is_empty() && self.smtp.host.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "workflows.care_task_mail.{list} names recipients but [smtp] host is empty: \
                     set the relay they are sent through"
                )));
            }
        }
        crate::workflow::call_patient::check_config(&self.workflows.call_patient)
            .map_err(|why| ConfigError::Invalid(format!("workflows.call_patient.{why}")))?;
        crate::workflow::appointments::Clinic::from_config(&self.workflows.appointments)
            .map_err(|why| ConfigError::Invalid(format!("workflows.appointments.{why}")))?;
        self.routing
            .validate(&self.queues)
            .map_err(|why| ConfigError::Invalid(format!("routing.{why}")))?;
        for (name, t) in &self.sip.trunks {
            t.validate()
                .map_err(|why| ConfigError::Invalid(format!("sip.trunks.{name}.{why}")))?;
        }
        match self.tts.engine.as_str() {
            "espeak" => {}
            "http" if self.tts.http_url.is_some() => {}
            "http" => {
                return Err(ConfigError::Invalid(
                    "tts.engine = \"http\" needs tts.http_url".into(),
                ));
            }
            other => {
                return Err(ConfigError::Invalid(format!(
                    "tts.engine: `{other}` is not espeak or http"
                )));
            }
        }
        if self.http.tls == HttpTls::Off && !self.http.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "http.tls = \"off\" with http.listen = {}: plain HTTP is allowed only on loopback \
                 (use tls = \"auto\" or \"on\")",
                self.http.listen
            )));
        }
        if self.http.tls_cert.is_some() != self.http.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "http.tls_cert and http.tls_key must be given together".into(),
            ));
        }
        if self.rtp.jitter_ms > 1000 {
            return Err(ConfigError::Invalid(format!(
                "rtp.jitter_ms = {} is more than one second",
                self.rtp.jitter_ms
            )));
        }
        Ok(())
    }

    /// The accepted codecs, in configured order.
    pub fn codecs(&self) -> Result<Vec<Codec>, ConfigError> {
        self.rtp
            .codecs
            .iter()
            .map(|name| {
                Codec::from_name(name).ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "rtp.codecs: `{name}` is not one of pcmu, pcma, opus"
                    ))
                })
            })
            .collect()
    }

    /// The accepted SRTP suites, in configured order.
    pub fn srtp_suites(&self) -> Result<Vec<SrtpSuite>, ConfigError> {
        self.rtp
            .srtp_suites
            .iter()
            .map(|name| {
                SrtpSuite::from_name(name).ok_or_else(|| {
                    let known: Vec<&str> = SrtpSuite::ALL.iter().map(|s| s.name()).collect();
                    ConfigError::Invalid(format!(
                        "rtp.srtp_suites: `{name}` is not one of {}",
                        known.join(", ")
                    ))
                })
            })
            .collect()
    }
}

/// The `CARELINE_*` layer: `CARELINE_SIP__MAX_CALLS=10` sets `sip.max_calls`. Sections are
/// separated by `__` because keys themselves contain single underscores. Values are read as
/// TOML-ish scalars (numbers, booleans, arrays), falling back to strings.
struct EnvVars(Vec<(String, String)>);

impl FromIterator<(String, String)> for EnvVars {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        EnvVars(
            iter.into_iter()
                .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !not_a_setting(k))
                .collect(),
        )
    }
}

const ENV_PREFIX: &str = "CARELINE_";
/// Secrets the key ring reads itself (`keys::Supplied`); they are not configuration keys.
const SECRET_VARS: [&str; 2] = ["CARELINE_MASTER_KEY", "CARELINE_INDEX_KEY"];
/// Variables of the tests, benches and load tester (docs/development.md), which a developer's
/// shell may hold while it starts a server: not configuration keys either.
const TOOL_VARS: [&str; 3] = [
    "CARELINE_CONFORMANCE_DIR",
    "CARELINE_UPDATE_SPEECH",
    "CARELINE_BARESIP_MODULES",
];

/// A `CARELINE_` variable that is not a setting: a secret, a tool's variable or a bench knob
/// (`CARELINE_BENCH_*`). Any other unknown name is still refused, so a typo is caught.
fn not_a_setting(name: &str) -> bool {
    SECRET_VARS.contains(&name) || TOOL_VARS.contains(&name) || name.starts_with("CARELINE_BENCH_")
}

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        Metadata::named("CARELINE_* environment variables")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Value::from(Dict::new());
        for (name, raw) in &self.0 {
            let key = name[ENV_PREFIX.len()..]
                .to_ascii_lowercase()
                .replace("__", ".");
            let value: Value = raw
                .parse()
                .unwrap_or_else(|never: std::convert::Infallible| match never {});
            root = merge_values(root, figment::util::nest(&key, value));
        }
        let dict = root.into_dict().unwrap_or_default();
        Ok(Profile::Default.collect(dict))
    }
}

fn merge_values(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Dict(tag, mut x), Value::Dict(_, y)) => {
            for (k, v) in y {
                let merged = match x.remove(&k) {
                    Some(old) => merge_values(old, v),
                    None => v,
                };
                x.insert(k, merged);
            }
            Value::Dict(tag, x)
        }
        (_, b) => b,
    }
}

/// Turns figment's error into one line that names the key and where it came from.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::new()
            } else {
                format!("`{}`: ", e.path.join("."))
            };
            let source = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(src) => format!(" (from {src})"),
                    None => format!(" (from {})", m.name),
                })
                .unwrap_or_default();
            format!("{key}{}{source}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn wrap_up_codes_are_shipped_and_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let load = |text: &str| {
            let path = dir.path().join("c.toml");
            std::fs::write(&path, text).unwrap();
            Config::load(Some(&path), env(&[]), &Overrides::default()).map_err(|e| e.to_string())
        };
        let shipped = load("").unwrap();
        assert!(
            shipped
                .routing
                .wrap_up_codes
                .contains(&"advice-given".to_string())
        );
        let own = load("[routing]\nwrap_up_codes = [\"resolved\", \"callback.needed\"]\n").unwrap();
        assert_eq!(own.routing.wrap_up_codes, ["resolved", "callback.needed"]);
        let e = load("[routing]\nwrap_up_codes = [\"resolved\", \"call back\"]\n").unwrap_err();
        assert!(
            e.contains("routing.wrap_up_codes: `call back`: 1 to 64 letters"),
            "{e}"
        );
        let e = load("[routing]\nwrap_up_codes = [\"a\", \"a\"]\n").unwrap_err();
        assert!(e.contains("`a` is listed twice"), "{e}");
    }

    #[test]
    fn mail_recipients_need_a_relay_and_addresses_that_are_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let load = |text: &str| {
            let path = dir.path().join("c.toml");
            std::fs::write(&path, text).unwrap();
            Config::load(Some(&path), env(&[]), &Overrides::default())
                .err()
                .map(|e| e.to_string())
        };
        let e = load("[workflows.care_task_mail]\ncare_team = [\"nurses@clinic.example\"]\n");
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("[smtp] host is empty")),
            "{e:?}"
        );
        let relay = "[smtp]\nhost = \"relay.clinic.example\"\nfrom = \"careline@clinic.example\"\n";
        let e = load(&format!(
            "{relay}[workflows.care_task_mail]\nphysician = [\"on call\"]\n"
        ));
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("care_task_mail.physician")
                    && e.contains("`on call` is not an e-mail address")),
            "{e:?}"
        );
        let ok = load(&format!(
            "{relay}[workflows.care_task_mail]\nphysician = [\"Dr On Call <oncall@clinic.example>\"]\n"
        ));
        assert_eq!(ok, None);
        // The password from the environment, as the docs advise.
        let path = dir.path().join("c.toml");
        let c = Config::load(
            Some(&path),
            env(&[("CARELINE_SMTP__PASSWORD", "s3cret")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.smtp.password, "s3cret");
    }

    #[test]
    fn answering_machine_detection_is_tuned_in_calls_amd_and_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[calls.amd]\ninitial_silence_ms = 3500\nmaximum_words = 4\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), env(&[]), &Overrides::default()).unwrap();
        let amd = c.calls.amd;
        amd.check().unwrap();
        assert_eq!((amd.initial_silence_ms, amd.maximum_words), (3500, 4));
        assert_eq!(
            amd.greeting_ms,
            crate::media::amd::AmdSettings::default().greeting_ms,
            "the rest keep Asterisk's defaults"
        );
        std::fs::write(&path, "[calls.amd]\nmaximum_words = 0\n").unwrap();
        let e = Config::load(Some(&path), env(&[]), &Overrides::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("calls.amd.maximum_words"), "{e}");
    }

    #[test]
    fn defaults_need_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.toml");
        assert!(matches!(
            Config::load(Some(&missing), env(&[]), &Overrides::default()),
            Err(ConfigError::MissingFile(_))
        ));
        let c = Config::default();
        assert_eq!(c.sip.listen.port(), 5060);
        assert_eq!(c.http.listen.port(), 8080);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn layers_apply_in_order_file_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(
            f,
            "[sip]\nmax_calls = 10\nlisten = \"127.0.0.1:6000\"\n[rtp]\nports = \"30000-30100\""
        )
        .unwrap();
        let c = Config::load(Some(&path), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.sip.max_calls, 10);
        assert_eq!(
            c.rtp.ports,
            PortRange {
                lo: 30000,
                hi: 30100
            }
        );

        let e = env(&[
            ("CARELINE_SIP__MAX_CALLS", "20"),
            ("CARELINE_HTTP__LISTEN", "127.0.0.1:9000"),
        ]);
        let c = Config::load(Some(&path), e.clone(), &Overrides::default()).unwrap();
        assert_eq!(c.sip.max_calls, 20);
        assert_eq!(c.http.listen.port(), 9000);
        assert_eq!(
            c.sip.listen.port(),
            6000,
            "file value kept where env is silent"
        );

        let o = Overrides {
            max_calls: Some(30),
            ..Default::default()
        };
        let c = Config::load(Some(&path), e, &o).unwrap();
        assert_eq!(c.sip.max_calls, 30);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[sip]\nmax_call = 10\n").unwrap();
        let err = Config::load(Some(&path), env(&[]), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("max_call"), "{err}");

        let good = dir.path().join("g.toml");
        std::fs::write(&good, "").unwrap();
        let err = Config::load(
            Some(&good),
            env(&[("CARELINE_SIP__NOPE", "1")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let err = Config::load(
            Some(&good),
            env(&[("CARELINE_CONFORMANCE_DIRS", "/x")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("conformance_dirs"),
            "a typo: {err}"
        );

        // The tools' own variables in a developer's shell do not stop a server.
        let c = Config::load(
            Some(&good),
            env(&[
                ("CARELINE_CONFORMANCE_DIR", "/work/shared/conformance"),
                ("CARELINE_UPDATE_SPEECH", "1"),
                ("CARELINE_BENCH_LEGS", "500"),
                ("CARELINE_MASTER_KEY", "00"),
            ]),
            &Overrides::default(),
        );
        assert!(c.is_ok(), "{:?}", c.err());
    }

    #[test]
    fn plain_http_is_refused_off_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[http]\nlisten = \"0.0.0.0:8443\"\ntls = \"off\"\n").unwrap();
        let err = Config::load(Some(&path), env(&[]), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("only on loopback"), "{err}");
        std::fs::write(&path, "[http]\nlisten = \"0.0.0.0:8443\"\n").unwrap();
        let c = Config::load(Some(&path), env(&[]), &Overrides::default()).unwrap();
        assert!(c.http.https(), "auto means HTTPS off loopback");
        assert!(
            !Config::default().http.https(),
            "loopback stays plain by default"
        );
    }

    #[test]
    fn bad_values_are_explained() {
        assert!("20000".parse::<PortRange>().unwrap_err().contains("LO-HI"));
        assert!("20000-20001".parse::<PortRange>().is_err());
        assert_eq!(
            "20000-20010".parse::<PortRange>(),
            Ok(PortRange {
                lo: 20000,
                hi: 20010
            })
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[rtp]\ncodecs = [\"g729\"]\n").unwrap();
        let err = Config::load(Some(&path), env(&[]), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("g729"), "{err}");
    }
}
