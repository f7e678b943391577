//! `trigger <type>` (built-in basil sequences with fresh ids) and `go-live-check`, against the
//! real app. The go-live check goes through the service's own checkout, so its app has
//! billing on against the fake Stripe.

use std::process::ExitCode;

use serde_json::{json, Value};
use stripe_ledger::cli::{self, GoLiveArgs, TriggerArgs};
use stripe_ledger::trigger::catalog::{self, FixtureOptions, TriggerType};
use stripe_ledger::trigger::flow::Price;

use crate::billing::{builder_with, token, JWT_SECRET};
use crate::fake_stripe::FakeStripe;
use crate::helpers::{TestApp, AUDIT_TOKEN, READ_TOKEN};

/// An app with checkout on against a fresh fake Stripe (kept alive by the caller).
async fn billing_app() -> (FakeStripe, TestApp) {
    let fake = FakeStripe::start().await;
    let app = builder_with(&fake).spawn().await;
    (fake, app)
}

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
        customer: None,
        session: None,
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
        jwt_secret: JWT_SECRET.to_owned(),
        jwt_audience: None,
        jwt_issuer: None,
        tier: None,
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
            customer: None,
            session: None,
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
        // Webhooks alone link no user (ADR 13): the user id they carry is a claim.
        assert_eq!(customer.json["user_id"], Value::Null, "{t:?}");
        assert_eq!(
            customer.json["link_conflicts"][0]["user_id"],
            flow.user_id.as_str(),
            "{t:?}: {}",
            customer.text
        );
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
    // Nothing the service created links user_twice: the subscriptions carry the label only.
    let entitlement = app
        .get("/api/entitlements/user_twice", Some(READ_TOKEN))
        .await;
    assert_eq!(entitlement.json["reason"], "no_subscription");
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
    let customer = subs.json["data"][0]["customer"].as_str().unwrap();
    let customer = app
        .get(&format!("/api/customers/{customer}"), Some(READ_TOKEN))
        .await;
    assert_eq!(customer.json["email"], "renamed@example.com");

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

/// The options `go_live::run` gets from the command line for `app`.
fn go_live_options(app: &TestApp, jwt_secret: &str) -> stripe_ledger::go_live::GoLiveOptions {
    stripe_ledger::go_live::GoLiveOptions {
        base_url: app.base_url.clone(),
        secret: app.secret.clone(),
        token: READ_TOKEN.to_owned(),
        price: Price::default(),
        jwt: stripe_ledger::jwt::JwtKey::new(jwt_secret).unwrap(),
        tier: None,
    }
}

/// Why `go_live::run` refused, with what it wrote (nothing, when it refuses).
async fn refusal(options: &stripe_ledger::go_live::GoLiveOptions) -> (String, String) {
    let mut out = Vec::new();
    let verdict = stripe_ledger::go_live::run(options, &mut out)
        .await
        .unwrap();
    let stripe_ledger::go_live::Verdict::Refused(reason) = verdict else {
        panic!("not refused: {verdict:?}");
    };
    (reason, String::from_utf8(out).unwrap())
}

async fn log_is_empty(app: &TestApp) {
    let log = app.audit("/api/audit/events").await;
    assert_eq!(log.json["data"], json!([]), "{}", log.text);
}

#[tokio::test]
async fn go_live_check_against_a_test_mode_service_holds_every_row() {
    let (fake, app) = billing_app().await;
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
    // Every scenario went through the service's own checkout, with the first tier, and its
    // webhooks are about the customer that checkout created: linked, no conflicting claim.
    let sessions = fake.requests("/v1/checkout/sessions");
    assert_eq!(sessions.len(), 7);
    assert!(sessions
        .iter()
        .all(|s| s.field("line_items[0][price]") == Some("price_tier1")));
    assert_eq!(fake.customers(), 7);
    let customers = app.get("/api/customers", Some(READ_TOKEN)).await;
    let customers = customers.json["data"].as_array().unwrap();
    assert_eq!(customers.len(), 7);
    for c in customers {
        assert!(c["id"].as_str().unwrap().starts_with("cus_fake"), "{c}");
        assert!(
            c["user_id"].as_str().unwrap().starts_with("user_golive_"),
            "{c}"
        );
        assert_eq!(c["link_conflicts"], json!([]), "{c}");
    }
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
    log_is_empty(&app).await;
}

