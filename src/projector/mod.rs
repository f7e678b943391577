//! The projector: folds log entries into the read models, in transactions of the shell around
//! the pure folds of `ledger-projections`.
//!
//! Because every state is a join-semilattice, projecting an event twice, or events in any
//! order, gives the same rows; the projector therefore never needs to know whether an entry was
//! already applied, which is what makes retries, catch-up and rebuild simple.

mod catch_up;
mod rebuild;
pub mod store;

use std::collections::{BTreeMap, HashMap};

use ledger_projections::{
    decode, CustomerState, Fact, InvoiceState, LoggedEvent, Notification, OrderState, Origin,
    PaymentState, SubscriptionState, OBJECT_SNAPSHOT,
};
use serde_json::Value;

pub use catch_up::{catch_up, skip_catch_up_to, CatchUpReport};
pub use rebuild::{rebuild, RebuildOptions, RebuildReport};

use crate::store::outbox::OutboxTx as _;
use crate::store::read_models::{Key, ReadModelTx as _, Row};
use crate::store::{Db, Kind, StorageError, Tx};

/// A log entry to project.
#[derive(Debug, Clone)]
pub struct Entry {
    pub position: i64,
    pub event_id: String,
    pub event_type: String,
    pub created: i64,
    pub payload: String,
    /// Whether the service itself produced the entry (source `api_response`): only such
    /// entries link users to customers (docs/adr/0013).
    pub origin: Origin,
}

/// The user-link trust of a log entry's `source`.
pub fn origin_of(source: crate::event_log::Source) -> Origin {
    if source == crate::event_log::Source::ApiResponse {
        Origin::Service
    } else {
        Origin::Stripe
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProjectError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The event cannot be folded (malformed object for its type); it goes to dead letters.
    #[error("event {event_id} cannot be projected: {reason}")]
    Event { event_id: String, reason: String },
}

/// Notifications to enqueue, each with the event id that caused it.
type Caused = Vec<(Notification, String)>;

/// Decodes entries into facts grouped per object; an undecodable entry fails the whole call
/// (callers retry entry by entry to isolate it). With `notifications`, also collects what the
/// entries ask to be notified. `parsed[i]`, if given, is entry `i`'s payload already parsed
/// (ingestion's one parse, ADR 12); the others are parsed from their stored payload.
fn facts_of_parsed(
    entries: &[Entry],
    parsed: &[Option<&Value>],
    mut notifications: Option<&mut Caused>,
) -> Result<BTreeMap<Key, Fact>, ProjectError> {
    let mut merged: BTreeMap<Key, Fact> = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let stored;
        let payload: &Value = match parsed.get(i).copied().flatten() {
            Some(value) => value,
            None => {
                stored = parse_payload(entry)?;
                &stored
            }
        };
        let event = LoggedEvent {
            event_id: &entry.event_id,
            event_type: &entry.event_type,
            created: entry.created,
            payload,
            origin: entry.origin,
        };
        let facts = decode(&event).map_err(|e| ProjectError::Event {
            event_id: entry.event_id.clone(),
            reason: e.to_string(),
        })?;
        // Our own re-fetched snapshots repair state; they announce nothing. A missed
        // announcement comes back through `sync-events` as Stripe's own event.
        if let Some(sink) = notifications.as_deref_mut() {
            if entry.event_type != OBJECT_SNAPSHOT {
                for n in ledger_projections::notifications(&event, &facts) {
                    sink.push((n, entry.event_id.clone()));
                }
            }
        }
        for fact in facts {
            let key: Key = (Kind::of(&fact), fact.id().to_owned());
            match merged.get_mut(&key) {
                Some(existing) => {
                    join(existing, fact);
                }
                None => {
                    merged.insert(key, fact);
                }
            }
        }
    }
    Ok(merged)
}

/// Parses a stored payload with the same strict parser ingestion used, so whatever was
/// appended parses again here.
fn parse_payload(entry: &Entry) -> Result<Value, ProjectError> {
    ledger_projections::envelope::parse_strict(&entry.payload)
        .map(|(value, _)| value)
        .map_err(|e| ProjectError::Event {
            event_id: entry.event_id.clone(),
            reason: format!("stored payload is not JSON: {e}"),
        })
}

/// Joins two facts about the same object (same kind by construction).
fn join(into: &mut Fact, other: Fact) -> bool {
    match (into, other) {
        (Fact::Customer(a), Fact::Customer(b)) => a.join(b),
        (Fact::Subscription(a), Fact::Subscription(b)) => a.join(b),
        (Fact::Invoice(a), Fact::Invoice(b)) => a.join(b),
        (Fact::Order(a), Fact::Order(b)) => a.join(b),
        (Fact::Payment(a), Fact::Payment(b)) => a.join(b),
        _ => false,
    }
}

