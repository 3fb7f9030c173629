//! `audit`: pods that missed injection, and pods holding an older version of a secret than the
//! current one (the pods to redeploy after a rotation).
//!
//! **Missed injection**: a pod whose annotations or env carry references but which has no
//! `injected` digest, a digest that does not match its references, or a legacy placeholder
//! still unfilled: it was created while the webhook was bypassed.
//! **Rotation**: at injection the webhook records, per reference, the version identifier of the
//! value it read (`secrets.iomete.com/versions`: a store Secret's uid/resourceVersion, a Vault
//! KV v2 version). A pod is outdated when a recorded identifier differs from the current one.
//! Every rotation changes the identifier, so there are no false negatives; a false positive
//! happens when another key of the same store, or another field of the same Vault secret,
//! changed (or a version was written with the same value). A V2 reference with no recorded
//! version (injected before versions were recorded, or the annotation edited) is reported as
//! unknown, never as current. Classification is pure ([`classify`]); reading the pods and the
//! current versions is [`run`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Pod as KubePod;
use kube::Api;
use serde::Serialize;
use serde_json::json;

use super::cluster::{self, ClusterView};
use super::{Report, ToolError};
use crate::admission::AdmissionError;
use crate::backends::{KubernetesCaches, VaultBackend};
use crate::boot::tool_args::AuditArgs;
use crate::decision::delivery::INSTALL_CONTAINER;
use crate::decision::injection;
use crate::decision::legacy::parse_template;
use crate::decision::pod::Pod;
use crate::decision::reference::{SecretRef, VERSIONS_ANNOTATION};
use crate::decision::spark;

/// Something wrong with one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// Created without its secrets.
    MissedInjection { reason: String },
    /// Holds an older version of `reference` than the current one.
    Outdated {
        reference: String,
        recorded: String,
        current: String,
    },
    /// Which version it holds, or which is current, cannot be told.
    VersionUnknown { reference: String, why: String },
}

impl Finding {
    pub fn reference(&self) -> Option<&str> {
        match self {
            Finding::MissedInjection { .. } => None,
            Finding::Outdated { reference, .. } | Finding::VersionUnknown { reference, .. } => {
                Some(reference)
            }
        }
    }
}

/// The current version of a reference, as far as it can be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Current {
    Version(String),
    /// The store or secret no longer exists (the pod's value is outdated by definition).
    Gone(String),
    Unknown(String),
}

/// What is wrong with `pod`; `current` tells the current version of a reference (`TYPE/id/key`).
pub fn classify(pod: &Pod, current: &dyn Fn(&str) -> Current) -> Vec<Finding> {
    if !injection::mentions_secrets(pod) {
        return Vec::new();
    }
    let missed = |reason: String| vec![Finding::MissedInjection { reason }];
    let references = match injection::parse_references(pod) {
        Ok(references) => references,
        Err(error) => {
            return missed(format!(
                "its reference annotations are not valid, so the webhook would have denied it: {}",
                AdmissionError::from(error).message()
            ));
        }
    };
    if references.has_v2() {
        match &references.injected_digest {
            None => {
                return missed(
                    "it has references but no secrets.iomete.com/injected digest".into(),
                );
            }
            Some(digest) if *digest != references.digest() => {
                return missed(
                    "its secrets.iomete.com/injected digest does not match its references".into(),
                );
            }
            Some(_) => {}
        }
    }
    for container in pod.spec.iter().flat_map(|spec| {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
    }) {
        for var in container.env.iter().flatten() {
            if let Some(value) = &var.value
                && let Ok(Some(_)) = parse_template(value)
            {
                return missed(format!(
                    "container {:?} env {:?} still holds a legacy ${{secrets.…}} placeholder",
                    container.name, var.name
                ));
            }
        }
    }
    // A broker-mode pod reads its values at each container start: no version is fixed at
    // admission, so there is none to be outdated.
    let broker_delivered = pod.spec.iter().any(|spec| {
        spec.init_containers
            .iter()
            .flatten()
            .any(|container| container.name == INSTALL_CONTAINER)
    });
    if broker_delivered {
        return Vec::new();
    }
    let recorded = recorded_versions(pod);
    let executor = spark::is_executor(pod.metadata.labels.as_ref());
    let delivered: BTreeSet<String> = references
        .env
        .iter()
        .map(|entry| &entry.secret)
        .chain(
            references
                .spark_conf
                .iter()
                .filter(|_| !executor)
                .map(|entry| &entry.secret),
        )
        .map(SecretRef::to_string)
        .collect();
    let mut findings = Vec::new();
    for reference in delivered.iter().filter(|r| !recorded.contains_key(*r)) {
        findings.push(Finding::VersionUnknown {
            reference: reference.clone(),
            why: format!("no version recorded in {VERSIONS_ANNOTATION} (injected before versions were recorded, or the annotation was edited)"),
        });
    }
    for (reference, version) in &recorded {
        match current(reference) {
            Current::Version(now) if now == *version => {}
            Current::Version(now) => findings.push(Finding::Outdated {
                reference: reference.clone(),
                recorded: version.clone(),
                current: now,
            }),
            Current::Gone(why) => findings.push(Finding::Outdated {
                reference: reference.clone(),
                recorded: version.clone(),
                current: why,
            }),
            Current::Unknown(why) => findings.push(Finding::VersionUnknown {
                reference: reference.clone(),
                why,
            }),
        }
    }
    findings
}

