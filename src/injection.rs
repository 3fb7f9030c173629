//! The injection decision for one pod: plain data in, plain data out, no I/O.
//!
//! [`plan`] parses the references, authorizes each against the namespace's scope, picks the
//! target containers and decides every env change, without touching a value. The caller fetches
//! [`Plan::needed_secrets`] from the backends, then [`render`] turns the plan and the values into
//! the RFC 6902 patch. Keeping values out of the planning step means every denial that depends on
//! the pod is decided before any secret is read, and no error message can ever carry one; the one
//! check that needs values (whether Spark's launcher can carry them, see [`crate::spark`]) runs
//! in [`render`] and names the property, never the value.

use std::collections::{BTreeMap, HashSet};

use crate::legacy::{PlaceholderError, Template, parse_template};
use crate::pod::{Container, EnvVar, Pod};
use crate::reference::{
    self, CONTAINERS_ANNOTATION, EnvSecret, KubernetesStore, References, SecretRef, Source,
    SparkConfSecret,
};
use crate::scope::{
    self, NamespaceScope, RequiredScope, ScopeError, VaultGrant, VaultOwner, VaultOwners,
};
use crate::spark::{self, PRINT_LAUNCH_COMMAND, SPARK_SUBMIT_OPTS, SparkConfError};

mod render;
pub use render::{Rendered, ValueMode, render};

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
        "{reference} names Vault configuration {config:?}, which does not exist (no VaultConfig {config:?} in the store namespace); check the name or ask an administrator to create it"
    )]
    VaultConfigNotFound { reference: String, config: String },
    #[error(
        "{reference} uses a Vault source, but the webhook's copy of the Vault configurations is not current (still loading, or its watch is reconnecting); this is temporary, retry the request"
    )]
    VaultConfigsNotLoaded { reference: String },
    #[error("container {container:?}: {source}")]
    SparkConf {
        container: String,
        source: SparkConfError,
    },
    #[error(transparent)]
    OutOfScope(#[from] ScopeError),
    #[error(
        "this pod would receive {count} injected values ({counted}), more than the {MAX_INJECTIONS_PER_POD} allowed per pod; name fewer containers in {CONTAINERS_ANNOTATION} or reference fewer secrets"
    )]
    TooManyInjections { count: usize, counted: String },
    #[error(
        "the patch for this pod would be larger than the {MAX_PATCH_BYTES} bytes allowed (the API server stores no pod over about 1.5 MiB); reference fewer or smaller secrets, or name fewer containers in {CONTAINERS_ANNOTATION}"
    )]
    PatchTooLarge,
    /// A bug in the caller of [`render`], never the user's doing.
    #[error("internal error, please report it: {0}")]
    Internal(#[from] MissingValue),
}

/// `render` was given values that do not cover the plan.
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
    /// The JSON pointer of this container's `env`, followed by `tail` (which needs no escaping:
    /// indices, `-` and `value`).
    fn env_pointer(&self, tail: &str) -> String {
        format!("/spec/{}/{}/env{tail}", self.list.field(), self.index)
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
    /// Deliver these Spark properties as `-D` tokens in `SPARK_SUBMIT_OPTS`.
    SparkSubmitOpts {
        placement: OptionsPlacement,
        properties: Vec<(String, SecretRef)>,
    },
}

