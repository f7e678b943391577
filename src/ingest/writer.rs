//! The ingest writer: group commit of appends, projection of what was appended, and a cache
//! of recently logged ids.
//!
//! Every append is a commit, and a commit is an fsync. Under concurrent deliveries the
//! appender gathers whatever is waiting into one batch, so many events share one commit; with
//! a single delivery in flight it writes immediately, adding no latency. The batch's events are
//! projected in the same transaction that appends them, just before the append (behind
//! savepoints, together and then one by one if that fails; ADR 10), so a 200 means the read
//! models already reflect the event. An
//! event whose projection fails is still logged, is recorded as a dead letter in that same
//! transaction, and its request fails so Stripe retries; a retry finds it logged and projects
//! it again.
//!
//! Stripe's retries usually come back to the instance that logged the event, so ids this
//! instance has committed and projected are remembered (a bounded FIFO set): such a duplicate is answered
//! without touching the database. The cache only ever holds ids whose append has committed,
//! and the log never forgets an id, so a hit is always right; a miss falls through to the
//! unique constraint, which stays the arbiter across instances.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex};

use tokio::sync::{mpsc, oneshot, Mutex};

use crate::event_log::{self, AppendOutcome, NewEntry};
use crate::projector::{self, Entry};
use crate::store::read_models::ReadModelTx as _;
use crate::store::Db;
use crate::store::StorageError;

/// Most entries written in one batch: bounds statement size and the time a batch holds locks.
const MAX_BATCH: usize = 128;

pub const DEFAULT_SEEN_CACHE_SIZE: usize = 16_384;

/// Why an event could not be acknowledged.
#[derive(Debug, Clone)]
pub enum WriteError {
    /// Not durably logged (or not known to be): retry.
    Storage(StorageError),
    /// Logged, but its projection failed; recorded as a dead letter.
    Projection(String),
}

struct Pending {
    entry: NewEntry,
    /// The body as ingestion parsed (and redacted) it, so the projection need not parse the
    /// payload again; `None` makes it parse `entry.payload`.
    parsed: Option<serde_json::Value>,
    reply: oneshot::Sender<Result<AppendOutcome, WriteError>>,
}

#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Pending>,
    seen: Arc<SeenIds>,
}

impl Writer {
    /// Starts the writer tasks. PostgreSQL gets two, so one batch can form while the previous
    /// one commits; SQLite has one writer connection and so one task. `seen_capacity` 0
    /// disables the cache.
    pub fn start(db: Db, seen_capacity: usize) -> Writer {
        let (queue, receiver) = mpsc::channel::<Pending>(4 * MAX_BATCH);
        let receiver = Arc::new(Mutex::new(receiver));
        let seen = Arc::new(SeenIds::new(seen_capacity));
        let writers = match db {
            Db::Postgres(_) => 2,
            Db::Sqlite(_) => 1,
        };
        for _ in 0..writers {
            tokio::spawn(write_loop(db.clone(), receiver.clone(), seen.clone()));
        }
        Writer { queue, seen }
    }

    /// Appends `entry` unless its id is already logged, and makes sure it is projected.
    pub async fn append(&self, entry: NewEntry) -> Result<AppendOutcome, WriteError> {
        self.send(entry, None).await
    }

    /// `append` for an entry whose payload is `parsed` (after redaction): the projection folds
    /// that value instead of parsing the payload again.
    pub async fn append_parsed(
        &self,
        entry: NewEntry,
        parsed: serde_json::Value,
    ) -> Result<AppendOutcome, WriteError> {
        self.send(entry, Some(parsed)).await
    }

    async fn send(
        &self,
        entry: NewEntry,
        parsed: Option<serde_json::Value>,
    ) -> Result<AppendOutcome, WriteError> {
        if let Some((position, sha)) = self.seen.get(&entry.envelope.id) {
            return Ok(AppendOutcome::Duplicate {
                position,
                same_body: sha == body_tag(&entry.raw_body_sha256),
            });
        }
        let (reply, outcome) = oneshot::channel();
        self.queue
            .send(Pending {
                entry,
                parsed,
                reply,
            })
            .await
            .map_err(|_| unavailable("the writer has stopped"))?;
        outcome
            .await
            .map_err(|_| unavailable("the writer dropped the request"))?
    }
}

