//! SQLite implementation of the outbox concern (see `store::outbox`).
//!
//! Every write runs on the single writer connection, which also serialises claims: no row
//! locks are needed.

use super::SqliteStore;
use crate::store::common::outbox::{self as sql, claim_prefix, due_ids, item_columns};
use crate::store::outbox::*;
use crate::store::StorageError;

impl OutboxStore for SqliteStore {
    crate::store::common::outbox::outbox_store_same_on_both!(read, write, settle_query);

    async fn outbox_claim(
        &self,
        now: i64,
        claimed_until: i64,
        limit: i64,
    ) -> Result<Vec<Item>, StorageError> {
        const CLAIM: &str = concat!(claim_prefix!(), due_ids!(), ") RETURNING ", item_columns!());
        let mut items: Vec<Item> = sqlx::query_as(CLAIM)
            .bind(claimed_until)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.write)
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
        const LIST: &str = sql::list!("$1 IS NULL");
        Ok(sqlx::query_as(LIST)
            .bind(status.map(OutboxStatus::as_str))
            .bind(after_id)
            .bind(limit)
            .fetch_all(&self.read)
            .await?)
    }
}

/// [`sql::SETTLE_ALL_SQLITE`] with the batch as one JSON array of
/// `[id, status, next attempt, error, sent]` rows (SQLite has no arrays).
fn settle_query<'q>(
    settlements: &'q [(i64, Settlement<'q>)],
) -> Result<sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>, StorageError> {
    let rows: Vec<_> = settlements
        .iter()
        .map(|(id, s)| {
            (
                id,
                s.status.as_str(),
                s.next_attempt_at,
                s.last_error,
                s.sent_at,
            )
        })
        .collect();
    let rows = serde_json::to_string(&rows)
        .map_err(|e| StorageError::invalid(format!("outbox settlements as JSON: {e}")))?;
    Ok(sqlx::query(sql::SETTLE_ALL_SQLITE).bind(rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Backend;

    /// The plans ADR 33 depends on, as SQLite's planner makes them for the statements the
    /// service sends (its choices do not depend on the data here: a fresh database has no
    /// statistics). Either one regressing made draining a backlog quadratic: the claim sorted
    /// every due row, and the settle scanned every pending row once per row of its batch.
    #[tokio::test]
    async fn the_claim_reads_the_due_index_in_order_and_the_settle_finds_each_row_by_id() {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        crate::store::migrations::migrator(Backend::Sqlite)
            .run(&pool)
            .await
            .unwrap();
        let plan = |statement: &'static str| {
            let pool = pool.clone();
            async move {
                let rows: Vec<(i64, i64, i64, String)> =
                    sqlx::query_as(&format!("EXPLAIN QUERY PLAN {statement}"))
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                rows.into_iter()
                    .map(|(_, _, _, detail)| detail)
                    .collect::<Vec<_>>()
            }
        };

        const CLAIM: &str = concat!(claim_prefix!(), due_ids!(), ") RETURNING ", item_columns!());
        assert_plan(
            &plan(CLAIM).await,
            "SEARCH outbox USING INDEX outbox_due_order",
            "TEMP B-TREE",
        );
        assert_plan(
            &plan(sql::SETTLE_ALL_SQLITE).await,
            "SEARCH outbox USING INTEGER PRIMARY KEY (rowid=?)",
            "outbox_due",
        );
    }

    /// One step of `plan` starts with `step`, and none mentions `never`.
    fn assert_plan(plan: &[String], step: &str, never: &str) {
        assert!(
            plan.iter().any(|d| d.starts_with(step)),
            "{step}: {plan:#?}"
        );
        assert!(
            !plan.iter().any(|d| d.contains(never)),
            "{never}: {plan:#?}"
        );
    }
}
