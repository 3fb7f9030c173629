//! The Helm chart in a real kube-apiserver: `helm upgrade --install` (IOMETE's way), `helm
//! upgrade` with changed values, `helm uninstall` and a reinstall, on a control plane of its own
//! (the chart's cluster-wide objects would collide with the shared cluster's registration).
//!
//! The API server validates everything the chart renders (the Prometheus Operator's CRDs are
//! installed first, so its PodMonitor, ServiceMonitor and PrometheusRule too), enforces the
//! chart's RBAC, and calls the webhook through the chart's MutatingWebhookConfiguration. No
//! kubelet or controller-manager runs, so the chart's Deployment never gets a pod: the test runs
//! the webhook binary itself with that Deployment's args and env (its ConfigMap read back from
//! the API server), as the chart's ServiceAccount, and installs with `admission.url` pointing at
//! it, the only value a real install would not set (a Service has no endpoints here). Vault
//! lookups go to a real OpenBao, so the real `/metrics` output has every series the dashboard
//! and the alerts read.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::control_plane::{ControlPlane, free_port};
use crate::env::DedicatedSlot;
use crate::stderr;
use crate::support::openbao::OpenBao;

mod broker;
#[path = "../../tests/support/helm_tools.rs"]
mod helm_tools;
mod release;
mod webhook;

use release::{Helm, NAMESPACE, NAMESPACED, RELEASE, get, values};
use webhook::{ChartWebhook, create, driver, injected};

