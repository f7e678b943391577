//! SQLite implementation of the jobs concern (see `store::jobs`): the shared statements, with
//! timestamps bound as fixed-width UTC text; writes on the single writer connection.

use chrono::{DateTime, Utc};

use super::{timestamp, SqliteStore};
use crate::store::common::jobs as sql;
use crate::store::jobs::*;
use crate::store::StorageError;

impl JobStore for SqliteStore {
    async fn lease_acquire(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StorageError> {
        let got: Option<String> = sqlx::query_scalar(sql::LEASE)
            .bind(name)
            .bind(holder)
            .bind(expires_at)
            .bind(now)
            .fetch_optional(&self.write)
            .await?;
        Ok(got.is_some())
    }

    async fn reconcile_run_start(
        &self,
        started_at: DateTime<Utc>,
        repair: bool,
    ) -> Result<i64, StorageError> {
        Ok(sqlx::query_scalar(sql::RUN_START)
            .bind(timestamp(started_at))
            .bind(repair)
            .fetch_one(&self.write)
            .await?)
    }

    async fn reconcile_run_finish(
        &self,
        id: i64,
        finished: &FinishedRun<'_>,
    ) -> Result<(), StorageError> {
        sqlx::query(sql::RUN_FINISH)
            .bind(timestamp(finished.finished_at))
            .bind(finished.status.as_str())
            .bind(finished.drift_count)
            .bind(finished.report.map(|r| r.to_string()))
            .bind(finished.error)
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn reconcile_runs(&self, before_id: i64, limit: i64) -> Result<Vec<Run>, StorageError> {
        Ok(sqlx::query_as(sql::RUNS_BEFORE)
            .bind(before_id)
            .bind(limit)
            .fetch_all(&self.read)
            .await?)
    }

    async fn reconcile_run(&self, id: i64) -> Result<Option<Run>, StorageError> {
        Ok(sqlx::query_as(sql::RUN)
            .bind(id)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn metrics_gauges(&self) -> Result<Gauges, StorageError> {
        Ok(sqlx::query_as(sql::GAUGES).fetch_one(&self.read).await?)
    }
}
