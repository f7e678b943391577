//! PostgreSQL implementation of the jobs concern (see `store::jobs`): the shared statements,
//! with timestamps bound as `timestamptz`; and [`ScratchServer`], the bench's scratch databases.

use chrono::{DateTime, Utc};
use sqlx::{Connection as _, PgConnection};

use super::PgStore;
use crate::store::common::jobs as sql;
use crate::store::jobs::*;
use crate::store::StorageError;

impl JobStore for PgStore {
    crate::store::common::jobs::job_store_same_on_both!(pool, pool);

    async fn reconcile_run_start(
        &self,
        started_at: DateTime<Utc>,
        repair: bool,
    ) -> Result<i64, StorageError> {
        Ok(sqlx::query_scalar(sql::RUN_START)
            .bind(started_at)
            .bind(repair)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn reconcile_run_finish(
        &self,
        id: i64,
        finished: &FinishedRun<'_>,
    ) -> Result<(), StorageError> {
        sqlx::query(sql::RUN_FINISH)
            .bind(finished.finished_at)
            .bind(finished.status.as_str())
            .bind(finished.drift_count)
            .bind(finished.report.map(|r| r.to_string()))
            .bind(finished.error)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// A connection to a PostgreSQL server on which `stripe-ledger bench` creates and drops its
/// throwaway databases (the server's maintenance database, not the service's own).
pub struct ScratchServer {
    conn: PgConnection,
}

impl ScratchServer {
    pub async fn connect(admin_url: &str) -> Result<ScratchServer, StorageError> {
        Ok(ScratchServer {
            conn: PgConnection::connect(admin_url).await?,
        })
    }

    pub async fn create_database(&mut self, name: &str) -> Result<(), StorageError> {
        let statement = format!("CREATE DATABASE {}", identifier(name)?);
        sqlx::query(&statement).execute(&mut self.conn).await?;
        Ok(())
    }

    /// Drops `name` even while something is still connected to it.
    pub async fn drop_database(&mut self, name: &str) -> Result<(), StorageError> {
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", identifier(name)?);
        sqlx::query(&statement).execute(&mut self.conn).await?;
        Ok(())
    }
}

/// A database name goes into the statement's text (DDL takes no parameters): only plain
/// lower-case identifiers are let through.
fn identifier(name: &str) -> Result<&str, StorageError> {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if plain && name.len() < 64 {
        Ok(name)
    } else {
        Err(StorageError::invalid(format!(
            "{name:?} is not a plain database name"
        )))
    }
}
