//! The webhook side of the Helm test: the binary run the way the installed chart configures it
//! (no kubelet runs the chart's Deployment here), pods sent through it, and its `/metrics`
//! compared with what the dashboard and the alerts read.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::release::{NAMESPACE, RELEASE, get};
use crate::control_plane::{self, ControlPlane, free_port, spawn_guarded};
use crate::{container_env, fixture_pod, is_retriable, stderr};

/// The webhook binary, run with the args and env of the Deployment the chart installed (its
/// ConfigMap read back from the API server), as the chart's ServiceAccount, serving on
/// 127.0.0.1 with the certificate of the chart's TLS Secret.
pub struct ChartWebhook {
    child: Option<Child>,
    pub admin_port: u16,
    /// Where the broker listens, when the chart turned it on.
    pub broker_port: u16,
    log: PathBuf,
}

impl ChartWebhook {
    pub fn start(plane: &ControlPlane, certs: &Path, port: u16) -> ChartWebhook {
        let deployment = get(plane, &["deployment", RELEASE, "-n", NAMESPACE])
            .expect("the chart installed its Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let (admin_port, broker_port) = (free_port(), free_port());
        let args: Vec<String> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|arg| {
                let arg = arg.as_str().unwrap();
                match arg.split_once('=') {
                    Some(("--listen", _)) => format!("--listen=127.0.0.1:{port}"),
                    Some(("--admin-listen", _)) => format!("--admin-listen=127.0.0.1:{admin_port}"),
                    Some(("--broker-listen", _)) => {
                        format!("--broker-listen=127.0.0.1:{broker_port}")
                    }
                    Some((flag, path)) if path.starts_with("/etc/webhook/tls/") => {
                        let file = path.rsplit('/').next().unwrap();
                        format!("{flag}={}", certs.join(file).display())
                    }
                    _ => arg.to_owned(),
                }
            })
            .collect();
        let config = get(
            plane,
            &[
                "configmap",
                "iomete-secrets-webhook-config",
                "-n",
                NAMESPACE,
            ],
        )
        .expect("the chart installed its ConfigMap");
        let mut command = Command::new(crate::env::binary());
        command.args(&args).env_clear();
        command.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for var in container["env"].as_array().unwrap() {
            let name = var["name"].as_str().unwrap();
            let source = &var["valueFrom"];
            let value = if let Some(value) = var["value"].as_str() {
                Some(value.to_owned())
            } else if source["fieldRef"]["fieldPath"] == "metadata.namespace" {
                Some(NAMESPACE.to_owned())
            } else {
                let key = source["configMapKeyRef"]["key"].as_str().unwrap();
                config["data"][key].as_str().map(str::to_owned)
            };
            if let Some(value) = value {
                command.env(name, value);
            }
        }
        let account = pod["serviceAccountName"].as_str().unwrap();
        let token = plane.kubectl_ok(
            &["create", "token", account, "-n", NAMESPACE, "--duration=1h"],
            None,
        );
        let kubeconfig = plane.token_kubeconfig("chart-webhook", token.trim());
        let log = plane.dir().join("chart-webhook.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        command
            .env("KUBECONFIG", kubeconfig)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let mut webhook = ChartWebhook {
            child: Some(spawn_guarded(command).unwrap()),
            admin_port,
            broker_port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while control_plane::http_get(admin_port, "/readyz").is_none() {
            let exited = webhook.child.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "the webhook is not ready ({exited:?}):\n{}",
                webhook.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        webhook
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        control_plane::http_get(self.admin_port, "/metrics").unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            control_plane::terminate(child, Duration::from_secs(20));
        }
    }
}

impl Drop for ChartWebhook {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every `iomete_secrets_webhook_*` name the dashboard and the alerts read.
pub fn metric_names_used() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names = BTreeSet::new();
    for file in [
        "charts/iomete-secrets-webhook/files/grafana-dashboard.json",
        "deploy/monitoring/prometheus-rules.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for (start, _) in text.match_indices("iomete_secrets_webhook_") {
            let name: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

/// The sample names of a Prometheus text exposition.
pub fn metric_names_exported(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| line.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

/// `promtool check metrics` of `exposition`: its output, or a panic with its findings.
///
/// The webhook serves OpenMetrics, where a counter's family is named without `_total`;
/// promtool reads the classic text format, where the family carries it. So counters' `# HELP`
/// and `# TYPE` lines get the `_total` their samples have (what Prometheus stores), and the
/// OpenMetrics-only `# EOF` and `# UNIT` lines go; the samples are linted as served.
pub fn promtool_check_metrics(tools: &Path, exposition: &str) -> String {
    let counters: BTreeSet<&str> = exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let classic: String = exposition
        .lines()
        .filter(|line| *line != "# EOF" && !line.starts_with("# UNIT "))
        .map(|line| {
            let family = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
                .and_then(|rest| rest.split(' ').next())
                .filter(|family| counters.contains(family));
            match family {
                Some(family) => line.replacen(family, &format!("{family}_total"), 1) + "\n",
                None => format!("{line}\n"),
            }
        })
        .collect();
    let mut child = Command::new(tools.join("promtool"))
        .args(["check", "metrics", "--lint=all"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(classic.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "promtool check metrics:\n{text}\n{classic}"
    );
    text
}

/// Creates `pod`, retrying while the webhook answers 503 (its watch has not delivered a
/// namespace or store created a moment ago): `Ok(stored pod)` or `Err(kubectl's message)`.
pub fn create(plane: &ControlPlane, pod: &Value) -> Result<Value, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let output = plane
            .kubectl_output(&["create", "-f", "-", "-o", "json"], Some(&pod.to_string()))
            .unwrap();
        if output.status.success() {
            return Ok(serde_json::from_slice(&output.stdout).unwrap());
        }
        let message = stderr(&output);
        if !is_retriable(&message) || Instant::now() > deadline {
            return Err(message);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A Spark driver in `namespace` referencing `key` of `source` (`KUBERNETES`/`VAULT`, `id`).
pub fn driver(namespace: &str, name: &str, key: &str, source: (&str, &str)) -> Value {
    let mut pod = fixture_pod("spark/spark35-driver-pod.json", namespace, name);
    pod["metadata"]["annotations"] = json!({"secrets.iomete.com/env-secrets": json!([
        {"key": "SECRET", "secretObject": {"key": key, "source": {"type": source.0, "id": source.1}}}
    ]).to_string()});
    pod
}

pub fn injected(pod: &Value) -> Option<String> {
    container_env(pod, "spark-kubernetes-driver", "SECRET")
}
