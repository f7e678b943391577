//! The immutable event log: append (idempotent on Stripe's event id) and read.
//!
//! The database enforces immutability with triggers; this module only ever INSERTs and SELECTs.
//! One submodule per backend, sharing the query shapes defined here.

mod postgres;
pub mod redaction;
mod sqlite;

use chrono::{DateTime, Utc};
use ledger_projections::Envelope;
use serde::Serialize;

use crate::store::common::event_log::SUMMARY_COLUMNS;
use crate::store::event_log::EventLogStore as _;
use crate::store::Db;
pub use crate::store::StorageError;

/// Key of the PostgreSQL transaction-level advisory lock that serialises appends across all
/// instances, so positions become visible in order (see `postgres::insert`). SQLite has a
/// single writer and needs no lock.
pub const APPEND_LOCK: i64 = 0x7374_7269_7065_6c67;

/// Where an entry came from. Stored as text; the set grows as later features append entries
/// learned from the Stripe API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A verified `POST /webhooks/stripe` delivery.
    Webhook,
    /// Listed from `GET /v1/events` to fill a gap.
    ApiBackfill,
    /// An object fetched by reconciliation to repair drift.
    ReconcileRepair,
    /// An object as the Stripe API returned it to one of our own calls (e.g. a customer we
    /// created for Checkout), logged so the read models know it before its webhook arrives.
    ApiResponse,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Webhook => "webhook",
            Source::ApiBackfill => "api_backfill",
            Source::ReconcileRepair => "reconcile_repair",
            Source::ApiResponse => "api_response",
        }
    }
}

/// How a webhook entry was verified. Never holds a secret: only which one, by index and
/// fingerprint.
#[derive(Debug, Clone)]
pub struct Verification {
    pub signature_header: String,
    pub timestamp: i64,
    pub secret_index: usize,
    pub secret_fingerprint: String,
}

/// An entry about to be appended.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub envelope: Envelope,
    pub source: Source,
    /// What is stored: the raw body, or its redacted re-serialisation.
    pub payload: String,
    pub payload_redacted: bool,
    pub raw_body_sha256: String,
    pub verification: Option<Verification>,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// A new entry at this position.
    Appended { position: i64 },
    /// The event id was already in the log; nothing was written. `same_body` tells whether the
    /// earlier entry was made from the same raw bytes (Stripe resends the same body; a
    /// different one means the event was rendered for another endpoint or API version).
    Duplicate { position: i64, same_body: bool },
}

impl AppendOutcome {
    pub fn position(self) -> i64 {
        match self {
            AppendOutcome::Appended { position } | AppendOutcome::Duplicate { position, .. } => {
                position
            }
        }
    }
}

/// A stored entry as auditors see it.
#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    pub position: i64,
    pub event_id: String,
    pub event_type: String,
    pub api_version: Option<String>,
    pub livemode: bool,
    pub account: Option<String>,
    pub object_id: Option<String>,
    pub object_type: Option<String>,
    pub stripe_created: i64,
    pub received_at: DateTime<Utc>,
    pub source: String,
    pub payload_redacted: bool,
    pub raw_body_sha256: String,
    pub signature_header: Option<String>,
    pub signature_timestamp: Option<i64>,
    pub verified_by_index: Option<i32>,
    pub verified_by_fingerprint: Option<String>,
    /// Only loaded for single-entry reads.
    pub payload: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Newest first: what an auditor looking at "what just happened" wants.
    #[default]
    Desc,
    Asc,
}

/// Filters for browsing the log. All optional; combined with AND.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub event_type: Option<String>,
    pub object_id: Option<String>,
    /// Stripe `created`, inclusive lower bound (unix seconds).
    pub created_gte: Option<i64>,
    /// Stripe `created`, exclusive upper bound (unix seconds).
    pub created_lt: Option<i64>,
    pub source: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PageRequest {
    pub order: Order,
    /// Continue after this position (exclusive), in the page's order.
    pub after_position: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone)]
pub struct Page {
    pub events: Vec<StoredEvent>,
    /// Position to pass as `after_position` for the next page; `None` on the last page.
    pub next_position: Option<i64>,
}

