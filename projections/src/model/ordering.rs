//! The ordering rule: which of two snapshots of one object is the newer.
//!
//! Stripe delivers at least once and in no particular order, and its `created` has one-second
//! resolution, so neither arrival order nor timestamps alone can say which rendering of an
//! object is current. Each snapshot an event carries therefore gets a [`Version`], and the
//! snapshot with the greater version wins. Versions compare field by field, in this order:
//!
//! 1. `absorb`: the lifecycle stage, for stages that are never left. A terminal state outranks
//!    everything before it *whatever its timestamp*, so a late (or even wrongly stamped) older
//!    update never resurrects it:
//!    - subscription: `canceled` / `incomplete_expired` (or any `customer.subscription.deleted`);
//!    - customer: deleted;
//!    - invoice: draft < open < uncollectible < paid | void;
//!    - Checkout Session: open < complete | expired;
//!    - dispute: open statuses < closed (`won`, `lost`, `warning_closed`).
//! 2. `created`: Stripe's event time (unix seconds), the order Stripe itself saw.
//! 3. `progress`: an object fact that only grows within a lifecycle stage, which orders snapshots
//!    of the same second: a subscription's latest item `current_period_end` (renewals only move
//!    it forward), an invoice's `attempt_count`, a Checkout Session's payment status.
//! 4. `stage`: a status that is never returned to: a subscription leaves `incomplete` for good.
//! 5. `type_rank`: within one second, `*.created` < other types < `*.deleted`.
//! 6. `event_id`: a tie-break that is arbitrary but depends only on the event, never on arrival.
//!
//! Snapshots that tie on 1–5 but carry different content are genuine conflicts (e.g. two
//! `customer.subscription.updated` of the same second, one past_due and one active). The
//! tie-break still picks one deterministically, and the register keeps every snapshot of the
//! top level so that the conflict is reported (`Register::conflicts`) whatever the arrival order;
//! the shell resolves it by appending a re-fetch of the object (`ledger.object_snapshot`).
//!
//! Monotone fields that do not depend on a snapshot winner (first failure time, paid time,
//! refunded) are separate lattices (min, max, or) joined independently of this rule.
//!
//! Caveat on `progress`: a yearly-to-monthly downgrade can move a period end backwards. That is
//! harmless, because `progress` only decides between snapshots of the same second.

use serde::{Deserialize, Serialize};

/// The rank of one snapshot under the ordering rule; greater wins. Field order is the rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub absorb: u8,
    pub created: i64,
    pub progress: i64,
    // Defaulted so that states stored before this field existed still deserialise.
    #[serde(default)]
    pub stage: u8,
    pub type_rank: u8,
    pub event_id: String,
}

impl Version {
    /// Snapshots on one level compete; anything on a lower level is history and is dropped.
    pub(crate) fn level(&self) -> (u8, i64) {
        (self.absorb, self.created)
    }

    /// Everything but the tie-break: equal ranks with different content are conflicts.
    pub(crate) fn rank(&self) -> (u8, i64, i64, u8, u8) {
        (
            self.absorb,
            self.created,
            self.progress,
            self.stage,
            self.type_rank,
        )
    }
}

/// What decoding one snapshot says about its place in the object's lifecycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lifecycle {
    pub absorb: u8,
    pub progress: i64,
    pub stage: u8,
}

/// The version of a snapshot carried by an event.
pub fn version(event_id: &str, event_type: &str, created: i64, lifecycle: Lifecycle) -> Version {
    Version {
        absorb: lifecycle.absorb,
        created,
        progress: lifecycle.progress,
        stage: lifecycle.stage,
        type_rank: type_rank(event_type),
        event_id: event_id.to_owned(),
    }
}

/// Stripe emits `*.created` first and `*.deleted` last for an object, so within one second
/// their order is known even when their content cannot tell.
pub fn type_rank(event_type: &str) -> u8 {
    if event_type.ends_with(".created") {
        0
    } else if event_type.ends_with(".deleted") {
        2
    } else {
        1
    }
}

/// Subscription statuses: `canceled` and `incomplete_expired` are terminal; `incomplete` is only
/// ever the first status.
pub fn subscription(status: &str, deleted_event: bool, period_end: Option<i64>) -> Lifecycle {
    let terminal = deleted_event || matches!(status, "canceled" | "incomplete_expired");
    Lifecycle {
        absorb: u8::from(terminal),
        progress: period_end.unwrap_or(0),
        stage: u8::from(status != "incomplete"),
    }
}

