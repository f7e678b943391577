//! The immutable event log: append (idempotent on Stripe's event id) and read.
//!
//! What an entry is, how a batch's duplicates resolve and what each append reports live here;
//! the statements live in `crate::store::event_log` (the database enforces immutability with
//! triggers; the store only ever INSERTs and SELECTs).

pub mod redaction;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ledger_projections::Envelope;
use serde::Serialize;

use crate::store::event_log::{EventLogStore as _, EventLogTx as _, Inserted};
pub use crate::store::event_log::{Logged, StoredEvent, APPEND_LOCK};
use crate::store::{Db, StorageError, Tx};

/// Where an entry came from. Stored as text; the set grows as later features append entries
/// learned from the Stripe API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A verified `POST /webhooks/stripe` delivery.
    Webhook,
    /// Listed from `GET /v1/events` to fill a gap.
    ApiBackfill,
    /// An object fetched by reconciliation to repair drift.
    ReconcileRepair,
    /// An object as the Stripe API returned it to one of our own calls (e.g. a customer we
    /// created for Checkout), logged so the read models know it before its webhook arrives.
    ApiResponse,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Webhook => "webhook",
            Source::ApiBackfill => "api_backfill",
            Source::ReconcileRepair => "reconcile_repair",
            Source::ApiResponse => "api_response",
        }
    }

    pub const ALL: [Source; 4] = [
        Source::Webhook,
        Source::ApiBackfill,
        Source::ReconcileRepair,
        Source::ApiResponse,
    ];
}

/// A stored `source` that is none of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event log source {0:?}")]
pub struct UnknownSource(pub String);

impl std::str::FromStr for Source {
    type Err = UnknownSource;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Source::ALL
            .into_iter()
            .find(|source| source.as_str() == s)
            .ok_or_else(|| UnknownSource(s.to_owned()))
    }
}

/// How a webhook entry was verified. Never holds a secret: only which one, by index and
/// fingerprint.
#[derive(Debug, Clone)]
pub struct Verification {
    pub signature_header: String,
    pub timestamp: i64,
    pub secret_index: usize,
    pub secret_fingerprint: String,
}

/// An entry about to be appended.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub envelope: Envelope,
    pub source: Source,
    /// What is stored: the raw body, or its redacted re-serialisation.
    pub payload: String,
    pub payload_redacted: bool,
    pub raw_body_sha256: String,
    pub verification: Option<Verification>,
    pub received_at: DateTime<Utc>,
}

impl NewEntry {
    /// The SHA-256 of `payload`: what the sealed log commits to for this entry. SQLite stores
    /// it at append (PostgreSQL's trigger computes its own, migration 0017), so its sealer reads
    /// 32 bytes instead of the payload (docs/adr/0032). Always hashed from the payload itself,
    /// never taken from `raw_body_sha256`: the fields are public, and a stored hash that is not
    /// the payload's would be named tampering by `verify` (a couple of microseconds per entry).
    pub fn payload_sha256(&self) -> [u8; 32] {
        crate::seal::leaf::payload_hash(&self.payload)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// A new entry at this position.
    Appended { position: i64 },
    /// The event id was already in the log; nothing was written. `same_body` tells whether the
    /// earlier entry was made from the same raw bytes (Stripe resends the same body; a
    /// different one means the event was rendered for another endpoint or API version).
    Duplicate { position: i64, same_body: bool },
}

impl AppendOutcome {
    pub fn position(self) -> i64 {
        match self {
            AppendOutcome::Appended { position } | AppendOutcome::Duplicate { position, .. } => {
                position
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Newest first: what an auditor looking at "what just happened" wants.
    #[default]
    Desc,
    Asc,
}

/// Filters for browsing the log. All optional; combined with AND.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub event_type: Option<String>,
    /// Any of these types (the console's `customer.*`, resolved to the logged types that
    /// start with `customer.`). An empty list matches nothing.
    pub event_types: Option<Vec<String>>,
    pub object_id: Option<String>,
    /// Stripe `created`, inclusive lower bound (unix seconds).
    pub created_gte: Option<i64>,
    /// Stripe `created`, exclusive upper bound (unix seconds).
    pub created_lt: Option<i64>,
    pub source: Option<Source>,
    pub livemode: Option<bool>,
    /// Our `received_at`, inclusive lower bound.
    pub received_gte: Option<chrono::DateTime<chrono::Utc>>,
    /// Our `received_at`, exclusive upper bound.
    pub received_lt: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone)]
pub struct PageRequest {
    pub order: Order,
    /// Continue after this position (exclusive), in the page's order.
    pub after_position: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone)]
pub struct Page {
    pub events: Vec<StoredEvent>,
    /// Position to pass as `after_position` for the next page; `None` on the last page.
    pub next_position: Option<i64>,
}

/// Appends `entry` unless its event id is already in the log. Concurrent appends of the same
/// id (two deliveries, two instances) resolve on the unique constraint: exactly one wins.
/// The webhook path goes through `ingest::Writer`, which batches; this is the one-off form.
pub async fn append(db: &Db, entry: &NewEntry) -> Result<AppendOutcome, StorageError> {
    if let Some(outcome) = existing(db, entry).await? {
        return Ok(outcome);
    }
    let outcomes = append_batch(db, &[entry]).await?;
    Ok(outcomes[0])
}

/// Looks the event id up: a duplicate then costs one indexed read, no write and no commit.
/// Runs concurrently on the read pool, so duplicates never queue behind appends.
pub async fn existing(db: &Db, entry: &NewEntry) -> Result<Option<AppendOutcome>, StorageError> {
    let found = db.find_event(&entry.envelope.id).await?;
    Ok(found.map(|f| AppendOutcome::Duplicate {
        position: f.position,
        same_body: f.raw_body_sha256 == entry.raw_body_sha256,
    }))
}

/// Appends several entries with one commit (one fsync) and returns one outcome
/// per entry, in order. Repeated ids within the batch resolve like concurrent deliveries.
pub async fn append_batch(
    db: &Db,
    entries: &[&NewEntry],
) -> Result<Vec<AppendOutcome>, StorageError> {
    let mut tx = Tx::begin(db).await?;
    let outcomes = append_in(&mut tx, entries).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Appends inside the caller's transaction, so that what is done with the entries (the
/// projection) commits with them. On PostgreSQL the transaction holds the append lock until it
/// ends: keep it short.
pub async fn append_in(
    tx: &mut Tx<'_>,
    entries: &[&NewEntry],
) -> Result<Vec<AppendOutcome>, StorageError> {
    append_marking(tx, entries, &Projected::default()).await
}

async fn append_marking(
    tx: &mut Tx<'_>,
    entries: &[&NewEntry],
    projected: &Projected<'_>,
) -> Result<Vec<AppendOutcome>, StorageError> {
    // The first occurrence of each id is written; later ones in the same batch are duplicates.
    let mut first_index: HashMap<&str, usize> = Default::default();
    let mut unique = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        first_index
            .entry(entry.envelope.id.as_str())
            .or_insert_with(|| {
                unique.push(*entry);
                i
            });
    }
    let positions = tx.insert_events(&unique, projected).await?;
    let by_id: HashMap<&str, Inserted> = unique
        .iter()
        .zip(positions)
        .map(|(entry, inserted)| (entry.envelope.id.as_str(), inserted))
        .collect();
    Ok(entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let id = entry.envelope.id.as_str();
            let inserted = &by_id[id];
            if first_index[id] == i && inserted.new {
                AppendOutcome::Appended {
                    position: inserted.position,
                }
            } else {
                AppendOutcome::Duplicate {
                    position: inserted.position,
                    same_body: inserted.raw_body_sha256 == entry.raw_body_sha256,
                }
            }
        })
        .collect())
}

