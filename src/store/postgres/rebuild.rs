//! PostgreSQL implementation of the rebuild's bulk operations (see `store::rebuild`): one
//! statement per chunk, over `unnest` arrays.

use super::{PgStore, PgTx};
use crate::event_log::NewEntry;
use crate::store::common::event_log::insert_columns;
use crate::store::common::read_models::upsert_read_model;
use crate::store::common::rebuild as sql;
use crate::store::event_log::APPEND_LOCK;
use crate::store::read_models::{Key, KeyedState, Row};
use crate::store::rebuild::*;
use crate::store::{StorageError, Tx};

impl RebuildStore for PgStore {
    crate::store::common::rebuild::rebuild_store_same_on_both!(pool);

    async fn rebuild_states(
        &self,
        generation: i64,
        keys: &[Key],
    ) -> Result<Vec<KeyedState>, StorageError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let kinds: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        let ids: Vec<&str> = keys.iter().map(|(_, id)| id.as_str()).collect();
        // Planned for the data at hand (the generation grows during the rebuild), so the join
        // probes the primary key rather than scanning a table whose statistics say it is small.
        let mut tx = self.begin().await?;
        let rows = sqlx::query_as(
            "SELECT r.kind, r.id, r.state FROM unnest($2::text[], $3::text[]) AS k(kind, id) \
             JOIN read_models r ON r.generation = $1 AND r.kind = k.kind AND r.id = k.id",
        )
        .bind(generation)
        .bind(&kinds)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows)
    }

    async fn begin_rebuild(&self) -> Result<Tx<'static>, StorageError> {
        Ok(Tx::Postgres(
            self.pool
                .begin_with(
                    "BEGIN; SET LOCAL plan_cache_mode = force_custom_plan; \
                     SET LOCAL synchronous_commit = off",
                )
                .await?,
        ))
    }

    async fn bench_bulk_append(&self, entries: &[&NewEntry]) -> Result<(), StorageError> {
        const INSERT: &str = concat!(
            "INSERT INTO event_log (",
            insert_columns!(),
            ") SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], \
             $4::bool[], $5::text[], $6::text[], $7::text[], $8::int8[], $9::timestamptz[], \
             $10::text[], $11::text[], $12::bool[], $13::text[], $14::text[], $15::int8[], \
             $16::int4[], $17::text[])"
        );
        fn column<'a, T>(entries: &[&'a NewEntry], f: impl Fn(&'a NewEntry) -> T) -> Vec<T> {
            entries.iter().map(|e| f(e)).collect()
        }
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::query(INSERT)
            .bind(column(entries, |e| e.envelope.id.as_str()))
            .bind(column(entries, |e| e.envelope.event_type.as_str()))
            .bind(column(entries, |e| e.envelope.api_version.as_deref()))
            .bind(column(entries, |e| e.envelope.livemode))
            .bind(column(entries, |e| e.envelope.account.as_deref()))
            .bind(column(entries, |e| {
                e.envelope.object.as_ref().and_then(|o| o.id.as_deref())
            }))
            .bind(column(entries, |e| {
                e.envelope
                    .object
                    .as_ref()
                    .and_then(|o| o.object_type.as_deref())
            }))
            .bind(column(entries, |e| e.envelope.created))
            .bind(column(entries, |e| e.received_at))
            .bind(column(entries, |e| e.source.as_str()))
            .bind(column(entries, |e| e.payload.as_str()))
            .bind(column(entries, |e| e.payload_redacted))
            .bind(column(entries, |e| e.raw_body_sha256.as_str()))
            .bind(column(entries, |e| {
                e.verification.as_ref().map(|v| v.signature_header.as_str())
            }))
            .bind(column(entries, |e| {
                e.verification.as_ref().map(|v| v.timestamp)
            }))
            .bind(column(entries, |e| {
                e.verification.as_ref().map(|v| v.secret_index as i32)
            }))
            .bind(column(entries, |e| {
                e.verification
                    .as_ref()
                    .map(|v| v.secret_fingerprint.as_str())
            }))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn bench_settle(&self) -> Result<(), StorageError> {
        // CHECKPOINT needs a superuser or `pg_checkpoint`: the bench connects as the admin URL's
        // user, which creates its scratch databases.
        sqlx::query("ANALYZE").execute(&self.pool).await?;
        sqlx::query("CHECKPOINT").execute(&self.pool).await?;
        Ok(())
    }
}

impl RebuildTx for PgTx<'_> {
    async fn rebuild_write_states(
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
}
