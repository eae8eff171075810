"""Readers for every transcript format, role aliases, pass-through keys and streaming."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kefu.io import InputError, RecordError, iter_records, read_transcripts
from tests.conftest import SAMPLES, write_jsonl


def test_jsonl_reads_calls_roles_and_passthrough(jsonl_file: Path) -> None:
    calls = list(read_transcripts(jsonl_file))
    assert [c.call_id for c in calls] == ["C001", "C002"]
    first = calls[0]
    assert [t.role for t in first.turns] == ["agent", "customer", "agent"]  # 坐席 → agent
    assert first.turns[1].start == 3.9 and first.turns[1].end == 5.1
    assert first.extra == {"agent_id": "A07", "channel": "voice", "labels": {"dissatisfied": 0}}
    assert first.passthrough()["labels"] == {"dissatisfied": 0}
    assert "turns" not in first.passthrough()
    assert [t.role for t in calls[1].turns] == ["customer", "agent"]  # 客户/客服 aliases
    assert calls[1].turns[0].start is None


def test_csv_one_row_per_turn_groups_calls(tmp_path: Path) -> None:
    path = tmp_path / "calls.csv"
    path.write_text(
        "call_id,agent_id,role,text,start,end\n"
        "C1,A01,坐席,您好 95598,0,2.5\n"
        'C1,A01,客户,"我家停电了,整栋楼都没电",3,6\n'
        "C2,A02,用户,电费怎么交,,\n"
        "C2,A02,客服,可以在网上国网App缴费,,\n",
        encoding="utf-8",
    )
    calls = list(read_transcripts(path))
    assert [c.call_id for c in calls] == ["C1", "C2"]
    assert calls[0].turns[1].text == "我家停电了,整栋楼都没电"
    assert calls[0].turns[0].end == 2.5
    assert calls[0].extra == {"agent_id": "A01"}
    assert [t.role for t in calls[1].turns] == ["customer", "agent"]
    assert calls[1].turns[0].start is None


def test_tsv_and_gb18030_csv_are_detected(tmp_path: Path) -> None:
    tsv = tmp_path / "calls.tsv"
    tsv.write_text("call_id\trole\ttext\nC1\tagent\t您好\nC1\tcustomer\t停电了\n", encoding="utf-8")
    assert [t.text for t in next(iter(read_transcripts(tsv))).turns] == ["您好", "停电了"]
    gbk = tmp_path / "excel_export.csv"
    gbk.write_bytes("call_id,role,text\nC9,坐席,您好，国家电网\nC9,客户,我家跳闸了\n".encode("gb18030"))
    (call,) = read_transcripts(gbk)
    assert call.turns[1].text == "我家跳闸了"


def test_parquet_both_shapes(tmp_path: Path, calls: list[dict]) -> None:
    nested = tmp_path / "calls.parquet"
    rows = [
        {
            "call_id": c["call_id"],
            "agent_id": c["agent_id"],
            "turns": [{"role": t["role"], "text": t["text"]} for t in c["turns"]],
        }
        for c in calls
    ]
    pq.write_table(pa.Table.from_pylist(rows), nested)
    got = list(read_transcripts(nested))
    assert [c.call_id for c in got] == ["C001", "C002"]
    assert got[0].turns[2].role == "agent" and got[0].extra["agent_id"] == "A07"

    flat = tmp_path / "turns.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [
                {"call_id": "P1", "role": "agent", "text": "您好", "start": 0.0, "end": 1.0},
                {"call_id": "P1", "role": "customer", "text": "停电了", "start": 1.5, "end": 2.0},
            ]
        ),
        flat,
    )
    (call,) = read_transcripts(flat)
    assert [t.text for t in call.turns] == ["您好", "停电了"] and call.turns[1].start == 1.5


def test_plain_text_with_headers_and_times(tmp_path: Path) -> None:
    path = tmp_path / "two_calls.txt"
    path.write_text(
        "# call_id: T1\n# agent_id: A05\n"
        "[00:00.0-00:02.5] 坐席：您好，国家电网95598\n"
        "[00:03-00:05] 客户: 我家停电了\n\n"
        "# T2\n坐席：您好\n用户：电费太高了\n",
        encoding="utf-8",
    )
    first, second = read_transcripts(path)
    assert first.call_id == "T1" and first.extra == {"agent_id": "A05"}
    assert first.turns[0].end == 2.5 and first.turns[1].start == 3.0
    assert second.call_id == "T2" and [t.role for t in second.turns] == ["agent", "customer"]


def test_plain_text_without_header_is_one_call_named_after_file() -> None:
    (call,) = read_transcripts(SAMPLES / "call.txt")
    assert call.call_id == "T0001" and len(call.turns) == 5
    assert call.has_timestamps


def test_stdin_format_is_sniffed(calls: list[dict]) -> None:
    data = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in calls).encode()
    records = list(iter_records("-", stream=io.BytesIO(data)))
    assert [r.call_id for r in records] == ["C001", "C002"] and all(r.ok for r in records)
    csv_data = "call_id,role,text\nS1,坐席,您好\n".encode()
    (record,) = iter_records(None, stream=io.BytesIO(csv_data))
    assert record.ok and record.transcript.turns[0].text == "您好"
    text = "坐席：您好\n客户：停电了\n".encode()
    (record,) = iter_records(None, stream=io.BytesIO(text))
    assert record.ok and record.call_id == "stdin"


def test_bundled_samples_are_valid() -> None:
    records = list(iter_records(SAMPLES / "calls.jsonl"))
    assert len(records) >= 5 and all(r.ok and not r.problems for r in records)


def test_reader_streams_without_reading_everything(tmp_path: Path) -> None:
    """The first call comes back before a bad line far down the file is reached."""
    path = tmp_path / "big.jsonl"
    good = json.dumps({"call_id": "X", "turns": [{"role": "agent", "text": "您好"}]}, ensure_ascii=False)
    path.write_text((good + "\n") * 50_000 + "{broken\n", encoding="utf-8")
    records = iter_records(path)
    assert next(records).ok
    assert sum(1 for _ in records) == 50_000  # 49,999 good + the broken one, reported not raised


def test_on_error_fail_raises_with_location(tmp_path: Path, calls: list[dict]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(calls[0], ensure_ascii=False) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(RecordError, match=r"bad.jsonl:2: invalid JSON"):
        list(read_transcripts(path))


def test_on_error_skip_collects_bad_records(tmp_path: Path, calls: list[dict]) -> None:
    bad_role = {"call_id": "C3", "turns": [{"role": "robot", "text": "hi"}]}
    path = write_jsonl(tmp_path / "mixed.jsonl", [calls[0], bad_role, calls[1]])
    errors: list = []
    good = list(read_transcripts(path, on_error="skip", errors=errors))
    assert [c.call_id for c in good] == ["C001", "C002"]
    (err,) = errors
    assert err.line == 2 and err.call_id == "C3"
    assert "turns[0].role" in err.describe() and "robot" in err.describe()


def test_empty_input_is_not_an_error(tmp_path: Path) -> None:
    for name in ("empty.jsonl", "empty.txt", "empty.csv"):
        path = tmp_path / name
        path.write_text("", encoding="utf-8")
        assert list(iter_records(path)) == []
    (tmp_path / "blank.jsonl").write_text("\n\n  \n", encoding="utf-8")
    assert list(iter_records(tmp_path / "blank.jsonl")) == []


def test_whole_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        list(iter_records(tmp_path / "missing.jsonl"))
    odd = tmp_path / "calls.xyz"
    odd.write_text("{}", encoding="utf-8")
    with pytest.raises(InputError, match="cannot tell the format"):
        list(iter_records(odd))
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00\x81\x00\xff" * 100)
    with pytest.raises(InputError, match=r"neither UTF-8 nor GB18030|cannot decode"):
        list(iter_records(binary))
    headerless = tmp_path / "noheader.csv"
    headerless.write_text("C1,agent,hello\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"noheader.csv:1: the header must name the columns"):
        list(iter_records(headerless))
    with pytest.raises(InputError, match="not a readable Parquet"):
        (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
        list(iter_records(tmp_path / "junk.parquet"))
