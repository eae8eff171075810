"""Calibration (质检标准校准): per-rule precision from verdicts and human-vs-machine agreement."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

from qa_inspect.review.store import ReviewStore

# Grade bands used to compare human and machine scores (优秀/良好/合格/不合格).
BANDS: tuple[tuple[float, str], ...] = ((90.0, "优秀"), (80.0, "良好"), (60.0, "合格"), (0.0, "不合格"))


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """Wilson score interval for a proportion (95% by default); None when n is 0."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - margin), min(1.0, center + margin)


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation; None with fewer than 2 pairs or when either side is constant."""
    n = len(x)
    if n != len(y):
        raise ValueError(f"x and y differ in length ({n} vs {len(y)})")
    if n < 2:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters; None without pairs, or when chance agreement is total (one category)."""
    n = len(a)
    if n != len(b):
        raise ValueError(f"the raters differ in length ({n} vs {len(b)})")
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    cats = set(a) | set(b)
    expected = sum((list(a).count(c) / n) * (list(b).count(c) / n) for c in cats)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1 - expected)


def band(score: float) -> str:
    for floor, name in BANDS:
        if score >= floor:
            return name
    return BANDS[-1][1]


def _precision_rows(groups: dict[Any, list[int]], key_name: str) -> list[dict[str, Any]]:
    rows = []
    for key, verdicts in groups.items():
        n, tp = len(verdicts), sum(verdicts)
        interval = wilson_interval(tp, n)
        rows.append(
            {
                key_name: key,
                "verdicts": n,
                "true": tp,
                "false": n - tp,
                "precision": round(tp / n, 4),
                "ci_low": round(interval[0], 4) if interval else None,
                "ci_high": round(interval[1], 4) if interval else None,
            }
        )
    rows.sort(key=lambda r: (r["precision"], -r["verdicts"], str(r[key_name])))
    return rows


def calibration(store: ReviewStore) -> dict[str, Any]:
    """The calibration report as a dict: per-rule and per-phrase precision, score and fatal agreement."""
    by_rule: dict[str, list[int]] = defaultdict(list)
    by_phrase: dict[str, list[int]] = defaultdict(list)
    for v in store.verdict_rows():
        by_rule[v["rule"]].append(int(v["correct"]))
        phrase = v["detail"].get("phrase")
        if v["kind"] == "taboo" and phrase:
            pid = v["detail"].get("phrase_id")
            by_phrase[f"{pid} {phrase}" if pid else phrase].append(int(v["correct"]))
    pairs = store.agreement_rows()
    machine = [float(p["machine_score"]) for p in pairs if p["machine_score"] is not None]
    human = [float(p["human_score"]) for p in pairs if p["machine_score"] is not None]
    diffs = [h - m for m, h in zip(machine, human, strict=True)]
    fatal_pairs = [(p["machine_fatal"], p["human_fatal"]) for p in pairs if p["human_fatal"] is not None]
    r = pearson(machine, human)
    k_fatal = cohen_kappa([m for m, _ in fatal_pairs], [h for _, h in fatal_pairs])
    k_band = cohen_kappa([band(x) for x in machine], [band(x) for x in human])
    return {
        "rules": _precision_rows(by_rule, "rule"),
        "phrases": _precision_rows(by_phrase, "phrase"),
        "agreement": {
            "calls": len(machine),
            "pearson_r": None if r is None else round(r, 4),
            "mean_abs_diff": round(sum(abs(d) for d in diffs) / len(diffs), 2) if diffs else None,
            "mean_diff_human_minus_machine": round(sum(diffs) / len(diffs), 2) if diffs else None,
            "band_agreement": round(
                sum(band(a) == band(b) for a, b in zip(machine, human, strict=True)) / len(machine), 4
            )
            if machine
            else None,
            "band_kappa": None if k_band is None else round(k_band, 4),
            "fatal_calls": len(fatal_pairs),
            "fatal_agreement": round(sum(a == b for a, b in fatal_pairs) / len(fatal_pairs), 4)
            if fatal_pairs
            else None,
            "fatal_kappa": None if k_fatal is None else round(k_fatal, 4),
        },
    }


def format_calibration(report: dict[str, Any]) -> str:
    """The calibration report as plain text for the terminal (Chinese headings)."""

    def pct(x: float | None) -> str:
        return "–" if x is None else f"{100 * x:.1f}%"

    lines = ["规则准确率（按复核结论，95% Wilson 区间）"]
    if not report["rules"]:
        lines.append("  （还没有复核结论）")
    for row in report["rules"]:
        lines.append(
            f"  {row['rule']:32} {row['true']:>4}/{row['verdicts']:<4} {pct(row['precision']):>7}"
            f"  [{pct(row['ci_low'])}, {pct(row['ci_high'])}]"
        )
    if report["phrases"]:
        lines.append("忌语词条准确率")
        for row in report["phrases"]:
            lines.append(f"  {row['phrase']:24} {row['true']:>4}/{row['verdicts']:<4} {pct(row['precision']):>7}")
    a = report["agreement"]
    lines.append(f"人机一致性（{a['calls']} 通有人工评分）")
    lines.append(f"  得分相关系数 r = {a['pearson_r'] if a['pearson_r'] is not None else '–'}")
    diff = a["mean_diff_human_minus_machine"]
    lines.append(
        f"  平均绝对差 = {a['mean_abs_diff'] if a['mean_abs_diff'] is not None else '–'}"
        f"，人工减机器平均 = {diff if diff is not None else '–'}"
    )
    lines.append(
        f"  等级一致率 = {pct(a['band_agreement'])}，kappa = {a['band_kappa'] if a['band_kappa'] is not None else '–'}"
    )
    lines.append(
        f"  致命项一致率 = {pct(a['fatal_agreement'])}（{a['fatal_calls']} 通），"
        f"kappa = {a['fatal_kappa'] if a['fatal_kappa'] is not None else '–'}"
    )
    return "\n".join(lines)
