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

use std::sync::atomic::{AtomicBool, Ordering};

use futures::future;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::{Api, Client};
use secrecy::SecretString;
use tokio::sync::watch;

use super::vault::resource::CREDENTIALS_SECRET_PREFIX;
use super::watch::follow;
use super::{BackendError, FetchedValue};
use crate::decision::names::is_dns_label;
use crate::decision::reference::{GLOBAL_STORE_ID, KubernetesStore, SecretRef, Source};
use crate::decision::scope::NamespaceScope;

/// A Kubernetes store could not serve a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("secret store {store:?} does not exist in namespace {namespace:?}")]
    StoreNotFound { store: String, namespace: String },
    #[error("secret store {store:?} has no key {key:?}")]
    KeyNotFound { store: String, key: String },
    #[error(
        "the value of key {key:?} in secret store {store:?} is not UTF-8 text, which an env var cannot carry"
    )]
    NotText { store: String, key: String },
}

/// The scope policy: where the stores live and how namespaces are classified (domain label,
/// admin namespaces).
#[derive(Debug, Clone)]
pub struct ScopePolicy {
    pub store_namespace: String,
    pub admin_namespaces: BTreeSet<String>,
    pub domain_label: String,
}

/// The watch-backed caches of the store namespace's Secrets (stores and Vault credentials) and
/// of all Namespaces (their labels: the scope of each).
#[derive(Clone)]
pub struct KubernetesCaches {
    settings: ScopePolicy,
    secrets: Store<Secret>,
    namespaces: Store<Namespace>,
    fresh: Arc<Freshness>,
}

/// Whether each cache is fresh (holds a complete listing, its watch not failed since), and both
/// together as a channel readiness can wait on.
struct Freshness {
    secrets: AtomicBool,
    namespaces: AtomicBool,
    both: watch::Sender<bool>,
}

impl Freshness {
    fn set(&self, cache: &AtomicBool, fresh: bool) {
        cache.store(fresh, Ordering::SeqCst);
        let both = self.secrets.load(Ordering::SeqCst) && self.namespaces.load(Ordering::SeqCst);
        self.both
            .send_if_modified(|state| std::mem::replace(state, both) != both);
    }
}

/// The write side of the caches: whoever holds it feeds watch events in.
pub struct CacheWriters {
    pub secrets: Writer<Secret>,
    pub namespaces: Writer<Namespace>,
}

impl CacheWriters {
    /// Feeds both caches a complete first listing, as their watches do when they start (for
    /// caches fed by hand; [`KubernetesCaches::mark_fresh_once_listed`] then marks them fresh).
    pub fn feed_listing(
        &mut self,
        namespaces: impl IntoIterator<Item = Namespace>,
        secrets: impl IntoIterator<Item = Secret>,
    ) {
        super::watch::feed_listing(&mut self.namespaces, namespaces);
        super::watch::feed_listing(&mut self.secrets, secrets);
    }
}

/// One store as the admin tools list it: never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreListing {
    pub store: KubernetesStore,
    pub keys: Vec<String>,
    pub version: Option<String>,
}

/// Counts for the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreSizes {
    pub stores: usize,
    pub keys: usize,
    pub namespaces: usize,
}

impl KubernetesCaches {
    /// Empty caches and their writers (tests and [`Self::watch`] feed the writers).
    pub fn new(settings: ScopePolicy) -> (Self, CacheWriters) {
        let (secrets, secrets_writer) = reflector::store();
        let (namespaces, namespaces_writer) = reflector::store();
        let stores = KubernetesCaches {
            settings,
            secrets,
            namespaces,
            fresh: Arc::new(Freshness {
                secrets: AtomicBool::new(false),
                namespaces: AtomicBool::new(false),
                both: watch::Sender::new(false),
            }),
        };
        let writers = CacheWriters {
            secrets: secrets_writer,
            namespaces: namespaces_writer,
        };
        (stores, writers)
    }

