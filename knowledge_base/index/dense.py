"""Dense vectors in FAISS: exact inner product for small libraries, HNSW above a size threshold."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

KINDS = ("auto", "flat", "hnsw")


@dataclass(slots=True)
class DenseConfig:
    """Which FAISS index to build; `auto` picks flat below `approx_threshold` rows, HNSW at or above it."""

    kind: str = "auto"
    approx_threshold: int = 50_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 48
    hnsw_ef_search: int = 96
    hnsw_fp16: bool = True  # store HNSW vectors as float16: half the memory, no visible loss in ranking
    search_threads: int = 1  # one query is too small to split; extra OpenMP threads only add wake-up jitter

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"dense index kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.approx_threshold < 1:
            raise ValueError(f"approx_threshold must be >= 1 row, got {self.approx_threshold}")
        if self.search_threads < 1:
            raise ValueError(f"search_threads must be >= 1, got {self.search_threads}")
        if self.hnsw_m < 4 or self.hnsw_ef_search < 1 or self.hnsw_ef_construction < 1:
            raise ValueError(
                f"HNSW needs m >= 4 and ef values >= 1, got {self.hnsw_m}, "
                f"{self.hnsw_ef_construction}, {self.hnsw_ef_search}"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DenseConfig:
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown dense index settings: {', '.join(sorted(unknown))}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DenseIndex:
    """Row vectors by integer id in an IndexIDMap2, so rows can be added, replaced and removed.

    Flat indexes delete for real; HNSW cannot, so its deleted ids are tombstones filtered at search
    time (with over-fetching) until the next full rebuild drops them.
    """

    def __init__(self, dim: int, config: DenseConfig | None = None) -> None:
        if dim < 1:
            raise ValueError(f"vector dimension must be >= 1, got {dim}")
        self.dim = dim
        self.config = config or DenseConfig()
        self.kind = "flat"
        self.index: Any = None
        self.tombstones: set[int] = set()

    def _new(self, n: int) -> Any:
        import faiss

        cfg = self.config
        kind = cfg.kind if cfg.kind != "auto" else ("hnsw" if n >= cfg.approx_threshold else "flat")
        self.kind = kind
        if kind == "flat":
            inner = faiss.IndexFlatIP(self.dim)
        else:
            if cfg.hnsw_fp16:
                inner = faiss.IndexHNSWSQ(
                    self.dim, faiss.ScalarQuantizer.QT_fp16, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT
                )
            else:
                inner = faiss.IndexHNSWFlat(self.dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = cfg.hnsw_ef_construction
            inner.hnsw.efSearch = cfg.hnsw_ef_search
        return faiss.IndexIDMap2(inner)

    @property
    def size(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal) - len(self.tombstones)

    def build(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        _threads(os.cpu_count() or 1)  # building is bulk work: use every core
        self.index = self._new(len(ids))
        self.tombstones = set()
        if len(ids):
            if not self.index.is_trained:  # the fp16 quantiser needs no data, but faiss wants a train call
                self.index.train(np.ascontiguousarray(vectors[:1000], np.float32))
            self.index.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.asarray(ids, np.int64))
        log.info("dense index: %s, %d vectors of %d dimensions", self.kind, len(ids), self.dim)

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        if self.index is None:
            self.index = self._new(len(ids))
        if len(ids):
            if not self.index.is_trained:
                self.index.train(np.ascontiguousarray(vectors, np.float32))
            self.index.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.asarray(ids, np.int64))

    def remove(self, ids: Sequence[int]) -> None:
        if self.index is None or not len(ids):
            return
        if self.kind == "flat":
            self.index.remove_ids(np.asarray(ids, np.int64))
        else:
            self.tombstones.update(int(i) for i in ids)

    def search(self, vector: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to `n` (ids, inner products) best first, deleted rows left out."""
        if self.index is None or self.index.ntotal == 0 or n < 1:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        fetch = min(n + len(self.tombstones), int(self.index.ntotal))
        _threads(self.config.search_threads)
        sims, ids = self.index.search(np.ascontiguousarray(vector.reshape(1, -1), np.float32), fetch)
        ids, sims = ids[0], sims[0]
        keep = ids >= 0
        if self.tombstones:
            keep &= ~np.isin(ids, np.fromiter(self.tombstones, np.int64))
        return ids[keep][:n], sims[keep][:n]

    def reconstruct(self, ids: Sequence[int]) -> np.ndarray:
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        return self.index.reconstruct_batch(np.asarray(ids, np.int64))

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.index if self.index is not None else self._new(0), str(path))
        np.save(path.with_suffix(".tombstones.npy"), np.array(sorted(self.tombstones), np.int64))

    @classmethod
    def load(cls, path: Path, dim: int, config: DenseConfig, kind: str) -> DenseIndex:
        import faiss

        self = cls(dim, config)
        self.index = faiss.read_index(str(path))
        self.kind = kind
        tomb = path.with_suffix(".tombstones.npy")
        if tomb.exists():
            self.tombstones = set(np.load(tomb).tolist())
        if self.kind == "hnsw":
            faiss.downcast_index(self.index.index).hnsw.efSearch = config.hnsw_ef_search
        return self


_current_threads = 0


def _threads(n: int) -> None:
    global _current_threads
    if n != _current_threads:
        import faiss

        faiss.omp_set_num_threads(n)
        _current_threads = n
