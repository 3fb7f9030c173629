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

/// Request-supplied text as a log field: control characters (newlines, ANSI escapes) and the
/// invisible Unicode that reorders text are written as `\u{…}` escapes, so a pod's name or a
/// container's can neither start a forged log line nor recolour or reorder the terminal.
pub struct LogSafe<'a>(pub &'a str);

impl std::fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(needs_escape) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(f, "\\u{{{:x}}}", u32::from(c))?;
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::LogSafe;
    use rstest::rstest;

    #[rstest]
    #[case("spark-driver-1", "spark-driver-1")]
    #[case(
        "a\nadmission decision=\"patched\"",
        "a\\u{a}admission decision=\"patched\""
    )]
    #[case("x\r\u{1b}[31mred", "x\\u{d}\\u{1b}[31mred")]
    #[case("abc\u{202e}fed", "abc\\u{202e}fed")]
    #[case("ünïcødé €", "ünïcødé €")]
    #[case("", "")]
    fn request_text_is_logged_on_one_line(#[case] input: &str, #[case] logged: &str) {
        assert_eq!(LogSafe(input).to_string(), logged);
    }
}
