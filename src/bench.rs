//! `stripe-ledger bench`: webhook ingestion measured over real HTTP.
//!
//! For each backend it starts a fresh `stripe-ledger serve` child process on a new database,
//! posts N distinct signed events at each concurrency, then the same N again (duplicates), and
//! reports events/s, p50/p99 latency and the server's peak resident memory (VmHWM, reset
//! between phases through /proc/<pid>/clear_refs). Client and server share the machine, as they
//! would in CI; the numbers are for comparison between commits, not for marketing.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use tokio::process::{Child, Command};

use crate::event_log::{NewEntry, Source};
use crate::store::jobs::ScratchServer;
use crate::store::rebuild::RebuildStore as _;
use crate::store::{Db, DbTarget};
use crate::stripe::signature;

mod history;
pub use history::run_history;
/// `bench --console N`: the console's pages and exports over a log of N events.
pub mod console;

#[derive(Debug, Clone, Args)]
pub struct BenchOptions {
    /// Distinct events per phase. The default fits the seen-id cache (DEDUPE_CACHE_SIZE), so
    /// the duplicate phase measures retries as they usually arrive; run with
    /// DEDUPE_CACHE_SIZE=0 to measure duplicates answered by the database.
    #[arg(long, default_value_t = 10_000)]
    pub events: usize,
    /// Concurrency levels to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub concurrency: Vec<usize>,
    /// Backends to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sqlite,postgres"
    )]
    pub backend: Vec<BenchBackend>,
    /// Instead of ingestion: append this many generated events straight to a fresh log, then
    /// time `rebuild` over them (events/s and this process's peak RSS).
    #[arg(long)]
    pub rebuild: Option<usize>,
    /// Also run every phase against a database already holding this many logged and
    /// projected events (the rebuild's generated history, appended in bulk and projected by a
    /// timed rebuild), after the same phases on an empty one, and compare the two.
    #[arg(long)]
    pub prefill: Option<usize>,
    /// Instead of ingestion: a log of this many entries, `--object-entries` of them about one
    /// subscription (spread over the log), projected by a rebuild; then time history, as-of
    /// and explain of that subscription and its user (p50/p95 over `--samples` calls each).
    #[arg(long)]
    pub history: Option<usize>,
    /// With `--history`: the log entries about the measured subscription.
    #[arg(long, default_value_t = 1_000)]
    pub object_entries: usize,
    /// With `--history`: calls timed per operation.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Instead of ingestion: the console's page times and export rates over a log of this many
    /// generated events (`bench::console`).
    #[arg(long)]
    pub console: Option<usize>,
    /// The sealed log's ingest cost: every phase with `LEDGER_SIGNING_KEY=off` and with a key,
    /// alternating (off, on, off, on) in one run, and the change (see `sealer::bench`).
    #[arg(long)]
    pub seal_ab: bool,
    /// The sealed log over this many prefilled events: sealing them, `verify`, and the proof
    /// API's latency (see `sealer::bench`).
    #[arg(long)]
    pub seal: Option<usize>,
    /// A PostgreSQL server URL the bench may create (and drop) a scratch database on.
    /// (TLS is switched off by default: it is loopback, and it would dominate the profile.)
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
    )]
    pub postgres_admin_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchBackend {
    Sqlite,
    Postgres,
}

const SECRET: &str = "whsec_bench_0123456789abcdef";

#[derive(Debug, Clone)]
pub struct PhaseResult {
    pub backend: BenchBackend,
    /// Events in the log before the phases started (0: an empty database).
    pub prefilled: usize,
    pub phase: &'static str,
    pub concurrency: usize,
    pub events: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub peak_rss_kib: Option<u64>,
}

