//! Statements and typed rows of the read models shared by both backends.

use chrono::{DateTime, Utc};

use super::Column;
use crate::read_models::Query;
use crate::store::read_models::{DeadLetter, KeyedState, ListedState, StatesBy};
use crate::store::Kind;

/// The active generation, as a subquery (a literal, so `concat!` can build statements with it).
macro_rules! active {
    () => {
        "(SELECT active_generation FROM projection_meta)"
    };
}

/// The columns of [`DeadLetter`].
macro_rules! dead_letter_columns {
    () => {
        "event_id, position, error, attempts, first_seen_at, last_seen_at"
    };
}

/// The upsert of a read-model row; PostgreSQL feeds it a whole batch (`SELECT ... FROM
/// unnest`), SQLite one `VALUES` row at a time.
macro_rules! upsert_read_model {
    ($rows:literal) => {
        concat!(
            "INSERT INTO read_models (generation, kind, id, customer_id, user_id, status, state) ",
            $rows,
            " ON CONFLICT (generation, kind, id) DO UPDATE SET customer_id = excluded.customer_id, \
             user_id = excluded.user_id, status = excluded.status, state = excluded.state"
        )
    };
}
pub(crate) use upsert_read_model;

pub(crate) const ACTIVE_GENERATION: &str = "SELECT active_generation FROM projection_meta";

pub(crate) const MAX_GENERATION: &str =
    "SELECT MAX(g) FROM (SELECT MAX(generation) AS g FROM read_models \
     UNION ALL SELECT active_generation FROM projection_meta) AS gs";

pub(crate) const DELETE_GENERATION: &str = "DELETE FROM read_models WHERE generation = $1";

pub(crate) const COPY_KIND: &str =
    "INSERT INTO read_models (generation, kind, id, customer_id, user_id, status, state) \
     SELECT $2, kind, id, customer_id, user_id, status, state FROM read_models \
     WHERE generation = $1 AND kind = $3";

pub(crate) const SWITCH_GENERATION: &str = "UPDATE projection_meta SET active_generation = $1";

pub(crate) const GENERATION_STATES: &str =
    "SELECT kind, id, state FROM read_models WHERE generation = $1";

pub(crate) const STATE: &str = concat!(
    "SELECT state FROM read_models WHERE generation = ",
    active!(),
    " AND kind = $1 AND id = $2"
);

/// The states of many ids of one kind (`$1`), in the active generation. The dialects differ
/// only in how the ids arrive (`$2`): PostgreSQL takes an array, SQLite a JSON array (it has
/// no arrays).
///
/// The ids are the outer loop, one key look-up each, whatever the table's statistics say.
/// PostgreSQL is held to that by `LATERAL ... LIMIT 1` (a subquery with a limit is not merged
/// into the join): written as `id = ANY($2)` or a plain join, on a table not yet analysed its
/// planner read every row of the kind, 1,257 pages for 20 ids instead of 61. SQLite keeps the
/// written order of a `CROSS JOIN`.
pub(crate) const STATES_OF_PG: &str = concat!(
    "SELECT u.id, r.state FROM unnest($2::text[]) AS u(id) CROSS JOIN LATERAL \
     (SELECT state FROM read_models WHERE generation = ",
    active!(),
    " AND kind = $1 AND id = u.id LIMIT 1) AS r"
);
pub(crate) const STATES_OF_SQLITE: &str = concat!(
    "SELECT r.id, r.state FROM json_each($2) AS u \
     CROSS JOIN read_models r ON r.generation = ",
    active!(),
    " AND r.kind = $1 AND r.id = u.value"
);

/// The statement of an unpaginated look-up by `by`.
pub(crate) fn states_by(by: StatesBy) -> &'static str {
    macro_rules! by {
        ($column:literal) => {
            concat!(
                "SELECT state FROM read_models WHERE generation = ",
                active!(),
                " AND kind = $1 AND ",
                $column,
                " = $2 ORDER BY id LIMIT 1000"
            )
        };
    }
    match by {
        StatesBy::UserId => by!("user_id"),
        StatesBy::CustomerId => by!("customer_id"),
    }
}

/// Records a projection failure, or counts it again. `$4` is the time (SQLite: as text).
pub(crate) const DEAD_LETTER_UPSERT: &str = "INSERT INTO dead_letters \
     (event_id, position, error, attempts, first_seen_at, last_seen_at) \
     VALUES ($1, $2, $3, 1, $4, $4) \
     ON CONFLICT (event_id) DO UPDATE SET error = excluded.error, \
     attempts = dead_letters.attempts + 1, last_seen_at = excluded.last_seen_at";

pub(crate) const DEAD_LETTERS: &str = concat!(
    "SELECT ",
    dead_letter_columns!(),
    " FROM dead_letters ORDER BY position"
);

pub(crate) const DEAD_LETTERS_AFTER: &str = concat!(
    "SELECT ",
    dead_letter_columns!(),
    " FROM dead_letters WHERE position > $1 ORDER BY position LIMIT $2"
);

