//! `trigger <type>` (built-in basil sequences with fresh ids) and `go-live-check`, against the
//! real app.

use std::process::ExitCode;

use serde_json::Value;
use stripe_ledger::cli::{self, GoLiveArgs, TriggerArgs};
use stripe_ledger::trigger::catalog::{self, FixtureOptions, TriggerType};
use stripe_ledger::trigger::flow::Price;

use crate::helpers::{TestApp, AUDIT_TOKEN, READ_TOKEN};

fn trigger_args(app: &TestApp, target: &str) -> TriggerArgs {
    TriggerArgs {
        target: Some(target.to_owned()),
        list: false,
        url: app.url("/webhooks/stripe"),
        secret: app.secret.clone(),
        timestamp: None,
        fresh_id: false,
        overrides: Vec::new(),
        user_id: None,
        price: "price_local_standard".to_owned(),
    }
}

async fn run_trigger(args: TriggerArgs) -> (ExitCode, String) {
    let mut out = Vec::new();
    let code = cli::trigger(args, &mut out).await.unwrap();
    (code, String::from_utf8(out).unwrap())
}

fn go_live_args(app: &TestApp) -> GoLiveArgs {
    GoLiveArgs {
        url: app.base_url.clone(),
        secret: app.secret.clone(),
        token: None,
        price: "price_local_standard".to_owned(),
    }
}

async fn run_go_live(args: GoLiveArgs) -> (ExitCode, String) {
    let mut out = Vec::new();
    let code = cli::go_live_check(args, Some(READ_TOKEN.to_owned()), &mut out)
        .await
        .unwrap();
    (code, String::from_utf8(out).unwrap())
}

/// The last snapshot of `object_type` the sequence sent.
fn last_object<'a>(events: &'a [Value], object_type: &str) -> Option<&'a Value> {
    events
        .iter()
        .rev()
        .map(|e| &e["data"]["object"])
        .find(|o| o["object"] == object_type)
}

