"""Train the built-in n-gram encoder contrastively on knowledge-base question groups and ATEC train pairs."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from knowledge_base.index.fusion import is_holdout_question
from models.encoders.builtin import NgramEncoder, char_ngrams

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PAIRS = REPO.parent / "shared" / "eval" / "atec_pairs.tsv"
DEFAULT_SCRIPTS = REPO / "knowledge_base" / "data" / "scripts.jsonl"


@dataclass(slots=True)
class TrainConfig:
    """Settings of one training run (recorded in the model card and config.json)."""

    dim: int = 128
    ngram_min: int = 1
    ngram_max: int = 2
    min_count: int = 2
    max_vocab: int = 60000
    epochs: int = 2
    batch_size: int = 256
    lr: float = 0.02
    temperature: float = 0.05
    dropout: float = 0.0  # probability of dropping each n-gram occurrence while training (augmentation)
    weight_decay: float = 0.0
    nce_weight: float = 0.3
    pair_weight: float = 3.0
    val_fraction: float = 0.1
    max_pairs: int = 0  # 0: all ATEC train pairs
    kb_pairs_per_script: int = 200
    kb_answers: bool = False  # also pair questions with the script's reply text
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dim < 8:
            raise ValueError(f"dim must be >= 8, got {self.dim}")
        if not 1 <= self.ngram_min <= self.ngram_max <= 6:
            raise ValueError(f"need 1 <= ngram_min <= ngram_max <= 6, got {self.ngram_min}, {self.ngram_max}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError(f"epochs must be >= 1 and batch_size >= 2, got {self.epochs}, {self.batch_size}")


def _is_val(pair_id: str, fraction: float) -> bool:
    """A stable, hash-based slice of the train split held out for early stopping and tuning."""
    h = int(hashlib.sha1(pair_id.encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def read_atec(path: Path, val_fraction: float) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]:
    """ATEC train-split pairs as (q1, q2, label), split into train and validation; test rows are never read."""
    train: list[tuple[str, str, int]] = []
    val: list[tuple[str, str, int]] = []
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row.get("split") != "train":
                continue  # test rows are for evaluation only
            item = (row["q1"], row["q2"], int(row["label"]))
            (val if _is_val(row["id"], val_fraction) else train).append(item)
    return train, val


def read_groups(path: Path, answers: bool = False) -> list[list[str]]:
    """Question groups (questions and scenario of each script, and its reply with `answers`) from a scripts JSONL."""
    groups: list[list[str]] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                item = json.loads(line)
                group = [q for q in item.get("questions", []) if q] + [item.get("scenario", "")]
                if answers:
                    group.append(item.get("script", ""))
                groups.append([g for g in group if g])
    return groups


def build_vocab(texts: Sequence[str], cfg: TrainConfig) -> tuple[list[str], np.ndarray]:
    """N-grams seen at least `min_count` times (most frequent first) and their IDF."""
    counts: Counter[str] = Counter()
    df: Counter[str] = Counter()
    for text in texts:
        grams = char_ngrams(text, cfg.ngram_min, cfg.ngram_max)
        counts.update(grams)
        df.update(set(grams))
    vocab = [g for g, c in counts.most_common(cfg.max_vocab) if c >= cfg.min_count]
    n = len(texts)
    idf = np.array([np.log((1 + n) / (1 + df[g])) + 1.0 for g in vocab], np.float32)
    return vocab, idf


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def pair_auc(encoder: Any, pairs: Sequence[tuple[str, str, int]]) -> float:
    a = encoder.encode([p[0] for p in pairs])
    b = encoder.encode([p[1] for p in pairs])
    return roc_auc((a * b).sum(1), np.array([p[2] for p in pairs]))


def group_accuracy(encoder: Any, groups: Sequence[Sequence[str]]) -> float:
    """Leave-one-out top-1 accuracy: each question's nearest other question belongs to its group."""
    texts = [q for g in groups for q in g]
    owner = np.array([i for i, g in enumerate(groups) for _ in g])
    if len(texts) < 2:
        return float("nan")
    v = encoder.encode(texts)
    sim = v @ v.T
    np.fill_diagonal(sim, -2.0)
    return float((owner[sim.argmax(1)] == owner).mean())


def holdout_accuracy(encoder: Any, train: Sequence[Sequence[str]], held: Sequence[Sequence[str]]) -> float:
    """Top-1 accuracy of held-out questions against the training questions of every group."""
    texts = [q for g in train for q in g]
    owner = np.array([i for i, g in enumerate(train) for _ in g])
    queries = [q for g in held for q in g]
    truth = np.array([i for i, g in enumerate(held) for _ in g])
    if not texts or not queries:
        return float("nan")
    sim = encoder.encode(queries) @ encoder.encode(texts).T
    return float((owner[sim.argmax(1)] == truth).mean())


