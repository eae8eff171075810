"""Reading and writing scenario scripts: JSONL, CSV and Excel, every bad row reported with its line."""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pytest

from kefu.io import InputError
from knowledge_base.io import ScriptFileError, read_scripts, write_scripts
from knowledge_base.schema import Script

SCRIPTS: list[dict] = [
    {
        "id": "K001",
        "scenario": "居民整户停电报修",
        "category": "故障报修",
        "questions": ["家里突然停电了怎么办", "我家整个没电了", "屋里全黑了 邻居家有电"],
        "script": "您好，请您先查看表箱内总开关是否跳闸。我们马上为您登记故障报修工单并派发抢修人员，"
        "抢修人员到达现场平均时间为城区范围45分钟、农村地区90分钟、特殊边远地区2小时。",
        "keywords": ["停电", "报修"],
        "tags": ["高频"],
        "work_order": "故障报修工单",
        "time_limits": ["抢修人员到达现场平均时间：城区范围45分钟，农村地区90分钟，特殊边远地区2小时"],
    },
    {
        "id": "K002",
        "scenario": "电费异常偏高",
        "category": "电费电价",
        "questions": ["这个月电费怎么这么高", "电费比上个月多了一倍", "我家电费突然涨了好多"],
        "script": "您好，我帮您查询近几个月的电量电费，请您提供户号。",
        "keywords": ["电费", "偏高"],
        "tags": [],
    },
    {
        "id": "K003",
        "scenario": "欠费停电后交费复电",
        "category": "缴费",
        "questions": ["交了电费怎么还没来电", "欠费停电交完钱多久恢复", "缴费以后什么时候送电"],
        "script": "您好，费用结清后我们将在24小时内为您恢复供电，请您保持电话畅通。",
        "keywords": ["欠费", "复电"],
        "tags": ["敏感场景"],
        "work_order": "业务申请工单",
    },
]


def scripts() -> list[dict]:
    return json.loads(json.dumps(SCRIPTS))


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
        encoding="utf-8",
    )
    return path


def contents(items: list[Script]) -> list[tuple[dict, str]]:
    return [(s.content(), s.status) for s in items]


def test_jsonl_keeps_extra_fields_and_defaults(tmp_path: Path) -> None:
    rows = read_scripts(write_jsonl(tmp_path / "kb.jsonl", scripts()), default_status="draft")
    assert [r.script.id for r in rows] == ["K001", "K002", "K003"]
    first = rows[0].script
    assert first.extra == {"work_order": "故障报修工单", "time_limits": SCRIPTS[0]["time_limits"]}
    assert first.status == "draft" and not rows[0].explicit_status
    assert rows[1].line == 2


def test_csv_with_pipes_chinese_headers_and_gb18030(tmp_path: Path) -> None:
    text = (
        "编号,场景,分类,问题,话术,关键词,work_order\n"
        'K010,电表走字快,计量,"电表走得太快了|电表是不是坏了 转得飞快",'
        "您好，我们为您申请电能表校验。,电表|校验,业务申请工单\n"
    )
    path = tmp_path / "kb.csv"
    path.write_bytes(text.encode("gb18030"))
    (row,) = read_scripts(path)
    s = row.script
    assert s.id == "K010" and s.category == "计量"
    assert s.questions == ["电表走得太快了", "电表是不是坏了 转得飞快"]
    assert s.keywords == ["电表", "校验"] and s.tags == []
    assert s.extra == {"work_order": "业务申请工单"}


def test_xlsx_numeric_ids_and_line_breaks_in_cells(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["id", "scenario", "questions", "script", "status"])
    sheet.append([1001, "停电查询", "什么时候来电\n停电到几点", "您好，我为您查询停电信息。", "草稿"])
    path = tmp_path / "kb.xlsx"
    book.save(path)
    (row,) = read_scripts(path)
    assert row.script.id == "1001"
    assert row.script.questions == ["什么时候来电", "停电到几点"]
    assert row.script.status == "draft" and row.explicit_status
    assert row.line == 2


def test_bad_jsonl_reports_every_problem_with_its_line(tmp_path: Path) -> None:
    good = scripts()
    missing_script = {**good[1], "script": ""}
    no_questions = {**good[2], "questions": []}
    bad_status = {**good[2], "id": "K004", "status": "published?"}
    path = write_jsonl(tmp_path / "bad.jsonl", [good[0], "{oops", missing_script, no_questions, good[0], bad_status])
    with pytest.raises(ScriptFileError) as info:
        read_scripts(path)
    text = [str(p) for p in info.value.problems]
    assert f"{path}:2: invalid JSON" in text[0]
    assert any(t.startswith(f"{path}:3 (script K002): script: is required") for t in text)
    assert any(t.startswith(f"{path}:4 (script K003): questions: needs at least one") for t in text)
    assert any(t.startswith(f"{path}:5 (script K001): id: duplicate id, first at line 1") for t in text)
    assert any(t.startswith(f"{path}:6 (script K004): status: must be one of") for t in text)
    assert len(text) == 5


def test_bad_xlsx_rows_are_reported_by_row(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["id", "scenario", "questions", "script"])
    sheet.append(["K1", "停电", "没电了", "您好"])
    sheet.append(["K2", "", "没电了", "您好"])
    sheet.append(["K 3", "停电", "没电了", "您好"])
    path = tmp_path / "bad.xlsx"
    book.save(path)
    with pytest.raises(ScriptFileError) as info:
        read_scripts(path)
    text = [str(p) for p in info.value.problems]
    assert text[0] == f"{path}:row 3 (script K2): scenario: is required"
    assert text[1].startswith(f"{path}:row 4 (script K 3): id: must be 1–100 characters without spaces")


def test_missing_columns_and_unknown_formats_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "kb.csv"
    path.write_text("id,scenario,script\nK1,停电,您好\n", encoding="utf-8")
    with pytest.raises(InputError, match="missing questions"):
        read_scripts(path)
    with pytest.raises(InputError, match="extension"):
        read_scripts(write_jsonl(tmp_path / "kb.yaml", []))
    with pytest.raises(InputError, match="no such file"):
        read_scripts(tmp_path / "none.jsonl")


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "xlsx"])
def test_export_then_read_gives_the_same_scripts(tmp_path: Path, suffix: str) -> None:
    original = [r.script for r in read_scripts(write_jsonl(tmp_path / "in.jsonl", scripts()))]
    original[1].status = "retired"
    out = tmp_path / f"out.{suffix}"
    assert write_scripts(original, out) == 3
    again = [r.script for r in read_scripts(out)]
    assert contents(again) == contents(original)
    assert not list(tmp_path.glob(".*.part"))  # atomic write leaves no temporary file
