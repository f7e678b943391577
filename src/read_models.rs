//! Queries over the read models (the active generation), for the read API and the CLI.

use std::collections::{BTreeMap, HashMap};

use ledger_projections::{Fact, InvoiceState, SubscriptionState};

use crate::query::cursor::{Binding, Endpoint};
use crate::query::{self, FilterError, Params};
use crate::store::read_models::ReadModelStore as _;
use crate::store::{Db, Kind, StorageError};

pub use crate::query::{DEFAULT_LIMIT, MAX_LIMIT};
pub use crate::store::read_models::StatesBy;

/// Which rows to list: one kind, optional filters, keyset pagination by id.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub customer_id: Option<String>,
    pub user_id: Option<String>,
    pub status: Option<String>,
    /// Continue after this id (exclusive).
    pub after_id: Option<String>,
    pub limit: u32,
}

/// The lists of the read API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadList {
    Customers,
    Subscriptions,
    Invoices,
    Orders,
}

/// A list filter: its query parameter and the column it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    Customer,
    UserId,
    Status,
}

impl Filter {
    fn param(self) -> &'static str {
        match self {
            Filter::Customer => "customer",
            Filter::UserId => "user_id",
            Filter::Status => "status",
        }
    }
}

impl ReadList {
    /// The read-model `kind` the list shows.
    pub fn kind(self) -> Kind {
        match self {
            ReadList::Customers => Kind::Customer,
            ReadList::Subscriptions => Kind::Subscription,
            ReadList::Invoices => Kind::Invoice,
            ReadList::Orders => Kind::Order,
        }
    }

    fn endpoint(self) -> Endpoint {
        match self {
            ReadList::Customers => Endpoint::Customers,
            ReadList::Subscriptions => Endpoint::Subscriptions,
            ReadList::Invoices => Endpoint::Invoices,
            ReadList::Orders => Endpoint::Orders,
        }
    }

    fn filters(self) -> &'static [Filter] {
        match self {
            ReadList::Customers => &[Filter::UserId],
            ReadList::Subscriptions | ReadList::Orders => {
                &[Filter::Customer, Filter::Status, Filter::UserId]
            }
            ReadList::Invoices => &[Filter::Customer, Filter::Status],
        }
    }

    /// The parameters the list takes, for messages and the CLI.
    pub fn params(self) -> Vec<&'static str> {
        let filters = self.filters().iter().map(|f| f.param());
        filters.chain(["limit", "cursor"]).collect()
    }
}

impl Query {
    /// The one validation of a read-model list's parameters, for the API and the CLI alike:
    /// unknown parameters are refused, filters follow the id rules, and a cursor must come from
    /// the same list with the same filters.
    pub fn parse(list: ReadList, params: &Params) -> Result<Query, FilterError> {
        query::refuse_unknown(params, &list.params())?;
        let mut q = Query {
            customer_id: query::id_param(params, "customer")?,
            user_id: query::id_param(params, "user_id")?,
            status: query::id_param(params, "status")?,
            after_id: None,
            limit: query::limit_param(params)?,
        };
        if let Some(cursor) = params.get("cursor") {
            q.after_id = Some(q.binding(list).decode_id(cursor)?);
        }
        Ok(q)
    }

    /// The cursor of the page after the one ending at `last_id`.
    pub fn next_cursor(&self, list: ReadList, last_id: &str) -> String {
        self.binding(list).encode(last_id)
    }

    fn binding(&self, list: ReadList) -> Binding {
        let value = |f: &Filter| match f {
            Filter::Customer => self.customer_id.as_deref(),
            Filter::UserId => self.user_id.as_deref(),
            Filter::Status => self.status.as_deref(),
        };
        let parts: Vec<(&str, Option<&str>)> = list
            .filters()
            .iter()
            .map(|f| (f.param(), value(f)))
            .collect();
        Binding::new(list.endpoint(), &parts)
    }
}

#[derive(Debug, Clone)]
pub struct Page {
    /// State JSON of each row.
    pub items: Vec<String>,
    pub next_after: Option<String>,
}

