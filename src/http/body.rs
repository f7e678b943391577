//! Reading a request body: bounded in size and in time, for every route that takes one.
//!
//! The transport's header timeout stops a client that trickles a request's head; once the head
//! is in, the connection counts as busy and no transport timeout applies. Without a bound here a
//! client could send a head, then one body byte a minute, and hold a connection slot (and a
//! handler) for ever. So the body must arrive within the same `HTTP_HEADER_TIMEOUT_SECS`.

use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};

use super::ApiError;

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Over the route's limit, declared or counted.
    TooLarge { limit: usize },
    /// Not all there within the time allowed.
    TimedOut { within: Duration },
    /// The connection broke while reading.
    Unreadable,
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> ApiError {
        match e {
            BodyError::TooLarge { limit } => ApiError::client(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than the {limit}-byte limit"),
            ),
            BodyError::TimedOut { within } => ApiError::client(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    within.as_secs()
                ),
            ),
            BodyError::Unreadable => {
                ApiError::bad_request("body_unreadable", "the request body could not be read")
            }
        }
    }
}

/// The whole body, at most `limit` bytes (refused before reading a byte when `Content-Length`
/// says more), within `within`.
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    within: Duration,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    match tokio::time::timeout(within, to_bytes(body, limit)).await {
        Err(_) => Err(BodyError::TimedOut { within }),
        Ok(Ok(bytes)) => Ok(bytes),
        // `to_bytes` fails for the limit or for a broken connection; only the former is ours.
        Ok(Err(e)) => Err(
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            {
                BodyError::TooLarge { limit }
            } else {
                BodyError::Unreadable
            },
        ),
    }
}
