//! Stopping: SIGTERM under load loses no acknowledged event, a request that outlives the
//! deadline is answered 503, and the binary's background jobs (the outbox) run and stop.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use stripe_ledger::store::Kind;

use crate::helpers::{unique_id, TestApp, TestDatabase};
use crate::smtp_sink::SmtpSink;

const BIN: &str = env!("CARGO_BIN_EXE_stripe-ledger");
const SECRET: &str = "whsec_shutdown_test";

fn subscription_event(event_id: &str, sub: &str, cus: &str) -> Vec<u8> {
    json!({
        "id": event_id, "object": "event", "api_version": "2025-03-31.basil",
        "created": 1_763_800_000, "livemode": false, "type": "customer.subscription.created",
        "data": {"object": {"id": sub, "object": "subscription", "customer": cus,
            "status": "active", "metadata": {}, "cancel_at_period_end": false,
            "items": {"object": "list", "data": []}}}
    })
    .to_string()
    .into_bytes()
}

fn signed(body: &[u8]) -> String {
    stripe_ledger::stripe::signature::sign(body, SECRET, chrono::Utc::now().timestamp())
}

#[tokio::test]
async fn sigterm_under_load_exits_cleanly_and_every_acknowledged_event_is_logged_and_projected() {
    let database = TestDatabase::create().await;
    let sink = SmtpSink::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(unique_id("stripe-ledger-shutdown"));
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("stderr.log");
    let mut server = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &database.url)
        .env("LEDGER_SIGNING_KEY", crate::helpers::TEST_SIGNING_SEED)
        .env("STRIPE_WEBHOOK_SECRET", SECRET)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "json")
        .env("SMTP_URL", sink.url())
        .env("MAIL_FROM", "billing@example.com")
        .env("OUTBOX_INTERVAL_MS", "100")
        .env("SHUTDOWN_TIMEOUT_SECS", "10")
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the server did not become ready");

    // The outbox worker runs inside `serve`: a new subscriber is welcomed without anyone asking.
    let cus = unique_id("cus");
    let customer = json!({
        "id": unique_id("evt"), "object": "event", "api_version": "2025-03-31.basil",
        "created": 1_763_800_000, "livemode": false, "type": "customer.created",
        "data": {"object": {"id": cus, "object": "customer", "email": "served@example.com"}}
    })
    .to_string()
    .into_bytes();
    let request_id = unique_id("req");
    let first_event = unique_id("evt");
    for (body, rid) in [
        (customer, None),
        (
            subscription_event(&first_event, &unique_id("sub"), &cus),
            Some(request_id.clone()),
        ),
    ] {
        let mut request = client
            .post(format!("{base}/webhooks/stripe"))
            .header("stripe-signature", signed(&body))
            .body(body);
        if let Some(rid) = rid {
            request = request.header("x-request-id", rid);
        }
        assert_eq!(request.send().await.unwrap().status(), 200);
    }
    let welcomed = sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(welcomed.len(), 1);
    assert_eq!(welcomed[0].rcpt_to, vec!["served@example.com".to_owned()]);

    // Load: eight senders until the server stops answering; SIGTERM in the middle of it.
    let outcomes: Arc<Mutex<BTreeMap<String, (String, u16)>>> = Arc::default();
    let mut senders = Vec::new();
    for _ in 0..8 {
        let client = reqwest::Client::new();
        let url = format!("{base}/webhooks/stripe");
        let outcomes = outcomes.clone();
        senders.push(tokio::spawn(async move {
            for _ in 0..2000 {
                let event_id = unique_id("evt");
                let sub = unique_id("sub");
                let body = subscription_event(&event_id, &sub, &unique_id("cus"));
                match client
                    .post(&url)
                    .header("stripe-signature", signed(&body))
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) => {
                        outcomes
                            .lock()
                            .unwrap()
                            .insert(event_id, (sub, r.status().as_u16()));
                    }
                    // Refused or reset: the server has stopped; Stripe would retry later.
                    Err(_) => return,
                }
            }
        }));
    }
    let load_deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while outcomes.lock().unwrap().len() < 200 {
        assert!(
            tokio::time::Instant::now() < load_deadline,
            "the server stopped answering before SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || server.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status}");
    for sender in senders {
        sender.await.unwrap();
    }

    let outcomes = outcomes.lock().unwrap().clone();
    let acknowledged: Vec<(&String, &String)> = outcomes
        .iter()
        .filter(|(_, (_, status))| *status == 200)
        .map(|(id, (sub, _))| (id, sub))
        .collect();
    assert!(acknowledged.len() >= 200, "{}", acknowledged.len());
    for (_, status) in outcomes.values() {
        assert!(
            *status == 200 || *status == 503,
            "a stop answers 200 or 503, never {status}"
        );
    }
    let settings = stripe_ledger::config::DatabaseConfig::from_lookup(
        &stripe_ledger::config::MapEnv([("DATABASE_URL".to_owned(), database.url.clone())].into()),
    )
    .unwrap();
    let db = stripe_ledger::store::Db::connect(&settings.target, &settings.pool)
        .await
        .unwrap();
    for (event_id, sub) in acknowledged {
        assert!(
            stripe_ledger::event_log::get(&db, event_id)
                .await
                .unwrap()
                .is_some(),
            "acknowledged {event_id} is not in the log"
        );
        assert!(
            stripe_ledger::read_models::get(&db, Kind::Subscription, sub)
                .await
                .unwrap()
                .is_some(),
            "acknowledged {event_id} is not projected"
        );
    }
    db.close().await;

    // JSON logs: the request's lines carry its id and the event's id; the stop is logged.
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let ours: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == request_id.as_str())
        .collect();
    assert!(!ours.is_empty(), "no line for request {request_id}");
    for line in ours {
        assert_eq!(
            line["span"]["stripe_event_id"],
            first_event.as_str(),
            "{line}"
        );
    }
    assert!(lines.iter().any(|l| l["fields"]["message"] == "stopped"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_request_still_running_at_the_shutdown_deadline_gets_503_and_its_retry_loses_nothing() {
    let mut app = TestApp::builder()
        .env("SHUTDOWN_TIMEOUT_SECS", "1")
        .env("INGEST_TIMEOUT_MS", "8000")
        .spawn()
        .await;
    let event_id = unique_id("evt");
    let sub = unique_id("sub");
    let body = subscription_event(&event_id, &sub, &unique_id("cus"));
    let lock = crate::event_log::hold_write_lock(&app).await;
    let in_flight = {
        let client = app.client.clone();
        let url = app.url("/webhooks/stripe");
        let signature = app.sign(&body);
        let body = body.clone();
        tokio::spawn(async move {
            let r = client
                .post(url)
                .header("stripe-signature", signature)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (
                status,
                serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap(),
            )
        })
    };
    // Let the request reach the blocked database, then stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    app.stop().await;
    let (status, reply) = in_flight.await.unwrap();
    assert_eq!(status, 503, "{reply}");
    assert_eq!(reply["error"]["code"], "shutting_down");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    lock.release().await;
    // Stripe retries against another instance: exactly one entry, projected.
    let next = TestApp::builder()
        .database(app.database.clone())
        .spawn()
        .await;
    let retry = next.deliver(&body).await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    assert_eq!(next.event_count().await, 1);
    assert!(
        stripe_ledger::read_models::get(&next.db, Kind::Subscription, &sub)
            .await
            .unwrap()
            .is_some()
    );
}
