//! What the writer remembers of the read models it wrote: enough to fold the next batch
//! without reading first (docs/adr/0024).
//!
//! A batch's read answers three questions: the active generation, which of its ids are logged,
//! and the versioned states of the objects it touches. After each batch the writer knows the
//! answers for what it just wrote, and one delivery at a time the next event is usually about
//! an object it wrote moments ago, or a new one. So the next batch may guess: the generation
//! and the states it remembers, no row for an object it does not know, and no id logged. The
//! write checks every part of the guess (the generation, each version, that every id it
//! appends is new) and refuses the batch whole when one is wrong; the batch is then read and
//! folded as if it had never guessed. A guess therefore decides the cost, never the result.
//!
//! A wrong guess costs a refused write, so guessing pauses after one: for one batch after the
//! first, and twice as long after each wrong guess that follows, up to [`MAX_PAUSE`]; each
//! right guess halves the pause. An instance whose objects other instances write too, or one
//! just restarted with an empty memory, falls back to reading without paying for every guess.
//!
//! Memory is bounded by the bytes of the states held; the oldest written are forgotten first.

use std::collections::{HashMap, VecDeque};

use crate::metrics::GuessCounters;
use crate::store::ingest::{BatchRead, Versioned, VersionedRow};
use crate::store::read_models::Key;

/// Longest pause, in batches, after wrong guesses in a row.
pub const MAX_PAUSE: u32 = 1024;

/// What a remembered state costs besides its text: the key, the map's and the queue's entries.
const OVERHEAD_BYTES: usize = 96;

/// The states one writer last wrote or read, in one generation.
#[derive(Debug)]
pub struct KnownStates {
    budget: usize,
    used: usize,
    generation: Option<i64>,
    states: HashMap<Key, Remembered>,
    /// Keys in the order they were remembered, with the stamp they had; an entry whose key
    /// was remembered again since carries an old stamp and is skipped.
    order: VecDeque<(Key, u64)>,
    stamp: u64,
    pause: u32,
    skip: u32,
    counters: GuessCounters,
}

#[derive(Debug)]
struct Remembered {
    versioned: Versioned,
    stamp: u64,
}

impl KnownStates {
    /// Remembers states up to `budget_bytes` (their JSON and a fixed overhead each); 0 never
    /// guesses.
    pub fn new(budget_bytes: usize) -> KnownStates {
        KnownStates {
            budget: budget_bytes,
            used: 0,
            generation: None,
            states: HashMap::new(),
            order: VecDeque::new(),
            stamp: 0,
            pause: 0,
            skip: 0,
            counters: GuessCounters::default(),
        }
    }

    /// Counts guesses on `counters` (the service's metrics) instead of counters of its own.
    pub fn counting_on(mut self, counters: GuessCounters) -> KnownStates {
        self.counters = counters;
        self
    }

    /// The read a batch touching `keys` may skip, unless guessing is off or paused, or nothing
    /// is known yet: the generation, the remembered states among `keys`, nothing logged.
    pub fn guess(&mut self, keys: &[Key]) -> Option<BatchRead> {
        if self.budget == 0 {
            return None;
        }
        let generation = self.generation?;
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        let states = keys
            .iter()
            .filter_map(|k| self.states.get(k).map(|r| (k.clone(), r.versioned.clone())))
            .collect();
        Some(BatchRead {
            generation,
            logged: Vec::new(),
            states,
        })
    }

    /// What a read found: the generation, and the states of the keys it was asked for.
    pub fn read(&mut self, read: &BatchRead) {
        self.enter(read.generation);
        for (key, versioned) in &read.states {
            self.remember(key.clone(), versioned.clone());
        }
    }

    /// A write committed `rows` into `generation`; `guessed` if it was folded from a guess,
    /// which was right.
    pub fn wrote(&mut self, generation: i64, rows: Vec<VersionedRow>, guessed: bool) {
        self.enter(generation);
        for r in rows {
            let versioned = Versioned {
                state: r.row.state,
                version: r.expected + 1,
            };
            self.remember((r.row.kind, r.row.id), versioned);
        }
        if guessed {
            self.pause /= 2;
            self.counters.written.inc();
        }
    }

