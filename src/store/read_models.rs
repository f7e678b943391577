//! The read models concern: the `read_models` generations and `projection_meta` (the active
//! generation), dead letters, the catch-up checkpoint and the positions ingestion projected.
//!
//! [`ReadModelStore`] lists the operations on the database handle (reads, one-off writes) and
//! [`ReadModelTx`] those inside a transaction. Each is implemented by both backends
//! (`postgres/read_models.rs`, `sqlite/read_models.rs`) and by [`Db`] / [`Tx`], which only
//! dispatch. How facts are folded into rows (`crate::projector`) and how the read API pages and
//! filters (`crate::read_models`) is not storage and stays there.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Db, Kind, StorageError, Tx};
use crate::read_models::Query;

/// Key of the PostgreSQL advisory lock that guards the switch of the active generation:
/// ingestion's write (`ledger_ingest_batch`, see `store::ingest`) takes it shared and then checks
/// the generation it folded into is still active, and a rebuild takes it exclusively to switch,
/// so no batch can project into a generation that is switched away before its entries are
/// appended.
pub const GENERATION_LOCK: i64 = 0x7374_7269_7065_6772;

/// A chunk of the log after catch-up's checkpoint.
#[derive(Debug, Default)]
pub struct Unprojected {
    /// The chunk's last position; `None` when nothing follows the checkpoint.
    pub through: Option<i64>,
    /// The chunk's entries that ingestion has not marked projected, oldest first.
    pub entries: Vec<crate::store::event_log::StoredEvent>,
}

/// One read model: its kind and Stripe id.
pub type Key = (Kind, String);

/// One read-model row to write: the fold's state plus the columns the read API filters on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub kind: Kind,
    pub id: String,
    pub customer_id: Option<String>,
    pub user_id: Option<String>,
    pub status: Option<String>,
    /// JSON of the fold state.
    pub state: String,
}

/// A stored state with its key, as a rebuild compares generations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedState {
    pub kind: Kind,
    pub id: String,
    /// JSON of the fold state.
    pub state: String,
}

/// A row of a read-model list: the id pages by, the state is what is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedState {
    pub id: String,
    /// JSON of the fold state.
    pub state: String,
}

/// The column an unpaginated look-up of states matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatesBy {
    UserId,
    CustomerId,
}

/// A logged event that could not be projected.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub event_id: String,
    pub position: i64,
    pub error: String,
    pub attempts: i32,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// Operations on the database handle. Dispatched statically through [`Db`], never `dyn`.