impl PhaseResult {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

pub struct Report(pub Vec<PhaseResult>);

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefill = self.0.iter().any(|r| r.prefilled > 0);
        let (head, rule) = if prefill {
            ("| log before ", "|------------")
        } else {
            ("", "")
        };
        writeln!(
            f,
            "{head}| backend  | phase      | concurrency | events | events/s | p50 ms | p99 ms | server peak RSS |"
        )?;
        writeln!(
            f,
            "{rule}|----------|------------|-------------|--------|----------|--------|--------|-----------------|"
        )?;
        for r in &self.0 {
            if prefill {
                write!(f, "| {:>10} ", r.prefilled)?;
            }
            writeln!(
                f,
                "| {:<8} | {:<10} | {:>11} | {:>6} | {:>8.0} | {:>6.2} | {:>6.2} | {:>15} |",
                match r.backend {
                    BenchBackend::Sqlite => "sqlite",
                    BenchBackend::Postgres => "postgres",
                },
                r.phase,
                r.concurrency,
                r.events,
                r.events_per_sec(),
                r.p50.as_secs_f64() * 1e3,
                r.p99.as_secs_f64() * 1e3,
                r.peak_rss_kib.map_or_else(
                    || "n/a".to_owned(),
                    |k| format!("{:.1} MiB", k as f64 / 1024.0)
                ),
            )?;
        }
        if prefill {
            write!(f, "\n{}", Comparison(self))?;
        }
        Ok(())
    }
}

/// `bench --prefill`: each prefilled phase's rate against the same phase on the empty
/// database of the same run.
pub struct Comparison<'a>(pub &'a Report);

impl std::fmt::Display for Comparison<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "| backend  | phase      | concurrency | empty events/s | log before | events/s | change |"
        )?;
        writeln!(
            f,
            "|----------|------------|-------------|----------------|------------|----------|--------|"
        )?;
        for full in self.0 .0.iter().filter(|r| r.prefilled > 0) {
            let Some(empty) = self.0 .0.iter().find(|r| {
                r.prefilled == 0
                    && r.backend == full.backend
                    && r.phase == full.phase
                    && r.concurrency == full.concurrency
            }) else {
                continue;
            };
            writeln!(
                f,
                "| {:<8} | {:<10} | {:>11} | {:>14.0} | {:>10} | {:>8.0} | {:>+5.1} % |",
                backend_name(full.backend),
                full.phase,
                full.concurrency,
                empty.events_per_sec(),
                full.prefilled,
                full.events_per_sec(),
                (full.events_per_sec() / empty.events_per_sec() - 1.0) * 100.0,
            )?;
        }
        Ok(())
    }
}

pub(crate) fn backend_name(backend: BenchBackend) -> &'static str {
    match backend {
        BenchBackend::Sqlite => "sqlite",
        BenchBackend::Postgres => "postgres",
    }
}

/// Results of `bench --rebuild`.
pub struct RebuildBench(pub Vec<(BenchBackend, usize, Duration, Option<u64>)>);

impl std::fmt::Display for RebuildBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "| backend  | events    | rebuild s | events/s | peak RSS (bench process) |"
        )?;
        writeln!(
            f,
            "|----------|-----------|-----------|----------|--------------------------|"
        )?;
        for (backend, events, elapsed, rss) in &self.0 {
            writeln!(
                f,
                "| {:<8} | {:>9} | {:>9.1} | {:>8.0} | {:>24} |",
                match backend {
                    BenchBackend::Sqlite => "sqlite",
                    BenchBackend::Postgres => "postgres",
                },
                events,
                elapsed.as_secs_f64(),
                *events as f64 / elapsed.as_secs_f64(),
                rss.map_or_else(
                    || "n/a".to_owned(),
                    |k| format!("{:.1} MiB", k as f64 / 1024.0)
                ),
            )?;
        }
        Ok(())
    }
}

/// Appends `n` generated events (customers, subscriptions, invoices over n/20 users) and times
/// a full rebuild of the read models from them.
pub async fn run_rebuild(options: &BenchOptions, n: usize) -> anyhow::Result<RebuildBench> {
    let mut results = Vec::new();
    for backend in &options.backend {
        let scratch = Scratch::create(*backend, &options.postgres_admin_url).await?;
        let outcome = async {
            let db = Db::connect(&DbTarget::parse(&scratch.url)?, &Default::default()).await?;
            db.migrate().await?;
            prefill_log(&db, n, *backend).await?;
            let timed = timed_rebuild(&db).await;
            db.close().await;
            timed
        }
        .await;
        scratch.drop_database().await;
        let (events, elapsed, rss) = outcome?;
        results.push((*backend, events, elapsed, rss));
    }
    Ok(RebuildBench(results))
}

