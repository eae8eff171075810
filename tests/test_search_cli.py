"""`kefu kb search` (single and batch) and `kefu kb embed`, through a typer app that registers them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from kefu.io import KefuError
from knowledge_base.index.manager import IndexManager
from knowledge_base.search_cli import register
from tests.kb_fixtures import copy_scripts, shared_tiny_encoder


@pytest.fixture(scope="session")
def tiny_encoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_encoder(tmp_path_factory)


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_path: Path) -> Path:
    kb = tmp_path_factory.mktemp("kb-cli")
    IndexManager(kb, {"encoder": str(tiny_encoder_path)}).rebuild(copy_scripts(), kb_version=1)
    return kb


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _group() -> None:
        """kb"""

    register(app)
    return app


def run(app: typer.Typer, *args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output, result.exception


def test_search_prints_ranked_scripts(app: typer.Typer, kb: Path) -> None:
    code, out, _ = run(app, "search", "网上国网怎么绑定户号", "--kb", str(kb), "-k", "3", "--min-score", "0")
    assert code == 0
    assert out.startswith("1. K005")
    assert "matched:" in out


def test_search_json(app: typer.Typer, kb: Path) -> None:
    code, out, _ = run(app, "search", "充电桩怎么报装", "--kb", str(kb), "--json", "--min-score", "0")
    data = json.loads(out)
    assert code == 0 and data["text"] == "充电桩怎么报装"
    assert data["hits"][0]["id"] == "K010" and 0 <= data["hits"][0]["score"] <= 1
    assert "matched_terms" in data["hits"][0]


def test_search_defaults_to_kefu_home(app: typer.Typer, kb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEFU_HOME", str(kb.parent))
    (kb.parent / "kb").symlink_to(kb, target_is_directory=True)
    code, out, _ = run(app, "search", "峰谷电价怎么算", "--min-score", "0", "-k", "1")
    assert code == 0 and "K004" in out


def test_batch_search_keeps_order_and_marks_bad_lines(app: typer.Typer, kb: Path, tmp_path: Path) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        '{"id": "a", "text": "我家停电了"}\n'
        "this is not json\n"
        '{"id": "c"}\n'
        "\n"
        '{"id": 4, "text": "电费怎么这么贵"}\n'
        '["not", "an", "object"]\n',
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    code, _, exc = run(app, "search", "--kb", str(kb), "--queries", str(queries), "-k", "2", "-o", str(out))
    assert code == 0, exc
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line.get("id") for line in lines] == ["a", None, "c", 4, None]
    assert lines[0]["hits"] and set(lines[0]["hits"][0]) == {"id", "score"} and len(lines[0]["hits"]) <= 2
    assert "q.jsonl:2" in lines[1]["error"] and "q.jsonl:3" in lines[2]["error"]
    assert lines[3]["hits"][0]["id"] == "K002"
    assert "error" in lines[4]


def test_search_argument_errors(app: typer.Typer, kb: Path, tmp_path: Path) -> None:
    _, _, exc = run(app, "search", "停电", "--kb", str(kb), "--queries", str(tmp_path / "q.jsonl"))
    assert isinstance(exc, KefuError) and "not both" in str(exc)
    _, _, exc = run(app, "search", "停电", "--kb", str(kb), "-k", "0")
    assert isinstance(exc, KefuError) and "-k" in str(exc)
    _, _, exc = run(app, "search", "停电", "--kb", str(tmp_path / "empty"))
    assert isinstance(exc, KefuError) and "no search index" in str(exc)


def test_embed_adds_similarity_and_passes_columns_through(app: typer.Typer, kb: Path, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(
        "id\tq1\tq2\tlabel\tnote\n1\t我家停电了\t我家停电了\t1\t同一句\n2\t电费怎么这么高\t充电桩报装\t0\t\n"
        "3\t我家停电了\t\t0\t空\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.tsv"
    code, _, exc = run(app, "embed", "--kb", str(kb), "--pairs", str(pairs), "-o", str(out))
    assert code == 0, exc
    with open(out, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert list(rows[0]) == ["id", "q1", "q2", "label", "note", "similarity"]
    assert [r["id"] for r in rows] == ["1", "2", "3"] and rows[0]["note"] == "同一句"
    sims = [float(r["similarity"]) for r in rows]
    assert sims[0] == pytest.approx(1.0, abs=1e-4) and sims[1] < sims[0] and sims[2] == 0.0


def test_embed_requires_q1_and_q2(app: typer.Typer, kb: Path, tmp_path: Path) -> None:
    pairs = tmp_path / "bad.tsv"
    pairs.write_text("a\tq2\nx\ty\n", encoding="utf-8")
    _, _, exc = run(app, "embed", "--kb", str(kb), "--pairs", str(pairs), "-o", str(tmp_path / "o.tsv"))
    assert isinstance(exc, KefuError) and "q1" in str(exc)
    assert not (tmp_path / "o.tsv").exists()
