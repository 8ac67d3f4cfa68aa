//! Reading each action Type's `Parameters` into typed values, reporting every missing or
//! malformed parameter and every reference the resource map cannot resolve.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::diagnostic::Diagnostic;
use super::model::{RawAction, scalar};
use super::program::{
    CALLBACK_DELAY_MAX, CallbackSpec, InputMode, Kind, Message, Metric, PhoneFormat, Ref,
    ResponseType, flag, seconds,
};
use super::resources::{ResourceKind, Resources};
use super::ssml;
use super::template::{Root, Template};

/// What parameter reading needs besides the action.
pub(crate) struct Context<'a> {
    pub file: &'a str,
    pub resources: &'a Resources,
    /// Flow attributes this flow sets to literal values (so `$.FlowAttributes.x` references
    /// can be checked at load).
    pub flow_attributes: &'a HashMap<String, Vec<String>>,
}

/// The most calls a callback may make to reach the patient (Connect sets none; a clinic
/// calling a patient twenty times is harassment, not care).
const CALLBACK_ATTEMPTS_MAX: u32 = 10;

/// Connect's default and ceiling for InvocationTimeLimitSeconds.
const LAMBDA_DEFAULT: Duration = Duration::from_secs(3);
const LAMBDA_MAX: Duration = Duration::from_secs(8);

struct Reader<'a, 'b> {
    ctx: &'b Context<'a>,
    action: &'b RawAction,
    out: &'b mut Vec<Diagnostic>,
}

impl Reader<'_, '_> {
    fn err(&mut self, msg: String) {
        self.out.push(
            Diagnostic::error(self.ctx.file, msg)
                .at(&self.action.identifier, &self.action.action_type),
        );
    }

    fn warn(&mut self, msg: String) {
        self.out.push(
            Diagnostic::warning(self.ctx.file, msg)
                .at(&self.action.identifier, &self.action.action_type),
        );
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.action.parameters.get(key)
    }

    fn string(&mut self, key: &str) -> Option<String> {
        let v = self.get(key)?;
        match scalar(v) {
            Some(s) => Some(s),
            None => {
                self.err(format!("parameter `{key}` must be a string"));
                None
            }
        }
    }

    fn required(&mut self, key: &str) -> Option<String> {
        let v = self.string(key);
        if v.is_none() && self.get(key).is_none() {
            self.err(format!("parameter `{key}` is missing"));
        }
        v
    }

    fn template(&mut self, key: &str) -> Option<Template> {
        let s = self.string(key)?;
        let t = Template::parse(&s);
        self.check_paths(&t);
        Some(t)
    }

    fn check_paths(&mut self, t: &Template) {
        let unknown: Vec<String> = t
            .paths()
            .filter_map(|p| match &p.root {
                Root::Unknown(name) => Some(format!("`{}` (namespace `{name}`)", p.text)),
                _ => None,
            })
            .collect();
        for u in unknown {
            self.warn(format!(
                "reference {u} is not one Careline fills; it reads as empty"
            ));
        }
    }

    /// A map parameter of string values (`Attributes`, `LambdaInvocationAttributes`).
    fn string_map(&mut self, key: &str) -> Vec<(Box<str>, Template)> {
        let Some(v) = self.get(key).cloned() else {
            return Vec::new();
        };
        let Value::Object(map) = v else {
            self.err(format!("parameter `{key}` must be an object"));
            return Vec::new();
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, v) in map {
            // UpdateFlowAttributes writes {"name": {"Value": "..."}}.
            let v = v.get("Value").cloned().unwrap_or(v);
            match scalar(&v) {
                Some(s) => {
                    let t = Template::parse(&s);
                    self.check_paths(&t);
                    out.push((k.into_boxed_str(), t));
                }
                None => self.err(format!("`{key}.{k}` must be a string")),
            }
        }
        out
    }

    /// A resource reference parameter, resolved now when literal.
    fn reference(&mut self, key: &str, kind: ResourceKind) -> Option<Ref<Arc<str>>> {
        let t = self.template(key)?;
        Some(self.resolve(key, t, kind))
    }

