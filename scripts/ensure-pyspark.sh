#!/usr/bin/env bash
# Makes sure a Python venv with PySpark (which carries spark-submit and Spark's jars) exists in
# a cache directory, and prints the path of its spark-submit on stdout (progress goes to stderr).
#
# tests/spark_submit.rs runs the webhook's SPARK_SUBMIT_OPTS through a real spark-submit with
# it. Idempotent and fast once installed: a stamp file written as the very last step records the
# version, so a venv left half-built by an interrupted run is rebuilt, not trusted. A lock keeps
# two concurrent callers (CI and a test, two test binaries) from building it at once.
#
# Environment:
#   IOMETE_PYSPARK_VENV     where the venv lives
#                           (default ${XDG_CACHE_HOME:-$HOME/.cache}/iomete-secrets-webhook/pyspark-venv)
#   IOMETE_PYSPARK_VERSION  the PyPI version to install (default 3.5.8, the version the Spark pod
#                           fixtures in tests/fixtures/spark were recorded with)
#   PYTHON                  the interpreter to build the venv with (default python3)
set -euo pipefail

version="${IOMETE_PYSPARK_VERSION:-3.5.8}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/iomete-secrets-webhook"
venv="${IOMETE_PYSPARK_VENV:-$cache/pyspark-venv}"
python="${PYTHON:-python3}"
stamp="$venv/.iomete-pyspark-version"
spark_submit="$venv/bin/spark-submit"

installed() {
    [[ -x "$spark_submit" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]
}

if installed; then
    echo "$spark_submit"
    exit 0
fi

mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
# Another caller may have finished the install while this one waited for the lock.
if installed; then
    echo "$spark_submit"
    exit 0
fi

echo "ensure-pyspark: installing pyspark==$version into $venv (one time, about 320 MB)" >&2
rm -rf "$venv"
if ! "$python" -m venv "$venv" >&2; then
    echo "ensure-pyspark: \"$python -m venv\" failed; on Debian, apt-get install python3-venv" >&2
    exit 1
fi
# pip's progress goes to stderr so that stdout carries only the path.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    "pyspark==$version" >&2
if [[ ! -x "$spark_submit" ]]; then
    echo "ensure-pyspark: pyspark==$version installed but $spark_submit is missing" >&2
    exit 1
fi
echo "$version" >"$stamp"
echo "$spark_submit"
