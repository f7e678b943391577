//! Inclusion and consistency proofs from the stored tree: each costs one read of the entry (for
//! inclusion), one of the O(log n) nodes it needs, and one of the checkpoint.

use base64::Engine as _;
use serde::Serialize;

use crate::seal::merkle;
use crate::store::event_log::{EventLogStore as _, StoredEvent};
use crate::store::seal::{SealStore as _, StoredCheckpoint};
use crate::store::{Db, StorageError};

/// Why a proof cannot be given; each is a stable API code.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("no event with that id in the log")]
    UnknownEvent,
    #[error("no checkpoint has been signed yet")]
    NoCheckpoint,
    #[error("{0}")]
    NotYetSealed(String),
    #[error("{0}")]
    BadSize(String),
    /// The entry no longer matches its sealed leaf: the log was changed after sealing.
    #[error("the entry does not match its sealed leaf; run `stripe-ledger verify`")]
    LeafMismatch,
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the stored tree cannot give this proof: {0}")]
    Tree(String),
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[derive(Debug, Clone, Serialize)]
pub struct InclusionProof {
    pub event_id: String,
    pub position: i64,
    /// `position - 1`.
    pub leaf_index: u64,
    pub tree_size: u64,
    /// The leaf bytes (docs/seal-formats.md), base64.
    pub leaf: String,
    /// The audit path, leaf to root, base64 SHA-256 hashes.
    pub hashes: Vec<String>,
    /// The signed checkpoint of `tree_size`; `null` when none was signed at that size (the
    /// proof then needs a checkpoint of that size from elsewhere, or a consistency proof).
    pub checkpoint: Option<String>,
}

/// What an inclusion proof is made of, before it is shown.
struct Inclusion {
    entry: StoredEvent,
    index: u64,
    size: u64,
    checkpoint: Option<StoredCheckpoint>,
    leaf: Vec<u8>,
    hashes: Vec<merkle::Hash>,
}

async fn prove(db: &Db, event_id: &str, tree_size: Option<u64>) -> Result<Inclusion, ProofError> {
    // The entry and the tree it is proven in are independent reads: one wait, not two.
    let (entry, tree) = tokio::join!(db.get_event(event_id), tree_and_checkpoint(db, tree_size));
    let entry = entry?.ok_or(ProofError::UnknownEvent)?;
    let position = u64::try_from(entry.position).map_err(|_| ProofError::UnknownEvent)?;
    let (size, checkpoint) = tree?;
    if position > size {
        return Err(ProofError::NotYetSealed(format!(
            "the entry is at position {position}, beyond tree size {size}"
        )));
    }
    let index = position - 1;
    let leaf = crate::seal::leaf::encode(&entry).map_err(|e| ProofError::Tree(e.to_string()))?;
    let tree = |e: merkle::ProofError| ProofError::Tree(e.to_string());
    let mut ids = merkle::inclusion_proof_ids(index, size).map_err(tree)?;
    let leaf_id = merkle::NodeId { level: 0, index };
    ids.push(leaf_id);
    let nodes = db.fetch_nodes(&ids).await?;
    if nodes.get(&leaf_id) != Some(&merkle::leaf_hash(&leaf)) {
        tracing::error!(
            event_id,
            position,
            "an entry no longer matches its sealed leaf"
        );
        return Err(ProofError::LeafMismatch);
    }
    let hashes = merkle::inclusion_proof(index, size, &nodes).map_err(tree)?;
    Ok(Inclusion {
        entry,
        index,
        size,
        checkpoint,
        leaf,
        hashes,
    })
}

/// The entry's inclusion proof; `tree_size` defaults to the latest checkpoint's.
pub async fn inclusion(
    db: &Db,
    event_id: &str,
    tree_size: Option<u64>,
) -> Result<InclusionProof, ProofError> {
    let p = prove(db, event_id, tree_size).await?;
    Ok(InclusionProof {
        event_id: p.entry.event_id.clone(),
        position: p.entry.position,
        leaf_index: p.index,
        tree_size: p.size,
        leaf: b64(&p.leaf),
        hashes: p.hashes.iter().map(|h| b64(h)).collect(),
        checkpoint: p.checkpoint.map(|c| c.note),
    })
}

/// The offline evidence bundle of the entry under the latest checkpoint (docs/seal-formats.md).
pub async fn bundle(db: &Db, event_id: &str) -> Result<crate::seal::bundle::Bundle, ProofError> {
    let p = prove(db, event_id, None).await?;
    let note = p.checkpoint.ok_or(ProofError::NoCheckpoint)?.note;
    crate::seal::bundle::Bundle::new(&note, &p.entry, &p.hashes)
        .map_err(|e| ProofError::Tree(e.to_string()))
}

/// The tree size asked for (at most the sealed size), or the latest checkpoint's; with the
/// checkpoint of that size if there is one.
async fn tree_and_checkpoint(
    db: &Db,
    tree_size: Option<u64>,
) -> Result<(u64, Option<StoredCheckpoint>), ProofError> {
    match tree_size {
        None => {
            let latest = db
                .latest_checkpoint()
                .await?
                .ok_or(ProofError::NoCheckpoint)?;
            Ok((latest.size, Some(latest)))
        }
        Some(size) => {
            check_sealed(db, size).await?;
            Ok((size, db.checkpoint_at(size).await?))
        }
    }
}

async fn check_sealed(db: &Db, size: u64) -> Result<(), ProofError> {
    if size == 0 {
        return Err(ProofError::BadSize("a tree size is at least 1".into()));
    }
    let sealed = db.seal_state().await?.size;
    if size > sealed {
        return Err(ProofError::NotYetSealed(format!(
            "tree size {size} is beyond the sealed size {sealed}"
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    /// base64 SHA-256 hashes (RFC 9162 §2.1.4); empty when `from == to`.
    pub hashes: Vec<String>,
    /// The signed checkpoints of both sizes, where signed.
    pub from_checkpoint: Option<String>,
    pub to_checkpoint: Option<String>,
}

/// That the tree of size `from` is a prefix of the tree of size `to`.
pub async fn consistency(db: &Db, from: u64, to: u64) -> Result<ConsistencyProof, ProofError> {
    if from == 0 || from > to {
        return Err(ProofError::BadSize(
            "`from` must be at least 1 and at most `to`".into(),
        ));
    }
    check_sealed(db, to).await?;
    let ids =
        merkle::consistency_proof_ids(from, to).map_err(|e| ProofError::Tree(e.to_string()))?;
    let nodes = db.fetch_nodes(&ids).await?;
    let hashes =
        merkle::consistency_proof(from, to, &nodes).map_err(|e| ProofError::Tree(e.to_string()))?;
    Ok(ConsistencyProof {
        from,
        to,
        hashes: hashes.iter().map(|h| b64(h)).collect(),
        from_checkpoint: db.checkpoint_at(from).await?.map(|c| c.note),
        to_checkpoint: db.checkpoint_at(to).await?.map(|c| c.note),
    })
}

/// The sealed size, for callers that only need it.
pub async fn sealed_size(db: &Db) -> Result<u64, StorageError> {
    Ok(db.seal_state().await?.size)
}
