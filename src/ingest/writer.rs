//! The ingest writer: group commit of appends, projection of what was appended, and a cache
//! of recently logged ids.
//!
//! Every append is a commit, and a commit is an fsync. Under concurrent deliveries the
//! appender gathers whatever is waiting into one batch, so many events share one commit; with
//! a single delivery in flight it writes immediately, adding no latency. Right after the append
//! commits, the batch's events are projected (one transaction for the batch, or one per event
//! if that fails), so a 200 means the read models already reflect the event. An event whose
//! projection fails stays logged, is recorded as a dead letter, and its request fails so
//! Stripe retries; a retry finds it logged and projects it again.
//!
//! Stripe's retries usually come back to the instance that logged the event, so ids this
//! instance has committed and projected are remembered (a bounded FIFO set): such a duplicate is answered
//! without touching the database. The cache only ever holds ids whose append has committed,
//! and the log never forgets an id, so a hit is always right; a miss falls through to the
//! unique constraint, which stays the arbiter across instances.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex};

use tokio::sync::{mpsc, oneshot, Mutex};

use crate::db::Db;
use crate::event_log::{self, append_batch, AppendOutcome, NewEntry, StorageError};
use crate::projector::{self, Entry};

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
        if let Some((position, sha)) = self.seen.get(&entry.envelope.id) {
            return Ok(AppendOutcome::Duplicate {
                position,
                same_body: sha == body_tag(&entry.raw_body_sha256),
            });
        }
        let (reply, outcome) = oneshot::channel();
        self.queue
            .send(Pending { entry, reply })
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
    WriteError::Storage(StorageError::Unavailable(why.to_owned()))
}

async fn write(db: &Db, batch: Vec<Pending>, seen: &SeenIds) {
    let entries: Vec<&NewEntry> = batch.iter().map(|p| &p.entry).collect();
    let appended: Vec<Result<AppendOutcome, StorageError>> = match append_batch(db, &entries).await
    {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        // A permanent failure may be one bad entry: retry one by one so the others land and
        // only the culprit fails.
        Err(e) if !e.is_transient() && batch.len() > 1 => {
            tracing::warn!(error = %e, size = batch.len(), "batch append failed; retrying entries one by one");
            let mut one_by_one = Vec::with_capacity(batch.len());
            for pending in &batch {
                one_by_one.push(append_batch(db, &[&pending.entry]).await.map(|o| o[0]));
            }
            one_by_one
        }
        Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
    };

    // Project what is logged: new entries from this batch, and duplicates from the database
    // (their first projection may have failed or still be in flight; joins are idempotent, so
    // projecting again is always safe). Duplicates use the stored payload, which is what a
    // rebuild will see.
    let mut to_project: Vec<(usize, Entry)> = Vec::new();
    for (i, (pending, outcome)) in batch.iter().zip(&appended).enumerate() {
        match outcome {
            Ok(AppendOutcome::Appended { position }) => {
                to_project.push((i, entry_of(&pending.entry, *position)))
            }
            Ok(AppendOutcome::Duplicate { .. }) => {
                match event_log::get(db, &pending.entry.envelope.id).await {
                    Ok(Some(stored)) => to_project.push((i, Entry::from(&stored))),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "could not load a duplicate for re-projection")
                    }
                }
            }
            Err(_) => {}
        }
    }
    let entries: Vec<Entry> = to_project.iter().map(|(_, e)| e.clone()).collect();
    let projected = projector::project_each(db, &entries).await;
    let mut projection: Vec<Option<Result<(), WriteError>>> = vec![None; batch.len()];
    for ((i, _), result) in to_project.iter().zip(projected) {
        projection[*i] = Some(result.map_err(|e| match e {
            // The database is unreachable, not the event at fault: "retry later", like an
            // append failure.
            projector::ProjectError::Storage(e) if e.is_transient() => WriteError::Storage(e),
            e => WriteError::Projection(e.to_string()),
        }));
    }

    let mut committed = Vec::new();
    for ((pending, outcome), projected) in batch.into_iter().zip(appended).zip(projection) {
        let reply = match (outcome, projected) {
            (Err(e), _) => Err(WriteError::Storage(e)),
            (Ok(_), Some(Err(e))) => Err(e),
            (Ok(outcome), _) => {
                committed.push((
                    pending.entry.envelope.id.clone(),
                    pending.entry.raw_body_sha256.clone(),
                    outcome.position(),
                ));
                Ok(outcome)
            }
        };
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
