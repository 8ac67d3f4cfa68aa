//! A flow compiled for running: actions in a vector, transitions as indices, parameters
//! parsed into typed values and templates. Built once per file at load and shared (`Arc`) by
//! every call that runs it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::condition::Condition;
use super::model::scalar;
use super::template::Template;
use crate::media::prompt::Prompt;

/// How an action may branch, by Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conditions {
    /// No conditions allowed.
    Forbidden,
    /// Only `Equals` (single keys, True/False, ContinueLooping/DoneLooping).
    EqualsOnly,
    /// Every operator.
    Any,
}

/// What Careline knows about one action Type.
#[derive(Debug)]
pub(crate) struct TypeInfo {
    pub name: &'static str,
    pub conditions: Conditions,
    /// Error types this action can take.
    pub errors: &'static [&'static str],
    /// Ends the flow (no NextAction).
    pub terminal: bool,
}

const E: &[&str] = &["NoMatchingError"];
const E_COND: &[&str] = &["NoMatchingCondition", "NoMatchingError"];

/// Every supported Type; `GetUserInput` (the product brief) and `InvokeExternalResource`
/// (older exports) are aliases.
pub(crate) const SUPPORTED: &[TypeInfo] = &[
    t("MessageParticipant", Conditions::Forbidden, E, false),
    t(
        "MessageParticipantIteratively",
        Conditions::Forbidden,
        E,
        false,
    ),
    t(
        "GetParticipantInput",
        Conditions::EqualsOnly,
        &[
            "InputTimeLimitExceeded",
            "NoMatchingCondition",
            "NoMatchingError",
            "InvalidPhoneNumber",
        ],
        false,
    ),
    t(
        "GetUserInput",
        Conditions::EqualsOnly,
        &[
            "InputTimeLimitExceeded",
            "NoMatchingCondition",
            "NoMatchingError",
            "InvalidPhoneNumber",
        ],
        false,
    ),
    t("Compare", Conditions::Any, E_COND, false),
    t("UpdateContactAttributes", Conditions::Forbidden, E, false),
    t("UpdateFlowAttributes", Conditions::Forbidden, E, false),
    t(
        "CheckHoursOfOperation",
        Conditions::EqualsOnly,
        E_COND,
        false,
    ),
    t("UpdateContactTargetQueue", Conditions::Forbidden, E, false),
    t(
        "UpdateContactRoutingBehavior",
        Conditions::Forbidden,
        E,
        false,
    ),
    t("UpdateRoutingCriteria", Conditions::Forbidden, E, false),
    t(
        "TransferContactToQueue",
        Conditions::Forbidden,
        &["QueueAtCapacity", "NoMatchingError"],
        false,
    ),
    t("CheckMetricData", Conditions::Any, E_COND, false),
    t("GetMetricData", Conditions::Forbidden, E, false),
    t("InvokeLambdaFunction", Conditions::Forbidden, E, false),
    t("InvokeExternalResource", Conditions::Forbidden, E, false),
    t(
        "GetCustomerProfile",
        Conditions::Forbidden,
        &["NoneFoundError", "MultipleFoundError", "NoMatchingError"],
        false,
    ),
    t("TransferToFlow", Conditions::Forbidden, E, false),
    t("InvokeFlowModule", Conditions::Forbidden, E, false),
    t("EndFlowModuleExecution", Conditions::Forbidden, &[], true),
    t("UpdateContactEventHooks", Conditions::Forbidden, E, false),
    t("Loop", Conditions::EqualsOnly, E, false),
    t(
        "UpdateContactRecordingBehavior",
        Conditions::Forbidden,
        E,
        false,
    ),
    t(
        "UpdateContactTextToSpeechVoice",
        Conditions::Forbidden,
        E,
        false,
    ),
    t("UpdateFlowLoggingBehavior", Conditions::Forbidden, E, false),
    t("UpdateContactData", Conditions::Forbidden, E, false),
    t(
        "UpdateContactMediaStreamingBehavior",
        Conditions::Forbidden,
        E,
        false,
    ),
    t("StartMediaStreaming", Conditions::Forbidden, E, false),
    t("StopMediaStreaming", Conditions::Forbidden, E, false),
    t("CheckOutboundCallStatus", Conditions::EqualsOnly, E, false),
    t(
        "UpdateContactCallbackNumber",
        Conditions::Forbidden,
        &[
            "InvalidCallbackNumber",
            "CallbackNumberNotDialable",
            "NoMatchingError",
        ],
        false,
    ),
    t("CreateCallbackContact", Conditions::Forbidden, E, false),
    t("DisconnectParticipant", Conditions::Forbidden, &[], true),
    t("EndFlowExecution", Conditions::Forbidden, &[], true),
];

