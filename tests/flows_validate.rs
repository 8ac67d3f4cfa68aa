//! `careline flow validate`: real exported flows load, and a broken flow gets every problem
//! reported at once, each naming file, action Identifier, Type and reason.

mod support;

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Connect exports of the conformance corpus; `None` (the suite is skipped, saying so)
/// where the corpus is not present.
fn conformance() -> Option<Vec<PathBuf>> {
    let files = support::fixtures::conformance_json("connect-flows");
    if files.is_empty() {
        return None;
    }
    assert_eq!(files.len(), 15, "the conformance set");
    Some(files)
}

/// Runs `careline --config CONFIG flow validate ARGS` in `cwd`; returns (exit code, stdout+stderr).
fn validate(config: &str, args: &[&Path], extra: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("careline.toml");
    std::fs::write(&cfg, config).unwrap();
    let out = support::server::careline_command()
        .current_dir(repo())
        .arg("--config")
        .arg(&cfg)
        .args(["flow", "validate"])
        .args(extra)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Maps every reference the conformance flows make to Careline resources.
const RESOURCE_MAP: &str = r#"
[flows.resources]
"<PATIENT_VERIFICATION_LAMBDA_ARN>" = "verify"
"${P:CustomerQueue.wav:P}" = "en/welcome"
[queues.sales]
[queues.finance]
[lambda.verify]
url = "http://127.0.0.1:9/verify"
"#;

#[test]
fn strict_mode_names_exactly_the_unsupported_types_that_block_each_file() {
    let Some(files) = conformance() else {
        return;
    };
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let (code, out) = validate(RESOURCE_MAP, &refs, &[]);
    assert_eq!(code, 1, "{out}");
    let errors: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("not supported"))
        .collect();
    let blocked: Vec<String> = errors
        .iter()
        .map(|l| {
            let file = l.split(':').next().unwrap().rsplit('/').next().unwrap();
            let action = l.split('`').nth(1).unwrap();
            format!("{file} {action}")
        })
        .collect();
    assert_eq!(
        blocked,
        vec![
            "gitlab-cicd.acme_main_AUTO.json f713e89c-d360-49a9-93ee-1fbaa5e0ff72",
            "outbound-call.GetCustomerNameModule.json Prompt Customer Name",
            "outbound-call.GetCustomerResponseModule.json Ask for Modified Input",
            "outbound-call.GetCustomerResponseModule.json Collect Customer Input",
        ],
        "{out}"
    );
    assert!(
        errors
            .iter()
            .all(|l| l.contains("(ConnectParticipantWithLexBot)"))
    );
    assert_eq!(
        out.lines()
            .filter(|l| !l.contains("warning:") && l.contains(".json:"))
            .count(),
        4,
        "nothing else is an error with the resource map:\n{out}"
    );
    assert!(out.contains("careline: 4 error(s) in 15 file(s)"), "{out}");
}

