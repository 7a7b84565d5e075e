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
# the tree (scripts/tsan-deps.sh: 20 minutes of one compiler, once per version), links
# build-tsan/ against it, and fails unless the test programs load those libraries rather than
# the system's. test/sanitizers/tsan.supp holds only the reports shown to be false positives.
#
# On a machine with the `slot` command (shared compile slots) the build holds ENSEMBLE_SLOTS
# of them (default 2; 1 gets going sooner on a busy machine, where two free at once are rare)
# and runs that many jobs; the tests run without. Elsewhere the build runs one job per core.
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
build_only=false
if [[ ${1:-} == --build-only ]]; then build_only=true; shift; fi

# Configures and compiles $dir (for tsan: the instrumented dependencies first).
build() {
  local jobs=${ENSEMBLE_SLOTS_HELD:-$(nproc)} prefix= t0 t1 t2
  setup_args+=(-Db_sanitize="$sanitize" -Db_lundef=false)
  t0=$(date +%s)
  if [[ $kind == tsan ]]; then
    prefix=$(scripts/tsan-deps.sh | tail -1)
    # The rpath makes the programs load the instrumented libraries (which carry their own
    # for the libraries they load in turn); the tests check it below.
    setup_args+=(-Dpkg_config_path="$prefix/lib/pkgconfig" -Dcpp_link_args="-Wl,-rpath,$prefix/lib")
    # A build dir configured against another prefix (older packages) starts over.
    if [[ -f $dir/build.ninja && $(cat "$dir/tsan-prefix" 2>/dev/null) != "$prefix" ]]; then
      rm -rf "$dir"
    fi
  fi
  t1=$(date +%s)
  if [[ ! -f $dir/build.ninja ]]; then
    # b_lundef=false: the sanitizer runtimes resolve symbols at load time, which
    # -Wl,--no-undefined would reject.
    meson setup "$dir" "${setup_args[@]}"
    [[ -z $prefix ]] || echo "$prefix" >"$dir/tsan-prefix"
  fi
  meson compile -C "$dir" -j "$jobs"
  t2=$(date +%s)
  [[ $kind == tsan ]] && echo "sanitize tsan: instrumented abseil and gRPC: $((t1 - t0)) s"
  echo "sanitize $kind: compiling the suite: $((t2 - t1)) s"
}

if [[ $kind == tsan ]]; then
  ENSEMBLE_DEPS_EXTRA=tsan scripts/install-deps.sh
else
  scripts/install-deps.sh
fi
start=$(date +%s)
if $build_only || [[ -n ${ENSEMBLE_SLOTS_HELD:-} ]] || ! command -v slot >/dev/null; then
  build
  $build_only && exit 0
else
  slots=${ENSEMBLE_SLOTS:-2}
  slot -n "$slots" env ENSEMBLE_SLOTS_HELD="$slots" "$PWD/scripts/sanitize.sh" "$kind" --build-only
fi
built=$(date +%s)

if [[ $kind == tsan ]]; then
  # Every program that links gRPC must resolve gRPC and abseil to the instrumented copies;
  # one system copy would make TSan blind again, silently.
  prefix=$(cat "$dir/tsan-prefix")
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
  # TSan runs the suite several times slower than ASan.
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
echo "sanitize $kind: build $((built - start)) s (with any wait for compile slots)," \
  "tests $((end - built)) s, $reports sanitizer reports"
if ((reports > 0)); then
  echo "sanitize $kind: the reports by kind and place (from $log):"
  grep -h '^SUMMARY: ' "$log" | sort | uniq -c | sort -rn | head -40
fi
exit "$status"
