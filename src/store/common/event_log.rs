//! Statements and typed rows of the event log shared by both backends.

pub(crate) const COUNT: &str = "SELECT count(*) FROM event_log";

pub(crate) const LAST_POSITION: &str = "SELECT COALESCE(MAX(position), 0) FROM event_log";

/// The columns of [`StoredEvent`] without the payload; append `, payload` to load it too.
pub(crate) const SUMMARY_COLUMNS: &str = "position, event_id, event_type, api_version, \
     livemode, account, object_id, object_type, stripe_created, received_at, source, \
     payload_redacted, raw_body_sha256, signature_header, signature_timestamp, \
     verified_by_index, verified_by_fingerprint";

use chrono::{DateTime, Utc};

use super::Column;
use crate::event_log::StoredEvent;

/// One decoder for both backends: the column types line up (SQLite stores `received_at` as
/// fixed-width UTC text, which sqlx decodes as a `DateTime<Utc>`). `payload` is read only when
/// the statement selected it.
impl<'r, R> sqlx::FromRow<'r, R> for StoredEvent
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
    i32: Column<'r, R::Database>,
    bool: Column<'r, R::Database>,
    DateTime<Utc>: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let payload = match row.try_get("payload") {
            Ok(payload) => Some(payload),
            Err(sqlx::Error::ColumnNotFound(_)) => None,
            Err(e) => return Err(e),
        };
        Ok(StoredEvent {
            position: row.try_get("position")?,
            event_id: row.try_get("event_id")?,
            event_type: row.try_get("event_type")?,
            api_version: row.try_get("api_version")?,
            livemode: row.try_get("livemode")?,
            account: row.try_get("account")?,
            object_id: row.try_get("object_id")?,
            object_type: row.try_get("object_type")?,
            stripe_created: row.try_get("stripe_created")?,
            received_at: row.try_get("received_at")?,
            source: row.try_get("source")?,
            payload_redacted: row.try_get("payload_redacted")?,
            raw_body_sha256: row.try_get("raw_body_sha256")?,
            signature_header: row.try_get("signature_header")?,
            signature_timestamp: row.try_get("signature_timestamp")?,
            verified_by_index: row.try_get("verified_by_index")?,
            verified_by_fingerprint: row.try_get("verified_by_fingerprint")?,
            payload,
        })
    }
}
