//! The rebuild's write-back cache: folded states of the objects seen recently, written to the
//! new generation when they are evicted and at the end, so an object touched by many events is
//! written about once per rebuild instead of once per chunk.
//!
//! **Memory bound.** At most `capacity` states are held (plus one chunk's facts), whatever the
//! length of the log: memory is bounded by the capacity, not by events or distinct objects. A
//! state evicted earlier is read back from the new generation when it is seen again; which keys
//! were evicted is remembered in a fixed 1 MiB bit filter ([`Evicted`]), so keys never evicted
//! (most of them) cost no look-up. A false positive of the filter costs one look-up that finds
//! nothing.
//!
//! **In flight.** Evicted states go to the rebuild's writer task as a numbered batch, and stay
//! readable here until the writer reports that batch committed ([`Cache::committed`]). So a
//! state seen again soon after its eviction is taken back from memory, and one that is not in
//! flight is already committed: the fold never waits for the writer before reading back.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::HashMap;
use ledger_projections::Fact;

use crate::store::read_models::Key;
use crate::store::Kind;

struct Slot {
    state: Fact,
    /// Not yet written to the new generation in this form.
    dirty: bool,
    /// The chunk that last touched it: eviction takes the least recently touched.
    touched: u64,
}

pub(super) struct Cache {
    capacity: usize,
    slots: HashMap<Key, Slot>,
    evicted: Evicted,
    tick: u64,
    /// Evicted batches not yet known committed, oldest first, by number.
    in_flight: VecDeque<(u64, Batch)>,
    /// Where each in-flight key's latest state is: its batch's number and its index there.
    in_flight_keys: HashMap<Key, (u64, usize)>,
    /// The number the next evicted batch gets.
    next_batch: u64,
}

/// States evicted together, shared with the writer task that writes them.
pub(super) type Batch = Arc<Vec<Fact>>;

impl Cache {
    pub(super) fn new(capacity: usize) -> Cache {
        Cache {
            capacity: capacity.max(1),
            slots: HashMap::default(),
            evicted: Evicted::new(),
            tick: 0,
            in_flight: VecDeque::new(),
            in_flight_keys: HashMap::default(),
            next_batch: 1,
        }
    }

    /// Starts the next chunk (for recency).
    pub(super) fn next_chunk(&mut self) {
        self.tick += 1;
    }

    /// Whether the new generation may already hold a state for `key` that is neither cached
    /// nor in flight (so it is committed, if it exists).
    pub(super) fn must_load(&self, key: &Key) -> bool {
        !self.slots.contains_key(key)
            && !self.in_flight_keys.contains_key(key)
            && self.evicted.may_contain(key)
    }

    /// Takes `key`'s state back from an evicted batch not yet committed, as written (clean:
    /// that batch writes it). False if it is not in flight.
    pub(super) fn take_back(&mut self, key: &Key) -> bool {
        if self.slots.contains_key(key) {
            return false;
        }
        let Some(&(number, index)) = self.in_flight_keys.get(key) else {
            return false;
        };
        let first = self.in_flight.front().map_or(number, |(n, _)| *n);
        let (_, batch) = &self.in_flight[(number - first) as usize];
        let state = batch[index].clone();
        self.insert_loaded(key.clone(), state);
        true
    }

    /// The writer committed every batch numbered up to `through`: those states are read back
    /// from the new generation from now on.
    pub(super) fn committed(&mut self, through: u64) {
        while self.in_flight.front().is_some_and(|(n, _)| *n <= through) {
            let Some((number, batch)) = self.in_flight.pop_front() else {
                break;
            };
            for state in batch.iter() {
                let key = (Kind::of(state), state.id().to_owned());
                if self
                    .in_flight_keys
                    .get(&key)
                    .is_some_and(|(n, _)| *n == number)
                {
                    self.in_flight_keys.remove(&key);
                }
            }
        }
    }

    /// A state read back from the new generation (as written: clean).
    pub(super) fn insert_loaded(&mut self, key: Key, state: Fact) {
        self.slots.insert(
            key,
            Slot {
                state,
                dirty: false,
                touched: self.tick,
            },
        );
    }