#[tokio::test]
async fn every_built_in_type_posts_a_coherent_sequence_that_is_recorded_and_projected() {
    let app = TestApp::spawn().await;
    let client = stripe_ledger::trigger::http_client().unwrap();
    for t in TriggerType::ALL {
        let options = FixtureOptions {
            user_id: None,
            price: Price::default(),
            now: chrono::Utc::now().timestamp(),
        };
        let flow = catalog::build(t, &options);
        let url = app.url("/webhooks/stripe");
        let posted =
            stripe_ledger::trigger::post_events(&client, &url, &app.secret, &flow.events, None)
                .await
                .unwrap();
        assert_eq!(posted.len(), flow.events.len(), "{t:?}");
        for p in &posted {
            assert_eq!(
                (p.status, p.outcome().as_str()),
                (200, "recorded"),
                "{t:?} {}: {}",
                p.event_type,
                p.body
            );
        }
        let ids = &flow.ids;
        let customer = app
            .get(
                &format!("/api/customers/{}", ids.customer),
                Some(READ_TOKEN),
            )
            .await;
        assert_eq!(customer.status, 200, "{t:?}");
        assert_eq!(customer.json["user_id"], flow.user_id.as_str(), "{t:?}");
        assert_eq!(customer.json["deleted"], t == TriggerType::CustomerDeleted);
        if let Some(sub) = last_object(&flow.events, "subscription") {
            let read = app
                .get(
                    &format!("/api/subscriptions/{}", ids.subscription),
                    Some(READ_TOKEN),
                )
                .await;
            assert_eq!(read.json["customer"], ids.customer.as_str(), "{t:?}");
            assert_eq!(read.json["status"], sub["status"], "{t:?}");
            assert_eq!(read.json["user_id"], flow.user_id.as_str(), "{t:?}");
            assert_eq!(
                read.json["items"][0]["price"], sub["items"]["data"][0]["price"]["id"],
                "{t:?}"
            );
        }
        if let Some(invoice) = last_object(&flow.events, "invoice") {
            let list = app
                .get(
                    &format!("/api/invoices?customer={}", ids.customer),
                    Some(READ_TOKEN),
                )
                .await;
            let read = list.json["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["id"] == invoice["id"])
                .unwrap_or_else(|| panic!("{t:?}: {}", list.text));
            assert_eq!(read["subscription"], ids.subscription.as_str(), "{t:?}");
            assert_eq!(read["status"], invoice["status"], "{t:?}");
        }
        if let Some(session) = last_object(&flow.events, "checkout.session") {
            if session["mode"] == "payment" {
                let list = app
                    .get(
                        &format!("/api/orders?customer={}", ids.customer),
                        Some(READ_TOKEN),
                    )
                    .await;
                assert_eq!(list.json["data"][0]["id"], session["id"], "{t:?}");
            }
        }
    }
    let dead = app.audit("/api/dead-letters").await;
    assert_eq!(dead.json["data"], serde_json::json!([]), "{}", dead.text);
    let _ = AUDIT_TOKEN;
}

#[tokio::test]
async fn trigger_by_name_prints_each_event_and_two_triggers_give_two_subscriptions() {
    let app = TestApp::spawn().await;
    let mut printed = Vec::new();
    for _ in 0..2 {
        let mut args = trigger_args(&app, "customer.subscription.created");
        args.user_id = Some("user_twice".to_owned());
        let (code, out) = run_trigger(args).await;
        assert_eq!(code, ExitCode::SUCCESS, "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("200 customer.created ") && lines[0].ends_with(" recorded"));
        assert!(
            lines[1].starts_with("200 customer.subscription.created "),
            "{out}"
        );
        printed.push(out);
    }
    assert_ne!(printed[0], printed[1]);
    let subs = app
        .get("/api/subscriptions?user_id=user_twice", Some(READ_TOKEN))
        .await;
    let data = subs.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{}", subs.text);
    assert_ne!(data[0]["id"], data[1]["id"]);
    assert_ne!(data[0]["customer"], data[1]["customer"]);
    for s in data {
        assert!(s["customer"].as_str().unwrap().starts_with("cus_"));
        assert_eq!(s["status"], "active");
    }
    let entitlement = app
        .get("/api/entitlements/user_twice", Some(READ_TOKEN))
        .await;
    assert_eq!(entitlement.json["access"], "granted");
}

#[tokio::test]
async fn overrides_change_the_triggered_event_or_the_event_type_they_name() {
    let app = TestApp::spawn().await;
    let mut args = trigger_args(&app, "customer.subscription.created");
    args.user_id = Some("user_override".to_owned());
    args.overrides = vec![
        "data.object.items.data.0.quantity=3".parse().unwrap(),
        "customer.created:data.object.email=renamed@example.com"
            .parse()
            .unwrap(),
    ];
    let (code, out) = run_trigger(args).await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    let subs = app
        .get("/api/subscriptions?user_id=user_override", Some(READ_TOKEN))
        .await;
    assert_eq!(
        subs.json["data"][0]["items"][0]["quantity"], 3,
        "{}",
        subs.text
    );
    let customers = app
        .get("/api/customers?user_id=user_override", Some(READ_TOKEN))
        .await;
    assert_eq!(customers.json["data"][0]["email"], "renamed@example.com");

    // An override that matches nothing is an error, and nothing is posted.
    let mut args = trigger_args(&app, "customer.created");
    args.overrides = vec!["invoice.paid:data.object.total=1".parse().unwrap()];
    let mut out = Vec::new();
    let err = cli::trigger(args, &mut out).await.unwrap_err();
    assert!(format!("{err:#}").contains("invoice.paid"), "{err:#}");
    assert!(out.is_empty());
}

#[tokio::test]
async fn trigger_list_shows_every_type_the_projections_handle() {
    let app = TestApp::spawn().await;
    let mut args = trigger_args(&app, "");
    args.target = None;
    args.list = true;
    let (code, out) = run_trigger(args).await;
    assert_eq!(code, ExitCode::SUCCESS);
    let listed: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    for t in ledger_projections::PROJECTED_TYPES {
        if *t != ledger_projections::OBJECT_SNAPSHOT {
            assert!(listed.contains(t), "{t} is missing from:\n{out}");
        }
    }
    assert!(!out.contains(ledger_projections::OBJECT_SNAPSHOT));
    assert!(
        out.lines().all(|l| l.split_whitespace().count() > 2),
        "{out}"
    );
}

#[tokio::test]
async fn an_unknown_type_name_is_not_posted_and_a_path_still_sends_the_file() {
    let app = TestApp::spawn().await;
    let mut out = Vec::new();
    let err = cli::trigger(trigger_args(&app, "invoice.upcoming"), &mut out)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("--list"), "{err:#}");
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/events/customer.created.json"
    );
    let (code, out) = run_trigger(trigger_args(&app, fixture)).await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(
        out.starts_with("200 ") && out.contains("\"recorded\""),
        "{out}"
    );
}

fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .skip(1)
        .filter(|l| l.contains(" | "))
        .map(|l| l.split(" | ").map(|c| c.trim().to_owned()).collect())
        .collect()
}

