#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ with clang's libFuzzer (+ ASan + UBSan) in build-fuzz/ and
# runs each one for the given time, starting from its committed corpus in fuzz/corpus/.
#   scripts/fuzz.sh [seconds per target, default 120] [target ...]
# Targets: service_message daemon_chat seed_file address (default: all).
# Inputs the fuzzer finds go to build-fuzz/fuzz-work/<target>/ (add the interesting ones to
# fuzz/corpus/<target>/ by hand); a crashing input to build-fuzz/fuzz-artifacts/<target>/.
# Fails on a crash, and when a target ran fewer than ENSEMBLE_FUZZ_MIN_EXECS executions
# (default 1000000, the project's bar; 0 turns the check off for a quick look).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-120}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then targets=(service_message daemon_chat seed_file address); fi
min_execs=${ENSEMBLE_FUZZ_MIN_EXECS:-1000000}

ENSEMBLE_DEPS_EXTRA=fuzz scripts/install-deps.sh
dir=build-fuzz
if [[ ! -f $dir/build.ninja ]]; then
  # fuzzer-no-link puts coverage in everything, the generated proto code included, so the
  # fuzzer sees its parser's branches; the libFuzzer main is linked into fuzz/fuzz_* only.
  # No UBSan recovery: undefined behaviour must crash for libFuzzer to keep the input.
  CXX=clang++ meson setup "$dir" -Db_sanitize=address,undefined -Db_lundef=false \
    -Dcpp_args="-fsanitize=fuzzer-no-link -fno-sanitize-recover=all"
fi
meson compile -C "$dir" "${targets[@]/#/fuzz/fuzz_}"

# The same runtime options and suppressions as the sanitized test suites.
while IFS= read -r line; do
  [[ -z $line || $line == \#* ]] && continue
  export "${line//@dir@/$PWD/test/sanitizers}"
done <test/sanitizers/options.env
# Except the fake stack for every frame, which halves the exec rate; the corpus replay in the
# ASan suite (scripts/sanitize.sh asan) runs with it on.
ASAN_OPTIONS+=:detect_stack_use_after_return=0

status=0
summary=()
for t in "${targets[@]}"; do
  work=$dir/fuzz-work/$t
  artifacts=$dir/fuzz-artifacts/$t/
  mkdir -p "$work" "$artifacts"
  extra=()
  # A seed file over 4096 bytes is its own error path; libFuzzer's default cap is 4096.
  if [[ $t == seed_file ]]; then extra=(-max_len=8192); fi
  echo "== fuzz_$t for ${seconds}s"
  log=$dir/fuzz-work/$t.log
  rc=0
  "$dir/fuzz/fuzz_$t" -max_total_time="$seconds" -print_final_stats=1 -print_funcs=0 -timeout=10 \
    -artifact_prefix="$artifacts" "${extra[@]}" "$work" "fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  execs=$(awk '/stat::number_of_executed_units:/ {print $2}' "$log")
  execs=${execs:-0}
  verdict=ok
  if ((rc != 0)); then
    verdict="CRASH (exit $rc; see $log and $artifacts)"
    tail -n 40 "$log" >&2
    status=1
  elif ((execs < min_execs)); then
    verdict="too few executions (< $min_execs): give it more seconds"
    status=1
  fi
  summary+=("$(printf '%-16s %12s execs  %s' "$t" "$execs" "$verdict")")
done
printf '%s\n' "${summary[@]}"
exit "$status"
