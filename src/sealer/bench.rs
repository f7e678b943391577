//! The sealed log's benchmarks (`stripe-ledger bench --seal-ab`, `bench --seal N`).
//!
//! - `--seal-ab`: the ingest phases of `bench` against the same build with sealing off and on,
//!   alternating off, on, off, on in one run (the machine's load drifts; the pairs show how
//!   much), and the change of new events/s.
//! - `--seal N`: N generated events appended in bulk, then timed: sealing them all, a full
//!   `verify`, and 2000 sequential inclusion-proof requests over HTTP (p50, p99, proof size).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::bench::{self, BenchBackend, BenchOptions, Scratch};
use crate::seal::note::SigningKey;
use crate::store::seal::SealStore as _;
use crate::store::{Db, DbTarget};

/// The key every bench server seals with (32 bytes of 42, base64): a benchmark, not a secret.
pub const BENCH_SEED: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";
const BENCH_TOKEN: &str = "bench-audit-token-0123456789";

/// `bench --seal-ab`.
pub async fn run_ab(options: &BenchOptions) -> anyhow::Result<String> {
    let client = crate::trigger::http_client()?;
    let mut rows = Vec::new();
    for backend in &options.backend {
        for (round, sealing) in ["off", "on", "off", "on"].into_iter().enumerate() {
            let key = if sealing == "off" { "off" } else { BENCH_SEED };
            let scratch = Scratch::create(*backend, &options.postgres_admin_url).await?;
            let env = [("LEDGER_SIGNING_KEY", key)];
            let outcome =
                bench::run_phases(&client, options, *backend, &scratch.url, 0, &env).await;
            scratch.drop_database().await;
            for r in outcome?.into_iter().filter(|r| r.phase == "new") {
                eprintln!(
                    "{} round {round} sealing {sealing}: c={} {:.0} events/s",
                    bench::backend_name(*backend),
                    r.concurrency,
                    r.events_per_sec()
                );
                rows.push((round, sealing, r));
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| backend  | concurrency | round | sealing | new events/s | p99 ms | change vs the off before |"
    );
    let _ = writeln!(
        out,
        "|----------|-------------|-------|---------|--------------|--------|--------------------------|"
    );
    for (round, sealing, r) in &rows {
        let before = rows.iter().find(|(o, s, x)| {
            *o + 1 == *round
                && *s == "off"
                && x.backend == r.backend
                && x.concurrency == r.concurrency
        });
        let change = before.map_or_else(String::new, |(_, _, b)| {
            format!(
                "{:+.1} %",
                (r.events_per_sec() / b.events_per_sec() - 1.0) * 100.0
            )
        });
        let _ = writeln!(
            out,
            "| {:<8} | {:>11} | {:>5} | {:<7} | {:>12.0} | {:>6.2} | {:>24} |",
            bench::backend_name(r.backend),
            r.concurrency,
            round,
            sealing,
            r.events_per_sec(),
            r.p99.as_secs_f64() * 1e3,
            change
        );
    }
    Ok(out)
}

/// What `--seal N` measured on one backend.
struct SealRow {
    backend: BenchBackend,
    events: usize,
    seal: Duration,
    verify: Duration,
    proof_p50: Duration,
    proof_p99: Duration,
    proof_hashes: usize,
}

/// `bench --seal N`.
pub async fn run_seal(options: &BenchOptions, n: usize) -> anyhow::Result<String> {
    if n == 0 {
        bail!("--seal needs at least one event");
    }
    let mut rows = Vec::new();
    for backend in &options.backend {
        let scratch = Scratch::create(*backend, &options.postgres_admin_url).await?;
        let outcome = seal_one(*backend, &scratch.url, n).await;
        scratch.drop_database().await;
        rows.push(outcome?);
    }
    let bound = 32 * (usize::BITS - (n - 1).leading_zeros()) as usize;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| backend  | events    | seal s | sealed/s | verify s | verified/s | proof p50 ms | proof p99 ms | proof bytes (bound) |"
    );
    let _ = writeln!(
        out,
        "|----------|-----------|--------|----------|----------|------------|--------------|--------------|---------------------|"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {:<8} | {:>9} | {:>6.1} | {:>8.0} | {:>8.1} | {:>10.0} | {:>12.2} | {:>12.2} | {:>9} ({:>6}) |",
            bench::backend_name(r.backend),
            r.events,
            r.seal.as_secs_f64(),
            r.events as f64 / r.seal.as_secs_f64(),
            r.verify.as_secs_f64(),
            r.events as f64 / r.verify.as_secs_f64(),
            r.proof_p50.as_secs_f64() * 1e3,
            r.proof_p99.as_secs_f64() * 1e3,
            r.proof_hashes * 32,
            bound
        );
    }
    Ok(out)
}

