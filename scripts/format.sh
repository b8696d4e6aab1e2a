#!/usr/bin/env bash
# clang-format every C++ file of ours in place (--check: list the ones that need it, exit 1).
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.cc' '*.h')
if [ "${1:-}" = "--check" ]; then
  bad=$(for f in $files; do clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || echo "$f"; done)
  [ -z "$bad" ] && exit 0
  echo "needs clang-format:"; echo "$bad"; exit 1
fi
clang-format -i $files
