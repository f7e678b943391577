//! The ingest writer: group commit of appends, projection of what was appended, and a cache
//! of recently logged ids.
//!
//! Every append is a commit, and a commit is an fsync. Under concurrent deliveries the
//! appender gathers whatever is waiting into one batch, so many events share one commit; with
//! a single delivery in flight it writes immediately, adding no latency. The batch's events are
//! projected and appended in one write that commits both (ADR 10, ADR 16), so a 200 means the
//! read models already reflect the event: read the states without locks, fold in memory, write
//! where the versions are still the ones read (else read and fold again). An event whose
//! projection fails is still logged, is recorded as a dead letter in that same write, and its
//! request fails so Stripe retries; a retry finds it logged and projects it again.
//!
//! A batch about objects the writer just wrote, or new ones, is folded from what the writer
//! remembers ([`KnownStates`]) and written without the read; the write checks that guess and a
//! wrong one is read and folded again (docs/adr/0024).
//!
//! Stripe's retries usually come back to the instance that logged the event, so ids this
//! instance has committed and projected are remembered with their logged body's hash (a bounded
//! FIFO set): such a duplicate is answered without touching the database. The cache only ever
//! holds ids whose append has committed, each with the hash of the body the log holds (never
//! that of a different body sent under the same id, docs/adr/0031), and the log never forgets
//! an id, so a hit is always right; a miss falls through to the unique constraint, which stays
//! the arbiter across instances.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::known_states::KnownStates;
use crate::event_log::{AppendOutcome, Logged, NewEntry};
use crate::projector::{self, Decoded, Entry, ProjectError};
use crate::store::event_log::Inserted;
use crate::store::ingest::{BatchRead, BatchWrite, FailedEntry, IngestSession, VersionedRow};
use crate::store::read_models::Key;
use crate::store::Db;
use crate::store::StorageError;

/// Most entries written in one batch: bounds statement size and the time a batch holds locks.
const MAX_BATCH: usize = 128;

pub const DEFAULT_SEEN_CACHE_SIZE: usize = 16_384;

