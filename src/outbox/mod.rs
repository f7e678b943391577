//! The outbox: notifications written in the projection transaction, delivered later by a
//! worker, at least once.
//!
//! Writing the row in the same transaction as the read models means a notification exists
//! exactly when the event that caused it is projected: nothing is sent for an event that
//! rolled back, and nothing is lost for one that committed. The row's unique dedupe key makes
//! a duplicate, replayed or backfilled event a no-op, and a rebuild never writes here at all.
//!
//! Workers claim due rows for a lease (`claimed_until`), so several instances deliver without
//! sending one row twice; a worker that dies mid-send leaves its rows to be taken over when
//! the lease runs out, which is where "at least once" comes from.

pub mod mail;
mod worker;

use crate::store::outbox::OutboxStore as _;
use crate::store::Db;
use crate::store::StorageError;

pub use crate::store::outbox::{Item, OutboxStatus, RetryTarget};
pub use worker::{backoff_secs, deliver_due, spawn_worker, DeliveryReport, MAX_ATTEMPTS};

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// The transport failed; try again at this time.
    Retry {
        at: i64,
        error: String,
    },
    /// Something the email needs has not arrived yet (the customer's address); look again then.
    Wait {
        at: i64,
        reason: String,
    },
    Failed {
        error: String,
    },
    /// Deliberately not sent (the customer is gone, access continues...).
    Skipped {
        reason: String,
    },
}

/// Stored error texts are cut to this many characters, the last one an ellipsis.
pub const MAX_ERROR_CHARS: usize = 500;

/// An outcome's text as stored. It may quote an SMTP server's reply, which is network input:
/// a NUL, which PostgreSQL's text refuses (failing the write of the whole batch's outcomes, so
/// every email in it would be sent again), becomes U+FFFD, and a long reply is cut. Other
/// control characters are kept as they came; every view escapes them.
pub fn stored_error(text: &str) -> String {
    let tamed = text.replace('\0', "\u{fffd}");
    if tamed.chars().count() <= MAX_ERROR_CHARS {
        return tamed;
    }
    let mut cut: String = tamed.chars().take(MAX_ERROR_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The error text an outcome records, if any.
fn error_of(outcome: &Outcome) -> Option<&str> {
    match outcome {
        Outcome::Sent => None,
        Outcome::Retry { error, .. } | Outcome::Failed { error } => Some(error),
        Outcome::Wait { reason, .. } | Outcome::Skipped { reason } => Some(reason),
    }
}

/// What an attempt's outcome leaves on its row, with `last_error` already made storable.
fn settlement<'a>(
    outcome: &Outcome,
    last_error: Option<&'a str>,
    now: i64,
) -> crate::store::outbox::Settlement<'a> {
    use crate::store::outbox::Settlement;
    let (status, next_attempt_at, sent_at) = match outcome {
        Outcome::Sent => (OutboxStatus::Sent, now, Some(now)),
        Outcome::Retry { at, .. } | Outcome::Wait { at, .. } => (OutboxStatus::Pending, *at, None),
        Outcome::Failed { .. } => (OutboxStatus::Failed, now, None),
        Outcome::Skipped { .. } => (OutboxStatus::Skipped, now, None),
    };
    Settlement {
        status,
        next_attempt_at,
        last_error,
        sent_at,
    }
}

/// Records the outcomes of attempts on rows this worker claimed, by row id, in one write.
pub async fn settle_all(
    db: &Db,
    outcomes: &[(i64, Outcome)],
    now: i64,
) -> Result<(), StorageError> {
    let errors: Vec<Option<String>> = outcomes
        .iter()
        .map(|(_, outcome)| error_of(outcome).map(stored_error))
        .collect();
    let settlements: Vec<_> = outcomes
        .iter()
        .zip(&errors)
        .map(|((id, outcome), error)| (*id, settlement(outcome, error.as_deref(), now)))
        .collect();
    db.outbox_settle_all(&settlements).await
}

/// A validated `GET /api/outbox` query (`status`, `limit`, `cursor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub status: Option<OutboxStatus>,
    pub after_id: Option<i64>,
    pub limit: u32,
}

impl ListQuery {
    /// The one validation of the outbox list's parameters, for the API and the CLI alike.
    pub fn parse(params: &crate::query::Params) -> Result<ListQuery, crate::query::FilterError> {
        use crate::query;
        query::refuse_unknown(params, &["status", "limit", "cursor"])?;
        let choices = OutboxStatus::ALL.map(|s| (s.as_str(), s));
        let status = query::choice_param(params, "status", &choices)?;
        let limit = query::limit_param(params)?;
        let after_id = params
            .get("cursor")
            .map(|c| Self::binding(status).decode_position(c))
            .transpose()?;
        Ok(ListQuery {
            status,
            after_id,
            limit,
        })
    }

    /// The cursor of the page after the one ending at row `last_id`.
    pub fn next_cursor(&self, last_id: i64) -> String {
        Self::binding(self.status).encode(&last_id.to_string())
    }

    fn binding(status: Option<OutboxStatus>) -> crate::query::cursor::Binding {
        use crate::query::cursor::{Binding, Endpoint};
        Binding::new(
            Endpoint::Outbox,
            &[("status", status.map(OutboxStatus::as_str))],
        )
    }
}

/// Rows in `status` (all when `None`), by id, after `after_id`, at most `limit`; the second
/// value is the id to continue after when there is more.
pub async fn list(
    db: &Db,
    status: Option<OutboxStatus>,
    after_id: Option<i64>,
    limit: u32,
) -> Result<(Vec<Item>, Option<i64>), StorageError> {
    let mut items = db
        .outbox_list(status, after_id.unwrap_or(0), i64::from(limit) + 1)
        .await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = if more {
        items.last().map(|i| i.id)
    } else {
        None
    };
    Ok((items, next))
}

/// Puts failed (or, by id, skipped) rows back in the queue, due now, with a fresh attempt
/// budget. Returns how many rows were re-queued. A sent row is never re-sent.
pub async fn retry(db: &Db, target: RetryTarget, now: i64) -> Result<u64, StorageError> {
    db.outbox_retry(target, now).await
}
