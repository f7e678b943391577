//! `stripe-ledger bench --console N`: the console against a log of N generated events (the
//! rebuild bench's history, appended in bulk), over real HTTP to a `serve` child process.
//!
//! 1. Pages: each console page (the list unfiltered and with each kind of filter, the second
//!    page, an event, the jump box, integrity) is fetched [`ROUNDS`] times in a row after
//!    [`WARMUP`] untimed fetches; the report gives p50, p95 and the slowest per page.
//! 2. Exports: the JSONL and CSV exports of a filter matching [`EXPORT_EVENTS`] entries (two
//!    hours of the generated history), read to the end; the report gives entries/s and the
//!    server's peak resident memory during the export (VmHWM, reset just before).

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::{
    backend_name, free_port, peak_rss_kib, percentile, prefill_log, reset_peak_rss, wait_ready,
    BenchBackend, BenchOptions, Scratch,
};
use crate::store::{Db, DbTarget};

pub const ROUNDS: usize = 40;
pub const WARMUP: usize = 3;
/// Entries the measured exports cover (with N ≥ 100,000).
pub const EXPORT_EVENTS: usize = 100_000;

const TOKEN: &str = "bench-console-audit-token-0123456789";

/// One page's timings.
pub struct PageTiming {
    pub backend: BenchBackend,
    pub name: &'static str,
    pub p50: Duration,
    pub p95: Duration,
    pub max: Duration,
}

/// One export's rate and memory.
pub struct ExportTiming {
    pub backend: BenchBackend,
    pub format: &'static str,
    pub events: usize,
    pub bytes: usize,
    pub elapsed: Duration,
    pub peak_rss_kib: Option<u64>,
}

pub struct ConsoleBench {
    pub events: usize,
    pub pages: Vec<PageTiming>,
    pub exports: Vec<ExportTiming>,
}

impl std::fmt::Display for ConsoleBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        writeln!(
            f,
            "Console pages over a log of {} events ({ROUNDS} fetches each):\n",
            self.events
        )?;
        writeln!(
            f,
            "| backend  | page                                  | p50 ms | p95 ms | max ms |"
        )?;
        writeln!(
            f,
            "|----------|---------------------------------------|--------|--------|--------|"
        )?;
        for p in &self.pages {
            writeln!(
                f,
                "| {:<8} | {:<37} | {:>6.1} | {:>6.1} | {:>6.1} |",
                backend_name(p.backend),
                p.name,
                ms(p.p50),
                ms(p.p95),
                ms(p.max)
            )?;
        }
        writeln!(f, "\nExports:\n")?;
        writeln!(
            f,
            "| backend  | format | events  | MiB   | seconds | events/s | server peak RSS |"
        )?;
        writeln!(
            f,
            "|----------|--------|---------|-------|---------|----------|-----------------|"
        )?;
        for e in &self.exports {
            writeln!(
                f,
                "| {:<8} | {:<6} | {:>7} | {:>5.1} | {:>7.2} | {:>8.0} | {:>15} |",
                backend_name(e.backend),
                e.format,
                e.events,
                e.bytes as f64 / 1_048_576.0,
                e.elapsed.as_secs_f64(),
                e.events as f64 / e.elapsed.as_secs_f64().max(1e-9),
                e.peak_rss_kib.map_or_else(
                    || "n/a".to_owned(),
                    |k| format!("{:.1} MiB", k as f64 / 1024.0)
                )
            )?;
        }
        Ok(())
    }
}

pub async fn run(options: &BenchOptions, n: usize) -> anyhow::Result<ConsoleBench> {
    if n < 1_000 {
        bail!("--console needs at least 1000 events");
    }
    let mut report = ConsoleBench {
        events: n,
        pages: Vec::new(),
        exports: Vec::new(),
    };
    for backend in &options.backend {
        let scratch = Scratch::create(*backend, &options.postgres_admin_url).await?;
        let outcome = measure(*backend, &scratch.url, n, &mut report).await;
        scratch.drop_database().await;
        outcome?;
    }
    Ok(report)
}

async fn measure(
    backend: BenchBackend,
    url: &str,
    n: usize,
    report: &mut ConsoleBench,
) -> anyhow::Result<()> {
    let db = Db::connect(&DbTarget::parse(url)?, &Default::default()).await?;
    db.migrate().await?;
    prefill_log(&db, n, backend).await?;
    // A log of a million entries has been vacuumed and analysed by autovacuum long before;
    // one appended in a minute has not, and the planner would measure its ignorance instead.
    {
        use crate::store::ui::UiStore as _;
        db.ui_bench_settle_log().await?;
    }
    super::skip_projection(&db).await?;
    db.close().await;
    let port = free_port()?;
    let tokens = format!("audit:{TOKEN}");
    let mut server = super::spawn_server(url, port, &[("API_TOKENS", &tokens)])?;
    let base = format!("http://127.0.0.1:{port}");
    crate::install_crypto_provider();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let outcome = async {
        wait_ready(&client, &base, &mut server).await?;
        let cookie = sign_in(&client, &base).await?;
        let session = Session {
            client: &client,
            base: &base,
            cookie: &cookie,
        };
        for (name, path) in pages(&session, n).await? {
            report
                .pages
                .push(time_page(&session, backend, name, &path).await?);
            eprintln!("{}: {name} done", backend_name(backend));
        }
        for format in ["jsonl", "csv"] {
            report
                .exports
                .push(export(&session, backend, format, server.id(), n).await?);
        }
        anyhow::Ok(())
    }
    .await;
    let _ = server.kill().await;
    outcome
}

