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
    emitted = [line for line in listing.splitlines()
               if len(line.split(" ", 2)) == 3 and line.split(" ", 2)[1] in "TtWw"
               and "ensemble::" in line]
    for line in emitted[:20]:
        print("emitted:", line.split(" ", 2)[2][:200])
    print(f"{len(emitted)} functions of the library defined by a file that uses none of it")
    return 1 if emitted else 0


if __name__ == "__main__":
    sys.exit(main())
