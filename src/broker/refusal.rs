//! The one mapping from what went wrong in a broker request to what `iomete-env` is told: each
//! [`BrokerError`] becomes an HTTP status, a bounded metric label and a [`Refusal`] (message
//! and whether to retry). Advice for the reader is added here, not where the error arose; a
//! backend's error gets the same advice an admission denial would ([`AdmissionError::message`]).

use std::time::Duration;

use crate::admission::AdmissionError;
use crate::backends::BackendError;
use crate::backends::identity::IdentityError;
use crate::broker::protocol::Refusal;
use crate::decision::injection::InjectionError;
use crate::decision::reference::ReferenceError;

/// Why a broker request was refused. Messages name pods, containers, references and env
/// names, never a value or the token.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the request is not a valid env request: {0}")]
    Malformed(String),
    #[error("the request carries no bearer token")]
    NoToken,
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("pod {pod:?} asks for its values too often")]
    RateLimited { pod: String },
    #[error("container {container:?} has a reference list that cannot be read: {source}")]
    ReferenceList {
        container: String,
        #[source]
        source: ReferenceError,
    },
    #[error("Secrets V2 is disabled on this cluster, so no reference can be served")]
    SecretsV2Disabled,
    #[error("namespace {0:?} is not known to the secrets webhook yet")]
    UnknownNamespace(String),
    #[error(transparent)]
    Scope(InjectionError),
    #[error("container {container:?} references env var {name:?}, which iomete-env never sets")]
    DeniedName { container: String, name: String },
    #[error(transparent)]
    Backend(BackendError),
    #[error("the broker did not finish within {0:?}")]
    Timeout(Duration),
    #[error("the broker is answering {0} requests already")]
    Overloaded(usize),
}

/// The HTTP status and metric label of a refusal; bounded set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalKind {
    pub status: u16,
    pub label: &'static str,
}

impl RefusalKind {
    const fn new(status: u16, label: &'static str) -> Self {
        RefusalKind { status, label }
    }

    /// Whether asking again later may succeed: the broker is busy, starting or cut off from a
    /// backend, or the pod is rate-limited.
    pub fn retriable(self) -> bool {
        matches!(self.status, 429 | 503)
    }
}

const RETRY: &str = "this is temporary, iomete-env retries";

impl BrokerError {
    /// The single mapping from errors to statuses.
    pub fn kind(&self) -> RefusalKind {
        match self {
            BrokerError::Malformed(_) => RefusalKind::new(400, "malformed"),
            BrokerError::NoToken => RefusalKind::new(401, "unauthenticated"),
            BrokerError::Identity(error) => match error {
                IdentityError::Unauthenticated(_)
                | IdentityError::WrongAudience
                | IdentityError::NotServiceAccount(_)
                | IdentityError::NotPodBound => RefusalKind::new(401, "unauthenticated"),
                IdentityError::Review(_) | IdentityError::PodRead { .. } => {
                    RefusalKind::new(503, "unavailable")
                }
                IdentityError::PodGone { .. }
                | IdentityError::PodReplaced { .. }
                | IdentityError::PodDeleting { .. } => RefusalKind::new(409, "pod_gone"),
                IdentityError::NoSuchContainer { .. } => RefusalKind::new(404, "no_container"),
                IdentityError::NotBrokerMode { .. } => RefusalKind::new(403, "not_broker_mode"),
            },
            BrokerError::RateLimited { .. } => RefusalKind::new(429, "rate_limited"),
            BrokerError::ReferenceList { .. } | BrokerError::SecretsV2Disabled => {
                RefusalKind::new(403, "not_broker_mode")
            }
            BrokerError::DeniedName { .. } => RefusalKind::new(403, "denied_name"),
            BrokerError::UnknownNamespace(_) => RefusalKind::new(503, "unavailable"),
            BrokerError::Timeout(_) => RefusalKind::new(503, "timeout"),
            BrokerError::Overloaded(_) => RefusalKind::new(503, "overloaded"),
            // The same status and label as the admission denial of the same reference.
            BrokerError::Scope(error) => admission_kind(&AdmissionError::Injection(error.clone())),
            BrokerError::Backend(error) => admission_kind(&AdmissionError::Backend(error.clone())),
        }
    }

    /// What went wrong, then what its reader can do about it.
    pub fn message(&self) -> String {
        let advice = match self {
            BrokerError::Scope(error) => {
                return AdmissionError::Injection(error.clone()).message();
            }
            BrokerError::Backend(error) => {
                return AdmissionError::Backend(error.clone()).message();
            }
            BrokerError::Malformed(_) | BrokerError::NoToken => {
                "iomete-env sends the token of its pod; check the image and the broker URL"
            }
            BrokerError::Identity(error) => match error {
                IdentityError::Unauthenticated(_)
                | IdentityError::WrongAudience
                | IdentityError::NotServiceAccount(_)
                | IdentityError::NotPodBound => {
                    "the broker accepts only the pod-bound token the admission projected into the pod"
                }
                IdentityError::Review(_) | IdentityError::PodRead { .. } => RETRY,
                IdentityError::PodGone { .. }
                | IdentityError::PodReplaced { .. }
                | IdentityError::PodDeleting { .. } => "a pod that is going away gets no values",
                IdentityError::NoSuchContainer { .. } | IdentityError::NotBrokerMode { .. } => {
                    "only containers the admission wrapped in iomete-env get values"
                }
            },
            BrokerError::RateLimited { .. }
            | BrokerError::UnknownNamespace(_)
            | BrokerError::Timeout(_)
            | BrokerError::Overloaded(_) => RETRY,
            BrokerError::ReferenceList { .. } => {
                "the reference list is written by the admission; recreate the pod"
            }
            BrokerError::SecretsV2Disabled => "ask an administrator to enable Secrets V2",
            BrokerError::DeniedName { .. } => {
                "it changes how the process loads code; rename the variable"
            }
        };
        format!("{self}; {advice}")
    }

    /// The answer's body.
    pub fn refusal(&self) -> Refusal {
        Refusal {
            error: self.message(),
            retriable: self.kind().retriable(),
        }
    }
}

fn admission_kind(error: &AdmissionError) -> RefusalKind {
    let kind = error.kind();
    RefusalKind::new(kind.code, kind.label)
}

#[cfg(test)]
mod tests;
