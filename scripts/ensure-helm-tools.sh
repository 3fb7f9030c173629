#!/usr/bin/env bash
# Builds, once, the tools that test the Helm chart and the monitoring kit:
#   helm      from helm.sh/helm/v4 (tools/helm/go.mod)
#   promtool  from github.com/prometheus/prometheus/cmd/promtool (tools/promtool/go.mod)
# and fetches the Prometheus Operator's CRDs (ServiceMonitor, PodMonitor, PrometheusRule) from
# the Go module github.com/prometheus-operator/prometheus-operator (its
# example/prometheus-operator-crd/ folder), so that the cluster tests can install them into the
# real kube-apiserver and have it validate the chart's monitoring objects.
# Everything comes from the Go module proxy; nothing else is downloaded. The binaries and CRDs
# are cached under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/iomete-secrets-webhook/helm-tools/<versions>/bin/
#
# Prints what it did and how long each step took; the LAST line of stdout is the bin directory
# (the tests read it as IOMETE_HELM_TOOLS_BIN; progress and Go's own output go to stderr). With
# the cache present (a stamp naming the versions and the hash of the go.mod/go.sum files, and
# binaries that report those versions) it takes well under a second and builds nothing.
#
# First build on a 2-core machine: see README ("The Helm chart and the monitoring kit: how they
# are tested"). A lock keeps two concurrent callers from building at once.
#
# How to move a version: tools/helm/README.md.
#
# Environment:
#   IOMETE_HELM_TOOLS_CACHE  the cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/iomete-secrets-webhook/helm-tools)
#   GO                       the go command (default go; Go >= the go.mod files' `go` lines)
set -euo pipefail

started=$SECONDS
repo="$(cd "$(dirname "$0")/.." && pwd)"
go_cmd="${GO:-go}"

# The Prometheus Operator release whose CRDs the tests install (the CRDs are data, not code, so
# they are not in a go.mod). The h1: hash pins the module zip's content, as a go.sum line would.
operator_module=github.com/prometheus-operator/prometheus-operator
operator_version=v0.92.1
operator_sum="h1:rHWuFo6SVya4FBSCNg2DCzyc4xAv54zk3eDTzp5mQZc="
operator_crds=(podmonitors prometheusrules servicemonitors)

# The pinned versions, read from the go.mod files so that there is one place to change them.
module_version() { # go.mod module-path
    awk -v path="$2" '($1 == path && $2 ~ /^v/) { print $2 } ($1 == "require" && $2 == path) { print $3 }' "$1" | head -1
}
helm_version="$(module_version "$repo/tools/helm/go.mod" helm.sh/helm/v4)"
prometheus_version="$(module_version "$repo/tools/promtool/go.mod" github.com/prometheus/prometheus)"
if [[ -z "$helm_version" || -z "$prometheus_version" ]]; then
    echo "ensure-helm-tools: cannot read the helm.sh/helm/v4 and github.com/prometheus/prometheus versions from tools/*/go.mod" >&2
    exit 1
fi
# Prometheus tags its Go module v0.3XX.Y for the release v3.XX.Y.
prometheus_release="${prometheus_version#v0.}"
prometheus_release="3.$((10#${prometheus_release:1:2})).${prometheus_release#*.}"

cache_root="${IOMETE_HELM_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iomete-secrets-webhook/helm-tools}"
home="$cache_root/helm-$helm_version-prometheus-$prometheus_version-operator-$operator_version"
bin="$home/bin"
stamp="$bin/.stamp"
inputs_hash="$(cat "$repo"/tools/helm/go.{mod,sum} "$repo"/tools/promtool/go.{mod,sum} | sha256sum | cut -d' ' -f1)"
wanted_stamp="helm=$helm_version prometheus=$prometheus_version operator=$operator_version inputs=$inputs_hash"

