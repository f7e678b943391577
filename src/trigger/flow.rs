//! Building basil-shaped event sequences: one fresh set of ids, a clock that only moves
//! forward, and the current state of each object, so every event in a sequence agrees with the
//! ones before it. The shapes follow `tests/fixtures/scenarios/generate.py` (which follows
//! Stripe's 2025-03-31.basil payloads: item-level periods, `invoice.parent.subscription_details`,
//! `status_transitions.paid_at` instead of `invoice.paid`).

use serde_json::{json, Value};

/// The API version every built-in fixture is rendered at.
pub const API_VERSION: &str = "2025-03-31.basil";
/// Stripe's monthly interval, as the scenario fixtures count it.
pub const MONTH: i64 = 30 * 86_400;
pub const DAY: i64 = 86_400;

/// A recurring price the fixtures subscribe to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub id: String,
    pub product: String,
    /// Minor units.
    pub unit_amount: i64,
    pub currency: String,
}

impl Default for Price {
    fn default() -> Self {
        Price {
            id: "price_local_standard".to_owned(),
            product: "prod_local_standard".to_owned(),
            unit_amount: 1500,
            currency: "usd".to_owned(),
        }
    }
}

impl Price {
    /// A price with this id on the default product and amount.
    pub fn with_id(id: &str) -> Self {
        Price {
            id: id.to_owned(),
            ..Price::default()
        }
    }

    fn to_json(&self, created: i64) -> Value {
        json!({
            "id": self.id, "object": "price", "active": true, "billing_scheme": "per_unit",
            "created": created, "currency": self.currency, "livemode": false,
            "lookup_key": null, "metadata": {}, "nickname": null, "product": self.product,
            "recurring": {"aggregate_usage": null, "interval": "month", "interval_count": 1,
                          "meter": null, "trial_period_days": null, "usage_type": "licensed"},
            "tax_behavior": "unspecified", "type": "recurring",
            "unit_amount": self.unit_amount, "unit_amount_decimal": self.unit_amount.to_string(),
        })
    }
}

/// The ids one sequence shares; fresh for every sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub tag: String,
    pub customer: String,
    pub subscription: String,
    pub item: String,
    pub session: String,
    pub payment_intent: String,
    pub charge: String,
    pub dispute: String,
    pub payment_method: String,
}

impl Ids {
    pub fn fresh() -> Self {
        // Stripe's ids are base62 after the prefix; hex is a subset, and 20 characters of a
        // v4 UUID make collisions between runs negligible.
        let tag: String = uuid::Uuid::new_v4().simple().to_string()[..20].to_owned();
        Ids {
            customer: format!("cus_{tag}"),
            subscription: format!("sub_{tag}"),
            item: format!("si_{tag}"),
            session: format!("cs_test_{tag}"),
            payment_intent: format!("pi_{tag}"),
            charge: format!("ch_{tag}"),
            dispute: format!("dp_{tag}"),
            payment_method: format!("pm_{tag}"),
            tag,
        }
    }

    /// The n-th invoice of the subscription (1-based).
    pub fn invoice(&self, n: u32) -> String {
        format!("in_{}{n:02}", self.tag)
    }
}

/// The subscription as it stands after the events so far.
#[derive(Debug, Clone)]
pub struct Sub {
    pub created: i64,
    pub status: &'static str,
    pub period_start: i64,
    pub price: Price,
    pub quantity: i64,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub latest_invoice: Option<String>,
    pub trial: Option<(i64, i64)>,
    pub pending_update: Option<Value>,
}

impl Sub {
    pub fn period_end(&self) -> i64 {
        self.period_start + MONTH
    }
}

/// The current invoice as it stands after the events so far.
#[derive(Debug, Clone)]
pub struct Inv {
    pub id: String,
    pub created: i64,
    pub status: &'static str,
    pub attempts: i64,
    pub next_attempt: Option<i64>,
    pub period_start: i64,
    pub amount: i64,
    pub reason: &'static str,
    pub paid_at: Option<i64>,
    pub description: Option<String>,
}

