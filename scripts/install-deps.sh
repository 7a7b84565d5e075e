#!/usr/bin/env bash
# Installs the Debian packages ensemble-cpp builds and tests with, only those missing.
# Safe to run repeatedly; needs root (or sudo) only when something is missing.
set -euo pipefail

# clang: the `clang` test compiles the headers, examples and tools with it too.
# doxygen: the `docs` test builds the API reference with every warning an error.
packages=(
  g++ clang doxygen pkg-config meson ninja-build cmake
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libsodium-dev libssl-dev nlohmann-json3-dev catch2
)
# Extra tooling for the sanitizer/fuzz scripts; only installed when asked.
if [[ "${ENSEMBLE_DEPS_EXTRA:-}" == "fuzz" ]]; then
  packages+=(libclang-rt-14-dev)
fi
# scripts/tsan-deps.sh: unpacking Debian source packages, and gRPC's CMake, which wants
# protobuf's libprotoc even with code generation off.
if [[ "${ENSEMBLE_DEPS_EXTRA:-}" == "tsan" ]]; then
  packages+=(dpkg-dev libprotoc-dev libre2-dev libc-ares-dev zlib1g-dev)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
