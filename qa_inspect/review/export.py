"""Reviewed turns as training data for `kefu train fit --extra FILE` (masked unless asked otherwise)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kefu.io import JsonlWriter
from qa_inspect.privacy import get_masker
from qa_inspect.review.store import TURN_LABELS, ReviewStore

log = logging.getLogger(__name__)


@dataclass
class ExportSummary:
    turns: int = 0
    positives: int = 0
    negatives: int = 0
    no_text: int = 0

    def describe(self) -> str:
        skipped = (
            f"; {self.no_text} labelled turns skipped: no transcript (load with --transcripts)" if self.no_text else ""
        )
        return f"{self.turns} reviewed turns ({self.positives} positive, {self.negatives} negative labels){skipped}"


def reviewed_turns(
    store: ReviewStore, mask: bool = True, negatives: bool = False
) -> tuple[list[dict[str, Any]], ExportSummary]:
    """Labelled turns from the review store, in call and turn order.

    Labels come from (1) verdicts on taboo hits: a confirmed hit makes its agent turn taboo=1, a
    rejected one taboo=0 (a hard negative); (2) explicit turn labels, which win; (3) with
    `negatives`, every other agent turn of a call a person scored or decided gets taboo=0.
    """
    labels: dict[tuple[str, int], dict[str, int]] = {}
    fallback_text: dict[tuple[str, int], str] = {}
    for v in store.verdict_rows():
        if v["kind"] != "taboo" or v["turn"] is None:
            continue
        key = (v["call_id"], int(v["turn"]))
        slot = labels.setdefault(key, {})
        slot["taboo"] = max(slot.get("taboo", 0), int(v["correct"]))
        if v["source"] == "model":  # model taboo entries carry the whole turn text
            fallback_text.setdefault(key, "")
    for row in store.turn_label_rows():
        labels.setdefault((row["call_id"], int(row["turn"])), {})[row["label"]] = int(row["value"])
    reviewed = store.reviewed_call_ids() if negatives else set()
    m = get_masker(mask)
    summary = ExportSummary()
    out: list[dict[str, Any]] = []
    calls = sorted({c for c, _ in labels} | reviewed)
    for call_id in calls:
        turns = store.turns(call_id)
        if call_id in reviewed and turns:
            for i, t in enumerate(turns):
                if t.get("role") == "agent":
                    labels.setdefault((call_id, i), {}).setdefault("taboo", 0)
        for (cid, turn), labs in sorted((k, v) for k, v in labels.items() if k[0] == call_id):
            text, role = None, None
            if turns and 0 <= turn < len(turns):
                text, role = turns[turn].get("text"), turns[turn].get("role")
            elif (cid, turn) in fallback_text:
                hit = next((h for h in store.hits(cid) if h["turn"] == turn and h["source"] == "model"), None)
                text, role = (hit["text"], "agent") if hit else (None, None)
            if not text or role is None:
                summary.no_text += 1
                continue
            usable = {k: v for k, v in labs.items() if TURN_LABELS.get(k) == role}
            if not usable:
                continue
            out.append(
                {"call_id": cid, "turn": turn, "role": role, "text": m(text), "labels": usable, "source": "review"}
            )
            summary.turns += 1
            summary.positives += sum(usable.values())
            summary.negatives += sum(1 for x in usable.values() if not x)
    return out, summary


def export_training(
    store: ReviewStore, output: str | Path | None, mask: bool = True, negatives: bool = False
) -> ExportSummary:
    """Write reviewed turns as JSON Lines (atomically) for `kefu train fit --extra`."""
    rows, summary = reviewed_turns(store, mask=mask, negatives=negatives)
    with JsonlWriter(output) as out:
        out.write_all(rows)
    log.info("exported %s", summary.describe())
    return summary
