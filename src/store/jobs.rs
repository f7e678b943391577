//! The jobs concern: leases of jobs one instance at a time may run (`job_leases`), the records
//! of scheduled reconciliations (`reconciliation_runs`), the gauges `/metrics` reads at scrape
//! time, and the scratch databases of `stripe-ledger bench` ([`ScratchServer`]). When to run a
//! job and what it does (`crate::reconcile::schedule`, `crate::metrics`, `crate::bench`) is not
//! storage and stays there.
//!
//! [`JobStore`] lists the operations on the database handle (jobs have none inside a
//! transaction). Each is implemented by both backends (`postgres/jobs.rs`, `sqlite/jobs.rs`) and
//! by [`Db`], which only dispatches.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{Db, StorageError};

pub use super::postgres::jobs::ScratchServer;

/// Where a scheduled reconciliation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
}

impl RunStatus {
    pub const ALL: [RunStatus; 3] = [RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

/// One scheduled reconciliation, as `/api/reconciliations` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub repair: bool,
    pub drift_count: Option<i32>,
    /// Only read for a single run (`{"reconcile": ..., "sync_events": ...}`).
    pub report: Option<Value>,
    pub error: Option<String>,
}

/// How a run ended, recorded on its row.
#[derive(Debug, Clone)]
pub struct FinishedRun<'a> {
    pub finished_at: DateTime<Utc>,
    pub status: RunStatus,
    pub drift_count: Option<i32>,
    pub report: Option<&'a Value>,
    pub error: Option<&'a str>,
}

/// The database's gauges, read in one statement so they describe one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gauges {
    pub dead_letters: i64,
    /// Drift found by the last succeeded run; `None` before any.
    pub reconcile_drift: Option<i64>,
    /// Logged entries after the catch-up checkpoint that ingestion has not projected either.
    /// May read negative for a moment (counted in two sub-selects); callers clamp it.
    pub catch_up_lag: i64,
    pub log_position: i64,
}

/// Operations on the database handle. Dispatched statically through [`Db`], never `dyn`.
/// Reads run on the pool (SQLite: the read pool); writes on SQLite go to the writer.
#[allow(async_fn_in_trait)] // static dispatch only: callers see the concrete futures, and they are Send.
pub trait JobStore {
    /// Takes the lease `name` for `holder` until `expires_at` if it is free or expired at
    /// `now` (unix seconds). Exactly one of several racing instances gets it: the upsert's
    /// WHERE is evaluated under the row lock.
    async fn lease_acquire(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StorageError>;
    /// Records a run that starts now (`running`); returns its id.
    async fn reconcile_run_start(
        &self,
        started_at: DateTime<Utc>,
        repair: bool,
    ) -> Result<i64, StorageError>;
    /// Records how run `id` ended.
    async fn reconcile_run_finish(
        &self,
        id: i64,
        finished: &FinishedRun<'_>,
    ) -> Result<(), StorageError>;
    /// Runs older than `before_id`, newest first, at most `limit`, without their reports.
    async fn reconcile_runs(&self, before_id: i64, limit: i64) -> Result<Vec<Run>, StorageError>;
    /// One run with its report.
    async fn reconcile_run(&self, id: i64) -> Result<Option<Run>, StorageError>;
    /// The gauges `/metrics` reads from the shared database.
    async fn metrics_gauges(&self) -> Result<Gauges, StorageError>;
}

impl JobStore for Db {
    async fn lease_acquire(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StorageError> {
        match self {
            Db::Postgres(s) => s.lease_acquire(name, holder, now, expires_at).await,
            Db::Sqlite(s) => s.lease_acquire(name, holder, now, expires_at).await,
        }
    }

    async fn reconcile_run_start(
        &self,
        started_at: DateTime<Utc>,
        repair: bool,
    ) -> Result<i64, StorageError> {
        match self {
            Db::Postgres(s) => s.reconcile_run_start(started_at, repair).await,
            Db::Sqlite(s) => s.reconcile_run_start(started_at, repair).await,
        }
    }

    async fn reconcile_run_finish(
        &self,
        id: i64,
        finished: &FinishedRun<'_>,
    ) -> Result<(), StorageError> {
        match self {
            Db::Postgres(s) => s.reconcile_run_finish(id, finished).await,
            Db::Sqlite(s) => s.reconcile_run_finish(id, finished).await,
        }
    }

    async fn reconcile_runs(&self, before_id: i64, limit: i64) -> Result<Vec<Run>, StorageError> {
        match self {
            Db::Postgres(s) => s.reconcile_runs(before_id, limit).await,
            Db::Sqlite(s) => s.reconcile_runs(before_id, limit).await,
        }
    }

    async fn reconcile_run(&self, id: i64) -> Result<Option<Run>, StorageError> {
        match self {
            Db::Postgres(s) => s.reconcile_run(id).await,
            Db::Sqlite(s) => s.reconcile_run(id).await,
        }
    }

    async fn metrics_gauges(&self) -> Result<Gauges, StorageError> {
        match self {
            Db::Postgres(s) => s.metrics_gauges().await,
            Db::Sqlite(s) => s.metrics_gauges().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_statuses_read_back_as_themselves_and_serialise_as_stored() {
        for status in RunStatus::ALL {
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                Value::String(status.as_str().to_owned())
            );
        }
        assert_eq!(RunStatus::parse("done"), None);
    }
}
