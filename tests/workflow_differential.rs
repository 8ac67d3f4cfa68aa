//! Differential semantics: a corpus of state machines with inputs (`tests/asl/cases.json`:
//! every state type, Choice comparisons, Retry and Catch, Parallel, Map, intrinsics) runs
//! through Careline's interpreter and through aws-local-stepfunctions (npm, a second ASL
//! interpreter written from the same specification), with every Task answered by the same
//! rule on both sides; the outcomes must be the same. Where Careline differs on purpose, the
//! case says how and why (`careline`, `why`), and that is what is checked.

use std::collections::HashMap;
use std::sync::Arc;

use careline::workflow::{Action, Definition, Event, Execution, Outcome};
use serde_json::{Value, json};

mod support;

/// 2026-12-05T09:00:00Z.
const T0: i64 = 1_796_461_200_000;

/// A case run by Careline's interpreter, waits and back-offs taking no time. A Task answers
/// as `tests/asl/run.mjs` makes aws-local-stepfunctions answer: the error named by the
/// input's `fail`, while this state has seen that same input fewer than `fail_times` times
/// (always, without it); otherwise `{"task": STATE, "got": INPUT}`.
fn careline(case: &Value) -> Value {
    let def = match Definition::load(&case["definition"].to_string()) {
        Ok(d) => Arc::new(d),
        Err(problems) => return json!({"status": "REFUSED", "problems": format!("{problems:?}")}),
    };
    let mut e = Execution::start(def, "diff", case["input"].clone(), T0, 1);
    let mut now = T0;
    let mut seen: HashMap<String, u64> = HashMap::new();
    for _ in 0..100_000 {
        match e.poll_action() {
            Some(Action::Invoke { task, input, .. }) => {
                // The state's own name, without the branch it runs in.
                let state = task
                    .state
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let n = seen.entry(format!("{state}\0{input}")).or_default();
                let fail = input
                    .get("fail")
                    .and_then(Value::as_str)
                    .filter(|_| {
                        input
                            .get("fail_times")
                            .and_then(Value::as_u64)
                            .is_none_or(|times| *n < times)
                    })
                    .map(str::to_string);
                *n += 1;
                let event = match fail {
                    Some(error) => Event::TaskFailed {
                        task,
                        cause: format!("{error} in {state}"),
                        error,
                    },
                    None => Event::TaskSucceeded {
                        task,
                        output: json!({"task": state, "got": input}),
                    },
                };
                e.handle(event, now);
            }
            Some(Action::Finished(Outcome::Succeeded(output))) => {
                return json!({"status": "SUCCEEDED", "output": output});
            }
            Some(Action::Finished(Outcome::Failed { error, cause })) => {
                return json!({"status": "FAILED", "error": error, "cause": cause});
            }
            None => match e.poll_timeout() {
                Some(at) => {
                    now = now.max(at);
                    e.handle_timeout(now);
                }
                None => return json!({"status": "STUCK", "state": e.state()}),
            },
        }
    }
    json!({"status": "RUNAWAY"})
}

/// The same cases through aws-local-stepfunctions, in order.
fn aws_local(cases_file: &std::path::Path) -> Vec<Value> {
    let dir = support::server::repo_root().join("tests/asl");
    assert!(
        dir.join("node_modules/aws-local-stepfunctions").is_dir(),
        "aws-local-stepfunctions is not installed: npm ci --prefix tests/asl (scripts/test does)"
    );
    let out = std::process::Command::new("node")
        .arg(dir.join("run.mjs"))
        .arg(cases_file)
        .output()
        .expect("run node (Debian's nodejs)");
    assert!(
        out.status.success(),
        "run.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("run.mjs prints JSON")
}

/// Whether two outcomes are the same: the status, and the output or the error. A failure's
/// cause is compared where it is the definition's or the task's own text; the wording of
/// `States.*` causes is each interpreter's.
fn same(a: &Value, b: &Value) -> bool {
    if a["status"] != b["status"] {
        return false;
    }
    match a["status"].as_str() {
        Some("SUCCEEDED") => a["output"] == b["output"],
        Some("FAILED") => {
            a["error"] == b["error"]
                && (a["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("States."))
                    || a["cause"] == b["cause"])
        }
        _ => false,
    }
}

#[test]
fn careline_and_aws_local_stepfunctions_agree_on_the_corpus() {
    let file = support::server::repo_root().join("tests/asl/cases.json");
    let cases: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read the corpus"))
            .expect("the corpus is JSON");
    let theirs = aws_local(&file);
    assert_eq!(theirs.len(), cases.len());
    let mut differences = Vec::new();
    for (case, theirs) in cases.iter().zip(&theirs) {
        let name = case["name"].as_str().unwrap_or_default();
        assert_eq!(theirs["name"], name, "run.mjs answers in order");
        let ours = careline(case);
        match case.get("careline") {
            // A difference Careline makes on purpose: theirs must still be what the case
            // says Step Functions does, and ours what the case says Careline does.
            Some(expected) => {
                if !same(&ours, expected) || !same(theirs, &case["aws"]) {
                    differences.push(format!(
                        "{name} (a known difference: {}): Careline {ours}, expected {expected}; \
                         aws-local-stepfunctions {theirs}, expected {}",
                        case["why"], case["aws"]
                    ));
                }
            }
            None => {
                if !same(&ours, theirs) {
                    differences.push(format!(
                        "{name}: Careline {ours}; aws-local-stepfunctions {theirs}"
                    ));
                }
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} cases differ:\n{}",
        differences.len(),
        cases.len(),
        differences.join("\n")
    );
}
