//! One execution of a state machine, sans-IO: fed task results and the time, it says which
//! task to invoke next and when it next needs the clock (`poll_timeout`), like the call core.
//! No sockets, clock or randomness inside: the shell invokes tasks, keeps the timers (in the
//! database, since a wait can last days) and passes the retry jitter's randomness in.
//!
//! Runs today: Task, Pass, Choice, Wait (with the `Days` extension), Parallel, Map (inline:
//! ItemsPath, ItemSelector, MaxConcurrency), Succeed and Fail in the JSONPath query language,
//! with InputPath, Parameters, ResultSelector, ResultPath and OutputPath, the context object
//! (`$$`, and `$$.Map.Item` in an ItemSelector), Retry (IntervalSeconds, MaxAttempts,
//! BackoffRate, MaxDelaySeconds, JitterStrategy) and Catch, and the intrinsic functions
//! (`States.Format` and the rest, see `intrinsic`; MathRandom and UUID draw from the
//! execution's stored random state). [`Definition::load`] refuses, naming the state, what
//! does not run: JSONata states and distributed Map states.
//!
//! Each Parallel branch and Map iteration is a thread of its own (waiting on its task or its
//! timer while the others go on), as in Step Functions: the state's result is their outputs
//! in order; the first to fail stops the others and fails the state, which its own Retry
//! runs again whole and its Catch can take.
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
use super::validate::{Problem, kind_of, validate};

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
        // State names are unique in the whole machine (validated), branches and Map
        // processors included: one map holds them all.
        let mut states = HashMap::new();
        collect_states(&top, &mut states, &mut problems);
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

/// The states of `machine` and of every Parallel branch and Map processor in it, checking
/// what does not run: JSONata states, distributed Map, malformed intrinsics.
fn collect_states(
    machine: &Map<String, Value>,
    states: &mut HashMap<String, Map<String, Value>>,
    problems: &mut Vec<Problem>,
) {
    let mut not_run = |state: &str, rule: String| {
        problems.push(Problem {
            severity: super::Severity::Error,
            state: Some(state.to_string()),
            rule,
        })
    };
    let mut nested = Vec::new();
    for (name, s) in machine
        .get("States")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let Some(s) = s.as_object() else { continue };
        let kind = s.get("Type").and_then(Value::as_str).unwrap_or_default();
        if s.get("QueryLanguage").and_then(Value::as_str) == Some("JSONata") {
            not_run(name, "JSONata states do not run yet".into());
        }
        match kind {
            "Parallel" => nested.extend(
                s.get("Branches")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_object),
            ),
            "Map" => {
                let processor = s.get("ItemProcessor").or_else(|| s.get("Iterator"));
                let mode = processor
                    .and_then(|p| p.pointer("/ProcessorConfig/Mode"))
                    .and_then(Value::as_str);
                let distributed: Vec<&str> = ["ItemReader", "ItemBatcher", "ResultWriter"]
                    .into_iter()
                    .filter(|f| s.contains_key(*f))
                    .collect();
                if mode == Some("DISTRIBUTED") || !distributed.is_empty() {
                    not_run(
                        name,
                        format!(
                            "a distributed Map ({}) does not run: Careline runs Map states \
                             inline, their items in the state's input",
                            if distributed.is_empty() {
                                "`Mode: DISTRIBUTED`".to_string()
                            } else {
                                distributed.join(", ")
                            }
                        ),
                    );
                }
                nested.extend(processor.and_then(Value::as_object));
            }
            _ => {}
        }
        for field in ["Parameters", "ResultSelector", "ItemSelector"] {
            let mut calls = Vec::new();
            if let Some(v) = s.get(field) {
                intrinsics(v, &mut calls);
            }
            for (key, text) in calls {
                if let Err(e) = super::intrinsic::parse(text) {
                    not_run(name, format!("`{field}.{key}`: {e}"));
                }
            }
        }
        states.insert(name.clone(), s.clone());
    }
    for m in nested {
        collect_states(m, states, problems);
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
    /// A Parallel state's branches or a Map state's iterations are running.
    Fanned(Box<Fan>),
    /// A branch or an iteration reached its end: its Parallel or Map state takes the outcome.
    Ended(Outcome),
}

