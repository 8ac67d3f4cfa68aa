//! The flow document as Connect exports it (serde), before any checking.
//!
//! Parameters stay as JSON values here: each action type has its own parameter shape, and
//! [`super::program`] reads them with errors that name the action, rather than one serde error
//! that stops at the first bad field of the whole file.

use serde::Deserialize;
use serde_json::Value;

/// The flow language versions Careline reads: what Connect exports today, and the product
/// brief's older spelling.
pub(crate) const VERSIONS: [&str; 2] = ["2019-10-30", "2019-07-01"];

/// Connect's limit on actions in one flow.
pub(crate) const MAX_ACTIONS: usize = 250;

/// The DescribeContactFlow / Terraform shape: the flow document is a JSON string in `Content`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Wrapper {
    pub name: Option<String>,
    #[serde(rename = "Type")]
    pub flow_type: Option<String>,
    /// The flow document as a JSON string (DescribeContactFlow's shape) or, as some export
    /// tools write it, the document itself.
    pub content: serde_json::Value,
}

/// The bare flow document.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Document {
    pub version: Option<String>,
    pub start_action: Option<String>,
    #[serde(default)]
    pub actions: Option<Vec<Value>>,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub settings: Option<Value>,
}

/// One action, read from its JSON value.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawAction {
    pub identifier: String,
    #[serde(rename = "Type")]
    pub action_type: String,
    #[serde(default)]
    pub parameters: Value,
    #[serde(default)]
    pub transitions: RawTransitions,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawTransitions {
    pub next_action: Option<String>,
    #[serde(default)]
    pub conditions: Vec<RawConditionBranch>,
    #[serde(default)]
    pub errors: Vec<RawErrorBranch>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawConditionBranch {
    pub next_action: Option<String>,
    pub condition: RawCondition,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawCondition {
    pub operator: String,
    #[serde(default)]
    pub operands: Vec<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawErrorBranch {
    pub next_action: Option<String>,
    pub error_type: String,
}

/// A JSON value as the flow language treats it: strings as they are, numbers and booleans
/// in their JSON spelling (exports write `"MaxDigits": 1` and `"LoopCount": "3"` alike).
pub(crate) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "True".into() } else { "False".into() }),
        _ => None,
    }
}
