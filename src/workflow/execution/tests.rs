use std::sync::Arc;

use super::*;
use serde_json::json;

const DAY_MS: i64 = 86_400_000;
/// 2026-12-05T09:00:00Z.
const T0: i64 = 1_796_461_200_000;

fn brief() -> Arc<Definition> {
    Arc::new(
        Definition::load(include_str!(
            "../../../workflows/discharge-follow-up.asl.json"
        ))
        .expect("the brief's workflow loads"),
    )
}

fn patient() -> Value {
    json!({
        "patient_id": "p-0001",
        "medications": ["metformin"],
        "primary_care_physician_id": "dr-7",
        "vitals": {"bp": "120/80"},
        "reported_symptoms": [],
    })
}

/// The next action, which must be an invocation of `function`; returns its id and input.
fn invoked(e: &mut Execution, function: &str) -> (TaskId, Value) {
    match e.poll_action() {
        Some(Action::Invoke {
            task,
            resource,
            input,
            ..
        }) => {
            assert!(
                resource.ends_with(&format!(":function:{function}")),
                "expected {function}, got {resource}"
            );
            (task, input)
        }
        other => panic!("expected {function} to be invoked, got {other:?}"),
    }
}

fn ok(e: &mut Execution, task: TaskId, output: Value, now: i64) {
    e.handle(Event::TaskSucceeded { task, output }, now);
}

/// Walks the brief's machine to the risk check, each task passing the patient on (its result
/// replaces the state's input, as ResultPath's default `$` does).
fn to_risk_check(risk: &str) -> (Execution, i64) {
    let mut e = Execution::start(brief(), "exec-1", patient(), T0, 7);
    let (t, input) = invoked(&mut e, "CallPatient");
    assert_eq!(
        input,
        json!({"patient_id": "p-0001", "message": "退院おめでとうございます。本日の体調はいかがでしょうか。", "contact_type": "phone"})
    );
    assert_eq!(
        t,
        TaskId {
            state: "DayOneFollowup".into(),
            attempt: 1
        }
    );
    ok(&mut e, t, patient(), T0 + 60_000);
    let (t, input) = invoked(&mut e, "CheckMedicationRefills");
    assert_eq!(
        input,
        json!({"patient_id": "p-0001", "medications": ["metformin"]})
    );
    ok(&mut e, t, patient(), T0 + 61_000);
    // Two days' wait: a timer, nothing to do before it.
    assert_eq!(e.poll_action(), None);
    let due = e.poll_timeout().expect("a timer for the wait");
    assert_eq!(due, T0 + 61_000 + 2 * DAY_MS);
    e.handle_timeout(due - 1);
    assert_eq!(e.poll_action(), None, "not a millisecond early");
    e.handle_timeout(due);
    let (t, input) = invoked(&mut e, "TelemedicineConsultation");
    assert_eq!(
        input,
        json!({"patient_id": "p-0001", "provider_id": "dr-7", "duration_minutes": 15})
    );
    ok(&mut e, t, patient(), due + 1_000);
    let (t, _) = invoked(&mut e, "RiskAssessment");
    let mut assessed = patient();
    assessed["risk_level"] = json!(risk);
    assessed["risk_reason"] = json!("fever after discharge");
    ok(&mut e, t, assessed, due + 2_000);
    (e, due + 2_000)
}

fn finished(e: &mut Execution) -> Outcome {
    match e.poll_action() {
        Some(Action::Finished(o)) => o,
        other => panic!("expected the end, got {other:?}"),
    }
}

#[test]
fn a_high_risk_patient_is_escalated_to_the_physician_then_the_case_closes() {
    let (mut e, now) = to_risk_check("HIGH");
    let (t, input) = invoked(&mut e, "NotifyPhysician");
    assert_eq!(
        input,
        json!({"patient_id": "p-0001", "urgency": "HIGH", "reason": "fever after discharge"})
    );
    ok(&mut e, t, json!({"notified": true}), now + 1);
    assert_eq!(
        finished(&mut e),
        Outcome::Succeeded(json!({"notified": true}))
    );
    assert!(e.is_finished());
    let kinds: Vec<&str> = e.history().iter().map(|h| h.kind).collect();
    assert_eq!(kinds.first(), Some(&"ExecutionStarted"));
    assert_eq!(kinds.last(), Some(&"ExecutionSucceeded"));
    assert!(kinds.contains(&"WaitStateEntered") && kinds.contains(&"ChoiceStateExited"));
}

