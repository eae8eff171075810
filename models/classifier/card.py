"""The model card (README.md) written beside every saved classifier: labels, data, evaluation numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models.classifier.common import CALL_HEAD, HEADS


def interval_text(ci: Any, signed: bool = False) -> str:
    """A [low, high] interval as "0.812–0.861", or signed for differences ("-0.004 to +0.023"); empty if none."""
    if not (isinstance(ci, (list, tuple)) and len(ci) == 2):
        return ""
    return f"{ci[0]:+.4f} to {ci[1]:+.4f}" if signed else f"{ci[0]:.3f}–{ci[1]:.3f}"


def _table(evaluation: dict[str, Any]) -> list[str]:
    lines = ["| set | metric | value | 95 % interval |", "|---|---|---|---|"]
    for set_name, metrics in evaluation.items():
        if not isinstance(metrics, dict):
            continue
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                shown = f"{value:.4f}" if isinstance(value, float) else str(value)
                lines.append(f"| {set_name} | {key} | {shown} | {interval_text(metrics.get(f'{key}_ci95'))} |")
    return lines


def write_card(directory: Path, meta: dict[str, Any], extra: str | None = None) -> None:
    """Write README.md from the model's metadata (kefu_classifier.json)."""
    ev = meta.get("evaluation") or {}
    lines = [
        "---",
        "language: zh",
        "library_name: transformers" if meta.get("backend") != "tfidf" else "library_name: scikit-learn",
        "tags: [kefu, text-classification, customer-service, 95598]",
        "---",
        f"# kefu call classifier ({meta.get('backend', '?')})",
        "",
        "Service taboo speech and empathy per agent turn, complaint-risk signals per customer turn, and",
        "call-level complaint_risk / empathy (0–1) aggregated from the turns with the call's context.",
        "Probabilities are temperature-calibrated on a validation split of pattern-disjoint generated data.",
        "",
        "## Labels",
        f"- turn outputs: {', '.join(HEADS)} (taboo/empathy apply to agent turns, risk to customer turns)",
        f"- call context head: {CALL_HEAD}; call outputs: complaint_risk, empathy (a logistic aggregator over "
        "turn, call-head and call-text features, with its own weights for typed channels: chat, app, WeChat, "
        "Weibo…)",
        *([f"- whole-call text model (call_text.json/.safetensors): character 1–3-gram TF-IDF of the customer, "
           f"agent, first, later and last customer turns + call shape, ridge regression on dissatisfaction plus "
           f"a logistic regression of the binary label (logistic_weight); "
           f"{json.dumps(meta['call_text'], ensure_ascii=False)}"] if meta.get("call_text") else []),
        "",
        "## Training data",
        f"- generated data hash: `{meta.get('data_hash', '?')}` "
        f"(pattern inventory `{meta.get('inventory_digest', '?')}`)",
        *([f"- train-only patterns (hand-written, never in validation or test): "
           f"{json.dumps(meta['train_only_patterns'], ensure_ascii=False)}, drawn for a "
           f"{meta.get('train_only_share', 0):.0%} share of each family's generated training turns"]
          if meta.get("train_only_patterns") else []),
        f"- training examples: {json.dumps(meta.get('train_counts', {}), ensure_ascii=False)}",
        f"- STC-3 train split dialogues used for the call head: {meta.get('stc3_train_used', 0)}",
        f"- extra labelled turns: {meta.get('extra_turns', 0)}",
        f"- turns of hand-written labelled calls trained (counting repeats): "
        f"{meta.get('train_counts', {}).get('dev_turns_trained', 0)}; "
        f"QA taboo lexicon and rule-engine example turns (counting repeats): "
        f"{meta.get('train_counts', {}).get('lexicon_turns', 0)}",
        f"- hand-written contrast turns (agent turns whose labels differ by a few words): "
        f"{meta.get('train_counts', {}).get('contrast_turns', 0)}, each ×{meta.get('contrast_weight', 0)}",
        f"- training time: {meta.get('train_seconds', 0):.0f} s on {meta.get('threads', '?')} CPU threads",
        "",
        "## Architecture",
        f"```json\n{json.dumps(meta.get('architecture', {}), ensure_ascii=False, indent=1)}\n```",
        "",
        *([f"Taboo windows: an agent turn of {w['min_chars']}+ characters is also read in {w['size']}-character "
           f"windows every {w['stride']}; its taboo logit is the larger of the whole turn's and its windows' lowered "
           f"by {w['discount']} (calibrated scale).", ""]
          if (w := meta.get("taboo_windows")) else []),
        "## Evaluation",
        "Turn outputs at 0.5 after the per-output decision thresholds were folded into them (chosen on the",
        f"sets {_threshold_sets(meta)}: {json.dumps(meta.get('thresholds') or {})};",
        "a calibrated probability equal to its threshold reads 0.5).",
        *([f"They are chosen for the positive share of the hand-written labelled calls (as in real calls); at the "
           f"generated validation split's own share they would be {json.dumps(meta['thresholds_generated'])}, "
           "and the synthetic test split is scored at those."]
          if meta.get("thresholds_generated") and meta.get("thresholds_generated") != meta.get("thresholds") else []),
        "The synthetic test split, the gold set and the STC-3 test split were never used for training,",
        "calibration, thresholds or selection.",
        "",
        *(["Intervals: 95 % cluster bootstrap (whole calls, or whole patterns of generated turns, resampled), "
           "the spread a metric would show on another sample of calls or wording like these.", "", *_table(ev)]
          if ev else ["(not evaluated yet: run `kefu train eval`)"]),
        "",
        "## Use",
        "```python\nfrom models.classifier import load_classifier\nclf = load_classifier('PATH')\n"
        "clf.predict_turns(['你去投诉啊'], ['agent'])\n```",
    ]
    if extra:
        lines += ["", extra]
    (directory / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _threshold_sets(meta: dict[str, Any]) -> str:
    """Which data chose the decision thresholds (e.g. "val + threshold_calls"), from the saved report."""
    report = meta.get("threshold_selection") or {}
    sets = next((r.get("sets") for r in report.values() if isinstance(r, dict) and r.get("sets")), None)
    return " + ".join(sets) if sets else "validation"
