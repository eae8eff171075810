"""QA report: streaming aggregation of a `kefu qa score` output into an offline HTML page and per-agent tables."""

from __future__ import annotations

import datetime as dt
import heapq
import html
import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from kefu.io import CsvWriter, InputError, atomic_path
from kefu.progress import progress
from qa_inspect.privacy import get_masker

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).parent / "data" / "templates" / "report.html"
UNKNOWN_AGENT = "（未知坐席）"
HIGH_RISK = 0.8
BINS = 10
MAX_ERRORS_LISTED = 50

# Per-agent export columns: (key, Chinese header).
AGENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("agent_id", "坐席"),
    ("calls", "通话数"),
    ("errors", "无法评分"),
    ("mean_score", "平均得分"),
    ("min_score", "最低得分"),
    ("fatal", "致命项通话"),
    ("fatal_rate", "致命项率"),
    ("taboo_calls", "含忌语通话"),
    ("taboo_rate", "忌语率"),
    ("taboo_hits", "忌语次数"),
    ("mean_complaint_risk", "平均投诉风险"),
    ("high_risk_calls", "高投诉风险通话"),
    ("mean_empathy", "平均同理心"),
    ("review", "待复核"),
)


@dataclass
class Stats:
    """Running totals for one agent or one day: a fixed number of counters, whatever the input size."""

    calls: int = 0
    errors: int = 0
    score_sum: float = 0.0
    score_min: float | None = None
    fatal: int = 0
    taboo_calls: int = 0
    taboo_hits: int = 0
    risk_sum: float = 0.0
    risk_n: int = 0
    high_risk: int = 0
    empathy_sum: float = 0.0
    empathy_n: int = 0
    review: int = 0

    def add(self, score: float, obj: dict[str, Any]) -> None:
        self.calls += 1
        self.score_sum += score
        self.score_min = score if self.score_min is None else min(self.score_min, score)
        self.fatal += bool(obj.get("fatal"))
        taboo = _as_list(obj.get("taboo"))
        self.taboo_calls += bool(taboo)
        self.taboo_hits += len(taboo)
        risk = as_number(obj.get("complaint_risk"))
        if risk is not None:
            self.risk_sum += risk
            self.risk_n += 1
            self.high_risk += risk >= HIGH_RISK
        empathy = as_number(obj.get("empathy"))
        if empathy is not None:
            self.empathy_sum += empathy
            self.empathy_n += 1
        self.review += bool(obj.get("review"))

    def row(self) -> dict[str, Any]:
        n = self.calls
        return {
            "calls": n,
            "errors": self.errors,
            "mean_score": round(self.score_sum / n, 1) if n else None,
            "min_score": self.score_min,
            "fatal": self.fatal,
            "fatal_rate": round(self.fatal / n, 4) if n else None,
            "taboo_calls": self.taboo_calls,
            "taboo_rate": round(self.taboo_calls / n, 4) if n else None,
            "taboo_hits": self.taboo_hits,
            "mean_complaint_risk": round(self.risk_sum / self.risk_n, 4) if self.risk_n else None,
            "high_risk_calls": self.high_risk,
            "mean_empathy": round(self.empathy_sum / self.empathy_n, 4) if self.empathy_n else None,
            "review": self.review,
        }


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    return [] if value in (None, "") else [value]


def _day(value: Any) -> str | None:
    text = str(value or "")[:10]
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        return None


