//! Secret backends: where values come from.
//!
//! [`kubernetes`] serves the Kubernetes secret stores from watch caches, [`vault`] reads customer
//! Vaults through named configurations; [`Backends`] dispatches each reference to the backend of
//! its source type and fetches a pod's distinct secrets concurrently. [`identity`] asks the API
//! server who calls the broker and reads that caller's pod. Values leave a
//! backend only as [`SecretString`], whose `Debug` redacts, and no error here ever carries one.

pub mod identity;
pub mod kubernetes;
pub mod vault;
pub mod watch;

use std::collections::{BTreeMap, HashMap};

use futures::future::try_join_all;
use secrecy::SecretString;

use crate::decision::reference::{SecretRef, Source};
use crate::decision::scope::VaultGrant;

pub use kubernetes::{KubernetesCaches, StoreError};
pub use vault::{VaultBackend, VaultFetchError};

/// A secret could not be fetched. Messages name stores, configurations and keys, never values,
/// and say what happened, not what to do: the advice for the reader of a denial is added where
/// the error becomes an answer (`admission::denial`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Kubernetes(#[from] StoreError),
    #[error("Vault configuration {config:?}{}{source}", source.joiner())]
    Vault {
        config: String,
        #[source]
        source: VaultFetchError,
    },
    #[error("the secret backend is not ready ({0})")]
    Unavailable(String),
    #[error("internal error, please report it: a {0} reference reached another backend")]
    WrongSource(&'static str),
}

/// A value, with the warning to show when it was served under degraded conditions and the
/// version identifier of what was read (never derived from the value: see
/// [`kubernetes::store_version`] and [`vault::vault_version`]). Its `Debug` redacts the value.
#[derive(Debug)]
pub struct FetchedValue {
    pub value: SecretString,
    pub warning: Option<String>,
    pub version: Option<String>,
}

/// Every configured backend, dispatched by source type.
pub struct Backends {
    pub kubernetes: KubernetesCaches,
    pub vault: VaultBackend,
}

/// A pod's values, warnings to show with the answer (e.g. a value served stale) and the
/// version identifier of each value read. Its `Debug` redacts the values.
#[derive(Debug, Default)]
pub struct Fetched {
    pub values: HashMap<SecretRef, SecretString>,
    pub warnings: Vec<String>,
    pub versions: BTreeMap<SecretRef, String>,
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
                    Source::Kubernetes(_) => snapshot.fetch(secret)?,
                    Source::Vault(config) => {
                        // A Vault reference that was never authorized is a caller bug: fail closed.
                        let grant = grants
                            .get(config)
                            .ok_or(BackendError::WrongSource("unauthorized VAULT"))?;
                        self.vault.fetch(secret, grant).await?
                    }
                };
                Ok::<_, BackendError>((secret.clone(), fetched))
            }
        });
        let mut fetched = Fetched::default();
        for (secret, value) in try_join_all(fetches).await? {
            if let Some(version) = value.version {
                fetched.versions.insert(secret.clone(), version);
            }
            fetched.values.insert(secret, value.value);
            fetched.warnings.extend(value.warning);
        }
        Ok(fetched)
    }
}