    /// A write folded from a guess about `keys` was refused: forget them, and pause guessing.
    pub fn wrong(&mut self, keys: &[Key]) {
        for key in keys {
            if let Some(r) = self.states.remove(key) {
                self.used -= cost(key, &r.versioned);
            }
        }
        self.pause = (self.pause * 2).clamp(1, MAX_PAUSE);
        self.skip = self.pause;
        self.counters.refused.inc();
    }

    /// Guesses so far that the write took, and those it refused.
    pub fn guesses(&self) -> (u64, u64) {
        (self.counters.written.get(), self.counters.refused.get())
    }

    /// States belong to one generation: a rebuild's switch makes all of them unknown.
    fn enter(&mut self, generation: i64) {
        if self.generation != Some(generation) {
            self.states.clear();
            self.order.clear();
            self.used = 0;
            self.generation = Some(generation);
        }
    }

    fn remember(&mut self, key: Key, versioned: Versioned) {
        if self.budget == 0 {
            return;
        }
        let size = cost(&key, &versioned);
        if size > self.budget {
            if let Some(old) = self.states.remove(&key) {
                self.used -= cost(&key, &old.versioned);
            }
            return;
        }
        self.stamp += 1;
        let stamp = self.stamp;
        self.order.push_back((key.clone(), stamp));
        if let Some(old) = self
            .states
            .insert(key.clone(), Remembered { versioned, stamp })
        {
            self.used -= cost(&key, &old.versioned);
        }
        self.used += size;
        while self.used > self.budget {
            self.forget_oldest();
        }
        // Stale queue entries (keys remembered again since) are dropped once they outnumber
        // the live ones, so the queue stays proportional to what is held.
        if self.order.len() > 2 * self.states.len() + 64 {
            let states = &self.states;
            self.order
                .retain(|(k, s)| states.get(k).is_some_and(|r| r.stamp == *s));
        }
    }

    fn forget_oldest(&mut self) {
        while let Some((key, stamp)) = self.order.pop_front() {
            if self.states.get(&key).is_some_and(|r| r.stamp == stamp) {
                let r = self.states.remove(&key).expect("just found");
                self.used -= cost(&key, &r.versioned);
                return;
            }
        }
    }

    /// Bytes held, as counted against the budget.
    pub fn used_bytes(&self) -> usize {
        self.used
    }
}

