//! `/api/v1/workflows/...`: start a care-coordination workflow for a patient and follow its
//! execution. Starting and reading are audited with the patient the input names.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::access::{ApiError, ApiState, Caller};
use super::extract::{JsonBody, QueryParams};
use crate::audit::{Event, action};
use crate::auth::Action;
use crate::workflow::runner::{RunnerError, Started, Workflows};
use crate::workflow::store::StoreError;

#[derive(Clone)]
pub(crate) struct WorkflowApi {
    pub api: Arc<ApiState>,
    pub workflows: Workflows,
    /// `[workflows.pharmacy] url`: where approved refills are sent (None: the record only).
    pub pharmacy: Option<String>,
}

impl FromRef<WorkflowApi> for Arc<ApiState> {
    fn from_ref(s: &WorkflowApi) -> Arc<ApiState> {
        s.api.clone()
    }
}

pub(crate) fn router(api: Arc<ApiState>, workflows: Workflows, pharmacy: Option<String>) -> Router {
    Router::new()
        .route("/api/v1/workflows", get(list))
        .route("/api/v1/workflows/{name}/executions", post(start))
        .route("/api/v1/workflows/executions", get(executions))
        .route("/api/v1/workflows/executions/{id}", get(execution))
        .route("/api/v1/workflows/executions/{id}/stop", post(stop))
        .route("/api/v1/care-tasks", get(care_tasks))
        .route("/api/v1/care-tasks/{id}/done", post(care_task_done))
        .route("/api/v1/care-tasks/{id}/decision", post(care_task_decision))
        .route("/api/v1/notifications", get(notifications))
        .route("/api/v1/notifications/{id}/retry", post(notification_retry))
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(super::v1::body_limit))
        .with_state(WorkflowApi {
            api,
            workflows,
            pharmacy,
        })
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NoExecution(_) => ApiError::not_found(e.to_string()),
        other => ApiError::internal(other),
    }
}

