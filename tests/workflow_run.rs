//! `careline workflow run`: the brief's discharge follow-up run end to end against local
//! HTTP functions standing in for its Lambdas, through `[lambda.NAME] url` as flows use them.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use support::server::{careline_command, repo_root};

/// The functions, answering as a clinic's would: each passes the patient on (the brief's
/// states read `$.patient_id` from the previous result), RiskAssessment answers `risk`.
/// Records (function, input) in order.
struct Functions {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<(String, Value)>>>,
    _rt: tokio::runtime::Runtime,
}

fn functions(risk: &'static str) -> Functions {
    use axum::extract::Path;
    use axum::routing::post;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let calls: Arc<Mutex<Vec<(String, Value)>>> = Default::default();
    let seen = calls.clone();
    let app = axum::Router::new().route(
        "/{function}",
        post(
            move |Path(function): Path<String>, axum::Json(input): axum::Json<Value>| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push((function.clone(), input.clone()));
                    let mut out = json!({"patient_id": input["patient_id"], "medications": [],
                        "primary_care_physician_id": "dr-7", "vitals": {}, "reported_symptoms": []});
                    if function == "RiskAssessment" {
                        out["risk_level"] = json!(risk);
                        out["risk_reason"] = json!("fever after discharge");
                    }
                    axum::Json(out)
                }
            },
        ),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await });
    Functions {
        addr,
        calls,
        _rt: rt,
    }
}

/// Runs the brief's workflow with `[lambda.NAME]` for each of `names` pointing at `f`.
fn run(f: &Functions, names: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("careline.toml");
    let mut toml = String::new();
    for n in names {
        toml.push_str(&format!("[lambda.{n}]\nurl = \"http://{}/{n}\"\n", f.addr));
    }
    std::fs::write(&config, toml).unwrap();
    let out = careline_command()
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["workflow", "run"])
        .arg(repo_root().join("workflows/discharge-follow-up.asl.json"))
        .args(["--skip-waits", "--input", r#"{"patient_id": "p-0001", "medications": ["metformin"], "primary_care_physician_id": "dr-7", "vitals": {}, "reported_symptoms": []}"#])
        .output()
        .expect("run careline workflow run");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const ALL: [&str; 8] = [
    "CallPatient",
    "CheckMedicationRefills",
    "TelemedicineConsultation",
    "RiskAssessment",
    "NotifyPhysician",
    "ScheduleAppointment",
    "NotifyCareteam",
    "CloseCase",
];

#[test]
fn a_high_risk_patient_is_escalated_through_the_configured_functions() {
    let f = functions("HIGH");
    let (ok, text) = run(&f, &ALL);
    assert!(ok, "{text}");
    let called: Vec<String> = f
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.0.clone())
        .collect();
    assert_eq!(
        called,
        [
            "CallPatient",
            "CheckMedicationRefills",
            "TelemedicineConsultation",
            "RiskAssessment",
            "NotifyPhysician"
        ]
    );
    let calls = f.calls.lock().unwrap();
    assert_eq!(
        calls[4].1,
        json!({"patient_id": "p-0001", "urgency": "HIGH", "reason": "fever after discharge"})
    );
    assert!(text.contains("WaitStateEntered WaitForDay3"), "{text}");
    assert!(text.contains("ExecutionSucceeded"), "{text}");
}

#[test]
fn an_unreachable_call_function_is_retried_then_the_brief_s_catch_fails_as_step_functions_would() {
    let f = functions("LOW");
    // No [lambda.CallPatient]: every attempt fails.
    let (ok, text) = run(&f, &ALL[1..]);
    assert!(!ok, "{text}");
    assert_eq!(
        text.matches("TaskScheduled DayOneFollowup").count(),
        4,
        "the first attempt and three retries: {text}"
    );
    assert!(
        text.contains("failed: States.Runtime") && text.contains("`$.patient_id`"),
        "the Catch dropped the patient id (see docs/workflows.md): {text}"
    );
    assert!(
        f.calls.lock().unwrap().is_empty(),
        "NotifyCareteam never got a call"
    );
}
