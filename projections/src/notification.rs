//! Which notifications an event causes, and the key that makes each one happen once.
//!
//! A notification is derived from one event and the facts decoded from it, never from the
//! read models' state before or after: the set of keys produced by a set of events is then the
//! same whatever order Stripe delivered them in, and a duplicate or replayed event produces
//! only keys that already exist. The outbox stores one row per key, so "one email per cause"
//! is a unique constraint rather than a check-then-insert.

use serde::{Deserialize, Serialize};

use crate::model::decode::{Fact, LoggedEvent};

/// Why a customer is being written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// The customer's first subscription became active or trialing.
    Welcome,
    /// A payment attempt on an invoice failed.
    PaymentFailed,
    /// A subscription ended (or went unpaid or paused), so the access it gave ends.
    AccessEnded,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Welcome => "welcome",
            NotificationKind::PaymentFailed => "payment_failed",
            NotificationKind::AccessEnded => "access_ended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "welcome" => NotificationKind::Welcome,
            "payment_failed" => NotificationKind::PaymentFailed,
            "access_ended" => NotificationKind::AccessEnded,
            _ => return None,
        })
    }
}

/// What the email says, beyond who it is for. Amounts are integer minor units.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosted_invoice_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_due: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_payment_attempt: Option<i64>,
}

/// One notification an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub kind: NotificationKind,
    /// One row, and so one email, per key.
    pub dedupe_key: String,
    /// The Stripe customer written to; the address is looked up when the email is sent,
    /// because the customer's own event may arrive after this one.
    pub customer: String,
    pub details: NotificationDetails,
}

/// Subscription statuses that give access (the welcome is for the first of them).
const ACCESS_STATUSES: [&str; 2] = ["active", "trialing"];

/// Statuses that take access away from a subscription that may have had it: ended, dunning
/// exhausted, or paused (a trial that ended without a payment method). `incomplete_expired`
/// never gave access, and `past_due` still does (the grace period).
const ACCESS_ENDING_STATUSES: [&str; 3] = ["canceled", "unpaid", "paused"];