#[tokio::test]
async fn go_live_check_refuses_an_unreachable_service_or_a_refused_token() {
    let (fake, app) = billing_app().await;
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
    // A user token the service does not accept: not its JWT_SECRET.
    let mut args = go_live_args(&app);
    args.jwt_secret = "not-the-service-jwt-secret-0123456789".to_owned();
    assert_eq!(run_go_live(args).await.0, ExitCode::from(2));
    let (reason, out) = refusal(&go_live_options(
        &app,
        "not-the-service-jwt-secret-0123456789",
    ))
    .await;
    assert!(
        reason.contains("401 token_signature_invalid") && reason.contains("JWT_SECRET"),
        "{reason}"
    );
    assert!(out.is_empty(), "{out}");
    // No JWT secret at all, or one too short to be the service's.
    for secret in ["", "short"] {
        let mut args = go_live_args(&app);
        args.jwt_secret = secret.to_owned();
        assert_eq!(run_go_live(args).await.0, ExitCode::from(2), "{secret:?}");
    }
    log_is_empty(&app).await;
    assert!(fake.requests("/v1/checkout/sessions").is_empty());
    assert_eq!(fake.customers(), 0);
}

#[tokio::test]
async fn go_live_check_refuses_a_service_without_checkout_and_posts_nothing() {
    let app = TestApp::spawn().await;
    let (code, out) = run_go_live(go_live_args(&app)).await;
    assert_eq!(code, ExitCode::from(2), "{out}");
    assert!(out.is_empty(), "{out}");
    let (reason, out) = refusal(&go_live_options(&app, JWT_SECRET)).await;
    assert!(out.is_empty(), "{out}");
    for needed in [
        "503 billing_not_configured",
        "test-mode Stripe keys",
        "JWT_SECRET",
    ] {
        assert!(reason.contains(needed), "{needed}: {reason}");
    }
    log_is_empty(&app).await;
}

#[tokio::test]
async fn go_live_check_refuses_a_tier_the_service_does_not_sell() {
    let (fake, app) = billing_app().await;
    let mut options = go_live_options(&app, JWT_SECRET);
    options.tier = Some("platinum".to_owned());
    let (reason, _) = refusal(&options).await;
    assert!(reason.contains("tier1, tier2"), "{reason}");
    assert!(fake.requests("/v1/checkout/sessions").is_empty());
    // A tier it sells is checked out, in any case.
    let mut args = go_live_args(&app);
    args.tier = Some("TIER2".to_owned());
    let (code, out) = run_go_live(args).await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(fake
        .requests("/v1/checkout/sessions")
        .iter()
        .all(|s| s.field("line_items[0][price]") == Some("price_tier2")));
}

#[tokio::test]
async fn go_live_check_with_no_grace_period_fails_the_failed_payment_row_and_exits_1() {
    let fake = FakeStripe::start().await;
    let app = builder_with(&fake)
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
    let (_fake, app) = billing_app().await;
    let mut args = go_live_args(&app);
    args.secret = "whsec_not_the_service_secret".to_owned();
    let (code, out) = run_go_live(args).await;
    assert_eq!(code, ExitCode::FAILURE, "{out}");
    let rows = rows(&out);
    assert_eq!(rows.len(), 7, "{out}");
    for r in rows {
        assert!(r[2].contains("400 signature_mismatch"), "{out}");
        assert_eq!(r[3], "FAILED");
    }
}

