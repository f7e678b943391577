//! HTTP routes. Handlers translate between HTTP and the library; no logic lives here.

mod audit;
pub mod error;
mod health;
mod webhook;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

pub use error::ApiError;

use crate::app::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhooks/stripe", post(webhook::receive))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/audit/events", get(audit::list_events))
        .route("/api/audit/events/{event_id}", get(audit::show_event))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
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
