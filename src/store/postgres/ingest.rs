//! PostgreSQL implementation of ingestion (see `store::ingest`): the pool's connection check,
//! one lock-free read, one call of `ledger_ingest_batch` in autocommit. Three round trips,
//! whatever the batch's size.

use std::collections::HashMap;

use sqlx::pool::PoolConnection;
use sqlx::{Postgres, Row as _};

use super::PgStore;
use crate::store::event_log::{Inserted, Logged, APPEND_LOCK};
use crate::store::ingest::{in_entry_order, BatchRead, BatchWrite, Versioned};
use crate::store::read_models::{Key, GENERATION_LOCK};
use crate::store::{Kind, StorageError};

/// SQLSTATE `ledger_ingest_batch` raises when an id it appends was logged concurrently with
/// another body.
const OTHER_BODY: &str = "LG001";

/// One batch's pooled connection. Statements run in autocommit: no transaction is open
/// between the read and the write.
pub struct PgSession {
    conn: PoolConnection<Postgres>,
}

impl PgStore {
    pub(crate) async fn ingest_session(&self) -> Result<PgSession, StorageError> {
        Ok(PgSession {
            conn: self.ingest.acquire().await?,
        })
    }
}

/// The batch's read, one statement and one snapshot: a row tagged 0 for the active generation,
/// 1 per logged id, 2 per stored state of the active generation. The statement is a function
/// (migration 0013) so that its plans are cached, not made again for every batch.
const READ: &str = "SELECT tag, a, n, m, b, c, d FROM ledger_ingest_read($1, $2, $3)";

const WRITE: &str = "SELECT entry_id, entry_position, entry_new, entry_sha FROM ledger_ingest_batch(\
     $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, \
     $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36, $37, $38, $39, $40, $41, $42, $43)";

fn kind_of(text: &str) -> Result<Kind, StorageError> {
    text.parse()
        .map_err(|_| StorageError::invalid(format!("unknown read-model kind {text:?}")))
}

fn key_columns(keys: &[Key]) -> (Vec<&str>, Vec<&str>) {
    keys.iter().map(|(k, id)| (k.as_str(), id.as_str())).unzip()
}

impl PgSession {
    pub(crate) async fn read(
        &mut self,
        event_ids: &[&str],
        keys: &[Key],
    ) -> Result<BatchRead, StorageError> {
        let (kinds, ids) = key_columns(keys);
        let rows = sqlx::query(READ)
            .bind(event_ids)
            .bind(&kinds)
            .bind(&ids)
            .fetch_all(&mut *self.conn)
            .await?;
        let mut read = BatchRead::default();
        for row in rows {
            match row.try_get::<i32, _>("tag")? {
                0 => read.generation = row.try_get("n")?,
                1 => read.logged.push(Logged {
                    event_id: row.try_get("a")?,
                    position: row.try_get("n")?,
                    stripe_created: row.try_get("m")?,
                    event_type: row.try_get("b")?,
                    payload: row.try_get("c")?,
                    raw_body_sha256: row.try_get("d")?,
                }),
                _ => {
                    let kind = kind_of(&row.try_get::<String, _>("b")?)?;
                    read.states.insert(
                        (kind, row.try_get("a")?),
                        Versioned {
                            state: row.try_get("c")?,
                            version: row.try_get("n")?,
                        },
                    );
                }
            }
        }
        Ok(read)
    }

    /// The same function as `read`, for keys alone: it reads the active generation, so a
    /// generation switched since the batch's read is a conflict here already (the write would
    /// refuse it anyway).
    pub(crate) async fn read_states(
        &mut self,
        generation: i64,
        keys: &[Key],
    ) -> Result<HashMap<Key, Versioned>, StorageError> {
        let read = self.read(&[], keys).await?;
        if read.generation != generation {
            return Err(StorageError::conflict(format!(
                "the active generation is {} (the batch read {generation})",
                read.generation
            )));
        }
        Ok(read.states)
    }

    /// One call, in autocommit: committed when it returns. A version or generation check that
    /// fails raises 40001 inside the call, which then rolls back as a whole.
    pub(crate) async fn write(
        &mut self,
        batch: &BatchWrite<'_>,
    ) -> Result<Vec<Inserted>, StorageError> {
        let rows = bind_write(sqlx::query(WRITE), batch)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(other_body)?;
        let mut inserted = HashMap::with_capacity(rows.len());
        for row in rows {
            inserted.insert(
                row.try_get::<String, _>("entry_id")?,
                Inserted {
                    position: row.try_get("entry_position")?,
                    new: row.try_get("entry_new")?,
                    raw_body_sha256: row.try_get("entry_sha")?,
                },
            );
        }
        in_entry_order(&batch.fresh, inserted)
    }
}

