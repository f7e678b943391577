//! `TestApp`: the real application on an isolated database and a random port.
//!
//! The backend comes from `TEST_DATABASE` (`sqlite`, the default, or `postgres`). For PostgreSQL
//! every app gets a fresh database on `TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped when the last handle goes; if
//! PostgreSQL was asked for and cannot be reached, the test fails: it never skips.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Value};
use stripe_ledger::app::{self, AppState, RunningServer};
use stripe_ledger::config::ServeConfig;
use stripe_ledger::store::{Backend, Db};
use stripe_ledger::stripe::signature;

pub const AUDIT_TOKEN: &str = "audit-token-for-tests-0123456789";
pub const READ_TOKEN: &str = "read-token-for-tests-0123456789";
pub const METRICS_TOKEN: &str = "metrics-token-for-tests-0123456789";
pub const OPERATE_TOKEN: &str = "operate-token-for-tests-0123456789";
/// The checkpoint signing key of every test app (base64 of 32 bytes of 7), unless a test sets
/// `LEDGER_SIGNING_KEY` itself (`off`, or another key).
pub const TEST_SIGNING_SEED: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// Every log line any test produces, for the tests that check what is (not) logged.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.get_or_init(Default::default).lock().unwrap()).into_owned()
}

static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.get_or_init(Default::default)
            .lock()
            .unwrap()
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logging() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,hyper=info,h2=info",
            ))
            .with_ansi(false)
            .with_writer(|| Capture)
            .try_init();
    });
}

pub fn backend() -> Backend {
    match std::env::var("TEST_DATABASE").as_deref() {
        Ok("postgres") => Backend::Postgres,
        Ok("sqlite") | Err(_) => Backend::Sqlite,
        Ok(other) => panic!("TEST_DATABASE must be `sqlite` or `postgres`, not `{other}`"),
    }
}

fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// An isolated database, removed when dropped.
pub struct TestDatabase {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    Postgres { name: String },
}

