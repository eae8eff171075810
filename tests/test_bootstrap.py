"""Cluster-bootstrap intervals: weighted metrics match scikit-learn, clusters widen intervals, pairs narrow them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from training.bootstrap import ClusterBootstrap, percentile_interval, weighted_auc, weighted_f1


@pytest.fixture(scope="module")
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = rng.random(600) < 0.3
    p = np.round(rng.random(600) * 0.6 + y * 0.3, 2)  # rounded: many tied scores
    return y, p


def test_weighted_metrics_equal_scikit_learn_with_sample_weights(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    w = np.random.default_rng(4).integers(0, 4, size=(5, len(y))).astype(float)
    np.testing.assert_allclose(weighted_auc(y, p, w), [roc_auc_score(y, p, sample_weight=r) for r in w])
    np.testing.assert_allclose(weighted_f1(y, p, w), [f1_score(y, p >= 0.5, sample_weight=r) for r in w])
    only_negatives = np.where(y, 0.0, 1.0)[None, :]
    assert np.isnan(weighted_auc(y, p, only_negatives)[0])


def test_intervals_cover_the_point_value_and_are_reproducible(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    boot = ClusterBootstrap([str(i) for i in range(len(y))], resamples=400)
    lo, hi = boot.interval("auc", y, p)
    assert lo < roc_auc_score(y, p) < hi and hi - lo < 0.1
    assert boot.interval("auc", y, p) == [lo, hi]  # same clusters and seed: same resamples
    assert ClusterBootstrap([str(i) for i in range(len(y))], 400, seed=1).interval("auc", y, p) != [lo, hi]


def test_resampling_whole_calls_widens_the_interval_when_turns_of_a_call_agree() -> None:
    """Thirty calls of twenty turns that share one verdict carry the evidence of thirty calls, not 600 turns."""
    rng = np.random.default_rng(5)
    call_hit = rng.random(30) < 0.7
    y = np.repeat(rng.random(30) < 0.5, 20)
    p = np.where(np.repeat(call_hit, 20), y * 0.8 + 0.1, 0.5 - (y - 0.5) * 0.6)
    by_turn = ClusterBootstrap([str(i) for i in range(600)], 500).interval("f1", y, p)
    by_call = ClusterBootstrap([str(i // 20) for i in range(600)], 500).interval("f1", y, p)
    assert by_call[1] - by_call[0] > 2 * (by_turn[1] - by_turn[0])


def test_a_paired_difference_is_narrower_than_two_separate_intervals(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    p_b = np.clip(p + np.where(y, 0.01, -0.01), 0, 1)  # the same model, a little better on every row
    boot = ClusterBootstrap([str(i) for i in range(len(y))], 400)
    a, b = boot.interval("auc", y, p), boot.interval("auc", y, p_b)
    lo, hi = boot.difference("auc", y, p, p_b)
    assert a[0] < b[1] and b[0] < a[1]  # apart, the two intervals overlap …
    assert 0 < lo < hi  # … but paired, B is better on every resample
    assert boot.difference("auc", y, p, p) == [0.0, 0.0]


def test_bad_arguments_are_refused_with_the_rule_and_the_value(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    with pytest.raises(ValueError, match="resamples must be at least 1, got 0"):
        ClusterBootstrap(["a"], resamples=0)
    with pytest.raises(ValueError, match="clusters must not be empty"):
        ClusterBootstrap([])
    with pytest.raises(ValueError, match="one entry per clustered row \\(3\\), got 600 and 600"):
        ClusterBootstrap(["a", "b", "c"]).interval("f1", y, p)
    with pytest.raises(ValueError, match="level must be between 0 and 1, got 95"):
        percentile_interval(np.ones(100), 95)
    assert percentile_interval(np.full(100, np.nan)) is None  # undefined on every resample: no interval
