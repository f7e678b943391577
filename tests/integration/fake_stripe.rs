//! A fake Stripe API on loopback: records every request, replays idempotent POSTs, serves the
//! objects checkout needs, can be scripted to fail, and plays Stripe's part after a Checkout
//! completes by posting signed webhooks.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub authorization: Option<String>,
    pub stripe_version: Option<String>,
    pub idempotency_key: Option<String>,
    pub form: Vec<(String, String)>,
}

impl Recorded {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A canned failure for the next request to a path.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
    /// Sleep this long before answering (to provoke client timeouts).
    pub delay_ms: u64,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    idempotent: HashMap<String, (u16, Value)>,
    customers: HashMap<String, Value>,
    sessions: HashMap<String, Value>,
    /// Events `GET /v1/events` lists, newest first, as Stripe does.
    events: Vec<Value>,
    /// What `GET /v1/subscriptions` and `GET /v1/customers` list.
    lists: HashMap<String, Vec<Value>>,
    /// Largest page served, whatever `limit` asks (to exercise pagination with few objects).
    page_cap: usize,
    failures: HashMap<String, VecDeque<Failure>>,
    next: u64,
}

#[derive(Clone, Default)]
pub struct FakeStripe {
    inner: Arc<Mutex<Inner>>,
    pub base_url: String,
}

impl FakeStripe {
    pub async fn start() -> FakeStripe {
        let mut fake = FakeStripe::default();
        let router = Router::new()
            .route("/v1/checkout/sessions", post(create_session))
            .route("/v1/billing_portal/sessions", post(create_portal))
            .route("/v1/events", axum::routing::get(list_events))
            .route("/v1/subscriptions", axum::routing::get(list_objects))
            .route(
                "/v1/customers",
                axum::routing::get(list_objects).post(create_customer),
            )
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        fake.base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        fake
    }

    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        self.inner
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn customers(&self) -> usize {
        self.inner.lock().unwrap().customers.len()
    }

    /// Makes `GET /v1/events` list this event (as if Stripe had tried to deliver it).
    pub fn add_event(&self, event: Value) {
        let mut inner = self.inner.lock().unwrap();
        inner.events.insert(0, event);
    }

    /// Sets what a list endpoint (`/v1/subscriptions`, `/v1/customers`) returns.
    pub fn set_list(&self, path: &str, objects: Vec<Value>) {
        self.inner
            .lock()
            .unwrap()
            .lists
            .insert(path.to_owned(), objects);
    }

    pub fn cap_pages(&self, size: usize) {
        self.inner.lock().unwrap().page_cap = size;
    }

    pub fn fail_next(&self, path: &str, failure: Failure) {
        self.inner
            .lock()
            .unwrap()
            .failures
            .entry(path.to_owned())
            .or_default()
            .push_back(failure);
    }

    /// What Stripe sends once the user pays for a subscription-mode session: the events, in
    /// the order Stripe emits them, as raw bodies to sign and post.
    pub fn complete_checkout(&self, session_id: &str, now: i64) -> Vec<Vec<u8>> {
        let mut inner = self.inner.lock().unwrap();
        inner.next += 1;
        let n = inner.next;
        let session = inner.sessions.get_mut(session_id).unwrap();
        let customer = session["customer"].as_str().unwrap().to_owned();
        let user = session["client_reference_id"].as_str().unwrap().to_owned();
        let price = session["line_items"][0]["price"]
            .as_str()
            .unwrap()
            .to_owned();
        let sub = format!("sub_fake{n}");
        session["status"] = json!("complete");
        session["payment_status"] = json!("paid");
        session["subscription"] = json!(sub);
        let session = session.clone();
        let end = now + 2_592_000;
        let subscription = json!({
            "id": sub, "object": "subscription", "customer": customer, "status": "active",
            "cancel_at_period_end": false, "created": now, "latest_invoice": format!("in_fake{n}"),
            "metadata": {"user_id": user}, "livemode": false,
            "items": {"object": "list", "data": [{"id": format!("si_fake{n}"), "object": "subscription_item",
                "quantity": 1, "current_period_start": now, "current_period_end": end,
                "price": {"id": price, "object": "price", "unit_amount": 1500, "currency": "usd"}}]}
        });
        let invoice = json!({
            "id": format!("in_fake{n}"), "object": "invoice", "customer": customer, "status": "paid",
            "amount_due": 1500, "amount_paid": 1500, "currency": "usd", "attempt_count": 1,
            "parent": {"type": "subscription_details", "subscription_details": {"subscription": sub}}
        });
        let event = |k: u32, t: &str, object: Value| {
            json!({"id": format!("evt_fake{n}_{k}"), "object": "event", "api_version": "2025-03-31.basil",
                   "created": now, "livemode": false, "type": t, "data": {"object": object}})
            .to_string()
            .into_bytes()
        };
        vec![
            event(1, "customer.subscription.created", subscription),
            event(2, "checkout.session.completed", session),
            event(3, "invoice.paid", invoice),
        ]
    }

    fn record(&self, path: &str, headers: &HeaderMap, body: &[u8]) -> Option<Failure> {
        let h = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let mut inner = self.inner.lock().unwrap();
        inner.requests.push(Recorded {
            path: path.to_owned(),
            authorization: h("authorization"),
            stripe_version: h("stripe-version"),
            idempotency_key: h("idempotency-key"),
            form: parse_form(body),
        });
        inner.failures.get_mut(path).and_then(VecDeque::pop_front)
    }

