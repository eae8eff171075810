"""The built-in encoder: weighted character n-gram embeddings, trained here, fast on CPU without a download."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file
from scipy import sparse

from kefu.text import normalize
from models.encoders.base import BACKEND_KEY, EncoderError, l2_normalize, read_config

log = logging.getLogger(__name__)

KIND = "ngram"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "vocab.txt"


def char_ngrams(text: str, n_min: int = 1, n_max: int = 3) -> list[str]:
    """Character n-grams of the normalised text (punctuation, fillers and width differences removed)."""
    t = normalize(text)
    grams: list[str] = []
    for n in range(n_min, n_max + 1):
        grams.extend(t[i : i + n] for i in range(len(t) - n + 1))
    return grams


class NgramEncoder:
    """Sentence vector = normalised weighted sum of character n-gram embeddings.

    Each n-gram has an embedding row and a non-negative weight (learned, initialised from IDF). The
    sum is one sparse-matrix product, so a short query encodes in tens of microseconds; n-grams not
    in the vocabulary are ignored. Trained contrastively by `training.encoder`; `fit_unsupervised`
    gives an untrained fallback (IDF-weighted random projection ≈ character TF-IDF cosine).
    """

    def __init__(
        self,
        vocab: Sequence[str],
        embeddings: np.ndarray,
        weights: np.ndarray,
        ngram_range: tuple[int, int] = (1, 3),
        name: str = "kefu-ngram",
        card: str = "",
        extra: dict[str, Any] | None = None,
    ) -> None:
        embeddings = np.asarray(embeddings, dtype=np.float32)
        weights = np.asarray(weights, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(vocab):
            raise EncoderError(
                f"embeddings must have one row per vocabulary entry ({len(vocab)}), got {embeddings.shape}"
            )
        if weights.shape != (len(vocab),):
            raise EncoderError(f"weights must have shape ({len(vocab)},), got {weights.shape}")
        lo, hi = ngram_range
        if not 1 <= lo <= hi <= 6:
            raise EncoderError(f"ngram_range must satisfy 1 <= min <= max <= 6, got {ngram_range}")
        self.vocab = list(vocab)
        self.index = {g: i for i, g in enumerate(self.vocab)}
        self.embeddings = embeddings
        self.weights = weights
        self.ngram_range = (lo, hi)
        self.name = name
        self.dim = int(embeddings.shape[1])
        self.card = card
        self.extra = dict(extra or {})

    # --- encoding -------------------------------------------------------------------------------
    def ids(self, text: str) -> list[int]:
        index = self.index
        return [i for g in char_ngrams(text, *self.ngram_range) if (i := index.get(g)) is not None]

    def bag(self, texts: Iterable[str]) -> sparse.csr_matrix:
        """The (n, vocab) matrix of n-gram counts times weights."""
        indptr, indices = [0], []
        for text in texts:
            indices.extend(self.ids(text))
            indptr.append(len(indices))
        idx = np.asarray(indices, dtype=np.int64)
        data = self.weights[idx] if len(idx) else np.zeros(0, np.float32)
        return sparse.csr_matrix((data, idx, np.asarray(indptr)), shape=(len(indptr) - 1, len(self.vocab)))

    def encode(self, texts: Sequence[str], batch_size: int = 4096) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, not one string")
        if len(texts) == 1:  # the query path: skip scipy's overhead
            ids = self.ids(texts[0])
            if not ids:
                return np.zeros((1, self.dim), np.float32)
            return l2_normalize((self.weights[ids] @ self.embeddings[ids])[None, :])
        out = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            out[start : start + len(chunk)] = self.bag(chunk) @ self.embeddings
        return l2_normalize(out)

    # --- persistence ------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": KIND,
            "dim": self.dim,
            "vocab_size": len(self.vocab),
            "ngram_range": list(self.ngram_range),
            **self.extra,
        }

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = {
            BACKEND_KEY: KIND,
            "model_type": "kefu-ngram",
            "name": self.name,
            "dim": self.dim,
            "vocab_size": len(self.vocab),
            "ngram_range": list(self.ngram_range),
            **self.extra,
        }
        (path / "config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        # float16 halves the file; the vectors are renormalised, so the loss in precision does not show.
        save_file(
            {"embeddings": self.embeddings.astype(np.float16), "weights": self.weights.astype(np.float32)},
            str(path / WEIGHTS_FILE),
        )
        (path / VOCAB_FILE).write_text("".join(g + "\n" for g in self.vocab), encoding="utf-8")
        (path / "README.md").write_text(self.card or _default_card(self), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> NgramEncoder:
        path = Path(path)
        config = read_config(path)
        if config.get(BACKEND_KEY) != KIND:
            raise EncoderError(f"{path}: config.json {BACKEND_KEY}={config.get(BACKEND_KEY)!r}, expected {KIND!r}")
        try:
            tensors = load_file(str(path / WEIGHTS_FILE))
            vocab = (path / VOCAB_FILE).read_text(encoding="utf-8").split("\n")[:-1]
        except (OSError, ValueError) as exc:
            raise EncoderError(f"{path}: cannot read the encoder weights or vocabulary: {exc}") from exc
        known = {BACKEND_KEY, "model_type", "name", "dim", "vocab_size", "ngram_range"}
        card_file = path / "README.md"
        return cls(
            vocab,
            tensors["embeddings"].astype(np.float32),
            tensors["weights"],
            ngram_range=tuple(config.get("ngram_range", (1, 3))),  # type: ignore[arg-type]
            name=config.get("name", path.name),
            card=card_file.read_text(encoding="utf-8") if card_file.exists() else "",
            extra={k: v for k, v in config.items() if k not in known},
        )

    # --- untrained fallback ---------------------------------------------------------------------
    @classmethod
    def fit_unsupervised(
        cls, texts: Sequence[str], dim: int = 256, ngram_range: tuple[int, int] = (1, 2), seed: int = 0
    ) -> NgramEncoder:
        """IDF-weighted random projection of character n-grams: no training, close to TF-IDF cosine."""
        df: Counter[str] = Counter()
        for text in texts:
            df.update(set(char_ngrams(text, *ngram_range)))
        vocab = sorted(df)
        n = max(len(texts), 1)
        weights = np.array([np.log((1 + n) / (1 + df[g])) + 1.0 for g in vocab], np.float32)
        rng = np.random.default_rng(seed)
        emb = rng.standard_normal((len(vocab), dim)).astype(np.float32) / np.sqrt(dim)
        return cls(
            vocab,
            emb,
            weights,
            ngram_range,
            name="kefu-ngram-untrained",
            extra={"trained": False, "note": "IDF-weighted random projection fitted on the indexed texts"},
        )


def _default_card(enc: NgramEncoder) -> str:
    return (
        f"# {enc.name}\n\nkefu built-in character n-gram encoder ({enc.dim} dimensions, "
        f"{len(enc.vocab)} n-grams {enc.ngram_range[0]}–{enc.ngram_range[1]}).\n"
    )
