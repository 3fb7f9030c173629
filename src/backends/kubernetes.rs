//! The Kubernetes backend: secret stores and namespace scopes, served from watch caches.
//!
//! Two watches keep local copies: the store Secrets and Vault credentials Secrets of the store
//! namespace (every other Secret is dropped on arrival, and stores are stripped of annotations and managed fields, which can hold
//! old values) and all Namespaces (only their labels). The admission path reads these caches and
//! never calls the API server, so an updated store value reaches the very next pod once its watch
//! event has arrived.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use secrecy::SecretString;
use tokio::sync::watch;

use super::vault::resource::CREDENTIALS_SECRET_PREFIX;
use super::{BackendError, FetchedValue, SecretBackend};
use crate::reference::{KubernetesStore, SecretRef, Source, is_dns_label};
use crate::scope::NamespaceScope;

/// Where the stores live and how namespaces are classified.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub store_namespace: String,
    pub admin_namespaces: BTreeSet<String>,
    pub domain_label: String,
}

/// The watch-backed caches of store Secrets and Namespaces.
#[derive(Clone)]
pub struct KubernetesStores {
    settings: StoreSettings,
    secrets: Store<Secret>,
    namespaces: Store<Namespace>,
    ready: Arc<watch::Sender<bool>>,
}

/// The write side of the caches: whoever holds it feeds watch events in.
pub struct StoreWriters {
    pub secrets: Writer<Secret>,
    pub namespaces: Writer<Namespace>,
}

/// Counts for the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreSizes {
    pub stores: usize,
    pub keys: usize,
    pub namespaces: usize,
}

impl KubernetesStores {
    /// Empty caches and their writers (tests and [`Self::watch`] feed the writers).
    pub fn new(settings: StoreSettings) -> (Self, StoreWriters) {
        let (secrets, secrets_writer) = reflector::store();
        let (namespaces, namespaces_writer) = reflector::store();
        let stores = KubernetesStores {
            settings,
            secrets,
            namespaces,
            ready: Arc::new(watch::Sender::new(false)),
        };
        let writers = StoreWriters {
            secrets: secrets_writer,
            namespaces: namespaces_writer,
        };
        (stores, writers)
    }

    /// Caches fed by watches through `client`; the returned future drives the watches and runs
    /// until the process stops (watch errors are retried with backoff and logged).
    pub fn watch(
        client: Client,
        settings: StoreSettings,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let secrets_api: Api<Secret> = Api::namespaced(client.clone(), &settings.store_namespace);
        let namespaces_api: Api<Namespace> = Api::all(client);
        let (stores, writers) = Self::new(settings);

        let secret_events = watcher(secrets_api, watcher::Config::default())
            .default_backoff()
            .try_filter(|event| future::ready(is_store_event(event)))
            .modify(strip_secret);
        let namespace_events = watcher(namespaces_api, watcher::Config::default())
            .default_backoff()
            .modify(strip_namespace);

        let readiness = stores.clone();
        let drive = async move {
            let mark_ready = readiness.mark_ready_when_synced();
            let secrets = reflector::reflector(writers.secrets, secret_events)
                .for_each(|event| log_watch_error("secrets", event));
            let namespaces = reflector::reflector(writers.namespaces, namespace_events)
                .for_each(|event| log_watch_error("namespaces", event));
            future::join3(secrets, namespaces, mark_ready).await;
        };
        (stores, drive)
    }

    /// Resolves once both caches hold a complete first listing, and marks them ready.
    ///
    /// Call it once per cache pair (the watch driver does): the reflector stores wake only their
    /// latest waiter, so everyone else waits on [`Self::synced`].
    pub async fn mark_ready_when_synced(&self) {
        let (secrets, namespaces) = future::join(
            self.secrets.wait_until_ready(),
            self.namespaces.wait_until_ready(),
        )
        .await;
        // An error means a writer was dropped, i.e. its watch ended at shutdown: never ready.
        if secrets.is_ok() && namespaces.is_ok() {
            self.ready.send_replace(true);
        }
    }

    /// Resolves once both caches have completed their first listing (any number of waiters).
    pub async fn synced(&self) {
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = self.ready.subscribe().wait_for(|ready| *ready).await;
    }

