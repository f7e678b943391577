//! History and as-of: the same fold as the read models, replayed entry by entry.
//!
//! An object's history is its log entries folded one at a time, in log order, with the very
//! joins that build the read model: after each entry the object's observable fields
//! ([`fields`]) are compared with those before it. An entry that changed them was `applied`
//! (with its `{field, from, to}` changes); one whose snapshot the ordering rule passed over was
//! `superseded`; anything else it said was already known (`ignored`). As-of is the fold of the
//! entries at or before a cut, nothing more: what the service knew then.
//!
//! Unlike the live folds, positions and receive times matter here, because a cut is stated in
//! them; the states themselves still depend only on which entries are folded, not on their
//! order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::decode::{decode, Fact, LoggedEvent, Projection};
use super::lattice::Register;

/// A log entry with what a cut is stated in.
#[derive(Debug, Clone, Copy)]
pub struct LogEntry<'a> {
    pub position: i64,
    /// When the service received it, unix microseconds.
    pub received_at: i64,
    pub event: LoggedEvent<'a>,
}

/// Where the log is cut: entries at or before it are folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", content = "at", rename_all = "snake_case")]
pub enum Cut {
    /// Log position: what the service had logged.
    Position(i64),
    /// Receive time, unix microseconds: what the service knew then.
    ReceivedAt(i64),
    /// Stripe's `created`, unix seconds: what Stripe had said by then.
    Created(i64),
}

impl Cut {
    pub fn includes(&self, entry: &LogEntry<'_>) -> bool {
        match *self {
            Cut::Position(p) => entry.position <= p,
            Cut::ReceivedAt(t) => entry.received_at <= t,
            Cut::Created(t) => entry.event.created <= t,
        }
    }

    /// The clock an entitlement is evaluated at for this cut, unix seconds: the cut's own time,
    /// or for a position, the receive time of the latest entry folded (`latest_received`).
    pub fn clock(&self, latest_received: Option<i64>) -> Option<i64> {
        match *self {
            Cut::Position(_) => latest_received.map(|us| us.div_euclid(1_000_000)),
            Cut::ReceivedAt(t) => Some(t.div_euclid(1_000_000)),
            Cut::Created(t) => Some(t),
        }
    }
}

/// The fold of the entries `cut` includes (all of them without a cut), and the greatest
/// position folded. An entry that does not decode is skipped, as it is a dead letter in the
/// live read models and skipped by a rebuild.
pub fn fold_as_of(entries: &[LogEntry<'_>], cut: Option<&Cut>) -> (Projection, Option<i64>) {
    let mut projection = Projection::default();
    let mut last = None;
    for entry in entries.iter().filter(|e| cut.is_none_or(|c| c.includes(e))) {
        let Ok(facts) = decode(&entry.event) else {
            continue;
        };
        for fact in facts {
            projection.apply(fact);
        }
        last = last.max(Some(entry.position));
    }
    (projection, last)
}

/// What one entry did to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Changed the folded state.
    Applied,
    /// Carried a snapshot that the ordering rule passed over (older, or equal).
    Superseded,
    /// Said nothing the state did not already hold (or could not be decoded).
    Ignored,
}

impl Effect {
    /// The name the API and the console show (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Applied => "applied",
            Effect::Superseded => "superseded",
            Effect::Ignored => "ignored",
        }
    }
}

/// One field an applied entry changed; `null` stands for "absent".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    pub from: Value,
    pub to: Value,
}

/// One entry of an object's history: `index` into the entries given to [`history`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub index: usize,
    pub effect: Effect,
    pub changes: Vec<Change>,
}

