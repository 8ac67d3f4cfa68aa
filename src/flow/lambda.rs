//! InvokeLambdaFunction over HTTP: each function maps to a URL (`[lambda.NAME] url = ...`);
//! Careline POSTs Connect's Lambda event JSON and hands the answer to the interpreter. A
//! timeout, a non-2xx status or a body that is not JSON becomes the error branch, as a
//! failed Lambda does in Connect.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::HttpClient;
use super::interpreter::MAX_LAMBDA_RESPONSE;

/// The built-in function that identifies the caller in the patient store, usable wherever a
/// flow names a Lambda (directly, or through `[flows.resources]`). Parameters `phone` (the
/// caller's own number when absent), or `mrn` and `dob`; it answers `patient_found`,
/// `patient_id`, `preferred_language`, `verified` and `lookup_result`, never names or
/// clinical data. The call task answers it, not HTTP.
pub(crate) const PATIENT_LOOKUP: &str = "careline:patient-lookup";

/// The built-in function that takes a phone caller into a telehealth room by the visit PIN
/// their invitation gave them (parameter `pin`): on a good PIN the caller goes into the
/// visit (its waiting room first) and the flow ends there, as a transfer ends it; otherwise
/// it answers `room_joined` = `false` and `reason` (`unknown`, `expired`, `over`) and the
/// flow goes on. The call task answers it, not HTTP (see `call::room_door`).
pub const ROOM_JOIN: &str = "careline:room-join";

/// `[lambda.NAME]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaConfig {
    /// Where the function's code now answers (http or https).
    pub url: String,
}

#[derive(Debug, Clone)]
pub struct Lambdas {
    urls: HashMap<String, String>,
    client: HttpClient,
}

impl Lambdas {
    pub fn new(configs: &BTreeMap<String, LambdaConfig>, client: HttpClient) -> Lambdas {
        Lambdas {
            urls: configs
                .iter()
                .map(|(n, c)| (n.clone(), c.url.clone()))
                .collect(),
            client,
        }
    }

    /// Whether `function` has a `[lambda.NAME] url`.
    pub fn has(&self, function: &str) -> bool {
        self.urls.contains_key(function)
    }

    /// Calls `function` with `event`; Ok is the response JSON, Err why it failed (for logs;
    /// never the payload, which may hold PHI).
    pub async fn invoke(
        &self,
        function: &str,
        event: &Value,
        timeout: Duration,
    ) -> Result<Value, String> {
        let url = self
            .urls
            .get(function)
            .ok_or_else(|| format!("no [lambda.{function}] url configured"))?;
        let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
        let resp = self
            .client
            .post_json(url, body, timeout, MAX_LAMBDA_RESPONSE)
            .await
            .map_err(|e| e.to_string())?;
        if !(200..300).contains(&resp.status) {
            return Err(format!("HTTP status {}", resp.status));
        }
        serde_json::from_slice(&resp.body).map_err(|e| format!("response is not JSON: {e}"))
    }

    /// Calls `function` for a workflow Task: the task input is the body and `key` goes in
    /// the `Idempotency-Key` header (the same for every delivery of one invocation, so a
    /// function can do its work once). Errors are named as Step Functions names them: a
    /// timeout `States.Timeout`; a function's own error (a non-2xx answer with Lambda's
    /// `{"errorType", "errorMessage"}`) its `errorType`, so a Catch can match it; anything
    /// else `Lambda.Unknown`.
    pub async fn invoke_task(
        &self,
        function: &str,
        input: &Value,
        key: &str,
        timeout: Duration,
    ) -> Result<Value, TaskError> {
        let unknown = |cause: String| TaskError {
            error: "Lambda.Unknown".into(),
            cause,
        };
        let url = self
            .urls
            .get(function)
            .ok_or_else(|| unknown(format!("no [lambda.{function}] url configured")))?;
        let body = serde_json::to_vec(input).map_err(|e| unknown(e.to_string()))?;
        let resp = self
            .client
            .post_json_with(
                url,
                body,
                &[("idempotency-key", &header_key(key))],
                timeout,
                MAX_LAMBDA_RESPONSE,
            )
            .await
            .map_err(|e| match e {
                super::http::HttpError::Timeout(_) => TaskError {
                    error: "States.Timeout".into(),
                    cause: format!("{function} did not answer within {} s", timeout.as_secs()),
                },
                other => unknown(other.to_string()),
            })?;
        if !(200..300).contains(&resp.status) {
            let named = serde_json::from_slice::<Value>(&resp.body)
                .ok()
                .and_then(|v| {
                    let error = v.get("errorType")?.as_str()?.to_string();
                    let cause = v
                        .get("errorMessage")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    Some(TaskError { error, cause })
                });
            return Err(named.unwrap_or_else(|| unknown(format!("HTTP status {}", resp.status))));
        }
        serde_json::from_slice(&resp.body)
            .map_err(|e| unknown(format!("response is not JSON: {e}")))
    }
}

/// An idempotency key as a header value: UTF-8 percent-encoded where it is not visible ASCII
/// (a state named in Japanese; `%` itself), so every function reads it as text, and the same
/// key gives the same header on every delivery. A key in visible ASCII goes as it is.
fn header_key(key: &str) -> String {
    const ENCODED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b' ').add(b'%');
    percent_encoding::utf8_percent_encode(key, ENCODED).to_string()
}

/// A workflow Task's failure: the error name a Retry or Catch matches, and the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    pub error: String,
    pub cause: String,
}

#[cfg(test)]
mod tests {
    use super::header_key;

    #[test]
    fn an_idempotency_key_is_visible_ascii_in_its_header() {
        assert_eq!(header_key("exec-1/First/1"), "exec-1/First/1");
        assert_eq!(
            header_key("exec-1/Each#1[2]/Call/1"),
            "exec-1/Each#1[2]/Call/1"
        );
        let encoded = header_key("e/初日の電話 50%/1");
        assert!(encoded.is_ascii() && !encoded.contains(' '), "{encoded}");
        assert_eq!(
            percent_encoding::percent_decode_str(&encoded).decode_utf8_lossy(),
            "e/初日の電話 50%/1",
            "it decodes back to the key"
        );
    }
}
