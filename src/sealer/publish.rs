//! Checkpoints written to `CHECKPOINT_DIR`: one file per checkpoint, `<size>.note`, and
//! `latest.note`, each written to a temporary file, synced and renamed, so a reader (or a crash)
//! never sees half a note.
//!
//! Several instances may share the directory, and each writes at its own pace: an instance
//! that signed a checkpoint could rename it over a newer one another instance had just written,
//! and a monitor reading `latest.note` would see the log shrink. So `latest.note` is always
//! the database's latest checkpoint, read while holding an exclusive lock on `.latest.lock`:
//! whoever writes last read last, after every earlier writer's checkpoint was stored.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::store::seal::{SealStore as _, StoredCheckpoint};
use crate::store::{Db, StorageError};

const LATEST: &str = "latest.note";
const LOCK: &str = ".latest.lock";

/// How long a writer waits for another instance's `latest.note` write before giving up (and
/// trying again at the next interval).
const LOCK_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("reading the latest checkpoint: {0}")]
    Storage(#[from] StorageError),
    #[error("another instance held {LOCK} for {LOCK_WAIT:?}")]
    Busy,
}

/// Whether `checkpoint` is in `dir` as it should be: `<size>.note` and `latest.note` both hold
/// its note (either write may have failed, or a reused directory hold another log's).
/// `checkpoint` is the database's latest.
pub fn is_written(dir: &Path, checkpoint: &StoredCheckpoint) -> bool {
    let holds =
        |name: &str| std::fs::read_to_string(dir.join(name)).is_ok_and(|t| t == checkpoint.note);
    holds(&format!("{}.note", checkpoint.size)) && holds(LATEST)
}

/// Writes `<size>.note` for `checkpoint`, and `latest.note` for the database's latest
/// checkpoint (`checkpoint` itself unless another instance stored a larger one meanwhile).
pub async fn write_note(
    dir: &Path,
    checkpoint: &StoredCheckpoint,
    db: &Db,
) -> Result<(), PublishError> {
    let (owned_dir, name, note) = (
        dir.to_owned(),
        format!("{}.note", checkpoint.size),
        checkpoint.note.clone(),
    );
    off_the_runtime(move || {
        std::fs::create_dir_all(&owned_dir)?;
        write_atomically(&owned_dir, &name, &note)
    })
    .await?;
    let lock = locked(dir).await?;
    let result = write_latest(dir, checkpoint, db).await;
    // Closing the file releases the lock too; unlocking says where the critical section ends.
    if let Some(lock) = lock {
        let _ = lock.unlock();
    }
    result
}

async fn write_latest(
    dir: &Path,
    checkpoint: &StoredCheckpoint,
    db: &Db,
) -> Result<(), PublishError> {
    let latest = db.latest_checkpoint().await?;
    let note = match &latest {
        Some(latest) if latest.size > checkpoint.size => &latest.note,
        _ => &checkpoint.note,
    };
    if std::fs::read_to_string(dir.join(LATEST)).is_ok_and(|t| t == *note) {
        return Ok(());
    }
    let (dir, note) = (dir.to_owned(), note.clone());
    Ok(off_the_runtime(move || write_atomically(&dir, LATEST, &note)).await?)
}

/// Runs file writes and their fsyncs on the blocking pool: `serve` has one runtime worker on a
/// small machine (ADR 26), and every webhook in flight would wait for the disk.
async fn off_the_runtime(
    write: impl FnOnce() -> std::io::Result<()> + Send + 'static,
) -> std::io::Result<()> {
    tokio::task::spawn_blocking(write)
        .await
        .map_err(std::io::Error::other)?
}

/// The directory's lock, taken without blocking the runtime's thread while another instance
/// holds it. `None` on a filesystem that cannot lock files (some network and FUSE mounts):
/// the notes are still written, as before the lock existed, since a checkpoint kept outside
/// the database matters more than the order of two instances' writes.
async fn locked(dir: &Path) -> Result<Option<File>, PublishError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK))?;
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => return Err(PublishError::Busy),
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::warn!(dir = %dir.display(), error = %e, "CHECKPOINT_DIR cannot lock files; latest.note is written without the lock");
                return Ok(None);
            }
        }
    }
}

fn write_atomically(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    let temp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, dir.join(name))?;
        // The rename itself is durable once the directory is synced.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}
