//! `/api/v1/patients/...` and `/api/v1/fhir`: caller lookup, the screen-pop summary, export,
//! import, contact history and break-glass. Every PHI read and write is audited after the
//! permission table allowed it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::{ApiError, ApiState, Caller};
use super::extract::{JsonBody, QueryParams};
use crate::audit::{Event, action};
use crate::auth::Action;
use crate::patient::{ContactRecord, Lookup};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LookupQuery {
    pub phone: Option<String>,
    pub mrn: Option<String>,
    pub dob: Option<String>,
    pub family: Option<String>,
}

/// `GET /api/v1/patients/lookup?phone=...` | `?mrn=...&dob=...` | `?dob=...&family=...`:
/// id, preferred language and verified flag only.
pub(crate) async fn lookup(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
    QueryParams(q): QueryParams<LookupQuery>,
) -> Result<Json<Value>, ApiError> {
    s.require(&caller, Action::PatientLookup, None).await?;
    let (result, by) = match (&q.phone, &q.mrn, &q.dob, &q.family) {
        (Some(phone), None, None, None) => (s.patients.lookup_by_phone(phone).await?, "phone"),
        (None, Some(mrn), Some(dob), None) => {
            (s.patients.lookup_by_mrn_dob(mrn, dob).await?, "mrn_dob")
        }
        (None, None, Some(dob), Some(family)) => {
            let matches = s.patients.search_dob_name(dob, family).await?;
            for m in &matches {
                s.audit
                    .append(
                        Event::new(caller.name(), action::PATIENT_LOOKUP, "success")
                            .patient(&m.patient_id)
                            .detail(json!({"by": "dob_name"})),
                    )
                    .await?;
            }
            return Ok(Json(json!({"result": "matches", "matches": matches})));
        }
        _ => {
            return Err(ApiError::bad_request(
                "give phone, or mrn and dob, or dob and family",
            ));
        }
    };
    let mut event = Event::new(caller.name(), action::PATIENT_LOOKUP, "success");
    match &result {
        Lookup::Found(m) => event = event.patient(&m.patient_id).detail(json!({"by": by})),
        Lookup::Ambiguous { count } => event = event.detail(json!({"by": by, "ambiguous": count})),
        Lookup::NotFound => event = event.detail(json!({"by": by, "found": false})),
    }
    s.audit.append(event).await?;
    Ok(Json(serde_json::to_value(result).unwrap_or_default()))
}

fn read_event(
    caller: &Caller,
    what: &'static str,
    patient: &str,
    view: &str,
    glass: bool,
) -> Event {
    Event::new(caller.name(), what, "success")
        .patient(patient)
        .detail(json!({"view": view, "break_glass": glass, "via": caller.via}))
}

