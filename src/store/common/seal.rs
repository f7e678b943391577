//! Statements and typed rows of the sealed log shared by both backends.

use super::event_log::summary_columns;
use super::Column;
use crate::seal::merkle::{Hash, NodeId};
use crate::store::event_log::StoredEvent;
use crate::store::seal::{
    SealState, Sealable, StoredCheckpoint, VerificationFailure, VerificationRecord,
};

pub(crate) const STATE: &str = "SELECT size, root FROM seal_state";

/// The state row, locked (PostgreSQL: `FOR UPDATE`; SQLite: the writer holds the database).
pub(crate) const STATE_FOR_UPDATE_SQLITE: &str = "SELECT size, root FROM seal_state";
pub(crate) const STATE_FOR_UPDATE_PG: &str = "SELECT size, root FROM seal_state FOR UPDATE";

pub(crate) const MOVE_STATE: &str = "UPDATE seal_state SET size = $1, root = $2";

/// The sealer's read: safe against the commit-order trap because appends are serialised
/// (docs/architecture.md): in one snapshot, a visible position means every smaller one is
/// visible or will never exist.
///
/// PostgreSQL sends the 32 bytes of each payload's hash: stored when the entry was appended
/// (migration 0017, docs/adr/0028), or for an entry logged before that, computed where the
/// payload is stored (`convert_to(..., 'UTF8')` is the text as every client receives it).
/// SQLite has no SHA-256 function: the writer stores each payload's hash as it appends
/// (docs/adr/0032), and only an entry appended before that has its payload read and hashed
/// here (docs/adr/0027).
///
/// On both, a stored value that is not 32 bytes (planted by someone writing the table
/// directly: the service never stores one) counts as no hash, and the payload is hashed: one
/// such row must not fail every sealing pass from then on. A wrong hash of the right length is
/// sealed as stored, and `verify`, which hashes every payload it checks, names the entry.
pub(crate) const SEALABLE_AFTER_PG: &str = concat!(
    "SELECT ",
    summary_columns!(),
    ", CASE WHEN octet_length(payload_sha256) = 32 THEN payload_sha256 \
     ELSE sha256(convert_to(payload, 'UTF8')) END AS payload_sha256 \
     FROM event_log WHERE position > $1 ORDER BY position LIMIT $2"
);
pub(crate) const ENTRIES_AFTER_SQLITE: &str = concat!(
    "SELECT ",
    summary_columns!(),
    ", CASE WHEN typeof(payload_sha256) = 'blob' AND length(payload_sha256) = 32 \
     THEN NULL ELSE payload END AS payload, \
     CASE WHEN typeof(payload_sha256) = 'blob' AND length(payload_sha256) = 32 \
     THEN payload_sha256 END AS payload_sha256 \
     FROM event_log WHERE position > $1 ORDER BY position LIMIT $2"
);

pub(crate) const ENTRIES_BETWEEN: &str = concat!(
    "SELECT ",
    summary_columns!(),
    ", payload FROM event_log WHERE position > $1 AND position <= $2 ORDER BY position"
);

macro_rules! checkpoint_columns {
    () => {
        "size, root, origin, note, verifier_key, signed_at"
    };
}

pub(crate) const INSERT_CHECKPOINT: &str = concat!(
    "INSERT INTO checkpoints (",
    checkpoint_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (size) DO NOTHING"
);

pub(crate) const LATEST_CHECKPOINT: &str = concat!(
    "SELECT ",
    checkpoint_columns!(),
    " FROM checkpoints ORDER BY size DESC LIMIT 1"
);

pub(crate) const CHECKPOINT_AT: &str = concat!(
    "SELECT ",
    checkpoint_columns!(),
    " FROM checkpoints WHERE size = $1"
);

pub(crate) const CHECKPOINTS: &str = concat!(
    "SELECT ",
    checkpoint_columns!(),
    " FROM checkpoints ORDER BY size"
);

macro_rules! verification_columns {
    () => {
        "checked_at, from_position, to_position, tree_size, checkpoint_size, ok, failure_kind, \
         failure_position, failure_detail"
    };
}

pub(crate) const RECORD_VERIFICATION: &str = concat!(
    "INSERT INTO seal_verifications (",
    verification_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
);