/// Where the `SPARK_SUBMIT_OPTS` tokens go in a container's env.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionsPlacement {
    /// The container has no `env` (and no env-secrets create one): create it with this variable.
    CreateEnv,
    /// Append a new `SPARK_SUBMIT_OPTS` variable.
    AppendVar,
    /// Replace the value of the literal `SPARK_SUBMIT_OPTS` at `index` with `literal`, a space
    /// and the tokens.
    ExtendLiteral { index: usize, literal: String },
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
    /// Each Vault configuration the references use, as it was when they were authorized.
    pub vault_grants: BTreeMap<String, VaultGrant>,
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
    vault: &dyn VaultOwners,
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

    // Every reference is authorized on every invocation, injected digest or not: the digest is
    // the pod's own word, and a forged one must skip at most the injection, never the scope check.
    if references.has_v2() {
        plan.vault_grants = authorize_v2(&references, namespace, vault)?;
    }
    let digest = references.digest();
    let v2_pending = references.has_v2() && references.injected_digest.as_deref() != Some(&digest);
    let mut replaced: HashSet<(ContainerList, usize, usize)> = HashSet::new();
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
        for (path, container) in targets {
            plan_env_secrets(&mut plan, &mut replaced, &path, container, &references);
            plan_spark_conf(&mut plan, &path, container, &references.env, spark_conf)?;
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

/// Fails when `more` injections would take the plan past [`MAX_INJECTIONS_PER_POD`]; checked
/// before they are planned, so the cap bounds the work and not only the answer.
fn reserve_injections(
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

/// Authorizes every V2 reference; returns what each Vault configuration was authorized as.
fn authorize_v2(
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
                VaultOwner::NotLoaded => {
                    return Err(InjectionError::VaultConfigsNotLoaded {
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

fn plan_env_secrets(
    plan: &mut Plan,
    replaced: &mut HashSet<(ContainerList, usize, usize)>,
    path: &ContainerPath,
    container: &Container,
    references: &References,
) {
    if references.env.is_empty() {
        return;
    }
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

fn plan_spark_conf(
    plan: &mut Plan,
    path: &ContainerPath,
    container: &Container,
    env_secrets: &[EnvSecret],
    spark_conf: &[SparkConfSecret],
) -> Result<(), InjectionError> {
    if spark_conf.is_empty() {
        return Ok(());
    }
    let refuse = |source| InjectionError::SparkConf {
        container: path.name.clone(),
        source,
    };
    if env_secrets
        .iter()
        .any(|entry| entry.env_name == SPARK_SUBMIT_OPTS)
    {
        return Err(refuse(SparkConfError::OptionsAreAnEnvSecret));
    }
    let env = container.env.as_deref().unwrap_or_default();
    // Of several entries with one name Kubernetes keeps the last, so that is the one to extend
    // (adding another would silently drop it).
    let existing = env
        .iter()
        .enumerate()
        .rev()
        .find(|(_, var)| var.name == SPARK_SUBMIT_OPTS);
    let placement = match existing {
        Some((_, var)) if var.value_from.is_some() => {
            return Err(refuse(SparkConfError::OptionsFromValueFrom));
        }
        Some((index, var)) => {
            let literal = var.value.clone().unwrap_or_default();
            // A malformed placeholder is left for plan_legacy, which names it precisely.
            if matches!(parse_template(&literal), Ok(Some(_))) {
                return Err(refuse(SparkConfError::OptionsHoldAPlaceholder));
            }
            spark::check_existing_options(&literal).map_err(refuse)?;
            OptionsPlacement::ExtendLiteral { index, literal }
        }
        // plan_env_secrets has already created `env` when there are env-secrets.
        None if container.env.is_none() && env_secrets.is_empty() => OptionsPlacement::CreateEnv,
        None => OptionsPlacement::AppendVar,
    };
    let prints_command = env.iter().any(|var| {
        var.name == PRINT_LAUNCH_COMMAND
            && (var.value_from.is_some() || var.value.as_deref().is_some_and(|v| !v.is_empty()))
    });
    if prints_command {
        plan.warnings.push(format!(
            "container {:?}: {PRINT_LAUNCH_COMMAND} is set, so spark-submit prints its command line, with the values of secrets.iomete.com/spark-conf-secrets, to the pod log",
            path.name
        ));
    }
    for entry in spark_conf {
        plan.injected.push(Injected {
            target: format!("container {:?} spark {:?}", path.name, entry.property),
            secret: entry.secret.clone(),
        });
    }
    let properties = spark_conf
        .iter()
        .map(|entry| (entry.property.clone(), entry.secret.clone()))
        .collect();
    plan.changes.push((
        path.clone(),
        EnvChange::SparkSubmitOpts {
            placement,
            properties,
        },
    ));
    Ok(())
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
        if replaced.contains(&(path.list, path.index, index)) {
            continue;
        }
        let Some(template) = legacy_template(path, var)? else {
            continue;
        };
        reserve_injections(plan, template.keys().count(), || {
            format!(
                "counting the legacy placeholders, up to container {:?} env {:?}",
                path.name, var.name
            )
        })?;
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use json_patch::Patch;
    use rstest::rstest;
    use secrecy::SecretString;
    use serde_json::{Value, json};

    use super::*;
    use crate::expansion::kubelet_expand;
    use crate::legacy::PlaceholderError;
    use crate::reference::{
        ENV_SECRETS_ANNOTATION, INJECTED_ANNOTATION, ReferenceError, SPARK_CONF_SECRETS_ANNOTATION,
        parse_annotations,
    };
    use crate::scope::RequiredScope;
    use crate::spark::Uncarriable;

    /// Round two of hardening: the caps on work and answer size, and checks a reinvocation
    /// digest must not skip.
    mod bounds;

    const ENV: &str = ENV_SECRETS_ANNOTATION;
    /// One Vault configuration, owned by domain finance.
    fn vaults() -> BTreeMap<String, String> {
        BTreeMap::from([("vault-finance".to_owned(), "finance".to_owned())])
    }

    const V2_ON: Settings = Settings {
        secrets_v2_enabled: true,
    };
    const V2_OFF: Settings = Settings {
        secrets_v2_enabled: false,
    };
    /// A value the kubelet would mangle if written verbatim, with quotes, a newline and unicode.
    const TRICKY: &str = "p@$$w0rd $(HOME) ${HOME} \"dq\" 'sq' `bt`\nline 2 ünïcødé €𝄞 $";

    // ---- building pods, namespaces and values ----

    fn pod(value: &Value) -> Pod {
        serde_json::from_value(value.clone()).expect("a valid pod")
    }

    /// A pod with `annotations` (omitted when empty), `containers` and `init` containers (omitted
    /// when null).
    fn pod_json(annotations: &[(&str, &str)], containers: Value, init: Value) -> Value {
        let mut pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "job-1", "labels": {"app": "job"}},
            "spec": {"containers": containers, "restartPolicy": "Never"},
        });
        if !annotations.is_empty() {
            let annotations: serde_json::Map<String, Value> = annotations
                .iter()
                .map(|(name, value)| (name.to_string(), Value::from(*value)))
                .collect();
            pod["metadata"]["annotations"] = Value::Object(annotations);
        }
        if !init.is_null() {
            pod["spec"]["initContainers"] = init;
        }
        pod
    }

    /// An env-secrets annotation value of KUBERNETES entries `(env name, store id, key)`.
    fn env_secrets(entries: &[(&str, &str, &str)]) -> String {
        let entries = entries
            .iter()
            .map(|(name, id, key)| {
                json!({"key": name, "secretObject": {"key": key, "source": {"type": "KUBERNETES", "id": id}}})
            })
            .collect();
        Value::Array(entries).to_string()
    }

    fn ns(name: &str, domain: Option<&str>, admin: bool) -> NamespaceScope {
        NamespaceScope {
            name: name.to_owned(),
            domain: domain.map(str::to_owned),
            admin,
        }
    }
    fn finance() -> NamespaceScope {
        ns("finance-jobs", Some("finance"), false)
    }

    fn domain(id: &str, key: &str) -> SecretRef {
        SecretRef {
            source: Source::Kubernetes(KubernetesStore::Domain(id.to_owned())),
            key: key.to_owned(),
        }
    }
    fn global(key: &str) -> SecretRef {
        SecretRef {
            source: Source::Kubernetes(KubernetesStore::Global),
            key: key.to_owned(),
        }
    }

    fn values(pairs: &[(SecretRef, &str)]) -> HashMap<SecretRef, String> {
        pairs
            .iter()
            .map(|(secret, value)| (secret.clone(), value.to_string()))
            .collect()
    }

    fn render_with(
        plan: &Plan,
        values: &HashMap<SecretRef, String>,
        mode: ValueMode,
    ) -> Result<Rendered, InjectionError> {
        render(
            plan,
            &|secret| values.get(secret).cloned().map(SecretString::from),
            mode,
        )
    }

    fn apply(pod: &Value, patch: &[u8]) -> Value {
        let patch: Patch = serde_json::from_slice(patch).expect("the patch is a JSON patch");
        let mut doc = pod.clone();
        json_patch::patch(&mut doc, &patch.0).expect("the patch applies to the pod");
        doc
    }

    /// Plans, renders live and applies; panics on any error.
    fn inject(
        original: &Value,
        namespace: &NamespaceScope,
        pairs: &[(SecretRef, &str)],
    ) -> (Plan, Rendered, Value) {
        let plan = plan(&pod(original), namespace, &V2_ON, &vaults()).expect("a plan");
        let rendered = render_with(&plan, &values(pairs), ValueMode::Live).expect("rendered");
        let patched = apply(original, &rendered.patch);
        (plan, rendered, patched)
    }

    fn digest_of(original: &Value) -> String {
        parse_annotations(&pod(original).metadata.annotations.unwrap())
            .unwrap()
            .digest()
    }

    fn replaced_warning(container: &str, env: &str) -> String {
        format!(
            "container {container:?}: env {env:?} was already set and is replaced by secrets.iomete.com/env-secrets"
        )
    }

    fn legacy_warning(container: &str, env: &str, key: &str) -> String {
        format!(
            "container {container:?} env {env:?}: ${{secrets.{key}}} is deprecated; use the secrets.iomete.com/env-secrets annotation"
        )
    }

    /// What the container sees once the kubelet has expanded the value, with HOME and DB_HOST
    /// defined (so an unescaped `$(HOME)` from a secret would visibly change).
    fn seen_by_container(value: &Value) -> String {
        kubelet_expand(value.as_str().expect("a string value"), |name| match name {
            "HOME" => Some("/home/spark".to_owned()),
            "DB_HOST" => Some("db.internal".to_owned()),
            _ => None,
        })
    }

    // ---- env-secrets into containers ----

    #[rstest]
    #[case::env_absent(None, json!([{"name": "DB_PASSWORD", "value": "s3cret"}]), false)]
    #[case::env_null(Some(Value::Null), json!([{"name": "DB_PASSWORD", "value": "s3cret"}]), false)]
    #[case::env_empty(Some(json!([])), json!([{"name": "DB_PASSWORD", "value": "s3cret"}]), false)]
    #[case::env_present_appended(
        Some(json!([{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}])),
        json!([{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, {"name": "DB_PASSWORD", "value": "s3cret"}]),
        false
    )]
    #[case::plain_var_replaced(
        Some(json!([{"name": "A", "value": "1"}, {"name": "DB_PASSWORD", "value": "from-the-spec"}, {"name": "C", "value": "3"}])),
        json!([{"name": "A", "value": "1"}, {"name": "DB_PASSWORD", "value": "s3cret"}, {"name": "C", "value": "3"}]),
        true
    )]
    #[case::value_from_var_replaced(
        Some(json!([{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "mine", "key": "pw"}}}, {"name": "A", "value": "1"}])),
        json!([{"name": "DB_PASSWORD", "value": "s3cret"}, {"name": "A", "value": "1"}]),
        true
    )]
    #[case::every_duplicate_replaced(
        Some(json!([{"name": "DB_PASSWORD", "value": "one"}, {"name": "DB_PASSWORD", "value": "two"}])),
        json!([{"name": "DB_PASSWORD", "value": "s3cret"}, {"name": "DB_PASSWORD", "value": "s3cret"}]),
        true
    )]
    fn env_secret_lands_in_the_container(
        #[case] existing: Option<Value>,
        #[case] expected_env: Value,
        #[case] warned: bool,
    ) {
        let mut container = json!({"name": "main", "image": "spark:3.5"});
        if let Some(env) = existing {
            container["env"] = env;
        }
        let annotation = env_secrets(&[("DB_PASSWORD", "finance", "db_password")]);
        let original = pod_json(
            &[(ENV, &annotation), ("app.io/owner", "team")],
            json!([container]),
            Value::Null,
        );
        let (plan, rendered, patched) = inject(
            &original,
            &finance(),
            &[(domain("finance", "db_password"), "s3cret")],
        );

        let mut expected = original.clone();
        expected["spec"]["containers"][0]["env"] = expected_env;
        expected["metadata"]["annotations"][INJECTED_ANNOTATION] = json!(digest_of(&original));
        assert_eq!(patched, expected);
        let warnings = if warned {
            vec![replaced_warning("main", "DB_PASSWORD")]
        } else {
            vec![]
        };
        assert_eq!(rendered.warnings, warnings);
        assert_eq!(
            plan.needed_secrets(),
            vec![domain("finance", "db_password")]
        );
    }

    #[test]
    fn every_container_but_no_init_container_by_default() {
        let annotation = env_secrets(&[("A", "finance", "a"), ("B", "global", "b")]);
        let original = pod_json(
            &[(ENV, &annotation)],
            json!([
                {"name": "main"},
                {"name": "sidecar", "env": [{"name": "B", "value": "old"}, {"name": "X", "value": "x"}]},
            ]),
            json!([{"name": "prepare", "env": [{"name": "X", "value": "x"}]}]),
        );
        let (plan, rendered, patched) = inject(
            &original,
            &finance(),
            &[(domain("finance", "a"), "va"), (global("b"), "vb")],
        );
        assert_eq!(
            patched["spec"]["containers"],
            json!([
                {"name": "main", "env": [{"name": "A", "value": "va"}, {"name": "B", "value": "vb"}]},
                {"name": "sidecar", "env": [{"name": "B", "value": "vb"}, {"name": "X", "value": "x"}, {"name": "A", "value": "va"}]},
            ])
        );
        assert_eq!(
            patched["spec"]["initContainers"],
            original["spec"]["initContainers"]
        );
        assert_eq!(rendered.warnings, vec![replaced_warning("sidecar", "B")]);
        assert_eq!(
            plan.needed_secrets(),
            vec![domain("finance", "a"), global("b")]
        );
    }

    #[test]
    fn containers_annotation_picks_only_the_named_ones_including_init_containers() {
        let annotation = env_secrets(&[("A", "finance", "a")]);
        let original = pod_json(
            &[
                (ENV, &annotation),
                (CONTAINERS_ANNOTATION, "prepare, sidecar"),
            ],
            json!([{"name": "main"}, {"name": "sidecar"}]),
            json!([{"name": "prepare"}, {"name": "other-init"}]),
        );
        let (_, _, patched) = inject(&original, &finance(), &[(domain("finance", "a"), "va")]);
        let with_a = json!([{"name": "A", "value": "va"}]);
        assert_eq!(patched["spec"]["containers"][0], json!({"name": "main"}));
        assert_eq!(patched["spec"]["containers"][1]["env"], with_a);
        assert_eq!(patched["spec"]["initContainers"][0]["env"], with_a);
        assert_eq!(
            patched["spec"]["initContainers"][1],
            json!({"name": "other-init"})
        );
    }

    #[test]
    fn values_are_escaped_so_the_container_sees_the_exact_bytes() {
        let annotation = env_secrets(&[("DB_PASSWORD", "finance", "db_password")]);
        let original = pod_json(
            &[(ENV, &annotation)],
            json!([{"name": "main", "env": [{"name": "DB_PASSWORD", "value": "x"}]}]),
            Value::Null,
        );
        let (_, _, patched) = inject(
            &original,
            &finance(),
            &[(domain("finance", "db_password"), TRICKY)],
        );
        let written = &patched["spec"]["containers"][0]["env"][0]["value"];
        assert_eq!(written, &json!(TRICKY.replace('$', "$$")));
        assert_eq!(seen_by_container(written), TRICKY);
        assert_eq!(kubelet_expand(written.as_str().unwrap(), |_| None), TRICKY);
    }

    // ---- legacy placeholders ----

    #[test]
    fn legacy_placeholders_resolve_in_place_in_containers_and_init_containers() {
        let original = pod_json(
            &[],
            json!([{"name": "main", "env": [
                {"name": "URL", "value": "jdbc:postgresql://$(DB_HOST)/app?user=${secrets.db_user}&password=${secrets.db_password}#$$"},
                {"name": "PLAIN", "value": "$(HOME) ${HOME} $(secrets.x)"},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ]}]),
            json!([{"name": "prepare", "env": [{"name": "TOKEN", "value": "${secrets.token}${secrets.token}"}]}]),
        );
        let (plan, rendered, patched) = inject(
            &original,
            &finance(),
            &[
                (global("db_user"), "admin"),
                (global("db_password"), TRICKY),
                (global("token"), "t$"),
            ],
        );

        let mut expected = original.clone();
        let url = format!(
            "jdbc:postgresql://$(DB_HOST)/app?user=admin&password={}#$$",
            TRICKY.replace('$', "$$")
        );
        expected["spec"]["containers"][0]["env"][0]["value"] = json!(url);
        expected["spec"]["initContainers"][0]["env"][0]["value"] = json!("t$$t$$");
        assert_eq!(
            patched, expected,
            "only the two values change, no annotation"
        );

        let url = &patched["spec"]["containers"][0]["env"][0]["value"];
        assert_eq!(
            seen_by_container(url),
            format!("jdbc:postgresql://db.internal/app?user=admin&password={TRICKY}#$")
        );
        let token = &patched["spec"]["initContainers"][0]["env"][0]["value"];
        assert_eq!(seen_by_container(token), "t$t$");

        assert_eq!(
            rendered.warnings,
            vec![
                legacy_warning("main", "URL", "db_user"),
                legacy_warning("main", "URL", "db_password"),
                legacy_warning("prepare", "TOKEN", "token"),
                legacy_warning("prepare", "TOKEN", "token"),
            ]
        );
        assert_eq!(
            plan.needed_secrets(),
            vec![global("db_password"), global("db_user"), global("token")]
        );
        assert_eq!(plan.mark_injected, None);
    }

    #[test]
    fn env_secret_wins_over_a_legacy_placeholder_on_the_same_var() {
        let annotation = env_secrets(&[("DB_PASSWORD", "finance", "db_password")]);
        let original = pod_json(
            &[(ENV, &annotation)],
            json!([{"name": "main", "env": [
                {"name": "DB_PASSWORD", "value": "${secrets.legacy_pw}"},
                {"name": "OTHER", "value": "${secrets.other}"},
            ]}]),
            // not targeted by default, so its placeholder still resolves the legacy way
            json!([{"name": "prepare", "env": [{"name": "DB_PASSWORD", "value": "${secrets.init_pw}"}]}]),
        );
        // no value for legacy_pw: it must not be needed
        let (plan, rendered, patched) = inject(
            &original,
            &finance(),
            &[
                (domain("finance", "db_password"), "v2"),
                (global("other"), "o"),
                (global("init_pw"), "i"),
            ],
        );
        assert_eq!(
            patched["spec"]["containers"][0]["env"],
            json!([{"name": "DB_PASSWORD", "value": "v2"}, {"name": "OTHER", "value": "o"}])
        );
        assert_eq!(
            patched["spec"]["initContainers"][0]["env"],
            json!([{"name": "DB_PASSWORD", "value": "i"}])
        );
        assert_eq!(
            plan.needed_secrets(),
            vec![
                domain("finance", "db_password"),
                global("init_pw"),
                global("other")
            ]
        );
        assert_eq!(
            rendered.warnings,
            vec![
                replaced_warning("main", "DB_PASSWORD"),
                legacy_warning("main", "OTHER", "other"),
                legacy_warning("prepare", "DB_PASSWORD", "init_pw"),
            ]
        );
    }

    #[test]
    fn warnings_are_capped() {
        let value: String = (0..25).map(|i| format!("${{secrets.k{i}}}")).collect();
        let original = pod_json(
            &[],
            json!([{"name": "main", "env": [{"name": "MANY", "value": value}]}]),
            Value::Null,
        );
        let pairs: Vec<(SecretRef, &str)> =
            (0..25).map(|i| (global(&format!("k{i}")), "v")).collect();
        let (plan, rendered, patched) = inject(&original, &finance(), &pairs);
        assert_eq!(plan.warnings.len(), 25);
        assert_eq!(rendered.warnings.len(), 20);
        assert_eq!(rendered.warnings[0], legacy_warning("main", "MANY", "k0"));
        assert_eq!(rendered.warnings[19], "6 more warnings like the above");
        assert_eq!(
            patched["spec"]["containers"][0]["env"][0]["value"],
            json!("v".repeat(25))
        );
    }

    // ---- re-invocation ----

    fn reinvocation_pods() -> Vec<(&'static str, Value)> {
        let a = env_secrets(&[("A", "finance", "a")]);
        vec![
            (
                "env created",
                pod_json(&[(ENV, &a)], json!([{"name": "main"}]), Value::Null),
            ),
            (
                "var replaced",
                pod_json(
                    &[(ENV, &a)],
                    json!([{"name": "main", "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]),
                    Value::Null,
                ),
            ),
            (
                "named init container",
                pod_json(
                    &[(ENV, &a), (CONTAINERS_ANNOTATION, "prepare")],
                    json!([{"name": "main"}]),
                    json!([{"name": "prepare", "env": [{"name": "X", "value": "x"}]}]),
                ),
            ),
            (
                "legacy only",
                pod_json(
                    &[],
                    json!([{"name": "main", "env": [{"name": "L", "value": "<${secrets.l}>"}]}]),
                    json!([{"name": "prepare", "env": [{"name": "L", "value": "${secrets.l}"}]}]),
                ),
            ),
            (
                "legacy and env-secrets",
                pod_json(
                    &[(ENV, &a), ("other.io/x", "y")],
                    json!([{"name": "main", "env": [{"name": "A", "value": "${secrets.l}"}, {"name": "L", "value": "${secrets.l}"}]}]),
                    Value::Null,
                ),
            ),
        ]
    }

    #[test]
    fn reinvocation_with_the_patched_pod_is_a_noop() {
        let pairs = [(domain("finance", "a"), TRICKY), (global("l"), TRICKY)];
        for (case, original) in reinvocation_pods() {
            let (first, _, patched) = inject(&original, &finance(), &pairs);
            assert!(!first.is_noop(), "{case}");
            let again = plan(&pod(&patched), &finance(), &V2_ON, &vaults()).expect(case);
            assert!(again.is_noop(), "{case}: {:?}", again.changes);
            assert!(again.changes.is_empty(), "{case}");
            assert_eq!(again.mark_injected, None, "{case}");
            let rendered = render_with(&again, &values(&pairs), ValueMode::Live).unwrap();
            assert_eq!(rendered.patch, b"[]", "{case}");
        }
    }

    /// An injected value that contains `${secrets.x}` text is written `$${secrets.x}`, which the
    /// legacy parser must read as the kubelet's escape, not as a placeholder, when the pod comes
    /// back: otherwise another secret is spliced into the value (or the pod is denied with an
    /// error that quotes the value).
    #[rstest]
    #[case::legacy_value(pod_json(&[], json!([{"name": "main", "env": [{"name": "L", "value": "${secrets.l}"}]}]), Value::Null))]
    #[case::env_secret_value(pod_json(&[(ENV, &env_secrets(&[("L", "global", "l")]))], json!([{"name": "main"}]), Value::Null))]
    fn reinvocation_is_a_noop_even_when_a_value_looks_like_a_placeholder(#[case] original: Value) {
        for value in ["a${secrets.other}b", "${secrets.not a key"] {
            let (_, _, patched) = inject(&original, &finance(), &[(global("l"), value)]);
            let written = &patched["spec"]["containers"][0]["env"][0]["value"];
            assert_eq!(seen_by_container(written), value);
            let again = plan(&pod(&patched), &finance(), &V2_ON, &vaults());
            assert!(
                again.as_ref().is_ok_and(Plan::is_noop),
                "{value:?}: {again:?}"
            );
        }
    }

    #[test]
    fn reinvocation_with_changed_references_injects_again() {
        let original = pod_json(
            &[(ENV, &env_secrets(&[("A", "finance", "a")]))],
            json!([{"name": "main"}]),
            Value::Null,
        );
        let pairs = [
            (domain("finance", "a"), "va"),
            (domain("finance", "b"), "vb"),
        ];
        let (_, _, mut patched) = inject(&original, &finance(), &pairs);
        let old_digest = patched["metadata"]["annotations"][INJECTED_ANNOTATION].clone();
        patched["metadata"]["annotations"][ENV] =
            json!(env_secrets(&[("A", "finance", "b"), ("B", "finance", "b")]));

        let (again, rendered, repatched) = inject(&patched, &finance(), &pairs);
        assert!(!again.is_noop());
        assert_eq!(
            repatched["spec"]["containers"][0]["env"],
            json!([{"name": "A", "value": "vb"}, {"name": "B", "value": "vb"}])
        );
        let new_digest = &repatched["metadata"]["annotations"][INJECTED_ANNOTATION];
        assert_eq!(new_digest, &json!(digest_of(&patched)));
        assert_ne!(new_digest, &old_digest);
        assert_eq!(rendered.warnings, vec![replaced_warning("main", "A")]);
    }

    #[test]
    fn a_forged_injected_digest_only_skips_injection() {
        let annotation = env_secrets(&[("A", "global", "a")]);
        let mut original = pod_json(
            &[(ENV, &annotation)],
            json!([{"name": "main"}]),
            Value::Null,
        );
        let digest = digest_of(&original);
        original["metadata"]["annotations"][INJECTED_ANNOTATION] = json!(digest);
        let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
        assert!(plan.is_noop());
        assert!(plan.needed_secrets().is_empty());
    }

    // ---- the injected annotation ----

    #[test]
    fn injected_annotation_is_added_with_an_escaped_pointer() {
        let annotation = env_secrets(&[("A", "finance", "a")]);
        let original = pod_json(
            &[(ENV, &annotation)],
            json!([{"name": "main"}]),
            Value::Null,
        );
        let (_, rendered, patched) =
            inject(&original, &finance(), &[(domain("finance", "a"), "va")]);
        let operations = serde_json::from_slice::<Value>(&rendered.patch).unwrap();
        assert_eq!(
            operations.as_array().unwrap().last().unwrap(),
            &json!({
                "op": "add",
                "path": "/metadata/annotations/secrets.iomete.com~1injected",
                "value": digest_of(&original),
            })
        );
        assert_eq!(
            patched["metadata"]["annotations"],
            json!({ENV: annotation, INJECTED_ANNOTATION: digest_of(&original)})
        );
    }

    #[test]
    fn injected_annotation_creates_the_annotations_when_absent() {
        let plan = Plan {
            mark_injected: Some("sha256:abc".into()),
            annotations_present: false,
            ..Plan::default()
        };
        let rendered = render_with(&plan, &HashMap::new(), ValueMode::Live).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&rendered.patch).unwrap(),
            json!([{"op": "add", "path": "/metadata/annotations", "value": {"secrets.iomete.com/injected": "sha256:abc"}}])
        );
        let original = pod_json(&[], json!([{"name": "main"}]), Value::Null);
        let patched = apply(&original, &rendered.patch);
        assert_eq!(
            patched["metadata"],
            json!({"name": "job-1", "labels": {"app": "job"}, "annotations": {"secrets.iomete.com/injected": "sha256:abc"}})
        );
    }

    #[test]
    fn a_stale_injected_annotation_is_overwritten() {
        let annotation = env_secrets(&[("A", "finance", "a")]);
        let original = pod_json(
            &[(ENV, &annotation), (INJECTED_ANNOTATION, "sha256:stale")],
            json!([{"name": "main"}]),
            Value::Null,
        );
        let (_, _, patched) = inject(&original, &finance(), &[(domain("finance", "a"), "va")]);
        assert_eq!(
            patched["metadata"]["annotations"][INJECTED_ANNOTATION],
            json!(digest_of(&original))
        );
    }

    // ---- dry run and audit ----

    fn mixed_pod() -> Value {
        pod_json(
            &[(
                ENV,
                &env_secrets(&[("DB_PASSWORD", "finance", "db_password")]),
            )],
            json!([
                {"name": "main", "env": [{"name": "URL", "value": "u=${secrets.db_user};p=$(HOME)"}]},
                {"name": "sidecar"},
            ]),
            Value::Null,
        )
    }
    const V2_VALUE: &str = "hunter2-from-finance";
    const LEGACY_VALUE: &str = "legacy-user-from-global";

    fn mixed_values() -> HashMap<SecretRef, String> {
        values(&[
            (domain("finance", "db_password"), V2_VALUE),
            (global("db_user"), LEGACY_VALUE),
        ])
    }

    #[test]
    fn dry_run_writes_the_marker_and_no_value() {
        let original = mixed_pod();
        let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
        let rendered = render_with(&plan, &mixed_values(), ValueMode::DryRun).unwrap();
        let serialized = format!(
            "{} {:?} {:?}",
            String::from_utf8(rendered.patch.clone()).unwrap(),
            rendered.warnings,
            rendered.audit_annotations
        );
        assert!(serialized.contains(DRY_RUN_MARKER), "{serialized}");
        assert!(!serialized.contains(V2_VALUE), "{serialized}");
        assert!(!serialized.contains(LEGACY_VALUE), "{serialized}");

        let patched = apply(&original, &rendered.patch);
        assert_eq!(
            patched["spec"]["containers"],
            json!([
                {"name": "main", "env": [
                    {"name": "URL", "value": format!("u={DRY_RUN_MARKER};p=$(HOME)")},
                    {"name": "DB_PASSWORD", "value": DRY_RUN_MARKER},
                ]},
                {"name": "sidecar", "env": [{"name": "DB_PASSWORD", "value": DRY_RUN_MARKER}]},
            ])
        );
        assert_eq!(
            patched["metadata"]["annotations"][INJECTED_ANNOTATION],
            json!(digest_of(&original))
        );
    }

    #[test]
    fn audit_annotations_list_references_and_never_values() {
        let original = mixed_pod();
        let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
        let rendered = render_with(&plan, &mixed_values(), ValueMode::Live).unwrap();
        assert_eq!(
            rendered.audit_annotations.keys().collect::<Vec<_>>(),
            vec![AUDIT_ANNOTATION_KEY]
        );
        let listed: Value =
            serde_json::from_str(&rendered.audit_annotations[AUDIT_ANNOTATION_KEY]).unwrap();
        assert_eq!(
            listed,
            json!([
                {"target": "container \"main\" env \"DB_PASSWORD\"", "source": "KUBERNETES", "id": "finance", "key": "db_password"},
                {"target": "container \"sidecar\" env \"DB_PASSWORD\"", "source": "KUBERNETES", "id": "finance", "key": "db_password"},
                {"target": "container \"main\" env \"URL\" (legacy)", "source": "KUBERNETES", "id": "global", "key": "db_user"},
            ])
        );
        let everything = format!("{:?} {:?}", rendered.audit_annotations, rendered.warnings);
        assert!(!everything.contains(V2_VALUE), "{everything}");
        assert!(!everything.contains(LEGACY_VALUE), "{everything}");
    }

    #[test]
    fn nothing_injected_means_no_audit_annotation() {
        let original = pod_json(&[], json!([{"name": "main"}]), Value::Null);
        let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
        assert!(plan.is_noop());
        let rendered = render_with(&plan, &HashMap::new(), ValueMode::Live).unwrap();
        assert!(rendered.audit_annotations.is_empty());
        assert_eq!(rendered.patch, b"[]");
    }

    // ---- spark-conf-secrets into SPARK_SUBMIT_OPTS ----

    const SPARK: &str = SPARK_CONF_SECRETS_ANNOTATION;
    const DRIVER: &str = "spark-kubernetes-driver";
    /// How [`spark_values`] are written: one single-quoted token each, `'` as `'\''`, every `$`
    /// doubled for the kubelet, joined by single spaces.
    const WRITTEN_TOKENS: &str =
        r"'-Dspark.hadoop.fs.s3a.secret.key=it'\''s $$(HOME) \' '-Dspark.iomete.tag=t'";
    /// The same tokens as the container (and so Spark's launcher) sees them.
    const SEEN_TOKENS: &str =
        r"'-Dspark.hadoop.fs.s3a.secret.key=it'\''s $(HOME) \' '-Dspark.iomete.tag=t'";

    fn spark_conf() -> String {
        env_secrets(&[
            ("spark.hadoop.fs.s3a.secret.key", "finance", "s3"),
            ("spark.iomete.tag", "global", "tag"),
        ])
    }

    fn spark_values() -> [(SecretRef, &'static str); 2] {
        [
            (domain("finance", "s3"), "it's $(HOME) \\"),
            (global("tag"), "t"),
        ]
    }

    /// A pod labelled with Spark's `role` whose one container has `env` (omitted when `None`).
    fn spark_pod(role: &str, annotations: &[(&str, &str)], env: Option<Value>) -> Value {
        let mut container = json!({"name": DRIVER});
        if let Some(env) = env {
            container["env"] = env;
        }
        let mut pod = pod_json(annotations, json!([container]), Value::Null);
        pod["metadata"]["labels"] = json!({"spark-role": role});
        pod
    }

    fn opts(value: &str) -> Value {
        json!({"name": SPARK_SUBMIT_OPTS, "value": value})
    }

    fn spark_denial(source: SparkConfError) -> InjectionError {
        InjectionError::SparkConf {
            container: DRIVER.into(),
            source,
        }
    }

    #[rstest]
    #[case::env_absent(None, json!([opts(WRITTEN_TOKENS)]))]
    #[case::env_empty(Some(json!([])), json!([opts(WRITTEN_TOKENS)]))]
    #[case::appended(
        Some(json!([{"name": "SPARK_USER", "value": "spark"}, {"name": "SPARK_DRIVER_BIND_ADDRESS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}])),
        json!([{"name": "SPARK_USER", "value": "spark"}, {"name": "SPARK_DRIVER_BIND_ADDRESS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}, opts(WRITTEN_TOKENS)])
    )]
    #[case::existing_literal_kept_not_escaped_again(
        Some(json!([{"name": "A", "value": "1"}, opts("-Xss4m -Dprice=$$5 '-Dx=a b'"), {"name": "B", "value": "2"}])),
        json!([{"name": "A", "value": "1"}, opts(&format!("-Xss4m -Dprice=$$5 '-Dx=a b' {WRITTEN_TOKENS}")), {"name": "B", "value": "2"}])
    )]
    #[case::empty_literal(Some(json!([opts("")])), json!([opts(&format!(" {WRITTEN_TOKENS}"))]))]
    #[case::last_of_duplicates_extended(
        Some(json!([opts("-Dfirst=1"), opts("-Dlast=2")])),
        json!([opts("-Dfirst=1"), opts(&format!("-Dlast=2 {WRITTEN_TOKENS}"))])
    )]
    fn spark_conf_lands_in_spark_submit_opts(
        #[case] existing: Option<Value>,
        #[case] expected_env: Value,
    ) {
        let annotation = spark_conf();
        let original = spark_pod("driver", &[(SPARK, &annotation)], existing);
        let (plan, rendered, patched) = inject(&original, &finance(), &spark_values());

        let mut expected = original.clone();
        expected["spec"]["containers"][0]["env"] = expected_env;
        expected["metadata"]["annotations"][INJECTED_ANNOTATION] = json!(digest_of(&original));
        assert_eq!(patched, expected);
        let env = patched["spec"]["containers"][0]["env"].as_array().unwrap();
        let written = &env
            .iter()
            .rfind(|var| var["name"] == SPARK_SUBMIT_OPTS)
            .unwrap()["value"];
        let seen = seen_by_container(written);
        assert!(
            seen == SEEN_TOKENS || seen.ends_with(&format!(" {SEEN_TOKENS}")),
            "{seen}"
        );
        assert_eq!(rendered.warnings, Vec::<String>::new());
        assert_eq!(
            plan.injected
                .iter()
                .map(|injected| injected.target.as_str())
                .collect::<Vec<_>>(),
            vec![
                "container \"spark-kubernetes-driver\" spark \"spark.hadoop.fs.s3a.secret.key\"",
                "container \"spark-kubernetes-driver\" spark \"spark.iomete.tag\"",
            ]
        );
        assert_eq!(
            plan.needed_secrets(),
            vec![domain("finance", "s3"), global("tag")]
        );
    }

    #[test]
    fn existing_literal_is_seen_as_the_user_wrote_it_followed_by_the_tokens() {
        let annotation = spark_conf();
        let literal = "-Dprice=$$5 -Dhome=$(HOME)";
        let original = spark_pod(
            "driver",
            &[(SPARK, &annotation)],
            Some(json!([opts(literal)])),
        );
        let (_, _, patched) = inject(&original, &finance(), &spark_values());
        assert_eq!(
            seen_by_container(&patched["spec"]["containers"][0]["env"][0]["value"]),
            format!("-Dprice=$5 -Dhome=/home/spark {SEEN_TOKENS}")
        );
    }

    #[test]
    fn env_secrets_and_spark_conf_share_a_created_env() {
        let spark = spark_conf();
        let env = env_secrets(&[("DB_PASSWORD", "finance", "db_password")]);
        let original = spark_pod("driver", &[(ENV, &env), (SPARK, &spark)], None);
        let mut pairs = spark_values().to_vec();
        pairs.push((domain("finance", "db_password"), "pw"));
        let (plan, _, patched) = inject(&original, &finance(), &pairs);
        assert_eq!(
            patched["spec"]["containers"][0]["env"],
            json!([{"name": "DB_PASSWORD", "value": "pw"}, opts(WRITTEN_TOKENS)])
        );
        assert_eq!(plan.injected.len(), 3);
    }

    #[test]
    fn spark_conf_follows_the_containers_annotation() {
        let spark = spark_conf();
        let original = pod_json(
            &[(SPARK, &spark), (CONTAINERS_ANNOTATION, "prepare,main")],
            json!([{"name": "main", "env": [{"name": "A", "value": "1"}]}, {"name": "sidecar"}]),
            json!([{"name": "prepare"}]),
        );
        let (_, _, patched) = inject(&original, &finance(), &spark_values());
        assert_eq!(
            patched["spec"]["containers"][0]["env"],
            json!([{"name": "A", "value": "1"}, opts(WRITTEN_TOKENS)])
        );
        assert_eq!(patched["spec"]["containers"][1], json!({"name": "sidecar"}));
        assert_eq!(
            patched["spec"]["initContainers"][0]["env"],
            json!([opts(WRITTEN_TOKENS)])
        );
    }

    #[rstest]
    #[case::value_from(
        json!([{"name": "SPARK_SUBMIT_OPTS", "valueFrom": {"configMapKeyRef": {"name": "opts", "key": "opts"}}}]),
        SparkConfError::OptionsFromValueFrom
    )]
    #[case::last_duplicate_is_value_from(
        json!([opts("-Dx=1"), {"name": "SPARK_SUBMIT_OPTS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
        SparkConfError::OptionsFromValueFrom
    )]
    #[case::legacy_placeholder(json!([opts("-Dpw=${secrets.pw}")]), SparkConfError::OptionsHoldAPlaceholder)]
    #[case::unclosed_quote(json!([opts("-Dx='a b")]), SparkConfError::OptionsEndMidToken)]
    #[case::trailing_backslash(json!([opts("-Dx=a\\")]), SparkConfError::OptionsEndMidToken)]
    #[case::open_reference(json!([opts("-Dx=$(HOME")]), SparkConfError::OptionsEndInReference)]
    fn unusable_existing_spark_submit_opts_are_denied_before_any_fetch(
        #[case] env: Value,
        #[case] expected: SparkConfError,
    ) {
        let annotation = spark_conf();
        let original = spark_pod("driver", &[(SPARK, &annotation)], Some(env));
        let error = denial(&original, &finance(), &V2_ON);
        assert_eq!(error, spark_denial(expected));
        let message = error.to_string();
        assert!(
            message.starts_with("container \"spark-kubernetes-driver\": "),
            "{message}"
        );
        assert!(message.contains("SPARK_SUBMIT_OPTS"), "{message}");
    }

    #[test]
    fn value_from_denial_says_what_to_do() {
        let annotation = spark_conf();
        let env = json!([{"name": "SPARK_SUBMIT_OPTS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]);
        let original = spark_pod("driver", &[(SPARK, &annotation)], Some(env));
        assert_eq!(
            denial(&original, &finance(), &V2_ON).to_string(),
            "container \"spark-kubernetes-driver\": SPARK_SUBMIT_OPTS is set with valueFrom, which \
             the webhook cannot read or extend; set it as a literal value, or remove it, to use \
             secrets.iomete.com/spark-conf-secrets"
        );
    }

    #[test]
    fn spark_submit_opts_cannot_also_be_an_env_secret() {
        let spark = spark_conf();
        let env = env_secrets(&[("SPARK_SUBMIT_OPTS", "finance", "opts")]);
        let original = spark_pod("driver", &[(ENV, &env), (SPARK, &spark)], None);
        assert_eq!(
            denial(&original, &finance(), &V2_ON),
            spark_denial(SparkConfError::OptionsAreAnEnvSecret)
        );
    }

    #[rstest]
    #[case::carriage_return("line\r\n", Uncarriable::CarriageReturn, ValueMode::Live)]
    #[case::nul("a\0b", Uncarriable::Nul, ValueMode::Live)]
    #[case::above_u_ffff("key 🔑", Uncarriable::AboveBmp, ValueMode::Live)]
    #[case::dry_run_refuses_what_a_real_request_would(
        "secret\r",
        Uncarriable::CarriageReturn,
        ValueMode::DryRun
    )]
    fn values_the_launcher_cannot_carry_are_refused_naming_the_property(
        #[case] value: &str,
        #[case] found: Uncarriable,
        #[case] mode: ValueMode,
    ) {
        let annotation = spark_conf();
        let original = spark_pod("driver", &[(SPARK, &annotation)], None);
        let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
        let pairs = [(domain("finance", "s3"), value), (global("tag"), "t")];
        let error = render_with(&plan, &values(&pairs), mode).unwrap_err();
        assert_eq!(
            error,
            spark_denial(SparkConfError::Uncarriable {
                property: "spark.hadoop.fs.s3a.secret.key".into(),
                found
            })
        );
        let message = error.to_string();
        assert!(
            message.contains("\"spark.hadoop.fs.s3a.secret.key\""),
            "{message}"
        );
        assert!(!message.contains(value), "{message}");
    }

    /// The limit is on what the container sees: `$` written `$$` counts once.
    #[rstest]
    #[case::fits_exactly(None, spark::MAX_OPTIONS_BYTES - "'-Dspark.a='".len(), true)]
    #[case::one_over(None, spark::MAX_OPTIONS_BYTES - "'-Dspark.a='".len() + 1, false)]
    #[case::literal_counts(Some("-Xss4m"), spark::MAX_OPTIONS_BYTES - "-Xss4m '-Dspark.a='".len(), true)]
    #[case::literal_one_over(Some("-Xss4m"), spark::MAX_OPTIONS_BYTES - "-Xss4m '-Dspark.a='".len() + 1, false)]
    fn spark_submit_opts_longer_than_linux_allows_are_refused(
        #[case] literal: Option<&str>,
        #[case] dollars: usize,
        #[case] fits: bool,
    ) {
        let annotation = env_secrets(&[("spark.a", "finance", "a")]);
        let env = literal.map(|literal| json!([opts(literal)]));
        let original = spark_pod("driver", &[(SPARK, &annotation)], env);
        let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
        let value = "$".repeat(dollars);
        let rendered = render_with(
            &plan,
            &values(&[(domain("finance", "a"), &value)]),
            ValueMode::Live,
        );
        match rendered {
            Ok(rendered) => {
                assert!(fits);
                let patched = apply(&original, &rendered.patch);
                let env = &patched["spec"]["containers"][0]["env"];
                let written = env[env.as_array().unwrap().len() - 1]["value"].clone();
                assert_eq!(seen_by_container(&written).len(), spark::MAX_OPTIONS_BYTES);
            }
            Err(error) => {
                assert!(!fits, "{error}");
                assert_eq!(error, spark_denial(SparkConfError::OptionsTooLong));
            }
        }
    }

    #[test]
    fn executors_get_env_secrets_but_spark_conf_is_neither_fetched_nor_injected() {
        let spark = spark_conf();
        let env = env_secrets(&[("A", "finance", "a")]);
        let original = spark_pod(
            "executor",
            &[(ENV, &env), (SPARK, &spark)],
            Some(json!([{"name": "SPARK_USER", "value": "spark"}])),
        );
        let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
        assert_eq!(plan.needed_secrets(), vec![domain("finance", "a")]);
        assert!(plan.injected.iter().all(|i| !i.target.contains(" spark ")));
        // Only the env-secret's value is given: fetching a Spark one would fail to render.
        let rendered = render_with(
            &plan,
            &values(&[(domain("finance", "a"), "va")]),
            ValueMode::Live,
        )
        .unwrap();
        let patched = apply(&original, &rendered.patch);
        assert_eq!(
            patched["spec"]["containers"][0]["env"],
            json!([{"name": "SPARK_USER", "value": "spark"}, {"name": "A", "value": "va"}])
        );
        assert_eq!(
            patched["metadata"]["annotations"][INJECTED_ANNOTATION],
            json!(digest_of(&original))
        );
    }

    #[test]
    fn executors_with_only_spark_conf_are_just_marked_injected() {
        let spark = spark_conf();
        let original = spark_pod("executor", &[(SPARK, &spark)], None);
        let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
        assert!(plan.changes.is_empty(), "{:?}", plan.changes);
        assert!(plan.needed_secrets().is_empty());
        let rendered = render_with(&plan, &HashMap::new(), ValueMode::Live).unwrap();
        let patched = apply(&original, &rendered.patch);
        assert_eq!(patched["spec"], original["spec"]);
        assert!(rendered.audit_annotations.is_empty());
    }

    #[test]
    fn executor_spark_conf_is_still_authorized() {
        let spark = env_secrets(&[("spark.a", "finance", "a")]);
        let original = spark_pod("executor", &[(SPARK, &spark)], None);
        let error = denial(&original, &ns("mkt", Some("marketing"), false), &V2_ON);
        let InjectionError::OutOfScope(scope_error) = &error else {
            panic!("expected OutOfScope, got {error:?}");
        };
        assert_eq!(
            scope_error.reference,
            "secrets.iomete.com/spark-conf-secrets entry \"spark.a\" (KUBERNETES/finance/a)"
        );
    }

    #[test]
    fn dry_run_puts_the_marker_in_place_of_each_value_inside_the_tokens() {
        let annotation = spark_conf();
        let original = spark_pod(
            "driver",
            &[(SPARK, &annotation)],
            Some(json!([opts("-Xss4m")])),
        );
        let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
        let rendered = render_with(&plan, &values(&spark_values()), ValueMode::DryRun).unwrap();
        let patched = apply(&original, &rendered.patch);
        assert_eq!(
            patched["spec"]["containers"][0]["env"],
            json!([opts(&format!(
                "-Xss4m '-Dspark.hadoop.fs.s3a.secret.key={DRY_RUN_MARKER}' '-Dspark.iomete.tag={DRY_RUN_MARKER}'"
            ))])
        );
        let everything = format!("{patched} {:?}", rendered.audit_annotations);
        assert!(!everything.contains("it's"), "{everything}");
    }

    #[test]
    fn audit_annotations_list_spark_properties_and_never_values() {
        let annotation = spark_conf();
        let original = spark_pod("driver", &[(SPARK, &annotation)], None);
        let (_, rendered, _) = inject(&original, &finance(), &spark_values());
        let listed: Value =
            serde_json::from_str(&rendered.audit_annotations[AUDIT_ANNOTATION_KEY]).unwrap();
        assert_eq!(
            listed,
            json!([
                {"target": "container \"spark-kubernetes-driver\" spark \"spark.hadoop.fs.s3a.secret.key\"", "source": "KUBERNETES", "id": "finance", "key": "s3"},
                {"target": "container \"spark-kubernetes-driver\" spark \"spark.iomete.tag\"", "source": "KUBERNETES", "id": "global", "key": "tag"},
            ])
        );
        assert!(!rendered.audit_annotations[AUDIT_ANNOTATION_KEY].contains("it's"));
    }

    #[rstest]
    #[case::set(json!({"name": "SPARK_PRINT_LAUNCH_COMMAND", "value": "1"}), true)]
    #[case::from_elsewhere(json!({"name": "SPARK_PRINT_LAUNCH_COMMAND", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}), true)]
    #[case::empty_is_off(json!({"name": "SPARK_PRINT_LAUNCH_COMMAND", "value": ""}), false)]
    fn printing_the_launch_command_is_warned_about(#[case] var: Value, #[case] warned: bool) {
        let annotation = spark_conf();
        let original = spark_pod("driver", &[(SPARK, &annotation)], Some(json!([var])));
        let (_, rendered, _) = inject(&original, &finance(), &spark_values());
        let expected = warned.then(|| {
            "container \"spark-kubernetes-driver\": SPARK_PRINT_LAUNCH_COMMAND is set, so \
             spark-submit prints its command line, with the values of \
             secrets.iomete.com/spark-conf-secrets, to the pod log"
                .to_owned()
        });
        assert_eq!(rendered.warnings, expected.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn reinvocation_after_spark_conf_delivery_is_a_noop() {
        let annotation = spark_conf();
        for env in [None, Some(json!([opts("-Xss4m")]))] {
            let original = spark_pod("driver", &[(SPARK, &annotation)], env);
            let (_, _, patched) = inject(&original, &finance(), &spark_values());
            let again = plan(&pod(&patched), &finance(), &V2_ON, &vaults()).unwrap();
            assert!(again.is_noop(), "{:?}", again.changes);
        }
    }

    // ---- denials ----

    fn denial(original: &Value, namespace: &NamespaceScope, settings: &Settings) -> InjectionError {
        plan(&pod(original), namespace, settings, &vaults()).expect_err("a denial")
    }

    #[rstest]
    #[case::domain_store_from_another_domain(
        &[(ENV, env_secrets(&[("DB_PASSWORD", "finance", "db_password")]))],
        ns("mkt", Some("marketing"), false),
        "secrets.iomete.com/env-secrets entry \"DB_PASSWORD\" (KUBERNETES/finance/db_password)",
        RequiredScope::Domain("finance".into()),
        "namespace \"mkt\" (domain \"marketing\")"
    )]
    #[case::domain_store_from_admin(
        &[(ENV, env_secrets(&[("A", "finance", "a")]))],
        ns("ops", None, true),
        "secrets.iomete.com/env-secrets entry \"A\" (KUBERNETES/finance/a)",
        RequiredScope::Domain("finance".into()),
        "namespace \"ops\" (admin)"
    )]
    #[case::admin_store_from_a_domain(
        &[(ENV, env_secrets(&[("OK", "finance", "a"), ("ROOT", "admin", "root")]))],
        finance(),
        "secrets.iomete.com/env-secrets entry \"ROOT\" (KUBERNETES/admin/root)",
        RequiredScope::Admin,
        "namespace \"finance-jobs\" (domain \"finance\")"
    )]
    #[case::global_store_from_nowhere(
        &[(ENV, env_secrets(&[("G", "global", "g")]))],
        ns("default", None, false),
        "secrets.iomete.com/env-secrets entry \"G\" (KUBERNETES/global/g)",
        RequiredScope::AnyDomainOrAdmin,
        "namespace \"default\" (no domain label and not an admin namespace)"
    )]
    #[case::spark_conf_is_authorized_first(
        &[(SPARK_CONF_SECRETS_ANNOTATION, env_secrets(&[("spark.x", "finance", "x")]))],
        ns("mkt", Some("marketing"), false),
        "secrets.iomete.com/spark-conf-secrets entry \"spark.x\" (KUBERNETES/finance/x)",
        RequiredScope::Domain("finance".into()),
        "namespace \"mkt\" (domain \"marketing\")"
    )]
    fn out_of_scope_references_are_denied(
        #[case] annotations: &[(&str, String)],
        #[case] namespace: NamespaceScope,
        #[case] reference: &str,
        #[case] required: RequiredScope,
        #[case] namespace_described: &str,
    ) {
        let annotations: Vec<(&str, &str)> = annotations
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let original = pod_json(&annotations, json!([{"name": "main"}]), Value::Null);
        let error = denial(&original, &namespace, &V2_ON);
        let InjectionError::OutOfScope(scope_error) = &error else {
            panic!("expected OutOfScope, got {error:?}");
        };
        assert_eq!(scope_error.reference, reference);
        assert_eq!(scope_error.required, required);
        assert_eq!(scope_error.namespace, namespace_described);
        let message = error.to_string();
        for part in [reference, &required.to_string(), namespace_described] {
            assert!(message.contains(part), "{part:?} not in {message}");
        }
    }

    #[rstest]
    #[case::admin_store_from_admin("admin", ns("ops", None, true))]
    #[case::global_from_admin("global", ns("ops", None, true))]
    #[case::domain_from_admin_of_that_domain("finance", ns("ops", Some("finance"), true))]
    #[case::global_from_domain("global", ns("mkt", Some("marketing"), false))]
    fn in_scope_references_are_planned(#[case] id: &str, #[case] namespace: NamespaceScope) {
        let annotation = env_secrets(&[("A", id, "a")]);
        let original = pod_json(
            &[(ENV, &annotation)],
            json!([{"name": "main"}]),
            Value::Null,
        );
        let plan = plan(&pod(&original), &namespace, &V2_ON, &vaults()).unwrap();
        assert_eq!(plan.injected.len(), 1);
        assert_eq!(plan.injected[0].secret.source.id(), id);
    }

    #[test]
    fn legacy_placeholder_from_a_namespace_without_scope_is_denied() {
        let original = pod_json(
            &[],
            json!([{"name": "main", "env": [{"name": "URL", "value": "x${secrets.pw}"}]}]),
            Value::Null,
        );
        let error = denial(&original, &ns("default", None, false), &V2_ON);
        assert_eq!(
            error.to_string(),
            "legacy placeholder ${secrets.pw} in container \"main\" env \"URL\" is readable only from \
             a domain namespace or an admin namespace, and this pod is in namespace \"default\" \
             (no domain label and not an admin namespace)"
        );
        assert!(matches!(error, InjectionError::OutOfScope(_)));
        // ... but an admin namespace may use it
        assert!(plan(&pod(&original), &ns("ops", None, true), &V2_ON, &vaults()).is_ok());
    }

    #[rstest]
    #[case::env_secrets(ENV, env_secrets(&[("A", "finance", "a")]))]
    #[case::spark_conf(SPARK_CONF_SECRETS_ANNOTATION, env_secrets(&[("spark.a", "finance", "a")]))]
    #[case::containers_only(CONTAINERS_ANNOTATION, "main".to_owned())]
    fn v2_annotations_are_denied_when_v2_is_disabled(
        #[case] annotation: &str,
        #[case] value: String,
    ) {
        let original = pod_json(
            &[(annotation, &value)],
            json!([{"name": "main", "env": [{"name": "L", "value": "${secrets.l}"}]}]),
            Value::Null,
        );
        assert_eq!(
            denial(&original, &finance(), &V2_OFF),
            InjectionError::SecretsV2Disabled
        );
    }

    #[test]
    fn legacy_still_works_when_v2_is_disabled() {
        let original = pod_json(
            &[("other.io/x", "y"), (INJECTED_ANNOTATION, "sha256:old")],
            json!([{"name": "main", "env": [{"name": "L", "value": "${secrets.l}"}]}]),
            Value::Null,
        );
        let plan = plan(&pod(&original), &finance(), &V2_OFF, &vaults()).unwrap();
        assert_eq!(plan.mark_injected, None);
        let rendered =
            render_with(&plan, &values(&[(global("l"), "vl")]), ValueMode::Live).unwrap();
        let patched = apply(&original, &rendered.patch);
        assert_eq!(
            patched["spec"]["containers"][0]["env"],
            json!([{"name": "L", "value": "vl"}])
        );
        assert_eq!(patched["metadata"], original["metadata"]);
    }

    /// A Vault reference is authorized against its configuration's domain, like a domain store;
    /// an unknown configuration, or configurations not loaded yet, deny without a fetch.
    #[rstest]
    #[case::own_domain("vault-finance", Some("finance"), None)]
    #[case::other_domain(
        "vault-finance",
        Some("marketing"),
        Some("is readable only from a namespace of domain \"finance\"")
    )]
    #[case::admin_namespace_is_not_the_domain(
        "vault-finance",
        None,
        Some("is readable only from a namespace of domain \"finance\"")
    )]
    #[case::unknown_config(
        "vault-ghost",
        Some("finance"),
        Some("names Vault configuration \"vault-ghost\", which does not exist")
    )]
    fn vault_sources_are_scoped_by_their_configuration_domain(
        #[case] config: &str,
        #[case] domain: Option<&str>,
        #[case] denied_with: Option<&str>,
    ) {
        let annotation = json!([
            {"key": "TOKEN", "secretObject": {"key": "team/db#token", "source": {"type": "VAULT", "id": config}}},
        ])
        .to_string();
        let original = pod_json(
            &[(ENV, &annotation)],
            json!([{"name": "main"}]),
            Value::Null,
        );
        let namespace = ns("ns", domain, domain.is_none());
        match (
            plan(&pod(&original), &namespace, &V2_ON, &vaults()),
            denied_with,
        ) {
            (Ok(plan), None) => assert_eq!(
                plan.needed_secrets(),
                vec![SecretRef {
                    source: Source::Vault(config.into()),
                    key: "team/db#token".into()
                }]
            ),
            (Err(error), Some(fragment)) => {
                assert!(error.to_string().contains(fragment), "{error}")
            }
            (outcome, expected) => panic!("{outcome:?}, expected denial {expected:?}"),
        }
    }

    #[test]
    fn vault_references_wait_for_the_configurations_to_load() {
        struct NotLoaded;
        impl VaultOwners for NotLoaded {
            fn owner(&self, _: &str) -> VaultOwner {
                VaultOwner::NotLoaded
            }
        }
        let annotation = json!([
            {"key": "TOKEN", "secretObject": {"key": "token", "source": {"type": "VAULT", "id": "vault-finance"}}},
        ])
        .to_string();
        let original = pod_json(
            &[(ENV, &annotation)],
            json!([{"name": "main"}]),
            Value::Null,
        );
        assert_eq!(
            plan(&pod(&original), &finance(), &V2_ON, &NotLoaded).unwrap_err(),
            InjectionError::VaultConfigsNotLoaded {
                reference:
                    "secrets.iomete.com/env-secrets entry \"TOKEN\" (VAULT/vault-finance/token)"
                        .into()
            }
        );
    }

    #[test]
    fn invalid_spark_properties_are_reference_errors() {
        let env_names = env_secrets(&[("A", "finance", "a")]);
        let invalid = pod_json(
            &[(SPARK_CONF_SECRETS_ANNOTATION, &env_names)],
            json!([{"name": "main"}]),
            Value::Null,
        );
        assert!(matches!(
            denial(&invalid, &finance(), &V2_ON),
            InjectionError::Reference(ReferenceError::InvalidEntry { .. })
        ));
    }

    #[test]
    fn unknown_container_lists_the_available_ones() {
        let annotation = env_secrets(&[("A", "finance", "a")]);
        let original = pod_json(
            &[(ENV, &annotation), (CONTAINERS_ANNOTATION, "main,worker")],
            json!([{"name": "main"}, {"name": "sidecar"}]),
            json!([{"name": "prepare"}]),
        );
        let error = denial(&original, &finance(), &V2_ON);
        assert_eq!(
            error,
            InjectionError::UnknownContainer {
                name: "worker".into(),
                available: "main, sidecar, prepare".into()
            }
        );
        assert!(error.to_string().contains(CONTAINERS_ANNOTATION), "{error}");
    }

    #[rstest]
    #[case::invalid_key("${secrets.a b}", PlaceholderError::InvalidKey { offset: 0, problem: String::new() })]
    #[case::unclosed("ok ${secrets.a", PlaceholderError::Unclosed { offset: 3 })]
    fn malformed_placeholders_name_container_and_env(
        #[case] value: &str,
        #[case] expected: PlaceholderError,
    ) {
        let original = pod_json(
            &[],
            json!([{"name": "main", "env": [{"name": "FINE", "value": "${secrets.fine}"}]}]),
            json!([{"name": "prepare", "env": [{"name": "X", "value": value}]}]),
        );
        let error = denial(&original, &finance(), &V2_ON);
        let InjectionError::Placeholder {
            container,
            env,
            source,
        } = &error
        else {
            panic!("expected Placeholder, got {error:?}");
        };
        assert_eq!((container.as_str(), env.as_str()), ("prepare", "X"));
        match (source, &expected) {
            (
                PlaceholderError::InvalidKey { offset, .. },
                PlaceholderError::InvalidKey { offset: want, .. },
            ) => assert_eq!(offset, want),
            _ => assert_eq!(source, &expected),
        }
        assert!(
            error
                .to_string()
                .starts_with("container \"prepare\" env \"X\": placeholder at byte"),
            "{error}"
        );
    }

    #[test]
    fn invalid_annotations_are_reference_errors() {
        let original = pod_json(
            &[("secrets.iomete.com/env-secret", "[]")],
            json!([{"name": "main"}]),
            Value::Null,
        );
        assert_eq!(
            denial(&original, &finance(), &V2_OFF),
            InjectionError::Reference(ReferenceError::UnknownAnnotation(
                "secrets.iomete.com/env-secret".into()
            ))
        );
    }

    // ---- mentions_secrets and render ----

    #[rstest]
    #[case::nothing(pod_json(&[], json!([{"name": "main"}]), Value::Null), false)]
    #[case::unrelated(
        pod_json(
            &[("app.io/x", "${secrets.a}"), ("secrets.iomete.com.evil/env-secrets", "[]")],
            json!([{"name": "main", "env": [{"name": "A", "value": "$(HOME) ${HOME} $(secrets.a) {secrets.a}"}, {"name": "B"}]}]),
            json!([{"name": "prepare", "env": [{"name": "A", "value": "secrets.a"}]}]),
        ),
        false
    )]
    #[case::env_secrets(pod_json(&[(ENV, "[]")], json!([{"name": "main"}]), Value::Null), true)]
    #[case::any_key_under_the_prefix(pod_json(&[("secrets.iomete.com/typo", "x")], json!([{"name": "main"}]), Value::Null), true)]
    #[case::injected_only(pod_json(&[(INJECTED_ANNOTATION, "sha256:x")], json!([{"name": "main"}]), Value::Null), true)]
    #[case::placeholder_in_container(
        pod_json(&[], json!([{"name": "a"}, {"name": "main", "env": [{"name": "A", "value": "x${secrets.k}"}]}]), Value::Null),
        true
    )]
    #[case::placeholder_in_init_container(
        pod_json(&[], json!([{"name": "main"}]), json!([{"name": "prepare", "env": [{"name": "A", "value": "${secrets.k}"}]}])),
        true
    )]
    #[case::malformed_placeholder(
        pod_json(&[], json!([{"name": "main", "env": [{"name": "A", "value": "${secrets."}]}]), Value::Null),
        true
    )]
    fn mentions_secrets_cases(#[case] original: Value, #[case] expected: bool) {
        assert_eq!(mentions_secrets(&pod(&original)), expected);
    }

    #[test]
    fn render_without_a_needed_value_is_a_missing_value() {
        let original = mixed_pod();
        let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
        let only_legacy = values(&[(global("db_user"), "u")]);
        let error = render_with(&plan, &only_legacy, ValueMode::Live).unwrap_err();
        assert_eq!(
            error,
            InjectionError::Internal(MissingValue(domain("finance", "db_password")))
        );
        assert_eq!(
            error.to_string(),
            "internal error, please report it: no value was fetched for KUBERNETES/finance/db_password"
        );
        let only_v2 = values(&[(domain("finance", "db_password"), "p")]);
        let error = render_with(&plan, &only_v2, ValueMode::DryRun).unwrap_err();
        assert_eq!(
            error,
            InjectionError::Internal(MissingValue(global("db_user")))
        );
    }
}
