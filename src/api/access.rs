//! Who is calling the API and whether they may: the `Caller` extractor (bearer token or
//! browser session cookie) and [`ApiState::require`], which consults the one permission table.
//! Other API modules (recordings, consoles) guard their endpoints with the same two pieces:
//!
//! ```ignore
//! async fn get_recording(State(s): State<Arc<ApiState>>, caller: Caller, Path(id): Path<String>)
//!     -> Result<Response, ApiError> {
//!     let grant = s.require(&caller, Action::RecordingRead, Some(&patient_id)).await?;
//!     ...
//! }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::audit::Audit;
use crate::auth::{Action, Auth, AuthError, Grant, Principal};
use crate::patient::{PatientError, PatientStore};

/// Everything the `/api/v1` handlers share.
pub struct ApiState {
    pub auth: Arc<Auth>,
    pub audit: Audit,
    pub patients: PatientStore,
    /// Workflow executions (the server's runner drives them; the CLI re-seals them).
    pub workflows: crate::workflow::store::Store,
    /// The care team's work list (workflows' notification tasks).
    pub care_tasks: crate::workflow::care_tasks::CareTasks,
    /// Notices owed to people outside Careline (webhook, e-mail); the server's postman sends
    /// them.
    pub outbox: crate::notify::Outbox,
    /// Set by the server when `[workflows] on_discharge` is: imports start follow-ups.
    pub discharges: std::sync::OnceLock<(
        crate::workflow::runner::DischargeTrigger,
        crate::workflow::runner::Workflows,
    )>,
    /// Served over HTTPS: session cookies get `Secure`.
    pub https: bool,
    /// The users' SIP secrets (what phones answer digest challenges with).
    pub sip_secrets: Arc<crate::auth::sip::SipSecrets>,
    /// One record per answered call, for reports.
    pub call_records: crate::call_records::CallRecords,
    /// Queued callbacks (the call layer keeps them; supervisors list them).
    pub callbacks: crate::routing::callbacks::CallbackStore,
    /// Telehealth rooms as booked, and the key their invitation links are signed with.
    pub rooms: crate::rooms::store::RoomStore,
    pub room_links: Arc<crate::rooms::link::LinkSigner>,
}

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "careline_session";

/// An error answered as `{"error": "..."}` with a status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        // The detail goes to the log (it never holds PHI: errors name ids, not contents).
        tracing::error!(error = %e, "API request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (see the server log)",
        )
    }
}

