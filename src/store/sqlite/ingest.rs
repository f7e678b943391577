//! SQLite implementation of ingestion (see `store::ingest`): one transaction on the single
//! writer connection, one statement per table. Every batch is bound as a JSON array read with
//! `json_each`, so a statement's text never depends on the batch's size and sqlx reuses its
//! prepared form on the connection.
//!
//! The read's statements go to sqlx's SQLite worker thread as one request, and so do the
//! write's: a request is a hand-over to that thread and back, and at one event per batch those
//! hand-overs (eleven per batch when each statement was its own) were a fifth of the service's
//! CPU per event (docs/adr/0016). A batch makes two: `BEGIN IMMEDIATE` goes with the read and
//! `COMMIT` with the write.

use std::collections::{HashMap, HashSet};

use serde_json::json;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow as _, Row as _, Sqlite};

use super::{timestamp, SqliteStore};
use crate::store::common::event_log::logged_columns;
use crate::store::event_log::{Inserted, Logged};
use crate::store::ingest::{in_entry_order, BatchRead, BatchWrite, Versioned};
use crate::store::read_models::Key;
use crate::store::{Kind, StorageError};

/// The batch's transaction on the writer connection (`BEGIN IMMEDIATE`): nothing else writes
/// until it ends, so what it read is still true when it writes.
///
/// The transaction is begun by the read's request and committed by the write's, so sqlx's
/// `Transaction` (a request of its own for each) is not used. A session dropped with its
/// transaction possibly open (an error, a cancelled batch) closes the connection instead of
/// returning it to the pool: closing rolls back, and the pool opens a fresh writer.
pub struct SqliteSession {
    conn: PoolConnection<Sqlite>,
    /// `BEGIN` was sent and no `COMMIT` has been acknowledged.
    open: bool,
}

