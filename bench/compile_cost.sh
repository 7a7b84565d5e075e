#!/usr/bin/env bash
# What the library costs to compile with: user CPU seconds of one translation unit, the
# median of three compiles, at -O0 and -O2, for
#   raw_bot.cpp   an echo bot on gRPC's callback API and the generated stubs (the baseline)
#   bot.cpp       the same bot written with this library (#include <ensemble/ensemble.hpp>)
#   bot_test.cpp  a test of that bot against the daemon double (compiled library)
# then bot.cpp the three other ways the README offers:
#   bot + PCH            <ensemble/ensemble.hpp> precompiled (compiled once, not counted)
#   bot, separate        ENSEMBLE_SEPARATE_COMPILATION: the reactor is compiled elsewhere
#   bot, separate + PCH  both
# and what the separate way pays once per program: the file that includes
# <ensemble/separate_compilation.hpp> (reactor). Ratios against raw_bot (target 1.5) and
# bot_test/bot (target 2). Compiles one file at a time, so the figures are only as quiet as
# the machine is.
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
separate=-DENSEMBLE_SEPARATE_COMPILATION
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '#include <ensemble/separate_compilation.hpp>\n' >"$out/reactor.cpp"

# Median user CPU seconds of three compiles of FILE with the given extra flags.
median_user_seconds() {
  local file=$1; shift
  local times=() t
  for _ in 1 2 3; do
    t=$( { TIMEFORMAT=%U; time "$cxx" "${flags[@]}" "$@" -c "$file" -o "$out/tu.o" >/dev/null; } 2>&1 )
    times+=("$t")
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 2p
}

# bot.cpp with the README's precompiled-header recipe: <ensemble/ensemble.hpp> compiled
# once per option set (not counted), then used by the bot's compile.
bot_with_pch() {
  cp bench/compile_cost/pch.hpp "$out/pch.hpp"
  "$cxx" "${flags[@]}" "$@" -x c++-header "$out/pch.hpp" -o "$out/pch.hpp.gch"
  median_user_seconds bench/compile_cost/bot.cpp "$@" -include "$out/pch.hpp" -Winvalid-pch
  rm -f "$out/pch.hpp.gch"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
printf '%-22s %8s %8s\n' "TU (user s)" "-O0" "-O2"
declare -A cost
row() {
  local name=$1 key=$2
  printf '%-22s %8s %8s\n' "$name" "${cost[$key-O0]}" "${cost[$key-O2]}"
}
for opt in -O0 -O2; do
  for tu in raw_bot bot bot_test; do
    cost[$tu$opt]=$(median_user_seconds "bench/compile_cost/$tu.cpp" "$opt")
  done
  cost[pch$opt]=$(bot_with_pch "$opt")
  cost[sep$opt]=$(median_user_seconds bench/compile_cost/bot.cpp "$opt" "$separate")
  cost[seppch$opt]=$(bot_with_pch "$opt" "$separate")
  cost[reactor$opt]=$(median_user_seconds "$out/reactor.cpp" "$opt" "$separate")
done
row raw_bot raw_bot; row bot bot; row bot_test bot_test; row "bot + PCH" pch
row "bot, separate" sep; row "bot, separate + PCH" seppch; row "(reactor, once)" reactor
for opt in -O0 -O2; do
  awk -v o="$opt" -v r="${cost[raw_bot$opt]}" -v b="${cost[bot$opt]}" -v t="${cost[bot_test$opt]}" \
      -v p="${cost[pch$opt]}" -v s="${cost[sep$opt]}" -v sp="${cost[seppch$opt]}" \
    'BEGIN { printf "%s  /raw: bot %.2fx, + PCH %.2fx, separate %.2fx, separate + PCH %.2fx (target 1.5)   bot_test/bot %.2fx (target 2)\n",
             o, b / r, p / r, s / r, sp / r, t / b }'
done
