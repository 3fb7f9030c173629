//! Logging setup: structured `tracing` output as text or JSON, filtered by `RUST_LOG`.
//!
//! The default filter is `info`; admissions are logged one line each by the server. Secret
//! values never reach a log call, so no level exposes them: the Vault client is the webhook's
//! own and logs nothing of its requests, and reqwest and hyper under it log neither header
//! values nor bodies.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; a second call is a no-op (tests may call it repeatedly).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
