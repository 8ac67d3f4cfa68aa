//! A contact's data as flows see it (`$.Attributes`, `$.External`, `$.StoredCustomerInput`,
//! `$.FlowAttributes`, endpoints, queue, ...), and the Lambda event built from it.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::template::{Path, Root, Template};

/// Per-call state a flow reads and writes.
#[derive(Debug, Clone, Default)]
pub struct ContactData {
    pub contact_id: Arc<str>,
    /// The caller's number (never logged).
    pub customer_address: String,
    /// The number dialed.
    pub system_address: String,
    pub attributes: HashMap<String, String>,
    /// The last Lambda result.
    pub external: Map<String, Value>,
    pub stored_input: Option<String>,
    pub queue: Option<Arc<str>>,
    pub language: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    /// Careline placed the call (`$.InitiationMethod` is `OUTBOUND`, else `INBOUND`).
    pub outbound: bool,
    /// How urgent the contact is in a queue (UpdateContactRoutingBehavior).
    pub priority: super::queues::QueuePriority,
    /// What the last GetMetricData read, as `$.Metrics` shows it.
    pub metrics: Map<String, Value>,
    /// The queue the last GetMetricData asked about.
    pub queue_of_metrics: String,
    /// The number a queued callback calls (UpdateContactCallbackNumber), when it is not the
    /// caller's own; already checked as dialable. Never logged.
    pub callback_number: Option<String>,
}

impl ContactData {
    /// `$.InitiationMethod` as Amazon Connect names it.
    pub fn initiation_method(&self) -> &'static str {
        if self.outbound { "OUTBOUND" } else { "INBOUND" }
    }

    /// The number a queued callback calls (`$.CustomerCallbackNumber`): the one the flow set,
    /// else the caller's own.
    pub fn callback_number(&self) -> &str {
        self.callback_number
            .as_deref()
            .unwrap_or(&self.customer_address)
    }
}

