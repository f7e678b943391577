//! History, as-of and explain (issue 13) through the API, on both backends: the seed's
//! scenarios as goldens, an entitlement before, during and after grace, a reconciliation repair
//! in history, the failed-payment rule explained, and every bad input with its stable code.

use serde_json::{json, Value};
use stripe_ledger::stripe::client::StripeClient;
use stripe_ledger::stripe::keys::SecretKey;

use crate::fake_stripe::FakeStripe;
use crate::helpers::{TestApp, READ_TOKEN};
use crate::stripe_objects::{customer, event, invoice, subscription, MONTH, T0};

const DAY: i64 = 86_400;

fn scenario(name: &str) -> Vec<Vec<u8>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scenarios")
        .join(format!("{name}.jsonl"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.as_bytes().to_vec())
        .collect()
}

/// Receive times differ from run to run; everything else in a history is the log's.
fn without_receive_times(mut v: Value) -> Value {
    if let Some(items) = v["data"].as_array_mut() {
        for item in items {
            item["received_at"] = json!("[received_at]");
        }
    }
    v
}

/// Inclusion proofs depend on how far the sealer has got (a background task): left out of
/// goldens, checked on their own.
fn without_proofs(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("inclusion_proof");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// Every page of a history, two entries a page, following the cursors.
async fn all_pages(app: &TestApp, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut url = format!("{path}?limit=2");
    loop {
        let page = app.get(&url, Some(READ_TOKEN)).await;
        assert_eq!(page.status, 200, "{url}: {}", page.text);
        items.extend(page.json["data"].as_array().unwrap().iter().cloned());
        match page.json["next_cursor"].as_str() {
            Some(c) => url = format!("{path}?limit=2&cursor={c}"),
            None => return items,
        }
    }
}

async fn ids(app: &TestApp, list: &str) -> Vec<String> {
    let page = app
        .get(&format!("/api/{list}?limit=100"), Some(READ_TOKEN))
        .await;
    page.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_scenario_has_golden_histories_and_explanations_that_a_rebuild_keeps() {
    for name in [
        "happy_path_checkout",
        "card_declined",
        "three_d_secure",
        "webhook_retry",
        "upgrade",
        "cancellation",
        "failed_payment_retry",
        "failed_payment_exhausted",
        "one_time_purchase",
    ] {
        let events = scenario(name);
        let now = events
            .iter()
            .map(|e| {
                serde_json::from_slice::<Value>(e).unwrap()["created"]
                    .as_i64()
                    .unwrap()
            })
            .max()
            .unwrap()
            + 60;
        let app = TestApp::builder().clock_at(now).spawn().await;
        crate::scenarios::log_what_checkout_created(&app, &events).await;
        for e in &events {
            assert_eq!(app.deliver(e).await.status, 200, "{name}");
        }
        let mut golden = serde_json::Map::new();
        for list in ["customers", "subscriptions", "invoices", "orders"] {
            for id in ids(&app, list).await {
                let path = format!("/api/{list}/{id}/history");
                let whole = app
                    .get(&format!("{path}?limit=100"), Some(READ_TOKEN))
                    .await;
                assert_eq!(whole.status, 200, "{path}: {}", whole.text);
                assert_eq!(
                    all_pages(&app, &path).await,
                    whole.json["data"].as_array().unwrap().clone(),
                    "{path}: pages"
                );
                golden.insert(format!("{list}/{id}"), without_receive_times(whole.json));
            }
        }
        let users: Vec<String> = {
            let mut u: Vec<String> = Vec::new();
            for c in app
                .get("/api/customers?limit=100", Some(READ_TOKEN))
                .await
                .json["data"]
                .as_array()
                .unwrap()
            {
                if let Some(user) = c["user_id"].as_str() {
                    u.push(user.to_owned());
                }
            }
            u
        };
        for user in &users {
            let explained = app
                .get(
                    &format!("/api/entitlements/{user}/explain"),
                    Some(READ_TOKEN),
                )
                .await;
            assert_eq!(explained.status, 200, "{}", explained.text);
            // The same decision as the entitlement endpoint, from the same fold.
            let plain = app
                .get(&format!("/api/entitlements/{user}"), Some(READ_TOKEN))
                .await;
            for field in ["access", "reason", "until", "subscription_id"] {
                assert_eq!(
                    explained.json[field], plain.json[field],
                    "{name} {user} {field}"
                );
            }
            golden.insert(format!("explain/{user}"), without_proofs(explained.json));
        }
        // A rebuild fills `object_touches` for entries that have none (a log from before
        // migration 0008): the same histories, from touches the rebuild wrote itself.
        let forgotten = crate::event_log::execute(&app.db, "DELETE FROM object_touches")
            .await
            .unwrap();
        assert!(forgotten > 0, "{name}: ingestion recorded touches");
        crate::helpers::rebuild(&app.db, 3).await;
        for (key, before) in &golden {
            if let Some(path) = key.strip_prefix("explain/") {
                let after = app
                    .get(
                        &format!("/api/entitlements/{path}/explain"),
                        Some(READ_TOKEN),
                    )
                    .await;
                assert_eq!(
                    &without_proofs(after.json),
                    before,
                    "{name}: {key} after a rebuild"
                );
                continue;
            }
            let after = app
                .get(&format!("/api/{key}/history?limit=100"), Some(READ_TOKEN))
                .await;
            assert_eq!(&without_receive_times(after.json), before, "{name}: {key}");
        }
        crate::golden().bind(|| insta::assert_json_snapshot!(format!("history_{name}"), golden));
    }
}

/// A subscription renewed on T0 + MONTH whose renewal payment fails, with no subscription
/// update ever (the third-party emulator of issue 13), then a second attempt that fails too.
fn failed_renewal() -> Vec<Vec<u8>> {
    let end = T0 + MONTH;
    vec![
        event(
            "evt_h_1",
            "customer.created",
            T0,
            customer("cus_h", Some("user_h")),
        ),
        event(
            "evt_h_2",
            "customer.subscription.created",
            T0 + 1,
            subscription("sub_h", "cus_h", "active", end, false),
        ),
        event(
            "evt_h_3",
            "invoice.payment_failed",
            end + 60,
            invoice("sub_h", "cus_h", end + MONTH, "open", 1),
        ),
        event(
            "evt_h_4",
            "invoice.payment_failed",
            end + 3 * DAY,
            invoice("sub_h", "cus_h", end + MONTH, "open", 2),
        ),
    ]
}

#[tokio::test]
async fn a_failed_renewal_without_a_subscription_update_gives_grace_then_denied_explained() {
    let events = failed_renewal();
    let failed_at = T0 + MONTH + 60;
    let app = TestApp::builder().clock_at(failed_at + DAY).spawn().await;
    crate::scenarios::log_what_checkout_created(&app, &events).await;
    for e in &events {
        assert_eq!(app.deliver(e).await.status, 200);
    }
    let sub = app.get("/api/subscriptions/sub_h", Some(READ_TOKEN)).await;
    assert_eq!(
        sub.json["status"], "past_due",
        "derived by the failed-payment rule"
    );
    let now = app.get("/api/entitlements/user_h", Some(READ_TOKEN)).await;
    assert_eq!(now.json["access"], "grace", "{}", now.text);

    let at = |secs: i64| {
        chrono::DateTime::from_timestamp(secs, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let mut golden = serde_json::Map::new();
    for (label, secs, access) in [
        ("before", failed_at - 1, "granted"),
        ("during", failed_at + DAY, "grace"),
        ("after", failed_at + 7 * DAY, "denied"),
    ] {
        let path = format!("/api/entitlements/user_h?as_of_created={}", at(secs));
        let e = app.get(&path, Some(READ_TOKEN)).await;
        assert_eq!(e.status, 200, "{}", e.text);
        assert_eq!(e.json["access"], access, "{label}: {}", e.text);
        let explained = app
            .get(
                &format!(
                    "/api/entitlements/user_h/explain?as_of_created={}",
                    at(secs)
                ),
                Some(READ_TOKEN),
            )
            .await;
        assert_eq!(explained.json["access"], access, "{label}");
        golden.insert(label.to_owned(), without_proofs(explained.json));
    }
    let during = &golden["during"];
    let sentence = during["explanation"].as_str().unwrap();
    assert!(
        sentence.contains("derived from a failed renewal payment")
            && sentence.contains("7 days from the first failed payment on in_sub_h_"),
        "{sentence}"
    );
    let cited: Vec<&str> = during["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["event_id"].as_str().unwrap())
        .collect();
    // The snapshot, and the first failure: it derived the status and starts the grace.
    for id in ["evt_h_2", "evt_h_3"] {
        assert!(cited.contains(&id), "{id} not cited: {cited:?}");
    }
    // After the second failure, it is the one newer than the snapshot that derives the status.
    let after: Vec<&str> = golden["after"]["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["event_id"].as_str().unwrap())
        .collect();
    assert!(after.contains(&"evt_h_4"), "{after:?}");
    // The subscription's history shows the derivation on the failure that caused it.
    let history = app
        .get("/api/subscriptions/sub_h/history", Some(READ_TOKEN))
        .await;
    let derived = history.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["event_id"] == "evt_h_3")
        .expect("the invoice event touched the subscription");
    assert_eq!(derived["effect"], "applied");
    assert!(derived["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["field"] == "status" && c["from"] == "active" && c["to"] == "past_due"));
    golden.insert("history".into(), without_receive_times(history.json));

    // Once sealed and checkpointed, every cited entry carries its inclusion proof.
    stripe_ledger::sealer::seal_all(&app.db).await.unwrap();
    let sealing = app.sealing.as_ref().expect("test apps seal");
    stripe_ledger::sealer::checkpoint(&app.db, sealing, 1_764_000_000)
        .await
        .unwrap();
    let explained = app
        .get("/api/entitlements/user_h/explain", Some(READ_TOKEN))
        .await;
    for c in explained.json["inputs"].as_array().unwrap() {
        let proof = &c["inclusion_proof"];
        assert_eq!(proof["event_id"], c["event_id"], "{}", explained.text);
        assert_eq!(proof["position"], c["position"]);
        assert!(proof["checkpoint"].is_string(), "{proof}");
    }
    crate::golden().bind(|| insta::assert_json_snapshot!("history_failed_renewal", golden));

    // Paying the invoice restores access.
    let paid = event(
        "evt_h_5",
        "invoice.paid",
        T0 + MONTH + 4 * DAY,
        invoice("sub_h", "cus_h", T0 + 2 * MONTH, "paid", 3),
    );
    assert_eq!(app.deliver(&paid).await.status, 200);
    let e = app.get("/api/entitlements/user_h", Some(READ_TOKEN)).await;
    assert_eq!(e.json["access"], "granted", "{}", e.text);
}

#[tokio::test]
async fn a_single_object_as_of_a_position_a_time_or_stripes_time_names_its_cut() {
    let events = failed_renewal();
    let app = TestApp::builder().clock_at(T0 + 2 * MONTH).spawn().await;
    let mut positions = Vec::new();
    for e in &events {
        let reply = app.deliver(e).await;
        assert_eq!(reply.status, 200);
        positions.push(app.event_count().await);
    }
    // As of the subscription's creation: active; as of the first failure: past_due (derived).
    let created = positions[1];
    let s = app
        .get(
            &format!("/api/subscriptions/sub_h?as_of_position={created}"),
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!((s.status, &s.json["status"]), (200, &json!("active")));
    assert_eq!(s.json["as_of"]["position"], created);
    let s = app
        .get(
            &format!("/api/subscriptions/sub_h?as_of_position={}", positions[2]),
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(s.json["status"], "past_due");
    // The invoice as of Stripe's time between the two failures: one attempt.
    let between = chrono::DateTime::from_timestamp(T0 + MONTH + DAY, 0)
        .unwrap()
        .to_rfc3339();
    let i = app
        .get(
            &format!(
                "/api/invoices/in_sub_h_{}?as_of_created={}",
                T0 + 2 * MONTH,
                between.replace('+', "%2B")
            ),
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(i.status, 200, "{}", i.text);
    assert_eq!(i.json["attempt_count"], 1);
    assert_eq!(i.json["as_of"]["position"], positions[2]);
    // Received time: now includes everything.
    let later = chrono::Utc::now() + chrono::Duration::seconds(5);
    let c = app
        .get(
            &format!(
                "/api/customers/cus_h?as_of={}",
                later.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(c.status, 200, "{}", c.text);
    assert_eq!(c.json["as_of"]["position"], positions[0]);
    // Before the invoice existed: 404 with its own code.
    let i = app
        .get(
            &format!(
                "/api/invoices/in_sub_h_{}?as_of_position={}",
                T0 + 2 * MONTH,
                positions[1]
            ),
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!((i.status, i.code()), (404, "not_yet_existing"));
    // Without a cut, the read model: the same body as folded from the log at the end.
    let now = app.get("/api/subscriptions/sub_h", Some(READ_TOKEN)).await;
    let mut folded = app
        .get(
            &format!("/api/subscriptions/sub_h?as_of_position={}", positions[3]),
            Some(READ_TOKEN),
        )
        .await
        .json;
    folded.as_object_mut().unwrap().remove("as_of");
    assert_eq!(folded, now.json);
}

#[tokio::test]
async fn a_reconciliation_repair_is_visible_in_history_with_source_reconcile_repair() {
    let fake = FakeStripe::start().await;
    let app = TestApp::spawn().await;
    let end = T0 + MONTH;
    for e in [
        event("evt_hr_1", "customer.created", T0, customer("cus_hr", None)),
        event(
            "evt_hr_2",
            "customer.subscription.created",
            T0,
            subscription("sub_hr", "cus_hr", "active", end, false),
        ),
    ] {
        assert_eq!(app.deliver(&e).await.status, 200);
    }
    fake.set_list(
        "/v1/subscriptions",
        vec![subscription("sub_hr", "cus_hr", "past_due", end, false)],
    );
    fake.set_list("/v1/customers", vec![customer("cus_hr", None)]);
    let client = StripeClient::new(
        &fake.base_url,
        SecretKey::parse("sk_test_hr0123").unwrap(),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let report = stripe_ledger::reconcile::reconcile(&app.db, &client, true)
        .await
        .unwrap();
    assert_eq!(report.repaired, 1);
    let history = app
        .get("/api/subscriptions/sub_hr/history", Some(READ_TOKEN))
        .await;
    let items = history.json["data"].as_array().unwrap();
    let repair = items.last().unwrap();
    assert_eq!(repair["source"], "reconcile_repair", "{}", history.text);
    assert_eq!(repair["type"], "ledger.object_snapshot");
    assert_eq!(repair["effect"], "applied");
    assert!(repair["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["field"] == "status" && c["from"] == "active" && c["to"] == "past_due"));
    // As of the position before the repair: what the subscription looked like before it.
    let before = items[items.len() - 2]["position"].as_i64().unwrap();
    let s = app
        .get(
            &format!("/api/subscriptions/sub_hr?as_of_position={before}"),
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(s.json["status"], "active");
}

#[tokio::test]
async fn bad_history_and_as_of_input_gets_a_4xx_with_a_stable_code() {
    let app = TestApp::spawn().await;
    for e in failed_renewal() {
        assert_eq!(app.deliver(&e).await.status, 200);
    }
    let last = app.event_count().await;
    let cases: Vec<(String, u16, &str)> = vec![
        ("/api/widgets/w_1/history".into(), 404, "unknown_kind"),
        ("/api/payments/pi_1/history".into(), 404, "unknown_kind"),
        (
            "/api/subscriptions/sub_nope/history".into(),
            404,
            "subscription_not_found",
        ),
        ("/api/invoices/in_nope".into(), 404, "invoice_not_found"),
        ("/api/orders/cs_nope".into(), 404, "order_not_found"),
        ("/api/orders/cs_nope/history".into(), 404, "order_not_found"),
        (
            "/api/subscriptions/sub_h?as_of_position=1&as_of_created=2026-01-01T00:00:00Z".into(),
            400,
            "contradictory_as_of",
        ),
        (
            "/api/entitlements/user_h?as_of=2026-01-01T00:00:00Z&as_of_position=1".into(),
            400,
            "contradictory_as_of",
        ),
        (
            "/api/subscriptions/sub_h?as_of_position=-1".into(),
            400,
            "invalid_as_of",
        ),
        (
            "/api/subscriptions/sub_h?as_of_position=%2B1".into(),
            400,
            "invalid_as_of",
        ),
        (
            "/api/subscriptions/sub_h?as_of=yesterday".into(),
            400,
            "invalid_as_of",
        ),
        (
            "/api/customers/cus_h?as_of_created=2026-13-01T00:00:00Z".into(),
            400,
            "invalid_as_of",
        ),
        (
            format!("/api/customers/cus_h?as_of_created={}", "9".repeat(100)),
            400,
            "invalid_as_of",
        ),
        (
            format!("/api/subscriptions/sub_h?as_of_position={}", last + 1),
            400,
            "as_of_beyond_log",
        ),
        (
            format!(
                "/api/entitlements/user_h/explain?as_of_position={}",
                last + 10
            ),
            400,
            "as_of_beyond_log",
        ),
        (
            "/api/subscriptions/sub_h?as_of_position=0".into(),
            404,
            "not_yet_existing",
        ),
        (
            "/api/subscriptions/sub_h/history?as_of_position=0".into(),
            404,
            "not_yet_existing",
        ),
        (
            "/api/subscriptions/sub_h?status=active".into(),
            400,
            "unknown_parameter",
        ),
        (
            "/api/subscriptions/sub_h/history?cursor=bm9wZQ".into(),
            400,
            "invalid_cursor",
        ),
        (
            "/api/subscriptions/sub_h/history?limit=0".into(),
            400,
            "invalid_parameter",
        ),
        (
            "/api/subscriptions/%00/history".into(),
            400,
            "invalid_parameter",
        ),
        (
            "/api/entitlements/user_h/explain?as_of=%00".into(),
            400,
            "invalid_as_of",
        ),
    ];
    for (path, status, code) in cases {
        let reply = app.get(&path, Some(READ_TOKEN)).await;
        assert_eq!(
            (reply.status, reply.code()),
            (status, code),
            "{path}: {}",
            reply.text
        );
    }
    // A cursor of one history is refused by another.
    let page = app
        .get("/api/subscriptions/sub_h/history?limit=1", Some(READ_TOKEN))
        .await;
    let cursor = page.json["next_cursor"].as_str().unwrap();
    let other = app
        .get(
            &format!("/api/customers/cus_h/history?cursor={cursor}"),
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!((other.status, other.code()), (400, "invalid_cursor"));
    // Without a token, nothing.
    for path in [
        "/api/subscriptions/sub_h/history",
        "/api/entitlements/user_h/explain",
        "/api/invoices/in_nope",
    ] {
        assert_eq!(app.get(path, None).await.status, 401, "{path}");
    }
}

#[tokio::test]
async fn the_cli_prints_history_and_explain_as_text_escaped_or_as_the_api_body() {
    use stripe_ledger::cli::{AsOfArgs, ExplainArgs, HistoryArgs, OutputFormat};
    let events = failed_renewal();
    let app = TestApp::builder()
        .clock_at(T0 + MONTH + 2 * DAY)
        .spawn()
        .await;
    crate::scenarios::log_what_checkout_created(&app, &events).await;
    for e in &events {
        assert_eq!(app.deliver(e).await.status, 200);
    }
    // A hostile email (an escape sequence) reaches the history's changes.
    let mut hostile = customer("cus_h", Some("user_h"));
    hostile["email"] = json!("\u{1b}[31mred@example.com");
    let e = event("evt_h_9", "customer.updated", T0 + 10, hostile);
    assert_eq!(app.deliver(&e).await.status, 200);

    let none = AsOfArgs {
        as_of: None,
        as_of_created: None,
    };
    let mut text = Vec::new();
    let args = HistoryArgs {
        kind: "customer".into(),
        id: "cus_h".into(),
        as_of: none.clone(),
        format: OutputFormat::Text,
    };
    let code = stripe_ledger::cli::history(&app.db, &args, &mut text)
        .await
        .unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let text = String::from_utf8(text).unwrap();
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(text.contains("evt_h_9") && text.contains("email"), "{text}");

    let mut json_out = Vec::new();
    let args = HistoryArgs {
        kind: "subscriptions".into(),
        id: "sub_h".into(),
        as_of: none.clone(),
        format: OutputFormat::Json,
    };
    stripe_ledger::cli::history(&app.db, &args, &mut json_out)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&json_out).unwrap();
    let api = app
        .get(
            "/api/subscriptions/sub_h/history?limit=100",
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(body, api.json, "--format json is the API's body");

    let mut text = Vec::new();
    let args = ExplainArgs {
        user_id: "user_h".into(),
        as_of: AsOfArgs {
            as_of: None,
            as_of_created: Some("2025-12-23T10:00:00Z".into()),
        },
        grace_days: 7,
        format: OutputFormat::Text,
    };
    let now = T0 + MONTH + 2 * DAY;
    stripe_ledger::cli::explain(&app.db, &args, now, &mut text)
        .await
        .unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.starts_with("user_h: grace (past_due_grace)"), "{text}");
    assert!(text.contains("set by evt_h_3"), "{text}");

    // Bad input: the API's codes, exit 2 (usage) or 1 (not found).
    for (as_of, kind, expected) in [
        (Some("yesterday"), "subscription", 2),
        (None, "widget", 1),
        (Some("0"), "subscription", 1),
    ] {
        let args = HistoryArgs {
            kind: kind.into(),
            id: "sub_h".into(),
            as_of: AsOfArgs {
                as_of: as_of.map(str::to_owned),
                as_of_created: None,
            },
            format: OutputFormat::Text,
        };
        let code = stripe_ledger::cli::history(&app.db, &args, &mut Vec::new())
            .await
            .unwrap();
        assert_eq!(
            code,
            std::process::ExitCode::from(expected),
            "{as_of:?} {kind}"
        );
    }
}

#[tokio::test]
async fn the_cli_cuts_by_position_or_receive_time_exactly_as_the_api_and_explain_json_is_the_api_body(
) {
    use stripe_ledger::cli::{AsOfArgs, ExplainArgs, HistoryArgs, OutputFormat};
    let events = failed_renewal();
    let now = T0 + MONTH + 2 * DAY;
    let app = TestApp::builder().clock_at(now).spawn().await;
    crate::scenarios::log_what_checkout_created(&app, &events).await;
    for e in &events {
        assert_eq!(app.deliver(e).await.status, 200);
    }
    let all = app
        .get(
            "/api/subscriptions/sub_h/history?limit=100",
            Some(READ_TOKEN),
        )
        .await;
    let items = all.json["data"].as_array().unwrap().clone();
    let entry = |event_id: &str| {
        items
            .iter()
            .find(|i| i["event_id"] == event_id)
            .unwrap_or_else(|| panic!("{event_id} in {items:?}"))
            .clone()
    };
    // Cut at the subscription's creation, and at the first failed payment: access is evaluated
    // at the cut entry's receive time (this app's clock, two days after the failure).
    let created = entry("evt_h_2");
    let failed = entry("evt_h_3");
    for (at, reason) in [
        (&created, "subscription_active"),
        (&failed, "past_due_grace"),
    ] {
        let position = at["position"].as_i64().unwrap();
        let received = at["received_at"].as_str().unwrap().to_owned();
        let cuts = [
            (position.to_string(), format!("as_of_position={position}")),
            (
                received.clone(),
                format!("as_of={}", received.replace('+', "%2B")),
            ),
        ];
        for (cli_as_of, api_param) in cuts {
            let as_of = AsOfArgs {
                as_of: Some(cli_as_of.clone()),
                as_of_created: None,
            };
            let mut out = Vec::new();
            let args = HistoryArgs {
                kind: "subscription".into(),
                id: "sub_h".into(),
                as_of: as_of.clone(),
                format: OutputFormat::Json,
            };
            stripe_ledger::cli::history(&app.db, &args, &mut out)
                .await
                .unwrap();
            let path = format!("/api/subscriptions/sub_h/history?limit=100&{api_param}");
            let api = app.get(&path, Some(READ_TOKEN)).await;
            assert_eq!(api.status, 200, "{path}: {}", api.json);
            let body: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(body, api.json, "history --as-of {cli_as_of} is {path}");
            let cut: Vec<i64> = body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["position"].as_i64().unwrap())
                .collect();
            assert!(
                cut.iter().all(|p| *p <= position),
                "{cut:?} after {position}"
            );
            assert!(
                cut.contains(&position) && cut.len() < items.len(),
                "{cut:?}"
            );

            let mut out = Vec::new();
            let args = ExplainArgs {
                user_id: "user_h".into(),
                as_of,
                grace_days: 7,
                format: OutputFormat::Json,
            };
            stripe_ledger::cli::explain(&app.db, &args, now, &mut out)
                .await
                .unwrap();
            let path = format!("/api/entitlements/user_h/explain?{api_param}");
            let api = app.get(&path, Some(READ_TOKEN)).await;
            assert_eq!(api.status, 200, "{path}: {}", api.json);
            let body: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(body, api.json, "explain --as-of {cli_as_of} is {path}");
            assert_eq!(body["reason"], reason, "{cli_as_of}: {body}");
            let plain = app
                .get(
                    &format!("/api/entitlements/user_h?{api_param}"),
                    Some(READ_TOKEN),
                )
                .await;
            assert_eq!(plain.status, 200, "{}", plain.json);
            assert_eq!(
                (&plain.json["access"], &plain.json["reason"]),
                (&body["access"], &body["reason"]),
                "the entitlement as of {api_param} is the explained one"
            );
        }
    }
}
