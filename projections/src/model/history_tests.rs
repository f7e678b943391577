//! History, as-of and explain, checked as properties over the generated lifecycles of
//! `tests.rs` in shuffled delivery orders; and the failed-payment rule.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::tests::{delivery, event, fold, invoice, lifecycle, step, subscription, to_pre_basil};
use crate::{
    explain, fields, fold_as_of, history, history_page, replay, Access, Cut, Effect, Fact,
    LogEntry, LoggedEvent, Origin, Projection, Reason, Rule,
};

const T0: i64 = 1_763_800_000;
const GRACE: i64 = 7 * 86_400;

/// The delivered events as log entries: positions in delivery order from 1, received one
/// second apart. A duplicate delivery is logged once (the log's unique event id).
fn log<'a>(delivered: &[&'a Value]) -> Vec<LogEntry<'a>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for e in delivered {
        let id = e["id"].as_str().unwrap();
        if !seen.insert(id) {
            continue;
        }
        let position = out.len() as i64 + 1;
        out.push(LogEntry {
            position,
            received_at: (T0 + position) * 1_000_000,
            event: LoggedEvent {
                event_id: id,
                event_type: e["type"].as_str().unwrap(),
                created: e["created"].as_i64().unwrap(),
                payload: e,
                origin: if id.starts_with("svc_") {
                    Origin::Service
                } else {
                    Origin::Stripe
                },
            },
        });
    }
    out
}

fn all_objects(p: &Projection) -> Vec<Fact> {
    (p.customers.values().cloned().map(Fact::Customer))
        .chain(p.subscriptions.values().cloned().map(Fact::Subscription))
        .chain(p.invoices.values().cloned().map(Fact::Invoice))
        .chain(p.orders.values().cloned().map(Fact::Order))
        .chain(p.payments.values().cloned().map(Fact::Payment))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn as_of_every_position_equals_a_fold_of_that_prefix_and_the_history_state_there(
        steps in prop::collection::vec(step(), 0..12),
        gaps in prop::collection::vec(0u8..3, 12),
        seed in any::<u64>(),
    ) {
        let events = lifecycle(&steps, &gaps);
        let delivered = delivery(&events, seed);
        let entries = log(&delivered);
        for p in 0..=entries.len() {
            let (as_of, last) = fold_as_of(&entries, Some(&Cut::Position(p as i64)));
            let prefix: Vec<&Value> = entries[..p].iter().map(|e| e.event.payload).collect();
            prop_assert_eq!(&as_of, &fold(&prefix));
            prop_assert_eq!(last, (p > 0).then_some(p as i64));
            // The same cut stated as a receive time.
            let received = Cut::ReceivedAt((T0 + p as i64) * 1_000_000);
            prop_assert_eq!(&fold_as_of(&entries, Some(&received)).0, &as_of);
            let (_, state) = history("subscription", "sub_1", &entries[..p]);
            prop_assert_eq!(state, as_of.subscriptions.get("sub_1").cloned().map(Fact::Subscription));
        }
    }

    #[test]
    fn the_applied_diffs_of_every_history_replayed_from_empty_give_the_read_model(
        steps in prop::collection::vec(step(), 0..12),
        gaps in prop::collection::vec(0u8..3, 12),
        pre_basil in prop::collection::vec(any::<bool>(), 24),
        seed in any::<u64>(),
    ) {
        let mut events = lifecycle(&steps, &gaps);
        for (e, old) in events.iter_mut().zip(pre_basil.iter().cycle()) {
            if *old {
                to_pre_basil(e);
            }
        }
        let delivered = delivery(&events, seed);
        let entries = log(&delivered);
        let (projection, _) = fold_as_of(&entries, None);
        for object in all_objects(&projection) {
            let (steps, state) = history(object.kind(), object.id(), &entries);
            prop_assert_eq!(state.as_ref(), Some(&object), "the same fold as the read model");
            let mut replayed = BTreeMap::new();
            for s in &steps {
                match s.effect {
                    Effect::Applied => prop_assert!(!s.changes.is_empty()),
                    _ => prop_assert!(s.changes.is_empty()),
                }
                replay(&mut replayed, &s.changes);
            }
            prop_assert_eq!(&replayed, &fields(&object));
        }
    }

    #[test]
    fn every_page_of_a_history_is_that_slice_of_the_whole_history(
        steps in prop::collection::vec(step(), 0..12),
        gaps in prop::collection::vec(0u8..3, 12),
        seed in any::<u64>(),
        max in 1usize..6,
    ) {
        let events = lifecycle(&steps, &gaps);
        let delivered = delivery(&events, seed);
        let entries = log(&delivered);
        let (projection, _) = fold_as_of(&entries, None);
        for object in all_objects(&projection) {
            let (whole, _) = history(object.kind(), object.id(), &entries);
            // Page through as a client would: after the last position shown, `max` at a time.
            let mut paged = Vec::new();
            let mut after = None;
            loop {
                let page = history_page(object.kind(), object.id(), &entries, after, max);
                prop_assert!(page.len() <= max);
                let Some(last) = page.last() else { break };
                after = Some(entries[last.index].position);
                let full = page.len() == max;
                paged.extend(page);
                if !full {
                    break;
                }
            }
            prop_assert_eq!(&paged, &whole);
        }
    }

    #[test]
    fn folding_only_the_entries_explain_cites_gives_the_same_decision_and_inputs(
        steps in prop::collection::vec(step(), 0..12),
        gaps in prop::collection::vec(0u8..3, 12),
        seed in any::<u64>(),
        now_offset in 0i64..(120 * 86_400),
    ) {
        let events = lifecycle(&steps, &gaps);
        let delivered = delivery(&events, seed);
        let entries = log(&delivered);
        let now = T0 + now_offset;
        let full = explain(&entries, None, "user_1", now, GRACE);
        // The same decision as the entitlement read path.
        let (subs, invoices) = fold_as_of(&entries, None).0.billing_of_user("user_1");
        prop_assert_eq!(&full.entitlement, &crate::entitlement(&subs, &invoices, now, GRACE));
        let cited = full.cited_event_ids();
        let only: Vec<LogEntry> = entries
            .iter()
            .filter(|e| cited.contains(&e.event.event_id))
            .copied()
            .collect();
        let again = explain(&only, None, "user_1", now, GRACE);
        prop_assert_eq!(&again.entitlement, &full.entitlement);
        prop_assert_eq!(&again.rule, &full.rule);
        prop_assert_eq!(&again.inputs, &full.inputs);
        prop_assert!(full.inputs.iter().all(|c| c.position.is_some()));
    }
}

