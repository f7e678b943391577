//! What both backends share, one file per concern: statements whose text is identical on
//! PostgreSQL and SQLite (`pub(crate) const ...: &str`, with `$n` placeholders, which both
//! drivers accept), and typed rows decoded once for both (`impl FromRow` generic over the row,
//! bounded by the column types it reads). A backend file executes the shared constant with its
//! own executor; only the statements that really differ are written in `postgres/` or `sqlite/`.

pub mod event_log;
pub mod history;
pub mod jobs;
pub mod outbox;
pub mod read_models;
pub mod rebuild;
pub mod seal;
pub mod ui;

/// Column types a shared row decoder reads: "this database decodes `T`". Bounds written with
/// it (`String: Column<'r, R::Database>`) let one `FromRow` implementation serve both backends.
pub(crate) trait Column<'r, DB: sqlx::Database>:
    sqlx::Decode<'r, DB> + sqlx::Type<DB>
{
}

impl<'r, DB: sqlx::Database, T: sqlx::Decode<'r, DB> + sqlx::Type<DB>> Column<'r, DB> for T {}
