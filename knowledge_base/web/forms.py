"""Form parsing, validation and display helpers of the 话术库 pages (no web framework in here: easy to test)."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup, escape

from knowledge_base.io import _ID_RULE
from knowledge_base.lint import LintIssue
from knowledge_base.schema import STATUSES, Script

STATUS_NAMES = {"draft": "草稿", "approved": "已批准", "retired": "已停用"}
ACTION_NAMES = {"create": "新建", "edit": "修改", "approve": "批准", "retire": "停用", "draft": "退回草稿"}
PAGE_SIZE = 50
MAX_SCENARIO = 100
MAX_QUESTION = 200
MAX_QUESTIONS = 200
MAX_SCRIPT = 4000
MAX_ITEM = 40
MAX_NOTE = 500
# Keywords and tags: one per line, or separated by commas, 、, ；, | or spaces.
_ITEM_SPLIT = re.compile(r"[\n,，、;；|｜\s]+")
_DIFF_FIELDS = {"status": "状态", "scenario": "场景", "category": "分类", "questions": "问法", "script": "话术",
                "keywords": "关键词", "tags": "标签", "work_order": "工单类型", "time_limits": "承诺时限"}
_FIELD_LINE = re.compile(r"^([ +-]?)([a-z_]+):(.*)$")
_SORTS = ("id", "scenario", "category", "status", "updated", "version")


def fmt_time(value: Any) -> str:
    """A stored UTC timestamp in the server's local time, to the minute."""
    if not value:
        return ""
    try:
        t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone().strftime("%Y-%m-%d %H:%M")


def fmt_serving(value: Any) -> str:
    """The assist engine's index version ("5@2026-11-23T12:56:07+00:00") as "v5（12:56 生成）"."""
    if not value:
        return ""
    version, _, stamp = str(value).partition("@")
    return f"v{version}（索引生成于 {fmt_time(stamp)}）" if stamp else f"v{version}"


def localize_diff_line(line: str) -> str:
    """A line of render_version / a unified diff with the field name (and a status value) in Chinese."""
    m = _FIELD_LINE.match(line)
    if not m or m.group(2) not in _DIFF_FIELDS:
        return line
    prefix, key, rest = m.group(1), m.group(2), m.group(3)
    if key == "status":
        rest = STATUS_NAMES.get(rest.strip(), rest.strip())
        rest = f" {rest}"
    return f"{prefix}{_DIFF_FIELDS[key]}:{rest}"


def fmt_pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}%"


def highlight(text: str, terms: list[str] | tuple[str, ...]) -> Markup:
    """`text` escaped, with every occurrence of any of `terms` wrapped in <mark> (longest terms first)."""
    words = sorted({t for t in terms if t and t.strip()}, key=len, reverse=True)
    if not words or not text:
        return escape(text or "")
    pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)
    out: list[str] = []
    last = 0
    for m in pattern.finditer(text):
        out.append(str(escape(text[last : m.start()])))
        out.append(f"<mark>{escape(m.group(0))}</mark>")
        last = m.end()
    out.append(str(escape(text[last:])))
    return Markup("".join(out))


# ---------------------------------------------------------------- library filters


@dataclass(slots=True)
class LibraryQuery:
    """The library's query string: text search, filters, sort and page (bad values are ignored, with a note)."""

    q: str = ""
    category: str = ""
    status: str = ""
    tag: str = ""
    sort: str = "id"
    dir: str = "asc"
    page: int = 1
    problems: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, params: dict[str, str]) -> LibraryQuery:
        f = cls(q=(params.get("q") or "").strip()[:200], category=(params.get("category") or "").strip(),
                tag=(params.get("tag") or "").strip())
        status = (params.get("status") or "").strip()
        if status and status not in STATUSES:
            f.problems.append(f"状态只能是 草稿/已批准/已停用，收到「{status}」")
        else:
            f.status = status
        sort = params.get("sort") or "id"
        f.sort = sort if sort in _SORTS else "id"
        f.dir = "desc" if params.get("dir") == "desc" else "asc"
        raw_page = params.get("page") or "1"
        try:
            f.page = max(1, int(raw_page))
        except ValueError:
            f.problems.append(f"页码应为正整数，收到「{raw_page}」")
        return f

    def query(self, **changes: Any) -> str:
        """This query string with some values changed (empty ones left out)."""
        values = {"q": self.q, "category": self.category, "status": self.status, "tag": self.tag,
                  "sort": self.sort, "dir": self.dir, "page": self.page, **changes}
        defaults = {"sort": "id", "dir": "asc", "page": 1}
        return urlencode({k: v for k, v in values.items() if v not in ("", None) and defaults.get(k) != v})

    @property
    def active(self) -> bool:
        return bool(self.q or self.category or self.status or self.tag)


