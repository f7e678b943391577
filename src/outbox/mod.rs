//! The outbox: notifications written in the projection transaction, delivered later by a
//! worker, at least once.
//!
//! Writing the row in the same transaction as the read models means a notification exists
//! exactly when the event that caused it is projected: nothing is sent for an event that
//! rolled back, and nothing is lost for one that committed. The row's unique dedupe key makes
//! a duplicate, replayed or backfilled event a no-op, and a rebuild never writes here at all.
//!
//! Workers claim due rows for a lease (`claimed_until`), so several instances deliver without
//! sending one row twice; a worker that dies mid-send leaves its rows to be taken over when
//! the lease runs out, which is where "at least once" comes from.

pub mod mail;
mod worker;

use chrono::{DateTime, Utc};
use ledger_projections::Notification;
use serde::Serialize;
use serde_json::Value;

use crate::store::StorageError;
use crate::store::{Db, Tx};

pub use worker::{backoff_secs, deliver_due, spawn_worker, DeliveryReport, MAX_ATTEMPTS};

/// Where a row is in its life.
pub const STATUSES: [&str; 4] = ["pending", "sent", "failed", "skipped"];

/// One outbox row, as the API and CLI show it.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub id: i64,
    pub dedupe_key: String,
    pub kind: String,
    pub customer_id: String,
    pub event_id: String,
    pub details: Value,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
}

type ItemRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    i32,
    i64,
    Option<String>,
    i64,
    Option<i64>,
);

const COLUMNS: &str = "id, dedupe_key, kind, customer_id, event_id, details, status, attempts, \
                       next_attempt_at, last_error, created_at, sent_at";

fn item(row: ItemRow) -> Item {
    let (
        id,
        dedupe_key,
        kind,
        customer_id,
        event_id,
        details,
        status,
        attempts,
        next_attempt_at,
        last_error,
        created_at,
        sent_at,
    ) = row;
    let time = |t: i64| DateTime::from_timestamp(t, 0);
    Item {
        id,
        dedupe_key,
        kind,
        customer_id,
        event_id,
        details: serde_json::from_str(&details).unwrap_or(Value::Null),
        next_attempt_at: (status == "pending")
            .then(|| time(next_attempt_at))
            .flatten(),
        status,
        attempts,
        last_error,
        created_at: time(created_at),
        sent_at: sent_at.and_then(time),
    }
}

impl Tx<'_> {
    /// Writes the notifications of projected events; a key already present is left as it is
    /// (that cause has been, or is being, notified).
    pub async fn enqueue_notifications(
        &mut self,
        notifications: &[(Notification, String)],
        now: i64,
    ) -> Result<(), StorageError> {
        if notifications.is_empty() {
            return Ok(());
        }
        let details: Vec<String> = notifications
            .iter()
            .map(|(n, _)| {
                serde_json::to_string(&n.details).expect("notification details serialise")
            })
            .collect();
        match self {
            // One statement for the whole batch: this runs inside the append's critical section.
            Tx::Postgres(tx) => {
                let keys: Vec<&str> = notifications
                    .iter()
                    .map(|(n, _)| n.dedupe_key.as_str())
                    .collect();
                let kinds: Vec<&str> = notifications.iter().map(|(n, _)| n.kind.as_str()).collect();
                let customers: Vec<&str> = notifications
                    .iter()
                    .map(|(n, _)| n.customer.as_str())
                    .collect();
                let events: Vec<&str> = notifications.iter().map(|(_, e)| e.as_str()).collect();
                sqlx::query(
                    "INSERT INTO outbox (dedupe_key, kind, customer_id, event_id, details, \
                     status, attempts, next_attempt_at, created_at) \
                     SELECT k, kind, c, e, d, 'pending', 0, $6, $6 \
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS n(k, kind, c, e, d) \
                     ON CONFLICT (dedupe_key) DO NOTHING",
                )
                .bind(&keys)
                .bind(&kinds)
                .bind(&customers)
                .bind(&events)
                .bind(&details)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            Tx::Sqlite(tx) => {
                for ((n, event_id), details) in notifications.iter().zip(&details) {
                    sqlx::query(
                        "INSERT INTO outbox (dedupe_key, kind, customer_id, event_id, details, \
                         status, attempts, next_attempt_at, created_at) \
                         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6) \
                         ON CONFLICT (dedupe_key) DO NOTHING",
                    )
                    .bind(&n.dedupe_key)
                    .bind(n.kind.as_str())
                    .bind(&n.customer)
                    .bind(event_id)
                    .bind(details)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                }
            }
        }
        Ok(())
    }
}

