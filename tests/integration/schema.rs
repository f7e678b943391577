//! Both backends end their migrations with the same tables and columns.
//!
//! One test run uses one backend, so each run compares its own catalog with one golden shared
//! by both (`snapshots/schema_tables_and_columns.snap`): CI's SQLite run and its PostgreSQL run
//! then hold each backend to the same list. Names only: the types differ on purpose (see
//! `migrations/README.md`).

use std::collections::BTreeMap;

use stripe_ledger::store::{Db, PgStore};

use crate::helpers::TestApp;

/// Every table of ours (not sqlx's bookkeeping nor SQLite's internals) with its columns, sorted.
async fn tables_and_columns(db: &Db) -> BTreeMap<String, Vec<String>> {
    let rows: Vec<(String, String)> = match db {
        Db::Postgres(PgStore { pool, .. }) => sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema()",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
        Db::Sqlite(store) => sqlx::query_as(
            "SELECT m.name, p.name FROM sqlite_master AS m, pragma_table_info(m.name) AS p \
             WHERE m.type = 'table'",
        )
        .fetch_all(&store.read)
        .await
        .unwrap(),
    };
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (table, column) in rows {
        if table.starts_with("_sqlx") || table.starts_with("sqlite_") {
            continue;
        }
        tables.entry(table).or_default().push(column);
    }
    for columns in tables.values_mut() {
        columns.sort();
    }
    tables
}

#[tokio::test]
async fn both_backends_have_the_same_tables_and_columns_after_migrating() {
    let app = TestApp::spawn().await;
    let tables = tables_and_columns(&app.db).await;
    let listing: String = tables
        .iter()
        .map(|(table, columns)| format!("{table}: {}\n", columns.join(", ")))
        .collect();
    crate::golden().bind(|| insta::assert_snapshot!("schema_tables_and_columns", listing));
}