@dataclass
class ReportData:
    """Everything the report shows, built line by line in bounded memory.

    Memory grows with the number of agents, days, rules and taboo phrases (all small), never with
    the number of calls: the review queue and the error list are capped.
    """

    queue_size: int = 200
    lines: int = 0
    scored: int = 0
    errors: int = 0
    error_list: list[dict[str, Any]] = field(default_factory=list)
    total: Stats = field(default_factory=Stats)
    agents: dict[str, Stats] = field(default_factory=dict)
    days: dict[str, Stats] = field(default_factory=dict)
    histogram: list[int] = field(default_factory=lambda: [0] * BINS)
    rule_calls: Counter[str] = field(default_factory=Counter)
    rule_hits: Counter[str] = field(default_factory=Counter)
    rule_names: dict[str, str] = field(default_factory=dict)
    phrases: Counter[str] = field(default_factory=Counter)
    dimensions: dict[str, list[Any]] = field(default_factory=dict)  # key → [name, score sum, max sum, n]
    channels: Counter[str] = field(default_factory=Counter)
    review_total: int = 0
    _queue: list[tuple[Any, ...]] = field(default_factory=list)
    _seq: int = 0

    def __post_init__(self) -> None:
        if self.queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {self.queue_size}")

    def add_error(self, line: int, call_id: Any, error: str, agent: Any = None) -> None:
        self.errors += 1
        if agent is not None:
            self.agents.setdefault(str(agent), Stats()).errors += 1
        if len(self.error_list) < MAX_ERRORS_LISTED:
            self.error_list.append({"line": line, "call_id": call_id, "error": str(error)})

    def add(self, obj: Any, line: int) -> None:
        """Count one output line (a scored call or an error line)."""
        self.lines += 1
        if not isinstance(obj, dict):
            self.add_error(line, None, f"expected a JSON object, got {type(obj).__name__}")
            return
        if "error" in obj:
            self.add_error(line, obj.get("call_id"), obj.get("error"), obj.get("agent_id"))
            return
        score = as_number(obj.get("score"))
        if score is None:
            self.add_error(line, obj.get("call_id"), f"no numeric score (score={obj.get('score')!r})")
            return
        self.scored += 1
        agent = str(obj.get("agent_id")) if obj.get("agent_id") not in (None, "") else UNKNOWN_AGENT
        self.total.add(score, obj)
        self.agents.setdefault(agent, Stats()).add(score, obj)
        day = _day(obj.get("date"))
        if day:
            self.days.setdefault(day, Stats()).add(score, obj)
        self.histogram[min(BINS - 1, max(0, int(score // (100 / BINS))))] += 1
        if obj.get("channel"):
            self.channels[str(obj["channel"])] += 1
        for d in _as_list(obj.get("deductions")):
            if isinstance(d, dict) and d.get("item") and d.get("name"):
                self.rule_names.setdefault(str(d["item"]), str(d["name"]))
        seen: set[str] = set()
        for h in _as_list(obj.get("rule_hits")):
            if isinstance(h, dict) and h.get("rule") is not None:
                rule = str(h["rule"])
                self.rule_hits[rule] += 1
                seen.add(rule)
        self.rule_calls.update(seen)
        for t in _as_list(obj.get("taboo")):
            if isinstance(t, dict):
                self.phrases[str(t.get("phrase") or "（模型识别）")] += 1
        dims = obj.get("dimensions")
        for key, d in (dims if isinstance(dims, dict) else {}).items():
            if isinstance(d, dict) and as_number(d.get("score")) is not None:
                slot = self.dimensions.setdefault(key, [d.get("name") or key, 0.0, 0.0, 0])
                slot[1] += float(d["score"])
                slot[2] += as_number(d.get("max")) or 0.0
                slot[3] += 1
        if obj.get("review"):
            self.review_total += 1
            self._enqueue(obj, score, agent, day)

    def _enqueue(self, obj: dict[str, Any], score: float, agent: str, day: str | None) -> None:
        if self.queue_size == 0:
            return
        risk = as_number(obj.get("complaint_risk")) or 0.0
        # Fatal calls first, then the riskiest, then the lowest scores; input order breaks ties.
        priority = (bool(obj.get("fatal")), risk, -score, -self._seq)
        self._seq += 1
        taboo = [t for t in _as_list(obj.get("taboo")) if isinstance(t, dict)]
        entry = {
            "call_id": obj.get("call_id"),
            "agent_id": agent,
            "date": day or "",
            "score": score,
            "complaint_risk": risk,
            "fatal": bool(obj.get("fatal")),
            "reasons": [str(r) for r in _as_list(obj.get("review_reason"))],
            "rules": sorted({str(h.get("rule")) for h in _as_list(obj.get("rule_hits")) if isinstance(h, dict)}),
            "evidence": [str(t.get("text") or "") for t in taboo[:3]],
        }
        item = (priority, self._seq, entry)
        if len(self._queue) < self.queue_size:
            heapq.heappush(self._queue, item)
        elif item[0] > self._queue[0][0]:
            heapq.heapreplace(self._queue, item)

    def queue(self) -> list[dict[str, Any]]:
        """The review queue, most urgent first."""
        return [e for _, _, e in sorted(self._queue, key=lambda x: x[0], reverse=True)]

    def agent_rows(self) -> list[dict[str, Any]]:
        """One row per agent (AGENT_COLUMNS), lowest mean score first."""
        rows = [{"agent_id": a, **s.row()} for a, s in self.agents.items()]
        rows.sort(key=lambda r: (r["mean_score"] is None, r["mean_score"] or 0.0, r["agent_id"]))
        return rows

    def day_rows(self) -> list[dict[str, Any]]:
        return [{"date": d, **self.days[d].row()} for d in sorted(self.days)]


def iter_score_lines(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) of a score output; a line that is not JSON yields an error dict."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file (expected a `kefu qa score` output)")
    with open(p, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, {"call_id": None, "error": f"{p}:{number}: not a JSON line ({exc.msg})"}


def aggregate(path: str | Path, queue_size: int = 200, quiet: bool | None = None) -> ReportData:
    """Read a score output once, streaming, and return the report's counters."""
    data = ReportData(queue_size=queue_size)
    for number, obj in progress(iter_score_lines(path), desc="report", unit="call", quiet=quiet):
        data.add(obj, number)
    return data


# ---------------------------------------------------------------- SVG charts (inline, no scripts)

_BLUE, _RED, _ORANGE, _GREY = "#1a6fb5", "#d9363e", "#e8912d", "#888"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def svg_histogram(counts: list[int], width: int = 640, height: int = 240) -> str:
    """Vertical bars of the score distribution, one per 10-point band."""
    left, bottom, top = 40, 30, 16
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max(counts) or 1
    bar_w = plot_w / len(counts)
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="得分分布">']
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="{_GREY}"/>')
    step = 100 // len(counts)
    for i, c in enumerate(counts):
        h = plot_h * c / peak
        x = left + i * bar_w
        color = _RED if i * step < 60 else _BLUE
        parts.append(
            f'<rect x="{x + 2:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 4:.1f}" height="{h:.1f}" fill="{color}">'
            f"<title>{i * step}–{i * step + step - (0 if i == len(counts) - 1 else 1)} 分：{c} 通</title></rect>"
        )
        parts.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - h - 3:.1f}" font-size="11" '
            f'text-anchor="middle">{c}</text>'
        )
        label = f"{i * step}-{i * step + step}"
        parts.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{height - 12}" font-size="11" text-anchor="middle">{label}</text>'
        )
    parts.append(f'<text x="4" y="{top + 8}" font-size="11" fill="{_GREY}">通话数</text></svg>')
    return "".join(parts)


def svg_hbars(items: list[tuple[str, int]], width: int = 640, bar_h: int = 22) -> str:
    """Horizontal bars with labels on the left (rule or phrase counts)."""
    if not items:
        return '<p class="note">无</p>'
    label_w = 240
    height = bar_h * len(items) + 10
    peak = max(v for _, v in items) or 1
    plot_w = width - label_w - 50
    parts = [f'<svg width="{width}" height="{height}" role="img">']
    for i, (label, value) in enumerate(items):
        y = 5 + i * bar_h
        w = plot_w * value / peak
        short = label if len(label) <= 20 else label[:19] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + bar_h * 0.7:.1f}" font-size="12" text-anchor="end">{_e(short)}</text>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{bar_h - 6}" fill="{_BLUE}">'
            f"<title>{_e(label)}：{value}</title></rect>"
        )
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h * 0.7:.1f}" font-size="12">{value}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_lines(
    labels: list[str],
    series: list[tuple[str, list[float | None], str]],
    y_max: float,
    y_fmt: Callable[[float], str] = lambda v: f"{v:g}",
    width: int = 640,
    height: int = 220,
) -> str:
    """Line chart over days: one polyline per series, values from 0 to y_max, with a legend."""
    left, right, top, bottom = 46, 10, 24, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(labels)

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)
        return x, top + plot_h - plot_h * min(max(v, 0.0), y_max) / (y_max or 1)

    parts = [f'<svg width="{width}" height="{height}" role="img">']
    for k in range(5):
        v = y_max * k / 4
        _, y = xy(0, v)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{_e(y_fmt(v))}</text>')
    every = max(1, math.ceil(n / 8))
    for i, label in enumerate(labels):
        if i % every == 0 or i == n - 1:
            x, _ = xy(i, 0)
            parts.append(
                f'<text x="{x:.1f}" y="{height - 14}" font-size="10" text-anchor="middle">{_e(label[5:])}</text>'
            )
    for s, (name, values, color) in enumerate(series):
        points = [xy(i, v) for i, v in enumerate(values) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for (x, y), v in zip(points, [v for v in values if v is not None], strict=True):
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}">'
                f"<title>{_e(name)}：{_e(y_fmt(v))}</title></circle>"
            )
        parts.append(f'<rect x="{left + 8 + s * 140}" y="6" width="12" height="4" fill="{color}"/>')
        parts.append(f'<text x="{left + 24 + s * 140}" y="12" font-size="11">{_e(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------- HTML


def _fmt(value: Any, pct: bool = False, digits: int = 1) -> str:
    if value is None:
        return "–"
    if pct:
        return f"{100 * value:.1f}%"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(headers: list[str], rows: Iterable[list[tuple[str, bool]]], row_classes: Iterable[str] | None = None) -> str:
    """A table; each cell is (already-escaped html, numeric?)."""
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in headers), "</tr></thead><tbody>"]
    classes = iter(row_classes) if row_classes is not None else None
    for row in rows:
        cls = next(classes, "") if classes is not None else ""
        out.append(f'<tr class="{cls}">' if cls else "<tr>")
        out.extend(f'<td class="num">{c}</td>' if num else f"<td>{c}</td>" for c, num in row)
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def render_html(data: ReportData, source: str = "", mask: bool = True, title: str = "95598 质检报告") -> str:
    """The whole report as one self-contained HTML page (inline CSS and SVG, no external links)."""
    m = get_masker(mask)
    t = data.total.row()
    cards = [
        ("通话总数", data.lines),
        ("已评分", data.scored),
        ("无法评分", data.errors),
        ("平均得分", _fmt(t["mean_score"])),
        ("致命项率", _fmt(t["fatal_rate"], pct=True)),
        ("忌语率", _fmt(t["taboo_rate"], pct=True)),
        ("平均投诉风险", _fmt(t["mean_complaint_risk"], digits=3)),
        ("待复核", data.review_total),
    ]
    cards_html = "".join(
        f'<div class="card"><div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>' for k, v in cards
    )

    dims = (
        _table(
            ["维度", "平均得分", "满分", "得分率"],
            (
                [
                    (_e(name), False),
                    (_fmt(s / n), True),
                    (_fmt(mx / n), True),
                    (_fmt(s / mx if mx else None, pct=True), True),
                ]
                for name, s, mx, n in data.dimensions.values()
            ),
        )
        if data.dimensions
        else '<p class="note">评分结果中没有维度小计。</p>'
    )

    agent_rows = data.agent_rows()
    agents = _table(
        [
            "坐席",
            "通话数",
            "平均得分",
            "最低得分",
            "致命项",
            "忌语率",
            "忌语次数",
            "平均投诉风险",
            "高风险通话",
            "平均同理心",
            "待复核",
            "无法评分",
        ],
        (
            [
                (_e(r["agent_id"]), False),
                (_fmt(r["calls"]), True),
                (_fmt(r["mean_score"]), True),
                (_fmt(r["min_score"]), True),
                (_fmt(r["fatal"]), True),
                (_fmt(r["taboo_rate"], pct=True), True),
                (_fmt(r["taboo_hits"]), True),
                (_fmt(r["mean_complaint_risk"], digits=3), True),
                (_fmt(r["high_risk_calls"]), True),
                (_fmt(r["mean_empathy"], digits=3), True),
                (_fmt(r["review"]), True),
                (_fmt(r["errors"]), True),
            ]
            for r in agent_rows
        ),
        ("bad" if (r["mean_score"] is not None and r["mean_score"] < 60) or r["fatal"] else "" for r in agent_rows),
    )

    top_rules = data.rule_calls.most_common(15)
    rules = (
        svg_hbars([(data.rule_names.get(r, r), c) for r, c in top_rules])
        + _table(
            ["规则", "名称", "命中通话", "命中次数"],
            (
                [
                    (_e(r), False),
                    (_e(data.rule_names.get(r, "")), False),
                    (str(c), True),
                    (str(data.rule_hits[r]), True),
                ]
                for r, c in top_rules
            ),
        )
        if top_rules
        else '<p class="note">没有规则命中。</p>'
    )
    phrases = svg_hbars(data.phrases.most_common(15)) if data.phrases else '<p class="note">没有服务忌语。</p>'

    days = data.day_rows()
    if days:
        labels = [d["date"] for d in days]
        trends = (
            svg_lines(labels, [("平均得分", [d["mean_score"] for d in days], _BLUE)], 100)
            + svg_lines(
                labels,
                [
                    ("忌语率", [d["taboo_rate"] for d in days], _RED),
                    ("平均投诉风险", [d["mean_complaint_risk"] for d in days], _ORANGE),
                ],
                1.0,
                lambda v: f"{v:.2f}",
            )
            + _table(
                ["日期", "通话数", "平均得分", "致命项", "忌语率", "平均投诉风险", "待复核"],
                (
                    [
                        (_e(d["date"]), False),
                        (str(d["calls"]), True),
                        (_fmt(d["mean_score"]), True),
                        (str(d["fatal"]), True),
                        (_fmt(d["taboo_rate"], pct=True), True),
                        (_fmt(d["mean_complaint_risk"], digits=3), True),
                        (str(d["review"]), True),
                    ]
                    for d in days
                ),
            )
        )
    else:
        trends = '<p class="note">评分结果中没有日期（date 字段），无法按日统计。</p>'

    queue_rows = data.queue()
    if queue_rows:
        shown = f"共 {data.review_total} 通待复核" + (
            f"，列出最紧急的 {len(queue_rows)} 通" if len(queue_rows) < data.review_total else ""
        )
        queue = f'<p class="note">{_e(shown)}（致命项优先，其次按投诉风险、得分排序）。</p>' + _table(
            ["通话", "坐席", "日期", "得分", "投诉风险", "致命", "抽样原因", "命中规则", "忌语原文"],
            (
                [
                    (_e(q["call_id"]), False),
                    (_e(q["agent_id"]), False),
                    (_e(q["date"]), False),
                    (_fmt(q["score"]), True),
                    (_fmt(q["complaint_risk"], digits=3), True),
                    ('<span class="tag fatal">致命</span>' if q["fatal"] else "", False),
                    ("".join(f'<span class="tag">{_e(r)}</span>' for r in q["reasons"]), False),
                    ("".join(f'<span class="tag">{_e(r)}</span>' for r in q["rules"]), False),
                    ("<br>".join(_e(m(x)) for x in q["evidence"]), False),
                ]
                for q in queue_rows
            ),
        )
    else:
        queue = '<p class="note">没有被抽中复核的通话。</p>'

    if data.errors:
        more = f"（只列出前 {len(data.error_list)} 条）" if data.errors > len(data.error_list) else ""
        errors = f'<p class="note">{data.errors} 行无法评分{_e(more)}。</p>' + _table(
            ["行号", "通话", "错误"],
            ([(str(x["line"]), True), (_e(x["call_id"]), False), (_e(m(x["error"])), False)] for x in data.error_list),
        )
    else:
        errors = '<p class="note">无。</p>'

    channels = "，".join(f"{k} {v}" for k, v in data.channels.most_common())
    meta = f"来源：{source}　生成时间：{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}" + (
        f"　渠道：{channels}" if channels else ""
    )
    privacy = (
        "个人信息（手机号、电话、身份证号、银行卡号、户号、详细门牌号）已脱敏。"
        if mask
        else "注意：本报告未脱敏（--no-mask），含客户个人信息，请勿外传。"
    )
    template = Template(TEMPLATE.read_text(encoding="utf-8"))
    return template.substitute(
        title=_e(title),
        meta=_e(meta),
        cards=cards_html,
        histogram=svg_histogram(data.histogram),
        dimensions=dims,
        agents=agents,
        rules=rules,
        phrases=phrases,
        trends=trends,
        queue=queue,
        errors=errors,
        privacy=_e(privacy),
    )