    /// Caches fed by watches through `client`; the returned future drives the watches and runs
    /// until the process stops. A failed watch marks its cache stale and is rebuilt from a fresh
    /// listing (see [`super::watch`]).
    pub fn watch(
        client: Client,
        settings: ScopePolicy,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let secrets_api: Api<Secret> = Api::namespaced(client.clone(), &settings.store_namespace);
        let namespaces_api: Api<Namespace> = Api::all(client);
        let (stores, writers) = Self::new(settings);
        let freshness = stores.fresh.clone();
        let drive = async move {
            let secrets = follow(
                secrets_api,
                writers.secrets,
                is_cached_secret,
                strip_secret,
                |fresh| freshness.set(&freshness.secrets, fresh),
                "secrets",
            );
            let namespaces = follow(
                namespaces_api,
                writers.namespaces,
                |_| true,
                strip_namespace,
                |fresh| freshness.set(&freshness.namespaces, fresh),
                "namespaces",
            );
            future::join(secrets, namespaces).await;
        };
        (stores, drive)
    }

    /// Resolves once both caches hold a complete first listing, and marks them fresh. For
    /// caches fed by hand (tests); [`Self::watch`] tracks freshness itself.
    pub async fn mark_fresh_once_listed(&self) {
        let (secrets, namespaces) = future::join(
            self.secrets.wait_until_ready(),
            self.namespaces.wait_until_ready(),
        )
        .await;
        // An error means a writer was dropped: never ready.
        if secrets.is_ok() && namespaces.is_ok() {
            self.fresh.set(&self.fresh.secrets, true);
            self.fresh.set(&self.fresh.namespaces, true);
        }
    }

    /// Resolves once both caches are fresh (any number of waiters).
    pub async fn until_fresh(&self) {
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = self.fresh.both.subscribe().wait_for(|ready| *ready).await;
    }

    /// Whether both caches are fresh: listed, and their watches not failed since.
    pub fn is_fresh(&self) -> bool {
        *self.fresh.both.borrow()
    }

    /// [`Self::is_fresh`] as the error that refuses a request while it is not: admissions and
    /// broker requests alike are answered only from fresh caches.
    pub fn require_fresh(&self) -> Result<(), BackendError> {
        if self.is_fresh() {
            return Ok(());
        }
        Err(BackendError::Unavailable(
            "its caches are syncing (at start, or after a watch failed)".into(),
        ))
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
                    .is_some_and(is_store_secret_name)
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

    /// Every store in the cache: which store, its keys (names only) and its version identifier
    /// ([`store_version`]). For the admin tools' catalogue and audit.
    pub fn stores(&self) -> Vec<StoreListing> {
        let mut stores: Vec<StoreListing> = self
            .secrets
            .state()
            .into_iter()
            .filter_map(|secret| {
                let name = secret.metadata.name.as_deref()?;
                let id = match name.strip_prefix("iomete-secret-store")? {
                    "" => GLOBAL_STORE_ID,
                    rest => rest.strip_prefix('-')?,
                };
                if !is_store_secret_name(name) {
                    return None;
                }
                Some(StoreListing {
                    store: KubernetesStore::from_id(id),
                    keys: secret
                        .data
                        .iter()
                        .flat_map(|data| data.keys().cloned())
                        .collect(),
                    version: store_version(&secret),
                })
            })
            .collect();
        stores.sort_by(|a, b| a.store.cmp(&b.store));
        stores
    }

    /// A view that reads each store at most once, so that one admission sees one version of
    /// each store however often it is updated meanwhile.
    pub fn snapshot(&self) -> StoreSnapshot<'_> {
        StoreSnapshot {
            stores: self,
            seen: std::sync::Mutex::new(Vec::new()),
        }
    }
}

/// The stores as one admission sees them (see [`KubernetesCaches::snapshot`]).
pub struct StoreSnapshot<'a> {
    stores: &'a KubernetesCaches,
    /// Store Secrets read so far (`None`: absent); an admission names a handful at most.
    seen: std::sync::Mutex<Vec<(String, Option<Arc<Secret>>)>>,
}

