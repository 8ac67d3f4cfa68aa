//! One execution of a state machine, sans-IO: fed task results and the time, it says which
//! task to invoke next and when it next needs the clock (`poll_timeout`), like the call core.
//! No sockets, clock or randomness inside: the shell invokes tasks, keeps the timers (in the
//! database, since a wait can last days) and passes the retry jitter's randomness in.
//!
//! Runs today: Task, Pass, Choice, Wait (with the `Days` extension), Succeed and Fail in the
//! JSONPath query language, with InputPath, Parameters, ResultSelector, ResultPath and
//! OutputPath, the context object (`$$`), Retry (IntervalSeconds, MaxAttempts, BackoffRate,
//! MaxDelaySeconds, JitterStrategy) and Catch, and the intrinsic functions (`States.Format`
//! and the rest, see `intrinsic`; MathRandom and UUID draw from the execution's stored random
//! state). [`Definition::load`] refuses, naming the state, what does not run yet: Parallel,
//! Map and JSONata states.
//!
//! Each task invocation carries a [`TaskId`] (state, attempt): the idempotency key a durable
//! shell stores, and the way a late or repeated answer is recognised and dropped.
//!
//! # Example
//!
//! A call that fails once and is retried after its interval, then a wait of a day, driven by
//! hand with milliseconds since the epoch as the clock.
//!
//! ```
//! use std::sync::Arc;
//! use careline::workflow::execution::{Action, Definition, Event, Execution, Outcome};
//! use serde_json::json;
//!
//! let def = Definition::load(r#"{
//!   "StartAt": "Call",
//!   "States": {
//!     "Call": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:CallPatient",
//!              "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 60}],
//!              "Next": "Later"},
//!     "Later": {"Type": "Wait", "Seconds": 86400, "End": true}
//!   }
//! }"#).unwrap();
//! let t0 = 1_800_000_000_000;
//! let mut run = Execution::start(Arc::new(def), "exec-1", json!({"patient": "p1"}), t0, 7);
//! let Some(Action::Invoke { task, .. }) = run.poll_action() else { panic!() };
//! assert_eq!(task.key("exec-1"), "exec-1/Call/1");
//! run.handle(Event::TaskFailed { task, error: "Busy".into(), cause: String::new() }, t0);
//! assert_eq!(run.poll_timeout(), Some(t0 + 60_000)); // the retry's interval
//! run.handle_timeout(t0 + 60_000);
//! let Some(Action::Invoke { task, .. }) = run.poll_action() else { panic!() };
//! assert_eq!(task.attempt, 2);
//! run.handle(Event::TaskSucceeded { task, output: json!({"reached": true}) }, t0 + 61_000);
//! assert_eq!(run.poll_timeout(), Some(t0 + 61_000 + 86_400_000)); // the day's wait
//! run.handle_timeout(t0 + 61_000 + 86_400_000);
//! assert_eq!(
//!     run.poll_action(),
//!     Some(Action::Finished(Outcome::Succeeded(json!({"reached": true}))))
//! );
//! ```

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::path;
use super::validate::{Problem, validate};

/// A state machine ready to run: validated, and using only what runs today.
#[derive(Debug, Clone)]
pub struct Definition {
    start_at: String,
    states: HashMap<String, Map<String, Value>>,
}

