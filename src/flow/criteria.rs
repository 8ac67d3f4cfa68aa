//! Routing criteria: which agents may take a contact, by their skills, in steps that widen
//! over time (Amazon Connect's "Set routing criteria", the flow action
//! `UpdateRoutingCriteria`).
//!
//! An agent has proficiencies: predefined attributes (a name and a value, such as
//! `Language: Japanese`) with a level from 1 to 5. A contact's criteria are steps, each an
//! expression over those (`Language: Japanese >= 4`, or several AND-ed or OR-ed), most with an
//! expiry: while a step is active, only agents who meet it are offered the contact; when it
//! expires the next step applies; when every step has expired the contact is any agent's in
//! its queue, as Connect does. A step without expiry holds for as long as the contact waits.
//!
//! The flow sets them (its `UpdateRoutingCriteria` action, checked at load), like the
//! contact's priority ([`super::queues::QueuePriority`]); routing (`routing::acd`) applies
//! them. Sans-IO and clock-free: routing asks [`RoutingCriteria::allows`] with how long the
//! contact has waited, and [`RoutingCriteria::next_expiry`] when to look again.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

/// An agent's proficiencies: (attribute name, value) to level (1 to 5).
pub type Proficiencies = BTreeMap<(String, String), u8>;

/// The most steps, and conditions in one expression, a contact's criteria may have.
const MAX_STEPS: usize = 10;
const MAX_CONDITIONS: usize = 16;

/// A contact's criteria. See the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingCriteria {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
struct Step {
    expr: Expr,
    /// None: the step does not expire.
    expiry: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    /// The agent has `name: value` at `level` or above.
    Condition {
        name: String,
        value: String,
        level: u8,
    },
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    fn holds(&self, agent: &Proficiencies) -> bool {
        match self {
            // A scan of the agent's few skills: no key built (this runs for every agent and
            // waiting contact each time routing looks).
            Expr::Condition { name, value, level } => agent
                .iter()
                .any(|((n, v), l)| n == name && v == value && l >= level),
            Expr::And(all) => all.iter().all(|e| e.holds(agent)),
            Expr::Or(any) => any.iter().any(|e| e.holds(agent)),
        }
    }
}

impl RoutingCriteria {
    /// Connect's `RoutingCriteria` object (`{"Steps": [{"Expression": {...}, "Expiry":
    /// {"DurationInSeconds": 30}}]}`); the error says what is wrong, and where.
    pub fn from_json(v: &Value) -> Result<RoutingCriteria, String> {
        let steps = v
            .get("Steps")
            .and_then(Value::as_array)
            .ok_or("`Steps` is missing or not a list")?;
        if steps.is_empty() || steps.len() > MAX_STEPS {
            return Err(format!("`Steps` must have 1 to {MAX_STEPS} steps"));
        }
        let steps = steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let expr = s
                    .get("Expression")
                    .ok_or_else(|| format!("Steps[{i}]: `Expression` is missing"))
                    .and_then(|e| expression(e, 0).map_err(|e| format!("Steps[{i}]: {e}")))?;
                let expiry = match s.get("Expiry") {
                    None | Some(Value::Null) => None,
                    Some(e) => {
                        let secs =
                            e.get("DurationInSeconds").and_then(number).ok_or_else(|| {
                                format!(
                                    "Steps[{i}].Expiry.DurationInSeconds must be a whole number of \
                                 seconds from 1"
                                )
                            })?;
                        if secs < 1.0 || secs.fract() != 0.0 || secs > 86_400.0 {
                            return Err(format!(
                                "Steps[{i}].Expiry.DurationInSeconds must be a whole number of \
                                 seconds from 1 to 86400"
                            ));
                        }
                        Some(Duration::from_secs(secs as u64))
                    }
                };
                Ok(Step { expr, expiry })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(RoutingCriteria { steps })
    }

    /// The step in force after the contact has waited `waited` (None: every step expired).
    fn step(&self, waited: Duration) -> Option<&Step> {
        let mut from = Duration::ZERO;
        for step in &self.steps {
            match step.expiry {
                None => return Some(step),
                Some(d) => {
                    from += d;
                    if waited < from {
                        return Some(step);
                    }
                }
            }
        }
        None
    }

