#!/usr/bin/env bash
# Run every benchmark in benchmarks/ and print their tables.
set -euo pipefail
cd "$(dirname "$0")/.."
for bench in benchmarks/*.py; do
  printf '\n== %s\n' "$bench"
  .venv/bin/python "$bench"
done
