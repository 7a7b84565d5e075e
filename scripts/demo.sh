#!/usr/bin/env bash
# Sets up a fresh machine (Debian packages), builds the echo bot and runs its demo: the bot
# registers against the daemon double built into the library, a peer service dials it and
# chats with it, and every step is printed. Exits 0 when every echo came back.
# Usage: scripts/demo.sh [more echo flags, e.g. --accept]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/setup-build.sh
# Only the example and what it needs; scripts/test.sh builds everything.
meson compile -C build examples/echo
exec build/examples/echo --demo "$@"
