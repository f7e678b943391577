//! The console's storage: sign-in sessions (`ui_sessions`) and the append-only record of
//! operator actions (`operator_actions`), both from migration 0009.
//!
//! [`UiStore`] lists the operations on the database handle. Every statement is identical on
//! both backends, so they are written once (`common/ui.rs`) and expanded in each backend's impl
//! (`postgres/ui.rs`, `sqlite/ui.rs`) with its own pools; [`Db`] only dispatches. What a session
//! means (expiry, scopes, the cookie) is `crate::ui::session`'s business, not storage.

use serde::Serialize;

use super::{Db, StorageError};

/// A session row. `id_sha256` is the SHA-256 (hex) of the cookie's random id; the id itself is
/// never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id_sha256: String,
    pub token_fingerprint: String,
    /// Comma-separated scope names, as granted at sign-in.
    pub scopes: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

/// What an operator did. Stored as text (`as_str`); a spelling this version does not know
/// (written by a newer one) reads back as an error for that row only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    SignIn,
    SignOut,
    /// An export of the event list (JSONL or CSV); the target is the filter.
    EventsExport,
    /// A download of one event's stored bytes.
    EventRawDownload,
    /// A download of one event's offline proof bundle.
    ProofBundleDownload,
    DeadLetterRetry,
    DeadLettersRetryAll,
    OutboxRequeue,
    ReconcileRun,
}

