#!/usr/bin/env python3
"""Runs Doxygen on the configured docs/Doxyfile, for the `docs` target and the `docs` test.

Usage: doxygen.py DOXYGEN DOXYFILE OUTPUT_DIR [--check]

Writes the HTML reference to OUTPUT_DIR/html. With --check (the test) every warning is an
error: Doxygen runs to the end (WARN_AS_ERROR = FAIL_ON_WARNINGS, so all of them are
found in one run), the warnings are printed, and the exit status is 1 if there was any.
DOXYGEN is empty when Meson found no doxygen: then the check fails, saying how to get one or
how to turn the docs off (-Ddocs=disabled), rather than passing without having looked.
"""
import os
import subprocess
import sys


def main() -> int:
    args = sys.argv[1:]
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    if len(args) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    doxygen, doxyfile, out_dir = args
    if not doxygen:
        print("docs: doxygen not found; install it (scripts/install-deps.sh installs Debian's "
              "`doxygen`) or configure with -Ddocs=disabled", file=sys.stderr)
        return 1
    os.makedirs(out_dir, exist_ok=True)
    warnings_log = os.path.join(out_dir, "warnings.log")
    # The configured file, with the output directory (and for the check, the strictness)
    # given after it: a later assignment wins.
    config = [f"@INCLUDE = \"{doxyfile}\"", f"OUTPUT_DIRECTORY = \"{out_dir}\""]
    if check:
        config += ["WARN_AS_ERROR = FAIL_ON_WARNINGS", f"WARN_LOGFILE = \"{warnings_log}\""]
    run = subprocess.run([doxygen, "-"], input="\n".join(config) + "\n", text=True)
    if not check:
        return run.returncode
    with open(warnings_log, encoding="utf-8", errors="replace") as f:
        warnings = [line for line in f.read().splitlines() if line.strip()]
    if warnings:
        print("\n".join(warnings))
        print(f"docs: {len(warnings)} Doxygen warning line(s); every public declaration needs "
              "a /// comment and every @param a parameter of that name", file=sys.stderr)
        return 1
    if run.returncode != 0:
        print(f"docs: doxygen exited with status {run.returncode}", file=sys.stderr)
        return 1
    print(f"docs: no warnings; the reference is {os.path.join(out_dir, 'html', 'index.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
