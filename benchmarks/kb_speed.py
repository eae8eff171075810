"""Search latency, build and update time, and memory of the knowledge-base index from 1k to 100k scripts.

Synthetic scripts are made from the bundled scripts' questions with words swapped and a per-script
code added, so they are realistic in length and vocabulary but all distinct. Each scale runs in a
fresh process (so resident memory is that scale's alone). The baseline, measured in the same run, is
jieba + rank_bm25 over the same question rows (skipped above --baseline-max, where it is too slow).

    .venv/bin/python benchmarks/kb_speed.py --scales 1000 10000 100000 [--encoder DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SCRIPTS = REPO / "knowledge_base" / "data" / "scripts.jsonl"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic(n: int, seed: int = 0) -> list:
    from knowledge_base.index.hybrid import script_from_dict
    from knowledge_base.index.sparse import tokenize

    rng = random.Random(seed)
    base = [json.loads(line) for line in SCRIPTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    words = sorted({w for b in base for q in b["questions"] for w in tokenize(q) if len(w) >= 2})
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    out = []
    for i in range(n):
        b = base[i % len(base)]
        code = "".join(rng.choice(chars) for _ in range(2))
        qs = []
        for q in rng.sample(b["questions"], min(8, len(b["questions"]))):
            toks = tokenize(q)
            if toks:
                toks[rng.randrange(len(toks))] = rng.choice(words)
            qs.append(code + "".join(toks))
        while len(qs) < 8:
            qs.append(code + rng.choice(words) + rng.choice(b["questions"]))
        out.append(
            script_from_dict(
                {
                    **b,
                    "id": f"S{i:06d}",
                    "scenario": b["scenario"] + code,
                    "questions": qs,
                    "script": b["script"] + code,
                }
            )
        )
    return out


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def run_scale(n: int, encoder: str | None, baseline_max: int, queries: int) -> dict:
    """Build at one scale, then measure serving in a fresh process (so its memory is the index's alone)."""
    from knowledge_base.index.manager import IndexManager

    scripts = synthetic(n)
    rng = random.Random(1)
    # Queries: index questions with one character dropped, so they are not verbatim rows.
    sample = [
        q[: len(q) // 2] + q[len(q) // 2 + 1 :]
        for q in (rng.choice(rng.choice(scripts).questions) for _ in range(queries))
    ]
    with tempfile.TemporaryDirectory() as tmp:
        config = {"encoder": encoder} if encoder else {}
        t0 = time.perf_counter()
        IndexManager(Path(tmp), config).rebuild(scripts, kb_version=1)
        build_s = time.perf_counter() - t0
        del scripts
        qfile = Path(tmp) / "queries.json"
        qfile.write_text(json.dumps(sample, ensure_ascii=False), encoding="utf-8")
        out = subprocess.run([sys.executable, __file__, "--serve", tmp], capture_output=True, text=True, check=True)
        row = {"scripts": n, "build_s": round(build_s, 1), **json.loads(out.stdout.strip().splitlines()[-1])}
    if n <= baseline_max:
        row.update(baseline(n, sample[:200]))
    return row


def serve(kb: Path) -> dict:
    """Load the index as a service would, then time searches and single-script updates."""
    import os

    from knowledge_base.index.manager import IndexManager

    sample = json.loads((kb / "queries.json").read_text(encoding="utf-8"))
    start_rss = rss_mb()
    m = IndexManager(kb)
    t0 = time.perf_counter()
    r = m.retriever()
    load_s = time.perf_counter() - t0
    for q in sample[:20]:
        r.search(q, 5)
    lat, cpu = [], []
    for q in sample:
        t, c = time.perf_counter(), time.process_time()
        r.search(q, 5)
        lat.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    rss = rss_mb()
    upd = []
    for i, s in enumerate(synthetic(30, seed=7)):
        s.id = f"U{i:04d}"
        t = time.perf_counter()
        m.upsert([s], kb_version=2 + i)
        upd.append((time.perf_counter() - t) * 1000)
    info = m.info()
    return {
        "rows": info["counts"]["rows"],
        "dense": info["dense_kind"],
        "load_s": round(load_s, 2),
        "p50_ms": round(percentile(lat, 50), 2),
        "p99_ms": round(percentile(lat, 99), 2),
        "p99_cpu_ms": round(percentile(cpu, 99), 2),
        "update_p50_ms": round(percentile(upd, 50), 1),
        "update_max_ms": round(max(upd), 1),
        "rss_mb": round(rss),
        "rss_before_load_mb": round(start_rss),
        "load_avg": round(os.getloadavg()[0], 1),
    }


def baseline(n: int, sample: list[str]) -> dict:
    """jieba + rank_bm25 over the same question rows: latency of one query (best script by max row score)."""
    from rank_bm25 import BM25Okapi

    from knowledge_base.index.sparse import tokenize

    scripts = synthetic(n)
    docs = [tokenize(q) for s in scripts for q in s.questions]
    t0 = time.perf_counter()
    bm = BM25Okapi(docs)
    build = time.perf_counter() - t0
    lat = []
    for q in sample:
        t = time.perf_counter()
        scores = bm.get_scores(tokenize(q))
        scores.reshape(n, -1).max(axis=1).argsort()[-5:]
        lat.append((time.perf_counter() - t) * 1000)
    return {
        "bm25_build_s": round(build, 1),
        "bm25_p50_ms": round(percentile(lat, 50), 2),
        "bm25_p99_ms": round(percentile(lat, 99), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--max-scripts", type=int, default=100000, help="Skip scales above this.")
    parser.add_argument("--encoder", default=None, help="Encoder directory (default: the default encoder).")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--baseline-max", type=int, default=10000)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one scale in this process
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # internal: measure serving an index directory
    parser.add_argument("--json", action="store_true", help="Print rows as JSON lines too.")
    args = parser.parse_args()
    if args.serve:
        print(json.dumps(serve(Path(args.serve))))
        return
    if args.one:
        print(json.dumps(run_scale(args.one, args.encoder, args.baseline_max, args.queries)))
        return
    rows = []
    for n in [s for s in args.scales if s <= args.max_scripts]:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            str(n),
            "--queries",
            str(args.queries),
            "--baseline-max",
            str(args.baseline_max),
        ] + (["--encoder", args.encoder] if args.encoder else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(f"scale {n} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"done {n}: {rows[-1]}", file=sys.stderr, flush=True)
    cols = [
        "scripts",
        "rows",
        "dense",
        "build_s",
        "load_s",
        "p50_ms",
        "p99_ms",
        "p99_cpu_ms",
        "update_p50_ms",
        "update_max_ms",
        "rss_mb",
        "bm25_p50_ms",
        "bm25_p99_ms",
        "load_avg",
    ]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "–")) for c in cols) + " |")
    if args.json:
        for r in rows:
            print(json.dumps(r))


if __name__ == "__main__":
    main()
