//! The Vault backend: named, per-domain Vault configurations (the `VaultConfig` resource), their
//! connections, and a shared value cache.
//!
//! Configurations come from a watch of `VaultConfig`s in the store namespace, credentials from
//! the Secret `iomete-vault-credentials-{domain}` in the Kubernetes stores' cache, so changes to
//! either reach the next admission without a restart: each lookup compares the configuration's
//! identity (uid, spec, credential fingerprint) with the connection it holds and rebuilds the
//! connection when they differ. Scope is decided before any fetch, by [`VaultOwners`]: a
//! configuration serves only its own domain's namespaces. The webhook only ever reads Vault.

pub mod cache;
pub mod client;
mod error;
pub mod metrics;
pub mod resource;
pub mod status;
pub mod versions;

pub use error::VaultFetchError;
pub use versions::vault_version;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::{Api, Client};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};

use self::cache::{CacheKey, LookupSource, ValueCache};
use self::client::{Credentials, FieldValue, Timeouts, VaultConnection};
use self::metrics::VaultMetrics;
use self::resource::{AuthMethod, VaultConfig, VaultTarget, credentials_secret_name};
use super::kubernetes::KubernetesCaches;
use super::watch::follow;
use super::{BackendError, FetchedValue};
use crate::decision::reference::{SecretRef, Source};
use crate::decision::scope::{VaultGrant, VaultOwner, VaultOwners};

/// How the Vault backend behaves.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    pub store_namespace: String,
    /// How long a read value is reused; zero disables the cache.
    pub cache_ttl: Duration,
    /// When set, a value read less than this long ago is served when Vault cannot answer.
    pub stale_if_error: Option<Duration>,
    pub timeouts: Timeouts,
    /// How often every configuration is tested and its status refreshed.
    pub check_interval: Duration,
}

#[derive(Clone)]
pub struct VaultBackend {
    inner: Arc<Inner>,
}

struct Inner {
    settings: VaultSettings,
    configs: Store<VaultConfig>,
    fresh: watch::Sender<bool>,
    changed: Notify,
    credentials: KubernetesCaches,
    connections: Mutex<HashMap<String, Arc<Connection>>>,
    epochs: AtomicU64,
    cache: ValueCache,
    metrics: VaultMetrics,
}

/// A configuration's connection, valid while its identity is unchanged.
struct Connection {
    identity: Identity,
    epoch: u64,
    connection: Result<Arc<VaultConnection>, String>,
}

/// What a connection was built from; any change means a new connection.
#[derive(Debug, Clone, PartialEq)]
struct Identity {
    uid: Option<String>,
    spec: resource::VaultConfigSpec,
    credentials: Option<[u8; 32]>,
}

impl VaultBackend {
    /// An empty backend and the writer that feeds its configuration cache (tests feed it
    /// directly; [`Self::watch`] feeds it from the API server).
    pub fn new(
        settings: VaultSettings,
        credentials: KubernetesCaches,
        metrics: VaultMetrics,
    ) -> (Self, Writer<VaultConfig>) {
        let (configs, writer) = reflector::store();
        let cache = ValueCache::new(settings.cache_ttl, settings.stale_if_error);
        let backend = VaultBackend {
            inner: Arc::new(Inner {
                settings,
                configs,
                fresh: watch::Sender::new(false),
                changed: Notify::new(),
                credentials,
                connections: Mutex::new(HashMap::new()),
                epochs: AtomicU64::new(0),
                cache,
                metrics,
            }),
        };
        (backend, writer)
    }

    /// A backend fed by a watch of `VaultConfig`s; the returned future drives the watch and, when
    /// `client` may write, the status checks. It runs until the process stops.
    pub fn watch(
        client: Client,
        settings: VaultSettings,
        credentials: KubernetesCaches,
        metrics: VaultMetrics,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let api: Api<VaultConfig> = Api::namespaced(client.clone(), &settings.store_namespace);
        let (backend, writer) = Self::new(settings, credentials, metrics);
        let feeder = backend.clone();
        let drive = async move {
            let watch = follow(
                api.clone(),
                writer,
                |_| {
                    // Every VaultConfig is kept; each change wakes the status checks.
                    feeder.inner.changed.notify_one();
                    true
                },
                |config: &mut VaultConfig| config.metadata.managed_fields = None,
                |current| {
                    feeder.inner.fresh.send_replace(current);
                    feeder.inner.changed.notify_one();
                },
                "vaultconfigs",
            );
            let checks = status::run_checks(feeder.clone(), api);
            futures::future::join(watch, checks).await;
        };
        (backend, drive)
    }

