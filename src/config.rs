//! Configuration from the environment (and `.env`, loaded by `main`).
//!
//! Every problem is reported with the variable's name and never with its value: a startup
//! error is printed to a terminal or shipped to a log collector, and values are often secrets.

use std::net::SocketAddr;
use std::time::Duration;

use crate::auth::ApiTokens;
use crate::db::{DbTarget, PoolSettings};
use crate::stripe::keys::{Mode, SecretKey};
use crate::stripe::signature::{WebhookSecrets, DEFAULT_TOLERANCE_SECS};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://stripe-ledger.db";
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:3000";
/// Stripe's largest events (an invoice with many lines) stay well under this.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Stripe gives an endpoint a few seconds; answering 503 by then makes it retry promptly.
pub const DEFAULT_INGEST_TIMEOUT_MS: u64 = 1500;

#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            variable,
            problem: problem.into(),
        }
    }
}

/// A source of configuration values: the process environment in production, a map in tests.
pub trait Lookup {
    fn get(&self, key: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Lookup for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        // Unset and empty mean the same thing: `FOO=` in a .env file is "not configured".
        std::env::var(key).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> Lookup for F {
    fn get(&self, key: &str) -> Option<String> {
        self(key).filter(|v| !v.trim().is_empty())
    }
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
        let url = env
            .get("DATABASE_URL")
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let target =
            DbTarget::parse(&url).map_err(|e| ConfigError::new("DATABASE_URL", e.to_string()))?;
        let mut pool = PoolSettings::default();
        if let Some(n) = parse_opt::<u32>(env, "DATABASE_MAX_CONNECTIONS")? {
            if n == 0 {
                return Err(ConfigError::new(
                    "DATABASE_MAX_CONNECTIONS",
                    "must be at least 1",
                ));
            }
            pool.max_connections = n;
        }
        Ok(DatabaseConfig { target, pool })
    }
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
}

impl ServeConfig {
    pub fn from_lookup(env: &impl Lookup) -> Result<Self, ConfigError> {
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

        Ok(ServeConfig {
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
            },
            secret_key,
            api_tokens,
            log_format,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    #[test]
    fn the_embedded_default_needs_only_the_webhook_secret() {
        let config =
            ServeConfig::from_lookup(&env(&[("STRIPE_WEBHOOK_SECRET", "whsec_x")])).unwrap();
        assert_eq!(config.listen_addr.to_string(), DEFAULT_LISTEN_ADDR);
        assert_eq!(config.database.target.backend(), crate::db::Backend::Sqlite);
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
            ("WEBHOOK_TOLERANCE_SECS", "topsecretvalue"),
            ("WEBHOOK_TOLERANCE_SECS", "0"),
            ("API_TOKENS", "admin:topsecretvalue1234567"),
            ("LOG_FORMAT", "topsecretvalue"),
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
}
