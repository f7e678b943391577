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

use crate::store::history::Touch;
use crate::store::ingest::{BatchWrite, IngestSession, Versioned, VersionedRow};
use crate::store::read_models::{Key, Row};
use crate::store::{Db, Kind, StorageError};

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
    touched: &mut Vec<Touch>,
) -> Result<BTreeMap<Key, Fact>, ProjectError> {
    let mut merged: BTreeMap<Key, Fact> = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let decoded = decode_entry(entry, parsed.get(i).copied().flatten())?;
        touched.extend(touches(&entry.event_id, &decoded));
        if let Some(sink) = notifications.as_deref_mut() {
            for n in decoded.notifications {
                sink.push((n, entry.event_id.clone()));
            }
        }
        merge(&mut merged, decoded.facts);
    }
    Ok(merged)
}

/// Joins `facts` into `merged`, per object.
fn merge(merged: &mut BTreeMap<Key, Fact>, facts: Vec<Fact>) {
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

/// One entry decoded: the facts it states and the notifications it causes.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub facts: Vec<Fact>,
    pub notifications: Vec<Notification>,
}

impl Decoded {
    /// The objects this entry touches.
    pub fn keys(&self) -> impl Iterator<Item = Key> + '_ {
        self.facts.iter().map(|f| (Kind::of(f), f.id().to_owned()))
    }
}

/// The `object_touches` rows of one projected entry (docs/adr/0019): every object its facts are
/// about.
pub fn touches<'a>(event_id: &'a str, decoded: &'a Decoded) -> impl Iterator<Item = Touch> + 'a {
    decoded.keys().map(move |(kind, object_id)| Touch {
        kind,
        object_id,
        event_id: event_id.to_owned(),
    })
}

/// Decodes one entry, from `parsed` if given (ingestion's one parse, ADR 12), else from its
/// stored payload. A pure step: no storage, so ingestion runs it between its read and its write.
pub fn decode_entry(entry: &Entry, parsed: Option<&Value>) -> Result<Decoded, ProjectError> {
    let stored;
    let payload: &Value = match parsed {
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
    let notifications = if entry.event_type == OBJECT_SNAPSHOT {
        Vec::new()
    } else {
        ledger_projections::notifications(&event, &facts)
    };
    Ok(Decoded {
        facts,
        notifications,
    })
}

/// What folding a batch gives: the rows to write, each with the version it was folded from,
/// and per entry, why it could not be projected (`None`: it was).
#[derive(Debug, Clone, Default)]
pub struct Folded {
    pub rows: Vec<VersionedRow>,
    pub failures: Vec<Option<ProjectError>>,
}

/// Folds decoded entries into the stored `states` (as read, with their versions), in memory.
/// An entry that did not decode, or touches an object whose stored state cannot be read, fails
/// alone (a dead letter); the others are folded. Rows that would not change are not written:
/// a join that changes nothing now changes nothing later either (states only grow).
pub fn fold_batch(
    decoded: &[&Result<Decoded, ProjectError>],
    states: &HashMap<Key, Versioned>,
) -> Folded {
    let mut readable: HashMap<&Key, Result<Fact, StorageError>> = HashMap::new();
    let mut failures = Vec::with_capacity(decoded.len());
    let mut merged: BTreeMap<Key, Fact> = BTreeMap::new();
    for entry in decoded {
        let d = match entry {
            Ok(d) => d,
            Err(e) => {
                failures.push(Some(e.clone()));
                continue;
            }
        };
        let mut unreadable = None;
        for key in d.keys() {
            if let Some((stored_key, v)) = states.get_key_value(&key) {
                let state = readable
                    .entry(stored_key)
                    .or_insert_with(|| state_from_json(key.0, &v.state));
                if let Err(e) = state {
                    unreadable = Some(ProjectError::Storage(e.clone()));
                }
            }
        }
        if unreadable.is_some() {
            failures.push(unreadable);
            continue;
        }
        failures.push(None);
        merge(&mut merged, d.facts.clone());
    }
    let mut rows = Vec::with_capacity(merged.len());
    for (key, fact) in merged {
        let row = match (readable.remove(&key), states.get(&key)) {
            (Some(Ok(mut state)), Some(v)) => {
                if !join(&mut state, fact) {
                    continue;
                }
                VersionedRow {
                    row: row_of(&state),
                    expected: v.version,
                }
            }
            _ => VersionedRow {
                row: row_of(&fact),
                expected: 0,
            },
        };
        rows.push(row);
    }
    Folded { rows, failures }
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

/// Joins two facts about the same object (same kind by construction): the one join, shared
/// with the history fold.
fn join(into: &mut Fact, other: Fact) -> bool {
    ledger_projections::join_fact(into, other)
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

/// How often a batch is read and folded again after losing a race (a version that moved under
/// it) before its requests get 503 and Stripe retries.
pub const MAX_ATTEMPTS: u32 = 16;

/// Projects logged entries into the active read models and marks them projected: read the
/// states, fold, write where the versions are still the ones read (docs/adr/0016), again from
/// a fresh read if another writer got there first.
pub async fn project(db: &Db, entries: &[Entry]) -> Result<(), ProjectError> {
    let mut notifications = Caused::new();
    let mut touched = Vec::new();
    let facts = facts_of_parsed(entries, &[], Some(&mut notifications), &mut touched)?;
    let keys: Vec<Key> = facts.keys().cloned().collect();
    let decoded = Ok(Decoded {
        facts: facts.into_values().collect(),
        notifications: Vec::new(),
    });
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut session = IngestSession::open(db).await?;
        let read = session.read(&[], &keys).await?;
        let folded = fold_batch(&[&decoded], &read.states);
        if let Some(Some(error)) = folded.failures.into_iter().next() {
            return Err(error);
        }
        let batch = BatchWrite {
            generation: read.generation,
            rows: folded.rows,
            notifications: notifications.clone(),
            now: chrono::Utc::now().timestamp(),
            projected_ids: entries.iter().map(|e| e.event_id.as_str()).collect(),
            projected_logged: entries.iter().map(|e| e.position).collect(),
            touches: touched.clone(),
            ..Default::default()
        };
        match session.write(&batch).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_conflict() && attempt < MAX_ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
        }
    }
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