struct Session<'a> {
    client: &'a reqwest::Client,
    base: &'a str,
    cookie: &'a str,
}

impl Session<'_> {
    async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie)
            .send()
            .await?;
        let status = response.status().as_u16();
        if status != 200 && status != 303 {
            bail!("GET {path} answered {status}");
        }
        Ok(response)
    }
}

/// Signs in as a browser does: opens the form (its nonce cookie and `csrf` field), posts it.
async fn sign_in(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let form = client.get(format!("{base}/ui/login")).send().await?;
    let nonce = first_cookie(form.headers()).context("the sign-in form set no cookie")?;
    let html = form.text().await?;
    let marker = "name=\"csrf\" value=\"";
    let csrf = html
        .split_once(marker)
        .and_then(|(_, rest)| rest.split('"').next())
        .context("the sign-in form has no csrf field")?;
    let response = client
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "same-origin")
        .header("cookie", nonce)
        .body(format!("token={TOKEN}&csrf={}", crate::ui::urlencode(csrf)))
        .send()
        .await?;
    // A refused sign-in sets a cookie too (a fresh form's nonce): only a 303 is a session.
    if response.status().as_u16() != 303 {
        bail!("the sign-in answered {}", response.status());
    }
    first_cookie(response.headers()).context("the sign-in set no cookie")
}

/// `name=value` of the first `Set-Cookie` (on a sign-in, the session's).
fn first_cookie(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

/// The pages measured, with concrete ids and times of the generated history (`n / 20` users,
/// one hour of Stripe time per step of it).
async fn pages(session: &Session<'_>, n: usize) -> anyhow::Result<Vec<(&'static str, String)>> {
    let users = (n / 20).max(1);
    let middle = format!("evt_b{:09}", n / 2);
    let hour = |step: usize| 1_700_000_000 + 3_600 * step as i64;
    let first = session.get("/ui/events").await?.text().await?;
    let older = first
        .split("<a href=\"")
        .find_map(|s| {
            s.split_once("\" rel=\"next\"")
                .map(|(href, _)| href.replace("&#38;", "&"))
        })
        .context("the first page has no Older link")?;
    Ok(vec![
        ("events, newest", "/ui/events".to_owned()),
        ("events, second page", older),
        (
            "events, type=invoice.paid",
            "/ui/events?type=invoice.paid".to_owned(),
        ),
        (
            "events, type=customer.*",
            "/ui/events?type=customer.%2A".to_owned(),
        ),
        (
            "events, type=customer.created (oldest)",
            "/ui/events?type=customer.created".to_owned(),
        ),
        (
            "events, object_id=cus_…",
            format!("/ui/events?object_id=cus_b{}", users / 2),
        ),
        (
            "events, created range (1 h)",
            format!("/ui/events?created_gte={}&created_lt={}", hour(5), hour(6)),
        ),
        (
            "events, source=api_backfill",
            "/ui/events?source=api_backfill".to_owned(),
        ),
        (
            "events, livemode=false",
            "/ui/events?livemode=false".to_owned(),
        ),
        ("event page", format!("/ui/events/{middle}")),
        ("jump box (evt_)", format!("/ui/jump?q={middle}")),
        ("integrity", "/ui/integrity".to_owned()),
    ])
}

async fn time_page(
    session: &Session<'_>,
    backend: BenchBackend,
    name: &'static str,
    path: &str,
) -> anyhow::Result<PageTiming> {
    let mut samples = Vec::with_capacity(ROUNDS);
    for round in 0..WARMUP + ROUNDS {
        let started = Instant::now();
        let body = session.get(path).await?.bytes().await?;
        let elapsed = started.elapsed();
        if body.is_empty() && !path.starts_with("/ui/jump") {
            bail!("GET {path} answered an empty page");
        }
        if round >= WARMUP {
            samples.push(elapsed);
        }
    }
    samples.sort_unstable();
    Ok(PageTiming {
        backend,
        name,
        p50: percentile(&samples, 0.50),
        p95: percentile(&samples, 0.95),
        max: *samples.last().unwrap_or(&Duration::ZERO),
    })
}

async fn export(
    session: &Session<'_>,
    backend: BenchBackend,
    format: &'static str,
    pid: Option<u32>,
    n: usize,
) -> anyhow::Result<ExportTiming> {
    let users = (n / 20).max(1);
    // Whole steps of the history: `steps` hours hold `steps * users` entries.
    let steps = EXPORT_EVENTS.div_ceil(users).max(1);
    let from = 1_700_000_000 + 3_600 * 3;
    let path = format!(
        "/ui/events/export.{format}?created_gte={from}&created_lt={}",
        from + 3_600 * steps as i64
    );
    reset_peak_rss(pid);
    let started = Instant::now();
    let mut response = session.get(&path).await?;
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(chunk) = response.chunk().await? {
        bytes += chunk.len();
        lines += chunk.iter().filter(|&&b| b == b'\n').count();
    }
    let elapsed = started.elapsed();
    let events = if format == "csv" {
        lines.saturating_sub(1)
    } else {
        lines
    };
    let expected = (steps * users).min(n.saturating_sub(3 * users));
    if events != expected {
        bail!("the {format} export held {events} entries, expected {expected}");
    }
    Ok(ExportTiming {
        backend,
        format,
        events,
        bytes,
        elapsed,
        peak_rss_kib: pid.and_then(peak_rss_kib),
    })
}
