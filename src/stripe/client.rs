//! A small Stripe API client for the handful of endpoints this service calls (docs/adr/0006).
//!
//! * the API version is pinned here, in one place, and sent as `Stripe-Version`;
//! * bodies are form-encoded (`items[0][price]=...`), the key goes in `Authorization: Bearer`;
//! * every POST carries an `Idempotency-Key`, reused on every retry of that request;
//! * 429, 5xx and network errors are retried with exponential backoff, honouring
//!   `Stripe-Should-Retry` (Stripe's word wins either way) and `Retry-After`;
//! * errors keep Stripe's `type`, `code`, `message` and `param`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::keys::SecretKey;

/// The API version every request and object shape in this service assumes.
pub const API_VERSION: &str = "2025-03-31.basil";
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

#[derive(Debug, Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    base: String,
    key: SecretKey,
    max_retries: u32,
    base_backoff: Duration,
}

/// What went wrong talking to Stripe.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StripeError {
    /// Stripe answered with an error object.
    #[error("Stripe answered {status}: {kind} {code:?}: {message}")]
    Api {
        status: u16,
        kind: String,
        code: Option<String>,
        message: String,
        param: Option<String>,
    },
    /// No usable answer (connection, timeout, unreadable body) after the retries.
    #[error("Stripe could not be reached: {0}")]
    Network(String),
    /// The request could not even be built here (an invalid header value, say): our fault,
    /// never sent, never retried, and never reported as Stripe being down.
    #[error("the Stripe request could not be built: {0}")]
    Local(String),
    /// The caller's overall deadline passed (lock wait, attempts and backoff together).
    #[error("the Stripe deadline passed")]
    Deadline,
}

impl StripeError {
    /// Worth retrying later (the caller's own retry, with the same idempotency key).
    pub fn is_transient(&self) -> bool {
        match self {
            StripeError::Network(_) | StripeError::Deadline => true,
            StripeError::Local(_) => false,
            StripeError::Api { status, .. } => *status == 429 || *status >= 500,
        }
    }

    /// Stripe's error `code`, from the closed set we pass on to clients.
    pub fn code(&self) -> Option<StripeCode> {
        match self {
            StripeError::Api { code: Some(c), .. } => Some(StripeCode::from_raw(c)),
            _ => None,
        }
    }
}

/// The Stripe error codes a client may see (in `stripe_request_failed`'s message and body).
/// Stripe's own text can echo request input, so neither its `message` nor an unknown `code`
/// ever leaves the server; anything not listed here is `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripeCode {
    ResourceMissing,
    CardDeclined,
    ExpiredCard,
    IncorrectCvc,
    ProcessingError,
    ParameterInvalidEmpty,
    ParameterInvalidInteger,
    ParameterMissing,
    ParameterUnknown,
    UrlInvalid,
    CustomerMaxSubscriptions,
    IdempotencyKeyInUse,
    RateLimit,
    LivemodeMismatch,
    SecretKeyRequired,
    Other,
}

impl StripeCode {
    const ALL: [StripeCode; 15] = [
        StripeCode::ResourceMissing,
        StripeCode::CardDeclined,
        StripeCode::ExpiredCard,
        StripeCode::IncorrectCvc,
        StripeCode::ProcessingError,
        StripeCode::ParameterInvalidEmpty,
        StripeCode::ParameterInvalidInteger,
        StripeCode::ParameterMissing,
        StripeCode::ParameterUnknown,
        StripeCode::UrlInvalid,
        StripeCode::CustomerMaxSubscriptions,
        StripeCode::IdempotencyKeyInUse,
        StripeCode::RateLimit,
        StripeCode::LivemodeMismatch,
        StripeCode::SecretKeyRequired,
    ];

