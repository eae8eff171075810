"""Cluster-bootstrap confidence intervals for F1 and ROC AUC, and paired differences between two models."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

# A metric over B resamples at once: labels (n,), scores (n,), resample weights (B, n) → values (B,).
WeightedMetric = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

DEFAULT_RESAMPLES = 1000
_CHUNK = 200  # resamples per block: bounds memory at 200 × n weights


def weighted_f1(y: np.ndarray, p: np.ndarray, w: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """F1 at `threshold` under each row of weights (NaN where a resample has no positive and no flag)."""
    pred = p >= threshold
    tp = w @ (y & pred).astype(w.dtype)
    fp = w @ (~y & pred).astype(w.dtype)
    fn = w @ (y & ~pred).astype(w.dtype)
    den = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 2 * tp / den, np.nan)


def weighted_auc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ROC AUC under each row of weights, ties counted half (NaN where a resample lacks a class)."""
    order = np.argsort(p, kind="mergesort")
    ps, ys, ws = p[order], y[order], w[:, order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])  # one block per distinct score
    pos = np.add.reduceat(ws * ys, starts, axis=1)
    neg = np.add.reduceat(ws * ~ys, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each score
    num = (pos * (below + 0.5 * neg)).sum(axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


METRICS: dict[str, WeightedMetric] = {"f1": weighted_f1, "auc": weighted_auc}


class ClusterBootstrap:
    """Resamples of whole clusters (a call's turns, a pattern's renderings) with replacement.

    Turns of one call or one pattern are not independent, so resampling them one by one would make the interval
    too narrow. The resamples depend only on the cluster ids and the seed: two models scored on the same rows see
    the same resamples, which is what a paired difference needs.
    """

    def __init__(self, clusters: Sequence[str], resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> None:
        if resamples < 1:
            raise ValueError(f"resamples must be at least 1, got {resamples}")
        if not len(clusters):
            raise ValueError("clusters must not be empty")
        uniq, self.index = np.unique(np.asarray(clusters, dtype=str), return_inverse=True)
        self.n_clusters = len(uniq)
        self.resamples = resamples
        self.seed = seed

    def weights(self) -> Iterator[np.ndarray]:
        """Blocks of per-row weights (how often each row's cluster was drawn), shape (≤ 200, rows)."""
        rng = np.random.default_rng(self.seed)
        c = self.n_clusters
        for start in range(0, self.resamples, _CHUNK):
            b = min(_CHUNK, self.resamples - start)
            draws = rng.integers(0, c, size=(b, c)) + np.arange(b)[:, None] * c
            counts = np.bincount(draws.ravel(), minlength=b * c).reshape(b, c).astype(np.float64)
            yield counts[:, self.index]

    def values(self, metric: str, y: Sequence[int], p: Sequence[float]) -> np.ndarray:
        """The metric on every resample."""
        fn = METRICS[metric]
        ya, pa = np.asarray(y, dtype=bool), np.asarray(p, dtype=float)
        if len(ya) != len(self.index) or len(pa) != len(self.index):
            raise ValueError(f"labels and scores must have one entry per clustered row ({len(self.index)}), "
                             f"got {len(ya)} and {len(pa)}")
        return np.concatenate([fn(ya, pa, w) for w in self.weights()])

    def interval(self, metric: str, y: Sequence[int], p: Sequence[float], level: float = 0.95) -> list[float] | None:
        """Percentile interval of the metric, or None when too few resamples define it."""
        return percentile_interval(self.values(metric, y, p), level)

    def difference(self, metric: str, y: Sequence[int], p_a: Sequence[float], p_b: Sequence[float],
                   level: float = 0.95) -> list[float] | None:
        """Percentile interval of metric(b) − metric(a) over the same resamples (paired)."""
        return percentile_interval(self.values(metric, y, p_b) - self.values(metric, y, p_a), level)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> list[float] | None:
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    ok = values[~np.isnan(values)]
    if len(ok) < 0.9 * len(values) or len(ok) < 20:  # the metric is undefined on too many resamples
        return None
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(ok, [tail, 100 - tail])
    return [float(lo), float(hi)]
