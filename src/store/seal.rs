//! The sealed-log concern: the Merkle tree over the event log (complete-subtree hashes and the
//! sealed size) and the signed checkpoints of it (docs/adr/0018).
//!
//! [`SealStore`] lists the operations; both backends implement it (`postgres/seal.rs`,
//! `sqlite/seal.rs`, the identical statements in `common/seal.rs`) and [`Db`] dispatches.
//! Nodes and checkpoints are only ever inserted (triggers refuse the rest); the state row only
//! grows, and moves in the same transaction as the nodes it accounts for.

use std::collections::HashMap;

use super::event_log::StoredEvent;
use super::{Db, StorageError};
use crate::seal::merkle::{Hash, NodeId};

/// How far the tree reaches: leaves `0..size`, and the root over them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealState {
    pub size: u64,
    pub root: Hash,
}

/// A log entry as the sealer hashes it: its columns (`entry.payload` is `None`) and the SHA-256
/// of its stored payload, which is all of the payload a leaf commits to (docs/adr/0027).
#[derive(Debug, Clone)]
pub struct Sealable {
    pub entry: StoredEvent,
    pub payload_sha256: [u8; 32],
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub root: Hash,
    pub origin: String,
    /// The signed note, exactly as published.
    pub note: String,
    /// The verifier key string of the signer (public).
    pub verifier_key: String,
    /// Unix seconds.
    pub signed_at: i64,
}

/// What one sealing pass adds: every node completed by leaves `from_size..to_size`.
#[derive(Debug)]
pub struct TreeExtension<'a> {
    pub from_size: u64,
    pub to_size: u64,
    pub root: Hash,
    pub nodes: &'a [(NodeId, Hash)],
}

/// How long successful re-checks are kept: 30 days of them (one a checkpoint interval), so the
/// table stays small while failed ones, the evidence, are kept for good.
pub const KEEP_OK_VERIFICATIONS_SECS: i64 = 30 * 86_400;

/// The outcome of one scheduled re-check of the sealed log (`seal_verifications`, migration
/// 0012): which positions it re-hashed and what it found first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationRecord {
    /// Unix seconds.
    pub checked_at: i64,
    /// The positions re-read, `from_position..=to_position` (both 0 for an empty tree).
    pub from_position: u64,
    pub to_position: u64,
    /// The sealed size when it ran.
    pub tree_size: u64,
    /// The checkpoint whose signature and root were checked, if one was stored.
    pub checkpoint_size: Option<u64>,
    /// `None` when everything checked held.
    pub failure: Option<VerificationFailure>,
}

/// The first finding of a failed re-check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationFailure {
    /// A `TamperKind` spelling (`edited`, `missing`, ...): stored as text.
    pub kind: String,
    pub position: u64,
    pub detail: String,
}

/// Operations on the database handle. Dispatched statically through [`Db`], never `dyn`.
#[allow(async_fn_in_trait)] // static dispatch only, as for the other concerns
pub trait SealStore {
    /// The sealed size and root (size 0 and the empty root before the first pass).
    async fn seal_state(&self) -> Result<SealState, StorageError>;
    /// Log entries with `after < position`, oldest first, at most `limit`, each with its
    /// payload's SHA-256 instead of the payload.
    async fn sealable_after(&self, after: i64, limit: u32) -> Result<Vec<Sealable>, StorageError>;
    /// Log entries with `after < position <= up_to`, oldest first, with payloads.
    async fn entries_between(
        &self,
        after: i64,
        up_to: i64,
    ) -> Result<Vec<StoredEvent>, StorageError>;
    /// Writes the nodes and moves the state to `to_size`, in one transaction, if and only if
    /// the sealed size is still `from_size` (the state row is locked for the check). `false`
    /// when another sealer moved it first: nothing was written.
    async fn extend_tree(&self, extension: &TreeExtension<'_>) -> Result<bool, StorageError>;
    /// The stored hashes of `ids` (those that exist), in one query.
    async fn fetch_nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, StorageError>;
    /// Stores a checkpoint; `false` when one of that size exists already (kept as it is).
    async fn insert_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<bool, StorageError>;
    /// The checkpoint of the largest size.
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StorageError>;
    /// The checkpoint of exactly `size`.
    async fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StorageError>;
    /// Every checkpoint, smallest size first.
    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StorageError>;
    /// Appends the outcome of a scheduled re-check, and drops the successful ones older than
    /// [`KEEP_OK_VERIFICATIONS_SECS`] before it (failures are kept).
    async fn record_verification(&self, record: &VerificationRecord) -> Result<(), StorageError>;
    /// The most recently recorded re-check, if any ever ran.
    async fn latest_verification(&self) -> Result<Option<VerificationRecord>, StorageError>;
}

impl SealStore for Db {
    async fn seal_state(&self) -> Result<SealState, StorageError> {
        match self {
            Db::Postgres(s) => s.seal_state().await,
            Db::Sqlite(s) => s.seal_state().await,
        }
    }

    async fn sealable_after(&self, after: i64, limit: u32) -> Result<Vec<Sealable>, StorageError> {
        match self {
            Db::Postgres(s) => s.sealable_after(after, limit).await,
            Db::Sqlite(s) => s.sealable_after(after, limit).await,
        }
    }

    async fn entries_between(
        &self,
        after: i64,
        up_to: i64,
    ) -> Result<Vec<StoredEvent>, StorageError> {
        match self {
            Db::Postgres(s) => s.entries_between(after, up_to).await,
            Db::Sqlite(s) => s.entries_between(after, up_to).await,
        }
    }

    async fn extend_tree(&self, extension: &TreeExtension<'_>) -> Result<bool, StorageError> {
        match self {
            Db::Postgres(s) => s.extend_tree(extension).await,
            Db::Sqlite(s) => s.extend_tree(extension).await,
        }
    }

    async fn fetch_nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, StorageError> {
        match self {
            Db::Postgres(s) => s.fetch_nodes(ids).await,
            Db::Sqlite(s) => s.fetch_nodes(ids).await,
        }
    }

    async fn insert_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<bool, StorageError> {
        match self {
            Db::Postgres(s) => s.insert_checkpoint(checkpoint).await,
            Db::Sqlite(s) => s.insert_checkpoint(checkpoint).await,
        }
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StorageError> {
        match self {
            Db::Postgres(s) => s.latest_checkpoint().await,
            Db::Sqlite(s) => s.latest_checkpoint().await,
        }
    }

    async fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StorageError> {
        match self {
            Db::Postgres(s) => s.checkpoint_at(size).await,
            Db::Sqlite(s) => s.checkpoint_at(size).await,
        }
    }

    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StorageError> {
        match self {
            Db::Postgres(s) => s.checkpoints().await,
            Db::Sqlite(s) => s.checkpoints().await,
        }
    }

    async fn record_verification(&self, record: &VerificationRecord) -> Result<(), StorageError> {
        match self {
            Db::Postgres(s) => s.record_verification(record).await,
            Db::Sqlite(s) => s.record_verification(record).await,
        }
    }

    async fn latest_verification(&self) -> Result<Option<VerificationRecord>, StorageError> {
        match self {
            Db::Postgres(s) => s.latest_verification().await,
            Db::Sqlite(s) => s.latest_verification().await,
        }
    }
}

/// A size or index as the databases store it (BIGINT); sizes beyond `i64::MAX` cannot occur.
pub(crate) fn to_db(n: u64) -> Result<i64, StorageError> {
    i64::try_from(n).map_err(|_| StorageError::invalid(format!("{n} does not fit a BIGINT")))
}