/// Errors go out as problem details (RFC 9457): `type` is `about:blank`, so `title` is the
/// status's own phrase and `detail` says what went wrong for this request.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.message,
        });
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"careline\""),
            );
        }
        resp
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::Exists(_) | AuthError::SelfDisable => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            AuthError::NoToken(_) => ApiError::not_found(e.to_string()),
            AuthError::NoUser(_)
            | AuthError::BadName
            | AuthError::NoReason
            | AuthError::Reserved(_)
            | AuthError::WeakPassword => ApiError::bad_request(e.to_string()),
            AuthError::TooLong { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            AuthError::NotAHandler { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<PatientError> for ApiError {
    fn from(e: PatientError) -> ApiError {
        match e {
            PatientError::Bundle(b) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, b.to_string())
            }
            PatientError::NoPatient(_) => ApiError::not_found(e.to_string()),
            PatientError::BadContact(_) => ApiError::bad_request(e.to_string()),
            PatientError::TooLong { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::audit::AuditError> for ApiError {
    fn from(e: crate::audit::AuditError) -> ApiError {
        ApiError::internal(e)
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// `token` or `session`.
    pub via: &'static str,
}

impl Caller {
    pub fn name(&self) -> &str {
        &self.principal.name
    }
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The value of the session cookie, if sent.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    super::browser::cookie(headers, SESSION_COOKIE)
}

/// The peer address when known (for audit entries about logins).
pub fn peer(parts_ext: &axum::http::Extensions) -> String {
    parts_ext
        .get::<axum::extract::ConnectInfo<ClientAddr>>()
        .map(|c| c.0.0.ip().to_string())
        .unwrap_or_default()
}

/// Any router state that holds the [`ApiState`] (through `FromRef`) can authenticate callers:
/// the recording routes carry the call table beside it.
impl<S> FromRequestParts<S> for Caller
where
    Arc<ApiState>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Caller, ApiError> {
        let state = Arc::<ApiState>::from_ref(state);
        let unauthenticated = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "sign in (POST /login) or send Authorization: Bearer <token>",
            )
        };
        let found = if let Some(token) = bearer(&parts.headers) {
            state
                .auth
                .authenticate_token(token)
                .await?
                .map(|p| (p, "token"))
        } else if let Some(cookie) = session_cookie(&parts.headers) {
            state.auth.session(&cookie).await?.map(|p| (p, "session"))
        } else {
            None
        };
        match found {
            Some((principal, via)) => Ok(Caller { principal, via }),
            None => {
                state
                    .auth
                    .audit_unauthenticated(parts.uri.path(), &peer(&parts.extensions))
                    .await;
                Err(unauthenticated())
            }
        }
    }
}

impl<S> OptionalFromRequestParts<S> for Caller
where
    Arc<ApiState>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Caller>, ApiError> {
        if bearer(&parts.headers).is_none() && session_cookie(&parts.headers).is_none() {
            return Ok(None);
        }
        <Caller as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

impl ApiState {
    /// Allows or refuses `action` (on `patient`, when it concerns one) for `caller` by the
    /// permission table; a refusal is audited and answered 403 with the reason.
    pub async fn require(
        &self,
        caller: &Caller,
        action: Action,
        patient: Option<&str>,
    ) -> Result<Grant, ApiError> {
        self.require_about(caller, action, patient, serde_json::Value::Null)
            .await
    }

    /// As [`ApiState::require`]; `about` (non-PHI ids such as a recording and its call, as a
    /// JSON object) goes into the audit entry of a refusal.
    pub async fn require_about(
        &self,
        caller: &Caller,
        action: Action,
        patient: Option<&str>,
        about: serde_json::Value,
    ) -> Result<Grant, ApiError> {
        match self
            .auth
            .authorize_with(&caller.principal, action, patient, about)
            .await?
        {
            Ok(grant) => Ok(grant),
            Err(reason) => Err(ApiError::new(StatusCode::FORBIDDEN, reason.message())),
        }
    }

    /// Allows or refuses linking `call_id` to a patient (`live`) or ending its link: 404 for
    /// a call that is not live (or has no link to end), 403 for a call the caller does not
    /// handle; both audited.
    pub async fn require_call_link(
        &self,
        caller: &Caller,
        call_id: &str,
        live: bool,
    ) -> Result<Grant, ApiError> {
        match self
            .auth
            .authorize_call_link(&caller.principal, call_id, live)
            .await?
        {
            Ok(grant) => Ok(grant),
            Err(crate::auth::DenyReason::CallNotLive) if live => {
                Err(ApiError::not_found(format!("no live call `{call_id}`")))
            }
            Err(crate::auth::DenyReason::CallNotLive) => Err(ApiError::not_found(format!(
                "no active contact for call `{call_id}`"
            ))),
            Err(reason) => Err(ApiError::new(StatusCode::FORBIDDEN, reason.message())),
        }
    }
}

/// The peer address of a connection, plain or TLS.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("keys: {0}")]
    Keys(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Alerts(#[from] crate::patient::alerts::AlertTableError),
}

impl ApiState {
    /// Each follow-up an import's discharges started, in the audit trail with its patient.
    pub async fn audit_follow_ups(
        &self,
        actor: &str,
        report: &crate::patient::ImportReport,
        done: &crate::workflow::runner::Triggered,
    ) -> Result<(), crate::audit::AuditError> {
        use crate::audit::{Event, action};
        for id in &done.started {
            let patient = self
                .workflows
                .summary(id)
                .await
                .ok()
                .and_then(|s| s.patient_id);
            let mut event = Event::new(actor, action::WORKFLOW_START, "success").detail(
                serde_json::json!({"execution": id, "trigger": "discharge", "resources": report.resources}),
            );
            if let Some(p) = &patient {
                event = event.patient(p);
            }
            self.audit.append(event).await?;
        }
        Ok(())
    }

    /// Opens the key ring, the database (migrating it) and the stores, as configured. Used by
    /// the server and by the CLI subcommands that work on the same data.
    pub async fn open(
        config: &crate::config::Config,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Result<ApiState, OpenError> {
        let keys = Arc::new(crate::keys::KeyRing::open(
            &config.data_dir,
            crate::keys::Supplied::from_env(),
        )?);
        let db = crate::db::Db::open(Some(&config.database.url), &config.data_dir).await?;
        let audit = Audit::new(db.clone(), keys.clone())
            .with_checkpoint(config.data_dir.join("audit-head.json"));
        let a = &config.auth;
        let settings = crate::auth::AuthSettings {
            session_idle: std::time::Duration::from_secs(a.session_idle_secs),
            max_failures: a.max_failures.max(1) as i64,
            failure_window: std::time::Duration::from_secs(a.failure_window_secs),
            lockout: std::time::Duration::from_secs(a.lockout_secs),
            unauthenticated_window: std::time::Duration::from_secs(
                a.unauthenticated_summary_secs.max(1),
            ),
            token_lifetime: (a.token_lifetime_days > 0)
                .then(|| std::time::Duration::from_secs(a.token_lifetime_days * 86_400)),
            break_glass: std::time::Duration::from_secs(a.break_glass_secs),
            wrap_up: std::time::Duration::from_secs(a.contact_wrap_up_secs),
        };
        let sip_secrets = Arc::new(crate::auth::sip::SipSecrets::new(
            db.clone(),
            keys.clone(),
            audit.clone(),
            &settings,
            metrics.clone(),
        ));
        let auth = Arc::new(Auth::new(db.clone(), audit.clone(), settings, metrics));
        let tables = crate::patient::AlertTables::load(config.patients.alerts_file.as_deref())?;
        let workflows = crate::workflow::store::Store::new(db.clone(), keys.clone());
        let care_tasks = crate::workflow::care_tasks::CareTasks::new(db.clone(), keys.clone());
        let outbox = crate::notify::Outbox::new(db.clone(), keys.clone());
        let call_records = crate::call_records::CallRecords::new(db.clone());
        let callbacks = crate::routing::callbacks::CallbackStore::new(db.clone(), keys.clone());
        let rooms = crate::rooms::store::RoomStore::new(db.clone(), keys.clone());
        let room_links = Arc::new(crate::rooms::link::LinkSigner::new(
            keys.index_key("room-link"),
        ));
        let patients = PatientStore::new(
            db,
            keys,
            Arc::new(tables),
            &config.patients.default_country_code,
        );
        Ok(ApiState {
            auth,
            audit,
            patients,
            workflows,
            care_tasks,
            outbox,
            discharges: std::sync::OnceLock::new(),
            https: config.http.https(),
            sip_secrets,
            call_records,
            callbacks,
            rooms,
            room_links,
        })
    }
}