/// The number as it is dialed, or `None` if it is not a phone number: digits, optionally a
/// leading `+`; spaces, dashes, dots and parentheses are dropped; 1 to 32 digits.
pub fn dialable(raw: &str) -> Option<String> {
    let mut out = String::new();
    for (i, c) in raw.trim().chars().enumerate() {
        match c {
            '+' if i == 0 => out.push(c),
            '0'..='9' => out.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    let digits = out.trim_start_matches('+').len();
    (1..=32).contains(&digits).then_some(out)
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

impl ContactData {
    /// The value of a reference; `flow_attributes` belongs to the running flow.
    pub fn lookup(&self, p: &Path, flow_attributes: &HashMap<String, String>) -> Option<String> {
        let first = p.keys.first().map(|k| &**k);
        match &p.root {
            Root::Attributes => self.attributes.get(first?).cloned(),
            Root::FlowAttributes => flow_attributes.get(first?).cloned(),
            Root::External => {
                let mut v = self.external.get(first?)?;
                for k in p.keys.iter().skip(1) {
                    v = v.get(&**k)?;
                }
                value_text(v)
            }
            Root::StoredCustomerInput => self.stored_input.clone(),
            Root::CustomerEndpoint => match first {
                Some("Address") => Some(self.customer_address.clone()),
                Some("Type") => Some("TELEPHONE_NUMBER".into()),
                _ => None,
            },
            Root::SystemEndpoint => match first {
                Some("Address") => Some(self.system_address.clone()),
                Some("Type") => Some("TELEPHONE_NUMBER".into()),
                _ => None,
            },
            Root::Queue => {
                let q = self.queue.as_ref()?;
                match first {
                    Some("Name") | Some("ARN") | Some("Id") => Some(q.to_string()),
                    _ => None,
                }
            }
            Root::ContactId | Root::InitialContactId => Some(self.contact_id.to_string()),
            Root::PreviousContactId => None,
            Root::Channel => Some("VOICE".into()),
            Root::InitiationMethod => Some(self.initiation_method().into()),
            Root::LanguageCode => self.language.clone(),
            Root::AwsRegion => Some("local".into()),
            Root::Name => self.name.clone(),
            Root::Description => self.description.clone(),
            Root::Metrics => {
                let mut v = self.metrics.get(first?)?;
                for k in p.keys.iter().skip(1) {
                    v = v.get(&**k)?;
                }
                value_text(v)
            }
            Root::CustomerCallbackNumber => Some(self.callback_number().to_string()),
            Root::Lex | Root::Unknown(_) => None,
        }
    }

    pub fn render<'a>(
        &self,
        t: &'a Template,
        flow_attributes: &HashMap<String, String>,
    ) -> std::borrow::Cow<'a, str> {
        t.render(|p| self.lookup(p, flow_attributes))
    }

    /// Connect's Lambda event: `{"Details": {"ContactData": ..., "Parameters": ...},
    /// "Name": "ContactFlowEvent"}`, so functions ported from Lambda read what they always read.
    pub fn lambda_event(&self, parameters: Map<String, Value>) -> Value {
        let queue = match &self.queue {
            Some(q) => json!({"Name": &**q, "ARN": &**q}),
            None => Value::Null,
        };
        json!({
            "Details": {
                "ContactData": {
                    "Attributes": self.attributes,
                    "Channel": "VOICE",
                    "ContactId": &*self.contact_id,
                    "CustomerEndpoint": {"Address": self.customer_address, "Type": "TELEPHONE_NUMBER"},
                    "InitialContactId": &*self.contact_id,
                    "InitiationMethod": self.initiation_method(),
                    "InstanceARN": "careline",
                    "LanguageCode": self.language,
                    "PreviousContactId": &*self.contact_id,
                    "Queue": queue,
                    "SystemEndpoint": {"Address": self.system_address, "Type": "TELEPHONE_NUMBER"},
                },
                "Parameters": parameters,
            },
            "Name": "ContactFlowEvent",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_namespace_resolves() {
        let mut c = ContactData {
            contact_id: "c-1".into(),
            customer_address: "+15551230000".into(),
            system_address: "100".into(),
            stored_input: Some("42".into()),
            queue: Some("nurses".into()),
            ..Default::default()
        };
        c.attributes.insert("lang".into(), "ja".into());
        c.external = serde_json::from_str(r#"{"name":"Ann","visit":{"room":7}}"#).unwrap();
        let mut fa = HashMap::new();
        fa.insert("k".to_string(), "v".to_string());
        let t = Template::parse(
            "$.Attributes.lang $.External.name $.External.visit.room $.StoredCustomerInput \
             $.FlowAttributes.k $.CustomerEndpoint.Address $.SystemEndpoint.Address \
             $.Queue.Name $.Channel $.Attributes.missing|",
        );
        assert_eq!(
            c.render(&t, &fa),
            "ja Ann 7 42 v +15551230000 100 nurses VOICE |"
        );
        let ev = c.lambda_event(Map::new());
        assert_eq!(ev["Name"], "ContactFlowEvent");
        assert_eq!(
            ev["Details"]["ContactData"]["CustomerEndpoint"]["Address"],
            "+15551230000"
        );
        assert_eq!(ev["Details"]["ContactData"]["Attributes"]["lang"], "ja");
    }

    #[test]
    fn a_call_careline_placed_is_outbound_to_flows_and_lambdas() {
        let t = Template::parse("$.InitiationMethod");
        let mut c = ContactData::default();
        assert_eq!(c.render(&t, &HashMap::new()), "INBOUND");
        c.outbound = true;
        assert_eq!(c.render(&t, &HashMap::new()), "OUTBOUND");
        let ev = c.lambda_event(Map::new());
        assert_eq!(ev["Details"]["ContactData"]["InitiationMethod"], "OUTBOUND");
    }
}
