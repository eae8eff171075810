"""Composition: all / any / not over other rules."""

from __future__ import annotations

from kefu.schemas import Transcript
from qa_inspect.lexicon import Resources
from qa_inspect.rules.base import Context, Rule, RuleHit, ScorecardError, Spec, build_rule, register


def _describe(rule: Rule) -> str:
    return getattr(rule, "describe", lambda: rule.type)()


class AllRule:
    """Fires when every child fires; the evidence is all of theirs."""

    type = "all"

    def __init__(self, children: list[Rule]) -> None:
        self.children = children

    def check(self, transcript: Transcript, ctx: Context) -> list[RuleHit]:
        out: list[RuleHit] = []
        for child in self.children:
            hits = child.check(transcript, ctx)
            if not hits:
                return []
            out += hits
        return out

    def describe(self) -> str:
        return "all of (" + "; ".join(_describe(c) for c in self.children) + ")"


class AnyRule:
    """Fires when any child fires; the evidence is that of every child that fired."""

    type = "any"

    def __init__(self, children: list[Rule]) -> None:
        self.children = children

    def check(self, transcript: Transcript, ctx: Context) -> list[RuleHit]:
        out: list[RuleHit] = []
        for child in self.children:
            out += child.check(transcript, ctx)
        return out

    def describe(self) -> str:
        return "any of (" + "; ".join(_describe(c) for c in self.children) + ")"


class NotRule:
    """Fires (one call-level hit) when the child does not fire."""

    type = "not"

    def __init__(self, child: Rule) -> None:
        self.child = child

    def check(self, transcript: Transcript, ctx: Context) -> list[RuleHit]:
        if self.child.check(transcript, ctx):
            return []
        return [RuleHit(self.type, "structure", None, None, "", {"absent": _describe(self.child)})]

    def describe(self) -> str:
        return f"not ({_describe(self.child)})"


def _children(spec: Spec, resources: Resources) -> list[Rule]:
    raw = spec.get("rules")
    if not isinstance(raw, list) or not raw:
        raise ScorecardError(f"{spec.at('rules')}: must be a non-empty list of rules, got {raw!r}")
    return [build_rule(r, f"{spec.where}.{spec.raw['type']}[{n}]", resources) for n, r in enumerate(raw)]


@register("all", ("rules",), "fires when every sub-rule fires")
def _all(spec: Spec, resources: Resources) -> AllRule:
    return AllRule(_children(spec, resources))


@register("any", ("rules",), "fires when any sub-rule fires")
def _any(spec: Spec, resources: Resources) -> AnyRule:
    return AnyRule(_children(spec, resources))


@register("not", ("rules",), "fires when the sub-rule does not fire")
def _not(spec: Spec, resources: Resources) -> NotRule:
    raw = spec.get("rules")
    if isinstance(raw, list):
        if len(raw) != 1:
            raise ScorecardError(f"{spec.at('rules')}: not takes exactly one rule, got {len(raw)}")
        raw = raw[0]
    return NotRule(build_rule(raw, f"{spec.where}.not", resources))
