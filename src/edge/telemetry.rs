//! Logging setup: structured `tracing` output as text or JSON, filtered by `RUST_LOG`.
//!
//! The default filter is `info`; each admission is one line: the `admission` event, whose span
//! carries the request's identity and decision (see [`crate::admission::Answer::log`]). Secret
//! values never reach a log call, so no level exposes them: the Vault client is the webhook's
//! own and logs nothing of its requests, and reqwest and hyper under it log neither header
//! values nor bodies.

use tracing_subscriber::EnvFilter;

use crate::boot::config::LogFormat;

/// Keeps the log writer running; dropping it writes out every line still queued. Hold it until
/// the process is done logging.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _writer: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Installs the global subscriber; a second call is a no-op (tests may call it repeatedly).
///
/// Lines are formatted on the caller's thread and written to stderr by a writer thread, so an
/// admission never waits on the terminal or the container runtime's pipe. The queue blocks
/// rather than drops when it is full, and the returned guard flushes it on shutdown: no line is
/// lost.
pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        // The admission's identity and decision are the fields of its span ("span" in JSON).
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    LogGuard {
        _writer: installed.is_ok().then_some(guard),
    }
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

/// An error and its sources, e.g. "error sending request: tcp connect error: Connection refused".
/// reqwest's transport errors name the URL and the failure, never a header or a body.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
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