impl Drop for SqliteSession {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

impl SqliteStore {
    pub(crate) async fn ingest_session(&self) -> Result<SqliteSession, StorageError> {
        Ok(SqliteSession {
            conn: self.write.acquire().await?,
            open: false,
        })
    }
}

/// The batch's read: `BEGIN IMMEDIATE` and three statements in one request, each row tagged with
/// the part it answers: 0 the active generation, 1 a logged id, 2 a stored state of the active
/// generation.
const READ: &str = concat!(
    "BEGIN IMMEDIATE; ",
    "SELECT 0 AS tag, active_generation FROM projection_meta; ",
    "SELECT 1 AS tag, ",
    logged_columns!(),
    " FROM event_log WHERE event_id IN (SELECT value FROM json_each($1)); ",
    "SELECT 2 AS tag, r.kind, r.id, r.state, r.version FROM json_each($2) AS k \
     CROSS JOIN read_models r \
     ON r.generation = (SELECT active_generation FROM projection_meta) \
     AND r.kind = json_extract(k.value, '$[0]') AND r.id = json_extract(k.value, '$[1]')"
);

/// `CROSS JOIN` makes the keys the outer loop (SQLite keeps the written order for it): with a
/// plain join the planner, which cannot size `json_each`, scans the whole generation per batch.
const STATES: &str = "SELECT r.kind, r.id, r.state, r.version FROM json_each($2) AS k \
     CROSS JOIN read_models r ON r.generation = $1 AND r.kind = json_extract(k.value, '$[0]') \
     AND r.id = json_extract(k.value, '$[1]')";

/// The batch's write: ten statements in one request, in this order, their parameters numbered
/// across all of them. A part with nothing to write reads an empty array and writes nothing.
///
/// 1. the read models (`$1` generation, `$2` rows), only where the version is the one read;
///    unless that wrote all `$12` rows, the next statement fails on purpose (SQLite has no
///    `RAISE` outside triggers: a malformed JSON path naming [`CHANGED_SINCE_READ`]), so the
///    request stops before `COMMIT` and the batch is folded again;
/// 2. the outbox (`$3` rows, `$4` now);
/// 3. the append (`$5` entries, each with its payload's SHA-256 in hex for
///    `payload_sha256`, docs/adr/0032), which returns the positions; unless it appended all `$13`
///    entries, the next statement fails the request the same way (an id taken for new that is
///    logged: only possible in a write without a read, see [`WRITE_UNREAD`]);
/// 4. projected positions: the logged entries projected again (`$6`) and the appended ones
///    projected (`$7` ids);
/// 5. dead letters of the projected ids cleared (`$8`);
/// 6. dead letters recorded (`$9` rows of id, position or null for an appended entry, error;
///    `$10` now);
/// 7. the objects each projected entry touched (`$11`);
/// 8. `COMMIT`.
///
/// The largest texts of a batch of one, its entry's payload and its first read model's state,
/// are bound on their own (`$14`, `$15`) and read for the array's element 0: in the arrays
/// they would be escaped by the service, then parsed and unescaped again by SQLite, which
/// for a payload of a few kilobytes was the largest part of the JSON work a one-event batch
/// does (README, "Performance").
///
/// `WHERE true` tells SQLite's parser that `ON CONFLICT` is the upsert, not a join constraint.
/// `CROSS JOIN` keeps the batch's array the outer loop (see `STATES`).
macro_rules! write_sql {
    () => {
        "\
        INSERT INTO read_models (generation, kind, id, customer_id, user_id, status, state, version) \
            SELECT $1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
            json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), \
            CASE WHEN key = 0 THEN $15 ELSE json_extract(value, '$[5]') END, \
            json_extract(value, '$[6]') + 1 FROM json_each($2) WHERE true \
            ON CONFLICT (generation, kind, id) DO UPDATE SET customer_id = excluded.customer_id, \
            user_id = excluded.user_id, status = excluded.status, state = excluded.state, \
            version = excluded.version WHERE read_models.version + 1 = excluded.version; \
        SELECT CASE WHEN changes() = $12 THEN 0 \
            ELSE json_extract('{}', 'read_models_changed_since_read') END AS upserted; \
        INSERT INTO outbox (dedupe_key, kind, customer_id, event_id, details, status, attempts, \
            next_attempt_at, created_at) \
            SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
            json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), \
            'pending', 0, $4, $4 FROM json_each($3) WHERE true ON CONFLICT (dedupe_key) DO NOTHING; \
        INSERT INTO event_log (event_id, event_type, api_version, livemode, account, object_id, \
            object_type, stripe_created, received_at, source, payload, payload_redacted, \
            raw_body_sha256, signature_header, signature_timestamp, verified_by_index, \
            verified_by_fingerprint, payload_sha256) \
            SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
            json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), \
            json_extract(value, '$[5]'), json_extract(value, '$[6]'), json_extract(value, '$[7]'), \
            json_extract(value, '$[8]'), json_extract(value, '$[9]'), \
            CASE WHEN key = 0 THEN $14 ELSE json_extract(value, '$[10]') END, \
            json_extract(value, '$[11]'), json_extract(value, '$[12]'), json_extract(value, '$[13]'), \
            json_extract(value, '$[14]'), json_extract(value, '$[15]'), json_extract(value, '$[16]'), \
            unhex(json_extract(value, '$[17]')) \
            FROM json_each($5) WHERE true ORDER BY key \
            ON CONFLICT (event_id) DO NOTHING RETURNING event_id, position, raw_body_sha256; \
        SELECT CASE WHEN changes() = $13 THEN 0 \
            ELSE json_extract('{}', 'entry_logged_before_the_write') END AS appended; \
        INSERT INTO projected_positions (position) \
            SELECT position FROM ( \
                SELECT value AS position FROM json_each($6) \
                UNION ALL \
                SELECT l.position FROM json_each($7) AS p CROSS JOIN event_log l ON l.event_id = p.value \
            ) WHERE true ON CONFLICT DO NOTHING; \
        DELETE FROM dead_letters WHERE event_id IN (SELECT value FROM json_each($8)); \
        INSERT INTO dead_letters (event_id, position, error, attempts, first_seen_at, last_seen_at) \
            SELECT json_extract(f.value, '$[0]'), \
            coalesce(json_extract(f.value, '$[1]'), \
                (SELECT l.position FROM event_log l WHERE l.event_id = json_extract(f.value, '$[0]'))), \
            json_extract(f.value, '$[2]'), 1, $10, $10 FROM json_each($9) AS f WHERE true \
            ON CONFLICT (event_id) DO UPDATE SET error = excluded.error, \
            attempts = dead_letters.attempts + 1, last_seen_at = excluded.last_seen_at; \
        INSERT INTO object_touches (kind, object_id, position) \
            SELECT json_extract(t.value, '$[0]'), json_extract(t.value, '$[1]'), l.position \
            FROM json_each($11) AS t CROSS JOIN event_log l ON l.event_id = json_extract(t.value, '$[2]') \
            WHERE true ON CONFLICT DO NOTHING; \
        COMMIT"
    };
}
const WRITE: &str = write_sql!();