/// The notifications `event` causes, given the facts `decode` produced for it.
pub fn notifications(event: &LoggedEvent<'_>, facts: &[Fact]) -> Vec<Notification> {
    let mut out = Vec::new();
    for fact in facts {
        match fact {
            Fact::Subscription(state) => {
                let Some(view) = state.snapshot.as_ref().map(|r| r.value()) else {
                    continue;
                };
                let Some(customer) = view.customer.clone() else {
                    continue;
                };
                let details = NotificationDetails {
                    subscription: Some(view.id.clone()),
                    ..NotificationDetails::default()
                };
                if ACCESS_STATUSES.contains(&view.status.as_str()) {
                    // Keyed by customer, not subscription: only the first one welcomes.
                    out.push(Notification {
                        kind: NotificationKind::Welcome,
                        dedupe_key: format!("welcome:{customer}"),
                        customer,
                        details,
                    });
                } else if ACCESS_ENDING_STATUSES.contains(&view.status.as_str()) {
                    out.push(Notification {
                        kind: NotificationKind::AccessEnded,
                        dedupe_key: format!("access_ended:{}", view.id),
                        customer,
                        details,
                    });
                }
            }
            Fact::Invoice(state) if event.event_type == "invoice.payment_failed" => {
                let Some(view) = state.snapshot.as_ref().map(|r| r.value()) else {
                    continue;
                };
                let Some(customer) = view.customer.clone() else {
                    continue;
                };
                // Each failed attempt of a dunning cycle is its own cause; Stripe numbers
                // them. Without the number, the event itself is the cause.
                let attempt = view
                    .attempt_count
                    .map_or_else(|| event.event_id.to_owned(), |n| n.to_string());
                out.push(Notification {
                    kind: NotificationKind::PaymentFailed,
                    dedupe_key: format!("payment_failed:{}:{attempt}", view.id),
                    customer,
                    details: NotificationDetails {
                        subscription: view.subscription.clone(),
                        invoice: Some(view.id.clone()),
                        hosted_invoice_url: view.hosted_invoice_url.clone(),
                        amount_due: view.amount_due,
                        currency: view.currency.clone(),
                        attempt_count: view.attempt_count,
                        next_payment_attempt: view.next_payment_attempt,
                    },
                });
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::decode;

    fn derive(event_id: &str, event_type: &str, object: Value) -> Vec<Notification> {
        let payload = json!({"id": event_id, "type": event_type, "data": {"object": object}});
        let event = LoggedEvent {
            event_id,
            event_type,
            created: 1_700_000_000,
            payload: &payload,
            origin: crate::Origin::Stripe,
        };
        let facts = decode(&event).expect("decodes");
        notifications(&event, &facts)
    }

    fn subscription(status: &str) -> Value {
        json!({"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": status,
               "items": {"data": []}})
    }

    #[test]
    fn an_active_subscription_welcomes_its_customer_once_per_customer() {
        let n = derive(
            "evt_1",
            "customer.subscription.updated",
            subscription("active"),
        );
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].kind, NotificationKind::Welcome);
        assert_eq!(n[0].dedupe_key, "welcome:cus_1");
        assert_eq!(n[0].customer, "cus_1");
        let trial = derive(
            "evt_2",
            "customer.subscription.created",
            json!({"id": "sub_2", "object": "subscription", "customer": "cus_1",
                   "status": "trialing", "items": {"data": []}}),
        );
        assert_eq!(trial[0].dedupe_key, n[0].dedupe_key);
    }

    #[test]
    fn an_incomplete_or_past_due_subscription_causes_nothing() {
        for status in ["incomplete", "past_due", "incomplete_expired"] {
            let n = derive(
                "evt_1",
                "customer.subscription.updated",
                subscription(status),
            );
            assert!(n.is_empty(), "{status}: {n:?}");
        }
    }

    #[test]
    fn a_canceled_subscription_ends_access_once_per_subscription() {
        let n = derive(
            "evt_9",
            "customer.subscription.deleted",
            subscription("canceled"),
        );
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].kind, NotificationKind::AccessEnded);
        assert_eq!(n[0].dedupe_key, "access_ended:sub_1");
        assert_eq!(n[0].details.subscription.as_deref(), Some("sub_1"));
        for status in ["unpaid", "paused"] {
            let n = derive(
                "evt_8",
                "customer.subscription.updated",
                subscription(status),
            );
            assert_eq!(n.len(), 1, "{status}");
            assert_eq!(n[0].dedupe_key, "access_ended:sub_1");
        }
    }

    #[test]
    fn a_failed_payment_is_one_notification_per_attempt_with_the_invoice_link() {
        let invoice = |attempt: i64| {
            json!({"id": "in_1", "object": "invoice", "customer": "cus_1", "status": "open",
                   "amount_due": 1999, "currency": "eur", "attempt_count": attempt,
                   "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1/in_1"})
        };
        let first = derive("evt_a", "invoice.payment_failed", invoice(1));
        let second = derive("evt_b", "invoice.payment_failed", invoice(2));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].kind, NotificationKind::PaymentFailed);
        assert_eq!(first[0].dedupe_key, "payment_failed:in_1:1");
        assert_eq!(second[0].dedupe_key, "payment_failed:in_1:2");
        assert_eq!(first[0].details.amount_due, Some(1999));
        assert_eq!(first[0].details.currency.as_deref(), Some("eur"));
        assert_eq!(
            first[0].details.hosted_invoice_url.as_deref(),
            Some("https://invoice.stripe.com/i/acct_1/in_1")
        );
        // The same invoice seen by any other event type is not a failure.
        assert!(derive("evt_c", "invoice.updated", invoice(1)).is_empty());
    }

    #[test]
    fn unknown_event_types_cause_nothing() {
        assert!(derive("evt_1", "product.created", json!({"id": "prod_1"})).is_empty());
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in [
            NotificationKind::Welcome,
            NotificationKind::PaymentFailed,
            NotificationKind::AccessEnded,
        ] {
            assert_eq!(NotificationKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(NotificationKind::parse("other"), None);
    }
}
