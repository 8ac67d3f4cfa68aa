//! `careline workflow run`: the brief's discharge follow-up run end to end against local
//! HTTP functions standing in for its Lambdas, through `[lambda.NAME] url` as flows use them.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use support::server::{careline_command, repo_root};

/// One delivery to a local function: (function, idempotency key, body).
type Delivery = (String, String, Value);

/// Local HTTP functions standing in for Lambdas, each at `/{function}`, recording every
/// delivery in order.
struct Functions {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Delivery>>>,
    _rt: tokio::runtime::Runtime,
}

/// Serves functions whose answer to a delivery `answer` gives from the function, the body
/// and whether it is that function's first delivery (None: it never answers).
fn serve(
    answer: impl Fn(&str, &Value, bool) -> Option<Value> + Clone + Send + Sync + 'static,
) -> Functions {
    serve_after(answer, |_| std::time::Duration::ZERO)
}

/// As [`serve`], each answer coming `delay` (from the idempotency key) after the delivery.
fn serve_after(
    answer: impl Fn(&str, &Value, bool) -> Option<Value> + Clone + Send + Sync + 'static,
    delay: fn(&str) -> std::time::Duration,
) -> Functions {
    use axum::extract::Path;
    use axum::http::HeaderMap;
    use axum::routing::post;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seen: Arc<Mutex<Vec<Delivery>>> = Default::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/{function}",
        post(
            move |Path(function): Path<String>,
                  headers: HeaderMap,
                  axum::Json(input): axum::Json<Value>| {
                let log = log.clone();
                let answer = answer.clone();
                async move {
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let first = {
                        let mut log = log.lock().unwrap();
                        log.push((function.clone(), key.clone(), input.clone()));
                        log.iter().filter(|(f, _, _)| *f == function).count() == 1
                    };
                    tokio::time::sleep(delay(&key)).await;
                    match answer(&function, &input, first) {
                        Some(out) => axum::Json(out),
                        None => {
                            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                            axum::Json(Value::Null)
                        }
                    }
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
        seen,
        _rt: rt,
    }
}

/// The functions, answering as a clinic's would: each passes the patient on (the brief's
/// states read `$.patient_id` from the previous result), RiskAssessment answers `risk`.
fn functions(risk: &'static str) -> Functions {
    functions_reporting(risk, json!({}))
}

/// As [`functions`], every answer carrying `vitals` as the patient's reported vitals.
fn functions_reporting(risk: &'static str, vitals: Value) -> Functions {
    serve(move |function, input, _| {
        let mut out = json!({"patient_id": input["patient_id"], "medications": [],
            "primary_care_physician_id": "dr-7", "vitals": vitals, "reported_symptoms": []});
        if function == "RiskAssessment" {
            out["risk_level"] = json!(risk);
            out["risk_reason"] = json!("fever after discharge");
        }
        Some(out)
    })
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
    let called: Vec<String> = f.seen.lock().unwrap().iter().map(|c| c.0.clone()).collect();
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
    let calls = f.seen.lock().unwrap();
    assert_eq!(
        calls[4].2,
        json!({"patient_id": "p-0001", "urgency": "HIGH", "reason": "fever after discharge"})
    );
    assert!(text.contains("WaitStateEntered WaitForDay3"), "{text}");
    assert!(text.contains("ExecutionSucceeded"), "{text}");
}

#[test]
fn without_a_risk_function_the_built_in_rules_assess_and_escalate() {
    let f = functions_reporting("unused", json!({"bp": "190/100"}));
    let names: Vec<&str> = ALL.into_iter().filter(|n| *n != "RiskAssessment").collect();
    let (ok, text) = run(&f, &names);
    assert!(ok, "{text}");
    let calls = f.seen.lock().unwrap();
    let called: Vec<&str> = calls.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        called,
        [
            "CallPatient",
            "CheckMedicationRefills",
            "TelemedicineConsultation",
            "NotifyPhysician"
        ],
        "{text}"
    );
    assert_eq!(
        calls[3].2,
        json!({"patient_id": "p-0001", "urgency": "HIGH", "reason": "systolic blood pressure above 180 mmHg"})
    );
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
        f.seen.lock().unwrap().is_empty(),
        "NotifyCareteam never got a call"
    );
}

// The server runs workflows durably: `POST /api/v1/workflows/{name}/executions`, executions
// in the database, kill -9 at any point.

