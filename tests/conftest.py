"""Shared fixtures: small Chinese transcripts in every input format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from kefu.cli import main

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"

CALLS = [
    {
        "call_id": "C001",
        "agent_id": "A07",
        "channel": "voice",
        "labels": {"dissatisfied": 0},
        "turns": [
            {"role": "agent", "text": "您好，国家电网95598，工号1024，很高兴为您服务。", "start": 0.0, "end": 3.2},
            {"role": "customer", "text": "喂 我家停电了", "start": 3.9, "end": 5.1},
            {"role": "坐席", "text": "请您提供一下户号。", "start": 5.5, "end": 7.0},
        ],
    },
    {
        "call_id": "C002",
        "agent_id": "A03",
        "turns": [
            {"role": "客户", "text": "我这个月点费怎么这么高"},
            {"role": "客服", "text": "我帮您查询一下账单，请您稍等。"},
        ],
    },
]


@pytest.fixture()
def calls() -> list[dict]:
    return json.loads(json.dumps(CALLS))


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def jsonl_file(tmp_path: Path, calls: list[dict]) -> Path:
    return write_jsonl(tmp_path / "calls.jsonl", calls)


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture()
def cli(capsys: pytest.CaptureFixture[str]):
    """Run `kefu ARGS…` in-process through the real entry point; return exit code and output."""

    def run(*args: str) -> CliResult:
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture()
def qa_app() -> typer.Typer:
    """A bare Typer app with the `qa report` / `qa review` commands registered (report and review tests)."""
    from qa_inspect.review_cli import register

    app = typer.Typer(rich_markup_mode=None)

    @app.callback()
    def _root() -> None:
        """Test root."""

    register(app)
    return app
