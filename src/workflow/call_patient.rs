//! The CallPatient task (`careline:call-patient`): a workflow calls the patient. The number
//! comes from the patient's record (never from the workflow's input, so a typo in a
//! definition cannot ring a stranger), the call goes out through a trunk, and once the patient
//! answers a contact flow speaks the task's `message` in the patient's language and asks how
//! they are (`[workflows.call_patient] flow`, the shipped `patient-call`).
//!
//! What a clinic must never do is kept here: call a patient who has died, call at 3 a.m. (a
//! call due outside `hours` in the patient's time zone waits for the next opening, it is not
//! dropped), call one patient more than `max_calls_per_day` times, or call twice for one task
//! attempt. Each attempt is written to `patient_calls_placed` under its idempotency key before
//! the INVITE goes out: an invocation delivered again after a crash finds it, and answers
//! with the stored result, or with `CallPatient.Interrupted` when the process stopped during
//! the call (its fate unknown, the patient is not rung again; the state's Retry decides).
//!
//! Outcomes other than an answer are Step Functions errors that Retry and Catch match by
//! name: `CallPatient.Busy`, `CallPatient.NoAnswer`, `CallPatient.Declined`,
//! `CallPatient.NotFound`, `CallPatient.Unreachable`, `CallPatient.AnsweringMachine` (a
//! voicemail answered, with `answering_machine` screening on), `CallPatient.Failed` (and, before any
//! call, `CallPatient.NoPatient`, `CallPatient.NoPhone`, `CallPatient.Deceased`,
//! `CallPatient.DoNotCall`, `CallPatient.NoTrunk`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::call::dial::{CallOutcome, DialError, OutboundCall, Placed};
use crate::config::CallPatientConfig;
use crate::db::Db;
use crate::flow::lambda::TaskError;
use crate::keys::KeyRing;

pub const CALL_PATIENT: &str = "careline:call-patient";

/// Attributes the task gives the flow; what else the flow leaves in the contact's attributes
/// is the patient's answers.
const GIVEN: [&str; 5] = [
    "message",
    "language",
    "voice",
    "patient_id",
    "answering_machine",
];

/// How often a call waiting for calling hours looks at the wall clock again.
const TURN_RECHECK: Duration = Duration::from_secs(5);

/// `[workflows.call_patient] answering_machine`: what the flow does when a machine answers.
const ANSWERING_MACHINE: [&str; 3] = ["off", "hang_up", "leave_message"];

/// What the task needs of the running server: placing a call and hanging one up.
pub trait Dialer: Send + Sync {
    fn place(&self, call: OutboundCall) -> BoxFuture<'_, Result<Placed, DialError>>;
    /// Ends a call that ran past the task's timeout.
    fn hang_up(&self, call_id: &str);
}

impl Dialer for Arc<crate::call::CallServices> {
    fn place(&self, call: OutboundCall) -> BoxFuture<'_, Result<Placed, DialError>> {
        Box::pin(crate::call::dial::place(self, call))
    }

    fn hang_up(&self, call_id: &str) {
        self.table.send(
            call_id,
            crate::call::CallCommand::Hangup {
                cause: "task_timeout",
            },
        );
    }
}

/// The daily window in which patients are called, in local time.
#[derive(Debug, Clone)]
pub struct CallingHours {
    /// Minutes since midnight, [start, end).
    start: u16,
    end: u16,
    default_tz: jiff::tz::TimeZone,
}

impl CallingHours {
    /// `HH:MM-HH:MM` (start before end, within one day) and an IANA time zone.
    pub fn parse(hours: &str, time_zone: &str) -> Result<CallingHours, String> {
        let (start, end) = crate::flow::hours::daily_window(hours)
            .ok_or_else(|| format!("hours `{hours}` is not HH:MM-HH:MM within one day"))?;
        let default_tz = jiff::tz::TimeZone::get(time_zone)
            .map_err(|e| format!("time_zone `{time_zone}`: {e}"))?;
        Ok(CallingHours {
            start,
            end,
            default_tz,
        })
    }

