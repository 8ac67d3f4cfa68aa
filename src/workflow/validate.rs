//! What Step Functions checks before it accepts a state machine, with every problem naming
//! the state (its path through Parallel branches and Map processors) and the rule broken.
//!
//! The rules are the Amazon States Language specification's (state types and their fields,
//! transitions, terminal states, Retry and Catch, payload templates, paths, the JSONata query
//! language's fields) plus the limits Step Functions adds (state names of at most 80
//! characters, unique across the whole machine; every state reachable). One Careline
//! extension: `"Days"` on a Wait state (the care-coordination brief writes `"Days": 2`) is
//! read as `Seconds = Days × 86400` and reported as a warning, since Step Functions itself
//! would refuse it.

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::{Map, Value};

use super::jsonata;

/// How bad a [`Problem`] is: errors stop the definition from loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One thing wrong with a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// The state, as a path of names from the top (`Map › Wait 20s`); `None` for the machine.
    pub state: Option<String>,
    pub rule: String,
}

impl Problem {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match &self.state {
            Some(s) => write!(f, "{level}: state `{s}`: {}", self.rule),
            None => write!(f, "{level}: {}", self.rule),
        }
    }
}

/// The longest state name Step Functions accepts.
pub const MAX_STATE_NAME: usize = 80;

const TYPES: [&str; 8] = [
    "Task", "Pass", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map",
];

/// Fields every state may have.
const COMMON: [&str; 3] = ["Type", "Comment", "QueryLanguage"];

/// Fields that belong to the JSONPath query language only.
const JSONPATH_ONLY: [&str; 16] = [
    "InputPath",
    "OutputPath",
    "ResultPath",
    "Parameters",
    "ResultSelector",
    "ItemsPath",
    "Iterator",
    "SecondsPath",
    "TimestampPath",
    "HeartbeatSecondsPath",
    "TimeoutSecondsPath",
    "ErrorPath",
    "CausePath",
    "MaxConcurrencyPath",
    "ToleratedFailureCountPath",
    "ToleratedFailurePercentagePath",
];

/// Fields that belong to the JSONata query language only.
const JSONATA_ONLY: [&str; 3] = ["Arguments", "Output", "Items"];

/// The fields a state of `kind` may have besides [`COMMON`].
fn fields_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pass" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "Result",
            "Output",
            "Assign",
        ],
        "Task" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Resource",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSeconds",
            "HeartbeatSecondsPath",
            "Retry",
            "Catch",
            "Credentials",
            "Arguments",
            "Output",
            "Assign",
        ],
        "Choice" => &[
            "InputPath",
            "OutputPath",
            "Choices",
            "Default",
            "Output",
            "Assign",
        ],
        "Wait" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Seconds",
            "SecondsPath",
            "Timestamp",
            "TimestampPath",
            "Days",
            "Output",
            "Assign",
        ],
        "Succeed" => &["InputPath", "OutputPath", "Output"],
        "Fail" => &["Error", "ErrorPath", "Cause", "CausePath"],
        "Parallel" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Branches",
            "Retry",
            "Catch",
            "Arguments",
            "Output",
            "Assign",
        ],
        "Map" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ItemSelector",
            "ResultSelector",
            "Iterator",
            "ItemProcessor",
            "ItemsPath",
            "Items",
            "ItemReader",
            "ItemBatcher",
            "ResultWriter",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "ToleratedFailureCount",
            "ToleratedFailureCountPath",
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
            "Label",
            "Retry",
            "Catch",
            "Arguments",
            "Output",
            "Assign",
        ],
        _ => &[],
    }
}

