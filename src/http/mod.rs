//! HTTP routes. Handlers translate between HTTP and the library; no logic lives here.

mod audit;
mod billing_api;
mod boundary;
pub mod error;
mod health;
mod read_api;
pub mod request_context;
pub mod transport;
mod webhook;

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

pub use error::ApiError;

use crate::app::AppState;

/// `deadline_passed` flips when a shutdown's deadline passes (see `request_context`).
pub fn router(state: AppState, deadline_passed: tokio::sync::watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/webhooks/stripe", post(webhook::receive))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/api/outbox", get(read_api::outbox))
        .route("/api/audit/events", get(audit::list_events))
        .route("/api/audit/events/{event_id}", get(audit::show_event))
        .route("/api/dead-letters", get(read_api::dead_letters))
        .route("/api/reconciliations", get(read_api::reconciliations))
        .route("/api/reconciliations/{id}", get(read_api::reconciliation))
        .route("/api/checkout", post(billing_api::checkout))
        .route("/api/billing-portal", post(billing_api::portal))
        .route("/api/config", get(billing_api::config))
        .route("/api/customers", get(read_api::list_customers))
        .route("/api/customers/{id}", get(read_api::show_customer))
        .route("/api/subscriptions", get(read_api::list_subscriptions))
        .route("/api/subscriptions/{id}", get(read_api::show_subscription))
        .route("/api/invoices", get(read_api::list_invoices))
        .route("/api/orders", get(read_api::list_orders))
        .route("/api/entitlements/{user_id}", get(read_api::entitlement))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn(boundary::boundary))
        .layer(axum::middleware::from_fn_with_state(
            deadline_passed,
            request_context::request_context,
        ))
}

async fn not_found() -> ApiError {
    ApiError::not_found("route_not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::client(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

// Parsed by hand rather than with axum's `Query`, whose rejections are plain text: every error
// here must be JSON with a stable code. Repeated parameters are refused as ambiguous.
pub(crate) fn parse_query(query: Option<&str>) -> Result<BTreeMap<String, String>, ApiError> {
    let mut params = BTreeMap::new();
    let Some(query) = query else {
        return Ok(params);
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode_component(k)?;
        let v = decode_component(v)?;
        if params.insert(k.clone(), v).is_some() {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!(
                    "`{}` is given more than once",
                    k.chars().take(64).collect::<String>()
                ),
            ));
        }
    }
    Ok(params)
}

fn decode_component(s: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_query",
            "the query string is not valid percent-encoded UTF-8",
        )
    };
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad())
}