    /// Joins `fact` into the cached state of `key`.
    pub(super) fn join(&mut self, key: Key, fact: Fact) {
        let tick = self.tick;
        match self.slots.get_mut(&key) {
            Some(slot) => {
                slot.touched = tick;
                if super::super::join(&mut slot.state, fact) {
                    slot.dirty = true;
                }
            }
            None => {
                self.slots.insert(
                    key,
                    Slot {
                        state: fact,
                        dirty: true,
                        touched: tick,
                    },
                );
            }
        }
    }

    /// Over capacity: removes a quarter, settled states first (see [`settled`]), then the
    /// least recently touched, and returns the states of those not yet written with the
    /// batch's number, to be reported through [`Cache::committed`]. Their keys are remembered
    /// as evicted.
    pub(super) fn evict(&mut self) -> Option<(u64, Batch)> {
        if self.slots.len() <= self.capacity {
            return None;
        }
        let excess = self.slots.len() - self.capacity * 3 / 4;
        let rank = |slot: &Slot| (u8::from(!settled(&slot.state)), slot.touched);
        let mut ranks: Vec<(u8, u64)> = self.slots.values().map(rank).collect();
        let (_, &mut threshold, _) = ranks.select_nth_unstable(excess - 1);
        // Everything ranked below the threshold goes, then enough of the threshold's own rank
        // to reach `excess`.
        let mut quota = excess - ranks.iter().filter(|&&r| r < threshold).count();
        drop(ranks);
        let keys: Vec<Key> = self
            .slots
            .iter()
            .filter(|(_, slot)| {
                let r = rank(slot);
                r < threshold
                    || (r == threshold && quota > 0 && {
                        quota -= 1;
                        true
                    })
            })
            .map(|(key, _)| key.clone())
            .collect();
        let number = self.next_batch;
        let mut gone = Vec::new();
        for key in keys {
            self.evicted.insert(&key);
            if let Some(slot) = self.slots.remove(&key) {
                if slot.dirty {
                    self.in_flight_keys.insert(key, (number, gone.len()));
                    gone.push(slot.state);
                }
            }
        }
        if gone.is_empty() {
            return None;
        }
        self.next_batch += 1;
        let batch = Arc::new(gone);
        self.in_flight.push_back((number, batch.clone()));
        Some((number, batch))
    }

    /// Copies of at most `limit` states not yet written; they count as written from now on.
    /// Empty when everything is written.
    pub(super) fn take_dirty(&mut self, limit: usize) -> Vec<Fact> {
        self.slots
            .values_mut()
            .filter(|s| s.dirty)
            .take(limit)
            .map(|s| {
                s.dirty = false;
                s.state.clone()
            })
            .collect()
    }
}

/// Whether a state has reached a stage that events seldom follow (a paid or void invoice, a
/// canceled subscription, a deleted customer, a finished Checkout Session): evicted first,
/// since it is the least likely to be touched again. Only a preference: a settled state that
/// is touched again is read back like any other.
fn settled(state: &Fact) -> bool {
    match state {
        Fact::Customer(s) => s.deleted(),
        Fact::Subscription(s) => s.view().is_some_and(|v| v.absorb() > 0),
        Fact::Invoice(s) => matches!(s.status(), Some("paid" | "void")),
        Fact::Order(s) => s.view().is_some_and(|v| v.absorb() > 0),
        // Refunds and disputes come long after a payment.
        Fact::Payment(_) => false,
    }
}

/// A fixed-size set of keys with false positives and no false negatives (a Bloom filter with
/// two probes over 2^23 bits).
struct Evicted {
    bits: Vec<u64>,
    hasher: foldhash::quality::RandomState,
    any: bool,
}

const BITS: u64 = 1 << 23;

impl Evicted {
    fn new() -> Evicted {
        Evicted {
            bits: Vec::new(),
            hasher: foldhash::quality::RandomState::default(),
            any: false,
        }
    }

    fn probes(&self, key: &Key) -> [u64; 2] {
        let h = self.hasher.hash_one(key);
        [h % BITS, (h >> 32).wrapping_mul(0x9E37_79B9) % BITS]
    }

