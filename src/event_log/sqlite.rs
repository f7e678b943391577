use crate::db::SqliteDb;

use super::{
    decode_stored_event, AppendOutcome, Bind, ListQuery, NewEntry, StorageError, StoredEvent,
    SUMMARY_COLUMNS,
};

pub(super) async fn append(db: &SqliteDb, entry: &NewEntry) -> Result<AppendOutcome, StorageError> {
    // Look first: a duplicate then costs one read and never queues for the single writer.
    if let Some(outcome) = existing(db, entry).await? {
        return Ok(outcome);
    }
    let env = &entry.envelope;
    let object = env.object.as_ref();
    let verification = entry.verification.as_ref();
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO event_log (event_id, event_type, api_version, livemode, account, object_id, \
         object_type, stripe_created, received_at, source, payload, payload_redacted, \
         raw_body_sha256, signature_header, signature_timestamp, verified_by_index, \
         verified_by_fingerprint) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         ON CONFLICT (event_id) DO NOTHING RETURNING position",
    )
    .bind(&env.id)
    .bind(&env.event_type)
    .bind(&env.api_version)
    .bind(env.livemode)
    .bind(&env.account)
    .bind(object.and_then(|o| o.id.as_deref()))
    .bind(object.and_then(|o| o.object_type.as_deref()))
    .bind(env.created)
    .bind(
        entry
            .received_at
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string(),
    )
    .bind(entry.source.as_str())
    .bind(&entry.payload)
    .bind(entry.payload_redacted)
    .bind(&entry.raw_body_sha256)
    .bind(verification.map(|v| v.signature_header.as_str()))
    .bind(verification.map(|v| v.timestamp))
    .bind(verification.map(|v| v.secret_index as i32))
    .bind(verification.map(|v| v.secret_fingerprint.as_str()))
    .fetch_optional(&db.write)
    .await?;
    match inserted {
        Some(position) => Ok(AppendOutcome::Appended { position }),
        // Lost a race with a concurrent append of the same event, committed before ours.
        None => existing(db, entry)
            .await?
            .ok_or_else(|| StorageError::Other(sqlx::Error::RowNotFound)),
    }
}

async fn existing(db: &SqliteDb, entry: &NewEntry) -> Result<Option<AppendOutcome>, StorageError> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT position, raw_body_sha256 FROM event_log WHERE event_id = $1")
            .bind(&entry.envelope.id)
            .fetch_optional(&db.read)
            .await?;
    Ok(row.map(|(position, sha)| AppendOutcome::Duplicate {
        position,
        same_body: sha == entry.raw_body_sha256,
    }))
}

pub(super) async fn get(
    db: &SqliteDb,
    event_id: &str,
) -> Result<Option<StoredEvent>, StorageError> {
    let sql = format!("SELECT {SUMMARY_COLUMNS}, payload FROM event_log WHERE event_id = $1");
    let row = sqlx::query(&sql)
        .bind(event_id)
        .fetch_optional(&db.read)
        .await?;
    Ok(row.map(|row| decode_stored_event!(row, true)).transpose()?)
}

pub(super) async fn list(
    db: &SqliteDb,
    query: &ListQuery,
) -> Result<Vec<StoredEvent>, StorageError> {
    let mut q = sqlx::query(&query.sql);
    for bind in &query.binds {
        q = match bind {
            Bind::Text(s) => q.bind(s.as_str()),
            Bind::Int(i) => q.bind(*i),
        };
    }
    let rows = q.fetch_all(&db.read).await?;
    Ok(rows
        .into_iter()
        .map(|row| decode_stored_event!(row, false))
        .collect::<Result<_, _>>()?)
}

pub(super) async fn count(db: &SqliteDb) -> Result<i64, StorageError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM event_log")
        .fetch_one(&db.read)
        .await?)
}