/// Appends `entry` unless its event id is already in the log. Concurrent appends of the same
/// id (two deliveries, two instances) resolve on the unique constraint: exactly one wins.
/// The webhook path goes through `ingest::Writer`, which batches; this is the one-off form.
pub async fn append(db: &Db, entry: &NewEntry) -> Result<AppendOutcome, StorageError> {
    if let Some(outcome) = existing(db, entry).await? {
        return Ok(outcome);
    }
    let outcomes = append_batch(db, &[entry]).await?;
    Ok(outcomes[0])
}

/// Looks the event id up: a duplicate then costs one indexed read, no write and no commit.
/// Runs concurrently on the read pool, so duplicates never queue behind appends.
pub async fn existing(db: &Db, entry: &NewEntry) -> Result<Option<AppendOutcome>, StorageError> {
    let found = match db {
        Db::Postgres(crate::store::PgStore { pool }) => {
            postgres::find(pool, &entry.envelope.id).await?
        }
        Db::Sqlite(db) => sqlite::find(db, &entry.envelope.id).await?,
    };
    Ok(found.map(|f| AppendOutcome::Duplicate {
        position: f.position,
        same_body: f.raw_body_sha256 == entry.raw_body_sha256,
    }))
}

/// Appends several entries with one commit (one fsync) and returns one outcome
/// per entry, in order. Repeated ids within the batch resolve like concurrent deliveries.
pub async fn append_batch(
    db: &Db,
    entries: &[&NewEntry],
) -> Result<Vec<AppendOutcome>, StorageError> {
    let mut tx = crate::store::Tx::begin(db).await?;
    let outcomes = append_in(&mut tx, entries).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Appends inside the caller's transaction, so that what is done with the entries (the
/// projection) commits with them. On PostgreSQL the transaction holds the append lock until it
/// ends: keep it short.
pub async fn append_in(
    tx: &mut crate::store::Tx<'_>,
    entries: &[&NewEntry],
) -> Result<Vec<AppendOutcome>, StorageError> {
    append_marking(tx, entries, &Projected::default()).await
}

async fn append_marking(
    tx: &mut crate::store::Tx<'_>,
    entries: &[&NewEntry],
    projected: &Projected<'_>,
) -> Result<Vec<AppendOutcome>, StorageError> {
    // The first occurrence of each id is written; later ones in the same batch are duplicates.
    let mut first_index: std::collections::HashMap<&str, usize> = Default::default();
    let mut unique = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        first_index
            .entry(entry.envelope.id.as_str())
            .or_insert_with(|| {
                unique.push(*entry);
                i
            });
    }
    let positions = match tx {
        crate::store::Tx::Postgres(tx) => postgres::insert_batch(tx, &unique, projected).await?,
        crate::store::Tx::Sqlite(tx) => sqlite::insert_batch(tx, &unique, projected).await?,
    };
    let by_id: std::collections::HashMap<&str, Inserted> = unique
        .iter()
        .zip(positions)
        .map(|(entry, inserted)| (entry.envelope.id.as_str(), inserted))
        .collect();
    Ok(entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let id = entry.envelope.id.as_str();
            let inserted = &by_id[id];
            if first_index[id] == i && inserted.new {
                AppendOutcome::Appended {
                    position: inserted.position,
                }
            } else {
                AppendOutcome::Duplicate {
                    position: inserted.position,
                    same_body: inserted.raw_body_sha256 == entry.raw_body_sha256,
                }
            }
        })
        .collect())
}

/// An entry already in the log, as ingestion needs it to project it again.
#[derive(Debug, Clone)]
pub struct Logged {
    pub position: i64,
    pub event_type: String,
    pub stripe_created: i64,
    pub payload: String,
    pub raw_body_sha256: String,
}

