//! The injection decision for one pod: plain data in, plain data out, no I/O.
//!
//! [`plan`] parses the references, authorizes each against the namespace's scope, picks the
//! target containers and decides every env change, without touching a value. The caller fetches
//! [`Plan::needed_secrets`] from the backends, then [`render`] turns the plan and the values into
//! the RFC 6902 patch. Keeping values out of the planning step means every denial that depends on
//! the pod is decided before any secret is read, and no error message can ever carry one; the one
//! check that needs values (whether Spark's launcher can carry them, see [`crate::decision::spark`]) runs
//! in [`render`] and names the property, never the value.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::decision::delivery::{self, Delivery, DeliveryPolicy};
use crate::decision::pod::{Container, Pod};
use crate::decision::reference::{self, References, Source, SparkConfSecret};
use crate::decision::scope::{
    self, NamespaceScope, RequiredScope, VaultGrant, VaultOwner, VaultOwners,
};
use crate::decision::spark;

mod broker_wrap;
mod env_secrets;
mod model;
mod placeholders;
mod render;
mod spark_conf;

pub use broker_wrap::{BrokerPlan, BrokerSettings, Wrap};
pub use model::{
    ContainerList, ContainerPath, EnvChange, Injected, InjectionError, MissingValue,
    OptionsPlacement, Plan,
};
pub use render::{Rendered, ValueMode, render, render_versioned};

/// What a dry run writes in place of every secret value.
pub const DRY_RUN_MARKER: &str = "<redacted: dry run>";
/// The audit annotation (prefixed by the API server with the webhook name) listing references.
pub const AUDIT_ANNOTATION_KEY: &str = "injected-references";
/// At most this many warnings are returned; the API server truncates long lists anyway.
const MAX_WARNINGS: usize = 20;
/// Most values one pod may receive: each reference counts once for every container it is
/// delivered to, each legacy placeholder once. Planning stops before building more, so the work
/// and memory of one admission stay proportional to this, not to containers × references.
pub const MAX_INJECTIONS_PER_POD: usize = 1024;
/// Largest patch one answer may carry, in bytes of JSON. The API server stores no pod over about
/// 1.5 MiB, so a larger patch could never succeed; rendering stops as soon as it passes this.
pub const MAX_PATCH_BYTES: usize = 1024 * 1024;
/// The audit annotation (and the admission log line) list at most this many references, then
/// say how many more there were.
pub const MAX_LISTED_REFERENCES: usize = 32;

/// Cluster-wide switches that shape the decision.
#[derive(Debug, Clone)]
pub struct Settings {
    pub secrets_v2_enabled: bool,
    /// How values are delivered: the operator's default and requirement.
    pub delivery: DeliveryPolicy,
    /// What broker delivery writes into a pod; `None` when the broker is off.
    pub broker: Option<Arc<BrokerSettings>>,
}

impl Settings {
    /// Secrets V2 on or off, env delivery only (the broker off).
    pub const fn env_delivery(secrets_v2_enabled: bool) -> Self {
        Settings {
            secrets_v2_enabled,
            delivery: DeliveryPolicy::env_only(),
            broker: None,
        }
    }
}

/// an env value. Pods that do not are admitted untouched without consulting any cache.
pub fn mentions_secrets(pod: &Pod) -> bool {
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|annotations| {
            annotations
                .keys()
                .any(|key| key.starts_with(reference::ANNOTATION_PREFIX))
        });
    annotated
        || pod_containers(pod).iter().any(|(_, container)| {
            container.env.iter().flatten().any(|var| {
                var.value
                    .as_deref()
                    .is_some_and(crate::decision::legacy::mentions_placeholder)
            })
        })
}

/// Decides what to inject into `pod`, created in `namespace`.
pub fn plan(
    pod: &Pod,
    namespace: &NamespaceScope,
    settings: &Settings,
    vault: &dyn VaultOwners,
) -> Result<Plan, InjectionError> {
    let references = parse_references(pod)?;
    plan_references(pod, &references, namespace, settings, vault)
}

/// The V2 references of `pod`'s annotations, strictly parsed.
pub fn parse_references(pod: &Pod) -> Result<References, InjectionError> {
    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    Ok(reference::parse_annotations(annotations)?)
}

