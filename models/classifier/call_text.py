"""Whole-call text model: TF-IDF views of a call's turns and a ridge regression on how unhappy the customer is."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from kefu.text import normalize

log = logging.getLogger(__name__)

JSON_FILE = "call_text.json"
WEIGHTS_FILE = "call_text.safetensors"

Turns = Sequence[tuple[str, str]]  # (role, text) in call order


def _customer(turns: Turns) -> list[str]:
    return [t for r, t in turns if r == "customer"]


# Where a phrase sits says as much as the phrase: a complaint in the customer's last turn means it
# was not resolved, in the first turn only that the call started badly. Each view is its own
# TF-IDF space (measured on 5-fold CV of the STC-3 train split: all customer text alone 0.872 ROC AUC,
# + agent text, first, later and last customer turn and the structure features 0.911).
VIEWS: dict[str, Callable[[Turns], str]] = {
    "customer": lambda turns: " ".join(_customer(turns)),
    "agent": lambda turns: " ".join(t for r, t in turns if r == "agent"),
    "customer_first": lambda turns: (_customer(turns) or [""])[0],
    "customer_later": lambda turns: " ".join(_customer(turns)[1:]),
    "customer_last": lambda turns: (_customer(turns) or [""])[-1],
}

STRUCTURE: tuple[str, ...] = ("turns_log", "customer_turns_log", "exclamations", "questions", "customer_chars_log",
                              "ends_with_customer")
STRUCTURE_SCALE = 0.3  # keeps the dense columns on the scale of a TF-IDF row (unit norm per view)
# The ridge regression of mean satisfaction and a logistic regression of the binary label rank differently
# enough that their sum beats either (5-fold CV on STC-3 train, ROC AUC of dissatisfied: ridge 0.907,
# logistic 0.903, ridge + 0.5 × logistic rescaled to the ridge's spread 0.912; C 2–32 within 0.001).
LOGISTIC_WEIGHT = 0.5
LOGISTIC_C = 8.0


def structure(turns: Turns) -> list[float]:
    """Label-free shape of a call: length, how much the customer said, how they punctuated, who spoke last."""
    customer = _customer(turns)
    text = "".join(customer)
    return [
        math.log1p(len(turns)),
        math.log1p(len(customer)),
        float(text.count("！") + text.count("!")),
        float(text.count("？") + text.count("?")),
        math.log1p(len(text)),
        1.0 if turns and turns[-1][0] == "customer" else 0.0,
    ]


def _vectorizer(max_features: int | None, vocabulary: list[str] | None = None) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2,
                           max_features=max_features, vocabulary=vocabulary, dtype=np.float32)


class CallTextModel:
    """Scores a whole call; higher means a more dissatisfied customer (the scale of −satisfaction, −2..2).

    Two linear models over the same features, summed into one: a ridge regression on the annotators' mean
    satisfaction of STC-3 train dialogues and on labelled calls (complaint risk 1 → +1, 0 → −1), and a
    logistic regression of the same calls' binary label (target ≥ 0.5: dissatisfied, complaint risk),
    rescaled to the ridge's spread and weighted `logistic_weight`. The call aggregator reads its score
    as one feature.
    """

    def __init__(self, vectorizers: dict[str, Any], coef: np.ndarray, intercept: float,
                 info: dict[str, Any] | None = None) -> None:
        if set(vectorizers) != set(VIEWS):
            raise ValueError(f"vectorizers must cover the views {sorted(VIEWS)}, got {sorted(vectorizers)}")
        width = sum(len(v.vocabulary_) for v in vectorizers.values()) + len(STRUCTURE)
        if coef.shape != (width,):
            raise ValueError(f"coef must have {width} entries (the views' vocabularies + structure), got {coef.shape}")
        self.vectorizers = vectorizers
        self.coef = coef
        self.intercept = float(intercept)
        self.info = info or {}

    @staticmethod
    def _view_texts(calls: Sequence[Turns], view: str) -> list[str]:
        fn = VIEWS[view]
        return [normalize(fn(c)) for c in calls]

    @classmethod
    def _matrix(cls, vectorizers: dict[str, Any], calls: Sequence[Turns]) -> Any:
        from scipy.sparse import csr_matrix, hstack

        parts = [vectorizers[v].transform(cls._view_texts(calls, v)) for v in VIEWS]
        dense = np.asarray([structure(c) for c in calls], dtype=np.float32).reshape(len(calls), len(STRUCTURE))
        parts.append(csr_matrix(dense * STRUCTURE_SCALE))
        return hstack(parts).tocsr()

    @classmethod
    def train(cls, calls: Sequence[Turns], targets: Sequence[float], weights: Sequence[float] | None = None,
              alpha: float = 1.0, max_features: int = 20_000, logistic_weight: float = LOGISTIC_WEIGHT
              ) -> CallTextModel:
        """Fit one vectorizer per view and the linear models of `targets` (dissatisfaction, higher = worse)."""
        return cls.train_with_holdout(calls, targets, weights, None, alpha, max_features, logistic_weight)[0]

    @classmethod
    def train_with_holdout(cls, calls: Sequence[Turns], targets: Sequence[float],
                           weights: Sequence[float] | None, holdout: Sequence[bool] | None,
                           alpha: float = 1.0, max_features: int = 20_000,
                           logistic_weight: float = LOGISTIC_WEIGHT) -> tuple[CallTextModel, CallTextModel]:
        """The model fitted on every call, and one fitted without the `holdout` calls that scores them out of
        sample (for the call aggregator). Both share the vocabulary (label-free, fitted on every call's text).
        Without a holdout both are the same model."""
        from sklearn.linear_model import LogisticRegression, Ridge

        if len(calls) != len(targets):
            raise ValueError(f"calls and targets must have the same length, got {len(calls)} and {len(targets)}")
        if len(calls) < 10:
            raise ValueError(f"the call text model needs at least 10 calls, got {len(calls)}")
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if logistic_weight < 0:
            raise ValueError(f"logistic_weight must be >= 0, got {logistic_weight}")
        if holdout is not None and len(holdout) != len(calls):
            raise ValueError(f"holdout must flag every call: {len(holdout)} flags for {len(calls)} calls")
        vectorizers = {}
        for v in VIEWS:
            vec = _vectorizer(max_features)
            texts = cls._view_texts(calls, v)
            try:
                vec.fit(texts)
            except ValueError:  # a view with no n-gram seen twice (tiny data): fall back to every n-gram
                vec = _vectorizer(max_features)
                vec.min_df = 1
                vec.fit([*texts, "无"])
            vectorizers[v] = vec
        x = cls._matrix(vectorizers, calls)
        y = np.asarray(targets, dtype=np.float64)
        sw = np.ones(len(calls)) if weights is None else np.asarray(weights, dtype=np.float64)
        vocabulary = {v: len(vec.vocabulary_) for v, vec in vectorizers.items()}

        binary = (y >= 0.5).astype(int)  # STC-3: satisfaction <= -0.5 (dissatisfied); labelled calls: +1

        def one(rows: np.ndarray) -> CallTextModel:
            ridge = Ridge(alpha=alpha).fit(x[rows], y[rows], sample_weight=sw[rows])
            coef, intercept = ridge.coef_.astype(np.float64), float(ridge.intercept_)
            info = {"alpha": alpha, "max_features": max_features, "calls": int(rows.sum()), "vocabulary": vocabulary,
                    "logistic_weight": logistic_weight}
            if logistic_weight > 0 and len(set(binary[rows].tolist())) == 2:
                # Both models are linear in x, so their weighted sum is one linear model: no cost when scoring.
                logit = LogisticRegression(C=LOGISTIC_C, max_iter=3000).fit(x[rows], binary[rows],
                                                                         sample_weight=sw[rows])
                spread = float(np.std(x[rows] @ coef)) / max(float(np.std(logit.decision_function(x[rows]))), 1e-9)
                k = logistic_weight * spread
                coef = coef + k * logit.coef_[0]
                intercept += k * float(logit.intercept_[0])
                info["logistic_c"] = LOGISTIC_C
            return cls(vectorizers, coef.astype(np.float32), intercept, info)

        every = np.ones(len(calls), dtype=bool)
        full = one(every)
        if holdout is None or not any(holdout):
            return full, full
        kept = ~np.asarray(holdout, dtype=bool)
        if kept.sum() < 10:
            raise ValueError(f"the call text model needs at least 10 calls outside the holdout, got {int(kept.sum())}")
        return full, one(kept)

    def score(self, calls: Sequence[Turns]) -> np.ndarray:
        """Dissatisfaction score per call (unbounded; about −2..2)."""
        if not calls:
            return np.zeros(0)
        x = self._matrix(self.vectorizers, calls)
        return np.asarray(x @ self.coef, dtype=np.float64).ravel() + self.intercept

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        vocab = {}
        tensors = {"coef": self.coef.astype(np.float32), "intercept": np.asarray([self.intercept], dtype=np.float32)}
        for v, vec in self.vectorizers.items():
            terms = sorted(vec.vocabulary_, key=vec.vocabulary_.get)
            vocab[v] = terms
            tensors[f"idf.{v}"] = vec.idf_.astype(np.float32)
        spec = {"views": list(VIEWS), "structure": list(STRUCTURE), "structure_scale": STRUCTURE_SCALE,
                "analyzer": "char", "ngram_range": [1, 3], "info": self.info, "vocabulary": vocab}
        save_file(tensors, str(directory / WEIGHTS_FILE))
        (directory / JSON_FILE).write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> CallTextModel:
        directory = Path(directory)
        spec = json.loads((directory / JSON_FILE).read_text(encoding="utf-8"))
        if spec.get("views") != list(VIEWS) or spec.get("structure") != list(STRUCTURE):
            raise ValueError(f"{directory / JSON_FILE}: views {spec.get('views')} / structure {spec.get('structure')} "
                             f"differ from this version's {list(VIEWS)} / {list(STRUCTURE)}; retrain the model")
        tensors = load_file(str(directory / WEIGHTS_FILE))
        vectorizers = {}
        for v in VIEWS:
            vec = _vectorizer(None, vocabulary=spec["vocabulary"][v])
            vec.fit(["占位"])  # builds the fixed-vocabulary pipeline; idf is replaced next
            vec.idf_ = tensors[f"idf.{v}"].astype(np.float64)
            vectorizers[v] = vec
        return cls(vectorizers, tensors["coef"], float(tensors["intercept"][0]), spec.get("info", {}))


def load_call_text(directory: str | Path) -> CallTextModel | None:
    """The model's call text part when it has one (models trained before it existed have none)."""
    directory = Path(directory)
    if not (directory / JSON_FILE).exists():
        return None
    return CallTextModel.load(directory)
