//! FHIR Bundle import planning (sans-IO): from a transaction or collection Bundle to the list
//! of resources to store, with `urn:uuid:` fullUrls and conditional references
//! (`Practitioner?identifier=system|value`) resolved, each resource assigned to its patient
//! compartment, and the values to blind-index. Nothing is written here; the store writes a
//! plan in one database transaction, so a bundle is imported whole or not at all.
//!
//! Ids are stable, which makes import idempotent: a resource keeps its own `id`; otherwise a
//! `urn:uuid:` fullUrl gives it; otherwise a hash of its content does. FHIR R4 §3.1.0.11
//! (transaction processing) and §2.36.0 (Bundle, resolving references in bundles).

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::phone::to_e164;

/// A failure that names the entry and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("not a FHIR Bundle: {0}")]
    NotBundle(String),
    #[error("Bundle.type `{0}` is not supported (transaction, batch or collection)")]
    BundleType(String),
    #[error("entry {index} ({what}): {why}")]
    Entry {
        index: usize,
        what: String,
        why: String,
    },
}

/// A conditional reference to resolve against stored resources: `rtype?identifier=system|value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct IdentifierQuery {
    pub rtype: String,
    pub system: String,
    pub value: String,
}

impl IdentifierQuery {
    /// The text a blind index is computed over.
    pub(crate) fn index_value(&self) -> String {
        format!("{}|{}|{}", self.rtype, self.system, self.value)
    }
}

/// A value to put in a blind index for a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexValue {
    /// `phone`, `mrn`, `dob_name` or `identifier`.
    pub kind: &'static str,
    pub value: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub rtype: String,
    pub id: String,
    /// The patient compartment (`None` for shared resources such as Practitioner).
    pub patient_id: Option<String>,
    pub resource: Value,
    pub index: Vec<IndexValue>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    pub resources: Vec<Planned>,
    /// Patients referenced but not in this bundle: (entry, patient id). The store checks that
    /// they exist.
    pub external_patients: Vec<(usize, String)>,
}

impl Plan {
    pub(crate) fn patient_ids(&self) -> BTreeSet<String> {
        self.resources
            .iter()
            .filter(|p| p.rtype == "Patient")
            .map(|p| p.id.clone())
            .collect()
    }
}

fn entry_err(index: usize, what: &str, why: impl Into<String>) -> BundleError {
    BundleError::Entry {
        index,
        what: what.to_string(),
        why: why.into(),
    }
}

fn check_bundle(bundle: &Value) -> Result<&Vec<Value>, BundleError> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(BundleError::NotBundle(
            "resourceType is not \"Bundle\"".into(),
        ));
    }
    let kind = bundle.get("type").and_then(Value::as_str).unwrap_or("");
    if !matches!(kind, "transaction" | "batch" | "collection") {
        return Err(BundleError::BundleType(kind.to_string()));
    }
    match bundle.get("entry") {
        None => {
            static EMPTY: Vec<Value> = Vec::new();
            Ok(&EMPTY)
        }
        Some(Value::Array(entries)) => Ok(entries),
        Some(_) => Err(BundleError::NotBundle(
            "Bundle.entry is not an array".into(),
        )),
    }
}

/// Parses `identifier=system|value` (or `identifier=value`) from a conditional URL's query.
fn parse_identifier_query(rtype: &str, query: &str) -> Option<IdentifierQuery> {
    let mut found = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=')?;
        if k != "identifier" {
            return None;
        }
        let v = percent_decode(v);
        let (system, value) = match v.split_once('|') {
            Some((s, v)) => (s.to_string(), v.to_string()),
            None => (String::new(), v),
        };
        found = Some(IdentifierQuery {
            rtype: rtype.to_string(),
            system,
            value,
        });
    }
    found
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `Type?query` → the query, when `reference` is a conditional reference.
fn conditional(reference: &str) -> Option<(&str, &str)> {
    let (rtype, query) = reference.split_once('?')?;
    (!rtype.contains('/') && !rtype.is_empty()).then_some((rtype, query))
}

