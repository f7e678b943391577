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
