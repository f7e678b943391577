//! What each event type contributes, in the shapes of both API generations: basil (periods on
//! items, `invoice.parent.subscription_details`, no `invoice.paid`) and before (acacia).

use serde_json::{json, Value};

use crate::{
    decode, fold_all, DecodeError, Fact, LoggedEvent, Projection, OBJECT_SNAPSHOT, PROJECTED_TYPES,
};

const T: i64 = 1_750_000_000;
const MONTH: i64 = 2_592_000;
const BASIL: &str = "2025-03-31.basil";
const ACACIA: &str = "2024-09-30.acacia";

fn event(id: &str, event_type: &str, created: i64, api_version: &str, object: Value) -> Value {
    json!({
        "id": id, "object": "event", "api_version": api_version, "created": created,
        "livemode": false, "pending_webhooks": 1, "type": event_type,
        "request": {"id": null, "idempotency_key": null},
        "data": {"object": object}
    })
}

fn logged(e: &Value) -> LoggedEvent<'_> {
    LoggedEvent {
        event_id: e["id"].as_str().unwrap(),
        event_type: e["type"].as_str().unwrap(),
        created: e["created"].as_i64().unwrap(),
        payload: e,
        origin: if e["id"].as_str().unwrap().starts_with("svc_") {
            crate::Origin::Service
        } else {
            crate::Origin::Stripe
        },
    }
}

fn facts(e: &Value) -> Result<Vec<Fact>, DecodeError> {
    decode(&logged(e))
}

fn fold(events: &[Value]) -> Projection {
    fold_all(events.iter().map(logged)).unwrap()
}

fn basil_subscription(status: &str) -> Value {
    json!({
        "id": "sub_1", "object": "subscription", "customer": "cus_1", "status": status,
        "billing_mode": {"type": "classic"}, "cancel_at_period_end": false, "cancel_at": null,
        "canceled_at": null, "ended_at": null, "trial_start": null, "trial_end": null,
        "created": T, "currency": "usd", "latest_invoice": "in_1",
        "metadata": {"user_id": "user_1"}, "discounts": [],
        "items": {"object": "list", "has_more": false, "data": [
            {"id": "si_1", "object": "subscription_item", "quantity": 2,
             "current_period_start": T, "current_period_end": T + MONTH,
             "price": {"id": "price_basic", "object": "price", "unit_amount": 1500,
                       "currency": "usd", "product": "prod_1",
                       "recurring": {"interval": "month", "interval_count": 1}}},
            {"id": "si_2", "object": "subscription_item", "quantity": 1,
             "current_period_start": T, "current_period_end": T + 12 * MONTH,
             "price": {"id": "price_addon", "object": "price", "unit_amount": 900,
                       "currency": "usd", "product": {"id": "prod_2", "object": "product"},
                       "recurring": {"interval": "year", "interval_count": 1}}}
        ]}
    })
}

fn acacia_subscription(status: &str) -> Value {
    json!({
        "id": "sub_1", "object": "subscription", "customer": "cus_1", "status": status,
        "current_period_start": T, "current_period_end": T + MONTH,
        "cancel_at_period_end": false, "cancel_at": null, "canceled_at": null, "ended_at": null,
        "trial_start": null, "trial_end": null, "created": T, "currency": "usd",
        "latest_invoice": "in_1", "metadata": {"user_id": "user_1"}, "discount": null,
        "plan": {"id": "price_basic", "object": "plan", "amount": 1500},
        "items": {"object": "list", "has_more": false, "total_count": 1, "data": [
            {"id": "si_1", "object": "subscription_item", "quantity": 2,
             "plan": {"id": "price_basic", "object": "plan", "amount": 1500, "currency": "usd",
                      "interval": "month", "product": "prod_1"},
             "price": {"id": "price_basic", "object": "price", "unit_amount": 1500,
                       "currency": "usd", "product": "prod_1",
                       "recurring": {"interval": "month", "interval_count": 1}}}
        ]}
    })
}

