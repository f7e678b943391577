//! The HTTP transport under hostile clients, on loopback: slowloris and idle connections are
//! closed, a full connection table still lets a webhook through, every error the transport or
//! the framework produces is JSON, and HTTP/2 cleartext is not spoken.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{event, unique_id, TestApp};

/// How often the loops below look at a connection, and how many times at most.
const STEP: Duration = Duration::from_millis(100);
const STEPS: usize = 100;

fn addr(app: &TestApp) -> String {
    app.base_url.trim_start_matches("http://").to_owned()
}

/// Whether the server has closed `stream`: waits one step for bytes, EOF or an error. Bytes
/// (a response) are drained and do not count as closed.
async fn closed_within_a_step(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    match tokio::time::timeout(STEP, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// Sends one complete `GET /healthz` on a kept-alive connection and reads its answer.
async fn healthz_on(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"}") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer to /healthz")
            .unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

/// Sends raw bytes and reads the whole answer (the request says `connection: close`, or the
/// server closes after it): status and body as JSON.
async fn raw(app: &TestApp, request: &[u8]) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr(app)).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "not JSON: {head}"
    );
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn code(body: &Value) -> &str {
    assert!(body["error"]["message"].is_string(), "{body}");
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_slowloris_client_is_disconnected_once_the_header_timeout_passes() {
    let app = TestApp::builder()
        .env("HTTP_HEADER_TIMEOUT_SECS", "1")
        .env("HTTP_IDLE_TIMEOUT_SECS", "3600")
        .spawn()
        .await;
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    stream
        .write_all(b"POST /webhooks/stripe HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .unwrap();
    // One byte of a header per step, never finishing the head: each byte is new activity.
    let mut closed = false;
    for _ in 0..STEPS {
        if stream.write_all(b"a").await.is_err() || closed_within_a_step(&mut stream).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "a head trickling in was never cut off");
}

#[tokio::test]
async fn a_connection_that_never_sends_a_request_is_closed_at_the_header_timeout() {
    let app = TestApp::builder()
        .env("HTTP_HEADER_TIMEOUT_SECS", "1")
        .env("HTTP_IDLE_TIMEOUT_SECS", "3600")
        .spawn()
        .await;
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    let mut closed = false;
    for _ in 0..STEPS {
        if closed_within_a_step(&mut stream).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "a silent connection was kept open");
}

#[tokio::test]
async fn a_body_trickled_after_a_complete_head_is_cut_off_with_408_and_nothing_is_logged() {
    let app = TestApp::builder()
        .env("HTTP_HEADER_TIMEOUT_SECS", "1")
        .env("HTTP_IDLE_TIMEOUT_SECS", "3600")
        .spawn()
        .await;
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    stream
        .write_all(
            b"POST /webhooks/stripe HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
              stripe-signature: t=1,v1=00\r\ncontent-length: 1000\r\n\r\n{",
        )
        .await
        .unwrap();
    // One body byte per step: the head is complete, so only the body's own bound can stop it.
    let mut answer = Vec::new();
    for _ in 0..STEPS {
        if stream.write_all(b" ").await.is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(STEP, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let body: Value = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(code(&body), "request_timeout");
    assert_eq!(app.audit("/api/audit/events").await.json["data"], json!([]));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = TestApp::builder()
        .env("HTTP_HEADER_TIMEOUT_SECS", "300")
        .env("HTTP_IDLE_TIMEOUT_SECS", "1")
        .spawn()
        .await;
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    healthz_on(&mut stream).await;
    // Kept alive: a second request on the same connection is served.
    healthz_on(&mut stream).await;
    let mut closed = false;
    for _ in 0..STEPS {
        if closed_within_a_step(&mut stream).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "an idle keep-alive connection was never closed");
}

#[tokio::test]
async fn with_every_connection_slot_held_by_idle_attackers_webhooks_are_still_answered() {
    let app = TestApp::builder()
        .env("HTTP_MAX_CONNECTIONS", "4")
        .env("HTTP_HEADER_TIMEOUT_SECS", "300")
        .env("HTTP_IDLE_TIMEOUT_SECS", "3600")
        .spawn()
        .await;
    // Four attackers fill the table: each is served once (so it is certainly accepted), then
    // two sit idle and two start a head they never finish.
    let mut attackers = Vec::new();
    for i in 0..4 {
        let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
        healthz_on(&mut stream).await;
        if i % 2 == 1 {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: a")
                .await
                .unwrap();
        }
        attackers.push(stream);
    }
    for _ in 0..3 {
        // A fresh client each time: a new connection, as a Stripe delivery would open.
        let client = reqwest::Client::new();
        let body = event(&unique_id("evt"), "customer.created");
        let reply = client
            .post(app.url("/webhooks/stripe"))
            .header("stripe-signature", app.sign(&body))
            .body(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("the webhook is answered while attackers hold every slot");
        assert_eq!(reply.status(), 200);
        let body: Value = serde_json::from_str(&reply.text().await.unwrap()).unwrap();
        assert_eq!(body["status"], "recorded");
    }
    // The oldest attacker gave its slot up for the first webhook.
    let mut closed = false;
    for _ in 0..STEPS {
        if closed_within_a_step(&mut attackers[0]).await {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the longest-idle connection was not closed at the cap"
    );
}

#[tokio::test]
async fn oversized_and_malformed_requests_get_json_errors_with_stable_codes() {
    let app = TestApp::spawn().await;
    let cases: Vec<(String, u16, &str)> = vec![
        // Over our limit: answered by the router's boundary.
        (
            format!(
                "GET /healthz?{} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
                "a".repeat(10_000)
            ),
            414,
            "uri_too_long",
        ),
        // Over hyper's fixed URI limit: hyper's own answer, rewritten.
        (
            format!(
                "GET /healthz?{} HTTP/1.1\r\nhost: x\r\n\r\n",
                "a".repeat(70_000)
            ),
            414,
            "uri_too_long",
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\nconnection: close\r\n\r\n",
                "a".repeat(20_000)
            ),
            431,
            "headers_too_large",
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
                "a".repeat(100_000)
            ),
            431,
            "headers_too_large",
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nhost: x\r\n{}\r\n",
                (0..150)
                    .map(|i| format!("x-h{i}: v\r\n"))
                    .collect::<String>()
            ),
            431,
            "headers_too_large",
        ),
        ("NOT HTTP AT ALL\r\n\r\n".to_owned(), 400, "bad_request"),
        (
            "GET /api/customers/%FF%FE HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_owned(),
            400,
            "invalid_path",
        ),
        (
            "GET /api/entitlements/%C3 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_owned(),
            400,
            "invalid_path",
        ),
        (
            "DELETE /webhooks/stripe HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_owned(),
            405,
            "method_not_allowed",
        ),
    ];
    for (request, status, expected) in cases {
        let (got, body) = raw(&app, request.as_bytes()).await;
        assert_eq!(
            (got, code(&body)),
            (status, expected),
            "{}",
            &request[..request.len().min(60)]
        );
    }
    // The service still answers normally afterwards.
    assert_eq!(app.get("/healthz", None).await.status, 200);
}

#[tokio::test]
async fn an_oversized_checkout_body_is_refused_as_json_before_it_is_read() {
    let jwt = "jwt-secret-for-tests-0123456789abcdef";
    let app = TestApp::builder()
        .env("JWT_SECRET", jwt)
        .env("STRIPE_SECRET_KEY", "sk_test_fakestripekey0123456789")
        .env("STRIPE_API_BASE", "http://127.0.0.1:9")
        .env("STRIPE_PRICE_IDS_TIER1", "price_tier1")
        .env("CHECKOUT_SUCCESS_URL", "https://app.example.com/ok")
        .env("CHECKOUT_CANCEL_URL", "https://app.example.com/cancel")
        .env(
            "STRIPE_PORTAL_RETURN_URL",
            "https://app.example.com/account",
        )
        .spawn()
        .await;
    let token = stripe_ledger::jwt::JwtKey::new(jwt)
        .unwrap()
        .sign("user_big", chrono::Utc::now().timestamp() + 3600);
    let padding = "x".repeat(3 * 1024 * 1024);
    let declared = app
        .client
        .post(app.url("/api/checkout"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(json!({"tier": "tier1", "padding": padding}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 413);
    assert_eq!(
        declared.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let body: Value = serde_json::from_str(&declared.text().await.unwrap()).unwrap();
    assert_eq!(code(&body), "payload_too_large");
    // Chunked, without a declared length: refused once it passes the limit.
    let mut request = format!(
        "POST /api/checkout HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..5 {
        request.extend_from_slice(format!("1000\r\n{}\r\n", "x".repeat(4096)).as_bytes());
    }
    let (status, body) = raw(&app, &request).await;
    assert_eq!((status, code(&body)), (413, "payload_too_large"));
}

#[tokio::test]
async fn http2_cleartext_is_not_spoken_and_an_h2c_upgrade_is_answered_in_http1() {
    let app = TestApp::spawn().await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    assert!(
        h2.get(app.url("/healthz")).send().await.is_err(),
        "HTTP/2 with prior knowledge was served"
    );
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    stream
        .write_all(
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings, close\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}