impl Definition {
    /// Loads a definition: every validation error, and anything that does not run yet, is an
    /// error naming the state.
    pub fn load(text: &str) -> Result<Definition, Vec<Problem>> {
        let mut problems: Vec<Problem> = validate(text)
            .into_iter()
            .filter(Problem::is_error)
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        let top: Map<String, Value> = serde_json::from_str(text).map_err(|e| {
            vec![Problem {
                severity: super::Severity::Error,
                state: None,
                rule: format!("not JSON: {e}"),
            }]
        })?;
        let not_yet = |state: Option<&str>, rule: String| Problem {
            severity: super::Severity::Error,
            state: state.map(str::to_string),
            rule,
        };
        if top.get("QueryLanguage").and_then(Value::as_str) == Some("JSONata") {
            problems.push(not_yet(
                None,
                "JSONata state machines do not run yet".into(),
            ));
        }
        let mut states = HashMap::new();
        for (name, s) in top
            .get("States")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let Some(s) = s.as_object() else { continue };
            let kind = s.get("Type").and_then(Value::as_str).unwrap_or_default();
            if matches!(kind, "Parallel" | "Map") {
                problems.push(not_yet(Some(name), format!("{kind} states do not run yet")));
            }
            if s.get("QueryLanguage").and_then(Value::as_str) == Some("JSONata") {
                problems.push(not_yet(Some(name), "JSONata states do not run yet".into()));
            }
            for field in ["Parameters", "ResultSelector"] {
                let mut calls = Vec::new();
                if let Some(v) = s.get(field) {
                    intrinsics(v, &mut calls);
                }
                for (key, text) in calls {
                    if let Err(e) = super::intrinsic::parse(text) {
                        problems.push(not_yet(Some(name), format!("`{field}.{key}`: {e}")));
                    }
                }
            }
            states.insert(name.clone(), s.clone());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Definition {
            start_at: top
                .get("StartAt")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            states,
        })
    }
}

/// The function a Task's Lambda ARN names (`arn:aws:lambda:REGION:ACCOUNT:function:NAME`,
/// with or without a version or alias after it); any other resource as written.
pub fn function_name(resource: &str) -> &str {
    match resource.split_once(":function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
        None => resource,
    }
}

/// The intrinsic calls (`States.*` in a `.$` field) of a payload template, with their keys.
fn intrinsics<'a>(v: &'a Value, out: &mut Vec<(&'a str, &'a str)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v.as_str() {
                    Some(text) if k.ends_with(".$") && text.trim_start().starts_with("States.") => {
                        out.push((k.as_str(), text))
                    }
                    _ => intrinsics(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| intrinsics(v, out)),
        _ => {}
    }
}

/// Which invocation a task answer belongs to: the state and the attempt (1 for the first).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskId {
    pub state: String,
    pub attempt: u32,
}

impl TaskId {
    /// The idempotency key of this invocation in execution `execution`: the same for every
    /// delivery of it (a repeat after a restart included), different for every other.
    pub fn key(&self, execution: &str) -> String {
        format!("{execution}/{}/{}", self.state, self.attempt)
    }
}

/// What the execution asks the shell to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Run the task `resource` with `input`; answer with [`Event::TaskSucceeded`] or
    /// [`Event::TaskFailed`] carrying `task`.
    Invoke {
        task: TaskId,
        resource: String,
        input: Value,
        /// The state's `TimeoutSeconds` (or `TimeoutSecondsPath`): past it the shell answers
        /// `States.Timeout`. None: the shell's default.
        timeout_secs: Option<u64>,
    },
    /// The execution ended.
    Finished(Outcome),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Succeeded(Value),
    Failed { error: String, cause: String },
}

/// What the shell tells the execution.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    TaskSucceeded {
        task: TaskId,
        output: Value,
    },
    TaskFailed {
        task: TaskId,
        error: String,
        cause: String,
    },
}

/// One line of the execution's history, named as Step Functions names its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEvent {
    pub at_ms: i64,
    pub kind: &'static str,
    pub state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Phase {
    /// Waiting for the answer to this invocation.
    Task(TaskId),
    /// A Wait state or a retry's back-off, until this time (ms since the epoch).
    Sleeping {
        until_ms: i64,
        retry: bool,
    },
    Done,
}

/// One execution. `now_ms` everywhere is wall time in milliseconds since the Unix epoch.
#[derive(Debug)]
pub struct Execution {
    def: std::sync::Arc<Definition>,
    run: Run,
    history: Vec<HistoryEvent>,
}

