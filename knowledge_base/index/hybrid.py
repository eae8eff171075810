"""The hybrid retriever: dense + BM25 candidates grouped per script, fused into calibrated scores."""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kefu.text import normalize
from knowledge_base.index.dense import DenseConfig, DenseIndex
from knowledge_base.index.fusion import Fusion, is_holdout_question
from knowledge_base.index.sparse import BM25Index, add_words, tokenize
from knowledge_base.schema import Hit, Script
from models.encoders.base import Encoder

log = logging.getLogger(__name__)

# Row slots: a question's position in script.questions, or one of these.
SCENARIO = -1  # the scenario title plus keywords (matched like a question)
ANSWER = -2  # the agent reply text


@dataclass(slots=True)
class SearchSettings:
    """Knobs of one retriever (stored in the index config; all overridable when loading)."""

    candidates: int = 50  # rows fetched from each of dense and BM25 before grouping by script
    # Suggest nothing below this score. None: chosen at each build as the lowest score at which the
    # top hit is right for at least `target_precision` of the held-out calibration questions.
    threshold: float | None = None
    target_precision: float = 0.5
    index_answers: bool = True  # also match the reply text (a row per script) by its vector
    bm25_answers: bool = True  # and by BM25 (long replies are most of the tokenising time at build)
    calibration_queries: int = 600

    def __post_init__(self) -> None:
        if self.candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {self.candidates}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be within 0–1, got {self.threshold}")
        if not 0.0 < self.target_precision <= 1.0:
            raise ValueError(f"target_precision must be within (0, 1], got {self.target_precision}")
        if self.calibration_queries < 0:
            raise ValueError(f"calibration_queries must be >= 0, got {self.calibration_queries}")


def script_to_dict(s: Script) -> dict[str, Any]:
    return {**s.content(), "status": s.status, "version": s.version}


def script_from_dict(d: dict[str, Any]) -> Script:
    known = {"id", "scenario", "questions", "script", "category", "keywords", "tags", "status", "version"}
    return Script(
        id=str(d["id"]),
        scenario=d.get("scenario", ""),
        questions=list(d.get("questions", [])),
        script=d.get("script", ""),
        category=d.get("category", ""),
        keywords=list(d.get("keywords", [])),
        tags=list(d.get("tags", [])),
        status=d.get("status", "approved"),
        version=int(d.get("version", 1)),
        extra={k: v for k, v in d.items() if k not in known},
    )


@dataclass(slots=True)
class _Candidates:
    ids: list[str]
    x: np.ndarray  # features (n, 6)
    dq: np.ndarray
    bq_raw: np.ndarray
    best_row: list[int]
    tokens: list[str] = field(default_factory=list)


