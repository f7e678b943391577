//! Statements and typed rows of the console's tables, shared by both backends: every one is
//! identical on PostgreSQL and SQLite.

use super::Column;
use crate::store::ui::{
    ActionKind, ActionOutcome, ActionRow, DeadLetterNote, LogRange, ProjectionRecord, SessionRow,
};

/// `$1`: the cap of the count. Each part is cheap whatever the size of the log: the ends are
/// one probe of the primary key each (separate subqueries, because SQLite optimises a lone
/// `min` or `max` only), and the count stops at the cap instead of reading a million rows.
pub(crate) const LOG_RANGE: &str = "SELECT \
     (SELECT count(*) FROM (SELECT 1 AS one FROM event_log LIMIT $1) AS capped) AS n, \
     (SELECT min(position) FROM event_log) AS first, \
     (SELECT max(position) FROM event_log) AS last";

impl<'r, R> sqlx::FromRow<'r, R> for LogRange
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    i64: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(LogRange {
            count: row.try_get("n")?,
            first: row.try_get("first")?,
            last: row.try_get("last")?,
        })
    }
}

pub(crate) const SESSION_CREATE: &str = "INSERT INTO ui_sessions \
     (id_sha256, token_fingerprint, scopes, created_at, last_seen_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6)";

pub(crate) const SESSION_GET: &str = "SELECT id_sha256, token_fingerprint, scopes, created_at, \
     last_seen_at, expires_at FROM ui_sessions WHERE id_sha256 = $1";

pub(crate) const SESSION_TOUCH: &str =
    "UPDATE ui_sessions SET last_seen_at = $2 WHERE id_sha256 = $1 AND last_seen_at < $2";

pub(crate) const SESSION_DELETE: &str = "DELETE FROM ui_sessions WHERE id_sha256 = $1";

pub(crate) const SESSIONS_PURGE: &str =
    "DELETE FROM ui_sessions WHERE expires_at <= $1 OR last_seen_at < $2";

pub(crate) const ACTION_RECORD: &str = "INSERT INTO operator_actions \
     (at, token_fingerprint, action, target, outcome, detail) \
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";

/// `$1` is the id to stay below; both backends compare an integer, so no cast is needed.
pub(crate) const ACTIONS_LIST: &str = "SELECT id, at, token_fingerprint, action, target, \
     outcome, detail FROM operator_actions WHERE id < $1 ORDER BY id DESC LIMIT $2";

/// `$1`: the position. One round trip; each part is an indexed lookup.
pub(crate) const PROJECTION_RECORD: &str = "SELECT \
     (SELECT count(*) FROM projected_positions WHERE position = $1) AS listed, \
     (SELECT position FROM projection_checkpoints WHERE name = 'catch_up') AS checkpoint, \
     (SELECT error FROM dead_letters WHERE position = $1) AS dead_error, \
     (SELECT attempts FROM dead_letters WHERE position = $1) AS dead_attempts";

impl<'r, R> sqlx::FromRow<'r, R> for ProjectionRecord
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
    i32: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let listed: i64 = row.try_get("listed")?;
        let error: Option<String> = row.try_get("dead_error")?;
        let attempts: Option<i32> = row.try_get("dead_attempts")?;
        Ok(ProjectionRecord {
            listed_projected: listed > 0,
            catch_up_checkpoint: row.try_get("checkpoint")?,
            dead_letter: error.map(|error| DeadLetterNote {
                error,
                attempts: attempts.unwrap_or(0),
            }),
        })
    }
}

impl<'r, R> sqlx::FromRow<'r, R> for SessionRow
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(SessionRow {
            id_sha256: row.try_get("id_sha256")?,
            token_fingerprint: row.try_get("token_fingerprint")?,
            scopes: row.try_get("scopes")?,
            created_at: row.try_get("created_at")?,
            last_seen_at: row.try_get("last_seen_at")?,
            expires_at: row.try_get("expires_at")?,
        })
    }
}

fn decode<T>(column: &str, text: &str, parse: fn(&str) -> Option<T>) -> Result<T, sqlx::Error> {
    parse(text).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: column.into(),
        source: format!("unknown {column} {text:?}").into(),
    })
}

impl<'r, R> sqlx::FromRow<'r, R> for ActionRow
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let action: String = row.try_get("action")?;
        let outcome: String = row.try_get("outcome")?;
        Ok(ActionRow {
            id: row.try_get("id")?,
            at: row.try_get("at")?,
            token_fingerprint: row.try_get("token_fingerprint")?,
            action: decode("action", &action, ActionKind::parse)?,
            target: row.try_get("target")?,
            outcome: decode("outcome", &outcome, ActionOutcome::parse)?,
            detail: row.try_get("detail")?,
        })
    }
}