const fn t(
    name: &'static str,
    conditions: Conditions,
    errors: &'static [&'static str],
    terminal: bool,
) -> TypeInfo {
    TypeInfo {
        name,
        conditions,
        errors,
        terminal,
    }
}

/// Connect types Careline knows but does not run (yet): a load error in strict mode, their
/// error branch at run time in lenient mode.
pub(crate) const KNOWN_UNSUPPORTED: &[&str] = &[
    "ConnectParticipantWithLexBot",
    "ShowView",
    "CreateCase",
    "UpdateCase",
    "GetCase",
    "StartVoiceIdStream",
    "CheckVoiceId",
    "SetVoiceId",
    "CreateTask",
    "TransferParticipantToThirdParty",
    "DistributeByPercentage",
    "Wait",
    "GetMetricData",
    "CreateWisdomSession",
    "AuthenticateParticipant",
];

pub(crate) fn type_info(name: &str) -> Option<&'static TypeInfo> {
    SUPPORTED.iter().find(|t| t.name == name)
}

/// A reference to a Careline resource: resolved at load when written literally, at run time
/// when it comes from an attribute.
#[derive(Debug, Clone)]
pub enum Ref<T> {
    Static(T),
    Dynamic(Template),
}

#[derive(Debug, Clone)]
pub enum Message {
    Prompt(Ref<Arc<Prompt>>),
    Text(Template),
    Ssml(Template),
}

#[derive(Debug, Clone)]
pub enum PhoneFormat {
    E164,
    /// National number of the given ISO country (US, JP, GB, ...).
    Local(String),
}

