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
