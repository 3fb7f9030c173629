#!/usr/bin/env bash
# Builds, once, the real Kubernetes control plane the cluster tests (e2e/cluster/) run:
# kube-apiserver and kubectl from k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3 and etcdctl from go.etcd.io/etcd/etcdctl/v3, at
# the versions pinned by tools/control-plane/go.mod, and caches them under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/iomete-secrets-webhook/control-plane/<kubernetes version>/bin/
# Everything comes from the Go module proxy (`go build` of the pinned modules); nothing else is
# downloaded.
#
# Prints what it did and how long it took; the LAST line of stdout is the bin directory (the
# tests read it; progress and Go's own output go to stderr). With the cache present (the three
# binaries, a stamp naming the versions and the hash of go.mod/go.sum, and binaries that report
# those versions) it takes well under a second and builds nothing.
#
# First build on a 2-core machine: see README ("Cluster tests"). A lock keeps two concurrent
# callers (CI and a test binary) from building at once.
#
# Environment:
#   IOMETE_CONTROL_PLANE_CACHE  the cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/iomete-secrets-webhook/control-plane)
#   GO                          the go command (default go; Go >= the go.mod's `go` line)
set -euo pipefail

started=$SECONDS
repo="$(cd "$(dirname "$0")/.." && pwd)"
module="$repo/tools/control-plane"
go_cmd="${GO:-go}"

# The pinned versions, read from go.mod so that there is one place to change them.
k8s_version="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" { print $3 } $1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2 }' "$module/go.mod" | head -1)"
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ { print $2 }' "$module/go.mod" | head -1)"
if [[ -z "$k8s_version" || -z "$etcd_version" ]]; then
    echo "ensure-control-plane: cannot read the k8s.io/kubernetes and etcd versions from $module/go.mod" >&2
    exit 1
fi

cache_root="${IOMETE_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iomete-secrets-webhook/control-plane}"
home="$cache_root/$k8s_version"
bin="$home/bin"
stamp="$bin/.stamp"
inputs_hash="$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -d' ' -f1)"
wanted_stamp="kubernetes=$k8s_version etcd=$etcd_version inputs=$inputs_hash"

cached() {
    [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted_stamp" ]] || return 1
    local tool
    for tool in kube-apiserver kubectl etcd etcdctl; do
        [[ -x "$bin/$tool" ]] || return 1
    done
    # The binaries themselves must say the pinned versions (a stamp alone could lie). Their
    # output is read whole first: `grep -q` stops at the first match, and under pipefail the
    # writer's SIGPIPE would fail the check at random.
    [[ "$("$bin/kube-apiserver" --version 2>/dev/null)" == "Kubernetes $k8s_version" ]] || return 1
    local printed
    printed="$("$bin/kubectl" version --client 2>/dev/null)" || return 1
    grep -qx "Client Version: $k8s_version" <<<"$printed" || return 1
    printed="$("$bin/etcd" --version 2>/dev/null)" || return 1
    grep -qx "etcd Version: ${etcd_version#v}" <<<"$printed" || return 1
    printed="$("$bin/etcdctl" version 2>/dev/null)" || return 1
    grep -qx "etcdctl version: ${etcd_version#v}" <<<"$printed" || return 1
}

report_cached() {
    echo "ensure-control-plane: kube-apiserver and kubectl $k8s_version, etcd $etcd_version already built in $bin ($((SECONDS - started))s)"
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
    echo "ensure-control-plane: no Go toolchain ($go_cmd); install Go (see tools/control-plane/go.mod for the version)" >&2
    exit 1
fi
echo "ensure-control-plane: building kube-apiserver, kubectl $k8s_version and etcd, etcdctl $etcd_version with $("$go_cmd" version) into $bin (first time: many minutes on 2 cores)" >&2

# Build into a fresh directory and move it in place at the end, so an interrupted build never
# leaves binaries that look finished.
staging="$home/bin.partial"
rm -rf "$staging"
mkdir -p "$staging"

# Without these, the Kubernetes binaries report v0.0.0-master (the release build stamps them
# the same way). They only change the link step, so Go's build cache is reused.
version_pkg=k8s.io/component-base/version
minor="${k8s_version#v1.}"
minor="${minor%%.*}"
ldflags="-s -w"
for pkg in "$version_pkg" k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean"
done

build() {
    local name="$1" package="$2" begun=$SECONDS
    echo "ensure-control-plane: go build $package" >&2
    (cd "$module" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly "$go_cmd" build -trimpath \
        -ldflags "$ldflags" -o "$staging/$name" "$package") >&2
    echo "ensure-control-plane: built $name in $((SECONDS - begun))s" >&2
}
build etcd go.etcd.io/etcd/server/v3
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kubectl k8s.io/kubernetes/cmd/kubectl
build etcdctl go.etcd.io/etcd/etcdctl/v3

echo "$wanted_stamp" >"$staging/.stamp"
rm -rf "$bin"
mv "$staging" "$bin"
if ! cached; then
    echo "ensure-control-plane: the built binaries do not report $k8s_version / $etcd_version:" >&2
    "$bin/kube-apiserver" --version >&2 || true
    "$bin/kubectl" version --client >&2 || true
    "$bin/etcd" --version >&2 || true
    exit 1
fi
echo "ensure-control-plane: built kube-apiserver, kubectl $k8s_version and etcd, etcdctl $etcd_version in $((SECONDS - started))s"
echo "$bin"