impl TestDatabase {
    pub async fn create() -> Arc<TestDatabase> {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        match backend() {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("stripe-ledger-test-{tag}"));
                std::fs::create_dir_all(&dir).unwrap();
                Arc::new(TestDatabase {
                    url: format!("sqlite://{}", dir.join("ledger.db").display()),
                    cleanup: Cleanup::Dir(dir),
                })
            }
            Backend::Postgres => {
                use sqlx::Connection as _;
                let admin = postgres_admin_url();
                let name = format!("stripe_ledger_test_{tag}");
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("TEST_DATABASE=postgres but PostgreSQL at TEST_POSTGRES_URL is unreachable: {e}")
                });
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create the test database");
                let (base, _) = admin
                    .rsplit_once('/')
                    .expect("TEST_POSTGRES_URL has a path");
                Arc::new(TestDatabase {
                    url: format!("{base}/{name}"),
                    cleanup: Cleanup::Postgres { name },
                })
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { name } => {
                let name = name.clone();
                // Drop runs inside the test's runtime; a fresh thread may block on its own.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        use sqlx::Connection as _;
                        if let Ok(mut conn) =
                            sqlx::PgConnection::connect(&postgres_admin_url()).await
                        {
                            let _ = sqlx::query(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .execute(&mut conn)
                            .await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

pub struct TestApp {
    pub base_url: String,
    pub db: Db,
    pub secret: String,
    pub client: reqwest::Client,
    pub clock: Option<i64>,
    pub database: Arc<TestDatabase>,
    /// The app's state, for driving its jobs (outbox delivery) directly.
    pub state: AppState,
    /// The sealing key and settings (`None` with `LEDGER_SIGNING_KEY=off`), for driving the
    /// sealer directly.
    pub sealing: Option<stripe_ledger::sealer::Sealing>,
    // Kept so the server runs as long as the app; `stop` shuts it down gracefully.
    server: Option<RunningServer>,
}

#[derive(Default)]
pub struct TestAppBuilder {
    env: BTreeMap<String, String>,
    clock: Option<i64>,
    database: Option<Arc<TestDatabase>>,
}

impl TestAppBuilder {
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Freezes the server's clock (unix seconds) for timestamp-tolerance tests.
    pub fn clock_at(mut self, now: i64) -> Self {
        self.clock = Some(now);
        self
    }

    /// Shares a database with another app: two instances, one database.
    pub fn database(mut self, database: Arc<TestDatabase>) -> Self {
        self.database = Some(database);
        self
    }

    pub async fn spawn(self) -> TestApp {
        init_logging();
        stripe_ledger::install_crypto_provider();
        let database = match self.database {
            Some(d) => d,
            None => TestDatabase::create().await,
        };
        let secret = format!("whsec_test_{}", uuid::Uuid::new_v4().simple());
        let mut env = BTreeMap::from([
            ("DATABASE_URL".to_owned(), database.url.clone()),
            ("STRIPE_WEBHOOK_SECRET".to_owned(), secret.clone()),
            ("LISTEN_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            (
                "LEDGER_SIGNING_KEY".to_owned(),
                TEST_SIGNING_SEED.to_owned(),
            ),
            (
                "API_TOKENS".to_owned(),
                format!(
                    "audit:{AUDIT_TOKEN},read:{READ_TOKEN},metrics:{METRICS_TOKEN},\
                     operate:{OPERATE_TOKEN}"
                ),
            ),
        ]);
        env.extend(self.env);
        let config = ServeConfig::from_lookup(&stripe_ledger::config::MapEnv(env.clone()))
            .expect("test config");
        let db = Db::connect(&config.database.target, &config.database.pool)
            .await
            .expect("connect to the test database");
        db.migrate().await.expect("migrate the test database");
        let sealing = stripe_ledger::sealer::Sealing::for_serve(&config.seal, &db)
            .await
            .expect("the test signing key loads");
        let mut state = AppState::new(db.clone(), &config);
        if let Some(now) = self.clock {
            state.clock = Arc::new(move || now);
        }
        let listener = tokio::net::TcpListener::bind(config.listen_addr)
            .await
            .unwrap();
        let server = app::start(state.clone(), listener).unwrap();
        TestApp {
            base_url: format!("http://{}", server.addr),
            db,
            // Sign with the first configured secret, like Stripe after a roll.
            secret: env["STRIPE_WEBHOOK_SECRET"]
                .split(',')
                .next()
                .unwrap_or(&secret)
                .trim()
                .to_owned(),
            client: reqwest::Client::new(),
            clock: self.clock,
            database,
            state,
            sealing,
            server: Some(server),
        }
    }
}

/// A response read in full: status, headers, and the body as JSON (or a string).
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    /// Reads the response and checks it against `docs/openapi.json` (path, method, status,
    /// content type and schema): every test that talks to the API through `TestApp` checks the
    /// document too.
    async fn from(method: &str, response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let path = response.url().path().to_owned();
        let text = response.text().await.unwrap();
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
        if let Err(e) = crate::openapi::check_response(method, &path, status, content_type, &text) {
            panic!("the response disagrees with docs/openapi.json: {e}");
        }
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        Reply {
            status,
            headers,
            text,
            json,
        }
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::builder().spawn().await
    }

    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    /// Two instances on one fresh database, with the same webhook secret.
    pub async fn two_instances() -> (TestApp, TestApp) {
        let database = TestDatabase::create().await;
        let a = TestApp::builder().database(database.clone()).spawn().await;
        let b = TestApp::builder()
            .database(database)
            .env("STRIPE_WEBHOOK_SECRET", &a.secret)
            .spawn()
            .await;
        (a, b)
    }

    pub fn now(&self) -> i64 {
        self.clock.unwrap_or_else(|| chrono::Utc::now().timestamp())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn sign(&self, body: &[u8]) -> String {
        signature::sign(body, &self.secret, self.now())
    }

    /// Posts `body` with the given `Stripe-Signature` (or none).
    pub async fn post_webhook(&self, body: &[u8], signature: Option<&str>) -> Reply {
        let mut request = self
            .client
            .post(self.url("/webhooks/stripe"))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(s) = signature {
            request = request.header("stripe-signature", s);
        }
        Reply::from("POST", request.send().await.unwrap()).await
    }

    /// Posts `body` signed exactly as Stripe would sign it for this app.
    pub async fn deliver(&self, body: &[u8]) -> Reply {
        let signature = self.sign(body);
        self.post_webhook(body, Some(&signature)).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.client.get(self.url(path));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        Reply::from("GET", request.send().await.unwrap()).await
    }

    /// Any method, a bearer token (service token or user JWT) and a JSON body (sent only with
    /// methods that take one).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: &[u8],
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let mut request = self.client.request(method.clone(), self.url(path));
        if let Some(t) = bearer {
            request = request.bearer_auth(t);
        }
        if method != reqwest::Method::GET && method != reqwest::Method::HEAD {
            request = request
                .header("content-type", "application/json")
                .body(body.to_vec());
        }
        Reply::from(method.as_str(), request.send().await.unwrap()).await
    }

    pub async fn audit(&self, path: &str) -> Reply {
        self.get(path, Some(AUDIT_TOKEN)).await
    }

    /// A graceful stop, as on SIGTERM: in-flight requests finish or, past the deadline, get 503.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("graceful shutdown");
        }
    }

    /// One run of the outbox worker, as `serve` runs it, at `now` (unix seconds).
    pub async fn deliver_outbox(&self, now: i64) -> stripe_ledger::outbox::DeliveryReport {
        stripe_ledger::outbox::deliver_due(
            &self.db,
            &self.state.mailer,
            self.state.billing_url.as_deref(),
            Some(&self.state.metrics),
            now,
        )
        .await
        .expect("outbox delivery")
    }

    /// `GET /metrics`, parsed into `name{labels}` → value.
    pub async fn metrics(&self) -> BTreeMap<String, f64> {
        let reply = self.get("/metrics", Some(METRICS_TOKEN)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        parse_metrics(&reply.text)
    }

    pub async fn event_count(&self) -> i64 {
        stripe_ledger::event_log::count(&self.db).await.unwrap()
    }
}

/// A minimal but realistic Stripe event.
pub fn event(id: &str, event_type: &str) -> Vec<u8> {
    event_json(id, event_type, false).to_string().into_bytes()
}

pub fn event_json(id: &str, event_type: &str, livemode: bool) -> Value {
    json!({
        "id": id,
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": 1_763_800_000,
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": event_type,
        "data": {"object": object_for(id, event_type, livemode)}
    })
}

/// A plausible `data.object` for the event type, complete enough to be projected.
pub fn object_for(id: &str, event_type: &str, livemode: bool) -> Value {
    if event_type.starts_with("customer.subscription.") {
        json!({
            "id": format!("sub_{id}"), "object": "subscription", "customer": format!("cus_{id}"),
            "status": if event_type.ends_with(".deleted") { "canceled" } else { "active" },
            "livemode": livemode, "metadata": {}, "cancel_at_period_end": false,
            "items": {"object": "list", "data": [{"id": format!("si_{id}"), "quantity": 1,
                "current_period_start": 1_763_800_000, "current_period_end": 1_766_392_000,
                "price": {"id": "price_tier1", "unit_amount": 1500, "currency": "usd"}}]}
        })
    } else if event_type.starts_with("invoice.") {
        json!({
            "id": format!("in_{id}"), "object": "invoice", "customer": format!("cus_{id}"),
            "status": if event_type == "invoice.paid" { "paid" } else { "open" },
            "amount_due": 1500, "currency": "usd", "livemode": livemode
        })
    } else {
        json!({"id": format!("cus_{id}"), "object": "customer", "livemode": livemode, "metadata": {}})
    }
}

pub fn unique_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Parses the Prometheus/OpenMetrics text format: one sample per line, `name{labels} value`,
/// comments skipped. Label sets are kept as written (the exporter orders them stably).
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample line: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number in: {line}"));
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "series repeated: {series}"
        );
    }
    samples
}

