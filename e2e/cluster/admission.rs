//! Pods created through the real API server, with kubectl and with kube's client: what is
//! stored, what kubectl shows (denials, warnings, server-side dry run) and what the API
//! server's audit log records.

use std::time::{Duration, Instant};

use iomete_secrets_webhook::decision::injection::DRY_RUN_MARKER;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::env::{CANARY_GLOBAL, Cluster};
use crate::{
    apply_pod, assert_no_canary, assert_success, audit_events_for, container_env, expected_digest,
    fixture_pod, our_mutations, stderr, stdout, with_env_secrets,
};

/// Every character the kubelet or a shell might treat specially.
const CANARY_SPARK: &str = "cluster-canary-spark-$(HOME)$$'\"` \\=end";
const CANARY_NOTEBOOK: &str = "cluster-canary-notebook-$(PATH)-9e1";
const CANARY_DRY: &str = "cluster-canary-dry-run-44af";
const INJECTED: &str = "secrets.iomete.com/injected";

#[test]
fn spark_pods_applied_with_kubectl_are_stored_patched_byte_exact_and_audited() {
    let Some(cluster) = Cluster::shared("spark_pods_applied_with_kubectl") else {
        return;
    };
    let (namespace, domain) = ("spark-finance-b1", "finb1");
    cluster.namespace(namespace, Some(domain));
    cluster.store(domain, &[("s3-secret-key", CANARY_SPARK)]);

    for (fixture, name, container) in [
        (
            "spark/spark35-driver-pod.json",
            "spark-pi-driver",
            "spark-kubernetes-driver",
        ),
        (
            "spark/spark35-executor-pod.json",
            "spark-pi-exec-1",
            "spark-kubernetes-executor",
        ),
    ] {
        let pod = with_env_secrets(
            fixture_pod(fixture, namespace, name),
            &[("AWS_SECRET_ACCESS_KEY", "s3-secret-key", domain)],
        );
        let output = apply_pod(cluster, &pod, &[]);
        assert_success(&output);
        assert_no_canary(
            "kubectl's output",
            &(stdout(&output) + &stderr(&output)),
            &[CANARY_SPARK],
        );

        let stored = cluster.stored_pod(namespace, name);
        assert_eq!(
            container_env(&stored, container, "AWS_SECRET_ACCESS_KEY").as_deref(),
            Some(CANARY_SPARK),
            "{name}: the container sees the store's bytes"
        );
        let raw = stored.to_string();
        assert!(
            !raw.contains(CANARY_SPARK),
            "{name}: stored unescaped, the kubelet would expand it"
        );
        assert_eq!(
            stored["metadata"]["annotations"][INJECTED].as_str(),
            Some(expected_digest(&pod).as_str()),
            "{name}"
        );
        // The fixture's own variables are untouched.
        assert_eq!(
            container_env(&stored, container, "SPARK_USER").as_deref(),
            container_env(&pod, container, "SPARK_USER").as_deref()
        );

        // The API server recorded our audit annotation (references, never values) and that
        // our webhook mutated the pod.
        let events = audit_events_for(cluster, namespace, name);
        assert_eq!(events.len(), 1, "{name}: {events:?}");
        let annotations = &events[0]["annotations"];
        let references = annotations["secrets.iomete.com/injected-references"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no audit annotation in {annotations}"));
        assert!(
            references.contains("AWS_SECRET_ACCESS_KEY")
                && references.contains("s3-secret-key")
                && references.contains(domain),
            "{references}"
        );
        assert!(
            our_mutations(&events[0])
                .iter()
                .any(|(round, mutated)| round.contains("round_0_") && *mutated),
            "{name}: {annotations}"
        );
    }
    let audit = std::fs::read_to_string(cluster.plane.audit_log_path()).unwrap();
    assert_no_canary(
        "the API server's audit log",
        &audit,
        &[CANARY_SPARK, CANARY_GLOBAL],
    );
    assert_no_canary(
        "the webhook's log",
        &cluster.webhook_log(),
        &[CANARY_SPARK, CANARY_GLOBAL],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notebook_created_with_the_kube_client_is_stored_patched() {
    let Some(cluster) = Cluster::shared("a_notebook_created_with_the_kube_client") else {
        return;
    };
    let (namespace, domain) = ("notebooks-b2", "datab2");
    cluster.namespace(namespace, Some(domain));
    cluster.store(domain, &[("warehouse-password", CANARY_NOTEBOOK)]);
    let mut pod = with_env_secrets(
        fixture_pod(
            "real/notebook-pod-kubespawner-make_pod-with-init-containers.json",
            namespace,
            "jupyter-alice",
        ),
        &[("WAREHOUSE_PASSWORD", "warehouse-password", domain)],
    );
    pod["metadata"]["annotations"]["secrets.iomete.com/containers"] = json!("notebook");
    let pod: Pod = serde_json::from_value(pod).unwrap();

    let pods: Api<Pod> = Api::namespaced(cluster.plane.client().await, namespace);
    let deadline = Instant::now() + Duration::from_secs(20);
    let created = loop {
        match pods.create(&PostParams::default(), &pod).await {
            Ok(created) => break created,
            // The webhook's watch has not delivered the new namespace or store yet.
            Err(kube::Error::Api(status)) if status.code == 503 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("create failed: {error}"),
        }
    };
    let fetched = pods.get("jupyter-alice").await.unwrap();
    for pod in [&created, &fetched] {
        let pod = serde_json::to_value(pod).unwrap();
        assert_eq!(
            container_env(&pod, "notebook", "WAREHOUSE_PASSWORD").as_deref(),
            Some(CANARY_NOTEBOOK)
        );
        // Init containers only when named.
        let init = pod["spec"]["initContainers"].to_string();
        assert!(!init.contains("WAREHOUSE_PASSWORD"), "{init}");
    }
}

#[test]
fn denials_reach_kubectl_with_our_code_and_message_and_nothing_is_stored() {
    let Some(cluster) = Cluster::shared("denials_reach_kubectl") else {
        return;
    };
    cluster.namespace("finance-b3", Some("finb3"));
    cluster.namespace("marketing-b3", Some("mktb3"));
    cluster.store("finb3", &[("s3-secret-key", "cluster-canary-b3-1")]);
    // Wait until the webhook serves the finance namespace, so the denials below are decisions,
    // not "not synced yet".
    let ok = with_env_secrets(
        fixture_pod("spark/spark35-driver-pod.json", "finance-b3", "allowed"),
        &[("AWS_SECRET_ACCESS_KEY", "s3-secret-key", "finb3")],
    );
    assert_success(&apply_pod(cluster, &ok, &[]));

    let cases = [
        // Out of scope: 403, naming the reference, the scope it needs and the namespace.
        (
            "marketing-b3",
            "foreign",
            ("AWS_SECRET_ACCESS_KEY", "s3-secret-key", "finb3"),
            "Error from server (Forbidden)",
            vec!["finb3", "marketing-b3"],
        ),
        // A key the store does not have: 404, naming store and key.
        (
            "finance-b3",
            "missing-key",
            ("AWS_SECRET_ACCESS_KEY", "no-such-key", "finb3"),
            "Error from server (NotFound)",
            vec!["no-such-key", "iomete-secret-store-finb3"],
        ),
        // Malformed: 400, naming the annotation.
        (
            "finance-b3",
            "malformed",
            ("AWS_SECRET_ACCESS_KEY", "s3-secret-key", "Not_A_Label"),
            "Error from server (BadRequest)",
            vec!["secrets.iomete.com/env-secrets", "Not_A_Label"],
        ),
    ];
    for (namespace, name, reference, code, mentions) in cases {
        let pod = with_env_secrets(
            fixture_pod("spark/spark35-driver-pod.json", namespace, name),
            &[reference],
        );
        let output = apply_pod(cluster, &pod, &[]);
        let message = stderr(&output);
        assert!(!output.status.success(), "{name} was admitted");
        assert!(message.contains(code), "{name}: {message}");
        assert!(
            message.contains("admission webhook \"secrets.iomete.com\" denied the request"),
            "{name}: {message}"
        );
        for mention in mentions {
            assert!(
                message.contains(mention),
                "{name}: {mention:?} not in {message}"
            );
        }
        assert_no_canary("a denial", &message, &["cluster-canary-b3-1"]);
        let get = cluster
            .plane
            .kubectl_output(&["get", "pod", name, "-n", namespace], None)
            .unwrap();
        assert!(
            stderr(&get).contains("NotFound"),
            "{name} was stored: {}",
            stdout(&get)
        );
    }
}

#[test]
fn kubectl_prints_our_warnings_for_legacy_placeholders() {
    let Some(cluster) = Cluster::shared("kubectl_prints_our_warnings") else {
        return;
    };
    cluster.namespace("legacy-b4", Some("legacyb4"));
    let mut pod = fixture_pod(
        "real/notebook-pod-kubespawner-make_pod-with-env-secretkeyref.json",
        "legacy-b4",
        "jupyter-bob",
    );
    pod["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "SMTP", "value": "smtp://mailer:${secrets.smtp_password}@mail:25"}));
    let output = apply_pod(cluster, &pod, &[]);
    assert_success(&output);
    let printed = stderr(&output);
    assert!(
        printed.contains(
            "Warning: container \"notebook\" env \"SMTP\": ${secrets.smtp_password} is deprecated; \
             use the secrets.iomete.com/env-secrets annotation"
        ),
        "{printed}"
    );
    assert_no_canary(
        "kubectl's output",
        &(printed + &stdout(&output)),
        &[CANARY_GLOBAL],
    );
    let stored = cluster.stored_pod("legacy-b4", "jupyter-bob");
    assert_eq!(
        container_env(&stored, "notebook", "SMTP").unwrap(),
        format!("smtp://mailer:{CANARY_GLOBAL}@mail:25")
    );
    // The Secret references of the fixture are left as they were.
    assert_eq!(
        container_env(&stored, "notebook", "NAME_1").as_deref(),
        Some("TEST_VALUE")
    );
}

#[test]
fn server_side_dry_run_answers_redacted_values_and_stores_nothing() {
    let Some(cluster) = Cluster::shared("server_side_dry_run") else {
        return;
    };
    cluster.namespace("dry-run-b5", Some("dryb5"));
    cluster.store("dryb5", &[("s3-secret-key", CANARY_DRY)]);
    let pod = with_env_secrets(
        fixture_pod("spark/spark35-driver-pod.json", "dry-run-b5", "dry-driver"),
        &[("AWS_SECRET_ACCESS_KEY", "s3-secret-key", "dryb5")],
    );
    let output = apply_pod(cluster, &pod, &["--dry-run=server", "-o", "json"]);
    assert_success(&output);
    let printed = stdout(&output);
    assert_no_canary(
        "a dry-run answer",
        &(printed.clone() + &stderr(&output)),
        &[CANARY_DRY],
    );
    let answered: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(
        container_env(
            &answered,
            "spark-kubernetes-driver",
            "AWS_SECRET_ACCESS_KEY"
        )
        .as_deref(),
        Some(DRY_RUN_MARKER)
    );
    let get = cluster
        .plane
        .kubectl_output(&["get", "pod", "dry-driver", "-n", "dry-run-b5"], None)
        .unwrap();
    assert!(
        stderr(&get).contains("NotFound"),
        "a dry run stored the pod: {}",
        stdout(&get)
    );

    // The same pod for real gets the value.
    assert_success(&apply_pod(cluster, &pod, &[]));
    let stored = cluster.stored_pod("dry-run-b5", "dry-driver");
    assert_eq!(
        container_env(&stored, "spark-kubernetes-driver", "AWS_SECRET_ACCESS_KEY").as_deref(),
        Some(CANARY_DRY)
    );
}
