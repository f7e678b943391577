//! Order-independence, checked as a property over generated subscription lifecycles, and the
//! event shapes of both API generations.

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::{
    decode, entitlement, fold_all, Access, Fact, LoggedEvent, Projection, OBJECT_SNAPSHOT,
};

/// Joins `other` into `into` state by state, as the service's projector joins a stored state
/// with what a new batch folded; true when anything changed.
fn join(into: &mut Projection, other: Projection) -> bool {
    let facts = (other.customers.into_values().map(Fact::Customer))
        .chain(other.subscriptions.into_values().map(Fact::Subscription))
        .chain(other.invoices.into_values().map(Fact::Invoice))
        .chain(other.orders.into_values().map(Fact::Order))
        .chain(other.payments.into_values().map(Fact::Payment));
    let mut changed = false;
    for fact in facts {
        changed |= into.apply(fact);
    }
    changed
}

/// One generated step of a lifecycle, before it becomes an event.
#[derive(Debug, Clone)]
pub(super) enum Step {
    TrialStarted,
    Activated,
    PriceChanged(u8),
    QuantityChanged(u8),
    PaymentFailed,
    WentPastDue,
    Recovered,
    CancellationScheduled,
    Deleted,
    Paused,
    Resumed,
    ActionRequired,
    EmailChanged(u8),
    /// Two updates of the same second that disagree: only a re-fetch could order them.
    ConflictingUpdatesInOneSecond(u8),
}

pub(super) fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::TrialStarted),
        Just(Step::Activated),
        (0u8..3).prop_map(Step::PriceChanged),
        (1u8..4).prop_map(Step::QuantityChanged),
        Just(Step::PaymentFailed),
        Just(Step::WentPastDue),
        Just(Step::Recovered),
        Just(Step::CancellationScheduled),
        Just(Step::Deleted),
        Just(Step::Paused),
        Just(Step::Resumed),
        Just(Step::ActionRequired),
        (0u8..3).prop_map(Step::EmailChanged),
        (1u8..4).prop_map(Step::ConflictingUpdatesInOneSecond),
    ]
}

pub(super) fn event(id: usize, event_type: &str, created: i64, object: Value) -> Value {
    json!({
        "id": format!("evt_{id:04}"), "object": "event", "api_version": "2025-03-31.basil",
        "created": created, "livemode": false, "type": event_type,
        "data": {"object": object}
    })
}

pub(super) fn subscription(
    status: &str,
    price: u8,
    quantity: u8,
    period_end: i64,
    cancel: bool,
) -> Value {
    json!({
        "id": "sub_1", "object": "subscription", "customer": "cus_1", "status": status,
        "cancel_at_period_end": cancel, "latest_invoice": format!("in_{period_end}"),
        "metadata": {},
        "items": {"object": "list", "data": [{
            "id": "si_1", "object": "subscription_item", "quantity": quantity,
            "current_period_start": period_end - 2_592_000, "current_period_end": period_end,
            "price": {"id": format!("price_{price}"), "object": "price", "unit_amount": 1500 * (i64::from(price) + 1),
                      "currency": "usd", "recurring": {"interval": "month"}, "product": "prod_1"}
        }]}
    })
}

pub(super) fn invoice(status: &str, period_end: i64, attempts: i64) -> Value {
    json!({
        "id": format!("in_{period_end}"), "object": "invoice", "customer": "cus_1", "status": status,
        "amount_due": 1500, "amount_paid": if status == "paid" { 1500 } else { 0 }, "currency": "usd",
        "attempt_count": attempts, "hosted_invoice_url": "https://invoice.stripe.com/i/x",
        "billing_reason": "subscription_cycle",
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_1"}}
    })
}

