//! The broker: answers `iomete-env`'s start-time request for a broker-mode container's values,
//! as `admission` answers the API server's.
//!
//! [`Broker::answer`] reads the [`protocol::EnvRequest`], asks the API server whose token it
//! carries ([`IdentityBackend`]), rate-limits per pod, reads the pod and takes the container's
//! reference list from its spec (never from the request), authorizes every reference with the
//! scope check admission uses ([`injection::authorize_references`]) against the token's
//! namespace, and fetches the values through the backends admission uses (same caches, same
//! single-flight Vault reads). Every refusal goes through [`BrokerError`]'s one mapping
//! ([`refusal`]), and every request is logged once, on a `broker` span, without a value.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tracing::{Instrument, Span, field};

pub mod protocol;
pub mod rate;
pub mod refusal;

pub use refusal::{BrokerError, RefusalKind};

use crate::admission::{Limits, describe_json_error, record_references};
use crate::backends::identity::{BearerToken, IdentityBackend, pod};
use crate::backends::{BackendError, Backends};
use crate::decision::delivery::is_denied_env_name;
use crate::decision::injection::{self, Settings};
use crate::decision::reference::{References, SecretRef, distinct_secrets, parse_reference_list};
use crate::edge::telemetry::LogSafe;
use protocol::{EnvAnswer, EnvRequest, NamedValue, PropertyValue};
use rate::RateLimiter;

/// The answer to one request: HTTP status and JSON body. No `Debug`: a served body holds
/// values.
pub struct BrokerAnswer {
    pub http_status: u16,
    pub body: Vec<u8>,
    /// `served`, or the refusal's label: bounded, for the metrics.
    pub outcome: &'static str,
    span: Span,
}

impl BrokerAnswer {
    /// Writes the one log line of this request: the fields of its span (pod uid, namespace,
    /// pod, container, references, decision, code, reason; never a value) and how long it took.
    pub fn log(&self, elapsed: Duration) {
        tracing::info!(
            parent: &self.span,
            elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "broker"
        );
    }
}

/// The span of one broker request, its fields recorded as they become known.
fn broker_span() -> Span {
    tracing::info_span!(
        "broker",
        pod_uid = field::Empty,
        namespace = field::Empty,
        pod = field::Empty,
        container = field::Empty,
        references = field::Empty,
        decision = field::Empty,
        code = field::Empty,
        reason = field::Empty,
    )
}

/// Answers `iomete-env`'s requests against the backends the admitter uses.
pub struct Broker {
    identity: IdentityBackend,
    backends: Arc<Backends>,
    settings: Settings,
    limiter: RateLimiter,
    limits: Limits,
    in_flight: Semaphore,
}

