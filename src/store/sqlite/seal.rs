//! SQLite implementation of the sealed log (see `store::seal`).
//!
//! The extension runs on the single writer connection (`BEGIN IMMEDIATE`), which is the lock;
//! the size is still checked, so a second process on the same file cannot fork the tree.

use std::collections::HashMap;

use super::SqliteStore;
use crate::seal::merkle::{Hash, NodeId};
use crate::store::common::seal::{self as sql, NodeRow};
use crate::store::event_log::StoredEvent;
use crate::store::seal::*;
use crate::store::StorageError;

/// The new nodes as one JSON array of `[level, idx, hash in hex]`: one statement text whatever
/// their number, so the writer prepares it once. A `VALUES` list per pass was a statement of its
/// own for every count of nodes, prepared again on ingestion's writer every 200 ms (README,
/// "Performance").
const INSERT_NODES: &str = "INSERT INTO seal_nodes (level, idx, hash) \
     SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
     unhex(json_extract(value, '$[2]')) FROM json_each($1)";

fn nodes_json(nodes: &[(NodeId, Hash)]) -> Result<String, StorageError> {
    let rows = nodes
        .iter()
        .map(|(id, hash)| Ok((id.level, to_db(id.index)?, hex::encode(hash))))
        .collect::<Result<Vec<_>, StorageError>>()?;
    serde_json::to_string(&rows).map_err(|e| StorageError::invalid(format!("nodes as JSON: {e}")))
}

impl SealStore for SqliteStore {
    crate::store::common::seal::seal_store_same_on_both!(read, write, sql::ENTRIES_AFTER_SQLITE);

    async fn extend_tree(&self, extension: &TreeExtension<'_>) -> Result<bool, StorageError> {
        let mut tx = self.begin().await?;
        let current: SealState = sqlx::query_as(sql::STATE_FOR_UPDATE_SQLITE)
            .fetch_one(&mut *tx)
            .await?;
        if current.size != extension.from_size {
            return Ok(false);
        }
        sqlx::query(INSERT_NODES)
            .bind(nodes_json(extension.nodes)?)
            .execute(&mut *tx)
            .await?;
        sqlx::query(sql::MOVE_STATE)
            .bind(to_db(extension.to_size)?)
            .bind(extension.root.as_slice())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The ids travel as one JSON array of `[level, idx]` pairs (SQLite has no arrays), joined
    /// against the primary key.
    async fn fetch_nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, StorageError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let pairs: Vec<(u8, u64)> = ids.iter().map(|id| (id.level, id.index)).collect();
        let json = serde_json::to_string(&pairs)
            .map_err(|e| StorageError::invalid(format!("node ids as JSON: {e}")))?;
        let rows: Vec<NodeRow> = sqlx::query_as(
            "SELECT n.level, n.idx, n.hash FROM json_each($1) AS j \
             JOIN seal_nodes n ON n.level = json_extract(j.value, '$[0]') \
                              AND n.idx = json_extract(j.value, '$[1]')",
        )
        .bind(json)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(|r| (r.id, r.hash)).collect())
    }
}
