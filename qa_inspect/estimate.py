"""Rules-based estimates of complaint risk and empathy, used when no trained classifier is loaded.

complaint_risk = 1 − (1 − prior) · Π (1 − w) over the strongest evidence of each kind:
customer trigger phrases by sub-kind (phrases.csv `complaint_trigger` notes; a trigger in the same
sentence as a `de_escalation_negation` phrase does not count), the agent's taboo phrases by
severity, and a customer repeating the same demand three times.

empathy (higher is better) starts at 0.45 for a calm call and 0.25 when the customer is upset,
rises to 0.6 with one agent turn of acknowledgement/apology (`empathy` phrases) and by 0.15 for
each further one, and drops by 0.3 (severity 2–3) or 0.1 (severity 1) per agent taboo turn.
"""

from __future__ import annotations

from dataclasses import dataclass

from kefu.text import normalize
from qa_inspect.lexicon import PhraseIndex, Resources, sentence_around
from qa_inspect.rules.base import Context, Scope
from qa_inspect.rules.repetition import RepetitionRule

PRIOR = 0.03
TRIGGER_WEIGHTS: dict[str, float] = {
    "regulator_12398": 0.7,
    "city_12345": 0.6,
    "media": 0.6,
    "explicit_complaint": 0.55,
    "threat": 0.5,
    "anger": 0.4,
    "bitterness": 0.35,
    "repeat_contact": 0.3,
}
TABOO_WEIGHTS = {3: 0.5, 2: 0.35, 1: 0.15}
REPEAT_WEIGHT = 0.2


@dataclass(slots=True)
class Estimate:
    complaint_risk: float
    empathy: float
    triggers: list[str]
    empathy_turns: int


class RulesEstimator:
    """Computes the two call-level estimates from the bundled phrase lists and the taboo lexicon."""

    def __init__(self, resources: Resources) -> None:
        phrases = resources.phrases
        self.triggers = PhraseIndex((p.phrase, p.note) for p in phrases.get("complaint_trigger", []))
        self.negations = PhraseIndex((p.phrase, p.phrase) for p in phrases.get("de_escalation_negation", []))
        self.empathy = PhraseIndex((p.phrase, p.phrase) for p in phrases.get("empathy", []))
        self.repetition = RepetitionRule(Scope("customer"), 3, 0.6, 5, None)

    def estimate(self, ctx: Context) -> Estimate:
        turns = ctx.turns
        evidence: dict[str, float] = {}
        triggers: list[str] = []
        empathy_turns = 0
        taboo_penalty = 0.0
        for i, turn in enumerate(turns):
            norm = ctx.text(i)
            if turn.role == "customer":
                for s, e, _key, notes in self.triggers.find(norm):
                    mapping = ctx.mapping(i)
                    start, end = mapping[s], mapping[e - 1] + 1
                    if self.negations.size and self.negations.find(normalize(sentence_around(turn.text, start, end))):
                        continue
                    for note in notes:
                        w = TRIGGER_WEIGHTS.get(note, 0.3)
                        evidence[note] = max(evidence.get(note, 0.0), w)
                        triggers.append(note)
            else:
                if self.empathy.find(norm):
                    empathy_turns += 1
                active = [m for m in ctx.taboo(i) if m.active]
                if active:
                    worst = max(m.entry.severity for m in active)
                    evidence[f"taboo{worst}"] = max(evidence.get(f"taboo{worst}", 0.0), TABOO_WEIGHTS[worst])
                    taboo_penalty += 0.3 if worst >= 2 else 0.1
        if self.repetition.check(ctx.transcript, ctx):
            evidence["repetition"] = REPEAT_WEIGHT
        keep = 1.0 - PRIOR
        for w in evidence.values():
            keep *= 1.0 - w
        risk = 1.0 - keep
        upset = bool(triggers)
        calm = 0.25 if upset else 0.45
        empathy = min(1.0, 0.6 + 0.15 * (empathy_turns - 1)) if empathy_turns else calm
        empathy = max(0.0, empathy - taboo_penalty)
        return Estimate(round(risk, 4), round(empathy, 4), sorted(set(triggers)), empathy_turns)
