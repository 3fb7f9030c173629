//! Secret backends: where values come from, behind one trait.
//!
//! [`kubernetes`] serves the Kubernetes secret stores from watch caches, [`vault`] reads customer
//! Vaults through named configurations; [`Backends`] dispatches each reference to the backend of
//! its source type and fetches a pod's distinct secrets concurrently. Values leave a
//! backend only as [`SecretString`], whose `Debug` redacts, and no error here ever carries one.

pub mod kubernetes;
pub mod vault;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use futures::future::try_join_all;
use secrecy::SecretString;

use crate::decision::reference::{SecretRef, Source};
use crate::decision::scope::VaultGrant;

pub use kubernetes::KubernetesCaches;
pub use vault::VaultBackend;

/// A secret could not be fetched. Messages name stores and keys, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error(
        "secret store {store:?} does not exist in namespace {namespace:?}; ask an administrator to create it"
    )]
    StoreNotFound { store: String, namespace: String },
    #[error("secret store {store:?} has no key {key:?}")]
    KeyNotFound { store: String, key: String },
    #[error(
        "the value of key {key:?} in secret store {store:?} is not UTF-8 text, which an env var cannot carry"
    )]
    NotText { store: String, key: String },
    #[error("the secret backend is not ready ({0}); this is temporary, retry the request")]
    Unavailable(String),
    #[error("internal error, please report it: a {0} reference reached another backend")]
    WrongSource(&'static str),
    #[error(
        "Vault configuration {config:?} was deleted while this pod was admitted; check the name or ask an administrator"
    )]
    VaultConfigGone { config: String },
    #[error(
        "Vault configuration {config:?} changed owner or was replaced while this pod was admitted; this is temporary, retry the request"
    )]
    VaultConfigChanged { config: String },
    #[error(
        "Vault configuration {config:?} cannot be used: {problem}; ask an administrator to fix it (kubectl get vaultconfig {config} shows its status)"
    )]
    VaultMisconfigured { config: String, problem: String },
    #[error("Vault configuration {config:?}: {problem}")]
    VaultKey { config: String, problem: String },
    #[error("Vault configuration {config:?}: no secret at {path}")]
    VaultSecretNotFound { config: String, path: String },
    #[error("Vault configuration {config:?}: the secret at {path} has no field {field:?}")]
    VaultFieldNotFound {
        config: String,
        path: String,
        field: String,
    },
    #[error(
        "Vault configuration {config:?}: field {field:?} of the secret at {path} is {kind}, which an env var cannot carry"
    )]
    VaultFieldNotText {
        config: String,
        path: String,
        field: String,
        kind: &'static str,
    },
    #[error(
        "Vault configuration {config:?}: Vault denied {what}; ask an administrator to check the Vault policy and credentials"
    )]
    VaultPermissionDenied { config: String, what: String },
    #[error(
        "Vault configuration {config:?}: Vault at {host} cannot answer ({reason}); this is temporary, retry the request"
    )]
    VaultUnavailable {
        config: String,
        host: String,
        reason: String,
    },
}

/// One source of secret values.
pub trait SecretBackend: Send + Sync {
    /// Fetches one value; a reference of another source type is a caller bug
    /// ([`BackendError::WrongSource`]).
    fn fetch(
        &self,
        secret: &SecretRef,
    ) -> impl Future<Output = Result<FetchedValue, BackendError>> + Send;
}

/// A value, with the warning to show when it was served under degraded conditions.
pub struct FetchedValue {
    pub value: SecretString,
    pub warning: Option<String>,
}

/// Every configured backend, dispatched by source type.
pub struct Backends {
    pub kubernetes: KubernetesCaches,
    pub vault: VaultBackend,
}

/// A pod's values, and warnings to show with the answer (e.g. a value served stale).
#[derive(Default)]
pub struct Fetched {
    pub values: HashMap<SecretRef, SecretString>,
    pub warnings: Vec<String>,
}

impl Backends {
    /// Fetches every secret in `secrets`, concurrently; the first failure wins. All keys of one
    /// Kubernetes store come from one version of it, even while it is being updated. A Vault
    /// secret is read only through the configuration its `grants` entry authorized.
    pub async fn fetch_all(
        &self,
        secrets: &[SecretRef],
        grants: &BTreeMap<String, VaultGrant>,
    ) -> Result<Fetched, BackendError> {
        let snapshot = self.kubernetes.snapshot();
        let fetches = secrets.iter().map(|secret| {
            let snapshot = &snapshot;
            async move {
                let fetched = match &secret.source {
                    Source::Kubernetes(_) => snapshot.fetch(secret).await?,
                    Source::Vault(config) => {
                        // A Vault reference that was never authorized is a caller bug: fail closed.
                        let grant = grants
                            .get(config)
                            .ok_or(BackendError::WrongSource("unauthorized VAULT"))?;
                        self.vault.fetch(secret, grant).await?
                    }
                };
                Ok::<_, BackendError>((secret.clone(), fetched.value, fetched.warning))
            }
        });
        let mut fetched = Fetched::default();
        for (secret, value, warning) in try_join_all(fetches).await? {
            fetched.values.insert(secret, value);
            fetched.warnings.extend(warning);
        }
        Ok(fetched)
    }
}
