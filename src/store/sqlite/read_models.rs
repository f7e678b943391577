//! SQLite implementation of the read models (see `store::read_models`).
//!
//! Batches loop on the single writer connection, which also serialises projection: no locks.

use chrono::Utc;

use super::{timestamp, SqliteStore, SqliteTx};
use crate::read_models::Query;
use crate::store::common::read_models::{self as sql, ListStates};
use crate::store::read_models::*;
use crate::store::{Kind, StorageError};

impl ReadModelStore for SqliteStore {
    crate::store::common::read_models::read_model_store_same_on_both!(
        read,
        write,
        sql::STATES_OF_SQLITE,
        ids_param
    );

    async fn record_dead_letter(
        &self,
        event_id: &str,
        position: i64,
        error: &str,
    ) -> Result<(), StorageError> {
        sqlx::query(sql::DEAD_LETTER_UPSERT)
            .bind(event_id)
            .bind(position)
            .bind(error)
            .bind(timestamp(Utc::now()))
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn save_projection_checkpoint(
        &self,
        name: &str,
        position: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(sql::FORGET_PROJECTED)
            .bind(position)
            .execute(&self.write)
            .await?;
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, position) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET position = MAX(projection_checkpoints.position, excluded.position)",
        )
        .bind(name)
        .bind(position)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn analyze_read_models(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

impl ReadModelTx for SqliteTx<'_> {
    crate::store::common::read_models::read_model_tx_same_on_both!();

    /// This transaction holds the only writer connection: nothing is appended until it ends.
    async fn hold_appends(&mut self) -> Result<(), StorageError> {
        Ok(())
    }

    async fn record_dead_letter(
        &mut self,
        event_id: &str,
        position: i64,
        error: &str,
    ) -> Result<(), StorageError> {
        sqlx::query(sql::DEAD_LETTER_UPSERT)
            .bind(event_id)
            .bind(position)
            .bind(error)
            .bind(timestamp(Utc::now()))
            .execute(&mut **self)
            .await?;
        Ok(())
    }
}

/// `$2` of [`sql::STATES_OF_SQLITE`]: the ids as a JSON array (SQLite has no arrays).
fn ids_param(ids: &[&str]) -> String {
    serde_json::to_string(ids).expect("ids serialise")
}
