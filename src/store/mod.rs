//! The appointment store: the only module that speaks SQL.
//!
//! One code path serves SQLite (the embedded default) and PostgreSQL through
//! sqlx's `Any` driver. Queries use `$n` placeholders, which both engines
//! accept; times are stored as UTC epoch seconds and dates as `YYYY-MM-DD`
//! text so no engine-specific column type leaks into the code. Each engine
//! has its own migration directory for the few DDL differences.
//!
//! Booking rules live here and are enforced by the database: a partial unique
//! index allows one live appointment per provider and start instant, and every
//! write to a slot first upserts its `slot_holds` row, which serialises racing
//! writers on both engines. Time is always passed in (`now`), never read.

mod appointments;
pub mod availability;
mod callbacks;
mod calls;
mod clinic;
mod conversation_queries;
mod idempotency;
mod identity;
mod jobs;
mod kpis;
mod metrics;
mod models;
mod outbox;
mod patients;
mod refill;
mod reminders;
mod retention;
mod staff;
mod subject;
mod waitlist;

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

pub use appointments::{NewAppointment, Reschedule, SlotQuery};
pub use callbacks::{CallbackRequest, CallbackStatus, NewCallback};
pub use calls::{CallFilter, NewCall, NewTurn, PastCall};
pub use idempotency::{IdempotencyStart, IN_FLIGHT_LIMIT};
pub use identity::identity_subjects;
pub use jobs::{Job, JobAttempt};
pub use kpis::{CallFact, CallbackFact, ChangeFact, JobFact, KpiFacts, LatencyFact, ReminderFact};
pub use metrics::Sample;
pub use models::*;
pub use outbox::{Delivery, Event, EventType, Subscription};
pub use patients::{NewPatient, PatientPatch};
pub use reminders::{NewReminder, Reminder, ReminderChannel, ReplyKind};
pub use retention::{PurgeReport, Retention};
pub use staff::{Failure, NewStaffUser, Role, SessionTimes, StaffSession, StaffUser};
pub use subject::{AccessEntry, ErasureReport, SubjectExport, TextHit};
pub use waitlist::NewWaitlistEntry;

/// A window of a list for the API's pagination: at most `limit` rows after
/// skipping `offset`, in the list's fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    /// Every row (callers inside the service, whose lists are bounded).
    pub const ALL: Page = Page { limit: i64::MAX, offset: 0 };
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// It existed, and was erased at the data subject's request.
    #[error("{0} was erased")]
    Gone(&'static str),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database file: {0}")]
    Io(std::io::Error),
}

impl StoreError {
    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        StoreError::Invalid { field, message: message.into() }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Handle to the clinic's database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    tz: Tz,
    /// How long an `Idempotency-Key` claim may stay unfinished before a
    /// retry takes it over ([`IN_FLIGHT_LIMIT`] unless set).
    in_flight_limit: chrono::Duration,
    /// Configured webhooks: events are written to the outbox for these.
    webhooks: std::sync::Arc<[outbox::Subscription]>,
    /// How this store was opened, for [`Store::connect_again`].
    opened: std::sync::Arc<(String, u32)>,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Connects, creating the SQLite file on first run (WAL mode), and applies
    /// migrations. `tz` is the clinic's zone, used for local dates.
    pub async fn connect(url: &str, max_connections: u32, tz: Tz) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let url = match backend {
            // Create the file when missing; sqlx's default is read-write only.
            Backend::Sqlite if !url.contains("mode=") && !url.contains(":memory:") => {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_string(),
        };
        // The database holds patients' health data: owner-only, created so
        // before SQLite first opens it (its WAL and shared-memory files take
        // the database file's mode).
        let sqlite_file = sqlite_path(&url);
        if let Some(path) = &sqlite_file {
            if !path.exists() {
                crate::private_files::create(path).map_err(StoreError::Io)?;
            }
        }
        let options = AnyConnectOptions::from_str(&url)?;
        let sqlite = backend == Backend::Sqlite;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(30))
            // Deleted or overwritten rows are zeroed in the file rather than
            // left in free space, so an erased patient is gone from the disk.
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        sqlx::query("PRAGMA secure_delete = ON").execute(conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        match backend {
            Backend::Sqlite => {
                // WAL lets readers proceed while a booking commits; it persists in the file.
                sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
                SQLITE_MIGRATIONS.run(&pool).await?;
            }
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        if let Some(path) = sqlite_file {
            // Files an older version left world-readable are tightened too.
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                crate::private_files::restrict(std::path::Path::new(&p)).map_err(StoreError::Io)?;
            }
        }
        Ok(Store {
            pool,
            backend,
            tz,
            in_flight_limit: IN_FLIGHT_LIMIT,
            webhooks: Vec::new().into(),
            opened: std::sync::Arc::new((url, max_connections)),
        })
    }

    /// Claims on an `Idempotency-Key` unfinished after `limit` were
    /// abandoned (their request cannot still be running: set it above the
    /// HTTP request timeout).
    pub fn with_in_flight_limit(mut self, limit: chrono::Duration) -> Store {
        self.in_flight_limit = limit;
        self
    }

    /// Another handle on the same database with a pool of its own, as a
    /// second node has (the settings given with `with_…` carry over).
    pub async fn connect_again(&self) -> Result<Store> {
        let (url, max) = self.opened.as_ref();
        let fresh = Store::connect(url, *max, self.tz).await?;
        Ok(Store { pool: fresh.pool, ..self.clone() })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// Readiness: the database answers a trivial query.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Writes one audit entry inside the caller's transaction.
    async fn audit(
        conn: &mut sqlx::AnyConnection,
        now: DateTime<Utc>,
        actor: &Actor,
        entity: &str,
        entity_id: &str,
        action: &str,
        before: Option<String>,
        after: Option<String>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, channel, entity, entity_id, action, before, after) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(now.timestamp())
        .bind(&actor.name)
        .bind(actor.channel.as_str())
        .bind(entity)
        .bind(entity_id)
        .bind(action)
        .bind(before)
        .bind(after)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Audit history of one entity, oldest first.
    pub async fn audit_log(&self, entity: &str, entity_id: &str) -> Result<Vec<AuditEntry>> {
        self.audit_log_page(entity, entity_id, Page::ALL).await
    }

    pub async fn audit_log_page(&self, entity: &str, entity_id: &str, page: Page) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT at, actor, channel, action, before, after FROM audit_log \
             WHERE entity = $1 AND entity_id = $2 ORDER BY id LIMIT $3 OFFSET $4",
        )
        .bind(entity)
        .bind(entity_id)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: ts(r.try_get("at")?)?,
                    actor: r.try_get("actor")?,
                    channel: r.try_get("channel")?,
                    action: r.try_get("action")?,
                    before: r.try_get("before")?,
                    after: r.try_get("after")?,
                })
            })
            .collect()
    }
}

fn ts(secs: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0).ok_or_else(|| StoreError::Corrupt(format!("timestamp {secs} out of range")))
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The file behind a `sqlite:` URL (`sqlite://data/c.db?mode=rwc` →
/// `data/c.db`); `None` for PostgreSQL and in-memory databases.
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && !path.contains(":memory:")).then(|| std::path::PathBuf::from(path))
}