/// What an execution is between two events, but its definition and history: what a durable
/// shell stores after every transition ([`Execution::snapshot`]) and resumes from
/// ([`Execution::restore`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(flatten)]
    run: Run,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Run {
    id: String,
    input: Value,
    started_ms: i64,
    /// The current state and its raw input.
    state: String,
    state_input: Value,
    /// A Task's input after InputPath and Parameters, kept for its retries.
    task_input: Value,
    /// A Task's timeout, kept for its retries.
    #[serde(default)]
    task_timeout_secs: Option<u64>,
    entered_ms: i64,
    /// Attempts made per Retry rule of the current state.
    retries: Vec<u32>,
    attempt: u32,
    phase: Phase,
    actions: VecDeque<Action>,
    /// Randomness for full jitter, passed in (xorshift state).
    jitter: u64,
}

impl Execution {
    /// Starts an execution at `now_ms`; `seed` is the randomness full jitter uses.
    pub fn start(
        def: std::sync::Arc<Definition>,
        id: &str,
        input: Value,
        now_ms: i64,
        seed: u64,
    ) -> Execution {
        let state = def.start_at.clone();
        let mut e = Execution {
            def,
            history: Vec::new(),
            run: Run {
                id: id.to_string(),
                input: input.clone(),
                started_ms: now_ms,
                state: String::new(),
                state_input: Value::Null,
                task_input: Value::Null,
                task_timeout_secs: None,
                entered_ms: now_ms,
                retries: Vec::new(),
                attempt: 0,
                phase: Phase::Done,
                actions: VecDeque::new(),
                jitter: splitmix64(seed) | 1,
            },
        };
        e.record(now_ms, "ExecutionStarted", None);
        e.enter(state, input, now_ms);
        e
    }

    /// Resumes a stored execution under its definition (the one it started under: a shell
    /// pins each execution to its definition's text). Err when the snapshot does not fit it.
    pub fn restore(
        def: std::sync::Arc<Definition>,
        snapshot: Snapshot,
    ) -> Result<Execution, String> {
        let run = snapshot.run;
        if run.phase != Phase::Done && !def.states.contains_key(&run.state) {
            return Err(format!("the definition has no state `{}`", run.state));
        }
        Ok(Execution {
            def,
            run,
            history: Vec::new(),
        })
    }

