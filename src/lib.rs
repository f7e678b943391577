#![recursion_limit = "256"]
//! stripe-ledger: Stripe Checkout billing with an event-sourced, immutable ledger.
//!
//! `main.rs` only parses the command line; every subcommand is a function here, and the
//! integration tests call the same functions.

pub mod app;
pub mod audit;
pub mod auth;
pub mod bench;
pub mod billing;
pub mod cli;
pub mod config;
pub mod event_log;
pub mod go_live;
pub mod http;
pub mod ingest;
pub mod jwt;
pub mod metrics;
pub mod outbox;
pub mod projector;
pub mod query;
pub mod read_models;
pub mod reconcile;
pub mod secret;
pub mod store;
pub mod stripe;
pub mod telemetry;
pub mod terminal;
pub mod trigger;
pub mod validate;

/// rustls needs one process-wide crypto provider; we build with ring only (no aws-lc, no
/// OpenSSL). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