/// Bytes of read-model states the writer remembers to fold the next batch without a read
/// (docs/adr/0024).
pub const DEFAULT_KNOWN_STATES_BYTES: usize = 8 << 20;

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
    /// Starts the writer task. One per instance, on both backends: a batch's append waits for
    /// the previous batch's commit anyway (PostgreSQL's append lock, SQLite's one writer
    /// connection), so a second task (PostgreSQL had two) only split what was waiting into
    /// smaller batches. With one, PostgreSQL carried about 15 % more events at 16 concurrent
    /// deliveries for 30 % less CPU per event (README, "Performance"). `seen_capacity` 0
    /// disables the cache of ids; `known_states` with a budget of 0 makes every batch read
    /// first.
    pub fn start(db: Db, seen_capacity: usize, known: KnownStates) -> Writer {
        let (queue, receiver) = mpsc::channel::<Pending>(4 * MAX_BATCH);
        let seen = Arc::new(SeenIds::new(seen_capacity));
        tokio::spawn(write_loop(db, receiver, seen.clone(), known));
        Writer { queue, seen }
    }

    /// The position of `event_id` if this instance committed and projected it from a body with
    /// this hash (as far as the cache remembers).
    pub fn logged_with_body(&self, event_id: &str, raw_body_sha256: &str) -> Option<i64> {
        let (position, tag) = self.seen.get(event_id)?;
        (tag == body_tag(raw_body_sha256)).then_some(position)
    }

    /// Whether a body with this hash may be one this instance committed and projected: `false`
    /// means [`Writer::logged_with_body`] is `None` for every id, so the id need not be read.
    pub fn may_have_logged_body(&self, raw_body_sha256: &str) -> bool {
        self.seen.has_body(&body_tag(raw_body_sha256))
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

/// A writer keeps its connection from one batch to the next while requests are waiting (or
/// arrive within [`HOLD_WHILE_IDLE`]), for at most this long; then it gives it back, so that
/// the other writers of a SQLite database (sealer, projector, jobs), queued for its only writer
/// connection, get their turn.
///
/// Giving a connection back costs sqlx's check of it (a request to SQLite's worker thread, a
/// round trip to PostgreSQL) and taking it again waits for that check: under load that was
/// a fifth of a SQLite batch's time (README, "Performance").
const HOLD_CONNECTION_AT_MOST: Duration = Duration::from_millis(25);

/// How long a writer with nothing to do keeps its connection, in case the next request is about
/// to arrive.
const HOLD_WHILE_IDLE: Duration = Duration::from_millis(5);

/// A connection kept between batches, and since when.
struct Held {
    session: IngestSession,
    since: Instant,
}

async fn write_loop(
    db: Db,
    mut receiver: mpsc::Receiver<Pending>,
    seen: Arc<SeenIds>,
    mut known: KnownStates,
) {
    let mut held: Option<Held> = None;
    loop {
        let first = match receiver.try_recv() {
            Ok(first) => first,
            Err(_) => match next_request(&mut receiver, &mut held).await {
                Some(first) => first,
                None => return,
            },
        };
        let batch = collect(first, &mut receiver);
        if held
            .as_ref()
            .is_some_and(|h| h.since.elapsed() >= HOLD_CONNECTION_AT_MOST)
        {
            held = None;
        }
        // A request whose caller gave up (timeout) is still written: Stripe will retry it and
        // then find it already logged.
        write(&db, batch, &seen, &mut held, &mut known, &|| {
            receiver.is_empty()
        })
        .await;
    }
}

/// Waits for the next request when none is waiting. With a connection held, first for a
/// moment with it (a steady stream of deliveries, one at a time, sends the next one within a
/// millisecond or two of the last reply), then gives it back and waits without it: an idle
/// writer holds no connection.
async fn next_request(
    receiver: &mut mpsc::Receiver<Pending>,
    held: &mut Option<Held>,
) -> Option<Pending> {
    if let Some(h) = held {
        let left = HOLD_CONNECTION_AT_MOST
            .saturating_sub(h.since.elapsed())
            .min(HOLD_WHILE_IDLE);
        if let Ok(next) = tokio::time::timeout(left, receiver.recv()).await {
            return next;
        }
    }
    *held = None;
    receiver.recv().await
}

fn collect(first: Pending, receiver: &mut mpsc::Receiver<Pending>) -> Vec<Pending> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match receiver.try_recv() {
            Ok(p) => batch.push(p),
            Err(_) => break,
        }
    }
    batch
}

/// Writes `entries` (each with its parsed body, if any) as one batch, exactly as a writer task
/// writes what it took from the queue, without the queue and the caches (so it reads before
/// it writes): one outcome per entry, in order. For tests and tools that need a batch of a
/// known size.
pub async fn write_batch(
    db: &Db,
    entries: Vec<(NewEntry, Option<serde_json::Value>)>,
) -> Vec<Result<AppendOutcome, WriteError>> {
    write_batch_knowing(db, &mut KnownStates::new(0), entries).await
}

/// [`write_batch`] with a writer's memory of states, which the batch may fold from instead of
/// reading, and which it updates.
pub async fn write_batch_knowing(
    db: &Db,
    known: &mut KnownStates,
    entries: Vec<(NewEntry, Option<serde_json::Value>)>,
) -> Vec<Result<AppendOutcome, WriteError>> {
    let mut batch = Vec::with_capacity(entries.len());
    let mut outcomes = Vec::with_capacity(entries.len());
    for (entry, parsed) in entries {
        let (reply, outcome) = oneshot::channel();
        batch.push(Pending {
            entry,
            parsed,
            reply,
        });
        outcomes.push(outcome);
    }
    write(db, batch, &SeenIds::new(0), &mut None, known, &|| true).await;
    let mut results = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        results.push(
            outcome
                .await
                .unwrap_or_else(|_| Err(unavailable("the writer dropped the request"))),
        );
    }
    results
}

fn unavailable(why: &str) -> WriteError {
    WriteError::Storage(StorageError::interrupted(why))
}