fn cost(key: &Key, versioned: &Versioned) -> usize {
    key.1.len() + versioned.state.len() + OVERHEAD_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::read_models::Row;
    use crate::store::Kind;

    fn key(id: &str) -> Key {
        (Kind::Customer, id.to_owned())
    }

    fn row(id: &str, state: &str, expected: i64) -> VersionedRow {
        VersionedRow {
            row: Row {
                kind: Kind::Customer,
                id: id.to_owned(),
                customer_id: None,
                user_id: None,
                status: None,
                state: state.to_owned(),
            },
            expected,
        }
    }

    #[test]
    fn nothing_is_guessed_before_the_first_read_or_write_nor_with_a_budget_of_zero() {
        assert!(KnownStates::new(1 << 20).guess(&[key("cus_1")]).is_none());
        let mut off = KnownStates::new(0);
        off.wrote(1, vec![row("cus_1", "{}", 0)], false);
        assert!(off.guess(&[key("cus_1")]).is_none());
    }

    #[test]
    fn a_written_state_is_guessed_at_its_next_version_and_an_unknown_one_as_absent() {
        let mut known = KnownStates::new(1 << 20);
        known.wrote(3, vec![row("cus_1", r#"{"a":1}"#, 4)], false);
        let guess = known.guess(&[key("cus_1"), key("cus_2")]).unwrap();
        assert_eq!(guess.generation, 3);
        assert!(guess.logged.is_empty());
        assert_eq!(
            guess.states[&key("cus_1")],
            Versioned {
                state: r#"{"a":1}"#.to_owned(),
                version: 5
            }
        );
        assert!(!guess.states.contains_key(&key("cus_2")));
    }

    #[test]
    fn a_new_generation_forgets_every_state_of_the_old_one() {
        let mut known = KnownStates::new(1 << 20);
        known.wrote(3, vec![row("cus_1", "{}", 0)], false);
        known.read(&BatchRead {
            generation: 4,
            ..Default::default()
        });
        let guess = known.guess(&[key("cus_1")]).unwrap();
        assert_eq!(guess.generation, 4);
        assert!(guess.states.is_empty());
        assert_eq!(known.used_bytes(), 0);
    }

    #[test]
    fn wrong_guesses_pause_guessing_longer_each_time_and_right_ones_shorten_the_pause() {
        let mut known = KnownStates::new(1 << 20);
        known.wrote(1, vec![row("cus_1", "{}", 0)], false);
        let keys = [key("cus_1")];
        // A guess, right or wrong, then how many batches read before the next guess. After
        // three wrong guesses the pause is 4; two right ones bring it to 1, so the next wrong
        // one pauses for 2, not 8.
        for (right, reads) in [
            (false, 1),
            (false, 2),
            (false, 4),
            (true, 0),
            (true, 0),
            (false, 2),
        ] {
            assert!(known.guess(&keys).is_some());
            if right {
                known.wrote(1, vec![], true);
            } else {
                known.wrong(&keys);
            }
            for _ in 0..reads {
                assert!(known.guess(&keys).is_none());
            }
        }
        assert!(known.guess(&keys).is_some());
    }

    #[test]
    fn a_wrong_guess_forgets_the_batch_states_and_the_pause_is_bounded() {
        let mut known = KnownStates::new(1 << 20);
        known.wrote(1, vec![row("cus_1", "{}", 0), row("cus_2", "{}", 0)], false);
        for _ in 0..20 {
            known.wrong(&[key("cus_1")]);
        }
        assert_eq!(known.pause, MAX_PAUSE);
        known.skip = 0;
        let guess = known.guess(&[key("cus_1"), key("cus_2")]).unwrap();
        assert!(!guess.states.contains_key(&key("cus_1")));
        assert!(guess.states.contains_key(&key("cus_2")));
    }

    #[test]
    fn the_oldest_written_states_are_forgotten_past_the_budget() {
        let state = "x".repeat(100);
        let each = "cus_0".len() + state.len() + OVERHEAD_BYTES;
        let mut known = KnownStates::new(3 * each);
        for (i, id) in ["cus_0", "cus_1", "cus_2"].iter().enumerate() {
            known.wrote(1, vec![row(id, &state, i as i64)], false);
        }
        // cus_0 written again: now the newest, so cus_1 is the one forgotten.
        known.wrote(1, vec![row("cus_0", &state, 7)], false);
        known.wrote(1, vec![row("cus_3", &state, 0)], false);
        assert_eq!(known.used_bytes(), 3 * each);
        let keys: Vec<Key> = (0..4).map(|i| key(&format!("cus_{i}"))).collect();
        let guess = known.guess(&keys).unwrap();
        let mut held: Vec<&str> = guess.states.keys().map(|k| k.1.as_str()).collect();
        held.sort();
        assert_eq!(held, ["cus_0", "cus_2", "cus_3"]);
        assert_eq!(guess.states[&key("cus_0")].version, 8);
        // A state larger than the whole budget is not held, and replaces nothing.
        known.wrote(1, vec![row("cus_2", &"y".repeat(4 * each), 1)], false);
        assert!(!known
            .guess(&keys)
            .unwrap()
            .states
            .contains_key(&key("cus_2")));
        assert_eq!(known.used_bytes(), 2 * each);
    }

    #[test]
    fn the_queue_of_keys_stays_proportional_to_the_states_held() {
        let mut known = KnownStates::new(1 << 20);
        for v in 0..10_000 {
            known.wrote(1, vec![row("cus_1", "{}", v)], false);
        }
        assert!(known.order.len() <= 2 * known.states.len() + 65);
        assert_eq!(known.guess(&[key("cus_1")]).unwrap().states.len(), 1);
    }
}
