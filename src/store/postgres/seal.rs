//! PostgreSQL implementation of the sealed log (see `store::seal`).
//!
//! Two instances may seal at once: the extension locks the state row (`FOR UPDATE`) and writes
//! only if the size is still the one its pass started from, so one wins and the other's pass
//! writes nothing (and starts again from the new size).

use std::collections::HashMap;

use super::PgStore;
use crate::seal::merkle::{Hash, NodeId};
use crate::store::common::seal::{self as sql, NodeRow};
use crate::store::event_log::StoredEvent;
use crate::store::seal::*;
use crate::store::StorageError;

impl SealStore for PgStore {
    crate::store::common::seal::seal_store_same_on_both!(pool, pool, sql::SEALABLE_AFTER_PG);

    async fn extend_tree(&self, extension: &TreeExtension<'_>) -> Result<bool, StorageError> {
        let mut tx = self.pool.begin().await?;
        let current: SealState = sqlx::query_as(sql::STATE_FOR_UPDATE_PG)
            .fetch_one(&mut *tx)
            .await?;
        if current.size != extension.from_size {
            return Ok(false);
        }
        let mut levels = Vec::with_capacity(extension.nodes.len());
        let mut indexes = Vec::with_capacity(extension.nodes.len());
        let mut hashes = Vec::with_capacity(extension.nodes.len());
        for (id, hash) in extension.nodes {
            levels.push(i32::from(id.level));
            indexes.push(to_db(id.index)?);
            hashes.push(hash.to_vec());
        }
        sqlx::query(
            "INSERT INTO seal_nodes (level, idx, hash) \
             SELECT * FROM UNNEST($1::integer[], $2::bigint[], $3::bytea[])",
        )
        .bind(&levels)
        .bind(&indexes)
        .bind(&hashes)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sql::MOVE_STATE)
            .bind(to_db(extension.to_size)?)
            .bind(extension.root.to_vec())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn fetch_nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, StorageError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let levels: Vec<i32> = ids.iter().map(|id| i32::from(id.level)).collect();
        let indexes = ids
            .iter()
            .map(|id| to_db(id.index))
            .collect::<Result<Vec<_>, _>>()?;
        let rows: Vec<NodeRow> = sqlx::query_as(
            "SELECT n.level, n.idx, n.hash \
             FROM UNNEST($1::integer[], $2::bigint[]) AS u(level, idx) \
             JOIN seal_nodes n ON n.level = u.level AND n.idx = u.idx",
        )
        .bind(&levels)
        .bind(&indexes)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.id, r.hash)).collect())
    }
}
