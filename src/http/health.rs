use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::ApiError;
use crate::app::AppState;

/// The process is up and serving HTTP. Deliberately touches nothing else.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers within the ingest budget: safe to route Stripe's webhooks here. The
/// body also says the mode (`test` or `live`, from `STRIPE_SECRET_KEY`), so tools such as
/// `go-live-check` can refuse to post test events to a live service.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::ShuttingDown);
    }
    match tokio::time::timeout(state.webhook.ingest_timeout, state.db.ping()).await {
        Ok(Ok(())) => Ok(Json(
            json!({"status": "ready", "database": state.db.backend().to_string(),
                   "mode": state.webhook.mode.to_string()}),
        )),
        Ok(Err(e)) => Err(ApiError::Unavailable {
            detail: format!("readiness check failed: {}", e.report()),
        }),
        Err(_) => Err(ApiError::Unavailable {
            detail: "readiness check timed out".to_owned(),
        }),
    }
}

/// `GET /metrics`: Prometheus text format, behind a `metrics`-scope token.
pub async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    state.require(&headers, crate::auth::Scope::Metrics)?;
    // A slow database must not hang the scrape: its gauges then report `database_up 0`.
    let body = state.metrics.render(&state.db).await;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}
