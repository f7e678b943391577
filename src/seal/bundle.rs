//! The offline evidence bundle: one JSON file that shows an auditor, with nothing but the
//! verifier key, that a log entry is in the sealed log. Modelled on C2SP `tlog-proof` (a
//! checkpoint, a leaf index and an inclusion proof), plus the entry and its leaf bytes.
//!
//! The file is checked byte for byte: it must be exactly what [`Bundle::to_file_text`] writes
//! for its own content, so no change to the file, not even to white space, goes unnoticed.
//! `docs/seal-formats.md` describes the fields and how to check one by hand.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::leaf::{self, LeafError, LeafFields};
use super::merkle::{self, Hash, ProofError};
use super::note::{self, Checkpoint, NoteError, VerifierKey};
use crate::audit::{EventDetail, EventSummary, VerificationView};
use crate::store::event_log::StoredEvent;

/// The bundle format version: the only value `format` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BundleFormat {
    #[serde(rename = "stripe-ledger/proof-bundle/v1")]
    V1,
}

/// An offline evidence bundle, as written to and read from a file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub format: BundleFormat,
    /// The signed checkpoint note, as published.
    pub checkpoint: String,
    /// 0-based: leaf `i` is log position `i + 1`.
    pub leaf_index: u64,
    /// The checkpoint's tree size, repeated for readers; it must match the note.
    pub tree_size: u64,
    /// The leaf bytes (`docs/seal-formats.md`), base64.
    pub leaf: String,
    /// Sibling hashes from the leaf up, base64.
    pub inclusion_proof: Vec<String>,
    /// The entry as `GET /api/audit/events/{id}` shows it, with the stored payload verbatim.
    pub entry: Box<RawValue>,
}

/// What a verified bundle proves.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedBundle {
    pub origin: String,
    pub tree_size: u64,
    /// The checkpoint's root, base64.
    pub root: String,
    pub leaf_index: u64,
    pub leaf: LeafFields,
}

/// Why a bundle did not verify. A closed set; [`BundleError::kind`] is its stable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("the file is not a proof bundle: {0}")]
    Malformed(String),
    #[error("the file is not byte for byte the bundle it contains (edited or reformatted)")]
    NotCanonical,
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] NoteError),
    #[error("tree_size {bundle} differs from the checkpoint's size {checkpoint}")]
    SizeMismatch { bundle: u64, checkpoint: u64 },
    #[error("{0} is not valid base64")]
    Base64(&'static str),
    #[error("leaf: {0}")]
    Leaf(#[from] LeafError),
    #[error("leaf_index {leaf_index} does not belong to log position {position}")]
    PositionMismatch { leaf_index: u64, position: i64 },
    #[error("the entry's payload does not hash to the payload hash in the leaf")]
    PayloadMismatch,
    #[error("the entry differs from the leaf at {0}")]
    EntryMismatch(String),
    #[error("inclusion proof: {0}")]
    Proof(#[from] ProofError),
}

impl BundleError {
    /// A stable, machine-readable name for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            BundleError::Malformed(_) => "malformed",
            BundleError::NotCanonical => "not_canonical",
            BundleError::Checkpoint(_) => "checkpoint",
            BundleError::SizeMismatch { .. } => "size_mismatch",
            BundleError::Base64(_) => "encoding",
            BundleError::Leaf(_) => "leaf",
            BundleError::PositionMismatch { .. } => "position_mismatch",
            BundleError::PayloadMismatch => "payload_mismatch",
            BundleError::EntryMismatch(_) => "entry_mismatch",
            BundleError::Proof(_) => "inclusion_proof",
        }
    }
}

/// The entry as the audit API shows it, with the payload written verbatim (so its hash can be
/// checked) instead of re-serialised.
#[derive(Serialize)]
struct EntryView<'a> {
    #[serde(flatten)]
    summary: EventSummary,
    verification: VerificationView,
    payload: &'a RawValue,
}