fn walk_references<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "reference"
                    && let Value::String(s) = child
                {
                    out.push(s);
                } else {
                    walk_references(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|c| walk_references(c, out)),
        _ => {}
    }
}

/// Every conditional reference or conditional create/update in the bundle that must be looked
/// up among stored resources.
pub(crate) fn conditional_queries(bundle: &Value) -> Result<Vec<IdentifierQuery>, BundleError> {
    let entries = check_bundle(bundle)?;
    let mut out = BTreeSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let Some(resource) = entry.get("resource") else {
            continue;
        };
        let mut refs = Vec::new();
        walk_references(resource, &mut refs);
        for r in refs {
            if let Some((rtype, query)) = conditional(r) {
                let q = parse_identifier_query(rtype, query).ok_or_else(|| {
                    entry_err(
                        i,
                        rtype,
                        format!("conditional reference `{r}`: only identifier=system|value searches are supported"),
                    )
                })?;
                out.insert(q);
            }
        }
        if let Some(q) = entry_condition(entry, i)? {
            out.insert(q);
        }
    }
    Ok(out.into_iter().collect())
}

/// The identifier condition of a conditional create (`ifNoneExist`) or update (`PUT Type?...`).
fn entry_condition(entry: &Value, index: usize) -> Result<Option<IdentifierQuery>, BundleError> {
    let Some(request) = entry.get("request") else {
        return Ok(None);
    };
    let url = request.get("url").and_then(Value::as_str).unwrap_or("");
    let rtype = url.split(['/', '?']).next().unwrap_or("");
    let query = if let Some(q) = request.get("ifNoneExist").and_then(Value::as_str) {
        Some(q)
    } else {
        url.split_once('?').map(|(_, q)| q)
    };
    match query {
        None => Ok(None),
        Some(q) => parse_identifier_query(rtype, q).map(Some).ok_or_else(|| {
            entry_err(
                index,
                url,
                format!("condition `{q}`: only identifier=system|value is supported"),
            )
        }),
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

fn identifiers(resource: &Value) -> Vec<(String, String)> {
    resource
        .get("identifier")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(|i| {
                    let value = i.get("value")?.as_str()?;
                    let system = i.get("system").and_then(Value::as_str).unwrap_or("");
                    Some((system.to_string(), value.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn matches_query(rtype: &str, resource: &Value, q: &IdentifierQuery) -> bool {
    rtype == q.rtype
        && identifiers(resource)
            .iter()
            .any(|(s, v)| *v == q.value && (q.system.is_empty() || *s == q.system))
}

/// Builds the plan. `stored` answers conditional queries from the database (see
/// [`conditional_queries`]); a query matching one resource in the bundle wins over the store.
pub(crate) fn plan(
    bundle: &Value,
    stored: &HashMap<IdentifierQuery, String>,
    default_cc: &str,
) -> Result<Plan, BundleError> {
    let entries = check_bundle(bundle)?;
    // Pass 1: type and id of every entry, and what its fullUrl stands for.
    let mut slots: Vec<(String, String)> = Vec::with_capacity(entries.len());
    let mut by_full_url: HashMap<String, String> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let full_url = entry.get("fullUrl").and_then(Value::as_str).unwrap_or("");
        let what = if full_url.is_empty() {
            "no fullUrl".to_string()
        } else {
            full_url.to_string()
        };
        let method = entry
            .get("request")
            .and_then(|r| r.get("method"))
            .and_then(Value::as_str)
            .unwrap_or("POST");
        if !matches!(method, "POST" | "PUT") {
            return Err(entry_err(
                i,
                &what,
                format!("request method {method} is not supported (POST and PUT are)"),
            ));
        }
        let resource = entry
            .get("resource")
            .filter(|r| r.is_object())
            .ok_or_else(|| entry_err(i, &what, "has no resource"))?;
        let rtype = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphabetic()))
            .ok_or_else(|| entry_err(i, &what, "resource has no valid resourceType"))?
            .to_string();
        let what = format!("{rtype} {what}");
        let condition = entry_condition(entry, i)?;
        let conditional_hit = condition.as_ref().and_then(|q| {
            entries
                .iter()
                .enumerate()
                .find(|(j, e)| {
                    *j < i
                        && e.get("resource").is_some_and(|r| {
                            matches_query(
                                r.get("resourceType").and_then(Value::as_str).unwrap_or(""),
                                r,
                                q,
                            )
                        })
                })
                .map(|(j, _)| slots[j].1.clone())
                .or_else(|| stored.get(q).cloned())
        });
        let put_id = entry
            .get("request")
            .and_then(|r| r.get("url"))
            .and_then(Value::as_str)
            .filter(|_| method == "PUT")
            .and_then(|u| u.split_once('/'))
            .map(|(_, id)| id.to_string())
            .filter(|id| valid_id(id));
        let own_id = resource
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| valid_id(id))
            .map(str::to_string);
        let urn_id = full_url
            .strip_prefix("urn:uuid:")
            .filter(|id| valid_id(id))
            .map(str::to_string);
        let id = conditional_hit
            .or(put_id)
            .or(own_id)
            .or(urn_id)
            .unwrap_or_else(|| {
                let digest = Sha256::digest(format!("{rtype}\n{resource}").as_bytes());
                hex::encode(&digest[..16])
            });
        if !full_url.is_empty() {
            by_full_url.insert(full_url.to_string(), format!("{rtype}/{id}"));
        }
        if let Some(old) = resource.get("id").and_then(Value::as_str) {
            by_full_url
                .entry(format!("{rtype}/{old}"))
                .or_insert(format!("{rtype}/{id}"));
        }
        let _ = what;
        slots.push((rtype, id));
    }

    // Pass 2: rewrite references, find compartments, collect index values.
    let in_bundle: BTreeSet<String> = slots
        .iter()
        .filter(|(t, _)| t == "Patient")
        .map(|(_, id)| id.clone())
        .collect();
    let mut plan = Plan::default();
    for (i, entry) in entries.iter().enumerate() {
        let (rtype, id) = slots[i].clone();
        let full_url = entry.get("fullUrl").and_then(Value::as_str).unwrap_or("");
        let what = format!(
            "{rtype}/{id}{}",
            if full_url.is_empty() {
                String::new()
            } else {
                format!(" {full_url}")
            }
        );
        let mut resource = entry["resource"].clone();
        rewrite_references(&mut resource, &|r: &str| -> Result<Option<String>, String> {
            if r.starts_with('#') {
                return Ok(None);
            }
            if let Some(target) = by_full_url.get(r) {
                return Ok(Some(target.clone()));
            }
            if r.starts_with("urn:uuid:") || r.starts_with("urn:oid:") {
                return Err(format!("reference `{r}` matches no fullUrl in the bundle"));
            }
            if let Some((rt, query)) = conditional(r) {
                let q = parse_identifier_query(rt, query).ok_or_else(|| {
                    format!("conditional reference `{r}`: only identifier=system|value searches are supported")
                })?;
                let hits: Vec<&(String, String)> = entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| {
                        e.get("resource").is_some_and(|res| {
                            matches_query(
                                res.get("resourceType").and_then(Value::as_str).unwrap_or(""),
                                res,
                                &q,
                            )
                        })
                    })
                    .map(|(j, _)| &slots[j])
                    .collect();
                return match hits.as_slice() {
                    [(t, id)] => Ok(Some(format!("{t}/{id}"))),
                    [] => match stored.get(&q) {
                        Some(id) => Ok(Some(format!("{}/{id}", q.rtype))),
                        None => Err(format!(
                            "conditional reference `{r}` matches nothing in the bundle or the store"
                        )),
                    },
                    more => Err(format!(
                        "conditional reference `{r}` matches {} resources in the bundle",
                        more.len()
                    )),
                };
            }
            Ok(None)
        })
        .map_err(|why| entry_err(i, &what, why))?;
        if let Value::Object(map) = &mut resource {
            map.insert("id".into(), Value::String(id.clone()));
        }
        let patient_id = if rtype == "Patient" {
            Some(id.clone())
        } else {
            compartment(&resource)
        };
        if let Some(p) = &patient_id
            && rtype != "Patient"
            && !in_bundle.contains(p)
        {
            plan.external_patients.push((i, p.clone()));
        }
        let mut index: Vec<IndexValue> = identifiers(&resource)
            .into_iter()
            .map(|(system, value)| IndexValue {
                kind: "identifier",
                value: IdentifierQuery {
                    rtype: rtype.clone(),
                    system,
                    value,
                }
                .index_value(),
            })
            .collect();
        if rtype == "Patient" {
            index.extend(patient_index(&resource, default_cc));
        }
        index.dedup();
        plan.resources.push(Planned {
            rtype,
            id,
            patient_id,
            resource,
            index,
        });
    }
    Ok(plan)
}

type Resolve<'a> = dyn Fn(&str) -> Result<Option<String>, String> + 'a;

fn rewrite_references(v: &mut Value, resolve: &Resolve<'_>) -> Result<(), String> {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "reference"
                    && let Value::String(s) = child
                {
                    if let Some(new) = resolve(s)? {
                        *s = new;
                    }
                } else {
                    rewrite_references(child, resolve)?;
                }
            }
        }
        Value::Array(items) => {
            for c in items {
                rewrite_references(c, resolve)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The patient a resource belongs to (FHIR's Patient compartment, simplified to the
/// references that carry it in the resource types Careline keeps).
pub(crate) fn compartment(resource: &Value) -> Option<String> {
    let patient_ref = |v: &Value| {
        v.get("reference")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Patient/"))
            .map(str::to_string)
    };
    for key in ["subject", "patient", "beneficiary"] {
        if let Some(p) = resource.get(key).and_then(patient_ref) {
            return Some(p);
        }
    }
    resource
        .get("participant")
        .and_then(Value::as_array)?
        .iter()
        .find_map(|p| p.get("actor").and_then(patient_ref))
}

/// Lowercase letters only: the form names are indexed and compared in.
pub(crate) fn name_key(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Phone numbers (E.164), MRNs and date of birth + family name of a Patient.
pub(crate) fn patient_index(patient: &Value, default_cc: &str) -> Vec<IndexValue> {
    let mut out = Vec::new();
    for t in patient
        .get("telecom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let system = t.get("system").and_then(Value::as_str).unwrap_or("phone");
        if matches!(system, "phone" | "sms")
            && let Some(e164) = t
                .get("value")
                .and_then(Value::as_str)
                .and_then(|v| to_e164(v, default_cc))
        {
            out.push(IndexValue {
                kind: "phone",
                value: e164,
            });
        }
    }
    for mrn in mrns(patient) {
        out.push(IndexValue {
            kind: "mrn",
            value: mrn,
        });
    }
    if let Some(dob) = patient.get("birthDate").and_then(Value::as_str) {
        for name in patient
            .get("name")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(family) = name.get("family").and_then(Value::as_str) {
                out.push(IndexValue {
                    kind: "dob_name",
                    value: format!("{dob}|{}", name_key(family)),
                });
            }
        }
    }
    out.sort_by(|a, b| (a.kind, &a.value).cmp(&(b.kind, &b.value)));
    out.dedup();
    out
}

/// Medical record numbers: identifiers typed `MR` (HL7 v2 table 0203).
pub(crate) fn mrns(patient: &Value) -> Vec<String> {
    patient
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|i| {
            i.get("type")
                .and_then(|t| t.get("coding"))
                .and_then(Value::as_array)
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.get("code").and_then(Value::as_str) == Some("MR"))
                })
        })
        .filter_map(|i| i.get("value").and_then(Value::as_str).map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle() -> Value {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient",
                "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "M-1"}],
                "telecom": [{"system": "phone", "value": "555-000-1111"}],
                "birthDate": "1970-01-02", "name": [{"family": "Doe", "given": ["Jo"]}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:c1", "resource": {"resourceType": "Condition",
                "subject": {"reference": "urn:uuid:p1"},
                "asserter": {"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|42"}},
             "request": {"method": "POST", "url": "Condition"}},
            {"fullUrl": "urn:uuid:d1", "resource": {"resourceType": "Practitioner",
                "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "42"}]},
             "request": {"method": "POST", "url": "Practitioner",
                "ifNoneExist": "identifier=http://hl7.org/fhir/sid/us-npi|42"}}
        ]})
    }

    #[test]
    fn urn_and_conditional_references_resolve_within_the_bundle() {
        let b = bundle();
        let queries = conditional_queries(&b).unwrap();
        assert_eq!(queries.len(), 1, "{queries:?}");
        let plan = plan(&b, &HashMap::new(), "1").unwrap();
        let cond = &plan.resources[1];
        assert_eq!(cond.patient_id.as_deref(), Some("p1"));
        assert_eq!(cond.resource["subject"]["reference"], "Patient/p1");
        assert_eq!(cond.resource["asserter"]["reference"], "Practitioner/d1");
        let kinds: Vec<&str> = plan.resources[0].index.iter().map(|i| i.kind).collect();
        assert!(kinds.contains(&"phone") && kinds.contains(&"mrn") && kinds.contains(&"dob_name"));
        assert!(
            plan.resources[0]
                .index
                .iter()
                .any(|i| i.value == "+15550001111")
        );
        assert!(plan.external_patients.is_empty());
    }

    #[test]
    fn a_stored_resource_answers_a_conditional_create() {
        let b = bundle();
        let mut stored = HashMap::new();
        stored.insert(
            IdentifierQuery {
                rtype: "Practitioner".into(),
                system: "http://hl7.org/fhir/sid/us-npi".into(),
                value: "42".into(),
            },
            "existing-doc".to_string(),
        );
        let plan = plan(&b, &stored, "1").unwrap();
        assert_eq!(plan.resources[2].id, "existing-doc");
    }

    #[test]
    fn errors_name_the_entry_and_the_reason() {
        let mut b = bundle();
        b["entry"][1]["resource"]["subject"]["reference"] = json!("urn:uuid:nobody");
        let err = plan(&b, &HashMap::new(), "1").unwrap_err().to_string();
        assert!(
            err.starts_with("entry 1 (Condition/c1 urn:uuid:c1)"),
            "{err}"
        );
        assert!(err.contains("urn:uuid:nobody"), "{err}");

        let mut b = bundle();
        b["entry"][2]["resource"]["identifier"][0]["value"] = json!("43");
        b["entry"][2]["request"]["ifNoneExist"] = json!("identifier=x|43");
        let err = plan(&b, &HashMap::new(), "1").unwrap_err().to_string();
        assert!(
            err.contains("entry 1") && err.contains("matches nothing"),
            "{err}"
        );

        let b = json!({"resourceType": "Bundle", "type": "searchset"});
        assert!(
            plan(&b, &HashMap::new(), "1")
                .unwrap_err()
                .to_string()
                .contains("searchset")
        );
    }

    #[test]
    fn ids_are_stable_so_import_is_idempotent() {
        let b = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Observation", "subject": {"reference": "Patient/x"}}}]});
        let a = plan(&b, &HashMap::new(), "1").unwrap();
        let again = plan(&b, &HashMap::new(), "1").unwrap();
        assert_eq!(a.resources[0].id, again.resources[0].id);
        assert_eq!(a.external_patients, vec![(0, "x".to_string())]);
    }
}
