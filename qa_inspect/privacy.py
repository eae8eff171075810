"""Masking personal data (phones, ID and bank-card numbers, 户号, house numbers) in Chinese call text."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# Digits as ASR writes them: Arabic, full-width, or Chinese numerals read one by one (幺三八…).
_DIGIT_CHARS = "0-9０-９零〇○一二三四五六七八九幺"
_DIGIT = f"[{_DIGIT_CHARS}]"
_DIGIT_VALUE = {
    **{str(i): str(i) for i in range(10)},
    **{chr(0xFF10 + i): str(i) for i in range(10)},
    "零": "0", "〇": "0", "○": "0", "幺": "1", "一": "1", "二": "2", "三": "3", "四": "4",
    "五": "5", "六": "6", "七": "7", "八": "8", "九": "9",
}  # fmt: skip

# A run of digits, allowing one space or hyphen between digits (138-1234-5678, 0571 8765 4321)
# and a final X for ID numbers.
_RUN = re.compile(f"{_DIGIT}(?:[ \\-\u2010-\u2015]?{_DIGIT})*(?:[Xx](?![A-Za-z]))?")
# Calendar dates stay readable: 2026-07-14, 2026 07 14.
_DATE = re.compile(r"^(19|20)\d\d[-\s](0?[1-9]|1[0-2])[-\s](0?[1-9]|[12]\d|3[01])$")
# A number directly followed by one of these is a quantity, not an identifier (300元, 45分钟).
_UNIT_AFTER = re.compile(
    r"^\s?(?:元|块|角|毛|分钟|分|秒|小时|个?工作日|天|日|年|月|周|度|千瓦|瓦|kw|kW|KW|kwh|kWh|伏|V|安|A\b|次|个|户|台|人|米|公里|%|％|倍)"
)
# Keywords before a number that say what it is.
_CONTEXT: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("身份证号", re.compile(r"(身份证|证件)(号码?|号|是|为|:|：)*\s*$")),
    ("银行卡号", re.compile(r"(银行卡|卡号|账号|帐号|银行账户|扣款账户)(号码?|是|为|:|：)*\s*$")),
    ("户号", re.compile(r"(户号|用户编号|客户编号|户名号|电费户号|缴费号)(码|是|为|:|：)*\s*$")),
    ("电话", re.compile(r"(电话|手机|联系方式|号码|座机|打|拨|回拨|致电|联系我|微信)(号码?|号|是|为|:|：)*\s*$")),
)

# Keywords before a number that make it a service reference (work order, ticket), not personal data.
_SERVICE_REF = re.compile(r"(工单|单号|受理号|流水号|业务编号|申请编号|订单号|回执号)(码|号|是|为|:|：)*\s*$")

LABELS = {
    "mobile": "[手机号]",
    "landline": "[电话]",
    "id_card": "[身份证号]",
    "bank_card": "[银行卡号]",
    "account": "[户号]",
    "number": "[号码]",
}
_CONTEXT_KIND = {"身份证号": "id_card", "银行卡号": "bank_card", "户号": "account", "电话": "landline"}

# Detailed addresses: keep the road / community name, mask the numbers of building, unit, room.
_NUM = f"[{_DIGIT_CHARS}十百两]+[A-Za-z]?|[A-Za-z]"
_UNIT = r"(?:号院|号楼|号|弄|栋|幢|座|单元|室|楼|层|户|组|排)"
_STRONG_UNIT = r"(?:号院|号楼|栋|幢|单元|室)"
_ANCHOR = r"(?:路|街|巷|弄|胡同|大道|村|小区|花园|家园|公寓|大厦|苑|府|广场|社区|新村|庄|屯|院|湾|坊|园)"
_CHAIN = f"(?:\\s?(?:{_NUM})(?:[-—](?:{_NUM}))?\\s?{_UNIT})+(?:\\s?[{_DIGIT_CHARS}]{{2,5}}(?![{_DIGIT_CHARS}]))?"
_ADDRESS_AFTER_ANCHOR = re.compile(f"(?:{_ANCHOR})({_CHAIN})")
# Without a road name: a chain that starts with an unambiguous unit (三号楼二单元501, 5栋2单元).
_ADDRESS_STRONG = re.compile(
    f"((?:{_NUM}){_STRONG_UNIT}(?:\\s?(?:{_NUM})\\s?{_UNIT})*(?:\\s?[{_DIGIT_CHARS}]{{2,5}}(?![{_DIGIT_CHARS}]))?)"
)
_GROUPED_MOBILE = re.compile(
    f"(?<![{_DIGIT_CHARS}]){_DIGIT}{{3}}[，,、]\\s?{_DIGIT}{{4}}[，,、]\\s?{_DIGIT}{{4}}(?![{_DIGIT_CHARS}])"
)
_MASKABLE_IN_ADDRESS = re.compile(f"[{_DIGIT_CHARS}十百两A-Za-z]+")


def digits_of(text: str) -> str:
    """The Arabic digits a run stands for (幺三八 → 138); X is kept, separators dropped."""
    return "".join(_DIGIT_VALUE.get(c, c.upper() if c in "Xx" else "") for c in text)


@dataclass(frozen=True, slots=True)
class Span:
    """One masked piece of text: where it was, what kind of data, and what replaced it."""

    start: int
    end: int
    kind: str
    replacement: str


def classify_number(digits: str, before: str, after: str) -> str | None:
    """What a run of `digits` is (mobile, id_card, …), or None when it is not personal data.

    `before`/`after` are the characters around the run; a keyword before it (户号, 身份证, 电话)
    decides for runs of 6 or more digits, otherwise the length and shape do.
    """
    n = len(digits.rstrip("X"))
    has_x = digits.endswith("X")
    if has_x and n != 17:  # a misheard ID (one digit too many or too few): still personal data
        has_x = False
    if _UNIT_AFTER.match(after) and not has_x:
        return None
    if not has_x and _SERVICE_REF.search(before[-12:]):
        return None  # QA staff need work-order numbers to follow a call up; they identify no person
    for label, pattern in _CONTEXT:
        if n >= 6 and pattern.search(before[-12:]):
            kind = _CONTEXT_KIND[label]
            if kind == "landline" and n == 11 and digits[0] == "1":
                return "mobile"
            return kind
    if has_x or n == 18 or n == 15:
        return "id_card"
    if n == 11 and re.match(r"1[3-9]", digits):
        return "mobile"
    if digits.startswith("0") and 10 <= n <= 12:
        return "landline"
    if 16 <= n <= 19:
        return "bank_card"
    if 10 <= n <= 13:
        return "account"
    if 7 <= n <= 9:
        return "landline" if n <= 8 else "number"
    if n >= 7:
        return "number"
    return None


class Masker:
    """Finds and masks personal data in text; `kinds` limits which kinds are masked."""

    KINDS: tuple[str, ...] = ("mobile", "landline", "id_card", "bank_card", "account", "number", "address")

    def __init__(self, kinds: Iterable[str] | None = None, labels: dict[str, str] | None = None) -> None:
        chosen = tuple(kinds) if kinds is not None else self.KINDS
        unknown = [k for k in chosen if k not in self.KINDS]
        if unknown:
            raise ValueError(f"unknown personal-data kind(s) {unknown}; choose from {', '.join(self.KINDS)}")
        self.kinds = frozenset(chosen)
        self.labels = {**LABELS, **(labels or {})}

    def spans(self, text: str) -> list[Span]:
        """Non-overlapping spans to mask, in text order."""
        found: list[Span] = []
        for m in _RUN.finditer(text):
            raw = m.group()
            start, end = m.start(), m.end()
            # Letters glued to the run make it a code (call id C20260714-0001, model A07), not personal data.
            if (start > 0 and text[start - 1].isascii() and text[start - 1].isalpha()) or (
                end < len(text) and text[end].isascii() and text[end].isalpha()
            ):
                continue
            if _DATE.match(raw.replace("\u2010", "-")):
                continue
            digits = digits_of(raw)
            if len(digits) < 6:
                continue
            # Chinese numerals inside ordinary words (一一, 三三两两) are never this long, but "一" alone is
            # common: require at least one digit that is not 一 when the run is all Chinese.
            if all(not c.isascii() for c in raw if c not in " -") and set(raw) <= {"一", " ", "-"}:
                continue
            kind = classify_number(digits, text[max(0, start - 12) : start], text[end : end + 6])
            if kind and kind in self.kinds:
                found.append(Span(start, end, kind, self.labels[kind]))
        if "mobile" in self.kinds:
            # ASR punctuation inside a read-out mobile number: 幺三八，零零一三，八零零零.
            for m in _GROUPED_MOBILE.finditer(text):
                if re.match(r"1[3-9]", digits_of(m.group())) and not _overlaps(found, m.start(), m.end()):
                    found.append(Span(m.start(), m.end(), "mobile", self.labels["mobile"]))
        if "address" in self.kinds:
            for pattern in (_ADDRESS_AFTER_ANCHOR, _ADDRESS_STRONG):
                for m in pattern.finditer(text):
                    start, end = m.span(1)
                    if m.group(1).strip() and not _overlaps(found, start, end):
                        masked = _MASKABLE_IN_ADDRESS.sub(lambda x: "*" * len(x.group()), m.group(1))
                        found.append(Span(start, end, "address", masked))
        found.sort(key=lambda s: s.start)
        return found

    def mask(self, text: str) -> str:
        """`text` with every personal-data span replaced (numbers by a label, house numbers by *)."""
        if not text:
            return text
        spans = self.spans(text)
        if not spans:
            return text
        out, pos = [], 0
        for s in spans:
            out.append(text[pos : s.start])
            out.append(s.replacement)
            pos = s.end
        out.append(text[pos:])
        return "".join(out)

    def mask_value(self, value: Any, skip_keys: frozenset[str] = frozenset()) -> Any:
        """Mask every string inside a JSON-like value, leaving keys in `skip_keys` (ids) untouched."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, list):
            return [self.mask_value(v, skip_keys) for v in value]
        if isinstance(value, dict):
            return {k: v if k in skip_keys else self.mask_value(v, skip_keys) for k, v in value.items()}
        return value


def _overlaps(spans: list[Span], start: int, end: int) -> bool:
    return any(s.start < end and start < s.end for s in spans)


# Identifier fields that must stay readable in reports (they are not personal data).
ID_KEYS = frozenset(
    {"call_id", "agent_id", "date", "channel", "rule", "type", "source", "phrase", "phrase_id", "category", "item",
     "label", "scorer", "scorecard", "review_reason", "needs_review", "fatal_items", "dimension", "name"}
)  # fmt: skip

_DEFAULT = Masker()


def mask_text(text: str) -> str:
    """Mask personal data in one text with the default masker."""
    return _DEFAULT.mask(text)


def get_masker(enabled: bool = True) -> Callable[[str], str]:
    """The masking function for a report or export: identity when masking is switched off."""
    return _DEFAULT.mask if enabled else (lambda text: text)