    /// The execution as it is now, its pending actions included (a shell that stores this
    /// before carrying them out finds them again after a crash); its history is taken apart,
    /// by [`Execution::take_history`].
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            run: self.run.clone(),
        }
    }

    /// The history recorded since the last call (all of it since start or restore).
    pub fn take_history(&mut self) -> Vec<HistoryEvent> {
        std::mem::take(&mut self.history)
    }

    pub fn id(&self) -> &str {
        &self.run.id
    }

    /// The state the execution is in (the last one, once finished).
    pub fn state(&self) -> &str {
        &self.run.state
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.run.actions.pop_front()
    }

    /// When the execution next needs [`Execution::handle_timeout`] (ms since the epoch).
    pub fn poll_timeout(&self) -> Option<i64> {
        match self.run.phase {
            Phase::Sleeping { until_ms, .. } => Some(until_ms),
            _ => None,
        }
    }

    pub fn history(&self) -> &[HistoryEvent] {
        &self.history
    }

    pub fn is_finished(&self) -> bool {
        self.run.phase == Phase::Done
    }

    pub fn handle_timeout(&mut self, now_ms: i64) {
        let Phase::Sleeping { until_ms, retry } = self.run.phase else {
            return;
        };
        if now_ms < until_ms {
            return;
        }
        if retry {
            self.invoke(now_ms);
        } else {
            // finish_state records WaitStateExited.
            let output = self.run.state_input.clone();
            let s = self.current().clone();
            self.finish_state(&s, output, now_ms);
        }
    }

    /// An answer from a task. One for another invocation (late, repeated, or for an attempt
    /// already given up) changes nothing.
    pub fn handle(&mut self, event: Event, now_ms: i64) {
        let (Event::TaskSucceeded { task, .. } | Event::TaskFailed { task, .. }) = &event;
        if self.run.phase != Phase::Task(task.clone()) {
            return;
        }
        let s = self.current().clone();
        match event {
            Event::TaskSucceeded { output, .. } => {
                self.record(now_ms, "TaskSucceeded", Some(self.run.state.clone()));
                let result = match s.get("ResultSelector") {
                    Some(t) => match self.apply_template(t, &output) {
                        Ok(v) => v,
                        Err((error, cause)) => return self.fail_state(error, &cause, now_ms),
                    },
                    None => output,
                };
                self.complete_with_result(&s, result, now_ms);
            }
            Event::TaskFailed { error, cause, .. } => {
                self.record(now_ms, "TaskFailed", Some(self.run.state.clone()));
                self.fail_state(&error, &cause, now_ms);
            }
        }
    }

    fn record(&mut self, at_ms: i64, kind: &'static str, state: Option<String>) {
        self.history.push(HistoryEvent { at_ms, kind, state });
    }

    fn current(&self) -> &Map<String, Value> {
        &self.def.states[&self.run.state]
    }

    fn context(&self) -> Value {
        json!({
            "Execution": {
                "Id": self.run.id,
                "Input": self.run.input,
                "StartTime": rfc3339(self.run.started_ms),
            },
            "State": {
                "Name": self.run.state,
                "EnteredTime": rfc3339(self.run.entered_ms),
                "RetryCount": self.run.attempt.saturating_sub(1),
            },
        })
    }

    fn enter(&mut self, state: String, input: Value, now_ms: i64) {
        self.run.state = state;
        self.run.state_input = input;
        self.run.entered_ms = now_ms;
        self.run.attempt = 0;
        let s = self.current().clone();
        self.run.retries = vec![0; s.get("Retry").and_then(Value::as_array).map_or(0, Vec::len)];
        let kind = s.get("Type").and_then(Value::as_str).unwrap_or_default();
        self.record(now_ms, entered_event(kind), Some(self.run.state.clone()));
        // InputPath: `$` when absent, an empty object when null.
        let effective = match s.get("InputPath") {
            None => Ok(self.run.state_input.clone()),
            Some(Value::Null) => Ok(json!({})),
            Some(Value::String(p)) => self.read(p, &self.run.state_input.clone(), "InputPath"),
            Some(_) => Ok(self.run.state_input.clone()),
        };
        let effective = match effective {
            Ok(v) => v,
            Err(cause) => return self.fail_state("States.Runtime", &cause, now_ms),
        };
        match kind {
            "Task" => {
                let timeout = match (s.get("TimeoutSeconds"), s.get("TimeoutSecondsPath")) {
                    (Some(t), _) => Ok(t.as_u64()),
                    (None, Some(Value::String(p))) => match self.read(
                        p,
                        &effective,
                        "TimeoutSecondsPath",
                    ) {
                        Ok(v) => v.as_u64().filter(|t| *t > 0).map(Some).ok_or_else(|| {
                            format!(
                                "TimeoutSecondsPath `{p}` is not a positive whole number of seconds"
                            )
                        }),
                        Err(cause) => Err(cause),
                    },
                    _ => Ok(None),
                };
                match timeout {
                    Ok(t) => self.run.task_timeout_secs = t,
                    Err(cause) => return self.fail_state("States.Runtime", &cause, now_ms),
                }
                let input = match s.get("Parameters") {
                    Some(t) => match self.apply_template(t, &effective) {
                        Ok(v) => v,
                        Err((error, cause)) => return self.fail_state(error, &cause, now_ms),
                    },
                    None => effective,
                };
                self.run.task_input = input;
                self.invoke(now_ms);
            }
            "Pass" => {
                let result = match (s.get("Result"), s.get("Parameters")) {
                    (Some(r), _) => Ok(r.clone()),
                    (None, Some(t)) => self.apply_template(t, &effective),
                    (None, None) => Ok(effective),
                };
                match result {
                    Ok(r) => self.complete_with_result(&s, r, now_ms),
                    Err((error, cause)) => self.fail_state(error, &cause, now_ms),
                }
            }
            "Choice" => self.choose(&s, effective, now_ms),
            "Wait" => match wait_until(&s, &effective, &self.context(), now_ms) {
                Ok(until_ms) => {
                    self.run.state_input = effective;
                    self.run.phase = Phase::Sleeping {
                        until_ms,
                        retry: false,
                    };
                }
                Err(cause) => self.fail_state("States.Runtime", &cause, now_ms),
            },
            "Succeed" => {
                self.record(now_ms, "SucceedStateExited", Some(self.run.state.clone()));
                match self.output_path(&s, effective) {
                    Ok(out) => self.end(Outcome::Succeeded(out), now_ms),
                    Err(cause) => self.fail_state("States.Runtime", &cause, now_ms),
                }
            }
            "Fail" => {
                let text = |k: &str, kp: &str| {
                    s.get(k)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .or_else(|| {
                            s.get(kp)
                                .and_then(Value::as_str)
                                .and_then(|p| path::get(p, &effective, &Value::Null).ok().flatten())
                                .and_then(Value::as_str)
                                .map(str::to_string)
                        })
                        .unwrap_or_default()
                };
                let (error, cause) = (text("Error", "ErrorPath"), text("Cause", "CausePath"));
                self.end(Outcome::Failed { error, cause }, now_ms);
            }
            other => {
                let cause = format!("{other} states do not run yet");
                self.fail_state("States.Runtime", &cause, now_ms);
            }
        }
    }

    fn invoke(&mut self, now_ms: i64) {
        self.run.attempt += 1;
        let task = TaskId {
            state: self.run.state.clone(),
            attempt: self.run.attempt,
        };
        let resource = self
            .current()
            .get("Resource")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let input = self.run.task_input.clone();
        self.record(now_ms, "TaskScheduled", Some(self.run.state.clone()));
        self.run.phase = Phase::Task(task.clone());
        self.run.actions.push_back(Action::Invoke {
            task,
            resource,
            input,
            timeout_secs: self.run.task_timeout_secs,
        });
    }

    /// A result placed into the state's raw input as `result_path` (a state's or a Catch
    /// rule's ResultPath) says: absent, the result replaces the input; null, it is dropped.
    fn place(&self, result_path: Option<&Value>, result: Value) -> Result<Value, String> {
        match result_path {
            Some(Value::Null) => Ok(self.run.state_input.clone()),
            Some(Value::String(p)) => path::set(p, self.run.state_input.clone(), result),
            _ => Ok(result),
        }
    }

    /// ResultPath, OutputPath, then the transition.
    fn complete_with_result(&mut self, s: &Map<String, Value>, result: Value, now_ms: i64) {
        let output = self
            .place(s.get("ResultPath"), result)
            .and_then(|c| self.output_path(s, c));
        match output {
            Ok(out) => self.finish_state(s, out, now_ms),
            Err(cause) => self.fail_state("States.Runtime", &cause, now_ms),
        }
    }

    fn output_path(&self, s: &Map<String, Value>, v: Value) -> Result<Value, String> {
        match s.get("OutputPath") {
            None => Ok(v),
            Some(Value::Null) => Ok(json!({})),
            Some(Value::String(p)) => self.read(p, &v, "OutputPath"),
            Some(_) => Ok(v),
        }
    }

    fn finish_state(&mut self, s: &Map<String, Value>, output: Value, now_ms: i64) {
        let kind = s.get("Type").and_then(Value::as_str).unwrap_or_default();
        self.record(now_ms, exited_event(kind), Some(self.run.state.clone()));
        if s.get("End") == Some(&Value::Bool(true)) {
            self.end(Outcome::Succeeded(output), now_ms);
        } else if let Some(next) = s.get("Next").and_then(Value::as_str) {
            self.enter(next.to_string(), output, now_ms);
        } else {
            self.end(Outcome::Succeeded(output), now_ms);
        }
    }

    /// An error in the current state: a matching Retry rule tries again after its back-off,
    /// else a matching Catch rule goes on with the error, else the execution fails.
    fn fail_state(&mut self, error: &str, cause: &str, now_ms: i64) {
        let s = self.current().clone();
        let is_task = s.get("Type").and_then(Value::as_str) == Some("Task");
        if is_task && let Some(delay) = self.retry_delay(&s, error) {
            self.run.phase = Phase::Sleeping {
                until_ms: now_ms + delay,
                retry: true,
            };
            return;
        }
        let catchers = s
            .get("Catch")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(c) = catchers.iter().find(|c| matches_error(c, error)) {
            let combined = self.place(c.get("ResultPath"), json!({"Error": error, "Cause": cause}));
            let next = c
                .get("Next")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            match combined {
                Ok(v) => {
                    self.record(now_ms, exited_event("Task"), Some(self.run.state.clone()));
                    self.enter(next, v, now_ms);
                }
                Err(e) => self.end(
                    Outcome::Failed {
                        error: "States.Runtime".into(),
                        cause: e,
                    },
                    now_ms,
                ),
            }
            return;
        }
        self.end(
            Outcome::Failed {
                error: error.to_string(),
                cause: cause.to_string(),
            },
            now_ms,
        );
    }

    /// The back-off before the next attempt, if a Retry rule matching `error` has attempts
    /// left (ASL defaults: 1 s, 3 attempts, rate 2.0).
    fn retry_delay(&mut self, s: &Map<String, Value>, error: &str) -> Option<i64> {
        let rules = s.get("Retry").and_then(Value::as_array)?;
        let (i, rule) = rules
            .iter()
            .enumerate()
            .find(|(_, r)| matches_error(r, error))?;
        let max = rule.get("MaxAttempts").and_then(Value::as_u64).unwrap_or(3);
        let done = self.run.retries.get(i).copied().unwrap_or(0);
        if u64::from(done) >= max {
            return None;
        }
        if let Some(n) = self.run.retries.get_mut(i) {
            *n += 1;
        }
        let interval = rule
            .get("IntervalSeconds")
            .and_then(Value::as_f64)
            .unwrap_or(1.0);
        let rate = rule
            .get("BackoffRate")
            .and_then(Value::as_f64)
            .unwrap_or(2.0);
        let mut secs = interval * rate.powi(done as i32);
        if let Some(cap) = rule.get("MaxDelaySeconds").and_then(Value::as_f64) {
            secs = secs.min(cap);
        }
        if rule.get("JitterStrategy").and_then(Value::as_str) == Some("FULL") {
            // xorshift64: a fraction in [0, 1) from the seed passed in.
            secs *= (xorshift(&mut self.run.jitter) >> 11) as f64 / (1u64 << 53) as f64;
        }
        Some((secs * 1000.0).round() as i64)
    }

    fn choose(&mut self, s: &Map<String, Value>, input: Value, now_ms: i64) {
        let ctx = self.context();
        let rules = s
            .get("Choices")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut next = None;
        for rule in &rules {
            match holds(rule, &input, &ctx) {
                Ok(true) => {
                    next = rule.get("Next").and_then(Value::as_str).map(str::to_string);
                    break;
                }
                Ok(false) => {}
                Err(cause) => return self.fail_state("States.Runtime", &cause, now_ms),
            }
        }
        let next = next.or_else(|| s.get("Default").and_then(Value::as_str).map(str::to_string));
        let Some(next) = next else {
            return self.fail_state(
                "States.NoChoiceMatched",
                "no Choice rule matched and there is no Default",
                now_ms,
            );
        };
        match self.output_path(s, input) {
            Ok(out) => {
                self.record(now_ms, "ChoiceStateExited", Some(self.run.state.clone()));
                self.enter(next, out, now_ms);
            }
            Err(cause) => self.fail_state("States.Runtime", &cause, now_ms),
        }
    }

    fn end(&mut self, outcome: Outcome, now_ms: i64) {
        let kind = match outcome {
            Outcome::Succeeded(_) => "ExecutionSucceeded",
            Outcome::Failed { .. } => "ExecutionFailed",
        };
        self.record(now_ms, kind, None);
        self.run.phase = Phase::Done;
        self.run.actions.push_back(Action::Finished(outcome));
    }

    fn read(&self, p: &str, doc: &Value, field: &str) -> Result<Value, String> {
        match path::get(p, doc, &self.context())? {
            Some(v) => Ok(v.clone()),
            None => Err(format!(
                "the path `{p}` of `{field}` in state `{}` found nothing in its input",
                self.run.state
            )),
        }
    }

    /// A payload template: keys ending in `.$` take the value at their path, or of their
    /// intrinsic function. An error is (its name, the cause): `States.Runtime` for a path
    /// that finds nothing, `States.IntrinsicFailure` for a failing function.
    fn apply_template(
        &mut self,
        t: &Value,
        input: &Value,
    ) -> Result<Value, (&'static str, String)> {
        match t {
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, v) in m {
                    if let Some(name) = k.strip_suffix(".$") {
                        let p = v.as_str().unwrap_or_default();
                        let value = if p.trim_start().starts_with("States.") {
                            let call = super::intrinsic::parse(p)
                                .map_err(|e| (super::intrinsic::FAILURE, format!("`{k}`: {e}")))?;
                            let context = self.context();
                            let jitter = &mut self.run.jitter;
                            super::intrinsic::eval(
                                &call,
                                &|path: &str| {
                                    super::path::get(path, input, &context)?
                                        .cloned()
                                        .ok_or_else(|| format!("the path `{path}` found nothing"))
                                },
                                &mut || xorshift(jitter),
                            )
                            .map_err(|e| {
                                (
                                    super::intrinsic::FAILURE,
                                    format!("`{k}` in state `{}`: {e}", self.run.state),
                                )
                            })?
                        } else {
                            self.read(p, input, k).map_err(|e| ("States.Runtime", e))?
                        };
                        out.insert(name.to_string(), value);
                    } else {
                        out.insert(k.clone(), self.apply_template(v, input)?);
                    }
                }
                Ok(Value::Object(out))
            }
            Value::Array(a) => a
                .iter()
                .map(|v| self.apply_template(v, input))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Ok(other.clone()),
        }
    }
}

