#!/usr/bin/env bash
# What the library costs to compile with: user CPU seconds of one translation unit, the
# median of three compiles, at -O0 and -O2, for
#   raw_bot.cpp   an echo bot on gRPC's callback API and the generated stubs (the baseline)
#   bot.cpp       the same bot written with this library (#include <ensemble/ensemble.hpp>)
#   bot_test.cpp  a test of that bot against the daemon double (compiled library)
# and the ratios bot/raw (target 1.5) and bot_test/bot (target 2), and the bot again with
# the README's precompiled-header recipe. Compiles one file at a
# time, so the figures are only as quiet as the machine is.
#
# Usage: bench/compile_cost.sh BUILD_DIR   (a configured build whose generated proto
# headers exist: scripts/bench.sh passes build-bench/)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: bench/compile_cost.sh BUILD_DIR}
[[ -f $build/include/ensemble/proto/ensemble.grpc.pb.h ]] || {
  echo "compile_cost: $build has no generated proto headers; build it first" >&2
  exit 1
}
cxx=${CXX:-c++}
flags=(-std=c++20 -Iinclude "-I$build/include" $(pkg-config --cflags grpc++ protobuf libsodium nlohmann_json))
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Median user CPU seconds of three compiles of $2 at optimisation level $1.
median_user_seconds() {
  local times=() t
  for _ in 1 2 3; do
    t=$( { TIMEFORMAT=%U; time "$cxx" "${flags[@]}" "$1" -c "bench/compile_cost/$2.cpp" -o "$out/$2.o" >/dev/null; } 2>&1 )
    times+=("$t")
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 2p
}

# bot.cpp again with the README's precompiled-header recipe: <ensemble/ensemble.hpp>
# compiled once per option set (not counted), then used by the bot's compile.
bot_with_pch() {
  local opt=$1
  cp bench/compile_cost/pch.hpp "$out/pch.hpp"
  "$cxx" "${flags[@]}" "$opt" -x c++-header "$out/pch.hpp" -o "$out/pch.hpp.gch"
  local times=() t
  for _ in 1 2 3; do
    t=$( { TIMEFORMAT=%U; time "$cxx" "${flags[@]}" "$opt" -include "$out/pch.hpp" -Winvalid-pch \
             -c bench/compile_cost/bot.cpp -o "$out/bot_pch.o" >/dev/null; } 2>&1 )
    times+=("$t")
  done
  rm -f "$out/pch.hpp.gch"
  printf '%s\n' "${times[@]}" | sort -n | sed -n 2p
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
printf '%-14s %8s %8s\n' "TU (user s)" "-O0" "-O2"
declare -A cost
for tu in raw_bot bot bot_test; do
  for opt in -O0 -O2; do cost[$tu$opt]=$(median_user_seconds "$opt" "$tu"); done
  printf '%-14s %8s %8s\n' "$tu" "${cost[$tu-O0]}" "${cost[$tu-O2]}"
done
for opt in -O0 -O2; do cost[pch$opt]=$(bot_with_pch "$opt"); done
printf '%-14s %8s %8s\n' "bot + PCH" "${cost[pch-O0]}" "${cost[pch-O2]}"
for opt in -O0 -O2; do
  awk -v o="$opt" -v r="${cost[raw_bot$opt]}" -v b="${cost[bot$opt]}" -v t="${cost[bot_test$opt]}" \
      -v p="${cost[pch$opt]}" \
    'BEGIN { printf "%s  bot/raw %.2fx (target 1.5)   bot+PCH/raw %.2fx   bot_test/bot %.2fx (target 2)\n",
             o, b / r, p / r, t / b }'
done
