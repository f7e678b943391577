//! `ApiError`: the one error type at the HTTP boundary.
//!
//! Every error answers `{"error": {"code", "message"}}` with a stable `code`. Client mistakes
//! get a precise 4xx. Server-side failures are logged once here, with their detail, and answer
//! a generic message: internal detail never reaches a response.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StorageError;

#[derive(Debug)]
pub enum ApiError {
    /// A client error with a stable code and a message safe to show.
    Client {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// The database is down or too slow: retry later.
    Unavailable { detail: String },
    /// A bug or an unexpected failure; detail is logged, never returned.
    Internal { detail: String },
    /// The service is stopping and the request did not finish in time: retry elsewhere.
    ShuttingDown,
}

impl ApiError {
    pub fn client(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Client {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::client(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::client(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unauthenticated() -> Self {
        Self::client(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a valid service token is required: Authorization: Bearer <token>",
        )
    }

    pub fn forbidden(scope: &str) -> Self {
        Self::client(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("this token lacks the `{scope}` scope"),
        )
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        ApiError::Internal {
            detail: detail.to_string(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Client { status, .. } => *status,
            ApiError::Unavailable { .. } | ApiError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Client { code, .. } => code,
            ApiError::Unavailable { .. } => "storage_unavailable",
            ApiError::Internal { .. } => "internal_error",
            ApiError::ShuttingDown => "shutting_down",
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        if e.is_transient() {
            ApiError::Unavailable { detail: e.report() }
        } else {
            ApiError::Internal { detail: e.report() }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code();
        let message = match &self {
            ApiError::Client { message, .. } => message.clone(),
            ApiError::Unavailable { detail } => {
                tracing::error!(code, %detail, "storage unavailable");
                "the database is unavailable; retry later".to_owned()
            }
            ApiError::Internal { detail } => {
                tracing::error!(code, %detail, "internal error");
                "internal error".to_owned()
            }
            ApiError::ShuttingDown => {
                "the service is shutting down; retry (another instance, or this one once restarted)"
                    .to_owned()
            }
        };
        let mut response = (
            status,
            axum::Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
