//! The checks of a caller's pod, as read from the API server: it is the pod the token was
//! minted for (same uid), it is not being deleted, it has the container asked for, and that
//! container carries a reference list as a literal env value. Pure functions over a
//! `k8s_openapi` Pod, so every refusal is tested without a cluster.

use k8s_openapi::api::core::v1::{Container, Pod};

use super::{Caller, IdentityError};
use crate::decision::delivery::ENV_REFERENCES;

/// The reference list of `container` in `pod`, the pod `caller`'s token is bound to. The list
/// comes from the pod spec only: the request names a container and nothing else.
pub fn reference_list<'p>(
    pod: &'p Pod,
    caller: &Caller,
    container: &str,
) -> Result<&'p str, IdentityError> {
    let pod_name = || caller.pod.clone();
    // A pod deleted and created again under the same name has a new uid: the token's pod is
    // gone, whatever now carries its name.
    if pod.metadata.uid.as_deref() != Some(caller.pod_uid.as_str()) {
        return Err(IdentityError::PodReplaced { pod: pod_name() });
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Err(IdentityError::PodDeleting { pod: pod_name() });
    }
    let found = find_container(pod, container).ok_or_else(|| IdentityError::NoSuchContainer {
        pod: pod_name(),
        container: container.to_owned(),
    })?;
    let not_broker = || IdentityError::NotBrokerMode {
        pod: pod_name(),
        container: container.to_owned(),
    };
    let entry = found
        .env
        .iter()
        .flatten()
        .find(|var| var.name == ENV_REFERENCES)
        .ok_or_else(not_broker)?;
    // Only a literal value, which the admission wrote: a `valueFrom` would let the list come
    // from a ConfigMap, a Secret or a field the pod's owner changes after admission.
    if entry.value_from.is_some() {
        return Err(not_broker());
    }
    entry.value.as_deref().ok_or_else(not_broker)
}

fn find_container<'p>(pod: &'p Pod, name: &str) -> Option<&'p Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|container| container.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    const LIST: &str = r#"{"env-secrets":[]}"#;

    fn caller() -> Caller {
        Caller {
            namespace: "jobs".into(),
            service_account: "default".into(),
            pod: "driver".into(),
            pod_uid: "uid-1".into(),
        }
    }

    fn pod(patch: serde_json::Value) -> Pod {
        let mut pod = json!({
            "metadata": {"name": "driver", "namespace": "jobs", "uid": "uid-1"},
            "spec": {
                "containers": [
                    {"name": "main", "env": [{"name": ENV_REFERENCES, "value": LIST}]},
                    {"name": "sidecar", "env": [{"name": "OTHER", "value": "x"}]},
                    {"name": "from", "env": [{"name": ENV_REFERENCES, "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]},
                    {"name": "empty"},
                ],
                "initContainers": [
                    {"name": "setup", "env": [{"name": ENV_REFERENCES, "value": LIST}]},
                ],
            },
        });
        json_patch::merge(&mut pod, &patch);
        serde_json::from_value(pod).unwrap()
    }

    #[rstest]
    #[case::container(json!({}), "main", Ok(LIST))]
    #[case::init_container(json!({}), "setup", Ok(LIST))]
    #[case::uid_mismatch(json!({"metadata": {"uid": "uid-2"}}), "main", Err("PodReplaced"))]
    #[case::no_uid(json!({"metadata": {"uid": null}}), "main", Err("PodReplaced"))]
    #[case::deleting(json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}}), "main", Err("PodDeleting"))]
    #[case::missing_container(json!({}), "ghost", Err("NoSuchContainer"))]
    #[case::no_spec(json!({"spec": null}), "main", Err("NoSuchContainer"))]
    #[case::no_reference_list(json!({}), "sidecar", Err("NotBrokerMode"))]
    #[case::no_env(json!({}), "empty", Err("NotBrokerMode"))]
    #[case::value_from(json!({}), "from", Err("NotBrokerMode"))]
    fn checks_the_pod(
        #[case] patch: serde_json::Value,
        #[case] container: &str,
        #[case] expected: Result<&str, &str>,
    ) {
        let pod = pod(patch);
        let got = reference_list(&pod, &caller(), container);
        match (got, expected) {
            (Ok(list), Ok(expected)) => assert_eq!(list, expected),
            (Err(error), Err(variant)) => {
                assert!(format!("{error:?}").starts_with(variant), "{error:?}");
                let message = error.to_string();
                assert!(message.contains("driver"), "{message}");
            }
            (got, expected) => panic!("{got:?} != {expected:?}"),
        }
    }
}