    fn resolve(&mut self, key: &str, t: Template, kind: ResourceKind) -> Ref<Arc<str>> {
        if t.is_static() {
            return match self.ctx.resources.resolve(kind, t.raw()) {
                Some(name) => Ref::Static(name.into()),
                None => {
                    self.unresolved(key, t.raw(), kind);
                    Ref::Dynamic(t)
                }
            };
        }
        // `$.FlowAttributes.x` set to literals in this flow: check those literals now.
        if let Some(p) = t.single_path()
            && p.root == Root::FlowAttributes
            && let Some(k) = p.keys.first()
            && let Some(values) = self.ctx.flow_attributes.get(&**k)
        {
            for v in values.clone() {
                let lit = Template::parse(&v);
                // Values that are themselves dynamic resolve at run time.
                if lit.is_static() && self.ctx.resources.resolve(kind, &v).is_none() {
                    let via = format!("`{v}` (set in `{}`)", p.text);
                    self.unresolved_text(key, &via, kind);
                }
            }
        }
        Ref::Dynamic(t)
    }

    fn unresolved(&mut self, key: &str, reference: &str, kind: ResourceKind) {
        self.unresolved_text(key, &format!("`{reference}`"), kind);
    }

    fn unresolved_text(&mut self, key: &str, reference: &str, kind: ResourceKind) {
        self.err(format!(
            "`{key}` refers to {} {reference}, which does not resolve: declare it as {} or \
             map the reference in [flows.resources]",
            kind.as_str(),
            kind.where_declared()
        ));
    }

    fn message(&mut self, v: &Value) -> Option<Message> {
        let has = |k: &str| v.get(k).is_some_and(|x| !x.is_null());
        let count = ["PromptId", "Text", "SSML"]
            .iter()
            .filter(|k| has(k))
            .count();
        if count > 1 {
            self.err("only one of PromptId, Text and SSML may be given".into());
        }
        if let Some(p) = v.get("PromptId").and_then(scalar) {
            let t = Template::parse(&p);
            self.check_paths(&t);
            if t.is_static() {
                return match self.ctx.resources.resolve_prompt(&p) {
                    Some(prompt) => Some(Message::Prompt(Ref::Static(prompt))),
                    None => {
                        self.unresolved("PromptId", &p, ResourceKind::Prompt);
                        None
                    }
                };
            }
            return Some(Message::Prompt(Ref::Dynamic(t)));
        }
        if let Some(s) = v.get("SSML").and_then(scalar) {
            if let Err(e) = ssml::parse(&s) {
                self.err(format!("SSML: {e}"));
            }
            let t = Template::parse(&s);
            self.check_paths(&t);
            return Some(Message::Ssml(t));
        }
        if let Some(s) = v.get("Text").and_then(scalar) {
            let t = Template::parse(&s);
            self.check_paths(&t);
            return Some(Message::Text(t));
        }
        if has("Media") {
            self.err(
                "`Media` (audio from S3) is not supported; use PromptId with a prompt in \
                      the prompt folder"
                    .into(),
            );
        }
        None
    }
}

