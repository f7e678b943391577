//! Configuration from the environment (and `.env`, loaded by `main`).
//!
//! Every problem is reported with the variable's name and never with its value: a startup
//! error is printed to a terminal or shipped to a log collector, and values are often secrets.

use std::net::SocketAddr;
use std::time::Duration;

use crate::auth::ApiTokens;
use crate::secret::Secret;
use crate::store::{DbTarget, PoolSettings};
use crate::stripe::keys::{Mode, SecretKey};
use crate::stripe::signature::{WebhookSecrets, DEFAULT_TOLERANCE_SECS};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://stripe-ledger.db";
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:3000";
/// Stripe's largest events (an invoice with many lines) stay well under this.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Stripe gives an endpoint a few seconds; answering 503 by then makes it retry promptly.
pub const DEFAULT_INGEST_TIMEOUT_MS: u64 = 1500;
/// Far above what a PostgreSQL server allows by default (100); a bigger number is a typo.
pub const MAX_DATABASE_CONNECTIONS: u32 = 1000;
/// `RECONCILE_INTERVAL` bounds: at least a minute (Stripe's list endpoints are rate limited),
/// at most 30 days (a longer gap leaves drift unseen past Stripe's event retention).
pub const MIN_RECONCILE_INTERVAL_SECS: i64 = 60;
pub const MAX_RECONCILE_INTERVAL_SECS: i64 = 30 * 86_400;
/// The sender when only logging emails (no `SMTP_URL`).
pub const DEFAULT_MAIL_FROM: &str = "stripe-ledger <billing@localhost>";

#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: std::borrow::Cow<'static, str>,
    pub problem: String,
}

impl ConfigError {
    fn new(
        variable: impl Into<std::borrow::Cow<'static, str>>,
        problem: impl Into<String>,
    ) -> Self {
        ConfigError {
            variable: variable.into(),
            problem: problem.into(),
        }
    }
}

/// A source of configuration values: the process environment in production, a map in tests.
pub trait Lookup {
    fn get(&self, key: &str) -> Option<String>;
    /// The value exactly as set (`None` only when unset), for telling a whitespace-only secret
    /// from an empty one. Sources that cannot tell fall back to `get`.
    fn get_raw(&self, key: &str) -> Option<String> {
        self.get(key)
    }
    /// Names of the variables that start with `prefix` (for `STRIPE_PRICE_IDS_<TIER>`).
    fn names_with_prefix(&self, prefix: &str) -> Vec<String>;
}

pub struct ProcessEnv;

impl Lookup for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        // Unset and empty mean the same thing: `FOO=` in a .env file is "not configured".
        std::env::var(key).ok().filter(|v| !v.trim().is_empty())
    }

    fn get_raw(&self, key: &str) -> Option<String> {
        // Not valid Unicode is not a usable value either; `get` treats it as unset too.
        std::env::var(key).ok()
    }

    fn names_with_prefix(&self, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| k.starts_with(prefix))
            .collect();
        names.sort();
        names
    }
}

/// Configuration from a map: tests, and embedding.
#[derive(Debug, Clone, Default)]
pub struct MapEnv(pub std::collections::BTreeMap<String, String>);

impl Lookup for MapEnv {
    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).filter(|v| !v.trim().is_empty()).cloned()
    }

    fn get_raw(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }

    fn names_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.0
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }
}

/// Variables that hold a secret (or a URL with a password). For them unset and empty mean "not
/// configured" as for every variable, but a value of only whitespace is refused: it is a paste
/// that lost its value (or a quoted `" "` in `.env`), and silently switching the feature off
/// (checkout, SMTP, service tokens) would hide the mistake.
pub const SECRET_VARIABLES: &[&str] = &[
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_SECRET_KEY",
    "JWT_SECRET",
    "API_TOKENS",
    "SMTP_URL",
    "DATABASE_URL",
    "LEDGER_SIGNING_KEY",
];

/// Refuses a whitespace-only value of `variable`; the error names it and never shows the value.
pub fn reject_blank(env: &impl Lookup, variable: &'static str) -> Result<(), ConfigError> {
    match env.get_raw(variable) {
        Some(v) if !v.is_empty() && v.trim().is_empty() => Err(ConfigError::new(
            variable,
            "is only whitespace; leave it empty or unset it if it is not configured",
        )),
        _ => Ok(()),
    }
}

/// `API_TOKENS` entries of only whitespace (`read:tok..., ,audit:tok...`) are refused like a
/// blank secret; truly empty entries (`a,,b`, a trailing comma) are skipped as before.
fn reject_blank_token_entries(env: &impl Lookup) -> Result<(), ConfigError> {
    let Some(list) = env.get("API_TOKENS") else {
        return Ok(());
    };
    match list
        .split(',')
        .position(|e| !e.is_empty() && e.trim().is_empty())
    {
        Some(i) => Err(ConfigError::new(
            "API_TOKENS",
            format!("entry #{} is only whitespace", i + 1),
        )),
        None => Ok(()),
    }
}

/// Loads `.env` from the working directory or the nearest parent that has one (as dotenvy
/// does), without overriding variables already set. A missing file is fine. A malformed one is
/// an error naming the path and the line, and the variable when its name is a plain identifier:
/// never the line's content, which dotenvy's own error repeats and which is often a secret.
pub fn load_dotenv() -> Result<(), String> {
    let Some(path) = find_dotenv() else {
        return Ok(());
    };
    match dotenvy::from_path(&path) {
        Ok(()) => Ok(()),
        Err(e) => {
            let contents = std::fs::read(&path)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            Err(format!(
                "could not read {}: {}",
                path.display(),
                describe_dotenv_error(&e, &contents)
            ))
        }
    }
}

fn find_dotenv() -> Option<std::path::PathBuf> {
    let mut dir = std::env::current_dir().ok()?;
    loop {
        let candidate = dir.join(".env");
        if candidate.is_file() {
            return Some(candidate);
        }
        if !dir.pop() {
            return None;
        }
    }
}

/// What went wrong with `.env`, without any of its content.
pub fn describe_dotenv_error(error: &dotenvy::Error, contents: &str) -> String {
    match error {
        dotenvy::Error::LineParse(line, _) => {
            let place = match dotenv_line_number(contents, line) {
                Some(n) => format!("line {n}"),
                None => "a line".to_owned(),
            };
            match dotenv_variable_name(line) {
                Some(name) => format!("{place} ({name}) cannot be parsed; check its quoting (the line is not shown, it may hold a secret)"),
                None => format!("{place} cannot be parsed (the line is not shown, it may hold a secret)"),
            }
        }
        // IO and encoding errors carry no content of the file.
        dotenvy::Error::Io(e) => e.to_string(),
        dotenvy::Error::EnvVar(e) => e.to_string(),
        _ => "it cannot be parsed".to_owned(),
    }
}

/// The 1-based line where dotenvy's logical line (one or more physical lines, its newline
/// removed) starts: the first line start from which the file continues with it. An earlier
/// identical line would have failed first, so the first match is the right one.
fn dotenv_line_number(contents: &str, logical_line: &str) -> Option<usize> {
    let contents = contents.strip_prefix('\u{feff}').unwrap_or(contents);
    let mut start = 0;
    let mut number = 1;
    loop {
        if contents[start..].starts_with(logical_line) {
            return Some(number);
        }
        let next = contents[start..].find('\n')?;
        start += next + 1;
        number += 1;
    }
}

