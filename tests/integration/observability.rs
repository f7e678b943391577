//! What an operator sees: `/metrics`, and logs that tie every line to its request and event.

use serde_json::json;

use crate::helpers::{event, unique_id, TestApp, AUDIT_TOKEN};

#[tokio::test]
async fn metrics_count_webhooks_by_type_and_outcome_and_report_the_database_gauges() {
    let app = TestApp::spawn().await;
    let body = event(&unique_id("evt"), "customer.created");
    assert_eq!(app.deliver(&body).await.status, 200);
    assert_eq!(app.deliver(&body).await.status, 200);
    assert_eq!(app.post_webhook(&body, Some("t=1,v1=00")).await.status, 400);
    // A subscription without a status cannot be projected: logged, dead-lettered, 500.
    let broken = json!({
        "id": unique_id("evt"), "object": "event", "api_version": "2025-03-31.basil",
        "created": 1_763_800_000, "livemode": false, "type": "customer.subscription.updated",
        "data": {"object": {"id": "sub_broken", "object": "subscription", "customer": "cus_x"}}
    })
    .to_string();
    assert_eq!(app.deliver(broken.as_bytes()).await.status, 500);

    // Only the `metrics` scope may scrape.
    assert_eq!(app.get("/metrics", None).await.status, 401);
    assert_eq!(app.get("/metrics", Some(AUDIT_TOKEN)).await.status, 403);
    let m = app.metrics().await;
    let get = |series: &str| {
        *m.get(series)
            .unwrap_or_else(|| panic!("no {series} in {:#?}", m.keys().collect::<Vec<_>>()))
    };
    assert_eq!(
        get(
            r#"stripe_ledger_webhooks_total{event_type="customer.created",outcome="recorded",code=""}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            r#"stripe_ledger_webhooks_total{event_type="customer.created",outcome="duplicate",code=""}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            r#"stripe_ledger_webhooks_total{event_type="",outcome="rejected",code="signature_mismatch"}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            r#"stripe_ledger_webhooks_total{event_type="",outcome="failed",code="projection_failed"}"#
        ),
        1.0
    );
    assert_eq!(get("stripe_ledger_webhook_duration_seconds_count"), 4.0);
    assert!(get("stripe_ledger_webhook_duration_seconds_sum") > 0.0);
    assert_eq!(
        get(r#"stripe_ledger_projection_failures_total{source="webhook"}"#),
        1.0
    );
    // The first event taught the writer the generation; the broken one was then written
    // without a read (docs/adr/0024), and nothing was refused.
    assert_eq!(
        get(r#"stripe_ledger_ingest_guesses_total{outcome="written"}"#),
        1.0
    );
    assert_eq!(
        get(r#"stripe_ledger_ingest_guesses_total{outcome="refused"}"#),
        0.0
    );
    assert_eq!(get("stripe_ledger_database_up"), 1.0);
    assert_eq!(get("stripe_ledger_dead_letters"), 1.0);
    assert_eq!(get(r#"stripe_ledger_outbox_items{status="pending"}"#), 0.0);
    assert_eq!(get("stripe_ledger_reconcile_last_drift"), -1.0);
    assert_eq!(get("stripe_ledger_event_log_last_position"), 2.0);
    // Both logged events were projected by ingestion (the broken one is a dead letter, which
    // the retrier owns), so catch-up owes only the dead letter's position.
    assert_eq!(get("stripe_ledger_catch_up_lag_events"), 1.0);
    // Histogram buckets are cumulative and end at +Inf with the count.
    assert_eq!(
        get(r#"stripe_ledger_webhook_duration_seconds_bucket{le="+Inf"}"#),
        4.0
    );
}

#[tokio::test]
async fn the_catch_up_lag_counts_entries_logged_but_not_yet_projected() {
    let app = TestApp::spawn().await;
    // Appended by another source without projection (as a crash between the two would leave).
    let body = event(&unique_id("evt"), "customer.created");
    let entry = crate::helpers::backfill_entry(&body);
    stripe_ledger::event_log::append(&app.db, &entry)
        .await
        .unwrap();
    assert_eq!(
        app.metrics().await["stripe_ledger_catch_up_lag_events"],
        1.0
    );
    stripe_ledger::projector::catch_up(&app.db).await.unwrap();
    assert_eq!(
        app.metrics().await["stripe_ledger_catch_up_lag_events"],
        0.0
    );
}

#[tokio::test]
async fn metrics_say_the_database_is_down_instead_of_failing_the_scrape() {
    let app = TestApp::spawn().await;
    app.db.close().await;
    let m = app.metrics().await;
    assert_eq!(m["stripe_ledger_database_up"], 0.0);
}

#[tokio::test]
async fn every_log_line_of_a_webhook_carries_its_request_id_and_stripe_event_id() {
    let app = TestApp::spawn().await;
    let request_id = unique_id("req");
    let event_id = unique_id("evt");
    // Unprojectable, so its handling logs more than one line.
    let body = json!({
        "id": event_id, "object": "event", "api_version": "2025-03-31.basil",
        "created": 1_763_800_000, "livemode": false, "type": "customer.subscription.updated",
        "data": {"object": {"id": "sub_logs", "object": "subscription"}}
    })
    .to_string();
    let reply = app
        .client
        .post(app.url("/webhooks/stripe"))
        .header("stripe-signature", app.sign(body.as_bytes()))
        .header("x-request-id", &request_id)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 500);
    assert_eq!(reply.headers()["x-request-id"], request_id.as_str());

    let logs = crate::helpers::captured_logs();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains(&request_id)).collect();
    assert!(lines.len() >= 2, "{lines:#?}");
    for line in &lines {
        assert!(line.contains(&event_id), "no event id in: {line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("projection failed")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn a_request_without_a_usable_request_id_gets_a_fresh_one() {
    let app = TestApp::spawn().await;
    let reply = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "has spaces in it")
        .send()
        .await
        .unwrap();
    let id = reply.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
}
