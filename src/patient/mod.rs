//! Patient profiles: a FHIR R4-shaped store (Patient, AllergyIntolerance, MedicationRequest,
//! MedicationStatement, Condition, CarePlan, CareTeam, Coverage, Appointment, Encounter,
//! Observation and whatever else a bundle carries, kept per patient), Bundle import and export,
//! caller identification for flows, the screen-pop summary with clinical alerts, and contact
//! history.
//!
//! At rest every resource and contact record is sealed on its own (AES-256-GCM under a fresh
//! data key wrapped by the key ring's master key, bound to the row by associated data).
//! Lookups go through keyed-HMAC blind indexes (phone in E.164, MRN, date of birth + family
//! name, FHIR identifiers), so the database alone reveals no names, numbers or clinical text.

pub(crate) mod alerts;
pub(crate) mod bundle;
pub(crate) mod phone;
pub(crate) mod summary;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

use crate::db::{Db, now_ms, rfc3339};
use crate::keys::{KeyError, KeyRing};
pub use alerts::AlertTables;
pub use bundle::BundleError;
pub use summary::{ContactRecord, Summary};

#[derive(Debug, thiserror::Error)]
pub enum PatientError {
    #[error("{0}")]
    Bundle(#[from] BundleError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{context}: does not decrypt ({source})")]
    Sealed { context: String, source: KeyError },
    #[error("{context}: stored JSON is invalid")]
    Corrupt { context: String },
    #[error("no patient `{0}`")]
    NoPatient(String),
    #[error("invalid contact record: {0}")]
    BadContact(String),
    #[error("`{field}` is longer than {max} bytes")]
    TooLong { field: &'static str, max: usize },
}

/// What an import did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ImportReport {
    pub patients: Vec<String>,
    pub resources: usize,
    pub by_type: BTreeMap<String, usize>,
    /// The Patient, Encounter and MedicationRequest resources stored, as stored (references
    /// resolved), with their patient: what starts a discharge follow-up. In memory only.
    #[serde(skip)]
    pub care: Vec<StoredResource>,
}

/// One stored resource and the patient it belongs to.
#[derive(Debug, Clone)]
pub struct StoredResource {
    pub rtype: String,
    pub id: String,
    pub patient_id: Option<String>,
    pub resource: Value,
}

/// A caller identified for a flow: no clinical data, nothing to read aloud.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallerMatch {
    pub patient_id: String,
    pub preferred_language: Option<String>,
    /// True when the caller proved who they are (MRN and date of birth); a caller number alone
    /// is not proof (numbers are shared and can be spoofed).
    pub verified: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Lookup {
    Found(CallerMatch),
    /// More than one patient matches (a shared family number): ask for more.
    Ambiguous {
        count: usize,
    },
    NotFound,
}

/// Blind-index purposes (keys derived with `KeyRing::index_key`).
fn purpose(kind: &str) -> &'static str {
    match kind {
        "phone" => "patient-phone",
        "mrn" => "patient-mrn",
        "dob_name" => "patient-dob-name",
        _ => "fhir-identifier",
    }
}

fn resource_context(rtype: &str, rid: &str) -> String {
    format!("fhir/{rtype}/{rid}")
}

fn contact_context(id: &str) -> String {
    format!("contact/{id}")
}

#[derive(Clone)]
pub struct PatientStore {
    db: Db,
    keys: Arc<KeyRing>,
    tables: Arc<AlertTables>,
    /// Country code assumed for national phone numbers (`1` for the NANP).
    default_cc: String,
}

impl PatientStore {
    pub fn new(db: Db, keys: Arc<KeyRing>, tables: Arc<AlertTables>, default_cc: &str) -> Self {
        PatientStore {
            db,
            keys,
            tables,
            default_cc: default_cc.to_string(),
        }
    }

    /// The database and key ring it keeps records in (for tasks that keep their own rows
    /// about patients beside the records, such as the calls placed to them).
    pub(crate) fn storage(&self) -> (&Db, &Arc<KeyRing>) {
        (&self.db, &self.keys)
    }

    pub fn default_country_code(&self) -> &str {
        &self.default_cc
    }

    fn digest(&self, kind: &str, value: &str) -> String {
        self.keys.blind_index(purpose(kind), value)
    }

