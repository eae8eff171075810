"""The call-classifier interface shared by training, quality inspection and assist."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kefu.schemas import Transcript

# Which turn-level labels apply to which speaker.
AGENT_LABELS: tuple[str, ...] = ("taboo", "empathy")
CUSTOMER_LABELS: tuple[str, ...] = ("risk",)
TURN_LABELS: dict[str, tuple[str, ...]] = {"agent": AGENT_LABELS, "customer": CUSTOMER_LABELS}


@dataclass(slots=True)
class CallScores:
    """Call-level calibrated probabilities plus the per-turn ones they were built from."""

    complaint_risk: float  # 0–1: this customer will complain or escalate
    empathy: float  # 0–1, higher is better: the agent acknowledged the customer's feelings where needed
    turns: list[dict[str, float]] = field(default_factory=list)  # per turn: {"taboo": p, "empathy": p} or {"risk": p}

    def to_dict(self) -> dict[str, Any]:
        return {"complaint_risk": self.complaint_risk, "empathy": self.empathy, "turns": self.turns}


class CallClassifier(Protocol):
    """A trained classifier: turn probabilities for agent/customer labels and call-level aggregates."""

    name: str

    def predict_turns(self, texts: Sequence[str], roles: Sequence[str]) -> list[dict[str, float]]:
        """Per turn, the probabilities of the labels that apply to its role (see TURN_LABELS)."""
        ...

    def predict_calls(self, transcripts: Sequence[Transcript]) -> list[CallScores]:
        """Per call, complaint_risk and empathy (0–1) with the per-turn probabilities."""
        ...
