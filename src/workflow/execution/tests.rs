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
fn what_does_not_run_yet_is_refused_at_load_naming_the_state() {
    let err = Definition::load(
        r#"{"StartAt": "p", "States": {"p": {"Type": "Parallel", "End": true, "Branches": [{"StartAt": "a", "States": {"a": {"Type": "Pass", "End": true}}}]}}}"#,
    )
    .unwrap_err();
    assert!(
        err.iter().any(|p| p.state.as_deref() == Some("p")
            && p.rule.contains("Parallel states do not run yet")),
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
    let text = serde_json::to_string(&e.snapshot()).expect("a snapshot serializes");
    let snap: Snapshot = serde_json::from_str(&text).expect("and reads back");
    Execution::restore(brief(), snap).expect("restores under its definition")
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
