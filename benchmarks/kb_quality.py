"""Retrieval quality: the KB evaluation queries (Recall@k, MRR) and ATEC test pairs (ROC AUC of `kefu kb embed`),
each beside jieba + rank_bm25 measured in the same run.

    .venv/bin/python benchmarks/kb_quality.py [--encoder DIR] [--json]

Nothing here trains or tunes: the index is built from the bundled scripts with its default settings,
and the evaluation queries and ATEC test rows are only scored.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SCRIPTS = REPO / "knowledge_base" / "data" / "scripts.jsonl"
EVAL = REPO / "knowledge_base" / "data" / "eval_queries.jsonl"
ATEC = REPO.parent / "shared" / "eval" / "atec_pairs.tsv"


def ranking_metrics(ranked: list[list[str]], expected: list[str]) -> dict[str, float]:
    rr = [1.0 / (r.index(e) + 1) if e in r else 0.0 for r, e in zip(ranked, expected, strict=True)]
    return {
        "R@1": float(np.mean([e in r[:1] for r, e in zip(ranked, expected, strict=True)])),
        "R@3": float(np.mean([e in r[:3] for r, e in zip(ranked, expected, strict=True)])),
        "R@5": float(np.mean([e in r[:5] for r, e in zip(ranked, expected, strict=True)])),
        "MRR@10": float(np.mean(rr)),
    }


def threshold_table(top: list[tuple[float, bool]]) -> list[dict]:
    """For several thresholds: share of queries that get a suggestion, and how often its top hit is right."""
    rows = []
    for t in (0.1, 0.2, 0.3, 0.5, 0.7):
        kept = [ok for score, ok in top if score >= t]
        rows.append(
            {
                "threshold": t,
                "suggested": round(len(kept) / len(top), 3),
                "top-1 precision": round(sum(kept) / len(kept), 3) if kept else "–",
                "mean score": round(float(np.mean([s for s, _ in top if s >= t])), 3) if kept else "–",
            }
        )
    return rows


def kb_quality(encoder: str | None) -> tuple[list[dict], dict]:
    from rank_bm25 import BM25Okapi

    from knowledge_base.index.hybrid import script_from_dict
    from knowledge_base.index.manager import IndexManager
    from knowledge_base.index.sparse import tokenize

    scripts = [script_from_dict(json.loads(x)) for x in SCRIPTS.read_text(encoding="utf-8").splitlines() if x.strip()]
    queries = [json.loads(x) for x in EVAL.read_text(encoding="utf-8").splitlines() if x.strip()]
    expected = [q["expected"] for q in queries]
    rows: list[dict] = []
    results: dict[str, list[list[str]]] = {}

    # Baseline: jieba (same user dictionary) + rank_bm25 over questions and scenario, best row per script.
    t0 = time.perf_counter()
    docs, owner = [], []
    for s in scripts:
        for text in [*s.questions, s.scenario]:
            docs.append(tokenize(text))
            owner.append(s.id)
    bm = BM25Okapi(docs)
    owner_arr = np.array(owner)
    ids = sorted(set(owner))
    ranked = []
    for q in queries:
        sc = bm.get_scores(tokenize(q["text"]))
        best = {i: -1.0 for i in ids}
        for o, v in zip(owner_arr, sc, strict=True):
            best[o] = max(best[o], float(v))
        ranked.append(sorted(best, key=best.__getitem__, reverse=True)[:10])
    results["jieba + rank_bm25 (baseline)"] = ranked
    base_ms = (time.perf_counter() - t0) / len(queries) * 1000

    with tempfile.TemporaryDirectory() as tmp:
        m = IndexManager(Path(tmp), {"encoder": encoder} if encoder else {})
        t0 = time.perf_counter()
        m.rebuild(scripts, kb_version=1)
        build_s = time.perf_counter() - t0
        r = m.retriever()
        dense, sparse, hybrid = [], [], []
        lat = []
        top: list[tuple[float, bool]] = []
        above = 0
        for q in queries:
            c = r._candidates(q["text"])
            dense.append([c.ids[i] for i in np.argsort(-c.x[:, 0], kind="stable")[:10]])
            sparse.append([c.ids[i] for i in np.argsort(-(c.x[:, 2] + 1e-3 * c.x[:, 3]), kind="stable")[:10]])
            t = time.perf_counter()
            hits = r.search(q["text"], k=10, threshold=0.0)
            lat.append((time.perf_counter() - t) * 1000)
            hybrid.append([h.id for h in hits])
            top.append((hits[0].score, hits[0].id == q["expected"]) if hits else (0.0, False))
            above += bool(hits) and hits[0].score >= r.fusion.threshold
        results["kefu dense only"] = dense
        results["kefu BM25 only"] = sparse
        results["kefu hybrid (fused, calibrated)"] = hybrid
        info = m.info()
    for name, ranked in results.items():
        rows.append({"system": name, **{k: round(v, 3) for k, v in ranking_metrics(ranked, expected).items()}})
    styles = defaultdict(list)
    for i, q in enumerate(queries):
        styles[q.get("style", "")].append(i)
    by_style = {}
    for style, idx in sorted(styles.items()):
        by_style[style] = {
            "n": len(idx),
            "baseline": ranking_metrics(
                [results["jieba + rank_bm25 (baseline)"][i] for i in idx], [expected[i] for i in idx]
            ),
            "hybrid": ranking_metrics(
                [results["kefu hybrid (fused, calibrated)"][i] for i in idx], [expected[i] for i in idx]
            ),
        }
    extra = {
        "queries": len(queries),
        "scripts": len(scripts),
        "build_s": round(build_s, 2),
        "hybrid_p50_ms": round(float(np.median(lat)), 2),
        "baseline_ms_per_query": round(base_ms, 2),
        "suggested_at_threshold": round(above / len(queries), 3),
        "threshold": r.fusion.threshold,
        "encoder": info["encoder"].get("name"),
        "calibration": info.get("calibration"),
        "by_style": by_style,
        "threshold_table": threshold_table(top),
    }
    return rows, extra


def atec_quality(encoder: str | None) -> list[dict]:
    """ROC AUC on ATEC test pairs: `kefu kb embed` similarity vs char TF-IDF and jieba + rank_bm25."""
    import typer
    from rank_bm25 import BM25Okapi
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import roc_auc_score
    from typer.testing import CliRunner

    from knowledge_base.index.hybrid import script_from_dict
    from knowledge_base.index.manager import IndexManager
    from knowledge_base.index.sparse import tokenize
    from knowledge_base.search_cli import register

    with open(ATEC, encoding="utf-8", newline="") as fh:
        all_rows = list(csv.DictReader(fh, delimiter="\t"))
    test = [r for r in all_rows if r["split"] == "test"]
    train_texts = [t for r in all_rows if r["split"] == "train" for t in (r["q1"], r["q2"])]
    y = np.array([int(r["label"]) for r in test])
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        scripts = [script_from_dict(json.loads(x)) for x in SCRIPTS.read_text(encoding="utf-8").splitlines() if x]
        IndexManager(Path(tmp) / "kb", {"encoder": encoder} if encoder else {}).rebuild(scripts, kb_version=1)
        pairs = Path(tmp) / "pairs.tsv"
        with open(pairs, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, delimiter="\t")
            w.writerow(["id", "q1", "q2", "label"])
            w.writerows([r["id"], r["q1"], r["q2"], r["label"]] for r in test)
        app = typer.Typer()
        app.callback()(lambda: None)
        register(app)
        t0 = time.perf_counter()
        res = CliRunner().invoke(
            app, ["embed", "--kb", str(Path(tmp) / "kb"), "--pairs", str(pairs), "-o", str(Path(tmp) / "out.tsv")]
        )
        if res.exit_code != 0:
            raise RuntimeError(f"kefu kb embed failed: {res.exception}")
        secs = time.perf_counter() - t0
        with open(Path(tmp) / "out.tsv", encoding="utf-8", newline="") as fh:
            sims = np.array([float(r["similarity"]) for r in csv.DictReader(fh, delimiter="\t")])
    out.append(
        {
            "system": "kefu kb embed (built-in encoder)",
            "ROC AUC": round(roc_auc_score(y, sims), 4),
            "seconds": round(secs, 1),
        }
    )
    tfidf = TfidfVectorizer(analyzer="char", ngram_range=(1, 2)).fit(train_texts)
    a, b = tfidf.transform([r["q1"] for r in test]), tfidf.transform([r["q2"] for r in test])
    out.append(
        {
            "system": "char 1–2-gram TF-IDF cosine (reference 0.708)",
            "ROC AUC": round(roc_auc_score(y, np.asarray(a.multiply(b).sum(1)).ravel()), 4),
        }
    )
    docs = [tokenize(r["q2"]) for r in test]
    bm = BM25Okapi(docs)
    scores = np.array([bm.get_batch_scores(tokenize(r["q1"]), [i])[0] for i, r in enumerate(test)])
    out.append({"system": "jieba + rank_bm25 (q1 against q2, baseline)", "ROC AUC": round(roc_auc_score(y, scores), 4)})
    return out


def table(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default=None, help="Encoder directory (default: the default encoder).")
    parser.add_argument("--skip-atec", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows, extra = kb_quality(args.encoder)
    print(f"## Knowledge-base evaluation queries ({extra['queries']} queries, {extra['scripts']} scripts)\n")
    print(table(rows))
    print("\nBy style (R@3 / MRR@10, baseline → hybrid):")
    for style, d in extra["by_style"].items():
        b, h = d["baseline"], d["hybrid"]
        print(
            f"- {style or '-'} (n={d['n']}): R@3 {b['R@3']:.3f} → {h['R@3']:.3f}, "
            f"MRR {b['MRR@10']:.3f} → {h['MRR@10']:.3f}"
        )
    print(
        f"\nbuild {extra['build_s']} s; hybrid p50 {extra['hybrid_p50_ms']} ms/query; baseline "
        f"{extra['baseline_ms_per_query']} ms/query; top hit above threshold {extra['threshold']}: "
        f"{extra['suggested_at_threshold']:.1%} of queries; encoder {extra['encoder']}"
    )
    print("\nCalibration check (top hit of each query; the score estimates P(top hit is right)):\n")
    print(table(extra["threshold_table"]))
    if not args.skip_atec and ATEC.exists():
        print("\n## ATEC test pairs (ROC AUC of cosine similarity)\n")
        print(table(atec_quality(args.encoder)))
    if args.json:
        print(json.dumps({"kb": rows, "extra": extra}, ensure_ascii=False))


if __name__ == "__main__":
    main()
