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

#[path = "support/helm_tools.rs"]
mod helm_tools;
#[path = "support/validation_script.rs"]
mod validation_script;

#[test]
fn chart_validates() {
    let Some(tools) = helm_tools::helm_tools_or_skip("chart_validates") else {
        return;
    };
    if !validation_script::kubectl_or_skip(
        helm_tools::ci(),
        "the chart must be compared with deploy/",
    ) {
        return;
    }
    validation_script::run(
        "validate-chart.sh",
        &[("IOMETE_HELM_TOOLS_BIN", tools.as_os_str())],
    );
}
