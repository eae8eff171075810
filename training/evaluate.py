"""Evaluation: per-label precision/recall/F1, confusion matrices, ROC AUC and PR curves on the held-out sets."""

from __future__ import annotations

import itertools
import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kefu.schemas import Transcript, Turn
from models.classifier.common import logit, sigmoid
from models.classifier_base import CallClassifier
from training.datasets import (
    TurnExample,
    in_lexicon,
    lexicon_phrases,
    load_gold,
    load_stc3,
    read_calls,
    read_turns,
    turns_of_calls,
)

log = logging.getLogger(__name__)

# The targets: (set, metric) → minimum.
TARGETS: dict[tuple[str, str], float] = {
    ("synthetic_test", "taboo_f1"): 0.90,
    ("synthetic_test", "empathy_f1"): 0.85,
    ("synthetic_test", "complaint_risk_auc"): 0.95,
    ("gold", "taboo_f1"): 0.90,
    ("gold", "empathy_f1"): 0.85,
    ("gold", "complaint_risk_auc"): 0.95,
    ("stc3_test", "dissatisfied_auc"): 0.90,
}


def prf(y: Sequence[int], p: Sequence[float], threshold: float = 0.5) -> dict[str, float]:
    """Precision, recall, F1, support and the confusion matrix at `threshold`."""
    yt = np.asarray(y, dtype=int)
    yp = (np.asarray(p) >= threshold).astype(int)
    tp = int(((yt == 1) & (yp == 1)).sum())
    fp = int(((yt == 0) & (yp == 1)).sum())
    fn = int(((yt == 1) & (yp == 0)).sum())
    tn = int(((yt == 0) & (yp == 0)).sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"precision": prec, "recall": rec, "f1": f1, "support": tp + fn, "n": len(yt),
            "confusion": [[tn, fp], [fn, tp]]}


def auc(y: Sequence[int], p: Sequence[float]) -> float | None:
    from sklearn.metrics import roc_auc_score

    y = list(y)
    if len(set(y)) < 2:
        return None
    return float(roc_auc_score(y, p))


def average_precision(y: Sequence[int], p: Sequence[float]) -> float | None:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(list(y), list(p))) if len(set(y)) == 2 else None


def ece(y: Sequence[int], p: Sequence[float], bins: int = 10) -> float:
    """Expected calibration error: how far the probabilities are from observed frequencies."""
    y_arr, p_arr = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        sel = (p_arr >= lo) & (p_arr < hi if hi < 1 else p_arr <= hi)
        if sel.any():
            total += sel.mean() * abs(p_arr[sel].mean() - y_arr[sel].mean())
    return float(total)


# Taboo categories of the domain (pattern groups carry them in their names: 不耐烦2, 礼貌外壳推诿, 生硬补充…).
TABOO_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("推诿", "推诿"), ("推卸", "推诿"), ("不耐烦", "不耐烦"), ("指责", "指责"), ("轻视", "轻视"),
    ("挑衅", "挑衅"), ("生硬", "生硬拒绝"), ("拒绝", "生硬拒绝"), ("敷衍", "敷衍"), ("冷漠", "冷漠"),
    ("讥讽", "讥讽"), ("不文明", "不文明用语"),
)


def taboo_category(group: str) -> str:
    """The taboo category of a generated pattern group (不耐烦2 → 不耐烦); "其他" when the group mixes them."""
    return next((cat for key, cat in TABOO_CATEGORIES if key in group), "其他")


