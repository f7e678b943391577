//! The one integration-test binary. Run on SQLite by default; `TEST_DATABASE=postgres` runs the
//! same tests on PostgreSQL.

mod audit_api;
mod billing;
mod browser;
mod cli;
mod event_log;
mod fake_stripe;
mod health;
mod helpers;
mod history;
mod hostile_queries;
mod hostile_webhooks;
mod hot_path;
mod unread_batches;
mod observability;
mod openapi;
mod outbox;
mod projections;
mod reconcile;
mod scenarios;
mod schema;
mod seal;
mod seal_offline;
mod secrets;
mod shutdown;
mod signature_vectors;
mod smtp_sink;
mod stripe_objects;
mod transport;
mod trigger;
mod ui_browser;
mod ui_event_filters;
mod ui_event_page;
mod ui_http;
mod ui_integrity;
mod ui_operations;
mod webhook;

/// Golden files live in the top-level `snapshots/`, named by the test, not the module path.
pub fn golden() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings
}
