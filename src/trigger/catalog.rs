//! The event types `trigger` can send by name, each with the sequence a real Stripe account
//! would send leading up to it: every type the projections handle (`ledger.object_snapshot` is
//! our own and never comes from Stripe).

use serde_json::json;

use super::flow::{CheckoutMode, Flow, Ids, Price, DAY, MONTH};

/// A built-in fixture, by the event type it ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TriggerType {
    CheckoutSessionCompleted,
    CheckoutSessionAsyncPaymentSucceeded,
    CheckoutSessionAsyncPaymentFailed,
    CheckoutSessionExpired,
    CustomerCreated,
    CustomerUpdated,
    CustomerDeleted,
    SubscriptionCreated,
    SubscriptionUpdated,
    SubscriptionDeleted,
    SubscriptionPaused,
    SubscriptionResumed,
    SubscriptionTrialWillEnd,
    SubscriptionPendingUpdateApplied,
    SubscriptionPendingUpdateExpired,
    InvoiceCreated,
    InvoiceUpdated,
    InvoiceFinalized,
    InvoicePaid,
    InvoicePaymentSucceeded,
    InvoicePaymentFailed,
    InvoicePaymentActionRequired,
    InvoiceVoided,
    InvoiceMarkedUncollectible,
    ChargeRefunded,
    ChargeDisputeCreated,
    ChargeDisputeUpdated,
    ChargeDisputeClosed,
    PaymentIntentSucceeded,
    PaymentIntentPaymentFailed,
}

use TriggerType as T;

impl TriggerType {
    pub const ALL: [TriggerType; 30] = [
        T::CheckoutSessionCompleted,
        T::CheckoutSessionAsyncPaymentSucceeded,
        T::CheckoutSessionAsyncPaymentFailed,
        T::CheckoutSessionExpired,
        T::CustomerCreated,
        T::CustomerUpdated,
        T::CustomerDeleted,
        T::SubscriptionCreated,
        T::SubscriptionUpdated,
        T::SubscriptionDeleted,
        T::SubscriptionPaused,
        T::SubscriptionResumed,
        T::SubscriptionTrialWillEnd,
        T::SubscriptionPendingUpdateApplied,
        T::SubscriptionPendingUpdateExpired,
        T::InvoiceCreated,
        T::InvoiceUpdated,
        T::InvoiceFinalized,
        T::InvoicePaid,
        T::InvoicePaymentSucceeded,
        T::InvoicePaymentFailed,
        T::InvoicePaymentActionRequired,
        T::InvoiceVoided,
        T::InvoiceMarkedUncollectible,
        T::ChargeRefunded,
        T::ChargeDisputeCreated,
        T::ChargeDisputeUpdated,
        T::ChargeDisputeClosed,
        T::PaymentIntentSucceeded,
        T::PaymentIntentPaymentFailed,
    ];

