#!/usr/bin/env python3
"""Compiles the library's public headers and sources with one compiler at -Wall -Wextra
-Wpedantic -Werror, checking syntax and semantics only (-fsyntax-only: every warning of the
front end, templates instantiated, no code generated, which is most of a build's cost).

    check.py headers SOURCE_ROOT BUILD_ROOT COMPILER...
        each public header (include/ensemble/*.hpp and testing/*.hpp) alone in a file of
        its own, included twice: it must compile with nothing before it.
    check.py sources SOURCE_ROOT BUILD_ROOT COMPILER...
        one file that includes every header (detail/ too) and every given source file
        (SOURCE_ROOT-relative, listed after --): what the examples and tools instantiate.

COMPILER is the command (e.g. `c++` or `clang++`). BUILD_ROOT/include holds the generated
headers (version.hpp, the proto code). Files are compiled one at a time, so the check never
takes more than one core. Exit 77 (skipped) when the compiler is not installed.
"""
import pathlib
import shutil
import subprocess
import sys
import time

FLAGS = ["-std=c++20", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-fsyntax-only"]
# Needs ENSEMBLE_SEPARATE_COMPILATION, by design (it #errors without it).
SEPARATE = "ensemble/separate_compilation.hpp"


def pkg_config_cflags():
    found = shutil.which("pkg-config")
    if not found:
        return []
    done = subprocess.run([found, "--cflags", "grpc++", "protobuf", "libsodium", "nlohmann_json", "libcrypto"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return done.stdout.split() if done.returncode == 0 else []


def compile_one(compiler, flags, label, text=None, path=None):
    """Returns an error report, or None when the compiler was silent and succeeded."""
    command = compiler + flags + (["-x", "c++", "-"] if text is not None else [str(path)])
    started = time.monotonic()
    done = subprocess.run(command, input=text, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(f"[{time.monotonic() - started:5.1f} s] {label}", flush=True)
    if done.returncode != 0 or done.stdout.strip():
        return f"--- {label}: exit {done.returncode}\n{' '.join(command)}\n{done.stdout}"
    return None


def public_headers(include):
    names = sorted(p.relative_to(include).as_posix() for p in (include / "ensemble").glob("*.hpp"))
    names += sorted(p.relative_to(include).as_posix() for p in (include / "ensemble" / "testing").glob("*.hpp"))
    return names


def main():
    if len(sys.argv) < 5 or sys.argv[1] not in ("headers", "sources"):
        print(__doc__)
        return 2
    mode, source_root, build_root = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    rest = sys.argv[4:]
    compiler, files = (rest[: rest.index("--")], rest[rest.index("--") + 1 :]) if "--" in rest else (rest, [])
    if shutil.which(compiler[-1]) is None and shutil.which(compiler[0]) is None:
        print(f"{compiler[-1]} is not installed (scripts/install-deps.sh installs clang); skipped")
        return 77
    include = source_root / "include"
    flags = FLAGS + [f"-I{include}", f"-I{build_root / 'include'}"] + pkg_config_cflags()
    version = subprocess.run(compiler + ["--version"], stdout=subprocess.PIPE, text=True).stdout.splitlines()
    print(f"{' '.join(compiler)}: {version[0] if version else '?'}; {' '.join(FLAGS)}")

    failures = []
    if mode == "headers":
        for header in public_headers(include):
            define = "#define ENSEMBLE_SEPARATE_COMPILATION\n" if header == SEPARATE else ""
            text = f"{define}#include <{header}>\n#include <{header}>\n"
            failures.append(compile_one(compiler, flags, f"<{header}> alone", text=text))
    else:
        every = sorted(p.relative_to(include).as_posix() for p in (include / "ensemble").rglob("*.hpp"))
        text = "#define ENSEMBLE_SEPARATE_COMPILATION\n" + "".join(f"#include <{h}>\n" for h in every)
        failures.append(compile_one(compiler, flags, f"every header ({len(every)})", text=text))
        for name in files:
            failures.append(compile_one(compiler, flags, name, path=source_root / name))
    failures = [f for f in failures if f]
    for f in failures:
        print(f)
    print(f"{len(failures)} failed" if failures else "all clean")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
