//! The shipped matchConditions, namespaceSelector and objectSelector, evaluated by the real API
//! server with the webhook stopped (failurePolicy Fail): only pods that reference secrets
//! depend on the webhook.

use serde_json::{Value, json};

use crate::env::{Cluster, DedicatedSlot, STORE_NAMESPACE};
use crate::{apply_pod, assert_success, container_env, fixture_pod, stderr, with_env_secrets};

/// The pod template of the shipped Deployment, as a pod in `namespace` with our references.
fn webhook_own_pod(cluster: &Cluster, namespace: &str) -> Value {
    let deployment = cluster
        .rendered
        .iter()
        .find(|object| object["kind"] == "Deployment")
        .expect("deploy/base ships a Deployment");
    let template = &deployment["spec"]["template"];
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": template["metadata"].clone(),
        "spec": template["spec"].clone(),
    });
    pod["metadata"]["name"] = json!("iomete-secrets-webhook-abc12");
    pod["metadata"]["namespace"] = json!(namespace);
    pod["metadata"]["annotations"] = json!({"secrets.iomete.com/containers": "webhook"});
    pod
}

#[test]
fn with_the_webhook_down_only_pods_that_reference_secrets_are_refused() {
    let _one_at_a_time = DedicatedSlot::take();
    let Some(cluster) = Cluster::dedicated("with_the_webhook_down") else {
        return;
    };
    cluster.namespace("domain-c1", Some("finc1"));
    cluster.store("finc1", &[("s3-secret-key", "cluster-canary-c1")]);
    let referencing = |namespace: &str, name: &str| {
        with_env_secrets(
            fixture_pod("spark/spark35-driver-pod.json", namespace, name),
            &[("AWS_SECRET_ACCESS_KEY", "s3-secret-key", "finc1")],
        )
    };
    // Up, the webhook serves the domain namespace.
    assert_success(&apply_pod(
        &cluster,
        &referencing("domain-c1", "before"),
        &[],
    ));

    cluster.stop_webhook();

    let mut plain = fixture_pod("spark/spark35-driver-pod.json", "domain-c1", "plain");
    plain["metadata"]["annotations"] = json!({"unrelated.example.com/note": "secrets.iomete.com"});
    let mut unannotated = fixture_pod(
        "spark/spark35-executor-pod.json",
        "domain-c1",
        "unannotated",
    );
    unannotated["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    // An env var with valueFrom has no literal value for the CEL expression to read.
    unannotated["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}));
    let admitted = [
        ("a pod without references", plain),
        (
            "a pod without annotations whose env has no placeholder",
            unannotated,
        ),
        (
            "a pod in kube-system",
            referencing("kube-system", "system-pod"),
        ),
        (
            "a pod in the webhook's namespace",
            referencing(STORE_NAMESPACE, "store-ns-pod"),
        ),
        (
            "the webhook's own pod",
            webhook_own_pod(&cluster, "domain-c1"),
        ),
    ];
    for (what, pod) in admitted {
        let output = apply_pod(&cluster, &pod, &[]);
        assert!(
            output.status.success(),
            "{what} was refused: {}",
            stderr(&output)
        );
        let name = pod["metadata"]["name"].as_str().unwrap();
        let namespace = pod["metadata"]["namespace"].as_str().unwrap();
        let stored = cluster.stored_pod(namespace, name);
        assert!(
            stored["metadata"]["annotations"]["secrets.iomete.com/injected"].is_null(),
            "{what} went through a webhook: {stored}"
        );
    }

    let mut legacy = fixture_pod(
        "real/notebook-pod-kubespawner-make_pod-with-init-containers.json",
        "domain-c1",
        "legacy-init",
    );
    legacy["spec"]["initContainers"][0]["env"] =
        json!([{"name": "SMTP", "value": "${secrets.smtp_password}"}]);
    // The kubelet's escape of the literal text matches too, as the shipped comment says.
    let mut escaped = fixture_pod("spark/spark35-executor-pod.json", "domain-c1", "escaped");
    escaped["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    escaped["spec"]["containers"][0]["env"][0]["value"] = json!("$${secrets.not-a-reference}");
    let refused = [
        ("a pod with references", referencing("domain-c1", "after")),
        ("a pod with an escaped placeholder", escaped),
        (
            "a pod with a legacy placeholder in an init container",
            legacy,
        ),
    ];
    for (what, pod) in refused {
        let output = apply_pod(&cluster, &pod, &[]);
        let message = stderr(&output);
        assert!(
            !output.status.success(),
            "{what} was admitted without the webhook"
        );
        assert!(
            message
                .contains("Internal error occurred: failed calling webhook \"secrets.iomete.com\""),
            "{what}: {message}"
        );
        assert!(message.contains("connection refused"), "{what}: {message}");
    }

    // Back up, without touching the registration: the refused pod is admitted and patched.
    cluster.start_webhook();
    assert_success(&apply_pod(
        &cluster,
        &referencing("domain-c1", "after"),
        &[],
    ));
    let stored = cluster.stored_pod("domain-c1", "after");
    assert_eq!(
        container_env(&stored, "spark-kubernetes-driver", "AWS_SECRET_ACCESS_KEY").as_deref(),
        Some("cluster-canary-c1")
    );
}
