//! SQLite implementation of the history concern (see `store::history`).

use serde_json::json;

use super::{SqliteStore, SqliteTx};
use crate::store::history::{HistoryEntry, HistoryStore, TouchAt};
use crate::store::read_models::Key;
use crate::store::StorageError;

/// The objects' entries through `object_touches`, each entry once, joined to the log.
const TOUCHING: &str = concat!(
    "SELECT ",
    crate::store::common::history::history_columns!(),
    " FROM (SELECT DISTINCT t.position FROM json_each($1) AS k \
     JOIN object_touches t ON t.kind = json_extract(k.value, '$[0]') \
     AND t.object_id = json_extract(k.value, '$[1]') AND t.position <= $2) p \
     JOIN event_log l ON l.position = p.position ORDER BY l.position"
);

const RECORD: &str = "INSERT INTO object_touches (kind, object_id, position) \
     SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
     json_extract(value, '$[2]') FROM json_each($1) WHERE true ON CONFLICT DO NOTHING";

impl HistoryStore for SqliteStore {
    crate::store::common::history::history_store_same_on_both!(read);

    async fn touching_entries(
        &self,
        keys: &[Key],
        upto: i64,
    ) -> Result<Vec<HistoryEntry>, StorageError> {
        let keys: Vec<(&str, &str)> = keys
            .iter()
            .map(|(k, id)| (k.as_str(), id.as_str()))
            .collect();
        Ok(sqlx::query_as(TOUCHING)
            .bind(json!(keys).to_string())
            .bind(upto)
            .fetch_all(&self.read)
            .await?)
    }
}

pub(crate) async fn record_touches(
    tx: &mut SqliteTx<'_>,
    touches: &[TouchAt],
) -> Result<(), StorageError> {
    let rows: Vec<_> = touches
        .iter()
        .map(|t| json!([t.kind.as_str(), t.object_id, t.position]))
        .collect();
    sqlx::query(RECORD)
        .bind(json!(rows).to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