    /// Whether both caches have completed their first listing.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// What the namespace may read, or `None` when the namespace is not (yet) known.
    pub fn namespace_scope(&self, name: &str) -> Option<NamespaceScope> {
        let namespace = self.namespaces.get(&ObjectRef::new(name))?;
        let domain = namespace
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(&self.settings.domain_label))
            .filter(|domain| is_dns_label(domain))
            .cloned();
        Some(NamespaceScope {
            name: name.to_owned(),
            domain,
            admin: self.settings.admin_namespaces.contains(name),
        })
    }

    /// The Vault credentials Secret named `name` (`iomete-vault-credentials-{domain}`).
    pub fn vault_credentials(&self, name: &str) -> Option<Arc<Secret>> {
        if !is_vault_credentials_name(name) {
            return None;
        }
        self.secrets
            .get(&ObjectRef::new(name).within(&self.settings.store_namespace))
    }

    /// Sizes for the metrics endpoint.
    pub fn sizes(&self) -> StoreSizes {
        let stores: Vec<_> = self
            .secrets
            .state()
            .into_iter()
            .filter(|secret| {
                secret
                    .metadata
                    .name
                    .as_deref()
                    .is_some_and(KubernetesStore::is_store_secret_name)
            })
            .collect();
        StoreSizes {
            stores: stores.len(),
            keys: stores
                .iter()
                .map(|secret| secret.data.as_ref().map_or(0, |data| data.len()))
                .sum(),
            namespaces: self.namespaces.len(),
        }
    }

    pub fn read(&self, store: &KubernetesStore, key: &str) -> Result<SecretString, BackendError> {
        let name = store.secret_name();
        let namespace = &self.settings.store_namespace;
        let secret = self
            .secrets
            .get(&ObjectRef::new(&name).within(namespace))
            .ok_or_else(|| BackendError::StoreNotFound {
                store: name.clone(),
                namespace: namespace.clone(),
            })?;
        let bytes = secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .ok_or_else(|| BackendError::KeyNotFound {
                store: name.clone(),
                key: key.to_owned(),
            })?;
        let text = std::str::from_utf8(&bytes.0).map_err(|_| BackendError::NotText {
            store: name,
            key: key.to_owned(),
        })?;
        Ok(SecretString::from(text))
    }
}

impl SecretBackend for KubernetesStores {
    async fn fetch(&self, secret: &SecretRef) -> Result<FetchedValue, BackendError> {
        match &secret.source {
            Source::Kubernetes(store) => Ok(FetchedValue {
                value: self.read(store, &secret.key)?,
                warning: None,
            }),
            Source::Vault(_) => Err(BackendError::WrongSource("VAULT")),
        }
    }
}

/// Whether a watch event concerns a store Secret or a Vault credentials Secret (or is a listing
/// boundary). Pods can reference only the former: no store id maps to a credentials name.
pub fn is_store_event(event: &watcher::Event<Secret>) -> bool {
    match event {
        watcher::Event::Apply(secret)
        | watcher::Event::InitApply(secret)
        | watcher::Event::Delete(secret) => secret.metadata.name.as_deref().is_some_and(|name| {
            KubernetesStore::is_store_secret_name(name) || is_vault_credentials_name(name)
        }),
        watcher::Event::Init | watcher::Event::InitDone => true,
    }
}

fn is_vault_credentials_name(name: &str) -> bool {
    name.strip_prefix(CREDENTIALS_SECRET_PREFIX)
        .is_some_and(is_dns_label)
}

fn strip_secret(secret: &mut Secret) {
    secret.metadata.annotations = None;
    secret.metadata.managed_fields = None;
    secret.metadata.labels = None;
    secret.string_data = None;
}

fn strip_namespace(namespace: &mut Namespace) {
    namespace.metadata.annotations = None;
    namespace.metadata.managed_fields = None;
    namespace.spec = None;
    namespace.status = None;
}

async fn log_watch_error<K>(watch: &'static str, event: Result<K, watcher::Error>) {
    if let Err(error) = event {
        tracing::warn!(watch, %error, "watch failed; retrying with backoff");
    }
}
