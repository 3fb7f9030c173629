//! Changes made with kubectl while the webhook runs reach the next pods through its watches:
//! a rotated store value, a relabelled namespace, a changed VaultConfig (with a real OpenBao
//! behind it), whose Ready condition the webhook writes through the real status subresource
//! with the shipped RBAC.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::env::{Cluster, STORE_NAMESPACE, apply};
use crate::support::openbao::OpenBao;
use crate::{apply_pod, assert_no_canary, container_env, fixture_pod, stderr, with_env_secrets};

const DRIVER: &str = "spark-kubernetes-driver";
const ENV: &str = "AWS_SECRET_ACCESS_KEY";

/// What creating a driver pod in `namespace` with `references` came to.
#[derive(Debug, PartialEq)]
enum Outcome {
    Admitted(Option<String>),
    Denied(String),
}

fn create_driver(cluster: &Cluster, namespace: &str, name: &str, annotation: Value) -> Outcome {
    let mut pod = fixture_pod("spark/spark35-driver-pod.json", namespace, name);
    pod["metadata"]["annotations"] = annotation;
    let output = apply_pod(cluster, &pod, &[]);
    if output.status.success() {
        Outcome::Admitted(container_env(
            &cluster.stored_pod(namespace, name),
            DRIVER,
            ENV,
        ))
    } else {
        Outcome::Denied(stderr(&output))
    }
}

fn kubernetes_ref(key: &str, id: &str) -> Value {
    with_env_secrets(json!({}), &[(ENV, key, id)])["metadata"]["annotations"].clone()
}

