//! PostgreSQL implementation of the history concern (see `store::history`). Ingestion's
//! touches are written by `ledger_ingest_batch` (migration 0008), not here.

use super::{PgStore, PgTx};
use crate::store::history::{HistoryEntry, HistoryStore, TouchAt};
use crate::store::read_models::Key;
use crate::store::StorageError;

/// The objects' entries through `object_touches` (primary key `(kind, object_id, position)`:
/// one range scan per object), each entry once, joined to the log by position.
const TOUCHING: &str = concat!(
    "SELECT ",
    crate::store::common::history::history_columns!(),
    " FROM (SELECT DISTINCT t.position \
     FROM unnest($1::text[], $2::text[]) AS k(kind, id) \
     JOIN object_touches t ON t.kind = k.kind AND t.object_id = k.id AND t.position <= $3) p \
     JOIN event_log l ON l.position = p.position ORDER BY l.position"
);

const RECORD: &str = "INSERT INTO object_touches (kind, object_id, position) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::int8[]) ON CONFLICT DO NOTHING";

impl HistoryStore for PgStore {
    crate::store::common::history::history_store_same_on_both!(pool);

    async fn touching_entries(
        &self,
        keys: &[Key],
        upto: i64,
    ) -> Result<Vec<HistoryEntry>, StorageError> {
        let kinds: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        let ids: Vec<&str> = keys.iter().map(|(_, id)| id.as_str()).collect();
        Ok(sqlx::query_as(TOUCHING)
            .bind(&kinds)
            .bind(&ids)
            .bind(upto)
            .fetch_all(&self.pool)
            .await?)
    }
}

pub(crate) async fn record_touches(
    tx: &mut PgTx<'_>,
    touches: &[TouchAt],
) -> Result<(), StorageError> {
    let kinds: Vec<&str> = touches.iter().map(|t| t.kind.as_str()).collect();
    let ids: Vec<&str> = touches.iter().map(|t| t.object_id.as_str()).collect();
    let positions: Vec<i64> = touches.iter().map(|t| t.position).collect();
    sqlx::query(RECORD)
        .bind(&kinds)
        .bind(&ids)
        .bind(&positions)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