def search_match(script: Script, q: str) -> tuple[bool, str]:
    """Whether `script` matches the search text (id, scenario, questions, script, keywords; every word must
    appear somewhere), and the question that matched (shown under the scenario) if a question did."""
    words = [w for w in q.lower().split() if w]
    if not words:
        return True, ""
    fields = [script.id, script.scenario, *script.questions, script.script, *script.keywords]
    haystack = "\n".join(fields).lower()
    if not all(w in haystack for w in words):
        return False, ""
    in_title = all(w in f"{script.id} {script.scenario}".lower() for w in words)
    if not in_title:
        for question in script.questions:
            if any(w in question.lower() for w in words):
                return True, question
    return True, ""


# ---------------------------------------------------------------- the edit / new form


@dataclass(slots=True)
class ScriptForm:
    """What the trainer typed, exactly as typed (re-rendered on error), and the problems found in it."""

    id: str = ""
    scenario: str = ""
    category: str = ""
    questions: str = ""
    script: str = ""
    keywords: str = ""
    tags: str = ""
    work_order: str = ""
    time_limits: str = ""
    note: str = ""
    base_version: int | None = None
    approve: bool = False
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_script(cls, s: Script) -> ScriptForm:
        limits = s.extra.get("time_limits") or []
        if isinstance(limits, str):
            limits = [limits]
        return cls(id=s.id, scenario=s.scenario, category=s.category, questions="\n".join(s.questions),
                   script=s.script, keywords="，".join(s.keywords), tags="，".join(s.tags),
                   work_order=str(s.extra.get("work_order") or ""),
                   time_limits="\n".join(str(x) for x in limits) if isinstance(limits, list) else str(limits),
                   base_version=s.version)

    @classmethod
    def from_form(cls, data: dict[str, Any]) -> ScriptForm:
        def text(name: str) -> str:
            value = data.get(name)
            return value if isinstance(value, str) else ""

        raw_base = text("base_version").strip()
        return cls(id=text("id").strip(), scenario=text("scenario"), category=text("category"),
                   questions=text("questions").replace("\r\n", "\n"), script=text("script").replace("\r\n", "\n"),
                   keywords=text("keywords"), tags=text("tags"), work_order=text("work_order"),
                   time_limits=text("time_limits").replace("\r\n", "\n"), note=text("note"),
                   base_version=int(raw_base) if raw_base.isdigit() else None,
                   approve=text("approve") in ("1", "on", "true"))

    @property
    def question_list(self) -> list[str]:
        return [q.strip() for q in self.questions.split("\n") if q.strip()]

    @staticmethod
    def items(value: str) -> list[str]:
        return list(dict.fromkeys(v.strip() for v in _ITEM_SPLIT.split(value) if v.strip()))

    def validate(self, *, new: bool, existing_ids: set[str] | None = None) -> bool:
        """Check every field; fills `errors` (field → Chinese message) and returns whether the form is valid."""
        e = self.errors
        e.clear()
        if new and self.id:
            if not _ID_RULE.match(self.id):
                e["id"] = "编号最多 100 个字符，不能含空格或竖线 |"
            elif existing_ids is not None and self.id in existing_ids:
                e["id"] = f"编号 {self.id} 已被占用，请换一个，或留空自动编号"
        scenario = self.scenario.strip()
        if not scenario:
            e["scenario"] = "请填写场景名称"
        elif len(scenario) > MAX_SCENARIO:
            e["scenario"] = f"场景名称最多 {MAX_SCENARIO} 个字，现在 {len(scenario)} 个"
        if not self.category.strip():
            e["category"] = "请选择或填写分类"
        elif len(self.category.strip()) > MAX_ITEM:
            e["category"] = f"分类最多 {MAX_ITEM} 个字"
        lines = [q.strip() for q in self.questions.split("\n")]
        numbered = [(i + 1, q) for i, q in enumerate(lines) if q]
        if not numbered:
            e["questions"] = "请至少填写一个客户问法（每行一个）"
        else:
            problems = []
            seen: dict[str, int] = {}
            for line, q in numbered:
                if len(q) > MAX_QUESTION:
                    problems.append(f"第 {line} 行超过 {MAX_QUESTION} 个字")
                if "|" in q or "｜" in q:
                    problems.append(f"第 {line} 行含有竖线 |（导出表格时用作分隔符）")
                if q in seen:
                    problems.append(f"第 {line} 行与第 {seen[q]} 行重复")
                seen.setdefault(q, line)
            if len(numbered) > MAX_QUESTIONS:
                problems.append(f"问法最多 {MAX_QUESTIONS} 个，现在 {len(numbered)} 个")
            if problems:
                e["questions"] = "；".join(problems[:5]) + ("…" if len(problems) > 5 else "")
        body = self.script.strip()
        if not body:
            e["script"] = "请填写标准话术（坐席对客户说的答复）"
        elif len(body) > MAX_SCRIPT:
            e["script"] = f"标准话术最多 {MAX_SCRIPT} 个字，现在 {len(body)} 个"
        for name, label in (("keywords", "关键词"), ("tags", "标签")):
            values = self.items(getattr(self, name))
            too_long = [v for v in values if len(v) > MAX_ITEM]
            if too_long:
                e[name] = f"{label}「{too_long[0][:20]}…」太长（每个最多 {MAX_ITEM} 个字）"
        if len(self.work_order.strip()) > MAX_ITEM:
            e["work_order"] = f"工单类型最多 {MAX_ITEM} 个字"
        if len(self.note) > MAX_NOTE:
            e["note"] = f"修改说明最多 {MAX_NOTE} 个字"
        return not e

    def changes(self, current: Script | None) -> dict[str, Any]:
        """The content fields for KnowledgeBase.edit/add (an emptied extra field is removed: value None)."""
        out: dict[str, Any] = {
            "scenario": self.scenario.strip(),
            "category": self.category.strip(),
            "questions": list(dict.fromkeys(self.question_list)),
            "script": self.script.strip(),
            "keywords": self.items(self.keywords),
            "tags": self.items(self.tags),
        }
        extra = current.extra if current is not None else {}
        work_order = self.work_order.strip()
        if work_order:
            out["work_order"] = work_order
        elif "work_order" in extra:
            out["work_order"] = None
        limits = [x.strip() for x in self.time_limits.split("\n") if x.strip()]
        if limits:
            out["time_limits"] = limits
        elif "time_limits" in extra:
            out["time_limits"] = None
        return out