/// The write of a batch folded from the writer's memory instead of a read (docs/adr/0024): the
/// same request, after `BEGIN IMMEDIATE` and a check that `$1` is still the active generation.
const WRITE_UNREAD: &str = concat!(
    "BEGIN IMMEDIATE; ",
    "SELECT CASE WHEN (SELECT active_generation FROM projection_meta) = $1 THEN 0 \
     ELSE json_extract('{}', 'generation_changed_since_read') END AS generation; ",
    write_sql!()
);

/// Named by the statements that fail the write when what it was folded from no longer holds.
const CHANGED_SINCE_READ: [&str; 3] = [
    "read_models_changed_since_read",
    "entry_logged_before_the_write",
    "generation_changed_since_read",
];

fn keys_json(keys: &[Key]) -> String {
    let keys: Vec<(&str, &str)> = keys
        .iter()
        .map(|(k, id)| (k.as_str(), id.as_str()))
        .collect();
    serde_json::to_string(&keys).expect("keys serialise")
}

fn kind_of(text: &str) -> Result<Kind, StorageError> {
    text.parse()
        .map_err(|_| StorageError::invalid(format!("unknown read-model kind {text:?}")))
}

fn versioned(row: &SqliteRow) -> Result<(Key, Versioned), StorageError> {
    let kind = kind_of(&row.try_get::<String, _>("kind")?)?;
    Ok((
        (kind, row.try_get("id")?),
        Versioned {
            state: row.try_get("state")?,
            version: row.try_get("version")?,
        },
    ))
}

impl SqliteSession {
    /// One request: begins the batch's transaction and reads the generation, the logged ids and
    /// the states.
    pub(crate) async fn read(
        &mut self,
        event_ids: &[&str],
        keys: &[Key],
    ) -> Result<BatchRead, StorageError> {
        self.open = true;
        let rows = sqlx::query(READ)
            .bind(serde_json::to_string(event_ids).expect("ids serialise"))
            .bind(keys_json(keys))
            .fetch_all(&mut *self.conn)
            .await?;
        let mut read = BatchRead::default();
        for row in rows {
            match row.try_get::<i64, _>("tag")? {
                0 => read.generation = row.try_get("active_generation")?,
                1 => read.logged.push(Logged::from_row(&row)?),
                _ => {
                    let (key, state) = versioned(&row)?;
                    read.states.insert(key, state);
                }
            }
        }
        Ok(read)
    }

    pub(crate) async fn read_states(
        &mut self,
        generation: i64,
        keys: &[Key],
    ) -> Result<HashMap<Key, Versioned>, StorageError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = sqlx::query(STATES)
            .bind(generation)
            .bind(keys_json(keys))
            .fetch_all(&mut *self.conn)
            .await?;
        rows.iter().map(versioned).collect()
    }

    /// One request for the whole write and its commit (and, unread, its `BEGIN`): committed
    /// when this returns `Ok`, and rolled back (the session closes its connection) otherwise.
    pub(crate) async fn write(
        &mut self,
        batch: &BatchWrite<'_>,
    ) -> Result<Vec<Inserted>, StorageError> {
        if batch.unread {
            self.open = true;
        }
        let sql = if batch.unread { WRITE_UNREAD } else { WRITE };
        let query = sqlx::query(sql)
            .bind(batch.generation)
            .bind(read_model_rows(batch))
            .bind(outbox_rows(batch))
            .bind(batch.now)
            .bind(entry_rows(batch))
            .bind(json!(batch.projected_logged).to_string())
            .bind(projected_fresh_ids(batch))
            .bind(json!(batch.projected_ids).to_string())
            .bind(dead_letter_rows(batch))
            .bind(timestamp(chrono::Utc::now()))
            .bind(touch_rows(batch))
            .bind(batch.rows.len() as i64)
            .bind(batch.fresh.len() as i64)
            .bind(batch.fresh.first().map(|e| e.payload.as_str()))
            .bind(batch.rows.first().map(|r| r.row.state.as_str()));
        let rows = match query.fetch_all(&mut *self.conn).await {
            Ok(rows) => rows,
            Err(e) => {
                let e = changed_since_read(e);
                if e.is_conflict() {
                    self.roll_back().await;
                }
                return Err(e);
            }
        };
        self.open = false;
        let mut inserted = HashMap::with_capacity(batch.fresh.len());
        for row in rows.iter().filter(|row| row.columns().len() > 1) {
            inserted.insert(
                row.try_get::<String, _>("event_id")?,
                Inserted {
                    position: row.try_get("position")?,
                    new: true,
                    raw_body_sha256: row.try_get("raw_body_sha256")?,
                },
            );
        }
        // Every fresh id is new: the read ran in this transaction on the only writer, or the
        // write checked it (unread).
        in_entry_order(&batch.fresh, inserted)
    }
}