/// Reads the parameters of a supported action Type.
pub(crate) fn kind_of(action: &RawAction, ctx: &Context, out: &mut Vec<Diagnostic>) -> Kind {
    let mut r = Reader { ctx, action, out };
    let params = action.parameters.clone();
    match action.action_type.as_str() {
        "MessageParticipant" => match r.message(&params) {
            Some(m) => Kind::Message(m),
            None => {
                r.err("one of PromptId, Text or SSML is required".into());
                Kind::Disconnect
            }
        },
        "MessageParticipantIteratively" => {
            let mut messages = Vec::new();
            match params.get("Messages") {
                Some(Value::Array(list)) => {
                    for m in list {
                        if let Some(m) = r.message(m) {
                            messages.push(m);
                        }
                    }
                }
                _ => r.err("parameter `Messages` must be a list of messages".into()),
            }
            if messages.is_empty() {
                r.err("`Messages` holds no playable message".into());
            }
            let interrupt = seconds(params.get("InterruptFrequencySeconds"));
            Kind::MessageIteratively {
                messages,
                interrupt,
            }
        }
        "GetParticipantInput" | "GetUserInput" => get_input(&mut r, &params),
        "Compare" => match r.template("ComparisonValue") {
            Some(t) => Kind::Compare(t),
            None => {
                r.err("parameter `ComparisonValue` is missing".into());
                Kind::Compare(Template::parse(""))
            }
        },
        "UpdateContactAttributes" => {
            if params.get("Attributes").is_none() {
                r.err("parameter `Attributes` is missing".into());
            }
            Kind::SetAttributes(r.string_map("Attributes"))
        }
        "UpdateFlowAttributes" => {
            if params.get("FlowAttributes").is_none() {
                r.err("parameter `FlowAttributes` is missing".into());
            }
            Kind::SetFlowAttributes(r.string_map("FlowAttributes"))
        }
        "CheckHoursOfOperation" => {
            let key = if params.get("Hours").is_some() {
                "Hours"
            } else {
                "HoursOfOperationId"
            };
            Kind::CheckHours(r.reference(key, ResourceKind::Hours))
        }
        "UpdateContactTargetQueue" => match r.reference("QueueId", ResourceKind::Queue) {
            Some(q) => Kind::SetQueue(q),
            None => {
                r.err("parameter `QueueId` is missing".into());
                Kind::SetQueue(Ref::Dynamic(Template::parse("")))
            }
        },
        "UpdateRoutingCriteria" => match params.get("RoutingCriteria") {
            Some(v) if v.is_object() => match super::criteria::RoutingCriteria::from_json(v) {
                Ok(c) => Kind::SetCriteria(Arc::new(c)),
                Err(e) => {
                    r.err(format!("RoutingCriteria: {e}"));
                    Kind::SetEventHooks(Vec::new())
                }
            },
            Some(_) => {
                r.err(
                    "RoutingCriteria: Careline takes the criteria written out in the flow (an \
                     object with `Steps`), not set from an attribute"
                        .into(),
                );
                Kind::SetEventHooks(Vec::new())
            }
            None => {
                r.err("parameter `RoutingCriteria` is missing".into());
                Kind::SetEventHooks(Vec::new())
            }
        },
        "UpdateContactRoutingBehavior" => {
            if params.get("RoutingCriteria").is_some() {
                r.err(
                    "parameter `RoutingCriteria` belongs to UpdateRoutingCriteria (Set routing \
                     criteria); this action takes QueuePriority and QueueTimeAdjustmentSeconds"
                        .into(),
                );
            }
            let priority = r.template("QueuePriority");
            let adjustment = r.template("QueueTimeAdjustmentSeconds");
            if priority.is_none() && adjustment.is_none() {
                r.err(
                    "parameter `QueuePriority` or `QueueTimeAdjustmentSeconds` is missing".into(),
                );
            }
            if let Some(t) = priority.as_ref().filter(|t| t.is_static())
                && queue_priority(t.raw()).is_none()
            {
                r.err(format!(
                    "QueuePriority `{}` is not a whole number from 1",
                    t.raw()
                ));
            }
            if let Some(t) = adjustment.as_ref().filter(|t| t.is_static())
                && time_adjustment(t.raw()).is_none()
            {
                r.err(format!(
                    "QueueTimeAdjustmentSeconds `{}` is not a whole number of seconds from 0",
                    t.raw()
                ));
            }
            Kind::SetRouting {
                priority,
                adjustment,
            }
        }
        "TransferContactToQueue" => {
            Kind::TransferToQueue(r.reference("QueueId", ResourceKind::Queue))
        }
        "GetMetricData" => {
            if params.get("AgentId").is_some() {
                r.err(
                    "GetMetricData `AgentId`: Careline has no agent queues yet; name a `QueueId`, \
                     or none for the contact's queue"
                        .into(),
                );
            }
            if let Some(ch) = params.get("QueueChannel").and_then(scalar)
                && !ch.eq_ignore_ascii_case("voice")
            {
                r.err(format!(
                    "GetMetricData QueueChannel `{ch}`: Careline's contacts are voice calls"
                ));
            }
            Kind::GetMetrics(r.reference("QueueId", ResourceKind::Queue))
        }
        "CheckMetricData" => {
            let metric = match r.required("MetricType").as_deref() {
                Some("NumberOfContactsInQueue") => Metric::ContactsInQueue,
                Some("OldestContactInQueueAgeSeconds") => Metric::OldestContactAgeSeconds,
                Some("NumberOfAgentsAvailable") => Metric::AgentsAvailable,
                Some("NumberOfAgentsStaffed") => Metric::AgentsStaffed,
                Some("NumberOfAgentsOnline") => Metric::AgentsOnline,
                Some(other) => {
                    r.err(format!(
                        "MetricType `{other}` is not one of NumberOfContactsInQueue, \
                         OldestContactInQueueAgeSeconds, NumberOfAgentsAvailable, \
                         NumberOfAgentsStaffed, NumberOfAgentsOnline"
                    ));
                    Metric::ContactsInQueue
                }
                None => Metric::ContactsInQueue,
            };
            Kind::CheckMetric {
                metric,
                queue: r.reference("QueueId", ResourceKind::Queue),
            }
        }
        "InvokeLambdaFunction" | "InvokeExternalResource" => lambda(&mut r, &params),
        "GetCustomerProfile" => profile(&mut r, &params),
        "TransferToFlow" => match r.reference("ContactFlowId", ResourceKind::Flow) {
            Some(f) => Kind::TransferToFlow(f),
            None => {
                r.err("parameter `ContactFlowId` is missing".into());
                Kind::EndFlow
            }
        },
        "InvokeFlowModule" => match r.reference("FlowModuleId", ResourceKind::Flow) {
            Some(f) => Kind::InvokeModule(f),
            None => {
                r.err("parameter `FlowModuleId` is missing".into());
                Kind::EndFlow
            }
        },
        "EndFlowModuleExecution" => Kind::EndModule,
        "UpdateContactEventHooks" => {
            let hooks = r.string_map("EventHooks");
            for (name, t) in &hooks {
                if t.is_static() && !t.raw().is_empty() {
                    let t = t.clone();
                    r.resolve(&format!("EventHooks.{name}"), t, ResourceKind::Flow);
                } else if let Some(p) = t.single_path()
                    && p.root == Root::FlowAttributes
                {
                    r.resolve(&format!("EventHooks.{name}"), t.clone(), ResourceKind::Flow);
                }
            }
            Kind::SetEventHooks(hooks)
        }
        "Loop" => match r.template("LoopCount") {
            Some(t) => {
                if t.is_static() && t.raw().trim().parse::<u32>().is_err() {
                    r.err(format!("LoopCount `{}` is not a whole number", t.raw()));
                }
                Kind::Loop(t)
            }
            None => {
                r.err("parameter `LoopCount` is missing".into());
                Kind::Loop(Template::parse("0"))
            }
        },
        "UpdateContactRecordingBehavior" => Kind::SetRecording(Arc::new(params)),
        "UpdateContactTextToSpeechVoice" => match r.template("TextToSpeechVoice") {
            Some(t) => {
                if t.is_static() && super::voices::connect_voice(t.raw()).is_none() {
                    r.warn(format!(
                        "voice `{}` is not a known Connect voice; map it under [tts.voices]",
                        t.raw()
                    ));
                }
                Kind::SetVoice(t)
            }
            None => {
                r.err("parameter `TextToSpeechVoice` is missing".into());
                Kind::SetVoice(Template::parse(""))
            }
        },
        "UpdateFlowLoggingBehavior" => match flag(params.get("FlowLoggingBehavior")) {
            Some(on) => Kind::SetLogging(on),
            None => {
                r.err("`FlowLoggingBehavior` must be Enabled or Disabled".into());
                Kind::SetLogging(false)
            }
        },
        "UpdateContactData" => {
            let mut fields = Vec::new();
            if let Value::Object(map) = &params {
                for (k, v) in map {
                    if let Some(s) = scalar(v) {
                        fields.push((k.clone().into_boxed_str(), Template::parse(&s)));
                    }
                }
            }
            Kind::UpdateContactData(fields)
        }
        "UpdateContactMediaStreamingBehavior" => match flag(params.get("MediaStreamingState")) {
            Some(on) => Kind::MediaStreaming(on),
            None => {
                r.err("`MediaStreamingState` must be Enabled or Disabled".into());
                Kind::MediaStreaming(false)
            }
        },
        "StartMediaStreaming" => Kind::MediaStreaming(true),
        "StopMediaStreaming" => Kind::MediaStreaming(false),
        "CheckOutboundCallStatus" => Kind::CheckCallProgress,
        "UpdateContactCallbackNumber" => match r.template("CallbackNumber") {
            Some(t) => Kind::SetCallbackNumber(t),
            None => {
                r.err("parameter `CallbackNumber` is missing".into());
                Kind::SetCallbackNumber(Template::parse(""))
            }
        },
        "CreateCallbackContact" => {
            if params.get("AgentId").is_some() {
                r.err(
                    "parameter `AgentId`: Careline has no agent queues yet; name a `QueueId`, \
                     or none for the contact's queue"
                        .into(),
                );
            }
            let delay = |r: &mut Reader, key: &str| {
                let v = r.required(key)?;
                match v.trim().parse::<u64>() {
                    Ok(s) if s > 0 && Duration::from_secs(s) <= CALLBACK_DELAY_MAX => {
                        Some(Duration::from_secs(s))
                    }
                    _ => {
                        r.err(format!(
                            "{key} `{v}` is not a whole number of seconds from 1 to 259200 \
                             (three days)"
                        ));
                        None
                    }
                }
            };
            let initial_delay = delay(&mut r, "InitialCallDelaySeconds").unwrap_or_default();
            let retry_delay = delay(&mut r, "RetryDelaySeconds").unwrap_or_default();
            let max_attempts = match r.required("MaximumConnectionAttempts") {
                Some(v) => match v.trim().parse::<u32>() {
                    Ok(n) if (1..=CALLBACK_ATTEMPTS_MAX).contains(&n) => n,
                    _ => {
                        r.err(format!(
                            "MaximumConnectionAttempts `{v}` is not a whole number from 1 to \
                             {CALLBACK_ATTEMPTS_MAX}"
                        ));
                        1
                    }
                },
                None => 1,
            };
            Kind::CreateCallback(CallbackSpec {
                queue: r.reference("QueueId", ResourceKind::Queue),
                initial_delay,
                max_attempts,
                retry_delay,
                flow: r.reference("ContactFlowId", ResourceKind::Flow),
            })
        }
        "DisconnectParticipant" => Kind::Disconnect,
        "EndFlowExecution" => Kind::EndFlow,
        other => Kind::Unsupported(other.into()),
    }
}

