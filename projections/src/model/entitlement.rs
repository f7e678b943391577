//! Access decisions: "is this user paid?". Evaluated at read time with `now` passed in, since
//! grace periods end with the clock, not with an event.

use serde::{Deserialize, Serialize};

use super::objects::{InvoiceState, SubscriptionState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Denied,
    Grace,
    Granted,
}

/// Why the access is what it is; serialised as the stable snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    SubscriptionActive,
    Trialing,
    PastDueGrace,
    PastDueGraceExpired,
    Canceled,
    Incomplete,
    IncompleteExpired,
    Unpaid,
    Paused,
    /// A subscription status this version does not know (Stripe added one): no access.
    UnknownStatus,
    NoSubscription,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SubscriptionActive => "subscription_active",
            Reason::Trialing => "trialing",
            Reason::PastDueGrace => "past_due_grace",
            Reason::PastDueGraceExpired => "past_due_grace_expired",
            Reason::Canceled => "canceled",
            Reason::Incomplete => "incomplete",
            Reason::IncompleteExpired => "incomplete_expired",
            Reason::Unpaid => "unpaid",
            Reason::Paused => "paused",
            Reason::UnknownStatus => "unknown_status",
            Reason::NoSubscription => "no_subscription",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entitlement {
    pub access: Access,
    pub reason: Reason,
    /// Unix seconds until which the access holds, when known.
    pub until: Option<i64>,
    pub subscription_id: Option<String>,
}

/// The best access any of the user's subscriptions gives. `invoices` should hold the
/// subscriptions' invoices (at least their latest ones), for the start of a dunning cycle.
pub fn entitlement(
    subscriptions: &[SubscriptionState],
    invoices: &[InvoiceState],
    now: i64,
    grace_period_secs: i64,
) -> Entitlement {
    subscriptions
        .iter()
        .filter_map(|s| evaluate(s, invoices, now, grace_period_secs))
        // Best access, then the longest-lasting, then a stable id order.
        .max_by(|a, b| {
            (a.access, a.until.unwrap_or(i64::MAX), &b.subscription_id).cmp(&(
                b.access,
                b.until.unwrap_or(i64::MAX),
                &a.subscription_id,
            ))
        })
        .unwrap_or(Entitlement {
            access: Access::Denied,
            reason: Reason::NoSubscription,
            until: None,
            subscription_id: None,
        })
}

fn evaluate(
    s: &SubscriptionState,
    invoices: &[InvoiceState],
    now: i64,
    grace: i64,
) -> Option<Entitlement> {
    let view = s.view()?;
    let make = |access, reason, until| Entitlement {
        access,
        reason,
        until,
        subscription_id: Some(view.id.clone()),
    };
    Some(match view.status.as_str() {
        // A scheduled cancellation (`cancel_at`) ends access before the period does.
        "active" => make(
            Access::Granted,
            Reason::SubscriptionActive,
            match (view.current_period_end, view.cancel_at) {
                (Some(end), Some(cancel)) => Some(end.min(cancel)),
                (end, cancel) => end.or(cancel),
            },
        ),
        "trialing" => make(
            Access::Granted,
            Reason::Trialing,
            view.trial_end.or(view.current_period_end),
        ),
        "past_due" => {
            // The dunning cycle starts at the first failed payment of the invoice that is now
            // unpaid: the latest invoice, or else the oldest failure among this subscription's
            // unpaid invoices.
            let failed_since = view
                .latest_invoice
                .as_deref()
                .and_then(|id| invoices.iter().find(|i| i.id == id))
                .and_then(|i| i.first_failed_at)
                .or_else(|| {
                    invoices
                        .iter()
                        .filter(|i| {
                            i.view().is_some_and(|v| {
                                v.subscription.as_deref() == Some(&view.id)
                                    && !matches!(v.status.as_deref(), Some("paid" | "void"))
                            })
                        })
                        .filter_map(|i| i.first_failed_at)
                        .min()
                });
            match failed_since {
                Some(start) if now < start + grace => {
                    make(Access::Grace, Reason::PastDueGrace, Some(start + grace))
                }
                Some(start) => make(
                    Access::Denied,
                    Reason::PastDueGraceExpired,
                    Some(start + grace),
                ),
                // No failure seen yet (events still arriving): grace from the period end.
                None => {
                    let until = view.current_period_end.map(|end| end + grace);
                    if until.is_none_or(|u| now < u) {
                        make(Access::Grace, Reason::PastDueGrace, until)
                    } else {
                        make(Access::Denied, Reason::PastDueGraceExpired, until)
                    }
                }
            }
        }
        other => {
            let reason = match other {
                "canceled" => Reason::Canceled,
                "incomplete" => Reason::Incomplete,
                "incomplete_expired" => Reason::IncompleteExpired,
                "unpaid" => Reason::Unpaid,
                "paused" => Reason::Paused,
                _ => Reason::UnknownStatus,
            };
            make(Access::Denied, reason, None)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::Reason;

    #[test]
    fn every_reason_serialises_as_its_stable_name() {
        use Reason::*;
        for r in [
            SubscriptionActive,
            Trialing,
            PastDueGrace,
            PastDueGraceExpired,
            Canceled,
            Incomplete,
            IncompleteExpired,
            Unpaid,
            Paused,
            UnknownStatus,
            NoSubscription,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }
}
