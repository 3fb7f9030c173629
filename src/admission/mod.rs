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

mod denial;
pub mod review;
pub use denial::{AdmissionError, DenialKind, Outcome};

use crate::backends::{BackendError, Backends};
use crate::decision::injection::{self, MAX_LISTED_REFERENCES, Settings, ValueMode};
use crate::decision::pod::Pod;

/// The answer to one request: HTTP status, the serialized AdmissionReview, and what to log.
/// No `Debug`: the body of an allowed answer holds live values.
pub struct Answer {
    pub http_status: u16,
    pub body: Vec<u8>,
    pub outcome: Outcome,
    pub log: AdmissionLog,
    /// The version to answer in, to deny the request after all ([`Answer::too_large_to_hold`]).
    api_version: &'static str,
}

impl Answer {
    /// The same request denied as retriable, for when the answer's bytes cannot be held.
    pub fn too_large_to_hold(mut self) -> Answer {
        if self.outcome == Outcome::Invalid {
            return self;
        }
        let (body, outcome) = denial(
            self.api_version,
            &mut self.log,
            AdmissionError::ByteBudgetSpent,
            &[],
        );
        Answer {
            body,
            outcome,
            ..self
        }
    }
}

/// The fields of the one log line per admission (never values).
#[derive(Debug, Default, Clone)]
pub struct AdmissionLog {
    pub uid: String,
    pub namespace: String,
    pub pod: String,
    pub references: Vec<String>,
    pub message: String,
    pub dry_run: bool,
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
        let deadline = Instant::now() + self.limits.timeout;
        let received = match review::read(body) {
            Ok(received) => received,
            Err(reason) => return invalid_answer(body, reason),
        };
        let request = &received.request;
        let mut log = AdmissionLog {
            uid: request.uid.clone(),
            namespace: request.namespace.clone().unwrap_or_default(),
            dry_run: request.dry_run,
            ..AdmissionLog::default()
        };
        let decision = match self.in_flight.try_acquire() {
            Ok(_permit) => {
                tokio::time::timeout_at(deadline, self.decide(request, &mut log, deadline))
                    .await
                    .unwrap_or_else(|_| Err((self.timeout(), Vec::new())))
            }
            Err(_) => Err((
                AdmissionError::Overloaded(self.limits.max_in_flight),
                Vec::new(),
            )),
        };
        let version = received.api_version;
        let (body, outcome) = match decision {
            Ok(None) => {
                let allowed = review::Verdict::Allowed {
                    patch: None,
                    audit_annotations: &BTreeMap::new(),
                };
                (
                    answer_bytes(version, &log.uid, allowed, &[]),
                    Outcome::Allowed,
                )
            }
            Ok(Some(rendered)) => {
                let allowed = review::Verdict::Allowed {
                    patch: Some(&rendered.patch),
                    audit_annotations: &rendered.audit_annotations,
                };
                let body = answer_bytes(version, &log.uid, allowed, &rendered.warnings);
                (body, Outcome::Patched)
            }
            Err((error, warnings)) => denial(version, &mut log, error, &warnings),
        };
        // Allowed after the deadline is not allowed: the answer would come too late to trust.
        let (body, outcome) = if matches!(outcome, Outcome::Allowed | Outcome::Patched)
            && Instant::now() >= deadline
        {
            denial(version, &mut log, self.timeout(), &[])
        } else {
            (body, outcome)
        };
        Answer {
            http_status: 200,
            body,
            outcome,
            log,
            api_version: version,
        }
    }

    fn timeout(&self) -> AdmissionError {
        AdmissionError::Timeout(self.limits.timeout)
    }

    /// Fails with [`AdmissionError::Timeout`] once `deadline` has passed.
    fn check_deadline(
        &self,
        deadline: Instant,
        warnings: &[String],
    ) -> Result<(), (AdmissionError, Vec<String>)> {
        if Instant::now() >= deadline {
            return Err((self.timeout(), warnings.to_vec()));
        }
        Ok(())
    }

    /// `Ok(None)`: allowed untouched. `Err` carries warnings gathered before the denial.
    async fn decide(
        &self,
        request: &review::Request<'_>,
        log: &mut AdmissionLog,
        deadline: Instant,
    ) -> Result<Option<injection::Rendered>, (AdmissionError, Vec<String>)> {
        if !request.is_pod_create() {
            return Ok(None);
        }
        let no_warnings = |error: AdmissionError| (error, Vec::new());
        let pod = read_pod(request).map_err(no_warnings)?;
        log.pod = pod_display_name(&pod);
        if !injection::mentions_secrets(&pod) {
            return Ok(None);
        }
        let kubernetes = &self.backends.kubernetes;
        if !kubernetes.is_fresh() {
            let unavailable = BackendError::Unavailable(
                "its caches are syncing (at start, or after a watch failed)".into(),
            );
            return Err(no_warnings(unavailable.into()));
        }
        // The pod's own metadata.namespace is the caller's word: scope comes from the request only.
        let namespace = request.namespace.as_deref().ok_or_else(|| {
            no_warnings(AdmissionError::UnreadablePod(
                "the AdmissionRequest names no namespace, so no scope can be decided".into(),
            ))
        })?;
        let scope = kubernetes
            .namespace_scope(namespace)
            .ok_or_else(|| AdmissionError::UnknownNamespace(namespace.to_owned()))
            .map_err(no_warnings);
        let plan = match injection::plan(&pod, &scope?, &self.settings, &self.backends.vault) {
            Ok(plan) => plan,
            Err(error) => {
                log.references = references_of(&pod);
                return Err(no_warnings(error.into()));
            }
        };
        log.references = summarized(
            plan.injected
                .iter()
                .map(|injected| format!("{} <- {}", injected.target, injected.secret)),
        );
        if plan.is_noop() {
            return Ok(None);
        }
        self.check_deadline(deadline, &plan.warnings)?;
        let fetched = self
            .backends
            .fetch_all(&plan.needed_secrets(), &plan.vault_grants)
            .await
            .map_err(|error| (error.into(), plan.warnings.clone()))?;
        let values = &fetched.values;
        let mode = if request.dry_run {
            ValueMode::DryRun
        } else {
            ValueMode::Live
        };
        let mut rendered = injection::render(&plan, &|secret| values.get(secret).cloned(), mode)
            .map_err(|error| (error.into(), plan.warnings.clone()))?;
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
/// already holds injected values.
pub fn describe_json_error(error: &serde_json::Error) -> String {
    let mut described = String::with_capacity(64);
    let mut inside: Option<char> = None;
    for c in error.to_string().chars() {
        match inside {
            Some(closing) if c == closing => {
                inside = None;
                described.push('…');
                described.push(c);
            }
            Some(_) => {}
            None => {
                described.push(c);
                if c == '"' {
                    inside = Some(c);
                }
            }
        }
    }
    described
}

/// The denial answer for `log`'s request, with the reason recorded in `log`.
fn denial(
    version: &str,
    log: &mut AdmissionLog,
    error: AdmissionError,
    warnings: &[String],
) -> (Vec<u8>, Outcome) {
    let kind = error.kind();
    log.message = error.to_string();
    let denied = review::Verdict::Denied {
        message: &log.message,
        reason: kind.reason,
        code: kind.code,
    };
    let body = answer_bytes(version, &log.uid, denied, warnings);
    (body, Outcome::Denied(kind))
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

/// At most [`MAX_LISTED_REFERENCES`] entries, then how many more there were: a log line stays
/// short however many containers and references a pod has.
fn summarized(entries: impl ExactSizeIterator<Item = String>) -> Vec<String> {
    let omitted = entries.len().saturating_sub(MAX_LISTED_REFERENCES);
    let mut listed: Vec<String> = entries.take(MAX_LISTED_REFERENCES).collect();
    if omitted > 0 {
        listed.push(format!("… and {omitted} more"));
    }
    listed
}

/// The references a pod whose plan failed asked for, for its log line. A pod refused before it
/// was read (overload) is not read for this.
fn references_of(pod: &Pod) -> Vec<String> {
    let Some(annotations) = pod.metadata.annotations.as_ref() else {
        return Vec::new();
    };
    let Ok(references) = crate::decision::reference::parse_annotations(annotations) else {
        return vec!["(unparseable reference annotations)".to_owned()];
    };
    let env = references
        .env
        .iter()
        .map(|entry| format!("env {:?} <- {}", entry.env_name, entry.secret));
    let spark = references
        .spark_conf
        .iter()
        .map(|entry| format!("spark {:?} <- {}", entry.property, entry.secret));
    summarized(env.chain(spark).collect::<Vec<_>>().into_iter())
}

fn pod_display_name(pod: &Pod) -> String {
    match (&pod.metadata.name, &pod.metadata.generate_name) {
        (Some(name), _) => name.clone(),
        (None, Some(prefix)) => format!("{prefix}*"),
        (None, None) => String::new(),
    }
}

/// HTTP 400 with an invalid AdmissionResponse, carrying the uid and version when readable.
fn invalid_answer(body: &[u8], reason: String) -> Answer {
    let (version, uid) = review::salvage(body);
    let denied = review::Verdict::Denied {
        message: &reason,
        reason: "InvalidRequest",
        code: 400,
    };
    Answer {
        http_status: 400,
        body: answer_bytes(version, &uid, denied, &[]),
        outcome: Outcome::Invalid,
        api_version: version,
        log: AdmissionLog {
            uid,
            message: reason,
            ..AdmissionLog::default()
        },
    }
}