/// A Checkout Session's mode: a subscription or a one-time payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutMode {
    Subscription,
    Payment,
}

/// A sequence under construction.
#[derive(Debug, Clone)]
pub struct Flow {
    pub ids: Ids,
    pub user_id: String,
    pub price: Price,
    /// `created` of the next event (unix seconds); only moves forward.
    pub clock: i64,
    pub events: Vec<Value>,
    pub sub: Option<Sub>,
    pub invoice: Option<Inv>,
    invoices: u32,
}

impl Flow {
    pub fn new(ids: Ids, user_id: &str, price: Price, start: i64) -> Self {
        Flow {
            ids,
            user_id: user_id.to_owned(),
            price,
            clock: start,
            events: Vec::new(),
            sub: None,
            invoice: None,
            invoices: 0,
        }
    }

    /// Moves the clock to `t` (never backwards: `created` increases along a sequence).
    pub fn at(&mut self, t: i64) -> &mut Self {
        self.clock = self.clock.max(t);
        self
    }

    /// Appends an event about `object` at the current clock, then advances it a second.
    pub fn emit(&mut self, event_type: &str, object: Value, previous: Option<Value>) -> &mut Self {
        let mut data = json!({"object": object});
        if let Some(previous) = previous {
            data["previous_attributes"] = previous;
        }
        let event_id = format!("evt_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]);
        let request = format!("req_{}", &uuid::Uuid::new_v4().simple().to_string()[..14]);
        self.events.push(json!({
            "id": event_id, "object": "event", "api_version": API_VERSION,
            "created": self.clock, "data": data, "livemode": false, "pending_webhooks": 1,
            "request": {"id": request, "idempotency_key": uuid::Uuid::new_v4().to_string()},
            "type": event_type,
        }));
        self.clock += 1;
        self
    }

    pub fn customer_object(&self, email: &str) -> Value {
        json!({
            "id": self.ids.customer, "object": "customer", "address": null, "balance": 0,
            "created": self.events.first().map_or(self.clock, |e| e["created"].as_i64().unwrap_or(self.clock)),
            "currency": null, "default_source": null, "delinquent": false, "description": null,
            "email": email, "invoice_prefix": self.ids.tag[..8].to_uppercase(),
            "invoice_settings": {"default_payment_method": null}, "livemode": false,
            "metadata": {"user_id": self.user_id}, "name": null, "phone": null,
            "preferred_locales": ["en-US"], "shipping": null, "tax_exempt": "none",
        })
    }

    pub fn email(&self) -> String {
        format!("{}@example.com", self.user_id)
    }

    pub fn customer_created(&mut self) -> &mut Self {
        let object = self.customer_object(&self.email());
        self.emit("customer.created", object, None)
    }

    /// Starts the subscription (`customer.subscription.created`) with this status.
    pub fn subscription_created(&mut self, status: &'static str) -> &mut Self {
        self.sub = Some(Sub {
            created: self.clock,
            status,
            period_start: self.clock,
            price: self.price.clone(),
            quantity: 1,
            cancel_at_period_end: false,
            canceled_at: None,
            ended_at: None,
            // The invoice that pays for it: one already open (a 3-D Secure challenge), else
            // the one about to be created.
            latest_invoice: Some(
                self.invoice
                    .as_ref()
                    .map_or_else(|| self.ids.invoice(self.invoices + 1), |i| i.id.clone()),
            ),
            trial: None,
            pending_update: None,
        });
        let object = self.subscription_object();
        self.emit("customer.subscription.created", object, None)
    }

    /// Changes the subscription with `change`, then emits `event_type` with its new snapshot.
    pub fn subscription_event(
        &mut self,
        event_type: &str,
        previous: Option<Value>,
        change: impl FnOnce(&mut Sub),
    ) -> &mut Self {
        if let Some(sub) = self.sub.as_mut() {
            change(sub);
        }
        let object = self.subscription_object();
        self.emit(event_type, object, previous)
    }

    pub fn subscription_object(&self) -> Value {
        let Some(s) = &self.sub else {
            return Value::Null;
        };
        let id = &self.ids.subscription;
        let item = json!({
            "id": self.ids.item, "object": "subscription_item", "created": s.created,
            "current_period_end": s.period_end(), "current_period_start": s.period_start,
            "discounts": [], "metadata": {}, "price": s.price.to_json(s.created - 30 * DAY),
            "quantity": s.quantity, "subscription": id, "tax_rates": [],
        });
        let (trial_start, trial_end) = s.trial.map_or((None, None), |(a, b)| (Some(a), Some(b)));
        json!({
            "id": id, "object": "subscription", "application": null,
            "automatic_tax": {"enabled": false, "liability": null},
            "billing_cycle_anchor": s.created, "billing_mode": {"type": "classic"},
            "cancel_at": if s.cancel_at_period_end { Some(s.period_end()) } else { None },
            "cancel_at_period_end": s.cancel_at_period_end, "canceled_at": s.canceled_at,
            "cancellation_details": {"comment": null, "feedback": null,
                "reason": if s.cancel_at_period_end || s.canceled_at.is_some() { Some("cancellation_requested") } else { None }},
            "collection_method": "charge_automatically", "created": s.created,
            "currency": s.price.currency, "customer": self.ids.customer,
            "default_payment_method": self.ids.payment_method, "description": null,
            "discounts": [], "ended_at": s.ended_at,
            "invoice_settings": {"account_tax_ids": null, "issuer": {"type": "self"}},
            "items": {"object": "list", "data": [item], "has_more": false, "total_count": 1,
                      "url": format!("/v1/subscription_items?subscription={id}")},
            "latest_invoice": s.latest_invoice, "livemode": false,
            "metadata": {"user_id": self.user_id}, "pending_setup_intent": null,
            "pending_update": s.pending_update, "schedule": null, "start_date": s.created,
            "status": s.status, "test_clock": null, "trial_end": trial_end,
            "trial_start": trial_start,
        })
    }

    /// Opens the subscription's next invoice (`invoice.created`, draft).
    pub fn invoice_created(&mut self, reason: &'static str, amount: i64) -> &mut Self {
        self.new_invoice(reason, amount);
        let object = self.invoice_object();
        self.emit("invoice.created", object, None)
    }

    /// The id the next invoice will get.
    pub fn next_invoice_id(&self) -> String {
        self.ids.invoice(self.invoices + 1)
    }

    /// Makes the subscription's next invoice (a draft) the current one, without an event.
    pub fn new_invoice(&mut self, reason: &'static str, amount: i64) {
        self.invoices += 1;
        let id = self.ids.invoice(self.invoices);
        let period_start = self.sub.as_ref().map_or(self.clock, |s| s.period_start);
        if let Some(sub) = self.sub.as_mut() {
            sub.latest_invoice = Some(id.clone());
        }
        self.invoice = Some(Inv {
            id,
            created: self.clock,
            status: "draft",
            attempts: 0,
            next_attempt: None,
            period_start,
            amount,
            reason,
            paid_at: None,
            description: None,
        });
    }

    /// Changes the current invoice with `change`, then emits `event_type` with its snapshot.
    pub fn invoice_event(
        &mut self,
        event_type: &str,
        change: impl FnOnce(&mut Inv, i64),
    ) -> &mut Self {
        let now = self.clock;
        if let Some(inv) = self.invoice.as_mut() {
            change(inv, now);
        }
        let object = self.invoice_object();
        self.emit(event_type, object, None)
    }

    pub fn invoice_finalized(&mut self) -> &mut Self {
        self.invoice_event("invoice.finalized", |i, _| i.status = "open")
    }

    /// `invoice.paid` then `invoice.payment_succeeded`, as Stripe sends both.
    pub fn invoice_paid(&mut self) -> &mut Self {
        self.invoice_event("invoice.paid", |i, now| {
            i.status = "paid";
            i.attempts += 1;
            i.next_attempt = None;
            i.paid_at = Some(now);
        });
        self.invoice_event("invoice.payment_succeeded", |_, _| {})
    }

    /// A failed attempt; `retry_in` is when Smart Retries tries again (None: no more retries).
    pub fn invoice_payment_failed(&mut self, retry_in: Option<i64>) -> &mut Self {
        self.invoice_event("invoice.payment_failed", |i, now| {
            i.status = "open";
            i.attempts += 1;
            i.next_attempt = retry_in.map(|r| now + r);
        })
    }

    pub fn invoice_object(&self) -> Value {
        let Some(i) = &self.invoice else {
            return Value::Null;
        };
        let paid = i.status == "paid";
        let sub = &self.ids.subscription;
        let price = self.sub.as_ref().map_or(&self.price, |s| &s.price);
        let finalized = (i.status != "draft").then_some(i.created + 1);
        let voided = (i.status == "void").then_some(self.clock);
        let uncollectible = (i.status == "uncollectible").then_some(self.clock);
        json!({
            "id": i.id, "object": "invoice", "account_country": "US",
            "account_name": "Example SaaS", "amount_due": i.amount,
            "amount_paid": if paid { i.amount } else { 0 }, "amount_overpaid": 0,
            "amount_remaining": if paid || i.status == "void" { 0 } else { i.amount },
            "attempt_count": i.attempts, "attempted": i.attempts > 0,
            "auto_advance": matches!(i.status, "draft" | "open"), "billing_reason": i.reason,
            "collection_method": "charge_automatically", "created": i.created,
            "currency": price.currency, "customer": self.ids.customer,
            "customer_email": self.email(), "description": i.description,
            "hosted_invoice_url": format!("https://invoice.stripe.com/i/acct_1Example/test_{}", i.id),
            "invoice_pdf": format!("https://pay.stripe.com/invoice/acct_1Example/test_{}/pdf", i.id),
            "lines": {"object": "list", "data": [{
                "id": format!("il_{}", &i.id[3..]), "object": "line_item", "amount": i.amount,
                "currency": price.currency,
                "description": format!("1 × {} (at {:.2} {} / month)", price.product,
                    price.unit_amount as f64 / 100.0, price.currency.to_uppercase()),
                "period": {"end": i.period_start + MONTH, "start": i.period_start},
                "pricing": {"price_details": {"price": price.id, "product": price.product},
                            "type": "price_details"},
                "quantity": 1,
                "parent": {"type": "subscription_item_details", "subscription_item_details":
                           {"subscription": sub, "subscription_item": self.ids.item}}}],
                "has_more": false, "url": format!("/v1/invoices/{}/lines", i.id)},
            "livemode": false, "metadata": {}, "next_payment_attempt": i.next_attempt,
            "number": format!("{}-{:04}", self.ids.tag[..8].to_uppercase(), self.invoices),
            "parent": {"type": "subscription_details",
                       "subscription_details": {"metadata": {"user_id": self.user_id}, "subscription": sub}},
            "period_end": i.period_start, "period_start": i.period_start, "status": i.status,
            "status_transitions": {"finalized_at": finalized, "marked_uncollectible_at": uncollectible,
                                   "paid_at": i.paid_at, "voided_at": voided},
            "subtotal": i.amount, "total": i.amount,
        })
    }

    /// A Checkout Session snapshot. `status`: open, complete, expired; `payment_status`: paid,
    /// unpaid, no_payment_required.
    pub fn session_object(&self, mode: CheckoutMode, status: &str, payment_status: &str) -> Value {
        let created = self
            .events
            .first()
            .map_or(self.clock, |e| e["created"].as_i64().unwrap_or(self.clock));
        let (mode_name, subscription, payment_intent) = match mode {
            CheckoutMode::Subscription => (
                "subscription",
                (status == "complete").then(|| self.ids.subscription.clone()),
                None,
            ),
            CheckoutMode::Payment => ("payment", None, Some(self.ids.payment_intent.clone())),
        };
        json!({
            "id": self.ids.session, "object": "checkout.session",
            "amount_subtotal": self.price.unit_amount, "amount_total": self.price.unit_amount,
            "cancel_url": "https://app.example.com/billing/cancel",
            "client_reference_id": self.user_id, "created": created,
            "currency": self.price.currency, "customer": self.ids.customer, "customer_creation": null,
            "customer_details": {"email": self.email(), "name": null},
            "expires_at": created + DAY, "livemode": false, "metadata": {"user_id": self.user_id},
            "mode": mode_name, "payment_intent": payment_intent,
            "payment_method_types": ["card"], "payment_status": payment_status, "status": status,
            "subscription": subscription,
            "success_url": "https://app.example.com/billing/success?session_id={CHECKOUT_SESSION_ID}",
            "url": if status == "open" { Some(format!("https://checkout.stripe.com/c/pay/{}", self.ids.session)) } else { None },
        })
    }

    pub fn checkout(
        &mut self,
        event_type: &str,
        mode: CheckoutMode,
        status: &str,
        payment_status: &str,
    ) -> &mut Self {
        let object = self.session_object(mode, status, payment_status);
        self.emit(event_type, object, None)
    }

    /// A PaymentIntent snapshot; `decline` sets `last_payment_error` as a card decline does.
    pub fn payment_intent_object(&self, status: &str, decline: Option<&str>) -> Value {
        let amount = self.price.unit_amount;
        let created = self
            .events
            .first()
            .map_or(self.clock, |e| e["created"].as_i64().unwrap_or(self.clock));
        let error = decline.map(|code| {
            json!({
            "code": "card_declined", "decline_code": code, "message": "Your card was declined.",
            "type": "card_error"})
        });
        json!({
            "id": self.ids.payment_intent, "object": "payment_intent", "amount": amount,
            "amount_received": if status == "succeeded" { amount } else { 0 },
            "capture_method": "automatic_async", "created": created, "currency": self.price.currency,
            "customer": self.ids.customer, "last_payment_error": error, "livemode": false,
            "metadata": {}, "payment_method": self.ids.payment_method,
            "payment_method_types": ["card"], "status": status,
            "latest_charge": if status == "succeeded" { Some(self.ids.charge.clone()) } else { None },
        })
    }

    pub fn payment_intent(
        &mut self,
        event_type: &str,
        status: &str,
        decline: Option<&str>,
    ) -> &mut Self {
        let object = self.payment_intent_object(status, decline);
        self.emit(event_type, object, None)
    }

    /// The card charge of a one-time payment; `refunded` in minor units.
    pub fn charge_object(&self, refunded: i64) -> Value {
        let amount = self.price.unit_amount;
        json!({
            "id": self.ids.charge, "object": "charge", "amount": amount, "amount_captured": amount,
            "amount_refunded": refunded,
            "billing_details": {"address": {"city": null, "country": "US", "line1": null, "line2": null,
                                            "postal_code": "42424", "state": null},
                                "email": self.email(), "name": "Jenny Rosen", "phone": null},
            "captured": true, "created": self.clock, "currency": self.price.currency,
            "customer": self.ids.customer, "disputed": false, "livemode": false, "paid": true,
            "payment_intent": self.ids.payment_intent,
            "payment_method_details": {"card": {"brand": "visa", "country": "US", "exp_month": 12,
                "exp_year": 2030, "last4": "4242", "funding": "credit"}, "type": "card"},
            "refunded": refunded == amount, "status": "succeeded",
        })
    }

    pub fn charge(&mut self, event_type: &str, refunded: i64) -> &mut Self {
        let object = self.charge_object(refunded);
        self.emit(event_type, object, None)
    }

    /// A dispute of the one-time charge; `status`: needs_response, under_review, lost, won.
    pub fn dispute(&mut self, event_type: &str, status: &str) -> &mut Self {
        let object = json!({
            "id": self.ids.dispute, "object": "dispute", "amount": self.price.unit_amount,
            "charge": self.ids.charge, "created": self.clock, "currency": self.price.currency,
            "evidence_details": {"due_by": self.clock + 7 * DAY, "has_evidence": status != "needs_response",
                                 "past_due": false, "submission_count": i64::from(status != "needs_response")},
            "is_charge_refundable": false, "livemode": false, "metadata": {},
            "payment_intent": self.ids.payment_intent, "reason": "fraudulent", "status": status,
        });
        self.emit(event_type, object, None)
    }
}