    fn open(&self, context: &str, sealed: &str) -> Result<Value, PatientError> {
        let plain =
            self.keys
                .open_sealed(context, sealed)
                .map_err(|source| PatientError::Sealed {
                    context: context.to_string(),
                    source,
                })?;
        serde_json::from_slice(&plain).map_err(|_| PatientError::Corrupt {
            context: context.to_string(),
        })
    }

    /// Imports a transaction or collection Bundle: all of it in one database transaction, or
    /// nothing (the error names the entry and why).
    pub async fn import_bundle(&self, bundle: &Value) -> Result<ImportReport, PatientError> {
        let queries = bundle::conditional_queries(bundle)?;
        let mut stored = HashMap::new();
        for q in queries {
            let digest = self.digest("identifier", &q.index_value());
            let row: Option<(String,)> = sqlx::query_as(
                "SELECT rid FROM fhir_index WHERE kind = 'identifier' AND digest = $1 AND rtype = $2 LIMIT 1",
            )
            .bind(digest)
            .bind(&q.rtype)
            .fetch_optional(self.db.pool())
            .await?;
            if let Some((rid,)) = row {
                stored.insert(q, rid);
            }
        }
        let plan = bundle::plan(bundle, &stored, &self.default_cc)?;
        for (entry, patient) in &plan.external_patients {
            if !self.exists(patient).await? {
                let p = &plan.resources[*entry];
                return Err(BundleError::Entry {
                    index: *entry,
                    what: format!("{}/{}", p.rtype, p.id),
                    why: format!(
                        "refers to Patient/{patient}, which is neither in the bundle nor stored"
                    ),
                }
                .into());
            }
        }
        // Seal and hash outside the transaction: it stays short.
        let now = now_ms();
        let mut rows = Vec::with_capacity(plan.resources.len());
        for p in &plan.resources {
            let context = resource_context(&p.rtype, &p.id);
            let sealed = self.keys.seal(&context, p.resource.to_string().as_bytes());
            let digests: Vec<(&'static str, String)> = p
                .index
                .iter()
                .map(|i| (i.kind, self.digest(i.kind, &i.value)))
                .collect();
            rows.push((p, sealed, digests));
        }
        let mut tx = self.db.pool().begin().await?;
        let mut report = ImportReport {
            patients: plan.patient_ids().into_iter().collect(),
            ..ImportReport::default()
        };
        for (p, sealed, digests) in rows {
            sqlx::query(
                "INSERT INTO fhir_resources (rtype, rid, patient_id, sealed, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (rtype, rid) DO UPDATE SET patient_id = excluded.patient_id, \
                 sealed = excluded.sealed, updated_at = excluded.updated_at",
            )
            .bind(&p.rtype)
            .bind(&p.id)
            .bind(p.patient_id.clone())
            .bind(sealed)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM fhir_index WHERE rtype = $1 AND rid = $2")
                .bind(&p.rtype)
                .bind(&p.id)
                .execute(&mut *tx)
                .await?;
            for (kind, digest) in digests {
                sqlx::query(
                    "INSERT INTO fhir_index (kind, digest, rtype, rid) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(kind)
                .bind(digest)
                .bind(&p.rtype)
                .bind(&p.id)
                .execute(&mut *tx)
                .await?;
            }
            report.resources += 1;
            *report.by_type.entry(p.rtype.clone()).or_default() += 1;
            if matches!(
                p.rtype.as_str(),
                "Patient" | "Encounter" | "MedicationRequest"
            ) {
                report.care.push(StoredResource {
                    rtype: p.rtype.clone(),
                    id: p.id.clone(),
                    patient_id: p.patient_id.clone(),
                    resource: p.resource.clone(),
                });
            }
        }
        tx.commit().await?;
        Ok(report)
    }

    pub async fn exists(&self, patient_id: &str) -> Result<bool, PatientError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT rid FROM fhir_resources WHERE rtype = 'Patient' AND rid = $1")
                .bind(patient_id)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.is_some())
    }

