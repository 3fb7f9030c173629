//! A pod created while the webhook was unregistered, found by `audit` and by `serve
//! --audit-pods` on the real control plane (its own: the registration is deleted), the auditor
//! running as the shipped ServiceAccount with the RBAC of the opt-in component
//! `deploy/audit-pods`: gauges per namespace and one Event per pod and reason, however many
//! rounds pass.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{admin, exit_code, json_of, pod, tool};
use crate::control_plane::{free_port, http_get, spawn_guarded, terminate};
use crate::env::{Cluster, SERVICE_ACCOUNT, STORE_NAMESPACE, apply, binary, render_kustomization};
use crate::{apply_pod, assert_no_canary, assert_success};

/// Stops the auditor however the test ends.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            terminate(child, Duration::from_secs(10));
        }
    }
}

/// deploy/base with the component, rendered by kubectl as JSON objects.
fn with_component(cluster: &Cluster) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
    std::os::unix::fs::symlink(format!("{deploy}/base"), dir.path().join("base")).unwrap();
    std::os::unix::fs::symlink(
        format!("{deploy}/audit-pods"),
        dir.path().join("audit-pods"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("overlay")).unwrap();
    std::fs::write(
        dir.path().join("overlay/kustomization.yaml"),
        "resources:\n  - ../base\ncomponents:\n  - ../audit-pods\n",
    )
    .unwrap();
    let overlay = dir.path().join("overlay").display().to_string();
    render_kustomization(&cluster.plane, &overlay)
}

fn events(cluster: &Cluster, namespace: &str) -> Vec<(String, String, String)> {
    let text = cluster
        .plane
        .kubectl_ok(&["get", "events", "-n", namespace, "-o", "json"], None);
    let list: Value = serde_json::from_str(&text).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["source"]["component"] == "iomete-secrets-webhook")
        .map(|event| {
            (
                event["involvedObject"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                event["reason"].as_str().unwrap_or("").to_owned(),
                event["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_pod_auditor_reports_gauges_and_rate_limited_events() {
    let Some(cluster) = Cluster::dedicated("the_pod_auditor_reports") else {
        return;
    };
    let cluster = &cluster;
    let rendered = with_component(cluster);
    let deployment = rendered.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert!(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .contains(&json!("--audit-pods"))
    );
    for object in rendered
        .iter()
        .filter(|object| object["metadata"]["name"] == "iomete-secrets-webhook-audit-pods")
    {
        apply(&cluster.plane, object);
    }

    let (namespace, domain) = ("tools-auditor", "toolsauditor");
    cluster.namespace(namespace, Some(domain));
    cluster.store(domain, &[("k", "cluster-canary-auditor-v1")]);
    assert_success(&apply_pod(
        cluster,
        &pod(namespace, "served", &[("K", "k", domain)]),
        &[],
    ));
    // Unregistered, the webhook is never called: the pod is stored as written.
    let registration = cluster.shipped_webhook_configuration();
    let name = registration["metadata"]["name"].as_str().unwrap();
    cluster
        .plane
        .kubectl_ok(&["delete", "mutatingwebhookconfiguration", name], None);
    assert_success(&apply_pod(
        cluster,
        &pod(namespace, "unregistered", &[("K", "k", domain)]),
        &[],
    ));
    let audited = tool(&admin(cluster), &["audit", "-n", namespace, "-o", "json"]);
    assert_eq!(exit_code(&audited), 1);
    let report = json_of(&audited);
    assert_eq!(report["pods"][0]["name"], "unregistered", "{report}");
    assert_eq!(
        report["pods"][0]["findings"][0]["finding"], "missed_injection",
        "{report}"
    );
    cluster.store(domain, &[("k", "cluster-canary-auditor-v2")]);

    // The auditor as the shipped ServiceAccount, which the component's binding extends.
    let token = cluster.plane.kubectl_ok(
        &["create", "token", SERVICE_ACCOUNT, "-n", STORE_NAMESPACE],
        None,
    );
    let kubeconfig = cluster.plane.token_kubeconfig("auditor", token.trim());
    let admin_port = free_port();
    let certs = cluster.certs_dir();
    let mut command = Command::new(binary());
    command
        .arg("serve")
        .arg(format!("--listen=127.0.0.1:{}", free_port()))
        .arg(format!("--admin-listen=127.0.0.1:{admin_port}"))
        .arg("--tls-cert")
        .arg(certs.join("tls.crt"))
        .arg("--tls-key")
        .arg(certs.join("tls.key"))
        .args(["--audit-pods", "--audit-interval", "1s"])
        .env("KUBECONFIG", &kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _auditor = Running(Some(spawn_guarded(command).unwrap()));

    let wanted = [
        format!(
            "iomete_secrets_webhook_audit_pods_missing_injection{{namespace=\"{namespace}\"}} 1"
        ),
        format!("iomete_secrets_webhook_audit_pods_outdated{{namespace=\"{namespace}\"}} 1"),
    ];
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let metrics = http_get(admin_port, "/metrics").unwrap_or_default();
        if wanted.iter().all(|line| metrics.contains(line.as_str())) {
            assert_no_canary("metrics", &metrics, &["cluster-canary-auditor"]);
            break;
        }
        assert!(Instant::now() < deadline, "gauges not reported:\n{metrics}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Several more rounds: still one Event per pod and reason.
    std::thread::sleep(Duration::from_secs(3));
    let mut told = events(cluster, namespace);
    for (_, _, message) in &told {
        assert_no_canary("event", message, &["cluster-canary-auditor"]);
    }
    told.sort();
    let told: Vec<(String, String)> = told
        .into_iter()
        .map(|(pod, reason, _)| (pod, reason))
        .collect();
    assert_eq!(
        told,
        [
            ("served".to_owned(), "SecretVersionOutdated".to_owned()),
            ("unregistered".to_owned(), "SecretsNotInjected".to_owned()),
        ]
    );
}
