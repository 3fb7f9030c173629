//! The injection decision for one pod: plain data in, plain data out, no I/O.
//!
//! [`plan`] parses the references, authorizes each against the namespace's scope, picks the
//! target containers and decides every env change, without touching a value. The caller fetches
//! [`Plan::needed_secrets`] from the backends, then [`render`] turns the plan and the values into
//! the RFC 6902 patch. Keeping values out of the planning step means every denial is decided
//! before any secret is read, and no error message can ever carry one.

use std::collections::{BTreeMap, HashSet};

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::expansion::escape_for_kubelet;
use crate::legacy::{PlaceholderError, Segment, Template, parse_template};
use crate::reference::{
    self, CONTAINERS_ANNOTATION, INJECTED_ANNOTATION, KubernetesStore, References, SecretRef,
    Source,
};
use crate::scope::{self, NamespaceScope, ScopeError};

/// What a dry run writes in place of every secret value.
pub const DRY_RUN_MARKER: &str = "<redacted: dry run>";
/// The audit annotation (prefixed by the API server with the webhook name) listing references.
pub const AUDIT_ANNOTATION_KEY: &str = "injected-references";
/// At most this many warnings are returned; the API server truncates long lists anyway.
const MAX_WARNINGS: usize = 20;

/// Cluster-wide switches that shape the decision.
#[derive(Debug, Clone)]
pub struct Settings {
    pub secrets_v2_enabled: bool,
}

/// Why a pod cannot be admitted as written. Each variant maps to one answer code in
/// `admission`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectionError {
    #[error(transparent)]
    Reference(#[from] reference::ReferenceError),
    #[error("container {container:?} env {env:?}: {source}")]
    Placeholder {
        container: String,
        env: String,
        source: PlaceholderError,
    },
    #[error(
        "annotation {CONTAINERS_ANNOTATION} names container {name:?}, which is not in this pod (containers: {available})"
    )]
    UnknownContainer { name: String, available: String },
    #[error(
        "Secrets V2 is disabled on this cluster, so the secrets.iomete.com/ annotations cannot be used; remove them or ask an administrator to enable Secrets V2"
    )]
    SecretsV2Disabled,
    #[error(
        "{reference} uses source type VAULT, but no Vault backend is configured in this webhook; use a KUBERNETES source"
    )]
    VaultNotConfigured { reference: String },
    #[error(
        "annotation secrets.iomete.com/spark-conf-secrets is valid, but this webhook version does not deliver Spark properties yet; use secrets.iomete.com/env-secrets"
    )]
    SparkConfNotDelivered,
    #[error(transparent)]
    OutOfScope(#[from] ScopeError),
}

/// `render` was given values that do not cover the plan (a bug in the caller, never user error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no value was fetched for {0}")]
pub struct MissingValue(pub SecretRef);

/// Which list of the pod spec a container sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerList {
    Containers,
    InitContainers,
}

impl ContainerList {
    fn field(self) -> &'static str {
        match self {
            ContainerList::Containers => "containers",
            ContainerList::InitContainers => "initContainers",
        }
    }
}

/// A container of the pod, by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPath {
    pub list: ContainerList,
    pub index: usize,
    pub name: String,
}

impl ContainerPath {
    fn pointer(&self, tail: &[&str]) -> PointerBuf {
        let index = self.index.to_string();
        let head = ["spec", self.list.field(), index.as_str()];
        PointerBuf::from_tokens(head.iter().chain(tail).copied())
    }
}

/// How a new env var gets its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// The whole value is one secret.
    Secret(SecretRef),
    /// The user's value with legacy placeholders filled from the global store.
    Template(Template),
}

/// One change to one container's env.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvChange {
    /// The container has no `env`: create it with these variables.
    CreateEnv(Vec<(String, SecretRef)>),
    /// Replace the whole entry at `index` (an existing variable of that name).
    ReplaceVar {
        index: usize,
        name: String,
        secret: SecretRef,
    },
    /// Append a new variable.
    AppendVar { name: String, secret: SecretRef },
    /// Replace the value of the entry at `index` (a legacy placeholder template).
    ReplaceValue { index: usize, template: Template },
}

/// Where an injected value came from, for the audit annotation and logs (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub target: String,
    pub secret: SecretRef,
}

/// Everything decided about a pod before any value is read.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub changes: Vec<(ContainerPath, EnvChange)>,
    /// `Some(digest)` when the V2 references are injected by this answer.
    pub mark_injected: Option<String>,
    pub annotations_present: bool,
    pub warnings: Vec<String>,
    pub injected: Vec<Injected>,
}

impl Plan {
    /// Whether the pod needs no patch at all.
    pub fn is_noop(&self) -> bool {
        self.changes.is_empty() && self.mark_injected.is_none()
    }

