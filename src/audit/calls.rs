//! What calls tell the rest of Careline: call start and end into the audit trail, the end of
//! a call's active-contact association (so an agent's access to the patient ends with the
//! call), caller identification for flows (`careline:patient-lookup`, GetCustomerProfile),
//! and the identified patient's contact history. Calls appear by their SIP Call-ID only: the
//! caller's number is PHI and never written here.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::json;

use super::{Audit, Event, action};
use crate::auth::{Auth, LiveCalls};
use crate::call::{CallEnd, CallHooks, Identify, IdentifyQuery};
use crate::patient::summary::ContactRecord;
use crate::patient::{Lookup, PatientStore};

/// The actor the audit trail names for what the IVR does on its own.
const IVR: &str = "system:ivr";

pub(crate) struct CallEvents {
    pub audit: Audit,
    pub auth: Arc<Auth>,
    pub patients: PatientStore,
    /// Where each answered call's record goes when it ends.
    pub records: crate::call_records::CallRecords,
    /// Calls between start and end, updated in order by the call tasks themselves: a lookup
    /// that finishes after its call ended must not leave the patient "on a call", and the API
    /// links patients only to calls in here.
    pub live: Arc<LiveCalls>,
}

impl CallEvents {
    pub(crate) fn new(
        audit: Audit,
        auth: Arc<Auth>,
        patients: PatientStore,
        records: crate::call_records::CallRecords,
    ) -> CallEvents {
        CallEvents {
            audit,
            live: auth.live_calls().clone(),
            auth,
            patients,
            records,
        }
    }
}

impl CallHooks for CallEvents {
    fn call_started(&self, call_id: &str) {
        self.live.insert(call_id);
        let audit = self.audit.clone();
        let call_id = call_id.to_string();
        tokio::spawn(async move {
            audit
                .record(
                    Event::new("system", action::CALL_START, "success")
                        .detail(json!({"call_id": call_id})),
                )
                .await;
        });
    }

    fn call_ended(&self, end: CallEnd) {
        self.live.remove(&end.call_id);
        let audit = self.audit.clone();
        let auth = self.auth.clone();
        let patients = self.patients.clone();
        let records = self.records.clone();
        tokio::spawn(async move {
            // The handling user keeps the patient for the wrap-up time, then the link ends.
            let contact = auth.end_call_contact(&end.call_id, "system").await;
            let mut event = Event::new("system", action::CALL_END, "success")
                .detail(json!({"call_id": end.call_id, "cause": end.cause}));
            let patient = match contact {
                Ok(Some(c)) => Some(c.patient_id),
                Ok(None) => end.patient.clone(),
                Err(e) => {
                    tracing::error!(error = %e, "could not end the call's active contact");
                    end.patient.clone()
                }
            };
            if let Some(p) = &patient {
                event = event.patient(p);
            }
            audit.record(event).await;
            if let Err(e) = records.insert(&end, patient.is_some()).await {
                tracing::error!(error = %e, call = %end.call_id, "could not write the call record");
            }
            if let Some(p) = patient {
                append_history(&patients, &audit, &p, &end).await;
            }
        });
    }

