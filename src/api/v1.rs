//! The `/api/v1` router (patients, access, audit) and the sign-in pages.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::access::{ApiError, ApiState};
use super::{audit, call_records, openapi, patients, users};

/// The largest sign-in form read: a few hundred bytes are enough, and nothing large is read
/// before authentication.
pub(crate) const LOGIN_LIMIT: usize = 4 * 1024;
/// The largest FHIR import (Synthea bundles run to a few MB; read only once the caller is
/// authenticated).
pub(crate) const FHIR_LIMIT: usize = 64 * 1024 * 1024;
/// The largest body of any other request: small JSON documents (a contact note is the
/// largest).
pub(crate) const JSON_LIMIT: usize = 64 * 1024;

/// The body limit of a path.
pub(crate) fn body_limit_of(path: &str) -> usize {
    match path {
        "/login" => LOGIN_LIMIT,
        "/api/v1/fhir" => FHIR_LIMIT,
        _ => JSON_LIMIT,
    }
}

/// Every request body is capped by its path's limit: a declared `Content-Length` past it is
/// answered 413 at once, before a byte of the body is read, and a body without one is cut off
/// at the limit while it is read (the extractors answer 413 then).
pub(crate) async fn body_limit(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let limit = body_limit_of(req.uri().path());
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than this endpoint takes ({limit} bytes)"),
        )
        .into_response();
    }
    let req = req.map(|b| axum::body::Body::new(http_body_util::Limited::new(b, limit)));
    next.run(req).await
}

pub(crate) fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route(
            "/api/v1/openapi.json",
            get(|| async { axum::Json(openapi::document()) }),
        )
        .route("/api/v1/me", get(patients::me))
        .route("/api/v1/patients/lookup", get(patients::lookup))
        .route("/api/v1/patients/{id}/summary", get(patients::summary))
        .route(
            "/api/v1/patients/{id}/contacts",
            get(patients::contacts).post(patients::append_contact),
        )
        .route("/api/v1/patients/{id}/bundle", get(patients::export))
        .route(
            "/api/v1/patients/{id}/break-glass",
            post(patients::break_glass),
        )
        .route("/api/v1/fhir", post(patients::import))
        .route(
            "/api/v1/calls/{call_id}/contact",
            put(patients::set_active_contact)
                .get(patients::active_contact)
                .delete(patients::clear_active_contact),
        )
        .route("/api/v1/audit", get(audit::query))
        .route("/api/v1/call-records", get(call_records::list))
        .route(
            "/api/v1/users",
            post(users::add_user).get(users::list_users),
        )
        .route("/api/v1/users/{name}/disable", post(users::disable_user))
        .route("/api/v1/users/{name}/enable", post(users::enable_user))
        .route(
            "/api/v1/users/{name}/tokens",
            get(users::list_tokens).post(users::issue_token),
        )
        .route(
            "/api/v1/tokens/{id}",
            axum::routing::delete(users::revoke_token),
        )
        .route("/login", get(users::login_page).post(users::login))
        .route("/logout", post(users::logout))
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(body_limit))
        .with_state(state)
}
