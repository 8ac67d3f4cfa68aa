//! The database: one sqlx pool over SQLite (embedded default, `<data_dir>/careline.db`) or
//! PostgreSQL (selected by a `postgres://` URL), and one set of migrations for both.
//!
//! sqlx's `Any` driver picks the engine from the URL at run time, so every store is written
//! once: queries use `$1`-style parameters (SQLite reads `$N` as the N-th argument too) and
//! only TEXT/BIGINT columns.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database: {0}")]
    Query(#[from] sqlx::Error),
    #[error("database URL `{0}` is neither sqlite: nor postgres:")]
    Scheme(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    engine: Engine,
}

/// The migrations, embedded in the binary (one binary, nothing to ship beside it).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "patients access audit",
        include_str!("migrations/0001_patients_access_audit.sql"),
    ),
    (
        2,
        "call patients",
        include_str!("migrations/0002_call_patients.sql"),
    ),
    (
        3,
        "contact wrap-up",
        include_str!("migrations/0003_contact_wrap_up.sql"),
    ),
    (
        4,
        "token lifecycle",
        include_str!("migrations/0004_token_lifecycle.sql"),
    ),
    (
        5,
        "workflows",
        include_str!("migrations/0005_workflows.sql"),
    ),
    (
        6,
        "sip secrets",
        include_str!("migrations/0006_sip_secrets.sql"),
    ),
    (
        7,
        "patient calls placed",
        include_str!("migrations/0007_patient_calls_placed.sql"),
    ),
    (
        8,
        "notifications",
        include_str!("migrations/0008_notifications.sql"),
    ),
    (
        9,
        "care task decisions",
        include_str!("migrations/0009_care_task_decisions.sql"),
    ),
    (
        10,
        "call records",
        include_str!("migrations/0010_call_records.sql"),
    ),
    (
        11,
        "callbacks",
        include_str!("migrations/0011_callbacks.sql"),
    ),
    (12, "rooms", include_str!("migrations/0012_rooms.sql")),
    (
        13,
        "room_pins",
        include_str!("migrations/0013_room_pins.sql"),
    ),
];

impl Db {
    /// Opens the configured database, or the embedded SQLite file in `data_dir`, and brings
    /// its schema up to date.
    pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<Db, DbError> {
        let url = match url {
            Some(u) if !u.is_empty() => u.to_string(),
            _ => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("careline.db").display()
            ),
        };
        Db::connect(&url).await
    }

    pub async fn connect(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Engine::Postgres
        } else {
            return Err(DbError::Scheme(redact(url)));
        };
        let connect_err = |source| DbError::Connect {
            url: redact(url),
            source,
        };
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        options = match engine {
            // WAL: readers never wait for the writer; NORMAL sync is durable in WAL mode
            // across process crashes (an OS crash may lose the last transactions).
            Engine::Sqlite => options.max_connections(8).after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            }),
            Engine::Postgres => options.max_connections(16),
        };
        if engine == Engine::Sqlite {
            // The file holds only sealed values and HMACs, but keep it private all the same.
            if let Some(path) = sqlite_path(url) {
                create_private_file(Path::new(&path));
            }
        }
        let pool = options.connect(url).await.map_err(connect_err)?;
        let db = Db { pool, engine };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), DbError> {
        let migrations: Vec<Migration> = MIGRATIONS
            .iter()
            .map(|(v, d, sql)| {
                Migration::new(
                    *v,
                    Cow::Borrowed(d),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        let migrator = Migrator {
            migrations: Cow::Owned(migrations),
            ..Migrator::DEFAULT
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or(url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

fn create_private_file(path: &Path) {
    if path.exists() {
        return;
    }
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = crate::sip::tls::write_private(path, b"");
}

/// Milliseconds since the Unix epoch: the one time format stored in the database.
/// Where stored times (milliseconds since the Unix epoch) come from: the system clock in
/// service, a clock the test moves by hand where a rule depends on time passing (idle logoff,
/// token expiry, break-glass windows), so such rules are tested without sleeping.
#[derive(Clone)]
pub struct WallClock(std::sync::Arc<dyn Fn() -> i64 + Send + Sync>);

impl WallClock {
    /// The system clock.
    pub fn system() -> WallClock {
        WallClock(std::sync::Arc::new(now_ms))
    }

    /// A clock that reads `at` (in milliseconds since the epoch), which the caller moves.
    pub fn manual(at: std::sync::Arc<std::sync::atomic::AtomicI64>) -> WallClock {
        WallClock(std::sync::Arc::new(move || {
            at.load(std::sync::atomic::Ordering::SeqCst)
        }))
    }

    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }
}

impl std::fmt::Debug for WallClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WallClock")
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 (UTC) of a stored time, for people and JSON.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Parses RFC 3339 (or a bare `YYYY-MM-DD`, read as midnight UTC) into stored time.
pub fn parse_time(text: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Some((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let date = parse_date(text)?;
    Some(date.midnight().assume_utc().unix_timestamp() * 1000)
}

/// `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<time::Date> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text.get(..10)?, &fmt).ok()
}

impl FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Engine, String> {
        match s {
            "sqlite" => Ok(Engine::Sqlite),
            "postgres" => Ok(Engine::Postgres),
            o => Err(format!("`{o}` is not sqlite or postgres")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://careline:s3cret@127.0.0.1:5432/db"),
            "postgres://careline:***@127.0.0.1:5432/db"
        );
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn times_round_trip() {
        let t = parse_time("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(rfc3339(t), "2026-01-02T03:04:05Z");
        assert_eq!(
            parse_time("2026-01-02"),
            Some(t - (3 * 3600 + 4 * 60 + 5) * 1000)
        );
        assert!(parse_time("yesterday").is_none());
    }
}
