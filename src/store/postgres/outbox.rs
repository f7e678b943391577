//! PostgreSQL implementation of the outbox concern (see `store::outbox`).
//!
//! Enqueueing is one `UNNEST` insert (it runs inside the append's critical section); claims
//! skip rows another worker has locked.

use super::PgStore;
use crate::store::common::outbox::{self as sql, claim_prefix, due_ids, item_columns};
use crate::store::outbox::*;
use crate::store::StorageError;

impl OutboxStore for PgStore {
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

    async fn outbox_settle(
        &self,
        id: i64,
        settlement: &Settlement<'_>,
    ) -> Result<(), StorageError> {
        sqlx::query(sql::SETTLE)
            .bind(id)
            .bind(settlement.status.as_str())
            .bind(settlement.next_attempt_at)
            .bind(settlement.last_error)
            .bind(settlement.sent_at)
            .execute(&self.pool)
            .await?;
        Ok(())
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

    async fn outbox_retry(&self, target: RetryTarget, now: i64) -> Result<u64, StorageError> {
        let query = match target {
            RetryTarget::AllFailed => sqlx::query(sql::RETRY_ALL_FAILED).bind(now),
            RetryTarget::One(id) => sqlx::query(sql::RETRY_ONE).bind(now).bind(id),
        };
        Ok(query.execute(&self.pool).await?.rows_affected())
    }

    async fn outbox_counts(&self) -> Result<Vec<StatusCount>, StorageError> {
        Ok(sqlx::query_as(sql::COUNTS).fetch_all(&self.pool).await?)
    }
}
