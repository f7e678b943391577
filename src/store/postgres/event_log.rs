//! PostgreSQL implementation of the event log (see `store::event_log`).
//!
//! Appends are one multi-row `INSERT ... SELECT FROM UNNEST` under the append lock (ADR 3);
//! ingestion writes its batches through `ledger_ingest_batch` instead (`postgres::ingest`).

use std::collections::HashMap;

use sqlx::PgConnection;

use super::{PgStore, PgTx};
use crate::event_log::{EventFilter, NewEntry, PageRequest, Projected};
use crate::store::common::event_log::{self as sql, insert_columns, ListQuery};
use crate::store::common::Column;
use crate::store::event_log::*;
use crate::store::StorageError;

impl EventLogStore for PgStore {
    crate::store::common::event_log::event_log_store_same_on_both!(pool, pool);
}

impl EventLogTx for PgTx<'_> {
    /// The INSERT comes first: nearly every entry reaching here is new (ingestion has already
    /// looked its batch up, and the writer's cache answers most retries). Ids that conflict (a
    /// concurrent append of the same id) are then looked up one by one by equality.
    async fn insert_events(
        &mut self,
        entries: &[&NewEntry],
        projected: &Projected<'_>,
    ) -> Result<Vec<Inserted>, StorageError> {
        let tx: &mut PgConnection = self;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK)
            .execute(&mut *tx)
            .await?;
        let mut appended: HashMap<String, i64> = insert(&mut *tx, entries, projected)
            .await?
            .into_iter()
            .map(|row| (row.event_id, row.position))
            .collect();
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let inserted = match appended.remove(entry.envelope.id.as_str()) {
                Some(position) => Inserted {
                    position,
                    new: true,
                    raw_body_sha256: entry.raw_body_sha256.clone(),
                },
                // Already logged, or won by a concurrent append (another request or instance).
                // The conflict check waited for that transaction, so a fresh read sees it.
                None => {
                    let found: Option<LoggedBody> = sqlx::query_as(sql::FIND)
                        .bind(&entry.envelope.id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let found = found.ok_or_else(|| {
                        StorageError::invalid(format!(
                            "event {} vanished during append",
                            entry.envelope.id
                        ))
                    })?;
                    Inserted {
                        position: found.position,
                        new: false,
                        raw_body_sha256: found.raw_body_sha256,
                    }
                }
            };
            out.push(inserted);
        }
        Ok(out)
    }
}

/// A row the append's `RETURNING` gives back.
struct Appended {
    event_id: String,
    position: i64,
}

impl<'r, R> sqlx::FromRow<'r, R> for Appended
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Appended {
            event_id: row.try_get("event_id")?,
            position: row.try_get("position")?,
        })
    }
}

/// The append, marking and healing: one statement, one round trip.
///
/// The commit-order trap: positions come from a sequence at insert time but become visible at
/// commit, so without care a reader tailing `position > checkpoint` could pass a position whose
/// transaction commits later. The caller's transaction holds an advisory lock until it
/// commits, so appends (from any instance) commit one batch at a time in position order: once a
/// position is visible, every smaller position is visible or will never exist. Readers can then
/// tail by position alone. Group commit keeps the serialisation cheap: a batch shares one lock
/// and one commit. Rows go in event-id order, so overlapping batches from two instances lock in
/// the same order and cannot deadlock.
///
/// The same statement records what ingestion projected before appending: the new positions of
/// `projected.event_ids` (and `projected.positions`) go to `projected_positions`, and their
/// dead letters are cleared. Data-modifying CTEs always run, so this costs no round trip.
async fn insert(
    tx: &mut PgConnection,
    entries: &[&NewEntry],
    projected: &Projected<'_>,
) -> Result<Vec<Appended>, StorageError> {
    const INSERT: &str = concat!(
        "WITH appended AS (INSERT INTO event_log (",
        insert_columns!(),
        ") SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], \
         $4::bool[], $5::text[], $6::text[], $7::text[], $8::int8[], $9::timestamptz[], \
         $10::text[], $11::text[], $12::bool[], $13::text[], $14::text[], $15::int8[], \
         $16::int4[], $17::text[]) AS u \
         ORDER BY 1 \
         ON CONFLICT (event_id) DO NOTHING RETURNING event_id, position), \
         marked AS (INSERT INTO projected_positions (position) \
         SELECT position FROM appended WHERE event_id = ANY($18::text[]) \
         UNION ALL SELECT unnest($19::int8[]) ON CONFLICT DO NOTHING), \
         healed AS (DELETE FROM dead_letters WHERE event_id = ANY($18::text[])) \
         SELECT event_id, position FROM appended"
    );
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
    Ok(sqlx::query_as(INSERT)
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
        .await?)
}