fn renewal_lifecycle() -> Vec<Value> {
    let end = T0 + 2_592_000;
    vec![
        event(
            1,
            "customer.created",
            T0,
            json!({"id": "cus_1", "object": "customer", "metadata": {"user_id": "user_1"}}),
        ),
        event(
            2,
            "customer.subscription.created",
            T0,
            subscription("active", 0, 1, end, false),
        ),
        // The service's own customer: the trusted link.
        {
            let mut e = event(
                3,
                "customer.created",
                T0,
                json!({"id": "cus_1", "object": "customer", "metadata": {"user_id": "user_1"}}),
            );
            e["id"] = json!("svc_cus_1");
            e
        },
    ]
}

fn entitlement_of(p: &Projection, now: i64) -> crate::Entitlement {
    let (s, i) = p.billing_of_user("user_1");
    crate::entitlement(&s, &i, now, GRACE)
}

#[test]
fn a_failed_renewal_without_a_subscription_update_gives_grace_then_denied_explained() {
    let mut events = renewal_lifecycle();
    let failed_at = T0 + 2_592_000 + 60;
    events.push(event(
        10,
        "invoice.payment_failed",
        failed_at,
        invoice("open", T0 + 2 * 2_592_000, 1),
    ));
    let refs: Vec<&Value> = events.iter().collect();
    let p = fold(&refs);
    let sub = &p.subscriptions["sub_1"];
    assert_eq!(
        sub.view().unwrap().status,
        "active",
        "the snapshot is unchanged"
    );
    assert_eq!(sub.status(), Some("past_due"), "the rule derives past_due");
    let derived = sub.derived_past_due().unwrap();
    assert_eq!(derived.last_failure.event_id, "evt_0010");
    let during = entitlement_of(&p, failed_at + 86_400);
    assert_eq!(
        (during.access, during.reason),
        (Access::Grace, Reason::PastDueGrace)
    );
    assert_eq!(during.until, Some(failed_at + GRACE));
    let after = entitlement_of(&p, failed_at + GRACE);
    assert_eq!(
        (after.access, after.reason),
        (Access::Denied, Reason::PastDueGraceExpired)
    );

    let entries = log(&refs);
    let e = explain(&entries, None, "user_1", failed_at + 86_400, GRACE);
    assert!(
        matches!(e.rule, Rule::PastDueWithinGrace { derived: true, .. }),
        "{:?}",
        e.rule
    );
    assert!(
        e.sentence
            .starts_with("past_due (derived from a failed renewal payment"),
        "{}",
        e.sentence
    );
    let in_id = format!("in_{}", T0 + 2 * 2_592_000);
    assert!(
        e.sentence
            .contains(&format!("7 days from the first failed payment on {in_id}")),
        "{}",
        e.sentence
    );
    let cited: Vec<(&str, &str)> = e
        .inputs
        .iter()
        .map(|c| (c.object_id.as_str(), c.event_id.as_str()))
        .collect();
    assert!(cited.contains(&("cus_1", "svc_cus_1")), "{cited:?}");
    assert!(cited.contains(&("sub_1", "evt_0002")), "{cited:?}");
    assert!(cited.contains(&(in_id.as_str(), "evt_0010")), "{cited:?}");
}

