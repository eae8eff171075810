"""Anchor windows: after an anchor hit, the response must come within the next N turns of a role."""

from __future__ import annotations

from kefu.schemas import Transcript
from qa_inspect.lexicon import Resources
from qa_inspect.rules.base import ROLES, Context, Rule, RuleHit, Spec, build_rule, register


class AnchorResponseRule:
    """For each turn where `anchor` fires, fires when `response` does not fire in the next `within`
    turns of the `responder` role (e.g. the customer mentions a complaint and the agent does not
    apologise within 2 agent turns). An anchor with no responder turn after it is not judged.
    """

    type = "anchor_response"

    def __init__(self, anchor: Rule, response: Rule, within: int, responder: str) -> None:
        self.anchor = anchor
        self.response = response
        self.within = within
        self.responder = responder

    def check(self, transcript: Transcript, ctx: Context) -> list[RuleHit]:
        anchors = self.anchor.check(transcript, ctx)
        if not anchors:
            return []
        answered = {h.turn for h in self.response.check(transcript, ctx) if h.turn is not None}
        turns = transcript.turns
        hits, seen = [], set()
        for a in anchors:
            if a.turn is None or a.turn in seen:
                continue
            seen.add(a.turn)
            after = [
                j for j in range(a.turn + 1, len(turns)) if self.responder == "any" or turns[j].role == self.responder
            ]
            window = after[: self.within]
            if not window or answered.intersection(window):
                continue
            detail = {"anchor": a.text, "window_turns": window, "expected": getattr(self.response, "describe", str)()}
            hits.append(RuleHit(self.type, a.source, a.turn, a.span, a.text, detail))
        return hits

    def describe(self) -> str:
        anchor = getattr(self.anchor, "describe", lambda: "anchor")()
        response = getattr(self.response, "describe", lambda: "response")()
        return f"after [{anchor}], no [{response}] within the next {self.within} {self.responder} turn(s)"


@register(
    "anchor_response",
    ("anchor", "response", "within", "responder"),
    "an anchor hit not followed by a response within the next N turns of a role",
)
def _anchor_response(spec: Spec, resources: Resources) -> AnchorResponseRule:
    anchor = build_rule(spec.get("anchor"), spec.at("anchor"), resources)
    response = build_rule(spec.get("response"), spec.at("response"), resources)
    return AnchorResponseRule(anchor, response, spec.integer("within", 2, 1), spec.string("responder", "agent", ROLES))