/// A reference as written in `--secret` and the versions annotation: `TYPE/id/key`.
pub fn parse_reference(text: &str) -> Option<(&str, &str, &str)> {
    let (kind, rest) = text.split_once('/')?;
    let (id, key) = rest.split_once('/')?;
    (matches!(kind, "KUBERNETES" | "VAULT") && !id.is_empty() && !key.is_empty())
        .then_some((kind, id, key))
}

/// Who to redeploy for a pod: its controller as a person knows it.
pub fn owner(pod: &KubePod) -> String {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    if let Some(app) = labels.get("sparkoperator.k8s.io/app-name") {
        return format!("SparkApplication/{app}");
    }
    if labels.get("component").map(String::as_str) == Some("singleuser-server") {
        let user = labels
            .get("hub.jupyter.org/username")
            .cloned()
            .unwrap_or_default();
        return format!("notebook (JupyterHub user {user:?})");
    }
    let Some(controller) = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true))
        .or_else(|| pod.metadata.owner_references.iter().flatten().next())
    else {
        return "none (a bare pod)".into();
    };
    // A Deployment's ReplicaSet is named after it plus the pod-template-hash.
    if controller.kind == "ReplicaSet"
        && let Some(hash) = labels.get("pod-template-hash")
        && let Some(deployment) = controller.name.strip_suffix(&format!("-{hash}"))
    {
        return format!("Deployment/{deployment}");
    }
    format!("{}/{}", controller.kind, controller.name)
}

/// One pod with findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodFindings {
    pub namespace: String,
    pub name: String,
    pub owner: String,
    pub findings: Vec<Finding>,
}

pub async fn run(args: &AuditArgs) -> Result<Report, ToolError> {
    let filter = match &args.secret {
        Some(text) => {
            parse_reference(text).ok_or_else(|| ToolError::SecretFilter(text.clone()))?;
            Some(text.clone())
        }
        None => None,
    };
    let policy = args.tool.scope_policy()?;
    let (client, _) = cluster::client(&args.tool).await?;
    let (pods_api, scope): (Api<KubePod>, String) = match &args.namespace {
        Some(namespace) => (
            Api::namespaced(client.clone(), namespace),
            format!("in namespace {namespace:?}"),
        ),
        None => (Api::all(client.clone()), "cluster-wide".into()),
    };
    let pods = cluster::list(&pods_api, "pods", &scope).await?;
    let view = ClusterView::read(&client, policy, Some(&[]), args.vault_timeout).await?;
    let read: Vec<(&KubePod, Pod)> = pods
        .iter()
        .filter_map(|pod| Some((pod, decision_pod(pod)?)))
        .collect();
    let decisions: Vec<&Pod> = read.iter().map(|(_, decision)| decision).collect();
    let current = current_versions(&view.caches, &view.vault, &decisions).await;
    let lookup = |reference: &str| {
        current
            .get(reference)
            .cloned()
            .unwrap_or(Current::Unknown("not read".into()))
    };
    let mut listed = Vec::new();
    for (pod, decision) in read {
        let mut findings = classify(&decision, &lookup);
        if let Some(secret) = &filter {
            findings.retain(|finding| finding.reference() == Some(secret.as_str()));
        }
        if findings.is_empty() {
            continue;
        }
        listed.push(PodFindings {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            owner: owner(pod),
            findings,
        });
    }
    Ok(report(pods.len(), &listed, filter.as_deref()))
}

