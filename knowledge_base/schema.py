"""Knowledge-base records and search results shared by the store, the index and assist."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Status = Literal["draft", "approved", "retired"]
STATUSES: tuple[str, ...] = ("draft", "approved", "retired")
REQUIRED_FIELDS: tuple[str, ...] = ("id", "scenario", "questions", "script")


@dataclass(slots=True)
class Script:
    """One scenario script (场景话术): the customer questions it answers and the agent's standard reply."""

    id: str
    scenario: str
    questions: list[str]
    script: str
    category: str = ""
    keywords: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    status: Status = "approved"
    version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)  # work_order, time_limits, … passed through

    def content(self) -> dict[str, Any]:
        """The user-editable fields (what import compares to decide whether a row changed)."""
        return {"id": self.id, "scenario": self.scenario, "category": self.category,
                "questions": list(self.questions), "script": self.script, "keywords": list(self.keywords),
                "tags": list(self.tags), **self.extra}


@dataclass(slots=True)
class Hit:
    """One suggested script for a query: per script, with its best-matching question and evidence."""

    id: str
    scenario: str
    script: str
    score: float  # calibrated 0–1: estimated probability that this script answers the query
    category: str = ""
    tags: list[str] = field(default_factory=list)
    matched: str = ""  # the question (or script text) that matched best
    matched_terms: list[str] = field(default_factory=list)
    dense: float = 0.0  # raw cosine of the best question
    sparse: float = 0.0  # raw BM25 of the best question

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "scenario": self.scenario, "script": self.script, "score": round(self.score, 4),
                "category": self.category, "tags": self.tags, "matched": self.matched,
                "matched_terms": self.matched_terms}


class Retriever(Protocol):
    """Anything that finds scripts for a customer text."""

    def search(self, text: str, k: int = 5) -> list[Hit]: ...
