"""Bundled QA lexicons (taboo phrases, exceptions, phrase lists) and their Aho-Corasick matchers."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import ahocorasick

from kefu.io import InputError
from kefu.text import normalize, normalize_with_map, to_halfwidth, to_simplified

log = logging.getLogger(__name__)

SEVERITIES = {1: "minor", 2: "serious", 3: "fatal"}
PHRASE_KINDS = (
    "opening",
    "closing",
    "empathy",
    "complaint_trigger",
    "de_escalation_negation",
    "filler",
    "hold",
)
# Sentence ends for exceptions (commas do not split: see qa_inspect/data/README.md).
_SENTENCE_END = re.compile(r"[。！？!?；;\n]")
_SPACE = re.compile(r"\s+")


def data_path(name: str) -> Path:
    """Path of a file bundled in qa_inspect/data/."""
    return Path(str(resources.files("qa_inspect") / "data" / name))


def compact(text: str) -> str:
    """Half width, simplified, no whitespace: the form exception patterns are matched against."""
    return _SPACE.sub("", to_simplified(to_halfwidth(text)))


def _read_csv(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}:1: missing column(s) {', '.join(missing)}")
        # DictReader.line_num after reading a row is the line where that row ends.
        return [(reader.line_num, row) for row in reader]


@dataclass(frozen=True, slots=True)
class TabooEntry:
    """One taboo phrase of the lexicon."""

    id: str
    phrase: str
    category: str
    severity: int
    note: str = ""


@dataclass(slots=True)
class TabooMatch:
    """A lexicon phrase found in a text; `start`/`end` index the original text (end exclusive)."""

    entry: TabooEntry
    start: int
    end: int
    text: str
    cancelled_by: str | None = None  # id of the exception that cancelled it
    sentence: str = ""

    @property
    def active(self) -> bool:
        return self.cancelled_by is None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "text": self.text,
            "span": [self.start, self.end],
            "phrase": self.entry.phrase,
            "phrase_id": self.entry.id,
            "category": self.entry.category,
            "severity": self.entry.severity,
        }
        if self.cancelled_by:
            out["cancelled_by"] = self.cancelled_by
        return out


class PhraseIndex:
    """Aho-Corasick over normalised phrases; finds them in normalised text.

    Phrases that begin or end with a digit only match where the neighbouring character is not a
    digit, so 12398 is not found inside a 户号 or phone number.
    """

    def __init__(self, phrases: Iterable[tuple[str, Any]]) -> None:
        self._auto = ahocorasick.Automaton()
        self.size = 0
        grouped: dict[str, list[Any]] = {}
        for phrase, payload in phrases:
            key = normalize(phrase)
            if not key:
                continue
            grouped.setdefault(key, []).append(payload)
        for key, payloads in grouped.items():
            self._auto.add_word(key, (key, payloads))
            self.size += 1
        if self.size:
            self._auto.make_automaton()

    def find(self, norm: str) -> list[tuple[int, int, str, list[Any]]]:
        """(start, end, key, payloads) of every occurrence in normalised text (end exclusive)."""
        if not self.size or not norm:
            return []
        out = []
        for end_idx, (key, payloads) in self._auto.iter(norm):
            start = end_idx - len(key) + 1
            if key[0].isdigit() and start > 0 and norm[start - 1].isdigit():
                continue
            if key[-1].isdigit() and end_idx + 1 < len(norm) and norm[end_idx + 1].isdigit():
                continue
            out.append((start, end_idx + 1, key, payloads))
        return out


def drop_nested(spans: list[tuple[int, int, Any]]) -> list[tuple[int, int, Any]]:
    """Keep only spans that do not lie inside a longer span (the longer phrase is more specific)."""
    if len(spans) < 2:
        return spans
    kept = []
    for s in spans:
        inside = any(o is not s and o[0] <= s[0] and s[1] <= o[1] and (o[1] - o[0]) > (s[1] - s[0]) for o in spans)
        if not inside:
            kept.append(s)
    return kept


def sentence_around(text: str, start: int, end: int) -> str:
    """The sentence(s) of `text` that contain the span [start, end) (a span may cross a sentence end)."""
    left = 0
    for m in _SENTENCE_END.finditer(text, 0, start):
        left = m.end()
    m = _SENTENCE_END.search(text, end)
    return text[left : m.start() if m else len(text)]


class TabooMatcher:
    """The taboo lexicon with its exceptions: finds phrases, drops nested ones, applies exceptions."""

    def __init__(self, entries: Sequence[TabooEntry], exceptions: dict[str, list[tuple[str, re.Pattern[str]]]]) -> None:
        self.entries = list(entries)
        self.by_id = {e.id: e for e in self.entries}
        self.exceptions = exceptions
        self.index = PhraseIndex((e.phrase, e) for e in self.entries)

    def match_normalized(
        self, text: str, norm: str, mapping: Sequence[int] | Callable[[], Sequence[int]]
    ) -> list[TabooMatch]:
        """Every hit in `text` (given its normalised form and index map), cancelled ones flagged.

        `mapping` may be a callable: the map is then only built when something is found.
        """
        found = self.index.find(norm)
        if not found:
            return []
        if callable(mapping):
            mapping = mapping()
        spans = drop_nested([(s, e, payloads) for s, e, _key, payloads in found])
        out: list[TabooMatch] = []
        for s, e, payloads in spans:
            start, end = mapping[s], mapping[e - 1] + 1
            for entry in payloads:
                out.append(TabooMatch(entry, start, end, text[start:end]))
        for hit in out:
            rules = self.exceptions.get(hit.entry.id)
            if not rules:
                continue
            sentence = compact(sentence_around(text, hit.start, hit.end))
            hit.sentence = sentence
            for exc_id, pattern in rules:
                if pattern.search(sentence):
                    hit.cancelled_by = exc_id
                    break
        return out

    def match(self, text: str) -> list[TabooMatch]:
        norm, mapping = normalize_with_map(text)
        return self.match_normalized(text, norm, mapping)


@dataclass(frozen=True, slots=True)
class Phrase:
    """One row of phrases.csv."""

    kind: str
    phrase: str
    note: str = ""


@dataclass
class Resources:
    """The lexicons a scorecard uses: bundled files unless other paths are given. Loaded lazily."""

    lexicon_path: Path = field(default_factory=lambda: data_path("taboo_lexicon.csv"))
    exceptions_path: Path = field(default_factory=lambda: data_path("taboo_exceptions.csv"))
    phrases_path: Path = field(default_factory=lambda: data_path("phrases.csv"))

    @cached_property
    def taboo_entries(self) -> list[TabooEntry]:
        entries: list[TabooEntry] = []
        seen: set[str] = set()
        for line, row in _read_csv(self.lexicon_path, ("id", "phrase", "category", "severity")):
            where = f"{self.lexicon_path}:{line}"
            pid, phrase = (row.get("id") or "").strip(), (row.get("phrase") or "").strip()
            if not pid or not phrase:
                raise InputError(f"{where}: id and phrase must not be empty")
            if pid in seen:
                raise InputError(f"{where}: duplicate id {pid!r}")
            try:
                severity = int(row.get("severity") or "")
            except ValueError:
                raise InputError(f"{where}: severity must be 1, 2 or 3, got {row.get('severity')!r}") from None
            if severity not in SEVERITIES:
                raise InputError(f"{where}: severity must be 1, 2 or 3, got {severity}")
            seen.add(pid)
            entries.append(
                TabooEntry(pid, phrase, (row.get("category") or "").strip(), severity, row.get("note") or "")
            )
        return entries

    @cached_property
    def taboo_exceptions(self) -> dict[str, list[tuple[str, re.Pattern[str]]]]:
        out: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
        known = {e.id for e in self.taboo_entries}
        for line, row in _read_csv(self.exceptions_path, ("id", "phrase_id", "pattern")):
            where = f"{self.exceptions_path}:{line}"
            pid = (row.get("phrase_id") or "").strip()
            if pid not in known:
                raise InputError(f"{where}: phrase_id {pid!r} is not in {self.lexicon_path.name}")
            try:
                pattern = re.compile(compact(row.get("pattern") or ""))
            except re.error as exc:
                raise InputError(f"{where}: bad regular expression ({exc})") from None
            out.setdefault(pid, []).append(((row.get("id") or "").strip(), pattern))
        return out

    @cached_property
    def taboo(self) -> TabooMatcher:
        return TabooMatcher(self.taboo_entries, self.taboo_exceptions)

    @cached_property
    def phrases(self) -> dict[str, list[Phrase]]:
        out: dict[str, list[Phrase]] = {}
        for line, row in _read_csv(self.phrases_path, ("kind", "phrase")):
            kind, phrase = (row.get("kind") or "").strip(), (row.get("phrase") or "").strip()
            if not kind or not phrase:
                raise InputError(f"{self.phrases_path}:{line}: kind and phrase must not be empty")
            out.setdefault(kind, []).append(Phrase(kind, phrase, (row.get("note") or "").strip()))
        return out

    def phrase_list(self, kind: str) -> list[Phrase]:
        if kind not in self.phrases:
            raise KeyError(kind)
        return self.phrases[kind]


@lru_cache(maxsize=8)
def get_resources(lexicon: str | None = None, exceptions: str | None = None, phrases: str | None = None) -> Resources:
    """Shared Resources per combination of paths (bundled files for None)."""
    kwargs: dict[str, Path] = {}
    if lexicon:
        kwargs["lexicon_path"] = Path(lexicon)
    if exceptions:
        kwargs["exceptions_path"] = Path(exceptions)
    if phrases:
        kwargs["phrases_path"] = Path(phrases)
    return Resources(**kwargs)