/// Invoice statuses only move forward: draft → open → (uncollectible →) paid | void.
pub fn invoice(status: Option<&str>, attempt_count: Option<i64>) -> Lifecycle {
    let absorb = match status {
        Some("draft") | None => 0,
        Some("uncollectible") => 2,
        Some("paid") | Some("void") => 3,
        // `open`, and any status a later API version adds, sits between draft and the ends.
        Some(_) => 1,
    };
    Lifecycle {
        absorb,
        progress: attempt_count.unwrap_or(0),
        stage: 0,
    }
}

/// A deleted customer never comes back (Stripe answers later requests with a stub).
pub fn customer(deleted: bool) -> Lifecycle {
    Lifecycle {
        absorb: u8::from(deleted),
        ..Lifecycle::default()
    }
}

/// A Checkout Session leaves `open` once, for `complete` or `expired`; its payment status then
/// only moves from `unpaid` to `paid` (delayed payment methods).
pub fn checkout_session(status: Option<&str>, payment_status: Option<&str>) -> Lifecycle {
    Lifecycle {
        absorb: u8::from(matches!(status, Some("complete") | Some("expired"))),
        progress: i64::from(matches!(
            payment_status,
            Some("paid") | Some("no_payment_required")
        )),
        stage: 0,
    }
}

/// A closed dispute stays closed.
pub fn dispute(status: &str) -> Lifecycle {
    Lifecycle {
        absorb: u8::from(matches!(status, "won" | "lost" | "warning_closed")),
        ..Lifecycle::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(l: Lifecycle, created: i64, event_type: &str, id: &str) -> Version {
        version(id, event_type, created, l)
    }

    #[test]
    fn a_terminal_state_outranks_any_later_timestamp() {
        let canceled = v(
            subscription("canceled", true, Some(10)),
            100,
            "customer.subscription.deleted",
            "evt_a",
        );
        let later_update = v(
            subscription("active", false, Some(99)),
            500,
            "customer.subscription.updated",
            "evt_b",
        );
        assert!(canceled > later_update);
    }

    #[test]
    fn within_one_second_the_later_period_end_wins_before_the_event_id_is_consulted() {
        let renewed = v(
            subscription("active", false, Some(200)),
            100,
            "customer.subscription.updated",
            "evt_a",
        );
        let old = v(
            subscription("active", false, Some(100)),
            100,
            "customer.subscription.updated",
            "evt_z",
        );
        assert!(renewed > old);
    }

    #[test]
    fn within_one_second_a_subscription_that_left_incomplete_wins() {
        let active = v(
            subscription("active", false, Some(100)),
            100,
            "customer.subscription.updated",
            "evt_a",
        );
        let incomplete = v(
            subscription("incomplete", false, Some(100)),
            100,
            "customer.subscription.updated",
            "evt_z",
        );
        assert!(active > incomplete);
    }

    #[test]
    fn within_one_second_created_precedes_updated_precedes_deleted() {
        assert!(type_rank("customer.created") < type_rank("customer.updated"));
        assert!(type_rank("customer.updated") < type_rank("customer.deleted"));
        assert_eq!(
            type_rank("invoice.paid"),
            type_rank("ledger.object_snapshot")
        );
    }

    #[test]
    fn invoice_statuses_only_move_forward() {
        let rank = |s| invoice(Some(s), None).absorb;
        assert!(rank("draft") < rank("open"));
        assert!(rank("open") < rank("uncollectible"));
        assert!(rank("uncollectible") < rank("paid"));
        assert_eq!(rank("paid"), rank("void"));
        assert_eq!(invoice(None, None).absorb, rank("draft"));
    }

    #[test]
    fn a_version_stored_before_the_stage_field_existed_still_deserialises() {
        let old = r#"{"absorb":1,"created":5,"progress":7,"type_rank":2,"event_id":"evt_1"}"#;
        let v: Version = serde_json::from_str(old).unwrap();
        assert_eq!(v.stage, 0);
        assert_eq!(v.event_id, "evt_1");
    }
}
