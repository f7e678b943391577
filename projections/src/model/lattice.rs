//! The ordering rule, made explicit, and the small lattices every read model is built from.
//!
//! Stripe delivers at least once and in no particular order, and `created` has one-second
//! resolution. Every piece of read-model state is therefore a join-semilattice: merging the
//! information of an event is a `join` that is commutative, associative and idempotent, so any
//! delivery order and any duplication yield identical state, and a rebuild from the log gives
//! exactly what ingestion gave.
//!
//! **The ordering rule** for whole-object snapshots (a subscription, an invoice, ...): the
//! snapshot with the greater [`Version`] wins, comparing in turn
//!
//! 1. `absorb`: lifecycle stages that only move forward. A terminal state (a canceled
//!    subscription, a deleted customer, a paid or void invoice) outranks everything before it,
//!    whatever its timestamp, so a late older update never resurrects it;
//! 2. `created`: Stripe's event time (seconds);
//! 3. `progress`: an object fact that only grows (a subscription's latest item period end, an
//!    invoice's attempt count), which orders same-second snapshots;
//! 4. `type_rank`: within one second, `*.created` before `*.updated` before `*.deleted`;
//! 5. `event_id`: a deterministic tie-break.
//!
//! Snapshots that tie on 1–4 but differ are genuine conflicts: the tie-break still picks one
//! deterministically, and the event ids are reported in `conflicts` so that the shell can append
//! a re-fetch of the object to the log.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub absorb: u8,
    pub created: i64,
    pub progress: i64,
    pub type_rank: u8,
    pub event_id: String,
}

impl Version {
    fn level(&self) -> (u8, i64) {
        (self.absorb, self.created)
    }

    fn rank(&self) -> (u8, i64, i64, u8) {
        (self.absorb, self.created, self.progress, self.type_rank)
    }
}

/// A snapshot of an object as one event rendered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate<V> {
    pub version: Version,
    pub value: V,
}

/// Last-writer-wins under the ordering rule, keeping every candidate of the top level
/// (`absorb`, `created`) so that conflict detection is itself order-independent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register<V> {
    /// Sorted by version, all on the same level, distinct event ids. Never empty.
    candidates: Vec<Candidate<V>>,
}

impl<V: Clone + PartialEq> Register<V> {
    pub fn new(version: Version, value: V) -> Self {
        Register {
            candidates: vec![Candidate { version, value }],
        }
    }

    /// The winning snapshot.
    pub fn value(&self) -> &V {
        &self.winner().value
    }

    pub fn version(&self) -> &Version {
        &self.winner().version
    }

    fn winner(&self) -> &Candidate<V> {
        self.candidates
            .last()
            .expect("a register always holds a candidate")
    }

    /// Event ids of snapshots that tie with the winner on everything but the event id and
    /// disagree with it.
    pub fn conflicts(&self) -> Vec<String> {
        let winner = self.winner();
        let mut ids: Vec<String> = self
            .candidates
            .iter()
            .filter(|c| c.version.rank() == winner.version.rank() && c.value != winner.value)
            .map(|c| c.version.event_id.clone())
            .collect();
        if !ids.is_empty() {
            ids.push(winner.version.event_id.clone());
            ids.sort();
        }
        ids
    }

    pub fn join(&mut self, other: Register<V>) -> bool {
        let before = self.candidates.len();
        let before_top = self.winner().version.clone();
        let level = self
            .winner()
            .version
            .level()
            .max(other.winner().version.level());
        let mut all: Vec<Candidate<V>> = std::mem::take(&mut self.candidates);
        all.extend(other.candidates);
        all.retain(|c| c.version.level() == level);
        all.sort_by(|a, b| a.version.cmp(&b.version));
        all.dedup_by(|a, b| a.version.event_id == b.version.event_id);
        self.candidates = all;
        self.candidates.len() != before || self.winner().version != before_top
    }
}

/// The smallest value seen (e.g. the first failure time). `None` is "nothing seen yet".
pub fn join_min<T: Ord + Clone>(mine: &mut Option<T>, other: Option<T>) -> bool {
    match (mine.as_ref(), other) {
        (_, None) => false,
        (None, Some(o)) => {
            *mine = Some(o);
            true
        }
        (Some(m), Some(o)) if o < *m => {
            *mine = Some(o);
            true
        }
        _ => false,
    }
}

/// The largest value seen.
pub fn join_max<T: Ord + Clone>(mine: &mut Option<T>, other: Option<T>) -> bool {
    match (mine.as_ref(), other) {
        (_, None) => false,
        (None, Some(o)) => {
            *mine = Some(o);
            true
        }
        (Some(m), Some(o)) if o > *m => {
            *mine = Some(o);
            true
        }
        _ => false,
    }
}

/// A link learned from some event (e.g. customer → app user), with the evidence's version:
/// the earliest evidence wins, so a later, conflicting claim cannot steal a customer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Link {
    pub created: i64,
    pub event_id: String,
    pub value: String,
}

pub fn join_link(mine: &mut Option<Link>, other: Option<Link>) -> bool {
    join_min(mine, other)
}

/// A logical OR that never goes back (refunded, disputed).
pub fn join_flag(mine: &mut bool, other: bool) -> bool {
    let changed = other && !*mine;
    *mine |= other;
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(absorb: u8, created: i64, progress: i64, id: &str) -> Version {
        Version {
            absorb,
            created,
            progress,
            type_rank: 1,
            event_id: id.to_owned(),
        }
    }

    #[test]
    fn a_register_keeps_the_greatest_version_whatever_the_join_order() {
        let a = Register::new(v(0, 10, 0, "evt_a"), "a");
        let b = Register::new(v(0, 11, 0, "evt_b"), "b");
        let c = Register::new(v(1, 5, 0, "evt_c"), "c");
        let orders = [[&a, &b, &c], [&c, &b, &a], [&b, &c, &a], [&a, &c, &b]];
        let results: Vec<_> = orders
            .iter()
            .map(|order| {
                let mut r = order[0].clone();
                for x in &order[1..] {
                    r.join((*x).clone());
                }
                r.join(order[1].clone());
                r
            })
            .collect();
        assert!(results.iter().all(|r| r == &results[0]));
        assert_eq!(
            *results[0].value(),
            "c",
            "an absorbing state outranks newer ones"
        );
    }

    #[test]
    fn same_second_disagreement_is_a_conflict_with_a_deterministic_winner() {
        let mut x = Register::new(v(0, 10, 0, "evt_x"), "x");
        x.join(Register::new(v(0, 10, 0, "evt_y"), "y"));
        let mut y = Register::new(v(0, 10, 0, "evt_y"), "y");
        y.join(Register::new(v(0, 10, 0, "evt_x"), "x"));
        assert_eq!(x, y);
        assert_eq!(*x.value(), "y");
        assert_eq!(x.conflicts(), ["evt_x", "evt_y"]);
        // Progress orders a same-second pair: not a conflict.
        let mut p = Register::new(v(0, 10, 5, "evt_p"), "p");
        p.join(Register::new(v(0, 10, 6, "evt_q"), "q"));
        assert!(p.conflicts().is_empty());
        assert_eq!(*p.value(), "q");
    }
}
