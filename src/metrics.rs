//! Prometheus metrics (`GET /metrics`).
//!
//! Counters and the latency histogram live in memory, per instance, in a registry owned by the
//! app (not a process global, so tests running several apps in one process each see their
//! own). Gauges that describe the shared database (dead letters, outbox backlog, catch-up lag,
//! last reconciliation drift) are read from it at scrape time, so every instance reports the
//! same truth rather than what it alone has seen.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::jobs::{Gauges, JobStore as _};
use crate::store::outbox::{OutboxStatus, OutboxStore as _, StatusCount};
use crate::store::Db;
use crate::store::StorageError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    /// Empty until the signature is verified: an unverified body is never looked at.
    event_type: String,
    /// recorded | duplicate | rejected | failed
    outcome: String,
    /// The stable error code of a rejection or failure, empty otherwise.
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GuessLabels {
    /// written | refused
    outcome: String,
}

/// The writer's guesses (docs/adr/0024): batches folded from its memory that the write took,
/// and those it refused (then read and folded again). Detached counters by default.
#[derive(Clone, Debug, Default)]
pub struct GuessCounters {
    pub written: Counter,
    pub refused: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

type IntGauge = Gauge<i64, AtomicI64>;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    webhooks: Family<WebhookLabels, Counter>,
    webhook_seconds: Histogram,
    projection_failures: Family<SourceLabels, Counter>,
    outbox_deliveries: Family<DeliveryLabels, Counter>,
    database_up: IntGauge,
    dead_letters: IntGauge,
    outbox_rows: Family<StatusLabels, IntGauge>,
    reconcile_drift: IntGauge,
    catch_up_lag: IntGauge,
    log_position: IntGauge,
    seal_verify_failures: Counter,
    ingest_guesses: Family<GuessLabels, Counter>,
}

