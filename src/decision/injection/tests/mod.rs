//! Table and example tests of the injection decision, one file per mechanism; the helpers
//! below build pods, namespaces and values for all of them.

use std::collections::HashMap;

use json_patch::Patch;
use rstest::rstest;
use secrecy::SecretString;
use serde_json::{Value, json};

use super::*;
use crate::decision::expansion::kubelet_expand;
use crate::decision::legacy::PlaceholderError;
use crate::decision::pod::Pod;
use crate::decision::reference::{
    CONTAINERS_ANNOTATION, ENV_SECRETS_ANNOTATION, INJECTED_ANNOTATION, KubernetesStore,
    ReferenceError, SPARK_CONF_SECRETS_ANNOTATION, SecretRef, Source, parse_annotations,
};
use crate::decision::scope::{NamespaceScope, RequiredScope};
use crate::decision::spark::{SPARK_SUBMIT_OPTS, SparkConfError, Uncarriable};

/// Round two of hardening: the caps on work and answer size, and checks a reinvocation
/// digest must not skip.
mod bounds;

const ENV: &str = ENV_SECRETS_ANNOTATION;
/// One Vault configuration, owned by domain finance.
fn vaults() -> BTreeMap<String, String> {
    BTreeMap::from([("vault-finance".to_owned(), "finance".to_owned())])
}

const V2_ON: Settings = Settings::env_delivery(true);
const V2_OFF: Settings = Settings::env_delivery(false);
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

fn denial(original: &Value, namespace: &NamespaceScope, settings: &Settings) -> InjectionError {
    plan(&pod(original), namespace, settings, &vaults()).expect_err("a denial")
}

mod broker;
mod denials;
mod env_secrets;
mod placeholders;
mod reinvocation;
mod render;
mod spark_conf;
mod versions;
