//! The cluster tier: the webhook binary behind a real kube-apiserver (with etcd), both built
//! from their Go modules by `scripts/ensure-control-plane.sh`, driven with the real kubectl
//! built beside them and with kube's client.
//!
//! Everything that decides whether, how and with what the webhook is called happens in the
//! real API server here: the shipped matchConditions and selectors, TLS with the caBundle from
//! `certs`, the JSON patch applied to the stored pod, reinvocation, dry run, warnings, audit
//! annotations, and the shipped RBAC (the webhook runs as the shipped ServiceAccount, with a
//! token from the TokenRequest API).
//!
//! No kubelet, scheduler or controller-manager runs: pods are stored and stay `Pending`, which
//! is all admission is about. Tests share one control plane and webhook per test binary
//! ([`env::Cluster::shared`]) and keep to namespaces, domains and stores of their own; tests
//! that stop the webhook or restart a server start their own ([`env::Cluster::dedicated`]).
//!
//! When the binaries are missing, each test says how to build them and skips, except with
//! `CI=true`, where it fails.

use std::process::Output;
use std::time::{Duration, Instant};

use iomete_secrets_webhook::decision::expansion::kubelet_expand;
use serde_json::{Value, json};

#[path = "../../tests/support/control_plane/mod.rs"]
mod control_plane;
#[path = "../../tests/support/mod.rs"]
mod support;

mod admission;
mod broker;
mod broker_flow;
mod changes;
mod env;
mod faults;
mod helm;
mod proxy;
mod reinvocation;
mod selection;
mod spark;
mod tools;

use env::Cluster;
pub use support::with_env_secrets;

/// A fixture pod renamed `name` in `namespace`.
pub fn fixture_pod(path: &str, namespace: &str, name: &str) -> Value {
    let mut pod = support::fixture(path);
    pod["metadata"]["name"] = json!(name);
    pod["metadata"]["namespace"] = json!(namespace);
    pod
}

/// The value container `container` sees for `name`, after the kubelet's `$(VAR)` expansion.
pub fn container_env(pod: &Value, container: &str, name: &str) -> Option<String> {
    let containers = pod["spec"]["containers"].as_array()?;
    let container = containers.iter().find(|c| c["name"] == container)?;
    container["env"]
        .as_array()?
        .iter()
        .find(|var| var["name"] == name)
        .and_then(|var| var["value"].as_str())
        .map(|value| kubelet_expand(value, |_| None))
}

/// The `secrets.iomete.com/injected` digest the webhook must have written for `pod`'s
/// references.
pub fn expected_digest(pod: &Value) -> String {
    let annotations: std::collections::BTreeMap<String, String> =
        serde_json::from_value(pod["metadata"]["annotations"].clone()).unwrap();
    iomete_secrets_webhook::decision::reference::parse_annotations(&annotations)
        .unwrap()
        .digest()
}

/// `kubectl apply -f -` of `object` with extra `args`; the output whatever the outcome.
pub fn kubectl_apply(cluster: &Cluster, object: &Value, args: &[&str]) -> Output {
    let mut all = vec!["apply", "-f", "-"];
    all.extend_from_slice(args);
    cluster
        .plane
        .kubectl_output(&all, Some(&object.to_string()))
        .unwrap()
}

/// Applies `pod` with kubectl, retrying while the webhook answers its retriable 503 (its watch
/// has not delivered a namespace or store created a moment ago); the last output.
pub fn apply_pod(cluster: &Cluster, pod: &Value, args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let output = kubectl_apply(cluster, pod, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() || !is_retriable(&stderr) || Instant::now() > deadline {
            return output;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// True for the webhook's 503 answers (kubectl shows `ServiceUnavailable`).
pub fn is_retriable(stderr: &str) -> bool {
    stderr.contains("ServiceUnavailable")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[track_caller]
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "kubectl failed: {}{}",
        stdout(output),
        stderr(output)
    );
}

/// Fails when `text` contains any of `canaries`.
#[track_caller]
pub fn assert_no_canary(what: &str, text: &str, canaries: &[&str]) {
    for canary in canaries {
        assert!(
            !text.contains(canary),
            "{what} leaks a secret value:\n{text}"
        );
    }
}

/// The audit events (stage ResponseComplete) of the creation of pod `namespace/name`, waiting
/// a moment for the API server to write them.
pub fn audit_events_for(cluster: &Cluster, namespace: &str, name: &str) -> Vec<Value> {
    // The log backend writes an event when the request completes; allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events: Vec<Value> = cluster
            .plane
            .audit_events()
            .into_iter()
            .filter(|event| {
                event["objectRef"]["resource"] == "pods"
                    && event["objectRef"]["namespace"] == namespace
                    && event["objectRef"]["name"] == name
                    && event["verb"] == "create"
                    && event["stage"] == "ResponseComplete"
            })
            .collect();
        if !events.is_empty() || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `(annotation key, mutated)` of every call of our webhook an audit event records
/// (`mutation.webhook.admission.k8s.io/round_R_index_I`).
pub fn our_mutations(event: &Value) -> Vec<(String, bool)> {
    let Some(annotations) = event["annotations"].as_object() else {
        return Vec::new();
    };
    annotations
        .iter()
        .filter(|(key, _)| key.starts_with("mutation.webhook.admission.k8s.io/"))
        .filter_map(|(key, value)| {
            let call: Value = serde_json::from_str(value.as_str()?).ok()?;
            (call["webhook"] == "secrets.iomete.com")
                .then(|| (key.clone(), call["mutated"] == true))
        })
        .collect()
}
