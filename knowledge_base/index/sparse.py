"""BM25 over jieba tokens (with the domain user dictionary), in numpy/scipy and incrementally updatable."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from kefu.text import normalize

log = logging.getLogger(__name__)

USERDICT = Path(__file__).resolve().parents[1] / "data" / "userdict.txt"
_lock = threading.Lock()
_added_words: set[str] = set()


@lru_cache(maxsize=1)
def _jieba() -> Any:
    """jieba with the domain user dictionary loaded once per process (户号, 峰谷电价, 网上国网, …)."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    if USERDICT.exists():
        jieba.load_userdict(str(USERDICT))
    else:
        log.warning("%s not found: jieba runs without the domain user dictionary", USERDICT)
    return jieba


def add_words(words: Iterable[str]) -> None:
    """Teach jieba extra words (script keywords) so they are kept whole."""
    jieba = _jieba()
    with _lock:
        for w in words:
            w = normalize(w)
            if len(w) >= 2 and w not in _added_words:
                jieba.add_word(w)
                _added_words.add(w)


def tokenize(text: str) -> list[str]:
    """Search-mode jieba tokens of the normalised text: long words also yield their parts (分布式光伏 → 光伏)."""
    t = normalize(text)
    return [w for w in _jieba().lcut_for_search(t) if w.strip()] if t else []


