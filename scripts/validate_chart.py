"""Validates the Helm chart charts/iomete-secrets-webhook and the monitoring kit, offline; run by
scripts/validate-chart.sh (which makes the venv, the certificates and the overlays compared).

1. `helm lint --strict` and `helm template` of every values file in the chart's ci/ folder, with
   and without the Prometheus Operator's API, at the oldest supported Kubernetes and the newest.
2. Every rendered document against the official Kubernetes schemas (kubernetes-validate, strict,
   as scripts/validate-manifests.sh does for deploy/), the Prometheus Operator's objects against
   the openAPIV3Schema of their CRDs, cert-manager's objects structurally; the invariants the
   chart's README promises; the real binary accepting every rendering's args and env.
3. The chart and deploy/ do not drift: the defaults equal deploy/overlays/cert-manager plus the
   network-policy component and deploy/monitoring, and tls.mode secret equals
   deploy/overlays/plain, object for object, once what only Helm or kustomize adds is set aside.
4. promtool: `check rules` on the rules of every rendering, `test rules` on tests/monitoring/.
5. values.schema.json and the templates reject wrong types, unknown keys and unsafe combinations
   with a message saying what to change; valid edge cases pass.
"""

import copy
import difflib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate.utils as kv
import yaml

root, work, bin_dir, binary = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
min_kubernetes = sys.argv[5]
chart = root / "charts/iomete-secrets-webhook"
helm, promtool = str(bin_dir / "helm"), str(bin_dir / "promtool")
tls = work / "deploy/overlays/plain/tls"
NAMESPACE = "iomete-system"

checks = 0
failures = []


def check(condition, what):
    """Records one check; `what` says what must hold."""
    global checks
    checks += 1
    if not condition:
        failures.append(what)
        print(f"   FAIL: {what}")
    return bool(condition)


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs)


def load_all(text):
    return [d for d in yaml.safe_load_all(text) if d]


def template(values_files=(), sets=(), api_versions=(), kube_version=None, namespace=NAMESPACE):
    args = [helm, "template", "iomete-secrets-webhook", str(chart), "--namespace", namespace]
    for path in values_files:
        args += ["--values", str(path)]
    for item in sets:
        args += ["--set", item]
    for api in api_versions:
        args += ["--api-versions", api]
    if kube_version:
        args += ["--kube-version", kube_version]
    return run(args)


# ---------------------------------------------------------------- 1. lint and render the matrix
print("== helm lint and helm template over ci/*.yaml")
OPERATOR_API = ("monitoring.coreos.com/v1",)
renders = {}
for values in sorted((chart / "ci").glob("*.yaml")):
    lint = run([helm, "lint", "--strict", str(chart), "--namespace", NAMESPACE, "--values", str(values)])
    check(lint.returncode == 0, f"helm lint --strict with ci/{values.name}:\n{lint.stdout}{lint.stderr}")
    for label, apis in (("", ()), ("+operator-api", OPERATOR_API)):
        for version in (min_kubernetes, kv.latest_version()):
            out = template([values], api_versions=apis, kube_version=".".join(version.split(".")[:2]) + ".0")
            if check(out.returncode == 0, f"helm template with ci/{values.name}{label} (Kubernetes {version}): {out.stderr}"):
                renders[f"{values.stem}{label}"] = load_all(out.stdout)
print(f"   {len(renders)} renderings ({len(list((chart / 'ci').glob('*.yaml')))} values files)")

# ---------------------------------------------------------------- 2. schemas and invariants
print("== schemas (kubernetes-validate strict, the Prometheus Operator's CRDs, cert-manager structurally)")
_schema_contents = kv.schema_contents
_schema_cache = {}


def _cached_schema_contents(filename, version):
    if filename not in _schema_cache:
        _schema_cache[filename] = _schema_contents(filename, version)
    return _schema_cache[filename]


kv.schema_contents = _cached_schema_contents


