//! Checkout and the Customer Portal against the fake Stripe API: the exact requests, the
//! service's behaviour when Stripe fails, and the checkout → webhook → entitlement loop.

use std::sync::Arc;

use serde_json::json;
use stripe_ledger::jwt::JwtKey;

use crate::fake_stripe::{Failure, FakeStripe};
use crate::helpers::{TestApp, READ_TOKEN};

pub const JWT_SECRET: &str = "jwt-secret-for-tests-0123456789abcdef";
pub const SECRET_KEY: &str = "sk_test_fakestripekey0123456789";

async fn app_with(fake: &FakeStripe) -> TestApp {
    builder_with(fake).spawn().await
}

/// An app with checkout on against `fake` (tiers `tier1`, `tier2`; product `ebook`).
pub fn builder_with(fake: &FakeStripe) -> crate::helpers::TestAppBuilder {
    TestApp::builder()
        .env("JWT_SECRET", JWT_SECRET)
        .env("STRIPE_SECRET_KEY", SECRET_KEY)
        .env("STRIPE_PUBLISHABLE_KEY", "pk_test_publishable0123")
        .env("STRIPE_API_BASE", &fake.base_url)
        .env("STRIPE_PRICE_IDS_TIER1", "price_tier1")
        .env("STRIPE_PRICE_IDS_TIER2", "price_tier2")
        .env("STRIPE_PRICE_IDS_ONE_TIME_EBOOK", "price_ebook")
        .env(
            "CHECKOUT_SUCCESS_URL",
            "https://app.example.com/billing/success",
        )
        .env(
            "CHECKOUT_CANCEL_URL",
            "https://app.example.com/billing/cancel",
        )
        .env(
            "STRIPE_PORTAL_RETURN_URL",
            "https://app.example.com/account",
        )
        .env("STRIPE_TIMEOUT_MS", "500")
}

pub fn token(user: &str) -> String {
    JwtKey::new(JWT_SECRET)
        .unwrap()
        .sign(user, chrono::Utc::now().timestamp() + 3600)
}

async fn post(
    app: &TestApp,
    path: &str,
    bearer: Option<&str>,
    body: serde_json::Value,
) -> crate::helpers::Reply {
    app.request("POST", path, bearer, body.to_string().as_bytes())
        .await
}

