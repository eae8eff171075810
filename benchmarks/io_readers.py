"""Benchmark: transcript reading + validation throughput against a bare json.loads loop."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from kefu.io import TranscriptCsvWriter, iter_records


def make_calls(n: int, turns: int) -> list[dict]:
    texts = [
        "您好，国家电网95598，工号1024，很高兴为您服务。",
        "喂 我家停电了 整个屋子都没电",
        "请您提供一下户号和详细地址。",
        "城南路18号3栋 邻居家也没电",
        "好的，已为您登记故障报修，抢修人员城区范围45分钟内到达现场。",
    ]
    return [
        {
            "call_id": f"C{i:07d}",
            "agent_id": f"A{i % 40:02d}",
            "channel": "voice",
            "turns": [
                {
                    "role": "agent" if j % 2 == 0 else "customer",
                    "text": texts[j % len(texts)],
                    "start": j * 4.0,
                    "end": j * 4.0 + 3.0,
                }
                for j in range(turns)
            ],
        }
        for i in range(n)
    ]


def timed(fn, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    calls = make_calls(args.calls, args.turns)
    with tempfile.TemporaryDirectory() as tmp:
        jsonl, csv = Path(tmp) / "calls.jsonl", Path(tmp) / "calls.csv"
        jsonl.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in calls), encoding="utf-8")
        records = list(iter_records(jsonl))
        with TranscriptCsvWriter(csv, ["agent_id", "channel"]) as writer:
            for r in records:
                writer.write(r.transcript)

        def baseline() -> None:
            with open(jsonl, encoding="utf-8") as fh:
                for line in fh:
                    json.loads(line)

        rows = [
            ("json.loads loop (baseline)", timed(baseline, args.repeats)),
            ("kefu iter_records JSONL", timed(lambda: sum(1 for _ in iter_records(jsonl)), args.repeats)),
            ("kefu iter_records CSV (per turn)", timed(lambda: sum(1 for _ in iter_records(csv)), args.repeats)),
        ]
    base = rows[0][1]
    print(f"{args.calls} calls × {args.turns} turns, median of {args.repeats} runs")
    print(f"{'reader':36} {'seconds':>8} {'calls/s':>10} {'× baseline time':>16}")
    for name, seconds in rows:
        print(f"{name:36} {seconds:8.3f} {args.calls / seconds:10.0f} {seconds / base:16.2f}")


if __name__ == "__main__":
    main()
