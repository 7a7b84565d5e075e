#!/usr/bin/env bash
# Builds abseil and gRPC with ThreadSanitizer, from the Debian source packages of the very
# versions installed (libabsl-dev, libgrpc++-dev), into a cache outside the tree, and prints
# the install prefix on its last line of stdout. scripts/sanitize.sh tsan links the suite
# against it.
#
# Why: an uninstrumented gRPC hides every happens-before edge it makes (absl::Mutex, its
# lock-free queues) from TSan, which then reports thousands of races that gRPC in fact orders.
# protobuf, re2, c-ares, zlib and OpenSSL stay the system's: the threads, locks and queues
# whose ordering TSan must see are gRPC's and abseil's.
#
# The cache: ${XDG_CACHE_HOME:-$HOME/.cache}/ensemble-cpp/tsan-<abseil>-<grpc>-<compiler>.
# Reused by every later run (and by any checkout on the same machine); a new abseil or gRPC
# package, or a new compiler, is a new directory and so a rebuild. Only the grpc++ library and
# what it links are built (gpr, grpc, upb, address_sorting, and all of abseil): 20 minutes
# of one compiler (abseil 3, gRPC 16), 54 MB installed. The source packages come from deb-src entries derived from the
# machine's own apt sources, in a private apt configuration under the cache: nothing in
# /etc/apt changes.
#
# Compiles with ENSEMBLE_SLOTS (default 2) jobs holding as many of the machine's compile slots
# when it has the `slot` command (taken here, once for the whole build, unless
# ENSEMBLE_SLOTS_HELD says the caller holds them: scripts/sanitize.sh does); elsewhere with
# one job per core.
set -euo pipefail

src_version() { dpkg-query -W -f='${source:Version}' "$1"; }
absl_version=$(src_version libabsl-dev)
grpc_version=$(src_version libgrpc++-dev)
cc=${CC:-gcc}
cxx=${CXX:-g++}
compiler="$(basename "$cc")-$("$cc" -dumpfullversion)"
cache=${XDG_CACHE_HOME:-$HOME/.cache}/ensemble-cpp
# ':' (a Debian epoch) would end a pkg-config path or an rpath.
prefix=$cache/tsan-abseil${absl_version//:/_}-grpc${grpc_version//:/_}-$compiler

if [[ -f $prefix/.complete ]]; then
  echo "$prefix"
  exit 0
fi

mkdir -p "$cache"
exec {lock}>"$cache/.tsan.lock"
flock "$lock"
if [[ -f $prefix/.complete ]]; then  # another run built it while this one waited
  echo "$prefix"
  exit 0
fi

if [[ -n ${ENSEMBLE_SLOTS_HELD:-} ]]; then
  jobs=$ENSEMBLE_SLOTS_HELD
elif command -v slot >/dev/null; then
  flock -u "$lock"  # the slots first, then the cache lock again: one order for both
  exec slot -n "${ENSEMBLE_SLOTS:-2}" env ENSEMBLE_SLOTS_HELD="${ENSEMBLE_SLOTS:-2}" \
    "$(readlink -f "$0")" "$@"
else
  jobs=$(nproc)
fi

work=$prefix.work
rm -rf "$work" "$prefix"
mkdir -p "$work/apt/sources.list.d" "$work/apt/lists/partial" "$work/apt/cache/archives/partial"
log=$work/build.log
echo "tsan-deps: building abseil $absl_version and gRPC $grpc_version with TSan into $prefix" >&2
echo "tsan-deps: (once per version; log in $log)" >&2

# deb-src twins of the machine's own deb entries for this release (its codename's suites);
# third-party repositories without sources stay out.
codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
python3 - "$codename" "$work/apt/sources.list.d/derived.sources" <<'EOF'
import glob, re, sys
codename, out = sys.argv[1], sys.argv[2]
ours = re.compile(r'^%s(-[a-z]+)?$' % re.escape(codename))
stanzas = []
def add(uris, suites, components, signed_by):
    suites = [s for s in suites if ours.match(s)]
    if uris and suites:
        s = {'Types': 'deb-src', 'URIs': ' '.join(uris), 'Suites': ' '.join(suites),
             'Components': ' '.join(components)}
        if signed_by:
            s['Signed-By'] = signed_by
        stanzas.append(s)
for path in ['/etc/apt/sources.list'] + sorted(glob.glob('/etc/apt/sources.list.d/*.list')):
    try:
        lines = open(path).read().splitlines()
    except FileNotFoundError:
        continue
    for line in lines:
        line = line.split('#', 1)[0].strip()
        m = re.match(r'^deb\s+(\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$', line)
        if not m:
            continue
        opts = dict(o.split('=', 1) for o in (m.group(2) or '').split() if '=' in o)
        add([m.group(3)], [m.group(4)], m.group(5).split(), opts.get('signed-by'))
for path in sorted(glob.glob('/etc/apt/sources.list.d/*.sources')):
    for block in re.split(r'\n\s*\n', open(path).read()):
        fields, key = {}, None
        for line in block.splitlines():
            if line.startswith('#'):
                continue
            if line[:1] in (' ', '\t') and key:
                fields[key] += '\n' + line
            elif ':' in line:
                key, value = line.split(':', 1)
                fields[key.strip().lower()] = value.strip()
        if 'deb' in fields.get('types', '').split() and fields.get('enabled', 'yes') != 'no':
            add(fields.get('uris', '').split(), fields.get('suites', '').split(),
                fields.get('components', '').split(), fields.get('signed-by'))
if not stanzas:
    sys.exit('tsan-deps: no deb entry for %s in /etc/apt/sources.list*' % codename)
with open(out, 'w') as f:
    f.write('\n'.join('\n'.join('%s: %s' % kv for kv in s.items()) + '\n' for s in stanzas))
EOF
apt=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/apt/sources.list.d"
     -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache"
     -o "APT::Sandbox::User=$(id -un)")