/// Where catch-up's next chunk ends: the position of the `$2`-th entry after `$1`, or of the
/// last one (NULL when there is none). Only positions: the primary key's index answers it.
pub(crate) const CHUNK_END: &str = "SELECT max(position) FROM \
     (SELECT position FROM event_log WHERE position > $1 ORDER BY position LIMIT $2) AS chunk";

/// The entries of a chunk that ingestion has not marked projected, with payloads. Only these
/// are read whole: in a healthy log that is none, where reading every entry again cost the
/// database a payload per event.
pub(crate) const UNPROJECTED_BETWEEN: &str = concat!(
    "SELECT ",
    crate::store::common::event_log::summary_columns!(),
    ", payload FROM event_log l WHERE position > $1 AND position <= $2 \
     AND NOT EXISTS (SELECT 1 FROM projected_positions p WHERE p.position = l.position) \
     ORDER BY position"
);

pub(crate) const CHECKPOINT: &str = "SELECT position FROM projection_checkpoints WHERE name = $1";

pub(crate) const FORGET_PROJECTED: &str = "DELETE FROM projected_positions WHERE position <= $1";

/// The SELECT for a page of a read-model list, built once for both backends. Every value it
/// binds is text.
#[derive(Debug)]
pub(crate) struct ListStates {
    pub sql: String,
    pub binds: Vec<String>,
}

impl ListStates {
    /// One extra row beyond `query.limit` is selected, so the caller learns whether another
    /// page exists.
    pub(crate) fn build(kind: Kind, query: &Query) -> ListStates {
        let mut conditions = vec![
            concat!("generation = ", active!()).to_owned(),
            "kind = $1".to_owned(),
        ];
        let mut binds = vec![kind.as_str().to_owned()];
        for (column, value) in [
            ("customer_id", &query.customer_id),
            ("user_id", &query.user_id),
            ("status", &query.status),
        ] {
            if let Some(v) = value {
                binds.push(v.clone());
                conditions.push(format!("{column} = ${}", binds.len()));
            }
        }
        if let Some(after) = &query.after_id {
            binds.push(after.clone());
            conditions.push(format!("id > ${}", binds.len()));
        }
        let sql = format!(
            "SELECT id, state FROM read_models WHERE {} ORDER BY id LIMIT {}",
            conditions.join(" AND "),
            u64::from(query.limit) + 1
        );
        ListStates { sql, binds }
    }

    /// The statement with its values bound, on either backend.
    pub(crate) fn query<'q, DB>(
        &'q self,
    ) -> sqlx::query::QueryAs<'q, DB, ListedState, <DB as sqlx::Database>::Arguments<'q>>
    where
        DB: sqlx::Database,
        ListedState: for<'r> sqlx::FromRow<'r, DB::Row>,
        &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        let mut q = sqlx::query_as(&self.sql);
        for bind in &self.binds {
            q = q.bind(bind.as_str());
        }
        q
    }
}

/// A stored kind read back: one of ours, or the row cannot be decoded.
fn kind_of<'r, R>(row: &'r R) -> Result<Kind, sqlx::Error>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: Column<'r, R::Database>,
{
    let kind: String = row.try_get("kind")?;
    kind.parse().map_err(|e| sqlx::Error::ColumnDecode {
        index: "kind".to_owned(),
        source: Box::new(e),
    })
}

impl<'r, R> sqlx::FromRow<'r, R> for KeyedState
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(KeyedState {
            kind: kind_of(row)?,
            id: row.try_get("id")?,
            state: row.try_get("state")?,
        })
    }
}

impl<'r, R> sqlx::FromRow<'r, R> for ListedState
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(ListedState {
            id: row.try_get("id")?,
            state: row.try_get("state")?,
        })
    }
}

/// One decoder for both backends (SQLite stores the times as fixed-width UTC text, which sqlx
/// decodes as a `DateTime<Utc>`).
impl<'r, R> sqlx::FromRow<'r, R> for DeadLetter
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
    i32: Column<'r, R::Database>,
    DateTime<Utc>: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(DeadLetter {
            event_id: row.try_get("event_id")?,
            position: row.try_get("position")?,
            error: row.try_get("error")?,
            attempts: row.try_get("attempts")?,
            first_seen_at: row.try_get("first_seen_at")?,
            last_seen_at: row.try_get("last_seen_at")?,
        })
    }
}