/// `idle` tells, once the batch is written, whether no request is waiting for the next one.
async fn write(
    db: &Db,
    batch: Vec<Pending>,
    seen: &SeenIds,
    held: &mut Option<Held>,
    known: &mut KnownStates,
    idle: &(dyn Fn() -> bool + Sync),
) {
    match write_together(db, &batch, held, known).await {
        Ok(written) => {
            let rest = reply(batch, written.replies, seen);
            if idle() {
                tokio::task::yield_now().await;
            }
            after_replies(known, written.learned, (rest, written.spent));
        }
        // A permanent failure may be one bad entry: retry one by one so the others land and
        // only the culprit fails.
        Err(e) if !e.is_transient() && batch.len() > 1 => {
            tracing::warn!(error = %e.report(), size = batch.len(), "batch append failed; retrying entries one by one");
            for pending in batch {
                let one = std::slice::from_ref(&pending);
                match write_together(db, one, held, known).await {
                    Ok(written) => {
                        let rest = reply(vec![pending], written.replies, seen);
                        after_replies(known, written.learned, (rest, written.spent));
                    }
                    Err(e) => {
                        reply(vec![pending], vec![Err(WriteError::Storage(e))], seen);
                    }
                }
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

/// What a committed batch leaves behind once its replies are sent: what the writer learns from
/// it, and what it decoded and folded.
struct Written {
    replies: Vec<Result<AppendOutcome, WriteError>>,
    learned: Learned,
    spent: Spent,
}

/// The states a committed batch wrote, to fold the next batch from (docs/adr/0024).
struct Learned {
    generation: i64,
    rows: Vec<VersionedRow>,
    guessed: bool,
}

/// A batch's decoded bodies and fold, freed after its replies.
type Spent = (Vec<Result<Decoded, ProjectError>>, Folded);

/// Learns the states a batch wrote and frees the batch, once its replies are sent.
///
/// With no request waiting, the writer first yields: on the server's one-thread runtime the
/// callers' tasks answer their clients only when it does, and a yielded task resumes only once
/// no other task is ready. Learning and freeing (a batch's parsed bodies are thousands of
/// allocations) then happen while the client reads its answer, not before. With requests
/// waiting, the next batch's write goes out first instead, and the answers are written while
/// the database works on it.
fn after_replies<T>(known: &mut KnownStates, learned: Learned, spent: T) {
    known.wrote(learned.generation, learned.rows, learned.guessed);
    drop(spent);
}

/// Projects the batch and appends it, committed together: a 200 means both (docs/adr/0016).
///
/// Read (which ids are logged, the generation, the states of the objects the batch touches),
/// fold in memory, write everything at once where the states are still the versions read. On
/// PostgreSQL the write is one statement in autocommit and the read takes no lock, so the
/// batch makes three round trips whatever its size; a version that moved in between (another
/// instance, the catch-up projector) fails the write as a whole and the batch is read and
/// folded again. An entry already in the log is projected again from its stored payload (its
/// first projection may have failed or still be in flight; joins are idempotent), which is how
/// Stripe's retry heals a failed projection. An entry that cannot be projected is still
/// appended and recorded as a dead letter in the same write; its neighbours are projected.
///
/// The first attempt may skip the read and fold from what the writer remembers
/// ([`KnownStates`], docs/adr/0024); the write refuses a wrong guess whole, and the batch is
/// then read like any other.
async fn write_together(
    db: &Db,
    batch: &[Pending],
    held: &mut Option<Held>,
    known: &mut KnownStates,
) -> Result<Written, StorageError> {
    let mut arrived = Arrived::of(batch);
    let mut attempt = 0;
    loop {
        attempt += 1;
        // A session whose batch failed is dropped (on SQLite that rolls back by closing it).
        let (mut session, since) = match held.take() {
            Some(h) => (h.session, h.since),
            None => (IngestSession::open(db).await?, Instant::now()),
        };
        let guess = if attempt == 1 {
            known.guess(&arrived.keys)
        } else {
            None
        };
        let unread = guess.is_some();
        let read = match guess {
            Some(guess) => guess,
            None => {
                let read = session.read(&arrived.ids, &arrived.keys).await?;
                known.read(&read);
                read
            }
        };
        let mut folded = fold(&mut session, &arrived, read).await?;
        let mut write = batch_write(&mut folded, &arrived);
        write.unread = unread;
        let inserted = match session.write(&write).await {
            Ok(inserted) => inserted,
            Err(e) if e.is_conflict() && unread => {
                tracing::debug!(error = %e.report(), first_event = arrived.ids[0], "a batch folded without a read was refused; reading it");
                known.wrong(&arrived.keys);
                keep_for_the_next_attempt(session, since, held);
                continue;
            }
            Err(e) if e.is_conflict() && attempt < projector::MAX_ATTEMPTS => {
                tracing::debug!(error = %e.report(), attempt, first_event = arrived.ids[0], "batch lost a race; folding it again");
                keep_for_the_next_attempt(session, since, held);
                continue;
            }
            Err(e) => return Err(e),
        };
        *held = Some(Held { session, since });
        let outcomes = outcomes(
            batch,
            &arrived.index_of,
            &folded.logged,
            &write.fresh,
            inserted,
        );
        let replies = outcomes
            .into_iter()
            .zip(batch)
            .map(|(outcome, pending)| {
                match &folded.fold.failures[arrived.index_of[pending.entry.envelope.id.as_str()]] {
                    Some(e) => Err(WriteError::Projection(e.to_string())),
                    None => Ok(outcome),
                }
            })
            .collect();
        let learned = Learned {
            generation: write.generation,
            rows: std::mem::take(&mut write.rows),
            guessed: unread,
        };
        drop(write);
        return Ok(Written {
            replies,
            learned,
            spent: (std::mem::take(&mut arrived.decoded), folded),
        });
    }
}

/// A refused write leaves its session usable (nothing open): the next attempt takes it again
/// instead of a connection from the pool, which PostgreSQL's pool would check (a round trip)
/// and which on SQLite was a new connection.
fn keep_for_the_next_attempt(session: IngestSession, since: Instant, held: &mut Option<Held>) {
    if session.reusable() {
        *held = Some(Held { session, since });
    }
}

/// What arrived, decoded once from ingestion's one parse (ADR 12), for every attempt: one
/// projection per distinct id, the first occurrence being the body that counts.
struct Arrived<'a> {
    index_of: HashMap<&'a str, usize>,
    firsts: Vec<&'a Pending>,
    decoded: Vec<Result<Decoded, ProjectError>>,
    /// The objects the arrived bodies touch.
    keys: Vec<Key>,
    ids: Vec<&'a str>,
}

impl<'a> Arrived<'a> {
    fn of(batch: &'a [Pending]) -> Arrived<'a> {
        let mut index_of: HashMap<&str, usize> = HashMap::new();
        let mut firsts: Vec<&Pending> = Vec::new();
        for pending in batch {
            let id = pending.entry.envelope.id.as_str();
            if !index_of.contains_key(id) {
                index_of.insert(id, firsts.len());
                firsts.push(pending);
            }
        }
        let decoded: Vec<Result<Decoded, ProjectError>> = firsts
            .iter()
            .map(|p| projector::decode_entry(&entry_of(&p.entry, 0), p.parsed.as_ref()))
            .collect();
        let keys = distinct_keys(decoded.iter().filter_map(|d| d.as_ref().ok()));
        let ids = firsts
            .iter()
            .map(|p| p.entry.envelope.id.as_str())
            .collect();
        Arrived {
            index_of,
            firsts,
            decoded,
            keys,
            ids,
        }
    }
}

/// A batch folded from what was read (or guessed).
struct Folded {
    generation: i64,
    /// The batch's ids found logged, by id.
    logged: HashMap<String, Logged>,
    /// Per first occurrence: its logged body, decoded, if it was found logged (that body is
    /// the one folded); `None` where the body that arrived was folded.
    logged_decoded: Vec<Option<Result<Decoded, ProjectError>>>,
    fold: projector::Folded,
}

/// Folds the batch from `read`. A logged entry is projected from its stored payload, which may
/// differ from the body that arrived and name other objects: their states are read too.
async fn fold(
    session: &mut IngestSession,
    arrived: &Arrived<'_>,
    read: BatchRead,
) -> Result<Folded, StorageError> {
    let logged: HashMap<String, Logged> = read
        .logged
        .into_iter()
        .map(|l| (l.event_id.clone(), l))
        .collect();
    let again: Vec<Option<Result<Decoded, ProjectError>>> = arrived
        .ids
        .iter()
        .map(|id| {
            logged
                .get(*id)
                .map(|l| projector::decode_entry(&entry_of_logged(l), None))
        })
        .collect();
    let decoded: Vec<&Result<Decoded, ProjectError>> = folded_bodies(&again, arrived).collect();
    let mut states = read.states;
    let missing: Vec<Key> = distinct_keys(decoded.iter().filter_map(|d| d.as_ref().ok()))
        .into_iter()
        .filter(|k| !arrived.keys.contains(k))
        .collect();
    if !missing.is_empty() {
        states.extend(session.read_states(read.generation, &missing).await?);
    }
    let fold = projector::fold_batch(&decoded, &states);
    Ok(Folded {
        generation: read.generation,
        logged,
        logged_decoded: again,
        fold,
    })
}

/// Per first occurrence, the body that is folded: the logged one where the entry was found
/// logged, else the one that arrived.
fn folded_bodies<'a>(
    logged_decoded: &'a [Option<Result<Decoded, ProjectError>>],
    arrived: &'a Arrived<'_>,
) -> impl Iterator<Item = &'a Result<Decoded, ProjectError>> {
    logged_decoded
        .iter()
        .zip(&arrived.decoded)
        .map(|(logged, arrived)| logged.as_ref().unwrap_or(arrived))
}

/// The keys of `decoded`, each once, in order.
fn distinct_keys<'a>(decoded: impl Iterator<Item = &'a Decoded>) -> Vec<Key> {
    let mut keys: Vec<Key> = decoded.flat_map(Decoded::keys).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Everything the batch writes, from its fold.
/// The fold's rows move into the write (and from there into the writer's memory).
fn batch_write<'a>(folded: &mut Folded, arrived: &Arrived<'a>) -> BatchWrite<'a> {
    let mut write = BatchWrite {
        generation: folded.generation,
        rows: std::mem::take(&mut folded.fold.rows),
        now: chrono::Utc::now().timestamp(),
        ..Default::default()
    };
    let firsts = arrived
        .firsts
        .iter()
        .zip(folded_bodies(&folded.logged_decoded, arrived));
    for ((pending, decoded), failure) in firsts.zip(&folded.fold.failures) {
        let id = pending.entry.envelope.id.as_str();
        let position = folded.logged.get(id).map(|l| l.position);
        if position.is_none() {
            write.fresh.push(&pending.entry);
        }
        match (failure, decoded) {
            (None, Ok(d)) => {
                write.projected_ids.push(id);
                write.touches.extend(projector::touches(id, d));
                write.projected_logged.extend(position);
                for n in &d.notifications {
                    write.notifications.push((n.clone(), id.to_owned()));
                }
            }
            // `fold_batch` reports every entry that did not decode as a failure.
            (Some(error), _) | (None, Err(error)) => write.failed.push(FailedEntry {
                event_id: id,
                position,
                error: error.to_string(),
            }),
        }
    }
    write
}

