//! Group commit for webhook appends, with a cache of recently logged ids.
//!
//! Every append is a commit, and a commit is an fsync. Under concurrent deliveries the
//! appender gathers whatever is waiting into one batch, so many events share one commit; with
//! a single delivery in flight it writes immediately, adding no latency.
//!
//! Stripe's retries usually come back to the instance that logged the event, so ids this
//! instance has committed are remembered (a bounded FIFO set): such a duplicate is answered
//! without touching the database. The cache only ever holds ids whose append has committed,
//! and the log never forgets an id, so a hit is always right; a miss falls through to the
//! unique constraint, which stays the arbiter across instances.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex};

use tokio::sync::{mpsc, oneshot, Mutex};

use super::{append_batch, AppendOutcome, NewEntry, StorageError};
use crate::db::Db;

/// Most entries written in one batch: bounds statement size and the time a batch holds locks.
const MAX_BATCH: usize = 128;

pub const DEFAULT_SEEN_CACHE_SIZE: usize = 16_384;

struct Pending {
    entry: NewEntry,
    reply: oneshot::Sender<Result<AppendOutcome, StorageError>>,
}

#[derive(Clone)]
pub struct Appender {
    queue: mpsc::Sender<Pending>,
    seen: Arc<SeenIds>,
}

impl Appender {
    /// Starts the writer tasks. PostgreSQL gets two, so one batch can form while the previous
    /// one commits; SQLite has one writer connection and so one task. `seen_capacity` 0
    /// disables the cache.
    pub fn start(db: Db, seen_capacity: usize) -> Appender {
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
        Appender { queue, seen }
    }

    /// Appends `entry` unless its id is already logged; see [`super::append`].
    pub async fn append(&self, entry: NewEntry) -> Result<AppendOutcome, StorageError> {
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
            .map_err(|_| StorageError::Unavailable("the appender has stopped".to_owned()))?;
        outcome
            .await
            .map_err(|_| StorageError::Unavailable("the appender dropped the request".to_owned()))?
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

async fn write(db: &Db, batch: Vec<Pending>, seen: &SeenIds) {
    let entries: Vec<&NewEntry> = batch.iter().map(|p| &p.entry).collect();
    match append_batch(db, &entries).await {
        Ok(outcomes) => {
            seen.remember(batch.iter().zip(&outcomes).filter_map(|(p, o)| match o {
                AppendOutcome::Appended { position } => Some((&p.entry, *position)),
                AppendOutcome::Duplicate { .. } => None,
            }));
            for (pending, outcome) in batch.into_iter().zip(outcomes) {
                let _ = pending.reply.send(Ok(outcome));
            }
        }
        // A permanent failure may be one bad entry: retry one by one so the others land and
        // only the culprit fails.
        Err(e) if !e.is_transient() && batch.len() > 1 => {
            tracing::warn!(error = %e, size = batch.len(), "batch append failed; retrying entries one by one");
            for pending in batch {
                let outcome = append_batch(db, &[&pending.entry]).await.map(|o| o[0]);
                if let Ok(AppendOutcome::Appended { position }) = outcome {
                    seen.remember(std::iter::once((&pending.entry, position)));
                }
                let _ = pending.reply.send(outcome);
            }
        }
        Err(e) => {
            for pending in batch {
                let _ = pending.reply.send(Err(e.clone()));
            }
        }
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

    fn remember<'a>(&self, committed: impl Iterator<Item = (&'a NewEntry, i64)>) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Fifo { map, order } = &mut *inner;
        for (entry, position) in committed {
            let id: Box<str> = entry.envelope.id.as_str().into();
            if map
                .insert(id.clone(), (position, body_tag(&entry.raw_body_sha256)))
                .is_none()
            {
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
