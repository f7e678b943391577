//! Reconciliation: diff the read models against the objects the Stripe API lists, and repair
//! drift by appending what Stripe says to the log (source `reconcile_repair`), never by editing
//! read models. A repaired object is folded like any entry: its snapshot is the newest
//! information, so the ordering rule lets it win unless the local state is terminal.

use std::collections::BTreeMap;

use chrono::Utc;
use ledger_projections::{CustomerView, Fact, SubscriptionView};
use serde::Serialize;
use serde_json::Value;

use crate::event_log::{self, AppendOutcome, Source};
use crate::projector::{self, state_from_json, Entry};
use crate::store::StorageError;
use crate::store::{Db, Kind};
use crate::stripe::client::{StripeClient, StripeError};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Drift {
    pub kind: Kind,
    pub id: String,
    pub problem: Problem,
    /// The field that differs, for [`Problem::Field`].
    pub field: Option<DriftField>,
    pub local: Option<Value>,
    pub stripe: Option<Value>,
}

/// How a local object and Stripe's disagree.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// Stripe has it; the read models do not.
    MissingLocally,
    /// The read models have it; Stripe does not list it.
    MissingAtStripe,
    /// Both have it; one field differs.
    Field,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::MissingLocally => "missing_locally",
            Problem::MissingAtStripe => "missing_at_stripe",
            Problem::Field => "field",
        }
    }
}

/// The fields reconciliation compares.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DriftField {
    Status,
    Customer,
    Items,
    CurrentPeriodEnd,
    CancelAtPeriodEnd,
    Deleted,
    Email,
}

impl DriftField {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftField::Status => "status",
            DriftField::Customer => "customer",
            DriftField::Items => "items",
            DriftField::CurrentPeriodEnd => "current_period_end",
            DriftField::CancelAtPeriodEnd => "cancel_at_period_end",
            DriftField::Deleted => "deleted",
            DriftField::Email => "email",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileReport {
    pub subscriptions_checked: usize,
    pub customers_checked: usize,
    pub drift: Vec<Drift>,
    /// Objects appended to the log as repairs (0 without `repair`, or when nothing changed).
    pub repaired: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

async fn local_states(db: &Db, kind: Kind) -> Result<BTreeMap<String, Fact>, StorageError> {
    let mut out = BTreeMap::new();
    let mut after = None;
    loop {
        let q = crate::read_models::Query {
            after_id: after.clone(),
            limit: 100,
            ..Default::default()
        };
        let page = crate::read_models::list(db, kind, &q).await?;
        for json in &page.items {
            let fact = state_from_json(kind, json)?;
            out.insert(fact.id().to_owned(), fact);
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(out),
        }
    }
}

fn subscription_drift(id: &str, local: &SubscriptionView, stripe: &SubscriptionView) -> Vec<Drift> {
    let mut drift = Vec::new();
    let mut check = |field: DriftField, l: Value, s: Value| {
        if l != s {
            drift.push(Drift {
                kind: Kind::Subscription,
                id: id.to_owned(),
                problem: Problem::Field,
                field: Some(field),
                local: Some(l),
                stripe: Some(s),
            });
        }
    };
    check(
        DriftField::Status,
        local.status.clone().into(),
        stripe.status.clone().into(),
    );
    check(
        DriftField::Customer,
        local.customer.clone().into(),
        stripe.customer.clone().into(),
    );
    let items = |v: &SubscriptionView| -> Value {
        v.items
            .iter()
            .map(|i| serde_json::json!({"price": i.price_id, "quantity": i.quantity}))
            .collect()
    };
    check(DriftField::Items, items(local), items(stripe));
    check(
        DriftField::CurrentPeriodEnd,
        local.current_period_end.into(),
        stripe.current_period_end.into(),
    );
    check(
        DriftField::CancelAtPeriodEnd,
        local.cancel_at_period_end.into(),
        stripe.cancel_at_period_end.into(),
    );
    drift
}

/// Diffs subscriptions and customers; with `repair`, appends Stripe's version of every
/// drifting or missing object to the log and projects it.
pub async fn reconcile(
    db: &Db,
    client: &StripeClient,
    repair: bool,
) -> Result<ReconcileReport, ReconcileError> {
    reconcile_objects(db, client, repair, Objects::default()).await
}

/// Which objects to reconcile.
#[derive(Debug, Clone, Copy)]
pub struct Objects {
    pub subscriptions: bool,
    pub customers: bool,
}

impl Default for Objects {
    fn default() -> Self {
        Objects {
            subscriptions: true,
            customers: true,
        }
    }
}

impl Objects {
    /// Parses `subscriptions,customers` (either or both).
    pub fn parse(list: &str) -> Result<Objects, String> {
        let mut objects = Objects {
            subscriptions: false,
            customers: false,
        };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "subscriptions" | "subscription" => objects.subscriptions = true,
                "customers" | "customer" => objects.customers = true,
                other => {
                    return Err(format!(
                        "unknown object `{other}`; expected subscriptions, customers"
                    ))
                }
            }
        }
        if !objects.subscriptions && !objects.customers {
            return Err("name at least one of subscriptions, customers".to_owned());
        }
        Ok(objects)
    }
}

