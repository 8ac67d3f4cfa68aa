//! SIP secrets: what a user's phone answers digest challenges with (RFC 3261 §22). A digest
//! needs the secret itself, not a one-way hash of it, so it is a separate, generated secret
//! (never the user's password, which stays an argon2 hash), sealed with the data keys at rest
//! and shown once when set. Failed answers are throttled per (user, source) like sign-ins
//! ([`super::throttle`]), and the start of a lock-out is audited.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::throttle::{Policy, Throttle};
use super::{AuthError, AuthSettings, Role};
use crate::audit::{Audit, Event, action};
use crate::db::Db;
use crate::keys::KeyRing;
use crate::metrics::Metrics;

/// Characters of a generated secret: letters and digits a person can read off a screen and
/// type into a phone (no 0/O, 1/l/I).
const ALPHABET: &[u8] = b"23456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
/// 24 characters of 57: about 140 bits.
const SECRET_LEN: usize = 24;

fn context(user: &str) -> String {
    format!("sip-secret/{user}")
}

/// The users' SIP secrets, and the throttle on answering with them.
pub struct SipSecrets {
    db: Db,
    keys: Arc<KeyRing>,
    audit: Audit,
    metrics: Option<Arc<Metrics>>,
    throttle: Mutex<Throttle>,
}

impl SipSecrets {
    pub fn new(
        db: Db,
        keys: Arc<KeyRing>,
        audit: Audit,
        settings: &AuthSettings,
        metrics: Option<Arc<Metrics>>,
    ) -> SipSecrets {
        SipSecrets {
            db,
            keys,
            audit,
            metrics,
            throttle: Mutex::new(Throttle::new(Policy {
                free: settings.max_failures.clamp(1, u32::MAX as i64) as u32,
                window: settings.failure_window,
                max_delay: settings.lockout,
            })),
        }
    }

    /// Gives `user` a new SIP secret (replacing any), returned once. Only users who handle
    /// calls (agents, clinicians, supervisors) have phones. Audited as `sip_secret.set`.
    pub async fn set(&self, user: &str, by: &str) -> Result<Zeroizing<String>, AuthError> {
        let role: Option<(String,)> = sqlx::query_as("SELECT role FROM users WHERE name = $1")
            .bind(user)
            .fetch_optional(self.db.pool())
            .await?;
        let role: Role = role
            .and_then(|(r,)| r.parse().ok())
            .ok_or_else(|| AuthError::NoUser(user.to_string()))?;
        if !matches!(role, Role::Agent | Role::Clinician | Role::Supervisor) {
            return Err(AuthError::NotAHandler {
                user: user.to_string(),
                role,
            });
        }
        let secret: Zeroizing<String> = Zeroizing::new(
            (0..SECRET_LEN)
                .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
                .collect(),
        );
        let sealed = self.keys.seal(&context(user), secret.as_bytes());
        let now = crate::db::WallClock::system().now_ms();
        sqlx::query(
            "INSERT INTO sip_secrets (user_name, secret, set_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_name) DO UPDATE SET secret = excluded.secret, set_at = excluded.set_at",
        )
        .bind(user)
        .bind(sealed)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        self.audit
            .append(
                Event::new(by, action::SIP_SECRET_SET, "success")
                    .detail(serde_json::json!({"user": user})),
            )
            .await?;
        Ok(secret)
    }

    /// Removes `user`'s SIP secret: their phones can no longer register or call in.
    pub async fn clear(&self, user: &str, by: &str) -> Result<bool, AuthError> {
        let done = sqlx::query("DELETE FROM sip_secrets WHERE user_name = $1")
            .bind(user)
            .execute(self.db.pool())
            .await?;
        let removed = done.rows_affected() > 0;
        if removed {
            self.audit
                .append(
                    Event::new(by, action::SIP_SECRET_CLEAR, "success")
                        .detail(serde_json::json!({"user": user})),
                )
                .await?;
        }
        Ok(removed)
    }

    /// Whether `user` has a SIP secret.
    pub async fn has_secret(&self, user: &str) -> Result<bool, AuthError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT set_at FROM sip_secrets WHERE user_name = $1")
                .bind(user)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.is_some())
    }

    /// Re-wraps every secret not under the current master key (`careline keys rotate`).
    pub async fn reseal_all(&self) -> Result<u64, AuthError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT user_name, secret FROM sip_secrets")
                .fetch_all(self.db.pool())
                .await?;
        let mut n = 0;
        for (user, sealed) in rows {
            if self.keys.is_current(&sealed) {
                continue;
            }
            // A secret that does not open is left as it is (its user gets a new one).
            let Ok(new) = self.keys.reseal(&context(&user), &sealed) else {
                tracing::warn!(
                    user,
                    "a SIP secret does not open under any key; set a new one"
                );
                continue;
            };
            n += sqlx::query(
                "UPDATE sip_secrets SET secret = $1 WHERE user_name = $2 AND secret = $3",
            )
            .bind(new)
            .bind(user)
            .bind(sealed)
            .execute(self.db.pool())
            .await?
            .rows_affected();
        }
        Ok(n)
    }
}

#[async_trait::async_trait]
impl crate::sip::access::SipUsers for SipSecrets {
    async fn secret(&self, user: &str) -> Option<Zeroizing<String>> {
        let row: Result<Option<(String,)>, sqlx::Error> = sqlx::query_as(
            "SELECT s.secret FROM sip_secrets s JOIN users u ON u.name = s.user_name \
             WHERE s.user_name = $1 AND u.disabled_at IS NULL",
        )
        .bind(user)
        .fetch_optional(self.db.pool())
        .await;
        let (sealed,) = row
            .inspect_err(|e| tracing::warn!(error = %e, "could not read a SIP secret"))
            .ok()??;
        let plain = self.keys.open_sealed(&context(user), &sealed).ok()?;
        String::from_utf8(plain.to_vec()).ok().map(Zeroizing::new)
    }

    fn check(&self, user: &str, source: IpAddr) -> Result<(), Duration> {
        self.throttle
            .lock()
            .map(|mut t| t.check(user, source, Instant::now()))
            .unwrap_or(Ok(()))
    }

    async fn failed(&self, user: &str, source: IpAddr) {
        let failure = self
            .throttle
            .lock()
            .map(|mut t| t.failure(user, source, Instant::now()))
            .ok();
        let Some(f) = failure.filter(|f| f.newly_delayed) else {
            return;
        };
        // The lock-out is the same for names that exist and names that do not; only a real
        // account's is audited (a scanner's invented names would otherwise fill the trail).
        let exists: Option<(String,)> = sqlx::query_as("SELECT name FROM users WHERE name = $1")
            .bind(user)
            .fetch_optional(self.db.pool())
            .await
            .ok()
            .flatten();
        if exists.is_some() {
            self.audit
                .record(Event::new(user, action::SIP_LOCKOUT, "success").detail(
                    serde_json::json!({
                        "failures": f.failures,
                        "source": source.to_string(),
                        "retry_after_secs": f.delayed.unwrap_or_default().as_secs(),
                    }),
                ))
                .await;
        }
        tracing::warn!(
            source = %source,
            failures = f.failures,
            "SIP digest answers slowed after repeated failures from one address"
        );
        if let Some(m) = &self.metrics {
            m.auth_lockouts.inc();
        }
    }

    fn succeeded(&self, user: &str, source: IpAddr) {
        if let Ok(mut t) = self.throttle.lock() {
            t.success(user, source);
        }
    }
}

#[cfg(test)]
mod tests;
