#!/usr/bin/env bash
# Builds the whole suite with a sanitizer, in a build dir of its own, and runs it.
#   scripts/sanitize.sh tsan [meson test args]   ThreadSanitizer in build-tsan/
#   scripts/sanitize.sh asan [meson test args]   ASan + the full UBSan in build-asan/, with the
#                                                 null and alignment checks that build/ (and so
#                                                 scripts/test.sh, ASan+UBSan on every run)
#                                                 leaves out to keep CI fast
# Any report fails the test that produced it. The runtime options and suppression files come
# from test/sanitizers/ (see its meson.build); they are exported here too, so a test binary
# run by hand from build-asan/ or build-tsan/ behaves exactly as under `meson test`.
# The slow suite is skipped: its tests build unsanitized trees of their own.
#
# TSan is not clean on this machine: Debian's gRPC, protobuf and abseil are not instrumented,
# so TSan cannot see the ordering gRPC guarantees between a call's start and its reactions,
# and reports races on our objects that gRPC in fact orders. test/sanitizers/tsan.supp says
# what is suppressed (gRPC-internal frames only) and what is not.
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

scripts/install-deps.sh
if [[ ! -f $dir/build.ninja ]]; then
  # b_lundef=false: the sanitizer runtimes resolve symbols at load time, which -Wl,--no-undefined
  # would reject.
  meson setup "$dir" -Db_sanitize="$sanitize" -Db_lundef=false "${setup_args[@]}"
fi
start=$(date +%s)
meson compile -C "$dir"
built=$(date +%s)

while IFS= read -r line; do
  [[ -z $line || $line == \#* ]] && continue
  export "${line//@dir@/$PWD/test/sanitizers}"
done <test/sanitizers/options.env
status=0
meson test -C "$dir" --no-suite slow --print-errorlogs "$@" | tee "$dir/test-summary.txt" || status=$?
end=$(date +%s)
echo "sanitize $kind: build $((built - start)) s, tests $((end - built)) s"
exit "$status"