    /// The exact built-in name, or `None` (then `trigger` treats its argument as a file).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn name(self) -> &'static str {
        self.info().0
    }

    pub fn description(self) -> &'static str {
        self.info().1
    }

    fn info(self) -> (&'static str, &'static str) {
        match self {
            T::CheckoutSessionCompleted => ("checkout.session.completed", "A subscription Checkout paid by card: customer, subscription, first invoice paid, then the session."),
            T::CheckoutSessionAsyncPaymentSucceeded => ("checkout.session.async_payment_succeeded", "A one-time Checkout with a delayed payment method (unpaid at completion) that then succeeds."),
            T::CheckoutSessionAsyncPaymentFailed => ("checkout.session.async_payment_failed", "A one-time Checkout with a delayed payment method that then fails."),
            T::CheckoutSessionExpired => ("checkout.session.expired", "A one-time Checkout left open until it expired."),
            T::CustomerCreated => ("customer.created", "A customer with metadata.user_id."),
            T::CustomerUpdated => ("customer.updated", "The customer's email address changes."),
            T::CustomerDeleted => ("customer.deleted", "The customer is deleted."),
            T::SubscriptionCreated => ("customer.subscription.created", "A customer starts an active card subscription."),
            T::SubscriptionUpdated => ("customer.subscription.updated", "After a paid subscription Checkout, the quantity goes from 1 to 2."),
            T::SubscriptionDeleted => ("customer.subscription.deleted", "After a paid subscription Checkout, the subscription is canceled at once."),
            T::SubscriptionPaused => ("customer.subscription.paused", "After a paid subscription Checkout, the subscription is paused."),
            T::SubscriptionResumed => ("customer.subscription.resumed", "A paused subscription resumes."),
            T::SubscriptionTrialWillEnd => ("customer.subscription.trial_will_end", "A 14-day trial started through Checkout has 3 days left."),
            T::SubscriptionPendingUpdateApplied => ("customer.subscription.pending_update_applied", "A price change that waited for its payment is applied."),
            T::SubscriptionPendingUpdateExpired => ("customer.subscription.pending_update_expired", "A price change that waited for its payment expires unpaid."),
            T::InvoiceCreated => ("invoice.created", "A new subscription's first invoice (draft)."),
            T::InvoiceUpdated => ("invoice.updated", "The draft first invoice gets a description."),
            T::InvoiceFinalized => ("invoice.finalized", "The first invoice is finalized (open)."),
            T::InvoicePaid => ("invoice.paid", "The first invoice is paid."),
            T::InvoicePaymentSucceeded => ("invoice.payment_succeeded", "The first invoice's payment succeeds (after invoice.paid)."),
            T::InvoicePaymentFailed => ("invoice.payment_failed", "A month later the renewal's card payment fails: the subscription is past_due (grace)."),
            T::InvoicePaymentActionRequired => ("invoice.payment_action_required", "A subscription Checkout's first payment asks for 3-D Secure (no subscription yet)."),
            T::InvoiceVoided => ("invoice.voided", "A month later the open renewal invoice is voided."),
            T::InvoiceMarkedUncollectible => ("invoice.marked_uncollectible", "A month later the renewal fails with no retries left and is marked uncollectible."),
            T::ChargeRefunded => ("charge.refunded", "A one-time Checkout purchase is refunded in full."),
            T::ChargeDisputeCreated => ("charge.dispute.created", "A one-time purchase's charge is disputed (needs_response)."),
            T::ChargeDisputeUpdated => ("charge.dispute.updated", "Evidence is submitted for the dispute (under_review)."),
            T::ChargeDisputeClosed => ("charge.dispute.closed", "The dispute is closed (lost)."),
            T::PaymentIntentSucceeded => ("payment_intent.succeeded", "A one-time card payment succeeds."),
            T::PaymentIntentPaymentFailed => ("payment_intent.payment_failed", "A card is declined (4000 0000 0000 0002) in a subscription Checkout."),
        }
    }
}

/// What the built-in fixtures are filled with.
#[derive(Debug, Clone)]
pub struct FixtureOptions {
    /// `metadata.user_id` and `client_reference_id`; `user_<fresh tag>` when `None`.
    pub user_id: Option<String>,
    pub price: Price,
    /// Unix seconds: the last event of a sequence is created at about this time.
    pub now: i64,
    /// An existing customer (`cus_...`, e.g. the one `POST /api/checkout` created) instead
    /// of a fresh id: the only way a sequence reaches a linked user (docs/adr/0013).
    pub customer: Option<String>,
    /// An existing Checkout Session (`cs_...`) instead of a fresh id.
    pub session: Option<String>,
}

/// A fresh flow whose sequence will end near `options.now` after about `span` seconds; every
/// id is fresh except the customer and session the options name.
pub fn new_flow(options: &FixtureOptions, span: i64) -> Flow {
    let mut ids = Ids::fresh();
    if let Some(customer) = &options.customer {
        ids.customer.clone_from(customer);
    }
    if let Some(session) = &options.session {
        ids.session.clone_from(session);
    }
    let user = options
        .user_id
        .clone()
        .unwrap_or_else(|| format!("user_{}", &ids.tag[..12]));
    Flow::new(ids, &user, options.price.clone(), options.now - span)
}