# ---------------------------------------------------------------- lint findings in Chinese

SEVERITY_NAMES = {"error": "错误", "warning": "警告", "info": "提示"}


def lint_message(issue: LintIssue, script_id: str) -> str:
    """A lint finding about `script_id`, in Chinese (the lint module writes English for the CLI)."""
    d = issue.details
    if issue.code == "near-duplicate":
        mine, theirs = (d.get("question"), d.get("other_question"))
        other = issue.other_id
        if issue.other_id == script_id:  # the finding is filed under the other script of the pair
            mine, theirs, other = theirs, mine, issue.script_id
        how = "完全相同" if issue.severity == "error" else f"相似度 {d.get('similarity', 0):.2f}"
        pairs = f"（共 {d['pairs']} 组相似问法）" if d.get("pairs", 1) > 1 else ""
        return (f"问法「{mine}」与 {other} 的「{theirs}」{how}{pairs}：两个话术排序会互相干扰，"
                "同一问法只应保留在一个话术中")
    if issue.code == "duplicate-question":
        return f"问法「{d.get('question')}」重复出现"
    if issue.code == "few-questions":
        return (f"只有 {d.get('questions')} 个不同的问法，建议至少 {d.get('min_questions')} 个："
                "补充客户的真实说法（口语、方言、错别字）")
    if issue.code == "time-limit-missing":
        return f"话术提到「{d.get('trigger')}」，但没有说明{d.get('rule')}（{d.get('published')}）"
    if issue.code == "time-limit-not-stated":
        missing = "、".join(d.get("missing") or [])
        return f"承诺时限「{d.get('time_limit')}」未在话术正文中写明（缺少 {missing}）"
    return issue.message


def lint_for(issues: list[LintIssue], script_id: str) -> list[dict[str, str]]:
    rank = {"error": 0, "warning": 1, "info": 2}
    mine = [i for i in issues if i.script_id == script_id or i.other_id == script_id]
    mine.sort(key=lambda i: rank.get(i.severity, 9))
    return [{"severity": i.severity, "severity_name": SEVERITY_NAMES.get(i.severity, i.severity), "code": i.code,
             "message": lint_message(i, script_id),
             "other_id": (i.script_id if i.other_id == script_id else i.other_id) or ""} for i in mine]


# ---------------------------------------------------------------- feedback table

FEEDBACK_SORTS = ("script_id", "scenario", "shown", "accepted", "dismissed", "used", "acceptance_rate",
                  "dismissal_rate", "adjustment")


def sort_feedback(rows: list[dict[str, Any]], key: str, direction: str) -> list[dict[str, Any]]:
    if key not in FEEDBACK_SORTS:
        key = "shown"
    reverse = direction != "asc"
    present = [r for r in rows if r.get(key) is not None]
    missing = [r for r in rows if r.get(key) is None]  # no rate yet (never shown): always last
    present.sort(key=lambda r: (r[key], r["script_id"]), reverse=reverse)
    return present + missing


def category_counts(scripts: list[Script]) -> list[tuple[str, int]]:
    counts = Counter(s.category for s in scripts if s.category)
    return sorted(counts.items(), key=lambda kv: kv[0])


def tag_counts(scripts: list[Script]) -> list[tuple[str, int]]:
    counts = Counter(t for s in scripts for t in s.tags)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
