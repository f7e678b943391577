//! `UiError`: the one error type of the console's boundary.
//!
//! Every error is an HTML page with a stable `code` (the same codes as the API's, listed in
//! `docs/openapi.json`) and the security headers of every `/ui` response (added by the router's
//! layer). Server-side failures are logged once, here, with their detail; the page says only
//! that something went wrong. A missing session on a GET is not an error page but a redirect to
//! the sign-in form, which comes back to the page asked for.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::query::FilterError;
use crate::store::StorageError;

#[derive(Debug)]
pub enum UiError {
    /// No valid session on a GET: 303 to `/ui/login?next=<next>`.
    LoginRequired { next: String },
    /// A client error with a stable code and a message safe to show.
    Client {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// The database is down or too slow: retry later.
    Unavailable { detail: String },
    /// A bug or an unexpected failure; detail is logged, never shown.
    Internal { detail: String },
}

impl UiError {
    pub fn client(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        UiError::Client {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::client(StatusCode::NOT_FOUND, code, message)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::client(StatusCode::BAD_REQUEST, code, message)
    }

    /// A POST (or other unsafe request) without a valid session: never redirected, so a form
    /// posted after the session ended does not silently turn into a GET of the login page.
    pub fn session_required() -> Self {
        Self::client(
            StatusCode::FORBIDDEN,
            "session_required",
            "sign in again: this session has ended",
        )
    }

    pub fn forbidden(scope: &str) -> Self {
        Self::client(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("the token this session signed in with lacks the `{scope}` scope"),
        )
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        UiError::Internal {
            detail: detail.to_string(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            UiError::LoginRequired { .. } => StatusCode::SEE_OTHER,
            UiError::Client { status, .. } => *status,
            UiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            UiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            UiError::LoginRequired { .. } => "session_required",
            UiError::Client { code, .. } => code,
            UiError::Unavailable { .. } => "storage_unavailable",
            UiError::Internal { .. } => "internal_error",
        }
    }
}

impl From<StorageError> for UiError {
    fn from(e: StorageError) -> Self {
        if e.is_transient() {
            UiError::Unavailable { detail: e.report() }
        } else {
            UiError::Internal { detail: e.report() }
        }
    }
}

impl From<FilterError> for UiError {
    fn from(e: FilterError) -> Self {
        UiError::Client {
            status: StatusCode::BAD_REQUEST,
            code: e.code.as_str(),
            message: e.message,
        }
    }
}

impl From<crate::validate::InvalidId> for UiError {
    fn from(e: crate::validate::InvalidId) -> Self {
        UiError::bad_request("invalid_parameter", e.to_string())
    }
}

#[derive(Template)]
#[template(path = "ui/error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    code: &'a str,
    message: &'a str,
    asset_version: &'a str,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code();
        let message = match &self {
            UiError::LoginRequired { next } => {
                let location = format!("/ui/login?next={}", super::urlencode(next));
                let mut response = status.into_response();
                if let Ok(value) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                return response;
            }
            UiError::Client { message, .. } => message.clone(),
            UiError::Unavailable { detail } => {
                tracing::error!(code, %detail, "storage unavailable");
                "the database is unavailable; retry in a moment".to_owned()
            }
            UiError::Internal { detail } => {
                tracing::error!(code, %detail, "internal error");
                "internal error".to_owned()
            }
        };
        let page = ErrorPage {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error"),
            code,
            message: &message,
            asset_version: super::assets::version(),
        };
        let mut response = match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            // The error page has no fallible parts; if it ever fails, a plain body still says it.
            Err(_) => (status, format!("{code}: {message}")).into_response(),
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
