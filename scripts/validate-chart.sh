#!/usr/bin/env bash
# Validates the Helm chart (charts/iomete-secrets-webhook) and the monitoring kit offline; no
# cluster needed (the cluster test, e2e/cluster/helm.rs, installs the chart into a real
# kube-apiserver).
#
#   bash scripts/validate-chart.sh
#
# What it checks is listed at the top of scripts/validate_chart.py: helm lint and helm template
# over the values in the chart's ci/ folder, every rendering against the official Kubernetes
# schemas (kubernetes-validate, strict, like scripts/validate-manifests.sh) and the Prometheus
# Operator's CRDs, the chart against deploy/ (no drift), promtool check/test rules, and the
# rejections of values.schema.json and the templates.
#
# Exits non-zero on any failure. Uses the Python venv scripts/validate-manifests.sh makes (same
# pinned packages; made here when missing).
#
# Environment:
#   IOMETE_HELM_TOOLS_BIN       helm, promtool and the Operator's CRDs (default: the last line of
#                               scripts/ensure-helm-tools.sh, which builds them the first time)
#   IOMETE_SECRETS_WEBHOOK_BIN  the webhook binary (tests/chart.rs passes cargo's); without it
#                               the script runs `cargo build` and uses target/debug
#   IOMETE_VALIDATE_VENV        the venv (default
#                               ${XDG_CACHE_HOME:-$HOME/.cache}/iomete-secrets-webhook/validate-venv)
#   PYTHON                      the interpreter to build the venv with (default python3)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
started=$(date +%s%N)
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion), as for deploy/.
min_kubernetes=1.30

say() { printf '%s\n' "$*"; }
die() {
    printf 'validate-chart: FAILED: %s\n' "$*" >&2
    exit 1
}

command -v kubectl >/dev/null || die "kubectl is not on PATH (it renders deploy/ to compare)"
bin="${IOMETE_HELM_TOOLS_BIN:-$(bash "$root/scripts/ensure-helm-tools.sh" | tail -n 1)}"
for tool in helm promtool; do
    [[ -x "$bin/$tool" ]] || die "no $tool in $bin (run scripts/ensure-helm-tools.sh)"
done

# --- the Python tools: the venv of validate-manifests.sh, with its pinned requirements --------
eval "$(grep '^requirements=' "$root/scripts/validate-manifests.sh")"
cache="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/iomete-secrets-webhook"
venv="${IOMETE_VALIDATE_VENV:-$cache/validate-venv}"
stamp="$venv/.iomete-validate-requirements"
want="${requirements[*]}"
venv_ready() { [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; }
if ! venv_ready; then
    mkdir -p "$(dirname "$venv")"
    exec 9>"$venv.lock"
    flock 9
    if ! venv_ready; then
        say "== installing ${want} into $venv (one time)"
        rm -rf "$venv"
        "${PYTHON:-python3}" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
            "${requirements[@]}" || die "pip could not install ${want} (PyPI unreachable?)"
        echo "$want" >"$stamp"
    fi
    exec 9>&-
fi

# --- a scratch copy of deploy/, certificates, and the overlays the comparison renders -----------
work="$(mktemp -d "${TMPDIR:-/tmp}/validate-chart.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cp -R "$root/deploy" "$work/deploy"
rm -rf "$work/deploy/overlays/plain/tls"
# Helm's caches and configuration stay in the scratch directory.
export HELM_CACHE_HOME="$work/helm/cache" HELM_CONFIG_HOME="$work/helm/config" HELM_DATA_HOME="$work/helm/data"

binary="${IOMETE_SECRETS_WEBHOOK_BIN:-}"
if [[ -z "$binary" ]]; then
    say "== building the webhook binary (set IOMETE_SECRETS_WEBHOOK_BIN to skip)"
    (cd "$root" && cargo build --quiet --bin iomete-secrets-webhook) || die "cargo build failed"
    binary="$(cd "$root" && cargo metadata --format-version 1 --no-deps |
        "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/iomete-secrets-webhook"
fi
[[ -x "$binary" ]] || die "$binary is not an executable"
"$binary" certs --service iomete-secrets-webhook --namespace iomete-system \
    --out "$work/deploy/overlays/plain/tls" >/dev/null || die "the certs subcommand failed"

# The chart's defaults are the cert-manager overlay with the network-policy component.
mkdir -p "$work/deploy/overlays/chart-defaults"
cat >"$work/deploy/overlays/chart-defaults/kustomization.yaml" <<'EOF'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../cert-manager
components:
  - ../../components/network-policy
EOF
# deploy/monitoring with servicemonitor.yaml in place of podmonitor.yaml, as its comment says.
cp -R "$work/deploy/monitoring" "$work/deploy/monitoring-servicemonitor"
sed -i 's/^  - podmonitor.yaml$/  - servicemonitor.yaml/' "$work/deploy/monitoring-servicemonitor/kustomization.yaml"
grep -q '^  - servicemonitor.yaml$' "$work/deploy/monitoring-servicemonitor/kustomization.yaml" ||
    die "deploy/monitoring/kustomization.yaml no longer lists podmonitor.yaml"

say "== $("$bin/helm" version --short), $("$bin/promtool" --version 2>&1 | head -1)"
status=0
"$venv/bin/python" "$root/scripts/validate_chart.py" "$root" "$work" "$bin" "$binary" "$min_kubernetes" || status=$?
elapsed=$((($(date +%s%N) - started) / 1000000))
((status == 0)) || die "see above (${elapsed} ms)"
say "validate-chart: OK: charts/iomete-secrets-webhook, deploy/monitoring, deploy/components (${elapsed} ms)"