/// The variable a `.env` line assigns, if its name is a safe identifier (ASCII letters, digits,
/// underscore); anything else might be part of a value and is not shown.
fn dotenv_variable_name(line: &str) -> Option<&str> {
    let (name, _) = line.split_once('=')?;
    let name = name.trim();
    let name = name.strip_prefix("export ").map_or(name, str::trim);
    let safe = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    safe.then_some(name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Where the data lives; all that `migrate`, `events` and friends need.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub target: DbTarget,
    pub pool: PoolSettings,
}

impl DatabaseConfig {
    pub fn from_lookup(env: &impl Lookup) -> Result<Self, ConfigError> {
        reject_blank(env, "DATABASE_URL")?;
        let url = env
            .get("DATABASE_URL")
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let target = DbTarget::parse(&url).map_err(|e| {
            // sqlx's parse errors can quote any part of the URL (`unknown value "..." for
            // ssl_mode`), and the URL may hold a password: only the kind of problem is shown.
            let problem = match e {
                crate::store::DbUrlError::Invalid(backend, _) => {
                    format!("is not a valid {backend} connection string")
                }
                other => other.to_string(),
            };
            ConfigError::new("DATABASE_URL", problem)
        })?;
        let mut pool = PoolSettings::default();
        if let Some(n) = parse_opt::<u32>(env, "DATABASE_MAX_CONNECTIONS")? {
            if !(1..=MAX_DATABASE_CONNECTIONS).contains(&n) {
                return Err(ConfigError::new(
                    "DATABASE_MAX_CONNECTIONS",
                    "must be between 1 and 1000",
                ));
            }
            pool.max_connections = n;
        }
        Ok(DatabaseConfig { target, pool })
    }
}

/// `WORKER_THREADS` at most: far above any machine's cores; a bigger number is a typo.
pub const MAX_WORKER_THREADS: usize = 1024;

/// What the process's async runtime is for, which decides its default size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeUse {
    /// `serve`: it shares the machine with its database, whose work is most of an event's
    /// (PostgreSQL's processes, or the SQLite worker threads, which are not the runtime's).
    Server,
    /// A command that runs alone until done (`rebuild`, `verify`, `bench`'s client, ...).
    OneShot,
}

/// The async runtime's worker threads (docs/adr/0026): `WORKER_THREADS` (1–1024) when set,
/// else tokio's own `TOKIO_WORKER_THREADS` (same bounds), which the runtime honoured before
/// the service chose its count; otherwise half of `cpus` (at least one) for the server, and
/// `cpus` for a one-shot command.
///
/// Half, because one event at a time the server's own work is a few hand-overs between
/// tasks: with a worker per CPU every hand-over also woke an idle worker that found nothing
/// to do, CPU taken from the database and the client on the same machine.
pub fn worker_threads(
    env: &impl Lookup,
    usage: RuntimeUse,
    cpus: usize,
) -> Result<usize, ConfigError> {
    let cpus = cpus.max(1);
    for variable in ["WORKER_THREADS", "TOKIO_WORKER_THREADS"] {
        match parse_opt::<usize>(env, variable)? {
            Some(n) if (1..=MAX_WORKER_THREADS).contains(&n) => return Ok(n),
            Some(_) => {
                return Err(ConfigError::new(
                    variable,
                    format!("must be between 1 and {MAX_WORKER_THREADS}"),
                ))
            }
            None => {}
        }
    }
    Ok(match usage {
        RuntimeUse::Server => (cpus / 2).max(1),
        RuntimeUse::OneShot => cpus,
    })
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen_addr: SocketAddr,
    pub database: DatabaseConfig,
    pub webhook: WebhookConfig,
    /// `None` when `STRIPE_SECRET_KEY` is unset: the service then runs in test mode.
    pub secret_key: Option<SecretKey>,
    pub api_tokens: ApiTokens,
    pub log_format: LogFormat,
    /// `GRACE_PERIOD_DAYS`: access kept while `past_due`.
    pub grace_period_days: u32,
    /// Checkout and the Customer Portal; `None` when `JWT_SECRET` is not set.
    pub billing: Option<BillingConfig>,
    /// `RECONCILE_INTERVAL` (seconds; default one day). Scheduled only with a secret key.
    pub reconcile_interval_secs: i64,
    /// `RECONCILE_REPAIR`: scheduled runs append repairs, not only report.
    pub reconcile_repair: bool,
    /// `SMTP_URL`, `MAIL_FROM`, `BILLING_URL`: the outbox's email delivery.
    pub mail: crate::outbox::mail::MailConfig,
    /// `OUTBOX_INTERVAL_MS`: how often the outbox worker looks for due notifications.
    pub outbox_interval: Duration,
    /// `SHUTDOWN_TIMEOUT_SECS`: how long a stop waits for in-flight requests and jobs; requests
    /// still running then are answered 503 so that Stripe retries them.
    pub shutdown_timeout: Duration,
    /// `HTTP_HEADER_TIMEOUT_SECS`, `HTTP_IDLE_TIMEOUT_SECS`, `HTTP_MAX_CONNECTIONS`.
    pub transport: TransportConfig,
    /// `LEDGER_SIGNING_KEY`, `CHECKPOINT_INTERVAL`, `CHECKPOINT_ORIGIN`, `CHECKPOINT_DIR`.
    pub seal: SealConfig,
    /// `UI_SESSION_IDLE`, `UI_SESSION_MAX`, `PUBLIC_URL`, `UI_CSRF_KEY`: the console.
    pub ui: UiConfig,
}

/// The console's settings (`/ui`, see `crate::ui`).
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// `UI_SESSION_IDLE` (default `30m`): a session unused this long is over.
    pub session_idle: Duration,
    /// `UI_SESSION_MAX` (default `8h`): a session is over this long after sign-in, used or not.
    pub session_max: Duration,
    /// `PUBLIC_URL`: the origin browsers use (`https://ledger.example.com`). When set, it
    /// decides the cookie (only `http` to a loopback host drops `__Host-` and `Secure`) and
    /// POSTs without Fetch-Metadata must carry exactly this `Origin`. When unset, both are
    /// decided per request: plain-http loopback hosts get the unprefixed cookie, everything
    /// else the `__Host-` one, and `Origin` must name the request's own `Host`.
    pub public_origin: Option<String>,
    /// `UI_CSRF_KEY` (32+ characters): the key of the forms' CSRF tokens. Unset: a random key
    /// per process (then forms opened before a restart, or on another instance, are refused
    /// once and work after a reload).
    pub csrf_key: Option<Secret<String>>,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            session_idle: Duration::from_secs(30 * 60),
            session_max: Duration::from_secs(8 * 3600),
            public_origin: None,
            csrf_key: None,
        }
    }
}

/// Longest session the console allows (`UI_SESSION_MAX`): a week.
const MAX_UI_SESSION_SECS: i64 = 7 * 86_400;

fn ui_config(env: &impl Lookup) -> Result<UiConfig, ConfigError> {
    let window = |name: &'static str, default: Duration| match env.get(name) {
        None => Ok(default),
        Some(v) => {
            let secs = crate::reconcile::sync_events::parse_window(&v)
                .map_err(|e| ConfigError::new(name, e))?;
            if secs > MAX_UI_SESSION_SECS {
                return Err(ConfigError::new(name, "must be at most 7 days"));
            }
            Ok(Duration::from_secs(secs as u64))
        }
    };
    let defaults = UiConfig::default();
    let session_idle = window("UI_SESSION_IDLE", defaults.session_idle)?;
    let session_max = window("UI_SESSION_MAX", defaults.session_max)?;
    if session_idle > session_max {
        return Err(ConfigError::new(
            "UI_SESSION_IDLE",
            "must not be longer than UI_SESSION_MAX",
        ));
    }
    let public_origin = env
        .get("PUBLIC_URL")
        .map(|url| {
            public_origin(&url).ok_or_else(|| {
                ConfigError::new(
                "PUBLIC_URL",
                "must be an http:// or https:// URL with a host (e.g. https://ledger.example.com)",
            )
            })
        })
        .transpose()?;
    reject_blank(env, "UI_CSRF_KEY")?;
    let csrf_key = match env.get_raw("UI_CSRF_KEY") {
        Some(key) if key.chars().count() < 32 => {
            return Err(ConfigError::new(
                "UI_CSRF_KEY",
                "must be at least 32 characters",
            ))
        }
        Some(key) => Some(Secret::new(key)),
        None => None,
    };
    Ok(UiConfig {
        session_idle,
        session_max,
        public_origin,
        csrf_key,
    })
}

/// `scheme://host[:port]` of an http(s) URL, lowercased, without path; `None` if it is not one.
fn public_origin(url: &str) -> Option<String> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    let valid = |c: char| c.is_ascii_alphanumeric() || "-.:[]".contains(c);
    if host.is_empty() || host.contains('@') || !host.chars().all(valid) {
        return None;
    }
    Some(format!("{scheme}://{host}"))
}

/// Connection limits of the HTTP server (see `http::transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportConfig {
    /// A request's head must arrive within this, counted from its first byte (or from the
    /// accept, for a connection's first request): slowloris clients are cut off.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections at most; at the cap the longest-idle one is closed for a new one.
    pub max_connections: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}

