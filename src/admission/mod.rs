//! One admission, from request body to AdmissionReview answer, and the one place where errors
//! become answers.
//!
//! [`Admitter::review`] reads the AdmissionReview (v1 or v1beta1, answered in the version asked),
//! looks up the namespace's scope, runs the pure [`injection::plan`], fetches the values and
//! renders the patch. Every outcome, including each error, goes through [`AdmissionError`]'s
//! mapping to a code and reason, so the answers stay consistent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{Instrument, Span, field};

mod denial;
pub mod review;
pub use denial::{AdmissionError, Denial, DenialKind, Outcome};

use crate::backends::Backends;
use crate::decision::injection::{self, MAX_LISTED_REFERENCES, Settings, ValueMode};
use crate::decision::pod::Pod;
use crate::decision::reference::References;
use crate::edge::telemetry::LogSafe;

/// The answer to one request: HTTP status, the serialized AdmissionReview, and the span that
/// carries the request's identity and decision. No `Debug`: the body of an allowed answer holds
/// live values.
pub struct Answer {
    pub http_status: u16,
    pub body: Vec<u8>,
    pub outcome: Outcome,
    span: Span,
    uid: String,
    /// The version to answer in, to deny the request after all ([`Answer::too_large_to_hold`]).
    api_version: &'static str,
}

impl Answer {
    /// The same request denied as retriable, for when the answer's bytes cannot be held.
    pub fn too_large_to_hold(mut self) -> Answer {
        if self.outcome != Outcome::Invalid {
            self.deny(Denial::from(AdmissionError::ByteBudgetSpent));
        }
        self
    }

    /// Writes the one log line of this admission: the fields of its span (uid, namespace, pod,
    /// references, delivery, decision, code, reason, dry run; never a value) and how long it took.
    pub fn log(&self, elapsed: Duration) {
        tracing::info!(
            parent: &self.span,
            elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "admission"
        );
    }

    fn allow(&mut self, rendered: Option<&injection::Rendered>) {
        let none = BTreeMap::new();
        let (verdict, warnings, outcome) = match rendered {
            None => {
                let untouched = review::Verdict::Allowed {
                    patch: None,
                    audit_annotations: &none,
                };
                (untouched, &[][..], Outcome::Allowed)
            }
            Some(rendered) => {
                let patched = review::Verdict::Allowed {
                    patch: Some(&rendered.patch),
                    audit_annotations: &rendered.audit_annotations,
                };
                (patched, &rendered.warnings[..], Outcome::Patched)
            }
        };
        self.body = answer_bytes(self.api_version, &self.uid, verdict, warnings);
        self.record(outcome, 200, "");
    }

    /// The one place a denial becomes an answer.
    fn deny(&mut self, denial: Denial) {
        let kind = denial.error.kind();
        let message = denial.error.message();
        let denied = review::Verdict::Denied {
            message: &message,
            reason: kind.reason,
            code: kind.code,
        };
        self.body = answer_bytes(self.api_version, &self.uid, denied, &denial.warnings);
        self.record(Outcome::Denied(kind), kind.code, &message);
    }

    fn record(&mut self, outcome: Outcome, code: u16, reason: &str) {
        self.span.record("decision", outcome.label());
        self.span.record("code", code);
        if !reason.is_empty() {
            self.span.record("reason", field::display(LogSafe(reason)));
        }
        self.outcome = outcome;
    }
}

/// The span of one admission. Its fields are recorded as they become known, so the log line
/// says as much as was learnt however the request ended.
fn admission_span() -> Span {
    tracing::info_span!(
        "admission",
        uid = field::Empty,
        namespace = field::Empty,
        pod = field::Empty,
        references = field::Empty,
        delivery = field::Empty,
        dry_run = field::Empty,
        decision = field::Empty,
        code = field::Empty,
        reason = field::Empty,
    )
}

/// Answers admission requests against the configured backends.
pub struct Admitter {
    backends: Arc<Backends>,
    settings: Settings,
    limits: Limits,
    in_flight: Semaphore,
}

/// Bounds on each admission and on how many run at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Past this a decision is abandoned and the pod denied as retriable.
    pub timeout: Duration,
    /// Admissions beyond this many at once are denied at once as retriable, rather than queued
    /// past the API server's patience.
    pub max_in_flight: usize,
}

