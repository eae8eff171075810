#!/usr/bin/env bash
# The main job on the bundled data, end to end. Run through `make demo` (which installs first).
set -euo pipefail
cd "$(dirname "$0")/.."
KEFU=".venv/bin/kefu"
export KEFU_HOME="${KEFU_HOME:-$PWD/var}"
OUT="$KEFU_HOME/demo"
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }

step "1. Check the bundled call transcripts"
$KEFU validate data/samples/calls.jsonl
$KEFU validate data/samples/call.txt

step "2. Convert them to the per-turn CSV that call-centre systems export, and back"
$KEFU -q convert data/samples/calls.jsonl -o "$OUT/calls.csv"
$KEFU -q convert "$OUT/calls.csv" -o "$OUT/calls_roundtrip.jsonl"
$KEFU validate "$OUT/calls_roundtrip.jsonl"

printf '\nDemo finished. Outputs are in %s\n' "$OUT"