fn transport_config(env: &impl Lookup) -> Result<TransportConfig, ConfigError> {
    let bounded = |name: &'static str, default: u64, range: std::ops::RangeInclusive<u64>| {
        let value = parse_opt::<u64>(env, name)?.unwrap_or(default);
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::new(
                name,
                format!("must be between {} and {}", range.start(), range.end()),
            ))
        }
    };
    Ok(TransportConfig {
        header_timeout: Duration::from_secs(bounded("HTTP_HEADER_TIMEOUT_SECS", 10, 1..=300)?),
        idle_timeout: Duration::from_secs(bounded("HTTP_IDLE_TIMEOUT_SECS", 60, 1..=3600)?),
        max_connections: bounded("HTTP_MAX_CONNECTIONS", 512, 1..=65_536)? as usize,
    })
}

/// What `POST /api/checkout` and `POST /api/billing-portal` need.
#[derive(Debug, Clone)]
pub struct BillingConfig {
    pub secret_key: SecretKey,
    pub publishable_key: Option<String>,
    pub api_base: String,
    /// Tier name (lowercase) → price id, from `STRIPE_PRICE_IDS_<TIER>`.
    pub tiers: std::collections::BTreeMap<String, String>,
    /// Product name (lowercase) → price id, from `STRIPE_PRICE_IDS_ONE_TIME_<NAME>`.
    pub one_time: std::collections::BTreeMap<String, String>,
    pub success_url: String,
    pub cancel_url: String,
    pub portal_return_url: String,
    pub jwt: crate::jwt::JwtKey,
    /// Per-attempt timeout for Stripe API calls (`STRIPE_TIMEOUT_MS`, default 10 s).
    pub stripe_timeout: Duration,
    /// One deadline per user request for the per-user lock wait and every Stripe attempt and
    /// backoff (`STRIPE_DEADLINE_MS`, default 10 s).
    pub stripe_deadline: Duration,
}

impl BillingConfig {
    /// Billing is on when `JWT_SECRET` is set; then everything it needs must be there too.
    fn from_lookup(
        env: &impl Lookup,
        secret_key: Option<&SecretKey>,
    ) -> Result<Option<BillingConfig>, ConfigError> {
        let Some(jwt) = env.get("JWT_SECRET") else {
            return Ok(None);
        };
        let jwt = crate::jwt::JwtKey::new(&jwt).map_err(|e| ConfigError::new("JWT_SECRET", e))?;
        let jwt_claim = |variable: &'static str| -> Result<Option<String>, ConfigError> {
            let value = env.get(variable).map(|v| v.trim().to_owned());
            if value
                .as_deref()
                .is_some_and(|v| v.chars().any(char::is_control))
            {
                return Err(ConfigError::new(variable, "contains control characters"));
            }
            Ok(value.filter(|v| !v.is_empty()))
        };
        let jwt = jwt.with_claims(jwt_claim("JWT_AUDIENCE")?, jwt_claim("JWT_ISSUER")?);
        let secret_key = secret_key.cloned().ok_or_else(|| {
            ConfigError::new(
                "STRIPE_SECRET_KEY",
                "is required when JWT_SECRET enables checkout",
            )
        })?;
        let publishable_key = env
            .get("STRIPE_PUBLISHABLE_KEY")
            .map(|k| k.trim().to_owned());
        if let Some(pk) = &publishable_key {
            let mode = if pk.starts_with("pk_test_") {
                Mode::Test
            } else if pk.starts_with("pk_live_") {
                Mode::Live
            } else {
                return Err(ConfigError::new(
                    "STRIPE_PUBLISHABLE_KEY",
                    "must start with pk_test_ or pk_live_",
                ));
            };
            if mode != secret_key.mode() {
                return Err(ConfigError::new(
                    "STRIPE_PUBLISHABLE_KEY",
                    format!(
                        "is a {mode}-mode key but STRIPE_SECRET_KEY is a {}-mode key",
                        secret_key.mode()
                    ),
                ));
            }
        }
        let mut tiers = std::collections::BTreeMap::new();
        let mut one_time = std::collections::BTreeMap::new();
        const PREFIX: &str = "STRIPE_PRICE_IDS_";
        const ONE_TIME: &str = "STRIPE_PRICE_IDS_ONE_TIME_";
        for name in env.names_with_prefix(PREFIX) {
            let Some(price) = env.get(&name) else {
                continue;
            };
            let price = price.trim().to_owned();
            let variable = name.clone();
            if !price.starts_with("price_") || price.chars().any(|c| c.is_whitespace()) {
                return Err(ConfigError::new(
                    variable,
                    "must be a Stripe price id (price_...)",
                ));
            }
            if let Some(product) = name.strip_prefix(ONE_TIME) {
                if product.is_empty() {
                    return Err(ConfigError::new(
                        variable,
                        "needs a product name after the prefix",
                    ));
                }
                one_time.insert(product.to_ascii_lowercase(), price);
            } else {
                let tier = &name[PREFIX.len()..];
                if tier.is_empty() {
                    return Err(ConfigError::new(
                        variable,
                        "needs a tier name after the prefix",
                    ));
                }
                tiers.insert(tier.to_ascii_lowercase(), price);
            }
        }
        if tiers.is_empty() && one_time.is_empty() {
            return Err(ConfigError::new(
                "STRIPE_PRICE_IDS_<TIER>",
                "at least one price is required when JWT_SECRET enables checkout",
            ));
        }
        let url = |variable: &'static str| -> Result<String, ConfigError> {
            let value = env.get(variable).ok_or_else(|| {
                ConfigError::new(variable, "is required when JWT_SECRET enables checkout")
            })?;
            let value = value.trim().to_owned();
            if !(value.starts_with("https://") || value.starts_with("http://")) {
                return Err(ConfigError::new(variable, "must be an http(s) URL"));
            }
            Ok(value)
        };
        let timeout_ms = parse_opt::<u64>(env, "STRIPE_TIMEOUT_MS")?.unwrap_or(10_000);
        if !(100..=80_000).contains(&timeout_ms) {
            return Err(ConfigError::new(
                "STRIPE_TIMEOUT_MS",
                "must be between 100 and 80000",
            ));
        }
        let deadline_ms = parse_opt::<u64>(env, "STRIPE_DEADLINE_MS")?.unwrap_or(10_000);
        if !(100..=120_000).contains(&deadline_ms) {
            return Err(ConfigError::new(
                "STRIPE_DEADLINE_MS",
                "must be between 100 and 120000",
            ));
        }
        Ok(Some(BillingConfig {
            stripe_timeout: Duration::from_millis(timeout_ms),
            stripe_deadline: Duration::from_millis(deadline_ms),
            api_base: env
                .get("STRIPE_API_BASE")
                .map(|b| b.trim().to_owned())
                .unwrap_or_else(|| crate::stripe::client::DEFAULT_API_BASE.to_owned()),
            success_url: url("CHECKOUT_SUCCESS_URL")?,
            cancel_url: url("CHECKOUT_CANCEL_URL")?,
            portal_return_url: url("STRIPE_PORTAL_RETURN_URL")?,
            secret_key,
            publishable_key,
            tiers,
            one_time,
            jwt,
        }))
    }
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub secrets: WebhookSecrets,
    pub tolerance_secs: u64,
    pub max_body_bytes: usize,
    /// Budget for storing an event; past it the webhook answers 503 so Stripe retries.
    pub ingest_timeout: Duration,
    /// Events whose `livemode` differs from this are refused.
    pub mode: Mode,
    /// Recently logged ids remembered per instance, so retries skip the database (0 = off).
    pub seen_cache_size: usize,
    /// Bytes of read-model states the writer remembers, so a batch can skip its read (0 = every
    /// batch reads first; docs/adr/0024).
    pub state_cache_bytes: usize,
}