    pub fn from_raw(raw: &str) -> StripeCode {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == raw)
            .unwrap_or(StripeCode::Other)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StripeCode::ResourceMissing => "resource_missing",
            StripeCode::CardDeclined => "card_declined",
            StripeCode::ExpiredCard => "expired_card",
            StripeCode::IncorrectCvc => "incorrect_cvc",
            StripeCode::ProcessingError => "processing_error",
            StripeCode::ParameterInvalidEmpty => "parameter_invalid_empty",
            StripeCode::ParameterInvalidInteger => "parameter_invalid_integer",
            StripeCode::ParameterMissing => "parameter_missing",
            StripeCode::ParameterUnknown => "parameter_unknown",
            StripeCode::UrlInvalid => "url_invalid",
            StripeCode::CustomerMaxSubscriptions => "customer_max_subscriptions",
            StripeCode::IdempotencyKeyInUse => "idempotency_key_in_use",
            StripeCode::RateLimit => "rate_limit",
            StripeCode::LivemodeMismatch => "livemode_mismatch",
            StripeCode::SecretKeyRequired => "secret_key_required",
            StripeCode::Other => "other",
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorObject,
}

#[derive(Deserialize)]
struct ErrorObject {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    code: Option<String>,
    message: Option<String>,
    param: Option<String>,
}

impl StripeClient {
    pub fn new(base: &str, key: SecretKey, timeout: Duration) -> Result<StripeClient, String> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("stripe-ledger/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(StripeClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
            max_retries: 3,
            base_backoff: Duration::from_millis(250),
        })
    }

    /// Shorter backoff, for tests against the fake server.
    pub fn with_backoff(mut self, base: Duration) -> Self {
        self.base_backoff = base;
        self
    }

    pub async fn post(
        &self,
        path: &str,
        form: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<Value, StripeError> {
        self.send(reqwest::Method::POST, path, form, Some(idempotency_key))
            .await
    }

    pub async fn get(&self, path: &str, query: &[(String, String)]) -> Result<Value, StripeError> {
        self.send(reqwest::Method::GET, path, query, None).await
    }

    /// Every object of a list endpoint, following `has_more` / `starting_after` (100 a page;
    /// each page retried like any request). Shows progress when stderr is a terminal.
    pub async fn list_all(
        &self,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Result<Vec<Value>, StripeError> {
        let mut out = Vec::new();
        let mut starting_after: Option<String> = None;
        loop {
            let mut query: Vec<(String, String)> = vec![("limit".into(), "100".into())];
            query.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            if let Some(after) = &starting_after {
                query.push(("starting_after".into(), after.clone()));
            }
            let page = self.get(path, &query).await?;
            let data = page
                .get("data")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let has_more = page
                .get("has_more")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            starting_after = data
                .last()
                .and_then(|o| o.get("id"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            out.extend(data);
            // Progress for an operator at a terminal; nothing in logs or pipes.
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprint!("\rlisted {} from {path}   ", out.len());
                if !has_more {
                    eprintln!();
                }
            }
            if !has_more || starting_after.is_none() {
                return Ok(out);
            }
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        params: &[(String, String)],
        idempotency_key: Option<&str>,
    ) -> Result<Value, StripeError> {
        let encoded = encode_form(params);
        let is_get = method == reqwest::Method::GET;
        let url = if is_get && !encoded.is_empty() {
            format!("{}{path}?{encoded}", self.base)
        } else {
            format!("{}{path}", self.base)
        };
        // Checked before anything is sent: a key Stripe would refuse as a header is our bug,
        // not an outage, and retrying it cannot help.
        if let Some(key) = idempotency_key {
            reqwest::header::HeaderValue::from_str(key)
                .map_err(|_| StripeError::Local("invalid Idempotency-Key header value".into()))?;
        }
        let mut attempt = 0;
        loop {
            let mut request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(self.key.expose())
                .header("Stripe-Version", API_VERSION);
            if !is_get {
                request = request
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(encoded.clone());
            }
            if let Some(key) = idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            let outcome = request.send().await;
            let (retry, wait, error) = match outcome {
                // Nothing left this process: building the request failed.
                Err(e) if e.is_builder() => return Err(StripeError::Local(without_url(&e))),
                Err(e) => (true, None, StripeError::Network(without_url(&e))),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let should_retry = response
                        .headers()
                        .get("stripe-should-retry")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v == "true");
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(30)));
                    let body = match response.bytes().await {
                        Ok(b) => b,
                        Err(e) => {
                            let error = StripeError::Network(without_url(&e));
                            if attempt < self.max_retries {
                                attempt += 1;
                                tokio::time::sleep(self.backoff(attempt, None)).await;
                                continue;
                            }
                            return Err(error);
                        }
                    };
                    if (200..300).contains(&status) {
                        return serde_json::from_slice(&body).map_err(|e| {
                            StripeError::Network(format!("unreadable response: {e}"))
                        });
                    }
                    let error = match serde_json::from_slice::<ErrorBody>(&body) {
                        Ok(b) => StripeError::Api {
                            status,
                            kind: b.error.kind.unwrap_or_else(|| "api_error".into()),
                            code: b.error.code,
                            message: b.error.message.unwrap_or_default(),
                            param: b.error.param,
                        },
                        Err(_) => StripeError::Api {
                            status,
                            kind: "api_error".into(),
                            code: None,
                            message: format!("HTTP {status}"),
                            param: None,
                        },
                    };
                    let retry = should_retry.unwrap_or(status == 429 || status >= 500);
                    (retry, retry_after, error)
                }
            };
            if !retry || attempt >= self.max_retries {
                return Err(error);
            }
            attempt += 1;
            tracing::warn!(path, attempt, error = %error, "Stripe request failed; retrying with the same idempotency key");
            tokio::time::sleep(self.backoff(attempt, wait)).await;
        }
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        retry_after.unwrap_or(self.base_backoff * 2u32.pow(attempt - 1))
    }
}

