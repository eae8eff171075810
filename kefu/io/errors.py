"""Errors raised and records yielded by the readers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kefu.schemas import Problem, Transcript

OnError = Literal["fail", "skip"]
ON_ERROR_CHOICES: tuple[str, ...] = ("fail", "skip")


class KefuError(Exception):
    """Base class of errors that the CLI reports as one clear message (exit code 2)."""


class InputError(KefuError):
    """A whole input cannot be read: missing file, unknown format, undecodable bytes."""


class RecordError(KefuError):
    """One record of an input is malformed and `--on-error fail` is in force."""

    def __init__(self, record: Record) -> None:
        super().__init__(record.describe())
        self.record = record


@dataclass(slots=True)
class Record:
    """One call read from an input: the transcript when valid, and every problem found.

    `line` is the 1-based line (row for Parquet) where the record starts in `source`.
    """

    source: str
    line: int
    transcript: Transcript | None
    problems: list[Problem] = field(default_factory=list)
    call_id: str | None = None
    unit: str = "line"

    @property
    def ok(self) -> bool:
        return self.transcript is not None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.unit == "line" else f"{self.source}:{self.unit} {self.line}"

    def describe(self, severity: str = "error") -> str:
        """A one-line report: file, line, call id and what is wrong."""
        chosen = self.errors if severity == "error" else self.warnings
        who = f" (call {self.call_id})" if self.call_id else ""
        return f"{self.where()}{who}: " + "; ".join(str(p) for p in chosen)
