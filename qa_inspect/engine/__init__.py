"""Bulk scoring engines: local processes or a Ray cluster, both streaming with ordered output."""

from __future__ import annotations

from qa_inspect.engine.base import Engine, LineWriter, ScoreJob, chunked, dumps, score_chunk
from qa_inspect.engine.local import LocalEngine

ENGINES = ("local", "ray")


def make_engine(name: str, job: ScoreJob, workers: int | None = None, address: str | None = None) -> Engine:
    """The engine called `name` (local or ray) for `job`."""
    if name == "local":
        return LocalEngine(job, workers or 1)
    if name == "ray":
        from qa_inspect.engine.ray_engine import RayEngine

        return RayEngine(job, workers, address)
    raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")


__all__ = [
    "ENGINES",
    "Engine",
    "LineWriter",
    "LocalEngine",
    "ScoreJob",
    "chunked",
    "dumps",
    "make_engine",
    "score_chunk",
]