/// The whole sequence for `t`, its events in order, ending with an event of type `t`.
pub fn build(t: TriggerType, options: &FixtureOptions) -> Flow {
    let mut f;
    match t {
        T::CustomerCreated | T::CustomerUpdated | T::CustomerDeleted => {
            f = new_flow(options, 120);
            f.customer_created();
            if t == T::CustomerUpdated {
                let object = f.customer_object(&format!("{}+billing@example.com", f.user_id));
                let previous = json!({"email": f.email()});
                f.at(f.clock + 60)
                    .emit("customer.updated", object, Some(previous));
            } else if t == T::CustomerDeleted {
                let object = f.customer_object(&f.email());
                f.at(f.clock + 60).emit("customer.deleted", object, None);
            }
        }
        T::CheckoutSessionCompleted
        | T::SubscriptionCreated
        | T::InvoiceCreated
        | T::InvoiceFinalized
        | T::InvoicePaid
        | T::InvoicePaymentSucceeded => {
            f = new_flow(options, 30);
            checkout_subscription(&mut f);
            truncate_after(&mut f, t.name());
        }
        T::InvoiceUpdated => {
            f = new_flow(options, 30);
            f.customer_created().subscription_created("active");
            f.invoice_created("subscription_create", f.price.unit_amount);
            f.invoice_event("invoice.updated", |i, _| {
                i.description = Some("Thanks for subscribing".to_owned());
            });
        }
        T::SubscriptionUpdated
        | T::SubscriptionDeleted
        | T::SubscriptionPaused
        | T::SubscriptionResumed
        | T::SubscriptionPendingUpdateApplied
        | T::SubscriptionPendingUpdateExpired => {
            f = new_flow(options, 3 * DAY);
            checkout_subscription(&mut f);
            f.at(options.now - 120);
            after_checkout(&mut f, t);
        }
        T::SubscriptionTrialWillEnd => {
            f = new_flow(options, 11 * DAY);
            f.customer_created();
            f.sub = Some(trial_sub(&f, f.clock));
            f.subscription_event("customer.subscription.created", None, |_| {});
            f.checkout(
                "checkout.session.completed",
                CheckoutMode::Subscription,
                "complete",
                "no_payment_required",
            );
            f.at(options.now);
            f.subscription_event("customer.subscription.trial_will_end", None, |_| {});
        }
        T::InvoicePaymentFailed | T::InvoiceVoided | T::InvoiceMarkedUncollectible => {
            f = new_flow(options, MONTH + 2 * 3600);
            renewal(&mut f);
            match t {
                T::InvoicePaymentFailed => past_due(&mut f, Some(3 * DAY)),
                T::InvoiceVoided => {
                    f.invoice_event("invoice.voided", |i, _| i.status = "void");
                }
                _ => {
                    past_due(&mut f, None);
                    f.invoice_event("invoice.marked_uncollectible", |i, _| {
                        i.status = "uncollectible";
                    });
                }
            }
        }
        T::InvoicePaymentActionRequired => {
            f = new_flow(options, 60);
            three_d_secure_challenge(&mut f);
        }
        T::CheckoutSessionAsyncPaymentSucceeded | T::CheckoutSessionAsyncPaymentFailed => {
            f = new_flow(options, 3 * DAY);
            f.customer_created();
            f.checkout(
                "checkout.session.completed",
                CheckoutMode::Payment,
                "complete",
                "unpaid",
            );
            f.at(options.now - 10);
            if t == T::CheckoutSessionAsyncPaymentSucceeded {
                f.payment_intent("payment_intent.succeeded", "succeeded", None);
                f.checkout(t.name(), CheckoutMode::Payment, "complete", "paid");
            } else {
                f.payment_intent(
                    "payment_intent.payment_failed",
                    "requires_payment_method",
                    Some("insufficient_funds"),
                );
                f.checkout(t.name(), CheckoutMode::Payment, "complete", "unpaid");
            }
        }
        T::CheckoutSessionExpired => {
            f = new_flow(options, DAY + 60);
            f.customer_created();
            f.at(options.now);
            f.checkout(t.name(), CheckoutMode::Payment, "expired", "unpaid");
        }
        T::PaymentIntentSucceeded => {
            f = new_flow(options, 30);
            f.customer_created();
            f.charge("charge.succeeded", 0);
            f.payment_intent(t.name(), "succeeded", None);
        }
        T::PaymentIntentPaymentFailed => {
            f = new_flow(options, 30);
            card_declined(&mut f);
        }
        T::ChargeRefunded
        | T::ChargeDisputeCreated
        | T::ChargeDisputeUpdated
        | T::ChargeDisputeClosed => {
            f = new_flow(options, 5 * DAY);
            one_time_purchase(&mut f);
            f.at(options.now - 60);
            match t {
                T::ChargeRefunded => {
                    let amount = f.price.unit_amount;
                    f.charge(t.name(), amount);
                }
                _ => {
                    f.dispute("charge.dispute.created", "needs_response");
                    if t != T::ChargeDisputeCreated {
                        f.dispute("charge.dispute.updated", "under_review");
                    }
                    if t == T::ChargeDisputeClosed {
                        f.dispute("charge.dispute.closed", "lost");
                    }
                }
            }
        }
    }
    f
}

/// Drops every event after the first one of type `event_type`.
fn truncate_after(f: &mut Flow, event_type: &str) {
    if let Some(i) = f.events.iter().position(|e| e["type"] == event_type) {
        f.events.truncate(i + 1);
    }
}

