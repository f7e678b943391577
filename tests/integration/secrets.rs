//! Secrets never reach logs, errors or responses.

use stripe_ledger::config::ServeConfig;
use stripe_ledger::stripe::signature;

use crate::helpers::{
    captured_logs, event, event_json, unique_id, TestApp, AUDIT_TOKEN, READ_TOKEN,
};

#[tokio::test]
async fn secrets_never_appear_in_logs_or_responses() {
    let webhook_secret = unique_id("whsec_leakcheck");
    let rolled = unique_id("whsec_leakcheck_old");
    let secret_key = unique_id("sk_test_leakcheck");
    let app = TestApp::builder()
        .env(
            "STRIPE_WEBHOOK_SECRET",
            &format!("{webhook_secret},{rolled}"),
        )
        .env("STRIPE_SECRET_KEY", &secret_key)
        .spawn()
        .await;
    let now = chrono::Utc::now().timestamp();
    let body = event(&unique_id("evt_leak"), "customer.created");
    let mut replies = vec![
        app.deliver(&body).await,
        app.deliver(&body).await,
        app.post_webhook(&body, None).await,
        app.post_webhook(&body, Some(&signature::sign(&body, "whsec_wrong", now)))
            .await,
        app.post_webhook(
            &body,
            Some(&signature::sign(&body, &webhook_secret, now - 9999)),
        )
        .await,
        app.post_webhook(b"{", Some(&signature::sign(b"{", &webhook_secret, now)))
            .await,
    ];
    let live = event_json("evt_leak_live", "customer.created", true)
        .to_string()
        .into_bytes();
    replies.push(app.deliver(&live).await);
    replies.push(app.audit("/api/audit/events").await);
    replies.push(app.get("/api/audit/events", Some(READ_TOKEN)).await);
    app.db.close().await;
    replies.push(
        app.deliver(&event("evt_leak_down", "customer.created"))
            .await,
    );

    let secrets = [
        webhook_secret.as_str(),
        rolled.as_str(),
        secret_key.as_str(),
        AUDIT_TOKEN,
        READ_TOKEN,
    ];
    for reply in &replies {
        for secret in secrets {
            assert!(
                !reply.text.contains(secret),
                "a response leaked a secret: {}",
                reply.text
            );
            for value in reply.headers.values() {
                assert!(!value.to_str().unwrap_or("").contains(secret));
            }
        }
    }
    let logs = captured_logs();
    // The capture works: this test's own rejections and acceptances are in it.
    assert!(
        logs.contains("signature_mismatch"),
        "log capture is not working"
    );
    assert!(logs.contains("webhook accepted"));
    assert!(logs.contains("storage unavailable"));
    for secret in secrets {
        assert!(!logs.contains(secret), "the logs contain a secret");
    }
}

#[test]
fn the_configuration_debug_output_names_no_secret() {
    let env = stripe_ledger::config::MapEnv(
        [
            ("STRIPE_WEBHOOK_SECRET", "whsec_debugcheck_secret_value"),
            ("STRIPE_SECRET_KEY", "sk_live_debugcheck_secret_value"),
            ("API_TOKENS", "audit:debugcheck_secret_value_token"),
            ("DATABASE_URL", "postgres://user:debugcheck_pw@localhost/db"),
            (
                "JWT_SECRET",
                "debugcheck_secret_value_debugcheck_secret_value",
            ),
            (
                "SMTP_URL",
                "smtp://mailer:debugcheck_pw@smtp.example.com:587?tls=required",
            ),
            ("MAIL_FROM", "billing@example.com"),
            // base64 of "debugcheck_seed_value_0123456789"
            (
                "LEDGER_SIGNING_KEY",
                "ZGVidWdjaGVja19zZWVkX3ZhbHVlXzAxMjM0NTY3ODk=",
            ),
            ("STRIPE_PRICE_IDS_TIER1", "price_1"),
            ("CHECKOUT_SUCCESS_URL", "https://app.example.com/ok"),
            ("CHECKOUT_CANCEL_URL", "https://app.example.com/cancel"),
            (
                "STRIPE_PORTAL_RETURN_URL",
                "https://app.example.com/account",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    );
    let config = ServeConfig::from_lookup(&env).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("debugcheck_secret_value"), "{debug}");
    assert!(!debug.contains("debugcheck_pw"), "{debug}");
    assert!(!debug.contains("ZGVidWdjaGVja19zZWVk"), "{debug}");
    assert!(!debug.contains("100, 101, 98"), "{debug}"); // the seed's bytes
}

#[tokio::test]
async fn the_smtp_password_never_appears_in_logs_or_the_outbox_when_delivery_fails() {
    let password = unique_id("smtppw");
    // Nothing listens there: every attempt fails with a connection error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = TestApp::builder()
        .env("SMTP_URL", &format!("smtp://mailer:{password}@{closed}"))
        .env("MAIL_FROM", "billing@example.com")
        .spawn()
        .await;
    let body = event(&unique_id("evt_smtp"), "customer.created");
    let customer = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["data"]["object"]
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut updated = serde_json::from_slice::<serde_json::Value>(&body).unwrap();
    updated["id"] = unique_id("evt_smtp").into();
    updated["data"]["object"]["email"] = "someone@example.com".into();
    let subscription = serde_json::json!({
        "id": unique_id("evt_smtp"), "object": "event", "api_version": "2025-03-31.basil",
        "created": 1_763_800_000, "livemode": false, "type": "customer.subscription.created",
        "data": {"object": {"id": unique_id("sub"), "object": "subscription", "customer": customer,
            "status": "active", "items": {"object": "list", "data": []}}}
    });
    for b in [updated.to_string(), subscription.to_string()] {
        assert_eq!(app.deliver(b.as_bytes()).await.status, 200);
    }
    let report = app.deliver_outbox(app.now()).await;
    assert_eq!(report.retrying, 1, "{report:?}");
    let outbox = app.audit("/api/outbox").await;
    assert!(outbox.text.contains("last_error"), "{}", outbox.text);
    assert!(!outbox.text.contains(&password), "{}", outbox.text);
    assert!(
        !captured_logs().contains(&password),
        "the logs contain the SMTP password"
    );
}
