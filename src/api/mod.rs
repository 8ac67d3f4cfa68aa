//! The HTTP side: health, Prometheus metrics, the `/api/v1` JSON API (patients, access, audit,
//! recordings) and the sign-in pages.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::call::CallServices;

pub mod access;
pub(crate) mod audit;
pub(crate) mod browser;
pub(crate) mod call_records;
pub(crate) mod callbacks;
pub(crate) mod calls;
pub(crate) mod extract;
pub(crate) mod https;
pub(crate) mod monitor;
pub(crate) mod openapi;
pub(crate) mod patients;
pub(crate) mod queues;
pub(crate) mod range;
pub(crate) mod recordings;
pub(crate) mod rooms;
pub(crate) mod serve;
pub(crate) mod signaling;
pub(crate) mod users;
pub(crate) mod v1;
pub(crate) mod whip;
pub(crate) mod workflows;

pub fn router(services: Arc<CallServices>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(services)
}

/// 200 while accepting calls, 503 while draining (so a load balancer stops sending).
async fn healthz(State(svc): State<Arc<CallServices>>) -> impl IntoResponse {
    let draining = svc.draining.load(Ordering::Acquire);
    let body = serde_json::json!({
        "status": if draining { "draining" } else { "ok" },
        "calls_active": svc.table.len(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    let code = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, axum::Json(body))
}

async fn metrics(State(svc): State<Arc<CallServices>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        svc.metrics.render(),
    )
}
