//! `stripe-ledger go-live-check`: the go-live checklist's "what to test" table, run against a
//! running **test-mode** service. Each scenario starts as a real go-live test does: a fresh
//! user signs in (a JWT signed with the service's `JWT_SECRET`) and goes through the service's
//! own `POST /api/checkout`, which creates the Stripe customer and Checkout Session and logs
//! them as its own evidence (docs/adr/0013). Then it posts the signed events Stripe would send
//! once the user acted in Checkout, about THAT customer and session (fresh ids for the rest),
//! reads the result back through the read API and compares it with what the checklist expects.

use std::io::Write;

use serde_json::{json, Value};

use crate::jwt::JwtKey;
use crate::trigger::catalog::{self, FixtureOptions};
use crate::trigger::flow::{CheckoutMode, Flow, Price, DAY, MONTH};
use crate::trigger::{self, Posted};

#[derive(Debug, Clone)]
pub struct GoLiveOptions {
    /// The service's base URL, e.g. `http://127.0.0.1:3000`.
    pub base_url: String,
    /// The webhook endpoint secret (the first of a comma-separated list signs).
    pub secret: String,
    /// A service token of scope `read`.
    pub token: String,
    pub price: Price,
    /// Signs each fresh user's token: the service's `JWT_SECRET`, audience and issuer.
    pub jwt: JwtKey,
    /// The subscription tier to check out; the first of `GET /api/config`'s when `None`.
    pub tier: Option<String>,
}

/// What a refusal says when checkout cannot be used.
pub const NEEDS_CHECKOUT: &str = "go-live-check needs the service's test-mode Stripe keys (STRIPE_SECRET_KEY=sk_test_..., a tier price, the checkout URLs) and its JWT_SECRET, because every scenario starts with POST /api/checkout as a signed-in user, as a real go-live test does";

/// How the check ended; the exit code is 0, 1 and 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    AllHeld,
    SomeFailed,
    /// Nothing was posted: live mode, unreachable, not ready, a token refused, or checkout
    /// not configured.
    Refused(String),
}

impl Verdict {
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::AllHeld => 0,
            Verdict::SomeFailed => 1,
            Verdict::Refused(_) => 2,
        }
    }
}

/// The checklist's scenarios, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    HappyPath,
    CardDecline,
    ThreeDSecure,
    WebhookRetry,
    Upgrade,
    Cancellation,
    FailedPayment,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::HappyPath,
        Scenario::CardDecline,
        Scenario::ThreeDSecure,
        Scenario::WebhookRetry,
        Scenario::Upgrade,
        Scenario::Cancellation,
        Scenario::FailedPayment,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::HappyPath => "happy path",
            Scenario::CardDecline => "card decline",
            Scenario::ThreeDSecure => "3-D Secure",
            Scenario::WebhookRetry => "webhook retry",
            Scenario::Upgrade => "upgrade",
            Scenario::Cancellation => "cancellation",
            Scenario::FailedPayment => "failed payment",
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub scenario: Scenario,
    pub expected: String,
    pub observed: String,
}

impl Row {
    pub fn ok(&self) -> bool {
        self.expected == self.observed
    }
}

struct Ctx {
    client: reqwest::Client,
    base: String,
    secret: String,
    token: String,
    price: Price,
    jwt: JwtKey,
    /// The tier every scenario checks out (resolved by the preflight).
    tier: String,
}

/// Runs every scenario and writes the table to `out`.
pub async fn run(options: &GoLiveOptions, out: &mut impl Write) -> anyhow::Result<Verdict> {
    let mut ctx = Ctx {
        client: trigger::http_client()?,
        base: options.base_url.trim_end_matches('/').to_owned(),
        secret: options.secret.clone(),
        token: options.token.clone(),
        price: options.price.clone(),
        jwt: options.jwt.clone(),
        tier: String::new(),
    };
    match preflight(&ctx, options.tier.as_deref()).await {
        Ok(tier) => ctx.tier = tier,
        Err(reason) => return Ok(Verdict::Refused(reason)),
    }
    let mut rows = Vec::new();
    for scenario in Scenario::ALL {
        let expected = expected(&ctx, scenario);
        let observed = observe(&ctx, scenario)
            .await
            .unwrap_or_else(|failure| failure);
        rows.push(Row {
            scenario,
            expected,
            observed,
        });
    }
    write!(out, "{}", render(&rows))?;
    Ok(if rows.iter().all(Row::ok) {
        Verdict::AllHeld
    } else {
        Verdict::SomeFailed
    })
}

