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

/// Where a grace period starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum GraceStart {
    /// The first failed payment of an unpaid invoice (`event_id`: the failure, when known).
    FirstFailedPayment {
        invoice: String,
        at: i64,
        event_id: Option<String>,
    },
    /// No failure seen yet (events still arriving): the end of the paid period.
    PeriodEnd { at: i64 },
    /// Neither is known: grace without an end until an event says more.
    Unknown,
}

/// The rule that decided one subscription's access; [`Rule::sentence`] renders it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rule {
    /// `active`: access through the period end, or an earlier scheduled cancellation.
    Active {
        period_end: Option<i64>,
        cancel_at: Option<i64>,
    },
    Trialing {
        trial_end: Option<i64>,
    },
    /// `past_due` (`derived`: by the failed-payment rule) and `now` is before the grace ends.
    PastDueWithinGrace {
        derived: bool,
        grace: GraceStart,
        grace_secs: i64,
    },
    PastDueGraceExpired {
        derived: bool,
        grace: GraceStart,
        grace_secs: i64,
    },
    /// A status that gives no access (`canceled`, `unpaid`, ...).
    NoAccessStatus {
        status: String,
    },
    NoSubscription,
}

/// One subscription's access and the rule behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub entitlement: Entitlement,
    pub rule: Rule,
}

/// The best access any of the user's subscriptions gives. `invoices` should hold the
/// subscriptions' invoices (at least their latest ones), for the start of a dunning cycle.
pub fn entitlement(
    subscriptions: &[SubscriptionState],
    invoices: &[InvoiceState],
    now: i64,
    grace_period_secs: i64,
) -> Entitlement {
    decide(subscriptions, invoices, now, grace_period_secs).entitlement
}

/// [`entitlement`] with the rule that produced it.
pub fn decide(
    subscriptions: &[SubscriptionState],
    invoices: &[InvoiceState],
    now: i64,
    grace_period_secs: i64,
) -> Evaluation {
    subscriptions
        .iter()
        .filter_map(|s| evaluate(s, invoices, now, grace_period_secs))
        // Best access, then the longest-lasting, then a stable id order.
        .max_by(|a, b| {
            let (a, b) = (&a.entitlement, &b.entitlement);
            (a.access, a.until.unwrap_or(i64::MAX), &b.subscription_id).cmp(&(
                b.access,
                b.until.unwrap_or(i64::MAX),
                &a.subscription_id,
            ))
        })
        .unwrap_or(Evaluation {
            entitlement: Entitlement {
                access: Access::Denied,
                reason: Reason::NoSubscription,
                until: None,
                subscription_id: None,
            },
            rule: Rule::NoSubscription,
        })
}

