//! The outbox concern: `outbox` rows (enqueue in the projection transaction, claim with a
//! lease, settle, list, re-queue, count). What to send and when to give up
//! (`crate::outbox`) is not storage and stays there.
//!
//! [`OutboxStore`] lists the operations on the database handle. Each is implemented by both
//! backends (`postgres/outbox.rs`, `sqlite/outbox.rs`) and by [`Db`], which only dispatches.
//! Ingestion writes its outbox rows in the batch's one write (`store::ingest`, ADR 16).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{Db, StorageError};

/// Where a row is in its life. The column has a CHECK on exactly these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    Pending,
    Sent,
    Failed,
    Skipped,
}

impl OutboxStatus {
    /// Every status, in the order the CLI, the API's error message and `/metrics` list them.
    pub const ALL: [OutboxStatus; 4] = [
        OutboxStatus::Pending,
        OutboxStatus::Sent,
        OutboxStatus::Failed,
        OutboxStatus::Skipped,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Failed => "failed",
            OutboxStatus::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<OutboxStatus> {
        OutboxStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

impl std::fmt::Display for OutboxStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One outbox row, as the API and CLI show it.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub id: i64,
    pub dedupe_key: String,
    /// As stored: the column is open text, and a kind this version does not know (written by
    /// another version) must fail its own row in the worker, not every read of the queue. The
    /// worker parses it into a `NotificationKind`; every row this version writes is one.
    pub kind: String,
    pub customer_id: String,
    pub event_id: String,
    /// The stored JSON (`null` if it does not parse).
    pub details: Value,
    pub status: OutboxStatus,
    pub attempts: i32,
    /// Only while the row is pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// What an attempt leaves on a claimed row (times are unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement<'a> {
    pub status: OutboxStatus,
    pub next_attempt_at: i64,
    pub last_error: Option<&'a str>,
    pub sent_at: Option<i64>,
}

/// Which rows `outbox retry` puts back in the queue.
#[derive(Debug, Clone, Copy)]
pub enum RetryTarget {
    /// Every failed row.
    AllFailed,
    /// One failed or skipped row, by id.
    One(i64),
}

/// How many rows are in one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCount {
    pub status: OutboxStatus,
    pub count: i64,
}

/// Operations on the database handle. Dispatched statically through [`Db`], never `dyn`.
/// Reads run on the pool (SQLite: the read pool); writes on SQLite go to the writer.
#[allow(async_fn_in_trait)] // static dispatch only: callers see the concrete futures, and they are Send.
pub trait OutboxStore {
    /// Claims up to `limit` rows due at `now` until `claimed_until`, counting the attempt: the
    /// rows that fell due first (ties by id), returned by id. On PostgreSQL `SKIP LOCKED` lets concurrent workers take disjoint
    /// rows instead of queueing on each other; SQLite's single writer serialises claims anyway.
    async fn outbox_claim(
        &self,
        now: i64,
        claimed_until: i64,
        limit: i64,
    ) -> Result<Vec<Item>, StorageError>;
    /// Records the outcomes of attempts on claimed rows, each by row id, releasing their claims,
    /// in one statement: one round trip and one commit for a worker's whole batch instead of
    /// one each per row. A row no longer pending (re-queued or settled meanwhile) is left as
    /// it is.
    async fn outbox_settle_all(
        &self,
        settlements: &[(i64, Settlement<'_>)],
    ) -> Result<(), StorageError>;
    /// Rows in `status` (all when `None`) with an id above `after_id`, by id, at most `limit`.
    async fn outbox_list(
        &self,
        status: Option<OutboxStatus>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Item>, StorageError>;
    /// Puts `target` back in the queue, due at `now`, with a fresh attempt budget. Returns how
    /// many rows were re-queued. A sent row is never re-queued.
    async fn outbox_retry(&self, target: RetryTarget, now: i64) -> Result<u64, StorageError>;
    /// Rows per status present, by status.
    async fn outbox_counts(&self) -> Result<Vec<StatusCount>, StorageError>;
}

impl OutboxStore for Db {
    async fn outbox_claim(
        &self,
        now: i64,
        claimed_until: i64,
        limit: i64,
    ) -> Result<Vec<Item>, StorageError> {
        match self {
            Db::Postgres(s) => s.outbox_claim(now, claimed_until, limit).await,
            Db::Sqlite(s) => s.outbox_claim(now, claimed_until, limit).await,
        }
    }

    async fn outbox_settle_all(
        &self,
        settlements: &[(i64, Settlement<'_>)],
    ) -> Result<(), StorageError> {
        match self {
            Db::Postgres(s) => s.outbox_settle_all(settlements).await,
            Db::Sqlite(s) => s.outbox_settle_all(settlements).await,
        }
    }

    async fn outbox_list(
        &self,
        status: Option<OutboxStatus>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Item>, StorageError> {
        match self {
            Db::Postgres(s) => s.outbox_list(status, after_id, limit).await,
            Db::Sqlite(s) => s.outbox_list(status, after_id, limit).await,
        }
    }

    async fn outbox_retry(&self, target: RetryTarget, now: i64) -> Result<u64, StorageError> {
        match self {
            Db::Postgres(s) => s.outbox_retry(target, now).await,
            Db::Sqlite(s) => s.outbox_retry(target, now).await,
        }
    }

    async fn outbox_counts(&self) -> Result<Vec<StatusCount>, StorageError> {
        match self {
            Db::Postgres(s) => s.outbox_counts().await,
            Db::Sqlite(s) => s.outbox_counts().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_back_as_themselves_and_serialise_as_stored() {
        for status in OutboxStatus::ALL {
            assert_eq!(OutboxStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                Value::String(status.as_str().to_owned())
            );
        }
        assert_eq!(OutboxStatus::parse("Pending"), None);
    }
}
