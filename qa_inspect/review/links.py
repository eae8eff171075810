"""Links from QA hits to the knowledge-base script that shows the right answer, and knowledge gaps."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kefu.io import KefuError
from knowledge_base.schema import Hit, Retriever
from qa_inspect.review.store import ReviewStore

log = logging.getLogger(__name__)

LINK_KINDS = ("taboo", "missing")
# A customer text whose best script scores below this is a knowledge gap (no script answers it).
GAP_SCORE = 0.35


def open_retriever(kb_dir: str | Path) -> Retriever:
    """The search over the knowledge base in `kb_dir`, with a clear error when it is missing."""
    path = Path(kb_dir)
    if not path.is_dir():
        raise KefuError(f"--kb {path}: no knowledge base there; create it with `kefu kb import FILE --kb {path}`")
    try:
        module = importlib.import_module("knowledge_base.index.manager")
    except ImportError as exc:
        raise KefuError(
            f"linking hits to scripts needs the knowledge-base index (knowledge_base.index.manager): {exc}"
        ) from None
    try:
        return module.IndexManager(path).retriever()
    except KefuError:
        raise
    except Exception as exc:
        raise KefuError(f"--kb {path}: cannot open the search index ({type(exc).__name__}: {exc}); "
                        f"rebuild it with `kefu kb import FILE --kb {path}`") from None  # fmt: skip


def query_for_hit(hit: dict[str, Any], turns: list[dict[str, Any]] | None) -> str:
    """The customer text a script should answer for this hit.

    A taboo or a missing response is about the customer's need at that moment: the customer turn
    at or before the hit's turn. A call-level hit (no turn) uses the first customer turns.
    """
    detail = hit.get("detail") or {}
    if turns:
        turn = hit.get("turn")
        if turn is not None and 0 <= turn < len(turns):
            for i in range(turn, -1, -1):
                if turns[i].get("role") == "customer" and turns[i].get("text", "").strip():
                    return str(turns[i]["text"])
        customer = [str(t.get("text", "")) for t in turns if t.get("role") == "customer"]
        if customer:
            return " ".join(customer[:2])
    return str(detail.get("anchor") or hit.get("text") or "")


@dataclass
class LinkSummary:
    hits: int = 0
    linked: int = 0
    no_query: int = 0
    gaps: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"linked {self.linked} of {self.hits} taboo / missing-script hits to scripts"
            + (f" ({self.no_query} without customer text)" if self.no_query else "")
            + f"; {len(self.gaps)} customer texts with no script (knowledge gaps)"
        )


def link_hits(
    store: ReviewStore,
    retriever: Retriever,
    k: int = 3,
    call_id: str | None = None,
    gap_score: float = GAP_SCORE,
) -> LinkSummary:
    """Search the KB for every taboo and missing-script hit and store the top-k scripts on the hit.

    Customer turns of the searched calls whose best script scores below `gap_score` are returned
    as knowledge gaps ({"text", "call_id", "turn", "best_score", "best_id"}, unmasked).
    """
    if k < 1:
        raise KefuError(f"-k must be >= 1, got {k}")
    if not 0.0 <= gap_score <= 1.0:
        raise KefuError(f"--gap-score must be between 0 and 1, got {gap_score}")
    summary = LinkSummary()
    ids = [call_id] if call_id is not None else list(store.call_ids())
    cache: dict[str, list[Hit]] = {}

    def search(text: str) -> list[Hit]:
        if text not in cache:
            cache[text] = list(retriever.search(text, k))
        return cache[text]

    for cid in ids:
        turns = store.turns(cid)
        for hit in store.hits(cid):
            if hit["kind"] not in LINK_KINDS:
                continue
            summary.hits += 1
            query = query_for_hit(hit, turns)
            if not query.strip():
                summary.no_query += 1
                continue
            found = search(query)
            store.save_links(hit["hit_id"], [h.to_dict() for h in found[:k]], query)
            summary.linked += bool(found)
        for i, t in enumerate(turns or []):
            text = str(t.get("text") or "")
            if t.get("role") != "customer" or len(text.strip()) < 4:
                continue
            found = search(text)
            best = found[0] if found else None
            if best is None or best.score < gap_score:
                summary.gaps.append(
                    {
                        "text": text,
                        "call_id": cid,
                        "turn": i,
                        "best_score": None if best is None else round(best.score, 4),
                        "best_id": None if best is None else best.id,
                        "source": "qa_review",
                    }
                )
    return summary
