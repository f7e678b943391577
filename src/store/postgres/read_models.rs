//! PostgreSQL implementation of the read models (see `store::read_models`).
//!
//! Batches are one statement each (`unnest` arrays); per-object serialisation uses
//! transaction-level advisory locks.

use std::collections::HashMap;

use chrono::Utc;

use super::{PgStore, PgTx};
use crate::read_models::Query;
use crate::store::common::read_models::{self as sql, upsert_read_model, ListStates};
use crate::store::event_log::APPEND_LOCK;
use crate::store::read_models::*;
use crate::store::{Kind, StorageError};

impl ReadModelStore for PgStore {
    async fn read_model_state(&self, kind: Kind, id: &str) -> Result<Option<String>, StorageError> {
        Ok(sqlx::query_scalar(sql::STATE)
            .bind(kind.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn list_read_models(
        &self,
        kind: Kind,
        query: &Query,
    ) -> Result<Vec<ListedState>, StorageError> {
        let list = ListStates::build(kind, query);
        Ok(list.query().fetch_all(&self.pool).await?)
    }

    async fn read_model_states_by(
        &self,
        kind: Kind,
        by: StatesBy,
        value: &str,
    ) -> Result<Vec<String>, StorageError> {
        Ok(sqlx::query_scalar(sql::states_by(by))
            .bind(kind.as_str())
            .bind(value)
            .fetch_all(&self.pool)
            .await?)
    }

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

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StorageError> {
        Ok(sqlx::query_as(sql::DEAD_LETTERS)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn dead_letters_after(
        &self,
        position: i64,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StorageError> {
        Ok(sqlx::query_as(sql::DEAD_LETTERS_AFTER)
            .bind(position)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn projected_between(&self, after: i64, upto: i64) -> Result<Vec<i64>, StorageError> {
        Ok(sqlx::query_scalar(sql::PROJECTED_BETWEEN)
            .bind(after)
            .bind(upto)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn projection_checkpoint(&self, name: &str) -> Result<Option<i64>, StorageError> {
        Ok(sqlx::query_scalar(sql::CHECKPOINT)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
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

    async fn lock_read_models(&mut self, keys: &[Key]) -> Result<(), StorageError> {
        let mut names: Vec<String> = keys.iter().map(|(k, id)| format!("{k}:{id}")).collect();
        names.sort();
        names.dedup();
        sqlx::query(
            "SELECT pg_advisory_xact_lock(h) FROM \
             (SELECT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k ORDER BY 1) AS s",
        )
        .bind(&names)
        .execute(&mut **self)
        .await?;
        Ok(())
    }

    async fn load_read_models(
        &mut self,
        generation: i64,
        keys: &[Key],
    ) -> Result<HashMap<Key, String>, StorageError> {
        let kinds: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        let ids: Vec<&str> = keys.iter().map(|(_, id)| id.as_str()).collect();
        let rows: Vec<KeyedState> = sqlx::query_as(
            "SELECT r.kind, r.id, r.state FROM unnest($2::text[], $3::text[]) AS k(kind, id) \
             JOIN read_models r ON r.generation = $1 AND r.kind = k.kind AND r.id = k.id",
        )
        .bind(generation)
        .bind(&kinds)
        .bind(&ids)
        .fetch_all(&mut **self)
        .await?;
        let mut found = HashMap::with_capacity(keys.len());
        for row in rows {
            if let Some(key) = keys.iter().find(|(k, i)| *k == row.kind && *i == row.id) {
                found.insert(key.clone(), row.state);
            }
        }
        Ok(found)
    }

    async fn upsert_read_models(
        &mut self,
        generation: i64,
        rows: &[Row],
    ) -> Result<(), StorageError> {
        if rows.is_empty() {
            return Ok(());
        }
        const UPSERT: &str = upsert_read_model!(
            "SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])"
        );
        let col = |f: fn(&Row) -> Option<&str>| rows.iter().map(f).collect::<Vec<_>>();
        sqlx::query(UPSERT)
            .bind(generation)
            .bind(col(|r| Some(r.kind.as_str())))
            .bind(col(|r| Some(r.id.as_str())))
            .bind(col(|r| r.customer_id.as_deref()))
            .bind(col(|r| r.user_id.as_deref()))
            .bind(col(|r| r.status.as_deref()))
            .bind(col(|r| Some(r.state.as_str())))
            .execute(&mut **self)
            .await?;
        Ok(())
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

    async fn mark_projected(
        &mut self,
        positions: &[i64],
        event_ids: &[&str],
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO projected_positions (position) SELECT unnest($1::int8[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(positions)
        .execute(&mut **self)
        .await?;
        sqlx::query("DELETE FROM dead_letters WHERE event_id = ANY($1)")
            .bind(event_ids)
            .execute(&mut **self)
            .await?;
        Ok(())
    }
}