const STORE_VALUE: &str = "helm-canary-store-7f3a";
const VAULT_VALUE: &str = "helm-canary-vault-$(X)-91c2";
const CRD: &str = "vaultconfigs.secrets.iomete.com";
const STORE: (&str, &str) = ("KUBERNETES", "helmfin");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_installs_upgrades_and_uninstalls_as_documented() {
    let test = "the_chart_installs_upgrades_and_uninstalls_as_documented";
    let Some(tools) = helm_tools::helm_tools_or_skip(test) else {
        return;
    };
    let _one_at_a_time = DedicatedSlot::take();
    let Some(plane) = ControlPlane::start(test) else {
        return;
    };
    let helm = Helm::new(&tools, &plane);
    let (certs, ca_bundle) = prepare(&plane, &tools);
    let port = free_port();
    let install = values(port, &ca_bundle, json!({"broker": {"enabled": true}}));

    // ---- install: every object lands, the CRD is marked to be kept, the RBAC is exact
    helm.upgrade_install(&install);
    let crd = get(&plane, &["crd", CRD]).expect("the chart installs the VaultConfig CRD");
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    let established = format!("crd/{CRD}");
    plane.kubectl_ok(&["wait", "--for=condition=Established", &established], None);
    release::assert_objects(&plane, true, &NAMESPACED);
    release::assert_rbac(&plane);
    let hook = &get(&plane, &["mutatingwebhookconfiguration", RELEASE]).unwrap()["webhooks"][0];
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["clientConfig"]["caBundle"], ca_bundle.as_str());
    assert_eq!(excluded_namespaces(hook), json!(["kube-system", NAMESPACE]));

    // ---- the webhook, as the chart configured it, serving pods
    let mut webhook = ChartWebhook::start(&plane, &certs, port);
    serve_pods(&plane).await;
    broker::serve_a_broker_pod(&plane, &certs, webhook.broker_port).await;
    let exposition = webhook.metrics();
    let exported = webhook::metric_names_exported(&exposition);
    let used = webhook::metric_names_used();
    assert!(used.len() >= 12, "the dashboard and alerts read {used:?}");
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "not exported: {unknown:?}\n{exposition}"
    );
    webhook::promtool_check_metrics(&tools, &exposition);

    // ---- upgrade with changed values: Secrets V2 off, one more excluded namespace, and the
    // ServiceMonitor instead of the PodMonitor
    let before = get(&plane, &["deployment", RELEASE, "-n", NAMESPACE]).unwrap();
    helm.upgrade_install(&values(
        port,
        &ca_bundle,
        json!({
            "features": {"secretsV2": {"enabled": false}},
            "admission": {"excludedNamespaces": ["kube-system", "helm-excluded"]},
            "monitoring": {"podMonitor": {"enabled": false}, "serviceMonitor": {"enabled": true}},
        }),
    ));
    let config = get(
        &plane,
        &[
            "configmap",
            "iomete-secrets-webhook-config",
            "-n",
            NAMESPACE,
        ],
    );
    assert_eq!(
        config.unwrap()["data"]["features.secretsV2.enabled"],
        "false"
    );
    let after = get(&plane, &["deployment", RELEASE, "-n", NAMESPACE]).unwrap();
    let checksum =
        |d: &Value| d["spec"]["template"]["metadata"]["annotations"]["checksum/config"].clone();
    assert_ne!(
        checksum(&before),
        checksum(&after),
        "a changed value rolls the pods"
    );
    let hook = &get(&plane, &["mutatingwebhookconfiguration", RELEASE]).unwrap()["webhooks"][0];
    assert_eq!(
        excluded_namespaces(hook),
        json!(["kube-system", "helm-excluded", NAMESPACE])
    );
    let upgraded: Vec<&str> = NAMESPACED
        .into_iter()
        .map(|kind| {
            if kind == "podmonitor" {
                "servicemonitor"
            } else {
                kind
            }
        })
        .collect();
    release::assert_objects(&plane, true, &upgraded);
    assert!(
        get(&plane, &["podmonitor", RELEASE, "-n", NAMESPACE]).is_none(),
        "the PodMonitor stays"
    );
    assert!(
        get(
            &plane,
            &["service", "iomete-secrets-webhook-metrics", "-n", NAMESPACE]
        )
        .is_some()
    );
    assert!(get(&plane, &["vaultconfig", "vault-helm", "-n", NAMESPACE]).is_some());
    // What a rollout does: the webhook restarts with the new ConfigMap.
    webhook.stop();
    let mut webhook = ChartWebhook::start(&plane, &certs, port);
    let disabled = create(
        &plane,
        &driver("helm-finance", "v2-off", "db_password", STORE),
    );
    assert!(
        disabled
            .as_ref()
            .is_err_and(|m| m.contains("(BadRequest)") && m.contains("Secrets V2")),
        "{disabled:?}"
    );
    let excluded = create(
        &plane,
        &driver("helm-excluded", "excluded", "db_password", STORE),
    );
    assert_eq!(
        injected(&excluded.unwrap()),
        None,
        "helm-excluded is excluded now"
    );

    // ---- uninstall: everything goes but the CRD (so the VaultConfigs stay), the namespace and
    // the stores
    let uninstalled = helm.ok(&["uninstall", RELEASE, "--namespace", NAMESPACE]);
    assert!(
        uninstalled.contains("kept due to the resource policy") && uninstalled.contains(CRD),
        "{uninstalled}"
    );
    webhook.stop();
    release::assert_objects(&plane, false, &upgraded);
    assert!(
        get(
            &plane,
            &["service", "iomete-secrets-webhook-metrics", "-n", NAMESPACE]
        )
        .is_none()
    );
    assert!(get(&plane, &["crd", CRD]).is_some(), "the CRD is kept");
    assert!(get(&plane, &["vaultconfig", "vault-helm", "-n", NAMESPACE]).is_some());
    assert!(
        get(
            &plane,
            &["secret", "iomete-secret-store-helmfin", "-n", NAMESPACE]
        )
        .is_some()
    );
    assert!(get(&plane, &["namespace", NAMESPACE]).is_some());
    // No webhook registered: pods with references are admitted, without their secrets.
    let unserved = create(
        &plane,
        &driver("helm-finance", "unserved", "db_password", STORE),
    );
    assert_eq!(injected(&unserved.unwrap()), None);

    // ---- a reinstall adopts the kept CRD; removing the CRD (the chart's README) deletes every
    // VaultConfig, not their credentials
    helm.upgrade_install(&install);
    let crd = get(&plane, &["crd", CRD]).unwrap();
    assert_eq!(
        crd["metadata"]["annotations"]["meta.helm.sh/release-name"],
        RELEASE
    );
    helm.ok(&["uninstall", RELEASE, "--namespace", NAMESPACE]);
    plane.kubectl_ok(&["delete", "crd", CRD], None);
    let gone = plane
        .kubectl_output(&["get", "vaultconfigs", "-A"], None)
        .unwrap();
    assert!(
        !gone.status.success(),
        "VaultConfigs after the CRD's removal: {}",
        stderr(&gone)
    );
    let credentials = [
        "secret",
        "iomete-vault-credentials-helmfin",
        "-n",
        NAMESPACE,
    ];
    assert!(get(&plane, &credentials).is_some());
}