/// The table, with aligned columns.
pub fn render(rows: &[Row]) -> String {
    let header = ["scenario", "expected", "observed", "ok"];
    let lines: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                r.scenario.name().to_owned(),
                r.expected.clone(),
                r.observed.clone(),
                if r.ok() { "ok" } else { "FAILED" }.to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for l in &lines {
        for (w, cell) in widths.iter_mut().zip(l) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let fmt = |cells: [&str; 4]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join(" | ").trim_end())
    };
    let mut text = fmt(header);
    for l in &lines {
        text.push_str(&fmt([&l[0], &l[1], &l[2], &l[3]]));
    }
    let held = rows.iter().filter(|r| r.ok()).count();
    text.push_str(&format!("{held} of {} held\n", rows.len()));
    text
}

/// The service must be reachable, ready, in test mode, accept the read token and the user
/// tokens, and have checkout configured; otherwise nothing is posted. Returns the tier.
async fn preflight(ctx: &Ctx, tier: Option<&str>) -> Result<String, String> {
    let url = format!("{}/readyz", ctx.base);
    let response = ctx
        .client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("could not reach {url}: {e}"))?;
    let status = response.status().as_u16();
    let body: Value =
        serde_json::from_str(&response.text().await.unwrap_or_default()).unwrap_or_default();
    if status != 200 {
        return Err(format!("{url} answered {status}: the service is not ready"));
    }
    match body["mode"].as_str() {
        Some("test") => {}
        Some("live") => {
            return Err(format!(
                "the service at {} runs in live mode; go-live-check only posts test-mode events",
                ctx.base
            ))
        }
        _ => {
            return Err(format!(
                "{url} does not report the service's mode; refusing to post events to it"
            ))
        }
    }
    let probe = ctx.read("/api/entitlements/go_live_check_probe").await?;
    if probe.0 != 200 {
        return Err(format!(
            "the read token was refused: {} {}",
            probe.0,
            probe.1["error"]["code"].as_str().unwrap_or("")
        ));
    }
    checkout_tier(ctx, tier).await
}

/// `GET /api/config` as a signed-in user: checkout must be on, the token accepted, and the
/// tier one the service sells.
async fn checkout_tier(ctx: &Ctx, wanted: Option<&str>) -> Result<String, String> {
    let (status, body) = ctx
        .as_user(
            reqwest::Method::GET,
            "/api/config",
            &fresh_user("probe"),
            None,
        )
        .await?;
    let code = body["error"]["code"].as_str().unwrap_or("");
    match (status, code) {
        (200, _) => {}
        (503, "billing_not_configured") => {
            return Err(format!(
                "checkout is not configured on {} (503 billing_not_configured): {NEEDS_CHECKOUT}",
                ctx.base
            ))
        }
        (401, _) => {
            return Err(format!(
                "the service refused the user token (401 {}): --jwt-secret must be the service's JWT_SECRET (and JWT_AUDIENCE/JWT_ISSUER the ones it checks); {NEEDS_CHECKOUT}",
                crate::terminal::escape(code)
            ))
        }
        _ => {
            return Err(format!(
                "GET /api/config answered {status} {}",
                crate::terminal::escape(code)
            ))
        }
    }
    let tiers: Vec<&str> = body["tiers"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let chosen = match wanted {
        None => tiers.first().copied(),
        Some(w) => tiers.iter().copied().find(|t| t.eq_ignore_ascii_case(w)),
    };
    match chosen {
        Some(tier) => Ok(tier.to_owned()),
        None if tiers.is_empty() => Err(format!(
            "the service sells no subscription tier (STRIPE_PRICE_IDS_<TIER>); {NEEDS_CHECKOUT}"
        )),
        None => Err(format!(
            "--tier {}: the service's tiers are {}",
            crate::terminal::escape(wanted.unwrap_or_default()),
            crate::terminal::escape(&tiers.join(", "))
        )),
    }
}

/// A fresh user id, `user_golive_<what>_<tag>`.
fn fresh_user(what: &str) -> String {
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..12];
    format!("user_golive_{what}_{tag}")
}

impl Ctx {
    /// A fresh user checks out through the service (which creates and logs the customer and
    /// session); the returned flow continues with those ids, fresh ones for everything else.
    async fn flow(&self, scenario: Scenario, span: i64) -> Result<Flow, String> {
        let user = fresh_user(&scenario.name().replace([' ', '-'], "_").to_lowercase());
        let (customer, session) = self.checkout(&user).await?;
        Ok(catalog::new_flow(
            &FixtureOptions {
                user_id: Some(user),
                price: self.price.clone(),
                now: chrono::Utc::now().timestamp(),
                customer: Some(customer),
                session: Some(session),
            },
            span,
        ))
    }

