//! From one logged event to the facts it states about each object.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lattice::{Link, Register};
use super::objects::{
    CustomerState, CustomerView, Evidence, InvoiceState, InvoiceView, OrderState, OrderView,
    PaymentState, Renewal, SubscriptionState, SubscriptionView, RENEWAL_REASONS,
};
use super::ordering::{self, version};

/// Who produced a log entry, as far as the user link is concerned (docs/adr/0013).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An object Stripe returned to one of the service's own create calls (source
    /// `api_response`): the customer and Checkout Sessions `/api/checkout` made. Only these
    /// link a user to a customer or an order.
    Service,
    /// Anything else (webhooks, backfill, reconciliation): Stripe's word on objects anyone
    /// with a Payment Link or the Dashboard may have created, so their user ids are claims.
    Stripe,
}

/// An entry of the event log, as the folds see it. The log position is deliberately absent:
/// it differs between delivery orders, and nothing may depend on it.
#[derive(Debug, Clone, Copy)]
pub struct LoggedEvent<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    /// Stripe's `created`, unix seconds.
    pub created: i64,
    /// The whole stored event JSON.
    pub payload: &'a Value,
    pub origin: Origin,
}

/// A known event type whose object lacks what the fold needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// What one event says about one object: a state fragment to join into that object's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    Customer(CustomerState),
    Subscription(SubscriptionState),
    Invoice(InvoiceState),
    Order(OrderState),
    Payment(PaymentState),
}

/// Read-model kinds, as stored.
pub const KINDS: [&str; 5] = ["customer", "subscription", "invoice", "order", "payment"];

impl Fact {
    pub fn kind(&self) -> &'static str {
        match self {
            Fact::Customer(_) => "customer",
            Fact::Subscription(_) => "subscription",
            Fact::Invoice(_) => "invoice",
            Fact::Order(_) => "order",
            Fact::Payment(_) => "payment",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Fact::Customer(s) => &s.id,
            Fact::Subscription(s) => &s.id,
            Fact::Invoice(s) => &s.id,
            Fact::Order(s) => &s.id,
            Fact::Payment(s) => &s.id,
        }
    }
}

/// The event types this crate projects; anything else is logged and acknowledged only.
pub const PROJECTED_TYPES: &[&str] = &[
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
    "customer.subscription.pending_update_applied",
    "customer.subscription.pending_update_expired",
    "invoice.created",
    "invoice.updated",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "charge.refunded",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    OBJECT_SNAPSHOT,
];

/// Entry type appended by reconciliation and re-fetches: `data.object` is an object as the
/// Stripe API returned it, folded like an update of that object.
pub const OBJECT_SNAPSHOT: &str = "ledger.object_snapshot";

