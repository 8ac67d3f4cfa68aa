//! Users, roles, API bearer tokens, browser sessions, lockout, break-glass, and the facts the
//! permission table needs (who is on a call with whom). Decisions are made by
//! [`permission::decide`]; this module fetches the facts, records the outcome in the audit
//! trail, and keeps secrets hashed.

pub(crate) mod outsiders;
pub(crate) mod password;
pub(crate) mod permission;
pub mod sip;
pub(crate) mod throttle;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::audit::{Audit, AuditError, Event, action};
use crate::db::{Db, WallClock};
use crate::metrics::Metrics;
pub use permission::{Action, Decision, DenyReason, Facts, Role};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("user `{0}` already exists")]
    Exists(String),
    #[error("no user `{0}`")]
    NoUser(String),
    #[error("user names are 1-64 characters of letters, digits, `.`, `_`, `-` and `@`")]
    BadName,
    #[error("a break-glass reason is required (say why you need this record)")]
    NoReason,
    #[error("`{0}` is reserved for the server's own actions in the audit trail")]
    Reserved(String),
    #[error("passwords are at least {MIN_PASSWORD} characters")]
    WeakPassword,
    #[error("`{field}` is longer than {max} bytes")]
    TooLong { field: &'static str, max: usize },
    #[error("no token `{0}`")]
    NoToken(String),
    #[error("you cannot disable your own account")]
    SelfDisable,
    #[error("user `{user}` is a {role}; only agents, clinicians and supervisors handle calls")]
    NotAHandler { user: String, role: Role },
}

/// Tunables, from the `[auth]` configuration section.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// A browser session ends after this long without a request.
    pub session_idle: Duration,
    /// Failed sign-ins from one address for one name before each further attempt waits
    /// (the wait doubles per failure)...
    pub max_failures: i64,
    /// ...forgotten this long after the last failure...
    pub failure_window: Duration,
    /// ...and the longest wait.
    pub lockout: Duration,
    /// How long a break-glass grant lasts.
    pub break_glass: Duration,
    /// How long the user who handled a call keeps its patient after the call ends.
    pub wrap_up: Duration,
    /// Requests without valid credentials are summarised in the audit trail per source once
    /// per this window.
    pub unauthenticated_window: Duration,
    /// How long a new API token is valid; `None`: until revoked.
    pub token_lifetime: Option<Duration>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            session_idle: Duration::from_secs(15 * 60),
            max_failures: 5,
            failure_window: Duration::from_secs(5 * 60),
            lockout: Duration::from_secs(15 * 60),
            break_glass: Duration::from_secs(60 * 60),
            wrap_up: Duration::from_secs(120),
            unauthenticated_window: Duration::from_secs(60),
            token_lifetime: Some(Duration::from_secs(90 * 86_400)),
        }
    }
}

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefused {
    BadCredentials,
    /// Too many failures from this address (for this name, or over all names): try again
    /// after this long. Said alike for names that exist and names that do not.
    Throttled {
        retry_after: Duration,
    },
}

/// A permitted request: whether break-glass was what let it through (flagged in the audit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub break_glass: bool,
}

/// A live call's patient and handling user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ActiveContact {
    pub call_id: String,
    pub patient_id: String,
    pub user: String,
    pub started_ms: i64,
    /// When the link ends (ms since the epoch): `None` while the call lasts.
    pub ends_ms: Option<i64>,
}

/// An API token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub user: String,
    pub created: String,
    /// `None`: valid until revoked.
    pub expires: Option<String>,
    pub revoked: Option<String>,
    pub last_used: Option<String>,
    /// Usable now: not revoked, not expired, its user not disabled.
    pub active: bool,
}

/// A user as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserInfo {
    pub name: String,
    pub role: Role,
    pub created: String,
    pub disabled: Option<String>,
    pub password: bool,
}

/// The calls between their start and their end, as the call tasks report them (through the
/// call hooks). A patient can be linked to a call only while it is in here: access to a
/// patient through a call is earned by a real call, never by a call id someone made up.
#[derive(Debug, Default)]
pub struct LiveCalls(Mutex<HashSet<String>>);

impl LiveCalls {
    pub fn insert(&self, call_id: &str) {
        if let Ok(mut live) = self.0.lock() {
            live.insert(call_id.to_string());
        }
    }

    pub fn remove(&self, call_id: &str) {
        if let Ok(mut live) = self.0.lock() {
            live.remove(call_id);
        }
    }

    pub fn contains(&self, call_id: &str) -> bool {
        self.0.lock().map(|l| l.contains(call_id)).unwrap_or(false)
    }
}

/// Actors that are the server itself, never a person: `system`, `system:ivr`, `cli`, and
/// `anonymous` for requests with no credentials. No user may take one of these names, so the
/// audit trail cannot be made to read as if the server did what a person did.
pub fn is_reserved_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let base = lower.split(':').next().unwrap_or_default();
    matches!(base, "system" | "cli" | "anonymous" | "careline" | "root")
}

pub struct Auth {
    db: Db,
    audit: Audit,
    pub settings: AuthSettings,
    metrics: Option<Arc<Metrics>>,
    /// Verified bearer tokens (by SHA-256 of the token) for a minute, so argon2 runs once per
    /// token per minute rather than on every request.
    token_cache: DashMap<String, (Principal, Instant, Option<i64>)>,
    live: Arc<LiveCalls>,
    throttle: Mutex<throttle::Throttle>,
    outsiders: Mutex<outsiders::Tally>,
    /// Stored times (sessions, tokens, contacts, break-glass) are read from this clock.
    clock: WallClock,
}

