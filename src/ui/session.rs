//! Sign-in sessions of the console, kept in the database (`ui_sessions`, migration 0009).
//!
//! - The form: `GET /ui/login` sets a pre-session cookie (`sl_ui_login`, with the same
//!   `__Host-` and `Secure` rule as the session's) holding a random nonce, and the form's hidden
//!   `csrf` field is its HMAC (`csrf.rs`). The cookie's `Max-Age` is [`LOGIN_FORM_SECS`],
//!   renewed by every visit to the form; the server does not check the nonce's age itself (the
//!   nonce is `HttpOnly` and `SameSite=Strict`, and the POST also passes the origin check). The POST
//!   must pass the origin check and carry that field for the nonce in its cookie, else 403
//!   `csrf_token_invalid`: no one else's page can sign a browser in (login CSRF).
//! - Signing in: `POST /ui/login` with a service token in the field `token`. It is checked
//!   exactly as a bearer token is (`ApiTokens::identify`: digest, constant-time comparison) and
//!   needs the `audit` scope. Failed attempts are rate-limited (all clients together, since the
//!   server does not see client addresses: [`LOGIN_FAILURES_PER_WINDOW`] per
//!   [`LOGIN_WINDOW_SECS`]); tokens are long random strings, so the limit bounds noise, not
//!   odds.
//! - The session: a 256-bit random id in a cookie; the row holds its SHA-256, the token's
//!   fingerprint, its scopes, and the times. It ends after `UI_SESSION_IDLE` without a request,
//!   `UI_SESSION_MAX` after sign-in, at sign-out, or as soon as its token is no longer in
//!   `API_TOKENS` (checked on every request; a scope removed from the token is removed from
//!   the session too).
//! - The cookie: `__Host-sl_ui=<id>; Path=/; Secure; HttpOnly; SameSite=Strict`. Over plain
//!   http to a loopback host (the default local setup, and the tests) browsers would drop a
//!   `Secure` cookie, so it is `sl_ui=<id>; Path=/; HttpOnly; SameSite=Strict` there, and only
//!   there: with `PUBLIC_URL` set, when its scheme is `http` and its host is `localhost`,
//!   `127.x.x.x` or `[::1]`; unset, when the request's `Host` is one of those. Every other
//!   case gets the `__Host-` form.

use std::sync::Mutex;

use axum::extract::{FromRequestParts, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::csrf::{check_same_origin, csrf_invalid, read_form, UiForm};
use super::{Chrome, UiError};
use crate::app::AppState;
use crate::auth::{Scope, ScopeSet};
use crate::query::Params;
use crate::store::ui::{ActionKind, ActionOutcome, NewAction, SessionRow, UiStore as _};

/// The cookie's name on https (and on any non-loopback host).
pub const SECURE_COOKIE: &str = "__Host-sl_ui";
/// The cookie's name over plain http to a loopback host.
pub const LOOPBACK_COOKIE: &str = "sl_ui";
/// The sign-in form's nonce cookie, under the same naming rule.
pub const SECURE_LOGIN_COOKIE: &str = "__Host-sl_ui_login";
pub const LOOPBACK_LOGIN_COOKIE: &str = "sl_ui_login";
/// How long a sign-in form stays usable: long enough to find and paste a token.
pub const LOGIN_FORM_SECS: i64 = 15 * 60;

pub const LOGIN_WINDOW_SECS: i64 = 60;
pub const LOGIN_FAILURES_PER_WINDOW: u32 = 10;

/// 32 bytes from the operating system's generator.
pub fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source is available");
    bytes
}

fn id_hash(raw: &[u8]) -> String {
    hex::encode(Sha256::digest(raw))
}

/// Which cookie a request gets and sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookiePolicy {
    /// `__Host-sl_ui`, `Secure`.
    Secure,
    /// `sl_ui`, without `Secure`: plain http to a loopback host only.
    Loopback,
}

impl CookiePolicy {
    /// Whether `PUBLIC_URL` asks for plain http on a host that is not loopback: such a console
    /// gets `Secure` cookies, which browsers drop over http, so nobody can sign in.
    pub fn unreachable_over_http(public_origin: &str) -> bool {
        public_origin
            .strip_prefix("http://")
            .is_some_and(|host| !is_loopback_host(host))
    }

    /// The plain cookie only for plain http to a loopback host: `PUBLIC_URL`'s scheme and host
    /// when it is set (a TLS-terminating proxy in front means it must be `https://`), else the
    /// request's `Host` (this server itself speaks plain http only). Anything else, even an
    /// `http://` `PUBLIC_URL` naming another host, gets `__Host-` and `Secure`: the issue allows
    /// dropping `Secure` on loopback http alone.
    pub fn for_request(headers: &HeaderMap, public_origin: Option<&str>) -> CookiePolicy {
        let loopback_http = match public_origin {
            Some(origin) => origin.strip_prefix("http://").is_some_and(is_loopback_host),
            None => headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .is_some_and(is_loopback_host),
        };
        if loopback_http {
            CookiePolicy::Loopback
        } else {
            CookiePolicy::Secure
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CookiePolicy::Secure => SECURE_COOKIE,
            CookiePolicy::Loopback => LOOPBACK_COOKIE,
        }
    }

