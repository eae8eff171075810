"""Regular-expression rules, with exception patterns that cancel a hit in its sentence."""

from __future__ import annotations

import re

from kefu.schemas import Transcript
from qa_inspect.lexicon import Resources, compact, sentence_around
from qa_inspect.rules.base import Context, RuleHit, Scope, Spec, register
from qa_inspect.rules.lexicon import compile_patterns


class RegexRule:
    """Any of `patterns` in the scoped turns, unless an `exceptions` pattern matches the hit's sentence.

    With `normalized: true` the patterns see the normalised text (no spaces, punctuation or fillers;
    simplified, lower case) and spans are mapped back to the original.
    """

    type = "regex"

    def __init__(
        self, scope: Scope, patterns: list[re.Pattern[str]], exceptions: list[re.Pattern[str]], normalized: bool
    ) -> None:
        self.scope = scope
        self.patterns = patterns
        self.exceptions = exceptions
        self.normalized = normalized

    def check(self, transcript: Transcript, ctx: Context) -> list[RuleHit]:
        hits = []
        for i in self.scope.indices(transcript.turns, ctx):
            text = transcript.turns[i].text
            subject = ctx.text(i) if self.normalized else text
            for pattern in self.patterns:
                for m in pattern.finditer(subject):
                    if m.end() == m.start():
                        continue
                    start, end = m.start(), m.end()
                    if self.normalized:
                        mapping = ctx.mapping(i)
                        start, end = mapping[start], mapping[end - 1] + 1
                    if self.exceptions:
                        sentence = compact(sentence_around(text, start, end))
                        if any(x.search(sentence) for x in self.exceptions):
                            continue
                    hits.append(
                        RuleHit(self.type, "regex", i, (start, end), text[start:end], {"pattern": pattern.pattern})
                    )
        return hits

    def describe(self) -> str:
        extra = f", {len(self.exceptions)} exception(s)" if self.exceptions else ""
        return f"regex {' | '.join(p.pattern for p in self.patterns)} in {self.scope.describe()}{extra}"


@register(
    "regex",
    ("patterns", "exceptions", "normalized", *Scope.SPEC_KEYS),
    "any of a list of regular expressions; `exceptions` cancel a hit in the same sentence",
)
def _regex(spec: Spec, resources: Resources) -> RegexRule:
    spec.strings("patterns")
    return RegexRule(
        Scope.from_spec(spec),
        compile_patterns(spec, "patterns"),
        compile_patterns(spec, "exceptions"),
        spec.boolean("normalized", False),
    )
