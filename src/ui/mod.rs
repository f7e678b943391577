//! The ledger console: server-rendered HTML at `/ui` for auditors and operators (ADR 0020).
//!
//! Every view works without JavaScript (filters are GET forms, paging is links, actions are
//! POST forms); `ui.js` only adds keyboard shortcuts. Templates are askama files under
//! `templates/ui/` (auto-escaped; ledger data is never marked `|safe`), assets are compiled in
//! (`assets.rs`). `/ui` takes only its session cookie (`session.rs`), never a bearer token, and
//! every POST passes `csrf.rs`. Every response carries [`SECURITY_HEADERS`].
//!
//! | File | What |
//! |---|---|
//! | `session.rs` | sign-in, sign-out, the `UiSession` extractor |
//! | `csrf.rs` | the origin and token checks, the `UiForm<T>` extractor |
//! | `error.rs` | `UiError`, the HTML error page |
//! | `assets.rs` | `GET /ui/static/{ver}/{name}` |
//! | `events.rs` | the event list, one event, its raw bytes, the jump box |
//! | `export.rs` | the list's filter as streamed JSONL and CSV |
//! | `integrity.rs` | the log's size, range, immutability, checkpoints; proof bundles |
//! | `operations.rs` | dead letters, outbox, reconciliation, and the operators' actions |
//! | `objects.rs` | an object's read model and log entries |
//! | `entitlements.rs` | a user's entitlement and what it was computed from |

pub mod assets;
pub mod csrf;
pub mod entitlements;
pub mod error;
pub mod events;
pub mod history_view;
pub mod export;
pub mod integrity;
pub mod objects;
pub mod operations;
pub mod session;

use askama::Template;
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

pub use error::UiError;
pub use session::UiSession;

use crate::app::AppState;
use crate::auth::Scope;
use crate::config::UiConfig;

/// The console's shared state: its settings, the CSRF key, the sign-in limiter.
pub struct UiState {
    pub config: UiConfig,
    pub csrf: csrf::CsrfKey,
    pub limiter: session::LoginLimiter,
}

impl UiState {
    pub fn new(config: UiConfig) -> UiState {
        let csrf = csrf::CsrfKey::new(config.csrf_key.as_ref().map(|k| k.expose().as_str()));
        UiState {
            config,
            csrf,
            limiter: session::LoginLimiter::default(),
        }
    }

    pub fn public_origin(&self) -> Option<&str> {
        self.config.public_origin.as_deref()
    }

    pub fn idle_secs(&self) -> i64 {
        self.config.session_idle.as_secs() as i64
    }

    pub fn max_secs(&self) -> i64 {
        self.config.session_max.as_secs() as i64
    }
}

/// Routes relative to `/ui` (nested there by `http::router`). `state` is for the error pages'
/// layer, which renders the mode banner.
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/static/{ver}/{name}", get(assets::serve))
        .route("/jump", get(events::jump))
        .route("/events", get(events::list))
        .route("/events/export.jsonl", get(export::jsonl))
        .route("/events/export.csv", get(export::csv))
        .route("/events/{event_id}", get(events::show))
        .route("/events/{event_id}/raw", get(events::raw))
        .route("/integrity", get(integrity::show))
        .route("/integrity/bundle", get(integrity::bundle))
        .route("/operations", get(operations::show))
        .route(
            "/operations/dead-letters/retry",
            post(operations::retry_dead_letter),
        )
        .route(
            "/operations/dead-letters/retry-all",
            get(operations::retry_all_plan).post(operations::retry_all),
        )
        .route("/operations/outbox/requeue", post(operations::requeue))
        .route("/operations/reconcile", post(operations::run_reconcile))
        .route("/customers/{id}", get(objects::customer))
        .route("/subscriptions/{id}", get(objects::subscription))
        .route("/invoices/{id}", get(objects::invoice))
        .route("/orders/{id}", get(objects::order))
        .route("/entitlements/{user_id}", get(entitlements::show))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            error::error_pages,
        ))
        .layer(axum::middleware::from_fn(security_headers))
}

/// `/ui`: the event list when signed in, else the sign-in form (which comes back to it).
async fn root(session: Result<UiSession, UiError>) -> Response {
    match session {
        Ok(_) => Redirect::to("/ui/events").into_response(),
        Err(_) => Redirect::to("/ui/login").into_response(),
    }
}

async fn not_found() -> UiError {
    UiError::not_found("route_not_found", "no such page")
}

async fn method_not_allowed() -> UiError {
    UiError::client(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this page does not accept that method",
    )
}

/// On every `/ui` response. No inline script or style anywhere (so no `'unsafe-inline'`), no
/// framing, no referrer (URLs carry filters and ids), nothing cached but the static assets.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("x-frame-options", "DENY"),
];

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A rendered page, or the error page if the template fails (it has no fallible parts, so
/// that would be a bug: logged, never shown).
pub fn render<T: Template>(status: StatusCode, page: &T) -> Result<Response, UiError> {
    let html = page.render().map_err(UiError::internal)?;
    Ok((status, Html(html)).into_response())
}

/// Percent-encodes a query value or path segment (everything but unreserved characters).
pub fn urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A console view in the navigation. Only views that exist are listed, and only to sessions
/// whose scopes can open them.
pub struct View {
    pub path: &'static str,
    pub label: &'static str,
    pub scope: Scope,
}

/// Every view in the navigation, in order.
pub const VIEWS: &[View] = &[
    View {
        path: "/ui/events",
        label: "Events",
        scope: Scope::Audit,
    },
    View {
        path: "/ui/integrity",
        label: "Integrity",
        scope: Scope::Audit,
    },
    View {
        path: "/ui/operations",
        label: "Operations",
        scope: Scope::Audit,
    },
];

/// Object pages that exist (`/ui/<name>/{id}`): ids of these kinds link there, others list
/// their events.
pub const OBJECT_PAGES: &[&str] = &["customers", "subscriptions", "invoices", "orders"];

pub struct NavLink {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// What every page's layout shows: the mode banner, the navigation, who is signed in, and
/// the CSRF token for its forms.
pub struct Chrome {
    pub live: bool,
    pub signed_in: bool,
    pub fingerprint: String,
    pub scopes: String,
    pub csrf: String,
    pub nav: Vec<NavLink>,
    pub asset_version: &'static str,
}

impl Chrome {
    /// For a page of a signed-in session; `current` is the nav path to mark.
    pub fn new(state: &AppState, session: &UiSession, current: &str) -> Chrome {
        Chrome {
            live: state.webhook.mode.is_live(),
            signed_in: true,
            fingerprint: session.fingerprint().to_owned(),
            scopes: session.scopes().to_list(),
            csrf: session.csrf_token().to_owned(),
            nav: VIEWS
                .iter()
                .filter(|v| session.has(v.scope))
                .map(|v| NavLink {
                    href: v.path,
                    label: v.label,
                    current: v.path == current,
                })
                .collect(),
            asset_version: assets::version(),
        }
    }

    /// For the sign-in page: no navigation, no session.
    pub fn anonymous(state: &AppState) -> Chrome {
        Chrome {
            live: state.webhook.mode.is_live(),
            signed_in: false,
            fingerprint: String::new(),
            scopes: String::new(),
            csrf: String::new(),
            nav: Vec::new(),
            asset_version: assets::version(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencode_leaves_only_unreserved_characters() {
        assert_eq!(urlencode("evt_1"), "evt_1");
        assert_eq!(urlencode("a b/<c>&\"é"), "a%20b%2F%3Cc%3E%26%22%C3%A9");
    }
}
