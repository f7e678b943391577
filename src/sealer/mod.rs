//! The sealed log in the service (docs/adr/0018): the sealer that extends the Merkle tree from
//! the committed log, checkpoints and where they are published, proofs, and `verify`.
//!
//! The tree: leaf `position - 1` is the log entry at `position` (its bytes are
//! [`crate::seal::leaf::encode`]); a position that never held an entry is a hole leaf
//! ([`hole_leaf`]). The sealer runs in `serve`, off the webhook path: it reads committed
//! entries after the sealed size in pages (docs/adr/0029), each with its payload's SHA-256
//! rather than the payload (the leaf commits to that hash; PostgreSQL stores it as the entry
//! is appended, docs/adr/0027 and 0028), and writes the completed subtree hashes and the new
//! size in one transaction, conditional on the size it started from. `verify` recomputes every
//! hash from the payloads themselves.

pub mod bench;
pub mod cli;
pub mod keys;
pub mod proofs;
pub mod publish;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::seal::merkle::{self, Frontier, Hash, NodeId};
use crate::seal::note::{Checkpoint, SigningKey};
use crate::store::event_log::StoredEvent;
use crate::store::seal::{
    SealState, SealStore as _, Sealable, StoredCheckpoint, TreeExtension, VerificationFailure,
    VerificationRecord,
};
use crate::store::{Db, StorageError};

/// Leaves sealed per transaction at most.
pub const SEAL_CHUNK: u32 = 2_000;
/// How often the sealer looks for new entries. Often, so that each pass is small: a pass reads
/// and hashes every new entry, and at 2,000 events/s a pass a second was a burst that put the
/// slowest 1 % of webhooks at twice the median latency (README, "Performance"). (It read the
/// payloads too until ADR 27; on SQLite it still does.) A pass that finds nothing costs two
/// indexed reads (the sealed size, the entries after it).
pub const SEAL_EVERY: Duration = Duration::from_millis(200);
/// Leaves hashed between two yields to the runtime.
const YIELD_EVERY: usize = 64;
/// How many of the newest leaves the scheduled check recomputes.
pub const RECHECK_NEWEST: u64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The stored tree does not hold together (a missing frontier node, a root that does not
    /// match the stored state, an entry that cannot be encoded): sealing stops rather than
    /// build on it, and `verify` says what is wrong.
    #[error("the stored tree is inconsistent: {0}")]
    Inconsistent(String),
}

/// A signing key with the origin it signs for: what `serve` and the CLI need to seal.
#[derive(Clone)]
pub struct Sealing {
    pub key: Arc<SigningKey>,
    pub origin: String,
    pub checkpoint_dir: Option<std::path::PathBuf>,
    pub checkpoint_interval: Duration,
}

impl std::fmt::Debug for Sealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealing")
            .field("origin", &self.origin)
            .field("verifier", &self.key.verifier().to_string())
            .finish_non_exhaustive()
    }
}

impl Sealing {
    /// From the configuration, for `serve`: the embedded default's key file is created if it
    /// does not exist yet, and only while `db` holds no checkpoint (else [`keys::KeyError::Lost`]:
    /// the file of the key that signed them is missing). `None` when `LEDGER_SIGNING_KEY=off`.
    pub async fn for_serve(
        config: &crate::config::SealConfig,
        db: &Db,
    ) -> Result<Option<Sealing>, anyhow::Error> {
        match Self::existing(config) {
            Err(keys::KeyError::Missing { path }) => {
                if db.latest_checkpoint().await?.is_some() {
                    return Err(keys::KeyError::Lost { path }.into());
                }
                Ok(Self::load(config, keys::Missing::Generate)?)
            }
            loaded => Ok(loaded?),
        }
    }

    /// From the configuration, for `checkpoint` and `verify`: a missing key file is an error
    /// ([`keys::KeyError::Missing`]), never a new key, which would sign a second history or
    /// call every stored checkpoint forged.
    pub fn existing(config: &crate::config::SealConfig) -> Result<Option<Sealing>, keys::KeyError> {
        Self::load(config, keys::Missing::Refuse)
    }