    /// The distinct secrets the plan needs, in a stable order.
    pub fn needed_secrets(&self) -> Vec<SecretRef> {
        reference::distinct_secrets(self.injected.iter().map(|injected| &injected.secret))
    }
}

/// Whether the pod mentions secrets at all: an annotation under the prefix or a placeholder in
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
                    .is_some_and(crate::legacy::mentions_placeholder)
            })
        })
}

/// Decides what to inject into `pod`, created in `namespace`.
pub fn plan(
    pod: &Pod,
    namespace: &NamespaceScope,
    settings: &Settings,
) -> Result<Plan, InjectionError> {
    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let references = reference::parse_annotations(annotations)?;
    if references.has_v2() && !settings.secrets_v2_enabled {
        return Err(InjectionError::SecretsV2Disabled);
    }
    let containers = pod_containers(pod);
    let mut plan = Plan {
        annotations_present: pod.metadata.annotations.is_some(),
        ..Plan::default()
    };

    let digest = references.digest();
    let v2_pending = references.has_v2() && references.injected_digest.as_deref() != Some(&digest);
    let mut replaced: HashSet<(ContainerList, usize, usize)> = HashSet::new();
    if v2_pending {
        authorize_v2(&references, namespace)?;
        if !references.spark_conf.is_empty() {
            return Err(InjectionError::SparkConfNotDelivered);
        }
        let targets = target_containers(&containers, references.containers.as_deref())?;
        for (path, container) in targets {
            plan_env_secrets(&mut plan, &mut replaced, &path, container, &references);
        }
        plan.mark_injected = Some(digest);
    }
    for (path, container) in &containers {
        plan_legacy(&mut plan, &replaced, path, container, namespace)?;
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

fn authorize_v2(references: &References, namespace: &NamespaceScope) -> Result<(), InjectionError> {
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
            Source::Vault(_) => {
                return Err(InjectionError::VaultNotConfigured {
                    reference: describe(),
                });
            }
            Source::Kubernetes(store) => {
                scope::authorize(namespace, scope::required_scope(store), describe)?;
            }
        }
    }
    Ok(())
}

fn plan_env_secrets(
    plan: &mut Plan,
    replaced: &mut HashSet<(ContainerList, usize, usize)>,
    path: &ContainerPath,
    container: &Container,
    references: &References,
) {
    for entry in &references.env {
        plan.injected.push(Injected {
            target: format!("container {:?} env {:?}", path.name, entry.env_name),
            secret: entry.secret.clone(),
        });
    }
    let Some(env) = &container.env else {
        let vars = references
            .env
            .iter()
            .map(|entry| (entry.env_name.clone(), entry.secret.clone()))
            .collect();
        plan.changes
            .push((path.clone(), EnvChange::CreateEnv(vars)));
        return;
    };
    for entry in &references.env {
        let existing: Vec<usize> = env
            .iter()
            .enumerate()
            .filter(|(_, var)| var.name == entry.env_name)
            .map(|(index, _)| index)
            .collect();
        if existing.is_empty() {
            let change = EnvChange::AppendVar {
                name: entry.env_name.clone(),
                secret: entry.secret.clone(),
            };
            plan.changes.push((path.clone(), change));
            continue;
        }
        plan.warnings.push(format!(
            "container {:?}: env {:?} was already set and is replaced by secrets.iomete.com/env-secrets",
            path.name, entry.env_name
        ));
        for index in existing {
            replaced.insert((path.list, path.index, index));
            let change = EnvChange::ReplaceVar {
                index,
                name: entry.env_name.clone(),
                secret: entry.secret.clone(),
            };
            plan.changes.push((path.clone(), change));
        }
    }
}

fn plan_legacy(
    plan: &mut Plan,
    replaced: &HashSet<(ContainerList, usize, usize)>,
    path: &ContainerPath,
    container: &Container,
    namespace: &NamespaceScope,
) -> Result<(), InjectionError> {
    let Some(env) = &container.env else {
        return Ok(());
    };
    for (index, var) in env.iter().enumerate() {
        let Some(template) = legacy_template(path, var)? else {
            continue;
        };
        if replaced.contains(&(path.list, path.index, index)) {
            continue;
        }
        for key in template.keys() {
            let secret = SecretRef {
                source: Source::Kubernetes(KubernetesStore::Global),
                key: key.to_owned(),
            };
            let describe = || {
                format!(
                    "legacy placeholder ${{secrets.{key}}} in container {:?} env {:?}",
                    path.name, var.name
                )
            };
            scope::authorize(
                namespace,
                scope::required_scope(&KubernetesStore::Global),
                describe,
            )?;
            plan.warnings.push(format!(
                "container {:?} env {:?}: ${{secrets.{key}}} is deprecated; use the secrets.iomete.com/env-secrets annotation",
                path.name, var.name
            ));
            plan.injected.push(Injected {
                target: format!("container {:?} env {:?} (legacy)", path.name, var.name),
                secret,
            });
        }
        let change = EnvChange::ReplaceValue { index, template };
        plan.changes.push((path.clone(), change));
    }
    Ok(())
}

