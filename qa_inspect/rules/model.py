"""Model rules: thresholds on the classifier's turn or call probabilities (skipped without a classifier)."""

from __future__ import annotations

from kefu.schemas import Transcript
from models.classifier_base import TURN_LABELS
from qa_inspect.lexicon import Resources
from qa_inspect.rules.base import Context, RuleHit, ScorecardError, Spec, register

CALL_LABELS = ("complaint_risk", "empathy")
OPS = (">=", "<=", ">", "<")


def _compare(value: float, op: str, threshold: float) -> bool:
    return {
        ">=": value >= threshold,
        "<=": value <= threshold,
        ">": value > threshold,
        "<": value < threshold,
    }[op]


class ModelRule:
    """Fires where the classifier's probability for `label` passes `op threshold`.

    Turn level (taboo, empathy on agent turns; risk on customer turns): one hit per turn.
    Call level (complaint_risk, empathy): one call-level hit. With `unlisted_only`, turns where the
    taboo lexicon already has a hit are left out (the model's value is the wording the list misses).
    """

    type = "model"

    def __init__(self, label: str, level: str, op: str, threshold: float, unlisted_only: bool = False) -> None:
        self.label = label
        self.level = level
        self.op = op
        self.threshold = threshold
        self.unlisted_only = unlisted_only

    def check(self, transcript: Transcript, ctx: Context) -> list[RuleHit]:
        scores = ctx.scores
        if scores is None:
            ctx.skipped.add(self.type)
            return []
        detail = {"label": self.label, "threshold": self.threshold, "op": self.op}
        if self.level == "call":
            value = float(getattr(scores, self.label))
            if _compare(value, self.op, self.threshold):
                return [RuleHit(self.type, "model", None, None, "", {**detail, "prob": round(value, 4)})]
            return []
        hits = []
        for i, probs in enumerate(scores.turns[: len(transcript.turns)]):
            value = probs.get(self.label)
            if self.unlisted_only and any(m.active for m in ctx.taboo(i)):
                continue  # the lexicon already reports this turn
            if value is not None and _compare(float(value), self.op, self.threshold):
                text = transcript.turns[i].text
                hits.append(
                    RuleHit(self.type, "model", i, (0, len(text)), text, {**detail, "prob": round(float(value), 4)})
                )
        return hits

    def describe(self) -> str:
        unlisted = " in turns without a lexicon hit" if self.unlisted_only else ""
        return f"classifier {self.level}-level {self.label} {self.op} {self.threshold:g}{unlisted}"


@register(
    "model",
    ("label", "level", "op", "threshold", "unlisted_only"),
    "a classifier probability above/below a threshold",
)
def _model(spec: Spec, resources: Resources) -> ModelRule:
    turn_labels = sorted({lab for labs in TURN_LABELS.values() for lab in labs})
    label = spec.string("label", None, sorted({*CALL_LABELS, *turn_labels}))
    default_level = "call" if label in CALL_LABELS else "turn"
    level = spec.string("level", default_level, ("call", "turn"))
    if level == "call" and label not in CALL_LABELS:
        raise ScorecardError(
            f"{spec.at('level')}: {label} is a turn label; call-level labels: {', '.join(CALL_LABELS)}"
        )
    if level == "turn" and label not in turn_labels:
        raise ScorecardError(f"{spec.at('level')}: {label} is a call label; turn labels: {', '.join(turn_labels)}")
    op = spec.string("op", ">=", OPS)
    unlisted_only = spec.boolean("unlisted_only", False)
    if unlisted_only and level != "turn":
        raise ScorecardError(f"{spec.at('unlisted_only')}: only applies to turn-level labels")
    return ModelRule(label, level, op, spec.number("threshold", None, 0.0, 1.0), unlisted_only)
