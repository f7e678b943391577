//! `stripe-ledger verify`: recompute every leaf and the whole tree from the log, and hold them
//! against the stored tree, the stored checkpoints and any checkpoint kept outside.
//!
//! How each attack shows (docs/adr/0018):
//! - `edited`: a row no longer encodes to the leaf stored for its position (a payload, a
//!   verification column, a position swapped with another row's, a row put where a hole was);
//! - `missing`: a sealed position has no row, and a later one does;
//! - `truncated`: sealed positions, or a checkpoint's size, beyond the last row of the log;
//! - `inconsistent`: the recomputed root differs from a checkpoint of the same size (a rewrite
//!   with a recomputed tree), or the stored tree does not hold together;
//! - `bad_signature`: a checkpoint not signed by the verifier key (a forged or re-signed one).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{entry_leaf_hash, hole_leaf, to_i64, SealError};
use crate::seal::merkle::{self, Frontier, Hash, NodeId};
use crate::seal::note::{self, VerifierKey};
use crate::store::event_log::EventLogStore as _;
use crate::store::seal::{SealState, SealStore as _};
use crate::store::Db;

/// Leaves checked per round trip: bounded memory whatever the size of the log.
pub const VERIFY_CHUNK: u64 = 4_096;
/// Findings listed in a report at most (all are counted).
const MAX_LISTED: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TamperKind {
    Edited,
    Missing,
    Truncated,
    Inconsistent,
    BadSignature,
}

impl std::fmt::Display for TamperKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TamperKind::Edited => "edited",
            TamperKind::Missing => "missing",
            TamperKind::Truncated => "truncated",
            TamperKind::Inconsistent => "inconsistent",
            TamperKind::BadSignature => "bad_signature",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: TamperKind,
    /// The log position concerned (for a checkpoint, its size: the last position it covers).
    pub position: u64,
    pub detail: String,
}

/// A checkpoint to hold the log against, from outside the database.
#[derive(Debug, Clone)]
pub struct ExternalCheckpoint {
    /// Where it came from (a file name), for the report.
    pub source: String,
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    /// Rows read from the log.
    pub entries: u64,
    /// Leaves recomputed (the last position, holes included).
    pub tree_size: u64,
    /// What the stored tree covers.
    pub sealed_size: u64,
    pub stored_checkpoints: usize,
    pub external_checkpoints: usize,
    /// The finding at the smallest position.
    pub first: Option<Finding>,
    pub findings_total: usize,
    pub findings: Vec<Finding>,
}

/// A root to compare with the recomputed tree at `size`.
struct Target {
    source: String,
    root: Hash,
}

/// Streams the whole log. `key` checks every checkpoint's signature.
pub async fn verify(
    db: &Db,
    key: &VerifierKey,
    external: &[ExternalCheckpoint],
) -> Result<VerifyReport, SealError> {
    let state = db.seal_state().await?;
    let last = u64::try_from(db.last_position().await?).unwrap_or(0);
    let mut findings = Vec::new();
    let mut targets: BTreeMap<u64, Vec<Target>> = BTreeMap::new();
    let stored = db.checkpoints().await?;
    for c in &stored {
        match note::open(&c.note, key) {
            Ok(cp) if cp.size == c.size && cp.root == c.root => {
                let source = format!("stored checkpoint {}", c.size);
                targets.entry(cp.size).or_default().push(Target {
                    source,
                    root: cp.root,
                });
            }
            Ok(_) => findings.push(Finding {
                kind: TamperKind::Inconsistent,
                position: c.size,
                detail: format!(
                    "stored checkpoint {}: its note says another size or root than its row",
                    c.size
                ),
            }),
            Err(e) => findings.push(Finding {
                kind: TamperKind::BadSignature,
                position: c.size,
                detail: format!(
                    "stored checkpoint {} is not signed by the verifier key: {e}",
                    c.size
                ),
            }),
        }
    }
    for x in external {
        match note::open(&x.note, key) {
            Ok(cp) => targets.entry(cp.size).or_default().push(Target {
                source: x.source.clone(),
                root: cp.root,
            }),
            Err(e) => {
                let size = note::parse_unverified(&x.note).map(|c| c.size).unwrap_or(0);
                findings.push(Finding {
                    kind: TamperKind::BadSignature,
                    position: size,
                    detail: format!("{} is not signed by the verifier key: {e}", x.source),
                });
            }
        }
    }
    let size = state.size.max(last);
    let mut frontier = Frontier::empty();
    let mut entries = 0;
    let mut from = 0;
    while from < size {
        let to = (from + VERIFY_CHUNK).min(size);
        let chunk = check_leaves(db, &state, last, from, to).await?;
        entries += chunk.rows;
        findings.extend(chunk.findings);
        // Past the first damaged position, stored inner nodes and the stored root differ
        // from the recomputed ones as a consequence: not reported again.
        let damage = findings
            .iter()
            .filter(|f| f.kind != TamperKind::BadSignature)
            .map(|f| f.position)
            .min();
        for (leaf, j) in chunk.leaves.iter().zip(from..) {
            let clean = damage.is_none_or(|d| d > j + 1);
            for (id, hash) in frontier.push(*leaf) {
                let stored = chunk.stored.get(&id);
                if clean && id.level > 0 && stored_covers(&state, id) && stored != Some(&hash) {
                    findings.push(Finding {
                        kind: TamperKind::Inconsistent,
                        position: j + 1,
                        detail: format!("the stored node {id:?} differs from the recomputed one"),
                    });
                }
            }
            compare_roots(&frontier, &state, &targets, clean, &mut findings);
        }
        from = to;
    }
    for (&cp_size, list) in targets.range(size + 1..) {
        for t in list {
            findings.push(Finding {
                kind: TamperKind::Truncated,
                position: size + 1,
                detail: format!(
                    "{} covers {cp_size} positions, the log only {size}",
                    t.source
                ),
            });
        }
    }
    Ok(report(
        findings,
        entries,
        size,
        &state,
        stored.len(),
        external.len(),
    ))
}

