//! The workflow shell in the server: starts executions, carries out their task invocations,
//! fires their timers and applies every answer through the [`Store`], one transaction per
//! transition.
//!
//! One task (the loop) applies every answer and timer, so two transitions of one execution
//! never race; invocations run beside it, each in its own task, and send their answer back.
//! On start the loop first carries out again every invocation left in the outbox by a
//! process that stopped (killed or not) before it was answered, under the same idempotency
//! key, and fires every timer that fell due while no process ran.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::execution::{Definition, Event, Execution};
use super::store::{Invocation, Store, StoreError, Summary};
use crate::db::WallClock;
use crate::flow::lambda::{Lambdas, TaskError};

/// The longest the loop sleeps without looking at the database: an execution another process
/// started (`careline patient import` starting a discharge follow-up) is taken up within this.
const MAX_SLEEP: Duration = Duration::from_secs(5);

/// How often the execution gauges are read from the database, at most.
const METRICS_EVERY: Duration = Duration::from_secs(1);

/// A timer this late is overdue (the server was down, or is overloaded).
const OVERDUE_MS: i64 = 60_000;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("no workflow named `{0}`")]
    NoWorkflow(String),
    #[error("an execution named `{0}` exists with another input")]
    NameTaken(String),
    #[error("an execution name is 1 to 40 letters, digits and hyphens")]
    BadName,
    #[error("[workflows] on_discharge names `{0}`, which is not among the workflows loaded")]
    NoDischargeWorkflow(String),
    #[error(
        "[workflows.tasks] maps `{function}` to `{task}`, which is no built-in task (there are: careline:risk-assessment, careline:notify-physician, careline:notify-care-team, careline:call-patient, careline:check-medication-refills, careline:schedule-appointment, careline:telemedicine-consultation)"
    )]
    NoBuiltin { function: String, task: String },
    #[error(transparent)]
    Rules(#[from] super::risk::RulesError),
    #[error("[workflows.appointments] {0}")]
    Appointments(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a start did.
#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    /// A new execution.
    New(Summary),
    /// A start under a name already started with the same input: that execution, unchanged
    /// (as Step Functions answers a repeated StartExecution), so a client that retries
    /// starts nothing twice.
    Existing(Summary),
}

/// A workflow definition failed to load: the file and every problem, named by state.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {problems}")]
pub struct LoadError {
    pub file: String,
    pub problems: String,
}

/// The workflows the server runs, by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    by_name: BTreeMap<String, (Arc<Definition>, String)>,
}

