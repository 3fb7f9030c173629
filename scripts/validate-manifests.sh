#!/usr/bin/env bash
# Validates the Kubernetes manifests under deploy/ offline; no cluster needed.
#
#   bash scripts/validate-manifests.sh
#
# 1. Renders deploy/base, deploy/overlays/cert-manager and deploy/overlays/plain with
#    `kubectl kustomize` (in a temporary copy of deploy/; the plain overlay gets throwaway
#    certificates from the webhook's own `certs` subcommand), plus the feature-flag example of
#    deploy/README.md.
# 2. Validates every rendered document, and the Secrets of deploy/examples, against the official
#    Kubernetes OpenAPI schemas, strict (unknown fields rejected), for the oldest supported
#    Kubernetes version and the newest one the PyPI package kubernetes-validate bundles.
#    cert-manager's Issuer and Certificate have no official schema: they are checked
#    structurally instead (known fields, references resolve). The VaultConfig CRD must be what
#    the binary's `crd` subcommand prints (a stale YAML fails), and the example VaultConfigs are
#    validated against its schema (with jsonschema), which must also reject broken ones.
# 3. Evaluates the webhook's matchConditions (CEL, with the PyPI package cel-python) against a
#    table of pods and against every pod in tests/fixtures, where the result must equal a plain
#    Python reading of the annotation contract and must never be an evaluation error.
# 4. Asserts the invariants deploy/README.md promises (failurePolicy Fail with matchConditions,
#    CREATE only, v1 only, sideEffects None, selectors that spare kube-system, the webhook's
#    namespace and its own pods, least-privilege RBAC, hardened pods, no `latest` image, ...),
#    and that the Deployment's args and env (also with the optional keys of config.env that are
#    commented out switched on) are accepted by the real binary's flag parsing.
#
# Exits non-zero on any failure. The Python tools live in a venv in a cache directory, made once
# (a stamp written last records the pinned versions; a lock serialises concurrent callers).
#
# Environment:
#   IOMETE_SECRETS_WEBHOOK_BIN  the webhook binary (tests/manifests.rs passes cargo's); without
#                               it the script runs `cargo build` and uses target/debug, or, with
#                               no cargo, makes the certificates with openssl and skips the
#                               binary checks (saying so)
#   IOMETE_VALIDATE_VENV        the venv (default
#                               ${XDG_CACHE_HOME:-$HOME/.cache}/iomete-secrets-webhook/validate-venv)
#   PYTHON                      the interpreter to build the venv with (default python3)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
started=$(date +%s%N)

# Oldest Kubernetes the manifests support: matchConditions are GA (and the preStop `sleep`
# action is on by default) from 1.30.
min_kubernetes=1.30
# jsonschema (for the VaultConfig examples) comes with kubernetes-validate, which validates with it.
requirements=(kubernetes-validate==1.37.0 cel-python==0.5.0 PyYAML==6.0.3)

say() { printf '%s\n' "$*"; }
die() {
    printf 'validate-manifests: FAILED: %s\n' "$*" >&2
    exit 1
}

command -v kubectl >/dev/null || die "kubectl is not on PATH (it renders the kustomizations)"
python="${PYTHON:-python3}"
command -v "$python" >/dev/null || die "$python is not on PATH"