/// Which of `event_ids` are already logged, read inside the caller's transaction.
pub async fn logged_in(
    tx: &mut crate::store::Tx<'_>,
    event_ids: &[&str],
) -> Result<std::collections::HashMap<String, Logged>, StorageError> {
    type Row = (String, i64, String, i64, String, String);
    const COLUMNS: &str =
        "event_id, position, event_type, stripe_created, payload, raw_body_sha256";
    let rows: Vec<Row> = match tx {
        // The transaction plans for the data at hand (`plan_cache_mode`), so `= ANY` uses
        // the unique index however small the table was when the statement was first seen.
        crate::store::Tx::Postgres(tx) => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM event_log WHERE event_id = ANY($1)"
            ))
            .bind(event_ids)
            .fetch_all(&mut **tx)
            .await?
        }
        crate::store::Tx::Sqlite(tx) => {
            if event_ids.is_empty() {
                return Ok(Default::default());
            }
            // Batches are at most a few hundred ids, far below SQLite's parameter limit.
            let placeholders: Vec<String> =
                (1..=event_ids.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {COLUMNS} FROM event_log WHERE event_id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query_as(&sql);
            for id in event_ids {
                query = query.bind(*id);
            }
            query.fetch_all(&mut **tx).await?
        }
    };
    Ok(rows
        .into_iter()
        .map(
            |(id, position, event_type, stripe_created, payload, raw_body_sha256)| {
                (
                    id,
                    Logged {
                        position,
                        event_type,
                        stripe_created,
                        payload,
                        raw_body_sha256,
                    },
                )
            },
        )
        .collect())
}

/// What ingestion projected before appending, recorded by the append itself (see
/// `append_projected_in`).
#[derive(Debug, Clone, Default)]
pub struct Projected<'a> {
    /// Ids whose projection succeeded: newly appended ones are marked projected by position,
    /// and any dead letter of theirs is cleared.
    pub event_ids: Vec<&'a str>,
    /// Positions of already-logged entries that were projected again.
    pub positions: Vec<i64>,
}

/// Appends entries whose projection has already been written in `tx`, marking them projected
/// in the same statement on PostgreSQL. Taking the append lock only now keeps the
/// critical section (lock, append, commit) short: the projection ran before it, concurrently
/// with other batches.
pub async fn append_projected_in(
    tx: &mut crate::store::Tx<'_>,
    entries: &[&NewEntry],
    projected: &Projected<'_>,
) -> Result<Vec<AppendOutcome>, StorageError> {
    append_marking(tx, entries, projected).await
}

/// What a backend reports for each unique entry of a batch.
#[derive(Debug, Clone)]
struct Inserted {
    position: i64,
    /// False when the id was already in the log (written by someone else).
    new: bool,
    raw_body_sha256: String,
}

/// One entry with its payload and verification record.
pub async fn get(db: &Db, event_id: &str) -> Result<Option<StoredEvent>, StorageError> {
    match db {
        Db::Postgres(crate::store::PgStore { pool }) => postgres::get(pool, event_id).await,
        Db::Sqlite(pool) => sqlite::get(pool, event_id).await,
    }
}

/// A page of entries (without payloads) matching `filter`.
pub async fn list(db: &Db, filter: &EventFilter, page: &PageRequest) -> Result<Page, StorageError> {
    let query = ListQuery::build(filter, page);
    let mut events = match db {
        Db::Postgres(crate::store::PgStore { pool }) => postgres::list(pool, &query).await?,
        Db::Sqlite(pool) => sqlite::list(pool, &query).await?,
    };
    // One extra row was fetched to learn whether another page exists.
    let next_position = if events.len() > page.limit as usize {
        events.truncate(page.limit as usize);
        events.last().map(|e| e.position)
    } else {
        None
    };
    Ok(Page {
        events,
        next_position,
    })
}

/// Entries after `position`, oldest first, with payloads: the tailing read of the catch-up
/// projector and rebuild. Safe against the commit-order trap because appends are serialised.
pub async fn read_after(
    db: &Db,
    position: i64,
    limit: u32,
) -> Result<Vec<StoredEvent>, StorageError> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS}, payload FROM event_log WHERE position > $1 ORDER BY position LIMIT {limit}"
    );
    Ok(match db {
        Db::Postgres(store) => {
            sqlx::query_as(&sql)
                .bind(position)
                .fetch_all(&store.pool)
                .await?
        }
        Db::Sqlite(store) => {
            sqlx::query_as(&sql)
                .bind(position)
                .fetch_all(&store.read)
                .await?
        }
    })
}

