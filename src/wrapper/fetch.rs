//! Asking the broker: `POST /v1/env` with the pod's token, over TLS that trusts only the CA in
//! `IOMETE_ENV_BROKER_CA`, retried with exponential backoff and jitter until the deadline.
//!
//! A pod's containers often start while the broker restarts or its caches fill, so connection
//! failures, timeouts, 429, 5xx and refusals marked retriable are retried; any other refusal is
//! final at once (asking again would get the same answer). The token file is read again for
//! every attempt because the kubelet rotates it. Host names are resolved by hickory, which
//! reads `/etc/resolv.conf` and `/etc/hosts` itself: the binary is linked statically, and a
//! static glibc's `getaddrinfo` cannot load the NSS modules of whatever image it runs in.

use std::hash::{BuildHasher as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use rustls::pki_types::CertificateDer;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use super::ExitStatus;
use super::control::Control;
use crate::broker::protocol::{EnvRequest, Refusal};
use crate::decision::delivery::{BROKER_PATH, ENV_BROKER_CA};
use crate::edge::telemetry::error_chain;

/// Longest wait for one attempt, answer included; a broker that answers at all does so in
/// milliseconds, so a hung connection is abandoned well before the deadline.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a TCP connection and TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First retry delay, doubled on every attempt up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Largest answer read: no process can receive more environment than a few MiB anyway.
pub const MAX_ANSWER_BYTES: usize = 4 << 20;
/// Largest refusal body read; real ones are one short message.
const MAX_REFUSAL_BYTES: usize = 64 << 10;
/// A refusal's message is kept to this many characters.
const MAX_REASON_CHARS: usize = 512;

/// The broker could not be asked, or refused; messages name files, the URL and statuses.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot build the HTTPS client with the certificates of {ENV_BROKER_CA}")]
    Client(#[source] reqwest::Error),
    #[error("cannot read the token file {path}")]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the token file {path} is empty or cannot be sent as a bearer token")]
    BadToken { path: PathBuf },
    #[error(
        "the broker at {url} did not answer within the {}s deadline ({attempts} attempts); last: {last}",
        deadline.as_secs()
    )]
    Unreachable {
        url: String,
        deadline: Duration,
        attempts: u32,
        last: String,
    },
    #[error("the broker refused (HTTP {status}): {reason}")]
    Refused { status: u16, reason: String },
    #[error("the broker's answer is larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
}

impl FetchError {
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            // The certificates were checked with the control variables: what is left is them.
            FetchError::Client(_) => ExitStatus::Usage,
            FetchError::Token { .. } | FetchError::BadToken { .. } => ExitStatus::Token,
            FetchError::Runtime(_) | FetchError::Unreachable { .. } => ExitStatus::Unreachable,
            FetchError::Refused { .. } => ExitStatus::Refused,
            FetchError::TooLarge => ExitStatus::Answer,
        }
    }
}

/// What one attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Ask again after a delay; the reason is kept for the final message.
    Retry(String),
    /// Final: the status and the broker's reason.
    Refuse { status: u16, reason: String },
}

/// What to do with a non-2xx answer of `status` whose body read as `refusal` (if it did).
pub fn judge(status: StatusCode, refusal: Option<Refusal>) -> Verdict {
    let retriable_status = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
    let retriable = retriable_status || refusal.as_ref().is_some_and(|r| r.retriable);
    let reason = match refusal {
        Some(refusal) => refusal.error.chars().take(MAX_REASON_CHARS).collect(),
        None => status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_owned(),
    };
    if retriable {
        Verdict::Retry(format!("HTTP {}: {reason}", status.as_u16()))
    } else {
        Verdict::Refuse {
            status: status.as_u16(),
            reason,
        }
    }
}

/// The delay before attempt `attempt + 1` (`attempt` from 1): doubling from [`FIRST_BACKOFF`]
/// up to [`MAX_BACKOFF`], then a random point in its upper half (`unit` in `[0, 1)`), so that
/// the containers of many pods started together do not retry in step.
pub fn backoff(attempt: u32, unit: f64) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let ceiling = doubled.min(MAX_BACKOFF);
    ceiling / 2 + (ceiling / 2).mul_f64(unit.clamp(0.0, 1.0))
}

/// A number in `[0, 1)` that differs between processes: the standard library seeds its hash
/// keys randomly, which is all the jitter needs.
fn jitter() -> f64 {
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Asks the broker for `control`'s container; the body of its 200 answer, wiped when dropped.
pub async fn fetch(control: &Control) -> Result<Zeroizing<Vec<u8>>, FetchError> {
    let deadline = Instant::now() + control.deadline;
    let client = client(&control.broker_ca)?;
    let url = format!("{}{BROKER_PATH}", control.broker_url);
    let request = EnvRequest {
        container: control.container.clone(),
    };
    // A struct of one string: serialization cannot fail.
    let body = serde_json::to_vec(&request).unwrap_or_default();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let token = read_token(&control.token_file)?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let attempt = attempt(&client, &url, &token, body.clone());
        let last = match tokio::time::timeout(ATTEMPT_TIMEOUT.min(remaining), attempt).await {
            Ok(Ok(Ok(answer))) => return Ok(answer),
            Ok(Ok(Err(Verdict::Refuse { status, reason }))) => {
                return Err(FetchError::Refused { status, reason });
            }
            Ok(Ok(Err(Verdict::Retry(reason)))) => reason,
            Ok(Err(AttemptError::TooLarge)) => return Err(FetchError::TooLarge),
            Ok(Err(AttemptError::Transport(error))) => error_chain(&error),
            Err(_) => "no answer within the attempt's timeout".to_owned(),
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(FetchError::Unreachable {
                url,
                deadline: control.deadline,
                attempts,
                last,
            });
        }
        let pause = backoff(attempts, jitter()).min(deadline - now);
        tokio::time::sleep(pause).await;
        if Instant::now() >= deadline {
            return Err(FetchError::Unreachable {
                url,
                deadline: control.deadline,
                attempts,
                last,
            });
        }
    }
}

