//! The application: shared state, and starting and stopping the HTTP server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::http::HeaderMap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::{ApiTokens, Authorization, Scope};
use crate::config::{ServeConfig, WebhookConfig};
use crate::http::{self, ApiError};
use crate::ingest::Writer;
use crate::metrics::Metrics;
use crate::outbox::mail::Mailer;
use crate::store::Db;

/// Unix seconds. Injectable so tests can check the timestamp tolerance at exact boundaries.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp())
}

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub writer: Writer,
    pub webhook: Arc<WebhookConfig>,
    pub tokens: Arc<ApiTokens>,
    pub clock: Clock,
    /// How long `past_due` keeps access, from the first failed payment of the dunning cycle.
    pub grace_period_secs: i64,
    /// Checkout and portal; `None` when not configured.
    pub billing: Option<Arc<crate::billing::Billing>>,
    pub metrics: Arc<Metrics>,
    /// The outbox's transport (SMTP, or the log).
    pub mailer: Arc<Mailer>,
    /// Linked from payment-failure emails without a hosted invoice page.
    pub billing_url: Option<String>,
    /// The Stripe API, when `STRIPE_SECRET_KEY` is set: for reports an operator asks for.
    pub stripe_api: Option<Arc<crate::stripe::client::StripeClient>>,
    /// How long a stop waits for in-flight work before answering 503.
    pub shutdown_timeout: Duration,
    /// Set when a stop begins: `/readyz` then says 503 so load balancers move on.
    pub draining: Arc<AtomicBool>,
    /// Connection limits and timeouts of the HTTP server.
    pub transport: crate::config::TransportConfig,
    /// The console's settings, CSRF key and sign-in limiter (`crate::ui`).
    pub ui: Arc<crate::ui::UiState>,
    /// `false` with `LEDGER_SIGNING_KEY=off`: the audit API then says so instead of "not yet".
    pub sealing_on: bool,
}

impl AppState {
    pub fn new(db: Db, config: &ServeConfig) -> Self {
        let billing = config.billing.clone().map(|b| {
            Arc::new(
                crate::billing::Billing::new(b)
                    .expect("the HTTP client builds with static settings"),
            )
        });
        let metrics = Arc::new(Metrics::new());
        let known = crate::ingest::KnownStates::new(config.webhook.state_cache_bytes)
            .counting_on(metrics.ingest_guesses());
        AppState {
            billing,
            mailer: Arc::new(
                Mailer::new(&config.mail).expect("SMTP_URL was checked with the configuration"),
            ),
            billing_url: config.mail.billing_url.clone(),
            stripe_api: stripe_api(config),
            shutdown_timeout: config.shutdown_timeout,
            draining: Arc::new(AtomicBool::new(false)),
            transport: config.transport,
            ui: Arc::new(crate::ui::UiState::new(config.ui.clone())),
            sealing_on: config.seal.key != crate::config::SigningKeyConfig::Off,
            writer: Writer::start(db.clone(), config.webhook.seen_cache_size, known),
            metrics,
            db,
            webhook: Arc::new(config.webhook.clone()),
            tokens: Arc::new(config.api_tokens.clone()),
            clock: system_clock(),
            grace_period_secs: i64::from(config.grace_period_days) * 86_400,
        }
    }

    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Authorizes a request for `scope`: 401 without a known token, 403 with the wrong scope.
    pub fn require(&self, headers: &HeaderMap, scope: Scope) -> Result<(), ApiError> {
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match self.tokens.authorize(header, scope) {
            Authorization::Granted => Ok(()),
            Authorization::Forbidden => Err(ApiError::forbidden(scope.as_str())),
            Authorization::Unauthenticated => Err(ApiError::unauthenticated()),
        }
    }
}

/// The Stripe API client of `STRIPE_SECRET_KEY` (and `STRIPE_API_BASE`), as the scheduled
/// reconciliation builds it.
fn stripe_api(config: &ServeConfig) -> Option<Arc<crate::stripe::client::StripeClient>> {
    let key = config.secret_key.clone()?;
    let base = config
        .billing
        .as_ref()
        .map(|b| b.api_base.clone())
        .unwrap_or_else(|| crate::stripe::client::DEFAULT_API_BASE.to_owned());
    crate::stripe::client::StripeClient::new(&base, key, std::time::Duration::from_secs(30))
        .map_err(|e| tracing::error!(error = %e, "the Stripe API client could not be built"))
        .ok()
        .map(Arc::new)
}

