//! Order-independence, checked as a property over generated subscription lifecycles, and the
//! event shapes of both API generations.

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::{decode, entitlement, fold_all, Access, LoggedEvent, Projection};

/// One generated step of a lifecycle, before it becomes an event.
#[derive(Debug, Clone)]
enum Step {
    Trial,
    Activate,
    ChangePrice(u8),
    ChangeQuantity(u8),
    PaymentFailed,
    PastDue,
    Recovered,
    CancelAtPeriodEnd,
    Deleted,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::Trial),
        Just(Step::Activate),
        (0u8..3).prop_map(Step::ChangePrice),
        (1u8..4).prop_map(Step::ChangeQuantity),
        Just(Step::PaymentFailed),
        Just(Step::PastDue),
        Just(Step::Recovered),
        Just(Step::CancelAtPeriodEnd),
        Just(Step::Deleted),
    ]
}

fn event(id: usize, event_type: &str, created: i64, object: Value) -> Value {
    json!({
        "id": format!("evt_{id:04}"), "object": "event", "api_version": "2025-03-31.basil",
        "created": created, "livemode": false, "type": event_type,
        "data": {"object": object}
    })
}

fn subscription(status: &str, price: u8, quantity: u8, period_end: i64, cancel: bool) -> Value {
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

fn invoice(status: &str, period_end: i64, attempts: i64) -> Value {
    json!({
        "id": format!("in_{period_end}"), "object": "invoice", "customer": "cus_1", "status": status,
        "amount_due": 1500, "amount_paid": if status == "paid" { 1500 } else { 0 }, "currency": "usd",
        "attempt_count": attempts, "hosted_invoice_url": "https://invoice.stripe.com/i/x",
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_1"}}
    })
}

/// Turns steps into a realistic event list. Gaps of 0 to 2 seconds make same-second ties
/// common, as in real Stripe traffic.
fn lifecycle(steps: &[Step], gaps: &[u8]) -> Vec<Value> {
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
    let mut deleted = false;
    for (i, s) in steps.iter().enumerate() {
        t += i64::from(gaps.get(i).copied().unwrap_or(1));
        if deleted {
            break;
        }
        match s {
            Step::Trial => next(
                t,
                "customer.subscription.updated",
                subscription("trialing", price, quantity, period_end, false),
                &mut out,
            ),
            Step::Activate => {
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
            Step::ChangePrice(p) => {
                price = *p;
                next(
                    t,
                    "customer.subscription.updated",
                    subscription("active", price, quantity, period_end, false),
                    &mut out,
                );
            }
            Step::ChangeQuantity(q) => {
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
            Step::PastDue => {
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
            Step::CancelAtPeriodEnd => next(
                t,
                "customer.subscription.updated",
                subscription("active", price, quantity, period_end, true),
                &mut out,
            ),
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

fn fold(events: &[&Value]) -> Projection {
    fold_all(events.iter().map(|e| LoggedEvent {
        event_id: e["id"].as_str().unwrap(),
        event_type: e["type"].as_str().unwrap(),
        created: e["created"].as_i64().unwrap(),
        payload: e,
    }))
    .unwrap()
}

/// A deterministic shuffle with duplicates, driven by a proptest-chosen seed.
fn delivery(events: &[Value], seed: u64) -> Vec<&Value> {
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_delivery_order_and_duplication_yields_identical_read_models(
        steps in prop::collection::vec(step(), 0..12),
        gaps in prop::collection::vec(0u8..3, 12),
        seeds in prop::collection::vec(any::<u64>(), 3),
    ) {
        let events = lifecycle(&steps, &gaps);
        let in_order = fold(&events.iter().collect::<Vec<_>>());
        let now = 1_763_800_000 + 86_400;
        let access = entitlement(&in_order.subscriptions.values().cloned().collect::<Vec<_>>(),
            &in_order.invoices.values().cloned().collect::<Vec<_>>(), now, 7 * 86_400);
        for seed in seeds {
            let shuffled = fold(&delivery(&events, seed));
            prop_assert_eq!(&shuffled, &in_order);
            let again = entitlement(&shuffled.subscriptions.values().cloned().collect::<Vec<_>>(),
                &shuffled.invoices.values().cloned().collect::<Vec<_>>(), now, 7 * 86_400);
            prop_assert_eq!(&again, &access);
        }
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
    assert_eq!(e.reason, "canceled");
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
    assert_eq!(after.reason, "past_due_grace_expired");
}

#[test]
fn checkout_links_the_customer_and_subscription_to_the_app_user() {
    let session = json!({"id": "cs_1", "object": "checkout.session", "mode": "subscription",
        "client_reference_id": "user_7", "customer": "cus_7", "subscription": "sub_7",
        "payment_status": "paid", "status": "complete"});
    let e = event(1, "checkout.session.completed", 10, session);
    let p = fold(&[&e]);
    assert_eq!(p.customers["cus_7"].user_id(), Some("user_7"));
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
    };
    assert_eq!(decode(&ev).unwrap(), vec![]);
    let broken = json!({"id": "evt_x", "type": "customer.subscription.updated", "data": {"object": {"object": "subscription"}}});
    let ev = LoggedEvent {
        event_id: "evt_x",
        event_type: "customer.subscription.updated",
        created: 1,
        payload: &broken,
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
