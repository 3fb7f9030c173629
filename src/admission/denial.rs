//! The one mapping from what went wrong to what the API server is told: each
//! [`AdmissionError`] becomes a code, a Status reason and a bounded metric label, and each
//! answered request an [`Outcome`]. Advice for the reader of a denial is added here
//! ([`AdmissionError::message`]), not by the backends.

use std::time::Duration;

use std::borrow::Cow;

use crate::backends::{BackendError, StoreError, VaultFetchError};
use crate::decision::injection::InjectionError;

/// Why an admission was not allowed as asked.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("{0}")]
    Injection(#[from] InjectionError),
    #[error("{0}")]
    Backend(#[from] BackendError),
    #[error("namespace {0:?} is not known to the secrets webhook yet")]
    UnknownNamespace(String),
    #[error("the pod in this request cannot be read: {0}")]
    UnreadablePod(String),
    #[error("the secrets webhook did not finish within {0:?}")]
    Timeout(Duration),
    #[error("the secrets webhook is answering {0} admissions already")]
    Overloaded(usize),
    #[error("the secrets webhook holds as many request and answer bytes as it may already")]
    ByteBudgetSpent,
}

/// A refused admission: why, and the warnings gathered before it was refused (they reach the
/// user with the denial).
#[derive(Debug)]
pub struct Denial {
    pub error: AdmissionError,
    pub warnings: Vec<String>,
}

impl Denial {
    pub fn with_warnings(mut self, warnings: &[String]) -> Self {
        self.warnings = warnings.to_vec();
        self
    }
}

impl From<AdmissionError> for Denial {
    fn from(error: AdmissionError) -> Self {
        Denial {
            error,
            warnings: Vec::new(),
        }
    }
}

impl From<InjectionError> for Denial {
    fn from(error: InjectionError) -> Self {
        AdmissionError::from(error).into()
    }
}

/// The metric label and Status fields of a denial; bounded set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenialKind {
    pub code: u16,
    pub reason: &'static str,
    pub label: &'static str,
}

/// The advice for a failure that goes away by itself.
const RETRY: &str = "this is temporary, retry the request";

impl AdmissionError {
    /// The message of the denial: what went wrong, then what its reader can do about it.
    pub fn message(&self) -> String {
        match self.advice() {
            Some(advice) => format!("{self}; {advice}"),
            None => self.to_string(),
        }
    }

    /// What the reader of a denial can do. The decision's own errors carry their advice, since
    /// it depends on what in the pod was wrong; everything else gets it here.
    fn advice(&self) -> Option<Cow<'static, str>> {
        let advice: Cow<'static, str> = match self {
            AdmissionError::Injection(_) | AdmissionError::UnreadablePod(_) => return None,
            AdmissionError::UnknownNamespace(_)
            | AdmissionError::Timeout(_)
            | AdmissionError::Overloaded(_)
            | AdmissionError::ByteBudgetSpent => RETRY.into(),
            AdmissionError::Backend(error) => match error {
                BackendError::Kubernetes(StoreError::StoreNotFound { .. }) => {
                    "ask an administrator to create it".into()
                }
                BackendError::Kubernetes(_) | BackendError::WrongSource(_) => return None,
                BackendError::Unavailable(_) => RETRY.into(),
                BackendError::Vault { config, source } => match source {
                    VaultFetchError::ConfigGone => "check the name or ask an administrator".into(),
                    VaultFetchError::ConfigChanged | VaultFetchError::Unavailable { .. } => {
                        RETRY.into()
                    }
                    VaultFetchError::Misconfigured(_) => format!(
                        "ask an administrator to fix it (kubectl get vaultconfig {config} shows its status)"
                    )
                    .into(),
                    VaultFetchError::PermissionDenied { .. } => {
                        "ask an administrator to check the Vault policy and credentials".into()
                    }
                    VaultFetchError::Key(_)
                    | VaultFetchError::SecretNotFound { .. }
                    | VaultFetchError::FieldNotFound { .. }
                    | VaultFetchError::FieldNotText { .. } => return None,
                },
            },
        };
        Some(advice)
    }

    /// The single mapping from errors to answer codes.
    pub fn kind(&self) -> DenialKind {
        let (code, reason, label) = match self {
            AdmissionError::Injection(error) => match error {
                InjectionError::OutOfScope(_) => (403, "Forbidden", "out_of_scope"),
                InjectionError::SecretsV2Disabled => (400, "BadRequest", "secrets_v2_disabled"),
                InjectionError::VaultConfigNotFound { .. } => (404, "NotFound", "not_found"),
                InjectionError::VaultConfigsNotFresh { .. } => {
                    (503, "ServiceUnavailable", "unavailable")
                }
                InjectionError::SparkConf { .. } => (400, "BadRequest", "spark_conf"),
                InjectionError::TooManyInjections { .. } | InjectionError::PatchTooLarge => {
                    (400, "BadRequest", "too_large")
                }
                InjectionError::Internal(_) => (500, "InternalError", "internal"),
                InjectionError::Delivery(_)
                | InjectionError::UnknownEntrypoint { .. }
                | InjectionError::ReservedName(_)
                | InjectionError::DeniedEnvName(_)
                | InjectionError::PlaceholderInBrokerMode { .. } => (400, "BadRequest", "delivery"),
                InjectionError::Reference(_)
                | InjectionError::Placeholder { .. }
                | InjectionError::UnknownContainer { .. } => (400, "BadRequest", "malformed"),
            },
            AdmissionError::Backend(error) => match error {
                BackendError::Kubernetes(error) => match error {
                    StoreError::StoreNotFound { .. } | StoreError::KeyNotFound { .. } => {
                        (404, "NotFound", "not_found")
                    }
                    StoreError::NotText { .. } => (400, "BadRequest", "not_text"),
                },
                BackendError::Vault { source, .. } => match source {
                    VaultFetchError::ConfigGone
                    | VaultFetchError::SecretNotFound { .. }
                    | VaultFetchError::FieldNotFound { .. } => (404, "NotFound", "not_found"),
                    VaultFetchError::FieldNotText { .. } => (400, "BadRequest", "not_text"),
                    VaultFetchError::Key(_) => (400, "BadRequest", "malformed"),
                    VaultFetchError::PermissionDenied { .. } => {
                        (403, "Forbidden", "vault_permission_denied")
                    }
                    VaultFetchError::Misconfigured(_) => {
                        (500, "InternalError", "vault_misconfigured")
                    }
                    VaultFetchError::Unavailable { .. } | VaultFetchError::ConfigChanged => {
                        (503, "ServiceUnavailable", "unavailable")
                    }
                },
                BackendError::Unavailable(_) => (503, "ServiceUnavailable", "unavailable"),
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
