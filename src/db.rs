//! The two storage backends behind one handle: SQLite (the embedded default) and PostgreSQL.
//!
//! Each module that stores something has one submodule per backend and matches on `Db`; the
//! SQL differs in the details that matter (types, locking), so there is no lowest-common-
//! denominator `Any` layer in between.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqliteDb),
}

/// SQLite allows one writer at a time. Writes go through a one-connection pool so that
/// concurrent appends queue in order (fair, no busy-wait), while reads use their own pool and,
/// thanks to WAL, never wait for the writer.
#[derive(Clone, Debug)]
pub struct SqliteDb {
    pub read: SqlitePool,
    pub write: SqlitePool,
}

/// A transaction on either backend. Storage modules add their own methods to it.
pub enum Tx<'c> {
    Postgres(sqlx::Transaction<'c, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'c, sqlx::Sqlite>),
}

impl Tx<'_> {
    pub async fn begin(db: &Db) -> Result<Tx<'static>, crate::event_log::StorageError> {
        Ok(match db {
            // Generic plans cached while the tables were small stay sequential scans; these
            // statements are cheap to plan, so plan them for the data at hand. Sent with the
            // BEGIN as one simple query: one round trip inside the append's critical path.
            Db::Postgres(pool) => Tx::Postgres(
                pool.begin_with("BEGIN; SET LOCAL plan_cache_mode = force_custom_plan")
                    .await?,
            ),
            // The single writer connection: writes serialise in order, without busy waits.
            // IMMEDIATE takes the write lock up front: a deferred transaction that reads first
            // and writes later gets SQLITE_BUSY at once (no busy wait) when another process on
            // the same file is writing.
            Db::Sqlite(db) => Tx::Sqlite(db.write.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    /// A transaction for ingestion: as `begin`, and on PostgreSQL it also pins the active
    /// read-model generation (a shared lock on `GENERATION_LOCK`, held to the end) in the same
    /// round trip. The generation must then be read by a later statement: a statement's
    /// snapshot is taken before it waits for a lock, so one that locked and read at once could
    /// read a generation switched while it waited.
    pub async fn begin_ingest(db: &Db) -> Result<Tx<'static>, crate::event_log::StorageError> {
        Ok(match db {
            Db::Postgres(pool) => Tx::Postgres(
                pool.begin_with(format!(
                    "BEGIN; SET LOCAL plan_cache_mode = force_custom_plan; \
                     SELECT pg_advisory_xact_lock_shared({})",
                    crate::projector::store::GENERATION_LOCK
                ))
                .await?,
            ),
            Db::Sqlite(_) => Tx::begin(db).await?,
        })
    }

    pub async fn commit(self) -> Result<(), crate::event_log::StorageError> {
        match self {
            Tx::Postgres(tx) => tx.commit().await?,
            Tx::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }

    /// Runs a statement without parameters or results (savepoints, locks).
    pub async fn execute(&mut self, sql: &str) -> Result<(), crate::event_log::StorageError> {
        match self {
            Tx::Postgres(tx) => {
                sqlx::query(sql).execute(&mut **tx).await?;
            }
            Tx::Sqlite(tx) => {
                sqlx::query(sql).execute(&mut **tx).await?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbUrlError {
    #[error("must start with sqlite:// or postgres:// (or postgresql://)")]
    UnknownScheme,
    #[error("is not a valid {0} connection string: {1}")]
    Invalid(Backend, String),
}

/// Options for opening a pool; defaults suit `serve`.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long a request may wait for a pooled connection before the database counts as
    /// unavailable. Kept short so that webhooks answer 503 inside Stripe's timeout.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(1),
        }
    }
}

/// A parsed `DATABASE_URL`, not yet connected.
#[derive(Clone)]
pub enum DbTarget {
    Postgres(PgConnectOptions),
    Sqlite(SqliteConnectOptions),
}

// sqlx's own Debug prints the PostgreSQL password.
impl std::fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbTarget::Postgres(o) => f
                .debug_struct("Postgres")
                .field("host", &o.get_host())
                .field("port", &o.get_port())
                .field("database", &o.get_database())
                .finish_non_exhaustive(),
            DbTarget::Sqlite(o) => f
                .debug_struct("Sqlite")
                .field("filename", &o.get_filename())
                .finish_non_exhaustive(),
        }
    }
}