/// Task, a three-second Wait, task, end.
const TWO_CALLS: &str = r#"{
  "Comment": "Call the patient, wait, tell the care team.",
  "StartAt": "First",
  "States": {
    "First": {"Type": "Task", "Resource": "arn:aws:lambda:ap-northeast-1:123456789012:function:CallPatient", "Next": "Pause"},
    "Pause": {"Type": "Wait", "Seconds": 3, "Next": "Second"},
    "Second": {"Type": "Task", "Resource": "arn:aws:lambda:ap-northeast-1:123456789012:function:NotifyCareTeam", "End": true}
  }
}"#;

/// Functions that answer at once, but for the first delivery of CallPatient, which never
/// answers (the process calling it is killed meanwhile).
fn recording_functions() -> Functions {
    serve(|function, input, first| {
        (function != "CallPatient" || !first)
            .then(|| json!({"patient_id": input["patient_id"], "reached": true}))
    })
}

fn deliveries_of(d: &Functions, function: &str) -> Vec<String> {
    d.seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(f, _, _)| f == function)
        .map(|(_, k, _)| k.clone())
        .collect()
}

/// Polls `what` every 50 ms until it holds, for at most 60 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

struct Api<'a> {
    server: &'a support::server::TestServer,
    token: String,
}

impl Api<'_> {
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> support::http::Response {
        let auth = format!("Bearer {}", self.token);
        support::http::request(
            self.server.http,
            method,
            path,
            &[("Authorization", auth.as_str())],
            body.map(|b| ("application/json", b.as_bytes())),
        )
    }
}

const ITO: &str = "3ca1cab1-9613-506f-9cd5-644c584f3751";

#[test]
fn a_workflow_started_over_the_api_survives_kill_9_with_no_step_lost_or_doubled() {
    survives_kill_9("");
}

#[test]
fn on_postgresql_too() {
    let pg = support::postgres::PgCluster::start();
    survives_kill_9(&format!("[database]\nurl = \"{}\"\n", pg.url("postgres")));
}

