//! SQLite implementation of the jobs concern (see `store::jobs`): the shared statements, with
//! timestamps bound as fixed-width UTC text; writes on the single writer connection.

use chrono::{DateTime, Utc};

use super::{timestamp, SqliteStore};
use crate::store::common::jobs as sql;
use crate::store::jobs::*;
use crate::store::StorageError;

impl JobStore for SqliteStore {
    crate::store::common::jobs::job_store_same_on_both!(read, write);

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
}