def json_schema(node, top=True):
    """A CRD's OpenAPI v3 schema as JSON Schema (draft 4), the way the API server applies it
    with strict field validation: unknown fields rejected, `nullable` a null type."""
    if not isinstance(node, dict):
        return node
    schema = {k: json_schema(v, False) if k in ("items", "additionalProperties", "not") else v
              for k, v in node.items() if k != "nullable" and not k.startswith("x-kubernetes")}
    for key in ("properties", "patternProperties"):
        if key in node:
            schema[key] = {name: json_schema(value, False) for name, value in node[key].items()}
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            schema[key] = [json_schema(value, False) for value in node[key]]
    if node.get("nullable"):
        schema["type"] = [node["type"], "null"] if "type" in node else ["null"]
    if node.get("x-kubernetes-int-or-string"):
        schema.pop("type", None)
        schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        schema["additionalProperties"] = False
    if top:
        schema["properties"] = {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                "metadata": {"type": "object"}, **schema.get("properties", {})}
    return schema


OPERATOR_VALIDATORS = {}
for crd_file in sorted((bin_dir / "prometheus-operator-crds").glob("*.yaml")):
    crd = yaml.safe_load(crd_file.read_text())
    for version in crd["spec"]["versions"]:
        schema = json_schema(version["schema"]["openAPIV3Schema"])
        OPERATOR_VALIDATORS[(f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])] = \
            jsonschema.Draft4Validator(schema)
check({k for _, k in OPERATOR_VALIDATORS} >= {"PodMonitor", "ServiceMonitor", "PrometheusRule"},
      f"the Prometheus Operator CRDs are in {bin_dir}/prometheus-operator-crds")

CERTIFICATE_FIELDS = {"secretName", "secretTemplate", "commonName", "dnsNames", "duration", "renewBefore", "usages",
                      "privateKey", "issuerRef", "isCA"}
seen = set()
for render, docs in renders.items():
    for doc in docs:
        key = json.dumps(doc, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        name = f"{render}: {doc['kind']}/{doc['metadata']['name']}"
        api = (doc["apiVersion"], doc["kind"])
        if api in OPERATOR_VALIDATORS:
            errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in OPERATOR_VALIDATORS[api].iter_errors(doc)]
            check(not errors, f"{name} validates against the Prometheus Operator's CRD: {errors}")
        elif doc["apiVersion"] == "cert-manager.io/v1":
            spec = doc.get("spec") or {}
            check(set(doc) <= {"apiVersion", "kind", "metadata", "spec"}, f"{name}: metadata and spec only")
            if doc["kind"] == "Certificate":
                check(set(spec) <= CERTIFICATE_FIELDS and spec.get("secretName") and spec.get("issuerRef", {}).get("name"),
                      f"{name}: known fields, a secretName and an issuerRef")
            else:
                check(len(set(spec) & {"selfSigned", "ca"}) == 1, f"{name}: one issuer type")
        else:
            for version in (min_kubernetes, kv.latest_version()):
                try:
                    kv.validate(doc, version, strict=True)
                    check(True, "")
                except kv.ValidationError as error:
                    check(False, f"{name} against Kubernetes {version}: {'.'.join(map(str, error.path))}: {error.message}")
                except kv.SchemaNotFoundError as error:
                    check(False, f"{name}: {error.message}")
print(f"   {len(seen)} distinct documents")


def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found[0] if len(found) == 1 else None


def env_of(deployment, docs):
    """The container's env as the kubelet would set it; None values are unset."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {}
    for var in container.get("env") or []:
        source = var.get("valueFrom") or {}
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "fieldRef" in source:
            env[var["name"]] = deployment["metadata"]["namespace"]
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            data = (one(docs, "ConfigMap", ref["name"]) or {}).get("data") or {}
            check(ref["key"] in data or ref.get("optional"), f"env {var['name']}: ConfigMap {ref['name']} has {ref['key']}")
            if ref["key"] in data:
                env[var["name"]] = data[ref["key"]]
    return env


def run_binary(render, deployment, docs):
    """`serve` with the rendered args and env must get past flag validation and TLS loading to
    the Kubernetes client, which fails here on purpose (no kubeconfig)."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = [a.replace("=/etc/webhook/tls/", f"={tls}/") for a in container["args"]]
    # The broker's entrypoint file, from the ConfigMap the pods mount it from.
    entrypoints = ((one(docs, "ConfigMap", "iomete-secrets-webhook-config") or {}).get("data") or {}).get("broker-entrypoints.json")
    if entrypoints is not None:
        (work / "broker").mkdir(exist_ok=True)
        (work / "broker/entrypoints.json").write_text(entrypoints)
        args = [a.replace("=/etc/webhook/broker/", f"={work}/broker/") for a in args]
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "KUBECONFIG": str(work / "none")}
    clean.update(env_of(deployment, docs))
    try:
        result = run([binary] + args, env=clean, timeout=30)
        output, failed = result.stdout + result.stderr, result.returncode != 0
    except subprocess.TimeoutExpired as expired:
        output, failed = f"timed out: {expired}", False
    check(failed and re.search(r"kubernetes client|kubeconfig", output, re.I) and "invalid" not in output.lower(),
          f"{render}: the binary accepts the rendered args and env (it should stop only at the Kubernetes client):\n{output}")


