//! Gap fill from Stripe's event list: a webhook Stripe never delivered is found and projected.

use serde_json::Value;
use stripe_ledger::stripe::client::StripeClient;
use stripe_ledger::stripe::keys::{Mode, SecretKey};

use crate::fake_stripe::{Failure, FakeStripe};
use crate::helpers::{TestApp, READ_TOKEN};
use crate::stripe_objects::{customer, event, subscription, MONTH, T0};

fn json(bytes: Vec<u8>) -> Value {
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn sync_events_appends_and_projects_missed_events_across_pages_and_a_rate_limit() {
    let fake = FakeStripe::start().await;
    let app = TestApp::spawn().await;
    let delivered = event(
        "evt_sync_1",
        "customer.created",
        T0,
        customer("cus_sync", Some("user_sync")),
    );
    let missed_sub = event(
        "evt_sync_2",
        "customer.subscription.created",
        T0 + 5,
        subscription("sub_sync", "cus_sync", "active", T0 + MONTH, false),
    );
    let missed_upd = event(
        "evt_sync_3",
        "customer.subscription.updated",
        T0 + 9,
        subscription("sub_sync", "cus_sync", "past_due", T0 + MONTH, false),
    );
    // The first was delivered as a webhook; the other two never were.
    assert_eq!(app.deliver(&delivered).await.status, 200);
    for e in [&delivered, &missed_sub, &missed_upd] {
        fake.add_event(json(e.clone()));
    }
    fake.add_event(serde_json::json!({"id": "evt_sync_live", "object": "event", "type": "customer.created",
        "livemode": true, "created": T0 + 10, "data": {"object": {"id": "cus_live", "object": "customer"}}}));
    fake.cap_pages(2);
    fake.fail_next("/v1/events", Failure { status: 429, body: serde_json::json!({"error": {"type": "rate_limit_error", "message": "slow down"}}), headers: vec![("retry-after", "0".into())], delay_ms: 0 });

    let client = StripeClient::new(
        &fake.base_url,
        SecretKey::parse("sk_test_sync0123").unwrap(),
        std::time::Duration::from_secs(5),
    )
    .unwrap()
    .with_backoff(std::time::Duration::from_millis(10));
    let now = T0 + 86_400;
    let report =
        stripe_ledger::reconcile::sync_events(&app.db, &client, Mode::Test, T0 - 3_600, now)
            .await
            .unwrap();
    assert_eq!(report.listed, 4);
    assert_eq!(report.appended, 2);
    assert_eq!(report.already_logged, 1);
    assert_eq!(
        report.refused, 1,
        "a live-mode event is not for a test-mode ledger"
    );
    assert!(!report.window_exceeds_retention);
    // Pagination: 4 events at 2 a page, plus the rate-limited attempt, retried.
    let pages = fake.requests("/v1/events");
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[2].field("starting_after"), Some("evt_sync_3"));

    let sub = app
        .get("/api/subscriptions/sub_sync", Some(READ_TOKEN))
        .await;
    assert_eq!(sub.json["status"], "past_due", "{}", sub.text);
    let logged = app
        .audit("/api/audit/events?source=api_backfill&order=asc")
        .await;
    let ids: Vec<&str> = logged.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["evt_sync_2", "evt_sync_3"]);

    // Running it again appends nothing.
    let again =
        stripe_ledger::reconcile::sync_events(&app.db, &client, Mode::Test, T0 - 3_600, now)
            .await
            .unwrap();
    assert_eq!(again.appended, 0);
    assert_eq!(again.already_logged, 3);
    let wide =
        stripe_ledger::reconcile::sync_events(&app.db, &client, Mode::Test, now - 31 * 86_400, now)
            .await
            .unwrap();
    assert!(wide.window_exceeds_retention);
}