/// The Prometheus Operator's CRDs, the release namespace (the chart never creates or deletes
/// it: it holds the secret stores), and the TLS Secret the chart's `tls.mode: secret` names;
/// the certificates' directory and the caBundle.
fn prepare(plane: &ControlPlane, tools: &Path) -> (PathBuf, String) {
    // Server-side: the CRDs are too large for the annotation of a client-side apply.
    for kind in ["podmonitors", "servicemonitors", "prometheusrules"] {
        let file = tools.join(format!(
            "prometheus-operator-crds/monitoring.coreos.com_{kind}.yaml"
        ));
        plane.kubectl_ok(
            &["apply", "--server-side", "-f", file.to_str().unwrap()],
            None,
        );
        let crd = format!("crd/{kind}.monitoring.coreos.com");
        plane.kubectl_ok(&["wait", "--for=condition=Established", &crd], None);
    }
    plane.kubectl_ok(&["create", "namespace", NAMESPACE], None);
    let certs = plane.dir().join("chart-tls");
    let status = std::process::Command::new(crate::env::binary())
        .args(["certs", "--service", RELEASE, "--namespace", NAMESPACE])
        .args(["--extra-san", "127.0.0.1", "--out", certs.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "`certs` failed");
    let cert = format!("--cert={}", certs.join("tls.crt").display());
    let key = format!("--key={}", certs.join("tls.key").display());
    let secret = [
        "create",
        "secret",
        "tls",
        "iomete-secrets-webhook-tls",
        "-n",
        NAMESPACE,
    ];
    plane.kubectl_ok(&[&secret[..], &[&cert, &key]].concat(), None);
    let ca_bundle = std::fs::read_to_string(certs.join("ca-bundle.b64")).unwrap();
    (certs, ca_bundle.trim().to_owned())
}

/// Pods through the installed webhook: a store value injected, a reference out of scope
/// refused, an excluded namespace left alone, and Vault through AppRole (logins, reads, cache
/// lookups, an error for a missing secret), with the VaultConfig's Ready condition written
/// through the chart's Role.
async fn serve_pods(plane: &ControlPlane) {
    // The store first and each namespace created with its label: the webhook's watches then
    // never show a pod's namespace without its domain, or a domain without its store.
    let store = format!("--from-literal=db_password={STORE_VALUE}");
    let secret = ["create", "secret", "generic", "iomete-secret-store-helmfin"];
    plane.kubectl_ok(&[&secret[..], &["-n", NAMESPACE, &store]].concat(), None);
    for (namespace, domain) in [
        ("helm-finance", "helmfin"),
        ("helm-marketing", "helmmkt"),
        ("helm-excluded", "helmfin"),
    ] {
        let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": namespace, "labels": {"iomete.com/domain": domain}}});
        plane.kubectl_ok(&["create", "-f", "-"], Some(&object.to_string()));
    }
    let stored = create(
        plane,
        &driver("helm-finance", "store", "db_password", STORE),
    );
    assert_eq!(injected(&stored.unwrap()).as_deref(), Some(STORE_VALUE));
    let refused = create(
        plane,
        &driver("helm-marketing", "scope", "db_password", STORE),
    );
    assert!(
        refused.as_ref().is_err_and(|m| m.contains("(Forbidden)")),
        "{refused:?}"
    );
    let system = create(
        plane,
        &driver("kube-system", "system", "db_password", STORE),
    );
    assert_eq!(injected(&system.unwrap()), None, "kube-system is excluded");

    let bao = OpenBao::start().await;
    let admin = bao.admin();
    admin
        .kv_put("secret", "helm/db", json!({"value": VAULT_VALUE}))
        .await;
    admin
        .write_policy(
            "helm",
            r#"path "secret/data/helm/*" { capabilities = ["read"] }"#,
        )
        .await;
    admin.enable_approle("approle").await;
    let (role_id, secret_id) = admin
        .approle_role("approle", "helm", &["helm"], "1h", "2h")
        .await;
    let credentials = [
        "create",
        "secret",
        "generic",
        "iomete-vault-credentials-helmfin",
    ];
    let role_id = format!("--from-literal=vault-helm.roleId={role_id}");
    let secret_id = format!("--from-literal=vault-helm.secretId={secret_id}");
    plane.kubectl_ok(
        &[&credentials[..], &["-n", NAMESPACE, &role_id, &secret_id]].concat(),
        None,
    );
    let config = json!({
        "apiVersion": "secrets.iomete.com/v1", "kind": "VaultConfig",
        "metadata": {"name": "vault-helm", "namespace": NAMESPACE},
        "spec": {"domain": "helmfin", "host": bao.address(), "path": "/v1/secret/data/helm",
                 "auth": {"method": "AppRole"}},
    });
    plane.kubectl_ok(&["apply", "-f", "-"], Some(&config.to_string()));
    let ready = [
        "wait",
        "--for=condition=Ready",
        "--timeout=60s",
        "vaultconfig/vault-helm",
    ];
    plane.kubectl_ok(&[&ready[..], &["-n", NAMESPACE]].concat(), None);
    let vault = ("VAULT", "vault-helm");
    let from_vault = create(plane, &driver("helm-finance", "vault", "db", vault));
    assert_eq!(injected(&from_vault.unwrap()).as_deref(), Some(VAULT_VALUE));
    let missing = create(
        plane,
        &driver("helm-finance", "vault-missing", "nope", vault),
    );
    assert!(
        missing.as_ref().is_err_and(|m| m.contains("(NotFound)")),
        "{missing:?}"
    );
}

/// The namespaces a webhook's namespaceSelector leaves out.
fn excluded_namespaces(hook: &Value) -> Value {
    hook["namespaceSelector"]["matchExpressions"][0]["values"].clone()
}
