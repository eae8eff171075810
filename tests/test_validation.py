"""Record validation: every problem is found and located, warnings are not errors."""

from __future__ import annotations

from pathlib import Path

from kefu.io import iter_records
from kefu.schemas import parse_transcript


def problems_of(raw: dict) -> list[str]:
    return [str(p) for p in parse_transcript(raw)[1] if p.severity == "error"]


def test_required_fields() -> None:
    assert problems_of({"turns": [{"role": "agent", "text": "您好"}]}) == ["call_id: is required and must not be empty"]
    assert problems_of({"call_id": "C1"}) == ["turns: is required"]
    assert "turns: is empty" in problems_of({"call_id": "C1", "turns": []})[0]
    assert "must be a list" in problems_of({"call_id": "C1", "turns": "坐席：您好"})[0]


def test_every_turn_problem_is_reported_at_once() -> None:
    raw = {
        "call_id": "C1",
        "turns": [
            {"role": "机器人", "text": "您好"},
            {"role": "customer"},
            {"role": "agent", "text": 5},
            {"role": "agent", "text": "好的", "start": "abc", "end": 1},
            {"role": "agent", "text": "好的", "start": 5, "end": 2},
            "not a turn",
        ],
    }
    found = problems_of(raw)
    assert any(p.startswith("turns[0].role") and "机器人" in p for p in found)
    assert "turns[1].text: is required" in found
    assert any(p.startswith("turns[2].text: must be a string") for p in found)
    assert any(p.startswith("turns[3].start") for p in found)
    assert any(p.startswith("turns[4]") and "before start" in p for p in found)
    assert any(p.startswith("turns[5]") for p in found)
    assert len(found) == 6


def test_warnings_do_not_reject_the_call() -> None:
    transcript, problems = parse_transcript(
        {
            "call_id": "C1",
            "turns": [
                {"role": "agent", "text": "您好", "start": 5.0, "end": 6.0},
                {"role": "customer", "text": " ", "start": 1.0, "end": 2.0},
            ],
        }
    )
    assert transcript is not None
    messages = [str(p) for p in problems]
    assert all(p.severity == "warning" for p in problems)
    assert "turns[1].text: text is empty" in messages
    assert any("before the previous turn" in m for m in messages)


def test_csv_problem_points_at_its_own_row(tmp_path: Path) -> None:
    path = tmp_path / "calls.csv"
    path.write_text(
        "call_id,role,text,start,end\nC1,坐席,您好,0,1\nC1,机器人,嗯,1,2\nC1,客户,停电,3,x\n"
        "C2,客户,电费,1,2,3\nC3,客户,你好,,\nC3,客户,你好,,\nC1,坐席,again,,\n",
        encoding="utf-8",
    )
    records = list(iter_records(path))
    c1 = records[0]
    assert not c1.ok and c1.line == 2
    text = c1.describe()
    assert "line 3 (turns[1].role)" in text and "line 4 (turns[2].end)" in text
    assert records[1].line == 5 and records[1].call_id == "C2" and "has 6 cells" in records[1].describe()
    assert records[2].ok and records[2].warnings  # C3: one side only → warning
    assert "not contiguous" in records[3].describe() and records[3].line == 8


def test_text_line_without_role_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "call.txt"
    path.write_text("坐席：您好\n这一行没有角色\n客户：停电了\n", encoding="utf-8")
    (record,) = iter_records(path)
    assert not record.ok
    assert "line 2" in record.describe() and "这一行没有角色" in record.describe()
