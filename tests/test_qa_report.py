"""`kefu qa report`: the offline HTML page, the per-agent tables, error lines and masking."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from kefu.io import KefuError
from qa_inspect.report import ReportData, aggregate, build_report


def _dims(c: float, e: float, p: float, a: float) -> dict[str, Any]:
    return {
        "courtesy": {"name": "礼貌度（服务规范）", "score": c, "max": 30},
        "empathy": {"name": "同理心", "score": e, "max": 25},
        "professional_knowledge": {"name": "专业知识", "score": p, "max": 25},
        "answering_skill": {"name": "应答技巧", "score": a, "max": 20},
    }


def _taboo(turn: int, text: str, span: list[int], pid: str, severity: int, category: str) -> dict[str, Any]:
    return {"turn": turn, "text": text, "span": span, "phrase": text, "phrase_id": pid, "category": category,
            "severity": severity, "source": "lexicon"}  # fmt: skip


def _rule(rule: str, t: dict[str, Any]) -> dict[str, Any]:
    return {"rule": rule, "type": "taboo_lexicon", **{k: v for k, v in t.items() if k != "turn"}, "turn": t["turn"]}


T_REPEAT = _taboo(2, "说了多少遍了", [0, 6], "T010", 2, "不耐烦")
T_BLAME = _taboo(2, "你自己不会看", [18, 24], "T030", 2, "指责")
T_PROVOKE = _taboo(1, "你去投诉啊", [0, 5], "T100", 3, "挑衅")

# A small `kefu qa score` output: two agents, two days, taboo and rule hits, an error line with a
# phone number in it, and a line that is not JSON.
SCORED: list[Any] = [
    {"call_id": "C001", "agent_id": "A07", "channel": "voice", "date": "2026-07-14", "score": 95.0, "fatal": False,
     "fatal_items": [], "dimensions": _dims(30, 25, 25, 15),
     "deductions": [{"item": "long_silence", "name": "静音过长未告知", "dimension": "answering_skill", "points": 3,
                     "hits": 1}],
     "complaint_risk": 0.1, "empathy": 0.8, "scorer": "rules", "taboo": [],
     "rule_hits": [{"rule": "long_silence", "type": "silence", "source": "timing", "turn": 4}],
     "needs_review": [], "labels": {"dissatisfied": 0}, "review": False, "review_reason": []},
    {"call_id": "C002", "agent_id": "A03", "channel": "voice", "date": "2026-07-14", "score": 50.0, "fatal": False,
     "fatal_items": [], "dimensions": _dims(10, 15, 15, 10),
     "deductions": [{"item": "taboo_serious", "name": "服务忌语", "dimension": "courtesy", "points": 20, "hits": 2}],
     "complaint_risk": 0.9, "empathy": 0.1, "scorer": "rules", "taboo": [T_REPEAT, T_BLAME],
     "rule_hits": [_rule("taboo_serious", T_REPEAT), _rule("taboo_serious", T_BLAME),
                   {"rule": "no_apology_after_complaint", "type": "anchor_response", "source": "lexicon", "turn": 3,
                    "text": "我要投诉你", "anchor": "我要投诉你"}],
     "needs_review": ["taboo_serious"], "review": True, "review_reason": ["item:taboo_serious", "risk>=0.8"]},
    {"call_id": "C003", "agent_id": "A03", "channel": "voice", "date": "2026-07-15", "score": 0.0, "fatal": True,
     "fatal_items": ["taboo_fatal"], "dimensions": _dims(0, 25, 25, 20),
     "deductions": [{"item": "taboo_fatal", "name": "服务禁语（严重，一票否决）", "dimension": "courtesy", "points": 30,
                     "hits": 1}],
     "complaint_risk": 0.7, "empathy": 0.3, "scorer": "rules",
     "taboo": [{**T_PROVOKE, "text": "你去投诉啊，我手机13812345678"}],
     "rule_hits": [_rule("taboo_fatal", T_PROVOKE)],
     "needs_review": ["taboo_fatal"], "review": True, "review_reason": ["fatal", "item:taboo_fatal"]},
    {"call_id": "C004", "agent_id": "A07", "channel": "chat", "date": "2026-07-15", "score": 88.0, "fatal": False,
     "fatal_items": [], "dimensions": _dims(27, 25, 20, 16), "deductions": [], "complaint_risk": 0.2, "empathy": 0.6,
     "scorer": "rules", "taboo": [], "rule_hits": [{"rule": "no_time_limit", "type": "all", "source": "regex"}],
     "needs_review": [], "review": True, "review_reason": ["random_baseline"]},
    {"call_id": "C005", "error": "scoring failed: 客户电话13912345678 无法解析", "review": False, "review_reason": []},
]  # fmt: skip

TRANSCRIPTS = [
    {"call_id": "C002", "agent_id": "A03", "turns": [
        {"role": "agent", "text": "您好，95598，工号2031。"},
        {"role": "customer", "text": "我这个月电费怎么这么高 我户号是1234567890"},
        {"role": "agent", "text": "说了多少遍了，夏天用电多电费就高，你自己不会看账单吗？"},
        {"role": "customer", "text": "你这什么态度 我要投诉你"}]},
    {"call_id": "C003", "agent_id": "A03", "turns": [
        {"role": "customer", "text": "我家停电三天了 地址是城南路18号3栋"},
        {"role": "agent", "text": "你去投诉啊"}]},
    {"call_id": "C004", "agent_id": "A07", "turns": [
        {"role": "agent", "text": "您好国家电网"},
        {"role": "customer", "text": "充电桩报装需要什么材料"}]},
]  # fmt: skip


def write_scored(path: Path, rows: list[Any] = SCORED, garbage: bool = True) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        if garbage:
            fh.write("{not json\n")
    return path


@pytest.fixture()
def scored(tmp_path: Path) -> Path:
    return write_scored(tmp_path / "out.jsonl")


def run(app: typer.Typer, *args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=True)


def test_aggregate_counts_calls_agents_days_and_errors(scored: Path) -> None:
    data = aggregate(scored, quiet=True)
    assert (data.lines, data.scored, data.errors) == (6, 4, 2)
    assert [e["line"] for e in data.error_list] == [5, 6]
    rows = {r["agent_id"]: r for r in data.agent_rows()}
    assert rows["A03"]["calls"] == 2 and rows["A03"]["mean_score"] == 25.0
    assert rows["A03"]["taboo_rate"] == 1.0 and rows["A03"]["taboo_hits"] == 3
    assert rows["A03"]["mean_complaint_risk"] == 0.8 and rows["A03"]["fatal"] == 1
    assert rows["A07"]["taboo_rate"] == 0.0 and rows["A07"]["mean_score"] == 91.5
    assert [r["agent_id"] for r in data.agent_rows()] == ["A03", "A07"]  # worst first
    assert sorted(data.days) == ["2026-07-14", "2026-07-15"]
    assert data.rule_calls["taboo_serious"] == 1 and data.rule_hits["taboo_serious"] == 2
    assert data.histogram[0] == 1 and data.histogram[9] == 1
    # Fatal first, then complaint risk.
    assert [q["call_id"] for q in data.queue()] == ["C003", "C002", "C004"]


def test_review_queue_is_capped_in_memory() -> None:
    data = ReportData(queue_size=2)
    for i in range(50):
        data.add(
            {"call_id": f"X{i}", "agent_id": "A1", "score": 50.0, "complaint_risk": i / 100, "review": True}, i + 1
        )
    assert data.review_total == 50
    assert [q["call_id"] for q in data.queue()] == ["X49", "X48"]


def test_odd_field_types_do_not_crash_the_report() -> None:
    data = ReportData()
    data.add({"call_id": "X1", "score": "88", "dimensions": [1, 2], "taboo": "你找别人去", "rule_hits": {"a": 1},
              "review": True, "review_reason": "manual"}, 1)  # fmt: skip
    data.add({"call_id": "X2", "score": None}, 2)
    data.add([1, 2], 3)
    assert (data.scored, data.errors) == (1, 2)
    assert data.queue()[0]["reasons"] == ["manual"] and data.total.taboo_calls == 1


def test_html_is_self_contained_with_agent_table_and_masked_pii(scored: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    build_report(scored, out, quiet=True)
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"(src|href)\s*=\s*[\"']?https?://", page)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert page.count("<svg") >= 4  # histogram, rules, phrases, two trend charts
    assert "坐席统计" in page and "<td>A03</td>" in page and "<td>A07</td>" in page
    assert "按日趋势" in page and "2026-07-15" in page
    assert "C003" in page and "你去投诉啊" in page
    assert "13812345678" not in page and "13912345678" not in page
    assert "[手机号]" in page
    assert "无法评分" in page and "not a JSON line" in page


def test_no_mask_keeps_pii_and_says_so(scored: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    build_report(scored, out, mask=False, quiet=True)
    page = out.read_text(encoding="utf-8")
    assert "13812345678" in page and "未脱敏" in page


def test_no_dates_means_no_trend_chart(tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "date"} for r in SCORED[:4]]
    out = tmp_path / "report.html"
    build_report(write_scored(tmp_path / "nodate.jsonl", rows, garbage=False), out, quiet=True)
    assert "没有日期" in out.read_text(encoding="utf-8")


def test_cli_report_writes_html_csv_and_xlsx(qa_app: typer.Typer, scored: Path, tmp_path: Path) -> None:
    html_path, csv_path, xlsx_path = tmp_path / "r.html", tmp_path / "agents.csv", tmp_path / "agents.xlsx"
    result = run(qa_app, "report", str(scored), "-o", str(html_path), "--csv", str(csv_path), "--xlsx", str(xlsx_path))
    assert result.exit_code == 0, result.output
    assert html_path.exists()
    with open(csv_path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["agent_id"] for r in rows] == ["A03", "A07"]
    assert rows[0]["calls"] == "2" and rows[0]["taboo_rate"] == "1.0"
    from openpyxl import load_workbook

    ws = load_workbook(xlsx_path).active
    values = list(ws.values)
    assert values[0][:4] == ("坐席", "通话数", "无法评分", "平均得分")
    assert values[1][0] == "A03" and values[1][3] == 25.0


def test_cli_report_errors_are_clear(qa_app: typer.Typer, tmp_path: Path) -> None:
    result = run(qa_app, "report", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "r.html"))
    assert isinstance(result.exception, KefuError) and "no such file" in str(result.exception)
    result = run(qa_app, "report", str(tmp_path / "missing.jsonl"))
    assert isinstance(result.exception, KefuError) and "nothing to write" in str(result.exception)
    assert not (tmp_path / "r.html").exists()
