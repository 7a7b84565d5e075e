#!/usr/bin/env bash
# Configures build/, the one build tree that scripts/test.sh and scripts/demo.sh share: an
# unoptimized debug build (-O0 compiles this suite about five times faster than -O2, and the
# tests wait on sockets, not on the CPU) with AddressSanitizer + UndefinedBehaviorSanitizer (and LeakSanitizer), so every test
# run, CI's included, is also the ASan/UBSan run; a test that passes while corrupting memory
# fails here. The runtime options come from test/sanitizers/options.env (the default test
# setup); ThreadSanitizer has a build of its own (scripts/sanitize.sh tsan).
# Reconfigures an existing build/ that was set up differently (a full rebuild).
set -euo pipefail
cd "$(dirname "$0")/.."

# b_lundef=false: the sanitizer runtimes resolve symbols at load time, which -Wl,--no-undefined
# would reject.
# UBSan's null and alignment checks go on every member access and at -O0 cost a quarter of
# the compile time of a TU holding the daemon double (60 s -> 45 s of CPU); ASan already
# catches a null dereference, and x86 forgives misalignment. Every other UBSan check stays.
light_ubsan=-fno-sanitize=null,alignment
# werror: a warning anywhere (library, tests, examples, tools; warning_level 3 is -Wall
# -Wextra -Wpedantic) fails the build, which makes this build the check that GCC compiles
# everything warning-free (the `clang` test is the same for Clang). Only here: a user's
# build of the library with a newer compiler must not fail on a warning it adds.
options=(-Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false -Dcpp_args=$light_ubsan -Dwerror=true)
if [[ ! -f build/build.ninja ]]; then
  meson setup build "${options[@]}"
elif [[ $(meson introspect build --buildoptions | python3 -c '
import json, sys
values = {o["name"]: o["value"] for o in json.load(sys.stdin)}
print(values["buildtype"], values["b_sanitize"], " ".join(values["cpp_args"]), values["werror"])') != \
     "debug address,undefined $light_ubsan True" ]]; then
  meson configure build "${options[@]}"
fi