// reqwest's errors can carry the URL; ours carries no secret, but keep errors short and stable.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_builder() {
        "invalid request"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    kind.to_owned()
}

/// `application/x-www-form-urlencoded`, with Stripe's bracketed keys kept readable.
pub fn encode_form(params: &[(String, String)]) -> String {
    fn enc(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(b as char)
                }
                b'[' | b']' => out.push(b as char),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_stripe_codes_pass_and_everything_else_is_other() {
        for code in StripeCode::ALL {
            assert_eq!(StripeCode::from_raw(code.as_str()), code);
        }
        for raw in [
            "",
            "Resource_Missing",
            "card_declined\n",
            "<script>",
            "made_up_code",
        ] {
            assert_eq!(StripeCode::from_raw(raw), StripeCode::Other, "{raw:?}");
        }
    }

    #[tokio::test]
    async fn an_invalid_idempotency_key_is_a_local_error_and_nothing_is_sent() {
        // Port 9 (discard) is never contacted: the check happens before sending.
        let client = StripeClient::new(
            "http://127.0.0.1:9",
            SecretKey::parse("sk_test_123").unwrap(),
            Duration::from_secs(1),
        )
        .unwrap();
        let err = client
            .post("/v1/customers", &[], "key-with\nnewline")
            .await
            .unwrap_err();
        assert!(matches!(err, StripeError::Local(_)), "{err:?}");
        assert!(!err.is_transient());
    }

    #[test]
    fn forms_are_encoded_with_stripe_brackets() {
        let form = vec![
            ("line_items[0][price]".to_owned(), "price_1".to_owned()),
            (
                "success_url".to_owned(),
                "https://x.test/ok?a=1&b=2".to_owned(),
            ),
        ];
        assert_eq!(
            encode_form(&form),
            "line_items[0][price]=price_1&success_url=https%3A%2F%2Fx.test%2Fok%3Fa%3D1%26b%3D2"
        );
    }
}
