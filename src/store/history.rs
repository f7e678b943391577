//! The history concern: which log entries touched which object (`object_touches`, migration
//! 0008, docs/adr/0019), and reading an object's entries through it.
//!
//! Touches are written by the projector with the read models: by ingestion inside its one
//! write (`ledger_ingest_batch` on PostgreSQL, so a batch still makes three round trips), by
//! the catch-up projector in its batch write, and by `rebuild` for the whole log.

use chrono::{DateTime, Utc};

use super::read_models::Key;
use super::{Db, Kind, StorageError, Tx};
use crate::event_log::Source;

/// An object a projected entry touched, by the entry's event id (ingestion knows the position
/// only once the entry is appended, inside the same write).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Touch {
    pub kind: Kind,
    pub object_id: String,
    pub event_id: String,
}

/// An object an entry at a known position touched (rebuild).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TouchAt {
    pub kind: Kind,
    pub object_id: String,
    pub position: i64,
}

/// A log entry as history, as-of and explain fold it.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub position: i64,
    pub event_id: String,
    pub event_type: String,
    pub source: Source,
    pub stripe_created: i64,
    pub received_at: DateTime<Utc>,
    pub payload: String,
}

/// Operations on the database handle. Dispatched statically through [`Db`], never `dyn`.
#[allow(async_fn_in_trait)] // static dispatch only: callers see the concrete futures, and they are Send.
pub trait HistoryStore {
    /// The entries that touched any of the objects, each once, at or before `upto`, in log
    /// order: one statement whatever the number of objects (a user's invoices).
    async fn touching_entries(
        &self,
        keys: &[Key],
        upto: i64,
    ) -> Result<Vec<HistoryEntry>, StorageError>;
    /// The receive time of the entry at `position`, or of the last one before it.
    async fn received_before(&self, position: i64) -> Result<Option<DateTime<Utc>>, StorageError>;
}

/// Operations inside a transaction.
#[allow(async_fn_in_trait)] // as above
pub trait HistoryTx {
    /// Records touches of entries already logged (rebuild: its own transactions while it
    /// replays, then the switch's); existing ones are kept.
    async fn record_touches(&mut self, touches: &[TouchAt]) -> Result<(), StorageError>;
}

impl HistoryStore for Db {
    async fn touching_entries(
        &self,
        keys: &[Key],
        upto: i64,
    ) -> Result<Vec<HistoryEntry>, StorageError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Db::Postgres(s) => s.touching_entries(keys, upto).await,
            Db::Sqlite(s) => s.touching_entries(keys, upto).await,
        }
    }

    async fn received_before(&self, position: i64) -> Result<Option<DateTime<Utc>>, StorageError> {
        match self {
            Db::Postgres(s) => s.received_before(position).await,
            Db::Sqlite(s) => s.received_before(position).await,
        }
    }
}

impl HistoryTx for Tx<'_> {
    async fn record_touches(&mut self, touches: &[TouchAt]) -> Result<(), StorageError> {
        if touches.is_empty() {
            return Ok(());
        }
        match self {
            Tx::Postgres(tx) => super::postgres::history::record_touches(tx, touches).await,
            Tx::Sqlite(tx) => super::sqlite::history::record_touches(tx, touches).await,
        }
    }
}