/// The concurrent append of one of the batch's ids with another body: the batch is refused
/// (what it projected is not what the log holds) and Stripe's retry projects the logged one.
fn other_body(e: sqlx::Error) -> StorageError {
    if let sqlx::Error::Database(db) = &e {
        if db.code().as_deref() == Some(OTHER_BODY) {
            return StorageError::interrupted(db.message().to_owned());
        }
    }
    e.into()
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// Binds the 43 parameters of `ledger_ingest_batch`, in its order.
fn bind_write<'q>(query: PgQuery<'q>, b: &'q BatchWrite<'_>) -> PgQuery<'q> {
    fn col<'a, T, U>(items: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
        items.iter().map(f).collect()
    }
    let rows = &b.rows;
    let notes = &b.notifications;
    let query = query
        .bind(GENERATION_LOCK)
        .bind(APPEND_LOCK)
        .bind(b.generation)
        .bind(col(rows, |r| r.row.kind.as_str()))
        .bind(col(rows, |r| r.row.id.as_str()))
        .bind(col(rows, |r| r.row.customer_id.as_deref()))
        .bind(col(rows, |r| r.row.user_id.as_deref()))
        .bind(col(rows, |r| r.row.status.as_deref()))
        .bind(col(rows, |r| r.row.state.as_str()))
        .bind(col(rows, |r| r.expected))
        .bind(col(notes, |(n, _)| n.dedupe_key.as_str()))
        .bind(col(notes, |(n, _)| n.kind.as_str()))
        .bind(col(notes, |(n, _)| n.customer.as_str()))
        .bind(col(notes, |(_, event_id)| event_id.as_str()))
        .bind(col(notes, |(n, _)| {
            serde_json::to_string(&n.details).expect("notification details serialise")
        }))
        .bind(b.now);
    let query = bind_entries(query, &b.fresh);
    query
        .bind(&b.projected_ids)
        .bind(&b.projected_logged)
        .bind(col(&b.failed, |f| f.event_id))
        .bind(col(&b.failed, |f| f.position))
        .bind(col(&b.failed, |f| f.error.as_str()))
        .bind(chrono::Utc::now())
        .bind(col(&b.touches, |t| t.kind.as_str()))
        .bind(col(&b.touches, |t| t.object_id.as_str()))
        .bind(col(&b.touches, |t| t.event_id.as_str()))
        .bind(b.unread)
}

/// The 17 event-log columns of the entries to append.
fn bind_entries<'q>(query: PgQuery<'q>, entries: &'q [&crate::event_log::NewEntry]) -> PgQuery<'q> {
    fn col<'a, T>(
        entries: &[&'a crate::event_log::NewEntry],
        f: impl Fn(&'a crate::event_log::NewEntry) -> T,
    ) -> Vec<T> {
        entries.iter().map(|e| f(e)).collect()
    }
    query
        .bind(col(entries, |e| e.envelope.id.as_str()))
        .bind(col(entries, |e| e.envelope.event_type.as_str()))
        .bind(col(entries, |e| e.envelope.api_version.as_deref()))
        .bind(col(entries, |e| e.envelope.livemode))
        .bind(col(entries, |e| e.envelope.account.as_deref()))
        .bind(col(entries, |e| {
            e.envelope.object.as_ref().and_then(|o| o.id.as_deref())
        }))
        .bind(col(entries, |e| {
            e.envelope
                .object
                .as_ref()
                .and_then(|o| o.object_type.as_deref())
        }))
        .bind(col(entries, |e| e.envelope.created))
        .bind(col(entries, |e| e.received_at))
        .bind(col(entries, |e| e.source.as_str()))
        .bind(col(entries, |e| e.payload.as_str()))
        .bind(col(entries, |e| e.payload_redacted))
        .bind(col(entries, |e| e.raw_body_sha256.as_str()))
        .bind(col(entries, |e| {
            e.verification.as_ref().map(|v| v.signature_header.as_str())
        }))
        .bind(col(entries, |e| {
            e.verification.as_ref().map(|v| v.timestamp)
        }))
        .bind(col(entries, |e| {
            e.verification.as_ref().map(|v| v.secret_index as i32)
        }))
        .bind(col(entries, |e| {
            e.verification
                .as_ref()
                .map(|v| v.secret_fingerprint.as_str())
        }))
}
