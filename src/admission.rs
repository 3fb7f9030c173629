//! One admission, from request body to AdmissionReview answer, and the one place where errors
//! become answers.
//!
//! [`Admitter::review`] reads the AdmissionReview (v1 or v1beta1, answered in the version asked),
//! looks up the namespace's scope, runs the pure [`injection::plan`], fetches the values and
//! renders the patch. Every outcome, including each error, goes through [`AdmissionError`]'s
//! mapping to a code and reason, so the answers stay consistent.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, Status};
use serde_json::Value;

use crate::backends::{BackendError, Backends};
use crate::injection::{self, InjectionError, MAX_LISTED_REFERENCES, Settings, ValueMode};

/// Why an admission was not allowed as asked.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("{0}")]
    Injection(#[from] InjectionError),
    #[error("{0}")]
    Backend(#[from] BackendError),
    #[error(
        "namespace {0:?} is not known to the secrets webhook yet; this is temporary, retry the request"
    )]
    UnknownNamespace(String),
    #[error("the pod in this request cannot be read: {0}")]
    UnreadablePod(String),
    #[error(
        "the secrets webhook did not finish within {0:?}; this is temporary, retry the request"
    )]
    Timeout(Duration),
    #[error(
        "the secrets webhook is answering {0} admissions already; this is temporary, retry the request"
    )]
    Overloaded(usize),
    #[error(
        "the secrets webhook holds as many request and answer bytes as it may already; this is temporary, retry the request"
    )]
    ByteBudgetSpent,
}

/// The metric label and Status fields of a denial; bounded set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenialKind {
    pub code: u16,
    pub reason: &'static str,
    pub label: &'static str,
}

impl AdmissionError {
    /// The single mapping from errors to answer codes.
    pub fn kind(&self) -> DenialKind {
        let (code, reason, label) = match self {
            AdmissionError::Injection(error) => match error {
                InjectionError::OutOfScope(_) => (403, "Forbidden", "out_of_scope"),
                InjectionError::SecretsV2Disabled => (400, "BadRequest", "secrets_v2_disabled"),
                InjectionError::VaultConfigNotFound { .. } => (404, "NotFound", "not_found"),
                InjectionError::VaultConfigsNotLoaded { .. } => {
                    (503, "ServiceUnavailable", "unavailable")
                }
                InjectionError::SparkConf { .. } => (400, "BadRequest", "spark_conf"),
                InjectionError::TooManyInjections { .. } | InjectionError::PatchTooLarge => {
                    (400, "BadRequest", "too_large")
                }
                InjectionError::Internal(_) => (500, "InternalError", "internal"),
                InjectionError::Reference(_)
                | InjectionError::Placeholder { .. }
                | InjectionError::UnknownContainer { .. } => (400, "BadRequest", "malformed"),
            },
            AdmissionError::Backend(error) => match error {
                BackendError::StoreNotFound { .. }
                | BackendError::KeyNotFound { .. }
                | BackendError::VaultConfigGone { .. }
                | BackendError::VaultSecretNotFound { .. }
                | BackendError::VaultFieldNotFound { .. } => (404, "NotFound", "not_found"),
                BackendError::NotText { .. } | BackendError::VaultFieldNotText { .. } => {
                    (400, "BadRequest", "not_text")
                }
                BackendError::VaultKey { .. } => (400, "BadRequest", "malformed"),
                BackendError::VaultPermissionDenied { .. } => {
                    (403, "Forbidden", "vault_permission_denied")
                }
                BackendError::VaultMisconfigured { .. } => {
                    (500, "InternalError", "vault_misconfigured")
                }
                BackendError::Unavailable(_)
                | BackendError::VaultUnavailable { .. }
                | BackendError::VaultConfigChanged { .. } => {
                    (503, "ServiceUnavailable", "unavailable")
                }
                BackendError::WrongSource(_) => (500, "InternalError", "internal"),
            },
            AdmissionError::UnknownNamespace(_) => (503, "ServiceUnavailable", "unavailable"),
            AdmissionError::UnreadablePod(_) => (400, "BadRequest", "malformed"),
            AdmissionError::Timeout(_) => (503, "ServiceUnavailable", "timeout"),
            AdmissionError::Overloaded(_) | AdmissionError::ByteBudgetSpent => {
                (503, "ServiceUnavailable", "overloaded")
            }
        };
        DenialKind {
            code,
            reason,
            label,
        }
    }
}