    /// The sign-in form's nonce cookie.
    pub fn login_name(self) -> &'static str {
        match self {
            CookiePolicy::Secure => SECURE_LOGIN_COOKIE,
            CookiePolicy::Loopback => LOOPBACK_LOGIN_COOKIE,
        }
    }

    fn set_cookie(self, value: &str, max_age: i64) -> String {
        self.set_named(self.name(), value, max_age)
    }

    fn set_login_cookie(self, value: &str, max_age: i64) -> String {
        self.set_named(self.login_name(), value, max_age)
    }

    fn set_named(self, name: &str, value: &str, max_age: i64) -> String {
        let secure = match self {
            CookiePolicy::Secure => "; Secure",
            CookiePolicy::Loopback => "",
        };
        format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
    }
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = if let Some(v6) = host.strip_prefix('[') {
        return v6.split(']').next() == Some("::1");
    } else {
        host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h)
    };
    name == "localhost"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The 32 random bytes in the request's cookie named `wanted`, if it has a well-formed one.
fn cookie_id(headers: &HeaderMap, wanted: &str) -> Option<[u8; 32]> {
    let value = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.trim())?;
    let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
    bytes.try_into().ok()
}

/// A signed-in console user. Extracted from the cookie only; an `Authorization` header is
/// ignored on `/ui`, as cookies are on `/api`.
#[derive(Debug, Clone)]
pub struct UiSession {
    raw_id: [u8; 32],
    id_sha256: String,
    fingerprint: String,
    scopes: ScopeSet,
    csrf: String,
}

impl UiSession {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(scope)
    }

    pub fn require(&self, scope: Scope) -> Result<(), UiError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(UiError::forbidden(scope.as_str()))
        }
    }

    /// The token's fingerprint (`tok_...`): who did it, in the operator-action log.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn scopes(&self) -> ScopeSet {
        self.scopes
    }

    /// The hidden `csrf` field every form of this session carries.
    pub fn csrf_token(&self) -> &str {
        &self.csrf
    }

    pub(super) fn verify_csrf(&self, state: &AppState, submitted: &str) -> bool {
        state.ui.csrf.verify(&self.raw_id, submitted)
    }

    /// Records an action by this session's token.
    pub async fn record(
        &self,
        state: &AppState,
        action: ActionKind,
        target: &str,
        outcome: ActionOutcome,
        detail: &str,
    ) -> Result<i64, UiError> {
        let row = NewAction {
            at: state.now(),
            token_fingerprint: &self.fingerprint,
            action,
            target,
            outcome,
            detail,
        };
        Ok(state.db.operator_action_record(&row).await?)
    }
}

/// Where a request without a session should come back to after signing in.
fn login_required(parts: &Parts) -> UiError {
    if parts.method == Method::GET || parts.method == Method::HEAD {
        // The console's router is nested at `/ui`, which axum strips from the URI it sees.
        let next = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        UiError::LoginRequired {
            next: format!("/ui{next}"),
        }
    } else {
        UiError::session_required()
    }
}

impl FromRequestParts<AppState> for UiSession {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, UiError> {
        if let Some(session) = parts.extensions.get::<UiSession>() {
            return Ok(session.clone());
        }
        let policy = CookiePolicy::for_request(&parts.headers, state.ui.public_origin());
        let Some(raw_id) = cookie_id(&parts.headers, policy.name()) else {
            return Err(login_required(parts));
        };
        let id_sha256 = id_hash(&raw_id);
        let Some(row) = state.db.ui_session_get(&id_sha256).await? else {
            return Err(login_required(parts));
        };
        let now = state.now();
        let idle = state.ui.idle_secs();
        // The token may have been removed (or lost scopes) since sign-in: what it has now,
        // never more than what it had then.
        let scopes = ScopeSet::from_list(&row.scopes)
            .intersection(state.tokens.scopes_of(&row.token_fingerprint));
        if row.expires_at <= now || row.last_seen_at + idle <= now || !scopes.contains(Scope::Audit)
        {
            state.db.ui_session_delete(&id_sha256).await?;
            return Err(login_required(parts));
        }
        // One write per minute at most (sooner for very short idle timeouts), not per request.
        if now - row.last_seen_at >= (idle / 4).clamp(1, 60) {
            state.db.ui_session_touch(&id_sha256, now).await?;
        }
        let session = UiSession {
            csrf: state.ui.csrf.token(&raw_id),
            raw_id,
            id_sha256,
            fingerprint: row.token_fingerprint,
            scopes,
        };
        parts.extensions.insert(session.clone());
        Ok(session)
    }
}

