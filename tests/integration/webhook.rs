//! `POST /webhooks/stripe`: hostile input, idempotency, concurrency, livemode, outages.

use std::sync::Arc;

use serde_json::json;
use stripe_ledger::store::Kind;
use stripe_ledger::stripe::signature;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{event, event_json, unique_id, TestApp, TestDatabase};

struct Case {
    name: &'static str,
    body: Vec<u8>,
    signature: Option<String>,
    status: u16,
    code: &'static str,
}

#[tokio::test]
async fn hostile_input_gets_a_precise_4xx_and_appends_nothing() {
    let now = 1_763_800_000;
    let app = TestApp::builder().clock_at(now).spawn().await;
    let good = event("evt_hostile", "customer.created");
    let sign = |body: &[u8], t: i64| signature::sign(body, &app.secret, t);
    let valid_v1 = sign(&good, now);
    let only_v0 = valid_v1.replace("v1=", "v0=");
    let mut tampered = good.clone();
    tampered.extend_from_slice(b" ");
    let no_id =
        json!({"object": "event", "type": "customer.created", "livemode": false, "created": 1})
            .to_string()
            .into_bytes();
    let no_type = json!({"id": "evt_x", "object": "event", "livemode": false, "created": 1})
        .to_string()
        .into_bytes();
    let wrong_livemode = event_json("evt_live", "customer.created", true)
        .to_string()
        .into_bytes();
    let huge = {
        let mut v = event_json("evt_huge", "customer.created", false);
        v["data"]["object"]["padding"] = json!("x".repeat(2 * 1024 * 1024));
        v.to_string().into_bytes()
    };

    let cases = vec![
        Case {
            name: "no header",
            body: good.clone(),
            signature: None,
            status: 400,
            code: "signature_missing",
        },
        Case {
            name: "empty header",
            body: good.clone(),
            signature: Some(String::new()),
            status: 400,
            code: "signature_missing",
        },
        Case {
            name: "garbage header",
            body: good.clone(),
            signature: Some("garbage".into()),
            status: 400,
            code: "signature_malformed",
        },
        Case {
            name: "non-numeric timestamp",
            body: good.clone(),
            signature: Some("t=soon,v1=abc".into()),
            status: 400,
            code: "signature_malformed",
        },
        Case {
            name: "only v0",
            body: good.clone(),
            signature: Some(only_v0),
            status: 400,
            code: "signature_no_v1",
        },
        Case {
            name: "wrong secret",
            body: good.clone(),
            signature: Some(signature::sign(&good, "whsec_wrong", now)),
            status: 400,
            code: "signature_mismatch",
        },
        Case {
            name: "tampered body",
            body: tampered.clone(),
            signature: Some(valid_v1.clone()),
            status: 400,
            code: "signature_mismatch",
        },
        Case {
            name: "stale timestamp",
            body: good.clone(),
            signature: Some(sign(&good, now - 301)),
            status: 400,
            code: "timestamp_out_of_tolerance",
        },
        Case {
            name: "future timestamp",
            body: good.clone(),
            signature: Some(sign(&good, now + 301)),
            status: 400,
            code: "timestamp_out_of_tolerance",
        },
        Case {
            name: "non-JSON",
            body: b"not json".to_vec(),
            signature: Some(sign(b"not json", now)),
            status: 400,
            code: "malformed_json",
        },
        Case {
            name: "JSON array",
            body: b"[1]".to_vec(),
            signature: Some(sign(b"[1]", now)),
            status: 400,
            code: "malformed_json",
        },
        Case {
            name: "JSON without id",
            body: no_id.clone(),
            signature: Some(sign(&no_id, now)),
            status: 400,
            code: "invalid_event",
        },
        Case {
            name: "JSON without type",
            body: no_type.clone(),
            signature: Some(sign(&no_type, now)),
            status: 400,
            code: "invalid_event",
        },
        Case {
            name: "wrong livemode",
            body: wrong_livemode.clone(),
            signature: Some(sign(&wrong_livemode, now)),
            status: 400,
            code: "livemode_mismatch",
        },
        Case {
            name: "2 MiB body",
            body: huge.clone(),
            signature: Some(sign(&huge, now)),
            status: 413,
            code: "payload_too_large",
        },
    ];
    for case in cases {
        let reply = app
            .post_webhook(&case.body, case.signature.as_deref())
            .await;
        assert_eq!(reply.status, case.status, "{}: {}", case.name, reply.text);
        assert_eq!(reply.code(), case.code, "{}", case.name);
        assert!(
            reply.json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}",
            case.name
        );
    }
    assert_eq!(app.event_count().await, 0);

    // The same event, correctly signed at the edge of the tolerance, is accepted.
    let reply = app.post_webhook(&good, Some(&sign(&good, now - 300))).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(app.event_count().await, 1);
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_without_a_content_length() {
    let app = TestApp::builder()
        .env("WEBHOOK_MAX_BODY_BYTES", "4096")
        .spawn()
        .await;
    let addr = app.base_url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let chunk = vec![b'x'; 1024];
    let mut request = format!(
        "POST /webhooks/stripe HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         stripe-signature: t=1,v1=00\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..8 {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&request).await.unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("\"payload_too_large\""), "{response}");
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn the_same_event_posted_twice_is_recorded_once_and_the_second_reply_says_so() {
    // With the seen-id cache (the default) and without it (every duplicate asks the database).
    for cache in ["16384", "0"] {
        let app = TestApp::builder()
            .env("DEDUPE_CACHE_SIZE", cache)
            .spawn()
            .await;
        let body = event(&unique_id("evt"), "customer.created");
        let first = app.deliver(&body).await;
        assert_eq!(first.status, 200);
        assert_eq!(first.json["status"], "recorded");
        // Stripe re-signs each retry with a fresh timestamp; the body is the same.
        let second = app.deliver(&body).await;
        assert_eq!(second.status, 200);
        assert_eq!(second.json["status"], "duplicate", "cache size {cache}");
        assert_eq!(second.json["position"], first.json["position"]);
        assert_eq!(app.event_count().await, 1);
    }
}

