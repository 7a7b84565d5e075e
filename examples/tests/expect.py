#!/usr/bin/env python3
"""Runs one command and checks its exit status and output, for the examples' meson tests.

    expect.py [--exit N] [--line REGEX]... [--no-env-prefix PREFIX] -- COMMAND [ARGS...]

Every --line must match some line of the combined stdout+stderr (Python re.search). On any
mismatch the whole output is printed, so a failing test shows what the example said.
"""
import argparse
import os
import re
import subprocess
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--exit", type=int, default=0, help="expected exit status")
    parser.add_argument("--line", action="append", default=[], help="regex some line must match")
    parser.add_argument("--timeout", type=float, default=45.0,
                        help="seconds; below the meson timeout (60), so a hang still shows its output")
    parser.add_argument("--no-env-prefix", action="append", default=[],
                        help="drop environment variables starting with this prefix")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")

    env = {k: v for k, v in os.environ.items()
           if not any(k.startswith(p) for p in args.no_env_prefix)}
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=env, timeout=args.timeout, text=True, errors="replace")
    except subprocess.TimeoutExpired as e:
        print(f"FAIL: {' '.join(command)} still running after {args.timeout} s")
        print(e.output or "")
        return 1

    lines = done.stdout.splitlines()
    problems = []
    if done.returncode != args.exit:
        problems.append(f"exit status {done.returncode}, expected {args.exit}")
    for pattern in args.line:
        if not any(re.search(pattern, line) for line in lines):
            problems.append(f"no line matches {pattern!r}")

    if problems:
        print(f"FAIL: {' '.join(command)}")
        for p in problems:
            print(f"  {p}")
        print("---- output ----")
        print(done.stdout, end="")
        return 1
    print(f"ok: {' '.join(command)} (exit {done.returncode}, {len(args.line)} lines matched)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
