//! `stripe-ledger rebuild`: replay the whole log into a fresh generation of the read models
//! while the service keeps serving the active one, catch up, and switch atomically.
//!
//! The switch runs under the append lock (PostgreSQL's advisory lock; on SQLite, the single
//! writer connection), so no entry can be appended between the last read of the log and the
//! switch. An entry appended before it is in the new generation; one appended after it is
//! projected by ingestion into the new generation, which is then active.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

use super::{facts_of, write_facts, Entry, ProjectError};
use crate::event_log;
use crate::store::read_models::{Key, ReadModelStore as _, ReadModelTx as _};
use crate::store::{Db, Kind, StorageError, Tx};

#[derive(Debug, Clone)]
pub struct RebuildOptions {
    /// Build on the side and compare with the live tables; never switch.
    pub check_only: bool,
    /// Only these kinds (`customer`, `subscription`, ...); the others are carried over.
    pub kinds: Option<Vec<String>>,
    /// Log entries per transaction.
    pub chunk: u32,
    /// Print progress to stderr when it is a terminal.
    pub progress: bool,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        RebuildOptions {
            check_only: false,
            kinds: None,
            chunk: 5_000,
            progress: false,
        }
    }
}

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
    let target = event_log::last_position(db).await?;
    let generation = fresh_generation(db).await?;
    let mut report = RebuildReport {
        events: 0,
        skipped: Vec::new(),
        generation,
        switched: false,
        differences: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let mut position = 0;
    let mut chunks = 0u64;
    // Replay in chunks, each its own transaction, while the service keeps serving.
    loop {
        let stored = event_log::read_after(db, position, options.chunk).await?;
        let Some(last) = stored.last().map(|e| e.position) else {
            break;
        };
        let mut tx = Tx::begin(db).await?;
        fold_chunk(&mut tx, generation, &stored, &kinds, &mut report).await?;
        tx.commit().await?;
        position = last;
        chunks += 1;
        // The new generation grows fast; without fresh statistics PostgreSQL keeps planning
        // the state look-up as if the table were empty (a sequential scan per chunk).
        if chunks.is_power_of_two() {
            db.analyze_read_models().await?;
        }
        if options.progress {
            show_progress(report.events, target, started);
        }
    }
    // The final catch-up and the switch, with appends held back.
    let mut tx = Tx::begin(db).await?;
    // Generation first, then appends: the order ingestion takes them in, so no deadlock.
    // Waiting for the exclusive generation lock lets batches that already project into the
    // old generation append and commit; the final read below then includes them.
    tx.hold_appends().await?;
    loop {
        // Appends are held back (PostgreSQL: the lock above; SQLite: this transaction holds
        // the only writer connection), so this read sees the final tail.
        let stored = event_log::read_after(db, position, options.chunk).await?;
        let Some(last) = stored.last().map(|e| e.position) else {
            break;
        };
        fold_chunk(&mut tx, generation, &stored, &kinds, &mut report).await?;
        position = last;
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

async fn fold_chunk(
    tx: &mut Tx<'_>,
    generation: i64,
    stored: &[event_log::StoredEvent],
    kinds: &BTreeSet<Kind>,
    report: &mut RebuildReport,
) -> Result<(), StorageError> {
    let mut merged: BTreeMap<Key, ledger_projections::Fact> = BTreeMap::new();
    for e in stored {
        report.events += 1;
        // Decoded one entry at a time: an undecodable entry is skipped, exactly as it is a
        // dead letter (unprojected) in the live models.
        match facts_of(std::slice::from_ref(&Entry::from(e)), None) {
            Ok(facts) => {
                for (key, fact) in facts {
                    if !kinds.contains(&key.0) {
                        continue;
                    }
                    match merged.get_mut(&key) {
                        Some(existing) => {
                            super::join(existing, fact);
                        }
                        None => {
                            merged.insert(key, fact);
                        }
                    }
                }
            }
            Err(ProjectError::Event { event_id, .. }) => report.skipped.push(event_id),
            Err(ProjectError::Storage(e)) => return Err(e),
        }
    }
    write_facts(tx, generation, merged, false)
        .await
        .map_err(|e| match e {
            ProjectError::Storage(e) => e,
            ProjectError::Event { reason, .. } => StorageError::invalid(reason),
        })?;
    Ok(())
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
