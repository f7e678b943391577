//! PostgreSQL implementation of the outbox concern (see `store::outbox`).
//!
//! Enqueueing is one `UNNEST` insert (it runs inside the append's critical section); claims
//! skip rows another worker has locked.

use super::PgStore;
use crate::store::common::outbox::{self as sql, claim_prefix, due_ids, item_columns};
use crate::store::outbox::*;
use crate::store::StorageError;

impl OutboxStore for PgStore {
    crate::store::common::outbox::outbox_store_same_on_both!(pool, pool);

    async fn outbox_claim(
        &self,
        now: i64,
        claimed_until: i64,
        limit: i64,
    ) -> Result<Vec<Item>, StorageError> {
        const CLAIM: &str = concat!(
            claim_prefix!(),
            due_ids!(),
            " FOR UPDATE SKIP LOCKED) RETURNING ",
            item_columns!()
        );
        let mut items: Vec<Item> = sqlx::query_as(CLAIM)
            .bind(claimed_until)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    async fn outbox_list(
        &self,
        status: Option<OutboxStatus>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Item>, StorageError> {
        // PostgreSQL cannot infer the type of a parameter only ever compared with NULL.
        const LIST: &str = sql::list!("$1::text IS NULL");
        Ok(sqlx::query_as(LIST)
            .bind(status.map(OutboxStatus::as_str))
            .bind(after_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }
}
