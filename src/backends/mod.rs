//! Secret backends: where values come from, behind one trait.
//!
//! A backend answers for one kind of [`Source`]; [`Backends`] dispatches each reference to the
//! backend of its source type and fetches a pod's distinct secrets concurrently. Values leave a
//! backend only as [`SecretString`], whose `Debug` redacts, and no error here ever carries one.

pub mod kubernetes;

use std::collections::HashMap;
use std::future::Future;

use futures::future::try_join_all;
use secrecy::SecretString;

use crate::reference::{SecretRef, Source};

pub use kubernetes::KubernetesStores;

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
    #[error("source type {0} is not configured in this webhook")]
    NotConfigured(&'static str),
    #[error("the secret backend is not ready ({0}); this is temporary, retry the request")]
    Unavailable(String),
}

/// One source of secret values.
pub trait SecretBackend: Send + Sync {
    /// Fetches one value.
    fn fetch(
        &self,
        secret: &SecretRef,
    ) -> impl Future<Output = Result<SecretString, BackendError>> + Send;
}

/// Every configured backend, dispatched by source type.
pub struct Backends {
    pub kubernetes: KubernetesStores,
}

impl Backends {
    /// Fetches every secret in `secrets`, concurrently; the first failure wins.
    pub async fn fetch_all(
        &self,
        secrets: &[SecretRef],
    ) -> Result<HashMap<SecretRef, SecretString>, BackendError> {
        let fetches = secrets.iter().map(|secret| async move {
            let value = match &secret.source {
                Source::Kubernetes(_) => self.kubernetes.fetch(secret).await?,
                Source::Vault(_) => return Err(BackendError::NotConfigured("VAULT")),
            };
            Ok((secret.clone(), value))
        });
        Ok(try_join_all(fetches).await?.into_iter().collect())
    }
}
