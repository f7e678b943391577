//! `UiError`: the one error type of the console's boundary.
//!
//! Every error is an HTML page with a stable `code` (the same codes as the API's, listed in
//! `docs/openapi.json`) and the security headers of every `/ui` response (added by the router's
//! layer). The page extends the layout, so it has the TEST/LIVE banner like every other page;
//! the mode is in the state, which `IntoResponse` cannot see, so `into_response` attaches
//! [`ErrorDetails`] and the router's [`error_pages`] layer renders the page. Server-side failures are logged once, here, with their detail; the page says only
//! that something went wrong. A missing session on a GET is not an error page but a redirect to
//! the sign-in form, which comes back to the page asked for.

use askama::Template;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use super::Chrome;
use crate::app::AppState;

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
    chrome: Chrome,
    status: u16,
    reason: &'a str,
    code: &'a str,
    message: &'a str,
}

/// What an error page shows, attached to the response by `into_response` for [`error_pages`].
#[derive(Debug, Clone)]
pub struct ErrorDetails {
    code: &'static str,
    message: String,
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
        // A plain body only until `error_pages` renders the page (every `/ui` route has it).
        let mut response = (status, format!("{code}: {message}")).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
            .extensions_mut()
            .insert(ErrorDetails { code, message });
        response
    }
}

/// The console's layer that turns a [`UiError`] response into its HTML page, with the mode
/// banner of the layout. Status and headers (`Retry-After`) are kept.
pub async fn error_pages(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let Some(details) = response.extensions().get::<ErrorDetails>().cloned() else {
        return response;
    };
    let (mut parts, body) = response.into_parts();
    let page = ErrorPage {
        chrome: Chrome::anonymous(&state),
        status: parts.status.as_u16(),
        reason: parts.status.canonical_reason().unwrap_or("Error"),
        code: details.code,
        message: &details.message,
    };
    match page.render() {
        Ok(html) => {
            let (html_parts, html_body) = Html(html).into_response().into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.extend(html_parts.headers);
            Response::from_parts(parts, html_body)
        }
        // The error page has no fallible parts; if it ever fails, the plain body still says it.
        Err(_) => Response::from_parts(parts, body),
    }
}