fn entered_event(kind: &str) -> &'static str {
    match kind {
        "Task" => "TaskStateEntered",
        "Pass" => "PassStateEntered",
        "Choice" => "ChoiceStateEntered",
        "Wait" => "WaitStateEntered",
        "Succeed" => "SucceedStateEntered",
        "Fail" => "FailStateEntered",
        _ => "StateEntered",
    }
}

fn exited_event(kind: &str) -> &'static str {
    match kind {
        "Task" => "TaskStateExited",
        "Pass" => "PassStateExited",
        "Choice" => "ChoiceStateExited",
        "Wait" => "WaitStateExited",
        _ => "StateExited",
    }
}

/// Whether a Retry or Catch rule's ErrorEquals names `error` (`States.ALL` names every
/// error; `States.TaskFailed` every error but `States.Timeout`).
fn matches_error(rule: &Value, error: &str) -> bool {
    rule.get("ErrorEquals")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|e| {
            e == error
                || e == "States.ALL"
                || (e == "States.TaskFailed" && error != "States.Timeout")
        })
}

/// When a Wait state ends.
fn wait_until(
    s: &Map<String, Value>,
    input: &Value,
    ctx: &Value,
    now_ms: i64,
) -> Result<i64, String> {
    let seconds = |v: &Value| -> Result<i64, String> {
        v.as_f64()
            .filter(|x| *x >= 0.0)
            .map(|x| (x * 1000.0) as i64)
            .ok_or_else(|| format!("a wait of {v} seconds"))
    };
    let timestamp = |v: &Value| -> Result<i64, String> {
        v.as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_millisecond())
            .ok_or_else(|| format!("{v} is not an RFC 3339 timestamp"))
    };
    let at_path = |p: &Value| -> Result<Value, String> {
        let p = p.as_str().unwrap_or_default();
        path::get(p, input, ctx)?
            .cloned()
            .ok_or_else(|| format!("the path `{p}` found nothing in the input"))
    };
    if let Some(v) = s.get("Seconds") {
        return Ok(now_ms + seconds(v)?);
    }
    if let Some(p) = s.get("SecondsPath") {
        return Ok(now_ms + seconds(&at_path(p)?)?);
    }
    if let Some(v) = s.get("Timestamp") {
        return timestamp(v);
    }
    if let Some(p) = s.get("TimestampPath") {
        return timestamp(&at_path(p)?);
    }
    if let Some(days) = s.get("Days").and_then(Value::as_i64) {
        return Ok(now_ms + days * 86_400_000);
    }
    Err("a Wait state without a duration".into())
}

