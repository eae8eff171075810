"""Repetition: a speaker says the same demand again and again (it was not resolved the first time)."""

from __future__ import annotations

from kefu.schemas import Transcript
from qa_inspect.lexicon import PhraseIndex, Resources
from qa_inspect.rules.base import Context, RuleHit, Scope, Spec, register
from qa_inspect.rules.lexicon import phrase_source


def _bigrams(text: str) -> set[str]:
    return {text[i : i + 2] for i in range(len(text) - 1)}


class RepetitionRule:
    """Fires when `min_count` scoped turns carry the same demand.

    Two turns carry the same demand when their character bigrams overlap by at least
    `similarity` (overlap coefficient on normalised text, so additions like 我再说一遍 do not
    hide a repeat), or — with `phrases`/`kind` — when they contain the same listed phrase.
    """

    type = "repetition"

    def __init__(
        self, scope: Scope, min_count: int, similarity: float, min_chars: int, index: PhraseIndex | None
    ) -> None:
        self.scope = scope
        self.min_count = min_count
        self.similarity = similarity
        self.min_chars = min_chars
        self.index = index

    def _group(self, transcript: Transcript, ctx: Context) -> list[int]:
        chosen = [i for i in self.scope.indices(transcript.turns, ctx) if len(ctx.text(i)) >= self.min_chars]
        if len(chosen) < self.min_count:
            return []
        if self.index is not None:
            by_phrase: dict[str, list[int]] = {}
            for i in chosen:
                for key in {k for _, _, k, _ in self.index.find(ctx.text(i))}:
                    by_phrase.setdefault(key, []).append(i)
            best = max(by_phrase.values(), key=len, default=[])
            if len(best) >= self.min_count:
                return best
        grams = {
            i: ctx.cache.get(("bigrams", i)) or ctx.cache.setdefault(("bigrams", i), _bigrams(ctx.text(i)))
            for i in chosen
        }
        best = []
        for i in chosen:
            group = [
                j
                for j in chosen
                if j == i
                or (
                    grams[i]
                    and grams[j]
                    and len(grams[i] & grams[j]) / min(len(grams[i]), len(grams[j])) >= self.similarity
                )
            ]
            if len(group) > len(best):
                best = group
        return best if len(best) >= self.min_count else []

    def check(self, transcript: Transcript, ctx: Context) -> list[RuleHit]:
        # The same test may run twice per call (scorecard item and rules-based estimate): memoise it.
        key = ("repetition", self.scope, self.min_count, self.similarity, self.min_chars, id(self.index))
        group = ctx.cache.get(key)
        if group is None:
            group = ctx.cache[key] = self._group(transcript, ctx)
        return [
            RuleHit(self.type, "lexicon", i, None, transcript.turns[i].text, {"repeats": len(group), "turns": group})
            for i in group
        ]

    def describe(self) -> str:
        return f"the same demand {self.min_count}+ times in {self.scope.describe()} (similarity >= {self.similarity})"


@register(
    "repetition",
    ("min_count", "similarity", "min_chars", "phrases", "kind", "notes", *Scope.SPEC_KEYS),
    "the same demand repeated N times (bigram overlap, or the same listed phrase)",
)
def _repetition(spec: Spec, resources: Resources) -> RepetitionRule:
    index = None
    if spec.has("phrases") or spec.has("kind"):
        pairs, _ = phrase_source(spec, resources)
        index = PhraseIndex((p, p) for p, _ in pairs)
    return RepetitionRule(
        Scope.from_spec(spec, "customer"),
        spec.integer("min_count", 3, 2),
        spec.number("similarity", 0.6, 0.0, 1.0),
        spec.integer("min_chars", 4, 1),
        index,
    )
