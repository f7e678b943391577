//! PostgreSQL: the production backend. One file per concern implements that concern's traits
//! for [`PgStore`] (reads and one-off writes on the pool) and [`PgTx`] (inside a transaction).

pub mod event_log;
pub mod history;
pub mod ingest;
pub mod jobs;
pub mod outbox;
pub mod read_models;
pub mod rebuild;
pub mod seal;
pub mod ui;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use super::{PoolSettings, StorageError};

/// The PostgreSQL pool. `pool` is public for integration tests that inspect the server
/// (`pg_locks`) or damage data on purpose; the service itself goes through the traits.
#[derive(Clone, Debug)]
pub struct PgStore {
    pub pool: PgPool,
    /// Ingestion's connections (`postgres::ingest`). They keep PostgreSQL's default plan-cache
    /// mode: every statement sent on them is a call of a function that plans its own statements
    /// (migrations 0011, 0013), so the call itself has one plan whatever the data, and
    /// planning it again for every batch (the pool's `force_custom_plan`) was a tenth of
    /// PostgreSQL's CPU per event at one event per batch (docs/adr/0022).
    pub(crate) ingest: PgPool,
}

/// Ingestion's connections: one per writer task (`ingest::writer`), and one spare.
const INGEST_CONNECTIONS: u32 = 3;

/// A pooled connection idle for this long is checked again before it is used (one round trip
/// more for the first batch after a quiet spell).
const RECHECK_AFTER_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// A PostgreSQL transaction.
pub type PgTx<'c> = sqlx::Transaction<'c, sqlx::Postgres>;

impl PgStore {
    pub(super) async fn connect(
        options: &PgConnectOptions,
        settings: &PoolSettings,
    ) -> Result<PgStore, StorageError> {
        // Reads on the pool run outside any transaction, so the custom-plan rule of `begin`
        // below is the session's: a generic plan cached while the log was small stays a
        // sequential scan (ADR 3). Every statement here is cheap to plan.
        let custom_plans = options
            .clone()
            .options([("plan_cache_mode", "force_custom_plan")]);
        let pool = pool_options(settings.max_connections, settings)
            .connect_with(custom_plans)
            .await?;
        let ingest = pool_options(settings.max_connections.min(INGEST_CONNECTIONS), settings)
            .connect_with(options.clone())
            .await?;
        Ok(PgStore { pool, ingest })
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
}

fn pool_options(max_connections: u32, settings: &PoolSettings) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(settings.acquire_timeout)
        // sqlx checks every connection when it is returned (a round trip after the work, off
        // the caller's path) and by default again when it is taken: one round trip more per
        // batch on the hot path (docs/adr/0016). A connection checked on its return a moment
        // ago is good; one idle for a while is checked again, since the server may have closed
        // it meanwhile.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= RECHECK_AFTER_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}