/// Whether a JSONPath Choice rule holds for `input`.
fn holds(rule: &Value, input: &Value, ctx: &Value) -> Result<bool, String> {
    if let Some(all) = rule.get("And").and_then(Value::as_array) {
        for r in all {
            if !holds(r, input, ctx)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    if let Some(any) = rule.get("Or").and_then(Value::as_array) {
        for r in any {
            if holds(r, input, ctx)? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    if let Some(not) = rule.get("Not") {
        return Ok(!holds(not, input, ctx)?);
    }
    let var = rule.get("Variable").and_then(Value::as_str).unwrap_or("$");
    let value = path::get(var, input, ctx)?;
    let Some((op, operand)) = rule
        .as_object()
        .into_iter()
        .flatten()
        .find(|(k, _)| !matches!(k.as_str(), "Variable" | "Next" | "Comment"))
    else {
        return Ok(false);
    };
    if op == "IsPresent" {
        return Ok(value.is_some() == (operand == &Value::Bool(true)));
    }
    let want = operand == &Value::Bool(true);
    let is = |f: fn(&Value) -> bool| Ok(value.is_some_and(f) == want);
    match op.as_str() {
        "IsNull" => return is(Value::is_null),
        "IsNumeric" => return is(Value::is_number),
        "IsString" => return is(Value::is_string),
        "IsBoolean" => return is(Value::is_boolean),
        "IsTimestamp" => {
            return is(|v| {
                v.as_str()
                    .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok())
            });
        }
        _ => {}
    }
    // A comparison: against the operand, or (…Path) against the value at another path.
    let (op, operand) = match op.strip_suffix("Path") {
        Some(base) => {
            let p = operand.as_str().unwrap_or_default();
            match path::get(p, input, ctx)? {
                Some(v) => (base, v.clone()),
                None => return Ok(false),
            }
        }
        None => (op.as_str(), operand.clone()),
    };
    // A missing variable makes every comparison false (Step Functions fails the state; a
    // false rule with a Default is the safer reading for a clinical workflow, and the
    // validator's IsPresent is there to test for it explicitly).
    let Some(value) = value else {
        return Ok(false);
    };
    use std::cmp::Ordering::*;
    let ord = if let Some(kind) = op.strip_prefix("String") {
        if kind == "Matches" {
            return Ok(value
                .as_str()
                .zip(operand.as_str())
                .is_some_and(|(v, pattern)| wildcard(pattern, v)));
        }
        value
            .as_str()
            .zip(operand.as_str())
            .map(|(a, b)| (kind, a.cmp(b)))
    } else if let Some(kind) = op.strip_prefix("Numeric") {
        value
            .as_f64()
            .zip(operand.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b).map(|o| (kind, o)))
    } else if let Some(kind) = op.strip_prefix("Timestamp") {
        let t = |v: &Value| v.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok());
        t(value).zip(t(&operand)).map(|(a, b)| (kind, a.cmp(&b)))
    } else if op == "BooleanEquals" {
        return Ok(value.as_bool().is_some() && value.as_bool() == operand.as_bool());
    } else {
        return Err(format!("the Choice comparison `{op}` is not known"));
    };
    Ok(ord.is_some_and(|(kind, o)| match kind {
        "Equals" => o == Equal,
        "LessThan" => o == Less,
        "GreaterThan" => o == Greater,
        "LessThanEquals" => o != Greater,
        "GreaterThanEquals" => o != Less,
        _ => false,
    }))
}

/// StringMatches: `*` matches any run of characters, `\*` a star, `\\` a backslash.
fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    fn m(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|i| m(&p[1..], &t[i..])),
            Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && m(&p[2..], &t[1..]),
            Some(c) => t.first() == Some(c) && m(&p[1..], &t[1..]),
        }
    }
    m(&p, &t)
}

/// The execution's random state one step on (xorshift64): its next 64 bits. The state is
/// part of the stored snapshot, so a resumed execution goes on where it was.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Spreads a seed's bits (SplitMix64), so that small seeds give unrelated jitter.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
