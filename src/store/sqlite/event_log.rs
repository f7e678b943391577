//! SQLite implementation of the event log (see `store::event_log`).

use super::{SqliteStore, SqliteTx};
use crate::store::common::event_log as sql;
use crate::store::event_log::*;
use crate::store::StorageError;

impl EventLogStore for SqliteStore {
    async fn count_events(&self) -> Result<i64, StorageError> {
        Ok(sqlx::query_scalar(sql::COUNT).fetch_one(&self.read).await?)
    }

    async fn last_position(&self) -> Result<i64, StorageError> {
        Ok(sqlx::query_scalar(sql::LAST_POSITION)
            .fetch_one(&self.read)
            .await?)
    }
}

impl EventLogTx for SqliteTx<'_> {}