/// The client: only `roots` as trust anchors (no system roots: a broker certificate from any
/// public CA is refused), no proxy (the broker is in the cluster; a proxy from the
/// application's environment must not see the token's connection), no redirects, hickory DNS.
fn client(roots: &[CertificateDer<'static>]) -> Result<reqwest::Client, FetchError> {
    // The same provider as the rest of the crate; installing fails only if one already is.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let roots = roots
        .iter()
        .map(|der| reqwest::Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(FetchError::Client)?;
    reqwest::Client::builder()
        .tls_backend_rustls()
        .tls_certs_only(roots)
        .https_only(true)
        .hickory_dns(true)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("iomete-env/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(FetchError::Client)
}

fn read_token(path: &Path) -> Result<SecretString, FetchError> {
    let text = std::fs::read_to_string(path).map_err(|source| FetchError::Token {
        path: path.to_owned(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(FetchError::BadToken {
            path: path.to_owned(),
        });
    }
    Ok(SecretString::from(token))
}

enum AttemptError {
    Transport(reqwest::Error),
    TooLarge,
}

impl From<reqwest::Error> for AttemptError {
    fn from(error: reqwest::Error) -> Self {
        AttemptError::Transport(error)
    }
}

/// One request: `Ok(Ok(body))` for a 2xx answer, `Ok(Err(verdict))` for any other status.
async fn attempt(
    client: &reqwest::Client,
    url: &str,
    token: &SecretString,
    body: Vec<u8>,
) -> Result<Result<Zeroizing<Vec<u8>>, Verdict>, AttemptError> {
    let mut bearer = HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
        // read_token trimmed it; a token with a control character inside is not a JWT, and the
        // broker will refuse whatever arrives.
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
    bearer.set_sensitive(true);
    let mut response = client
        .post(url)
        .header(AUTHORIZATION, bearer)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await?;
    let status = response.status();
    if status.is_success() {
        return Ok(Ok(read_capped(&mut response, MAX_ANSWER_BYTES).await?));
    }
    if status.is_redirection() || status.is_informational() {
        return Ok(Err(Verdict::Refuse {
            status: status.as_u16(),
            reason: "unexpected status".to_owned(),
        }));
    }
    // A refusal body too large or unreadable is judged by its status alone.
    let refusal = read_capped(&mut response, MAX_REFUSAL_BYTES)
        .await
        .ok()
        .and_then(|body| serde_json::from_slice::<Refusal>(&body).ok());
    Ok(Err(judge(status, refusal)))
}

/// The body, refused as soon as it passes `cap`.
async fn read_capped(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<Zeroizing<Vec<u8>>, AttemptError> {
    if response
        .content_length()
        .is_some_and(|length| length > cap as u64)
    {
        return Err(AttemptError::TooLarge);
    }
    let mut body = Zeroizing::new(Vec::new());
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > cap {
            return Err(AttemptError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn refusal(retriable: bool) -> Option<Refusal> {
        Some(Refusal {
            error: "token audience is wrong".into(),
            retriable,
        })
    }

    #[rstest]
    #[case::unavailable(503, None, true)]
    #[case::internal(500, refusal(false), true)]
    #[case::gateway(504, None, true)]
    #[case::rate_limited(429, None, true)]
    #[case::forbidden(403, refusal(false), false)]
    #[case::forbidden_retriable(403, refusal(true), true)]
    #[case::unauthorized(401, None, false)]
    #[case::not_found(404, None, false)]
    #[case::bad_request(400, refusal(false), false)]
    fn only_transient_statuses_and_retriable_refusals_are_retried(
        #[case] status: u16,
        #[case] refusal: Option<Refusal>,
        #[case] retried: bool,
    ) {
        let verdict = judge(StatusCode::from_u16(status).unwrap(), refusal);
        assert_eq!(matches!(verdict, Verdict::Retry(_)), retried, "{verdict:?}");
    }

    #[test]
    fn a_refusal_keeps_the_brokers_reason() {
        assert_eq!(
            judge(StatusCode::FORBIDDEN, refusal(false)),
            Verdict::Refuse {
                status: 403,
                reason: "token audience is wrong".into()
            }
        );
    }

    #[rstest]
    #[case(1, 0.0, 100)]
    #[case(1, 0.999, 199)]
    #[case(2, 0.0, 200)]
    #[case(3, 0.5, 600)]
    #[case(6, 0.0, 2500)]
    #[case(6, 1.0, 5000)]
    #[case(40, 0.0, 2500)]
    fn backoff_doubles_to_a_ceiling_with_jitter_in_its_upper_half(
        #[case] attempt: u32,
        #[case] unit: f64,
        #[case] millis: u64,
    ) {
        assert_eq!(backoff(attempt, unit).as_millis(), u128::from(millis));
    }

    #[test]
    fn jitter_is_in_the_unit_interval() {
        for _ in 0..100 {
            let unit = jitter();
            assert!((0.0..1.0).contains(&unit), "{unit}");
        }
    }
}
