//! The admin tools with a real OpenBao behind a VaultConfig: `vault test` (ready, and a policy
//! that refuses the read), `check` confirming a Vault path by a metadata read, and `audit`
//! listing the pod that holds a Vault secret rotated since it was created.

use serde_json::{Value, json};

use super::{admin, exit_code, json_of, tool};
use crate::changes::wait_for_condition;
use crate::env::{Cluster, STORE_NAMESPACE, apply};
use crate::support::openbao::OpenBao;
use crate::{apply_pod, assert_no_canary, assert_success, stderr, stdout};

const V1: &str = "cluster-canary-tools-vault-v1";
const V2: &str = "cluster-canary-tools-vault-v2";

fn vault_pod(namespace: &str, name: &str, config: &str, key: &str) -> Value {
    let list = json!([{"key": "DB", "secretObject": {"key": key, "source": {"type": "VAULT", "id": config}}}]);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace,
                     "annotations": {"secrets.iomete.com/env-secrets": list.to_string()}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_test_check_and_rotation_report_with_openbao() {
    let Some(cluster) = Cluster::shared("vault_test_check_and_rotation_report") else {
        return;
    };
    let bao = OpenBao::start().await;
    bao.admin()
        .kv_put("secret", "cluster/tools/db", json!({"value": V1}))
        .await;
    // What docs/admin-tools.md says the policy must allow: data for the webhook, metadata for
    // the tools.
    bao.admin()
        .write_policy(
            "cluster-tools",
            r#"path "secret/data/cluster/tools/*" { capabilities = ["read"] }
path "secret/metadata/cluster/tools/*" { capabilities = ["read"] }"#,
        )
        .await;
    let token = bao.admin().create_token(&["cluster-tools"], "1h").await;
    let refused = bao.admin().create_token(&["default"], "1h").await;
    let (namespace, domain) = ("tools-vault", "toolsvault");
    cluster.namespace(namespace, Some(domain));
    cluster.plane.kubectl_ok(
        &[
            "create",
            "secret",
            "generic",
            &format!("iomete-vault-credentials-{domain}"),
            "-n",
            STORE_NAMESPACE,
            &format!("--from-literal=vault-tools.token={token}"),
            &format!("--from-literal=vault-tools-refused.token={refused}"),
        ],
        None,
    );
    for name in ["vault-tools", "vault-tools-refused"] {
        apply(
            &cluster.plane,
            &json!({
                "apiVersion": "secrets.iomete.com/v1", "kind": "VaultConfig",
                "metadata": {"name": name, "namespace": STORE_NAMESPACE},
                "spec": {"domain": domain, "host": bao.address(), "path": "/v1/secret/data/cluster/tools",
                         "auth": {"method": "Token"}},
            }),
        );
    }
    // The webhook has seen both (it wrote their conditions).
    assert_eq!(
        wait_for_condition(cluster, "vault-tools", "Connected")["status"],
        "True"
    );
    wait_for_condition(cluster, "vault-tools-refused", "ReadDenied");

    let ready = tool(&admin(cluster), &["vault", "test", "vault-tools"]);
    assert_eq!(exit_code(&ready), 0, "{}{}", stdout(&ready), stderr(&ready));
    assert!(
        stdout(&ready).contains("Ready (Connected)"),
        "{}",
        stdout(&ready)
    );
    let denied = tool(
        &admin(cluster),
        &["vault", "test", "vault-tools-refused", "-o", "json"],
    );
    assert_eq!(
        exit_code(&denied),
        1,
        "{}{}",
        stdout(&denied),
        stderr(&denied)
    );
    assert_eq!(
        json_of(&denied)["reason"],
        "ReadDenied",
        "{}",
        stdout(&denied)
    );
    let missing = tool(&admin(cluster), &["vault", "test", "vault-nowhere"]);
    assert_eq!(exit_code(&missing), 2);
    assert!(
        stderr(&missing).contains("VaultConfig \"vault-nowhere\" does not exist"),
        "{}",
        stderr(&missing)
    );

    // check: the path exists (a metadata read), a missing one is the webhook's 404.
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("vault.json");
    let pods = json!({"apiVersion": "v1", "kind": "List", "items": [
        vault_pod(namespace, "exists", "vault-tools", "db"),
        vault_pod(namespace, "missing", "vault-tools", "nope"),
    ]});
    std::fs::write(&manifest, pods.to_string()).unwrap();
    let checked = tool(
        &admin(cluster),
        &["check", "-f", &manifest.display().to_string(), "-o", "json"],
    );
    assert_eq!(
        exit_code(&checked),
        1,
        "{}{}",
        stdout(&checked),
        stderr(&checked)
    );
    assert_no_canary("check", &stdout(&checked), &[V1]);
    let report = json_of(&checked);
    let first = &report["templates"][0]["references"][0];
    assert_eq!(first["verdict"], "ok", "{report}");
    assert!(
        first["checked"]
            .as_str()
            .unwrap()
            .contains("/v1/secret/metadata/cluster/tools/db exists (version v1)"),
        "{report}"
    );
    let second = &report["templates"][1]["references"][0];
    assert_eq!(second["code"], 404, "{report}");

    // The webhook records the version it read; after a rotation, audit lists the pod.
    assert_success(&apply_pod(
        cluster,
        &vault_pod(namespace, "holds-v1", "vault-tools", "db"),
        &[],
    ));
    let stored = cluster.stored_pod(namespace, "holds-v1");
    let versions: Value = serde_json::from_str(
        stored["metadata"]["annotations"]["secrets.iomete.com/versions"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(versions, json!({"VAULT/vault-tools/db": "v1"}));
    let audit = |secret: &str| {
        let output = tool(
            &admin(cluster),
            &[
                "audit",
                "--namespace",
                namespace,
                "--secret",
                secret,
                "-o",
                "json",
            ],
        );
        assert_no_canary("audit", &stdout(&output), &[V1, V2]);
        (exit_code(&output), json_of(&output))
    };
    let (code, report) = audit("VAULT/vault-tools/db");
    assert_eq!(
        (code, report["pods"].as_array().unwrap().len()),
        (0, 0),
        "{report}"
    );
    bao.admin()
        .kv_put("secret", "cluster/tools/db", json!({"value": V2}))
        .await;
    let (code, report) = audit("VAULT/vault-tools/db");
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["pods"][0]["name"], "holds-v1", "{report}");
    assert_eq!(
        report["pods"][0]["findings"][0]["recorded"], "v1",
        "{report}"
    );
    assert_eq!(
        report["pods"][0]["findings"][0]["current"], "v2",
        "{report}"
    );
}