fn report(
    mut findings: Vec<Finding>,
    entries: u64,
    tree_size: u64,
    state: &SealState,
    stored: usize,
    external: usize,
) -> VerifyReport {
    findings.sort_by_key(|f| (f.position, f.kind));
    let total = findings.len();
    findings.truncate(MAX_LISTED);
    VerifyReport {
        ok: total == 0,
        entries,
        tree_size,
        sealed_size: state.size,
        stored_checkpoints: stored,
        external_checkpoints: external,
        first: findings.first().cloned(),
        findings_total: total,
        findings,
    }
}

/// Whether the stored tree holds the subtree `id` (it lies wholly below the sealed size).
fn stored_covers(state: &SealState, id: NodeId) -> bool {
    (id.index + 1)
        .checked_shl(u32::from(id.level))
        .is_some_and(|end| end <= state.size)
}

fn compare_roots(
    frontier: &Frontier,
    state: &SealState,
    targets: &BTreeMap<u64, Vec<Target>>,
    clean: bool,
    findings: &mut Vec<Finding>,
) {
    let size = frontier.size();
    let root = frontier.root();
    if clean && size == state.size && root != state.root {
        findings.push(Finding {
            kind: TamperKind::Inconsistent,
            position: size,
            detail: "the stored root differs from the recomputed one".into(),
        });
    }
    for t in targets.get(&size).into_iter().flatten() {
        if t.root != root {
            findings.push(Finding {
                kind: TamperKind::Inconsistent,
                position: size,
                detail: format!("the log's root at size {size} differs from {}", t.source),
            });
        }
    }
}

/// Leaves `from..to` recomputed from the log and checked against the stored ones.
struct CheckedLeaves {
    rows: u64,
    leaves: Vec<Hash>,
    /// Stored nodes completed by these leaves (every level), for the caller's comparison.
    stored: HashMap<NodeId, Hash>,
    findings: Vec<Finding>,
}