cached() {
    [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted_stamp" ]] || return 1
    [[ -x "$bin/helm" && -x "$bin/promtool" ]] || return 1
    local crd
    for crd in "${operator_crds[@]}"; do
        [[ -s "$bin/prometheus-operator-crds/monitoring.coreos.com_$crd.yaml" ]] || return 1
    done
    # The binaries themselves must say the pinned versions (a stamp alone could lie). Their
    # output is read whole first: `grep -q` stops at the first match, and under pipefail the
    # writer's SIGPIPE would fail the check at random.
    local printed
    printed="$("$bin/helm" version --template '{{.Version}}' 2>/dev/null)" || return 1
    grep -qx "$helm_version" <<<"$printed" || return 1
    printed="$("$bin/promtool" --version 2>&1)" || return 1
    grep -q "^promtool, version $prometheus_release " <<<"$printed" || return 1
}

report_cached() {
    echo "ensure-helm-tools: helm $helm_version, promtool $prometheus_release and the Prometheus Operator $operator_version CRDs already in $bin ($((SECONDS - started))s)"
    echo "$bin"
}

if cached; then
    report_cached
    exit 0
fi

mkdir -p "$home"
exec 9>"$home/.lock"
flock 9
# Another caller may have finished the build while this one waited for the lock.
if cached; then
    report_cached
    exit 0
fi

if ! command -v "$go_cmd" >/dev/null; then
    echo "ensure-helm-tools: no Go toolchain ($go_cmd); install Go (see tools/promtool/go.mod for the version)" >&2
    exit 1
fi
echo "ensure-helm-tools: building helm $helm_version and promtool $prometheus_release with $("$go_cmd" version) into $bin (first time: several minutes on 2 cores)" >&2

# Build into a fresh directory and move it in place at the end, so an interrupted build never
# leaves binaries that look finished.
staging="$home/bin.partial"
rm -rf "$staging"
mkdir -p "$staging/prometheus-operator-crds"

build() { # name module-dir package ldflags
    local name="$1" dir="$2" package="$3" ldflags="$4" begun=$SECONDS
    echo "ensure-helm-tools: go build $package" >&2
    (cd "$repo/tools/$dir" && GOTOOLCHAIN=local GOFLAGS="-mod=readonly -p=2" CGO_ENABLED=0 \
        "$go_cmd" build -trimpath -ldflags "$ldflags" -o "$staging/$name" "$package") >&2
    echo "ensure-helm-tools: built $name in $((SECONDS - begun))s"
}
# The version stamps the release builds set (Makefile of helm, .promu.yml of Prometheus); they
# only change the link step, so Go's build cache is reused.
build helm helm helm.sh/helm/v4/cmd/helm \
    "-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
build promtool promtool github.com/prometheus/prometheus/cmd/promtool \
    "-s -w -X github.com/prometheus/common/version.Version=$prometheus_release -X github.com/prometheus/common/version.Branch=HEAD"

begun=$SECONDS
echo "ensure-helm-tools: go mod download $operator_module@$operator_version" >&2
download="$(cd "$home" && GOTOOLCHAIN=local GOFLAGS=-mod=mod GO111MODULE=on \
    "$go_cmd" mod download -json "$operator_module@$operator_version")"
dir="$(sed -n 's/^\t"Dir": "\(.*\)",$/\1/p' <<<"$download")"
sum="$(sed -n 's/^\t"Sum": "\(.*\)",$/\1/p' <<<"$download")"
if [[ "$sum" != "$operator_sum" || ! -d "$dir" ]]; then
    echo "ensure-helm-tools: $operator_module@$operator_version: expected $operator_sum, got '${sum}':" >&2
    echo "$download" >&2
    exit 1
fi
for crd in "${operator_crds[@]}"; do
    cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml" "$staging/prometheus-operator-crds/"
done
chmod -R u+w "$staging/prometheus-operator-crds"
echo "ensure-helm-tools: copied the ${operator_crds[*]} CRDs of $operator_version in $((SECONDS - begun))s"

echo "$wanted_stamp" >"$staging/.stamp"
rm -rf "$bin"
mv "$staging" "$bin"
if ! cached; then
    echo "ensure-helm-tools: the built binaries do not report helm $helm_version / promtool $prometheus_release:" >&2
    "$bin/helm" version >&2 || true
    "$bin/promtool" --version >&2 || true
    exit 1
fi
echo "ensure-helm-tools: built helm $helm_version and promtool $prometheus_release, fetched the Prometheus Operator $operator_version CRDs in $((SECONDS - started))s"
echo "$bin"
