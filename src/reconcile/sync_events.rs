//! `stripe-ledger sync-events`: gap fill of missed webhooks from `GET /v1/events`.
//!
//! Stripe keeps events for 30 days. Every listed event the log lacks is appended as an entry of
//! source `api_backfill`, oldest first, and projected; events already logged are left alone
//! (the unique event id decides, as for webhooks).

use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::db::Db;
use crate::event_log::{self, redaction, AppendOutcome, NewEntry, Source, StorageError};
use crate::projector::{self, Entry};
use crate::stripe::client::{StripeClient, StripeError};
use crate::stripe::keys::Mode;

/// How long Stripe keeps events listable.
pub const RETENTION_SECS: i64 = 30 * 86_400;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SyncReport {
    pub listed: usize,
    pub appended: usize,
    pub already_logged: usize,
    /// Appended, but their projection failed (they are dead letters now).
    pub projection_failures: usize,
    /// Listed events refused: another mode than the key's, or not a usable envelope.
    pub refused: usize,
    /// The window reaches past Stripe's 30-day retention: older missed events are gone.
    pub window_exceeds_retention: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Lists events created at or after `since` (unix seconds) and appends the ones the log lacks.
pub async fn sync_events(
    db: &Db,
    client: &StripeClient,
    mode: Mode,
    since: i64,
    now: i64,
) -> Result<SyncReport, SyncError> {
    let mut report = SyncReport {
        window_exceeds_retention: now - since >= RETENTION_SECS,
        ..Default::default()
    };
    if report.window_exceeds_retention {
        tracing::warn!(
            since,
            "sync-events window reaches past Stripe's 30-day event retention"
        );
    }
    let since_param = since.to_string();
    let mut listed = client
        .list_all("/v1/events", &[("created[gte]", since_param.as_str())])
        .await?;
    report.listed = listed.len();
    // Stripe lists newest first; the log should receive them oldest first.
    listed.reverse();
    let mut entries = Vec::new();
    for event in &listed {
        let body = event.to_string();
        let Ok(prepared) = redaction::prepare(body.as_bytes()) else {
            report.refused += 1;
            continue;
        };
        if prepared.envelope.livemode != mode.is_live() {
            report.refused += 1;
            continue;
        }
        let raw_body_sha256 = hex::encode(Sha256::digest(body.as_bytes()));
        entries.push(NewEntry {
            envelope: prepared.envelope,
            source: Source::ApiBackfill,
            payload: prepared.payload,
            payload_redacted: prepared.payload_redacted,
            raw_body_sha256,
            verification: None,
            received_at: Utc::now(),
        });
    }
    for chunk in entries.chunks(100) {
        let refs: Vec<&NewEntry> = chunk.iter().collect();
        let outcomes = event_log::append_batch(db, &refs).await?;
        let mut appended = Vec::new();
        for (entry, outcome) in chunk.iter().zip(outcomes) {
            match outcome {
                AppendOutcome::Appended { position } => appended.push(Entry {
                    position,
                    event_id: entry.envelope.id.clone(),
                    event_type: entry.envelope.event_type.clone(),
                    created: entry.envelope.created,
                    payload: entry.payload.clone(),
                }),
                AppendOutcome::Duplicate { .. } => report.already_logged += 1,
            }
        }
        report.appended += appended.len();
        for result in projector::project_each(db, &appended).await {
            match result {
                Ok(()) => {}
                Err(projector::ProjectError::Storage(e)) if e.is_transient() => {
                    return Err(e.into())
                }
                Err(_) => report.projection_failures += 1,
            }
        }
    }
    Ok(report)
}

/// Parses `30d`, `12h`, `90m`, `45s` or plain seconds.
pub fn parse_window(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let n: i64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 30d, 12h, 90m or 45s"))?;
    let secs = match unit {
        'd' => n * 86_400,
        'h' => n * 3_600,
        'm' => n * 60,
        's' => n,
        _ => return Err(format!("`{text}`: the unit must be d, h, m or s")),
    };
    if secs <= 0 {
        return Err("the window must be positive".to_owned());
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_with_units() {
        assert_eq!(parse_window("30d"), Ok(2_592_000));
        assert_eq!(parse_window("12h"), Ok(43_200));
        assert_eq!(parse_window("90m"), Ok(5_400));
        assert_eq!(parse_window("45"), Ok(45));
        assert!(parse_window("soon").is_err());
        assert!(parse_window("3w").is_err());
        assert!(parse_window("0d").is_err());
    }
}