/// Claims up to `limit` due rows until `claimed_until`, counting the attempt. On PostgreSQL
/// `SKIP LOCKED` lets concurrent workers take disjoint rows instead of queueing on each other;
/// SQLite's single writer serialises claims anyway.
pub async fn claim(
    db: &Db,
    now: i64,
    claimed_until: i64,
    limit: i64,
) -> Result<Vec<Item>, StorageError> {
    let due = "SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $2 \
               AND (claimed_until IS NULL OR claimed_until <= $2) ORDER BY id LIMIT $3";
    let mut rows: Vec<ItemRow> = match db {
        Db::Postgres(crate::store::PgStore { pool }) => {
            let sql = format!(
                "UPDATE outbox SET claimed_until = $1, attempts = attempts + 1 \
                 WHERE id IN ({due} FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}"
            );
            sqlx::query_as(&sql)
                .bind(claimed_until)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }
        Db::Sqlite(db) => {
            let sql = format!(
                "UPDATE outbox SET claimed_until = $1, attempts = attempts + 1 \
                 WHERE id IN ({due}) RETURNING {COLUMNS}"
            );
            sqlx::query_as(&sql)
                .bind(claimed_until)
                .bind(now)
                .bind(limit)
                .fetch_all(&db.write)
                .await?
        }
    };
    rows.sort_by_key(|r| r.0);
    Ok(rows.into_iter().map(item).collect())
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// The transport failed; try again at this time.
    Retry {
        at: i64,
        error: String,
    },
    /// Something the email needs has not arrived yet (the customer's address); look again then.
    Wait {
        at: i64,
        reason: String,
    },
    Failed {
        error: String,
    },
    /// Deliberately not sent (the customer is gone, access continues...).
    Skipped {
        reason: String,
    },
}

/// Records an attempt's outcome on a row this worker claimed.
pub async fn settle(db: &Db, id: i64, outcome: &Outcome, now: i64) -> Result<(), StorageError> {
    let (status, next_at, error, sent_at): (&str, i64, Option<&str>, Option<i64>) = match outcome {
        Outcome::Sent => ("sent", now, None, Some(now)),
        Outcome::Retry { at, error } => ("pending", *at, Some(error), None),
        Outcome::Wait { at, reason } => ("pending", *at, Some(reason), None),
        Outcome::Failed { error } => ("failed", now, Some(error), None),
        Outcome::Skipped { reason } => ("skipped", now, Some(reason), None),
    };
    const SQL: &str = "UPDATE outbox SET status = $2, next_attempt_at = $3, last_error = $4, \
                       sent_at = $5, claimed_until = NULL WHERE id = $1 AND status = 'pending'";
    match db {
        Db::Postgres(crate::store::PgStore { pool }) => {
            sqlx::query(SQL)
                .bind(id)
                .bind(status)
                .bind(next_at)
                .bind(error)
                .bind(sent_at)
                .execute(pool)
                .await?;
        }
        Db::Sqlite(db) => {
            sqlx::query(SQL)
                .bind(id)
                .bind(status)
                .bind(next_at)
                .bind(error)
                .bind(sent_at)
                .execute(&db.write)
                .await?;
        }
    }
    Ok(())
}

/// A validated `GET /api/outbox` query (`status`, `limit`, `cursor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub status: Option<&'static str>,
    pub after_id: Option<i64>,
    pub limit: u32,
}

