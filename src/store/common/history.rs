//! Statements and typed rows of the history concern shared by both backends.

use chrono::{DateTime, Utc};

use super::Column;
use crate::store::history::HistoryEntry;

/// The columns of [`HistoryEntry`], selected from `event_log l` by each backend's statement
/// over its own key list (`unnest` / `json_each`).
macro_rules! history_columns {
    () => {
        "l.position, l.event_id, l.event_type, l.source, l.stripe_created, l.received_at, \
         l.payload"
    };
}
pub(crate) use history_columns;

pub(crate) const RECEIVED_BEFORE: &str = "SELECT received_at FROM event_log \
     WHERE position <= $1 ORDER BY position DESC LIMIT 1";

/// The objects the entry at `$1` touched (index `object_touches_position`, migration 0012).
pub(crate) const TOUCHED_BY: &str = "SELECT kind, object_id FROM object_touches \
     WHERE position = $1 ORDER BY kind, object_id";

/// One row of [`TOUCHED_BY`]; a kind this version does not know is a decode error.
pub(crate) struct TouchedRow(pub crate::store::read_models::Key);

impl<'r, R> sqlx::FromRow<'r, R> for TouchedRow
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let kind: String = row.try_get("kind")?;
        let kind = kind.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        Ok(TouchedRow((kind, row.try_get("object_id")?)))
    }
}

impl<'r, R> sqlx::FromRow<'r, R> for HistoryEntry
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
    DateTime<Utc>: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(HistoryEntry {
            position: row.try_get("position")?,
            event_id: row.try_get("event_id")?,
            event_type: row.try_get("event_type")?,
            source: row
                .try_get::<String, _>("source")?
                .parse()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            stripe_created: row.try_get("stripe_created")?,
            received_at: row.try_get("received_at")?,
            payload: row.try_get("payload")?,
        })
    }
}

/// The methods of `HistoryStore` that run the same statements the same way on both backends,
/// expanded in each backend's impl with its read pool.
macro_rules! history_store_same_on_both {
    ($reader:ident) => {
        async fn received_before(
            &self,
            position: i64,
        ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StorageError> {
            Ok(
                sqlx::query_scalar(crate::store::common::history::RECEIVED_BEFORE)
                    .bind(position)
                    .fetch_optional(&self.$reader)
                    .await?,
            )
        }

        async fn touched_by(
            &self,
            position: i64,
        ) -> Result<Vec<crate::store::read_models::Key>, StorageError> {
            let rows: Vec<crate::store::common::history::TouchedRow> =
                sqlx::query_as(crate::store::common::history::TOUCHED_BY)
                    .bind(position)
                    .fetch_all(&self.$reader)
                    .await?;
            Ok(rows.into_iter().map(|r| r.0).collect())
        }
    };
}
pub(crate) use history_store_same_on_both;