const TOKEN_CACHE_TTL: Duration = Duration::from_secs(60);

/// The shortest password accepted (NIST SP 800-63B asks for at least 8; 12 for staff who
/// reach clinical records).
pub const MIN_PASSWORD: usize = 12;
/// The longest password accepted: argon2 hashes whatever it is given, so a megabyte password
/// would be a cheap way to burn the server's CPU.
pub const MAX_PASSWORD: usize = 256;
/// The longest break-glass reason (it is sealed into the audit trail).
pub const MAX_REASON: usize = 2_000;

fn check_password(pw: &str) -> Result<(), AuthError> {
    if pw.chars().count() < MIN_PASSWORD {
        return Err(AuthError::WeakPassword);
    }
    if pw.len() > MAX_PASSWORD {
        return Err(AuthError::TooLong {
            field: "password",
            max: MAX_PASSWORD,
        });
    }
    Ok(())
}

/// Stores a token's id, user, secret hash, creation and expiry (on the pool, or inside a
/// transaction).
async fn insert_token<'e, E>(
    on: E,
    id: &str,
    user: &str,
    secret_hash: String,
    now: i64,
    expires: Option<i64>,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO api_tokens (id, user_name, secret_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.to_string())
    .bind(user.to_string())
    .bind(secret_hash)
    .bind(now)
    .bind(expires)
    .execute(on)
    .await?;
    Ok(())
}