#[tokio::test]
async fn a_logged_id_redelivered_with_another_body_is_checked_in_full_not_answered_from_the_cache()
{
    let app = TestApp::spawn().await;
    let id = unique_id("evt");
    let logged = event(&id, "customer.created");
    let first = app.deliver(&logged).await;
    assert_eq!(first.json["status"], "recorded");
    // The same id, cached as committed, but a body the full checks refuse.
    let live = event_json(&id, "customer.created", true)
        .to_string()
        .into_bytes();
    let reply = app.deliver(&live).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.code(), "livemode_mismatch");
    // The same id with another valid body: a duplicate, and not the same body.
    let mut edited = event_json(&id, "customer.created", false);
    edited["data"]["object"]["name"] = json!("Someone else");
    let reply = app.deliver(edited.to_string().as_bytes()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["status"], "duplicate");
    // The logged body again, byte for byte: answered from the cache, with its position.
    let again = app.deliver(&logged).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json["status"], "duplicate");
    assert_eq!(again.json["event_id"], json!(id));
    assert_eq!(again.json["position"], first.json["position"]);
    assert_eq!(app.event_count().await, 1);
}

#[tokio::test]
async fn a_redelivered_body_that_differs_from_the_logged_one_is_reported_as_different_every_time() {
    // Logged by one instance; the other body arrives at another instance, which has not seen
    // the id, so its writer finds it logged.
    let (a, b) = TestApp::two_instances().await;
    let id = unique_id("evt");
    let first = a.deliver(&event(&id, "customer.created")).await;
    assert_eq!(first.json["status"], "recorded");
    let mut edited = event_json(&id, "customer.created", false);
    edited["data"]["object"]["name"] = json!("Someone else");
    let edited = edited.to_string().into_bytes();
    // The second copy must not be answered from b's cache as if it were the logged body.
    for _ in 0..2 {
        let reply = b.deliver(&edited).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json["status"], "duplicate");
        assert_eq!(reply.json["position"], first.json["position"]);
    }
    let logs = crate::helpers::captured_logs();
    let warnings = logs
        .lines()
        .filter(|l| l.contains(&id) && l.contains("with a different body"))
        .count();
    assert_eq!(warnings, 2, "{logs}");
    assert_eq!(a.event_count().await, 1);
}

