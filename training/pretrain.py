"""Masked-language-model pretraining of the character encoder on a user's unlabelled transcripts."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kefu.io import InputError, iter_records
from kefu.progress import progress
from models.classifier.common import ROLE_IDS, prepare

log = logging.getLogger(__name__)


def read_utterances(paths: Sequence[str | Path]) -> tuple[list[str], list[int]]:
    """Every turn of every readable call in `paths` (any transcript format), normalised, with its role id."""
    texts: list[str] = []
    roles: list[int] = []
    for path in paths:
        for record in iter_records(str(path)):
            if not record.ok:
                log.warning("skipping %s", record.describe())
                continue
            assert record.transcript is not None
            for turn in record.transcript.turns:
                text = prepare(turn.text)
                if len(text) >= 2:
                    texts.append(text)
                    roles.append(ROLE_IDS[turn.role])
    if not texts:
        raise InputError(f"no usable turns in {', '.join(map(str, paths))}")
    return texts, roles


def mask_tokens(ids: np.ndarray, attention: np.ndarray, vocab_size: int, mask_id: int, rng: np.random.Generator,
                rate: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """BERT masking: of the chosen 15%, 80% [MASK], 10% a random character, 10% unchanged; labels -100 elsewhere."""
    labels = np.full_like(ids, -100)
    special = (ids < 5) | (attention == 0)
    chosen = (rng.random(ids.shape) < rate) & ~special
    labels[chosen] = ids[chosen]
    out = ids.copy()
    r = rng.random(ids.shape)
    out[chosen & (r < 0.8)] = mask_id
    rand = chosen & (r >= 0.8) & (r < 0.9)
    out[rand] = rng.integers(5, vocab_size, size=int(rand.sum()))
    return out, labels


def pretrain(inputs: Sequence[str | Path], out: str | Path, *, base: str | Path | None = None, hidden: int = 128,
             layers: int = 2, heads: int = 4, max_length: int = 128, epochs: float = 1.0, batch_size: int = 64,
             lr: float = 1e-3, threads: int = 2, time_budget_s: float = 600.0, seed: int = 13,
             quiet: bool | None = None) -> Path:
    """Train (or continue training `base`) a BertForMaskedLM over characters and save it HF-style.

    The output loads with BertForMaskedLM.from_pretrained and is a valid `kefu train fit --base-model`.
    """
    import torch
    from transformers import BertForMaskedLM

    from models.classifier.char_transformer import CharTokenizer, small_config

    if epochs <= 0 or batch_size < 1 or threads < 1:
        raise InputError(f"epochs, batch size and threads must be positive, got {epochs}, {batch_size}, {threads}")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    texts, roles = read_utterances(inputs)
    if base is not None:
        tokenizer = CharTokenizer.load(Path(base))
        model = BertForMaskedLM.from_pretrained(str(base))
    else:
        tokenizer = CharTokenizer.build(texts, min_count=1)
        model = BertForMaskedLM(small_config(len(tokenizer), hidden, layers, heads, max_length + 2))
    max_len = min(max_length, model.config.max_position_embeddings - 2)
    n = len(texts)
    total = max(1, math.ceil(n / batch_size * epochs))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * max(0.05, 1 - s / total))
    model.train()
    start = time.perf_counter()
    seg = np.asarray(roles)
    order = rng.permutation(n)
    pos = 0
    losses: list[float] = []
    for step in progress(range(total), desc="pretrain", unit="step", total=total, quiet=quiet):
        if pos + batch_size > n:
            order, pos = rng.permutation(n), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        enc = tokenizer.encode_batch([texts[i] for i in idx], max_len, seg[idx])
        masked, labels = mask_tokens(enc["input_ids"], enc["attention_mask"], len(tokenizer), tokenizer.mask_id, rng)
        if (labels == -100).all():
            continue
        outputs = model(input_ids=torch.from_numpy(masked), attention_mask=torch.from_numpy(enc["attention_mask"]),
                        token_type_ids=torch.from_numpy(enc["token_type_ids"]), labels=torch.from_numpy(labels))
        opt.zero_grad()
        outputs.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(outputs.loss.detach()))
        if time.perf_counter() - start > time_budget_s:
            log.warning("time budget of %.0f s reached after %d of %d steps", time_budget_s, step + 1, total)
            break
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save(out)
    tail = float(np.mean(losses[-20:])) if losses else float("nan")
    (out / "README.md").write_text(
        "# kefu character MLM encoder\n\n"
        f"BertForMaskedLM over characters, pretrained on {n} unlabelled turns "
        f"({len(losses)} steps, final masked-LM loss {tail:.3f}).\n"
        "Fine-tune with `kefu train fit --base-model THIS_DIR`.\n",
        encoding="utf-8",
    )
    log.info("pretrained on %d turns, %d steps, final loss %.3f → %s", n, len(losses), tail, out)
    return out