print("== invariants of every rendering")
HELM_LABELS = {"app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/version", "helm.sh/chart"}
for render, docs in renders.items():
    before = len(failures)
    kinds = {d["kind"] for d in docs}
    check("Namespace" not in kinds, f"{render}: no Namespace object (uninstalling must never delete the stores)")
    for doc in docs:
        meta = doc["metadata"]
        cluster_scoped = doc["kind"] in {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}
        check(cluster_scoped != ("namespace" in meta), f"{render}: {doc['kind']}/{meta['name']} namespace only when namespaced")
        check((meta.get("labels") or {}).get("app.kubernetes.io/name") == "iomete-secrets-webhook"
              and HELM_LABELS <= set(meta.get("labels") or {}), f"{render}: {doc['kind']}/{meta['name']} has the chart's labels")
    deployment, mwc = one(docs, "Deployment"), one(docs, "MutatingWebhookConfiguration")
    if not check(deployment and mwc, f"{render}: one Deployment and one MutatingWebhookConfiguration"):
        continue
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    security = container["securityContext"]
    check(security.get("readOnlyRootFilesystem") and security.get("allowPrivilegeEscalation") is False
          and security.get("capabilities", {}).get("drop") == ["ALL"] and pod["securityContext"].get("runAsNonRoot"),
          f"{render}: the pod is hardened")
    image = container["image"]
    check("@sha256:" in image or not image.endswith(":latest"), f"{render}: image {image} is pinned")
    hook = mwc["webhooks"][0]
    check(hook["matchConditions"] and hook["rules"][0]["operations"] == ["CREATE"] and hook["sideEffects"] == "None",
          f"{render}: matchConditions, CREATE only, sideEffects None")
    own_ns = NAMESPACE in ((hook.get("namespaceSelector") or {}).get("matchExpressions") or [{}])[0].get("values", [])
    check(own_ns or hook.get("objectSelector"), f"{render}: the webhook's namespace or its pods are excluded")
    env = env_of(deployment, docs)
    timeout = int(env["IOMETE_SECRETS_ADMISSION_TIMEOUT"].rstrip("s"))
    check(timeout < hook["timeoutSeconds"], f"{render}: --admission-timeout below timeoutSeconds")
    client = hook["clientConfig"]
    annotations = mwc["metadata"].get("annotations") or {}
    certificate = one(docs, "Certificate", "iomete-secrets-webhook-serving")
    if certificate:
        check(annotations.get("cert-manager.io/inject-ca-from") == f"{NAMESPACE}/iomete-secrets-webhook-serving"
              and "caBundle" not in client, f"{render}: cainjector fills the caBundle from the serving Certificate")
        check(certificate["spec"]["secretName"] == pod["volumes"][0]["secret"]["secretName"],
              f"{render}: the pods mount the serving Certificate's Secret")
    else:
        check(client.get("caBundle") and not annotations, f"{render}: tls.mode secret sets the caBundle")
    crd = one(docs, "CustomResourceDefinition")
    shipped = yaml.safe_load((root / "deploy/base/vaultconfig-crd.yaml").read_text())
    check(crd is None or {**crd, "metadata": {"name": crd["metadata"]["name"]}} == shipped,
          f"{render}: the CRD is deploy/base/vaultconfig-crd.yaml plus labels and annotations")
    if binary:
        run_binary(render, deployment, docs)
    if len(failures) == before:
        print(f"   {render}: ok")

check((chart / "files/vaultconfig-crd.yaml").read_text() == (root / "deploy/base/vaultconfig-crd.yaml").read_text(),
      "charts/iomete-secrets-webhook/files/vaultconfig-crd.yaml is deploy/base/vaultconfig-crd.yaml (run scripts/generate-crd.sh)")
