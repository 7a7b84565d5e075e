#!/usr/bin/env python3
"""Checks that every ```cpp (and ```ini, ```cmake, ```meson) block in the README is cut verbatim
from a file.

The README names the file on the last non-blank line before the block, in backticks or as a
link, e.g. "From [`examples/echo.cpp`](examples/echo.cpp):". The block must appear in that
file as consecutive lines, all shifted right by the same indentation (blank lines may be
empty). Those files are built and run as tests, so every snippet compiles and runs.

    readme_sync.py README.md
"""
import pathlib
import re
import sys

SOURCE = re.compile(r"`((?:examples|test|src|include|packaging)/[\w./-]+(?:\.cpp|\.hpp|\.wrap|/CMakeLists\.txt|/meson\.build))`")
CHECKED = ("```cpp", "```ini", "```cmake", "```meson")


def blocks(readme_lines):
    """Yields (line number, source path or None, block lines) for each checked block."""
    i = 0
    while i < len(readme_lines):
        if readme_lines[i].strip() in CHECKED:
            start = i
            j = start - 1
            while j >= 0 and not readme_lines[j].strip():
                j -= 1
            named = SOURCE.findall(readme_lines[j]) if j >= 0 else []
            body = []
            i += 1
            while i < len(readme_lines) and readme_lines[i].strip() != "```":
                body.append(readme_lines[i])
                i += 1
            yield start + 1, (named[-1] if named else None), body
        i += 1


def appears_in(body, source_lines):
    first = body[0]
    for start, line in enumerate(source_lines):
        if not line.endswith(first) or line[: len(line) - len(first)].strip():
            continue
        indent = line[: len(line) - len(first)]
        window = source_lines[start : start + len(body)]
        if len(window) == len(body) and all(
            (not b and not w.strip()) or w == indent + b for b, w in zip(body, window)
        ):
            return True
    return False


def main():
    readme = pathlib.Path(sys.argv[1])
    root = readme.parent
    problems, count = [], 0
    for line_no, source, body in blocks(readme.read_text().splitlines()):
        count += 1
        if source is None:
            problems.append(f"README.md:{line_no}: a checked block without its source file on the line before")
            continue
        path = root / source
        if not path.is_file():
            problems.append(f"README.md:{line_no}: {source} does not exist")
            continue
        while body and not body[-1].strip():
            body.pop()
        if not body or not appears_in(body, path.read_text().splitlines()):
            problems.append(f"README.md:{line_no}: this block is not a verbatim cut of {source}")
    for p in problems:
        print(p)
    if count == 0:
        print("README.md has no checked blocks; expected some")
        return 1
    print(f"{count} blocks checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