def train_encoder(
    pairs_path: Path | None = DEFAULT_PAIRS,
    scripts_path: Path | None = DEFAULT_SCRIPTS,
    cfg: TrainConfig | None = None,
    name: str = "kefu-ngram-zh",
    extra_groups: Sequence[Sequence[str]] = (),
) -> tuple[NgramEncoder, dict[str, Any]]:
    """Train an NgramEncoder; returns it with its validation metrics (ATEC train slice, KB groups)."""
    import torch
    from torch import nn

    cfg = cfg or TrainConfig()
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    atec_train: list[tuple[str, str, int]] = []
    atec_val: list[tuple[str, str, int]] = []
    if pairs_path is not None and Path(pairs_path).exists():
        atec_train, atec_val = read_atec(Path(pairs_path), cfg.val_fraction)
        if cfg.max_pairs:
            rng.shuffle(atec_train)
            atec_train = atec_train[: cfg.max_pairs]
    groups: list[list[str]] = [list(g) for g in extra_groups]
    if scripts_path is not None and Path(scripts_path).exists():
        groups += read_groups(Path(scripts_path), cfg.kb_answers)
    # A fixed fifth of the questions (by hash) is held out: it picks the epoch here and calibrates the
    # index fusion later, so neither is measured on questions the encoder was trained on.
    kb_train = [[q for q in g if not is_holdout_question(q)] for g in groups]
    kb_val = [[q for q in g if is_holdout_question(q)] for g in groups]
    if not atec_train and not kb_train:
        raise ValueError("no training data: neither ATEC train pairs nor knowledge-base question groups were found")

    texts = [t for p in atec_train for t in p[:2]] + [q for g in kb_train for q in g]
    vocab, idf = build_vocab(texts, cfg)
    if not vocab:
        raise ValueError("the training texts gave an empty n-gram vocabulary (try min_count=1)")
    index = {g: i for i, g in enumerate(vocab)}
    cache: dict[str, list[int]] = {}

    def ids(text: str) -> list[int]:
        if text not in cache:
            grams = char_ngrams(text, cfg.ngram_min, cfg.ngram_max)
            cache[text] = [i for g in grams if (i := index.get(g)) is not None]
        return cache[text]

    class Bag(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.EmbeddingBag(len(vocab), cfg.dim, mode="sum")
            nn.init.normal_(self.emb.weight, std=cfg.dim**-0.5)
            # softplus^-1(idf): weights start as IDF and stay positive.
            self.w = nn.Parameter(torch.log(torch.expm1(torch.tensor(idf))))
            self.scale = nn.Parameter(torch.tensor(10.0))
            self.bias = nn.Parameter(torch.tensor(-5.0))

        def forward(self, batch: list[str]) -> torch.Tensor:
            flat: list[int] = []
            offsets: list[int] = []
            for t in batch:
                offsets.append(len(flat))
                flat.extend(ids(t))
            idx = torch.tensor(flat, dtype=torch.long)
            weights = nn.functional.softplus(self.w[idx])
            if self.training and cfg.dropout > 0:
                weights = weights * (torch.rand(len(flat)) >= cfg.dropout)
            out = self.emb(idx, torch.tensor(offsets, dtype=torch.long), per_sample_weights=weights)
            return nn.functional.normalize(out, dim=-1)

    model = Bag()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def kb_pairs() -> list[tuple[str, str, int]]:
        out = []
        for g in kb_train:
            if len(g) < 2:
                continue
            for _ in range(cfg.kb_pairs_per_script):
                a, b = rng.sample(g, 2)
                out.append((a, b, 1))
        return out

    def export() -> NgramEncoder:
        with torch.no_grad():
            emb = model.emb.weight.detach().numpy().copy()
            w = nn.functional.softplus(model.w).detach().numpy().copy()
        return NgramEncoder(
            vocab,
            emb,
            w,
            (cfg.ngram_min, cfg.ngram_max),
            name=name,
            extra={"trained": True, "train_config": asdict(cfg)},
        )

    best: tuple[float, NgramEncoder | None, dict[str, Any]] = (-1.0, None, {})
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        atec = [(a, b, y, 0) for a, b, y in atec_train]
        kb = [(a, b, y, 1) for a, b, y in kb_pairs()]
        items = atec + kb
        rng.shuffle(items)
        total = 0.0
        for start in range(0, len(items), cfg.batch_size):
            batch = items[start : start + cfg.batch_size]
            a = model([x[0] for x in batch])
            b = model([x[1] for x in batch])
            labels = torch.tensor([x[2] for x in batch], dtype=torch.float32)
            cos = (a * b).sum(-1)
            loss = torch.zeros(())
            is_atec = torch.tensor([x[3] == 0 for x in batch])
            if cfg.pair_weight and is_atec.any():
                logits = model.scale * cos[is_atec] + model.bias
                loss = loss + cfg.pair_weight * nn.functional.binary_cross_entropy_with_logits(logits, labels[is_atec])
            pos = labels > 0
            if cfg.nce_weight and pos.sum() > 1:
                # In-batch negatives: every other positive pair's second question is a negative.
                sim = a[pos] @ b[pos].T / cfg.temperature
                target = torch.arange(int(pos.sum()))
                loss = loss + cfg.nce_weight * 0.5 * (
                    nn.functional.cross_entropy(sim, target) + nn.functional.cross_entropy(sim.T, target)
                )
            if not loss.requires_grad:
                continue
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
        enc = export()
        metrics: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": total / max(len(items), 1),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        if atec_val:
            metrics["atec_val_auc"] = round(pair_auc(enc, atec_val), 4)
        if any(kb_val):
            metrics["kb_val_top1"] = round(holdout_accuracy(enc, kb_train, kb_val), 4)
        log.info("epoch %s", metrics)
        score = metrics.get("atec_val_auc", 0.0) + metrics.get("kb_val_top1", 0.0)
        if not (atec_val or any(kb_val)) or score > best[0]:
            best = (score, enc, metrics)
    enc, metrics = best[1], best[2]
    assert enc is not None
    metrics = {
        **metrics,
        "vocab_size": len(vocab),
        "atec_train_pairs": len(atec_train),
        "atec_val_pairs": len(atec_val),
        "kb_groups": len(kb_train),
        "kb_val_questions": sum(len(g) for g in kb_val),
    }
    enc.extra["train_metrics"] = metrics
    enc.card = model_card(enc, cfg, metrics)
    return enc, metrics


def model_card(enc: NgramEncoder, cfg: TrainConfig, metrics: dict[str, Any], test: dict[str, Any] | None = None) -> str:
    lines = [
        f"# {enc.name}",
        "",
        "kefu's built-in sentence encoder for short colloquial Chinese customer questions.",
        "",
        "## Model",
        f"- Sentence vector: L2-normalised weighted sum of character {cfg.ngram_min}–{cfg.ngram_max}-gram "
        f"embeddings ({enc.dim} dimensions, {len(enc.vocab)} n-grams; unknown n-grams are ignored).",
        "- Per-n-gram weights start at IDF and are learned with the embeddings.",
        "- Load with `models.encoders.load_encoder(path)`; numpy only at inference, tens of microseconds per query.",
        "",
        "## Training",
        "- Data: the train split of ATEC 2018 question pairs (labelled same-intent or not), minus a hash-based "
        f"{cfg.val_fraction:.0%} validation slice; question groups of the bundled knowledge base minus a "
        "hash-chosen fifth of the questions (kept for picking the epoch and for calibrating index fusion).",
        "- Loss: logistic loss on the scaled cosine of each labelled ATEC pair + in-batch-negative InfoNCE "
        f"(temperature {cfg.temperature}) over same-intent pairs and pairs of questions of one script.",
        "- ATEC `test` rows and the knowledge-base evaluation queries are never used for training or selection.",
        f"- Settings: `{json.dumps(asdict(cfg))}`",
        "",
        "## Evaluation",
        f"- Validation (used to pick the epoch): {json.dumps({k: v for k, v in metrics.items() if 'val' in k})}",
    ]
    if test:
        lines.append(f"- Test (ATEC test split, evaluation only): {json.dumps(test)}")
    return "\n".join(lines) + "\n"


def evaluate_test(encoder: Any, pairs_path: Path = DEFAULT_PAIRS) -> dict[str, Any]:
    """ROC AUC of cosine similarity on the ATEC test split (reporting only, never for selection)."""
    rows = []
    with open(pairs_path, encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r.get("split") == "test"]
    pairs = [(r["q1"], r["q2"], int(r["label"])) for r in rows]
    return {"atec_test_auc": round(pair_auc(encoder, pairs), 4), "atec_test_pairs": len(pairs)}


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m training.encoder -o DIR`: train the default built-in encoder and save it to DIR."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("-o", "--output", required=True, help="Directory to write the encoder to.")
    parser.add_argument("--pairs", default=str(DEFAULT_PAIRS), help="ATEC pairs TSV (only split=train rows are used).")
    parser.add_argument("--scripts", default=str(DEFAULT_SCRIPTS), help="Knowledge-base scripts JSONL.")
    parser.add_argument("--report-test", action="store_true", help="Also report ATEC test AUC in the card.")
    for f, default in asdict(TrainConfig()).items():
        parser.add_argument("--" + f.replace("_", "-"), type=type(default), default=default)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = TrainConfig(**{f: getattr(args, f) for f in asdict(TrainConfig())})
    enc, metrics = train_encoder(Path(args.pairs), Path(args.scripts), cfg)
    if args.report_test:
        test = evaluate_test(enc, Path(args.pairs))
        enc.extra["test_metrics"] = test
        enc.card = model_card(enc, cfg, metrics, test)
        log.info("test %s", test)
    enc.save(args.output)
    log.info("saved %s (%s)", args.output, metrics)


if __name__ == "__main__":
    main()