fn get_input(r: &mut Reader, params: &Value) -> Kind {
    let message = r.message(params);
    if params.get("Options").is_some() {
        r.warn(
            "`Options` is not a flow language parameter and is ignored: say the choices in \
             Text and branch with Conditions"
                .into(),
        );
    }
    let timeout = match params.get("InputTimeLimitSeconds") {
        None => Duration::from_secs(5),
        Some(v) => seconds(Some(v)).unwrap_or_else(|| {
            r.err("InputTimeLimitSeconds must be a number of seconds".into());
            Duration::from_secs(5)
        }),
    };
    let dtmf = params.get("DTMFConfiguration");
    let dget = |k: &str| dtmf.and_then(|d| d.get(k));
    let inter_digit = seconds(dget("InterdigitTimeLimitSeconds"))
        .unwrap_or(Duration::from_secs(5))
        .min(timeout.max(Duration::from_secs(1)));
    let store = flag(params.get("StoreInput"));
    let has_conditions = !r.action.transitions.conditions.is_empty();
    let max_digits = dget("MaxDigits")
        .and_then(scalar)
        .and_then(|s| s.trim().parse::<usize>().ok());
    let validation = params.get("InputValidation");
    let custom_len = validation
        .and_then(|v| v.get("CustomValidation"))
        .and_then(|c| c.get("MaximumLength"))
        .and_then(scalar)
        .and_then(|s| s.trim().parse::<usize>().ok());
    let phone = validation
        .and_then(|v| v.get("PhoneNumberValidation"))
        .map(|p| {
            let format = p.get("NumberFormat").and_then(scalar).unwrap_or_default();
            let country = p
                .get("CountryCode")
                .and_then(scalar)
                .unwrap_or_else(|| "US".into());
            if format.eq_ignore_ascii_case("E164") {
                PhoneFormat::E164
            } else {
                PhoneFormat::Local(country.to_ascii_uppercase())
            }
        });
    let store = match store {
        Some(s) => s,
        // A hand-written flow that sets MaxDigits without conditions means "store the input".
        None if !has_conditions && (max_digits.is_some() || phone.is_some()) => {
            r.warn(
                "no StoreInput and no Conditions: the input is stored in \
                 $.StoredCustomerInput (add \"StoreInput\": \"True\" to say so)"
                    .into(),
            );
            true
        }
        None => false,
    };
    if store && has_conditions {
        r.err("Conditions cannot be combined with StoreInput: branch on the stored input with a Compare action".into());
    }
    let terminator = dget("InputTerminationSequence")
        .and_then(scalar)
        .and_then(|s| s.chars().next());
    if let Some(t) = terminator
        && !"0123456789*#".contains(t)
    {
        r.err(format!(
            "InputTerminationSequence `{t}` is not a key (0-9, *, #)"
        ));
    }
    let mode = if store {
        InputMode::Store {
            max_digits: custom_len.or(max_digits).unwrap_or(20).clamp(1, 40),
            terminator: terminator.or(Some('#')),
            cancel_key: !flag(dget("DisableCancelKey")).unwrap_or(false),
            phone,
        }
    } else {
        if max_digits.is_some_and(|m| m > 1) {
            r.warn("a menu (no StoreInput) reads one key; MaxDigits is ignored".into());
        }
        InputMode::Menu
    };
    Kind::GetInput {
        message,
        timeout,
        inter_digit,
        mode,
    }
}

