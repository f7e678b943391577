//! Where read models live: one `read_models` table keyed by (generation, kind, id), the active
//! generation in `projection_meta`, dead letters and checkpoints. Only the projector calls this.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, SqliteConnection};

use crate::store::Db;
use crate::store::StorageError;

/// One read-model row: the fold's state plus the columns the read API filters on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub kind: &'static str,
    pub id: String,
    pub customer_id: Option<String>,
    pub user_id: Option<String>,
    pub status: Option<String>,
    /// JSON of the fold state.
    pub state: String,
}

pub type Key = (&'static str, String);

pub use crate::store::Tx;

/// Key of the PostgreSQL advisory lock that guards the switch of the active generation:
/// ingestion holds it shared for its whole transaction (`Tx::begin_ingest`; it projects before
/// it appends), and a rebuild takes it exclusively to switch, so no batch can project into a
/// generation that is switched away before its entries are appended.
pub const GENERATION_LOCK: i64 = 0x7374_7269_7065_6772;

impl Tx<'_> {
    pub async fn active_generation(&mut self) -> Result<i64, StorageError> {
        const SQL: &str = "SELECT active_generation FROM projection_meta";
        Ok(match self {
            Tx::Postgres(tx) => sqlx::query_scalar(SQL).fetch_one(&mut **tx).await?,
            Tx::Sqlite(tx) => sqlx::query_scalar(SQL).fetch_one(&mut **tx).await?,
        })
    }

    /// Serialises projection per object across instances (PostgreSQL row-independent advisory
    /// locks, taken in one sorted order so two transactions cannot deadlock). SQLite needs
    /// nothing: its transactions already run one at a time.
    pub async fn lock(&mut self, keys: &[Key]) -> Result<(), StorageError> {
        if let Tx::Postgres(tx) = self {
            let mut names: Vec<String> = keys.iter().map(|(k, id)| format!("{k}:{id}")).collect();
            names.sort();
            names.dedup();
            sqlx::query(
                "SELECT pg_advisory_xact_lock(h) FROM \
                 (SELECT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k ORDER BY 1) AS s",
            )
            .bind(&names)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// States of `keys` in `generation` (absent keys are absent from the map).
    pub async fn load(
        &mut self,
        generation: i64,
        keys: &[Key],
    ) -> Result<HashMap<Key, String>, StorageError> {
        let mut found = HashMap::with_capacity(keys.len());
        match self {
            Tx::Postgres(tx) => {
                let kinds: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
                let ids: Vec<&str> = keys.iter().map(|(_, id)| id.as_str()).collect();
                let rows: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT r.kind, r.id, r.state FROM unnest($2::text[], $3::text[]) AS k(kind, id) \
                     JOIN read_models r ON r.generation = $1 AND r.kind = k.kind AND r.id = k.id",
                )
                .bind(generation)
                .bind(&kinds)
                .bind(&ids)
                .fetch_all(&mut **tx)
                .await?;
                for (kind, id, state) in rows {
                    if let Some(key) = keys.iter().find(|(k, i)| *k == kind && *i == id) {
                        found.insert(key.clone(), state);
                    }
                }
            }
            Tx::Sqlite(tx) => {
                for key in keys {
                    let state: Option<String> = sqlx::query_scalar(
                        "SELECT state FROM read_models WHERE generation = $1 AND kind = $2 AND id = $3",
                    )
                    .bind(generation)
                    .bind(key.0)
                    .bind(&key.1)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if let Some(state) = state {
                        found.insert(key.clone(), state);
                    }
                }
            }
        }
        Ok(found)
    }

    pub async fn upsert(&mut self, generation: i64, rows: &[Row]) -> Result<(), StorageError> {
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            Tx::Postgres(tx) => upsert_postgres(tx, generation, rows).await,
            Tx::Sqlite(tx) => upsert_sqlite(tx, generation, rows).await,
        }
    }

    pub async fn max_generation(&mut self) -> Result<i64, StorageError> {
        const SQL: &str = "SELECT MAX(g) FROM (SELECT MAX(generation) AS g FROM read_models \
                           UNION ALL SELECT active_generation FROM projection_meta) AS gs";
        Ok(match self {
            Tx::Postgres(tx) => {
                sqlx::query_scalar::<_, Option<i64>>(SQL)
                    .fetch_one(&mut **tx)
                    .await?
            }
            Tx::Sqlite(tx) => {
                sqlx::query_scalar::<_, Option<i64>>(SQL)
                    .fetch_one(&mut **tx)
                    .await?
            }
        }
        .unwrap_or(1))
    }

    pub async fn delete_generation(&mut self, generation: i64) -> Result<(), StorageError> {
        const SQL: &str = "DELETE FROM read_models WHERE generation = $1";
        match self {
            Tx::Postgres(tx) => sqlx::query(SQL).bind(generation).execute(&mut **tx).await?,
            Tx::Sqlite(tx) => {
                sqlx::query(SQL).bind(generation).execute(&mut **tx).await?;
                return Ok(());
            }
        };
        Ok(())
    }

    /// Carries the kinds a partial rebuild did not touch over from `from` to `to`.
    pub async fn copy_kinds(
        &mut self,
        from: i64,
        to: i64,
        rebuilt: &std::collections::BTreeSet<&'static str>,
    ) -> Result<(), StorageError> {
        for kind in ledger_projections::KINDS {
            if rebuilt.contains(kind) {
                continue;
            }
            const SQL: &str = "INSERT INTO read_models (generation, kind, id, customer_id, user_id, status, state) \
                 SELECT $2, kind, id, customer_id, user_id, status, state FROM read_models \
                 WHERE generation = $1 AND kind = $3";
            match self {
                Tx::Postgres(tx) => {
                    sqlx::query(SQL)
                        .bind(from)
                        .bind(to)
                        .bind(kind)
                        .execute(&mut **tx)
                        .await?;
                }
                Tx::Sqlite(tx) => {
                    sqlx::query(SQL)
                        .bind(from)
                        .bind(to)
                        .bind(kind)
                        .execute(&mut **tx)
                        .await?;
                }
            }
        }
        Ok(())
    }

    pub async fn switch_generation(&mut self, generation: i64) -> Result<(), StorageError> {
        const SQL: &str = "UPDATE projection_meta SET active_generation = $1";
        match self {
            Tx::Postgres(tx) => {
                sqlx::query(SQL).bind(generation).execute(&mut **tx).await?;
            }
            Tx::Sqlite(tx) => {
                sqlx::query(SQL).bind(generation).execute(&mut **tx).await?;
            }
        }
        Ok(())
    }

    /// Every row of a generation: (kind, id) → state.
    pub async fn all_rows(
        &mut self,
        generation: i64,
    ) -> Result<std::collections::BTreeMap<(String, String), String>, StorageError> {
        const SQL: &str = "SELECT kind, id, state FROM read_models WHERE generation = $1";
        let rows: Vec<(String, String, String)> = match self {
            Tx::Postgres(tx) => {
                sqlx::query_as(SQL)
                    .bind(generation)
                    .fetch_all(&mut **tx)
                    .await?
            }
            Tx::Sqlite(tx) => {
                sqlx::query_as(SQL)
                    .bind(generation)
                    .fetch_all(&mut **tx)
                    .await?
            }
        };
        Ok(rows.into_iter().map(|(k, i, s)| ((k, i), s)).collect())
    }

    /// Records (or counts again) a projection failure inside the transaction.
    pub async fn record_dead_letter(
        &mut self,
        event_id: &str,
        position: i64,
        error: &str,
    ) -> Result<(), StorageError> {
        let now = Utc::now();
        match self {
            Tx::Postgres(tx) => {
                sqlx::query(DEAD_LETTER_UPSERT)
                    .bind(event_id)
                    .bind(position)
                    .bind(error)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
            }
            Tx::Sqlite(tx) => {
                sqlx::query(DEAD_LETTER_UPSERT)
                    .bind(event_id)
                    .bind(position)
                    .bind(error)
                    .bind(now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    /// Records that these log entries are projected and clears their dead letters.
    pub async fn mark_projected(
        &mut self,
        positions: &[i64],
        event_ids: &[&str],
    ) -> Result<(), StorageError> {
        match self {
            Tx::Postgres(tx) => {
                sqlx::query(
                    "INSERT INTO projected_positions (position) SELECT unnest($1::int8[]) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(positions)
                .execute(&mut **tx)
                .await?;
                sqlx::query("DELETE FROM dead_letters WHERE event_id = ANY($1)")
                    .bind(event_ids)
                    .execute(&mut **tx)
                    .await?;
            }
            Tx::Sqlite(tx) => {
                for position in positions {
                    sqlx::query(
                        "INSERT INTO projected_positions (position) VALUES ($1) ON CONFLICT DO NOTHING",
                    )
                    .bind(position)
                    .execute(&mut **tx)
                    .await?;
                }
                for id in event_ids {
                    sqlx::query("DELETE FROM dead_letters WHERE event_id = $1")
                        .bind(id)
                        .execute(&mut **tx)
                        .await?;
                }
            }
        }
        Ok(())
    }
}

async fn upsert_postgres(
    tx: &mut PgConnection,
    generation: i64,
    rows: &[Row],
) -> Result<(), StorageError> {
    let col = |f: fn(&Row) -> Option<&str>| rows.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO read_models (generation, kind, id, customer_id, user_id, status, state) \
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) \
         ON CONFLICT (generation, kind, id) DO UPDATE SET customer_id = excluded.customer_id, \
         user_id = excluded.user_id, status = excluded.status, state = excluded.state",
    )
    .bind(generation)
    .bind(col(|r| Some(r.kind)))
    .bind(col(|r| Some(r.id.as_str())))
    .bind(col(|r| r.customer_id.as_deref()))
    .bind(col(|r| r.user_id.as_deref()))
    .bind(col(|r| r.status.as_deref()))
    .bind(col(|r| Some(r.state.as_str())))
    .execute(tx)
    .await?;
    Ok(())
}

async fn upsert_sqlite(
    tx: &mut SqliteConnection,
    generation: i64,
    rows: &[Row],
) -> Result<(), StorageError> {
    for r in rows {
        sqlx::query(
            "INSERT INTO read_models (generation, kind, id, customer_id, user_id, status, state) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (generation, kind, id) DO UPDATE SET customer_id = excluded.customer_id, \
             user_id = excluded.user_id, status = excluded.status, state = excluded.state",
        )
        .bind(generation)
        .bind(r.kind)
        .bind(&r.id)
        .bind(&r.customer_id)
        .bind(&r.user_id)
        .bind(&r.status)
        .bind(&r.state)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

const DEAD_LETTER_UPSERT: &str = "INSERT INTO dead_letters \
     (event_id, position, error, attempts, first_seen_at, last_seen_at) \
     VALUES ($1, $2, $3, 1, $4, $4) \
     ON CONFLICT (event_id) DO UPDATE SET error = excluded.error, \
     attempts = dead_letters.attempts + 1, last_seen_at = excluded.last_seen_at";

/// A logged event that could not be projected.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub event_id: String,
    pub position: i64,
    pub error: String,
    pub attempts: i32,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// Records (or counts again) a projection failure, outside any failed transaction.
pub async fn record_dead_letter(
    db: &Db,
    event_id: &str,
    position: i64,
    error: &str,
) -> Result<(), StorageError> {
    let now = Utc::now();
    const SQL: &str = DEAD_LETTER_UPSERT;
    match db {
        Db::Postgres(crate::store::PgStore { pool }) => {
            sqlx::query(SQL)
                .bind(event_id)
                .bind(position)
                .bind(error)
                .bind(now)
                .execute(pool)
                .await?;
        }
        Db::Sqlite(db) => {
            sqlx::query(SQL)
                .bind(event_id)
                .bind(position)
                .bind(error)
                .bind(now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
                .execute(&db.write)
                .await?;
        }
    }
    Ok(())
}

pub async fn dead_letters(db: &Db) -> Result<Vec<DeadLetter>, StorageError> {
    const SQL: &str = "SELECT event_id, position, error, attempts, first_seen_at, last_seen_at \
                       FROM dead_letters ORDER BY position";
    type DeadLetterRow = (String, i64, String, i32, DateTime<Utc>, DateTime<Utc>);
    let rows: Vec<DeadLetterRow> = match db {
        Db::Postgres(crate::store::PgStore { pool }) => sqlx::query_as(SQL).fetch_all(pool).await?,
        Db::Sqlite(db) => sqlx::query_as(SQL).fetch_all(&db.read).await?,
    };
    Ok(rows
        .into_iter()
        .map(
            |(event_id, position, error, attempts, first_seen_at, last_seen_at)| DeadLetter {
                event_id,
                position,
                error,
                attempts,
                first_seen_at,
                last_seen_at,
            },
        )
        .collect())
}

/// One page of dead letters by log position, after `after_position`; the second value is the
/// position to continue after when there is more.
pub async fn dead_letters_page(
    db: &Db,
    after_position: Option<i64>,
    limit: u32,
) -> Result<(Vec<DeadLetter>, Option<i64>), StorageError> {
    let sql = format!(
        "SELECT event_id, position, error, attempts, first_seen_at, last_seen_at \
         FROM dead_letters WHERE position > $1 ORDER BY position LIMIT {}",
        u64::from(limit) + 1
    );
    type DeadLetterRow = (String, i64, String, i32, DateTime<Utc>, DateTime<Utc>);
    let after = after_position.unwrap_or(-1);
    let rows: Vec<DeadLetterRow> = match db {
        Db::Postgres(crate::store::PgStore { pool }) => {
            sqlx::query_as(&sql).bind(after).fetch_all(pool).await?
        }
        Db::Sqlite(db) => sqlx::query_as(&sql).bind(after).fetch_all(&db.read).await?,
    };
    let mut letters: Vec<DeadLetter> = rows
        .into_iter()
        .map(
            |(event_id, position, error, attempts, first_seen_at, last_seen_at)| DeadLetter {
                event_id,
                position,
                error,
                attempts,
                first_seen_at,
                last_seen_at,
            },
        )
        .collect();
    let more = letters.len() > limit as usize;
    letters.truncate(limit as usize);
    let next = if more {
        letters.last().map(|d| d.position)
    } else {
        None
    };
    Ok((letters, next))
}

pub async fn is_dead_letter(db: &Db, event_id: &str) -> Result<bool, StorageError> {
    const SQL: &str = "SELECT count(*) FROM dead_letters WHERE event_id = $1";
    let n: i64 = match db {
        Db::Postgres(crate::store::PgStore { pool }) => {
            sqlx::query_scalar(SQL)
                .bind(event_id)
                .fetch_one(pool)
                .await?
        }
        Db::Sqlite(db) => {
            sqlx::query_scalar(SQL)
                .bind(event_id)
                .fetch_one(&db.read)
                .await?
        }
    };
    Ok(n > 0)
}
