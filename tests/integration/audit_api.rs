//! `GET /api/audit/events` and `/api/audit/events/{id}`: auth, filters, pagination.

use serde_json::{json, Value};

use crate::helpers::{TestApp, READ_TOKEN};

fn event_at(id: &str, event_type: &str, object_id: &str, created: i64) -> Vec<u8> {
    let object = match object_id.split('_').next() {
        Some("cus") => "customer",
        Some("sub") => "subscription",
        _ => "invoice",
    };
    json!({
        "id": id, "object": "event", "api_version": "2025-03-31.basil", "created": created,
        "livemode": false, "type": event_type, "pending_webhooks": 1, "request": null,
        "data": {"object": {"id": object_id, "object": object, "status": "active"}}
    })
    .to_string()
    .into_bytes()
}

async fn seeded() -> TestApp {
    let app = TestApp::spawn().await;
    let events = [
        ("evt_a1", "customer.created", "cus_1", 1_700_000_000),
        (
            "evt_a2",
            "customer.subscription.created",
            "sub_1",
            1_700_000_100,
        ),
        ("evt_a3", "invoice.paid", "in_1", 1_700_000_200),
        (
            "evt_a4",
            "customer.subscription.updated",
            "sub_1",
            1_700_000_300,
        ),
        ("evt_a5", "invoice.paid", "in_2", 1_700_000_400),
    ];
    for (id, t, object, created) in events {
        let reply = app.deliver(&event_at(id, t, object, created)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    app
}

fn ids(reply: &Value) -> Vec<&str> {
    reply["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_audit_api_needs_a_token_with_the_audit_scope() {
    let app = seeded().await;
    for path in ["/api/audit/events", "/api/audit/events/evt_a1"] {
        let none = app.get(path, None).await;
        assert_eq!(none.status, 401);
        assert_eq!(none.code(), "unauthenticated");
        assert_eq!(none.headers["www-authenticate"], "Bearer");
        let wrong = app.get(path, Some("not-a-configured-token-at-all")).await;
        assert_eq!(wrong.status, 401);
        let read_only = app.get(path, Some(READ_TOKEN)).await;
        assert_eq!(read_only.status, 403);
        assert_eq!(read_only.code(), "insufficient_scope");
        assert_eq!(app.audit(path).await.status, 200);
    }
}

#[tokio::test]
async fn the_log_lists_newest_first_and_pages_with_a_cursor() {
    let app = seeded().await;
    let first = app.audit("/api/audit/events?limit=2").await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(ids(&first.json), ["evt_a5", "evt_a4"]);
    let cursor = first.json["next_cursor"].as_str().unwrap().to_owned();
    let second = app
        .audit(&format!("/api/audit/events?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(ids(&second.json), ["evt_a3", "evt_a2"]);
    let cursor = second.json["next_cursor"].as_str().unwrap().to_owned();
    let last = app
        .audit(&format!("/api/audit/events?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(ids(&last.json), ["evt_a1"]);
    assert_eq!(last.json["next_cursor"], Value::Null);

    let oldest = app.audit("/api/audit/events?order=asc&limit=3").await;
    assert_eq!(ids(&oldest.json), ["evt_a1", "evt_a2", "evt_a3"]);
    let cursor = oldest.json["next_cursor"].as_str().unwrap().to_owned();
    let rest = app
        .audit(&format!("/api/audit/events?order=asc&cursor={cursor}"))
        .await;
    assert_eq!(ids(&rest.json), ["evt_a4", "evt_a5"]);
}

#[tokio::test]
async fn the_log_filters_by_type_object_and_time_range() {
    let app = seeded().await;
    let by_type = app.audit("/api/audit/events?type=invoice.paid").await;
    assert_eq!(ids(&by_type.json), ["evt_a5", "evt_a3"]);
    let by_object = app
        .audit("/api/audit/events?object_id=sub_1&order=asc")
        .await;
    assert_eq!(ids(&by_object.json), ["evt_a2", "evt_a4"]);
    let by_time = app
        .audit("/api/audit/events?created_gte=1700000100&created_lt=2023-11-14T22:18:20Z&order=asc")
        .await;
    assert_eq!(ids(&by_time.json), ["evt_a2", "evt_a3"]);
    let combined = app
        .audit("/api/audit/events?type=invoice.paid&created_gte=1700000300")
        .await;
    assert_eq!(ids(&combined.json), ["evt_a5"]);
    let none = app.audit("/api/audit/events?source=reconcile_repair").await;
    assert_eq!(ids(&none.json), Vec::<&str>::new());
}

#[tokio::test]
async fn bad_audit_parameters_get_a_400_with_a_stable_code() {
    let app = seeded().await;
    let cases = [
        ("/api/audit/events?limit=0", "invalid_parameter"),
        ("/api/audit/events?limit=abc", "invalid_parameter"),
        ("/api/audit/events?order=sideways", "invalid_parameter"),
        (
            "/api/audit/events?created_gte=last-week",
            "invalid_parameter",
        ),
        ("/api/audit/events?cursor=123", "invalid_cursor"),
        ("/api/audit/events?typ=invoice.paid", "unknown_parameter"),
        ("/api/audit/events?type=a&type=b", "invalid_parameter"),
        ("/api/audit/events?type=%ZZ", "invalid_query"),
    ];
    for (path, code) in cases {
        let reply = app.audit(path).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text);
        assert_eq!(reply.code(), code, "{path}");
    }
    let missing = app.audit("/api/audit/events/evt_nope").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.code(), "event_not_found");
}

#[tokio::test]
async fn a_stored_entry_shows_its_payload_and_verification_record() {
    let app = seeded().await;
    let reply = app.audit("/api/audit/events/evt_a2").await;
    assert_eq!(reply.status, 200);
    let e = &reply.json;
    assert_eq!(e["type"], "customer.subscription.created");
    assert_eq!(e["object"], json!({"id": "sub_1", "type": "subscription"}));
    assert_eq!(e["created"], "2023-11-14T22:15:00Z");
    assert_eq!(e["source"], "webhook");
    assert_eq!(e["payload"]["id"], "evt_a2");
    let v = &e["verification"];
    assert_eq!(v["secret_index"], 1);
    assert!(v["signature_header"].as_str().unwrap().starts_with("t="));
    assert_eq!(v["raw_body_sha256"].as_str().unwrap().len(), 64);
    assert!(v["secret_fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));

    crate::golden().bind(|| {
        insta::assert_json_snapshot!("audit_event_detail", reply.json, {
            ".received_at" => "[received_at]",
            ".position" => "[position]",
            ".verification.signature_header" => "[signature_header]",
            ".verification.signature_timestamp" => "[signature_timestamp]",
            ".verification.secret_fingerprint" => "[fingerprint]",
        })
    });
}
