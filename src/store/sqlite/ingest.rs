//! SQLite implementation of ingestion (see `store::ingest`): one transaction on the single
//! writer connection, one statement per table. Every batch is bound as a JSON array read with
//! `json_each`, so a statement's text never depends on the batch's size and sqlx reuses its
//! prepared form on the connection.

use std::collections::HashMap;

use serde_json::json;
use sqlx::Row as _;

use super::{timestamp, SqliteStore, SqliteTx};
use crate::store::common::event_log::logged_columns;
use crate::store::event_log::{Inserted, Logged};
use crate::store::ingest::{in_entry_order, BatchRead, BatchWrite, Versioned};
use crate::store::read_models::Key;
use crate::store::{Kind, StorageError};

/// The batch's transaction on the writer (`BEGIN IMMEDIATE`): nothing else writes until it
/// ends, so what it read is still true when it writes.
pub struct SqliteSession {
    tx: SqliteTx<'static>,
}

impl SqliteStore {
    pub(crate) async fn ingest_session(&self) -> Result<SqliteSession, StorageError> {
        Ok(SqliteSession {
            tx: self.begin().await?,
        })
    }
}

const LOGGED: &str = concat!(
    "SELECT ",
    logged_columns!(),
    " FROM event_log WHERE event_id IN (SELECT value FROM json_each($1))"
);

/// `CROSS JOIN` makes the keys the outer loop (SQLite keeps the written order for it): with a
/// plain join the planner, which cannot size `json_each`, scans the whole generation per batch.
const STATES: &str = "SELECT r.kind, r.id, r.state, r.version FROM json_each($2) AS k \
     CROSS JOIN read_models r ON r.generation = $1 AND r.kind = json_extract(k.value, '$[0]') \
     AND r.id = json_extract(k.value, '$[1]')";

/// `WHERE true` tells SQLite's parser that `ON CONFLICT` is the upsert, not a join constraint.
const UPSERT: &str = "INSERT INTO read_models \
     (generation, kind, id, customer_id, user_id, status, state, version) \
     SELECT $1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
     json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), \
     json_extract(value, '$[5]'), json_extract(value, '$[6]') + 1 FROM json_each($2) WHERE true \
     ON CONFLICT (generation, kind, id) DO UPDATE SET customer_id = excluded.customer_id, \
     user_id = excluded.user_id, status = excluded.status, state = excluded.state, \
     version = excluded.version WHERE read_models.version + 1 = excluded.version";

const ENQUEUE: &str = "INSERT INTO outbox (dedupe_key, kind, customer_id, event_id, details, \
     status, attempts, next_attempt_at, created_at) \
     SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
     json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), \
     'pending', 0, $2, $2 FROM json_each($1) WHERE true ON CONFLICT (dedupe_key) DO NOTHING";

const APPEND: &str = "INSERT INTO event_log (event_id, event_type, api_version, livemode, \
     account, object_id, object_type, stripe_created, received_at, source, payload, \
     payload_redacted, raw_body_sha256, signature_header, signature_timestamp, \
     verified_by_index, verified_by_fingerprint) \
     SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
     json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), \
     json_extract(value, '$[5]'), json_extract(value, '$[6]'), json_extract(value, '$[7]'), \
     json_extract(value, '$[8]'), json_extract(value, '$[9]'), json_extract(value, '$[10]'), \
     json_extract(value, '$[11]'), json_extract(value, '$[12]'), json_extract(value, '$[13]'), \
     json_extract(value, '$[14]'), json_extract(value, '$[15]'), json_extract(value, '$[16]') \
     FROM json_each($1) WHERE true ORDER BY key \
     ON CONFLICT (event_id) DO NOTHING RETURNING event_id, position, raw_body_sha256";

const MARK: &str = "INSERT INTO projected_positions (position) \
     SELECT value FROM json_each($1) WHERE true ON CONFLICT DO NOTHING";

const HEAL: &str = "DELETE FROM dead_letters WHERE event_id IN (SELECT value FROM json_each($1))";

const DEAD_LETTERS: &str = "INSERT INTO dead_letters \
     (event_id, position, error, attempts, first_seen_at, last_seen_at) \
     SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
     json_extract(value, '$[2]'), 1, $2, $2 FROM json_each($1) WHERE true \
     ON CONFLICT (event_id) DO UPDATE SET error = excluded.error, \
     attempts = dead_letters.attempts + 1, last_seen_at = excluded.last_seen_at";

fn keys_json(keys: &[Key]) -> String {
    let keys: Vec<(&str, &str)> = keys
        .iter()
        .map(|(k, id)| (k.as_str(), id.as_str()))
        .collect();
    serde_json::to_string(&keys).expect("keys serialise")
}

