#!/usr/bin/env bash
# Proves that `meson dist` ships a tree that stands on its own: makes the tarball from the
# committed sources, unpacks it in a temporary directory, configures, builds and runs the
# core tests there. Run by `meson test` (suite 'slow') and usable by hand before a release.
#
# Usage: scripts/dist-check.sh [SOURCE_DIR] [TEST_NAME...]
#   SOURCE_DIR  the git checkout to package (default: this script's checkout)
#   TEST_NAME   meson tests to build and run in the unpacked tree (default: proto version,
#               the two small programs; any other name builds the whole suite, test_ensemble)
#
# meson dist packages what is committed (git archive of HEAD); --allow-dirty lets it run
# while the working tree has uncommitted changes, which are not packaged. --no-tests skips
# meson's own full build-and-test of the tarball; this script runs a chosen subset instead,
# which keeps it to a couple of minutes on two cores.
# Exit 77 (meson's "skipped") when SOURCE_DIR is not a git checkout, e.g. inside a tarball.
set -euo pipefail

src=${1:-"$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"}
shift || true
tests=("$@")
if ((${#tests[@]} == 0)); then tests=(proto version); fi

if ! git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "dist-check: $src is not a git checkout; nothing to package (skipped)"
  exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ensemble-dist.XXXXXX")
trap 'rm -rf "$work"' EXIT

step() { printf '\n== dist-check: %s\n' "$*"; }
# Runs a command with its output in a log, shown only when it fails.
quiet() {
  local log="$work/step.log"
  if ! "$@" >"$log" 2>&1; then
    cat "$log"
    echo "dist-check: FAILED: $*" >&2
    exit 1
  fi
}

step "package $(git -C "$src" rev-parse --short HEAD) with meson dist"
quiet meson setup "$work/pkg-build" "$src"
quiet meson dist -C "$work/pkg-build" --no-tests --allow-dirty --formats gztar
tarballs=("$work"/pkg-build/meson-dist/*.tar.gz)
tarball=${tarballs[0]}
echo "tarball: $(basename "$tarball") ($(du -k "$tarball" | cut -f1) KiB)"

step "check the tarball's contents"
listing=$(tar -tzf "$tarball")
for required in meson.build meson_options.txt proto/ensemble.proto include/ensemble/auth.hpp \
                include/ensemble/version.hpp.in CHANGELOG.md LICENSE SECURITY.md CONTRIBUTING.md \
                tools/ensemble-keygen.cpp; do
  if ! grep -q "^[^/]*/$required\$" <<<"$listing"; then
    echo "dist-check: the tarball lacks $required" >&2
    exit 1
  fi
done
# Generated code is made at build time and must never be shipped.
if grep -Eq '\.pb\.(h|cc)$|/version\.hpp$|/build[^/]*/' <<<"$listing"; then
  echo "dist-check: the tarball contains generated or build files:" >&2
  grep -E '\.pb\.(h|cc)$|/version\.hpp$|/build[^/]*/' <<<"$listing" >&2
  exit 1
fi

step "unpack, configure and build ${tests[*]}"
mkdir "$work/unpacked"
tar -xzf "$tarball" -C "$work/unpacked"
trees=("$work"/unpacked/*/)
tree=${trees[0]}
# -O0 without debug info: this build only has to prove the tree builds, so build it fast.
quiet meson setup --buildtype=plain "$work/dist-build" "$tree"
targets=()
for t in "${tests[@]}"; do
  case $t in
    proto | version) targets+=("test/test_$t") ;;
    *) targets+=("test/test_ensemble") ;;
  esac
done
quiet meson compile -C "$work/dist-build" "${targets[@]}"

step "run ${tests[*]} in the unpacked tree"
meson test -C "$work/dist-build" --no-rebuild --print-errorlogs "${tests[@]}"
echo "dist-check: OK"