impl ServeConfig {
    pub fn from_lookup(env: &impl Lookup) -> Result<Self, ConfigError> {
        for variable in SECRET_VARIABLES {
            reject_blank(env, variable)?;
        }
        reject_blank_token_entries(env)?;
        let listen_addr = env
            .get("LISTEN_ADDR")
            .unwrap_or_else(|| DEFAULT_LISTEN_ADDR.to_owned());
        let listen_addr = listen_addr.parse::<SocketAddr>().map_err(|_| {
            ConfigError::new(
                "LISTEN_ADDR",
                "must be an address and port, like 127.0.0.1:3000",
            )
        })?;
        let database = DatabaseConfig::from_lookup(env)?;

        let secret_key = env
            .get("STRIPE_SECRET_KEY")
            .map(|raw| SecretKey::parse(raw.trim()))
            .transpose()
            .map_err(|e| ConfigError::new("STRIPE_SECRET_KEY", e.to_string()))?;
        let mode = secret_key.as_ref().map_or(Mode::Test, SecretKey::mode);

        let secrets = match env.get("STRIPE_WEBHOOK_SECRET") {
            None => {
                return Err(ConfigError::new(
                    "STRIPE_WEBHOOK_SECRET",
                    "is required: the endpoint's signing secret (whsec_...) from the Stripe \
                     dashboard or `stripe listen`; webhooks are never accepted unsigned",
                ))
            }
            Some(list) => WebhookSecrets::parse(&list)
                .map_err(|e| ConfigError::new("STRIPE_WEBHOOK_SECRET", e.to_string()))?,
        };
        let tolerance_secs =
            parse_opt::<u64>(env, "WEBHOOK_TOLERANCE_SECS")?.unwrap_or(DEFAULT_TOLERANCE_SECS);
        if tolerance_secs == 0 || tolerance_secs > 3600 {
            return Err(ConfigError::new(
                "WEBHOOK_TOLERANCE_SECS",
                "must be between 1 and 3600 seconds (replay protection cannot be switched off)",
            ));
        }
        let max_body_bytes =
            parse_opt::<usize>(env, "WEBHOOK_MAX_BODY_BYTES")?.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if !(1024..=64 * 1024 * 1024).contains(&max_body_bytes) {
            return Err(ConfigError::new(
                "WEBHOOK_MAX_BODY_BYTES",
                "must be between 1024 and 67108864",
            ));
        }
        let ingest_timeout_ms =
            parse_opt::<u64>(env, "INGEST_TIMEOUT_MS")?.unwrap_or(DEFAULT_INGEST_TIMEOUT_MS);
        if !(50..=25_000).contains(&ingest_timeout_ms) {
            return Err(ConfigError::new(
                "INGEST_TIMEOUT_MS",
                "must be between 50 and 25000 (Stripe gives up on an endpoint after about 30 s)",
            ));
        }

        let seen_cache_size = parse_opt::<usize>(env, "DEDUPE_CACHE_SIZE")?
            .unwrap_or(crate::ingest::DEFAULT_SEEN_CACHE_SIZE);
        if seen_cache_size > 10_000_000 {
            return Err(ConfigError::new(
                "DEDUPE_CACHE_SIZE",
                "must be at most 10000000",
            ));
        }

        let state_cache_bytes = parse_opt::<usize>(env, "STATE_CACHE_BYTES")?
            .unwrap_or(crate::ingest::DEFAULT_KNOWN_STATES_BYTES);
        if state_cache_bytes > 1 << 30 {
            return Err(ConfigError::new(
                "STATE_CACHE_BYTES",
                "must be at most 1073741824 (1 GiB)",
            ));
        }

        let api_tokens = match env.get("API_TOKENS") {
            None => ApiTokens::default(),
            Some(list) => ApiTokens::parse(&list)
                .map_err(|e| ConfigError::new("API_TOKENS", e.to_string()))?,
        };
        let log_format = match env.get("LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(ConfigError::new("LOG_FORMAT", "must be `pretty` or `json`")),
        };

        let grace_period_days = parse_opt::<u32>(env, "GRACE_PERIOD_DAYS")?.unwrap_or(7);
        if grace_period_days > 90 {
            return Err(ConfigError::new(
                "GRACE_PERIOD_DAYS",
                "must be between 0 and 90",
            ));
        }

        let billing = BillingConfig::from_lookup(env, secret_key.as_ref())?;
        let reconcile_interval_secs = match env.get("RECONCILE_INTERVAL") {
            None => 86_400,
            Some(v) => crate::reconcile::sync_events::parse_window(&v)
                .map_err(|e| ConfigError::new("RECONCILE_INTERVAL", e))?,
        };
        if !(MIN_RECONCILE_INTERVAL_SECS..=MAX_RECONCILE_INTERVAL_SECS)
            .contains(&reconcile_interval_secs)
        {
            return Err(ConfigError::new(
                "RECONCILE_INTERVAL",
                "must be between 60 seconds and 30 days",
            ));
        }
        let reconcile_repair = match env.get("RECONCILE_REPAIR").as_deref().map(str::trim) {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(_) => {
                return Err(ConfigError::new(
                    "RECONCILE_REPAIR",
                    "must be true or false",
                ))
            }
        };

        let mail = mail_config(env, billing.as_ref().map(|b| b.portal_return_url.as_str()))?;
        let outbox_interval_ms = parse_opt::<u64>(env, "OUTBOX_INTERVAL_MS")?.unwrap_or(2000);
        if !(50..=600_000).contains(&outbox_interval_ms) {
            return Err(ConfigError::new(
                "OUTBOX_INTERVAL_MS",
                "must be between 50 and 600000",
            ));
        }
        let shutdown_timeout_secs = parse_opt::<u64>(env, "SHUTDOWN_TIMEOUT_SECS")?.unwrap_or(20);
        if !(1..=600).contains(&shutdown_timeout_secs) {
            return Err(ConfigError::new(
                "SHUTDOWN_TIMEOUT_SECS",
                "must be between 1 and 600",
            ));
        }

        let seal = SealConfig::from_lookup(env, &database, mode)?;
        Ok(ServeConfig {
            seal,
            mail,
            outbox_interval: Duration::from_millis(outbox_interval_ms),
            shutdown_timeout: Duration::from_secs(shutdown_timeout_secs),
            transport: transport_config(env)?,
            ui: ui_config(env)?,
            reconcile_interval_secs,
            reconcile_repair,
            billing,
            grace_period_days,
            listen_addr,
            database,
            webhook: WebhookConfig {
                secrets,
                tolerance_secs,
                max_body_bytes,
                ingest_timeout: Duration::from_millis(ingest_timeout_ms),
                mode,
                seen_cache_size,
                state_cache_bytes,
            },
            secret_key,
            api_tokens,
            log_format,
        })
    }
}

/// `SMTP_URL`, `MAIL_FROM` and `BILLING_URL` (which defaults to the portal's return URL, the
/// app's billing page). Without `SMTP_URL` emails go to the log.
pub fn mail_config(
    env: &impl Lookup,
    portal_return_url: Option<&str>,
) -> Result<crate::outbox::mail::MailConfig, ConfigError> {
    reject_blank(env, "SMTP_URL")?;
    let smtp_url = env
        .get("SMTP_URL")
        .map(|u| Secret::new(u.trim().to_owned()));
    if let Some(url) = &smtp_url {
        // Checked now so a typo stops the start, not the first email hours later.
        crate::outbox::mail::check_smtp_url(url).map_err(|e| ConfigError::new("SMTP_URL", e))?;
    }
    let from = match (env.get("MAIL_FROM"), &smtp_url) {
        (Some(from), _) => crate::outbox::mail::MailConfig::parse_from(&from)
            .map_err(|e| ConfigError::new("MAIL_FROM", e))?,
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "MAIL_FROM",
                "is required when SMTP_URL is set (the sender of billing emails)",
            ))
        }
        (None, None) => crate::outbox::mail::MailConfig::parse_from(DEFAULT_MAIL_FROM)
            .expect("the default sender parses"),
    };
    let billing_url = match env.get("BILLING_URL") {
        Some(url) => {
            let url = url.trim().to_owned();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::new("BILLING_URL", "must be an http(s) URL"));
            }
            Some(url)
        }
        None => portal_return_url.map(str::to_owned),
    };
    let mail = crate::outbox::mail::MailConfig {
        smtp_url,
        from,
        billing_url,
    };
    Ok(mail)
}

fn parse_opt<T: std::str::FromStr>(
    env: &impl Lookup,
    variable: &'static str,
) -> Result<Option<T>, ConfigError> {
    env.get(variable)
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|_| ConfigError::new(variable, "must be a non-negative whole number"))
        })
        .transpose()
}

