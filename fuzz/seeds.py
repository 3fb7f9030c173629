#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target, built from the repository's fixtures.

The seeds are generated rather than committed so the fixtures stay the one copy of the real
API-server captures and Spark pods: scripts/fuzz-smoke.sh runs this before every run. Output is
deterministic (same fixtures, same files).

- admission_decision: every real AdmissionReview capture as sent, and the Spark 3.5 driver and
  executor pods and the KubeSpawner notebook pods wrapped in the GKE capture's envelope, with
  reference annotations, legacy placeholders, dry runs and namespace tricks that reach every
  answer (patched, 400, 403, 404, 503) in the fuzz cluster (fuzz/src/cluster.rs);
- reference_parser: annotation sets in the target's input format (segments separated by 0xFF,
  each a selector byte naming the annotation and the value);
- spark_options: hostile values, with and without a literal SPARK_SUBMIT_OPTS already set;
- kubelet_escaping: the kubelet's expansion table and the hostile values.

Usage: fuzz/seeds.py [--fixtures DIR] [--out DIR]
"""

import argparse
import copy
import json
import pathlib
import shutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
ENV = "secrets.iomete.com/env-secrets"
SPARK = "secrets.iomete.com/spark-conf-secrets"
CONTAINERS = "secrets.iomete.com/containers"

# Values that break naive quoting, shells, the kubelet or Spark's launcher.
HOSTILE = [
    "", " ", "plain", "with space", "it's", "'", "''", "'\\''", "say \"hi\"", "\"",
    "x' -Dspark.evil=1 '", "x\" -Dspark.evil=1 \"", "$", "$$", "$(HOME)", "$$(HOME)",
    "${HOME}", "trailing$", "$(", "`id`", "back\\slash", "\\", "trailing\\", "a=b=c",
    "line one\nline two", "\t tab", "\u00e9 \u20ac \u4e2d", "\u00a0\u2007\u202f",
    "\u0085\u2028\u2029\u3000", "\ufffd\ue000\uffff", "${secrets.db_password}",
    "$${secrets.k}", "carriage\rreturn", "nul\0byte", "clef \U0001d11e",
]
LITERALS = [
    "", "-Xss4m", "-Dfoo=bar -XX:+UseG1GC", "'-Dspark.app.tag=a b' \"-Dx=y z\"",
    "-Dfoo=bar ", "''", "-Dpath=a\\ b", "-Dprice=$$5", "-Dhome=$(HOME)", "-Dfoo='bar",
    "-Dfoo=bar\\", "-Dfoo=$(BAR", "$$$(B", "$é",
]
KUBELET_TABLE = [
    "$(VAR_A)", "$$(VAR_B)_$(VAR_A)", "f000-$$VAR_A", "foo\\$(VAR_C)bar", "$(VAR_A$(VAR_B))",
    "foo$(VAR_Awhoops!", "$?_boo_$!", "$$$$$$$(VAR_A)", "${VAR_A}", "$(VAR_C)_______$(",
    "$(VAR_A)foobarzab$", "--$($($($($--", "$(foo$$var)", "\n", "$\u00e9", "$\U0001d11e",
]


def entry(target, key, store_id, source="KUBERNETES"):
    return {"key": target, "secretObject": {"key": key, "source": {"type": source, "id": store_id}}}


REFERENCES = {
    "domain-and-global": [entry("DB_PASSWORD", "db_password", "finance"),
                          entry("SMTP_PASSWORD", "smtp_password", "global")],
    "admin": [entry("ROOT_PASSWORD", "root", "admin")],
    "other-domain": [entry("DB_PASSWORD", "db_password", "marketing")],
    "missing-key": [entry("NOPE", "no-such-key", "finance")],
    "missing-store": [entry("NOPE", "k", "research")],
    "vault": [entry("VAULT_TOKEN", "k", "vault-finance", "VAULT")],
    "replaces-existing": [entry("SPARK_USER", "k", "global")],
}
SPARK_REFERENCES = [entry("spark.hadoop.fs.s3a.secret.key", "s3-secret-key", "finance"),
                    entry("spark.sql.catalog.c.credential", "k", "global")]
NAMESPACES = ["finance-jobs", "marketing-jobs", "iomete-system", "platform-admin", "default",
              "global-label", "admin-label", "uppercase-label", "wrong-key", "not-yet-seen"]


def annotate(pod, name, value):
    pod = copy.deepcopy(pod)
    pod.setdefault("metadata", {}).setdefault("annotations", {})[name] = value
    return pod


def wrap(envelope, pod, namespace, dry_run=False):
    review = copy.deepcopy(envelope)
    request = review["request"]
    if namespace is None:
        request.pop("namespace", None)
    else:
        request["namespace"] = namespace
    request["name"] = pod.get("metadata", {}).get("name")
    request["object"] = pod
    request["dryRun"] = dry_run
    return review


def admission_seeds(fixtures):
    def load(path):
        return json.loads((fixtures / path).read_text())

    envelope = load("real/admissionreview-pod-create-kube-rs-gke.json")
    seeds = {}
    for path in sorted((fixtures / "real").glob("admissionreview-*.json")):
        seeds[f"capture-{path.stem}"] = load(path.relative_to(fixtures))
    for path in sorted((fixtures / "real").glob("admissionrequest-*.json")):
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                  "request": load(path.relative_to(fixtures))}
        seeds[f"capture-{path.stem}"] = review
        seeds[f"capture-{path.stem}-refs"] = {
            **review, "request": {**review["request"], "object": annotate(
                annotate(review["request"]["object"], ENV,
                         json.dumps(REFERENCES["domain-and-global"])),
                CONTAINERS, "init-myservice, sidecar")}}

    driver = load("spark/spark35-driver-pod.json")
    executor = load("spark/spark35-executor-pod.json")
    for name, refs in REFERENCES.items():
        pod = annotate(driver, ENV, json.dumps(refs))
        seeds[f"driver-{name}"] = wrap(envelope, pod, "finance-jobs")
    for namespace in NAMESPACES:
        pod = annotate(driver, ENV, json.dumps(REFERENCES["domain-and-global"]))
        seeds[f"driver-in-{namespace}"] = wrap(envelope, pod, namespace)
        pod = annotate(driver, ENV, json.dumps(REFERENCES["admin"]))
        seeds[f"driver-admin-in-{namespace}"] = wrap(envelope, pod, namespace)

    spark_driver = annotate(driver, SPARK, json.dumps(SPARK_REFERENCES))
    seeds["driver-spark-conf"] = wrap(envelope, spark_driver, "finance-jobs")
    seeds["driver-spark-conf-dry-run"] = wrap(envelope, spark_driver, "finance-jobs", True)
    with_opts = copy.deepcopy(spark_driver)
    with_opts["spec"]["containers"][0]["env"].append(
        {"name": "SPARK_SUBMIT_OPTS", "value": "-Dx=1 '-Dy=a b' -Dhome=$(HOME)"})
    seeds["driver-spark-conf-existing-opts"] = wrap(envelope, with_opts, "finance-jobs")
    spark_executor = annotate(executor, SPARK, json.dumps(SPARK_REFERENCES))
    seeds["executor-spark-conf"] = wrap(envelope, spark_executor, "finance-jobs")
    seeds["executor-spark-conf-other-domain"] = wrap(envelope, spark_executor, "marketing-jobs")
    seeds["executor-env"] = wrap(envelope, executor, "finance-jobs")

    legacy = copy.deepcopy(driver)
    legacy["spec"]["containers"][0]["env"].append(
        {"name": "JDBC_URL", "value": "jdbc://u:${secrets.db_password}@db/$${secrets.k}"})
    seeds["driver-legacy-placeholder"] = wrap(envelope, legacy, "finance-jobs")
    seeds["driver-legacy-placeholder-no-domain"] = wrap(envelope, legacy, "default")

    both = annotate(driver, ENV, json.dumps(REFERENCES["domain-and-global"]))
    seeds["driver-dry-run"] = wrap(envelope, both, "finance-jobs", True)
    # The scope comes from the request, never from the pod's own claim.
    claims_admin = annotate(driver, ENV, json.dumps(REFERENCES["admin"]))
    claims_admin["metadata"]["namespace"] = "iomete-system"
    seeds["driver-claims-admin-namespace"] = wrap(envelope, claims_admin, "finance-jobs")
    seeds["driver-request-without-namespace"] = wrap(envelope, claims_admin, None)

    for path in sorted((fixtures / "real").glob("notebook-pod-*.json")):
        pod = annotate(load(path.relative_to(fixtures)), ENV,
                       json.dumps(REFERENCES["domain-and-global"]))
        seeds[f"notebook-{path.stem}"] = wrap(envelope, pod, "finance-jobs")
    return {name: json.dumps(review, ensure_ascii=False).encode() for name, review in seeds.items()}


def segment(selector, value):
    return bytes([selector]) + value.encode()


def reference_seeds():
    env, spark, containers, injected = 0, 1, 2, 3
    sets = {
        "env": [segment(env, json.dumps(REFERENCES["domain-and-global"]))],
        "env-spaced": [segment(env, json.dumps(REFERENCES["admin"], indent=2))],
        "spark": [segment(spark, json.dumps(SPARK_REFERENCES))],
        "vault": [segment(env, json.dumps(REFERENCES["vault"]))],
        "env-containers-injected": [
            segment(env, json.dumps(REFERENCES["domain-and-global"])),
            segment(containers, "main, sidecar"),
            segment(injected, "sha256:" + "0" * 64)],
        "empty-lists": [segment(env, "[]"), segment(spark, "[]")],
        "near-miss-name": [segment(4, "[]")],
        "outside-prefix": [segment(9, "{\"not\": \"ours\"}")],
        "duplicate-target": [segment(env, json.dumps(
            [entry("A", "k", "finance"), entry("A", "k", "global")]))],
        "duplicate-field": [segment(env,
            '[{"key": "A", "key": "B", "secretObject": {"key": "k", '
            '"source": {"type": "KUBERNETES", "id": "finance"}}}]')],
        "unknown-field": [segment(env,
            '[{"key": "A", "secretObject": {"key": "k", "source": '
            '{"type": "KUBERNETES", "id": "finance", "namespace": "kube-system"}}}]')],
        "bad-id": [segment(env, json.dumps([entry("A", "k", "../admin")]))],
        "bad-key": [segment(env, json.dumps([entry("A", "..data", "finance")]))],
        "bad-containers": [segment(containers, "main,,Main")],
        # The shapes serde's derived readers take besides the documented one (see
        # SERDE_SHAPES_ACCEPTED in fuzz_targets/reference_parser.rs).
        "array-form": [segment(env, '[["DB_PASSWORD", ["db_password", ["KUBERNETES", "finance"]]]]')],
        "type-as-map": [segment(env,
            '[{"key": "A", "secretObject": {"key": "k", "source": '
            '{"type": {"KUBERNETES": null}, "id": "finance"}}}]')],
        "many-entries": [segment(env, json.dumps(
            [entry(f"V{i}", "k", "global") for i in range(257)]))],
    }
    return {name: b"\xff".join(parts) for name, parts in sets.items()}


def spark_seeds():
    values = [value.encode() for value in HOSTILE]
    seeds = {"values-only": b"\xfe" + b"\xff".join(values),
             "one-empty-value": b"\xfe"}
    for index, literal in enumerate(LITERALS):
        seeds[f"literal-{index}"] = literal.encode() + b"\xff" + b"\xff".join(values[:12])
    for index, value in enumerate(values):
        seeds[f"value-{index}"] = b"\xfe" + value
    return seeds


def kubelet_seeds():
    texts = KUBELET_TABLE + HOSTILE
    return {f"text-{index}": text.encode() for index, text in enumerate(texts)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=pathlib.Path, default=ROOT / "tests" / "fixtures")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "fuzz" / "seeds")
    args = parser.parse_args()
    corpora = {
        "admission_decision": admission_seeds(args.fixtures),
        "reference_parser": reference_seeds(),
        "spark_options": spark_seeds(),
        "kubelet_escaping": kubelet_seeds(),
    }
    for target, seeds in corpora.items():
        directory = args.out / target
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for name, data in seeds.items():
            (directory / name).write_bytes(data)
        size = sum(len(data) for data in seeds.values())
        print(f"{target}: {len(seeds)} seeds, {size} bytes")


if __name__ == "__main__":
    main()
