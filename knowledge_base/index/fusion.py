"""Fuse dense and BM25 evidence per script into a calibrated 0–1 score, with a suggestion threshold."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FEATURES = ("dense_q", "dense_a", "bm25_q", "bm25_a", "dense_gap", "bm25_gap")
# Fallback weights for libraries too small to calibrate on (fitted on the bundled knowledge base's
# held-out questions; replaced by a fresh fit at every full build with enough question groups).
DEFAULT_COEF = (9.0, 1.0, 2.5, 0.5, 8.0, 2.0)
DEFAULT_INTERCEPT = -8.0


def is_holdout_question(text: str) -> bool:
    """A fixed fifth of all questions (by hash of the text): never used to train the built-in encoder,
    and preferred as calibration queries, so the fusion is fitted on questions the encoder never saw."""
    from kefu.text import normalize

    return int(hashlib.sha1(normalize(text).encode("utf-8")).hexdigest()[:8], 16) % 5 == 0


@dataclass(slots=True)
class Fusion:
    """Logistic regression over per-script features: P(script answers the query).

    Features of a candidate script: best cosine over its questions and scenario (`dense_q`), cosine
    with its reply text (`dense_a`), the same two for BM25 divided by the query's maximum BM25
    (`bm25_q`, `bm25_a`, so 0–1 whatever the query length), and each script's distance to the best
    candidate of the query (`*_gap`, ≤ 0), which lets the score drop when a rival matches better.
    """

    coef: tuple[float, ...] = DEFAULT_COEF
    intercept: float = DEFAULT_INTERCEPT
    threshold: float = 0.3
    calibration: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.coef) != len(FEATURES):
            raise ValueError(f"fusion needs {len(FEATURES)} coefficients ({', '.join(FEATURES)}), got {len(self.coef)}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be within 0–1, got {self.threshold}")

    @staticmethod
    def features(dq: np.ndarray, da: np.ndarray, bq: np.ndarray, ba: np.ndarray) -> np.ndarray:
        """The feature matrix of one query's candidates (one row per script)."""
        if len(dq) == 0:
            return np.zeros((0, len(FEATURES)), np.float32)
        return np.stack([dq, da, bq, ba, dq - dq.max(), bq - bq.max()], axis=1).astype(np.float32)

    def score(self, x: np.ndarray) -> np.ndarray:
        z = x @ np.asarray(self.coef, np.float32) + np.float32(self.intercept)
        return (1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))).astype(np.float32)

    def fit(self, x: np.ndarray, y: np.ndarray, meta: dict[str, Any] | None = None) -> None:
        """Fit the weights on held-out questions' candidates (`y` = 1 for the question's own script)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score

        if len(np.unique(y)) < 2:
            log.warning("calibration skipped: the held-out questions gave only one class")
            return
        model = LogisticRegression(C=1.0, max_iter=1000)
        model.fit(x, y)
        self.coef = tuple(float(c) for c in model.coef_[0])
        self.intercept = float(model.intercept_[0])
        p = self.score(x)
        self.calibration = {
            **(meta or {}),
            "samples": len(y),
            "positives": int(y.sum()),
            "auc": round(float(roc_auc_score(y, p)), 4),
            "brier": round(float(np.mean((p - y) ** 2)), 4),
        }
        log.info("fusion calibrated: %s", self.calibration)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "coef": list(self.coef), "features": list(FEATURES)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Fusion:
        data = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        if "coef" in data:
            data["coef"] = tuple(data["coef"])
        return cls(**data)
