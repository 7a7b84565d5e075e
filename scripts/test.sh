#!/usr/bin/env bash
# Sets up a fresh machine (Debian packages), builds everything and runs the whole test suite.
# Usage: scripts/test.sh [extra `meson test` arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/setup-build.sh
meson compile -C build
meson test -C build --print-errorlogs "$@" | tee build/test-summary.txt
ok=$(awk '/^Ok:/ {print $2}' build/test-summary.txt)
fail=$(awk '/^Fail:/ {print $2}' build/test-summary.txt)
echo "${ok:-0} passed, ${fail:-0} failed"
