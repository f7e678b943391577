//! Cross-site request forgery defence for every state-changing request of the console. Two
//! independent checks, both required:
//!
//! 1. **Where the request comes from.** `Sec-Fetch-Site` must be `same-origin` or `none` (a
//!    typed URL or bookmark). Browsers that send no Fetch-Metadata must send an `Origin` equal
//!    to the service's own: `PUBLIC_URL`'s origin when set, otherwise one whose host is the
//!    request's `Host`. A request with neither header is refused.
//! 2. **A synchronizer token.** Every form carries a hidden `csrf` field: an HMAC-SHA256 of the
//!    session id under a server key (`UI_CSRF_KEY`, or a random key per process). It cannot be
//!    computed without the session id, which lives in an HttpOnly cookie. The sign-in form has
//!    no session yet, so it gets a pre-session token instead: `GET /ui/login` sets a
//!    short-lived HttpOnly, SameSite=Strict cookie holding a random nonce, and the form's
//!    `csrf` field is the HMAC of that nonce under the same key with a different label, so
//!    neither kind of token is ever accepted as the other (a forged sign-in would otherwise
//!    sign a victim into the attacker's session).
//!
//! Either failure is a 403 with a stable code (`cross_origin_request`, `csrf_token_invalid`).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, HeaderMap, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::session::UiSession;
use super::UiError;
use crate::app::AppState;
use crate::query::Params;

/// Largest form body accepted: every console form is a handful of short fields.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// The key of the synchronizer tokens.
pub struct CsrfKey([u8; 32]);

impl CsrfKey {
    /// From `UI_CSRF_KEY` (any length; hashed to 32 bytes), or random.
    pub fn new(configured: Option<&str>) -> CsrfKey {
        match configured {
            Some(text) => {
                use sha2::Digest as _;
                CsrfKey(Sha256::digest(text.as_bytes()).into())
            }
            None => CsrfKey(super::session::random_bytes()),
        }
    }

    /// The token for the session whose (raw, secret) id is `session_id`.
    pub fn token(&self, session_id: &[u8]) -> String {
        Self::encode(self.mac(SESSION_LABEL, session_id))
    }

    /// Constant-time check of a submitted token.
    pub fn verify(&self, session_id: &[u8], submitted: &str) -> bool {
        self.check(SESSION_LABEL, session_id, submitted)
    }

    /// The sign-in form's token for the (secret, cookie-held) pre-session `nonce`.
    pub fn login_token(&self, nonce: &[u8]) -> String {
        Self::encode(self.mac(LOGIN_LABEL, nonce))
    }

    /// Constant-time check of a submitted sign-in token against the request's nonce.
    pub fn verify_login(&self, nonce: &[u8], submitted: &str) -> bool {
        self.check(LOGIN_LABEL, nonce, submitted)
    }

    fn encode(mac: Hmac<Sha256>) -> String {
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    fn check(&self, label: &[u8], data: &[u8], submitted: &str) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(submitted.trim()) else {
            return false;
        };
        // `verify_slice` compares in constant time.
        self.mac(label, data).verify_slice(&bytes).is_ok()
    }

    fn mac(&self, label: &[u8], data: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(label);
        mac.update(data);
        mac
    }
}

/// Domain separation: a session's token and a sign-in form's token are MACs under one key, so
/// each carries its own label (NUL-terminated: neither label is a prefix of the other's input).
const SESSION_LABEL: &[u8] = b"stripe-ledger ui csrf\0";
const LOGIN_LABEL: &[u8] = b"stripe-ledger ui login csrf\0";

/// The refusal of a form whose `csrf` field does not match its session or sign-in nonce.
pub fn csrf_invalid() -> UiError {
    UiError::client(
        StatusCode::FORBIDDEN,
        "csrf_token_invalid",
        "this form has expired or was not made by the console: reload the page and try again",
    )
}

fn cross_origin() -> UiError {
    UiError::client(
        StatusCode::FORBIDDEN,
        "cross_origin_request",
        "this form was not submitted from the console itself",
    )
}

/// Check 1: the request was made by a page of this service (or typed by the user).
pub fn check_same_origin(headers: &HeaderMap, public_origin: Option<&str>) -> Result<(), UiError> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        return match site.trim() {
            "same-origin" | "none" => Ok(()),
            _ => Err(cross_origin()),
        };
    }
    let origin = text(header::ORIGIN).ok_or_else(cross_origin)?.trim();
    let own = match public_origin {
        Some(public) => origin.eq_ignore_ascii_case(public),
        None => {
            let host = text(header::HOST).ok_or_else(cross_origin)?.trim();
            let origin_host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            origin_host.is_some_and(|h| h.eq_ignore_ascii_case(host))
        }
    };
    if own {
        Ok(())
    } else {
        Err(cross_origin())
    }
}

