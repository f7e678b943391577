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
    crate::store::common::read_models::read_model_store_same_on_both!(read, write);

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
    async fn active_generation(&mut self) -> Result<i64, StorageError> {
        Ok(sqlx::query_scalar(sql::ACTIVE_GENERATION)
            .fetch_one(&mut **self)
            .await?)
    }

    async fn max_generation(&mut self) -> Result<i64, StorageError> {
        let max: Option<i64> = sqlx::query_scalar(sql::MAX_GENERATION)
            .fetch_one(&mut **self)
            .await?;
        Ok(max.unwrap_or(1))
    }

    async fn delete_generation(&mut self, generation: i64) -> Result<(), StorageError> {
        sqlx::query(sql::DELETE_GENERATION)
            .bind(generation)
            .execute(&mut **self)
            .await?;
        Ok(())
    }

    async fn copy_kind(&mut self, from: i64, to: i64, kind: Kind) -> Result<(), StorageError> {
        sqlx::query(sql::COPY_KIND)
            .bind(from)
            .bind(to)
            .bind(kind.as_str())
            .execute(&mut **self)
            .await?;
        Ok(())
    }

    async fn switch_generation(&mut self, generation: i64) -> Result<(), StorageError> {
        sqlx::query(sql::SWITCH_GENERATION)
            .bind(generation)
            .execute(&mut **self)
            .await?;
        Ok(())
    }

    async fn generation_states(
        &mut self,
        generation: i64,
    ) -> Result<Vec<KeyedState>, StorageError> {
        Ok(sqlx::query_as(sql::GENERATION_STATES)
            .bind(generation)
            .fetch_all(&mut **self)
            .await?)
    }

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