/// The benches' sealing: the fixed bench key, no directory.
pub(crate) fn bench_sealing() -> anyhow::Result<super::Sealing> {
    let seed = <[u8; 32]>::try_from(base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        BENCH_SEED,
    )?)
    .map_err(|_| anyhow::anyhow!("the bench seed is 32 bytes"))?;
    Ok(super::Sealing {
        key: std::sync::Arc::new(SigningKey::from_seed("stripe-ledger/test", seed)?),
        origin: "stripe-ledger/test".into(),
        checkpoint_dir: None,
        checkpoint_interval: Duration::from_secs(60),
    })
}

async fn seal_one(backend: BenchBackend, url: &str, n: usize) -> anyhow::Result<SealRow> {
    let db = Db::connect(&DbTarget::parse(url)?, &Default::default()).await?;
    db.migrate().await?;
    bench::prefill_log(&db, n, backend).await?;
    let name = bench::backend_name(backend);
    let started = Instant::now();
    super::seal_all(&db).await?;
    let seal = started.elapsed();
    eprintln!("{name}: sealed {n} events in {:.1} s", seal.as_secs_f64());
    let sealing = bench_sealing()?;
    super::checkpoint(&db, &sealing, chrono::Utc::now().timestamp()).await?;
    let started = Instant::now();
    let report = super::verify::verify(&db, &sealing.key.verifier(), &[]).await?;
    let verify = started.elapsed();
    if !report.ok {
        bail!("verify found problems in a fresh log: {:?}", report.first);
    }
    eprintln!(
        "{name}: verified {n} events in {:.1} s",
        verify.as_secs_f64()
    );
    // 2000 entries spread over the log, looked up before the timing starts, then 200 others
    // that warm the fresh server up (its pool's connections and their prepared statements)
    // without being timed: the figure is the route's, not the server's start.
    let mut ids = Vec::new();
    for k in 0..PROOF_SAMPLES + PROOF_WARM_UP {
        let position = 1 + (k.wrapping_mul(2_654_435_761) % n as u64) as i64;
        let row = db.entries_between(position - 1, position).await?;
        ids.extend(row.into_iter().map(|e| e.event_id));
    }
    bench::skip_projection(&db).await?;
    db.close().await;
    let (timed, warm_up) = ids.split_at(ids.len().min(PROOF_SAMPLES as usize));
    let (p50, p99, hashes) = time_proofs(url, timed, warm_up).await?;
    Ok(SealRow {
        backend,
        events: n,
        seal,
        verify,
        proof_p50: p50,
        proof_p99: p99,
        proof_hashes: hashes,
    })
}

/// Timed proof requests, and untimed ones before them.
const PROOF_SAMPLES: u64 = 2000;
const PROOF_WARM_UP: u64 = 200;

/// One request at a time against a fresh server, after `warm_up` untimed ones: the latency of
/// the proof route alone.
async fn time_proofs(
    url: &str,
    ids: &[String],
    warm_up: &[String],
) -> anyhow::Result<(Duration, Duration, usize)> {
    let client = crate::trigger::http_client()?;
    let port = bench::free_port()?;
    let tokens = format!("audit:{BENCH_TOKEN}");
    let mut server = bench::spawn_server(url, port, &[("API_TOKENS", &tokens)])?;
    let base = format!("http://127.0.0.1:{port}");
    let outcome = async {
        bench::wait_ready(&client, &base, &mut server).await?;
        for id in warm_up {
            client
                .get(format!("{base}/api/audit/events/{id}/proof"))
                .bearer_auth(BENCH_TOKEN)
                .send()
                .await?
                .error_for_status()?;
        }
        let mut latencies = Vec::with_capacity(ids.len());
        let mut most = 0;
        for id in ids {
            let started = Instant::now();
            let response = client
                .get(format!("{base}/api/audit/events/{id}/proof"))
                .bearer_auth(BENCH_TOKEN)
                .send()
                .await?;
            let status = response.status();
            let bytes = response.bytes().await?;
            let body: serde_json::Value = serde_json::from_slice(&bytes).context("a proof body")?;
            latencies.push(started.elapsed());
            if !status.is_success() {
                bail!("proof of {id}: {status} {body}");
            }
            most = most.max(body["hashes"].as_array().map_or(0, Vec::len));
        }
        latencies.sort_unstable();
        anyhow::Ok((
            bench::percentile(&latencies, 0.50),
            bench::percentile(&latencies, 0.99),
            most,
        ))
    }
    .await;
    let _ = server.kill().await;
    outcome
}
