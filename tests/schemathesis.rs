//! Schemathesis (PyPI) against the server's own OpenAPI document, with every check but one
//! (`tests/schemathesis/schemathesis.toml` says which and why), bounded examples and a fixed
//! seed: as an admin, and with no credentials (`tests/schemathesis/hooks.py` sends SDP bodies
//! as text). Passes only with no server error, no status
//! code or content type the document does not list, and no response that breaks its schema.
//! `scripts/test` installs Schemathesis; without it this test fails saying so.

mod support;

use std::process::Command;

use support::server::TestServer;

fn schemathesis(server: &TestServer, headers: &[String], exclude: &[&str]) -> (bool, String) {
    let config = support::server::repo_root().join("tests/schemathesis/schemathesis.toml");
    let base = format!("http://{}", server.http);
    // Schemathesis keeps a cache in its working directory: a throwaway one, not the repository.
    let scratch = tempfile::tempdir().unwrap();
    let hooks = support::server::repo_root().join("tests/schemathesis/hooks.py");
    let mut cmd = Command::new("schemathesis");
    cmd.current_dir(scratch.path())
        .env("SCHEMATHESIS_HOOKS", &hooks)
        .arg("--config-file")
        .arg(&config)
        .args([
            "run",
            &format!("{base}/api/v1/openapi.json"),
            "--url",
            &base,
        ])
        .args(["--seed", "20261206", "--no-color"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    for path in exclude {
        cmd.args(["--exclude-path", path]);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run schemathesis ({e}): `pip install schemathesis` (scripts/test does)")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_api_keeps_to_its_openapi_document_under_schemathesis() {
    let server = TestServer::start();
    let out = server.cli(&["user", "add", "ada", "--role", "admin"]);
    assert!(out.status.success());
    let token = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("clt_"))
        .unwrap()
        .to_string();
    // Patients to find, from the conformance set (`CARELINE_CONFORMANCE_DIR`, else the
    // workspace's ../shared/conformance). A bare clone has none: the run then covers the same
    // operations, with the patient ones answering 404 and 403, which it checks as well.
    let conformance = std::env::var_os(support::server::CONFORMANCE_ENV)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| support::server::repo_root().join("../shared/conformance"));
    let bundles: Vec<String> = std::fs::read_dir(conformance.join("fhir"))
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".json"))
        .collect();
    if !bundles.is_empty() {
        let mut args = vec!["patient", "import"];
        args.extend(bundles.iter().map(String::as_str));
        assert!(server.cli(&args).status.success());
    }

    // As an admin. Revoking tokens and disabling users would end the run's own access (the
    // access tests cover both).
    let (ok, text) = schemathesis(
        &server,
        &[format!("Authorization: Bearer {token}")],
        &["/api/v1/tokens/{id}", "/api/v1/users/{name}/disable"],
    );
    assert!(ok, "schemathesis as admin:\n{text}");
    // With no credentials: every guarded operation must answer 401, as documented.
    let (ok, text) = schemathesis(&server, &[], &[]);
    assert!(ok, "schemathesis without credentials:\n{text}");
    assert!(
        !server.log().contains("panicked"),
        "the server panicked under schemathesis"
    );
}