/// Pairs of fields of which a state may have one at most.
const EXCLUSIVE: [(&str, &str); 11] = [
    ("Error", "ErrorPath"),
    ("Cause", "CausePath"),
    ("TimeoutSeconds", "TimeoutSecondsPath"),
    ("HeartbeatSeconds", "HeartbeatSecondsPath"),
    ("Items", "ItemsPath"),
    ("Iterator", "ItemProcessor"),
    ("MaxConcurrency", "MaxConcurrencyPath"),
    ("ToleratedFailureCount", "ToleratedFailureCountPath"),
    (
        "ToleratedFailurePercentage",
        "ToleratedFailurePercentagePath",
    ),
    ("Parameters", "ItemSelector"),
    ("Result", "Parameters"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryLanguage {
    JsonPath,
    Jsonata,
}

/// Checks a definition (the JSON text of a state machine); returns every problem, errors and
/// warnings, in the order met. No errors means Step Functions' rules are met.
pub fn validate(text: &str) -> Vec<Problem> {
    let mut v = Validator::default();
    match serde_json::from_str::<Value>(text) {
        Err(e) => v.error(None, format!("not JSON: {e}")),
        Ok(Value::Object(top)) => v.machine(&top, None, QueryLanguage::JsonPath, true),
        Ok(_) => v.error(None, "a state machine is a JSON object"),
    }
    v.problems
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
    /// Every state name seen, to find names used twice anywhere in the machine.
    names: HashSet<String>,
}

/// Joins a nested state's path.
fn path_of(parent: Option<&str>, name: &str) -> String {
    match parent {
        Some(p) => format!("{p} › {name}"),
        None => name.to_string(),
    }
}

impl Validator {
    fn error(&mut self, state: Option<&str>, rule: impl Into<String>) {
        self.problems.push(Problem {
            severity: Severity::Error,
            state: state.map(str::to_string),
            rule: rule.into(),
        });
    }

    fn warning(&mut self, state: Option<&str>, rule: impl Into<String>) {
        self.problems.push(Problem {
            severity: Severity::Warning,
            state: state.map(str::to_string),
            rule: rule.into(),
        });
    }

    /// A state machine: the whole definition, a Parallel branch or a Map processor (`owner`
    /// is then the Parallel or Map state's path).
    fn machine(
        &mut self,
        m: &Map<String, Value>,
        owner: Option<&str>,
        inherited: QueryLanguage,
        top: bool,
    ) {
        let what = if top {
            "the state machine"
        } else {
            "this branch"
        };
        let allowed: &[&str] = if top {
            &[
                "Comment",
                "StartAt",
                "States",
                "Version",
                "TimeoutSeconds",
                "QueryLanguage",
            ]
        } else {
            &[
                "Comment",
                "StartAt",
                "States",
                "ProcessorConfig",
                "QueryLanguage",
            ]
        };
        for key in m.keys() {
            if !allowed.contains(&key.as_str()) {
                self.error(owner, format!("{what} has an unknown field `{key}`"));
            }
        }
        let ql = self.query_language(m, owner, inherited);
        let Some(Value::Object(states)) = m.get("States") else {
            self.error(owner, format!("{what} needs `States`, an object of states"));
            return;
        };
        if states.is_empty() {
            self.error(owner, format!("{what} has no states"));
        }
        let start = match m.get("StartAt") {
            Some(Value::String(s)) => Some(s.as_str()),
            _ => {
                self.error(
                    owner,
                    format!("{what} needs `StartAt`, the name of its first state"),
                );
                None
            }
        };
        if let Some(s) = start
            && !states.contains_key(s)
        {
            self.error(
                owner,
                format!("`StartAt` names `{s}`, which is not one of its states"),
            );
        }
        let scope: HashSet<&str> = states.keys().map(String::as_str).collect();
        let mut edges: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut terminal = false;
        for (name, state) in states {
            let path = path_of(owner, name);
            if name.chars().count() > MAX_STATE_NAME {
                self.error(
                    Some(&path),
                    format!("a state name is at most {MAX_STATE_NAME} characters"),
                );
            }
            if !self.names.insert(name.clone()) {
                self.error(
                    Some(&path),
                    "state names must be unique in the whole state machine, branches and Map \
                     processors included",
                );
            }
            let Value::Object(s) = state else {
                self.error(Some(&path), "a state is a JSON object");
                continue;
            };
            let kind = s.get("Type").and_then(Value::as_str).unwrap_or_default();
            if matches!(kind, "Succeed" | "Fail") || s.get("End") == Some(&Value::Bool(true)) {
                terminal = true;
            }
            edges.insert(name, targets(s));
            self.state(&path, s, &scope, ql);
        }
        // Every state reachable from StartAt (Step Functions refuses the others).
        if let Some(start) = start.filter(|s| scope.contains(s)) {
            let mut seen: HashSet<&str> = HashSet::from([start]);
            let mut queue = VecDeque::from([start]);
            while let Some(s) = queue.pop_front() {
                for &t in edges.get(s).into_iter().flatten() {
                    if scope.contains(t) && seen.insert(t) {
                        queue.push_back(t);
                    }
                }
            }
            for name in states.keys() {
                if !seen.contains(name.as_str()) {
                    self.error(
                        Some(&path_of(owner, name)),
                        format!("no transition from `{start}` ever reaches this state"),
                    );
                }
            }
        }
        if !terminal && !states.is_empty() {
            self.error(
                owner,
                format!("{what} has no terminal state (`\"End\": true`, Succeed or Fail)"),
            );
        }
        if ql == QueryLanguage::JsonPath {
            self.catches_that_lose_the_input(states, owner);
        }
    }

    /// A Catch without ResultPath replaces the state's input with the error; when the state it
    /// goes to reads the input's fields, that read will fail at run time (`States.Runtime`),
    /// usually in the very state meant to report the failure. A warning, since the definition
    /// is valid ASL.
    fn catches_that_lose_the_input(&mut self, states: &Map<String, Value>, owner: Option<&str>) {
        for (name, state) in states {
            let Some(Value::Array(rules)) = state.get("Catch") else {
                continue;
            };
            for (i, rule) in rules.iter().enumerate() {
                if rule.get("ResultPath").is_some() {
                    continue;
                }
                let Some(next) = rule.get("Next").and_then(Value::as_str) else {
                    continue;
                };
                let Some(target) = states.get(next) else {
                    continue;
                };
                let mut reads = Vec::new();
                input_reads(target, &mut reads);
                reads.retain(|p| !matches!(p.as_str(), "$" | "$.Error" | "$.Cause"));
                if let Some(first) = reads.first() {
                    self.warning(
                        Some(&path_of(owner, name)),
                        format!(
                            "Catch rule {} has no `ResultPath`: the error replaces the input, so \
                             `{next}` will not find `{first}` and the execution fails there (add \
                             `\"ResultPath\": \"$.error\"` to keep the input beside the error)",
                            i + 1
                        ),
                    );
                }
            }
        }
    }

    fn query_language(
        &mut self,
        m: &Map<String, Value>,
        at: Option<&str>,
        inherited: QueryLanguage,
    ) -> QueryLanguage {
        match m.get("QueryLanguage") {
            None => inherited,
            Some(Value::String(s)) if s == "JSONata" => QueryLanguage::Jsonata,
            Some(Value::String(s)) if s == "JSONPath" => QueryLanguage::JsonPath,
            Some(other) => {
                self.error(
                    at,
                    format!("`QueryLanguage` is `JSONPath` or `JSONata`, not {other}"),
                );
                inherited
            }
        }
    }

    fn state(
        &mut self,
        path: &str,
        s: &Map<String, Value>,
        scope: &HashSet<&str>,
        inherited: QueryLanguage,
    ) {
        let at = Some(path);
        let kind = match s.get("Type") {
            Some(Value::String(t)) if TYPES.contains(&t.as_str()) => t.as_str(),
            Some(other) => {
                self.error(
                    at,
                    format!("`Type` {other} is not one of {}", TYPES.join(", ")),
                );
                return;
            }
            None => {
                self.error(at, "a state needs a `Type`");
                return;
            }
        };
        let ql = self.query_language(s, at, inherited);
        let allowed = fields_of(kind);
        for key in s.keys() {
            let k = key.as_str();
            if !COMMON.contains(&k) && !allowed.contains(&k) {
                self.error(at, format!("a {kind} state has no field `{k}`"));
            } else if ql == QueryLanguage::Jsonata && JSONPATH_ONLY.contains(&k) {
                self.error(
                    at,
                    format!(
                        "`{k}` is a JSONPath field; a JSONata state uses Arguments, Output and \
                         Assign instead"
                    ),
                );
            } else if ql == QueryLanguage::JsonPath && JSONATA_ONLY.contains(&k) {
                self.error(
                    at,
                    format!("`{k}` is a JSONata field; set `\"QueryLanguage\": \"JSONata\"`"),
                );
            }
        }
        for (a, b) in EXCLUSIVE {
            if s.contains_key(a) && s.contains_key(b) {
                self.error(at, format!("`{a}` and `{b}` exclude each other: keep one"));
            }
        }
        if matches!(kind, "Task" | "Pass" | "Wait" | "Parallel" | "Map") {
            self.transition(path, s, scope);
        }
        for field in ["InputPath", "OutputPath", "ResultPath"] {
            match s.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::String(p)) if p.starts_with('$') => {}
                Some(other) => self.error(
                    at,
                    format!("`{field}` is a path starting with `$`, not {other}"),
                ),
            }
        }
        for field in ["Parameters", "ResultSelector", "ItemSelector"] {
            if let Some(v) = s.get(field) {
                self.template(path, field, v);
            }
        }
        if ql == QueryLanguage::Jsonata {
            for (key, v) in s {
                if !matches!(key.as_str(), "Type" | "Comment" | "QueryLanguage") {
                    self.jsonata_strings(path, key, v);
                }
            }
        }
        for field in ["Retry", "Catch"] {
            if let Some(v) = s.get(field) {
                self.retry_or_catch(path, field, v, scope);
            }
        }
        match kind {
            "Task" => self.task(path, s),
            "Choice" => self.choice(path, s, scope, ql),
            "Wait" => self.wait(path, s),
            "Parallel" => self.parallel(path, s, ql),
            "Map" => self.map(path, s, ql),
            _ => {}
        }
    }

    /// Task, Pass, Wait, Parallel and Map: `Next` to a state of the same machine, or `End`.
    fn transition(&mut self, path: &str, s: &Map<String, Value>, scope: &HashSet<&str>) {
        let at = Some(path);
        let end = match s.get("End") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.error(at, format!("`End` is true or false, not {other}"));
                false
            }
        };
        match (s.get("Next"), end) {
            (Some(_), true) => self.error(at, "`Next` and `\"End\": true` exclude each other"),
            (None, false) => self.error(at, "needs `Next` or `\"End\": true`"),
            (Some(next), false) => self.next(path, "Next", next, scope),
            (None, true) => {}
        }
    }

    fn next(&mut self, path: &str, field: &str, next: &Value, scope: &HashSet<&str>) {
        match next {
            Value::String(n) if scope.contains(n.as_str()) => {}
            Value::String(n) => self.error(
                Some(path),
                format!(
                    "`{field}` goes to `{n}`, which is not a state of this machine (a \
                     branch or Map processor can only go to its own states)"
                ),
            ),
            other => self.error(
                Some(path),
                format!("`{field}` is a state name, not {other}"),
            ),
        }
    }

    /// A payload template (Parameters, ResultSelector, ItemSelector): keys ending in `.$`
    /// take a path or an intrinsic function, and no key appears both with and without `.$`.
    fn template(&mut self, path: &str, field: &str, v: &Value) {
        match v {
            Value::Object(m) => {
                for (k, val) in m {
                    if let Some(plain) = k.strip_suffix(".$") {
                        if m.contains_key(plain) {
                            self.error(
                                Some(path),
                                format!(
                                    "`{field}` has both `{plain}` and `{k}`: the same field twice"
                                ),
                            );
                        }
                        match val {
                            Value::String(p) if p.starts_with('$') || p.starts_with("States.") => {}
                            other => self.error(
                                Some(path),
                                format!(
                                    "`{field}`: `{k}` takes a path or an intrinsic function, \
                                     not {other}"
                                ),
                            ),
                        }
                    } else {
                        self.template(path, field, val);
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.template(path, field, item);
                }
            }
            _ => {}
        }
    }

    /// Every `{% %}` string under a JSONata state's field.
    fn jsonata_strings(&mut self, path: &str, field: &str, v: &Value) {
        match v {
            Value::String(s) => {
                if let Some(Err(why)) = jsonata::template(s) {
                    self.error(Some(path), format!("`{field}`: JSONata `{s}`: {why}"));
                }
            }
            Value::Object(m) => {
                for val in m.values() {
                    self.jsonata_strings(path, field, val);
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.jsonata_strings(path, field, item);
                }
            }
            _ => {}
        }
    }

    fn retry_or_catch(&mut self, path: &str, field: &str, v: &Value, scope: &HashSet<&str>) {
        let at = Some(path);
        let Value::Array(rules) = v else {
            self.error(at, format!("`{field}` is an array of rules"));
            return;
        };
        let allowed: &[&str] = if field == "Retry" {
            &[
                "ErrorEquals",
                "IntervalSeconds",
                "MaxAttempts",
                "BackoffRate",
                "MaxDelaySeconds",
                "JitterStrategy",
                "Comment",
            ]
        } else {
            &[
                "ErrorEquals",
                "Next",
                "ResultPath",
                "Comment",
                "Output",
                "Assign",
            ]
        };
        for (i, rule) in rules.iter().enumerate() {
            let n = i + 1;
            let Value::Object(r) = rule else {
                self.error(at, format!("`{field}` rule {n} is not an object"));
                continue;
            };
            for k in r.keys() {
                if !allowed.contains(&k.as_str()) {
                    self.error(at, format!("`{field}` rule {n} has no field `{k}`"));
                }
            }
            match r.get("ErrorEquals") {
                Some(Value::Array(names))
                    if !names.is_empty() && names.iter().all(Value::is_string) => {}
                _ => self.error(
                    at,
                    format!(
                        "`{field}` rule {n}: `ErrorEquals` is a non-empty array of error names"
                    ),
                ),
            }
            if field == "Catch" {
                match r.get("Next") {
                    Some(next) => self.next(path, &format!("Catch rule {n} `Next`"), next, scope),
                    None => self.error(at, format!("`Catch` rule {n} needs `Next`")),
                }
            } else {
                for (k, min) in [
                    ("IntervalSeconds", 1),
                    ("MaxAttempts", 0),
                    ("MaxDelaySeconds", 1),
                ] {
                    if let Some(val) = r.get(k)
                        && val.as_u64().is_none_or(|x| x < min)
                    {
                        self.error(
                            at,
                            format!("`Retry` rule {n}: `{k}` is a whole number of at least {min}"),
                        );
                    }
                }
                if let Some(val) = r.get("BackoffRate")
                    && !val.as_f64().is_some_and(|x| x >= 1.0)
                {
                    self.error(
                        at,
                        format!("`Retry` rule {n}: `BackoffRate` is at least 1.0"),
                    );
                }
                if let Some(val) = r.get("JitterStrategy")
                    && !matches!(val.as_str(), Some("FULL" | "NONE"))
                {
                    self.error(
                        at,
                        format!("`Retry` rule {n}: `JitterStrategy` is FULL or NONE"),
                    );
                }
            }
        }
    }

    fn task(&mut self, path: &str, s: &Map<String, Value>) {
        let at = Some(path);
        match s.get("Resource") {
            Some(Value::String(r)) if is_resource(r) => {}
            Some(Value::String(r)) => self.error(
                at,
                format!(
                    "`Resource` `{r}` is neither an ARN (`arn:partition:service:...`) nor a \
                     whole `${{Name}}` substitution"
                ),
            ),
            Some(other) => self.error(at, format!("`Resource` is an ARN, not {other}")),
            None => self.error(at, "a Task state needs `Resource`"),
        }
        if let Some(c) = s.get("Credentials")
            && !c.is_object()
        {
            self.error(at, format!("`Credentials` is an object, not {c}"));
        }
        let whole = |k: &str| s.get(k).and_then(Value::as_u64);
        for k in ["TimeoutSeconds", "HeartbeatSeconds"] {
            if let Some(v) = s.get(k)
                && v.as_u64().is_none_or(|x| x < 1)
                && !v.as_str().is_some_and(|t| t.starts_with("{%"))
            {
                self.error(
                    at,
                    format!("`{k}` is a whole number of seconds, at least 1"),
                );
            }
        }
        if let (Some(h), Some(t)) = (whole("HeartbeatSeconds"), whole("TimeoutSeconds"))
            && h >= t
        {
            self.error(
                at,
                format!("`HeartbeatSeconds` ({h}) must be shorter than `TimeoutSeconds` ({t})"),
            );
        }
    }

    fn choice(
        &mut self,
        path: &str,
        s: &Map<String, Value>,
        scope: &HashSet<&str>,
        ql: QueryLanguage,
    ) {
        let at = Some(path);
        match s.get("Choices") {
            Some(Value::Array(rules)) if !rules.is_empty() => {
                for (i, rule) in rules.iter().enumerate() {
                    self.choice_rule(path, i + 1, rule, scope, ql, true);
                }
            }
            _ => self.error(
                at,
                "a Choice state needs `Choices`, a non-empty array of rules",
            ),
        }
        if let Some(d) = s.get("Default") {
            self.next(path, "Default", d, scope);
        }
    }

    fn choice_rule(
        &mut self,
        path: &str,
        n: usize,
        rule: &Value,
        scope: &HashSet<&str>,
        ql: QueryLanguage,
        top: bool,
    ) {
        let at = Some(path);
        let Value::Object(r) = rule else {
            self.error(at, format!("Choice rule {n} is not an object"));
            return;
        };
        if top {
            match r.get("Next") {
                Some(next) => self.next(path, &format!("Choice rule {n} `Next`"), next, scope),
                None => self.error(
                    at,
                    format!("Choice rule {n} needs `Next` (a Choice state never ends the machine)"),
                ),
            }
        } else if r.contains_key("Next") {
            self.error(
                at,
                format!("Choice rule {n}: only a top-level rule has `Next`"),
            );
        }
        for k in r.keys() {
            let k = k.as_str();
            let known = matches!(
                k,
                "Next"
                    | "Comment"
                    | "Assign"
                    | "Output"
                    | "Variable"
                    | "And"
                    | "Or"
                    | "Not"
                    | "Condition"
            ) || is_comparator(k);
            if !known {
                self.error(at, format!("Choice rule {n} has no field `{k}`"));
            }
        }
        if ql == QueryLanguage::Jsonata {
            if !r.contains_key("Condition") {
                self.error(at, format!("Choice rule {n} needs a JSONata `Condition`"));
            }
            return;
        }
        let comparators = r.keys().filter(|k| is_comparator(k)).count();
        let combinators: Vec<&str> = ["And", "Or", "Not"]
            .into_iter()
            .filter(|k| r.contains_key(*k))
            .collect();
        match (r.get("Variable"), comparators, combinators.as_slice()) {
            (Some(Value::String(v)), 1, []) if v.starts_with('$') => {}
            (Some(_), 1, []) => self.error(
                at,
                format!("Choice rule {n}: `Variable` is a path starting with `$`"),
            ),
            (None, 0, [one]) => {
                let inner = r.get(*one).cloned().unwrap_or(Value::Null);
                let rules = match (*one, inner) {
                    ("Not", Value::Object(o)) => vec![Value::Object(o)],
                    (_, Value::Array(a)) if !a.is_empty() => a,
                    _ => {
                        self.error(
                            at,
                            format!(
                                "Choice rule {n}: `{one}` takes {}",
                                if *one == "Not" {
                                    "one rule"
                                } else {
                                    "a non-empty array of rules"
                                }
                            ),
                        );
                        Vec::new()
                    }
                };
                for r in &rules {
                    self.choice_rule(path, n, r, scope, ql, false);
                }
            }
            _ => self.error(
                at,
                format!(
                    "Choice rule {n} is a `Variable` with one comparison, or one of And, Or, Not"
                ),
            ),
        }
    }

    fn wait(&mut self, path: &str, s: &Map<String, Value>) {
        let at = Some(path);
        let given: Vec<&str> = [
            "Seconds",
            "SecondsPath",
            "Timestamp",
            "TimestampPath",
            "Days",
        ]
        .into_iter()
        .filter(|k| s.contains_key(*k))
        .collect();
        if given.len() != 1 {
            self.error(
                at,
                format!(
                    "a Wait state has exactly one of Seconds, SecondsPath, Timestamp, \
                     TimestampPath (it has {})",
                    if given.is_empty() {
                        "none".to_string()
                    } else {
                        given.join(", ")
                    }
                ),
            );
        }
        if let Some(v) = s.get("Seconds")
            && v.as_u64().is_none()
            && !v.as_str().is_some_and(|t| t.starts_with("{%"))
        {
            self.error(at, format!("`Seconds` is a whole number, not {v}"));
        }
        if let Some(v) = s.get("Timestamp")
            && !v
                .as_str()
                .is_some_and(|t| t.starts_with("{%") || t.parse::<jiff::Timestamp>().is_ok())
        {
            self.error(at, format!("`Timestamp` is an RFC 3339 time, not {v}"));
        }
        if let Some(v) = s.get("Days") {
            if v.as_u64().is_some() {
                self.warning(
                    at,
                    "`Days` is not Amazon States Language: Careline waits Days × 86400 \
                     seconds (an extension; Step Functions would refuse it, write `Seconds`)",
                );
            } else {
                self.error(at, format!("`Days` is a whole number, not {v}"));
            }
        }
    }

    fn parallel(&mut self, path: &str, s: &Map<String, Value>, ql: QueryLanguage) {
        match s.get("Branches") {
            Some(Value::Array(branches)) if !branches.is_empty() => {
                for (i, b) in branches.iter().enumerate() {
                    match b {
                        Value::Object(m) => self.machine(m, Some(path), ql, false),
                        other => self.error(
                            Some(path),
                            format!(
                                "branch {} is a state machine object, not {}",
                                i + 1,
                                kind_of(other)
                            ),
                        ),
                    }
                }
            }
            _ => self.error(
                Some(path),
                "a Parallel state needs `Branches`, a non-empty array of state machines",
            ),
        }
    }

    fn map(&mut self, path: &str, s: &Map<String, Value>, ql: QueryLanguage) {
        match s.get("ItemProcessor").or_else(|| s.get("Iterator")) {
            Some(Value::Object(m)) => self.machine(m, Some(path), ql, false),
            Some(other) => self.error(
                Some(path),
                format!(
                    "`ItemProcessor` is a state machine object, not {}",
                    kind_of(other)
                ),
            ),
            None => self.error(
                Some(path),
                "a Map state needs `ItemProcessor` (or `Iterator`)",
            ),
        }
        if let Some(v) = s.get("MaxConcurrency")
            && v.as_u64().is_none()
            && !v.as_str().is_some_and(|t| t.starts_with("{%"))
        {
            self.error(
                Some(path),
                format!("`MaxConcurrency` is a whole number, not {v}"),
            );
        }
    }
}