start=$(date +%s)
apt-get "${apt[@]}" -qq update >>"$log" 2>&1 || { tail -20 "$log" >&2; exit 1; }
mkdir -p "$work/src"
(cd "$work/src" && apt-get "${apt[@]}" -qq source --only-source \
   "abseil=$absl_version" "grpc=$grpc_version") >>"$log" 2>&1 ||
  { tail -20 "$log" >&2; echo "tsan-deps: apt-get source failed (log: $log)" >&2; exit 1; }
absl_src=$(find "$work/src" -maxdepth 1 -type d -name 'abseil-*' | head -1)
grpc_src=$(find "$work/src" -maxdepth 1 -type d -name 'grpc-*' | head -1)
fetched=$(date +%s)

# -O1: TSan's own advice; -g1: file:line in reports from inside gRPC and abseil.
flags="-fsanitize=thread -O1 -g1"
common=(-G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx"
        -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags"
        -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_LIBDIR=lib -DCMAKE_PREFIX_PATH="$prefix"
        -DBUILD_SHARED_LIBS=ON -DBUILD_TESTING=OFF
        # Every library finds its instrumented siblings first, however it is loaded.
        -DCMAKE_INSTALL_RPATH="$prefix/lib" -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON)

# Runs a build step, its output to the log (shown when it fails).
step() {
  local shown=("${@##*/}")
  echo "tsan-deps: ${shown[*]:0:5}" >&2
  "$@" >>"$log" 2>&1 || { tail -30 "$log" >&2; echo "tsan-deps: failed (log: $log)" >&2; exit 1; }
}

# abseil as Debian configures it (debian/rules: C++17, shared; Debian's patched options.h
# keeps absl::optional and friends abseil's own types whatever the standard).
step cmake -S "$absl_src" -B "$work/absl-build" "${common[@]}" -DCMAKE_CXX_STANDARD=17
step cmake --build "$work/absl-build" -j "$jobs"
step cmake --install "$work/absl-build"
absl_built=$(date +%s)

# gRPC as Debian configures it (debian/rules), with every dependency but abseil the system's.
# CMake wants protobuf's libprotoc even with code generation off (libprotoc-dev, installed by
# install-deps.sh for tsan).
step cmake -S "$grpc_src" -B "$work/grpc-build" "${common[@]}" \
  -DgRPC_BACKWARDS_COMPATIBILITY_MODE=OFF -DgRPC_INSTALL=ON -DgRPC_BUILD_TESTS=OFF \
  -DgRPC_BUILD_CODEGEN=OFF \
  -DgRPC_BUILD_GRPC_CPP_PLUGIN=OFF -DgRPC_BUILD_GRPC_CSHARP_PLUGIN=OFF \
  -DgRPC_BUILD_GRPC_NODE_PLUGIN=OFF -DgRPC_BUILD_GRPC_OBJECTIVE_C_PLUGIN=OFF \
  -DgRPC_BUILD_GRPC_PHP_PLUGIN=OFF -DgRPC_BUILD_GRPC_PYTHON_PLUGIN=OFF \
  -DgRPC_BUILD_GRPC_RUBY_PLUGIN=OFF -DgRPC_BUILD_CSHARP_EXT=OFF \
  -DgRPC_ABSL_PROVIDER=package -DgRPC_CARES_PROVIDER=package -DgRPC_PROTOBUF_PROVIDER=package \
  -DgRPC_RE2_PROVIDER=package -DgRPC_SSL_PROVIDER=package -DgRPC_ZLIB_PROVIDER=package
# Only grpc++ and what it links; `cmake --install` would want every library gRPC defines, so
# the pieces the suite uses are copied: the shared libraries, the headers, the .pc files.
step cmake --build "$work/grpc-build" -j "$jobs" --target grpc++
cp -a "$work/grpc-build"/lib{gpr,grpc,grpc++,upb,address_sorting}.so* "$prefix/lib/"
cp -a "$grpc_src"/include/{grpc,grpcpp,grpc++} "$prefix/include/"
cp "$work/grpc-build"/libs/opt/pkgconfig/{gpr,grpc,grpc++}.pc "$prefix/lib/pkgconfig/"
grpc_built=$(date +%s)

# Wall time of each build proper, from ninja's log (end of its last edge, in ms).
ninja_s() { awk 'NR > 1 && $2 > m { m = $2 } END { printf "%d", m / 1000 }' "$1/.ninja_log"; }
echo "tsan-deps: compiling took abseil $(ninja_s "$work/absl-build") s," \
  "gRPC $(ninja_s "$work/grpc-build") s ($jobs jobs)" >&2
rm -rf "$work"
echo "abseil $absl_version, gRPC $grpc_version, $compiler, $flags" >"$prefix/.complete"
echo "tsan-deps: sources $((fetched - start)) s, abseil $((absl_built - fetched)) s," \
  "gRPC $((grpc_built - absl_built)) s; $(du -sh "$prefix" | cut -f1) in $prefix" >&2
echo "$prefix"