    /// Whether an agent with `agent`'s proficiencies may be offered a contact that has waited
    /// `waited` (every step expired: anyone may).
    pub fn allows(&self, agent: &Proficiencies, waited: Duration) -> bool {
        self.step(waited).is_none_or(|s| s.expr.holds(agent))
    }

    /// When (counted from the contact's arrival) the step in force after `waited` expires:
    /// routing looks again then, for the agents the next step lets in.
    pub fn next_expiry(&self, waited: Duration) -> Option<Duration> {
        let mut from = Duration::ZERO;
        for step in &self.steps {
            from += step.expiry?;
            if waited < from {
                return Some(from);
            }
        }
        None
    }
}

/// A number, or a string holding one (flow exports write both).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn expression(v: &Value, depth: usize) -> Result<Expr, String> {
    if depth > 3 {
        return Err("expressions nest at most three deep".into());
    }
    let obj = v.as_object().ok_or("an expression is an object")?;
    let (kind, inner) = match (obj.len(), obj.iter().next()) {
        (1, Some(kv)) => kv,
        _ => {
            return Err(
                "an expression has one of `AttributeCondition`, `AndExpression`, `OrExpression`"
                    .into(),
            );
        }
    };
    match kind.as_str() {
        "AttributeCondition" => condition(inner),
        "AndExpression" | "OrExpression" => {
            let list = inner
                .as_array()
                .filter(|l| !l.is_empty() && l.len() <= MAX_CONDITIONS)
                .ok_or_else(|| format!("`{kind}` must list 1 to {MAX_CONDITIONS} expressions"))?;
            let exprs = list
                .iter()
                .map(|e| expression(e, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if kind == "AndExpression" {
                Expr::And(exprs)
            } else {
                Expr::Or(exprs)
            })
        }
        other => Err(format!(
            "`{other}` is not supported: an expression is an `AttributeCondition`, an \
             `AndExpression` or an `OrExpression`"
        )),
    }
}

