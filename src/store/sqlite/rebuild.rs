//! SQLite implementation of the rebuild's bulk operations (see `store::rebuild`): multi-row
//! statements on the single writer, one transaction per chunk.

use super::{timestamp, SqliteStore, SqliteTx};
use crate::event_log::NewEntry;
use crate::store::common::event_log::insert_columns;
use crate::store::common::read_models::upsert_read_model;
use crate::store::common::rebuild as sql;
use crate::store::read_models::{Key, KeyedState, Row};
use crate::store::rebuild::*;
use crate::store::{StorageError, Tx};

/// Rows per multi-row statement: far below SQLite's 32,766 bound parameters at 18 per row,
/// and large enough that the per-statement cost (one trip to sqlx's worker thread) vanishes.
const ROWS_PER_STATEMENT: usize = 500;

/// `(?, ?, ...), (...)`: `rows` groups of `width` anonymous placeholders. Anonymous, not `$n`:
/// binding looks each parameter's name up in a list as long as the statement's parameters, so
/// named placeholders made binding quadratic in the row count (the profile's top symbol,
/// `sqlite3_bind_parameter_name`, at 42 % of the rebuild benchmark).
fn placeholders(rows: usize, width: usize) -> String {
    let group = format!("({})", vec!["?"; width].join(", "));
    vec![group; rows].join(", ")
}

impl RebuildStore for SqliteStore {
    crate::store::common::rebuild::rebuild_store_same_on_both!(read);

    async fn rebuild_states(
        &self,
        generation: i64,
        keys: &[Key],
    ) -> Result<Vec<KeyedState>, StorageError> {
        let mut found = Vec::new();
        for part in keys.chunks(ROWS_PER_STATEMENT) {
            // Placeholders bind in the order they appear: the keys, then the generation.
            let statement = format!(
                "WITH k(kind, id) AS (VALUES {}) SELECT r.kind, r.id, r.state FROM k \
                 JOIN read_models r ON r.generation = ? AND r.kind = k.kind AND r.id = k.id",
                placeholders(part.len(), 2)
            );
            let mut query = sqlx::query_as(&statement);
            for (kind, id) in part {
                query = query.bind(kind.as_str()).bind(id.as_str());
            }
            query = query.bind(generation);
            found.extend(query.fetch_all(&self.read).await?);
        }
        Ok(found)
    }

    async fn begin_rebuild(&self) -> Result<Tx<'static>, StorageError> {
        Ok(Tx::Sqlite(self.begin().await?))
    }

    async fn bench_bulk_append(&self, entries: &[&NewEntry]) -> Result<(), StorageError> {
        let mut tx = self.begin().await?;
        for part in entries.chunks(ROWS_PER_STATEMENT) {
            let statement = format!(
                concat!(
                    "INSERT INTO event_log (",
                    insert_columns!(),
                    ", payload_sha256) VALUES {}"
                ),
                placeholders(part.len(), 18)
            );
            let mut query = sqlx::query(&statement);
            for entry in part {
                let env = &entry.envelope;
                let object = env.object.as_ref();
                let v = entry.verification.as_ref();
                query = query
                    .bind(&env.id)
                    .bind(&env.event_type)
                    .bind(&env.api_version)
                    .bind(env.livemode)
                    .bind(&env.account)
                    .bind(object.and_then(|o| o.id.as_deref()))
                    .bind(object.and_then(|o| o.object_type.as_deref()))
                    .bind(env.created)
                    .bind(timestamp(entry.received_at))
                    .bind(entry.source.as_str())
                    .bind(&entry.payload)
                    .bind(entry.payload_redacted)
                    .bind(&entry.raw_body_sha256)
                    .bind(v.map(|v| v.signature_header.as_str()))
                    .bind(v.map(|v| v.timestamp))
                    .bind(v.map(|v| v.secret_index as i32))
                    .bind(v.map(|v| v.secret_fingerprint.as_str()))
                    .bind(entry.payload_sha256().to_vec());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn bench_settle(&self) -> Result<(), StorageError> {
        sqlx::query("ANALYZE").execute(&self.write).await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.write)
            .await?;
        Ok(())
    }
}

impl RebuildTx for SqliteTx<'_> {
    async fn rebuild_write_states(
        &mut self,
        generation: i64,
        rows: &[Row],
    ) -> Result<(), StorageError> {
        for part in rows.chunks(ROWS_PER_STATEMENT) {
            let statement = format!(upsert_read_model!("VALUES {}"), placeholders(part.len(), 7));
            let mut query = sqlx::query(&statement);
            for row in part {
                query = query
                    .bind(generation)
                    .bind(row.kind.as_str())
                    .bind(row.id.as_str())
                    .bind(row.customer_id.as_deref())
                    .bind(row.user_id.as_deref())
                    .bind(row.status.as_deref())
                    .bind(row.state.as_str());
            }
            query.execute(&mut **self).await?;
        }
        Ok(())
    }
}
