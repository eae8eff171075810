"""The Ray engine on a local cluster gives the same output as the local engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from kefu.io import iter_records
from qa_inspect.engine import LocalEngine, ScoreJob, chunked
from qa_inspect.engine.base import raw_chunks
from tests.conftest import SAMPLES

ray = pytest.importorskip("ray")


@pytest.fixture(autouse=True)
def _rules_only_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEFU_HOME", str(tmp_path / "home"))  # no default classifier: rules only


@pytest.mark.slow
def test_ray_engine_matches_local_engine(tmp_path: Path) -> None:
    from qa_inspect.engine.ray_engine import RayEngine

    src = SAMPLES / "calls.jsonl"
    job = ScoreJob(chunk_size=2)
    expected = list(LocalEngine(job, 1).run(chunked(iter_records(src), 2)))
    got = list(RayEngine(job, workers=2, max_in_flight=2).run(raw_chunks(src, 2)))
    assert got == expected
    assert not ray.is_initialized()  # the engine shuts down the cluster it started


@pytest.mark.slow
def test_score_cli_with_ray_engine(cli, tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert cli("-q", "qa", "score", str(SAMPLES / "calls.jsonl"), "-o", str(a)).code == 0
    result = cli("-q", "qa", "score", str(SAMPLES / "calls.jsonl"), "-o", str(b), "--engine", "ray", "-w", "2")
    assert result.code == 0, result.err
    assert a.read_bytes() == b.read_bytes()
