"""Knowledge gaps: customer texts no script answered, grouped into clusters so trainers see what to write."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from kefu.io import InputError
from kefu.text import normalize
from knowledge_base.store.base import utc_now

log = logging.getLogger(__name__)

GAP_LOG = "gaps.jsonl"
TEXT_KEYS: tuple[str, ...] = ("text", "query", "content", "question")
_append_lock = threading.Lock()


def log_gap(
    kb_dir: str | Path,
    text: str,
    *,
    call_id: str | None = None,
    best_score: float | None = None,
    time: str | None = None,
    **extra: Any,
) -> bool:
    """Append one unanswered customer text to DIR/gaps.jsonl (assist calls this); False when `text` is blank.

    Each record is one write of one whole line to a file opened in append mode, so concurrent
    callers (threads or processes) never interleave or cut each other's lines.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        return False
    if best_score is not None and (isinstance(best_score, bool) or not math.isfinite(float(best_score))):
        raise ValueError(f"best_score must be a finite number or None, got {best_score!r}")
    record: dict[str, Any] = {
        "text": text.strip(),
        "call_id": call_id,
        "time": time or utc_now(),
        "best_score": None if best_score is None else round(float(best_score), 4),
        **extra,
    }
    data = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    path = Path(kb_dir) / GAP_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    with _append_lock:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    return True


@dataclass(slots=True)
class GapText:
    """One unanswered customer text and where it came from."""

    text: str
    call_id: str | None = None
    time: str | None = None
    best_score: float | None = None
    line: int = 0


@dataclass(slots=True)
class GapCluster:
    """Customer texts about one missing topic: how often it came up, typical wordings, key terms."""

    cluster: int
    count: int  # texts in the cluster, repeats included
    unique: int  # distinct texts (after normalisation)
    label: str  # the most typical text
    terms: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    call_ids: list[str] = field(default_factory=list)
    mean_best_score: float | None = None
    first_seen: str | None = None
    last_seen: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "count": self.count,
            "unique": self.unique,
            "label": self.label,
            "terms": self.terms,
            "examples": self.examples,
            "call_ids": self.call_ids,
            "mean_best_score": self.mean_best_score,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
        }