    /// The earliest moment at or after `now` inside the window, in `tz`; and the start of
    /// that moment's local day (for counting the day's calls).
    pub fn next_opening(
        &self,
        now: jiff::Timestamp,
        tz: &jiff::tz::TimeZone,
    ) -> (jiff::Timestamp, jiff::Timestamp) {
        let local = now.to_zoned(tz.clone());
        let m = local.hour() as u16 * 60 + local.minute() as u16;
        let date = local.date();
        let at = |date: jiff::civil::Date, minute: u16| {
            let time = jiff::civil::Time::new((minute / 60) as i8, (minute % 60) as i8, 0, 0)
                .unwrap_or(jiff::civil::Time::midnight());
            date.to_datetime(time)
                .to_zoned(tz.clone())
                .map(|z| z.timestamp())
                .unwrap_or(now)
        };
        let day_start = |date: jiff::civil::Date| {
            date.to_zoned(tz.clone())
                .map(|z| z.timestamp())
                .unwrap_or(now)
        };
        if m < self.start {
            (at(date, self.start), day_start(date))
        } else if m < self.end {
            (now, day_start(date))
        } else {
            let tomorrow = date.tomorrow().unwrap_or(date);
            (at(tomorrow, self.start), day_start(tomorrow))
        }
    }

    /// The first opening of the local day after the one that starts at `day_start`.
    fn next_day(
        &self,
        day_start: jiff::Timestamp,
        tz: &jiff::tz::TimeZone,
    ) -> (jiff::Timestamp, jiff::Timestamp) {
        let date = day_start.to_zoned(tz.clone()).date();
        let next = date.tomorrow().unwrap_or(date);
        let midnight = next
            .to_zoned(tz.clone())
            .map(|z| z.timestamp())
            .unwrap_or(day_start);
        self.next_opening(midnight, tz)
    }
}

impl CallingHours {
    /// When a patient may next be called: the first moment from `now` inside the window of a
    /// local day with fewer than `max_per_day` of the calls `placed` (ms since the epoch).
    pub fn first_turn(
        &self,
        now: jiff::Timestamp,
        tz: &jiff::tz::TimeZone,
        placed: &[i64],
        max_per_day: u32,
    ) -> jiff::Timestamp {
        let (mut at, mut day) = self.next_opening(now, tz);
        // A week ahead at most: a limit of 0 would otherwise never find a day.
        for _ in 0..7 {
            let end = self.next_day(day, tz).1;
            let (from, to) = (day.as_millisecond(), end.as_millisecond());
            let calls = placed.iter().filter(|t| (from..to).contains(*t)).count();
            if calls < max_per_day as usize {
                break;
            }
            (at, day) = self.next_day(day, tz);
        }
        at
    }
}

/// Checks `[workflows.call_patient]` at load.
pub fn check_config(c: &CallPatientConfig) -> Result<(), String> {
    CallingHours::parse(&c.hours, &c.time_zone)?;
    if c.flow.is_empty() {
        return Err("flow must name a contact flow".into());
    }
    if c.timeout_secs == 0 {
        return Err("timeout_secs must be at least 1".into());
    }
    if c.max_calls_per_day == 0 {
        return Err("max_calls_per_day must be at least 1".into());
    }
    if !ANSWERING_MACHINE.contains(&c.answering_machine.as_str()) {
        return Err(format!(
            "answering_machine `{}` is not one of {}",
            c.answering_machine,
            ANSWERING_MACHINE.join(", ")
        ));
    }
    Ok(())
}

/// What the patient's record says about calling them.
#[derive(Debug, Clone, PartialEq)]
pub struct Callable {
    pub number: String,
    pub language: Option<String>,
    pub time_zone: Option<String>,
}

/// Why a patient is not called.
#[derive(Debug, Clone, PartialEq)]
pub enum NotCallable {
    Deceased,
    NoPhone,
    /// The record carries Careline's do-not-call extension ([`DO_NOT_CALL`]).
    DoNotCall,
}

/// A Patient extension (`valueBoolean: true`) that keeps every workflow from calling them: a
/// patient who asked not to be called, or whose clinician said so.
pub const DO_NOT_CALL: &str = "https://careline.dev/fhir/StructureDefinition/do-not-call";

