//! PostgreSQL implementation of the history concern (see `store::history`). Ingestion's
//! touches are written by `ledger_ingest_batch` (migration 0008), not here.

use super::{PgStore, PgTx};
use crate::store::history::{HistoryEntry, HistoryStore, TouchAt};
use crate::store::{Kind, StorageError};

const RECORD: &str = "INSERT INTO object_touches (kind, object_id, position) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::int8[]) ON CONFLICT DO NOTHING";

impl HistoryStore for PgStore {
    crate::store::common::history::history_store_same_on_both!(pool);

    async fn record_touches(&self, touches: &[TouchAt]) -> Result<(), StorageError> {
        let mut tx = self.begin().await?;
        record_touches(&mut tx, touches).await?;
        tx.commit().await?;
        Ok(())
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
