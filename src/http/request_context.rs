//! What every request carries: a request id, a tracing span, and the shutdown deadline.
//!
//! The id is the caller's `X-Request-Id` when it is a sane token (so a proxy's id follows the
//! request through), a fresh one otherwise, and is echoed in the response. Every log line of
//! the request's handling is emitted inside its span, so it carries the id; a webhook adds the
//! Stripe event id to the span once the signature is verified (never before: an unverified
//! body is not looked at).

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;
use tracing::Instrument as _;

use super::ApiError;

pub const REQUEST_ID: &str = "x-request-id";

pub async fn request_context(
    State(deadline): State<watch::Receiver<bool>>,
    request: Request,
    next: Next,
) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_sane(v))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        // Bounded: a long path is refused (414), but its line is still logged.
        path = %request.uri().path().chars().take(256).collect::<String>(),
        stripe_event_id = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    // Probes and scrapes would drown the access log; they go to debug.
    let routine = matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics");
    let mut deadline = deadline;
    let passed = async move {
        // A dropped sender means no deadline will ever come, not that it has passed.
        if deadline.wait_for(|passed| *passed).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let mut response = tokio::select! {
        response = next.run(request).instrument(span.clone()) => response,
        () = passed => {
            span.in_scope(|| tracing::warn!("answered 503: the request was still running at the shutdown deadline"));
            ApiError::ShuttingDown.into_response()
        }
    };
    span.in_scope(|| {
        let status = response.status().as_u16();
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        if routine {
            tracing::debug!(status, elapsed_ms, "request finished");
        } else {
            tracing::info!(status, elapsed_ms, "request finished");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// 1 to 128 characters of letters, digits and `-_.:`: safe to log and echo.
fn is_sane(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::is_sane;

    #[test]
    fn request_ids_from_callers_are_kept_only_when_safe_to_log() {
        assert!(is_sane("req_8f2a-01:edge.1"));
        assert!(!is_sane(""));
        assert!(!is_sane("with space"));
        assert!(!is_sane("line\nbreak"));
        assert!(!is_sane(&"x".repeat(129)));
    }
}
