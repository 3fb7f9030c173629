#!/usr/bin/env bash
# Fuzz smoke: builds every cargo-fuzz target of fuzz/ and runs each for a fixed time, then prints
# per target the executions, the corpus and the findings (crash, timeout, out-of-memory and leak
# files libFuzzer wrote). Exits non-zero on any finding, or when a fuzzer stopped on its own
# before its time was up. tests/fuzz_smoke.rs runs it inside `cargo test --workspace`.
#
# Usage: scripts/fuzz-smoke.sh [seconds-per-target] [target...]
#   seconds-per-target  default 60
#   target...           default: every target (`cargo fuzz list`)
#
# Environment:
#   IOMETE_FUZZ_TARGET_DIR  cargo target dir of the fuzz build (default
#                           ${XDG_CACHE_HOME:-$HOME/.cache}/iomete-secrets-webhook/fuzz-target:
#                           kept between runs and checkouts, so a rerun rebuilds only the webhook)
#   IOMETE_FUZZ_WORK_DIR    where each target's corpus and artifacts live (default fuzz/, as
#                           fuzz/corpus/<target> and fuzz/artifacts/<target>); a corpus grows from
#                           run to run, so a long run continues where the last one stopped
#   IOMETE_FUZZ_ARGS        extra libFuzzer flags for every target (e.g. "-jobs=2 -workers=2")
#
# Stable toolchain: libFuzzer's coverage comes from LLVM's sancov pass, which stable rustc takes
# as ordinary -C flags, so `--sanitizer none` builds without nightly. The targets are safe Rust,
# so AddressSanitizer would add little; it is one flag away (RUSTC_BOOTSTRAP=1 and
# --sanitizer address, see docs/robustness.md) for a long run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${1:-60}
shift || true
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [seconds-per-target] [target...]" >&2
    exit 2
fi

cache="${XDG_CACHE_HOME:-$HOME/.cache}/iomete-secrets-webhook"
target_dir="${IOMETE_FUZZ_TARGET_DIR:-$cache/fuzz-target}"
work="${IOMETE_FUZZ_WORK_DIR:-$root/fuzz}"
read -r -a extra_args <<<"${IOMETE_FUZZ_ARGS:-}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
    cargo install cargo-fuzz --locked
fi

# The fuzz crate resolves its dependencies from the main lockfile, so it fuzzes exactly the
# versions the webhook ships with; cargo adds only the fuzz-only crates (libfuzzer-sys) to it.
if [[ ! -f fuzz/Cargo.lock || Cargo.lock -nt fuzz/Cargo.lock ]]; then
    cp Cargo.lock fuzz/Cargo.lock
fi

if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

echo "== seed corpora from tests/fixtures" >&2
python3 fuzz/seeds.py --out "$work/seeds" >&2

echo "== building ${targets[*]} (release, debug assertions, sanitizer none) in $target_dir" >&2
build_start=$SECONDS
# One build for all targets; the per-crate "Compiling" lines are dropped, everything else shown.
cargo fuzz build --fuzz-dir fuzz --sanitizer none --target-dir "$target_dir" 2>&1 |
    { grep -v '^ *Compiling ' || true; } >&2
build_seconds=$((SECONDS - build_start))

triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="$target_dir/$triple/release"
failed=0
rows=()
for target in "${targets[@]}"; do
    corpus="$work/corpus/$target"
    artifacts="$work/artifacts/$target"
    log="$work/artifacts/$target.log"
    mkdir -p "$corpus" "$artifacts"
    stamp=$(mktemp)
    dict=()
    [[ -f "fuzz/dicts/$target.dict" ]] && dict=("-dict=fuzz/dicts/$target.dict")
    echo "== $target: ${seconds}s" >&2
    status=0
    "$bin_dir/$target" "$corpus" "$work/seeds/$target" \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" "${dict[@]}" "${extra_args[@]}" >"$log" 2>&1 || status=$?
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    per_second=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    # libFuzzer's last status line: "#N DONE cov: C ft: F corp: U/SIZE ...".
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    coverage=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
    files=$(find "$corpus" -type f | wc -l)
    bytes=$(find "$corpus" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
    findings=$(find "$artifacts" -type f -newer "$stamp" \
        \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | sort)
    rm -f "$stamp"
    count=$(grep -c . <<<"$findings" || true)
    if ((status != 0)) || ((count > 0)); then
        failed=1
        echo "!! $target: libFuzzer exit $status, $count finding(s); log $log" >&2
        tail -n 40 "$log" >&2
        while read -r finding; do
            [[ -n "$finding" ]] && echo "   finding: $finding (reproduce: $bin_dir/$target $finding)" >&2
        done <<<"$findings"
    fi
    rows+=("$(printf '%-20s %12s %9s %6s %14s %9s %10s %8s' "$target" "${executions:-?}" \
        "${per_second:-?}" "${coverage:-?}" "${corp:-?}" "$files" "$bytes" "$count")")
done

echo
echo "fuzz smoke: ${seconds}s per target, build ${build_seconds}s, $(rustc --version)"
printf '%-20s %12s %9s %6s %14s %9s %10s %8s\n' target executions exec/s cov corpus-units \
    files bytes findings
printf '%s\n' "${rows[@]}"
if ((failed)); then
    echo "FINDINGS: see above; the inputs are in $work/artifacts/<target>/"
    exit 1
fi
echo "no findings"