/// `GET /api/v1/workflows`: the workflows this server runs, by name.
async fn list(State(s): State<WorkflowApi>, caller: Caller) -> Result<Json<Value>, ApiError> {
    s.api.require(&caller, Action::WorkflowRead, None).await?;
    let names: Vec<&str> = s.workflows.catalog().names().collect();
    Ok(Json(json!({ "workflows": names })))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartQuery {
    /// The execution's name: a repeated start under it starts nothing new.
    pub name: Option<String>,
}

/// `POST /api/v1/workflows/{name}/executions[?name=NAME]` with the execution's input (a
/// JSON object; its `patient_id` names the patient): 201 with the execution and its
/// `Location`; 200 with the same for a start repeated under a name with the same input; 409
/// when the name was started with another input.
async fn start(
    State(s): State<WorkflowApi>,
    caller: Caller,
    Path(name): Path<String>,
    QueryParams(q): QueryParams<StartQuery>,
    JsonBody(input): JsonBody<Value>,
) -> Result<Response, ApiError> {
    if !input.is_object() {
        return Err(ApiError::bad_request(
            "the execution's input must be a JSON object",
        ));
    }
    let patient = input.get("patient_id").map(|p| match p.as_str() {
        Some(p) if !p.is_empty() => Ok(p.to_string()),
        _ => Err(ApiError::bad_request(
            "`patient_id` must be a non-empty string",
        )),
    });
    let patient = patient.transpose()?;
    s.api
        .require(&caller, Action::WorkflowStart, patient.as_deref())
        .await?;
    if let Some(p) = &patient
        && !s.api.patients.exists(p).await?
    {
        return Err(ApiError::not_found(format!("no patient `{p}`")));
    }
    let started = match s
        .workflows
        .start_execution(&name, q.name.as_deref(), input)
        .await
    {
        Ok(started) => started,
        Err(RunnerError::NoWorkflow(n)) => {
            return Err(ApiError::not_found(format!("no workflow named `{n}`")));
        }
        Err(e @ RunnerError::NameTaken(_)) => {
            return Err(ApiError::new(StatusCode::CONFLICT, e.to_string()));
        }
        Err(e @ RunnerError::BadName) => return Err(ApiError::bad_request(e.to_string())),
        Err(RunnerError::Store(e)) => return Err(store_error(e)),
        Err(
            e @ (RunnerError::NoDischargeWorkflow(_)
            | RunnerError::NoBuiltin { .. }
            | RunnerError::Rules(_)
            | RunnerError::Appointments(_)),
        ) => return Err(ApiError::internal(e)),
    };
    let (status, summary) = match started {
        Started::New(s) => (StatusCode::CREATED, s),
        Started::Existing(s) => (StatusCode::OK, s),
    };
    let mut event = Event::new(caller.name(), action::WORKFLOW_START, "success").detail(
        json!({"workflow": name, "execution": summary.id, "repeat": status == StatusCode::OK}),
    );
    if let Some(p) = &patient {
        event = event.patient(p);
    }
    s.api.audit.append(event).await?;
    let location = format!("/api/v1/workflows/executions/{}", summary.id);
    Ok((
        status,
        [(header::LOCATION, location)],
        Json(serde_json::to_value(summary).unwrap_or_default()),
    )
        .into_response())
}

/// `GET /api/v1/workflows/executions/{id}`: status, current state, timer, outcome and the
/// history in Step Functions' event names.
async fn execution(
    State(s): State<WorkflowApi>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = s.workflows.store();
    // Who may read is decided before anything about the execution is told, its existence
    // included.
    s.api.require(&caller, Action::WorkflowRead, None).await?;
    let summary = store.summary(&id).await.map_err(store_error)?;
    let history = store.history(&id).await.map_err(store_error)?;
    let mut event = Event::new(caller.name(), action::WORKFLOW_READ, "success")
        .detail(json!({"execution": id}));
    if let Some(p) = &summary.patient_id {
        event = event.patient(p);
    }
    s.api.audit.append(event).await?;
    let mut body = serde_json::to_value(summary).unwrap_or_default();
    body["history"] = serde_json::to_value(history).unwrap_or_default();
    Ok(Json(body))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    pub status: Option<String>,
    pub patient: Option<String>,
    pub limit: Option<i64>,
}

/// `GET /api/v1/workflows/executions?status=&patient=&limit=`: executions, newest first,
/// without their outcomes. Audited as one read (with the patient when one is asked for).
async fn executions(
    State(s): State<WorkflowApi>,
    caller: Caller,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    s.api
        .require(&caller, Action::WorkflowRead, q.patient.as_deref())
        .await?;
    let status = match q.status.as_deref() {
        None | Some("all") => None,
        Some(st) if crate::workflow::store::STATUSES.contains(&st) => Some(st),
        Some(_) => {
            return Err(ApiError::bad_request(
                "status is RUNNING, SUCCEEDED, FAILED, ABORTED or all",
            ));
        }
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit is 1 to 1000"));
    }
    let list = s
        .workflows
        .store()
        .list(status, q.patient.as_deref(), limit)
        .await
        .map_err(store_error)?;
    let mut event = Event::new(caller.name(), action::WORKFLOW_READ, "success")
        .detail(json!({"list": list.len()}));
    if let Some(p) = &q.patient {
        event = event.patient(p);
    }
    s.api.audit.append(event).await?;
    Ok(Json(json!({ "executions": list })))
}

/// `POST /api/v1/workflows/executions/{id}/stop`: no further step is taken (a task being
/// called now cannot be called back; its answer is dropped). 409 when it already ended.
async fn stop(
    State(s): State<WorkflowApi>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    s.api.require(&caller, Action::WorkflowStart, None).await?;
    let store = s.workflows.store();
    let before = store.summary(&id).await.map_err(store_error)?;
    let cause = format!("stopped by {}", caller.name());
    if !store
        .stop(&id, &cause, crate::db::now_ms())
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("execution {id} already ended ({})", before.status),
        ));
    }
    let mut event = Event::new(caller.name(), action::WORKFLOW_STOP, "success")
        .detail(json!({"execution": id, "state": before.state}));
    if let Some(p) = &before.patient_id {
        event = event.patient(p);
    }
    s.api.audit.append(event).await?;
    let after = store.summary(&id).await.map_err(store_error)?;
    Ok(Json(serde_json::to_value(after).unwrap_or_default()))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CareTaskQuery {
    pub status: Option<String>,
    pub patient: Option<String>,
    pub limit: Option<i64>,
}

