//! `stripe-ledger rebuild`: replay the whole log into a fresh generation of the read models
//! while the service keeps serving the active one, catch up, and switch atomically.
//!
//! The switch runs under the append lock (PostgreSQL's advisory lock; on SQLite, the single
//! writer connection), so no entry can be appended between the last read of the log and the
//! switch. An entry appended before it is in the new generation; one appended after it is
//! projected by ingestion into the new generation, which is then active.

mod cache;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::HashMap;
use ledger_projections::{decode, Fact, LoggedEvent};

use super::{origin_of, state_from_json};
use crate::store::history::{HistoryTx as _, TouchAt};
use crate::store::read_models::{Key, ReadModelStore as _, ReadModelTx as _, Row};
use crate::store::rebuild::{RebuildStore as _, RebuildTx as _, Replayed};
use crate::store::{Backend, Db, Kind, StorageError, Tx};
use cache::{Batch, Cache};

#[derive(Debug, Clone)]
pub struct RebuildOptions {
    /// Build on the side and compare with the live tables; never switch.
    pub check_only: bool,
    /// Only these kinds (`customer`, `subscription`, ...); the others are carried over.
    pub kinds: Option<Vec<String>>,
    /// Log entries per read, and rows per write transaction.
    pub chunk: u32,
    /// Print progress to stderr when it is a terminal.
    pub progress: bool,
    /// Folded states held in memory at most (the write-back cache, see `rebuild/cache.rs`);
    /// about 1 KiB each.
    pub cache_objects: usize,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        RebuildOptions {
            check_only: false,
            kinds: None,
            chunk: 5_000,
            progress: false,
            cache_objects: DEFAULT_CACHE_OBJECTS,
        }
    }
}

/// The default bound of the write-back cache.
pub const DEFAULT_CACHE_OBJECTS: usize = 65_536;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Difference {
    pub kind: Kind,
    pub id: String,
    pub problem: Problem,
}

/// How a rebuilt row differs from the live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    MissingInRebuild,
    MissingInLive,
    StateDiffers,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RebuildReport {
    pub events: usize,
    /// Entries whose object could not be decoded (they are dead letters in the live models).
    pub skipped: Vec<String>,
    pub generation: i64,
    pub switched: bool,
    pub differences: Vec<Difference>,
    #[serde(skip)]
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(
        "unknown projection `{0}`; expected one of customer, subscription, invoice, order, payment"
    )]
    UnknownKind(String),
}

