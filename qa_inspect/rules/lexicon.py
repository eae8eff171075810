"""Phrase-lexicon rules matched with Aho-Corasick: the bundled taboo lexicon and phrase lists."""

from __future__ import annotations

import re

from kefu.schemas import Transcript
from kefu.text import normalize
from qa_inspect.lexicon import PhraseIndex, Resources, compact, sentence_around
from qa_inspect.rules.base import Context, RuleHit, Scope, ScorecardError, Spec, register


class TabooLexiconRule:
    """Agent turns containing a taboo-lexicon phrase not cancelled by an exception."""

    type = "taboo_lexicon"

    def __init__(
        self, scope: Scope, min_severity: int = 1, max_severity: int = 3, categories: frozenset[str] | None = None
    ) -> None:
        self.scope = scope
        self.min_severity = min_severity
        self.max_severity = max_severity
        self.categories = categories

    def check(self, transcript: Transcript, ctx: Context) -> list[RuleHit]:
        hits = []
        for i in self.scope.indices(transcript.turns, ctx):
            for m in ctx.taboo(i):
                if not m.active or not self.min_severity <= m.entry.severity <= self.max_severity:
                    continue
                if self.categories is not None and m.entry.category not in self.categories:
                    continue
                detail = {
                    "phrase": m.entry.phrase,
                    "phrase_id": m.entry.id,
                    "category": m.entry.category,
                    "severity": m.entry.severity,
                }
                hits.append(RuleHit(self.type, "lexicon", i, (m.start, m.end), m.text, detail))
        return hits

    def describe(self) -> str:
        cats = f" in {', '.join(sorted(self.categories))}" if self.categories else ""
        return (
            f"taboo-lexicon phrase of severity {self.min_severity}–{self.max_severity}{cats} in {self.scope.describe()}"
        )