/// Turns steps into a realistic event list. Gaps of 0 to 2 seconds make same-second ties
/// common, as in real Stripe traffic.
pub(super) fn lifecycle(steps: &[Step], gaps: &[u8]) -> Vec<Value> {
    let mut t = 1_763_800_000;
    let mut n = 0;
    let mut out = Vec::new();
    let mut next = |t: i64, ty: &str, obj: Value, out: &mut Vec<Value>| {
        n += 1;
        out.push(event(n, ty, t, obj));
    };
    let mut period_end = t + 2_592_000;
    let (mut price, mut quantity, mut attempts) = (0u8, 1u8, 0i64);
    next(
        t,
        "customer.created",
        json!({"id": "cus_1", "object": "customer", "metadata": {"user_id": "user_1"}}),
        &mut out,
    );
    next(
        t,
        "customer.subscription.created",
        subscription("incomplete", 0, 1, period_end, false),
        &mut out,
    );
    next(
        t + 1,
        "checkout.session.completed",
        json!({"id": "cs_1", "object": "checkout.session", "mode": "subscription",
               "client_reference_id": "user_1", "customer": "cus_1", "subscription": "sub_1",
               "payment_status": "paid", "status": "complete"}),
        &mut out,
    );
    // The session as `/api/checkout` logged it (`api_response`): the evidence of the link.
    let mut ours = event(
        0,
        OBJECT_SNAPSHOT,
        t,
        json!({"id": "cs_1", "object": "checkout.session",
        "mode": "subscription", "client_reference_id": "user_1", "customer": "cus_1",
        "metadata": {"user_id": "user_1"}, "status": "open", "payment_status": "unpaid"}),
    );
    ours["id"] = json!("svc_cs_1");
    out.push(ours);
    // A foreign session (a Payment Link) naming the same user for another customer: reported,
    // never linked, in any delivery order.
    next(
        t + 1,
        "checkout.session.completed",
        json!({"id": "cs_evil", "object": "checkout.session", "mode": "subscription",
               "client_reference_id": "user_1", "customer": "cus_evil", "subscription": "sub_evil",
               "payment_status": "paid", "status": "complete"}),
        &mut out,
    );
    let mut deleted = false;
    for (i, s) in steps.iter().enumerate() {
        t += i64::from(gaps.get(i).copied().unwrap_or(1));
        if deleted {
            break;
        }
        match s {
            Step::TrialStarted => next(
                t,
                "customer.subscription.updated",
                subscription("trialing", price, quantity, period_end, false),
                &mut out,
            ),
            Step::Activated => {
                next(
                    t,
                    "invoice.paid",
                    invoice("paid", period_end, attempts.max(1)),
                    &mut out,
                );
                next(
                    t,
                    "customer.subscription.updated",
                    subscription("active", price, quantity, period_end, false),
                    &mut out,
                );
            }
            Step::PriceChanged(p) => {
                price = *p;
                next(
                    t,
                    "customer.subscription.updated",
                    subscription("active", price, quantity, period_end, false),
                    &mut out,
                );
            }
            Step::QuantityChanged(q) => {
                quantity = *q;
                next(
                    t,
                    "customer.subscription.updated",
                    subscription("active", price, quantity, period_end, false),
                    &mut out,
                );
            }
            Step::PaymentFailed => {
                period_end += 2_592_000;
                attempts = 1;
                next(
                    t,
                    "invoice.payment_failed",
                    invoice("open", period_end, attempts),
                    &mut out,
                );
            }
            Step::WentPastDue => {
                attempts += 1;
                next(
                    t,
                    "invoice.payment_failed",
                    invoice("open", period_end, attempts),
                    &mut out,
                );
                next(
                    t,
                    "customer.subscription.updated",
                    subscription("past_due", price, quantity, period_end, false),
                    &mut out,
                );
            }
            Step::Recovered => {
                next(
                    t,
                    "invoice.paid",
                    invoice("paid", period_end, attempts.max(1)),
                    &mut out,
                );
                next(
                    t,
                    "customer.subscription.updated",
                    subscription("active", price, quantity, period_end, false),
                    &mut out,
                );
            }
            Step::CancellationScheduled => next(
                t,
                "customer.subscription.updated",
                subscription("active", price, quantity, period_end, true),
                &mut out,
            ),
            Step::Paused => next(
                t,
                "customer.subscription.paused",
                subscription("paused", price, quantity, period_end, false),
                &mut out,
            ),
            Step::Resumed => next(
                t,
                "customer.subscription.resumed",
                subscription("active", price, quantity, period_end, false),
                &mut out,
            ),
            Step::ActionRequired => next(
                t,
                "invoice.payment_action_required",
                invoice("open", period_end, attempts.max(1)),
                &mut out,
            ),
            Step::EmailChanged(e) => next(
                t,
                "customer.updated",
                json!({"id": "cus_1", "object": "customer", "email": format!("u{e}@example.com"),
                       "metadata": {"user_id": "user_1"}}),
                &mut out,
            ),
            Step::ConflictingUpdatesInOneSecond(q) => {
                next(
                    t,
                    "customer.subscription.updated",
                    subscription("active", price, *q, period_end, false),
                    &mut out,
                );
                next(
                    t,
                    "customer.subscription.updated",
                    subscription("past_due", price, quantity, period_end, false),
                    &mut out,
                );
            }
            Step::Deleted => {
                deleted = true;
                next(
                    t,
                    "customer.subscription.deleted",
                    subscription("canceled", price, quantity, period_end, true),
                    &mut out,
                );
            }
        }
    }
    out
}