impl ListQuery {
    /// The one validation of the outbox list's parameters, for the API and the CLI alike.
    pub fn parse(params: &crate::query::Params) -> Result<ListQuery, crate::query::FilterError> {
        use crate::query;
        query::refuse_unknown(params, &["status", "limit", "cursor"])?;
        let choices = STATUSES.map(|s| (s, s));
        let status = query::choice_param(params, "status", &choices)?;
        let limit = query::limit_param(params)?;
        let after_id = params
            .get("cursor")
            .map(|c| Self::binding(status).decode_position(c))
            .transpose()?;
        Ok(ListQuery {
            status,
            after_id,
            limit,
        })
    }

    /// The cursor of the page after the one ending at row `last_id`.
    pub fn next_cursor(&self, last_id: i64) -> String {
        Self::binding(self.status).encode(&last_id.to_string())
    }

    fn binding(status: Option<&str>) -> crate::query::cursor::Binding {
        use crate::query::cursor::{Binding, Endpoint};
        Binding::new(Endpoint::Outbox, &[("status", status)])
    }
}

/// Rows in `status` (all when `None`), by id, after `after_id`, at most `limit`.
pub async fn list(
    db: &Db,
    status: Option<&str>,
    after_id: Option<i64>,
    limit: u32,
) -> Result<(Vec<Item>, Option<i64>), StorageError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM outbox WHERE ($1 IS NULL OR status = $1) AND id > $2 \
         ORDER BY id LIMIT $3"
    );
    let after = after_id.unwrap_or(0);
    let fetch = i64::from(limit) + 1;
    let mut rows: Vec<ItemRow> = match db {
        Db::Postgres(crate::store::PgStore { pool }) => {
            // PostgreSQL cannot infer the type of a parameter only ever compared with NULL.
            let sql = sql.replacen("$1 IS NULL", "$1::text IS NULL", 1);
            sqlx::query_as(&sql)
                .bind(status)
                .bind(after)
                .bind(fetch)
                .fetch_all(pool)
                .await?
        }
        Db::Sqlite(db) => {
            sqlx::query_as(&sql)
                .bind(status)
                .bind(after)
                .bind(fetch)
                .fetch_all(&db.read)
                .await?
        }
    };
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(|r| r.0) } else { None };
    Ok((rows.into_iter().map(item).collect(), next))
}

/// Which failed rows `outbox retry` puts back in the queue.
#[derive(Debug, Clone, Copy)]
pub enum RetryTarget {
    AllFailed,
    One(i64),
}

/// Puts failed (or, by id, skipped) rows back in the queue, due now, with a fresh attempt
/// budget. Returns how many rows were re-queued. A sent row is never re-sent.
pub async fn retry(db: &Db, target: RetryTarget, now: i64) -> Result<u64, StorageError> {
    let (sql, id) = match target {
        RetryTarget::AllFailed => (
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $1, \
             claimed_until = NULL WHERE status = 'failed' AND $2 = 0",
            0,
        ),
        RetryTarget::One(id) => (
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $1, \
             claimed_until = NULL WHERE status IN ('failed', 'skipped') AND id = $2",
            id,
        ),
    };
    Ok(match db {
        Db::Postgres(crate::store::PgStore { pool }) => sqlx::query(sql)
            .bind(now)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected(),
        Db::Sqlite(db) => sqlx::query(sql)
            .bind(now)
            .bind(id)
            .execute(&db.write)
            .await?
            .rows_affected(),
    })
}

/// Rows per status, for `/metrics` and the CLI.
pub async fn counts(db: &Db) -> Result<Vec<(String, i64)>, StorageError> {
    const SQL: &str = "SELECT status, count(*) FROM outbox GROUP BY status ORDER BY status";
    Ok(match db {
        Db::Postgres(crate::store::PgStore { pool }) => sqlx::query_as(SQL).fetch_all(pool).await?,
        Db::Sqlite(db) => sqlx::query_as(SQL).fetch_all(&db.read).await?,
    })
}