pub async fn rebuild(db: &Db, options: &RebuildOptions) -> Result<RebuildReport, RebuildError> {
    let kinds: BTreeSet<Kind> = match &options.kinds {
        None => Kind::ALL.into_iter().collect(),
        Some(names) => names
            .iter()
            .map(|n| {
                let n = n.trim_end_matches('s');
                n.parse::<Kind>()
                    .map_err(|_| RebuildError::UnknownKind(n.to_owned()))
            })
            .collect::<Result<_, _>>()?,
    };
    let started = Instant::now();
    let target = crate::event_log::last_position(db).await?;
    let generation = fresh_generation(db).await?;
    let mut report = RebuildReport {
        events: 0,
        skipped: Vec::new(),
        generation,
        switched: false,
        differences: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let chunk = options.chunk.max(1);
    let mut cache = Cache::new(options.cache_objects);
    let mut position = replay(db, generation, &kinds, options, &mut cache, &mut report).await?;
    // The final catch-up and the switch, with appends held back.
    let mut tx = Tx::begin(db).await?;
    // Generation first, then appends: the order ingestion takes them in, so no deadlock.
    // Waiting for the exclusive generation lock lets batches that already project into the
    // old generation append and commit; the final read below then includes them.
    tx.hold_appends().await?;
    loop {
        // Appends are held back (PostgreSQL: the lock above; SQLite: this transaction holds
        // the only writer connection), so this read sees the final tail. Nothing is evicted
        // here: states written inside this transaction could not be read back by key (SQLite
        // reads on other connections), and the tail is what arrived during the last flush.
        let stored = db.replay_after(position, chunk).await?;
        let Some(last) = stored.last().map(|e| e.position) else {
            break;
        };
        position = last;
        let mut decoded = decode_chunk(stored, &kinds);
        if !options.check_only {
            tx.record_touches(&std::mem::take(&mut decoded.touches))
                .await?;
        }
        absorb(db, generation, &mut cache, decoded, &mut report).await?;
    }
    loop {
        let states = cache.take_dirty(chunk as usize);
        if states.is_empty() {
            break;
        }
        let rows: Vec<Row> = states.iter().map(super::row_of).collect();
        tx.rebuild_write_states(generation, &rows).await?;
    }
    let active = tx.active_generation().await?;
    if options.check_only {
        report.differences = compare(&mut tx, active, generation, &kinds).await?;
        tx.delete_generation(generation).await?;
        tx.commit().await?;
    } else {
        // Carries the kinds a partial rebuild did not touch over.
        for kind in Kind::ALL.into_iter().filter(|k| !kinds.contains(k)) {
            tx.copy_kind(active, generation, kind).await?;
        }
        tx.switch_generation(generation).await?;
        tx.commit().await?;
        report.switched = true;
        // The old generation is unreachable now; removing it is housekeeping.
        let mut tx = Tx::begin(db).await?;
        tx.delete_generation(active).await?;
        tx.commit().await?;
    }
    if options.progress {
        show_progress(report.events, target, started);
        eprintln!();
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Replays the log while the service keeps serving: one task reads and decodes the next
/// chunks, this one folds them into the cache, a third writes what the cache evicts, then
/// everything not yet written, and a fourth records the touches. Returns the last position
/// read.
async fn replay(
    db: &Db,
    generation: i64,
    kinds: &BTreeSet<Kind>,
    options: &RebuildOptions,
    cache: &mut Cache,
    report: &mut RebuildReport,
) -> Result<i64, StorageError> {
    let chunk = options.chunk.max(1);
    let target = crate::event_log::last_position(db).await?;
    let started = Instant::now();
    let (sender, mut decoded) = tokio::sync::mpsc::channel(2);
    let _reader = Task::spawn(read_ahead(db.clone(), kinds.clone(), chunk, sender));
    let mut writer = Writer::start(db.clone(), generation, chunk);
    let mut touches = (!options.check_only).then(|| Touches::start(db.clone()));
    let mut position = 0;
    while let Some(next) = decoded.recv().await {
        let mut next = next?;
        position = next.last;
        if let Some(touches) = &mut touches {
            touches.record(std::mem::take(&mut next.touches)).await?;
        }
        cache.committed(writer.committed());
        absorb(db, generation, cache, next, report).await?;
        if let Some((number, batch)) = cache.evict() {
            writer.write(batch, Some(number)).await?;
        }
        if options.progress {
            show_progress(report.events, target, started);
        }
    }
    // What was read so far is written before appends are held back, so that the switch
    // transaction only writes what the tail changes.
    loop {
        let states = cache.take_dirty(chunk as usize);
        if states.is_empty() {
            break;
        }
        writer.write(Arc::new(states), None).await?;
    }
    writer.finish().await?;
    cache.committed(u64::MAX);
    if let Some(touches) = touches {
        touches.finish().await?;
    }
    Ok(position)
}

/// One chunk of the log, decoded: the facts merged per object.
struct Decoded {
    /// The last position read.
    last: i64,
    events: usize,
    skipped: Vec<String>,
    facts: HashMap<Key, Fact>,
    /// Every object each entry touched, whatever kinds are rebuilt (docs/adr/0019).
    touches: Vec<TouchAt>,
}

/// Reads and decodes chunks after position 0 until the log ends, sending them in order.
async fn read_ahead(
    db: Db,
    kinds: BTreeSet<Kind>,
    chunk: u32,
    sender: tokio::sync::mpsc::Sender<Result<Decoded, StorageError>>,
) {
    let mut position = 0;
    loop {
        let next = match db.replay_after(position, chunk).await {
            Ok(stored) if stored.is_empty() => return,
            Ok(stored) => {
                let next = decode_chunk(stored, &kinds);
                position = next.last;
                Ok(next)
            }
            Err(e) => Err(e),
        };
        let failed = next.is_err();
        if sender.send(next).await.is_err() || failed {
            return;
        }
    }
}

/// Parses each entry once with the strict parser ingestion used and decodes it. An entry that
/// does not parse or decode is skipped, exactly as it is a dead letter (unprojected) in the
/// live models.
fn decode_chunk(stored: Vec<Replayed>, kinds: &BTreeSet<Kind>) -> Decoded {
    let mut decoded = Decoded {
        last: stored.last().map_or(0, |e| e.position),
        events: stored.len(),
        skipped: Vec::new(),
        facts: HashMap::default(),
        touches: Vec::new(),
    };
    for entry in stored {
        let Ok((payload, _)) = ledger_projections::envelope::parse_strict(&entry.payload) else {
            decoded.skipped.push(entry.event_id);
            continue;
        };
        let event = LoggedEvent {
            event_id: &entry.event_id,
            event_type: &entry.event_type,
            created: entry.stripe_created,
            payload: &payload,
            origin: origin_of(entry.source),
        };
        let Ok(facts) = decode(&event) else {
            decoded.skipped.push(entry.event_id);
            continue;
        };
        for fact in facts {
            let kind = Kind::of(&fact);
            decoded.touches.push(TouchAt {
                kind,
                object_id: fact.id().to_owned(),
                position: entry.position,
            });
            if !kinds.contains(&kind) {
                continue;
            }
            match decoded.facts.entry((kind, fact.id().to_owned())) {
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    super::join(o.get_mut(), fact);
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(fact);
                }
            }
        }
    }
    decoded
}

/// Folds a decoded chunk into the cache, first taking back the states it evicted earlier:
/// from memory while their batch is in flight, else from the new generation.
async fn absorb(
    db: &Db,
    generation: i64,
    cache: &mut Cache,
    decoded: Decoded,
    report: &mut RebuildReport,
) -> Result<(), StorageError> {
    report.events += decoded.events;
    report.skipped.extend(decoded.skipped);
    cache.next_chunk();
    let missing: Vec<Key> = decoded
        .facts
        .keys()
        .filter(|k| !cache.take_back(k) && cache.must_load(k))
        .cloned()
        .collect();
    if !missing.is_empty() {
        for stored in db.rebuild_states(generation, &missing).await? {
            let state = state_from_json(stored.kind, &stored.state)?;
            cache.insert_loaded((stored.kind, stored.id), state);
        }
    }
    for (key, fact) in decoded.facts {
        cache.join(key, fact);
    }
    Ok(())
}

/// Serialises and writes states of the new generation on a task of its own, so that writing
/// overlaps with reading and folding. Each write is a transaction of at most a chunk of rows
/// (on SQLite it holds the writer connection, so it stays short). Numbered batches are
/// reported committed through [`Writer::committed`], in order.
struct Writer {
    jobs: tokio::sync::mpsc::Sender<(Batch, Option<u64>)>,
    committed: Arc<AtomicU64>,
    task: Task<Result<(), StorageError>>,
}

impl Writer {
    fn start(db: Db, generation: i64, chunk: u32) -> Writer {
        let (jobs, mut queue) = tokio::sync::mpsc::channel::<(Batch, Option<u64>)>(2);
        let committed = Arc::new(AtomicU64::new(0));
        let reported = committed.clone();
        let task = Task::spawn(async move {
            let mut transactions = 0u64;
            while let Some((states, number)) = queue.recv().await {
                for part in states.chunks(chunk as usize) {
                    let mut rows: Vec<Row> = part.iter().map(super::row_of).collect();
                    // In key order, each index page is visited once per run of neighbours
                    // rather than once per row: a quarter less PostgreSQL time per row.
                    rows.sort_unstable_by(|a, b| {
                        (a.kind.as_str(), &a.id).cmp(&(b.kind.as_str(), &b.id))
                    });
                    let mut tx = db.begin_rebuild().await?;
                    tx.rebuild_write_states(generation, &rows).await?;
                    tx.commit().await?;
                    transactions += 1;
                    // Evicted states are read back by key; without fresh statistics
                    // PostgreSQL plans that look-up as if the new generation were empty.
                    if transactions.is_power_of_two() && transactions >= 8 {
                        db.analyze_read_models().await?;
                    }
                }
                if let Some(number) = number {
                    reported.store(number, Ordering::Release);
                }
            }
            Ok(())
        });
        Writer {
            jobs,
            committed,
            task,
        }
    }

    async fn write(&mut self, states: Batch, number: Option<u64>) -> Result<(), StorageError> {
        if self.jobs.send((states, number)).await.is_err() {
            return Err(failure(&mut self.task, "writer").await);
        }
        Ok(())
    }

    /// The highest batch number committed so far (0 for none).
    fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    async fn finish(self) -> Result<(), StorageError> {
        finish(self.task, self.jobs, "writer").await
    }
}

/// Records which objects each entry touched (`object_touches`, docs/adr/0019) on tasks and
/// connections of their own, so that those inserts overlap with folding and writing states.
/// Chunks go round-robin to the lanes: on PostgreSQL two, since a million touches in one lane
/// kept the fold waiting; on SQLite one, since it has one writer anyway. Order does not matter:
/// every touch is inserted once whatever lane it takes, and all are committed before the switch.
struct Touches {
    lanes: Vec<Lane>,
    next: usize,
}

struct Lane {
    jobs: tokio::sync::mpsc::Sender<Vec<TouchAt>>,
    task: Task<Result<(), StorageError>>,
}

impl Touches {
    fn start(db: Db) -> Touches {
        let lanes = match db.backend() {
            Backend::Postgres => 2,
            Backend::Sqlite => 1,
        };
        Touches {
            lanes: (0..lanes).map(|_| Lane::start(db.clone())).collect(),
            next: 0,
        }
    }

    async fn record(&mut self, touches: Vec<TouchAt>) -> Result<(), StorageError> {
        if touches.is_empty() {
            return Ok(());
        }
        let index = self.next % self.lanes.len();
        let lane = &mut self.lanes[index];
        self.next += 1;
        if lane.jobs.send(touches).await.is_err() {
            return Err(failure(&mut lane.task, "touch recorder").await);
        }
        Ok(())
    }

    async fn finish(self) -> Result<(), StorageError> {
        for lane in self.lanes {
            finish(lane.task, lane.jobs, "touch recorder").await?;
        }
        Ok(())
    }
}

impl Lane {
    fn start(db: Db) -> Lane {
        let (jobs, mut queue) = tokio::sync::mpsc::channel::<Vec<TouchAt>>(2);
        let task = Task::spawn(async move {
            while let Some(mut touches) = queue.recv().await {
                // Key order (the primary key's): a third less PostgreSQL time per row than
                // the log's order, which scatters them over the index.
                touches.sort_unstable_by(|a, b| {
                    (a.kind.as_str(), &a.object_id, a.position).cmp(&(
                        b.kind.as_str(),
                        &b.object_id,
                        b.position,
                    ))
                });
                // Not durable on its own (PostgreSQL: `synchronous_commit = off`), like the
                // states: the switch's durable commit flushes the log of everything before it.
                let mut tx = db.begin_rebuild().await?;
                tx.record_touches(&touches).await?;
                tx.commit().await?;
            }
            Ok(())
        });
        Lane { jobs, task }
    }
}

/// Closes a task's queue and waits for it to write what it was given.
async fn finish<J>(
    task: Task<Result<(), StorageError>>,
    jobs: tokio::sync::mpsc::Sender<J>,
    name: &str,
) -> Result<(), StorageError> {
    drop(jobs);
    task.join()
        .await
        .unwrap_or_else(|e| Err(StorageError::invalid(format!("rebuild {name}: {e}"))))
}

/// Why a task stopped taking jobs.
async fn failure(task: &mut Task<Result<(), StorageError>>, name: &str) -> StorageError {
    match task.take() {
        Some(task) => match task.join().await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => StorageError::invalid(format!("the rebuild {name} stopped")),
            Err(e) => StorageError::invalid(format!("rebuild {name}: {e}")),
        },
        None => StorageError::invalid(format!("the rebuild {name} stopped")),
    }
}

/// A spawned task that is aborted when dropped: neither the reader nor the writer may outlive
/// a rebuild that failed.
struct Task<T>(Option<tokio::task::JoinHandle<T>>);

impl<T: Send + 'static> Task<T> {
    fn spawn(future: impl std::future::Future<Output = T> + Send + 'static) -> Task<T> {
        Task(Some(tokio::spawn(future)))
    }

    fn take(&mut self) -> Option<Task<T>> {
        self.0.take().map(|h| Task(Some(h)))
    }

    async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        let handle = self.0.take().expect("a task is joined once");
        handle.await
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

async fn fresh_generation(db: &Db) -> Result<i64, StorageError> {
    let mut tx = Tx::begin(db).await?;
    let generation = tx.max_generation().await? + 1;
    // Leftovers of an interrupted rebuild.
    tx.delete_generation(generation).await?;
    tx.commit().await?;
    Ok(generation)
}

async fn compare(
    tx: &mut Tx<'_>,
    live: i64,
    rebuilt: i64,
    kinds: &BTreeSet<Kind>,
) -> Result<Vec<Difference>, StorageError> {
    let live_rows = generation_states(tx, live).await?;
    let rebuilt_rows = generation_states(tx, rebuilt).await?;
    let mut differences = Vec::new();
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
    for (key, state) in &live_rows {
        if !kinds.contains(&key.0) {
            continue;
        }
        match rebuilt_rows.get(key) {
            None => differences.push(Difference {
                kind: key.0,
                id: key.1.clone(),
                problem: Problem::MissingInRebuild,
            }),
            Some(other) if parse(other) != parse(state) => differences.push(Difference {
                kind: key.0,
                id: key.1.clone(),
                problem: Problem::StateDiffers,
            }),
            Some(_) => {}
        }
    }
    for key in rebuilt_rows.keys() {
        if kinds.contains(&key.0) && !live_rows.contains_key(key) {
            differences.push(Difference {
                kind: key.0,
                id: key.1.clone(),
                problem: Problem::MissingInLive,
            });
        }
    }
    Ok(differences)
}

/// Every row of a generation: (kind, id) → state.
async fn generation_states(
    tx: &mut Tx<'_>,
    generation: i64,
) -> Result<BTreeMap<Key, String>, StorageError> {
    let rows = tx.generation_states(generation).await?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.kind, r.id), r.state))
        .collect())
}

fn show_progress(done: usize, total: i64, started: Instant) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let elapsed = started.elapsed().as_secs_f64().max(0.001);
    let rate = done as f64 / elapsed;
    let remaining = (total as f64 - done as f64).max(0.0);
    let eta = if rate > 0.0 { remaining / rate } else { 0.0 };
    eprint!("\r{done}/{total} events, {rate:.0} events/s, ETA {eta:.0} s   ");
    let _ = std::io::stderr().flush();
}