/// Reads a stored state back into its typed form.
pub fn state_from_json(kind: Kind, json: &str) -> Result<Fact, StorageError> {
    let bad = |e: serde_json::Error| StorageError::invalid(format!("unreadable {kind} state: {e}"));
    Ok(match kind {
        Kind::Customer => Fact::Customer(serde_json::from_str::<CustomerState>(json).map_err(bad)?),
        Kind::Subscription => {
            Fact::Subscription(serde_json::from_str::<SubscriptionState>(json).map_err(bad)?)
        }
        Kind::Invoice => Fact::Invoice(serde_json::from_str::<InvoiceState>(json).map_err(bad)?),
        Kind::Order => Fact::Order(serde_json::from_str::<OrderState>(json).map_err(bad)?),
        Kind::Payment => Fact::Payment(serde_json::from_str::<PaymentState>(json).map_err(bad)?),
    })
}

/// The stored row of a state: its JSON and the columns the read API filters on.
pub fn row_of(fact: &Fact) -> Row {
    let (customer_id, user_id, status, state) = match fact {
        Fact::Customer(s) => (
            Some(s.id.clone()),
            s.user_id().map(str::to_owned),
            Some(if s.deleted() { "deleted" } else { "active" }.to_owned()),
            serde_json::to_string(s),
        ),
        Fact::Subscription(s) => (
            s.view().and_then(|v| v.customer.clone()),
            s.user_id().map(str::to_owned),
            s.status().map(str::to_owned),
            serde_json::to_string(s),
        ),
        Fact::Invoice(s) => (
            s.view().and_then(|v| v.customer.clone()),
            None,
            s.view().and_then(|v| v.status.clone()),
            serde_json::to_string(s),
        ),
        Fact::Order(s) => (
            s.view().and_then(|v| v.customer.clone()),
            s.user.as_ref().map(|l| l.value.clone()),
            Some(s.status().to_owned()),
            serde_json::to_string(s),
        ),
        Fact::Payment(s) => (
            s.customer.clone(),
            None,
            Some(
                if s.refunded {
                    "refunded"
                } else if s.succeeded_at.is_some() {
                    "succeeded"
                } else if s.last_failure.is_some() {
                    "failed"
                } else {
                    "pending"
                }
                .to_owned(),
            ),
            serde_json::to_string(s),
        ),
    };
    Row {
        kind: Kind::of(fact),
        id: fact.id().to_owned(),
        customer_id,
        user_id,
        status,
        state: state.expect("read-model states serialise"),
    }
}

/// Folds `facts` into `generation` inside `tx`: lock, load, join, write what changed.
async fn write_facts(
    tx: &mut Tx<'_>,
    generation: i64,
    facts: BTreeMap<Key, Fact>,
    lock: bool,
) -> Result<usize, ProjectError> {
    if facts.is_empty() {
        return Ok(0);
    }
    let keys: Vec<Key> = facts.keys().cloned().collect();
    // A rebuild writes a generation nobody else writes: no per-object locks needed.
    if lock {
        tx.lock_read_models(&keys).await?;
    }
    let mut existing: HashMap<Key, String> = tx.load_read_models(generation, &keys).await?;
    let mut rows = Vec::with_capacity(facts.len());
    for (key, fact) in facts {
        let row = match existing.remove(&key) {
            Some(json) => {
                let mut state = state_from_json(key.0, &json)?;
                if !join(&mut state, fact) {
                    continue;
                }
                row_of(&state)
            }
            None => row_of(&fact),
        };
        rows.push(row);
    }
    let written = rows.len();
    tx.upsert_read_models(generation, &rows).await?;
    Ok(written)
}

/// Projects entries into the active read models in one transaction.
pub async fn project(db: &Db, entries: &[Entry]) -> Result<(), ProjectError> {
    let mut tx = Tx::begin(db).await?;
    project_in(&mut tx, entries).await?;
    tx.commit().await?;
    Ok(())
}

/// Projects logged entries inside the caller's transaction and marks them projected.
pub async fn project_in(tx: &mut Tx<'_>, entries: &[Entry]) -> Result<(), ProjectError> {
    let generation = tx.active_generation().await?;
    fold_in(tx, generation, entries, &[]).await?;
    let ids: Vec<&str> = entries.iter().map(|e| e.event_id.as_str()).collect();
    let positions: Vec<i64> = entries.iter().map(|e| e.position).collect();
    tx.mark_projected(&positions, &ids).await?;
    Ok(())
}

/// Folds entries into `generation` and writes the notifications they cause.
async fn fold_in(
    tx: &mut Tx<'_>,
    generation: i64,
    entries: &[Entry],
    parsed: &[Option<&Value>],
) -> Result<(), ProjectError> {
    let mut notifications = Caused::new();
    let facts = facts_of_parsed(entries, parsed, Some(&mut notifications))?;
    write_facts(tx, generation, facts, true).await?;
    tx.enqueue_notifications(&notifications, chrono::Utc::now().timestamp())
        .await?;
    Ok(())
}

