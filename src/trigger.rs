//! `stripe-ledger trigger`: sign a payload exactly as Stripe does and POST it, for local testing
//! without the Stripe CLI.

use anyhow::Context as _;

use crate::stripe::signature;

#[derive(Debug, Clone)]
pub struct TriggerRequest {
    pub url: String,
    /// The endpoint secret to sign with (the first of a comma-separated list).
    pub secret: String,
    /// Sent byte for byte: the signature covers the exact bytes.
    pub payload: Vec<u8>,
    /// Unix seconds for `t=`; now when `None`.
    pub timestamp: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct TriggerResponse {
    pub status: u16,
    pub body: String,
}

/// Replaces the event's `id` with a fresh `evt_...`, so a fixture can be sent repeatedly as new
/// events. The result is re-serialised (the signature is computed over the new bytes).
pub fn with_fresh_id(payload: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut value: serde_json::Value =
        serde_json::from_slice(payload).context("the fixture is not JSON")?;
    let object = value
        .as_object_mut()
        .context("the fixture is not a JSON object")?;
    let id = format!("evt_local_{}", uuid::Uuid::new_v4().simple());
    object.insert("id".to_owned(), serde_json::Value::String(id));
    Ok(serde_json::to_vec_pretty(&value)?)
}

pub async fn send(
    client: &reqwest::Client,
    request: TriggerRequest,
) -> anyhow::Result<TriggerResponse> {
    let secret = request
        .secret
        .split(',')
        .map(str::trim)
        .find(|s| !s.is_empty())
        .context("no webhook secret given (--secret or STRIPE_WEBHOOK_SECRET)")?;
    let timestamp = request
        .timestamp
        .unwrap_or_else(|| chrono::Utc::now().timestamp());
    let header = signature::sign(&request.payload, secret, timestamp);
    let response = client
        .post(&request.url)
        .header("content-type", "application/json; charset=utf-8")
        .header("stripe-signature", header)
        .header("user-agent", "stripe-ledger-trigger")
        .body(request.payload)
        .send()
        .await
        .with_context(|| format!("could not reach {}", request.url))?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    Ok(TriggerResponse { status, body })
}

/// An HTTP client for the CLI's own requests (trigger, bench), with rustls on ring.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    crate::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("could not build the HTTP client")
}

pub mod catalog;
pub mod flow;
pub mod overrides;

/// An existing Stripe id a sequence continues with (`--customer`, `--session`, or what the
/// service answered `go-live-check`): the id rules, and Stripe's prefix for the object, so a
/// mistyped or hostile value never reaches a payload.
pub fn check_existing_id(what: &str, value: &str, prefix: &str) -> Result<(), String> {
    crate::validate::check_id(what, value).map_err(|e| e.to_string())?;
    let rest = value.strip_prefix(prefix).unwrap_or_default();
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "`{what}` must be a Stripe id like {prefix}... (ASCII letters, digits, `_`)"
        ));
    }
    Ok(())
}

/// One event of a built-in sequence, as the service answered it.
#[derive(Debug, Clone)]
pub struct Posted {
    pub event_type: String,
    pub event_id: String,
    pub status: u16,
    pub body: String,
}

impl Posted {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `recorded` / `duplicate` for a 2xx, else the error code (or the status).
    pub fn outcome(&self) -> String {
        let body: serde_json::Value = serde_json::from_str(&self.body).unwrap_or_default();
        body["status"]
            .as_str()
            .or_else(|| body["error"]["code"].as_str())
            .map_or_else(|| format!("http_{}", self.status), str::to_owned)
    }
}

/// Signs and posts `events` in order (compact JSON, each signed over its exact bytes) and stops
/// at the first non-2xx: the events after it would not be coherent with what the service has.
pub async fn post_events(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    events: &[serde_json::Value],
    timestamp: Option<i64>,
) -> anyhow::Result<Vec<Posted>> {
    let mut posted = Vec::with_capacity(events.len());
    for event in events {
        let response = send(
            client,
            TriggerRequest {
                url: url.to_owned(),
                secret: secret.to_owned(),
                payload: serde_json::to_vec(event)?,
                timestamp,
            },
        )
        .await?;
        let p = Posted {
            event_type: event["type"].as_str().unwrap_or_default().to_owned(),
            event_id: event["id"].as_str().unwrap_or_default().to_owned(),
            status: response.status,
            body: response.body,
        };
        let ok = p.ok();
        posted.push(p);
        if !ok {
            break;
        }
    }
    Ok(posted)
}
