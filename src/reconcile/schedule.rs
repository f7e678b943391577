//! Scheduled reconciliation: `serve` runs reconcile (repairing when `RECONCILE_REPAIR=true`)
//! and sync-events every `RECONCILE_INTERVAL`, one instance at a time (a lease row), and
//! records each run.

use chrono::Utc;
use serde_json::{json, Value};

use super::{reconcile, sync_events};
use crate::store::jobs::{FinishedRun, JobStore as _, RunStatus};
use crate::store::Db;
use crate::store::StorageError;
use crate::stripe::client::StripeClient;
use crate::stripe::keys::Mode;

pub use crate::store::jobs::Run;

const LEASE: &str = "reconcile";

/// One scheduled run, if this instance wins the lease for the interval. Returns its id.
pub async fn run_if_due(
    db: &Db,
    client: &StripeClient,
    mode: Mode,
    repair: bool,
    interval_secs: i64,
    holder: &str,
) -> Result<Option<i64>, StorageError> {
    let now = Utc::now();
    // Slightly shorter than the interval, so the next tick (of any instance) finds it free.
    let expires = now.timestamp() + (interval_secs * 9 / 10).max(1);
    if !db
        .lease_acquire(LEASE, holder, now.timestamp(), expires)
        .await?
    {
        return Ok(None);
    }
    let id = db.reconcile_run_start(now, repair).await?;
    let outcome = async {
        let drift = reconcile(db, client, repair)
            .await
            .map_err(|e| e.to_string())?;
        let since = now.timestamp() - (2 * interval_secs).min(sync_events::RETENTION_SECS - 60);
        let synced = sync_events(db, client, mode, since, now.timestamp())
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((drift, synced))
    }
    .await;
    match outcome {
        Ok((drift, synced)) => {
            if !drift.drift.is_empty() {
                tracing::warn!(
                    run = id,
                    drift = drift.drift.len(),
                    repaired = drift.repaired,
                    "scheduled reconciliation found drift"
                );
            }
            let report = json!({"reconcile": drift, "sync_events": synced});
            finish_run(
                db,
                id,
                RunStatus::Succeeded,
                Some(drift.drift.len() as i32),
                Some(&report),
                None,
            )
            .await?;
        }
        Err(error) => {
            tracing::error!(run = id, %error, "scheduled reconciliation failed");
            finish_run(db, id, RunStatus::Failed, None, None, Some(&error)).await?;
        }
    }
    Ok(Some(id))
}

/// A reconcile report (no repair, no gap fill) run now, on an operator's request, recorded as a
/// run like the scheduled ones (it takes no lease: it changes nothing). Returns the run's id
/// and the number of drift rows, or why the run failed (recorded on the run too).
pub async fn report_now(
    db: &Db,
    client: &StripeClient,
) -> Result<(i64, Result<usize, String>), StorageError> {
    let id = db.reconcile_run_start(Utc::now(), false).await?;
    match reconcile(db, client, false).await {
        Ok(report) => {
            let drift = report.drift.len();
            let stored = json!({"reconcile": report});
            let count = i32::try_from(drift).unwrap_or(i32::MAX);
            finish_run(
                db,
                id,
                RunStatus::Succeeded,
                Some(count),
                Some(&stored),
                None,
            )
            .await?;
            Ok((id, Ok(drift)))
        }
        Err(e) => {
            let error = e.to_string();
            tracing::error!(run = id, %error, "reconcile report failed");
            finish_run(db, id, RunStatus::Failed, None, None, Some(&error)).await?;
            Ok((id, Err(error)))
        }
    }
}

async fn finish_run(
    db: &Db,
    id: i64,
    status: RunStatus,
    drift_count: Option<i32>,
    report: Option<&Value>,
    error: Option<&str>,
) -> Result<(), StorageError> {
    let finished = FinishedRun {
        finished_at: Utc::now(),
        status,
        drift_count,
        report,
        error,
    };
    db.reconcile_run_finish(id, &finished).await
}

/// One page of runs, newest first, older than `before_id`; the second value is the id to
/// continue before when there is more.
pub async fn runs_page(
    db: &Db,
    before_id: Option<i64>,
    limit: u32,
) -> Result<(Vec<Run>, Option<i64>), StorageError> {
    let before = before_id.unwrap_or(i64::MAX);
    let mut runs = db.reconcile_runs(before, i64::from(limit) + 1).await?;
    let more = runs.len() > limit as usize;
    runs.truncate(limit as usize);
    let next = if more {
        runs.last().map(|r| r.id)
    } else {
        None
    };
    Ok((runs, next))
}

/// One run with its full report.
pub async fn run(db: &Db, id: i64) -> Result<Option<Run>, StorageError> {
    db.reconcile_run(id).await
}
