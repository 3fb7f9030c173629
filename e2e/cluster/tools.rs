//! The admin tools (`check`, `catalogue`, `audit`, the kubectl plugin) against the real
//! control plane: verdicts with the codes and messages the webhook answers for the same pods,
//! pods created while the webhook was bypassed, the rotation report after a store update, the
//! plugin through the real `kubectl iomete-secrets`, and the tools run as a ServiceAccount with
//! only the read permissions of `deploy/admin-tools`, naming the one that is missing.
//!
//! Each test keeps to namespaces, domains and stores of its own (`tools-*`) on the shared
//! cluster; a pod bypasses the webhook through the shipped objectSelector (the webhook's own
//! label), as a pod created while the webhook was unregistered would.

mod auditor;
mod vault;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::env::{CANARY_GLOBAL, Cluster, STORE_NAMESPACE, apply, binary};
use crate::{apply_pod, assert_no_canary, assert_success, stderr, stdout};

/// Runs the binary's `args` as the holder of `kubeconfig`.
fn tool(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("IOMETE_SECRETS_OUTPUT")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn admin(cluster: &Cluster) -> PathBuf {
    cluster.plane.admin_kubeconfig()
}

fn exit_code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}{}", stdout(output), stderr(output)))
}

fn pod(namespace: &str, name: &str, entries: &[(&str, &str, &str)]) -> Value {
    let list: Vec<Value> = entries
        .iter()
        .map(|(env, key, id)| json!({"key": env, "secretObject": {"key": key, "source": {"type": "KUBERNETES", "id": id}}}))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace,
                     "annotations": {"secrets.iomete.com/env-secrets": Value::Array(list).to_string()}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    })
}

/// A pod the shipped objectSelector keeps away from the webhook (its own label).
fn bypassing(mut pod: Value) -> Value {
    pod["metadata"]["labels"] = json!({"app.kubernetes.io/name": "iomete-secrets-webhook"});
    pod
}

const FIN_CANARY: &str = "cluster-canary-tools-fin-41";

fn setup_check_namespaces(cluster: &Cluster) {
    cluster.namespace("tools-fin", Some("toolsfin"));
    cluster.namespace("tools-mkt", Some("toolsmkt"));
    cluster.store("toolsfin", &[("db_password", FIN_CANARY)]);
}

/// A manifest with one pod template per reason, each in the namespace that exhibits it.
fn manifests(dir: &Path) {
    let reference = |key: &str, kind: &str, id: &str| {
        json!([{"key": "SECRET", "secretObject": {"key": key, "source": {"type": kind, "id": id}}}])
            .to_string()
    };
    let template = |annotation: String| {
        json!({"metadata": {"annotations": {"secrets.iomete.com/env-secrets": annotation}},
               "spec": {"containers": [{"name": "main", "image": "busybox"}], "restartPolicy": "Never"}})
    };
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "passes", "namespace": "tools-fin"},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template(reference("db_password", "KUBERNETES", "toolsfin"))}});
    let missing_key = pod(
        "tools-fin",
        "missing-key",
        &[("SECRET", "nope", "toolsfin")],
    );
    let out_of_scope = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "out-of-scope", "namespace": "tools-mkt"},
        "spec": {"template": template(reference("db_password", "KUBERNETES", "toolsfin"))}});
    let unknown_vault = json!({"apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "unknown-vault", "namespace": "tools-fin"},
        "spec": {"schedule": "@hourly", "jobTemplate": {"spec": {"template": template(reference("a/b", "VAULT", "no-such-config"))}}}});
    let spark = json!({"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
        "metadata": {"name": "etl", "namespace": "tools-fin"},
        "spec": {"type": "Python", "driver": {"annotations": {"secrets.iomete.com/env-secrets": reference("db_password", "KUBERNETES", "toolsfin")}},
                 "executor": {"annotations": {"secrets.iomete.com/env-secrets": reference("db_password", "KUBERNETES", "toolsfin")}}}});
    let yaml: String = [&deployment, &missing_key, &out_of_scope, &unknown_vault]
        .iter()
        .map(|object| format!("---\n{object}\n"))
        .collect();
    std::fs::write(dir.join("app.yaml"), yaml).unwrap();
    std::fs::write(dir.join("spark.json"), spark.to_string()).unwrap();
    let mut malformed = template(String::new());
    malformed["metadata"]["annotations"] = json!({"secrets.iomete.com/env-secrets": "[{"});
    let malformed = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "malformed", "namespace": "tools-fin", "annotations": malformed["metadata"]["annotations"]},
        "spec": malformed["spec"]});
    std::fs::write(dir.join("z-malformed.json"), malformed.to_string()).unwrap();
}

