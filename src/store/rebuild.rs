//! The rebuild's bulk operations, and the bench's bulk append: statements made for throughput
//! over whole chunks, kept apart from ingestion's per-batch statements.
//!
//! [`RebuildStore`] lists the operations on the database handle and [`RebuildTx`] those inside
//! a transaction; both backends implement them (`postgres/rebuild.rs`, `sqlite/rebuild.rs`),
//! and [`Db`] / [`Tx`] only dispatch.

use super::read_models::{Key, KeyedState, Row};
use super::{Db, StorageError, Tx};
use crate::event_log::{NewEntry, Source};

/// A log entry as a replay needs it: no verification record, no summary columns.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub position: i64,
    pub event_id: String,
    pub event_type: String,
    pub stripe_created: i64,
    pub source: Source,
    pub payload: String,
}

/// Operations on the database handle. Dispatched statically through [`Db`], never `dyn`.
#[allow(async_fn_in_trait)] // static dispatch only: callers see the concrete futures, and they are Send.
pub trait RebuildStore {
    /// Entries after `position`, oldest first, with only what a fold reads. Safe to tail by
    /// position alone: appends are serialised (`event_log::APPEND_LOCK`).
    async fn replay_after(&self, position: i64, limit: u32) -> Result<Vec<Replayed>, StorageError>;
    /// The states of `keys` in `generation` that exist (a generation being rebuilt, read back
    /// after the rebuild wrote and forgot them). Reads committed data only.
    async fn rebuild_states(
        &self,
        generation: i64,
        keys: &[Key],
    ) -> Result<Vec<KeyedState>, StorageError>;
    /// A write transaction for a generation nobody reads yet. On PostgreSQL its commit does not
    /// wait for the WAL flush (`synchronous_commit = off`): a crash may lose it, but the
    /// generation only becomes live through the switch, a normal durable commit whose flush
    /// also covers every earlier commit.
    async fn begin_rebuild(&self) -> Result<Tx<'static>, StorageError>;
    /// For `bench --prefill` only: inserts generated entries (new, distinct ids) in one
    /// statement per call, under the append lock. Nothing is marked projected.
    async fn bench_bulk_append(&self, entries: &[&NewEntry]) -> Result<(), StorageError>;
    /// For `bench --prefill` only, after the bulk load and its rebuild: the database as one that
    /// grew over months would be when the measured phases start. Planner statistics are taken,
    /// and the bulk load's pages are written out now (a checkpoint), instead of by the
    /// background writers while the phases' own commits wait on the disk.
    async fn bench_settle(&self) -> Result<(), StorageError>;
}

/// Operations inside a transaction. Dispatched statically through [`Tx`], never `dyn`.
#[allow(async_fn_in_trait)] // as above
pub trait RebuildTx {
    /// Writes whole rows of `generation` (insert, or replace a row written earlier), in as few
    /// statements as the backend allows.
    async fn rebuild_write_states(
        &mut self,
        generation: i64,
        rows: &[Row],
    ) -> Result<(), StorageError>;
}

impl RebuildStore for Db {
    async fn replay_after(&self, position: i64, limit: u32) -> Result<Vec<Replayed>, StorageError> {
        match self {
            Db::Postgres(s) => s.replay_after(position, limit).await,
            Db::Sqlite(s) => s.replay_after(position, limit).await,
        }
    }

    async fn rebuild_states(
        &self,
        generation: i64,
        keys: &[Key],
    ) -> Result<Vec<KeyedState>, StorageError> {
        match self {
            Db::Postgres(s) => s.rebuild_states(generation, keys).await,
            Db::Sqlite(s) => s.rebuild_states(generation, keys).await,
        }
    }

    async fn begin_rebuild(&self) -> Result<Tx<'static>, StorageError> {
        match self {
            Db::Postgres(s) => s.begin_rebuild().await,
            Db::Sqlite(s) => s.begin_rebuild().await,
        }
    }

    async fn bench_bulk_append(&self, entries: &[&NewEntry]) -> Result<(), StorageError> {
        match self {
            Db::Postgres(s) => s.bench_bulk_append(entries).await,
            Db::Sqlite(s) => s.bench_bulk_append(entries).await,
        }
    }

    async fn bench_settle(&self) -> Result<(), StorageError> {
        match self {
            Db::Postgres(s) => s.bench_settle().await,
            Db::Sqlite(s) => s.bench_settle().await,
        }
    }
}

impl RebuildTx for Tx<'_> {
    async fn rebuild_write_states(
        &mut self,
        generation: i64,
        rows: &[Row],
    ) -> Result<(), StorageError> {
        match self {
            Tx::Postgres(tx) => tx.rebuild_write_states(generation, rows).await,
            Tx::Sqlite(tx) => tx.rebuild_write_states(generation, rows).await,
        }
    }
}
