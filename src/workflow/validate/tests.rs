use super::*;
use serde_json::json;

/// The errors of a definition given as a JSON value, as "state: rule" lines.
fn errors(def: Value) -> Vec<String> {
    validate(&def.to_string())
        .into_iter()
        .filter(Problem::is_error)
        .map(|p| format!("{}: {}", p.state.unwrap_or_default(), p.rule))
        .collect()
}

/// One error, on `state`, whose rule mentions `says`.
fn refused(def: Value, state: &str, says: &str) {
    let e = errors(def);
    assert!(
        e.iter()
            .any(|l| l.starts_with(&format!("{state}: ")) && l.contains(says)),
        "expected `{state}: ...{says}...`, got {e:#?}"
    );
}

fn pass_end() -> Value {
    json!({"Type": "Pass", "End": true})
}

#[test]
fn the_brief_s_discharge_follow_up_loads_with_warnings_for_its_days_and_its_catches() {
    let text = include_str!("../../../workflows/discharge-follow-up.asl.json");
    let problems = validate(text);
    assert!(problems.iter().all(|p| !p.is_error()), "{problems:#?}");
    let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("warning: state `WaitForDay3`") && l.contains("Days × 86400")),
        "{lines:#?}"
    );
    // Both Catches go to NotifyCareteam, which reads `$.patient_id` from an input the error
    // has replaced.
    for state in ["DayOneFollowup", "Day3Assessment"] {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!(
                "warning: state `{state}`: Catch rule 1 has no `ResultPath`"
            )) && l.contains("`NotifyCareteam` will not find `$.patient_id`")),
            "{state}: {lines:#?}"
        );
    }
    // With ResultPath on the Catches, only the Days warning is left.
    let fixed = text.replace(
        r#""ErrorEquals": ["States.ALL"],
        "Next""#,
        r#""ErrorEquals": ["States.ALL"],
        "ResultPath": "$.error",
        "Next""#,
    );
    assert_eq!(validate(&fixed).len(), 1, "{:#?}", validate(&fixed));
}

#[test]
fn a_minimal_machine_and_each_state_type_pass() {
    let def = json!({
        "StartAt": "task",
        "States": {
            "task": {"Type": "Task", "Resource": "arn:aws:lambda:ap-northeast-1:1:function:f",
                     "TimeoutSeconds": 60, "HeartbeatSeconds": 10, "Next": "choose",
                     "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1,
                                "MaxAttempts": 2, "BackoffRate": 1.5, "JitterStrategy": "FULL"}],
                     "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "failed"}]},
            "choose": {"Type": "Choice", "Default": "wait", "Choices": [
                {"Variable": "$.n", "NumericGreaterThan": 3, "Next": "both"},
                {"And": [{"Variable": "$.s", "IsPresent": true},
                         {"Not": {"Variable": "$.s", "StringEquals": "x"}}], "Next": "map"}]},
            "wait": {"Type": "Wait", "Timestamp": "2026-12-06T09:00:00Z", "Next": "done"},
            "both": {"Type": "Parallel", "Next": "done", "Branches": [
                {"StartAt": "one", "States": {"one": pass_end()}},
                {"StartAt": "two", "States": {"two": {"Type": "Wait", "Seconds": 1, "End": true}}}]},
            "map": {"Type": "Map", "ItemsPath": "$.items", "Next": "done",
                    "ItemProcessor": {"StartAt": "each", "States": {"each": pass_end()}}},
            "failed": {"Type": "Fail", "Error": "E", "Cause": "c"},
            "done": {"Type": "Succeed"}
        }
    });
    assert_eq!(errors(def), Vec::<String>::new());
}

#[test]
fn transitions_must_stay_inside_their_machine_and_reach_an_end() {
    refused(
        json!({"StartAt": "a", "States": {"a": {"Type": "Pass", "Next": "nowhere"}}}),
        "a",
        "`Next` goes to `nowhere`",
    );
    refused(
        json!({"StartAt": "a", "States": {"a": {"Type": "Pass"}}}),
        "a",
        "needs `Next` or `\"End\": true`",
    );
    refused(
        json!({"StartAt": "a", "States": {"a": {"Type": "Pass", "Next": "b"},
                                          "b": {"Type": "Pass", "Next": "a"}}}),
        "",
        "no terminal state",
    );
    refused(
        json!({"StartAt": "a", "States": {"a": pass_end(), "lost": pass_end()}}),
        "lost",
        "no transition from `a` ever reaches",
    );
    // A branch cannot leave its branch.
    refused(
        json!({"StartAt": "p", "States": {
            "p": {"Type": "Parallel", "Next": "out", "Branches": [
                {"StartAt": "in", "States": {"in": {"Type": "Pass", "Next": "out"}}}]},
            "out": pass_end()}}),
        "p › in",
        "not a state of this machine",
    );
    // A Choice never ends the machine itself.
    refused(
        json!({"StartAt": "c", "States": {
            "c": {"Type": "Choice", "Default": "x",
                  "Choices": [{"Variable": "$.a", "BooleanEquals": true, "End": true}]},
            "x": pass_end()}}),
        "c",
        "needs `Next`",
    );
}

