//! The event log concern: append-only storage of Stripe events, and its reads.
//!
//! [`EventLogStore`] lists the operations on the database handle and [`EventLogTx`] those
//! inside a transaction. Each is implemented by both backends (`postgres/event_log.rs`,
//! `sqlite/event_log.rs`) and by [`Db`] / [`Tx`], which only dispatch. What to append and how
//! outcomes are reported (`crate::event_log`) is not storage and stays there.
//!
//! The database enforces immutability with triggers (`migrations/README.md`); this concern only
//! ever INSERTs into `event_log` and SELECTs from it.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Db, StorageError, Tx};
use crate::event_log::{EventFilter, NewEntry, PageRequest, Projected, Source};

/// Key of the PostgreSQL transaction-level advisory lock that serialises appends across all
/// instances, so positions become visible in order (see `postgres::event_log`). SQLite has a
/// single writer and needs no lock.
pub const APPEND_LOCK: i64 = 0x7374_7269_7065_6c67;

/// A stored entry as auditors see it.
#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    pub position: i64,
    pub event_id: String,
    pub event_type: String,
    pub api_version: Option<String>,
    pub livemode: bool,
    pub account: Option<String>,
    pub object_id: Option<String>,
    pub object_type: Option<String>,
    pub stripe_created: i64,
    pub received_at: DateTime<Utc>,
    pub source: Source,
    pub payload_redacted: bool,
    pub raw_body_sha256: String,
    pub signature_header: Option<String>,
    pub signature_timestamp: Option<i64>,
    pub verified_by_index: Option<i32>,
    pub verified_by_fingerprint: Option<String>,
    /// Only loaded for single-entry reads and the tailing read.
    pub payload: Option<String>,
}

/// An entry already in the log, as ingestion needs it to project it again.
#[derive(Debug, Clone)]
pub struct Logged {
    pub event_id: String,
    pub position: i64,
    pub event_type: String,
    pub stripe_created: i64,
    pub payload: String,
    pub raw_body_sha256: String,
}

/// Where an event id is logged, and the hash of the body it was logged from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedBody {
    pub position: i64,
    pub raw_body_sha256: String,
}

/// What a backend reports for each entry it was asked to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    pub position: i64,
    /// False when the id was already in the log (written by someone else).
    pub new: bool,
    pub raw_body_sha256: String,
}

/// Operations on the database handle. Dispatched statically through [`Db`], never `dyn`.
/// Reads run on the pool (SQLite: the read pool), so they never queue behind appends.
#[allow(async_fn_in_trait)] // static dispatch only: callers see the concrete futures, and they are Send.
pub trait EventLogStore {
    /// Where `event_id` is logged, if it is.
    async fn find_event(&self, event_id: &str) -> Result<Option<LoggedBody>, StorageError>;
    /// One entry with its payload and verification record.
    async fn get_event(&self, event_id: &str) -> Result<Option<StoredEvent>, StorageError>;
    /// Entries (without payloads) matching `filter`, in the page's order, at most
    /// `page.limit + 1` of them: the extra one tells the caller another page exists.
    async fn list_events(
        &self,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Vec<StoredEvent>, StorageError>;
    /// Number of entries, for operators and tests.
    async fn count_events(&self) -> Result<i64, StorageError>;
    /// The highest position in the log (0 when empty).
    async fn last_position(&self) -> Result<i64, StorageError>;
}

/// Operations inside a transaction. Dispatched statically through [`Tx`], never `dyn`.
#[allow(async_fn_in_trait)] // as above
pub trait EventLogTx {
    /// Inserts `entries` (distinct ids), one [`Inserted`] per entry in order, and records what
    /// ingestion `projected` before appending: the new positions of `projected.event_ids` and
    /// `projected.positions` are marked projected and their dead letters cleared. On
    /// PostgreSQL the transaction holds [`APPEND_LOCK`] from here until it ends: keep it short.
    async fn insert_events(
        &mut self,
        entries: &[&NewEntry],
        projected: &Projected<'_>,
    ) -> Result<Vec<Inserted>, StorageError>;
}

impl EventLogStore for Db {
    async fn find_event(&self, event_id: &str) -> Result<Option<LoggedBody>, StorageError> {
        match self {
            Db::Postgres(s) => s.find_event(event_id).await,
            Db::Sqlite(s) => s.find_event(event_id).await,
        }
    }

    async fn get_event(&self, event_id: &str) -> Result<Option<StoredEvent>, StorageError> {
        match self {
            Db::Postgres(s) => s.get_event(event_id).await,
            Db::Sqlite(s) => s.get_event(event_id).await,
        }
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Vec<StoredEvent>, StorageError> {
        match self {
            Db::Postgres(s) => s.list_events(filter, page).await,
            Db::Sqlite(s) => s.list_events(filter, page).await,
        }
    }

    async fn count_events(&self) -> Result<i64, StorageError> {
        match self {
            Db::Postgres(s) => s.count_events().await,
            Db::Sqlite(s) => s.count_events().await,
        }
    }

    async fn last_position(&self) -> Result<i64, StorageError> {
        match self {
            Db::Postgres(s) => s.last_position().await,
            Db::Sqlite(s) => s.last_position().await,
        }
    }
}

impl EventLogTx for Tx<'_> {
    async fn insert_events(
        &mut self,
        entries: &[&NewEntry],
        projected: &Projected<'_>,
    ) -> Result<Vec<Inserted>, StorageError> {
        match self {
            Tx::Postgres(tx) => tx.insert_events(entries, projected).await,
            Tx::Sqlite(tx) => tx.insert_events(entries, projected).await,
        }
    }
}