/// A full rebuild with progress: (events, elapsed, this process's peak RSS during it).
async fn timed_rebuild(db: &Db) -> anyhow::Result<(usize, Duration, Option<u64>)> {
    reset_peak_rss(Some(std::process::id()));
    let started = Instant::now();
    let report = crate::projector::rebuild(
        db,
        &crate::projector::RebuildOptions {
            progress: true,
            ..Default::default()
        },
    )
    .await?;
    let elapsed = started.elapsed();
    if !report.skipped.is_empty() {
        bail!(
            "the generated history has undecodable entries: {:?}",
            report.skipped
        );
    }
    Ok((report.events, elapsed, peak_rss_kib(std::process::id())))
}

/// For a bench whose server reads only the log and the sealed tree (the console's event pages,
/// the proof API): moves the catch-up checkpoint past the prefilled entries, which are never
/// projected, so the server does not spend the measured phase folding a million entries in
/// the background. The scratch database's read models are left empty.
pub(crate) async fn skip_projection(db: &Db) -> anyhow::Result<()> {
    let last = crate::event_log::last_position(db).await?;
    crate::projector::skip_catch_up_to(db, last).await?;
    Ok(())
}

/// Appends `n` generated events (`generated_event`) in bulk: built on a blocking thread while
/// the previous batch is inserted, one multi-row statement per batch.
pub(crate) async fn prefill_log(db: &Db, n: usize, backend: BenchBackend) -> anyhow::Result<()> {
    let users = (n / 20).max(1);
    prefill_with(db, n, backend, move |i| generated_entry(i, users)).await
}