#[tokio::test]
async fn a_batch_with_a_duplicate_and_new_events_records_only_the_new_ones() {
    let app = Arc::new(
        TestApp::builder()
            .env("DEDUPE_CACHE_SIZE", "0")
            .spawn()
            .await,
    );
    let old = event("evt_batch_old", "customer.created");
    assert_eq!(app.deliver(&old).await.status, 200);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let app = app.clone();
        let body = if i % 3 == 0 {
            old.clone()
        } else {
            event(&format!("evt_batch_{i}"), "invoice.paid")
        };
        tasks.spawn(async move { (i, app.deliver(&body).await) });
    }
    while let Some(result) = tasks.join_next().await {
        let (i, reply) = result.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text);
        let expected = if i % 3 == 0 { "duplicate" } else { "recorded" };
        assert_eq!(reply.json["status"], expected, "request {i}");
    }
    assert_eq!(app.event_count().await, 21);
}

#[tokio::test]
async fn twenty_concurrent_copies_of_one_event_leave_exactly_one_entry() {
    let app = Arc::new(TestApp::spawn().await);
    let body = Arc::new(event(&unique_id("evt"), "invoice.paid"));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (app, body) = (app.clone(), body.clone());
        tasks.spawn(async move { app.deliver(&body).await });
    }
    let mut recorded = 0;
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text);
        if reply.json["status"] == "recorded" {
            recorded += 1;
        }
    }
    assert_eq!(recorded, 1, "exactly one delivery wins the append");
    assert_eq!(app.event_count().await, 1);
}

#[tokio::test]
async fn two_instances_on_one_database_racing_on_the_same_events_record_each_once() {
    let database = TestDatabase::create().await;
    let a = Arc::new(TestApp::builder().database(database.clone()).spawn().await);
    let b = Arc::new(
        TestApp::builder()
            .database(database.clone())
            .env("STRIPE_WEBHOOK_SECRET", &a.secret)
            .spawn()
            .await,
    );
    let events: Vec<Arc<Vec<u8>>> = (0..25)
        .map(|i| {
            Arc::new(event(
                &format!("evt_race_{i}"),
                "customer.subscription.updated",
            ))
        })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for body in &events {
        for app in [&a, &b, &a, &b] {
            let (app, body) = (app.clone(), body.clone());
            tasks.spawn(async move { app.deliver(&body).await });
        }
    }
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    assert_eq!(a.event_count().await, 25);
    for i in 0..25 {
        let stored = a.audit(&format!("/api/audit/events/evt_race_{i}")).await;
        assert_eq!(stored.status, 200);
    }
}

