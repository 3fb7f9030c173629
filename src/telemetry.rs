//! Logging setup: structured `tracing` output as text or JSON, filtered by `RUST_LOG`.
//!
//! The default filter is `info`; admissions are logged one line each by the server. Secret
//! values never reach a log call, so no level exposes them; the Vault client crates are silenced.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Crates whose own events are silenced whatever `RUST_LOG` says: vaultrs and rustify log each
/// Vault call's errors (our own log line says it better) and, at trace level, request details.
const SILENCED: [&str; 2] = ["vaultrs=off", "rustify=off"];

/// Installs the global subscriber; a second call is a no-op (tests may call it repeatedly).
pub fn init(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for directive in SILENCED {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