/// `GET /api/v1/care-tasks?status=OPEN|DONE|all&patient=&limit=`: the work list, oldest
/// first, with what the workflow said (the reason). Each patient listed is audited as read.
async fn care_tasks(
    State(s): State<WorkflowApi>,
    caller: Caller,
    QueryParams(q): QueryParams<CareTaskQuery>,
) -> Result<Json<Value>, ApiError> {
    s.api
        .require(&caller, Action::CareTaskRead, q.patient.as_deref())
        .await?;
    let status = match q.status.as_deref() {
        None => Some(crate::workflow::care_tasks::OPEN),
        Some("all") => None,
        Some(st @ ("OPEN" | "DONE")) => Some(st),
        Some(_) => {
            return Err(ApiError::bad_request(
                "status is OPEN (default), DONE or all",
            ));
        }
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit is 1 to 1000"));
    }
    let list = s
        .api
        .care_tasks
        .list(status, q.patient.as_deref(), limit)
        .await
        .map_err(store_error)?;
    let patients: std::collections::BTreeSet<&str> = list
        .iter()
        .filter_map(|t| t.patient_id.as_deref())
        .collect();
    for p in patients {
        s.api
            .audit
            .append(
                Event::new(caller.name(), action::CARE_TASK_READ, "success")
                    .patient(p)
                    .detail(json!({"view": "work list"})),
            )
            .await?;
    }
    Ok(Json(json!({ "care_tasks": list })))
}

/// `POST /api/v1/care-tasks/{id}/done`: the item is dealt with (204); 409 when it was done.
async fn care_task_done(
    State(s): State<WorkflowApi>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.api.require(&caller, Action::CareTaskDone, None).await?;
    let tasks = &s.api.care_tasks;
    let Some(patient) = tasks.patient_of(&id).await.map_err(store_error)? else {
        return Err(ApiError::not_found(format!("no care task `{id}`")));
    };
    if !tasks
        .complete(&id, caller.name(), None, crate::db::now_ms())
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("care task {id} is done already"),
        ));
    }
    let mut event = Event::new(caller.name(), action::CARE_TASK_DONE, "success")
        .detail(json!({"care_task": id}));
    if let Some(p) = &patient {
        event = event.patient(p);
    }
    s.api.audit.append(event).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Decision {
    /// `approved` or `declined`.
    pub decision: String,
}

/// Writes an approval's `orders` into the patient's record (audited) and queues them for the
/// pharmacy when one is configured; true when queued.
async fn carry_out(
    s: &WorkflowApi,
    caller: &Caller,
    id: &str,
    patient: &str,
    orders: &[Value],
    now_ms: i64,
) -> Result<bool, ApiError> {
    let bundle = json!({"resourceType": "Bundle", "type": "collection",
        "entry": orders.iter().map(|o| json!({"resource": o})).collect::<Vec<_>>()});
    let written = s.api.patients.import_bundle(&bundle).await;
    s.api
        .audit
        .append(
            Event::new(
                caller.name(),
                action::PATIENT_WRITE,
                if written.is_ok() {
                    "success"
                } else {
                    "failure"
                },
            )
            .patient(patient)
            .detail(
                json!({"care_task": id, "resources": orders.len(), "purpose": "refill approved"}),
            ),
        )
        .await?;
    written.map_err(ApiError::internal)?;
    let Some(url) = &s.pharmacy else {
        return Ok(false);
    };
    let notice = crate::notify::Notice {
        id: format!("care-task:{id}:pharmacy"),
        channel: crate::notify::Channel::Fhir,
        target: vec![url.clone()],
        subject: String::new(),
        body: crate::workflow::medication::pharmacy_transaction(orders).to_string(),
    };
    s.api
        .outbox
        .put(&notice, now_ms)
        .await
        .map_err(ApiError::internal)?;
    Ok(true)
}

