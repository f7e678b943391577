//! Webhook ingestion, in the order of docs/architecture.md: raw bytes, size limit, signature,
//! one strict parse (envelope), livemode, redaction, idempotent append. Independent of HTTP so
//! that the handler stays a thin translation and the steps can be tested on their own.

use chrono::Utc;
use ledger_projections::EnvelopeError;
use sha2::{Digest, Sha256};

use crate::config::WebhookConfig;
mod known_states;
mod writer;

pub use known_states::KnownStates;
pub use writer::{
    write_batch, write_batch_knowing, WriteError, Writer, DEFAULT_KNOWN_STATES_BYTES,
    DEFAULT_SEEN_CACHE_SIZE,
};

use crate::event_log::{redaction, AppendOutcome, NewEntry, Source, Verification};
use crate::store::StorageError;
use crate::stripe::keys::Mode;
use crate::stripe::signature::{self, SignatureError};

#[derive(Debug)]
pub enum IngestError {
    PayloadTooLarge {
        limit: usize,
    },
    Signature(SignatureError),
    Envelope(EnvelopeError),
    LivemodeMismatch {
        expected: Mode,
    },
    Storage(StorageError),
    /// Logged, but not projected; recorded as a dead letter.
    Projection(String),
    /// The database did not answer within the ingest budget.
    Timeout,
}

impl IngestError {
    /// Stable, machine-readable code; also the `code` label in rejection logs.
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::PayloadTooLarge { .. } => "payload_too_large",
            IngestError::Signature(e) => e.code(),
            IngestError::Envelope(EnvelopeError::NotJson(_)) => "malformed_json",
            IngestError::Envelope(_) => "invalid_event",
            IngestError::LivemodeMismatch { .. } => "livemode_mismatch",
            IngestError::Storage(e) if e.is_transient() => "storage_unavailable",
            IngestError::Storage(_) => "internal_error",
            IngestError::Projection(_) => "projection_failed",
            IngestError::Timeout => "storage_unavailable",
        }
    }
}

/// The successful outcome of one delivery.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub event_id: String,
    pub event_type: String,
    pub outcome: AppendOutcome,
}

/// The two names a redelivery is answered with, read without building the body's tree.
#[derive(serde::Deserialize)]
struct Names<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow, rename = "type")]
    event_type: std::borrow::Cow<'a, str>,
}

/// A verified redelivery of a body this instance logged and projected, answered from the
/// writer's cache of committed ids without the full parse: Stripe retries are most of a busy
/// endpoint's traffic, and the parse and redaction were most of a duplicate's cost.
///
/// Only a body whose hash is the one cached for its id qualifies: byte for byte a body the
/// strict parse (ADR 12) and the livemode check accepted before, so the answer is the one the
/// full path would give. Anything else (another body under a logged id, a body the light read
/// cannot read, an id not cached) takes the full path.
fn known_duplicate(writer: &Writer, body: &[u8], raw_body_sha256: &str) -> Option<Ingested> {
    // A new event (the common case) is told apart by its hash, before any read of its body.
    if !writer.may_have_logged_body(raw_body_sha256) {
        return None;
    }
    let names: Names = serde_json::from_slice(body).ok()?;
    let position = writer.logged_with_body(&names.id, raw_body_sha256)?;
    crate::telemetry::record_event_id(&names.id);
    Some(Ingested {
        event_id: names.id.into_owned(),
        event_type: names.event_type.into_owned(),
        outcome: AppendOutcome::Duplicate {
            position,
            same_body: true,
        },
    })
}

/// Verifies and appends one delivery. `now` is unix seconds (injected for tests).
pub async fn ingest(
    writer: &Writer,
    config: &WebhookConfig,
    signature_header: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<Ingested, IngestError> {
    if body.len() > config.max_body_bytes {
        return Err(IngestError::PayloadTooLarge {
            limit: config.max_body_bytes,
        });
    }
    // Verify before parse: nothing about an unverified body is trusted or even looked at.
    let verified = signature::verify(
        body,
        signature_header,
        &config.secrets,
        now,
        Some(config.tolerance_secs),
    )
    .map_err(IngestError::Signature)?;

    let raw_body_sha256 = hex::encode(Sha256::digest(body));
    if let Some(known) = known_duplicate(writer, body, &raw_body_sha256) {
        return Ok(known);
    }

    // The one parse of the body (ADR 12): the envelope, the redaction and the projection all
    // read this value, so nothing appended can fail to parse later.
    let text = ledger_projections::envelope::utf8(body).map_err(IngestError::Envelope)?;
    let (envelope, mut value) =
        ledger_projections::parse_event_str(text).map_err(IngestError::Envelope)?;
    // Verified: from here on, every line logged for this request names the event.
    crate::telemetry::record_event_id(&envelope.id);
    let expected = config.mode;
    if envelope.livemode != expected.is_live() {
        return Err(IngestError::LivemodeMismatch { expected });
    }

    let (payload, payload_redacted) = redaction::stored_payload(text, &mut value);
    let entry = NewEntry {
        source: Source::Webhook,
        payload,
        payload_redacted,
        raw_body_sha256,
        verification: Some(Verification {
            // The header is parseable (verification succeeded), so it is printable ASCII.
            signature_header: signature_header.unwrap_or_default().to_owned(),
            timestamp: verified.timestamp,
            secret_index: verified.secret_index,
            secret_fingerprint: verified.secret_fingerprint,
        }),
        received_at: Utc::now(),
        envelope,
    };

    let event_id = entry.envelope.id.clone();
    let event_type = entry.envelope.event_type.clone();
    let outcome = tokio::time::timeout(config.ingest_timeout, writer.append_parsed(entry, value))
        .await
        .map_err(|_| IngestError::Timeout)?
        .map_err(|e| match e {
            WriteError::Storage(e) => IngestError::Storage(e),
            WriteError::Projection(e) => IngestError::Projection(e),
        })?;
    Ok(Ingested {
        event_id,
        event_type,
        outcome,
    })
}
