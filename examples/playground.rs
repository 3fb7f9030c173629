//! A local cluster to try the webhook with kubectl: a real kube-apiserver and etcd (from
//! `scripts/ensure-control-plane.sh`), `deploy/base` applied with kubectl, the webhook binary
//! registered with the shipped MutatingWebhookConfiguration (only its clientConfig points at
//! 127.0.0.1) and running as the shipped ServiceAccount, sample namespaces and stores, and a
//! VaultConfig against a local OpenBao. Prints the `export` lines and examples; Ctrl-C stops
//! everything. Run it with `scripts/playground.sh`, which builds what is missing first.
//!
//! No kubelet runs: pods are admitted and stored, and stay Pending.

#[path = "../tests/support/control_plane/mod.rs"]
mod control_plane;
#[path = "../e2e/cluster/env.rs"]
#[allow(dead_code)]
mod env;
#[path = "../tests/support/mod.rs"]
mod support;

use env::{Cluster, Plane, STORE_NAMESPACE, apply};
use serde_json::json;

#[tokio::main]
async fn main() {
    let Some(plane) = control_plane::ControlPlane::start("playground") else {
        std::process::exit(1);
    };
    let bin = plane.bin_dir().display().to_string();
    eprintln!("playground: control plane up; applying deploy/base and starting the webhook");
    let cluster = tokio::task::spawn_blocking(|| Cluster::on(Plane::Owned(plane), None))
        .await
        .unwrap();
    cluster.namespace("spark-jobs", Some("finance"));
    cluster.namespace("marketing-jobs", Some("marketing"));
    cluster.namespace("sandbox", None);
    cluster.store("finance", &[("s3-secret-key", "playground-finance-s3-key")]);
    cluster.store(
        "marketing",
        &[("s3-secret-key", "playground-marketing-s3-key")],
    );

    eprintln!("playground: starting OpenBao for the VaultConfig example");
    let bao = support::openbao::OpenBao::start().await;
    bao.admin()
        .kv_put(
            "secret",
            "playground/db",
            json!({"password": "playground-vault-db-password"}),
        )
        .await;
    bao.admin()
        .write_policy(
            "playground",
            r#"path "secret/data/playground/*" { capabilities = ["read"] }"#,
        )
        .await;
    let token = bao.admin().create_token(&["playground"], "24h").await;
    cluster.plane.kubectl_ok(
        &[
            "create",
            "secret",
            "generic",
            "iomete-vault-credentials-finance",
            "-n",
            STORE_NAMESPACE,
            &format!("--from-literal=vault-finance.token={token}"),
        ],
        None,
    );
    apply(
        &cluster.plane,
        &json!({
            "apiVersion": "secrets.iomete.com/v1",
            "kind": "VaultConfig",
            "metadata": {"name": "vault-finance", "namespace": STORE_NAMESPACE},
            "spec": {"domain": "finance", "host": bao.address(),
                     "path": "/v1/secret/data/playground", "auth": {"method": "Token"}},
        }),
    );

    println!(
        "\nThe playground runs (webhook log: {}).\n\n\
         export PATH={bin}:$PATH\n\
         export KUBECONFIG={}\n\n\
         kubectl get namespaces --show-labels\n\
         kubectl get vaultconfigs -n iomete-system\n\
         kubectl apply -f examples/cluster/spark-driver.yaml     # admitted, value injected\n\
         kubectl get pod spark-pi-driver -n spark-jobs -o jsonpath='{{.spec.containers[0].env}}'\n\
         kubectl apply -f examples/cluster/notebook-legacy.yaml  # legacy placeholder: a warning\n\
         kubectl apply -f examples/cluster/denied-pod.yaml       # another domain's store: 403\n\
         kubectl apply -f examples/cluster/vault-driver.yaml --dry-run=server -o yaml  # redacted\n\
         kubectl apply -f examples/cluster/vault-driver.yaml     # the value from OpenBao\n\n\
         Ctrl-C stops everything.",
        cluster.plane.dir().join("webhook.log").display(),
        cluster.plane.admin_kubeconfig().display(),
    );
    tokio::signal::ctrl_c().await.unwrap();
    eprintln!("playground: stopping");
    drop(bao);
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}