#[tokio::test]
async fn a_triggered_flow_alone_links_no_user_but_continuing_a_real_checkout_grants_access() {
    let (_fake, app) = billing_app().await;
    let entitlement = |user: &'static str| {
        let app = &app;
        async move {
            app.get(&format!("/api/entitlements/{user}"), Some(READ_TOKEN))
                .await
                .json
        }
    };
    // trigger alone: the objects are there, the user id is only a claim.
    let mut args = trigger_args(&app, "checkout.session.completed");
    args.user_id = Some("user_claimed".to_owned());
    let (code, out) = run_trigger(args).await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    let e = entitlement("user_claimed").await;
    assert_eq!(
        (&e["access"], &e["reason"]),
        (&json!("denied"), &json!("no_subscription"))
    );
    let subs = app
        .get("/api/subscriptions?user_id=user_claimed", Some(READ_TOKEN))
        .await;
    assert_eq!(subs.json["data"][0]["status"], "active", "{}", subs.text);
    let customer = subs.json["data"][0]["customer"].as_str().unwrap();
    let customer = app
        .get(&format!("/api/customers/{customer}"), Some(READ_TOKEN))
        .await;
    assert_eq!(customer.json["user_id"], Value::Null, "{}", customer.text);
    assert_eq!(
        customer.json["link_conflicts"][0]["user_id"],
        "user_claimed"
    );

    // Through the service's checkout first, then the same sequence about its customer and
    // session: the service's own evidence links the user.
    let checkout = app
        .request(
            "POST",
            "/api/checkout",
            Some(&token("user_checked_out")),
            json!({"tier": "tier1"}).to_string().as_bytes(),
        )
        .await;
    assert_eq!(checkout.status, 200, "{}", checkout.text);
    let session = checkout.json["session_id"].as_str().unwrap().to_owned();
    let customers = app
        .get("/api/customers?user_id=user_checked_out", Some(READ_TOKEN))
        .await;
    let customer = customers.json["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        entitlement("user_checked_out").await["access"],
        "denied",
        "not before the webhooks"
    );
    let mut args = trigger_args(&app, "checkout.session.completed");
    args.user_id = Some("user_checked_out".to_owned());
    args.customer = Some(customer.clone());
    args.session = Some(session.clone());
    let (code, out) = run_trigger(args).await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    let e = entitlement("user_checked_out").await;
    assert_eq!(
        (&e["access"], &e["reason"]),
        (&json!("granted"), &json!("subscription_active"))
    );
    let read = app
        .get(&format!("/api/customers/{customer}"), Some(READ_TOKEN))
        .await;
    assert_eq!(read.json["user_id"], "user_checked_out");
    assert_eq!(read.json["link_conflicts"], json!([]), "{}", read.text);
    let subs = app
        .get(
            &format!("/api/subscriptions?customer={customer}"),
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(subs.json["data"][0]["status"], "active", "{}", subs.text);
}

#[tokio::test]
async fn trigger_refuses_a_customer_or_session_that_is_not_a_stripe_id() {
    let app = TestApp::spawn().await;
    for (customer, session) in [
        (Some("user_42"), None),
        (Some("cus_a\u{0}b"), None),
        (Some("cus_"), None),
        (None, Some("cus_123")),
        (None, Some("cs_test_\u{202e}x")),
    ] {
        let mut args = trigger_args(&app, "customer.subscription.created");
        args.customer = customer.map(str::to_owned);
        args.session = session.map(str::to_owned);
        let mut out = Vec::new();
        let err = cli::trigger(args, &mut out).await.unwrap_err();
        let flag = if customer.is_some() {
            "--customer"
        } else {
            "--session"
        };
        assert!(format!("{err:#}").contains(flag), "{err:#}");
        assert!(out.is_empty());
    }
    log_is_empty(&app).await;
}

#[tokio::test]
async fn the_binary_triggers_by_name_and_runs_the_go_live_check() {
    let (_fake, app) = billing_app().await;
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

    let tokens = (
        "API_TOKENS",
        format!("audit:{AUDIT_TOKEN},read:{READ_TOKEN}"),
    );
    let go_live = vec!["go-live-check".into(), "--url".into(), app.base_url.clone()];
    // Without the service's JWT_SECRET it refuses, and says what it needs.
    let out = run(go_live.clone(), vec![secret.clone(), tokens.clone()])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("JWT_SECRET") && stderr.contains("test-mode"),
        "{stderr}"
    );

    let out = run(
        go_live,
        vec![secret, tokens, ("JWT_SECRET", JWT_SECRET.to_owned())],
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