/// What was projected before appending, recorded by the append itself (`append_in` passes
/// nothing; ingestion records its marks in its own batch write, `store::ingest`).
#[derive(Debug, Clone, Default)]
pub struct Projected<'a> {
    /// Ids whose projection succeeded: newly appended ones are marked projected by position,
    /// and any dead letter of theirs is cleared.
    pub event_ids: Vec<&'a str>,
    /// Positions of already-logged entries that were projected again.
    pub positions: Vec<i64>,
}

/// One entry with its payload and verification record.
pub async fn get(db: &Db, event_id: &str) -> Result<Option<StoredEvent>, StorageError> {
    db.get_event(event_id).await
}

/// A page of entries (without payloads) matching `filter`.
pub async fn list(db: &Db, filter: &EventFilter, page: &PageRequest) -> Result<Page, StorageError> {
    let mut events = db.list_events(filter, page).await?;
    // One extra row was fetched to learn whether another page exists.
    let next_position = if events.len() > page.limit as usize {
        events.truncate(page.limit as usize);
        events.last().map(|e| e.position)
    } else {
        None
    };
    Ok(Page {
        events,
        next_position,
    })
}

/// The highest position in the log (0 when empty).
pub async fn last_position(db: &Db) -> Result<i64, StorageError> {
    db.last_position().await
}

/// A log entry for an object the Stripe API returned: a synthetic `ledger.object_snapshot`
/// event whose id is derived from the object's content, so logging the same response twice
/// is one entry. `now` becomes its `created`, the time we learned this state.
pub fn object_snapshot_entry(
    object: &serde_json::Value,
    source: Source,
    now: DateTime<Utc>,
) -> Result<NewEntry, StorageError> {
    use sha2::{Digest, Sha256};
    let object_json = object.to_string();
    let id = format!(
        "snap_{}",
        &hex::encode(Sha256::digest(object_json.as_bytes()))[..32]
    );
    let livemode = object
        .get("livemode")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let body = serde_json::json!({
        "id": id,
        "object": "event",
        "type": ledger_projections::OBJECT_SNAPSHOT,
        "api_version": crate::stripe::client::API_VERSION,
        "created": now.timestamp(),
        "livemode": livemode,
        "data": {"object": object},
    })
    .to_string();
    // The same one parse as a webhook's: an object Stripe returned that the projection could
    // not read (a NUL, an overlong id) is refused here, not logged.
    let prepared = redaction::prepare(body.as_bytes())
        .map_err(|e| StorageError::invalid(format!("snapshot envelope: {e}")))?;
    let raw_body_sha256 = hex::encode(Sha256::digest(body.as_bytes()));
    Ok(NewEntry {
        envelope: prepared.envelope,
        source,
        payload: prepared.payload,
        payload_redacted: prepared.payload_redacted,
        raw_body_sha256,
        verification: None,
        received_at: now,
    })
}

/// Number of entries, for operators and tests.
pub async fn count(db: &Db) -> Result<i64, StorageError> {
    db.count_events().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_read_back_as_themselves_and_nothing_else_parses() {
        for source in Source::ALL {
            assert_eq!(source.as_str().parse::<Source>(), Ok(source));
        }
        for other in ["", "Webhook", "webhook ", "api"] {
            assert!(other.parse::<Source>().is_err(), "{other:?}");
        }
    }
}