/// `CHECKPOINT_INTERVAL` bounds: at least a second, at most a day.
pub const MIN_CHECKPOINT_INTERVAL_SECS: i64 = 1;
pub const MAX_CHECKPOINT_INTERVAL_SECS: i64 = 86_400;
pub const DEFAULT_CHECKPOINT_INTERVAL_SECS: i64 = 60;

/// Where the sealing key comes from (`LEDGER_SIGNING_KEY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningKeyConfig {
    /// `off`: no tree, no checkpoints.
    Off,
    /// A 32-byte Ed25519 seed, given inline (base64) or read from the file named.
    Seed(Secret<[u8; 32]>),
    /// Not set on the embedded default: the key file beside the SQLite database, created with
    /// a fresh key (mode 0600) on first start.
    Generate(std::path::PathBuf),
}

/// The sealed log's settings (docs/adr/0018).
#[derive(Debug, Clone)]
pub struct SealConfig {
    pub key: SigningKeyConfig,
    /// The checkpoint origin and key name: `CHECKPOINT_ORIGIN`, else `stripe-ledger/<mode>`.
    pub origin: String,
    /// `CHECKPOINT_INTERVAL`: how often a checkpoint is signed (when the tree grew) and the
    /// newest entries are verified again.
    pub checkpoint_interval: Duration,
    /// `CHECKPOINT_DIR`: every checkpoint is also written there as `<size>.note`.
    pub checkpoint_dir: Option<std::path::PathBuf>,
}

impl SealConfig {
    pub fn from_lookup(
        env: &impl Lookup,
        database: &DatabaseConfig,
        mode: Mode,
    ) -> Result<Self, ConfigError> {
        let origin = match env.get("CHECKPOINT_ORIGIN") {
            None => format!("stripe-ledger/{mode}"),
            Some(origin) => {
                let origin = origin.trim().to_owned();
                let valid = (1..=200).contains(&origin.len())
                    && origin.bytes().all(|b| b.is_ascii_graphic() && b != b'+');
                if !valid {
                    return Err(ConfigError::new(
                        "CHECKPOINT_ORIGIN",
                        "must be 1 to 200 printable ASCII characters without spaces or `+`, \
                         like example.com/ledger/live",
                    ));
                }
                origin
            }
        };
        reject_blank(env, "LEDGER_SIGNING_KEY")?;
        let key = match env.get("LEDGER_SIGNING_KEY").as_deref().map(str::trim) {
            Some("off") => SigningKeyConfig::Off,
            Some(value) => SigningKeyConfig::Seed(signing_seed(value, &origin)?),
            None => match &database.target {
                DbTarget::Sqlite(options) if !is_memory(options.get_filename()) => {
                    let mut name = options.get_filename().as_os_str().to_owned();
                    name.push(".signing-key");
                    SigningKeyConfig::Generate(name.into())
                }
                _ => {
                    return Err(ConfigError::new(
                        "LEDGER_SIGNING_KEY",
                        "is required with PostgreSQL (and an in-memory database): a key file \
                         path or a base64 32-byte Ed25519 seed (`head -c 32 /dev/urandom | \
                         base64`), or `off` to run without a sealed log",
                    ))
                }
            },
        };
        let interval = match env.get("CHECKPOINT_INTERVAL") {
            None => DEFAULT_CHECKPOINT_INTERVAL_SECS,
            Some(v) => crate::reconcile::sync_events::parse_window(&v)
                .map_err(|e| ConfigError::new("CHECKPOINT_INTERVAL", e))?,
        };
        if !(MIN_CHECKPOINT_INTERVAL_SECS..=MAX_CHECKPOINT_INTERVAL_SECS).contains(&interval) {
            return Err(ConfigError::new(
                "CHECKPOINT_INTERVAL",
                "must be between 1 second and 1 day",
            ));
        }
        let checkpoint_dir = env.get("CHECKPOINT_DIR").map(|d| d.trim().into());
        Ok(SealConfig {
            key,
            origin,
            checkpoint_interval: Duration::from_secs(interval.unsigned_abs()),
            checkpoint_dir,
        })
    }
}

fn is_memory(path: &std::path::Path) -> bool {
    path.as_os_str().is_empty() || path.to_str().is_some_and(|p| p.contains(":memory:"))
}