#[test]
fn medium_risk_books_a_follow_up_and_low_risk_closes_by_default() {
    let (mut e, now) = to_risk_check("MEDIUM");
    let (t, input) = invoked(&mut e, "ScheduleAppointment");
    assert_eq!(input["appointment_type"], "follow_up");
    ok(&mut e, t, json!({}), now + 1);
    assert!(matches!(finished(&mut e), Outcome::Succeeded(_)));

    let (mut e, _) = to_risk_check("LOW");
    assert!(
        matches!(finished(&mut e), Outcome::Succeeded(_)),
        "Default: CloseCase"
    );
}

#[test]
fn a_failed_call_is_retried_with_back_off_then_caught() {
    let mut e = Execution::start(brief(), "exec-2", patient(), T0, 7);
    let mut now = T0;
    // Retry: States.TaskFailed, 60 s then ×2, three attempts after the first.
    for (attempt, wait_s) in [(1, 60), (2, 120), (3, 240)] {
        let (t, _) = invoked(&mut e, "CallPatient");
        assert_eq!(t.attempt, attempt);
        e.handle(
            Event::TaskFailed {
                task: t,
                error: "Lambda.Unknown".into(),
                cause: "no answer".into(),
            },
            now,
        );
        assert_eq!(e.poll_action(), None);
        assert_eq!(e.poll_timeout(), Some(now + wait_s * 1000));
        now += wait_s * 1000;
        e.handle_timeout(now);
    }
    let (t, _) = invoked(&mut e, "CallPatient");
    assert_eq!(t.attempt, 4);
    e.handle(
        Event::TaskFailed {
            task: t,
            error: "Lambda.Unknown".into(),
            cause: "no answer".into(),
        },
        now,
    );
    // Caught (States.ALL) to NotifyCareteam, whose input is now the error alone: the brief's
    // Catch has no ResultPath, so `$.patient_id` is gone and Step Functions, like Careline,
    // fails the execution there. The care team is never told: a finding for the brief
    // (`"ResultPath": "$.error"` on the Catch keeps the patient).
    match finished(&mut e) {
        Outcome::Failed { error, cause } => {
            assert_eq!(error, "States.Runtime");
            assert!(
                cause.contains("`$.patient_id`") && cause.contains("NotifyCareteam"),
                "{cause}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_catch_with_a_result_path_keeps_the_input_and_goes_on() {
    let text = include_str!("../../../workflows/discharge-follow-up.asl.json").replace(
        r#""ErrorEquals": ["States.ALL"],
        "Next": "NotifyCareteam""#,
        r#""ErrorEquals": ["States.ALL"],
        "ResultPath": "$.error",
        "Next": "NotifyCareteam""#,
    );
    assert!(text.contains("$.error"));
    let def = Arc::new(Definition::load(&text).unwrap());
    let mut e = Execution::start(def, "exec-3", patient(), T0, 7);
    let (t, _) = invoked(&mut e, "CallPatient");
    // Not a TaskFailed-class error for the Retry? `States.TaskFailed` covers every task error
    // but a time-out: a time-out skips the retries and goes straight to the Catch.
    e.handle(
        Event::TaskFailed {
            task: t,
            error: "States.Timeout".into(),
            cause: "no answer in time".into(),
        },
        T0 + 1,
    );
    let (t, input) = invoked(&mut e, "NotifyCareteam");
    assert_eq!(
        input,
        json!({"patient_id": "p-0001", "alert_type": "CONTACT_FAILED", "timestamp": "now"})
    );
    ok(&mut e, t, json!({}), T0 + 2);
    assert!(matches!(finished(&mut e), Outcome::Succeeded(_)));
}

#[test]
fn late_or_repeated_answers_change_nothing() {
    let mut e = Execution::start(brief(), "exec-4", patient(), T0, 7);
    let (t, _) = invoked(&mut e, "CallPatient");
    let stale = TaskId {
        state: "DayOneFollowup".into(),
        attempt: 9,
    };
    ok(&mut e, stale, patient(), T0 + 1);
    assert_eq!(
        e.poll_action(),
        None,
        "an answer for another attempt is dropped"
    );
    ok(&mut e, t.clone(), patient(), T0 + 2);
    let (_, _) = invoked(&mut e, "CheckMedicationRefills");
    ok(&mut e, t, patient(), T0 + 3);
    assert_eq!(e.poll_action(), None, "the same answer twice is taken once");
}

#[test]
fn what_does_not_run_is_refused_at_load_naming_the_state() {
    let err = Definition::load(
        r#"{"StartAt": "m", "States": {"m": {"Type": "Map", "End": true,
            "ItemReader": {"Resource": "arn:aws:states:::s3:listObjectsV2", "Parameters": {"Bucket": "b"}},
            "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                              "StartAt": "a", "States": {"a": {"Type": "Pass", "End": true}}}}}}"#,
    )
    .unwrap_err();
    assert!(
        err.iter().any(|p| p.state.as_deref() == Some("m")
            && p.rule
                .contains("a distributed Map (ItemReader) does not run")),
        "{err:?}"
    );
    // A JSONata state inside a branch is found there.
    let err = Definition::load(
        r#"{"StartAt": "p", "States": {"p": {"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "a", "States": {"a": {"Type": "Pass", "QueryLanguage": "JSONata", "End": true}}}]}}}"#,
    )
    .unwrap_err();
    assert!(
        err.iter()
            .any(|p| p.state.as_deref() == Some("a")
                && p.rule.contains("JSONata states do not run yet")),
        "{err:?}"
    );
    let err =
        Definition::load(r#"{"StartAt": "a", "States": {"a": {"Type": "Pass"}}}"#).unwrap_err();
    assert!(
        err.iter().any(|p| p.rule.contains("needs `Next`")),
        "{err:?}"
    );
}

#[test]
fn choice_rules_compare_as_asl_says() {
    let input = json!({"n": 5, "s": "abc", "t": "2026-12-06T09:00:00Z", "b": true, "other": 5, "nul": null});
    let ctx = json!({});
    let rule = |r: Value| holds(&r, &input, &ctx).unwrap();
    assert!(rule(
        json!({"Variable": "$.n", "NumericGreaterThanEquals": 5})
    ));
    assert!(!rule(json!({"Variable": "$.n", "NumericLessThan": 5})));
    assert!(rule(
        json!({"Variable": "$.n", "NumericEqualsPath": "$.other"})
    ));
    assert!(rule(json!({"Variable": "$.s", "StringMatches": "a*c"})));
    assert!(!rule(json!({"Variable": "$.s", "StringMatches": "a\\*c"})));
    assert!(rule(json!({"Variable": "$.s", "StringLessThan": "abd"})));
    assert!(rule(
        json!({"Variable": "$.t", "TimestampGreaterThan": "2026-12-06T08:59:59Z"})
    ));
    assert!(rule(json!({"Variable": "$.b", "BooleanEquals": true})));
    assert!(rule(json!({"Variable": "$.nul", "IsNull": true})));
    assert!(rule(json!({"Variable": "$.gone", "IsPresent": false})));
    assert!(
        !rule(json!({"Variable": "$.gone", "StringEquals": "x"})),
        "missing is false"
    );
    assert!(
        !rule(json!({"Variable": "$.s", "NumericEquals": 5})),
        "a string is no number"
    );
    assert!(rule(json!({"And": [{"Variable": "$.n", "IsNumeric": true},
                                {"Not": {"Variable": "$.s", "StringEquals": "x"}}]})));
    assert!(rule(json!({"Or": [{"Variable": "$.n", "NumericEquals": 1},
                               {"Variable": "$.b", "BooleanEquals": true}]})));
}

#[test]
fn full_jitter_takes_its_randomness_from_the_seed() {
    let def = Arc::new(
        Definition::load(
            r#"{"StartAt": "t", "States": {"t": {"Type": "Task", "Resource": "arn:aws:lambda:x:1:function:f", "End": true,
                "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 10, "MaxAttempts": 1, "JitterStrategy": "FULL"}]}}}"#,
        )
        .unwrap(),
    );
    let delay = |seed: u64| {
        let mut e = Execution::start(def.clone(), "j", json!({}), T0, seed);
        let (t, _) = invoked(&mut e, "f");
        e.handle(
            Event::TaskFailed {
                task: t,
                error: "E".into(),
                cause: String::new(),
            },
            T0,
        );
        e.poll_timeout().unwrap() - T0
    };
    assert_eq!(delay(1), delay(1), "the same seed, the same delay");
    assert!((0..10_000).contains(&delay(1)) && (0..10_000).contains(&delay(99)));
    assert_ne!(delay(1), delay(99));
}

/// Through JSON, as a durable shell stores it.
fn stored(e: &Execution) -> Execution {
    stored_under(e, brief())
}

fn stored_under(e: &Execution, def: Arc<Definition>) -> Execution {
    let text = serde_json::to_string(&e.snapshot()).expect("a snapshot serializes");
    let snap: Snapshot = serde_json::from_str(&text).expect("and reads back");
    Execution::restore(def, snap).expect("restores under its definition")
}

#[test]
fn an_execution_restored_from_its_snapshot_goes_on_exactly_as_the_original() {
    // Stored with an invocation not yet carried out: the restored one asks for it again,
    // under the same idempotency key.
    let e = Execution::start(brief(), "exec-s", patient(), T0, 7);
    let mut copy = stored(&e);
    let (t, _) = invoked(&mut copy, "CallPatient");
    assert_eq!(t.key("exec-s"), "exec-s/DayOneFollowup/1");
    assert_eq!(copy.id(), "exec-s");
    assert!(
        copy.take_history().is_empty(),
        "history is not in the snapshot"
    );

    // Stored in the two-day wait: the timer comes back, and both runs end the same way.
    let mut a = Execution::start(brief(), "exec-s", patient(), T0, 7);
    let (t, _) = invoked(&mut a, "CallPatient");
    ok(&mut a, t, patient(), T0 + 1);
    let (t, _) = invoked(&mut a, "CheckMedicationRefills");
    ok(&mut a, t, patient(), T0 + 2);
    let mut b = stored(&a);
    assert_eq!(b.state(), "WaitForDay3");
    assert_eq!(b.poll_timeout(), a.poll_timeout());
    let due = a.poll_timeout().expect("the wait's timer");
    for e in [&mut a, &mut b] {
        e.handle_timeout(due);
        let (t, _) = invoked(e, "TelemedicineConsultation");
        ok(e, t, patient(), due + 1);
        let (t, _) = invoked(e, "RiskAssessment");
        ok(e, t, json!({"risk_level": "LOW"}), due + 2);
    }
    assert_eq!(finished(&mut a), finished(&mut b));
    assert_eq!(a.snapshot(), b.snapshot());
}

#[test]
fn a_snapshot_naming_a_state_the_definition_lacks_is_refused() {
    let mut e = Execution::start(brief(), "exec-x", patient(), T0, 7);
    let _ = invoked(&mut e, "CallPatient");
    let mut v = serde_json::to_value(e.snapshot()).expect("serializes");
    v["state"] = json!("NoSuchState");
    let snap: Snapshot = serde_json::from_value(v).expect("reads back");
    let err = Execution::restore(brief(), snap).expect_err("refused");
    assert!(err.contains("NoSuchState"), "{err}");
}

#[test]
fn a_task_s_timeout_goes_with_every_invocation_of_it() {
    let def = |timeout: &str| {
        Arc::new(
            Definition::load(&format!(
                r#"{{"StartAt": "T", "States": {{"T": {{"Type": "Task",
                "Resource": "arn:aws:lambda:us-east-1:1:function:F", {timeout}
                "Retry": [{{"ErrorEquals": ["States.Timeout"], "IntervalSeconds": 1, "MaxAttempts": 1}}],
                "End": true}}}}}}"#
            ))
            .expect("loads"),
        )
    };
    let timeout_of = |e: &mut Execution| match e.poll_action() {
        Some(Action::Invoke { timeout_secs, .. }) => timeout_secs,
        other => panic!("expected an invocation, got {other:?}"),
    };
    let mut e = Execution::start(def(r#""TimeoutSeconds": 20,"#), "t-1", json!({}), T0, 1);
    assert_eq!(timeout_of(&mut e), Some(20));
    // The retry after a timeout has the same limit.
    e.handle(
        Event::TaskFailed {
            task: TaskId {
                state: "T".into(),
                attempt: 1,
            },
            error: "States.Timeout".into(),
            cause: String::new(),
        },
        T0 + 20_000,
    );
    e.handle_timeout(T0 + 21_000);
    assert_eq!(timeout_of(&mut e), Some(20));

    let mut e = Execution::start(
        def(r#""TimeoutSecondsPath": "$.limit","#),
        "t-2",
        json!({"limit": 45}),
        T0,
        1,
    );
    assert_eq!(timeout_of(&mut e), Some(45));
    let mut e = Execution::start(def(""), "t-3", json!({}), T0, 1);
    assert_eq!(timeout_of(&mut e), None, "the shell's default");
    let mut e = Execution::start(
        def(r#""TimeoutSecondsPath": "$.limit","#),
        "t-4",
        json!({"limit": "soon"}),
        T0,
        1,
    );
    match finished(&mut e) {
        Outcome::Failed { error, cause } => {
            assert_eq!(error, "States.Runtime");
            assert!(cause.contains("TimeoutSecondsPath"), "{cause}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// Intrinsic functions run in Parameters (a Pass state's result, a Task's input); one that
/// fails raises States.IntrinsicFailure before anything is invoked, and a Catch can take it.
#[test]
fn intrinsic_functions_shape_payloads_and_their_failures_can_be_caught() {
    let machine = json!({
        "StartAt": "Greet",
        "States": {
            "Greet": {
                "Type": "Pass",
                "Parameters": {
                    "message.$": "States.Format('Hello {}, your visit is {}.', $.name, $$.Execution.Id)",
                    "meds.$": "States.ArrayLength($.medications)",
                    "first.$": "States.ArrayGetItem($.medications, 0)"
                },
                "ResultPath": "$.greeting",
                "Next": "Broken"
            },
            "Broken": {
                "Type": "Task",
                "Resource": "arn:aws:lambda:ap-northeast-1:123456789012:function:Noop",
                "Parameters": {"x.$": "States.ArrayGetItem($.medications, 9)"},
                "Catch": [{"ErrorEquals": ["States.IntrinsicFailure"], "ResultPath": "$.error", "Next": "Done"}],
                "Next": "Done"
            },
            "Done": {"Type": "Succeed"}
        }
    });
    let def = Arc::new(Definition::load(&machine.to_string()).expect("loads"));
    let input = json!({"name": "Ada", "medications": ["metformin", "lisinopril"]});
    let mut e = Execution::start(def, "exec-9", input, T0, 7);
    match finished(&mut e) {
        Outcome::Succeeded(out) => {
            assert_eq!(
                out["greeting"],
                json!({"message": "Hello Ada, your visit is exec-9.", "meds": 2, "first": "metformin"})
            );
            assert_eq!(out["error"]["Error"], "States.IntrinsicFailure", "{out}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_malformed_or_unknown_intrinsic_is_refused_at_load_naming_state_and_field() {
    for (call, why) in [
        ("States.Format('x'", "expected `,` or `)`"),
        (
            "States.Format('{}', States.Nope())",
            "not an intrinsic function",
        ),
        ("States.Frobnicate(1)", "not an intrinsic function"),
    ] {
        let machine = json!({
            "StartAt": "A",
            "States": {"A": {"Type": "Pass", "Parameters": {"v.$": call}, "End": true}}
        });
        let problems = Definition::load(&machine.to_string()).expect_err(call);
        let text = format!("{problems:?}");
        assert!(
            text.contains("\"A\"") && text.contains("Parameters.v.$") && text.contains(why),
            "{call}: {text}"
        );
    }
}

/// A random intrinsic draws from the execution's stored random state: a step replayed from
/// the same snapshot draws the same value (a resumed execution repeats nothing), the next
/// step another one.
#[test]
fn a_random_value_is_the_same_when_a_step_is_replayed_from_its_snapshot() {
    let machine = json!({
        "StartAt": "Ask",
        "States": {
            "Ask": {
                "Type": "Task",
                "Resource": "arn:aws:lambda:ap-northeast-1:123456789012:function:Ask",
                "ResultPath": "$.answer",
                "Next": "Tag"
            },
            "Tag": {
                "Type": "Pass",
                "Parameters": {"id.$": "States.UUID()", "n.$": "States.MathRandom(0, 1000000)"},
                "End": true
            }
        }
    });
    let def = Arc::new(Definition::load(&machine.to_string()).expect("loads"));
    let mut e = Execution::start(def.clone(), "exec-r", json!({}), T0, 42);
    let (task, _) = invoked(&mut e, "Ask");
    let saved = e.snapshot();
    let run = |mut e: Execution| {
        ok(&mut e, task.clone(), json!(1), T0 + 1_000);
        match finished(&mut e) {
            Outcome::Succeeded(out) => out,
            other => panic!("{other:?}"),
        }
    };
    let first = run(Execution::restore(def.clone(), saved.clone()).unwrap());
    let again = run(Execution::restore(def.clone(), saved).unwrap());
    assert_eq!(first, again, "replayed from the same snapshot");
    let other = run(e);
    assert_eq!(other, first, "the live execution is that same step");
    let mut fresh = Execution::start(def, "exec-s", json!({}), T0, 43);
    let (task, _) = invoked(&mut fresh, "Ask");
    ok(&mut fresh, task, json!(1), T0 + 1_000);
    match finished(&mut fresh) {
        Outcome::Succeeded(out) => assert_ne!(out["id"], first["id"], "another execution"),
        other => panic!("{other:?}"),
    }
}

// Parallel and Map.

fn load(text: &str) -> Arc<Definition> {
    Arc::new(Definition::load(text).expect("the definition loads"))
}

/// Every invocation asked for now: (task, function, input).
fn invocations(e: &mut Execution) -> Vec<(TaskId, String, Value)> {
    let mut out = Vec::new();
    while let Some(a) = e.poll_action() {
        match a {
            Action::Invoke {
                task,
                resource,
                input,
                ..
            } => out.push((task, function_name(&resource).to_string(), input)),
            other => panic!("expected invocations only, got {other:?}"),
        }
    }
    out
}

fn fail(e: &mut Execution, task: TaskId, error: &str, now: i64) {
    e.handle(
        Event::TaskFailed {
            task,
            error: error.into(),
            cause: format!("{error} from the test"),
        },
        now,
    );
}

const ARN: &str = "arn:aws:lambda:us-east-1:1:function:";

/// The care team is told and the refills are checked at once; the results, in branch order,
/// go under `$.checks`.
fn notify_and_refills() -> Arc<Definition> {
    load(&format!(
        r#"{{"StartAt": "Both", "States": {{
        "Both": {{"Type": "Parallel", "ResultPath": "$.checks", "Next": "Done",
          "Retry": [{{"ErrorEquals": ["Busy"], "IntervalSeconds": 10, "MaxAttempts": 1}}],
          "Catch": [{{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}}],
          "Branches": [
            {{"StartAt": "Notify", "States": {{"Notify": {{"Type": "Task", "Resource": "{ARN}NotifyCareteam", "End": true}}}}}},
            {{"StartAt": "Refills", "States": {{
              "Refills": {{"Type": "Task", "Resource": "{ARN}CheckMedicationRefills", "Next": "Pause"}},
              "Pause": {{"Type": "Wait", "Seconds": 60, "End": true}}}}}}]}},
        "Done": {{"Type": "Succeed"}},
        "Caught": {{"Type": "Pass", "End": true}}}}}}"#
    ))
}

#[test]
fn a_parallel_state_runs_its_branches_at_once_and_keeps_their_results_in_order() {
    let mut e = Execution::start(
        notify_and_refills(),
        "x",
        json!({"patient_id": "p1"}),
        T0,
        1,
    );
    let asked = invocations(&mut e);
    assert_eq!(
        asked
            .iter()
            .map(|(t, f, i)| (t.key("x"), f.as_str(), i.clone()))
            .collect::<Vec<_>>(),
        vec![
            (
                "x/Both#1[0]/Notify/1".to_string(),
                "NotifyCareteam",
                json!({"patient_id": "p1"})
            ),
            (
                "x/Both#1[1]/Refills/1".to_string(),
                "CheckMedicationRefills",
                json!({"patient_id": "p1"})
            ),
        ],
        "both branches asked at once, each invocation with its own key"
    );
    // The second branch answers first and then waits; the first answers later.
    ok(
        &mut e,
        asked[1].0.clone(),
        json!({"due": ["metformin"]}),
        T0 + 1_000,
    );
    assert_eq!(e.poll_timeout(), Some(T0 + 61_000), "the branch's wait");
    ok(
        &mut e,
        asked[0].0.clone(),
        json!({"told": true}),
        T0 + 2_000,
    );
    assert_eq!(
        e.poll_action(),
        None,
        "the Parallel waits for its slowest branch"
    );
    e.handle_timeout(T0 + 61_000);
    assert_eq!(
        finished(&mut e),
        Outcome::Succeeded(json!({
            "patient_id": "p1",
            "checks": [{"told": true}, {"due": ["metformin"]}],
        }))
    );
    let kinds: Vec<&str> = e.history().iter().map(|h| h.kind).collect();
    for kind in [
        "ParallelStateEntered",
        "ParallelStateStarted",
        "ParallelStateSucceeded",
        "ParallelStateExited",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
}

#[test]
fn a_failed_branch_stops_the_others_and_the_parallel_state_is_retried_then_caught() {
    let mut e = Execution::start(
        notify_and_refills(),
        "x",
        json!({"patient_id": "p1"}),
        T0,
        1,
    );
    let first = invocations(&mut e);
    fail(&mut e, first[0].0.clone(), "Busy", T0 + 1_000);
    // The other branch is stopped: its answer now finds nothing waiting.
    ok(&mut e, first[1].0.clone(), json!({}), T0 + 1_500);
    assert_eq!(e.poll_action(), None);
    assert_eq!(
        e.poll_timeout(),
        Some(T0 + 11_000),
        "the Parallel's own retry"
    );
    e.handle_timeout(T0 + 11_000);
    let second = invocations(&mut e);
    assert_eq!(
        second.iter().map(|(t, ..)| t.key("x")).collect::<Vec<_>>(),
        vec!["x/Both#2[0]/Notify/1", "x/Both#2[1]/Refills/1"],
        "the whole state runs again, under new keys (nothing of the first attempt is reused)"
    );
    // A late answer for the first attempt changes nothing.
    ok(&mut e, first[0].0.clone(), json!({}), T0 + 12_000);
    assert_eq!(e.poll_action(), None);
    fail(&mut e, second[1].0.clone(), "Busy", T0 + 13_000);
    assert_eq!(
        finished(&mut e),
        Outcome::Succeeded(json!({
            "patient_id": "p1",
            "error": {"Error": "Busy", "Cause": "Busy from the test"},
        })),
        "retries spent, the Catch goes on with the input and the error"
    );
}

#[test]
fn a_map_state_runs_an_iteration_per_item_within_its_concurrency() {
    let def = load(&format!(
        r#"{{"StartAt": "EachPatient", "States": {{
        "EachPatient": {{"Type": "Map", "ItemsPath": "$.patients", "MaxConcurrency": 2,
          "ItemSelector": {{"patient_id.$": "$$.Map.Item.Value.id", "n.$": "$$.Map.Item.Index", "message.$": "$.message"}},
          "ResultSelector": {{"calls.$": "$"}},
          "ItemProcessor": {{"StartAt": "Call", "States": {{
            "Call": {{"Type": "Task", "Resource": "{ARN}CallPatient", "End": true}}}}}},
          "End": true}}}}}}"#
    ));
    let input = json!({"message": "hello", "patients": [{"id": "a"}, {"id": "b"}, {"id": "c"}]});
    let mut e = Execution::start(def, "x", input, T0, 1);
    let first = invocations(&mut e);
    assert_eq!(
        first.iter().map(|(_, _, i)| i.clone()).collect::<Vec<_>>(),
        vec![
            json!({"patient_id": "a", "n": 0, "message": "hello"}),
            json!({"patient_id": "b", "n": 1, "message": "hello"}),
        ],
        "two at a time: the third waits for a place"
    );
    ok(&mut e, first[1].0.clone(), json!("b answered"), T0 + 1_000);
    let third = invocations(&mut e);
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].0.key("x"), "x/EachPatient#1[2]/Call/1");
    assert_eq!(
        third[0].2,
        json!({"patient_id": "c", "n": 2, "message": "hello"})
    );
    ok(&mut e, third[0].0.clone(), json!("c answered"), T0 + 2_000);
    ok(&mut e, first[0].0.clone(), json!("a answered"), T0 + 3_000);
    assert_eq!(
        finished(&mut e),
        Outcome::Succeeded(json!({"calls": ["a answered", "b answered", "c answered"]})),
        "the results in the items' order, whatever order they came in"
    );
}

#[test]
fn a_map_over_nothing_succeeds_at_once_and_one_over_a_non_array_fails_the_execution() {
    let def = load(
        r#"{"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "End": true,
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Bad"}],
            "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}},
            "Bad": {"Type": "Pass", "End": true}}}"#,
    );
    let mut e = Execution::start(def.clone(), "x", json!({"items": []}), T0, 1);
    assert_eq!(finished(&mut e), Outcome::Succeeded(json!([])));
    let mut e = Execution::start(def.clone(), "x", json!({"items": [1, {"a": 2}]}), T0, 1);
    assert_eq!(
        finished(&mut e),
        Outcome::Succeeded(json!([1, {"a": 2}])),
        "Pass-only iterations end without waiting"
    );
    // The definition is at fault: States.Runtime, which no Catch takes (Step Functions').
    let mut e = Execution::start(def, "x", json!({"items": "three"}), T0, 1);
    match finished(&mut e) {
        Outcome::Failed { error, cause } => {
            assert_eq!(error, "States.Runtime");
            assert!(cause.contains("are a string, not an array"), "{cause}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_fail_state_in_an_iteration_fails_the_map_with_its_error() {
    let def = load(
        r#"{"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
            "ItemProcessor": {"StartAt": "Check", "States": {
              "Check": {"Type": "Choice", "Choices": [{"Variable": "$", "NumericGreaterThan": 180, "Next": "High"}], "Default": "Fine"},
              "High": {"Type": "Fail", "Error": "HighBloodPressure", "Cause": "systolic over 180"},
              "Fine": {"Type": "Succeed"}}}}}}"#,
    );
    let mut e = Execution::start(def.clone(), "x", json!([120, 130]), T0, 1);
    assert_eq!(finished(&mut e), Outcome::Succeeded(json!([120, 130])));
    let mut e = Execution::start(def, "x", json!([120, 190, 130]), T0, 1);
    assert_eq!(
        finished(&mut e),
        Outcome::Failed {
            error: "HighBloodPressure".into(),
            cause: "systolic over 180".into()
        }
    );
    assert!(
        e.history().iter().any(|h| h.kind == "MapIterationFailed"),
        "{:?}",
        e.history()
    );
}