/// The methods of `ReadModelStore` that run the same statements the same way on both backends,
/// written once: each backend's impl expands them with its own read and write pools
/// (`pool, pool` on PostgreSQL, `read, write` on SQLite). Names resolve where it is expanded.
///
/// `$states_of` is the backend's statement for [`STATES_OF_PG`] / [`STATES_OF_SQLITE`], and
/// `$ids_param` turns the ids into its `$2` (an array, or a JSON array).
macro_rules! read_model_store_same_on_both {
    ($reader:ident, $writer:ident, $states_of:path, $ids_param:path) => {
        async fn read_model_states_of(
            &self,
            kind: Kind,
            ids: &[&str],
        ) -> Result<std::collections::HashMap<String, String>, StorageError> {
            if ids.is_empty() {
                return Ok(std::collections::HashMap::new());
            }
            let rows: Vec<(String, String)> = sqlx::query_as($states_of)
                .bind(kind.as_str())
                .bind($ids_param(ids))
                .fetch_all(&self.$reader)
                .await?;
            Ok(rows.into_iter().collect())
        }

        async fn read_model_state(
            &self,
            kind: Kind,
            id: &str,
        ) -> Result<Option<String>, StorageError> {
            Ok(sqlx::query_scalar(sql::STATE)
                .bind(kind.as_str())
                .bind(id)
                .fetch_optional(&self.$reader)
                .await?)
        }

        async fn list_read_models(
            &self,
            kind: Kind,
            query: &Query,
        ) -> Result<Vec<ListedState>, StorageError> {
            let list = ListStates::build(kind, query);
            Ok(list.query().fetch_all(&self.$reader).await?)
        }

        async fn read_model_states_by(
            &self,
            kind: Kind,
            by: StatesBy,
            value: &str,
        ) -> Result<Vec<String>, StorageError> {
            Ok(sqlx::query_scalar(sql::states_by(by))
                .bind(kind.as_str())
                .bind(value)
                .fetch_all(&self.$reader)
                .await?)
        }

        async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StorageError> {
            Ok(sqlx::query_as(sql::DEAD_LETTERS)
                .fetch_all(&self.$reader)
                .await?)
        }

        async fn dead_letters_after(
            &self,
            position: i64,
            limit: u32,
        ) -> Result<Vec<DeadLetter>, StorageError> {
            Ok(sqlx::query_as(sql::DEAD_LETTERS_AFTER)
                .bind(position)
                .bind(i64::from(limit) + 1)
                .fetch_all(&self.$reader)
                .await?)
        }

        async fn unprojected_after(
            &self,
            after: i64,
            limit: u32,
        ) -> Result<Unprojected, StorageError> {
            let through: Option<i64> = sqlx::query_scalar(sql::CHUNK_END)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_one(&self.$reader)
                .await?;
            let Some(through) = through else {
                return Ok(Unprojected::default());
            };
            // A second snapshot sees at least the first one's entries: appends are serialised
            // to their commit, so a visible position has every lower one visible too.
            let entries = sqlx::query_as(sql::UNPROJECTED_BETWEEN)
                .bind(after)
                .bind(through)
                .fetch_all(&self.$reader)
                .await?;
            Ok(Unprojected {
                through: Some(through),
                entries,
            })
        }

        async fn projection_checkpoint(&self, name: &str) -> Result<Option<i64>, StorageError> {
            Ok(sqlx::query_scalar(sql::CHECKPOINT)
                .bind(name)
                .fetch_optional(&self.$reader)
                .await?)
        }
    };
}
pub(crate) use read_model_store_same_on_both;

/// The methods of `ReadModelTx` that run the same statements the same way on both backends,
/// written once: each backend's transaction impl expands them. Names resolve where it is
/// expanded.
macro_rules! read_model_tx_same_on_both {
    () => {
        async fn active_generation(&mut self) -> Result<i64, StorageError> {
            Ok(sqlx::query_scalar(sql::ACTIVE_GENERATION)
                .fetch_one(&mut **self)
                .await?)
        }

        async fn max_generation(&mut self) -> Result<i64, StorageError> {
            let max: Option<i64> = sqlx::query_scalar(sql::MAX_GENERATION)
                .fetch_one(&mut **self)
                .await?;
            Ok(max.unwrap_or(1))
        }

        async fn delete_generation(&mut self, generation: i64) -> Result<(), StorageError> {
            sqlx::query(sql::DELETE_GENERATION)
                .bind(generation)
                .execute(&mut **self)
                .await?;
            Ok(())
        }

        async fn copy_kind(&mut self, from: i64, to: i64, kind: Kind) -> Result<(), StorageError> {
            sqlx::query(sql::COPY_KIND)
                .bind(from)
                .bind(to)
                .bind(kind.as_str())
                .execute(&mut **self)
                .await?;
            Ok(())
        }

        async fn switch_generation(&mut self, generation: i64) -> Result<(), StorageError> {
            sqlx::query(sql::SWITCH_GENERATION)
                .bind(generation)
                .execute(&mut **self)
                .await?;
            Ok(())
        }

        async fn generation_states(
            &mut self,
            generation: i64,
        ) -> Result<Vec<KeyedState>, StorageError> {
            Ok(sqlx::query_as(sql::GENERATION_STATES)
                .bind(generation)
                .fetch_all(&mut **self)
                .await?)
        }
    };
}
pub(crate) use read_model_tx_same_on_both;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_model_lists_number_their_placeholders_in_bind_order() {
        let q = ListStates::build(
            Kind::Invoice,
            &Query {
                status: Some("paid".into()),
                after_id: Some("in_1".into()),
                limit: 10,
                ..Default::default()
            },
        );
        assert!(
            q.sql
                .ends_with("kind = $1 AND status = $2 AND id > $3 ORDER BY id LIMIT 11"),
            "{}",
            q.sql
        );
        assert_eq!(q.binds, ["invoice", "paid", "in_1"]);
    }
}
