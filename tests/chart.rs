//! The Helm chart (`charts/iomete-secrets-webhook`) and the monitoring kit hold their promises
//! offline: runs `scripts/validate-chart.sh` (helm lint and helm template over the values in
//! the chart's `ci/` folder, every rendering against the official Kubernetes schemas and the
//! Prometheus Operator's CRDs, the chart compared object for object with `deploy/`, promtool
//! `check rules` and `test rules` on the alerts, values.schema.json's rejections, and this
//! build's binary accepting every rendering's args and env). The install into a real
//! kube-apiserver is `e2e/cluster/helm.rs`.
//!
//! helm and promtool come from `scripts/ensure-helm-tools.sh`; without them (or without kubectl)
//! the test says how to get them and passes, except under CI, where it fails.

use std::path::Path;
use std::process::{Command, Stdio};

#[path = "support/helm_tools.rs"]
mod helm_tools;

#[test]
fn chart_validates() {
    let Some(tools) = helm_tools::helm_tools_or_skip("chart_validates") else {
        return;
    };
    let kubectl = Command::new("kubectl")
        .args(["version", "--client"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if kubectl.is_err() {
        assert!(
            !helm_tools::ci(),
            "kubectl is not on PATH under CI, where the chart must be compared with deploy/"
        );
        eprintln!("note: kubectl is not on PATH; skipping the validation of the chart");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("bash")
        .arg(root.join("scripts/validate-chart.sh"))
        .current_dir(root)
        .env("IOMETE_HELM_TOOLS_BIN", &tools)
        .env(
            "IOMETE_SECRETS_WEBHOOK_BIN",
            env!("CARGO_BIN_EXE_iomete-secrets-webhook"),
        )
        .stdin(Stdio::null())
        .output()
        .expect("bash runs scripts/validate-chart.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scripts/validate-chart.sh failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // Shown with --nocapture: what was validated.
    println!("{stdout}{stderr}");
}
