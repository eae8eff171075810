"""Shared schemas: call transcripts, their turns, and validation of raw records."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

Role = Literal["agent", "customer"]

# Role spellings seen in exports from Chinese call-centre systems, mapped to the canonical role.
ROLE_ALIASES: dict[str, Role] = {
    "agent": "agent",
    "坐席": "agent",
    "客服": "agent",
    "座席": "agent",
    "helpdesk": "agent",
    "customer": "customer",
    "客户": "customer",
    "用户": "customer",
    "caller": "customer",
}

TURN_KEYS = ("role", "text", "start", "end")


def normalize_role(value: Any) -> Role | None:
    """Return the canonical role for `value`, or None when it is not a known role."""
    if not isinstance(value, str):
        return None
    return ROLE_ALIASES.get(value.strip().lower()) or ROLE_ALIASES.get(value.strip())


@dataclass(slots=True)
class Turn:
    """One utterance of a call or chat."""

    role: Role
    text: str
    start: float | None = None
    end: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "text": self.text}
        if self.start is not None:
            out["start"] = self.start
        if self.end is not None:
            out["end"] = self.end
        out.update(self.extra)
        return out


@dataclass(slots=True)
class Transcript:
    """One call or chat: its id, its turns, and every other input key kept for pass-through."""

    call_id: str
    turns: list[Turn]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def agent_id(self) -> str | None:
        value = self.extra.get("agent_id")
        return None if value is None else str(value)

    @property
    def has_timestamps(self) -> bool:
        return bool(self.turns) and all(t.start is not None and t.end is not None for t in self.turns)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"call_id": self.call_id}
        out.update(self.extra)
        out["turns"] = [t.to_dict() for t in self.turns]
        return out

    def passthrough(self) -> dict[str, Any]:
        """Every input key except `turns`: what bulk outputs copy from the input."""
        out: dict[str, Any] = {"call_id": self.call_id}
        out.update(self.extra)
        return out


@dataclass(slots=True)
class Problem:
    """One thing wrong (or suspicious) with a record, with the path of the offending field."""

    message: str
    path: str = ""
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def _as_seconds(value: Any, path: str, problems: list[Problem]) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        problems.append(Problem(f"must be a number of seconds, got {value!r}", path))
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        problems.append(Problem(f"must be a number of seconds, got {value!r}", path))
        return None
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        problems.append(Problem(f"must be a finite number >= 0, got {value!r}", path))
        return None
    return seconds


def parse_turn(raw: Any, index: int, problems: list[Problem]) -> Turn | None:
    """Build a Turn from a raw mapping, appending every problem found to `problems`."""
    path = f"turns[{index}]"
    if not isinstance(raw, dict):
        problems.append(Problem(f"must be an object with role and text, got {type(raw).__name__}", path))
        return None
    before = len(problems)
    role_raw = raw.get("role")
    role = normalize_role(role_raw)
    if role_raw is None:
        problems.append(Problem("is required", f"{path}.role"))
    elif role is None:
        problems.append(
            Problem(f"must be agent or customer (or 坐席/客服/客户/用户), got {role_raw!r}", f"{path}.role")
        )
    text = raw.get("text")
    if text is None:
        problems.append(Problem("is required", f"{path}.text"))
    elif not isinstance(text, str):
        problems.append(Problem(f"must be a string, got {type(text).__name__}", f"{path}.text"))
    start = _as_seconds(raw.get("start"), f"{path}.start", problems)
    end = _as_seconds(raw.get("end"), f"{path}.end", problems)
    if start is not None and end is not None and end < start:
        problems.append(Problem(f"end {end} is before start {start}", path))
    if len(problems) > before or role is None or not isinstance(text, str):
        return None
    extra = {k: v for k, v in raw.items() if k not in TURN_KEYS}
    return Turn(role=role, text=text, start=start, end=end, extra=extra)


def parse_transcript(raw: Any) -> tuple[Transcript | None, list[Problem]]:
    """Validate a raw record; return the transcript (None when it has errors) and all problems."""
    problems: list[Problem] = []
    if not isinstance(raw, dict):
        return None, [Problem(f"a transcript must be a JSON object, got {type(raw).__name__}")]
    call_id = raw.get("call_id")
    if call_id is None or (isinstance(call_id, str) and not call_id.strip()):
        problems.append(Problem("is required and must not be empty", "call_id"))
    elif not isinstance(call_id, (str, int)) or isinstance(call_id, bool):
        problems.append(Problem(f"must be a string, got {type(call_id).__name__}", "call_id"))
    turns_raw = raw.get("turns")
    turns: list[Turn] = []
    if turns_raw is None:
        problems.append(Problem("is required", "turns"))
    elif not isinstance(turns_raw, list):
        problems.append(Problem(f"must be a list of turns, got {type(turns_raw).__name__}", "turns"))
    elif not turns_raw:
        problems.append(Problem("is empty: a call needs at least one turn", "turns"))
    else:
        for i, item in enumerate(turns_raw):
            turn = parse_turn(item, i, problems)
            if turn is not None:
                turns.append(turn)
    if any(p.severity == "error" for p in problems):
        return None, problems
    problems.extend(check_transcript(turns))
    extra = {k: v for k, v in raw.items() if k not in ("call_id", "turns")}
    return Transcript(call_id=str(call_id), turns=turns, extra=extra), problems


def check_transcript(turns: list[Turn]) -> list[Problem]:
    """Warnings on a structurally valid call: empty text, timestamps out of order, one-sided calls."""
    warnings: list[Problem] = []
    for i, turn in enumerate(turns):
        if not turn.text.strip():
            warnings.append(Problem("text is empty", f"turns[{i}].text", "warning"))
    stamped = [(i, t) for i, t in enumerate(turns) if t.start is not None]
    if stamped and len(stamped) != len(turns):
        warnings.append(Problem(f"only {len(stamped)} of {len(turns)} turns have a start time", "turns", "warning"))
    for (_, a), (j, b) in pairwise(stamped):
        if b.start is not None and a.start is not None and b.start < a.start:
            message = f"starts at {b.start}, before the previous turn ({a.start})"
            warnings.append(Problem(message, f"turns[{j}]", "warning"))
    if turns and {t.role for t in turns} != {"agent", "customer"}:
        only = turns[0].role
        warnings.append(Problem(f"every turn is {only}: the call has one side only", "turns", "warning"))
    return warnings
