use std::collections::HashMap;

use sqlx::{PgConnection, PgPool};

use super::{
    Bind, Inserted, ListQuery, NewEntry, Projected, StorageError, StoredEvent, APPEND_LOCK,
};
use crate::store::common::event_log::SUMMARY_COLUMNS;

pub(super) async fn find<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    event_id: &str,
) -> Result<Option<Inserted>, StorageError> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT position, raw_body_sha256 FROM event_log WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(executor)
            .await?;
    Ok(row.map(|(position, raw_body_sha256)| Inserted {
        position,
        new: false,
        raw_body_sha256,
    }))
}

/// Appends inside `tx`, which then holds the append lock until it commits (see `insert`).
///
/// The INSERT comes first: nearly every entry reaching here is new (ingestion has already
/// looked its batch up, and the writer's cache answers most retries). Ids that conflict (a
/// concurrent append of the same id) are then looked up one by one by equality.
pub(super) async fn insert_batch(
    tx: &mut PgConnection,
    entries: &[&NewEntry],
    projected: &Projected<'_>,
) -> Result<Vec<Inserted>, StorageError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(APPEND_LOCK)
        .execute(&mut *tx)
        .await?;
    let mut result: HashMap<String, i64> = insert(&mut *tx, entries, projected)
        .await?
        .into_iter()
        .collect();
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let inserted = match result.remove(entry.envelope.id.as_str()) {
            Some(position) => Inserted {
                position,
                new: true,
                raw_body_sha256: entry.raw_body_sha256.clone(),
            },
            // Already logged, or won by a concurrent append (another request or instance).
            // The conflict check waited for that transaction, so a fresh read sees it.
            None => find(&mut *tx, &entry.envelope.id).await?.ok_or_else(|| {
                StorageError::invalid(format!(
                    "event {} vanished during append",
                    entry.envelope.id
                ))
            })?,
        };
        out.push(inserted);
    }
    Ok(out)
}

/// One multi-row INSERT, which is its own transaction: one round trip, one commit.
///
/// The commit-order trap: positions come from a sequence at insert time but become visible at
/// commit, so without care a reader tailing `position > checkpoint` could pass a position whose
/// transaction commits later. The caller's transaction holds an advisory lock until it
/// commits, so appends (from any instance) commit one batch at a time in position order: once a
/// position is visible, every smaller position is visible or will never exist. Readers can then
/// tail by position alone. Group commit keeps the serialisation cheap: a batch shares one lock
/// and one commit.
///
/// The same statement records what ingestion projected before appending: the new positions of
/// `projected.event_ids` (and `projected.positions`) go to `projected_positions`, and their
/// dead letters are cleared. Data-modifying CTEs always run, so this costs no round trip.
async fn insert(
    tx: &mut PgConnection,
    entries: &[&NewEntry],
    projected: &Projected<'_>,
) -> Result<Vec<(String, i64)>, StorageError> {
    fn column<'a, T>(entries: &[&'a NewEntry], f: impl Fn(&'a NewEntry) -> T) -> Vec<T> {
        entries.iter().map(|e| f(e)).collect()
    }
    let object_id = |e: &NewEntry| e.envelope.object.as_ref().and_then(|o| o.id.clone());
    let object_type = |e: &NewEntry| {
        e.envelope
            .object
            .as_ref()
            .and_then(|o| o.object_type.clone())
    };
    let rows = sqlx::query_as(
        "WITH appended AS (INSERT INTO event_log (event_id, event_type, api_version, livemode, \
         account, object_id, object_type, stripe_created, received_at, source, payload, \
         payload_redacted, raw_body_sha256, signature_header, signature_timestamp, \
         verified_by_index, verified_by_fingerprint) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], \
         $4::bool[], $5::text[], $6::text[], $7::text[], $8::int8[], $9::timestamptz[], \
         $10::text[], $11::text[], $12::bool[], $13::text[], $14::text[], $15::int8[], \
         $16::int4[], $17::text[]) AS u \
         ORDER BY 1 \
         ON CONFLICT (event_id) DO NOTHING RETURNING event_id, position), \
         marked AS (INSERT INTO projected_positions (position) \
         SELECT position FROM appended WHERE event_id = ANY($18::text[]) \
         UNION ALL SELECT unnest($19::int8[]) ON CONFLICT DO NOTHING), \
         healed AS (DELETE FROM dead_letters WHERE event_id = ANY($18::text[])) \
         SELECT event_id, position FROM appended",
    )
    .bind(column(entries, |e| e.envelope.id.as_str()))
    .bind(column(entries, |e| e.envelope.event_type.as_str()))
    .bind(column(entries, |e| e.envelope.api_version.as_deref()))
    .bind(column(entries, |e| e.envelope.livemode))
    .bind(column(entries, |e| e.envelope.account.as_deref()))
    .bind(column(entries, object_id))
    .bind(column(entries, object_type))
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
    .bind(&projected.event_ids)
    .bind(&projected.positions)
    .fetch_all(tx)
    .await?;
    Ok(rows)
}

pub(super) async fn get(
    pool: &PgPool,
    event_id: &str,
) -> Result<Option<StoredEvent>, StorageError> {
    let sql = format!("SELECT {SUMMARY_COLUMNS}, payload FROM event_log WHERE event_id = $1");
    Ok(sqlx::query_as(&sql)
        .bind(event_id)
        .fetch_optional(pool)
        .await?)
}

pub(super) async fn list(
    pool: &PgPool,
    query: &ListQuery,
) -> Result<Vec<StoredEvent>, StorageError> {
    let mut q = sqlx::query_as(&query.sql);
    for bind in &query.binds {
        q = match bind {
            Bind::Text(s) => q.bind(s.as_str()),
            Bind::Int(i) => q.bind(*i),
        };
    }
    Ok(q.fetch_all(pool).await?)
}