/// Runs a workflow over the API with the server killed twice, with `database` (TOML) as the
/// database setting (empty: the embedded SQLite).
fn survives_kill_9(database: &str) {
    let f = recording_functions();
    let flows = tempfile::tempdir().unwrap();
    std::fs::write(flows.path().join("two-calls.asl.json"), TWO_CALLS).unwrap();
    std::fs::write(
        flows.path().join("noop.asl.json"),
        r#"{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}"#,
    )
    .unwrap();
    let mut server = support::server::TestServer::start_with(support::server::Options {
        toml: format!(
            "{database}[workflows]\ndir = \"{}\"\n[lambda.CallPatient]\nurl = \"http://{a}/CallPatient\"\n\
             [lambda.NotifyCareTeam]\nurl = \"http://{a}/NotifyCareTeam\"\n",
            flows.path().display(),
            a = f.addr
        ),
        ..Default::default()
    });
    let bundle = support::fixtures::fhir_bundles()[0].clone();
    let out = server.cli(&["patient", "import", bundle.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nurse = server.user_token("nurse", "clinician");
    let agent = server.user_token("agent", "agent");

    let input = json!({"patient_id": ITO, "phone": "+81 3 1234 5678"}).to_string();
    let api = Api {
        server: &server,
        token: agent,
    };
    let r = api.call(
        "POST",
        "/api/v1/workflows/two-calls/executions",
        Some(&input),
    );
    assert_eq!(r.status, 403, "agents do not start workflows: {}", r.body);
    let api = Api {
        server: &server,
        token: nurse.clone(),
    };
    let r = api.call("GET", "/api/v1/workflows", None);
    assert_eq!(r.json()["workflows"], json!(["noop", "two-calls"]));
    // A start under a name is made once: a client retrying it gets the first execution.
    let named = "/api/v1/workflows/noop/executions?name=discharge-E42";
    let first = api.call("POST", named, Some(r#"{"encounter": "E42", "n": 1}"#));
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.json()["id"], "noop.discharge-E42");
    let again = api.call("POST", named, Some(r#"{"n": 1, "encounter": "E42"}"#));
    assert_eq!(again.status, 200, "the same start again: {}", again.body);
    assert_eq!(again.json()["id"], "noop.discharge-E42");
    assert_eq!(again.json()["started"], first.json()["started"]);
    let other = api.call("POST", named, Some(r#"{"encounter": "E43"}"#));
    assert_eq!(
        other.status, 409,
        "another input under the name: {}",
        other.body
    );
    let bad = api.call(
        "POST",
        "/api/v1/workflows/noop/executions?name=a/b",
        Some("{}"),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    let r = api.call("POST", "/api/v1/workflows/no-such/executions", Some(&input));
    assert_eq!(r.status, 404, "{}", r.body);
    let r = api.call(
        "POST",
        "/api/v1/workflows/two-calls/executions",
        Some("[1, 2]"),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = api.call(
        "POST",
        "/api/v1/workflows/two-calls/executions",
        Some(&json!({"patient_id": "nobody"}).to_string()),
    );
    assert_eq!(r.status, 404, "an unknown patient: {}", r.body);

    let r = api.call(
        "POST",
        "/api/v1/workflows/two-calls/executions",
        Some(&input),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let location = r.header("location").expect("Location").to_string();
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/v1/workflows/executions/{id}"));

    // Killed while CallPatient is being called (it has not answered).
    eventually("CallPatient is called", || {
        deliveries_of(&f, "CallPatient").len() == 1
    });
    server.kill9();
    server.restart();
    // The same invocation again, under the same key; this time it answers.
    eventually("CallPatient is called again", || {
        deliveries_of(&f, "CallPatient").len() == 2
    });
    let keys = deliveries_of(&f, "CallPatient");
    assert_eq!(keys[0], keys[1], "one invocation, one idempotency key");
    assert_eq!(keys[0], format!("{id}/First/1"));

    // Killed in the Wait: the timer is in the database and fires after the restart.
    let api = Api {
        server: &server,
        token: nurse.clone(),
    };
    eventually("the execution waits", || {
        api.call("GET", &location, None).json()["state"] == "Pause"
    });
    let r = api.call("GET", &location, None).json();
    assert_eq!(r["status"], "RUNNING");
    assert!(r["wakes"].is_string(), "the timer is shown: {r}");
    server.kill9();
    server.restart();
    let api = Api {
        server: &server,
        token: nurse,
    };
    eventually("the execution succeeds", || {
        api.call("GET", &location, None).json()["status"] == "SUCCEEDED"
    });
    assert_eq!(
        deliveries_of(&f, "NotifyCareTeam").len(),
        1,
        "the care team told once"
    );
    assert_eq!(deliveries_of(&f, "CallPatient").len(), 2, "no third call");
    let r = api.call("GET", &location, None).json();
    assert_eq!(r["outcome"], json!({"patient_id": ITO, "reached": true}));
    assert_eq!(r["patient_id"], ITO);
    let kinds: Vec<&str> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "ExecutionStarted",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskSucceeded",
            "TaskStateExited",
            "WaitStateEntered",
            "WaitStateExited",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskSucceeded",
            "TaskStateExited",
            "ExecutionSucceeded",
        ],
        "{r}"
    );
    let list = api.call(
        "GET",
        &format!("/api/v1/workflows/executions?patient={ITO}"),
        None,
    );
    assert_eq!(list.status, 200, "{}", list.body);
    let list = list.json();
    assert_eq!(
        list["executions"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
    assert_eq!(list["executions"][0]["status"], "SUCCEEDED");
    assert!(
        list["executions"][0].get("outcome").is_none(),
        "no outcomes in lists"
    );
    let r = api.call("POST", &format!("{location}/stop"), None);
    assert_eq!(
        r.status, 409,
        "a finished execution is not stopped: {}",
        r.body
    );
    // The start and every read are in the audit trail with the patient; the phone number in
    // the input is in no log.
    let auditor = server.user_token("auditor", "auditor");
    let audit = Api {
        server: &server,
        token: auditor,
    };
    let trail = audit.call("GET", &format!("/api/v1/audit?patient={ITO}"), None);
    assert_eq!(trail.status, 200, "{}", trail.body);
    assert!(trail.body.contains("workflow.start"), "{}", trail.body);
    assert!(trail.body.contains("workflow.read"), "{}", trail.body);
    assert!(!server.log().contains("1234 5678"), "PHI in the log");
}

/// A hospital stay that ended yesterday, for the patient of the first fixture bundle.
fn bundle_with_a_discharge() -> Value {
    let path = support::fixtures::fhir_bundles()[0].clone();
    let mut bundle: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let day = |secs: u64| {
        let out = std::process::Command::new("date")
            .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    bundle["entry"].as_array_mut().unwrap().push(json!({
        "fullUrl": "urn:uuid:9a0f7c11-2b1e-4c55-9d38-6a7e1f0c2d44",
        "resource": {
            "resourceType": "Encounter",
            "id": "9a0f7c11-2b1e-4c55-9d38-6a7e1f0c2d44",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": format!("urn:uuid:{ITO}")},
            "period": {"start": day(now - 4 * 86_400), "end": day(now - 86_400)},
            "hospitalization": {"dischargeDisposition": {"text": "home"}},
        },
        "request": {"method": "POST", "url": "Encounter"},
    }));
    bundle
}

#[test]
fn an_imported_discharge_starts_its_follow_up_once_from_the_cli_or_the_api() {
    let f = recording_functions();
    let flows = tempfile::tempdir().unwrap();
    std::fs::write(
        flows.path().join("follow.asl.json"),
        r#"{"StartAt": "Check", "States": {"Check": {"Type": "Task",
            "Resource": "arn:aws:lambda:ap-northeast-1:123456789012:function:CheckIn", "End": true}}}"#,
    )
    .unwrap();
    let server = support::server::TestServer::start_with(support::server::Options {
        toml: format!(
            "[workflows]\ndir = \"{}\"\non_discharge = \"follow\"\n\
             [lambda.CheckIn]\nurl = \"http://{}/CheckIn\"\n",
            flows.path().display(),
            f.addr
        ),
        ..Default::default()
    });
    let file = server.data_dir.path().join("discharge.json");
    let bundle = bundle_with_a_discharge();
    std::fs::write(&file, bundle.to_string()).unwrap();

    // The CLI imports beside the running server: it stores the execution, the server calls.
    let out = server.cli(&["patient", "import", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 follow execution started"), "{text}");
    eventually("the follow-up's task is called", || {
        deliveries_of(&f, "CheckIn").len() == 1
    });
    assert_eq!(
        deliveries_of(&f, "CheckIn")[0],
        "follow.enc-9a0f7c11-2b1e-4c55-9d38-6a7e1f0c2d44/Check/1"
    );

    // The same discharge posted again over the API starts nothing new.
    let svc = server.user_token("ehr", "service");
    let api = Api {
        server: &server,
        token: svc,
    };
    let r = api.call("POST", "/api/v1/fhir", Some(&bundle.to_string()));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = r.json();
    assert_eq!(r["follow_ups"]["started"], json!([]), "{r}");
    assert_eq!(r["follow_ups"]["started_before"], 1, "{r}");
    let nurse = server.user_token("nurse", "clinician");
    let api = Api {
        server: &server,
        token: nurse,
    };
    let id = "follow.enc-9a0f7c11-2b1e-4c55-9d38-6a7e1f0c2d44";
    eventually("the follow-up succeeds", || {
        api.call("GET", &format!("/api/v1/workflows/executions/{id}"), None)
            .json()["status"]
            == "SUCCEEDED"
    });
    let list = api.call(
        "GET",
        &format!("/api/v1/workflows/executions?patient={ITO}"),
        None,
    );
    assert_eq!(list.json()["executions"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        deliveries_of(&f, "CheckIn").len(),
        1,
        "the patient is called once"
    );
}

#[test]
fn a_high_risk_assessment_puts_the_patient_on_the_physician_s_work_list_once() {
    // No functions at all: the built-in RiskAssessment and NotifyPhysician answer.
    let flows = tempfile::tempdir().unwrap();
    std::fs::write(
        flows.path().join("assess.asl.json"),
        r#"{"StartAt": "Assess", "States": {
            "Assess": {"Type": "Task", "Resource": "arn:aws:lambda:ap-northeast-1:123456789012:function:RiskAssessment", "Next": "Check"},
            "Check": {"Type": "Choice", "Choices": [{"Variable": "$.risk_level", "StringEquals": "HIGH", "Next": "Notify"}], "Default": "Done"},
            "Notify": {"Type": "Task", "Resource": "arn:aws:lambda:ap-northeast-1:123456789012:function:NotifyPhysician",
              "Parameters": {"patient_id.$": "$.patient_id", "urgency.$": "$.risk_level", "reason.$": "$.risk_reason"}, "End": true},
            "Done": {"Type": "Succeed"}}}"#,
    )
    .unwrap();
    let hook = recording_functions();
    // The on-call physician is e-mailed too, through a relay that requires STARTTLS and
    // whose certificate only the configured CA file vouches for.
    let relay = support::smtp::SmtpSink::start_tls();
    let server = support::server::TestServer::start_with(support::server::Options {
        toml: format!(
            "[workflows]\ndir = \"{}\"\ncare_task_webhook = \"http://{}/hook\"\n\
             [workflows.care_task_mail]\nphysician = [\"On call <oncall@clinic.example>\"]\n\
             link_base = \"https://careline.clinic.example/\"\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"{}\"\n\
             from = \"Careline <careline@clinic.example>\"\n",
            flows.path().display(),
            hook.addr,
            relay.port,
            relay.ca.as_ref().unwrap().display(),
        ),
        ..Default::default()
    });
    let bundle = support::fixtures::fhir_bundles()[0].clone();
    let out = server.cli(&["patient", "import", bundle.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nurse = Api {
        server: &server,
        token: server.user_token("nurse", "clinician"),
    };
    let input = json!({"patient_id": ITO, "vitals": {"bp": "150/90", "spo2": 90},
        "symptoms": ["胸痛があります"]})
    .to_string();
    let r = nurse.call("POST", "/api/v1/workflows/assess/executions", Some(&input));
    assert_eq!(r.status, 201, "{}", r.body);
    let location = r.header("location").unwrap().to_string();
    eventually("the assessment ends", || {
        nurse.call("GET", &location, None).json()["status"] == "SUCCEEDED"
    });
    let list = nurse.call("GET", "/api/v1/care-tasks", None);
    assert_eq!(list.status, 200, "{}", list.body);
    let items = list.json()["care_tasks"].clone();
    assert_eq!(items.as_array().map(Vec::len), Some(1), "{items}");
    let item = &items[0];
    assert_eq!(item["kind"], "physician");
    assert_eq!(item["urgency"], "HIGH");
    assert_eq!(item["patient_id"], ITO);
    assert_eq!(
        item["detail"]["reason"],
        "oxygen saturation 91 % or lower; chest pain reported"
    );
    let id = item["id"].as_str().unwrap();
    // The webhook heard of it once, without the patient's data.
    eventually("the webhook is told", || {
        deliveries_of(&hook, "hook").len() == 1
    });
    let notice = hook.seen.lock().unwrap()[0].2.clone();
    assert_eq!(notice["care_task"], id);
    assert_eq!(notice["urgency"], "HIGH");
    assert!(!notice.to_string().contains(ITO), "no patient id: {notice}");
    assert!(
        !notice.to_string().contains("chest"),
        "no clinical detail: {notice}"
    );
    // And the physician's mail: once, saying how urgent and where, naming no patient.
    let mail = relay.wait_for(1, std::time::Duration::from_secs(20));
    assert_eq!(mail.len(), 1, "one message: {mail:?}");
    let m = &mail[0];
    assert!(m.contains("X-Rcpt-To: oncall@clinic.example"), "{m}");
    assert!(
        m.contains("Subject: [Careline] HIGH: a care task for the physician"),
        "{m}"
    );
    assert!(
        m.contains(&format!("Message-ID: <care-task.{id}.mail@clinic.example>")),
        "{m}"
    );
    assert!(
        m.contains("https://careline.clinic.example/api/v1/care-tasks?status=OPEN"),
        "{m}"
    );
    assert!(m.contains(id), "{m}");
    for phi in [ITO, "chest", "oxygen", "伊藤"] {
        assert!(!m.contains(phi), "no `{phi}` in the mail: {m}");
    }
    let sent = server.wait_metric(
        "careline_notifications_total{channel=\"mail\",outcome=\"sent\"}",
        1.0,
        std::time::Duration::from_secs(10),
    );
    assert_eq!(sent, 1.0);
    let done = format!("/api/v1/care-tasks/{id}/done");
    assert_eq!(nurse.call("POST", &done, None).status, 204);
    assert_eq!(nurse.call("POST", &done, None).status, 409, "once");
    let open = nurse.call("GET", "/api/v1/care-tasks", None).json();
    assert_eq!(open["care_tasks"], json!([]), "nothing left open");
    let all = nurse
        .call("GET", "/api/v1/care-tasks?status=all", None)
        .json();
    assert_eq!(all["care_tasks"][0]["done_by"], "nurse");
    // Agents do not see the physician's list.
    let agent = Api {
        server: &server,
        token: server.user_token("agent", "agent"),
    };
    assert_eq!(agent.call("GET", "/api/v1/care-tasks", None).status, 403);
}

/// The brief's UC2: CheckMedicationRefills puts a refill request on the work list; a
/// clinician approves it (a supervisor may not); the refill is ordered in the patient's
/// record and sent to the pharmacy as a FHIR transaction, once; a second decision is refused.
#[test]
fn an_approved_refill_is_ordered_in_the_record_and_sent_to_the_pharmacy_once() {
    let flows = tempfile::tempdir().unwrap();
    std::fs::write(
        flows.path().join("refills.asl.json"),
        r#"{"StartAt": "Check", "States": {
            "Check": {"Type": "Task", "Resource": "arn:aws:lambda:ap-northeast-1:123456789012:function:CheckMedicationRefills", "End": true}}}"#,
    )
    .unwrap();
    let pharmacy =
        serve(|_, _, _| Some(json!({"resourceType": "Bundle", "type": "transaction-response"})));
    let server = support::server::TestServer::start_with(support::server::Options {
        toml: format!(
            "[workflows]\ndir = \"{}\"\n[workflows.pharmacy]\nurl = \"http://{}/fhir\"\n",
            flows.path().display(),
            pharmacy.addr
        ),
        ..Default::default()
    });
    let bundle = support::fixtures::fhir_bundles()[0].clone();
    server.cli_ok(&["patient", "import", bundle.to_str().unwrap()]);
    let nurse = Api {
        server: &server,
        token: server.user_token("nurse", "clinician"),
    };
    let soon = jiff::Zoned::now()
        .date()
        .checked_add(jiff::Span::new().days(2))
        .unwrap()
        .to_string();
    let input = json!({"patient_id": ITO, "medications": [
        {"name": "Metformin", "dose": "500mg", "refill_date": soon}]})
    .to_string();
    let r = nurse.call("POST", "/api/v1/workflows/refills/executions", Some(&input));
    assert_eq!(r.status, 201, "{}", r.body);
    let location = r.header("location").unwrap().to_string();
    let mut output = Value::Null;
    eventually("the check ends", || {
        let e = nurse.call("GET", &location, None).json();
        output = e["outcome"].clone();
        e["status"] == "SUCCEEDED"
    });
    let id = output["refill_request"]
        .as_str()
        .unwrap_or_else(|| panic!("a refill request: {output}"))
        .to_string();
    let decide = format!("/api/v1/care-tasks/{id}/decision");
    let supervisor = Api {
        server: &server,
        token: server.user_token("boss", "supervisor"),
    };
    let r = supervisor.call("POST", &decide, Some(r#"{"decision": "approved"}"#));
    assert_eq!(r.status, 403, "a prescriber's decision: {}", r.body);
    let r = nurse.call("POST", &decide, Some(r#"{"decision": "maybe"}"#));
    assert_eq!(r.status, 422, "{}", r.body);

    let r = nurse.call("POST", &decide, Some(r#"{"decision": "approved"}"#));
    assert_eq!(r.status, 200, "{}", r.body);
    let decided = r.json();
    assert_eq!(decided["pharmacy"], "queued", "{decided}");
    let order = &decided["orders"][0];
    assert_eq!(order["medicationCodeableConcept"]["text"], "Metformin");
    assert_eq!(order["requester"]["display"], "nurse");
    let r = nurse.call("POST", &decide, Some(r#"{"decision": "declined"}"#));
    assert_eq!(r.status, 409, "decided once: {}", r.body);

    eventually("the pharmacy is sent the order", || {
        deliveries_of(&pharmacy, "fhir").len() == 1
    });
    let (_, key, sent) = pharmacy.seen.lock().unwrap()[0].clone();
    assert_eq!(key, format!("care-task:{id}:pharmacy"));
    assert_eq!(sent["type"], "transaction");
    let entry = &sent["entry"][0];
    assert_eq!(
        entry["resource"]["subject"]["reference"],
        format!("Patient/{ITO}")
    );
    assert_eq!(entry["resource"]["intent"], "order");
    assert_eq!(
        entry["request"]["ifNoneExist"],
        format!("identifier=urn:careline:refill|{id}-1")
    );
    // The order is in the patient's record, and the item closed as approved.
    let glass = nurse.call(
        "POST",
        &format!("/api/v1/patients/{ITO}/break-glass"),
        Some(r#"{"reason": "checking the refill order"}"#),
    );
    assert_eq!(glass.status, 200, "{}", glass.body);
    let export = nurse.call("GET", &format!("/api/v1/patients/{ITO}/bundle"), None);
    assert_eq!(export.status, 200, "{}", export.body);
    assert!(
        export.body.contains(&format!("\"refill-{id}-1\"")),
        "{}",
        export.body
    );
    let all = nurse
        .call("GET", "/api/v1/care-tasks?status=all", None)
        .json();
    assert_eq!(all["care_tasks"][0]["outcome"], "approved", "{all}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(deliveries_of(&pharmacy, "fhir").len(), 1, "sent once");
}

/// A server running `definitions` (name, text) from a folder of their own, with the Lambda
/// function `function` served by `f`; the folder lives as long as the returned guard.
fn workflow_server(
    definitions: &[(&str, &str)],
    f: &Functions,
    function: &str,
) -> (support::server::TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in definitions {
        std::fs::write(dir.path().join(format!("{name}.asl.json")), text).unwrap();
    }
    let server = support::server::TestServer::start_with(support::server::Options {
        toml: format!(
            "[workflows]\ndir = \"{}\"\n[lambda.{function}]\nurl = \"http://{}/{function}\"\n",
            dir.path().display(),
            f.addr
        ),
        ..Default::default()
    });
    (server, dir)
}

/// A Map calls each patient on a list: three at a time, each once under its own key. The
/// first call to arrive never answers (the server is killed meanwhile); after the restart that one
/// call is made again under the same key, the others are not, and the results come in the
/// list's order.
#[test]
fn a_map_calls_each_patient_once_through_kill_9_and_keeps_the_list_s_order() {
    const EACH: &str = r#"{"StartAt": "EachPatient", "States": {
      "EachPatient": {"Type": "Map", "ItemsPath": "$.patients", "MaxConcurrency": 3,
        "ItemSelector": {"patient_id.$": "$$.Map.Item.Value"},
        "ItemProcessor": {"StartAt": "Call", "States": {
          "Call": {"Type": "Task", "Resource": "arn:aws:lambda:ap-northeast-1:123456789012:function:CallPatient", "End": true}}},
        "End": true}}}"#;
    let f = recording_functions();
    let (mut server, _flows) = workflow_server(&[("each", EACH)], &f, "CallPatient");
    let nurse = server.user_token("nurse", "clinician");
    let patients: Vec<String> = (1..=7).map(|i| format!("p-{i}")).collect();
    let api = Api {
        server: &server,
        token: nurse.clone(),
    };
    let r = api.call(
        "POST",
        "/api/v1/workflows/each/executions",
        Some(&json!({ "patients": patients }).to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let location = r.header("location").expect("Location").to_string();
    let id = r.json()["id"].as_str().unwrap().to_string();
    // Every patient is called, the first's call hanging (holding one of the three places
    // while the others go through the other two).
    eventually("the seven patients are called", || {
        deliveries_of(&f, "CallPatient").len() == 7
    });
    // Killed once the six answers are stored (an answer not yet stored would be asked for
    // again after the restart, rightly, under its key), the first call still hanging.
    eventually("six calls are answered", || {
        let r = api.call("GET", &location, None).json();
        r["history"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|h| h["kind"] == "MapIterationSucceeded")
            .count()
            == 6
    });
    server.kill9();
    server.restart();
    let api = Api {
        server: &server,
        token: nurse,
    };
    eventually("the execution succeeds", || {
        api.call("GET", &location, None).json()["status"] == "SUCCEEDED"
    });
    let keys = deliveries_of(&f, "CallPatient");
    assert_eq!(keys.len(), 7 + 1, "one call again, no other: {keys:?}");
    let unique: std::collections::BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(
        unique,
        (0..7)
            .map(|i| format!("{id}/EachPatient#1[{i}]/Call/1"))
            .collect(),
        "each patient under a key of their own: {keys:?}"
    );
    assert_eq!(
        keys[0], keys[7],
        "the hung call (whichever came first) is made again under its key"
    );
    let outcome = api.call("GET", &location, None).json()["outcome"].clone();
    assert_eq!(
        outcome,
        Value::Array(
            patients
                .iter()
                .map(|p| json!({"patient_id": p, "reached": true}))
                .collect()
        ),
        "the results in the list's order"
    );
}

/// Crash test: a dozen executions (a Task, a Wait, a Task; or a Parallel of a Task and a Wait
/// then a Task, then a Map over three items two at a time) while the server is killed with
/// `kill -9` at random moments, four times. After the last restart every execution
/// succeeds with the right output, each function was asked for exactly the invocations the
/// definitions imply (one key each, no attempt beyond the first), and a key came again only
/// across a kill (what was in flight then). `CARELINE_CRASH_SEED` replays a run's moments.
#[test]
fn executions_killed_at_random_moments_finish_with_no_step_lost_or_added() {
    const ARN: &str = "arn:aws:lambda:ap-northeast-1:123456789012:function:";
    let chain = format!(
        r#"{{"StartAt": "A", "States": {{
          "A": {{"Type": "Task", "Resource": "{ARN}Step", "ResultPath": "$.a", "Next": "Pause"}},
          "Pause": {{"Type": "Wait", "Seconds": 1, "Next": "B"}},
          "B": {{"Type": "Task", "Resource": "{ARN}Step", "ResultPath": "$.b", "End": true}}}}}}"#
    );
    let fan = format!(
        r#"{{"StartAt": "Both", "States": {{
          "Both": {{"Type": "Parallel", "ResultPath": "$.both", "Next": "Each", "Branches": [
            {{"StartAt": "N1", "States": {{"N1": {{"Type": "Task", "Resource": "{ARN}Step", "End": true}}}}}},
            {{"StartAt": "W", "States": {{"W": {{"Type": "Wait", "Seconds": 1, "Next": "N2"}},
              "N2": {{"Type": "Task", "Resource": "{ARN}Step", "End": true}}}}}}]}},
          "Each": {{"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2, "ResultPath": "$.each",
            "ItemSelector": {{"item.$": "$$.Map.Item.Value"}},
            "ItemProcessor": {{"StartAt": "M", "States": {{
              "M": {{"Type": "Task", "Resource": "{ARN}Step", "End": true}}}}}},
            "End": true}}}}}}"#
    );
    // Every answer echoes what it was given, after 0-250 ms (from the key, so the same
    // invocation takes as long every time): answers land before, during and after kills.
    let f = serve_after(
        |_, input, _| Some(json!({"echo": input})),
        |key| {
            let h = key
                .bytes()
                .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            std::time::Duration::from_millis(h % 250)
        },
    );
    let (mut server, _flows) = workflow_server(&[("chain", &chain), ("fan", &fan)], &f, "Step");
    let nurse = server.user_token("nurse", "clinician");
    let mut ids = Vec::new();
    {
        let api = Api {
            server: &server,
            token: nurse.clone(),
        };
        for n in 0..6 {
            for workflow in ["chain", "fan"] {
                let input = json!({"n": n, "items": ["x", "y", "z"]}).to_string();
                let r = api.call(
                    "POST",
                    &format!("/api/v1/workflows/{workflow}/executions"),
                    Some(&input),
                );
                assert_eq!(r.status, 201, "{}", r.body);
                ids.push((workflow, n, r.json()["id"].as_str().unwrap().to_string()));
            }
        }
    }
    let seed: u64 = std::env::var("CARELINE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("CARELINE_CRASH_SEED={seed}");
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let kills = 4;
    // Deliveries seen before each kill: a key may come again only after a kill.
    let mut before_kill = Vec::new();
    for _ in 0..kills {
        std::thread::sleep(std::time::Duration::from_millis(100 + next() % 900));
        server.kill9();
        before_kill.push(f.seen.lock().unwrap().len());
        server.restart();
    }
    let api = Api {
        server: &server,
        token: nurse,
    };
    for (workflow, n, id) in &ids {
        let location = format!("/api/v1/workflows/executions/{id}");
        eventually(&format!("{id} ends (seed {seed})"), || {
            api.call("GET", &location, None).json()["status"] != "RUNNING"
        });
        let r = api.call("GET", &location, None).json();
        assert_eq!(r["status"], "SUCCEEDED", "seed {seed}: {r}");
        let input = json!({"n": n, "items": ["x", "y", "z"]});
        let expected = if *workflow == "chain" {
            let mut out = input.clone();
            out["a"] = json!({"echo": input});
            let mut b_input = input.clone();
            b_input["a"] = json!({"echo": input});
            out["b"] = json!({"echo": b_input});
            out
        } else {
            let mut out = input.clone();
            out["both"] = json!([{"echo": input}, {"echo": input}]);
            out["each"] = json!([
                {"echo": {"item": "x"}}, {"echo": {"item": "y"}}, {"echo": {"item": "z"}}
            ]);
            out
        };
        assert_eq!(r["outcome"], expected, "seed {seed}: {id}");
    }
    let seen = f.seen.lock().unwrap().clone();
    let mut by_key: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    for (i, (_, key, _)) in seen.iter().enumerate() {
        by_key.entry(key.as_str()).or_default().push(i);
    }
    println!(
        "{} deliveries of {} invocations across {kills} kills",
        seen.len(),
        by_key.len()
    );
    let mut expected_keys = std::collections::BTreeSet::new();
    for (workflow, _, id) in &ids {
        let states: &[&str] = if *workflow == "chain" {
            &["A", "B"]
        } else {
            &[
                "Both#1[0]/N1",
                "Both#1[1]/N2",
                "Each#1[0]/M",
                "Each#1[1]/M",
                "Each#1[2]/M",
            ]
        };
        for state in states {
            expected_keys.insert(format!("{id}/{state}/1"));
        }
    }
    assert_eq!(
        by_key
            .keys()
            .map(|k| k.to_string())
            .collect::<std::collections::BTreeSet<_>>(),
        expected_keys,
        "seed {seed}: exactly the invocations the definitions imply"
    );
    for (key, at) in &by_key {
        for pair in at.windows(2) {
            assert!(
                before_kill.iter().any(|&k| pair[0] < k && k <= pair[1]),
                "seed {seed}: {key} asked for twice with no kill between (deliveries {pair:?}, \
                 kills after {before_kill:?})"
            );
        }
    }
}