/// Fields of a posted form. `Params` itself takes every field as text.
pub trait FromFields: Sized {
    fn from_fields(fields: Params) -> Result<Self, UiError>;
}

impl FromFields for Params {
    fn from_fields(fields: Params) -> Result<Self, UiError> {
        Ok(fields)
    }
}

/// An `application/x-www-form-urlencoded` body, decoded with the query-string rules
/// (`crate::query`): at most [`MAX_FORM_BYTES`], valid UTF-8, each field once.
pub async fn read_form(request: Request) -> Result<Params, UiError> {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(UiError::client(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "console forms are sent as application/x-www-form-urlencoded",
        ));
    }
    let body = axum::body::to_bytes(request.into_body(), MAX_FORM_BYTES)
        .await
        .map_err(|_| {
            UiError::client(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the form is larger than 16 KiB",
            )
        })?;
    parse_form(&body)
}

fn parse_form(body: &Bytes) -> Result<Params, UiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| UiError::bad_request("invalid_query", "the form is not valid UTF-8"))?;
    Ok(crate::query::parse_query(Some(text))?)
}

/// A posted form of a signed-in session that passed both checks. Every console POST but the
/// sign-in takes one (it has no session yet: `session::login` makes the same two checks with
/// its pre-session token). The `csrf` field is removed before `T` sees the fields.
pub struct UiForm<T> {
    pub session: UiSession,
    pub form: T,
}

impl<T: FromFields> FromRequest<AppState> for UiForm<T> {
    type Rejection = UiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, UiError> {
        let (mut parts, body) = request.into_parts();
        // Origin first: a cross-site request learns nothing, not even whether it has a session.
        check_same_origin(&parts.headers, state.ui.config.public_origin.as_deref())?;
        let session = UiSession::from_request_parts(&mut parts, state).await?;
        let mut fields = read_form(Request::from_parts(parts, body)).await?;
        let submitted = fields.remove("csrf").unwrap_or_default();
        if !session.verify_csrf(state, &submitted) {
            return Err(csrf_invalid());
        }
        Ok(UiForm {
            session,
            form: T::from_fields(fields)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn fetch_metadata_decides_when_present_and_origin_otherwise() {
        let ok = |pairs, public| check_same_origin(&headers(pairs), public).is_ok();
        assert!(ok(&[("sec-fetch-site", "same-origin")], None));
        assert!(ok(&[("sec-fetch-site", "none")], None));
        assert!(!ok(&[("sec-fetch-site", "cross-site")], None));
        assert!(!ok(&[("sec-fetch-site", "same-site")], None));
        // A foreign Origin does not rescue a cross-site Fetch-Metadata, nor the reverse.
        let same_site_own_origin = [
            ("sec-fetch-site", "same-site"),
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ];
        assert!(!ok(&same_site_own_origin, None));
        let own = [
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ];
        assert!(ok(&own, None));
        let foreign = [
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080"),
        ];
        assert!(!ok(&foreign, None));
        assert!(!ok(&[("origin", "null"), ("host", "127.0.0.1:8080")], None));
        assert!(!ok(&[("host", "127.0.0.1:8080")], None));
        let public = Some("https://ledger.example.com");
        assert!(ok(&[("origin", "https://ledger.example.com")], public));
        assert!(!ok(&[("origin", "http://ledger.example.com")], public));
    }

    #[test]
    fn tokens_are_bound_to_the_session_and_the_key() {
        let key = CsrfKey::new(Some("a-key-of-at-least-thirty-two-characters"));
        let token = key.token(b"session-a");
        assert!(key.verify(b"session-a", &token));
        assert!(!key.verify(b"session-b", &token));
        assert!(!CsrfKey::new(None).verify(b"session-a", &token));
        assert!(!key.verify(b"session-a", ""));
        assert!(!key.verify(b"session-a", "not base64 !"));
    }

    #[test]
    fn sign_in_tokens_are_bound_to_the_nonce_and_never_pass_as_session_tokens() {
        let key = CsrfKey::new(Some("a-key-of-at-least-thirty-two-characters"));
        let token = key.login_token(b"nonce-a");
        assert!(key.verify_login(b"nonce-a", &token));
        assert!(!key.verify_login(b"nonce-b", &token));
        assert!(!key.verify_login(b"nonce-a", ""));
        // The labels keep the two kinds apart, even over the same bytes.
        assert!(!key.verify(b"nonce-a", &token));
        assert!(!key.verify_login(b"session-a", &key.token(b"session-a")));
    }
}