#[test]
fn check_gives_the_webhooks_verdict_for_each_reason() {
    let Some(cluster) = Cluster::shared("check_gives_the_webhooks_verdict") else {
        return;
    };
    setup_check_namespaces(cluster);
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path());
    let dir_arg = dir.path().display().to_string();
    let output = tool(&admin(cluster), &["check", "-f", &dir_arg, "-o", "json"]);
    assert_eq!(
        exit_code(&output),
        1,
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert_no_canary("check", &stdout(&output), &[FIN_CANARY, CANARY_GLOBAL]);
    let report = json_of(&output);
    let verdicts: Vec<(String, Value)> = report["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|template| {
            let name = format!(
                "{}:{}",
                template["origin"]["name"].as_str().unwrap(),
                template["origin"]["path"].as_str().unwrap()
            );
            let code = template["references"]
                .as_array()
                .unwrap()
                .iter()
                .find(|reference| reference["verdict"] == "denied")
                .map(|reference| reference["code"].clone())
                .or_else(|| {
                    (template["pod"]["verdict"] == "denied")
                        .then(|| template["pod"]["code"].clone())
                })
                .unwrap_or(json!("ok"));
            (name, code)
        })
        .collect();
    let expected = [
        ("passes:spec.template", json!("ok")),
        ("missing-key:pod", json!(404)),
        ("out-of-scope:spec.template", json!(403)),
        ("unknown-vault:spec.jobTemplate.spec.template", json!(404)),
        ("etl:spec.driver", json!("ok")),
        ("etl:spec.executor", json!("ok")),
        ("malformed:pod", json!(400)),
    ];
    let expected: Vec<(String, Value)> = expected
        .iter()
        .map(|(n, c)| (n.to_string(), c.clone()))
        .collect();
    assert_eq!(verdicts, expected);

    // The same pod, created for real, is denied with the code and message check printed.
    let denied = |name: &str| {
        report["templates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["origin"]["name"] == name)
            .unwrap()["references"][0]["message"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for (name, pod) in [
        (
            "missing-key",
            pod(
                "tools-fin",
                "missing-key",
                &[("SECRET", "nope", "toolsfin")],
            ),
        ),
        (
            "out-of-scope",
            pod(
                "tools-mkt",
                "out-of-scope",
                &[("SECRET", "db_password", "toolsfin")],
            ),
        ),
    ] {
        let applied = apply_pod(cluster, &pod, &[]);
        assert!(!applied.status.success());
        assert!(
            stderr(&applied).contains(&denied(name)),
            "kubectl: {}\ncheck: {}",
            stderr(&applied),
            denied(name)
        );
    }

    // Human output names each template and ends with the count.
    let human = tool(&admin(cluster), &["check", "-f", &dir_arg]);
    let text = stdout(&human);
    assert!(
        text.contains("app.yaml document 2 (line 4): Pod/missing-key pod in namespace tools-fin"),
        "{text}"
    );
    assert!(text.contains("7 pod templates"), "{text}");

    // A manifest that passes exits 0; offline, grammar only, the missing key passes too.
    let passing = tool(
        &admin(cluster),
        &["check", "-f", &format!("{dir_arg}/spark.json")],
    );
    assert_eq!(
        exit_code(&passing),
        0,
        "{}{}",
        stdout(&passing),
        stderr(&passing)
    );
    let offline = tool(
        &admin(cluster),
        &["check", "--offline", "-f", &format!("{dir_arg}/app.yaml")],
    );
    assert_eq!(
        exit_code(&offline),
        0,
        "{}{}",
        stdout(&offline),
        stderr(&offline)
    );

    // A malformed file: exit 2, naming the file, the document and the line.
    std::fs::write(
        dir.path().join("broken.yaml"),
        "kind: Pod\n---\nkind: Pod\nmetadata: {name: [x\n",
    )
    .unwrap();
    let broken = tool(
        &admin(cluster),
        &["check", "-f", &format!("{dir_arg}/broken.yaml")],
    );
    assert_eq!(exit_code(&broken), 2);
    assert!(
        stderr(&broken).contains("broken.yaml: document 2 (line 4)"),
        "{}",
        stderr(&broken)
    );
}

#[test]
fn catalogue_lists_what_a_namespace_may_reference() {
    let Some(cluster) = Cluster::shared("catalogue_lists") else {
        return;
    };
    setup_check_namespaces(cluster);
    let output = tool(
        &admin(cluster),
        &["catalogue", "--namespace", "tools-fin", "-o", "json"],
    );
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_no_canary("catalogue", &stdout(&output), &[FIN_CANARY, CANARY_GLOBAL]);
    let catalogue = json_of(&output);
    let stores: Vec<(String, Value)> = catalogue["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|store| {
            (
                store["id"].as_str().unwrap().to_owned(),
                store["keys"].clone(),
            )
        })
        .collect();
    assert!(
        stores.contains(&("toolsfin".into(), json!(["db_password"]))),
        "{stores:?}"
    );
    assert!(
        stores.contains(&("global".into(), json!(["smtp_password"]))),
        "{stores:?}"
    );
    assert!(
        !stores
            .iter()
            .any(|(id, _)| id == "admin" || id == "toolsmkt"),
        "{stores:?}"
    );
    let human = stdout(&tool(
        &admin(cluster),
        &["catalogue", "--namespace", "tools-fin"],
    ));
    assert!(human.contains(r#"in secrets.iomete.com/env-secrets: {"key":"ENV_NAME","secretObject":{"key":"db_password","source":{"id":"toolsfin","type":"KUBERNETES"}}}"#), "{human}");
    let unknown = tool(
        &admin(cluster),
        &["catalogue", "--namespace", "tools-nowhere"],
    );
    assert_eq!(exit_code(&unknown), 2);
    assert!(
        stderr(&unknown).contains("namespace \"tools-nowhere\" does not exist"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn audit_finds_missed_injection_and_pods_holding_a_rotated_store_key() {
    let Some(cluster) = Cluster::shared("audit_finds") else {
        return;
    };
    let (namespace, domain) = ("tools-aud", "toolsaud");
    cluster.namespace(namespace, Some(domain));
    cluster.store(
        domain,
        &[
            ("k1", "cluster-canary-aud-v1"),
            ("k2", "cluster-canary-aud-k2"),
        ],
    );
    assert_success(&apply_pod(
        cluster,
        &pod(namespace, "before", &[("K1", "k1", domain)]),
        &[],
    ));
    let stored = cluster.stored_pod(namespace, "before");
    let versions = stored["metadata"]["annotations"]["secrets.iomete.com/versions"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(versions.contains("KUBERNETES/toolsaud/k1"), "{versions}");
    assert_no_canary("versions annotation", &versions, &["cluster-canary-aud"]);
    assert_success(&apply_pod(
        cluster,
        &bypassing(pod(namespace, "bypassed", &[("K1", "k1", domain)])),
        &[],
    ));

    let audit = |extra: &[&str]| {
        let mut args = vec!["audit", "--namespace", namespace, "-o", "json"];
        args.extend_from_slice(extra);
        let output = tool(&admin(cluster), &args);
        assert_no_canary("audit", &stdout(&output), &["cluster-canary-aud"]);
        (exit_code(&output), json_of(&output))
    };
    let listed = |report: &Value| -> Vec<(String, String)> {
        report["pods"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|pod| {
                pod["findings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| {
                        (
                            pod["name"].as_str().unwrap().to_owned(),
                            f["finding"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let (code, report) = audit(&[]);
    assert_eq!(code, 1);
    assert_eq!(
        listed(&report),
        [("bypassed".to_owned(), "missed_injection".to_owned())]
    );

    // Rotate k1; a pod created afterwards holds what the webhook's cache had.
    cluster.store(
        domain,
        &[
            ("k1", "cluster-canary-aud-v2"),
            ("k2", "cluster-canary-aud-k2"),
        ],
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_success(&apply_pod(
        cluster,
        &pod(namespace, "after", &[("K1", "k1", domain)]),
        &[],
    ));
    let after_holds_new =
        crate::container_env(&cluster.stored_pod(namespace, "after"), "main", "K1").as_deref()
            == Some("cluster-canary-aud-v2");
    let (code, report) = audit(&["--secret", "KUBERNETES/toolsaud/k1"]);
    assert_eq!(code, 1);
    let mut expected = vec![("before".to_owned(), "outdated".to_owned())];
    if !after_holds_new {
        expected.push(("after".to_owned(), "outdated".to_owned()));
    }
    assert_eq!(listed(&report), expected);
    assert_eq!(report["pods"][0]["owner"], "none (a bare pod)");
    let (code, report) = audit(&["--secret", "KUBERNETES/toolsaud/other"]);
    assert_eq!((code, listed(&report)), (0, vec![]));
}

/// The plugin through the real kubectl: `kubectl iomete-secrets` finds `kubectl-iomete_secrets`
/// on PATH.
#[test]
fn the_plugin_works_through_kubectl() {
    let Some(cluster) = Cluster::shared("the_plugin_works_through_kubectl") else {
        return;
    };
    setup_check_namespaces(cluster);
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(binary(), dir.path().join("kubectl-iomete_secrets")).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // kubectl takes no flag before a plugin's name: the kubeconfig comes from KUBECONFIG.
    let kubectl = |args: &[&str]| {
        Command::new(cluster.plane.bin_dir().join("kubectl"))
            .args(args)
            .env("PATH", &path)
            .env("KUBECONFIG", admin(cluster))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let output = kubectl(&["iomete-secrets", "catalogue", "--namespace", "tools-fin"]);
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("KUBERNETES store \"toolsfin\""),
        "{}",
        stdout(&output)
    );
    let help = kubectl(&["iomete-secrets", "--help"]);
    assert!(
        stdout(&help).contains("kubectl iomete-secrets"),
        "{}",
        stdout(&help)
    );
}

/// Bound to `deploy/admin-tools`, a ServiceAccount runs every tool; without the Role, the
/// missing permission is named.
#[test]
fn tools_run_with_the_documented_read_permissions_and_name_a_missing_one() {
    let Some(cluster) = Cluster::shared("tools_run_with_the_documented_read_permissions") else {
        return;
    };
    setup_check_namespaces(cluster);
    let rbac = cluster.plane.kubectl_ok(
        &[
            "kustomize",
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/admin-tools"),
        ],
        None,
    );
    cluster.plane.kubectl_ok(&["apply", "-f", "-"], Some(&rbac));
    let account = |name: &str, with_role: bool| {
        apply(
            &cluster.plane,
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": "tools-fin"}}),
        );
        let subject = json!([{"kind": "ServiceAccount", "name": name, "namespace": "tools-fin"}]);
        apply(
            &cluster.plane,
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name}, "subjects": subject,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "iomete-secrets-admin-tools"}}),
        );
        if with_role {
            apply(
                &cluster.plane,
                &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": STORE_NAMESPACE}, "subjects": subject,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "iomete-secrets-admin-tools"}}),
            );
        }
        let token = cluster
            .plane
            .kubectl_ok(&["create", "token", name, "-n", "tools-fin"], None);
        cluster.plane.token_kubeconfig(name, token.trim())
    };
    let reader = account("tools-reader", true);
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path());
    let spark = format!("{}/spark.json", dir.path().display());
    for args in [
        vec!["check", "-f", spark.as_str()],
        vec!["catalogue", "--namespace", "tools-fin"],
        vec!["audit", "--namespace", "tools-fin"],
        vec!["audit"],
    ] {
        let output = tool(&reader, &args);
        assert!(
            exit_code(&output) < 2,
            "{args:?}: {}{}",
            stdout(&output),
            stderr(&output)
        );
    }
    let partial = account("tools-partial", false);
    let output = tool(&partial, &["audit", "--namespace", "tools-fin"]);
    assert_eq!(exit_code(&output), 2, "{}", stdout(&output));
    assert!(
        stderr(&output).contains(
            "permission missing: the caller may not list secrets in namespace \"iomete-system\""
        ),
        "{}",
        stderr(&output)
    );
}
