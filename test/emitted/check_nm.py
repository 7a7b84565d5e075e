#!/usr/bin/env python3
"""Fails when an object that only includes the library defines code of the library.

    check_nm.py NM LIBRARY.a

Functions of an inline library are emitted only where they are used; any definition under
ensemble:: (or instantiated with one of its types) in include_only.cpp's object means some
construct forces code into every translation unit that includes the headers.
"""
import subprocess
import sys


def main():
    nm, archive = sys.argv[1], sys.argv[2]
    listing = subprocess.run([nm, "-C", "--defined-only", archive], check=True, text=True,
                             stdout=subprocess.PIPE).stdout
    # "<address> <type> <name>" per symbol; code is type T/t (strong) or W/w (weak).
    fields = (line.split(" ", 2) for line in listing.splitlines())
    emitted = [f[2] for f in fields if len(f) == 3 and f[1] in "TtWw" and "ensemble::" in f[2]]
    for name in emitted[:20]:
        print("emitted:", name[:200])
    print(f"{len(emitted)} functions of the library defined by a file that uses none of it")
    return 1 if emitted else 0


if __name__ == "__main__":
    sys.exit(main())