    fn load(
        config: &crate::config::SealConfig,
        missing: keys::Missing,
    ) -> Result<Option<Sealing>, keys::KeyError> {
        Ok(
            keys::load(&config.key, &config.origin, missing)?.map(|key| Sealing {
                key: Arc::new(key),
                origin: config.origin.clone(),
                checkpoint_dir: config.checkpoint_dir.clone(),
                checkpoint_interval: config.checkpoint_interval,
            }),
        )
    }
}

/// The bytes of the hole leaf at `position`: a position the log skipped (an identity value
/// consumed by a conflicting or rolled-back append on PostgreSQL). Its tag differs from every
/// entry encoding's, so a hole can never be mistaken for an entry, nor one hole for another.
pub fn hole_leaf(position: u64) -> Vec<u8> {
    let mut bytes = HOLE_TAG.to_vec();
    bytes.extend_from_slice(&position.to_be_bytes());
    bytes
}

/// The first bytes of a hole leaf (see docs/seal-formats.md for the entry encoding's tag).
pub const HOLE_TAG: &[u8] = b"stripe-ledger/hole/v1\n";

/// The leaf hash of the entry (`position` is its own).
pub fn entry_leaf_hash(entry: &StoredEvent) -> Result<Hash, SealError> {
    let bytes = crate::seal::leaf::encode(entry).map_err(|e| {
        SealError::Inconsistent(format!("entry {} cannot be encoded: {e}", entry.position))
    })?;
    Ok(merkle::leaf_hash(&bytes))
}

/// [`entry_leaf_hash`] of an entry read for sealing, from its payload's hash.
fn sealable_leaf_hash(sealable: &Sealable) -> Result<Hash, SealError> {
    let entry = &sealable.entry;
    let bytes = crate::seal::leaf::encode_with_payload_hash(entry, &sealable.payload_sha256)
        .map_err(|e| {
            SealError::Inconsistent(format!("entry {} cannot be encoded: {e}", entry.position))
        })?;
    Ok(merkle::leaf_hash(&bytes))
}

/// The frontier of the stored tree, checked against the stored root.
pub async fn stored_frontier(db: &Db, state: &SealState) -> Result<Frontier, SealError> {
    // Highest level first, the order `Frontier::from_nodes` takes.
    let ids = merkle::frontier_ids(state.size);
    let nodes = db.fetch_nodes(&ids).await?;
    let roots = ids
        .iter()
        .map(|id| {
            nodes.get(id).copied().ok_or_else(|| {
                SealError::Inconsistent(format!("the stored node {id:?} is missing"))
            })
        })
        .collect::<Result<Vec<Hash>, _>>()?;
    let frontier = Frontier::from_nodes(state.size, roots)
        .map_err(|e| SealError::Inconsistent(e.to_string()))?;
    if frontier.root() != state.root {
        return Err(SealError::Inconsistent(format!(
            "the stored nodes of size {} do not hash to the stored root",
            state.size
        )));
    }
    Ok(frontier)
}

/// One sealing transaction: up to `chunk` leaves after the sealed size. Returns the leaves
/// added (0 when caught up, or when another sealer moved first).
///
/// The entries are read [`READ_PAGE`] at a time, with a yield to the runtime after each page
/// and every [`YIELD_EVERY`] leaves: decoding a thousand rows in one go held the runtime's
/// thread for milliseconds, and every webhook in flight waited for it.
pub async fn seal_once(db: &Db, chunk: u32) -> Result<u64, SealError> {
    let state = db.seal_state().await?;
    let mut asked = READ_PAGE.min(chunk);
    let mut page = db.sealable_after(to_i64(state.size), asked).await?;
    if page.is_empty() {
        return Ok(0);
    }
    let mut frontier = stored_frontier(db, &state).await?;
    let mut nodes: Vec<(NodeId, Hash)> = Vec::with_capacity(page.len() * 2);
    loop {
        let whole = push_page(&mut frontier, &mut nodes, &page, state.size, chunk).await?;
        let sealed = u32::try_from(frontier.size() - state.size).unwrap_or(chunk);
        // Caught up (a short page), or the chunk is full.
        if !whole || page.len() < asked as usize || sealed >= chunk {
            break;
        }
        tokio::task::yield_now().await;
        asked = READ_PAGE.min(chunk - sealed);
        page = db.sealable_after(to_i64(frontier.size()), asked).await?;
        if page.is_empty() {
            break;
        }
    }
    let extension = TreeExtension {
        from_size: state.size,
        to_size: frontier.size(),
        root: frontier.root(),
        nodes: &nodes,
    };
    if db.extend_tree(&extension).await? {
        Ok(frontier.size() - state.size)
    } else {
        Ok(0)
    }
}