impl Broker {
    pub fn new(
        identity: IdentityBackend,
        backends: Arc<Backends>,
        settings: Settings,
        limits: Limits,
    ) -> Self {
        Broker {
            identity,
            backends,
            settings,
            limiter: RateLimiter::default(),
            in_flight: Semaphore::new(limits.max_in_flight),
            limits,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Answers one request: `token` from its `Authorization` header, `body` as received. The
    /// timeout holds for all of it, and requests beyond the in-flight bound are refused at once.
    pub async fn answer(&self, token: Option<BearerToken>, body: &[u8]) -> BrokerAnswer {
        let span = broker_span();
        let served = match self.in_flight.try_acquire() {
            Ok(_permit) => tokio::time::timeout(self.limits.timeout, self.serve(token, body))
                .instrument(span.clone())
                .await
                .unwrap_or(Err(BrokerError::Timeout(self.limits.timeout))),
            Err(_) => Err(BrokerError::Overloaded(self.limits.max_in_flight)),
        };
        match served {
            Ok(answer) => {
                record(&span, "served", 200, "");
                BrokerAnswer {
                    http_status: 200,
                    body: answer.to_json(),
                    outcome: "served",
                    span,
                }
            }
            Err(error) => refuse(span, &error),
        }
    }

    /// The answer to a request refused before it reached [`Broker::answer`] (its body could
    /// not be read), through the same mapping and log line.
    pub fn refuse(&self, error: &BrokerError) -> BrokerAnswer {
        refuse(broker_span(), error)
    }

    async fn serve(
        &self,
        token: Option<BearerToken>,
        body: &[u8],
    ) -> Result<EnvAnswer, BrokerError> {
        let span = Span::current();
        let request: EnvRequest = serde_json::from_slice(body)
            .map_err(|error| BrokerError::Malformed(describe_json_error(&error)))?;
        let container = request.container.as_str();
        span.record("container", field::display(LogSafe(container)));
        let token = token.ok_or(BrokerError::NoToken)?;
        let caller = self.identity.caller(&token).await?;
        span.record("pod_uid", field::display(LogSafe(&caller.pod_uid)));
        span.record("namespace", field::display(LogSafe(&caller.namespace)));
        span.record("pod", field::display(LogSafe(&caller.pod)));
        // Before the pod is read: a pod in a restart loop costs a map lookup, not an API call.
        if !self.limiter.allow(&caller.pod_uid, Instant::now()) {
            return Err(BrokerError::RateLimited { pod: caller.pod });
        }
        let pod = self.identity.pod(&caller).await?;
        let list = pod::reference_list(&pod, &caller, container)?;
        let references =
            parse_reference_list(list).map_err(|source| BrokerError::ReferenceList {
                container: container.to_owned(),
                source,
            })?;
        record_references(
            &span,
            references.env.len() + references.spark_conf.len(),
            listed(&references),
        );
        if references.has_v2() && !self.settings.secrets_v2_enabled {
            return Err(BrokerError::SecretsV2Disabled);
        }
        let kubernetes = &self.backends.kubernetes;
        kubernetes.require_fresh().map_err(BrokerError::Backend)?;
        // The scope is the token's namespace, which the API server vouched for; the pod's own
        // metadata is not consulted.
        let scope = kubernetes
            .namespace_scope(&caller.namespace)
            .ok_or_else(|| BrokerError::UnknownNamespace(caller.namespace.clone()))?;
        let grants = injection::authorize_references(&references, &scope, &self.backends.vault)
            .map_err(BrokerError::Scope)?;
        if let Some(denied) = references
            .env
            .iter()
            .find(|entry| is_denied_env_name(&entry.env_name))
        {
            return Err(BrokerError::DeniedName {
                container: container.to_owned(),
                name: denied.env_name.clone(),
            });
        }
        let secrets = distinct_secrets(
            references
                .env
                .iter()
                .map(|entry| &entry.secret)
                .chain(references.spark_conf.iter().map(|entry| &entry.secret)),
        );
        let fetched = self
            .backends
            .fetch_all(&secrets, &grants)
            .await
            .map_err(BrokerError::Backend)?;
        for warning in &fetched.warnings {
            tracing::warn!(warning = %LogSafe(warning), "value served under degraded conditions");
        }
        let value = |secret: &SecretRef| {
            fetched.values.get(secret).cloned().ok_or_else(|| {
                BrokerError::Backend(BackendError::WrongSource("a fetched value went missing"))
            })
        };
        let mut answer = EnvAnswer::default();
        for entry in &references.env {
            answer.env.push(NamedValue {
                name: entry.env_name.clone(),
                value: value(&entry.secret)?,
            });
        }
        for entry in &references.spark_conf {
            answer.spark_conf.push(PropertyValue {
                property: entry.property.clone(),
                value: value(&entry.secret)?,
            });
        }
        Ok(answer)
    }
}

/// The one place a refusal becomes an answer.
fn refuse(span: Span, error: &BrokerError) -> BrokerAnswer {
    let kind = error.kind();
    let refusal = error.refusal();
    record(&span, "refused", kind.status, &refusal.error);
    BrokerAnswer {
        http_status: kind.status,
        // Two strings and a bool: serialization cannot fail.
        body: serde_json::to_vec(&refusal).unwrap_or_default(),
        outcome: kind.label,
        span,
    }
}

fn record(span: &Span, decision: &str, code: u16, reason: &str) {
    span.record("decision", decision);
    span.record("code", code);
    if !reason.is_empty() {
        span.record("reason", field::display(LogSafe(reason)));
    }
}

/// What a container's reference list asks for, for its log line: names and sources only.
fn listed(references: &References) -> impl Iterator<Item = String> + '_ {
    let env = references
        .env
        .iter()
        .map(|entry| format!("{} <- {}", entry.env_name, entry.secret));
    let spark = references
        .spark_conf
        .iter()
        .map(|entry| format!("spark {} <- {}", entry.property, entry.secret));
    env.chain(spark)
}
