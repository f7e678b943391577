//! `stripe-ledger sync-events`: gap fill of missed webhooks from `GET /v1/events`.
//!
//! Stripe keeps events for 30 days. Every listed event the log lacks is appended as an entry of
//! source `api_backfill`, oldest first, and projected; events already logged are left alone
//! (the unique event id decides, as for webhooks).

use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::event_log::{self, redaction, AppendOutcome, NewEntry, Source};
use crate::projector::{self, Entry};
use crate::store::Db;
use crate::store::StorageError;
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
                    origin: ledger_projections::Origin::Stripe,
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

/// The longest window `parse_window` accepts: ten years. Stripe keeps events for 30 days, so
/// anything longer is a typo; the cap also keeps `now - window` far from overflow.
pub const MAX_WINDOW_SECS: i64 = 3650 * 86_400;

/// Why a window could not be used. The messages never repeat the input: the same parser reads
/// `RECONCILE_INTERVAL`, and configuration errors never echo values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("is not a duration like 30d, 12h, 90m, 45s or plain seconds")]
    Malformed,
    #[error("has an unknown unit: use d, h, m or s")]
    UnknownUnit,
    #[error("must be positive")]
    NotPositive,
    #[error("is longer than the maximum of 3650 days")]
    TooLong,
}

impl From<WindowError> for String {
    fn from(e: WindowError) -> String {
        e.to_string()
    }
}

/// Parses `30d`, `12h`, `90m`, `45s` or plain seconds (ASCII digits, at most
/// [`MAX_WINDOW_SECS`]). The multiplication is checked: a huge day count is refused, never
/// wrapped into a short window.
pub fn parse_window(text: &str) -> Result<i64, WindowError> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let multiplier: i64 = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return Err(WindowError::UnknownUnit),
    };
    // Only ASCII digits: `str::parse` would also take a sign (`+5`).
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WindowError::Malformed);
    }
    // All digits, so the only parse failure left is overflow.
    let n: i64 = number.parse().map_err(|_| WindowError::TooLong)?;
    let secs = n.checked_mul(multiplier).ok_or(WindowError::TooLong)?;
    if secs == 0 {
        return Err(WindowError::NotPositive);
    }
    if secs > MAX_WINDOW_SECS {
        return Err(WindowError::TooLong);
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

    #[test]
    fn a_huge_window_is_refused_instead_of_wrapping() {
        // 213503982334602 days overflows i64 seconds and used to wrap to about 17 hours.
        assert_eq!(parse_window("213503982334602d"), Err(WindowError::TooLong));
        assert_eq!(
            parse_window(&i64::MAX.to_string()),
            Err(WindowError::TooLong)
        );
        assert_eq!(
            parse_window("99999999999999999999999s"),
            Err(WindowError::TooLong)
        );
        assert_eq!(parse_window("3650d"), Ok(MAX_WINDOW_SECS));
        assert_eq!(parse_window("3651d"), Err(WindowError::TooLong));
        assert_eq!(
            parse_window(&(MAX_WINDOW_SECS + 1).to_string()),
            Err(WindowError::TooLong)
        );
    }

    #[test]
    fn signs_exponents_and_non_ascii_digits_are_malformed() {
        for text in [
            "-1", "-1d", "+5", "1e3", "1.5h", "", "   ", "d", "\0", "1\0d", "١٢", "１２h", "12 h",
        ] {
            assert!(parse_window(text).is_err(), "{text:?}");
        }
        assert_eq!(parse_window("-1"), Err(WindowError::Malformed));
        assert_eq!(parse_window(" 12h "), Ok(43_200));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn any_text_parses_within_bounds_or_is_classified(text in "\\PC*|[0-9]{0,25}[dhmsxD]?|[-+ ]?[0-9١２]{1,20}[dhms]?") {
            match parse_window(&text) {
                Ok(secs) => proptest::prop_assert!((1..=MAX_WINDOW_SECS).contains(&secs)),
                // A closed set of reasons; none of them can carry the input.
                Err(WindowError::Malformed | WindowError::UnknownUnit | WindowError::NotPositive | WindowError::TooLong) => {}
            }
        }

        #[test]
        fn a_well_formed_window_is_the_exact_product_or_too_long(n in 0u64..u64::MAX, unit in proptest::sample::select(vec![('d', 86_400i128), ('h', 3_600), ('m', 60), ('s', 1)])) {
            let expected = i128::from(n) * unit.1;
            let got = parse_window(&format!("{n}{}", unit.0));
            if expected == 0 {
                proptest::prop_assert_eq!(got, Err(WindowError::NotPositive));
            } else if expected > i128::from(MAX_WINDOW_SECS) {
                proptest::prop_assert_eq!(got, Err(WindowError::TooLong));
            } else {
                proptest::prop_assert_eq!(got.map(i128::from), Ok(expected));
            }
        }
    }
}