fn basil_invoice(status: &str, attempt_count: i64) -> Value {
    json!({
        "id": "in_1", "object": "invoice", "customer": "cus_1", "status": status,
        "amount_due": 3900, "amount_paid": if status == "paid" { 3900 } else { 0 },
        "amount_remaining": if status == "paid" { 0 } else { 3900 }, "currency": "usd",
        "attempt_count": attempt_count, "next_payment_attempt": T + 3 * 86_400,
        "billing_reason": "subscription_cycle", "created": T,
        "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1/test_1",
        "parent": {"type": "subscription_details", "quote_details": null,
                   "subscription_details": {"subscription": "sub_1", "metadata": {}}},
        "status_transitions": {"finalized_at": T, "paid_at": if status == "paid" { json!(T + 60) } else { Value::Null }},
        "payments": {"object": "list", "data": []}
    })
}

fn acacia_invoice(status: &str, attempt_count: i64) -> Value {
    json!({
        "id": "in_1", "object": "invoice", "customer": "cus_1", "status": status,
        "subscription": "sub_1", "paid": status == "paid", "charge": "ch_1",
        "payment_intent": "pi_1", "amount_due": 3900,
        "amount_paid": if status == "paid" { 3900 } else { 0 }, "currency": "usd",
        "attempt_count": attempt_count, "next_payment_attempt": null,
        "billing_reason": "subscription_create", "created": T,
        "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1/test_1"
    })
}