/// A subscription Checkout paid by card, in the order Stripe sends it: the subscription is
/// created once the payment succeeded (basil), its first invoice is paid, then the session
/// completes.
pub fn checkout_subscription(f: &mut Flow) {
    let amount = f.price.unit_amount;
    f.customer_created().subscription_created("active");
    f.invoice_created("subscription_create", amount)
        .invoice_finalized()
        .invoice_paid();
    f.checkout(
        "checkout.session.completed",
        CheckoutMode::Subscription,
        "complete",
        "paid",
    );
}

fn after_checkout(f: &mut Flow, t: TriggerType) {
    match t {
        T::SubscriptionUpdated => {
            f.subscription_event(t.name(), Some(json!({"quantity": 1})), |s| s.quantity = 2);
        }
        T::SubscriptionDeleted => {
            let now = f.clock;
            f.subscription_event(t.name(), None, |s| {
                s.status = "canceled";
                s.canceled_at = Some(now);
                s.ended_at = Some(now);
            });
        }
        T::SubscriptionPaused | T::SubscriptionResumed => {
            f.subscription_event(
                "customer.subscription.paused",
                Some(json!({"status": "active"})),
                |s| s.status = "paused",
            );
            if t == T::SubscriptionResumed {
                f.at(f.clock + 60);
                f.subscription_event(t.name(), Some(json!({"status": "paused"})), |s| {
                    s.status = "active";
                });
            }
        }
        _ => {
            // A price change with `payment_behavior=pending_if_incomplete`: Stripe records it as
            // `pending_update` until the proration invoice is paid (or the update expires).
            let upgrade = Price {
                id: format!("{}_upgrade", f.price.id),
                unit_amount: f.price.unit_amount * 2,
                ..f.price.clone()
            };
            let expires = f.clock + DAY;
            let pending = json!({"billing_cycle_anchor": null, "expires_at": expires,
                "subscription_items": [{"id": f.ids.item, "price": {"id": upgrade.id}, "quantity": 1}],
                "trial_end": null, "trial_from_plan": null});
            f.subscription_event(
                "customer.subscription.updated",
                Some(json!({"pending_update": null})),
                |s| s.pending_update = Some(pending.clone()),
            );
            if t == T::SubscriptionPendingUpdateApplied {
                f.subscription_event(t.name(), Some(json!({"pending_update": pending})), |s| {
                    s.pending_update = None;
                    s.price = upgrade;
                });
            } else {
                f.subscription_event(t.name(), Some(json!({"pending_update": pending})), |s| {
                    s.pending_update = None;
                });
            }
        }
    }
}

fn trial_sub(f: &Flow, start: i64) -> super::flow::Sub {
    super::flow::Sub {
        created: start,
        status: "trialing",
        period_start: start,
        price: f.price.clone(),
        quantity: 1,
        cancel_at_period_end: false,
        canceled_at: None,
        ended_at: None,
        latest_invoice: None,
        trial: Some((start, start + 14 * DAY)),
        pending_update: None,
    }
}

/// A paid subscription Checkout a month ago, then its renewal: the new period, the renewal
/// invoice created and, an hour later, finalized (Stripe's default draft period).
pub fn renewal(f: &mut Flow) {
    checkout_subscription(f);
    let renew = f.sub.as_ref().map_or(f.clock, |s| s.period_end());
    f.at(renew);
    let previous = f
        .sub
        .as_ref()
        .map(|s| json!({"latest_invoice": s.latest_invoice}));
    let amount = f.price.unit_amount;
    let next = f.next_invoice_id();
    f.subscription_event("customer.subscription.updated", previous, |s| {
        s.period_start = renew;
        s.latest_invoice = Some(next);
    });
    f.invoice_created("subscription_cycle", amount);
    f.at(renew + 3600).invoice_finalized();
}

/// The renewal's payment fails: the subscription turns past_due, then `invoice.payment_failed`
/// (with the next Smart Retry, or none).
pub fn past_due(f: &mut Flow, retry_in: Option<i64>) {
    f.subscription_event(
        "customer.subscription.updated",
        Some(json!({"status": "active"})),
        |s| s.status = "past_due",
    );
    f.invoice_payment_failed(retry_in);
}

/// Checkout with the 3-D Secure test card: the first payment asks for authentication before
/// any subscription exists (basil creates it only once the payment succeeded).
pub fn three_d_secure_challenge(f: &mut Flow) {
    let amount = f.price.unit_amount;
    f.customer_created();
    f.payment_intent("payment_intent.requires_action", "requires_action", None);
    // The invoice exists before the subscription does: it is what the challenge is for.
    f.new_invoice("subscription_create", amount);
    f.invoice_event("invoice.payment_action_required", |i, _| {
        i.status = "open";
        i.attempts = 1;
    });
}

