//! Brings the read models up to the end of the log: after a crash between append and
//! projection, for entries appended by other sources, and as a safety net for everything else.
//!
//! It tails the log by position, which is safe because appends are serialised (see
//! `event_log::APPEND_LOCK`), and skips entries that ingestion has already projected (they are
//! listed in `projected_positions` until the checkpoint passes them). Re-projecting an entry
//! changes nothing, so an entry whose projection is still in flight may be projected twice,
//! harmlessly; several instances may run it at once.

use super::{project_each, Entry};
use crate::event_log::{self};
use crate::store::Db;
use crate::store::StorageError;

const CHECKPOINT: &str = "catch_up";
const CHUNK: u32 = 500;

#[derive(Debug, Clone, Default)]
pub struct CatchUpReport {
    pub projected: usize,
    pub failed: usize,
    pub position: i64,
}

pub async fn catch_up(db: &Db) -> Result<CatchUpReport, StorageError> {
    let mut report = CatchUpReport {
        position: checkpoint(db).await?,
        ..Default::default()
    };
    loop {
        let stored = event_log::read_after(db, report.position, CHUNK).await?;
        let Some(last) = stored.last().map(|e| e.position) else {
            break;
        };
        let covered = projected_between(db, report.position, last).await?;
        let entries: Vec<Entry> = stored
            .iter()
            .filter(|e| covered.binary_search(&e.position).is_err())
            .map(Entry::from)
            .collect();
        for result in project_each(db, &entries).await {
            match result {
                Ok(()) => report.projected += 1,
                Err(super::ProjectError::Storage(e)) => return Err(e),
                // Dead-lettered; the retrier takes it from here.
                Err(super::ProjectError::Event { .. }) => report.failed += 1,
            }
        }
        save_checkpoint(db, last).await?;
        report.position = last;
    }
    Ok(report)
}

/// Positions in (after, upto] that ingestion has projected, sorted.
async fn projected_between(db: &Db, after: i64, upto: i64) -> Result<Vec<i64>, StorageError> {
    const SQL: &str = "SELECT position FROM projected_positions \
                       WHERE position > $1 AND position <= $2 ORDER BY position";
    Ok(match db {
        Db::Postgres(crate::store::PgStore { pool }) => {
            sqlx::query_scalar(SQL)
                .bind(after)
                .bind(upto)
                .fetch_all(pool)
                .await?
        }
        Db::Sqlite(db) => {
            sqlx::query_scalar(SQL)
                .bind(after)
                .bind(upto)
                .fetch_all(&db.read)
                .await?
        }
    })
}

pub async fn checkpoint(db: &Db) -> Result<i64, StorageError> {
    const SQL: &str = "SELECT position FROM projection_checkpoints WHERE name = $1";
    let found: Option<i64> = match db {
        Db::Postgres(crate::store::PgStore { pool }) => {
            sqlx::query_scalar(SQL)
                .bind(CHECKPOINT)
                .fetch_optional(pool)
                .await?
        }
        Db::Sqlite(db) => {
            sqlx::query_scalar(SQL)
                .bind(CHECKPOINT)
                .fetch_optional(&db.read)
                .await?
        }
    };
    Ok(found.unwrap_or(0))
}

async fn save_checkpoint(db: &Db, position: i64) -> Result<(), StorageError> {
    const FORGET: &str = "DELETE FROM projected_positions WHERE position <= $1";
    match db {
        Db::Postgres(crate::store::PgStore { pool }) => {
            sqlx::query(FORGET).bind(position).execute(pool).await?;
            sqlx::query(
                "INSERT INTO projection_checkpoints (name, position) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET position = GREATEST(projection_checkpoints.position, excluded.position)",
            )
            .bind(CHECKPOINT)
            .bind(position)
            .execute(pool)
            .await?;
        }
        Db::Sqlite(db) => {
            sqlx::query(FORGET)
                .bind(position)
                .execute(&db.write)
                .await?;
            sqlx::query(
                "INSERT INTO projection_checkpoints (name, position) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET position = MAX(projection_checkpoints.position, excluded.position)",
            )
            .bind(CHECKPOINT)
            .bind(position)
            .execute(&db.write)
            .await?;
        }
    }
    Ok(())
}