impl SqliteSession {
    /// Ends a transaction whose write was refused, keeping the connection: the batch is read
    /// and written again on it. Closing it instead (what a failed `ROLLBACK` still leads to)
    /// cost a new connection and its prepared statements.
    async fn roll_back(&mut self) {
        if sqlx::query("ROLLBACK")
            .execute(&mut *self.conn)
            .await
            .is_ok()
        {
            self.open = false;
        }
    }

    /// Whether the next batch may use this session: no transaction of its own is left open.
    pub(crate) fn reusable(&self) -> bool {
        !self.open
    }
}

/// The write's checks failing (see [`WRITE`]) is a conflict: read and fold again.
fn changed_since_read(e: sqlx::Error) -> StorageError {
    if let sqlx::Error::Database(db) = &e {
        if let Some(what) = CHANGED_SINCE_READ
            .iter()
            .find(|w| db.message().contains(**w))
        {
            return StorageError::conflict(format!("the batch's write was refused: {what}"));
        }
    }
    e.into()
}

/// A part of the batch as the JSON array of rows its statement reads with `json_each`.
fn json_rows<T>(
    items: impl IntoIterator<Item = T>,
    row: impl FnMut(T) -> serde_json::Value,
) -> String {
    serde_json::Value::Array(items.into_iter().map(row).collect()).to_string()
}

fn read_model_rows(batch: &BatchWrite<'_>) -> String {
    json_rows(batch.rows.iter().enumerate(), |(i, r)| {
        json!([
            r.row.kind.as_str(),
            r.row.id,
            r.row.customer_id,
            r.row.user_id,
            r.row.status,
            // The first row's state is bound on its own (`$15`).
            (i > 0).then_some(&r.row.state),
            r.expected
        ])
    })
}

fn outbox_rows(batch: &BatchWrite<'_>) -> String {
    json_rows(&batch.notifications, |(n, event_id)| {
        json!([
            n.dedupe_key,
            n.kind.as_str(),
            n.customer,
            event_id,
            serde_json::to_string(&n.details).expect("notification details serialise"),
        ])
    })
}

fn entry_rows(batch: &BatchWrite<'_>) -> String {
    json_rows(batch.fresh.iter().enumerate(), |(i, e)| {
        let env = &e.envelope;
        let object = env.object.as_ref();
        let v = e.verification.as_ref();
        json!([
            env.id,
            env.event_type,
            env.api_version,
            env.livemode,
            env.account,
            object.and_then(|o| o.id.as_deref()),
            object.and_then(|o| o.object_type.as_deref()),
            env.created,
            timestamp(e.received_at),
            e.source.as_str(),
            // The first entry's payload is bound on its own (`$14`).
            (i > 0).then_some(&e.payload),
            e.payload_redacted,
            e.raw_body_sha256,
            v.map(|v| v.signature_header.as_str()),
            v.map(|v| v.timestamp),
            v.map(|v| v.secret_index as i32),
            v.map(|v| v.secret_fingerprint.as_str()),
            hex::encode(e.payload_sha256()),
        ])
    })
}

/// The projected ids this batch appends (the logged ones come by position).
fn projected_fresh_ids(batch: &BatchWrite<'_>) -> String {
    let fresh: HashSet<&str> = batch.fresh.iter().map(|e| e.envelope.id.as_str()).collect();
    let ids: Vec<&str> = batch
        .projected_ids
        .iter()
        .copied()
        .filter(|id| fresh.contains(id))
        .collect();
    json!(ids).to_string()
}

fn dead_letter_rows(batch: &BatchWrite<'_>) -> String {
    json_rows(&batch.failed, |f| json!([f.event_id, f.position, f.error]))
}

fn touch_rows(batch: &BatchWrite<'_>) -> String {
    json_rows(&batch.touches, |t| {
        json!([t.kind.as_str(), t.object_id, t.event_id])
    })
}