/// One subscription's access; `None` while only a link to it is known.
pub fn evaluate(
    s: &SubscriptionState,
    invoices: &[InvoiceState],
    now: i64,
    grace: i64,
) -> Option<Evaluation> {
    let view = s.view()?;
    let make = |access, reason, until, rule| Evaluation {
        entitlement: Entitlement {
            access,
            reason,
            until,
            subscription_id: Some(view.id.clone()),
        },
        rule,
    };
    let status = s.status().unwrap_or(view.status.as_str());
    Some(match status {
        // A scheduled cancellation (`cancel_at`) ends access before the period does.
        "active" => make(
            Access::Granted,
            Reason::SubscriptionActive,
            match (view.current_period_end, view.cancel_at) {
                (Some(end), Some(cancel)) => Some(end.min(cancel)),
                (end, cancel) => end.or(cancel),
            },
            Rule::Active {
                period_end: view.current_period_end,
                cancel_at: view.cancel_at,
            },
        ),
        "trialing" => make(
            Access::Granted,
            Reason::Trialing,
            view.trial_end.or(view.current_period_end),
            Rule::Trialing {
                trial_end: view.trial_end,
            },
        ),
        "past_due" => {
            let derived = s.derived_past_due();
            let start = match &derived {
                Some(d) => GraceStart::FirstFailedPayment {
                    invoice: d.invoice.clone(),
                    at: d.first_failure.created,
                    event_id: Some(d.first_failure.event_id.clone()),
                },
                None => grace_start(s, invoices),
            };
            let until = match &start {
                GraceStart::FirstFailedPayment { at, .. } | GraceStart::PeriodEnd { at } => {
                    Some(at + grace)
                }
                GraceStart::Unknown => None,
            };
            let (derived, grace_secs) = (derived.is_some(), grace);
            if until.is_none_or(|u| now < u) {
                let rule = Rule::PastDueWithinGrace {
                    derived,
                    grace: start,
                    grace_secs,
                };
                make(Access::Grace, Reason::PastDueGrace, until, rule)
            } else {
                let rule = Rule::PastDueGraceExpired {
                    derived,
                    grace: start,
                    grace_secs,
                };
                make(Access::Denied, Reason::PastDueGraceExpired, until, rule)
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
            let rule = Rule::NoAccessStatus {
                status: other.to_owned(),
            };
            make(Access::Denied, reason, None, rule)
        }
    })
}

/// The dunning cycle of a `past_due` snapshot starts at the first failed payment of the invoice
/// that is now unpaid: the latest invoice, or else the oldest failure among this subscription's
/// unpaid invoices; without any failure seen, at the period end.
fn grace_start(s: &SubscriptionState, invoices: &[InvoiceState]) -> GraceStart {
    let Some(view) = s.view() else {
        return GraceStart::Unknown;
    };
    let latest = view
        .latest_invoice
        .as_deref()
        .and_then(|id| invoices.iter().find(|i| i.id == id))
        .filter(|i| i.first_failed_at.is_some());
    let failed = latest.or_else(|| {
        invoices
            .iter()
            .filter(|i| {
                i.view().is_some_and(|v| {
                    v.subscription.as_deref() == Some(&view.id)
                        && !matches!(v.status.as_deref(), Some("paid" | "void"))
                })
            })
            .filter(|i| i.first_failed_at.is_some())
            .min_by_key(|i| (i.first_failed_at, i.id.as_str()))
    });
    match (failed, view.current_period_end) {
        (Some(i), _) => GraceStart::FirstFailedPayment {
            invoice: i.id.clone(),
            at: i.first_failed_at.expect("filtered on it"),
            event_id: i.first_failure.as_ref().map(|e| e.event_id.clone()),
        },
        (None, Some(end)) => GraceStart::PeriodEnd { at: end },
        (None, None) => GraceStart::Unknown,
    }
}

impl Rule {
    /// The rule as one sentence, e.g. `past_due within grace: 7 days from the first failed
    /// payment on in_1 (2026-03-01T10:00:00Z), until 2026-03-08T10:00:00Z`.
    pub fn sentence(&self) -> String {
        let t = |secs: Option<i64>| secs.map_or_else(|| "no known end".to_owned(), rfc3339);
        match self {
            Rule::Active {
                period_end,
                cancel_at: Some(cancel),
            } if period_end.is_none_or(|end| *cancel < end) => {
                format!(
                    "active: access until the scheduled cancellation at {}",
                    t(Some(*cancel))
                )
            }
            Rule::Active { period_end, .. } => {
                format!("active: access through the period end, {}", t(*period_end))
            }
            Rule::Trialing { trial_end } => format!("trialing: access until {}", t(*trial_end)),
            Rule::PastDueWithinGrace {
                derived,
                grace,
                grace_secs,
            } => format!(
                "{} within grace: {}",
                past_due(*derived),
                grace_sentence(grace, *grace_secs)
            ),
            Rule::PastDueGraceExpired {
                derived,
                grace,
                grace_secs,
            } => format!(
                "{} and the grace period is over: {}",
                past_due(*derived),
                grace_sentence(grace, *grace_secs)
            ),
            Rule::NoAccessStatus { status } => format!("{status}: this status gives no access"),
            Rule::NoSubscription => {
                "no subscription: no customer linked to this user has one".to_owned()
            }
        }
    }
}

fn past_due(derived: bool) -> &'static str {
    if derived {
        "past_due (derived from a failed renewal payment newer than the subscription's snapshot)"
    } else {
        "past_due"
    }
}

fn grace_sentence(grace: &GraceStart, secs: i64) -> String {
    let length = if secs % 86_400 == 0 {
        let days = secs / 86_400;
        format!("{days} day{}", if days == 1 { "" } else { "s" })
    } else {
        format!("{secs} seconds")
    };
    match grace {
        GraceStart::FirstFailedPayment { invoice, at, .. } => format!(
            "{length} from the first failed payment on {invoice} ({}), until {}",
            rfc3339(*at),
            rfc3339(at + secs)
        ),
        GraceStart::PeriodEnd { at } => format!(
            "{length} from the period end ({}; no failed payment seen yet), until {}",
            rfc3339(*at),
            rfc3339(at + secs)
        ),
        GraceStart::Unknown => format!("{length}, from a start no event has told yet"),
    }
}

/// Unix seconds as RFC 3339 UTC (`1970-01-01T00:00:00Z`), without a date crate: the civil-date
/// conversion of Howard Hinnant's `civil_from_days`.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
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

    #[test]
    fn times_render_as_rfc3339_in_utc() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_763_800_000), "2025-11-22T08:26:40Z");
        assert_eq!(super::rfc3339(-1), "1969-12-31T23:59:59Z");
    }
}