/// One object's state JSON.
pub async fn get(db: &Db, kind: Kind, id: &str) -> Result<Option<String>, StorageError> {
    db.read_model_state(kind, id).await
}

/// The states of those `ids` that exist, by id, read in one statement.
pub async fn get_many(
    db: &Db,
    kind: Kind,
    ids: &[&str],
) -> Result<HashMap<String, String>, StorageError> {
    db.read_model_states_of(kind, ids).await
}

pub async fn list(db: &Db, kind: Kind, query: &Query) -> Result<Page, StorageError> {
    let mut rows = db.list_read_models(kind, query).await?;
    // One extra row was fetched to learn whether another page exists.
    let more = rows.len() > query.limit as usize;
    rows.truncate(query.limit as usize);
    Ok(Page {
        next_after: if more {
            rows.last().map(|r| r.id.clone())
        } else {
            None
        },
        items: rows.into_iter().map(|r| r.state).collect(),
    })
}

/// Every row of `kind` for a user or customer, unpaginated; for entitlements, where a user has
/// a handful of subscriptions.
pub async fn all_states(
    db: &Db,
    kind: Kind,
    by: StatesBy,
    value: &str,
) -> Result<Vec<String>, StorageError> {
    db.read_model_states_by(kind, by, value).await
}

/// Everything entitlements need about a user: their subscriptions (linked directly, or through
/// a customer linked to them) and those customers' invoices.
pub async fn user_billing(
    db: &Db,
    user_id: &str,
) -> Result<(Vec<SubscriptionState>, Vec<InvoiceState>), StorageError> {
    let mut subscriptions: BTreeMap<String, SubscriptionState> = BTreeMap::new();
    let mut invoices: BTreeMap<String, InvoiceState> = BTreeMap::new();
    let typed = |kind: Kind, json: &str| crate::projector::state_from_json(kind, json);
    let mut customers: Vec<String> = Vec::new();
    for json in all_states(db, Kind::Customer, StatesBy::UserId, user_id).await? {
        if let Fact::Customer(c) = typed(Kind::Customer, &json)? {
            customers.push(c.id);
        }
    }
    // A subscription's own `user_id` is a claim: access follows only the customers the
    // service linked itself (docs/adr/0013).
    customers.sort();
    customers.dedup();
    for customer in &customers {
        for json in all_states(db, Kind::Subscription, StatesBy::CustomerId, customer).await? {
            if let Fact::Subscription(s) = typed(Kind::Subscription, &json)? {
                subscriptions.entry(s.id.clone()).or_insert(s);
            }
        }
        for json in all_states(db, Kind::Invoice, StatesBy::CustomerId, customer).await? {
            if let Fact::Invoice(i) = typed(Kind::Invoice, &json)? {
                invoices.insert(i.id.clone(), i);
            }
        }
    }
    Ok((
        subscriptions.into_values().collect(),
        invoices.into_values().collect(),
    ))
}

/// The JSON app services get: Stripe's ids, integer minor units with their currency, RFC 3339
/// timestamps, and none of the fold's bookkeeping (versions, candidates).
pub mod views {
    use chrono::{DateTime, SecondsFormat, Utc};
    use ledger_projections::{
        CustomerState, Entitlement, InvoiceState, OrderState, PaymentState, SubscriptionState,
    };
    use serde_json::{json, Value};

    pub fn time(secs: Option<i64>) -> Value {
        secs.and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
            .map_or(Value::Null, |t| {
                Value::String(t.to_rfc3339_opts(SecondsFormat::Secs, true))
            })
    }