    /// `POST /api/checkout` as `user`, then the customer it created for them, from the read
    /// API. Returns `(customer, session)`.
    async fn checkout(&self, user: &str) -> Result<(String, String), String> {
        let body = json!({"tier": self.tier});
        let (status, answer) = self
            .as_user(reqwest::Method::POST, "/api/checkout", user, Some(&body))
            .await?;
        if status != 200 {
            return Err(format!(
                "checkout answered {status} {}",
                crate::terminal::escape(answer["error"]["code"].as_str().unwrap_or(""))
            ));
        }
        let session = answer["session_id"].as_str().unwrap_or_default().to_owned();
        trigger::check_existing_id("checkout's session_id", &session, "cs_")?;
        let (status, customers) = self.read(&format!("/api/customers?user_id={user}")).await?;
        let customer = customers["data"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if status != 200 || customer.is_empty() {
            return Err(format!(
                "no customer linked to {user} after checkout (customers read answered {status})"
            ));
        }
        trigger::check_existing_id("the checkout customer", &customer, "cus_")?;
        Ok((customer, session))
    }

    /// A request with a fresh 10-minute user token for `user` (JSON body when given).
    async fn as_user(
        &self,
        method: reqwest::Method,
        path: &str,
        user: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let token = self.jwt.sign(user, chrono::Utc::now().timestamp() + 600);
        let url = format!("{}{path}", self.base);
        let mut request = self.client.request(method, &url).bearer_auth(token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("could not reach {url}: {e}"))?;
        let status = response.status().as_u16();
        let body =
            serde_json::from_str(&response.text().await.unwrap_or_default()).unwrap_or_default();
        Ok((status, body))
    }

    /// Posts the events; any non-2xx becomes the observed failure.
    async fn post(&self, events: &[Value]) -> Result<Vec<Posted>, String> {
        let url = format!("{}/webhooks/stripe", self.base);
        let posted = trigger::post_events(&self.client, &url, &self.secret, events, None)
            .await
            .map_err(|e| format!("post failed: {e:#}"))?;
        match posted.iter().find(|p| !p.ok()) {
            Some(p) => Err(format!(
                "{} answered {} {}",
                p.event_type,
                p.status,
                p.outcome()
            )),
            None => Ok(posted),
        }
    }

    async fn read(&self, path: &str) -> Result<(u16, Value), String> {
        let url = format!("{}{path}", self.base);
        let response = self
            .client
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("could not read {path}: {e}"))?;
        let status = response.status().as_u16();
        let body =
            serde_json::from_str(&response.text().await.unwrap_or_default()).unwrap_or_default();
        Ok((status, body))
    }

    /// `access (reason)` of the user's entitlement.
    async fn entitlement(&self, user: &str) -> Result<String, String> {
        let (status, body) = self.read(&format!("/api/entitlements/{user}")).await?;
        if status != 200 {
            return Err(format!("entitlement read answered {status}"));
        }
        Ok(format!(
            "{} ({})",
            body["access"].as_str().unwrap_or("?"),
            body["reason"].as_str().unwrap_or("?")
        ))
    }

    async fn subscription(&self, id: &str) -> Result<Value, String> {
        match self.read(&format!("/api/subscriptions/{id}")).await? {
            (200, body) => Ok(body),
            (status, body) => Err(format!(
                "subscription read answered {status} {}",
                body["error"]["code"].as_str().unwrap_or("")
            )),
        }
    }
}

fn expected(ctx: &Ctx, scenario: Scenario) -> String {
    match scenario {
        Scenario::HappyPath => "granted (subscription_active), subscription active".to_owned(),
        Scenario::CardDecline => "denied (no_subscription)".to_owned(),
        Scenario::ThreeDSecure => {
            "denied (no_subscription), then granted (subscription_active)".to_owned()
        }
        Scenario::WebhookRetry => "3 duplicate, granted (subscription_active)".to_owned(),
        Scenario::Upgrade => format!(
            "granted (subscription_active), price {}",
            upgrade_price(&ctx.price).id
        ),
        Scenario::Cancellation => {
            "granted (subscription_active), then denied (canceled)".to_owned()
        }
        Scenario::FailedPayment => "grace (past_due_grace)".to_owned(),
    }
}

