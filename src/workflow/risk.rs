//! The built-in RiskAssessment task (`careline:risk-assessment`), sans-IO: rules over the
//! patient's reported vitals and symptoms give `risk_level` (HIGH, MEDIUM, LOW) and
//! `risk_reason`, which the brief's workflow reads. The rules are a file operators can
//! replace (`risk-rules.toml`, shipped, sources cited there), as the clinical alerts are.

use serde::Deserialize;
use serde_json::{Value, json};

const SHIPPED: &str = include_str!("risk-rules.toml");

/// The built-in task's resource name, as `[workflows.tasks]` maps a function to it.
pub const RISK_ASSESSMENT: &str = "careline:risk-assessment";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Level {
    #[serde(rename = "LOW")]
    Low,
    #[serde(rename = "MEDIUM")]
    Medium,
    #[serde(rename = "HIGH")]
    High,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Low => "LOW",
            Level::Medium => "MEDIUM",
            Level::High => "HIGH",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    level: Level,
    reason: String,
    vital: Option<String>,
    above: Option<f64>,
    at_least: Option<f64>,
    below: Option<f64>,
    at_most: Option<f64>,
    #[serde(default)]
    symptoms: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rule: Vec<Rule>,
}

#[derive(Debug, thiserror::Error)]
#[error("risk rules {origin}: {why}")]
pub struct RulesError {
    pub origin: String,
    pub why: String,
}

/// The vitals a rule can name.
const VITALS: [&str; 6] = [
    "systolic",
    "diastolic",
    "heart_rate",
    "respiratory_rate",
    "spo2",
    "temperature",
];

#[derive(Debug, Clone)]
pub struct RiskRules {
    rules: Vec<Rule>,
}

impl RiskRules {
    pub fn shipped() -> RiskRules {
        RiskRules::parse(SHIPPED, "(built in)")
            .expect("the shipped risk-rules.toml loads (unit-tested)")
    }

    /// The operator's file instead of the shipped rules, or the shipped ones.
    pub fn load(path: Option<&std::path::Path>) -> Result<RiskRules, RulesError> {
        match path {
            None => Ok(RiskRules::shipped()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| RulesError {
                    origin: p.display().to_string(),
                    why: e.to_string(),
                })?;
                RiskRules::parse(&text, &p.display().to_string())
            }
        }
    }

    /// Parses and checks the rules: each names a known vital with one threshold, or symptoms.
    pub fn parse(text: &str, origin: &str) -> Result<RiskRules, RulesError> {
        let err = |why: String| RulesError {
            origin: origin.to_string(),
            why,
        };
        let file: File = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        for (i, r) in file.rule.iter().enumerate() {
            let n = i + 1;
            let thresholds = [r.above, r.at_least, r.below, r.at_most]
                .iter()
                .filter(|t| t.is_some())
                .count();
            match (&r.vital, r.symptoms.is_empty()) {
                (Some(v), true) => {
                    if !VITALS.contains(&v.as_str()) {
                        return Err(err(format!(
                            "rule {n} (`{}`): vital `{v}` is not one of {}",
                            r.reason,
                            VITALS.join(", ")
                        )));
                    }
                    if thresholds != 1 {
                        return Err(err(format!(
                            "rule {n} (`{}`): a vital rule has exactly one of above, at_least, below, at_most",
                            r.reason
                        )));
                    }
                }
                (None, false) if thresholds == 0 => {}
                _ => {
                    return Err(err(format!(
                        "rule {n} (`{}`): give either a vital with a threshold or symptoms",
                        r.reason
                    )));
                }
            }
            if r.level == Level::Low {
                return Err(err(format!(
                    "rule {n} (`{}`): LOW is what no matching rule gives; use HIGH or MEDIUM",
                    r.reason
                )));
            }
        }
        Ok(RiskRules { rules: file.rule })
    }

    /// The task: `input` with `risk_level` and `risk_reason` added (the brief's workflow
    /// passes the whole result on to the risk Choice and the physician notification).
    pub fn assess(&self, input: &Value) -> Value {
        let vitals = input.get("vitals").cloned().unwrap_or(Value::Null);
        // The brief's workflow passes them as `symptoms`; the discharge input calls them
        // `reported_symptoms`.
        let symptoms: Vec<String> = input
            .get("symptoms")
            .or_else(|| input.get("reported_symptoms"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_lowercase)
            .collect();
        let mut level = Level::Low;
        let mut reasons: Vec<&str> = Vec::new();
        for r in &self.rules {
            let hit = match &r.vital {
                Some(v) => vital(&vitals, v).is_some_and(|x| {
                    r.above.is_some_and(|t| x > t)
                        || r.at_least.is_some_and(|t| x >= t)
                        || r.below.is_some_and(|t| x < t)
                        || r.at_most.is_some_and(|t| x <= t)
                }),
                None => r.symptoms.iter().any(|s| {
                    let s = s.to_lowercase();
                    symptoms.iter().any(|reported| reported.contains(&s))
                }),
            };
            if !hit {
                continue;
            }
            if r.level > level {
                level = r.level;
                reasons.clear();
            }
            if r.level == level {
                reasons.push(&r.reason);
            }
        }
        let reason = if reasons.is_empty() {
            "no risk rule matched".to_string()
        } else {
            reasons.join("; ")
        };
        let mut out = match input {
            Value::Object(_) => input.clone(),
            _ => json!({}),
        };
        out["risk_level"] = json!(level.as_str());
        out["risk_reason"] = json!(reason);
        out
    }
}