/// Entries the sealer reads per statement.
const READ_PAGE: u32 = 128;

/// Pushes a page of entries (and the holes before each) onto `frontier`, collecting the new
/// nodes. Returns whether every entry of the page went in; an entry that would take the pass
/// past `chunk` leaves after `from` stays out, for the next pass.
async fn push_page(
    frontier: &mut Frontier,
    nodes: &mut Vec<(NodeId, Hash)>,
    page: &[Sealable],
    from: u64,
    chunk: u32,
) -> Result<bool, SealError> {
    for (i, entry) in page.iter().enumerate() {
        if i % YIELD_EVERY == YIELD_EVERY - 1 {
            // Encoding and hashing a large pass's leaves takes milliseconds: let the webhooks
            // queued behind it on this thread run in between.
            tokio::task::yield_now().await;
        }
        let position = u64::try_from(entry.entry.position)
            .map_err(|_| SealError::Inconsistent("a negative position".into()))?;
        // Below a visible position, a missing one never existed (appends are serialised; a
        // later page is read in a later snapshot, which sees at least as much).
        while frontier.size() + 1 < position && frontier.size() - from < u64::from(chunk) {
            let hole = hole_leaf(frontier.size() + 1);
            nodes.extend(frontier.push(merkle::leaf_hash(&hole)));
        }
        if frontier.size() + 1 != position || frontier.size() - from >= u64::from(chunk) {
            return Ok(false); // the chunk filled up; the entry goes in the next pass
        }
        nodes.extend(frontier.push(sealable_leaf_hash(entry)?));
    }
    Ok(true)
}

/// Seals until caught up with the committed log. Returns the sealed size.
///
/// A pass that sealed less than a full chunk has reached what was committed when it read, so
/// the loop stops there: under steady ingestion it would otherwise chase every new batch with
/// a small transaction of its own (on SQLite, one more fsync on ingestion's single writer).
pub async fn seal_all(db: &Db) -> Result<u64, SealError> {
    while seal_once(db, SEAL_CHUNK).await? >= u64::from(SEAL_CHUNK) {}
    Ok(db.seal_state().await?.size)
}

/// Signs, stores and publishes a checkpoint of the sealed tree if it grew since the latest
/// one. Returns the latest checkpoint (new or not); `None` while the tree is empty.
pub async fn checkpoint(
    db: &Db,
    sealing: &Sealing,
    now: i64,
) -> Result<Option<StoredCheckpoint>, SealError> {
    let state = db.seal_state().await?;
    let latest = db.latest_checkpoint().await?;
    if state.size == 0 || latest.as_ref().is_some_and(|c| c.size >= state.size) {
        // Nothing new to sign; a write to CHECKPOINT_DIR that failed before is tried again.
        if let (Some(dir), Some(latest)) = (&sealing.checkpoint_dir, &latest) {
            if !publish::is_written(dir, latest) {
                publish_note(dir, latest, db).await;
            }
        }
        return Ok(latest);
    }
    let body = Checkpoint {
        origin: sealing.origin.clone(),
        size: state.size,
        root: state.root,
    };
    let stored = StoredCheckpoint {
        size: state.size,
        root: state.root,
        origin: sealing.origin.clone(),
        note: sealing.key.sign(&body),
        verifier_key: sealing.key.verifier().to_string(),
        signed_at: now,
    };
    let stored = if db.insert_checkpoint(&stored).await? {
        stored
    } else {
        // Another instance signed this size first: its checkpoint is the one of record.
        db.checkpoint_at(state.size)
            .await?
            .ok_or_else(|| SealError::Inconsistent("a checkpoint vanished".into()))?
    };
    if let Some(dir) = &sealing.checkpoint_dir {
        publish_note(dir, &stored, db).await;
    }
    tracing::info!(size = stored.size, "checkpoint signed");
    Ok(Some(stored))
}

