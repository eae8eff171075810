"""Must-say rules: a standard phrase (opening, closing, job number) that has to appear in a window."""

from __future__ import annotations

import re

from kefu.schemas import Transcript
from qa_inspect.lexicon import PhraseIndex, Resources
from qa_inspect.rules.base import Context, RuleHit, Scope, ScorecardError, Spec, register
from qa_inspect.rules.lexicon import compile_patterns, phrase_source


class MustSayRule:
    """Fires (one call-level hit) when none of the phrases or patterns occurs in the scoped turns."""

    type = "must_say"

    def __init__(self, scope: Scope, index: PhraseIndex | None, patterns: list[re.Pattern[str]], label: str) -> None:
        self.scope = scope
        self.index = index
        self.patterns = patterns
        self.label = label

    def check(self, transcript: Transcript, ctx: Context) -> list[RuleHit]:
        chosen = self.scope.indices(transcript.turns, ctx)
        for i in chosen:
            if self.index is not None and self.index.find(ctx.text(i)):
                return []
            if any(p.search(transcript.turns[i].text) for p in self.patterns):
                return []
        turn = chosen[0] if chosen else None
        text = transcript.turns[turn].text if turn is not None else ""
        return [
            RuleHit(self.type, "lexicon", turn, None, text, {"missing": self.label, "window": self.scope.describe()})
        ]

    def describe(self) -> str:
        return f"missing {self.label} in {self.scope.describe()}"


@register(
    "must_say",
    ("phrases", "kind", "notes", "patterns", *Scope.SPEC_KEYS),
    "fires when none of the phrases/patterns is said in the window (e.g. opening in the first agent turn)",
)
def _must_say(spec: Spec, resources: Resources) -> MustSayRule:
    index, labels = None, []
    if spec.has("phrases") or spec.has("kind"):
        pairs, label = phrase_source(spec, resources)
        index = PhraseIndex((p, p) for p, _ in pairs)
        labels.append(label)
    patterns = compile_patterns(spec, "patterns")
    if patterns:
        labels.append("patterns " + " | ".join(p.pattern for p in patterns))
    if not labels:
        raise ScorecardError(f"{spec.where}: give phrases, kind or patterns")
    return MustSayRule(Scope.from_spec(spec, "agent"), index, patterns, " or ".join(labels))