/// One round trip for the rows and one for the stored nodes they complete.
async fn check_leaves(
    db: &Db,
    state: &SealState,
    last: u64,
    from: u64,
    to: u64,
) -> Result<CheckedLeaves, SealError> {
    let rows = db.entries_between(to_i64(from), to_i64(to)).await?;
    let mut ids = Vec::new();
    for j in from..to.min(state.size) {
        let mut level = 0u8;
        loop {
            ids.push(NodeId {
                level,
                index: j >> level,
            });
            level += 1;
            if level > 63 || (j + 1) % (1u64 << level) != 0 {
                break;
            }
        }
    }
    let stored = db.fetch_nodes(&ids).await?;
    let mut by_position: HashMap<u64, _> = rows
        .iter()
        .filter_map(|r| u64::try_from(r.position).ok().map(|p| (p, r)))
        .collect();
    let mut leaves = Vec::with_capacity((to - from) as usize);
    let mut findings = Vec::new();
    for j in from..to {
        if (j - from) % 64 == 63 {
            // Hashing a chunk's payloads takes milliseconds; inside `serve` (the scheduled
            // re-check, on the runtime's one worker) webhooks wait behind it otherwise.
            tokio::task::yield_now().await;
        }
        let position = j + 1;
        let hole = merkle::leaf_hash(&hole_leaf(position));
        let sealed = stored.get(&NodeId { level: 0, index: j }).copied();
        let leaf = match by_position.remove(&position) {
            Some(row) => match entry_leaf_hash(row) {
                Ok(leaf) => leaf,
                Err(e) => {
                    findings.push(edited(position, e.to_string()));
                    hole
                }
            },
            None => hole,
        };
        let present = leaf != hole;
        match sealed {
            _ if j >= state.size => {}
            None => findings.push(Finding {
                kind: TamperKind::Inconsistent,
                position,
                detail: format!("the stored tree lacks the leaf of position {position}"),
            }),
            Some(s) if s == leaf => {}
            Some(s) if s == hole => findings.push(edited(
                position,
                format!("position {position} was sealed as a hole and now holds an entry"),
            )),
            Some(_) if present => findings.push(edited(
                position,
                format!("the entry at position {position} no longer matches its sealed leaf"),
            )),
            Some(_) => findings.push(Finding {
                kind: if position > last {
                    TamperKind::Truncated
                } else {
                    TamperKind::Missing
                },
                position,
                detail: format!("the sealed entry at position {position} is gone from the log"),
            }),
        }
        leaves.push(leaf);
    }
    Ok(CheckedLeaves {
        rows: rows.len() as u64,
        leaves,
        stored,
        findings,
    })
}

fn edited(position: u64, detail: String) -> Finding {
    Finding {
        kind: TamperKind::Edited,
        position,
        detail,
    }
}

/// What one scheduled check covered, and the first problem it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recheck {
    /// The positions recomputed: `from_position..=to_position` (both 0 for an empty tree).
    pub from_position: u64,
    pub to_position: u64,
    /// The sealed size the check ran against.
    pub tree_size: u64,
    /// The latest checkpoint's size, when one was checked.
    pub checkpoint_size: Option<u64>,
    pub finding: Option<Finding>,
}

/// The scheduled check of `serve`: the newest `newest` sealed leaves recomputed from the log,
/// the stored frontier against the stored root, and the latest checkpoint's signature and root.
pub async fn recheck_newest(db: &Db, key: &VerifierKey, newest: u64) -> Result<Recheck, SealError> {
    let state = db.seal_state().await?;
    let from = state.size.saturating_sub(newest);
    let mut recheck = Recheck {
        // Leaf `from` is position `from + 1`.
        from_position: if state.size == 0 { 0 } else { from + 1 },
        to_position: state.size,
        tree_size: state.size,
        checkpoint_size: None,
        finding: None,
    };
    if let Err(e) = super::stored_frontier(db, &state).await {
        recheck.finding = Some(Finding {
            kind: TamperKind::Inconsistent,
            position: state.size,
            detail: e.to_string(),
        });
        return Ok(recheck);
    }
    let last = u64::try_from(db.last_position().await?).unwrap_or(0);
    let checked = check_leaves(db, &state, last, from, state.size).await?;
    recheck.finding = checked.findings.into_iter().next();
    if recheck.finding.is_none() {
        if let Some(c) = db.latest_checkpoint().await? {
            recheck.checkpoint_size = Some(c.size);
            recheck.finding = check_latest_checkpoint(db, key, &c).await?;
        }
    }
    Ok(recheck)
}

/// The latest checkpoint's signature, and its root against its note and the stored tree.
async fn check_latest_checkpoint(
    db: &Db,
    key: &VerifierKey,
    c: &crate::store::seal::StoredCheckpoint,
) -> Result<Option<Finding>, SealError> {
    let ids = merkle::root_ids(c.size);
    let nodes = db.fetch_nodes(&ids).await?;
    let root = merkle::root(c.size, &nodes).ok();
    let problem = match note::open(&c.note, key) {
        Err(e) => Some((
            TamperKind::BadSignature,
            format!("the latest checkpoint: {e}"),
        )),
        Ok(cp) if cp.root != c.root || Some(cp.root) != root => Some((
            TamperKind::Inconsistent,
            "the latest checkpoint's root differs from the stored tree".to_owned(),
        )),
        Ok(_) => None,
    };
    Ok(problem.map(|(kind, detail)| Finding {
        kind,
        position: c.size,
        detail,
    }))
}