/// The object's history and its state after the last entry. `entries` must be in log order;
/// those that state nothing about the object (`kind`, `id`) are left out, except entries that
/// do not decode, which are `ignored` (they are dead letters of the live fold).
pub fn history(kind: &str, id: &str, entries: &[LogEntry<'_>]) -> (Vec<Step>, Option<Fact>) {
    let mut walk = Walk::default();
    let steps = walk.steps(kind, id, entries, None, usize::MAX);
    (steps, walk.state)
}

/// One page of [`history`]: the steps of the entries after position `after` (all of them
/// without), at most `max`. The entries before the page are folded without rendering or
/// diffing their fields, and the fold stops at the page's last step, so a page costs the
/// entries before it once plus its own, not the object's whole history rendered step by step.
pub fn history_page(
    kind: &str,
    id: &str,
    entries: &[LogEntry<'_>],
    after: Option<i64>,
    max: usize,
) -> Vec<Step> {
    Walk::default().steps(kind, id, entries, after, max)
}

/// The fold of one object's entries, step by step.
#[derive(Default)]
struct Walk {
    state: Option<Fact>,
}

impl Walk {
    fn steps(
        &mut self,
        kind: &str,
        id: &str,
        entries: &[LogEntry<'_>],
        after: Option<i64>,
        max: usize,
    ) -> Vec<Step> {
        // The fields before the page's first step: rendered once, when the page starts.
        let mut before: Option<BTreeMap<String, Value>> = None;
        let mut steps = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            if steps.len() == max {
                break;
            }
            let in_page = after.is_none_or(|a| entry.position > a);
            let Ok(facts) = decode(&entry.event) else {
                if in_page {
                    steps.push(Step {
                        index,
                        effect: Effect::Ignored,
                        changes: Vec::new(),
                    });
                }
                continue;
            };
            let mine: Vec<Fact> = facts
                .into_iter()
                .filter(|f| f.kind() == kind && f.id() == id)
                .collect();
            if mine.is_empty() {
                continue;
            }
            if !in_page {
                self.join_all(mine);
                continue;
            }
            let before = before.get_or_insert_with(|| self.fields());
            let snapshot = mine.iter().any(has_snapshot);
            // A join that changed nothing cannot change the fields: no need to render them.
            let changes = if self.join_all(mine) {
                let after = self.fields();
                let changes = diff(before, &after);
                *before = after;
                changes
            } else {
                Vec::new()
            };
            let effect = if !changes.is_empty() {
                Effect::Applied
            } else if snapshot {
                Effect::Superseded
            } else {
                Effect::Ignored
            };
            steps.push(Step {
                index,
                effect,
                changes,
            });
        }
        steps
    }

    /// Joins `facts` into the state; whether the state changed.
    fn join_all(&mut self, facts: Vec<Fact>) -> bool {
        let mut changed = false;
        for fact in facts {
            match self.state.as_mut() {
                Some(s) => changed |= join_fact(s, fact),
                None => {
                    self.state = Some(fact);
                    changed = true;
                }
            }
        }
        changed
    }

    fn fields(&self) -> BTreeMap<String, Value> {
        self.state.as_ref().map(fields).unwrap_or_default()
    }
}

/// Applies `changes` to `fields`, as a client replaying a history would.
pub fn replay(fields: &mut BTreeMap<String, Value>, changes: &[Change]) {
    for c in changes {
        if c.to.is_null() {
            fields.remove(&c.field);
        } else {
            fields.insert(c.field.clone(), c.to.clone());
        }
    }
}

fn has_snapshot(fact: &Fact) -> bool {
    match fact {
        Fact::Customer(s) => s.snapshot.is_some(),
        Fact::Subscription(s) => s.snapshot.is_some(),
        Fact::Invoice(s) => s.snapshot.is_some(),
        Fact::Order(s) => s.snapshot.is_some(),
        Fact::Payment(s) => s.dispute_status.is_some(),
    }
}

/// The one join of two facts about an object (the projector's, for the same kinds).
pub fn join_fact(into: &mut Fact, other: Fact) -> bool {
    match (into, other) {
        (Fact::Customer(a), Fact::Customer(b)) => a.join(b),
        (Fact::Subscription(a), Fact::Subscription(b)) => a.join(b),
        (Fact::Invoice(a), Fact::Invoice(b)) => a.join(b),
        (Fact::Order(a), Fact::Order(b)) => a.join(b),
        (Fact::Payment(a), Fact::Payment(b)) => a.join(b),
        _ => false,
    }
}

fn diff(before: &BTreeMap<String, Value>, after: &BTreeMap<String, Value>) -> Vec<Change> {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let from = before.get(k).cloned().unwrap_or(Value::Null);
            let to = after.get(k).cloned().unwrap_or(Value::Null);
            (from != to).then(|| Change {
                field: k.clone(),
                from,
                to,
            })
        })
        .collect()
}

/// The observable fields of a state: the winning snapshot's fields and every fact the state
/// joins, without the fold's bookkeeping (versions, losing candidates). Absent and `null`
/// fields are left out, so replaying changes from an empty map gives exactly this map.
pub fn fields(fact: &Fact) -> BTreeMap<String, Value> {
    let mut out = Map::new();
    match fact {
        Fact::Customer(s) => {
            snapshot_fields(&mut out, &s.snapshot);
            out.insert("user_id".into(), json!(s.user_id()));
            out.insert(
                "user_link_event".into(),
                json!(s.user.as_ref().map(|l| &l.event_id)),
            );
            let claims: Vec<&String> = s.claims.keys().collect();
            if !claims.is_empty() {
                out.insert("claimed_user_ids".into(), json!(claims));
            }
        }
        Fact::Subscription(s) => {
            snapshot_fields(&mut out, &s.snapshot);
            out.insert("status".into(), json!(s.status()));
            // The renewals themselves are the rule's bookkeeping (one per invoice, growing with
            // every renewal); what they decide is `status_derived`. Rendering them on every
            // step would make a long history quadratic.
            out.insert("status_derived".into(), json!(s.derived_past_due()));
            out.insert("user_id".into(), json!(s.user_id()));
        }
        Fact::Invoice(s) => {
            snapshot_fields(&mut out, &s.snapshot);
            out.insert("first_failed_at".into(), json!(s.first_failed_at));
            out.insert("last_failed_at".into(), json!(s.last_failed_at));
            out.insert("paid_at".into(), json!(s.paid_at));
            out.insert("action_required_at".into(), json!(s.action_required_at));
        }
        Fact::Order(s) => {
            snapshot_fields(&mut out, &s.snapshot);
            out.insert("order_status".into(), json!(s.status()));
            out.insert("user_id".into(), json!(s.user_id()));
            out.insert("async_payment_failed".into(), json!(s.async_payment_failed));
        }
        Fact::Payment(s) => {
            if let Value::Object(all) = json!(s) {
                out.extend(all);
            }
            out.insert(
                "dispute_status".into(),
                json!(s.dispute_status.as_ref().map(|r| r.value())),
            );
            out.insert(
                "conflicts".into(),
                json!(s.dispute_status.as_ref().map(|r| r.conflicts())),
            );
        }
    }
    out.into_iter()
        .filter(|(_, v)| !v.is_null() && *v != json!([]) && *v != json!(false))
        .collect()
}

fn snapshot_fields<V: Serialize + Clone + PartialEq>(
    out: &mut Map<String, Value>,
    register: &Option<Register<V>>,
) {
    let Some(r) = register else {
        return;
    };
    if let Value::Object(view) = json!(r.value()) {
        out.extend(view);
    }
    out.insert("snapshot_event".into(), json!(r.version().event_id));
    out.insert("conflicts".into(), json!(r.conflicts()));
}
