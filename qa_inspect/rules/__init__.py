"""QA rules: one module per rule type, built from scorecard YAML through the registry."""

from qa_inspect.rules import compose, lexicon, model, must_say, regex, repetition, timing, window
from qa_inspect.rules.base import REGISTRY, Context, Rule, RuleHit, Scope, ScorecardError, Spec, build_rule, register

__all__ = [
    "REGISTRY",
    "Context",
    "Rule",
    "RuleHit",
    "Scope",
    "ScorecardError",
    "Spec",
    "build_rule",
    "compose",
    "lexicon",
    "model",
    "must_say",
    "regex",
    "register",
    "repetition",
    "timing",
    "window",
]