/// The current version of every reference the stores hold and every reference `pods` recorded
/// (Vault ones by a KV v2 metadata read each, once per reference).
pub async fn current_versions(
    caches: &KubernetesCaches,
    vault: &VaultBackend,
    pods: &[&Pod],
) -> BTreeMap<String, Current> {
    let mut current: BTreeMap<String, Current> = caches
        .stores()
        .into_iter()
        .flat_map(|listing| {
            let id = listing.store.id().to_owned();
            let version = listing.version.clone();
            listing.keys.into_iter().map(move |key| {
                let now = version.clone().map_or(
                    Current::Unknown("the store has no version".into()),
                    Current::Version,
                );
                (format!("KUBERNETES/{id}/{key}"), now)
            })
        })
        .collect();
    for pod in pods {
        for reference in recorded_versions(pod).into_keys() {
            if current.contains_key(&reference) {
                continue;
            }
            let now = match parse_reference(&reference) {
                Some(("VAULT", config, key)) => match vault.current_version(config, key).await {
                    Ok(now) => Current::Version(now.version),
                    Err(error) => {
                        let error = AdmissionError::from(error);
                        if error.kind().code == 404 {
                            Current::Gone(format!("gone: {}", error.message()))
                        } else {
                            Current::Unknown(error.message())
                        }
                    }
                },
                Some(("KUBERNETES", id, key)) => Current::Gone(format!(
                    "gone: store {id:?} has no key {key:?} (or the store does not exist)"
                )),
                _ => Current::Unknown("not a reference".into()),
            };
            current.insert(reference, now);
        }
    }
    current
}

/// The versions annotation of `pod` (empty when absent or not a JSON object of strings).
fn recorded_versions(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(VERSIONS_ANNOTATION))
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// The pod as the decision reads it.
pub fn decision_pod(pod: &KubePod) -> Option<Pod> {
    serde_json::to_value(pod)
        .ok()
        .and_then(|value| serde_json::from_value(value).ok())
}

pub fn report(scanned: usize, listed: &[PodFindings], secret: Option<&str>) -> Report {
    let count = |wanted: fn(&Finding) -> bool| {
        listed
            .iter()
            .filter(|pod| pod.findings.iter().any(wanted))
            .count()
    };
    let missed = count(|f| matches!(f, Finding::MissedInjection { .. }));
    let outdated = count(|f| matches!(f, Finding::Outdated { .. }));
    let unknown = count(|f| matches!(f, Finding::VersionUnknown { .. }));
    let mut human = String::new();
    if let Some(secret) = secret {
        let _ = writeln!(human, "pods to redeploy after rotating {secret}:");
    }
    for pod in listed {
        for finding in &pod.findings {
            let line = match finding {
                Finding::MissedInjection { reason } => format!("MISSED INJECTION  {reason}"),
                Finding::Outdated {
                    reference,
                    recorded,
                    current,
                } => format!("OUTDATED          {reference}: holds {recorded}, current {current}"),
                Finding::VersionUnknown { reference, why } => {
                    format!("VERSION UNKNOWN   {reference}: {why}")
                }
            };
            let _ = writeln!(
                human,
                "{}/{} (owner {}): {line}",
                pod.namespace, pod.name, pod.owner
            );
        }
    }
    let _ = writeln!(
        human,
        "{scanned} pods scanned: {missed} missed injection, {outdated} outdated, {unknown} with an unknown version"
    );
    Report {
        human,
        json: json!({
            "secret": secret,
            "scanned": scanned,
            "missed_injection": missed,
            "outdated": outdated,
            "version_unknown": unknown,
            "pods": listed,
        }),
        problems: listed.len(),
    }
}

#[cfg(test)]
mod tests;