def taboo_breakdown(turns: Sequence[TurnExample], y: Sequence[int], p: Sequence[float], rows: Sequence[int]
                    ) -> dict[str, dict[str, dict[str, float | int]]]:
    """Recall per taboo category and false-alarm rate per pattern family of the negatives (generated sets only)."""
    by_cat: dict[str, list[int]] = {}
    by_src: dict[str, list[int]] = {}
    for k, i in enumerate(rows):
        hit = int(p[k] >= 0.5)
        if y[k]:
            by_cat.setdefault(taboo_category(turns[i].group), []).append(hit)
        else:
            by_src.setdefault(turns[i].family, []).append(hit)
    return {
        "taboo_recall_by_category": {c: {"recall": sum(v) / len(v), "support": len(v)}
                                     for c, v in sorted(by_cat.items())},
        "taboo_false_alarms_by_source": {s: {"rate": sum(v) / len(v), "false_alarms": sum(v), "n": len(v)}
                                         for s, v in sorted(by_src.items())},
    }


def _recentred(p: Sequence[float], shift: float) -> list[float]:
    """Probabilities with `shift` added to their logits (a decision at another threshold; see generated_shift)."""
    return sigmoid(logit(p, 1e-7) + shift).tolist() if shift else list(p)


def apology_probe(clf: CallClassifier, turns: Sequence[TurnExample], positives: Sequence[int], shift: float = 0.0
                  ) -> dict[str, float | int]:
    """Taboo recall when an empathy turn of the same set is appended to each taboo turn ("…你自己不会看吗，给您添
    麻烦了 实在抱歉"): the turn is still taboo, so a model that lets the apology hide it can be gamed."""
    empathy = [t.text for t in turns if t.family == "empathy" and t.role == "agent"]
    if not positives or not empathy:
        return {}
    rng = random.Random(0)
    texts = [f"{turns[i].text}，{rng.choice(empathy)}" for i in positives]
    p = _recentred([d["taboo"] for d in clf.predict_turns(texts, ["agent"] * len(texts))], shift)
    return {"taboo_recall_empathy_appended": sum(x >= 0.5 for x in p) / len(p),
            "taboo_empathy_appended_n": len(p)}


def _to_transcript(call: dict[str, Any]) -> Transcript:
    extra = {"channel": call["channel"]} if call.get("channel") else {}  # the aggregator weighs typed chats apart
    return Transcript(str(call["call_id"]), [Turn(role=t["role"], text=t["text"]) for t in call["turns"]], extra)


def generated_shift(clf: CallClassifier) -> dict[str, float]:
    """Per turn output, the logit shift that moves the model's decision threshold (chosen for the positive share
    of real calls) to the one chosen for the generated validation split's share (`thresholds_generated`)."""
    meta = getattr(clf, "meta", None) or {}
    shipped, generated = meta.get("thresholds") or {}, meta.get("thresholds_generated") or {}
    return {h: float(logit(shipped[h]) - logit(generated[h])) for h in generated if h in shipped}


def evaluate_turns(clf: CallClassifier, turns: list[TurnExample], curves: dict[str, Any],
                   shift: dict[str, float] | None = None) -> dict[str, Any]:
    """Turn-level metrics for taboo (split by lexicon wording), empathy and risk.

    `shift` (logits per output) re-centres the decision at another threshold (see generated_shift)."""
    preds = clf.predict_turns([t.text for t in turns], [t.role for t in turns])
    out: dict[str, Any] = {}
    for label in ("taboo", "empathy", "risk"):
        rows = [i for i, t in enumerate(turns) if label in t.labels]
        if not rows:
            continue
        y = [turns[i].labels[label] for i in rows]
        p = _recentred([preds[i][label] for i in rows], (shift or {}).get(label, 0.0))
        m = prf(y, p)
        out[f"{label}_precision"], out[f"{label}_recall"], out[f"{label}_f1"] = m["precision"], m["recall"], m["f1"]
        out[f"{label}_support"] = m["support"]
        out[f"{label}_confusion"] = m["confusion"]
        out[f"{label}_auc"] = auc(y, p)
        out[f"{label}_ece"] = ece(y, p)
        curves[label] = (y, p)
        if label == "taboo" and lexicon_phrases():
            lex = [in_lexicon(turns[i].text) for i in rows]
            for name, want in (("in_lexicon", True), ("not_in_lexicon", False)):
                # F1 over positives of that wording kind plus every negative (whose wording is the hard part).
                sel = [k for k, flag in enumerate(lex) if flag == want]
                ys, ps = [y[k] for k in sel], [p[k] for k in sel]
                sub = prf(ys, ps)
                out[f"taboo_{name}_f1"] = sub["f1"]
                out[f"taboo_{name}_recall"] = sub["recall"]
                out[f"taboo_{name}_precision"] = sub["precision"]
                out[f"taboo_{name}_support"] = sub["support"]
                out[f"taboo_{name}_n"] = sub["n"]
        if label == "taboo" and all(turns[i].family for i in rows):  # generated turns record their family
            out |= taboo_breakdown(turns, y, p, rows)
            out |= apology_probe(clf, turns, [i for i, t in zip(rows, y, strict=True) if t],
                                 (shift or {}).get("taboo", 0.0))
    return out


