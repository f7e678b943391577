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

#[tokio::test]
async fn the_user_index_leaves_out_rows_without_a_user_and_postgres_keys_compare_bytes_beside_both_ingest_writes(
) {
    let app = TestApp::spawn().await;
    match &app.db {
        Db::Postgres(PgStore { pool, .. }) => {
            let (definition,): (String,) =
                sqlx::query_as("SELECT pg_get_indexdef('read_models_user'::regclass)")
                    .fetch_one(pool)
                    .await
                    .unwrap();
            assert!(
                definition.ends_with("WHERE (user_id IS NOT NULL)"),
                "{definition}"
            );
            // Migration 0015: byte order on the key columns the hot path and the rebuild compare.
            let collations: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT c.relname::text, a.attname::text, coll.collname::text \
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_collation coll ON coll.oid = a.attcollation \
                 WHERE c.relname IN ('read_models', 'object_touches') \
                   AND a.attname IN ('kind', 'id', 'customer_id', 'user_id', 'status', \
                                     'object_id') \
                 ORDER BY 1, 2",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            assert_eq!(collations.len(), 7, "{collations:?}");
            assert!(
                collations.iter().all(|(_, _, c)| c == "C"),
                "{collations:?}"
            );
        }
        Db::Sqlite(store) => {
            let (definition,): (String,) = sqlx::query_as(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'read_models_user'",
            )
            .fetch_one(&store.read)
            .await
            .unwrap();
            assert!(
                definition.ends_with("WHERE user_id IS NOT NULL"),
                "{definition}"
            );
        }
    }
}
