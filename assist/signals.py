"""Per-turn signals without a model: taboo lexicon, standard opening, complaint-risk phrases, script reuse."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol

from kefu.text import normalize

log = logging.getLogger(__name__)

# How much one customer phrase of each complaint_trigger sub-kind (phrases.csv `note`) says about
# escalation. Outside escalation (regulator, city hotline, media, threats) is what the centre fears
# most, so one such phrase alone crosses the default alert threshold (0.6).
TRIGGER_WEIGHTS: dict[str, float] = {
    "regulator_12398": 0.85,
    "city_12345": 0.8,
    "media": 0.8,
    "threat": 0.8,
    "explicit_complaint": 0.65,
    "repeat_contact": 0.45,
    "anger": 0.45,
    "bitterness": 0.35,
}
DEFAULT_TRIGGER_WEIGHT = 0.4
_SENTENCE_END = re.compile(r"[。！？!?；;\n]")


@dataclass(slots=True)
class TabooFinding:
    """One taboo found in an agent turn: the words, where, how bad, and which detector saw it."""

    text: str
    source: str  # "lexicon" or "model"
    category: str = ""
    severity: int = 2
    phrase_id: str = ""
    span: tuple[int, int] | None = None
    probability: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "source": self.source, "severity": self.severity}
        if self.category:
            out["category"] = self.category
        if self.phrase_id:
            out["phrase_id"] = self.phrase_id
        if self.span is not None:
            out["span"] = list(self.span)
        if self.probability is not None:
            out["probability"] = round(self.probability, 4)
        return out


@dataclass(slots=True)
class RiskSignal:
    """Complaint-risk evidence of one customer turn: a 0–1 probability and the phrases behind it."""

    risk: float
    triggers: list[dict[str, str]] = field(default_factory=list)  # {"phrase", "kind"}

    @property
    def kinds(self) -> list[str]:
        return list(dict.fromkeys(t["kind"] for t in self.triggers))


class TabooChecker(Protocol):
    """Finds service taboos (服务忌语) in an agent turn."""

    def check(self, text: str) -> list[TabooFinding]: ...


class RiskScorer(Protocol):
    """Scores the complaint risk of one customer turn."""

    def score(self, text: str) -> RiskSignal: ...


class OpeningChecker(Protocol):
    """Says whether an agent turn contains the standard opening."""

    def has_opening(self, text: str) -> bool: ...


class LexiconTaboo:
    """The QA taboo lexicon (Aho-Corasick with polite-use exceptions) from qa_inspect."""

    def __init__(self, resources_: Any | None = None) -> None:
        if resources_ is None:
            from qa_inspect.lexicon import get_resources

            resources_ = get_resources()
        self.matcher = resources_.taboo

    def check(self, text: str) -> list[TabooFinding]:
        return [
            TabooFinding(
                text=m.text,
                source="lexicon",
                category=m.entry.category,
                severity=m.entry.severity,
                phrase_id=m.entry.id,
                span=(m.start, m.end),
            )
            for m in self.matcher.match(text)
            if m.active
        ]


class PhraseRisk:
    """Complaint risk from the complaint_trigger phrases, cancelled by de-escalation in the same sentence.

    Turn risk = 1 − Π(1 − weight) over the distinct trigger sub-kinds found.
    """

    def __init__(self, resources_: Any | None = None, weights: dict[str, float] | None = None) -> None:
        if resources_ is None:
            from qa_inspect.lexicon import get_resources

            resources_ = get_resources()
        from qa_inspect.lexicon import PhraseIndex

        self.weights = dict(TRIGGER_WEIGHTS if weights is None else weights)
        for kind, w in self.weights.items():
            if not 0.0 <= w < 1.0:
                raise ValueError(f"trigger weight for {kind} must be in [0, 1), got {w}")
        self.triggers = PhraseIndex((p.phrase, p) for p in resources_.phrase_list("complaint_trigger"))
        self.negations = PhraseIndex((p.phrase, p) for p in resources_.phrase_list("de_escalation_negation"))

    def score(self, text: str) -> RiskSignal:
        triggers: list[dict[str, str]] = []
        for sentence in _SENTENCE_END.split(text):
            norm = normalize(sentence)
            found = self.triggers.find(norm)
            if not found or self.negations.find(norm):
                continue
            for _s, _e, _key, payloads in found:
                for p in payloads:
                    triggers.append({"phrase": p.phrase, "kind": p.note})
        keep = 1.0
        for kind in dict.fromkeys(t["kind"] for t in triggers):
            keep *= 1.0 - self.weights.get(kind, DEFAULT_TRIGGER_WEIGHT)
        return RiskSignal(risk=1.0 - keep, triggers=triggers)


class PhraseOpening:
    """Standard opening fragments (phrases.csv kind `opening`) found by substring after normalisation."""

    def __init__(self, resources_: Any | None = None) -> None:
        if resources_ is None:
            from qa_inspect.lexicon import get_resources

            resources_ = get_resources()
        from qa_inspect.lexicon import PhraseIndex

        self.index = PhraseIndex((p.phrase, p) for p in resources_.phrase_list("opening"))

    def has_opening(self, text: str) -> bool:
        return bool(self.index.find(normalize(text)))


@lru_cache(maxsize=1)
def smalltalk() -> tuple[str, ...]:
    """Normalised customer small talk (好的, 谢谢, 喂 …) that is never a knowledge gap, longest first."""
    text = (resources.files("assist") / "data" / "smalltalk.txt").read_text(encoding="utf-8")
    words = {normalize(w) for w in text.splitlines() if w.strip() and not w.startswith("#")}
    return tuple(sorted((w for w in words if w), key=len, reverse=True))


def content_chars(text: str) -> int:
    """Normalised characters of a customer turn once small talk is taken out."""
    rest = normalize(text)
    for word in smalltalk():
        if word in rest:
            rest = rest.replace(word, "")
    return len(rest)


def is_substantive(text: str, min_chars: int = 4) -> bool:
    """True when a customer turn says more than small talk (if unanswered, it is a knowledge gap)."""
    return content_chars(text) >= min_chars


@lru_cache(maxsize=1)
def risk_queries() -> dict[str, str]:
    """Per complaint-trigger sub-kind, a customer sentence that finds the matching sensitive-scenario script."""
    out: dict[str, str] = {}
    path = resources.files("assist") / "data" / "risk_queries.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            out[row["kind"].strip()] = row["query"].strip()
    return out


def bigrams(text: str) -> frozenset[str]:
    """Character bigrams of the normalised text (how much an agent turn reuses a script)."""
    norm = normalize(text)
    return frozenset(norm[i : i + 2] for i in range(len(norm) - 1))


def reuse(agent: frozenset[str], script: frozenset[str]) -> float:
    """Share of the agent turn's bigrams that come from the script (0–1)."""
    if not agent:
        return 0.0
    return len(agent & script) / len(agent)


def combine_risk(values: Sequence[float]) -> float:
    """Noisy-or of independent risk estimates."""
    keep = 1.0
    for v in values:
        keep *= 1.0 - min(max(v, 0.0), 1.0)
    return 1.0 - keep
