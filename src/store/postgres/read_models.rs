//! PostgreSQL implementation of the read models (see `store::read_models`).
//!
//! Batches are one statement each (`unnest` arrays); per-object serialisation uses
//! transaction-level advisory locks.

use chrono::Utc;

use super::{PgStore, PgTx};
use crate::read_models::Query;
use crate::store::common::read_models::{self as sql, ListStates};
use crate::store::event_log::APPEND_LOCK;
use crate::store::read_models::*;
use crate::store::{Kind, StorageError};

impl ReadModelStore for PgStore {
    crate::store::common::read_models::read_model_store_same_on_both!(
        pool,
        pool,
        sql::STATES_OF_PG,
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
            .bind(Utc::now())
            .execute(&self.pool)
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
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, position) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET position = GREATEST(projection_checkpoints.position, excluded.position)",
        )
        .bind(name)
        .bind(position)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A new generation grows fast; without fresh statistics PostgreSQL keeps planning the
    /// state look-up as if the table were empty.
    async fn analyze_read_models(&self) -> Result<(), StorageError> {
        sqlx::query("ANALYZE read_models")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl ReadModelTx for PgTx<'_> {
    crate::store::common::read_models::read_model_tx_same_on_both!();

    /// Generation first, then appends: the order ingestion takes them in, so no deadlock.
    /// Waiting for the exclusive generation lock lets batches that already project into the
    /// old generation append and commit; a read after this one then includes them.
    async fn hold_appends(&mut self) -> Result<(), StorageError> {
        sqlx::query("SELECT pg_advisory_xact_lock($1), pg_advisory_xact_lock($2)")
            .bind(GENERATION_LOCK)
            .bind(APPEND_LOCK)
            .execute(&mut **self)
            .await?;
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
            .bind(Utc::now())
            .execute(&mut **self)
            .await?;
        Ok(())
    }
}

/// `$2` of [`sql::STATES_OF_PG`]: the ids as an array.
fn ids_param<'a>(ids: &'a [&'a str]) -> &'a [&'a str] {
    ids
}