impl ActionKind {
    pub const ALL: [ActionKind; 9] = [
        ActionKind::SignIn,
        ActionKind::SignOut,
        ActionKind::EventsExport,
        ActionKind::EventRawDownload,
        ActionKind::ProofBundleDownload,
        ActionKind::DeadLetterRetry,
        ActionKind::DeadLettersRetryAll,
        ActionKind::OutboxRequeue,
        ActionKind::ReconcileRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::SignIn => "sign_in",
            ActionKind::SignOut => "sign_out",
            ActionKind::EventsExport => "events_export",
            ActionKind::EventRawDownload => "event_raw_download",
            ActionKind::ProofBundleDownload => "proof_bundle_download",
            ActionKind::DeadLetterRetry => "dead_letter_retry",
            ActionKind::DeadLettersRetryAll => "dead_letters_retry_all",
            ActionKind::OutboxRequeue => "outbox_requeue",
            ActionKind::ReconcileRun => "reconcile_run",
        }
    }

    pub fn parse(s: &str) -> Option<ActionKind> {
        ActionKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionOutcome {
    Succeeded,
    /// Refused before doing anything (a missing scope, a failed check).
    Refused,
    /// Started and failed; `detail` says why.
    Failed,
}

impl ActionOutcome {
    pub const ALL: [ActionOutcome; 3] = [
        ActionOutcome::Succeeded,
        ActionOutcome::Refused,
        ActionOutcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionOutcome::Succeeded => "succeeded",
            ActionOutcome::Refused => "refused",
            ActionOutcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<ActionOutcome> {
        ActionOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// An action to record.
#[derive(Debug, Clone)]
pub struct NewAction<'a> {
    pub at: i64,
    pub token_fingerprint: &'a str,
    pub action: ActionKind,
    /// What it was done to: an event id, a dead letter's position, an export's filter.
    pub target: &'a str,
    pub outcome: ActionOutcome,
    /// A short, safe description (counts, an error code); never a secret.
    pub detail: &'a str,
}

/// A recorded action.
#[derive(Debug, Clone, Serialize)]
pub struct ActionRow {
    pub id: i64,
    pub at: i64,
    pub token_fingerprint: String,
    pub action: ActionKind,
    pub target: String,
    pub outcome: ActionOutcome,
    pub detail: String,
}

/// What the projector did with one log entry, as far as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionRecord {
    /// Ingestion listed the position as projected (until the catch-up checkpoint passes it).
    pub listed_projected: bool,
    /// The catch-up projector's checkpoint: every entry at or below it has been projected or
    /// dead-lettered.
    pub catch_up_checkpoint: Option<i64>,
    /// The dead letter of this entry, if its projection failed and is not yet healed.
    pub dead_letter: Option<DeadLetterNote>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterNote {
    pub error: String,
    pub attempts: i32,
}

/// The log's extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRange {
    /// Entries, counted up to the cap asked for (a count at the cap means "at least").
    pub count: i64,
    /// `None` while the log is empty.
    pub first: Option<i64>,
    pub last: Option<i64>,
}

/// Operations on the database handle. Dispatched statically through [`Db`], never `dyn`.
/// Reads run on the pool (SQLite: the read pool); writes on SQLite go to the writer.
#[allow(async_fn_in_trait)] // static dispatch only: callers see the concrete futures, and they are Send.
pub trait UiStore {
    async fn ui_session_create(&self, row: &SessionRow) -> Result<(), StorageError>;
    async fn ui_session_get(&self, id_sha256: &str) -> Result<Option<SessionRow>, StorageError>;
    /// Moves `last_seen_at` forward to `now` (never back).
    async fn ui_session_touch(&self, id_sha256: &str, now: i64) -> Result<(), StorageError>;
    /// Returns whether a row was deleted.
    async fn ui_session_delete(&self, id_sha256: &str) -> Result<bool, StorageError>;
    /// Deletes sessions past their absolute expiry or idle since before `idle_before`.
    async fn ui_sessions_purge(&self, now: i64, idle_before: i64) -> Result<u64, StorageError>;
    /// What the projector did with the entry at `position`.
    async fn ui_projection_record(&self, position: i64) -> Result<ProjectionRecord, StorageError>;
    /// Entries matching `filter`, counted up to `cap` (a count past the cap reads as `cap`):
    /// the list shows "10,000+" instead of scanning a million rows for every page.
    async fn ui_count_events(
        &self,
        filter: &crate::event_log::EventFilter,
        cap: i64,
    ) -> Result<i64, StorageError>;
    /// As `EventLogStore::list_events` (at most `page.limit + 1` entries), with payloads.
    async fn ui_export_events(
        &self,
        filter: &crate::event_log::EventFilter,
        page: &crate::event_log::PageRequest,
    ) -> Result<Vec<crate::store::event_log::StoredEvent>, StorageError>;
    /// Every distinct event type in the log, sorted (a walk of the type index, one probe per
    /// type): what a `customer.*` filter expands to.
    async fn ui_event_types(&self) -> Result<Vec<String>, StorageError>;
    /// How many entries the log holds, counted up to `cap`, and its lowest and highest
    /// positions.
    async fn ui_log_range(&self, cap: i64) -> Result<LogRange, StorageError>;
    /// The names of the triggers on `event_log` (the immutability guards), from the catalog.
    async fn ui_log_triggers(&self) -> Result<Vec<String>, StorageError>;
    /// For `bench --console` after a bulk prefill: what autovacuum would have done to a log
    /// that grew over time (planner statistics; on PostgreSQL the visibility map too).
    async fn ui_bench_settle_log(&self) -> Result<(), StorageError>;
    /// Appends one action; its id.
    async fn operator_action_record(&self, action: &NewAction<'_>) -> Result<i64, StorageError>;
    /// Actions with an id below `before_id` (all when `None`), newest first, at most `limit`.
    async fn operator_actions_list(
        &self,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<ActionRow>, StorageError>;
}

impl UiStore for Db {
    async fn ui_session_create(&self, row: &SessionRow) -> Result<(), StorageError> {
        match self {
            Db::Postgres(s) => s.ui_session_create(row).await,
            Db::Sqlite(s) => s.ui_session_create(row).await,
        }
    }

    async fn ui_session_get(&self, id_sha256: &str) -> Result<Option<SessionRow>, StorageError> {
        match self {
            Db::Postgres(s) => s.ui_session_get(id_sha256).await,
            Db::Sqlite(s) => s.ui_session_get(id_sha256).await,
        }
    }

    async fn ui_session_touch(&self, id_sha256: &str, now: i64) -> Result<(), StorageError> {
        match self {
            Db::Postgres(s) => s.ui_session_touch(id_sha256, now).await,
            Db::Sqlite(s) => s.ui_session_touch(id_sha256, now).await,
        }
    }

    async fn ui_session_delete(&self, id_sha256: &str) -> Result<bool, StorageError> {
        match self {
            Db::Postgres(s) => s.ui_session_delete(id_sha256).await,
            Db::Sqlite(s) => s.ui_session_delete(id_sha256).await,
        }
    }

    async fn ui_sessions_purge(&self, now: i64, idle_before: i64) -> Result<u64, StorageError> {
        match self {
            Db::Postgres(s) => s.ui_sessions_purge(now, idle_before).await,
            Db::Sqlite(s) => s.ui_sessions_purge(now, idle_before).await,
        }
    }

    async fn ui_projection_record(&self, position: i64) -> Result<ProjectionRecord, StorageError> {
        match self {
            Db::Postgres(s) => s.ui_projection_record(position).await,
            Db::Sqlite(s) => s.ui_projection_record(position).await,
        }
    }

    async fn ui_count_events(
        &self,
        filter: &crate::event_log::EventFilter,
        cap: i64,
    ) -> Result<i64, StorageError> {
        match self {
            Db::Postgres(s) => s.ui_count_events(filter, cap).await,
            Db::Sqlite(s) => s.ui_count_events(filter, cap).await,
        }
    }

    async fn ui_export_events(
        &self,
        filter: &crate::event_log::EventFilter,
        page: &crate::event_log::PageRequest,
    ) -> Result<Vec<crate::store::event_log::StoredEvent>, StorageError> {
        match self {
            Db::Postgres(s) => s.ui_export_events(filter, page).await,
            Db::Sqlite(s) => s.ui_export_events(filter, page).await,
        }
    }

    async fn ui_event_types(&self) -> Result<Vec<String>, StorageError> {
        match self {
            Db::Postgres(s) => s.ui_event_types().await,
            Db::Sqlite(s) => s.ui_event_types().await,
        }
    }

    async fn ui_log_range(&self, cap: i64) -> Result<LogRange, StorageError> {
        match self {
            Db::Postgres(s) => s.ui_log_range(cap).await,
            Db::Sqlite(s) => s.ui_log_range(cap).await,
        }
    }

    async fn ui_log_triggers(&self) -> Result<Vec<String>, StorageError> {
        match self {
            Db::Postgres(s) => s.ui_log_triggers().await,
            Db::Sqlite(s) => s.ui_log_triggers().await,
        }
    }

    async fn ui_bench_settle_log(&self) -> Result<(), StorageError> {
        match self {
            Db::Postgres(s) => s.ui_bench_settle_log().await,
            Db::Sqlite(s) => s.ui_bench_settle_log().await,
        }
    }

    async fn operator_action_record(&self, action: &NewAction<'_>) -> Result<i64, StorageError> {
        match self {
            Db::Postgres(s) => s.operator_action_record(action).await,
            Db::Sqlite(s) => s.operator_action_record(action).await,
        }
    }

    async fn operator_actions_list(
        &self,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<ActionRow>, StorageError> {
        match self {
            Db::Postgres(s) => s.operator_actions_list(before_id, limit).await,
            Db::Sqlite(s) => s.operator_actions_list(before_id, limit).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_kinds_and_outcomes_read_back_as_themselves() {
        for kind in ActionKind::ALL {
            assert_eq!(ActionKind::parse(kind.as_str()), Some(kind));
        }
        for outcome in ActionOutcome::ALL {
            assert_eq!(ActionOutcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(ActionKind::parse("SignIn"), None);
    }
}