/// A fresh API token `clt_<id>_<secret>`, its id, and the argon2 hash of its secret (the only
/// part of it that is stored).
async fn new_token() -> (String, String, String) {
    let id = hex::encode(rand::random::<[u8; 8]>());
    let secret = password::random_secret();
    let s = secret.clone();
    let hash = tokio::task::spawn_blocking(move || password::hash(&s))
        .await
        .unwrap_or_default();
    (format!("clt_{id}_{secret}"), id, hash)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

impl Auth {
    pub fn new(
        db: Db,
        audit: Audit,
        settings: AuthSettings,
        metrics: Option<Arc<Metrics>>,
    ) -> Auth {
        Auth {
            db,
            audit,
            metrics,
            token_cache: DashMap::new(),
            live: Arc::default(),
            throttle: Mutex::new(throttle::Throttle::new(throttle::Policy {
                free: settings.max_failures.clamp(1, u32::MAX as i64) as u32,
                window: settings.failure_window,
                max_delay: settings.lockout,
            })),
            outsiders: Mutex::new(outsiders::Tally::new(settings.unauthenticated_window)),
            settings,
            clock: WallClock::system(),
        }
    }

    /// The same, reading stored times from `clock` (tests move it by hand).
    pub fn with_clock(mut self, clock: WallClock) -> Auth {
        self.clock = clock;
        self
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// The live calls (the call hooks keep it current).
    pub fn live_calls(&self) -> &Arc<LiveCalls> {
        &self.live
    }

    /// Creates a user with an optional password and a first API token (returned, shown once),
    /// all in one transaction: a request refused for any reason creates nothing. `by` is who
    /// did it (for the audit trail).
    pub async fn create_user(
        &self,
        name: &str,
        role: Role,
        password: Option<&str>,
        by: &str,
    ) -> Result<String, AuthError> {
        if !valid_name(name) {
            return Err(AuthError::BadName);
        }
        if is_reserved_name(name) {
            return Err(AuthError::Reserved(name.to_string()));
        }
        if let Some(pw) = password {
            check_password(pw)?;
        }
        let pw = password.map(str::to_string);
        let password_hash = match pw {
            Some(pw) => Some(
                tokio::task::spawn_blocking(move || password::hash(&pw))
                    .await
                    .unwrap_or_default(),
            ),
            None => None,
        };
        let (token, token_id, token_hash) = new_token().await;
        let now = self.now_ms();
        let mut tx = self.db.pool().begin().await?;
        let done = sqlx::query(
            "INSERT INTO users (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(AuthError::Exists(name.to_string()));
        }
        insert_token(
            &mut *tx,
            &token_id,
            name,
            token_hash,
            now,
            self.token_expiry(now),
        )
        .await?;
        tx.commit().await?;
        self.audit
            .append(
                Event::new(by, action::USER_ADD, "success").detail(serde_json::json!({
                    "user": name,
                    "role": role.as_str(),
                    "password": password.is_some(),
                })),
            )
            .await?;
        Ok(token)
    }

    pub async fn user_role(&self, name: &str) -> Result<Option<Role>, AuthError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT role FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.and_then(|(r,)| r.parse().ok()))
    }

    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), AuthError> {
        check_password(password)?;
        let pw = password.to_string();
        let hash = tokio::task::spawn_blocking(move || password::hash(&pw))
            .await
            .unwrap_or_default();
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(hash)
            .bind(name)
            .execute(self.db.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(AuthError::NoUser(name.to_string()));
        }
        Ok(())
    }

    /// When a token made at `now` expires.
    fn token_expiry(&self, now: i64) -> Option<i64> {
        self.settings
            .token_lifetime
            .map(|d| now + d.as_millis() as i64)
    }

    /// A new API bearer token for `name`, shown once: only its argon2 hash is kept. Rotation
    /// is a new token, then revoking the old one. Audited as `token.issue` by `by`.
    pub async fn issue_token(&self, name: &str, by: &str) -> Result<String, AuthError> {
        if self.user_role(name).await?.is_none() {
            return Err(AuthError::NoUser(name.to_string()));
        }
        let (token, id, hash) = new_token().await;
        let now = self.now_ms();
        let expires = self.token_expiry(now);
        insert_token(self.db.pool(), &id, name, hash, now, expires).await?;
        self.audit
            .append(
                Event::new(by, action::TOKEN_ISSUE, "success").detail(serde_json::json!({
                    "user": name,
                    "token": id,
                    "expires": expires.map(crate::db::rfc3339),
                })),
            )
            .await?;
        Ok(token)
    }

    /// `name`'s tokens, newest first (revoked and expired ones too, marked).
    pub async fn list_tokens(&self, name: &str) -> Result<Vec<TokenInfo>, AuthError> {
        let disabled = self.user_disabled(name).await?;
        type Row = (String, i64, Option<i64>, Option<i64>, Option<i64>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, created_at, expires_at, revoked_at, last_used_at FROM api_tokens \
             WHERE user_name = $1 ORDER BY created_at DESC",
        )
        .bind(name)
        .fetch_all(self.db.pool())
        .await?;
        let now = self.now_ms();
        Ok(rows
            .into_iter()
            .map(|(id, created, expires, revoked, used)| TokenInfo {
                id,
                user: name.to_string(),
                created: crate::db::rfc3339(created),
                active: revoked.is_none() && expires.is_none_or(|e| e > now) && !disabled,
                expires: expires.map(crate::db::rfc3339),
                revoked: revoked.map(crate::db::rfc3339),
                last_used: used.map(crate::db::rfc3339),
            })
            .collect())
    }

    /// The user a token id belongs to.
    pub async fn token_owner(&self, id: &str) -> Result<Option<String>, AuthError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT user_name FROM api_tokens WHERE id = $1")
                .bind(id)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(|(u,)| u))
    }

    /// Revokes a token at once (this process forgets every verified token it remembered).
    pub async fn revoke_token(&self, id: &str, by: &str) -> Result<(), AuthError> {
        let Some(owner) = self.token_owner(id).await? else {
            return Err(AuthError::NoToken(id.to_string()));
        };
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(self.now_ms())
            .bind(id)
            .execute(self.db.pool())
            .await?;
        self.token_cache.clear();
        self.audit
            .append(
                Event::new(by, action::TOKEN_REVOKE, "success")
                    .detail(serde_json::json!({"user": owner, "token": id})),
            )
            .await?;
        Ok(())
    }

    async fn user_disabled(&self, name: &str) -> Result<bool, AuthError> {
        let row: Option<(Option<i64>,)> =
            sqlx::query_as("SELECT disabled_at FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(self.db.pool())
                .await?;
        match row {
            None => Err(AuthError::NoUser(name.to_string())),
            Some((d,)) => Ok(d.is_some()),
        }
    }

    /// Disables (or enables again) a user: a disabled user's tokens and sessions stop working
    /// at once and sign-in fails as for a wrong password; the account, its tokens and its
    /// history stay. Nobody disables their own account (an admin cannot lock the last door
    /// behind them by mistake).
    pub async fn set_disabled(
        &self,
        name: &str,
        disabled: bool,
        by: &str,
    ) -> Result<(), AuthError> {
        if disabled && name == by {
            return Err(AuthError::SelfDisable);
        }
        self.user_disabled(name).await?;
        let at = disabled.then(|| self.now_ms());
        sqlx::query("UPDATE users SET disabled_at = $1 WHERE name = $2")
            .bind(at)
            .bind(name)
            .execute(self.db.pool())
            .await?;
        if disabled {
            sqlx::query("DELETE FROM sessions WHERE user_name = $1")
                .bind(name)
                .execute(self.db.pool())
                .await?;
        }
        self.token_cache.clear();
        let what = if disabled {
            action::USER_DISABLE
        } else {
            action::USER_ENABLE
        };
        self.audit
            .append(Event::new(by, what, "success").detail(serde_json::json!({"user": name})))
            .await?;
        Ok(())
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<UserInfo>, AuthError> {
        type Row = (String, String, i64, Option<i64>, Option<String>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT name, role, created_at, disabled_at, password_hash FROM users ORDER BY name",
        )
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(name, role, created, disabled, pw)| {
                Some(UserInfo {
                    name,
                    role: role.parse().ok()?,
                    created: crate::db::rfc3339(created),
                    disabled: disabled.map(crate::db::rfc3339),
                    password: pw.is_some(),
                })
            })
            .collect())
    }

    /// The user a bearer token belongs to, or `None` for any token that is not valid (unknown,
    /// wrong secret, revoked, expired, or its user disabled).
    pub async fn authenticate_token(&self, token: &str) -> Result<Option<Principal>, AuthError> {
        let cache_key = password::sha256_hex(token);
        let now = self.now_ms();
        if let Some(hit) = self.token_cache.get(&cache_key)
            && hit.1.elapsed() < TOKEN_CACHE_TTL
            && hit.2.is_none_or(|e| e > now)
        {
            return Ok(Some(hit.0.clone()));
        }
        let Some((id, secret)) = token
            .strip_prefix("clt_")
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(None);
        };
        type Row = (
            String,
            String,
            String,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT t.secret_hash, u.name, u.role, t.expires_at, t.revoked_at, u.disabled_at \
             FROM api_tokens t JOIN users u ON u.name = t.user_name WHERE t.id = $1",
        )
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?;
        let Some((hash, name, role, expires, revoked, disabled)) = row else {
            return Ok(None);
        };
        if revoked.is_some() || disabled.is_some() || expires.is_some_and(|e| e <= now) {
            return Ok(None);
        }
        let secret = secret.to_string();
        let ok = tokio::task::spawn_blocking(move || password::verify(&secret, &hash))
            .await
            .unwrap_or(false);
        let Some(role) = ok.then(|| role.parse::<Role>().ok()).flatten() else {
            return Ok(None);
        };
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(self.db.pool())
            .await?;
        let principal = Principal { name, role };
        self.token_cache
            .insert(cache_key, (principal.clone(), Instant::now(), expires));
        Ok(Some(principal))
    }

    /// Checks a password, under the sign-in throttle ([`throttle`]): a (name, source) pair or
    /// a source past its free failures waits, refused before its password is hashed, and
    /// unknown names are answered exactly like real ones. For a real account each failure,
    /// the start of its delays (`login.lockout`, and `careline_auth_lockouts_total`) and each
    /// success are audited; failures on names that do not exist are summarised per source
    /// ([`outsiders`]), so guessing cannot grow the audit trail row by row.
    pub async fn login(
        &self,
        name: &str,
        password_given: &str,
        source: &str,
    ) -> Result<Result<String, LoginRefused>, AuthError> {
        let ip = source
            .parse::<std::net::IpAddr>()
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let checked = self
            .throttle
            .lock()
            .map(|mut t| t.check(name, ip, Instant::now()))
            .unwrap_or(Ok(()));
        if let Err(retry_after) = checked {
            self.login_metric("throttled");
            return Ok(Err(LoginRefused::Throttled { retry_after }));
        }
        let now = self.now_ms();
        let row: Option<(String, Option<String>, Option<i64>)> =
            sqlx::query_as("SELECT role, password_hash, disabled_at FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(self.db.pool())
                .await?;
        let disabled = row.as_ref().is_some_and(|(_, _, d)| d.is_some());
        let detail = if disabled {
            serde_json::json!({"source": source, "disabled": true})
        } else {
            serde_json::json!({"source": source})
        };
        let hash = row
            .as_ref()
            .and_then(|(_, h, _)| h.clone())
            .unwrap_or_else(|| password::decoy().to_string());
        let given = password_given.to_string();
        let ok = tokio::task::spawn_blocking(move || password::verify(&given, &hash))
            .await
            .unwrap_or(false);
        let role = row.as_ref().and_then(|(r, h, _)| {
            h.as_ref()?;
            r.parse::<Role>().ok()
        });
        if ok && role.is_some() && !disabled {
            if let Ok(mut t) = self.throttle.lock() {
                t.success(name, ip);
            }
            let cookie = password::random_secret();
            sqlx::query(
                "INSERT INTO sessions (id_hash, user_name, created_at, last_seen) VALUES ($1, $2, $3, $3)",
            )
            .bind(password::sha256_hex(&cookie))
            .bind(name)
            .bind(now)
            .execute(self.db.pool())
            .await?;
            self.audit
                .append(Event::new(name, action::LOGIN, "success").detail(detail))
                .await?;
            self.login_metric("success");
            return Ok(Ok(cookie));
        }
        self.login_metric("failure");
        let failure = self
            .throttle
            .lock()
            .map(|mut t| t.failure(name, ip, Instant::now()))
            .ok();
        if row.is_none() {
            // Not an account: summarised with the other outsiders, not a row per guess.
            self.note_outsider(ip, "login");
        } else {
            // A real account: audited in the background, so answering takes as long as for
            // a name that does not exist.
            let audit = self.audit.clone();
            let name = name.to_string();
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                audit
                    .record(Event::new(&name, action::LOGIN, "failure").detail(detail))
                    .await;
                let Some(f) = failure.filter(|f| f.newly_delayed) else {
                    return;
                };
                let retry = f.delayed.unwrap_or_default().as_secs();
                audit
                    .record(Event::new(&name, action::LOCKOUT, "success").detail(
                        serde_json::json!({
                            "failures": f.failures,
                            "source": ip.to_string(),
                            "retry_after_secs": retry,
                        }),
                    ))
                    .await;
                tracing::warn!(
                    user = name,
                    failures = f.failures,
                    "sign-ins slowed after repeated failures from one address"
                );
                if let Some(m) = &metrics {
                    m.auth_lockouts.inc();
                }
            });
        }
        Ok(Err(LoginRefused::BadCredentials))
    }

    /// Counts a refused request from a client without valid credentials into this window's
    /// summary for its source (the first one in a window is logged).
    fn note_outsider(&self, ip: std::net::IpAddr, kind: &str) {
        if let Some(m) = &self.metrics {
            m.auth_unauthenticated.inc();
        }
        let first = self
            .outsiders
            .lock()
            .map(|mut t| t.add(Some(ip), kind, Instant::now(), std::time::SystemTime::now()))
            .unwrap_or(false);
        if first {
            tracing::warn!(
                source = %ip,
                "refused a request without valid credentials (more from this address in this window are counted, not logged)"
            );
        }
    }

    /// Writes the summaries of a closed window (or of everything, `force`) into the audit
    /// trail: one `access.denied` row per source, actor `anonymous`. Returns the next time
    /// to call it.
    pub async fn flush_outsiders(&self, force: bool) -> Option<Instant> {
        let (done, next) = match self.outsiders.lock() {
            Ok(mut t) => {
                let done = t.drain(Instant::now(), force);
                (done, t.poll_timeout())
            }
            Err(_) => return None,
        };
        for s in done {
            let stamp = |t: std::time::SystemTime| {
                let ms = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or_default();
                crate::db::rfc3339(ms)
            };
            self.audit
                .record(
                    Event::new("anonymous", action::ACCESS_DENIED, "denied").detail(
                        serde_json::json!({
                            "reason": "unauthenticated",
                            "source": s.source.map(|ip| ip.to_string()).unwrap_or_else(|| "others".into()),
                            "count": s.count,
                            "requests": s.kinds,
                            "first": stamp(s.first),
                            "last": stamp(s.last),
                        }),
                    ),
                )
                .await;
        }
        next
    }

    /// Flushes the outsiders' summaries as their windows close, for as long as the process
    /// runs (the server spawns this).
    pub async fn flush_outsiders_forever(self: Arc<Self>) {
        loop {
            let next = self.flush_outsiders(false).await;
            let wait = next
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(self.settings.unauthenticated_window)
                .max(Duration::from_millis(100));
            tokio::time::sleep(wait).await;
        }
    }

    fn login_metric(&self, outcome: &'static str) {
        if let Some(m) = &self.metrics {
            m.auth_logins
                .get_or_create(&vec![("outcome", outcome)])
                .inc();
        }
    }

    /// The user of a browser session; `None` when unknown or idle too long (the session is
    /// then removed: idle logoff).
    pub async fn session(&self, cookie: &str) -> Result<Option<Principal>, AuthError> {
        let id_hash = password::sha256_hex(cookie);
        let row: Option<(String, i64, String)> = sqlx::query_as(
            "SELECT s.user_name, s.last_seen, u.role FROM sessions s JOIN users u ON u.name = s.user_name \
             WHERE s.id_hash = $1 AND u.disabled_at IS NULL",
        )
        .bind(&id_hash)
        .fetch_optional(self.db.pool())
        .await?;
        let Some((name, last_seen, role)) = row else {
            return Ok(None);
        };
        let now = self.now_ms();
        if now - last_seen > self.settings.session_idle.as_millis() as i64 {
            sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
                .bind(&id_hash)
                .execute(self.db.pool())
                .await?;
            self.audit
                .append(
                    Event::new(&name, action::LOGOUT, "success")
                        .detail(serde_json::json!({"idle": true})),
                )
                .await?;
            return Ok(None);
        }
        sqlx::query("UPDATE sessions SET last_seen = $1 WHERE id_hash = $2")
            .bind(now)
            .bind(&id_hash)
            .execute(self.db.pool())
            .await?;
        Ok(role.parse().ok().map(|role| Principal { name, role }))
    }

    pub async fn logout(&self, cookie: &str) -> Result<(), AuthError> {
        let id_hash = password::sha256_hex(cookie);
        let row: Option<(String,)> =
            sqlx::query_as("SELECT user_name FROM sessions WHERE id_hash = $1")
                .bind(&id_hash)
                .fetch_optional(self.db.pool())
                .await?;
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(&id_hash)
            .execute(self.db.pool())
            .await?;
        if let Some((name,)) = row {
            self.audit
                .append(Event::new(&name, action::LOGOUT, "success"))
                .await?;
        }
        Ok(())
    }

    /// Decides whether `who` may do `what` (to `patient`, when the action concerns one),
    /// gathering the facts the table needs. A denial is audited here; an allowed access is
    /// audited by the caller once it knows what was read or written.
    pub async fn authorize(
        &self,
        who: &Principal,
        what: Action,
        patient: Option<&str>,
    ) -> Result<Result<Grant, DenyReason>, AuthError> {
        self.authorize_with(who, what, patient, serde_json::Value::Null)
            .await
    }

    /// As [`Auth::authorize`]; `about` (a JSON object of non-PHI ids, e.g. the recording and
    /// call a request concerns) is added to the audit entry of a denial. Without a patient,
    /// only rules with no patient scope can allow.
    pub async fn authorize_with(
        &self,
        who: &Principal,
        what: Action,
        patient: Option<&str>,
        about: serde_json::Value,
    ) -> Result<Result<Grant, DenyReason>, AuthError> {
        let mut facts = Facts::default();
        if let (Some(p), Some(scope)) = (patient, permission::scope(who.role, what))
            && scope != permission::Scope::Any
        {
            facts.on_call_with_patient = self.on_call_with(&who.name, p).await?;
            facts.patient_on_any_call =
                facts.on_call_with_patient || self.patient_on_any_call(p).await?;
            facts.break_glass = self.has_break_glass(&who.name, p).await?;
        }
        let decision = match patient {
            Some(_) => permission::decide(who.role, what, facts),
            None => permission::decide_without_patient(who.role, what),
        };
        match decision {
            Decision::Allow { break_glass } => Ok(Ok(Grant { break_glass })),
            Decision::Deny(reason) => {
                self.deny(who, what, patient, reason, about).await?;
                Ok(Err(reason))
            }
        }
    }

    /// Audits a refusal: the action, role and reason, with `about` (non-PHI ids) beside them.
    async fn deny(
        &self,
        who: &Principal,
        what: Action,
        patient: Option<&str>,
        reason: DenyReason,
        about: serde_json::Value,
    ) -> Result<(), AuthError> {
        let mut detail = serde_json::json!({
            "action": what.as_str(),
            "role": who.role.as_str(),
            "reason": reason.as_str(),
        });
        if let (Some(d), serde_json::Value::Object(extra)) = (detail.as_object_mut(), about) {
            for (k, v) in extra {
                d.entry(k).or_insert(v);
            }
        }
        let mut event = Event::new(&who.name, action::ACCESS_DENIED, "denied").detail(detail);
        if let Some(p) = patient {
            event = event.patient(p);
        }
        self.audit.append(event).await?;
        Ok(())
    }

    /// Counts a request refused before any table lookup (no valid credentials) into its
    /// source's summary.
    pub async fn audit_unauthenticated(&self, what: &str, source: &str) {
        let ip = source
            .parse::<std::net::IpAddr>()
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        self.note_outsider(ip, what);
    }

    /// Whether `user` handles a call with `patient`: while the call lasts and its wrap-up.
    pub async fn on_call_with(&self, user: &str, patient: &str) -> Result<bool, AuthError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT call_id FROM active_contacts WHERE user_name = $1 AND patient_id = $2 \
             AND (ends_at IS NULL OR ends_at > $3) LIMIT 1",
        )
        .bind(user)
        .bind(patient)
        .bind(self.now_ms())
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Whether `patient` is on a call that is still going (wrap-up does not count).
    pub async fn patient_on_any_call(&self, patient: &str) -> Result<bool, AuthError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT call_id FROM active_contacts WHERE patient_id = $1 AND ends_at IS NULL LIMIT 1",
        )
        .bind(patient)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Decides whether `who` may link `call_id` to a patient (`live`: the call must be going)
    /// or end its link (`live` false: a link in wrap-up may be ended too). The service role
    /// may for any call; agents, clinicians and supervisors for a call they handle. A call
    /// that is not live, or has no link to end, is refused as `CallNotLive`. Refusals are
    /// audited with the call id.
    pub async fn authorize_call_link(
        &self,
        who: &Principal,
        call_id: &str,
        live: bool,
    ) -> Result<Result<Grant, DenyReason>, AuthError> {
        let what = Action::ActiveContactSet;
        let current = self.active_contact(call_id).await?;
        let decision = if permission::scope(who.role, what).is_none() {
            Decision::Deny(DenyReason::Role)
        } else if (live && !self.live.contains(call_id)) || (!live && current.is_none()) {
            Decision::Deny(DenyReason::CallNotLive)
        } else {
            let party = current
                .as_ref()
                .is_some_and(|c| c.user == who.name && (!live || c.ends_ms.is_none()));
            permission::decide(
                who.role,
                what,
                Facts {
                    party_to_call: party,
                    ..Facts::default()
                },
            )
        };
        match decision {
            Decision::Allow { break_glass } => Ok(Ok(Grant { break_glass })),
            Decision::Deny(reason) => {
                let detail = serde_json::json!({"call_id": call_id});
                self.deny(who, what, None, reason, detail).await?;
                Ok(Err(reason))
            }
        }
    }

    /// Associates a live call with the patient it is about and the user handling it (the
    /// routing layer calls this when an agent answers, and again on transfer).
    pub async fn set_active_contact(
        &self,
        call_id: &str,
        patient: &str,
        user: &str,
        by: &str,
    ) -> Result<(), AuthError> {
        match self.user_role(user).await? {
            None => return Err(AuthError::NoUser(user.to_string())),
            Some(role @ (Role::Admin | Role::Auditor | Role::Service)) => {
                return Err(AuthError::NotAHandler {
                    user: user.to_string(),
                    role,
                });
            }
            Some(_) => {}
        }
        sqlx::query(
            "INSERT INTO active_contacts (call_id, patient_id, user_name, started_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (call_id) DO UPDATE SET patient_id = excluded.patient_id, \
             user_name = excluded.user_name, ends_at = NULL",
        )
        .bind(call_id)
        .bind(patient)
        .bind(user)
        .bind(self.now_ms())
        .execute(self.db.pool())
        .await?;
        self.audit
            .append(
                Event::new(by, action::ACTIVE_CONTACT, "success")
                    .patient(patient)
                    .detail(
                        serde_json::json!({"call_id": call_id, "user": user, "state": "active"}),
                    ),
            )
            .await?;
        Ok(())
    }

    /// Marks a live call as about `patient` while no user handles it yet (the IVR identified
    /// the caller): the patient is then "on a call" for supervisors, and no user gains access.
    /// `by` is a system actor (never a valid user name), kept as the handling user; an
    /// agent's association, if one was already set, is left as it is.
    pub async fn set_unhandled_contact(
        &self,
        call_id: &str,
        patient: &str,
        by: &str,
    ) -> Result<(), AuthError> {
        let done = sqlx::query(
            "INSERT INTO active_contacts (call_id, patient_id, user_name, started_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (call_id) DO NOTHING",
        )
        .bind(call_id)
        .bind(patient)
        .bind(by)
        .bind(self.now_ms())
        .execute(self.db.pool())
        .await?;
        if done.rows_affected() > 0 {
            self.audit
                .append(
                    Event::new(by, action::ACTIVE_CONTACT, "success")
                        .patient(patient)
                        .detail(
                            serde_json::json!({"call_id": call_id, "user": by, "state": "active"}),
                        ),
                )
                .await?;
        }
        Ok(())
    }

    /// Ends a call's association (call ended or was handed on); returns what it was.
    pub async fn clear_active_contact(
        &self,
        call_id: &str,
        by: &str,
    ) -> Result<Option<ActiveContact>, AuthError> {
        let row: Option<(String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT patient_id, user_name, started_at, ends_at FROM active_contacts WHERE call_id = $1",
        )
        .bind(call_id)
        .fetch_optional(self.db.pool())
        .await?;
        let Some((patient_id, user, started_ms, ends_ms)) = row else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM active_contacts WHERE call_id = $1")
            .bind(call_id)
            .execute(self.db.pool())
            .await?;
        self.audit
            .append(
                Event::new(by, action::ACTIVE_CONTACT, "success")
                    .patient(&patient_id)
                    .detail(
                        serde_json::json!({"call_id": call_id, "user": user, "state": "ended"}),
                    ),
            )
            .await?;
        Ok(Some(ActiveContact {
            call_id: call_id.to_string(),
            patient_id,
            user,
            started_ms,
            ends_ms,
        }))
    }

    /// A call's link to its patient, live or in wrap-up.
    pub async fn active_contact(&self, call_id: &str) -> Result<Option<ActiveContact>, AuthError> {
        let row: Option<(String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT patient_id, user_name, started_at, ends_at FROM active_contacts \
             WHERE call_id = $1 AND (ends_at IS NULL OR ends_at > $2)",
        )
        .bind(call_id)
        .bind(self.now_ms())
        .fetch_optional(self.db.pool())
        .await?;
        Ok(
            row.map(|(patient_id, user, started_ms, ends_ms)| ActiveContact {
                call_id: call_id.to_string(),
                patient_id,
                user,
                started_ms,
                ends_ms,
            }),
        )
    }

    /// The call ended: its link to the patient goes into wrap-up (the handling user keeps
    /// access for `settings.wrap_up`), or ends at once when there is no wrap-up or no person
    /// handled the call. Links whose wrap-up is over are removed. Returns the link as it was.
    pub async fn end_call_contact(
        &self,
        call_id: &str,
        by: &str,
    ) -> Result<Option<ActiveContact>, AuthError> {
        let now = self.now_ms();
        sqlx::query("DELETE FROM active_contacts WHERE ends_at IS NOT NULL AND ends_at <= $1")
            .bind(now)
            .execute(self.db.pool())
            .await?;
        let Some(contact) = self.active_contact(call_id).await? else {
            return Ok(None);
        };
        if contact.ends_ms.is_some() {
            return Ok(Some(contact));
        }
        let wrap_up = self.settings.wrap_up.as_millis() as i64;
        if wrap_up == 0 || is_reserved_name(&contact.user) {
            return self.clear_active_contact(call_id, by).await;
        }
        let until = now + wrap_up;
        sqlx::query("UPDATE active_contacts SET ends_at = $1 WHERE call_id = $2")
            .bind(until)
            .bind(call_id)
            .execute(self.db.pool())
            .await?;
        self.audit
            .append(
                Event::new(by, action::ACTIVE_CONTACT, "success")
                    .patient(&contact.patient_id)
                    .detail(serde_json::json!({
                        "call_id": call_id,
                        "user": contact.user,
                        "state": "wrap_up",
                        "until": crate::db::rfc3339(until),
                    })),
            )
            .await?;
        Ok(Some(contact))
    }

    /// At start: the calls a previous process was handling are gone, so their links end as
    /// if each call had just ended (wrap-up from now for a person's link).
    pub async fn end_orphaned_contacts(&self, by: &str) -> Result<usize, AuthError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT call_id FROM active_contacts WHERE ends_at IS NULL")
                .fetch_all(self.db.pool())
                .await?;
        for (call_id,) in &rows {
            self.end_call_contact(call_id, by).await?;
        }
        Ok(rows.len())
    }

    /// Emergency access: the reason is required, sealed into the audit trail, and the entry is
    /// flagged `break_glass`; the grant lasts `settings.break_glass`. Only the permission
    /// table decides who may call this.
    pub async fn break_glass(
        &self,
        who: &Principal,
        patient: &str,
        reason: &str,
    ) -> Result<i64, AuthError> {
        let reason = reason.trim();
        if reason.len() < 4 {
            return Err(AuthError::NoReason);
        }
        if reason.len() > MAX_REASON {
            return Err(AuthError::TooLong {
                field: "reason",
                max: MAX_REASON,
            });
        }
        let until = self.now_ms() + self.settings.break_glass.as_millis() as i64;
        sqlx::query(
            "INSERT INTO break_glass (user_name, patient_id, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_name, patient_id) DO UPDATE SET expires_at = excluded.expires_at",
        )
        .bind(&who.name)
        .bind(patient)
        .bind(until)
        .execute(self.db.pool())
        .await?;
        self.audit
            .append(
                Event::new(&who.name, action::BREAK_GLASS, "success")
                    .patient(patient)
                    .detail(serde_json::json!({
                        "break_glass": true,
                        "role": who.role.as_str(),
                        "expires": crate::db::rfc3339(until),
                    }))
                    .secret(reason),
            )
            .await?;
        tracing::warn!(user = %who.name, "break-glass access declared");
        Ok(until)
    }

    pub async fn has_break_glass(&self, user: &str, patient: &str) -> Result<bool, AuthError> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT expires_at FROM break_glass WHERE user_name = $1 AND patient_id = $2",
        )
        .bind(user)
        .bind(patient)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.is_some_and(|(until,)| until > self.now_ms()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicI64, Ordering};

    async fn auth(settings: AuthSettings) -> (Auth, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(
            crate::keys::KeyRing::open(dir.path(), crate::keys::Supplied::default()).unwrap(),
        );
        let db = Db::open(None, dir.path()).await.unwrap();
        let audit = Audit::new(db.clone(), keys);
        (Auth::new(db, audit, settings, None), dir)
    }

    /// [`auth`] on a clock the test moves: returns the clock's hand (ms since the epoch).
    async fn auth_on_hand_clock(
        settings: AuthSettings,
    ) -> (Auth, Arc<AtomicI64>, tempfile::TempDir) {
        let (a, dir) = auth(settings).await;
        let hand = Arc::new(AtomicI64::new(1_800_000_000_000));
        (a.with_clock(WallClock::manual(hand.clone())), hand, dir)
    }

    #[tokio::test]
    async fn a_session_in_use_stays_open_and_one_idle_past_the_limit_is_ended_and_audited() {
        let (a, hand, _dir) = auth_on_hand_clock(AuthSettings {
            session_idle: Duration::from_secs(60),
            ..AuthSettings::default()
        })
        .await;
        a.create_user("nina", Role::Clinician, Some("a long passphrase 1"), "test")
            .await
            .unwrap();
        let cookie = a
            .login("nina", "a long passphrase 1", "127.0.0.1")
            .await
            .unwrap()
            .expect("signed in");
        // Used every 50 s for ten minutes: each use restarts the idle time.
        for _ in 0..12 {
            hand.fetch_add(50_000, Ordering::SeqCst);
            let who = a.session(&cookie).await.unwrap().expect("still open");
            assert_eq!(who.name, "nina");
        }
        // Idle exactly the limit: still open.
        hand.fetch_add(60_000, Ordering::SeqCst);
        assert!(a.session(&cookie).await.unwrap().is_some(), "at the limit");
        // A millisecond past it: ended, and ended for good (coming back does not reopen it).
        hand.fetch_add(60_001, Ordering::SeqCst);
        assert!(a.session(&cookie).await.unwrap().is_none(), "idle logoff");
        hand.fetch_sub(60_001, Ordering::SeqCst);
        assert!(a.session(&cookie).await.unwrap().is_none(), "removed");
        let logoffs: Vec<_> = a
            .audit()
            .query(&crate::audit::Filter {
                actor: Some("nina".into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == action::LOGOUT)
            .collect();
        assert_eq!(logoffs.len(), 1, "{logoffs:?}");
        assert!(logoffs[0].detail.contains("\"idle\":true"), "{logoffs:?}");
    }

    #[tokio::test]
    async fn break_glass_access_lasts_its_window_and_no_longer() {
        let (a, hand, _dir) = auth_on_hand_clock(AuthSettings {
            break_glass: Duration::from_secs(3600),
            ..AuthSettings::default()
        })
        .await;
        a.create_user("cleo", Role::Clinician, None, "test")
            .await
            .unwrap();
        assert!(!a.has_break_glass("cleo", "p-1").await.unwrap());
        let cleo = Principal {
            name: "cleo".into(),
            role: Role::Clinician,
        };
        a.break_glass(&cleo, "p-1", "patient unconscious in ED")
            .await
            .unwrap();
        assert!(a.has_break_glass("cleo", "p-1").await.unwrap());
        assert!(
            !a.has_break_glass("cleo", "p-2").await.unwrap(),
            "one patient"
        );
        hand.fetch_add(3_599_999, Ordering::SeqCst);
        assert!(
            a.has_break_glass("cleo", "p-1").await.unwrap(),
            "inside the hour"
        );
        hand.fetch_add(1, Ordering::SeqCst);
        assert!(
            !a.has_break_glass("cleo", "p-1").await.unwrap(),
            "the hour is up"
        );
    }

    #[tokio::test]
    async fn tokens_expire_and_revocation_and_disabling_take_effect_at_once() {
        let (a, hand, _dir) = auth_on_hand_clock(AuthSettings {
            token_lifetime: Some(Duration::from_secs(90 * 86_400)),
            ..AuthSettings::default()
        })
        .await;
        let short = a
            .create_user("tom", Role::Agent, None, "test")
            .await
            .unwrap();
        assert!(a.authenticate_token(&short).await.unwrap().is_some());
        // The last millisecond of its 90 days: still good.
        hand.fetch_add(90 * 86_400_000 - 1, Ordering::SeqCst);
        assert!(a.authenticate_token(&short).await.unwrap().is_some());
        // Expired: refused, even though it was verified (and remembered) a moment ago.
        hand.fetch_add(1, Ordering::SeqCst);
        assert!(a.authenticate_token(&short).await.unwrap().is_none());
        let listed = a.list_tokens("tom").await.unwrap();
        assert!(!listed[0].active && listed[0].expires.is_some());

        let (b, _dir) = auth(AuthSettings {
            token_lifetime: None,
            ..AuthSettings::default()
        })
        .await;
        let first = b
            .create_user("ana", Role::Agent, None, "test")
            .await
            .unwrap();
        let second = b.issue_token("ana", "ana").await.unwrap();
        assert!(b.authenticate_token(&first).await.unwrap().is_some());
        let id = first.split('_').nth(1).unwrap();
        b.revoke_token(id, "ana").await.unwrap();
        assert!(
            b.authenticate_token(&first).await.unwrap().is_none(),
            "revoked"
        );
        assert!(b.authenticate_token(&second).await.unwrap().is_some());
        b.set_disabled("ana", true, "admin").await.unwrap();
        assert!(
            b.authenticate_token(&second).await.unwrap().is_none(),
            "disabled"
        );
        b.set_disabled("ana", false, "admin").await.unwrap();
        assert!(b.authenticate_token(&second).await.unwrap().is_some());
        assert!(matches!(
            b.set_disabled("ana", true, "ana").await,
            Err(AuthError::SelfDisable)
        ));
        assert!(matches!(
            b.revoke_token("nope", "ana").await,
            Err(AuthError::NoToken(_))
        ));
        let tokens = b.list_tokens("ana").await.unwrap();
        assert_eq!(tokens.len(), 2);
        assert!(tokens.iter().any(|t| t.revoked.is_some() && !t.active));
        assert!(tokens.iter().any(|t| t.last_used.is_some() && t.active));
    }
}