/// A vital from the reported vitals: a number or numeric text under its name (or a common
/// alias); systolic and diastolic also from `bp` written "182/95".
fn vital(vitals: &Value, name: &str) -> Option<f64> {
    let number = |v: &Value| {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    };
    let aliases: &[&str] = match name {
        "heart_rate" => &["heart_rate", "hr", "pulse"],
        "respiratory_rate" => &["respiratory_rate", "rr"],
        "temperature" => &["temperature", "temp"],
        "spo2" => &["spo2", "oxygen_saturation"],
        "systolic" => &["systolic"],
        _ => &["diastolic"],
    };
    if let Some(x) = aliases.iter().find_map(|a| vitals.get(*a).and_then(number)) {
        return Some(x);
    }
    let bp = vitals.get("bp").and_then(Value::as_str)?;
    let (sys, dia) = bp.split_once('/')?;
    match name {
        "systolic" => sys.trim().parse().ok(),
        "diastolic" => dia.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(input: Value) -> (String, String) {
        let out = RiskRules::shipped().assess(&input);
        (
            out["risk_level"].as_str().unwrap_or_default().to_string(),
            out["risk_reason"].as_str().unwrap_or_default().to_string(),
        )
    }

    #[test]
    fn the_brief_s_triage_rule_goes_to_the_physician() {
        let (l, r) = level(
            json!({"patient_id": "p-1", "vitals": {"bp": "182/95"}, "reported_symptoms": []}),
        );
        assert_eq!(
            (l.as_str(), r.as_str()),
            ("HIGH", "systolic blood pressure above 180 mmHg")
        );
        let (l, r) =
            level(json!({"vitals": {}, "reported_symptoms": ["Some CHEST PAIN since yesterday"]}));
        assert_eq!((l.as_str(), r.as_str()), ("HIGH", "chest pain reported"));
        let (l, _) = level(json!({"vitals": {}, "symptoms": ["昨夜から胸痛があります"]}));
        assert_eq!(l, "HIGH", "Japanese answers too");
        // 180 itself is not above 180.
        let (l, _) = level(json!({"vitals": {"systolic": 180}}));
        assert_eq!(l, "LOW");
    }

    #[test]
    fn the_highest_level_wins_with_its_reasons_and_the_patient_goes_on() {
        let input = json!({"patient_id": "p-1", "vitals": {"temperature": "39.4", "hr": 135, "spo2": 93},
            "reported_symptoms": ["fever"]});
        let out = RiskRules::shipped().assess(&input);
        assert_eq!(out["risk_level"], "HIGH");
        assert_eq!(out["risk_reason"], "heart rate 131/min or higher");
        assert_eq!(out["patient_id"], "p-1", "the input goes on");
        let (l, r) = level(
            json!({"vitals": {"temperature": 39.4, "spo2": 93}, "reported_symptoms": ["fever"]}),
        );
        assert_eq!(l, "MEDIUM");
        assert_eq!(
            r,
            "temperature 39.1 °C or higher; oxygen saturation 92-93 %; fever reported"
        );
        let (l, r) = level(
            json!({"vitals": {"bp": "120/80", "heart_rate": 72}, "reported_symptoms": ["tired"]}),
        );
        assert_eq!((l.as_str(), r.as_str()), ("LOW", "no risk rule matched"));
        // Nothing reported, or nonsense: LOW, never a failure.
        assert_eq!(level(json!({})).0, "LOW");
        assert_eq!(
            level(json!({"vitals": "n/a", "reported_symptoms": [1, null]})).0,
            "LOW"
        );
    }

    #[test]
    fn an_operator_s_file_is_checked_rule_by_rule() {
        let bad = [
            (
                "[[rule]]\nlevel = \"HIGH\"\nreason = \"x\"\nvital = \"glucose\"\nabove = 1\n",
                "vital `glucose`",
            ),
            (
                "[[rule]]\nlevel = \"HIGH\"\nreason = \"x\"\nvital = \"spo2\"\n",
                "exactly one",
            ),
            (
                "[[rule]]\nlevel = \"HIGH\"\nreason = \"x\"\nvital = \"spo2\"\nabove = 1\nbelow = 2\n",
                "exactly one",
            ),
            (
                "[[rule]]\nlevel = \"HIGH\"\nreason = \"x\"\n",
                "either a vital",
            ),
            (
                "[[rule]]\nlevel = \"LOW\"\nreason = \"x\"\nsymptoms = [\"a\"]\n",
                "LOW is what",
            ),
            (
                "[[rule]]\nlevel = \"URGENT\"\nreason = \"x\"\nsymptoms = [\"a\"]\n",
                "URGENT",
            ),
            (
                "[[rule]]\nlevel = \"HIGH\"\nreason = \"x\"\nsymptom = [\"a\"]\n",
                "symptom",
            ),
        ];
        for (text, want) in bad {
            let e = RiskRules::parse(text, "mine.toml").expect_err(text);
            let e = e.to_string();
            assert!(
                e.starts_with("risk rules mine.toml:") && e.contains(want),
                "{e}"
            );
        }
        let mine = RiskRules::parse(
            "[[rule]]\nlevel = \"MEDIUM\"\nreason = \"glucose talk\"\nsymptoms = [\"sugar\"]\n",
            "mine.toml",
        )
        .expect("loads");
        let out =
            mine.assess(&json!({"reported_symptoms": ["high sugar"], "vitals": {"bp": "200/130"}}));
        assert_eq!(
            out["risk_level"], "MEDIUM",
            "the operator's rules replace the shipped ones"
        );
    }
}
