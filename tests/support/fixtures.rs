//! Test inputs: the repository's own (always there, so a bare clone runs every test), and the
//! third-party conformance corpora (Synthea FHIR, Connect exports, SIPp scenarios), which run
//! as an extra suite wherever they are found.

use std::path::PathBuf;

use super::server::{CONFORMANCE_ENV, repo_root};

/// The repository's FHIR bundles (`tests/fixtures/fhir`), in name order: four fictional
/// patients, each with an allergy, a condition, a medication and a care plan.
pub fn fhir_bundles() -> Vec<PathBuf> {
    let dir = repo_root().join("tests/fixtures/fhir");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("fixture folder entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    assert!(v.len() >= 4, "fixtures missing in {}", dir.display());
    v
}

/// A folder of the conformance corpora (`fhir`, `connect-flows`, `sipp`, `asl`): under
/// `CARELINE_CONFORMANCE_DIR`, else the workspace's `../shared/conformance`. `None`, with one
/// line saying where to point it, when it is not there (a bare clone): the caller skips.
pub fn conformance(sub: &str) -> Option<PathBuf> {
    let root = std::env::var_os(CONFORMANCE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/conformance"));
    let dir = root.join(sub);
    if dir.is_dir() {
        return Some(dir);
    }
    eprintln!(
        "conformance suite skipped: {} not found (set {CONFORMANCE_ENV} to the conformance folder)",
        dir.display()
    );
    None
}

/// `*.json` in a conformance folder, in name order (empty when the folder is absent).
pub fn conformance_json(sub: &str) -> Vec<PathBuf> {
    let Some(dir) = conformance(sub) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("conformance folder entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

/// A contact flow that holds the line (one long input wait, every outcome back to it): calls
/// stay live until the caller goes.
pub const HOLD_FLOW: &str = r#"{"Version": "2019-10-30", "StartAction": "hold", "Actions": [
  {"Identifier": "hold", "Type": "GetParticipantInput",
   "Parameters": {"PromptId": "welcome", "InputTimeLimitSeconds": "3600", "StoreInput": "False"},
   "Transitions": {"NextAction": "hold", "Conditions": [], "Errors": [
     {"NextAction": "hold", "ErrorType": "InputTimeLimitExceeded"},
     {"NextAction": "hold", "ErrorType": "NoMatchingCondition"},
     {"NextAction": "hold", "ErrorType": "NoMatchingError"}]}}]}"#;