/// Appends the entries `entry(0..n)` in bulk, as [`prefill_log`] does.
async fn prefill_with(
    db: &Db,
    n: usize,
    backend: BenchBackend,
    entry: impl Fn(usize) -> anyhow::Result<NewEntry> + Send + 'static,
) -> anyhow::Result<()> {
    const BATCH: usize = 5_000;
    let (sender, mut batches) = tokio::sync::mpsc::channel::<Vec<NewEntry>>(2);
    let generator = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        for start in (0..n).step_by(BATCH) {
            let batch = (start..(start + BATCH).min(n))
                .map(&entry)
                .collect::<anyhow::Result<Vec<_>>>()?;
            if sender.blocking_send(batch).is_err() {
                break;
            }
        }
        Ok(())
    });
    let started = Instant::now();
    let mut appended = 0;
    while let Some(batch) = batches.recv().await {
        let refs: Vec<&NewEntry> = batch.iter().collect();
        db.bench_bulk_append(&refs).await?;
        appended += batch.len();
        if appended % 100_000 < BATCH {
            eprintln!(
                "{}: appended {appended} events ({:.0}/s)",
                backend_name(backend),
                appended as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    generator.await.context("the event generator panicked")??;
    Ok(())
}

/// The i-th generated event as a log entry of source `api_backfill`.
fn generated_entry(i: usize, users: usize) -> anyhow::Result<NewEntry> {
    entry_of(generated_event(i, users), Source::ApiBackfill)
}

/// A generated event body as a log entry of `source`.
fn entry_of(body: Vec<u8>, source: Source) -> anyhow::Result<NewEntry> {
    use sha2::Digest as _;
    Ok(NewEntry {
        envelope: ledger_projections::Envelope::parse(&body)?,
        source,
        raw_body_sha256: hex::encode(sha2::Sha256::digest(&body)),
        payload: String::from_utf8(body)?,
        payload_redacted: false,
        verification: None,
        received_at: chrono::Utc::now(),
    })
}

/// A fresh database holding `n` generated events, logged and projected (by a rebuild, timed);
/// the catch-up checkpoint is moved past them, as `serve` would have it after projecting them.
async fn prefilled_database(
    backend: BenchBackend,
    admin_url: &str,
    n: usize,
) -> anyhow::Result<(Scratch, (usize, Duration, Option<u64>))> {
    let scratch = Scratch::create(backend, admin_url).await?;
    let outcome = async {
        let db = Db::connect(&DbTarget::parse(&scratch.url)?, &Default::default()).await?;
        db.migrate().await?;
        prefill_log(&db, n, backend).await?;
        let timed = timed_rebuild(&db).await?;
        // Every entry is projected (the rebuild reported none skipped): without this, the
        // server's catch-up would re-project the whole log during the measured phases.
        crate::projector::skip_catch_up_to(&db, crate::event_log::last_position(&db).await?)
            .await?;
        // As `serve` would have the log after running over it: sealed (else its sealer hashes a
        // million entries during the measured phases), with planner statistics, and the bulk
        // load's pages on disk.
        crate::sealer::seal_all(&db).await?;
        {
            use crate::store::rebuild::RebuildStore as _;
            db.bench_settle().await?;
        }
        db.close().await;
        anyhow::Ok(timed)
    }
    .await;
    match outcome {
        Ok(timed) => Ok((scratch, timed)),
        Err(e) => {
            scratch.drop_database().await;
            Err(e)
        }
    }
}

/// The i-th event of a generated history: per user a customer, a subscription that is created,
/// updated many times, and invoices that fail and get paid.
fn generated_event(i: usize, users: usize) -> Vec<u8> {
    let user = i % users;
    let step = i / users;
    let created = 1_700_000_000 + (step as i64) * 3_600;
    let (event_type, object) = match step {
        0 => (
            "customer.created",
            serde_json::json!({"id": format!("cus_b{user}"), "object": "customer",
                "email": format!("u{user}@example.com"), "metadata": {"user_id": format!("user_{user}")}}),
        ),
        s if s % 3 == 1 => (
            "invoice.paid",
            serde_json::json!({"id": format!("in_b{user}_{s}"), "object": "invoice", "customer": format!("cus_b{user}"),
                "status": "paid", "amount_due": 1500, "amount_paid": 1500, "currency": "usd", "attempt_count": 1,
                "parent": {"type": "subscription_details", "subscription_details": {"subscription": format!("sub_b{user}")}}}),
        ),
        s => (
            if s == 2 {
                "customer.subscription.created"
            } else {
                "customer.subscription.updated"
            },
            serde_json::json!({"id": format!("sub_b{user}"), "object": "subscription", "customer": format!("cus_b{user}"),
                "status": if s % 7 == 5 { "past_due" } else { "active" }, "cancel_at_period_end": false,
                "latest_invoice": format!("in_b{user}_{}", s - 1), "metadata": {},
                "items": {"object": "list", "data": [{"id": format!("si_b{user}"), "quantity": 1 + (s % 3),
                    "current_period_start": created, "current_period_end": created + 2_592_000,
                    "price": {"id": "price_tier1", "unit_amount": 1500, "currency": "usd", "recurring": {"interval": "month"}}}]}}),
        ),
    };
    serde_json::to_vec(&serde_json::json!({
        "id": format!("evt_b{i:09}"), "object": "event", "api_version": "2025-03-31.basil",
        "created": created, "livemode": false, "type": event_type, "data": {"object": object}
    }))
    .expect("static JSON serialises")
}

pub async fn run(options: BenchOptions) -> anyhow::Result<Report> {
    if options.events == 0 || options.concurrency.contains(&0) {
        bail!("--events and --concurrency must be positive");
    }
    let client = crate::trigger::http_client()?;
    let mut results = Vec::new();
    for backend in &options.backend {
        let scratch = Scratch::create(*backend, &options.postgres_admin_url).await?;
        let outcome = run_phases(&client, &options, *backend, &scratch.url, 0, &[]).await;
        scratch.drop_database().await;
        results.extend(outcome?);
        if let Some(n) = options.prefill.filter(|&n| n > 0) {
            let (scratch, (events, elapsed, rss)) =
                prefilled_database(*backend, &options.postgres_admin_url, n).await?;
            eprintln!(
                "{}",
                RebuildBench(vec![(*backend, events, elapsed, rss)])
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
            );
            let outcome = run_phases(&client, &options, *backend, &scratch.url, n, &[]).await;
            scratch.drop_database().await;
            results.extend(outcome?);
        }
    }
    Ok(Report(results))
}

/// Every phase against a `serve` child process on `database_url` (with `env` added to its
/// environment).
pub(crate) async fn run_phases(
    client: &reqwest::Client,
    options: &BenchOptions,
    backend: BenchBackend,
    database_url: &str,
    prefilled: usize,
    env: &[(&str, &str)],
) -> anyhow::Result<Vec<PhaseResult>> {
    let port = free_port()?;
    let mut server = spawn_server(database_url, port, env)?;
    let base = format!("http://127.0.0.1:{port}");
    let outcome = async {
        wait_ready(client, &base, &mut server).await?;
        let url = format!("{base}/webhooks/stripe");
        let pid = server.id();
        let mut phase_results = Vec::new();
        for (round, &concurrency) in options.concurrency.iter().enumerate() {
            let bodies = Arc::new(generate(round, options.events));
            for phase in ["new", "duplicate"] {
                reset_peak_rss(pid);
                let (elapsed, mut latencies) =
                    post_all(client, &url, bodies.clone(), concurrency).await?;
                latencies.sort_unstable();
                phase_results.push(PhaseResult {
                    backend,
                    prefilled,
                    phase,
                    concurrency,
                    events: bodies.len(),
                    elapsed,
                    p50: percentile(&latencies, 0.50),
                    p99: percentile(&latencies, 0.99),
                    peak_rss_kib: pid.and_then(peak_rss_kib),
                });
                eprintln!(
                    "{}",
                    // The row after the header and the rule.
                    Report(vec![phase_results.last().cloned().expect("just pushed")])
                        .to_string()
                        .lines()
                        .nth(2)
                        .unwrap_or_default()
                );
            }
        }
        anyhow::Ok(phase_results)
    }
    .await;
    let _ = server.kill().await;
    outcome
}

/// A realistic `customer.subscription.updated` body of about 1.5 KiB.
fn generate(round: usize, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let created = 1_700_000_000 + i as i64;
            serde_json::to_vec(&serde_json::json!({
                "id": format!("evt_bench_{round}_{i:08}"),
                "object": "event",
                "api_version": "2025-03-31.basil",
                "created": created,
                "livemode": false,
                "pending_webhooks": 1,
                "request": {"id": null, "idempotency_key": null},
                "type": "customer.subscription.updated",
                "data": {
                    "object": {
                        "id": format!("sub_bench_{}", i % 5000),
                        "object": "subscription",
                        "customer": format!("cus_bench_{}", i % 5000),
                        "status": "active",
                        "cancel_at_period_end": false,
                        "collection_method": "charge_automatically",
                        "created": created - 86_400,
                        "currency": "usd",
                        "latest_invoice": format!("in_bench_{i}"),
                        "livemode": false,
                        "metadata": {"user_id": format!("user_{}", i % 5000)},
                        "items": {"object": "list", "has_more": false, "data": [{
                            "id": format!("si_bench_{i}"),
                            "object": "subscription_item",
                            "current_period_start": created,
                            "current_period_end": created + 2_592_000,
                            "quantity": 1,
                            "price": {
                                "id": "price_tier1", "object": "price", "active": true,
                                "currency": "usd", "unit_amount": 1500, "type": "recurring",
                                "recurring": {"interval": "month", "interval_count": 1},
                                "product": "prod_tier1"
                            }
                        }]}
                    },
                    "previous_attributes": {"status": "trialing"}
                }
            }))
            .expect("static JSON serialises")
        })
        .collect()
}