/// A server running in the background; `serve` waits on it, tests drive it directly.
pub struct RunningServer {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    /// Flipped when the shutdown deadline passes: requests still running answer 503.
    deadline: watch::Sender<bool>,
    timeout: Duration,
    draining: Arc<AtomicBool>,
    task: JoinHandle<std::io::Result<()>>,
}

/// After the deadline, the requests cut short need a moment to write their 503s.
const AFTER_DEADLINE: Duration = Duration::from_secs(2);

impl RunningServer {
    /// Stops accepting connections and lets in-flight requests finish; those still running
    /// at the deadline are answered 503 (Stripe retries them), and the server is done.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.draining.store(true, Ordering::SeqCst);
        let _ = self.shutdown.send(true);
        let finished = tokio::time::timeout(self.timeout, &mut self.task).await;
        let result = match finished {
            Ok(joined) => joined,
            Err(_) => {
                tracing::warn!(
                    timeout_secs = self.timeout.as_secs(),
                    "requests still running at the shutdown deadline are answered 503"
                );
                let _ = self.deadline.send(true);
                match tokio::time::timeout(AFTER_DEADLINE, &mut self.task).await {
                    Ok(joined) => joined,
                    Err(_) => {
                        self.task.abort();
                        tracing::warn!("connections still open after the deadline were closed");
                        return Ok(());
                    }
                }
            }
        };
        result.context("server task panicked")??;
        Ok(())
    }
}

/// Starts serving `state` on an already-bound listener.
pub fn start(state: AppState, listener: TcpListener) -> anyhow::Result<RunningServer> {
    let addr = listener.local_addr()?;
    let (shutdown, stopped) = watch::channel(false);
    let (deadline, deadline_passed) = watch::channel(false);
    let timeout = state.shutdown_timeout;
    let draining = state.draining.clone();
    let limits = state.transport;
    let router = http::router(state, deadline_passed);
    let task = tokio::spawn(http::transport::serve(listener, router, limits, stopped));
    Ok(RunningServer {
        addr,
        shutdown,
        deadline,
        timeout,
        draining,
        task,
    })
}

/// `stripe-ledger serve`: connect, migrate, listen, and run until SIGINT/SIGTERM.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let db = Db::connect(&config.database.target, &config.database.pool)
        .await
        .context("could not connect to the database (DATABASE_URL)")?;
    db.migrate().await.context("could not apply migrations")?;
    if config.api_tokens.is_empty() {
        tracing::warn!("API_TOKENS is not set: the audit API will answer 401 to everyone");
    }
    if config.secret_key.is_none() {
        tracing::warn!(
            "STRIPE_SECRET_KEY is not set: running in test mode, live events are refused"
        );
    }
    if let Some(origin) = config.ui.public_origin.as_deref() {
        if crate::ui::session::CookiePolicy::unreachable_over_http(origin) {
            tracing::warn!(
                public_url = origin,
                "PUBLIC_URL is plain http on a host that is not loopback: the console's cookies are Secure, so browsers drop them and sign-in fails; serve the console over https and set PUBLIC_URL to that URL"
            );
        }
    }
    let sealing = crate::sealer::Sealing::for_serve(&config.seal, &db)
        .await
        .context("could not load the checkpoint signing key (LEDGER_SIGNING_KEY)")?;
    if let Some(dir) = &config.seal.checkpoint_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not create {} (CHECKPOINT_DIR)", dir.display()))?;
    }
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("could not listen on {} (LISTEN_ADDR)", config.listen_addr))?;
    let state = AppState::new(db.clone(), &config);
    let metrics = state.metrics.clone();
    let mailer = state.mailer.clone();
    let billing_url = state.billing_url.clone();
    let server = start(state, listener)?;
    let outbox = crate::outbox::spawn_worker(
        db.clone(),
        mailer,
        billing_url,
        metrics.clone(),
        config.outbox_interval,
        server.shutdown.subscribe(),
    );
    let background = spawn_background(db.clone(), metrics.clone(), server.shutdown.subscribe());
    let sealing_state = if sealing.is_some() { "on" } else { "off" };
    let sealer =
        sealing.map(|s| crate::sealer::spawn(db.clone(), s, metrics, server.shutdown.subscribe()));
    let reconciliation = match &config.secret_key {
        Some(key) => Some(spawn_reconciliation(
            db.clone(),
            key.clone(),
            &config,
            server.shutdown.subscribe(),
        )?),
        None => None,
    };
    tracing::info!(
        addr = %server.addr,
        database = %db.backend(),
        mode = %config.webhook.mode,
        webhook_secrets = config.webhook.secrets.len(),
        email = if config.mail.smtp_url.is_some() { "smtp" } else { "log" },
        sealed_log = sealing_state,
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        "stripe-ledger listening"
    );
    shutdown_signal().await;
    let stopping = std::time::Instant::now();
    server.shutdown().await?;
    // Jobs were told to stop together with the server and finish the run they are in; all of
    // it is resumable (claims and leases lapse, checkpoints hold), so past the deadline we go.
    let remaining = config
        .shutdown_timeout
        .saturating_sub(stopping.elapsed())
        .max(Duration::from_secs(1));
    let jobs = async {
        let _ = background.await;
        let _ = outbox.await;
        if let Some(r) = reconciliation {
            let _ = r.await;
        }
        if let Some(s) = sealer {
            let _ = s.await;
        }
    };
    if tokio::time::timeout(remaining, jobs).await.is_err() {
        tracing::warn!("background jobs still running at the shutdown deadline were abandoned; they resume on the next start");
    }
    // A connection still held by a write cut off at the deadline must not keep us here.
    if tokio::time::timeout(Duration::from_secs(5), db.close())
        .await
        .is_err()
    {
        tracing::warn!("database connections still busy at exit were dropped");
    }
    tracing::info!("stopped");
    Ok(())
}

