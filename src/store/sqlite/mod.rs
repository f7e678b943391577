//! SQLite: the embedded default. One file per concern implements that concern's traits for
//! [`SqliteStore`] (reads on the read pool, one-off writes on the writer) and [`SqliteTx`]
//! (a transaction on the single writer connection).

pub mod event_log;
pub mod history;
pub mod ingest;
pub mod jobs;
pub mod outbox;
pub mod read_models;
pub mod rebuild;
pub mod seal;
pub mod ui;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::SqlitePool;

use super::{PoolSettings, StorageError};

/// SQLite allows one writer at a time. Writes go through a one-connection pool so that
/// concurrent appends queue in order (fair, no busy-wait), while reads use their own pool and,
/// thanks to WAL, never wait for the writer. The pools are public for integration tests that
/// damage data on purpose; the service itself goes through the traits.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pub read: SqlitePool,
    pub write: SqlitePool,
}

/// A transaction on the writer connection.
pub type SqliteTx<'c> = sqlx::Transaction<'c, sqlx::Sqlite>;

/// Timestamps are stored as fixed-width UTC text, so that text order is time order.
pub(crate) fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

impl SqliteStore {
    pub(super) async fn connect(
        options: &SqliteConnectOptions,
        settings: &PoolSettings,
    ) -> Result<SqliteStore, StorageError> {
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
        Ok(SqliteStore { read, write })
    }

    /// The single writer connection: writes serialise in order, without busy waits.
    /// IMMEDIATE takes the write lock up front: a deferred transaction that reads first and
    /// writes later gets SQLITE_BUSY at once (no busy wait) when another process on the same
    /// file is writing.
    pub(super) async fn begin(&self) -> Result<SqliteTx<'static>, StorageError> {
        Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
    }
}