    /// Resolves once the configurations have been listed, and marks them fresh. For caches fed
    /// by hand (tests); [`Self::watch`] tracks currency itself.
    pub async fn mark_fresh_once_listed(&self) {
        if self.inner.configs.wait_until_ready().await.is_ok() {
            self.inner.fresh.send_replace(true);
            self.inner.changed.notify_one();
        }
    }

    /// Whether the configurations are fresh: listed, and their watch not failed since.
    pub fn is_fresh(&self) -> bool {
        *self.inner.fresh.borrow()
    }

    /// Wakes the status checks (a configuration or its credentials may have changed).
    pub fn notify_changed(&self) {
        self.inner.changed.notify_one();
    }

    async fn fetch_from(
        &self,
        config_name: &str,
        key: &str,
        grant: &VaultGrant,
    ) -> Result<FetchedValue, BackendError> {
        let failed = |source| BackendError::Vault {
            config: config_name.to_owned(),
            source,
        };
        let config = self
            .config(config_name)
            .ok_or_else(|| failed(VaultFetchError::ConfigGone))?;
        // The configuration is read again here, where its credentials are chosen: it must still
        // be the one the pod was authorized against, or another domain's Vault could answer.
        if config.metadata.uid.as_deref().unwrap_or_default() != grant.uid
            || config.spec.domain != grant.domain
        {
            return Err(failed(VaultFetchError::ConfigChanged));
        }
        let (connection, epoch) = self.connection(&config)?;
        let target = connection.target();
        let location = target
            .locate(key)
            .map_err(|error| failed(VaultFetchError::Key(error)))?;
        let cache_key = CacheKey {
            config: config_name.to_owned(),
            epoch,
            vault_namespace: target.vault_namespace.clone(),
            path: location.path.clone(),
        };
        let metrics = &self.inner.metrics;
        let read = async {
            let started = Instant::now();
            let fields = connection.read_secret(&location.path).await;
            metrics.read(config_name, started.elapsed());
            fields
        };
        let lookup = self
            .inner
            .cache
            .get(cache_key, read)
            .await
            .map_err(|error| failed(VaultFetchError::from_client(target, &error)))?;
        metrics.lookup(config_name, lookup.source.label());
        let api_path = target.api_path(&location.path);
        let value = match lookup.secret.fields.get(&location.field) {
            Some(FieldValue::Text(value)) => SecretString::from(value.expose_secret()),
            Some(FieldValue::NotText(kind)) => {
                return Err(failed(VaultFetchError::FieldNotText {
                    path: api_path,
                    field: location.field,
                    kind,
                }));
            }
            None => {
                return Err(failed(VaultFetchError::FieldNotFound {
                    path: api_path,
                    field: location.field,
                }));
            }
        };
        let warning = match lookup.source {
            LookupSource::Stale(age) => Some(format!(
                "Vault configuration {config_name:?} could not be reached; {api_path} field {:?} was served from a read {}s old (--vault-stale-if-error)",
                location.field,
                age.as_secs()
            )),
            _ => None,
        };
        let version = lookup.secret.version.map(vault_version);
        Ok(FetchedValue {
            value,
            warning,
            version,
        })
    }

    /// The VaultConfig named `name`, as the cache holds it.
    pub fn config(&self, name: &str) -> Option<Arc<VaultConfig>> {
        self.inner
            .configs
            .get(&ObjectRef::new(name).within(&self.inner.settings.store_namespace))
    }

    /// The connection for `config`, rebuilt when its spec or credentials changed.
    fn connection(
        &self,
        config: &VaultConfig,
    ) -> Result<(Arc<VaultConnection>, u64), BackendError> {
        let name = config.metadata.name.clone().unwrap_or_default();
        let credentials = self.credentials(&name, config);
        let fingerprint = credentials.as_ref().ok().map(fingerprint);
        let mut connections = self
            .inner
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = connections
            .get(&name)
            .filter(|connection| connection.identity.matches(config, fingerprint))
            .cloned();
        let entry = match current {
            Some(entry) => entry,
            None => {
                let connection = credentials
                    .and_then(|credentials| {
                        let target = VaultTarget::from_spec(&config.spec)
                            .map_err(|error| error.to_string())?;
                        VaultConnection::new(
                            target,
                            credentials,
                            self.inner.settings.timeouts,
                            self.inner.metrics.clone(),
                            name.clone(),
                        )
                        .map_err(|error| error.to_string())
                    })
                    .map(Arc::new);
                let entry = Arc::new(Connection {
                    identity: Identity::of(config, fingerprint),
                    epoch: self.inner.epochs.fetch_add(1, Ordering::Relaxed) + 1,
                    connection,
                });
                connections.insert(name.clone(), entry.clone());
                entry
            }
        };
        match &entry.connection {
            Ok(connection) => Ok((connection.clone(), entry.epoch)),
            Err(problem) => Err(BackendError::Vault {
                config: name,
                source: VaultFetchError::Misconfigured(problem.clone()),
            }),
        }
    }