impl SqliteSession {
    pub(crate) async fn read(
        &mut self,
        event_ids: &[&str],
        keys: &[Key],
    ) -> Result<BatchRead, StorageError> {
        let generation: i64 =
            sqlx::query_scalar(crate::store::common::read_models::ACTIVE_GENERATION)
                .fetch_one(&mut *self.tx)
                .await?;
        let logged: Vec<Logged> = sqlx::query_as(LOGGED)
            .bind(serde_json::to_string(event_ids).expect("ids serialise"))
            .fetch_all(&mut *self.tx)
            .await?;
        let states = self.read_states(generation, keys).await?;
        Ok(BatchRead {
            generation,
            logged,
            states,
        })
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
            .fetch_all(&mut *self.tx)
            .await?;
        let mut states = HashMap::with_capacity(rows.len());
        for row in rows {
            let kind: String = row.try_get("kind")?;
            let kind: Kind = kind
                .parse()
                .map_err(|_| StorageError::invalid(format!("unknown read-model kind {kind:?}")))?;
            states.insert(
                (kind, row.try_get("id")?),
                Versioned {
                    state: row.try_get("state")?,
                    version: row.try_get("version")?,
                },
            );
        }
        Ok(states)
    }

    pub(crate) async fn write(
        &mut self,
        batch: &BatchWrite<'_>,
    ) -> Result<Vec<Inserted>, StorageError> {
        self.upsert(batch).await?;
        if !batch.notifications.is_empty() {
            let rows: Vec<_> = batch
                .notifications
                .iter()
                .map(|(n, event_id)| {
                    json!([
                        n.dedupe_key,
                        n.kind.as_str(),
                        n.customer,
                        event_id,
                        serde_json::to_string(&n.details).expect("notification details serialise"),
                    ])
                })
                .collect();
            sqlx::query(ENQUEUE)
                .bind(json!(rows).to_string())
                .bind(batch.now)
                .execute(&mut *self.tx)
                .await?;
        }
        let inserted = self.append(batch).await?;
        self.mark(batch, &inserted).await?;
        super::history::record_touches_by_event(&mut self.tx, &batch.touches).await?;
        Ok(inserted)
    }

    async fn upsert(&mut self, batch: &BatchWrite<'_>) -> Result<(), StorageError> {
        if batch.rows.is_empty() {
            return Ok(());
        }
        let rows: Vec<_> = batch
            .rows
            .iter()
            .map(|r| {
                json!([
                    r.row.kind.as_str(),
                    r.row.id,
                    r.row.customer_id,
                    r.row.user_id,
                    r.row.status,
                    r.row.state,
                    r.expected
                ])
            })
            .collect();
        let written = sqlx::query(UPSERT)
            .bind(batch.generation)
            .bind(json!(rows).to_string())
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        if written != batch.rows.len() as u64 {
            return Err(StorageError::conflict(format!(
                "read models changed since the batch read them ({written} of {} written)",
                batch.rows.len()
            )));
        }
        Ok(())
    }

    async fn append(&mut self, batch: &BatchWrite<'_>) -> Result<Vec<Inserted>, StorageError> {
        if batch.fresh.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<_> = batch
            .fresh
            .iter()
            .map(|e| {
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
                    e.payload,
                    e.payload_redacted,
                    e.raw_body_sha256,
                    v.map(|v| v.signature_header.as_str()),
                    v.map(|v| v.timestamp),
                    v.map(|v| v.secret_index as i32),
                    v.map(|v| v.secret_fingerprint.as_str()),
                ])
            })
            .collect();
        let appended = sqlx::query(APPEND)
            .bind(json!(rows).to_string())
            .fetch_all(&mut *self.tx)
            .await?;
        let mut inserted = HashMap::with_capacity(appended.len());
        for row in appended {
            inserted.insert(
                row.try_get::<String, _>("event_id")?,
                Inserted {
                    position: row.try_get("position")?,
                    new: true,
                    raw_body_sha256: row.try_get("raw_body_sha256")?,
                },
            );
        }
        // The read ran in this transaction on the only writer: every fresh id is new.
        in_entry_order(&batch.fresh, inserted)
    }

    /// Projected positions, healed and new dead letters, now that positions are known.
    async fn mark(
        &mut self,
        batch: &BatchWrite<'_>,
        inserted: &[Inserted],
    ) -> Result<(), StorageError> {
        let position_of: HashMap<&str, i64> = batch
            .fresh
            .iter()
            .zip(inserted)
            .map(|(e, i)| (e.envelope.id.as_str(), i.position))
            .collect();
        let mut positions = batch.projected_logged.clone();
        for id in &batch.projected_ids {
            if let Some(p) = position_of.get(id) {
                positions.push(*p);
            }
        }
        if !positions.is_empty() {
            sqlx::query(MARK)
                .bind(json!(positions).to_string())
                .execute(&mut *self.tx)
                .await?;
        }
        if !batch.projected_ids.is_empty() {
            sqlx::query(HEAL)
                .bind(json!(batch.projected_ids).to_string())
                .execute(&mut *self.tx)
                .await?;
        }
        if !batch.failed.is_empty() {
            let mut rows = Vec::with_capacity(batch.failed.len());
            for f in &batch.failed {
                let position = f
                    .position
                    .or_else(|| position_of.get(f.event_id).copied())
                    .ok_or_else(|| {
                        StorageError::invalid(format!("no position for event {}", f.event_id))
                    })?;
                rows.push(json!([f.event_id, position, f.error]));
            }
            sqlx::query(DEAD_LETTERS)
                .bind(json!(rows).to_string())
                .bind(timestamp(chrono::Utc::now()))
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn finish(self) -> Result<(), StorageError> {
        self.tx.commit().await?;
        Ok(())
    }
}