#[derive(Debug, Clone)]
pub enum InputMode {
    /// One key, matched against `Equals` conditions.
    Menu,
    /// Digits stored into `$.StoredCustomerInput`.
    Store {
        max_digits: usize,
        terminator: Option<char>,
        cancel_key: bool,
        phone: Option<PhoneFormat>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseType {
    StringMap,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    ContactsInQueue,
    OldestContactAgeSeconds,
    AgentsAvailable,
    AgentsStaffed,
    AgentsOnline,
}

/// Typed parameters, by action Type.
#[derive(Debug, Clone)]
pub enum Kind {
    Message(Message),
    MessageIteratively {
        messages: Vec<Message>,
        interrupt: Option<Duration>,
    },
    GetInput {
        message: Option<Message>,
        timeout: Duration,
        inter_digit: Duration,
        mode: InputMode,
    },
    Compare(Template),
    SetAttributes(Vec<(Box<str>, Template)>),
    SetFlowAttributes(Vec<(Box<str>, Template)>),
    CheckHours(Option<Ref<Arc<str>>>),
    SetQueue(Ref<Arc<str>>),
    /// UpdateContactRoutingBehavior: `QueuePriority` (1 first), `QueueTimeAdjustmentSeconds`.
    SetRouting {
        priority: Option<Template>,
        adjustment: Option<Template>,
    },
    TransferToQueue(Option<Ref<Arc<str>>>),
    CheckMetric {
        metric: Metric,
        queue: Option<Ref<Arc<str>>>,
    },
    /// GetMetricData: the queue's figures into `$.Metrics`.
    GetMetrics(Option<Ref<Arc<str>>>),
    InvokeLambda {
        function: Ref<Arc<str>>,
        timeout: Duration,
        parameters: Vec<(Box<str>, Template)>,
        response: ResponseType,
    },
    /// GetCustomerProfile against the patient store: `phone`, `mrn`, `dob` to search by.
    GetProfile(Vec<(Box<str>, Template)>),
    TransferToFlow(Ref<Arc<str>>),
    InvokeModule(Ref<Arc<str>>),
    EndModule,
    SetEventHooks(Vec<(Box<str>, Template)>),
    /// UpdateRoutingCriteria: which agents may take the contact, by skill (checked at load).
    SetCriteria(Arc<super::criteria::RoutingCriteria>),
    Loop(Template),
    SetRecording(Arc<Value>),
    SetVoice(Template),
    SetLogging(bool),
    UpdateContactData(Vec<(Box<str>, Template)>),
    MediaStreaming(bool),
    /// CheckOutboundCallStatus ("Check call progress"): who answered a call Careline placed.
    CheckCallProgress,
    /// UpdateContactCallbackNumber: the number a callback calls (`$.CustomerCallbackNumber`).
    SetCallbackNumber(Template),
    /// CreateCallbackContact: a queued callback in the contact's place.
    CreateCallback(CallbackSpec),
    Disconnect,
    EndFlow,
    /// Lenient mode: an unsupported Type, taking its error branch.
    Unsupported(Box<str>),
}

/// CreateCallbackContact's parameters, as Connect defines them: all but the queue and the
/// flow are static, checked at load.
#[derive(Debug, Clone)]
pub struct CallbackSpec {
    /// `QueueId`; `None`: the contact's target queue.
    pub queue: Option<Ref<Arc<str>>>,
    /// `InitialCallDelaySeconds`: the callback is not offered to an agent before this (the
    /// caller has time to hang up).
    pub initial_delay: Duration,
    /// `MaximumConnectionAttempts`: calls to the patient, at most, before it is given up.
    pub max_attempts: u32,
    /// `RetryDelaySeconds`: after a call nobody answered, the next is not before this.
    pub retry_delay: Duration,
    /// `ContactFlowId`: the flow the patient hears on answering (Connect's outbound whisper),
    /// before the agent joins; `None`: `[callbacks] flow`.
    pub flow: Option<Ref<Arc<str>>>,
}

/// Connect's ceiling for a callback's delays: three days.
pub(crate) const CALLBACK_DELAY_MAX: Duration = Duration::from_secs(259_200);

#[derive(Debug, Clone)]
pub struct Action {
    pub id: Box<str>,
    pub type_name: Box<str>,
    pub kind: Kind,
    pub next: Option<usize>,
    pub conditions: Vec<(Condition, usize)>,
    pub errors: Vec<(Box<str>, usize)>,
}

impl Action {
    /// The branch for `error`, falling back to `NoMatchingError` as Connect does.
    pub fn error_branch(&self, error: &str) -> Option<usize> {
        let find = |name: &str| {
            self.errors
                .iter()
                .find(|(e, _)| &**e == name)
                .map(|(_, i)| *i)
        };
        find(error).or_else(|| find("NoMatchingError"))
    }
}

#[derive(Debug)]
pub struct Flow {
    pub name: Arc<str>,
    pub file: String,
    pub flow_type: Option<String>,
    pub start: usize,
    pub actions: Vec<Action>,
}

/// Reads a duration parameter given in seconds ("5", 5, "0.5").
pub(crate) fn seconds(v: Option<&Value>) -> Option<Duration> {
    let s = scalar(v?)?;
    let secs: f64 = s.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// A "True"/"False" parameter (exports write strings; hand-written flows booleans).
pub(crate) fn flag(v: Option<&Value>) -> Option<bool> {
    match scalar(v?)?.to_ascii_lowercase().as_str() {
        "true" | "enabled" => Some(true),
        "false" | "disabled" => Some(false),
        _ => None,
    }
}