pub fn decode(event: &LoggedEvent<'_>) -> Result<Vec<Fact>, DecodeError> {
    let t = event.event_type;
    if !PROJECTED_TYPES.contains(&t) {
        return Ok(Vec::new());
    }
    let object = event
        .payload
        .get("data")
        .and_then(|d| d.get("object"))
        .filter(|o| o.is_object())
        .ok_or_else(|| DecodeError(format!("{t} event without data.object")))?;
    let object_type = object.get("object").and_then(Value::as_str).unwrap_or("");
    let link = |value: Option<String>| {
        value.map(|value| Link {
            created: event.created,
            event_id: event.event_id.to_owned(),
            value,
        })
    };
    let err = |e: String| DecodeError(format!("{t}: {e}"));

    let kind = if t == OBJECT_SNAPSHOT {
        // Written by our own reconciliation: a snapshot that does not say what it is would be
        // folded into nothing, silently, so it is an error.
        if object_type.is_empty() {
            return Err(err("object snapshot without data.object.object".into()));
        }
        object_type
    } else {
        t.split('.').next().unwrap_or("")
    };
    let facts = match (kind, t) {
        ("checkout", _) | ("checkout.session", _) => checkout(event, object, link)?,
        ("customer", "customer.subscription.created")
        | ("customer", "customer.subscription.updated")
        | ("customer", "customer.subscription.deleted")
        | ("customer", "customer.subscription.paused")
        | ("customer", "customer.subscription.resumed")
        | ("customer", "customer.subscription.trial_will_end")
        | ("customer", "customer.subscription.pending_update_applied")
        | ("customer", "customer.subscription.pending_update_expired")
        | ("subscription", _) => {
            let view = SubscriptionView::decode(object).map_err(err)?;
            let deleted = t == "customer.subscription.deleted";
            let v = version(event.event_id, t, event.created, view.lifecycle(deleted));
            let mut state = SubscriptionState::new(view.id.clone());
            state.user = link(view.metadata_user_id.clone());
            let customer = view.customer.clone();
            let user = state.user.clone();
            state.snapshot = Some(Register::new(v, view));
            let mut facts = vec![Fact::Subscription(state)];
            // The subscription's metadata names a user: a claim on its customer, checked
            // against the customer's trusted link, never a link by itself.
            if let (Some(customer), Some(user)) = (customer, user) {
                let mut c = CustomerState::new(customer);
                c.claim(Some(user));
                facts.push(Fact::Customer(c));
            }
            facts
        }
        ("customer", _) => {
            let deleted = t == "customer.deleted";
            let view = CustomerView::decode(object, deleted)
                .ok_or_else(|| err("customer without an id".into()))?;
            let v = version(
                event.event_id,
                t,
                event.created,
                ordering::customer(view.deleted),
            );
            let mut state = CustomerState::new(view.id.clone());
            let user = link(view.metadata_user_id.clone());
            if event.origin == Origin::Service {
                state.user = user;
            } else {
                state.claim(user);
            }
            state.snapshot = Some(Register::new(v, view));
            vec![Fact::Customer(state)]
        }
        ("invoice", _) => {
            let view = InvoiceView::decode(object).map_err(err)?;
            let v = version(event.event_id, t, event.created, view.lifecycle());
            let mut state = InvoiceState::new(view.id.clone());
            match t {
                "invoice.payment_failed" => {
                    state.first_failed_at = Some(event.created);
                    state.first_failure = Some(evidence(event));
                    state.last_failed_at = Some(event.created);
                }
                "invoice.paid" | "invoice.payment_succeeded" => state.paid_at = Some(event.created),
                "invoice.payment_action_required" => state.action_required_at = Some(event.created),
                _ => {}
            }
            // Pre-basil objects say `paid: true`; basil dropped the field, so the status is
            // the signal both share. Stripe's own transition time is the same in every
            // snapshot, which makes it the better `paid_at` when present.
            let paid = view.status.as_deref() == Some("paid")
                || object.get("paid").and_then(Value::as_bool) == Some(true);
            if paid {
                let stamped = object
                    .get("status_transitions")
                    .and_then(|s| s.get("paid_at"))
                    .and_then(Value::as_i64);
                state.paid_at = Some(stamped.map_or(event.created, |p| p.min(event.created)));
            }
            let renewal = renewal_of(event, &view, &state);
            state.snapshot = Some(Register::new(v, view));
            let mut facts = vec![Fact::Invoice(state)];
            facts.extend(renewal.map(Fact::Subscription));
            facts
        }
        ("charge", _) | ("dispute", _) => charge(event, object)?,
        ("payment_intent", _) => {
            let id =
                id_of_object(object).ok_or_else(|| err("payment intent without an id".into()))?;
            let mut state = PaymentState::new(id);
            state.customer = object.get("customer").and_then(id_value);
            state.amount = object.get("amount").and_then(Value::as_i64);
            state.currency = object
                .get("currency")
                .and_then(Value::as_str)
                .map(str::to_owned);
            // A re-fetched snapshot says so only through its status.
            let succeeded = t == "payment_intent.succeeded"
                || object.get("status").and_then(Value::as_str) == Some("succeeded");
            if succeeded {
                state.succeeded_at = Some(event.created);
            }
            if t == "payment_intent.payment_failed" {
                let code = object
                    .get("last_payment_error")
                    .and_then(|e| e.get("decline_code").or_else(|| e.get("code")))
                    .and_then(Value::as_str)
                    .unwrap_or("payment_failed");
                state.last_failure = link(Some(code.to_owned()));
            }
            vec![Fact::Payment(state)]
        }
        // A snapshot of an object type we do not project.
        _ => Vec::new(),
    };
    Ok(facts)
}

fn evidence(event: &LoggedEvent<'_>) -> Evidence {
    Evidence {
        created: event.created,
        event_id: event.event_id.to_owned(),
    }
}

