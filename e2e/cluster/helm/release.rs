//! The Helm side of the Helm test: the real helm binary against a control plane, the values of
//! the install, and what the API server holds afterwards (objects, RBAC).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::control_plane::ControlPlane;

pub const NAMESPACE: &str = "iomete-system";
pub const RELEASE: &str = "iomete-secrets-webhook";
pub const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/iomete-secrets-webhook");

/// helm, with its caches and configuration in the control plane's directory.
pub struct Helm<'a> {
    pub bin: PathBuf,
    plane: &'a ControlPlane,
}

impl<'a> Helm<'a> {
    pub fn new(tools: &Path, plane: &'a ControlPlane) -> Self {
        Helm {
            bin: tools.to_owned(),
            plane,
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let home = self.plane.dir().join("helm");
        Command::new(self.bin.join("helm"))
            .args(args)
            .arg(format!(
                "--kubeconfig={}",
                self.plane.admin_kubeconfig().display()
            ))
            .env_remove("KUBECONFIG")
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .stdin(Stdio::null())
            .output()
            .expect("helm runs")
    }

    /// Runs helm; its stdout, or a panic with its output.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "helm {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// `helm upgrade --install` (IOMETE's way) of the chart with `values` (a file beside it).
    pub fn upgrade_install(&self, values: &Value) -> String {
        let path = self.plane.dir().join("helm-values.json");
        std::fs::write(&path, values.to_string()).unwrap();
        self.ok(&[
            "upgrade",
            "--install",
            RELEASE,
            CHART,
            "--namespace",
            NAMESPACE,
            "--values",
            path.to_str().unwrap(),
        ])
    }
}

/// `kubectl get ... -o json` as the admin, or `None` when the object does not exist.
pub fn get(plane: &ControlPlane, args: &[&str]) -> Option<Value> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let output = plane.kubectl_output(&all, None).unwrap();
    if output.status.success() {
        return Some(serde_json::from_slice(&output.stdout).unwrap());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("NotFound") || stderr.contains("doesn't have a resource type"),
        "kubectl {}: {stderr}",
        all.join(" ")
    );
    None
}

/// Whether the chart's ServiceAccount may `verb` `resource` (`resource/subresource`), in
/// `namespace` or cluster-wide.
pub fn can(plane: &ControlPlane, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
    let subject = format!("--as=system:serviceaccount:{NAMESPACE}:{RELEASE}");
    let (resource, subresource) = match resource.split_once('/') {
        Some((resource, sub)) => (resource, Some(format!("--subresource={sub}"))),
        None => (resource, None),
    };
    let mut args = vec!["auth", "can-i", verb, resource, subject.as_str()];
    args.extend(subresource.as_deref());
    if let Some(namespace) = namespace {
        args.extend_from_slice(&["-n", namespace]);
    }
    let output = plane.kubectl_output(&args, None).unwrap();
    String::from_utf8_lossy(&output.stdout).trim() == "yes"
}

/// The values of the install; `changes` are merged in (objects key by key).
pub fn values(port: u16, ca_bundle: &str, changes: Value) -> Value {
    let mut values = json!({
        "tls": {"mode": "secret", "secret": {"name": "iomete-secrets-webhook-tls", "caBundle": ca_bundle}},
        "admission": {"url": format!("https://127.0.0.1:{port}/mutate")},
        "monitoring": {"mode": "operator"},
        // The shortest check interval, so the VaultConfig's Ready condition comes quickly.
        "config": {"vault": {"checkInterval": "5s"}},
    });
    merge(&mut values, changes);
    values
}

fn merge(target: &mut Value, changes: Value) {
    match (target, changes) {
        (Value::Object(target), Value::Object(changes)) => {
            for (key, value) in changes {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, changes) => *target = changes,
    }
}

/// The namespaced objects named after the release that the chart installs with the values of
/// [`values`] (the monitoring objects: `monitoring.mode` operator, the PodMonitor).
pub const NAMESPACED: [&str; 9] = [
    "serviceaccount",
    "role",
    "rolebinding",
    "deployment",
    "service",
    "poddisruptionbudget",
    "networkpolicy",
    "podmonitor",
    "prometheusrule",
];
pub const CLUSTER_WIDE: [&str; 3] = [
    "clusterrole",
    "clusterrolebinding",
    "mutatingwebhookconfiguration",
];
pub const CONFIG_MAPS: [&str; 2] = [
    "iomete-secrets-webhook-config",
    "iomete-secrets-webhook-dashboard",
];

/// Asserts that every object of the install is there (`present`) or gone.
pub fn assert_objects(plane: &ControlPlane, present: bool, namespaced: &[&str]) {
    let there = |args: &[&str]| get(plane, args).is_some();
    for kind in namespaced {
        assert_eq!(there(&[kind, RELEASE, "-n", NAMESPACE]), present, "{kind}");
    }
    for kind in CLUSTER_WIDE {
        assert_eq!(there(&[kind, RELEASE]), present, "{kind}");
    }
    for name in CONFIG_MAPS {
        assert_eq!(
            there(&["configmap", name, "-n", NAMESPACE]),
            present,
            "{name}"
        );
    }
}

/// The chart's RBAC, exactly: the stores and VaultConfigs of its namespace, their status patch,
/// the namespaces; not pods, not another namespace's Secrets, no VaultConfig writes.
pub fn assert_rbac(plane: &ControlPlane) {
    let vault_configs = "vaultconfigs.secrets.iomete.com";
    assert!(can(plane, "list", "secrets", Some(NAMESPACE)));
    assert!(can(plane, "watch", vault_configs, Some(NAMESPACE)));
    assert!(can(
        plane,
        "patch",
        &format!("{vault_configs}/status"),
        Some(NAMESPACE)
    ));
    assert!(can(plane, "list", "namespaces", None));
    assert!(!can(plane, "list", "secrets", Some("default")));
    assert!(!can(plane, "update", vault_configs, Some(NAMESPACE)));
    // The broker reads its caller's pod by name and reviews its token; it lists no pods.
    assert!(can(plane, "get", "pods", Some("default")));
    assert!(can(
        plane,
        "create",
        "tokenreviews.authentication.k8s.io",
        None
    ));
    assert!(!can(plane, "list", "pods", Some(NAMESPACE)));
}
