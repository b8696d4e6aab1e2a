#!/usr/bin/env bash
# The test command: installs what is missing, builds the release preset, runs every test label
# (e2e, crash and faults in their quick modes) and prints CTest's summary.
#   scripts/test.sh                 # everything
#   scripts/test.sh -L unit         # extra arguments go to ctest
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
ctest --preset release -j2 "$@"
