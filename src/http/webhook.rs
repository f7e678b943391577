use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use super::ApiError;
use crate::app::AppState;
use crate::event_log::AppendOutcome;
use crate::ingest::{self, IngestError, Ingested};
use crate::metrics::WebhookOutcome;

/// `POST /webhooks/stripe`: 200 only once the event is durably in the log and projected.
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let result = handle(&state, &headers, body).await;
    let (event_type, outcome, code) = match &result {
        Ok((ingested, _)) => (
            ingested.event_type.as_str(),
            match ingested.outcome {
                AppendOutcome::Appended { .. } => WebhookOutcome::Recorded,
                AppendOutcome::Duplicate { .. } => WebhookOutcome::Duplicate,
            },
            "",
        ),
        Err(e) if e.status().is_client_error() => ("", WebhookOutcome::Rejected, e.code()),
        Err(e) => ("", WebhookOutcome::Failed, e.code()),
    };
    state
        .metrics
        .webhook(event_type, outcome, code, started.elapsed());
    if code == "projection_failed" {
        state.metrics.projection_failed("webhook", 1);
    }
    result.map(|(_, body)| body)
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Ingested, Json<Value>), ApiError> {
    let limit = state.webhook.max_body_bytes;
    let within = state.transport.header_timeout;
    let body = super::body::read(headers, body, limit, within)
        .await
        .map_err(|e| match e {
            // The webhook's own 413, logged and counted like its other rejections.
            super::body::BodyError::TooLarge { limit } => {
                reject(IngestError::PayloadTooLarge { limit })
            }
            other => {
                tracing::warn!(code = ApiError::from(other).code(), "webhook rejected");
                ApiError::from(other)
            }
        })?;
    let signature = headers
        .get("stripe-signature")
        .map(|v| v.to_str().unwrap_or("\u{0}invalid"));

    match ingest::ingest(&state.writer, &state.webhook, signature, &body, state.now()).await {
        Ok(ingested) => {
            let (status, position) = match ingested.outcome {
                AppendOutcome::Appended { position } => ("recorded", position),
                AppendOutcome::Duplicate {
                    position,
                    same_body,
                } => {
                    if !same_body {
                        tracing::warn!(
                            event_id = %ingested.event_id,
                            "duplicate event id with a different body (another endpoint or API version?); kept the first"
                        );
                    }
                    ("duplicate", position)
                }
            };
            tracing::info!(
                event_id = %ingested.event_id,
                event_type = %ingested.event_type,
                position,
                outcome = status,
                "webhook accepted"
            );
            let body = Json(json!({
                "received": true,
                "status": status,
                "event_id": ingested.event_id,
                "position": position,
            }));
            Ok((ingested, body))
        }
        Err(e) => Err(reject(e)),
    }
}

fn reject(e: IngestError) -> ApiError {
    let code = e.code();
    let message = match &e {
        IngestError::PayloadTooLarge { limit } => {
            format!("the body is larger than the {limit}-byte limit")
        }
        IngestError::Signature(s) => s.message().to_owned(),
        IngestError::Envelope(env) => env.to_string(),
        IngestError::LivemodeMismatch { expected } => format!(
            "the event's livemode does not match this service's {expected} mode (misrouted or forged)"
        ),
        IngestError::Storage(_) | IngestError::Timeout | IngestError::Projection(_) => {
            String::new()
        }
    };
    match e {
        IngestError::Storage(storage) => ApiError::from(storage),
        // The detail was logged by the projector; the code tells Stripe (and operators) that
        // the event is safe in the log and will be projected on retry.
        IngestError::Projection(error) => {
            tracing::error!(%error, "projection failed; the event is dead-lettered and Stripe will retry");
            ApiError::client(
            StatusCode::INTERNAL_SERVER_ERROR,
            code,
            "the event is recorded but could not be projected; it is dead-lettered and will be retried",
        )
        }
        IngestError::Timeout => ApiError::Unavailable {
            detail: "event log append exceeded the ingest budget".to_owned(),
        },
        IngestError::PayloadTooLarge { .. } => {
            tracing::warn!(code, "webhook rejected");
            ApiError::client(StatusCode::PAYLOAD_TOO_LARGE, code, message)
        }
        _ => {
            tracing::warn!(code, "webhook rejected");
            ApiError::bad_request(code, message)
        }
    }
}
