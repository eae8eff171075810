"""Classifier benchmark: quality vs the TF-IDF baseline, turns/s (torch eager, onnx int8, tfidf), size, train time.

Usage: .venv/bin/python benchmarks/classifier.py [--model DIR] [--baseline DIR] [--data DIR] [--threads 2]
Prints markdown tables; the baseline is measured in the same run. Medians of --repeat timed passes. Quality numbers
carry 95 % cluster-bootstrap intervals, and the model's difference from the baseline a paired one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def dir_size_mb(path: Path, exclude: tuple[str, ...] = ("eval",)) -> float:
    total = 0
    for p in path.rglob("*"):
        if p.is_file() and not any(part in exclude for part in p.relative_to(path).parts):
            total += p.stat().st_size
    return total / 1e6


def throughput(clf: Any, texts: list[str], roles: list[str], repeat: int) -> float:
    """Median turns/s of batched predict_turns over `texts` (one warm-up pass first)."""
    clf.predict_turns(texts[:256], roles[:256])
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        clf.predict_turns(texts, roles)
        rates.append(len(texts) / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    from kefu.settings import get_settings

    home = get_settings()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=home.models_dir / "classifier")
    ap.add_argument("--baseline", type=Path, default=home.models_dir / "classifier-tfidf")
    ap.add_argument("--data", type=Path, default=home.home / "training_data")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--turns", type=int, default=4000, help="turns per timed pass")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-quality", action="store_true", help="only speed and size")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    missing = [p for p in (args.model, args.baseline, args.data) if not p.exists()]
    if missing:
        print(f"skipped: {', '.join(map(str, missing))} not found. Build them with\n"
              "  kefu train data && kefu train fit && kefu train fit --backend tfidf && kefu train export")
        return
    import torch

    torch.set_num_threads(args.threads)
    from models.classifier import load_classifier
    from models.classifier.char_transformer import TransformerClassifier
    from models.classifier.onnx_runtime import OnnxClassifier
    from training.datasets import read_turns

    turns = read_turns(args.data / "turns_test.jsonl")
    turns = (turns * (args.turns // max(1, len(turns)) + 1))[: args.turns]
    texts, roles = [t.text for t in turns], [t.role for t in turns]
    avg_chars = sum(map(len, texts)) / len(texts)

    rows: list[dict[str, Any]] = []
    baseline = load_classifier(args.baseline)
    runs: list[tuple[str, Any, Path]] = [("tfidf-lr (baseline)", baseline, args.baseline)]
    runs.append(("char-transformer torch eager fp32", TransformerClassifier.load(args.model), args.model))
    if (args.model / "onnx" / "model.int8.onnx").exists():
        onnx_dir = args.model / "onnx"
        runs.append(("char-transformer onnx fp32", OnnxClassifier(args.model, False, args.threads), onnx_dir))
        runs.append(("char-transformer onnx int8", OnnxClassifier(args.model, True, args.threads), args.model / "onnx"))
    for name, clf, _ in runs:
        rows.append({"runtime": name, "turns/s": throughput(clf, texts, roles, args.repeat)})
    base_rate = rows[0]["turns/s"]
    meta = json.loads((args.model / "kefu_classifier.json").read_text(encoding="utf-8"))
    bmeta = json.loads((args.baseline / "kefu_classifier.json").read_text(encoding="utf-8"))
    size_model = dir_size_mb(args.model, exclude=("eval", "onnx"))
    size_int8 = (args.model / "onnx" / "model.int8.onnx").stat().st_size / 1e6 if len(runs) > 2 else float("nan")
    print(f"# classifier benchmark ({args.threads} threads, {len(texts)} turns of {avg_chars:.0f} chars on average, "
          f"median of {args.repeat})\n")
    print("| runtime | turns/s | × baseline |\n|---|---|---|")
    for r in rows:
        print(f"| {r['runtime']} | {r['turns/s']:.0f} | {r['turns/s'] / base_rate:.2f} |")
    print("\n| model | train time (s) | size on disk (MB) |\n|---|---|---|")
    print(f"| tfidf-lr | {bmeta.get('train_seconds', float('nan')):.0f} | {dir_size_mb(args.baseline):.1f} |")
    print(f"| char-transformer | {meta.get('train_seconds', float('nan')):.0f} | {size_model:.1f} "
          f"(int8 onnx {size_int8:.1f}) |")
    if args.skip_quality:
        return
    from models.classifier.card import interval_text
    from training.evaluate import compare, evaluate

    keys = [("synthetic_test", "taboo_f1"), ("synthetic_test", "taboo_in_lexicon_f1"),
            ("synthetic_test", "taboo_not_in_lexicon_f1"), ("synthetic_test", "empathy_f1"),
            ("synthetic_test", "risk_auc"), ("synthetic_test", "complaint_risk_auc"),
            ("synthetic_test", "call_empathy_f1"), ("gold", "taboo_f1"), ("gold", "taboo_in_lexicon_f1"),
            ("gold", "taboo_not_in_lexicon_f1"), ("gold", "empathy_f1"), ("gold", "risk_auc"),
            ("gold", "complaint_risk_auc"), ("gold", "call_empathy_f1"), ("stc3_test", "dissatisfied_auc")]
    res_base = evaluate(baseline, args.data, None)
    model_clf = load_classifier(args.model)
    res_model = evaluate(model_clf, args.data, None)
    # Paired differences (same rows, same resamples) for every F1 and AUC of a whole output.
    paired = {(r["set"], f"{r['output']}_{r['metric']}"): r for r in compare(baseline, model_clf, args.data)}
    print(f"\n| set / metric | tfidf-lr (95 % interval) | {model_clf.name} (95 % interval) | difference "
          "(paired 95 % interval) |\n|---|---|---|---|")
    for s, k in keys:
        cells = []
        for res in (res_base, res_model):
            v = res.get(s, {}).get(k)
            cells.append(f"{v:.3f} ({interval_text(res[s].get(f'{k}_ci95'))})" if isinstance(v, float) else "n/a")
        d = paired.get((s, k))
        diff = (f"{d['difference']:+.3f} ({interval_text(d['ci95'], signed=True)})" if d and d["difference"] is not None
                else "")
        print(f"| {s} / {k} | {cells[0]} | {cells[1]} | {diff} |")

if __name__ == "__main__":
    main()