default = renders["default-values+operator-api"]
crd = one(default, "CustomResourceDefinition")
check(crd and crd["metadata"].get("annotations") == {"helm.sh/resource-policy": "keep"},
      "by default the CRD is kept on helm uninstall (helm.sh/resource-policy: keep)")

# ---------------------------------------------------------------- 3. drift between chart and deploy/
print("== the chart and deploy/ do not drift")
KUSTOMIZE_HASH = re.compile(r"^(iomete-secrets-webhook-(?:config|tls))-[a-z0-9]{10}$")


def normalized(doc):
    """`doc` without what only Helm (its labels, the config checksum, the CRD's keep policy) or
    kustomize (the content hash in generated names) adds."""
    doc = copy.deepcopy(doc)

    def strip(meta):
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in HELM_LABELS}
        if labels:
            meta["labels"] = labels
        else:
            meta.pop("labels", None)
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                       if k not in ("checksum/config", "helm.sh/resource-policy")}
        if annotations:
            meta["annotations"] = annotations
        else:
            meta.pop("annotations", None)

    strip(doc["metadata"])
    doc["metadata"]["name"] = KUSTOMIZE_HASH.sub(r"\1", doc["metadata"]["name"])
    if doc["kind"] == "Deployment":
        template_ = doc["spec"]["template"]
        strip(template_["metadata"])
        for var in template_["spec"]["containers"][0].get("env") or []:
            ref = (var.get("valueFrom") or {}).get("configMapKeyRef")
            if ref:
                ref["name"] = KUSTOMIZE_HASH.sub(r"\1", ref["name"])
        for volume in template_["spec"].get("volumes") or []:
            if "secret" in volume:
                volume["secret"]["secretName"] = KUSTOMIZE_HASH.sub(r"\1", volume["secret"]["secretName"])
    return doc


def compare(label, kustomize_docs, chart_docs, chart_only=(), kustomize_only=()):
    def index(docs, skip):
        normal = [normalized(d) for d in docs if d["kind"] not in skip]
        return {(d["kind"], d["metadata"]["name"]): d for d in normal}

    ours, theirs = index(chart_docs, chart_only), index(kustomize_docs, kustomize_only)
    check(set(ours) == set(theirs), f"{label}: the same objects (chart only: {sorted(set(ours) - set(theirs))}, "
                                     f"kustomize only: {sorted(set(theirs) - set(ours))})")
    for key in sorted(set(ours) & set(theirs)):
        if ours[key] != theirs[key]:
            diff = "\n".join(difflib.unified_diff(
                yaml.safe_dump(theirs[key], sort_keys=True).splitlines(), yaml.safe_dump(ours[key], sort_keys=True).splitlines(),
                "kustomize", "chart", lineterm=""))
            check(False, f"{label}: {key[0]}/{key[1]} differs:\n{diff}")
    print(f"   {label}: {len(set(ours) & set(theirs))} objects compared")


def kustomize(path):
    out = run(["kubectl", "kustomize", str(work / path)])
    check(out.returncode == 0, f"kubectl kustomize {path}: {out.stderr}")
    return load_all(out.stdout)


compare("defaults vs deploy/overlays/cert-manager + components/network-policy + deploy/monitoring",
        kustomize("deploy/overlays/chart-defaults") + kustomize("deploy/monitoring"), default)
plain = template(sets=["tls.mode=secret", "tls.secret.name=iomete-secrets-webhook-tls",
                       f"tls.secret.caBundle={(tls / 'ca-bundle.b64').read_text().strip()}",
                       "networkPolicy.enabled=false", "monitoring.mode=none", "monitoring.dashboard.enabled=false"])
if check(plain.returncode == 0, f"helm template with tls.mode secret: {plain.stderr}"):
    # The Secret is the user's in the chart (tls.secret.name), made by the overlay in kustomize.
    compare("tls.mode secret vs deploy/overlays/plain", kustomize("deploy/overlays/plain"), load_all(plain.stdout),
            kustomize_only=("Secret",))
service = template(sets=["monitoring.mode=operator", "monitoring.podMonitor.enabled=false",
                         "monitoring.serviceMonitor.enabled=true", "networkPolicy.enabled=false"])