impl Catalog {
    /// Loads every `*.json` in `dir` (the built-in workflows when [`crate::shipped`] says
    /// so); a workflow is named by its file name without `.asl.json` or `.json`.
    pub fn load(dir: &Path) -> Result<Catalog, LoadError> {
        let mut files: Vec<(String, String, String)> = Vec::new();
        if crate::shipped::built_in(dir, crate::shipped::WORKFLOWS_DIR) {
            for (name, text) in crate::shipped::workflows() {
                files.push((
                    format!("{}/{name}", crate::shipped::ORIGIN),
                    name.to_string(),
                    text.to_string(),
                ));
            }
        } else {
            let entries = std::fs::read_dir(dir).map_err(|e| LoadError {
                file: dir.display().to_string(),
                problems: e.to_string(),
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).map_err(|e| LoadError {
                    file: path.display().to_string(),
                    problems: e.to_string(),
                })?;
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                files.push((path.display().to_string(), name, text));
            }
        }
        let mut by_name = BTreeMap::new();
        for (file, name, text) in files {
            let def = Definition::load(&text).map_err(|problems| LoadError {
                file: file.clone(),
                problems: problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            })?;
            let name = name
                .strip_suffix(".asl.json")
                .or_else(|| name.strip_suffix(".json"))
                .unwrap_or(&name)
                .to_string();
            by_name.insert(name, (Arc::new(def), text));
        }
        Ok(Catalog { by_name })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

enum Msg {
    Answer(Box<(Invocation, Event)>),
    /// A new timer may be earlier than the one the loop sleeps for.
    Wake,
}

/// Whether two mailboxes (`Name <box@host>` or `box@host`) are the same address.
fn same_address(a: &str, b: &str) -> bool {
    let bare = |s: &str| {
        let s = s.trim();
        match (s.rfind('<'), s.rfind('>')) {
            (Some(l), Some(r)) if l < r => s[l + 1..r].to_ascii_lowercase(),
            _ => s.to_ascii_lowercase(),
        }
    };
    bare(a) == bare(b)
}

/// Where each Task function is answered: its `[lambda.NAME] url` over HTTP, else the built-in
/// task `[workflows.tasks]` maps it to (RiskAssessment, by default).
#[derive(Clone)]
pub struct Tasks {
    lambdas: Lambdas,
    builtins: BTreeMap<String, Builtin>,
    risk: Arc<super::risk::RiskRules>,
    care: super::care_tasks::CareTasks,
    /// Where a new work-list item is told (`[workflows] care_task_webhook`,
    /// `[workflows.care_task_mail]`), through the outbox (none: told nowhere).
    notices: Option<crate::notify::Outbox>,
    /// An `[smtp]` relay is configured: items are e-mailed to the configured addresses and
    /// to the clinicians the patient's record names.
    mail_on: bool,
    webhook: Option<String>,
    mail: crate::config::CareTaskMailConfig,
    /// The CallPatient task, where calls can be placed (the server; not `workflow run`).
    call_patient: Option<Arc<super::call_patient::CallPatientTask>>,
    /// The patient store and audit trail, for tasks that read the patient's record.
    records: Option<(crate::patient::PatientStore, crate::audit::Audit)>,
    /// The clinic's bookable hours (`[workflows.appointments]`).
    clinic: super::appointments::Clinic,
    appointments: crate::config::AppointmentsConfig,
    /// Where a telehealth consultation's visit is booked (a room with the patient invited),
    /// with the invitations' signer and the rooms' settings; None: no room is booked.
    rooms: Option<(
        crate::rooms::store::RoomStore,
        Arc<crate::rooms::link::LinkSigner>,
        crate::config::RoomsConfig,
    )>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Builtin {
    Risk,
    /// An item on the care team's work list, of this kind.
    WorkList(&'static str),
    CallPatient,
    Refills,
    /// An appointment: a follow-up (false) or a telehealth consultation (true).
    Book(bool),
}

impl Tasks {
    /// Checks every mapping names a built-in task and loads the risk rules.
    pub fn new(
        lambdas: Lambdas,
        settings: &crate::config::WorkflowsConfig,
        care: super::care_tasks::CareTasks,
    ) -> Result<Tasks, RunnerError> {
        use super::care_tasks::{NOTIFY_CARE_TEAM, NOTIFY_PHYSICIAN};
        let mut builtins = BTreeMap::new();
        for (function, task) in &settings.tasks {
            let b = match task.as_str() {
                super::risk::RISK_ASSESSMENT => Builtin::Risk,
                NOTIFY_PHYSICIAN => Builtin::WorkList("physician"),
                NOTIFY_CARE_TEAM => Builtin::WorkList("care_team"),
                super::call_patient::CALL_PATIENT => Builtin::CallPatient,
                super::medication::CHECK_MEDICATION_REFILLS => Builtin::Refills,
                super::appointments::SCHEDULE_APPOINTMENT => Builtin::Book(false),
                super::appointments::TELEMEDICINE_CONSULTATION => Builtin::Book(true),
                other => {
                    return Err(RunnerError::NoBuiltin {
                        function: function.clone(),
                        task: other.to_string(),
                    });
                }
            };
            builtins.insert(function.clone(), b);
        }
        let risk = super::risk::RiskRules::load(settings.risk_rules.as_deref())?;
        let clinic = super::appointments::Clinic::from_config(&settings.appointments)
            .map_err(RunnerError::Appointments)?;
        Ok(Tasks {
            lambdas,
            builtins,
            risk: Arc::new(risk),
            care,
            notices: None,
            mail_on: false,
            webhook: settings.care_task_webhook.clone().filter(|u| !u.is_empty()),
            mail: settings.care_task_mail.clone(),
            call_patient: None,
            records: None,
            clinic,
            appointments: settings.appointments.clone(),
            rooms: None,
        })
    }

    /// Tells the webhook and the e-mail recipients of each new work-list item, by queueing
    /// notices in `outbox` (which the server's postman sends).
    /// With `mail_on` (an `[smtp]` relay configured) they are e-mailed as well.
    pub fn with_notices(mut self, outbox: crate::notify::Outbox, mail_on: bool) -> Tasks {
        self.notices = Some(outbox);
        self.mail_on = mail_on;
        self
    }

    /// The e-mail addresses the patient's record gives for an item of `kind` (the general
    /// practitioner, the active care team: see [`super::care_tasks::CareTasks::record_recipients`]);
    /// an audited read of the record. None found, or no record: empty.
    async fn record_recipients(
        &self,
        key: &str,
        patient: &str,
        kind: &str,
    ) -> Result<Vec<String>, TaskError> {
        use super::care_tasks::{CareTasks, email_addresses};
        let Some((patients, _)) = &self.records else {
            return Ok(Vec::new());
        };
        let record = self
            .read_record(key, patient, &["Patient", "CareTeam"], "notify")
            .await?;
        let (mut emails, refs) = CareTasks::record_recipients(kind, &record);
        for r in refs {
            let Some((rtype, rid)) = r.split_once('/') else {
                continue;
            };
            // Clinicians and organisations are shared resources, not the patient's.
            match patients.resource(rtype, rid).await {
                Ok(Some(res)) => emails.extend(email_addresses(&res)),
                Ok(None) => {}
                Err(e) => {
                    return Err(TaskError {
                        error: "Careline.Records".into(),
                        cause: e.to_string(),
                    });
                }
            }
        }
        Ok(emails)
    }

    /// Lets tasks read the patient's record (each read audited).
    /// Telehealth consultations also book their visit's room (`rooms`), the patient invited.
    pub fn with_rooms(
        mut self,
        store: crate::rooms::store::RoomStore,
        links: Arc<crate::rooms::link::LinkSigner>,
        config: crate::config::RoomsConfig,
    ) -> Tasks {
        self.rooms = Some((store, links, config));
        self
    }

    pub fn with_records(
        mut self,
        patients: crate::patient::PatientStore,
        audit: crate::audit::Audit,
    ) -> Tasks {
        self.records = Some((patients, audit));
        self
    }

    /// The patient's resources of `types` for a task of execution `key`: an audited read.
    async fn read_record(
        &self,
        key: &str,
        patient: &str,
        types: &[&str],
        purpose: &str,
    ) -> Result<Vec<Value>, TaskError> {
        let Some((patients, audit)) = &self.records else {
            return Ok(Vec::new());
        };
        let failed = |e: String| TaskError {
            error: "Careline.Records".into(),
            cause: e,
        };
        let execution = key.split('/').next().unwrap_or_default();
        let event =
            crate::audit::Event::new("workflow", crate::audit::action::PATIENT_READ, "success")
                .patient(patient)
                .detail(serde_json::json!({"execution": execution, "purpose": purpose}));
        audit
            .append(event)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let found = patients
            .resources(patient, types)
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok(found.into_iter().map(|(_, v)| v).collect())
    }

    /// Books the appointment a ScheduleAppointment or TelemedicineConsultation task asks for
    /// (see [`super::appointments`]): the same one when the invocation is delivered again.
    async fn book(&self, input: &Value, key: &str, telehealth: bool) -> Result<Value, TaskError> {
        use super::appointments::{answer, appointment, appointment_id, booking, busy};
        let fail = |error: &str, cause: String| TaskError {
            error: error.into(),
            cause,
        };
        let Some((patients, audit)) = &self.records else {
            return Err(fail(
                "Careline.Records",
                "no patient store in this process".into(),
            ));
        };
        let now = jiff::Timestamp::now();
        let b = booking(input, telehealth, now, &self.appointments, self.clinic.tz())
            .map_err(|e| fail("Careline.BadInput", e))?;
        if !patients
            .exists(&b.patient_id)
            .await
            .map_err(|e| fail("Careline.Records", e.to_string()))?
        {
            return Err(fail(
                "Careline.NoPatient",
                "no patient with that id in the store".into(),
            ));
        }
        let purpose = if telehealth {
            "telemedicine-consultation"
        } else {
            "schedule-appointment"
        };
        let theirs = self
            .read_record(key, &b.patient_id, &["Appointment"], purpose)
            .await?;
        let id = appointment_id(key);
        if let Some(made) = theirs.iter().find(|a| a["id"] == id.as_str()) {
            // Delivered again: the room and the invitation are made if a crash came before.
            if telehealth {
                let room = self.book_room(made, &b.patient_id).await?;
                self.invite_provider(made, b.provider.as_deref(), room.as_ref())
                    .await?;
                return Ok(with_room(answer(input, made), room));
            }
            return Ok(answer(input, made));
        }
        let slot = self
            .clinic
            .first_slot(b.after, b.minutes, &busy(&theirs))
            .ok_or_else(|| fail("Careline.NoSlot", "no free slot within a year".into()))?;
        let made = appointment(&id, &b, slot, now);
        let bundle = serde_json::json!({"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": made}]});
        let written = patients.import_bundle(&bundle).await;
        let event = crate::audit::Event::new(
            "workflow",
            crate::audit::action::PATIENT_WRITE,
            if written.is_ok() {
                "success"
            } else {
                "failure"
            },
        )
        .patient(&b.patient_id)
        .detail(
            serde_json::json!({"execution": key.split('/').next().unwrap_or_default(),
            "purpose": purpose, "appointment": id}),
        );
        audit
            .append(event)
            .await
            .map_err(|e| fail("Careline.Records", e.to_string()))?;
        written.map_err(|e| fail("Careline.Records", e.to_string()))?;
        info!(appointment = %id, start = %slot.0, "appointment proposed");
        if telehealth {
            let room = self.book_room(&made, &b.patient_id).await?;
            self.invite_provider(&made, b.provider.as_deref(), room.as_ref())
                .await?;
            return Ok(with_room(answer(input, &made), room));
        }
        Ok(answer(input, &made))
    }

    /// Books the telehealth visit's room for appointment `made` (its start; its patient
    /// invited), once: the room's id comes from the appointment's, so a delivery again finds
    /// it. None when this process books no rooms.
    async fn book_room(
        &self,
        made: &Value,
        patient_id: &str,
    ) -> Result<Option<crate::rooms::store::RoomRecord>, TaskError> {
        use crate::rooms::store::{Invitee, RoomRecord};
        use sha2::Digest as _;
        let Some((store, links, config)) = &self.rooms else {
            return Ok(None);
        };
        let failed = |e: String| TaskError {
            error: "Careline.Records".into(),
            cause: e,
        };
        let appointment = made["id"].as_str().unwrap_or_default();
        let digest = sha2::Sha256::digest(format!("room:{appointment}").as_bytes());
        let room_id = hex::encode(&digest[..8]);
        if let Some(room) = store
            .get(&room_id)
            .await
            .map_err(|e| failed(e.to_string()))?
        {
            return Ok(Some(room));
        }
        let start = made["start"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map_or_else(crate::db::now_ms, |t| t.as_millisecond());
        let now = crate::db::now_ms();
        let room = RoomRecord {
            id: room_id.clone(),
            title: "Telehealth consultation (care-coordination workflow)".into(),
            host: "workflow".into(),
            patient: Some(patient_id.to_string()),
            scheduled_at_ms: start,
            waiting_room: true,
            max_participants: config.max_participants as usize,
            host_leaves: Default::default(),
            created_at_ms: now,
            ended_at_ms: None,
            end_reason: None,
        };
        store
            .create(&room)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let invitee = Invitee {
            id: hex::encode(&digest[8..16]),
            role: crate::rooms::room::Role::Patient,
            label: "Patient".into(),
            expires_at_ms: start + i64::from(config.link_valid_hours) * 3_600_000,
            revoked: false,
        };
        let pin = links.pin(&room.id, &invitee.id);
        store
            .invite(&room.id, &invitee, &pin, now)
            .await
            .map_err(|e| failed(e.to_string()))?;
        info!(room = %room.id, appointment, "telehealth room booked");
        Ok(Some(room))
    }

    /// E-mails the provider of a telehealth consultation (their Practitioner record's
    /// address) the time it was proposed for, once per appointment: no patient data, the
    /// appointment's id to find it by. Nothing when no relay, provider or address.
    async fn invite_provider(
        &self,
        made: &Value,
        provider: Option<&str>,
        room: Option<&crate::rooms::store::RoomRecord>,
    ) -> Result<(), TaskError> {
        let (Some(outbox), Some(provider), Some((patients, _))) =
            (&self.notices, provider, &self.records)
        else {
            return Ok(());
        };
        if !self.mail_on {
            return Ok(());
        }
        let failed = |e: String| TaskError {
            error: "Careline.Records".into(),
            cause: e,
        };
        let Some(dr) = patients
            .resource("Practitioner", provider)
            .await
            .map_err(|e| failed(e.to_string()))?
        else {
            return Ok(());
        };
        let to = super::care_tasks::email_addresses(&dr);
        if to.is_empty() {
            return Ok(());
        }
        let id = made["id"].as_str().unwrap_or_default();
        let tz = self.clinic.tz();
        let local = |field: &str| {
            made[field]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map(|t| {
                    t.to_zoned(tz.clone())
                        .strftime("%Y-%m-%d %H:%M")
                        .to_string()
                })
                .unwrap_or_default()
        };
        let (start, end) = (local("start"), local("end"));
        let zone = tz.iana_name().unwrap_or("UTC");
        let notice = crate::notify::Notice {
            id: format!("appointment:{id}:provider"),
            channel: crate::notify::Channel::Mail,
            target: to,
            subject: format!("[Careline] Telehealth consultation proposed: {start}"),
            body: format!(
                "A care-coordination workflow proposed a telehealth consultation with you.\n\n\
                 When: {start} to {end} ({zone})\n\
                 Appointment: {id}\n{room}\n\
                 It is proposed: confirm it in the clinic's scheduler. Sign in to Careline to see \
                 the patient.\n",
                room = room
                    .map(|r| format!("Visit room (sign in, then join): /room/{}\n", r.id))
                    .unwrap_or_default(),
            ),
        };
        outbox
            .put(&notice, crate::db::now_ms())
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok(())
    }

    /// What the patient-call flow told the patient must happen: a nurse calls back when they
    /// reported new or worse symptoms (`unwell`), the care team hears at once of chest pain or
    /// trouble breathing (`urgent`), and follows up when they did not answer the question
    /// (`no_response`). Each is an item on the care team's work list (once per attempt, the
    /// webhook told), named in the answer as `call.care_task`.
    async fn keep_call_promise(
        &self,
        out: &mut Value,
        input: &Value,
        key: &str,
    ) -> Result<(), TaskError> {
        let wellbeing = out
            .pointer("/call/answers/wellbeing")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let urgency = match wellbeing.as_str() {
            "urgent" => "HIGH",
            "unwell" | "no_response" => "MEDIUM",
            _ => return Ok(()),
        };
        let item = serde_json::json!({
            "patient_id": input.get("patient_id"),
            "request": "patient_call_follow_up",
            "urgency": urgency,
            "wellbeing": wellbeing,
        });
        let id = self.work_list(key, "care_team", &item).await?;
        if let Some(call) = out.get_mut("call").and_then(Value::as_object_mut) {
            call.insert("care_task".into(), Value::String(id));
        }
        Ok(())
    }

    /// Puts an item on the care team's work list for invocation `key` (once) and queues its
    /// notices (webhook, e-mail; once); returns its id.
    async fn work_list(&self, key: &str, kind: &str, input: &Value) -> Result<String, TaskError> {
        let (id, _new) = self
            .care
            .add(key, kind, input, crate::db::now_ms())
            .await
            .map_err(|e| TaskError {
                error: "Careline.WorkList".into(),
                cause: e.to_string(),
            })?;
        // Queued whether the item is new or not: an invocation delivered again after a crash
        // between the item and its notices queues what is missing, and nothing twice.
        if let Some(outbox) = &self.notices {
            let mut to = Vec::new();
            if self.mail_on {
                to.extend(match kind {
                    "physician" => self.mail.physician.iter().cloned(),
                    _ => self.mail.care_team.iter().cloned(),
                });
                if let Some(patient) = input.get("patient_id").and_then(Value::as_str) {
                    for a in self.record_recipients(key, patient, kind).await? {
                        if !to.iter().any(|t| same_address(t, &a)) {
                            to.push(a);
                        }
                    }
                }
            }
            let notices = super::care_tasks::CareTasks::notices(
                &id,
                key,
                kind,
                input,
                self.webhook.as_deref(),
                &to,
                &self.mail.link_base,
            );
            for n in &notices {
                outbox
                    .put(n, crate::db::now_ms())
                    .await
                    .map_err(|e| TaskError {
                        error: "Careline.WorkList".into(),
                        cause: e.to_string(),
                    })?;
            }
        }
        Ok(id)
    }

    /// Lets CallPatient place calls (the server gives it its call layer).
    pub fn with_call_patient(mut self, task: super::call_patient::CallPatientTask) -> Tasks {
        self.call_patient = Some(Arc::new(task));
        self
    }

    /// How long `function` may take: the state's own `TimeoutSeconds`, else CallPatient's
    /// `[workflows.call_patient] timeout_secs` for a call, else `default`.
    pub fn timeout_for(
        &self,
        function: &str,
        state_secs: Option<u64>,
        default: Duration,
    ) -> Duration {
        if let Some(secs) = state_secs {
            return Duration::from_secs(secs);
        }
        match (self.builtin(function), &self.call_patient) {
            (Some(Builtin::CallPatient), Some(task)) => task.default_timeout(),
            _ => default,
        }
    }

    fn builtin(&self, function: &str) -> Option<Builtin> {
        if self.lambdas.has(function) {
            return None;
        }
        self.builtins.get(function).copied()
    }

    /// Runs the task `function` on `input`.
    pub async fn invoke(
        &self,
        function: &str,
        input: &Value,
        key: &str,
        timeout: Duration,
    ) -> Result<Value, TaskError> {
        if !self.lambdas.has(function)
            && let Some(b) = self.builtins.get(function)
        {
            return match b {
                Builtin::Risk => Ok(self.risk.assess(input)),
                Builtin::Refills => {
                    use super::medication::{DEFAULT_WITHIN_DAYS, answer, refills_due};
                    let requests = match input.get("patient_id").and_then(Value::as_str) {
                        Some(p) => {
                            self.read_record(key, p, &["MedicationRequest"], "medication-refills")
                                .await?
                        }
                        None => Vec::new(),
                    };
                    let within = input
                        .get("within_days")
                        .and_then(Value::as_i64)
                        .unwrap_or(DEFAULT_WITHIN_DAYS)
                        .clamp(0, 366);
                    let today = jiff::Zoned::now().date();
                    let due = refills_due(input, &requests, today, within);
                    let item = if due.is_empty() {
                        None
                    } else {
                        let request = serde_json::json!({
                            "patient_id": input.get("patient_id"),
                            "request": "medication_refill",
                            "refills_due": due,
                        });
                        Some(self.work_list(key, "care_team", &request).await?)
                    };
                    Ok(answer(input, &due, item.as_deref()))
                }
                Builtin::Book(telehealth) => self.book(input, key, *telehealth).await,
                Builtin::CallPatient => match &self.call_patient {
                    Some(task) => {
                        let mut out = task.invoke(input, key, timeout).await?;
                        self.keep_call_promise(&mut out, input, key).await?;
                        Ok(out)
                    }
                    None => Err(TaskError {
                        error: "CallPatient.Failed".into(),
                        cause: "placing calls needs the server (careline serve)".into(),
                    }),
                },
                Builtin::WorkList(kind) => {
                    let id = self.work_list(key, kind, input).await?;
                    Ok(super::care_tasks::CareTasks::answer(&id))
                }
            };
        }
        self.lambdas
            .invoke_task(function, input, key, timeout)
            .await
    }
}

/// Imports that contain a hospital discharge start `[workflows] on_discharge` for the patient
/// (see [`super::discharge`]).
#[derive(Clone)]
pub struct DischargeTrigger {
    starter: Starter,
    workflow: String,
    within_days: u32,
}

/// What a trigger did for one import: how many follow-ups it started and how many were
/// started already (the same discharge imported again), and what failed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Triggered {
    pub started: Vec<String>,
    pub repeated: usize,
    pub failed: Vec<String>,
}

impl DischargeTrigger {
    /// None when `[workflows] on_discharge` is empty; Err when it names no loaded workflow.
    pub fn new(
        starter: Starter,
        settings: &crate::config::WorkflowsConfig,
    ) -> Result<Option<DischargeTrigger>, RunnerError> {
        if settings.on_discharge.is_empty() {
            return Ok(None);
        }
        if !starter.catalog.by_name.contains_key(&settings.on_discharge) {
            return Err(RunnerError::NoDischargeWorkflow(
                settings.on_discharge.clone(),
            ));
        }
        Ok(Some(DischargeTrigger {
            starter,
            workflow: settings.on_discharge.clone(),
            within_days: settings.discharge_within_days,
        }))
    }

    /// Starts the follow-ups the stored resources of one import call for. With `runner`,
    /// their first tasks are carried out here at once; without (the CLI), the server's runner
    /// takes them from the outbox.
    pub async fn on_import(
        &self,
        care: &[crate::patient::StoredResource],
        now_ms: i64,
        runner: Option<&Workflows>,
    ) -> Triggered {
        let mut out = Triggered::default();
        for start in super::discharge::starts(care, now_ms, self.within_days) {
            let result = match runner {
                Some(w) => {
                    w.start_execution(&self.workflow, Some(&start.name), start.input)
                        .await
                }
                None => self
                    .starter
                    .start(&self.workflow, Some(&start.name), start.input, now_ms)
                    .await
                    .map(|(started, _)| started),
            };
            match result {
                Ok(Started::New(s)) => out.started.push(s.id),
                Ok(Started::Existing(_)) => out.repeated += 1,
                Err(e) => {
                    warn!(error = %e, "a discharge follow-up could not be started");
                    out.failed.push(e.to_string());
                }
            }
        }
        out
    }
}

/// What starts executions: the catalog, with each definition stored. The server's runner
/// has one; the CLI makes one to start executions that the server carries out (it finds
/// their first invocations in the outbox).
#[derive(Clone)]
pub struct Starter {
    store: Store,
    catalog: Catalog,
    /// Digest of each catalog entry's text, by name.
    digests: BTreeMap<String, String>,
}

impl Starter {
    /// Stores the catalog's definitions (once per distinct text).
    pub async fn new(store: Store, catalog: Catalog, now_ms: i64) -> Result<Starter, StoreError> {
        let mut digests = BTreeMap::new();
        for (name, (_, text)) in &catalog.by_name {
            digests.insert(name.clone(), store.define(name, text, now_ms).await?);
        }
        Ok(Starter {
            store,
            catalog,
            digests,
        })
    }

    /// Starts an execution of `workflow` with `input`: stored, its first invocations in the
    /// outbox, before this returns (they are returned too, for the caller to carry out if
    /// it runs tasks). With a `name`, the execution's id is `WORKFLOW.NAME` and a second
    /// start under that name is the first one again if the input is the same, an error if
    /// not.
    pub async fn start(
        &self,
        workflow: &str,
        name: Option<&str>,
        input: Value,
        now_ms: i64,
    ) -> Result<(Started, Vec<Invocation>), RunnerError> {
        let (def, _) = self
            .catalog
            .by_name
            .get(workflow)
            .ok_or_else(|| RunnerError::NoWorkflow(workflow.to_string()))?;
        let digest = self
            .digests
            .get(workflow)
            .ok_or_else(|| RunnerError::NoWorkflow(workflow.to_string()))?;
        let id = match name {
            Some(n) => {
                let valid = (1..=40).contains(&n.len())
                    && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if !valid {
                    return Err(RunnerError::BadName);
                }
                format!("{workflow}.{n}")
            }
            None => format!("{workflow}-{}", hex::encode(rand::random::<[u8; 8]>())),
        };
        let store = &self.store;
        let input_digest = store.input_digest(&input);
        let repeated = |stored: Option<String>| async {
            match stored {
                Some(d) if d == input_digest => {
                    Ok((Started::Existing(store.summary(&id).await?), Vec::new()))
                }
                _ => Err(RunnerError::NameTaken(id.clone())),
            }
        };
        if let Some(stored) = store.stored_input_digest(&id).await? {
            return repeated(Some(stored)).await;
        }
        let patient = input
            .get("patient_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut e = Execution::start(def.clone(), &id, input, now_ms, rand::random());
        let invocations = match store
            .create(
                workflow,
                digest,
                patient.as_deref(),
                &input_digest,
                &mut e,
                now_ms,
            )
            .await
        {
            Ok(i) => i,
            // Started meanwhile by a request just like this one.
            Err(StoreError::Exists(_)) => {
                let stored = store.stored_input_digest(&id).await?;
                return repeated(stored).await;
            }
            Err(e) => return Err(e.into()),
        };
        Ok((Started::New(store.summary(&id).await?), invocations))
    }
}

/// The running shell: cheap to clone, shared by the API.
#[derive(Clone)]
pub struct Workflows {
    inner: Arc<Inner>,
}

struct Inner {
    starter: Starter,
    store: Store,
    tasks: Tasks,
    task_timeout: Duration,
    clock: WallClock,
    tx: mpsc::UnboundedSender<Msg>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Keys of the invocations being carried out now (until their answer is applied).
    in_flight: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Workflows {
    /// Stores the catalog's definitions, starts the loop, and carries out what the last
    /// process left undone.
    pub async fn start(
        store: Store,
        catalog: Catalog,
        tasks: Tasks,
        task_timeout: Duration,
        clock: WallClock,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Result<Workflows, StoreError> {
        let starter = Starter::new(store.clone(), catalog, clock.now_ms()).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let w = Workflows {
            inner: Arc::new(Inner {
                starter,
                store,
                tasks,
                task_timeout,
                clock,
                tx,
                metrics,
                in_flight: Default::default(),
            }),
        };
        let pending = w.inner.store.outbox().await?;
        if !pending.is_empty() {
            info!(
                tasks = pending.len(),
                "workflow tasks left unanswered by the last process are carried out again"
            );
        }
        for invocation in pending {
            w.spawn_invocation(invocation);
        }
        tokio::spawn(run_loop(Arc::downgrade(&w.inner), rx));
        Ok(w)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.starter.catalog
    }

    pub fn starter(&self) -> &Starter {
        &self.inner.starter
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Starts an execution (see [`Starter::start`]) and carries out its first invocations.
    pub async fn start_execution(
        &self,
        workflow: &str,
        name: Option<&str>,
        input: Value,
    ) -> Result<Started, RunnerError> {
        let now = self.inner.clock.now_ms();
        let (started, invocations) = self.inner.starter.start(workflow, name, input, now).await?;
        if let Started::New(summary) = &started {
            info!(execution = %summary.id, workflow, "workflow execution started");
            self.counted_transition();
        }
        for inv in invocations {
            self.spawn_invocation(inv);
        }
        let _ = self.inner.tx.send(Msg::Wake);
        Ok(started)
    }

    /// The invocation's answer is stored (or no longer wanted): it is no longer in flight.
    fn landed(&self, invocation: &Invocation) {
        if let Ok(mut keys) = self.inner.in_flight.lock() {
            keys.remove(&invocation.key());
        }
    }

    fn counted_transition(&self) {
        if let Some(m) = &self.inner.metrics {
            m.workflow_transitions.inc();
        }
    }

    /// Carries out `invocation` unless it is being carried out already.
    fn spawn_invocation(&self, invocation: Invocation) {
        let fresh = self
            .inner
            .in_flight
            .lock()
            .map(|mut keys| keys.insert(invocation.key()))
            .unwrap_or(false);
        if !fresh {
            return;
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let function = super::function_name(&invocation.resource).to_string();
            let key = invocation.key();
            let timeout =
                inner
                    .tasks
                    .timeout_for(&function, invocation.timeout_secs, inner.task_timeout);
            let result = inner
                .tasks
                .invoke(&function, &invocation.input, &key, timeout)
                .await;
            let task = invocation.task.clone();
            let event = match result {
                Ok(output) => Event::TaskSucceeded { task, output },
                Err(e) => {
                    if let Some(m) = &inner.metrics {
                        m.workflow_task_failed(&e.error);
                    }
                    // The error's name only: its cause may carry the patient's data.
                    warn!(execution = %invocation.execution_id, state = %task.state, attempt = task.attempt, function, error = %e.error, "workflow task failed");
                    Event::TaskFailed {
                        task,
                        error: e.error,
                        cause: e.cause,
                    }
                }
            };
            let _ = inner.tx.send(Msg::Answer(Box::new((invocation, event))));
        });
    }
}

async fn run_loop(inner: std::sync::Weak<Inner>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut metrics_at = None::<tokio::time::Instant>;
    // Something changed since the gauges were last read.
    let mut dirty = true;
    // Answers the database would not take yet: applied again (never asked again: the task
    // stays in flight, so the outbox does not call it twice).
    let mut unapplied: Vec<(Invocation, Event)> = Vec::new();
    // Start carried out what the outbox held then.
    let mut outbox_at = tokio::time::Instant::now();
    loop {
        let Some(w) = inner.upgrade().map(|inner| Workflows { inner }) else {
            return;
        };
        if dirty && metrics_at.is_none_or(|at| at.elapsed() >= METRICS_EVERY) {
            metrics_at = Some(tokio::time::Instant::now());
            dirty = false;
            if let Err(e) = refresh_metrics(&w).await {
                warn!(error = %e, "workflow metrics could not be read");
            }
        }
        let mut still = Vec::new();
        for (invocation, event) in std::mem::take(&mut unapplied) {
            if apply_answer(&w, &invocation, &event).await.is_err() {
                still.push((invocation, event));
            } else {
                w.landed(&invocation);
            }
        }
        unapplied = still;
        // Every timer due now (those that fell due while no process ran included).
        if let Err(e) = fire_due(&w).await {
            warn!(error = %e, "workflow timers could not be read; trying again shortly");
        }
        // Invocations no task here carries out (another process started the execution): looked
        // for every MAX_SLEEP, not after every answer, since reading the outbox opens every
        // waiting task's input. Those of this process are in flight already.
        if outbox_at.elapsed() >= MAX_SLEEP {
            outbox_at = tokio::time::Instant::now();
            match w.inner.store.outbox().await {
                Ok(pending) => {
                    for invocation in pending {
                        w.spawn_invocation(invocation);
                    }
                }
                Err(e) => warn!(error = %e, "the workflow outbox could not be read"),
            }
        }
        let now = w.inner.clock.now_ms();
        let sleep = match w.inner.store.next_wake().await {
            Ok(Some(at)) => Duration::from_millis((at - now).clamp(0, i64::MAX) as u64),
            _ => MAX_SLEEP,
        }
        .min(if dirty || !unapplied.is_empty() {
            METRICS_EVERY
        } else {
            MAX_SLEEP
        });
        drop(w);
        let msg = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => Some(m),
                None => return,
            },
            _ = tokio::time::sleep(sleep) => None,
        };
        let Some(w) = inner.upgrade().map(|inner| Workflows { inner }) else {
            return;
        };
        // Also after a quiet sleep: the overdue gauge moves with the clock.
        dirty = true;
        if let Some(Msg::Answer(answer)) = msg {
            let (invocation, event) = *answer;
            match apply_answer(&w, &invocation, &event).await {
                Ok(()) => w.landed(&invocation),
                Err(e) => {
                    warn!(execution = %invocation.execution_id, error = %e, "a workflow task's answer could not be stored yet; trying again shortly");
                    unapplied.push((invocation, event));
                }
            }
        }
    }
}

async fn refresh_metrics(w: &Workflows) -> Result<(), StoreError> {
    let Some(m) = &w.inner.metrics else {
        return Ok(());
    };
    let counts = w.inner.store.count_by_status().await?;
    for status in super::store::STATUSES {
        let n = counts
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        m.workflow_executions
            .get_or_create(&vec![("status", status)])
            .set(n);
    }
    let overdue = w
        .inner
        .store
        .overdue(w.inner.clock.now_ms() - OVERDUE_MS)
        .await?;
    m.workflow_timers_overdue.set(overdue);
    Ok(())
}

async fn fire_due(w: &Workflows) -> Result<(), StoreError> {
    let store = &w.inner.store;
    let mut fired = std::collections::HashSet::new();
    loop {
        let now = w.inner.clock.now_ms();
        // Each execution once per round: one whose timer would not move cannot spin here.
        let due: Vec<String> = store
            .due(now, 100)
            .await?
            .into_iter()
            .filter(|id| fired.insert(id.clone()))
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        for (id, result) in fire_timers(store, due, now).await {
            let result = result.map(|stepped| {
                if let Some(invocations) = stepped {
                    for inv in invocations {
                        w.spawn_invocation(inv);
                    }
                    w.counted_transition();
                }
            });
            settle(w, &id, result).await?;
        }
    }
}

/// Fires the timers of these executions at `now` (each restored from its sealed snapshot and
/// stepped in one transaction), [`Store::parallel_steps`] at a time: independent executions
/// need not wait for each other's commits. Each id with its result: the task invocations
/// its step asks for, or `None` for an execution no longer running.
pub async fn fire_timers(
    store: &Store,
    ids: Vec<String>,
    now: i64,
) -> Vec<(String, Result<Option<Vec<Invocation>>, StoreError>)> {
    use futures::StreamExt;
    futures::stream::iter(ids)
        .map(|id| async move {
            let result = async {
                let Some(stored) = store.running(&id).await? else {
                    return Ok(None);
                };
                let (mut e, transitions) = store.restore(stored).await?;
                e.handle_timeout(now);
                store
                    .advance(&mut e, transitions, None, now)
                    .await
                    .map(Some)
            }
            .await;
            (id, result)
        })
        .buffer_unordered(store.parallel_steps())
        .collect()
        .await
}

/// What a step's error means for its execution: one that cannot be read is failed for good
/// (else its timer or task would be retried forever); one that moved on meanwhile (stopped)
/// needs nothing; any other error (the database) is passed up, to be tried again.
async fn settle(w: &Workflows, id: &str, result: Result<(), StoreError>) -> Result<(), StoreError> {
    match result {
        Ok(()) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e @ (StoreError::Corrupt { .. } | StoreError::NoExecution(_))) => {
            warn!(execution = %id, error = %e, "a workflow execution cannot be read: it is failed, and nothing of it is carried out again");
            w.inner
                .store
                .fail_unreadable(id, &e.to_string(), w.inner.clock.now_ms())
                .await?;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

async fn apply_answer(
    w: &Workflows,
    invocation: &Invocation,
    event: &Event,
) -> Result<(), StoreError> {
    let store = &w.inner.store;
    let id = &invocation.execution_id;
    // Two branches of a Parallel state (or a branch and a timer) can step the same
    // execution at once: the one whose transaction lost reads the execution again and
    // applies its answer to what the other made of it, so no answer is dropped.
    let mut attempts = 0;
    loop {
        let result = async {
            let Some(stored) = store.running(id).await? else {
                return Ok(());
            };
            let (mut e, transitions) = store.restore(stored).await?;
            let now = w.inner.clock.now_ms();
            e.handle(event.clone(), now);
            for inv in store
                .advance(&mut e, transitions, Some(&invocation.task), now)
                .await?
            {
                w.spawn_invocation(inv);
            }
            w.counted_transition();
            Ok(())
        }
        .await;
        attempts += 1;
        if matches!(result, Err(StoreError::Conflict { .. })) && attempts < 50 {
            tokio::task::yield_now().await;
            continue;
        }
        return settle(w, id, result).await;
    }
}

/// A telehealth booking's answer with its visit room: its id and the page clinicians join
/// (the patient's invitation is the room's: `GET /api/v1/rooms/{id}` with a service token).
fn with_room(answer: Value, room: Option<crate::rooms::store::RoomRecord>) -> Value {
    let Some(room) = room else {
        return answer;
    };
    let mut answer = answer;
    if let Some(a) = answer.get_mut("appointment").and_then(Value::as_object_mut) {
        a.insert("room_id".into(), Value::String(room.id.clone()));
        a.insert(
            "room_url".into(),
            Value::String(format!("/room/{}", room.id)),
        );
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Wait of one second, then a Task.
    const WAIT_THEN_CALL: &str = r#"{"StartAt": "W", "States": {
        "W": {"Type": "Wait", "Seconds": 1, "Next": "T"},
        "T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:CallPatient", "End": true}}}"#;

    #[tokio::test]
    async fn an_execution_whose_stored_state_cannot_be_read_is_failed_not_retried_forever() {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = Arc::new(
            crate::keys::KeyRing::open(dir.path(), crate::keys::Supplied::default())
                .expect("key ring"),
        );
        let db = crate::db::Db::open(None, dir.path())
            .await
            .expect("database");
        let store = Store::new(db.clone(), keys.clone());
        let defs = dir.path().join("defs");
        std::fs::create_dir_all(&defs).expect("folder");
        std::fs::write(defs.join("w.asl.json"), WAIT_THEN_CALL).expect("definition");
        let catalog = Catalog::load(&defs).expect("catalog");
        let now = crate::db::now_ms();
        let starter = Starter::new(store.clone(), catalog.clone(), now)
            .await
            .expect("starter");
        let (good, _) = starter
            .start("w", None, json_input(), now)
            .await
            .expect("start");
        let (bad, _) = starter
            .start("w", None, json_input(), now)
            .await
            .expect("start");
        let (Started::New(good), Started::New(bad)) = (good, bad) else {
            panic!("both new");
        };
        // The stored state of one is damaged (a disk fault, a lost key).
        sqlx::query("UPDATE workflow_executions SET snapshot = 'damaged' WHERE id = $1")
            .bind(&bad.id)
            .execute(db.pool())
            .await
            .expect("damage");
        let settings = crate::config::WorkflowsConfig::default();
        let tasks = Tasks::new(
            Lambdas::new(&BTreeMap::new(), crate::flow::http::HttpClient::new()),
            &settings,
            super::super::care_tasks::CareTasks::new(db, keys),
        )
        .expect("tasks");
        let _w = Workflows::start(
            store.clone(),
            catalog,
            tasks,
            Duration::from_secs(1),
            WallClock::system(),
            None,
        )
        .await
        .expect("runner");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let b = store.summary(&bad.id).await.expect("read");
            let g = store.summary(&good.id).await.expect("read");
            // The good one went on past its timer: the bad one did not hold it up.
            if b.status == super::super::store::FAILED && g.state == "T" {
                let outcome = b.outcome.expect("an outcome");
                assert_eq!(outcome["error"], "Careline.Unreadable");
                assert!(!outcome["cause"].as_str().unwrap_or("").contains("p-1"));
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "bad: {b:?}, good: {g:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let history = store.history(&bad.id).await.expect("history");
        assert_eq!(
            history.last().map(|h| h.kind.as_str()),
            Some("ExecutionFailed")
        );
        assert!(
            store
                .outbox()
                .await
                .expect("outbox")
                .iter()
                .all(|i| i.execution_id != bad.id)
        );
    }

    /// Tasks over a real store (SQLite in a temporary folder) holding `bundle`.
    struct Records {
        _dir: tempfile::TempDir,
        db: crate::db::Db,
        patients: crate::patient::PatientStore,
        care: super::super::care_tasks::CareTasks,
        tasks: Tasks,
    }

    impl Records {
        async fn with(bundle: Value) -> Records {
            let dir = tempfile::tempdir().expect("temp dir");
            let keys = Arc::new(
                crate::keys::KeyRing::open(dir.path(), crate::keys::Supplied::default())
                    .expect("keys"),
            );
            let db = crate::db::Db::open(None, dir.path()).await.expect("db");
            let tables = Arc::new(crate::patient::alerts::AlertTables::shipped());
            let patients = crate::patient::PatientStore::new(db.clone(), keys.clone(), tables, "1");
            patients.import_bundle(&bundle).await.expect("import");
            let audit = crate::audit::Audit::new(db.clone(), keys.clone());
            let care = super::super::care_tasks::CareTasks::new(db.clone(), keys);
            let tasks = Tasks::new(
                Lambdas::new(&BTreeMap::new(), crate::flow::http::HttpClient::new()),
                &crate::config::WorkflowsConfig::default(),
                care.clone(),
            )
            .expect("tasks")
            .with_records(patients.clone(), audit);
            Records {
                _dir: dir,
                db,
                patients,
                care,
                tasks,
            }
        }
    }

    #[tokio::test]
    async fn a_care_task_is_mailed_to_the_clinicians_the_record_names_and_those_configured() {
        let bundle = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p-1",
                "generalPractitioner": [{"reference": "Practitioner/dr-7"}]}},
            {"resource": {"resourceType": "Practitioner", "id": "dr-7",
                "telecom": [{"system": "email", "value": "dr.seven@clinic.example"}]}},
            {"resource": {"resourceType": "Practitioner", "id": "nurse-2",
                "telecom": [{"system": "email", "value": "Nurses@Clinic.example"}]}},
            {"resource": {"resourceType": "CareTeam", "id": "ct-1", "status": "active",
                "subject": {"reference": "Patient/p-1"},
                "participant": [{"member": {"reference": "Practitioner/nurse-2"}}]}}]});
        let r = Records::with(bundle).await;
        let mut settings = crate::config::WorkflowsConfig::default();
        settings.care_task_mail.care_team = vec!["Ward <nurses@clinic.example>".into()];
        settings.care_task_mail.physician = vec!["oncall@clinic.example".into()];
        let keys = Arc::new(
            crate::keys::KeyRing::open(r._dir.path(), crate::keys::Supplied::default())
                .expect("keys"),
        );
        let outbox = crate::notify::Outbox::new(r.db.clone(), keys.clone());
        let audit = crate::audit::Audit::new(r.db.clone(), keys);
        let tasks = Tasks::new(
            Lambdas::new(&BTreeMap::new(), crate::flow::http::HttpClient::new()),
            &settings,
            r.care.clone(),
        )
        .expect("tasks")
        .with_records(r.patients.clone(), audit)
        .with_notices(outbox.clone(), true);
        let input = serde_json::json!({"patient_id": "p-1", "urgency": "HIGH", "reason": "x"});
        let out = tasks
            .invoke(
                "NotifyPhysician",
                &input,
                "e-1/Notify/1",
                Duration::from_secs(5),
            )
            .await
            .expect("answered");
        let id = out["care_task"].as_str().expect("an item").to_string();
        let mail = outbox
            .get(&format!("care-task:{id}:mail"))
            .await
            .expect("read")
            .expect("queued");
        assert_eq!(
            mail.target,
            ["oncall@clinic.example", "dr.seven@clinic.example"]
        );
        let out = tasks
            .invoke(
                "NotifyCareteam",
                &input,
                "e-1/Tell/1",
                Duration::from_secs(5),
            )
            .await
            .expect("answered");
        let id = out["care_task"].as_str().expect("an item").to_string();
        let mail = outbox
            .get(&format!("care-task:{id}:mail"))
            .await
            .expect("read")
            .expect("queued");
        assert_eq!(
            mail.target,
            ["Ward <nurses@clinic.example>"],
            "the record's address is the configured one, told once"
        );
        let (reads,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'patient.read' AND patient_id = 'p-1'",
        )
        .fetch_one(r.db.pool())
        .await
        .expect("audit");
        assert_eq!(reads, 2, "each look into the record is audited");
    }

    #[tokio::test]
    async fn a_telehealth_consultation_invites_its_provider_by_mail_once() {
        let bundle = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p-1"}},
            {"resource": {"resourceType": "Practitioner", "id": "DR-7",
                "telecom": [{"system": "email", "value": "dr.seven@clinic.example"}]}}]});
        let r = Records::with(bundle).await;
        let keys = Arc::new(
            crate::keys::KeyRing::open(r._dir.path(), crate::keys::Supplied::default())
                .expect("keys"),
        );
        let outbox = crate::notify::Outbox::new(r.db.clone(), keys.clone());
        let tasks = Tasks::new(
            Lambdas::new(&BTreeMap::new(), crate::flow::http::HttpClient::new()),
            &crate::config::WorkflowsConfig::default(),
            r.care.clone(),
        )
        .expect("tasks")
        .with_records(
            r.patients.clone(),
            crate::audit::Audit::new(r.db.clone(), keys.clone()),
        )
        .with_notices(outbox.clone(), true)
        .with_rooms(
            crate::rooms::store::RoomStore::new(r.db.clone(), keys.clone()),
            Arc::new(crate::rooms::link::LinkSigner::new(
                keys.index_key("room-link"),
            )),
            crate::config::RoomsConfig::default(),
        );
        let rooms = crate::rooms::store::RoomStore::new(r.db.clone(), keys.clone());
        let t = Duration::from_secs(5);
        let consult =
            serde_json::json!({"patient_id": "p-1", "provider_id": "DR-7", "duration_minutes": 30});
        let c = tasks
            .invoke("TelemedicineConsultation", &consult, "e-1/Consult/1", t)
            .await
            .expect("booked");
        let again = tasks
            .invoke("TelemedicineConsultation", &consult, "e-1/Consult/1", t)
            .await
            .expect("the same booking");
        assert_eq!(c, again);
        let id = c["appointment"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("an appointment: {c}"))
            .to_string();
        let all = outbox.list(None, 10).await.expect("list");
        assert_eq!(all.len(), 1, "one invitation: {all:?}");
        assert_eq!(all[0].id, format!("appointment:{id}:provider"));
        assert_eq!(all[0].target, ["dr.seven@clinic.example"]);
        // The visit's room: booked once, at the appointment's start, about the patient, who
        // is invited.
        let room_id = c["appointment"]["room_id"]
            .as_str()
            .expect("a room")
            .to_string();
        assert_eq!(c["appointment"]["room_url"], format!("/room/{room_id}"));
        let room = rooms.get(&room_id).await.expect("read").expect("booked");
        assert_eq!(room.patient.as_deref(), Some("p-1"));
        let start: jiff::Timestamp = c["appointment"]["start"].as_str().unwrap().parse().unwrap();
        assert_eq!(room.scheduled_at_ms, start.as_millisecond());
        let invited = rooms.invitees(&room_id).await.expect("read");
        assert_eq!(invited.len(), 1, "invited once: {invited:?}");
        assert_eq!(invited[0].role, crate::rooms::room::Role::Patient);

        // A provider without an address, or no provider: nothing to send.
        let other = serde_json::json!({"patient_id": "p-1", "duration_minutes": 30});
        tasks
            .invoke("TelemedicineConsultation", &other, "e-2/Consult/1", t)
            .await
            .expect("booked");
        assert_eq!(outbox.list(None, 10).await.expect("list").len(), 1);
    }

    #[tokio::test]
    async fn the_refill_check_reads_the_record_and_asks_the_care_team_once() {
        let today = jiff::Zoned::now().date();
        let days = |n: i64| {
            today
                .checked_add(jiff::Span::new().days(n))
                .unwrap()
                .to_string()
        };
        let bundle = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p-1"}},
            {"resource": {"resourceType": "MedicationRequest", "id": "mr-1", "status": "active",
                "subject": {"reference": "Patient/p-1"},
                "medicationCodeableConcept": {"text": "Lisinopril 10 MG Oral Tablet"},
                "authoredOn": days(-25),
                "dispenseRequest": {"numberOfRepeatsAllowed": 5,
                    "expectedSupplyDuration": {"value": 30, "code": "d"}}}}]});
        let r = Records::with(bundle).await;
        let (db, care, tasks) = (&r.db, &r.care, &r.tasks);
        let input = serde_json::json!({"patient_id": "p-1", "medications": [
            {"name": "Metformin", "dose": "500mg", "refill_date": days(3)},
            {"name": "Atorvastatin", "dose": "20mg", "refill_date": days(30)}]});
        let out = tasks
            .invoke(
                "CheckMedicationRefills",
                &input,
                "e-1/Check/1",
                Duration::from_secs(5),
            )
            .await
            .expect("answered");
        let due = out["refills_due"].as_array().expect("a list");
        let names: Vec<&str> = due.iter().filter_map(|d| d["name"].as_str()).collect();
        assert_eq!(
            names,
            ["Metformin", "Lisinopril 10 MG Oral Tablet"],
            "{out}"
        );
        assert_eq!(due[1]["due"], days(5));
        assert_eq!(due[1]["source"], "record");
        let item = out["refill_request"]
            .as_str()
            .expect("an approval request")
            .to_string();
        let again = tasks
            .invoke(
                "CheckMedicationRefills",
                &input,
                "e-1/Check/1",
                Duration::from_secs(5),
            )
            .await
            .expect("answered");
        assert_eq!(
            again["refill_request"],
            item.as_str(),
            "one request per attempt"
        );
        let list = care.list(None, Some("p-1"), 10).await.expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].kind, "care_team");
        assert_eq!(list[0].detail["request"], "medication_refill");
        let (reads,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'patient.read' AND patient_id = 'p-1'",
        )
        .fetch_one(db.pool())
        .await
        .expect("audit");
        assert_eq!(reads, 2, "each reading of the record is audited");
    }

    #[tokio::test]
    async fn appointments_are_proposed_in_the_record_once_per_attempt_and_never_overlap() {
        let bundle = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p-1"}}]});
        let r = Records::with(bundle).await;
        let (patients, tasks) = (&r.patients, &r.tasks);
        let t = Duration::from_secs(5);
        let follow_up = serde_json::json!({"patient_id": "p-1", "appointment_type": "follow_up", "days_ahead": 0});
        let a = tasks
            .invoke(
                "ScheduleAppointment",
                &follow_up,
                "e-1/ScheduleFollowup/1",
                t,
            )
            .await
            .expect("booked");
        let again = tasks
            .invoke(
                "ScheduleAppointment",
                &follow_up,
                "e-1/ScheduleFollowup/1",
                t,
            )
            .await
            .expect("booked");
        assert_eq!(
            a["appointment"], again["appointment"],
            "delivered twice, booked once"
        );
        assert_eq!(a["appointment"]["status"], "proposed");
        let consult = serde_json::json!({"patient_id": "p-1", "provider_id": "DR-12345", "duration_minutes": 30});
        let c = tasks
            .invoke(
                "TelemedicineConsultation",
                &consult,
                "e-1/Day3Assessment/1",
                t,
            )
            .await
            .expect("booked");
        let stored = patients
            .resources("p-1", &["Appointment"])
            .await
            .expect("read");
        assert_eq!(stored.len(), 2, "{stored:?}");
        let span = |v: &Value| {
            let t = |k: &str| v[k].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
            (t("start"), t("end"))
        };
        let (s1, e1) = span(&a["appointment"]);
        let (s2, e2) = span(&c["appointment"]);
        assert!(e1 <= s2 || e2 <= s1, "no overlap: {a} {c}");
        assert!(s2 >= jiff::Timestamp::now(), "in the future");
        let summary = patients
            .summary("p-1")
            .await
            .expect("read")
            .expect("a patient");
        assert_eq!(summary.upcoming_appointments.len(), 2, "on the screen-pop");
        let nobody = tasks
            .invoke(
                "ScheduleAppointment",
                &serde_json::json!({"patient_id": "nobody"}),
                "e-2/S/1",
                t,
            )
            .await
            .unwrap_err();
        assert_eq!(nobody.error, "Careline.NoPatient");
    }

    fn json_input() -> Value {
        serde_json::json!({"patient_id": "p-1"})
    }
}
