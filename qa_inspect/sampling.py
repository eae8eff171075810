"""Sampling for human review (质检抽样): a second, bounded-memory pass over a scored output file.

Policy (every part optional): every fatal call; every call with a needs-review item; every call
with complaint_risk at or above a threshold; the top N% of calls by complaint_risk; at least K
random calls per agent per period (stratified); a random baseline of p%. Randomness comes from a
hash of (seed, call_id, line), so a run is reproducible and independent of worker count.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from kefu.io import InputError, KefuError

log = logging.getLogger(__name__)

PERIODS = ("day", "week", "month", "all")
REASON_FATAL = "fatal"
REASON_RISK = "risk>={:g}"
REASON_TOP = "top{:g}%_risk"
REASON_QUOTA = "agent_quota"
REASON_BASELINE = "random_baseline"
REASON_ITEM = "item:{}"
# The tail every scored line ends with; rewriting it avoids re-serialising the whole line.
_TAIL = re.compile(r',"review":(?:true|false),"review_reason":\[[^\]]*\]\}\s*$')


class SamplingError(KefuError):
    """A sampling policy is invalid."""


@dataclass
class SamplingPolicy:
    """Which scored calls go to human review, and why. See the module docstring."""

    fatal: bool = True
    needs_review: bool = True
    risk_threshold: float | None = 0.8
    top_percent: float = 1.0
    per_agent: int = 1
    period: str = "week"
    baseline_percent: float = 1.0
    seed: int = 0
    agent_field: str = "agent_id"
    date_field: str = "date"
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.risk_threshold is not None and not 0.0 <= self.risk_threshold <= 1.0:
            raise SamplingError(f"risk_threshold must be between 0 and 1 (or null), got {self.risk_threshold}")
        if not 0.0 <= self.top_percent <= 100.0:
            raise SamplingError(f"top_percent must be between 0 and 100, got {self.top_percent}")
        if not 0.0 <= self.baseline_percent <= 100.0:
            raise SamplingError(f"baseline_percent must be between 0 and 100, got {self.baseline_percent}")
        if self.per_agent < 0:
            raise SamplingError(f"per_agent must be >= 0, got {self.per_agent}")
        if self.period not in PERIODS:
            raise SamplingError(f"period must be one of {', '.join(PERIODS)}, got {self.period!r}")
        if self.extra:
            raise SamplingError(f"unknown sampling option(s): {', '.join(sorted(self.extra))}")

    @classmethod
    def from_mapping(cls, raw: Any, source: str = "<policy>") -> SamplingPolicy:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise SamplingError(f"{source}: a sampling policy must be a mapping")
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in raw.items() if k in known}
        extra = {k: v for k, v in raw.items() if k not in known}
        try:
            return cls(**kwargs, extra=extra)
        except SamplingError as exc:
            raise SamplingError(f"{source}: {exc}") from None
        except TypeError as exc:
            raise SamplingError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: str | Path | None) -> SamplingPolicy:
        """The policy in a YAML file, or the defaults when `path` is None."""
        if path is None:
            return cls()
        p = Path(path)
        if not p.exists():
            raise InputError(f"{p}: no such sampling policy file")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise SamplingError(f"{p}: not valid YAML ({exc})") from None
        return cls.from_mapping(raw, str(p))

    def with_overrides(self, **overrides: Any) -> SamplingPolicy:
        data = {k: v for k, v in asdict(self).items() if k != "extra"}
        data.update({k: v for k, v in overrides.items() if v is not None})
        return SamplingPolicy(**data)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "extra"}


def uniform(seed: int, call_id: Any, index: int) -> float:
    """A reproducible number in [0, 1) for one call under one seed."""
    digest = hashlib.blake2b(f"{seed}\x1f{call_id}\x1f{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def period_key(value: Any, period: str) -> str:
    """The period a call's date falls in: 2026-07-14 → day 2026-07-14, week 2026-W29, month 2026-07."""
    if period == "all":
        return "all"
    text = str(value or "")[:10]
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        return "unknown"
    if period == "day":
        return day.isoformat()
    if period == "month":
        return day.strftime("%Y-%m")
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def immediate_reasons(obj: dict[str, Any], index: int, policy: SamplingPolicy) -> list[str]:
    """Reasons decidable from one line alone (no ranking): fatal, needs-review items, risk, baseline."""
    if "error" in obj:
        return []
    reasons = []
    if policy.fatal and obj.get("fatal"):
        reasons.append(REASON_FATAL)
    if policy.needs_review:
        reasons += [REASON_ITEM.format(i) for i in obj.get("needs_review") or []]
    risk = _risk(obj)
    if policy.risk_threshold is not None and risk >= policy.risk_threshold:
        reasons.append(REASON_RISK.format(policy.risk_threshold))
    if policy.baseline_percent > 0 and uniform(policy.seed, obj.get("call_id"), index) < policy.baseline_percent / 100:
        reasons.append(REASON_BASELINE)
    return reasons


