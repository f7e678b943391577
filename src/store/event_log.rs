//! The event log concern: append-only storage of Stripe events, and its reads.
//!
//! [`EventLogStore`] lists the operations on the database handle and [`EventLogTx`] those
//! inside a transaction. Each is implemented by both backends (`postgres/event_log.rs`,
//! `sqlite/event_log.rs`) and by [`Db`] / [`Tx`], which only dispatch.

use super::{Db, StorageError, Tx};

/// Operations on the database handle. Dispatched statically through [`Db`], never `dyn`.
#[allow(async_fn_in_trait)] // static dispatch only: callers see the concrete futures, and they are Send.
pub trait EventLogStore {
    /// Number of entries, for operators and tests.
    async fn count_events(&self) -> Result<i64, StorageError>;
    /// The highest position in the log (0 when empty).
    async fn last_position(&self) -> Result<i64, StorageError>;
}

/// Operations inside a transaction. Dispatched statically through [`Tx`], never `dyn`.
#[allow(async_fn_in_trait)] // as above
pub trait EventLogTx {}

impl EventLogStore for Db {
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

impl EventLogTx for Tx<'_> {}