    pub async fn count_patients(&self) -> Result<i64, PatientError> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM fhir_resources WHERE rtype = 'Patient'")
                .fetch_one(self.db.pool())
                .await?;
        Ok(n)
    }

    /// One stored resource, decrypted.
    pub async fn resource(&self, rtype: &str, rid: &str) -> Result<Option<Value>, PatientError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT sealed FROM fhir_resources WHERE rtype = $1 AND rid = $2")
                .bind(rtype)
                .bind(rid)
                .fetch_optional(self.db.pool())
                .await?;
        row.map(|(sealed,)| self.open(&resource_context(rtype, rid), &sealed))
            .transpose()
    }

    /// The patient's resources of the given types (all types when empty), decrypted.
    pub async fn resources(
        &self,
        patient_id: &str,
        types: &[&str],
    ) -> Result<Vec<(String, Value)>, PatientError> {
        let rows: Vec<(String, String, String)> = if types.is_empty() {
            sqlx::query_as("SELECT rtype, rid, sealed FROM fhir_resources WHERE patient_id = $1 ORDER BY rtype, rid")
                .bind(patient_id)
                .fetch_all(self.db.pool())
                .await?
        } else {
            let list: Vec<String> = (0..types.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT rtype, rid, sealed FROM fhir_resources WHERE patient_id = $1 AND rtype IN ({}) ORDER BY rtype, rid",
                list.join(", ")
            );
            let mut q = sqlx::query_as(&sql).bind(patient_id);
            for t in types {
                q = q.bind(*t);
            }
            q.fetch_all(self.db.pool()).await?
        };
        rows.into_iter()
            .map(|(rtype, rid, sealed)| {
                let v = self.open(&resource_context(&rtype, &rid), &sealed)?;
                Ok((rtype, v))
            })
            .collect()
    }

    /// The screen-pop summary; `None` when there is no such patient.
    pub async fn summary(&self, patient_id: &str) -> Result<Option<Summary>, PatientError> {
        let resources = self.resources(patient_id, summary::SUMMARY_TYPES).await?;
        if !resources.iter().any(|(t, _)| t == "Patient") {
            return Ok(None);
        }
        let contacts = self.contacts(patient_id, 5).await?;
        Ok(Some(summary::build(
            patient_id,
            &resources,
            contacts,
            now_ms(),
            &self.tables,
        )))
    }

    /// The patient's whole compartment as a FHIR collection Bundle.
    pub async fn export(&self, patient_id: &str) -> Result<Option<Value>, PatientError> {
        let resources = self.resources(patient_id, &[]).await?;
        if !resources.iter().any(|(t, _)| t == "Patient") {
            return Ok(None);
        }
        // The Patient first, so the bundle reads (and re-imports) naturally.
        let mut entries: Vec<Value> = resources
            .into_iter()
            .map(|(t, r)| serde_json::json!({"resource": r, "_t": t}))
            .collect();
        entries.sort_by_key(|e| e["_t"] != "Patient");
        for e in &mut entries {
            if let Value::Object(m) = e {
                m.remove("_t");
            }
        }
        Ok(Some(serde_json::json!({
            "resourceType": "Bundle",
            "type": "collection",
            "timestamp": rfc3339(now_ms()),
            "entry": entries,
        })))
    }

    async fn patients_by_index(
        &self,
        kind: &str,
        value: &str,
    ) -> Result<Vec<String>, PatientError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT rid FROM fhir_index WHERE kind = $1 AND digest = $2 AND rtype = 'Patient'",
        )
        .bind(kind)
        .bind(self.digest(kind, value))
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(|(r,)| r).collect())
    }

    async fn caller_match(&self, id: &str, verified: bool) -> Result<CallerMatch, PatientError> {
        let patient = self.resource("Patient", id).await?;
        Ok(CallerMatch {
            patient_id: id.to_string(),
            preferred_language: patient.as_ref().and_then(summary::preferred_language),
            verified,
        })
    }

    /// Caller identification by the calling number (any written form; normalized to E.164).
    /// Never `verified`: a number is not proof of identity.
    pub async fn lookup_by_phone(&self, number: &str) -> Result<Lookup, PatientError> {
        let Some(e164) = phone::to_e164(number, &self.default_cc) else {
            return Ok(Lookup::NotFound);
        };
        let ids = self.patients_by_index("phone", &e164).await?;
        Ok(match ids.as_slice() {
            [] => Lookup::NotFound,
            [id] => Lookup::Found(self.caller_match(id, false).await?),
            more => Lookup::Ambiguous { count: more.len() },
        })
    }

    /// Caller identification by medical record number and date of birth, as keyed in:
    /// `YYYY-MM-DD`, `YYYYMMDD` or `MMDDYYYY`. A match is `verified`.
    pub async fn lookup_by_mrn_dob(&self, mrn: &str, dob: &str) -> Result<Lookup, PatientError> {
        let Some(dob) = normalize_dob(dob) else {
            return Ok(Lookup::NotFound);
        };
        let mut found = Vec::new();
        for id in self.patients_by_index("mrn", mrn.trim()).await? {
            let patient = self.resource("Patient", &id).await?;
            if patient
                .as_ref()
                .and_then(|p| p.get("birthDate"))
                .and_then(Value::as_str)
                == Some(dob.as_str())
            {
                found.push(id);
            }
        }
        Ok(match found.as_slice() {
            [] => Lookup::NotFound,
            [id] => Lookup::Found(self.caller_match(id, true).await?),
            more => Lookup::Ambiguous { count: more.len() },
        })
    }

    /// Patients with this date of birth and family name (an agent's search). Matches carry
    /// no clinical data.
    pub async fn search_dob_name(
        &self,
        dob: &str,
        family: &str,
    ) -> Result<Vec<CallerMatch>, PatientError> {
        let Some(dob) = normalize_dob(dob) else {
            return Ok(vec![]);
        };
        let key = format!("{dob}|{}", bundle::name_key(family));
        let mut out = Vec::new();
        for id in self.patients_by_index("dob_name", &key).await? {
            out.push(self.caller_match(&id, false).await?);
        }
        Ok(out)
    }

    /// Appends a contact record (sealed) to a patient's history.
    pub async fn append_contact(
        &self,
        patient_id: &str,
        mut record: ContactRecord,
    ) -> Result<ContactRecord, PatientError> {
        if !self.exists(patient_id).await? {
            return Err(PatientError::NoPatient(patient_id.to_string()));
        }
        if record.channel.trim().is_empty() {
            return Err(PatientError::BadContact("channel is required".into()));
        }
        if let Some((field, max)) = record.over_limit() {
            return Err(PatientError::TooLong { field, max });
        }
        let at = if record.time.is_empty() {
            now_ms()
        } else {
            crate::db::parse_time(&record.time).ok_or_else(|| {
                PatientError::BadContact(format!("time `{}` is not RFC 3339", record.time))
            })?
        };
        record.time = rfc3339(at);
        record.id = hex::encode(rand::random::<[u8; 12]>());
        let sealed = self.keys.seal(
            &contact_context(&record.id),
            serde_json::to_vec(&record).unwrap_or_default().as_slice(),
        );
        sqlx::query(
            "INSERT INTO contacts (id, patient_id, started_at, sealed) VALUES ($1, $2, $3, $4)",
        )
        .bind(&record.id)
        .bind(patient_id)
        .bind(at)
        .bind(sealed)
        .execute(self.db.pool())
        .await?;
        Ok(record)
    }

    /// The newest `limit` contact records, newest first.
    pub async fn contacts(
        &self,
        patient_id: &str,
        limit: i64,
    ) -> Result<Vec<ContactRecord>, PatientError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, sealed FROM contacts WHERE patient_id = $1 ORDER BY started_at DESC, id LIMIT $2",
        )
        .bind(patient_id)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(|(id, sealed)| {
                let context = contact_context(&id);
                let v = self.open(&context, &sealed)?;
                serde_json::from_value(v).map_err(|_| PatientError::Corrupt { context })
            })
            .collect()
    }

    /// After `KeyRing::rotate`: re-wraps every stored data key not yet under the current
    /// master key (ciphertexts untouched). Returns how many values were re-wrapped.
    pub async fn reseal_all(&self) -> Result<u64, PatientError> {
        let mut n = 0;
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT rtype, rid, sealed FROM fhir_resources")
                .fetch_all(self.db.pool())
                .await?;
        for (rtype, rid, sealed) in rows {
            if self.keys.is_current(&sealed) {
                continue;
            }
            let context = resource_context(&rtype, &rid);
            let new = self
                .keys
                .reseal(&context, &sealed)
                .map_err(|source| PatientError::Sealed { context, source })?;
            // Only if unchanged since it was read: a server writing it meanwhile must not
            // lose its update to this copy (a second pass re-seals what it wrote, if needed).
            n += sqlx::query(
                "UPDATE fhir_resources SET sealed = $1 WHERE rtype = $2 AND rid = $3 AND sealed = $4",
            )
            .bind(new)
            .bind(rtype)
            .bind(rid)
            .bind(sealed)
            .execute(self.db.pool())
            .await?
            .rows_affected();
        }
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT id, sealed FROM contacts")
            .fetch_all(self.db.pool())
            .await?;
        for (id, sealed) in rows {
            if self.keys.is_current(&sealed) {
                continue;
            }
            let context = contact_context(&id);
            let new = self
                .keys
                .reseal(&context, &sealed)
                .map_err(|source| PatientError::Sealed { context, source })?;
            n += sqlx::query("UPDATE contacts SET sealed = $1 WHERE id = $2 AND sealed = $3")
                .bind(new)
                .bind(id)
                .bind(sealed)
                .execute(self.db.pool())
                .await?
                .rows_affected();
        }
        Ok(n)
    }
}