/// `LEDGER_SIGNING_KEY`'s value: a key inline (base64 of the 32-byte seed, or Go's
/// `PRIVATE+KEY+...` string), or the path of a key file, read by the same reader as the
/// generated key file (`sealer::keys::parse_key_file`). A `PRIVATE+KEY` carries its key name,
/// which must be the origin: the name is in every signature line and in the verifier key, and
/// this log signs as its origin. Errors never show the value nor the file's content.
fn signing_seed(value: &str, origin: &str) -> Result<Secret<[u8; 32]>, ConfigError> {
    use crate::sealer::keys;
    let key = match keys::parse_key_text(value) {
        Some(key) => key,
        None if value.trim_start().starts_with("PRIVATE+KEY+") => {
            return Err(ConfigError::new(
                "LEDGER_SIGNING_KEY",
                "is a malformed PRIVATE+KEY string (or its key id does not match)",
            ))
        }
        None => {
            let content = std::fs::read(value).map_err(|_| {
                ConfigError::new(
                    "LEDGER_SIGNING_KEY",
                    "is neither a key (base64 32-byte seed or PRIVATE+KEY string) nor a \
                     readable key file",
                )
            })?;
            keys::parse_key_file(&content).ok_or_else(|| {
                ConfigError::new(
                    "LEDGER_SIGNING_KEY",
                    "names a file that does not hold a key (base64 32-byte seed, PRIVATE+KEY \
                     string, or the 32 raw bytes)",
                )
            })?
        }
    };
    if key.name.as_deref().is_some_and(|name| name != origin) {
        return Err(ConfigError::new(
            "LEDGER_SIGNING_KEY",
            format!(
                "holds a PRIVATE+KEY whose key name is not the checkpoint origin {origin:?}: \
                 the key name must equal the origin (set CHECKPOINT_ORIGIN to it, or use a key \
                 of that name)"
            ),
        ));
    }
    Ok(key.seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_takes_half_the_cpus_and_a_one_shot_command_all_of_them_unless_a_worker_threads_variable_says(
    ) {
        let none = env(&[]);
        for (cpus, server, one_shot) in [(0, 1, 1), (1, 1, 1), (2, 1, 2), (3, 1, 3), (8, 4, 8)] {
            assert_eq!(
                worker_threads(&none, RuntimeUse::Server, cpus).unwrap(),
                server
            );
            assert_eq!(
                worker_threads(&none, RuntimeUse::OneShot, cpus).unwrap(),
                one_shot
            );
        }
        for usage in [RuntimeUse::Server, RuntimeUse::OneShot] {
            let set = env(&[("WORKER_THREADS", " 3 ")]);
            assert_eq!(worker_threads(&set, usage, 2).unwrap(), 3);
            assert_eq!(
                worker_threads(&env(&[("WORKER_THREADS", "1024")]), usage, 2).unwrap(),
                1024
            );
            // tokio's own variable, which users may have set before: below ours.
            let tokio = env(&[("TOKIO_WORKER_THREADS", "5")]);
            assert_eq!(worker_threads(&tokio, usage, 2).unwrap(), 5);
            let both = env(&[("TOKIO_WORKER_THREADS", "5"), ("WORKER_THREADS", "3")]);
            assert_eq!(worker_threads(&both, usage, 2).unwrap(), 3);
            for (variable, bad) in ["0", "1025", "-1", "two", "1.5", "\u{0}1", "\u{0663}"]
                .into_iter()
                .flat_map(|bad| [("WORKER_THREADS", bad), ("TOKIO_WORKER_THREADS", bad)])
            {
                let e = worker_threads(&env(&[(variable, bad)]), usage, 2).unwrap_err();
                assert_eq!(e.variable, variable, "{bad:?}");
                assert!(
                    [
                        "must be between 1 and 1024",
                        "must be a non-negative whole number"
                    ]
                    .contains(&e.problem.as_str()),
                    "{bad:?}: {e}"
                );
            }
        }
    }

    #[test]
    fn console_settings_take_durations_and_an_origin() {
        let config = ServeConfig::from_lookup(&env(&[
            ("DATABASE_URL", "sqlite://x.db"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_abc"),
            ("UI_SESSION_IDLE", "90s"),
            ("UI_SESSION_MAX", "2h"),
            ("PUBLIC_URL", "HTTPS://Ledger.example.com/base?x"),
        ]))
        .unwrap();
        assert_eq!(config.ui.session_idle, Duration::from_secs(90));
        assert_eq!(config.ui.session_max, Duration::from_secs(7200));
        assert_eq!(
            config.ui.public_origin.as_deref(),
            Some("https://ledger.example.com")
        );
        for (name, value) in [
            ("UI_SESSION_IDLE", "9h"),
            ("UI_SESSION_MAX", "8d"),
            ("UI_SESSION_IDLE", "soon"),
            ("PUBLIC_URL", "ftp://x"),
            ("PUBLIC_URL", "https://user@host"),
            ("UI_CSRF_KEY", "short"),
        ] {
            let e = ServeConfig::from_lookup(&env(&[
                ("DATABASE_URL", "sqlite://x.db"),
                ("STRIPE_WEBHOOK_SECRET", "whsec_abc"),
                (name, value),
            ]))
            .unwrap_err();
            assert_eq!(e.variable, name, "{value}");
        }
    }

    fn env(pairs: &[(&str, &str)]) -> MapEnv {
        MapEnv(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn the_embedded_default_needs_only_the_webhook_secret() {
        let config =
            ServeConfig::from_lookup(&env(&[("STRIPE_WEBHOOK_SECRET", "whsec_x")])).unwrap();
        assert_eq!(config.listen_addr.to_string(), DEFAULT_LISTEN_ADDR);
        assert_eq!(
            config.database.target.backend(),
            crate::store::Backend::Sqlite
        );
        assert_eq!(config.webhook.mode, Mode::Test);
        assert_eq!(config.webhook.tolerance_secs, 300);
    }

    #[test]
    fn a_missing_webhook_secret_is_a_startup_error_naming_the_variable() {
        let err = ServeConfig::from_lookup(&env(&[])).unwrap_err();
        assert_eq!(err.variable, "STRIPE_WEBHOOK_SECRET");
        let err = ServeConfig::from_lookup(&env(&[("STRIPE_WEBHOOK_SECRET", "  ")])).unwrap_err();
        assert_eq!(err.variable, "STRIPE_WEBHOOK_SECRET");
    }

    #[test]
    fn malformed_values_name_the_variable_and_never_echo_the_value() {
        let cases = [
            ("STRIPE_SECRET_KEY", "pk_live_topsecretvalue"),
            ("LISTEN_ADDR", "topsecretvalue"),
            ("DATABASE_URL", "mysql://topsecretvalue"),
            ("DATABASE_URL", "postgres://u@h/db?sslmode=topsecretvalue"),
            ("DATABASE_URL", "sqlite://db?mode=topsecretvalue"),
            ("WEBHOOK_TOLERANCE_SECS", "topsecretvalue"),
            ("WEBHOOK_TOLERANCE_SECS", "0"),
            ("API_TOKENS", "admin:topsecretvalue1234567"),
            ("LOG_FORMAT", "topsecretvalue"),
            ("SMTP_URL", "gopher://user:topsecretvalue@host"),
            ("MAIL_FROM", "not an address topsecretvalue"),
            ("BILLING_URL", "ftp://topsecretvalue"),
            ("OUTBOX_INTERVAL_MS", "topsecretvalue"),
            ("OUTBOX_INTERVAL_MS", "10"),
            ("SHUTDOWN_TIMEOUT_SECS", "0"),
            ("HTTP_HEADER_TIMEOUT_SECS", "0"),
            ("HTTP_IDLE_TIMEOUT_SECS", "topsecretvalue"),
            ("HTTP_MAX_CONNECTIONS", "0"),
        ];
        for (variable, value) in cases {
            let err = ServeConfig::from_lookup(&env(&[
                ("STRIPE_WEBHOOK_SECRET", "whsec_x"),
                (variable, value),
            ]))
            .unwrap_err();
            assert_eq!(err.variable, variable);
            assert!(!err.to_string().contains("topsecretvalue"), "{err}");
        }
    }

    #[test]
    fn a_live_key_switches_the_expected_livemode() {
        let config = ServeConfig::from_lookup(&env(&[
            ("STRIPE_WEBHOOK_SECRET", "whsec_x"),
            ("STRIPE_SECRET_KEY", "sk_live_abc"),
        ]))
        .unwrap();
        assert_eq!(config.webhook.mode, Mode::Live);
    }

    fn billing_env(extra: &[(&str, &str)]) -> MapEnv {
        let mut pairs = vec![
            ("STRIPE_WEBHOOK_SECRET", "whsec_x"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("STRIPE_SECRET_KEY", "sk_test_abc"),
            ("STRIPE_PRICE_IDS_TIER1", "price_1"),
            ("STRIPE_PRICE_IDS_ONE_TIME_EBOOK", "price_2"),
            ("CHECKOUT_SUCCESS_URL", "https://app.example.com/ok"),
            ("CHECKOUT_CANCEL_URL", "https://app.example.com/cancel"),
            (
                "STRIPE_PORTAL_RETURN_URL",
                "https://app.example.com/account",
            ),
        ];
        pairs.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        pairs.extend(extra.iter().filter(|(_, v)| !v.is_empty()));
        env(&pairs)
    }

    #[test]
    fn billing_reads_tiers_and_one_time_products_from_their_prefixes() {
        let config = ServeConfig::from_lookup(&billing_env(&[])).unwrap();
        let billing = config.billing.unwrap();
        assert_eq!(
            billing.tiers.get("tier1").map(String::as_str),
            Some("price_1")
        );
        assert_eq!(
            billing.one_time.get("ebook").map(String::as_str),
            Some("price_2")
        );
        assert!(!billing.tiers.contains_key("one_time_ebook"));
        assert!(
            ServeConfig::from_lookup(&env(&[("STRIPE_WEBHOOK_SECRET", "whsec_x")]))
                .unwrap()
                .billing
                .is_none()
        );
    }

    #[test]
    fn billing_misconfiguration_stops_the_service_naming_the_variable() {
        let cases = [
            (
                vec![("STRIPE_PUBLISHABLE_KEY", "pk_live_abc")],
                "STRIPE_PUBLISHABLE_KEY",
            ),
            (
                vec![("STRIPE_PUBLISHABLE_KEY", "sk_test_oops")],
                "STRIPE_PUBLISHABLE_KEY",
            ),
            (vec![("STRIPE_SECRET_KEY", "")], "STRIPE_SECRET_KEY"),
            (
                vec![("STRIPE_PRICE_IDS_TIER1", "prod_123")],
                "STRIPE_PRICE_IDS_TIER1",
            ),
            (vec![("CHECKOUT_SUCCESS_URL", "")], "CHECKOUT_SUCCESS_URL"),
            (
                vec![("STRIPE_PORTAL_RETURN_URL", "ftp://x")],
                "STRIPE_PORTAL_RETURN_URL",
            ),
            (vec![("JWT_SECRET", "short")], "JWT_SECRET"),
            (vec![("STRIPE_DEADLINE_MS", "50")], "STRIPE_DEADLINE_MS"),
            (vec![("STRIPE_DEADLINE_MS", "soon")], "STRIPE_DEADLINE_MS"),
            (vec![("JWT_AUDIENCE", "a\u{0}b")], "JWT_AUDIENCE"),
        ];
        for (extra, variable) in cases {
            let err = ServeConfig::from_lookup(&billing_env(&extra)).unwrap_err();
            assert_eq!(err.variable, variable, "{extra:?}");
        }
        let live = billing_env(&[
            ("STRIPE_SECRET_KEY", "sk_live_abc"),
            ("STRIPE_PUBLISHABLE_KEY", "pk_live_abc"),
        ]);
        assert!(ServeConfig::from_lookup(&live).is_ok());
    }

    #[test]
    fn email_is_logged_by_default_and_smtp_needs_a_sender() {
        let default =
            ServeConfig::from_lookup(&env(&[("STRIPE_WEBHOOK_SECRET", "whsec_x")])).unwrap();
        assert!(default.mail.smtp_url.is_none());
        assert_eq!(default.mail.from.email.to_string(), "billing@localhost");
        assert_eq!(default.shutdown_timeout, Duration::from_secs(20));
        assert_eq!(default.transport, TransportConfig::default());
        let err = ServeConfig::from_lookup(&env(&[
            ("STRIPE_WEBHOOK_SECRET", "whsec_x"),
            (
                "SMTP_URL",
                "smtp://user:pw@smtp.example.com:587?tls=required",
            ),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "MAIL_FROM");
        let smtp = ServeConfig::from_lookup(&env(&[
            ("STRIPE_WEBHOOK_SECRET", "whsec_x"),
            ("SMTP_URL", "smtps://user:pw@smtp.example.com"),
            ("MAIL_FROM", "Billing <billing@example.com>"),
            ("BILLING_URL", "https://app.example.com/billing"),
        ]))
        .unwrap();
        assert!(smtp.mail.smtp_url.is_some());
        assert_eq!(
            smtp.mail.billing_url.as_deref(),
            Some("https://app.example.com/billing")
        );
    }
    #[test]
    fn a_whitespace_only_secret_is_a_startup_error_not_off() {
        for variable in SECRET_VARIABLES {
            for blank in [" ", "   ", "\t", " \n "] {
                let err = ServeConfig::from_lookup(&billing_env(&[(variable, blank)])).unwrap_err();
                assert_eq!(err.variable, *variable, "{blank:?}");
                assert!(err.problem.contains("only whitespace"), "{err}");
            }
        }
        let err = DatabaseConfig::from_lookup(&env(&[("DATABASE_URL", "  ")])).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
        let err = mail_config(&env(&[("SMTP_URL", " ")]), None).unwrap_err();
        assert_eq!(err.variable, "SMTP_URL");
        let err = ServeConfig::from_lookup(&billing_env(&[(
            "API_TOKENS",
            "read:0123456789abcdef, ,audit:0123456789abcdef",
        )]))
        .unwrap_err();
        assert_eq!(err.to_string(), "API_TOKENS: entry #2 is only whitespace");
        // Empty keeps its documented meaning: not configured.
        let off = ServeConfig::from_lookup(&billing_env(&[("JWT_SECRET", "")])).unwrap();
        assert!(off.billing.is_none());
        let mut explicit_empty = billing_env(&[]);
        explicit_empty.0.insert("JWT_SECRET".into(), String::new());
        explicit_empty.0.insert("SMTP_URL".into(), String::new());
        assert!(ServeConfig::from_lookup(&explicit_empty)
            .unwrap()
            .billing
            .is_none());
    }

    #[test]
    fn durations_are_bounded_and_never_wrap() {
        let refused = [
            ("RECONCILE_INTERVAL", "213503982334602d"),
            ("RECONCILE_INTERVAL", "9223372036854775807"),
            ("RECONCILE_INTERVAL", "31d"),
            ("RECONCILE_INTERVAL", "59"),
            ("RECONCILE_INTERVAL", "-1"),
            ("SHUTDOWN_TIMEOUT_SECS", "18446744073709551616"),
            ("SHUTDOWN_TIMEOUT_SECS", "601"),
            ("OUTBOX_INTERVAL_MS", "18446744073709551615"),
            ("INGEST_TIMEOUT_MS", "-1"),
            ("WEBHOOK_TOLERANCE_SECS", "1e3"),
            ("GRACE_PERIOD_DAYS", "4294967296"),
            ("STRIPE_TIMEOUT_MS", "١٢"),
            ("DATABASE_MAX_CONNECTIONS", "1001"),
            ("DATABASE_MAX_CONNECTIONS", "4294967295"),
            ("DEDUPE_CACHE_SIZE", "18446744073709551615"),
            ("STATE_CACHE_BYTES", "1073741825"),
            ("WEBHOOK_MAX_BODY_BYTES", "18446744073709551615"),
        ];
        for (variable, value) in refused {
            let err = ServeConfig::from_lookup(&billing_env(&[(variable, value)])).unwrap_err();
            assert_eq!(err.variable, variable, "{value}");
            assert!(!err.to_string().contains(value), "{err}");
        }
        let ok = ServeConfig::from_lookup(&billing_env(&[("RECONCILE_INTERVAL", "30d")])).unwrap();
        assert_eq!(ok.reconcile_interval_secs, MAX_RECONCILE_INTERVAL_SECS);
    }

    /// Every variable `ServeConfig` reads (with billing on, so its variables are read too).
    const SERVE_VARIABLES: &[&str] = &[
        "LISTEN_ADDR",
        "DATABASE_URL",
        "DATABASE_MAX_CONNECTIONS",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "API_TOKENS",
        "WEBHOOK_TOLERANCE_SECS",
        "WEBHOOK_MAX_BODY_BYTES",
        "INGEST_TIMEOUT_MS",
        "DEDUPE_CACHE_SIZE",
        "STATE_CACHE_BYTES",
        "GRACE_PERIOD_DAYS",
        "LOG_FORMAT",
        "SHUTDOWN_TIMEOUT_SECS",
        "JWT_SECRET",
        "STRIPE_PUBLISHABLE_KEY",
        "STRIPE_PRICE_IDS_TIER1",
        "STRIPE_PRICE_IDS_ONE_TIME_EBOOK",
        "CHECKOUT_SUCCESS_URL",
        "CHECKOUT_CANCEL_URL",
        "STRIPE_PORTAL_RETURN_URL",
        "STRIPE_API_BASE",
        "STRIPE_TIMEOUT_MS",
        "RECONCILE_INTERVAL",
        "RECONCILE_REPAIR",
        "SMTP_URL",
        "MAIL_FROM",
        "BILLING_URL",
        "OUTBOX_INTERVAL_MS",
        "HTTP_HEADER_TIMEOUT_SECS",
        "HTTP_IDLE_TIMEOUT_SECS",
        "HTTP_MAX_CONNECTIONS",
        "JWT_AUDIENCE",
        "JWT_ISSUER",
        "STRIPE_DEADLINE_MS",
        "LEDGER_SIGNING_KEY",
        "CHECKPOINT_INTERVAL",
        "CHECKPOINT_DIR",
        "CHECKPOINT_ORIGIN",
        "PUBLIC_URL",
        "UI_CSRF_KEY",
        "UI_SESSION_IDLE",
        "UI_SESSION_MAX",
    ];

    /// Values known to have broken parsers somewhere, and shapes each kind of parser expects.
    const SEEDS: &[&str] = &[
        "213503982334602d",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551616",
        "-1",
        "+5",
        "1e3",
        "0",
        "0x10",
        " ",
        "\t\n",
        "\0",
        "a\0b",
        "١٢",
        "１２",
        "30d",
        "whsec_x",
        "whsec_x, whsec_y",
        "sk_test_",
        "sk_live_x\u{202e}",
        "read:0123456789abcdef",
        "read:",
        "smtp://user:pw@host:25",
        "smtps://u:p@",
        "postgres://u:p@h/db?sslmode=",
        "sqlite://",
        "https://",
        "Billing <b@x>",
        "[::1]:99999",
        ",",
        "true",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any value of any variable: no panic, an error that names a variable we read, and never
        /// the value (a unique marker is planted in it; configuration values are often secrets).
        #[test]
        fn any_value_of_any_variable_is_accepted_or_refused_without_echoing_it(
            variable in proptest::sample::select(SERVE_VARIABLES),
            seed in proptest::sample::select(SEEDS),
            junk in "\\PC{0,12}|[\\x00-\\x20,:=@/\\\\]{0,6}",
            shape in 0u8..5,
        ) {
            const MARKER: &str = "Qz7markerQz7";
            let value = match shape {
                0 => seed.to_owned(),
                1 => format!("{seed}{MARKER}"),
                2 => format!("{MARKER}{seed}"),
                3 => format!("{seed}{junk}{MARKER}"),
                _ => format!("{junk}{MARKER}{junk}{seed}"),
            };
            let lookup = billing_env(&[(variable, value.as_str())]);
            if let Err(err) = ServeConfig::from_lookup(&lookup) {
                let message = err.to_string();
                proptest::prop_assert!(!message.contains(MARKER), "{variable}: {message:?}");
                let named = err.variable.as_ref();
                proptest::prop_assert!(
                    SERVE_VARIABLES.contains(&named) || named == "STRIPE_PRICE_IDS_<TIER>",
                    "{variable}: unclassified {message:?}"
                );
            }
        }
    }
    fn dotenv_error(contents: &str) -> String {
        let err = dotenvy::from_read(contents.as_bytes()).unwrap_err();
        describe_dotenv_error(&err, contents)
    }

    #[test]
    fn a_malformed_dotenv_names_the_line_and_variable_and_never_the_content() {
        let contents = "# billing\nLISTEN_ADDR=127.0.0.1:3000\n\nJWT_SECRET=\"jwt-secret-Qz7-unterminated\nOTHER=1\n";
        let message = dotenv_error(contents);
        assert!(message.starts_with("line 4 (JWT_SECRET)"), "{message}");
        assert!(!message.contains("Qz7"), "{message}");
        let message = dotenv_error("A=1\nexport STRIPE_SECRET_KEY='sk_test_Qz7\n");
        assert!(
            message.starts_with("line 2 (STRIPE_SECRET_KEY)"),
            "{message}"
        );
        // No identifier before `=`: only the line number.
        let message = dotenv_error("A=1\nB=2\nsk_live_Qz7 oops\n");
        assert!(message.starts_with("line 3 cannot"), "{message}");
        assert!(!message.contains("Qz7"), "{message}");
        let message = dotenv_error("A=1\n\"sk_live_Qz7=x\n");
        assert!(
            !message.contains("Qz7") && message.starts_with("line 2 cannot"),
            "{message}"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Whatever a `.env` holds, the error shows none of it beyond an identifier.
        #[test]
        fn a_dotenv_error_never_shows_a_value(
            lines in proptest::collection::vec("[A-Z_]{1,8}|\\PC{0,10}|[=\"'\\\\$ #{}]{0,4}", 0..6),
        ) {
            const MARKER: &str = "Qz7markerQz7";
            let contents = lines
                .iter()
                .map(|l| format!("{l}{MARKER}{l}"))
                .collect::<Vec<_>>()
                .join("\n");
            if let Err(err) = dotenvy::from_read_iter(contents.as_bytes()).collect::<Result<Vec<_>, _>>() {
                let message = describe_dotenv_error(&err, &contents);
                proptest::prop_assert!(!message.contains(MARKER), "{message:?}");
            }
        }
    }

    fn seal(pairs: &[(&str, &str)]) -> Result<SealConfig, ConfigError> {
        let mut all = vec![("STRIPE_WEBHOOK_SECRET", "whsec_x")];
        all.extend_from_slice(pairs);
        ServeConfig::from_lookup(&env(&all)).map(|c| c.seal)
    }

    #[test]
    fn the_embedded_default_generates_a_key_file_beside_the_database() {
        let c = seal(&[("DATABASE_URL", "sqlite:///var/lib/ledger/ledger.db")]).unwrap();
        assert_eq!(
            c.key,
            SigningKeyConfig::Generate("/var/lib/ledger/ledger.db.signing-key".into())
        );
        assert_eq!(c.origin, "stripe-ledger/test");
        assert_eq!(c.checkpoint_interval, Duration::from_secs(60));
        let live = seal(&[("STRIPE_SECRET_KEY", "sk_live_abc")]).unwrap();
        assert_eq!(live.origin, "stripe-ledger/live");
    }

    #[test]
    fn postgres_without_a_signing_key_refuses_to_start_naming_the_variable() {
        let e = seal(&[("DATABASE_URL", "postgres://u@localhost/db")]).unwrap_err();
        assert_eq!(e.variable, "LEDGER_SIGNING_KEY");
        let off = seal(&[
            ("DATABASE_URL", "postgres://u@localhost/db"),
            ("LEDGER_SIGNING_KEY", "off"),
        ])
        .unwrap();
        assert_eq!(off.key, SigningKeyConfig::Off);
    }

    #[test]
    fn a_signing_key_is_a_base64_seed_or_a_key_file_and_is_never_echoed() {
        let seed = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
        let c = seal(&[("LEDGER_SIGNING_KEY", seed)]).unwrap();
        assert_eq!(c.key, SigningKeyConfig::Seed(Secret::new([7; 32])));
        assert!(!format!("{c:?}").contains(seed));
        let dir = std::env::temp_dir().join(format!("ledger-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, format!("{seed}\n")).unwrap();
        let c = seal(&[("LEDGER_SIGNING_KEY", file.to_str().unwrap())]).unwrap();
        assert_eq!(c.key, SigningKeyConfig::Seed(Secret::new([7; 32])));
        std::fs::write(&file, "not a key at all").unwrap();
        for bad in [
            file.to_str().unwrap(),
            "/nonexistent/key",
            "c2hvcnQ=",
            "secretish-value",
        ] {
            let e = seal(&[("LEDGER_SIGNING_KEY", bad)]).unwrap_err();
            assert_eq!(e.variable, "LEDGER_SIGNING_KEY");
            assert!(!e.to_string().contains(bad), "{e}");
            assert!(!e.to_string().contains("not a key"), "{e}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_signing_key_may_be_a_private_key_string_named_for_the_origin_inline_or_in_a_file() {
        let key = crate::seal::note::SigningKey::from_seed("stripe-ledger/test", [7; 32]).unwrap();
        let text = key.to_private_key_string();
        let c = seal(&[("LEDGER_SIGNING_KEY", &text)]).unwrap();
        assert_eq!(c.key, SigningKeyConfig::Seed(Secret::new([7; 32])));
        let dir = std::env::temp_dir().join(format!("ledger-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, format!("{text}\n")).unwrap();
        let c = seal(&[("LEDGER_SIGNING_KEY", file.to_str().unwrap())]).unwrap();
        assert_eq!(c.key, SigningKeyConfig::Seed(Secret::new([7; 32])));
        // 32 raw bytes in a file are the seed too.
        std::fs::write(&file, [7u8; 32]).unwrap();
        let c = seal(&[("LEDGER_SIGNING_KEY", file.to_str().unwrap())]).unwrap();
        assert_eq!(c.key, SigningKeyConfig::Seed(Secret::new([7; 32])));
        // Named for another origin: refused, unless CHECKPOINT_ORIGIN is that name.
        let other = crate::seal::note::SigningKey::from_seed("example.com/log", [7; 32])
            .unwrap()
            .to_private_key_string();
        let e = seal(&[("LEDGER_SIGNING_KEY", &other)]).unwrap_err();
        assert_eq!(e.variable, "LEDGER_SIGNING_KEY");
        assert!(e.to_string().contains("origin"), "{e}");
        std::fs::write(&file, &other).unwrap();
        let e = seal(&[("LEDGER_SIGNING_KEY", file.to_str().unwrap())]).unwrap_err();
        assert_eq!(e.variable, "LEDGER_SIGNING_KEY");
        let c = seal(&[
            ("LEDGER_SIGNING_KEY", &other),
            ("CHECKPOINT_ORIGIN", "example.com/log"),
        ])
        .unwrap();
        assert_eq!(c.key, SigningKeyConfig::Seed(Secret::new([7; 32])));
        // A wrong key id, or a truncated key: refused without echoing any of it.
        let secret_part = text.splitn(5, '+').nth(4).unwrap();
        let bad_id = text.replace(text.split('+').nth(3).unwrap(), "00000000");
        for bad in [bad_id.as_str(), &text[..text.len() - 4]] {
            let e = seal(&[("LEDGER_SIGNING_KEY", bad)]).unwrap_err();
            assert_eq!(e.variable, "LEDGER_SIGNING_KEY");
            assert!(e.to_string().contains("PRIVATE+KEY"), "{e}");
            for shown in [bad, &secret_part[..8]] {
                assert!(!e.to_string().contains(shown), "{e}");
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn checkpoint_interval_and_origin_are_validated() {
        for (v, ok) in [
            ("1s", true),
            ("60", true),
            ("1d", true),
            ("0", false),
            ("2d", false),
            ("x", false),
        ] {
            let c = seal(&[("CHECKPOINT_INTERVAL", v)]);
            assert_eq!(c.is_ok(), ok, "{v}");
            if let Err(e) = c {
                assert_eq!(e.variable, "CHECKPOINT_INTERVAL");
            }
        }
        for (v, ok) in [
            ("example.com/ledger", true),
            ("a b", false),
            ("a+b", false),
            ("é", false),
        ] {
            let c = seal(&[("CHECKPOINT_ORIGIN", v)]);
            assert_eq!(c.is_ok(), ok, "{v}");
        }
        let long = "x".repeat(201);
        assert!(seal(&[("CHECKPOINT_ORIGIN", &long)]).is_err());
    }
}
