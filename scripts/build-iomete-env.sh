#!/usr/bin/env bash
# Builds iomete-env, the broker mode's entrypoint wrapper, as a static executable and prints its
# absolute path as the last line on stdout (cargo's progress goes to stderr).
#
# It runs in containers of any image, so it must not need the image's dynamic loader or libc:
# glibc is linked in (`crt-static`). The target is named explicitly so that RUSTFLAGS apply to
# iomete-env and its dependencies only, not to build scripts and proc-macros (which run on the
# build machine and cannot be static). The result is refused unless it has no ELF interpreter.
#
# Environment:
#   IOMETE_ENV_PROFILE  cargo profile: release (default; the image's build) or dev (faster to
#                       build, for tests)
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${IOMETE_ENV_PROFILE:-release}"
case "$profile" in
    release) dir=release ;;
    dev) dir=debug ;;
    *) echo "build-iomete-env: IOMETE_ENV_PROFILE must be release or dev, not '$profile'" >&2; exit 2 ;;
esac
host="$(rustc -vV | sed -n 's/^host: //p')"
case "$host" in
    *-linux-gnu*) ;;
    *) echo "build-iomete-env: host $host is not a glibc Linux target; crt-static needs one" >&2; exit 1 ;;
esac
command -v readelf >/dev/null || { echo "build-iomete-env: readelf (binutils) is needed to check the result" >&2; exit 1; }

RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
    cargo build --locked --profile "$profile" --target "$host" --bin iomete-env >&2

binary="$PWD/target/$host/$dir/iomete-env"
[ -x "$binary" ] || { echo "build-iomete-env: $binary was not built" >&2; exit 1; }
# readelf's output is read whole first: under pipefail, `grep -q` exiting at its match could
# fail readelf with SIGPIPE and turn the test around.
headers="$(readelf -lW "$binary")" || { echo "build-iomete-env: readelf cannot read $binary" >&2; exit 1; }
if grep -q 'Requesting program interpreter' <<<"$headers"; then
    echo "build-iomete-env: $binary is dynamically linked (it has an ELF interpreter); it must be static" >&2
    exit 1
fi
echo "$binary"