async fn post_all(
    client: &reqwest::Client,
    url: &str,
    bodies: Arc<Vec<Vec<u8>>>,
    concurrency: usize,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let timestamp = chrono::Utc::now().timestamp();
    // Signing is Stripe's work, not ours: done before the clock starts.
    let headers: Arc<Vec<String>> = Arc::new(
        bodies
            .iter()
            .map(|b| signature::sign(b, SECRET, timestamp))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, bodies, headers, next) = (
            client.clone(),
            url.to_owned(),
            bodies.clone(),
            headers.clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("stripe-signature", &headers[i])
                    .body(body.clone())
                    .send()
                    .await?;
                let status = response.status();
                let _ = response.bytes().await?;
                if !status.is_success() {
                    bail!("event {i} answered {status}");
                }
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(bodies.len());
    for worker in workers {
        latencies.extend(worker.await.context("bench worker panicked")??);
    }
    Ok((started.elapsed(), latencies))
}

pub(crate) fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The server sealing with the bench key unless `env` says otherwise.
pub(crate) fn spawn_server(
    database_url: &str,
    port: u16,
    env: &[(&str, &str)],
) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("cannot find the stripe-ledger binary")?;
    Command::new(exe)
        .arg("serve")
        .env("LEDGER_SIGNING_KEY", crate::sealer::bench::BENCH_SEED)
        .envs(env.iter().copied())
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", database_url)
        .env("STRIPE_WEBHOOK_SECRET", SECRET)
        .env_remove("STRIPE_SECRET_KEY")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("could not start the server")
}

