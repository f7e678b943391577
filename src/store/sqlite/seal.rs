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

/// Rows per INSERT: 3 parameters each, well under SQLite's 32766.
const NODES_PER_INSERT: usize = 500;

/// `INSERT ... VALUES ($1, $2, $3), ...` for `rows` rows (full batches share one text, so
/// one prepared statement).
fn insert_nodes(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
        .collect();
    format!(
        "INSERT INTO seal_nodes (level, idx, hash) VALUES {}",
        values.join(", ")
    )
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
        // Multi-row statements: the writer is ingestion's too, so it is held for a few
        // statements rather than one per node.
        for batch in extension.nodes.chunks(NODES_PER_INSERT) {
            let sql = insert_nodes(batch.len());
            let mut query = sqlx::query(&sql);
            for (id, hash) in batch {
                query = query
                    .bind(i32::from(id.level))
                    .bind(to_db(id.index)?)
                    .bind(hash.as_slice());
            }
            query.execute(&mut *tx).await?;
        }
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