async fn write_loop(db: Db, receiver: Arc<Mutex<mpsc::Receiver<Pending>>>, seen: Arc<SeenIds>) {
    loop {
        let batch = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            batch
        };
        // A request whose caller gave up (timeout) is still written: Stripe will retry it and
        // then find it already logged.
        write(&db, batch, &seen).await;
    }
}

fn unavailable(why: &str) -> WriteError {
    WriteError::Storage(StorageError::interrupted(why))
}

async fn write(db: &Db, batch: Vec<Pending>, seen: &SeenIds) {
    match write_together(db, &batch).await {
        Ok(replies) => reply(batch, replies, seen),
        // A permanent failure may be one bad entry: retry one by one so the others land and
        // only the culprit fails.
        Err(e) if !e.is_transient() && batch.len() > 1 => {
            tracing::warn!(error = %e.report(), size = batch.len(), "batch append failed; retrying entries one by one");
            for pending in batch {
                let replies = match write_together(db, std::slice::from_ref(&pending)).await {
                    Ok(replies) => replies,
                    Err(e) => vec![Err(WriteError::Storage(e))],
                };
                reply(vec![pending], replies, seen);
            }
        }
        Err(e) => {
            let replies = batch
                .iter()
                .map(|_| Err(WriteError::Storage(e.clone())))
                .collect();
            reply(batch, replies, seen);
        }
    }
}

/// Projects the batch and appends it in one transaction: one commit, and a 200 means both.
///
/// The projection runs first and the append last, because the append takes the lock that
/// serialises every append until commit (see `event_log::APPEND_LOCK`): with the projection
/// before it, only the append itself and the commit are serialised, and two batches can
/// project at the same time. An entry already in the log is projected again from its stored
/// payload (its first projection may have failed or still be in flight; joins are
/// idempotent), which is how Stripe's retry heals a failed projection.
async fn write_together(
    db: &Db,
    batch: &[Pending],
) -> Result<Vec<Result<AppendOutcome, WriteError>>, StorageError> {
    let mut tx = crate::store::Tx::begin_ingest(db).await?;
    let ids: Vec<&str> = batch.iter().map(|p| p.entry.envelope.id.as_str()).collect();
    let logged = event_log::logged_in(&mut tx, &ids).await?;
    // One projection per distinct id: what is logged if it is, else what arrived.
    let mut to_project: Vec<Entry> = Vec::new();
    let mut parsed: Vec<Option<&serde_json::Value>> = Vec::new();
    let mut index_of: HashMap<&str, usize> = HashMap::new();
    for pending in batch {
        let id = pending.entry.envelope.id.as_str();
        if index_of.contains_key(id) {
            continue;
        }
        index_of.insert(id, to_project.len());
        // A logged entry is projected from its stored payload, which may differ from this body.
        parsed.push(match logged.get(id) {
            Some(_) => None,
            None => pending.parsed.as_ref(),
        });
        to_project.push(match logged.get(id) {
            Some(l) => Entry {
                position: l.position,
                event_id: id.to_owned(),
                event_type: l.event_type.clone(),
                created: l.stripe_created,
                payload: l.payload.clone(),
                // The writer logs webhooks; a Stripe `evt_` id never names our own entries.
                origin: ledger_projections::Origin::Stripe,
            },
            // The position is the append's to give; the fold does not read it.
            None => entry_of(&pending.entry, 0),
        });
    }
    let projected = projector::project_each_in(&mut tx, &to_project, &parsed).await?;

    let mut marks = event_log::Projected::default();
    for (entry, result) in to_project.iter().zip(&projected) {
        if result.is_ok() {
            marks.event_ids.push(entry.event_id.as_str());
            if let Some(l) = logged.get(&entry.event_id) {
                marks.positions.push(l.position);
            }
        }
    }
    // Entries the look-up found are duplicates already; only the others go to the append.
    let fresh: Vec<&NewEntry> = batch
        .iter()
        .map(|p| &p.entry)
        .filter(|e| !logged.contains_key(&e.envelope.id))
        .collect();
    let mut appended = if fresh.is_empty() {
        // Only retries: nothing to append, so no append lock to take.
        tx.mark_projected(&marks.positions, &marks.event_ids)
            .await?;
        Vec::new()
    } else {
        event_log::append_projected_in(&mut tx, &fresh, &marks).await?
    }
    .into_iter();
    let outcomes: Vec<AppendOutcome> = batch
        .iter()
        .map(|p| match logged.get(&p.entry.envelope.id) {
            Some(l) => AppendOutcome::Duplicate {
                position: l.position,
                same_body: l.raw_body_sha256 == p.entry.raw_body_sha256,
            },
            None => appended
                .next()
                .expect("one outcome per appended entry, in order"),
        })
        .collect();
    // The first occurrence of each id is the body that was projected.
    let mut positions: HashMap<&str, i64> = HashMap::new();
    for (pending, outcome) in batch.iter().zip(&outcomes) {
        let id = pending.entry.envelope.id.as_str();
        if positions.insert(id, outcome.position()).is_some() {
            continue;
        }
        if let AppendOutcome::Duplicate {
            same_body: false, ..
        } = outcome
        {
            if !logged.contains_key(id) {
                // Another instance logged this id, with another body, between our look-up
                // and our append: what we projected is not what the log holds. Undo; Stripe's
                // retry will project the logged one.
                return Err(StorageError::interrupted(format!(
                    "event {id} was logged concurrently with a different body"
                )));
            }
        }
    }
    // Failures become dead letters now that their positions are known.
    for (entry, result) in to_project.iter().zip(&projected) {
        if let Err(error) = result {
            let position = positions[entry.event_id.as_str()];
            tx.record_dead_letter(&entry.event_id, position, error)
                .await?;
        }
    }
    tx.commit().await?;
    let mut replies: Vec<Result<AppendOutcome, WriteError>> =
        outcomes.into_iter().map(Ok).collect();
    for (pending, reply) in batch.iter().zip(replies.iter_mut()) {
        let index = index_of[pending.entry.envelope.id.as_str()];
        if let Err(e) = &projected[index] {
            *reply = Err(WriteError::Projection(e.clone()));
        }
    }
    Ok(replies)
}