fn legacy_template(path: &ContainerPath, var: &EnvVar) -> Result<Option<Template>, InjectionError> {
    let Some(value) = &var.value else {
        return Ok(None);
    };
    parse_template(value).map_err(|source| InjectionError::Placeholder {
        container: path.name.clone(),
        env: var.name.clone(),
        source,
    })
}

/// How values are written into the patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueMode {
    /// The real value, escaped for the kubelet.
    Live,
    /// [`DRY_RUN_MARKER`] in place of every value.
    DryRun,
}

/// The patch and the reviewer-facing extras for a plan.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub patch: Patch,
    pub warnings: Vec<String>,
    pub audit_annotations: BTreeMap<String, String>,
}

/// Builds the patch from a plan and the fetched values.
pub fn render(
    plan: &Plan,
    values: &dyn Fn(&SecretRef) -> Option<SecretString>,
    mode: ValueMode,
) -> Result<Rendered, MissingValue> {
    let value_of = |secret: &SecretRef| -> Result<String, MissingValue> {
        let value = values(secret).ok_or_else(|| MissingValue(secret.clone()))?;
        Ok(match mode {
            ValueMode::Live => escape_for_kubelet(value.expose_secret()).into_owned(),
            ValueMode::DryRun => DRY_RUN_MARKER.to_owned(),
        })
    };
    let env_var = |name: &str, secret: &SecretRef| -> Result<Value, MissingValue> {
        Ok(json!({"name": name, "value": value_of(secret)?}))
    };
    let mut operations = Vec::with_capacity(plan.changes.len() + 1);
    for (path, change) in &plan.changes {
        let operation = match change {
            EnvChange::CreateEnv(vars) => PatchOperation::Add(AddOperation {
                path: path.pointer(&["env"]),
                value: Value::Array(
                    vars.iter()
                        .map(|(name, secret)| env_var(name, secret))
                        .collect::<Result<_, _>>()?,
                ),
            }),
            EnvChange::ReplaceVar {
                index,
                name,
                secret,
            } => PatchOperation::Replace(ReplaceOperation {
                path: path.pointer(&["env", &index.to_string()]),
                value: env_var(name, secret)?,
            }),
            EnvChange::AppendVar { name, secret } => PatchOperation::Add(AddOperation {
                path: path.pointer(&["env", "-"]),
                value: env_var(name, secret)?,
            }),
            EnvChange::ReplaceValue { index, template } => {
                let mut value = String::new();
                for segment in &template.segments {
                    match segment {
                        Segment::Literal(text) => value.push_str(text),
                        Segment::Secret(key) => value.push_str(&value_of(&SecretRef {
                            source: Source::Kubernetes(KubernetesStore::Global),
                            key: key.clone(),
                        })?),
                    }
                }
                PatchOperation::Replace(ReplaceOperation {
                    path: path.pointer(&["env", &index.to_string(), "value"]),
                    value: Value::String(value),
                })
            }
        };
        operations.push(operation);
    }
    if let Some(digest) = &plan.mark_injected {
        operations.push(if plan.annotations_present {
            PatchOperation::Add(AddOperation {
                path: PointerBuf::from_tokens(["metadata", "annotations", INJECTED_ANNOTATION]),
                value: Value::String(digest.clone()),
            })
        } else {
            PatchOperation::Add(AddOperation {
                path: PointerBuf::from_tokens(["metadata", "annotations"]),
                value: json!({ INJECTED_ANNOTATION: digest }),
            })
        });
    }
    Ok(Rendered {
        patch: Patch(operations),
        warnings: capped_warnings(&plan.warnings),
        audit_annotations: audit_annotations(plan),
    })
}

fn capped_warnings(warnings: &[String]) -> Vec<String> {
    if warnings.len() <= MAX_WARNINGS {
        return warnings.to_vec();
    }
    let mut capped = warnings[..MAX_WARNINGS - 1].to_vec();
    capped.push(format!(
        "{} more warnings like the above",
        warnings.len() - (MAX_WARNINGS - 1)
    ));
    capped
}

fn audit_annotations(plan: &Plan) -> BTreeMap<String, String> {
    if plan.injected.is_empty() {
        return BTreeMap::new();
    }
    let listed: Vec<Value> = plan
        .injected
        .iter()
        .map(|injected| {
            json!({
                "target": injected.target,
                "source": injected.secret.source.source_type().to_string(),
                "id": injected.secret.source.id(),
                "key": injected.secret.key,
            })
        })
        .collect();
    BTreeMap::from([(
        AUDIT_ANNOTATION_KEY.to_owned(),
        Value::Array(listed).to_string(),
    )])
}
