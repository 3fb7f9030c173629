#!/usr/bin/env bash
# One command for a local cluster to try the webhook with kubectl (examples/playground.rs):
# builds what is missing (kube-apiserver, kubectl and etcd with scripts/ensure-control-plane.sh,
# OpenBao with scripts/ensure-openbao.sh, the webhook with cargo), starts the control plane and
# the webhook registered with the shipped configuration, seeds namespaces, stores and a
# VaultConfig, prints the `export KUBECONFIG=...` line and examples, and stops everything on
# Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

IOMETE_CONTROL_PLANE_BIN="$(bash scripts/ensure-control-plane.sh | tail -n 1)"
export IOMETE_CONTROL_PLANE_BIN
bash scripts/ensure-openbao.sh >/dev/null
cargo build --quiet --bin iomete-secrets-webhook
IOMETE_WEBHOOK_BINARY="$(realpath "${CARGO_TARGET_DIR:-target}")/debug/iomete-secrets-webhook"
export IOMETE_WEBHOOK_BINARY
exec cargo run --quiet --example playground