#[test]
fn paying_the_renewal_invoice_restores_access_in_any_order() {
    let mut events = renewal_lifecycle();
    let period = T0 + 2 * 2_592_000;
    events.push(event(
        10,
        "invoice.payment_failed",
        T0 + 2_592_000 + 60,
        invoice("open", period, 1),
    ));
    events.push(event(
        11,
        "invoice.paid",
        T0 + 2_592_000 + 3_600,
        invoice("paid", period, 2),
    ));
    let forward: Vec<&Value> = events.iter().collect();
    let backward: Vec<&Value> = events.iter().rev().collect();
    for order in [forward, backward] {
        let p = fold(&order);
        assert_eq!(p.subscriptions["sub_1"].status(), Some("active"));
        let e = entitlement_of(&p, T0 + 2_592_000 + 2 * GRACE);
        assert_eq!(e.access, Access::Granted);
    }
}

#[test]
fn a_failure_older_than_the_snapshot_or_on_a_first_invoice_derives_nothing() {
    let mut events = renewal_lifecycle();
    let mut first = invoice("open", T0 + 2_592_000, 1);
    first["billing_reason"] = json!("subscription_create");
    events.push(event(10, "invoice.payment_failed", T0 + 5, first));
    // A renewal failure followed by a newer snapshot: Stripe's own word wins.
    events.push(event(
        11,
        "invoice.payment_failed",
        T0 + 10,
        invoice("open", T0 + 2 * 2_592_000, 1),
    ));
    events.push(event(
        12,
        "customer.subscription.updated",
        T0 + 11,
        subscription("active", 1, 1, T0 + 2_592_000, false),
    ));
    let p = fold(&events.iter().collect::<Vec<_>>());
    assert_eq!(p.subscriptions["sub_1"].status(), Some("active"));
    assert!(p.subscriptions["sub_1"].derived_past_due().is_none());
}

#[test]
fn a_late_older_snapshot_is_superseded_in_history_and_changes_nothing() {
    let end = T0 + 2_592_000;
    let newer = event(
        1,
        "customer.subscription.updated",
        T0 + 10,
        subscription("active", 1, 1, end, false),
    );
    let older = event(
        2,
        "customer.subscription.updated",
        T0 + 5,
        subscription("active", 0, 1, end, false),
    );
    let entries = log(&[&newer, &older, &newer]);
    let (steps, _) = history("subscription", "sub_1", &entries);
    assert_eq!(steps.len(), 2, "the duplicate is logged once");
    assert_eq!(steps[0].effect, Effect::Applied);
    assert!(steps[0]
        .changes
        .iter()
        .any(|c| c.field == "status" && c.from.is_null() && c.to == "active"));
    assert_eq!(steps[1].effect, Effect::Superseded);
    assert!(steps[1].changes.is_empty());
}

#[test]
fn each_effect_is_shown_by_its_serde_name() {
    for effect in [Effect::Applied, Effect::Superseded, Effect::Ignored] {
        assert_eq!(json!(effect), json!(effect.as_str()));
    }
}
