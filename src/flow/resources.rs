//! The resource map: how the ARNs, ids, names and `${PLACEHOLDERS}` of an exported flow find
//! Careline's flows, queues, prompts, hours and Lambda endpoints.
//!
//! Exports carry references from the account they came from
//! (`arn:aws:connect:${REGION}:${ACCT_ID}:instance/${INSTANCE_ID}/queue/${Q:sales:Q}`,
//! `<PATIENT_VERIFICATION_LAMBDA_ARN>`, a bare queue id). Resolution, in order:
//! 1. the whole reference in `[flows.resources]`;
//! 2. its id (last ARN path segment, or the function name of a Lambda ARN) in
//!    `[flows.resources]`;
//! 3. a Terraform-style `${F:name:F}` / `${Q:name:Q}` placeholder: the name inside;
//! 4. the id itself as a resource name.
//!
//! The result must name a resource of the expected kind, or the reference is unresolved.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::media::prompt::{Prompt, PromptLibrary};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Flow,
    Queue,
    Prompt,
    Hours,
    Lambda,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Flow => "flow",
            ResourceKind::Queue => "queue",
            ResourceKind::Prompt => "prompt",
            ResourceKind::Hours => "hours of operation",
            ResourceKind::Lambda => "Lambda function",
        }
    }

    /// Where an operator declares a resource of this kind.
    pub fn where_declared(self) -> &'static str {
        match self {
            ResourceKind::Flow => "a flow file in flows.dir (by its Name or file name)",
            ResourceKind::Queue => "a [queues.NAME] section",
            ResourceKind::Prompt => "a WAV file prompts/LANG/NAME.wav",
            ResourceKind::Hours => "an [hours.NAME] section",
            ResourceKind::Lambda => "a [lambda.NAME] section with its url",
        }
    }
}

/// Everything a reference may resolve to, by kind.
#[derive(Debug, Default)]
pub struct Resources {
    /// `[flows.resources]`: reference or id -> resource name.
    pub map: HashMap<String, String>,
    pub flows: HashSet<String>,
    pub queues: HashSet<String>,
    pub hours: HashSet<String>,
    pub lambdas: HashSet<String>,
    pub prompts: Option<Arc<PromptLibrary>>,
    /// Language of prompts named without one (`welcome` = `<language>/welcome`).
    pub prompt_language: String,
}

/// The id part of a reference: an ARN's last path segment (or a Lambda function name),
/// else the reference itself.
fn id_of(reference: &str) -> &str {
    if let Some(rest) = reference.strip_prefix("arn:") {
        if let Some((_, f)) = rest.split_once(":function:") {
            return f.split(':').next().unwrap_or(f);
        }
        return rest.rsplit('/').next().unwrap_or(rest);
    }
    reference
}

/// `${F:name:F}` -> `name` (the convention of Terraform-templated exports).
fn placeholder_name(id: &str) -> Option<&str> {
    let inner = id.strip_prefix("${")?.strip_suffix('}')?;
    let mut parts = inner.split(':');
    let (a, name, b) = (parts.next()?, parts.next()?, parts.next()?);
    (a == b && a.len() == 1 && parts.next().is_none()).then_some(name)
}

impl Resources {
    /// The resource name `reference` stands for, when it names an existing resource of `kind`.
    pub fn resolve(&self, kind: ResourceKind, reference: &str) -> Option<String> {
        let reference = reference.trim();
        let mut candidates: Vec<&str> = Vec::with_capacity(4);
        if let Some(m) = self.map.get(reference) {
            candidates.push(m);
        }
        let id = id_of(reference);
        if let Some(m) = self.map.get(id) {
            candidates.push(m);
        }
        if let Some(name) = placeholder_name(id) {
            candidates.push(name);
        }
        candidates.push(id);
        candidates
            .into_iter()
            .find_map(|c| self.exists(kind, c).then(|| self.canonical(kind, c)))
    }

    fn exists(&self, kind: ResourceKind, name: &str) -> bool {
        match kind {
            ResourceKind::Flow => self.flows.contains(name),
            ResourceKind::Queue => self.queues.contains(name),
            ResourceKind::Hours => self.hours.contains(name),
            ResourceKind::Lambda => self.lambdas.contains(name),
            ResourceKind::Prompt => self.prompt(name).is_some(),
        }
    }

    fn canonical(&self, kind: ResourceKind, name: &str) -> String {
        match kind {
            ResourceKind::Prompt => self
                .prompt(name)
                .map(|p| p.key())
                .unwrap_or_else(|| name.to_string()),
            _ => name.to_string(),
        }
    }

    /// A prompt by `lang/name`, `name` (in the default language), with or without `.wav`.
    pub fn prompt(&self, name: &str) -> Option<Arc<Prompt>> {
        let lib = self.prompts.as_ref()?;
        let name = name.strip_suffix(".wav").unwrap_or(name);
        match name.split_once('/') {
            Some((lang, n)) => lib.get(lang, n),
            None => lib.get(&self.prompt_language, name),
        }
    }

    /// Resolves a prompt reference to the prompt itself.
    pub fn resolve_prompt(&self, reference: &str) -> Option<Arc<Prompt>> {
        let key = self.resolve(ResourceKind::Prompt, reference)?;
        self.prompt(&key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources() -> Resources {
        let mut r = Resources::default();
        r.flows.insert("acme_queue_transfer_AUTO".into());
        r.queues.insert("sales".into());
        r.queues.insert("nurses".into());
        r.lambdas.insert("verify".into());
        r.lambdas.insert("acme-exampleFunction-use1".into());
        r.map
            .insert("<PATIENT_VERIFICATION_LAMBDA_ARN>".into(), "verify".into());
        r.map.insert("6f1c2a9e-queue-id".into(), "nurses".into());
        r
    }

    #[test]
    fn arns_ids_placeholders_and_names() {
        let r = resources();
        let flow = "arn:aws:connect:${REGION}:${ACCT_ID}:instance/${INSTANCE_ID}/contact-flow/${F:acme_queue_transfer_AUTO:F}";
        assert_eq!(
            r.resolve(ResourceKind::Flow, flow).as_deref(),
            Some("acme_queue_transfer_AUTO")
        );
        let q = "arn:aws:connect:${REGION}:${ACCT_ID}:instance/${INSTANCE_ID}/queue/${Q:sales:Q}";
        assert_eq!(r.resolve(ResourceKind::Queue, q).as_deref(), Some("sales"));
        assert_eq!(
            r.resolve(
                ResourceKind::Queue,
                "arn:aws:connect:us-east-1:1:instance/i/queue/6f1c2a9e-queue-id"
            )
            .as_deref(),
            Some("nurses")
        );
        assert_eq!(
            r.resolve(ResourceKind::Lambda, "<PATIENT_VERIFICATION_LAMBDA_ARN>")
                .as_deref(),
            Some("verify")
        );
        assert_eq!(
            r.resolve(
                ResourceKind::Lambda,
                "arn:aws:lambda:local:${ACCT_ID}:function:acme-exampleFunction-use1:PROD"
            )
            .as_deref(),
            Some("acme-exampleFunction-use1")
        );
        assert_eq!(
            r.resolve(ResourceKind::Queue, "nurses").as_deref(),
            Some("nurses")
        );
        assert_eq!(r.resolve(ResourceKind::Queue, "finance"), None);
        assert_eq!(
            r.resolve(ResourceKind::Flow, "sales"),
            None,
            "a queue is not a flow"
        );
    }
}