    pub fn customer(s: &CustomerState) -> Value {
        let v = s.snapshot.as_ref().map(|r| r.value());
        json!({
            "id": s.id,
            "object": "customer",
            "user_id": s.user_id(),
            "email": v.and_then(|v| v.email.clone()),
            "deleted": s.deleted(),
            "created": time(v.and_then(|v| v.created)),
            // User ids other sources claimed for this customer that were not granted
            // (docs/adr/0013): a foreign Checkout Session, or metadata the service did not write.
            "link_conflicts": s.link_conflicts().iter().map(|l| json!({
                "user_id": l.value, "event_id": l.event_id,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn subscription(s: &SubscriptionState) -> Value {
        let Some(v) = s.view() else {
            // Known only from a link (Checkout) so far; its own events have not arrived.
            return json!({"id": s.id, "object": "subscription", "user_id": s.user_id(), "status": null});
        };
        json!({
            "id": s.id,
            "object": "subscription",
            "customer": v.customer,
            "user_id": s.user_id(),
            // Stripe's status, or `past_due` derived from a failed renewal payment newer than
            // the subscription's last snapshot (the failed-payment rule, issue 13).
            "status": s.status(),
            "status_derived_from": s.derived_past_due().map(|d| json!({
                "invoice": d.invoice,
                "event_id": d.last_failure.event_id,
                "first_failed_at": time(Some(d.first_failure.created)),
            })),
            "items": v.items.iter().map(|i| json!({
                "id": i.id,
                "price": i.price_id,
                "product": i.product,
                "quantity": i.quantity,
                "unit_amount": i.unit_amount,
                "currency": i.currency,
                "interval": i.interval,
                "current_period_start": time(i.current_period_start),
                "current_period_end": time(i.current_period_end),
            })).collect::<Vec<_>>(),
            "current_period_start": time(v.current_period_start),
            "current_period_end": time(v.current_period_end),
            "cancel_at_period_end": v.cancel_at_period_end,
            "cancel_at": time(v.cancel_at),
            "canceled_at": time(v.canceled_at),
            "ended_at": time(v.ended_at),
            "trial_end": time(v.trial_end),
            "latest_invoice": v.latest_invoice,
            "created": time(v.created),
            "conflicts": s.snapshot.as_ref().map(|r| r.conflicts()).unwrap_or_default(),
        })
    }

    pub fn invoice(s: &InvoiceState) -> Value {
        let v = s.view();
        json!({
            "id": s.id,
            "object": "invoice",
            "customer": v.and_then(|v| v.customer.clone()),
            "subscription": v.and_then(|v| v.subscription.clone()),
            "status": v.and_then(|v| v.status.clone()),
            "amount_due": v.and_then(|v| v.amount_due),
            "amount_paid": v.and_then(|v| v.amount_paid),
            "amount_remaining": v.and_then(|v| v.amount_remaining),
            "currency": v.and_then(|v| v.currency.clone()),
            "hosted_invoice_url": v.and_then(|v| v.hosted_invoice_url.clone()),
            "billing_reason": v.and_then(|v| v.billing_reason.clone()),
            "attempt_count": v.and_then(|v| v.attempt_count),
            "next_payment_attempt": time(v.and_then(|v| v.next_payment_attempt)),
            "first_failed_at": time(s.first_failed_at),
            "paid_at": time(s.paid_at),
            "action_required_at": time(s.action_required_at),
            "created": time(v.and_then(|v| v.created)),
        })
    }

    pub fn order(s: &OrderState, payment: Option<&PaymentState>) -> Value {
        let v = s.view();
        json!({
            "id": s.id,
            "object": "order",
            "customer": v.and_then(|v| v.customer.clone()),
            "user_id": s.user.as_ref().map(|l| l.value.clone()),
            "status": s.status(),
            "amount_total": v.and_then(|v| v.amount_total),
            "currency": v.and_then(|v| v.currency.clone()),
            "payment_intent": v.and_then(|v| v.payment_intent.clone()),
            "refunded": payment.is_some_and(|p| p.refunded),
            "amount_refunded": payment.and_then(|p| p.amount_refunded),
            "disputed": payment.is_some_and(|p| p.disputed),
            "created": time(v.and_then(|v| v.created)),
        })
    }

    pub fn entitlement(user_id: &str, e: &Entitlement) -> Value {
        json!({
            "user_id": user_id,
            "access": e.access,
            "reason": e.reason,
            "until": time(e.until),
            "subscription_id": e.subscription_id,
        })
    }
}
