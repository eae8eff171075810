"""Scorecards: YAML items (dimension, rule, deduction, fatal, needs-review) validated with clear errors."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kefu.schemas import Transcript
from qa_inspect.lexicon import Resources, data_path, get_resources
from qa_inspect.rules import Context, Rule, RuleHit, ScorecardError, build_rule

log = logging.getLogger(__name__)

# The four 95598 listening dimensions (礼貌度, 同理心, 专业知识, 应答技巧) and SERVQUAL's five
# (有形性, 可靠性, 响应性, 保证性, 移情性); `empathy` is shared by both.
DIMENSIONS: dict[str, str] = {
    "courtesy": "礼貌度",
    "empathy": "同理心",
    "professional_knowledge": "专业知识",
    "answering_skill": "应答技巧",
    "tangibles": "有形性",
    "reliability": "可靠性",
    "responsiveness": "响应性",
    "assurance": "保证性",
}
TOP_KEYS = ("name", "version", "description", "fatal_score", "resources", "dimensions", "items")
ITEM_KEYS = (
    "id",
    "name",
    "dimension",
    "rule",
    "deduction",
    "per_hit",
    "max_deduction",
    "fatal",
    "needs_review",
    "description",
)
_ID = re.compile(r"^[a-z][a-z0-9_]*$")


def default_scorecard_path() -> Path:
    return data_path("scorecards/default.yaml")


@dataclass(frozen=True, slots=True)
class Dimension:
    key: str
    name: str
    points: float
    servqual: str | None = None


@dataclass(slots=True)
class Item:
    """One scorecard item: a rule and what a hit costs."""

    id: str
    name: str
    dimension: str
    rule: Rule
    deduction: float
    per_hit: bool = False
    max_deduction: float | None = None
    fatal: bool = False
    needs_review: bool = False
    description: str = ""
    raw_rule: dict[str, Any] = field(default_factory=dict)

    def cost(self, hits: list[RuleHit]) -> float:
        """Points deducted for these hits: once, or once per hit (turn) up to max_deduction."""
        if not hits:
            return 0.0
        if self.per_hit:
            units = len({(h.turn, h.span) for h in hits})
            cost = self.deduction * units
        else:
            cost = self.deduction
        return min(cost, self.max_deduction) if self.max_deduction is not None else cost


@dataclass(slots=True)
class ItemResult:
    item: Item
    hits: list[RuleHit]
    deduction: float


@dataclass
class Scorecard:
    """A validated scorecard; `evaluate` runs every item on one call."""

    name: str
    version: str
    dimensions: dict[str, Dimension]
    items: list[Item]
    resources: Resources
    fatal_score: float | None = 0.0
    description: str = ""
    path: str = ""

    @property
    def total_points(self) -> float:
        return sum(d.points for d in self.dimensions.values())

    def item(self, item_id: str) -> Item:
        for it in self.items:
            if it.id == item_id:
                return it
        raise KeyError(item_id)

    def evaluate(self, transcript: Transcript, ctx: Context) -> list[ItemResult]:
        results = []
        for item in self.items:
            hits = item.rule.check(transcript, ctx)
            for h in hits:
                h.rule = item.id
            results.append(ItemResult(item, hits, item.cost(hits)))
        return results


def _where(source: str, n: int | None = None, item_id: Any = None, key: str | None = None) -> str:
    out = source
    if n is not None:
        out += f": items[{n}]" + (f" ({item_id})" if isinstance(item_id, str) and item_id else "")
    if key:
        out += ("." if n is not None else ": ") + key
    return out


def _num(value: Any, where: str, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScorecardError(f"{where}: must be a number, got {value!r}")
    if value < low:
        raise ScorecardError(f"{where}: must be >= {low:g}, got {value}")
    return float(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ScorecardError(f"{where}: must be true or false, got {value!r}")
    return value


def parse_scorecard(raw: Any, source: str = "<scorecard>") -> Scorecard:
    """Validate a scorecard mapping; errors name the file, the item (index and id) and the field."""
    if not isinstance(raw, dict):
        raise ScorecardError(f"{source}: a scorecard must be a mapping with dimensions and items")
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise ScorecardError(f"{source}: unknown top-level key(s) {', '.join(unknown)}; allowed: {', '.join(TOP_KEYS)}")
    res_raw = raw.get("resources") or {}
    if not isinstance(res_raw, dict) or set(res_raw) - {"lexicon", "exceptions", "phrases"}:
        raise ScorecardError(f"{source}: resources must be a mapping with lexicon, exceptions and/or phrases paths")
    base = Path(source).parent if source and not source.startswith("<") else Path(".")

    def resolve(key: str) -> str | None:
        value = res_raw.get(key)
        return None if value is None else str(base / str(value))

    resources = get_resources(resolve("lexicon"), resolve("exceptions"), resolve("phrases"))

    dims_raw = raw.get("dimensions")
    if not isinstance(dims_raw, dict) or not dims_raw:
        raise ScorecardError(f"{source}: dimensions must be a non-empty mapping of dimension → {{points: …}}")
    dimensions: dict[str, Dimension] = {}
    for key, value in dims_raw.items():
        where = f"{source}: dimensions.{key}"
        if key not in DIMENSIONS:
            raise ScorecardError(f"{where}: unknown dimension; choose from {', '.join(DIMENSIONS)}")
        if not isinstance(value, dict):
            raise ScorecardError(f"{where}: must be a mapping with points (and optionally name, servqual)")
        extra = sorted(set(value) - {"points", "name", "servqual"})
        if extra:
            raise ScorecardError(f"{where}: unknown field(s) {', '.join(extra)}")
        points = _num(value.get("points"), f"{where}.points")
        if points <= 0:
            raise ScorecardError(f"{where}.points: must be > 0, got {points:g}")
        servqual = value.get("servqual")
        if servqual is not None and servqual not in (
            "tangibles",
            "reliability",
            "responsiveness",
            "assurance",
            "empathy",
        ):
            raise ScorecardError(f"{where}.servqual: must be one of SERVQUAL's five dimensions, got {servqual!r}")
        dimensions[key] = Dimension(key, str(value.get("name") or DIMENSIONS[key]), points, servqual)

    items_raw = raw.get("items")
    if not isinstance(items_raw, list) or not items_raw:
        raise ScorecardError(f"{source}: items must be a non-empty list")
    items: list[Item] = []
    seen: set[str] = set()
    for n, it in enumerate(items_raw):
        item_id = it.get("id") if isinstance(it, dict) else None
        if not isinstance(it, dict):
            raise ScorecardError(f"{_where(source, n)}: must be a mapping, got {type(it).__name__}")

        def at(key: str, n: int = n, item_id: Any = item_id) -> str:
            return _where(source, n, item_id, key)

        extra = sorted(set(it) - set(ITEM_KEYS))
        if extra:
            raise ScorecardError(
                f"{_where(source, n, item_id)}: unknown field(s) {', '.join(extra)}; allowed: {', '.join(ITEM_KEYS)}"
            )
        for key in ("id", "name", "dimension", "rule", "deduction"):
            if it.get(key) is None:
                raise ScorecardError(f"{at(key)}: is required")
        if not isinstance(item_id, str) or not _ID.match(item_id):
            raise ScorecardError(
                f"{at('id')}: must be lower-case letters, digits and _, starting with a letter; got {item_id!r}"
            )
        if item_id in seen:
            raise ScorecardError(f"{at('id')}: duplicate id {item_id!r}")
        seen.add(item_id)
        if not isinstance(it["name"], str) or not it["name"].strip():
            raise ScorecardError(f"{at('name')}: must be a non-empty string, got {it['name']!r}")
        dim = it["dimension"]
        if dim not in dimensions:
            raise ScorecardError(
                f"{at('dimension')}: {dim!r} is not one of the scorecard's dimensions ({', '.join(dimensions)})"
            )
        deduction = _num(it["deduction"], at("deduction"))
        max_deduction = _num(it["max_deduction"], at("max_deduction")) if it.get("max_deduction") is not None else None
        if max_deduction is not None and max_deduction < deduction:
            raise ScorecardError(f"{at('max_deduction')}: must be >= deduction ({deduction:g}), got {max_deduction:g}")
        if not isinstance(it["rule"], dict):
            raise ScorecardError(f"{at('rule')}: must be a mapping with a type (or all/any/not), got {it['rule']!r}")
        rule = build_rule(it["rule"], at("rule"), resources)
        items.append(
            Item(
                id=item_id,
                name=it["name"].strip(),
                dimension=dim,
                rule=rule,
                deduction=deduction,
                per_hit=_bool(it.get("per_hit", False), at("per_hit")),
                max_deduction=max_deduction,
                fatal=_bool(it.get("fatal", False), at("fatal")),
                needs_review=_bool(it.get("needs_review", False), at("needs_review")),
                description=str(it.get("description") or ""),
                raw_rule=it["rule"],
            )
        )
    fatal_score = raw.get("fatal_score", 0)
    if fatal_score is not None:
        fatal_score = _num(fatal_score, _where(source, key="fatal_score"))
        if fatal_score > 100:
            raise ScorecardError(f"{source}: fatal_score must be between 0 and 100 (or null), got {fatal_score:g}")
    return Scorecard(
        name=str(raw.get("name") or Path(source).stem),
        version=str(raw.get("version") or ""),
        dimensions=dimensions,
        items=items,
        resources=resources,
        fatal_score=fatal_score,
        description=str(raw.get("description") or ""),
        path=source,
    )


def load_scorecard(path: str | Path | None = None) -> Scorecard:
    """Load and validate a scorecard YAML file (the bundled default when `path` is None)."""
    p = Path(path) if path else default_scorecard_path()
    if not p.exists():
        raise ScorecardError(f"{p}: no such scorecard file")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ScorecardError(f"{p}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_scorecard(raw, str(p))