fn reply(batch: Vec<Pending>, replies: Vec<Result<AppendOutcome, WriteError>>, seen: &SeenIds) {
    let mut committed = Vec::new();
    for (pending, reply) in batch.into_iter().zip(replies) {
        if let Ok(outcome) = &reply {
            committed.push((
                pending.entry.envelope.id.clone(),
                pending.entry.raw_body_sha256.clone(),
                outcome.position(),
            ));
        }
        let _ = pending.reply.send(reply);
    }
    seen.remember(committed);
}

fn entry_of(entry: &NewEntry, position: i64) -> Entry {
    Entry {
        position,
        event_id: entry.envelope.id.clone(),
        event_type: entry.envelope.event_type.clone(),
        created: entry.envelope.created,
        payload: entry.payload.clone(),
        origin: crate::projector::origin_of(entry.source),
    }
}

/// First 8 bytes of the body hash: enough to tell "same body" for the duplicate warning.
fn body_tag(raw_body_sha256: &str) -> u64 {
    u64::from_str_radix(raw_body_sha256.get(..16).unwrap_or("0"), 16).unwrap_or(0)
}

/// A bounded FIFO set of committed event ids with their positions.
struct SeenIds {
    capacity: usize,
    inner: StdMutex<Fifo>,
}

#[derive(Default)]
struct Fifo {
    /// Event id → (position, body tag).
    map: HashMap<Box<str>, (i64, u64)>,
    /// Insertion order, for eviction.
    order: VecDeque<Box<str>>,
}

impl SeenIds {
    fn new(capacity: usize) -> Self {
        SeenIds {
            capacity,
            inner: StdMutex::new(Fifo::default()),
        }
    }

    fn get(&self, id: &str) -> Option<(i64, u64)> {
        if self.capacity == 0 {
            return None;
        }
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.map.get(id).copied()
    }

    /// Remembers (event id, raw body hash, position) of entries logged and projected.
    fn remember(&self, committed: Vec<(String, String, i64)>) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Fifo { map, order } = &mut *inner;
        for (id, sha, position) in committed {
            let id: Box<str> = id.into();
            if map.insert(id.clone(), (position, body_tag(&sha))).is_none() {
                order.push_back(id);
            }
            while order.len() > self.capacity {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
    }
}