/// Ingestion's projection, before the entries are appended: folds each entry inside `tx`
/// behind a savepoint, together first, then one by one if that fails, so that one bad entry
/// neither fails the others nor the transaction. `tx` must come from `Tx::begin_ingest`, which
/// pins the generation until it ends (see `store::read_models::GENERATION_LOCK`). Marking entries projected and recording dead letters is
/// left to the caller, which learns the positions from the append. A storage error aborts
/// (the caller rolls back). `parsed[i]`, if given, is entry `i`'s payload already parsed.
pub async fn project_each_in(
    tx: &mut Tx<'_>,
    entries: &[Entry],
    parsed: &[Option<&Value>],
) -> Result<Vec<Result<(), String>>, StorageError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    // Pinned: `tx` comes from `Tx::begin_ingest`.
    let generation = tx.active_generation().await?;
    tx.execute("SAVEPOINT projection").await?;
    match fold_in(tx, generation, entries, parsed).await {
        Ok(()) => {
            tx.execute("RELEASE SAVEPOINT projection").await?;
            return Ok(entries.iter().map(|_| Ok(())).collect());
        }
        Err(ProjectError::Storage(e)) if e.is_transient() => return Err(e),
        Err(_) => tx.execute("ROLLBACK TO SAVEPOINT projection").await?,
    }
    let mut results = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        tx.execute("SAVEPOINT projection_one").await?;
        let one = parsed.get(i).copied().flatten();
        match fold_in(tx, generation, std::slice::from_ref(entry), &[one]).await {
            Ok(()) => {
                tx.execute("RELEASE SAVEPOINT projection_one").await?;
                results.push(Ok(()));
            }
            Err(ProjectError::Storage(e)) if e.is_transient() => return Err(e),
            Err(e) => {
                tx.execute("ROLLBACK TO SAVEPOINT projection_one").await?;
                // Logged by the request waiting for it, inside its span (request and event id).
                results.push(Err(e.to_string()));
            }
        }
    }
    tx.execute("RELEASE SAVEPOINT projection").await?;
    Ok(results)
}

/// Projects entries together, and if that fails, one by one, so one bad entry cannot hold
/// the others back. Failures are recorded as dead letters. Returns one result per entry.
pub async fn project_each(db: &Db, entries: &[Entry]) -> Vec<Result<(), ProjectError>> {
    if entries.is_empty() {
        return Vec::new();
    }
    match project(db, entries).await {
        Ok(()) => return entries.iter().map(|_| Ok(())).collect(),
        Err(e) if entries.len() == 1 => {
            record_failure(db, &entries[0], &e).await;
            return vec![Err(e)];
        }
        Err(_) => {}
    }
    let mut results = Vec::with_capacity(entries.len());
    for entry in entries {
        let result = project(db, std::slice::from_ref(entry)).await;
        if let Err(e) = &result {
            record_failure(db, entry, e).await;
        }
        results.push(result);
    }
    results
}

async fn record_failure(db: &Db, entry: &Entry, error: &ProjectError) {
    tracing::error!(event_id = %entry.event_id, event_type = %entry.event_type, error = %error, "projection failed");
    if let Err(e) =
        store::record_dead_letter(db, &entry.event_id, entry.position, &error.to_string()).await
    {
        tracing::error!(event_id = %entry.event_id, error = %e.report(), "could not record the dead letter");
    }
}

/// Re-projects every dead letter (the background retrier and `dead-letters retry --all`).
/// Returns (retried, still failing).
pub async fn retry_dead_letters(db: &Db) -> Result<(usize, usize), StorageError> {
    let dead = store::dead_letters(db).await?;
    let mut failing = 0;
    for letter in &dead {
        let Some(stored) = crate::event_log::get(db, &letter.event_id).await? else {
            continue;
        };
        let entry = Entry::from(&stored);
        if project_each(db, std::slice::from_ref(&entry)).await[0].is_err() {
            failing += 1;
        }
    }
    Ok((dead.len(), failing))
}

/// Re-projects one logged event (whether or not it is a dead letter). Returns (1, 0) on
/// success, (1, 1) when it still fails, (0, 0) when the log has no such event.
pub async fn retry_dead_letter(db: &Db, event_id: &str) -> Result<(usize, usize), StorageError> {
    let Some(stored) = crate::event_log::get(db, event_id).await? else {
        return Ok((0, 0));
    };
    let entry = Entry::from(&stored);
    let failed = project_each(db, std::slice::from_ref(&entry)).await[0].is_err();
    Ok((1, usize::from(failed)))
}

impl From<&crate::event_log::StoredEvent> for Entry {
    fn from(e: &crate::event_log::StoredEvent) -> Self {
        Entry {
            position: e.position,
            event_id: e.event_id.clone(),
            event_type: e.event_type.clone(),
            created: e.stripe_created,
            payload: e.payload.clone().unwrap_or_default(),
            origin: origin_of(e.source),
        }
    }
}
