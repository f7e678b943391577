//! The one error of the storage layer.
//!
//! It keeps its source (`sqlx::Error` behind an `Arc`, so that one batch failure can be
//! reported to every request of the batch) and says what the caller should do with it:
//! [`StorageError::is_transient`] errors are retried (503 to clients, Stripe retries), the others
//! are bugs or broken data (500, logged). Nothing here is ever shown to a client: the HTTP
//! boundary logs [`StorageError::report`] once and answers with a fixed message.

use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The database could not be reached or did not answer in time (pool timeout, I/O, a
    /// server shutting down, a serialization failure or deadlock, SQLite busy): retry.
    #[error("database unavailable")]
    Unavailable {
        #[source]
        source: Arc<sqlx::Error>,
    },
    /// The database refused a statement (a constraint, a type mismatch, a bug of ours).
    #[error("database error")]
    Database {
        #[source]
        source: Arc<sqlx::Error>,
    },
    /// A migration could not be applied (a changed or missing migration file).
    #[error("migration failed")]
    Migration {
        #[source]
        source: Arc<sqlx::migrate::MigrateError>,
    },
    /// A storage step gave up without a database error (the writer stopped, a deadline passed,
    /// a concurrent append of the same id with another body): retry.
    #[error("storage interrupted: {why}")]
    Interrupted { why: String },
    /// What a batch read changed before it wrote (a read-model version moved, the active
    /// generation switched): read and fold again.
    #[error("concurrent change: {what}")]
    Conflict { what: String },
    /// Data that cannot be stored or read back as what it should be (a stored state that does
    /// not decode, an unknown kind, an envelope the projection cannot read).
    #[error("invalid stored data: {what}")]
    Invalid { what: String },
}

impl StorageError {
    pub fn interrupted(why: impl Into<String>) -> Self {
        StorageError::Interrupted { why: why.into() }
    }

    pub fn conflict(what: impl Into<String>) -> Self {
        StorageError::Conflict { what: what.into() }
    }

    /// Whether the statement lost a race that reading again resolves: a failed version check
    /// (PostgreSQL raises 40001 for it), a serialization failure or a deadlock.
    pub fn is_conflict(&self) -> bool {
        match self {
            StorageError::Conflict { .. } => true,
            StorageError::Unavailable { source } | StorageError::Database { source } => {
                matches!(&**source, sqlx::Error::Database(db)
                    if matches!(db.code().as_deref(), Some("40001" | "40P01")))
            }
            _ => false,
        }
    }

    pub fn invalid(what: impl Into<String>) -> Self {
        StorageError::Invalid { what: what.into() }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StorageError::Unavailable { .. }
                | StorageError::Interrupted { .. }
                | StorageError::Conflict { .. }
        )
    }

    /// The error and its sources on one line, for logs (never for responses).
    pub fn report(&self) -> String {
        chain(self)
    }

    pub(crate) fn from_migrate(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(e) => e.into(),
            other => StorageError::Migration {
                source: Arc::new(other),
            },
        }
    }
}

/// Any error and its sources on one line (`outer: inner: innermost`), for logs. Display of a
/// [`StorageError`] is deliberately short, so log sites print this rather than `%e`.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        let transient = match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => is_transient_code(db.code().as_deref()),
            _ => false,
        };
        let source = Arc::new(e);
        if transient {
            StorageError::Unavailable { source }
        } else {
            StorageError::Database { source }
        }
    }
}

// PostgreSQL: 08xxx connection exceptions, 53xxx insufficient resources, 57P0x shutdown,
// 40001/40P01 serialization/deadlock. SQLite: 5 SQLITE_BUSY, 6 SQLITE_LOCKED, 517
// SQLITE_BUSY_SNAPSHOT, 261 SQLITE_BUSY_RECOVERY.
fn is_transient_code(code: Option<&str>) -> bool {
    match code {
        Some(c) => {
            c.starts_with("08")
                || c.starts_with("53")
                || c.starts_with("57P0")
                || matches!(c, "40001" | "40P01" | "5" | "6" | "517" | "261")
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_timeout_is_transient_and_keeps_its_source() {
        let e = StorageError::from(sqlx::Error::PoolTimedOut);
        assert!(e.is_transient());
        assert!(std::error::Error::source(&e).is_some());
        assert!(
            e.report().starts_with("database unavailable: "),
            "{}",
            e.report()
        );
    }

    #[test]
    fn a_refused_statement_is_not_transient() {
        let e = StorageError::from(sqlx::Error::RowNotFound);
        assert!(!e.is_transient());
        assert!(matches!(e, StorageError::Database { .. }));
    }

    #[test]
    fn transient_database_codes_are_the_retryable_ones() {
        for code in [
            "08006", "53300", "57P01", "40001", "40P01", "5", "6", "517", "261",
        ] {
            assert!(is_transient_code(Some(code)), "{code}");
        }
        for code in ["23505", "42P01", "19", "1"] {
            assert!(!is_transient_code(Some(code)), "{code}");
        }
        assert!(!is_transient_code(None));
    }
}
