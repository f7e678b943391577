//! Queries over the read models (the active generation), for the read API and the CLI.

use serde_json::Value;

use crate::db::Db;
use crate::event_log::StorageError;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 100;

/// Which rows to list: one kind, optional filters, keyset pagination by id.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub customer_id: Option<String>,
    pub user_id: Option<String>,
    pub status: Option<String>,
    /// Continue after this id (exclusive).
    pub after_id: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Value>,
    pub next_after: Option<String>,
}

const ACTIVE: &str = "(SELECT active_generation FROM projection_meta)";

/// One object's state, as JSON.
pub async fn get(db: &Db, kind: &str, id: &str) -> Result<Option<Value>, StorageError> {
    let sql = format!(
        "SELECT state FROM read_models WHERE generation = {ACTIVE} AND kind = $1 AND id = $2"
    );
    let state: Option<String> = match db {
        Db::Postgres(pool) => {
            sqlx::query_scalar(&sql)
                .bind(kind)
                .bind(id)
                .fetch_optional(pool)
                .await?
        }
        Db::Sqlite(db) => {
            sqlx::query_scalar(&sql)
                .bind(kind)
                .bind(id)
                .fetch_optional(&db.read)
                .await?
        }
    };
    state.map(|s| parse(&s)).transpose()
}

pub async fn list(db: &Db, kind: &str, query: &Query) -> Result<Page, StorageError> {
    let mut conditions = vec![format!("generation = {ACTIVE}"), "kind = $1".to_owned()];
    let mut binds: Vec<&str> = vec![kind];
    for (column, value) in [
        ("customer_id", &query.customer_id),
        ("user_id", &query.user_id),
        ("status", &query.status),
    ] {
        if let Some(v) = value {
            binds.push(v);
            conditions.push(format!("{column} = ${}", binds.len()));
        }
    }
    if let Some(after) = &query.after_id {
        binds.push(after);
        conditions.push(format!("id > ${}", binds.len()));
    }
    let sql = format!(
        "SELECT id, state FROM read_models WHERE {} ORDER BY id LIMIT {}",
        conditions.join(" AND "),
        u64::from(query.limit) + 1
    );
    let rows: Vec<(String, String)> = match db {
        Db::Postgres(pool) => {
            let mut q = sqlx::query_as(&sql);
            for b in &binds {
                q = q.bind(*b);
            }
            q.fetch_all(pool).await?
        }
        Db::Sqlite(db) => {
            let mut q = sqlx::query_as(&sql);
            for b in &binds {
                q = q.bind(*b);
            }
            q.fetch_all(&db.read).await?
        }
    };
    let more = rows.len() > query.limit as usize;
    let rows = &rows[..rows.len().min(query.limit as usize)];
    Ok(Page {
        items: rows
            .iter()
            .map(|(_, s)| parse(s))
            .collect::<Result<_, _>>()?,
        next_after: if more {
            rows.last().map(|(id, _)| id.clone())
        } else {
            None
        },
    })
}

/// Every row of `kind` for a user or customer, unpaginated; for entitlements, where a user has
/// a handful of subscriptions.
pub async fn all_states(
    db: &Db,
    kind: &str,
    column: &str,
    value: &str,
) -> Result<Vec<String>, StorageError> {
    debug_assert!(matches!(column, "user_id" | "customer_id" | "id"));
    let sql = format!(
        "SELECT state FROM read_models WHERE generation = {ACTIVE} AND kind = $1 AND {column} = $2 ORDER BY id LIMIT 1000"
    );
    Ok(match db {
        Db::Postgres(pool) => {
            sqlx::query_scalar(&sql)
                .bind(kind)
                .bind(value)
                .fetch_all(pool)
                .await?
        }
        Db::Sqlite(db) => {
            sqlx::query_scalar(&sql)
                .bind(kind)
                .bind(value)
                .fetch_all(&db.read)
                .await?
        }
    })
}

fn parse(state: &str) -> Result<Value, StorageError> {
    serde_json::from_str(state)
        .map_err(|e| StorageError::Other(format!("unreadable read-model state: {e}")))
}
