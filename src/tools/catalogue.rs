//! `catalogue --namespace NS`: what a namespace may reference, grouped by scope and source,
//! and how to write each in an annotation.
//!
//! The scope is the webhook's ([`scope::satisfies`] on the namespace's scope from the same
//! caches and flags): the namespace's domain store, the global store, the admin store for admin
//! namespaces, and the VaultConfigs of its domain. Store keys are listed by name only; a
//! VaultConfig by name, domain, path (mount and prefix) and its `Ready` condition.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::cluster::{self, ClusterView};
use super::{Report, ToolError};
use crate::backends::kubernetes::store_secret_name;
use crate::backends::vault::resource::VaultConfig;
use crate::boot::tool_args::CatalogueArgs;
use crate::decision::scope::{self, NamespaceScope, RequiredScope};

/// One store the namespace may read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreEntry {
    pub id: String,
    pub secret: String,
    /// Who may read it, e.g. `a namespace of domain "finance"`.
    pub readable_from: String,
    pub keys: Vec<String>,
    pub example: String,
}

/// One VaultConfig the namespace may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VaultEntry {
    pub name: String,
    pub domain: String,
    pub host: String,
    pub path: String,
    /// `True`, `False` or `Unknown` (not checked yet), with the condition's reason.
    pub ready: String,
    pub example: String,
}

/// What `namespace` may reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Catalogue {
    pub namespace: String,
    pub scope: String,
    pub stores: Vec<StoreEntry>,
    pub vault: Vec<VaultEntry>,
}

pub async fn run(args: &CatalogueArgs) -> Result<Report, ToolError> {
    let policy = args.tool.scope_policy()?;
    let (client, _) = cluster::client(&args.tool).await?;
    let names = [args.namespace.clone()];
    let view = ClusterView::read(&client, policy, Some(&names), Duration::from_secs(5)).await?;
    let catalogue = catalogue(&view, &args.namespace)?;
    Ok(report(&catalogue))
}

/// The catalogue of `namespace` from `view`.
pub fn catalogue(view: &ClusterView, namespace: &str) -> Result<Catalogue, ToolError> {
    let scope = view
        .caches
        .namespace_scope(namespace)
        .ok_or_else(|| ToolError::NotFound {
            what: "namespace",
            name: namespace.to_owned(),
            scope: "in the cluster".into(),
        })?;
    let stores = view
        .caches
        .stores()
        .into_iter()
        .filter_map(|listing| {
            let required = scope::required_scope(&listing.store);
            scope::satisfies(&scope, &required).then(|| {
                let id = listing.store.id().to_owned();
                let key = listing.keys.first().map_or("KEY", String::as_str);
                StoreEntry {
                    example: example("KUBERNETES", &id, key),
                    secret: store_secret_name(&listing.store),
                    readable_from: required.to_string(),
                    keys: listing.keys.clone(),
                    id,
                }
            })
        })
        .collect();
    let mut vault: Vec<VaultEntry> = view
        .configs
        .iter()
        .filter(|config| readable(&scope, config))
        .map(|config| {
            let name = config.metadata.name.clone().unwrap_or_default();
            VaultEntry {
                example: example("VAULT", &name, "path/to/secret#field"),
                domain: config.spec.domain.clone(),
                host: config.spec.host.clone(),
                path: config.spec.path.clone(),
                ready: ready(config),
                name,
            }
        })
        .collect();
    vault.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Catalogue {
        namespace: namespace.to_owned(),
        scope: scope.to_string(),
        stores,
        vault,
    })
}

fn readable(scope: &NamespaceScope, config: &VaultConfig) -> bool {
    scope::satisfies(scope, &RequiredScope::Domain(config.spec.domain.clone()))
}

/// The `Ready` condition as `status (reason)`.
pub fn ready(config: &VaultConfig) -> String {
    config
        .status
        .as_ref()
        .and_then(|status| status.conditions.iter().find(|c| c.type_ == "Ready"))
        .map_or("Unknown (not checked yet)".to_owned(), |condition| {
            format!("{} ({})", condition.status, condition.reason)
        })
}

/// An `env-secrets` entry for `key` of a source.
fn example(source_type: &str, id: &str, key: &str) -> String {
    json!({"key": "ENV_NAME", "secretObject": {"key": key, "source": {"type": source_type, "id": id}}})
        .to_string()
}

pub fn report(catalogue: &Catalogue) -> Report {
    let mut human = String::new();
    let _ = writeln!(human, "{}", catalogue.scope);
    if catalogue.stores.is_empty() && catalogue.vault.is_empty() {
        let _ = writeln!(human, "  may reference nothing");
    }
    for store in &catalogue.stores {
        let _ = writeln!(
            human,
            "\nKUBERNETES store {:?} (Secret {}, readable from {}): {} keys",
            store.id,
            store.secret,
            store.readable_from,
            store.keys.len()
        );
        for key in &store.keys {
            let _ = writeln!(human, "  {key}");
        }
        let _ = writeln!(
            human,
            "  in secrets.iomete.com/env-secrets: {}",
            store.example
        );
    }
    for config in &catalogue.vault {
        let _ = writeln!(
            human,
            "\nVAULT configuration {:?} (domain {:?}, {} {}, Ready: {})",
            config.name, config.domain, config.host, config.path, config.ready
        );
        let _ = writeln!(human, "  keys: secret paths under {}", config.path);
        let _ = writeln!(
            human,
            "  in secrets.iomete.com/env-secrets: {}",
            config.example
        );
    }
    Report {
        human,
        json: serde_json::to_value(catalogue).unwrap_or_default(),
        problems: 0,
    }
}
