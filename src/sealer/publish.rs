//! Checkpoints written to `CHECKPOINT_DIR`: one file per checkpoint, `<size>.note`, and
//! `latest.note`, each written to a temporary file, synced and renamed, so a reader (or a crash)
//! never sees half a note.

use std::io::Write as _;
use std::path::Path;

use crate::store::seal::StoredCheckpoint;

/// Whether `checkpoint` is in `dir` as it should be: `<size>.note` and `latest.note` both hold
/// its note (either write may have failed, or a reused directory hold another log's).
pub fn is_written(dir: &Path, checkpoint: &StoredCheckpoint) -> bool {
    let holds =
        |name: &str| std::fs::read_to_string(dir.join(name)).is_ok_and(|t| t == checkpoint.note);
    holds(&format!("{}.note", checkpoint.size)) && holds("latest.note")
}

pub fn write_note(dir: &Path, checkpoint: &StoredCheckpoint) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_atomically(dir, &format!("{}.note", checkpoint.size), &checkpoint.note)?;
    write_atomically(dir, "latest.note", &checkpoint.note)
}

fn write_atomically(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    let temp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, dir.join(name))?;
        // The rename itself is durable once the directory is synced.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}
