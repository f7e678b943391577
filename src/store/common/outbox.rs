//! Statements and typed rows of the outbox shared by both backends.

use chrono::DateTime;
use serde_json::Value;

use super::Column;
use crate::store::outbox::{Item, OutboxStatus, StatusCount};

/// The columns of [`Item`], as a literal so `concat!` can build whole statements from it.
macro_rules! item_columns {
    () => {
        "id, dedupe_key, kind, customer_id, event_id, details, status, attempts, \
         next_attempt_at, last_error, created_at, sent_at"
    };
}
pub(crate) use item_columns;

/// The ids a claim takes (`$2`: now, `$3`: how many): those that fell due first, ties by id;
/// PostgreSQL adds `FOR UPDATE SKIP LOCKED`. The order is `outbox_due_order`'s after its status
/// (migration 0018), so a claim reads the rows it takes, not every pending row (ADR 33).
macro_rules! due_ids {
    () => {
        "SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $2 \
         AND (claimed_until IS NULL OR claimed_until <= $2) \
         ORDER BY next_attempt_at, id LIMIT $3"
    };
}
pub(crate) use due_ids;

/// The start of a claim (`$1`: claimed until); each backend closes it with its own due ids.
macro_rules! claim_prefix {
    () => {
        "UPDATE outbox SET claimed_until = $1, attempts = attempts + 1 WHERE id IN ("
    };
}
pub(crate) use claim_prefix;

/// A page of rows, `$1` the status or NULL; PostgreSQL must be told `$1` is text.
macro_rules! list {
    ($status_is_null:literal) => {
        concat!(
            "SELECT ",
            $crate::store::common::outbox::item_columns!(),
            " FROM outbox WHERE (",
            $status_is_null,
            " OR status = $1) AND id > $2 ORDER BY id LIMIT $3"
        )
    };
}
pub(crate) use list;

/// A batch of outcomes in one statement (atomic, one round trip), each row by id, only if it
/// is still pending. The dialects differ only in how the batch arrives: PostgreSQL takes
/// arrays (`$1` ids, `$2` statuses, `$3` next attempts, `$4` errors, `$5` sent times), SQLite
/// one JSON array of `[id, status, next attempt, error, sent]` (it has no arrays).
pub(crate) const SETTLE_ALL_POSTGRES: &str = "UPDATE outbox o SET status = u.status, \
     next_attempt_at = u.next_attempt_at, last_error = u.last_error, sent_at = u.sent_at, \
     claimed_until = NULL \
     FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[]) \
     AS u(id, status, next_attempt_at, last_error, sent_at) \
     WHERE o.id = u.id AND o.status = 'pending'";

/// The unary `+` keeps SQLite from reaching `outbox` through the status index: with it, the
/// planner scanned every pending row and re-read the JSON batch for each (the batch's rows times
/// the backlog, per settle), where a look-up by id per batch row is what the statement needs.
pub(crate) const SETTLE_ALL_SQLITE: &str = "UPDATE outbox SET \
     status = json_extract(u.value, '$[1]'), next_attempt_at = json_extract(u.value, '$[2]'), \
     last_error = json_extract(u.value, '$[3]'), sent_at = json_extract(u.value, '$[4]'), \
     claimed_until = NULL \
     FROM json_each($1) AS u \
     WHERE outbox.id = json_extract(u.value, '$[0]') AND +outbox.status = 'pending'";

pub(crate) const RETRY_ALL_FAILED: &str = "UPDATE outbox SET status = 'pending', attempts = 0, \
     next_attempt_at = $1, claimed_until = NULL WHERE status = 'failed'";

pub(crate) const RETRY_ONE: &str = "UPDATE outbox SET status = 'pending', attempts = 0, \
     next_attempt_at = $1, claimed_until = NULL WHERE status IN ('failed', 'skipped') AND id = $2";

pub(crate) const COUNTS: &str =
    "SELECT status, count(*) AS n FROM outbox GROUP BY status ORDER BY status";

fn status<'r, R>(row: &'r R) -> Result<OutboxStatus, sqlx::Error>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: Column<'r, R::Database>,
{
    let text: String = row.try_get("status")?;
    OutboxStatus::parse(&text).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: "status".into(),
        source: format!("unknown outbox status {text:?}").into(),
    })
}

/// One decoder for both backends: times are unix seconds on both, `details` JSON text.
impl<'r, R> sqlx::FromRow<'r, R> for Item
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
    i32: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let time = |t: i64| DateTime::from_timestamp(t, 0);
        let status = status(row)?;
        let details: String = row.try_get("details")?;
        let next_attempt_at: i64 = row.try_get("next_attempt_at")?;
        let created_at: i64 = row.try_get("created_at")?;
        let sent_at: Option<i64> = row.try_get("sent_at")?;
        Ok(Item {
            id: row.try_get("id")?,
            dedupe_key: row.try_get("dedupe_key")?,
            kind: row.try_get("kind")?,
            customer_id: row.try_get("customer_id")?,
            event_id: row.try_get("event_id")?,
            details: serde_json::from_str(&details).unwrap_or(Value::Null),
            next_attempt_at: (status == OutboxStatus::Pending)
                .then(|| time(next_attempt_at))
                .flatten(),
            status,
            attempts: row.try_get("attempts")?,
            last_error: row.try_get("last_error")?,
            created_at: time(created_at),
            sent_at: sent_at.and_then(time),
        })
    }
}

impl<'r, R> sqlx::FromRow<'r, R> for StatusCount
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(StatusCount {
            status: status(row)?,
            count: row.try_get("n")?,
        })
    }
}

/// The methods of `OutboxStore` that run the same statements the same way on both backends,
/// written once: each backend's impl expands them with its own read and write pools
/// (`pool, pool` on PostgreSQL, `read, write` on SQLite). Names resolve where it is expanded.
/// `$settle_query` builds the backend's [`SETTLE_ALL_POSTGRES`] / [`SETTLE_ALL_SQLITE`] with a
/// batch bound as that dialect takes it.
macro_rules! outbox_store_same_on_both {
    ($reader:ident, $writer:ident, $settle_query:path) => {
        async fn outbox_settle_all(
            &self,
            settlements: &[(i64, Settlement<'_>)],
        ) -> Result<(), StorageError> {
            if settlements.is_empty() {
                return Ok(());
            }
            $settle_query(settlements)?.execute(&self.$writer).await?;
            Ok(())
        }

        async fn outbox_retry(&self, target: RetryTarget, now: i64) -> Result<u64, StorageError> {
            let query = match target {
                RetryTarget::AllFailed => sqlx::query(sql::RETRY_ALL_FAILED).bind(now),
                RetryTarget::One(id) => sqlx::query(sql::RETRY_ONE).bind(now).bind(id),
            };
            Ok(query.execute(&self.$writer).await?.rows_affected())
        }

        async fn outbox_counts(&self) -> Result<Vec<StatusCount>, StorageError> {
            Ok(sqlx::query_as(sql::COUNTS).fetch_all(&self.$reader).await?)
        }
    };
}
pub(crate) use outbox_store_same_on_both;
