//! The parts of a Pod the decision reads, and nothing else.
//!
//! The API server sends the whole pod; the webhook needs its name, labels and annotations, its
//! volumes' names and, per container, the name, the env entries (name, literal value, whether
//! `valueFrom` is set) and what broker mode wraps (image, command, args, mounts). Decoding only those, and skipping the rest unread into memory, is most of what keeps an
//! admission close to the cost of reading its body once (docs/benchmarks.md). The shapes that
//! are read are the Kubernetes API's: a field of the wrong type still makes the pod unreadable.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

/// A Pod, as far as the decision reads it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Pod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<PodSpec>,
}

/// The pod's name, labels and annotations.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub generate_name: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The pod's containers, init containers and volume names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub containers: Vec<Container>,
    #[serde(default)]
    pub init_containers: Option<Vec<Container>>,
    #[serde(default)]
    pub volumes: Option<Vec<Named>>,
}

/// Anything the decision knows only by name (a volume).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Named {
    pub name: String,
}

/// A container's name and env, and what broker mode needs to wrap its entrypoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    #[serde(default)]
    pub env: Option<Vec<EnvVar>>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub args: Option<Vec<String>>,
    #[serde(default)]
    pub volume_mounts: Option<Vec<VolumeMount>>,
    #[serde(default)]
    pub termination_message_path: Option<String>,
}

/// Where a container mounts a volume.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
}

/// One env entry: a literal `value`, or a `valueFrom` source (never read, only noticed).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub value_from: Option<IgnoredAny>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_the_decision_needs_and_skips_the_rest() {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "labels": {"spark-role": "driver"}, "annotations": {"a": "b"}, "managedFields": [{}]},
            "spec": {
                "containers": [{"name": "main", "image": "x", "env": [
                    {"name": "A", "value": "1"},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                ], "resources": {"limits": {"cpu": "1"}}}],
                "initContainers": [{"name": "init"}],
                "volumes": [{"name": "v", "emptyDir": {}}],
            },
            "status": {"phase": "Pending"},
        }))
        .unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("p"));
        let spec = pod.spec.unwrap();
        let env = spec.containers[0].env.as_ref().unwrap();
        assert_eq!(env[0].value.as_deref(), Some("1"));
        assert!(env[0].value_from.is_none());
        assert!(env[1].value_from.is_some());
        assert_eq!(spec.init_containers.unwrap()[0].name, "init");
    }

    #[test]
    fn the_shapes_it_reads_are_checked() {
        for bad in [
            json!({"spec": {"containers": [{"env": []}]}}),
            json!({"spec": {"containers": [{"name": "c", "env": [{"value": "v"}]}]}}),
            json!({"spec": {"containers": "c"}}),
            json!({"metadata": {"annotations": {"a": 1}}}),
        ] {
            assert!(serde_json::from_value::<Pod>(bad.clone()).is_err(), "{bad}");
        }
    }
}