    fn insert(&mut self, key: &Key) {
        if self.bits.is_empty() {
            self.bits = vec![0; (BITS / 64) as usize];
        }
        self.any = true;
        for p in self.probes(key) {
            self.bits[(p / 64) as usize] |= 1 << (p % 64);
        }
    }

    fn may_contain(&self, key: &Key) -> bool {
        self.any
            && self
                .probes(key)
                .iter()
                .all(|p| self.bits[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_projections::{CustomerState, Link};

    fn customer(id: &str) -> (Key, Fact) {
        (
            (Kind::Customer, id.to_owned()),
            Fact::Customer(CustomerState::new(id.to_owned())),
        )
    }

    #[test]
    fn eviction_takes_the_least_recently_touched_and_remembers_them() {
        let mut cache = Cache::new(4);
        for i in 0..5 {
            cache.next_chunk();
            let (key, fact) = customer(&format!("cus_{i}"));
            cache.join(key, fact);
        }
        // Five over a capacity of four: down to three, the two oldest written.
        let (number, gone) = cache.evict().expect("two states evicted");
        let ids: Vec<&str> = gone.iter().map(|f| f.id()).collect();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains(&"cus_0") && ids.contains(&"cus_1"), "{ids:?}");
        // In flight: not read back from the new generation until committed.
        assert!(!cache.must_load(&customer("cus_0").0));
        cache.committed(number);
        assert!(cache.must_load(&customer("cus_0").0));
        assert!(!cache.must_load(&customer("cus_4").0));
        // The rest is written once, then is clean.
        assert_eq!(cache.take_dirty(2).len(), 2);
        assert_eq!(cache.take_dirty(2).len(), 1);
        assert!(cache.take_dirty(2).is_empty());
    }

    #[test]
    fn a_state_seen_again_while_its_batch_is_in_flight_is_taken_back_from_memory() {
        // A capacity of one: every second state evicts both.
        let mut cache = Cache::new(1);
        let (cus_0, fact_0) = customer("cus_0");
        let (cus_1, fact_1) = customer("cus_1");
        cache.join(cus_0.clone(), fact_0);
        cache.next_chunk();
        cache.join(cus_1.clone(), fact_1);
        let (first, gone) = cache.evict().expect("both evicted");
        assert_eq!(gone.len(), 2);
        assert!(cache.take_back(&cus_0), "in flight, so taken back");
        assert!(!cache.must_load(&cus_0) && !cache.must_load(&cus_1));
        // Taken back clean: its batch writes it, so it is not written again.
        assert!(cache.take_dirty(10).is_empty());
        // Changed and evicted again: a second batch now holds its latest state.
        let mut claimed = CustomerState::new("cus_0".to_owned());
        claimed.claim(Some(Link {
            created: 1,
            event_id: "evt_1".to_owned(),
            value: "user_1".to_owned(),
        }));
        cache.next_chunk();
        cache.join(cus_0.clone(), Fact::Customer(claimed));
        let (cus_2, fact_2) = customer("cus_2");
        cache.join(cus_2, fact_2);
        let (second, gone) = cache.evict().expect("evicted again");
        assert!(second > first && gone.len() == 2, "{gone:?}");
        cache.committed(first);
        assert!(
            cache.must_load(&cus_1),
            "committed: read back from the new generation"
        );
        assert!(
            !cache.must_load(&cus_0),
            "still in flight in the second batch"
        );
        assert!(cache.take_back(&cus_0));
        let Some(Slot {
            state: Fact::Customer(state),
            ..
        }) = cache.slots.get(&cus_0)
        else {
            panic!("cus_0 is cached");
        };
        assert_eq!(
            state.claims.len(),
            1,
            "the latest state, not the first batch's"
        );
        cache.slots.clear();
        cache.committed(second);
        assert!(cache.must_load(&cus_0));
        assert!(!cache.take_back(&cus_0));
    }

    #[test]
    fn a_key_never_evicted_needs_no_look_up() {
        let mut evicted = Evicted::new();
        assert!(!evicted.may_contain(&customer("cus_a").0));
        evicted.insert(&customer("cus_a").0);
        assert!(evicted.may_contain(&customer("cus_a").0));
    }
}
