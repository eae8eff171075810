"""Test doubles for quality-inspection tests: a keyword classifier implementing CallClassifier."""

from __future__ import annotations

from collections.abc import Sequence

from kefu.schemas import Transcript
from models.classifier_base import CallScores

RUDE = ("磨磨唧唧", "别墨迹", "烦人")
WARM = ("抱歉", "理解您", "别着急")
ANGRY = ("投诉", "12398", "曝光")


class FakeClassifier:
    """Keyword probabilities: agent taboo (RUDE), agent empathy (WARM), customer risk (ANGRY)."""

    name = "fake-keywords"

    def __init__(self) -> None:
        self.calls = 0

    def predict_turns(self, texts: Sequence[str], roles: Sequence[str]) -> list[dict[str, float]]:
        out = []
        for text, role in zip(texts, roles, strict=True):
            if role == "agent":
                out.append(
                    {
                        "taboo": 0.95 if any(w in text for w in RUDE) else 0.05,
                        "empathy": 0.9 if any(w in text for w in WARM) else 0.1,
                    }
                )
            else:
                out.append({"risk": 0.9 if any(w in text for w in ANGRY) else 0.1})
        return out

    def predict_calls(self, transcripts: Sequence[Transcript]) -> list[CallScores]:
        self.calls += 1
        out = []
        for t in transcripts:
            turns = self.predict_turns([x.text for x in t.turns], [x.role for x in t.turns])
            risk = max([p["risk"] for p in turns if "risk" in p], default=0.0)
            empathy = max([p["empathy"] for p in turns if "empathy" in p], default=0.0)
            out.append(CallScores(complaint_risk=risk, empathy=empathy, turns=turns))
        return out