/// The canonical entry text of a stored event. A payload that is not exactly one JSON value
/// (the log stores text, and a JSON parser would drop white space around the value) is
/// written as a JSON string, so its exact bytes survive.
fn entry_text(event: &StoredEvent) -> Result<String, BundleError> {
    let payload = event.payload.as_deref().ok_or(LeafError::MissingPayload)?;
    let quoted;
    let raw = match serde_json::from_str::<&RawValue>(payload) {
        Ok(raw) if raw.get() == payload => raw,
        _ => {
            quoted = serde_json::value::to_raw_value(payload)
                .map_err(|e| BundleError::Malformed(e.to_string()))?;
            &quoted
        }
    };
    let detail = EventDetail::from(event);
    let view = EntryView {
        summary: detail.summary,
        verification: detail.verification,
        payload: raw,
    };
    serde_json::to_string_pretty(&view).map_err(|e| BundleError::Malformed(e.to_string()))
}

impl Bundle {
    /// A bundle for `event` (read with its payload) under the checkpoint `note`, with the
    /// inclusion proof of its leaf in the checkpoint's tree.
    pub fn new(note: &str, event: &StoredEvent, proof: &[Hash]) -> Result<Self, BundleError> {
        let checkpoint = note::parse_unverified(note)?;
        let leaf_index =
            u64::try_from(event.position - 1).map_err(|_| BundleError::PositionMismatch {
                leaf_index: 0,
                position: event.position,
            })?;
        let entry = RawValue::from_string(entry_text(event)?)
            .map_err(|e| BundleError::Malformed(e.to_string()))?;
        Ok(Bundle {
            format: BundleFormat::V1,
            checkpoint: note.to_owned(),
            leaf_index,
            tree_size: checkpoint.size,
            leaf: B64.encode(leaf::encode(event)?),
            inclusion_proof: proof.iter().map(|h| B64.encode(h)).collect(),
            entry,
        })
    }

    /// The file contents: pretty JSON and a final newline. [`parse`] accepts only this.
    pub fn to_file_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a bundle always serialises");
        text.push('\n');
        text
    }
}

/// Reads a bundle file, refusing anything that is not exactly a bundle's own file text.
pub fn parse(file: &[u8]) -> Result<Bundle, BundleError> {
    let text = std::str::from_utf8(file)
        .map_err(|_| BundleError::Malformed("the file is not UTF-8".into()))?;
    let bundle: Bundle =
        serde_json::from_str(text).map_err(|e| BundleError::Malformed(e.to_string()))?;
    if bundle.to_file_text() != text {
        return Err(BundleError::NotCanonical);
    }
    Ok(bundle)
}

/// Checks a bundle: the note is signed by `key`; the bundle's size is the note's; the leaf
/// decodes, belongs to `leaf_index` and agrees with every field of the entry; the entry's
/// payload hashes to the leaf's payload hash; the inclusion proof leads from the leaf to the
/// note's root.
pub fn verify(bundle: &Bundle, key: &VerifierKey) -> Result<VerifiedBundle, BundleError> {
    let checkpoint = note::open(&bundle.checkpoint, key)?;
    if bundle.tree_size != checkpoint.size {
        return Err(BundleError::SizeMismatch {
            bundle: bundle.tree_size,
            checkpoint: checkpoint.size,
        });
    }
    let leaf_bytes = B64
        .decode(&bundle.leaf)
        .map_err(|_| BundleError::Base64("leaf"))?;
    let fields = leaf::decode(&leaf_bytes)?;
    if u64::try_from(fields.position).ok() != bundle.leaf_index.checked_add(1) {
        return Err(BundleError::PositionMismatch {
            leaf_index: bundle.leaf_index,
            position: fields.position,
        });
    }
    check_entry(bundle.entry.get(), &fields)?;
    let proof = bundle
        .inclusion_proof
        .iter()
        .map(|h| decode_hash(h))
        .collect::<Result<Vec<_>, _>>()?;
    merkle::verify_inclusion(
        bundle.leaf_index,
        checkpoint.size,
        &merkle::leaf_hash(&leaf_bytes),
        &proof,
        &checkpoint.root,
    )?;
    Ok(verified(checkpoint, bundle.leaf_index, fields))
}