#[tokio::test]
async fn a_rolled_secret_verifies_with_either_configured_secret() {
    let app = TestApp::builder()
        .env(
            "STRIPE_WEBHOOK_SECRET",
            "whsec_new_secret_aaaa, whsec_old_secret_bbbb",
        )
        .spawn()
        .await;
    let now = chrono::Utc::now().timestamp();
    let old = event("evt_signed_by_old", "customer.created");
    let header = signature::sign(&old, "whsec_old_secret_bbbb", now);
    let reply = app.post_webhook(&old, Some(&header)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    // During a roll Stripe sends one v1 per secret; the last one need not be the valid one.
    let both = event("evt_signed_by_both", "customer.created");
    let new_sig = signature::sign(&both, "whsec_new_secret_aaaa", now);
    let unknown_sig = signature::sign(&both, "whsec_unknown", now);
    let v1_unknown = unknown_sig.split_once(",").unwrap().1;
    let header = format!("{new_sig},{v1_unknown}");
    let reply = app.post_webhook(&both, Some(&header)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    let stored = app.audit("/api/audit/events/evt_signed_by_old").await;
    assert_eq!(stored.json["verification"]["secret_index"], 2);
    let fingerprint = stored.json["verification"]["secret_fingerprint"]
        .as_str()
        .unwrap();
    assert_eq!(fingerprint, signature::fingerprint("whsec_old_secret_bbbb"));
}

#[tokio::test]
async fn a_live_service_refuses_test_mode_events_and_accepts_live_ones() {
    let app = TestApp::builder()
        .env("STRIPE_SECRET_KEY", "sk_live_0123456789abcdef")
        .spawn()
        .await;
    let test_event = event_json("evt_testmode", "customer.created", false)
        .to_string()
        .into_bytes();
    let reply = app.deliver(&test_event).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.code(), "livemode_mismatch");
    let live_event = event_json("evt_livemode", "customer.created", true)
        .to_string()
        .into_bytes();
    let reply = app.deliver(&live_event).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(app.event_count().await, 1);
}

#[tokio::test]
async fn unknown_event_types_are_acknowledged_and_logged() {
    let app = TestApp::spawn().await;
    let reply = app
        .deliver(&event("evt_unknown_type", "brand_new.thing_happened"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["status"], "recorded");
    let upcoming = json!({
        "id": "evt_upcoming", "object": "event", "created": 1, "livemode": false,
        "type": "invoice.upcoming", "data": {"object": {"object": "invoice", "amount_due": 1500}}
    })
    .to_string()
    .into_bytes();
    let reply = app.deliver(&upcoming).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let stored = app.audit("/api/audit/events/evt_upcoming").await;
    assert_eq!(stored.json["object"]["id"], serde_json::Value::Null);
    assert_eq!(stored.json["object"]["type"], "invoice");
}

#[tokio::test]
async fn the_stored_payload_is_the_raw_body_and_its_hash_matches() {
    let app = TestApp::spawn().await;
    // Odd but valid formatting must survive byte for byte.
    let body = b"{ \"id\" : \"evt_raw\", \"object\":\"event\",\"type\":\"customer.updated\",\n\"livemode\":false,\"created\":1763800000,\n\"data\":{\"object\":{\"id\":\"cus_1\",\"object\":\"customer\",\"name\":\"Jenny\"}}}\n";
    assert_eq!(app.deliver(body).await.status, 200);
    let stored = stripe_ledger::event_log::get(&app.db, "evt_raw")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.payload.as_deref().unwrap().as_bytes(), body);
    use sha2::Digest as _;
    assert_eq!(
        stored.raw_body_sha256,
        hex::encode(sha2::Sha256::digest(body))
    );
    assert!(!stored.payload_redacted);
}

#[tokio::test]
async fn cardholder_names_are_redacted_before_storage_while_the_raw_hash_is_kept() {
    let app = TestApp::spawn().await;
    let body = json!({
        "id": "evt_charge", "object": "event", "type": "charge.succeeded", "livemode": false,
        "created": 1763800000, "api_version": "2025-03-31.basil",
        "data": {"object": {
            "id": "ch_1", "object": "charge", "amount": 1500, "currency": "usd",
            "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"},
            "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242"}}
        }}
    })
    .to_string()
    .into_bytes();
    assert_eq!(app.deliver(&body).await.status, 200);
    let stored = app.audit("/api/audit/events/evt_charge").await;
    assert_eq!(stored.json["payload_redacted"], true);
    assert_eq!(
        stored.json["payload"]["data"]["object"]["billing_details"]["name"],
        "[redacted]"
    );
    assert_eq!(
        stored.json["payload"]["data"]["object"]["billing_details"]["email"],
        "jenny@example.com"
    );
    assert!(!stored.text.contains("Jenny Rosen"));
    use sha2::Digest as _;
    assert_eq!(
        stored.json["verification"]["raw_body_sha256"],
        hex::encode(sha2::Sha256::digest(&body))
    );
}

#[tokio::test]
async fn a_blocked_database_answers_503_within_the_budget_and_the_retry_loses_nothing() {
    let app = TestApp::builder()
        .env("INGEST_TIMEOUT_MS", "300")
        .spawn()
        .await;
    let body = event(&unique_id("evt"), "invoice.payment_failed");
    let lock = crate::event_log::hold_write_lock(&app).await;

    let started = std::time::Instant::now();
    let reply = app.deliver(&body).await;
    let waited = started.elapsed();
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.code(), "storage_unavailable");
    assert_eq!(reply.headers["retry-after"], "1");
    assert!(
        waited < std::time::Duration::from_millis(1500),
        "answered after {waited:?}"
    );

    lock.release().await;
    // Stripe retries; the event is then in the log exactly once.
    let retry = app.deliver(&body).await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    assert_eq!(app.event_count().await, 1);
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let invoice = event["data"]["object"]["id"].as_str().unwrap();
    assert!(
        stripe_ledger::read_models::get(&app.db, Kind::Invoice, invoice)
            .await
            .unwrap()
            .is_some(),
        "the retried event is projected"
    );
}

#[tokio::test]
async fn a_closed_database_answers_503_not_500() {
    let app = TestApp::spawn().await;
    app.db.close().await;
    let reply = app.deliver(&event("evt_db_down", "customer.created")).await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.code(), "storage_unavailable");
    assert!(
        !reply.text.contains("pool"),
        "internal detail leaked: {}",
        reply.text
    );
}