/// The paths into its input that a state reads on entry: InputPath and the `.$` values of its
/// Parameters.
fn input_reads(state: &Value, out: &mut Vec<String>) {
    if let Some(p) = state.get("InputPath").and_then(Value::as_str) {
        out.push(p.to_string());
    }
    fn template(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match v.as_str() {
                        Some(p) if k.ends_with(".$") && p.starts_with("$.") => out.push(p.into()),
                        _ => template(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| template(v, out)),
            _ => {}
        }
    }
    if let Some(t) = state.get("Parameters") {
        template(t, out);
    }
}

/// The states a state can go to: Next, Default, each Choice rule's and Catch rule's Next.
fn targets(s: &Map<String, Value>) -> Vec<&str> {
    let mut out: Vec<&str> = ["Next", "Default"]
        .iter()
        .filter_map(|k| s.get(*k).and_then(Value::as_str))
        .collect();
    for list in ["Choices", "Catch"] {
        if let Some(Value::Array(rules)) = s.get(list) {
            out.extend(
                rules
                    .iter()
                    .filter_map(|r| r.get("Next").and_then(Value::as_str)),
            );
        }
    }
    out
}

/// An ARN, or a whole CloudFormation-style `${Name}` substitution.
fn is_resource(r: &str) -> bool {
    if let Some(name) = r.strip_prefix("${").and_then(|x| x.strip_suffix('}')) {
        return !name.is_empty() && !name.contains(['{', '}', '$']);
    }
    r.starts_with("arn:") && r.split(':').count() >= 6
}

/// The comparison operators of a JSONPath Choice rule.
fn is_comparator(k: &str) -> bool {
    let k = k.strip_suffix("Path").unwrap_or(k);
    if matches!(
        k,
        "BooleanEquals"
            | "StringMatches"
            | "IsNull"
            | "IsPresent"
            | "IsNumeric"
            | "IsString"
            | "IsBoolean"
            | "IsTimestamp"
    ) {
        return true;
    }
    ["String", "Numeric", "Timestamp"].iter().any(|t| {
        k.strip_prefix(t).is_some_and(|op| {
            matches!(
                op,
                "Equals" | "LessThan" | "GreaterThan" | "LessThanEquals" | "GreaterThanEquals"
            )
        })
    })
}

/// What a JSON value is, for a message ("an array", "null").
pub(super) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