class HybridRetriever:
    """An in-memory index over scripts: rows (questions, scenario, reply) in FAISS and BM25.

    Thread-safe for concurrent searches; updates take a lock so a search sees a script either
    before or after an update, never half of it.
    """

    def __init__(
        self,
        encoder: Encoder,
        dense_config: DenseConfig | None = None,
        settings: SearchSettings | None = None,
        fusion: Fusion | None = None,
        bm25: tuple[float, float] = (1.2, 0.75),
    ) -> None:
        self.encoder = encoder
        self.settings = settings or SearchSettings()
        self.fusion = fusion or Fusion()
        if self.settings.threshold is not None:
            self.fusion.threshold = self.settings.threshold
        self.dense = DenseIndex(encoder.dim, dense_config)
        self.bm25 = BM25Index(*bm25)
        self.scripts: dict[str, Script] = {}
        self.script_rows: dict[str, list[int]] = {}
        self.row_owner: list[str | None] = []
        self.row_slot: list[int] = []
        self._lock = threading.RLock()
        self.source: dict[str, Any] = {}  # where it was loaded from (build dir, journal offset)

    # --- rows ---------------------------------------------------------------------------------
    def _row_texts(self, s: Script) -> list[tuple[int, str]]:
        rows = [(j, q) for j, q in enumerate(s.questions) if q and q.strip()]
        title = " ".join([s.scenario, *s.keywords]).strip()
        if title:
            rows.append((SCENARIO, title))
        if self.settings.index_answers and s.script.strip():
            rows.append((ANSWER, s.script))
        return rows

    def row_text(self, row: int) -> str:
        owner, slot = self.row_owner[row], self.row_slot[row]
        if owner is None:
            return ""
        s = self.scripts[owner]
        if slot == SCENARIO:
            return " ".join([s.scenario, *s.keywords])
        if slot == ANSWER:
            return s.script
        return s.questions[slot]

    def _allocate(self, scripts: Sequence[Script]) -> tuple[list[int], list[str]]:
        ids, texts = [], []
        for s in scripts:
            rows = []
            for slot, text in self._row_texts(s):
                rid = len(self.row_owner)
                self.row_owner.append(s.id)
                self.row_slot.append(slot)
                rows.append(rid)
                ids.append(rid)
                texts.append(text)
            self.scripts[s.id] = s
            self.script_rows[s.id] = rows
        return ids, texts

    @property
    def size(self) -> int:
        return len(self.scripts)

    # --- building and updating ----------------------------------------------------------------
    def build(self, scripts: Sequence[Script], calibrate: bool = True, progress: Any = None) -> None:
        """Index `scripts` from scratch (retired ones are left out) and calibrate the fusion."""
        live = _live(scripts)
        add_words(k for s in live for k in s.keywords)
        with self._lock:
            self.scripts, self.script_rows, self.row_owner, self.row_slot = {}, {}, [], []
            ids, texts = self._allocate(live)
            vectors = self._encode(texts, progress)
            self.dense.build(ids, vectors)
            self.bm25.build(ids, [self._tokens(rid, t) for rid, t in zip(ids, texts, strict=True)])
        if calibrate:
            self.calibrate()

    def _tokens(self, row: int, text: str) -> list[str]:
        if self.row_slot[row] == ANSWER and not self.settings.bm25_answers:
            return []
        return tokenize(text)

    def _encode(self, texts: list[str], progress: Any = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.encoder.dim), np.float32)
        if progress is None:
            return self.encoder.encode(texts)
        chunk = 8192
        parts = [self.encoder.encode(texts[i : i + chunk]) for i in progress(range(0, len(texts), chunk))]
        return np.concatenate(parts)

    def upsert(self, scripts: Sequence[Script]) -> None:
        """Add or replace scripts; a script with status `retired` is removed instead."""
        retired = [s.id for s in scripts if s.status == "retired"]
        live = _live(scripts)
        add_words(k for s in live for k in s.keywords)
        with self._lock:
            self._remove_locked([s.id for s in live] + retired)
            ids, texts = self._allocate(live)
            if ids:
                self.dense.add(ids, self._encode(texts))
                for rid, text in zip(ids, texts, strict=True):
                    self.bm25.add(rid, self._tokens(rid, text))

    def remove(self, script_ids: Iterable[str]) -> None:
        with self._lock:
            self._remove_locked(list(script_ids))

    def _remove_locked(self, script_ids: list[str]) -> None:
        rows: list[int] = []
        for sid in script_ids:
            for r in self.script_rows.pop(sid, []):
                rows.append(r)
                self.row_owner[r] = None
            self.scripts.pop(sid, None)
        if rows:
            self.dense.remove(rows)
            self.bm25.remove(rows)

    # --- searching ----------------------------------------------------------------------------
    def _candidates(self, text: str, exclude_row: int = -1) -> _Candidates:
        tokens = tokenize(text)
        qv = self.encoder.encode([text])[0]
        n = self.settings.candidates
        owners = self.row_owner
        cand: dict[str, None] = {}
        if np.any(qv):
            ids, _ = self.dense.search(qv, n + 1)
            for r in ids.tolist():
                if r != exclude_row and owners[r] is not None:
                    cand[owners[r]] = None  # type: ignore[index]
        bm, max_bm = self.bm25.scores(tokens)
        if 0 <= exclude_row < len(bm):
            bm[exclude_row] = 0.0
        for r in self.bm25.top(bm, n, tokens).tolist():
            if owners[r] is not None:
                cand[owners[r]] = None  # type: ignore[index]
        sids = list(cand)
        if not sids:
            return _Candidates([], np.zeros((0, 6), np.float32), np.zeros(0), np.zeros(0), [], tokens)
        rows, seg = [], [0]
        for sid in sids:
            rows.extend(self.script_rows[sid])
            seg.append(len(rows))
        rows_arr = np.asarray(rows, np.int64)
        dsim = self.dense.reconstruct(rows_arr) @ qv
        bsim = bm[rows_arr] if len(bm) else np.zeros(len(rows_arr), np.float32)
        slots = np.asarray([self.row_slot[r] for r in rows], np.int64)
        is_answer = slots == ANSWER
        if exclude_row >= 0:
            drop = rows_arr == exclude_row
            dsim = np.where(drop, -1.0, dsim)
            bsim = np.where(drop, 0.0, bsim)
        starts = np.asarray(seg[:-1], np.int64)
        combined = dsim + (bsim / max_bm if max_bm > 0 else 0.0)
        if exclude_row >= 0:
            combined = np.where(rows_arr == exclude_row, -9.0, combined)
        # Per-script maxima over its question rows and over its reply row (segments of `rows`).
        dq = np.maximum.reduceat(np.where(is_answer, -1.0, dsim), starts).astype(np.float32)
        bq = np.maximum.reduceat(np.where(is_answer, 0.0, bsim), starts).astype(np.float32)
        da = np.maximum.reduceat(np.where(is_answer, dsim, 0.0), starts).astype(np.float32)
        ba = np.maximum.reduceat(np.where(is_answer, bsim, 0.0), starts).astype(np.float32)
        ends = np.asarray(seg[1:], np.int64)
        best_row = [
            rows[s + int(np.argmax(combined[s:e]))] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
        ]
        scale = max_bm if max_bm > 0 else 1.0
        x = Fusion.features(dq, da, bq / scale, ba / scale)
        return _Candidates(sids, x, dq, bq, best_row, tokens)

    def search(self, text: str, k: int = 5, threshold: float | None = None) -> list[Hit]:
        """Top-k scripts for `text`, best first, each with score ≥ the threshold (none when nothing is)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not normalize(text):
            return []
        cut = self.fusion.threshold if threshold is None else threshold
        with self._lock:
            c = self._candidates(text)
            if not c.ids:
                return []
            p = self.fusion.score(c.x)
            order = np.argsort(-p, kind="stable")[:k]
            hits = []
            for i in order.tolist():
                if p[i] < cut:
                    break
                s = self.scripts[c.ids[i]]
                row = c.best_row[i]
                matched = self.row_text(row)
                hits.append(
                    Hit(
                        id=s.id,
                        scenario=s.scenario,
                        script=s.script,
                        score=float(p[i]),
                        category=s.category,
                        tags=list(s.tags),
                        matched=matched,
                        matched_terms=_matched_terms(c.tokens, matched, s),
                        dense=float(c.dq[i]),
                        sparse=float(c.bq_raw[i]),
                    )
                )
        return hits

    # --- calibration --------------------------------------------------------------------------
    def calibrate(self, seed: int = 0) -> None:
        """Fit the fusion on held-out questions: each sampled question searches the others (leave one out)."""
        rows = [
            r
            for r, (o, slot) in enumerate(zip(self.row_owner, self.row_slot, strict=True))
            if o is not None and slot >= 0 and len(self.script_rows[o]) > 2
        ]
        if len(self.scripts) < 10 or len(rows) < 30:
            log.info("calibration skipped: %d scripts is too few; default fusion weights kept", len(self.scripts))
            return
        random.Random(seed).shuffle(rows)
        # The built-in encoder never trains on the hash-chosen holdout questions (is_holdout_question);
        # when there are enough of them, only they calibrate, since questions the encoder was trained
        # on look easier than a customer's new words and would make the fusion trust dense too much.
        held = [r for r in rows if is_holdout_question(self.row_text(r))]
        if len(held) >= 100:
            rows = held
        xs, ys = [], []
        hit1 = 0
        for r in rows[: self.settings.calibration_queries]:
            c = self._candidates(self.row_text(r), exclude_row=r)
            if not c.ids:
                continue
            y = np.array([sid == self.row_owner[r] for sid in c.ids], np.float32)
            # Keep the 20 strongest candidates: the negatives a real query would have to beat.
            keep = np.argsort(-(c.x[:, 0] + c.x[:, 2]))[:20]
            xs.append(c.x[keep])
            ys.append(y[keep])
        if not xs:
            return
        x, y = np.concatenate(xs), np.concatenate(ys)
        self.fusion.fit(x, y, {"queries": len(xs), "method": "leave-one-question-out on the indexed scripts"})
        tops = []
        for xq, yq in zip(xs, ys, strict=True):
            p = self.fusion.score(xq)
            best = int(np.argmax(p))
            hit1 += int(yq[best] == 1)
            tops.append((float(p[best]), bool(yq[best] == 1)))
        self.fusion.calibration["top1"] = round(hit1 / len(xs), 4)
        # How often the top hit is right above each threshold, on these held-out questions.
        table = {}
        auto = None
        for t in np.round(np.arange(0.05, 0.95, 0.05), 2).tolist():
            kept = [ok for score, ok in tops if score >= t]
            precision = sum(kept) / len(kept) if len(kept) >= 10 else None
            table[str(t)] = {
                "suggested": round(len(kept) / len(tops), 3),
                "precision": None if precision is None else round(precision, 3),
            }
            if auto is None and precision is not None and precision >= self.settings.target_precision:
                auto = t
        self.fusion.calibration["by_threshold"] = table
        if self.settings.threshold is None and auto is not None:
            self.fusion.threshold = auto
            self.fusion.calibration["threshold_rule"] = (
                f"lowest score with top-1 precision >= {self.settings.target_precision} on held-out questions"
            )

    # --- persistence --------------------------------------------------------------------------
    def save(self, path: Path) -> dict[str, Any]:
        """Write the index files into directory `path` (which must be new); returns counts for metadata."""
        with self._lock:
            self.dense.save(path / "dense.faiss")
            np.savez(path / "sparse.npz", **self.bm25.state())
            with open(path / "scripts.jsonl", "w", encoding="utf-8") as fh:
                for s in self.scripts.values():
                    fh.write(json.dumps(script_to_dict(s), ensure_ascii=False) + "\n")
            rows = {"owner": self.row_owner, "slot": self.row_slot}
            (path / "rows.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
            return {
                "scripts": len(self.scripts),
                "rows": sum(len(v) for v in self.script_rows.values()),
                "dense_kind": self.dense.kind,
                "dim": self.encoder.dim,
            }

    @classmethod
    def load(cls, path: Path, encoder: Encoder, config: dict[str, Any]) -> HybridRetriever:
        dense_config = DenseConfig.from_dict(config.get("dense"))
        settings = SearchSettings(**config.get("search", {}))
        fusion = Fusion.from_dict(config.get("fusion"))
        self = cls(encoder, dense_config, settings, fusion)
        with np.load(path / "sparse.npz", allow_pickle=False) as st:
            self.bm25 = BM25Index.from_state(st)
        self.dense = DenseIndex.load(path / "dense.faiss", encoder.dim, dense_config, config.get("dense_kind", "flat"))
        with open(path / "scripts.jsonl", encoding="utf-8") as fh:
            for line in fh:
                s = script_from_dict(json.loads(line))
                self.scripts[s.id] = s
        rows = json.loads((path / "rows.json").read_text(encoding="utf-8"))
        self.row_owner, self.row_slot = rows["owner"], rows["slot"]
        for r, owner in enumerate(self.row_owner):
            if owner is not None:
                self.script_rows.setdefault(owner, []).append(r)
        add_words(k for s in self.scripts.values() for k in s.keywords)
        return self


def _live(scripts: Sequence[Script]) -> list[Script]:
    seen: dict[str, Script] = {}
    for s in scripts:
        if s.status != "retired":
            seen[s.id] = s  # the last version of a repeated id wins
    return list(seen.values())


def _matched_terms(query_tokens: list[str], matched: str, script: Script) -> list[str]:
    """Query words found in the matched text or among the script's keywords, longest first."""
    target = normalize(matched)
    keywords = {normalize(k) for k in script.keywords}
    terms = {t for t in query_tokens if len(t) >= 2 and (t in target or t in keywords)}
    terms |= {k for k in keywords if k and k in normalize("".join(query_tokens))}
    # Drop terms contained in a longer matched term (光伏 inside 分布式光伏).
    out = [t for t in terms if not any(t != u and t in u for u in terms)]
    return sorted(out, key=lambda t: (-len(t), t))