/// Creates pods (`prefix-0`, `prefix-1`, ...) until `done` says an outcome is the expected
/// one, checking every outcome on the way with `allowed`; panics after 30 s.
fn until(
    cluster: &Cluster,
    namespace: &str,
    prefix: &str,
    annotation: &Value,
    allowed: impl Fn(&Outcome) -> bool,
    done: impl Fn(&Outcome) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for attempt in 0.. {
        let outcome = create_driver(
            cluster,
            namespace,
            &format!("{prefix}-{attempt}"),
            annotation.clone(),
        );
        assert!(
            allowed(&outcome) || done(&outcome),
            "{prefix}: unexpected {outcome:?}"
        );
        if done(&outcome) {
            return;
        }
        assert!(Instant::now() < deadline, "{prefix}: still {outcome:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn store_rotation_and_namespace_relabel_reach_the_next_pods() {
    let Some(cluster) = Cluster::shared("store_rotation_and_namespace_relabel") else {
        return;
    };
    let (namespace, domain, other) = ("rotation-e1", "rote1", "othere1");
    let (old, new, others) = (
        "cluster-canary-e1-old",
        "cluster-canary-e1-new",
        "cluster-canary-e1-other",
    );
    cluster.namespace(namespace, Some(domain));
    cluster.store(domain, &[("s3-secret-key", old)]);
    cluster.store(other, &[("s3-secret-key", others)]);
    let ours = kubernetes_ref("s3-secret-key", domain);
    assert_eq!(
        create_driver(cluster, namespace, "first", ours.clone()),
        Outcome::Admitted(Some(old.into()))
    );

    // Rotation with kubectl: the old value until the watch delivers, then the new one.
    cluster.store(domain, &[("s3-secret-key", new)]);
    until(
        cluster,
        namespace,
        "rotated",
        &ours,
        |outcome| *outcome == Outcome::Admitted(Some(old.into())),
        |outcome| *outcome == Outcome::Admitted(Some(new.into())),
    );

    // Relabel: the namespace now belongs to the other domain; its pods lose the first store
    // (403) and reach the other one.
    cluster.plane.kubectl_ok(
        &[
            "label",
            "namespace",
            namespace,
            &format!("iomete.com/domain={other}"),
            "--overwrite",
        ],
        None,
    );
    until(
        cluster,
        namespace,
        "relabelled",
        &ours,
        |outcome| *outcome == Outcome::Admitted(Some(new.into())),
        |outcome| matches!(outcome, Outcome::Denied(message) if message.contains("(Forbidden)")),
    );
    assert_eq!(
        create_driver(
            cluster,
            namespace,
            "other-domain",
            kubernetes_ref("s3-secret-key", other)
        ),
        Outcome::Admitted(Some(others.into()))
    );

    // Unlabelled, it belongs to no domain and gets nothing.
    cluster.plane.kubectl_ok(
        &["label", "namespace", namespace, "iomete.com/domain-"],
        None,
    );
    until(
        cluster,
        namespace,
        "unlabelled",
        &kubernetes_ref("s3-secret-key", other),
        |outcome| *outcome == Outcome::Admitted(Some(others.into())),
        |outcome| matches!(outcome, Outcome::Denied(message) if message.contains("(Forbidden)")),
    );
    assert_no_canary(
        "the webhook's log",
        &cluster.webhook_log(),
        &[old, new, others],
    );
}

/// The VaultConfig's Ready condition as stored, once it has `reason`.
pub fn wait_for_condition(cluster: &Cluster, name: &str, reason: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let text = cluster.plane.kubectl_ok(
            &[
                "get",
                "vaultconfig",
                name,
                "-n",
                STORE_NAMESPACE,
                "-o",
                "json",
            ],
            None,
        );
        let config: Value = serde_json::from_str(&text).unwrap();
        let conditions = config["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(ready) = conditions
            .iter()
            .find(|c| c["type"] == "Ready" && c["reason"] == reason)
        {
            assert_eq!(
                ready["observedGeneration"],
                config["metadata"]["generation"]
            );
            return ready.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no Ready condition with {reason}: {config}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_config_status_and_changes_through_the_real_api_server() {
    let Some(cluster) = Cluster::shared("vault_config_status_and_changes") else {
        return;
    };
    let bao = OpenBao::start().await;
    const VALUE: &str = "cluster-canary-vault-$(X)-e2";
    bao.admin()
        .kv_put("secret", "cluster/e2/db", json!({"value": VALUE}))
        .await;
    bao.admin()
        .write_policy(
            "cluster-e2",
            r#"path "secret/data/cluster/e2/*" { capabilities = ["read"] }"#,
        )
        .await;
    let token = bao.admin().create_token(&["cluster-e2"], "1h").await;
    let (namespace, domain, name) = ("vault-e2", "vaulte2", "vault-e2");
    cluster.namespace(namespace, Some(domain));
    cluster.plane.kubectl_ok(
        &[
            "create",
            "secret",
            "generic",
            &format!("iomete-vault-credentials-{domain}"),
            "-n",
            STORE_NAMESPACE,
            &format!("--from-literal={name}.token={token}"),
        ],
        None,
    );
    let config = |path: &str| {
        json!({
            "apiVersion": "secrets.iomete.com/v1",
            "kind": "VaultConfig",
            "metadata": {"name": name, "namespace": STORE_NAMESPACE},
            "spec": {"domain": domain, "host": bao.address(), "path": path, "auth": {"method": "Token"}},
        })
    };
    apply(&cluster.plane, &config("/v1/secret/data/cluster/e2"));
    let ready = wait_for_condition(cluster, name, "Connected");
    assert_eq!(ready["status"], "True");
    // Written by the webhook's own identity, with a patch of the status subresource (the one
    // write the shipped Role grants).
    let writes: Vec<Value> = cluster
        .plane
        .audit_events()
        .into_iter()
        .filter(|event| {
            event["objectRef"]["resource"] == "vaultconfigs"
                && event["objectRef"]["name"] == name
                && event["stage"] == "ResponseComplete"
                && event["user"]["username"]
                    == "system:serviceaccount:iomete-system:iomete-secrets-webhook"
                && !matches!(event["verb"].as_str(), Some("get" | "list" | "watch"))
        })
        .collect();
    assert!(
        !writes.is_empty(),
        "no write of the webhook in the audit log"
    );
    for write in &writes {
        assert_eq!(write["verb"], "patch", "{write}");
        assert_eq!(write["objectRef"]["subresource"], "status", "{write}");
        assert_eq!(write["responseStatus"]["code"], 200, "{write}");
    }
    // The printer columns of the shipped CRD show it.
    let table = cluster
        .plane
        .kubectl_ok(&["get", "vaultconfigs", "-n", STORE_NAMESPACE, name], None);
    let row = table.lines().nth(1).unwrap_or_default().to_owned();
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &columns[..3],
        [name, domain, bao.address().as_str()],
        "{table}"
    );
    assert_eq!(&columns[3..6], ["Token", "True", "Connected"], "{table}");

    let vault_ref = json!({"secrets.iomete.com/env-secrets": json!([
        {"key": ENV, "secretObject": {"key": "db", "source": {"type": "VAULT", "id": name}}}
    ]).to_string()});
    let outcome = tokio::task::spawn_blocking({
        let vault_ref = vault_ref.clone();
        move || create_driver(cluster, namespace, "vault-first", vault_ref)
    })
    .await
    .unwrap();
    assert_eq!(outcome, Outcome::Admitted(Some(VALUE.into())));

    // A change made with kubectl: a prefix the token may not read. The condition follows, and
    // the next pod is refused by Vault (403) instead of getting a value.
    apply(&cluster.plane, &config("/v1/secret/data/elsewhere"));
    let denied = wait_for_condition(cluster, name, "ReadDenied");
    assert_eq!(denied["status"], "False");
    let outcome = tokio::task::spawn_blocking({
        let vault_ref = vault_ref.clone();
        move || create_driver(cluster, namespace, "vault-second", vault_ref)
    })
    .await
    .unwrap();
    assert!(
        matches!(&outcome, Outcome::Denied(message) if message.contains("(Forbidden)")),
        "{outcome:?}"
    );
    let everything = cluster.webhook_log() + &table + &format!("{outcome:?}");
    assert_no_canary(
        "the webhook's log and answers",
        &everything,
        &[VALUE, &token],
    );
    cluster.plane.kubectl_ok(
        &["delete", "vaultconfig", name, "-n", STORE_NAMESPACE],
        None,
    );
}