/// Writes the checkpoint to `CHECKPOINT_DIR`; a failure is logged (it is stored in the database
/// either way, and the next interval tries again while it is the latest).
async fn publish_note(dir: &std::path::Path, checkpoint: &StoredCheckpoint, db: &Db) {
    if let Err(e) = publish::write_note(dir, checkpoint, db).await {
        tracing::error!(dir = %dir.display(), error = %e, "could not write the checkpoint to CHECKPOINT_DIR");
    }
}

pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The sealer of `serve`: seals every [`SEAL_EVERY`], and every checkpoint interval signs a
/// checkpoint (when the tree grew) and verifies the newest entries again.
pub fn spawn(
    db: Db,
    sealing: Sealing,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut seal = tokio::time::interval(SEAL_EVERY);
        let mut sign = tokio::time::interval(sealing.checkpoint_interval);
        seal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        sign.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        sign.tick().await; // the first tick is immediate; sign after one interval
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                _ = seal.tick() => {
                    if let Err(e) = seal_all(&db).await {
                        report(&metrics, "sealing failed", &e);
                    }
                }
                _ = sign.tick() => {
                    if let Err(e) = checkpoint(&db, &sealing, chrono::Utc::now().timestamp()).await {
                        report(&metrics, "checkpoint failed", &e);
                    }
                    let now = chrono::Utc::now().timestamp();
                    scheduled_recheck(&db, &sealing, &metrics, now).await;
                }
            }
        }
    })
}

/// The scheduled check: re-verifies the newest [`RECHECK_NEWEST`] sealed entries and the
/// latest checkpoint, and records the outcome (the console's "last verification"), besides the
/// metric and the log line, so it outlives the process and is visible to every instance.
pub async fn scheduled_recheck(db: &Db, sealing: &Sealing, metrics: &Metrics, now: i64) {
    let recheck = match verify::recheck_newest(db, &sealing.key.verifier(), RECHECK_NEWEST).await {
        Ok(recheck) => recheck,
        Err(e) => return report(metrics, "sealed log verification could not run", &e),
    };
    if let Some(finding) = &recheck.finding {
        metrics.seal_verify_failed();
        tracing::error!(kind = %finding.kind, position = finding.position, detail = %finding.detail, "sealed log verification failed");
    }
    let record = VerificationRecord {
        checked_at: now,
        from_position: recheck.from_position,
        to_position: recheck.to_position,
        tree_size: recheck.tree_size,
        checkpoint_size: recheck.checkpoint_size,
        failure: recheck.finding.map(|f| VerificationFailure {
            kind: f.kind.to_string(),
            position: f.position,
            detail: f.detail,
        }),
    };
    if let Err(e) = db.record_verification(&record).await {
        report(metrics, "recording the verification failed", &e.into());
    }
}

fn report(metrics: &Metrics, what: &str, e: &SealError) {
    match e {
        SealError::Storage(e) if e.is_transient() => {
            tracing::warn!(error = %crate::store::error::chain(e), "{what}; will retry");
        }
        SealError::Storage(e) => {
            tracing::error!(error = %crate::store::error::chain(e), "{what}");
        }
        SealError::Inconsistent(detail) => {
            metrics.seal_verify_failed();
            tracing::error!(%detail, "{what}: the stored tree is inconsistent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_tree_root_is_the_one_migration_0007_stores() {
        let stored = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let root = Frontier::from_nodes(0, vec![]).unwrap().root();
        let hex: String = root.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, stored);
    }
}