/// A log entry as `sync-events` appends it (source `api_backfill`, unsigned), for tests that
/// append without going through ingestion (and so without projecting).
pub fn backfill_entry(body: &[u8]) -> stripe_ledger::event_log::NewEntry {
    use sha2::Digest as _;
    stripe_ledger::event_log::NewEntry {
        envelope: ledger_projections::Envelope::parse(body).expect("a valid event"),
        source: stripe_ledger::event_log::Source::ApiBackfill,
        payload: String::from_utf8(body.to_vec()).expect("UTF-8"),
        payload_redacted: false,
        raw_body_sha256: hex::encode(sha2::Sha256::digest(body)),
        verification: None,
        received_at: chrono::Utc::now(),
    }
}

/// A full rebuild of the read models (switching), `chunk` entries per transaction.
pub async fn rebuild(db: &Db, chunk: u32) -> stripe_ledger::projector::RebuildReport {
    stripe_ledger::projector::rebuild(
        db,
        &stripe_ledger::projector::RebuildOptions {
            chunk,
            ..Default::default()
        },
    )
    .await
    .expect("rebuild")
}

/// Polls PostgreSQL until `count_waiters` (a `SELECT count(...) FROM pg_locks WHERE NOT granted
/// ...` statement) reaches `n`, or `done()` says the awaited statement finished anyway (which the
/// caller then catches). Fails after 10 s, naming `what`. On a connection of its own, so the
/// app's pools are not involved.
pub async fn until_lock_waiters(
    app: &TestApp,
    count_waiters: &str,
    n: i64,
    done: impl Fn() -> bool,
    what: &str,
) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&app.database.url)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(count_waiters)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if waiting >= n || done() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {waiting} of {n} lock waits"
        );
        // A short sleep, not a bare yield: polling back to back would take a core from the
        // very statements being waited for on a 2-core machine.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}