    /// Drops the connections of configurations that no longer exist.
    fn forget_connections_except(&self, names: &std::collections::HashSet<String>) {
        self.inner
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|name, _| names.contains(name));
    }

    /// What a connection for `config` would be built from now.
    fn identity(&self, name: &str, config: &VaultConfig) -> Identity {
        let credentials = self.credentials(name, config);
        Identity::of(config, credentials.as_ref().ok().map(fingerprint))
    }

    /// The credentials `config` names, from the domain's credentials Secret.
    fn credentials(&self, name: &str, config: &VaultConfig) -> Result<Credentials, String> {
        let secret_name = credentials_secret_name(&config.spec.domain);
        let namespace = &self.inner.settings.store_namespace;
        let secret = self
            .inner
            .credentials
            .vault_credentials(&secret_name)
            .ok_or_else(|| {
                format!("its credentials Secret {secret_name:?} does not exist in namespace {namespace:?}")
            })?;
        let read = |suffix: &str| -> Result<SecretString, String> {
            let key = format!("{name}.{suffix}");
            let bytes = secret
                .data
                .as_ref()
                .and_then(|data| data.get(&key))
                .ok_or_else(|| {
                    format!("its credentials Secret {secret_name:?} has no key {key:?}")
                })?;
            let text = std::str::from_utf8(&bytes.0)
                .map_err(|_| format!("key {key:?} of Secret {secret_name:?} is not UTF-8 text"))?;
            let text = text.trim();
            if text.is_empty() {
                return Err(format!("key {key:?} of Secret {secret_name:?} is empty"));
            }
            Ok(SecretString::from(text))
        };
        Ok(match config.spec.auth.method {
            AuthMethod::Token => Credentials::Token(read("token")?),
            AuthMethod::AppRole => Credentials::AppRole {
                role_id: read("roleId")?,
                secret_id: read("secretId")?,
            },
        })
    }
}

impl VaultBackend {
    /// `secret.source` names the VaultConfig, `secret.key` the key under its layout; `grant` is
    /// what the configuration was when the pod was authorized against it.
    pub async fn fetch(
        &self,
        secret: &SecretRef,
        grant: &VaultGrant,
    ) -> Result<FetchedValue, BackendError> {
        let Source::Vault(config) = &secret.source else {
            return Err(BackendError::WrongSource("KUBERNETES"));
        };
        let outcome = self.fetch_from(config, &secret.key, grant).await;
        if let Err(BackendError::Vault { source, .. }) = &outcome {
            self.inner.metrics.error(config, source.class());
        }
        outcome
    }
}

impl VaultOwners for VaultBackend {
    fn owner(&self, config: &str) -> VaultOwner {
        if !self.is_fresh() {
            return VaultOwner::NotFresh;
        }
        match self.config(config) {
            Some(config) => VaultOwner::Owned(VaultGrant {
                domain: config.spec.domain.clone(),
                uid: config.metadata.uid.clone().unwrap_or_default(),
            }),
            None => VaultOwner::NoSuchConfig,
        }
    }
}

impl Identity {
    fn of(config: &VaultConfig, credentials: Option<[u8; 32]>) -> Self {
        Identity {
            uid: config.metadata.uid.clone(),
            spec: config.spec.clone(),
            credentials,
        }
    }

    /// Whether a connection built from `self` still serves `config` (compared in place: this
    /// runs on every Vault lookup).
    fn matches(&self, config: &VaultConfig, credentials: Option<[u8; 32]>) -> bool {
        self.credentials == credentials
            && self.uid == config.metadata.uid
            && self.spec == config.spec
    }
}

/// A digest of the credentials, to notice rotation without keeping a second copy.
fn fingerprint(credentials: &Credentials) -> [u8; 32] {
    let mut digest = Sha256::new();
    match credentials {
        Credentials::Token(token) => {
            digest.update(b"token\0");
            digest.update(token.expose_secret().as_bytes());
        }
        Credentials::AppRole { role_id, secret_id } => {
            digest.update(b"approle\0");
            digest.update(role_id.expose_secret().as_bytes());
            digest.update(b"\0");
            digest.update(secret_id.expose_secret().as_bytes());
        }
    }
    digest.finalize().into()
}