/// Reads run on the pool (SQLite: the read pool); writes here are one-off statements outside
/// any transaction (SQLite: on the writer).
#[allow(async_fn_in_trait)] // static dispatch only: callers see the concrete futures, and they are Send.
pub trait ReadModelStore {
    /// One object's state JSON in the active generation.
    async fn read_model_state(&self, kind: Kind, id: &str) -> Result<Option<String>, StorageError>;
    /// The states of the `ids` of `kind` in the active generation that exist, by id: one
    /// statement for a batch of look-ups (the outbox's recipients).
    async fn read_model_states_of(
        &self,
        kind: Kind,
        ids: &[&str],
    ) -> Result<HashMap<String, String>, StorageError>;
    /// A page of `kind` in the active generation matching `query`, by id, at most
    /// `query.limit + 1` rows: the extra one tells the caller another page exists.
    async fn list_read_models(
        &self,
        kind: Kind,
        query: &Query,
    ) -> Result<Vec<ListedState>, StorageError>;
    /// States of `kind` in the active generation whose `by` column is `value`, by id, at most
    /// 1000 (for entitlements, where a user has a handful).
    async fn read_model_states_by(
        &self,
        kind: Kind,
        by: StatesBy,
        value: &str,
    ) -> Result<Vec<String>, StorageError>;
    /// Records (or counts again) a projection failure, outside any failed transaction.
    async fn record_dead_letter(
        &self,
        event_id: &str,
        position: i64,
        error: &str,
    ) -> Result<(), StorageError>;
    /// Every dead letter, by position.
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StorageError>;
    /// Dead letters after `position`, by position, at most `limit + 1`.
    async fn dead_letters_after(
        &self,
        position: i64,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StorageError>;
    /// Catch-up's next chunk: the next `limit` entries after `after`, of which only those
    /// ingestion has not marked projected are read, with payloads.
    async fn unprojected_after(&self, after: i64, limit: u32) -> Result<Unprojected, StorageError>;
    /// The position the checkpoint `name` has reached, if it was ever saved.
    async fn projection_checkpoint(&self, name: &str) -> Result<Option<i64>, StorageError>;
    /// Forgets the projected positions up to `position` and moves the checkpoint `name` there
    /// (never backwards).
    async fn save_projection_checkpoint(
        &self,
        name: &str,
        position: i64,
    ) -> Result<(), StorageError>;
    /// Refreshes the planner's statistics of `read_models` (PostgreSQL; SQLite needs nothing).
    async fn analyze_read_models(&self) -> Result<(), StorageError>;
}

/// Operations inside a transaction. Dispatched statically through [`Tx`], never `dyn`.
#[allow(async_fn_in_trait)] // as above
pub trait ReadModelTx {
    async fn active_generation(&mut self) -> Result<i64, StorageError>;
    /// The highest generation in use (1 when there is none).
    async fn max_generation(&mut self) -> Result<i64, StorageError>;
    async fn delete_generation(&mut self, generation: i64) -> Result<(), StorageError>;
    /// Copies every row of `kind` from generation `from` to `to`.
    async fn copy_kind(&mut self, from: i64, to: i64, kind: Kind) -> Result<(), StorageError>;
    async fn switch_generation(&mut self, generation: i64) -> Result<(), StorageError>;
    /// Every row of a generation.
    async fn generation_states(&mut self, generation: i64)
        -> Result<Vec<KeyedState>, StorageError>;
    /// Holds back generation switches and appends until the transaction ends, for a rebuild's
    /// final catch-up and switch (PostgreSQL: [`GENERATION_LOCK`] then the append lock, the
    /// order ingestion takes them in; SQLite: the transaction already holds the only writer).
    async fn hold_appends(&mut self) -> Result<(), StorageError>;
    /// Records (or counts again) a projection failure inside the transaction.
    async fn record_dead_letter(
        &mut self,
        event_id: &str,
        position: i64,
        error: &str,
    ) -> Result<(), StorageError>;
}

impl ReadModelStore for Db {
    async fn read_model_state(&self, kind: Kind, id: &str) -> Result<Option<String>, StorageError> {
        match self {
            Db::Postgres(s) => s.read_model_state(kind, id).await,
            Db::Sqlite(s) => s.read_model_state(kind, id).await,
        }
    }

    async fn read_model_states_of(
        &self,
        kind: Kind,
        ids: &[&str],
    ) -> Result<HashMap<String, String>, StorageError> {
        match self {
            Db::Postgres(s) => s.read_model_states_of(kind, ids).await,
            Db::Sqlite(s) => s.read_model_states_of(kind, ids).await,
        }
    }

    async fn list_read_models(
        &self,
        kind: Kind,
        query: &Query,
    ) -> Result<Vec<ListedState>, StorageError> {
        match self {
            Db::Postgres(s) => s.list_read_models(kind, query).await,
            Db::Sqlite(s) => s.list_read_models(kind, query).await,
        }
    }

    async fn read_model_states_by(
        &self,
        kind: Kind,
        by: StatesBy,
        value: &str,
    ) -> Result<Vec<String>, StorageError> {
        match self {
            Db::Postgres(s) => s.read_model_states_by(kind, by, value).await,
            Db::Sqlite(s) => s.read_model_states_by(kind, by, value).await,
        }
    }

