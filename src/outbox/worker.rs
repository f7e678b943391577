//! The delivery worker: claim due rows, look up the recipient, send, record the outcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_projections::{Fact, NotificationDetails, NotificationKind};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::mail::{compose, Mailer, SendError};
use super::{settle_all, Item, Outcome};
use crate::metrics::Metrics;
use crate::read_models::StatesBy;
use crate::store::outbox::OutboxStore as _;
use crate::store::Db;
use crate::store::Kind;
use crate::store::StorageError;

/// Attempts before a row is marked failed (about nine hours of backoff).
pub const MAX_ATTEMPTS: i32 = 15;
/// Rows one claim takes.
const BATCH: i64 = 20;
/// How long a claim keeps other workers off a row: longer than one batch of SMTP timeouts.
const CLAIM_SECS: i64 = 20 * 15 + 60;

/// Seconds before attempt `attempts + 1`: 30 s doubling, capped at an hour.
pub fn backoff_secs(attempts: i32) -> i64 {
    let exponent = attempts.clamp(1, 8) - 1;
    (30_i64 << exponent).min(3600)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryReport {
    pub sent: usize,
    pub retrying: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl DeliveryReport {
    pub fn total(&self) -> usize {
        self.sent + self.retrying + self.failed + self.skipped
    }
}

/// Outcomes are settled together, one write per claimed batch; but once an attempt ends this
/// long after the last write, what has accumulated is written before the next attempt. A crash
/// re-sends what was sent since the last write (with the same `Message-ID`s), so this bounds
/// the copies a slow transport can cause to about a second of sending. A fast transport
/// settles a whole batch in one commit instead of one per row, which spares the database's log
/// flushes that ingestion waits on.
const SETTLE_WITHIN: Duration = Duration::from_secs(1);

/// Delivers every row due at `now`, batch by batch, until none is left.
pub async fn deliver_due(
    db: &Db,
    mailer: &Mailer,
    billing_url: Option<&str>,
    metrics: Option<&Metrics>,
    now: i64,
) -> Result<DeliveryReport, StorageError> {
    let mut report = DeliveryReport::default();
    loop {
        let items = db.outbox_claim(now, now + CLAIM_SECS, BATCH).await?;
        if items.is_empty() {
            return Ok(report);
        }
        let mut recipients = recipients(db, &items).await?;
        let mut unsettled: Vec<(i64, Outcome)> = Vec::with_capacity(items.len());
        let mut last_settled = Instant::now();
        for (i, item) in items.iter().enumerate() {
            let customer = recipients.get(&item.customer_id).map(String::as_str);
            let outcome = match attempt(db, mailer, billing_url, item, customer, now).await {
                Ok(outcome) => outcome,
                // A stored state this build cannot read (an operator's hand edit, a downgrade)
                // is this row's problem, retried with backoff and failed in the end like a
                // refusal: aborting the run would hold back every row claimed with it, at
                // every claim, for good.
                Err(e @ StorageError::Invalid { .. }) => retry_or_fail(item, now, e.report()),
                Err(e) => {
                    // Keep what was done before the failure, if the database still lets us.
                    if let Err(settling) = settle_all(db, &unsettled, now).await {
                        tracing::warn!(error = %crate::store::error::chain(&settling), "outbox outcomes not recorded; their rows are sent again when the claim lapses");
                    }
                    return Err(e);
                }
            };
            record(&mut report, metrics, item, &outcome);
            unsettled.push((item.id, outcome));
            if last_settled.elapsed() >= SETTLE_WITHIN {
                settle_all(db, &unsettled, now).await?;
                unsettled.clear();
                last_settled = Instant::now();
                // A slow transport: the rest of the batch is sent to addresses read again, so
                // none is more than about a second older than its send.
                recipients = self::recipients(db, &items[i + 1..]).await?;
            }
        }
        settle_all(db, &unsettled, now).await?;
    }
}

/// Counts an outcome in the run's report and the metrics, and logs it.
fn record(report: &mut DeliveryReport, metrics: Option<&Metrics>, item: &Item, outcome: &Outcome) {
    let label = match outcome {
        Outcome::Sent => {
            report.sent += 1;
            "sent"
        }
        Outcome::Wait { reason, .. } => {
            tracing::info!(outbox_id = item.id, kind = %item.kind, attempts = item.attempts, %reason, "outbox notification waits");
            report.retrying += 1;
            "waiting"
        }
        Outcome::Retry { error, .. } => {
            tracing::warn!(outbox_id = item.id, kind = %item.kind, attempts = item.attempts, %error, "outbox delivery failed; will retry");
            report.retrying += 1;
            "retry"
        }
        Outcome::Failed { error } => {
            tracing::error!(outbox_id = item.id, kind = %item.kind, attempts = item.attempts, %error, "outbox delivery failed for good; `outbox retry` re-queues it");
            report.failed += 1;
            "failed"
        }
        Outcome::Skipped { reason } => {
            tracing::info!(outbox_id = item.id, kind = %item.kind, %reason, "outbox notification skipped");
            report.skipped += 1;
            "skipped"
        }
    };
    if let Some(m) = metrics {
        m.outbox_delivery(&item.kind, label);
    }
}

/// The stored states of the customers a claimed batch is addressed to, those known, read in
/// one statement: a statement per row was a quarter of the outbox's database time. Each row
/// decodes its own, so that one unreadable state is that row's outcome only.
async fn recipients(db: &Db, items: &[Item]) -> Result<HashMap<String, String>, StorageError> {
    let mut ids: Vec<&str> = items.iter().map(|i| i.customer_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    crate::read_models::get_many(db, Kind::Customer, &ids).await
}

/// A transient failure's outcome: tried again after the backoff, failed for good after
/// [`MAX_ATTEMPTS`].
fn retry_or_fail(item: &Item, now: i64, error: String) -> Outcome {
    if item.attempts >= MAX_ATTEMPTS {
        Outcome::Failed { error }
    } else {
        Outcome::Retry {
            at: now + backoff_secs(item.attempts),
            error,
        }
    }
}

/// [`retry_or_fail`] for a row waiting on something still to come, not for a failure.
fn wait_or_fail(item: &Item, now: i64, reason: String) -> Outcome {
    if item.attempts >= MAX_ATTEMPTS {
        Outcome::Failed { error: reason }
    } else {
        Outcome::Wait {
            at: now + backoff_secs(item.attempts),
            reason,
        }
    }
}

/// One attempt at one row, to `customer`'s stored state as read for the batch. Storage errors
/// abort the run (the claim lapses and another run takes the row over), except a stored state
/// that does not decode (see `deliver_due`); everything else is an outcome.
async fn attempt(
    db: &Db,
    mailer: &Mailer,
    billing_url: Option<&str>,
    item: &Item,
    customer: Option<&str>,
    now: i64,
) -> Result<Outcome, StorageError> {
    let Some(kind) = NotificationKind::parse(&item.kind) else {
        return Ok(Outcome::Failed {
            error: format!("unknown notification kind {}", item.kind),
        });
    };
    let details: NotificationDetails =
        serde_json::from_value(item.details.clone()).unwrap_or_default();
    // The customer's own event may not have arrived yet: then the address is not known yet.
    let customer = match customer {
        Some(json) => match crate::projector::state_from_json(Kind::Customer, json)? {
            Fact::Customer(c) => Some(c),
            _ => None,
        },
        None => None,
    };
    // Known only through a link (a subscription naming it) is not known: its own event with
    // the address is still to come.
    let Some(customer) = customer.filter(|c| c.view().is_some()) else {
        let reason = format!("customer {} is not known yet", item.customer_id);
        return Ok(wait_or_fail(item, now, reason));
    };
    if customer.deleted() {
        return Ok(Outcome::Skipped {
            reason: "the customer was deleted".into(),
        });
    }
    let Some(to) = customer.email().map(str::to_owned) else {
        return Ok(Outcome::Skipped {
            reason: "the customer has no email address".into(),
        });
    };
    if kind == NotificationKind::PaymentFailed {
        // Stripe's retry may have collected the money before this email went out.
        if let Some(status) = invoice_status(db, details.invoice.as_deref()).await? {
            if matches!(status.as_str(), "paid" | "void") {
                return Ok(Outcome::Skipped {
                    reason: format!("the invoice is {status} by now"),
                });
            }
        }
    }
    if kind == NotificationKind::AccessEnded {
        if let Some(other) =
            other_access(db, &item.customer_id, details.subscription.as_deref()).await?
        {
            return Ok(Outcome::Skipped {
                reason: format!("access continues through subscription {other}"),
            });
        }
    }
    let email = compose(
        kind,
        &details,
        &to,
        &item.dedupe_key,
        mailer.from(),
        billing_url,
    );
    Ok(match mailer.send(&email).await {
        Ok(()) => Outcome::Sent,
        Err(SendError::Permanent(error)) => Outcome::Failed { error },
        Err(SendError::Transient(error)) => retry_or_fail(item, now, error),
    })
}

async fn invoice_status(db: &Db, invoice: Option<&str>) -> Result<Option<String>, StorageError> {
    let Some(id) = invoice else {
        return Ok(None);
    };
    let state = crate::read_models::get(db, Kind::Invoice, id).await?;
    Ok(match state {
        Some(json) => match crate::projector::state_from_json(Kind::Invoice, &json)? {
            Fact::Invoice(i) => i.view().and_then(|v| v.status.clone()),
            _ => None,
        },
        None => None,
    })
}

/// Another subscription of the customer that still gives access, if any.
async fn other_access(
    db: &Db,
    customer: &str,
    ended: Option<&str>,
) -> Result<Option<String>, StorageError> {
    for json in
        crate::read_models::all_states(db, Kind::Subscription, StatesBy::CustomerId, customer)
            .await?
    {
        if let Fact::Subscription(s) = crate::projector::state_from_json(Kind::Subscription, &json)?
        {
            if Some(s.id.as_str()) == ended {
                continue;
            }
            if matches!(s.status(), Some("active" | "trialing" | "past_due")) {
                return Ok(Some(s.id));
            }
        }
    }
    Ok(None)
}

/// `serve`'s worker: delivers what is due every `every`, until told to stop. A run in progress
/// when the stop comes is finished (its claims would otherwise hold rows for minutes).
pub fn spawn_worker(
    db: Db,
    mailer: Arc<Mailer>,
    billing_url: Option<String>,
    metrics: Arc<Metrics>,
    every: Duration,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                _ = tick.tick() => {
                    let now = chrono::Utc::now().timestamp();
                    match deliver_due(&db, &mailer, billing_url.as_deref(), Some(&metrics), now).await {
                        Ok(r) if r.total() > 0 => tracing::info!(sent = r.sent, retrying = r.retrying, failed = r.failed, skipped = r.skipped, "outbox delivered"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %crate::store::error::chain(&e), "outbox delivery run failed; will retry"),
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_thirty_seconds_up_to_an_hour() {
        assert_eq!(backoff_secs(1), 30);
        assert_eq!(backoff_secs(2), 60);
        assert_eq!(backoff_secs(3), 120);
        assert_eq!(backoff_secs(7), 1920);
        assert_eq!(backoff_secs(8), 3600);
        assert_eq!(backoff_secs(MAX_ATTEMPTS), 3600);
    }
}
