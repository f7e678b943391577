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