#[test]
fn lenient_mode_loads_every_conformance_flow() {
    let Some(files) = conformance() else {
        return;
    };
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let (code, out) = validate(RESOURCE_MAP, &refs, &["--lenient"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("15 file(s) OK"), "{out}");
    assert!(
        out.contains("(ConnectParticipantWithLexBot): action type is not supported by Careline: it will take its error branch"),
        "lenient mode warns: {out}"
    );
}

#[test]
fn unresolved_references_are_listed_without_a_resource_map() {
    let Some(files) = conformance() else {
        return;
    };
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let (code, out) = validate("", &refs, &["--lenient"]);
    assert_eq!(code, 1);
    for expected in [
        "health-unified-clinical-workflow.contact-flow.json: action `3` (InvokeLambdaFunction): `LambdaFunctionARN` refers to Lambda function `<PATIENT_VERIFICATION_LAMBDA_ARN>`, which does not resolve",
        "(UpdateContactTargetQueue): `QueueId` refers to queue `arn:aws:connect:${REGION}:${ACCT_ID}:instance/${INSTANCE_ID}/queue/${Q:sales:Q}` (set in `$.FlowAttributes.sales`)",
        "(MessageParticipantIteratively): `PromptId` refers to prompt",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
}

#[test]
fn every_problem_of_a_broken_flow_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.json");
    std::fs::write(
        &broken,
        r#"{"Version": "2019-10-30", "StartAction": "nowhere", "Actions": [
  {"Identifier": "menu", "Type": "GetParticipantInput",
   "Parameters": {"Text": "Press 1", "StoreInput": "False"},
   "Transitions": {"NextAction": "gone",
     "Conditions": [{"NextAction": "menu", "Condition": {"Operator": "Resembles", "Operands": ["1"]}},
                    {"NextAction": "menu", "Condition": {"Operator": "NumberGreaterThan", "Operands": ["1"]}}],
     "Errors": [{"NextAction": "menu", "ErrorType": "Exploded"}]}},
  {"Identifier": "menu", "Type": "MessageParticipant", "Parameters": {"Text": "hi"},
   "Transitions": {"NextAction": "menu", "Conditions": [{"NextAction": "menu", "Condition": {"Operator": "Equals", "Operands": ["x"]}}]}},
  {"Identifier": "bad:id", "Type": "ShowView", "Parameters": {}, "Transitions": {}},
  {"Identifier": "say", "Type": "MessageParticipant", "Parameters": {}, "Transitions": {}}
]}"#,
    )
    .unwrap();
    let invalid = dir.path().join("invalid.json");
    std::fs::write(
        &invalid,
        "{\n  \"Version\": \"2019-10-30\",\n  \"Actions\": [\n    {,}\n  ]\n}\n",
    )
    .unwrap();
    let (code, out) = validate("", &[&broken, &invalid], &[]);
    assert_eq!(code, 1);
    let b = broken.display().to_string();
    for expected in [
        format!("{b}: StartAction `nowhere` is not the Identifier of any action"),
        format!(
            "{b}: action `menu` (GetParticipantInput): NextAction `gone` is not the Identifier of any action"
        ),
        format!(
            "{b}: action `menu` (GetParticipantInput): condition operator `Resembles` is not one of Equals, NumberGreaterThan"
        ),
        format!(
            "{b}: action `menu` (GetParticipantInput): GetParticipantInput conditions only take Equals, not `NumberGreaterThan`"
        ),
        format!(
            "{b}: action `menu` (GetParticipantInput): error type `Exploded` is not one GetParticipantInput takes"
        ),
        format!(
            "{b}: action `menu` (MessageParticipant): the Identifier is used by more than one action"
        ),
        format!(
            "{b}: action `menu` (MessageParticipant): conditions are not allowed on MessageParticipant"
        ),
        format!("{b}: action `bad:id` (ShowView): the Identifier contains `:`"),
        format!("{b}: action `bad:id` (ShowView): action type is not supported by Careline"),
        format!("{b}: action `say` (MessageParticipant): NextAction is missing"),
        format!(
            "{b}: action `say` (MessageParticipant): one of PromptId, Text or SSML is required"
        ),
        format!("{}: invalid JSON at line 4 column 6", invalid.display()),
    ] {
        assert!(out.contains(&expected), "missing `{expected}` in:\n{out}");
    }
}

#[test]
fn more_than_250_actions_is_an_error_and_unreachable_actions_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mut actions: Vec<serde_json::Value> = (0..251)
        .map(|i| {
            serde_json::json!({"Identifier": format!("a{i}"), "Type": "UpdateContactAttributes",
            "Parameters": {"Attributes": {"k": "v"}}, "Transitions": {"NextAction": "end"}})
        })
        .collect();
    actions.push(serde_json::json!({"Identifier": "end", "Type": "DisconnectParticipant", "Parameters": {}, "Transitions": {}}));
    let big = dir.path().join("big.json");
    std::fs::write(
        &big,
        serde_json::json!({"Version": "2019-10-30", "StartAction": "a0", "Actions": actions})
            .to_string(),
    )
    .unwrap();
    let (code, out) = validate("", &[&big], &[]);
    assert_eq!(code, 1);
    assert!(
        out.contains("252 actions: a flow may hold at most 250"),
        "{out}"
    );
    assert!(
        out.contains("action `a1` (UpdateContactAttributes): unreachable from StartAction"),
        "{out}"
    );

    let (code, out) = validate("", &[&repo().join("flows/medical-triage.json")], &[]);
    assert_eq!(code, 0, "the shipped triage flow validates: {out}");
}

/// `careline serve` with a broken flow in its folder does not start: it exits with an error
/// naming the file, the action and the reason, before taking a single call.
#[test]
fn serve_refuses_to_start_with_a_broken_flow() {
    let flows = tempfile::tempdir().unwrap();
    let broken = flows.path().join("menu.json");
    std::fs::write(
        &broken,
        r#"{"Version": "2019-10-30", "StartAction": "hello", "Actions": [
  {"Identifier": "hello", "Type": "MessageParticipant", "Parameters": {"Text": "Hello"},
   "Transitions": {"NextAction": "nowhere"}}]}"#,
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let cfg = data.path().join("careline.toml");
    std::fs::write(
        &cfg,
        format!(
            "[flows]\ndir = \"{}\"\ndefault = \"menu\"\n",
            flows.path().display()
        ),
    )
    .unwrap();
    let mut child = support::server::careline_command()
        .current_dir(repo())
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(data.path().join("data"))
        .args(["serve", "--sip-listen", "127.0.0.1:0", "--no-tls"])
        .args(["--http-listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve kept running with a broken flow");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    let expected = format!(
        "{}: action `hello` (MessageParticipant): NextAction `nowhere` is not the Identifier of any action",
        broken.display()
    );
    assert!(err.contains(&expected), "missing `{expected}` in:\n{err}");
}