#[tokio::test]
async fn reconcile_reports_each_drift_kind_and_a_repair_leaves_only_what_cannot_be_repaired() {
    let fake = FakeStripe::start().await;
    let app = TestApp::spawn().await;
    let end = T0 + MONTH;
    // Local: sub_a active, sub_c active (gone at Stripe), customers cus_a and cus_c.
    for e in [
        event(
            "evt_rc_1",
            "customer.created",
            T0,
            customer("cus_a", Some("user_a")),
        ),
        event(
            "evt_rc_2",
            "customer.subscription.created",
            T0,
            subscription("sub_a", "cus_a", "active", end, false),
        ),
        event("evt_rc_3", "customer.created", T0, customer("cus_c", None)),
        event(
            "evt_rc_4",
            "customer.subscription.created",
            T0,
            subscription("sub_c", "cus_c", "active", end, false),
        ),
    ] {
        assert_eq!(app.deliver(&e).await.status, 200);
    }
    // Stripe: sub_a is past_due with cancel_at_period_end (a missed update), sub_b is unknown
    // locally (a missed creation); cus_a's email changed; cus_b is unknown locally.
    let mut past_due = subscription("sub_a", "cus_a", "past_due", end, true);
    past_due["latest_invoice"] = Value::Null;
    // ...and its quantity and period end moved on (an upgrade and a renewal we missed).
    past_due["items"]["data"][0]["quantity"] = 2.into();
    past_due["items"]["data"][0]["current_period_end"] = (end + MONTH).into();
    fake.set_list(
        "/v1/subscriptions",
        vec![
            past_due,
            subscription("sub_b", "cus_b", "trialing", end, false),
        ],
    );
    let mut cus_a = customer("cus_a", Some("user_a"));
    cus_a["email"] = "new@example.com".into();
    fake.set_list(
        "/v1/customers",
        vec![
            cus_a,
            customer("cus_b", Some("user_b")),
            customer("cus_c", None),
        ],
    );
    fake.cap_pages(1);
    let client = StripeClient::new(
        &fake.base_url,
        SecretKey::parse("sk_test_rc0123").unwrap(),
        std::time::Duration::from_secs(5),
    )
    .unwrap()
    .with_backoff(std::time::Duration::from_millis(10));
    // A rate limit in the middle of reconciliation (the customer listing, after the
    // subscriptions), refused once and retried.
    fake.fail_next(
        "/v1/customers",
        Failure {
            status: 429,
            body: serde_json::json!({"error": {"type": "rate_limit_error", "message": "slow down"}}),
            headers: vec![("retry-after", "0".into())],
            delay_ms: 0,
        },
    );

    let report = stripe_ledger::reconcile::reconcile(&app.db, &client, false)
        .await
        .unwrap();
    let summary: Vec<(String, String, Option<&str>)> = report
        .drift
        .iter()
        .map(|d| {
            (
                d.id.clone(),
                d.problem.as_str().to_owned(),
                d.field.map(|f| f.as_str()),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("sub_a".to_owned(), "field".to_owned(), Some("status")),
            ("sub_a".to_owned(), "field".to_owned(), Some("items")),
            (
                "sub_a".to_owned(),
                "field".to_owned(),
                Some("current_period_end")
            ),
            (
                "sub_a".to_owned(),
                "field".to_owned(),
                Some("cancel_at_period_end")
            ),
            ("sub_b".to_owned(), "missing_locally".to_owned(), None),
            ("sub_c".to_owned(), "missing_at_stripe".to_owned(), None),
            ("cus_a".to_owned(), "field".to_owned(), Some("email")),
            ("cus_b".to_owned(), "missing_locally".to_owned(), None),
        ]
    );
    assert_eq!(report.repaired, 0);
    assert_eq!(
        fake.requests("/v1/subscriptions").len(),
        2,
        "one object a page"
    );
    assert_eq!(
        fake.requests("/v1/customers").len(),
        4,
        "3 pages and one retried 429"
    );
    crate::golden().bind(|| {
        insta::assert_json_snapshot!("reconcile_report_json", report);
        insta::assert_snapshot!(
            "reconcile_report_text",
            stripe_ledger::reconcile::render_text(&report)
        );
    });

    let repaired = stripe_ledger::reconcile::reconcile(&app.db, &client, true)
        .await
        .unwrap();
    assert_eq!(repaired.repaired, 4);
    assert_eq!(
        app.get("/api/subscriptions/sub_a", Some(READ_TOKEN))
            .await
            .json["status"],
        "past_due"
    );
    assert_eq!(
        app.get("/api/subscriptions/sub_b", Some(READ_TOKEN))
            .await
            .json["status"],
        "trialing"
    );
    let logged = app.audit("/api/audit/events?source=reconcile_repair").await;
    assert_eq!(logged.json["data"].as_array().unwrap().len(), 4);

    // Only what a repair cannot fix remains; repairing again appends nothing new.
    let after = stripe_ledger::reconcile::reconcile(&app.db, &client, true)
        .await
        .unwrap();
    let left: Vec<&str> = after.drift.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(left, ["sub_c"]);
    assert_eq!(after.repaired, 0);
    // A rebuild reproduces the repaired state: the same report.
    stripe_ledger::projector::rebuild(&app.db, &Default::default())
        .await
        .unwrap();
    let rebuilt = stripe_ledger::reconcile::reconcile(&app.db, &client, false)
        .await
        .unwrap();
    assert_eq!(rebuilt.drift, after.drift);
}

#[tokio::test]
async fn two_instances_due_at_once_run_the_scheduled_reconciliation_once() {
    let fake = FakeStripe::start().await;
    fake.set_list(
        "/v1/subscriptions",
        vec![subscription("sub_s", "cus_s", "active", T0 + MONTH, false)],
    );
    let (a, b) = TestApp::two_instances().await;
    let client = StripeClient::new(
        &fake.base_url,
        SecretKey::parse("sk_test_sched0123").unwrap(),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    use stripe_ledger::reconcile::schedule::run_if_due;
    let (ra, rb) = tokio::join!(
        run_if_due(&a.db, &client, Mode::Test, false, 86_400, "instance-a"),
        run_if_due(&b.db, &client, Mode::Test, false, 86_400, "instance-b"),
    );
    let ran: Vec<i64> = [ra.unwrap(), rb.unwrap()].into_iter().flatten().collect();
    assert_eq!(ran.len(), 1, "exactly one instance runs it");
    // Still leased for this interval: nobody runs it again.
    assert_eq!(
        run_if_due(&a.db, &client, Mode::Test, false, 86_400, "instance-a")
            .await
            .unwrap(),
        None
    );

    let list = a.audit("/api/reconciliations").await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.json["data"].as_array().unwrap().len(), 1);
    assert_eq!(list.json["data"][0]["status"], "succeeded");
    assert_eq!(
        list.json["data"][0]["drift_count"], 1,
        "sub_s is missing locally"
    );
    let one = a.audit(&format!("/api/reconciliations/{}", ran[0])).await;
    assert_eq!(one.json["report"]["reconcile"]["drift"][0]["id"], "sub_s");
    assert_eq!(
        a.get("/api/reconciliations", Some(READ_TOKEN)).await.status,
        403
    );
    assert_eq!(a.audit("/api/reconciliations/999").await.status, 404);
}

#[test]
fn reconcile_objects_are_parsed_and_unknown_ones_refused() {
    use stripe_ledger::reconcile::Objects;
    let both = Objects::parse("subscriptions,customers").unwrap();
    assert!(both.subscriptions && both.customers);
    let subs = Objects::parse("subscriptions").unwrap();
    assert!(subs.subscriptions && !subs.customers);
    assert!(Objects::parse("invoices").is_err());
    assert!(Objects::parse("").is_err());
}
