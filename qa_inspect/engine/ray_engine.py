"""Ray engine: the same job on a Ray cluster, one scorer actor per worker, identical ordered output."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from kefu.io import KefuError
from qa_inspect.engine.base import Chunk, ScoreJob, score_chunk

log = logging.getLogger(__name__)


class _ScorerActor:
    """Holds one Scorer: the scorecard and the classifier are loaded once per actor."""

    def __init__(self, job: ScoreJob) -> None:
        self.scorer = job.build_scorer()

    def score(self, chunk: Chunk) -> list[str]:
        return score_chunk(self.scorer, chunk)


class RayEngine:
    """Score on a Ray cluster: `address` None starts a local one (or joins RAY_ADDRESS when set).

    Chunks go to the actors round-robin with at most `max_in_flight` outstanding; results are
    collected oldest first, so the output order is the input order.
    """

    name = "ray"

    def __init__(
        self, job: ScoreJob, workers: int | None = None, address: str | None = None, max_in_flight: int | None = None
    ) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.job = job
        self.workers = workers
        self.address = address
        self.max_in_flight = max_in_flight

    def _ray(self) -> Any:
        try:
            import ray
        except ImportError:
            raise KefuError("--engine ray needs Ray: pip install 'kefu[ray]' (or pip install ray)") from None
        return ray

    def run(self, chunks: Iterable[Chunk]) -> Iterator[str]:
        ray = self._ray()
        started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address:
                kwargs["address"] = self.address
            elif self.workers:
                kwargs["num_cpus"] = self.workers
            try:
                ray.init(**kwargs)
            except Exception as exc:
                raise KefuError(f"cannot start or join the Ray cluster ({self.address or 'local'}): {exc}") from exc
            started = True
        try:
            n = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            actor_cls = ray.remote(num_cpus=1)(_ScorerActor)
            actors = [actor_cls.remote(self.job) for _ in range(n)]
            limit = self.max_in_flight or 4 * n
            pending: deque[Any] = deque()
            try:
                for k, chunk in enumerate(chunks):
                    pending.append(actors[k % n].score.remote(chunk))
                    if len(pending) >= limit:
                        yield from self._get(ray, pending.popleft())
                while pending:
                    yield from self._get(ray, pending.popleft())
            finally:
                for actor in actors:
                    ray.kill(actor)
        finally:
            if started:
                ray.shutdown()

    @staticmethod
    def _get(ray: Any, ref: Any) -> list[str]:
        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            raise KefuError(f"a Ray scorer actor failed to start or died: {exc}") from exc
        except ray.exceptions.RayTaskError as exc:
            raise KefuError(f"scoring failed on the Ray cluster: {exc}") from exc