if check(service.returncode == 0, f"helm template with the ServiceMonitor: {service.stderr}"):
    # deploy/monitoring with servicemonitor.yaml in place of podmonitor.yaml, as its comment says.
    generated = kustomize("deploy/monitoring-servicemonitor")
    wanted = [d for d in load_all(service.stdout) if d["kind"] == "ServiceMonitor" or d["metadata"]["name"].endswith("-metrics")]
    compare("the ServiceMonitor vs deploy/monitoring/servicemonitor.yaml", generated, wanted,
            kustomize_only=("PrometheusRule", "ConfigMap"))
rules_file = yaml.safe_load((root / "deploy/monitoring/prometheus-rules.yaml").read_text())
check(rules_file == {"groups": one(default, "PrometheusRule")["spec"]["groups"]},
      "deploy/monitoring/prometheus-rules.yaml holds the chart's default alerts (run scripts/generate-from-chart.sh)")
check((root / "deploy/monitoring/grafana-dashboard.json").read_bytes() == (chart / "files/grafana-dashboard.json").read_bytes(),
      "deploy/monitoring/grafana-dashboard.json is the chart's dashboard (run scripts/generate-from-chart.sh)")

# ---------------------------------------------------------------- 4. promtool
print(f"== promtool ({run([promtool, '--version']).stdout.splitlines()[0]})")
rule_sets = 0
for render, docs in renders.items():
    for doc in docs:
        groups = None
        if doc["kind"] == "PrometheusRule":
            groups = doc["spec"]["groups"]
        elif doc["kind"] == "ConfigMap" and doc["metadata"]["name"].endswith("-prometheus-rules"):
            groups = yaml.safe_load(next(iter(doc["data"].values())))["groups"]
        if groups is None:
            continue
        path = work / f"rules-{render}.yaml"
        path.write_text(yaml.safe_dump({"groups": groups}))
        checked = run([promtool, "check", "rules", str(path)])
        check(checked.returncode == 0, f"{render}: promtool check rules:\n{checked.stdout}{checked.stderr}")
        rule_sets += 1
check(rule_sets >= 4, f"renderings with rules were checked ({rule_sets})")
for test_file in sorted((root / "tests/monitoring").glob("*.test.yaml")):
    tested = run([promtool, "test", "rules", str(test_file)])
    check(tested.returncode == 0, f"promtool test rules {test_file.name}:\n{tested.stdout}{tested.stderr}")
    print(f"   {test_file.relative_to(root)}: {'ok' if tested.returncode == 0 else 'FAILED'}")
annotation_rules = one(renders["annotations-monitoring-values"], "ConfigMap", "iomete-secrets-webhook-prometheus-rules")
check(annotation_rules and yaml.safe_load(annotation_rules["data"]["iomete-secrets-webhook.rules.yaml"]) == rules_file,
      "monitoring.mode annotations ships the same rules in a ConfigMap")
deployment = one(renders["annotations-monitoring-values"], "Deployment")
check(deployment["spec"]["template"]["metadata"]["annotations"].get("prometheus.io/scrape") == "true",
      "monitoring.mode annotations annotates the pods for scraping")
operator = renders["operator-monitoring-values"]
check(not any(d["kind"] in ("PodMonitor", "ServiceMonitor", "PrometheusRule") for d in renders["default-values"]),
      "monitoring.mode auto renders no Operator objects when the cluster does not serve monitoring.coreos.com/v1")
