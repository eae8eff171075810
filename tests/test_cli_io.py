"""`kefu validate`, `kefu convert` and the CLI's handling of bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kefu import __version__
from kefu.io import JsonlWriter, read_transcripts, repair_partial_tail
from tests.conftest import REPO, SAMPLES, write_jsonl


def test_version_and_help(cli) -> None:
    result = cli("--version")
    assert result.code == 0 and __version__ in result.out
    for args in (["--help"], ["validate", "--help"], ["convert", "--help"], ["info", "--help"]):
        result = cli(*args)
        assert result.code == 0 and "Usage" in result.out


def test_python_dash_m_works() -> None:
    proc = subprocess.run([sys.executable, "-m", "kefu", "--version"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.strip() == f"kefu {__version__}"


def test_validate_clean_file_exits_0(cli) -> None:
    result = cli("validate", str(SAMPLES / "calls.jsonl"))
    assert result.code == 0
    assert result.out.startswith("OK ") and "0 with errors" in result.out


def test_validate_reports_every_problem_with_line_and_exits_2(cli, tmp_path: Path, calls: list[dict]) -> None:
    path = tmp_path / "export.jsonl"
    path.write_text(
        json.dumps(calls[0], ensure_ascii=False)
        + "\n"
        + "{oops\n"
        + json.dumps({"call_id": "C9", "turns": [{"role": "经理", "text": "hi"}]}, ensure_ascii=False)
        + "\n"
        + json.dumps(calls[0], ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    result = cli("validate", str(path))
    assert result.code == 2
    assert f"{path}:2: invalid JSON" in result.out
    assert f"{path}:3 (call C9): turns[0].role" in result.out
    assert "duplicate, first at" in result.out and f"{path}:4" in result.out
    assert "FAILED 4 calls" in result.out and "2 with errors" in result.out


def test_validate_json_output_and_strict(cli, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "one_sided.jsonl", [{"call_id": "C1", "turns": [{"role": "agent", "text": "您好"}]}])
    assert cli("validate", str(path)).code == 0
    strict = cli("validate", str(path), "--strict", "--json")
    assert strict.code == 2
    line = json.loads(strict.out.splitlines()[0])
    assert line["severity"] == "warning" and line["line"] == 1 and line["call_id"] == "C1"


def test_validate_empty_file_is_clean(cli, tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    result = cli("validate", str(tmp_path / "empty.jsonl"))
    assert result.code == 0 and "0 calls" in result.out


def test_missing_file_and_bad_encoding_are_one_clear_message(tmp_path: Path) -> None:
    for target, expected in (
        (tmp_path / "missing.jsonl", "no such file"),
        (tmp_path / "latin.jsonl", "neither UTF-8 nor GB18030"),
    ):
        if target.name == "latin.jsonl":
            target.write_bytes(b"\xff\xfe\x81\x00\xff\x80" * 50)
        proc = subprocess.run(
            [sys.executable, "-m", "kefu", "validate", str(target)], capture_output=True, text=True, cwd=REPO
        )
        assert proc.returncode == 2
        assert proc.stderr.startswith("error: ") and expected in proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_validate_reads_stdin() -> None:
    data = "坐席：您好，国家电网95598\n客户：我家停电了\n"
    proc = subprocess.run(
        [sys.executable, "-m", "kefu", "validate"], input=data, capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0 and "1 calls: 1 valid" in proc.stdout


def test_convert_roundtrip_jsonl_csv_jsonl(cli, tmp_path: Path, jsonl_file: Path) -> None:
    csv_path, back = tmp_path / "out.csv", tmp_path / "back.jsonl"
    assert cli("convert", str(jsonl_file), "-o", str(csv_path)).code == 0
    assert csv_path.read_text(encoding="utf-8").splitlines()[0] == "call_id,agent_id,channel,role,text,start,end"
    assert cli("convert", str(csv_path), "-o", str(back)).code == 0
    original, again = list(read_transcripts(jsonl_file)), list(read_transcripts(back))
    assert [(t.role, t.text, t.start) for c in original for t in c.turns] == [
        (t.role, t.text, t.start) for c in again for t in c.turns
    ]
    assert again[0].extra["agent_id"] == "A07"


def test_convert_on_error_fail_writes_nothing(cli, tmp_path: Path, calls: list[dict]) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [calls[0], {"call_id": "bad"}, calls[1]])
    out = tmp_path / "out.jsonl"
    out.write_text("previous output\n", encoding="utf-8")
    result = cli("convert", str(src), "-o", str(out))
    assert result.code == 2 and "in.jsonl:2 (call bad): turns: is required" in result.err
    assert out.read_text(encoding="utf-8") == "previous output\n"  # untouched
    assert not list(tmp_path.glob(".out.jsonl.*"))  # no temp file left behind


def test_convert_on_error_skip_keeps_one_line_per_input(cli, tmp_path: Path, calls: list[dict]) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [calls[0], {"call_id": "bad"}, calls[1]])
    out = tmp_path / "out.jsonl"
    result = cli("convert", str(src), "-o", str(out), "--on-error", "skip")
    assert result.code == 0
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [x["call_id"] for x in lines] == ["C001", "bad", "C002"]
    assert lines[1]["error"] == "turns: is required" and lines[1]["source"].endswith("in.jsonl:2")
    assert "in.jsonl:2" in result.err


def test_bad_option_value_is_a_clear_error(cli, jsonl_file: Path) -> None:
    result = cli("convert", str(jsonl_file), "--on-error", "ignore")
    assert result.code == 2 and "--on-error must be fail or skip" in result.err


def test_atomic_writer_keeps_old_file_on_crash(tmp_path: Path) -> None:
    out = tmp_path / "scores.jsonl"
    out.write_text('{"old": 1}\n', encoding="utf-8")
    with pytest.raises(RuntimeError), JsonlWriter(out) as writer:
        writer.write({"call_id": "C1"})
        raise RuntimeError("crash mid-job")
    assert out.read_text(encoding="utf-8") == '{"old": 1}\n'
    with JsonlWriter(out) as writer:
        writer.write({"call_id": "中文"})
    assert json.loads(out.read_text(encoding="utf-8")) == {"call_id": "中文"}


def test_append_mode_repairs_a_torn_last_line(tmp_path: Path) -> None:
    out = tmp_path / "scores.jsonl"
    out.write_text('{"call_id": "C1"}\n{"call_id": "C2", "sco', encoding="utf-8")
    assert repair_partial_tail(out) > 0
    with JsonlWriter(out, mode="append") as writer:
        writer.write({"call_id": "C2"})
    assert [json.loads(x)["call_id"] for x in out.read_text(encoding="utf-8").splitlines()] == ["C1", "C2"]


def test_ctrl_c_leaves_no_partial_output(tmp_path: Path) -> None:
    """SIGINT in the middle of a conversion: clean message, exit 130, target file not created."""
    line = json.dumps({"call_id": "X", "turns": [{"role": "agent", "text": "您好" * 50}]}, ensure_ascii=False)
    out = tmp_path / "out.jsonl"
    # Transcripts arrive on stdin, which stays open: the job is certainly mid-way when SIGINT comes (a file
    # input could be converted completely before the signal on a fast machine).
    proc = subprocess.Popen(
        [sys.executable, "-m", "kefu", "-q", "convert", "-o", str(out)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A job started in the background (`make test &`, nohup) inherits SIGINT ignored, and Python keeps it
        # ignored: give the child the default disposition a terminal's Ctrl-C meets.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdin is not None
    proc.stdin.write((line + "\n") * 20_000)
    proc.stdin.flush()
    deadline = time.time() + 30
    while time.time() < deadline and not list(tmp_path.glob(".out.jsonl.*")):
        time.sleep(0.05)
    assert list(tmp_path.glob(".out.jsonl.*")), "conversion did not start"
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted" in err
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl.*"))
