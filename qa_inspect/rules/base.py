"""Rule protocol, hits with evidence, the per-call context, spec validation and the rule registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kefu.io import KefuError
from kefu.schemas import Transcript, Turn
from kefu.text import normalize, normalize_with_map
from models.classifier_base import CallScores
from qa_inspect.lexicon import Resources, TabooMatch

ROLES = ("agent", "customer", "any")
# Where a hit's evidence comes from.
SOURCES = ("lexicon", "regex", "model", "timing", "structure")


class ScorecardError(KefuError):
    """A scorecard (or one rule spec in it) is invalid; the message names the item and field."""


@dataclass(slots=True)
class RuleHit:
    """One piece of evidence that a rule fired: which turn, which text span, from which source.

    `turn` is None for call-level hits (e.g. a missing closing, a call-level model score).
    `span` indexes the original turn text, end exclusive.
    """

    type: str
    source: str
    turn: int | None = None
    span: tuple[int, int] | None = None
    text: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    rule: str = ""  # the scorecard item id, filled in by the scorecard

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "type": self.type, "source": self.source}
        if self.turn is not None:
            out["turn"] = self.turn
        if self.span is not None:
            out["span"] = list(self.span)
        if self.text:
            out["text"] = self.text
        out.update(self.detail)
        return out


class Context:
    """Per-call state shared by all rules: normalised turns and lexicon hits computed once each.

    `scores` holds the classifier's output for the call, or None when no classifier is loaded
    (model rules are then skipped). Rules that cannot run record their type in `skipped`.
    """

    def __init__(self, transcript: Transcript, resources: Resources, scores: CallScores | None = None) -> None:
        self.transcript = transcript
        self.resources = resources
        self.scores = scores
        self.skipped: set[str] = set()
        self._norm: dict[int, tuple[str, list[int]]] = {}
        self._text: dict[int, str] = {}
        self._taboo: dict[int, list[TabooMatch]] = {}
        self._roles: dict[str, list[int]] = {}
        self.cache: dict[Any, Any] = {}  # for rules that want to memoise per call

    @property
    def turns(self) -> list[Turn]:
        return self.transcript.turns

    def role_indices(self, role: str) -> list[int]:
        """Indices of the turns of `role` ("any": all turns), computed once per call."""
        got = self._roles.get(role)
        if got is None:
            got = self._roles[role] = [i for i, t in enumerate(self.turns) if role == "any" or t.role == role]
        return got

    def text(self, i: int) -> str:
        """Normalised text of turn i (see kefu.text.normalize_with_map), computed once."""
        got = self._text.get(i)
        if got is None:
            got = self._text[i] = normalize(self.turns[i].text)
        return got

    def norm(self, i: int) -> tuple[str, list[int]]:
        """Normalised text of turn i and the map back to the original characters.

        Building the map costs as much as normalising, so rules search `text(i)` and ask for the
        map only when they found something.
        """
        got = self._norm.get(i)
        if got is None:
            got = self._norm[i] = normalize_with_map(self.turns[i].text)
        return got

    def mapping(self, i: int) -> list[int]:
        return self.norm(i)[1]

    def taboo(self, i: int) -> list[TabooMatch]:
        """Bundled taboo-lexicon hits in turn i (cancelled ones flagged), whatever its role."""
        got = self._taboo.get(i)
        if got is None:
            got = self._taboo[i] = self.resources.taboo.match_normalized(
                self.turns[i].text, self.text(i), lambda: self.mapping(i)
            )
        return got


class Rule(Protocol):
    """A detector: returns the hits (evidence) it finds in one call, an empty list when it does not fire."""

    type: str

    def check(self, transcript: Transcript, ctx: Context) -> list[RuleHit]: ...


class Spec:
    """Typed access to one rule's YAML mapping; every error names where it is (`where.field`)."""

    def __init__(self, raw: Any, where: str, allowed: Sequence[str]) -> None:
        if not isinstance(raw, dict):
            raise ScorecardError(f"{where}: a rule must be a mapping, got {type(raw).__name__}")
        self.raw = raw
        self.where = where
        unknown = sorted(str(k) for k in set(raw) - set(allowed) - {"type"})
        if unknown:
            raise ScorecardError(
                f"{where}: unknown field(s) {', '.join(unknown)} for rule type {raw.get('type')!r}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )

    def at(self, key: str) -> str:
        return f"{self.where}.{key}"

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def has(self, key: str) -> bool:
        return key in self.raw

    def string(self, key: str, default: str | None = None, choices: Sequence[str] | None = None) -> str:
        value = self.raw.get(key, default)
        if value is None:
            raise ScorecardError(f"{self.at(key)}: is required")
        if not isinstance(value, str) or not value:
            raise ScorecardError(f"{self.at(key)}: must be a non-empty string, got {value!r}")
        if choices is not None and value not in choices:
            raise ScorecardError(f"{self.at(key)}: must be one of {', '.join(choices)}, got {value!r}")
        return value

    def number(
        self, key: str, default: float | None = None, low: float | None = None, high: float | None = None
    ) -> float:
        value = self.raw.get(key, default)
        if value is None:
            raise ScorecardError(f"{self.at(key)}: is required")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScorecardError(f"{self.at(key)}: must be a number, got {value!r}")
        if low is not None and value < low:
            raise ScorecardError(f"{self.at(key)}: must be >= {low}, got {value}")
        if high is not None and value > high:
            raise ScorecardError(f"{self.at(key)}: must be <= {high}, got {value}")
        return float(value)

    def integer(self, key: str, default: int | None = None, low: int | None = None) -> int:
        value = self.raw.get(key, default)
        if value is None:
            raise ScorecardError(f"{self.at(key)}: is required")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScorecardError(f"{self.at(key)}: must be a whole number, got {value!r}")
        if low is not None and value < low:
            raise ScorecardError(f"{self.at(key)}: must be >= {low}, got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise ScorecardError(f"{self.at(key)}: must be true or false, got {value!r}")
        return value

    def strings(self, key: str, default: Sequence[str] | None = None) -> list[str]:
        value = self.raw.get(key, default)
        if value is None:
            raise ScorecardError(f"{self.at(key)}: is required")
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ScorecardError(f"{self.at(key)}: must be a list of non-empty strings, got {value!r}")
        return list(value)


@dataclass(frozen=True, slots=True)
class Scope:
    """Which turns a leaf rule looks at: a role, then optionally only the first or last N of them."""

    role: str = "any"
    first: int | None = None
    last: int | None = None

    SPEC_KEYS = ("role", "first", "last")

    @classmethod
    def from_spec(cls, spec: Spec, default_role: str = "any") -> Scope:
        role = spec.string("role", default_role, ROLES)
        first = spec.integer("first", None, 1) if spec.has("first") else None
        last = spec.integer("last", None, 1) if spec.has("last") else None
        if first is not None and last is not None:
            raise ScorecardError(f"{spec.where}: give first or last, not both")
        return cls(role, first, last)

    def indices(self, turns: Sequence[Turn], ctx: Context | None = None) -> list[int]:
        if ctx is not None:
            chosen = ctx.role_indices(self.role)
        else:
            chosen = [i for i, t in enumerate(turns) if self.role == "any" or t.role == self.role]
        if self.first is not None:
            return chosen[: self.first]
        if self.last is not None:
            return chosen[-self.last :]
        return chosen

    def describe(self) -> str:
        who = "any turn" if self.role == "any" else f"{self.role} turns"
        if self.first is not None:
            return f"the first {self.first} {who}"
        if self.last is not None:
            return f"the last {self.last} {who}"
        return f"all {who}"


RuleFactory = Callable[[Spec, Resources], Rule]
REGISTRY: dict[str, tuple[RuleFactory, tuple[str, ...], str]] = {}


def register(name: str, fields: Sequence[str], summary: str) -> Callable[[RuleFactory], RuleFactory]:
    """Register a rule factory for `type: name`, with the YAML fields it accepts and a one-line summary."""

    def deco(factory: RuleFactory) -> RuleFactory:
        REGISTRY[name] = (factory, tuple(fields), summary)
        return factory

    return deco


COMPOSITION_KEYS = ("all", "any", "not")


def build_rule(raw: Any, where: str, resources: Resources) -> Rule:
    """Build a rule from its YAML mapping: `{type: …, …}` or a composition `{all|any|not: …}`."""
    if isinstance(raw, dict) and "type" not in raw and len(raw) == 1 and next(iter(raw)) in COMPOSITION_KEYS:
        key = next(iter(raw))
        raw = {"type": key, "rules": raw[key]}
    if raw is None:
        raise ScorecardError(f"{where}: is required (a rule mapping with a type)")
    if not isinstance(raw, dict):
        raise ScorecardError(f"{where}: a rule must be a mapping with a type, got {type(raw).__name__}")
    kind = raw.get("type")
    if kind not in REGISTRY:
        raise ScorecardError(f"{where}.type: unknown rule type {kind!r}; known types: {', '.join(sorted(REGISTRY))}")
    factory, fields, _ = REGISTRY[kind]
    return factory(Spec(raw, where, fields), resources)
