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
    };
}
pub(crate) use history_store_same_on_both;