class BM25Index:
    """Okapi BM25 over rows (one question or script text each), addressed by integer row ids.

    The bulk of the postings sit in a CSC matrix of saturated term frequencies; rows added later go
    to a small delta dictionary and deleted rows are masked, so updates cost microseconds. IDF is
    computed from live document frequencies at query time; the length normalisation keeps the
    average length of the last full build (it drifts little between rebuilds).
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        if k1 <= 0 or not 0 <= b <= 1:
            raise ValueError(f"BM25 needs k1 > 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1, self.b = k1, b
        self.vocab: dict[str, int] = {}
        self.df = np.zeros(0, np.int64)
        self.avgdl = 1.0
        self.base = sparse.csc_matrix((0, 0), dtype=np.float32)
        self.alive = np.zeros(0, bool)
        self.row_terms: dict[int, list[int]] = {}  # delta rows: their term ids (for df on delete)
        self.delta: dict[int, tuple[list[int], list[float]]] = {}  # term id -> (rows, saturated tf)
        self.n_alive = 0

    # --- building -----------------------------------------------------------------------------
    def _term_ids(self, tokens: Sequence[str], grow: bool) -> list[int]:
        out = []
        for t in tokens:
            i = self.vocab.get(t)
            if i is None and grow:
                i = self.vocab[t] = len(self.vocab)
            if i is not None:
                out.append(i)
        return out

    def _ensure_terms(self) -> None:
        if len(self.df) < len(self.vocab):
            self.df = np.concatenate([self.df, np.zeros(len(self.vocab) - len(self.df), np.int64)])

    def _ensure_rows(self, n: int) -> None:
        if len(self.alive) < n:
            self.alive = np.concatenate([self.alive, np.zeros(max(n, 2 * len(self.alive)) - len(self.alive), bool)])

    def _saturate(self, tf: np.ndarray, dl: np.ndarray | float) -> np.ndarray:
        return (tf * (self.k1 + 1) / (tf + self.k1 * (1 - self.b + self.b * np.asarray(dl) / self.avgdl))).astype(
            np.float32
        )

    def build(self, row_ids: Sequence[int], token_lists: Sequence[Sequence[str]]) -> None:
        """Index all rows from scratch."""
        self.vocab = {}
        rows, cols = [], []
        lengths = np.array([len(t) for t in token_lists], np.float32)
        for rid, tokens in zip(row_ids, token_lists, strict=True):
            ids = self._term_ids(tokens, grow=True)
            rows.extend([rid] * len(ids))
            cols.extend(ids)
        n_rows = (max(row_ids) + 1) if len(row_ids) else 0
        self.avgdl = float(lengths.mean()) if len(lengths) and lengths.mean() > 0 else 1.0
        coo = sparse.coo_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_rows, len(self.vocab)))
        tf = coo.tocsr()
        tf.sum_duplicates()
        dl = np.zeros(n_rows, np.float32)
        dl[np.asarray(row_ids, dtype=np.int64)] = lengths
        tf.data = self._saturate(tf.data, np.repeat(dl, np.diff(tf.indptr)))
        self.base = tf.tocsc()
        self.df = np.diff(self.base.indptr).astype(np.int64)
        self.alive = np.zeros(n_rows, bool)
        self.alive[np.asarray(row_ids, dtype=np.int64)] = True
        self.n_alive = len(row_ids)
        self.delta, self.row_terms = {}, {}

    def add(self, row_id: int, tokens: Sequence[str]) -> None:
        ids = self._term_ids(tokens, grow=True)
        self._ensure_terms()
        self._ensure_rows(row_id + 1)
        uniq, counts = np.unique(np.asarray(ids, dtype=np.int64), return_counts=True)
        sat = self._saturate(counts.astype(np.float32), float(len(tokens)))
        for t, s in zip(uniq.tolist(), sat.tolist(), strict=True):
            rows, vals = self.delta.setdefault(t, ([], []))
            rows.append(row_id)
            vals.append(s)
        self.df[uniq] += 1
        self.row_terms[row_id] = uniq.tolist()
        self.alive[row_id] = True
        self.n_alive += 1

    def remove(self, row_ids: Sequence[int]) -> None:
        """Delete rows (unknown or already deleted ids are ignored)."""
        rows = [r for r in row_ids if r < len(self.alive) and self.alive[r]]
        if not rows:
            return
        self.alive[np.asarray(rows, dtype=np.int64)] = False
        self.n_alive -= len(rows)
        terms: list[int] = []
        in_base = []
        for r in rows:
            if r in self.row_terms:
                terms.extend(self.row_terms.pop(r))
            elif r < self.base.shape[0]:
                in_base.append(r)
        if in_base:
            # CSC has no row access: one vectorised pass over the postings finds the deleted rows' terms.
            hit = np.nonzero(np.isin(self.base.indices, np.asarray(in_base, dtype=self.base.indices.dtype)))[0]
            terms.extend((np.searchsorted(self.base.indptr, hit, side="right") - 1).tolist())
        if terms:
            np.subtract.at(self.df, np.asarray(terms, dtype=np.int64), 1)

    # --- searching ----------------------------------------------------------------------------
    def idf(self, term_ids: Sequence[int]) -> np.ndarray:
        df = self.df[np.asarray(term_ids, dtype=np.int64)].astype(np.float32)
        n = max(self.n_alive, 1)
        return np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)

    def query_terms(self, tokens: Sequence[str]) -> tuple[list[int], np.ndarray]:
        ids = list(dict.fromkeys(self._term_ids(tokens, grow=False)))
        return ids, self.idf(ids) if ids else np.zeros(0, np.float32)

    def scores(self, tokens: Sequence[str]) -> tuple[np.ndarray, float]:
        """BM25 of every row id (0 for rows without a query term), and the query's maximum IDF mass."""
        ids, idf = self.query_terms(tokens)
        n = len(self.alive)
        out = np.zeros(n, np.float32)
        base = self.base
        n_base_terms = base.shape[1]
        for t, w in zip(ids, idf.tolist(), strict=True):
            if t < n_base_terms:
                s, e = base.indptr[t], base.indptr[t + 1]
                out[base.indices[s:e]] += w * base.data[s:e]
            if t in self.delta:
                rows, vals = self.delta[t]
                out[np.asarray(rows)] += w * np.asarray(vals, np.float32)
        if self.n_alive < n:
            out[~self.alive[:n]] = 0.0
        return out, float(idf.sum() * (self.k1 + 1))

    def top(self, scores: np.ndarray, n: int, tokens: Sequence[str] | None = None, budget: int = 20000) -> np.ndarray:
        """Row ids of the `n` best non-zero scores (unordered).

        With `tokens`, only rows containing the query's rarer terms are ranked (rarest first, up to
        `budget` postings, at least one term): a row that matches nothing but 的/了/我 cannot be a
        top candidate, and skipping their long postings keeps this sublinear in the library size.
        """
        if len(scores) == 0 or n < 1:
            return np.zeros(0, np.int64)
        if tokens is None:
            idx = np.argpartition(-scores, n)[:n] if len(scores) > n else np.arange(len(scores))
            return idx[scores[idx] > 0]
        ids, _ = self.query_terms(tokens)
        if not ids:
            return np.zeros(0, np.int64)
        base, n_base = self.base, self.base.shape[1]
        parts: list[np.ndarray] = []
        total = 0
        for t in sorted(ids, key=lambda t: self.df[t]):
            rows = base.indices[base.indptr[t] : base.indptr[t + 1]] if t < n_base else np.zeros(0, np.int32)
            if t in self.delta:
                rows = np.concatenate([rows, np.asarray(self.delta[t][0], rows.dtype)])
            if parts and total + len(rows) > budget:
                break
            parts.append(rows)
            total += len(rows)
        rows = np.concatenate(parts).astype(np.int64)
        # A row repeats once per query term it holds: keep 3n by score, then dedupe that short list.
        if len(rows) > 3 * n:
            rows = rows[np.argpartition(-scores[rows], 3 * n)[: 3 * n]]
        idx = np.unique(rows)
        if len(idx) > n:
            idx = idx[np.argpartition(-scores[idx], n)[:n]]
        return idx[scores[idx] > 0]

    # --- persistence --------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """Arrays for np.savez (the delta is folded into the base first)."""
        self.compact()
        terms = np.array(sorted(self.vocab, key=self.vocab.__getitem__), dtype=object)
        return {
            "indptr": self.base.indptr,
            "indices": self.base.indices,
            "data": self.base.data,
            "shape": np.array(self.base.shape),
            "df": self.df,
            "alive": self.alive,
            "params": np.array([self.k1, self.b, self.avgdl, self.n_alive], np.float64),
            "terms": np.array("\n".join(terms.tolist())),
        }

    @classmethod
    def from_state(cls, st: Any) -> BM25Index:
        k1, b, avgdl, n_alive = st["params"].tolist()
        self = cls(k1, b)
        self.avgdl, self.n_alive = avgdl, int(n_alive)
        terms = str(st["terms"]).split("\n") if str(st["terms"]) else []
        self.vocab = {t: i for i, t in enumerate(terms)}
        self.base = sparse.csc_matrix((st["data"], st["indices"], st["indptr"]), shape=tuple(st["shape"].tolist()))
        self.df = st["df"].astype(np.int64)
        self.alive = st["alive"].astype(bool)
        return self

    def compact(self) -> None:
        """Fold the delta rows into the CSC base (after many updates, or before saving)."""
        if not self.delta:
            return
        n_rows = len(self.alive)
        rows, cols, vals = [], [], []
        for t, (r, v) in self.delta.items():
            rows.extend(r)
            cols.extend([t] * len(r))
            vals.extend(v)
        extra = sparse.csc_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=(n_rows, len(self.vocab)))
        base = self.base
        base = sparse.csc_matrix((base.data, base.indices, base.indptr), shape=base.shape)
        base.resize((n_rows, len(self.vocab)))
        self.base = (base + extra).tocsc()
        self.delta, self.row_terms = {}, {}