/// One outcome per request, in order: duplicates of what the read found logged, or what the
/// append reported for the fresh ids.
fn outcomes(
    batch: &[Pending],
    index_of: &HashMap<&str, usize>,
    logged: &HashMap<String, Logged>,
    fresh: &[&NewEntry],
    inserted: Vec<Inserted>,
) -> Vec<AppendOutcome> {
    let appended: HashMap<&str, Inserted> = fresh
        .iter()
        .map(|e| e.envelope.id.as_str())
        .zip(inserted)
        .collect();
    let mut first_seen: std::collections::HashSet<&str> = Default::default();
    batch
        .iter()
        .map(|p| {
            let id = p.entry.envelope.id.as_str();
            debug_assert!(index_of.contains_key(id));
            let first = first_seen.insert(id);
            if let Some(l) = logged.get(id) {
                return AppendOutcome::Duplicate {
                    position: l.position,
                    same_body: l.raw_body_sha256 == p.entry.raw_body_sha256,
                };
            }
            let inserted = &appended[id];
            if first && inserted.new {
                AppendOutcome::Appended {
                    position: inserted.position,
                }
            } else {
                AppendOutcome::Duplicate {
                    position: inserted.position,
                    same_body: inserted.raw_body_sha256 == p.entry.raw_body_sha256,
                }
            }
        })
        .collect()
}

