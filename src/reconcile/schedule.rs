//! Scheduled reconciliation: `serve` runs reconcile (repairing when `RECONCILE_REPAIR=true`)
//! and sync-events every `RECONCILE_INTERVAL`, one instance at a time (a lease row), and
//! records each run.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::{reconcile, sync_events};
use crate::store::Db;
use crate::store::StorageError;
use crate::stripe::client::StripeClient;
use crate::stripe::keys::Mode;

const LEASE: &str = "reconcile";

/// Takes the named lease until `expires_at` if it is free (or expired). Exactly one of several
/// racing instances gets it: the upsert's WHERE is evaluated under the row lock.
pub async fn acquire_lease(
    db: &Db,
    name: &str,
    holder: &str,
    now: i64,
    expires_at: i64,
) -> Result<bool, StorageError> {
    const SQL: &str = "INSERT INTO job_leases (name, holder, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
         WHERE job_leases.expires_at <= $4 RETURNING holder";
    let got: Option<String> = match db {
        Db::Postgres(crate::store::PgStore { pool }) => {
            sqlx::query_scalar(SQL)
                .bind(name)
                .bind(holder)
                .bind(expires_at)
                .bind(now)
                .fetch_optional(pool)
                .await?
        }
        Db::Sqlite(db) => {
            sqlx::query_scalar(SQL)
                .bind(name)
                .bind(holder)
                .bind(expires_at)
                .bind(now)
                .fetch_optional(&db.write)
                .await?
        }
    };
    Ok(got.is_some())
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: String,
    pub repair: bool,
    pub drift_count: Option<i32>,
    pub report: Option<Value>,
    pub error: Option<String>,
}

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
    if !acquire_lease(db, LEASE, holder, now.timestamp(), expires).await? {
        return Ok(None);
    }
    let id = start_run(db, now, repair).await?;
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
                "succeeded",
                Some(drift.drift.len() as i32),
                Some(report),
                None,
            )
            .await?;
        }
        Err(error) => {
            tracing::error!(run = id, %error, "scheduled reconciliation failed");
            finish_run(db, id, "failed", None, None, Some(error)).await?;
        }
    }
    Ok(Some(id))
}

fn ts(db: &Db, t: DateTime<Utc>) -> Value {
    match db {
        Db::Postgres(_) => Value::Null,
        Db::Sqlite(_) => Value::String(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
    }
}

async fn start_run(db: &Db, now: DateTime<Utc>, repair: bool) -> Result<i64, StorageError> {
    const SQL: &str = "INSERT INTO reconciliation_runs (started_at, status, repair) \
                       VALUES ($1, 'running', $2) RETURNING id";
    Ok(match db {
        Db::Postgres(crate::store::PgStore { pool }) => {
            sqlx::query_scalar(SQL)
                .bind(now)
                .bind(repair)
                .fetch_one(pool)
                .await?
        }
        Db::Sqlite(sdb) => {
            let t = ts(db, now);
            sqlx::query_scalar(SQL)
                .bind(t.as_str().unwrap_or_default().to_owned())
                .bind(repair)
                .fetch_one(&sdb.write)
                .await?
        }
    })
}

async fn finish_run(
    db: &Db,
    id: i64,
    status: &str,
    drift_count: Option<i32>,
    report: Option<Value>,
    error: Option<String>,
) -> Result<(), StorageError> {
    const SQL: &str = "UPDATE reconciliation_runs SET finished_at = $1, status = $2, \
                       drift_count = $3, report = $4, error = $5 WHERE id = $6";
    let now = Utc::now();
    let report = report.map(|r| r.to_string());
    match db {
        Db::Postgres(crate::store::PgStore { pool }) => {
            sqlx::query(SQL)
                .bind(now)
                .bind(status)
                .bind(drift_count)
                .bind(report)
                .bind(error)
                .bind(id)
                .execute(pool)
                .await?;
        }
        Db::Sqlite(sdb) => {
            let t = ts(db, now);
            sqlx::query(SQL)
                .bind(t.as_str().unwrap_or_default().to_owned())
                .bind(status)
                .bind(drift_count)
                .bind(report)
                .bind(error)
                .bind(id)
                .execute(&sdb.write)
                .await?;
        }
    }
    Ok(())
}

type RunRow = (
    i64,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    String,
    bool,
    Option<i32>,
    Option<String>,
    Option<String>,
);

fn run_of(row: RunRow, with_report: bool) -> Run {
    let (id, started_at, finished_at, status, repair, drift_count, report, error) = row;
    Run {
        id,
        started_at,
        finished_at,
        status,
        repair,
        drift_count,
        report: if with_report {
            report.and_then(|r| serde_json::from_str(&r).ok())
        } else {
            None
        },
        error,
    }
}

const RUN_COLUMNS: &str = "id, started_at, finished_at, status, repair, drift_count, report, error";

/// The latest runs, newest first.
pub async fn runs(db: &Db, limit: u32) -> Result<Vec<Run>, StorageError> {
    let sql =
        format!("SELECT {RUN_COLUMNS} FROM reconciliation_runs ORDER BY id DESC LIMIT {limit}");
    let rows: Vec<RunRow> = match db {
        Db::Postgres(crate::store::PgStore { pool }) => {
            sqlx::query_as(&sql).fetch_all(pool).await?
        }
        Db::Sqlite(db) => sqlx::query_as(&sql).fetch_all(&db.read).await?,
    };
    Ok(rows.into_iter().map(|r| run_of(r, false)).collect())
}

/// One page of runs, newest first, older than `before_id`; the second value is the id to
/// continue before when there is more.
pub async fn runs_page(
    db: &Db,
    before_id: Option<i64>,
    limit: u32,
) -> Result<(Vec<Run>, Option<i64>), StorageError> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM reconciliation_runs WHERE id < $1 ORDER BY id DESC LIMIT {}",
        u64::from(limit) + 1
    );
    let before = before_id.unwrap_or(i64::MAX);
    let rows: Vec<RunRow> = match db {
        Db::Postgres(crate::store::PgStore { pool }) => {
            sqlx::query_as(&sql).bind(before).fetch_all(pool).await?
        }
        Db::Sqlite(db) => {
            sqlx::query_as(&sql)
                .bind(before)
                .fetch_all(&db.read)
                .await?
        }
    };
    let mut runs: Vec<Run> = rows.into_iter().map(|r| run_of(r, false)).collect();
    let more = runs.len() > limit as usize;
    runs.truncate(limit as usize);
    let next = if more {
        runs.last().map(|r| r.id)
    } else {
        None
    };
    Ok((runs, next))
}

pub async fn run(db: &Db, id: i64) -> Result<Option<Run>, StorageError> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM reconciliation_runs WHERE id = $1");
    let row: Option<RunRow> = match db {
        Db::Postgres(crate::store::PgStore { pool }) => {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        }
        Db::Sqlite(db) => {
            sqlx::query_as(&sql)
                .bind(id)
                .fetch_optional(&db.read)
                .await?
        }
    };
    Ok(row.map(|r| run_of(r, true)))
}
