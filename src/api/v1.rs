//! The `/api/v1` router (patients, access, audit) and the sign-in pages.

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post, put};

use super::access::ApiState;
use super::{audit, openapi, patients, users};

pub fn router(state: Arc<ApiState>) -> Router {
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
            put(patients::set_active_contact).delete(patients::clear_active_contact),
        )
        .route("/api/v1/audit", get(audit::query))
        .route("/api/v1/users", post(users::add_user))
        .route("/login", get(users::login_page).post(users::login))
        .route("/logout", post(users::logout))
        // Synthea bundles run to a few MB; axum's 2 MB default would refuse them.
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(state)
}
