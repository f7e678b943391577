use crate::store::SqliteStore;

use super::{Bind, Inserted, ListQuery, NewEntry, Projected, StorageError, StoredEvent};
use crate::store::common::event_log::SUMMARY_COLUMNS;

pub(super) async fn find(
    db: &SqliteStore,
    event_id: &str,
) -> Result<Option<Inserted>, StorageError> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT position, raw_body_sha256 FROM event_log WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(&db.read)
            .await?;
    Ok(row.map(|(position, raw_body_sha256)| Inserted {
        position,
        new: false,
        raw_body_sha256,
    }))
}

/// Appends inside `tx`, a transaction on the single writer connection: the batch shares the
/// transaction's one fsync, and SQLite's single writer keeps positions in commit order.
pub(super) async fn insert_batch(
    tx: &mut sqlx::SqliteConnection,
    entries: &[&NewEntry],
    projected: &Projected<'_>,
) -> Result<Vec<Inserted>, StorageError> {
    let inserted = insert_each(tx, entries).await?;
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

async fn insert_each(
    tx: &mut sqlx::SqliteConnection,
    entries: &[&NewEntry],
) -> Result<Vec<Inserted>, StorageError> {
    let mut result = Vec::with_capacity(entries.len());
    for entry in entries {
        let env = &entry.envelope;
        let object = env.object.as_ref();
        let v = entry.verification.as_ref();
        let position: Option<i64> = sqlx::query_scalar(
            "INSERT INTO event_log (event_id, event_type, api_version, livemode, account, \
             object_id, object_type, stripe_created, received_at, source, payload, \
             payload_redacted, raw_body_sha256, signature_header, signature_timestamp, \
             verified_by_index, verified_by_fingerprint) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT (event_id) DO NOTHING RETURNING position",
        )
        .bind(&env.id)
        .bind(&env.event_type)
        .bind(&env.api_version)
        .bind(env.livemode)
        .bind(&env.account)
        .bind(object.and_then(|o| o.id.as_deref()))
        .bind(object.and_then(|o| o.object_type.as_deref()))
        .bind(env.created)
        // Fixed-width UTC text, so that text order is time order.
        .bind(crate::store::sqlite::timestamp(entry.received_at))
        .bind(entry.source.as_str())
        .bind(&entry.payload)
        .bind(entry.payload_redacted)
        .bind(&entry.raw_body_sha256)
        .bind(v.map(|v| v.signature_header.as_str()))
        .bind(v.map(|v| v.timestamp))
        .bind(v.map(|v| v.secret_index as i32))
        .bind(v.map(|v| v.secret_fingerprint.as_str()))
        .fetch_optional(&mut *tx)
        .await?;
        let inserted = match position {
            Some(position) => Inserted {
                position,
                new: true,
                raw_body_sha256: entry.raw_body_sha256.clone(),
            },
            None => {
                let (position, raw_body_sha256): (i64, String) = sqlx::query_as(
                    "SELECT position, raw_body_sha256 FROM event_log WHERE event_id = $1",
                )
                .bind(&env.id)
                .fetch_one(&mut *tx)
                .await?;
                Inserted {
                    position,
                    new: false,
                    raw_body_sha256,
                }
            }
        };
        result.push(inserted);
    }
    Ok(result)
}

pub(super) async fn get(
    db: &SqliteStore,
    event_id: &str,
) -> Result<Option<StoredEvent>, StorageError> {
    let sql = format!("SELECT {SUMMARY_COLUMNS}, payload FROM event_log WHERE event_id = $1");
    Ok(sqlx::query_as(&sql)
        .bind(event_id)
        .fetch_optional(&db.read)
        .await?)
}

pub(super) async fn list(
    db: &SqliteStore,
    query: &ListQuery,
) -> Result<Vec<StoredEvent>, StorageError> {
    let mut q = sqlx::query_as(&query.sql);
    for bind in &query.binds {
        q = match bind {
            Bind::Text(s) => q.bind(s.as_str()),
            Bind::Int(i) => q.bind(*i),
        };
    }
    Ok(q.fetch_all(&db.read).await?)
}