def evaluate_calls(clf: CallClassifier, calls: list[dict[str, Any]], curves: dict[str, Any]) -> dict[str, Any]:
    scores = clf.predict_calls([_to_transcript(c) for c in calls])
    out: dict[str, Any] = {"calls": len(calls)}
    for label, attr in (("complaint_risk", "complaint_risk"), ("call_empathy", "empathy")):
        key = "empathy" if label == "call_empathy" else label
        rows = [i for i, c in enumerate(calls) if key in c.get("labels", {})]
        y = [int(calls[i]["labels"][key]) for i in rows]
        p = [getattr(scores[i], attr) for i in rows]
        if not rows:
            continue
        m = prf(y, p)
        out[f"{label}_auc"] = auc(y, p)
        out[f"{label}_f1"] = m["f1"]
        out[f"{label}_ece"] = ece(y, p)
        out[f"{label}_confusion"] = m["confusion"]
        curves[label] = (y, p)
        channels = [str(calls[i].get("channel") or "unknown") for i in rows]
        if label == "complaint_risk" and len(set(channels)) > 1:
            # Typed and spoken calls are aggregated with different weights: report each channel on its own.
            for ch in sorted(set(channels)):
                sel = [k for k, c in enumerate(channels) if c == ch]
                ys, ps = [y[k] for k in sel], [p[k] for k in sel]
                out[f"complaint_risk_{ch}_calls"] = len(sel)
                out[f"complaint_risk_{ch}_auc"] = auc(ys, ps)
                out[f"complaint_risk_{ch}_f1"] = prf(ys, ps)["f1"]
    return out


def evaluate_stc3(clf: CallClassifier, curves: dict[str, Any], path: Path | None = None) -> dict[str, Any]:
    rows = load_stc3("test", path) if path else load_stc3("test")
    scores = clf.predict_calls([_to_transcript(r) for r in rows])
    y = [int(r["labels"]["dissatisfied"]) for r in rows]
    p = [s.complaint_risk for s in scores]
    curves["stc3_dissatisfied"] = (y, p)
    return {"dialogues": len(rows), "dissatisfied_auc": auc(y, p), "dissatisfied_ap": average_precision(y, p),
            "dissatisfied_ece": ece(y, p)}


