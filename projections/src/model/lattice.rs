//! The small lattices every read model is built from.
//!
//! Every piece of read-model state is a join-semilattice: merging the information of an event
//! is a `join` that is commutative, associative and idempotent, so any delivery order and any
//! duplication yield identical state, and a rebuild from the log gives exactly what ingestion
//! gave. Which snapshot of an object wins is decided by the ordering rule in
//! [`super::ordering`].

use serde::{Deserialize, Serialize};

pub use super::ordering::Version;

/// A snapshot of an object as one event rendered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate<V> {
    pub version: Version,
    pub value: V,
}

/// Last-writer-wins under the ordering rule, keeping every candidate of the top level
/// (`absorb`, `created`) so that conflict detection is itself order-independent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredRegister<V>")]
pub struct Register<V> {
    /// Sorted by version, all on the same level, distinct event ids. Never empty.
    candidates: Vec<Candidate<V>>,
}

// States come back from the database as JSON; an empty register would make `value()` panic
// in the server, so reading one is an error instead.
#[derive(Deserialize)]
struct StoredRegister<V> {
    candidates: Vec<Candidate<V>>,
}

impl<V> TryFrom<StoredRegister<V>> for Register<V> {
    type Error = &'static str;

    fn try_from(stored: StoredRegister<V>) -> Result<Self, Self::Error> {
        if stored.candidates.is_empty() {
            return Err("a register needs at least one candidate");
        }
        // Restores the invariant `winner()` and `join` rely on, whoever wrote the JSON: sorted,
        // one level, distinct event ids (of an event's versions, the greatest).
        let mut candidates = stored.candidates;
        candidates.sort_by(|a, b| a.version.cmp(&b.version));
        let top = candidates[candidates.len() - 1].version.level();
        let mut kept: Vec<Candidate<V>> = Vec::with_capacity(candidates.len());
        for c in candidates.into_iter().rev() {
            let seen = kept
                .iter()
                .any(|k| k.version.event_id == c.version.event_id);
            if c.version.level() == top && !seen {
                kept.push(c);
            }
        }
        kept.reverse();
        Ok(Register { candidates: kept })
    }
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

    /// Every snapshot on the top level survives, one per event id: dropping same-level losers
    /// would make conflict detection depend on which snapshot arrived first.
    pub fn join(&mut self, other: Register<V>) -> bool {
        // Both sides hold the invariant (sorted, one level, distinct event ids), so only the
        // higher level survives, and on one level each of `other`'s candidates is offered in
        // turn. The fold joins every event into its object's state this way: no copies.
        let mine = self.winner().version.level();
        let theirs = other.winner().version.level();
        if theirs < mine {
            return false;
        }
        if theirs > mine {
            self.candidates = other.candidates;
            return true;
        }
        let mut changed = false;
        for candidate in other.candidates {
            changed |= self.offer(candidate);
        }
        changed
    }

    /// A candidate on this register's level. One candidate per event: if an event was decoded
    /// twice under different versions (a state stored by an older build, joined with a
    /// re-projection), the greater one stays, and of two equal ones the one already here, which
    /// keeps this a join whatever the order.
    fn offer(&mut self, candidate: Candidate<V>) -> bool {
        let same_event = |c: &Candidate<V>| c.version.event_id == candidate.version.event_id;
        if let Some(i) = self.candidates.iter().position(same_event) {
            if self.candidates[i].version >= candidate.version {
                return false;
            }
            self.candidates.remove(i);
        }
        let at = self
            .candidates
            .partition_point(|c| c.version < candidate.version);
        self.candidates.insert(at, candidate);
        true
    }

    /// Every snapshot still competing, oldest first; the last one is the winner.
    pub fn candidates(&self) -> &[Candidate<V>] {
        &self.candidates
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
            stage: 0,
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
    fn a_stored_register_round_trips_and_an_empty_one_is_rejected() {
        let mut r = Register::new(v(0, 10, 0, "evt_a"), "a".to_owned());
        r.join(Register::new(v(0, 10, 0, "evt_b"), "b".to_owned()));
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Register<String>>(&json).unwrap(), r);
        let empty = serde_json::from_str::<Register<String>>(r#"{"candidates":[]}"#);
        assert!(empty.unwrap_err().to_string().contains("at least one"));
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

    fn ids<'a>(r: &'a Register<&'a str>) -> Vec<(&'a str, i64)> {
        r.candidates()
            .iter()
            .map(|c| (c.version.event_id.as_str(), c.version.progress))
            .collect()
    }

    #[test]
    fn a_register_join_reports_a_change_exactly_when_its_candidates_change() {
        // (event, created, progress, value): whether the join changes the register, and the
        // candidates after it as (event, progress).
        type Step = (
            (&'static str, i64, i64, &'static str),
            bool,
            &'static [(&'static str, i64)],
        );
        let steps: [Step; 6] = [
            (("evt_b", 10, 1, "b"), false, &[("evt_b", 1)]), // the same snapshot
            (("evt_a", 9, 5, "a"), false, &[("evt_b", 1)]),  // a lower level
            (("evt_a", 10, 0, "a"), true, &[("evt_a", 0), ("evt_b", 1)]), // a new event
            (("evt_b", 10, 0, "b0"), false, &[("evt_a", 0), ("evt_b", 1)]), // an older decoding
            (("evt_a", 10, 2, "a2"), true, &[("evt_b", 1), ("evt_a", 2)]), // a newer decoding
            (("evt_c", 11, 0, "c"), true, &[("evt_c", 0)]),  // a higher level
        ];
        let mut r = Register::new(v(0, 10, 1, "evt_b"), "b");
        for ((id, created, progress, value), changes, after) in steps {
            let joined = r.join(Register::new(v(0, created, progress, id), value));
            assert_eq!(joined, changes, "{id} at {created}/{progress}");
            assert_eq!(ids(&r), after, "{id} at {created}/{progress}");
        }
        assert_eq!(*r.value(), "c");
    }

    #[test]
    fn of_two_equal_versions_of_one_event_the_one_already_held_stays() {
        let mut r = Register::new(v(0, 10, 0, "evt_a"), "held");
        assert!(!r.join(Register::new(v(0, 10, 0, "evt_a"), "other")));
        assert_eq!(*r.value(), "held");
    }

    #[test]
    fn a_stored_register_is_read_back_sorted_on_one_level_with_distinct_events() {
        let stored = serde_json::json!({"candidates": [
            {"version": v(0, 10, 3, "evt_b"), "value": "b3"},
            {"version": v(0, 9, 0, "evt_old"), "value": "old"},
            {"version": v(0, 10, 0, "evt_a"), "value": "a"},
            {"version": v(0, 10, 1, "evt_b"), "value": "b1"},
        ]});
        let r: Register<String> = serde_json::from_value(stored).unwrap();
        let read: Vec<(&str, i64, &str)> = r
            .candidates()
            .iter()
            .map(|c| {
                (
                    c.version.event_id.as_str(),
                    c.version.progress,
                    c.value.as_str(),
                )
            })
            .collect();
        assert_eq!(read, [("evt_a", 0, "a"), ("evt_b", 3, "b3")]);
    }
}