    /// Stripe's idempotency: the same key gets the first answer again.
    fn idempotent(
        &self,
        headers: &HeaderMap,
        create: impl FnOnce(&mut Inner) -> Value,
    ) -> Response {
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut inner = self.inner.lock().unwrap();
        if let Some(key) = &key {
            if let Some((status, body)) = inner.idempotent.get(key) {
                let mut r =
                    (StatusCode::from_u16(*status).unwrap(), Json(body.clone())).into_response();
                r.headers_mut()
                    .insert("idempotent-replayed", "true".parse().unwrap());
                return r;
            }
        }
        let body = create(&mut inner);
        if let Some(key) = key {
            inner.idempotent.insert(key, (200, body.clone()));
        }
        Json(body).into_response()
    }
}

async fn failure_response(f: Failure) -> Response {
    if f.delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(f.delay_ms)).await;
    }
    let mut r = (StatusCode::from_u16(f.status).unwrap(), Json(f.body)).into_response();
    for (name, value) in f.headers {
        r.headers_mut().insert(name, value.parse().unwrap());
    }
    r
}

async fn list_events(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    if let Some(f) = fake.record("/v1/events", &headers, query.as_bytes()) {
        return failure_response(f).await;
    }
    let params = parse_form(query.as_bytes());
    let since = param(&params, "created[gte]")
        .and_then(|c| c.parse::<i64>().ok())
        .unwrap_or(0);
    let inner = fake.inner.lock().unwrap();
    let events = inner
        .events
        .iter()
        .filter(|e| e["created"].as_i64().unwrap_or(0) >= since)
        .cloned()
        .collect();
    paginate("/v1/events", events, &params, inner.page_cap)
}

async fn list_objects(
    State(fake): State<FakeStripe>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    if let Some(f) = fake.record(&path, &headers, query.as_bytes()) {
        return failure_response(f).await;
    }
    let params = parse_form(query.as_bytes());
    let inner = fake.inner.lock().unwrap();
    let objects = inner.lists.get(&path).cloned().unwrap_or_default();
    paginate(&path, objects, &params, inner.page_cap)
}

fn param(params: &[(String, String)], name: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// Stripe's list pagination: `limit` (capped by `page_cap` when set), `starting_after`,
/// `has_more`.
fn paginate(path: &str, all: Vec<Value>, params: &[(String, String)], page_cap: usize) -> Response {
    let limit = param(params, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(10)
        .min(100);
    let limit = if page_cap > 0 {
        limit.min(page_cap)
    } else {
        limit
    };
    let after = param(params, "starting_after");
    let mut rest = all
        .into_iter()
        .skip_while(|o| after.as_deref().is_some_and(|a| o["id"] != a))
        .skip(usize::from(after.is_some()));
    let data: Vec<Value> = rest.by_ref().take(limit).collect();
    let has_more = rest.next().is_some();
    Json(json!({"object": "list", "url": path, "has_more": has_more, "data": data})).into_response()
}

async fn create_customer(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(f) = fake.record("/v1/customers", &headers, &body) {
        return failure_response(f).await;
    }
    let form = parse_form(&body);
    fake.idempotent(&headers, |inner| {
        inner.next += 1;
        let id = format!("cus_fake{}", inner.next);
        let user = form.iter().find(|(k, _)| k == "metadata[user_id]").map(|(_, v)| v.clone());
        let customer = json!({"id": id, "object": "customer", "created": 1_763_800_000, "livemode": false,
                              "email": null, "metadata": {"user_id": user}});
        inner.customers.insert(id, customer.clone());
        customer
    })
}

async fn create_session(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(f) = fake.record("/v1/checkout/sessions", &headers, &body) {
        return failure_response(f).await;
    }
    let form = parse_form(&body);
    let get = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    fake.idempotent(&headers, |inner| {
        inner.next += 1;
        let id = format!("cs_test_fake{}", inner.next);
        let session = json!({
            "id": id, "object": "checkout.session", "mode": get("mode"), "status": "open",
            "payment_status": "unpaid", "customer": get("customer"),
            "client_reference_id": get("client_reference_id"), "livemode": false,
            "url": format!("https://checkout.stripe.test/c/pay/{id}"),
            "line_items": [{"price": get("line_items[0][price]"), "quantity": 1}],
            "amount_total": 1500, "currency": "usd", "metadata": {"user_id": get("metadata[user_id]")}
        });
        inner.sessions.insert(id, session.clone());
        session
    })
}

async fn create_portal(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(f) = fake.record("/v1/billing_portal/sessions", &headers, &body) {
        return failure_response(f).await;
    }
    let form = parse_form(&body);
    let customer = form
        .iter()
        .find(|(k, _)| k == "customer")
        .map(|(_, v)| v.clone());
    fake.idempotent(&headers, |inner| {
        inner.next += 1;
        json!({"id": format!("bps_fake{}", inner.next), "object": "billing_portal.session",
               "customer": customer, "url": format!("https://billing.stripe.test/p/session/test_{}", inner.next)})
    })
}

pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    };
    std::str::from_utf8(body)
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}
