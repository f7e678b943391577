//! Statements and typed rows of the rebuild shared by both backends.

use super::Column;
use crate::store::rebuild::Replayed;

/// The replay's tailing read: only the columns a fold reads.
pub(crate) const REPLAY_AFTER: &str = "SELECT position, event_id, event_type, stripe_created, \
     source, payload FROM event_log WHERE position > $1 ORDER BY position LIMIT $2";

impl<'r, R> sqlx::FromRow<'r, R> for Replayed
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Replayed {
            position: row.try_get("position")?,
            event_id: row.try_get("event_id")?,
            event_type: row.try_get("event_type")?,
            stripe_created: row.try_get("stripe_created")?,
            source: row
                .try_get::<String, _>("source")?
                .parse()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            payload: row.try_get("payload")?,
        })
    }
}

/// The methods of `RebuildStore` that run the same statements the same way on both backends,
/// written once: each backend's impl expands them with the pool it reads from (`pool` on
/// PostgreSQL, `read` on SQLite). Names resolve where it is expanded.
macro_rules! rebuild_store_same_on_both {
    ($reader:ident) => {
        async fn replay_after(
            &self,
            position: i64,
            limit: u32,
        ) -> Result<Vec<Replayed>, StorageError> {
            Ok(sqlx::query_as(sql::REPLAY_AFTER)
                .bind(position)
                .bind(i64::from(limit))
                .fetch_all(&self.$reader)
                .await?)
        }
    };
}
pub(crate) use rebuild_store_same_on_both;
