//! HTTP routes. Handlers translate between HTTP and the library; no logic lives here.

mod audit;
mod billing_api;
pub mod body;
mod boundary;
pub mod error;
mod health;
mod history_api;
mod openapi;
mod query;
mod read_api;
pub mod request_context;
mod seal_api;
pub mod transport;
mod webhook;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

pub use error::ApiError;
pub use history_api::{explanation_json, with_inclusion_proofs};

use crate::app::AppState;

/// `deadline_passed` flips when a shutdown's deadline passes (see `request_context`).
pub fn router(state: AppState, deadline_passed: tokio::sync::watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/webhooks/stripe", post(webhook::receive))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/outbox", get(read_api::outbox))
        .route("/api/audit/events", get(audit::list_events))
        .route("/api/audit/events/{event_id}", get(audit::show_event))
        .route(
            "/api/audit/events/{event_id}/proof",
            get(seal_api::inclusion_proof),
        )
        .route("/api/audit/checkpoint", get(seal_api::checkpoint))
        .route("/api/audit/consistency", get(seal_api::consistency_proof))
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
        .route("/api/invoices/{id}", get(read_api::show_invoice))
        .route("/api/orders", get(read_api::list_orders))
        .route("/api/orders/{id}", get(read_api::show_order))
        .route("/api/{kind}/{id}/history", get(history_api::history))
        .route("/api/entitlements/{user_id}", get(read_api::entitlement))
        .route(
            "/api/entitlements/{user_id}/explain",
            get(history_api::explain),
        )
        // The console: HTML, its session cookie only (no bearer tokens), its own headers.
        .nest("/ui", crate::ui::router(&state))
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