/// The customer authenticated: the payment succeeds, the subscription is created active, the
/// invoice is paid and the session completes.
pub fn three_d_secure_completed(f: &mut Flow) {
    f.payment_intent("payment_intent.succeeded", "succeeded", None);
    f.subscription_created("active");
    f.invoice_paid();
    f.checkout(
        "checkout.session.completed",
        CheckoutMode::Subscription,
        "complete",
        "paid",
    );
}

/// A declined card in a subscription Checkout: the payment fails and no subscription is
/// created; the session stays open (and expires a day later).
pub fn card_declined(f: &mut Flow) {
    f.customer_created();
    f.payment_intent(
        "payment_intent.payment_failed",
        "requires_payment_method",
        Some("generic_decline"),
    );
}

/// A one-time Checkout purchase paid by card.
pub fn one_time_purchase(f: &mut Flow) {
    f.customer_created();
    f.charge("charge.succeeded", 0);
    f.payment_intent("payment_intent.succeeded", "succeeded", None);
    f.checkout(
        "checkout.session.completed",
        CheckoutMode::Payment,
        "complete",
        "paid",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> FixtureOptions {
        FixtureOptions {
            user_id: None,
            price: Price::default(),
            now: 1_800_000_000,
            customer: None,
            session: None,
        }
    }

    #[test]
    fn every_projected_type_except_our_own_snapshot_has_a_fixture() {
        let mut expected: Vec<&str> = ledger_projections::PROJECTED_TYPES
            .iter()
            .copied()
            .filter(|t| *t != ledger_projections::OBJECT_SNAPSHOT)
            .collect();
        let mut names: Vec<&str> = TriggerType::ALL.iter().map(|t| t.name()).collect();
        expected.sort_unstable();
        names.sort_unstable();
        assert_eq!(names, expected);
    }

    #[test]
    fn every_sequence_ends_with_its_type_shares_its_ids_and_moves_forward_in_time() {
        for t in TriggerType::ALL {
            let flow = build(t, &options());
            let last = flow.events.last().unwrap();
            assert_eq!(last["type"], t.name(), "{t:?}");
            let mut created = i64::MIN;
            let mut ids = std::collections::BTreeSet::new();
            for e in &flow.events {
                let c = e["created"].as_i64().unwrap();
                assert!(c > created, "{t:?}: created goes back at {}", e["type"]);
                assert!(c <= options().now, "{t:?}: {} is in the future", e["type"]);
                created = c;
                assert!(ids.insert(e["id"].as_str().unwrap().to_owned()));
                assert_eq!(e["api_version"], "2025-03-31.basil");
                let customer = &e["data"]["object"]["customer"];
                if !customer.is_null() {
                    assert_eq!(customer, &json!(flow.ids.customer), "{t:?}");
                }
            }
        }
    }

    #[test]
    fn a_given_customer_and_session_replace_only_those_ids() {
        let given = FixtureOptions {
            customer: Some("cus_fromCheckout".to_owned()),
            session: Some("cs_test_fromCheckout".to_owned()),
            ..options()
        };
        let flow = build(T::CheckoutSessionCompleted, &given);
        let fresh = build(T::CheckoutSessionCompleted, &options());
        assert_eq!(flow.ids.customer, "cus_fromCheckout");
        assert_eq!(flow.ids.session, "cs_test_fromCheckout");
        assert_ne!(flow.ids.subscription, fresh.ids.subscription);
        let session = &flow.events.last().unwrap()["data"]["object"];
        assert_eq!(session["id"], "cs_test_fromCheckout");
        assert_eq!(session["customer"], "cus_fromCheckout");
        assert_eq!(session["subscription"], json!(flow.ids.subscription));
    }

    #[test]
    fn two_builds_share_no_ids() {
        let a = build(T::InvoicePaid, &options());
        let b = build(T::InvoicePaid, &options());
        assert_ne!(a.ids.subscription, b.ids.subscription);
        assert_ne!(a.events[0]["id"], b.events[0]["id"]);
    }

    #[test]
    fn invoices_name_their_subscription_where_basil_puts_it() {
        let flow = build(T::InvoicePaid, &options());
        let paid = flow.events.last().unwrap();
        assert_eq!(
            paid["data"]["object"]["parent"]["subscription_details"]["subscription"],
            json!(flow.ids.subscription)
        );
        assert_eq!(paid["data"]["object"]["status"], "paid");
        let sub = flow
            .events
            .iter()
            .find(|e| e["type"] == "customer.subscription.created")
            .unwrap();
        let item = &sub["data"]["object"]["items"]["data"][0];
        assert!(
            item["current_period_end"].as_i64().unwrap()
                > item["current_period_start"].as_i64().unwrap()
        );
    }
}