# ---------------------------------------------------------------- files


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` to a temporary file beside `path` and rename it: readers never see half a file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_agents_csv(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Per-agent table as CSV (English column keys, one row per agent)."""
    with CsvWriter(path, [k for k, _ in AGENT_COLUMNS]) as out:
        for r in rows:
            out.write(r)


def write_agents_xlsx(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Per-agent table as an Excel sheet with Chinese headers (written atomically)."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("坐席统计")
    ws.append([h for _, h in AGENT_COLUMNS])
    for r in rows:
        ws.append([r.get(k) for k, _ in AGENT_COLUMNS])
    with atomic_path(path, suffix=".part.xlsx") as tmp:
        wb.save(tmp)


def build_report(
    path: str | Path,
    output: str | Path | None,
    *,
    csv_path: str | Path | None = None,
    xlsx_path: str | Path | None = None,
    mask: bool = True,
    queue_size: int = 200,
    title: str = "95598 质检报告",
    quiet: bool | None = None,
) -> ReportData:
    """Aggregate a score output and write the HTML report and per-agent tables that were asked for."""
    if queue_size < 0:
        raise InputError(f"--queue-size must be >= 0, got {queue_size}")
    data = aggregate(path, queue_size=queue_size, quiet=quiet)
    if data.lines == 0:
        log.warning("%s: no lines; the report is empty", path)
    if output is not None:
        write_text_atomic(output, render_html(data, source=Path(path).name, mask=mask, title=title))
    rows = data.agent_rows()
    if csv_path is not None:
        write_agents_csv(rows, csv_path)
    if xlsx_path is not None:
        write_agents_xlsx(rows, xlsx_path)
    return data