impl DbTarget {
    pub fn parse(url: &str) -> Result<Self, DbUrlError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| DbUrlError::Invalid(Backend::Postgres, redact_url_error(&e)))?;
            Ok(DbTarget::Postgres(
                options.application_name("stripe-ledger"),
            ))
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| DbUrlError::Invalid(Backend::Sqlite, redact_url_error(&e)))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a 200 to Stripe means the event survives a power cut. NORMAL would be
                // faster and could lose the last acknowledged events, which Stripe never resends.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            Ok(DbTarget::Sqlite(options))
        } else {
            Err(DbUrlError::UnknownScheme)
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            DbTarget::Postgres(_) => Backend::Postgres,
            DbTarget::Sqlite(_) => Backend::Sqlite,
        }
    }
}

// sqlx's parse errors can echo the URL, and a URL can hold a password.
fn redact_url_error(e: &sqlx::Error) -> String {
    let text = e.to_string();
    if text.contains('@') || text.contains("password") {
        "the URL could not be parsed".to_owned()
    } else {
        text
    }
}

impl Db {
    pub async fn connect(target: &DbTarget, settings: &PoolSettings) -> Result<Db, sqlx::Error> {
        match target {
            DbTarget::Postgres(options) => {
                let pool = PgPoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(settings.acquire_timeout)
                    .connect_with(options.clone())
                    .await?;
                Ok(Db::Postgres(pool))
            }
            DbTarget::Sqlite(options) => {
                // The writer connects first so the file (and WAL mode) exist before readers.
                let write = SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(settings.acquire_timeout)
                    .connect_with(options.clone())
                    .await?;
                let read = SqlitePoolOptions::new()
                    .max_connections(settings.max_connections.clamp(1, 8))
                    .acquire_timeout(settings.acquire_timeout)
                    .connect_with(options.clone().read_only(true))
                    .await?;
                Ok(Db::Sqlite(SqliteDb { read, write }))
            }
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies every pending migration. Safe to call from several instances at once: sqlx takes
    /// an advisory lock on PostgreSQL, and SQLite serialises writers.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self {
            Db::Postgres(pool) => migrator(Backend::Postgres).run(pool).await,
            Db::Sqlite(db) => migrator(Backend::Sqlite).run(&db.write).await,
        }
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        match self {
            Db::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()),
            Db::Sqlite(db) => sqlx::query("SELECT 1").execute(&db.read).await.map(|_| ()),
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite(db) => {
                db.read.close().await;
                db.write.close().await;
            }
        }
    }
}

/// Migrations are embedded in the binary, so a deployed `stripe-ledger` needs no files beside
/// it. Both backends list the same numbers and names; a unit test keeps them in step.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "event_log",
        include_str!("../migrations/postgres/0001_event_log.sql"),
        include_str!("../migrations/sqlite/0001_event_log.sql"),
    ),
    (
        2,
        "read_models",
        include_str!("../migrations/postgres/0002_read_models.sql"),
        include_str!("../migrations/sqlite/0002_read_models.sql"),
    ),
    (
        3,
        "reconciliation",
        include_str!("../migrations/postgres/0003_reconciliation.sql"),
        include_str!("../migrations/sqlite/0003_reconciliation.sql"),
    ),
    (
        4,
        "outbox",
        include_str!("../migrations/postgres/0004_outbox.sql"),
        include_str!("../migrations/sqlite/0004_outbox.sql"),
    ),
];

fn migrator(backend: Backend) -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, name, postgres, sqlite)| {
            let sql = match backend {
                Backend::Postgres => postgres,
                Backend::Sqlite => sqlite,
            };
            Migration::new(
                *version,
                Cow::Borrowed(*name),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
                false,
            )
        })
        .collect::<Vec<_>>();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_have_the_same_migrations_as_the_embedded_list() {
        for backend in ["postgres", "sqlite"] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(backend);
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            files.sort();
            let expected: Vec<String> = MIGRATIONS
                .iter()
                .map(|(v, name, _, _)| format!("{v:04}_{name}.sql"))
                .collect();
            assert_eq!(
                files, expected,
                "migrations/{backend} and MIGRATIONS disagree"
            );
        }
    }

    #[test]
    fn database_urls_pick_the_backend() {
        assert_eq!(
            DbTarget::parse("sqlite://x.db").unwrap().backend(),
            Backend::Sqlite
        );
        assert_eq!(
            DbTarget::parse("postgres://u@localhost/db")
                .unwrap()
                .backend(),
            Backend::Postgres
        );
        assert!(matches!(
            DbTarget::parse("mysql://x"),
            Err(DbUrlError::UnknownScheme)
        ));
    }
}