/// Reads a FHIR Patient for calling: deceased patients and those flagged [`DO_NOT_CALL`] are
/// never called; the number is the
/// best current phone (`system` phone, not `old`, in `period` if given, mobile before home
/// before work before others, lowest `rank` first); the language is the preferred
/// `communication`; the time zone the `timezone` extension (an IANA name).
pub fn callable(patient: &Value) -> Result<Callable, NotCallable> {
    if patient.get("deceasedBoolean").and_then(Value::as_bool) == Some(true)
        || patient.get("deceasedDateTime").is_some()
    {
        return Err(NotCallable::Deceased);
    }
    let flagged = patient
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|e| {
            e.get("url").and_then(Value::as_str) == Some(DO_NOT_CALL)
                && e.get("valueBoolean").and_then(Value::as_bool) == Some(true)
        });
    if flagged {
        return Err(NotCallable::DoNotCall);
    }
    let now = jiff::Timestamp::now().to_string();
    let mut phones: Vec<(u8, u64, String)> = patient
        .get("telecom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| t.get("system").and_then(Value::as_str) == Some("phone"))
        .filter(|t| t.get("use").and_then(Value::as_str) != Some("old"))
        .filter(|t| {
            t.pointer("/period/end")
                .and_then(Value::as_str)
                .is_none_or(|end| end > now.as_str())
        })
        .filter_map(|t| {
            let value = t.get("value").and_then(Value::as_str)?;
            let class = match t.get("use").and_then(Value::as_str) {
                Some("mobile") => 0,
                Some("home") => 1,
                Some("work") => 2,
                _ => 3,
            };
            let rank = t.get("rank").and_then(Value::as_u64).unwrap_or(u64::MAX);
            Some((class, rank, value.to_string()))
        })
        .collect();
    phones.sort_by_key(|p| (p.1, p.0));
    let number = phones
        .into_iter()
        .find_map(|(_, _, v)| crate::call::dial::normalize_number(&v))
        .ok_or(NotCallable::NoPhone)?;
    let communication = patient
        .get("communication")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let preferred = communication
        .iter()
        .find(|c| c.get("preferred").and_then(Value::as_bool) == Some(true))
        .or(communication.first());
    let language = preferred
        .and_then(|c| c.pointer("/language/coding/0/code").and_then(Value::as_str))
        .map(|code| code.to_ascii_lowercase());
    let time_zone = patient
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|e| {
            e.get("url")
                .and_then(Value::as_str)
                .is_some_and(|u| u.ends_with("/timezone") || u.ends_with("/patient-timezone"))
        })
        .and_then(|e| e.get("valueCode").and_then(Value::as_str))
        .map(str::to_string);
    Ok(Callable {
        number,
        language,
        time_zone,
    })
}

/// The task's error for a call that was not answered, by the call's cause.
pub fn failure(cause: &str) -> TaskError {
    let (error, why) = match cause {
        "busy" => ("CallPatient.Busy", "the line was busy"),
        "no_answer" => ("CallPatient.NoAnswer", "nobody answered"),
        "declined" => ("CallPatient.Declined", "the call was declined"),
        "not_found" => ("CallPatient.NotFound", "the number does not exist"),
        "unreachable" => ("CallPatient.Unreachable", "the trunk did not answer"),
        "trunk_auth" => (
            "CallPatient.Failed",
            "the trunk refused Careline's credentials",
        ),
        _ => ("CallPatient.Failed", "the call failed"),
    };
    TaskError {
        error: error.into(),
        cause: format!("{why} ({cause})"),
    }
}

fn error(error: &str, cause: impl Into<String>) -> TaskError {
    TaskError {
        error: error.into(),
        cause: cause.into(),
    }
}

/// An answered call the flow found a machine had answered (`answered_by` = `machine`, set
/// by the patient-call flow after CheckOutboundCallStatus): the patient was not reached, an
/// error a Retry can call again after. None for a person.
pub fn machine_answered(outcome: &CallOutcome) -> Option<TaskError> {
    if outcome.attributes.get("answered_by").map(String::as_str) != Some("machine") {
        return None;
    }
    let left = outcome.attributes.get("voicemail").map(String::as_str) == Some("message_left");
    Some(error(
        "CallPatient.AnsweringMachine",
        if left {
            "an answering machine answered; a message asking the patient to call back was left"
        } else {
            "an answering machine answered; no message was left"
        },
    ))
}

