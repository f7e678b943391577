//! Migrations, embedded in the binary so a deployed `stripe-ledger` needs no files beside it.
//! The rules are in `migrations/README.md`; a unit test keeps both directories and this list in
//! step, and the integration test `schema` checks both backends end with the same tables and
//! columns.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

use super::Backend;

/// (version, name, PostgreSQL text, SQLite text). Append-only: a landed entry is never edited.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "event_log",
        include_str!("../../migrations/postgres/0001_event_log.sql"),
        include_str!("../../migrations/sqlite/0001_event_log.sql"),
    ),
    (
        2,
        "read_models",
        include_str!("../../migrations/postgres/0002_read_models.sql"),
        include_str!("../../migrations/sqlite/0002_read_models.sql"),
    ),
    (
        3,
        "reconciliation",
        include_str!("../../migrations/postgres/0003_reconciliation.sql"),
        include_str!("../../migrations/sqlite/0003_reconciliation.sql"),
    ),
    (
        4,
        "outbox",
        include_str!("../../migrations/postgres/0004_outbox.sql"),
        include_str!("../../migrations/sqlite/0004_outbox.sql"),
    ),
    (
        5,
        "drop_tx_id",
        include_str!("../../migrations/postgres/0005_drop_tx_id.sql"),
        include_str!("../../migrations/sqlite/0005_drop_tx_id.sql"),
    ),
    (
        6,
        "read_model_versions",
        include_str!("../../migrations/postgres/0006_read_model_versions.sql"),
        include_str!("../../migrations/sqlite/0006_read_model_versions.sql"),
    ),
    (
        7,
        "sealed_log",
        include_str!("../../migrations/postgres/0007_sealed_log.sql"),
        include_str!("../../migrations/sqlite/0007_sealed_log.sql"),
    ),
    (
        8,
        "object_touches",
        include_str!("../../migrations/postgres/0008_object_touches.sql"),
        include_str!("../../migrations/sqlite/0008_object_touches.sql"),
    ),
    (
        9,
        "ui",
        include_str!("../../migrations/postgres/0009_ui.sql"),
        include_str!("../../migrations/sqlite/0009_ui.sql"),
    ),
    (
        11,
        "generic_ingest_plans",
        include_str!("../../migrations/postgres/0011_generic_ingest_plans.sql"),
        include_str!("../../migrations/sqlite/0011_generic_ingest_plans.sql"),
    ),
    (
        12,
        "seal_verifications",
        include_str!("../../migrations/postgres/0012_seal_verifications.sql"),
        include_str!("../../migrations/sqlite/0012_seal_verifications.sql"),
    ),
    (
        13,
        "generic_ingest_read",
        include_str!("../../migrations/postgres/0013_generic_ingest_read.sql"),
        include_str!("../../migrations/sqlite/0013_generic_ingest_read.sql"),
    ),
    (
        14,
        "hot_path_storage",
        include_str!("../../migrations/postgres/0014_hot_path_storage.sql"),
        include_str!("../../migrations/sqlite/0014_hot_path_storage.sql"),
    ),
    (
        15,
        "read_model_keys",
        include_str!("../../migrations/postgres/0015_read_model_keys.sql"),
        include_str!("../../migrations/sqlite/0015_read_model_keys.sql"),
    ),
    (
        16,
        "ingest_without_read",
        include_str!("../../migrations/postgres/0016_ingest_without_read.sql"),
        include_str!("../../migrations/sqlite/0016_ingest_without_read.sql"),
    ),
    (
        17,
        "payload_hashes",
        include_str!("../../migrations/postgres/0017_payload_hashes.sql"),
        include_str!("../../migrations/sqlite/0017_payload_hashes.sql"),
    ),
    (
        18,
        "outbox_due_order",
        include_str!("../../migrations/postgres/0018_outbox_due_order.sql"),
        include_str!("../../migrations/sqlite/0018_outbox_due_order.sql"),
    ),
];

pub(super) fn migrator(backend: Backend) -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, name, postgres, sqlite)| {
            let sql = match backend {
                Backend::Postgres => postgres,
                Backend::Sqlite => sqlite,
            };
            Migration::new(
                *version,
                Cow::Borrowed(*name),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
                false,
            )
        })
        .collect::<Vec<_>>();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_have_the_same_migrations_as_the_embedded_list() {
        for backend in ["postgres", "sqlite"] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(backend);
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            files.sort();
            let expected: Vec<String> = MIGRATIONS
                .iter()
                .map(|(v, name, _, _)| format!("{v:04}_{name}.sql"))
                .collect();
            assert_eq!(
                files, expected,
                "migrations/{backend} and MIGRATIONS disagree"
            );
        }
    }
}