/// `POST /api/v1/care-tasks/{id}/decision` `{"decision": "approved" | "declined"}`: a
/// clinician decides a refill request (the brief's UC2). Approved, the refills become
/// MedicationRequests (`intent: order`) in the patient's record and, with
/// `[workflows.pharmacy] url`, a FHIR transaction to the pharmacy, sent through the outbox
/// (retried until taken; conditional creates, so a resend orders nothing twice). 200 with the
/// orders; 409 when the item is no refill request or was decided already. Audited.
async fn care_task_decision(
    State(s): State<WorkflowApi>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(d): JsonBody<Decision>,
) -> Result<Json<Value>, ApiError> {
    use crate::workflow::medication::refill_orders;
    s.api.require(&caller, Action::CareTaskDecide, None).await?;
    if !matches!(d.decision.as_str(), "approved" | "declined") {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "decision is `approved` or `declined`",
        ));
    }
    let tasks = &s.api.care_tasks;
    let Some(item) = tasks.get(&id).await.map_err(store_error)? else {
        return Err(ApiError::not_found(format!("no care task `{id}`")));
    };
    if item.detail.get("request").and_then(Value::as_str) != Some("medication_refill") {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "care task {id} is no refill request: close it with POST /api/v1/care-tasks/{id}/done"
            ),
        ));
    }
    let Some(patient) = item.patient_id.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("refill request {id} names no patient"),
        ));
    };
    let now_ms = crate::db::now_ms();
    if !tasks
        .complete(&id, caller.name(), Some(&d.decision), now_ms)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("care task {id} is done already"),
        ));
    }
    let mut orders = Vec::new();
    let mut sent_to_pharmacy = false;
    if d.decision == "approved" {
        let due = item
            .detail
            .get("refills_due")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        orders = refill_orders(
            &id,
            &patient,
            &due,
            caller.name(),
            &crate::db::rfc3339(now_ms),
        );
        match carry_out(&s, &caller, &id, &patient, &orders, now_ms).await {
            Ok(sent) => sent_to_pharmacy = sent,
            Err(e) => {
                // Not carried out: the item opens again, for the clinician to decide again.
                tasks.reopen(&id).await.map_err(store_error)?;
                return Err(e);
            }
        }
    }
    s.api
        .audit
        .append(
            Event::new(caller.name(), action::CARE_TASK_DONE, "success")
                .patient(&patient)
                .detail(
                    json!({"care_task": id, "decision": d.decision, "pharmacy": sent_to_pharmacy}),
                ),
        )
        .await?;
    Ok(Json(json!({
        "care_task": id,
        "decision": d.decision,
        "orders": orders,
        "pharmacy": if sent_to_pharmacy { "queued" } else { "none" },
    })))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NotificationQuery {
    pub status: Option<String>,
    pub limit: Option<i64>,
}

/// `GET /api/v1/notifications?status=pending|sent|failed|all&limit=`: the notices Careline
/// owes or sent (care-task webhooks and e-mail, pharmacy orders), newest first: id, channel,
/// recipients, status, tries, last error. Bodies are not shown (an order names the patient).
async fn notifications(
    State(s): State<WorkflowApi>,
    caller: Caller,
    QueryParams(q): QueryParams<NotificationQuery>,
) -> Result<Json<Value>, ApiError> {
    s.api
        .require(&caller, Action::NotificationManage, None)
        .await?;
    let status = match q.status.as_deref() {
        None | Some("all") => None,
        Some(st @ ("pending" | "sent" | "failed")) => Some(st),
        Some(_) => {
            return Err(ApiError::bad_request(
                "status is pending, sent, failed or all (default)",
            ));
        }
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit is 1 to 1000"));
    }
    let list = s
        .api
        .outbox
        .list(status, limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "notifications": list })))
}

/// `POST /api/v1/notifications/{id}/retry`: a notice given up on is sent again, with a fresh
/// round of tries (204); 404 for no such notice, 409 when it was not given up on.
async fn notification_retry(
    State(s): State<WorkflowApi>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.api
        .require(&caller, Action::NotificationManage, None)
        .await?;
    let outbox = &s.api.outbox;
    if outbox.get(&id).await.map_err(ApiError::internal)?.is_none() {
        return Err(ApiError::not_found(format!("no notification `{id}`")));
    }
    if !outbox
        .retry(&id, crate::db::now_ms())
        .await
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("notification {id} was not given up on"),
        ));
    }
    tracing::info!(notice = %id, by = caller.name(), "notice to be sent again");
    Ok(StatusCode::NO_CONTENT)
}