/// What an invoice event says about its subscription under the failed-payment rule: a failed
/// or successful payment of a renewal invoice (`SubscriptionState::derived_past_due`).
fn renewal_of(
    event: &LoggedEvent<'_>,
    view: &InvoiceView,
    state: &InvoiceState,
) -> Option<SubscriptionState> {
    let subscription = view.subscription.clone()?;
    if !RENEWAL_REASONS.contains(&view.billing_reason.as_deref()?) {
        return None;
    }
    let failed = event.event_type == "invoice.payment_failed";
    let mut renewal = Renewal::default();
    if failed {
        renewal.first_failure = Some(evidence(event));
        renewal.last_failure = Some(evidence(event));
    }
    if let Some(paid_at) = state.paid_at {
        renewal.paid = Some(Evidence {
            created: paid_at,
            event_id: event.event_id.to_owned(),
        });
    }
    if renewal == Renewal::default() {
        return None;
    }
    let mut s = SubscriptionState::new(subscription);
    s.renewals.insert(view.id.clone(), renewal);
    Some(s)
}

fn id_of_object(object: &Value) -> Option<String> {
    object.get("id").and_then(Value::as_str).map(str::to_owned)
}

fn id_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn checkout(
    event: &LoggedEvent<'_>,
    object: &Value,
    link: impl Fn(Option<String>) -> Option<Link>,
) -> Result<Vec<Fact>, DecodeError> {
    let t = event.event_type;
    let view = OrderView::decode(object).map_err(|e| DecodeError(format!("{t}: {e}")))?;
    let mode = object.get("mode").and_then(Value::as_str).unwrap_or("");
    let user = view.client_reference_id.clone().or_else(|| {
        object
            .get("metadata")
            .and_then(|m| m.get("user_id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let user = link(user);
    // Only a session the service created (logged from its own API call) links its customer
    // and order; a webhook's `client_reference_id`, which a Payment Link or pricing table lets
    // anyone choose, is a claim (docs/adr/0013).
    let trusted = event.origin == Origin::Service;
    let mut facts = Vec::new();
    if let (Some(customer), Some(user)) = (view.customer.clone(), user.clone()) {
        let mut c = CustomerState::new(customer);
        if trusted {
            c.user = Some(user);
        } else {
            c.claim(Some(user));
        }
        facts.push(Fact::Customer(c));
    }
    match mode {
        "subscription" => {
            if let (Some(sub), Some(user)) = (object.get("subscription").and_then(id_value), user) {
                let mut s = SubscriptionState::new(sub);
                s.user = Some(user);
                facts.push(Fact::Subscription(s));
            }
        }
        "payment" => {
            let v = version(event.event_id, t, event.created, view.lifecycle());
            let mut order = OrderState::new(view.id.clone());
            order.user = user.filter(|_| trusted);
            order.async_payment_failed = t == "checkout.session.async_payment_failed";
            order.snapshot = Some(Register::new(v, view));
            facts.push(Fact::Order(order));
        }
        _ => {}
    }
    Ok(facts)
}

fn charge(event: &LoggedEvent<'_>, object: &Value) -> Result<Vec<Fact>, DecodeError> {
    let t = event.event_type;
    let Some(payment_intent) = object.get("payment_intent").and_then(id_value) else {
        // A charge without a PaymentIntent (legacy Charges API) has no order to attach to.
        return Ok(Vec::new());
    };
    let mut state = PaymentState::new(payment_intent);
    // By object, not by event type: `charge.dispute.*` carry a dispute, `charge.*` and a
    // re-fetched snapshot of a charge carry a charge.
    let object_type = object.get("object").and_then(Value::as_str);
    let is_dispute = object_type == Some("dispute")
        || (object_type.is_none() && t.starts_with("charge.dispute."));
    if is_dispute {
        state.disputed = true;
        if let Some(status) = object.get("status").and_then(Value::as_str) {
            let v = version(event.event_id, t, event.created, ordering::dispute(status));
            state.dispute_status = Some(Register::new(v, status.to_owned()));
        }
    } else {
        state.amount_refunded = object.get("amount_refunded").and_then(Value::as_i64);
        state.refunded = object
            .get("refunded")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        state.disputed = object
            .get("disputed")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        state.customer = object.get("customer").and_then(id_value);
    }
    Ok(vec![Fact::Payment(state)])
}

/// All read models folded from a set of events: what `rebuild --check` and the tests compare.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Projection {
    pub customers: BTreeMap<String, CustomerState>,
    pub subscriptions: BTreeMap<String, SubscriptionState>,
    pub invoices: BTreeMap<String, InvoiceState>,
    pub orders: BTreeMap<String, OrderState>,
    pub payments: BTreeMap<String, PaymentState>,
}

impl Projection {
    pub fn apply(&mut self, fact: Fact) -> bool {
        fn merge<S>(
            map: &mut BTreeMap<String, S>,
            id: String,
            s: S,
            join: fn(&mut S, S) -> bool,
        ) -> bool {
            match map.get_mut(&id) {
                Some(existing) => join(existing, s),
                None => {
                    map.insert(id, s);
                    true
                }
            }
        }
        match fact {
            Fact::Customer(s) => merge(&mut self.customers, s.id.clone(), s, CustomerState::join),
            Fact::Subscription(s) => merge(
                &mut self.subscriptions,
                s.id.clone(),
                s,
                SubscriptionState::join,
            ),
            Fact::Invoice(s) => merge(&mut self.invoices, s.id.clone(), s, InvoiceState::join),
            Fact::Order(s) => merge(&mut self.orders, s.id.clone(), s, OrderState::join),
            Fact::Payment(s) => merge(&mut self.payments, s.id.clone(), s, PaymentState::join),
        }
    }
}

/// Objects whose snapshots tie under the ordering rule but disagree: the shell appends a
/// re-fetch (`ledger.object_snapshot`) of each, which outranks the tie once folded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Conflict {
    pub kind: &'static str,
    pub id: String,
    /// The tied events, sorted.
    pub event_ids: Vec<String>,
}

impl Projection {
    /// Every unresolved same-second conflict, sorted by kind and id.
    pub fn conflicts(&self) -> Vec<Conflict> {
        fn collect<S>(
            out: &mut Vec<Conflict>,
            kind: &'static str,
            map: &BTreeMap<String, S>,
            of: fn(&S) -> Vec<String>,
        ) {
            for (id, s) in map {
                let event_ids = of(s);
                if !event_ids.is_empty() {
                    out.push(Conflict {
                        kind,
                        id: id.clone(),
                        event_ids,
                    });
                }
            }
        }
        let mut out = Vec::new();
        collect(
            &mut out,
            "customer",
            &self.customers,
            CustomerState::conflicts,
        );
        collect(
            &mut out,
            "subscription",
            &self.subscriptions,
            SubscriptionState::conflicts,
        );
        collect(&mut out, "invoice", &self.invoices, InvoiceState::conflicts);
        collect(&mut out, "order", &self.orders, OrderState::conflicts);
        collect(&mut out, "payment", &self.payments, PaymentState::conflicts);
        out.sort();
        out
    }

    /// App user → the customers (trusted links only) and subscriptions linked to them. Derived from the states, so it is as
    /// order-independent as they are.
    pub fn user_links(&self) -> BTreeMap<String, UserLinks> {
        let mut links: BTreeMap<String, UserLinks> = BTreeMap::new();
        for c in self.customers.values() {
            if let Some(user) = c.user_id() {
                links
                    .entry(user.to_owned())
                    .or_default()
                    .customers
                    .insert(c.id.clone());
            }
        }
        for s in self.subscriptions.values() {
            if let Some(user) = s.user_id() {
                links
                    .entry(user.to_owned())
                    .or_default()
                    .subscriptions
                    .insert(s.id.clone());
            }
        }
        links
    }

    /// The subscriptions of an app user's customers (trusted links only: a subscription's own
    /// `user_id` is a claim and grants nothing), and those customers' invoices: what
    /// [`crate::entitlement`] needs.
    pub fn billing_of_user(&self, user_id: &str) -> (Vec<SubscriptionState>, Vec<InvoiceState>) {
        let links = self.user_links().remove(user_id).unwrap_or_default();
        let customers = links.customers;
        let mut subscriptions: BTreeMap<&str, &SubscriptionState> = BTreeMap::new();
        for s in self.subscriptions.values() {
            if s.view()
                .and_then(|v| v.customer.as_ref())
                .is_some_and(|c| customers.contains(c))
            {
                subscriptions.insert(&s.id, s);
            }
        }
        let invoices = self
            .invoices
            .values()
            .filter(|i| {
                i.view()
                    .and_then(|v| v.customer.as_ref())
                    .is_some_and(|c| customers.contains(c))
            })
            .cloned()
            .collect();
        (subscriptions.into_values().cloned().collect(), invoices)
    }
}

/// What is linked to one app user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLinks {
    pub customers: BTreeSet<String>,
    pub subscriptions: BTreeSet<String>,
}

/// Folds events (in any order, with any duplicates) into read models.
pub fn fold_all<'a>(
    events: impl IntoIterator<Item = LoggedEvent<'a>>,
) -> Result<Projection, DecodeError> {
    let mut projection = Projection::default();
    for event in events {
        for fact in decode(&event)? {
            projection.apply(fact);
        }
    }
    Ok(projection)
}