def plot_pr(curves: dict[str, dict[str, Any]], out_dir: Path) -> list[Path]:
    """One PNG per evaluation set with a precision–recall curve per label (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: PR curves are skipped (pip install matplotlib)")
        return []
    from sklearn.metrics import precision_recall_curve

    paths = []
    for set_name, per_label in curves.items():
        drawable = {label: yp for label, yp in per_label.items() if len(set(yp[0])) == 2}
        if not drawable:
            continue
        fig, ax = plt.subplots(figsize=(5, 4))
        for label, (y, p) in drawable.items():
            prec, rec, _ = precision_recall_curve(y, p)
            ax.plot(rec, prec, label=f"{label} (AP {average_precision(y, p):.3f})")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"PR curves: {set_name}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower left", fontsize=8)
        fig.tight_layout()
        path = out_dir / f"pr_{set_name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def evaluate(clf: CallClassifier, data_dir: Path, out_dir: Path | None = None, gold: Path | None = None,
             stc3: bool = True, stc3_path: Path | None = None, plots: bool = True) -> dict[str, Any]:
    """Every evaluation set that is available; writes eval.json, eval.md and PR curves to `out_dir`."""
    results: dict[str, Any] = {}
    curves: dict[str, dict[str, Any]] = {}
    turns_path = Path(data_dir) / "turns_test.jsonl"
    if turns_path.exists():
        c: dict[str, Any] = {}
        calls = read_calls(Path(data_dir) / "calls_test.jsonl")
        # Generated turns are a quarter taboo: scored at the thresholds chosen for validation's own share.
        shift = generated_shift(clf)
        results["synthetic_test"] = (evaluate_turns(clf, read_turns(turns_path), c, shift)
                                     | evaluate_calls(clf, calls, c))
        if shift:
            results["synthetic_test"]["turn_thresholds"] = "thresholds_generated (validation share)"
        curves["synthetic_test"] = c
    gold_path = gold if gold is not None else None
    try:
        gold_calls = load_gold(gold_path) if gold_path else load_gold()
    except Exception as exc:
        log.warning("gold set not evaluated: %s", exc)
        gold_calls = []
    if gold_calls:
        c = {}
        results["gold"] = evaluate_turns(clf, turns_of_calls(gold_calls), c) | evaluate_calls(clf, gold_calls, c)
        curves["gold"] = c
    if stc3:
        c = {}
        try:
            results["stc3_test"] = evaluate_stc3(clf, c, stc3_path)
            curves["stc3_test"] = c
        except Exception as exc:
            log.warning("STC-3 not evaluated: %s", exc)
    results["targets"] = {
        f"{s}/{m}": {"target": t, "value": results.get(s, {}).get(m),
                     "met": (results.get(s, {}).get(m) or 0) >= t}
        for (s, m), t in TARGETS.items() if s in results
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "eval.json").write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
        (out_dir / "eval.md").write_text(to_markdown(results, getattr(clf, "name", "?")), encoding="utf-8")
        if plots:
            plot_pr(curves, out_dir)
    return results


def headline(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The numbers that go into the model card: scalar metrics only."""
    return {s: {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            for s, m in results.items() if s != "targets"}


def to_markdown(results: dict[str, Any], name: str) -> str:
    lines = [f"# Evaluation of {name}", ""]
    for set_name, metrics in results.items():
        if set_name == "targets":
            continue
        lines += [f"## {set_name}", "", "| metric | value |", "|---|---|"]
        tables = {k: v for k, v in metrics.items() if isinstance(v, dict)}
        for k, v in metrics.items():
            if isinstance(v, float):
                lines.append(f"| {k} | {v:.4f} |")
            elif v is not None and k not in tables:
                lines.append(f"| {k} | {v} |")
        lines.append("")
        for k, table in tables.items():  # breakdowns: one row per category / source
            cols = list(next(iter(table.values()), {}))
            lines += [f"### {set_name}: {k}", "", f"| {k.split('_by_')[-1]} | " + " | ".join(cols) + " |",
                      "|---|" + "---|" * len(cols)]
            for name, row in table.items():
                lines.append(f"| {name} | " + " | ".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c])
                                                       for c in cols) + " |")
            lines.append("")
    lines += ["## Targets", "", "| target | minimum | measured | met |", "|---|---|---|---|"]
    for k, t in results.get("targets", {}).items():
        v = t["value"]
        lines.append(f"| {k} | {t['target']} | {v:.4f} | {'yes' if t['met'] else 'NO'} |" if v is not None
                     else f"| {k} | {t['target']} | n/a | NO |")
    return "\n".join(lines) + "\n"