# --- the Python tools, in a cached venv ------------------------------------------------------
cache="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/iomete-secrets-webhook"
venv="${IOMETE_VALIDATE_VENV:-$cache/validate-venv}"
stamp="$venv/.iomete-validate-requirements"
want="${requirements[*]}"
venv_ready() { [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; }
if ! venv_ready; then
    mkdir -p "$(dirname "$venv")"
    exec 9>"$venv.lock"
    flock 9
    # Another caller may have finished while this one waited for the lock.
    if ! venv_ready; then
        say "== installing ${want} into $venv (one time)"
        rm -rf "$venv"
        "$python" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
            "${requirements[@]}" || die "pip could not install ${want} (PyPI unreachable?)"
        echo "$want" >"$stamp"
    fi
    exec 9>&-
fi

# --- a scratch copy of deploy/ ---------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/validate-manifests.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cp -R "$root/deploy" "$work/deploy"
# Never use (or show) a developer's real certificates: make throwaway ones.
rm -rf "$work/deploy/overlays/plain/tls"
tls="$work/deploy/overlays/plain/tls"

bin="${IOMETE_SECRETS_WEBHOOK_BIN:-}"
if [[ -z "$bin" ]] && command -v cargo >/dev/null; then
    say "== building the webhook binary (set IOMETE_SECRETS_WEBHOOK_BIN to skip)"
    (cd "$root" && cargo build --quiet --bin iomete-secrets-webhook) || die "cargo build failed"
    target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps |
        "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    bin="$target_dir/debug/iomete-secrets-webhook"
fi
if [[ -n "$bin" ]]; then
    [[ -x "$bin" ]] || die "IOMETE_SECRETS_WEBHOOK_BIN=$bin is not an executable"
    say "== certificates: $bin certs --service iomete-secrets-webhook --namespace iomete-system"
    "$bin" certs --service iomete-secrets-webhook --namespace iomete-system --out "$tls" >/dev/null ||
        die "the certs subcommand failed"
else
    say "== certificates: openssl (no webhook binary, no cargo: the binary checks are skipped)"
    command -v openssl >/dev/null || die "neither the webhook binary, cargo nor openssl is available"
    mkdir -p "$tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
        -subj "/CN=iomete-secrets-webhook CA" -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=iomete-secrets-webhook" -keyout "$tls/tls.key" -out "$tls/tls.csr" 2>/dev/null
    san="subjectAltName=DNS:iomete-secrets-webhook,DNS:iomete-secrets-webhook.iomete-system"
    san+=",DNS:iomete-secrets-webhook.iomete-system.svc,DNS:iomete-secrets-webhook.iomete-system.svc.cluster.local"
    openssl x509 -req -in "$tls/tls.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
        -days 1 -extfile <(echo "$san") -out "$tls/tls.crt" 2>/dev/null
    rm -f "$tls/ca.key" "$tls/tls.csr" "$tls/ca.srl"
    base64 -w0 "$tls/ca.crt" >"$tls/ca-bundle.b64"
fi
for file in ca.crt tls.crt tls.key ca-bundle.b64; do
    [[ -s "$tls/$file" ]] || die "the certificates lack $file, which the plain overlay reads"
done

# --- the feature-flag example of deploy/README.md, as written there --------------------------
# The first ```yaml block after the line `<!-- validate-manifests: secrets-v2-off -->`.
example="$work/deploy/overlays/readme-secrets-v2-off"
mkdir -p "$example"
awk '/<!-- validate-manifests: secrets-v2-off -->/ { found = 1; next }
     found == 1 && /^```yaml/ { found = 2; next }
     found == 2 && /^```/ { exit }
     found == 2 { print }' "$root/deploy/README.md" >"$example/kustomization.yaml"
[[ -s "$example/kustomization.yaml" ]] ||
    die "deploy/README.md has no \`\`\`yaml block after <!-- validate-manifests: secrets-v2-off -->"
# It is written as deploy/overlays/my-cluster/; here it sits beside the others, the same depth.

# --- the broker component, on the plain overlay ----------------------------------------------
mkdir -p "$work/deploy/overlays/plain-broker"
cat >"$work/deploy/overlays/plain-broker/kustomization.yaml" <<'YAML'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../plain
components:
  - ../../broker
YAML

# --- render ----------------------------------------------------------------------------------
mkdir -p "$work/rendered"
renders=(base overlays/cert-manager overlays/plain overlays/plain-broker overlays/readme-secrets-v2-off)
say "== kubectl kustomize ($(kubectl version --client 2>/dev/null | grep -i kustomize || echo 'kustomize'))"
for render in "${renders[@]}"; do
    out="$work/rendered/${render##*/}.yaml"
    if ! kubectl kustomize "$work/deploy/$render" >"$out" 2>"$work/kustomize.err"; then
        cat "$work/kustomize.err" >&2
        die "kubectl kustomize deploy/$render failed"
    fi
    say "   deploy/$render: $(grep -c '^kind: ' "$out") documents"
done

# --- schemas, CEL and invariants -------------------------------------------------------------
status=0
"$venv/bin/python" - "$root" "$work" "$min_kubernetes" "$bin" <<'PY' || status=$?
import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import celpy
import jsonschema
import kubernetes_validate.utils as kv
import yaml

root, work, min_kubernetes, binary = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
rendered = work / "rendered"
tls = work / "deploy/overlays/plain/tls"

checks = 0
failures = []


def check(condition, what):
    """Records one invariant; `what` says what must hold."""
    global checks
    checks += 1
    if not condition:
        failures.append(what)
        print(f"   FAIL: {what}")
    return bool(condition)


def load(name):
    return [d for d in yaml.safe_load_all((rendered / f"{name}.yaml").read_text()) if d]


RENDERS = {"base": load("base"), "cert-manager": load("cert-manager"), "plain": load("plain"),
           "plain-broker": load("plain-broker")}
EXAMPLE = load("readme-secrets-v2-off")
# Applied by hand, not part of any kustomization: read as written.
EXAMPLE_FILES = {f"deploy/examples/{path.name}": [d for d in yaml.safe_load_all(path.read_text()) if d]
            for path in sorted((root / "deploy/examples").glob("*.yaml"))}

# ---------------------------------------------------------------- schemas
print("== schemas (kubernetes-validate, strict)")
versions = [min_kubernetes, kv.latest_version()]
# The schemas are large JSON files (the definitions alone are over 1 MB); read each once.
_schema_contents = kv.schema_contents
_schema_cache = {}


def _cached_schema_contents(filename, version):
    if filename not in _schema_cache:
        _schema_cache[filename] = _schema_contents(filename, version)
    return _schema_cache[filename]


kv.schema_contents = _cached_schema_contents

# No official schema: cert-manager's kinds are checked structurally, VaultConfigs against the CRD.
CUSTOM_KINDS = {("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "Certificate"),
                ("secrets.iomete.com/v1", "VaultConfig")}
seen = set()
for render, docs in list(RENDERS.items()) + [("readme-secrets-v2-off", EXAMPLE)] + list(EXAMPLE_FILES.items()):
    for doc in docs:
        key = json.dumps(doc, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        for version in versions:
            try:
                kv.validate(doc, version, strict=True)
                check(True, "")
            except kv.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                check(False, f"{render}: {name} does not validate against Kubernetes {version}: {path}: {error.message}")
            except kv.SchemaNotFoundError as error:
                check(False, f"{render}: {name}: {error.message}")
print(f"   {len(seen)} distinct documents against Kubernetes {' and '.join(versions)}")


# ---------------------------------------------------------------- helpers
# The VaultConfig resource as the webhook's code and its Role name it.
CRD_GROUP, CRD_PLURAL = "secrets.iomete.com", "vaultconfigs"


def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found[0] if len(found) == 1 else None


def selector_matches(selector, labels):
    """metav1.LabelSelector semantics; None/{} selects everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, op, values = expression["key"], expression["operator"], expression.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def go_duration_seconds(text):
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text or "")
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * units[u] for n, u in parts)


def flag_values(args):
    values = {}
    for arg in args:
        if arg.startswith("--") and "=" in arg:
            flag, value = arg.split("=", 1)
            values[flag] = value
    return values


def resolve_env(deployment, docs):
    """The container's env as the kubelet would set it (None: unset)."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {}
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        source = var.get("valueFrom") or {}
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            env[var["name"]] = deployment["metadata"]["namespace"] if path == "metadata.namespace" else f"<{path}>"
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            config_map = one(docs, "ConfigMap", ref["name"])
            value = ((config_map or {}).get("data") or {}).get(ref["key"])
            check(value is not None or ref.get("optional"),
                  f"env {var['name']}: ConfigMap {ref['name']} key {ref['key']} exists (or the ref is optional)")
            if value is not None:
                env[var["name"]] = value
        else:
            check(False, f"env {var['name']}: a value, fieldRef or configMapKeyRef")
    return env


# ---------------------------------------------------------------- serve flags of the binary
serve_help = ""
if binary:
    serve_help = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True,
                                stdin=subprocess.DEVNULL).stdout
    known_flags = set(re.findall(r"^\s+(--[a-z0-9-]+)", serve_help, re.M))
    known_env = set(re.findall(r"\[env: ([A-Z0-9_]+)=", serve_help))
else:
    source = (root / "src/boot/config.rs").read_text()
    known_env = set(re.findall(r'env = "([A-Z0-9_]+)"', source))
    known_flags = {"--" + f.replace("_", "-") for f in re.findall(r"pub ([a-z0-9_]+): ", source)}
known_env.add("RUST_LOG")


# ---------------------------------------------------------------- invariants per render
def validate_render(render, docs):
    print(f"== invariants: deploy/{'base' if render == 'base' else 'overlays/' + render}")
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    expected = {"CustomResourceDefinition", "ServiceAccount", "Role", "RoleBinding", "ClusterRole",
                "ClusterRoleBinding", "ConfigMap", "Service", "Deployment", "PodDisruptionBudget",
                "MutatingWebhookConfiguration"}
    if render in ("plain", "plain-broker"):
        expected |= {"Secret"}
    if render == "cert-manager":
        expected |= {"Issuer", "Certificate"}
    check({d["kind"] for d in docs} == expected,
          f"{render}: exactly the kinds {sorted(expected)} (got {kinds}); no Namespace object: "
          f"deleting the install must never delete the secret stores' namespace")

    mwc = one(docs, "MutatingWebhookConfiguration")
    service = one(docs, "Service")
    deployment = one(docs, "Deployment")
    account = one(docs, "ServiceAccount")
    if not (mwc and service and deployment and account):
        check(False, f"{render}: one webhook configuration, Service, Deployment and ServiceAccount")
        return {}, None
    namespace = service["metadata"]["namespace"]

    # Every namespaced object lives in the store namespace.
    cluster_scoped = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}
    for doc in docs:
        if doc["kind"] in cluster_scoped:
            check("namespace" not in doc["metadata"], f"{render}: {doc['kind']} is cluster-scoped")
        else:
            check(doc["metadata"].get("namespace") == namespace,
                  f"{render}: {doc['kind']}/{doc['metadata']['name']} is in {namespace}")

    # RBAC: exactly the README's table.
    def rules_of(kind):
        role = one(docs, kind)
        return sorted((tuple(r.get("apiGroups", [])), tuple(r.get("resources", [])),
                       tuple(sorted(r.get("verbs", []))), tuple(r.get("resourceNames", [])),
                       tuple(r.get("nonResourceURLs", []))) for r in (role or {}).get("rules", []))

    check(rules_of("Role") == sorted([(("",), ("secrets",), ("get", "list", "watch"), (), ()),
                                      ((CRD_GROUP,), (CRD_PLURAL,), ("get", "list", "watch"), (), ()),
                                      ((CRD_GROUP,), (f"{CRD_PLURAL}/status",), ("patch",), (), ())]),
          f"{render}: the Role grants exactly secrets get/list/watch, vaultconfigs get/list/watch "
          f"and vaultconfigs/status patch")
    check(rules_of("ClusterRole") == sorted([(("",), ("namespaces",), ("get", "list", "watch"), (), ()),
                                             (("authentication.k8s.io",), ("tokenreviews",), ("create",), (), ()),
                                             (("",), ("pods",), ("get",), (), ())]),
          f"{render}: the ClusterRole grants exactly namespaces get/list/watch, tokenreviews create "
          f"and pods get")
    check(len([d for d in docs if d["kind"] in ("Role", "ClusterRole")]) == 2, f"{render}: no other roles")
    for binding_kind, role_kind in (("RoleBinding", "Role"), ("ClusterRoleBinding", "ClusterRole")):
        binding = one(docs, binding_kind) or {}
        role = one(docs, role_kind) or {}
        check(binding.get("roleRef") == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                                          "name": role.get("metadata", {}).get("name")},
              f"{render}: the {binding_kind} refers to the {role_kind}")
        check(binding.get("subjects") == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                           "namespace": namespace}],
              f"{render}: the {binding_kind} binds only the webhook's ServiceAccount")

    # Deployment.
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels") or {}
    containers = pod.get("containers") or []
    check(len(containers) == 1 and not pod.get("initContainers"), f"{render}: one container")
    container = containers[0]
    check(spec.get("replicas", 1) >= 2, f"{render}: at least 2 replicas")
    check(selector_matches(spec["selector"], pod_labels), f"{render}: the Deployment selects its pods")
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    check((spec.get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
          and rolling.get("maxUnavailable") in (0, "0%"),
          f"{render}: rolling updates with maxUnavailable 0 (a new pod is ready before an old one goes)")
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    check(len(pdbs) == 1 and pdbs[0]["spec"].get("minAvailable") == 1 and "maxUnavailable" not in pdbs[0]["spec"]
          and selector_matches(pdbs[0]["spec"].get("selector"), pod_labels),
          f"{render}: a PodDisruptionBudget with minAvailable 1 selecting the webhook's pods")
    preferred = ((pod.get("affinity") or {}).get("podAntiAffinity") or {}).get(
        "preferredDuringSchedulingIgnoredDuringExecution") or []
    check(any(t["podAffinityTerm"].get("topologyKey") == "kubernetes.io/hostname"
              and selector_matches(t["podAffinityTerm"].get("labelSelector"), pod_labels) for t in preferred),
          f"{render}: preferred pod anti-affinity by hostname against its own pods")

    args = container.get("args") or []
    flags = flag_values(args)
    check(args[:1] == ["serve"], f"{render}: the container runs `serve`")
    for arg in args[1:]:
        flag = arg.split("=", 1)[0]
        check(arg.startswith("--") and "=" in arg and flag in known_flags,
              f"{render}: argument {arg!r} is --flag=value with a flag `serve` has")
    for var in container.get("env") or []:
        check(var["name"] in known_env, f"{render}: env {var['name']} is a variable `serve` reads")
    env = resolve_env(deployment, docs)

    ports = {p["name"]: p["containerPort"] for p in container.get("ports") or []}

    def port_of(address, default):
        return int((address or default).rsplit(":", 1)[1])

    admin_port = port_of(flags.get("--admin-listen") or env.get("IOMETE_SECRETS_ADMIN_LISTEN"), "0.0.0.0:8080")
    listen_port = port_of(flags.get("--listen") or env.get("IOMETE_SECRETS_LISTEN"), "0.0.0.0:8443")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = (container.get(probe) or {}).get("httpGet") or {}
        port = get.get("port")
        port = ports.get(port) if isinstance(port, str) else port
        check(get.get("path") == path and port == admin_port and get.get("scheme", "HTTP") == "HTTP",
              f"{render}: {probe} is GET {path} on the admin port {admin_port}")

    resources = container.get("resources") or {}
    check({"cpu", "memory"} <= set(resources.get("requests") or {}) and "memory" in (resources.get("limits") or {}),
          f"{render}: cpu and memory requests and a memory limit")

    pod_security = pod.get("securityContext") or {}
    security = container.get("securityContext") or {}

    def effective(key):
        return security.get(key, pod_security.get(key))

    check(effective("runAsNonRoot") is True, f"{render}: runAsNonRoot")
    check(isinstance(effective("runAsUser"), int) and effective("runAsUser") > 0, f"{render}: a numeric non-root runAsUser")
    check(security.get("readOnlyRootFilesystem") is True, f"{render}: readOnlyRootFilesystem")
    check(security.get("allowPrivilegeEscalation") is False, f"{render}: allowPrivilegeEscalation false")
    check(security.get("privileged") in (None, False), f"{render}: not privileged")
    capabilities = security.get("capabilities") or {}
    check("ALL" in (capabilities.get("drop") or []) and not capabilities.get("add"),
          f"{render}: capabilities drop ALL, add none")
    check((effective("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{render}: seccompProfile RuntimeDefault")
    check(not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), f"{render}: no host namespaces")
    check(pod.get("automountServiceAccountToken") is True and pod.get("serviceAccountName") == account["metadata"]["name"],
          f"{render}: runs as its ServiceAccount with the token mounted (it needs the API)")
    pre_stop = ((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
    check(pod.get("terminationGracePeriodSeconds", 30) > 10 + pre_stop,
          f"{render}: terminationGracePeriodSeconds exceeds the preStop pause plus the server's 10 s grace")

    image = container.get("image", "")
    name_part = image.split("@")[0].rsplit("/", 1)[-1]
    tag = name_part.split(":", 1)[1] if ":" in name_part else None
    check("@sha256:" in image or (tag and tag != "latest"),
          f"{render}: image {image!r} is pinned (a tag other than latest, or a digest)")

    # TLS: the mounted Secret and the flags that read it.
    mounts = {m["name"]: m["mountPath"].rstrip("/") for m in container.get("volumeMounts") or []}
    tls_volumes = [v for v in pod.get("volumes") or [] if "secret" in v and v["name"] in mounts]
    check(len(tls_volumes) == 1, f"{render}: one Secret volume mounted")
    tls_secret = tls_volumes[0]["secret"]["secretName"] if tls_volumes else None
    mount = mounts.get(tls_volumes[0]["name"]) if tls_volumes else None
    for flag, key in (("--tls-cert", "tls.crt"), ("--tls-key", "tls.key")):
        check(flags.get(flag) == f"{mount}/{key}", f"{render}: {flag} reads {key} of the mounted TLS Secret")
    if render == "plain":
        secret = one(docs, "Secret", tls_secret)
        check(secret is not None and secret.get("type") == "kubernetes.io/tls"
              and {"tls.crt", "tls.key"} <= set(secret.get("data") or {}),
              f"{render}: the Deployment mounts the generated kubernetes.io/tls Secret")
    if render == "cert-manager":
        check(any(d["kind"] == "Certificate" and d["spec"].get("secretName") == tls_secret for d in docs),
              f"{render}: a Certificate writes the Secret the Deployment mounts ({tls_secret})")

    # Feature flag.
    flag_var = next((v for v in container.get("env") or [] if v["name"] == "IOMETE_SECRETS_SECRETS_V2_ENABLED"), {})
    ref = (flag_var.get("valueFrom") or {}).get("configMapKeyRef") or {}
    check(ref.get("key") == "features.secretsV2.enabled" and not ref.get("optional"),
          f"{render}: IOMETE_SECRETS_SECRETS_V2_ENABLED comes from ConfigMap key features.secretsV2.enabled")
    check(env.get("IOMETE_SECRETS_SECRETS_V2_ENABLED") in ("true", "false"),
          f"{render}: features.secretsV2.enabled is true or false")

    # Service.
    service_ports = service["spec"].get("ports") or []
    check(selector_matches({"matchLabels": service["spec"].get("selector")}, pod_labels)
          and service["spec"].get("selector"), f"{render}: the Service selects the webhook's pods")
    https = [p for p in service_ports if p.get("port") == 443]
    target = https[0].get("targetPort") if https else None
    target = ports.get(target) if isinstance(target, str) else target
    check(target == listen_port, f"{render}: Service port 443 reaches the admission port {listen_port}")

    # The webhook configuration.
    webhooks = mwc.get("webhooks") or []
    check(len(webhooks) == 1 and webhooks[0].get("name") == "secrets.iomete.com", f"{render}: one webhook, secrets.iomete.com")
    for hook in webhooks:
        check(hook.get("admissionReviewVersions") == ["v1"], f"{render}: admissionReviewVersions [v1]")
        check(hook.get("sideEffects") == "None", f"{render}: sideEffects None")
        check(hook.get("failurePolicy") == "Fail", f"{render}: failurePolicy Fail")
        check(bool(hook.get("matchConditions")), f"{render}: matchConditions narrow who depends on the webhook")
        check(hook.get("reinvocationPolicy") == "IfNeeded", f"{render}: reinvocationPolicy IfNeeded")
        timeout = hook.get("timeoutSeconds")
        admission_timeout = go_duration_seconds(env.get("IOMETE_SECRETS_ADMISSION_TIMEOUT", "8s"))
        check(isinstance(timeout, int) and timeout <= 10, f"{render}: timeoutSeconds <= 10")
        check(admission_timeout is not None and isinstance(timeout, int) and admission_timeout < timeout,
              f"{render}: --admission-timeout ({env.get('IOMETE_SECRETS_ADMISSION_TIMEOUT', '8s')}) is below timeoutSeconds ({timeout})")
        rules = hook.get("rules") or []
        check(len(rules) == 1 and rules[0].get("operations") == ["CREATE"] and rules[0].get("resources") == ["pods"]
              and rules[0].get("apiGroups") == [""] and rules[0].get("apiVersions") == ["v1"],
              f"{render}: the only rule is pods, CREATE, core v1")
        client = hook.get("clientConfig") or {}
        target_service = client.get("service") or {}
        check("url" not in client and target_service.get("name") == service["metadata"]["name"]
              and target_service.get("namespace") == namespace and target_service.get("path") == "/mutate"
              and target_service.get("port", 443) in [p.get("port") for p in service_ports],
              f"{render}: the webhook calls the Service {namespace}/{service['metadata']['name']} at /mutate")
        ns_selector = hook.get("namespaceSelector")
        for excluded in ("kube-system", namespace):
            check(not selector_matches(ns_selector, {"kubernetes.io/metadata.name": excluded}),
                  f"{render}: the namespaceSelector excludes {excluded}")
        check(selector_matches(ns_selector, {"kubernetes.io/metadata.name": "spark-jobs", "iomete.com/domain": "finance"}),
              f"{render}: the namespaceSelector still includes a domain namespace")
        object_selector = hook.get("objectSelector")
        check(object_selector is not None and not selector_matches(object_selector, pod_labels),
              f"{render}: the objectSelector excludes the webhook's own pods")
        check(selector_matches(object_selector, {"spark-role": "driver"}),
              f"{render}: the objectSelector still includes other pods")
        annotations = mwc["metadata"].get("annotations") or {}
        inject = annotations.get("cert-manager.io/inject-ca-from")
        ca_bundle = client.get("caBundle")
        if render in ("plain", "plain-broker"):
            bundle_file = (tls / "ca-bundle.b64").read_text().strip()
            check(ca_bundle == bundle_file and inject is None, f"{render}: caBundle is ca-bundle.b64 of the certs output")
            decoded = base64.b64decode(ca_bundle or "", validate=True)
            check(decoded == (tls / "ca.crt").read_bytes() and b"-----BEGIN CERTIFICATE-----" in decoded,
                  f"{render}: caBundle decodes to ca.crt")
        elif render == "cert-manager":
            certificate = None
            if inject and "/" in inject:
                ns, name = inject.split("/", 1)
                certificate = one(docs, "Certificate", name) if ns == namespace else None
            check(certificate is not None and ca_bundle is None,
                  f"{render}: cert-manager.io/inject-ca-from ({inject}) names a Certificate of this install")
            check(certificate is not None and certificate["spec"].get("secretName") == tls_secret,
                  f"{render}: the injected CA is that of the serving certificate the pods mount")
        else:
            check(ca_bundle is None and inject is None, f"{render}: no CA (the overlays provide it)")

    # cert-manager objects: structure and references (no official schema to validate against).
    if render == "cert-manager":
        validate_cert_manager(docs, service, namespace)

    # The real binary accepts the Deployment's args and env.
    if binary:
        run_binary(render, args, env, mount)
    # ... and the optional settings config.env shows commented out, once switched on.
    if binary and render == "base":
        for key, value in commented_out_settings():
            var = next((v["name"] for v in container.get("env") or []
                        if ((v.get("valueFrom") or {}).get("configMapKeyRef") or {}).get("key") == key), None)
            if check(var is not None, f"{render}: the Deployment reads config.env's optional key {key}"):
                run_binary(f"{render} with {key}={value}", args, {**env, var: value}, mount)
    return env, one(docs, "ConfigMap")


def commented_out_settings():
    """`# key=value` lines of config.env: optional settings, off until uncommented."""
    lines = (root / "deploy/base/config.env").read_text().splitlines()
    return [m.groups() for m in (re.fullmatch(r"#\s*([A-Za-z][\w.-]*)=(\S+)", line.strip()) for line in lines) if m]


ISSUER_TYPES = {"selfSigned", "ca", "acme", "vault", "venafi"}
CERTIFICATE_FIELDS = {"secretName", "secretTemplate", "commonName", "dnsNames", "ipAddresses", "uris",
                      "emailAddresses", "duration", "renewBefore", "renewBeforePercentage", "usages", "privateKey",
                      "issuerRef", "isCA", "subject", "literalSubject", "keystores", "revisionHistoryLimit",
                      "additionalOutputFormats", "encodeUsagesInRequest", "otherNames", "nameConstraints", "signatureAlgorithm"}
USAGES = {"signing", "digital signature", "content commitment", "key encipherment", "key agreement",
          "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth",
          "client auth", "code signing", "email protection", "s/mime", "ipsec end system", "ipsec tunnel",
          "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"}


def validate_cert_manager(docs, service, namespace):
    print("   (cert-manager Issuer and Certificate: no official schema; checked structurally)")
    issuers = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Issuer"}
    certificates = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Certificate"}
    secrets_of = {c["spec"].get("secretName"): c for c in certificates.values()}
    for doc in list(issuers.values()) + list(certificates.values()):
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        check(doc["apiVersion"] == "cert-manager.io/v1" and set(doc) <= {"apiVersion", "kind", "metadata", "spec"},
              f"cert-manager: {name} is cert-manager.io/v1 with metadata and spec only")
    for name, issuer in issuers.items():
        kinds = set(issuer.get("spec") or {}) & ISSUER_TYPES
        check(len(kinds) == 1 and set(issuer["spec"]) == kinds, f"cert-manager: Issuer/{name} has exactly one issuer type")
        if "ca" in issuer["spec"]:
            ca = secrets_of.get(issuer["spec"]["ca"].get("secretName"))
            check(ca is not None and ca["spec"].get("isCA") is True,
                  f"cert-manager: Issuer/{name} signs with a CA Certificate of this install")
    for name, certificate in certificates.items():
        spec = certificate.get("spec") or {}
        check(set(spec) <= CERTIFICATE_FIELDS, f"cert-manager: Certificate/{name} has only known fields ({sorted(set(spec) - CERTIFICATE_FIELDS)})")
        check(bool(spec.get("secretName")), f"cert-manager: Certificate/{name} has a secretName")
        ref = spec.get("issuerRef") or {}
        check(ref.get("kind", "Issuer") == "Issuer" and ref.get("group", "cert-manager.io") == "cert-manager.io"
              and ref.get("name") in issuers, f"cert-manager: Certificate/{name} is issued by an Issuer of this install")
        for field in ("duration", "renewBefore"):
            if field in spec:
                check(go_duration_seconds(spec[field]) is not None, f"cert-manager: Certificate/{name} {field} is a duration")
        if "duration" in spec and "renewBefore" in spec:
            check(go_duration_seconds(spec["renewBefore"]) < go_duration_seconds(spec["duration"]),
                  f"cert-manager: Certificate/{name} renews before it expires")
        check(set(spec.get("usages") or []) <= USAGES, f"cert-manager: Certificate/{name} has known usages")
        key = spec.get("privateKey") or {}
        check(set(key) <= {"algorithm", "size", "encoding", "rotationPolicy"}
              and key.get("algorithm", "RSA") in ("RSA", "ECDSA", "Ed25519")
              and key.get("rotationPolicy", "Always") in ("Always", "Never"),
              f"cert-manager: Certificate/{name} privateKey is well formed")
        if not spec.get("isCA"):
            svc = service["metadata"]["name"]
            wanted = {f"{svc}.{namespace}.svc", f"{svc}.{namespace}", svc}
            check(wanted <= set(spec.get("dnsNames") or []) and "server auth" in (spec.get("usages") or ["server auth"]),
                  f"cert-manager: Certificate/{name} serves {sorted(wanted)}")


def run_binary(render, args, env, mount):
    """`serve` with the rendered args and env gets past flag validation and TLS loading to the
    Kubernetes client, which fails here on purpose (no kubeconfig, not in a cluster)."""
    argv = [binary] + [a.replace(f"={mount}/", f"={tls}/") for a in args]
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work),
             "KUBECONFIG": str(work / "no-kubeconfig")}
    clean.update({k: v for k, v in env.items() if not v.startswith("<")})
    try:
        run = subprocess.run(argv, env=clean, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        output = run.stdout + run.stderr
    except subprocess.TimeoutExpired as expired:
        output = f"timed out: {expired}"
        run = None
    reached_client = run is not None and run.returncode != 0 and re.search(r"kubernetes client|kubeconfig", output, re.I)
    if not check(reached_client and "invalid configuration" not in output and "invalid TLS" not in output,
                 f"{render}: the binary accepts the Deployment's args and env (it should stop only at the Kubernetes client)"):
        print("      " + output.strip().replace("\n", "\n      "))


envs = {}
config_maps = {}
for render, docs in RENDERS.items():
    before = len(failures)
    envs[render], config_maps[render] = validate_render(render, docs)
    if len(failures) == before:
        print("   ok")

# ---------------------------------------------------------------- the broker component
print("== deploy/broker on the plain overlay")
broker_deployment = one(RENDERS["plain-broker"], "Deployment")
broker_container = broker_deployment["spec"]["template"]["spec"]["containers"][0]
broker_args = broker_container["args"]
check("--broker-listen=0.0.0.0:8444" in broker_args and "--broker-ca=/etc/webhook/tls/ca.crt" in broker_args,
      f"the broker component adds the broker flags (got {broker_args})")
check(f"--broker-image={broker_container['image']}" in broker_args,
      f"--broker-image is the Deployment's own image {broker_container['image']}")
check(any(p.get("name") == "broker" and p.get("containerPort") == 8444 for p in broker_container["ports"]),
      "the webhook container exposes the broker port")
check(any(p.get("name") == "broker" and p.get("port") == 8444 for p in one(RENDERS["plain-broker"], "Service")["spec"]["ports"]),
      "the Service exposes the broker port")
plain_secret = one(RENDERS["plain-broker"], "Secret") or {}
check("ca.crt" in (plain_secret.get("data") or {}), "the TLS Secret holds ca.crt, which --broker-ca reads")
rules = [rule for role in RENDERS["base"] if role["kind"] == "ClusterRole" for rule in role.get("rules", [])]
check(any("tokenreviews" in r.get("resources", []) and "create" in r.get("verbs", []) for r in rules)
      and any("pods" in r.get("resources", []) and r.get("verbs") == ["get"] for r in rules),
      "the base ClusterRole grants what the broker needs: create tokenreviews, get pods")

# ---------------------------------------------------------------- the feature-flag example
print("== deploy/README.md feature-flag example (features.secretsV2.enabled=false)")
example_deployment = one(EXAMPLE, "Deployment")
example_env = resolve_env(example_deployment, EXAMPLE) if example_deployment else {}
check(example_env.get("IOMETE_SECRETS_SECRETS_V2_ENABLED") == "false",
      "the README's example overlay sets IOMETE_SECRETS_SECRETS_V2_ENABLED to false")
example_config = one(EXAMPLE, "ConfigMap")
check(example_config and example_config["metadata"]["name"] != config_maps["cert-manager"]["metadata"]["name"],
      "flipping the flag renames the ConfigMap (content hash), so the pods roll")
check(len(EXAMPLE) == len(RENDERS["cert-manager"]), "the example renders the whole install")

# ---------------------------------------------------------------- the VaultConfig CRD and examples
print("== VaultConfig CRD (deploy/base/vaultconfig-crd.yaml) and deploy/examples")
crd_file = yaml.safe_load((root / "deploy/base/vaultconfig-crd.yaml").read_text())
if binary:
    printed = subprocess.run([binary, "crd"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check(printed.returncode == 0, f"`iomete-secrets-webhook crd` prints the CRD: {printed.stderr}"):
        check(crd_file == json.loads(printed.stdout),
              "deploy/base/vaultconfig-crd.yaml is what `iomete-secrets-webhook crd` prints "
              "(stale? run: bash scripts/generate-crd.sh)")
else:
    print("   note: no webhook binary; the CRD is not compared with the binary's output")
for render, docs in RENDERS.items():
    rendered_crd = one(docs, "CustomResourceDefinition") or {}
    # kustomize adds the install's common labels and nothing else (no namespace: cluster-scoped).
    unlabelled = {**rendered_crd, "metadata": {k: v for k, v in rendered_crd.get("metadata", {}).items() if k != "labels"}}
    check(unlabelled == crd_file, f"{render}: the rendered CRD is deploy/base/vaultconfig-crd.yaml plus labels")

crd_spec = crd_file["spec"]
versions_served = [v for v in crd_spec["versions"] if v.get("served")]
check(crd_spec["group"] == CRD_GROUP and crd_spec["names"]["plural"] == CRD_PLURAL
      and crd_spec["names"]["kind"] == "VaultConfig" and crd_spec["scope"] == "Namespaced"
      and crd_file["metadata"]["name"] == f"{CRD_PLURAL}.{CRD_GROUP}",
      f"the CRD defines the namespaced VaultConfig as {CRD_PLURAL}.{CRD_GROUP}, which the Role names")
check([v["name"] for v in versions_served] == ["v1"] and versions_served[0].get("storage")
      and "status" in (versions_served[0].get("subresources") or {}),
      "the CRD serves and stores v1 only, with the status subresource the webhook patches")
vault_v1 = versions_served[0] if versions_served else {}
columns = [c["name"] for c in vault_v1.get("additionalPrinterColumns") or []]
check({"Ready", "Reason"} <= set(columns), f"`kubectl get vaultconfigs` shows Ready and Reason (columns: {columns})")


def json_schema(node, top=True):
    """A CRD's OpenAPI v3 schema as JSON Schema (draft 4), as the API server applies it to an
    object created with kubectl's default strict field validation."""
    if not isinstance(node, dict):
        return node
    schema = {key: json_schema(value, False) if key in ("items", "additionalProperties", "not") else value
              for key, value in node.items() if key != "nullable"}
    for key in ("properties", "patternProperties"):
        if key in node:
            schema[key] = {name: json_schema(value, False) for name, value in node[key].items()}
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            schema[key] = [json_schema(value, False) for value in node[key]]
    # OpenAPI's `nullable` has no JSON Schema keyword (jsonschema ignores it, so it would reject
    # a null the API server accepts): it becomes a "null" type.
    if node.get("nullable"):
        schema["type"] = [node["type"], "null"] if "type" in node else ["null"]
        if "enum" in node:
            schema["enum"] = node["enum"] + [None]
    # Strict field validation rejects unknown fields where the API server would otherwise prune.
    if "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        schema["additionalProperties"] = False
    # The API server checks these itself; the CRD's schema leaves them out.
    if top:
        schema["properties"] = {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                "metadata": {"type": "object"}, **schema.get("properties", {})}
    return schema


def schema_errors(validator, doc):
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in validator.iter_errors(doc)]


vault_schema = json_schema(vault_v1.get("schema", {}).get("openAPIV3Schema", {}))
jsonschema.Draft4Validator.check_schema(vault_schema)
vault_validator = jsonschema.Draft4Validator(vault_schema)
store_namespace = one(RENDERS["base"], "Service")["metadata"]["namespace"]
CREDENTIAL_KEYS = {"Token": {"token"}, "AppRole": {"roleId", "secretId"}}
vault_examples = []
for path, docs in EXAMPLE_FILES.items():
    configs = [d for d in docs if d["kind"] == "VaultConfig"]
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    check(len(configs) == 1 and len(secrets) == 1 and len(docs) == 2, f"{path}: one VaultConfig and its credentials Secret")
    for config in configs:
        name, spec = config["metadata"]["name"], config.get("spec") or {}
        vault_examples.append(config)
        check(config["apiVersion"] == f"{CRD_GROUP}/v1", f"{path}: apiVersion {CRD_GROUP}/v1")
        errors = schema_errors(vault_validator, config)
        check(not errors, f"{path}: VaultConfig/{name} validates against the CRD's schema: {errors}")
        check(re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name), f"{path}: {name} is a DNS label (references name it)")
        check(config["metadata"].get("namespace") == store_namespace, f"{path}: VaultConfig/{name} is in {store_namespace}")
        secret = secrets.get(f"iomete-vault-credentials-{spec.get('domain')}")
        if not check(secret is not None, f"{path}: the Secret is iomete-vault-credentials-{spec.get('domain')}"):
            continue
        values = {**(secret.get("data") or {}), **(secret.get("stringData") or {})}
        wanted = {f"{name}.{key}" for key in CREDENTIAL_KEYS.get((spec.get("auth") or {}).get("method"), ())}
        check(set(values) == wanted, f"{path}: the Secret has exactly the keys {sorted(wanted)} (got {sorted(values)})")
        check(secret["metadata"].get("namespace") == store_namespace, f"{path}: the Secret is in {store_namespace}")
        check(set(values.values()) == {"REPLACE_ME"}, f"{path}: the Secret holds placeholders only, never real credentials")
check({(c.get("spec") or {}).get("auth", {}).get("method") for c in vault_examples} == set(CREDENTIAL_KEYS),
      f"deploy/examples has a VaultConfig for each auth method {sorted(CREDENTIAL_KEYS)}")

# The schema must reject what the API server rejects, or the checks above prove nothing. The
# variants start from the AppRole example, the one with the most fields.
sample = next((c for c in vault_examples if (c.get("spec") or {}).get("auth", {}).get("method") == "AppRole"), None)
if sample is None:
    sys.exit("validate-manifests: deploy/examples has no AppRole VaultConfig to derive the schema's test cases from")


def variant(change):
    """The sample with `change` applied to a copy of its spec."""
    doc = json.loads(json.dumps(sample))
    change(doc["spec"])
    return doc


def without_optional_fields(spec):
    for holder, key in ((spec, "layout"), (spec, "vaultNamespace"), (spec, "caBundle"), (spec["auth"], "mount")):
        holder.pop(key, None)


def optional_fields_null(spec):
    spec.update(vaultNamespace=None, caBundle=None)
    spec["auth"]["mount"] = None


MUST_FAIL = [
    ("layout Foo", variant(lambda s: s.update(layout="Foo"))),
    ("no auth", variant(lambda s: s.pop("auth"))),
    ("auth.method Kerberos", variant(lambda s: s["auth"].update(method="Kerberos"))),
    ("no domain", variant(lambda s: s.pop("domain"))),
    ("a misspelt field (vaultNamspace)", variant(lambda s: s.update(vaultNamspace="team-a"))),
    ("host a number", variant(lambda s: s.update(host=8200))),
    ("no spec", {k: v for k, v in sample.items() if k != "spec"}),
]
MUST_PASS = [
    ("the optional fields left out", variant(without_optional_fields)),
    ("the optional fields null (nullable: true)", variant(optional_fields_null)),
]
for label, doc in MUST_FAIL:
    check(schema_errors(vault_validator, doc), f"the CRD's schema rejects a VaultConfig with {label}")
for label, doc in MUST_PASS:
    errors = schema_errors(vault_validator, doc)
    check(not errors, f"the CRD's schema accepts a VaultConfig with {label}: {errors}")
print(f"   {len(vault_examples)} example VaultConfigs, {len(MUST_FAIL)} broken and {len(MUST_PASS)} valid variants "
      f"against the CRD's schema")

# ---------------------------------------------------------------- CEL matchConditions
print("== matchConditions (CEL, cel-python)")


def needs_webhook(pod):
    """The annotation contract in plain Python: what the CEL must compute."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if any(key.startswith("secrets.iomete.com/") for key in annotations):
        return True
    for field in ("containers", "initContainers"):
        for container in (pod.get("spec") or {}).get(field) or []:
            for var in container.get("env") or []:
                if isinstance(var.get("value"), str) and "${secrets." in var["value"]:
                    return True
    return False


def drop_nulls(value):
    """The API server's typed decoding drops null fields; mimic it."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def pod(annotations=None, containers=None, init=None, no_containers=False):
    result = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "spark-jobs"}, "spec": {}}
    if annotations is not None:
        result["metadata"]["annotations"] = annotations
    if not no_containers:
        result["spec"]["containers"] = containers or [{"name": "main", "image": "busybox"}]
    if init is not None:
        result["spec"]["initContainers"] = init
    return result


def c(*env):
    return {"name": "c", "image": "busybox", "env": list(env)}


REFERENCE = '[{"key": "DB_PASSWORD", "secretObject": {"key": "db_password", "source": {"type": "KUBERNETES", "id": "finance"}}}]'
TABLE = [
    ("a pod with no annotations and no env", pod(), False),
    ("an empty annotations map", pod(annotations={}), False),
    ("unrelated annotations", pod(annotations={"prometheus.io/scrape": "true"}), False),
    ("the prefix inside another key", pod(annotations={"example.com/secrets.iomete.com/x": "1"}), False),
    ("a similar prefix", pod(annotations={"secrets.iomete.com.evil/x": "1", "xsecrets.iomete.com/x": "1"}), False),
    ("secrets.iomete.com/env-secrets", pod(annotations={"secrets.iomete.com/env-secrets": REFERENCE}), True),
    ("secrets.iomete.com/spark-conf-secrets", pod(annotations={"secrets.iomete.com/spark-conf-secrets": "[]"}), True),
    ("secrets.iomete.com/containers only", pod(annotations={"secrets.iomete.com/containers": "x"}), True),
    ("an unknown secrets.iomete.com/ annotation (the webhook denies it)", pod(annotations={"secrets.iomete.com/typo": "1"}), True),
    ("env with valueFrom only", pod(containers=[c({"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}})]), False),
    ("env with a name only", pod(containers=[c({"name": "A"})]), False),
    ("env values without a placeholder", pod(containers=[c({"name": "A", "value": "$(B) secrets. {secrets.x}"})]), False),
    ("${secrets.KEY} in a container env value", pod(containers=[c({"name": "A", "value": "${secrets.db}"})]), True),
    ("${secrets.KEY} inside a longer value", pod(containers=[c({"name": "A", "value": "jdbc://u:${secrets.pw}@h"})]), True),
    ("${secrets.KEY} in the second container",
     pod(containers=[c({"name": "A", "value": "x"}), c({"name": "B"}, {"name": "C", "value": "${secrets.k}"})]), True),
    ("the escaped $${secrets.KEY} (sent; the webhook leaves it alone)", pod(containers=[c({"name": "A", "value": "$${secrets.k}"})]), True),
    ("${secrets.KEY} in an init container", pod(init=[c({"name": "A", "value": "${secrets.k}"})]), True),
    ("init containers without env", pod(init=[{"name": "i", "image": "busybox"}]), False),
    ("an empty initContainers list", pod(init=[]), False),
    ("no spec.containers at all", pod(no_containers=True), False),
    ("annotations and env both", pod(annotations={"secrets.iomete.com/env-secrets": "[]"},
                                     containers=[c({"name": "A", "value": "${secrets.k}"})]), True),
]
fixtures = []
for path in sorted((root / "tests/fixtures").rglob("*.json")):
    try:
        data = json.loads(path.read_text())
    except ValueError:
        continue
    request = data.get("request") if data.get("kind") == "AdmissionReview" else data if "uid" in data else None
    obj = (request or {}).get("object") if request else data
    if isinstance(obj, dict) and obj.get("kind") == "Pod":
        fixtures.append((f"tests/fixtures/{path.relative_to(root / 'tests/fixtures')}", drop_nulls(obj), needs_webhook(obj)))

environment = celpy.Environment()
for render, docs in RENDERS.items():
    for hook in (one(docs, "MutatingWebhookConfiguration") or {}).get("webhooks") or []:
        conditions = hook.get("matchConditions") or []
        names = [m.get("name", "") for m in conditions]
        check(len(set(names)) == len(names) and all(re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", n) and len(n) <= 63 for n in names),
              f"{render}: matchCondition names are unique qualified names")
        programs = []
        for condition in conditions:
            try:
                programs.append((condition["name"], environment.program(environment.compile(condition["expression"]))))
                check(True, "")
            except Exception as error:  # noqa: BLE001 - any compile error fails the check
                check(False, f"{render}: matchCondition {condition.get('name')} does not compile: {error}")
        if render != "base":
            continue  # the overlays' expressions are compared with the base's below
        for label, case, expected in TABLE + fixtures:
            results = []
            for name, program in programs:
                try:
                    result = program.evaluate({"object": celpy.json_to_cel(case)})
                except Exception as error:  # noqa: BLE001
                    result = error
                results.append(result)
            errors = [r for r in results if not isinstance(r, celpy.celtypes.BoolType)]
            check(not errors, f"matchConditions evaluate to a bool, never an error, for {label} (got {errors})")
            if not errors:
                check(all(results) == expected,
                      f"matchConditions send {label} to the webhook: expected {expected}, got {all(results)}")
base_conditions = [h.get("matchConditions") for h in one(RENDERS["base"], "MutatingWebhookConfiguration")["webhooks"]]
for render in ("cert-manager", "plain"):
    check([h.get("matchConditions") for h in one(RENDERS[render], "MutatingWebhookConfiguration")["webhooks"]] == base_conditions,
          f"{render}: the same matchConditions as the base")
print(f"   {len(TABLE)} table pods and {len(fixtures)} fixture pods "
      f"({sum(1 for f in fixtures if f[2])} of them need the webhook)")

# ---------------------------------------------------------------- certificates and image
print("== certificates of the plain overlay")
if subprocess.run(["sh", "-c", "command -v openssl"], capture_output=True).returncode == 0:
    verify = subprocess.run(["openssl", "verify", "-purpose", "sslserver", "-CAfile", str(tls / "ca.crt"), str(tls / "tls.crt")],
                            capture_output=True, text=True)
    check(verify.returncode == 0, f"tls.crt verifies against ca.crt as a server certificate: {verify.stdout}{verify.stderr}")
    sans = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(tls / "tls.crt")],
                          capture_output=True, text=True).stdout
    for name in ("iomete-secrets-webhook.iomete-system.svc", "iomete-secrets-webhook.iomete-system"):
        check(f"DNS:{name}" in sans, f"tls.crt names {name}")
else:
    print("   note: openssl not found; the certificate chain is not checked")

print("== Dockerfile and .dockerignore")
dockerfile = (root / "Dockerfile").read_text() if (root / "Dockerfile").exists() else ""
instructions = [line.strip() for line in dockerfile.splitlines() if line.strip() and not line.strip().startswith("#")]
froms = [line.split()[1] for line in instructions if line.upper().startswith("FROM ")]
check(len(froms) >= 2, "the Dockerfile is multi-stage")
check(bool(froms) and re.fullmatch(r"gcr\.io/distroless/(cc|static)-debian\d+:nonroot", froms[-1]),
      f"the final stage runs on distroless nonroot (got {froms[-1:]})")
check(re.search(r"cargo build --release --locked", dockerfile), "the build is cargo build --release --locked")
users = [line.split()[1] for line in instructions if line.upper().startswith("USER ")]
run_as = (one(RENDERS["base"], "Deployment")["spec"]["template"]["spec"].get("securityContext") or {}).get("runAsUser")
check(users and users[-1].split(":")[0] == str(run_as), f"the image's USER is the Deployment's runAsUser {run_as}")
check(any(line.startswith("ENTRYPOINT") and "iomete-secrets-webhook" in line for line in instructions),
      "the entrypoint is the binary")
rust_version = re.search(r'^rust-version = "([\d.]+)"', (root / "Cargo.toml").read_text(), re.M)
arg_version = re.search(r"^ARG RUST_VERSION=([\d.]+)", dockerfile, re.M)
if rust_version and arg_version:
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
    check(as_tuple(arg_version.group(1)) >= as_tuple(rust_version.group(1)),
          f"the build image's Rust ({arg_version.group(1)}) is at least Cargo.toml's rust-version ({rust_version.group(1)})")
ignore = (root / ".dockerignore").read_text().split() if (root / ".dockerignore").exists() else []
check({"target", ".git"} <= {entry.strip("/") for entry in ignore}, ".dockerignore leaves out target/ and .git/")

print()
if failures:
    print(f"validate-manifests: {len(failures)} of {checks} checks FAILED:")
    for failure in failures:
        print(f"  - {failure}")
    sys.exit(1)
print(f"validate-manifests: all {checks} checks hold")
PY
elapsed=$((($(date +%s%N) - started) / 1000000))
if ((status != 0)); then
    die "see above (${elapsed} ms)"
fi
say "validate-manifests: OK: deploy/base, overlays/cert-manager, overlays/plain, examples (${elapsed} ms)"
