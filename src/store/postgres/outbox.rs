//! PostgreSQL implementation of the outbox concern (see `store::outbox`).
//!
//! Enqueueing is one `UNNEST` insert (it runs inside the append's critical section); claims
//! skip rows another worker has locked.

use ledger_projections::Notification;

use super::{PgStore, PgTx};
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

impl OutboxTx for PgTx<'_> {
    async fn enqueue_notifications(
        &mut self,
        notifications: &[(Notification, String)],
        now: i64,
    ) -> Result<(), StorageError> {
        const ENQUEUE: &str = "INSERT INTO outbox (dedupe_key, kind, customer_id, event_id, \
             details, status, attempts, next_attempt_at, created_at) \
             SELECT k, kind, c, e, d, 'pending', 0, $6, $6 \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
             AS n(k, kind, c, e, d) \
             ON CONFLICT (dedupe_key) DO NOTHING";
        if notifications.is_empty() {
            return Ok(());
        }
        let column = |f: fn(&(Notification, String)) -> &str| -> Vec<&str> {
            notifications.iter().map(f).collect()
        };
        // One statement for the whole batch: this runs inside the append's critical section.
        sqlx::query(ENQUEUE)
            .bind(column(|(n, _)| n.dedupe_key.as_str()))
            .bind(column(|(n, _)| n.kind.as_str()))
            .bind(column(|(n, _)| n.customer.as_str()))
            .bind(column(|(_, event_id)| event_id.as_str()))
            .bind(details(notifications))
            .bind(now)
            .execute(&mut **self)
            .await?;
        Ok(())
    }
}

/// Each notification's details as the stored JSON text.
fn details(notifications: &[(Notification, String)]) -> Vec<String> {
    notifications
        .iter()
        .map(|(n, _)| serde_json::to_string(&n.details).expect("notification details serialise"))
        .collect()
}