/// [`reconcile`] limited to some kinds of objects.
pub async fn reconcile_objects(
    db: &Db,
    client: &StripeClient,
    repair: bool,
    objects: Objects,
) -> Result<ReconcileReport, ReconcileError> {
    let mut report = ReconcileReport::default();
    let mut to_repair: Vec<Value> = Vec::new();

    if objects.subscriptions {
        let stripe_subs = client
            .list_all("/v1/subscriptions", &[("status", "all")])
            .await?;
        let mut local_subs = local_states(db, Kind::Subscription).await?;
        report.subscriptions_checked = stripe_subs.len();
        for object in &stripe_subs {
            let Ok(stripe) = SubscriptionView::decode(object) else {
                continue;
            };
            match local_subs.remove(&stripe.id) {
                Some(Fact::Subscription(local)) if local.view().is_some() => {
                    let drift =
                        subscription_drift(&stripe.id, local.view().expect("checked"), &stripe);
                    if !drift.is_empty() {
                        to_repair.push(object.clone());
                    }
                    report.drift.extend(drift);
                }
                _ => {
                    report.drift.push(Drift {
                        kind: Kind::Subscription,
                        id: stripe.id.clone(),
                        problem: Problem::MissingLocally,
                        field: None,
                        local: None,
                        stripe: Some(stripe.status.clone().into()),
                    });
                    to_repair.push(object.clone());
                }
            }
        }
        for (id, fact) in local_subs {
            if let Fact::Subscription(s) = fact {
                if s.view().is_some() {
                    report.drift.push(Drift {
                        kind: Kind::Subscription,
                        id,
                        problem: Problem::MissingAtStripe,
                        field: None,
                        local: s.status().map(Value::from),
                        stripe: None,
                    });
                }
            }
        }
    }
    if objects.customers {
        let stripe_customers = client.list_all("/v1/customers", &[]).await?;
        let mut local_customers = local_states(db, Kind::Customer).await?;
        report.customers_checked = stripe_customers.len();
        for object in &stripe_customers {
            let Some(stripe) = CustomerView::decode(object, false) else {
                continue;
            };
            match local_customers.remove(&stripe.id) {
                Some(Fact::Customer(local)) => {
                    let local_view = local.snapshot.as_ref().map(|r| r.value().clone());
                    let mut drifted = false;
                    if local.deleted() {
                        report.drift.push(Drift {
                            kind: Kind::Customer,
                            id: stripe.id.clone(),
                            problem: Problem::Field,
                            field: Some(DriftField::Deleted),
                            local: Some(true.into()),
                            stripe: Some(false.into()),
                        });
                        drifted = true;
                    }
                    if let Some(v) = &local_view {
                        if v.email != stripe.email {
                            report.drift.push(Drift {
                                kind: Kind::Customer,
                                id: stripe.id.clone(),
                                problem: Problem::Field,
                                field: Some(DriftField::Email),
                                local: Some(v.email.clone().into()),
                                stripe: Some(stripe.email.clone().into()),
                            });
                            drifted = true;
                        }
                    }
                    if drifted {
                        to_repair.push(object.clone());
                    }
                }
                _ => {
                    report.drift.push(Drift {
                        kind: Kind::Customer,
                        id: stripe.id.clone(),
                        problem: Problem::MissingLocally,
                        field: None,
                        local: None,
                        stripe: None,
                    });
                    to_repair.push(object.clone());
                }
            }
        }
        for (id, fact) in local_customers {
            if let Fact::Customer(c) = fact {
                // Stripe does not list deleted customers; a deleted one is in agreement.
                if c.snapshot.is_some() && !c.deleted() {
                    report.drift.push(Drift {
                        kind: Kind::Customer,
                        id,
                        problem: Problem::MissingAtStripe,
                        field: None,
                        local: None,
                        stripe: None,
                    });
                }
            }
        }
    }
    if repair {
        let now = Utc::now();
        for object in &to_repair {
            let entry = event_log::object_snapshot_entry(object, Source::ReconcileRepair, now)?;
            if let AppendOutcome::Appended { position } = event_log::append(db, &entry).await? {
                report.repaired += 1;
                let e = Entry {
                    position,
                    event_id: entry.envelope.id.clone(),
                    event_type: entry.envelope.event_type.clone(),
                    created: entry.envelope.created,
                    payload: entry.payload.clone(),
                    origin: ledger_projections::Origin::Stripe,
                };
                if let Some(Err(e)) = projector::project_each(db, &[e]).await.into_iter().next() {
                    tracing::warn!(error = %e, "a repair could not be projected; it is a dead letter");
                }
            }
        }
    }
    if !report.drift.is_empty() {
        tracing::warn!(
            drift = report.drift.len(),
            repaired = report.repaired,
            "reconciliation found drift"
        );
    }
    Ok(report)
}

/// The text report of `stripe-ledger reconcile`.
pub fn render_text(report: &ReconcileReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "checked {} subscriptions, {} customers; {} drift item(s); {} repaired",
        report.subscriptions_checked,
        report.customers_checked,
        report.drift.len(),
        report.repaired
    );
    // Ids and values come from Stripe and the log: escaped and cut (crate::terminal).
    use crate::terminal::field;
    for d in &report.drift {
        let _ = writeln!(
            out,
            "{:<13} {:<28} {:<18} {:<22} local={} stripe={}",
            d.kind.as_str(),
            field(&d.id),
            d.problem.as_str(),
            d.field.map_or("-", DriftField::as_str),
            field(&d.local.as_ref().map_or("-".into(), |v| v.to_string())),
            field(&d.stripe.as_ref().map_or("-".into(), |v| v.to_string())),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_and_fields_serialise_as_the_text_report_spells_them() {
        let problems = [
            Problem::MissingLocally,
            Problem::MissingAtStripe,
            Problem::Field,
        ];
        for p in problems {
            assert_eq!(serde_json::to_value(p).unwrap(), Value::from(p.as_str()));
        }
        let fields = [
            DriftField::Status,
            DriftField::Customer,
            DriftField::Items,
            DriftField::CurrentPeriodEnd,
            DriftField::CancelAtPeriodEnd,
            DriftField::Deleted,
            DriftField::Email,
        ];
        for f in fields {
            assert_eq!(serde_json::to_value(f).unwrap(), Value::from(f.as_str()));
        }
    }
}