fn verified(checkpoint: Checkpoint, leaf_index: u64, leaf: LeafFields) -> VerifiedBundle {
    VerifiedBundle {
        origin: checkpoint.origin,
        tree_size: checkpoint.size,
        root: B64.encode(checkpoint.root),
        leaf_index,
        leaf,
    }
}

fn decode_hash(b64: &str) -> Result<Hash, BundleError> {
    B64.decode(b64)
        .ok()
        .and_then(|bytes| Hash::try_from(bytes).ok())
        .ok_or(BundleError::Base64("an inclusion proof hash"))
}

/// The payload inside the entry text, verbatim.
#[derive(Deserialize)]
struct PayloadOnly<'a> {
    #[serde(borrow)]
    payload: &'a RawValue,
}

/// The entry must be exactly the entry text the leaf's fields and the payload give.
fn check_entry(entry: &str, fields: &LeafFields) -> Result<(), BundleError> {
    let raw = serde_json::from_str::<PayloadOnly<'_>>(entry)
        .map_err(|_| BundleError::EntryMismatch("payload".into()))?
        .payload;
    let payload = payload_text(raw, &fields.payload_sha256)?;
    let expected = entry_text(&stored_event(fields, payload))?;
    if expected == entry {
        return Ok(());
    }
    Err(BundleError::EntryMismatch(first_difference(
        entry, &expected,
    )))
}

/// The stored payload text: the raw JSON, or, for a payload that was not JSON, the string it
/// was written as. Either way its SHA-256 must be the leaf's.
fn payload_text(raw: &RawValue, want_hex: &str) -> Result<String, BundleError> {
    let hashes_to = |text: &str| hex::encode(leaf::payload_hash(text)) == want_hex;
    if hashes_to(raw.get()) {
        return Ok(raw.get().to_owned());
    }
    match serde_json::from_str::<String>(raw.get()) {
        Ok(text) if hashes_to(&text) => Ok(text),
        _ => Err(BundleError::PayloadMismatch),
    }
}

/// The stored event a leaf describes, with `payload`.
fn stored_event(f: &LeafFields, payload: String) -> StoredEvent {
    StoredEvent {
        position: f.position,
        event_id: f.event_id.clone(),
        event_type: f.event_type.clone(),
        api_version: f.api_version.clone(),
        livemode: f.livemode,
        account: f.account.clone(),
        object_id: f.object_id.clone(),
        object_type: f.object_type.clone(),
        stripe_created: f.stripe_created,
        received_at: f.received_at(),
        source: f.source,
        payload_redacted: f.payload_redacted,
        raw_body_sha256: f.raw_body_sha256.clone(),
        signature_header: f.signature_header.clone(),
        signature_timestamp: f.signature_timestamp,
        verified_by_index: f.verified_by_index,
        verified_by_fingerprint: f.verified_by_fingerprint.clone(),
        payload: Some(payload),
    }
}

/// Names the first field where two entry texts differ, for the report: a JSON path like
/// `verification.secret_fingerprint`, or `formatting` when only the layout differs.
fn first_difference(got: &str, want: &str) -> String {
    let (Ok(got), Ok(want)) = (
        serde_json::from_str::<serde_json::Value>(got),
        serde_json::from_str::<serde_json::Value>(want),
    ) else {
        return "the entry's JSON".into();
    };
    diff_path(&got, &want, String::new()).unwrap_or_else(|| "formatting".into())
}

fn diff_path(got: &serde_json::Value, want: &serde_json::Value, at: String) -> Option<String> {
    use serde_json::Value::Object;
    match (got, want) {
        (Object(g), Object(w)) => {
            let keys = w.keys().chain(g.keys().filter(|k| !w.contains_key(*k)));
            for key in keys {
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                match (g.get(key), w.get(key)) {
                    (Some(a), Some(b)) => {
                        if let Some(p) = diff_path(a, b, path) {
                            return Some(p);
                        }
                    }
                    _ => return Some(path),
                }
            }
            None
        }
        _ if got == want => None,
        _ => Some(if at.is_empty() { "entry".into() } else { at }),
    }
}

#[cfg(test)]
mod tests;
