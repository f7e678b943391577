#![recursion_limit = "256"]
//! stripe-ledger: Stripe Checkout billing with an event-sourced, immutable ledger.
//!
//! `main.rs` only parses the command line; every subcommand is a function here, and the
//! integration tests call the same functions. The modules below are listed in the order data
//! flows through them (docs/architecture.md has the picture); the pure folds live in the
//! `ledger-projections` crate, everything here is the IO shell around them.

// Start-up: the environment, logs, and the server with its background jobs.
/// Every environment variable, parsed and validated; errors name the variable, never the value.
pub mod config;
/// A wrapper for secrets whose `Debug` prints `[REDACTED]` (and which has no `Display`).
pub mod secret;
/// Log output (`LOG_FORMAT`, `RUST_LOG`).
pub mod telemetry;
/// Shared state, starting and stopping the server and the background jobs.
pub mod app;

// In from the network: HTTP, and what every request is checked against.
/// Routes, the accept loop and its limits, `ApiError` (the one error type at this boundary).
pub mod http;
/// Service tokens and their scopes (`API_TOKENS`).
pub mod auth;
/// The user JWTs of checkout and the portal.
pub mod jwt;
/// The one rule for ids taken from the network.
pub mod validate;
/// Query strings, list filters and cursors, shared by the API and the CLI.
pub mod query;

// The webhook path: verify, parse once, redact, project and append.
/// Stripe: webhook signatures, key modes, the API client.
pub mod stripe;
/// The webhook's steps, independent of HTTP, and the group-committing writer with its memory
/// of the states it wrote (batches that skip their read, ADR 24).
pub mod ingest;
/// What a log entry is, how a batch's duplicates resolve, the redaction policy.
pub mod event_log;
/// Folding log entries into the read models: ingestion, catch-up, rebuild, dead letters.
pub mod projector;
/// Every SQL statement of the service, one folder per backend. Nothing else names sqlx.
pub mod store;

// Out to the users of the ledger.
/// Queries over the read models, for the read API and the CLI.
pub mod read_models;
/// History, as-of and explain: an object's log entries folded by the pure code (issue 13).
pub mod history;
/// The auditor's view of the raw log.
pub mod audit;
/// The sealed log's pure core: Merkle tree, signed checkpoints, leaf encoding, bundles.
pub mod seal;
/// Checkout and the Customer Portal for signed-in users.
pub mod billing;
/// Emails written with the projection and delivered at least once.
pub mod outbox;
/// Drift against the Stripe API, repairs through the log, gap fill, the schedule.
pub mod reconcile;
/// Prometheus metrics.
pub mod metrics;
/// The console: server-rendered HTML at `/ui` for auditors and operators.
pub mod ui;
/// The sealed log in the service: the sealer, checkpoints, proofs, `verify`.
pub mod sealer;

// Operators' tools.
/// The subcommands.
pub mod cli;
/// Escaping of everything printed as text.
pub mod terminal;
/// Signed events posted to a running service, built in or from a file.
pub mod trigger;
/// The go-live checklist's scenarios against a running test-mode service.
pub mod go_live;
/// The ingest and rebuild benchmarks.
pub mod bench;

/// rustls needs one process-wide crypto provider; we build with ring only (no aws-lc, no
/// OpenSSL). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