fn entry_of_logged(l: &Logged) -> Entry {
    Entry {
        position: l.position,
        event_id: l.event_id.clone(),
        event_type: l.event_type.clone(),
        created: l.stripe_created,
        payload: l.payload.clone(),
        // The writer logs webhooks; a Stripe `evt_` id never names our own entries.
        origin: ledger_projections::Origin::Stripe,
    }
}

/// Sends each request its reply and remembers the committed ids. Returns the requests'
/// entries and parsed bodies, for the caller to free after the replies are out.
fn reply(
    batch: Vec<Pending>,
    replies: Vec<Result<AppendOutcome, WriteError>>,
    seen: &SeenIds,
) -> Vec<(NewEntry, Option<serde_json::Value>)> {
    let mut committed = Vec::new();
    let mut senders = Vec::with_capacity(batch.len());
    let mut rest = Vec::with_capacity(batch.len());
    for (pending, reply) in batch.into_iter().zip(replies) {
        // The cache answers a body only if it is the logged one: a duplicate id with another
        // body is not remembered (its hash is not the logged body's).
        if let Ok(
            outcome @ (AppendOutcome::Appended { .. }
            | AppendOutcome::Duplicate {
                same_body: true, ..
            }),
        ) = &reply
        {
            committed.push((
                pending.entry.envelope.id.clone(),
                pending.entry.raw_body_sha256.clone(),
                outcome.position(),
            ));
        }
        senders.push((pending.reply, reply));
        rest.push((pending.entry, pending.parsed));
    }
    // Remembered before anyone is answered: a redelivery sent on the heels of its answer is
    // then found in the cache.
    seen.remember(committed);
    for (sender, reply) in senders {
        let _ = sender.send(reply);
    }
    rest
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

/// The body's SHA-256 as bytes (the whole hash: a cached duplicate is answered without parsing
/// only when its body is byte for byte the one logged). Every hash here is the hex of a digest
/// computed by this service, so the fallback for a malformed one is never reached.
fn body_tag(raw_body_sha256: &str) -> [u8; 32] {
    let mut tag = [0; 32];
    if hex::decode_to_slice(raw_body_sha256, &mut tag).is_err() {
        tag = [0xff; 32];
    }
    tag
}

/// A bounded FIFO set of committed event ids with their positions.
struct SeenIds {
    capacity: usize,
    inner: StdMutex<Fifo>,
}

#[derive(Default)]
struct Fifo {
    /// Event id → (position, body tag).
    map: HashMap<Box<str>, (i64, [u8; 32])>,
    /// The body tags in `map`: a body whose hash is not here is no cached duplicate, which is
    /// known before its id is read.
    bodies: HashSet<[u8; 32]>,
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

    fn get(&self, id: &str) -> Option<(i64, [u8; 32])> {
        if self.capacity == 0 {
            return None;
        }
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.map.get(id).copied()
    }

    fn has_body(&self, tag: &[u8; 32]) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.bodies.contains(tag)
    }

    /// Remembers (event id, raw body hash, position) of entries logged and projected.
    fn remember(&self, committed: Vec<(String, String, i64)>) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Fifo { map, bodies, order } = &mut *inner;
        for (id, sha, position) in committed {
            let id: Box<str> = id.into();
            let tag = body_tag(&sha);
            bodies.insert(tag);
            if map.insert(id.clone(), (position, tag)).is_none() {
                order.push_back(id);
            }
            while order.len() > self.capacity {
                if let Some((_, (_, old))) =
                    order.pop_front().and_then(|old| map.remove_entry(&old))
                {
                    bodies.remove(&old);
                }
            }
        }
    }
}