/// The highest position in the log (0 when empty).
pub async fn last_position(db: &Db) -> Result<i64, StorageError> {
    db.last_position().await
}

/// A log entry for an object the Stripe API returned: a synthetic `ledger.object_snapshot`
/// event whose id is derived from the object's content, so logging the same response twice
/// is one entry. `now` becomes its `created`, the time we learned this state.
pub fn object_snapshot_entry(
    object: &serde_json::Value,
    source: Source,
    now: DateTime<Utc>,
) -> Result<NewEntry, StorageError> {
    use sha2::{Digest, Sha256};
    let object_json = object.to_string();
    let id = format!(
        "snap_{}",
        &hex::encode(Sha256::digest(object_json.as_bytes()))[..32]
    );
    let livemode = object
        .get("livemode")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let body = serde_json::json!({
        "id": id,
        "object": "event",
        "type": ledger_projections::OBJECT_SNAPSHOT,
        "api_version": crate::stripe::client::API_VERSION,
        "created": now.timestamp(),
        "livemode": livemode,
        "data": {"object": object},
    })
    .to_string();
    // The same one parse as a webhook's: an object Stripe returned that the projection could
    // not read (a NUL, an overlong id) is refused here, not logged.
    let prepared = redaction::prepare(body.as_bytes())
        .map_err(|e| StorageError::invalid(format!("snapshot envelope: {e}")))?;
    let raw_body_sha256 = hex::encode(Sha256::digest(body.as_bytes()));
    Ok(NewEntry {
        envelope: prepared.envelope,
        source,
        payload: prepared.payload,
        payload_redacted: prepared.payload_redacted,
        raw_body_sha256,
        verification: None,
        received_at: now,
    })
}

/// Number of entries, for operators and tests.
pub async fn count(db: &Db) -> Result<i64, StorageError> {
    db.count_events().await
}

/// A value bound to a `$n` placeholder. Both backends accept `$n`, so the SQL text is shared.
#[derive(Debug, Clone)]
enum Bind {
    Text(String),
    Int(i64),
}

/// The SELECT for a page, built once for both backends.
#[derive(Debug)]
struct ListQuery {
    sql: String,
    binds: Vec<Bind>,
}

impl ListQuery {
    fn build(filter: &EventFilter, page: &PageRequest) -> ListQuery {
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        let mut push = |condition: &str, bind: Bind| {
            binds.push(bind);
            conditions.push(condition.replace('?', &format!("${}", binds.len())));
        };
        if let Some(t) = &filter.event_type {
            push("event_type = ?", Bind::Text(t.clone()));
        }
        if let Some(id) = &filter.object_id {
            push("object_id = ?", Bind::Text(id.clone()));
        }
        if let Some(gte) = filter.created_gte {
            push("stripe_created >= ?", Bind::Int(gte));
        }
        if let Some(lt) = filter.created_lt {
            push("stripe_created < ?", Bind::Int(lt));
        }
        if let Some(source) = &filter.source {
            push("source = ?", Bind::Text(source.clone()));
        }
        if let Some(after) = page.after_position {
            let condition = match page.order {
                Order::Desc => "position < ?",
                Order::Asc => "position > ?",
            };
            push(condition, Bind::Int(after));
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let direction = match page.order {
            Order::Desc => "DESC",
            Order::Asc => "ASC",
        };
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM event_log{where_clause} ORDER BY position {direction} LIMIT {}",
            u64::from(page.limit) + 1
        );
        ListQuery { sql, binds }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_queries_number_their_placeholders_in_bind_order() {
        let q = ListQuery::build(
            &EventFilter {
                event_type: Some("invoice.paid".into()),
                created_gte: Some(10),
                ..Default::default()
            },
            &PageRequest {
                order: Order::Asc,
                after_position: Some(5),
                limit: 2,
            },
        );
        assert!(q.sql.ends_with(
            "WHERE event_type = $1 AND stripe_created >= $2 AND position > $3 ORDER BY position ASC LIMIT 3"
        ));
        assert_eq!(q.binds.len(), 3);
    }
}