/// `YYYY-MM-DD`, `YYYYMMDD` or `MMDDYYYY` (as keyed on a US phone keypad) to `YYYY-MM-DD`.
pub fn normalize_dob(text: &str) -> Option<String> {
    let text = text.trim();
    if crate::db::parse_date(text).is_some() && text.len() == 10 {
        return Some(text.to_string());
    }
    let digits: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.len() != 8 {
        return None;
    }
    let candidates = [
        format!("{}-{}-{}", &digits[0..4], &digits[4..6], &digits[6..8]),
        format!("{}-{}-{}", &digits[4..8], &digits[0..2], &digits[2..4]),
    ];
    candidates
        .into_iter()
        .find(|c| crate::db::parse_date(c).is_some() && c.as_str() >= "1850")
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_of_birth_as_keyed() {
        assert_eq!(
            super::normalize_dob("1976-09-11").as_deref(),
            Some("1976-09-11")
        );
        assert_eq!(
            super::normalize_dob("19760911").as_deref(),
            Some("1976-09-11")
        );
        assert_eq!(
            super::normalize_dob("09111976").as_deref(),
            Some("1976-09-11")
        );
        assert_eq!(super::normalize_dob("1976"), None);
    }
}

/// A call (or one recording made on it) linked to the patient it is about.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallLink {
    pub call_id: String,
    pub patient_id: String,
    /// `None` for a link of the whole call.
    pub recording_id: Option<String>,
    pub linked_ms: i64,
}

