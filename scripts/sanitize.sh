#!/usr/bin/env bash
# Builds the whole suite with a sanitizer, in a build dir of its own, and runs it.
#   scripts/sanitize.sh tsan [meson test args]   ThreadSanitizer in build-tsan/, linked against
#                                                 an instrumented abseil and gRPC
#   scripts/sanitize.sh asan [meson test args]   ASan + the full UBSan in build-asan/, with the
#                                                 null and alignment checks that build/ (and so
#                                                 scripts/test.sh, ASan+UBSan on every run)
#                                                 leaves out to keep CI fast
# Any report fails the test that produced it. The runtime options and suppression files come
# from test/sanitizers/ (see its meson.build); they are exported here too, so a test binary
# run by hand from build-asan/ or build-tsan/ behaves exactly as under `meson test`.
# The slow suite is skipped: its tests build unsanitized trees of their own.
#
# TSan: Debian's gRPC and abseil are not instrumented, and TSan cannot see the ordering gRPC
# makes with them (it would report thousands of races gRPC in fact orders). So the first tsan
# run builds both from Debian's own source packages with -fsanitize=thread into a cache outside
# the tree (scripts/tsan-deps.sh: about 8 minutes of two compilers, once per version), links
# build-tsan/ against it, and fails unless the test programs load those libraries rather than
# the system's. test/sanitizers/tsan.supp holds only the reports shown to be false positives.
#
# Compiles through `slot` (two of the machine's compile slots) when the machine has that
# command, so do not run this script itself under `slot`.
set -euo pipefail
cd "$(dirname "$0")/.."

kind=${1:-}
case "$kind" in
  asan) dir=build-asan; sanitize=address,undefined; setup_args=(-Dbuildtype=debug) ;;
  # debug: at -O2 with a sanitizer our test TUs compile about five times slower.
  tsan) dir=build-tsan; sanitize=thread; setup_args=(-Dbuildtype=debug) ;;
  *) echo "usage: scripts/sanitize.sh asan|tsan [meson test args]" >&2; exit 2 ;;
esac
shift

jobs=$(nproc)
run=()
if command -v slot >/dev/null; then
  jobs=2
  run=(slot -n 2)
fi

setup_args+=(-Db_sanitize="$sanitize" -Db_lundef=false)
if [[ $kind == tsan ]]; then
  ENSEMBLE_DEPS_EXTRA=tsan scripts/install-deps.sh
  deps_start=$(date +%s)
  prefix=$(scripts/tsan-deps.sh | tail -1)
  echo "sanitize tsan: instrumented abseil and gRPC in $prefix ($(($(date +%s) - deps_start)) s)"
  # The rpath makes the programs load the instrumented libraries (which carry their own, for
  # the libraries they load in turn); checked after the build.
  setup_args+=(-Dpkg_config_path="$prefix/lib/pkgconfig" -Dcpp_link_args="-Wl,-rpath,$prefix/lib")
  # A build dir configured against another prefix (an older version) starts over.
  if [[ -f $dir/build.ninja && $(cat "$dir/tsan-prefix" 2>/dev/null) != "$prefix" ]]; then
    rm -rf "$dir"
  fi
else
  scripts/install-deps.sh
fi
if [[ ! -f $dir/build.ninja ]]; then
  # b_lundef=false: the sanitizer runtimes resolve symbols at load time, which -Wl,--no-undefined
  # would reject.
  meson setup "$dir" "${setup_args[@]}"
  [[ $kind == tsan ]] && echo "$prefix" >"$dir/tsan-prefix"
fi
start=$(date +%s)
"${run[@]}" meson compile -C "$dir" -j "$jobs"
built=$(date +%s)

if [[ $kind == tsan ]]; then
  # Every program that links gRPC must resolve gRPC and abseil to the instrumented copies;
  # one system copy would make TSan blind again, silently.
  checked=0
  while IFS= read -r program; do
    libs=$(ldd "$program")
    grep -q 'libgrpc++\.so' <<<"$libs" || continue
    wrong=$(grep -E '^\s*lib(grpc|gpr|upb|address_sorting|absl_)' <<<"$libs" |
            grep -v -F "=> $prefix/lib/" || true)
    if [[ -n $wrong ]]; then
      echo "sanitize tsan: $program loads uninstrumented gRPC/abseil libraries:" >&2
      echo "$wrong" >&2
      exit 1
    fi
    checked=$((checked + 1))
  done < <(find "$dir" -type f -executable -not -name '*.so*' -not -path '*/meson-*' \
             -not -path '*.p/*' | sort)
  if ! grep -q -F "=> $prefix/lib/libgrpc++.so" <(ldd "$dir/test/test_ensemble"); then
    echo "sanitize tsan: $dir/test/test_ensemble does not load $prefix/lib/libgrpc++.so" >&2
    exit 1
  fi
  echo "sanitize tsan: $checked programs load gRPC and abseil from $prefix"
  # TSan runs the suite about five times slower than ASan.
  set -- --timeout-multiplier 3 "$@"
fi

while IFS= read -r line; do
  [[ -z $line || $line == \#* ]] && continue
  export "${line//@dir@/$PWD/test/sanitizers}"
done <test/sanitizers/options.env
status=0
meson test -C "$dir" --no-suite slow --print-errorlogs "$@" | tee "$dir/test-summary.txt" || status=$?
end=$(date +%s)
log=$dir/meson-logs/testlog.txt
reports=$(grep -c '^WARNING: ThreadSanitizer\|^ERROR: AddressSanitizer\|runtime error:' "$log" || true)
echo "sanitize $kind: build $((built - start)) s, tests $((end - built)) s, $reports reports"
if ((reports > 0)); then
  echo "sanitize $kind: reports by kind and place (from $log):"
  grep -h '^SUMMARY: ' "$log" | sort | uniq -c | sort -rn | head -40
fi
exit "$status"
