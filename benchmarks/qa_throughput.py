"""Throughput and memory of `kefu qa score`, beside a naive baseline measured in the same run.

Builds calls of 20 turns from the gold calls, then measures (medians of --repeat runs):
  baseline      naive taboo detection: one regex alternation over the same lexicon, raw agent text
  taboo (AC)    the taboo matcher alone: normalisation + Aho-Corasick + exceptions, same turns
  score, 1 proc the whole scorecard + estimates in this process (no I/O)
  kefu qa score the CLI end to end (read, score, write, sampling pass) with --workers N,
                at two input sizes to show that resident memory does not grow with the input
  + classifier  the same with --model DIR when a trained classifier is available

Usage: .venv/bin/python benchmarks/qa_throughput.py [--calls 20000] [--workers 2] [--model DIR ...]
Targets (issue): >= 2,000 calls/s rules only, >= 100 calls/s with the classifier, RSS <= 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLD = REPO / "training" / "data" / "gold_calls.jsonl"


def make_calls(path: Path, n: int, turns: int = 20) -> None:
    """n calls of `turns` turns, cycling through the turns of the gold calls (labels dropped)."""
    base = [json.loads(line) for line in GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]
    with open(path, "w", encoding="utf-8") as fh:
        for k in range(n):
            src = base[k % len(base)]
            tt = [{key: t[key] for key in ("role", "text", "start", "end") if key in t} for t in src["turns"]]
            while len(tt) < turns:
                tt = tt + tt
            row = {
                "call_id": f"B{k:07d}",
                "agent_id": src.get("agent_id"),
                "date": src.get("date"),
                "turns": tt[:turns],
            }
            if turns > len(src["turns"]):  # repeated turns would overlap in time: drop the timestamps
                for t in row["turns"]:
                    t.pop("start", None), t.pop("end", None)
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _tree_rss(pid: int) -> int:
    """Resident memory (bytes) of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        stack.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/statm", encoding="utf-8") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            pass
    return total


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_cli(args: list[str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (all processes) and peak resident memory of the tree of `kefu ARGS`."""
    cmd = [sys.executable, "-m", "kefu", "-q", *args]
    cpu0 = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    stop = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            stop.wait(0.2)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    _, err = proc.communicate()
    elapsed = time.perf_counter() - start
    stop.set()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"kefu {' '.join(args)} failed: {err.decode(errors='replace')[-2000:]}")
    return elapsed, _children_cpu() - cpu0, peak


def in_process(calls: Path, repeat: int) -> dict[str, tuple[float, float]]:
    """(calls per wall second, per CPU second) of the baseline, the taboo matcher and the scorer."""
    from kefu.io import read_transcripts
    from qa_inspect.lexicon import get_resources
    from qa_inspect.scorecard import load_scorecard
    from qa_inspect.scoring import Scorer

    transcripts = list(read_transcripts(calls))
    res = get_resources()
    naive = re.compile("|".join(re.escape(e.phrase) for e in res.taboo_entries))
    matcher = res.taboo
    scorer = Scorer(load_scorecard())

    def baseline() -> int:
        n = 0
        for t in transcripts:
            n += any(naive.search(turn.text) for turn in t.turns if turn.role == "agent")
        return n

    def taboo() -> int:
        n = 0
        for t in transcripts:
            n += any(any(m.active for m in matcher.match(turn.text)) for turn in t.turns if turn.role == "agent")
        return n

    def score() -> int:
        return len(scorer.score_batch(transcripts))

    out = {}
    for name, fn in (("baseline", baseline), ("taboo", taboo), ("score", score)):
        walls, cpus = [], []
        for _ in range(repeat):
            start, cpu = time.perf_counter(), time.process_time()
            fn()
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
        out[name] = (len(transcripts) / statistics.median(walls), len(transcripts) / statistics.median(cpus))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20000, help="calls in the main run (the memory run uses 4x)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="repeats of the in-process measurements (median)")
    ap.add_argument("--in-process-calls", type=int, default=3000)
    ap.add_argument("--model", action="append", default=[], help="classifier directory (repeatable)")
    ap.add_argument("--model-calls", type=int, default=2000)
    ap.add_argument("--no-memory-run", action="store_true", help="skip the 4x-size run")
    args = ap.parse_args()
    models = list(args.model)
    if not models:
        default = Path(os.environ.get("KEFU_HOME") or REPO / "var") / "models" / "classifier"
        models = [str(default)] if default.is_dir() else []

    rows: list[tuple[str, int, float, float, int | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        small, main_in, big = tmpd / "small.jsonl", tmpd / "calls.jsonl", tmpd / "big.jsonl"
        make_calls(small, args.in_process_calls)
        make_calls(main_in, args.calls)
        rates = in_process(small, args.repeat)
        rows.append(("baseline: regex alternation, taboo only", args.in_process_calls, *rates["baseline"], None))
        rows.append(("taboo matcher: normalise + AC + exceptions", args.in_process_calls, *rates["taboo"], None))
        rows.append(("full scorecard + estimates, 1 process", args.in_process_calls, *rates["score"], None))

        def cli_row(name: str, n: int, cli_args: list[str]) -> None:
            secs, cpu, rss = run_cli(["qa", "score", *cli_args, "-w", str(args.workers)])
            rows.append((name, n, n / secs, n / cpu, rss))

        w = args.workers
        rules = ["--no-model"]  # the rules rows must not pick up $KEFU_HOME/models/classifier
        cli_row(
            f"kefu qa score -w {w} (rules, with sampling)",
            args.calls,
            [str(main_in), "-o", str(tmpd / "o.jsonl"), *rules],
        )
        cli_row(
            f"kefu qa score -w {w} --no-sample (rules)",
            args.calls,
            [str(main_in), "-o", str(tmpd / "o.jsonl"), "--no-sample", *rules],
        )
        if not args.no_memory_run:
            make_calls(big, 4 * args.calls)
            cli_row(
                f"kefu qa score -w {w} (rules), 4x input",
                4 * args.calls,
                [str(big), "-o", str(tmpd / "b.jsonl"), *rules],
            )
        if models:
            mcalls = tmpd / "model.jsonl"
            make_calls(mcalls, args.model_calls)
            for model in models:
                cli_row(
                    f"kefu qa score -w {w} --model {Path(model).name}",
                    args.model_calls,
                    [str(mcalls), "-o", str(tmpd / "m.jsonl"), "--model", model],
                )

    base_wall, base_cpu = rates["baseline"]
    print(f"cores: {os.cpu_count()}, load average at the end: {os.getloadavg()[0]:.2f}; calls of 20 turns")
    print("calls/s: wall time. calls/CPU-s: CPU time of every process, robust to a busy machine; with")
    print(f"{args.workers} dedicated cores expect about {args.workers} x calls/CPU-s when the workers scale.")
    print(f"{'run':48} {'calls':>7} {'calls/s':>8} {'x base':>7} {'calls/CPU-s':>11} {'x base':>7} {'peak RSS':>9}")
    for name, n, rate, cpu_rate, rss in rows:
        mem = f"{rss / 2**20:7.0f}MB" if rss else "        -"
        print(f"{name:48} {n:7d} {rate:8.0f} {rate / base_wall:7.3f} {cpu_rate:11.0f} {cpu_rate / base_cpu:7.3f} {mem}")
    if not models:
        print("classifier: not measured (pass --model DIR or create $KEFU_HOME/models/classifier)")


if __name__ == "__main__":
    main()