/// GetCustomerProfile's search identifiers, mapped onto what the patient store can search:
/// a phone number, or the medical record number (Connect's `AccountNumber`) with the date of
/// birth. Response fields are not read: the flow gets the patient's id, language and whether
/// the caller is verified (`$.External`), never names or clinical data to speak aloud.
fn profile(r: &mut Reader, params: &Value) -> Kind {
    let Some(request) = params.get("ProfileRequestData") else {
        r.err("parameter `ProfileRequestData` is missing".into());
        return Kind::GetProfile(Vec::new());
    };
    let mut pairs: Vec<(&Value, &Value)> = Vec::new();
    fn single(v: &Value) -> Option<(&Value, &Value)> {
        let name = v.get("IdentifierName")?;
        // Connect's own documentation spells it both ways.
        let value = v
            .get("IdentifierValue")
            .or_else(|| v.get("IdentiferValue"))?;
        Some((name, value))
    }
    if let Some(p) = single(request) {
        pairs.push(p);
    }
    if let Some(list) = request.get("SearchCriteria").and_then(Value::as_array) {
        pairs.extend(list.iter().filter_map(single));
        if let Some(op) = request.get("LogicalOperator").and_then(scalar)
            && !op.eq_ignore_ascii_case("AND")
        {
            r.err(format!(
                "ProfileRequestData.LogicalOperator `{op}`: Careline searches patients with AND only"
            ));
        }
    }
    if pairs.is_empty() {
        r.err(
            "ProfileRequestData needs IdentifierName and IdentifierValue, or SearchCriteria".into(),
        );
    }
    let mut out: Vec<(Box<str>, Template)> = Vec::new();
    for (name, value) in pairs {
        let name = scalar(name).unwrap_or_default();
        let key = match name.trim_start_matches('_').to_ascii_lowercase().as_str() {
            "phone"
            | "phonenumber"
            | "mobilephonenumber"
            | "homephonenumber"
            | "businessphonenumber" => "phone",
            "account" | "accountnumber" | "mrn" => "mrn",
            "birthdate" | "dob" | "dateofbirth" => "dob",
            _ => {
                r.err(format!(
                    "GetCustomerProfile identifier `{name}`: Careline searches patients by a phone \
                     number (`_phone`, `PhoneNumber`) or by `AccountNumber` (the MRN) with `BirthDate`"
                ));
                continue;
            }
        };
        match scalar(value) {
            Some(v) => {
                let t = Template::parse(&v);
                r.check_paths(&t);
                out.push((key.into(), t));
            }
            None => r.err(format!("IdentifierValue of `{name}` must be a string")),
        }
    }
    let has = |k: &str| out.iter().any(|(n, _)| &**n == k);
    if has("mrn") != has("dob") {
        r.err("GetCustomerProfile: `AccountNumber` (MRN) and `BirthDate` go together".into());
    }
    Kind::GetProfile(out)
}

