//! PostgreSQL implementation of the outbox concern (see `store::outbox`).
//!
//! Enqueueing is one `UNNEST` insert (it runs inside the append's critical section); claims
//! skip rows another worker has locked.

use super::PgStore;
use crate::store::common::outbox::{self as sql, claim_prefix, due_ids, item_columns};
use crate::store::outbox::*;
use crate::store::StorageError;

impl OutboxStore for PgStore {
    crate::store::common::outbox::outbox_store_same_on_both!(pool, pool, settle_query);

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

/// [`sql::SETTLE_ALL_POSTGRES`] with the batch as five arrays, one per column.
fn settle_query<'q>(
    settlements: &'q [(i64, Settlement<'q>)],
) -> Result<sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>, StorageError> {
    let ids: Vec<i64> = settlements.iter().map(|(id, _)| *id).collect();
    let statuses: Vec<&str> = settlements.iter().map(|(_, s)| s.status.as_str()).collect();
    let next: Vec<i64> = settlements.iter().map(|(_, s)| s.next_attempt_at).collect();
    let errors: Vec<Option<&str>> = settlements.iter().map(|(_, s)| s.last_error).collect();
    let sent: Vec<Option<i64>> = settlements.iter().map(|(_, s)| s.sent_at).collect();
    Ok(sqlx::query(sql::SETTLE_ALL_POSTGRES)
        .bind(ids)
        .bind(statuses)
        .bind(next)
        .bind(errors)
        .bind(sent))
}
