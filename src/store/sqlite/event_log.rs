//! SQLite implementation of the event log (see `store::event_log`).
//!
//! Appends loop on the single writer connection: the batch shares the transaction's one fsync,
//! and the single writer keeps positions in commit order, so no lock is needed.

use super::{SqliteStore, SqliteTx};
use crate::event_log::{EventFilter, NewEntry, PageRequest, Projected};
use crate::store::common::event_log::{self as sql, insert_columns, ListQuery};
use crate::store::event_log::*;
use crate::store::StorageError;

impl EventLogStore for SqliteStore {
    crate::store::common::event_log::event_log_store_same_on_both!(read, write);
}

impl EventLogTx for SqliteTx<'_> {
    async fn insert_events(
        &mut self,
        entries: &[&NewEntry],
        projected: &Projected<'_>,
    ) -> Result<Vec<Inserted>, StorageError> {
        let tx: &mut sqlx::SqliteConnection = self;
        let mut inserted = Vec::with_capacity(entries.len());
        for entry in entries {
            inserted.push(insert_one(tx, entry).await?);
        }
        // What ingestion projected before appending (PostgreSQL does this in the INSERT itself).
        let mut positions = projected.positions.clone();
        for (entry, inserted) in entries.iter().zip(&inserted) {
            if inserted.new && projected.event_ids.contains(&entry.envelope.id.as_str()) {
                positions.push(inserted.position);
            }
        }
        for position in positions {
            sqlx::query(
                "INSERT INTO projected_positions (position) VALUES ($1) ON CONFLICT DO NOTHING",
            )
            .bind(position)
            .execute(&mut *tx)
            .await?;
        }
        for id in &projected.event_ids {
            sqlx::query("DELETE FROM dead_letters WHERE event_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        Ok(inserted)
    }
}

async fn insert_one(
    tx: &mut sqlx::SqliteConnection,
    entry: &NewEntry,
) -> Result<Inserted, StorageError> {
    const INSERT: &str = concat!(
        "INSERT INTO event_log (",
        insert_columns!(),
        ", payload_sha256) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
         ON CONFLICT (event_id) DO NOTHING RETURNING position"
    );
    let env = &entry.envelope;
    let object = env.object.as_ref();
    let v = entry.verification.as_ref();
    let position: Option<i64> = sqlx::query_scalar(INSERT)
        .bind(&env.id)
        .bind(&env.event_type)
        .bind(&env.api_version)
        .bind(env.livemode)
        .bind(&env.account)
        .bind(object.and_then(|o| o.id.as_deref()))
        .bind(object.and_then(|o| o.object_type.as_deref()))
        .bind(env.created)
        .bind(super::timestamp(entry.received_at))
        .bind(entry.source.as_str())
        .bind(&entry.payload)
        .bind(entry.payload_redacted)
        .bind(&entry.raw_body_sha256)
        .bind(v.map(|v| v.signature_header.as_str()))
        .bind(v.map(|v| v.timestamp))
        .bind(v.map(|v| v.secret_index as i32))
        .bind(v.map(|v| v.secret_fingerprint.as_str()))
        .bind(entry.payload_sha256().to_vec())
        .fetch_optional(&mut *tx)
        .await?;
    Ok(match position {
        Some(position) => Inserted {
            position,
            new: true,
            raw_body_sha256: entry.raw_body_sha256.clone(),
        },
        None => {
            let found: LoggedBody = sqlx::query_as(sql::FIND)
                .bind(&env.id)
                .fetch_one(&mut *tx)
                .await?;
            Inserted {
                position: found.position,
                new: false,
                raw_body_sha256: found.raw_body_sha256,
            }
        }
    })
}