/// Which patient a call and its recordings are about (table `call_patients`): opaque ids only,
/// nothing sealed. The call task links a call once the caller is identified; recording access
/// (patient-scoped for clinicians) and recording audit entries read it back.
impl PatientStore {
    /// Links `call_id` (and `recording_id`, when the call was recorded) to `patient_id`.
    /// Linking the same call (and recording) again moves it to the new patient: a caller first
    /// matched by number and then verified by MRN ends on the verified patient.
    pub async fn link_call(
        &self,
        call_id: &str,
        patient_id: &str,
        recording_id: Option<&str>,
    ) -> Result<(), PatientError> {
        sqlx::query(
            "INSERT INTO call_patients (call_id, recording_id, patient_id, linked_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (call_id, recording_id) DO UPDATE SET patient_id = excluded.patient_id, \
             linked_at = excluded.linked_at",
        )
        .bind(call_id)
        .bind(recording_id.unwrap_or(""))
        .bind(patient_id)
        .bind(now_ms())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The patient a recording is about, when its call was linked with the recording's id.
    pub async fn patient_of_recording(
        &self,
        recording_id: &str,
    ) -> Result<Option<String>, PatientError> {
        if recording_id.is_empty() {
            return Ok(None);
        }
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT patient_id FROM call_patients WHERE recording_id = $1 ORDER BY linked_at DESC, call_id LIMIT 1",
        )
        .bind(recording_id)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.map(|(p,)| p))
    }

    /// The patient a call is about: the latest link of the call or any of its recordings (in
    /// the same millisecond, the call's own link).
    pub async fn patient_of_call(&self, call_id: &str) -> Result<Option<String>, PatientError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT patient_id FROM call_patients WHERE call_id = $1 \
             ORDER BY linked_at DESC, recording_id LIMIT 1",
        )
        .bind(call_id)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.map(|(p,)| p))
    }

    /// Every call and recording linked to a patient, newest first.
    pub async fn calls_of_patient(&self, patient_id: &str) -> Result<Vec<CallLink>, PatientError> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT call_id, recording_id, patient_id, linked_at FROM call_patients \
             WHERE patient_id = $1 ORDER BY linked_at DESC, call_id, recording_id",
        )
        .bind(patient_id)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(call_id, rec, patient_id, linked_ms)| CallLink {
                call_id,
                patient_id,
                recording_id: (!rec.is_empty()).then_some(rec),
                linked_ms,
            })
            .collect())
    }
}
