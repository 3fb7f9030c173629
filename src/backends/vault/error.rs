//! Why a Vault reference could not be served, as the admission path sees it: the states of the
//! configuration (gone, changed, misconfigured), the key and field it names, and Vault's own
//! refusals, which keep the client's error as their source.

use super::client::VaultError;
use super::resource::{LayoutError, VaultTarget};

/// Why a Vault reference could not be served. [`BackendError::Vault`] names the configuration
/// before the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultFetchError {
    #[error("was deleted while this pod was admitted")]
    ConfigGone,
    #[error("changed owner or was replaced while this pod was admitted")]
    ConfigChanged,
    #[error("cannot be used: {0}")]
    Misconfigured(String),
    #[error(transparent)]
    Key(#[from] LayoutError),
    #[error("no secret at {path}")]
    SecretNotFound {
        path: String,
        #[source]
        source: VaultError,
    },
    #[error("the secret at {path} has no field {field:?}")]
    FieldNotFound { path: String, field: String },
    #[error("field {field:?} of the secret at {path} is {kind}, which an env var cannot carry")]
    FieldNotText {
        path: String,
        field: String,
        kind: &'static str,
    },
    #[error("Vault denied {what}")]
    PermissionDenied {
        what: String,
        #[source]
        source: VaultError,
    },
    #[error("Vault at {host} cannot answer ({source})")]
    Unavailable {
        host: String,
        #[source]
        source: VaultError,
    },
}

impl VaultFetchError {
    pub(super) fn from_client(target: &VaultTarget, error: &VaultError) -> Self {
        let source = error.clone();
        match error {
            VaultError::NotFound(path) => VaultFetchError::SecretNotFound {
                path: path.clone(),
                source,
            },
            VaultError::PermissionDenied { path } => VaultFetchError::PermissionDenied {
                what: format!("reading {path} (403 permission denied)"),
                source,
            },
            VaultError::LoginRefused(reason) => VaultFetchError::PermissionDenied {
                what: format!("the login ({reason})"),
                source,
            },
            VaultError::Unavailable(_) => VaultFetchError::Unavailable {
                host: target.host.clone(),
                source,
            },
            VaultError::Misconfigured(problem) => VaultFetchError::Misconfigured(problem.clone()),
        }
    }

    /// What goes between the configuration's name and this message: the states of the
    /// configuration itself read as a sentence, the rest after a colon.
    pub(crate) fn joiner(&self) -> &'static str {
        match self {
            VaultFetchError::ConfigGone
            | VaultFetchError::ConfigChanged
            | VaultFetchError::Misconfigured(_) => " ",
            _ => ": ",
        }
    }

    /// A bounded label for metrics.
    pub(super) fn class(&self) -> &'static str {
        match self {
            VaultFetchError::SecretNotFound { .. } | VaultFetchError::FieldNotFound { .. } => {
                "not_found"
            }
            VaultFetchError::PermissionDenied { .. } => "permission_denied",
            VaultFetchError::Unavailable { .. } => "unavailable",
            VaultFetchError::ConfigGone | VaultFetchError::ConfigChanged => "config_gone",
            VaultFetchError::Misconfigured(_)
            | VaultFetchError::Key(_)
            | VaultFetchError::FieldNotText { .. } => "misconfigured",
        }
    }
}
