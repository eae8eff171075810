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
from models.classifier.card import interval_text
from models.classifier.common import logit, sigmoid
from models.classifier_base import CallClassifier
from training.bootstrap import DEFAULT_RESAMPLES, ClusterBootstrap
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


def turn_cluster(turn: TurnExample, i: int) -> str:
    """The unit a turn is resampled with: its call (hand-written calls), else its pattern (generated turns)."""
    if "#" in turn.source:
        return "call:" + turn.source.rsplit("#", 1)[0]
    return "pattern:" + turn.pattern if turn.pattern else f"row:{i}"


def add_intervals(out: dict[str, Any], prefix: str, y: Sequence[int], p: Sequence[float], clusters: Sequence[str],
                  resamples: int, metrics: Sequence[str] = ("f1", "auc")) -> None:
    """`{prefix}_{metric}_ci95`: the 95 % cluster-bootstrap interval of each metric (skipped when resamples is 0)."""
    if resamples and len(y):
        boot = ClusterBootstrap(clusters, resamples)
        for metric in metrics:
            out[f"{prefix}_{metric}_ci95"] = boot.interval(metric, y, p)


def evaluate_turns(clf: CallClassifier, turns: list[TurnExample], curves: dict[str, Any],
                   shift: dict[str, float] | None = None, resamples: int = DEFAULT_RESAMPLES) -> dict[str, Any]:
    """Turn-level metrics for taboo (split by lexicon wording), empathy and risk, with 95 % intervals.

    `shift` (logits per output) re-centres the decision at another threshold (see generated_shift). Intervals
    resample whole calls or patterns (`turn_cluster`)."""
    preds = clf.predict_turns([t.text for t in turns], [t.role for t in turns])
    out: dict[str, Any] = {}
    for label in ("taboo", "empathy", "risk"):
        rows = [i for i, t in enumerate(turns) if label in t.labels]
        if not rows:
            continue
        y = [turns[i].labels[label] for i in rows]
        p = _recentred([preds[i][label] for i in rows], (shift or {}).get(label, 0.0))
        clusters = [turn_cluster(turns[i], i) for i in rows]
        m = prf(y, p)
        out[f"{label}_precision"], out[f"{label}_recall"], out[f"{label}_f1"] = m["precision"], m["recall"], m["f1"]
        out[f"{label}_support"] = m["support"]
        out[f"{label}_confusion"] = m["confusion"]
        out[f"{label}_auc"] = auc(y, p)
        out[f"{label}_ece"] = ece(y, p)
        add_intervals(out, label, y, p, clusters, resamples)
        curves[label] = (y, p, clusters)
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
                add_intervals(out, f"taboo_{name}", ys, ps, [clusters[k] for k in sel], resamples, ("f1",))
        if label == "taboo" and all(turns[i].family for i in rows):  # generated turns record their family
            out |= taboo_breakdown(turns, y, p, rows)
            out |= apology_probe(clf, turns, [i for i, t in zip(rows, y, strict=True) if t],
                                 (shift or {}).get("taboo", 0.0))
    return out


def evaluate_calls(clf: CallClassifier, calls: list[dict[str, Any]], curves: dict[str, Any],
                   resamples: int = DEFAULT_RESAMPLES) -> dict[str, Any]:
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
        ids = [f"call:{calls[i].get('call_id', i)}#{i}" for i in rows]
        add_intervals(out, label, y, p, ids, resamples)
        curves[label] = (y, p, ids)
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