#[test]
fn a_map_inside_a_parallel_restored_from_its_snapshot_goes_on_as_the_original() {
    let def = load(&format!(
        r#"{{"StartAt": "P", "States": {{"P": {{"Type": "Parallel", "End": true, "Branches": [
            {{"StartAt": "M", "States": {{"M": {{"Type": "Map", "End": true,
              "ItemProcessor": {{"StartAt": "W", "States": {{
                "W": {{"Type": "Wait", "SecondsPath": "$", "Next": "T"}},
                "T": {{"Type": "Task", "Resource": "{ARN}CallPatient", "End": true}}}}}}}}}}}},
            {{"StartAt": "Now", "States": {{"Now": {{"Type": "Task", "Resource": "{ARN}NotifyCareteam", "End": true}}}}}}]}}}}}}"#
    ));
    let mut original = Execution::start(def.clone(), "x", json!([5, 1]), T0, 1);
    let notify = invocations(&mut original);
    assert_eq!(notify.len(), 1, "the iterations wait first");
    assert_eq!(
        original.poll_timeout(),
        Some(T0 + 1_000),
        "the earliest timer of all"
    );
    original.handle_timeout(T0 + 1_000);
    let call_second = invocations(&mut original);
    assert_eq!(call_second[0].0.key("x"), "x/P#1[0]/M#1[1]/T/1");
    assert_eq!(original.poll_timeout(), Some(T0 + 5_000));
    // Restored mid-way, the copy and the original answer alike to the same events.
    let mut copy = stored_under(&original, def);
    for e in [&mut original, &mut copy] {
        ok(e, notify[0].0.clone(), json!("told"), T0 + 2_000);
        ok(e, call_second[0].0.clone(), json!("second"), T0 + 3_000);
        e.handle_timeout(T0 + 5_000);
        let call_first = invocations(e);
        assert_eq!(call_first[0].0.key("x"), "x/P#1[0]/M#1[0]/T/1");
        ok(e, call_first[0].0.clone(), json!("first"), T0 + 6_000);
        assert_eq!(
            finished(e),
            Outcome::Succeeded(json!([["first", "second"], "told"]))
        );
    }
}

