//! Builders for realistic (basil-shaped) Stripe events, for tests that need specific ones.

use serde_json::{json, Value};

pub const T0: i64 = 1_763_800_000;
pub const MONTH: i64 = 2_592_000;

pub fn event(id: &str, event_type: &str, created: i64, object: Value) -> Vec<u8> {
    json!({
        "id": id, "object": "event", "api_version": "2025-03-31.basil", "created": created,
        "livemode": false, "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null},
        "type": event_type, "data": {"object": object}
    })
    .to_string()
    .into_bytes()
}

pub fn customer(id: &str, user_id: Option<&str>) -> Value {
    let metadata = match user_id {
        Some(u) => json!({"user_id": u}),
        None => json!({}),
    };
    json!({"id": id, "object": "customer", "email": format!("{id}@example.com"), "created": T0, "metadata": metadata, "livemode": false})
}

pub fn checkout_subscription(id: &str, customer: &str, subscription: &str, user_id: &str) -> Value {
    json!({
        "id": id, "object": "checkout.session", "mode": "subscription", "status": "complete",
        "payment_status": "paid", "client_reference_id": user_id, "customer": customer,
        "subscription": subscription, "amount_total": 1500, "currency": "usd", "metadata": {}
    })
}

pub fn subscription(
    id: &str,
    customer: &str,
    status: &str,
    period_end: i64,
    cancel_at_period_end: bool,
) -> Value {
    json!({
        "id": id, "object": "subscription", "customer": customer, "status": status,
        "cancel_at_period_end": cancel_at_period_end, "created": T0, "currency": "usd",
        "latest_invoice": format!("in_{id}_{period_end}"), "metadata": {},
        "canceled_at": if status == "canceled" { json!(period_end) } else { Value::Null },
        "ended_at": if status == "canceled" { json!(period_end) } else { Value::Null },
        "items": {"object": "list", "has_more": false, "data": [{
            "id": format!("si_{id}"), "object": "subscription_item", "quantity": 1,
            "current_period_start": period_end - MONTH, "current_period_end": period_end,
            "price": {"id": "price_tier1", "object": "price", "unit_amount": 1500, "currency": "usd",
                      "recurring": {"interval": "month", "interval_count": 1}, "product": "prod_tier1"}
        }]}
    })
}

pub fn invoice(
    subscription: &str,
    customer: &str,
    period_end: i64,
    status: &str,
    attempts: i64,
) -> Value {
    json!({
        "id": format!("in_{subscription}_{period_end}"), "object": "invoice", "customer": customer,
        "status": status, "amount_due": 1500, "amount_paid": if status == "paid" { 1500 } else { 0 },
        "amount_remaining": if status == "paid" { 0 } else { 1500 }, "currency": "usd",
        "attempt_count": attempts, "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1/test",
        "billing_reason": "subscription_cycle", "created": period_end - MONTH,
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": subscription, "metadata": {}}}
    })
}