alerts = [r["alert"] for g in one(operator, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
check("IometeSecretsWebhookDenialsSpike" not in alerts and len(alerts) == 6, "monitoring.rules.disabled leaves an alert out")
check(all(r["labels"].get("team") == "data-platform" and r["annotations"]["runbook_url"].startswith("https://docs.example.com/")
          for g in one(operator, "PrometheusRule")["spec"]["groups"] for r in g["rules"]),
      "additionalAlertLabels and runbookBaseURL reach every alert")

# ---------------------------------------------------------------- 5. rejections
print("== values the chart must refuse, with a message that says what to change")
REJECTED = [
    (["replicas=two"], "at '/replicas': got string, want integer"),
    (["replica=2"], "additional properties 'replica' not allowed"),
    (["features.secretsV2.enabled=yes"], "at '/features/secretsV2/enabled': got string, want boolean"),
    (["config.logFormat=xml"], "value must be one of 'text', 'json'"),
    (["config.admissionTimeout=8"], "at '/config/admissionTimeout': got number, want string"),
    (["config.admissionTimeout=8m"], "at '/config/admissionTimeout': '8m' does not match pattern"),
    (["admission.failurePolicy=Maybe"], "value must be one of 'Fail', 'Ignore'"),
    (["admission.excludeOwnNamespace=false", "admission.excludeOwnPods=false"],
     "admission.excludeOwnNamespace or admission.excludeOwnPods must stay true"),
    (["tls.mode=secret"], "tls.mode secret needs tls.secret.name"),
    (["tls.mode=secret", "tls.secret.name=x"], "tls.mode secret needs tls.secret.name"),
    (["image.tag=latest"], "image.tag must not be latest"),
    (["replicas=1"], "replicas must be at least 2 while podDisruptionBudget.enabled is true"),
    (["monitoring.serviceMonitor.enabled=true"], "must not both be true"),
    (["monitoring.mode=prometheus"], "value must be one of 'auto', 'operator', 'annotations', 'none'"),
    (["monitoring.rules.disabled={IometeSecretsWebhookTypo}"], "at '/monitoring/rules/disabled/0': value must be one of"),
    (["extraEnv[0].name=IOMETE_SECRETS_STORE_NAMESPACE", "extraEnv[0].value=x"], "at '/extraEnv/0/name': 'not' failed"),
    (["podLabels.app\\.kubernetes\\.io/name=other"], "at '/podLabels': 'not' failed"),
    (["admission.url=http://127.0.0.1:8443/mutate"], "does not match pattern"),
    (["monitoring.rules.latencyThresholdSeconds=fast"], "at '/monitoring/rules/latencyThresholdSeconds': 'anyOf' failed"),
    (["config.admissionTimeout=10s"], "config.admissionTimeout (10s) must be below admission.timeoutSeconds (10)"),
    (["config.vault.timeout=5s"], "config.vault.timeout (5s) must be at most half of config.admissionTimeout (8s)"),
    (["config.vault.checkInterval=2s"], "config.vault.checkInterval (2s) must be at least 5s"),
    (["podDisruptionBudget.minAvailable=2"], "podDisruptionBudget.minAvailable (2) must be below replicas (2)"),
    (["auditPods.enabled=yes"], "at '/auditPods/enabled': got string, want boolean"),
    (["auditPods.interval=0s"], "at '/auditPods/interval': '0s' does not match pattern"),
    (["broker.deliveryRequired=broker"], "broker.enabled is false"),
    (["broker.deliveryDefault=broker"], "broker.enabled is false"),
    (["broker.enabled=true", "broker.port=8443"], "at '/broker/port': 'not' failed"),
    (["broker.deliveryRequired=env"], "at '/broker/deliveryRequired': value must be one of"),
    (["broker.requiredDomains={hr}"], "broker.enabled is false"),
    (["broker.enabled=true", "broker.defaultDomains={Finance}"], "at '/broker/defaultDomains/0'"),
    (["broker.enabled=true", "broker.entrypoints.spark.entrypoint=null"], "at '/broker/entrypoints/spark"),
]
for sets, message in REJECTED:
    out = template(sets=sets)
    check(out.returncode != 0 and message in out.stderr,
          f"helm template --set {' --set '.join(sets)} fails saying {message!r} (got: {out.stderr.strip() or 'success'})")
ACCEPTED = [
    ["admission.excludeOwnNamespace=false"],
    ["admission.excludeOwnPods=false"],
    ["replicas=1", "podDisruptionBudget.enabled=false"],
    ["monitoring.podMonitor.enabled=false", "monitoring.serviceMonitor.enabled=true"],
    ["config.admissionTimeout=29s", "admission.timeoutSeconds=30", "config.vault.timeout=14500ms"],
    ["image.digest=sha256:" + "a" * 64],
    ["monitoring.rules.latencyThresholdSeconds=2.5"],
    ["broker.enabled=true"],
]
for sets in ACCEPTED:
    out = template(sets=sets)
    check(out.returncode == 0, f"helm template --set {' --set '.join(sets)} succeeds: {out.stderr}")
print(f"   {len(REJECTED)} refused, {len(ACCEPTED)} accepted")

print()
if failures:
    print(f"validate-chart: {len(failures)} of {checks} checks FAILED:")
    for failure in failures:
        print(f"  - {failure}")
    sys.exit(1)
print(f"validate-chart: all {checks} checks hold")
