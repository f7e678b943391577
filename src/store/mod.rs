//! Storage: every SQL statement of the service lives in this module and nowhere else.
//!
//! # Layout
//!
//! | Path | What lives there |
//! |---|---|
//! | `mod.rs` | [`Db`] and [`Tx`], the two small enums the rest of the service holds (so `AppState` stays non-generic), connection settings, migrations. |
//! | `error.rs` | [`StorageError`], the one error of this module; it keeps its sqlx source. |
//! | `kind.rs` | [`Kind`], the closed set of read-model kinds. |
//! | `event_log.rs`, `read_models.rs`, `outbox.rs`, `jobs.rs` | One trait per concern: the storage operations, their typed rows, and the `Db`/`Tx` dispatch. |
//! | `postgres/<concern>.rs`, `sqlite/<concern>.rs` | Each backend's implementation of those traits. |
//! | `common/<concern>.rs` | What both backends share: statements whose text is identical (`&'static str` constants), row decoding written once for both, and `<concern>_store_same_on_both!`: the trait methods that bind and run those statements the same way on both backends, written once and expanded in each backend's impl with its own pools. |
//!
//! # The rules
//!
//! - SQL appears only under `src/store/`. `.ci/run` fails when `sqlx` is named anywhere else in
//!   `src/` (see `SQL_HOME_PENDING` there for the files still being moved).
//! - One folder per backend. Where the SQL differs (PostgreSQL batches with `UNNEST` and takes
//!   advisory locks; SQLite loops on its single writer connection), each backend has its own
//!   statement. Where it is identical, it is written once in `common/<concern>.rs` and both
//!   backends execute that constant: both drivers accept `$n` placeholders.
//! - Rows are typed structs, never tuples: decoded by a `sqlx::FromRow` implementation written
//!   once for both backends (see `common::event_log` for the shape; the bounds say "any row
//!   whose database decodes these column types").
//! - "One trait listing every storage operation" is met by one trait per concern
//!   ([`event_log::EventLogStore`], [`read_models::ReadModelStore`], [`outbox::OutboxStore`],
//!   [`jobs::JobStore`], plus `...Tx` traits for operations inside a transaction): each concern's
//!   operations are in one place, and a backend implements all of them or does not compile.
//!   The traits are dispatched statically, through the `Db`/`Tx` match, never as `dyn`.
//!
//! # How a caller uses it
//!
//! ```ignore
//! use crate::store::{Db, Tx, StorageError};
//! use crate::store::event_log::EventLogStore as _; // brings the operations into scope
//!
//! let db = Db::connect(&target, &PoolSettings::default()).await?;
//! db.migrate().await?;
//! let n = db.count_events().await?;          // a read: the pool (SQLite: the read pool)
//! let mut tx = Tx::begin(&db).await?;         // a write: one transaction (SQLite: the writer)
//! /* tx.<operation>(...).await?; */
//! tx.commit().await?;
//! ```
//!
//! Callers never see a pool, a connection or a row: only `Db`, `Tx`, the traits' methods and
//! the typed values they return.

pub mod common;
pub mod error;
pub mod event_log;
pub mod history;
pub mod ingest;
pub mod jobs;
pub mod kind;
mod migrations;
pub mod outbox;
pub mod postgres;
pub mod read_models;
pub mod rebuild;
pub mod seal;
pub mod sqlite;
pub mod ui;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

pub use error::StorageError;
pub use kind::Kind;
pub use postgres::{PgStore, PgTx};
pub use sqlite::{SqliteStore, SqliteTx};

/// The database handle: one of the two backends. Cheap to clone (pools are shared).
#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

/// A transaction on either backend. Operations inside a transaction are the `...Tx` traits of
/// each concern; this type only begins, commits and runs parameterless statements.
pub enum Tx<'c> {
    Postgres(PgTx<'c>),
    Sqlite(SqliteTx<'c>),
}

impl Tx<'_> {
    /// A write transaction. On SQLite it runs on the single writer connection.
    pub async fn begin(db: &Db) -> Result<Tx<'static>, StorageError> {
        Ok(match db {
            Db::Postgres(store) => Tx::Postgres(store.begin().await?),
            Db::Sqlite(store) => Tx::Sqlite(store.begin().await?),
        })
    }

    pub async fn commit(self) -> Result<(), StorageError> {
        match self {
            Tx::Postgres(tx) => tx.commit().await?,
            Tx::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }

    /// Runs a statement without parameters or results (savepoints, locks).
    pub async fn execute(&mut self, sql: &str) -> Result<(), StorageError> {
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
    pub async fn connect(target: &DbTarget, settings: &PoolSettings) -> Result<Db, StorageError> {
        Ok(match target {
            DbTarget::Postgres(options) => Db::Postgres(PgStore::connect(options, settings).await?),
            DbTarget::Sqlite(options) => Db::Sqlite(SqliteStore::connect(options, settings).await?),
        })
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies every pending migration. Safe to call from several instances at once: sqlx takes
    /// an advisory lock on PostgreSQL, and SQLite serialises writers.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        let result = match self {
            Db::Postgres(store) => {
                migrations::migrator(Backend::Postgres)
                    .run(&store.pool)
                    .await
            }
            Db::Sqlite(store) => {
                migrations::migrator(Backend::Sqlite)
                    .run(&store.write)
                    .await
            }
        };
        result.map_err(StorageError::from_migrate)
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StorageError> {
        const SQL: &str = "SELECT 1";
        match self {
            Db::Postgres(store) => sqlx::query(SQL).execute(&store.pool).await?,
            Db::Sqlite(store) => {
                sqlx::query(SQL).execute(&store.read).await?;
                return Ok(());
            }
        };
        Ok(())
    }

    pub async fn close(&self) {
        match self {
            Db::Postgres(store) => {
                store.ingest.close().await;
                store.pool.close().await;
            }
            Db::Sqlite(store) => {
                store.read.close().await;
                store.write.close().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