pub(super) fn fold(events: &[&Value]) -> Projection {
    fold_all(events.iter().map(|e| LoggedEvent {
        event_id: e["id"].as_str().unwrap(),
        event_type: e["type"].as_str().unwrap(),
        created: e["created"].as_i64().unwrap(),
        payload: e,
        // Test convention: `svc_` ids stand for the service's own `api_response` entries.
        origin: if e["id"].as_str().unwrap().starts_with("svc_") {
            crate::Origin::Service
        } else {
            crate::Origin::Stripe
        },
    }))
    .unwrap()
}

/// A deterministic shuffle with duplicates, driven by a proptest-chosen seed.
pub(super) fn delivery(events: &[Value], seed: u64) -> Vec<&Value> {
    let mut state = seed | 1;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out: Vec<&Value> = events.iter().collect();
    for e in events {
        if rand() % 4 == 0 {
            out.push(e);
        }
    }
    for i in (1..out.len()).rev() {
        let j = (rand() % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    out
}

/// Renders a basil object as an endpoint pinned before basil would have received it: periods
/// on the subscription, `invoice.subscription` and `invoice.paid` instead of `parent`.
pub(super) fn to_pre_basil(event: &mut Value) {
    event["api_version"] = json!("2024-09-30.acacia");
    let object = &mut event["data"]["object"];
    match object["object"].as_str() {
        Some("subscription") => {
            let item = object["items"]["data"][0].as_object_mut().unwrap();
            let start = item.remove("current_period_start").unwrap();
            let end = item.remove("current_period_end").unwrap();
            object["current_period_start"] = start;
            object["current_period_end"] = end;
        }
        Some("invoice") => {
            let subscription = object["parent"]["subscription_details"]["subscription"].clone();
            object.as_object_mut().unwrap().remove("parent");
            object["subscription"] = subscription;
            object["paid"] = json!(object["status"] == "paid");
        }
        _ => {}
    }
}

fn access_of(p: &Projection, now: i64) -> crate::Entitlement {
    let (subscriptions, invoices) = p.billing_of_user("user_1");
    entitlement(&subscriptions, &invoices, now, 7 * 86_400)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_delivery_order_and_duplication_yields_identical_read_models(
        steps in prop::collection::vec(step(), 0..14),
        gaps in prop::collection::vec(0u8..3, 14),
        pre_basil in prop::collection::vec(any::<bool>(), 32),
        seeds in prop::collection::vec(any::<u64>(), 3),
        now_offset in 0i64..(120 * 86_400),
    ) {
        let mut events = lifecycle(&steps, &gaps);
        // Endpoints change API version over a subscription's life: mix both shapes.
        for (e, old) in events.iter_mut().zip(pre_basil.iter().cycle()) {
            if *old {
                to_pre_basil(e);
            }
        }
        let in_order = fold(&events.iter().collect::<Vec<_>>());
        let now = 1_763_800_000 + now_offset;
        let access = access_of(&in_order, now);
        for seed in seeds {
            let delivered = delivery(&events, seed);
            let shuffled = fold(&delivered);
            prop_assert_eq!(&shuffled, &in_order);
            prop_assert_eq!(shuffled.conflicts(), in_order.conflicts());
            prop_assert_eq!(access_of(&shuffled, now), access.clone());

            // Any grouping of the joins gives the same states: two batches folded apart,
            // then joined, as the shell joins a stored state with a new batch.
            let split = (seed % (delivered.len() as u64 + 1)) as usize;
            let mut first = fold(&delivered[..split]);
            let second = fold(&delivered[split..]);
            join(&mut first, second.clone());
            prop_assert_eq!(&first, &in_order);
            // Joining what is already there changes nothing.
            prop_assert!(!join(&mut first, second));
        }
        // Only the service's own session links; the foreign one is a conflict on its customer.
        prop_assert_eq!(in_order.customers["cus_1"].user_id(), Some("user_1"));
        prop_assert_eq!(in_order.customers["cus_evil"].user_id(), None);
        prop_assert_eq!(in_order.customers["cus_evil"].link_conflicts().len(), 1);
        prop_assert!(!in_order.user_links()["user_1"].customers.contains("cus_evil"));
        // A deleted subscription stays canceled whatever came after it in delivery.
        if steps.iter().any(|s| matches!(s, Step::Deleted)) {
            prop_assert_eq!(in_order.subscriptions["sub_1"].status(), Some("canceled"));
        }
    }
}

#[test]
fn a_late_update_never_resurrects_a_canceled_subscription() {
    let end = 1_763_800_000 + 2_592_000;
    let deleted = event(
        1,
        "customer.subscription.deleted",
        end,
        subscription("canceled", 0, 1, end, true),
    );
    // Created one second earlier, delivered after the deletion.
    let late = event(
        2,
        "customer.subscription.updated",
        end - 1,
        subscription("active", 0, 1, end, true),
    );
    // Even a (bogus) later-stamped update cannot bring it back: canceled absorbs.
    let later = event(
        3,
        "customer.subscription.updated",
        end + 10,
        subscription("active", 1, 1, end, false),
    );
    let p = fold(&[&deleted, &late, &later]);
    assert_eq!(p.subscriptions["sub_1"].status(), Some("canceled"));
    let e = entitlement(
        &p.subscriptions.values().cloned().collect::<Vec<_>>(),
        &[],
        end,
        0,
    );
    assert_eq!(e.access, Access::Denied);
    assert_eq!(e.reason.as_str(), "canceled");
}

#[test]
fn pre_basil_subscriptions_and_invoices_decode_like_basil_ones() {
    let legacy_sub = json!({
        "id": "sub_old", "object": "subscription", "customer": {"id": "cus_9", "object": "customer"},
        "status": "active", "current_period_start": 100, "current_period_end": 200,
        "items": {"data": [{"id": "si_1", "plan": {"id": "plan_1", "amount": 900, "currency": "eur", "interval": "month"}, "quantity": 2}]}
    });
    let legacy_invoice = json!({"id": "in_old", "object": "invoice", "subscription": "sub_old", "status": "paid", "paid": true, "customer": "cus_9"});
    let e1 = event(1, "customer.subscription.updated", 150, legacy_sub);
    let e2 = event(2, "invoice.paid", 151, legacy_invoice);
    let p = fold(&[&e1, &e2]);
    let view = p.subscriptions["sub_old"].view().unwrap();
    assert_eq!(view.current_period_end, Some(200));
    assert_eq!(view.customer.as_deref(), Some("cus_9"));
    assert_eq!(view.items[0].price_id.as_deref(), Some("plan_1"));
    assert_eq!(view.items[0].unit_amount, Some(900));
    assert_eq!(view.items[0].quantity, 2);
    assert_eq!(
        p.invoices["in_old"].view().unwrap().subscription.as_deref(),
        Some("sub_old")
    );
    assert_eq!(p.invoices["in_old"].paid_at, Some(151));

    let basil = event(
        3,
        "customer.subscription.updated",
        150,
        subscription("active", 0, 1, 300, false),
    );
    let p = fold(&[&basil]);
    assert_eq!(
        p.subscriptions["sub_1"].view().unwrap().current_period_end,
        Some(300)
    );
}

#[test]
fn past_due_grants_grace_from_the_first_failure_and_then_denies() {
    let end = 1_763_800_000;
    let failed1 = event(
        1,
        "invoice.payment_failed",
        end + 10,
        invoice("open", end, 1),
    );
    let failed2 = event(
        2,
        "invoice.payment_failed",
        end + 86_400,
        invoice("open", end, 2),
    );
    let past_due = event(
        3,
        "customer.subscription.updated",
        end + 20,
        subscription("past_due", 0, 1, end, false),
    );
    let p = fold(&[&failed2, &past_due, &failed1]);
    let subs: Vec<_> = p.subscriptions.values().cloned().collect();
    let invoices: Vec<_> = p.invoices.values().cloned().collect();
    let grace = 7 * 86_400;
    let during = entitlement(&subs, &invoices, end + 3 * 86_400, grace);
    assert_eq!(during.access, Access::Grace);
    assert_eq!(
        during.until,
        Some(end + 10 + grace),
        "counted from the first failure"
    );
    let after = entitlement(&subs, &invoices, end + 10 + grace, grace);
    assert_eq!(after.access, Access::Denied);
    assert_eq!(after.reason.as_str(), "past_due_grace_expired");
}

#[test]
fn checkout_links_the_customer_and_subscription_to_the_app_user() {
    let session = json!({"id": "cs_1", "object": "checkout.session", "mode": "subscription",
        "client_reference_id": "user_7", "customer": "cus_7", "subscription": "sub_7",
        "payment_status": "paid", "status": "complete"});
    let e = event(1, "checkout.session.completed", 10, session.clone());
    // Stripe's event alone is a claim: nothing is linked, and the claim is reported.
    let p = fold(&[&e]);
    assert_eq!(p.customers["cus_7"].user_id(), None);
    assert_eq!(p.customers["cus_7"].link_conflicts()[0].value, "user_7");
    assert!(p.billing_of_user("user_7").0.is_empty());
    // With the session as our own create call returned it, in either order, it is the link.
    let mut ours = event(
        0,
        OBJECT_SNAPSHOT,
        5,
        with(
            session,
            json!({"subscription": null,
        "status": "open", "payment_status": "unpaid"}),
        ),
    );
    ours["id"] = json!("svc_cs_1");
    for order in [[&e, &ours], [&ours, &e]] {
        let p = fold(&order);
        assert_eq!(p.customers["cus_7"].user_id(), Some("user_7"));
        assert!(p.customers["cus_7"].link_conflicts().is_empty());
    }
    let p = fold(&[&e, &ours]);
    assert_eq!(p.subscriptions["sub_7"].user_id(), Some("user_7"));
    assert!(
        p.orders.is_empty(),
        "subscription-mode sessions are not orders"
    );
}

#[test]
fn a_one_time_payment_becomes_an_order_and_a_refund_marks_its_payment() {
    let session = json!({"id": "cs_2", "object": "checkout.session", "mode": "payment",
        "client_reference_id": "user_8", "customer": "cus_8", "payment_intent": "pi_8",
        "payment_status": "paid", "status": "complete", "amount_total": 4900, "currency": "usd"});
    let refund = json!({"id": "ch_8", "object": "charge", "payment_intent": "pi_8", "amount_refunded": 4900, "refunded": true});
    let p = fold(&[
        &event(1, "checkout.session.completed", 10, session),
        &event(2, "charge.refunded", 20, refund),
    ]);
    let order = &p.orders["cs_2"];
    assert_eq!(order.status(), "paid");
    assert_eq!(order.view().unwrap().amount_total, Some(4900));
    assert!(p.payments["pi_8"].refunded);
}

#[test]
fn unknown_types_are_not_projected_and_known_ones_without_an_object_are_errors() {
    let e = event(
        1,
        "radar.early_fraud_warning.created",
        1,
        json!({"id": "issfr_1"}),
    );
    let ev = LoggedEvent {
        event_id: "evt_0001",
        event_type: "radar.early_fraud_warning.created",
        created: 1,
        payload: &e,
        origin: crate::Origin::Stripe,
    };
    assert_eq!(decode(&ev).unwrap(), vec![]);
    let broken = json!({"id": "evt_x", "type": "customer.subscription.updated", "data": {"object": {"object": "subscription"}}});
    let ev = LoggedEvent {
        event_id: "evt_x",
        event_type: "customer.subscription.updated",
        created: 1,
        payload: &broken,
        origin: crate::Origin::Stripe,
    };
    assert!(decode(&ev).unwrap_err().0.contains("without an id"));
}

#[test]
fn same_second_conflicting_snapshots_are_reported_for_a_refetch() {
    let a = event(
        1,
        "customer.subscription.updated",
        50,
        subscription("active", 0, 1, 100, false),
    );
    let b = event(
        2,
        "customer.subscription.updated",
        50,
        subscription("active", 0, 2, 100, false),
    );
    let p1 = fold(&[&a, &b]);
    let p2 = fold(&[&b, &a]);
    assert_eq!(p1, p2);
    assert_eq!(
        p1.subscriptions["sub_1"]
            .snapshot
            .as_ref()
            .unwrap()
            .conflicts(),
        ["evt_0001", "evt_0002"]
    );
}

fn sub_state(events: &[Value]) -> Projection {
    fold(&events.iter().collect::<Vec<_>>())
}

fn with(mut object: Value, patch: Value) -> Value {
    for (k, v) in patch.as_object().unwrap() {
        object[k] = v.clone();
    }
    object
}

const END: i64 = 1_763_800_000 + 2_592_000;
const GRACE: i64 = 7 * 86_400;

fn access_for(events: &[Value], now: i64) -> crate::Entitlement {
    let p = sub_state(events);
    entitlement(
        &p.subscriptions.values().cloned().collect::<Vec<_>>(),
        &p.invoices.values().cloned().collect::<Vec<_>>(),
        now,
        GRACE,
    )
}

#[test]
fn an_active_subscription_grants_until_its_period_end_or_its_scheduled_cancellation() {
    let active = subscription("active", 0, 1, END, false);
    let e = access_for(
        &[event(
            1,
            "customer.subscription.updated",
            10,
            active.clone(),
        )],
        20,
    );
    assert_eq!(
        (e.access, e.reason.as_str(), e.until),
        (Access::Granted, "subscription_active", Some(END))
    );
    assert_eq!(e.subscription_id.as_deref(), Some("sub_1"));
    let cancel_at = with(active, json!({"cancel_at": END - 100}));
    let e = access_for(
        &[event(1, "customer.subscription.updated", 10, cancel_at)],
        20,
    );
    assert_eq!(e.until, Some(END - 100));
}

#[test]
fn a_trialing_subscription_grants_until_the_trial_ends() {
    let trial = with(
        subscription("trialing", 0, 1, END, false),
        json!({"trial_end": END - 5}),
    );
    let e = access_for(&[event(1, "customer.subscription.created", 10, trial)], 20);
    assert_eq!(
        (e.access, e.reason.as_str(), e.until),
        (Access::Granted, "trialing", Some(END - 5))
    );
}

#[test]
fn statuses_outside_active_trialing_and_past_due_deny() {
    for status in [
        "incomplete",
        "incomplete_expired",
        "unpaid",
        "canceled",
        "paused",
    ] {
        let e = access_for(
            &[event(
                1,
                "customer.subscription.updated",
                10,
                subscription(status, 0, 1, END, false),
            )],
            20,
        );
        assert_eq!(e.access, Access::Denied, "{status}");
        assert_eq!(e.reason.as_str(), status);
    }
    let none = entitlement(&[], &[], 0, GRACE);
    assert_eq!(
        (none.access, none.reason.as_str(), none.subscription_id),
        (Access::Denied, "no_subscription", None)
    );
}

#[test]
fn past_due_without_a_known_failure_grants_grace_from_the_period_end() {
    // The subscription points at an invoice whose failure event has not arrived yet.
    let events = [event(
        1,
        "customer.subscription.updated",
        END + 5,
        subscription("past_due", 0, 1, END, false),
    )];
    let e = access_for(&events, END + 10);
    assert_eq!((e.access, e.until), (Access::Grace, Some(END + GRACE)));
    let e = access_for(&events, END + GRACE);
    assert_eq!(
        (e.access, e.reason.as_str()),
        (Access::Denied, "past_due_grace_expired")
    );
}

#[test]
fn the_best_of_several_subscriptions_decides_access_whatever_their_order() {
    let canceled = with(
        subscription("canceled", 0, 1, END, false),
        json!({"id": "sub_a"}),
    );
    let past_due = with(
        subscription("past_due", 0, 1, END, false),
        json!({"id": "sub_b"}),
    );
    let active = with(
        subscription("active", 0, 1, END, false),
        json!({"id": "sub_c"}),
    );
    let p = sub_state(&[
        event(1, "customer.subscription.deleted", 10, canceled),
        event(2, "customer.subscription.updated", 10, past_due),
        event(3, "customer.subscription.updated", 10, active),
    ]);
    let mut subs: Vec<_> = p.subscriptions.values().cloned().collect();
    let best = entitlement(&subs, &[], 20, GRACE);
    assert_eq!(best.subscription_id.as_deref(), Some("sub_c"));
    subs.reverse();
    assert_eq!(entitlement(&subs, &[], 20, GRACE), best);
    // Without the active one, grace beats a denial.
    subs.retain(|s| s.id != "sub_c");
    let grace = entitlement(&subs, &[], 20, GRACE);
    assert_eq!(
        (grace.access, grace.subscription_id.as_deref()),
        (Access::Grace, Some("sub_b"))
    );
}

#[test]
fn a_late_customer_update_never_undeletes_a_customer() {
    let customer = json!({"id": "cus_1", "object": "customer", "email": "a@example.com"});
    let deleted = event(1, "customer.deleted", 100, customer.clone());
    let late = event(
        2,
        "customer.updated",
        200,
        with(customer, json!({"email": "b@example.com"})),
    );
    for order in [[&deleted, &late], [&late, &deleted]] {
        let p = fold(&order);
        assert!(p.customers["cus_1"].deleted());
        assert_eq!(p.customers["cus_1"].email(), Some("a@example.com"));
    }
}

#[test]
fn a_late_payment_failure_never_reopens_a_paid_invoice_but_still_dates_the_dunning() {
    let failed = event(1, "invoice.payment_failed", 100, invoice("open", END, 1));
    let paid = event(2, "invoice.paid", 90, invoice("paid", END, 2));
    let p = fold(&[&paid, &failed]);
    let inv = &p.invoices[&format!("in_{END}")];
    assert_eq!(inv.status(), Some("paid"));
    assert_eq!(inv.first_failed_at, Some(100));
    assert_eq!(inv.paid_at, Some(90));
}

#[test]
fn the_first_user_link_wins_so_a_later_claim_cannot_steal_a_customer() {
    let first = event(
        1,
        "customer.created",
        10,
        json!({"id": "cus_1", "object": "customer", "metadata": {"user_id": "user_1"}}),
    );
    let later = event(
        2,
        "customer.updated",
        20,
        json!({"id": "cus_1", "object": "customer", "metadata": {"user_id": "user_2"}}),
    );
    let mut first = first;
    first["id"] = json!("svc_first");
    first["type"] = json!(OBJECT_SNAPSHOT);
    let p = fold(&[&later, &first]);
    assert_eq!(p.customers["cus_1"].user_id(), Some("user_1"));
    let links = p.user_links();
    assert!(links["user_1"].customers.contains("cus_1"));
    assert!(!links.contains_key("user_2"));
    // The disagreeing claim is kept and reported.
    let conflicts = p.customers["cus_1"].link_conflicts();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].value, "user_2");
}

#[test]
fn a_conflict_is_resolved_by_a_later_refetched_snapshot() {
    let a = event(
        1,
        "customer.subscription.updated",
        50,
        subscription("active", 0, 1, END, false),
    );
    let b = event(
        2,
        "customer.subscription.updated",
        50,
        subscription("past_due", 0, 1, END, false),
    );
    let p = fold(&[&a, &b]);
    assert_eq!(p.conflicts().len(), 1);
    assert_eq!(p.conflicts()[0].kind, "subscription");
    assert_eq!(p.conflicts()[0].event_ids, ["evt_0001", "evt_0002"]);
    let refetch = event(
        3,
        crate::OBJECT_SNAPSHOT,
        60,
        subscription("active", 0, 1, END, false),
    );
    let p = fold(&[&b, &refetch, &a]);
    assert!(p.conflicts().is_empty());
    assert_eq!(p.subscriptions["sub_1"].status(), Some("active"));
}