/// [`plan`] for references already parsed from `pod`'s annotations, so a caller that reports
/// them (the admission log) reads the annotations once.
pub fn plan_references(
    pod: &Pod,
    references: &References,
    namespace: &NamespaceScope,
    settings: &Settings,
    vault: &dyn VaultOwners,
) -> Result<Plan, InjectionError> {
    if references.has_v2() && !settings.secrets_v2_enabled {
        return Err(InjectionError::SecretsV2Disabled);
    }
    let containers = pod_containers(pod);
    let mut plan = Plan {
        annotations_present: pod.metadata.annotations.is_some(),
        ..Plan::default()
    };

    // Every reference is authorized on every invocation, injected digest or not: the digest is
    // the pod's own word, and a forged one must skip at most the injection, never the scope check.
    if references.has_v2() {
        plan.vault_grants = authorize_references(references, namespace, vault)?;
    }
    let digest = references.digest();
    let v2_pending = references.has_v2() && references.injected_digest.as_deref() != Some(&digest);
    let mut replaced: HashSet<(ContainerList, usize, usize)> = HashSet::new();
    let delivery_of_pod = || {
        delivery::choose(
            pod.metadata.annotations.as_ref(),
            &settings.delivery,
            namespace.domain.as_deref(),
        )
    };
    let mut delivery = None;
    if v2_pending {
        let targets = target_containers(&containers, references.containers.as_deref())?;
        // Executors get the driver's SparkConf when they register, and their entrypoint starts
        // the JVM without spark-submit: their spark-conf references are authorized, not fetched.
        let spark_conf: &[SparkConfSecret] = if spark::is_executor(pod.metadata.labels.as_ref()) {
            &[]
        } else {
            &references.spark_conf
        };
        let per_container = references.env.len() + spark_conf.len();
        reserve_injections(&plan, per_container * targets.len(), || {
            format!("{per_container} references × {} containers", targets.len())
        })?;
        let chosen = delivery_of_pod()?;
        delivery = Some(chosen);
        match (chosen, &settings.broker) {
            (Delivery::Broker, Some(broker)) => {
                broker_wrap::plan(
                    &mut plan,
                    pod,
                    &targets,
                    &references.env,
                    spark_conf,
                    broker,
                )?;
            }
            (Delivery::Broker, None) => return Err(delivery::DeliveryError::BrokerDisabled.into()),
            (Delivery::Env, _) => {
                for (path, container) in targets {
                    env_secrets::plan(&mut plan, &mut replaced, &path, container, references);
                    spark_conf::plan(&mut plan, &path, container, &references.env, spark_conf)?;
                }
            }
        }
        plan.mark_injected = Some(digest);
    }
    let planned = plan.changes.len();
    for (path, container) in &containers {
        placeholders::plan(&mut plan, &replaced, path, container, namespace)?;
    }
    // Placeholders are replaced in the spec itself: a broker-mode pod may not carry them.
    if let Some((path, EnvChange::ReplaceValue { index, .. })) = plan.changes.get(planned) {
        let chosen = match delivery {
            Some(chosen) => chosen,
            None => delivery_of_pod()?,
        };
        if chosen == Delivery::Broker {
            let env = containers
                .iter()
                .find(|(candidate, _)| candidate == path)
                .and_then(|(_, container)| container.env.as_deref()?.get(*index))
                .map(|var| var.name.clone())
                .unwrap_or_default();
            return Err(InjectionError::PlaceholderInBrokerMode {
                container: path.name.clone(),
                env,
            });
        }
    }
    Ok(plan)
}

fn pod_containers(pod: &Pod) -> Vec<(ContainerPath, &Container)> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let lists = [
        (ContainerList::Containers, spec.containers.as_slice()),
        (
            ContainerList::InitContainers,
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
    ];
    lists
        .into_iter()
        .flat_map(|(list, containers)| {
            containers
                .iter()
                .enumerate()
                .map(move |(index, container)| {
                    let path = ContainerPath {
                        list,
                        index,
                        name: container.name.clone(),
                    };
                    (path, container)
                })
        })
        .collect()
}

fn target_containers<'p>(
    containers: &[(ContainerPath, &'p Container)],
    named: Option<&[String]>,
) -> Result<Vec<(ContainerPath, &'p Container)>, InjectionError> {
    let Some(named) = named else {
        return Ok(containers
            .iter()
            .filter(|(path, _)| path.list == ContainerList::Containers)
            .map(|(path, container)| (path.clone(), *container))
            .collect());
    };
    named
        .iter()
        .map(|name| {
            containers
                .iter()
                .find(|(path, _)| &path.name == name)
                .map(|(path, container)| (path.clone(), *container))
                .ok_or_else(|| InjectionError::UnknownContainer {
                    name: name.clone(),
                    available: containers
                        .iter()
                        .map(|(path, _)| path.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect()
}

/// Fails when `more` injections would take the plan past [`MAX_INJECTIONS_PER_POD`]; checked
/// before they are planned, so the cap bounds the work and not only the answer.
pub(super) fn reserve_injections(
    plan: &Plan,
    more: usize,
    counted: impl FnOnce() -> String,
) -> Result<(), InjectionError> {
    let count = plan.injected.len() + more;
    if count > MAX_INJECTIONS_PER_POD {
        return Err(InjectionError::TooManyInjections {
            count,
            counted: counted(),
        });
    }
    Ok(())
}

/// Authorizes every V2 reference against the namespace's scope; returns what each Vault
/// configuration was authorized as. The one scope check of both deliveries: admission runs it on
/// a pod's annotations, the broker on a container's reference list, so a reference is allowed
/// or refused alike whichever way its value travels.
pub fn authorize_references(
    references: &References,
    namespace: &NamespaceScope,
    vault: &dyn VaultOwners,
) -> Result<BTreeMap<String, VaultGrant>, InjectionError> {
    let mut grants = BTreeMap::new();
    let entries = references
        .env
        .iter()
        .map(|entry| ("env-secrets", &entry.env_name, &entry.secret))
        .chain(
            references
                .spark_conf
                .iter()
                .map(|entry| ("spark-conf-secrets", &entry.property, &entry.secret)),
        );
    for (annotation, target, secret) in entries {
        let describe = || format!("secrets.iomete.com/{annotation} entry {target:?} ({secret})");
        match &secret.source {
            Source::Vault(config) => match vault.owner(config) {
                VaultOwner::Owned(grant) => {
                    let required = RequiredScope::Domain(grant.domain.clone());
                    scope::authorize(namespace, required, describe)?;
                    grants.insert(config.clone(), grant);
                }
                VaultOwner::NoSuchConfig => {
                    return Err(InjectionError::VaultConfigNotFound {
                        reference: describe(),
                        config: config.clone(),
                    });
                }
                VaultOwner::NotFresh => {
                    return Err(InjectionError::VaultConfigsNotFresh {
                        reference: describe(),
                    });
                }
            },
            Source::Kubernetes(store) => {
                scope::authorize(namespace, scope::required_scope(store), describe)?;
            }
        }
    }
    Ok(grants)
}

#[cfg(test)]
mod tests;
