"""Precision/recall of the QA rules and rules-based estimates on the hand-labelled gold calls.

Usage: .venv/bin/python benchmarks/qa_rules_gold.py [GOLD.jsonl] [--model DIR]
With --model, the classifier's call-level scores are reported beside the rules-based estimates.
Evaluation only: nothing here is tuned on the gold set.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from kefu.io import iter_records
from qa_inspect.estimate import RulesEstimator
from qa_inspect.lexicon import PhraseIndex, get_resources
from qa_inspect.rules import Context

GOLD = Path(__file__).resolve().parents[1] / "training" / "data" / "gold_calls.jsonl"


def prf(pairs: list[tuple[bool, bool]]) -> tuple[float, float, float, int, int]:
    tp = sum(p and g for p, g in pairs)
    fp = sum(p and not g for p, g in pairs)
    fn = sum(g and not p for p, g in pairs)
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return prec, rec, f1, tp + fn, len(pairs)


def auc(scores: list[float], labels: list[bool]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def main(path: Path, model: str | None = None) -> None:
    res = get_resources()
    naive = re.compile("|".join(re.escape(e.phrase) for e in res.taboo_entries))
    empathy = PhraseIndex((p.phrase, p.phrase) for p in res.phrases["empathy"])
    triggers = PhraseIndex((p.phrase, p.phrase) for p in res.phrases["complaint_trigger"])
    est = RulesEstimator(res)
    turn_taboo, turn_naive, turn_emp, turn_risk = [], [], [], []
    call_taboo, call_naive, risk_s, risk_y, emp_s, emp_y = [], [], [], [], [], []
    for record in iter_records(path):
        t = record.transcript
        if t is None:
            continue
        ctx = Context(t, res)
        any_t = any_n = False
        for i, turn in enumerate(t.turns):
            labels = turn.extra.get("labels") or {}
            if turn.role == "agent":
                hit = any(m.active for m in ctx.taboo(i))
                nv = bool(naive.search(turn.text))
                any_t |= hit
                any_n |= nv
                if "taboo" in labels:
                    turn_taboo.append((hit, bool(labels["taboo"])))
                    turn_naive.append((nv, bool(labels["taboo"])))
                if "empathy" in labels:
                    turn_emp.append((bool(empathy.find(ctx.norm(i)[0])), bool(labels["empathy"])))
            elif "risk" in labels:
                turn_risk.append((bool(triggers.find(ctx.norm(i)[0])), bool(labels["risk"])))
        call_labels = t.extra.get("labels") or {}
        e = est.estimate(ctx)
        if "taboo" in call_labels:
            call_taboo.append((any_t, bool(call_labels["taboo"])))
            call_naive.append((any_n, bool(call_labels["taboo"])))
        if "complaint_risk" in call_labels:
            risk_s.append(e.complaint_risk)
            risk_y.append(bool(call_labels["complaint_risk"]))
        if "empathy" in call_labels:
            emp_s.append(e.empathy)
            emp_y.append(bool(call_labels["empathy"]))
    print(f"gold set: {path}")
    print(f"{'what':52} {'precision':>9} {'recall':>7} {'F1':>6} {'pos':>5} {'n':>5}")
    rows = [
        ("taboo, agent turns: lexicon + exceptions (AC)", turn_taboo),
        ("taboo, agent turns: naive regex alternation", turn_naive),
        ("taboo, calls: lexicon + exceptions", call_taboo),
        ("taboo, calls: naive regex alternation", call_naive),
        ("empathy, agent turns: empathy phrases", turn_emp),
        ("risk, customer turns: complaint-trigger phrases", turn_risk),
        ("complaint_risk, calls: estimate >= 0.5", [(s >= 0.5, y) for s, y in zip(risk_s, risk_y, strict=True)]),
        ("empathy, calls: estimate >= 0.5", [(s >= 0.5, y) for s, y in zip(emp_s, emp_y, strict=True)]),
    ]
    for name, pairs in rows:
        p, r, f, pos, n = prf(pairs)
        print(f"{name:52} {p:9.3f} {r:7.3f} {f:6.3f} {pos:5d} {n:5d}")
    print(f"complaint_risk estimate ROC AUC (calls): {auc(risk_s, risk_y):.3f}")
    print(f"empathy estimate ROC AUC (calls):        {auc(emp_s, emp_y):.3f}")
    if model:
        from qa_inspect.scoring import load_classifier

        clf = load_classifier(model)
        calls = [r.transcript for r in iter_records(path) if r.transcript is not None]
        scores = clf.predict_calls(calls)
        for label in ("complaint_risk", "empathy"):
            pairs = [
                (getattr(s, label), bool(t.extra["labels"][label]))
                for s, t in zip(scores, calls, strict=True)
                if label in (t.extra.get("labels") or {})
            ]
            value = auc([p for p, _ in pairs], [y for _, y in pairs])
            print(f"{label} classifier ({Path(model).name}) ROC AUC (calls): {value:.3f}")


if __name__ == "__main__":
    argv = sys.argv[1:]
    model_dir = None
    if "--model" in argv:
        k = argv.index("--model")
        model_dir = argv[k + 1]
        del argv[k : k + 2]
    main(Path(argv[0]) if argv else GOLD, model_dir)