    fn link_patient(&self, call_id: &str, patient_id: &str) -> BoxFuture<'static, ()> {
        let (audit, auth, patients) =
            (self.audit.clone(), self.auth.clone(), self.patients.clone());
        let (call_id, patient) = (call_id.to_string(), patient_id.to_string());
        Box::pin(async move {
            if let Err(e) = patients.link_call(&call_id, &patient, None).await {
                tracing::error!(error = %e, "could not link the call to its patient");
            }
            if let Err(e) = auth
                .set_unhandled_contact(&call_id, &patient, "system")
                .await
            {
                tracing::error!(error = %e, "could not note the call's patient");
            }
            audit
                .record(
                    Event::new("system", action::CALL_PLACE, "success")
                        .patient(&patient)
                        .detail(json!({"call_id": call_id, "reason": "callback"})),
                )
                .await;
        })
    }

    fn unlink_patient(&self, call_id: &str) -> BoxFuture<'static, ()> {
        let auth = self.auth.clone();
        let call_id = call_id.to_string();
        Box::pin(async move {
            if let Err(e) = auth.clear_active_contact(&call_id, "system").await {
                tracing::error!(error = %e, "could not end the call's active contact");
            }
        })
    }

    fn identify(&self, call_id: &str, query: IdentifyQuery) -> BoxFuture<'static, Identify> {
        let audit = self.audit.clone();
        let auth = self.auth.clone();
        let patients = self.patients.clone();
        let live = self.live.clone();
        let call_id = call_id.to_string();
        Box::pin(async move {
            let (by, result) = match (&query.mrn, &query.dob, &query.phone) {
                (Some(mrn), Some(dob), _) => {
                    ("mrn_dob", patients.lookup_by_mrn_dob(mrn, dob).await)
                }
                (Some(_), None, _) => {
                    return Identify::Failed("an MRN lookup needs `dob` too".into());
                }
                (None, _, Some(phone)) => ("phone", patients.lookup_by_phone(phone).await),
                (None, _, None) => return Identify::NotFound,
            };
            let found = match result {
                Ok(Lookup::Found(m)) => Identify::Found {
                    patient_id: m.patient_id,
                    preferred_language: m.preferred_language,
                    verified: m.verified,
                },
                Ok(Lookup::Ambiguous { .. }) => Identify::Ambiguous,
                Ok(Lookup::NotFound) => Identify::NotFound,
                Err(e) => {
                    tracing::error!(error = %e, "patient lookup failed");
                    return Identify::Failed("the patient store did not answer".into());
                }
            };
            let mut event = Event::new(IVR, action::PATIENT_LOOKUP, "success");
            let outcome = match &found {
                Identify::Found { verified, .. } => json!({"found": true, "verified": verified}),
                Identify::Ambiguous => json!({"found": false, "ambiguous": true}),
                _ => json!({"found": false}),
            };
            if let Some(id) = found.patient_id() {
                event = event.patient(id);
                // The call (and so its recordings) is now about this patient: who may hear
                // the recordings follows from it.
                if let Err(e) = patients.link_call(&call_id, id, None).await {
                    tracing::error!(error = %e, "could not link the call to its patient");
                }
                // While the call lasts, the patient is on a call (supervisors may look);
                // the association ends with the call like an agent's.
                if let Err(e) = auth.set_unhandled_contact(&call_id, id, IVR).await {
                    tracing::error!(error = %e, "could not note the call's patient");
                }
                if !live.contains(&call_id)
                    && let Err(e) = auth.clear_active_contact(&call_id, "system").await
                {
                    tracing::error!(error = %e, "could not end the call's active contact");
                }
            }
            event = event.detail(json!({"call_id": call_id, "by": by, "result": outcome}));
            if let Err(e) = audit.append(event).await {
                // Unaudited access to PHI is not allowed: the flow gets the error branch.
                tracing::error!(error = %e, "could not audit a patient lookup");
                return Identify::Failed("the audit trail did not answer".into());
            }
            found
        })
    }
}

/// The product brief's `update_patient_contact_history`: one record per call.
async fn append_history(patients: &PatientStore, audit: &Audit, patient: &str, end: &CallEnd) {
    let outcome = match &end.queue {
        Some(q) => format!("{} (queue {q})", end.cause),
        None => end.cause.to_string(),
    };
    let mut record = ContactRecord {
        time: end.answered_at.to_string(),
        channel: "voice".into(),
        duration_secs: Some(end.duration.as_secs()),
        reason: end.reason.clone(),
        outcome: Some(outcome),
        recording_id: end.recordings.last().cloned(),
        call_id: Some(end.call_id.clone()),
        ..ContactRecord::default()
    };
    // The reason comes from the flow (a Lambda may have set it): kept, within the limits.
    record.truncate_to_limits();
    match patients.append_contact(patient, record).await {
        Ok(saved) => {
            audit
                .record(
                    Event::new(IVR, action::CONTACT_WRITE, "success")
                        .patient(patient)
                        .detail(json!({"call_id": end.call_id, "contact": saved.id})),
                )
                .await;
        }
        Err(e) => tracing::error!(error = %e, "could not append the call to the contact history"),
    }
}