def evaluate_stc3(clf: CallClassifier, curves: dict[str, Any], path: Path | None = None,
                  resamples: int = DEFAULT_RESAMPLES) -> dict[str, Any]:
    rows = load_stc3("test", path) if path else load_stc3("test")
    scores = clf.predict_calls([_to_transcript(r) for r in rows])
    y = [int(r["labels"]["dissatisfied"]) for r in rows]
    p = [s.complaint_risk for s in scores]
    ids = [f"dialogue:{r.get('call_id', i)}#{i}" for i, r in enumerate(rows)]
    curves["dissatisfied"] = (y, p, ids)
    out = {"dialogues": len(rows), "dissatisfied_auc": auc(y, p), "dissatisfied_ap": average_precision(y, p),
           "dissatisfied_ece": ece(y, p)}
    add_intervals(out, "dissatisfied", y, p, ids, resamples, ("auc",))
    return out


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
        for label, (y, p, *_) in drawable.items():
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
             stc3: bool = True, stc3_path: Path | None = None, plots: bool = True,
             resamples: int = DEFAULT_RESAMPLES) -> dict[str, Any]:
    """Every evaluation set that is available; writes eval.json, eval.md and PR curves to `out_dir`.

    `resamples` sets the cluster bootstrap behind the 95 % intervals (`*_ci95`); 0 leaves them out."""
    results, curves = score_sets(clf, data_dir, gold, stc3, stc3_path, resamples)
    results["targets"] = {
        f"{s}/{m}": {"target": t, "value": results.get(s, {}).get(m), "ci95": results.get(s, {}).get(f"{m}_ci95"),
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


def score_sets(clf: CallClassifier, data_dir: Path, gold: Path | None = None, stc3: bool = True,
               stc3_path: Path | None = None, resamples: int = DEFAULT_RESAMPLES
               ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Metrics per available set, and per set and output the (labels, scores, clusters) they came from."""
    results: dict[str, Any] = {}
    curves: dict[str, dict[str, Any]] = {}
    turns_path = Path(data_dir) / "turns_test.jsonl"
    if turns_path.exists():
        c: dict[str, Any] = {}
        calls = read_calls(Path(data_dir) / "calls_test.jsonl")
        # Generated turns are a quarter taboo: scored at the thresholds chosen for validation's own share.
        shift = generated_shift(clf)
        results["synthetic_test"] = (evaluate_turns(clf, read_turns(turns_path), c, shift, resamples)
                                     | evaluate_calls(clf, calls, c, resamples))
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
        results["gold"] = (evaluate_turns(clf, turns_of_calls(gold_calls), c, resamples=resamples)
                           | evaluate_calls(clf, gold_calls, c, resamples))
        curves["gold"] = c
    if stc3:
        c = {}
        try:
            results["stc3_test"] = evaluate_stc3(clf, c, stc3_path, resamples)
            curves["stc3_test"] = c
        except Exception as exc:
            log.warning("STC-3 not evaluated: %s", exc)
    return results, curves


def headline(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The numbers that go into the model card: scalar metrics and their 95 % intervals."""
    return {s: {k: v for k, v in m.items()
                if (isinstance(v, (int, float)) and not isinstance(v, bool)) or (k.endswith("_ci95") and v)}
            for s, m in results.items() if s != "targets"}


def to_markdown(results: dict[str, Any], name: str) -> str:
    lines = [f"# Evaluation of {name}", ""]
    for set_name, metrics in results.items():
        if set_name == "targets":
            continue
        lines += [f"## {set_name}", "", "| metric | value | 95 % interval |", "|---|---|---|"]
        tables = {k: v for k, v in metrics.items() if isinstance(v, dict)}
        for k, v in metrics.items():
            if k.endswith("_ci95"):
                continue
            if isinstance(v, float):
                lines.append(f"| {k} | {v:.4f} | {interval_text(metrics.get(f'{k}_ci95'))} |")
            elif v is not None and k not in tables:
                lines.append(f"| {k} | {v} | |")
        lines.append("")
        for k, table in tables.items():  # breakdowns: one row per category / source
            cols = list(next(iter(table.values()), {}))
            lines += [f"### {set_name}: {k}", "", f"| {k.split('_by_')[-1]} | " + " | ".join(cols) + " |",
                      "|---|" + "---|" * len(cols)]
            for name, row in table.items():
                lines.append(f"| {name} | " + " | ".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c])
                                                       for c in cols) + " |")
            lines.append("")
    lines += ["## Targets", "",
              "Intervals: 95 % cluster bootstrap (whole calls, or whole patterns of generated turns, resampled).", "",
              "| target | minimum | measured | 95 % interval | met |", "|---|---|---|---|---|"]
    for k, t in results.get("targets", {}).items():
        v = t["value"]
        lines.append(f"| {k} | {t['target']} | {v:.4f} | {interval_text(t.get('ci95'))} | "
                     f"{'yes' if t['met'] else 'NO'} |" if v is not None
                     else f"| {k} | {t['target']} | n/a | | NO |")
    return "\n".join(lines) + "\n"


