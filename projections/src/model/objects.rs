//! Read-model states and the lenient decoding of the Stripe objects they are made from.
//!
//! Objects are read at whatever API version the endpoint rendered them: basil moved subscription
//! periods onto `items.data[]` and `invoice.subscription` to
//! `invoice.parent.subscription_details.subscription`; both shapes decode. Unknown fields are
//! ignored, missing optional ones are `None`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lattice::{join_flag, join_link, join_max, join_min, Link, Register};
use super::ordering::{self, Lifecycle};

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn i(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

fn b(v: &Value, key: &str) -> Option<bool> {
    v.get(key).and_then(Value::as_bool)
}

/// An id that may be expanded into an object: `"cus_1"` or `{"id": "cus_1", ...}`.
fn id_of(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn metadata_user_id(v: &Value) -> Option<String> {
    v.get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------------------------
// Customers

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerView {
    pub id: String,
    pub email: Option<String>,
    pub deleted: bool,
    pub metadata_user_id: Option<String>,
    pub created: Option<i64>,
}

impl CustomerView {
    pub fn decode(object: &Value, deleted: bool) -> Option<CustomerView> {
        Some(CustomerView {
            id: s(object, "id")?,
            email: s(object, "email"),
            deleted: deleted || b(object, "deleted").unwrap_or(false),
            metadata_user_id: metadata_user_id(object),
            created: i(object, "created"),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerState {
    pub id: String,
    pub snapshot: Option<Register<CustomerView>>,
    /// The app user this customer belongs to, from evidence the service created itself: the
    /// customer or a Checkout Session `/api/checkout` made (docs/adr/0013). Earliest wins.
    pub user: Option<Link>,
    /// User ids that other sources (webhook metadata, a Checkout Session's
    /// `client_reference_id`) claimed for this customer: user id → its earliest claim. One
    /// entry per distinct user, so repeated agreeing events add nothing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, Link>,
}

impl CustomerState {
    pub fn new(id: String) -> Self {
        CustomerState {
            id,
            snapshot: None,
            user: None,
            claims: BTreeMap::new(),
        }
    }

    pub fn join(&mut self, other: CustomerState) -> bool {
        let mut changed = join_register(&mut self.snapshot, other.snapshot)
            | join_link(&mut self.user, other.user);
        for (user, claim) in other.claims {
            changed |= self.add_claim(user, claim);
        }
        changed
    }

    /// Records an untrusted source's user id for this customer.
    pub fn claim(&mut self, link: Option<Link>) {
        if let Some(link) = link {
            self.add_claim(link.value.clone(), link);
        }
    }

    fn add_claim(&mut self, user: String, claim: Link) -> bool {
        // Per user, the earliest claim (the same order as `join_link`).
        match self.claims.get_mut(&user) {
            Some(kept) if claim < *kept => {
                *kept = claim;
                true
            }
            Some(_) => false,
            None => {
                self.claims.insert(user, claim);
                true
            }
        }
    }

    /// Claims that disagree with the trusted link, or every claim when there is none: each a
    /// user some source said owns this customer, which was not granted.
    pub fn link_conflicts(&self) -> Vec<&Link> {
        self.claims
            .iter()
            .filter(|(user, _)| Some(user.as_str()) != self.user_id())
            .map(|(_, claim)| claim)
            .collect()
    }

    pub fn user_id(&self) -> Option<&str> {
        self.user.as_ref().map(|l| l.value.as_str())
    }

    pub fn deleted(&self) -> bool {
        self.snapshot.as_ref().is_some_and(|r| r.value().deleted)
    }

    pub fn view(&self) -> Option<&CustomerView> {
        self.snapshot.as_ref().map(Register::value)
    }

    pub fn email(&self) -> Option<&str> {
        self.view().and_then(|v| v.email.as_deref())
    }

    /// Event ids of same-second snapshots that disagree (empty when none).
    pub fn conflicts(&self) -> Vec<String> {
        register_conflicts(&self.snapshot)
    }
}

// ---------------------------------------------------------------------------------------------
// Subscriptions

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemView {
    pub id: Option<String>,
    pub price_id: Option<String>,
    pub product: Option<String>,
    pub quantity: i64,
    /// Minor units of `currency`.
    pub unit_amount: Option<i64>,
    pub currency: Option<String>,
    pub interval: Option<String>,
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionView {
    pub id: String,
    pub customer: Option<String>,
    pub status: String,
    pub items: Vec<ItemView>,
    /// Latest end over the items (basil), or the subscription's own (before basil).
    pub current_period_end: Option<i64>,
    pub current_period_start: Option<i64>,
    pub cancel_at_period_end: bool,
    pub cancel_at: Option<i64>,
    pub canceled_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub trial_start: Option<i64>,
    pub trial_end: Option<i64>,
    pub latest_invoice: Option<String>,
    pub currency: Option<String>,
    pub created: Option<i64>,
    pub metadata_user_id: Option<String>,
}

impl SubscriptionView {
    pub fn decode(object: &Value) -> Result<SubscriptionView, String> {
        let id = s(object, "id").ok_or("subscription without an id")?;
        let status = s(object, "status").ok_or("subscription without a status")?;
        let items: Vec<ItemView> = object
            .get("items")
            .and_then(|i| i.get("data"))
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|item| {
                        let price = item.get("price").or_else(|| item.get("plan"));
                        ItemView {
                            id: s(item, "id"),
                            price_id: price.and_then(|p| s(p, "id")),
                            product: price.and_then(|p| id_of(p, "product")),
                            quantity: i(item, "quantity").unwrap_or(1),
                            unit_amount: price
                                .and_then(|p| i(p, "unit_amount").or_else(|| i(p, "amount"))),
                            currency: price.and_then(|p| s(p, "currency")),
                            interval: price.and_then(|p| {
                                p.get("recurring")
                                    .and_then(|r| s(r, "interval"))
                                    .or_else(|| s(p, "interval"))
                            }),
                            current_period_start: i(item, "current_period_start"),
                            current_period_end: i(item, "current_period_end"),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let item_end = items.iter().filter_map(|i| i.current_period_end).max();
        let item_start = items.iter().filter_map(|i| i.current_period_start).max();
        Ok(SubscriptionView {
            customer: id_of(object, "customer"),
            current_period_end: item_end.or_else(|| i(object, "current_period_end")),
            current_period_start: item_start.or_else(|| i(object, "current_period_start")),
            cancel_at_period_end: b(object, "cancel_at_period_end").unwrap_or(false),
            cancel_at: i(object, "cancel_at"),
            canceled_at: i(object, "canceled_at"),
            ended_at: i(object, "ended_at"),
            trial_start: i(object, "trial_start"),
            trial_end: i(object, "trial_end"),
            latest_invoice: id_of(object, "latest_invoice"),
            currency: s(object, "currency"),
            created: i(object, "created"),
            metadata_user_id: metadata_user_id(object),
            id,
            status,
            items,
        })
    }

    /// Terminal statuses absorb: nothing after them can bring the subscription back.
    pub fn absorb(&self) -> u8 {
        self.lifecycle(false).absorb
    }

    /// Its place under the ordering rule; a `customer.subscription.deleted` is terminal
    /// whatever status the object shows.
    pub fn lifecycle(&self, deleted_event: bool) -> Lifecycle {
        ordering::subscription(&self.status, deleted_event, self.current_period_end)
    }
}

/// The event that stated a fact, and when Stripe says it happened. Ordered by time, then id, so
/// the earliest (or latest) evidence is the same whatever the delivery order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Evidence {
    pub created: i64,
    pub event_id: String,
}

/// What the log says about the payment of one renewal invoice of a subscription (billing
/// reason `subscription_cycle` or `subscription_update`): the input of the failed-payment rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewal {
    /// The first failed payment: the start of the grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<Evidence>,
    /// The latest failed payment: compared with the subscription's snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Evidence>,
    /// The earliest evidence that the invoice was paid (paid never goes back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid: Option<Evidence>,
}

impl Renewal {
    pub fn join(&mut self, other: Renewal) -> bool {
        join_min(&mut self.first_failure, other.first_failure)
            | join_max(&mut self.last_failure, other.last_failure)
            | join_min(&mut self.paid, other.paid)
    }
}

/// Billing reasons of the invoices that renew a subscription (not its first invoice).
pub const RENEWAL_REASONS: [&str; 2] = ["subscription_cycle", "subscription_update"];

/// A `past_due` the service derived from a failed renewal payment that the subscription's own
/// snapshot does not reflect yet (Stripe's definition of `past_due`: "payment on the latest
/// finalized invoice either failed or wasn't attempted").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerivedPastDue {
    pub invoice: String,
    /// Starts the grace period.
    pub first_failure: Evidence,
    /// Newer than the snapshot: the event that derived the status.
    pub last_failure: Evidence,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionState {
    pub id: String,
    pub snapshot: Option<Register<SubscriptionView>>,
    pub user: Option<Link>,
    /// Renewal invoices with a failed or a successful payment, by invoice id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub renewals: BTreeMap<String, Renewal>,
}

impl SubscriptionState {
    pub fn new(id: String) -> Self {
        SubscriptionState {
            id,
            snapshot: None,
            user: None,
            renewals: BTreeMap::new(),
        }
    }

    pub fn join(&mut self, other: SubscriptionState) -> bool {
        let mut changed = join_register(&mut self.snapshot, other.snapshot)
            | join_link(&mut self.user, other.user);
        for (invoice, renewal) in other.renewals {
            match self.renewals.get_mut(&invoice) {
                Some(mine) => changed |= mine.join(renewal),
                None => {
                    self.renewals.insert(invoice, renewal);
                    changed = true;
                }
            }
        }
        changed
    }

    pub fn view(&self) -> Option<&SubscriptionView> {
        self.snapshot.as_ref().map(Register::value)
    }

    /// The status access is decided on: the snapshot's, or `past_due` when the failed-payment
    /// rule derives it ([`Self::derived_past_due`]).
    pub fn status(&self) -> Option<&str> {
        if self.derived_past_due().is_some() {
            return Some("past_due");
        }
        self.view().map(|v| v.status.as_str())
    }

    /// The failed-payment rule: a snapshot that still gives access (`active`, `trialing`) is
    /// overtaken by a failed payment of a renewal invoice, not paid since, that is newer than
    /// the snapshot. A pure function of the joined state, so as order-independent as the state;
    /// paying the invoice (`invoice.paid`) or a newer snapshot ends it. The grace period runs
    /// from the earliest first failure among such invoices.
    pub fn derived_past_due(&self) -> Option<DerivedPastDue> {
        let snapshot = self.snapshot.as_ref()?;
        if !matches!(snapshot.value().status.as_str(), "active" | "trialing") {
            return None;
        }
        let since = snapshot.version().created;
        self.renewals
            .iter()
            .filter(|(_, r)| r.paid.is_none())
            .filter_map(|(invoice, r)| {
                let last = r.last_failure.as_ref().filter(|l| l.created > since)?;
                Some(DerivedPastDue {
                    invoice: invoice.clone(),
                    first_failure: r.first_failure.clone().unwrap_or_else(|| last.clone()),
                    last_failure: last.clone(),
                })
            })
            .min_by(|a, b| (&a.first_failure, &a.invoice).cmp(&(&b.first_failure, &b.invoice)))
    }

    /// Event ids of same-second snapshots that disagree (empty when none).
    pub fn conflicts(&self) -> Vec<String> {
        register_conflicts(&self.snapshot)
    }

    pub fn user_id(&self) -> Option<&str> {
        self.user.as_ref().map(|l| l.value.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Invoices

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceView {
    pub id: String,
    pub customer: Option<String>,
    pub subscription: Option<String>,
    pub status: Option<String>,
    pub amount_due: Option<i64>,
    pub amount_paid: Option<i64>,
    pub amount_remaining: Option<i64>,
    pub currency: Option<String>,
    pub hosted_invoice_url: Option<String>,
    pub billing_reason: Option<String>,
    pub attempt_count: Option<i64>,
    pub next_payment_attempt: Option<i64>,
    pub created: Option<i64>,
}

impl InvoiceView {
    pub fn decode(object: &Value) -> Result<InvoiceView, String> {
        let id = s(object, "id").ok_or("invoice without an id")?;
        let subscription = object
            .get("parent")
            .and_then(|p| p.get("subscription_details"))
            .and_then(|d| id_of(d, "subscription"))
            .or_else(|| id_of(object, "subscription"));
        Ok(InvoiceView {
            customer: id_of(object, "customer"),
            status: s(object, "status"),
            amount_due: i(object, "amount_due"),
            amount_paid: i(object, "amount_paid"),
            amount_remaining: i(object, "amount_remaining"),
            currency: s(object, "currency"),
            hosted_invoice_url: s(object, "hosted_invoice_url"),
            billing_reason: s(object, "billing_reason"),
            attempt_count: i(object, "attempt_count"),
            next_payment_attempt: i(object, "next_payment_attempt"),
            created: i(object, "created"),
            id,
            subscription,
        })
    }

    /// Invoice statuses only move forward: draft → open → (uncollectible →) paid | void.
    pub fn absorb(&self) -> u8 {
        self.lifecycle().absorb
    }

    pub fn lifecycle(&self) -> Lifecycle {
        ordering::invoice(self.status.as_deref(), self.attempt_count)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceState {
    pub id: String,
    pub snapshot: Option<Register<InvoiceView>>,
    /// First failed payment of this invoice (event time): the start of its dunning cycle.
    pub first_failed_at: Option<i64>,
    /// The event of that first failure (`first_failed_at` is its time), for explanations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<Evidence>,
    pub last_failed_at: Option<i64>,
    pub paid_at: Option<i64>,
    /// A payment needs the customer's action (3-D Secure): send them to the hosted invoice.
    pub action_required_at: Option<i64>,
}

impl InvoiceState {
    pub fn new(id: String) -> Self {
        InvoiceState {
            id,
            snapshot: None,
            first_failed_at: None,
            first_failure: None,
            last_failed_at: None,
            paid_at: None,
            action_required_at: None,
        }
    }

    pub fn join(&mut self, other: InvoiceState) -> bool {
        join_register(&mut self.snapshot, other.snapshot)
            | join_min(&mut self.first_failed_at, other.first_failed_at)
            | join_min(&mut self.first_failure, other.first_failure)
            | join_max(&mut self.last_failed_at, other.last_failed_at)
            | join_min(&mut self.paid_at, other.paid_at)
            | join_min(&mut self.action_required_at, other.action_required_at)
    }

    pub fn view(&self) -> Option<&InvoiceView> {
        self.snapshot.as_ref().map(Register::value)
    }

    pub fn status(&self) -> Option<&str> {
        self.view().and_then(|v| v.status.as_deref())
    }

    /// Event ids of same-second snapshots that disagree (empty when none).
    pub fn conflicts(&self) -> Vec<String> {
        register_conflicts(&self.snapshot)
    }
}

// ---------------------------------------------------------------------------------------------
// Orders: one-time Checkout payments (mode=payment), keyed by the Checkout Session id.

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    pub id: String,
    pub customer: Option<String>,
    pub client_reference_id: Option<String>,
    pub status: Option<String>,
    pub payment_status: Option<String>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    pub payment_intent: Option<String>,
    pub created: Option<i64>,
}

impl OrderView {
    pub fn decode(object: &Value) -> Result<OrderView, String> {
        Ok(OrderView {
            id: s(object, "id").ok_or("checkout session without an id")?,
            customer: id_of(object, "customer"),
            client_reference_id: s(object, "client_reference_id"),
            status: s(object, "status"),
            payment_status: s(object, "payment_status"),
            amount_total: i(object, "amount_total"),
            currency: s(object, "currency"),
            payment_intent: id_of(object, "payment_intent"),
            created: i(object, "created"),
        })
    }

    /// A session only leaves `open`, for `complete` or `expired`.
    pub fn absorb(&self) -> u8 {
        self.lifecycle().absorb
    }

    /// Payment status only moves forward: unpaid → paid / no_payment_required.
    pub fn progress(&self) -> i64 {
        self.lifecycle().progress
    }

    pub fn lifecycle(&self) -> Lifecycle {
        ordering::checkout_session(self.status.as_deref(), self.payment_status.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderState {
    pub id: String,
    pub snapshot: Option<Register<OrderView>>,
    pub user: Option<Link>,
    /// `checkout.session.async_payment_failed` was seen.
    pub async_payment_failed: bool,
}

impl OrderState {
    pub fn new(id: String) -> Self {
        OrderState {
            id,
            snapshot: None,
            user: None,
            async_payment_failed: false,
        }
    }

    pub fn join(&mut self, other: OrderState) -> bool {
        join_register(&mut self.snapshot, other.snapshot)
            | join_link(&mut self.user, other.user)
            | join_flag(&mut self.async_payment_failed, other.async_payment_failed)
    }

    pub fn view(&self) -> Option<&OrderView> {
        self.snapshot.as_ref().map(Register::value)
    }

    pub fn user_id(&self) -> Option<&str> {
        self.user.as_ref().map(|l| l.value.as_str())
    }

    /// Event ids of same-second snapshots that disagree (empty when none).
    pub fn conflicts(&self) -> Vec<String> {
        register_conflicts(&self.snapshot)
    }

    /// `open`, `paid`, `awaiting_payment` (delayed methods), `payment_failed` or `expired`.
    pub fn status(&self) -> &'static str {
        let Some(v) = self.view() else {
            return "open";
        };
        match (v.status.as_deref(), v.payment_status.as_deref()) {
            (_, Some("paid")) | (_, Some("no_payment_required")) => "paid",
            _ if self.async_payment_failed => "payment_failed",
            (Some("expired"), _) => "expired",
            (Some("complete"), _) => "awaiting_payment",
            _ => "open",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Payments: a PaymentIntent's outcome, refunds and disputes (charges and disputes name it).

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentState {
    pub id: String,
    pub customer: Option<String>,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub succeeded_at: Option<i64>,
    pub last_failure: Option<Link>,
    /// Largest `amount_refunded` seen on its charges (refunds only accumulate).
    pub amount_refunded: Option<i64>,
    pub refunded: bool,
    pub disputed: bool,
    /// Latest dispute status (`needs_response`, `won`, `lost`, ...), by the ordering rule.
    pub dispute_status: Option<Register<String>>,
}

impl PaymentState {
    pub fn new(id: String) -> Self {
        PaymentState {
            id,
            customer: None,
            amount: None,
            currency: None,
            succeeded_at: None,
            last_failure: None,
            amount_refunded: None,
            refunded: false,
            disputed: false,
            dispute_status: None,
        }
    }

    pub fn join(&mut self, other: PaymentState) -> bool {
        // Customer, amount and currency never change for a PaymentIntent: keep the first known.
        let mut changed = false;
        for (mine, theirs) in [
            (&mut self.customer, other.customer),
            (&mut self.currency, other.currency),
        ] {
            changed |= join_min(mine, theirs);
        }
        changed |= join_max(&mut self.amount, other.amount);
        changed |= join_min(&mut self.succeeded_at, other.succeeded_at);
        changed |= join_max(&mut self.last_failure, other.last_failure);
        changed |= join_max(&mut self.amount_refunded, other.amount_refunded);
        changed |= join_flag(&mut self.refunded, other.refunded);
        changed |= join_flag(&mut self.disputed, other.disputed);
        changed |= join_register(&mut self.dispute_status, other.dispute_status);
        changed
    }

    /// Event ids of same-second dispute updates that disagree (empty when none).
    pub fn conflicts(&self) -> Vec<String> {
        register_conflicts(&self.dispute_status)
    }
}

fn join_register<V: Clone + PartialEq>(
    mine: &mut Option<Register<V>>,
    other: Option<Register<V>>,
) -> bool {
    match (mine.as_mut(), other) {
        (_, None) => false,
        (None, Some(o)) => {
            *mine = Some(o);
            true
        }
        (Some(m), Some(o)) => m.join(o),
    }
}

fn register_conflicts<V: Clone + PartialEq>(register: &Option<Register<V>>) -> Vec<String> {
    register
        .as_ref()
        .map(Register::conflicts)
        .unwrap_or_default()
}