/// Successful re-checks older than `$1` (unix seconds): one a checkpoint interval would grow the
/// table without end, and an old "nothing changed" says nothing the newest does not. Failures
/// are evidence and stay.
pub(crate) const PRUNE_VERIFICATIONS: &str =
    "DELETE FROM seal_verifications WHERE ok AND checked_at < $1";

/// The newest by id, not by `checked_at`: two instances' clocks may disagree.
pub(crate) const LATEST_VERIFICATION: &str = concat!(
    "SELECT ",
    verification_columns!(),
    " FROM seal_verifications ORDER BY id DESC LIMIT 1"
);

impl<'r, R> sqlx::FromRow<'r, R> for VerificationRecord
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    i64: Column<'r, R::Database>,
    bool: Column<'r, R::Database>,
    String: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let kind: Option<String> = row.try_get("failure_kind")?;
        let position: Option<i64> = row.try_get("failure_position")?;
        let failure = kind.map(|kind| -> Result<_, sqlx::Error> {
            Ok(VerificationFailure {
                kind,
                position: size(position.unwrap_or(0), "seal_verifications.failure_position")?,
                detail: row
                    .try_get::<Option<String>, _>("failure_detail")?
                    .unwrap_or_default(),
            })
        });
        let checkpoint: Option<i64> = row.try_get("checkpoint_size")?;
        Ok(VerificationRecord {
            checked_at: row.try_get("checked_at")?,
            from_position: size(row.try_get("from_position")?, "from_position")?,
            to_position: size(row.try_get("to_position")?, "to_position")?,
            tree_size: size(row.try_get("tree_size")?, "tree_size")?,
            checkpoint_size: checkpoint.map(|c| size(c, "checkpoint_size")).transpose()?,
            failure: failure.transpose()?,
        })
    }
}

/// One decoder for both backends: the payload's hash as selected (PostgreSQL; SQLite for an
/// entry appended with it, docs/adr/0032), or computed here from the payload (SQLite, an entry
/// appended before), which is then dropped.
impl<'r, R> sqlx::FromRow<'r, R> for Sealable
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    StoredEvent: sqlx::FromRow<'r, R>,
    Vec<u8>: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let mut entry = StoredEvent::from_row(row)?;
        let stored: Option<Vec<u8>> = row.try_get("payload_sha256")?;
        let payload_sha256 = match (stored, entry.payload.take()) {
            (Some(stored), _) => hash(stored, "payload_sha256")?,
            (None, Some(payload)) => crate::seal::leaf::payload_hash(&payload),
            (None, None) => {
                return Err(sqlx::Error::Decode(
                    format!(
                        "entry {} has neither its payload nor its payload's hash",
                        entry.position
                    )
                    .into(),
                ))
            }
        };
        Ok(Sealable {
            entry,
            payload_sha256,
        })
    }
}

fn hash(bytes: Vec<u8>, what: &str) -> Result<Hash, sqlx::Error> {
    bytes
        .try_into()
        .map_err(|_| sqlx::Error::Decode(format!("{what} is not a 32-byte hash").into()))
}

fn size(n: i64, what: &str) -> Result<u64, sqlx::Error> {
    u64::try_from(n).map_err(|_| sqlx::Error::Decode(format!("{what} is negative").into()))
}

impl<'r, R> sqlx::FromRow<'r, R> for SealState
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    i64: Column<'r, R::Database>,
    Vec<u8>: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(SealState {
            size: size(row.try_get("size")?, "seal_state.size")?,
            root: hash(row.try_get("root")?, "seal_state.root")?,
        })
    }
}

impl<'r, R> sqlx::FromRow<'r, R> for StoredCheckpoint
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    i64: Column<'r, R::Database>,
    String: Column<'r, R::Database>,
    Vec<u8>: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(StoredCheckpoint {
            size: size(row.try_get("size")?, "checkpoints.size")?,
            root: hash(row.try_get("root")?, "checkpoints.root")?,
            origin: row.try_get("origin")?,
            note: row.try_get("note")?,
            verifier_key: row.try_get("verifier_key")?,
            signed_at: row.try_get("signed_at")?,
        })
    }
}