/// Failed sign-ins in the current window, for every client together.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    window: Mutex<(i64, u32)>,
}

impl LoginLimiter {
    fn blocked(&self, now: i64) -> bool {
        let window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        now - window.0 < LOGIN_WINDOW_SECS && window.1 >= LOGIN_FAILURES_PER_WINDOW
    }

    fn failed(&self, now: i64) {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if now - window.0 >= LOGIN_WINDOW_SECS {
            *window = (now, 0);
        }
        window.1 += 1;
    }
}

#[derive(askama::Template)]
#[template(path = "ui/login.html")]
struct LoginPage {
    chrome: Chrome,
    next: String,
    problem: Option<String>,
    /// The form's `csrf` field: the HMAC of the nonce in its cookie.
    csrf: String,
}

/// `next` when it is a console path of this service, else the event list: never an open
/// redirect (`//evil`, `/\evil`, `https://...`).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui")
                && !n.starts_with("/ui/login")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/ui/events".to_owned(),
    }
}

/// The sign-in form with its nonce (in its cookie) and that nonce's token (in the form). The
/// browser's nonce is kept when it sends a well-formed one, so several tabs sent to sign in at
/// once (a session that expired under them) each have a form that works; else a fresh one.
fn login_page(
    state: &AppState,
    policy: CookiePolicy,
    status: StatusCode,
    (next, problem): (String, Option<&str>),
    nonce: Option<[u8; 32]>,
) -> Result<Response, UiError> {
    let nonce = nonce.unwrap_or_else(random_bytes);
    let page = LoginPage {
        chrome: Chrome::anonymous(state),
        next,
        problem: problem.map(str::to_owned),
        csrf: state.ui.csrf.login_token(&nonce),
    };
    let mut response = super::render(status, &page)?;
    let cookie = policy.set_login_cookie(&URL_SAFE_NO_PAD.encode(nonce), LOGIN_FORM_SECS);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

pub async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    // A malformed query only loses `next`: the form is still shown.
    let params = crate::query::parse_query(query.as_deref()).unwrap_or_default();
    let next = safe_next(params.get("next").map(String::as_str));
    let policy = CookiePolicy::for_request(&headers, state.ui.public_origin());
    let nonce = cookie_id(&headers, policy.login_name());
    login_page(&state, policy, StatusCode::OK, (next, None), nonce)
}

