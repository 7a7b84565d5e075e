#!/usr/bin/env bash
# The benchmarks (bench/): the library against raw gRPC, in one run, on this machine.
#
# Usage: scripts/bench.sh [ensemble-bench arguments]
#   scripts/bench.sh                 every workload, 5 runs each (a few minutes on 2 cores)
#   scripts/bench.sh --only 1,3      just those workloads
#   scripts/bench.sh --quick         small counts, one run: a smoke test, not a measurement
#
# Configures a release build of its own (build-bench/, or $ENSEMBLE_BENCH_BUILD_DIR), builds
# only the benchmark, runs it, and leaves every figure in build-bench/bench.json; then
# measures the compile cost of a bot and of its test (bench/compile_cost.sh). Absolute
# numbers depend on the machine and its load; the ratios are what to read. Not part of
# `meson test` (only a --quick smoke run is, in the 'bench' suite).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${ENSEMBLE_BENCH_BUILD_DIR:-build-bench}
if [[ ! -f $dir/build.ninja ]]; then
  meson setup "$dir" --buildtype=release
fi
meson compile -C "$dir" ensemble-bench
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)" >&2
"$dir/bench/ensemble-bench" --json "$dir/bench.json" "$@"
# What a bot and its test cost to compile, against a raw gRPC bot (bench/compile_cost.sh).
if [[ " $* " != *" --quick "* ]]; then
  echo
  echo "compile cost (bench/compile_cost/):"
  bench/compile_cost.sh "$dir"
fi