/// One row of `seal_nodes`.
pub(crate) struct NodeRow {
    pub id: NodeId,
    pub hash: Hash,
}

impl<'r, R> sqlx::FromRow<'r, R> for NodeRow
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    i32: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
    Vec<u8>: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let level: i32 = row.try_get("level")?;
        let level = u8::try_from(level)
            .ok()
            .filter(|l| *l < 64)
            .ok_or_else(|| sqlx::Error::Decode("seal_nodes.level out of range".into()))?;
        Ok(NodeRow {
            id: NodeId {
                level,
                index: size(row.try_get("idx")?, "seal_nodes.idx")?,
            },
            hash: hash(row.try_get("hash")?, "seal_nodes.hash")?,
        })
    }
}

/// The methods of `SealStore` that run the same statements the same way on both backends,
/// expanded in each backend's impl with its read and write pools.
macro_rules! seal_store_same_on_both {
    ($reader:ident, $writer:ident, $sealable_after:path) => {
        async fn sealable_after(
            &self,
            after: i64,
            limit: u32,
        ) -> Result<Vec<Sealable>, StorageError> {
            Ok(sqlx::query_as($sealable_after)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.$reader)
                .await?)
        }

        async fn seal_state(&self) -> Result<SealState, StorageError> {
            Ok(sqlx::query_as(sql::STATE).fetch_one(&self.$reader).await?)
        }

        async fn entries_between(
            &self,
            after: i64,
            up_to: i64,
        ) -> Result<Vec<StoredEvent>, StorageError> {
            Ok(sqlx::query_as(sql::ENTRIES_BETWEEN)
                .bind(after)
                .bind(up_to)
                .fetch_all(&self.$reader)
                .await?)
        }

        async fn insert_checkpoint(
            &self,
            checkpoint: &StoredCheckpoint,
        ) -> Result<bool, StorageError> {
            let done = sqlx::query(sql::INSERT_CHECKPOINT)
                .bind(to_db(checkpoint.size)?)
                .bind(checkpoint.root.to_vec())
                .bind(&checkpoint.origin)
                .bind(&checkpoint.note)
                .bind(&checkpoint.verifier_key)
                .bind(checkpoint.signed_at)
                .execute(&self.$writer)
                .await?;
            Ok(done.rows_affected() == 1)
        }

        async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StorageError> {
            Ok(sqlx::query_as(sql::LATEST_CHECKPOINT)
                .fetch_optional(&self.$reader)
                .await?)
        }

        async fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StorageError> {
            Ok(sqlx::query_as(sql::CHECKPOINT_AT)
                .bind(to_db(size)?)
                .fetch_optional(&self.$reader)
                .await?)
        }

        async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StorageError> {
            Ok(sqlx::query_as(sql::CHECKPOINTS)
                .fetch_all(&self.$reader)
                .await?)
        }

        async fn record_verification(
            &self,
            record: &VerificationRecord,
        ) -> Result<(), StorageError> {
            let failure = record.failure.as_ref();
            sqlx::query(sql::RECORD_VERIFICATION)
                .bind(record.checked_at)
                .bind(to_db(record.from_position)?)
                .bind(to_db(record.to_position)?)
                .bind(to_db(record.tree_size)?)
                .bind(record.checkpoint_size.map(to_db).transpose()?)
                .bind(failure.is_none())
                .bind(failure.map(|f| f.kind.as_str()))
                .bind(failure.map(|f| to_db(f.position)).transpose()?)
                .bind(failure.map(|f| f.detail.as_str()))
                .execute(&self.$writer)
                .await?;
            let keep_from = record
                .checked_at
                .saturating_sub(crate::store::seal::KEEP_OK_VERIFICATIONS_SECS);
            sqlx::query(sql::PRUNE_VERIFICATIONS)
                .bind(keep_from)
                .execute(&self.$writer)
                .await?;
            Ok(())
        }

        async fn latest_verification(&self) -> Result<Option<VerificationRecord>, StorageError> {
            Ok(sqlx::query_as(sql::LATEST_VERIFICATION)
                .fetch_optional(&self.$reader)
                .await?)
        }
    };
}
pub(crate) use seal_store_same_on_both;
