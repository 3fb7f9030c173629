//! What the admin tools read from the cluster, once: a client from the caller's kubeconfig, and
//! the namespaces, stores and VaultConfigs fed into the webhook's own caches by one LIST (or GET)
//! each instead of watches, so the tools decide with the webhook's code.
//!
//! Every read is named when it fails: a 403 becomes [`ToolError::Forbidden`] with the verb,
//! the resource and the namespace the caller's RBAC lacks. The tools only read.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::store::Writer;
use kube::{Api, Client, Config};
use serde::de::DeserializeOwned;

use super::ToolError;
use crate::backends::kubernetes::{CacheWriters, KubernetesCaches, ScopePolicy, is_cached_secret};
use crate::backends::vault::client::Timeouts;
use crate::backends::vault::metrics::VaultMetrics;
use crate::backends::vault::resource::VaultConfig;
use crate::backends::vault::{VaultBackend, VaultSettings};
use crate::backends::watch::feed_listing;
use crate::boot::tool_args::ToolArgs;

/// A client for the caller's kubeconfig (`--kubeconfig`, `--context`, else `KUBECONFIG`,
/// `~/.kube/config` or in-cluster), and the context's namespace.
pub async fn client(args: &ToolArgs) -> Result<(Client, String), ToolError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|error| ToolError::Kubeconfig(Box::new(error)))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|error| ToolError::Kubeconfig(Box::new(error)))?
        }
        None if args.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|error| ToolError::Kubeconfig(Box::new(error)))?,
        None => Config::infer()
            .await
            .map_err(|error| ToolError::Kubeconfig(Box::new(error)))?,
    };
    let namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|error| ToolError::Client(Box::new(error)))?;
    Ok((client, namespace))
}

/// Lists `api`; a 403 names the permission, a 404 (no such resource type) is an empty list.
pub async fn list<K>(api: &Api<K>, resource: &str, scope: &str) -> Result<Vec<K>, ToolError>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
        Err(error) => Err(refused(error, "list", resource, scope)),
    }
}

/// Gets `name`; `None` when it does not exist, a 403 names the permission.
pub async fn get<K>(
    api: &Api<K>,
    name: &str,
    resource: &str,
    scope: &str,
) -> Result<Option<K>, ToolError>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(found) => Ok(found),
        Err(error) => Err(refused(error, "get", resource, scope)),
    }
}

/// A failed read as a [`ToolError`] that names what was read.
pub fn refused(error: kube::Error, verb: &'static str, resource: &str, scope: &str) -> ToolError {
    match error {
        kube::Error::Api(status) if status.code == 403 => ToolError::Forbidden {
            verb,
            resource: resource.to_owned(),
            scope: scope.to_owned(),
        },
        error => ToolError::Api {
            verb,
            resource: resource.to_owned(),
            scope: scope.to_owned(),
            source: Box::new(error),
        },
    }
}

/// The webhook's caches, fed from one read of the cluster.
pub struct ClusterView {
    pub policy: ScopePolicy,
    pub caches: KubernetesCaches,
    pub vault: VaultBackend,
    pub configs: Vec<VaultConfig>,
    // The caches' writers live as long as the view.
    _writers: CacheWriters,
    _vault_writer: Writer<VaultConfig>,
}

impl ClusterView {
    /// A view of objects already read (the tests build one by hand).
    pub async fn from_objects(
        policy: ScopePolicy,
        namespaces: Vec<Namespace>,
        secrets: Vec<Secret>,
        configs: Vec<VaultConfig>,
        vault_timeout: Duration,
    ) -> Self {
        let (caches, mut writers) = KubernetesCaches::new(policy.clone());
        writers.feed_listing(namespaces, secrets.into_iter().filter(is_cached_secret));
        caches.mark_fresh_once_listed().await;
        let settings = VaultSettings {
            store_namespace: policy.store_namespace.clone(),
            // Every read the tools make is fresh.
            cache_ttl: Duration::ZERO,
            stale_if_error: None,
            timeouts: Timeouts {
                connect: vault_timeout.min(Duration::from_secs(5)),
                request: vault_timeout,
            },
            check_interval: Duration::from_secs(60),
        };
        let (vault, mut vault_writer) =
            VaultBackend::new(settings, caches.clone(), VaultMetrics::default());
        feed_listing(&mut vault_writer, configs.clone());
        vault.mark_fresh_once_listed().await;
        ClusterView {
            policy,
            caches,
            vault,
            configs,
            _writers: writers,
            _vault_writer: vault_writer,
        }
    }

    /// Reads the stores and VaultConfigs of the store namespace and the namespaces named
    /// (`None`: all of them; a namespace that does not exist is left out).
    pub async fn read(
        client: &Client,
        policy: ScopePolicy,
        namespaces: Option<&[String]>,
        vault_timeout: Duration,
    ) -> Result<Self, ToolError> {
        let store_namespace = policy.store_namespace.clone();
        let in_store = format!("in namespace {store_namespace:?}");
        let namespace_api: Api<Namespace> = Api::all(client.clone());
        let namespaces = match namespaces {
            None => list(&namespace_api, "namespaces", "cluster-wide").await?,
            Some(names) => {
                let mut found = Vec::new();
                for name in names {
                    found.extend(get(&namespace_api, name, "namespaces", "cluster-wide").await?);
                }
                found
            }
        };
        let secrets: Vec<Secret> = list(
            &Api::namespaced(client.clone(), &store_namespace),
            "secrets",
            &in_store,
        )
        .await?;
        let configs: Vec<VaultConfig> = list(
            &Api::namespaced(client.clone(), &store_namespace),
            "vaultconfigs.secrets.iomete.com",
            &in_store,
        )
        .await?;
        Ok(Self::from_objects(policy, namespaces, secrets, configs, vault_timeout).await)
    }
}