def read_gap_texts(path: str | Path, *, since: str | None = None, max_score: float | None = None) -> list[GapText]:
    """Texts from a gap log or any JSONL (`text` key), CSV/TSV (`text` column) or plain-text file.

    Lines that cannot be read are skipped with a warning naming file and line (a gap log may end in
    a line cut by a crash). `since` keeps records with `time` ≥ it (ISO text); `max_score` keeps
    records whose best_score is below it (or unknown).
    """
    p = Path(path)
    source = str(path)
    if not p.exists():
        raise InputError(f"{source}: no such file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror})") from None
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        content = raw.decode("gb18030", errors="replace")
    suffix = p.suffix.lower()
    items: list[GapText] = []
    bad = 0
    if suffix in (".jsonl", ".ndjson", ".json"):
        for number, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                text = next((obj[k] for k in TEXT_KEYS if isinstance(obj.get(k), str)), None)
            except (json.JSONDecodeError, AttributeError):
                text = None
            if not text or not text.strip():
                bad += 1
                log.warning("%s:%d: no text in this line; skipped", source, number)
                continue
            score = obj.get("best_score")
            items.append(
                GapText(
                    text.strip(),
                    None if obj.get("call_id") is None else str(obj["call_id"]),
                    obj.get("time"),
                    float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None,
                    number,
                )
            )
    elif suffix in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(content, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        fields = reader.fieldnames or []
        column = next((k for k in TEXT_KEYS if k in fields), fields[0] if fields else None)
        if column is None:
            return []
        for row in reader:
            text = (row.get(column) or "").strip()
            if text:
                items.append(GapText(text, row.get("call_id") or None, row.get("time") or None, None, reader.line_num))
    else:
        for number, line in enumerate(content.splitlines(), start=1):
            if line.strip():
                items.append(GapText(line.strip(), line=number))
    if bad:
        log.warning("%s: %d line(s) without text skipped", source, bad)
    if since is not None:
        items = [t for t in items if t.time is None or str(t.time) >= since]
    if max_score is not None:
        items = [t for t in items if t.best_score is None or t.best_score < max_score]
    return items


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    text = (resources.files("knowledge_base") / "data" / "gap_stopwords.txt").read_text(encoding="utf-8")
    return frozenset(w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#"))


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    import jieba

    tokenizer = jieba.Tokenizer()
    userdict = resources.files("knowledge_base") / "data" / "userdict.txt"
    if userdict.is_file():
        with resources.as_file(userdict) as path:
            tokenizer.load_userdict(str(path))
    return tokenizer


def _terms(texts: list[str], weights: list[int], top: int = 5) -> list[str]:
    """The words most of the cluster's texts share (by number of texts, repeats counted)."""
    tokenizer = _tokenizer()
    stop = _stopwords()
    counts: Counter[str] = Counter()
    for text, weight in zip(texts, weights, strict=True):
        words = {w for w in tokenizer.lcut(text) if len(w) >= 2 and w not in stop and not w.isdigit()}
        for w in words:
            counts[w] += weight
    return [w for w, _ in counts.most_common(top)]


def _features(text: str) -> list[str]:
    """Words (jieba, stop words dropped) plus character bigrams of what is left.

    Words carry the topic; the bigrams catch words split differently (到账 / 没到+账) and
    compounds (电费发票 / 发票). Question words and fillers are dropped first, so "怎么" or "一下"
    do not pull unrelated texts together.
    """
    stop = _stopwords()
    words = [w for w in _tokenizer().lcut(text) if w.strip() and w not in stop]
    content = "".join(words)
    return [f"w:{w}" for w in words if len(w) >= 2] + [f"b:{content[i : i + 2]}" for i in range(len(content) - 1)]


def cluster_gaps(
    items: list[GapText] | list[str],
    *,
    threshold: float = 0.8,
    min_count: int = 1,
    max_examples: int = 5,
    max_texts: int = 3000,
    with_terms: bool = True,
) -> list[GapCluster]:
    """Group unanswered texts by topic: TF-IDF of words and character bigrams, average-linkage clustering.

    `threshold` is the cosine distance at which clusters stop merging (higher → fewer, broader
    clusters). Texts are de-duplicated after normalisation first; the `max_texts` most frequent
    distinct texts are clustered, and the rest join the nearest cluster when close enough.
    Clusters are returned largest first, those under `min_count` dropped.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1 (a cosine distance), got {threshold}")
    if min_count < 1 or max_examples < 0 or max_texts < 2:
        raise ValueError(
            f"need min_count ≥ 1, max_examples ≥ 0, max_texts ≥ 2; got {min_count}, {max_examples}, {max_texts}"
        )
    gaps = [GapText(t) if isinstance(t, str) else t for t in items]
    groups: dict[str, list[GapText]] = {}
    for g in gaps:
        key = normalize(g.text) or g.text
        groups.setdefault(key, []).append(g)
    if not groups:
        return []
    keys = sorted(groups, key=lambda k: (-len(groups[k]), k))
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer=_features, sublinear_tf=True, dtype=np.float32)
    matrix = vectorizer.fit_transform(keys)
    head = min(len(keys), max_texts)
    if head == 1:
        labels = np.zeros(1, dtype=int)
    else:
        from sklearn.cluster import AgglomerativeClustering

        dense = matrix[:head].toarray()
        distances = np.clip(1.0 - dense @ dense.T, 0.0, 2.0).astype(np.float64)
        # Cosine distance; a text with no features at all is distance 1 from everything (a cluster of its own).
        model = AgglomerativeClustering(
            n_clusters=None, metric="precomputed", linkage="average", distance_threshold=threshold
        )
        labels = model.fit_predict(distances)
    members: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        members.setdefault(int(label), []).append(i)
    if head < len(keys):
        # The long tail joins its nearest cluster centroid when within the threshold, else stays alone.
        centroids = {c: np.asarray(matrix[idx].mean(axis=0)).ravel() for c, idx in members.items()}
        names = list(centroids)
        cmat = np.vstack([centroids[c] / (np.linalg.norm(centroids[c]) or 1.0) for c in names])
        tail = matrix[head:] @ cmat.T
        next_label = max(members) + 1
        for offset, row in enumerate(np.asarray(tail)):
            best = int(np.argmax(row))
            if 1.0 - row[best] <= threshold:
                members[names[best]].append(head + offset)
            else:
                members[next_label] = [head + offset]
                next_label += 1
    clusters: list[GapCluster] = []
    for idx in members.values():
        records = [g for i in idx for g in groups[keys[i]]]
        if len(records) < min_count:
            continue
        weights = [len(groups[keys[i]]) for i in idx]
        sub = matrix[idx]
        sims = np.asarray((sub @ sub.T).todense())
        typical = int(np.argmax(sims @ np.asarray(weights, dtype=np.float32)))
        # The most typical wording first, then the most frequent ones.
        order = [typical, *sorted((j for j in range(len(idx)) if j != typical), key=lambda j: -weights[j])]
        examples = [groups[keys[idx[j]]][0].text for j in order[:max_examples]]
        scores = [g.best_score for g in records if g.best_score is not None]
        times = sorted(str(g.time) for g in records if g.time)
        call_ids = list(dict.fromkeys(g.call_id for g in records if g.call_id))[:max_examples]
        clusters.append(
            GapCluster(
                cluster=0,
                count=len(records),
                unique=len(idx),
                label=groups[keys[idx[typical]]][0].text,
                terms=_terms([keys[i] for i in idx], weights) if with_terms else [],
                examples=examples,
                call_ids=call_ids,
                mean_best_score=round(sum(scores) / len(scores), 4) if scores else None,
                first_seen=times[0] if times else None,
                last_seen=times[-1] if times else None,
            )
        )
    clusters.sort(key=lambda c: (-c.count, -c.unique, c.label))
    for number, c in enumerate(clusters, start=1):
        c.cluster = number
    return clusters