/// How an admission ended, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not ours to touch (not a pod, not a CREATE, no references).
    Allowed,
    Patched,
    Denied(DenialKind),
    /// The body was not a readable AdmissionReview.
    Invalid,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Patched => "patched",
            Outcome::Denied(_) => "denied",
            Outcome::Invalid => "invalid",
        }
    }
}

/// The answer to one request: HTTP status, the serialized AdmissionReview, and what to log.
/// No `Debug`: the body of an allowed answer holds live values.
pub struct Answer {
    pub http_status: u16,
    pub body: Vec<u8>,
    pub outcome: Outcome,
    pub log: AdmissionLog,
    /// The request's uid and version, to deny it after all ([`Answer::too_large_to_hold`]).
    base: Option<AdmissionResponse>,
}

impl Answer {
    /// The same request denied as retriable, for when the answer's bytes cannot be held.
    pub fn too_large_to_hold(mut self) -> Answer {
        let Some(base) = self.base.take() else {
            return self;
        };
        let error = AdmissionError::ByteBudgetSpent;
        let kind = error.kind();
        self.log.message = error.to_string();
        let mut response = base.deny(&self.log.message);
        response.result = Status::failure(&self.log.message, kind.reason).with_code(kind.code);
        Answer {
            body: review_bytes(response),
            outcome: Outcome::Denied(kind),
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
        let request = match parse_review(body) {
            Ok(request) => request,
            Err(reason) => return invalid_answer(body, reason),
        };
        let mut log = AdmissionLog {
            uid: request.uid.clone(),
            namespace: request.namespace.clone().unwrap_or_default(),
            dry_run: request.dry_run,
            ..AdmissionLog::default()
        };
        let base = AdmissionResponse::from(&request);
        let decision = match self.in_flight.try_acquire() {
            Ok(_permit) => {
                tokio::time::timeout_at(deadline, self.decide(&request, &mut log, deadline))
                    .await
                    .unwrap_or_else(|_| Err((self.timeout(), Vec::new())))
            }
            Err(_) => Err((
                AdmissionError::Overloaded(self.limits.max_in_flight),
                Vec::new(),
            )),
        };
        let (response, outcome) = match decision {
            Ok(None) => (base.clone(), Outcome::Allowed),
            Ok(Some(rendered)) => {
                let mut response = match base.clone().with_patch(rendered.patch) {
                    Ok(response) => response,
                    Err(error) => return invalid_answer(body, error.to_string()),
                };
                response.warnings = (!rendered.warnings.is_empty()).then_some(rendered.warnings);
                response.audit_annotations = rendered.audit_annotations.into_iter().collect();
                (response, Outcome::Patched)
            }
            Err((error, warnings)) => denial(base.clone(), &request, &mut log, error, warnings),
        };
        let mut body = review_bytes(response);
        let mut outcome = outcome;
        if !matches!(outcome, Outcome::Denied(_)) && Instant::now() >= deadline {
            let (response, denied) =
                denial(base.clone(), &request, &mut log, self.timeout(), Vec::new());
            body = review_bytes(response);
            outcome = denied;
        }
        Answer {
            http_status: 200,
            body,
            outcome,
            log,
            base: Some(base),
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
        request: &AdmissionRequest<DynamicObject>,
        log: &mut AdmissionLog,
        deadline: Instant,
    ) -> Result<Option<injection::Rendered>, (AdmissionError, Vec<String>)> {
        let is_pod = request.kind.group.is_empty()
            && request.kind.version == "v1"
            && request.kind.kind == "Pod";
        if !is_pod || request.operation != Operation::Create || request.sub_resource.is_some() {
            return Ok(None);
        }
        let no_warnings = |error: AdmissionError| (error, Vec::new());
        let pod = read_pod(request).map_err(no_warnings)?;
        log.pod = pod_display_name(&pod);
        if !injection::mentions_secrets(&pod) {
            return Ok(None);
        }
        let kubernetes = &self.backends.kubernetes;
        if !kubernetes.is_ready() {
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
        let plan = injection::plan(&pod, &scope?, &self.settings, &self.backends.vault)
            .map_err(|error| no_warnings(error.into()))?;
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

fn parse_review(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, String> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)
        .map_err(|error| format!("not an AdmissionReview: {}", describe_json_error(&error)))?;
    let api_version = review.types.api_version.as_str();
    if review.types.kind != "AdmissionReview"
        || !matches!(
            api_version,
            "admission.k8s.io/v1" | "admission.k8s.io/v1beta1"
        )
    {
        return Err(format!(
            "expected kind AdmissionReview in admission.k8s.io/v1 or v1beta1, got kind {:?} in {:?}",
            review.types.kind, api_version
        ));
    }
    review
        .try_into()
        .map_err(|_| "the AdmissionReview has no request".to_owned())
}

fn read_pod(request: &AdmissionRequest<DynamicObject>) -> Result<Pod, AdmissionError> {
    let object = request
        .object
        .as_ref()
        .ok_or_else(|| AdmissionError::UnreadablePod("the request carries no object".into()))?;
    serde_json::to_value(object)
        .and_then(serde_json::from_value)
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

/// A denial answer, with the reason logged and the references the pod asked for listed.
fn denial(
    base: AdmissionResponse,
    request: &AdmissionRequest<DynamicObject>,
    log: &mut AdmissionLog,
    error: AdmissionError,
    warnings: Vec<String>,
) -> (AdmissionResponse, Outcome) {
    if log.references.is_empty() {
        log.references = requested_references(request);
    }
    let kind = error.kind();
    log.message = error.to_string();
    let mut response = base.deny(&log.message);
    response.result = Status::failure(&log.message, kind.reason).with_code(kind.code);
    response.warnings = (!warnings.is_empty()).then_some(warnings);
    (response, Outcome::Denied(kind))
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

/// The references a denied pod asked for, for its log line (plans that fail list none).
fn requested_references(request: &AdmissionRequest<DynamicObject>) -> Vec<String> {
    let Some(annotations) = request
        .object
        .as_ref()
        .and_then(|object| object.metadata.annotations.as_ref())
    else {
        return Vec::new();
    };
    let Ok(references) = crate::reference::parse_annotations(annotations) else {
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

/// The answer body. kube serializes the patch bytes as a JSON array of numbers; the API server's
/// own encoding of `[]byte` is a base64 string, so that is what we send.
fn review_bytes(mut response: AdmissionResponse) -> Vec<u8> {
    // Taken out before serializing: kube would write the bytes as a JSON array, one Value per
    // byte, only for us to replace them (docs/benchmarks.md measured that detour at 4x).
    let patch = response.patch.take().map(|bytes| BASE64.encode(bytes));
    let mut review = serde_json::to_value(response.into_review()).unwrap_or_else(|error| {
        // Serializing our own response types cannot fail in practice; answer something valid.
        tracing::error!(%error, "cannot serialize the admission response");
        Value::Null
    });
    if let (Some(patch), Some(response)) = (patch, review.get_mut("response")) {
        response["patch"] = Value::String(patch);
    }
    serde_json::to_vec(&review).unwrap_or_default()
}

/// HTTP 400 with an invalid AdmissionResponse, carrying the uid and version when readable.
fn invalid_answer(body: &[u8], reason: String) -> Answer {
    let loose: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut response = AdmissionResponse::invalid(&reason);
    let uid = loose
        .pointer("/request/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    response.uid = uid.to_owned();
    if let Some(version @ ("admission.k8s.io/v1" | "admission.k8s.io/v1beta1")) =
        loose.get("apiVersion").and_then(Value::as_str)
    {
        response.types.api_version = version.to_owned();
    }
    response.result = response.result.with_code(400);
    Answer {
        http_status: 400,
        body: review_bytes(response),
        outcome: Outcome::Invalid,
        base: None,
        log: AdmissionLog {
            uid: uid.to_owned(),
            message: reason,
            ..AdmissionLog::default()
        },
    }
}
