//! What the projector keeps besides the read models: dead letters. The storage itself (the
//! `read_models` generations, `projection_meta`, dead letters, checkpoints) is
//! `crate::store::read_models`; only the projector writes it.

pub use crate::store::read_models::DeadLetter;
use crate::store::read_models::ReadModelStore as _;
use crate::store::{Db, StorageError};

/// Records (or counts again) a projection failure, outside any failed transaction.
pub async fn record_dead_letter(
    db: &Db,
    event_id: &str,
    position: i64,
    error: &str,
) -> Result<(), StorageError> {
    db.record_dead_letter(event_id, position, error).await
}

/// Every dead letter, by log position.
pub async fn dead_letters(db: &Db) -> Result<Vec<DeadLetter>, StorageError> {
    db.dead_letters().await
}

/// One page of dead letters by log position, after `after_position`; the second value is the
/// position to continue after when there is more.
pub async fn dead_letters_page(
    db: &Db,
    after_position: Option<i64>,
    limit: u32,
) -> Result<(Vec<DeadLetter>, Option<i64>), StorageError> {
    let mut letters = db
        .dead_letters_after(after_position.unwrap_or(-1), limit)
        .await?;
    let more = letters.len() > limit as usize;
    letters.truncate(limit as usize);
    let next = if more {
        letters.last().map(|d| d.position)
    } else {
        None
    };
    Ok((letters, next))
}
