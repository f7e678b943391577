//! Statements and typed rows of the jobs concern shared by both backends. Only the binding of
//! timestamps differs (SQLite stores fixed-width UTC text), so every statement is here.

use chrono::{DateTime, Utc};

use super::Column;
use crate::store::jobs::{Gauges, Run, RunStatus};

/// Takes the lease if it is free or expired: `$1` name, `$2` holder, `$3` until, `$4` now.
pub(crate) const LEASE: &str = "INSERT INTO job_leases (name, holder, expires_at) \
     VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
     WHERE job_leases.expires_at <= $4 RETURNING holder";

pub(crate) const RUN_START: &str = "INSERT INTO reconciliation_runs (started_at, status, repair) \
     VALUES ($1, 'running', $2) RETURNING id";

pub(crate) const RUN_FINISH: &str = "UPDATE reconciliation_runs SET finished_at = $1, \
     status = $2, drift_count = $3, report = $4, error = $5 WHERE id = $6";

/// Listings leave the report out: it is the bulky part, shown only for a single run.
pub(crate) const RUNS_BEFORE: &str = "SELECT id, started_at, finished_at, status, repair, \
     drift_count, error FROM reconciliation_runs WHERE id < $1 ORDER BY id DESC LIMIT $2";

pub(crate) const RUN: &str = "SELECT id, started_at, finished_at, status, repair, drift_count, \
     report, error FROM reconciliation_runs WHERE id = $1";

/// Everything is counted against the catch-up checkpoint: entries after it that ingestion has
/// not projected are the ones catch-up still owes.
pub(crate) const GAUGES: &str = "SELECT \
    (SELECT count(*) FROM dead_letters) AS dead_letters, \
    (SELECT CAST(drift_count AS BIGINT) FROM reconciliation_runs WHERE status = 'succeeded' \
      ORDER BY id DESC LIMIT 1) AS reconcile_drift, \
    (SELECT count(*) FROM event_log WHERE position > c.p) \
      - (SELECT count(*) FROM projected_positions WHERE position > c.p) AS catch_up_lag, \
    (SELECT COALESCE(MAX(position), 0) FROM event_log) AS log_position \
    FROM (SELECT COALESCE((SELECT position FROM projection_checkpoints \
      WHERE name = 'catch_up'), 0) AS p) AS c";

/// One decoder for both backends (SQLite's timestamps are text sqlx reads as `DateTime<Utc>`).
/// `report` is read only when the statement selected it; a report that is not JSON reads as
/// none.
impl<'r, R> sqlx::FromRow<'r, R> for Run
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
    i32: Column<'r, R::Database>,
    bool: Column<'r, R::Database>,
    DateTime<Utc>: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let report: Option<String> = match row.try_get("report") {
            Ok(report) => report,
            Err(sqlx::Error::ColumnNotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let status: String = row.try_get("status")?;
        let status = RunStatus::parse(&status).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "status".into(),
            source: format!("unknown reconciliation run status {status:?}").into(),
        })?;
        Ok(Run {
            id: row.try_get("id")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            status,
            repair: row.try_get("repair")?,
            drift_count: row.try_get("drift_count")?,
            report: report.and_then(|r| serde_json::from_str(&r).ok()),
            error: row.try_get("error")?,
        })
    }
}

impl<'r, R> sqlx::FromRow<'r, R> for Gauges
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    i64: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Gauges {
            dead_letters: row.try_get("dead_letters")?,
            reconcile_drift: row.try_get("reconcile_drift")?,
            catch_up_lag: row.try_get("catch_up_lag")?,
            log_position: row.try_get("log_position")?,
        })
    }
}

/// The methods of `JobStore` that run the same statements the same way on both backends,
/// written once: each backend's impl expands them with its own read and write pools
/// (`pool, pool` on PostgreSQL, `read, write` on SQLite). Names resolve where it is expanded.
macro_rules! job_store_same_on_both {
    ($reader:ident, $writer:ident) => {
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
                .fetch_optional(&self.$writer)
                .await?;
            Ok(got.is_some())
        }

        async fn reconcile_runs(
            &self,
            before_id: i64,
            limit: i64,
        ) -> Result<Vec<Run>, StorageError> {
            Ok(sqlx::query_as(sql::RUNS_BEFORE)
                .bind(before_id)
                .bind(limit)
                .fetch_all(&self.$reader)
                .await?)
        }

        async fn reconcile_run(&self, id: i64) -> Result<Option<Run>, StorageError> {
            Ok(sqlx::query_as(sql::RUN)
                .bind(id)
                .fetch_optional(&self.$reader)
                .await?)
        }

        async fn metrics_gauges(&self) -> Result<Gauges, StorageError> {
            Ok(sqlx::query_as(sql::GAUGES).fetch_one(&self.$reader).await?)
        }
    };
}
pub(crate) use job_store_same_on_both;