/// How often the catch-up projector looks for unprojected log entries, and the dead-letter
/// retrier re-projects failures.
const CATCH_UP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
const RETRY_DEAD_LETTERS_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The projector's background jobs: catch-up (at start and then periodically) and the
/// dead-letter retrier. Both are idempotent, so several instances may run them at once.
pub fn spawn_background(
    db: Db,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut catch_up = tokio::time::interval(CATCH_UP_EVERY);
        let mut retry = tokio::time::interval(RETRY_DEAD_LETTERS_EVERY);
        loop {
            tokio::select! {
                // The only change ever sent is "stop" (or the sender is gone).
                _ = stopped.changed() => return,
                _ = catch_up.tick() => match crate::projector::catch_up(&db).await {
                    Ok(r) if r.projected + r.failed > 0 => {
                        metrics.projection_failed("catch_up", r.failed as u64);
                        tracing::info!(projected = r.projected, failed = r.failed, position = r.position, "catch-up projected log entries");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %crate::store::error::chain(&e), "catch-up failed; will retry"),
                },
                _ = retry.tick() => match crate::projector::retry_dead_letters(&db).await {
                    Ok((0, _)) => {}
                    Ok((retried, failing)) => {
                        metrics.projection_failed("retry", failing as u64);
                        tracing::info!(retried, failing, "dead letters retried");
                    }
                    Err(e) => tracing::warn!(error = %crate::store::error::chain(&e), "dead-letter retry failed; will retry"),
                },
            }
        }
    })
}

/// Scheduled reconciliation and gap fill: every minute each instance asks for the lease; the
/// one that gets it runs, and the lease keeps the others (and itself) off until the next
/// interval.
fn spawn_reconciliation(
    db: Db,
    key: crate::stripe::keys::SecretKey,
    config: &ServeConfig,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let base = config
        .billing
        .as_ref()
        .map(|b| b.api_base.clone())
        .unwrap_or_else(|| crate::stripe::client::DEFAULT_API_BASE.to_owned());
    let mode = key.mode();
    let client =
        crate::stripe::client::StripeClient::new(&base, key, std::time::Duration::from_secs(30))
            .map_err(|e| anyhow::anyhow!(e))?;
    let interval = config.reconcile_interval_secs;
    let repair = config.reconcile_repair;
    let holder = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                _ = tick.tick() => {
                    match crate::reconcile::schedule::run_if_due(&db, &client, mode, repair, interval, &holder).await {
                        Ok(Some(run)) => tracing::info!(run, "scheduled reconciliation finished"),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %crate::store::error::chain(&e), "scheduled reconciliation could not start"),
                    }
                }
            }
        }
    }))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
