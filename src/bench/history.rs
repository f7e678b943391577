//! `stripe-ledger bench --history N`: history, as-of and explain of one subscription with
//! `--object-entries` log entries (spread over a log of N), in process, after a rebuild has
//! projected the log and filled `object_touches`.

use std::time::{Duration, Instant};

use ledger_projections::Cut;

use super::{backend_name, entry_of, generated_entry, prefill_with, timed_rebuild};
use super::{BenchBackend, BenchOptions, Scratch};
use crate::event_log::Source;
use crate::history::{self, HistoryQuery, ObjectKind};
use crate::store::{Db, DbTarget};

/// One operation's latencies.
pub struct Timing {
    pub backend: BenchBackend,
    pub log: usize,
    pub object: usize,
    pub operation: &'static str,
    pub samples: Vec<Duration>,
}

impl Timing {
    fn quantile(&self, q: f64) -> Duration {
        let i = ((self.samples.len() as f64 - 1.0) * q).round() as usize;
        self.samples[i.min(self.samples.len() - 1)]
    }
}

pub struct HistoryBench(pub Vec<Timing>, pub Vec<(BenchBackend, Duration)>);

impl std::fmt::Display for HistoryBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "| backend  | log entries | object entries | operation            | samples | p50 ms | p95 ms | max ms |"
        )?;
        writeln!(
            f,
            "|----------|-------------|----------------|----------------------|---------|--------|--------|--------|"
        )?;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        for t in &self.0 {
            writeln!(
                f,
                "| {:<8} | {:>11} | {:>14} | {:<20} | {:>7} | {:>6.1} | {:>6.1} | {:>6.1} |",
                backend_name(t.backend),
                t.log,
                t.object,
                t.operation,
                t.samples.len(),
                ms(t.quantile(0.5)),
                ms(t.quantile(0.95)),
                ms(*t.samples.last().expect("samples")),
            )?;
        }
        for (backend, rebuild) in &self.1 {
            writeln!(
                f,
                "\n{}: the rebuild that projected the log and filled object_touches took {:.1} s",
                backend_name(*backend),
                rebuild.as_secs_f64()
            )?;
        }
        Ok(())
    }
}

const T: i64 = 1_700_000_000;

/// The j-th entry about the measured subscription: its customer (as `/api/checkout` logs it,
/// which links the user), its creation, then renewals that fail, get paid, and updates.
fn hot_entry(j: usize) -> anyhow::Result<crate::event_log::NewEntry> {
    let created = T + j as i64 * 600;
    let invoice = |status: &str, m: usize| {
        serde_json::json!({"id": format!("in_hot_{m}"), "object": "invoice", "customer": "cus_hot",
            "status": status, "amount_due": 1500, "amount_paid": if status == "paid" { 1500 } else { 0 },
            "currency": "usd", "attempt_count": 1, "billing_reason": "subscription_cycle",
            "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_hot"}}})
    };
    let subscription = |quantity: usize| {
        serde_json::json!({"id": "sub_hot", "object": "subscription", "customer": "cus_hot",
            "status": "active", "cancel_at_period_end": false, "metadata": {},
            "items": {"object": "list", "data": [{"id": "si_hot", "quantity": quantity,
                "current_period_start": created, "current_period_end": created + 2_592_000,
                "price": {"id": "price_tier1", "unit_amount": 1500, "currency": "usd",
                          "recurring": {"interval": "month"}}}]}})
    };
    let (event_type, object, source) = match j {
        0 => (
            "customer.created",
            serde_json::json!({"id": "cus_hot", "object": "customer", "email": "hot@example.com",
                "metadata": {"user_id": "user_hot"}}),
            Source::ApiResponse,
        ),
        1 => (
            "customer.subscription.created",
            subscription(1),
            Source::ApiBackfill,
        ),
        j => {
            let m = (j - 2) / 3;
            match (j - 2) % 3 {
                0 => (
                    "invoice.payment_failed",
                    invoice("open", m),
                    Source::ApiBackfill,
                ),
                1 => ("invoice.paid", invoice("paid", m), Source::ApiBackfill),
                _ => (
                    "customer.subscription.updated",
                    subscription(1 + m % 3),
                    Source::ApiBackfill,
                ),
            }
        }
    };
    let body = serde_json::to_vec(&serde_json::json!({
        "id": format!("evt_hot_{j:06}"), "object": "event", "api_version": "2025-03-31.basil",
        "created": created, "livemode": false, "type": event_type, "data": {"object": object}
    }))?;
    entry_of(body, source)
}

