"""TF-IDF + logistic-regression baseline: same outputs, calibration and aggregation as the transformer."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from models.classifier.call_text import load_call_text
from models.classifier.common import (
    CALL_HEAD,
    HEADS,
    META_FILE,
    Aggregator,
    Calibrator,
    TurnModelMixin,
    default_aggregator,
)

log = logging.getLogger(__name__)

# Which role's turns train each head: taboo/empathy on agent turns, risk on customer turns.
HEAD_ROLE: dict[str, str] = {"taboo": "agent", "empathy": "agent", "risk": "customer"}


def _vectorizer(vocabulary: dict[str, int] | None = None, ngram: tuple[int, int] = (1, 3)) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer="char", ngram_range=ngram, sublinear_tf=True, min_df=2, max_features=200_000,
                           vocabulary=vocabulary, dtype=np.float32)


class TfidfClassifier(TurnModelMixin):
    """Character 1–3-gram TF-IDF with one logistic regression per output (a fast fallback)."""

    name = "tfidf-lr"

    def __init__(self, vectorizer: Any, coefs: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.vectorizer = vectorizer
        self.coefs = coefs  # name → (n_features + 1,) with the intercept last
        self.meta = meta
        self.calibrator = Calibrator.from_meta(meta)
        self.aggregator = Aggregator.from_dict(meta["aggregator"]) if meta.get("aggregator") else default_aggregator()

    @classmethod
    def train(cls, texts: Sequence[str], roles: Sequence[str], labels: Sequence[dict[str, int]],
              call_texts: Sequence[str], call_labels: Sequence[int], c: float = 4.0) -> TfidfClassifier:
        """Fit the vectorizer on every text and one logistic regression per head on the turns it applies to."""
        from sklearn.linear_model import LogisticRegression

        vec = _vectorizer()
        vec.fit([*texts, *call_texts])
        coefs: dict[str, np.ndarray] = {}
        x_all = vec.transform(texts)
        for head in HEADS:
            rows = [i for i, (r, lab) in enumerate(zip(roles, labels, strict=True))
                    if r == HEAD_ROLE[head] and head in lab]
            y = np.array([labels[i][head] for i in rows])
            coefs[head] = cls._fit_lr(LogisticRegression, x_all[rows], y, c)
        coefs[CALL_HEAD] = cls._fit_lr(LogisticRegression, vec.transform(call_texts), np.asarray(call_labels), c)
        return cls(vec, coefs, {"backend": "tfidf", "ngram_range": [1, 3], "C": c})

    @staticmethod
    def _fit_lr(lr_cls: Any, x: Any, y: np.ndarray, c: float) -> np.ndarray:
        if len(y) == 0 or len(set(y.tolist())) < 2:
            return np.zeros(x.shape[1] + 1, dtype=np.float32)
        lr = lr_cls(C=c, max_iter=3000).fit(x, y)
        return np.concatenate([lr.coef_[0], lr.intercept_]).astype(np.float32)

    def _score(self, head: str, texts: Sequence[str]) -> np.ndarray:
        x = self.vectorizer.transform(texts)
        w = self.coefs[head]
        return np.asarray(x @ w[:-1]).ravel() + w[-1]

    def _logits(self, texts: Sequence[str], roles: Sequence[str]) -> np.ndarray:
        x = self.vectorizer.transform(texts)
        cols = [np.asarray(x @ self.coefs[h][:-1]).ravel() + self.coefs[h][-1] for h in HEADS]
        return np.stack(cols, axis=1).astype(np.float64)

    def _call_logits(self, contexts: Sequence[str]) -> np.ndarray:
        return self._score(CALL_HEAD, contexts).astype(np.float64)

    def raw_logits(self, texts: Sequence[str], roles: Sequence[str]) -> np.ndarray:
        """Uncalibrated (n, 3) logits of prepared texts (used by training to fit temperatures)."""
        return self._logits(texts, roles)

    def save(self, directory: str | Path) -> Path:
        from models.classifier.card import write_card

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        vocab = {k: int(v) for k, v in self.vectorizer.vocabulary_.items()}
        (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        tensors = {f"coef.{k}": v for k, v in self.coefs.items()}
        tensors["idf"] = self.vectorizer.idf_.astype(np.float32)
        save_file(tensors, str(directory / "model.safetensors"))
        config = {"model_type": "kefu-tfidf-lr", "kefu": {"backend": "tfidf", "heads": [*HEADS, CALL_HEAD]},
                  "ngram_range": [1, 3], "analyzer": "char"}
        (directory / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
        (directory / META_FILE).write_text(json.dumps(self.meta, ensure_ascii=False, indent=1), encoding="utf-8")
        if self.call_text is not None:
            self.call_text.save(directory)
        write_card(directory, self.meta)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> TfidfClassifier:
        directory = Path(directory)
        vocab = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
        tensors = load_file(str(directory / "model.safetensors"))
        vec = _vectorizer(vocabulary=vocab)
        vec.fit(["占位"])  # builds the fixed-vocabulary pipeline; idf is replaced next
        vec.idf_ = tensors["idf"].astype(np.float64)
        coefs = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("coef.")}
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
        clf = cls(vec, coefs, meta)
        clf.call_text = load_call_text(directory)
        return clf