def _risk(obj: dict[str, Any]) -> float:
    try:
        return float(obj.get("complaint_risk") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def set_review(line: str, obj: dict[str, Any], reasons: list[str]) -> str:
    """`line` with its review/review_reason replaced (they stay the last keys)."""
    if _TAIL.search(line):
        tail = (
            ',"review":'
            + ("true" if reasons else "false")
            + ',"review_reason":'
            + json.dumps(reasons, ensure_ascii=False, separators=(",", ":"))
            + "}"
        )
        return _TAIL.sub(lambda _m: tail, line.rstrip("\n"))
    obj = dict(obj)
    obj.pop("review", None)
    obj.pop("review_reason", None)
    obj["review"] = bool(reasons)
    obj["review_reason"] = reasons
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass
class SampleSummary:
    calls: int = 0
    errors: int = 0
    picked: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def describe(self) -> str:
        share = f" ({100 * self.picked / max(1, self.calls - self.errors):.1f}%)"
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items(), key=lambda kv: -kv[1]))
        return f"{self.picked} of {self.calls - self.errors} scored calls picked for review{share}" + (
            f": {parts}" if parts else ""
        )


def _lines(path: Path) -> Iterator[tuple[int, str, dict[str, Any]]]:
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"{path}:{number}: not a JSON line ({exc.msg}); is this a `kefu qa score` output?"
                ) from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{number}: expected a JSON object")
            yield number, line, obj


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            n += block.count(b"\n")
    return n + 1


def sample_file(
    path: str | Path, policy: SamplingPolicy, out: str | Path | None = None, quiet: bool = True
) -> SampleSummary:
    """Set review/review_reason on every line of a scored file; write `out` (default: `path`) atomically.

    Memory holds only the top-risk heap (N% of the calls) and K candidates per (agent, period).
    """
    from kefu.progress import progress
    from qa_inspect.engine.base import LineWriter

    src = Path(path)
    if not src.exists():
        raise InputError(f"{src}: no such file")
    capacity = math.ceil(_count_lines(src) * policy.top_percent / 100) if policy.top_percent > 0 else 0
    top: list[tuple[float, int, str, bool]] = []  # min-heap of (risk, -line, stratum, picked already)
    candidates: dict[str, list[tuple[float, int]]] = {}  # stratum → max-heap of (-u, line): K smallest u
    immediate: Counter[str] = Counter()
    summary = SampleSummary()
    for number, _line, obj in progress(_lines(src), desc="sample (1/2)", unit="call", quiet=quiet):
        summary.calls += 1
        if "error" in obj:
            summary.errors += 1
            continue
        stratum = _stratum(obj, policy)
        has_immediate = bool(immediate_reasons(obj, number, policy))
        if has_immediate and stratum is not None:
            immediate[stratum] += 1
        if capacity:
            item = (_risk(obj), -number, stratum or "", has_immediate)
            if len(top) < capacity:
                heapq.heappush(top, item)
            elif item > top[0]:
                heapq.heapreplace(top, item)
        if policy.per_agent and stratum is not None and not has_immediate:
            heap = candidates.setdefault(stratum, [])
            item2 = (-uniform(policy.seed + 1, obj.get("call_id"), number), number)
            if len(heap) < policy.per_agent:
                heapq.heappush(heap, item2)
            elif item2 > heap[0]:
                heapq.heapreplace(heap, item2)
    extra: dict[int, list[str]] = {}
    n_top = math.ceil((summary.calls - summary.errors) * policy.top_percent / 100) if policy.top_percent > 0 else 0
    top_in: Counter[str] = Counter()
    top_lines: set[int] = set()
    for risk, neg, stratum, already in sorted(top, reverse=True)[:n_top]:
        if risk <= 0:
            break
        extra.setdefault(-neg, []).append(REASON_TOP.format(policy.top_percent))
        top_lines.add(-neg)
        if stratum and not already:
            top_in[stratum] += 1
    for stratum, heap in candidates.items():
        # "at least K": calls of the stratum picked for any other reason count towards K.
        need = policy.per_agent - immediate[stratum] - top_in[stratum]
        for _, line in sorted(heap, reverse=True):
            if need <= 0:
                break
            if line in top_lines:
                continue
            extra.setdefault(line, []).append(REASON_QUOTA)
            need -= 1
    target = Path(out) if out else src
    with LineWriter(target, mode="atomic", flush_every=256) as writer:
        for number, line, obj in progress(_lines(src), desc="sample (2/2)", unit="call", quiet=quiet):
            reasons = immediate_reasons(obj, number, policy) + extra.get(number, [])
            if reasons:
                summary.picked += 1
                summary.reasons.update({r.split(":")[0] if r.startswith("item:") else r for r in reasons})
            writer.write_line(set_review(line, obj, reasons).rstrip("\n"))
    return summary


def _stratum(obj: dict[str, Any], policy: SamplingPolicy) -> str | None:
    agent = obj.get(policy.agent_field)
    if agent in (None, ""):
        return None
    return f"{agent}\x1f{period_key(obj.get(policy.date_field), policy.period)}"
