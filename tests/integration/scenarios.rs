//! The scenario fixtures (`tests/fixtures/scenarios/*.jsonl`, basil-shaped events as Stripe
//! sends them) posted through the real endpoint; the resulting read models are golden files.
//! Each scenario is also delivered reversed with every event twice, and must end the same, and
//! a rebuild must equal the live read models.

use serde_json::{json, Value};

use crate::helpers::{TestApp, READ_TOKEN};

fn scenarios() -> Vec<(String, Vec<Vec<u8>>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scenarios");
    let mut out: Vec<(String, Vec<Vec<u8>>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let lines = std::fs::read_to_string(&p)
                .unwrap()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.as_bytes().to_vec())
                .collect();
            (name, lines)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 7, "scenario fixtures are missing");
    out
}

/// Everything an app service can read after the scenario, at the scenario's "now".
async fn read_models(app: &TestApp, users: &[String]) -> Value {
    let get = |path: String| async move { app.get(&path, Some(READ_TOKEN)).await.json };
    let mut entitlements = serde_json::Map::new();
    for user in users {
        entitlements.insert(user.clone(), get(format!("/api/entitlements/{user}")).await);
    }
    json!({
        "customers": get("/api/customers?limit=100".into()).await["data"],
        "subscriptions": get("/api/subscriptions?limit=100".into()).await["data"],
        "invoices": get("/api/invoices?limit=100".into()).await["data"],
        "orders": get("/api/orders?limit=100".into()).await["data"],
        "entitlements": entitlements,
    })
}

/// What `/api/checkout` logs (source `api_response`) before Stripe's events: the customer it
/// created and each Checkout Session as Stripe returned it at creation. Only this evidence
/// links a user (docs/adr/0013); the fixtures hold Stripe's events alone.
pub async fn log_what_checkout_created(app: &TestApp, events: &[Vec<u8>]) {
    use stripe_ledger::event_log::{self, Source};
    let mut seen = std::collections::BTreeSet::new();
    for e in events {
        let v: Value = serde_json::from_slice(e).unwrap();
        let mut object = v["data"]["object"].clone();
        match (v["type"].as_str().unwrap(), object["object"].as_str()) {
            ("customer.created", _) => {}
            (t, Some("checkout.session")) if t.starts_with("checkout.session.") => {
                object["status"] = json!("open");
                object["payment_status"] = json!("unpaid");
                object["subscription"] = Value::Null;
                object["payment_intent"] = Value::Null;
            }
            _ => continue,
        }
        if !seen.insert(object["id"].as_str().unwrap().to_owned()) {
            continue;
        }
        let at = chrono::DateTime::from_timestamp(v["created"].as_i64().unwrap(), 0).unwrap();
        let entry = event_log::object_snapshot_entry(&object, Source::ApiResponse, at).unwrap();
        let position = event_log::append(&app.db, &entry).await.unwrap().position();
        let projected = stripe_ledger::projector::project_each(
            &app.db,
            &[stripe_ledger::projector::Entry {
                position,
                event_id: entry.envelope.id.clone(),
                event_type: entry.envelope.event_type.clone(),
                created: entry.envelope.created,
                payload: entry.payload.clone(),
                origin: ledger_projections::Origin::Service,
            }],
        )
        .await;
        assert!(projected.iter().all(Result::is_ok), "{projected:?}");
    }
}

fn users_and_now(events: &[Vec<u8>]) -> (Vec<String>, i64) {
    let mut users = Vec::new();
    let mut now = 0;
    for e in events {
        let v: Value = serde_json::from_slice(e).unwrap();
        now = now.max(v["created"].as_i64().unwrap());
        let o = &v["data"]["object"];
        for user in [&o["client_reference_id"], &o["metadata"]["user_id"]] {
            if let Some(u) = user.as_str() {
                if !users.contains(&u.to_owned()) {
                    users.push(u.to_owned());
                }
            }
        }
    }
    // A minute after the last event: inside the current period of every scenario.
    (users, now + 60)
}

#[tokio::test]
async fn every_scenario_projects_to_its_golden_read_models_in_any_delivery_order() {
    for (name, events) in scenarios() {
        let (users, now) = users_and_now(&events);
        let in_order = TestApp::builder().clock_at(now).spawn().await;
        log_what_checkout_created(&in_order, &events).await;
        for (i, e) in events.iter().enumerate() {
            let reply = in_order.deliver(e).await;
            assert_eq!(reply.status, 200, "{name} line {}: {}", i + 1, reply.text);
        }
        let models = read_models(&in_order, &users).await;
        crate::golden().bind(|| insta::assert_json_snapshot!(format!("scenario_{name}"), models));

        // Reversed, with every event delivered twice: the same read models.
        let shuffled = TestApp::builder().clock_at(now).spawn().await;
        for e in events.iter().rev().chain(events.iter()) {
            let reply = shuffled.deliver(e).await;
            assert_eq!(reply.status, 200, "{name}: {}", reply.text);
        }
        // Our own evidence last this time: the links must not depend on the order.
        log_what_checkout_created(&shuffled, &events).await;
        assert_eq!(
            read_models(&shuffled, &users).await,
            models,
            "{name}: order changed the result"
        );

        let report = stripe_ledger::projector::rebuild(
            &in_order.db,
            &stripe_ledger::projector::RebuildOptions {
                check_only: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(
            report.differences.is_empty(),
            "{name}: {:?}",
            report.differences
        );
    }
}