#[test]
fn names_are_short_and_unique_across_branches() {
    let long = "n".repeat(81);
    refused(
        json!({"StartAt": long, "States": {long.clone(): pass_end()}}),
        &long,
        "at most 80 characters",
    );
    refused(
        json!({"StartAt": "m", "States": {
            "m": {"Type": "Map", "Next": "same",
                  "ItemProcessor": {"StartAt": "same", "States": {"same": pass_end()}}},
            "same": pass_end()}}),
        "same",
        "unique in the whole state machine",
    );
}

#[test]
fn fields_are_checked_per_state_type() {
    refused(
        json!({"StartAt": "a", "States": {"a": {"Type": "Pass", "InputPat": "$.x", "End": true}}}),
        "a",
        "no field `InputPat`",
    );
    refused(
        json!({"StartAt": "a", "States": {"a": {"Type": "Fail", "Cause": "x", "CausePath": "$.c"}}}),
        "a",
        "`Cause` and `CausePath` exclude each other",
    );
    refused(
        json!({"StartAt": "a", "States": {"a": {"Type": "Wait", "Seconds": 5,
                                                "Timestamp": "2026-01-01T00:00:00Z", "End": true}}}),
        "a",
        "exactly one of Seconds",
    );
    refused(
        json!({"StartAt": "a", "States": {"a": {"Type": "Task", "Resource": "${fn",
                                                "End": true}}}),
        "a",
        "neither an ARN",
    );
    refused(
        json!({"StartAt": "a", "States": {"a": {"Type": "Task", "Resource": "arn:aws:states:::x:y",
                                                "Credentials": null, "End": true}}}),
        "a",
        "`Credentials` is an object",
    );
    refused(
        json!({"StartAt": "a", "States": {"a": {"Type": "Task", "Resource": "arn:aws:states:::x:y",
                                                "TimeoutSeconds": 10, "HeartbeatSeconds": 10,
                                                "End": true}}}),
        "a",
        "must be shorter than `TimeoutSeconds`",
    );
    refused(
        json!({"StartAt": "a", "States": {"a": {"Type": "Task", "Resource": "arn:aws:states:::x:y",
                                                "Catch": [{"ErrorEquals": [1], "Next": "a"}],
                                                "End": true}}}),
        "a",
        "`ErrorEquals` is a non-empty array",
    );
    refused(
        json!({"StartAt": "a", "States": {"a": {"Type": "Pass", "End": true,
            "Parameters": {"deep": [{"k": 1, "k.$": "$.k"}]}}}}),
        "a",
        "both `k` and `k.$`",
    );
    refused(
        json!({"StartAt": "p", "States": {"p": {"Type": "Parallel", "End": true,
                                                "Branches": [[{"StartAt": "x"}]]}}}),
        "p",
        "branch 1 is a state machine object, not an array",
    );
}

#[test]
fn jsonata_states_use_jsonata_fields_and_well_formed_expressions() {
    refused(
        json!({"QueryLanguage": "JSONata", "StartAt": "a",
               "States": {"a": {"Type": "Pass", "OutputPath": "$.x", "End": true}}}),
        "a",
        "`OutputPath` is a JSONPath field",
    );
    refused(
        json!({"StartAt": "a",
               "States": {"a": {"Type": "Pass", "Output": {"x": 1}, "End": true}}}),
        "a",
        "`Output` is a JSONata field",
    );
    refused(
        json!({"StartAt": "a", "States": {"a": {"Type": "Pass", "QueryLanguage": "JSONata",
                                                "Output": "{% 1 + %}", "End": true}}}),
        "a",
        "ends with an operator",
    );
    assert_eq!(
        errors(json!({"StartAt": "a", "States": {"a": {"Type": "Pass",
            "QueryLanguage": "JSONata", "Output": {"sum": "{% $sum($states.input.n) %}"},
            "End": true}}})),
        Vec::<String>::new()
    );
}

#[test]
fn not_json_and_not_a_machine_are_named() {
    let p = validate("{\"StartAt\": ");
    assert!(
        p[0].is_error() && p[0].rule.starts_with("not JSON"),
        "{p:?}"
    );
    let p = validate("[]");
    assert!(p[0].rule.contains("JSON object"), "{p:?}");
    refused(json!({"States": {"a": pass_end()}}), "", "needs `StartAt`");
}