/// Every method of `UiStore` but the catalog read (`ui_log_triggers`), written once: each backend's impl expands it with its own read
/// and write pools (`pool, pool` on PostgreSQL, `read, write` on SQLite).
macro_rules! ui_store_same_on_both {
    ($reader:ident, $writer:ident) => {
        async fn ui_session_create(&self, row: &SessionRow) -> Result<(), StorageError> {
            sqlx::query(sql::SESSION_CREATE)
                .bind(&row.id_sha256)
                .bind(&row.token_fingerprint)
                .bind(&row.scopes)
                .bind(row.created_at)
                .bind(row.last_seen_at)
                .bind(row.expires_at)
                .execute(&self.$writer)
                .await?;
            Ok(())
        }

        async fn ui_session_get(
            &self,
            id_sha256: &str,
        ) -> Result<Option<SessionRow>, StorageError> {
            Ok(sqlx::query_as(sql::SESSION_GET)
                .bind(id_sha256)
                .fetch_optional(&self.$reader)
                .await?)
        }

        async fn ui_session_touch(&self, id_sha256: &str, now: i64) -> Result<(), StorageError> {
            sqlx::query(sql::SESSION_TOUCH)
                .bind(id_sha256)
                .bind(now)
                .execute(&self.$writer)
                .await?;
            Ok(())
        }

        async fn ui_session_delete(&self, id_sha256: &str) -> Result<bool, StorageError> {
            let done = sqlx::query(sql::SESSION_DELETE)
                .bind(id_sha256)
                .execute(&self.$writer)
                .await?;
            Ok(done.rows_affected() > 0)
        }

        async fn ui_sessions_purge(&self, now: i64, idle_before: i64) -> Result<u64, StorageError> {
            let done = sqlx::query(sql::SESSIONS_PURGE)
                .bind(now)
                .bind(idle_before)
                .execute(&self.$writer)
                .await?;
            Ok(done.rows_affected())
        }

        async fn ui_projection_record(
            &self,
            position: i64,
        ) -> Result<ProjectionRecord, StorageError> {
            Ok(sqlx::query_as(sql::PROJECTION_RECORD)
                .bind(position)
                .fetch_one(&self.$reader)
                .await?)
        }

        async fn ui_count_events(
            &self,
            filter: &crate::event_log::EventFilter,
            cap: i64,
        ) -> Result<i64, StorageError> {
            let query = crate::store::common::event_log::ListQuery::count(filter, cap);
            let counted: crate::store::common::event_log::Counted =
                query.query().fetch_one(&self.$reader).await?;
            Ok(counted.0)
        }

        async fn ui_export_events(
            &self,
            filter: &crate::event_log::EventFilter,
            page: &crate::event_log::PageRequest,
        ) -> Result<Vec<crate::store::event_log::StoredEvent>, StorageError> {
            let query =
                crate::store::common::event_log::ListQuery::build_with_payloads(filter, page);
            Ok(query.query().fetch_all(&self.$reader).await?)
        }

        async fn ui_log_range(&self, cap: i64) -> Result<LogRange, StorageError> {
            Ok(sqlx::query_as(sql::LOG_RANGE)
                .bind(cap)
                .fetch_one(&self.$reader)
                .await?)
        }

        async fn ui_event_types(&self) -> Result<Vec<String>, StorageError> {
            Ok(
                sqlx::query_scalar(crate::store::common::event_log::DISTINCT_TYPES)
                    .fetch_all(&self.$reader)
                    .await?,
            )
        }

        async fn operator_action_record(
            &self,
            action: &NewAction<'_>,
        ) -> Result<i64, StorageError> {
            Ok(sqlx::query_scalar(sql::ACTION_RECORD)
                .bind(action.at)
                .bind(action.token_fingerprint)
                .bind(action.action.as_str())
                .bind(action.target)
                .bind(action.outcome.as_str())
                .bind(action.detail)
                .fetch_one(&self.$writer)
                .await?)
        }

        async fn operator_actions_list(
            &self,
            before_id: Option<i64>,
            limit: i64,
        ) -> Result<Vec<ActionRow>, StorageError> {
            Ok(sqlx::query_as(sql::ACTIONS_LIST)
                .bind(before_id.unwrap_or(i64::MAX))
                .bind(limit)
                .fetch_all(&self.$reader)
                .await?)
        }
    };
}
pub(crate) use ui_store_same_on_both;
