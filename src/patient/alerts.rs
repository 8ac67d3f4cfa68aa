//! Clinical alerts for the screen-pop (sans-IO): drug-allergy conflicts (an allergy to a drug
//! class against an active medication in that class) and drug-drug interactions, from tables
//! shipped in `clinical-alerts.toml` (sources cited there) plus an operator's own file.

use serde::{Deserialize, Serialize};

const SHIPPED: &str = include_str!("clinical-alerts.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrugClass {
    pub class: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub allergy_terms: Vec<String>,
    #[serde(default)]
    pub allergy_codes: Vec<String>,
    #[serde(default)]
    pub drug_terms: Vec<String>,
    #[serde(default)]
    pub drug_codes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interaction {
    pub a: Vec<String>,
    pub b: Vec<String>,
    pub severity: String,
    pub effect: String,
    #[serde(default)]
    pub source: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertTables {
    #[serde(default)]
    pub drug_class: Vec<DrugClass>,
    #[serde(default)]
    pub interaction: Vec<Interaction>,
}

#[derive(Debug, thiserror::Error)]
#[error("clinical alert table {origin}: {why}")]
pub struct AlertTableError {
    pub origin: String,
    pub why: String,
}

impl AlertTables {
    /// The shipped tables.
    pub fn shipped() -> AlertTables {
        toml::from_str(SHIPPED).expect("the shipped clinical-alerts.toml parses (unit-tested)")
    }

    /// The shipped tables extended by an operator's file.
    pub fn load(extra: Option<&std::path::Path>) -> Result<AlertTables, AlertTableError> {
        let mut tables = AlertTables::shipped();
        if let Some(path) = extra {
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| AlertTableError {
                origin: origin.clone(),
                why: e.to_string(),
            })?;
            let more: AlertTables = toml::from_str(&text).map_err(|e| AlertTableError {
                origin,
                why: e.to_string(),
            })?;
            tables.drug_class.extend(more.drug_class);
            tables.interaction.extend(more.interaction);
        }
        Ok(tables)
    }
}

/// A coded thing on the patient's record: display text and codes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Coded {
    pub display: String,
    pub codes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// `drug-allergy` or `drug-drug`.
    pub kind: &'static str,
    pub severity: String,
    pub message: String,
    pub source: String,
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether `term` occurs as whole consecutive words of `text`.
fn mentions(text_words: &[String], term: &str) -> bool {
    let t = words(term);
    !t.is_empty() && text_words.windows(t.len()).any(|w| w == t.as_slice())
}

fn hits(item: &Coded, terms: &[String], codes: &[String]) -> bool {
    let w = words(&item.display);
    terms.iter().any(|t| mentions(&w, t)) || item.codes.iter().any(|c| codes.contains(c))
}

/// All alerts for one patient's active allergies and medications.
pub(crate) fn check(
    tables: &AlertTables,
    allergies: &[Coded],
    medications: &[Coded],
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    for class in &tables.drug_class {
        for allergy in allergies
            .iter()
            .filter(|a| hits(a, &class.allergy_terms, &class.allergy_codes))
        {
            for med in medications
                .iter()
                .filter(|m| hits(m, &class.drug_terms, &class.drug_codes))
            {
                alerts.push(Alert {
                    kind: "drug-allergy",
                    severity: "major".into(),
                    message: format!(
                        "{} is in the {} class; the patient has \"{}\"",
                        med.display, class.class, allergy.display
                    ),
                    source: class.source.clone(),
                });
            }
        }
    }
    for (i, m1) in medications.iter().enumerate() {
        for m2 in &medications[i + 1..] {
            for rule in &tables.interaction {
                let ab = hits(m1, &rule.a, &[]) && hits(m2, &rule.b, &[]);
                let ba = hits(m2, &rule.a, &[]) && hits(m1, &rule.b, &[]);
                if ab || ba {
                    alerts.push(Alert {
                        kind: "drug-drug",
                        severity: rule.severity.clone(),
                        message: format!("{} + {}: {}", m1.display, m2.display, rule.effect),
                        source: rule.source.clone(),
                    });
                }
            }
        }
    }
    alerts.dedup();
    alerts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coded(display: &str) -> Coded {
        Coded {
            display: display.into(),
            codes: vec![],
        }
    }

    #[test]
    fn the_shipped_tables_parse_and_cite_sources() {
        let t = AlertTables::shipped();
        assert!(t.drug_class.len() >= 4 && t.interaction.len() >= 10);
        assert!(t.drug_class.iter().all(|c| !c.source.is_empty()));
        assert!(t.interaction.iter().all(|i| !i.source.is_empty()));
    }

    #[test]
    fn class_allergies_catch_members_and_words_do_not_leak() {
        let t = AlertTables::shipped();
        let alerts = check(
            &t,
            &[
                coded("Allergy to penicillin"),
                coded("Allergy to sulfa drugs"),
            ],
            &[
                coded("Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet"),
                coded("ferrous sulfate 325 MG Oral Tablet"),
                coded("Sulfamethoxazole 800 MG / Trimethoprim 160 MG Oral Tablet"),
            ],
        );
        let kinds: Vec<_> = alerts.iter().map(|a| a.message.as_str()).collect();
        assert_eq!(alerts.len(), 2, "{kinds:#?}");
        assert!(alerts[0].message.contains("penicillins"));
        assert!(alerts[1].message.contains("sulfonamide"));
        // "ferrous sulfate" is not a sulfonamide.
        assert!(!kinds.iter().any(|m| m.contains("ferrous")));
    }

    #[test]
    fn interactions_match_either_order_and_operators_extend_them() {
        let t = AlertTables::shipped();
        let meds = [
            coded("Naproxen sodium 220 MG Oral Tablet"),
            coded("Warfarin Sodium 5 MG Oral Tablet"),
        ];
        let alerts = check(&t, &[], &meds);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].kind, "drug-drug");
        assert!(alerts[0].source.contains("Coumadin"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("extra.toml");
        std::fs::write(
            &path,
            "[[interaction]]\na = [\"loratadine\"]\nb = [\"epinephrine\"]\nseverity = \"minor\"\neffect = \"test\"\nsource = \"local formulary\"\n",
        )
        .unwrap();
        let t = AlertTables::load(Some(&path)).unwrap();
        let alerts = check(
            &t,
            &[],
            &[
                coded("Loratadine 5 MG"),
                coded("Epinephrine 1 MG/ML Auto-Injector"),
            ],
        );
        assert_eq!(alerts.len(), 1);
        std::fs::write(&path, "[[interaction]]\nfoo = 1\n").unwrap();
        assert!(
            AlertTables::load(Some(&path))
                .unwrap_err()
                .to_string()
                .contains("extra.toml")
        );
    }
}
