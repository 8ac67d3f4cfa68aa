//! Access control and the audit trail through the real server: every `/api/v1` endpoint for
//! every role, minimum necessary (agents see a patient only during a call), break-glass,
//! lockout, browser sessions, audit queries and `careline audit verify` on a tampered row,
//! HTTPS, and no PHI in the logs.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::http::{Response, request};
use support::server::{Options, TestServer};

struct Api {
    server: TestServer,
}

const ROLES: [&str; 6] = [
    "admin",
    "supervisor",
    "clinician",
    "agent",
    "auditor",
    "service",
];

fn bundles() -> Vec<PathBuf> {
    support::fixtures::fhir_bundles()
}

fn bundle_patient(path: &PathBuf) -> (String, String, String, String) {
    let b: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let p = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Patient")
        .unwrap()["resource"]
        .clone();
    (
        p["id"].as_str().unwrap().to_string(),
        p["name"][0]["given"][0].as_str().unwrap().to_string(),
        p["name"][0]["family"].as_str().unwrap().to_string(),
        p["telecom"][0]["value"].as_str().unwrap().to_string(),
    )
}

impl Api {
    fn start(extra_toml: &str) -> Api {
        Api {
            server: TestServer::start_with(Options {
                toml: extra_toml.to_string(),
                ..Options::default()
            }),
        }
    }

    fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = support::server::careline_command()
            .arg("--config")
            .arg(self.server.data_dir.path().join("careline.toml"))
            .arg("--data-dir")
            .arg(self.server.data_path())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    /// A work-list item about `patient`, made by the built-in NotifyPhysician task of a
    /// workflow run from the CLI into the server's database; returns its id.
    fn care_task(&self, patient: &str) -> String {
        let def = self.server.data_dir.path().join("notify.asl.json");
        std::fs::write(
            &def,
            r#"{"StartAt": "N", "States": {"N": {"Type": "Task",
                "Resource": "arn:aws:lambda:ap-northeast-1:123456789012:function:NotifyPhysician", "End": true}}}"#,
        )
        .unwrap();
        let input =
            json!({"patient_id": patient, "urgency": "HIGH", "reason": "matrix"}).to_string();
        let out = self.cli(
            &["workflow", "run", def.to_str().unwrap(), "--input", &input],
            None,
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: Value = text
            .lines()
            .find_map(|l| l.strip_prefix("succeeded: "))
            .map(|j| serde_json::from_str(j).unwrap())
            .unwrap_or_else(|| panic!("no answer in: {text}"));
        answer["care_task"].as_str().unwrap().to_string()
    }

    /// `careline user add`; returns the printed token.
    fn user(&self, name: &str, role: &str) -> String {
        self.user_with(name, role, None)
    }

    /// `careline user add`, with a password for browser sign-in when given; returns the
    /// printed token.
    fn user_with(&self, name: &str, role: &str, password: Option<&str>) -> String {
        let out = match password {
            Some(pw) => self.cli(
                &["user", "add", name, "--role", role, "--password-stdin"],
                Some(&format!("{pw}\n")),
            ),
            None => self.cli(&["user", "add", name, "--role", role], None),
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find(|l| l.starts_with("clt_"))
            .unwrap_or_else(|| panic!("no token in: {text}"))
            .to_string()
    }

    fn import_all(&self) {
        let files = bundles();
        let mut args = vec!["patient".to_string(), "import".to_string()];
        args.extend(files.iter().map(|f| f.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.cli(&args, None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let raw = body.map(|b| b.to_string());
        request(
            self.server.http,
            method,
            path,
            &headers,
            raw.as_deref().map(|b| ("application/json", b.as_bytes())),
        )
    }

    fn audit(&self, token: &str, query: &str) -> Vec<Value> {
        let r = self.call("GET", &format!("/api/v1/audit?{query}"), Some(token), None);
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// POSTs a browser's SDP offer to `path` (the WHIP endpoints).
fn sdp_post(api: &Api, path: &str, token: Option<&str>, offer: &str) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    request(
        api.server.http,
        "POST",
        path,
        &headers,
        Some(("application/sdp", offer.as_bytes())),
    )
}

/// The expected answer of one endpoint for each role, in ROLES order: `true` allowed.
struct Row {
    method: &'static str,
    path: &'static str,
    off_call: [bool; 6],
    on_call: [bool; 6],
}

const A: bool = true;
const D: bool = false;

/// Written from the product's rules, not read from its table: an agent or clinician sees a
/// patient during a call with them; supervisors while the patient is on a call; auditors only
/// the audit trail; admins users and imports; services lookups, imports, call associations
/// and contact records; the person handling a call re-points its own patient link.
const MATRIX: &[Row] = &[
    //                                                            adm sup cli age aud svc
    Row {
        method: "GET",
        path: "/api/v1/me",
        off_call: [A, A, A, A, A, A],
        on_call: [A, A, A, A, A, A],
    },
    Row {
        method: "GET",
        path: "/api/v1/patients/lookup",
        off_call: [D, A, A, A, D, A],
        on_call: [D, A, A, A, D, A],
    },
    Row {
        method: "GET",
        path: "/api/v1/patients/{id}/summary",
        off_call: [D, D, D, D, D, D],
        on_call: [D, A, A, A, D, D],
    },
    Row {
        method: "GET",
        path: "/api/v1/patients/{id}/contacts",
        off_call: [D, D, D, D, D, D],
        on_call: [D, A, A, A, D, D],
    },
    Row {
        method: "POST",
        path: "/api/v1/patients/{id}/contacts",
        off_call: [D, D, D, D, D, A],
        on_call: [D, A, A, A, D, A],
    },
    Row {
        method: "GET",
        path: "/api/v1/patients/{id}/bundle",
        off_call: [D, D, D, D, D, D],
        on_call: [D, D, A, D, D, D],
    },
    Row {
        method: "POST",
        path: "/api/v1/patients/{id}/break-glass",
        off_call: [D, D, A, D, D, D],
        on_call: [D, D, A, D, D, D],
    },
    Row {
        method: "POST",
        path: "/api/v1/fhir",
        off_call: [A, D, D, D, D, A],
        on_call: [A, D, D, D, D, A],
    },
    // A call's patient link: the routing service for any live call; a person only for a
    // live call they handle ("on call" here: the call under test is theirs).
    Row {
        method: "PUT",
        path: "/api/v1/calls/{call_id}/contact",
        off_call: [D, D, D, D, D, A],
        on_call: [D, A, A, A, D, A],
    },
    Row {
        method: "GET",
        path: "/api/v1/calls/{call_id}/contact",
        off_call: [D, D, D, D, D, A],
        on_call: [D, A, A, A, D, A],
    },
    Row {
        method: "DELETE",
        path: "/api/v1/calls/{call_id}/contact",
        off_call: [D, D, D, D, D, A],
        on_call: [D, A, A, A, D, A],
    },
    Row {
        method: "GET",
        path: "/api/v1/audit",
        off_call: [D, D, D, D, A, D],
        on_call: [D, D, D, D, A, D],
    },
    Row {
        method: "POST",
        path: "/api/v1/users",
        off_call: [A, D, D, D, D, D],
        on_call: [A, D, D, D, D, D],
    },
    Row {
        method: "GET",
        path: "/api/v1/users",
        off_call: [A, D, D, D, D, D],
        on_call: [A, D, D, D, D, D],
    },
    Row {
        method: "POST",
        path: "/api/v1/users/{name}/disable",
        off_call: [A, D, D, D, D, D],
        on_call: [A, D, D, D, D, D],
    },
    Row {
        method: "POST",
        path: "/api/v1/users/{name}/enable",
        off_call: [A, D, D, D, D, D],
        on_call: [A, D, D, D, D, D],
    },
    // Everyone manages their own tokens (the matrix asks about the role's own user).
    Row {
        method: "GET",
        path: "/api/v1/users/{name}/tokens",
        off_call: [A, A, A, A, A, A],
        on_call: [A, A, A, A, A, A],
    },
    Row {
        method: "POST",
        path: "/api/v1/users/{name}/tokens",
        off_call: [A, A, A, A, A, A],
        on_call: [A, A, A, A, A, A],
    },
    Row {
        method: "DELETE",
        path: "/api/v1/tokens/{id}",
        off_call: [A, A, A, A, A, A],
        on_call: [A, A, A, A, A, A],
    },
    // Recordings: supervisors hear any; a clinician only a patient they are on a call with
    // (the list: asked for that patient); admins delete; supervisors and services control a
    // live call's recording; agents (minimum necessary) and auditors never listen.
    Row {
        method: "GET",
        path: "/api/v1/recordings",
        off_call: [D, A, D, D, D, D],
        on_call: [D, A, A, D, D, D],
    },
    Row {
        method: "GET",
        path: "/api/v1/recordings/{id}",
        off_call: [D, A, D, D, D, D],
        on_call: [D, A, A, D, D, D],
    },
    Row {
        method: "GET",
        path: "/api/v1/recordings/{id}/audio",
        off_call: [D, A, D, D, D, D],
        on_call: [D, A, A, D, D, D],
    },
    Row {
        method: "DELETE",
        path: "/api/v1/recordings/{id}",
        off_call: [A, D, D, D, D, D],
        on_call: [A, D, D, D, D, D],
    },
    Row {
        method: "POST",
        path: "/api/v1/calls/{call_id}/recording/{action}",
        off_call: [D, A, D, D, D, A],
        on_call: [D, A, D, D, D, A],
    },
    // Care coordination: clinicians, supervisors and the discharge integration (service)
    // start and follow workflows, whether or not anyone is on a call.
    Row {
        method: "GET",
        path: "/api/v1/workflows",
        off_call: [D, A, A, D, D, A],
        on_call: [D, A, A, D, D, A],
    },
    Row {
        method: "POST",
        path: "/api/v1/workflows/{name}/executions",
        off_call: [D, A, A, D, D, A],
        on_call: [D, A, A, D, D, A],
    },
    Row {
        method: "GET",
        path: "/api/v1/workflows/executions",
        off_call: [D, A, A, D, D, A],
        on_call: [D, A, A, D, D, A],
    },
    Row {
        method: "GET",
        path: "/api/v1/workflows/executions/{id}",
        off_call: [D, A, A, D, D, A],
        on_call: [D, A, A, D, D, A],
    },
    Row {
        method: "POST",
        path: "/api/v1/workflows/executions/{id}/stop",
        off_call: [D, A, A, D, D, A],
        on_call: [D, A, A, D, D, A],
    },
    // The care team's work list: for the people who act on it.
    Row {
        method: "GET",
        path: "/api/v1/care-tasks",
        off_call: [D, A, A, D, D, D],
        on_call: [D, A, A, D, D, D],
    },
    // Placing a browser call: staff who take calls and services; not admins or auditors.
    Row {
        method: "POST",
        path: "/api/v1/calls/whip",
        off_call: [D, A, A, A, D, A],
        on_call: [D, A, A, A, D, A],
    },
    // Calling a phone through a trunk: the same people.
    Row {
        method: "POST",
        path: "/api/v1/calls",
        off_call: [D, A, A, A, D, A],
        on_call: [D, A, A, A, D, A],
    },
    Row {
        method: "GET",
        path: "/api/v1/calls/{call_id}",
        off_call: [D, A, A, A, D, A],
        on_call: [D, A, A, A, D, A],
    },
    Row {
        method: "DELETE",
        path: "/api/v1/calls/{call_id}",
        off_call: [D, A, A, A, D, A],
        on_call: [D, A, A, A, D, A],
    },
    // Answering a queued caller from the browser: the people who talk to callers.
    Row {
        method: "GET",
        path: "/api/v1/queues",
        off_call: [D, A, A, A, D, D],
        on_call: [D, A, A, A, D, D],
    },
    Row {
        method: "POST",
        path: "/api/v1/queues/{name}/answer",
        off_call: [D, A, A, A, D, D],
        on_call: [D, A, A, A, D, D],
    },
    // Routing: the console's channel, and accepting or declining what rings.
    Row {
        method: "GET",
        path: "/api/v1/ws",
        off_call: [D, A, A, A, D, D],
        on_call: [D, A, A, A, D, D],
    },
    Row {
        method: "POST",
        path: "/api/v1/calls/{call_id}/accept",
        off_call: [D, A, A, A, D, D],
        on_call: [D, A, A, A, D, D],
    },
    Row {
        method: "POST",
        path: "/api/v1/calls/{call_id}/decline",
        off_call: [D, A, A, A, D, D],
        on_call: [D, A, A, A, D, D],
    },
    // Listening in on a nurse's call (and barging in) is the supervisor's alone.
    Row {
        method: "POST",
        path: "/api/v1/calls/{call_id}/monitor",
        off_call: [D, A, D, D, D, D],
        on_call: [D, A, D, D, D, D],
    },
    // Reports on the calls: supervisors, admins and auditors (no patient data in them).
    Row {
        method: "GET",
        path: "/api/v1/call-records",
        off_call: [A, A, D, D, A, D],
        on_call: [A, A, D, D, A, D],
    },
    // The callbacks owed to callers: supervisors and admins (no number, no patient shown).
    Row {
        method: "GET",
        path: "/api/v1/callbacks",
        off_call: [A, A, D, D, D, D],
        on_call: [A, A, D, D, D, D],
    },
    Row {
        method: "DELETE",
        path: "/api/v1/callbacks/{id}",
        off_call: [A, A, D, D, D, D],
        on_call: [A, A, D, D, D, D],
    },
    // Telehealth rooms: clinicians book and run visits, services book them; entering
    // without an invitation link is a clinician's.
    Row {
        method: "POST",
        path: "/api/v1/rooms",
        off_call: [D, D, A, D, D, A],
        on_call: [D, D, A, D, D, A],
    },
    Row {
        method: "GET",
        path: "/api/v1/rooms",
        off_call: [D, D, A, D, D, A],
        on_call: [D, D, A, D, D, A],
    },
    Row {
        method: "GET",
        path: "/api/v1/rooms/{id}",
        off_call: [D, D, A, D, D, A],
        on_call: [D, D, A, D, D, A],
    },
    Row {
        method: "POST",
        path: "/api/v1/rooms/{id}/invitees",
        off_call: [D, D, A, D, D, A],
        on_call: [D, D, A, D, D, A],
    },
    Row {
        method: "DELETE",
        path: "/api/v1/rooms/{id}/invitees/{invitee}",
        off_call: [D, D, A, D, D, A],
        on_call: [D, D, A, D, D, A],
    },
    Row {
        method: "POST",
        path: "/api/v1/rooms/{id}/join",
        off_call: [D, D, A, D, D, D],
        on_call: [D, D, A, D, D, D],
    },
    Row {
        method: "POST",
        path: "/api/v1/rooms/{id}/participants/{pid}/{action}",
        off_call: [D, D, A, D, D, A],
        on_call: [D, D, A, D, D, A],
    },
    Row {
        method: "POST",
        path: "/api/v1/rooms/{id}/recording/{action}",
        off_call: [D, D, A, D, D, A],
        on_call: [D, D, A, D, D, A],
    },
    Row {
        method: "POST",
        path: "/api/v1/rooms/{id}/participants",
        off_call: [D, D, A, D, D, A],
        on_call: [D, D, A, D, D, A],
    },
    Row {
        method: "POST",
        path: "/api/v1/rooms/{id}/end",
        off_call: [D, D, A, D, D, A],
        on_call: [D, D, A, D, D, A],
    },
    Row {
        method: "POST",
        path: "/api/v1/calls/{call_id}/wrap-up",
        off_call: [D, A, A, A, D, D],
        on_call: [D, A, A, A, D, D],
    },
    // The live view of queues and agents: supervisors.
    Row {
        method: "GET",
        path: "/api/v1/desk",
        off_call: [D, A, D, D, D, D],
        on_call: [D, A, D, D, D, D],
    },
    Row {
        method: "POST",
        path: "/api/v1/care-tasks/{id}/done",
        off_call: [D, A, A, D, D, D],
        on_call: [D, A, A, D, D, D],
    },
    // Operators see the notices that did not go out and send them again.
    Row {
        method: "GET",
        path: "/api/v1/notifications",
        off_call: [A, A, D, D, D, D],
        on_call: [A, A, D, D, D, D],
    },
    Row {
        method: "POST",
        path: "/api/v1/notifications/{id}/retry",
        off_call: [A, A, D, D, D, D],
        on_call: [A, A, D, D, D, D],
    },
    // A refill is a prescriber's decision.
    Row {
        method: "POST",
        path: "/api/v1/care-tasks/{id}/decision",
        off_call: [D, D, A, D, D, D],
        on_call: [D, D, A, D, D, D],
    },
];

/// A server whose calls hold the line until the caller hangs up.
fn start_holding() -> (Api, tempfile::TempDir) {
    start_holding_with("")
}

/// As [`start_holding`], with extra configuration.
fn start_holding_with(extra_toml: &str) -> (Api, tempfile::TempDir) {
    let flows = tempfile::tempdir().unwrap();
    std::fs::write(flows.path().join("hold.json"), support::fixtures::HOLD_FLOW).unwrap();
    let api = Api::start(&format!(
        "[flows]\ndir = \"{}\"\ndefault = \"hold\"\n[rtp]\ntimeout_secs = 900\n{extra_toml}",
        flows.path().display()
    ));
    (api, flows)
}

/// A live call into the server. Its media goes to a socket of the caller's own (held open,
/// never read), so no other test's server can be on that port.
fn live_call(
    api: &Api,
) -> (
    support::sip::Ua,
    support::sip::Call,
    String,
    std::net::UdpSocket,
) {
    use support::sip::{Call, Ua, answered_call, sdp_offer};
    let media = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtp_port = media.local_addr().unwrap().port();
    let mut ua = Ua::udp(api.server.sip);
    let mut call = Call::new("100");
    let ok = answered_call(
        &mut ua,
        &mut call,
        &sdp_offer(rtp_port, "0", &["a=rtpmap:0 PCMU/8000"]),
    );
    let call_id = ok.header("Call-ID").unwrap().to_string();
    (ua, call, call_id, media)
}

impl Api {
    /// Records `n` short recordings on a live call (start, 1 s, stop) as `supervisor`; returns
    /// their ids, oldest first, once sealed.
    fn record(&self, supervisor: &str, call_id: &str, n: usize) -> Vec<String> {
        for _ in 0..n {
            for (action, pause) in [("start", 1000), ("stop", 100)] {
                let r = self.call(
                    "POST",
                    &format!("/api/v1/calls/{call_id}/recording/{action}"),
                    Some(supervisor),
                    None,
                );
                assert_eq!(r.status, 202, "{}", r.body);
                std::thread::sleep(Duration::from_millis(pause));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.call(
                "GET",
                &format!("/api/v1/recordings?call_id={call_id}&state=sealed"),
                Some(supervisor),
                None,
            );
            assert_eq!(r.status, 200, "{}", r.body);
            let list = r.json()["recordings"].as_array().unwrap().clone();
            if list.len() == n {
                return list
                    .iter()
                    .rev()
                    .map(|r| r["id"].as_str().unwrap().to_string())
                    .collect();
            }
            assert!(Instant::now() < deadline, "recordings not sealed: {list:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What the call task does at call end: link the call and its recording to the patient
    /// (through the library, on the server's own database).
    fn link(&self, call_id: &str, patient: &str, recording: Option<&str>) {
        let data = self.server.data_path();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let db = careline::db::Db::connect(&format!(
                "sqlite://{}",
                data.join("careline.db").display()
            ))
            .await
            .unwrap();
            let keys =
                careline::keys::KeyRing::open(&data, careline::keys::Supplied::default()).unwrap();
            let store = careline::patient::PatientStore::new(
                db,
                std::sync::Arc::new(keys),
                std::sync::Arc::new(careline::patient::AlertTables::shipped()),
                "1",
            );
            store.link_call(call_id, patient, recording).await.unwrap();
        });
    }
}

#[test]
fn every_endpoint_answers_every_role_as_the_rules_say() {
    // The matrix places eight browser calls from one address that never connect: more than
    // the default number allowed to be connecting at once from one address.
    let (api, _flows) =
        start_holding_with("[webrtc]\nmax_connecting_per_source = 50\n[queues.nurses]\n");
    api.import_all();
    let (patient, _, _, phone) = bundle_patient(&bundles()[0]);
    let (other, ..) = bundle_patient(&bundles()[1]);
    let tokens: Vec<String> = ROLES
        .iter()
        .map(|r| api.user(&format!("{r}-1"), r))
        .collect();
    let svc = api.user("router", "service");
    api.user("handler-1", "agent");
    api.user("victim", "agent");
    let handles_calls = |role: &str| matches!(role, "supervisor" | "clinician" | "agent");

    // A live call with recordings of the patient under test: one to read, one for each of
    // the admin's deletions; a second live call for the link endpoints themselves.
    let (_ua, _call, live, _media) = live_call(&api);
    let (_side_ua, _side_call, side, _side_media) = live_call(&api);
    let recs = api.record(&tokens[1], &live, 3);
    // An execution of the built-in workflow about the patient, for the read endpoint.
    let r = api.call(
        "POST",
        "/api/v1/workflows/discharge-follow-up/executions",
        Some(&svc),
        Some(json!({"patient_id": patient})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let execution = r.json()["id"].as_str().unwrap().to_string();
    for rec in &recs {
        api.link(&live, &patient, Some(rec));
    }

    // The matrix covers every endpoint the OpenAPI document lists, and nothing else.
    let doc = api.call("GET", "/api/v1/openapi.json", None, None);
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    let mut listed = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                listed.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    listed.sort();
    let mut covered: Vec<(String, String)> = MATRIX
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    covered.sort();
    assert_eq!(listed, covered, "every guarded endpoint is in the matrix");

    // A browser's offer for the call-placing endpoint (its calls never connect and end by
    // themselves after the connect timeout).
    let browser = support::browser::BrowserPeer::new(&[careline::media::codec::Codec::Pcmu]);
    let mut failures = Vec::new();
    for on_call in [false, true] {
        for (i, role) in ROLES.iter().enumerate() {
            let user = format!("{role}-1");
            let on_its_call = on_call && handles_calls(role);
            if on_its_call {
                let r = api.call(
                    "PUT",
                    &format!("/api/v1/calls/{live}/contact"),
                    Some(&svc),
                    Some(json!({"patient_id": patient, "user": user})),
                );
                assert_eq!(r.status, 204, "{}", r.body);
            }
            // Who handles the side call: this role's user "on call", someone else otherwise.
            let handler = if on_its_call {
                user.clone()
            } else {
                "handler-1".to_string()
            };
            for row in MATRIX {
                let want = if on_call {
                    row.on_call[i]
                } else {
                    row.off_call[i]
                };
                // Side effects stay away from the patient under test: break-glass and call
                // associations use another patient; new users get unique names.
                let target = if row.path.ends_with("break-glass") {
                    &other
                } else {
                    &patient
                };
                let path = if row.path.starts_with("/api/v1/recordings/") {
                    // The admin deletes a fresh recording in each round.
                    let rec = if row.method == "DELETE" {
                        &recs[1 + on_call as usize]
                    } else {
                        &recs[0]
                    };
                    row.path.replace("{id}", rec)
                } else if row.path.starts_with("/api/v1/users/{name}/") {
                    let whom = if row.path.ends_with("/tokens") {
                        user.as_str()
                    } else {
                        "victim"
                    };
                    row.path.replace("{name}", whom)
                } else if row.path == "/api/v1/tokens/{id}" {
                    // A fresh token of the role's own user, revoked by that user.
                    let r = api.call(
                        "POST",
                        &format!("/api/v1/users/{user}/tokens"),
                        Some(&tokens[i]),
                        None,
                    );
                    assert_eq!(r.status, 201, "{}", r.body);
                    row.path.replace("{id}", r.json()["id"].as_str().unwrap())
                } else if row.path.starts_with("/api/v1/care-tasks/{id}/") {
                    // A fresh item to close in each round.
                    row.path.replace("{id}", &api.care_task(&patient))
                } else if row.path.ends_with("/stop") {
                    // A fresh execution to stop in each round.
                    let r = api.call(
                        "POST",
                        "/api/v1/workflows/discharge-follow-up/executions",
                        Some(&svc),
                        Some(json!({"patient_id": patient})),
                    );
                    assert_eq!(r.status, 201, "{}", r.body);
                    row.path.replace("{id}", r.json()["id"].as_str().unwrap())
                } else if row.path.starts_with("/api/v1/workflows/") {
                    row.path
                        .replace("{name}", "discharge-follow-up")
                        .replace("{id}", &execution)
                } else if row.path.starts_with("/api/v1/rooms/") {
                    // No such room: past the permission check, 404.
                    row.path
                        .replace("{id}", "00000000000000ff")
                        .replace("{invitee}", "00000000000000ff")
                        .replace("{pid}", "1")
                        .replace(
                            "{action}",
                            if row.path.contains("/recording/") {
                                "start"
                            } else {
                                "admit"
                            },
                        )
                } else if row.path.starts_with("/api/v1/queues/") {
                    row.path.replace("{name}", "nurses")
                } else if row.path.ends_with("/recording/{action}") {
                    row.path
                        .replace("{call_id}", &live)
                        .replace("{action}", "pause")
                } else {
                    row.path.replace("{id}", target).replace("{call_id}", &side)
                };
                let (path, body) = match (row.method, row.path) {
                    ("GET", "/api/v1/recordings") => (format!("{path}?patient={patient}"), None),
                    ("GET", "/api/v1/patients/lookup") => {
                        (format!("{path}?phone={}", phone.replace(' ', "")), None)
                    }
                    ("GET", "/api/v1/audit") => (format!("{path}?since=1h"), None),
                    ("POST", "/api/v1/patients/{id}/contacts") => {
                        (path, Some(json!({"channel": "voice", "reason": "matrix"})))
                    }
                    ("POST", "/api/v1/workflows/{name}/executions") => {
                        (path, Some(json!({"patient_id": patient})))
                    }
                    ("POST", "/api/v1/care-tasks/{id}/decision") => {
                        (path, Some(json!({"decision": "approved"})))
                    }
                    ("POST", "/api/v1/calls/{call_id}/wrap-up") => {
                        (path, Some(json!({"code": "no-action"})))
                    }
                    ("POST", "/api/v1/patients/{id}/break-glass") => {
                        (path, Some(json!({"reason": "matrix test emergency"})))
                    }
                    ("POST", "/api/v1/fhir") => (
                        path,
                        Some(json!({"resourceType": "Bundle", "type": "collection", "entry": []})),
                    ),
                    ("PUT", _) => (path, Some(json!({"patient_id": other, "user": handler}))),
                    ("POST", "/api/v1/calls") => (path, Some(json!({"to": "+1 555 0100"}))),
                    ("POST", "/api/v1/rooms") => (path, Some(json!({"title": "matrix visit"}))),
                    ("POST", "/api/v1/rooms/{id}/participants") => (
                        path,
                        Some(json!({"number": "+15550100", "label": "Guest", "role": "guest"})),
                    ),
                    ("POST", "/api/v1/rooms/{id}/invitees") => {
                        (path, Some(json!({"label": "Guest", "role": "guest"})))
                    }
                    ("POST", "/api/v1/users") => (
                        path,
                        Some(json!({"name": format!("new-{role}-{on_call}"), "role": "agent"})),
                    ),
                    _ => (path, None),
                };
                if row.path.ends_with("/contact") {
                    let r = api.call(
                        "PUT",
                        &path,
                        Some(&svc),
                        Some(json!({"patient_id": other, "user": handler})),
                    );
                    assert_eq!(r.status, 204, "{}", r.body);
                }
                // A read of one patient's record or recording is audited once, naming the
                // patient and the reader.
                let patient_read = row.method == "GET"
                    && (row.path.starts_with("/api/v1/patients/{id}/")
                        || row.path.starts_with("/api/v1/recordings/{id}"));
                let before = patient_read.then(|| reads_of(&api, &tokens[4], &user, &patient));
                let sdp = row.path == "/api/v1/calls/whip"
                    || row.path.ends_with("/answer")
                    || row.path.ends_with("/accept")
                    || row.path.ends_with("/monitor")
                    || row.path.ends_with("/join");
                let r = if sdp {
                    sdp_post(&api, &path, Some(&tokens[i]), &browser.offer)
                } else {
                    api.call(row.method, &path, Some(&tokens[i]), body.clone())
                };
                // Nobody waits in the queue (or rings for this agent): past the permission
                // check, 409; no trunk to call out through: past it, 422; an inbound call is
                // no placed call: 404; the console channel without an upgrade: 426.
                let allowed = matches!(r.status, 200 | 201 | 202 | 204)
                    || (row.path.ends_with("/answer") && r.status == 409)
                    || (row.path.ends_with("/accept") && r.status == 409)
                    || (row.path.ends_with("/decline") && r.status == 409)
                    // The side call is with no agent: past the check, 409.
                    || (row.path.ends_with("/monitor") && r.status == 409)
                    // Not their call to wrap up: past the check, 409.
                    || (row.path.ends_with("/wrap-up") && r.status == 409)
                    // A physician's item is no refill request: past the check, 409.
                    || (row.path.ends_with("/decision") && r.status == 409)
                    // No such notice: past the check, 404.
                    || (row.path.ends_with("/retry") && r.status == 404)
                    // No such callback: past the check, 404.
                    || (row.path == "/api/v1/callbacks/{id}" && r.status == 404)
                    // No such room: past the check, 404.
                    || (row.path.starts_with("/api/v1/rooms/{id}") && r.status == 404)
                    || (row.path == "/api/v1/ws" && r.status == 426)
                    || (row.path == "/api/v1/calls" && r.status == 422)
                    || (row.path == "/api/v1/calls/{call_id}" && r.status == 404);
                if allowed != want || !(allowed || r.status == 403) {
                    failures.push(format!(
                        "{role} {} {} (on call: {on_call}): got {} {}",
                        row.method, row.path, r.status, r.body
                    ));
                }
                if let Some(before) = before.filter(|_| allowed) {
                    let after = reads_of(&api, &tokens[4], &user, &patient);
                    if after != before + 1 {
                        failures.push(format!(
                            "{role} {} {}: {} audit entries for one read",
                            row.method,
                            row.path,
                            after - before
                        ));
                    }
                }
                // Without credentials: always 401.
                let anon = if sdp {
                    sdp_post(&api, &path, None, &browser.offer)
                } else {
                    api.call(row.method, &path, None, body)
                };
                if anon.status != 401 {
                    failures.push(format!(
                        "anonymous {} {}: got {}",
                        row.method, row.path, anon.status
                    ));
                }
            }
            if on_its_call {
                let r = api.call(
                    "DELETE",
                    &format!("/api/v1/calls/{live}/contact"),
                    Some(&svc),
                    None,
                );
                assert_eq!(r.status, 204, "{}", r.body);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Denials are in the audit trail, with the reason.
    let auditor = &tokens[4];
    let denied: Vec<Value> = api
        .audit(auditor, "user=agent-1")
        .into_iter()
        .filter(|e| e["action"] == "access.denied")
        .collect();
    assert!(
        denied
            .iter()
            .any(|e| e["detail"]["reason"] == "not_on_call" && e["patient_id"] == patient.as_str())
    );
    recordings_audit_and_unknown_patients(&api, &tokens, &patient, &recs, &live);
    // Nobody's name or number reached the log.
    assert_no_phi(&api.server.log());
}

/// The audit trail's reads of `patient` by `user` (records, exports, recordings).
fn reads_of(api: &Api, auditor: &str, user: &str, patient: &str) -> usize {
    api.audit(auditor, &format!("user={user}&patient={patient}&since=1h"))
        .iter()
        .filter(|e| {
            e["outcome"] == "success"
                && ["patient.read", "patient.export", "recording.read"]
                    .contains(&e["action"].as_str().unwrap_or(""))
        })
        .count()
}

/// After the matrix: recording reads, refusals and deletions are in the trail with the
/// recording, call and patient; a recording of no known patient is the supervisors' only.
fn recordings_audit_and_unknown_patients(
    api: &Api,
    tokens: &[String],
    patient: &str,
    recs: &[String],
    live: &str,
) {
    let auditor = &tokens[4];
    let trail = api.audit(auditor, "since=1h");
    let about = |e: &Value, rec: &str| {
        e["detail"]["recording"] == rec
            && e["detail"]["call_id"] == live
            && e["patient_id"] == patient
    };
    assert!(
        trail.iter().any(|e| e["action"] == "recording.read"
            && e["actor"] == "supervisor-1"
            && e["detail"]["view"] == "audio"
            && about(e, &recs[0])),
        "the supervisor's listening is audited"
    );
    assert!(
        trail.iter().any(|e| e["action"] == "access.denied"
            && e["actor"] == "clinician-1"
            && e["detail"]["action"] == "recording.read"
            && e["detail"]["reason"] == "needs_break_glass"
            && about(e, &recs[0])),
        "the clinician's refusal off the call is audited with the ids"
    );
    assert!(trail.iter().any(|e| e["action"] == "access.denied"
        && e["actor"] == "agent-1"
        && e["detail"]["reason"] == "role"
        && about(e, &recs[0])));
    for rec in &recs[1..] {
        assert!(
            trail.iter().any(|e| e["action"] == "recording.delete"
                && e["outcome"] == "success"
                && e["actor"] == "admin-1"
                && about(e, rec)),
            "deletion of {rec} is audited"
        );
    }
    assert!(trail.iter().any(|e| e["action"] == "recording.control"
        && e["actor"] == "service-1"
        && e["detail"]["call_id"] == live
        && e["detail"]["control"] == "pause"));

    // A recording on a call never linked to a patient: supervisors only.
    let (_ua, _call, other_call, _media) = live_call(api);
    let unknown = api.record(&tokens[1], &other_call, 1).remove(0);
    let path = format!("/api/v1/recordings/{unknown}");
    let r = api.call("GET", &path, Some(&tokens[1]), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["patient_id"], Value::Null);
    assert_eq!(r.json()["call_id"], other_call.as_str());
    let glass = api.call(
        "POST",
        &format!("/api/v1/patients/{patient}/break-glass"),
        Some(&tokens[2]),
        Some(json!({"reason": "recording review after an incident"})),
    );
    assert_eq!(glass.status, 200, "{}", glass.body);
    let r = api.call("GET", &path, Some(&tokens[2]), None);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("no patient is known"), "{}", r.body);
    // The same clinician, under break-glass for the patient, opens that patient's recording.
    let r = api.call(
        "GET",
        &format!("/api/v1/recordings/{}", recs[0]),
        Some(&tokens[2]),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let list = api.call("GET", "/api/v1/recordings", Some(&tokens[2]), None);
    assert_eq!(list.status, 403);
    assert!(list.body.contains("?patient=ID"), "{}", list.body);
    let trail = api.audit(auditor, "user=clinician-1");
    assert!(trail.iter().any(|e| e["action"] == "access.denied"
        && e["detail"]["reason"] == "patient_unknown"
        && e["detail"]["recording"] == unknown.as_str()
        && e["detail"]["call_id"] == other_call.as_str()
        && e["patient_id"].is_null()));
    assert!(trail.iter().any(|e| e["action"] == "recording.read"
        && e["detail"]["break_glass"] == true
        && e["detail"]["recording"] == recs[0].as_str()));
    let r = api.call("GET", &path, None, None);
    assert_eq!(r.status, 401);
}

/// What in a bundle identifies or describes its patient: name, number, date of birth, social
/// security and medical record numbers, and the clinical text of allergies and conditions.
fn phi_needles(path: &PathBuf) -> Vec<String> {
    let (_, given, family, phone) = bundle_patient(path);
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    let mut needles = vec![given, family, phone, digits];
    let b: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    for e in b["entry"].as_array().unwrap() {
        let r = &e["resource"];
        match r["resourceType"].as_str() {
            Some("Patient") => {
                needles.extend(r["birthDate"].as_str().map(String::from));
                for id in r["identifier"].as_array().into_iter().flatten() {
                    let code = &id["type"]["coding"][0]["code"];
                    if code == "SS" || code == "MR" {
                        needles.extend(id["value"].as_str().map(String::from));
                    }
                }
            }
            Some("AllergyIntolerance" | "Condition") => {
                let text = r["code"]["text"]
                    .as_str()
                    .or(r["code"]["coding"][0]["display"].as_str());
                needles.extend(text.filter(|t| t.len() > 8).map(String::from));
            }
            _ => {}
        }
    }
    needles
}

fn assert_no_phi(text: &str) {
    for path in bundles() {
        for needle in phi_needles(&path) {
            assert!(!text.contains(&needle), "`{needle}` appears in the log");
        }
    }
}

/// Polls the audit trail (as `auditor`) until an entry matches, or fails after 30 s.
fn wait_audit(api: &Api, auditor: &str, query: &str, what: &str, found: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if api.audit(auditor, query).iter().any(&found) {
            return;
        }
        assert!(Instant::now() < deadline, "never audited: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_patient_link_is_earned_by_a_live_call_and_ends_after_its_wrap_up() {
    let (mut api, _flows) = start_holding_with("[auth]\ncontact_wrap_up_secs = 600\n");
    api.import_all();
    let (patient, ..) = bundle_patient(&bundles()[0]);
    let svc = api.user("router", "service");
    let amy = api.user("amy", "agent");
    let sam = api.user("sam", "supervisor");
    let doc = api.user("dr-who", "clinician");
    let auditor = api.user("audrey", "auditor");
    let summary = format!("/api/v1/patients/{patient}/summary");
    let link = |api: &Api, call_id: &str, token: &str, body: Value| {
        api.call(
            "PUT",
            &format!("/api/v1/calls/{call_id}/contact"),
            Some(token),
            Some(body),
        )
    };

    // A call id nobody placed links nothing, whoever asks: 404, audited as a denial.
    for (who, token) in [
        ("router", &svc),
        ("amy", &amy),
        ("sam", &sam),
        ("dr-who", &doc),
    ] {
        let r = link(
            &api,
            "invented-call",
            token,
            json!({"patient_id": patient, "user": "amy"}),
        );
        assert_eq!(r.status, 404, "{who}: {}", r.body);
        wait_audit(
            &api,
            &auditor,
            &format!("user={who}"),
            "call_not_live",
            |e| {
                e["action"] == "access.denied"
                    && e["detail"]["reason"] == "call_not_live"
                    && e["detail"]["call_id"] == "invented-call"
            },
        );
    }
    assert_eq!(api.call("GET", &summary, Some(&amy), None).status, 403);

    // A live call: a person who does not handle it cannot claim it.
    let (mut ua, mut call, live, _media) = live_call(&api);
    for token in [&amy, &sam, &doc] {
        let r = link(&api, &live, token, json!({"patient_id": patient}));
        assert_eq!(r.status, 403, "{}", r.body);
    }
    wait_audit(&api, &auditor, "user=amy", "not_party", |e| {
        e["detail"]["reason"] == "not_party" && e["detail"]["call_id"] == live.as_str()
    });
    assert_eq!(api.call("GET", &summary, Some(&amy), None).status, 403);
    // Routing hands calls to people who take calls, not to auditors.
    let r = link(
        &api,
        &live,
        &svc,
        json!({"patient_id": patient, "user": "audrey"}),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    // Routing hands it to amy: she reads the patient; she may not hand it on herself.
    let r = link(
        &api,
        &live,
        &svc,
        json!({"patient_id": patient, "user": "amy"}),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(api.call("GET", &summary, Some(&amy), None).status, 200);
    assert_eq!(api.call("GET", &summary, Some(&sam), None).status, 200);
    let r = link(
        &api,
        &live,
        &amy,
        json!({"patient_id": patient, "user": "sam"}),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(api.call("GET", &summary, Some(&doc), None).status, 403);

    // The caller hangs up: amy keeps the patient for her wrap-up, the supervisor (who
    // watches live calls) does not, and the ended call cannot be linked again.
    ua.send(&call.bye(&ua));
    let _ = ua.expect(Duration::from_secs(5), |m| m.cseq_method() == Some("BYE"));
    wait_audit(&api, &auditor, "user=system", "wrap-up", |e| {
        e["action"] == "contact.active"
            && e["detail"]["state"] == "wrap_up"
            && e["detail"]["call_id"] == live.as_str()
            && e["detail"]["user"] == "amy"
            && e["detail"]["until"].is_string()
    });
    assert_eq!(api.call("GET", &summary, Some(&amy), None).status, 200);
    let r = api.call(
        "POST",
        &format!("/api/v1/patients/{patient}/contacts"),
        Some(&amy),
        Some(json!({"channel": "voice", "notes": "wrap-up note", "call_id": live})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(api.call("GET", &summary, Some(&sam), None).status, 403);
    let r = link(
        &api,
        &live,
        &svc,
        json!({"patient_id": patient, "user": "amy"}),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    // Amy is done early: her link ends with her DELETE.
    let r = api.call(
        "DELETE",
        &format!("/api/v1/calls/{live}/contact"),
        Some(&amy),
        None,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(api.call("GET", &summary, Some(&amy), None).status, 403);

    // A server killed mid-call: after the restart that call's link is in wrap-up, not live.
    let (_ua2, _call2, live2, _media2) = live_call(&api);
    let r = link(
        &api,
        &live2,
        &svc,
        json!({"patient_id": patient, "user": "amy"}),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    api.server.kill9();
    api.server.restart();
    wait_audit(&api, &auditor, "user=system", "restart wrap-up", |e| {
        e["action"] == "contact.active"
            && e["detail"]["state"] == "wrap_up"
            && e["detail"]["call_id"] == live2.as_str()
    });
    assert_eq!(api.call("GET", &summary, Some(&sam), None).status, 403);
    let r = link(
        &api,
        &live2,
        &svc,
        json!({"patient_id": patient, "user": "amy"}),
    );
    assert_eq!(r.status, 404, "{}", r.body);
}

#[test]
fn an_agent_reads_a_summary_only_while_on_the_call_and_the_call_is_audited() {
    let api = Api::start("[auth]\ncontact_wrap_up_secs = 0\n");
    // Import through the API as a service would, every conformance bundle.
    let svc = api.user("ehr-feed", "service");
    for path in bundles() {
        let body: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let r = api.call("POST", "/api/v1/fhir", Some(&svc), Some(body));
        assert_eq!(r.status, 200, "{}: {}", path.display(), r.body);
    }
    let agent = api.user("amy", "agent");
    let auditor = api.user("audrey", "auditor");
    let (patient, given, family, phone) = bundle_patient(&bundles()[3]);

    // The flow's lookup: who is calling (no clinical data).
    let r = api.call(
        "GET",
        &format!("/api/v1/patients/lookup?phone={}", phone),
        Some(&agent),
        None,
    );
    assert_eq!(r.status, 200);
    let found = r.json();
    assert_eq!(found["result"], "found");
    assert_eq!(found["patient_id"], patient.as_str());
    assert_eq!(found["verified"], false);
    assert!(found.get("allergies").is_none() && !r.body.contains(&family));

    let summary = format!("/api/v1/patients/{patient}/summary");
    assert_eq!(api.call("GET", &summary, Some(&agent), None).status, 403);

    // A real call comes in; routing (here: the test, as the service) associates it.
    let (mut ua, mut call, call_id, _media) = live_call(&api);
    let r = api.call(
        "PUT",
        &format!("/api/v1/calls/{call_id}/contact"),
        Some(&svc),
        Some(json!({"patient_id": patient, "user": "amy"})),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let r = api.call("GET", &summary, Some(&agent), None);
    assert_eq!(r.status, 200, "{}", r.body);
    let s = r.json();
    assert_eq!(s["demographics"]["family"], family.as_str());
    assert_eq!(s["demographics"]["given"][0], given.as_str());
    assert!(!s["allergies"].as_array().unwrap().is_empty());
    let r = api.call("POST", &format!("/api/v1/patients/{patient}/contacts"), Some(&agent),
        Some(json!({"channel": "voice", "reason": "refill request", "outcome": "resolved", "call_id": call_id})));
    assert_eq!(r.status, 201, "{}", r.body);

    // The caller hangs up: the association ends with the call, and so does the access.
    ua.send(&call.bye(&ua));
    let _ = ua.expect(Duration::from_secs(5), |m| m.cseq_method() == Some("BYE"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = api.call("GET", &summary, Some(&agent), None);
        if r.status == 403 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "access did not end with the call: {}",
            r.status
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The trail shows the call's start and end, the read, the write.
    let entries = api.audit(&auditor, &format!("patient={patient}&since=1h"));
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for want in [
        "patient.write",
        "patient.lookup",
        "access.denied",
        "contact.active",
        "patient.read",
        "contact.write",
        "call.end",
    ] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }
    let all = api.audit(&auditor, "user=system");
    assert!(
        all.iter()
            .any(|e| e["action"] == "call.start" && e["detail"]["call_id"] == call_id.as_str())
    );
    let s = api.call(
        "GET",
        &format!("/api/v1/patients/{patient}/contacts"),
        Some(&auditor),
        None,
    );
    assert_eq!(s.status, 403, "auditors do not read clinical data");

    // No names or numbers in the log or the database files.
    assert_no_phi(&api.server.log());
    let mut db = Vec::new();
    for entry in std::fs::read_dir(api.server.data_path()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            db.extend(std::fs::read(p).unwrap_or_default());
        }
    }
    let db = String::from_utf8_lossy(&db);
    for path in bundles() {
        let (_, given, family, phone) = bundle_patient(&path);
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        for needle in [
            format!("\"{given}\""),
            format!("\"{family}\""),
            phone,
            digits,
        ] {
            assert!(
                !db.contains(&needle),
                "`{needle}` is in the data dir in clear"
            );
        }
    }
}

#[test]
fn break_glass_needs_a_reason_and_is_flagged_in_the_audit_trail() {
    let api = Api::start("");
    api.import_all();
    let (patient, ..) = bundle_patient(&bundles()[2]);
    let doc = api.user("dr-house", "clinician");
    let auditor = api.user("audrey", "auditor");
    let summary = format!("/api/v1/patients/{patient}/summary");

    let r = api.call("GET", &summary, Some(&doc), None);
    assert_eq!(r.status, 403);
    assert!(r.body.contains("break-glass"), "{}", r.body);
    let glass = format!("/api/v1/patients/{patient}/break-glass");
    let r = api.call("POST", &glass, Some(&doc), Some(json!({"reason": "  "})));
    assert_eq!(r.status, 400, "{}", r.body);
    let r = api.call(
        "POST",
        &glass,
        Some(&doc),
        Some(json!({"reason": "patient collapsed on the phone, EMS dispatched"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api.call("GET", &summary, Some(&doc), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["break_glass"], true);
    let r = api.call(
        "GET",
        &format!("/api/v1/patients/{patient}/bundle"),
        Some(&doc),
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["resourceType"], "Bundle");

    // Who accessed this patient in the last day: the auditor's query.
    let entries = api.audit(&auditor, &format!("patient={patient}&since=1d"));
    let glass_entry = entries
        .iter()
        .find(|e| e["action"] == "break_glass")
        .expect("break-glass entry");
    assert_eq!(glass_entry["actor"], "dr-house");
    assert_eq!(glass_entry["detail"]["break_glass"], true);
    assert_eq!(
        glass_entry["reason"],
        "patient collapsed on the phone, EMS dispatched"
    );
    let read = entries
        .iter()
        .find(|e| e["action"] == "patient.read")
        .expect("read entry");
    assert_eq!(
        read["detail"]["break_glass"], true,
        "reads under break-glass are flagged"
    );
    assert!(
        api.audit(&auditor, &format!("patient={patient}&user=nobody"))
            .is_empty()
    );
    assert!(
        api.audit(&auditor, &format!("patient={patient}&until=2000-01-01"))
            .is_empty()
    );

    let r = api.call(
        "GET",
        &format!("/api/v1/audit?patient={patient}&format=fhir"),
        Some(&auditor),
        None,
    );
    assert_eq!(r.status, 200);
    let fhir = r.json();
    assert_eq!(fhir["resourceType"], "Bundle");
    let events: Vec<&Value> = fhir["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    assert!(events.iter().all(|e| e["resourceType"] == "AuditEvent"));
    assert!(
        events
            .iter()
            .any(|e| e["purposeOfEvent"][0]["coding"][0]["code"] == "BTG")
    );

    // Agents cannot break the glass.
    let agent = api.user("amy", "agent");
    let r = api.call(
        "POST",
        &glass,
        Some(&agent),
        Some(json!({"reason": "curious"})),
    );
    assert_eq!(r.status, 403);
}

fn login(api: &Api, name: &str, password: &str) -> Response {
    login_from(api, [127, 0, 0, 1], name, password)
}

/// The `name=value` a response's `Set-Cookie` sets.
fn cookie_of(r: &Response) -> String {
    let set = r.header("set-cookie").expect("a Set-Cookie header");
    set.split(';').next().unwrap_or_default().to_string()
}

/// Sends `raw` from the loopback address `from` (127.0.0.0/8 is all loopback on Linux).
fn send_from(api: &Api, from: [u8; 4], raw: &str) -> Response {
    use std::io::{Read, Write};
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect(&api.server.http.into()).unwrap();
    let mut s: std::net::TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    support::http::parse(&buf)
}

/// The sign-in page's form token and its cookie (`name=value`).
fn login_form(api: &Api, from: [u8; 4]) -> (String, String) {
    let page = send_from(
        api,
        from,
        "GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(page.status, 200);
    let cookie = cookie_of(&page);
    let token = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    (token, cookie)
}

/// Signs in through the page, as a browser does, from the loopback address `from`.
fn login_from(api: &Api, from: [u8; 4], name: &str, password: &str) -> Response {
    let (token, cookie) = login_form(api, from);
    let body = format!("name={name}&password={password}&csrf={token}");
    send_from(
        api,
        from,
        &format!(
            "POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: {cookie}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn failed_sign_ins_slow_the_guesser_not_the_user_and_sessions_end_when_idle() {
    let api = Api::start("[auth]\nsession_idle_secs = 2\nlockout_secs = 600\n");
    api.user_with("nina", "clinician", Some("a long passphrase 1"));
    api.user_with("omar", "agent", Some("another passphrase"));

    let page = request(api.server.http, "GET", "/login", &[], None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<form") && page.body.contains("password"));

    // A good login: an HttpOnly, SameSite cookie that opens the API.
    let r = login(&api, "nina", "a+long+passphrase+1");
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie_of(&r);
    let me = request(
        api.server.http,
        "GET",
        "/api/v1/me",
        &[("Cookie", &pair)],
        None,
    );
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["role"], "clinician");
    // Idle logoff.
    std::thread::sleep(Duration::from_millis(2500));
    let me = request(
        api.server.http,
        "GET",
        "/api/v1/me",
        &[("Cookie", &pair)],
        None,
    );
    assert_eq!(me.status, 401, "the session ended after being idle");

    // Logout ends a session at once.
    let r = login(&api, "omar", "another+passphrase");
    let pair = cookie_of(&r);
    assert_eq!(
        request(
            api.server.http,
            "GET",
            "/api/v1/me",
            &[("Cookie", &pair)],
            None
        )
        .status,
        200
    );
    request(
        api.server.http,
        "POST",
        "/logout",
        &[("Cookie", &pair)],
        None,
    );
    assert_eq!(
        request(
            api.server.http,
            "GET",
            "/api/v1/me",
            &[("Cookie", &pair)],
            None
        )
        .status,
        401
    );

    // Five failures from one address for nina: further attempts from it wait (429 with
    // Retry-After), the right password included.
    for i in 0..5 {
        let r = login(&api, "nina", &format!("wrong{i}"));
        assert_eq!(r.status, 401, "attempt {i}");
    }
    let slowed = login(&api, "nina", "a+long+passphrase+1");
    assert_eq!(slowed.status, 429, "{}", slowed.body);
    assert!(slowed.header("retry-after").is_some());
    // A name that does not exist is answered exactly alike: nothing tells which names exist.
    for i in 0..5 {
        let r = login(&api, "ghost", &format!("wrong{i}"));
        assert_eq!(r.status, 401, "attempt {i}");
    }
    let ghost = login(&api, "ghost", "anything");
    assert_eq!(ghost.status, 429, "{}", ghost.body);
    // The same page but for its fresh form token and the seconds to wait.
    let text = |r: &Response| {
        let token = r
            .body
            .split("value=\"")
            .nth(1)
            .and_then(|t| t.split('"').next());
        r.body
            .replace(token.unwrap_or("-"), "")
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .collect::<String>()
    };
    assert_eq!(text(&ghost), text(&slowed));
    // Someone guessing from another address does not keep nina out of her own account.
    assert_eq!(
        login_from(&api, [127, 0, 0, 2], "nina", "a+long+passphrase+1").status,
        303
    );
    // Other accounts are not affected.
    assert_eq!(login(&api, "omar", "another+passphrase").status, 303);

    // The real account's failures and the slowdown are audited; the guesses at a name that
    // does not exist are not rows of their own.
    let auditor = api.user("audrey", "auditor");
    wait_audit(&api, &auditor, "user=nina", "nina's lockout", |e| {
        e["action"] == "login.lockout" && e["detail"]["source"] == "127.0.0.1"
    });
    let entries = api.audit(&auditor, "user=nina");
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["action"] == "login" && e["outcome"] == "failure")
            .count(),
        5
    );
    assert!(api.audit(&auditor, "user=ghost").is_empty());
    assert_eq!(api.server.metric("careline_auth_lockouts_total"), 1.0);
    assert!(
        api.server
            .metric("careline_auth_logins_total{outcome=\"failure\"}")
            >= 10.0
    );
    assert!(
        api.server
            .metric("careline_auth_logins_total{outcome=\"throttled\"}")
            >= 2.0
    );
}

#[test]
fn requests_without_credentials_are_summarised_not_chained_one_by_one() {
    let api = Api::start("[auth]\nunauthenticated_summary_secs = 1\n");
    let auditor = api.user("audrey", "auditor");
    for i in 0..300 {
        let token = (i % 2 == 0).then_some("clt_0000_not-a-token");
        let r = api.call("GET", "/api/v1/me", token, None);
        assert_eq!(r.status, 401);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows: Vec<Value> = api
            .audit(&auditor, "user=anonymous")
            .into_iter()
            .filter(|e| e["detail"]["reason"] == "unauthenticated")
            .collect();
        let counted: u64 = rows
            .iter()
            .map(|e| e["detail"]["count"].as_u64().unwrap())
            .sum();
        if counted >= 300 {
            assert_eq!(counted, 300);
            assert!(rows.len() <= 3, "{} rows for 300 requests", rows.len());
            assert!(rows.iter().all(|e| e["detail"]["source"] == "127.0.0.1"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "summarised only {counted} of 300"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        api.server.metric("careline_auth_unauthenticated_total"),
        300.0
    );
    // One line in the log per source per window, not one per request.
    let lines = api
        .server
        .log()
        .lines()
        .filter(|l| l.contains("without valid credentials"))
        .count();
    assert!((1..=3).contains(&lines), "{lines} log lines");

    // Nothing counted is lost when the server stops: the drain writes the open window.
    drop(api);
    let mut api = Api::start("");
    let auditor = api.user("audrey", "auditor");
    for _ in 0..7 {
        assert_eq!(api.call("GET", "/api/v1/me", None, None).status, 401);
    }
    api.server.signal("TERM");
    assert!(
        api.server
            .wait_exit(Duration::from_secs(60))
            .is_some_and(|s| s.success())
    );
    api.server.restart();
    let counted: u64 = api
        .audit(&auditor, "user=anonymous")
        .iter()
        .filter_map(|e| e["detail"]["count"].as_u64())
        .sum();
    assert_eq!(counted, 7, "the open window was written at the drain");
}

#[test]
fn audit_verify_names_a_tampered_row() {
    let api = Api::start("");
    api.import_all();
    let out = api.cli(&["audit", "verify"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));

    // Edit one row with the database's own tools (sqlx here), as an intruder would.
    let db = api.server.data_path().join("careline.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let d = careline::db::Db::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE audit_log SET outcome = 'denied' WHERE seq = 4")
            .execute(d.pool())
            .await
            .unwrap();
    });
    let out = api.cli(&["audit", "verify"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("audit entry 4 ") && err.contains("edited"),
        "{err}"
    );
}

/// What a hash chain alone cannot see: its newest entries deleted together, or the table put
/// back to an older copy of itself. The chain head kept outside the database catches both.
#[test]
fn audit_verify_names_the_newest_entries_deleted_or_an_older_copy_restored() {
    let api = Api::start("");
    api.import_all();
    let head = api.server.data_path().join("audit-head.json");
    let checkpoint: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&head).expect("the checkpoint file"))
            .unwrap();
    let last = checkpoint["seq"].as_i64().expect("seq");
    assert!(last >= 3, "{checkpoint}");
    let out = api.cli(&["audit", "verify"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let db = api.server.data_path().join("careline.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sql = |q: String| {
        rt.block_on(async {
            let d = careline::db::Db::connect(&format!("sqlite://{}", db.display()))
                .await
                .unwrap();
            sqlx::query(&q).execute(d.pool()).await.unwrap();
        })
    };
    // The two newest entries deleted together: the chain that is left is consistent.
    sql(format!(
        "CREATE TABLE kept AS SELECT * FROM audit_log WHERE seq >= {}",
        last - 1
    ));
    sql(format!("DELETE FROM audit_log WHERE seq >= {}", last - 1));
    let out = api.cli(&["audit", "verify"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("audit entry {last} "))
            && err.contains(&format!("the trail ends at entry {}", last - 2))
            && err.contains("the newest entries were deleted"),
        "{err}"
    );
    // Put back, then the newest entry replaced by a different one carrying a valid-looking
    // hash of its own: named as not the entry the checkpoint recorded.
    sql("INSERT INTO audit_log SELECT * FROM kept".into());
    let out = api.cli(&["audit", "verify"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sql(format!(
        "UPDATE audit_log SET hash = 'x' || hash WHERE seq = {last}"
    ));
    let out = api.cli(&["audit", "verify"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("audit entry {last} ")), "{err}");
}

#[test]
fn the_api_is_served_over_https_with_a_self_signed_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let rtp = support::server::rtp_slot();
    let rtp_ports = format!("{}-{}", rtp.lo, rtp.hi);
    let mut child = support::server::careline_command()
        .args(["--data-dir"])
        .arg(data.path())
        .args([
            "serve",
            "--sip-listen",
            "127.0.0.1:0",
            "--no-tls",
            "--rtp-ports",
            &rtp_ports,
        ])
        .args(["--http-listen", &http.to_string(), "--prompts-dir"])
        .arg(support::server::repo_root().join("prompts"))
        .env("CARELINE_HTTP__TLS", "on")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let cert = data.path().join("tls/sip-cert.pem");
    let deadline = Instant::now() + Duration::from_secs(60);
    let get = |path: &str| -> Option<Response> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(&cert).ok()? {
            roots.add(c.ok()?).ok()?;
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).ok()?;
        let tcp = std::net::TcpStream::connect(http).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        use std::io::{Read, Write};
        write!(
            tls,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut buf = Vec::new();
        let _ = tls.read_to_end(&mut buf);
        Some(support::http::parse(&buf))
    };
    let mut answered = None;
    while Instant::now() < deadline {
        if let Some(r) = get("/healthz").filter(|r| r.status == 200) {
            answered = Some(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let plain = std::net::TcpStream::connect(http).ok().map(|mut s| {
        use std::io::{Read, Write};
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let openapi = get("/api/v1/openapi.json");
    // The same protocol and suite floor as SIP over TLS (tests/tls_settings.rs); the server
    // is stopped before a failure is reported.
    let floor = answered
        .is_some()
        .then(|| std::panic::catch_unwind(|| support::tls::assert_modern_tls_only(http)));
    let _ = child.kill();
    let _ = child.wait();
    if let Some(Err(failure)) = floor {
        std::panic::resume_unwind(failure);
    }
    let answered = answered.expect("no HTTPS answer with the generated certificate");
    assert!(
        answered
            .header("strict-transport-security")
            .is_some_and(|v| v.contains("max-age=")),
        "HTTPS answers carry HSTS"
    );
    assert!(
        !plain.unwrap_or_default().contains("200 OK"),
        "plain HTTP is not served on an HTTPS port"
    );
    let doc = openapi.expect("openapi over HTTPS").json();
    assert_eq!(doc["openapi"], "3.1.0");
}

#[test]
fn what_a_client_sends_is_checked_whole_and_the_facts_come_from_the_server() {
    let (api, _flows) = start_holding();
    api.import_all();
    let (patient, ..) = bundle_patient(&bundles()[1]);
    let svc = api.user("router", "service");
    let amy = api.user("amy", "agent");
    let admin = api.user("ada", "admin");
    let (_ua, _call, live, _media) = live_call(&api);
    let r = api.call(
        "PUT",
        &format!("/api/v1/calls/{live}/contact"),
        Some(&svc),
        Some(json!({"patient_id": patient, "user": "amy"})),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let contacts = format!("/api/v1/patients/{patient}/contacts");

    // Author and time are the session's and the server's: a client naming them is refused,
    // with the field's name, as a problem details document.
    for (field, value) in [
        ("user", json!("dr-house")),
        ("time", json!("2020-01-01T00:00:00Z")),
    ] {
        let mut body = json!({"channel": "voice", "notes": "forged"});
        body[field] = value;
        let r = api.call("POST", &contacts, Some(&amy), Some(body));
        assert_eq!(r.status, 422, "{field}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        let p = r.json();
        assert_eq!(p["status"], 422);
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("`{field}`")),
            "{}",
            r.body
        );
    }
    let r = api.call(
        "POST",
        &contacts,
        Some(&amy),
        Some(json!({"channel": "voice", "notes": "called about a refill"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let saved = r.json();
    assert_eq!(saved["user"], "amy");
    let year: i32 = saved["time"].as_str().unwrap()[..4].parse().unwrap();
    assert!(year >= 2025, "the server's clock wrote {}", saved["time"]);

    // A value of the wrong type is named, not repeated.
    let r = api.call(
        "POST",
        &contacts,
        Some(&amy),
        Some(json!({"channel": "voice", "duration_secs": "<script>alert(1)</script>"})),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains("duration_secs") && !r.body.contains("script"),
        "{}",
        r.body
    );

    // Free text has limits, named in the refusal; a body past the endpoint's size is 413.
    let long = "x".repeat(20_000);
    let r = api.call(
        "POST",
        &contacts,
        Some(&amy),
        Some(json!({"channel": "voice", "notes": long})),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("`notes`"), "{}", r.body);
    let auth = format!("Bearer {amy}");
    let head = announce_body(
        api.server.http,
        &contacts,
        &auth,
        "application/json",
        200_000,
    );
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    let summary = api.call(
        "GET",
        &format!("/api/v1/patients/{patient}/summary"),
        Some(&amy),
        None,
    );
    assert_eq!(summary.status, 200);
    assert!(summary.body.len() < 100_000, "{} bytes", summary.body.len());
    // A JSON endpoint takes JSON only (a cross-site form cannot send it).
    let r = request(
        api.server.http,
        "POST",
        &contacts,
        &[("Authorization", &auth)],
        Some(("text/plain", br#"{"channel": "voice"}"#)),
    );
    assert_eq!(r.status, 415, "{}", r.body);

    // A refused user creation creates nothing: the same name succeeds once it is right.
    let r = api.call(
        "POST",
        "/api/v1/users",
        Some(&admin),
        Some(json!({"name": "nina", "role": "agent", "password": "short"})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = api.call(
        "POST",
        "/api/v1/users",
        Some(&admin),
        Some(json!({"name": "nina", "role": "agent", "password": "a-long-enough-passphrase"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(login(&api, "nina", "a-long-enough-passphrase").status, 303);

    // The server's own actor names are nobody's user name, over the API or the CLI.
    for name in ["system", "cli", "anonymous", "System", "system:ivr"] {
        let r = api.call(
            "POST",
            "/api/v1/users",
            Some(&admin),
            Some(json!({"name": name, "role": "agent"})),
        );
        assert_eq!(r.status, 400, "{name}: {}", r.body);
    }
    let out = api.cli(&["user", "add", "system", "--role", "admin"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("reserved"));

    // A sign-in form past a few KiB is refused before it is read.
    let head = announce_body(
        api.server.http,
        "/login",
        "",
        "application/x-www-form-urlencoded",
        60_000_000,
    );
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    // An import that fails names the problem without repeating the record, in the answer and
    // in the log.
    let mut bundle: Value = serde_json::from_slice(&std::fs::read(&bundles()[2]).unwrap()).unwrap();
    bundle["entry"]
        .as_array_mut()
        .unwrap()
        .push(json!({"fullUrl": "urn:uuid:6a9b3c1e-0000-4000-8000-000000000001"}));
    let r = api.call("POST", "/api/v1/fhir", Some(&admin), Some(bundle));
    assert_eq!(r.status, 422, "{}", r.body);
    for needle in phi_needles(&bundles()[2]) {
        assert!(!r.body.contains(&needle), "`{needle}` in the answer");
    }
    assert_no_phi(&api.server.log());
}

/// Sends a POST's head announcing a body of `length` bytes, and none of the body: the answer
/// (its head) shows whether the server refuses before reading.
fn announce_body(addr: SocketAddr, path: &str, auth: &str, ctype: &str, length: usize) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = if auth.is_empty() {
        String::new()
    } else {
        format!("Authorization: {auth}\r\n")
    };
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: {ctype}\r\nContent-Length: {length}\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn browsers_get_protective_headers_and_other_sites_cannot_act_through_them() {
    let api = Api::start("");
    api.user_with("nina", "clinician", Some("a long passphrase 1"));
    let token = api.user("sam", "supervisor");

    // The sign-in page: nothing may frame it, load into it, or sniff it.
    let page = request(api.server.http, "GET", "/login", &[], None);
    let csp = page.header("content-security-policy").unwrap();
    for want in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(want), "{csp}");
    }
    assert!(csp.contains("style-src 'sha256-"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    // JSON (PHI) is never cached; errors are problem details, also for unknown paths.
    let me = api.call("GET", "/api/v1/me", Some(&token), None);
    assert_eq!(me.header("cache-control"), Some("no-store"));
    assert_eq!(me.header("x-content-type-options"), Some("nosniff"));
    let missing = api.call("GET", "/api/v1/%3Cscript%3E", Some(&token), None);
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("content-type"),
        Some("application/problem+json")
    );
    assert!(
        !missing.body.to_lowercase().contains("script"),
        "{}",
        missing.body
    );

    // Sign-in CSRF: a form posted without the page's token, or from another site, is refused.
    let form = "name=nina&password=a+long+passphrase+1";
    let r = request(
        api.server.http,
        "POST",
        "/login",
        &[],
        Some(("application/x-www-form-urlencoded", form.as_bytes())),
    );
    assert_eq!(r.status, 403, "no token: {}", r.body);
    let (csrf, cookie) = login_form(&api, [127, 0, 0, 1]);
    let with_token = format!("{form}&csrf={csrf}");
    let r = request(
        api.server.http,
        "POST",
        "/login",
        &[("Cookie", &cookie), ("Origin", "https://evil.example")],
        Some(("application/x-www-form-urlencoded", with_token.as_bytes())),
    );
    assert_eq!(r.status, 403, "other site: {}", r.body);
    let r = login(&api, "nina", "a+long+passphrase+1");
    assert_eq!(r.status, 303, "{}", r.body);
    let session = cookie_of(&r);

    // With the session cookie, a write from another site is refused before it is handled;
    // the same request from this site (or with no Origin at all) goes through.
    let r = request(
        api.server.http,
        "POST",
        "/logout",
        &[("Cookie", &session), ("Origin", "https://evil.example")],
        None,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = request(
        api.server.http,
        "POST",
        "/logout",
        &[("Cookie", &session), ("Sec-Fetch-Site", "cross-site")],
        None,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let me = request(
        api.server.http,
        "GET",
        "/api/v1/me",
        &[("Cookie", &session)],
        None,
    );
    assert_eq!(me.status, 200, "still signed in");
    // (The test client names itself `Host: localhost`.)
    let r = request(
        api.server.http,
        "POST",
        "/logout",
        &[("Cookie", &session), ("Origin", "http://localhost")],
        None,
    );
    assert_eq!(r.status, 303, "{}", r.body);
}

#[test]
fn tokens_rotate_and_revoke_and_a_disabled_user_is_out_at_once() {
    let api = Api::start("");
    let admin = api.user("ada", "admin");
    let old = api.user_with("tom", "agent", Some("a long passphrase 1"));
    let me = |token: &str| api.call("GET", "/api/v1/me", Some(token), None).status;
    assert_eq!(me(&old), 200);

    // Rotation: a new token, then the old one revoked; it stops working at once.
    let r = api.call("POST", "/api/v1/users/tom/tokens", Some(&old), None);
    assert_eq!(r.status, 201, "{}", r.body);
    let new = r.json()["token"].as_str().unwrap().to_string();
    assert!(r.json()["expires"].is_string(), "tokens expire by default");
    let old_id = old.split('_').nth(1).unwrap();
    let r = api.call(
        "DELETE",
        &format!("/api/v1/tokens/{old_id}"),
        Some(&new),
        None,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(me(&old), 401);
    assert_eq!(me(&new), 200);
    let list = api.call("GET", "/api/v1/users/tom/tokens", Some(&new), None);
    assert_eq!(list.status, 200);
    let tokens = list.json()["tokens"].as_array().unwrap().clone();
    assert_eq!(tokens.len(), 2);
    assert!(
        !list.body.contains(new.split('_').nth(2).unwrap()),
        "no secrets listed"
    );
    // Not someone else's.
    assert_eq!(
        api.call("GET", "/api/v1/users/ada/tokens", Some(&new), None)
            .status,
        403
    );
    let ada_id = admin.split('_').nth(1).unwrap();
    assert_eq!(
        api.call(
            "DELETE",
            &format!("/api/v1/tokens/{ada_id}"),
            Some(&new),
            None
        )
        .status,
        403
    );

    // Disabled: token, session and sign-in all stop; enabled again, the token works.
    let r = login(&api, "tom", "a+long+passphrase+1");
    assert_eq!(r.status, 303);
    let session = cookie_of(&r);
    let r = api.call("POST", "/api/v1/users/tom/disable", Some(&admin), None);
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(me(&new), 401);
    let by_cookie = request(
        api.server.http,
        "GET",
        "/api/v1/me",
        &[("Cookie", &session)],
        None,
    );
    assert_eq!(by_cookie.status, 401);
    assert_eq!(login(&api, "tom", "a+long+passphrase+1").status, 401);
    let users = api.call("GET", "/api/v1/users", Some(&admin), None).json();
    let tom = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "tom")
        .unwrap()
        .clone();
    assert!(tom["disabled"].is_string());
    assert_eq!(
        api.call("POST", "/api/v1/users/ada/disable", Some(&admin), None)
            .status,
        409,
        "nobody disables themselves"
    );
    let out = api.cli(&["user", "enable", "tom"], None);
    assert!(out.status.success());
    assert_eq!(me(&new), 200);
    let out = api.cli(&["user", "tokens", "tom"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("revoked") && text.contains("active"),
        "{text}"
    );

    // All of it is in the audit trail.
    let auditor = api.user("audrey", "auditor");
    let trail = api.audit(&auditor, "since=1h");
    for want in ["token.issue", "token.revoke", "user.disable", "user.enable"] {
        assert!(
            trail
                .iter()
                .any(|e| e["action"] == want && e["detail"]["user"] == "tom"),
            "{want} missing"
        );
    }
}