    async fn record_dead_letter(
        &self,
        event_id: &str,
        position: i64,
        error: &str,
    ) -> Result<(), StorageError> {
        match self {
            Db::Postgres(s) => s.record_dead_letter(event_id, position, error).await,
            Db::Sqlite(s) => s.record_dead_letter(event_id, position, error).await,
        }
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StorageError> {
        match self {
            Db::Postgres(s) => s.dead_letters().await,
            Db::Sqlite(s) => s.dead_letters().await,
        }
    }

    async fn dead_letters_after(
        &self,
        position: i64,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StorageError> {
        match self {
            Db::Postgres(s) => s.dead_letters_after(position, limit).await,
            Db::Sqlite(s) => s.dead_letters_after(position, limit).await,
        }
    }

    async fn unprojected_after(&self, after: i64, limit: u32) -> Result<Unprojected, StorageError> {
        match self {
            Db::Postgres(s) => s.unprojected_after(after, limit).await,
            Db::Sqlite(s) => s.unprojected_after(after, limit).await,
        }
    }

    async fn projection_checkpoint(&self, name: &str) -> Result<Option<i64>, StorageError> {
        match self {
            Db::Postgres(s) => s.projection_checkpoint(name).await,
            Db::Sqlite(s) => s.projection_checkpoint(name).await,
        }
    }

    async fn save_projection_checkpoint(
        &self,
        name: &str,
        position: i64,
    ) -> Result<(), StorageError> {
        match self {
            Db::Postgres(s) => s.save_projection_checkpoint(name, position).await,
            Db::Sqlite(s) => s.save_projection_checkpoint(name, position).await,
        }
    }

    async fn analyze_read_models(&self) -> Result<(), StorageError> {
        match self {
            Db::Postgres(s) => s.analyze_read_models().await,
            Db::Sqlite(s) => s.analyze_read_models().await,
        }
    }
}

impl ReadModelTx for Tx<'_> {
    async fn active_generation(&mut self) -> Result<i64, StorageError> {
        match self {
            Tx::Postgres(tx) => tx.active_generation().await,
            Tx::Sqlite(tx) => tx.active_generation().await,
        }
    }

    async fn max_generation(&mut self) -> Result<i64, StorageError> {
        match self {
            Tx::Postgres(tx) => tx.max_generation().await,
            Tx::Sqlite(tx) => tx.max_generation().await,
        }
    }

    async fn delete_generation(&mut self, generation: i64) -> Result<(), StorageError> {
        match self {
            Tx::Postgres(tx) => tx.delete_generation(generation).await,
            Tx::Sqlite(tx) => tx.delete_generation(generation).await,
        }
    }

    async fn copy_kind(&mut self, from: i64, to: i64, kind: Kind) -> Result<(), StorageError> {
        match self {
            Tx::Postgres(tx) => tx.copy_kind(from, to, kind).await,
            Tx::Sqlite(tx) => tx.copy_kind(from, to, kind).await,
        }
    }

    async fn switch_generation(&mut self, generation: i64) -> Result<(), StorageError> {
        match self {
            Tx::Postgres(tx) => tx.switch_generation(generation).await,
            Tx::Sqlite(tx) => tx.switch_generation(generation).await,
        }
    }

    async fn generation_states(
        &mut self,
        generation: i64,
    ) -> Result<Vec<KeyedState>, StorageError> {
        match self {
            Tx::Postgres(tx) => tx.generation_states(generation).await,
            Tx::Sqlite(tx) => tx.generation_states(generation).await,
        }
    }

    async fn hold_appends(&mut self) -> Result<(), StorageError> {
        match self {
            Tx::Postgres(tx) => tx.hold_appends().await,
            Tx::Sqlite(tx) => tx.hold_appends().await,
        }
    }

    async fn record_dead_letter(
        &mut self,
        event_id: &str,
        position: i64,
        error: &str,
    ) -> Result<(), StorageError> {
        match self {
            Tx::Postgres(tx) => tx.record_dead_letter(event_id, position, error).await,
            Tx::Sqlite(tx) => tx.record_dead_letter(event_id, position, error).await,
        }
    }
}