/// The task's answer for a call that was answered: its input with `call` added (the brief's
/// workflow passes the whole result on).
pub fn answered(input: &Value, outcome: &CallOutcome) -> Value {
    let answers: serde_json::Map<String, Value> = outcome
        .attributes
        .iter()
        .filter(|(k, _)| !GIVEN.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let call = json!({
        "outcome": "answered",
        "call_id": outcome.call_id,
        "talk_time_secs": outcome.talk_time.as_secs(),
        "answers": answers,
    });
    super::input_with(input, [("call", call)])
}

/// The CallPatient task as the workflow runner calls it.
pub struct CallPatientTask {
    dialer: Arc<dyn Dialer>,
    patients: crate::patient::PatientStore,
    audit: crate::audit::Audit,
    db: Db,
    keys: Arc<KeyRing>,
    settings: CallPatientConfig,
    hours: CallingHours,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// A stored attempt: its outcome (None: the call had not ended) and sealed result.
type Ledger = (Option<String>, Option<String>);

/// The sealing context of a placed call's stored result.
pub(crate) fn ledger_context(key: &str) -> String {
    format!("patient-call:{key}")
}

impl CallPatientTask {
    pub fn new(
        dialer: Arc<dyn Dialer>,
        patients: crate::patient::PatientStore,
        audit: crate::audit::Audit,
        settings: CallPatientConfig,
    ) -> Result<CallPatientTask, String> {
        let hours = CallingHours::parse(&settings.hours, &settings.time_zone)?;
        let (db, keys) = patients.storage();
        let (db, keys) = (db.clone(), keys.clone());
        Ok(CallPatientTask {
            dialer,
            patients,
            audit,
            db,
            keys,
            settings,
            hours,
            metrics: None,
        })
    }

    /// Counts the care-coordination turnaround (`careline_care_first_contact_seconds`).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> CallPatientTask {
        self.metrics = Some(metrics);
        self
    }

    /// Seconds from the start of the execution of invocation `key` to now, if no call of that
    /// execution was answered before: its first successful contact.
    async fn first_contact_secs(&self, key: &str) -> Result<Option<f64>, sqlx::Error> {
        let execution = key.split('/').next().unwrap_or_default();
        let started: Option<(i64,)> =
            sqlx::query_as("SELECT started_at FROM workflow_executions WHERE id = $1")
                .bind(execution)
                .fetch_optional(self.db.pool())
                .await?;
        let Some((started,)) = started else {
            return Ok(None);
        };
        let (before,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM patient_calls_placed WHERE outcome = 'answered' \
             AND substr(idempotency_key, 1, length($1) + 1) = $1 || '/'",
        )
        .bind(execution)
        .fetch_one(self.db.pool())
        .await?;
        let secs = (crate::db::now_ms() - started).max(0) as f64 / 1000.0;
        Ok((before == 0).then_some(secs))
    }

    /// How long one call may take when its state sets no timeout.
    pub fn default_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.timeout_secs)
    }

    /// Runs the task for invocation `key`; `timeout` bounds the call itself (a wait for
    /// calling hours is not counted).
    pub async fn invoke(
        &self,
        input: &Value,
        key: &str,
        timeout: Duration,
    ) -> Result<Value, TaskError> {
        let store = |e: String| error("CallPatient.Failed", e);
        if let Some((outcome, result)) = self.ledger(key).await.map_err(store)? {
            return self.replay(key, outcome, result);
        }
        let patient_id = input
            .get("patient_id")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                error(
                    "CallPatient.NoPatient",
                    "the task input names no patient_id",
                )
            })?
            .to_string();
        let execution = key.split('/').next().unwrap_or_default().to_string();
        let record = self
            .patients
            .resources(&patient_id, &["Patient"])
            .await
            .map_err(|e| store(e.to_string()))?;
        let Some((_, patient)) = record.into_iter().next() else {
            return Err(error(
                "CallPatient.NoPatient",
                "no patient with that id in the store",
            ));
        };
        // Reading the patient's number for the call is a read of their record.
        let event =
            crate::audit::Event::new("workflow", crate::audit::action::PATIENT_READ, "success")
                .patient(&patient_id)
                .detail(json!({"execution": execution, "purpose": "call-patient"}));
        self.audit
            .append(event)
            .await
            .map_err(|e| store(e.to_string()))?;
        let callable = callable(&patient).map_err(|why| match why {
            NotCallable::Deceased => error(
                "CallPatient.Deceased",
                "the record says the patient has died: not called",
            ),
            NotCallable::NoPhone => error(
                "CallPatient.NoPhone",
                "the record has no phone number to call",
            ),
            NotCallable::DoNotCall => error(
                "CallPatient.DoNotCall",
                "the record says the patient is not to be called",
            ),
        })?;
        let tz = callable
            .time_zone
            .as_deref()
            .and_then(|z| jiff::tz::TimeZone::get(z).ok())
            .unwrap_or_else(|| self.hours.default_tz.clone());
        self.wait_for_turn(&patient_id, &tz).await.map_err(store)?;

        let language = match callable.language.as_deref() {
            Some(l) if l.starts_with("ja") => "ja",
            _ => "en",
        };
        let mut attributes = HashMap::new();
        attributes.insert("patient_id".to_string(), patient_id.clone());
        attributes.insert("language".to_string(), language.to_string());
        let voice = if language == "ja" { "Mizuki" } else { "Joanna" };
        attributes.insert("voice".to_string(), voice.to_string());
        if let Some(m) = input.get("message").and_then(Value::as_str) {
            attributes.insert("message".to_string(), m.to_string());
        }
        attributes.insert(
            "answering_machine".to_string(),
            self.settings.answering_machine.clone(),
        );
        // Written before the INVITE goes out: a crash from here on must not call again.
        let call_id = format!("out-{:032x}", rand::random::<u128>());
        self.record_placed(key, &patient_id, &call_id)
            .await
            .map_err(store)?;
        let call = OutboundCall {
            number: callable.number,
            trunk: Some(self.settings.trunk.clone()).filter(|t| !t.is_empty()),
            flow: Some(self.settings.flow.clone()),
            attributes,
            call_id: Some(call_id.clone()),
            queue: None,
        };
        let placed = match self.dialer.place(call).await {
            Ok(p) => p,
            Err(e) => {
                // Nothing was sent: the attempt is no call (and does not count for the day).
                self.forget(key).await;
                return Err(match e {
                    DialError::NoTrunk | DialError::WhichTrunk | DialError::UnknownTrunk(_) => {
                        error("CallPatient.NoTrunk", e.to_string())
                    }
                    _ => error("CallPatient.Failed", e.to_string()),
                });
            }
        };
        info!(execution, call = %call_id, "calling the patient");
        let outcome = match tokio::time::timeout(timeout, placed.outcome).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => {
                let e = error("CallPatient.Failed", "the call ended without an outcome");
                self.record_result(key, "error", &Err(e.clone())).await;
                return Err(e);
            }
            Err(_) => {
                self.dialer.hang_up(&call_id);
                let e = error(
                    "States.Timeout",
                    format!("the call took longer than {} s", timeout.as_secs()),
                );
                self.record_result(key, "timeout", &Err(e.clone())).await;
                return Err(e);
            }
        };
        let machine = machine_answered(&outcome);
        let result = match (outcome.answered, machine) {
            (true, Some(e)) => Err(e),
            (true, None) => Ok(answered(input, &outcome)),
            (false, _) => Err(failure(outcome.cause)),
        };
        let label = match (outcome.answered, result.is_err()) {
            (true, true) => "answering_machine",
            (true, false) => "answered",
            (false, _) => outcome.cause,
        };
        if result.is_ok()
            && let Some(m) = &self.metrics
        {
            match self.first_contact_secs(key).await {
                Ok(Some(secs)) => m.care_first_contact.observe(secs),
                Ok(None) => {}
                Err(e) => warn!(error = %e, "the turnaround could not be measured"),
            }
        }
        self.record_result(key, label, &result).await;
        result
    }

    /// Waits until the patient may be called: inside calling hours, under the day's limit.
    async fn wait_for_turn(&self, patient: &str, tz: &jiff::tz::TimeZone) -> Result<(), String> {
        let mut told = false;
        loop {
            let now = jiff::Timestamp::now();
            // Calls from a day back on: enough to count the patient's local day, whatever the
            // zone.
            let since = now.as_millisecond() - 26 * 3_600_000;
            let placed: Vec<(i64,)> = sqlx::query_as(
                "SELECT placed_at FROM patient_calls_placed WHERE patient_id = $1 AND placed_at >= $2",
            )
            .bind(patient)
            .bind(since)
            .fetch_all(self.db.pool())
            .await
            .map_err(|e| e.to_string())?;
            let placed: Vec<i64> = placed.into_iter().map(|(t,)| t).collect();
            let at = self
                .hours
                .first_turn(now, tz, &placed, self.settings.max_calls_per_day);
            let wait = at.duration_since(jiff::Timestamp::now());
            if !wait.is_positive() {
                return Ok(());
            }
            let wait = Duration::try_from(wait).unwrap_or_default();
            if !told {
                info!(
                    wait_secs = wait.as_secs(),
                    "the patient's call waits for calling hours"
                );
                told = true;
            }
            // The wait is on the wall clock (hours in the patient's zone), read again every
            // few seconds: a timer alone runs on the monotonic clock, which stands still while
            // the machine is suspended and knows nothing of the wall clock being set.
            tokio::time::sleep(wait.min(TURN_RECHECK)).await;
        }
    }

    async fn ledger(&self, key: &str) -> Result<Option<Ledger>, String> {
        sqlx::query_as(
            "SELECT outcome, result FROM patient_calls_placed WHERE idempotency_key = $1",
        )
        .bind(key)
        .fetch_optional(self.db.pool())
        .await
        .map_err(|e| e.to_string())
    }

    /// The answer of an attempt made before: stored, or Interrupted when it never ended.
    fn replay(
        &self,
        key: &str,
        outcome: Option<String>,
        result: Option<String>,
    ) -> Result<Value, TaskError> {
        let (Some(_), Some(sealed)) = (outcome, result) else {
            return Err(error(
                "CallPatient.Interrupted",
                "Careline stopped during this attempt's call; the patient is not called again for it",
            ));
        };
        let stored: Value = super::store::open_json(&self.keys, &ledger_context(key), &sealed)
            .map_err(|e| error("CallPatient.Failed", e.to_string()))?;
        match (stored.get("ok"), stored.get("error")) {
            (Some(ok), _) => Ok(ok.clone()),
            (None, Some(e)) => Err(error(
                e.as_str().unwrap_or("CallPatient.Failed"),
                stored
                    .get("cause")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            )),
            _ => Err(error("CallPatient.Failed", "stored result unreadable")),
        }
    }

    async fn record_placed(&self, key: &str, patient: &str, call_id: &str) -> Result<(), String> {
        sqlx::query(
            "INSERT INTO patient_calls_placed (idempotency_key, patient_id, call_id, placed_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(key)
        .bind(patient)
        .bind(call_id)
        .bind(crate::db::now_ms())
        .execute(self.db.pool())
        .await
        .map(drop)
        .map_err(|e| e.to_string())
    }

    async fn forget(&self, key: &str) {
        let deleted = sqlx::query("DELETE FROM patient_calls_placed WHERE idempotency_key = $1")
            .bind(key)
            .execute(self.db.pool())
            .await;
        if let Err(e) = deleted {
            warn!(error = %e, "an attempt that placed no call could not be forgotten");
        }
    }

    async fn record_result(&self, key: &str, outcome: &str, result: &Result<Value, TaskError>) {
        let stored = match result {
            Ok(v) => json!({"ok": v}),
            Err(e) => json!({"error": e.error, "cause": e.cause}),
        };
        let sealed = super::store::seal_json(&self.keys, &ledger_context(key), &stored);
        let written = sqlx::query(
            "UPDATE patient_calls_placed SET outcome = $1, result = $2 WHERE idempotency_key = $3",
        )
        .bind(outcome)
        .bind(sealed)
        .bind(key)
        .execute(self.db.pool())
        .await;
        if let Err(e) = written {
            warn!(error = %e, "the call's outcome could not be stored");
        }
    }
}

#[cfg(test)]
#[path = "call_patient_tests.rs"]
mod tests;
