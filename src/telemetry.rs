//! Logging setup. `RUST_LOG` refines the filter; `LOG_FORMAT` picks the output.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests, or a library user) is not an error worth failing over.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// Names the Stripe event the current request handles, on every line it logs from now on
/// (the request span declares the field; elsewhere this does nothing).
pub fn record_event_id(event_id: &str) {
    tracing::Span::current().record("stripe_event_id", event_id);
}