@register(
    "taboo_lexicon",
    ("min_severity", "max_severity", "categories", *Scope.SPEC_KEYS),
    "a phrase of the bundled taboo lexicon (服务忌语), exceptions applied",
)
def _taboo(spec: Spec, resources: Resources) -> TabooLexiconRule:
    low = int(spec.number("min_severity", 1, 1, 3))
    high = int(spec.number("max_severity", 3, 1, 3))
    if low > high:
        raise ScorecardError(f"{spec.where}: min_severity {low} is above max_severity {high}")
    cats = None
    if spec.has("categories"):
        cats = frozenset(spec.strings("categories"))
        known = {e.category for e in resources.taboo_entries}
        unknown = sorted(cats - known)
        if unknown:
            raise ScorecardError(
                f"{spec.at('categories')}: unknown categor(ies) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
    return TabooLexiconRule(Scope.from_spec(spec, "agent"), low, high, cats)


class PhraseRule:
    """Any of a list of phrases (or a kind from phrases.csv) in the scoped turns.

    A hit is cancelled when its sentence also contains a phrase of `cancel` (e.g. 我不是要投诉
    cancels 投诉) or matches a `cancel_patterns` regex. Fires when at least `min_count` hits remain.
    """

    type = "phrases"

    def __init__(
        self,
        scope: Scope,
        index: PhraseIndex,
        label: str,
        cancel: PhraseIndex | None = None,
        cancel_patterns: list[re.Pattern[str]] | None = None,
        min_count: int = 1,
    ) -> None:
        self.scope = scope
        self.index = index
        self.label = label
        self.cancel = cancel
        self.cancel_patterns = cancel_patterns or []
        self.min_count = min_count

    def _cancelled(self, text: str, start: int, end: int) -> bool:
        if self.cancel is None and not self.cancel_patterns:
            return False
        sentence = sentence_around(text, start, end)
        if self.cancel is not None and self.cancel.find(normalize(sentence)):
            return True
        flat = compact(sentence)
        return any(p.search(flat) for p in self.cancel_patterns)

    def check(self, transcript: Transcript, ctx: Context) -> list[RuleHit]:
        hits = []
        for i in self.scope.indices(transcript.turns, ctx):
            found = self.index.find(ctx.text(i))
            if not found:
                continue
            mapping = ctx.mapping(i)
            text = transcript.turns[i].text
            for s, e, _key, payloads in found:
                start, end = mapping[s], mapping[e - 1] + 1
                if self._cancelled(text, start, end):
                    continue
                detail = {"phrase": payloads[0][0]}
                if payloads[0][1]:
                    detail["note"] = payloads[0][1]
                hits.append(RuleHit(self.type, "lexicon", i, (start, end), text[start:end], detail))
        return hits if len(hits) >= self.min_count else []

    def describe(self) -> str:
        return f"{self.label} in {self.scope.describe()}"


def phrase_source(spec: Spec, resources: Resources, key: str = "phrases", kind_key: str = "kind") -> tuple[list, str]:
    """(phrase, note) pairs from an inline `phrases` list and/or a phrases.csv `kind` (+ `notes` filter)."""
    pairs: list[tuple[str, str]] = []
    labels = []
    if spec.has(key):
        pairs += [(p, "") for p in spec.strings(key)]
        labels.append(f"{len(pairs)} listed phrases")
    if spec.has(kind_key):
        kinds = spec.strings(kind_key)
        for kind in kinds:
            if kind not in resources.phrases:
                raise ScorecardError(
                    f"{spec.at(kind_key)}: unknown phrase kind {kind!r}; "
                    f"{resources.phrases_path.name} has: {', '.join(sorted(resources.phrases))}"
                )
        notes = set(spec.strings("notes")) if spec.has("notes") else None
        chosen = [p for k in kinds for p in resources.phrases[k] if notes is None or p.note in notes]
        if not chosen:
            raise ScorecardError(
                f"{spec.at('notes')}: no phrase of kind {', '.join(kinds)} has note {sorted(notes or [])}"
            )
        pairs += [(p.phrase, p.note) for p in chosen]
        labels.append(f"phrases of kind {'/'.join(kinds)}" + (f" ({', '.join(sorted(notes))})" if notes else ""))
    if not pairs:
        raise ScorecardError(f"{spec.where}: give {key} (a list) or {kind_key} (a kind from phrases.csv)")
    return pairs, " + ".join(labels)


def compile_patterns(spec: Spec, key: str) -> list[re.Pattern[str]]:
    out = []
    for n, pattern in enumerate(spec.strings(key) if spec.has(key) else []):
        try:
            out.append(re.compile(pattern))
        except re.error as exc:
            raise ScorecardError(f"{spec.at(key)}[{n}]: bad regular expression {pattern!r} ({exc})") from None
    return out


@register(
    "phrases",
    ("phrases", "kind", "notes", "cancel_kind", "cancel_phrases", "cancel_patterns", "min_count", *Scope.SPEC_KEYS),
    "any of a phrase list (inline or a kind of phrases.csv), tolerant of spaces/punctuation/fillers/traditional",
)
def _phrases(spec: Spec, resources: Resources) -> PhraseRule:
    pairs, label = phrase_source(spec, resources)
    cancel_pairs: list[tuple[str, str]] = []
    if spec.has("cancel_kind") or spec.has("cancel_phrases"):
        sub = Spec(
            {k2: spec.get(k1) for k1, k2 in (("cancel_phrases", "phrases"), ("cancel_kind", "kind")) if spec.has(k1)},
            spec.where,
            ("phrases", "kind"),
        )
        cancel_pairs, _ = phrase_source(sub, resources)
    index = PhraseIndex((p, (p, note)) for p, note in pairs)
    cancel = PhraseIndex((p, p) for p, _ in cancel_pairs) if cancel_pairs else None
    return PhraseRule(
        Scope.from_spec(spec),
        index,
        label,
        cancel,
        compile_patterns(spec, "cancel_patterns"),
        spec.integer("min_count", 1, 1),
    )