#[tokio::test]
async fn checkout_creates_the_customer_and_a_subscription_session_with_exact_requests() {
    let fake = FakeStripe::start().await;
    let app = app_with(&fake).await;
    let reply = post(
        &app,
        "/api/checkout",
        Some(&token("user_1")),
        json!({"tier": "tier1"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let session_id = reply.json["session_id"].as_str().unwrap();
    assert!(reply.json["url"].as_str().unwrap().contains(session_id));

    let customers = fake.requests("/v1/customers");
    assert_eq!(customers.len(), 1);
    let c = &customers[0];
    assert_eq!(
        c.authorization.as_deref(),
        Some(format!("Bearer {SECRET_KEY}").as_str())
    );
    assert_eq!(c.stripe_version.as_deref(), Some("2025-03-31.basil"));
    assert_eq!(
        c.idempotency_key.as_deref(),
        Some("stripe-ledger-customer-user_1")
    );
    assert_eq!(c.field("metadata[user_id]"), Some("user_1"));

    let sessions = fake.requests("/v1/checkout/sessions");
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!(s.stripe_version.as_deref(), Some("2025-03-31.basil"));
    assert!(s
        .idempotency_key
        .as_deref()
        .is_some_and(|k| k.starts_with("stripe-ledger-checkout-")));
    for (field, value) in [
        ("mode", "subscription"),
        ("customer", "cus_fake1"),
        ("client_reference_id", "user_1"),
        ("line_items[0][price]", "price_tier1"),
        ("line_items[0][quantity]", "1"),
        ("success_url", "https://app.example.com/billing/success"),
        ("cancel_url", "https://app.example.com/billing/cancel"),
        ("subscription_data[metadata][user_id]", "user_1"),
    ] {
        assert_eq!(s.field(field), Some(value), "{field}");
    }
    // The customer we created is in the log (source api_response) and the read models.
    let customer = app
        .get("/api/customers?user_id=user_1", Some(READ_TOKEN))
        .await;
    assert_eq!(customer.json["data"][0]["id"], "cus_fake1");
    // So is the Checkout Session, the evidence that links this user (newest first).
    let logged = app.audit("/api/audit/events?source=api_response").await;
    assert_eq!(logged.json["data"][1]["object"]["id"], "cus_fake1");
    assert!(logged.json["data"][0]["object"]["id"]
        .as_str()
        .unwrap()
        .starts_with("cs_"));

    // A second checkout reuses the customer.
    let again = post(
        &app,
        "/api/checkout",
        Some(&token("user_1")),
        json!({"tier": "TIER2"}),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(fake.requests("/v1/customers").len(), 1);
    assert_eq!(
        fake.requests("/v1/checkout/sessions")[1].field("line_items[0][price]"),
        Some("price_tier2")
    );
}

#[tokio::test]
async fn the_checkout_to_webhook_loop_grants_access_and_then_points_at_the_portal() {
    let fake = FakeStripe::start().await;
    let app = app_with(&fake).await;
    let user = token("user_loop");
    let reply = post(&app, "/api/checkout", Some(&user), json!({"tier": "tier1"})).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let session_id = reply.json["session_id"].as_str().unwrap().to_owned();

    // The user pays; Stripe sends its webhooks, signed.
    for body in fake.complete_checkout(&session_id, chrono::Utc::now().timestamp()) {
        let r = app.deliver(&body).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let e = app
        .get("/api/entitlements/user_loop", Some(READ_TOKEN))
        .await;
    assert_eq!(e.json["access"], "granted", "{}", e.text);

    let again = post(&app, "/api/checkout", Some(&user), json!({"tier": "tier2"})).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.json["error"]["code"], "already_subscribed");
    assert_eq!(again.json["error"]["portal"], "/api/billing-portal");

    // One-time purchases stay possible.
    let ebook = post(
        &app,
        "/api/checkout",
        Some(&user),
        json!({"one_time": "ebook"}),
    )
    .await;
    assert_eq!(ebook.status, 200, "{}", ebook.text);
    let last = fake.requests("/v1/checkout/sessions").pop().unwrap();
    assert_eq!(last.field("mode"), Some("payment"));
    assert_eq!(last.field("line_items[0][price]"), Some("price_ebook"));

    let portal = post(&app, "/api/billing-portal", Some(&user), json!({})).await;
    assert_eq!(portal.status, 200, "{}", portal.text);
    assert!(portal.json["url"]
        .as_str()
        .unwrap()
        .starts_with("https://billing.stripe.test/"));
    let p = fake.requests("/v1/billing_portal/sessions").pop().unwrap();
    assert_eq!(p.field("customer"), Some("cus_fake1"));
    assert_eq!(
        p.field("return_url"),
        Some("https://app.example.com/account")
    );
}

#[tokio::test]
async fn concurrent_checkouts_for_one_new_user_create_one_stripe_customer() {
    let fake = FakeStripe::start().await;
    let app = Arc::new(app_with(&fake).await);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let app = app.clone();
        tasks.spawn(async move {
            post(
                &app,
                "/api/checkout",
                Some(&token("user_race")),
                json!({"tier": "tier1"}),
            )
            .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(fake.customers(), 1);
    let sessions = fake.requests("/v1/checkout/sessions");
    assert_eq!(sessions.len(), 6);
    assert!(sessions
        .iter()
        .all(|s| s.field("customer") == Some("cus_fake1")));
}

#[tokio::test]
async fn bad_tokens_and_bad_bodies_get_precise_errors() {
    let fake = FakeStripe::start().await;
    let app = app_with(&fake).await;
    let key = JwtKey::new(JWT_SECRET).unwrap();
    let expired = key.sign("user_x", chrono::Utc::now().timestamp() - 3600);
    let other = JwtKey::new("a-different-secret-0123456789abcdef")
        .unwrap()
        .sign("user_x", chrono::Utc::now().timestamp() + 60);
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(r#"{"sub":"user_x","exp":9999999999}"#)
    );
    let cases = [
        (None, "token_missing"),
        (Some(expired.as_str()), "token_expired"),
        (Some(other.as_str()), "token_signature_invalid"),
        (Some(none.as_str()), "token_algorithm_not_allowed"),
        (Some("garbage"), "token_malformed"),
    ];
    for path in ["/api/checkout", "/api/billing-portal"] {
        for (bearer, code) in &cases {
            let r = post(&app, path, *bearer, json!({"tier": "tier1"})).await;
            assert_eq!(
                (r.status, r.json["error"]["code"].as_str()),
                (401, Some(*code)),
                "{path} {bearer:?}"
            );
        }
    }
    let user = token("user_x");
    let unknown = post(
        &app,
        "/api/checkout",
        Some(&user),
        json!({"tier": "platinum"}),
    )
    .await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.json["error"]["code"], "unknown_tier");
    assert!(unknown.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("tier1, tier2"));
    for body in [
        json!({}),
        json!({"tier": "tier1", "one_time": "ebook"}),
        json!([1]),
    ] {
        let r = post(&app, "/api/checkout", Some(&user), body).await;
        assert_eq!(r.json["error"]["code"], "invalid_body");
    }
    let no_customer = post(&app, "/api/billing-portal", Some(&user), json!({})).await;
    assert_eq!(no_customer.status, 404);
    assert_eq!(no_customer.json["error"]["code"], "no_customer");
    assert!(
        fake.requests("/v1/checkout/sessions").is_empty(),
        "nothing reached Stripe"
    );

    let config = app
        .client
        .get(app.url("/api/config"))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    let config: serde_json::Value = serde_json::from_str(&config.text().await.unwrap()).unwrap();
    assert_eq!(
        config,
        json!({"publishable_key": "pk_test_publishable0123", "tiers": ["tier1", "tier2"], "one_time": ["ebook"]})
    );
    assert!(!config.to_string().contains("sk_test"));
}

fn error_body(kind: &str, code: &str) -> serde_json::Value {
    json!({"error": {"type": kind, "code": code, "message": "scripted", "param": null}})
}

#[tokio::test]
async fn stripe_failures_are_retried_with_the_same_idempotency_key_or_reported_clearly() {
    let fake = FakeStripe::start().await;
    let app = app_with(&fake).await;
    let user = token("user_f");
    let sessions = "/v1/checkout/sessions";
    // A successful first checkout creates the customer.
    assert_eq!(
        post(&app, "/api/checkout", Some(&user), json!({"tier": "tier1"}))
            .await
            .status,
        200
    );

    // 500, then 429 with Retry-After, then a timeout: retried, one key throughout, success.
    fake.fail_next(
        sessions,
        Failure {
            status: 500,
            body: error_body("api_error", "internal"),
            headers: vec![],
            delay_ms: 0,
        },
    );
    fake.fail_next(
        sessions,
        Failure {
            status: 429,
            body: error_body("rate_limit_error", "rate_limit"),
            headers: vec![("retry-after", "1".into())],
            delay_ms: 0,
        },
    );
    fake.fail_next(
        sessions,
        Failure {
            status: 200,
            body: json!({}),
            headers: vec![],
            delay_ms: 1_500,
        },
    );
    let r = post(&app, "/api/checkout", Some(&user), json!({"tier": "tier1"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let recorded = fake.requests(sessions);
    let attempts = &recorded[1..];
    assert_eq!(attempts.len(), 4);
    let key = attempts[0].idempotency_key.clone().unwrap();
    assert!(
        attempts
            .iter()
            .all(|a| a.idempotency_key.as_deref() == Some(key.as_str())),
        "retries must reuse the key"
    );

    // A refusal (not retryable) is a 502 naming Stripe's code.
    fake.fail_next(
        sessions,
        Failure {
            status: 400,
            body: error_body("invalid_request_error", "resource_missing"),
            headers: vec![],
            delay_ms: 0,
        },
    );
    let r = post(&app, "/api/checkout", Some(&user), json!({"tier": "tier1"})).await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "stripe_request_failed");
    assert!(r.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("resource_missing"));

    // A 402 (a card or payment error) is not retried either.
    let before = fake.requests(sessions).len();
    fake.fail_next(
        sessions,
        Failure {
            status: 402,
            body: error_body("card_error", "card_declined"),
            headers: vec![],
            delay_ms: 0,
        },
    );
    let r = post(&app, "/api/checkout", Some(&user), json!({"tier": "tier1"})).await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(r.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("card_declined"));
    assert_eq!(fake.requests(sessions).len(), before + 1);

    // Stripe-Should-Retry: false wins over a 5xx: one attempt only.
    let before = fake.requests(sessions).len();
    fake.fail_next(
        sessions,
        Failure {
            status: 503,
            body: error_body("api_error", "x"),
            headers: vec![("stripe-should-retry", "false".into())],
            delay_ms: 0,
        },
    );
    let r = post(&app, "/api/checkout", Some(&user), json!({"tier": "tier1"})).await;
    assert_eq!(r.status, 503);
    assert_eq!(fake.requests(sessions).len(), before + 1);

    // Stripe down for good: 503 with a retry hint, after the retries.
    for _ in 0..4 {
        fake.fail_next(
            sessions,
            Failure {
                status: 500,
                body: error_body("api_error", "down"),
                headers: vec![],
                delay_ms: 0,
            },
        );
    }
    let r = post(&app, "/api/checkout", Some(&user), json!({"tier": "tier1"})).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "stripe_unavailable");
    assert_eq!(r.headers["retry-after"], "5");
    assert!(!r.text.contains(SECRET_KEY));
    // Neither the Stripe key nor the JWT secret reaches a log line.
    let logs = crate::helpers::captured_logs();
    assert!(
        logs.contains("Stripe request failed"),
        "log capture is not working"
    );
    assert!(!logs.contains(SECRET_KEY));
    assert!(!logs.contains(JWT_SECRET));
}

#[tokio::test]
async fn a_subject_with_a_newline_is_refused_and_stripe_is_never_called() {
    let fake = FakeStripe::start().await;
    let app = app_with(&fake).await;
    for sub in ["user\n1", "user\u{0}1", "   "] {
        let reply = post(
            &app,
            "/api/checkout",
            Some(&token(sub)),
            json!({"tier": "tier1"}),
        )
        .await;
        assert_eq!(reply.status, 401, "{sub:?}: {}", reply.text);
        assert_eq!(reply.code(), "token_claims_invalid");
    }
    assert_eq!(fake.requests("/v1/customers").len(), 0);
}

#[tokio::test]
async fn a_black_holed_stripe_answers_503_within_one_deadline_for_both_tabs_of_a_user() {
    let fake = FakeStripe::start().await;
    for _ in 0..8 {
        // Never answers in time: a black hole.
        fake.fail_next(
            "/v1/customers",
            Failure {
                status: 500,
                body: json!({}),
                headers: vec![],
                delay_ms: 600_000,
            },
        );
    }
    let app = builder_with(&fake)
        .env("STRIPE_TIMEOUT_MS", "5000")
        .env("STRIPE_DEADLINE_MS", "300")
        .spawn()
        .await;
    let t = token("user_bh");
    let started = std::time::Instant::now();
    let (a, b) = tokio::join!(
        post(&app, "/api/checkout", Some(&t), json!({"tier": "tier1"})),
        post(&app, "/api/checkout", Some(&t), json!({"tier": "tier1"})),
    );
    for reply in [&a, &b] {
        assert_eq!(reply.status, 503, "{}", reply.text);
        assert_eq!(reply.code(), "stripe_unavailable");
        assert_eq!(reply.headers["retry-after"], "5");
    }
    // One attempt each at most (without the deadline: 4 attempts of 5 s each, per tab).
    assert!(fake.requests("/v1/customers").len() <= 2);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
