"""Local engine: N worker processes, ordered output, a bounded number of chunks in flight."""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

from kefu.io import KefuError
from qa_inspect.engine.base import Chunk, ScoreJob, score_chunk
from qa_inspect.scoring import Scorer

log = logging.getLogger(__name__)

_SCORER: Scorer | None = None
_INIT_ERROR: str | None = None


def _init_worker(job: ScoreJob) -> None:
    global _SCORER, _INIT_ERROR
    try:
        _SCORER = job.build_scorer()  # scorecard and classifier loaded once per worker
    except Exception as exc:  # reported with the first chunk: a failing initializer breaks the pool silently
        _INIT_ERROR = f"{type(exc).__name__}: {exc}" if not isinstance(exc, KefuError) else str(exc)


def _work(chunk: Chunk) -> list[str]:
    if _SCORER is None:
        raise KefuError(f"worker could not start: {_INIT_ERROR}")
    return score_chunk(_SCORER, chunk)


class LocalEngine:
    """Score on `workers` local processes (in this process when workers is 1).

    At most `max_in_flight` chunks are queued or running at once, so memory stays constant however
    long the input is; results are yielded in input order.
    """

    name = "local"

    def __init__(self, job: ScoreJob, workers: int = 1, max_in_flight: int | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.job = job
        self.workers = workers
        self.max_in_flight = max_in_flight or 4 * workers
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {self.max_in_flight}")

    def run(self, chunks: Iterable[Chunk]) -> Iterator[str]:
        if self.workers == 1:
            scorer = self.job.build_scorer()
            for chunk in chunks:
                yield from score_chunk(scorer, chunk)
            return
        # fork starts workers fast; the parent never loads torch or a model, so forking is safe.
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        pool = ProcessPoolExecutor(self.workers, mp.get_context(method), initializer=_init_worker, initargs=(self.job,))
        pending: deque[Future[list[str]]] = deque()
        try:
            for chunk in chunks:
                pending.append(pool.submit(_work, chunk))
                if len(pending) >= self.max_in_flight:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        finally:
            pool.shutdown(wait=not pending, cancel_futures=True)
