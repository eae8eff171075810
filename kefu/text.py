"""Text normalisation shared by every package: width, traditional→simplified, ASR fillers."""

from __future__ import annotations

import logging
import re
import unicodedata
from functools import lru_cache
from importlib import resources

log = logging.getLogger(__name__)

# Characters never worth matching on: whitespace and punctuation of both widths.
_PUNCT_CLASS = r"\s\u3000-\u303f\uff00-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65!-/:-@\[-`{-~·…—–‘’“”、。《》【】"
_PUNCT = re.compile(f"[{_PUNCT_CLASS}]+")
# 额 is a filler only when it is not part of a word such as 额度 / 额外 / 额定.
_FILLER_GUARDS = {"额": "(?![度外定])"}


def to_halfwidth(text: str) -> str:
    """Map full-width ASCII forms (ＡＢＣ１２３，！) and the ideographic space to half width."""
    return text.translate(_width_table())


@lru_cache(maxsize=1)
def _width_table() -> dict[int, int]:
    table = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
    table[0x3000] = 0x20
    return table


@lru_cache(maxsize=1)
def _t2s_table() -> dict[int, int]:
    """Character-level traditional→simplified table from OpenCC's TSCharacters dictionary."""
    table: dict[int, int] = {}
    try:
        ref = resources.files("opencc") / "dictionary" / "TSCharacters.txt"
        content = ref.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        log.warning("opencc dictionary not found: traditional characters are left as they are")
        return table
    for line in content.splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and len(parts[0]) == 1:
            target = parts[1].split(" ")[0]
            if len(target) == 1 and target != parts[0]:
                table[ord(parts[0])] = ord(target)
    return table


def to_simplified(text: str) -> str:
    """Traditional → simplified, character by character (keeps length, so offsets stay valid)."""
    return text.translate(_t2s_table())


@lru_cache(maxsize=1)
def _base_table() -> dict[int, int]:
    table = dict(_t2s_table())
    table.update(_width_table())
    return table


@lru_cache(maxsize=1)
def fillers() -> tuple[str, ...]:
    """The bundled ASR filler list, longest first."""
    text = (resources.files("kefu") / "data" / "fillers.txt").read_text(encoding="utf-8")
    words = [w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#")]
    return tuple(sorted(set(words), key=len, reverse=True))


@lru_cache(maxsize=4)
def _deletion_pattern(punctuation: bool, strip_fillers: bool) -> re.Pattern[str] | None:
    parts: list[str] = []
    if strip_fillers:
        parts += [re.escape(w) + _FILLER_GUARDS.get(w, "") for w in fillers()]
    if punctuation:
        parts.append(f"[{_PUNCT_CLASS}]+")
    return re.compile("|".join(parts)) if parts else None


def normalize_with_map(
    text: str, *, simplify: bool = True, lower: bool = True, punctuation: bool = True, strip_fillers: bool = True
) -> tuple[str, list[int]]:
    """Normalise `text` for matching and return, for each output character, its input index.

    Steps: full→half width, traditional→simplified, lower case (all length-preserving), then
    removal of punctuation/whitespace and ASR fillers. The map lets a match in the normalised
    text be reported as a span of the original.
    """
    base = text.translate(_base_table() if simplify else _width_table())
    if lower:
        lowered = base.lower()
        base = lowered if len(lowered) == len(base) else base
    pattern = _deletion_pattern(punctuation, strip_fillers)
    if pattern is None:
        return base, list(range(len(base)))
    pieces: list[str] = []
    index: list[int] = []
    pos = 0
    for m in pattern.finditer(base):
        if m.start() > pos:
            pieces.append(base[pos : m.start()])
            index.extend(range(pos, m.start()))
        pos = m.end()
    if pos < len(base):
        pieces.append(base[pos:])
        index.extend(range(pos, len(base)))
    return "".join(pieces), index


def normalize(
    text: str, *, simplify: bool = True, lower: bool = True, punctuation: bool = True, strip_fillers: bool = True
) -> str:
    """Normalised text for matching and indexing: normalize_with_map's text, without building the map.

    This is the hot path of bulk scoring, so it skips the per-character index list (about twice as fast).
    """
    base = text.translate(_base_table() if simplify else _width_table())
    if lower:
        lowered = base.lower()
        base = lowered if len(lowered) == len(base) else base
    pattern = _deletion_pattern(punctuation, strip_fillers)
    return pattern.sub("", base) if pattern is not None else base


def normalize_display(text: str) -> str:
    """Light clean-up for display and storage: NFC, half-width ASCII, collapsed whitespace."""
    text = to_halfwidth(unicodedata.normalize("NFC", text))
    return re.sub(r"\s+", " ", text).strip()