/// How a webhook delivery ended, for the `outcome` label.
#[derive(Debug, Clone, Copy)]
pub enum WebhookOutcome {
    Recorded,
    Duplicate,
    /// The client's fault (4xx): signature, size, envelope, livemode.
    Rejected,
    /// Ours (5xx/503): Stripe will retry.
    Failed,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("stripe_ledger");
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhooks",
            "Webhook deliveries by event type, outcome and error code",
            webhooks.clone(),
        );
        // 1 ms to ~16 s: the interesting part is around Stripe's patience and our 1.5 s budget.
        let webhook_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15),
        );
        registry.register(
            "webhook_duration_seconds",
            "Time from receiving a webhook to answering it",
            webhook_seconds.clone(),
        );
        let projection_failures = Family::<SourceLabels, Counter>::default();
        registry.register(
            "projection_failures",
            "Log entries whose projection failed (then dead-lettered), by who projected them",
            projection_failures.clone(),
        );
        let outbox_deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "outbox_deliveries",
            "Outbox delivery attempts by notification kind and outcome",
            outbox_deliveries.clone(),
        );
        let database_up = IntGauge::default();
        registry.register(
            "database_up",
            "1 when the database answered this scrape's queries, 0 when it did not",
            database_up.clone(),
        );
        let dead_letters = IntGauge::default();
        registry.register(
            "dead_letters",
            "Logged events whose projection is failing",
            dead_letters.clone(),
        );
        let outbox_rows = Family::<StatusLabels, IntGauge>::default();
        registry.register(
            "outbox_items",
            "Outbox rows by status (pending is the backlog)",
            outbox_rows.clone(),
        );
        let reconcile_drift = IntGauge::default();
        registry.register(
            "reconcile_last_drift",
            "Drift found by the last finished scheduled reconciliation (-1: none has finished)",
            reconcile_drift.clone(),
        );
        let ingest_guesses = Family::<GuessLabels, Counter>::default();
        registry.register(
            "ingest_guesses",
            "Batches the writer folded from its memory instead of a read, by whether the write \
             took the guess (written) or refused it and the batch was read again (refused)",
            ingest_guesses.clone(),
        );
        let catch_up_lag = IntGauge::default();
        registry.register(
            "catch_up_lag_events",
            "Logged events that neither ingestion nor the catch-up projector has projected yet",
            catch_up_lag.clone(),
        );
        let log_position = IntGauge::default();
        registry.register(
            "event_log_last_position",
            "Position of the newest event log entry",
            log_position.clone(),
        );
        let seal_verify_failures = Counter::default();
        registry.register(
            "seal_verify_failures",
            "Scheduled checks of the sealed log that found the log and its tree disagreeing",
            seal_verify_failures.clone(),
        );
        Metrics {
            seal_verify_failures,
            registry,
            webhooks,
            webhook_seconds,
            projection_failures,
            outbox_deliveries,
            database_up,
            dead_letters,
            outbox_rows,
            reconcile_drift,
            catch_up_lag,
            log_position,
            ingest_guesses,
        }
    }

    /// The counters the ingest writer counts its guesses on.
    pub fn ingest_guesses(&self) -> GuessCounters {
        let counter = |outcome: &str| {
            self.ingest_guesses
                .get_or_create(&GuessLabels {
                    outcome: outcome.to_owned(),
                })
                .clone()
        };
        GuessCounters {
            written: counter("written"),
            refused: counter("refused"),
        }
    }

    pub fn webhook(
        &self,
        event_type: &str,
        outcome: WebhookOutcome,
        code: &str,
        elapsed: Duration,
    ) {
        let outcome = match outcome {
            WebhookOutcome::Recorded => "recorded",
            WebhookOutcome::Duplicate => "duplicate",
            WebhookOutcome::Rejected => "rejected",
            WebhookOutcome::Failed => "failed",
        };
        self.webhooks
            .get_or_create(&WebhookLabels {
                event_type: event_type.to_owned(),
                outcome: outcome.to_owned(),
                code: code.to_owned(),
            })
            .inc();
        self.webhook_seconds.observe(elapsed.as_secs_f64());
    }

    /// `source`: webhook, catch_up or retry.
    pub fn projection_failed(&self, source: &str, n: u64) {
        if n > 0 {
            self.projection_failures
                .get_or_create(&SourceLabels {
                    source: source.to_owned(),
                })
                .inc_by(n);
        }
    }

    /// A scheduled check of the sealed log failed (tampering, or a broken stored tree).
    pub fn seal_verify_failed(&self) {
        self.seal_verify_failures.inc();
    }

    pub fn outbox_delivery(&self, kind: &str, outcome: &str) {
        self.outbox_deliveries
            .get_or_create(&DeliveryLabels {
                kind: kind.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Reads the database gauges, then renders everything in the Prometheus text format.
    pub async fn render(&self, db: &Db) -> String {
        // A blocked database must not hang the scrape past Prometheus's own timeout.
        let gauges = tokio::time::timeout(GAUGES_TIMEOUT, database_gauges(db))
            .await
            .unwrap_or_else(|_| Err(StorageError::interrupted("the database gauges timed out")));
        match gauges {
            Ok(DatabaseGauges { gauges: g, outbox }) => {
                self.database_up.set(1);
                self.dead_letters.set(g.dead_letters);
                for status in OutboxStatus::ALL {
                    let n = outbox
                        .iter()
                        .find(|c| c.status == status)
                        .map_or(0, |c| c.count);
                    self.outbox_rows
                        .get_or_create(&StatusLabels {
                            status: status.as_str().to_owned(),
                        })
                        .set(n);
                }
                self.reconcile_drift.set(g.reconcile_drift.unwrap_or(-1));
                self.catch_up_lag.set(g.catch_up_lag.max(0));
                self.log_position.set(g.log_position);
            }
            Err(e) => {
                tracing::warn!(error = %e.report(), "metrics could not read the database gauges");
                self.database_up.set(0);
            }
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

const GAUGES_TIMEOUT: Duration = Duration::from_secs(2);

struct DatabaseGauges {
    gauges: Gauges,
    outbox: Vec<StatusCount>,
}

async fn database_gauges(db: &Db) -> Result<DatabaseGauges, StorageError> {
    Ok(DatabaseGauges {
        gauges: db.metrics_gauges().await?,
        outbox: db.outbox_counts().await?,
    })
}