pub async fn login(State(state): State<AppState>, request: Request) -> Result<Response, UiError> {
    check_same_origin(request.headers(), state.ui.public_origin())?;
    let policy = CookiePolicy::for_request(request.headers(), state.ui.public_origin());
    let nonce = cookie_id(request.headers(), policy.login_name());
    let mut fields = read_form(request).await?;
    // Before the limiter and the token: a forged sign-in neither counts nor learns anything.
    let submitted = fields.remove("csrf").unwrap_or_default();
    if !nonce.is_some_and(|n| state.ui.csrf.verify_login(&n, &submitted)) {
        return Err(csrf_invalid());
    }
    let next = safe_next(fields.get("next").map(String::as_str));
    let now = state.now();
    let refuse = |status: StatusCode, problem: &str| {
        login_page(&state, policy, status, (next.clone(), Some(problem)), nonce)
    };
    if state.ui.limiter.blocked(now) {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-ins: wait a minute and try again.",
        );
    }
    let token = fields.get("token").map(String::as_str).unwrap_or("");
    let Some(identity) = state.tokens.identify(token) else {
        state.ui.limiter.failed(now);
        tracing::warn!("console sign-in with a token that is not configured");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "That is not a configured service token.",
        );
    };
    if !identity.scopes.contains(Scope::Audit) {
        state.ui.limiter.failed(now);
        tracing::warn!(token = %identity.fingerprint, "console sign-in without the audit scope");
        return refuse(
            StatusCode::FORBIDDEN,
            "This token lacks the audit scope, which the console needs.",
        );
    }
    let raw_id = start_session(&state, &identity, now).await?;
    let cookie = policy.set_cookie(&URL_SAFE_NO_PAD.encode(raw_id), state.ui.max_secs());
    let mut response = redirect_with_cookie(&next, &cookie);
    // The form's nonce has served its one purpose.
    if let Ok(value) = HeaderValue::from_str(&policy.set_login_cookie("", 0)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Creates the session row (purging expired ones first) and records the sign-in; returns the
/// raw session id for the cookie.
async fn start_session(
    state: &AppState,
    identity: &crate::auth::TokenIdentity,
    now: i64,
) -> Result<[u8; 32], UiError> {
    let raw_id = random_bytes();
    let row = SessionRow {
        id_sha256: id_hash(&raw_id),
        token_fingerprint: identity.fingerprint.clone(),
        scopes: identity.scopes.to_list(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + state.ui.max_secs(),
    };
    state
        .db
        .ui_sessions_purge(now, now - state.ui.idle_secs())
        .await?;
    state.db.ui_session_create(&row).await?;
    let action = NewAction {
        at: now,
        token_fingerprint: &identity.fingerprint,
        action: ActionKind::SignIn,
        target: "console",
        outcome: ActionOutcome::Succeeded,
        detail: &row.scopes,
    };
    state.db.operator_action_record(&action).await?;
    tracing::info!(token = %identity.fingerprint, scopes = %row.scopes, "console sign-in");
    Ok(raw_id)
}

fn redirect_with_cookie(location: &str, cookie: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(cookie) {
        headers.insert(header::SET_COOKIE, value);
    }
    response
}

pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: UiForm<Params>,
) -> Result<Response, UiError> {
    let session = form.session;
    state.db.ui_session_delete(&session.id_sha256).await?;
    session
        .record(
            &state,
            ActionKind::SignOut,
            "console",
            ActionOutcome::Succeeded,
            "",
        )
        .await?;
    let policy = CookiePolicy::for_request(&headers, state.ui.public_origin());
    Ok(redirect_with_cookie("/ui/login", &policy.set_cookie("", 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_http_public_url_on_another_host_is_flagged_at_startup() {
        for origin in [
            "http://ledger.internal",
            "http://10.0.0.5:8080",
            "http://[::2]",
        ] {
            assert!(CookiePolicy::unreachable_over_http(origin), "{origin}");
        }
        for origin in [
            "https://ledger.example.com",
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:8080",
        ] {
            assert!(!CookiePolicy::unreachable_over_http(origin), "{origin}");
        }
    }

    #[test]
    fn only_loopback_hosts_get_the_plain_http_cookie() {
        for host in [
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:3000",
            "[::1]:80",
            "127.9.9.9",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "ledger.example.com",
            "10.0.0.1:80",
            "localhost.evil.com",
            "[::2]",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn only_plain_http_to_a_loopback_host_drops_secure() {
        let host = |h: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_static(h));
            headers
        };
        let cases = [
            // PUBLIC_URL decides when set, whatever the request's Host.
            (
                Some("http://127.0.0.1:3000"),
                "ledger.example.com",
                CookiePolicy::Loopback,
            ),
            (
                Some("http://localhost"),
                "127.0.0.1",
                CookiePolicy::Loopback,
            ),
            (
                Some("http://[::1]:8080"),
                "127.0.0.1",
                CookiePolicy::Loopback,
            ),
            (
                Some("https://127.0.0.1:3000"),
                "127.0.0.1",
                CookiePolicy::Secure,
            ),
            (
                Some("https://ledger.example.com"),
                "127.0.0.1",
                CookiePolicy::Secure,
            ),
            // Plain http to a host that is not loopback (a proxy that should have said https).
            (
                Some("http://ledger.example.com"),
                "127.0.0.1",
                CookiePolicy::Secure,
            ),
            (
                Some("http://10.0.0.5:3000"),
                "10.0.0.5:3000",
                CookiePolicy::Secure,
            ),
            (
                Some("http://localhost.evil.com"),
                "localhost",
                CookiePolicy::Secure,
            ),
            // Unset: the request's Host.
            (None, "127.0.0.1:3000", CookiePolicy::Loopback),
            (None, "localhost:3000", CookiePolicy::Loopback),
            (None, "ledger.example.com", CookiePolicy::Secure),
            (None, "192.168.1.2:3000", CookiePolicy::Secure),
        ];
        for (public, request_host, expected) in cases {
            let got = CookiePolicy::for_request(&host(request_host), public);
            assert_eq!(got, expected, "{public:?} {request_host}");
        }
        assert_eq!(
            CookiePolicy::for_request(&HeaderMap::new(), None),
            CookiePolicy::Secure,
            "no Host at all"
        );
    }

    #[test]
    fn the_cookie_carries_every_flag() {
        let c = CookiePolicy::Secure.set_cookie("abc", 60);
        assert_eq!(
            c,
            "__Host-sl_ui=abc; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        let c = CookiePolicy::Loopback.set_cookie("abc", 60);
        assert_eq!(
            c,
            "sl_ui=abc; Path=/; Max-Age=60; HttpOnly; SameSite=Strict"
        );
    }

    #[test]
    fn next_never_leaves_the_console() {
        assert_eq!(safe_next(Some("/ui/events?type=x")), "/ui/events?type=x");
        for bad in [
            "//evil.example",
            "https://evil",
            "/\\evil",
            "/ui/login?next=/x",
            "/api/x",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/events", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui/events");
    }
}