/// One attempt of a Parallel state (its branches) or of a Map state (its iterations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Fan {
    /// The branches or iterations not started yet, with their index and input (a Map under
    /// `MaxConcurrency` starts the next as one ends).
    pending: VecDeque<(usize, Value)>,
    /// At most this many run at once (0: no limit).
    limit: usize,
    running: Vec<Thread>,
    /// Each branch's or iteration's output, by index: the state's result, in order.
    results: Vec<Value>,
    /// A Map's ToleratedFailureCount and ToleratedFailurePercentage: with either, failed
    /// iterations up to it leave their error in their place and the Map goes on.
    #[serde(default)]
    tolerated: Option<(Option<u64>, Option<f64>)>,
    #[serde(default)]
    failures: u64,
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
    /// The execution's own thread (flattened: snapshots stored before Parallel and Map ran
    /// read the same).
    #[serde(flatten)]
    root: Thread,
    actions: VecDeque<Action>,
    /// Randomness for full jitter, passed in (xorshift state).
    jitter: u64,
}

/// A thread of control through the states: the execution's own, or a Parallel branch's or a
/// Map iteration's inside it (each its own thread, so a branch can wait on a task while
/// another sleeps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Thread {
    /// What this thread's task ids start with: nothing at the top; in a branch or iteration,
    /// its Parallel or Map state, that state's attempt and the index (`Fan#1[0]/`), so that
    /// every invocation has its own idempotency key, a retried Parallel's included.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    scope: String,
    /// The branch's or iteration's index in its Parallel or Map state.
    #[serde(default)]
    index: usize,
    /// The current state and its raw input.
    state: String,
    state_input: Value,
    /// A Task's input after InputPath and Parameters (a Parallel's or Map's effective
    /// input), kept for its retries.
    task_input: Value,
    /// A Task's timeout, kept for its retries.
    #[serde(default)]
    task_timeout_secs: Option<u64>,
    entered_ms: i64,
    /// Attempts made per Retry rule of the current state.
    retries: Vec<u32>,
    attempt: u32,
    phase: Phase,
}

/// What every thread of one execution shares while it handles an event.
struct Env<'a> {
    def: &'a Definition,
    id: &'a str,
    input: &'a Value,
    started_ms: i64,
    jitter: &'a mut u64,
    history: &'a mut Vec<HistoryEvent>,
    actions: &'a mut VecDeque<Action>,
}