def compare(clf_a: CallClassifier, clf_b: CallClassifier, data_dir: Path, gold: Path | None = None,
            stc3: bool = True, stc3_path: Path | None = None,
            resamples: int = DEFAULT_RESAMPLES) -> list[dict[str, Any]]:
    """Paired comparison of two models on the same sets: B − A per set, output and metric, with a 95 % interval.

    Both models are scored on the same rows and resampled with the same clusters, so the interval is that of the
    difference itself, much narrower than two separate intervals would suggest. A difference whose interval
    excludes 0 is reported as such; anything else is within what another sample could reverse."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1 for a comparison, got {resamples}")
    hashes = {(getattr(c, "meta", None) or {}).get("data_hash") for c in (clf_a, clf_b)}
    if len(hashes) > 1:
        log.warning("the two models were trained on different generated data (%s): the synthetic test split of "
                    "%s may share wording with the other model's training data", sorted(map(str, hashes)), data_dir)
    _, curves_a = score_sets(clf_a, data_dir, gold, stc3, stc3_path, resamples=0)
    _, curves_b = score_sets(clf_b, data_dir, gold, stc3, stc3_path, resamples=0)
    rows: list[dict[str, Any]] = []
    for set_name, outputs in curves_a.items():
        for output, (y, p_a, clusters) in outputs.items():
            if output not in curves_b.get(set_name, {}):
                continue
            y_b, p_b, _ = curves_b[set_name][output]
            if list(y_b) != list(y):
                raise ValueError(f"{set_name}/{output}: the two models were scored on different rows")
            boot = ClusterBootstrap(clusters, resamples)
            for metric in ("auc",) if output == "dissatisfied" else ("f1", "auc"):  # as evaluate_stc3 reports
                a, b = point_metric(metric, y, p_a), point_metric(metric, y, p_b)
                ci = boot.difference(metric, y, p_a, p_b)
                verdict = ("B better" if ci and ci[0] > 0 else "A better" if ci and ci[1] < 0
                           else "no clear difference")
                rows.append({"set": set_name, "output": output, "metric": metric, "a": a, "b": b,
                             "difference": None if a is None or b is None else b - a, "ci95": ci,
                             "verdict": verdict, "n": len(y), "clusters": boot.n_clusters})
    return rows


def point_metric(metric: str, y: Sequence[int], p: Sequence[float]) -> float | None:
    """F1 at 0.5 or ROC AUC on the rows as they are (None where undefined)."""
    return auc(y, p) if metric == "auc" else prf(y, p)["f1"]


def comparison_markdown(rows: list[dict[str, Any]], name_a: str, name_b: str) -> str:
    lines = [f"# {name_b} (B) against {name_a} (A)", "",
             "Paired 95 % cluster-bootstrap intervals of B − A (same rows, same resamples). Each row is its own test: "
             f"among {len(rows)} rows about {len(rows) / 20:.0f} may read better or worse by chance alone, so trust a "
             "difference that holds across outputs and sets, not a single row.", "",
             "| set | output | metric | A | B | B − A | 95 % interval | verdict |", "|---|---|---|---|---|---|---|---|"]

    def num(v: float | None, sign: str = "") -> str:
        return "n/a" if v is None else f"{v:{sign}.4f}"

    for r in rows:
        lines.append(f"| {r['set']} | {r['output']} | {r['metric']} | {num(r['a'])} | {num(r['b'])} | "
                     f"{num(r['difference'], '+')} | {interval_text(r['ci95'], signed=True)} | "
                     f"{r['verdict']} |")
    return "\n".join(lines) + "\n"