fn only_subscription(facts: &[Fact]) -> &crate::SubscriptionState {
    let subs: Vec<_> = facts
        .iter()
        .filter_map(|f| match f {
            Fact::Subscription(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(subs.len(), 1, "{facts:?}");
    subs[0]
}

/// The invoice fact of an invoice event; a renewal invoice's event may also state its
/// subscription's renewal (the failed-payment rule), never a snapshot of it.
fn only_invoice(facts: &[Fact]) -> &crate::InvoiceState {
    match facts {
        [Fact::Invoice(i)] => i,
        [Fact::Invoice(i), Fact::Subscription(s)]
            if s.snapshot.is_none() && s.renewals.contains_key(&i.id) =>
        {
            i
        }
        other => panic!("expected one invoice fact, got {other:?}"),
    }
}

const SUBSCRIPTION_TYPES: [&str; 8] = [
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
    "customer.subscription.pending_update_applied",
    "customer.subscription.pending_update_expired",
];

#[test]
fn every_subscription_event_type_decodes_a_basil_subscription_with_item_periods() {
    for ty in SUBSCRIPTION_TYPES {
        let status = if ty.ends_with("deleted") {
            "canceled"
        } else {
            "active"
        };
        let e = event("evt_1", ty, T + 5, BASIL, basil_subscription(status));
        let facts = facts(&e).unwrap();
        let sub = only_subscription(&facts);
        let view = sub.view().unwrap();
        assert_eq!(view.status, status, "{ty}");
        assert_eq!(view.customer.as_deref(), Some("cus_1"));
        assert_eq!(view.items.len(), 2);
        assert_eq!(view.items[0].price_id.as_deref(), Some("price_basic"));
        assert_eq!(view.items[0].quantity, 2);
        assert_eq!(view.items[0].unit_amount, Some(1500));
        assert_eq!(view.items[0].current_period_end, Some(T + MONTH));
        assert_eq!(view.items[1].product.as_deref(), Some("prod_2"));
        assert_eq!(view.items[1].interval.as_deref(), Some("year"));
        // Items can differ; the subscription-level period is the latest one.
        assert_eq!(view.current_period_end, Some(T + 12 * MONTH));
        assert_eq!(view.latest_invoice.as_deref(), Some("in_1"));
        assert_eq!(sub.user_id(), Some("user_1"));
        // The metadata is only a claim on the customer, never a link by itself.
        assert!(facts.iter().any(
            |f| matches!(f, Fact::Customer(c) if c.id == "cus_1" && c.user_id().is_none()
                && c.claims.contains_key("user_1"))
        ));
    }
}

#[test]
fn every_subscription_event_type_decodes_a_pre_basil_subscription_with_its_own_period() {
    for ty in SUBSCRIPTION_TYPES {
        let e = event("evt_1", ty, T + 5, ACACIA, acacia_subscription("trialing"));
        let facts = facts(&e).unwrap();
        let view = only_subscription(&facts).view().unwrap().clone();
        assert_eq!(view.status, "trialing", "{ty}");
        assert_eq!(view.current_period_start, Some(T));
        assert_eq!(view.current_period_end, Some(T + MONTH));
        assert_eq!(view.items.len(), 1);
        assert_eq!(view.items[0].price_id.as_deref(), Some("price_basic"));
        assert_eq!(view.items[0].current_period_end, None);
    }
}

#[test]
fn a_subscription_whose_items_only_name_a_plan_still_has_a_price() {
    let mut sub = acacia_subscription("active");
    sub["items"]["data"][0]
        .as_object_mut()
        .unwrap()
        .remove("price");
    let e = event("evt_1", "customer.subscription.updated", T, ACACIA, sub);
    let facts = facts(&e).unwrap();
    let item = &only_subscription(&facts).view().unwrap().items[0];
    assert_eq!(item.price_id.as_deref(), Some("price_basic"));
    assert_eq!(item.unit_amount, Some(1500));
    assert_eq!(item.interval.as_deref(), Some("month"));
}

#[test]
fn subscription_scheduling_fields_are_kept() {
    let mut sub = basil_subscription("trialing");
    sub["cancel_at_period_end"] = json!(true);
    sub["cancel_at"] = json!(T + MONTH);
    sub["canceled_at"] = json!(T + 10);
    sub["trial_start"] = json!(T);
    sub["trial_end"] = json!(T + 14 * 86_400);
    sub["customer"] = json!({"id": "cus_1", "object": "customer", "email": "a@example.com"});
    sub["latest_invoice"] = json!({"id": "in_9", "object": "invoice"});
    let e = event("evt_1", "customer.subscription.updated", T + 10, BASIL, sub);
    let facts = facts(&e).unwrap();
    let view = only_subscription(&facts).view().unwrap();
    assert!(view.cancel_at_period_end);
    assert_eq!(view.cancel_at, Some(T + MONTH));
    assert_eq!(view.canceled_at, Some(T + 10));
    assert_eq!(view.trial_end, Some(T + 14 * 86_400));
    assert_eq!(
        view.customer.as_deref(),
        Some("cus_1"),
        "expanded ids decode"
    );
    assert_eq!(view.latest_invoice.as_deref(), Some("in_9"));
    assert_eq!(view.created, Some(T));
}

#[test]
fn a_subscription_without_an_id_or_a_status_is_a_decode_error() {
    let mut no_status = basil_subscription("active");
    no_status.as_object_mut().unwrap().remove("status");
    let e = event(
        "evt_1",
        "customer.subscription.updated",
        T,
        BASIL,
        no_status,
    );
    assert!(facts(&e).unwrap_err().0.contains("without a status"));
    let mut no_id = basil_subscription("active");
    no_id.as_object_mut().unwrap().remove("id");
    let e = event("evt_1", "customer.subscription.created", T, BASIL, no_id);
    let message = facts(&e).unwrap_err().to_string();
    assert!(
        message.contains("customer.subscription.created"),
        "{message}"
    );
    assert!(message.contains("without an id"), "{message}");
}

#[test]
fn a_subscription_without_user_metadata_links_nobody() {
    let mut sub = basil_subscription("active");
    sub["metadata"] = json!({});
    let e = event("evt_1", "customer.subscription.created", T, BASIL, sub);
    let facts = facts(&e).unwrap();
    assert_eq!(facts.len(), 1);
    assert_eq!(only_subscription(&facts).user_id(), None);
}

#[test]
fn a_basil_paid_invoice_finds_its_subscription_under_parent_and_counts_as_paid_without_the_paid_field(
) {
    let e = event(
        "evt_1",
        "invoice.paid",
        T + 70,
        BASIL,
        basil_invoice("paid", 1),
    );
    let facts = facts(&e).unwrap();
    let invoice = only_invoice(&facts);
    let view = invoice.view().unwrap();
    assert_eq!(view.subscription.as_deref(), Some("sub_1"));
    assert_eq!(view.status.as_deref(), Some("paid"));
    assert_eq!(view.amount_paid, Some(3900));
    assert_eq!(view.currency.as_deref(), Some("usd"));
    // Stripe's own transition time, identical in every snapshot of the invoice.
    assert_eq!(invoice.paid_at, Some(T + 60));
}

#[test]
fn a_pre_basil_paid_invoice_names_its_subscription_directly() {
    for ty in ["invoice.paid", "invoice.payment_succeeded"] {
        let e = event("evt_1", ty, T + 70, ACACIA, acacia_invoice("paid", 1));
        let facts = facts(&e).unwrap();
        let invoice = only_invoice(&facts);
        assert_eq!(
            invoice.view().unwrap().subscription.as_deref(),
            Some("sub_1")
        );
        assert_eq!(invoice.paid_at, Some(T + 70), "{ty}");
    }
}

#[test]
fn a_failed_payment_starts_the_dunning_clock_in_both_shapes() {
    for (object, version) in [
        (basil_invoice("open", 1), BASIL),
        (acacia_invoice("open", 1), ACACIA),
    ] {
        let e = event("evt_1", "invoice.payment_failed", T + 100, version, object);
        let facts = facts(&e).unwrap();
        let invoice = only_invoice(&facts);
        assert_eq!(invoice.first_failed_at, Some(T + 100));
        assert_eq!(invoice.last_failed_at, Some(T + 100));
        assert_eq!(invoice.paid_at, None);
        assert_eq!(invoice.view().unwrap().attempt_count, Some(1));
        assert_eq!(
            invoice.view().unwrap().subscription.as_deref(),
            Some("sub_1")
        );
    }
    // `next_payment_attempt: null` means Stripe gave up retrying.
    let e = event(
        "evt_2",
        "invoice.payment_failed",
        T,
        ACACIA,
        acacia_invoice("open", 4),
    );
    assert_eq!(
        only_invoice(&facts(&e).unwrap())
            .view()
            .unwrap()
            .next_payment_attempt,
        None
    );
}

#[test]
fn a_payment_needing_action_keeps_the_hosted_invoice_url() {
    let e = event(
        "evt_1",
        "invoice.payment_action_required",
        T + 5,
        BASIL,
        basil_invoice("open", 1),
    );
    let facts = facts(&e).unwrap();
    let invoice = only_invoice(&facts);
    assert_eq!(invoice.action_required_at, Some(T + 5));
    assert_eq!(
        invoice.view().unwrap().hosted_invoice_url.as_deref(),
        Some("https://invoice.stripe.com/i/acct_1/test_1")
    );
}

#[test]
fn invoice_lifecycle_events_carry_their_status() {
    for (ty, status) in [
        ("invoice.created", "draft"),
        ("invoice.finalized", "open"),
        ("invoice.updated", "open"),
        ("invoice.voided", "void"),
        ("invoice.marked_uncollectible", "uncollectible"),
    ] {
        for (object, version) in [
            (basil_invoice(status, 0), BASIL),
            (acacia_invoice(status, 0), ACACIA),
        ] {
            let e = event("evt_1", ty, T, version, object);
            let facts = facts(&e).unwrap();
            let invoice = only_invoice(&facts);
            assert_eq!(invoice.status(), Some(status), "{ty} {version}");
            assert_eq!(invoice.paid_at, None);
            assert_eq!(invoice.first_failed_at, None);
        }
    }
}

#[test]
fn an_invoice_without_an_id_is_an_error_but_an_upcoming_one_is_not_projected() {
    let mut object = basil_invoice("open", 0);
    object.as_object_mut().unwrap().remove("id");
    let e = event("evt_1", "invoice.finalized", T, BASIL, object.clone());
    assert!(facts(&e).unwrap_err().0.contains("invoice without an id"));
    let upcoming = event("evt_2", "invoice.upcoming", T, BASIL, object);
    assert_eq!(facts(&upcoming).unwrap(), vec![]);
}

#[test]
fn customer_events_carry_email_user_and_deletion() {
    let object = json!({"id": "cus_1", "object": "customer", "email": "a@example.com",
        "created": T, "metadata": {"user_id": "user_1"}, "invoice_settings": {}});
    for ty in ["customer.created", "customer.updated", "customer.deleted"] {
        let e = event("evt_1", ty, T, BASIL, object.clone());
        let facts = facts(&e).unwrap();
        let [Fact::Customer(c)] = facts.as_slice() else {
            panic!("{facts:?}")
        };
        assert_eq!(c.email(), Some("a@example.com"));
        // A webhook's metadata is a claim; the same object as our own API call returned it
        // (an `svc_` entry here) is the link.
        assert_eq!(c.user_id(), None);
        assert_eq!(c.link_conflicts()[0].value, "user_1");
        assert_eq!(c.deleted(), ty == "customer.deleted", "{ty}");
    }
    let ours = event("svc_1", OBJECT_SNAPSHOT, T, BASIL, object.clone());
    let ours_facts = facts(&ours).unwrap();
    let [Fact::Customer(c)] = ours_facts.as_slice() else {
        panic!("{ours_facts:?}")
    };
    assert_eq!(c.user_id(), Some("user_1"));
    assert!(c.link_conflicts().is_empty());
    let e = event(
        "evt_1",
        "customer.updated",
        T,
        BASIL,
        json!({"object": "customer"}),
    );
    assert!(facts(&e).unwrap_err().0.contains("customer without an id"));
}

#[test]
fn a_subscription_checkout_links_customer_and_subscription_and_makes_no_order() {
    let session = json!({"id": "cs_1", "object": "checkout.session", "mode": "subscription",
        "client_reference_id": null, "metadata": {"user_id": "user_7"}, "customer": "cus_7",
        "subscription": {"id": "sub_7", "object": "subscription"}, "payment_status": "paid",
        "status": "complete", "amount_total": 1500, "currency": "usd"});
    let e = event("evt_1", "checkout.session.completed", T, BASIL, session);
    let facts = facts(&e).unwrap();
    assert_eq!(facts.len(), 2, "{facts:?}");
    assert!(facts.iter().any(
        |f| matches!(f, Fact::Customer(c) if c.id == "cus_7" && c.user_id().is_none()
            && c.claims.contains_key("user_7") && c.snapshot.is_none())
    ));
    assert!(facts.iter().any(
        |f| matches!(f, Fact::Subscription(s) if s.id == "sub_7" && s.user_id() == Some("user_7") && s.snapshot.is_none())
    ));
}

fn payment_session(status: &str, payment_status: &str) -> Value {
    json!({"id": "cs_2", "object": "checkout.session", "mode": "payment",
        "client_reference_id": "user_8", "customer": "cus_8", "payment_intent": "pi_8",
        "payment_status": payment_status, "status": status, "amount_total": 4900,
        "currency": "eur", "created": T})
}

#[test]
fn one_time_checkout_events_move_an_order_through_its_states() {
    let cases = [
        ("checkout.session.completed", "complete", "paid", "paid"),
        (
            "checkout.session.completed",
            "complete",
            "unpaid",
            "awaiting_payment",
        ),
        (
            "checkout.session.async_payment_succeeded",
            "complete",
            "paid",
            "paid",
        ),
        (
            "checkout.session.async_payment_failed",
            "complete",
            "unpaid",
            "payment_failed",
        ),
        ("checkout.session.expired", "expired", "unpaid", "expired"),
    ];
    for (ty, status, payment_status, order_status) in cases {
        let e = event(
            "evt_1",
            ty,
            T,
            BASIL,
            payment_session(status, payment_status),
        );
        // The session as our own create call returned it, then Stripe's event.
        let ours = event(
            "svc_1",
            OBJECT_SNAPSHOT,
            T - 5,
            BASIL,
            payment_session("open", "unpaid"),
        );
        assert_eq!(
            fold(std::slice::from_ref(&e)).orders["cs_2"].user_id(),
            None,
            "{ty}"
        );
        let p = fold(&[e, ours]);
        let order = &p.orders["cs_2"];
        assert_eq!(order.status(), order_status, "{ty} {payment_status}");
        assert_eq!(order.user_id(), Some("user_8"));
        let view = order.view().unwrap();
        assert_eq!(view.amount_total, Some(4900));
        assert_eq!(view.currency.as_deref(), Some("eur"));
        assert_eq!(view.payment_intent.as_deref(), Some("pi_8"));
        assert_eq!(p.customers["cus_8"].user_id(), Some("user_8"));
    }
}

#[test]
fn a_delayed_payment_that_succeeds_after_completion_makes_the_order_paid_in_either_order() {
    let completed = event(
        "evt_1",
        "checkout.session.completed",
        T,
        BASIL,
        payment_session("complete", "unpaid"),
    );
    let succeeded = event(
        "evt_2",
        "checkout.session.async_payment_succeeded",
        T,
        BASIL,
        payment_session("complete", "paid"),
    );
    let a = fold(&[completed.clone(), succeeded.clone()]);
    let b = fold(&[succeeded, completed]);
    assert_eq!(a, b);
    assert_eq!(a.orders["cs_2"].status(), "paid");
    assert!(a.conflicts().is_empty(), "payment status orders the pair");
}

#[test]
fn a_checkout_session_without_an_id_is_an_error() {
    let e = event(
        "evt_1",
        "checkout.session.completed",
        T,
        BASIL,
        json!({"object": "checkout.session", "mode": "payment"}),
    );
    assert!(facts(&e).unwrap_err().0.contains("checkout session"));
}

#[test]
fn refunds_and_disputes_attach_to_the_payment_intent() {
    let refund = json!({"id": "ch_1", "object": "charge", "payment_intent": "pi_8",
        "customer": "cus_8", "amount": 4900, "amount_refunded": 1000, "refunded": false,
        "billing_details": {"name": null}});
    let dispute_opened = json!({"id": "dp_1", "object": "dispute", "charge": "ch_1",
        "payment_intent": "pi_8", "status": "needs_response", "amount": 4900});
    let dispute_closed = json!({"id": "dp_1", "object": "dispute", "charge": "ch_1",
        "payment_intent": "pi_8", "status": "lost", "amount": 4900});
    let events = [
        event(
            "evt_3",
            "charge.dispute.closed",
            T + 50,
            BASIL,
            dispute_closed,
        ),
        event("evt_1", "charge.refunded", T + 10, BASIL, refund),
        event(
            "evt_2",
            "charge.dispute.created",
            T + 20,
            BASIL,
            dispute_opened,
        ),
    ];
    let p = fold(&events);
    let payment = &p.payments["pi_8"];
    assert_eq!(payment.amount_refunded, Some(1000));
    assert!(!payment.refunded, "a partial refund is not a full one");
    assert!(payment.disputed);
    assert_eq!(payment.dispute_status.as_ref().unwrap().value(), "lost");
    assert_eq!(payment.customer.as_deref(), Some("cus_8"));
}

#[test]
fn a_charge_without_a_payment_intent_has_nothing_to_attach_to() {
    let e = event(
        "evt_1",
        "charge.refunded",
        T,
        BASIL,
        json!({"id": "ch_1", "object": "charge", "refunded": true}),
    );
    assert_eq!(facts(&e).unwrap(), vec![]);
}

#[test]
fn payment_intent_outcomes_are_recorded() {
    let succeeded = json!({"id": "pi_8", "object": "payment_intent", "status": "succeeded",
        "amount": 4900, "currency": "eur", "customer": "cus_8"});
    let failed = json!({"id": "pi_9", "object": "payment_intent", "status": "requires_payment_method",
        "amount": 100, "currency": "eur", "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds"}});
    let p = fold(&[
        event("evt_1", "payment_intent.succeeded", T, BASIL, succeeded),
        event("evt_2", "payment_intent.payment_failed", T, BASIL, failed),
    ]);
    assert_eq!(p.payments["pi_8"].succeeded_at, Some(T));
    assert_eq!(p.payments["pi_8"].amount, Some(4900));
    assert_eq!(
        p.payments["pi_9"].last_failure.as_ref().unwrap().value,
        "insufficient_funds"
    );
    assert_eq!(p.payments["pi_9"].succeeded_at, None);
}

#[test]
fn an_object_snapshot_decodes_like_an_update_of_its_object() {
    let snapshot = |object: Value| event("lsnap_1", OBJECT_SNAPSHOT, T + 900, BASIL, object);
    let sub = fold(&[snapshot(basil_subscription("past_due"))]);
    assert_eq!(sub.subscriptions["sub_1"].status(), Some("past_due"));
    let version = sub.subscriptions["sub_1"]
        .snapshot
        .as_ref()
        .unwrap()
        .version()
        .clone();
    assert_eq!(version.type_rank, crate::ordering::type_rank("x.updated"));

    let invoice = fold(&[snapshot(acacia_invoice("paid", 1))]);
    assert_eq!(invoice.invoices["in_1"].paid_at, Some(T + 900));

    // A deleted customer is retrieved as a stub.
    let stub = fold(&[snapshot(
        json!({"id": "cus_1", "object": "customer", "deleted": true}),
    )]);
    assert!(stub.customers["cus_1"].deleted());

    // A charge snapshot is a charge, not a dispute.
    let charge = fold(&[snapshot(
        json!({"id": "ch_1", "object": "charge", "payment_intent": "pi_1", "refunded": true, "amount_refunded": 500}),
    )]);
    assert!(charge.payments["pi_1"].refunded);
    assert!(!charge.payments["pi_1"].disputed);

    let session = fold(&[snapshot(payment_session("expired", "unpaid"))]);
    assert_eq!(session.orders["cs_2"].status(), "expired");
}

#[test]
fn an_object_snapshot_that_does_not_say_what_it_is_is_an_error() {
    let e = event(
        "lsnap_1",
        OBJECT_SNAPSHOT,
        T,
        BASIL,
        json!({"id": "sub_1", "status": "active"}),
    );
    assert!(facts(&e).unwrap_err().0.contains("data.object.object"));
    // A snapshot of a kind we do not project is fine.
    let e = event(
        "lsnap_2",
        OBJECT_SNAPSHOT,
        T,
        BASIL,
        json!({"id": "prod_1", "object": "product"}),
    );
    assert_eq!(facts(&e).unwrap(), vec![]);
}

#[test]
fn unknown_event_types_are_acknowledged_without_facts_even_when_malformed() {
    for ty in [
        "radar.early_fraud_warning.created",
        "customer.source.created",
        "customer.discount.created",
        "invoice.upcoming",
        "v2.core.account.updated",
    ] {
        let e = json!({"id": "evt_1", "type": ty, "created": T});
        assert_eq!(facts(&e).unwrap(), vec![], "{ty}");
    }
}

#[test]
fn every_projected_type_without_a_data_object_is_an_error() {
    for ty in PROJECTED_TYPES {
        let e = json!({"id": "evt_1", "type": ty, "created": T, "data": {}});
        let err = facts(&e).unwrap_err();
        assert!(err.0.contains("without data.object"), "{ty}: {err}");
    }
}

#[test]
fn extra_fields_from_newer_api_versions_are_ignored() {
    let mut sub = basil_subscription("paused");
    sub["pause_collection"] = json!({"behavior": "void"});
    sub["billing_mode"] =
        json!({"type": "flexible", "flexible": {"proration_discounts": "itemized"}});
    sub["something_new"] = json!([{"deep": {"deeper": 1}}]);
    let e = event(
        "evt_1",
        "customer.subscription.paused",
        T,
        "2026-09-30.endive",
        sub,
    );
    assert_eq!(
        only_subscription(&facts(&e).unwrap()).status(),
        Some("paused")
    );
}
