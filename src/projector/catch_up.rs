//! Brings the read models up to the end of the log: after a crash between append and
//! projection, for entries appended by other sources, and as a safety net for everything else.
//!
//! It tails the log by position, which is safe because appends are serialised (see
//! `event_log::APPEND_LOCK`), chunk by chunk of positions, and reads whole only the entries
//! ingestion has not marked projected (they are listed in `projected_positions` until the
//! checkpoint passes them): in a healthy log, none. Re-projecting an entry
//! changes nothing, so an entry whose projection is still in flight may be projected twice,
//! harmlessly; several instances may run it at once.

use super::{project_each, Entry};
use crate::store::read_models::ReadModelStore as _;
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
        let chunk = db.unprojected_after(report.position, CHUNK).await?;
        let Some(last) = chunk.through else {
            break;
        };
        let entries: Vec<Entry> = chunk.entries.iter().map(Entry::from).collect();
        for result in project_each(db, &entries).await {
            match result {
                Ok(()) => report.projected += 1,
                Err(super::ProjectError::Storage(e)) => return Err(e),
                // Dead-lettered; the retrier takes it from here.
                Err(super::ProjectError::Event { .. }) => report.failed += 1,
            }
        }
        db.save_projection_checkpoint(CHECKPOINT, last).await?;
        report.position = last;
    }
    Ok(report)
}

async fn checkpoint(db: &Db) -> Result<i64, StorageError> {
    Ok(db.projection_checkpoint(CHECKPOINT).await?.unwrap_or(0))
}

/// Moves the catch-up checkpoint to `position` without projecting anything: only for a log
/// whose entries up to there are known to be projected into the active generation (the
/// bench's prefilled database, right after a rebuild that skipped none of them).
pub async fn skip_catch_up_to(db: &Db, position: i64) -> Result<(), StorageError> {
    db.save_projection_checkpoint(CHECKPOINT, position).await
}