fn lambda(r: &mut Reader, params: &Value) -> Kind {
    let key = if params.get("FunctionArn").is_some() {
        "FunctionArn"
    } else {
        "LambdaFunctionARN"
    };
    let function = match r.reference(key, ResourceKind::Lambda) {
        Some(f) => f,
        None => {
            r.err(format!("parameter `{key}` is missing"));
            Ref::Dynamic(Template::parse(""))
        }
    };
    let limit_key = if params.get("TimeLimit").is_some() {
        "TimeLimit"
    } else {
        "InvocationTimeLimitSeconds"
    };
    let timeout = match params.get(limit_key) {
        None => LAMBDA_DEFAULT,
        Some(v) => match seconds(Some(v)) {
            Some(d) if d > Duration::ZERO && d <= LAMBDA_MAX => d,
            _ => {
                r.err(format!("`{limit_key}` must be between 1 and 8 seconds"));
                LAMBDA_DEFAULT
            }
        },
    };
    let map_key = if params.get("Parameters").is_some() {
        "Parameters"
    } else {
        "LambdaInvocationAttributes"
    };
    let parameters = r.string_map(map_key);
    let response = match params
        .get("ResponseValidation")
        .and_then(|v| v.get("ResponseType"))
        .and_then(scalar)
        .as_deref()
    {
        None | Some("STRING_MAP") => ResponseType::StringMap,
        Some("JSON") => ResponseType::Json,
        Some(other) => {
            r.err(format!(
                "ResponseValidation.ResponseType `{other}` is not STRING_MAP or JSON"
            ));
            ResponseType::StringMap
        }
    };
    Kind::InvokeLambda {
        function,
        timeout,
        parameters,
        response,
    }
}

/// A `QueuePriority` value: a whole number from 1 (Connect allows up to 2^63 - 1; beyond
/// u32 every value ranks last alike).
pub(crate) fn queue_priority(text: &str) -> Option<u32> {
    let n: u64 = text.trim().parse().ok()?;
    (n >= 1).then(|| u32::try_from(n).unwrap_or(u32::MAX))
}

/// A `QueueTimeAdjustmentSeconds` value: whole seconds from 0.
pub(crate) fn time_adjustment(text: &str) -> Option<Duration> {
    let n: u64 = text.trim().parse().ok()?;
    Some(Duration::from_secs(n.min(10 * 365 * 86_400)))
}