/// Runs one scenario; `Err` is an observation too (a refused post, a failed read).
async fn observe(ctx: &Ctx, scenario: Scenario) -> Result<String, String> {
    match scenario {
        Scenario::HappyPath => {
            let mut f = ctx.flow(scenario, 60).await?;
            catalog::checkout_subscription(&mut f);
            ctx.post(&f.events).await?;
            let sub = ctx.subscription(&f.ids.subscription).await?;
            Ok(format!(
                "{}, subscription {}",
                ctx.entitlement(&f.user_id).await?,
                sub["status"].as_str().unwrap_or("?")
            ))
        }
        Scenario::CardDecline => {
            // The declined card fails the payment; Checkout creates no subscription, and the
            // abandoned session expires a day later.
            let mut f = ctx.flow(scenario, DAY + 60).await?;
            catalog::card_declined(&mut f);
            f.at(f.clock + DAY);
            f.checkout(
                "checkout.session.expired",
                CheckoutMode::Subscription,
                "expired",
                "unpaid",
            );
            ctx.post(&f.events).await?;
            ctx.entitlement(&f.user_id).await
        }
        Scenario::ThreeDSecure => {
            let mut f = ctx.flow(scenario, 120).await?;
            catalog::three_d_secure_challenge(&mut f);
            ctx.post(&f.events).await?;
            let before = ctx.entitlement(&f.user_id).await?;
            let challenged = f.events.len();
            f.at(f.clock + 30);
            catalog::three_d_secure_completed(&mut f);
            ctx.post(&f.events[challenged..]).await?;
            Ok(format!(
                "{before}, then {}",
                ctx.entitlement(&f.user_id).await?
            ))
        }
        Scenario::WebhookRetry => webhook_retry(ctx).await,
        Scenario::Upgrade => upgrade(ctx).await,
        Scenario::Cancellation => cancellation(ctx).await,
        Scenario::FailedPayment => {
            let mut f = ctx.flow(scenario, MONTH + 2 * 3600).await?;
            catalog::renewal(&mut f);
            catalog::past_due(&mut f, Some(3 * DAY));
            ctx.post(&f.events).await?;
            ctx.entitlement(&f.user_id).await
        }
    }
}

/// Out of order (the invoice paid before anything else), then three events again with fresh
/// signatures, as Stripe's retries are: acknowledged as duplicates, nothing changes.
async fn webhook_retry(ctx: &Ctx) -> Result<String, String> {
    let mut f = ctx.flow(Scenario::WebhookRetry, 60).await?;
    catalog::checkout_subscription(&mut f);
    let mut order = f.events.clone();
    if let Some(i) = order.iter().position(|e| e["type"] == "invoice.paid") {
        let paid = order.remove(i);
        order.insert(0, paid);
    }
    ctx.post(&order).await?;
    let retried: Vec<Value> = order.iter().take(3).cloned().collect();
    let posted = ctx.post(&retried).await?;
    let duplicates = posted.iter().filter(|p| p.outcome() == "duplicate").count();
    Ok(format!(
        "{duplicates} duplicate, {}",
        ctx.entitlement(&f.user_id).await?
    ))
}

/// A plan change to a price at twice the amount, with its proration invoice paid.
async fn upgrade(ctx: &Ctx) -> Result<String, String> {
    let mut f = ctx.flow(Scenario::Upgrade, 2 * DAY).await?;
    catalog::checkout_subscription(&mut f);
    f.at(f.clock + DAY);
    let upgrade = upgrade_price(&f.price);
    let old_items = f.subscription_object()["items"].clone();
    let next = f.next_invoice_id();
    let new_price = upgrade.clone();
    f.subscription_event(
        "customer.subscription.updated",
        Some(json!({"items": old_items})),
        |s| {
            s.price = new_price;
            s.latest_invoice = Some(next);
        },
    );
    f.invoice_created(
        "subscription_update",
        upgrade.unit_amount - f.price.unit_amount,
    )
    .invoice_finalized()
    .invoice_paid();
    ctx.post(&f.events).await?;
    let sub = ctx.subscription(&f.ids.subscription).await?;
    let price = sub["items"][0]["price"].as_str().unwrap_or("?");
    Ok(format!(
        "{}, price {price}",
        ctx.entitlement(&f.user_id).await?
    ))
}

/// What the upgrade scenario moves to: `<price>_upgrade` at twice the amount.
fn upgrade_price(price: &Price) -> Price {
    Price {
        id: format!("{}_upgrade", price.id),
        unit_amount: price.unit_amount * 2,
        ..price.clone()
    }
}

/// Cancel at the period end (access stays), then the period ends a minute ago and Stripe
/// deletes the subscription (access ends).
async fn cancellation(ctx: &Ctx) -> Result<String, String> {
    let mut f = ctx.flow(Scenario::Cancellation, MONTH + 120).await?;
    catalog::checkout_subscription(&mut f);
    f.at(f.clock + MONTH - 5 * DAY);
    f.subscription_event(
        "customer.subscription.updated",
        Some(json!({"cancel_at_period_end": false, "cancel_at": null})),
        |s| s.cancel_at_period_end = true,
    );
    ctx.post(&f.events).await?;
    let before = ctx.entitlement(&f.user_id).await?;
    let scheduled = f.events.len();
    let end = f.sub.as_ref().map_or(f.clock, |s| s.period_end());
    f.at(end);
    f.subscription_event("customer.subscription.deleted", None, |s| {
        s.status = "canceled";
        s.canceled_at = Some(end);
        s.ended_at = Some(end);
    });
    ctx.post(&f.events[scheduled..]).await?;
    Ok(format!(
        "{before}, then {}",
        ctx.entitlement(&f.user_id).await?
    ))
}
