#!/usr/bin/env bash
# The main job on the bundled data, end to end. Run through `make demo` (which installs first).
set -euo pipefail
cd "$(dirname "$0")/.."
KEFU=".venv/bin/kefu"
export KEFU_HOME="${KEFU_HOME:-$PWD/var}"
OUT="$KEFU_HOME/demo"
KB="$KEFU_HOME/kb"
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }

step "1. Check the bundled call transcripts"
$KEFU validate data/samples/calls.jsonl
$KEFU validate data/samples/call.txt

step "2. Build the knowledge base: 166 scenario scripts → SQLite store + FAISS/BM25 index"
$KEFU -q kb import knowledge_base/data/scripts.jsonl --kb "$KB"
$KEFU kb status --kb "$KB"
$KEFU kb search "喂 我家停电了 整个屋子都没电" --kb "$KB" -k 3

step "3. Train the default classifier (taboo / empathy / complaint risk) and export it to ONNX int8"
$KEFU -q train data
$KEFU -q train fit
$KEFU -q train export
$KEFU -q train fit --backend tfidf -o "$KEFU_HOME/models/classifier-tfidf"

step "4. Replay a call through live assist, as the agent would have seen it"
$KEFU assist replay data/samples/calls.jsonl --kb "$KB" --model "$KEFU_HOME/models/classifier-tfidf" > "$OUT/replay.txt"
sed -n 1,45p "$OUT/replay.txt"

step "5. Score every transcript against the default scorecard and pick calls for review"
$KEFU -q qa score data/samples/calls.jsonl -o "$OUT/scores.jsonl"
.venv/bin/python - "$OUT/scores.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(line)
    print(f"{r['call_id']:16} score={r.get('score', '-'):>5} risk={r.get('complaint_risk', 0):.2f} "
          f"empathy={r.get('empathy', 0):.2f} taboo={len(r.get('taboo', []))} fatal={r.get('fatal')} "
          f"review={r.get('review')} {r.get('review_reason', '') or ''}")
PY

step "6. Write the QA report"
$KEFU -q qa report "$OUT/scores.jsonl" -o "$OUT/report.html" --csv "$OUT/agents.csv"

printf '\nDemo finished. Outputs are in %s (report: %s/report.html)\n' "$OUT" "$OUT"
printf 'The web console: KEFU_HOME=%s .venv/bin/kefu serve, then open http://127.0.0.1:8000/console/\n' "$KEFU_HOME"
