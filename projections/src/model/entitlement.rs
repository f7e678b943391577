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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entitlement {
    pub access: Access,
    /// Stable snake_case reason: `subscription_active`, `trialing`, `past_due_grace`,
    /// `past_due_grace_expired`, `canceled`, `incomplete`, `incomplete_expired`, `unpaid`,
    /// `paused`, `no_subscription`.
    pub reason: String,
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
            reason: "no_subscription".to_owned(),
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
    let make = |access, reason: &str, until| Entitlement {
        access,
        reason: reason.to_owned(),
        until,
        subscription_id: Some(view.id.clone()),
    };
    Some(match view.status.as_str() {
        // A scheduled cancellation (`cancel_at`) ends access before the period does.
        "active" => make(
            Access::Granted,
            "subscription_active",
            match (view.current_period_end, view.cancel_at) {
                (Some(end), Some(cancel)) => Some(end.min(cancel)),
                (end, cancel) => end.or(cancel),
            },
        ),
        "trialing" => make(
            Access::Granted,
            "trialing",
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
                    make(Access::Grace, "past_due_grace", Some(start + grace))
                }
                Some(start) => make(
                    Access::Denied,
                    "past_due_grace_expired",
                    Some(start + grace),
                ),
                // No failure seen yet (events still arriving): grace from the period end.
                None => {
                    let until = view.current_period_end.map(|end| end + grace);
                    if until.is_none_or(|u| now < u) {
                        make(Access::Grace, "past_due_grace", until)
                    } else {
                        make(Access::Denied, "past_due_grace_expired", until)
                    }
                }
            }
        }
        other => {
            let reason = match other {
                "canceled" | "incomplete" | "incomplete_expired" | "unpaid" | "paused" => other,
                _ => "unknown_status",
            };
            make(Access::Denied, reason, None)
        }
    })
}
