//! The ingestion concern: one batch of events read, then written, in as few round trips as the
//! backend allows (docs/adr/0016).
//!
//! A batch is an [`IngestSession`]: one connection for the whole batch. It reads what the
//! batch needs in one statement ([`IngestSession::read`]: the active generation, which of the
//! batch's ids are logged, and the versioned states of the objects it touches), the service
//! folds in memory, then [`IngestSession::write`] writes everything at once: read models
//! (only where the version is still the one read), outbox rows, the append, projected
//! positions and dead letters.
//!
//! - PostgreSQL: the read runs in autocommit, without locks; the write is one call of
//!   `ledger_ingest_batch` (migration 0006) in autocommit, which is its own transaction, so it
//!   returns committed. With the pool's check of the connection, a batch makes three round trips.
//!   A version that moved, or a generation switched by a rebuild, fails the call as a whole
//!   ([`StorageError::is_conflict`]); the caller reads and folds again.
//! - SQLite: one transaction on the single writer connection (nothing can change between the
//!   read and the write), one statement per table, each over a JSON array (`json_each`), so
//!   its text does not depend on the batch's size and its prepared form is reused. The read's
//!   request begins the transaction and the write's commits it: two requests to sqlx's worker
//!   thread per batch, besides the pool's check of the connection.
//!
//! A batch the writer folded from memory instead of a read (`BatchWrite::unread`,
//! docs/adr/0024) skips [`IngestSession::read`]: its write also checks the generation and that
//! every entry it appends is new, so on PostgreSQL it is the call alone, and on SQLite one
//! request that begins, writes and commits.

use std::collections::HashMap;

use ledger_projections::Notification;

use super::event_log::{Inserted, Logged};
use super::read_models::{Key, Row};
use super::{Db, StorageError};
use crate::event_log::NewEntry;

/// A stored read-model state and the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// JSON of the fold state.
    pub state: String,
    pub version: i64,
}

/// What a batch's read found (empty until the rows are read in).
#[derive(Debug, Clone, Default)]
pub struct BatchRead {
    /// The active generation, read with the states.
    pub generation: i64,
    /// The batch's ids that are already logged.
    pub logged: Vec<Logged>,
    /// The states of the requested keys that exist.
    pub states: HashMap<Key, Versioned>,
}

/// A row to write and the version it was folded from (0: the row did not exist).
#[derive(Debug, Clone)]
pub struct VersionedRow {
    pub row: Row,
    pub expected: i64,
}

/// A projection failure to record.
#[derive(Debug, Clone)]
pub struct FailedEntry<'a> {
    pub event_id: &'a str,
    /// Known for an entry already logged; `None` for one this batch appends.
    pub position: Option<i64>,
    pub error: String,
}

/// Everything a batch writes.
#[derive(Debug, Clone, Default)]
pub struct BatchWrite<'a> {
    /// The generation the batch read (and folded into).
    pub generation: i64,
    pub rows: Vec<VersionedRow>,
    /// Notifications with the event id that caused each.
    pub notifications: Vec<(Notification, String)>,
    /// Unix seconds, for the outbox rows.
    pub now: i64,
    /// Entries to append (distinct ids, none of them found logged by the read).
    pub fresh: Vec<&'a NewEntry>,
    /// Ids whose projection succeeded: marked projected (by position), dead letters cleared.
    pub projected_ids: Vec<&'a str>,
    /// Positions of logged entries projected again.
    pub projected_logged: Vec<i64>,
    pub failed: Vec<FailedEntry<'a>>,
    /// The objects each projected entry touched (`object_touches`, docs/adr/0019).
    pub touches: Vec<super::history::Touch>,
    /// Folded from the writer's memory instead of a read (docs/adr/0024): the write also
    /// checks the generation and that every entry in `fresh` is new, and fails as a conflict
    /// otherwise, having written nothing.
    pub unread: bool,
}

/// One batch's connection (PostgreSQL) or transaction (SQLite).
pub enum IngestSession {
    Postgres(super::postgres::ingest::PgSession),
    Sqlite(super::sqlite::ingest::SqliteSession),
}

impl IngestSession {
    /// PostgreSQL: takes a connection from the pool (which checks it: one round trip).
    /// SQLite: begins the transaction on the writer.
    pub async fn open(db: &Db) -> Result<IngestSession, StorageError> {
        Ok(match db {
            Db::Postgres(store) => IngestSession::Postgres(store.ingest_session().await?),
            Db::Sqlite(store) => IngestSession::Sqlite(store.ingest_session().await?),
        })
    }

    /// The active generation, which of `event_ids` are logged, and the states of `keys` in
    /// that generation, all from one snapshot.
    pub async fn read(
        &mut self,
        event_ids: &[&str],
        keys: &[Key],
    ) -> Result<BatchRead, StorageError> {
        match self {
            IngestSession::Postgres(s) => s.read(event_ids, keys).await,
            IngestSession::Sqlite(s) => s.read(event_ids, keys).await,
        }
    }

    /// More states of `generation`, for keys the first read could not know (a logged entry
    /// whose stored body names other objects than the body that arrived).
    pub async fn read_states(
        &mut self,
        generation: i64,
        keys: &[Key],
    ) -> Result<HashMap<Key, Versioned>, StorageError> {
        match self {
            IngestSession::Postgres(s) => s.read_states(generation, keys).await,
            IngestSession::Sqlite(s) => s.read_states(generation, keys).await,
        }
    }

    /// Writes the batch: one [`Inserted`] per `batch.fresh` entry, in order. Committed when
    /// this returns `Ok`; otherwise nothing was written. A batch marked `unread` needs no read
    /// before it: on SQLite its request begins the transaction.
    pub async fn write(&mut self, batch: &BatchWrite<'_>) -> Result<Vec<Inserted>, StorageError> {
        match self {
            IngestSession::Postgres(s) => s.write(batch).await,
            IngestSession::Sqlite(s) => s.write(batch).await,
        }
    }

    /// Whether the session may carry the next attempt after a refused write. PostgreSQL's
    /// write runs in autocommit, so nothing is left open; SQLite's transaction was rolled back
    /// unless the `ROLLBACK` failed (then the session closes its connection when dropped).
    pub fn reusable(&self) -> bool {
        match self {
            IngestSession::Postgres(_) => true,
            IngestSession::Sqlite(s) => s.reusable(),
        }
    }
}

/// Puts `inserted` rows (any order, by event id) in the order of `fresh`.
pub(crate) fn in_entry_order(
    fresh: &[&NewEntry],
    mut inserted: HashMap<String, Inserted>,
) -> Result<Vec<Inserted>, StorageError> {
    fresh
        .iter()
        .map(|e| {
            inserted.remove(e.envelope.id.as_str()).ok_or_else(|| {
                StorageError::invalid(format!("event {} vanished during append", e.envelope.id))
            })
        })
        .collect()
}