fn condition(v: &Value) -> Result<Expr, String> {
    let text = |key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 64)
            .map(str::to_string)
            .ok_or_else(|| format!("AttributeCondition.{key} must be text of 1 to 64 characters"))
    };
    let (name, value) = (text("Name")?, text("Value")?);
    if v.get("MatchCriteria").is_some() || v.get("Range").is_some() {
        return Err(
            "AttributeCondition: `MatchCriteria` and `Range` are not supported; name an \
             attribute, a value and a ProficiencyLevel"
                .into(),
        );
    }
    let op = v
        .get("ComparisonOperator")
        .and_then(Value::as_str)
        .unwrap_or("NumberGreaterOrEqualTo");
    if op != "NumberGreaterOrEqualTo" {
        return Err(format!(
            "AttributeCondition.ComparisonOperator `{op}`: only NumberGreaterOrEqualTo"
        ));
    }
    let level = v
        .get("ProficiencyLevel")
        .and_then(number)
        .filter(|l| (1.0..=5.0).contains(l) && l.fract() == 0.0)
        .ok_or("AttributeCondition.ProficiencyLevel must be 1.0, 2.0, 3.0, 4.0 or 5.0")?;
    Ok(Expr::Condition {
        name,
        value,
        level: level as u8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn skills(list: &[(&str, &str, u8)]) -> Proficiencies {
        list.iter()
            .map(|(n, v, l)| ((n.to_string(), v.to_string()), *l))
            .collect()
    }

    fn japanese(level: u8, expiry: Option<u64>) -> Value {
        let mut step = json!({"Expression": {"AttributeCondition": {
            "Name": "Language", "Value": "Japanese", "ProficiencyLevel": level,
            "ComparisonOperator": "NumberGreaterOrEqualTo"}}});
        if let Some(s) = expiry {
            step["Expiry"] = json!({"DurationInSeconds": s});
        }
        step
    }

    /// Steps widen: a fluent speaker only for 30 s, then any Japanese speaker for 60 s more,
    /// then anyone; `next_expiry` says when each step ends.
    #[test]
    fn steps_widen_as_they_expire_and_then_anyone_may_take_the_contact() {
        let c = RoutingCriteria::from_json(
            &json!({"Steps": [japanese(5, Some(30)), japanese(2, Some(60))]}),
        )
        .unwrap();
        let fluent = skills(&[("Language", "Japanese", 5)]);
        let some = skills(&[("Language", "Japanese", 3), ("Language", "English", 5)]);
        let none = skills(&[("Language", "English", 5)]);
        let s = Duration::from_secs;
        assert!(c.allows(&fluent, s(0)));
        assert!(!c.allows(&some, s(29)));
        assert!(c.allows(&some, s(30)), "the second step lets level 3 in");
        assert!(!c.allows(&none, s(89)));
        assert!(c.allows(&none, s(90)), "every step expired: anyone");
        assert_eq!(c.next_expiry(s(0)), Some(s(30)));
        assert_eq!(c.next_expiry(s(45)), Some(s(90)));
        assert_eq!(c.next_expiry(s(90)), None);

        // A step without expiry holds for good.
        let c = RoutingCriteria::from_json(&json!({"Steps": [japanese(4, None)]})).unwrap();
        assert!(!c.allows(&none, s(100_000)));
        assert_eq!(c.next_expiry(s(0)), None);
    }

    #[test]
    fn and_and_or_expressions_combine_conditions() {
        let c = RoutingCriteria::from_json(&json!({"Steps": [{"Expression": {"AndExpression": [
            {"AttributeCondition": {"Name": "Language", "Value": "Japanese",
                "ProficiencyLevel": "3.0", "ComparisonOperator": "NumberGreaterOrEqualTo"}},
            {"OrExpression": [
                {"AttributeCondition": {"Name": "Skill", "Value": "Triage", "ProficiencyLevel": 2}},
                {"AttributeCondition": {"Name": "Skill", "Value": "Oncology", "ProficiencyLevel": 4}}
            ]}
        ]}}]}))
        .unwrap();
        let s = Duration::ZERO;
        let triage = skills(&[("Language", "Japanese", 3), ("Skill", "Triage", 2)]);
        let oncology_low = skills(&[("Language", "Japanese", 5), ("Skill", "Oncology", 3)]);
        let english = skills(&[("Language", "English", 5), ("Skill", "Triage", 5)]);
        assert!(c.allows(&triage, s));
        assert!(!c.allows(&oncology_low, s));
        assert!(!c.allows(&english, s));
    }

    #[test]
    fn bad_criteria_are_refused_with_the_reason() {
        let err = |v: Value| RoutingCriteria::from_json(&v).unwrap_err();
        assert!(err(json!({})).contains("Steps"));
        assert!(err(json!({"Steps": []})).contains("1 to"));
        let mut bad = japanese(6, None);
        assert!(err(json!({"Steps": [bad.clone()]})).contains("ProficiencyLevel"));
        bad["Expression"]["AttributeCondition"]["ProficiencyLevel"] = json!(3);
        bad["Expression"]["AttributeCondition"]["ComparisonOperator"] = json!("NumberLessThan");
        assert!(err(json!({"Steps": [bad]})).contains("NumberGreaterOrEqualTo"));
        let e = err(json!({"Steps": [japanese(3, Some(0))]}));
        assert!(e.contains("Steps[0].Expiry"), "{e}");
        let e = err(json!({"Steps": [{"Expression": {"NotAttributeCondition": {}}}]}));
        assert!(e.contains("NotAttributeCondition"), "{e}");
        let e = err(json!({"Steps": [{"Expression": {"AttributeCondition": {
            "Name": "Language", "Value": "Japanese", "ProficiencyLevel": 3,
            "MatchCriteria": {"AgentsCriteria": {"AgentIds": ["x"]}}}}}]}));
        assert!(e.contains("MatchCriteria"), "{e}");
    }
}