impl Env<'_> {
    fn record(&mut self, at_ms: i64, kind: &'static str, state: &str) {
        self.history.push(HistoryEvent {
            at_ms,
            kind,
            state: Some(state.to_string()),
        });
    }
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
            history: vec![HistoryEvent {
                at_ms: now_ms,
                kind: "ExecutionStarted",
                state: None,
            }],
            run: Run {
                id: id.to_string(),
                input: input.clone(),
                started_ms: now_ms,
                root: Thread::new(String::new(), 0, now_ms),
                actions: VecDeque::new(),
                jitter: splitmix64(seed) | 1,
            },
        };
        e.step(now_ms, |t, env| t.enter(env, state, input, now_ms));
        e
    }

    /// Resumes a stored execution under its definition (the one it started under: a shell
    /// pins each execution to its definition's text). Err when the snapshot does not fit it.
    pub fn restore(
        def: std::sync::Arc<Definition>,
        snapshot: Snapshot,
    ) -> Result<Execution, String> {
        let run = snapshot.run;
        if let Some(missing) = run.root.unknown_state(&def) {
            return Err(format!("the definition has no state `{missing}`"));
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

    /// The state the execution is in at the top (a Parallel or Map state while its branches
    /// run; the last one, once finished).
    pub fn state(&self) -> &str {
        &self.run.root.state
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.run.actions.pop_front()
    }

    /// When the execution next needs [`Execution::handle_timeout`] (ms since the epoch): the
    /// earliest timer of any of its branches.
    pub fn poll_timeout(&self) -> Option<i64> {
        self.run.root.poll_timeout()
    }

    pub fn history(&self) -> &[HistoryEvent] {
        &self.history
    }

    pub fn is_finished(&self) -> bool {
        self.run.root.phase == Phase::Done
    }

    /// Wakes every wait and back-off due at `now_ms`, in every branch.
    pub fn handle_timeout(&mut self, now_ms: i64) {
        self.step(now_ms, |t, env| t.handle_timeout(env, now_ms));
    }

    /// An answer from a task. One for another invocation (late, repeated, for an attempt
    /// already given up, or for a branch its Parallel state has stopped) changes nothing.
    pub fn handle(&mut self, event: Event, now_ms: i64) {
        self.step(now_ms, |t, env| {
            t.deliver(env, &event, now_ms);
        });
    }

    /// Runs `f` on the execution's thread; when that thread ended, the execution ends.
    fn step(&mut self, now_ms: i64, f: impl FnOnce(&mut Thread, &mut Env<'_>)) {
        let Execution { def, run, history } = self;
        let Run {
            id,
            input,
            started_ms,
            root,
            actions,
            jitter,
        } = run;
        let mut env = Env {
            def,
            id,
            input,
            started_ms: *started_ms,
            jitter,
            history,
            actions,
        };
        f(root, &mut env);
        if let Phase::Ended(outcome) = &root.phase {
            let kind = match outcome {
                Outcome::Succeeded(_) => "ExecutionSucceeded",
                Outcome::Failed { .. } => "ExecutionFailed",
            };
            env.history.push(HistoryEvent {
                at_ms: now_ms,
                kind,
                state: None,
            });
            env.actions.push_back(Action::Finished(outcome.clone()));
            root.phase = Phase::Done;
        }
    }
}

impl Thread {
    fn new(scope: String, index: usize, now_ms: i64) -> Thread {
        Thread {
            scope,
            index,
            state: String::new(),
            state_input: Value::Null,
            task_input: Value::Null,
            task_timeout_secs: None,
            entered_ms: now_ms,
            retries: Vec::new(),
            attempt: 0,
            phase: Phase::Done,
        }
    }

    /// A state this thread or one of its branches is in that `def` lacks.
    fn unknown_state(&self, def: &Definition) -> Option<&str> {
        if self.phase == Phase::Done {
            return None;
        }
        if !def.states.contains_key(&self.state) {
            return Some(&self.state);
        }
        match &self.phase {
            Phase::Fanned(fan) => fan.running.iter().find_map(|t| t.unknown_state(def)),
            _ => None,
        }
    }

    fn poll_timeout(&self) -> Option<i64> {
        match &self.phase {
            Phase::Sleeping { until_ms, .. } => Some(*until_ms),
            Phase::Fanned(fan) => fan.running.iter().filter_map(Thread::poll_timeout).min(),
            _ => None,
        }
    }

    fn current<'d>(&self, def: &'d Definition) -> &'d Map<String, Value> {
        &def.states[&self.state]
    }

    fn kind<'d>(&self, def: &'d Definition) -> &'d str {
        self.current(def)
            .get("Type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    fn context(&self, env: &Env<'_>) -> Value {
        json!({
            "Execution": {
                "Id": env.id,
                "Input": env.input,
                "StartTime": rfc3339(env.started_ms),
            },
            "State": {
                "Name": self.state,
                "EnteredTime": rfc3339(self.entered_ms),
                "RetryCount": self.attempt.saturating_sub(1),
            },
        })
    }

    fn handle_timeout(&mut self, env: &mut Env<'_>, now_ms: i64) {
        match &mut self.phase {
            Phase::Sleeping { until_ms, retry } => {
                if now_ms < *until_ms {
                    return;
                }
                if *retry {
                    if self.kind(env.def) == "Task" {
                        self.invoke(env, now_ms);
                    } else {
                        self.fan(env, now_ms);
                    }
                } else {
                    // finish_state records WaitStateExited.
                    let output = self.state_input.clone();
                    let s = self.current(env.def);
                    self.finish_state(env, s, output, now_ms);
                }
            }
            Phase::Fanned(fan) => {
                for t in fan.running.iter_mut() {
                    t.handle_timeout(env, now_ms);
                }
                self.settle_fan(env, now_ms);
            }
            _ => {}
        }
    }

    /// Gives `event` to the thread waiting for its task, this one or one in its branches;
    /// false when none waits for it.
    fn deliver(&mut self, env: &mut Env<'_>, event: &Event, now_ms: i64) -> bool {
        let (Event::TaskSucceeded { task, .. } | Event::TaskFailed { task, .. }) = event;
        match &mut self.phase {
            Phase::Task(waiting) if waiting == task => {
                self.answer(env, event.clone(), now_ms);
                true
            }
            Phase::Fanned(fan) => {
                let found = fan
                    .running
                    .iter_mut()
                    .any(|t| t.deliver(env, event, now_ms));
                if found {
                    self.settle_fan(env, now_ms);
                }
                found
            }
            _ => false,
        }
    }

    fn answer(&mut self, env: &mut Env<'_>, event: Event, now_ms: i64) {
        let s = self.current(env.def);
        match event {
            Event::TaskSucceeded { output, .. } => {
                env.record(now_ms, "TaskSucceeded", &self.state);
                self.succeed_with(env, s, output, now_ms);
            }
            Event::TaskFailed { error, cause, .. } => {
                env.record(now_ms, "TaskFailed", &self.state);
                self.fail_state(env, &error, &cause, now_ms);
            }
        }
    }

    /// A Task's, Parallel's or Map's result: ResultSelector, then ResultPath, OutputPath and
    /// the transition.
    fn succeed_with(
        &mut self,
        env: &mut Env<'_>,
        s: &Map<String, Value>,
        output: Value,
        now_ms: i64,
    ) {
        let result = match s.get("ResultSelector") {
            Some(t) => {
                let ctx = self.context(env);
                match self.apply_template(env, t, &output, &ctx) {
                    Ok(v) => v,
                    Err((error, cause)) => return self.fail_state(env, error, &cause, now_ms),
                }
            }
            None => output,
        };
        self.complete_with_result(env, s, result, now_ms);
    }

    fn enter(&mut self, env: &mut Env<'_>, state: String, input: Value, now_ms: i64) {
        self.state = state;
        self.state_input = input;
        self.entered_ms = now_ms;
        self.attempt = 0;
        let s = self.current(env.def);
        self.retries = vec![0; s.get("Retry").and_then(Value::as_array).map_or(0, Vec::len)];
        let kind = s.get("Type").and_then(Value::as_str).unwrap_or_default();
        env.record(now_ms, entered_event(kind), &self.state);
        // InputPath: `$` when absent, an empty object when null.
        let effective = match s.get("InputPath") {
            None => Ok(self.state_input.clone()),
            Some(Value::Null) => Ok(json!({})),
            Some(Value::String(p)) => self.read(env, p, &self.state_input, "InputPath"),
            Some(_) => Ok(self.state_input.clone()),
        };
        let effective = match effective {
            Ok(v) => v,
            Err(cause) => return self.fail_state(env, "States.Runtime", &cause, now_ms),
        };
        match kind {
            "Task" => {
                let timeout = match (s.get("TimeoutSeconds"), s.get("TimeoutSecondsPath")) {
                    (Some(t), _) => Ok(t.as_u64()),
                    (None, Some(Value::String(p))) => {
                        match self.read(env, p, &effective, "TimeoutSecondsPath") {
                            Ok(v) => v.as_u64().filter(|t| *t > 0).map(Some).ok_or_else(|| {
                                format!(
                                    "TimeoutSecondsPath `{p}` is not a positive whole number of seconds"
                                )
                            }),
                            Err(cause) => Err(cause),
                        }
                    }
                    _ => Ok(None),
                };
                match timeout {
                    Ok(t) => self.task_timeout_secs = t,
                    Err(cause) => return self.fail_state(env, "States.Runtime", &cause, now_ms),
                }
                match self.parameters(env, s, effective) {
                    Ok(input) => self.task_input = input,
                    Err((error, cause)) => return self.fail_state(env, error, &cause, now_ms),
                }
                self.invoke(env, now_ms);
            }
            // Parameters shape the input every branch gets.
            "Parallel" => match self.parameters(env, s, effective) {
                Ok(input) => {
                    self.task_input = input;
                    self.fan(env, now_ms);
                }
                Err((error, cause)) => self.fail_state(env, error, &cause, now_ms),
            },
            "Map" => {
                // ItemsPath and ItemSelector are read per attempt, from the effective input.
                self.task_input = effective;
                self.fan(env, now_ms);
            }
            "Pass" => {
                let result = match s.get("Result") {
                    Some(r) => Ok(r.clone()),
                    None => self.parameters(env, s, effective),
                };
                match result {
                    Ok(r) => self.complete_with_result(env, s, r, now_ms),
                    Err((error, cause)) => self.fail_state(env, error, &cause, now_ms),
                }
            }
            "Choice" => self.choose(env, s, effective, now_ms),
            "Wait" => match wait_until(s, &effective, &self.context(env), now_ms) {
                Ok(until_ms) => {
                    self.state_input = effective;
                    self.phase = Phase::Sleeping {
                        until_ms,
                        retry: false,
                    };
                }
                Err(cause) => self.fail_state(env, "States.Runtime", &cause, now_ms),
            },
            "Succeed" => {
                env.record(now_ms, "SucceedStateExited", &self.state);
                match self.output_path(env, s, effective) {
                    Ok(out) => self.end(Outcome::Succeeded(out)),
                    Err(cause) => self.fail_state(env, "States.Runtime", &cause, now_ms),
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
                self.end(Outcome::Failed { error, cause });
            }
            other => {
                let cause = format!("{other} states do not run");
                self.fail_state(env, "States.Runtime", &cause, now_ms);
            }
        }
    }

    /// The state's `Parameters` applied to its effective input (the input itself without).
    fn parameters(
        &self,
        env: &mut Env<'_>,
        s: &Map<String, Value>,
        effective: Value,
    ) -> Result<Value, (&'static str, String)> {
        match s.get("Parameters") {
            Some(t) => {
                let ctx = self.context(env);
                self.apply_template(env, t, &effective, &ctx)
            }
            None => Ok(effective),
        }
    }

    /// Starts an attempt of the current Parallel or Map state: its branches, or an iteration
    /// per item (up to `MaxConcurrency` at once), each a thread of its own.
    fn fan(&mut self, env: &mut Env<'_>, now_ms: i64) {
        let s = self.current(env.def);
        self.attempt += 1;
        let input = self.task_input.clone();
        let mut pending = VecDeque::new();
        let mut limit = 0;
        let mut tolerated = None;
        if self.kind(env.def) == "Parallel" {
            let n = s
                .get("Branches")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            pending.extend((0..n).map(|i| (i, input.clone())));
            env.record(now_ms, "ParallelStateStarted", &self.state);
        } else {
            let items = match s.get("ItemsPath") {
                Some(Value::String(p)) => self.read(env, p, &input, "ItemsPath"),
                _ => Ok(input.clone()),
            };
            let items = match items {
                Ok(Value::Array(items)) => items,
                Ok(other) => {
                    let cause = format!(
                        "the items of Map state `{}` are {}, not an array",
                        self.state,
                        kind_of(&other)
                    );
                    return self.fail_state(env, "States.Runtime", &cause, now_ms);
                }
                Err(cause) => return self.fail_state(env, "States.Runtime", &cause, now_ms),
            };
            limit = match (s.get("MaxConcurrency"), s.get("MaxConcurrencyPath")) {
                (Some(v), _) => v.as_u64().unwrap_or(0),
                (None, Some(Value::String(p))) => {
                    match self
                        .read(env, p, &input, "MaxConcurrencyPath")
                        .and_then(|v| {
                            v.as_u64().ok_or_else(|| {
                                format!("MaxConcurrencyPath `{p}` is {v}, not a whole number")
                            })
                        }) {
                        Ok(n) => n,
                        Err(cause) => {
                            return self.fail_state(env, "States.Runtime", &cause, now_ms);
                        }
                    }
                }
                _ => 0,
            };
            let number = |field: &str| -> Result<Option<f64>, String> {
                let path = format!("{field}Path");
                match (s.get(field), s.get(&path)) {
                    (Some(v), _) => Ok(v.as_f64()),
                    (None, Some(Value::String(p))) => {
                        self.read(env, p, &input, &path).and_then(|v| {
                            v.as_f64()
                                .filter(|n| *n >= 0.0)
                                .map(Some)
                                .ok_or_else(|| format!("{path} `{p}` is {v}, not a number"))
                        })
                    }
                    _ => Ok(None),
                }
            };
            match (
                number("ToleratedFailureCount"),
                number("ToleratedFailurePercentage"),
            ) {
                (Ok(None), Ok(None)) => {}
                (Ok(count), Ok(percentage)) => {
                    tolerated = Some((count.map(|c| c as u64), percentage));
                }
                (Err(cause), _) | (_, Err(cause)) => {
                    return self.fail_state(env, "States.Runtime", &cause, now_ms);
                }
            }
            // ItemSelector (Parameters before it) builds each iteration's input from the
            // effective input and the item, `$$.Map.Item.Index` and `.Value`.
            let selector = s.get("ItemSelector").or_else(|| s.get("Parameters"));
            for (i, item) in items.into_iter().enumerate() {
                let item_input = match selector {
                    Some(t) => {
                        let mut ctx = self.context(env);
                        ctx["Map"] = json!({"Item": {"Index": i, "Value": item}});
                        match self.apply_template(env, t, &input, &ctx) {
                            Ok(v) => v,
                            Err((error, cause)) => {
                                return self.fail_state(env, error, &cause, now_ms);
                            }
                        }
                    }
                    None => item,
                };
                pending.push_back((i, item_input));
            }
            env.record(now_ms, "MapStateStarted", &self.state);
        }
        self.phase = Phase::Fanned(Box::new(Fan {
            results: vec![Value::Null; pending.len()],
            pending,
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            running: Vec::new(),
            tolerated,
            failures: 0,
        }));
        self.settle_fan(env, now_ms);
    }

    /// After a branch or iteration moved: starts those the limit now lets start, takes the
    /// outcome of those that ended; the first failure fails the state (the others are
    /// stopped: an answer for one of their tasks finds nothing waiting), and when all have
    /// succeeded their outputs, in order, are the state's result.
    fn settle_fan(&mut self, env: &mut Env<'_>, now_ms: i64) {
        let Phase::Fanned(mut fan) = std::mem::replace(&mut self.phase, Phase::Done) else {
            return;
        };
        let s = self.current(env.def);
        let map = self.kind(env.def) == "Map";
        loop {
            while fan.limit == 0 || fan.running.len() < fan.limit {
                let Some((i, input)) = fan.pending.pop_front() else {
                    break;
                };
                let start = if map {
                    s.get("ItemProcessor").or_else(|| s.get("Iterator"))
                } else {
                    s.get("Branches").and_then(|b| b.get(i))
                }
                .and_then(|m| m.get("StartAt"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
                let scope = format!("{}{}#{}[{i}]/", self.scope, self.state, self.attempt);
                let mut t = Thread::new(scope, i, now_ms);
                if map {
                    env.record(now_ms, "MapIterationStarted", &self.state);
                }
                t.enter(env, start, input, now_ms);
                fan.running.push(t);
            }
            let Some(at) = fan
                .running
                .iter()
                .position(|t| matches!(t.phase, Phase::Ended(_)))
            else {
                break;
            };
            let t = fan.running.remove(at);
            match t.phase {
                Phase::Ended(Outcome::Failed { error, cause }) => {
                    if map {
                        env.record(now_ms, "MapIterationFailed", &self.state);
                    }
                    let (error, cause) = match fan.tolerated {
                        None => (error, cause),
                        Some((count, percentage)) => {
                            fan.failures += 1;
                            let total = fan.results.len().max(1) as f64;
                            let within = count.is_none_or(|c| fan.failures <= c)
                                && percentage
                                    .is_none_or(|p| fan.failures as f64 * 100.0 / total <= p);
                            if within {
                                if let Some(slot) = fan.results.get_mut(t.index) {
                                    *slot = json!({"Error": error, "Cause": cause});
                                }
                                continue;
                            }
                            (
                                "States.ExceedToleratedFailureThreshold".to_string(),
                                format!(
                                    "{} of {} iterations failed, more than tolerated (the last: \
                                     {error}: {cause})",
                                    fan.failures,
                                    fan.results.len()
                                ),
                            )
                        }
                    };
                    let kind = if map {
                        "MapStateFailed"
                    } else {
                        "ParallelStateFailed"
                    };
                    env.record(now_ms, kind, &self.state);
                    return self.fail_state(env, &error, &cause, now_ms);
                }
                Phase::Ended(Outcome::Succeeded(output)) => {
                    if map {
                        env.record(now_ms, "MapIterationSucceeded", &self.state);
                    }
                    if let Some(slot) = fan.results.get_mut(t.index) {
                        *slot = output;
                    }
                }
                _ => {}
            }
        }
        if fan.running.is_empty() && fan.pending.is_empty() {
            let kind = if map {
                "MapStateSucceeded"
            } else {
                "ParallelStateSucceeded"
            };
            env.record(now_ms, kind, &self.state);
            let results = Value::Array(std::mem::take(&mut fan.results));
            self.succeed_with(env, s, results, now_ms);
        } else {
            self.phase = Phase::Fanned(fan);
        }
    }

    fn invoke(&mut self, env: &mut Env<'_>, now_ms: i64) {
        self.attempt += 1;
        let task = TaskId {
            state: format!("{}{}", self.scope, self.state),
            attempt: self.attempt,
        };
        let resource = self
            .current(env.def)
            .get("Resource")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        env.record(now_ms, "TaskScheduled", &self.state);
        self.phase = Phase::Task(task.clone());
        env.actions.push_back(Action::Invoke {
            task,
            resource,
            input: self.task_input.clone(),
            timeout_secs: self.task_timeout_secs,
        });
    }

    /// A result placed into the state's raw input as `result_path` (a state's or a Catch
    /// rule's ResultPath) says: absent, the result replaces the input; null, it is dropped.
    fn place(&self, result_path: Option<&Value>, result: Value) -> Result<Value, String> {
        match result_path {
            Some(Value::Null) => Ok(self.state_input.clone()),
            Some(Value::String(p)) => path::set(p, self.state_input.clone(), result),
            _ => Ok(result),
        }
    }

    /// ResultPath, OutputPath, then the transition.
    fn complete_with_result(
        &mut self,
        env: &mut Env<'_>,
        s: &Map<String, Value>,
        result: Value,
        now_ms: i64,
    ) {
        let output = self
            .place(s.get("ResultPath"), result)
            .and_then(|c| self.output_path(env, s, c));
        match output {
            Ok(out) => self.finish_state(env, s, out, now_ms),
            Err(cause) => self.fail_state(env, "States.Runtime", &cause, now_ms),
        }
    }

    fn output_path(
        &self,
        env: &Env<'_>,
        s: &Map<String, Value>,
        v: Value,
    ) -> Result<Value, String> {
        match s.get("OutputPath") {
            None => Ok(v),
            Some(Value::Null) => Ok(json!({})),
            Some(Value::String(p)) => self.read(env, p, &v, "OutputPath"),
            Some(_) => Ok(v),
        }
    }

    fn finish_state(
        &mut self,
        env: &mut Env<'_>,
        s: &Map<String, Value>,
        output: Value,
        now_ms: i64,
    ) {
        let kind = s.get("Type").and_then(Value::as_str).unwrap_or_default();
        env.record(now_ms, exited_event(kind), &self.state);
        match s.get("Next").and_then(Value::as_str) {
            Some(next) if s.get("End") != Some(&Value::Bool(true)) => {
                self.enter(env, next.to_string(), output, now_ms)
            }
            _ => self.end(Outcome::Succeeded(output)),
        }
    }

    /// An error in the current state: a matching Retry rule tries again after its back-off
    /// (a Task, Parallel or Map state), else a matching Catch rule goes on with the error,
    /// else the thread fails (the execution, or the branch and with it its Parallel state).
    /// `States.Runtime` (a path that finds nothing, items that are not an array) is neither
    /// retried nor caught, `States.ALL` or not: as in Step Functions, it fails the execution,
    /// since the definition itself is at fault and running it again changes nothing.
    fn fail_state(&mut self, env: &mut Env<'_>, error: &str, cause: &str, now_ms: i64) {
        if error == RUNTIME {
            return self.end(Outcome::Failed {
                error: error.to_string(),
                cause: cause.to_string(),
            });
        }
        let s = self.current(env.def);
        let kind = s.get("Type").and_then(Value::as_str).unwrap_or_default();
        if matches!(kind, "Task" | "Parallel" | "Map")
            && let Some(delay) = self.retry_delay(env, s, error)
        {
            self.phase = Phase::Sleeping {
                until_ms: now_ms + delay,
                retry: true,
            };
            return;
        }
        let catchers = s.get("Catch").and_then(Value::as_array);
        if let Some(c) = catchers
            .into_iter()
            .flatten()
            .find(|c| matches_error(c, error))
        {
            let combined = self.place(c.get("ResultPath"), json!({"Error": error, "Cause": cause}));
            let next = c
                .get("Next")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            match combined {
                Ok(v) => {
                    env.record(now_ms, exited_event(kind), &self.state);
                    self.enter(env, next, v, now_ms);
                }
                Err(e) => self.end(Outcome::Failed {
                    error: "States.Runtime".into(),
                    cause: e,
                }),
            }
            return;
        }
        self.end(Outcome::Failed {
            error: error.to_string(),
            cause: cause.to_string(),
        });
    }

    /// The back-off before the next attempt, if a Retry rule matching `error` has attempts
    /// left (ASL defaults: 1 s, 3 attempts, rate 2.0).
    fn retry_delay(
        &mut self,
        env: &mut Env<'_>,
        s: &Map<String, Value>,
        error: &str,
    ) -> Option<i64> {
        let rules = s.get("Retry").and_then(Value::as_array)?;
        let (i, rule) = rules
            .iter()
            .enumerate()
            .find(|(_, r)| matches_error(r, error))?;
        let max = rule.get("MaxAttempts").and_then(Value::as_u64).unwrap_or(3);
        let done = self.retries.get(i).copied().unwrap_or(0);
        if u64::from(done) >= max {
            return None;
        }
        if let Some(n) = self.retries.get_mut(i) {
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
            secs *= (xorshift(env.jitter) >> 11) as f64 / (1u64 << 53) as f64;
        }
        Some((secs * 1000.0).round() as i64)
    }

    fn choose(&mut self, env: &mut Env<'_>, s: &Map<String, Value>, input: Value, now_ms: i64) {
        let ctx = self.context(env);
        let mut next = None;
        for rule in s
            .get("Choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match holds(rule, &input, &ctx) {
                Ok(true) => {
                    next = rule.get("Next").and_then(Value::as_str).map(str::to_string);
                    break;
                }
                Ok(false) => {}
                Err(cause) => return self.fail_state(env, "States.Runtime", &cause, now_ms),
            }
        }
        let next = next.or_else(|| s.get("Default").and_then(Value::as_str).map(str::to_string));
        let Some(next) = next else {
            return self.fail_state(
                env,
                "States.NoChoiceMatched",
                "no Choice rule matched and there is no Default",
                now_ms,
            );
        };
        match self.output_path(env, s, input) {
            Ok(out) => {
                env.record(now_ms, "ChoiceStateExited", &self.state);
                self.enter(env, next, out, now_ms);
            }
            Err(cause) => self.fail_state(env, "States.Runtime", &cause, now_ms),
        }
    }

    /// The thread reached its end: the execution's ends the execution (see
    /// [`Execution::step`]); a branch's is taken by its Parallel or Map state.
    fn end(&mut self, outcome: Outcome) {
        self.phase = Phase::Ended(outcome);
    }

    fn read(&self, env: &Env<'_>, p: &str, doc: &Value, field: &str) -> Result<Value, String> {
        read_at(p, doc, &self.context(env), field, &self.state)
    }

    /// A payload template: keys ending in `.$` take the value at their path (in `input`, or
    /// in the context object `ctx` for `$$`), or of their intrinsic function. An error is
    /// (its name, the cause): `States.Runtime` for a path that finds nothing,
    /// `States.IntrinsicFailure` for a failing function.
    fn apply_template(
        &self,
        env: &mut Env<'_>,
        t: &Value,
        input: &Value,
        ctx: &Value,
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
                            let jitter = &mut *env.jitter;
                            super::intrinsic::eval(
                                &call,
                                &|path: &str| {
                                    super::path::get(path, input, ctx)?
                                        .cloned()
                                        .ok_or_else(|| format!("the path `{path}` found nothing"))
                                },
                                &mut || xorshift(jitter),
                            )
                            .map_err(|e| {
                                (
                                    super::intrinsic::FAILURE,
                                    format!("`{k}` in state `{}`: {e}", self.state),
                                )
                            })?
                        } else {
                            read_at(p, input, ctx, k, &self.state)
                                .map_err(|e| ("States.Runtime", e))?
                        };
                        out.insert(name.to_string(), value);
                    } else {
                        out.insert(k.clone(), self.apply_template(env, v, input, ctx)?);
                    }
                }
                Ok(Value::Object(out))
            }
            Value::Array(a) => a
                .iter()
                .map(|v| self.apply_template(env, v, input, ctx))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Ok(other.clone()),
        }
    }
}

/// The value at path `p` of `doc` (or of the context object), for `field` of `state`; an
/// error naming them when it finds nothing.
fn read_at(p: &str, doc: &Value, ctx: &Value, field: &str, state: &str) -> Result<Value, String> {
    match path::get(p, doc, ctx)? {
        Some(v) => Ok(v.clone()),
        None => Err(format!(
            "the path `{p}` of `{field}` in state `{state}` found nothing in its input"
        )),
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
        "Parallel" => "ParallelStateEntered",
        "Map" => "MapStateEntered",
        _ => "StateEntered",
    }
}

fn exited_event(kind: &str) -> &'static str {
    match kind {
        "Task" => "TaskStateExited",
        "Pass" => "PassStateExited",
        "Choice" => "ChoiceStateExited",
        "Wait" => "WaitStateExited",
        "Parallel" => "ParallelStateExited",
        "Map" => "MapStateExited",
        _ => "StateExited",
    }
}

/// The error of a definition at fault at run time: never retried or caught.
const RUNTIME: &str = "States.Runtime";

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
