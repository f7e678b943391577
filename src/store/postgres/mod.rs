//! PostgreSQL: the production backend. One file per concern implements that concern's traits
//! for [`PgStore`] (reads and one-off writes on the pool) and [`PgTx`] (inside a transaction).

pub mod event_log;
pub mod jobs;
pub mod outbox;
pub mod read_models;
pub mod rebuild;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use super::{PoolSettings, StorageError};

/// The PostgreSQL pool. `pool` is public for integration tests that inspect the server
/// (`pg_locks`) or damage data on purpose; the service itself goes through the traits.
#[derive(Clone, Debug)]
pub struct PgStore {
    pub pool: PgPool,
}

/// A PostgreSQL transaction.
pub type PgTx<'c> = sqlx::Transaction<'c, sqlx::Postgres>;

impl PgStore {
    pub(super) async fn connect(
        options: &PgConnectOptions,
        settings: &PoolSettings,
    ) -> Result<PgStore, StorageError> {
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options.clone())
            .await?;
        Ok(PgStore { pool })
    }

    /// Generic plans cached while the tables were small stay sequential scans; these
    /// statements are cheap to plan, so plan them for the data at hand. Sent with the BEGIN as
    /// one simple query: one round trip inside the append's critical path.
    pub(super) async fn begin(&self) -> Result<PgTx<'static>, StorageError> {
        Ok(self
            .pool
            .begin_with("BEGIN; SET LOCAL plan_cache_mode = force_custom_plan")
            .await?)
    }

    /// `begin`, plus the shared generation lock ingestion holds to its end (see `Tx::begin_ingest`).
    pub(super) async fn begin_ingest(&self) -> Result<PgTx<'static>, StorageError> {
        Ok(self
            .pool
            .begin_with(format!(
                "BEGIN; SET LOCAL plan_cache_mode = force_custom_plan; \
                 SELECT pg_advisory_xact_lock_shared({})",
                crate::store::read_models::GENERATION_LOCK
            ))
            .await?)
    }
}