#[test]
fn a_map_with_a_tolerated_failure_count_goes_on_past_that_many_failures_and_no_further() {
    let def = |count: u64| {
        load(&format!(
            r#"{{"StartAt": "M", "States": {{"M": {{"Type": "Map", "End": true,
            "ToleratedFailureCount": {count},
            "ItemProcessor": {{"StartAt": "Call", "States": {{
              "Call": {{"Type": "Task", "Resource": "{ARN}CallPatient", "End": true}}}}}}}}}}}}"#
        ))
    };
    let mut e = Execution::start(def(1), "x", json!(["a", "b", "c"]), T0, 1);
    let calls = invocations(&mut e);
    ok(&mut e, calls[0].0.clone(), json!("reached"), T0 + 1);
    fail(&mut e, calls[1].0.clone(), "NoAnswer", T0 + 2);
    ok(&mut e, calls[2].0.clone(), json!("reached"), T0 + 3);
    assert_eq!(
        finished(&mut e),
        Outcome::Succeeded(json!([
            "reached",
            {"Error": "NoAnswer", "Cause": "NoAnswer from the test"},
            "reached"
        ])),
        "one failure tolerated: its error stands in its place"
    );
    let mut e = Execution::start(def(1), "x", json!(["a", "b", "c"]), T0, 1);
    let calls = invocations(&mut e);
    fail(&mut e, calls[0].0.clone(), "NoAnswer", T0 + 1);
    fail(&mut e, calls[2].0.clone(), "Busy", T0 + 2);
    match finished(&mut e) {
        Outcome::Failed { error, cause } => {
            assert_eq!(error, "States.ExceedToleratedFailureThreshold");
            assert!(cause.contains("2 of 3 iterations failed"), "{cause}");
        }
        other => panic!("{other:?}"),
    }
}