pub(crate) async fn wait_ready(
    client: &reqwest::Client,
    base: &str,
    server: &mut Child,
) -> anyhow::Result<()> {
    for _ in 0..200 {
        if let Some(status) = server.try_wait()? {
            bail!("the server exited during startup ({status})");
        }
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the server did not become ready within 10 s")
}

fn reset_peak_rss(pid: Option<u32>) {
    if let Some(pid) = pid {
        // "5" resets VmHWM to the current RSS (Linux 4.0+); harmless where unsupported.
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    }
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A throwaway database for one backend's run.
pub(crate) struct Scratch {
    pub(crate) url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(std::path::PathBuf),
    Postgres { admin_url: String, name: String },
}

impl Scratch {
    pub(crate) async fn create(backend: BenchBackend, admin_url: &str) -> anyhow::Result<Scratch> {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        match backend {
            BenchBackend::Sqlite => {
                let path = std::env::temp_dir().join(format!("stripe-ledger-bench-{tag}.db"));
                Ok(Scratch {
                    url: format!("sqlite://{}", path.display()),
                    cleanup: Cleanup::File(path),
                })
            }
            BenchBackend::Postgres => {
                let name = format!("stripe_ledger_bench_{tag}");
                let mut server = ScratchServer::connect(admin_url)
                    .await
                    .context("could not connect to --postgres-admin-url")?;
                server.create_database(&name).await?;
                let url = pg_url(admin_url, &name);
                Ok(Scratch {
                    url,
                    cleanup: Cleanup::Postgres {
                        admin_url: admin_url.to_owned(),
                        name,
                    },
                })
            }
        }
    }

    pub(crate) async fn drop_database(self) {
        match self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::Postgres { admin_url, name } => {
                if let Ok(mut server) = ScratchServer::connect(&admin_url).await {
                    let _ = server.drop_database(&name).await;
                }
            }
        }
    }
}

// Swap the database name in the admin URL's path, keeping credentials and options.
fn pg_url(admin_url: &str, name: &str) -> String {
    let (base, query) = admin_url
        .split_once('?')
        .map_or((admin_url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let prefix = path_start.map_or(base, |i| &base[..i]);
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_url_keeps_credentials_and_options() {
        assert_eq!(
            pg_url("postgres://u:p@h:1/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
        assert_eq!(pg_url("postgres://h", "x"), "postgres://h/x");
    }

    #[test]
    fn the_prefill_comparison_sets_each_prefilled_phase_against_the_empty_one() {
        let row = |prefilled, secs| PhaseResult {
            backend: BenchBackend::Postgres,
            prefilled,
            phase: "new",
            concurrency: 16,
            events: 1000,
            elapsed: Duration::from_secs(secs),
            p50: Duration::ZERO,
            p99: Duration::ZERO,
            peak_rss_kib: None,
        };
        let text = Report(vec![row(0, 1), row(1_000_000, 2)]).to_string();
        let last = text.lines().last().unwrap();
        assert!(
            last.contains("|           1000 |    1000000 |      500 | -50.0 % |"),
            "{text}"
        );
        // Without a prefill the table is the plain one.
        assert!(!Report(vec![row(0, 1)]).to_string().contains("log before"));
    }

    #[test]
    fn percentiles_pick_the_ranked_sample() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 0.99), Duration::from_millis(99));
    }
}