#[tokio::test]
async fn go_live_check_against_a_test_mode_service_holds_every_row() {
    let app = TestApp::spawn().await;
    let (code, out) = run_go_live(go_live_args(&app)).await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(out.starts_with("scenario"), "{out}");
    let rows = rows(&out);
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        names,
        [
            "happy path",
            "card decline",
            "3-D Secure",
            "webhook retry",
            "upgrade",
            "cancellation",
            "failed payment"
        ]
    );
    for r in &rows {
        assert_eq!(r[1], r[2], "{out}");
        assert_eq!(r[3], "ok", "{out}");
    }
    assert!(out.contains("7 of 7 held"), "{out}");
}

#[tokio::test]
async fn go_live_check_refuses_a_live_mode_service_and_posts_nothing() {
    let app = TestApp::builder()
        .env("STRIPE_SECRET_KEY", "sk_live_golivecheck0123456789")
        .spawn()
        .await;
    assert_eq!(app.get("/readyz", None).await.json["mode"], "live");
    let (code, out) = run_go_live(go_live_args(&app)).await;
    assert_eq!(code, ExitCode::from(2), "{out}");
    assert!(out.is_empty(), "{out}");
    let log = app.audit("/api/audit/events").await;
    assert_eq!(log.json["data"], serde_json::json!([]), "{}", log.text);
}

#[tokio::test]
async fn go_live_check_refuses_an_unreachable_service_or_a_refused_token() {
    let app = TestApp::spawn().await;
    let mut args = go_live_args(&app);
    args.url = "http://127.0.0.1:9".to_owned();
    assert_eq!(run_go_live(args).await.0, ExitCode::from(2));
    let mut out = Vec::new();
    let code = cli::go_live_check(
        go_live_args(&app),
        Some("not-a-token-0123456789".into()),
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(code, ExitCode::from(2));
    assert_eq!(
        app.audit("/api/audit/events").await.json["data"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn go_live_check_with_no_grace_period_fails_the_failed_payment_row_and_exits_1() {
    let app = TestApp::builder()
        .env("GRACE_PERIOD_DAYS", "0")
        .spawn()
        .await;
    let (code, out) = run_go_live(go_live_args(&app)).await;
    assert_eq!(code, ExitCode::FAILURE, "{out}");
    for r in rows(&out) {
        if r[0] == "failed payment" {
            assert_eq!(r[1], "grace (past_due_grace)");
            assert_eq!(r[2], "denied (past_due_grace_expired)");
            assert_eq!(r[3], "FAILED");
        } else {
            assert_eq!(r[3], "ok", "{out}");
        }
    }
    assert!(out.contains("6 of 7 held"), "{out}");
}

#[tokio::test]
async fn go_live_check_with_the_wrong_webhook_secret_fails_every_row() {
    let app = TestApp::spawn().await;
    let mut args = go_live_args(&app);
    args.secret = "whsec_not_the_service_secret".to_owned();
    let (code, out) = run_go_live(args).await;
    assert_eq!(code, ExitCode::FAILURE, "{out}");
    for r in rows(&out) {
        assert!(r[2].contains("400 signature_mismatch"), "{out}");
        assert_eq!(r[3], "FAILED");
    }
}

#[tokio::test]
async fn the_binary_triggers_by_name_and_runs_the_go_live_check() {
    let app = TestApp::spawn().await;
    let bin = env!("CARGO_BIN_EXE_stripe-ledger");
    let run = |args: Vec<String>, env: Vec<(&'static str, String)>| {
        tokio::task::spawn_blocking(move || {
            let mut c = std::process::Command::new(bin);
            c.env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .current_dir(std::env::temp_dir())
                .args(args)
                .envs(env);
            c.output().unwrap()
        })
    };
    let secret = ("STRIPE_WEBHOOK_SECRET", app.secret.clone());
    let out = run(
        vec![
            "trigger".into(),
            "invoice.paid".into(),
            "--url".into(),
            app.url("/webhooks/stripe"),
        ],
        vec![secret.clone()],
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.lines().last().unwrap().contains(" invoice.paid "),
        "{stdout}"
    );
    assert!(stdout.lines().all(|l| l.ends_with(" recorded")), "{stdout}");

    let out = run(
        vec!["go-live-check".into(), "--url".into(), app.base_url.clone()],
        vec![
            secret,
            (
                "API_TOKENS",
                format!("audit:{AUDIT_TOKEN},read:{READ_TOKEN}"),
            ),
        ],
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("7 of 7 held"), "{stdout}");
}