impl Admitter {
    pub fn new(backends: Arc<Backends>, settings: Settings, limits: Limits) -> Self {
        Admitter {
            backends,
            settings,
            in_flight: Semaphore::new(limits.max_in_flight),
            limits,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// Answers one AdmissionReview body. The admission timeout holds for all of it: the I/O
    /// is cut off when it passes, and each CPU-bound step (planning, rendering, serializing)
    /// is followed by a check, so no answer is given as allowed after its deadline.
    pub async fn review(&self, body: &[u8]) -> Answer {
        let span = admission_span();
        let deadline = Instant::now() + self.limits.timeout;
        let received = match review::read(body) {
            Ok(received) => received,
            Err(reason) => return invalid_answer(body, reason, span),
        };
        let request = &received.request;
        span.record("uid", field::display(LogSafe(&request.uid)));
        let namespace = request.namespace.as_deref().unwrap_or_default();
        span.record("namespace", field::display(LogSafe(namespace)));
        span.record("dry_run", request.dry_run);
        let decision = match self.in_flight.try_acquire() {
            Ok(_permit) => tokio::time::timeout_at(deadline, self.decide(request, deadline))
                .instrument(span.clone())
                .await
                .unwrap_or_else(|_| Err(self.timeout())),
            Err(_) => Err(AdmissionError::Overloaded(self.limits.max_in_flight).into()),
        };
        let mut answer = Answer {
            http_status: 200,
            body: Vec::new(),
            outcome: Outcome::Allowed,
            span,
            uid: request.uid.clone(),
            api_version: received.api_version,
        };
        match decision {
            Ok(rendered) => answer.allow(rendered.as_ref()),
            Err(denial) => answer.deny(denial),
        }
        // Allowed after the deadline is not allowed: the answer would come too late to trust.
        if matches!(answer.outcome, Outcome::Allowed | Outcome::Patched)
            && Instant::now() >= deadline
        {
            answer.deny(self.timeout());
        }
        answer
    }

    fn timeout(&self) -> Denial {
        AdmissionError::Timeout(self.limits.timeout).into()
    }

    /// Fails with [`AdmissionError::Timeout`] once `deadline` has passed.
    fn check_deadline(&self, deadline: Instant, warnings: &[String]) -> Result<(), Denial> {
        if Instant::now() >= deadline {
            return Err(self.timeout().with_warnings(warnings));
        }
        Ok(())
    }

    /// `Ok(None)`: allowed untouched. Runs in the admission span and records the pod and its
    /// references on it as they are read.
    async fn decide(
        &self,
        request: &review::Request<'_>,
        deadline: Instant,
    ) -> Result<Option<injection::Rendered>, Denial> {
        if !request.is_pod_create() {
            return Ok(None);
        }
        let span = Span::current();
        let pod = read_pod(request)?;
        span.record("pod", field::display(LogSafe(&pod_display_name(&pod))));
        if !injection::mentions_secrets(&pod) {
            return Ok(None);
        }
        let kubernetes = &self.backends.kubernetes;
        kubernetes
            .require_fresh()
            .map_err(|unavailable| Denial::from(AdmissionError::from(unavailable)))?;
        // The pod's own metadata.namespace is the caller's word: scope comes from the request only.
        let namespace = request.namespace.as_deref().ok_or_else(|| {
            AdmissionError::UnreadablePod(
                "the AdmissionRequest names no namespace, so no scope can be decided".into(),
            )
        })?;
        let scope = kubernetes
            .namespace_scope(namespace)
            .ok_or_else(|| AdmissionError::UnknownNamespace(namespace.to_owned()))?;
        let references = injection::parse_references(&pod).inspect_err(|_| {
            span.record("references", "(unparseable reference annotations)");
        })?;
        let vault = &self.backends.vault;
        let plan = injection::plan_references(&pod, &references, &scope, &self.settings, vault)
            .inspect_err(|_| {
                let total = references.env.len() + references.spark_conf.len();
                record_references(&span, total, requested(&references));
            })?;
        record_references(
            &span,
            plan.injected.len(),
            plan.injected
                .iter()
                .map(|injected| format!("{} <- {}", injected.target, injected.secret)),
        );
        if plan.is_noop() {
            return Ok(None);
        }
        let delivery = if plan.broker.is_some() {
            "broker"
        } else {
            "env"
        };
        span.record("delivery", delivery);
        self.check_deadline(deadline, &plan.warnings)?;
        let fetched = self
            .backends
            .fetch_all(&plan.needed_secrets(), &plan.vault_grants)
            .await
            .map_err(|error| {
                Denial::from(AdmissionError::from(error)).with_warnings(&plan.warnings)
            })?;
        let values = &fetched.values;
        let mode = if request.dry_run {
            ValueMode::DryRun
        } else {
            ValueMode::Live
        };
        let value_of = |secret: &_| values.get(secret).cloned();
        let mut rendered = injection::render_versioned(&plan, &value_of, mode, &fetched.versions)
            .map_err(|error| {
            Denial::from(AdmissionError::from(error)).with_warnings(&plan.warnings)
        })?;
        rendered.warnings.extend(fetched.warnings);
        self.check_deadline(deadline, &plan.warnings)?;
        Ok(Some(rendered))
    }
}

fn read_pod(request: &review::Request<'_>) -> Result<Pod, AdmissionError> {
    let object = request
        .object
        .filter(|object| object.get() != "null")
        .ok_or_else(|| AdmissionError::UnreadablePod("the request carries no object".into()))?;
    serde_json::from_str(object.get())
        .map_err(|error| AdmissionError::UnreadablePod(describe_json_error(&error)))
}

/// A JSON error without the string fragments of the input that serde quotes, since a pod re-sent on reinvocation
/// already holds injected values. serde quotes a fragment as it is, so the fragment may itself
/// hold `"`: everything from the first `"` to the last is elided, never just the text between
/// one pair of quotes.
pub fn describe_json_error(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let Some(first) = message.find('"') else {
        return message;
    };
    let last = message.rfind('"').unwrap_or(first);
    let after = if last > first { &message[last..] } else { "\"" };
    format!("{}…{after}", &message[..=first])
}

fn answer_bytes(
    version: &str,
    uid: &str,
    verdict: review::Verdict<'_>,
    warnings: &[String],
) -> Vec<u8> {
    let response = review::Response {
        uid,
        verdict,
        warnings,
    };
    review::write(version, &response)
}

/// Records at most [`MAX_LISTED_REFERENCES`] entries, then how many more there were: a log line
/// stays short however many containers and references a pod has.
pub(crate) fn record_references(span: &Span, total: usize, entries: impl Iterator<Item = String>) {
    // Only the listed entries are formatted (a pod at the injection cap has 1,024), and none
    // when nothing would log them.
    if span.is_disabled() {
        return;
    }
    let mut listed: Vec<String> = entries.take(MAX_LISTED_REFERENCES).collect();
    let omitted = total.saturating_sub(listed.len());
    if omitted > 0 {
        listed.push(format!("… and {omitted} more"));
    }
    span.record("references", field::debug(&listed));
}

/// What a pod whose plan was refused asked for, for its log line.
fn requested(references: &References) -> impl Iterator<Item = String> + '_ {
    let env = references
        .env
        .iter()
        .map(|entry| format!("env {:?} <- {}", entry.env_name, entry.secret));
    let spark = references
        .spark_conf
        .iter()
        .map(|entry| format!("spark {:?} <- {}", entry.property, entry.secret));
    env.chain(spark)
}

fn pod_display_name(pod: &Pod) -> String {
    match (&pod.metadata.name, &pod.metadata.generate_name) {
        (Some(name), _) => name.clone(),
        (None, Some(prefix)) => format!("{prefix}*"),
        (None, None) => String::new(),
    }
}

/// HTTP 400 with an invalid AdmissionResponse, carrying the uid and version when readable.
fn invalid_answer(body: &[u8], reason: String, span: Span) -> Answer {
    let (version, uid) = review::salvage(body);
    span.record("uid", field::display(LogSafe(&uid)));
    let denied = review::Verdict::Denied {
        message: &reason,
        reason: "InvalidRequest",
        code: 400,
    };
    let mut answer = Answer {
        http_status: 400,
        body: answer_bytes(version, &uid, denied, &[]),
        outcome: Outcome::Invalid,
        span,
        uid,
        api_version: version,
    };
    answer.record(Outcome::Invalid, 400, &reason);
    answer
}

#[cfg(test)]
mod json_error_tests {
    use super::describe_json_error;

    #[test]
    fn quoted_fragments_are_elided_even_when_they_hold_quotes() {
        #[derive(Debug, serde::Deserialize)]
        struct Expected {
            _field: u8,
        }
        for input in [
            r#""plain secret-value""#,
            r#""a\" secret-value \"b""#,
            r#""a\", \"secret-value\": {\"b""#,
        ] {
            let error = serde_json::from_str::<Expected>(input).unwrap_err();
            let described = describe_json_error(&error);
            assert!(!described.contains("secret-value"), "{described}");
            assert!(
                described.starts_with("invalid type: string \"…\""),
                "{described}"
            );
            assert!(
                described.contains("line 1"),
                "the position is kept: {described}"
            );
        }
        let plain = serde_json::from_str::<Expected>("[").unwrap_err();
        assert_eq!(describe_json_error(&plain), plain.to_string());
    }
}