/// `GET /api/v1/patients/{id}/summary`: the screen-pop.
pub(crate) async fn summary(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let grant = s
        .require(&caller, Action::PatientSummary, Some(&id))
        .await?;
    let summary = s
        .patients
        .summary(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no patient `{id}`")))?;
    s.audit
        .append(read_event(
            &caller,
            action::PATIENT_READ,
            &id,
            "summary",
            grant.break_glass,
        ))
        .await?;
    let mut body = serde_json::to_value(summary).unwrap_or_default();
    body["break_glass"] = Value::Bool(grant.break_glass);
    Ok(Json(body))
}

/// `GET /api/v1/patients/{id}/contacts`: contact history (newest first).
pub(crate) async fn contacts(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let grant = s
        .require(&caller, Action::PatientSummary, Some(&id))
        .await?;
    if !s.patients.exists(&id).await? {
        return Err(ApiError::not_found(format!("no patient `{id}`")));
    }
    let list = s.patients.contacts(&id, 200).await?;
    s.audit
        .append(read_event(
            &caller,
            action::PATIENT_READ,
            &id,
            "contacts",
            grant.break_glass,
        ))
        .await?;
    Ok(Json(json!({"patient_id": id, "contacts": list})))
}

/// `GET /api/v1/patients/{id}/bundle`: the whole record as a FHIR collection Bundle.
pub(crate) async fn export(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let grant = s.require(&caller, Action::PatientExport, Some(&id)).await?;
    let bundle = s
        .patients
        .export(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no patient `{id}`")))?;
    s.audit
        .append(read_event(
            &caller,
            action::PATIENT_EXPORT,
            &id,
            "bundle",
            grant.break_glass,
        ))
        .await?;
    Ok((
        [(header::CONTENT_TYPE, "application/fhir+json")],
        bundle.to_string(),
    )
        .into_response())
}

/// `POST /api/v1/fhir`: a transaction or collection Bundle, imported whole or not at all.
pub(crate) async fn import(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
    JsonBody(bundle): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    s.require(&caller, Action::PatientImport, None).await?;
    let report = match s.patients.import_bundle(&bundle).await {
        Ok(r) => r,
        Err(e) => {
            s.audit
                .append(
                    // The error may quote an identifier from the bundle: sealed, not in clear.
                    Event::new(caller.name(), action::PATIENT_WRITE, "failure")
                        .detail(json!({"import": "bundle"}))
                        .secret(&e.to_string()),
                )
                .await?;
            return Err(e.into());
        }
    };
    for p in &report.patients {
        s.audit
            .append(
                Event::new(caller.name(), action::PATIENT_WRITE, "success")
                    .patient(p)
                    .detail(json!({"import": "bundle", "resources": report.resources})),
            )
            .await?;
    }
    let mut body = serde_json::to_value(&report).unwrap_or_default();
    // A discharge in the bundle starts its follow-up ([workflows] on_discharge).
    if let Some((trigger, runner)) = s.discharges.get() {
        let done = trigger
            .on_import(&report.care, crate::db::now_ms(), Some(runner))
            .await;
        s.audit_follow_ups(caller.name(), &report, &done).await?;
        body["follow_ups"] = json!({
            "started": done.started,
            "started_before": done.repeated,
            "failed": done.failed.len(),
        });
    }
    Ok(Json(body))
}

/// What a client may say about a contact. Who wrote it and when are not among them: the
/// author is the signed-in user and the time is the server's clock.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewContact {
    pub channel: String,
    pub duration_secs: Option<u64>,
    pub reason: Option<String>,
    pub outcome: Option<String>,
    pub notes: Option<String>,
    pub recording_id: Option<String>,
    pub call_id: Option<String>,
}

/// `POST /api/v1/patients/{id}/contacts`: append a contact record.
pub(crate) async fn append_contact(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<NewContact>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let grant = s.require(&caller, Action::ContactAppend, Some(&id)).await?;
    let record = ContactRecord {
        channel: body.channel,
        duration_secs: body.duration_secs,
        reason: body.reason,
        outcome: body.outcome,
        notes: body.notes,
        recording_id: body.recording_id,
        call_id: body.call_id,
        user: Some(caller.name().to_string()),
        ..ContactRecord::default()
    };
    let saved = s.patients.append_contact(&id, record).await?;
    s.audit
        .append(
            Event::new(caller.name(), action::CONTACT_WRITE, "success")
                .patient(&id)
                .detail(json!({"contact": saved.id, "call_id": saved.call_id, "break_glass": grant.break_glass})),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(saved).unwrap_or_default()),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BreakGlassBody {
    #[serde(default)]
    pub reason: String,
}

/// `POST /api/v1/patients/{id}/break-glass` `{"reason": "..."}`: emergency access.
pub(crate) async fn break_glass(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<BreakGlassBody>,
) -> Result<Json<Value>, ApiError> {
    s.require(&caller, Action::BreakGlass, Some(&id)).await?;
    if !s.patients.exists(&id).await? {
        return Err(ApiError::not_found(format!("no patient `{id}`")));
    }
    let until = s
        .auth
        .break_glass(&caller.principal, &id, &body.reason)
        .await?;
    Ok(Json(json!({
        "patient_id": id,
        "break_glass": true,
        "expires": crate::db::rfc3339(until),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActiveContactBody {
    pub patient_id: String,
    /// The user handling the call (agent, clinician or supervisor); the caller when absent.
    pub user: Option<String>,
}

/// `PUT /api/v1/calls/{call_id}/contact` `{"patient_id", "user"}`: which patient a live call
/// is about and who handles it. The routing integration (service role) sets it for any live
/// call; the user handling a call may re-point it at another patient (the caller turned out
/// to be someone else), for themselves only. A call id that is not live is 404.
pub(crate) async fn set_active_contact(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
    Path(call_id): Path<String>,
    JsonBody(body): JsonBody<ActiveContactBody>,
) -> Result<StatusCode, ApiError> {
    s.require_call_link(&caller, &call_id, true).await?;
    let user = body.user.as_deref().unwrap_or(caller.name());
    if caller.principal.role != crate::auth::Role::Service && user != caller.name() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "you may link a call you handle only to yourself; routing hands calls to others",
        ));
    }
    if !s.patients.exists(&body.patient_id).await? {
        return Err(ApiError::not_found(format!(
            "no patient `{}`",
            body.patient_id
        )));
    }
    s.auth
        .set_active_contact(&call_id, &body.patient_id, user, caller.name())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/calls/{call_id}/contact`: the patient a call is about and who handles it, for
/// the user handling it (the screen-pop starts here: the agent console reads the patient's
/// summary with the id) and for services; 404 when the call has no patient.
pub(crate) async fn active_contact(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
    Path(call_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    s.require_call_link(&caller, &call_id, false).await?;
    let contact =
        s.auth.active_contact(&call_id).await?.ok_or_else(|| {
            ApiError::not_found(format!("no active contact for call `{call_id}`"))
        })?;
    Ok(Json(json!({
        "call_id": call_id,
        "patient_id": contact.patient_id,
        "user": contact.user,
        "wrap_up_until": contact.ends_ms.map(crate::db::rfc3339),
    })))
}

/// `DELETE /api/v1/calls/{call_id}/contact`: the call left that user (or their wrap-up is
/// done): the link ends now.
pub(crate) async fn clear_active_contact(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
    Path(call_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.require_call_link(&caller, &call_id, false).await?;
    match s.auth.clear_active_contact(&call_id, caller.name()).await? {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::not_found(format!(
            "no active contact for call `{call_id}`"
        ))),
    }
}

/// `GET /api/v1/me`.
pub(crate) async fn me(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
    _h: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    s.require(&caller, Action::SelfRead, None).await?;
    Ok(Json(
        json!({"name": caller.name(), "role": caller.principal.role, "via": caller.via}),
    ))
}