/// Builds the log on each backend and times each operation `options.samples` times.
pub async fn run_history(options: &BenchOptions, n: usize) -> anyhow::Result<HistoryBench> {
    let k = options.object_entries.clamp(2, n.max(2));
    let mut timings = Vec::new();
    let mut rebuilds = Vec::new();
    for backend in &options.backend {
        let scratch = Scratch::create(*backend, &options.postgres_admin_url).await?;
        let outcome = async {
            let db = Db::connect(&DbTarget::parse(&scratch.url)?, &Default::default()).await?;
            db.migrate().await?;
            let users = (n / 20).max(1);
            let stride = (n / k).max(1);
            prefill_with(&db, n, *backend, move |i| match (i % stride, i / stride) {
                (0, j) if j < k => hot_entry(j),
                _ => generated_entry(i, users),
            })
            .await?;
            let (_, rebuild, _) = timed_rebuild(&db).await?;
            rebuilds.push((*backend, rebuild));
            // Sealed and signed, as a service with a key runs: explain cites proofs.
            crate::sealer::seal_all(&db).await?;
            let sealing = crate::sealer::bench::bench_sealing()?;
            crate::sealer::checkpoint(&db, &sealing, chrono::Utc::now().timestamp()).await?;
            let measured = measure(&db, *backend, n, k, options.samples.max(1)).await;
            db.close().await;
            measured
        }
        .await;
        scratch.drop_database().await;
        timings.extend(outcome?);
    }
    Ok(HistoryBench(timings, rebuilds))
}

async fn measure(
    db: &Db,
    backend: BenchBackend,
    n: usize,
    k: usize,
    samples: usize,
) -> anyhow::Result<Vec<Timing>> {
    let now = chrono::Utc::now().timestamp();
    let grace = 7 * 86_400;
    let sub = ObjectKind::Subscription;
    let first_page = HistoryQuery::parse(sub, "sub_hot", &Default::default())?;
    let middle = history::resolve(db, Cut::Position(n as i64 / 2), now).await?;
    let mut out = Vec::new();
    for operation in [
        "history (first page)",
        "as-of (middle)",
        "explain (now)",
        "entitlement as-of",
    ] {
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            let started = Instant::now();
            match operation {
                "history (first page)" => {
                    let page = history::history_page(db, sub, "sub_hot", &first_page, now).await?;
                    anyhow::ensure!(!page.data.is_empty(), "the history is empty");
                }
                "as-of (middle)" => {
                    history::state_as_of(db, sub, "sub_hot", &middle).await?;
                }
                "explain (now)" => {
                    let (e, _) = history::explain(db, "user_hot", None, now, grace).await?;
                    anyhow::ensure!(
                        e.entitlement.subscription_id.as_deref() == Some("sub_hot"),
                        "explain did not find the subscription"
                    );
                    // The API's body, with the cited entries' inclusion proofs.
                    let mut body = crate::http::explanation_json(&e);
                    crate::http::with_inclusion_proofs(db, &mut body)
                        .await
                        .map_err(|e| anyhow::anyhow!("inclusion proofs: {e:?}"))?;
                    anyhow::ensure!(
                        !body["inputs"][0]["inclusion_proof"].is_null(),
                        "explain cited no proof"
                    );
                }
                _ => {
                    history::explain(db, "user_hot", Some(middle.cut), now, grace).await?;
                }
            }
            times.push(started.elapsed());
        }
        times.sort();
        out.push(Timing {
            backend,
            log: n,
            object: k,
            operation,
            samples: times,
        });
    }
    Ok(out)
}
