use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::ApiError;
use crate::app::AppState;

/// The process is up and serving HTTP. Deliberately touches nothing else.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers within the ingest budget: safe to route Stripe's webhooks here.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match tokio::time::timeout(state.webhook.ingest_timeout, state.db.ping()).await {
        Ok(Ok(())) => Ok(Json(
            json!({"status": "ready", "database": state.db.backend().to_string()}),
        )),
        Ok(Err(e)) => Err(ApiError::Unavailable {
            detail: format!("readiness check failed: {e}"),
        }),
        Err(_) => Err(ApiError::Unavailable {
            detail: "readiness check timed out".to_owned(),
        }),
    }
}
