#!/usr/bin/env python3
"""Compiles the library's public headers and sources with one compiler at -Wall -Wextra
-Wpedantic -Werror, checking syntax and semantics only (-fsyntax-only: every warning of the
front end, templates instantiated, no code generated, which is most of a build's cost).

    check.py headers SOURCE_ROOT BUILD_ROOT COMPILER...
        each public header (include/ensemble/*.hpp and testing/*.hpp) alone in a file of
        its own, included twice: it must compile with nothing before it; those in
        PROTOBUF_FREE must also compile without any protobuf header coming along.
    check.py sources SOURCE_ROOT BUILD_ROOT CLANG... -- FILE...
        every header (detail/ too) precompiled into one Clang PCH, which reports what the
        headers themselves provoke; then, with that PCH, each given source file or every
        .cpp under a given directory (SOURCE_ROOT-relative): what the examples and tools
        instantiate. The PCH halves the cost: each file still gets the front end's every
        warning about its own code and its instantiations, but the headers are parsed once.
        The reactor and the Client whole are `headers`' work: its file for
        <ensemble/separate_compilation.hpp> instantiates every member (the suite runs both
        modes with Clang).

COMPILER is the command (e.g. `c++` or `clang++`; `sources` needs Clang). BUILD_ROOT/include holds the generated
headers (version.hpp, the proto code). Files are compiled one at a time, so the check never
takes more than one core. Exit 77 (skipped) when the compiler is not installed.
"""
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

FLAGS = ["-std=c++20", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-fsyntax-only"]
# Needs ENSEMBLE_SEPARATE_COMPILATION, by design (it #errors without it).
SEPARATE = "ensemble/separate_compilation.hpp"
# Headers a user reads for the types they hold: no protobuf type may reach them (issue 23,
# item 7), so each is also compiled with a check that no protobuf header came along.
PROTOBUF_FREE = ["ensemble/events.hpp", "ensemble/node_types.hpp", "ensemble/service_options.hpp"]


def pkg_config_cflags():
    found = shutil.which("pkg-config")
    if not found:
        return []
    done = subprocess.run([found, "--cflags", "grpc++", "protobuf", "libsodium", "nlohmann_json", "libcrypto"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return done.stdout.split() if done.returncode == 0 else []


def compile_one(compiler, flags, label, text=None, path=None, language="c++"):
    """Returns an error report, or None when the compiler was silent and succeeded."""
    if text is None:
        source = [str(path)]
    else:
        source = (["-x", language] if language else []) + ["-"]
    command = compiler + flags + source
    started = time.monotonic()
    done = subprocess.run(command, input=text, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(f"[{time.monotonic() - started:5.1f} s] {label}", flush=True)
    if done.returncode != 0 or done.stdout.strip():
        return f"--- {label}: exit {done.returncode}\n{' '.join(command)}\n{done.stdout}"
    return None


def sources_of(source_root, names):
    """Each name (SOURCE_ROOT-relative) as it is, or for a directory every .cpp under it, so
    that a new example or tool is checked without a word here."""
    for name in names:
        path = source_root / name
        if path.is_dir():
            yield from sorted(p.relative_to(source_root).as_posix() for p in path.rglob("*.cpp"))
        else:
            yield name


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
            if header in PROTOBUF_FREE:
                text += f'#ifdef GOOGLE_PROTOBUF_VERSION\n#error "<{header}> brings in protobuf"\n#endif\n'
            failures.append(compile_one(compiler, flags, f"<{header}> alone", text=text))
    else:
        every = sorted(p.relative_to(include).as_posix() for p in (include / "ensemble").rglob("*.hpp"))
        every.remove(SEPARATE)
        with tempfile.TemporaryDirectory(prefix="ensemble-compilers-") as tmp:
            pch = pathlib.Path(tmp) / "every.hpp.pch"
            text = "".join(f"#include <{h}>\n" for h in every)
            header_flags = [f for f in flags if f != "-fsyntax-only"] + ["-x", "c++-header", "-o", str(pch)]
            failures.append(compile_one(compiler, header_flags, f"every header ({len(every)}), precompiled",
                                        text=text, language=None))
            if pch.is_file():
                with_pch = flags + ["-include-pch", str(pch)]
                for name in sources_of(source_root, files):
                    failures.append(compile_one(compiler, with_pch, name, path=source_root / name))
    failures = [f for f in failures if f]
    for f in failures:
        print(f)
    print(f"{len(failures)} failed" if failures else "all clean")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