impl StoreSnapshot<'_> {
    fn secret(&self, name: &str) -> Option<Arc<Secret>> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, secret)) = seen.iter().find(|(seen_name, _)| seen_name == name) {
            return secret.clone();
        }
        let namespace = &self.stores.settings.store_namespace;
        let secret = self
            .stores
            .secrets
            .get(&ObjectRef::new(name).within(namespace));
        seen.push((name.to_owned(), secret.clone()));
        secret
    }

    fn read(
        &self,
        store: &KubernetesStore,
        key: &str,
    ) -> Result<(SecretString, Option<String>), StoreError> {
        let name = store_secret_name(store);
        let namespace = &self.stores.settings.store_namespace;
        let secret = self
            .secret(&name)
            .ok_or_else(|| StoreError::StoreNotFound {
                store: name.clone(),
                namespace: namespace.clone(),
            })?;
        let bytes = secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .ok_or_else(|| StoreError::KeyNotFound {
                store: name.clone(),
                key: key.to_owned(),
            })?;
        let text = std::str::from_utf8(&bytes.0).map_err(|_| StoreError::NotText {
            store: name,
            key: key.to_owned(),
        })?;
        Ok((SecretString::from(text), store_version(&secret)))
    }
}

impl StoreSnapshot<'_> {
    /// Fetches one value from this version of the stores.
    pub fn fetch(&self, secret: &SecretRef) -> Result<FetchedValue, BackendError> {
        match &secret.source {
            Source::Kubernetes(store) => {
                let (value, version) = self.read(store, &secret.key)?;
                Ok(FetchedValue {
                    value,
                    warning: None,
                    version,
                })
            }
            Source::Vault(_) => Err(BackendError::WrongSource("VAULT")),
        }
    }
}

/// The version identifier recorded for a value read from a store: the store Secret's uid and
/// `resourceVersion` at the snapshot used. It changes whenever any key of the store changes (a
/// pod holding an unchanged key of a store whose other key changed shows as outdated: the one
/// false positive) and reveals nothing about any value.
pub fn store_version(secret: &Secret) -> Option<String> {
    let uid = secret.metadata.uid.as_deref()?;
    let resource_version = secret.metadata.resource_version.as_deref()?;
    Some(format!("{uid}/{resource_version}"))
}

/// Whether a Secret belongs in the cache: a store, or a Vault credentials Secret. Pods can
/// reference only the former: no store id maps to a credentials name.
pub fn is_cached_secret(secret: &Secret) -> bool {
    secret
        .metadata
        .name
        .as_deref()
        .is_some_and(|name| is_store_secret_name(name) || is_vault_credentials_name(name))
}

/// The name of the Secret that backs `store` in the store namespace.
pub fn store_secret_name(store: &KubernetesStore) -> String {
    match store {
        KubernetesStore::Domain(domain) => format!("iomete-secret-store-{domain}"),
        KubernetesStore::Global => "iomete-secret-store".to_owned(),
        KubernetesStore::Admin => "iomete-secret-store-admin".to_owned(),
    }
}

/// Whether `name` is the name of some store Secret (so the watch can drop every other Secret).
pub fn is_store_secret_name(name: &str) -> bool {
    match name.strip_prefix("iomete-secret-store") {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('-')
            .is_some_and(|id| is_dns_label(id) && id != GLOBAL_STORE_ID),
        None => false,
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

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("iomete-secret-store", true)]
    #[case("iomete-secret-store-admin", true)]
    #[case("iomete-secret-store-finance", true)]
    #[case("iomete-secret-store-marketing-2", true)]
    #[case("iomete-secret-store-global", false)]
    #[case("iomete-secret-store-", false)]
    #[case("iomete-secret-store-Bad", false)]
    #[case("iomete-secret-store--x", false)]
    #[case("iomete-secret-store-a.b", false)]
    #[case("iomete-secret-storefinance", false)]
    #[case("iomete-secret-stor", false)]
    #[case("x-iomete-secret-store", false)]
    #[case("other", false)]
    #[case("", false)]
    fn store_secret_names(#[case] name: &str, #[case] expected: bool) {
        assert_eq!(is_store_secret_name(name), expected);
    }

    #[rstest]
    #[case(KubernetesStore::Global, "iomete-secret-store")]
    #[case(KubernetesStore::Admin, "iomete-secret-store-admin")]
    #[case(KubernetesStore::Domain("finance".into()), "iomete-secret-store-finance")]
    fn stores_name_their_secret(#[case] store: KubernetesStore, #[case] secret_name: &str) {
        assert_eq!(store_secret_name(&store), secret_name);
        assert!(is_store_secret_name(&store_secret_name(&store)));
    }
}
