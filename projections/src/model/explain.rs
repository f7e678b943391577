//! Explain: an entitlement decision with the rule that produced it and, for every input, the
//! log entry that set it.
//!
//! The decision is [`super::entitlement::decide`] over [`Projection::billing_of_user`]: the
//! same code as `GET /api/entitlements/{user_id}`. Each input names the event that set it (the
//! register's winning snapshot, the earliest evidence of a link or a failure), and the log
//! position of that event among the entries folded, so that folding only the cited entries
//! gives the same decision and the same inputs (a property test checks it).

use std::collections::BTreeMap;

use serde::Serialize;

use super::decode::Projection;
use super::entitlement::{decide, evaluate, Entitlement, GraceStart, Rule};
use super::history::{fold_as_of, Cut, LogEntry};
use super::objects::{InvoiceState, SubscriptionState};

/// What an input of a decision is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// The customer belongs to the user (docs/adr/0013).
    CustomerUserLink,
    /// The subscription's status (its snapshot, or the failed payment that derived it).
    Status,
    /// The start of the grace period.
    GraceStart,
    /// What `until` is computed from (the period end, a trial end, a grace start).
    Until,
}

/// One input and the log entry that set it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Cited {
    pub input: Input,
    /// `customer` or `subscription` and its id, or `invoice` for a grace start.
    pub object_kind: &'static str,
    pub object_id: String,
    pub event_id: String,
    /// Its log position; `None` only for an event outside the entries folded (never, when the
    /// entries are the objects' whole histories).
    pub position: Option<i64>,
}

/// A subscription the decision considered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Considered {
    pub id: String,
    pub status: String,
    /// `past_due` derived by the failed-payment rule.
    pub derived: bool,
    pub entitlement: Entitlement,
    pub rule: Rule,
    pub inputs: Vec<Cited>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub user_id: String,
    pub entitlement: Entitlement,
    pub rule: Rule,
    /// [`Rule::sentence`] of `rule`.
    pub sentence: String,
    /// The customers linked to the user, each with the entry that linked it.
    pub links: Vec<Cited>,
    pub subscriptions: Vec<Considered>,
    /// The inputs of the decision: the links and the deciding subscription's inputs.
    pub inputs: Vec<Cited>,
    /// The greatest position folded.
    pub position: Option<i64>,
    /// The clock the decision was evaluated at, unix seconds.
    pub now: i64,
}

impl Explanation {
    /// Every entry the explanation cites, by position (unknown positions last), once.
    pub fn cited_event_ids(&self) -> Vec<&str> {
        let mut all: Vec<(Option<i64>, &str)> = self
            .links
            .iter()
            .chain(self.subscriptions.iter().flat_map(|s| &s.inputs))
            .map(|c| (c.position, c.event_id.as_str()))
            .collect();
        all.sort_by_key(|(p, id)| (p.is_none(), *p, *id));
        all.dedup();
        all.into_iter().map(|(_, id)| id).collect()
    }
}

/// Folds `entries` (the histories of the user's customers, subscriptions and invoices) as of
/// `cut` and explains the user's entitlement at `now`.
pub fn explain(
    entries: &[LogEntry<'_>],
    cut: Option<&Cut>,
    user_id: &str,
    now: i64,
    grace_secs: i64,
) -> Explanation {
    let (projection, position) = fold_as_of(entries, cut);
    let positions: BTreeMap<&str, i64> = entries
        .iter()
        .filter(|e| cut.is_none_or(|c| c.includes(e)))
        .map(|e| (e.event.event_id, e.position))
        .collect();
    let at = |id: &str| positions.get(id).copied();
    let (subscriptions, invoices) = projection.billing_of_user(user_id);
    let decision = decide(&subscriptions, &invoices, now, grace_secs);
    let links = links(&projection, user_id, &at);
    let considered: Vec<Considered> = subscriptions
        .iter()
        .filter_map(|s| consider(s, &invoices, now, grace_secs, &at))
        .collect();
    let mut inputs = links.clone();
    if let Some(decisive) = considered
        .iter()
        .find(|c| Some(&c.id) == decision.entitlement.subscription_id.as_ref())
    {
        inputs.extend(decisive.inputs.iter().cloned());
    }
    Explanation {
        user_id: user_id.to_owned(),
        sentence: decision.rule.sentence(),
        entitlement: decision.entitlement,
        rule: decision.rule,
        links,
        subscriptions: considered,
        inputs,
        position,
        now,
    }
}

fn links(projection: &Projection, user_id: &str, at: &dyn Fn(&str) -> Option<i64>) -> Vec<Cited> {
    projection
        .customers
        .values()
        .filter(|c| c.user_id() == Some(user_id))
        .filter_map(|c| {
            let link = c.user.as_ref()?;
            Some(Cited {
                input: Input::CustomerUserLink,
                object_kind: "customer",
                object_id: c.id.clone(),
                event_id: link.event_id.clone(),
                position: at(&link.event_id),
            })
        })
        .collect()
}

fn consider(
    s: &SubscriptionState,
    invoices: &[InvoiceState],
    now: i64,
    grace_secs: i64,
    at: &dyn Fn(&str) -> Option<i64>,
) -> Option<Considered> {
    let evaluation = evaluate(s, invoices, now, grace_secs)?;
    let snapshot = s.snapshot.as_ref()?.version().event_id.clone();
    let derived = s.derived_past_due();
    let cite = |input, object_kind, object_id: &str, event_id: &str| Cited {
        input,
        object_kind,
        object_id: object_id.to_owned(),
        event_id: event_id.to_owned(),
        position: at(event_id),
    };
    let mut inputs = Vec::new();
    inputs.push(cite(Input::Status, "subscription", &s.id, &snapshot));
    if let Some(d) = &derived {
        // The failed payment newer than the snapshot, which made the status `past_due`.
        inputs.push(cite(
            Input::Status,
            "invoice",
            &d.invoice,
            &d.last_failure.event_id,
        ));
    }
    match &evaluation.rule {
        Rule::PastDueWithinGrace { grace, .. } | Rule::PastDueGraceExpired { grace, .. } => {
            match grace {
                GraceStart::FirstFailedPayment {
                    invoice,
                    event_id: Some(event_id),
                    ..
                } => {
                    inputs.push(cite(Input::GraceStart, "invoice", invoice, event_id));
                    inputs.push(cite(Input::Until, "invoice", invoice, event_id));
                }
                GraceStart::PeriodEnd { .. } => {
                    inputs.push(cite(Input::GraceStart, "subscription", &s.id, &snapshot));
                    inputs.push(cite(Input::Until, "subscription", &s.id, &snapshot));
                }
                // A failure folded from a state stored before failures kept their event, or no
                // start at all: nothing to cite.
                GraceStart::FirstFailedPayment { event_id: None, .. } | GraceStart::Unknown => {}
            }
        }
        Rule::Active { .. } | Rule::Trialing { .. } => {
            inputs.push(cite(Input::Until, "subscription", &s.id, &snapshot));
        }
        Rule::NoAccessStatus { .. } | Rule::NoSubscription => {}
    }
    Some(Considered {
        id: s.id.clone(),
        status: s.status().unwrap_or_default().to_owned(),
        derived: derived.is_some(),
        entitlement: evaluation.entitlement,
        rule: evaluation.rule,
        inputs,
    })
}
