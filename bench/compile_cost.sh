#!/usr/bin/env bash
# What the library costs to compile with: user CPU seconds of one translation unit, at -O0
# and -O2, for
#   raw_bot.cpp   an echo bot on gRPC's callback API and the generated stubs (the baseline)
#   bot.cpp       the same bot written with this library (#include <ensemble/ensemble.hpp>)
#   bot_test.cpp  a test of that bot against the daemon double (compiled library)
# then bot.cpp the three other ways the README offers:
#   bot + PCH            <ensemble/ensemble.hpp> precompiled (compiled once, not counted)
#   bot, separate        ENSEMBLE_SEPARATE_COMPILATION: the reactor is compiled elsewhere
#   bot, separate + PCH  both
# and what the separate way pays once per program: the file that includes
# <ensemble/separate_compilation.hpp> (reactor).
#
# Every figure is the median of RUNS compiles (default 5) with its range [min-max]. The runs
# are interleaved (round r compiles every file once, in the same order), so a change in the
# machine's load falls on every file alike; each ratio is computed per round (bot of round r
# over raw_bot of round r) and reported as the median of those with their range. Ratios
# against raw_bot (target 1.5) and bot_test/bot (target 2). One compile at a time (one
# core): run it through `slot -n 1` on a machine as idle as can be, and quote the load
# averages it prints.
#
# Usage: [RUNS=5] bench/compile_cost.sh BUILD_DIR   (a configured build whose generated
# proto headers exist: scripts/bench.sh passes build-bench/)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: bench/compile_cost.sh BUILD_DIR}
runs=${RUNS:-5}
[[ -f $build/include/ensemble/proto/ensemble.grpc.pb.h ]] || {
  echo "compile_cost: $build has no generated proto headers; build it first" >&2
  exit 1
}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "compile_cost: RUNS must be a positive whole number" >&2; exit 2; }
cxx=${CXX:-c++}
flags=(-std=c++20 -Iinclude "-I$build/include" $(pkg-config --cflags grpc++ protobuf libsodium nlohmann_json))
separate=-DENSEMBLE_SEPARATE_COMPILATION
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '#include <ensemble/separate_compilation.hpp>\n' >"$out/reactor.cpp"

# User CPU seconds of one compile of FILE with the given extra flags.
user_seconds() {
  local file=$1; shift
  { TIMEFORMAT=%U; time "$cxx" "${flags[@]}" "$@" -c "$file" -o "$out/tu.o" >/dev/null; } 2>&1
}

# The README's precompiled-header recipe: <ensemble/ensemble.hpp> compiled once per option
# set (not counted) into $out/pch-NAME/pch.hpp.gch, which the bot's compile then uses.
make_pch() {
  local name=$1; shift
  mkdir -p "$out/pch-$name"
  cp bench/compile_cost/pch.hpp "$out/pch-$name/pch.hpp"
  "$cxx" "${flags[@]}" "$@" -x c++-header "$out/pch-$name/pch.hpp" -o "$out/pch-$name/pch.hpp.gch"
}

# The configurations, in the order each round compiles them: key, then the compile.
configs=(raw_bot bot bot_test pch sep seppch reactor)
compile_config() {
  local key=$1 opt=$2
  case $key in
    raw_bot | bot | bot_test) user_seconds "bench/compile_cost/$key.cpp" "$opt" ;;
    pch) user_seconds bench/compile_cost/bot.cpp "$opt" -include "$out/pch-plain$opt/pch.hpp" -Winvalid-pch ;;
    sep) user_seconds bench/compile_cost/bot.cpp "$opt" "$separate" ;;
    seppch) user_seconds bench/compile_cost/bot.cpp "$opt" "$separate" -include "$out/pch-sep$opt/pch.hpp" -Winvalid-pch ;;
    reactor) user_seconds "$out/reactor.cpp" "$opt" "$separate" ;;
  esac
}

# "median [min-max]" of the numbers on stdin, with the given printf format for each.
summary() {
  sort -g | awk -v f="$1" '{ v[NR] = $1 }
    END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          printf f " [" f "-" f "]", m, v[1], v[NR] }'
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A t  # t[key opt round] = user seconds
for opt in -O0 -O2; do
  make_pch "plain$opt" "$opt"
  make_pch "sep$opt" "$opt" "$separate"
  for ((r = 1; r <= runs; r++)); do
    for key in "${configs[@]}"; do
      t[$key$opt$r]=$(compile_config "$key" "$opt")
    done
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo "compile cost of one TU, user CPU s: median [min-max] of $runs interleaved runs"
echo "$started, $("$cxx" --version | head -1), $(nproc) cores, load average $load_before before, $load_after after"
printf '%-22s %-24s %-24s\n' "TU (user s)" "-O0" "-O2"
declare -A names=([raw_bot]=raw_bot [bot]=bot [bot_test]=bot_test [pch]="bot + PCH" [sep]="bot, separate"
                  [seppch]="bot, separate + PCH" [reactor]="(reactor, once)")
column() {  # key opt -> summary of its runs
  for ((r = 1; r <= runs; r++)); do echo "${t[$1$2$r]}"; done | summary '%.2f'
}
for key in "${configs[@]}"; do
  printf '%-22s %-24s %-24s\n' "${names[$key]}" "$(column "$key" -O0)" "$(column "$key" -O2)"
done
ratio() {  # numerator denominator opt -> summary of the per-round ratios
  for ((r = 1; r <= runs; r++)); do
    awk -v n="${t[$1$3$r]}" -v d="${t[$2$3$r]}" 'BEGIN { printf "%.4f\n", n / d }'
  done | summary '%.2f'
}
echo "ratios, median [min-max] of the per-run ratios:"
for opt in -O0 -O2; do
  echo "$opt  /raw: bot $(ratio bot raw_bot "$opt"), + PCH $(ratio pch raw_bot "$opt"), separate $(ratio sep raw_bot "$opt"), separate + PCH $(ratio seppch raw_bot "$opt") (target 1.5)"
  echo "$opt  bot_test/bot $(ratio bot_test bot "$opt") (target 2)"
done
